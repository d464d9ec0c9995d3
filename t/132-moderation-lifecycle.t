#!/usr/bin/perl

# The moderation service client's life on the event loop: calls in
# parallel on one worker while it goes on serving others, connections
# kept and reused, a client that goes away (HTTP/1.1 and HTTP/2) cancels
# its call, `nginx -s reload` and a graceful stop with calls in flight
# answer them, a fast stop drops them cleanly.  Orders of events are
# asserted, never durations.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(sleep time);

require_module();

modapi_set(
    default => { json => modapi_answer(0, {}) },
    match => [
        ['slow-3s', { delay => 3 }],
        ['abortme', { delay => 4 }],
        ['reload-slow', { delay => 1.5 }],
    ],
);

my $conf = <<'EOF';
    log_format lifevars escape=json
        '$http_x_t|$status|$gi2_moderation_result|$gi2_moderation_ms|$pid';

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%% http2;
        access_log %%PREFIX%%/access.log gi2test;
        access_log %%PREFIX%%/life.log lifevars;

        gi2 on;
        gi2_moderation_api http://%%MODAPI%%/v1/moderations;
        gi2_moderation_timeout 10s;

        location /v1/ { proxy_pass http://%%UPSTREAM%%; }
        location = /ping { return 200 "pong\n"; }
    }
EOF

my $MODAPI = modapi_addr();
$conf =~ s/%%MODAPI%%/$MODAPI/g;

gi2_start($conf);

my $GEN = '/v1/images/generations';
my @FIELDS = qw(t status result ms pid);

sub lifelog {
    my ($id) = @_;
    my $end = time() + 10;
    while (time() < $end) {
        for my $l (reverse split /\n/,
            read_file(prefix() . '/life.log') // '')
        {
            my %e;
            @e{@FIELDS} = split /\|/, $l, -1;
            return \%e if $e{t} eq $id;
        }
        sleep(0.02);
    }
    return {};
}

# Sends a request and returns the socket, unread.
sub send_only {
    my ($prompt) = @_;
    my ($req, $id) = request_bytes('POST', $GEN,
        json_encode({ prompt => $prompt }));
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => port(1), Proto => 'tcp') or die "connect: $!";
    syswrite($s, $req) == length $req or die "write: $!";
    return { sock => $s, id => $id };
}

sub read_reply {
    my ($c) = @_;
    my $out = '';
    my $sel = IO::Select->new($c->{sock});
    while ($sel->can_read(10)) {
        my $n = sysread($c->{sock}, $out, 65536, length $out);
        last unless $n;
    }
    close $c->{sock};
    my $res = parse_response($out);
    $res->{id} = $c->{id};
    $res->{at} = time();
    return $res;
}

sub wait_calls {
    my ($n, $what) = @_;
    my $end = time() + 10;
    my @r;
    while (time() < $end) {
        @r = grep { $what->($_) } modapi_requests();
        return @r if @r >= $n;
        sleep(0.02);
    }
    return @r;
}

my %seen_conns;

# twenty calls at once on one worker, and a request served meanwhile

{
    upstream_reset();
    modapi_reset();
    my @c = map { send_only("slow-3s number $_") } 1 .. 20;
    my @calls = wait_calls(20, sub { 1 });
    is(scalar @calls, 20, 'parallel: the service has all twenty calls');

    my $ping = http_get('/ping');
    my $ping_at = time();
    is($ping->{status}, 200, 'parallel: another request is served');

    my @res = map { read_reply($_) } @c;
    is_deeply([map { $_->{status} } @res], [(200) x 20],
        'parallel: all twenty forwarded');
    is(scalar upstream_requests(), 20, 'parallel: upstream got twenty');

    @calls = modapi_requests();
    my ($last_in) = sort { $b <=> $a } map { $_->{time} } @calls;
    my ($first_out) = sort { $a <=> $b } map { $_->{answered} // 9e9 }
        @calls;
    diag("last_in $last_in first_out $first_out ping $ping_at " . join(",", map { "$_->{time}:" . ($_->{answered}//"-") } @calls)) if $ENV{DBG};
    ok($last_in < $first_out, 'parallel: every call reached the service '
        . 'before it answered the first (none waited for another)');
    ok($ping_at < $first_out, 'parallel: the other request was answered '
        . 'while all twenty calls were in flight');

    my %conns = map { $_->{conn} => 1 } @calls;
    is(scalar keys %conns, 20, 'parallel: twenty connections at once');
    %seen_conns = %conns;
    is_deeply([map { lifelog($_->{id})->{result} } @res],
        [('clean') x 20], 'parallel: each clean');
}

# the connections stay open and are reused

{
    modapi_reset();
    for my $i (1 .. 10) {
        my $r = http_post($GEN, json_encode({ prompt => "reuse $i" }));
        is($r->{status}, 200, "reuse $i: forwarded");
    }
    my @calls = modapi_requests();
    is(scalar @calls, 10, 'reuse: ten calls');
    is_deeply([grep { !$seen_conns{ $_->{conn} } } @calls], [],
        'reuse: every call went on a connection opened before');
}

# a client that goes away cancels its call

{
    upstream_reset();
    modapi_reset();
    my $c = send_only('abortme please');
    my @calls = wait_calls(1, sub { 1 });
    is(scalar @calls, 1, 'abort: the call is made');
    close $c->{sock};

    @calls = wait_calls(1, sub { $_[0]{aborted} });
    is(scalar @calls, 1, 'abort: the call is dropped: the service sees its '
        . 'connection closed before it answers');
    my $e = lifelog($c->{id});
    is_deeply([@$e{qw(status result)}], [499, 'cancelled'],
        'abort: logged 499, cancelled');
    like($e->{ms}, qr/^\d+$/, 'abort: the time it ran');
    is(scalar upstream_requests(), 0, 'abort: nothing forwarded');
    like(error_log(), qr/\[info\].*gi2: moderation service call cancelled/,
        'abort: the error log says so');

    my $r = http_post($GEN, json_encode({ prompt => 'after the abort' }));
    is($r->{status}, 200, 'abort: the worker goes on');
}

# the same over HTTP/2: the stream is reset, the call cancelled

SKIP: {
    skip 'curl without HTTP/2', 4 unless have_curl_h2();
    upstream_reset();
    modapi_reset();
    my $p = prefix();
    write_file("$p/h2.json", json_encode({ prompt => 'abortme over h2' }));
    my $rc = system('curl', '-s', '-o', '/dev/null', '--http2-prior-knowledge',
        '-m', '1', '-H', 'X-T: h2abort', '-H',
        'Content-Type: application/json', '--data-binary', "\@$p/h2.json",
        'http://127.0.0.1:' . port(2) . $GEN);
    isnt($rc, 0, 'h2 abort: the client gave up');
    my @calls = wait_calls(1, sub { $_[0]{aborted} });
    is(scalar @calls, 1, 'h2 abort: the call is dropped');
    is(lifelog('h2abort')->{result}, 'cancelled', 'h2 abort: cancelled');
    is(scalar upstream_requests(), 0, 'h2 abort: nothing forwarded');
}

# nginx -s reload with calls in flight: they are answered

{
    upstream_reset();
    modapi_reset();
    my @c = map { send_only("reload-slow $_") } 1 .. 3;
    my @calls = wait_calls(3, sub { 1 });
    is(scalar @calls, 3, 'reload: three calls in flight');
    my ($old) = gi2_reload();
    my @res = map { read_reply($_) } @c;
    is_deeply([map { $_->{status} } @res], [200, 200, 200],
        'reload: the calls in flight are answered and forwarded');
    is(scalar upstream_requests(), 3, 'reload: upstream got them');
    is_deeply([map { $_->{aborted} } modapi_requests()], [0, 0, 0],
        'reload: none dropped');
    is_deeply([map { lifelog($_->{id})->{pid} } @res], [($old) x 3],
        'reload: the old worker finished them');

    my $end = time() + 10;
    sleep(0.05) while time() < $end && kill 0, $old;
    ok(!kill(0, $old), 'reload: then the old worker exits');

    modapi_reset();
    my $r = http_post($GEN, json_encode({ prompt => 'after the reload' }));
    is($r->{status}, 200, 'reload: the new worker calls the service');
    isnt(lifelog($r->{id})->{pid}, $old, 'reload: a new worker');
    is(scalar modapi_requests(), 1, 'reload: one call');
}

# a graceful stop answers the call in flight

{
    upstream_reset();
    modapi_reset();
    my $c = send_only('reload-slow stop');
    wait_calls(1, sub { 1 });
    my $master = (read_file(prefix() . '/nginx.pid') // '') =~ /(\d+)/
        ? $1 : 0;
    kill 'QUIT', $master;
    my $res = read_reply($c);
    is($res->{status}, 200, 'quit: the call in flight is answered');
    is(scalar upstream_requests(), 1, 'quit: and forwarded');
    error_log_clean();
}

# a fast stop drops the call in flight cleanly

{
    gi2_start($conf);
    modapi_reset();
    my $c = send_only('abortme at stop');
    wait_calls(1, sub { 1 });
    my $master = (read_file(prefix() . '/nginx.pid') // '') =~ /(\d+)/
        ? $1 : 0;
    kill 'TERM', $master;
    my $res = read_reply($c);
    is($res->{status}, 0, 'terminate: the connection is closed');
    my @calls = wait_calls(1, sub { $_[0]{aborted} });
    is(scalar @calls, 1, 'terminate: the call is dropped');
    error_log_clean();
}

done_testing();
