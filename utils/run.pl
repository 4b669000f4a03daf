#!/usr/bin/env perl
# Local job runner with the Kaldi/ESPnet interface:
#   run.pl [options] [JOB=1:N] LOGFILE COMMAND...
# Runs COMMAND once (or once per JOB value, JOB substituted in LOGFILE and COMMAND), at most --max-jobs-run at a
# time, each with its own LOGFILE (command, start and end time, exit code). Exit status 0 iff every job succeeded.
# Options of cluster runners (--mem, --gpu, --num-threads, --time, --config, ...) are accepted and ignored, so
# cmd.sh can switch between run.pl and slurm.pl without touching the recipe.
use strict;
use warnings;
use POSIX qw(:sys_wait_h strftime);
use File::Basename qw(dirname);
use File::Path qw(make_path);

my $max_jobs = 0;  # 0: all at once
while (@ARGV && $ARGV[0] =~ /^--/) {
  my $opt = shift @ARGV;
  last if $opt eq '--';
  my $val;
  if ($opt =~ /^(--[^=]+)=(.*)$/) { ($opt, $val) = ($1, $2); } else {
    die "run.pl: option $opt needs a value\n" unless @ARGV;
    $val = shift @ARGV;
  }
  if ($opt eq '--max-jobs-run' || $opt eq '--max_jobs_run') {
    die "run.pl: --max-jobs-run needs a positive integer, got '$val'\n" unless $val =~ /^\d+$/ && $val > 0;
    $max_jobs = $val;
  }
}

my ($var, $first, $last) = ('', 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
  ($var, $first, $last) = ($1, $2, $3);
  shift @ARGV;
  die "run.pl: empty job range $first:$last\n" if $last < $first;
} elsif (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)$/) {
  ($var, $first, $last) = ($1, $2, $2);
  shift @ARGV;
}
die "Usage: run.pl [--max-jobs-run N] [JOB=1:N] LOGFILE COMMAND...\n" unless @ARGV >= 2;
my $logfile = shift @ARGV;

# Quote arguments for bash -c unless they are lone shell operators (passed as \| etc. by the caller).
sub quote {
  my $a = shift;
  return $a if $a =~ /^(\||\|\||&&|;|<|>|>>|2>&1|2>)$/;
  return $a if $a =~ /^[\w\/.,:=+%@^-]+$/;
  $a =~ s/'/'\\''/g;
  return "'$a'";
}
my $cmd_template = join(' ', map { quote($_) } @ARGV);

sub subst { my ($s, $n) = @_; $s =~ s/\b\Q$var\E\b/$n/g if $var ne ''; return $s; }

my %running;  # pid -> job number
my %failed;
my $total = $last - $first + 1;

sub reap {
  my ($block) = @_;
  my $pid = waitpid(-1, $block ? 0 : WNOHANG);
  return 0 if $pid <= 0;
  if (exists $running{$pid}) {
    $failed{$running{$pid}} = 1 if $? != 0;
    delete $running{$pid};
  }
  return 1;
}

for my $n ($first .. $last) {
  while ($max_jobs > 0 && keys(%running) >= $max_jobs) { reap(1); }
  my $log = subst($logfile, $n);
  my $cmd = subst($cmd_template, $n);
  my $dir = dirname($log);
  make_path($dir) unless -d $dir;
  my $pid = fork();
  die "run.pl: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(my $fh, '>', $log) or die "run.pl: cannot write log file $log: $!\n";
    print $fh "# $cmd\n# Started at " . strftime("%F %T", localtime) . "\n";
    close $fh;
    my $t0 = time;
    my $rc = system('bash', '-c', "( $cmd ) >>" . quote($log) . " 2>&1");
    my $code = $rc == -1 ? 127 : ($rc & 127 ? 128 + ($rc & 127) : $rc >> 8);
    open($fh, '>>', $log) or exit 1;
    printf $fh "# Accounting: time=%d threads=1\n# Ended (code %d) at %s, elapsed time %d seconds\n",
      time - $t0, $code, strftime("%F %T", localtime), time - $t0;
    close $fh;
    exit($code == 0 ? 0 : 1);
  }
  $running{$pid} = $n;
}
while (keys %running) { reap(1); }

if (%failed) {
  my @bad = sort { $a <=> $b } keys %failed;
  my $nbad = scalar @bad;
  if ($var ne '') {
    print STDERR "run.pl: $nbad / $total failed, log is in " . subst($logfile, $bad[0]) . "\n";
  } else {
    print STDERR "run.pl: job failed, log is in $logfile\n";
  }
  exit 1;
}
exit 0;
