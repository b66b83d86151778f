#!/bin/bash
# img_convert.sh KVMM
#
# `kvmm img convert` against qemu-img: raw -> qcow2 -> raw round trips are
# byte-equal (cmp) for several cluster sizes, with and without -c (zlib and
# zstd), and the qcow2 results pass `qemu-img check`; -c output is smaller
# and QEMU maps it as compressed; a qcow2 over a backing chain converts to
# one flat image with the chain's content and no backing file; sparse input
# gives sparse output; -p prints qemu-img's progress text ending at 100;
# images QEMU compressed convert back equal; bad input exits 2 with one
# "kvmm img:" line and creates nothing.  Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v qemu-io >/dev/null || skip "no qemu-io"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" >/dev/null 2>err.txt || die "$* ($(cat err.txt))"; }
conv() { ok "$KVMM" img convert "$@"; }

# 24 MiB + 5 KiB: text-like data, zero runs, random blocks, and holes; the
# size is a multiple of no cluster size.
python3 - <<'PY' || die "making the source"
import os, random
r = random.Random(5)
f = open("src.raw", "wb")
size = 24 * 1024 * 1024 + 5 * 1024
f.truncate(size)
for off in range(0, size, 256 * 1024):
    kind = (off // (256 * 1024)) % 6
    n = min(256 * 1024, size - off)
    f.seek(off)
    if kind in (0, 3):
        f.write(((b"kvmm img convert %d " % off) * n)[:n])
    elif kind == 1:
        f.write(bytes(r.getrandbits(8) for _ in range(n)))
    elif kind == 2:
        f.write(b"\0" * n)      # written zeros
    # kinds 4, 5: holes
f.truncate(size)
PY
[ "$(stat -c %s src.raw)" = $((24 * 1024 * 1024 + 5 * 1024)) ] || die "source size"

for cs in 512 4k 64k 2M; do
	conv -O qcow2 -o cluster_size=$cs src.raw a.qcow2
	ok qemu-img check a.qcow2
	ok qemu-img compare -f raw -F qcow2 src.raw a.qcow2
	conv -O raw a.qcow2 back.raw
	cmp src.raw back.raw || die "raw -> qcow2 ($cs) -> raw differs"
done
plain=$(stat -c %s a.qcow2)

for t in zlib zstd; do
	for cs in 4k 64k; do
		conv -c -O qcow2 -o cluster_size=$cs,compression_type=$t src.raw c.qcow2
		ok qemu-img check c.qcow2
		qemu-img info c.qcow2 | grep "compression type: $t" > /dev/null || die "-c $t: not a $t image"
		conv -f qcow2 -O raw c.qcow2 back.raw
		cmp src.raw back.raw || die "raw -> qcow2 -c ($t, $cs) -> raw differs"
		# QEMU 7 maps compressed data without a host offset.
		qemu-img map --output=json c.qcow2 > map.json
		grep '"data": true' map.json | grep -v '"offset"' > /dev/null ||
			die "-c $t $cs: qemu-img map shows no compressed cluster"
	done
	[ "$(stat -c %s c.qcow2)" -lt $((plain / 2)) ] || die "-c $t: not smaller than half of $plain"
	# What QEMU compressed, kvmm reads.
	ok qemu-img convert -c -O qcow2 -o compression_type=$t src.raw q.qcow2
	conv -O raw q.qcow2 back.raw
	cmp src.raw back.raw || die "qemu-img convert -c ($t) -> kvmm -> raw differs"
done

# Sparse: holes and zero runs are not written (qemu-img's own output is the
# yardstick, with 64 KiB for the file system's own blocks), for raw and
# qcow2 output.
conv -O raw src.raw sparse.raw
ok qemu-img convert -O raw src.raw qsparse.raw
[ "$(du -k sparse.raw | cut -f1)" -le "$(($(du -k qsparse.raw | cut -f1) + 64))" ] ||
	die "raw output less sparse than qemu-img's ($(du -k sparse.raw qsparse.raw | tr '\n' ' '))"
conv -O qcow2 src.raw s.qcow2
ok qemu-img convert -O qcow2 src.raw qs.qcow2
[ "$(stat -c %s s.qcow2)" -le "$(stat -c %s qs.qcow2)" ] || die "qcow2 output larger than qemu-img's"
conv -S 0 -O raw src.raw full.raw
cmp src.raw full.raw || die "-S 0 differs"
[ "$(du -k full.raw | cut -f1)" -ge 24576 ] || die "-S 0 did not allocate everything"

# A chain: raw base <- qcow2 mid (own writes, a zero range) <- qcow2 top,
# larger than the base.  The result is flat: the chain's content, no backing.
ok cp src.raw base.raw
ok qemu-img create -f qcow2 -b base.raw -F raw mid.qcow2
ok qemu-io -c 'write -P 0x55 1M 256k' -c 'write -z 2M 512k' -c 'write -P 0x56 23M 8k' mid.qcow2
ok qemu-img create -f qcow2 -o cluster_size=4k -b mid.qcow2 -F qcow2 top.qcow2 30M
ok qemu-io -c 'write -P 0x66 1100k 10k' -c 'write -P 0x67 29M 4k' top.qcow2
ok qemu-img convert -O raw top.qcow2 want.raw
for fmt in raw qcow2; do
	conv -O $fmt top.qcow2 flat.$fmt
	ok qemu-img compare -F $fmt want.raw flat.$fmt
done
qemu-img info flat.qcow2 | grep "^backing file" > /dev/null && die "flattened image has a backing file"
conv -c -O qcow2 top.qcow2 flatc.qcow2
ok qemu-img check flatc.qcow2
ok qemu-img compare -F qcow2 want.raw flatc.qcow2

# Edge sizes: an empty image (qcow2 with no l1_table, clean for QEMU) and a
# size that is no multiple of 512 (qcow2 rounds it up, as qemu-img does).
: > empty.raw
conv -O qcow2 empty.raw empty.qcow2
ok qemu-img check empty.qcow2
conv -O raw empty.qcow2 empty2.raw
[ "$(stat -c %s empty2.raw)" = 0 ] || die "empty image converts to $(stat -c %s empty2.raw) bytes"
head -c 100001 src.raw > odd.raw
conv -c -O qcow2 odd.raw odd.qcow2
ok qemu-img compare odd.raw odd.qcow2
conv -O raw odd.qcow2 odd2.raw
ok qemu-img convert -O raw odd.qcow2 odd3.raw
cmp odd2.raw odd3.raw || die "odd size: kvmm and qemu-img differ"

# -p: qemu-img's progress text, ending at 100; -q silences it.
"$KVMM" img convert -p -O qcow2 src.raw p.qcow2 > p.txt 2>&1 || die "-p failed"
tr '\r' '\n' < p.txt | grep -v '^$' | tail -1 | grep '(100.00/100%)' > /dev/null ||
	die "-p: progress does not end at 100: $(tr '\r' '\n' < p.txt | tail -3)"
[ "$(tr '\r' '\n' < p.txt | grep -c '/100%')" -ge 2 ] || die "-p: no progress before 100"
"$KVMM" img convert -p -q -O qcow2 src.raw p.qcow2 > p.txt 2>&1 || die "-p -q failed"
[ ! -s p.txt ] || die "-q: printed $(cat p.txt)"

# Bad input: status 2, one line, DEST not created.
bad() {
	local rc=0
	rm -f out.img
	"$KVMM" img convert "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img convert $*: status $rc, want 2"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img convert $*: stderr: $(cat err.txt)"
	[ ! -e out.img ] || die "kvmm img convert $*: created out.img"
}
bad /nonexistent.img out.img
bad -O vmdk src.raw out.img
bad -c src.raw out.img
bad -c -O raw src.raw out.img
bad -O raw -o cluster_size=4k src.raw out.img
bad -O qcow2 -o preallocation=full src.raw out.img
bad -S 1000 src.raw out.img
bad -f vmdk src.raw out.img
bad src.raw
bad -Z src.raw out.img
bad src.raw out.img -O
printf 'QFI\373\0\0\0\3' > trunc.qcow2
bad trunc.qcow2 out.img
# DEST is the source, or in its chain: refused before anything is written.
cp mid.qcow2 mid.before
rc=0; "$KVMM" img convert -O qcow2 top.qcow2 mid.qcow2 2> err.txt || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < err.txt)" = 1 ] || die "DEST in the chain: status $rc, $(cat err.txt)"
cmp mid.qcow2 mid.before || die "DEST in the chain was modified"
# DEST open for writing elsewhere (qemu-io standing in for a VM): refused,
# not truncated.
ok qemu-img create -f qcow2 busy.qcow2 1M
cp busy.qcow2 busy.before
qemu-io -c 'sleep 20000' busy.qcow2 > /dev/null 2>&1 &
holder=$!
for _ in $(seq 50); do
	qemu-img info busy.qcow2 > /dev/null 2>&1 || break # it holds the lock
	sleep 0.1
done
rc=0; "$KVMM" img convert -O qcow2 src.raw busy.qcow2 2> err.txt || rc=$?
kill $holder; wait $holder 2> /dev/null || true
[ "$rc" = 2 ] && [ "$(wc -l < err.txt)" = 1 ] || die "DEST in use: status $rc, $(cat err.txt)"
cmp busy.qcow2 busy.before || die "DEST in use was modified"
echo "PASS img_convert"
