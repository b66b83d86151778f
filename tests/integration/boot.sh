#!/bin/bash
# boot.sh KVMM GUEST FORMAT CPUS MEM [ACCEL]
#
# Boot a test guest (multiboot.elf, pvh.elf, basic.bzImage, ...) with CPUS
# vCPUs, MEM of RAM and a random initrd, and check that every one of the
# guest's checks passes: the format's boot information, the command line,
# the memory map (total RAM close to MEM, RAM above 4 GiB when MEM > 4G),
# the initrd's size and cksum, ACPI tables, the MADT's CPU count, IOAPIC,
# LAPIC, starting the APs with INIT-SIPI-SIPI (CPUS > 1) and a write/read
# probe of all RAM; kvmm must exit with status 1 (guest exit value 0).
#
# On a PVM host (kvm_pvm) the SMP check is made optional: if no AP starts
# there, the test is skipped (exit 77) with the guest's reason, after all
# the other checks passed.  MEM is passed to --mem as given (a bare number
# is MiB for kvmm).  ACCEL emu: skipped while kvmm has no software CPU.
source "$(dirname "$0")/lib.sh"

KVMM=$1 GUEST=$2 FORMAT=$3 CPUS=$4 MEM=$5 ACCEL=${6:-kvm}
require_file "$KVMM"
require_file "$GUEST"
[ "$ACCEL" = emu ] || require_kvm

if [ "$ACCEL" = emu ]; then
	run_kvmm probe run --accel emu --kernel "$GUEST" --cmdline "tests=none"
	if [ "$RC" = 2 ] && grep -qi 'software CPU\|emu' "$ERR"; then
		skip "kvmm has no software CPU: $(head -n 1 "$ERR")"
	fi
fi

expect_mem=$MEM
[[ $MEM =~ ^[0-9]+$ ]] && expect_mem=${MEM}M
read -r size sum < <(make_initrd "$TMP/initrd.img" 100000)
cmdline="expect_cpus=$CPUS expect_mem=$expect_mem expect_rsdp=1"
cmdline+=" initrd_size=$size initrd_cksum=$sum initrd_head=KVMMINITRD"
if [ "$CPUS" -gt 1 ] && is_pvm; then
	cmdline+=" smp=optional"
fi

run_kvmm boot run --kernel "$GUEST" --initrd "$TMP/initrd.img" --cmdline "$cmdline" \
	--cpus "$CPUS" --mem "$MEM" --console stdio --accel "$ACCEL"
check_no_hang_no_signal
checks=(boot cmdline memmap initrd acpi madt ioapic lapic ram)
[ "$CPUS" -gt 1 ] && checks+=(smp)
check_guest "${checks[@]}"
check_status 1
show_guest_summary
if grep -q '^SKIP smp' "$OUT"; then
	skip "$FORMAT with $CPUS vCPUs: $(grep '^SKIP smp' "$OUT" | tr -d '\r') (all other checks passed)"
fi
pass "$FORMAT, $CPUS vCPUs, $MEM, accel $ACCEL"
