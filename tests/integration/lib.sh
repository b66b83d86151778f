# lib.sh - helpers shared by kvmm's integration tests (sourced, not run).
#
# The tests are bash scripts that boot the freestanding guests of
# tests/guests (or feed kvmm bad input) and check what comes out:
#   - the exit status: a guest that writes v to port 0xf4 makes kvmm exit
#     with (v << 1) | 1, so 1 means "the guest found nothing wrong";
#   - the guest's UART output on stdout: "PASS <check>", "FAIL <check>:
#     reason", "SKIP <check>: reason", "RESULT pass=P fail=F skip=S";
#   - for bad input: a non-zero status and exactly one line on stderr,
#     starting with "kvmm:".
# A test prints why it failed (command, status, stderr, guest output) and
# exits 1; 77 is meson's "skipped" (printed reason first: "SKIP: ..."),
# 0 is a pass.  Every kvmm run is bounded by `timeout` (KVMM_TIMEOUT, 60 s):
# a hang is a failure, never a stuck test suite.

set -euo pipefail

KVMM_TIMEOUT=${KVMM_TIMEOUT:-60}
LIBDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kvmm-it.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Results of the last run: stdout and stderr files, shell status, how the
# process ended ("exit N", "signal N", "killed" by the timeout, or "unknown"
# without perl), and the command for the failure report.
OUT= ERR= RC= HOW= CMD=
GUARD=()

skip() {
	echo "SKIP: $*"
	exit 77
}

# fail MESSAGE: print the last kvmm run's details, then the message.
fail() {
	if [ -n "$CMD" ]; then
		echo "--- command: $CMD"
		echo "--- exit status: $RC$(describe_status)"
		echo "--- stderr:"
		sed -n '1,40p' "$ERR" 2>/dev/null || true
		echo "--- stdout (last 80 lines):"
		tail -n 80 "$OUT" 2>/dev/null | tr -d '\r' || true
		echo "---"
	fi
	echo "FAIL: $*"
	exit 1
}

pass() {
	echo "PASS: $*"
	exit 0
}

describe_status() {
	case $HOW in
	killed) echo " (killed after the ${KVMM_TIMEOUT} s timeout)" ;;
	signal*) echo " (died of $HOW)" ;;
	*)
		if [ "$RC" = 124 ]; then
			echo " (timed out after ${KVMM_TIMEOUT} s)"
		elif [ $((RC & 1)) = 1 ]; then
			echo " (guest debug-exit value $((RC >> 1)))"
		fi
		;;
	esac
}

require_file() {
	[ -e "$1" ] || fail "missing $1 (not built?)"
}

# Skip unless /dev/kvm exists and this user can open it read-write.
require_kvm() {
	[ -e /dev/kvm ] || skip "/dev/kvm not usable: it does not exist"
	if ! (exec 3<>/dev/kvm) 2>/dev/null; then
		skip "/dev/kvm not usable: cannot open it read-write (permissions?)"
	fi
}

# PVM (kvm_pvm) serves /dev/kvm here instead of VT-x/AMD-V.
is_pvm() {
	[ -d /sys/module/kvm_pvm ]
}

# begin_run NAME [--foreground]: set OUT, ERR and GUARD, the command prefix
# that bounds a run in time (timeout) and records how it ended
# (status_wrap.pl).  --foreground keeps the command in the terminal's
# foreground process group (see timeout(1)), as an interactive user runs it.
begin_run() {
	local name=$1 fg=()
	[ "${2:-}" = --foreground ] && fg=(--foreground)
	OUT=$TMP/$name.out
	ERR=$TMP/$name.err
	STATUS_FILE=$TMP/$name.status
	rm -f "$STATUS_FILE"
	GUARD=(timeout "${fg[@]}" -k 5 "$KVMM_TIMEOUT")
	if command -v perl >/dev/null; then
		GUARD+=(perl "$LIBDIR/status_wrap.pl" "$STATUS_FILE")
	fi
}

end_run() {
	if ! command -v perl >/dev/null; then
		HOW=unknown
	elif [ -f "$STATUS_FILE" ]; then
		HOW=$(cat "$STATUS_FILE")
	else
		HOW=killed
	fi
}

# run_kvmm NAME ARGS...: run "$KVMM ARGS..." with stdin from $KVMM_STDIN
# (default /dev/null); sets OUT, ERR (files), RC, HOW and CMD.
run_kvmm() {
	local name=$1
	shift
	begin_run "$name"
	CMD="$KVMM $*"
	set +e
	"${GUARD[@]}" "$KVMM" "$@" >"$OUT" 2>"$ERR" <"${KVMM_STDIN:-/dev/null}"
	RC=$?
	set -e
	end_run
}

# The run must not have hung or died of a signal.
check_no_hang_no_signal() {
	if [ "$RC" = 124 ] || [ "$HOW" = killed ]; then
		fail "kvmm hung: still running after the ${KVMM_TIMEOUT} s timeout"
	fi
	case $HOW in
	signal*) fail "kvmm died of $HOW" ;;
	unknown) [ "$RC" -le 128 ] || [ $((RC & 1)) = 1 ] || fail "kvmm died of signal $((RC - 128))?" ;;
	esac
}

check_status() {
	local want=$1
	check_no_hang_no_signal
	[ "$RC" = "$want" ] || fail "exit status $RC, expected $want"
}

# check_guest CHECK...: the guest printed RESULT with no FAIL line, and a
# PASS line for every CHECK.  SKIP lines are allowed (the caller decides).
check_guest() {
	local clean=$TMP/guest.txt t
	tr -d '\r' <"$OUT" >"$clean"
	grep -q '^RESULT ' "$clean" || fail "the guest printed no RESULT line"
	if grep -q '^FAIL' "$clean"; then
		fail "the guest reported: $(grep '^FAIL' "$clean" | head -n 5 | tr '\n' ';')"
	fi
	for t in "$@"; do
		grep -q "^PASS $t\\(:\\|\$\\)" "$clean" || fail "the guest printed no 'PASS $t' line"
	done
}

# An initrd with a known head and random content; prints "SIZE CKSUM".
make_initrd() {
	local f=$1 n=$2
	{ printf 'KVMMINITRD'; head -c "$n" /dev/urandom; } >"$f"
	echo "$(stat -c %s "$f") $(cksum <"$f" | cut -d' ' -f1)"
}

# The guest lines worth showing in a passing test's log.
show_guest_summary() {
	tr -d '\r' <"$OUT" | grep -E '^(PASS|SKIP|RESULT|INFO smp)' || true
}
