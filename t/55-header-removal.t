#!/usr/bin/perl

# Removing the exception header must not disturb any other header: nginx
# keeps pointers to header list elements (Authorization, Host, User-Agent),
# so wherever the exception header sits, every other header keeps its
# value, upstream gets all of them in order, and consumer binding reads
# the right Authorization.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use Time::HiRes qw(sleep time);

require_module();

my $FMT = q{'$http_x_t|$http_user_agent|$http_authorization|$host|}
    . q{$gi2_decision|$gi2_exception_id|$gi2_exception_presented|}
    . q{$http_x_gi2_exception'};

gi2_start(<<'EOF2', log_format => $FMT);
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_exception ex_bound consumer=tok123;
        location / {
            proxy_set_header X-Seen-UA $http_user_agent;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2

my $GEN = '/v1/images/generations';
my $LOW = '{"prompt":"a cat","moderation":"low"}';

# (log_for() waits for the line: nginx writes it after the close)
sub entry {
    my ($res) = @_;
    return [] unless %{ log_for($res) };
    for my $l (reverse access_log_lines()) {
        my @v = split /\|/, $l, -1;
        return \@v if $v[0] eq $res->{id};
    }
}

# (the log shows "-" for an empty variable; $host comes from Host)
# Every arrangement of the exception header among the others: first,
# middle, last, alone-ish, repeated (repeats are rejected, but the other
# headers must still be intact in the log).
my @cases = (
    [ 'first', [ 'X-GI2-Exception' => 'ex_bound',
        'Authorization' => 'Bearer tok123', 'User-Agent' => 'ua-1' ] ],
    [ 'middle', [ 'Authorization' => 'Bearer tok123',
        'X-GI2-Exception' => 'ex_bound', 'User-Agent' => 'ua-1' ] ],
    [ 'last', [ 'Authorization' => 'Bearer tok123', 'User-Agent' => 'ua-1',
        'X-GI2-Exception' => 'ex_bound' ] ],
    [ 'between many', [ map({ ("X-Pad-$_" => "p$_") } 1 .. 25),
        'X-GI2-Exception' => 'ex_bound', 'Authorization' => 'Bearer tok123',
        map({ ("X-Tail-$_" => "t$_") } 1 .. 25), 'User-Agent' => 'ua-1' ] ],
);

for my $c (@cases) {
    my ($name, $hdrs) = @$c;
    upstream_reset();
    my ($req, $id) = request_bytes('POST', $GEN, $LOW, @$hdrs);
    my $r = http_send($req, $id);
    my $u = is_passed_exact($r, $LOW, $name);
    my $h = $u->{headers} || {};
    ok(!exists $h->{'x-gi2-exception'}, "$name: exception header removed");
    is($h->{authorization}[0], 'Bearer tok123', "$name: Authorization kept");
    is($h->{'user-agent'}[0], 'ua-1', "$name: User-Agent kept");
    is($h->{'x-seen-ua'}[0], 'ua-1', "$name: \$http_user_agent upstream");
    my @pads = grep { /^x-(pad|tail)-/ } keys %$h;
    for my $p (@pads) {
        my ($k, $n) = $p =~ /^x-(pad|tail)-(\d+)$/;
        is($h->{$p}[0], ($k eq 'pad' ? 'p' : 't') . $n, "$name: $p kept");
    }
    my $e = entry($r);
    is_deeply([ @$e[1 .. 7] ],
        [ 'ua-1', 'Bearer tok123', 'localhost', 'allow', 'ex_bound',
          'ex_bound', '-' ],
        "$name: log sees the headers, not the exception");
}

# a repeated header is rejected, the others still read correctly
{
    upstream_reset();
    my ($req, $id) = request_bytes('POST', $GEN, $LOW,
        'X-GI2-Exception' => 'ex_bound', 'User-Agent' => 'ua-2',
        'X-GI2-Exception' => 'ex_bound', 'Authorization' => 'Bearer tok123',
        'X-GI2-Exception' => 'ex_bound');
    my $r = http_send($req, $id);
    is_rejection($r, 400, 'gi2_moderation_exception_invalid', 'moderation',
        'three exception headers');
    no_upstream('three exception headers');
    my $e = entry($r);
    is_deeply([ @$e[1 .. 7] ],
        [ 'ua-2', 'Bearer tok123', 'localhost', 'reject', '-', 'ex_bound',
          '-' ], 'three exception headers: log');
}

# a GET whose only other header is Host: the list may become one element
{
    upstream_reset();
    my $req = "GET /v1/models HTTP/1.0\r\nX-GI2-Exception: ex_bound\r\n"
        . "X-T: solo\r\n\r\n";
    my $r = http_send($req, 'solo');
    is($r->{status}, 200, 'GET with the exception header: passed');
    my @u = upstream_requests();
    is(scalar @u, 1, 'GET reached upstream once');
    ok(!exists $u[0]{headers}{'x-gi2-exception'},
        'GET: exception header removed');
    is($u[0]{headers}{'x-t'}[0], 'solo', 'GET: other header kept');
}

error_log_clean();
done_testing();
