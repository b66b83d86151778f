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
import re
import select
import subprocess
import sys
import time

kvmm, accel, cpus = sys.argv[1], sys.argv[2], int(sys.argv[3])
top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOT_TIMEOUT = 600 if accel == "emu" else 120


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def fail(why, out=b""):
    print(f"FAIL: {why}")
    if out:
        print("--- console (last 3000 bytes) ---")
        print(out[-3000:].decode(errors="replace"))
    sys.exit(1)


if accel == "kvm":
    if os.path.exists("/sys/module/kvm_pvm"):
        skip("this host's /dev/kvm is PVM (kvm_pvm), which cannot run a stock Linux kernel")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        skip("/dev/kvm is missing or not accessible")


def asset(script):
    p = subprocess.run([os.path.join(top, "scripts", script)], capture_output=True, text=True)
    if p.returncode != 0 or not p.stdout.strip():
        skip(f"{script} could not build the guest asset: {p.stderr.strip().splitlines()[-1:]}")
    return p.stdout.strip().splitlines()[-1]


kernel = asset("guest-kernel.sh")
initrd = asset("guest-initramfs.sh")
cache = os.path.dirname(initrd)
with open(os.path.join(cache, "sample.bin"), "rb") as f:
    sample_sha = hashlib.sha256(f.read()).hexdigest()

cmd = [kvmm, "run", "--accel", accel, "--kernel", kernel, "--initrd", initrd,
       "--mem", "512M", "--cpus", str(cpus),
       "--cmdline", "console=ttyS0 panic=-1 quiet kvmm.batch"]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
out = b""
err = b""


def read_until(pattern, timeout):
    global out, err
    deadline = time.monotonic() + timeout
    while not re.search(pattern, out):
        left = deadline - time.monotonic()
        if left <= 0 or p.poll() is not None and not select.select([p.stdout], [], [], 0)[0]:
            return False
        r, _, _ = select.select([p.stdout, p.stderr], [], [], min(left, 1.0))
        for f in r:
            data = os.read(f.fileno(), 65536)
            if f is p.stdout:
                out += data
            else:
                err += data
    return True


t0 = time.monotonic()
if not read_until(rb"KVMM-INIT-OK", BOOT_TIMEOUT):
    p.kill()
    fail(f"no init marker within {BOOT_TIMEOUT} s (kvmm stderr: {err.decode(errors='replace').strip()})", out)
boot_s = time.monotonic() - t0
marker_at = len(out)

script = (
    "echo R1 $(uname -r)\n"
    "echo R2 $(nproc)\n"
    "echo R3 $(awk 'BEGIN { s = 0; for (i = 1; i <= 1000; i++) s += i * i; printf \"%d %.3f\", s, 2.5 * 4.1 }')\n"
    "echo R4 $(sha256sum /data/sample.bin)\n"
    "d=/sys/bus/pci/devices/0000:00:00.0; echo R5 $(cat $d/vendor $d/device $d/class)"
    " $(grep -c 'PCI MMCONFIG 0000 \\[bus 00-00\\]' /proc/iomem)\n"
    "echo DONE\n"
    "poweroff -f\n"
)
p.stdin.write(script.encode())
p.stdin.flush()
if not read_until(rb"DONE", 300):
    p.kill()
    fail("the shell did not answer the commands", out)
try:
    status = p.wait(timeout=120)
except subprocess.TimeoutExpired:
    p.kill()
    fail("poweroff -f did not end kvmm", out)

text = out[marker_at:].decode(errors="replace")
got = dict(re.findall(r"^(R\d) (.*?)\r?$", text, re.M))
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
bad = [f"{name}: got {g!r}, want {w!r}" for name, g, w in checks if g != w]
if bad:
    fail("; ".join(bad), out)
if status != 0:
    fail(f"kvmm exited with status {status} after poweroff -f, want 0 "
         f"(stderr: {err.decode(errors='replace').strip()})", out)
print(f"PASS: Debian {expect_kver} under --accel {accel} with {cpus} vCPU(s): "
      f"init marker after {boot_s:.1f} s, commands checked, powered off with status 0")
