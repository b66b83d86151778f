#!/usr/bin/env bash
# bench/boot.sh — boot-time and memory benchmark: kvmm side by side with QEMU (and kvmtool when installed).
#
# Usage: bench/boot.sh [--runs N] [--accel kvm|emu] [--slow-runs N] [--warmup N] [--timeout S]
#                      [--cmdline STR] [--json FILE] [--verbose]
#
#   --accel kvm (default)  the VMM's own cost: the minimal test guest (build/tests/guests/minimal.bzImage: prints
#                          "K\n" on COM1 and writes 0 to the debug-exit port 0xf4), under
#                            kvmm          build/kvmm run --kernel minimal.bzImage --mem 128M
#                            qemu-microvm  qemu-system-x86_64 -M microvm (qboot, no option ROMs, no PIT/PIC/RTC)
#                            qemu-q35      qemu-system-x86_64 -M q35 (SeaBIOS + linuxboot option ROM)
#                            lkvm          kvmtool, only if `lkvm` is on PATH (it has no debug-exit port: the
#                                          run is killed once "K" is seen, so it has no exit time)
#   --accel emu            the software CPU: Debian's cloud kernel + the busybox initramfs from scripts/, with
#                          "kvmm.poweroff" on the command line so /init prints KVMM-INIT-OK and powers off:
#                            kvmm-emu      build/kvmm run --accel emu --kernel K --initrd I --mem 512M --cmdline …
#                            qemu-tcg-q35  qemu-system-x86_64 -accel tcg -cpu max -M q35 -m 512M …
#                          If kvmm cannot run it (no software CPU yet), that is printed and QEMU's figures are
#                          still reported.
#   --runs N               measured runs per VMM (default 10 for kvm, 3 for emu); runs are interleaved
#                          (kvmm, qemu, …, kvmm, qemu, …) so a slow moment of the host hits every VMM alike
#   --slow-runs N          runs for the slow configurations (qemu-q35 under KVM: SeaBIOS; default min(N, 3))
#   --warmup N             unmeasured runs of each VMM first (page cache, default 1)
#   --timeout S            per-run limit in seconds (default 30 for kvm, 300 for emu)
#   --cmdline STR          kernel command line for --accel emu (default below)
#   --json FILE            also write every run's figures to FILE
#   --verbose              print every run
#
# Figures (medians over the runs; see bench/README.md):
#   first out   exec of the VMM process → first byte the guest wrote to the serial console (on stdout)
#   marker      exec → the line KVMM-INIT-OK on the console (--accel emu: the guest's /init is running)
#   exit        exec → the VMM process has exited (the guest powered off / wrote the debug-exit port)
#   peak RSS    the VMM's peak resident set (ru_maxrss via GNU time), guest RAM it touched included
#   ×kvmm       that figure divided by kvmm's (above 1: kvmm is faster / smaller)
#
# Environment: BUILD (build dir, default build), KVMM (the kvmm binary), QEMU (default qemu-system-x86_64),
# KVMM_BENCH_GUEST (a bzImage to use instead of minimal.bzImage), KVMM_CACHE (guest-asset cache, see scripts/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prog=bench/boot.sh
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

runs='' accel=kvm slow_runs='' warmup=1 timeout='' cmdline='' json='' verbose=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=${2:?--runs needs a number}; shift 2 ;;
	--runs=*) runs=${1#*=}; shift ;;
	--accel) accel=${2:?--accel needs kvm or emu}; shift 2 ;;
	--accel=*) accel=${1#*=}; shift ;;
	--slow-runs) slow_runs=${2:?}; shift 2 ;;
	--slow-runs=*) slow_runs=${1#*=}; shift ;;
	--warmup) warmup=${2:?}; shift 2 ;;
	--warmup=*) warmup=${1#*=}; shift ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	--timeout=*) timeout=${1#*=}; shift ;;
	--cmdline) cmdline=${2?}; shift 2 ;;
	--cmdline=*) cmdline=${1#*=}; shift ;;
	--json) json=${2:?}; shift 2 ;;
	--json=*) json=${1#*=}; shift ;;
	--verbose | -v) verbose=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument: $1 (see bench/boot.sh --help)" ;;
	esac
done
case $accel in kvm | emu) ;; *) die "--accel must be kvm or emu" ;; esac
for v in "$runs" "$slow_runs" "$warmup" "$timeout"; do
	case $v in '' | *[!0-9]*) [ -z "$v" ] || die "--runs/--slow-runs/--warmup/--timeout take a whole number" ;; esac
done
if [ "$accel" = kvm ]; then
	runs=${runs:-10} timeout=${timeout:-30}
else
	runs=${runs:-3} timeout=${timeout:-300}
fi
[ "$runs" -ge 1 ] || die "--runs must be at least 1"
slow_runs=${slow_runs:-$((runs < 3 ? runs : 3))}

build=${BUILD:-$repo/build}
kvmm=${KVMM:-$build/kvmm}
qemu=${QEMU:-qemu-system-x86_64}
command -v python3 >/dev/null 2>&1 || die "python3 is needed"

# kvmm: build it if it is missing (nothing else is built here). A failed build still lets QEMU be measured.
if [ ! -x "$kvmm" ] && [ -z "${KVMM:-}" ]; then
	note "build/kvmm missing: meson setup + ninja"
	if ! { { [ -f "$build/build.ninja" ] || meson setup "$build" "$repo"; } && ninja -C "$build"; } >&2; then
		note "building kvmm failed; measuring the other VMMs only"
	fi
fi
have_kvmm=0
[ -x "$kvmm" ] && have_kvmm=1
command -v "$qemu" >/dev/null 2>&1 || { note "$qemu not found (apt-get install qemu-system-x86); skipping QEMU"; qemu=; }

# The configurations, one per line: name <TAB> runs <TAB> marker <TAB> mode <TAB> argv (NUL-free, \x1f-separated).
# mode: exit = wait for the process to end; kill = kill it once the marker is seen (no exit time).
configs=()
sep=$'\x1f'
add() { # add NAME RUNS MARKER MODE ARGV...
	local name=$1 n=$2 marker=$3 mode=$4 IFS=$sep
	shift 4
	configs+=("$name"$'\t'"$n"$'\t'"$marker"$'\t'"$mode"$'\t'"$*")
}

if [ "$accel" = kvm ]; then
	guest=${KVMM_BENCH_GUEST:-$build/tests/guests/minimal.bzImage}
	[ -f "$guest" ] || die "no test guest $guest: build the tests (ninja -C $build) or set KVMM_BENCH_GUEST"
	if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then die "/dev/kvm is not usable by this user"; fi
	title="minimal guest ($(basename "$guest"): \"K\" on COM1, then debug-exit), 128 MiB, accel kvm"
	[ $have_kvmm = 1 ] && add kvmm "$runs" K exit "$kvmm" run --kernel "$guest" --mem 128M
	if [ -n "$qemu" ]; then
		# shellcheck disable=SC2054  # the commas are QEMU's
		common=(-accel kvm -cpu host,-arch-capabilities -m 128M -display none -nodefaults -serial stdio
			-no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$guest")
		add qemu-microvm "$runs" K exit "$qemu" \
			-M microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on "${common[@]}"
		add qemu-q35 "$slow_runs" K exit "$qemu" -M q35 "${common[@]}"
	fi
	if command -v lkvm >/dev/null 2>&1; then
		add lkvm "$runs" K kill lkvm run --kernel "$guest" --mem 128 --cpus 1 --console serial
	fi
else
	kernel=$("$repo/scripts/guest-kernel.sh" | tail -n1) || die "scripts/guest-kernel.sh failed"
	initrd=$("$repo/scripts/guest-initramfs.sh" | tail -n1) || die "scripts/guest-initramfs.sh failed"
	cmdline=${cmdline:-console=ttyS0 panic=-1 quiet kvmm.poweroff}
	title="Debian $(cat "$(dirname "$kernel")/version") + busybox initramfs, 512 MiB, software CPU; cmdline: $cmdline"
	if [ $have_kvmm = 1 ]; then
		add kvmm-emu "$runs" KVMM-INIT-OK exit "$kvmm" run --accel emu --kernel "$kernel" --initrd "$initrd" \
			--mem 512M --cmdline "$cmdline"
	fi
	if [ -n "$qemu" ]; then
		add qemu-tcg-q35 "$runs" KVMM-INIT-OK exit "$qemu" -accel tcg -cpu max -M q35 -m 512M -display none \
			-nodefaults -serial stdio -no-reboot -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
	fi
fi
[ $have_kvmm = 1 ] || note "no kvmm binary ($kvmm): its figures are missing"
[ ${#configs[@]} -gt 0 ] || die "nothing to measure"

host="$(uname -r), $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
[ -n "$qemu" ] && host="$host; $("$qemu" --version | head -n1)"
rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)

cfgfile=$(mktemp)
trap 'rm -f "$cfgfile"' EXIT
printf '%s\n' "${configs[@]}" >"$cfgfile"
if [ "$accel" = kvm ]; then columns=first,exit,rss_kib; else columns=first,marker,exit,rss_kib; fi
python3 - "$cfgfile" "$title" "$host" "$rev" "$warmup" "$timeout" "$verbose" "$json" "$columns" <<'EOF'
# The measuring side. Each run: fork+exec the VMM with stdout/stderr on pipes and stdin on a pipe that stays
# open (so no VMM sees EOF), time the first stdout byte, the marker and the exit (a pidfd becomes readable when
# the process ends), and read the peak RSS through GNU time: a child forked from Python would count Python's own
# pages in ru_maxrss (the high-water mark of the pre-exec image), so a small forking parent measures instead.
import json, os, select, signal, statistics, subprocess, sys, time

cfgfile, title, host, rev, warmup, timeout, verbose, json_path, columns = sys.argv[1:10]
columns = columns.split(",")
warmup, timeout, verbose = int(warmup), float(timeout), verbose == "1"
configs = []
for line in open(cfgfile).read().splitlines():
    name, n, marker, mode, argv = line.split("\t")
    configs.append(dict(name=name, runs=int(n), marker=marker.encode(), mode=mode, argv=argv.split("\x1f")))

def run_once(c):
    rssfile = f"/tmp/kvmm-bench-rss.{os.getpid()}"
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-q", "-f", "%M", "-o", rssfile] + c["argv"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pidfd = os.pidfd_open(p.pid)
    r = dict(first=None, marker=None, exit=None, rss_kib=None, status=None, error=None)
    out, err, fds = b"", b"", {p.stdout.fileno(): "out", p.stderr.fileno(): "err", pidfd: "pid"}
    deadline = t0 + timeout
    while "pid" in fds.values():
        left = deadline - time.perf_counter()
        if left <= 0:
            p.kill()
            r["error"] = f"timeout after {timeout:g} s"
            deadline = float("inf")
            continue
        ready, _, _ = select.select(list(fds), [], [], min(left, 1.0))
        now = time.perf_counter() - t0
        for fd in ready:
            kind = fds[fd]
            if kind == "pid":
                if r["exit"] is None and r["error"] is None and c["mode"] == "exit":
                    r["exit"] = now
                del fds[fd]
                continue
            data = os.read(fd, 65536)
            if not data:
                del fds[fd]
                continue
            if kind == "err":
                err += data
                continue
            if r["first"] is None:
                r["first"] = now
            out += data
            if r["marker"] is None and c["marker"] in out:
                r["marker"] = now
                if c["mode"] == "kill":
                    p.kill()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    for f in (p.stdin, p.stdout, p.stderr):
        f.close()
    os.close(pidfd)
    r["status"] = p.returncode
    try:
        with open(rssfile) as f:
            r["rss_kib"] = int(f.read().split()[-1])
        os.unlink(rssfile)
    except (OSError, ValueError, IndexError):
        r["rss_kib"] = None
    if r["marker"] is None and r["error"] is None:
        last = (err.decode(errors="replace").strip().splitlines() or out.decode(errors="replace").strip().splitlines()
                or [f"exit status {p.returncode}"])[-1]
        r["error"] = f"no {c['marker'].decode()!r} on the console (status {p.returncode}): {last}"
    r["out_tail"] = out[-300:].decode(errors="replace")
    return r

results = {c["name"]: [] for c in configs}
for c in configs:
    for _ in range(warmup):
        r = run_once(c)
        if r["error"]:
            print(f"{c['name']}: {r['error']}", file=sys.stderr)
            c["broken"] = r["error"]
            break
live = [c for c in configs if "broken" not in c]
for i in range(max((c["runs"] for c in live), default=0)):
    for c in live:
        if i < c["runs"]:
            r = run_once(c)
            results[c["name"]].append(r)
            if verbose:
                fmt = lambda v: "-" if v is None else f"{v*1000:.1f}ms"
                print(f"  {c['name']:<14} run {i+1}: first {fmt(r['first'])} marker {fmt(r['marker'])} "
                      f"exit {fmt(r['exit'])} rss {r['rss_kib']/1024:.1f}MiB status {r['status']}"
                      + (f"  ERROR {r['error']}" if r["error"] else ""), file=sys.stderr)

def med(name, key):
    vals = [r[key] for r in results.get(name, []) if not r["error"] and r[key] is not None]
    return statistics.median(vals) if vals else None

ref = next((c["name"] for c in configs if c["name"].startswith("kvmm")), None)
def cell(name, key, unit):
    v = med(name, key)
    if v is None:
        return "-", ""
    s = f"{v*1000:.1f} ms" if unit == "ms" else f"{v/1024:.1f} MiB"
    rv = med(ref, key) if ref else None
    ratio = f"{v/rv:.2f}x" if rv and name != ref else ""
    return s, ratio

print(f"boot benchmark: {title}")
print(f"host: {host}; kvmm {rev}")
print(f"medians; ×kvmm = figure / kvmm's figure")
heads = dict(first="first out", marker="marker", exit="exit", rss_kib="peak RSS")
hdr = f"{'vmm':<14} {'runs':>5}" + "".join(f"  {heads[k]:>10} {'×kvmm':>8}" for k in columns) + "  status"
print(hdr)
print("-" * len(hdr))
for c in configs:
    name, rs = c["name"], results[c["name"]]
    if "broken" in c:
        print(f"{name:<14} {'0':>5}  unavailable: {c['broken']}")
        continue
    ok = sum(1 for r in rs if not r["error"])
    cols = [cell(name, k, "kib" if k == "rss_kib" else "ms") for k in columns]
    statuses = sorted({r["status"] for r in rs if not r["error"]})
    print(f"{name:<14} {f'{ok}/{len(rs)}':>5}" + "".join(f"  {a:>10} {b:>8}" for a, b in cols)
          + "  " + ",".join(map(str, statuses)))
    for r in rs:
        if r["error"]:
            print(f"  {name}: {r['error']}")
            break
if json_path:
    with open(json_path, "w") as f:
        json.dump(dict(title=title, host=host, rev=rev, results=results,
                       broken={c["name"]: c["broken"] for c in configs if "broken" in c}), f, indent=1)
EOF
