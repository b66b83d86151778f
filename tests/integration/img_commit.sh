#!/bin/bash
# img_commit.sh KVMM
#
# `kvmm img commit` checked with qemu-img on chains that qemu-img and
# qemu-io make (data, zero clusters over data, discarded and compressed
# clusters, a qcow2 base and a raw base):
#   - the base afterwards holds FILE's guest view (`qemu-img compare`
#     with FILE's content taken before), the same as after qemu-img commit
#     of a copy, and `qemu-img check` is clean on every image;
#   - FILE is emptied (qemu-img map shows nothing present at depth 0) and
#     still reads the same; with -d it keeps its clusters;
#   - -b BASE two layers down carries the middle layer's data too and
#     keeps FILE (implied -d);
#   - -p prints progress up to 100 %; bad input (missing file, no backing
#     file, BASE not in the chain, a base another process holds, a base
#     smaller than FILE) is one "kvmm img:" line and status 2.
# Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v qemu-io >/dev/null || skip "no qemu-io"
command -v python3 >/dev/null || skip "no python3"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" >/dev/null 2>&1 || die "$*"; }
io() { local f=$1; shift; local a=(); for c in "$@"; do a+=(-c "$c"); done; ok qemu-io "${a[@]}" "$f"; }
check() { for f; do qemu-img check -q "$f" || die "qemu-img check $f"; done; }
same() { qemu-img compare -q "$@" || die "qemu-img compare $*: content differs"; }
# depth0 FILE: the ranges present in FILE's own layer, merged ("zero"
# is left out: QEMU guesses it from the file's allocation, which changes
# with the filesystem's writeback).
depth0() {
	qemu-img map --output=json "$1" | python3 -c '
import json, sys
r = []
for e in json.load(sys.stdin):
    if e["depth"] == 0 and e["present"]:
        if r and r[-1][1] == e["start"]:
            r[-1][1] += e["length"]
        else:
            r.append([e["start"], e["start"] + e["length"]])
print(json.dumps(r))'
}

# chain: base (qcow2) <- mid <- top, 8 MiB, all kinds of clusters.
chain() {
	rm -f base.qcow2 mid.qcow2 top.qcow2
	ok qemu-img create -f qcow2 base.qcow2 8M
	io base.qcow2 'write -P 1 0 3M' 'write -P 1 5M 1M' 'write -c -P 2 7M 128k'
	ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
	io mid.qcow2 'write -P 3 512k 128k' 'write -z 2M 128k' 'discard 5M 64k'
	ok qemu-img create -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
	io top.qcow2 'write -P 4 64k 64k' 'write -c -P 5 3M 128k' 'write -P 6 1M 64k' \
		'write -z 1M 64k' 'discard 192k 64k' 'write -z 5M 192k' 'write -P 7 7M 4k' \
		'write -P 8 8388096 512'
	ok qemu-img convert -O raw top.qcow2 want.raw
	ok qemu-img convert -O raw mid.qcow2 mid0.raw
	ok qemu-img convert -O raw base.qcow2 base0.raw
}

# Into the backing file; FILE emptied.  qemu-img commit of a copy of the
# chain gives the same guest content.
chain
mkdir q && cp base.qcow2 mid.qcow2 top.qcow2 q/
ok qemu-img commit q/top.qcow2
out=$("$KVMM" img commit top.qcow2) || die "kvmm img commit top.qcow2"
[ "$out" = "Image committed." ] || die "commit printed '$out'"
check base.qcow2 mid.qcow2 top.qcow2
same -F raw mid.qcow2 want.raw
same -F raw top.qcow2 want.raw
same -F raw base.qcow2 base0.raw
[ "$(depth0 top.qcow2)" = "[]" ] || die "top.qcow2 not emptied: $(depth0 top.qcow2)"
same q/mid.qcow2 mid.qcow2
same q/top.qcow2 top.qcow2

# -d keeps FILE's clusters.
chain
before=$(depth0 top.qcow2)
[ "$before" != "[]" ] || die "test chain has nothing in top.qcow2"
out=$("$KVMM" img commit -d -q top.qcow2) || die "kvmm img commit -d"
[ -z "$out" ] || die "-q printed '$out'"
[ "$(depth0 top.qcow2)" = "$before" ] || die "-d: top.qcow2 changed"
same -F raw mid.qcow2 want.raw
check mid.qcow2 top.qcow2

# -b BASE: the middle layer's data too; FILE kept (implied -d); the name
# as given relative to FILE's directory, from another directory.
chain
mkdir -p sub && mv base.qcow2 mid.qcow2 top.qcow2 sub/
before=$(depth0 sub/top.qcow2)
mid_before=$(depth0 sub/mid.qcow2)
ok "$KVMM" img commit -b base.qcow2 sub/top.qcow2
same -F raw sub/base.qcow2 want.raw
[ "$(depth0 sub/top.qcow2)" = "$before" ] || die "-b: top.qcow2 changed"
[ "$(depth0 sub/mid.qcow2)" = "$mid_before" ] || die "-b: mid.qcow2 was written"
check sub/base.qcow2 sub/mid.qcow2 sub/top.qcow2
rm -rf sub

# A raw base, with -p: progress up to 100 %.
ok qemu-img create -f raw r.raw 4M
io r.raw 'write -P 1 0 4M'
ok qemu-img create -f qcow2 -b r.raw -F raw ov.qcow2
io ov.qcow2 'write -P 2 1M 1M' 'write -z 3M 64k' 'write -P 3 4193792 512'
ok qemu-img convert -O raw ov.qcow2 want.raw
"$KVMM" img commit -p ov.qcow2 > progress.txt || die "kvmm img commit -p"
grep -q '(100.00/100%)' progress.txt || die "-p: no 100 %: $(tr '\r' '\n' < progress.txt)"
grep -q 'Image committed.' progress.txt || die "-p: no 'Image committed.'"
cmp r.raw want.raw || die "raw base differs"
[ "$(depth0 ov.qcow2)" = "[]" ] || die "ov.qcow2 not emptied"
check ov.qcow2

# Crash ordering, seen in the system calls (LeakSanitizer cannot run
# under ptrace: off there): every write to the base is
# followed by an fdatasync of it before the overlay is first written.
if command -v strace >/dev/null; then
	chain
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -o trace.txt -e trace=openat,pwrite64,fallocate,fdatasync "$KVMM" img commit -q top.qcow2 ||
		die "kvmm img commit under strace"
	python3 - trace.txt <<'PY' || die "commit: the overlay was written before the base was synced"
import re, sys
fds, base_dirty, base_writes = {}, False, 0
for line in open(sys.argv[1]):
    m = re.match(r'openat\(AT_FDCWD, "([^"]+)", [^)]*\) = (\d+)', line)
    if m:
        fds[int(m.group(2))] = m.group(1)
        continue
    m = re.match(r'(pwrite64|fallocate|fdatasync)\((\d+)', line)
    if not m:
        continue
    name = fds.get(int(m.group(2)), "")
    if name.endswith("mid.qcow2"):
        if m.group(1) == "fdatasync":
            base_dirty = False
        else:
            base_dirty, base_writes = True, base_writes + 1
    elif name.endswith("top.qcow2") and m.group(1) != "fdatasync":
        if base_dirty or not base_writes:
            sys.exit(f"write to the overlay with the base not synced: {line.strip()}")
if base_dirty or not base_writes:
    sys.exit("the base was not synced at the end")
PY
	same -F raw mid.qcow2 want.raw
fi

# Bad input: status 2, one line.
bad() {
	local rc=0
	"$KVMM" img commit "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img commit $*: status $rc, want 2 ($(cat err.txt))"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img commit $*: stderr: $(cat err.txt)"
}
chain
bad /nonexistent.qcow2
bad base.qcow2
bad -b nothere.qcow2 top.qcow2
bad -f vmdk top.qcow2
bad
ok qemu-img create -f qcow2 -b base.qcow2 -F qcow2 big.qcow2 16M
bad big.qcow2
# The base is open in another process: no writer lock for us, nothing
# written anywhere.
qemu-io -c 'sleep 20000' mid.qcow2 > /dev/null 2>&1 &
holder=$!
sleep 1
bad top.qcow2
kill "$holder"; wait "$holder" 2>/dev/null || true
grep -q 'mid.qcow2.*lock' err.txt || die "lock error: $(cat err.txt)"
same -F raw mid.qcow2 mid0.raw
echo "PASS img_commit"
