#!/usr/bin/env bash
# bench/blk_guest.sh - fio inside a Linux guest on a virtio-blk disk, under kvmm and under QEMU, in one run.
#
# Usage: bench/blk_guest.sh [--seconds S] [--ramp S] [--size MiB] [--runs N] [--engine libaio|io_uring]
#                           [--accel auto|kvm|emu] [--only kvmm|qemu] [--qcow2] [--timeout S] [--json FILE]
#
#   --seconds S     measured time per fio job (default 10)
#   --ramp S        fio ramp_time per job, not measured (default 2)
#   --size MiB      the raw image on the host (default 1024), filled from /dev/urandom first
#   --runs N        boots per VMM (default 1); they alternate kvmm, qemu, qemu, kvmm, ... and medians are reported
#   --engine E      fio's engine in the guest: libaio (default) or io_uring
#   --accel A       auto (default): kvm where /dev/kvm can run a stock Linux kernel, else emu (PVM hosts, no KVM)
#                     emu: kvmm run --accel emu (kvmm's software CPU)  vs  qemu -accel tcg -cpu max
#                     kvm: kvmm run --accel kvm                        vs  qemu -accel kvm -cpu host
#   --only V        run one side only (kvmm or qemu)
#   --qcow2         also boot both VMMs on a qcow2 copy of the image (qemu-img convert: every cluster allocated,
#                     64 KiB clusters), format=qcow2 on both sides; a second table and qcow2 / raw per VMM
#   --timeout S     limit per boot (default 900 + 10 x the fio time)
#   --json FILE     also write every run's figures to FILE
#
# The guest: Debian's cloud kernel (scripts/guest-kernel.sh) with the busybox initramfs plus the host's Debian fio
# and its libraries (scripts/guest-initramfs.sh --with-fio), 1 vCPU, 512 MiB, command line
# "console=ttyS0 panic=-1 quiet kvmm.batch"; one virtio-blk-pci disk (/dev/vda) on the same raw file:
#   kvmm   build/kvmm run --accel A --kernel K --initrd I --mem 512M --cmdline ... --disk path=IMG,cache=none
#   qemu   qemu-system-x86_64 -accel tcg -M q35 -cpu max -m 512M -kernel K -initrd I -append ... -nographic
#            -drive file=IMG,if=none,id=d0,format=raw,cache=none,aio=io_uring -device virtio-blk-pci,drive=d0
# After /init's marker, one fio process in the guest runs the jobs one after the other (stonewall), each with
# --direct=1 --time_based --runtime=S --ramp_time=R --clocksource=clock_gettime on /dev/vda:
#   4 KiB random read QD 1 and QD 32, 4 KiB random write QD 32, 1 MiB sequential read and write QD 4.
# Its JSON output comes back over the serial console. Figures: IOPS and MB/s per side, kvmm / QEMU, and "fio CPU":
# the fio process's user + system CPU time in the guest, in % of the job's time, as the guest's clock sees it
# (near 100 %: the guest's single vCPU is busy in fio and the kernel below it, i.e. the CPU limits, not the disk).
#
# Under emulation (--accel emu / TCG) the guest's CPU is an interpreter or a JIT: the guest kernel's block layer,
# the virtio driver and fio itself run one to two orders of magnitude slower than on hardware, so the figures
# say mostly how fast each emulator runs that guest code, not how fast the device path is (bench/blk.sh measures
# that). The CPU model each side presented is printed with the table.
#
# Environment: BUILD (build dir, default build), KVMM (the kvmm binary), QEMU (default qemu-system-x86_64),
# BLK_BENCH_DIR (where the image goes, default /var/tmp), KVMM_CACHE (guest-asset cache, see scripts/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=bench/blk_guest.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

secs=10 ramp=2 size=1024 runs=1 engine=libaio accel=auto only='' timeout='' json='' qcow2=0
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) secs=${2:?--seconds needs a number}; shift 2 ;;
	--ramp) ramp=${2:?--ramp needs a number}; shift 2 ;;
	--size) size=${2:?--size needs a number of MiB}; shift 2 ;;
	--runs) runs=${2:?--runs needs a number}; shift 2 ;;
	--engine) engine=${2:?--engine needs libaio or io_uring}; shift 2 ;;
	--accel) accel=${2:?--accel needs auto, kvm or emu}; shift 2 ;;
	--only) only=${2:?--only needs kvmm or qemu}; shift 2 ;;
	--qcow2) qcow2=1; shift ;;
	--timeout) timeout=${2:?--timeout needs a number}; shift 2 ;;
	--json) json=${2:?--json needs a file}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done
for v in "$secs" "$ramp" "$size" "$runs" "${timeout:-0}"; do
	case $v in '' | *[!0-9]*) die "--seconds/--ramp/--size/--runs/--timeout take a whole number" ;; esac
done
if [ "$runs" -lt 1 ] || [ "$secs" -lt 1 ] || [ "$size" -lt 16 ]; then
	die "need --runs >= 1, --seconds >= 1, --size >= 16"
fi
case $engine in libaio | io_uring) ;; *) die "--engine must be libaio or io_uring" ;; esac
case $only in '' | kvmm | qemu) ;; *) die "--only must be kvmm or qemu" ;; esac
if [ "$accel" = auto ]; then
	if [ -e /sys/module/kvm_pvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
		accel=emu
		note "--accel auto: emu (this host's /dev/kvm cannot run a stock Linux kernel): kvmm's software CPU vs QEMU TCG"
	else
		accel=kvm
	fi
fi
case $accel in kvm | emu) ;; *) die "--accel must be auto, kvm or emu" ;; esac
timeout=${timeout:-$((900 + 10 * 5 * (secs + ramp)))}

build=${BUILD:-$repo/build}
kvmm=${KVMM:-$build/kvmm}
qemu=${QEMU:-qemu-system-x86_64}
dir=${BLK_BENCH_DIR:-/var/tmp}
if [ "$only" != qemu ] && [ ! -x "$kvmm" ]; then
	note "building kvmm"
	[ -f "$build/build.ninja" ] || meson setup "$build" "$repo" >&2
	ninja -C "$build" >&2 || die "building kvmm failed"
fi
if [ "$only" != kvmm ]; then
	command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install qemu-system-x86)"
fi

note "guest assets (scripts/guest-kernel.sh, scripts/guest-initramfs.sh --with-fio)"
kernel=$("$repo/scripts/guest-kernel.sh" | tail -n 1)
initrd=$("$repo/scripts/guest-initramfs.sh" --with-fio | tail -n 1)

img=$(mktemp "$dir/kvmm-blk-guest-XXXXXX.img")
trap 'rm -f "$img" "$img.qcow2"' EXIT
note "filling a $size MiB raw image $img from /dev/urandom"
# Real data everywhere: reads of holes would never reach the disk.
dd if=/dev/urandom of="$img" bs=1M count="$size" status=none conv=fsync
if [ "$qcow2" = 1 ]; then
	note "converting it to qcow2 ($img.qcow2)"
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$img" "$img.qcow2" || die "qemu-img convert failed"
	# Written through the page cache: drop it, as for the raw file's
	# reads (cache=none writes over cached pages pay an invalidation).
	python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$img.qcow2"
fi

python3 - "$kvmm" "$qemu" "$kernel" "$initrd" "$img" "$accel" "$engine" "$secs" "$ramp" "$runs" \
	"$only" "$timeout" "$json" "$size" "$qcow2" <<'PY'
import json, os, re, select, statistics, subprocess, sys, time

(kvmm, qemu, kernel, initrd, img, accel, engine, secs, ramp, runs, only, timeout, jsonfile,
 size, qcow2) = sys.argv[1:16]
FORMATS = ["raw", "qcow2"] if qcow2 == "1" else ["raw"]
secs, ramp, runs, timeout = int(secs), int(ramp), int(runs), int(timeout)
PROG = "bench/blk_guest.sh"
CMDLINE = "console=ttyS0 panic=-1 quiet kvmm.batch"
JOBS = [  # name, rw, bs, iodepth
    ("randread 4k QD1", "randread", "4k", 1),
    ("randread 4k QD32", "randread", "4k", 32),
    ("randwrite 4k QD32", "randwrite", "4k", 32),
    ("read 1m QD4", "read", "1m", 4),
    ("write 1m QD4", "write", "1m", 4),
]


def note(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def argv_of(vmm, fmt):
    path = img if fmt == "raw" else img + ".qcow2"
    if vmm == "kvmm":
        return [kvmm, "run", "--accel", accel, "--kernel", kernel, "--initrd", initrd, "--mem", "512M",
                "--cmdline", CMDLINE, "--disk", f"path={path},cache=none,format={fmt}"]
    acc = ["-accel", "tcg", "-cpu", "max"] if accel == "emu" else ["-accel", "kvm", "-cpu", "host"]
    return [qemu, *acc, "-M", "q35", "-m", "512M", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE,
            "-nographic", "-no-reboot",
            "-drive", f"file={path},if=none,id=d0,format={fmt},cache=none,aio=io_uring",
            "-device", "virtio-blk-pci,drive=d0"]


fio = ["fio", "--output-format=json", "--output=/tmp/fio.json", "--filename=/dev/vda", "--direct=1",
       f"--ioengine={engine}", "--time_based", f"--runtime={secs}", f"--ramp_time={ramp}",
       "--clocksource=clock_gettime", "--numjobs=1"]
for i, (_, rw, bs, qd) in enumerate(JOBS):
    fio += [f"--name=j{i}", "--stonewall", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}"]
# The markers are printed with '' inside so that the command text itself never matches them.
SCRIPT = ("echo CPU-''MODEL $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)\n"
          + " ".join(fio) + " >/tmp/fio.err 2>&1; echo FIO-''STATUS $?\n"
          "echo FIO-''BEGIN; cat /tmp/fio.json; echo FIO-''END; cat /tmp/fio.err\n"
          "poweroff -f\n")


def boot(vmm, run, fmt):
    """One boot: {'iops': [...], 'mbps': [...], 'cpu': str, 'marker_s': float} or None."""
    argv = argv_of(vmm, fmt)
    note(f"run {run + 1}/{runs} {vmm}: booting ({' '.join(argv[:3])} ...)")
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err, marker_s = b"", b"", None
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout, p.stderr], [], [], 1.0)
        eof = False
        for f in r:
            data = os.read(f.fileno(), 65536)
            if not data:
                eof = True
            elif f is p.stdout:
                out += data
            else:
                err += data
        if marker_s is None and b"KVMM-INIT-OK" in out:
            marker_s = time.monotonic() - t0
            note(f"run {run + 1}/{runs} {vmm}: guest /init after {marker_s:.1f} s; fio running "
                 f"({len(JOBS)} jobs x {secs + ramp} s)")
            p.stdin.write(SCRIPT.encode())
            p.stdin.flush()
        if eof and p.poll() is not None:
            break
    if p.poll() is None:
        p.kill()
        note(f"run {run + 1}/{runs} {vmm}: timed out after {timeout} s")
    p.wait()
    text = out.decode(errors="replace")
    m = re.search(r"FIO-BEGIN\r?\n(.*)FIO-END", text, re.S)
    try:
        res = json.loads(m.group(1)) if m else None
    except ValueError:
        res = None
    if res is None:
        note(f"run {run + 1}/{runs} {vmm}: no fio result (exit {p.returncode}); stderr: "
             f"{err.decode(errors='replace').strip()[-500:]}\n--- console (last 2000 bytes) ---\n{text[-2000:]}")
        return None
    cpu = re.search(r"CPU-MODEL ?(.*?)\r?$", text, re.M)
    iops, mbps, gcpu = [], [], []
    for j in res["jobs"]:
        io = j["read"] if j["read"]["total_ios"] else j["write"]
        iops.append(io["iops"])
        mbps.append(io["bw_bytes"] / 1e6)
        gcpu.append(j["usr_cpu"] + j["sys_cpu"])
    note(f"run {run + 1}/{runs} {vmm}: done in {time.monotonic() - t0:.0f} s: "
         + ", ".join(f"{n} {i:.0f}" for (n, *_), i in zip(JOBS, iops)) + " IOPS")
    return {"iops": iops, "mbps": mbps, "gcpu": gcpu, "cpu": cpu.group(1).strip() if cpu else "?", "marker_s": marker_s}


vmms = [v for v in ("kvmm", "qemu") if only in ("", v)]
allres = {f: {v: [] for v in vmms} for f in FORMATS}
for r in range(runs):
    for f in FORMATS:
        for v in (vmms if r % 2 == 0 else vmms[::-1]):
            note(f"{f} image")
            x = boot(v, r, f)
            if x:
                allres[f][v].append(x)
res = allres["raw"]


def med(v, key, i, fmt="raw"):
    xs = [x[key][i] for x in allres[fmt][v]]
    return statistics.median(xs) if xs else None


host_cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
desc = {"kvmm": f"kvmm run --accel {accel}",
        "qemu": f"qemu-system-x86_64 -accel {'tcg -cpu max' if accel == 'emu' else 'kvm -cpu host'} -M q35"}
print(f"fio in the guest on virtio-blk /dev/vda ({engine}, direct=1, {secs} s + {ramp} s ramp per job), "
      f"{size} MiB raw image, host cache=none (QEMU aio=io_uring); medians of {runs} boot(s) per VMM")
print(f"host CPU: {host_cpu} ({os.cpu_count()} CPUs)")
for v in vmms:
    cpus = sorted({x["cpu"] for x in res[v]}) or ["(no successful run)"]
    marks = [x["marker_s"] for x in res[v]]
    print(f"{v:5s} {desc[v]}: guest CPU {', '.join(cpus)}; {len(res[v])}/{runs} runs"
          + (f"; boot to /init {statistics.median(marks):.1f} s" if marks else ""))
if accel == "emu":
    print("both guest CPUs are emulated (kvmm: interpreter, QEMU: TCG JIT): the figures mostly measure how fast each "
          "emulator runs the guest's kernel and fio, not the virtio-blk device path (see bench/blk.sh)")


def fmt(x, nd=0):
    return "-" if x is None else f"{x:.{nd}f}"


hdr = (f"{'workload':20s} {'kvmm IOPS':>10s} {'QEMU IOPS':>10s} {'kvmm/QEMU':>9s} {'kvmm MB/s':>10s} {'QEMU MB/s':>10s}"
       f" {'kvmm fio CPU':>12s} {'QEMU fio CPU':>12s}")
print(hdr)
table = []
for i, (name, *_) in enumerate(JOBS):
    ki = med("kvmm", "iops", i) if "kvmm" in res else None
    qi = med("qemu", "iops", i) if "qemu" in res else None
    km = med("kvmm", "mbps", i) if "kvmm" in res else None
    qm = med("qemu", "mbps", i) if "qemu" in res else None
    kc = med("kvmm", "gcpu", i) if "kvmm" in res else None
    qc = med("qemu", "gcpu", i) if "qemu" in res else None
    ratio = f"{100 * ki / qi:8.0f}%" if ki and qi else f"{'-':>9s}"
    print(f"{name:20s} {fmt(ki):>10s} {fmt(qi):>10s} {ratio} {fmt(km, 1):>10s} {fmt(qm, 1):>10s}"
          f" {fmt(kc):>11s}% {fmt(qc):>11s}%")
    table.append({"workload": name, "kvmm_iops": ki, "qemu_iops": qi, "kvmm_mbps": km, "qemu_mbps": qm,
                  "kvmm_fio_cpu_pct": kc, "qemu_fio_cpu_pct": qc})
qtable = []
if "qcow2" in FORMATS:
    print(f"\nthe same on a qcow2 copy (every cluster allocated, 64 KiB clusters), format=qcow2 on both sides")
    print(f"{'workload':20s} {'kvmm IOPS':>10s} {'QEMU IOPS':>10s} {'kvmm/QEMU':>9s} {'kvmm q/raw':>10s}"
          f" {'QEMU q/raw':>10s}")
    for i, (name, *_) in enumerate(JOBS):
        ki = med("kvmm", "iops", i, "qcow2") if "kvmm" in vmms else None
        qi = med("qemu", "iops", i, "qcow2") if "qemu" in vmms else None
        kr = med("kvmm", "iops", i) if "kvmm" in vmms else None
        qr = med("qemu", "iops", i) if "qemu" in vmms else None
        pct = lambda a, b: f"{100 * a / b:.0f}%" if a and b else "-"
        print(f"{name:20s} {fmt(ki):>10s} {fmt(qi):>10s} {pct(ki, qi):>9s} {pct(ki, kr):>10s} {pct(qi, qr):>10s}")
        qtable.append({"workload": name, "kvmm_iops": ki, "qemu_iops": qi})
if jsonfile:
    with open(jsonfile, "w") as f:
        json.dump({"accel": accel, "engine": engine, "seconds": secs, "ramp": ramp, "size_mib": int(size),
                   "host_cpu": host_cpu, "runs": allres, "medians": table, "qcow2_medians": qtable}, f,
                  indent=1)
sys.exit(0 if all(allres[f][v] for f in FORMATS for v in vmms) else 1)
PY
