#!/bin/bash
# stdin.sh KVMM GUEST MODE
#
# Whatever kvmm's stdin is, a guest that does not read the console runs to
# its end: kvmm must not block on, choke on or exit because of its input.
#   devnull    stdin is /dev/null (immediate EOF)
#   file       a regular file of about 1 MiB
#   pipe-eof   a pipe that delivers a few bytes and closes
#   pipe-busy  a pipe that never stops delivering (yes)
#   pipe-idle  a pipe that stays open and silent
#   tty        a pseudo-terminal (through script(1); skipped without it),
#              kvmm in the terminal's foreground process group as when a
#              user runs it
source "$(dirname "$0")/lib.sh"

KVMM=$1 GUEST=$2 MODE=$3
require_file "$KVMM"
require_file "$GUEST"
require_kvm

args=(run --kernel "$GUEST" --cmdline "tests=cmdline,memmap stdin=$MODE" --console stdio)
CMD="$KVMM ${args[*]} (stdin: $MODE)"
case $MODE in
devnull)
	run_kvmm stdin "${args[@]}"
	;;
file)
	head -c 400000 /dev/urandom | od -An -tx1 >"$TMP/input"
	KVMM_STDIN=$TMP/input run_kvmm stdin "${args[@]}"
	;;
pipe-eof | pipe-busy)
	begin_run stdin
	set +e
	if [ "$MODE" = pipe-eof ]; then
		printf 'hello\nworld\n' | "${GUARD[@]}" "$KVMM" "${args[@]}" >"$OUT" 2>"$ERR"
		RC=${PIPESTATUS[1]}
	else
		yes | "${GUARD[@]}" "$KVMM" "${args[@]}" >"$OUT" 2>"$ERR"
		RC=${PIPESTATUS[1]}
	fi
	set -e
	end_run
	;;
pipe-idle)
	mkfifo "$TMP/fifo"
	sleep $((KVMM_TIMEOUT + 10)) >"$TMP/fifo" &
	writer=$!
	begin_run stdin
	set +e
	"${GUARD[@]}" "$KVMM" "${args[@]}" >"$OUT" 2>"$ERR" <"$TMP/fifo"
	RC=$?
	set -e
	kill "$writer" 2>/dev/null || true
	end_run
	;;
tty)
	command -v script >/dev/null || skip "script(1) not installed, no pseudo-terminal to test with"
	begin_run stdin --foreground
	printf -v inner '%q ' "${GUARD[@]}" "$KVMM" "${args[@]}"
	set +e
	script -qec "$inner 2>$(printf '%q' "$ERR")" /dev/null >"$OUT" </dev/null
	RC=$?
	set -e
	end_run
	;;
*)
	echo "unknown mode $MODE"
	exit 2
	;;
esac
check_no_hang_no_signal
check_guest cmdline memmap
check_status 1
pass "stdin $MODE"
