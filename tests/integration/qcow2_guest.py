#!/usr/bin/env python3
"""qcow2 end to end: Linux writes through kvmm's qcow2 driver, the host
checks the image with qemu-img and folds it into its base with
`kvmm img commit`; and snapshot=on leaves every image as it was.

usage: qcow2_guest.py KVMM commit|snapshot|qemu-images

commit: a 64 MiB raw base with a deterministic pattern, a qcow2 overlay on
it (`kvmm img create -f qcow2 -b base.raw -F raw`, 64 KiB clusters), the
default guest (--accel auto) writes slices of /data/sample.bin with dd
conv=fsync at offsets unaligned to the cluster (and to the sector): inside
one cluster, across several, the first sector, the last 4 KiB.  The guest
reads each back after dropping its caches and hashes the whole disk; the
host then wants: `qemu-img check` exit 0; the clusters `qemu-img map`
reports in the overlay's own layer exactly the clusters the writes
touched; `kvmm img commit overlay.qcow2` exit 0; the base byte for byte
the pattern with the writes applied.

snapshot: a probed raw image and a qcow2 overlay (with its raw base), both
snapshot=on, TMPDIR pointed at an empty directory: the guest's writes read
back during the session, sector 0 of the probed raw disk still refuses the
qcow2 magic, another writer is refused the raw image while it is in use,
no overlay has a name in TMPDIR, and after exit all three files are byte
for byte what they were.

qemu-images: images qemu-img and qemu-io made - zlib-compressed with 4 KiB
clusters, zstd-compressed with 2 MiB clusters, and a three-level chain
(raw base, qcow2 middle, qcow2 top with an internal snapshot taken between
writes and zero clusters) - read in the guest: each disk's sha256 equals
that of `qemu-img convert -O raw` of it.

Exit 0 pass, 77 skip (reason on stdout), 1 fail."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from guest_session import Guest, asset, fail, results, skip

kvmm, mode = sys.argv[1], sys.argv[2]
BOOT_TIMEOUT = 600
MiB = 1 << 20
CLUSTER = 64 * 1024
CMDLINE = "console=ttyS0 panic=-1 quiet kvmm.batch"

kernel = asset("guest-kernel.sh")
initrd = asset("guest-initramfs.sh")
sample = open(os.path.join(os.path.dirname(initrd), "sample.bin"), "rb").read()
base_cmd = [kvmm, "run", "--accel", "auto", "--kernel", kernel, "--initrd", initrd,
            "--mem", "512M", "--cmdline", CMDLINE]


def sha(b):
    return hashlib.sha256(b).hexdigest()


def pattern(size, seed):
    """size bytes that repeat nowhere (shake-256 of the seed)."""
    return hashlib.shake_256(seed).digest(size)


def check(checks, g=None):
    bad = [f"{name}: got {v!r}, want {w!r}" for name, v, w in checks if v != w]
    if bad:
        fail("; ".join(bad) + (f" (kvmm stderr: {g.stderr()})" if g else ""),
             g.out if g else b"")


def need(*progs):
    for p in progs:
        if not shutil.which(p):
            skip(f"{p} is not installed (qemu-utils)")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def guest_writes(dev, writes):
    """Shell lines: write each (offset, length, sample offset) with dd
    conv=fsync, then read each back from the device (caches dropped) and
    print its sha256 as R<dev>_<i>."""
    s = ""
    for i, (off, n, src) in enumerate(writes):
        s += (f"dd if=/data/sample.bin of=/dev/{dev} bs=64k iflag=skip_bytes,count_bytes "
              f"oflag=seek_bytes skip={src} seek={off} count={n} conv=fsync 2>/dev/null;"
              f" echo RW{dev}_{i} $?\n")
    s += "echo 3 > /proc/sys/vm/drop_caches\n"
    for i, (off, n, _) in enumerate(writes):
        s += (f"echo R{dev}_{i} $(dd if=/dev/{dev} bs=64k iflag=skip_bytes,count_bytes "
              f"skip={off} count={n} 2>/dev/null | sha256sum)\n")
    return s


def write_checks(got, dev, writes):
    out = []
    for i, (off, n, src) in enumerate(writes):
        out.append((f"{dev}: dd of {n} bytes at {off} exit status", got.get(f"RW{dev}_{i}"), "0"))
        out.append((f"{dev}: {n} bytes at {off} read back in the guest",
                    (got.get(f"R{dev}_{i}") or " ").split()[0], sha(sample[src:src + n])))
    return out


def apply(data, writes):
    b = bytearray(data)
    for off, n, src in writes:
        b[off:off + n] = sample[src:src + n]
    return bytes(b)


def commit(tmp):
    need("qemu-img")
    size = 64 * MiB
    base, ov = os.path.join(tmp, "base.raw"), os.path.join(tmp, "overlay.qcow2")
    orig = pattern(size, b"kvmm qcow2 base")
    with open(base, "wb") as f:
        f.write(orig)
    p = run([kvmm, "img", "create", "-f", "qcow2", "-b", base, "-F", "raw", ov])
    if p.returncode:
        fail(f"kvmm img create: status {p.returncode}: {p.stderr.strip()}")
    # (disk offset, length, offset in sample.bin): none aligned to a cluster.
    writes = [
        (100000, 5000, 0),                     # inside cluster 1, not sector aligned
        (3 * CLUSTER - 7000, 200000, 12345),   # clusters 2..5
        (40 * MiB + 12345, 700001, 333333),    # 11 clusters, odd length
        (size - 4096, 4096, 4096 * 7),         # the last 4 KiB
        (0, 512, 999),                         # the first sector
    ]
    expect = apply(orig, writes)
    touched = set()
    for off, n, _ in writes:
        touched.update(range(off // CLUSTER, (off + n - 1) // CLUSTER + 1))

    g = Guest(base_cmd + ["-v", "--disk", f"path={ov},serial=ovl"])
    g.wait_marker(BOOT_TIMEOUT)
    got = results(g.run(
        "echo RSER $(cat /sys/block/vda/serial) $(cat /sys/block/vda/size)\n" +
        guest_writes("vda", writes) +
        "echo RALL $(sha256sum /dev/vda)\n", done="QDONE"))
    status = g.poweroff()
    check([("vda serial and size", got.get("RSER"), f"ovl {size // 512}")] +
          write_checks(got, "vda", writes) +
          [("the whole disk in the guest: base with the writes",
            (got.get("RALL") or " ").split()[0], sha(expect)),
           ("poweroff status", status, 0)], g)

    p = run(["qemu-img", "check", ov])
    if p.returncode:
        fail(f"qemu-img check {ov}: status {p.returncode}\n{p.stdout}{p.stderr}")
    p = run(["qemu-img", "map", "--output=json", ov])
    if p.returncode:
        fail(f"qemu-img map: status {p.returncode}: {p.stderr.strip()}")
    own = set()
    for e in json.loads(p.stdout):
        if e["depth"] == 0 and (e["data"] or e.get("zero")):
            own.update(range(e["start"] // CLUSTER, (e["start"] + e["length"] - 1) // CLUSTER + 1))
    with open(base, "rb") as f:
        base_now = f.read()
    check([("clusters allocated in the overlay (qemu-img map, depth 0)", sorted(own), sorted(touched)),
           ("the base before commit", sha(base_now), sha(orig))])

    p = run([kvmm, "img", "commit", ov])
    if p.returncode:
        fail(f"kvmm img commit {ov}: status {p.returncode}: {p.stderr.strip()}")
    with open(base, "rb") as f:
        base_now = f.read()
    p = run(["qemu-img", "check", ov])
    check([("base after kvmm img commit: size", len(base_now), size),
           ("base after kvmm img commit: the pattern with the guest's writes",
            sha(base_now), sha(expect)),
           ("qemu-img check of the overlay after commit", p.returncode, 0)])
    print(f"PASS: {len(writes)} guest writes through qcow2 read back; qemu-img check clean; "
          f"exactly the {len(touched)} touched clusters in the overlay; kvmm img commit "
          "made the base the expected bytes")


def snapshot(tmp):
    need("qemu-img")
    size = 16 * MiB
    raw, base2, ov = (os.path.join(tmp, n) for n in ("disk.raw", "base2.raw", "ov.qcow2"))
    tmpdir = os.path.join(tmp, "tmpdir")
    os.mkdir(tmpdir)
    for path, seed in ((raw, b"snap raw"), (base2, b"snap base2")):
        with open(path, "wb") as f:
            f.write(pattern(size, seed))
    p = run([kvmm, "img", "create", "-f", "qcow2", "-b", base2, "-F", "raw", ov])
    if p.returncode:
        fail(f"kvmm img create: status {p.returncode}: {p.stderr.strip()}")

    def hashes():
        return {n: sha(open(n, "rb").read()) for n in (raw, base2, ov)}
    before = hashes()
    writes = [(4096 * 3 + 100, 70000, 0), (5 * MiB + 1, 300000, 5000)]
    g = Guest(base_cmd + ["--disk", f"path={raw},snapshot=on,serial=snapraw",
                          "--disk", f"path={ov},snapshot=on,serial=snapq"],
              env=dict(os.environ, TMPDIR=tmpdir))
    g.wait_marker(BOOT_TIMEOUT)
    in_tmpdir = sorted(os.listdir(tmpdir))
    p = run(base_cmd[:-2] + ["--cmdline", "kvmm.poweroff", "--disk", f"path={raw}"])
    locked = (p.returncode, "locked by another process" in p.stderr)
    got = results(g.run(
        "echo RSER $(cat /sys/block/vda/serial) $(cat /sys/block/vdb/serial)"
        " $(cat /sys/block/vda/ro) $(cat /sys/block/vdb/ro)\n" +
        guest_writes("vda", writes) + guest_writes("vdb", writes) +
        "printf 'QFI\\373' | dd of=/dev/vda bs=512 count=1 conv=sync,fsync oflag=direct 2>/dev/null;"
        " echo RMAGIC $?\n", done="SDONE"))
    status = g.poweroff()
    after = hashes()
    check([("serials, read-write", got.get("RSER"), "snapraw snapq 0 0")] +
          write_checks(got, "vda", writes) + write_checks(got, "vdb", writes) +
          [("qcow2 magic into sector 0 of the probed raw disk refused", got.get("RMAGIC"), "1"),
           ("names in TMPDIR while the guest runs", in_tmpdir, []),
           ("a writer on the raw image meanwhile: status 2, 'locked'", locked, (2, True)),
           ("poweroff status", status, 0),
           ("files after the session", after, before),
           ("names in TMPDIR after the session", sorted(os.listdir(tmpdir)), [])], g)
    print("PASS: snapshot=on on raw (probed) and qcow2: guest writes read back in the session, "
          "images byte for byte unchanged after it, nothing left in TMPDIR, writers kept out")


def qemu_images(tmp):
    need("qemu-img", "qemu-io")
    size = 16 * MiB
    src = os.path.join(tmp, "src.raw")
    data = bytearray(pattern(size, b"qemu images"))
    for off in range(0, size, 256 * 1024):    # compressible stretches
        data[off:off + 96 * 1024] = bytes(96 * 1024)
    with open(src, "wb") as f:
        f.write(data)
    imgs = []

    def sh(cmd):
        p = run(cmd, cwd=tmp)
        if p.returncode:
            fail(f"{' '.join(cmd)}: status {p.returncode}: {p.stderr.strip()}")
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", src, "zlib4k.qcow2"])
    sh(["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
        "cluster_size=2M,compression_type=zstd", src, "zstd2m.qcow2"])
    sh(["qemu-img", "convert", "-O", "raw", src, "base.raw"])
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2"])
    sh(["qemu-io", "-c", "write -P 0x11 1M 3M", "-c", "write -z 6M 1M", "mid.qcow2"])
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", "-b", "mid.qcow2",
        "-F", "qcow2", "top.qcow2"])
    sh(["qemu-io", "-c", "write -P 0x22 2M 100k", "top.qcow2"])
    sh(["qemu-img", "snapshot", "-c", "before", "top.qcow2"])
    sh(["qemu-io", "-c", "write -P 0x33 2050k 1M", "-c", "write -z 12M 64k", "top.qcow2"])
    for name in ("zlib4k.qcow2", "zstd2m.qcow2", "top.qcow2"):
        path = os.path.join(tmp, name)
        flat = os.path.join(tmp, name + ".raw")
        sh(["qemu-img", "convert", "-O", "raw", path, flat])
        imgs.append((path, sha(open(flat, "rb").read())))
    disks = []
    for i, (path, _) in enumerate(imgs):
        disks += ["--disk", f"path={path},readonly=on,serial=q{i}"]
    g = Guest(base_cmd + disks)
    g.wait_marker(BOOT_TIMEOUT)
    script = ""
    for i, dev in enumerate(("vda", "vdb", "vdc")):
        script += f"echo RS{i} $(cat /sys/block/{dev}/serial) $(sha256sum < /dev/{dev})\n"
    got = results(g.run(script, done="SDONE"))
    status = g.poweroff()
    check([(f"{os.path.basename(p)} read in the guest", got.get(f"RS{i}"), f"q{i} {h} -")
           for i, (p, h) in enumerate(imgs)] + [("poweroff status", status, 0)], g)
    print("PASS: qemu-img's zlib 4k, zstd 2M and 3-level chain with a snapshot read in the "
          "guest equal to qemu-img convert -O raw")


with tempfile.TemporaryDirectory(prefix="kvmm-qcow2-guest-") as tmp:
    if mode == "commit":
        commit(tmp)
    elif mode == "snapshot":
        snapshot(tmp)
    elif mode == "qemu-images":
        qemu_images(tmp)
    else:
        fail(f"unknown mode {mode}")
