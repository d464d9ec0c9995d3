#!/usr/bin/perl

# The libFuzzer harnesses of fuzz/, built with a plain main under ASan and
# UBSan (make unit), replayed over their seed corpora and the inputs of
# fuzz/regress/NAME: every input once failed or crashed before its fix, and
# every check of the harness (chunking gives the same result, offsets and
# rewrites, prefilter soundness, hashes against OpenSSL) must hold.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Gi2Test;

my $root = repo_root();
opendir my $dh, "$root/fuzz" or plan skip_all => 'no fuzz/';
my @names = sort map { /^(\w+)_fuzz\.c$/ ? $1 : () } readdir $dh;
closedir $dh;

plan skip_all => 'no harnesses' unless @names;

for my $name (@names) {
    my $bin = "$root/build/fuzz/${name}_replay";
    my @dirs = grep { -d } map { "$root/fuzz/$_/$name" } qw(corpus regress);
    my $want = 0;
    for my $d (@dirs) {
        opendir my $h, $d or die "$d: $!";
        $want += grep { !/^\./ } readdir $h;
        closedir $h;
    }
    ok(-x $bin, "$name: replay driver built") or next;
    ok($want > 0, "$name: has seed inputs");
    local $ENV{ASAN_OPTIONS} = 'abort_on_error=1:detect_leaks=1';
    local $ENV{UBSAN_OPTIONS} = 'print_stacktrace=1:halt_on_error=1';
    my $out = `'$bin' @dirs 2>&1`;
    my $rc = $?;
    is($rc, 0, "$name: replay exits 0") or diag(substr($out, -3000));
    like($out, qr/^replayed $want inputs$/m,
        "$name: all $want inputs replayed");
}

done_testing();
