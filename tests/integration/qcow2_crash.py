#!/usr/bin/env python3
"""qcow2 crash test: SIGKILL kvmm in the middle of a guest's write storm,
again and again on the same images, and check after every kill that the
image is consistent and holds every write the guest saw flushed.

usage: qcow2_crash.py KVMM [ITERATIONS [SEED]]   (default 16, a random seed)

Two images of 32 MiB with 4 KiB clusters (many allocations: a new data
cluster for every record, new l2_tables every 2 MiB, refcount blocks as
the file grows), kept across iterations: one with a raw backing file (a
deterministic pattern: every allocation copies the rest of the cluster
from the base) and one without.  Iterations alternate between them.  Each
boots the default guest (--accel auto) with the image, and the guest runs

    printf 'KVMMREC %08d' $n | dd of=/dev/vda bs=512 count=1 conv=sync,fsync ...

for n = 1, 2, ... (continuing from the previous iteration), record n at
sector (n % 8) of cluster (n * 5167) mod 8192, a permutation, so that no
two records share a cluster; it prints "F<n>" only after dd's fsync
returned (a virtio-blk flush).  After a random delay (seeded; the seed is
printed, pass it back to replay the same kill moments) the host sends
kvmm SIGKILL, then wants:

  - `qemu-img check` exit 0 or 3 (leaked clusters only), never 2
    (corruption) or 1;
  - the image read back through `qemu-img convert -O raw` (backing file
    applied) to hold, for every n the guest printed in any iteration so
    far, record n at its place;
  - every other 512-byte sector to be what it was (the base pattern, or
    zeros) or a whole record at its own place: no torn or misplaced data.

What this cannot see: SIGKILL ends the process, not the host, so the
page cache keeps every pwrite kvmm made; a missing fdatasync (a flush
acknowledged before the data is on the platter) passes here.  Power-cut
ordering is tested below the block layer (a test file standing in for the
image's writes and syncs).  What it does see: metadata written in an order
that a kill between two writes leaves inconsistent (check exit 2), writes
acknowledged before they reached the file, lost or misplaced records,
torn clusters, and an image kvmm cannot open again after a kill.

Exit 0 pass, 77 skip (reason on stdout), 1 fail."""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from guest_session import Guest, asset, fail, skip

kvmm = sys.argv[1]
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 16
seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.SystemRandom().randrange(1 << 32)
BOOT_TIMEOUT = 300
MiB = 1 << 20
SIZE = 32 * MiB
CLUSTER = 4096
SLOTS = SIZE // CLUSTER
STRIDE = 5167                  # odd: n -> n * STRIDE mod SLOTS is a permutation

if not shutil.which("qemu-img"):
    skip("qemu-img is not installed (qemu-utils)")
kernel = asset("guest-kernel.sh")
initrd = asset("guest-initramfs.sh")
print(f"seed {seed} (replay: qcow2_crash.py KVMM {iterations} {seed})", flush=True)
rng = random.Random(seed)


def offset(n):
    return (n * STRIDE % SLOTS) * CLUSTER + (n % 8) * 512


def record(n):
    return (b"KVMMREC %08d" % n).ljust(512, b"\0")


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def drain(g):
    """Everything kvmm wrote before it died."""
    g.p.wait(timeout=30)
    for f, attr in ((g.p.stdout, "out"), (g.p.stderr, "err")):
        data = f.read() or b""
        setattr(g, attr, getattr(g, attr) + data)


class Image:
    def __init__(self, tmp, name, backing):
        self.path = os.path.join(tmp, name + ".qcow2")
        self.name = name
        self.acked = set()           # records the guest printed as flushed
        self.next = 1                # first record of the next iteration
        self.kills = 0
        cmd = [kvmm, "img", "create", "-f", "qcow2", "-o", f"cluster_size={CLUSTER}"]
        if backing:
            base = os.path.join(tmp, name + "-base.raw")
            self.orig = hashlib.shake_256(b"kvmm crash base").digest(SIZE)
            with open(base, "wb") as f:
                f.write(self.orig)
            cmd += ["-b", base, "-F", "raw", self.path]
        else:
            self.orig = bytes(SIZE)
            cmd += [self.path, str(SIZE)]
        p = run(cmd)
        if p.returncode:
            fail(f"{' '.join(cmd)}: status {p.returncode}: {p.stderr.strip()}")
        self.raw = os.path.join(tmp, name + "-readback.raw")

    def verify(self, it, delay):
        where = f"iteration {it} ({self.name}, killed {delay:.2f} s into the storm, seed {seed})"
        p = run(["qemu-img", "check", self.path])
        if p.returncode not in (0, 3):
            fail(f"{where}: qemu-img check exit {p.returncode} (0 or 3 wanted)\n{p.stdout}{p.stderr}")
        leaks = p.returncode == 3
        if os.path.exists(self.raw):
            os.unlink(self.raw)
        p = run(["qemu-img", "convert", "-O", "raw", self.path, self.raw])
        if p.returncode:
            fail(f"{where}: qemu-img convert exit {p.returncode}: {p.stderr.strip()}")
        with open(self.raw, "rb") as f:
            data = f.read()
        if len(data) != SIZE:
            fail(f"{where}: the image reads back {len(data)} bytes, {SIZE} wanted")
        lost = sorted(n for n in self.acked if data[offset(n):offset(n) + 512] != record(n))
        if lost:
            fail(f"{where}: {len(lost)} of {len(self.acked)} records the guest saw flushed are "
                 f"missing, first {lost[:10]} (record {lost[0]} at {offset(lost[0])} holds "
                 f"{data[offset(lost[0]):offset(lost[0]) + 24]!r})")
        present = 0
        for s in range(0, SIZE, 512):
            sec = data[s:s + 512]
            if sec == self.orig[s:s + 512]:
                continue
            m = re.match(rb"KVMMREC (\d{8})", sec)
            if not m or offset(int(m.group(1))) != s or sec != record(int(m.group(1))):
                fail(f"{where}: sector at {s} is neither the original data nor its record: "
                     f"{sec[:32]!r}")
            present += 1
        return leaks, present


def iteration(it, img):
    g = Guest([kvmm, "run", "--accel", "auto", "--kernel", kernel, "--initrd", initrd,
               "--mem", "256M", "--cmdline", "console=ttyS0 panic=-1 quiet kvmm.batch",
               "--disk", f"path={img.path},serial=crash"])
    boot = g.wait_marker(BOOT_TIMEOUT)
    start = img.next
    g.send(f"n={start}; while [ $n -lt {SLOTS} ]; do"
           f" printf 'KVMMREC %08d' $n | dd of=/dev/vda bs=512 count=1 conv=sync,fsync"
           f" oflag=seek_bytes seek=$(( (n * {STRIDE} % {SLOTS}) * {CLUSTER} + n % 8 * 512 ))"
           f" 2>/dev/null && echo F$n; n=$((n + 1)); done; echo STORM-END\n")
    delay = rng.uniform(0.3, 4.0)
    if g.read_until(rb"STORM-END", delay):
        fail(f"iteration {it}: the storm ended before the kill (slots exhausted?)", g.out)
    if g.p.poll() is not None:
        drain(g)
        fail(f"iteration {it}: kvmm exited by itself, status {g.p.returncode} "
             f"(stderr: {g.stderr()})", g.out)
    os.kill(g.p.pid, signal.SIGKILL)
    drain(g)
    if g.p.returncode != -signal.SIGKILL:
        fail(f"iteration {it}: kvmm status {g.p.returncode}, not killed by SIGKILL")
    text = g.out[g.marker_at:].decode(errors="replace")
    acked = [int(x) for x in re.findall(r"^F(\d+)\r?$", text, re.M)]
    if acked != list(range(start, start + len(acked))):
        fail(f"iteration {it}: the guest's records are out of order: {acked[:20]}", g.out)
    img.acked.update(acked)
    if acked:
        img.next = acked[-1] + 1
    img.kills += 1
    leaks, present = img.verify(it, delay)
    print(f"iteration {it:2d} {img.name:9s}: boot {boot:4.1f} s, killed after {delay:4.2f} s, "
          f"{len(acked):3d} records flushed (total {len(img.acked)}, {present} sectors of "
          f"records on disk), qemu-img check {'3 (leaks)' if leaks else '0'}", flush=True)
    return len(acked)


t0 = time.monotonic()
with tempfile.TemporaryDirectory(prefix="kvmm-qcow2-crash-") as tmp:
    images = [Image(tmp, "backed", True), Image(tmp, "unbacked", False)]
    for it in range(iterations):
        iteration(it, images[it % 2])
    total = sum(len(i.acked) for i in images)
    if total == 0:
        fail("no record was ever flushed: the storm never ran")
print(f"PASS: {iterations} SIGKILLs in write storms ({total} flushed records, all found; "
      f"qemu-img check never reported corruption) in {time.monotonic() - t0:.0f} s, seed {seed}")
