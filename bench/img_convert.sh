#!/usr/bin/env bash
# bench/img_convert.sh - `kvmm img convert` against `qemu-img convert` on
# the same multi-GiB image, in one run.
#
#   bench/img_convert.sh [--size GiB] [--data MiB] [--runs N] [--cases LIST]
#
# The source is a sparse raw image of --size GiB (default 4) holding --data
# MiB (default 1024) spread over it in 4 MiB extents, every 64 KiB half
# random bytes and half text (so -c has something to do and something it
# cannot), plus src.qcow2, the same content converted by qemu-img.  Cases
# (--cases, comma separated, default all):
#   raw2qcow2   raw -> qcow2          qcow2raw   qcow2 -> raw
#   raw2qcow2c  raw -> qcow2 -c (zlib)           raw2qcow2z  -c with zstd
# Each case runs kvmm and qemu-img alternately, --runs times (default 3),
# into fresh files, and reports medians of wall time, qemu-img's wall time
# plus a `sync` of its output, CPU time (user + system of all threads, GNU
# time), the outputs' allocated MiB, and kvmm / qemu-img (below 1: kvmm is
# faster or cheaper).  Every kvmm output is checked equal to the source with
# `qemu-img compare` (not timed).  Both tools get the source from the page
# cache after the first run.  qemu-img convert writes its output with
# cache mode "unsafe" (no flush at all, not even at the end), while kvmm
# fdatasyncs at the end and, for qcow2, orders metadata with an fdatasync
# per 2 MiB request (qcow2.c): kvmm pays for durability qemu-img skips.
#
# Environment: BUILD (build dir, default build), KVMM (binary), QEMU_IMG,
# BENCH_DIR (scratch directory, default /var/tmp/kvmm-bench-convert; needs
# about 3 x --data of free space; removed at the end unless BENCH_KEEP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

size_gib=4
data_mib=1024
runs=3
cases=raw2qcow2,qcow2raw,raw2qcow2c,raw2qcow2z
while [[ $# -gt 0 ]]; do
	case $1 in
	--size) size_gib=$2; shift 2 ;;
	--data) data_mib=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--cases) cases=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--size GiB] [--data MiB] [--runs N] [--cases LIST]" >&2; exit 2 ;;
	esac
done

BUILD=${BUILD:-build}
KVMM=${KVMM:-$BUILD/kvmm}
QEMU_IMG=${QEMU_IMG:-qemu-img}
DIR=${BENCH_DIR:-/var/tmp/kvmm-bench-convert}
if [[ ! -x $KVMM ]]; then
	[[ -d $BUILD ]] || meson setup "$BUILD" >&2
	ninja -C "$BUILD" kvmm >&2
fi
command -v "$QEMU_IMG" >/dev/null || { echo "no $QEMU_IMG (apt-get install qemu-utils)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "no GNU time (apt-get install time)" >&2; exit 1; }
KVMM=$(realpath "$KVMM")
mkdir -p "$DIR"
[[ ${BENCH_KEEP:-0} = 1 ]] || trap 'rm -rf "$DIR"' EXIT
cd "$DIR"

echo "making a ${size_gib} GiB image with ${data_mib} MiB of data in $DIR ..." >&2
python3 - "$size_gib" "$data_mib" <<'PY'
import os, sys
size = int(sys.argv[1]) << 30
extents = int(sys.argv[2]) // 4
stride = size // extents
text = (b"kvmm img convert benchmark, half text and half random " * 700)[:32768]
with open("src.raw", "wb") as f:
    f.truncate(size)
    for e in range(extents):
        f.seek(e * stride)
        f.write(b"".join(os.urandom(32768) + text for _ in range(64)))
PY
"$QEMU_IMG" convert -O qcow2 src.raw src.qcow2

# run TOOL CASE OUT: one timed conversion; prints "wall cpu wall+sync",
# the last with the time `sync OUT` takes after it (the fdatasync of what
# qemu-img left dirty; about 0 after kvmm, which synced already).
run() {
	local tool=$1 case=$2 out=$3 src=src.raw args
	case $case in
	raw2qcow2) args=(-O qcow2) ;;
	qcow2raw) args=(-O raw); src=src.qcow2 ;;
	raw2qcow2c) args=(-O qcow2 -c) ;;
	raw2qcow2z) args=(-O qcow2 -c -o compression_type=zstd) ;;
	esac
	rm -f "$out"
	if [[ $tool = kvmm ]]; then
		/usr/bin/time -f "%e %U %S" -o t.txt "$KVMM" img convert "${args[@]}" "$src" "$out"
	else
		/usr/bin/time -f "%e %U %S" -o t.txt "$QEMU_IMG" convert "${args[@]}" "$src" "$out"
	fi
	local t0 t1
	t0=$(date +%s.%N)
	sync "$out"
	t1=$(date +%s.%N)
	awk -v s="$(echo "$t0 $t1" | awk '{ print $2 - $1 }')" \
		'{ printf "%s %.2f %.2f\n", $1, $2 + $3, $1 + s }' t.txt
}

ratio() { echo "$1 $2" | awk '{ print ($2 > 0 ? $1 / $2 : 0) }'; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf "%-11s %7s %7s %6s %8s %6s %8s %8s %6s %8s %8s\n" case "kvmm s" "qemu s" ratio \
	"qemu+sync" ratio "kvmm cpu" "qemu cpu" ratio "kvmm MiB" "qemu MiB"
for c in ${cases//,/ }; do
	: > k.txt
	: > q.txt
	for ((i = 0; i < runs; i++)); do
		run kvmm "$c" out.kvmm >> k.txt
		run qemu "$c" out.qemu >> q.txt
	done
	"$QEMU_IMG" compare src.raw out.kvmm >/dev/null || { echo "$c: kvmm's output differs from the source" >&2; exit 1; }
	kw=$(cut -d' ' -f1 k.txt | median) kc=$(cut -d' ' -f2 k.txt | median)
	qw=$(cut -d' ' -f1 q.txt | median) qc=$(cut -d' ' -f2 q.txt | median)
	qs=$(cut -d' ' -f3 q.txt | median)
	printf "%-11s %7.2f %7.2f %6.2f %8.2f %6.2f %8.2f %8.2f %6.2f %8d %8d\n" "$c" "$kw" "$qw" \
		"$(ratio "$kw" "$qw")" "$qs" "$(ratio "$kw" "$qs")" "$kc" "$qc" "$(ratio "$kc" "$qc")" \
		$(($(du -k out.kvmm | cut -f1) / 1024)) $(($(du -k out.qemu | cut -f1) / 1024))
done
