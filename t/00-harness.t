#!/usr/bin/perl

# The harness itself, on plain nginx without the module: start/stop, the
# mock upstream (content-length and chunked bodies), raw requests, the
# access log and nginx -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

plan skip_all => 'no /usr/sbin/nginx' unless -x '/usr/sbin/nginx';

my %PLAIN = (no_module => 1,
    log_format => q{'$http_x_t|$status|$request_method|$uri'});

gi2_start(<<'EOF', %PLAIN);
    server {
        listen 127.0.0.1:%%PORT%%;
        client_body_buffer_size 1k;
        location / { proxy_pass http://%%UPSTREAM%%; }
    }
EOF

sub test_post {
    upstream_reset();
    my $body = '{"prompt":"a cat","n":1}';
    my $r = http_post('/v1/images/generations', $body, 'X-Extra' => 'a');
    is_passed_exact($r, $body, 'post');
    my $u = (upstream_requests())[0];
    is($u->{method}, 'POST', 'upstream method');
    is($u->{uri}, '/v1/images/generations', 'upstream uri');
    is_deeply($u->{headers}{'x-extra'}, ['a'], 'upstream header');
    like($r->{headers}{'content-type'}[0], qr{application/json},
        'client content type');
    my $log = log_for($r);
    is($log->{status}, 200, 'log status');
    is($log->{uri}, '/v1/images/generations', 'log uri');
}

sub test_chunked {
    upstream_reset();
    my $body = '{"prompt":"' . ('x' x 3000) . '"}';
    my ($req, $id) = request_bytes('POST', '/p', undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    my @parts = unpack('(a700)*', $body);
    my $r = http_send($req . chunked(\@parts, ';ext=1'), $id);
    is_passed_exact($r, $body, 'chunked through a temp file');
}

sub test_trickle {
    upstream_reset();
    my $body = '{"prompt":"slow"}';
    my ($req, $id) = request_bytes('POST', '/p', $body);
    my $r = parse_response(http_raw([unpack('(a3)*', $req)],
        pause => 0.001));
    is_passed_exact($r, $body, 'trickled');
}

sub test_upstream_response {
    upstream_reset();
    upstream_response(status => 429, body => '{"error":"slow down"}');
    my $r = http_post('/p', '{}');
    is($r->{status}, 429, 'configured upstream status');
    is($r->{body}, '{"error":"slow down"}', 'configured upstream body');
    upstream_response();
}

sub test_nginx_t {
    my ($rc, $out, $conf) = nginx_t("    bogus_directive on;\n", %PLAIN);
    isnt($rc, 0, 'nginx -t fails on an unknown directive');
    my $line = conf_line($conf, qr/bogus_directive/);
    like($out, qr/unknown directive "bogus_directive" in \Q$conf\E:$line/,
        'message with file:line');
    ($rc, $out) = nginx_t("    server { listen 127.0.0.1:1; }\n", %PLAIN);
    is($rc, 0, 'nginx -t passes a valid config') or diag($out);
}

test_post();
test_chunked();
test_trickle();
test_upstream_response();
test_nginx_t();
error_log_clean();
done_testing();
