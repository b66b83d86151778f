#!/bin/bash
# emu_guests.sh KVMM CPUS GUEST...
#
# kvmm's own test guests (multiboot.elf, pvh.elf, pvh32.elf, basic.bzImage,
# ...; the format is taken from the file name) on the software CPU
# (--accel emu) with CPUS vCPUs: each must pass every check boot.sh asks
# for (boot information, command line, memory map, initrd, ACPI, MADT,
# IOAPIC, LAPIC, RAM probe, and with CPUS > 1 starting the APs with
# INIT-SIPI-SIPI) and make kvmm exit with status 1 (guest exit value 0).
# Then the software CPU's own paths: a debug-exit value reaches the exit
# status, and a triple fault (empty IDT, ud2) is a crash report and
# status 4.  No /dev/kvm needed.
#
# Skipped (77) when kvmm was built without the software CPU.  The software
# CPU is an interpreter, so the time limit is larger than KVM's
# (KVMM_TIMEOUT, default 240 s per run).
source "$(dirname "$0")/lib.sh"

KVMM_TIMEOUT=${KVMM_TIMEOUT_EMU:-240}
KVMM=$1 CPUS=$2
shift 2
require_file "$KVMM"
[ $# -gt 0 ] || fail "no guest given"
for g in "$@"; do require_file "$g"; done

run_kvmm probe run --accel emu --kernel "$1" --cmdline "tests=none" --console stdio
if [ "$RC" = 2 ] && grep -qi 'software CPU.*not\|not part of this build' "$ERR"; then
	skip "kvmm has no software CPU: $(head -n 1 "$ERR")"
fi

read -r size sum < <(make_initrd "$TMP/initrd.img" 100000)
cmdline="expect_cpus=$CPUS expect_mem=128M expect_rsdp=1"
cmdline+=" initrd_size=$size initrd_cksum=$sum initrd_head=KVMMINITRD"
checks=(boot cmdline memmap initrd acpi madt ioapic lapic ram)
[ "$CPUS" -gt 1 ] && checks+=(smp)

summary=()
for g in "$@"; do
	name=$(basename "$g")
	start=$(date +%s)
	run_kvmm "boot-$name" run --accel emu --kernel "$g" --initrd "$TMP/initrd.img" \
		--cmdline "$cmdline" --cpus "$CPUS" --mem 128M --console stdio
	check_no_hang_no_signal
	check_guest "${checks[@]}"
	check_status 1
	echo "--- $name, $CPUS vCPU(s): $(($(date +%s) - start)) s"
	show_guest_summary
	summary+=("$name")
done

# The debug-exit value: status (5 << 1) | 1.
run_kvmm exit5 run --accel emu --kernel "$1" --cmdline "tests=none exit=5" \
	--cpus "$CPUS" --console stdio
check_status 11

# A triple fault: a crash report naming the vCPU and RIP, status 4.
run_kvmm triple run --accel emu --kernel "$1" --cmdline "tests=cmdline action=triple" \
	--cpus "$CPUS" --console stdio
check_no_hang_no_signal
grep -q '^INFO action' "$OUT" || fail "the guest never reached its action"
check_status 4
grep -q 'guest crashed: vCPU 0: triple fault.*RIP 0x' "$ERR" ||
	fail "no crash report naming vCPU 0, the triple fault and RIP on stderr"

pass "accel emu, $CPUS vCPU(s): ${summary[*]}, debug exit, triple fault"
