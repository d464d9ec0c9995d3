#!/usr/bin/perl

# Internal redirects (the decision is made once a request and survives
# try_files, error_page and rewrite ... last), keyword files with a UTF-8
# BOM, endpoint matching under "merge_slashes off", the normalization
# warning of gi2_rule, the exception header stripped in every gi2 location,
# $gi2_exception_presented, and a PCRE2 resource limit counting as a match.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

###########################################################################
# nginx -t: gi2_rule patterns that normalization rewrites warn

# A location wrapping the directive under test; MARK finds its line.
sub in_location {
    my ($directive) = @_;
    return <<"EOF";
    server {
        listen 127.0.0.1:1;
        gi2 on;
        location / {
            $directive # MARK
        }
    }
EOF
}

sub warns {
    my ($name, $pattern) = @_;
    my ($rc, $out, $conf) = nginx_t(in_location(
        "gi2_rule r1 deny c '$pattern';"));
    note($out);
    is($rc, 0, "$name: nginx -t passes") or diag($out);
    my $line = conf_line($conf, qr/# MARK/) // 0;
    like($out,
        qr/\[warn\] gi2_rule "r1": [^\n]*normaliz[^\n]* in \Q$conf\E:$line$/m,
        "$name: [warn] names the rule and "
        . 'normalization, with file:line') or diag($out);
    my @warn = $out =~ /(\[warn\][^\n]*)/g;
    is(scalar @warn, 1, "$name: exactly one warning") or diag($out);
}

sub quiet {
    my ($name, $pattern) = @_;
    my ($rc, $out) = nginx_t(in_location("gi2_rule r1 deny c '$pattern';"));
    note($out);
    is($rc, 0, "$name: nginx -t passes") or diag($out);
    unlike($out, qr/\[warn\]/, "$name: no warning") or diag($out);
    like($out, qr/test is successful/, "$name: test is successful");
}

sub test_pattern_warnings {
    # the source is bytes: these literals are UTF-8 in the config file
    warns('sharp s', 'straße');
    warns('sharp s inside a regex', '\bstraße\b');
    warns('fullwidth letters', "\xef\xbd\x8e\xef\xbd\x95\xef\xbd\x84"
        . "\xef\xbd\x85");
    quiet('ASCII pattern', '\bnude\b');
    quiet('ASCII upper case', 'NUDE');
    quiet('lowercase accented', 'é');
    quiet('accented word', '\bcafé\b');
}

###########################################################################
# the running server

write_file('kw/bom-comment.txt', "\xef\xbb\xbf# comment\nbomb\n");
write_file('kw/bom-keyword.txt', "\xef\xbb\xbfgrenade\r\nmine field\r\n");

# the default log fields plus $gi2_exception_presented, last
my %VAR = (t => '$http_x_t', status => '$status',
    method => '$request_method', uri => '$uri');
my $FORMAT = "escape=json '"
    . join('|', (map { $VAR{$_} // "\$gi2_$_" } LOG_FIELDS),
        '$gi2_exception_presented')
    . "'";

my $UP = 'http://%%UPSTREAM%%';

gi2_start(<<"EOF", log_format => $FORMAT);
    gi2_rule r_nude deny sexual "\\bnude\\b";
    gi2_rule r_acme flag brand "\\bacme\\b";
    gi2_keywords k_bom deny weapons kw/bom-comment.txt;
    gi2_keywords k_bom2 deny weapons kw/bom-keyword.txt;
    gi2_exception ex_ok;

    server {
        listen 127.0.0.1:%%PORT%%;

        # inspected here, forwarded from the named location
        location /v1/images/ {
            gi2 on;
            try_files /nonexistent \@api;
        }
        location \@api {
            gi2 on;
            proxy_pass $UP;
        }

        # inspected here, then error_page to the named location
        location /ep/v1/images/ {
            gi2 on;
            try_files /nonexistent =404;
            error_page 404 = \@api;
        }

        # rewritten before the access phase: inspected in /rw2/ only
        location /rw/ {
            gi2 on;
            rewrite ^/rw/(.*)\$ /rw2/\$1 last;
        }
        location /rw2/ {
            gi2 on;
            proxy_pass $UP;
        }

        # the second location has rules of its own: not applied again
        location /once/v1/images/ {
            gi2 on;
            try_files /nonexistent \@strict;
        }
        location \@strict {
            gi2 on;
            gi2_rule s_gore deny graphic "\\bgore\\b";
            gi2_exception ex_strict;
            proxy_pass $UP;
        }

        location /direct/ {
            gi2 on;
            proxy_pass $UP;
        }
        location /off/ {
            gi2 off;
            proxy_pass $UP;
        }

        # a tiny match limit set in the pattern itself
        location /bt/ {
            gi2 on;
            gi2_rule bt deny dos "(*LIMIT_MATCH=10)^(a|b)+\$";
            proxy_pass $UP;
        }
        # 'c' is a required character: PCRE2 gives up before matching
        location /bt-c/ {
            gi2 on;
            gi2_rule bt_c deny dos "(*LIMIT_MATCH=10)(a|b)*c";
            proxy_pass $UP;
        }
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        merge_slashes off;
        gi2 on;
        location / { proxy_pass $UP; }
    }
EOF

my $GEN = '/v1/images/generations';
my $LOW = '{"prompt":"a cat","moderation":"low"}';
my $ACME_LOW = '{"prompt":"an acme cat","moderation":"low"}';
my $NUDE = '{"prompt":"a nude","moderation":"low"}';
my $BAD_JSON = '{"prompt": nude, not json';
my @EMPTY = map { $_ => '' } qw(decision rule_id rule_category
    moderation_requested moderation_effective exception_id model n size
    quality reject_code);

sub send_req {
    my ($method, $path, $body, @hdrs) = @_;
    my $port = $path =~ s/^:2// ? port(2) : port(1);
    my ($req, $id) = request_bytes($method, $path, $body, @hdrs);
    return http_send($req, $id, port => $port);
}

sub post { return send_req('POST', @_) }

# $gi2_exception_presented of the request, from the last log field
sub presented {
    my ($res) = @_;
    log_for($res);    # waits for the line
    for my $l (reverse access_log_lines()) {
        my @v = split /\|/, $l, -1;
        next unless $v[0] eq $res->{id};
        return $v[ scalar(() = LOG_FIELDS) ];
    }
    return undef;
}

sub presented_is {
    my ($res, $want, $name) = @_;
    is(presented($res), $want, "$name: \$gi2_exception_presented");
}

sub no_exception_header {
    my ($u, $name) = @_;
    ok(!exists $u->{headers}{'x-gi2-exception'},
        "$name: no X-GI2-Exception upstream")
        or diag('upstream X-GI2-Exception: '
            . join(',', @{ $u->{headers}{'x-gi2-exception'} }));
}

sub rejected {
    my ($name, $path, $body, $code, $param, @hdrs) = @_;
    upstream_reset();
    my $r = post($path, $body, @hdrs);
    is_rejection($r, 400, $code, $param, $name);
    no_upstream($name);
    return $r;
}

sub passed {
    my ($name, $path, $body, @hdrs) = @_;
    upstream_reset();
    my $r = post($path, $body, @hdrs);
    my $u = is_passed_exact($r, $body, $name);
    no_exception_header($u, $name);
    return ($r, $u);
}

###########################################################################
# 1. internal redirects

sub redirect_suite {
    my ($what, $prefix, $uri_prefix) = @_;
    my $path = "$prefix$GEN";
    my $uri = "$uri_prefix$GEN";

    my $name = "$what: low with a valid exception";
    my ($r, $u) = passed($name, $path, $LOW, 'X-GI2-Exception' => 'ex_ok');
    is($u->{uri}, $uri, "$name: upstream uri");
    like($u->{body}, qr/"moderation":"low"/, "$name: upstream got low");
    log_is($r, { status => 200, uri => $uri, decision => 'allow',
        rule_id => '', rule_category => '', moderation_requested => 'low',
        moderation_effective => 'low', exception_id => 'ex_ok',
        reject_code => '' }, $name);
    presented_is($r, 'ex_ok', $name);

    $name = "$what: flagged low with a valid exception";
    ($r) = passed($name, $path, $ACME_LOW, 'X-GI2-Exception' => 'ex_ok');
    log_is($r, { status => 200, uri => $uri, decision => 'flag',
        rule_id => 'r_acme', rule_category => 'brand',
        moderation_requested => 'low', moderation_effective => 'low',
        exception_id => 'ex_ok', reject_code => '' }, $name);
    presented_is($r, 'ex_ok', $name);

    $name = "$what: nude prompt";
    $r = rejected($name, $path, $NUDE, 'gi2_prompt_rejected', 'prompt',
        'X-GI2-Exception' => 'ex_ok');
    like($r->{json}{error}{message}, qr/\(category: sexual\)\.$/,
        "$name: category in the message");
    log_is($r, { status => 400, uri => $uri, decision => 'reject',
        rule_id => 'r_nude', rule_category => 'sexual',
        moderation_requested => 'low', moderation_effective => '',
        exception_id => 'ex_ok', reject_code => 'gi2_prompt_rejected' },
        $name);
    presented_is($r, 'ex_ok', $name);

    $name = "$what: low without an exception";
    $r = rejected($name, $path, $LOW, 'gi2_moderation_exception_required',
        'moderation');
    log_is($r, { status => 400, uri => $uri, decision => 'reject',
        exception_id => '',
        reject_code => 'gi2_moderation_exception_required' }, $name);
    presented_is($r, '', $name);

    $name = "$what: unknown exception";
    $r = rejected($name, $path, $LOW, 'gi2_moderation_exception_invalid',
        'moderation', 'X-GI2-Exception' => 'nope');
    log_is($r, { status => 400, uri => $uri, decision => 'reject',
        exception_id => '',
        reject_code => 'gi2_moderation_exception_invalid' }, $name);
    presented_is($r, 'nope', $name);

    $name = "$what: clean auto request";
    my $body = '{"prompt":"a cat","model":"gpt-image-1"}';
    ($r) = passed($name, $path, $body);
    log_is($r, { status => 200, uri => $uri, decision => 'allow',
        moderation_requested => '', moderation_effective => 'auto',
        model => 'gpt-image-1', reject_code => '' }, $name);
}

sub test_redirects {
    redirect_suite('try_files to a named location', '', '');
    redirect_suite('error_page to a named location', '/ep', '/ep');
    redirect_suite('rewrite ... last', '/rw', '/rw2');

    # the named location's own rules and exceptions are not applied: the
    # decision was made in the first location
    my $name = 'redirect: second location rules not applied again';
    my ($r) = passed($name, "/once$GEN", '{"prompt":"gore"}');
    log_is($r, { status => 200, decision => 'allow', rule_id => '',
        reject_code => '' }, $name);
    $name = 'redirect: first location rules apply';
    $r = rejected($name, "/once$GEN", '{"prompt":"nude"}',
        'gi2_prompt_rejected', 'prompt');
    log_is($r, { decision => 'reject', rule_id => 'r_nude' }, $name);
    $name = 'redirect: exception of the first location accepted';
    ($r) = passed($name, "/once$GEN", $LOW, 'X-GI2-Exception' => 'ex_ok');
    log_is($r, { decision => 'allow', exception_id => 'ex_ok',
        moderation_effective => 'low' }, $name);
    $name = 'redirect: exception of the second location unknown';
    $r = rejected($name, "/once$GEN", $LOW,
        'gi2_moderation_exception_invalid', 'moderation',
        'X-GI2-Exception' => 'ex_strict');
    log_is($r, { decision => 'reject', exception_id => '',
        reject_code => 'gi2_moderation_exception_invalid' }, $name);
    presented_is($r, 'ex_strict', $name);
}

###########################################################################
# 2. keyword files starting with a UTF-8 BOM

sub test_bom {
    for my $p ('# comment', 'comment', "\xef\xbb\xbf# comment",
        'a comment here')
    {
        my $name = "BOM file: prompt '$p' allowed";
        my ($r) = passed($name, "/direct$GEN",
            qq({"prompt":"$p"}));
        log_is($r, { decision => 'allow', rule_id => '' }, $name);
    }
    my $name = 'BOM file: later keyword still matches';
    my $r = rejected($name, "/direct$GEN", '{"prompt":"a bomb"}',
        'gi2_prompt_rejected', 'prompt');
    like($r->{json}{error}{message}, qr/\(category: weapons\)\.$/,
        "$name: category");
    log_is($r, { decision => 'reject', rule_id => 'k_bom',
        rule_category => 'weapons' }, $name);

    $name = 'BOM file: first-line keyword after the BOM matches';
    $r = rejected($name, "/direct$GEN", '{"prompt":"GRENADE!"}',
        'gi2_prompt_rejected', 'prompt');
    log_is($r, { decision => 'reject', rule_id => 'k_bom2' }, $name);
    $name = 'BOM file: CRLF second line matches';
    $r = rejected($name, "/direct$GEN", '{"prompt":"a Mine  Field"}',
        'gi2_prompt_rejected', 'prompt');
    log_is($r, { decision => 'reject', rule_id => 'k_bom2' }, $name);
}

###########################################################################
# 3. endpoint matching with merge_slashes off

sub test_merge_slashes_off {
    my $nude = '{"prompt":"nude"}';
    for my $path ('/v1/images/generations//', '/v1/images//generations',
        '/V1/IMAGES/GENERATIONS/', '//v1//images//generations//',
        '/v1/images//edits')
    {
        my $name = "merge_slashes off: $path inspected";
        my $r = rejected($name, ":2$path", $nude, 'gi2_prompt_rejected',
            'prompt');
        log_is($r, { status => 400, uri => $path, decision => 'reject',
            rule_id => 'r_nude', reject_code => 'gi2_prompt_rejected' },
            $name);

        $name = "merge_slashes off: $path clean prompt";
        my ($ok, $u) = passed($name, ":2$path", '{"prompt":"a cat"}');
        is($u->{uri}, $path, "$name: upstream uri unmerged");
        log_is($ok, { status => 200, decision => 'allow' }, $name);
    }
    for my $path ('/v1/images/generations.json', '/v1/imagesX/generations',
        '/v1/images/generationsX', '/v1/images/generations/x')
    {
        my $name = "merge_slashes off: $path not inspected";
        upstream_reset();
        my $r = post(":2$path", $BAD_JSON, 'X-GI2-Exception' => 'nope');
        my $u = is_passed_exact($r, $BAD_JSON, $name);
        is($u->{uri}, $path, "$name: upstream uri");
        no_exception_header($u, $name);
        log_is($r, { status => 200, @EMPTY }, $name);
        presented_is($r, '', $name);
    }
}

###########################################################################
# 5. the exception header is stripped in every gi2 location

sub stripped {
    my ($name, $method, $path, $body) = @_;
    upstream_reset();
    my $r = send_req($method, $path, $body,
        'X-GI2-Exception' => 'ex_ok');
    is($r->{status}, 200, "$name: status 200");
    my $u = one_upstream($name);
    is($u->{method}, $method, "$name: upstream method");
    is($u->{uri}, $path =~ s/^:2//r, "$name: upstream uri");
    ok(($u->{body} // '') eq ($body // ''), "$name: body untouched");
    no_exception_header($u, $name);
    log_is($r, { status => 200, @EMPTY }, "$name: not inspected");
    presented_is($r, '', $name);
}

sub test_header_stripped {
    stripped('GET in a gi2 location', 'GET', "/direct$GEN", undef);
    stripped('GET to another path', 'GET', '/direct/v1/models', undef);
    stripped('POST to another path', 'POST', '/direct/v1/images/variations',
        $BAD_JSON);
    stripped('PUT to the endpoint', 'PUT', "/direct$GEN", $BAD_JSON);
    stripped('GET via try_files', 'GET', $GEN, undef);
    stripped('POST to another path via try_files', 'POST',
        '/v1/images/variations', $BAD_JSON);
    stripped('GET in a merge_slashes off server', 'GET', ":2$GEN", undef);

    my $name = 'inspected POST';
    my ($r) = passed($name, "/direct$GEN", '{"prompt":"a cat"}',
        'X-GI2-Exception' => 'ex_ok');
    log_is($r, { exception_id => 'ex_ok' }, $name);

    for my $case (['GET', undef], ['POST', $LOW]) {
        my ($method, $body) = @$case;
        $name = "gi2 off: $method forwards the header";
        upstream_reset();
        $r = send_req($method, "/off$GEN", $body,
            'X-GI2-Exception' => 'ex_ok');
        is($r->{status}, 200, "$name: status 200");
        my $u = one_upstream($name);
        is_deeply($u->{headers}{'x-gi2-exception'}, ['ex_ok'],
            "$name: X-GI2-Exception forwarded");
        ok(($u->{body} // '') eq ($body // ''), "$name: body untouched");
        log_is($r, { status => 200, @EMPTY }, $name);
        presented_is($r, '', $name);
    }
}

###########################################################################
# 6. $gi2_exception_presented

sub test_presented {
    my $name = 'presented: valid';
    my ($r) = passed($name, "/direct$GEN", $LOW,
        'X-GI2-Exception' => 'ex_ok');
    log_is($r, { decision => 'allow', exception_id => 'ex_ok' }, $name);
    presented_is($r, 'ex_ok', $name);

    $name = 'presented: valid, auto';
    ($r) = passed($name, "/direct$GEN", '{"prompt":"a cat"}',
        'X-GI2-Exception' => 'ex_ok');
    presented_is($r, 'ex_ok', $name);

    $name = 'presented: unknown';
    $r = rejected($name, "/direct$GEN", $LOW,
        'gi2_moderation_exception_invalid', 'moderation',
        'X-GI2-Exception' => 'EXC-unknown-42');
    log_is($r, { decision => 'reject', exception_id => '',
        reject_code => 'gi2_moderation_exception_invalid' }, $name);
    presented_is($r, 'EXC-unknown-42', $name);

    $name = 'presented: unknown, auto request';
    $r = rejected($name, "/direct$GEN", '{"prompt":"a cat"}',
        'gi2_moderation_exception_invalid', 'moderation',
        'X-GI2-Exception' => 'nope');
    presented_is($r, 'nope', $name);

    my $long = join('', map { sprintf('%03d-', $_) } 1 .. 50);  # 200 bytes
    is(length $long, 200, 'long exception id is 200 bytes');
    $name = 'presented: 200 bytes, truncated to 128';
    $r = rejected($name, "/direct$GEN", $LOW,
        'gi2_moderation_exception_invalid', 'moderation',
        'X-GI2-Exception' => $long);
    log_is($r, { exception_id => '' }, $name);
    presented_is($r, substr($long, 0, 128), $name);

    my $exact = 'x' x 128;
    $name = 'presented: exactly 128 bytes kept';
    $r = rejected($name, "/direct$GEN", $LOW,
        'gi2_moderation_exception_invalid', 'moderation',
        'X-GI2-Exception' => $exact);
    presented_is($r, $exact, $name);

    $name = 'presented: none sent';
    ($r) = passed($name, "/direct$GEN", '{"prompt":"a cat"}');
    log_is($r, { decision => 'allow', exception_id => '' }, $name);
    presented_is($r, '', $name);

    $name = 'presented: none, rejected prompt';
    $r = rejected($name, "/direct$GEN", '{"prompt":"nude"}',
        'gi2_prompt_rejected', 'prompt');
    presented_is($r, '', $name);

    $name = 'presented: with an invalid request';
    upstream_reset();
    $r = post("/direct$GEN", $BAD_JSON, 'X-GI2-Exception' => 'ex_ok');
    is_rejection($r, 400, 'gi2_invalid_request', undef, $name);
    no_upstream($name);
    log_is($r, { decision => 'reject', exception_id => '',
        reject_code => 'gi2_invalid_request' }, $name);
    presented_is($r, 'ex_ok', $name);
}

###########################################################################
# 7. a PCRE2 resource limit counts as a match

sub limit_hits { return scalar(() = error_log() =~ /hit a PCRE2 limit/g) }

sub test_pcre2_limit {
    my $before = limit_hits();

    # "(*LIMIT_MATCH=10)^(a|b)+$" exceeds its match limit on this prompt,
    # with JIT and with the interpreter; it does not match it
    my $name = 'PCRE2 match limit';
    my $r = rejected($name, "/bt$GEN",
        '{"prompt":"ababababababababababab x"}', 'gi2_prompt_rejected',
        'prompt');
    like($r->{json}{error}{message}, qr/\(category: dos\)\.$/,
        "$name: category");
    log_is($r, { status => 400, decision => 'reject', rule_id => 'bt',
        rule_category => 'dos', reject_code => 'gi2_prompt_rejected' },
        $name);
    my $after = limit_hits();
    is($after, $before + 1, "$name: error.log says it hit a PCRE2 limit")
        or diag(error_log());
    my $warn = 'gi2: 1 rule(s) hit a PCRE2 limit on this prompt and '
        . 'count as matched';
    like(error_log(), qr/\[warn\] [^\n]*\Q$warn\E/,
        "$name: the warn line");

    # controls: a real match, and no match, hit no limit
    $name = 'PCRE2 limit control: plain match';
    $r = rejected($name, "/bt$GEN", '{"prompt":"abab"}',
        'gi2_prompt_rejected', 'prompt');
    log_is($r, { decision => 'reject', rule_id => 'bt' }, $name);
    $name = 'PCRE2 limit control: no match';
    ($r) = passed($name, "/bt$GEN", '{"prompt":"a cat"}');
    log_is($r, { decision => 'allow', rule_id => '' }, $name);

    # "(a|b)*c" never backtracks here: PCRE2 sees no "c" in the prompt and
    # returns "no match" at once, so there is no limit to hit
    $name = 'required character: no limit, no match';
    ($r) = passed($name, "/bt-c$GEN",
        '{"prompt":"ababababababababababab x"}');
    log_is($r, { decision => 'allow', rule_id => '' }, $name);
    $name = 'required character: plain match';
    $r = rejected($name, "/bt-c$GEN", '{"prompt":"c"}',
        'gi2_prompt_rejected', 'prompt');
    log_is($r, { decision => 'reject', rule_id => 'bt_c' }, $name);

    is(limit_hits(), $after, 'PCRE2 limit controls: no further limit '
        . 'warnings');
}

test_pattern_warnings();
test_redirects();
test_bom();
test_merge_slashes_off();
test_header_stripped();
test_presented();
test_pcre2_limit();
error_log_clean();
done_testing();
