#!/usr/bin/perl

# How the body arrives: in a temp file, chunked, trickled in tiny writes,
# after 100-continue, pipelined, and over HTTP/2.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Gi2Test;

require_module();

my $SERVER = <<'EOF';
        gi2 on;
        client_max_body_size 10m;
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /small/ {
            client_body_buffer_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /rewrite/ {
            client_body_buffer_size 1k;
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /limit/ {
            client_max_body_size 1k;
            proxy_pass http://%%UPSTREAM%%;
        }
EOF

gi2_start(<<"EOF");
    gi2_rule r_nude deny sexual "\\bnude\\b";
    gi2_exception ex_t;
    server {
        listen 127.0.0.1:%%PORT%%;
$SERVER
    }
    server {
        listen 127.0.0.1:%%PORT2%% http2;
$SERVER
    }
EOF

my $GEN = 'v1/images/generations';
my $BIG = 'x' x 200_000;

sub body_with {
    my ($prompt, $extra) = @_;
    return qq({"blob":"$BIG","prompt":"$prompt"$extra});
}

sub check_passed {
    my ($r, $body, $name) = @_;
    my $u = is_passed_exact($r, $body, $name);
    ok(!$u->{headers}{'transfer-encoding'}, "$name: sent with length");
    return $u;
}

sub check_denied {
    my ($r, $name) = @_;
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', $name);
    no_upstream($name);
    log_is($r, { decision => 'reject', rule_id => 'r_nude' }, $name);
}

sub test_temp_file {
    upstream_reset();
    my $body = body_with('a cat', '');
    my $r = http_post("/small/$GEN", $body);
    check_passed($r, $body, 'temp file: clean');
    log_is($r, { decision => 'allow' }, 'temp file: clean');
    upstream_reset();
    check_denied(http_post("/small/$GEN", body_with('nude', '')),
        'temp file: prompt after a large field');
    upstream_reset();
    $r = http_post("/rewrite/$GEN", body_with('a', ',"moderation":"low"'));
    check_passed($r, body_with('a', ',"moderation":"auto"'),
        'temp file: rewrite after a large field');
    upstream_reset();
    $body = qq({"moderation":"low","blob":"$BIG","prompt":"a"});
    (my $want = $body) =~ s/"low"/"auto"/;
    $r = http_post("/rewrite/$GEN", $body);
    check_passed($r, $want, 'temp file: rewrite before a large field');
    log_is($r, { decision => 'rewrite' }, 'temp file: rewrite');
}

sub send_chunked {
    my ($path, $pieces, $ext, $trailer) = @_;
    my ($req, $id) = request_bytes('POST', $path, undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    my $c = chunked($pieces, $ext);
    $c =~ s/\r\n\z/$trailer\r\n/ if $trailer;
    return http_send($req . $c, $id);
}

sub test_chunked {
    my $body = qq({"prompt":"a caf\xc3\xa9 \xe7\x8c\xab","n":1});
    my @pieces = unpack('(a5)*', $body);
    upstream_reset();
    my $r = send_chunked("/$GEN", \@pieces, ';foo=bar');
    my $u = check_passed($r, $body, 'chunked with extensions');
    ok(!$u->{chunked}, 'chunked with extensions: upstream not chunked');
    upstream_reset();
    check_denied(send_chunked("/$GEN", [unpack('(a3)*',
        '{"prompt":"a n\u200bude"}')], '', "X-Trailer: v\r\n"),
        'chunked deny with a trailer');
    upstream_reset();
    $body = body_with('a cat', '');
    $r = send_chunked("/small/$GEN", [unpack('(a1000)*', $body)]);
    check_passed($r, $body, 'chunked into a temp file');
    upstream_reset();
    check_denied(send_chunked("/small/$GEN",
        [unpack('(a999)*', body_with('nude', ''))]),
        'chunked deny from a temp file');
}

sub trickle {
    my ($path, $body) = @_;
    my ($req, $id) = request_bytes('POST', $path, $body);
    my $raw = http_raw([unpack('(a2)*', $req)], pause => 0.001);
    my $r = parse_response($raw);
    $r->{id} = $id;
    return $r;
}

sub test_small_writes {
    upstream_reset();
    my $body = qq({"prompt":"a \xe7\x8c\xab on a mat","size":"1024x1024"});
    my $r = trickle("/$GEN", $body);
    check_passed($r, $body, 'small writes: clean');
    log_is($r, { decision => 'allow', size => '1024x1024' },
        'small writes: clean');
    upstream_reset();
    check_denied(trickle("/$GEN", '{"prompt":"NUDE"}'),
        'small writes: deny');
    upstream_reset();
    $r = trickle("/rewrite/$GEN", '{"moderation":"low","prompt":"a"}');
    check_passed($r, '{"moderation":"auto","prompt":"a"}',
        'small writes: rewrite');
}

sub test_expect_continue {
    upstream_reset();
    my $body = '{"prompt":"a cat"}';
    my ($req, $id) = request_bytes('POST', "/$GEN", $body,
        Expect => '100-continue');
    my ($head) = $req =~ /^(.*?\r\n\r\n)/s;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => port(1), Proto => 'tcp') or die "connect: $!";
    print {$s} $head;
    $s->flush;
    my $interim = '';
    while ($interim !~ /\r\n\r\n/) {
        IO::Select->new($s)->can_read(10) or last;
        sysread($s, $interim, 1, length $interim) or last;
    }
    like($interim, qr{^HTTP/1\.1 100 Continue\r\n}, 'expect: 100 continue');
    print {$s} $body;
    $s->flush;
    local $/;
    my $r = parse_response(<$s> // '');
    close $s;
    $r->{id} = $id;
    check_passed($r, $body, 'expect: body after 100 continue');
}

sub test_pipelined {
    upstream_reset();
    my ($a) = request_bytes('POST', "/$GEN", '{"prompt":"a cat"}',
        Connection => 'keep-alive');
    my ($b) = request_bytes('POST', "/$GEN", '{"prompt":"nude"}');
    my $r1 = parse_response(http_raw($a . $b));
    my $r2 = parse_response($r1->{rest});
    is($r1->{status}, 200, 'pipelined: first allowed');
    is(($r2->{json}{error} || {})->{code}, 'gi2_prompt_rejected',
        'pipelined: second denied');
    is(scalar(upstream_requests()), 1, 'pipelined: one upstream request');
    upstream_reset();
    ($a) = request_bytes('POST', "/$GEN", '{"prompt":"nude"}',
        Connection => 'keep-alive');
    ($b) = request_bytes('POST', "/$GEN", '{"prompt":"a dog"}');
    $r1 = parse_response(http_raw($a . $b));
    $r2 = parse_response($r1->{rest});
    is(($r1->{json}{error} || {})->{code}, 'gi2_prompt_rejected',
        'pipelined: first denied');
    is($r2->{status}, 200, 'pipelined: second allowed after a rejection');
    is(join('', map { $_->{body} } upstream_requests()), '{"prompt":"a dog"}',
        'pipelined: only the second reached upstream');
}

sub test_broken_transport {
    upstream_reset();
    my $big = '{"prompt":"' . ('y' x 3000) . '"}';
    my ($req) = request_bytes('POST', "/limit/$GEN", undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    my $r = parse_response(http_raw($req . chunked([unpack('(a500)*', $big)])));
    is($r->{status}, 413, 'chunked body over client_max_body_size: 413');
    ($req) = request_bytes('POST', "/limit/$GEN", $big);
    $r = parse_response(http_raw($req));
    is($r->{status}, 413, 'content-length over client_max_body_size: 413');
    ($req) = request_bytes('POST', "/$GEN", '{"prompt":"a"}',
        'Content-Length' => ['14', '15']);
    $r = parse_response(http_raw($req));
    is($r->{status}, 400, 'two content-length headers: 400');
    ($req) = request_bytes('POST', "/$GEN", '{"prompt":"a cat"}',
        'Content-Length' => 500);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => port(1), Proto => 'tcp') or die "connect: $!";
    print {$s} $req;
    close $s;
    my $body = '{"prompt":"after an abort"}';
    $r = http_post("/$GEN", $body);
    check_passed($r, $body, 'request after a client abort mid-body');
}

sub h2 {
    my ($path, $body, %o) = @_;
    upstream_reset();
    return curl_h2(port(2), $path, $body, [], %o);
}

sub test_http2 {
    SKIP: {
        skip 'curl without HTTP/2', 1 unless have_curl_h2();
        my $body = '{"prompt":"a cat","model":"gpt-image-1"}';
        my $r = h2("/$GEN", $body);
        check_passed($r, $body, 'h2: clean');
        log_is($r, { decision => 'allow', model => 'gpt-image-1' },
            'h2: clean');
        check_denied(h2("/$GEN", '{"prompt":"a nude"}'), 'h2: deny');
        $r = h2("/$GEN", $body, stdin => 1);
        check_passed($r, $body, 'h2: no content-length');
        $r = h2("/rewrite/$GEN", '{"prompt":"a","moderation":"low"}',
            stdin => 1);
        check_passed($r, '{"prompt":"a","moderation":"auto"}',
            'h2: rewrite without content-length');
        $body = body_with('a cat', '');
        $r = h2("/small/$GEN", $body);
        check_passed($r, $body, 'h2: temp file');
        check_denied(h2("/small/$GEN", body_with('nude', ''), stdin => 1),
            'h2: deny from a temp file');
        upstream_reset();
        $body = '{"prompt":"a","moderation":"low"}';
        $r = curl_h2(port(2), "/$GEN", $body, ['X-GI2-Exception' => 'ex_t']);
        my $u = check_passed($r, $body, 'h2: exception');
        ok(!$u->{headers}{'x-gi2-exception'}, 'h2: exception header removed');
        log_is($r, { exception_id => 'ex_t' }, 'h2: exception');
    }
}

test_temp_file();
test_chunked();
test_small_writes();
test_expect_continue();
test_pipelined();
test_broken_transport();
test_http2();
error_log_clean();
done_testing();
