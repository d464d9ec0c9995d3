#!/usr/bin/perl

# gi2_rule: deny and flag regexes against the normalized prompt.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

gi2_start(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_rule f_weapon flag weapons "\b(gun|rifle)s?\b";
        gi2_rule r_nude deny sexual "\bnude\b";
        gi2_rule r_blood deny violence "blood bath";
        gi2_rule r_gore deny graphic "\bgore\b";
        gi2_rule r_cjk deny extremism "暴力";
        gi2_rule f_smoke flag drugs "\bsmok(e|ing)\b";
        location / { proxy_pass http://%%UPSTREAM%%; }
    }
EOF

my $GEN = '/v1/images/generations';

# $prompt is the JSON string's inside, as sent (escapes and raw bytes).
sub deny {
    my ($name, $prompt, $cat, $ids, $cats) = @_;
    upstream_reset();
    my $r = http_post($GEN, qq({"prompt":"$prompt","model":"m1"}));
    my $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', $name);
    like($e->{message} // '', qr/\Q$cat\E/, "$name: message names $cat");
    unlike($e->{message} // '', qr/\\b|nude|blood|gore|\x{66b4}|bath/i,
        "$name: message has no pattern or prompt words");
    no_upstream($name);
    log_is($r, { status => 400, decision => 'reject', rule_id => $ids,
        rule_category => $cats // $cat, moderation_effective => '',
        reject_code => 'gi2_prompt_rejected', model => 'm1' }, $name);
}

sub passes {
    my ($name, $prompt, $decision, $ids, $cats) = @_;
    upstream_reset();
    my $body = qq({"prompt":"$prompt"});
    my $r = http_post($GEN, $body);
    is_passed_exact($r, $body, $name);
    log_is($r, { decision => $decision, rule_id => $ids // '',
        rule_category => $cats // '', reject_code => '' }, $name);
}

sub test_normalization {
    my @variants = (
        ['plain', 'a nude statue'],
        ['capitalized', 'Nude'],
        ['upper case', 'NUDE'],
        ['zero width space escape', 'n\u200bude'],
        ['zero width space raw', "n\xe2\x80\x8bude"],
        ['fullwidth raw', "\xef\xbc\xae\xef\xbc\xb5\xef\xbc\xa4\xef\xbc\xa5"],
        ['fullwidth escapes', '\uff2e\uff35\uff24\uff25'],
        ['escaped letter', '\u006eude'],
        ['RLO inside word', 'nu\u202ede'],
        ['RLO raw inside word', "nu\xe2\x80\xaede"],
        ['bidi isolates', 'n\u2066ude\u2069'],
        ['soft hyphen', 'nu\u00adde'],
        ['BOM inside word', 'n\ufeffude'],
        ['punctuation around', '(nude).'],
    );
    for my $v (@variants) {
        deny("normalized: $v->[0]", $v->[1], 'sexual', 'r_nude');
    }
}

sub test_not_matching {
    passes('longer word nudes', 'nudes and stuff', 'allow');
    passes('inside word denuded', 'denuded tree', 'allow');
    passes('split by a space', 'n ude', 'allow');
    passes('joined phrase', 'bloodbath', 'allow');
}

sub test_whitespace_runs {
    my @variants = (
        ['single space', 'blood bath'],
        ['spaces', 'blood   bath'],
        ['tabs', 'blood\t\tbath'],
        ['newlines', 'blood\n \nbath'],
        ['crlf and case', 'Blood\r\nBATH'],
        ['nbsp', 'blood\u00a0bath'],
        ['ideographic space', 'blood\u3000bath'],
        ['leading and trailing', '  \t blood \t bath \n'],
    );
    for my $v (@variants) {
        deny("whitespace: $v->[0]", $v->[1], 'violence', 'r_blood');
    }
}

sub test_flags {
    passes('flag', 'a gun on a table', 'flag', 'f_weapon', 'weapons');
    passes('flag fullwidth raw',
        "\xef\xbc\xa7\xef\xbc\xb5\xef\xbc\xae\xe2\x80\x8b", 'flag',
        'f_weapon', 'weapons');
    passes('two flags in config order', 'smoking guns', 'flag',
        'f_weapon,f_smoke', 'weapons,drugs');
}

sub test_several_matches {
    deny('deny and flag', 'a nude with a rifle', 'sexual',
        'f_weapon,r_nude', 'weapons,sexual');
    deny('two denies: first category', 'gore and nude', 'sexual',
        'r_nude,r_gore', 'sexual,graphic');
}

sub test_cjk {
    deny('CJK inside CJK text', "\xe8\xbf\x99\xe6\x98\xaf\xe6\x9a\xb4\xe5"
        . "\x8a\x9b\xe5\x86\x85\xe5\xae\xb9", 'extremism', 'r_cjk');
    passes('CJK clean', "\xe4\xb8\x80\xe5\x8f\xaa\xe7\x8c\xab", 'allow');
}

test_normalization();
test_not_matching();
test_whitespace_runs();
test_flags();
test_several_matches();
test_cjk();
error_log_clean();
done_testing();
