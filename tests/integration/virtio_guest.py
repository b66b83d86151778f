#!/usr/bin/env python3
"""virtio end to end: Debian's kernel with the test initramfs, under the
default accelerator (--accel auto: the software CPU on PVM hosts), drives
kvmm's virtio devices with Linux's own drivers.

usage: virtio_guest.py KVMM disks|console

disks: three disks, found by their serials: alpha and charlie (cache=none)
on virtio-pci, bravo (read-only) on virtio-mmio.  Within a transport the
guest names them in command-line order; across transports Linux decides
(/init loads virtio_pci before virtio_mmio), so alpha is vda, charlie vdb and
bravo vdc, although bravo comes second on the command line.  Host data read
in the guest, guest data (written with conv=fsync) found in the host file
byte for byte, the fsync seen as an fdatasync, a read-only disk refusing
writes, /dev/hwrng; and a second kvmm refused the disk the first one holds.

console: the shell on hvc0 (--console virtio, virtio-mmio transport) and
virtio-rng on virtio-mmio.

Exit 0 pass, 77 skip (reason on stdout), 1 fail."""
import hashlib
import os
import re
import subprocess
import sys
import tempfile

from guest_session import Guest, asset, fail, results

kvmm, mode = sys.argv[1], sys.argv[2]
BOOT_TIMEOUT = 600
MiB = 1 << 20

kernel = asset("guest-kernel.sh")
initrd = asset("guest-initramfs.sh")
sample = open(os.path.join(os.path.dirname(initrd), "sample.bin"), "rb").read()
sample_sha = hashlib.sha256(sample).hexdigest()
base = [kvmm, "run", "--accel", "auto", "--kernel", kernel, "--initrd", initrd, "--mem", "512M"]


def check(checks, g):
    bad = [f"{name}: got {v!r}, want {w!r}" for name, v, w in checks if v != w]
    if bad:
        fail("; ".join(bad) + f" (kvmm stderr: {g.stderr()})", g.out)


def disks(tmp):
    a, b, c = (os.path.join(tmp, n) for n in ("a.img", "b.img", "c.img"))
    with open(a, "wb") as f:
        f.truncate(64 * MiB)
    pattern = hashlib.sha256(b"kvmm").digest() * (2 * MiB // 32)  # 2 MiB the host prepared
    with open(b, "wb") as f:
        f.write(pattern)
    with open(c, "wb") as f:
        f.truncate(8 * MiB)
    g = Guest(base + ["-v", "--cmdline", "console=ttyS0 panic=-1 quiet kvmm.batch",
                      "--disk", f"path={a},serial=alpha",
                      "--disk", f"path={b},readonly=on,serial=bravo,transport=mmio",
                      "--disk", f"path={c},serial=charlie,cache=none",
                      "--rng"])
    g.wait_marker(BOOT_TIMEOUT)

    # While the guest runs, the disk is locked: a second kvmm must refuse it
    # (before booting anything), and may still open it read-only.
    p = subprocess.run(base + ["--disk", f"path={a}", "--cmdline", "kvmm.poweroff"],
                       capture_output=True, text=True, timeout=60)
    locked = (p.returncode, "locked by another process" in p.stderr)

    text = g.run(
        "for d in vda vdb vdc; do echo R_$d $(cat /sys/block/$d/serial) $(cat /sys/block/$d/size)"
        " $(cat /sys/block/$d/ro) $(readlink /sys/block/$d | grep -o -e pci0000 -e LNRO0005); done\n"
        "echo RB $(sha256sum /dev/vdc)\n"
        "dd if=/dev/zero of=/dev/vdc bs=4096 count=1 2>/dev/null; echo RBW $?\n"
        "dd if=/data/sample.bin of=/dev/vda bs=64k conv=fsync 2>/dev/null; echo RAW $?\n"
        "echo 3 > /proc/sys/vm/drop_caches\n"
        "echo RA $(dd if=/dev/vda bs=64k count=16 2>/dev/null | sha256sum)\n"
        "dd if=/data/sample.bin of=/dev/vdb bs=4k seek=100 oflag=direct 2>/dev/null; echo RCW $?\n"
        "echo RC $(dd if=/dev/vdb bs=4k skip=100 count=256 iflag=direct 2>/dev/null | sha256sum)\n"
        "echo RNG $(cat /sys/class/misc/hw_random/rng_current)"
        " $(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \\n' | wc -c)\n")
    got = results(text)
    status = g.poweroff()
    with open(a, "rb") as f:
        host_a = hashlib.sha256(f.read(len(sample))).hexdigest()
    with open(c, "rb") as f:
        f.seek(100 * 4096)
        host_c = hashlib.sha256(f.read(len(sample))).hexdigest()
    m = re.search(r"a\.img: \d+ reads, (\d+) writes, (\d+) flushes \((\d+) fdatasyncs done\)", g.stderr())
    flushes = m and int(m.group(3)) >= 1
    check([
        ("vda: serial, 512-byte sectors, ro, transport", got.get("R_vda"), "alpha 131072 0 pci0000"),
        ("vdb", got.get("R_vdb"), "charlie 16384 0 pci0000"),
        ("vdc", got.get("R_vdc"), "bravo 4096 1 LNRO0005"),
        ("host data read in the guest (bravo)", (got.get("RB") or " ").split()[0],
         hashlib.sha256(pattern).hexdigest()),
        ("dd to the read-only bravo fails", got.get("RBW"), "1"),
        ("dd conv=fsync to vda", got.get("RAW"), "0"),
        ("vda read back in the guest", (got.get("RA") or " ").split()[0], sample_sha),
        ("guest data in the host file a.img", host_a, sample_sha),
        ("O_DIRECT write to charlie (cache=none)", got.get("RCW"), "0"),
        ("charlie read back in the guest", (got.get("RC") or " ").split()[0], sample_sha),
        ("guest data in the host file c.img", host_c, sample_sha),
        ("the guest's fsync reached fdatasync (kvmm -v disk statistics)", bool(flushes), True),
        ("virtio-rng: hw_random driver, 32 bytes", got.get("RNG"), "virtio_rng.0 64"),
        ("second kvmm on a.img: status 2, 'locked'", locked, (2, True)),
        ("poweroff status", status, 0),
    ], g)
    print("PASS: alpha, charlie (pci, cache=none) and bravo (mmio, read-only) by serial; data both ways "
          "byte for byte; fsync -> fdatasync; hwrng; second writer refused")


def console():
    g = Guest(base + ["--cmdline", "console=ttyS0 console=hvc0 panic=-1 quiet kvmm.batch",
                      "--console", "virtio", "--transport", "mmio", "--rng"])
    g.wait_marker(BOOT_TIMEOUT)
    got = results(g.run(
        "echo RTTY $(readlink /proc/self/fd/0) $(cat /sys/class/tty/hvc0/device/../modalias 2>/dev/null)\n"
        "echo RDEV $(for d in /sys/bus/virtio/devices/*; do cat $d/device; done | sort | tr '\\n' ' ')\n"
        "echo RNG $(dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -v -tx1 | tr -d ' \\n' | wc -c)\n"))
    status = g.poweroff()
    check([
        ("the shell's terminal", (got.get("RTTY") or "").split(" ")[0], "/dev/hvc0"),
        ("virtio device IDs (console 3, rng 4)", (got.get("RDEV") or "").strip(), "0x0003 0x0004"),
        ("/dev/hwrng over virtio-mmio", got.get("RNG"), "32"),
        ("poweroff status", status, 0),
    ], g)
    print("PASS: busybox shell on hvc0 through virtio-console (virtio-mmio), hwrng on virtio-mmio")


if mode == "disks":
    with tempfile.TemporaryDirectory(prefix="kvmm-virtio-") as tmp:
        disks(tmp)
elif mode == "console":
    console()
else:
    fail(f"unknown mode {mode}")
