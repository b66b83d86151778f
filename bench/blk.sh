#!/usr/bin/env bash
# bench/blk.sh - virtio-blk's device path against the host's own fio, on
# the same raw file, in one run.
#
#   bench/blk.sh [--seconds S] [--size MiB] [--cache none|writeback] [--runs N] [--no-qcow2]
#   bench/blk.sh --guest [bench/blk_guest.sh options]
#
# --guest: part (2), fio inside a Linux guest under kvmm and under QEMU
# (aio=io_uring); runs bench/blk_guest.sh with the remaining arguments (see
# bench/blk_guest.sh --help).  Without it, part (1):
#
# kvmm side: build/tests/blk_bench (bench/blk_bench.c) drives virtio-blk
# through the test harness - no vCPU, the harness plays the guest driver
# and keeps QD requests in flight - so the figure is the device path alone:
# kick eventfd, virtqueue pop, io_uring submission, completion eventfd,
# used-ring push.  Host side: Debian's fio with the io_uring engine, one
# job, the same block size, queue depth, file and O_DIRECT setting
# (cache=none <-> --direct=1; cache=writeback <-> buffered with the file in
# the page cache and --invalidate=0, which measures the CPU cost of the
# path with no disk in the way).  Workloads: 4 KiB random read and write at
# QD 1 and QD 32, 1 MiB sequential read and write at QD 4.  The runs
# alternate (fio, kvmm, fio, kvmm, ...) so a busy moment of the host is
# shared.  Figures: IOPS, MB/s, host CPU time per request (user + system
# of the whole process, divided by requests; fio's from its usr/sys_cpu),
# and kvmm / fio.  The issue's target: >= 90 % of fio's IOPS for 4 KiB
# random reads at QD 32.
#
# qcow2 rows (unless --no-qcow2): the same workloads through kvmm's device
# path on two qcow2 images next to the raw one: "allocated", every cluster
# written (qemu-img convert of the raw file: 64 KiB clusters of the same
# random data), where reads and writes go in place through io_uring; and
# "sparse", a fresh empty image per workload, where reads return zeros
# without touching the disk and writes allocate clusters (synchronous
# metadata, one fdatasync per allocating request).  They run right after
# each kvmm raw run, and the second table gives qcow2 / raw.  The issue's
# target: allocated qcow2 random I/O within 10 % of raw.
#
# Environment: BUILD (build dir, default build), BLK_BENCH_DIR (where the
# test file goes, default /var/tmp), BLK_BENCH_FILE (an existing file or
# block device to use instead; it is overwritten by the write workloads).
# A virtual disk's latency varies a lot from second to second; for a
# steadier comparison of the path's own cost, use a loop device over tmpfs:
#   dd if=/dev/urandom of=/dev/shm/b.img bs=1M count=1024
#   BLK_BENCH_FILE=$(losetup -f --show /dev/shm/b.img) bench/blk.sh
set -euo pipefail
cd "$(dirname "$0")/.."

secs=10
size=1024
cache=none
runs=1
qcow2=1
while [[ $# -gt 0 ]]; do
	case $1 in
	--seconds) secs=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--cache) cache=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--no-qcow2) qcow2=0; shift ;;
	--guest) shift; exec bench/blk_guest.sh "$@" ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--seconds S] [--size MiB] [--cache none|writeback] [--runs N] [--no-qcow2] | --guest [...]" >&2; exit 2 ;;
	esac
done
build=${BUILD:-build}
dir=${BLK_BENCH_DIR:-/var/tmp}
command -v fio >/dev/null || { echo "blk.sh: fio not found (apt-get install fio)" >&2; exit 1; }
if [[ ! -x $build/tests/blk_bench ]]; then
	[[ -f $build/build.ninja ]] || meson setup "$build" >/dev/null
	ninja -C "$build" tests/blk_bench >/dev/null
fi

if [[ -n ${BLK_BENCH_FILE:-} ]]; then
	img=$BLK_BENCH_FILE
	dir=$img
	size=$(( $(blockdev --getsize64 "$img" 2>/dev/null || stat -c %s "$img") >> 20 ))
else
	img=$(mktemp "$dir/kvmm-blk-bench-XXXXXX.img")
	trap 'rm -f "$img"' EXIT
	# Real data everywhere: reads of holes would never reach the disk.
	dd if=/dev/urandom of="$img" bs=1M count="$size" status=none conv=fsync
fi
if ((qcow2)); then
	command -v qemu-img >/dev/null || { echo "blk.sh: qemu-img not found (apt-get install qemu-utils; or --no-qcow2)" >&2; exit 1; }
	qdir=${BLK_BENCH_DIR:-/var/tmp}
	qalloc=$(mktemp "$qdir/kvmm-blk-bench-XXXXXX.qcow2")
	qsparse=$(mktemp "$qdir/kvmm-blk-bench-XXXXXX.qcow2")
	trap 'rm -f "$qalloc" "$qsparse"; [[ -n ${BLK_BENCH_FILE:-} ]] || rm -f "$img"' EXIT
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$img" "$qalloc"
	sync "$qalloc"
	# qemu-img wrote it through the page cache.  With cache=none, drop
	# those pages: every O_DIRECT write over a cached page invalidates
	# it, which halved 4k QD1 random writes here - a cost of how the
	# file was made, not of the qcow2 path.  With writeback, cache it all
	# as the raw file is.
	if [[ $cache == none ]]; then
		python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$qalloc"
	else
		cat "$qalloc" >/dev/null
	fi
fi
direct=$([[ $cache == none ]] && echo 1 || echo 0)
if [[ $cache == writeback ]]; then
	# Both sides read the page cache: fio must not drop it first (its
	# default invalidate=1 would send the reads to the disk).
	cat "$img" >/dev/null
fi

fio_run() { # rw bs qd -> "iops mbps cpu_us"
	fio --name=blk --filename="$img" --ioengine=io_uring --rw="$1" --bs="$2" \
		--iodepth="$3" --direct="$direct" --invalidate=0 --runtime="$secs" --time_based \
		--numjobs=1 --output-format=json 2>/dev/null |
		python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
io = j["read"] if j["read"]["total_ios"] else j["write"]
rt = j["job_runtime"] / 1000
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100 * rt
print("%.0f %.1f %.2f" % (io["iops"], io["bw_bytes"] / 1e6, cpu / io["total_ios"] * 1e6))'
}

kvmm_run() { # rw bs qd [image] -> "iops mbps cpu_us"
	"$build/tests/blk_bench" "${4:-$img}" "$1" "$2" "$3" "$secs" "$cache" |
		sed -E 's/.*iops=([0-9.]+) mbps=([0-9.]+) cpu_us_per_op=([0-9.]+).*/\1 \2 \3/'
}

qrows=()
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf 'virtio-blk device path vs host fio (io_uring), %s MiB raw image at %s, cache=%s, %ss x %s run(s)\n' \
	"$size" "$dir" "$cache" "$secs" "$runs"
printf '%-22s %10s %10s %7s %9s %9s %10s %10s\n' workload 'fio IOPS' 'kvmm IOPS' kvmm/fio \
	'fio MB/s' 'kvmm MB/s' 'fio us/op' 'kvmm us/op'
for w in "randread 4k 1" "randread 4k 32" "randwrite 4k 1" "randwrite 4k 32" \
	 "read 1m 4" "write 1m 4"; do
	# shellcheck disable=SC2086  # split "randread 4k 1" into its three words
	set -- $w
	bs=$([[ $2 == 4k ]] && echo 4096 || echo 1048576)
	fres=() kres=() ares=() sres=()
	for ((r = 0; r < runs; r++)); do
		fres+=("$(fio_run "$1" "$bs" "$3")")
		kres+=("$(kvmm_run "$1" "$bs" "$3")")
		if ((qcow2)); then
			ares+=("$(kvmm_run "$1" "$bs" "$3" "$qalloc")")
			rm -f "$qsparse"
			qemu-img create -q -f qcow2 "$qsparse" "${size}M"
			sres+=("$(kvmm_run "$1" "$bs" "$3" "$qsparse")")
		fi
	done
	col() { printf '%s\n' "${@:2}" | awk -v c="$1" '{print $c}' | median; }
	fi=$(col 1 "${fres[@]}") fm=$(col 2 "${fres[@]}") fc=$(col 3 "${fres[@]}")
	ki=$(col 1 "${kres[@]}") km=$(col 2 "${kres[@]}") kc=$(col 3 "${kres[@]}")
	printf '%-22s %10s %10s %6.0f%% %9s %9s %10s %10s\n' "$1 $2 QD$3" "$fi" "$ki" \
		"$(awk -v a="$ki" -v b="$fi" 'BEGIN {print b ? 100 * a / b : 0}')" "$fm" "$km" "$fc" "$kc"
	if ((qcow2)); then
		ai=$(col 1 "${ares[@]}") ac=$(col 3 "${ares[@]}")
		si=$(col 1 "${sres[@]}") sc=$(col 3 "${sres[@]}")
		qrows+=("$(printf '%-22s %10s %10s %6.0f%% %10s %6.0f%% %10s %10s %10s' "$1 $2 QD$3" "$ki" \
			"$ai" "$(awk -v a="$ai" -v b="$ki" 'BEGIN {print b ? 100 * a / b : 0}')" \
			"$si" "$(awk -v a="$si" -v b="$ki" 'BEGIN {print b ? 100 * a / b : 0}')" \
			"$kc" "$ac" "$sc")")
	fi
done
if ((qcow2)); then
	printf '\nkvmm device path, raw vs qcow2 (allocated: every cluster written; sparse: a fresh empty image), cache=%s\n' "$cache"
	printf '%-22s %10s %10s %7s %10s %7s %10s %10s %10s\n' workload 'raw IOPS' 'qcow2 IOPS' qcow2/raw \
		'sparse' sparse/raw 'raw us/op' 'qcow2 us' 'sparse us'
	printf '%s\n' "${qrows[@]}"
fi
