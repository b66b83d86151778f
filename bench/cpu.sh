#!/usr/bin/env bash
# bench/cpu.sh — CPU-bound guest work on the software CPU: busybox sha256sum of 64 MiB
# (zeroes from /dev/zero, so no I/O device is involved) inside Debian's kernel + the busybox
# initramfs, timed by the guest's own clock, under kvmm --accel emu and QEMU TCG, and the same
# sha256sum natively on the host.  Not a test: it prints the figures and ratios.
#
# Usage: bench/cpu.sh [--mib N]     (default 64)
# Environment: BUILD (build dir, default build), QEMU (default qemu-system-x86_64).
# CPU models: kvmm presents its own AMD family 0Fh model ("kvmm virtual CPU", SSE..SSSE3);
# QEMU runs -cpu max (TCG's full feature set, so busybox may pick other code paths).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD:-$repo/build}
qemu=${QEMU:-qemu-system-x86_64}
mib=64
[ "${1:-}" = --mib ] && mib=${2:?--mib needs a number}

kernel=$("$repo/scripts/guest-kernel.sh" | tail -n 1)
initrd=$("$repo/scripts/guest-initramfs.sh" | tail -n 1)
cmdline="console=ttyS0 panic=-1 quiet kvmm.batch"

python3 - "$build/kvmm" "$qemu" "$kernel" "$initrd" "$cmdline" "$mib" <<'PY'
import os, re, select, subprocess, sys, time
kvmm, qemu, kernel, initrd, cmdline, mib = sys.argv[1:7]
mib = int(mib)
# The guest times the work itself (busybox date +%s%N is not available; /proc/uptime
# has 10 ms resolution, enough for seconds of work).
work = (f"read a b < /proc/uptime; dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | sha256sum; "
        "read c d < /proc/uptime; echo ELAPSED $a $c\npoweroff -f\n")

def run(name, argv):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = b""
    deadline = time.monotonic() + 900
    sent = False
    while p.poll() is None and time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 1.0)
        if r:
            data = os.read(p.stdout.fileno(), 65536)
            if not data:
                break
            out += data
        if not sent and b"KVMM-INIT-OK" in out:
            p.stdin.write(work.encode()); p.stdin.flush(); sent = True
    if p.poll() is None:
        p.kill()
    m = re.search(rb"ELAPSED ([0-9.]+) ([0-9.]+)", out)
    if not m:
        print(f"{name:14s} failed: no result on the console")
        return None
    return float(m.group(2)) - float(m.group(1))

t0 = time.monotonic()
subprocess.run(f"dd if=/dev/zero bs=1048576 count={mib} 2>/dev/null | sha256sum >/dev/null", shell=True)
native = time.monotonic() - t0
emu = run("kvmm-emu", [kvmm, "run", "--accel", "emu", "--kernel", kernel, "--initrd", initrd,
                       "--mem", "512M", "--cmdline", cmdline])
tcg = run("qemu-tcg-q35", [qemu, "-accel", "tcg", "-cpu", "max", "-M", "q35", "-m", "512M", "-display", "none",
                           "-serial", "stdio", "-monitor", "none", "-no-reboot", "-kernel", kernel,
                           "-initrd", initrd, "-append", cmdline])
print(f"sha256sum of {mib} MiB (guest time by /proc/uptime, host time for native)")
print(f"{'native host':14s} {native:8.2f} s")
for name, t in (("kvmm-emu", emu), ("qemu-tcg-q35", tcg)):
    if t is not None:
        print(f"{name:14s} {t:8.2f} s   {t / native:6.1f}x native")
if emu and tcg:
    print(f"kvmm-emu / qemu-tcg = {emu / tcg:.2f}")
PY
