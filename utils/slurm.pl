#!/usr/bin/env perl
# Slurm job runner with the Kaldi/ESPnet interface (a drop-in for run.pl, chosen in a recipe's cmd.sh):
#   slurm.pl [options] [JOB=1:N] LOGFILE COMMAND...
# Submits one array job (sbatch --wait --array=1-N) and waits for it; each task writes its LOGFILE (JOB
# substituted) like run.pl does. Exit status 0 iff every task succeeded.
# Options: --mem 4G, --gpu N, --num-threads N, --time HH:MM:SS, --partition P, --max-jobs-run N,
#          --sbatch-opts "extra sbatch arguments" (e.g. "--account=x --qos=y").
use strict;
use warnings;
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use Cwd qw(getcwd);

my %opt = (mem => '', gpu => 0, 'num-threads' => 1, time => '', partition => '', 'max-jobs-run' => 0,
           'sbatch-opts' => '');
while (@ARGV && $ARGV[0] =~ /^--/) {
  my $o = shift @ARGV;
  last if $o eq '--';
  my $val;
  if ($o =~ /^(--[^=]+)=(.*)$/) { ($o, $val) = ($1, $2); } else {
    die "slurm.pl: option $o needs a value\n" unless @ARGV;
    $val = shift @ARGV;
  }
  (my $name = substr($o, 2)) =~ s/_/-/g;
  die "slurm.pl: unknown option $o (known: " . join(' ', map {"--$_"} sort keys %opt) . ")\n"
    unless exists $opt{$name};
  $opt{$name} = $val;
}

my ($var, $first, $last) = ('', 1, 1);
if (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) { ($var, $first, $last) = ($1, $2, $3); shift @ARGV; }
elsif (@ARGV && $ARGV[0] =~ /^([A-Za-z_]\w*)=(\d+)$/) { ($var, $first, $last) = ($1, $2, $2); shift @ARGV; }
die "Usage: slurm.pl [options] [JOB=1:N] LOGFILE COMMAND...\n" unless @ARGV >= 2;
my $logfile = shift @ARGV;

sub quote {
  my $a = shift;
  return $a if $a =~ /^(\||\|\||&&|;|<|>|>>|2>&1|2>)$/;
  return $a if $a =~ /^[\w\/.,:=+%@^-]+$/;
  $a =~ s/'/'\\''/g;
  return "'$a'";
}
my $cmd_template = join(' ', map { quote($_) } @ARGV);
sub subst { my ($s, $n) = @_; $s =~ s/\b\Q$var\E\b/$n/g if $var ne ''; return $s; }

# The batch script: one case branch per task, so each task runs its own (already substituted) command.
my $qdir = dirname($logfile) . "/q";
make_path($qdir) unless -d $qdir;
(my $base = basename($logfile)) =~ s/\b\Q$var\E\b/array/g if $var ne '';
$base = basename($logfile) if $var eq '';
my $script = "$qdir/$base.sh";
open(my $fh, '>', $script) or die "slurm.pl: cannot write $script: $!\n";
print $fh "#!/usr/bin/env bash\ncd " . quote(getcwd()) . "\n";
print $fh "task=\${SLURM_ARRAY_TASK_ID:-$first}\ncase \$task in\n";
for my $n ($first .. $last) {
  my $log = subst($logfile, $n);
  my $cmd = subst($cmd_template, $n);
  my $qlog = quote($log);
  print $fh "  $n) log=$qlog; cmd=" . quote($cmd) . " ;;\n";
}
print $fh "  *) echo \"slurm.pl: no task \$task\" >&2; exit 1 ;;\nesac\n";
print $fh 'mkdir -p "$(dirname "$log")"' . "\n";
print $fh '{ echo "# $cmd"; echo "# Started at $(date "+%F %T") on $(hostname)"; } > "$log"' . "\n";
print $fh 't0=$(date +%s); ( eval "$cmd" ) >> "$log" 2>&1; rc=$?' . "\n";
print $fh 'echo "# Ended (code $rc) at $(date "+%F %T"), elapsed time $(( $(date +%s) - t0 )) seconds" >> "$log"' . "\n";
print $fh "echo \$rc > " . quote("$qdir/$base") . ".\$task.rc\nexit \$rc\n";
close $fh;
chmod 0755, $script;
unlink glob(quote("$qdir/$base") . ".*.rc");

my @sbatch = ('sbatch', '--wait', '--parsable', "--job-name=" . $base, "--output=$qdir/$base.%a.out",
              "--array=$first-$last" . ($opt{'max-jobs-run'} ? "%$opt{'max-jobs-run'}" : ''),
              "--cpus-per-task=$opt{'num-threads'}");
push @sbatch, "--mem=$opt{mem}" if $opt{mem} ne '';
push @sbatch, "--gres=gpu:$opt{gpu}" if $opt{gpu};
push @sbatch, "--time=$opt{time}" if $opt{time} ne '';
push @sbatch, "--partition=$opt{partition}" if $opt{partition} ne '';
push @sbatch, split(' ', $opt{'sbatch-opts'}) if $opt{'sbatch-opts'} ne '';
push @sbatch, $script;
system(@sbatch);

my @bad;
for my $n ($first .. $last) {
  my $rcfile = "$qdir/$base.$n.rc";
  my $rc = -e $rcfile ? do { open(my $r, '<', $rcfile); my $x = <$r>; close $r; chomp $x; $x } : 'missing';
  push @bad, $n if $rc ne '0';
}
if (@bad) {
  print STDERR "slurm.pl: " . scalar(@bad) . " / " . ($last - $first + 1) . " failed, log is in "
    . subst($logfile, $bad[0]) . " (sbatch output in $qdir)\n";
  exit 1;
}
exit 0;
