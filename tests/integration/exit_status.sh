#!/bin/bash
# exit_status.sh KVMM CASE GUEST...
#
# The guest's debug-exit value reaches kvmm's exit status as (v << 1) | 1.
#   exit5       guest writes 5                 -> status 11
#   exit0       guest writes 0                 -> status 1
#   exit127     guest writes 127               -> status 255
#   trap        guest executes ud2; its IDT handler reports the #UD and
#               writes 0x7e                    -> status 253
#   minimal     minimal.bzImage: stdout is exactly "K\n", status 1
source "$(dirname "$0")/lib.sh"

KVMM=$1 CASE=$2
shift 2
require_file "$KVMM"
require_kvm

case $CASE in
exit5 | exit0 | exit127 | trap)
	for guest in "$@"; do
		require_file "$guest"
		case $CASE in
		exit5) args="tests=none exit=5" want=11 ;;
		exit0) args="tests=none exit=0" want=1 ;;
		exit127) args="tests=none exit=127" want=255 ;;
		trap) args="tests=none action=ud" want=253 ;;
		esac
		run_kvmm "$CASE" run --kernel "$guest" --cmdline "$args" --console stdio
		check_status "$want"
		if [ "$CASE" = trap ]; then
			grep -q '^FAIL exception: #UD' "$OUT" || fail "the guest's #UD report is missing"
		else
			grep -q '^RESULT ' "$OUT" || fail "the guest printed no RESULT line"
		fi
		echo "ok: $(basename "$guest") [$args] -> $RC"
	done
	;;
minimal)
	require_file "$1"
	run_kvmm minimal run --kernel "$1" --console stdio
	check_status 1
	[ "$(od -An -c "$OUT" | tr -d ' \n')" = 'K\n' ] ||
		fail "stdout is not exactly \"K\\n\": $(od -An -c "$OUT" | head -n 3)"
	;;
*)
	echo "unknown case $CASE"
	exit 2
	;;
esac
pass "$CASE"
