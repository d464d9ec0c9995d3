#!/usr/bin/perl

# The moderation service's directives: every bad value fails nginx -t
# with a message and the file:line; valid configurations pass; the
# settings inherit like nginx's own (a level with its own value replaces
# the inherited one, thresholds as a whole).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

write_file('gi2.key', "0123456789abcdef0123456789abcdef\n");
write_file('keys/good.key', "sk-test-0123\n");
write_file('keys/empty.key', "\n");
write_file('keys/spaces.key', "sk test\n");
write_file('keys/two-lines.key', "sk-one\nsk-two\n");
write_file('keys/big.key', 'k' x 5000);
write_file('ca.pem', "not really a certificate, but readable\n");
mkdir prefix() . '/keys/adir';

sub in_location {
    my ($directive, %o) = @_;
    my $hash = $o{no_hash} ? '' : 'gi2_hash_key_file gi2.key;';
    return <<"EOF";
    server {
        listen 127.0.0.1:1;
        gi2 on;
        $hash
        location / {
            $directive # MARK
        }
    }
EOF
}

# nginx -t fails with [emerg] <$re> in <conf>:<line of MARK>.
sub fails {
    my ($name, $tpl, $re, %o) = @_;
    my ($rc, $out, $conf) = nginx_t($tpl, %o);
    isnt($rc, 0, "$name: nginx -t fails");
    my $line = conf_line($conf, qr/# MARK/) // 0;
    like($out, qr/\[emerg\] $re in \Q$conf\E:$line$/m,
        "$name: message with file:line") or diag($out);
    return $out;
}

sub passes_t {
    my ($name, $tpl, %o) = @_;
    my ($rc, $out) = nginx_t($tpl, %o);
    is($rc, 0, "$name: nginx -t passes") or diag($out);
    return $out;
}

my $API = 'gi2_moderation_api http://127.0.0.1:9/v1/moderations;';

# gi2_moderation_api

fails('not http', in_location('gi2_moderation_api ftp://x/y;'),
    qr/gi2_moderation_api: "ftp:\/\/x\/y" is not an http:\/\/ or https:\/\/ URL/);
fails('no scheme', in_location('gi2_moderation_api api.example.com;'),
    qr/.*is not an http:\/\/ or https:\/\/ URL/);
fails('no host', in_location('gi2_moderation_api http:///v1/moderations;'),
    qr/gi2_moderation_api: no host in "http:\/\/\/v1\/moderations"/);
fails('only a port', in_location('gi2_moderation_api http://:80/;'),
    qr/gi2_moderation_api: no host in "http:\/\/:80\/"/);
fails('a space', in_location('gi2_moderation_api "http://a b/";'),
    qr/gi2_moderation_api: the URL has spaces, controls or bytes that are not ASCII/);
fails('credentials', in_location(
    'gi2_moderation_api https://user:sk-pass@api.example.com/v1/m;'),
    qr/gi2_moderation_api: no credentials in the URL; use gi2_moderation_key_file/);
fails('unknown format', in_location(
    'gi2_moderation_api http://127.0.0.1/ format=azure;'),
    qr/invalid parameter "format=azure" in gi2_moderation_api: use format=openai or format=generic/);
fails('unknown parameter', in_location(
    'gi2_moderation_api http://127.0.0.1/ timeout=1s;'),
    qr/invalid parameter "timeout=1s" in gi2_moderation_api: .*/);
fails('off with a parameter', in_location(
    'gi2_moderation_api off format=openai;'),
    qr/"gi2_moderation_api" directive takes no parameters after "off"/);
fails('duplicate api', in_location(
    "$API\n            gi2_moderation_api off;"),
    qr/"gi2_moderation_api" directive is duplicate/);

# gi2_moderation_key_file

my $out = fails('missing key file', in_location(
    'gi2_moderation_key_file keys/missing.key;'),
    qr/gi2_moderation_key_file: cannot open ".*missing\.key" \(\d+: .*\)/);
fails('key file is a directory', in_location(
    'gi2_moderation_key_file keys/adir;'),
    qr/gi2_moderation_key_file: cannot read ".*adir".*/);
fails('key file over 4096 bytes', in_location(
    'gi2_moderation_key_file keys/big.key;'),
    qr/gi2_moderation_key_file: cannot read ".*big\.key" \(at most 4096 bytes\)/);
for my $k (qw(empty spaces two-lines)) {
    $out = fails("key file: $k", in_location(
        "gi2_moderation_key_file keys/$k.key;"),
        qr/gi2_moderation_key_file: ".*$k\.key" must hold one token of visible ASCII characters/);
    unlike($out, qr/sk[- ](test|one|two)/, "key file: $k: not echoed");
}
fails('duplicate key file', in_location(
    "gi2_moderation_key_file keys/good.key;\n"
    . "            gi2_moderation_key_file keys/good.key;"),
    qr/"gi2_moderation_key_file" directive is duplicate/);

# the simple ones

fails('timeout 0', in_location('gi2_moderation_timeout 0;'),
    qr/"gi2_moderation_timeout" directive must be more than 0/);
fails('timeout not a time', in_location('gi2_moderation_timeout soon;'),
    qr/"gi2_moderation_timeout" directive invalid value/);
fails('fail maybe', in_location('gi2_moderation_fail maybe;'),
    qr/invalid value "maybe"/);
fails('action block', in_location('gi2_moderation_action block;'),
    qr/invalid value "block"/);
fails('images maybe', in_location('gi2_moderation_images maybe;'),
    qr/invalid value "maybe" in "gi2_moderation_images" directive, it must be "on" or "off"/);
fails('ca file missing', in_location('gi2_moderation_ca_file none.pem;'),
    qr/gi2_moderation_ca_file: cannot read ".*none\.pem" \(\d+: .*\)/);
fails('duplicate model', in_location(
    "gi2_moderation_model a;\n            gi2_moderation_model b;"),
    qr/"gi2_moderation_model" directive is duplicate/);

# gi2_moderation_threshold

for my $c ('a b', '*', 'x' x 65, 'caf\x{e9}') {
    fails("threshold category '$c'", in_location(
        qq(gi2_moderation_threshold "$c" 0.5;)),
        qr/invalid category ".*" in gi2_moderation_threshold: use 1 to 64 of A-Z a-z 0-9 _ - \. \/ :/);
}
for my $s ('1.5', '-1', 'abc', '0.5x', '', '1e-1', '.') {
    fails("threshold score '$s'", in_location(
        qq(gi2_moderation_threshold violence "$s";)),
        qr/invalid score ".*" in gi2_moderation_threshold: use a decimal from 0 to 1/);
}
fails('duplicate threshold', in_location(
    "gi2_moderation_threshold violence 0.5;\n"
    . "            gi2_moderation_threshold violence 0.6;"),
    qr/duplicate gi2_moderation_threshold for "violence"/);

# gi2_moderation_cache

fails('cache without zone', in_location('gi2_moderation_cache ttl=1m;'),
    qr/gi2_moderation_cache needs zone=NAME:SIZE/);
for my $p ('zone=verdicts', 'zone=:1m', 'zone=v:big', 'zone=v:1m ttl=soon',
    'zone=v:1m ttl=0', 'zone=v:1m size=1', 'zone=v:1m zone=w:1m')
{
    my ($bad) = $p =~ /(\S+)$/;
    $bad = 'zone=verdicts' if $p eq 'zone=verdicts';
    $bad = 'zone=:1m' if $p eq 'zone=:1m';
    $bad = 'zone=v:big' if $p eq 'zone=v:big';
    fails("cache '$p'", in_location("gi2_moderation_cache $p;"),
        qr/invalid parameter "\Q$bad\E" in gi2_moderation_cache: use zone=NAME:SIZE \[ttl=TIME\], or off/);
}
fails('cache zone too small', in_location(
    'gi2_moderation_cache zone=v:16k;'),
    qr/gi2_moderation_cache zone "v" is too small: at least 32k/);
fails('cache zone sizes in conflict', <<'EOF',
    gi2_hash_key_file gi2.key;
    gi2_moderation_cache zone=v:1m;
    server {
        listen 127.0.0.1:1;
        location / {
            gi2_moderation_cache zone=v:2m; # MARK
        }
    }
EOF
    qr/the size \d+ of shared memory zone "v" conflicts with already declared size \d+/);
fails('duplicate cache', in_location(
    "gi2_moderation_cache off;\n            gi2_moderation_cache off;"),
    qr/"gi2_moderation_cache" directive is duplicate/);
fails('cache without gi2_hash_key_file', in_location(
    "$API\n            gi2_moderation_cache zone=v:1m; # MARK", no_hash => 1),
    qr/gi2_moderation_cache needs gi2_hash_key_file: verdicts are keyed by the prompt's HMAC/);

# arguments

for my $c ('gi2_moderation_api', 'gi2_moderation_api a b c',
    'gi2_moderation_key_file', 'gi2_moderation_key_file a b',
    'gi2_moderation_model', 'gi2_moderation_timeout',
    'gi2_moderation_fail', 'gi2_moderation_action',
    'gi2_moderation_threshold violence', 'gi2_moderation_threshold a 1 2',
    'gi2_moderation_cache', 'gi2_moderation_cache a b c',
    'gi2_moderation_images', 'gi2_moderation_ca_file')
{
    my ($d) = split / /, $c;
    fails("arguments: '$c'", in_location("$c;"),
        qr/invalid number of arguments in "$d" directive/);
}

fails('in main context', '', qr/"gi2_moderation_api" directive is not allowed here/,
    main => "$API # MARK");

# valid configurations

passes_t('every directive at every level', <<'EOF');
    gi2_hash_key_file gi2.key;
    gi2_moderation_api https://api.openai.com/v1/moderations format=openai;
    gi2_moderation_key_file keys/good.key;
    gi2_moderation_model omni-moderation-latest;
    gi2_moderation_timeout 3s;
    gi2_moderation_fail closed;
    gi2_moderation_action deny;
    gi2_moderation_threshold violence 0.5;
    gi2_moderation_threshold self-harm/intent .2;
    gi2_moderation_cache zone=v:1m ttl=10m;
    gi2_moderation_images off;
    gi2_moderation_ca_file ca.pem;
    server {
        listen 127.0.0.1:1;
        gi2 on;
        gi2_moderation_api http://[::1]:8080/check format=generic;
        gi2_moderation_timeout 500ms;
        gi2_moderation_fail open;
        gi2_moderation_cache zone=v:1m;
        location / {
            gi2_moderation_api http://moderation.internal:8080/check;
            gi2_moderation_action flag;
            gi2_moderation_threshold hate 1;
            gi2_moderation_threshold sexual 0;
            gi2_moderation_cache off;
            gi2_moderation_images on;
        }
        location /off/ {
            gi2_moderation_api off;
        }
    }
EOF

###########################################################################
# inheritance, on a running server

modapi_set(default => { json => modapi_answer(0, { violence => [0, 0.6],
    hate => [0, 0.6] }) },
    uri => { '/http-level' => { json => { flagged => JSON::PP::false,
        categories => [], scores => { violence => 0.6, hate => 0.6 } } } });

my $conf = <<'EOF';
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_moderation_api http://%%MODAPI%%/http-level format=generic;
    gi2_moderation_key_file %%PREFIX%%/keys/good.key;
    gi2_moderation_model http-model;
    gi2_moderation_threshold violence 0.5;

    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        location /inherit/ { proxy_pass http://%%UPSTREAM%%; }
        location /own-api/ {
            gi2_moderation_api http://%%MODAPI%%/loc-level;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /own-thr/ {
            gi2_moderation_threshold hate 0.9;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /off/ {
            gi2_moderation_api off;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /off/on/ {
            gi2_moderation_api http://%%MODAPI%%/nested;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF
my $MODAPI = modapi_addr();
$conf =~ s/%%MODAPI%%/$MODAPI/g;
gi2_start($conf);

sub ask {
    my ($loc) = @_;
    modapi_reset();
    upstream_reset();
    my $r = http_post("${loc}v1/images/generations", '{"prompt":"a cat"}');
    my @m = modapi_requests();
    return ($r, $m[0]);
}

{
    my ($r, $m) = ask('/inherit/');
    is($r->{status}, 400, 'inherited: the http-level threshold (violence '
        . '0.6 >= 0.5) rejects');
    is($m->{uri}, '/http-level', 'inherited: the URL');
    is_deeply([sort keys %{ $m->{json} || {} }], [qw(consumer model prompt)],
        'inherited: format=generic');
    is($m->{json}{model}, 'http-model', 'inherited: the model');
    is_deeply($m->{headers}{authorization}, ['Bearer sk-test-0123'],
        'inherited: the key');

    ($r, $m) = ask('/own-api/');
    is($m->{uri}, '/loc-level', 'own URL: used');
    is_deeply([sort keys %{ $m->{json} || {} }], [qw(input model)],
        'own URL: its own format (openai), not the inherited one');
    is($m->{json}{model}, 'http-model', 'own URL: the model still inherited');

    ($r, $m) = ask('/own-thr/');
    is($r->{status}, 200, 'own thresholds replace the inherited ones '
        . '(hate 0.6 < 0.9, violence no longer counted)');

    ($r, $m) = ask('/off/');
    is($r->{status}, 200, 'off: forwarded');
    ok(!$m, 'off: not asked');

    ($r, $m) = ask('/off/on/');
    is($m && $m->{uri}, '/nested', 'on again below off');
}

error_log_clean();
done_testing();
