#!/bin/bash
# qemu_reference.sh ACCEL GUEST FORMAT CPUS MEM [MACHINE]
#
# The test guests under QEMU, the reference VMM: proves the guests' own
# checks right, independently of kvmm.  ACCEL is tcg (-cpu max) or kvm
# (-cpu host,-arch-capabilities, as this host's PVM needs); MACHINE is q35
# (SeaBIOS, default) or microvm (qboot).  QEMU boots a bzImage through its
# real-mode setup code (BIOS path) and passes no boot_params.acpi_rsdp_addr,
# so expect_rsdp is not asked for.
source "$(dirname "$0")/lib.sh"

ACCEL=$1 GUEST=$2 FORMAT=$3 CPUS=$4 MEM=$5 MACHINE=${6:-q35}
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null || skip "$QEMU not installed"
require_file "$GUEST"
case $ACCEL in
kvm) require_kvm && accel=(-accel kvm -cpu host,-arch-capabilities) ;;
tcg) accel=(-accel tcg -cpu max) ;;
*) echo "unknown accel $ACCEL"; exit 2 ;;
esac

case $MACHINE in
q35) machine=(-M q35 -serial stdio) ;;
microvm) machine=(-M microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on -nodefaults -serial stdio) ;;
*) echo "unknown machine $MACHINE"; exit 2 ;;
esac

read -r size sum < <(make_initrd "$TMP/initrd.img" 100000)
cmdline="expect_cpus=$CPUS expect_mem=$MEM initrd_size=$size initrd_cksum=$sum initrd_head=KVMMINITRD"
KVMM=$QEMU
KVMM_TIMEOUT=120
run_kvmm qemu "${accel[@]}" "${machine[@]}" -m "$MEM" -smp "$CPUS" -nographic -no-reboot \
	-monitor none -display none -device isa-debug-exit,iobase=0xf4,iosize=4 \
	-kernel "$GUEST" -initrd "$TMP/initrd.img" -append "$cmdline"
check_no_hang_no_signal
checks=(boot cmdline memmap initrd acpi madt ioapic lapic ram)
[ "$CPUS" -gt 1 ] && checks+=(smp)
check_guest "${checks[@]}"
check_status 1
show_guest_summary
pass "QEMU $MACHINE $ACCEL: $FORMAT, $CPUS vCPUs, $MEM"
