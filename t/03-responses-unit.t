#!/usr/bin/perl

# Unit tests of the Responses API request parsing (t/unit/gi2_responses_unit.c): runs the binary
# `make unit` builds and passes its TAP through.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;

my $top = File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), '..'));
my $bin = File::Spec->catfile($top, 'build', 'gi2_responses_unit');

unless (-x $bin) {
    print "1..0 # SKIP build/gi2_responses_unit not built (run make unit)\n";
    exit 0;
}

exec $bin or die "cannot run $bin: $!\n";
