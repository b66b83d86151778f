#!/usr/bin/env bash
# Boot the default guest: Debian's cloud kernel with the busybox initramfs
# (scripts/guest-kernel.sh, scripts/guest-initramfs.sh).  Where this host's
# KVM cannot run a stock Linux kernel (PVM) and the software CPU is not built
# yet, say so and boot kvmm's own test guest instead.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}

if [ -e /sys/module/kvm_pvm ] || [ ! -w /dev/kvm ]; then
	echo "kvmm: this host's /dev/kvm is PVM (kvm_pvm) or unusable: Debian's kernel needs" \
	     "--accel emu (kvmm's software CPU), which is not built yet." >&2
	echo "kvmm: booting kvmm's own test guest (tests/guests) under KVM instead." >&2
	exec "$build/kvmm" run --kernel "$build/tests/guests/basic.bzImage" --mem 256M --cpus 2 \
		--cmdline "expect_cpus=2 expect_mem=256M"
fi

kernel=$(scripts/guest-kernel.sh | tail -n 1)
initrd=$(scripts/guest-initramfs.sh | tail -n 1)
exec "$build/kvmm" run --kernel "$kernel" --initrd "$initrd" --mem 512M --cpus 2 \
	--cmdline "console=ttyS0 panic=-1"
