#!/bin/bash
# trace.sh KVMM BZIMAGE MODE
#
# --trace / --trace-file (kvmm run --help):
#   exc      software CPU, guest ends with an invalid opcode (action=ud):
#            the trace file has an "exc cpu0 vec=6 #UD ..." line, and the
#            guest's status (253: unexpected exception) is unchanged
#   insn     software CPU, --trace=insn,int,exc: one line per instruction,
#            the first at the 64-bit entry 0x100200 with its disassembly
#   default  without --trace-file the trace goes to ./kvmm-trace.log
#   kvm      under KVM: one warning line saying tracing is not available,
#            the guest still runs (status 1)
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1") GUEST=$(realpath "$2") MODE=$3
require_file "$KVMM"
require_file "$GUEST"
T=$TMP/trace.log

case $MODE in
exc)
	run_kvmm exc run --accel emu --console none --trace exc --trace-file "$T" \
		--kernel "$GUEST" --cmdline "tests=cmdline action=ud"
	check_status 253
	grep -q '^exc cpu0 vec=6 #UD cs=0x0010 rip=0x' "$T" ||
		fail "no #UD line in the trace: $(head -c 400 "$T")"
	! grep -q '^insn' "$T" || fail "instructions traced without --trace=insn"
	pass "--trace=exc: $(grep -m1 '#UD' "$T")"
	;;
insn)
	run_kvmm insn run --accel emu --console none --trace insn,int,exc --trace-file "$T" \
		--kernel "$GUEST" --cmdline "tests=cmdline"
	check_status 1
	head -n 1 "$T" | grep -q '^insn cpu0 0010:0000000000100200 [0-9a-f ]* *[a-z]' ||
		fail "first trace line: $(head -n 1 "$T")"
	n=$(grep -c '^insn' "$T")
	[ "$n" -gt 1000 ] || fail "only $n instructions traced"
	pass "--trace=insn,int,exc: $n instructions; first: $(head -n 1 "$T")"
	;;
default)
	cd "$TMP"
	run_kvmm default run --accel emu --console none --trace exc \
		--kernel "$GUEST" --cmdline "tests=cmdline action=ud"
	check_status 253
	grep -q '#UD' "$TMP/kvmm-trace.log" || fail "no #UD line in ./kvmm-trace.log"
	pass "--trace without --trace-file writes ./kvmm-trace.log"
	;;
kvm)
	require_kvm
	run_kvmm kvm run --accel kvm --console none --trace exc --trace-file "$T" \
		--kernel "$GUEST" --cmdline "tests=cmdline"
	check_status 1
	[ "$(grep -c 'trace.*not available under KVM' "$ERR")" = 1 ] ||
		fail "expected one 'not available under KVM' warning"
	pass "--trace under KVM: $(grep 'not available' "$ERR")"
	;;
*)
	fail "unknown mode $MODE"
	;;
esac
