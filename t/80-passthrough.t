#!/usr/bin/perl

# What is inspected: POST to a path ending in /images/generations or
# /images/edits (one optional trailing slash, any case, decoded $uri)
# with gi2 on.  Everything else passes untouched.

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
        location /off/ {
            gi2 off;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        gi2_rule r_other deny sexual "\bnude\b";
        location / { proxy_pass http://%%UPSTREAM%%; }
    }
EOF

my $NUDE = '{"prompt":"a nude","model":"m1"}';
my @EMPTY = map { $_ => '' } qw(decision rule_id rule_category
    moderation_requested moderation_effective exception_id model n size
    quality reject_code);

sub send_req {
    my ($method, $path, $body, @hdrs) = @_;
    my $port = $path =~ s/^:2// ? port(2) : port(1);
    my ($req, $id) = request_bytes($method, $path, $body, @hdrs);
    return http_send($req, $id, port => $port);
}

sub untouched {
    my ($name, $method, $path, $body, @hdrs) = @_;
    upstream_reset();
    my $r = send_req($method, $path, $body, @hdrs);
    is($r->{status}, 200, "$name: status 200");
    my $u = one_upstream($name);
    is($u->{method}, $method, "$name: upstream method");
    ok(($u->{body} // '') eq ($body // ''), "$name: upstream body untouched");
    log_is($r, { @EMPTY }, "$name: nothing inspected");
}

sub inspected {
    my ($name, $path) = @_;
    upstream_reset();
    my $r = send_req('POST', $path, $NUDE);
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', $name);
    no_upstream($name);
}

sub test_inspected_paths {
    inspected('trailing slash', '/v1/images/generations/');
    inspected('upper case', '/V1/IMAGES/GENERATIONS');
    inspected('no version prefix', '/images/generations');
    inspected('any prefix', '/proxy/openai/v1/images/generations');
    inspected('percent-encoded', '/v1/images/%67enerations');
    inspected('dot segments', '/x/../v1/images/generations');
    inspected('query string', '/v1/images/generations?x=1&y=/chat');
    inspected('edits', '/v1/images/edits');
    inspected('edits, mixed case and slash', '/v1/Images/Edits/');
}

sub test_other_requests {
    untouched('GET', 'GET', '/v1/images/generations', undef);
    untouched('PUT', 'PUT', '/v1/images/generations', $NUDE);
    untouched('chat completions', 'POST', '/v1/chat/completions', $NUDE);
    untouched('variations', 'POST', '/v1/images/variations', $NUDE);
    untouched('longer last segment', 'POST', '/v1/images/generationsX',
        $NUDE);
    untouched('extension', 'POST', '/v1/images/generations.json', $NUDE);
    untouched('segment boundary', 'POST', '/v1/myimages/generations', $NUDE);
    untouched('guarded name in the query only', 'POST',
        '/v1/chat?next=/images/generations', $NUDE);
}

sub test_not_guarded {
    untouched('gi2 off', 'POST', '/off/v1/images/generations', $NUDE);
    untouched('gi2 off: invalid JSON', 'POST', '/off/v1/images/generations',
        '{"prompt":');
    untouched('no gi2 directive', 'POST', ':2/v1/images/generations', $NUDE);
    untouched('invalid JSON elsewhere', 'POST', '/v1/chat/completions',
        '{"prompt": nope');
    untouched('invalid UTF-8 elsewhere', 'POST', '/v1/chat/completions',
        qq({"prompt":"\xff\xfe"}));
    untouched('multipart elsewhere', 'POST', '/v1/uploads',
        "--x\r\n\r\n--x--\r\n",
        'Content-Type' => 'multipart/form-data; boundary=x');
    untouched('no content type elsewhere', 'POST', '/v1/chat/completions',
        $NUDE, 'Content-Type' => undef);
    untouched('gzip elsewhere', 'POST', '/v1/chat/completions', $NUDE,
        'Content-Encoding' => 'gzip');
    untouched('moderation low elsewhere', 'POST', '/v1/responses',
        '{"prompt":"x","moderation":"low"}');
}

test_inspected_paths();
test_other_requests();
test_not_guarded();
error_log_clean();
done_testing();
