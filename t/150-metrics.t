#!/usr/bin/perl

# gi2_metrics and gi2_status: every counter moved by real requests through
# the mock upstream and read back from the exposition (checked line by
# line for the Prometheus text format), the JSON variant equal to it,
# counters kept across reloads (rule ids added, removed, recategorised and
# brought back), a new zone size starting afresh, two workers adding to
# one set of counters, and the configuration errors nginx -t reports with
# file:line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

require_module();

my $GEN = '/v1/images/generations';
my $EDIT = '/v1/images/edits';
my $JSON_H = [['Content-Type', 'application/json']];

write_file('kw/weapons.txt', "# weapons\ngrenade\npipe bomb\n");

# The http{} body: $o{rules} replaces the rule set, $o{zone} the size.
sub conf {
    my (%o) = @_;
    my $zone = $o{zone} || '1m';
    my $listen = $o{listen} // '';
    my $rules = $o{rules} // <<'EOF';
    gi2_rule sx-001 deny sexual '\bnude\b';
    gi2_rule br-001 flag brand '\bacme\b';
    gi2_keywords kw-001 deny weapons kw/weapons.txt;
EOF
    return <<"EOF";
    gi2_metrics zone=gi2m:$zone;
    gi2_price gpt-image-1 input=5 output=40;
$rules
    gi2_exception EXC-A;
    gi2_exception EXC-B;

    server {
        listen 127.0.0.1:%%PORT%%$listen;
        gi2 on;

        location / {
            proxy_pass http://%%UPSTREAM%%;
        }

        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /allowlow/ {
            gi2_moderation_low allow;
            gi2_exception EXC-A;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /down/ {
            proxy_pass http://127.0.0.1:%%PORT2%%/;
        }

        location = /metrics {
            gi2_status;
        }
    }
EOF
}

###########################################################################
# the exposition

# Canonical key of a series: name{k=v,...}, labels sorted.
sub key {
    my ($name, %l) = @_;
    return $name . '{' . join(',', map { "$_=$l{$_}" } sort keys %l) . '}';
}

# Parses Prometheus text format 0.0.4 strictly; returns
# {samples => {key => value}, families => {name => {type, help}},
#  order => [keys], errors => [...]}.
sub parse_prom {
    my ($text) = @_;
    my (%fam, %val, @err, @order, $cur);
    my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    push @err, 'does not end with a newline' unless $text =~ /\n\z/;
    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;
        if (my ($f, $help) = $line =~ /^# HELP ($name_re) (.*)$/) {
            push @err, "$n: HELP $f twice" if exists $fam{$f}{help};
            push @err, "$n: bad escape in HELP" if $help =~ /\\[^\\n]/;
            $fam{$f}{help} = $help;
            next;
        }
        if (my ($f, $type) = $line =~ /^# TYPE ($name_re) (\S+)$/) {
            push @err, "$n: TYPE $f twice" if exists $fam{$f}{type};
            push @err, "$n: TYPE $f after its samples"
                if $fam{$f}{samples};
            push @err, "$n: type $type" unless $type
                =~ /^(counter|gauge|histogram|summary|untyped)$/;
            $fam{$f}{type} = $type;
            $cur = $f;
            next;
        }
        if ($line =~ /^#/) {
            push @err, "$n: stray comment: $line";
            next;
        }
        my ($name, $lab, $value) =
            $line =~ /^($name_re)(?:\{(.*)\})? (\S+)$/
            or do { push @err, "$n: not a sample: $line"; next };
        my %l;
        if (defined $lab) {
            my $rest = $lab;
            while ($rest =~ s/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)//) {
                push @err, "$n: label $1 twice" if exists $l{$1};
                $l{$1} = $2;
                last if $3 eq '';
            }
            push @err, "$n: bad labels: $lab" if length $rest;
        }
        push @err, "$n: bad value $value"
            unless $value =~ /^(-?\d+(\.\d+)?([eE][-+]?\d+)?|[-+]Inf|NaN)$/;
        my $f = $name;
        if (!defined $cur) {
            push @err, "$n: sample before any TYPE";
        } elsif ($fam{$cur}{type} eq 'histogram') {
            $f =~ s/_(bucket|sum|count)$//;
        }
        push @err, "$n: $name is not of the family $cur"
            if defined $cur && $f ne $cur;
        push @err, "$n: counter $name has no _total suffix"
            if defined $cur && $fam{$cur}{type} eq 'counter'
            && $name !~ /_total$/;
        $fam{$f}{samples}++;
        my $k = key($name, %l);
        push @err, "$n: $k twice" if exists $val{$k};
        $val{$k} = $value;
        push @order, $k;
    }
    for my $f (sort keys %fam) {
        push @err, "$f: no HELP" unless defined $fam{$f}{help};
        push @err, "$f: no TYPE" unless defined $fam{$f}{type};
        next unless ($fam{$f}{type} // '') eq 'histogram';
        my @b = grep { /^\Q$f\E_bucket\{/ } @order;
        my $prev = -1;
        for my $b (@b) {
            push @err, "$b: buckets not cumulative" if $val{$b} < $prev;
            $prev = $val{$b};
        }
        push @err, "$f: no +Inf bucket"
            unless @b && $b[-1] eq key("${f}_bucket", le => '+Inf');
        push @err, "$f: _count is not the +Inf bucket"
            unless @b && ($val{ key("${f}_count") } // -1) == $val{ $b[-1] };
        push @err, "$f: no _sum" unless exists $val{ key("${f}_sum") };
    }
    return { samples => \%val, families => \%fam, order => \@order,
        errors => \@err };
}

sub scrape {
    my $r = http_get('/metrics?format=prometheus');
    is($r->{status}, 200, 'scrape: 200') or diag($r->{raw});
    return parse_prom($r->{body});
}

sub value {
    my ($p, $name, %l) = @_;
    return $p->{samples}{ key($name, %l) };
}

###########################################################################
# requests, and what each should add

my %want;

sub bump {
    my ($n, $name, %l) = @_;
    $want{ key($name, %l) } += $n;
}

my @sent;

# Waits until every request sent has its access log line: the counting
# happened in the log phase before it.
sub settle {
    log_for($_) for @sent;
    @sent = ();
}

sub req {
    my ($path, $body, @h) = @_;
    my $r = http_post($path, $body, @h);
    push @sent, $r;
    return $r;
}

sub gen {
    my ($decision, %o) = @_;
    bump(1, 'gi2_requests_total', endpoint => $o{endpoint}
        || 'image_generation', decision => $decision);
}

# An allowed request answered with the mock's default image (usage 50 in,
# 50 out: 0.00225 USD at the configured price).
sub answered {
    bump(1, 'gi2_upstream_responses_total', class => '2xx');
    bump(1, 'gi2_images_total');
    bump(50, 'gi2_tokens_total', direction => 'input');
    bump(50, 'gi2_tokens_total', direction => 'output');
    $want{cost} += 2250;
}

sub hit {
    my ($rule, $cat, $action) = @_;
    bump(1, 'gi2_rule_hits_total', rule => $rule, category => $cat,
        action => $action);
}

sub body {
    my ($prompt, %o) = @_;
    return json_encode({ model => 'gpt-image-1', prompt => $prompt, %o });
}

sub test_traffic {
    my $r;

    $r = req($GEN, body('a lighthouse at dawn'));
    is($r->{status}, 200, 'allow');
    gen('allow');
    answered();

    $r = req($GEN, body('an acme lighthouse'));
    is($r->{status}, 200, 'flag');
    gen('flag');
    hit('br-001', 'brand', 'flag');
    answered();

    $r = req($GEN, body('a nude acme figure'));
    is($r->{status}, 400, 'reject: regex, with a flag rule too');
    gen('reject');
    hit('sx-001', 'sexual', 'deny');
    hit('br-001', 'brand', 'flag');
    bump(1, 'gi2_rejections_total', code => 'gi2_prompt_rejected');

    $r = req($GEN, body('a PIPE   bomb and a grenade'));
    is($r->{status}, 400, 'reject: keywords');
    gen('reject');
    hit('kw-001', 'weapons', 'deny');
    bump(1, 'gi2_rejections_total', code => 'gi2_prompt_rejected');

    $r = req($GEN, '{"prompt":');
    is($r->{status}, 400, 'reject: not JSON');
    gen('reject');
    bump(1, 'gi2_rejections_total', code => 'gi2_invalid_request');

    $r = req($GEN, body('a lighthouse', moderation => 'low'));
    is($r->{status}, 400, 'moderation low rejected');
    gen('reject');
    bump(1, 'gi2_rejections_total',
        code => 'gi2_moderation_exception_required');
    bump(1, 'gi2_moderation_low_total', outcome => 'rejected');

    $r = req("/rewrite$GEN", body('a lighthouse', moderation => 'low'));
    is($r->{status}, 200, 'moderation low rewritten');
    gen('rewrite');
    bump(1, 'gi2_moderation_low_total', outcome => 'rewritten');
    answered();

    $r = req("/allowlow$GEN", body('a lighthouse', moderation => 'low'));
    is($r->{status}, 200, 'moderation low allowed by policy');
    gen('allow');
    bump(1, 'gi2_moderation_low_total', outcome => 'allowed');
    answered();

    for my $exc (qw(EXC-A EXC-A EXC-B)) {
        $r = req($GEN, body('a lighthouse', moderation => 'low'),
            'X-GI2-Exception' => $exc);
        is($r->{status}, 200, "moderation low with $exc");
        gen('allow');
        bump(1, 'gi2_moderation_low_total', outcome => 'exception');
        bump(1, 'gi2_exceptions_used_total', exception => $exc);
        answered();
    }

    # an exception with moderation auto is accepted but not used
    $r = req($GEN, body('a lighthouse'), 'X-GI2-Exception' => 'EXC-B');
    is($r->{status}, 200, 'exception presented with moderation auto');
    gen('allow');
    answered();

    # under gi2_moderation_low allow the exception is used all the same
    $r = req("/allowlow$GEN", body('a lighthouse', moderation => 'low'),
        'X-GI2-Exception' => 'EXC-A');
    is($r->{status}, 200, 'exception where the policy allows low');
    gen('allow');
    bump(1, 'gi2_moderation_low_total', outcome => 'exception');
    bump(1, 'gi2_exceptions_used_total', exception => 'EXC-A');
    answered();

    $r = req($GEN, body('a lighthouse', moderation => 'low'),
        'X-GI2-Exception' => 'EXC-UNKNOWN');
    is($r->{status}, 400, 'unknown exception');
    gen('reject');
    bump(1, 'gi2_rejections_total',
        code => 'gi2_moderation_exception_invalid');

    $r = req($EDIT, body('a lighthouse',
        images => [{ image_url => 'https://example.com/a.png' }]));
    is($r->{status}, 200, 'edit allowed');
    gen('allow', endpoint => 'image_edit');
    answered();

    $r = req($EDIT, body('make it nude'));
    is($r->{status}, 400, 'edit rejected');
    gen('reject', endpoint => 'image_edit');
    hit('sx-001', 'sexual', 'deny');
    bump(1, 'gi2_rejections_total', code => 'gi2_prompt_rejected');

    # not an image endpoint: in a gi2 location, counted, not inspected
    $r = http_get('/v1/models');
    push @sent, $r;
    is($r->{status}, 200, 'GET in a gi2 location');
    gen('none', endpoint => 'other');
    bump(1, 'gi2_upstream_responses_total', class => '2xx');

    # the client goes away in the middle of the body: never decided
    my ($bytes, $id) = request_bytes('POST', $GEN, undef,
        'Content-Type' => 'application/json', 'Content-Length' => 100);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => port(1), Proto => 'tcp') or die "connect: $!";
    print {$s} $bytes . '{"prompt":"a li';
    sleep(0.2);
    close $s;
    push @sent, $id;
    gen('none');

    settle();
}

sub error_body {
    my (%e) = @_;
    return json_encode({ error => { message => 'm', param => undef, %e } });
}

sub upstream_case {
    my ($name, $status, $body, %o) = @_;
    upstream_response(status => $status,
        headers => $o{headers} || $JSON_H, body => $body);
    my $r = req($GEN, body('a lighthouse'));
    is($r->{status}, $status, "$name: status $status");
    is($r->{body}, $body, "$name: the client got upstream's body");
    gen('allow');
}

sub test_upstream {
    upstream_case('moderation_blocked at output', 400, error_body(
        type => 'image_generation_user_error', code => 'moderation_blocked',
        moderation_details => { moderation_stage => 'output',
            categories => ['sexual'] }));
    bump(1, 'gi2_upstream_moderation_blocked_total', stage => 'output');
    bump(1, 'gi2_upstream_responses_total', class => '4xx');

    upstream_case('moderation_blocked at input', 400, error_body(
        type => 'image_generation_user_error', code => 'moderation_blocked',
        moderation_details => { moderation_stage => 'input',
            categories => ['violence'] }));
    bump(1, 'gi2_upstream_moderation_blocked_total', stage => 'input');
    bump(1, 'gi2_upstream_responses_total', class => '4xx');

    for (1 .. 2) {
        upstream_case('rate limited', 429, error_body(type => 'requests',
            code => 'rate_limit_exceeded'));
        bump(1, 'gi2_upstream_errors_total', code => 'rate_limit_exceeded');
        bump(1, 'gi2_upstream_responses_total', class => '4xx');
    }

    upstream_case('server error without a code', 500,
        error_body(type => 'server_error', code => undef));
    bump(1, 'gi2_upstream_errors_total', code => 'none');
    bump(1, 'gi2_upstream_responses_total', class => '5xx');

    # what the provider writes into a code is kept to safe characters
    upstream_case('a code with odd characters', 400,
        error_body(type => 'invalid_request_error',
            code => "bad code\"\x{e9}\n"));
    bump(1, 'gi2_upstream_errors_total', code => 'bad_code____');
    bump(1, 'gi2_upstream_responses_total', class => '4xx');

    upstream_case('a redirect', 302, 'moved',
        headers => [['Content-Type', 'text/html'],
                    ['Location', 'http://example.com/']]);
    bump(1, 'gi2_upstream_responses_total', class => '3xx');

    upstream_case('two images and more usage', 200, json_encode({
        created => 1, data => [{ b64_json => 'iVBORw0KGgo=' },
            { b64_json => 'iVBORw0KGgo=' }],
        usage => { input_tokens => 10, output_tokens => 4160,
            total_tokens => 4170 } }));
    bump(1, 'gi2_upstream_responses_total', class => '2xx');
    bump(2, 'gi2_images_total');
    bump(10, 'gi2_tokens_total', direction => 'input');
    bump(4160, 'gi2_tokens_total', direction => 'output');
    $want{cost} += 10 * 5 + 4160 * 40;

    upstream_response();

    # an upstream nginx cannot reach: the status nginx recorded for it
    my $r = req("/down$GEN", body('a lighthouse'));
    is($r->{status}, 502, 'upstream down: 502');
    gen('allow');
    bump(1, 'gi2_upstream_responses_total', class => '5xx');

    settle();
}

# Every series of the families below has its expected value, zero when
# nothing was bumped.
my @COUNTED = qw(gi2_requests_total gi2_rejections_total
    gi2_rule_hits_total gi2_moderation_low_total gi2_exceptions_used_total
    gi2_upstream_responses_total gi2_upstream_errors_total
    gi2_upstream_moderation_blocked_total gi2_external_moderation_total
    gi2_images_total gi2_tokens_total);

sub check_counters {
    my ($p, $name) = @_;
    my %got;
    for my $k (keys %{ $p->{samples} }) {
        my ($f) = $k =~ /^([^{]+)/;
        $got{$k} = $p->{samples}{$k} if grep { $_ eq $f } @COUNTED;
    }
    my %exp = map { $_ => 0 } keys %got;
    for my $k (keys %want) {
        next if $k eq 'cost';
        $exp{$k} = $want{$k};
    }
    is_deeply(\%got, \%exp, "$name: every counter as the requests made it")
        or diag(explain({ got => \%got, want => \%exp }));
    is(value($p, 'gi2_cost_usd_total'),
        sprintf('%d.%06d', int(($want{cost} // 0) / 1e6),
            ($want{cost} // 0) % 1e6),
        "$name: cost");
}

sub test_exposition {
    my $r = http_get('/metrics?format=prometheus');
    is($r->{status}, 200, 'exposition: 200');
    is(join(',', header_values($r, 'content-type')),
        'text/plain; version=0.0.4; charset=utf-8', 'exposition: type');
    is(join(',', header_values($r, 'cache-control')), 'no-store',
        'exposition: not cached');
    my $p = parse_prom($r->{body});
    is_deeply($p->{errors}, [], 'exposition: well-formed')
        or diag($r->{body});

    my %types = map { $_ => $p->{families}{$_}{type} }
        keys %{ $p->{families} };
    is_deeply(\%types, {
        (map { $_ => 'counter' } @COUNTED, 'gi2_cost_usd_total'),
        gi2_external_moderation_duration_seconds => 'histogram',
        gi2_metrics_start_time_seconds => 'gauge',
        gi2_metrics_label_slots => 'gauge' }, 'exposition: the families');

    check_counters($p, 'exposition');

    # the label sets are bounded: nothing of a prompt or a caller
    unlike($r->{body}, qr/lighthouse|acme figure|EXC-UNKNOWN|sk-/,
        'exposition: no prompt, no presented exception, no credential');

    # no external moderation client yet: the series exist, at zero
    my $h = 'gi2_external_moderation_duration_seconds';
    is_deeply([grep { /^\Q$h\E_bucket/ } @{ $p->{order} }],
        [map { key("${h}_bucket", le => $_) }
            qw(0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf)],
        'histogram: its buckets in order');
    is(value($p, "${h}_count"), 0, 'histogram: nothing observed yet');
    is(value($p, "${h}_sum"), '0.000', 'histogram: sum');

    ok(abs(value($p, 'gi2_metrics_start_time_seconds') - time()) < 3600,
        'start time: a Unix time of today');
    is(value($p, 'gi2_metrics_label_slots', state => 'used'), 5,
        'label slots: 3 rules and 2 exceptions');

    # scrapes are not traffic, and the default format is the text one
    my $again = http_get('/metrics');
    is(join(',', header_values($again, 'content-type')),
        'text/plain; version=0.0.4; charset=utf-8', 'default: text');
    my $p2 = parse_prom($again->{body});
    check_counters($p2, 'a second scrape');

    my $head = http_request('HEAD', '/metrics');
    is($head->{status}, 200, 'HEAD: 200');
    is($head->{body}, '', 'HEAD: no body');
    ok((header_values($head, 'content-length'))[0] > 1000,
        'HEAD: the length of the exposition');

    my $bad = http_get('/metrics?format=xml');
    is($bad->{status}, 400, 'an unknown format: 400');
    my $post = http_post('/metrics', '{}');
    is($post->{status}, 405, 'POST to the status location: 405');
    settle();

    return $p;
}

sub test_json {
    my ($text) = @_;
    my $r = http_get('/metrics?format=json');
    is($r->{status}, 200, 'json: 200');
    is(join(',', header_values($r, 'content-type')), 'application/json',
        'json: type');
    my $j = $r->{json};
    ok(ref $j eq 'HASH', 'json: an object') or return diag($r->{body});
    is($j->{zone}, 'gi2m', 'json: zone name');
    is($j->{started}, value($text, 'gi2_metrics_start_time_seconds'),
        'json: start time');

    my (%samples, %fam);
    for my $f (@{ $j->{metrics} }) {
        $fam{ $f->{name} } = { type => $f->{type}, help => $f->{help} };
        for my $s (@{ $f->{samples} }) {
            $samples{ key($s->{name}, %{ $s->{labels} }) } = $s->{value};
        }
    }
    my %tfam = map { $_ => { type => $text->{families}{$_}{type},
        help => $text->{families}{$_}{help} } } keys %{ $text->{families} };
    is_deeply(\%fam, \%tfam, 'json: the same families, types and help');
    my %tnum = map { $_ => $text->{samples}{$_} + 0 }
        keys %{ $text->{samples} };
    is_deeply(\%samples, \%tnum, 'json: the same samples and values');

    my $tl = $j->{timeline};
    is($tl->{step}, 60, 'timeline: minutes');
    is(scalar @{ $tl->{minutes} }, 30, 'timeline: 30 of them');
    my %sum;
    my $prev = 0;
    my $ordered = 1;
    for my $m (@{ $tl->{minutes} }) {
        $ordered = 0 unless $m->{start} == $prev + 60 || $prev == 0;
        $prev = $m->{start};
        $sum{$_} += $m->{$_} for qw(allow flag rewrite reject);
    }
    ok($ordered, 'timeline: consecutive minutes, oldest first');
    ok($tl->{minutes}[-1]{start} <= $j->{time}
        && $j->{time} < $tl->{minutes}[-1]{start} + 60,
        'timeline: the last is the current minute');
    my %dec;
    for my $k (keys %want) {
        next unless $k =~ /^gi2_requests_total\{decision=(\w+),/;
        $dec{$1} += $want{$k} unless $1 eq 'none';
    }
    is_deeply(\%sum, { allow => 0, flag => 0, rewrite => 0, reject => 0,
        %dec }, 'timeline: the decisions made, all within 30 minutes');
}

###########################################################################
# reloads

sub workers {
    my $master = read_file(prefix() . '/nginx.pid') // '';
    ($master) = $master =~ /^(\d+)/ or return ();
    opendir my $dh, '/proc' or return ();
    my @pids;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = read_file("/proc/$pid/stat") // next;
        my ($ppid) = $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        my $cmd = read_file("/proc/$pid/cmdline") // '';
        push @pids, $pid if $ppid == $master && $cmd =~ /worker process/;
    }
    closedir $dh;
    return sort @pids;
}

# Rewrites nginx.conf, sends HUP and waits until only new workers run.
sub reload {
    my ($tpl, %o) = @_;
    my %old = map { $_ => 1 } workers();
    conf_write($tpl, %o);
    my $master = (read_file(prefix() . '/nginx.pid') =~ /^(\d+)/)[0];
    kill 'HUP', $master;
    my $end = time() + 10;
    while (time() < $end) {
        my @w = workers();
        return 1 if @w && !grep { $old{$_} } @w;
        sleep(0.05);
    }
    return 0;
}

sub test_reload {
    my $before = scrape();

    # one rule gone, one recategorised, one new; the keywords kept
    ok(reload(conf(rules => <<'EOF')), 'reload: new workers');
    gi2_rule sx-001 deny adult '\bnude\b';
    gi2_rule new-001 flag novel '\bzeppelin\b';
    gi2_keywords kw-001 deny weapons kw/weapons.txt;
EOF
    my $p = scrape();
    is_deeply($p->{errors}, [], 'reload: well-formed');
    is(value($p, 'gi2_metrics_start_time_seconds'),
        value($before, 'gi2_metrics_start_time_seconds'),
        'reload: the same zone');
    for my $k (keys %{ $before->{samples} }) {
        next if $k =~ /^gi2_rule_hits_total/;
        is($p->{samples}{$k}, $before->{samples}{$k}, "reload keeps $k")
            if $k !~ /^gi2_metrics_label_slots/;
    }
    my %rules = map { $_ => $p->{samples}{$_} }
        grep { /^gi2_rule_hits_total/ } keys %{ $p->{samples} };
    is_deeply(\%rules, {
        key('gi2_rule_hits_total', rule => 'sx-001', category => 'adult',
            action => 'deny') => 0,
        key('gi2_rule_hits_total', rule => 'new-001', category => 'novel',
            action => 'flag') => 0,
        key('gi2_rule_hits_total', rule => 'kw-001', category => 'weapons',
            action => 'deny') => $want{ key('gi2_rule_hits_total',
                rule => 'kw-001', category => 'weapons',
                action => 'deny') },
    }, 'reload: the rules of the new configuration; a new category is a '
        . 'new series');
    is(value($p, 'gi2_metrics_label_slots', state => 'used'), 7,
        'reload: two entries more');

    my $r = req($GEN, body('a nude zeppelin'));
    is($r->{status}, 400, 'after the reload: rejected');
    settle();
    $p = scrape();
    is(value($p, 'gi2_rule_hits_total', rule => 'sx-001',
        category => 'adult', action => 'deny'), 1, 'new series counts');
    is(value($p, 'gi2_rule_hits_total', rule => 'new-001',
        category => 'novel', action => 'flag'), 1, 'new rule counts');
    is(value($p, 'gi2_requests_total', endpoint => 'image_generation',
        decision => 'reject'), value($before, 'gi2_requests_total',
        endpoint => 'image_generation', decision => 'reject') + 1,
        'requests go on from where they were');
    gen('reject');
    bump(1, 'gi2_rejections_total', code => 'gi2_prompt_rejected');

    # back to the first rule set: the old series return with their counts
    ok(reload(conf()), 'reload back');
    $p = scrape();
    is_deeply($p->{errors}, [], 'reload back: well-formed');
    check_counters($p, 'reload back');
    is(value($p, 'gi2_metrics_label_slots', state => 'used'), 7,
        'reload back: no new entries');

    # another size is another zone: counting starts again
    ok(reload(conf(zone => '2m')), 'reload with another zone size');
    $p = scrape();
    my $sum = 0;
    $sum += $p->{samples}{$_}
        for grep { /^gi2_requests_total/ } keys %{ $p->{samples} };
    is($sum, 0, 'another zone size: counters from zero');
    %want = ();
}

###########################################################################
# two workers, one set of counters

sub test_workers {
    gi2_start(conf(listen => ' reuseport'), workers => 2,
        log_format => "'\$http_x_t|\$pid'");
    my @w;
    my $end = time() + 10;
    while ((@w = workers()) < 2 && time() < $end) {
        sleep(0.05);
    }
    is(scalar @w, 2, 'two workers');

    my $n = 40;
    my %ids;
    for my $i (1 .. $n) {
        my $r = req($GEN, body($i % 2 ? 'a lighthouse' : 'a nude figure'));
        is($r->{status}, $i % 2 ? 200 : 400, "request $i");
        $ids{ $r->{id} } = 1;
    }

    my %pid;
    $end = time() + 10;
    while (time() < $end) {
        %pid = ();
        my $lines = 0;
        for (access_log_lines()) {
            my ($t, $pid) = split /\|/;
            next unless $t && $ids{$t};
            $pid{$pid}++;
            $lines++;
        }
        last if $lines >= $n;
        sleep(0.05);
    }
    @sent = ();
    is(scalar keys %pid, 2, 'both workers served requests')
        or diag(explain(\%pid));

    my $p = scrape();
    is(value($p, 'gi2_requests_total', endpoint => 'image_generation',
        decision => 'allow'), $n / 2, 'allowed: all of them');
    is(value($p, 'gi2_requests_total', endpoint => 'image_generation',
        decision => 'reject'), $n / 2, 'rejected: all of them');
    is(value($p, 'gi2_rule_hits_total', rule => 'sx-001',
        category => 'sexual', action => 'deny'), $n / 2, 'rule hits: all');
}

###########################################################################
# configuration errors

sub fails {
    my ($name, $tpl, $re) = @_;
    my ($rc, $out, $conf) = nginx_t($tpl);
    isnt($rc, 0, "$name: nginx -t fails");
    my $line = conf_line($conf, qr/# MARK/) // 0;
    like($out, qr/\[emerg\] $re in \Q$conf\E:$line$/m,
        "$name: message with file:line") or diag($out);
}

sub test_config {
    my $loc = <<'EOF';
    server {
        listen 127.0.0.1:1;
        location = /metrics { gi2_status; }
    }
EOF
    fails('gi2_status without gi2_metrics', <<'EOF',
    server {
        listen 127.0.0.1:1;
        location = /metrics {
            gi2_status; # MARK
        }
    }
EOF
        qr/gi2_status needs "gi2_metrics zone=NAME:SIZE" in the http block/);

    fails('a zone below 8 pages', "    gi2_metrics zone=m:16k; # MARK\n"
        . $loc, qr/gi2_metrics zone "m" is too small: use at least 32k/);

    my $many = join('', map { "    gi2_rule r$_ deny c 'w$_';\n" } 1 .. 200);
    fails('a zone too small for the rules',
        "    gi2_metrics zone=m:32k; # MARK\n$many$loc",
        qr/gi2_metrics zone "m" is too small for 200 rules and /
        . qr/exceptions: use at least \d+k/);

    # the size it asks for is enough
    my ($rc, $out) = nginx_t("    gi2_metrics zone=m:32k;\n$many$loc");
    my ($k) = $out =~ /use at least (\d+)k/;
    ($rc, $out) = nginx_t("    gi2_metrics zone=m:${k}k;\n$many$loc");
    is($rc, 0, "the size asked for (${k}k) passes") or diag($out);
    ($rc, $out) = nginx_t("    gi2_metrics zone=m:" . ($k - 1)
        . "k;\n$many$loc");
    isnt($rc, 0, 'a KiB less does not: the least size that holds them');

    for my $bad ('zone=m', 'zone=:1m', 'zone=m:lots', 'm:1m', 'zone=') {
        fails("bad parameter $bad", "    gi2_metrics $bad; # MARK\n$loc",
            qr/invalid parameter "\Q$bad\E": use zone=NAME:SIZE/);
    }

    fails('gi2_metrics twice', "    gi2_metrics zone=a:1m;\n"
        . "    gi2_metrics zone=b:1m; # MARK\n$loc",
        qr/"gi2_metrics" directive is duplicate/);

    fails('gi2_metrics in a server', <<'EOF',
    server {
        listen 127.0.0.1:1;
        gi2_metrics zone=m:1m; # MARK
    }
EOF
        qr/"gi2_metrics" directive is not allowed here/);

    fails('gi2_status with an argument', "    gi2_metrics zone=m:1m;\n"
        . <<'EOF', qr/invalid number of arguments in "gi2_status" directive/);
    server {
        listen 127.0.0.1:1;
        location = /metrics { gi2_status on; # MARK
        }
    }
EOF

    fails('gi2_status twice', "    gi2_metrics zone=m:1m;\n" . <<'EOF',
    server {
        listen 127.0.0.1:1;
        location = /metrics {
            gi2_status;
            gi2_status; # MARK
        }
    }
EOF
        qr/"gi2_status" directive is duplicate/);

    fails('a zone name another module uses',
        "    limit_req_zone \$binary_remote_addr zone=m:1m rate=1r/s;\n"
        . "    gi2_metrics zone=m:1m; # MARK\n$loc",
        qr/the shared memory zone "m" is already declared for a /
        . qr/different use/);

    ($rc, $out) = nginx_t("    gi2_metrics zone=m:1m;\n$loc");
    is($rc, 0, 'a valid configuration passes') or diag($out);
}

gi2_start(conf());
test_traffic();
test_upstream();
my $p = test_exposition();
test_json($p);
test_reload();
test_workers();
test_config();
error_log_clean();

done_testing();
