#!/usr/bin/env bash
# Boot the default guest: Debian's cloud kernel with the busybox initramfs
# (scripts/guest-kernel.sh, scripts/guest-initramfs.sh) to an interactive
# shell on the terminal.  --accel auto runs it under KVM where the host can,
# and on kvmm's software CPU otherwise (on PVM hosts, or without /dev/kvm).
# `poweroff -f` in the guest, or Ctrl-A x, ends it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}

kernel=$(scripts/guest-kernel.sh | tail -n 1)
initrd=$(scripts/guest-initramfs.sh | tail -n 1)
echo "kvmm: booting Debian's kernel $(cat "$(dirname "$kernel")/version") with the busybox initramfs;" \
     "'poweroff -f' or Ctrl-A x ends it" >&2
exec "$build/kvmm" run --accel auto --kernel "$kernel" --initrd "$initrd" --mem 512M --cpus 2 \
	--cmdline "console=ttyS0 panic=-1"
