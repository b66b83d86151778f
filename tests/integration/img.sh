#!/bin/bash
# img.sh KVMM
#
# `kvmm img create` and `kvmm img info` against qemu-img: images kvmm
# creates (raw, qcow2 with each cluster size, overlays over raw and qcow2,
# and one with internal snapshots, whose info must equal qemu-img's)
# pass `qemu-img check` and take QEMU's writes; `kvmm img info` reports what
# `qemu-img info` reports (human text identical for the fields both print,
# JSON keys and values equal); bad input exits 2 with one "kvmm img:" line.
# Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v python3 >/dev/null || skip "no python3"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }
ok() { "$@" >/dev/null 2>&1 || die "$*"; }

ok "$KVMM" img create -f raw base.raw 16M
[ "$(stat -c %s base.raw)" = 16777216 ] || die "raw size"
for cs in 512 4k 64k 2M; do
	ok "$KVMM" img create -f qcow2 -o cluster_size=$cs c.qcow2 100M
	ok qemu-img check c.qcow2
	ok qemu-io -c 'write -P 7 1M 1M' c.qcow2
	ok qemu-img check c.qcow2
done
ok "$KVMM" img create -f qcow2 base.qcow2 16M
ok "$KVMM" img create -f qcow2 -b base.raw -F raw ov.qcow2
ok "$KVMM" img create -f qcow2 -b base.qcow2 -F qcow2 ov2.qcow2 32M
ok qemu-img check ov2.qcow2
# Internal snapshots: info lists them as qemu-img does.
ok qemu-img create -f qcow2 snap.qcow2 1M
ok qemu-img snapshot -c first snap.qcow2
ok qemu-io -c 'write -P 9 0 64k' snap.qcow2
ok qemu-img snapshot -c "second one" snap.qcow2

# Human output: every line kvmm prints, qemu-img prints too.
for f in base.raw ov.qcow2 ov2.qcow2 c.qcow2 snap.qcow2; do
	"$KVMM" img info "$f" > k.txt || die "kvmm img info $f"
	qemu-img info "$f" > q.txt
	if [ "$f" = snap.qcow2 ]; then
		cmp -s k.txt q.txt || die "$f: info differs: $(diff k.txt q.txt)"
	fi
	while IFS= read -r line; do
		grep -qxF -- "$line" q.txt || die "$f: kvmm says '$line', qemu-img does not"
	done < k.txt
	# JSON: kvmm's keys have qemu-img's values.
	"$KVMM" img info --output=json "$f" > k.json || die "kvmm img info --output=json $f"
	qemu-img info --output=json "$f" > q.json
	python3 - k.json q.json <<'PY' || die "$f: JSON differs"
import json, sys
k = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
def same(a, b, path):
    for key, v in a.items():
        if key not in b:
            sys.exit(f"{path}{key}: not in qemu-img's output")
        if isinstance(v, dict):
            same(v, b[key], path + key + ".")
        elif v != b[key]:
            sys.exit(f"{path}{key}: kvmm {v!r}, qemu-img {b[key]!r}")
same(k, q, "")
if "snapshots" in q and k.get("snapshots") != q["snapshots"]:
    sys.exit("snapshots: kvmm %r, qemu-img %r" % (k.get("snapshots"), q["snapshots"]))
PY
done

# Bad input: status 2, one line.
bad() {
	local rc=0
	"$KVMM" img "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 2 ] || die "kvmm img $*: status $rc, want 2"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img $*: stderr: $(cat err.txt)"
}
bad create -f qcow2 -b base.raw x.qcow2
bad create -f vmdk x.img 1M
bad create -f qcow2 -o cluster_size=1000 x.qcow2 1M
bad create -f qcow2 -o preallocation=full x.qcow2 1M
bad create -f raw x.raw
bad info /nonexistent.img
printf 'QFI\373\0\0\0\3' > trunc.qcow2
bad info trunc.qcow2
bad frobnicate
echo "PASS img"
