#!/bin/bash
# img_rebase.sh KVMM
#
# `kvmm img rebase` checked with qemu-img on chains qemu-img and qemu-io
# make: safe mode keeps the guest's view (`qemu-img compare` before and
# after, and against qemu-img rebase of a copy) onto a layer further down,
# onto an unrelated smaller image, onto a raw file, to no backing file
# (-b ""), from another directory, for version 2 and 3 images; `qemu-img
# info` shows the new backing file and format, the other header fields
# unchanged, `qemu-img check` clean; -u only rewrites the header (the new
# and the old backing file may be missing); -p reaches 100 %; bad input
# (missing file, -b without -F, a loop, a chain that loops already, a raw
# FILE, a name too long for the header cluster, a missing new backing
# file) is one "kvmm img:" line, status 2, and leaves FILE unchanged.
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
# backing FILE: "name fmt" from qemu-img info, "-" when none.
backing() {
	qemu-img info --output=json "$1" | python3 -c '
import json, sys
i = json.load(sys.stdin)
print(i.get("backing-filename", "-"), i.get("backing-filename-format", "-"))'
}
# header FILE: qemu-img info's fields that a rebase must not change.
header() {
	qemu-img info --output=json "$1" | python3 -c '
import json, sys
i = json.load(sys.stdin)
print(i["virtual-size"], i["cluster-size"], json.dumps(i["format-specific"], sort_keys=True))'
}

# chain COMPAT: base <- mid <- top (8 MiB) and other.qcow2 (6 MiB).
chain() {
	rm -f base.qcow2 mid.qcow2 top.qcow2 other.qcow2
	ok qemu-img create -f qcow2 -o compat=$1 base.qcow2 8M
	io base.qcow2 'write -P 1 0 3M' 'write -P 1 5M 1M' 'write -c -P 2 7M 128k'
	ok qemu-img create -f qcow2 -o compat=$1 -b base.qcow2 -F qcow2 mid.qcow2
	io mid.qcow2 'write -P 3 512k 128k' 'write -z 2M 128k' 'write -P 4 6M 1000' 'discard 5M 64k'
	ok qemu-img create -f qcow2 -o compat=$1 -b mid.qcow2 -F qcow2 top.qcow2
	io top.qcow2 'write -P 5 64k 64k' 'write -z 1M 64k' 'write -P 6 8388096 512'
	ok qemu-img create -f qcow2 -o compat=$1 other.qcow2 6M
	io other.qcow2 'write -P 7 1M 2M' 'write -P 1 0 512k'
	ok qemu-img convert -O raw top.qcow2 want.raw
}

for compat in 1.1 0.10; do
	# Onto a layer further down; qemu-img rebase of a copy agrees.
	chain $compat
	rm -rf q && mkdir q && cp base.qcow2 mid.qcow2 top.qcow2 q/
	ok qemu-img rebase -b base.qcow2 -F qcow2 q/top.qcow2
	hdr=$(header top.qcow2)
	ok "$KVMM" img rebase -b base.qcow2 -F qcow2 top.qcow2
	same -F raw top.qcow2 want.raw
	same top.qcow2 q/top.qcow2
	[ "$(backing top.qcow2)" = "base.qcow2 qcow2" ] || die "$compat: backing $(backing top.qcow2)"
	[ "$(header top.qcow2)" = "$hdr" ] || die "$compat: header changed: $(header top.qcow2)"
	check top.qcow2
	# Onto an unrelated, smaller image, with -p.
	"$KVMM" img rebase -p -b other.qcow2 -F qcow2 top.qcow2 > progress.txt || die "rebase -p"
	grep -q '(100.00/100%)' progress.txt || die "-p: no 100 %: $(tr '\r' '\n' < progress.txt)"
	same -F raw top.qcow2 want.raw
	[ "$(backing top.qcow2)" = "other.qcow2 qcow2" ] || die "backing $(backing top.qcow2)"
	check top.qcow2
	# Onto a raw file.
	ok qemu-img convert -O raw mid.qcow2 mid.raw
	ok "$KVMM" img rebase -b mid.raw -F raw top.qcow2
	same -F raw top.qcow2 want.raw
	[ "$(backing top.qcow2)" = "mid.raw raw" ] || die "backing $(backing top.qcow2)"
	check top.qcow2
	# To no backing file: everything copied.
	ok "$KVMM" img rebase -b "" top.qcow2
	same -F raw top.qcow2 want.raw
	[ "$(backing top.qcow2)" = "- -" ] || die "-b '': backing $(backing top.qcow2)"
	[ "$(header top.qcow2)" = "$hdr" ] || die "$compat: header changed: $(header top.qcow2)"
	check top.qcow2
done

# From another directory: NEW_BACKING is relative to FILE's.
chain 1.1
mkdir -p sub && mv base.qcow2 mid.qcow2 top.qcow2 sub/
ok "$KVMM" img rebase -b base.qcow2 -F qcow2 sub/top.qcow2
same -F raw sub/top.qcow2 want.raw
[ "$(backing sub/top.qcow2)" = "base.qcow2 qcow2" ] || die "backing $(backing sub/top.qcow2)"
rm -rf sub

# -u: only the header; the new file may not exist, nor the old one.
chain 1.1
ok "$KVMM" img rebase -u -b gone.qcow2 -F qcow2 top.qcow2
[ "$(backing top.qcow2)" = "gone.qcow2 qcow2" ] || die "-u: backing $(backing top.qcow2)"
ok "$KVMM" img rebase -u -b mid.qcow2 -F qcow2 top.qcow2
same -F raw top.qcow2 want.raw
ok "$KVMM" img rebase -u -b "" top.qcow2
[ "$(backing top.qcow2)" = "- -" ] || die "-u -b '': backing $(backing top.qcow2)"
check top.qcow2

# Crash ordering, seen in the system calls (LeakSanitizer off: it cannot
# run under ptrace): the copied data is synced
# before the header (the write at offset 0) names the new backing file,
# and the header is synced after.
if command -v strace >/dev/null; then
	chain 1.1
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -o trace.txt -e trace=openat,pwrite64,fdatasync "$KVMM" img rebase -b other.qcow2 -F qcow2 top.qcow2 ||
		die "kvmm img rebase under strace"
	python3 - trace.txt <<'PY' || die "rebase: header and data writes out of order"
import re, sys
fds, dirty, header, synced_after = {}, False, False, False
for line in open(sys.argv[1]):
    m = re.match(r'openat\(AT_FDCWD, "([^"]+)", [^)]*\) = (\d+)', line)
    if m:
        fds[int(m.group(2))] = m.group(1)
        continue
    m = re.match(r'(pwrite64|fdatasync)\((\d+).*?(?:, (\d+)\) = \d+)?$', line.strip())
    if not m or not fds.get(int(m.group(2)), "").endswith("top.qcow2"):
        continue
    if m.group(1) == "fdatasync":
        dirty = False
        synced_after = header
    elif m.group(3) == "0":
        if dirty:
            sys.exit("the header was written before the data was synced")
        header = True
    else:
        if header:
            sys.exit("a write after the header")
        dirty = True
if not header or not synced_after:
    sys.exit("no header write, or not synced after")
PY
	same -F raw top.qcow2 want.raw
fi

# Bad input: status 2, one line, FILE unchanged.
bad() {
	local rc=0 f=${*: -1} sum=
	[ -f "$f" ] && sum=$(md5sum < "$f")
	"$KVMM" img rebase "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img rebase $*: status $rc, want 2 ($(cat err.txt))"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img rebase $*: stderr: $(cat err.txt)"
	[ -z "$sum" ] || [ "$(md5sum < "$f")" = "$sum" ] || die "kvmm img rebase $*: $f changed"
}
chain 1.1
bad -b base.qcow2 -F qcow2 /nonexistent.qcow2
bad -b base.qcow2 top.qcow2
bad -b base.qcow2 -F vmdk top.qcow2
bad top.qcow2
bad -b top.qcow2 -F qcow2 top.qcow2
grep -q loop err.txt || die "no loop: $(cat err.txt)"
bad -b top.qcow2 -F qcow2 mid.qcow2
grep -q loop err.txt || die "no loop: $(cat err.txt)"
bad -b nothere.qcow2 -F qcow2 top.qcow2
ok qemu-img create -f raw r.raw 1M
bad -b base.qcow2 -F qcow2 r.raw
bad -u -b base.qcow2 -F qcow2 r.raw
ok qemu-img create -f qcow2 -b loop2.qcow2 -F qcow2 -u loop1.qcow2 1M
ok qemu-img create -f qcow2 -b loop1.qcow2 -F qcow2 -u loop2.qcow2 1M
bad -b base.qcow2 -F qcow2 loop1.qcow2
ok qemu-img create -f qcow2 -o cluster_size=512 small.qcow2 1M
bad -u -b "$(printf 'x%.0s' $(seq 450))" -F qcow2 small.qcow2
grep -q 'header cluster' err.txt || die "long name: $(cat err.txt)"
check small.qcow2
echo "PASS img_rebase"
