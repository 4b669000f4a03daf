#!/usr/bin/env perl
# Split a Kaldi list file into N near-equal contiguous parts (Kaldi interface):
#   utils/split_scp.pl IN OUT1 OUT2 ... OUTN
# Lines are kept in order; no output is left empty unless IN has fewer lines than outputs (an error).
use strict;
use warnings;
die "Usage: split_scp.pl IN OUT1 [OUT2 ...]\n" unless @ARGV >= 2;
my ($in, @outs) = @ARGV;
open(my $fh, '<', $in) or die "split_scp.pl: cannot read $in: $!\n";
my @lines = grep { /\S/ } <$fh>;
close $fh;
my ($n, $k) = (scalar @lines, scalar @outs);
die "split_scp.pl: $in has $n lines, fewer than the $k outputs\n" if $n < $k;
for my $i (0 .. $k - 1) {
  my ($from, $to) = (int($i * $n / $k), int(($i + 1) * $n / $k));
  open(my $o, '>', $outs[$i]) or die "split_scp.pl: cannot write $outs[$i]: $!\n";
  print $o @lines[$from .. $to - 1];
  close $o;
}
