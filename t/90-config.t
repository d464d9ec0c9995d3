#!/usr/bin/perl

# Configuration: every error fails nginx -t with a message and the
# file:line; valid configurations pass; rule, keyword and exception
# arrays inherit like nginx arrays.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

write_file('kw/bomb.txt', "bomb\n");
write_file('kw/grenade.txt', "# list\ngrenade\n");
write_file('kw/comments.txt', "# only\n   # comments\n\n \t\n");
write_file('kw/empty.txt', '');
write_file('kw/bad-utf8.txt', "fine\n\xff\xfe\n");
write_file('kw/invisible.txt', "fine\n\xe2\x80\x8b\xc2\xad\n");
write_file('empty.key', '');
write_file('not-a-dir', 'x');
mkdir prefix() . '/kw/adir';

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

# nginx -t fails with [emerg] <$re> in <conf>:<line of MARK>.
sub fails {
    my ($name, $tpl, $re, %o) = @_;
    my ($rc, $out, $conf) = nginx_t($tpl, %o);
    note($out);
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
}

sub test_bad_patterns {
    my $bad = 'gi2_rule "r\d": bad pattern:';
    fails('unclosed group', in_location('gi2_rule r1 deny c "(unclosed";'),
        qr/$bad missing closing parenthesis at offset 9/);
    fails('unclosed class', in_location('gi2_rule r2 deny c "a[b";'),
        qr/$bad missing terminating \] for character class at offset 3/);
    fails('bad quantifier', in_location('gi2_rule r3 deny c "*abc";'),
        qr/$bad quantifier does not follow a repeatable item at offset 0/);
}

sub test_duplicate_ids {
    my $dup = qr/gi2: duplicate rule id "d1"/;
    my $nl = "\n            ";
    fails('duplicate id across levels', qq(    gi2_rule d1 deny c "a";\n)
        . in_location('gi2_rule d1 deny c "b";'), $dup);
    fails('duplicate id at one level', in_location(
        qq(gi2_rule d1 deny c "a";${nl}gi2_rule d1 flag c "b";)), $dup);
    fails('rule and keywords share ids', in_location(
        qq(gi2_rule d1 deny c "a";${nl}gi2_keywords d1 deny c kw/bomb.txt;)),
        $dup);
    fails('duplicate id across servers', <<'EOF', $dup);
    server { listen 127.0.0.1:1; gi2_rule d1 deny c "a"; }
    server { listen 127.0.0.1:2; gi2_rule d1 deny c "b"; # MARK
    }
EOF
}

sub test_bad_values {
    fails('unknown rule action', in_location('gi2_rule r1 block c "x";'),
        qr/.*block.*/);
    fails('unknown keywords action',
        in_location('gi2_keywords k1 allow c kw/bomb.txt;'), qr/.*allow.*/);
    fails('gi2 bad value', in_location('gi2 maybe;'), qr/.*maybe.*/);
    fails('gi2_moderation_low bad value',
        in_location('gi2_moderation_low maybe;'), qr/.*maybe.*/);
    for my $v (qw(200 399 600 abc 4xx -400)) {
        fails("gi2_reject_status $v", in_location("gi2_reject_status $v;"),
            qr/.*/);
    }
    # statuses the SDKs retry, 5xx, and 444 (close without a response)
    for my $v (qw(408 409 429 444 500 503)) {
        fails("gi2_reject_status $v", in_location("gi2_reject_status $v;"),
            qr/gi2_reject_status must be a 4xx status that clients do not retry.*/);
    }
    fails('unknown exception parameter',
        in_location('gi2_exception e1 foo=bar;'), qr/.*foo.*/);
    fails('duplicate exception id', in_location(
        "gi2_exception e1;\n            gi2_exception e1;"), qr/.*e1.*/);
}

sub test_bad_dates {
    for my $d ('2024-13-01', '2024-02-30', '2023-02-29', '2024-00-10',
        '2024-01-00', 'tomorrow', '', '2024-1-1', '2024-01-01x',
        '01-01-2024')
    {
        fails("expires=$d",
            in_location("gi2_exception e1 expires=$d;"), qr/.*/);
    }
}

sub test_keyword_files {
    my $out = fails('missing keyword file',
        in_location('gi2_keywords k1 deny c kw/missing.txt;'), qr/.*/);
    like($out, qr/missing\.txt/, 'missing keyword file: names the file');
    $out = fails('keyword file is a directory',
        in_location('gi2_keywords k1 deny c kw/adir;'), qr/.*/);
    like($out, qr/adir/, 'keyword file is a directory: names the file');
    $out = fails('keyword file with only comments',
        in_location('gi2_keywords k1 deny c kw/comments.txt;'), qr/.*/);
    like($out, qr/comments\.txt/, 'comments only: names the file');
    $out = fails('empty keyword file',
        in_location('gi2_keywords k1 deny c kw/empty.txt;'), qr/.*/);
    like($out, qr/empty\.txt/, 'empty keyword file: names the file');
}

sub test_arg_counts {
    my @cases = ('gi2', 'gi2 on off', 'gi2_rule r1 deny c',
        'gi2_rule r1 deny c "x" extra', 'gi2_keywords k1 deny c',
        'gi2_keywords k1 deny c kw/bomb.txt kw/bomb.txt',
        'gi2_moderation_low', 'gi2_moderation_low reject allow',
        'gi2_exception', 'gi2_exception e1 expires=2030-01-01 consumer=a b',
        'gi2_exception_header', 'gi2_exception_header A B',
        'gi2_consumer', 'gi2_consumer a b', 'gi2_reject_status',
        'gi2_reject_status 400 403');
    for my $c (@cases) {
        my ($d) = split / /, $c;
        fails("arguments: '$c'", in_location("$c;"),
            qr/invalid number of arguments in "$d" directive/);
    }
}

sub test_other_errors {
    my ($rc, $out) = nginx_t(in_location('gi2_consumer $no_such_var;'));
    isnt($rc, 0, 'unknown variable in gi2_consumer fails');
    like($out, qr/no_such_var/, 'unknown variable named');
    fails('gi2 in main context', '', qr/"gi2" directive is not allowed here/,
        main => 'gi2 on; # MARK');
    fails('duplicate gi2_moderation_low', in_location(
        "gi2_moderation_low reject;\n            gi2_moderation_low allow;"),
        qr/"gi2_moderation_low" directive is duplicate/);
}

# Each message names what is wrong, and the file:line of the directive.
sub test_more_errors {
    my $p = prefix();
    my $id = qr/use 1 to 128 of A-Z a-z 0-9 _ - \. : \//;
    fails('empty rule id', in_location('gi2_rule "" deny c "x";'),
        qr/invalid rule id "": $id/);
    fails('rule id with a space', in_location('gi2_rule "a b" deny c "x";'),
        qr/invalid rule id "a b": $id/);
    fails('empty category', in_location('gi2_rule r1 deny "" "x";'),
        qr/invalid category "" in rule "r1": $id/);
    fails('empty pattern', in_location('gi2_rule r1 deny c "";'),
        qr/empty pattern in gi2_rule "r1"/);
    fails('pattern not UTF-8', in_location(qq(gi2_rule r1 deny c "\xff";)),
        qr/gi2_rule "r1": bad pattern: UTF-8 error: .* at offset 0/);
    fails('pattern with \C', in_location('gi2_rule r1 deny c "a\Cb";'),
        qr/gi2_rule "r1": bad pattern: using \\C is disabled .* at offset 3/);
    fails('empty keyword list id',
        in_location('gi2_keywords "" deny c kw/bomb.txt;'),
        qr/invalid rule id "": $id/);
    my $kw = qr/not valid UTF-8, or nothing left once normalized/;
    fails('keyword line not UTF-8',
        in_location('gi2_keywords k1 deny c kw/bad-utf8.txt;'),
        qr/gi2_keywords "k1": \Q$p\E\/kw\/bad-utf8\.txt:2: $kw/);
    fails('keyword line of invisible characters',
        in_location('gi2_keywords k1 deny c kw/invisible.txt;'),
        qr/gi2_keywords "k1": \Q$p\E\/kw\/invisible\.txt:2: $kw/);
    fails('empty exception id', in_location('gi2_exception "";'),
        qr/invalid exception id "": $id/);
    my $ex = qr/use expires=YYYY-MM-DD and consumer=VALUE/;
    fails('empty exception consumer',
        in_location('gi2_exception e1 consumer=;'),
        qr/invalid parameter "consumer=" in gi2_exception "e1": $ex/);
    fails('exception consumer twice',
        in_location('gi2_exception e1 consumer=a consumer=b;'),
        qr/invalid parameter "consumer=b" in gi2_exception "e1": $ex/);
    fails('exception expires twice',
        in_location('gi2_exception e1 expires=2099-01-01 expires=2099-02-01;'),
        qr/invalid parameter "expires=2099-02-01" in gi2_exception "e1": $ex/);
    my $hn = qr/use 1 to 128 of A-Z a-z 0-9 - _/;
    for my $h ('', 'X GI2', 'X-GI2:', "X-\xc3\xa9", 'X' x 129) {
        fails("exception header name '$h'",
            in_location(qq(gi2_exception_header "$h";)),
            qr/invalid header name "\Q$h\E": $hn/);
    }
    passes_t('exception header with an underscore',
        in_location('gi2_exception_header X_GI2_Exception;'));
    fails('duplicate gi2_exception_header', in_location(
        "gi2_exception_header X-A;\n            gi2_exception_header X-B;"),
        qr/"gi2_exception_header" directive is duplicate/);
    fails('gi2_response_inspection bad value',
        in_location('gi2_response_inspection maybe;'),
        qr/invalid value "maybe" in "gi2_response_inspection" directive, /
            . qr/it must be "on", "off", "threads" or "threads=POOL"/);
    fails('gi2_reject_status not a number',
        in_location('gi2_reject_status 400x;'),
        qr/"gi2_reject_status" directive invalid number/);
    fails('hash key file empty', in_location("gi2_hash_key_file $p/empty.key;"),
        qr/gi2_hash_key_file: "\Q$p\E\/empty\.key" holds 0 bytes; /
            . qr/a key needs at least 16.*/);
    fails('hash key file a directory', in_location("gi2_hash_key_file $p/kw;"),
        qr/gi2_hash_key_file: cannot read "\Q$p\E\/kw" .*Is a directory\)/);
    fails('hash key file under a regular file',
        in_location("gi2_hash_key_file $p/not-a-dir/k;"),
        qr/gi2_hash_key_file: cannot open "\Q$p\E\/not-a-dir\/k" /
            . qr/.*Not a directory\)/);
    fails('price without a model',
        in_location('gi2_price "" input=1 output=1;'),
        qr/gi2_price needs a model name/);
    fails('negative price', in_location('gi2_price m input=-1 output=1;'),
        qr/invalid parameter "input=-1" in gi2_price "m": .*/);
    fails('unknown price parameter',
        in_location('gi2_price m input=1 output=1 foo=2;'),
        qr/invalid parameter "foo=2" in gi2_price "m": .*/);
}

sub test_valid_configs {
    passes_t('every directive at every level', <<'EOF');
    gi2 off;
    gi2_rule v1 deny sexual "\bnude\b";
    gi2_keywords v2 flag weapons kw/bomb.txt;
    gi2_moderation_low reject;
    gi2_exception_header X-GI2-Exception;
    gi2_exception ve1 expires=2024-02-29;
    gi2_exception ve2 consumer=abc;
    gi2_exception ve3 expires=2099-12-31 consumer=abc;
    gi2_consumer $http_x_api_key;
    gi2_reject_status 403;
    server {
        listen 127.0.0.1:1;
        gi2 on;
        gi2_rule v3 flag c "(?:a|b)+c";
        gi2_keywords v4 deny c kw/grenade.txt;
        gi2_moderation_low rewrite;
        gi2_exception ve5;
        gi2_reject_status 451;
        location / {
            gi2_rule v5 deny c "\p{Han}{4}";
            gi2_moderation_low allow;
            gi2_exception_header X-Other;
            gi2_consumer "$http_authorization:$remote_addr";
            gi2_exception ve4;
            gi2_reject_status 400;
        }
    }
EOF
    passes_t('absolute keyword path',
        in_location('gi2_keywords k1 deny c ' . prefix() . '/kw/bomb.txt;'));
    passes_t('same exception id at two levels',
        "    gi2_exception e1;\n" . in_location('gi2_exception e1;'));
}

test_bad_patterns();
test_duplicate_ids();
test_bad_values();
test_bad_dates();
test_keyword_files();
test_arg_counts();
test_other_errors();
test_more_errors();
test_valid_configs();

###########################################################################
# inheritance, on a running server

write_file('kw/bomb2.txt', "bomb\n");

gi2_start(<<'EOF');
    gi2_rule h_nude deny sexual "\bnude\b";
    gi2_keywords h_kw deny weapons kw/bomb2.txt;
    gi2_exception ex_http;
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        location /inherit/ { proxy_pass http://%%UPSTREAM%%; }
        location /own-rule/ {
            gi2_rule l_gore deny graphic "\bgore\b";
            proxy_pass http://%%UPSTREAM%%;
        }
        location /own-kw/ {
            gi2_keywords l_kw deny explosives kw/grenade.txt;
            proxy_pass http://%%UPSTREAM%%;
        }
        location /own-ex/ {
            gi2_exception ex_loc;
            proxy_pass http://%%UPSTREAM%%;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        gi2 on;
        gi2_rule s_gore deny graphic "\bgore\b";
        location / { proxy_pass http://%%UPSTREAM%%; }
        location /nested/ {
            location /nested/deep/ { proxy_pass http://%%UPSTREAM%%; }
        }
    }
EOF

sub post_to {
    my ($path, $body, @hdrs) = @_;
    my $port = $path =~ s/^:2// ? port(2) : port(1);
    my ($req, $id) = request_bytes('POST', "${path}v1/images/generations",
        $body, @hdrs);
    return http_send($req, $id, port => $port);
}

sub blocked {
    my ($path, $prompt, $id, $code) = @_;
    my $name = "$path '$prompt' rejected";
    upstream_reset();
    my $r = post_to($path, qq({"prompt":"$prompt"}));
    is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', $name);
    no_upstream($name);
    log_is($r, { rule_id => $id }, $name);
}

sub allowed {
    my ($path, $body, @hdrs) = @_;
    $body = qq({"prompt":"$body"}) unless $body =~ /^\{/;
    upstream_reset();
    is_passed_exact(post_to($path, $body, @hdrs), $body,
        "$path $body allowed");
}

sub test_inheritance {
    blocked('/inherit/', 'nude', 'h_nude');
    blocked('/inherit/', 'bomb', 'h_kw');
    allowed('/inherit/', 'gore');
    allowed('/inherit/', '{"prompt":"a","moderation":"low"}',
        'X-GI2-Exception' => 'ex_http');
    blocked('/own-rule/', 'gore', 'l_gore');
    allowed('/own-rule/', 'nude');
    blocked('/own-rule/', 'bomb', 'h_kw');
    blocked('/own-kw/', 'grenade', 'l_kw');
    allowed('/own-kw/', 'bomb');
    blocked('/own-kw/', 'nude', 'h_nude');
    allowed('/own-ex/', '{"prompt":"a","moderation":"low"}',
        'X-GI2-Exception' => 'ex_loc');
    upstream_reset();
    my $r = post_to('/own-ex/', '{"prompt":"a","moderation":"low"}',
        'X-GI2-Exception' => 'ex_http');
    is_rejection($r, 400, 'gi2_moderation_exception_invalid', 'moderation',
        'own exceptions replace the inherited ones');
    blocked(':2/', 'gore', 's_gore');
    allowed(':2/', 'nude');
    blocked(':2/', 'bomb', 'h_kw');
    blocked(':2/nested/deep/', 'gore', 's_gore');
}

test_inheritance();
error_log_clean();
done_testing();
