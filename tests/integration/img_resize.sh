#!/bin/bash
# img_resize.sh KVMM
#
# `kvmm img resize` against qemu-img: raw and qcow2 images grow (qemu-img
# info reports the new virtual size, qemu-img check is clean, old content
# is intact and the new area reads zeros); a resize across many l1 entries
# (1M -> 1T, 64k clusters: l1_table from 1 entry to 2048) grows the
# l1_table; an image with snapshots grows and its snapshots keep their
# size; shrinking needs --shrink; a qcow2 shrink frees the clusters past
# the end and gives the image qemu-img's shrink gives (compare, check clean,
# fewer allocated clusters); growing an overlay over a longer backing file
# shows zeros, not the backing file, as qemu-img does; bad sizes exit 2
# with one "kvmm img:" line.  Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v qemu-io >/dev/null || skip "no qemu-io"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" > log.txt 2>&1 || { cat log.txt; die "$*"; }; }
clean() { qemu-img check "$1" > chk.txt 2>&1 || { head -20 chk.txt; die "qemu-img check $1"; }; }
vsize() { qemu-img info --output=json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }
io() { ok qemu-io "${@:1:$#-1}" -c "${!#}"; }

# raw
ok "$KVMM" img create -f raw r.raw 1M
io -f raw r.raw 'write -P 1 0 1M'
"$KVMM" img resize -f raw r.raw +1M > out.txt || die "raw +1M"
[ "$(cat out.txt)" = "Image resized." ] || die "raw: printed '$(cat out.txt)'"
[ "$(vsize -f raw r.raw)" = 2097152 ] || die "raw: size $(vsize -f raw r.raw)"
io -f raw r.raw 'read -P 1 0 1M'
io -f raw r.raw 'read -P 0 1M 1M'
[ -z "$("$KVMM" img resize -q -f raw r.raw 3M)" ] || die "-q printed something"
[ "$(vsize -f raw r.raw)" = 3145728 ] || die "raw 3M"
ok "$KVMM" img resize -f raw --shrink r.raw -- -2M
[ "$(vsize -f raw r.raw)" = 1048576 ] || die "raw shrink"
io -f raw r.raw 'read -P 1 0 1M'

# qcow2: grow within the l1_table, then across it (1 entry -> 2048).
# (512-byte clusters: an l1 entry maps 32 KiB; 1T would need a 256 MiB
# l1_table, past QEMU's 32 MiB limit, so 1G there: 32768 entries.)
for cs in 512 64k; do
	big=1T shift=40
	if [ $cs = 512 ]; then big=1G shift=30; fi
	rm -f q.qcow2
	ok "$KVMM" img create -f qcow2 -o cluster_size=$cs q.qcow2 1M
	io q.qcow2 'write -P 2 0 1M'
	ok "$KVMM" img resize q.qcow2 2M
	clean q.qcow2
	[ "$(vsize q.qcow2)" = 2097152 ] || die "$cs: 2M"
	ok "$KVMM" img resize q.qcow2 +$big
	clean q.qcow2
	want=$((2 * 1024 * 1024 + (1 << shift)))
	[ "$(vsize q.qcow2)" = $want ] || die "$cs: +$big"
	io q.qcow2 'read -P 2 0 1M'
	io q.qcow2 'read -P 0 1M 1M'
	io q.qcow2 "read -P 0 $big 1M"
	# The new l1 entries work: QEMU writes at the far end.
	io q.qcow2 "write -P 3 $big 64k"
	clean q.qcow2
	io q.qcow2 "read -P 3 $big 64k"
done
# The l1_table really moved and grew (l1_size field, header bytes 36..39).
l1_size=$(od -An -tu1 -j36 -N4 q.qcow2 | awk '{print $1*16777216+$2*65536+$3*256+$4}')
[ "$l1_size" = 2049 ] || die "l1_size $l1_size, want 2049"

# With snapshots (version 3): the image grows, the snapshot keeps its size.
ok "$KVMM" img create -f qcow2 s.qcow2 1M
io s.qcow2 'write -P 4 0 64k'
ok "$KVMM" img snapshot -c before s.qcow2
ok "$KVMM" img resize s.qcow2 1G
clean s.qcow2
[ "$(vsize s.qcow2)" = 1073741824 ] || die "snapshot image: size"
ok qemu-img snapshot -a before s.qcow2
[ "$(vsize s.qcow2)" = 1048576 ] || die "applied snapshot: size $(vsize s.qcow2)"
io s.qcow2 'read -P 4 0 64k'
clean s.qcow2
ok qemu-img resize s.qcow2 64M
ok "$KVMM" img snapshot -a before s.qcow2
[ "$(vsize s.qcow2)" = 1048576 ] || die "kvmm apply: size $(vsize s.qcow2)"
clean s.qcow2

# Refusals and bad input: status 2, one line, image unchanged.
bad() {
	local rc=0
	"$KVMM" img resize "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img resize $*: status $rc, want 2"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img resize $*: stderr: $(cat err.txt)"
}
# qcow2 shrink: the same image as qemu-img's shrink, clusters freed.
alloc() { qemu-img check --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocated-clusters"])'; }
for cs in 512 64k; do
	ok qemu-img create -q -f qcow2 -o cluster_size=$cs s.qcow2 8M
	io s.qcow2 'write -P 5 0 8M'
	cp s.qcow2 sq.qcow2
	before=$(alloc s.qcow2)
	ok "$KVMM" img resize --shrink s.qcow2 3000320    # not cluster aligned
	ok qemu-img resize -q --shrink sq.qcow2 3000320
	[ "$(vsize s.qcow2)" = 3000320 ] || die "shrink $cs: size $(vsize s.qcow2)"
	clean s.qcow2
	ok qemu-img compare s.qcow2 sq.qcow2
	[ "$(alloc s.qcow2)" -lt "$before" ] || die "shrink $cs: $(alloc s.qcow2) clusters, were $before"
	ok "$KVMM" img resize s.qcow2 8M
	io s.qcow2 'read -P 5 0 3000320'
	io s.qcow2 "read -P 0 3000320 $((8388608 - 3000320))"
	clean s.qcow2
done
# Growing an overlay past its old size over a longer backing file: zeros.
ok qemu-img create -q -f raw long.raw 8M
io -f raw long.raw 'write -P 7 0 8M'
ok "$KVMM" img create -f qcow2 -b long.raw -F raw ov.qcow2 2M
ok "$KVMM" img resize ov.qcow2 6M
io ov.qcow2 'read -P 7 0 2M'
io ov.qcow2 'read -P 0 2M 4M'
clean ov.qcow2
ok "$KVMM" img resize --shrink ov.qcow2 1M
ok "$KVMM" img resize ov.qcow2 8M
io ov.qcow2 'read -P 7 0 1M'
io ov.qcow2 'read -P 0 1M 7M'
clean ov.qcow2

cp q.qcow2 q0.qcow2
bad q.qcow2 1M
bad q.qcow2 -- -1G
bad -f raw r.raw 512k
bad -f raw r.raw -- -1M
bad -f raw r.raw -- -2M
bad q.qcow2 +1x
bad q.qcow2 junk
bad q.qcow2 100000000000000000000
bad q.qcow2 1000001
bad q.qcow2 3E
bad /nonexistent.qcow2 1G
bad q.qcow2
cmp -s q.qcow2 q0.qcow2 || die "a refused resize changed the image"
[ "$(vsize -f raw r.raw)" = 1048576 ] || die "a refused raw resize changed it"
echo "PASS img_resize"
