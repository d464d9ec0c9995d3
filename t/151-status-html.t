#!/usr/bin/perl

# gi2_status's page for browsers: served for Accept: text/html (or
# ?format=html), self-contained, and drawn by headless Chromium from the
# JSON it fetches: the test makes requests, loads the page, lets it run
# for a few seconds of virtual time and reads the rendered DOM: the tiles,
# the table of every series and the chart's bars must show what the
# requests did.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

my $GEN = '/v1/images/generations';

gi2_start(<<'EOF');
    gi2_metrics zone=gi2m:1m;
    gi2_price gpt-image-1 input=5 output=40;
    gi2_rule sx-001 deny sexual '\bnude\b';
    gi2_rule br-001 flag brand '\bacme\b';

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;

        location / {
            proxy_pass http://%%UPSTREAM%%;
        }

        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location = /status {
            gi2_status;
        }

        # the browser asks for it; it is not image traffic
        location = /favicon.ico {
            gi2 off;
            return 404;
        }
    }
EOF

sub body {
    my ($prompt, %o) = @_;
    return json_encode({ model => 'gpt-image-1', prompt => $prompt, %o });
}

# the traffic the page must show
my @sent;
my %made = (allow => 3, flag => 2, reject => 4, rewrite => 1);
for (1 .. $made{allow}) {
    push @sent, http_post($GEN, body('a lighthouse'));
}
for (1 .. $made{flag}) {
    push @sent, http_post($GEN, body('an acme lighthouse'));
}
for (1 .. $made{reject}) {
    push @sent, http_post($GEN, body('a nude figure'));
}
push @sent, http_post("/rewrite$GEN", body('a lighthouse',
    moderation => 'low'));
is_deeply([map { $_->{status} } @sent], [(200) x 5, (400) x 4, 200],
    'the requests: allowed, flagged, rejected, rewritten');
log_for($_) for @sent;

###########################################################################
# the page as served

my $page = http_get('/status', Accept => 'text/html,application/xhtml+xml,'
    . 'application/xml;q=0.9,*/*;q=0.8');
is($page->{status}, 200, 'page: 200');
is(join(',', header_values($page, 'content-type')),
    'text/html; charset=utf-8', 'page: text/html for a browser');
is(join(',', header_values($page, 'vary')), 'Accept', 'page: Vary: Accept');
is(join(',', header_values($page, 'cache-control')), 'no-store',
    'page: not cached');
like($page->{body}, qr/^<!DOCTYPE html>/, 'page: an HTML document');
like($page->{body}, qr/<script>.*fetch\(location\.pathname \+ '\?format=json'/s,
    'page: fetches the JSON of the same location');
like($page->{body}, qr/setTimeout\(tick, 5000\)/, 'page: refreshes itself');

# nothing from elsewhere: no src, no href, no url(), no @import
unlike($page->{body}, qr/\s(src|href)\s*=|url\(|\@import|<link|<iframe/i,
    'page: no external assets');

my $html = http_get('/status?format=html');
is(join(',', header_values($html, 'content-type')),
    'text/html; charset=utf-8', '?format=html without Accept');
is($html->{body}, $page->{body}, '?format=html: the same page');

my $text = http_get('/status', Accept => 'application/json');
like(join(',', header_values($text, 'content-type')), qr{^text/plain},
    'Accept without text/html: the text exposition');

###########################################################################
# the page as Chromium draws it

sub chromium {
    for my $b (qw(chromium chromium-browser google-chrome)) {
        for my $d (split /:/, $ENV{PATH}) {
            return "$d/$b" if -x "$d/$b";
        }
    }
    return undef;
}

# the text of the element with this id in the dumped DOM
sub dom_id {
    my ($dom, $id) = @_;
    return $dom =~ /\sid="\Q$id\E"[^>]*>([^<]*)</ ? $1 : undef;
}

my $chromium = chromium();

SKIP: {
    skip 'no chromium (Debian package chromium; make deps-test)', 1
        unless $chromium;

    my $p = prefix();
    my $url = 'http://127.0.0.1:' . port(1) . '/status';

    # a budget of virtual time: the first fetch and at least one refresh
    system("timeout 120 $chromium --headless --disable-gpu --no-sandbox "
        . "--no-first-run --disable-extensions --disable-dev-shm-usage "
        . "--user-data-dir=$p/chromium --virtual-time-budget=12000 "
        . "--dump-dom '$url' > $p/dom.html 2> $p/chromium.log");
    is($? >> 8, 0, 'chromium ran') or diag(read_file("$p/chromium.log"));
    my $dom = read_file("$p/dom.html") // '';

    like(dom_id($dom, 'status'), qr/^zone gi2m, counting since .* \(refresh \d+\)$/,
        'status line: drawn from the JSON');
    my ($refreshes) = $dom =~ /<body data-refreshes="(\d+)"/;
    ok(($refreshes // 0) >= 2, 'the page refreshed itself ('
        . ($refreshes // 'never') . ' fetches)');

    my $total = 0;
    $total += $_ for values %made;
    is(dom_id($dom, 'tile-requests'), $total, 'tile: requests');
    is(dom_id($dom, 'tile-reject'), $made{reject}, 'tile: rejected');
    is(dom_id($dom, 'tile-flag'), $made{flag}, 'tile: flagged');
    is(dom_id($dom, 'tile-rewrite'), $made{rewrite}, 'tile: rewritten');
    # allowed, flagged and rewritten went upstream: one image each
    my $up = $made{allow} + $made{flag} + $made{rewrite};
    is(dom_id($dom, 'tile-images'), $up, 'tile: images');
    is(dom_id($dom, 'tile-tokens-in'), 50 * $up, 'tile: tokens in');
    is(dom_id($dom, 'tile-tokens-out'), 50 * $up, 'tile: tokens out');
    is(dom_id($dom, 'tile-cost'), sprintf('%.6f', 0.00225 * $up),
        'tile: cost');

    # the table of every series
    for my $d (qw(allow flag reject rewrite)) {
        is(dom_id($dom, "gi2_requests_total|endpoint=image_generation,"
            . "decision=$d"), $made{$d}, "table: requests $d");
    }
    is(dom_id($dom, 'gi2_rule_hits_total|rule=sx-001,category=sexual,'
        . 'action=deny'), $made{reject}, 'table: sx-001 hits');
    is(dom_id($dom, 'gi2_rule_hits_total|rule=br-001,category=brand,'
        . 'action=flag'), $made{flag}, 'table: br-001 hits');
    is(dom_id($dom, 'gi2_moderation_low_total|outcome=rewritten'), 1,
        'table: moderation low rewritten');
    is(dom_id($dom, 'gi2_upstream_responses_total|class=2xx'), $up,
        'table: upstream 2xx');
    is(dom_id($dom, 'gi2_requests_total|endpoint=other,decision=none'), 0,
        'table: the page and its fetches are not counted');
    ok($dom =~ /id="family-gi2_external_moderation_duration_seconds"/,
        'table: the histogram');

    # the chart: its legend sums, and bars that add up to the same
    my %bars;
    while ($dom =~ /<rect ([^>]*)>/g) {
        my $a = $1;
        my ($d) = $a =~ /data-decision="(\w+)"/;
        my ($n) = $a =~ /data-count="(\d+)"/;
        my ($m) = $a =~ /data-minute="(\d+)"/;
        ok($m > time() - 31 * 60 && $m <= time(),
            "bar of $d: a minute of the last half hour");
        $bars{$d} += $n;
    }
    for my $d (qw(allow flag rewrite reject)) {
        is(dom_id($dom, "chart-$d"), $made{$d}, "chart legend: $d");
    }
    is_deeply(\%bars, \%made, 'chart bars: the decisions made');

    # the page and its refreshes, as the server saw them
    my @fetched = grep { my @f = split /\|/, $_, -1;
                         $f[0] eq '' && $f[3] eq '/status' }
        access_log_lines();
    ok(@fetched >= 3, 'the server served the browser the page and its '
        . 'fetches (' . scalar(@fetched) . ' requests)');
}

error_log_clean();

done_testing();
