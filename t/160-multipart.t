#!/usr/bin/perl

# Image edits as multipart/form-data: the prompt rules and the moderation
# policy as for JSON, the rewrite of the moderation part (and of the user
# part) by splicing the body, the SHA-256 of every image and mask in the
# variables and the audit record, each malformed body refused, and an edit
# of sixteen 5 MB images through a temporary file with the worker's memory
# checked.  What upstream received is compared byte for byte.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use Gi2Test;

require_module();

my $B = '----gi2TestBoundary7MA4YWxkTrZu0gW';
my $KEY = '0123456789abcdef0123456789abcdef';

write_file('gi2.key', "$KEY\n");

my $LOCS = <<'EOF';
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /rewrite/ {
            gi2_moderation_low rewrite;
            client_body_buffer_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /allow/ {
            gi2_moderation_low allow;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /userhash/ {
            gi2_user_field hash;
            gi2_moderation_low rewrite;
            client_body_buffer_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /userdrop/ {
            gi2_user_field drop;
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /custom/ {
            gi2_endpoint edits;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /asgen/ {
            gi2_endpoint generations;
            proxy_pass http://%%UPSTREAM%%;
        }
EOF

gi2_start(audit_http() . <<"EOF");
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_rule r_nude deny sexual "\\bnude\\b";
    gi2_rule f_gun flag weapons "\\bgun\\b";
    gi2_exception EXC-1;
    client_max_body_size 100m;
    server {
        listen 127.0.0.1:%%PORT%%;
@{[ audit_server() ]}
        gi2 on;
$LOCS
    }
    server {
        listen 127.0.0.1:%%PORT2%% http2;
@{[ audit_server() ]}
        gi2 on;
$LOCS
    }
EOF

my $EDIT = '/v1/images/edits';
my $CT = "multipart/form-data; boundary=$B";

# part(name, value, filename => f, type => ct, head => [lines], cd => line)
sub part {
    my ($name, $value, %o) = @_;
    my $cd = $o{cd} // "Content-Disposition: form-data; name=\"$name\""
        . (defined $o{filename} ? "; filename=\"$o{filename}\"" : '');
    my @h = ($cd);
    push @h, "Content-Type: $o{type}" if defined $o{type};
    push @h, @{ $o{head} || [] };
    return "--$B\r\n" . join('', map { "$_\r\n" } @h) . "\r\n$value\r\n";
}

sub close_mp { return "--$B--\r\n" }

sub file_part {
    my ($name, $data, $filename) = @_;
    return part($name, $data, filename => $filename // 'a.png',
        type => 'image/png');
}

sub post_mp {
    my ($path, $body, @h) = @_;
    return http_post($path, $body, 'Content-Type' => $CT, @h);
}

# a byte pattern with CRs, LFs and dashes, unlike for each seed
sub pattern {
    my ($seed, $len) = @_;
    my $block = join '', map { chr(($_ * 7 + $seed * 31) % 256) } 0 .. 4095;
    return substr($block x (int($len / 4096) + 1), 0, $len);
}

my $PNG1 = img_png(3, 2);
my $PNG2 = img_png(4, 4, c2pa => 'after');
my $MASK = img_png(3, 2, idat => pattern(9, 300));

sub check_passed {
    my ($r, $body, $name) = @_;
    my $u = is_passed_exact($r, $body, $name);
    is(($u->{headers}{'content-type'} || [])->[0], $CT,
        "$name: upstream content type");
    return $u;
}

sub invalid {
    my ($name, $body, $msg, $param, @h) = @_;
    upstream_reset();
    my $r = http_post($EDIT, $body, @h ? @h : ('Content-Type' => $CT));
    my $e = is_rejection($r, 400, 'gi2_invalid_request', $param, $name);
    is($e->{message}, $msg, "$name: message");
    no_upstream($name);
    log_is($r, { decision => 'reject', reject_code => 'gi2_invalid_request' },
        $name);
    return $r;
}

###########################################################################
# sixteen images of 5 MB each, through a temporary file, first: the
# worker has not grown yet, so its peak tells what this request cost

sub test_big {
    my $pid = worker_pid();
    ok($pid, 'big: one worker');
    my $rss = proc_kb($pid, 'VmRSS') // 0;

    my (@img, @hash);
    my $body = part('prompt', 'make them all blue')
        . part('model', 'gpt-image-1');
    for my $i (0 .. 15) {
        $img[$i] = "\x89PNG\r\n\x1a\n" . pattern($i, 5 * 1024 * 1024 - 8);
        push @hash, sha256_hex($img[$i]);
        $body .= file_part($i % 2 ? 'image[]' : 'image', $img[$i], "$i.png");
    }
    my $mask = pattern(99, 1024 * 1024);
    $body .= file_part('mask', $mask, 'mask.png');
    $body .= part('moderation', 'low') . part('size', '1024x1024')
        . close_mp();
    @img = ();
    (my $want = $body) =~ s/(name="moderation"\r\n\r\n)low\r\n/$1auto\r\n/;

    upstream_reset();
    my $r = post_mp("/rewrite$EDIT", $body);
    is($r->{status}, 200, 'big: status 200')
        or diag(substr($r->{raw} // '', 0, 400));
    my $u = one_upstream('big');
    is($u->{body_length}, length $want, 'big: upstream body length');
    is(sha256_hex($u->{body} // ''), sha256_hex($want),
        'big: upstream body is the body with moderation auto');
    is(($u->{headers}{'content-length'} || [])->[0], length $want,
        'big: upstream content-length');
    log_is($r, { decision => 'rewrite', moderation_requested => 'low',
        moderation_effective => 'auto', model => 'gpt-image-1',
        size => '1024x1024' }, 'big');

    my $a = audit_for($r);
    is($a->{v}{input_image_sha256}, join(',', @hash, sha256_hex($mask)),
        'big: $gi2_input_image_sha256, images and mask in order');
    is_deeply($a->{rec}{gi2}{input_image},
        { sha256 => [@hash, sha256_hex($mask)],
          mask_sha256 => sha256_hex($mask) }, 'big: gi2.input_image');

    like(error_log(), qr/a client request body is buffered to a temporary/,
        'big: the body went to a temporary file');

    my $hwm = proc_kb($pid, 'VmHWM') // 1e9;
    my $grew = $hwm - $rss;
    note("worker VmRSS before $rss kB, peak after $hwm kB, body "
        . int(length($body) / 1024) . ' kB');
    ok($grew < 16 * 1024, "big: worker peak grew by $grew kB, under 16 MB "
        . 'for an 81 MB body');
}

###########################################################################
# the policy, as for JSON

sub test_allow {
    upstream_reset();
    my $prompt = "a cat\r\non a mat\r\n--" . substr($B, 0, -1) . "\r\n-";
    my $body = part('model', 'gpt-image-1')
        . file_part('image[]', $PNG1, 'one.png')
        . part('prompt', $prompt)
        . file_part('image[]', $PNG2, 'two.png')
        . file_part('mask', $MASK, 'mask.png')
        . part('n', '2') . part('size', '1024x1024')
        . part('quality', 'high') . part('moderation', 'auto')
        . part('input_fidelity', 'high') . part('background', 'opaque')
        . part('output_format', 'png') . part('response_format', 'b64_json')
        . close_mp();
    my $r = post_mp($EDIT, $body);
    check_passed($r, $body, 'allow');
    log_is($r, { decision => 'allow', rule_id => '', model => 'gpt-image-1',
        n => '2', size => '1024x1024', quality => 'high',
        moderation_requested => 'auto', moderation_effective => 'auto' },
        'allow');
    my $a = audit_for($r);
    my @want = map { sha256_hex($_) } $PNG1, $PNG2, $MASK;
    is($a->{v}{input_image_sha256}, join(',', @want),
        'allow: $gi2_input_image_sha256');
    my $g = $a->{rec}{gi2} || {};
    is_deeply($g->{input_image}, { sha256 => \@want,
        mask_sha256 => sha256_hex($MASK) }, 'allow: gi2.input_image');
    is($g->{request}{n}, 2, 'allow: gi2.request.n a number');
    is($g->{prompt}{length}, length $prompt, 'allow: gi2.prompt.length');
    like($g->{prompt}{hash} // '', qr/^hmac-sha256:[0-9a-f]{64}$/,
        'allow: gi2.prompt.hash');
    is($a->{rec}{gen_ai}{operation}{name}, 'image_edit',
        'allow: operation image_edit');
    ok((grep { $_ eq $want[0] } @{ $a->{rec}{related}{hash} || [] }),
        'allow: related.hash has the input images');

    # a quoted boundary, an unquoted name, no final CRLF
    upstream_reset();
    $body = "--$B\r\nContent-Disposition: form-data; name=prompt\r\n\r\n"
        . "a dog\r\n--$B--";
    $r = http_post($EDIT, $body,
        'Content-Type' => "multipart/form-data; boundary=\"$B\"");
    is_passed_exact($r, $body, 'quoted boundary');
    log_is($r, { decision => 'allow' }, 'quoted boundary');
}

sub test_rules {
    upstream_reset();
    my $body = file_part('image', $PNG1) . part('prompt', 'a nude figure')
        . close_mp();
    my $r = post_mp($EDIT, $body);
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', 'deny');
    no_upstream('deny');
    log_is($r, { decision => 'reject', rule_id => 'r_nude',
        rule_category => 'sexual', reject_code => 'gi2_prompt_rejected' },
        'deny');
    is(audit_for($r)->{v}{input_image_sha256}, sha256_hex($PNG1),
        'deny: the image is hashed all the same');

    upstream_reset();
    $r = post_mp($EDIT, part('prompt', "a \xef\xbc\xae\xef\xbc\xb5\xe2\x80"
        . "\x8b\xef\xbc\xa4\xef\xbc\xa5 figure") . close_mp());
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'deny: fullwidth and zero-width');
    no_upstream('deny: fullwidth and zero-width');

    upstream_reset();
    $body = part('prompt', 'a toy gun') . file_part('image', $PNG1)
        . close_mp();
    $r = post_mp($EDIT, $body);
    check_passed($r, $body, 'flag');
    log_is($r, { decision => 'flag', rule_id => 'f_gun' }, 'flag');
}

sub test_moderation {
    my $low = part('prompt', 'a lighthouse') . file_part('image', $PNG1)
        . part('moderation', 'low') . close_mp();

    upstream_reset();
    my $r = post_mp($EDIT, $low);
    is_rejection($r, 400, 'gi2_moderation_exception_required', 'moderation',
        'low');
    no_upstream('low');
    log_is($r, { decision => 'reject', moderation_requested => 'low',
        reject_code => 'gi2_moderation_exception_required' }, 'low');

    upstream_reset();
    $r = post_mp($EDIT, $low, 'X-GI2-Exception' => 'EXC-1');
    my $u = check_passed($r, $low, 'low with an exception');
    ok(!$u->{headers}{'x-gi2-exception'},
        'low with an exception: header removed');
    log_is($r, { decision => 'allow', exception_id => 'EXC-1',
        moderation_effective => 'low' }, 'low with an exception');

    upstream_reset();
    $r = post_mp($EDIT, $low, 'X-GI2-Exception' => 'EXC-unknown');
    is_rejection($r, 400, 'gi2_moderation_exception_invalid', 'moderation',
        'unknown exception');
    no_upstream('unknown exception');

    upstream_reset();
    $r = post_mp("/allow$EDIT", $low);
    check_passed($r, $low, 'allow mode');
    log_is($r, { decision => 'allow', moderation_effective => 'low' },
        'allow mode');

    (my $auto = $low) =~ s/\r\n\r\nlow\r\n/\r\n\r\nauto\r\n/;
    upstream_reset();
    $r = post_mp("/rewrite$EDIT", $low);
    check_passed($r, $auto, 'rewrite');
    log_is($r, { decision => 'rewrite', moderation_requested => 'low',
        moderation_effective => 'auto' }, 'rewrite');

    # the moderation part first, a large image after it: a temp file
    my $img = pattern(3, 200_000);
    $low = part('moderation', 'low', head => ['Content-Type: text/plain; '
        . 'charset=utf-8']) . file_part('image', $img)
        . part('prompt', 'a lighthouse') . close_mp();
    ($auto = $low) =~ s/\r\n\r\nlow\r\n/\r\n\r\nauto\r\n/;
    upstream_reset();
    $r = post_mp("/rewrite$EDIT", $low);
    check_passed($r, $auto, 'rewrite from a temp file');
    is(audit_for($r)->{v}{input_image_sha256}, sha256_hex($img),
        'rewrite from a temp file: image hash');
}

sub test_user_field {
    my $body = part('prompt', 'a cat') . part('user', 'alice@example.com')
        . file_part('image', pattern(5, 50_000)) . part('moderation', 'low')
        . close_mp();
    my $hash = 'hmac-sha256:' . hmac_sha256_hex('alice@example.com', $KEY);

    (my $want = $body) =~ s/alice\@example\.com/$hash/;
    $want =~ s/\r\n\r\nlow\r\n/\r\n\r\nauto\r\n/;
    upstream_reset();
    my $r = post_mp("/userhash$EDIT", $body);
    check_passed($r, $want, 'user hash and rewrite');
    log_is($r, { decision => 'rewrite' }, 'user hash and rewrite');

    ($want = $body) =~ s/--\Q$B\E\r\n[^\r]*name="user"\r\n\r\n[^\r]*\r\n//;
    $want =~ s/\r\n\r\nlow\r\n/\r\n\r\nauto\r\n/;
    ok(length $want < length $body, 'user drop: a part to drop');
    upstream_reset();
    $r = post_mp("/userdrop$EDIT", $body);
    check_passed($r, $want, 'user drop and rewrite');

    # the user part first and last
    $body = part('user', 'bob') . part('prompt', 'a cat') . close_mp();
    upstream_reset();
    $r = post_mp("/userdrop$EDIT", $body);
    check_passed($r, part('prompt', 'a cat') . close_mp(),
        'user drop: first part');
    $body = part('prompt', 'a cat') . part('user', 'bob') . close_mp();
    upstream_reset();
    $r = post_mp("/userdrop$EDIT", $body);
    check_passed($r, part('prompt', 'a cat') . close_mp(),
        'user drop: last part');
}

sub test_transport {
    my $body = part('prompt', 'a cat') . file_part('image', pattern(7, 9000))
        . part('moderation', 'low') . close_mp();
    (my $want = $body) =~ s/\r\n\r\nlow\r\n/\r\n\r\nauto\r\n/;

    # chunked, in pieces of 7 bytes: delimiters cut everywhere
    my ($req, $id) = request_bytes('POST', "/rewrite$EDIT", undef,
        'Content-Type' => $CT, 'Transfer-Encoding' => 'chunked');
    upstream_reset();
    my $r = http_send($req . chunked([unpack('(a7)*', $body)]), $id);
    check_passed($r, $want, 'chunked in 7-byte pieces');

    upstream_reset();
    ($req, $id) = request_bytes('POST', $EDIT, undef, 'Content-Type' => $CT,
        'Transfer-Encoding' => 'chunked');
    $r = http_send($req . chunked([unpack('(a5)*', part('prompt', 'a nude')
        . close_mp())]), $id);
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'chunked deny');
    no_upstream('chunked deny');

    # written two bytes at a time
    upstream_reset();
    ($req, $id) = request_bytes('POST', "/rewrite$EDIT", $body,
        'Content-Type' => $CT);
    $r = parse_response(http_raw([unpack('(a2)*', $req)], pause => 0.0005));
    $r->{id} = $id;
    check_passed($r, $want, 'small writes');
}

sub test_endpoint {
    upstream_reset();
    my $body = part('prompt', 'a cat') . close_mp();
    my $r = post_mp('/custom/upload', $body);
    check_passed($r, $body, 'gi2_endpoint edits: any path');
    log_is($r, { decision => 'allow' }, 'gi2_endpoint edits');
    is(audit_for($r)->{rec}{gen_ai}{operation}{name}, 'image_edit',
        'gi2_endpoint edits: operation image_edit');

    upstream_reset();
    $r = post_mp('/custom/upload', part('prompt', 'nude') . close_mp());
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'gi2_endpoint edits: deny');

    upstream_reset();
    $r = post_mp('/asgen/v1/images/edits', $body);
    my $e = is_rejection($r, 400, 'gi2_invalid_request', undef,
        'gi2_endpoint generations: no multipart');
    like($e->{message}, qr/only accepted for image edits/,
        'gi2_endpoint generations: message');
    no_upstream('gi2_endpoint generations');
}

sub test_invalid {
    my $p = part('prompt', 'a cat');
    my $img = file_part('image', $PNG1);
    my $long = 'x' x 8200;
    my $parts65 = $p . join('', map { part("extra$_", 'x') } 1 .. 64);
    my $img17 = $p . join('', map { $img } 1 .. 17);

    my @cases = (
        ['unterminated part', "--$B\r\nContent-Disposition: form-data; "
            . "name=prompt\r\n\r\na cat",
            'the multipart body ends before its closing boundary', undef],
        ['missing closing delimiter', $p,
            'the multipart body ends before its closing boundary', undef],
        ['a delimiter, then nothing', "$p--$B\r\n",
            'the multipart body ends before its closing boundary', undef],
        ['empty body', '',
            'the multipart body ends before its closing boundary', undef],
        ['preamble', "hello\r\n$p" . close_mp(),
            'the multipart body does not begin with its boundary', undef],
        ['data after the closing delimiter', $p . close_mp() . 'x',
            'data after the closing multipart boundary', undef],
        ['boundary followed by data', "$p--${B}x\r\n" . close_mp(),
            'a multipart boundary is followed by other data', undef],
        ['duplicate prompt', $p . part('prompt', 'a dog') . close_mp(),
            'duplicate field in the request body', 'prompt'],
        ['duplicate prompt, other case', $p . part('Prompt', 'a dog')
            . close_mp(), 'duplicate field in the request body', 'prompt'],
        ['duplicate moderation', $p . part('moderation', 'auto')
            . part('moderation', 'low') . close_mp(),
            'duplicate field in the request body', 'moderation'],
        ['duplicate mask', $p . file_part('mask', $PNG1)
            . file_part('mask', $PNG1) . close_mp(),
            'duplicate field in the request body', 'mask'],
        ['header line over 8 KiB', part('prompt', 'a', head =>
            ["X-Long: $long"]) . close_mp(),
            'a multipart part header line is over 8 KiB', undef],
        ['too many parts', $parts65 . close_mp(),
            'the multipart body has more than 64 parts', undef],
        ['17 images', $img17 . close_mp(),
            'more than 16 images in the request', 'image'],
        ['part without name', $p . part('x', 'y',
            cd => 'Content-Disposition: form-data') . close_mp(),
            'a multipart part has no name', undef],
        ['part without Content-Disposition', $p . part('x', 'y',
            cd => 'Content-Type: text/plain') . close_mp(),
            'a multipart part has no Content-Disposition', undef],
        ['not form-data', part('prompt', 'a', cd => 'Content-Disposition: '
            . 'attachment; name="prompt"') . close_mp(),
            'a multipart part is not form-data', undef],
        ['name*= (RFC 2231)', part('prompt', 'a nude', cd =>
            "Content-Disposition: form-data; name*=UTF-8''prompt")
            . close_mp(),
            'a multipart part has an RFC 2231 name*= parameter', undef],
        ['folded header', "--$B\r\nContent-Disposition: form-data;\r\n"
            . " name=\"prompt\"\r\n\r\na nude\r\n" . close_mp(),
            'a multipart part header is folded over lines', undef],
        ['base64 prompt', part('prompt', 'YSBudWRl',
            head => ['Content-Transfer-Encoding: base64']) . close_mp(),
            'a multipart part has a Content-Transfer-Encoding the gateway '
            . 'cannot read; send parts unencoded', undef],
        ['quoted-printable prompt', part('prompt', 'a n=75de',
            head => ['Content-Transfer-Encoding: quoted-printable'])
            . close_mp(),
            'a multipart part has a Content-Transfer-Encoding the gateway '
            . 'cannot read; send parts unencoded', undef],
        ['latin-1 prompt', part('prompt', "caf\xe9", type =>
            'text/plain; charset=iso-8859-1') . close_mp(),
            'a text field has a charset other than UTF-8', 'prompt'],
        ['_charset_ latin-1', $p . part('_charset_', 'iso-8859-1')
            . close_mp(),
            'the _charset_ field names a charset other than UTF-8',
            '_charset_'],
        ['prompt as a file', part('prompt', 'a nude', filename => 'p.txt')
            . close_mp(), 'a text field is sent as a file', 'prompt'],
        ['invalid UTF-8 prompt', part('prompt', "caf\xe9") . close_mp(),
            'a text field is not valid UTF-8', 'prompt'],
        ['no prompt', $img . close_mp(), "the request has no 'prompt' field",
            'prompt'],
        ['moderation high', $p . part('moderation', 'high') . close_mp(),
            q('moderation' must be "auto" or "low"), 'moderation'],
        ['prompt over 1 MiB', part('prompt', 'x' x (1048576 + 1))
            . close_mp(), "'prompt' is over 1 MiB", 'prompt'],
        ['model over 4 KiB', $p . part('model', 'm' x 4097) . close_mp(),
            'a text field is over 4 KiB', 'model'],
        ['backslash in a name', $p . part('pro\\mpt', 'a nude')
            . close_mp(), "a multipart part name has a backslash, '%' or a "
            . 'control character', undef],
    );

    for my $c (@cases) {
        invalid(@$c);
    }

    my @ct = (
        ['no boundary', 'multipart/form-data',
            'multipart/form-data needs a boundary parameter'],
        ['empty boundary', 'multipart/form-data; boundary=""',
            'the multipart boundary must be 1 to 70 characters allowed by '
            . 'RFC 2046'],
        ['boundary of 71 characters', 'multipart/form-data; boundary='
            . ('b' x 71), 'the multipart boundary must be 1 to 70 '
            . 'characters allowed by RFC 2046'],
        ['two boundaries', "multipart/form-data; boundary=$B; boundary=x",
            'the multipart/form-data Content-Type has more than one '
            . 'boundary'],
        ['latin-1 multipart', "multipart/form-data; charset=latin1; "
            . "boundary=$B", 'the multipart/form-data Content-Type names a '
            . 'charset other than UTF-8'],
    );

    for my $c (@ct) {
        invalid($c->[0], $p . close_mp(), $c->[2], undef,
            'Content-Type' => $c->[1]);
    }

    # a boundary of 70 characters is fine
    upstream_reset();
    my $b70 = 'b' x 70;
    my $body = "--$b70\r\nContent-Disposition: form-data; name=prompt\r\n"
        . "\r\na cat\r\n--$b70--\r\n";
    my $r = http_post($EDIT, $body,
        'Content-Type' => "multipart/form-data; boundary=$b70");
    is_passed_exact($r, $body, 'boundary of 70 characters');

    # multipart to the other entry points
    upstream_reset();
    $r = http_post('/v1/responses', $p . close_mp(), 'Content-Type' => $CT);
    my $e = is_rejection($r, 400, 'gi2_invalid_request', undef,
        'multipart to responses');
    is($e->{message}, 'multipart/form-data is only accepted for image '
        . 'edits; send this request as application/json',
        'multipart to responses: message');
    no_upstream('multipart to responses');
}

# curl -F: the multipart form of a real client (with Expect:
# 100-continue for a large body), over HTTP/1.1 and HTTP/2

sub curl_form {
    my ($url, $id, @args) = @_;
    my $p = prefix();
    unlink "$p/curl.out";
    open(my $fh, '-|', 'curl', '-s', '-o', "$p/curl.out", '-w',
        '%{http_code}', '-H', "X-T: $id", @args, $url) or die "curl: $!";
    local $/;
    my $code = <$fh> // '';
    close $fh;
    return ($code, read_file("$p/curl.out") // '');
}

sub test_curl {
    my $p = prefix();
    my $img = "\x89PNG\r\n\x1a\n" . pattern(11, 2 * 1024 * 1024);
    my $mask = pattern(12, 3000);
    write_file('curl-image.png', $img);
    write_file('curl-mask.png', $mask);
    my @form = ('-F', 'model=gpt-image-1', '-F', 'prompt=a lighthouse',
        '-F', "image[]=\@$p/curl-image.png;type=image/png",
        '-F', "mask=\@$p/curl-mask.png;type=image/png",
        '-F', 'moderation=low');
    my @h2 = have_curl_h2() ? ([port(2), '--http2-prior-knowledge']) : ();
    for my $via ([port(1)], @h2) {
        my ($port, @opt) = @$via;
        my $name = @opt ? 'curl -F over h2' : 'curl -F';
        upstream_reset();
        my ($code, $out) = curl_form(
            "http://127.0.0.1:$port/rewrite$EDIT", "curl$port", @opt, @form);
        is($code, 200, "$name: status 200") or diag($out);
        my $u = one_upstream($name);
        my $body = $u->{body} // '';
        like(($u->{headers}{'content-type'} || [''])->[0],
            qr{^multipart/form-data; boundary=-+\w+$},
            "$name: curl's own boundary");
        like($body, qr/name="moderation"\r\n\r\nauto\r\n/,
            "$name: moderation rewritten");
        is(($u->{headers}{'content-length'} || [])->[0], length $body,
            "$name: upstream content-length");
        ok(index($body, $img) > 0, "$name: the image passed unchanged");
        my $a = audit_for("curl$port");
        is($a->{v}{input_image_sha256},
            sha256_hex($img) . ',' . sha256_hex($mask),
            "$name: hashes of the files");

        upstream_reset();
        ($code, $out) = curl_form("http://127.0.0.1:$port$EDIT",
            "curl${port}d", @opt, '-F', 'prompt=a nude',
            '-F', "image=\@$p/curl-image.png");
        is($code, 400, "$name: deny");
        like($out, qr/"code":"gi2_prompt_rejected"/, "$name: deny code");
        no_upstream("$name: deny");
    }
}

test_big();
test_curl();
test_allow();
test_rules();
test_moderation();
test_user_field();
test_transport();
test_endpoint();
test_invalid();
error_log_clean();
done_testing();
