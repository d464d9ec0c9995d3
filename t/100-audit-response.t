#!/usr/bin/perl

# The response side of the audit: what the body filter reads of real-shaped
# upstream answers (images, URLs, usage, errors, gzip and deflate, cut,
# malformed and absurd bodies, upstream failures), through the variables
# and the $gi2_log_json record.  Every case checks the status, that the
# client got exactly what upstream sent, what upstream received, and the
# record (parsed as strict UTF-8 JSON).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Compress::Zlib qw(compress);
use Digest::SHA qw(sha256_hex hmac_sha256_hex);
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Compress::RawDeflate qw(rawdeflate $RawDeflateError);
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);

require_module();

my $KEY = 'k3y-for-the-audit-tests-0123456789';
my $TOKEN = 'sk-proj-AuditToken-5f3a9c';
my $GEN = '/v1/images/generations';

write_file('gi2.key', "$KEY\n");

gi2_start(audit_http() . <<'EOF' . audit_server() . <<'EOF2');
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_price gpt-image-1 input=5 output=40 image_input=10;

    upstream u_retry {
        server 127.0.0.1:%%PORT2%%;
        server %%UPSTREAM%% backup;
    }
    upstream u_fail {
        server %%UPSTREAM%%;
        server 127.0.0.1:%%PORT2%% backup;
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
EOF
        location / {
            proxy_pass http://%%UPSTREAM%%;
        }

        location /down/ {
            proxy_pass http://127.0.0.1:%%PORT2%%;
        }

        location /absurd/ {
            gi2_price gpt-image-1 input=100000 output=100000;
            proxy_pass http://%%UPSTREAM%%;
        }

        location /nobuf/ {
            proxy_buffering off;
            proxy_pass http://%%UPSTREAM%%;
        }

        location /retry/ {
            proxy_pass http://u_retry;
        }

        location /fail/ {
            proxy_next_upstream error timeout http_500 non_idempotent;
            proxy_pass http://u_fail;
        }

        location /slow/ {
            proxy_read_timeout 1s;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2

my $PRETTY = JSON::PP->new->pretty->canonical;
my $COMPACT = JSON::PP->new->canonical;

###########################################################################
# images and bodies

my $PNG1 = img_png(2, 3);
my $PNG_C2PA = img_png(4, 4, c2pa => 'before');
my $PNG_C2PA_LATE = img_png(5, 1, c2pa => 'after');
my $JPEG = img_jpeg(7, 5);
my $JPEG_C2PA = img_jpeg(640, 480, c2pa => 1);
my $JPEG_APP11 = img_jpeg(9, 9, app11 => 1);
my $WEBP = img_webp(3, 2);
my $WEBP_C2PA = img_webp(1024, 768, c2pa => 1);

sub b64 { return encode_base64($_[0], '') }

my %USAGE = (input_tokens => 50, output_tokens => 4160,
    total_tokens => 4210,
    input_tokens_details => { text_tokens => 10, image_tokens => 40 },
    output_tokens_details => { text_tokens => 0, image_tokens => 4160 });
# image_input=10 prices the 40 image tokens, input=5 the other 10
my $COST = (10 * 5 + 40 * 10 + 4160 * 40) / 1e6;

# An images API answer as OpenAI writes it (pretty-printed).
sub images_body {
    my (%o) = @_;
    return $PRETTY->encode({ created => 1713833628, background => 'opaque',
        data => [map { { b64_json => b64($_) } } @{ $o{images} }],
        output_format => 'png', quality => 'high', size => '1024x1024',
        ($o{no_usage} ? () : (usage => $o{usage} || \%USAGE)) });
}

sub item {
    my ($img, $fmt, $w, $h, %o) = @_;
    return { sha256 => sha256_hex($img), bytes => length $img,
        format => $fmt, width => $w, height => $h,
        c2pa => $o{c2pa} ? 'true' : 'false', truncated => 'false',
        bad_base64 => 'false' };
}

my $JSON_H = [['Content-Type', 'application/json'],
    ['x-request-id', 'req_7b2c1f0e9d8a']];

###########################################################################
# one exchange, all of it checked

my $CASES = 0;

sub vars_dump { return 'vars: ' . $COMPACT->encode($_[0] || {}) }

# case(name, body, path, headers, upstream => {...}, status,
#      client => exact body | sub, upstream_body => what upstream must
#      get (default: body; undef: nothing), vars => {...}, rec => {...},
#      items => [...], check => sub)
sub case {
    my (%c) = @_;
    my $name = $c{name};
    $CASES++;
    upstream_reset();
    upstream_response(%{ $c{upstream} || {} });
    my @hdrs = @{ $c{headers} || [Authorization => "Bearer $TOKEN"] };
    my $t0 = time();
    my $res = http_post($c{path} // $GEN, $c{body}, @hdrs);
    my $elapsed = time() - $t0;
    upstream_response();

    is($res->{status}, $c{status}, "$name: status $c{status}")
        or diag('response: ' . substr($res->{raw} // '', 0, 400));

    # what the client got
    my $u = $c{upstream} || {};
    my $sent = defined $u->{pieces} ? join('', @{ $u->{pieces} })
        : $u->{body};
    if (ref $c{client} eq 'CODE') {
        $c{client}->($res, $sent);
    } elsif (exists $c{client}) {
        ok($res->{body} eq $c{client}, "$name: client body")
            or diag('got: ' . substr($res->{body}, 0, 300));
    } elsif (defined $sent) {
        ok($res->{body} eq $sent,
            "$name: the client got upstream's body byte for byte")
            or diag(sprintf("sent %d bytes, client got %d: %s",
                length $sent, length $res->{body},
                substr($res->{body}, 0, 300)));
    }

    # what upstream got
    my @up = upstream_requests();
    my $want_up = exists $c{upstream_body} ? $c{upstream_body} : $c{body};
    if (defined $want_up) {
        is(scalar @up, 1, "$name: one upstream request");
        ok(@up && $up[0]{body} eq $want_up,
            "$name: upstream got the request body unchanged")
            or diag('upstream got: ' . substr($up[0]{body} // '', 0, 300));
    } else {
        is(scalar @up, 0, "$name: nothing reached upstream");
    }

    # the variables and the record
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: record is strict UTF-8 JSON")
        or diag(($a->{error} // '') . "\n" . substr($a->{line} // '', 0, 2000));
    my $rec = $a->{rec} || {};
    my $v = $a->{v} || {};
    ok(($a->{line} // '') !~ /[\x00-\x1f]/, "$name: record on one line");

    if ($c{vars}) {
        my %got = map { $_ => $v->{$_} } keys %{ $c{vars} };
        is_deeply(\%got, $c{vars}, "$name: variables")
            or diag(vars_dump($v));
    }
    if ($c{rec}) {
        my %got = map { $_ => rec_get($rec, $_) } keys %{ $c{rec} };
        is_deeply(\%got, $c{rec}, "$name: record fields")
            or diag('record: ' . substr($a->{line} // '', 0, 3000));
    }
    if ($c{items}) {
        is_deeply(rec_get($rec, 'gi2.images.items'), $c{items},
            "$name: image items")
            or diag('items: ' . $COMPACT->encode(
                $rec->{gi2}{images}{items} // []));
    }
    $c{check}->($res, $v, $rec, $a->{line}, \@up, $elapsed) if $c{check};
    return ($res, $v, $rec);
}


my $PH = sub { 'hmac-sha256:' . hmac_sha256_hex($_[0], $KEY) };
my $CH = 'hmac-sha256:' . hmac_sha256_hex($TOKEN, $KEY);

###########################################################################
# images

sub test_one_image {
    my $body = '{"model":"gpt-image-1","prompt":"a red square","n":1,'
        . '"size":"1024x1024","quality":"high"}';
    case(name => 'one image', body => $body,
        headers => [Authorization => "Bearer $TOKEN",
            'X-Stainless-Retry-Count' => '2'],
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => [$PNG1]) },
        status => 200,
        vars => { upstream_status => '200', nginx_upstream_status => '200',
            image_sha256 => sha256_hex($PNG1), image_count => '1',
            input_tokens => '50', output_tokens => '4160',
            total_tokens => '4210', error_type => '', error_code => '',
            moderation_stage => '', moderation_categories => '',
            request_id => 'req_7b2c1f0e9d8a', retry_count => '2',
            prompt_hash => $PH->('a red square'), consumer_hash => $CH,
            cost_usd => sprintf('%.6f', $COST), decision => 'allow' },
        rec => { 'http.response.status_code' => 200,
            'event.type' => ['access', 'allowed'],
            'event.outcome' => 'success',
            'gi2.upstream.status' => 200,
            'gi2.upstream.request_id' => 'req_7b2c1f0e9d8a',
            'gi2.upstream.error.type' => undef,
            'gi2.upstream.error.code' => undef,
            'gi2.upstream.error.param' => undef,
            'gi2.upstream.error.moderation_stage' => undef,
            'gi2.upstream.error.categories' => [],
            'error.type' => undef, 'error.code' => undef,
            'gi2.response.inspected' => 'true',
            'gi2.response.stream' => 'false',
            'gi2.response.truncated' => 'false',
            'gi2.response.malformed' => 'false',
            'gi2.response.content_encoding' => undef,
            'gi2.images.count' => 1, 'gi2.images.partial_count' => 0,
            'gi2.images.url_count' => 0,
            'gen_ai.usage.input_tokens' => 50,
            'gen_ai.usage.output_tokens' => 4160,
            'gi2.usage.total_tokens' => 4210,
            'gi2.usage.input_text_tokens' => 10,
            'gi2.usage.input_image_tokens' => 40,
            'gi2.usage.output_image_tokens' => 4160,
            'gi2.retry_count' => 2,
            'gi2.prompt.hash' => $PH->('a red square'),
            'user.hash' => $CH,
            'related.hash' => [$PH->('a red square'), $CH,
                sha256_hex($PNG1)] },
        items => [item($PNG1, 'png', 2, 3)],
        check => sub {
            my ($res, $v, $rec) = @_;
            my $c = rec_get($rec, 'gi2.cost.usd');
            ok(defined $c && !ref $c && abs($c - $COST) < 1e-9,
                "one image: gi2.cost.usd is the number $COST")
                or diag('cost: ' . ($c // 'null'));
            like($v->{cost_usd}, qr/^\d+\.\d{6}$/,
                'one image: $gi2_cost_usd has 6 decimals');
        });
}

sub test_three_images {
    my $body = '{"model":"gpt-image-1","prompt":"three formats","n":3}';
    my @img = ($PNG_C2PA, $JPEG_C2PA, $WEBP);
    case(name => 'n=3, png jpeg webp', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => \@img) },
        status => 200,
        vars => { image_sha256 => join(',', map { sha256_hex($_) } @img),
            image_count => '3' },
        rec => { 'gi2.images.count' => 3,
            'related.hash' => [$PH->('three formats'), $CH,
                map { sha256_hex($_) } @img] },
        items => [item($PNG_C2PA, 'png', 4, 4, c2pa => 1),
            item($JPEG_C2PA, 'jpeg', 640, 480, c2pa => 1),
            item($WEBP, 'webp', 3, 2)]);

    @img = ($JPEG, $JPEG_APP11, $WEBP_C2PA, $PNG_C2PA_LATE);
    case(name => 'n=4, c2pa variants', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => \@img) },
        status => 200,
        vars => { image_sha256 => join(',', map { sha256_hex($_) } @img),
            image_count => '4' },
        items => [item($JPEG, 'jpeg', 7, 5),
            item($JPEG_APP11, 'jpeg', 9, 9),
            item($WEBP_C2PA, 'webp', 1024, 768, c2pa => 1),
            item($PNG_C2PA_LATE, 'png', 5, 1, c2pa => 1)]);

    # not an image format it knows: still hashed, format unknown
    my $blob = "GIF89a\x01\x00\x01\x00" . ("\x00" x 20);
    case(name => 'unknown format', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => [$blob]) },
        status => 200,
        vars => { image_sha256 => sha256_hex($blob), image_count => '1' },
        items => [{ sha256 => sha256_hex($blob), bytes => length $blob,
            format => undef, width => undef, height => undef,
            c2pa => 'false', truncated => 'false',
            bad_base64 => 'false' }]);
}

sub test_escaped_base64 {
    # "\/" is a JSON escape of "/": the same base64, the same image
    my $img = img_png(17, 13, c2pa => 'before');
    my $b = b64($img);
    ok($b =~ m{/}, 'escaped base64: the base64 has a slash')
        or $b .= '';
    (my $esc = $b) =~ s{/}{\\/}g;
    case(name => 'escaped slashes in base64',
        body => '{"prompt":"slashes","model":"gpt-image-1"}',
        upstream => { status => 200, headers => $JSON_H,
            body => qq({"created":1,"data":[{"b64_json":"$esc"}]}) },
        status => 200,
        vars => { image_sha256 => sha256_hex($img) },
        items => [item($img, 'png', 17, 13, c2pa => 1)]);

    # characters outside base64 are skipped and flagged
    my $bad = $b;
    substr($bad, 8, 0) = '!*';
    case(name => 'bad base64',
        body => '{"prompt":"bad base64","model":"gpt-image-1"}',
        upstream => { status => 200, headers => $JSON_H,
            body => qq({"created":1,"data":[{"b64_json":"$bad"}]}) },
        status => 200,
        rec => { 'gi2.images.items' => [{ %{ item($img, 'png', 17, 13,
            c2pa => 1) }, bad_base64 => 'true' }] });
}

sub test_urls {
    my $body = '{"model":"dall-e-3","prompt":"a lighthouse","n":2,'
        . '"response_format":"url"}';
    my $resp = $PRETTY->encode({ created => 1713833628, data => [
        { url => 'https://oaidalleapiprodscus.blob.core.windows.net/'
            . 'private/org-x/user-y/img-1.png?st=2026-04-22T08%3A14%3A03Z'
            . '&se=2026-04-22T10%3A14%3A03Z&sp=r&sig=abc%2Bdef%3D',
          revised_prompt => 'A tall lighthouse at dusk' },
        { url => 'https://example.test/img-2.png' }] });
    case(name => 'url answer', body => $body,
        upstream => { status => 200, headers => $JSON_H, body => $resp },
        status => 200,
        vars => { image_sha256 => '', image_count => '0',
            input_tokens => '', cost_usd => '', upstream_status => '200' },
        rec => { 'gi2.images.url_count' => 2, 'gi2.images.count' => 0,
            'gi2.images.items' => [], 'gi2.cost.usd' => undef,
            'gen_ai.usage.input_tokens' => undef,
            'related.hash' => [$PH->('a lighthouse'), $CH] },
        check => sub {
            my ($res, $v, $rec, $line) = @_;
            ok(index($line, 'oaidalleapiprodscus') < 0
                && index($line, 'example.test') < 0,
                'url answer: no image URL in the record');
        });
}

###########################################################################
# upstream errors

my $SAFETY = 'Your request was rejected by the safety system. If you '
    . 'believe this is an error, contact us at help.openai.com and '
    . 'include the request ID req_1a2b3c. safety_violations=[sexual].';

sub test_moderation_blocked {
    my $body = '{"model":"gpt-image-1","prompt":"a figure on a beach"}';
    my $err = $PRETTY->encode({ error => { message => $SAFETY,
        type => 'image_generation_user_error', param => undef,
        code => 'moderation_blocked', moderation_details => {
            moderation_stage => 'output', categories => ['sexual'] } } });
    case(name => 'moderation_blocked', body => $body,
        upstream => { status => 400, headers => $JSON_H, body => $err },
        status => 400,
        vars => { upstream_status => '400',
            error_type => 'image_generation_user_error',
            error_code => 'moderation_blocked', moderation_stage => 'output',
            moderation_categories => 'sexual', image_sha256 => '',
            image_count => '0', cost_usd => '', decision => 'allow' },
        rec => { 'http.response.status_code' => 400,
            'event.type' => ['access', 'error'],
            'event.outcome' => 'failure', 'event.action' => 'allow',
            'error.type' => 'image_generation_user_error',
            'error.code' => 'moderation_blocked',
            'gi2.decision' => 'allow', 'gi2.reject_code' => undef,
            'gi2.upstream.status' => 400,
            'gi2.upstream.error.type' => 'image_generation_user_error',
            'gi2.upstream.error.code' => 'moderation_blocked',
            'gi2.upstream.error.param' => undef,
            'gi2.upstream.error.moderation_stage' => 'output',
            'gi2.upstream.error.categories' => ['sexual'],
            'gi2.response.malformed' => 'false',
            'gi2.response.truncated' => 'false',
            'gi2.images.count' => 0, 'gi2.cost.usd' => undef },
        check => sub {
            my ($res, $v, $rec, $line) = @_;
            ok(index($line, 'safety_violations') < 0
                && index($line, 'rejected by the safety') < 0,
                'moderation_blocked: the error message is not logged');
        });

    # input stage, several categories, compact, the details first
    $err = '{"error":{"moderation_details":{"categories":["sexual",'
        . '"violence","self-harm"],"moderation_stage":"input"},'
        . '"code":"moderation_blocked","param":"prompt","type":'
        . '"image_generation_user_error","message":"Your request was '
        . 'rejected by the safety system."}}';
    case(name => 'moderation_blocked, input, 3 categories', body => $body,
        upstream => { status => 400, headers => $JSON_H, body => $err },
        status => 400,
        vars => { moderation_stage => 'input',
            moderation_categories => 'sexual,violence,self-harm',
            error_code => 'moderation_blocked' },
        rec => { 'gi2.upstream.error.categories' =>
                ['sexual', 'violence', 'self-harm'],
            'gi2.upstream.error.param' => 'prompt',
            'gi2.upstream.error.moderation_stage' => 'input' });
}

sub test_content_policy_violation {
    my $body = '{"model":"dall-e-3","prompt":"something"}';
    my $err = "{\n  \"error\": {\n    \"code\": \"content_policy_violation\""
        . ",\n    \"message\": \"Your request was rejected as a result of "
        . "our safety system. Your prompt may contain text that is not "
        . "allowed by our safety system.\",\n    \"param\": null,\n    "
        . "\"type\": \"invalid_request_error\"\n  }\n}\n";
    case(name => 'content_policy_violation', body => $body,
        upstream => { status => 400, headers => $JSON_H, body => $err },
        status => 400,
        vars => { error_type => 'invalid_request_error',
            error_code => 'content_policy_violation',
            moderation_stage => '', moderation_categories => '',
            upstream_status => '400' },
        rec => { 'error.code' => 'content_policy_violation',
            'error.type' => 'invalid_request_error',
            'gi2.upstream.error.code' => 'content_policy_violation',
            'gi2.upstream.error.moderation_stage' => undef,
            'gi2.upstream.error.categories' => [],
            'event.type' => ['access', 'error'] });
}

sub test_rate_limit {
    my $body = '{"model":"gpt-image-1","prompt":"a cat"}';
    my $err = "{\n    \"error\": {\n        \"message\": \"Rate limit "
        . "reached for gpt-image-1 in organization org-abc on images per "
        . "minute (IPM): Limit 5, Used 5, Requested 1. Please try again in "
        . "12s.\",\n        \"type\": \"requests\",\n        \"param\": "
        . "null,\n        \"code\": \"rate_limit_exceeded\"\n    }\n}\n";
    my ($res) = case(name => '429 rate limit', body => $body,
        upstream => { status => 429, body => $err, headers => [
            ['Content-Type', 'application/json'],
            ['x-request-id', 'req_429'], ['retry-after', '12'],
            ['x-ratelimit-limit-requests', '5'],
            ['x-ratelimit-remaining-requests', '0']] },
        headers => [Authorization => "Bearer $TOKEN",
            'X-Stainless-Retry-Count' => '0'],
        status => 429,
        vars => { upstream_status => '429', error_type => 'requests',
            error_code => 'rate_limit_exceeded', request_id => 'req_429',
            retry_count => '0', image_count => '0' },
        rec => { 'error.code' => 'rate_limit_exceeded',
            'gi2.upstream.status' => 429, 'gi2.retry_count' => 0,
            'gi2.upstream.request_id' => 'req_429',
            'event.outcome' => 'failure' });
    is_deeply([header_values($res, 'retry-after')], ['12'],
        '429: upstream headers reach the client');
}

sub test_server_error {
    my $err = '{"error":{"message":"The server had an error processing '
        . 'your request. Sorry about that!","type":"server_error",'
        . '"param":null,"code":null}}';
    case(name => 'upstream 500', body => '{"prompt":"a cat"}',
        upstream => { status => 500, headers => $JSON_H, body => $err },
        status => 500,
        vars => { upstream_status => '500', error_type => 'server_error',
            error_code => '', model => '' },
        rec => { 'error.type' => 'server_error', 'error.code' => undef,
            'gi2.upstream.error.code' => undef,
            'gi2.upstream.status' => 500,
            'gen_ai.request.model' => undef,
            'event.type' => ['access', 'error'] });

    # a gateway in front of the model answers 502 with HTML
    my $html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
        . "<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
        . "</body>\r\n</html>\r\n";
    case(name => 'upstream 502 html', body => '{"prompt":"a cat"}',
        upstream => { status => 502, body => $html,
            headers => [['Content-Type', 'text/html']] },
        status => 502,
        vars => { upstream_status => '502', error_type => '' },
        rec => { 'gi2.upstream.status' => 502,
            'gi2.response.inspected' => 'false',
            'gi2.images.count' => undef,
            'event.type' => ['access', 'error'] });
}

sub test_upstream_down {
    my $body = '{"model":"gpt-image-1","prompt":"a cat"}';
    case(name => '502 upstream down', path => "/down$GEN", body => $body,
        status => 502, upstream_body => undef,
        client => sub {
            my ($res) = @_;
            like($res->{body}, qr/502 Bad Gateway/,
                '502 upstream down: nginx error page');
        },
        vars => { upstream_status => '502', nginx_upstream_status => '502',
            error_type => '', image_count => '', input_tokens => '',
            request_id => '', cost_usd => '', decision => 'allow',
            prompt_hash => $PH->('a cat'), consumer_hash => $CH },
        rec => { 'http.response.status_code' => 502,
            'gi2.upstream.status' => 502,
            'gi2.upstream.request_id' => undef,
            'gi2.upstream.error.type' => undef,
            'gi2.response.inspected' => 'false',
            'gi2.response.stream' => undef,
            'gi2.response.truncated' => undef,
            'gi2.images.count' => undef,
            'gi2.images.items' => [],
            'gen_ai.usage.input_tokens' => undef,
            'gi2.cost.usd' => undef,
            'gi2.decision' => 'allow',
            'event.type' => ['access', 'error'],
            'event.outcome' => 'failure' });
}

# event.duration: request start to logging, as $request_time (the same
# cached clock, read in the same log handler)
sub test_duration {
    my $body = '{"model":"gpt-image-1","prompt":"take your time"}';
    for my $delay (0.3, 1.2) {
        case(name => "duration, upstream answers after ${delay}s",
            body => $body,
            upstream => { delay => $delay, status => 200, headers => $JSON_H,
                body => images_body(images => [$PNG1]) },
            status => 200,
            check => sub {
                my ($res, $v, $rec, $line, $up, $elapsed) = @_;
                my $d = rec_get($rec, 'event.duration') // -1;
                my $want = int($v->{request_time} * 1000 + 0.5) * 1000000;
                is($d, $want, "duration ${delay}s: event.duration is "
                    . "\$request_time ($v->{request_time}) in ns");
                ok($d >= $delay * 1e9 && $d <= ($elapsed + 0.05) * 1e9,
                    "duration ${delay}s: between the delay and what the "
                    . sprintf('client waited (%.3fs)', $elapsed));
            });
    }
}

# several attempts: the variable is the last one's status
sub test_next_upstream {
    my $body = '{"model":"gpt-image-1","prompt":"try again"}';
    case(name => 'down, then the backup answers', path => "/retry$GEN",
        body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => [$PNG1]) },
        status => 200,
        vars => { nginx_upstream_status => '502, 200',
            upstream_status => '200', image_sha256 => sha256_hex($PNG1),
            request_id => 'req_7b2c1f0e9d8a' },
        rec => { 'gi2.upstream.status' => 200,
            'gi2.response.inspected' => 'true' });

    my $err = '{"error":{"message":"oops","type":"server_error",'
        . '"param":null,"code":null}}';
    case(name => '500, then the backup is down', path => "/fail$GEN",
        body => $body,
        upstream => { status => 500, headers => $JSON_H, body => $err },
        status => 502,
        client => sub {
            my ($res) = @_;
            like($res->{body}, qr/502 Bad Gateway/,
                '500 then down: the client got nginx 502');
        },
        vars => { nginx_upstream_status => '500, 502',
            upstream_status => '502', error_type => '' },
        rec => { 'gi2.upstream.status' => 502,
            'gi2.upstream.error.type' => undef,
            'gi2.response.inspected' => 'false' });
}

sub test_upstream_timeout {
    my $body = '{"model":"gpt-image-1","prompt":"slow"}';
    case(name => '504 upstream timeout', path => "/slow$GEN", body => $body,
        upstream => { delay => 2.5, status => 200, headers => $JSON_H,
            body => images_body(images => [$PNG1]) },
        status => 504,
        client => sub {
            my ($res) = @_;
            like($res->{body}, qr/504 Gateway Time-out/,
                '504: nginx error page');
        },
        vars => { upstream_status => '504', nginx_upstream_status => '504',
            image_count => '', request_id => '' },
        rec => { 'gi2.upstream.status' => 504,
            'http.response.status_code' => 504,
            'gi2.response.inspected' => 'false',
            'gi2.images.count' => undef },
        check => sub {
            my ($res, $v, $rec, $line, $up, $elapsed) = @_;
            ok($elapsed < 2.4, "504: answered after proxy_read_timeout "
                . sprintf('(%.2fs)', $elapsed));
            my $d = rec_get($rec, 'event.duration') // -1;
            ok($d >= 0.9e9 && abs($d / 1e9 - $v->{request_time}) < 0.002,
                sprintf('504: event.duration %d ns is $request_time (%s), '
                    . 'the client waited %.3fs', $d, $v->{request_time},
                    $elapsed));
        });
    # let the mock finish its delayed answer before the next case
    sleep(2);
}

###########################################################################
# content encodings

sub test_gzip {
    my $body = '{"model":"gpt-image-1","prompt":"gzip please"}';
    my @img = ($PNG1, $JPEG_C2PA);
    my $plain = images_body(images => \@img);
    gzip(\$plain => \my $gz) or die $GzipError;
    my ($res) = case(name => 'gzip', body => $body,
        upstream => { status => 200, body => $gz, headers => [
            ['Content-Type', 'application/json'],
            ['Content-Encoding', 'gzip'], ['x-request-id', 'req_gz']] },
        status => 200,
        vars => { image_sha256 => join(',', map { sha256_hex($_) } @img),
            image_count => '2', input_tokens => '50',
            cost_usd => sprintf('%.6f', $COST) },
        rec => { 'gi2.response.content_encoding' => 'gzip',
            'gi2.response.inspected' => 'true',
            'gi2.response.truncated' => 'false',
            'gi2.response.malformed' => 'false' },
        items => [item($PNG1, 'png', 2, 3),
            item($JPEG_C2PA, 'jpeg', 640, 480, c2pa => 1)]);
    is_deeply([header_values($res, 'content-encoding')], ['gzip'],
        'gzip: Content-Encoding reaches the client');
    is(substr($res->{body}, 0, 2), "\x1f\x8b",
        'gzip: the client got gzip bytes, not inflated ones');

    # the same gzip bytes in 7-byte chunks (chunked framing)
    my @pieces = unpack('(a7)*', $gz);
    case(name => 'gzip in 7-byte chunks', body => $body,
        upstream => { status => 200, pieces => \@pieces, chunked => 1,
            headers => [['Content-Type', 'application/json; charset=utf-8'],
                ['Content-Encoding', 'gzip']] },
        status => 200,
        vars => { image_sha256 => join(',', map { sha256_hex($_) } @img) },
        rec => { 'gi2.response.content_encoding' => 'gzip',
            'gi2.response.truncated' => 'false' });

    # a big, compressible answer: inflated in many rounds of 4 KiB
    my $big = img_png(300, 300, idat => "\0" x 400_000);
    $plain = images_body(images => [$big]);
    gzip(\$plain => \my $gzbig) or die $GzipError;
    case(name => 'gzip, high ratio', body => $body,
        upstream => { status => 200, body => $gzbig, headers => [
            ['Content-Type', 'application/json'],
            ['Content-Encoding', 'gzip']] },
        status => 200,
        vars => { image_sha256 => sha256_hex($big) },
        items => [item($big, 'png', 300, 300)]);
}

sub test_deflate {
    my $body = '{"model":"gpt-image-1","prompt":"deflate please"}';
    my $plain = images_body(images => [$WEBP_C2PA]);
    my $z = compress($plain);
    case(name => 'deflate (zlib)', body => $body,
        upstream => { status => 200, body => $z, headers => [
            ['Content-Type', 'application/json'],
            ['Content-Encoding', 'deflate']] },
        status => 200,
        vars => { image_sha256 => sha256_hex($WEBP_C2PA),
            image_count => '1' },
        rec => { 'gi2.response.content_encoding' => 'deflate',
            'gi2.response.inspected' => 'true',
            'gi2.response.malformed' => 'false' },
        items => [item($WEBP_C2PA, 'webp', 1024, 768, c2pa => 1)]);

    # raw deflate (no zlib header), as some servers send "deflate":
    # either read correctly, or flagged; never a wrong hash
    rawdeflate(\$plain => \my $raw) or die $RawDeflateError;
    case(name => 'deflate (raw)', body => $body,
        upstream => { status => 200, body => $raw, headers => [
            ['Content-Type', 'application/json'],
            ['Content-Encoding', 'deflate']] },
        status => 200,
        check => sub {
            my ($res, $v, $rec) = @_;
            my $ok = $v->{image_sha256} eq sha256_hex($WEBP_C2PA)
                || (rec_get($rec, 'gi2.response.malformed') eq 'true'
                    && $v->{image_sha256} eq '');
            ok($ok, 'deflate (raw): hashed right, or flagged malformed')
                or diag(vars_dump($v));
            note('raw deflate: ' . ($v->{image_sha256}
                ? 'inflated' : 'flagged malformed'));
        });

    # "Content-Encoding: gzip" on bytes that are not gzip
    my $notgz = images_body(images => [$PNG1]);
    case(name => 'gzip header, plain body', body => $body,
        upstream => { status => 200, body => $notgz, headers => [
            ['Content-Type', 'application/json'],
            ['Content-Encoding', 'gzip']] },
        status => 200,
        vars => { image_sha256 => '' },
        rec => { 'gi2.response.malformed' => 'true',
            'gi2.response.truncated' => 'true',
            'gi2.response.content_encoding' => 'gzip' });

    # an encoding it does not read: passed on, recorded as not inspected
    case(name => 'brotli: not inspected', body => $body,
        upstream => { status => 200, body => "\x1b\x03\x00\xf8\xa5\x40",
            headers => [['Content-Type', 'application/json'],
                ['Content-Encoding', 'br']] },
        status => 200,
        vars => { image_count => '', upstream_status => '200' },
        rec => { 'gi2.response.inspected' => 'false',
            'gi2.images.count' => undef,
            'gi2.upstream.status' => 200 });
}

###########################################################################
# cut, reset, malformed

sub test_truncated {
    my $body = '{"model":"gpt-image-1","prompt":"cut short"}';
    my $img = img_png(40, 40, idat => join('', map { chr($_ % 251) }
        1 .. 3000));
    my $full = images_body(images => [$img]);
    my $at = index($full, '"b64_json"') + 14 + 1001;   # mid-base64
    my $part = substr($full, 0, $at);
    my $b64_start = index($full, '"b64_json"');
    $b64_start = index($full, '"', $b64_start + 10) + 1;
    my $arrived = $at - $b64_start;

    case(name => 'truncated mid-base64', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            pieces => [$part], length => length $full },
        status => 200,
        client => sub {
            my ($res) = @_;
            ok($res->{body} eq $part,
                'truncated: the client got the bytes that came')
                or diag(length($res->{body}) . " of " . length($part));
        },
        vars => { image_sha256 => '', upstream_status => '200',
            input_tokens => '' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.response.inspected' => 'true',
            'gi2.images.items' => [{ sha256 => undef,
                bytes => int($arrived / 4) * 3, format => 'png',
                width => 40, height => 40, c2pa => 'false',
                truncated => 'true', bad_base64 => 'false' }],
            'related.hash' => [$PH->('cut short'), $CH] });

    # cut between two members, after a whole image
    my $two = images_body(images => [$PNG1, $JPEG]);
    my $cut = index($two, '},', index($two, '"b64_json"')) + 2;
    case(name => 'truncated after the first image', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            pieces => [substr($two, 0, $cut)], length => length $two },
        status => 200,
        client => substr($two, 0, $cut),
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.response.malformed' => 'false' },
        check => sub {
            my ($res, $v) = @_;
            is($v->{image_sha256}, sha256_hex($PNG1),
                'truncated after the first image: it is hashed');
        });

    # the upstream resets the connection mid-body, once what came before
    # was read
    case(name => 'reset mid-response (unbuffered)', path => "/nobuf$GEN",
        body => $body,
        upstream => { status => 200, headers => $JSON_H,
            pieces => [$part, substr($full, $at)], pause => 0.3,
            reset_after => $at },
        status => 200,
        client => sub {
            my ($res) = @_;
            ok($res->{body} eq $part, 'reset: the client got what came')
                or diag('client got ' . length($res->{body}) . ' bytes');
        },
        vars => { upstream_status => '200', nginx_upstream_status => '200',
            image_sha256 => '' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.upstream.status' => 200,
            'gi2.images.items' => [{ sha256 => undef,
                bytes => int($arrived / 4) * 3, format => 'png',
                width => 40, height => 40, c2pa => 'false',
                truncated => 'true', bad_base64 => 'false' }] });

    # buffered: nginx drops what it held, the client gets nothing
    case(name => 'reset mid-response (buffered)', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            pieces => [$part, substr($full, $at)], pause => 0.3,
            reset_after => $at },
        status => 200,
        client => sub {
            my ($res) = @_;
            ok($res->{body} eq substr($part, 0, length $res->{body}),
                'reset (buffered): the client got a prefix');
        },
        vars => { upstream_status => '200', image_sha256 => '' },
        rec => { 'gi2.response.truncated' => 'true' });

    # a reset right after the header: no body at all
    case(name => 'reset after the header', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            pieces => ['', $full], pause => 0.3, reset_after => 0 },
        status => 200,
        client => '',
        vars => { upstream_status => '200', image_sha256 => '' },
        rec => { 'gi2.response.truncated' => 'true',
            'gi2.upstream.status' => 200 });
}

sub test_malformed {
    my $body = '{"model":"gpt-image-1","prompt":"broken json"}';
    my $b = b64($PNG1);
    for my $m (
        ['trailing comma', qq({"created":1,"data":[{"b64_json":"$b"},]})],
        ['missing colon', qq({"created" 1,"data":[{"b64_json":"$b"}]})],
        ['html labelled json', "<html><body>oops</body></html>"],
        ['two objects', qq({"created":1}{"data":[]})],
        ['bad literal', qq({"created":1,"data":nul})],
        ['control character in a string',
            qq({"error":{"code":"a\x01b","type":"x"}})],
        ['NUL bytes', "\0\0\0\0"],
    ) {
        case(name => "malformed: $m->[0]", body => $body,
            upstream => { status => 200, headers => $JSON_H,
                body => $m->[1] },
            status => 200,
            rec => { 'gi2.response.malformed' => 'true',
                'gi2.response.inspected' => 'true' });
    }

    # valid JSON whose root is not an object: not an images API answer,
    # which the scanner counts as malformed (see gi2_resp_value)
    for my $m (['null', 'null'], ['array', '[1,2,3]'],
        ['string', '"hello"'])
    {
        case(name => "root not an object: $m->[0]", body => $body,
            upstream => { status => 200, headers => $JSON_H,
                body => $m->[1] },
            status => 200,
            vars => { image_sha256 => '', image_count => '0' },
            rec => { 'gi2.response.malformed' => 'true',
                'gi2.response.truncated' => 'false',
                'gi2.images.items' => [] });
    }

    # valid JSON objects, just not an images answer
    for my $m (['empty object', '{}'],
        ['error as a string', '{"error":"oops"}'],
        ['data as a string', '{"data":"nope"}'],
        ['b64_json as a number', '{"data":[{"b64_json":12345}]}'])
    {
        case(name => "not an images answer: $m->[0]", body => $body,
            upstream => { status => 200, headers => $JSON_H,
                body => $m->[1] },
            status => 200,
            vars => { image_sha256 => '', image_count => '0' },
            rec => { 'gi2.response.malformed' => 'false',
                'gi2.response.truncated' => 'false',
                'gi2.images.items' => [] });
    }

    # an empty 200 body
    case(name => 'empty body', body => $body,
        upstream => { status => 200, headers => $JSON_H, body => '' },
        status => 200,
        vars => { image_count => '0', upstream_status => '200' });
}

###########################################################################
# absurd answers

sub test_absurd {
    my $body = '{"model":"gpt-image-1","prompt":"absurd"}';

    # more images than the record keeps
    my @img = map { img_png($_, 1) } 1 .. 20;
    case(name => '20 images', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => images_body(images => \@img) },
        status => 200,
        vars => { image_count => '20',
            image_sha256 => join(',', map { sha256_hex($_) }
                @img[0 .. 15]) },
        rec => { 'gi2.images.count' => 20 },
        items => [map { item($img[$_], 'png', $_ + 1, 1) } 0 .. 15]);

    # many URLs
    my $urls = '{"created":1,"data":[' . join(',', map {
        qq({"url":"https://example.test/$_.png"}) } 1 .. 40) . ']}';
    case(name => '40 urls', body => $body,
        upstream => { status => 200, headers => $JSON_H, body => $urls },
        status => 200,
        rec => { 'gi2.images.url_count' => 40, 'gi2.images.count' => 0 });

    # token counts that are not counts
    for my $u (
        ['float', '{"input_tokens":1e30,"output_tokens":2.5,'
            . '"total_tokens":-7}'],
        ['overflow', '{"input_tokens":99999999999999999999999,'
            . '"output_tokens":18446744073709551616,"total_tokens":0}'],
        ['strings', '{"input_tokens":"50","output_tokens":null,'
            . '"total_tokens":true}'],
        ['objects', '{"input_tokens":{"a":1},"output_tokens":[1],'
            . '"total_tokens":{}}'],
    ) {
        my $resp = qq({"created":1,"data":[{"b64_json":"@{[b64($PNG1)]}"}],)
            . qq("usage":$u->[1]});
        case(name => "usage: $u->[0]", body => $body,
            upstream => { status => 200, headers => $JSON_H,
                body => $resp },
            status => 200,
            vars => { input_tokens => '', output_tokens => '',
                cost_usd => '', image_sha256 => sha256_hex($PNG1),
                total_tokens => ($u->[0] eq 'overflow' ? '0' : '') },
            rec => { 'gen_ai.usage.input_tokens' => undef,
                'gen_ai.usage.output_tokens' => undef,
                'gi2.cost.usd' => undef,
                'gi2.response.malformed' => 'false' });
    }

    # the largest counts there are: a cost of 4e14 USD is no cost, it is
    # unknown (null), never a wrong or overflowing number
    my $max = '9223372036854775807';
    my $resp = qq({"created":1,"data":[],"usage":{"input_tokens":$max,)
        . qq("output_tokens":$max,"total_tokens":$max}});
    my $want = (9223372036854775807 * 5 + 9223372036854775807 * 40) / 1e6;
    case(name => 'usage: int64 max', body => $body,
        upstream => { status => 200, headers => $JSON_H, body => $resp },
        status => 200,
        vars => { input_tokens => $max, output_tokens => $max },
        check => sub {
            my ($res, $v, $rec) = @_;
            is($v->{cost_usd}, '', 'usage int64 max: $gi2_cost_usd unknown');
            ok(!defined rec_get($rec, 'gi2.cost.usd'),
                'usage int64 max: gi2.cost.usd null');
        });

    # and an absurd price on top: the cost passes 2^63, and must still be
    # right (or unknown), never a wrong number
    $want = (9223372036854775807 * 1e6 + 9223372036854775807 * 1e6) / 1e6;
    case(name => 'usage: int64 max at an absurd price', body => $body,
        path => "/absurd$GEN",
        upstream => { status => 200, headers => $JSON_H, body => $resp },
        status => 200,
        check => sub {
            my ($res, $v, $rec) = @_;
            my $c = rec_get($rec, 'gi2.cost.usd');
            ok($v->{cost_usd} eq '' || ($v->{cost_usd} =~ /^\d+\.\d{6}$/
                && abs($v->{cost_usd} - $want) / $want < 1e-9),
                "absurd price: \$gi2_cost_usd is $want or unknown")
                or diag("cost: $v->{cost_usd}");
            ok(!defined $c || abs($c - $want) / $want < 1e-9,
                "absurd price: gi2.cost.usd is $want or null")
                or diag('cost: ' . ($c // 'null'));
        });

    # just past 2^63 dollars: the fraction's digits must not run over
    my $resp2 = qq({"created":1,"data":[],"usage":{"input_tokens":$max,)
        . qq("output_tokens":1000000000000,"total_tokens":1}});
    my $want2 = 9223372036854775807 + 1000000000000;
    case(name => 'usage: just past 2^63 dollars', body => $body,
        path => "/absurd$GEN",
        upstream => { status => 200, headers => $JSON_H, body => $resp2 },
        status => 200,
        check => sub {
            my ($res, $v, $rec) = @_;
            my $c = rec_get($rec, 'gi2.cost.usd');
            ok($v->{cost_usd} eq '' || ($v->{cost_usd} =~ /^\d+\.\d{6}$/
                && abs($v->{cost_usd} - $want2) / $want2 < 1e-9),
                "past 2^63: \$gi2_cost_usd is $want2 or unknown")
                or diag("cost: $v->{cost_usd}");
            ok(!defined $c || abs($c - $want2) / $want2 < 1e-9,
                "past 2^63: gi2.cost.usd is $want2 or null")
                or diag('cost: ' . ($c // 'null'));
        });

    # deep nesting around the images
    my $deep = '{"created":1,"x":' . ('[' x 5000) . (']' x 5000)
        . ',"data":[{"b64_json":"' . b64($PNG1) . '"}],"y":'
        . ('{"a":' x 300) . '1' . ('}' x 300) . '}';
    case(name => 'deep nesting', body => $body,
        upstream => { status => 200, headers => $JSON_H, body => $deep },
        status => 200,
        vars => { image_sha256 => sha256_hex($PNG1) },
        rec => { 'gi2.response.malformed' => 'false' });

    # unbalanced deep nesting, cut
    case(name => 'deep nesting, never closed', body => $body,
        upstream => { status => 200, headers => $JSON_H,
            body => '{"data":' . ('[' x 100000) },
        status => 200,
        rec => { 'gi2.response.truncated' => 'true' });

    # long and hostile error strings
    my $long = 'x' x 5000;
    my $cats = join(',', map { qq("category-number-$_") } 1 .. 60);
    my $err = qq({"error":{"message":"$long","type":"$long",)
        . qq("code":"c\\"o\\\\d\\u0000e\\n\\u2028\\ud800",)
        . qq("param":"p\\u00e9\\r\\n",)
        . qq("moderation_details":{"moderation_stage":"$long",)
        . qq("categories":[$cats]},"$long":"$long"}});
    case(name => 'hostile error strings', body => $body,
        upstream => { status => 400, headers => $JSON_H, body => $err },
        status => 400,
        check => sub {
            my ($res, $v, $rec, $line) = @_;
            my $code = rec_get($rec, 'gi2.upstream.error.code');
            is($code, "c\"o\\de\n\x{2028}\x{fffd}",
                'hostile error: code decoded, NUL dropped, U+2028 kept, '
                . 'lone surrogate as U+FFFD');
            is(rec_get($rec, 'gi2.upstream.error.param'), "p\x{e9}\r\n",
                'hostile error: param decoded');
            my $t = rec_get($rec, 'gi2.upstream.error.type');
            ok(defined $t && $t =~ /^x+$/ && length $t < 300,
                'hostile error: a long type is cut');
            my $c = rec_get($rec, 'gi2.upstream.error.categories');
            ok(ref $c eq 'ARRAY' && @$c >= 1 && @$c < 60
                && !grep({ !/^category-number-\d+$/ } @$c)
                && join(',', @$c) eq join(',',
                    map { "category-number-$_" } 1 .. scalar @$c),
                'hostile error: categories cut at a whole category')
                or diag('categories: ' . $COMPACT->encode($c));
        });

    # raw invalid UTF-8 in the upstream's strings and request id
    my $bad = qq({"error":{"type":"t\xff\xfe","code":"\xc3\x28x",)
        . qq("param":"\xed\xa0\x80","message":"m"}});
    case(name => 'invalid UTF-8 from upstream', body => $body,
        upstream => { status => 400, body => $bad, headers => [
            ['Content-Type', 'application/json'],
            ['x-request-id', "req_\"\\\x01\xff\xc3"]] },
        status => 400,
        check => sub {
            my ($res, $v, $rec) = @_;
            is(rec_get($rec, 'gi2.upstream.error.type'),
                "t\x{fffd}\x{fffd}", 'invalid UTF-8: type repaired');
            like(rec_get($rec, 'gi2.upstream.error.code'),
                qr/^\x{fffd}\(x$/, 'invalid UTF-8: code repaired');
            is(rec_get($rec, 'gi2.upstream.request_id'),
                "req_\"\\\x{1}\x{fffd}\x{fffd}",
                'invalid UTF-8: request id escaped and repaired');
        });

    # a JSON answer labelled otherwise is not read
    case(name => 'text/plain answer', body => $body,
        upstream => { status => 200, body => images_body(images => [$PNG1]),
            headers => [['Content-Type', 'text/plain']] },
        status => 200,
        vars => { image_sha256 => '', image_count => '' },
        rec => { 'gi2.response.inspected' => 'false' });

    # no Content-Type at all
    case(name => 'no content type', body => $body,
        upstream => { status => 200, body => images_body(images => [$PNG1]),
            headers => [['X-Nothing', '1']] },
        status => 200,
        rec => { 'gi2.response.inspected' => 'false' });
}

###########################################################################
# framing

sub test_framing {
    my $body = '{"model":"gpt-image-1","prompt":"framing"}';
    my @img = ($PNG_C2PA, $JPEG);
    my $resp = images_body(images => \@img);
    my $want = join(',', map { sha256_hex($_) } @img);

    case(name => 'chunked, 1-byte chunks', body => $body,
        upstream => { status => 200, headers => $JSON_H, chunked => 1,
            pieces => [split //, $resp] },
        status => 200, vars => { image_sha256 => $want },
        rec => { 'gi2.response.truncated' => 'false' });

    case(name => 'no length, close-delimited', body => $body,
        upstream => { status => 200, headers => $JSON_H, no_length => 1,
            pieces => [unpack('(a100)*', $resp)] },
        status => 200, vars => { image_sha256 => $want },
        rec => { 'gi2.response.truncated' => 'false' });

    case(name => 'chunked, last chunk missing', body => $body,
        upstream => { status => 200, headers => $JSON_H, chunked => 1,
            no_end => 1, pieces => [substr($resp, 0, 200)] },
        status => 200,
        client => substr($resp, 0, 200),
        rec => { 'gi2.response.truncated' => 'true' });
}

###########################################################################
# gi2 rejected the request: nothing upstream

sub test_rejected {
    case(name => 'gi2 rejection', body => '{"prompt":"x","moderation":"low"}',
        status => 400, upstream_body => undef,
        client => sub {
            my ($res) = @_;
            is($res->{json}{error}{code},
                'gi2_moderation_exception_required',
                'gi2 rejection: the client got gi2 error');
        },
        vars => { upstream_status => '', nginx_upstream_status => '',
            image_count => '', error_type => '', request_id => '',
            decision => 'reject',
            reject_code => 'gi2_moderation_exception_required' },
        rec => { 'gi2.decision' => 'reject',
            'event.reason' => 'gi2_moderation_exception_required',
            'event.type' => ['access', 'denied'],
            'error.type' => 'invalid_request_error',
            'error.code' => 'gi2_moderation_exception_required',
            'gi2.upstream.status' => undef,
            'gi2.upstream.request_id' => undef,
            'gi2.upstream.error.type' => undef,
            'gi2.response.inspected' => 'false',
            'gi2.response.stream' => undef,
            'gi2.response.truncated' => undef,
            'gi2.response.malformed' => undef,
            'gi2.images.count' => undef,
            'gen_ai.usage.input_tokens' => undef,
            'gi2.cost.usd' => undef });
}

###########################################################################

test_one_image();
test_three_images();
test_escaped_base64();
test_urls();
test_moderation_blocked();
test_content_policy_violation();
test_rate_limit();
test_server_error();
test_upstream_down();
test_next_upstream();
test_duration();
test_upstream_timeout();
test_gzip();
test_deflate();
test_truncated();
test_malformed();
test_absurd();
test_framing();
test_rejected();

# the bearer token never reaches a log
{
    my $p = prefix();
    for my $f (qw(access.log vars.log audit.log error.log)) {
        my $text = do { local $/; open my $fh, '<:raw', "$p/$f"; <$fh> }
            // '';
        ok(index($text, $TOKEN) < 0, "$f: no bearer token");
    }
}

note("$CASES exchanges");
error_log_clean();
done_testing();
