#!/usr/bin/perl

# gi2-check against the module: one nginx.conf (includes by glob, quotes,
# escapes, comments, keyword lists by relative name, rules at several
# levels) serves real requests, and gi2-check reads the same file; the
# same prompts and request bodies go through both and every decision,
# rejection code, rule id and category must agree, level by level.  Then
# the prompt-per-argument and prompt-per-line inputs, exit statuses, and
# configuration errors reported at the same file:line as nginx -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;
use JSON::PP;
use Cwd qw(getcwd);

require_module();

my $CHECK = repo_root() . '/build/gi2-check';
plan skip_all => "not built: $CHECK (make gi2-check)" unless -x $CHECK;

my $GEN = 'v1/images/generations';

# files the configuration names relative to its own directory
write_file('kw/weapons.txt', "\xef\xbb\xbf# weapons\n  grenade \t\r\n"
    . "pipe   bomb\n\n# not this one: lighthouse\n");
write_file('kw/intl.txt', "stra\xc3\x9fe\n\xe7\x88\x86\xe5\xbc\xbe\n"
    . "\xef\xbc\xa6\xef\xbc\xaf\xef\xbc\xaf\n");
write_file('kw/local.txt', "zeppelin\n");
write_file('conf.d/10-a.conf', "gi2_rule inc-a deny included "
    . "'\\bhijack(ed|ing)?\\b';\n");
write_file('conf.d/20-b.conf', "# a comment\ngi2_rule inc-b flag included "
    . "\"\\\\bcasino\\\\b\";   # escaped in double quotes\n");
write_file('conf.d/skip.txt', "gi2_rule skip-1 deny x 'lighthouse';\n");

my $CONF = gi2_start(<<'EOF');
    # gi2_rule fake-1 deny x 'lighthouse';   a comment, not a rule
    gi2_rule sx-001 deny sexual '\bnude\b';
    gi2_rule br-001 flag brand "\bacme\s+corp(oration)?\b";
    gi2_rule q-001 flag quote '"quoted"';
    gi2_rule ap-001 flag apos 'don\'t';
    gi2_rule dq-001 flag dq "say \"hi\"";
    gi2_rule hash-001 flag hash 'c#sharp';
    gi2_rule br-002
             flag
             brand '\bglobex\b';
    include conf.d/*.conf;
    gi2_keywords kw-001 deny weapons kw/weapons.txt;
    gi2_keywords kw-002 flag intl kw/intl.txt;
    map $http_x_none $gi2_unused { default 0; gi2_rule 1; }

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name one.example;
        gi2 on;

        location / {
            proxy_pass http://%%UPSTREAM%%;
        }

        location /own/ {
            gi2_rule own-001 deny own 'lighthouse';
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /kwonly/ {
            gi2_keywords kw-003 flag local kw/local.txt;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /allowlow/ {
            gi2_moderation_low allow;
            proxy_pass http://%%UPSTREAM%%/;
        }

        location /drop/ {
            gi2_user_field drop;
            proxy_pass http://%%UPSTREAM%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        server_name two.example;
        gi2 on;
        gi2_rule srv-001 deny server 'zeppelin';

        location / {
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF

###########################################################################
# the prompts and bodies

my @PROMPTS = (
    'a lighthouse at dawn',
    'A NUDE figure',
    "a \x{ff2e}\x{ff35}\x{200b}DE figure",
    'nudes on the beach',
    'ACME  Corporation logo',
    'acme corp and a nude',
    'a Pipe   Bomb',
    'grenades',
    'one grenade',
    'a "quoted" word',
    "don't do it",
    'say "hi" to them',
    'c#sharp code',
    'the globex tower',
    'a hijacked plane',
    'casino night',
    'STRASSE sign',
    "\x{3053}\x{308c}\x{306f}\x{7206}\x{5f3e}\x{3067}\x{3059}",
    'foo fighters',
    'a zeppelin over the sea',
    "tabs\tand\nnewlines are whitespace",
    '',
);

my $J = JSON::PP->new->canonical;   # characters: utf8 below
my $JU = JSON::PP->new->utf8->canonical;

sub body_of {
    my ($prompt, %o) = @_;
    return $JU->encode({ model => 'gpt-image-1', prompt => $prompt, %o });
}

my @BODIES = (
    (map { body_of($_) } @PROMPTS),
    '{"prompt":',
    '{"prompt":1}',
    '[]',
    '{"model":"gpt-image-1"}',
    body_of('a lighthouse', moderation => 'low'),
    body_of('a nude', moderation => 'low'),
    body_of('an acme corp', moderation => 'low'),
    body_of('a lighthouse', moderation => 'high'),
    body_of('a lighthouse', user => 'u-1'),
    '{"prompt":"a lighthouse","user":5}',
    '{"prompt":"a lighthouse","user":null}',
    '{"prompt":"\ud800 lone"}',
    '{"prompt":"x","prompt":"a nude"}',
    '{"prompt":"a n\u0055de"}',
);

###########################################################################
# the module's decisions, from the access log

sub field {
    my ($v) = @_;
    return ($v // '-') eq '-' ? '' : $v;
}

sub module_decisions {
    my ($loc, $port) = @_;
    my @out;
    for my $b (@BODIES) {
        my ($req, $id) = request_bytes('POST', "$loc$GEN", $b);
        my $r = http_send($req, $id, port => $port);
        my $e = log_for($r);
        push @out, join('|', field($e->{decision}), field($e->{reject_code}),
            field($e->{rule_id}), field($e->{rule_category}));
    }
    return @out;
}

sub run_check {
    my (@args) = @_;
    my $p = prefix();
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDERR, '>', "$p/check.err" or POSIX::_exit(127);
        exec($CHECK, @args) or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out, read_file("$p/check.err") // '');
}

sub check_decisions {
    my (@args) = @_;
    my $jl = write_file('bodies.jsonl', join("\n", @BODIES) . "\n");
    my ($rc, $out, $err) = run_check('-c', $CONF, @args, '--json', '-j',
        $jl);
    my @out;
    for my $line (split /\n/, $out) {
        my $o = $JU->decode($line);
        push @out, join('|', $o->{decision}, $o->{code} // '',
            join(',', @{ $o->{rule_id} }),
            join(',', @{ $o->{rule_category} }));
    }
    return ($rc, $err, @out);
}

my %seen;

for my $case (['/', []], ['/own/', ['-l', '/own/']],
    ['/kwonly/', ['--location', '/kwonly/']],
    ['/rewrite/', ['-l', '/rewrite/']], ['/allowlow/', ['-l', '/allowlow/']],
    ['/drop/', ['-s', 'one.example', '-l', '/drop/']],
    ['two.example /', ['-s', 'two.example', '-l', '/'], port(2)],
    ['two.example', ['-s', 'two.example'], port(2)])
{
    my ($name, $args, $port) = @$case;
    my $loc = $name =~ m{(/\S*)$} ? $1 : '/';
    my @module = module_decisions($loc, $port || port(1));
    my ($rc, $err, @check) = check_decisions(@$args);
    $seen{ join(' ', (split /\|/, $_, -1)[0, 1]) }++ for @module;
    is($rc, 1, "$name: exit status 1 (some rejected)") or diag($err);
    is_deeply(\@check, \@module, "$name: gi2-check decides as the module")
        or diag(explain([map { "$BODIES[$_]\n  module: $module[$_]\n"
            . "  check:  " . ($check[$_] // '(none)') }
            grep { ($check[$_] // '') ne $module[$_] } 0 .. $#module]));
}

is_deeply([sort keys %seen], ['allow ', 'flag ',
    'reject gi2_invalid_request', 'reject gi2_moderation_exception_required',
    'reject gi2_prompt_rejected', 'rewrite '],
    'the comparison covers every decision and rejection code it can');

# what the levels are made of, for the record
{
    my ($rc, $out) = run_check('-c', $CONF, '--list');
    is($rc, 0, '--list: exit 0');
    my $http = 'sx-001,br-001,q-001,ap-001,dq-001,hash-001,br-002,inc-a,'
        . 'inc-b,kw-001,kw-002';
    like($out, qr{^http  rules: \Q$http\E  \(\Q$CONF\E:\d+\)$}m,
        '--list: the http level, includes in glob order, comments skipped');
    like($out, qr{^    location /own/  rules: own-001,kw-001,kw-002 }m,
        '--list: a location with its own gi2_rule keeps the keywords');
    like($out, qr{^  server two\.example  rules: srv-001,kw-001,kw-002 }m,
        '--list: the second server');
}

###########################################################################
# prompts as arguments and as lines

my @plain = grep { $PROMPTS[$_] !~ /\n/ && length $PROMPTS[$_] }
    0 .. $#PROMPTS;
my @module_plain = (module_decisions('/', port(1)))[@plain];

{
    my @args = map { my $s = $PROMPTS[$_]; utf8::encode($s); $s } @plain;
    my ($rc, $out, $err) = run_check('-c', $CONF, '--', @args);
    is($rc, 1, 'arguments: exit status 1') or diag($err);
    my @got = map {
        my @f = split /\t/;
        join('|', $f[1], $f[2] eq '-' ? '' : $f[2],
            $f[3] eq '-' ? '' : $f[3], $f[4] eq '-' ? '' : $f[4]);
    } split /\n/, $out;
    is_deeply(\@got, \@module_plain, 'arguments: decided as the module');
    is_deeply([map { (split /\t/)[0] } split /\n/, $out],
        [1 .. scalar @plain], 'arguments: numbered in order');

    my $f = write_file('prompts.txt', join("\r\n", @args) . "\n\n");
    my ($rc2, $out2) = run_check('-c', $CONF, '-f', $f, '-q');
    is($rc2, 1, 'a file of prompts, -q: exit status 1');
    is($out2, '', '-q: nothing written');

    my ($rc3, $out3) = run_check('-c', $CONF, '-f', $f);
    is($out3, $out, 'a file of prompts (CRLF): the same lines as '
        . 'arguments');

    # from another directory: names resolve against the conf's own
    my $p = prefix();
    my $cwd = getcwd();
    my ($rc4, $out4) = run_check('-c', $CONF, '--summary', '-f', $f);
    chdir '/' or die;
    my ($rc5, $out5, $err5) = run_check('-c', $CONF, '--summary', '-f', $f);
    chdir $p or die;
    is($out5, $out4, 'run from /: keyword files and includes found');
    my ($rc6, $out6) = run_check('-c', 'nginx.conf', '-f', 'prompts.txt');
    is($out6, $out3, 'a relative -c from the conf directory');
    chdir $cwd or die;
    like($err5, qr/^gi2-check: \d+ prompts: \d+ allow, \d+ flag, (?#
        )0 rewrite, \d+ reject$/m, '--summary on standard error');
}

{
    my ($rc, $out) = run_check('-c', $CONF, 'a lighthouse', 'a harbour');
    is($rc, 0, 'nothing rejected: exit status 0');
    is($out, "1\tallow\t-\t-\t-\n2\tallow\t-\t-\t-\n", 'text output');
    ($rc, $out) = run_check('-c', $CONF, '--json', 'an acme corp');
    is($rc, 0, 'a flag is not a rejection: exit status 0');
    is_deeply($JU->decode($out), { n => 1, decision => 'flag', code => undef,
        rule_id => ['br-001'], rule_category => ['brand'],
        rule_action => ['flag'] }, 'JSON output');
    ($rc, $out) = run_check('-c', $CONF, '--json', "bad \xff utf-8");
    is_deeply($JU->decode($out), { n => 1, decision => 'reject',
        code => 'gi2_invalid_request', error => "'prompt' is not valid UTF-8",
        rule_id => [], rule_category => [], rule_action => [] },
        'a prompt that is not UTF-8: rejected as the module would');
    is($rc, 1, 'rejected: exit status 1');
}

###########################################################################
# errors: exit status 2, and the file:line nginx -t names

sub errors_like {
    my ($name, $args, $re) = @_;
    my ($rc, $out, $err) = run_check(@$args);
    is($rc, 2, "$name: exit status 2");
    like($err, $re, "$name: message") or diag($err);
}

errors_like('no -c', ['x'], qr/^usage: gi2-check -c/);
errors_like('unknown option', ['-c', $CONF, '--nope'],
    qr/unknown option "--nope"/);
errors_like('a missing configuration', ['-c', '/nonexistent.conf', 'x'],
    qr{cannot read "/nonexistent\.conf"});
errors_like('an unknown location', ['-c', $CONF, '-l', '/none/', 'x'],
    qr{no location "/none/" in});
errors_like('a missing -f file', ['-c', $CONF, '-f', '/nonexistent'],
    qr{cannot open "/nonexistent"});

sub parity {
    my ($name, $tpl) = @_;
    my ($nrc, $nout, $conf) = nginx_t($tpl);
    my ($rc, $out, $err) = run_check('-c', $conf, 'x');
    isnt($nrc, 0, "$name: nginx -t fails");
    is($rc, 2, "$name: gi2-check fails with exit status 2");
    my ($nat) = $nout =~ /\[emerg\] .* in (\S+:\d+)$/m;
    my ($at) = $err =~ /^gi2-check: .* in (\S+:\d+)$/m;
    ok(defined $nat && defined $at && $at eq $nat,
        "$name: the same file:line (" . ($nat // '?') . ')')
        or diag("nginx: $nout\ngi2-check: $err");
}

write_file('kw/empty.txt', "# nothing\n\n");
write_file('kw/bad.txt', "fine\nnot \xff utf-8\n");

parity('a bad regex', "    gi2_rule r1 deny c '(unclosed';\n");
parity('an invalid action', "    gi2_rule r1 block c 'x';\n");
parity('an invalid id', "    gi2_rule 'r 1' deny c 'x';\n");
parity('an invalid category', "    gi2_rule r1 deny 'c!' 'x';\n");
parity('three arguments', "    gi2_rule r1 deny 'x';\n");
parity('an empty pattern', "    gi2_rule r1 deny c '';\n");
parity('a duplicate id across levels', "    gi2_rule d1 deny c 'a';\n"
    . "    server {\n        listen 127.0.0.1:1;\n"
    . "        location / {\n            gi2_keywords d1 deny c "
    . "kw/weapons.txt;\n        }\n    }\n");
parity('a missing keyword file',
    "    gi2_keywords k1 deny c kw/missing.txt;\n");
parity('a keyword file without keywords',
    "    gi2_keywords k1 deny c kw/empty.txt;\n");
parity('a keyword file with bad UTF-8',
    "    gi2_keywords k1 deny c kw/bad.txt;\n");
parity('a missing include', "    include conf.d/missing.conf;\n");
parity('gi2_moderation_low twice', "    gi2_moderation_low reject;\n"
    . "    gi2_moderation_low allow;\n");
parity('a stray closing brace', "    }\n");
parity('an unterminated string', "    gi2_rule r1 deny c 'x;\n");
parity('a rule outside http', "    }\n    gi2_rule r1 deny c 'x';\n"
    . "    http {\n");

{
    my ($rc, $out, $err) = run_check('-c', nginx_conf_without_rules(), 'x');
    is($rc, 2, 'no rules at the level chosen: exit status 2');
    like($err, qr/no gi2_rule or gi2_keywords apply at the http block/,
        'no rules: said so');
}

sub nginx_conf_without_rules {
    return write_file('norules.conf', "events {}\nhttp {\n    server {\n"
        . "        location / { gi2_rule r1 deny c 'x'; }\n    }\n}\n");
}

error_log_clean();

done_testing();
