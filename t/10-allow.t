#!/usr/bin/perl

# Clean requests on guarded paths: forwarded byte for byte, the client
# gets upstream's answer, and the access log variables describe them.

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
    }
EOF

my $GEN = '/v1/images/generations';

sub allow {
    my ($name, $path, $body, @hdrs) = @_;
    upstream_reset();
    my $r = http_post($path, $body, @hdrs);
    my $u = is_passed_exact($r, $body, $name);
    return ($r, $u);
}

sub test_full_request {
    my $body = '{"model":"gpt-image-1","prompt":"a cat on a mat","n":2,'
        . '"size":"1024x1024","quality":"high","moderation":"auto",'
        . '"user":"u-1","stream":false}';
    my ($r, $u) = allow('full', $GEN, $body, Authorization => 'Bearer k');
    is($u->{method}, 'POST', 'full: method');
    is($u->{uri}, $GEN, 'full: uri');
    is_deeply($u->{headers}{authorization}, ['Bearer k'],
        'full: other headers forwarded');
    log_is($r, { status => 200, decision => 'allow', rule_id => '',
        rule_category => '', moderation_requested => 'auto',
        moderation_effective => 'auto', exception_id => '',
        model => 'gpt-image-1', n => '2', size => '1024x1024',
        quality => 'high', reject_code => '' }, 'full');
}

sub test_minimal {
    my ($r) = allow('minimal', $GEN, '{"prompt":"a dog"}');
    log_is($r, { decision => 'allow', moderation_requested => '',
        moderation_effective => 'auto', model => '', n => '', size => '',
        quality => '', reject_code => '', exception_id => '' },
        'minimal');
}

sub test_edits {
    my ($r) = allow('edits', '/v1/images/edits',
        '{"prompt":"make it blue","model":"gpt-image-1"}');
    log_is($r, { decision => 'allow', model => 'gpt-image-1' }, 'edits');
}

sub test_exact_bytes {
    my $body = qq({ "prompt" : "a \\"quoted\\" caf\\u00e9 )
        . qq(\xc3\xa9 \xe7\x8c\xab",\n)
        . qq(\t"extra": {"nested": [1, 2.5e3, true, null, "x", {}], "a":[]},)
        . qq( "n" : 1 , "background":"transparent" }\r\n);
    my ($r) = allow('odd formatting', $GEN, $body);
    log_is($r, { decision => 'allow', n => '1' }, 'odd formatting');
}

sub test_decoded_values {
    my $body = '{"prompt":"x","model":"gpt\u002dimage-1",'
        . '"size":"1536x1024","quality":"lo\u0077","n":10}';
    my ($r) = allow('escaped values', $GEN, $body);
    log_is($r, { model => 'gpt-image-1', size => '1536x1024',
        quality => 'low', n => '10' }, 'escaped values');
}

sub test_content_types {
    for my $ct ('application/json; charset=utf-8', 'Application/JSON',
        'application/json; charset=UTF-8')
    {
        my ($r) = allow("content type '$ct'", $GEN, '{"prompt":"a cat"}',
            'Content-Type' => $ct);
        log_is($r, { decision => 'allow' }, "content type '$ct'");
    }
    allow('content-encoding identity', $GEN, '{"prompt":"a cat"}',
        'Content-Encoding' => 'identity');
}

sub test_large_prompt {
    my $body = '{"prompt":"' . ('a quiet lake ' x 2000) . '"}';
    my ($r) = allow('large prompt', $GEN, $body);
    log_is($r, { decision => 'allow' }, 'large prompt');
}

sub test_upstream_error_passes {
    upstream_reset();
    my $ebody = '{"error":{"message":"rate limited","code":"x"}}';
    upstream_response(status => 429, body => $ebody,
        headers => [['Content-Type', 'application/json'],
            ['Retry-After', '7']]);
    my $r = http_post($GEN, '{"prompt":"a cat"}');
    is($r->{status}, 429, 'upstream 429 reaches the client');
    is($r->{body}, $ebody, 'upstream error body unchanged');
    is_deeply($r->{headers}{'retry-after'}, ['7'], 'upstream headers kept');
    log_is($r, { status => 429, decision => 'allow' }, 'upstream 429');
    upstream_response();
}

test_full_request();
test_minimal();
test_edits();
test_exact_bytes();
test_decoded_values();
test_content_types();
test_large_prompt();
test_upstream_error_passes();
error_log_clean();
done_testing();
