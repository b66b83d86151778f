#!/bin/bash
# img_snapshot.sh KVMM
#
# `kvmm img snapshot` against qemu-img: snapshots kvmm creates are listed,
# applied and deleted by qemu-img and the other way round; after every
# operation `qemu-img check` is clean and the image's content (and the
# content of each snapshot, applied) equals what the same operations give
# with qemu-img on a twin image; `-l` prints qemu-img's table byte for
# byte; deleting the last snapshot makes clusters COPIED again (qemu-img
# check reports a stale COPIED flag as corruption).  Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v qemu-io >/dev/null || skip "no qemu-io"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" > log.txt 2>&1 || { cat log.txt; die "$*"; }; }
clean() { qemu-img check "$1" > chk.txt 2>&1 || { head -20 chk.txt; die "$2: qemu-img check $1"; }; }
# same A B WHAT: the two images' guest contents are equal.
same() { qemu-img compare -q "$1" "$2" || die "$3: $1 and $2 differ"; }
io() { ok qemu-io -c "$2" "$1"; }

for cs in 512 64k; do
	rm -f k.qcow2 q.qcow2
	ok "$KVMM" img create -f qcow2 -o cluster_size=$cs k.qcow2 4M
	io k.qcow2 'write -P 1 0 192k'
	io k.qcow2 'write -c -P 9 1M 128k'   # compressed clusters
	io k.qcow2 'write -z 2M 64k'         # zero clusters
	cp k.qcow2 q.qcow2

	# kvmm and qemu-img take the same snapshot of twin images.
	ok "$KVMM" img snapshot -c one k.qcow2
	ok qemu-img snapshot -c one q.qcow2
	clean k.qcow2 "$cs create"
	# The table: same lines, the date column aside (taken at another second).
	"$KVMM" img snapshot -l k.qcow2 | cut -c1-37 > kl.txt
	qemu-img snapshot -l q.qcow2 | cut -c1-37 > ql.txt
	cmp -s kl.txt ql.txt || { diff kl.txt ql.txt; die "$cs: -l differs"; }

	# Writing after the snapshot keeps the snapshot's content.
	for f in k.qcow2 q.qcow2; do
		io $f 'write -P 2 64k 64k'
		io $f 'write -P 3 1M 64k'
		io $f 'write -P 4 3M 64k'
	done
	clean k.qcow2 "$cs write after create"
	same k.qcow2 q.qcow2 "$cs write after create"

	# A second snapshot, by qemu-img on kvmm's image and the reverse.
	ok qemu-img snapshot -c two k.qcow2
	ok "$KVMM" img snapshot -c two q.qcow2
	clean k.qcow2 "$cs qemu-img create on kvmm's image"
	clean q.qcow2 "$cs kvmm create on qemu-img's image"
	qemu-img snapshot -l q.qcow2 | grep -q '^2 *two ' || die "$cs: qemu-img does not list kvmm's id 2"
	io k.qcow2 'write -P 5 0 32k'
	io q.qcow2 'write -P 5 0 32k'

	# Apply "one" with kvmm on one image, qemu-img on the other.
	ok "$KVMM" img snapshot -a one k.qcow2
	ok qemu-img snapshot -a one q.qcow2
	clean k.qcow2 "$cs apply"
	same k.qcow2 q.qcow2 "$cs apply one"
	io k.qcow2 'read -P 1 0 192k'
	io k.qcow2 'read -P 9 1M 128k'
	# kvmm applies by id too (qemu-img -a looks up ids first).
	ok "$KVMM" img snapshot -a 2 k.qcow2
	ok qemu-img snapshot -a two q.qcow2
	clean k.qcow2 "$cs apply by id"
	same k.qcow2 q.qcow2 "$cs apply two"
	io k.qcow2 'read -P 2 64k 64k'

	# Delete "one": kvmm on qemu-img's image, qemu-img on kvmm's.
	ok "$KVMM" img snapshot -d one q.qcow2
	ok qemu-img snapshot -d one k.qcow2
	clean k.qcow2 "$cs qemu-img delete"
	clean q.qcow2 "$cs kvmm delete"
	same k.qcow2 q.qcow2 "$cs after delete"
	# The remaining snapshot still holds its content.
	cp k.qcow2 k2.qcow2
	io k2.qcow2 'write -P 6 0 4M'
	ok "$KVMM" img snapshot -a two k2.qcow2
	same k2.qcow2 q.qcow2 "$cs apply after delete"
	# Deleting the last snapshot: the active image alone uses its
	# clusters, COPIED again (else check reports OFLAG_COPIED).
	ok "$KVMM" img snapshot -d two k.qcow2
	clean k.qcow2 "$cs delete last"
	[ -z "$(qemu-img snapshot -l k.qcow2)" ] || die "$cs: snapshots left"
	qemu-img check -r all k.qcow2 2>&1 | grep -q 'Repairing' && die "$cs: check wanted to repair"
	same k.qcow2 q.qcow2 "$cs after deleting the last"
	# ... and in-place writes go to the same host cluster.
	before=$(qemu-img map --output=json k.qcow2 | head -c 400)
	io k.qcow2 'write -P 7 0 4k'
	after=$(qemu-img map --output=json k.qcow2 | head -c 400)
	[ "$before" = "$after" ] || die "$cs: a write after deleting every snapshot moved a cluster"
	clean k.qcow2 "$cs final write"
done

# The listing, byte for byte (same snapshot table, so same dates).
ok "$KVMM" img create -f qcow2 l.qcow2 1M
ok qemu-img snapshot -c first l.qcow2
ok "$KVMM" img snapshot -c a_name_longer_than_sixteen l.qcow2
ok "$KVMM" img snapshot -c "" l.qcow2
"$KVMM" img snapshot -l l.qcow2 > kl.txt || die "-l"
qemu-img snapshot -l l.qcow2 > ql.txt
cmp -s kl.txt ql.txt || { diff kl.txt ql.txt; die "-l differs from qemu-img"; }
grep -q '^3 ' kl.txt || die "ids are not 1, 2, 3"
"$KVMM" img snapshot -U -l l.qcow2 > kl.txt || die "-U -l"
ok "$KVMM" img create -f raw r.raw 1M
[ -z "$("$KVMM" img snapshot -l r.raw)" ] || die "raw: -l printed something"

# Bad input: status 2, one line.
bad() {
	local rc=0
	"$KVMM" img snapshot "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img snapshot $*: status $rc, want 2"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img snapshot $*: stderr: $(cat err.txt)"
}
bad -a nosuch l.qcow2
bad -d nosuch l.qcow2
bad -c x r.raw
bad -l -c x l.qcow2
bad -l /nonexistent.qcow2
bad -l
printf 'QFI\373\0\0\0\3' > trunc.qcow2
bad -l trunc.qcow2
echo "PASS img_snapshot"
