#!/usr/bin/perl

# The hostile-input catalogue of docs/security.md: each row's expected
# outcome, and that nothing a policy forbids reaches upstream.  Rows that
# other files already cover are referenced in the catalogue, not repeated
# here: t/60-bad-input.t (malformed JSON, UTF-8, duplicates, content
# types), t/70-body-transport.t (chunked, trickled, 100-continue,
# pipelining, aborts, HTTP/2), t/80-passthrough.t (which paths and methods
# are inspected), t/110-audit-directives.t (hostile values in the record),
# t/100-audit-response.t and t/120-audit-stream.t (upstream failures).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_LINGER);
use Gi2Test;

require_module();

my $GEN = '/v1/images/generations';
my $CYR_E = "\xd0\xb5";                 # CYRILLIC SMALL LETTER IE, UTF-8

write_file('gi2.key', "0123456789abcdef-hostile-tests\n");
write_file('kw/weapons.txt', "bomb\npipe bomb\nrifle\n");
# a Cyrillic keyword: "sex" in Russian
write_file('kw/ru.txt', "\xd1\x81\xd0\xb5\xd0\xba\xd1\x81\n");

gi2_start(audit_http() . <<'EOF' . audit_server() . <<"EOF2");
    gi2_hash_key_file %%PREFIX%%/gi2.key;
    gi2_rule r_nude deny sexual "\bnude\b";
    gi2_keywords k_weapons deny weapons kw/weapons.txt;

    server {
        listen 127.0.0.1:%%PORT%%;
        listen 127.0.0.1:%%PORT2%% http2;
        gi2 on;
        gi2_log_prompt on;
        client_max_body_size 4m;
        client_body_timeout 1s;
EOF
        location / {
            proxy_pass http://%%UPSTREAM%%;
        }
        location /rewrite/ {
            gi2_moderation_low rewrite;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /homoglyph/ {
            gi2_rule r_nude_cyr deny sexual "\\bnud[e$CYR_E]\\b";
            proxy_pass http://%%UPSTREAM%%;
        }
        location /ru/ {
            # a Russian regex (a rally) and a Russian keyword list
            gi2_rule r_ru deny political "\\b\xd0\xbc\xd0\xb8\xd1\x82\xd0\xb8\xd0\xbd\xd0\xb3\\b";
            gi2_keywords k_ru deny sexual kw/ru.txt;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /big/ {
            client_max_body_size 64m;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /tmpgone/ {
            client_body_buffer_size 1k;
            client_body_temp_path %%PREFIX%%/tmpgone;
            error_log %%PREFIX%%/tmpgone.log info;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
EOF2

###########################################################################
# helpers

sub denied {
    my ($name, $res, $rule) = @_;
    is_rejection($res, 400, 'gi2_prompt_rejected', 'prompt', $name);
    no_upstream($name);
    log_is($res, { decision => 'reject', rule_id => $rule }, $name);
}

sub invalid {
    my ($name, $res, $param) = @_;
    my $e = is_rejection($res, 400, 'gi2_invalid_request', $param, $name);
    no_upstream($name);
    return $e;
}

# nginx itself refused the request (its own HTML page): status, nothing
# upstream
sub refused {
    my ($name, $res, $status) = @_;
    is($res->{status}, $status, "$name: status $status")
        or diag(substr($res->{raw} // '', 0, 300));
    no_upstream($name);
}

sub post {
    my ($path, $body, @hdrs) = @_;
    upstream_reset();
    return http_post($path, $body, @hdrs);
}

sub raw_send {
    my ($req, $id) = @_;
    upstream_reset();
    my $res = parse_response(http_raw($req));
    $res->{id} = $id;
    return $res;
}

# The upstream request's body as JSON (undef when none or not JSON).
sub upstream_json {
    my @u = upstream_requests();
    return @u == 1 ? json_decode($u[0]{body}) : undef;
}

sub connect_to {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $port || port(1), Proto => 'tcp') or die "connect: $!";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

sub read_until_close {
    my ($s) = @_;
    my $out = '';
    my $sel = IO::Select->new($s);
    while ($sel->can_read(10)) {
        my $n = sysread($s, $out, 65536, length $out);
        last unless $n;
    }
    return $out;
}

###########################################################################
# 1. duplicate keys: refused, whichever value a parser would keep

sub test_duplicates {
    invalid('duplicate moderation, auto then low',
        post($GEN, '{"prompt":"a","moderation":"auto","moderation":"low"}'),
        'moderation');
    invalid('duplicate moderation, escaped second key',
        post($GEN, '{"moderation":"auto","prompt":"a",'
            . '"m\u006fderation":"low"}'), 'moderation');
    invalid('duplicate prompt, clean then denied',
        post($GEN, '{"prompt":"a cat","prompt":"a nude"}'), 'prompt');
    invalid('duplicate moderation in a rewrite location',
        post("/rewrite$GEN",
            '{"prompt":"a","moderation":"low","moderation":"low"}'),
        'moderation');
}

###########################################################################
# 2. \u escapes in keys and values: decoded before any decision

sub test_escapes {
    my $body = '{"prompt":"x","mod\u0065ration":"\u006cow"}';
    my $res = post($GEN, $body);
    is_rejection($res, 400, 'gi2_moderation_exception_required',
        'moderation', 'escaped moderation low');
    no_upstream('escaped moderation low');
    log_is($res, { moderation_requested => 'low' }, 'escaped moderation low');

    $res = post("/rewrite$GEN", $body);
    is($res->{status}, 200, 'escaped moderation low, rewrite: status 200');
    my $u = upstream_json();
    is($u && $u->{moderation}, 'auto',
        'escaped moderation low, rewrite: upstream decodes auto');
    is(scalar(grep { /^moderation$/ } keys %{ $u || {} }), 1,
        'escaped moderation low, rewrite: one moderation key upstream');
    log_is($res, { decision => 'rewrite', moderation_requested => 'low',
        moderation_effective => 'auto' },
        'escaped moderation low, rewrite');

    denied('escaped letters of a denied word',
        post($GEN, '{"prompt":"a \u006e\u0075\u0064\u0065 figure"}'),
        'r_nude');
    denied('escaped prompt key',
        post($GEN, '{"\u0070rompt":"a nude figure"}'), 'r_nude');
    denied('escaped slash and quote around a denied word',
        post($GEN, '{"prompt":"\/\"nude\"\/"}'), 'r_nude');
    denied('escaped surrogate pair before a denied word',
        post($GEN, '{"prompt":"\ud83d\ude00nude"}'), 'r_nude');
    invalid('high surrogate escape joined to a letter',
        post($GEN, '{"prompt":"\ud800\u006eude"}'), undef);
}

###########################################################################
# 3. confusables and zero-width characters

sub test_confusables {
    my @folded = (
        ['fullwidth letters',
            "\xef\xbd\x8e\xef\xbd\x95\xef\xbd\x84\xef\xbd\x85"],
        ['mathematical bold letters',
            "\xf0\x9d\x90\xa7\xf0\x9d\x90\xae\xf0\x9d\x90\x9d\xf0\x9d\x90\x9e"],
        ['circled letters', "\xe2\x93\x9d\xe2\x93\xa4\xe2\x93\x93\xe2\x93\x94"],
        ['mixed case', 'NuDe'],
        ['zero-width space', 'nu\u200bde'],
        ['zero-width non-joiner', 'n\u200cude'],
        ['zero-width joiner', 'nu\u200dde'],
        ['word joiner', 'nud\u2060e'],
        ['soft hyphen', 'nu\u00adde'],
        ['byte order mark', 'n\ufeffude'],
        ['right-to-left override', '\u202enude\u202c'],
        ['isolate controls', 'nu\u2066de\u2069'],
        ['raw UTF-8 zero-width space', "nu\xe2\x80\x8bde"],
    );
    for my $c (@folded) {
        denied("confusable: $c->[0]",
            post($GEN, qq({"prompt":"a $c->[1] figure"})), 'r_nude');
    }
    denied('keyword in fullwidth with a zero-width space',
        post($GEN, qq({"prompt":"a \xef\xbd\x82\xef\xbd\x8f\\u200b)
            . qq(\xef\xbd\x8d\xef\xbd\x82"})), 'k_weapons');
    denied('keyword with the fl ligature',
        post($GEN, qq({"prompt":"a ri\xef\xac\x82e"})), 'k_weapons');
    denied('keyword phrase split by a tab and a newline',
        post($GEN, '{"prompt":"a PIPE\t\n BOMB"}'), 'k_weapons');

    # letters of other scripts that look Latin, and accents: the prompt
    # is matched in its skeleton form too (docs/directives.md)
    my $cyr = qq({"prompt":"a nud$CYR_E figure"});
    denied('Cyrillic homoglyph', post($GEN, $cyr), 'r_nude');
    denied('Cyrillic homoglyph: a rule with both letters still matches',
        post("/homoglyph$GEN", $cyr), 'r_nude_cyr');
    my @skeleton = (
        ['Greek capitals (nu, epsilon) in upper case',
            "\xce\x9dUD\xce\x95"],
        ['Cyrillic o, e and Greek alpha', "n\xd0\xbe de n\xd1\x83d\xce\xb1"
            . " nud\xd0\xb5"],
        ['an acute accent (precomposed)', "nud\xc3\xa9"],
        ['a dot above (precomposed)', "\xe1\xb9\x85ude"],
        ['combining marks', "nu\xcc\x81de\xcc\x88"],
        ['escaped combining mark', 'nu\\u0301de'],
        ['fullwidth and Cyrillic together',
            "\xef\xbd\x8e\xef\xbd\x95d\xd0\xb5"],
    );
    for my $c (@skeleton) {
        denied("skeleton: $c->[0]",
            post($GEN, qq({"prompt":"a $c->[1] figure"})), 'r_nude');
    }
    denied('skeleton: a keyword with a Cyrillic o',
        post($GEN, qq({"prompt":"a b\xd0\xbemb"})), 'k_weapons');

    # rules written in Cyrillic still match Cyrillic, and a Cyrillic
    # keyword is found when Latin look-alikes are mixed in
    denied('Russian regex on Russian text',
        post("/ru$GEN", qq({"prompt":"\xd0\xbc\xd0\xb8\xd1\x82\xd0\xb8)
            . qq(\xd0\xbd\xd0\xb3 \xd1\x83 \xd0\xb4\xd0\xbe\xd0\xbc)
            . qq(\xd0\xb0"})), 'r_ru');
    denied('Russian keyword', post("/ru$GEN",
        qq({"prompt":"\xd1\x81\xd0\xb5\xd0\xba\xd1\x81"})), 'k_ru');
    denied('Russian keyword written with Latin c and e',
        post("/ru$GEN", qq({"prompt":"ce\xd0\xbac"})), 'k_ru');

    # Russian text that names no rule passes untouched
    my $body = qq({"prompt":"\xd1\x80\xd0\xb8\xd1\x81\xd1\x83)
        . qq(\xd0\xbd\xd0\xbe\xd0\xba \xd0\xb4\xd0\xbe\xd0\xbc)
        . qq(\xd0\xb0 \xd1\x83 \xd0\xbc\xd0\xbe\xd1\x80\xd1\x8f"});
    is_passed_exact(post("/ru$GEN", $body), $body,
        'Russian text without a rule: forwarded as sent');
    my $res = post($GEN, $body);
    is_passed_exact($res, $body,
        'Russian text: no English rule matches its skeleton');

    # what the skeleton does not do: letters split apart stay apart
    $body = '{"prompt":"a n u d e figure"}';
    is_passed_exact(post($GEN, $body), $body,
        'spaced-out letters: not joined (documented)');
}

###########################################################################
# 4. NUL bytes

sub test_nul {
    invalid('raw NUL byte in a string', post($GEN, qq({"prompt":"a\0b"})),
        undef);
    invalid('raw NUL byte after the object',
        post($GEN, qq({"prompt":"a"}\0)), undef);
    invalid('raw NUL byte in a key', post($GEN, qq({"pro\0mpt":"a"})),
        undef);
    denied('escaped NUL before a denied word',
        post($GEN, '{"prompt":"a\u0000nude"}'), 'r_nude');

    # a control character separates words, as a space does
    my $body = '{"prompt":"nu\u0000de"}';
    my $res = post($GEN, $body);
    is_passed_exact($res, $body, 'escaped NUL inside a word: as "nu de"');
}

###########################################################################
# 5. absurd JSON: 100,000 levels, a number of a million digits

sub test_absurd_json {
    my $n = 100_000;
    my $e = invalid('arrays nested 100,000 deep',
        post($GEN, '{"prompt":"x","a":' . ('[' x $n) . (']' x $n) . '}'),
        undef);
    like($e->{message} // '', qr/nested too deeply/,
        'arrays nested 100,000 deep: message');
    invalid('objects nested 100,000 deep',
        post($GEN, '{"prompt":"x","a":' . ('{"a":' x $n) . '1'
            . ('}' x $n) . '}'), undef);
    invalid('root arrays nested 100,000 deep',
        post($GEN, ('[' x $n) . (']' x $n)), undef);
    invalid('unclosed nesting 100,000 deep',
        post($GEN, '{"prompt":"nude","a":' . ('[' x $n)), undef);

    my $digits = '7' x 1_000_000;
    my $body = qq({"prompt":"a cat","n":$digits});
    my $res = post($GEN, $body);
    is_passed_exact($res, $body, 'n with a million digits: forwarded');
    my $a = audit_for($res);
    ok(!$a->{error}, 'n with a million digits: record')
        or diag($a->{error});
    is(rec_get($a->{rec}, 'gi2.request.n'), undef,
        'n with a million digits: n null in the record');
    ok(length($a->{line} // '') < 8192,
        'n with a million digits: the record stays small');

    denied('a million digits before a denied prompt',
        post($GEN, qq({"x":-0.${digits}e-99999,"prompt":"nude"})),
        'r_nude');
}

###########################################################################
# 6. large bodies

sub test_large_bodies {
    my $big = 100 * 1024 * 1024;
    my ($req, $id) = request_bytes('POST', $GEN, undef,
        'Content-Type' => 'application/json', 'Content-Length' => $big);
    refused('100 MB by Content-Length over client_max_body_size',
        raw_send($req . '{"prompt":"nude","blob":"', $id), 413);

    # chunked: the limit is found while reading
    ($req, $id) = request_bytes('POST', $GEN, undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    upstream_reset();
    my $s = connect_to();
    my $open = '{"blob":"';
    syswrite($s, $req . sprintf("%x\r\n%s\r\n", length $open, $open));
    my $chunk = sprintf("%x\r\n%s\r\n", 65536, 'x' x 65536);
    my $sent = 0;
    $SIG{PIPE} = 'IGNORE';
    while ($sent < $big) {
        my $n = syswrite($s, $chunk);
        last unless $n;
        $sent += 65536;
    }
    my $res = parse_response(read_until_close($s));
    close $s;
    $res->{id} = $id;
    refused('100 MB chunked over client_max_body_size', $res, 413);

    # within the limit, every byte is screened: a prompt after 20 MB (that
    # a clean large body arrives intact is t/70-body-transport.t's)
    my $blob = 'y' x (20 * 1024 * 1024);
    denied('denied prompt after 20 MB',
        post("/big$GEN", qq({"blob":"$blob","prompt":"a nude"})), 'r_nude');
    my $res2 = post("/big$GEN", qq({"blob":"$blob","prompt":"a cat"}));
    is($res2->{status}, 200, '20 MB clean body: forwarded');
}

###########################################################################
# 7. framing: chunked, Content-Length, Transfer-Encoding

sub framed {
    my ($name, $status, $tail, @hdrs) = @_;
    my ($req, $id) = request_bytes('POST', $GEN, undef,
        'Content-Type' => 'application/json', @hdrs);
    refused($name, raw_send($req . $tail, $id), $status);
}

sub test_framing {
    my $nude = '{"prompt":"nude"}';
    my $chunks = sprintf("%x\r\n%s\r\n0\r\n\r\n", length $nude, $nude);
    framed('Transfer-Encoding and Content-Length together', 400, $chunks,
        'Transfer-Encoding' => 'chunked', 'Content-Length' => length $nude);
    framed('Transfer-Encoding gzip, chunked', 501, $chunks,
        'Transfer-Encoding' => 'gzip, chunked');
    framed('chunk size past 64 bits', 400, "fffffffffffffffffff\r\nabc",
        'Transfer-Encoding' => 'chunked');
    framed('chunk without its CRLF', 400,
        sprintf("%x\r\n%sXX0\r\n\r\n", length $nude, $nude),
        'Transfer-Encoding' => 'chunked');
    framed('chunk extension with a quoted CRLF', 400,
        "5;a=\"b\r\nc\"\r\nhello\r\n0\r\n\r\n",
        'Transfer-Encoding' => 'chunked');
    framed('Content-Length list', 400, $nude,
        'Content-Length' => length($nude) . ', ' . length($nude));
    framed('Content-Length with a sign', 400, $nude,
        'Content-Length' => '+' . length $nude);
    framed('negative Content-Length', 400, $nude, 'Content-Length' => -1);

    # a trailer is read and dropped; the body is still screened
    my ($req, $id) = request_bytes('POST', $GEN, undef,
        'Content-Type' => 'application/json',
        'Transfer-Encoding' => 'chunked');
    denied('chunked with a Content-Type trailer',
        raw_send($req . sprintf("%x;ext=1\r\n%s\r\n0\r\n"
            . "Content-Type: text/plain\r\n\r\n", length $nude, $nude), $id),
        'r_nude');

    # white space JSON does not have: yajl would take it, rewrites could
    # not find the value behind it
    invalid('form feed before a value to rewrite',
        post("/rewrite$GEN", qq({"prompt":"a","moderation":\f"low"})),
        undef);
    invalid('vertical tab between tokens',
        post($GEN, qq({"prompt"\x0b:"a nude"})), undef);

    # HTTP/1.0 without a length: no body at all
    $id = 'h10';
    my $res = raw_send("POST $GEN HTTP/1.0\r\nHost: x\r\nX-T: $id\r\n"
        . "Content-Type: application/json\r\n\r\n$nude", $id);
    invalid('HTTP/1.0 body without Content-Length', $res, undef);
}

###########################################################################
# 8. Content-Type: only JSON in UTF-8 is screened and forwarded; any
#    other type on a guarded endpoint is refused, never passed unscreened

sub test_content_types {
    for my $ct ('Application/JSON', 'application/json; charset=UTF-8',
        'application/json;charset="utf-8"', 'application/json; foo=bar')
    {
        denied("Content-Type '$ct': screened",
            post($GEN, '{"prompt":"a nude"}', 'Content-Type' => $ct),
            'r_nude');
    }
    for my $ct ('application/json; charset=utf-16le',
        'application/json; charset=latin1', 'application/json, text/plain',
        'application/jsonx', 'text/plain', 'application/x-www-form-urlencoded',
        'application/octet-stream')
    {
        my $e = invalid("Content-Type '$ct': refused",
            post($GEN, '{"prompt":"a cat"}', 'Content-Type' => $ct), undef);
        like($e->{message} // '', qr/Content-Type: application\/json/,
            "Content-Type '$ct': message");
    }
    my $utf16 = "\xff\xfe" . join('', map { "$_\0" }
        split //, '{"prompt":"nude"}');
    invalid('UTF-16 body labelled application/json',
        post($GEN, $utf16), undef);
    invalid('two Content-Type headers',
        post($GEN, '{"prompt":"a cat"}',
            'Content-Type' => ['text/plain', 'application/json']), undef);
}

###########################################################################
# 9. Expect: 100-continue with a denied body

sub test_expect {
    my ($req, $id) = request_bytes('POST', $GEN, '{"prompt":"a nude"}',
        Expect => '100-continue');
    my ($head, $body) = $req =~ /^(.*?\r\n\r\n)(.*)$/s;
    upstream_reset();
    my $s = connect_to();
    syswrite($s, $head);
    my $interim = '';
    while ($interim !~ /\r\n\r\n/) {
        IO::Select->new($s)->can_read(10) or last;
        sysread($s, $interim, 1, length $interim) or last;
    }
    like($interim, qr{^HTTP/1\.1 100 Continue\r\n}, 'expect: 100 continue');
    syswrite($s, $body);
    my $res = parse_response(read_until_close($s));
    close $s;
    $res->{id} = $id;
    denied('expect: denied body after 100 continue', $res, 'r_nude');

    # the body sent at once, without waiting for the 100
    ($req, $id) = request_bytes('POST', $GEN, '{"prompt":"a nude"}',
        Expect => '100-continue');
    upstream_reset();
    my $raw = http_raw($req);
    ok($raw =~ s{^HTTP/1\.1 100 Continue\r\n\r\n}{},
        'expect: body sent without waiting: 100 continue first');
    $res = parse_response($raw);
    $res->{id} = $id;
    denied('expect: denied body sent without waiting', $res, 'r_nude');
}

###########################################################################
# 10. HTTP/2

sub test_http2 {
    SKIP: {
        skip 'curl without HTTP/2', 1 unless have_curl_h2();
        upstream_reset();
        my $res = curl_h2(port(2), $GEN,
            '{"prompt":"x","mod\u0065ration":"\u006cow"}');
        is_rejection($res, 400, 'gi2_moderation_exception_required',
            'moderation', 'h2: escaped moderation low');
        no_upstream('h2: escaped moderation low');
        upstream_reset();
        $res = curl_h2(port(2), $GEN, '{"prompt":"a n\u200bude"}', [],
            stdin => 1);
        is_rejection($res, 400, 'gi2_prompt_rejected', 'prompt',
            'h2: zero-width space, no content-length');
        no_upstream('h2: zero-width space, no content-length');
    }
}

###########################################################################
# 11. slow and vanishing clients

sub trickle_1 {
    my ($path, $body) = @_;
    my ($req, $id) = request_bytes('POST', $path, $body);
    upstream_reset();
    my $res = parse_response(http_raw([split //, $req], pause => 0.001));
    $res->{id} = $id;
    return $res;
}

sub test_slow_clients {
    denied('one byte a packet: escaped key, denied word',
        trickle_1($GEN, '{"\u0070rompt":"a n\u200bude"}'), 'r_nude');
    my $res = trickle_1("/rewrite$GEN",
        '{"prompt":"a","m\u006fderation":"low"}');
    is($res->{status}, 200, 'one byte a packet: rewrite');
    my $u = upstream_json();
    is($u && $u->{moderation}, 'auto', 'one byte a packet: upstream auto');

    # stops mid-body: client_body_timeout, nothing forwarded
    my ($req, $id) = request_bytes('POST', $GEN, '{"prompt":"a cat"',
        'Content-Length' => 100);
    upstream_reset();
    my $s = connect_to();
    syswrite($s, $req);
    my $out = read_until_close($s);
    close $s;
    is($out, '', 'stops mid-body: closed without an answer');
    no_upstream('stops mid-body');
    log_is($id, { status => 408 }, 'stops mid-body: 408 logged');

    # resets mid-body
    ($req, $id) = request_bytes('POST', $GEN, '{"prompt":"a nude"',
        'Content-Length' => 100);
    upstream_reset();
    $s = connect_to();
    syswrite($s, $req);
    select(undef, undef, undef, 0.1);
    setsockopt($s, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    close $s;
    select(undef, undef, undef, 0.2);
    no_upstream('resets mid-body');
    my $body = '{"prompt":"after a reset"}';
    is_passed_exact(post($GEN, $body), $body, 'the next request after a reset');
}

###########################################################################
# 12. header and log injection

# dotted paths of every object key in a record (array contents skipped)
sub key_paths {
    my ($v, $pre) = @_;
    return () unless ref $v eq 'HASH';
    return map { my $k = "$pre$_"; ($k, key_paths($v->{$_}, "$k.")) }
        sort keys %$v;
}

sub record_ok {
    my ($name, $res, $base) = @_;
    my $a = audit_for($res);
    ok(!$a->{error}, "$name: the record is one strict UTF-8 JSON object")
        or diag(($a->{error} // '') . "\n" . ($a->{line} // ''));
    ok(($a->{line} // '') !~ /[\x00-\x1f\x7f]/,
        "$name: no raw control character in the line");
    is_deeply([key_paths($a->{rec}, '')], $base,
        "$name: no field added or lost") if $base;
    return $a;
}

sub test_injection {
    my $base = audit_for(post($GEN, '{"prompt":"a cat"}'));
    ok(!$base->{error}, 'injection: a baseline record') or return;
    my @paths = key_paths($base->{rec}, '');

    my $evil = 'a\"},\"gi2\":{\"decision\":\"allow\"},\"x\":\"'
        . '\r\n\u2028\u0000\\\\ \ud83d\ude00 nude';
    my $res = post($GEN, qq({"prompt":"$evil","model":"m\\",\\"a\\":\\"b"}));
    denied('injection in the prompt', $res, 'r_nude');
    my $a = record_ok('injection in the prompt', $res, \@paths);
    is(rec_get($a->{rec}, 'gi2.prompt.text'),
        qq(a"},"gi2":{"decision":"allow"},"x":"\r\n\x{2028}\x{0}\\ )
        . "\x{1f600} nude", 'injection in the prompt: text kept as sent');
    is(rec_get($a->{rec}, 'gi2.decision'), 'reject',
        'injection in the prompt: decision reject');
    is(rec_get($a->{rec}, 'gen_ai.request.model'), 'm","a":"b',
        'injection in the model: one string value');

    $res = post('/a%22,%22gi2%22:%7B%7D%0D%0A%5C/v1/images/generations',
        '{"prompt":"a cat"}');
    is($res->{status}, 200, 'injection in the path: status');
    $a = record_ok('injection in the path', $res, \@paths);
    is(rec_get($a->{rec}, 'url.path'),
        qq(/a","gi2":{}\r\n\\/v1/images/generations),
        'injection in the path: decoded path kept');

    $res = post('/a%ff%c3/v1/images/generations', '{"prompt":"a cat"}');
    is($res->{status}, 200, 'invalid UTF-8 in the path: status');
    $a = record_ok('invalid UTF-8 in the path', $res, \@paths);
    is(rec_get($a->{rec}, 'url.path'),
        "/a\x{fffd}\x{fffd}/v1/images/generations",
        'invalid UTF-8 in the path: repaired');

    $res = post($GEN, '{"prompt":"a","moderation":"low"}',
        'X-GI2-Exception' => qq(x","gi2":{"exception":{"id":"e"}},"\xff\x01));
    is_rejection($res, 400, 'gi2_moderation_exception_invalid',
        'moderation', 'injection in the exception header');
    no_upstream('injection in the exception header');
    $a = record_ok('injection in the exception header', $res, \@paths);
    is(rec_get($a->{rec}, 'gi2.exception.id'), undef,
        'injection in the exception header: no exception');

    upstream_response(status => 400,
        headers => [['Content-Type', 'application/json'],
            ['X-Request-Id', qq(req_"},"a":"\xff\x01)]],
        body => '{"error":{"message":"m","type":"t\"},\"x\":{\"",'
            . '"code":"c\n\ud800","param":null}}');
    $res = post($GEN, '{"prompt":"a cat"}');
    upstream_response();
    is($res->{status}, 400, 'injection from upstream: its status');
    $a = record_ok('injection from upstream', $res, \@paths);
    is(rec_get($a->{rec}, 'gi2.upstream.error.type'), 't"},"x":{"',
        'injection from upstream: error type kept as a string');

    # raw CR, LF and NUL in a request header: nginx refuses the request
    for my $h (["bare CR", "a\rb"], ['bare LF', "a\nX-Injected: 1"],
        ['NUL', "a\0b"], ['folded line', "a\r\n b"])
    {
        my ($req, $id) = request_bytes('POST', $GEN, '{"prompt":"a"}');
        $req =~ s/\r\n\r\n/\r\nX-GI2-Exception: $h->[1]\r\n\r\n/;
        refused("header with $h->[0]", raw_send($req, $id), 400);
    }
}

###########################################################################
# 13. the client body temp directory cannot be written

sub test_temp_unwritable {
    my $dir = prefix() . '/tmpgone';
    ok(-d $dir, 'temp dir: nginx made it') or return;
    rmdir $dir or die "rmdir $dir: $!";
    write_file($dir, "a regular file now\n");
    my $body = '{"prompt":"a cat","blob":"' . ('z' x 4096) . '"}';
    my $res = post("/tmpgone$GEN", $body);
    is($res->{status}, 500, 'temp dir unwritable: 500');
    no_upstream('temp dir unwritable');
    like(read_file(prefix() . '/tmpgone.log') // '',
        qr/\[crit\].*tmpgone\/\d+" failed \(20: Not a directory\)/,
        'temp dir unwritable: the reason in the error log');
    $body = '{"prompt":"a cat"}';
    is_passed_exact(post("/tmpgone$GEN", $body), $body,
        'temp dir unwritable: a small body still passes');
}

test_duplicates();
test_escapes();
test_confusables();
test_nul();
test_absurd_json();
test_large_bodies();
test_framing();
test_content_types();
test_expect();
test_http2();
test_slow_clients();
test_injection();
test_temp_unwritable();
error_log_clean();
done_testing();
