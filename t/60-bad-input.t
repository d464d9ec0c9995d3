#!/usr/bin/perl

# Malformed requests on guarded paths: 400 gi2_invalid_request with the
# right param, nothing reaches upstream.  And near misses that are valid.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

gi2_start(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_rule r_nude deny sexual "\bnude\b";
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /r403/ {
            gi2_reject_status 403;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF

my $GEN = '/v1/images/generations';

sub invalid {
    my ($name, $body, $param, @hdrs) = @_;
    upstream_reset();
    my $r = http_post($GEN, $body, @hdrs);
    my $e = is_rejection($r, 400, 'gi2_invalid_request', $param, $name);
    no_upstream($name);
    log_is($r, { status => 400, decision => 'reject',
        reject_code => 'gi2_invalid_request', moderation_effective => '' },
        $name);
    return $e;
}

sub valid {
    my ($name, $body, @hdrs) = @_;
    upstream_reset();
    my $r = http_post($GEN, $body, @hdrs);
    is_passed_exact($r, $body, $name);
    log_is($r, { decision => 'allow', reject_code => '' }, $name);
}

sub test_not_json {
    invalid('truncated JSON', '{"prompt":', undef);
    invalid('trailing garbage', '{"prompt":"x"} x', undef);
    invalid('two objects', '{"prompt":"x"}{}', undef);
    invalid('empty body', '', undef);
    invalid('array body', '[{"prompt":"x"}]', undef);
    invalid('string body', '"x"', undef);
    invalid('number body', '42', undef);
    invalid('null body', 'null', undef);
    invalid('bad JSON in an unknown field', '{"prompt":"x","e":[1,]}',
        undef);
    invalid('single quotes', "{'prompt':'x'}", undef);
}

sub test_utf8 {
    my @cases = (
        ['invalid UTF-8 in prompt', qq({"prompt":"caf\xe9"})],
        ['invalid UTF-8 in an unknown field', qq({"prompt":"x","e":"\xff"})],
        ['invalid UTF-8 in a key', qq({"prompt":"x","\xc3":1})],
        ['overlong 2-byte', qq({"prompt":"\xc0\xaf"})],
        ['overlong 3-byte', qq({"prompt":"\xe0\x80\xaf"})],
        ['UTF-8 encoded surrogate', qq({"prompt":"\xed\xa0\x80"})],
        ['past U+10FFFF', qq({"prompt":"\xf4\x90\x80\x80"})],
        ['truncated sequence', qq({"prompt":"\xe7\x8c"})],
        ['overlong in an unknown field', qq({"prompt":"x","e":"\xc0\xaf"})],
        ['surrogate in an unknown field',
            qq({"prompt":"x","e":["\xed\xbf\xbf"]})],
        ['past U+10FFFF in an unknown key',
            qq({"prompt":"x","\xf5\x80\x80\x80":1})],
        ['overlong in model', qq({"prompt":"x","model":"\xc1\xbf"})],
    );
    invalid($_->[0], $_->[1], undef) for @cases;
}

sub test_duplicates {
    for my $k (qw(prompt moderation model n size quality user stream)) {
        my $v = $k eq 'n' ? '1' : $k eq 'stream' ? 'false'
            : $k eq 'moderation' ? '"auto"' : '"a"';
        my $body = $k eq 'prompt' ? qq({"prompt":"a","prompt":"b"})
            : qq({"prompt":"a","$k":$v,"$k":$v});
        invalid("duplicate $k", $body, $k);
    }
    invalid('duplicate prompt, escaped key',
        '{"prompt":"a","pr\u006fmpt":"b"}', 'prompt');
    valid('duplicate unknown key', '{"foo":1,"foo":2,"prompt":"x"}');
    valid('nested prompt is not a duplicate',
        '{"prompt":"a","x":{"prompt":"nude"}}');
}

sub test_moderation_values {
    for my $v ('5', 'null', '"LOW"', '"high"', '""', 'true', '{"v":"low"}',
        '["low"]', '"low "')
    {
        invalid("moderation $v", qq({"prompt":"a cat","moderation":$v}),
            'moderation');
    }
}

sub test_prompt_values {
    invalid('prompt missing', '{"model":"gpt-image-1"}', 'prompt');
    invalid('empty object', '{}', 'prompt');
    for my $v ('["a cat"]', '42', 'null', '{"text":"a"}', 'true') {
        invalid("prompt $v", qq({"prompt":$v}), 'prompt');
    }
}

sub test_headers {
    my $b = '{"prompt":"a cat"}';
    invalid('Content-Type text/plain', $b, undef,
        'Content-Type' => 'text/plain');
    invalid('Content-Type missing', $b, undef, 'Content-Type' => undef);
    invalid('charset utf-16', $b, undef,
        'Content-Type' => 'application/json; charset=utf-16');
    invalid('Content-Type text/json', $b, undef,
        'Content-Type' => 'text/json');
    invalid('Content-Type application/json-seq', $b, undef,
        'Content-Type' => 'application/json-seq');
    my $e = invalid('multipart to generations', "--x\r\n\r\n--x--\r\n",
        undef, 'Content-Type' => 'multipart/form-data; boundary=x');
    like($e->{message} // '',
        qr{^multipart/form-data is only accepted for image edits},
        'multipart to generations: message');
    invalid('Content-Encoding gzip', $b, undef,
        'Content-Encoding' => 'gzip');
    invalid('Content-Encoding br', $b, undef, 'Content-Encoding' => 'br');
}

sub nest {
    my ($depth) = @_;
    return '{"prompt":"x","deep":' . ('[' x ($depth - 1))
        . (']' x ($depth - 1)) . '}';
}

sub test_nesting {
    invalid('nesting 200 deep', nest(200), undef);
    invalid('nesting 130 deep', nest(130), undef);
    valid('nesting 50 deep in an unknown field', nest(50));
    valid('nesting 127 deep', nest(127));
}

sub test_near_misses {
    valid('NUL escape in prompt', '{"prompt":"a cat\u0000 on a mat"}');
    valid('whitespace around the object', " \r\n\t{\"prompt\":\"x\"} \r\n");
    valid('escaped surrogate pair', '{"prompt":"\ud83d\udc08 cat"}');
    upstream_reset();
    my $r = http_post($GEN, '{"prompt":"x","mod\u0065ration":"\u006cow"}');
    is_rejection($r, 400, 'gi2_moderation_exception_required', 'moderation',
        'escaped moderation low');
    no_upstream('escaped moderation low');
    log_is($r, { moderation_requested => 'low' }, 'escaped moderation low');
}

sub test_reject_status {
    upstream_reset();
    my $r = http_post("/r403$GEN", '{"prompt":"nude"}');
    is_rejection($r, 403, 'gi2_prompt_rejected', 'prompt',
        'reject status 403: policy rejection');
    $r = http_post("/r403$GEN", '{"prompt":"a","moderation":"low"}');
    is_rejection($r, 403, 'gi2_moderation_exception_required', 'moderation',
        'reject status 403: exception required');
    $r = http_post("/r403$GEN", '{"prompt":');
    is_rejection($r, 400, 'gi2_invalid_request', undef,
        'reject status 403: invalid request still 400');
    $r = http_post("/r403$GEN", '{"prompt":"a","moderation":"LOW"}');
    is_rejection($r, 400, 'gi2_invalid_request', 'moderation',
        'reject status 403: bad moderation still 400');
    no_upstream('reject status 403');
}

test_not_json();
test_utf8();
test_duplicates();
test_moderation_values();
test_prompt_values();
test_headers();
test_nesting();
test_near_misses();
test_reject_status();
error_log_clean();
done_testing();
