#!/usr/bin/perl
# status_wrap.pl STATUSFILE COMMAND [ARGS...]
#
# Run COMMAND, pass its exit status through, and write how it ended to
# STATUSFILE: "exit N" or "signal N".  A shell sees 128+N both for a death by
# signal N and for an exit with status 128+N -- and kvmm exits with odd
# statuses up to 255 on purpose (the guest's debug-exit value), so the tests
# need this to tell a crash from a guest's exit.  No STATUSFILE afterwards
# means the wrapper itself was killed (by timeout's SIGKILL: a hang).
use strict;
use warnings;
use POSIX ();

my $file = shift @ARGV;
my $pid = fork();
die "status_wrap: fork: $!\n" unless defined $pid;
if ($pid == 0) {
	exec { $ARGV[0] } @ARGV or do { print STDERR "status_wrap: exec $ARGV[0]: $!\n"; POSIX::_exit(127); };
}
# Pass on the signals `timeout` (or a user) sends to us alone.
for my $sig (qw(TERM INT HUP QUIT)) {
	$SIG{$sig} = sub { kill $sig, $pid; };
}
my $r;
do { $r = waitpid($pid, 0); } while ($r == -1 && $!{EINTR});
my $status = $?;
open(my $h, '>', $file) or die "status_wrap: $file: $!\n";
if ($status & 127) {
	print $h "signal ", ($status & 127), "\n";
	close $h;
	exit 255;
}
print $h "exit ", ($status >> 8), "\n";
close $h;
exit($status >> 8);
