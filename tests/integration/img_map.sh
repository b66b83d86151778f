#!/bin/bash
# img_map.sh KVMM
#
# `kvmm img map` against Debian's qemu-img map (QEMU 7.2) on images that
# qemu-img and qemu-io make: a backing chain of 3 (qcow2 over qcow2 over
# qcow2, and qcow2 over a short raw file), zero clusters (write -z on
# unallocated and on allocated clusters, which keeps a host cluster, and
# write -z -u), discarded ranges, compressed clusters, raw files with
# holes, 512-byte and 2 MiB clusters, a virtual size that is not a
# multiple of the cluster size, --start-offset/--max-length.  The JSON must
# be byte for byte qemu-img's; so must the human table, except that at a
# compressed cluster both stop with an error (kvmm's is one
# "kvmm img:" line).  Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v qemu-io >/dev/null || skip "no qemu-io"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" >/dev/null 2>&1 || die "$*"; }
io() { local f=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; ok qemu-io "${a[@]}" "$f"; }

# same ARGS...: kvmm img map and qemu-img map agree, JSON and human.
checked=0
same() {
	# QEMU guesses "metadata preallocation" from the blocks the file has
	# allocated, which move while the filesystem writes back: let it settle.
	sync -f .
	qemu-img map --output=json "$@" > q.json 2> q.err || die "qemu-img map --output=json $*: $(cat q.err)"
	"$KVMM" img map --output=json "$@" > k.json 2> k.err || die "kvmm img map --output=json $*: $(cat k.err)"
	cmp -s q.json k.json || { diff q.json k.json; die "map --output=json $*: differs from qemu-img"; }
	local qrc=0 krc=0
	qemu-img map "$@" > q.txt 2> q.err || qrc=$?
	"$KVMM" img map "$@" > k.txt 2> k.err || krc=$?
	cmp -s q.txt k.txt || { diff q.txt k.txt; die "map $*: human table differs from qemu-img"; }
	if [ "$qrc" != 0 ]; then
		grep -q 'compressed' q.err || die "qemu-img map $*: $(cat q.err)"
		[ "$krc" = 2 ] && [ "$(wc -l < k.err)" = 1 ] && grep -q '^kvmm img: error: .*compressed' k.err ||
			die "kvmm img map $*: status $krc, stderr $(cat k.err)"
	else
		[ "$krc" = 0 ] || die "kvmm img map $*: status $krc: $(cat k.err)"
	fi
	checked=$((checked + 1))
}

# A chain of 3 in a subdirectory (the File column names each layer as
# qemu-img does: relative to the overlay's directory).
mkdir d
ok qemu-img create -f qcow2 d/base.qcow2 8M
io d/base.qcow2 'write -P 1 0 3M' 'write -P 1 5M 64k' 'write -c -P 2 6M 256k'
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 d/mid.qcow2
io d/mid.qcow2 'write -P 3 512k 128k' 'write -z 2M 128k' 'write -z 4M 64k' 'discard 5M 64k'
ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 d/top.qcow2 12M
io d/top.qcow2 'write -P 4 64k 64k' 'write -P 5 1M 192k' 'write -z 1M 64k' \
	'write -z -u 1088k 64k' 'discard 192k 64k' 'write -c -P 6 3M 128k' 'write -P 7 9M 1M'
for f in d/top.qcow2 d/mid.qcow2 d/base.qcow2; do
	same "$f"
done
same --start-offset=100000 --max-length=3M d/top.qcow2
same --start-offset=64k --max-length=64k d/top.qcow2
same --start-offset=20M d/top.qcow2
same -f qcow2 d/top.qcow2
same -U d/top.qcow2
(cd d && same top.qcow2)

# qcow2 over a raw file shorter than the overlay, with holes.
ok qemu-img create -f raw r.raw 1000000
io r.raw 'write -P 9 64k 100k' 'write -P 9 900k 50k'
ok qemu-img create -f qcow2 -b r.raw -F raw ov.qcow2 3M
io ov.qcow2 'write -P 1 896k 200k' 'write -z 2M 64k'
same ov.qcow2
same r.raw
same -f raw r.raw
same -f raw ov.qcow2

# Cluster sizes at both ends; a size that is not a multiple of them.
for cs in 512 2M; do
	ok qemu-img create -f qcow2 -o cluster_size=$cs c.qcow2 5000000
	io c.qcow2 "write -c -P 3 0 $cs" 'write -P 2 2M 1M' 'write -z 3M 4k' 'write -P 1 4M 4k'
	same c.qcow2
done
ok qemu-img create -f qcow2 -o cluster_size=4k u.qcow2 100005
io u.qcow2 'write -P 1 92k 6k'
same u.qcow2
ok qemu-img create -f qcow2 empty.qcow2 0
same empty.qcow2

# Bad input: status 2, one line.
bad() {
	local rc=0
	"$KVMM" img map "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img map $*: status $rc, want 2"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img map $*: stderr: $(cat err.txt)"
}
bad /nonexistent.qcow2
bad --output=xml d/top.qcow2
bad -f vmdk d/top.qcow2
bad --start-offset=junk d/top.qcow2
ok qemu-img create -f qcow2 -b loop2.qcow2 -F qcow2 -u loop1.qcow2 1M
ok qemu-img create -f qcow2 -b loop1.qcow2 -F qcow2 -u loop2.qcow2 1M
bad loop1.qcow2
echo "PASS img_map ($checked comparisons)"
