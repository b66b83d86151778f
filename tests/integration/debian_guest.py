#!/usr/bin/env python3
"""Boot Debian's cloud kernel with the test initramfs under kvmm and drive its
shell: wait for the init marker, run commands whose output is checked against
the host, power off, and check kvmm's exit status.

usage: debian_guest.py KVMM ACCEL CPUS

Exit 0 on success, 77 (skipped, with the reason on stdout) when the guest
assets cannot be built or the accelerator cannot run a stock kernel here,
1 on failure.  Commands are sent only after the marker: a UART drops what
arrives while the kernel sets it up."""
import hashlib
import os
import sys

from guest_session import Guest, asset, check_accel, fail, results

kvmm, accel, cpus = sys.argv[1], sys.argv[2], int(sys.argv[3])
BOOT_TIMEOUT = 600 if accel == "emu" else 120

check_accel(accel)
kernel = asset("guest-kernel.sh")
initrd = asset("guest-initramfs.sh")
cache = os.path.dirname(initrd)
with open(os.path.join(cache, "sample.bin"), "rb") as f:
    sample_sha = hashlib.sha256(f.read()).hexdigest()

g = Guest([kvmm, "run", "--accel", accel, "--kernel", kernel, "--initrd", initrd,
           "--mem", "512M", "--cpus", str(cpus),
           "--cmdline", "console=ttyS0 panic=-1 quiet kvmm.batch"])
boot_s = g.wait_marker(BOOT_TIMEOUT)
got = results(g.run(
    "echo R1 $(uname -r)\n"
    "echo R2 $(nproc)\n"
    "echo R3 $(awk 'BEGIN { s = 0; for (i = 1; i <= 1000; i++) s += i * i; printf \"%d %.3f\", s, 2.5 * 4.1 }')\n"
    "echo R4 $(sha256sum /data/sample.bin)\n"
    "d=/sys/bus/pci/devices/0000:00:00.0; echo R5 $(cat $d/vendor $d/device $d/class)"
    " $(grep -c 'PCI MMCONFIG 0000 \\[bus 00-00\\]' /proc/iomem)\n"))
status = g.poweroff()

expect_kver = open(os.path.join(os.path.dirname(kernel), "version")).read().strip()
checks = [
    ("uname -r", got.get("R1", ""), expect_kver),
    ("nproc", got.get("R2", ""), str(cpus)),
    ("awk arithmetic", got.get("R3", ""), "333833500 10.250"),
    ("sha256sum /data/sample.bin", got.get("R4", "").split(" ")[0], sample_sha),
    # The PCI root bridge from the DSDT, ECAM in use (MCFG reserved by PNP0C02)
    ("PCI host bridge 00:00.0 and MMCONFIG", got.get("R5", ""),
     "0x1b36 0x0008 0x060000 1"),
]
bad = [f"{name}: got {v!r}, want {w!r}" for name, v, w in checks if v != w]
if bad:
    fail("; ".join(bad), g.out)
if status != 0:
    fail(f"kvmm exited with status {status} after poweroff -f, want 0 (stderr: {g.stderr()})", g.out)
print(f"PASS: Debian {expect_kver} under --accel {accel} with {cpus} vCPU(s): "
      f"init marker after {boot_s:.1f} s, commands checked, powered off with status 0")
