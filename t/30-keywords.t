#!/usr/bin/perl

# gi2_keywords: keyword and phrase lists matched as whole words against
# the normalized prompt.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

require_module();

my $WEAPONS = <<"EOF";
# weapons list
   # an indented comment: secretword
bomb

blood bath
\t
Grenade
\xef\xbc\xb4\xef\xbc\xae\xef\xbc\xb4
mal.ware
\xe7\x88\x86\xe5\xbc\xbe
\xe7\x82\xb8\xe5\xbc\xb9
EOF

write_file('kw/weapons.txt', $WEAPONS);
write_file('kw/flag.txt', "balloon\nhot air\n");
write_file('kw/big.txt',
    join('', map { "entry$_\n" } 1 .. 9999) . "zzlastentry\n");

gi2_start(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        gi2 on;
        gi2_keywords k_weap deny weapons kw/weapons.txt;
        gi2_keywords k_flag flag watchlist kw/flag.txt;
        gi2_keywords k_big deny biglist kw/big.txt;
        location / { proxy_pass http://%%UPSTREAM%%; }
    }
EOF

my $GEN = '/v1/images/generations';

sub deny {
    my ($name, $prompt, $cat, $ids, $cats) = @_;
    upstream_reset();
    my $r = http_post($GEN, qq({"prompt":"$prompt"}));
    my $e = is_rejection($r, 400, 'gi2_prompt_rejected', 'prompt', $name);
    like($e->{message} // '', qr/\Q$cat\E/, "$name: message names $cat");
    unlike($e->{message} // '', qr/bomb|blood|grenade|entry|balloon/i,
        "$name: message has no keyword");
    no_upstream($name);
    log_is($r, { decision => 'reject', rule_id => $ids,
        rule_category => $cats // $cat,
        reject_code => 'gi2_prompt_rejected' }, $name);
}

sub passes {
    my ($name, $prompt, $decision, $ids, $cats) = @_;
    upstream_reset();
    my $body = qq({"prompt":"$prompt"});
    my $r = http_post($GEN, $body);
    is_passed_exact($r, $body, $name);
    log_is($r, { decision => $decision, rule_id => $ids // '',
        rule_category => $cats // '' }, $name);
}

sub test_whole_words {
    deny('keyword in a sentence', 'a bomb here', 'weapons', 'k_weap');
    deny('keyword with punctuation', 'BOMB!', 'weapons', 'k_weap');
    deny('keyword split by zero width', 'b\u200bomb', 'weapons', 'k_weap');
    passes('longer word', 'a bombastic speech', 'allow');
    passes('prefix letters', 'abomb', 'allow');
    passes('underscore is a word char', 'bomb_squad', 'allow');
    passes('digit is a word char', 'bomb2', 'allow');
}

sub test_phrases {
    deny('phrase', 'a blood bath', 'weapons', 'k_weap');
    deny('phrase with whitespace run', 'blood \t\n  bath', 'weapons',
        'k_weap');
    passes('phrase joined', 'bloodbath', 'allow');
    passes('phrase half', 'blood orange', 'allow');
}

sub test_file_format {
    deny('keyword normalized from file', 'a grenade', 'weapons', 'k_weap');
    deny('fullwidth keyword in file', 'tnt crate', 'weapons', 'k_weap');
    passes('comment line is not a keyword', 'secretword', 'allow');
    passes('first comment line is not a keyword', 'weapons list', 'allow');
    passes('blank lines add no empty keyword', 'harmless', 'allow');
    deny('dot is literal', 'mal.ware', 'weapons', 'k_weap');
    passes('dot is not a wildcard', 'malxware', 'allow');
}

sub test_cjk {
    deny('Japanese keyword inside text',
        "\xe3\x81\x93\xe3\x82\x8c\xe3\x81\xaf\xe7\x88\x86\xe5\xbc\xbe"
        . "\xe3\x81\xa7\xe3\x81\x99", 'weapons', 'k_weap');
    deny('Chinese keyword inside text',
        "\xe6\x88\x91\xe6\x83\xb3\xe8\xa6\x81\xe4\xb8\x80\xe4\xb8\xaa"
        . "\xe7\x82\xb8\xe5\xbc\xb9\xe5\x9b\xbe\xe7\x89\x87", 'weapons',
        'k_weap');
}

sub test_flag_and_order {
    passes('flag keyword', 'a red balloon', 'flag', 'k_flag', 'watchlist');
    passes('flag phrase', 'hot   air', 'flag', 'k_flag', 'watchlist');
    deny('deny and flag lists', 'balloon bomb', 'weapons', 'k_weap,k_flag',
        'weapons,watchlist');
}

sub test_big_list {
    deny('10,000-line list: last entry', 'the zzlastentry here', 'biglist',
        'k_big');
    deny('10,000-line list: middle entry', 'entry5000', 'biglist', 'k_big');
    passes('10,000-line list: not listed', 'entry10001', 'allow');
}

test_whole_words();
test_phrases();
test_file_format();
test_cjk();
test_flag_and_order();
test_big_list();
error_log_clean();
done_testing();
