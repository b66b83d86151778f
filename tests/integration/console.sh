#!/bin/bash
# console.sh KVMM GUEST MODE
#
# Where the UART's output goes:
#   none   --console none: nothing of the guest's on stdout, the guest still
#          runs to its end (status 1)
#   file   --console FILE: the guest's lines in FILE, not on stdout
#   stdio  --console stdio: on stdout
source "$(dirname "$0")/lib.sh"

KVMM=$1 GUEST=$2 MODE=$3
require_file "$KVMM"
require_file "$GUEST"
require_kvm

cmdline="tests=cmdline,memmap"
case $MODE in
none)
	run_kvmm console run --kernel "$GUEST" --cmdline "$cmdline" --console none
	check_status 1
	! grep -q 'RESULT' "$OUT" || fail "guest output on stdout with --console none"
	;;
file)
	run_kvmm console run --kernel "$GUEST" --cmdline "$cmdline" --console "$TMP/console.log"
	check_no_hang_no_signal
	[ -f "$TMP/console.log" ] || fail "--console FILE created no file"
	! grep -q 'RESULT' "$OUT" || fail "guest output on stdout with --console FILE"
	OUT=$TMP/console.log
	check_guest cmdline memmap
	check_status 1
	;;
stdio)
	run_kvmm console run --kernel "$GUEST" --cmdline "$cmdline" --console stdio
	check_no_hang_no_signal
	check_guest cmdline memmap
	check_status 1
	;;
*)
	echo "unknown mode $MODE"
	exit 2
	;;
esac
pass "console $MODE"
