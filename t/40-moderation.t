#!/usr/bin/perl

# gi2_moderation_low reject|rewrite|allow for "moderation":"low" without
# an exception.

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
        gi2_rule f_gun flag weapons "\bgun\b";
        location /reject/ { proxy_pass http://%%UPSTREAM%%; }
        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /allow/ {
            gi2_moderation_low allow;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /r403/ {
            gi2_reject_status 403;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF

my $PATH = 'v1/images/generations';

sub reject {
    my ($name, $loc, $body, $status, $code, $param) = @_;
    upstream_reset();
    my $r = http_post("/$loc/$PATH", $body);
    is_rejection($r, $status, $code, $param, $name);
    no_upstream($name);
    return $r;
}

sub forward {
    my ($name, $loc, $body, $expect) = @_;
    upstream_reset();
    my $r = http_post("/$loc/$PATH", $body);
    my $u = is_passed_exact($r, $expect // $body, $name);
    is($u->{uri}, "/$loc/$PATH", "$name: upstream uri");
    ok(!$u->{headers}{'transfer-encoding'}, "$name: no transfer-encoding");
    return $r;
}

sub test_reject_mode {
    my $r = reject('reject mode: low', 'reject',
        '{"prompt":"a cat","moderation":"low"}', 400,
        'gi2_moderation_exception_required', 'moderation');
    log_is($r, { status => 400, decision => 'reject',
        moderation_requested => 'low', moderation_effective => '',
        exception_id => '', reject_code => 'gi2_moderation_exception_required',
        rule_id => '' }, 'reject mode: low');
    $r = forward('reject mode: auto', 'reject',
        '{"prompt":"a cat","moderation":"auto"}');
    log_is($r, { decision => 'allow', moderation_requested => 'auto',
        moderation_effective => 'auto' }, 'reject mode: auto');
    $r = reject('reject mode: low and deny rule', 'reject',
        '{"prompt":"nude","moderation":"low"}', 400, 'gi2_prompt_rejected',
        'prompt');
    log_is($r, { reject_code => 'gi2_prompt_rejected', rule_id => 'r_nude',
        moderation_requested => 'low' }, 'reject mode: low and deny rule');
    reject('reject status 403', 'r403',
        '{"prompt":"a cat","moderation":"low"}', 403,
        'gi2_moderation_exception_required', 'moderation');
}

sub rewritten {
    my ($name, $body, $expect) = @_;
    my $r = forward("rewrite: $name", 'rewrite', $body, $expect);
    log_is($r, { status => 200, decision => 'rewrite',
        moderation_requested => 'low', moderation_effective => 'auto',
        reject_code => '', exception_id => '' }, "rewrite: $name");
}

sub test_rewrite_mode {
    rewritten('simple', '{"prompt":"a cat","moderation":"low","n":1}',
        '{"prompt":"a cat","moderation":"auto","n":1}');
    rewritten('spacing kept', qq({ "moderation" : "low" ,\n "prompt" : "x" }),
        qq({ "moderation" : "auto" ,\n "prompt" : "x" }));
    rewritten('escaped key and value',
        '{"prompt":"x","mod\u0065ration":"\u006cow"}',
        '{"prompt":"x","mod\u0065ration":"auto"}');
    rewritten('decoys in prompt and nested object',
        '{"prompt":"say \"moderation\":\"low\"","extra":{"moderation":"low"},'
        . '"moderation":"low","tail":"low"}',
        '{"prompt":"say \"moderation\":\"low\"","extra":{"moderation":"low"},'
        . '"moderation":"auto","tail":"low"}');
    rewritten('UTF-8 around', qq({"prompt":"\xe7\x8c\xab caf\xc3\xa9",)
        . qq("moderation":"low","x":"\xf0\x9f\x90\x88"}),
        qq({"prompt":"\xe7\x8c\xab caf\xc3\xa9",)
        . qq("moderation":"auto","x":"\xf0\x9f\x90\x88"}));
}

sub test_rewrite_other {
    my $r = forward('rewrite mode: auto untouched', 'rewrite',
        '{"prompt":"a cat","moderation":"auto"}');
    log_is($r, { decision => 'allow', moderation_effective => 'auto' },
        'rewrite mode: auto untouched');
    reject('rewrite mode: deny rule wins', 'rewrite',
        '{"prompt":"nude","moderation":"low"}', 400, 'gi2_prompt_rejected',
        'prompt');
    $r = forward('rewrite mode: flag rule', 'rewrite',
        '{"prompt":"a gun","moderation":"low"}',
        '{"prompt":"a gun","moderation":"auto"}');
    log_is($r, { rule_id => 'f_gun', moderation_effective => 'auto' },
        'rewrite mode: flag rule');
}

sub test_rewrite_chunked {
    upstream_reset();
    my ($req, $id) = request_bytes('POST', "/rewrite/$PATH", undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    my @parts = ('{"prompt":"a cat","mode', 'ration":"lo', 'w","n":1}');
    my $r = http_send($req . chunked(\@parts), $id);
    my $u = is_passed_exact($r, '{"prompt":"a cat","moderation":"auto","n":1}',
        'rewrite: chunked request');
    ok(!$u->{chunked}, 'rewrite: chunked request forwarded with length');
    log_is($r, { decision => 'rewrite' }, 'rewrite: chunked request');
}

sub test_allow_mode {
    my $r = forward('allow mode: low unchanged', 'allow',
        '{"prompt":"a cat","moderation":"low"}');
    log_is($r, { decision => 'allow', moderation_requested => 'low',
        moderation_effective => 'low', reject_code => '' },
        'allow mode: low unchanged');
    reject('allow mode: deny rule wins', 'allow',
        '{"prompt":"nude","moderation":"low"}', 400, 'gi2_prompt_rejected',
        'prompt');
}

test_reject_mode();
test_rewrite_mode();
test_rewrite_other();
test_rewrite_chunked();
test_allow_mode();
error_log_clean();
done_testing();
