#!/usr/bin/perl

# The moderation service's verdict cache (gi2_moderation_cache): shared by
# the workers (two here, connections spread by reuseport), keyed by the
# prompt's HMAC and the service, the service's answer kept so that each
# location's thresholds still apply, errors never kept, entries expiring
# after ttl=, the least recently used evicted when the zone is full, and
# the verdicts kept across a reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use Time::HiRes qw(sleep);

require_module();

write_file('gi2.key', "0123456789abcdef0123456789abcdef\n");

my $A = \&modapi_answer;

modapi_set(
    default => { json => $A->(0, { violence => [0, 0.01] }) },
    match => [
        ['violent', { json => $A->(1, { violence => [1, 0.95] }) }],
        ['border', { json => $A->(0, { violence => [0, 0.6] }) }],
        ['boom500', { status => 500, body => '{}' }],
    ],
);

my $conf = <<'EOF';
    log_format cachevars escape=json
        '$http_x_t|$status|$gi2_moderation_result|$gi2_moderation_cached|'
        '$gi2_moderation_ms|$pid';

    gi2_hash_key_file %%PREFIX%%/gi2.key;

    server {
        listen 127.0.0.1:%%PORT%% reuseport;
        access_log %%PREFIX%%/access.log gi2test;
        access_log %%PREFIX%%/cache.log cachevars;

        gi2 on;
        gi2_moderation_api http://%%MODAPI%%/v1/moderations;
        gi2_moderation_cache zone=verdicts:1m;

        location /v1/ { proxy_pass http://%%UPSTREAM%%; }
        location /thr/ {
            gi2_moderation_threshold violence 0.5;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /flag/ {
            gi2_moderation_action flag;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /other/ {
            gi2_moderation_api http://%%MODAPI%%/other/moderations;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /model/ {
            gi2_moderation_model text-moderation-007;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /nocache/ {
            gi2_moderation_cache off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /ttl/ {
            gi2_moderation_cache zone=short:64k ttl=1s;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /tiny/ {
            gi2_moderation_cache zone=tiny:32k;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF

my $MODAPI = modapi_addr();
$conf =~ s/%%MODAPI%%/$MODAPI/g;

gi2_start($conf, workers => 2);

my $GEN = 'v1/images/generations';
my @FIELDS = qw(t status result cached ms pid);

sub cachelog {
    my ($res) = @_;
    log_for($res);
    for my $l (reverse split /\n/, read_file(prefix() . '/cache.log') // '') {
        my %e;
        @e{@FIELDS} = split /\|/, $l, -1;
        return \%e if $e{t} eq $res->{id};
    }
    return {};
}

sub post {
    my ($loc, $prompt) = @_;
    return http_post("/$loc/$GEN", json_encode({ prompt => $prompt }));
}

sub calls { return scalar modapi_requests() }

# across workers: one call, then hits wherever the request lands

{
    modapi_reset();
    my (@res, %pids);
    for my $i (1 .. 20) {
        push @res, post('v1', 'a cached cat');
    }
    is(calls(), 1, 'twenty requests, one call to the service');
    is_deeply([map { $_->{status} } @res], [(200) x 20], 'all forwarded');
    my @log = map { cachelog($_) } @res;
    is_deeply([map { "$_->{result}/$_->{cached}" } @log],
        ['clean/0', ('clean/1') x 19], 'the first asked, the rest cached');
    is_deeply([grep { $_ ne '0' } map { $_->{ms} } @log[1 .. 19]], [],
        'a cached verdict took 0 ms');
    $pids{ $_->{pid} }++ for @log;
    my @caller = grep { $_ ne $log[0]{pid} } map { $_->{pid} } @log;
    ok(scalar @caller, 'a worker that did not make the call had hits ('
        . join(', ', map { "$_: $pids{$_}" } sort keys %pids) . ')');
    my @w = worker_pids();
    is(scalar @w, 2, 'two workers');
}

# flagged verdicts too; errors never

{
    modapi_reset();
    my @r = map { post('v1', 'a violent cat') } 1 .. 3;
    is(calls(), 1, 'flagged: one call');
    is_deeply([map { $_->{status} } @r], [400, 400, 400],
        'flagged: every one rejected');
    is_deeply([map { cachelog($_)->{cached} } @r], [0, 1, 1],
        'flagged: then cached');

    modapi_reset();
    @r = map { post('v1', 'boom500 cat') } 1 .. 3;
    is(calls(), 3, 'errors are not cached: three calls');
    is_deeply([map { cachelog($_)->{result} } @r], [('error') x 3],
        'errors: each an error');
}

# the answer is kept, the location's verdict is made on each hit

{
    modapi_reset();
    my $r = post('v1', 'a border case');
    is($r->{status}, 200, 'no thresholds: the service said clean');
    $r = post('thr', 'a border case');
    is(calls(), 1, 'thresholds: the cached answer is used');
    is($r->{status}, 400, 'thresholds: violence 0.6 >= 0.5 rejects');
    is_deeply([@{ cachelog($r) }{qw(result cached)}], ['flagged', 1],
        'thresholds: flagged, from the cache');

    $r = post('flag', 'a violent cat');
    is($r->{status}, 200, 'action flag: a cached flagged verdict forwards');
    is_deeply([@{ cachelog($r) }{qw(result cached)}], ['flagged', 1],
        'action flag: flagged, cached');
    is(calls(), 1, 'action flag: no call');
}

# another service or model is another question

{
    modapi_reset();
    my $r = post('other', 'a cached cat');
    is(calls(), 1, 'another URL: asked');
    is((modapi_requests())[0]{uri}, '/other/moderations',
        'another URL: its own');
    is(cachelog($r)->{cached}, 0, 'another URL: not cached');
    $r = post('other', 'a cached cat');
    is(calls(), 1, 'another URL: then cached');

    modapi_reset();
    $r = post('model', 'a cached cat');
    is(calls(), 1, 'another model: asked');
    is(cachelog($r)->{cached}, 0, 'another model: not cached');

    modapi_reset();
    $r = post('nocache', 'a cached cat');
    $r = post('nocache', 'a cached cat');
    is(calls(), 2, 'gi2_moderation_cache off: asked every time');
    is(cachelog($r)->{cached}, 0, 'off: never cached');
}

# ttl: a verdict is used until it expires

{
    modapi_reset();
    post('ttl', 'a short-lived cat');
    my $r = post('ttl', 'a short-lived cat');
    is(calls(), 1, 'ttl: used while fresh');
    is(cachelog($r)->{cached}, 1, 'ttl: cached');
    sleep(1.3);
    $r = post('ttl', 'a short-lived cat');
    is(calls(), 2, 'ttl: asked again once expired');
    is(cachelog($r)->{cached}, 0, 'ttl: not cached once expired');
}

# a full zone: the least recently used go first

{
    modapi_reset();
    post('tiny', 'prompt first');
    post('tiny', 'prompt kept');
    for my $i (1 .. 300) {
        post('tiny', "filler $i");
        post('tiny', 'prompt kept') if $i % 20 == 0;
    }
    my $n = calls();
    is($n, 302, 'full zone: every new prompt asked (302 calls)');

    my $r = post('tiny', 'prompt kept');
    is(cachelog($r)->{cached}, 1,
        'full zone: a prompt used all along stays');
    $r = post('tiny', 'filler 300');
    is(cachelog($r)->{cached}, 1, 'full zone: the newest stays');
    $r = post('tiny', 'prompt first');
    is(cachelog($r)->{cached}, 0, 'full zone: the oldest unused went');
    is(calls(), $n + 1, 'full zone: only it was asked again');
}

# a reload keeps the zone and its verdicts

{
    modapi_reset();
    my @old = gi2_reload();
    my $end = time() + 10;
    sleep(0.05) while time() < $end && grep { kill 0, $_ } @old;
    ok(!grep({ kill 0, $_ } @old), 'reload: the old workers are gone');

    my $r = post('v1', 'a cached cat');
    is($r->{status}, 200, 'reload: forwarded');
    is(cachelog($r)->{cached}, 1, 'reload: still cached');
    is(calls(), 0, 'reload: not asked');
}

error_log_clean();
done_testing();
