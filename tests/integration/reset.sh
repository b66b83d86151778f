#!/bin/bash
# reset.sh KVMM GUEST ACTION [REBOOT]
#
# The guest passes its checks, then ends itself another way than the
# debug-exit port (the guest's action= option):
#   triple  a triple fault (empty IDT, ud2)
#   cf9     reset through port 0xcf9
#   kbd     reset through the i8042 (0xfe to port 0x64)
#   s5      ACPI power-off: SLP_TYP of \_S5 and SLP_EN to PM1a_CNT
# With --reboot=exit (default here) kvmm must then exit by itself: no hang,
# no signal, the guest must not report that it is still running, and the
# status must be the one `kvmm run --help` documents: 0 for a reset or a
# power-off, 4 for a crash (the triple fault).
# With REBOOT=restart a reset must boot the guest again: the test watches
# for a second boot banner and stops kvmm itself.
source "$(dirname "$0")/lib.sh"

KVMM=$1 GUEST=$2 ACTION=$3 REBOOT=${4:-exit}
require_file "$KVMM"
require_file "$GUEST"
require_kvm

if [ "$REBOOT" = restart ]; then
	KVMM_TIMEOUT=15
	run_kvmm reset run --kernel "$GUEST" --cmdline "tests=none action=$ACTION" --console stdio --reboot=restart
	boots=$(grep -c '^kvmm test guest' "$OUT" || true)
	[ "$boots" -ge 2 ] || { check_no_hang_no_signal; fail "booted $boots time(s) with --reboot=restart, expected >= 2"; }
	pass "$ACTION with --reboot=restart: $boots boots in ${KVMM_TIMEOUT} s (status $RC)"
fi

run_kvmm reset run --kernel "$GUEST" --cmdline "tests=cmdline action=$ACTION" --console stdio --reboot=exit
check_no_hang_no_signal
grep -q '^INFO action' "$OUT" || fail "the guest never reached its action"
! grep -q '^FAIL' "$OUT" || fail "the guest reported: $(grep '^FAIL' "$OUT" | head -n 3 | tr '\n' ';')"
want=0
[ "$ACTION" = triple ] && want=4
check_status "$want"
pass "$ACTION with --reboot=exit: kvmm exited with status $RC, stderr: $(head -c 300 "$ERR" | tr '\n' ' ')"
