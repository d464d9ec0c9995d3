#!/usr/bin/perl

# gi2_exception, gi2_exception_header and gi2_consumer: which exception
# headers let "moderation":"low" through, and the header never reaches
# upstream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(strftime);
use Gi2Test;

require_module();

my $TODAY = strftime('%Y-%m-%d', gmtime());
my $YESTERDAY = strftime('%Y-%m-%d', gmtime(time() - 86400));
# the "today" checks are skipped within two minutes of midnight UTC
my $NEAR_MIDNIGHT = (86400 - time() % 86400) < 120;

gi2_start(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_rule r_nude deny sexual "\\bnude\\b";
        gi2_exception ex_ok;
        gi2_exception ex_old expires=2020-01-01;
        gi2_exception ex_future expires=2099-12-31;
        gi2_exception ex_today expires=$TODAY;
        gi2_exception ex_yday expires=$YESTERDAY;
        gi2_exception ex_bound consumer=tok123;
        gi2_exception ex_both expires=2099-12-31 consumer=tok123;
        location / { proxy_pass http://%%UPSTREAM%%; }
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
    server {
        listen 127.0.0.1:%%PORT2%%;
        gi2 on;
        gi2_consumer \$http_x_api_key;
        gi2_exception_header X-Policy-Override;
        gi2_exception ex_key consumer=key-1;
        gi2_exception ex_open;
        location / { proxy_pass http://%%UPSTREAM%%; }
    }
EOF

my $GEN = '/v1/images/generations';
my $LOW = '{"prompt":"a cat","moderation":"low"}';
my $AUTO = '{"prompt":"a cat","moderation":"auto"}';

sub post {
    my ($path, $body, @hdrs) = @_;
    my $port = $path =~ s/^:2// ? port(2) : port(1);
    my ($req, $id) = request_bytes('POST', $path, $body, @hdrs);
    return http_send($req, $id, port => $port);
}

sub valid {
    my ($name, $path, $body, $ex, @hdrs) = @_;
    upstream_reset();
    my $r = post($path, $body, @hdrs);
    my $u = is_passed_exact($r, $body, $name);
    ok(!exists $u->{headers}{'x-gi2-exception'}
        && !exists $u->{headers}{'x-policy-override'},
        "$name: exception header removed upstream");
    return $r;
}

sub invalid {
    my ($name, $path, $body, @hdrs) = @_;
    my $status = $path =~ m{^/r403/} ? 403 : 400;
    upstream_reset();
    my $r = post($path, $body, @hdrs);
    is_rejection($r, $status, 'gi2_moderation_exception_invalid',
        'moderation', $name);
    no_upstream($name);
    log_is($r, { decision => 'reject', exception_id => '',
        reject_code => 'gi2_moderation_exception_invalid',
        moderation_effective => '' }, $name);
    return $r;
}

sub test_valid {
    my $r = valid('valid exception with low', $GEN, $LOW, 'ex_ok',
        'X-GI2-Exception' => 'ex_ok');
    log_is($r, { status => 200, decision => 'allow',
        moderation_requested => 'low', moderation_effective => 'low',
        exception_id => 'ex_ok', reject_code => '' },
        'valid exception with low');
    valid('valid exception with auto', $GEN, $AUTO, 'ex_ok',
        'X-GI2-Exception' => 'ex_ok');
    valid('valid exception, no moderation', $GEN, '{"prompt":"a cat"}',
        'ex_ok', 'X-GI2-Exception' => 'ex_ok');
    valid('header name is case-insensitive', $GEN, $LOW, 'ex_ok',
        'x-gi2-exception' => 'ex_ok');
    $r = valid('valid exception in rewrite mode', "/rewrite$GEN", $LOW,
        'ex_ok', 'X-GI2-Exception' => 'ex_ok');
    log_is($r, { moderation_effective => 'low', exception_id => 'ex_ok' },
        'valid exception in rewrite mode');
}

sub test_unknown {
    invalid('unknown id with low', $GEN, $LOW, 'X-GI2-Exception' => 'nope');
    invalid('unknown id with auto', $GEN, $AUTO,
        'X-GI2-Exception' => 'nope');
    invalid('unknown id, no moderation', $GEN, '{"prompt":"a cat"}',
        'X-GI2-Exception' => 'nope');
    invalid('id is not a prefix match', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_ok2');
    invalid('unknown id in rewrite mode', "/rewrite$GEN", $LOW,
        'X-GI2-Exception' => 'nope');
    invalid('unknown id in allow mode', "/allow$GEN", $AUTO,
        'X-GI2-Exception' => 'nope');
    invalid('unknown id with reject status 403', "/r403$GEN", $LOW,
        'X-GI2-Exception' => 'nope');
    invalid('header sent twice', $GEN, $LOW,
        'X-GI2-Exception' => ['ex_ok', 'ex_ok']);
    invalid('header sent twice, different case', $GEN, $AUTO,
        'X-GI2-Exception' => 'ex_ok', 'x-gi2-exception' => 'ex_ok');
    invalid('header sent twice, second unknown', $GEN, $LOW,
        'X-GI2-Exception' => ['ex_ok', 'nope']);
}

sub test_expiry {
    invalid('expired 2020-01-01', $GEN, $LOW, 'X-GI2-Exception' => 'ex_old');
    invalid('expired yesterday', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_yday');
    valid('expires 2099-12-31', $GEN, $LOW, 'ex_future',
        'X-GI2-Exception' => 'ex_future');
    SKIP: {
        skip 'too close to midnight UTC', 6 if $NEAR_MIDNIGHT;
        valid('expires today (inclusive)', $GEN, $LOW, 'ex_today',
            'X-GI2-Exception' => 'ex_today');
    }
}

sub test_consumer {
    my $r = valid('bound, right bearer', $GEN, $LOW, 'ex_bound',
        'X-GI2-Exception' => 'ex_bound', Authorization => 'Bearer tok123');
    log_is($r, { exception_id => 'ex_bound' }, 'bound, right bearer');
    invalid('bound, wrong bearer', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_bound', Authorization => 'Bearer tok999');
    invalid('bound, no authorization', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_bound');
    invalid('bound, bearer prefix only', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_bound', Authorization => 'Bearer tok12');
    valid('bound and dated, right bearer', $GEN, $LOW, 'ex_both',
        'X-GI2-Exception' => 'ex_both', Authorization => 'Bearer tok123');
}

sub test_custom_server {
    my $r = valid('custom header and consumer', ":2$GEN", $LOW, 'ex_key',
        'X-Policy-Override' => 'ex_key', 'X-Api-Key' => 'key-1');
    log_is($r, { exception_id => 'ex_key' }, 'custom header and consumer');
    invalid('custom consumer, wrong key', ":2$GEN", $LOW,
        'X-Policy-Override' => 'ex_key', 'X-Api-Key' => 'key-2');
    invalid('custom consumer ignores bearer', ":2$GEN", $LOW,
        'X-Policy-Override' => 'ex_key', Authorization => 'Bearer key-1');
    valid('custom header, unbound id', ":2$GEN", $LOW, 'ex_open',
        'X-Policy-Override' => 'ex_open');
    upstream_reset();
    $r = post(":2$GEN", $LOW, 'X-GI2-Exception' => 'ex_open');
    is_rejection($r, 400, 'gi2_moderation_exception_required', 'moderation',
        'default header name is not the exception header there');
    no_upstream('default header name is not the exception header there');
}

sub test_order {
    upstream_reset();
    my $r = post($GEN, '{"prompt":"nude","moderation":"low"}',
        'X-GI2-Exception' => 'ex_ok');
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt',
        'valid exception does not lift deny rules');
    no_upstream('valid exception does not lift deny rules');
    invalid('invalid exception before deny rules', $GEN,
        '{"prompt":"nude","moderation":"low"}', 'X-GI2-Exception' => 'nope');
    upstream_reset();
    $r = post($GEN, '{"prompt":"a cat","moderation":"LOW"}',
        'X-GI2-Exception' => 'nope');
    is_rejection($r, 400, 'gi2_invalid_request', 'moderation',
        'invalid request before invalid exception');
    no_upstream('invalid request before invalid exception');
}

test_valid();
test_unknown();
test_expiry();
test_consumer();
test_custom_server();
test_order();
error_log_clean();
done_testing();
