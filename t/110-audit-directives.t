#!/usr/bin/perl

# The audit directives: gi2_hash_key_file (HMAC-SHA256 of the prompt and
# the consumer), gi2_user_field keep|hash|drop (what upstream receives of
# the "user" field, byte for byte), gi2_price (the cost), gi2_log_prompt,
# and what never reaches a log: the prompt, the bearer token, the user
# id.  Hostile prompts and headers still give one valid UTF-8 JSON record.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use MIME::Base64 qw(encode_base64);

require_module();

my $KEY = 'audit-key-0123456789abcdef-XYZ';
my $KEY2 = "bin\x00\xff\x01key\n\twith bytes\xfe";     # binary, 24 bytes
my $TOKEN = 'sk-proj-Priv4cyTok3n-77c1';
my $USER = 'user-id-5e6f7a8b';
my $MARK = 'zebracorn-marker-8812';                       # prompt text
my $GEN = '/v1/images/generations';
my $PNG = img_png(3, 3);
my $COMPACT = JSON::PP->new->canonical;

write_file('gi2.key', "$KEY\n");
write_file('gi2-crlf.key', "$KEY2\r\n");
write_file('short.key', "0123456789abcde\n");              # 15 bytes
write_file('min.key', "0123456789abcdef");                 # 16 bytes
write_file('long.key', 'k' x 4097);

###########################################################################
# nginx -t

sub t_fails {
    my ($name, $tpl, $re) = @_;
    my ($rc, $out) = nginx_t($tpl);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\].*$re/, "$name: message") or diag($out);
}

sub t_passes {
    my ($name, $tpl) = @_;
    my ($rc, $out) = nginx_t($tpl);
    is($rc, 0, "$name: nginx -t passes") or diag($out);
}

sub loc {
    my ($http, $loc) = @_;
    return "$http\n    server {\n        listen 127.0.0.1:1;\n"
        . "        gi2 on;\n        location / {\n            $loc\n"
        . "            proxy_pass http://127.0.0.1:2;\n        }\n    }\n";
}

sub test_nginx_t {
    my $p = prefix();

    t_fails('user_field hash without a key',
        loc('', 'gi2_user_field hash;'),
        qr/"gi2_user_field hash" needs gi2_hash_key_file/);
    t_fails('user_field hash, the key elsewhere',
        "    server {\n        listen 127.0.0.1:1;\n"
        . "        location /a/ { gi2_hash_key_file $p/gi2.key; }\n"
        . "        location /b/ { gi2_user_field hash; }\n    }\n",
        qr/needs gi2_hash_key_file/);
    t_passes('user_field hash with a key',
        loc("    gi2_hash_key_file $p/gi2.key;", 'gi2_user_field hash;'));
    t_passes('user_field hash, key in the same location',
        loc('', "gi2_hash_key_file $p/gi2.key; gi2_user_field hash;"));
    t_passes('user_field drop and keep need no key',
        loc('gi2_user_field keep;', 'gi2_user_field drop;'));
    t_fails('user_field bogus', loc('', 'gi2_user_field scramble;'),
        qr/invalid value "scramble"/);

    t_fails('key file missing', loc('', "gi2_hash_key_file $p/nope.key;"),
        qr/gi2_hash_key_file: cannot open/);
    t_fails('key of 15 bytes (newline not counted)',
        loc('', "gi2_hash_key_file $p/short.key;"),
        qr/holds 15 bytes; a key needs at least 16/);
    t_passes('key of 16 bytes', loc('', "gi2_hash_key_file $p/min.key;"));
    t_fails('key over 4096 bytes', loc('', "gi2_hash_key_file $p/long.key;"),
        qr/cannot read .*at most 4096/);
    t_fails('key file twice',
        loc('', "gi2_hash_key_file $p/gi2.key; gi2_hash_key_file $p/min.key;"),
        qr/is duplicate/);

    my $price = 'gi2_price gpt-image-1';
    t_passes('price', loc('', "$price input=5 output=40 image_input=10;"));
    t_passes('price, decimals, any order',
        loc('', "$price output=0.5 image_input=0 input=2.25;"));
    t_passes('price at http, server and location',
        loc("    $price input=5 output=40;",
            "$price input=1 output=1; gi2_price m2 input=1 output=2;"));
    t_fails('price without input', loc('', "$price output=40;"),
        qr/needs input= and output=/);
    t_fails('price without output', loc('', "$price input=40;"),
        qr/needs input= and output=/);
    t_fails('price without numbers', loc('', 'gi2_price gpt-image-1;'),
        qr/invalid number of arguments/);
    for my $bad ('input=abc', 'input=', 'input=-1', 'input=1.2.3',
        'input=1e3', 'input=5$', 'input=0x10', 'INPUT=5', 'input=100001',
        'input=1000000')
    {
        t_fails("price $bad", loc('', "$price $bad output=40;"),
            qr/invalid parameter "\Q$bad\E" in gi2_price/);
    }
    for my $bad ('price=5', 'image_input=x', 'image_input=', 'output=1,5')
    {
        t_fails("price $bad", loc('', "$price input=1 $bad output=40;"),
            qr/invalid parameter "\Q$bad\E" in gi2_price/);
    }
    t_fails('price input twice', loc('', "$price input=1 input=2 output=3;"),
        qr/invalid parameter "input=2"/);
    t_fails('price duplicate model',
        loc('', "$price input=1 output=2; $price input=3 output=4;"),
        qr/duplicate gi2_price for "gpt-image-1"/);

    t_fails('log_prompt bogus', loc('', 'gi2_log_prompt maybe;'),
        qr/invalid value "maybe"/);
    t_passes('log_prompt on', loc('gi2_log_prompt on;', 'gi2_log_prompt off;'));
}

test_nginx_t();

###########################################################################
# the gateway

gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2' . audit_server()
    gi2_price gpt-image-1 input=5 output=40 image_input=10;
    gi2_price gpt-image-1-mini input=2.5 output=8;
    gi2_price dall-e-3 input=0 output=0;

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_hash_key_file %%PREFIX%%/gi2.key;
        gi2_rule r_nude deny sexual "\bnude\b";
EOF
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /keep/ {
            gi2_user_field keep;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /hash/ {
            gi2_user_field hash;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /drop/ {
            gi2_user_field drop;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /smallbuf/ {
            gi2_user_field drop;
            client_body_buffer_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /rwdrop/ {
            gi2_user_field drop;
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /rwhash/ {
            gi2_user_field hash;
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /logprompt/ {
            gi2_log_prompt on;
            client_max_body_size 10m;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /consumer/ {
            gi2_consumer $http_x_api_key;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /key2/ {
            gi2_hash_key_file %%PREFIX%%/gi2-crlf.key;
            gi2_user_field hash;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /noresp/ {
            gi2_response_inspection off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /ownprice/ {
            gi2_price house-model input=1000 output=2000;
            proxy_pass http://%%UPSTREAM%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        gi2 on;
EOF2
. <<'EOF3');
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /drop/ {
            gi2_user_field drop;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF3

my %USAGE = (input_tokens => 50, output_tokens => 4160,
    total_tokens => 4210,
    input_tokens_details => { text_tokens => 10, image_tokens => 40 },
    output_tokens_details => { text_tokens => 0, image_tokens => 4160 });

sub answer {
    my (%u) = @_;
    return $COMPACT->encode({ created => 1, data => [{ b64_json =>
        encode_base64($PNG, '') }], (%u ? (usage => \%u) : ()) });
}

my $ANSWER = answer(%USAGE);
my $HMAC = sub { 'hmac-sha256:' . hmac_sha256_hex($_[0], $_[1] // $KEY) };

sub post {
    my ($path, $body, @hdrs) = @_;
    my $port = $path =~ s/^:2// ? port(2) : port(1);
    my ($req, $id) = request_bytes('POST', $path, $body, @hdrs);
    return http_send($req, $id, port => $port);
}

# The request reached upstream as exactly $want (Content-Length too, and
# still JSON), the client got the answer, the record is valid.
sub passes {
    my ($name, $path, $body, $want, @hdrs) = @_;
    upstream_reset();
    upstream_response(status => 200, body => $ANSWER,
        headers => [['Content-Type', 'application/json']]);
    my %h = @hdrs;
    unshift @hdrs, Authorization => "Bearer $TOKEN"
        unless exists $h{Authorization};
    my $res = post($path, $body, @hdrs);
    is($res->{status}, 200, "$name: status 200")
        or diag(substr($res->{raw} // '', 0, 400));
    ok($res->{body} eq $ANSWER, "$name: client got upstream's answer");
    my @up = upstream_requests();
    is(scalar @up, 1, "$name: one upstream request");
    my $u = $up[0] || { headers => {} };
    ok(defined $u->{body} && $u->{body} eq $want,
        "$name: upstream body exact")
        or diag("want: $want\ngot:  " . ($u->{body} // '(none)'));
    is(($u->{headers}{'content-length'} || [])->[0], length $want,
        "$name: upstream Content-Length");
    ok(!$u->{chunked}, "$name: upstream body not chunked");
    ok(eval { JSON::PP->new->utf8->decode($u->{body} // ''); 1 },
        "$name: upstream body is JSON") or diag($@);
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record") or diag($a->{error});
    upstream_response();
    return ($res, $a->{v} || {}, $a->{rec} || {}, $u);
}

sub rejected {
    my ($name, $path, $body, $code, $param) = @_;
    upstream_reset();
    my $res = post($path, $body, Authorization => "Bearer $TOKEN");
    is_rejection($res, 400, $code, $param, $name);
    no_upstream($name);
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record") or diag($a->{error});
    is(rec_get($a->{rec}, 'gi2.reject_code'), $code,
        "$name: record reject_code");
    is(rec_get($a->{rec}, 'gi2.upstream.status'), undef,
        "$name: record upstream status null");
    return ($res, $a->{v} || {}, $a->{rec} || {});
}

###########################################################################
# gi2_user_field

sub test_user_keep {
    for my $path ($GEN, "/keep$GEN") {
        for my $body ('{"prompt":"a cat","user":"' . $USER . '"}',
            '{"user":42,"prompt":"a cat"}',
            '{"prompt":"a cat","user":{"id":"x"}}',
            '{"prompt":"a cat","user":null}')
        {
            passes("keep $path $body", $path, $body, $body);
        }
    }
}

sub test_user_hash {
    my $h = $HMAC->($USER);
    for my $c (
        ['last', qq({"prompt":"a cat","user":"$USER"}),
            qq({"prompt":"a cat","user":"$h"})],
        ['first', qq({"user":"$USER","prompt":"a cat"}),
            qq({"user":"$h","prompt":"a cat"})],
        ['middle, spaced', qq({ "prompt" : "a cat" ,\n "user" : "$USER" ,)
            . qq(\n "n" : 1 }\n),
            qq({ "prompt" : "a cat" ,\n "user" : "$h" ,\n "n" : 1 }\n)],
        ['pretty', qq({\n  "model": "gpt-image-1",\n  "user": "$USER",\n)
            . qq(  "prompt": "a cat"\n}),
            qq({\n  "model": "gpt-image-1",\n  "user": "$h",\n)
            . qq(  "prompt": "a cat"\n})],
        ['escaped value', '{"prompt":"a cat","user":"us\u0065r-\"q\" \\\\'
            . ' caf\u00e9"}',
            '{"prompt":"a cat","user":"'
            . $HMAC->("user-\"q\" \\ caf\xc3\xa9") . '"}'],
        ['raw UTF-8 value', qq({"prompt":"a cat","user":"\xe7\x8c\xab"}),
            '{"prompt":"a cat","user":"' . $HMAC->("\xe7\x8c\xab") . '"}'],
        ['empty value', '{"prompt":"a cat","user":""}',
            '{"prompt":"a cat","user":"' . $HMAC->('') . '"}'],
        ['no user', '{"prompt":"a cat","n":1}', '{"prompt":"a cat","n":1}'],
    ) {
        passes("hash $c->[0]", "/hash$GEN", $c->[1], $c->[2]);
    }

    # the hash is the key's: another key (binary, CRLF-ended file) gives
    # another hash
    passes('hash, second key', "/key2$GEN",
        qq({"prompt":"a cat","user":"$USER"}),
        '{"prompt":"a cat","user":"' . $HMAC->($USER, $KEY2) . '"}');

    # with gi2_moderation_low rewrite: two edits in one body
    passes('hash + rewrite', "/rwhash$GEN",
        qq({"user":"$USER","moderation":"low","prompt":"a cat"}),
        qq({"user":"$h","moderation":"auto","prompt":"a cat"}));
    passes('hash + rewrite, user last', "/rwhash$GEN",
        qq({"moderation":"low","prompt":"a cat","user":"$USER"}),
        qq({"moderation":"auto","prompt":"a cat","user":"$h"}));
}

sub test_user_drop {
    for my $c (
        ['last', qq({"prompt":"a cat","user":"$USER"}),
            '{"prompt":"a cat"}'],
        ['first', qq({"user":"$USER","prompt":"a cat"}),
            '{"prompt":"a cat"}'],
        ['middle', qq({"prompt":"a cat","user":"$USER","n":1}),
            '{"prompt":"a cat","n":1}'],
        ['middle, spaced', qq({"prompt":"a cat", "user" : "$USER" , "n":1}),
            '{"prompt":"a cat" , "n":1}'],
        ['first, spaced', qq({ "user":"$USER" , "prompt":"a cat"}),
            '{  "prompt":"a cat"}'],
        ['pretty, first', qq({\n  "user": "$USER",\n  "prompt": "a cat"\n}),
            qq({\n  \n  "prompt": "a cat"\n})],
        ['pretty, last', qq({\n  "prompt": "a cat",\n  "user": "$USER"\n}),
            qq({\n  "prompt": "a cat"\n})],
        ['value with quotes and commas',
            '{"prompt":"a cat","user":"a\",\"b\\\\","n":1}',
            '{"prompt":"a cat","n":1}'],
        ['empty value', '{"prompt":"a cat","user":"","n":2}',
            '{"prompt":"a cat","n":2}'],
        ['no user', '{"prompt":"a cat","n":1}', '{"prompt":"a cat","n":1}'],
    ) {
        passes("drop $c->[0]", "/drop$GEN", $c->[1], $c->[2]);
    }

    # drop needs no key
    passes('drop, no key anywhere', ":2/drop$GEN",
        qq({"prompt":"a cat","user":"$USER","n":1}),
        '{"prompt":"a cat","n":1}');

    # a body in a temp file, the user deep inside it
    my $long = 'a quiet lake at dawn ' x 1000;
    passes('drop from a temp file', "/smallbuf$GEN",
        qq({"prompt":"$long","user":"$USER","size":"1024x1024"}),
        qq({"prompt":"$long","size":"1024x1024"}));

    # a chunked request body
    {
        my $body = qq({"prompt":"a cat","user":"$USER","n":1});
        my $want = '{"prompt":"a cat","n":1}';
        upstream_reset();
        my ($req, $id) = request_bytes('POST', "/drop$GEN", undef,
            'Content-Type' => 'application/json',
            'Transfer-Encoding' => 'chunked');
        my $res = http_send($req . chunked([unpack('(a5)*', $body)]), $id);
        is($res->{status}, 200, 'drop chunked: status');
        my @up = upstream_requests();
        ok(@up == 1 && $up[0]{body} eq $want, 'drop chunked: upstream body')
            or diag($up[0]{body} // '(none)');
        is(($up[0]{headers}{'content-length'} || [])->[0], length $want,
            'drop chunked: Content-Length');
    }

    passes('drop + rewrite', "/rwdrop$GEN",
        qq({"prompt":"a cat","moderation":"low","user":"$USER"}),
        '{"prompt":"a cat","moderation":"auto"}');
    passes('drop + rewrite, user first', "/rwdrop$GEN",
        qq({"user":"$USER","moderation":"low","prompt":"a cat"}),
        '{"moderation":"auto","prompt":"a cat"}');
}

# the 64-byte window (docs/directives.md, gi2_user_field)
sub test_user_window {
    my $v62 = 'u' x 62;                     # 64 bytes with its quotes
    passes('hash, a 64-byte value token', "/hash$GEN",
        qq({"prompt":"a cat","user":"$v62"}),
        '{"prompt":"a cat","user":"' . $HMAC->($v62) . '"}');
    # longer value tokens are hashed as well (this version reads the
    # value forwards from its key; there is no 64-byte limit for hash)
    for my $v ('u' x 63, 'x' x 5000, sha256_hex('someone'),
        'a\\"' x 21)
    {
        (my $dec = $v) =~ s/\\(.)/$1/g;
        passes('hash, a ' . (length($v) + 2) . '-byte value token',
            "/hash$GEN", qq({"prompt":"a cat","user":"$v","n":1}),
            '{"prompt":"a cat","user":"' . $HMAC->($dec) . '","n":1}');
    }

    my $ws63 = ' ' x 63;
    passes('drop, 63 spaces before the key', "/drop$GEN",
        qq({"prompt":"a cat",${ws63}"user":"u1"}),
        '{"prompt":"a cat"}');
    passes('drop, 63 spaces after the value', "/drop$GEN",
        qq({"user":"u1"$ws63,"prompt":"a cat"}),
        '{"prompt":"a cat"}');
    my $ws64 = ' ' x 64;
    rejected('drop, 64 spaces before the key', "/drop$GEN",
        qq({"prompt":"a cat",${ws64}"user":"u1"}), 'gi2_invalid_request',
        'user');
    rejected('drop, 64 spaces after the value', "/drop$GEN",
        qq({"user":"u1"$ws64,"prompt":"a cat"}), 'gi2_invalid_request',
        'user');
}

sub test_user_not_string {
    for my $mode (qw(hash drop)) {
        for my $v ('42', 'null', 'true', '{"id":"u1"}', '["u1"]', '1.5e3') {
            rejected("$mode, user $v", "/$mode$GEN",
                qq({"prompt":"a cat","user":$v}), 'gi2_invalid_request',
                'user');
        }
    }
}

###########################################################################
# hashes

sub test_hashes {
    my $key_id = 'sha256:' . substr(sha256_hex($KEY), 0, 16);

    my $prompt_json = 'caf\u00e9 \ud83d\udc31 \"q\" \\\\ tab\tnl\n end';
    my $prompt = "caf\xc3\xa9 \xf0\x9f\x90\xb1 \"q\" \\ tab\tnl\n end";
    my ($res, $v, $rec) = passes('prompt hash', $GEN,
        qq({"model":"gpt-image-1","prompt":"$prompt_json"}),
        qq({"model":"gpt-image-1","prompt":"$prompt_json"}));
    my $ph = $HMAC->($prompt);
    my $ch = $HMAC->($TOKEN);
    is($v->{prompt_hash}, $ph, 'prompt hash: HMAC of the decoded UTF-8');
    is($v->{consumer_hash}, $ch, 'consumer hash: HMAC of the bearer token');
    is(rec_get($rec, 'gi2.prompt.hash'), $ph, 'record: gi2.prompt.hash');
    is(rec_get($rec, 'user.hash'), $ch, 'record: user.hash');
    is(rec_get($rec, 'gi2.prompt.length'), length $prompt,
        'record: prompt length in bytes');
    is(rec_get($rec, 'gi2.hash_key_id'), $key_id,
        'record: hash_key_id is a SHA-256 fingerprint of the key');
    is_deeply(rec_get($rec, 'related.hash'), [$ph, $ch, sha256_hex($PNG)],
        'record: related.hash');
    is(rec_get($rec, 'gi2.prompt.text'), '(missing)',
        'record: no prompt text by default');

    # "bearer" in any case, spaces after it
    (undef, $v) = passes('bearer lower case', $GEN, '{"prompt":"a"}',
        '{"prompt":"a"}', Authorization => "bearer   $TOKEN");
    is($v->{consumer_hash}, $ch, 'bearer lower case: same consumer');

    # no bearer token: no consumer
    for my $auth (undef, "Basic dXNlcjpwYXNz", 'Bearer') {
        (undef, $v, $rec) = passes('auth ' . ($auth // 'none'), $GEN,
            '{"prompt":"a"}', '{"prompt":"a"}', Authorization => $auth);
        is($v->{consumer_hash}, '', 'auth ' . ($auth // 'none')
            . ': no consumer hash');
        is(rec_get($rec, 'user.hash'), undef,
            'auth ' . ($auth // 'none') . ': user.hash null');
    }

    # gi2_consumer
    (undef, $v, $rec) = passes('gi2_consumer', "/consumer$GEN",
        '{"prompt":"a"}', '{"prompt":"a"}', 'X-Api-Key' => 'team-blue-01');
    is($v->{consumer_hash}, $HMAC->('team-blue-01'),
        'gi2_consumer: HMAC of its value');

    # the second key: binary, its file ends in CRLF
    (undef, $v, $rec) = passes('second key', "/key2$GEN", '{"prompt":"a"}',
        '{"prompt":"a"}');
    is($v->{prompt_hash}, $HMAC->('a', $KEY2),
        'second key: CRLF not part of the key');
    is($v->{consumer_hash}, $HMAC->($TOKEN, $KEY2),
        'second key: consumer hash');
    is(rec_get($rec, 'gi2.hash_key_id'),
        'sha256:' . substr(sha256_hex($KEY2), 0, 16), 'second key: key id');

    # no key: no hashes at all
    (undef, $v, $rec) = passes('no key', ":2$GEN",
        '{"prompt":"a cat","user":"u"}', '{"prompt":"a cat","user":"u"}');
    is($v->{prompt_hash}, '', 'no key: $gi2_prompt_hash empty');
    is($v->{consumer_hash}, '', 'no key: $gi2_consumer_hash empty');
    is(rec_get($rec, 'gi2.prompt.hash'), undef, 'no key: prompt hash null');
    is(rec_get($rec, 'user.hash'), undef, 'no key: user.hash null');
    is(rec_get($rec, 'gi2.hash_key_id'), undef, 'no key: key id null');
    is_deeply(rec_get($rec, 'related.hash'), [sha256_hex($PNG)],
        'no key: related.hash holds the image only');
    is(rec_get($rec, 'gi2.prompt.length'), 5, 'no key: prompt length');
}

###########################################################################
# gi2_price

sub cost_case {
    my ($name, $path, $model, $usage, $want) = @_;
    upstream_reset();
    my $answer = answer(%$usage);
    upstream_response(status => 200, body => $answer,
        headers => [['Content-Type', 'application/json']]);
    my $body = '{"prompt":"a cat"' . (defined $model ? qq(,"model":$model)
        : '') . '}';
    my $res = post($path, $body);
    upstream_response();
    is($res->{status}, 200, "$name: status");
    ok($res->{body} eq $answer, "$name: client body");
    my @up = upstream_requests();
    ok(@up == 1 && $up[0]{body} eq $body, "$name: upstream body");
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record") or diag($a->{error});
    my $v = $a->{v} || {};
    my $c = rec_get($a->{rec}, 'gi2.cost.usd');
    if (!defined $want) {
        is($v->{cost_usd}, '', "$name: \$gi2_cost_usd empty");
        is($c, undef, "$name: gi2.cost.usd null");
        return;
    }
    is($v->{cost_usd}, sprintf('%.6f', $want),
        "$name: \$gi2_cost_usd " . sprintf('%.6f', $want));
    ok(defined $c && !ref $c && $a->{line} =~ /"usd":[0-9]/
        && abs($c - $want) < 1e-9, "$name: gi2.cost.usd is the number $want")
        or diag('cost: ' . ($c // 'null'));
}

sub test_price {
    my %mini = (input_tokens => 50, output_tokens => 1000,
        total_tokens => 1050,
        input_tokens_details => { text_tokens => 10, image_tokens => 40 });
    cost_case('image_input price', $GEN, '"gpt-image-1"', \%USAGE,
        (10 * 5 + 40 * 10 + 4160 * 40) / 1e6);
    cost_case('no image_input price', $GEN, '"gpt-image-1-mini"', \%mini,
        (50 * 2.5 + 1000 * 8) / 1e6);
    cost_case('no details', $GEN, '"gpt-image-1"',
        { input_tokens => 100, output_tokens => 200, total_tokens => 300 },
        (100 * 5 + 200 * 40) / 1e6);
    cost_case('text tokens only', $GEN, '"gpt-image-1"',
        { input_tokens => 7, output_tokens => 1,
          input_tokens_details => { text_tokens => 7, image_tokens => 0 } },
        (7 * 5 + 1 * 40) / 1e6);
    cost_case('one token', $GEN, '"gpt-image-1"',
        { input_tokens => 1, output_tokens => 0 }, 5 / 1e6);
    cost_case('free model', $GEN, '"dall-e-3"', \%USAGE, 0);
    cost_case('escaped model name', $GEN, '"gpt\u002dimage-1"', \%USAGE,
        (10 * 5 + 40 * 10 + 4160 * 40) / 1e6);
    cost_case('unknown model', $GEN, '"gpt-image-2"', \%USAGE, undef);
    cost_case('model prefix only', $GEN, '"gpt-image"', \%USAGE, undef);
    cost_case('model in other case', $GEN, '"GPT-IMAGE-1"', \%USAGE, undef);
    cost_case('no model', $GEN, undef, \%USAGE, undef);
    cost_case('model not a string', $GEN, '1', \%USAGE, undef);
    cost_case('no usage', $GEN, '"gpt-image-1"', {}, undef);
    cost_case('output tokens missing', $GEN, '"gpt-image-1"',
        { input_tokens => 5 }, undef);
    cost_case('http-level prices in a location', "/hash$GEN",
        '"gpt-image-1-mini"', \%mini, (50 * 2.5 + 1000 * 8) / 1e6);
    cost_case('own price list', "/ownprice$GEN", '"house-model"',
        { input_tokens => 3, output_tokens => 4 }, (3 * 1000 + 4 * 2000) / 1e6);
    cost_case('own price list hides the inherited ones', "/ownprice$GEN",
        '"gpt-image-1"', \%USAGE, undef);
    # more image tokens than input tokens: never a negative cost
    upstream_reset();
    upstream_response(status => 200, headers => [['Content-Type',
        'application/json']], body => answer(input_tokens => 10,
        output_tokens => 1, input_tokens_details => { image_tokens => 40 }));
    my $res = post($GEN, '{"prompt":"a","model":"gpt-image-1"}');
    my $a = audit_for($res);
    is($a->{v}{cost_usd}, sprintf('%.6f', (10 * 5 + 1 * 40) / 1e6),
        'image tokens > input tokens: all input priced at input=');
    upstream_response();
}

###########################################################################
# gi2_log_prompt and what never reaches a log

sub test_log_prompt {
    my $text = "$MARK q\"uo\\te\r\n\ttab \x{2028}\x{2029} caf\x{e9} \x{1f431}"
        . " \x{7f} \x{1}";
    my $json = JSON::PP->new->ascii->encode({ prompt => $text,
        model => 'gpt-image-1' });
    my ($res, $v, $rec) = passes('log_prompt on', "/logprompt$GEN", $json,
        $json);
    is(rec_get($rec, 'gi2.prompt.text'), $text,
        'log_prompt on: the exact prompt, hostile characters and all');
    my $bytes = $text;
    utf8::encode($bytes);
    is(rec_get($rec, 'gi2.prompt.length'), length $bytes,
        'log_prompt on: length in bytes');
    is(rec_get($rec, 'gi2.prompt.hash'), $HMAC->($bytes),
        'log_prompt on: hash as well');

    # a prompt far bigger than the record's base buffer, all escapes
    my $big = "\"\\\x{1}\n" x 30000;
    $json = JSON::PP->new->ascii->encode({ prompt => $big });
    (undef, $v, $rec) = passes('log_prompt on, 120 KB of escapes',
        "/logprompt$GEN", $json, $json);
    ok(rec_get($rec, 'gi2.prompt.text') eq $big,
        'log_prompt on, big: the whole prompt, not cut')
        or diag('got ' . length(rec_get($rec, 'gi2.prompt.text') // '')
            . ' characters of ' . length $big);
    is(rec_get($rec, 'gi2.record_overflow'), '(missing)',
        'log_prompt on, big: no overflow record');

    # multi-byte characters across the 32 KiB mark
    my $cjk = "\x{732b}" x 12000;                     # 36000 bytes
    $json = JSON::PP->new->utf8->encode({ prompt => $cjk });
    (undef, $v, $rec) = passes('log_prompt on, 36 KB of CJK',
        "/logprompt$GEN", $json, $json);
    ok(rec_get($rec, 'gi2.prompt.text') eq $cjk,
        'log_prompt on, CJK: the whole prompt, not cut')
        or diag('got ' . length(rec_get($rec, 'gi2.prompt.text') // '')
            . ' characters of 12000, ending in U+' . sprintf('%04X',
            ord(substr(rec_get($rec, 'gi2.prompt.text') // "\0", -1))));

    # off: the hash and the length only
    $json = qq({"prompt":"$MARK off"});
    (undef, $v, $rec) = passes('log_prompt off', $GEN, $json, $json);
    is(rec_get($rec, 'gi2.prompt.text'), '(missing)',
        'log_prompt off: no text');
}

# gi2_response_inspection off: the request is screened, the answer is
# passed on unread and the record says so

sub test_response_inspection_off {
    my $json = '{"model":"gpt-image-1","prompt":"a cat"}';
    my ($res, $v, $rec) = passes('response inspection off', "/noresp$GEN",
        $json, $json);
    is(rec_get($rec, 'gi2.decision'), 'allow', 'inspection off: decision');
    is(rec_get($rec, 'gi2.response.inspected'), 'false',
        'inspection off: response not inspected');
    is(rec_get($rec, 'gi2.images.count'), undef,
        'inspection off: no image count');
    is_deeply(rec_get($rec, 'gi2.images.items'), [],
        'inspection off: no image hashes');
    is(rec_get($rec, 'gi2.upstream.status'), 200,
        'inspection off: upstream status still recorded');
    ok(($v->{image_sha256} // '') eq '',
        'inspection off: $gi2_image_sha256 empty');
    rejected('inspection off, prompt rule still applies', "/noresp$GEN",
        '{"prompt":"a nude cat"}', 'gi2_prompt_rejected', 'prompt');
}


sub test_privacy {
    # a spread of requests carrying the marker, the token and the user id
    my $p1 = qq({"prompt":"$MARK one","user":"$USER"});
    passes('privacy keep', $GEN, $p1, $p1);
    passes('privacy hash', "/hash$GEN", $p1,
        qq({"prompt":"$MARK one","user":") . $HMAC->($USER) . '"}');
    passes('privacy drop', "/drop$GEN", $p1, qq({"prompt":"$MARK one"}));
    rejected('privacy rejected prompt', $GEN,
        qq({"prompt":"$MARK a nude","user":"$USER"}), 'gi2_prompt_rejected',
        'prompt');
    rejected('privacy rejected user', "/drop$GEN",
        qq({"prompt":"$MARK","user":["$USER"]}), 'gi2_invalid_request',
        'user');
    rejected('privacy invalid json', $GEN,
        qq({"prompt":"$MARK" "user":"$USER"}), 'gi2_invalid_request', undef);
    upstream_reset();
    upstream_response(status => 400, headers => [['Content-Type',
        'application/json']], body => qq({"error":{"message":"Prompt )
        . qq('$MARK' for $USER rejected","type":"image_generation_user_)
        . qq(error","code":"moderation_blocked","param":null}}));
    my $res = post($GEN, $p1, Authorization => "Bearer $TOKEN");
    is($res->{status}, 400, 'privacy upstream error: status');
    audit_for($res);
    upstream_response();

    my $p = prefix();
    my @lines = split /\n/, (read_file("$p/audit.log") // '');
    for my $f (qw(access.log vars.log error.log)) {
        my $t = (read_file("$p/$f") // '');
        ok(index($t, $MARK) < 0, "$f: no prompt text");
        ok(index($t, $TOKEN) < 0, "$f: no bearer token");
        ok(index($t, $USER) < 0, "$f: no user id");
    }
    my @leak = grep { index($_, $MARK) >= 0
        && index($_, '"path":"/logprompt/') < 0 } @lines;
    ok(!@leak, 'audit.log: the prompt only where gi2_log_prompt is on')
        or diag(substr($leak[0], 0, 500));
    ok(!grep({ index($_, $TOKEN) >= 0 } @lines), 'audit.log: no token');
    ok(!grep({ index($_, $USER) >= 0 } @lines), 'audit.log: no user id');
    like((read_file("$p/error.log") // ''), qr/\[info\]/,
        'error.log is at info level');
}

###########################################################################
# hostile input: one valid record whatever the request holds

sub test_hostile {
    my @bodies = (
        ['model with controls and quotes',
            '{"prompt":"a","model":"gpt\"\\\\\u0001\u2028\n\u0000x"}', 200],
        ['invalid UTF-8 in the model', qq({"prompt":"a","model":"gpt-\xff\xfe"}),
            400],
        ['invalid UTF-8 in the prompt', qq({"prompt":"a \xc3\x28 b"}), 400],
        ['lone surrogate escape', '{"prompt":"a \ud800 b"}', 400],
        ['size and quality hostile',
            '{"prompt":"a","size":"1\"\\\\\u2028","quality":"\u00ff\r"}',
            200],
    );
    for my $b (@bodies) {
        my ($name, $body, $status) = @$b;
        upstream_reset();
        my $res = post($GEN, $body, Authorization => "Bearer $TOKEN",
            'X-Stainless-Retry-Count' => "1\"\\");
        is($res->{status}, $status, "hostile $name: status $status")
            or diag(substr($res->{raw}, 0, 300));
        my @up = upstream_requests();
        if ($status == 200) {
            ok(@up == 1 && $up[0]{body} eq $body,
                "hostile $name: upstream body unchanged");
        } else {
            is(scalar @up, 0, "hostile $name: nothing upstream");
            is($res->{json}{error}{code}, 'gi2_invalid_request',
                "hostile $name: gi2_invalid_request");
        }
        my $a = audit_for($res);
        ok(!$a->{error}, "hostile $name: record is strict UTF-8 JSON")
            or diag(($a->{error} // '') . "\n" . ($a->{line} // ''));
        ok(($a->{line} // '') !~ /[\x00-\x1f\x7f]/,
            "hostile $name: no raw control characters");
        is(rec_get($a->{rec}, 'gi2.retry_count'), undef,
            "hostile $name: retry count not a number: null");
        if ($name eq 'model with controls and quotes') {
            is(rec_get($a->{rec}, 'gen_ai.request.model'),
                "gpt\"\\\x{1}\x{2028}\n\x{0}x",
                'hostile model: decoded value, escaped in the record');
        }
        if ($name eq 'size and quality hostile') {
            is(rec_get($a->{rec}, 'gi2.request.size'), "1\"\\\x{2028}",
                'hostile size');
            is(rec_get($a->{rec}, 'gi2.request.quality'), "\x{ff}\r",
                'hostile quality');
        }
        if ($status == 400) {
            is(rec_get($a->{rec}, 'gen_ai.request.model'), undef,
                "hostile $name: no model from a rejected body");
        }
    }

    # a hostile exception header: rejected, and still a valid record
    for my $hv ("EX\"\\\x01\xff\xc3", "\xe2\x80\xa8\x7f" . ('\\' x 200)) {
        upstream_reset();
        my $res = post($GEN, '{"prompt":"a","moderation":"low"}',
            'X-GI2-Exception' => $hv);
        is_rejection($res, 400, 'gi2_moderation_exception_invalid',
            'moderation', 'hostile exception header');
        no_upstream('hostile exception header');
        my $a = audit_for($res);
        ok(!$a->{error}, 'hostile exception header: record')
            or diag(($a->{error} // '') . "\n" . ($a->{line} // ''));
        ok(($a->{line} // '') !~ /[\x00-\x1f\x7f]/,
            'hostile exception header: no raw control characters');
        my $want = $hv =~ /^EX/ ? "EX\"\\\x{1}\x{fffd}\x{fffd}"
            : "\x{2028}\x{7f}" . ('\\' x 124);
        is(rec_get($a->{rec}, 'gi2.exception.presented'), $want,
            'hostile exception header: escaped, repaired, cut at 128 bytes');
    }

    # retry counts
    for my $rc (['0', 0], ['3', 3], ['-1', undef], ['abc', undef],
        ['99999999999999999999999', undef], ['+2', undef], ['2.0', undef],
        ['  7  ', 7])
    {
        my (undef, $v, $rec) = passes("retry count '$rc->[0]'", $GEN,
            '{"prompt":"a"}', '{"prompt":"a"}',
            'X-Stainless-Retry-Count' => $rc->[1] // $rc->[0]);
        is(rec_get($rec, 'gi2.retry_count'), $rc->[1],
            "retry count '$rc->[0]': " . ($rc->[1] // 'null'));
        is($v->{retry_count}, $rc->[1] // '',
            "retry count '$rc->[0]': variable");
    }
}

test_user_keep();
test_user_hash();
test_user_drop();
test_user_window();
test_user_not_string();
test_hashes();
test_price();
test_log_prompt();
test_response_inspection_off();
test_privacy();
test_hostile();
error_log_clean();
done_testing();
