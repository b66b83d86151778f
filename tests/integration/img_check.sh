#!/bin/bash
# img_check.sh KVMM
#
# `kvmm img check` against `qemu-img check`: on clean and damaged images
# (a leak, a lowered refcount, a wrong COPIED flag) the human summary on
# stdout is identical, the JSON has the same keys and values (filename
# aside), the per-problem lines on stderr are the same, and so are the exit
# statuses (0 clean, 2 corruptions, 3 leaks, 63 raw, 1 errors).  -r leaks
# and -r all repair what qemu-img's repair repairs, with the same report,
# and leave an image qemu-img check finds clean with the data intact.  Bad
# input exits 1 with one "kvmm img:" line.  Needs no /dev/kvm.
source "$(dirname "$0")/lib.sh"

KVMM=$(realpath "$1")
command -v qemu-img >/dev/null || skip "no qemu-img"
command -v python3 >/dev/null || skip "no python3"
cd "$TMP"

die() { echo "FAIL: $*"; exit 1; }

# A 4k-cluster image with 5 data clusters; $2 damages it (python, given
# f (the file), rb (first refcount_block), l2 (first l2_table)).
victim() {
	qemu-img create -q -f qcow2 -o cluster_size=4k "$1" 10M
	qemu-io -c 'write -P 1 0 20k' "$1" >/dev/null
	python3 - "$1" "$2" <<'PY'
import struct, sys
f = open(sys.argv[1], 'r+b')
def q(o):
    f.seek(o); return struct.unpack('>Q', f.read(8))[0]
def put(o, fmt, v):
    f.seek(o); f.write(struct.pack(fmt, v))
rb = q(q(48)); l2 = q(q(40)) & 0x00fffffffffffe00
exec(sys.argv[2])
PY
}

# same ARGS...: kvmm img check and qemu-img check ARGS on copies of the
# last argument agree on stdout, stderr and status (left in $ST).
same() {
	local img=${*: -1} args=("${@:1:$#-1}") krc=0 qrc=0
	cp "$img" k.qcow2; cp "$img" q.qcow2
	"$KVMM" img check "${args[@]}" k.qcow2 > k.out 2> k.err || krc=$?
	qemu-img check "${args[@]}" q.qcow2 > q.out 2> q.err || qrc=$?
	[ "$krc" = "$qrc" ] || die "check ${args[*]} $img: kvmm status $krc, qemu-img $qrc"
	diff <(sed 's/k\.qcow2/X/; s/^kvmm img: error: X: /qemu-img: /' k.err) <(sed 's/q\.qcow2/X/' q.err) >/dev/null ||
		die "check ${args[*]} $img: stderr differs: $(diff k.err q.err)"
	if [[ " ${args[*]} " == *json* ]]; then
		python3 - k.out q.out <<'PY' || die "check ${args[*]} $img: JSON differs"
import json, sys
k = json.load(open(sys.argv[1])); q = json.load(open(sys.argv[2]))
k.pop('filename'); q.pop('filename')
sys.exit(0 if k == q else f"kvmm {k}\nqemu-img {q}")
PY
	else
		diff k.out q.out >/dev/null || die "check ${args[*]} $img: stdout differs: $(diff k.out q.out)"
	fi
	ST=$krc
}

qemu-img create -q -f qcow2 clean.qcow2 64M
qemu-io -c 'write -P 3 0 3M' -c 'write -P 4 40M 64k' clean.qcow2 >/dev/null
qemu-img snapshot -c s clean.qcow2
qemu-io -c 'write -P 5 1M 64k' clean.qcow2 >/dev/null
victim leak.qcow2 'put(rb + 2 * 10, ">H", 1); f.truncate(45056)'
victim low.qcow2 'put(rb + 2 * 6, ">H", 0)'
victim copied.qcow2 'put(l2 + 8, ">Q", q(l2 + 8) & ~(1 << 63))'

same clean.qcow2; [ "$ST" = 0 ] || die "clean image: status $ST"
same --output=json clean.qcow2; [ "$ST" = 0 ] || die "clean image (JSON): status $ST"
same leak.qcow2; [ "$ST" = 3 ] || die "leak: status $ST"
same --output=json leak.qcow2; [ "$ST" = 3 ] || die "leak (JSON): status $ST"
same low.qcow2; [ "$ST" = 2 ] || die "lowered refcount: status $ST"
same copied.qcow2; [ "$ST" = 2 ] || die "COPIED: status $ST"
same --output=json copied.qcow2; [ "$ST" = 2 ] || die "COPIED (JSON): status $ST"

# Repairs: same report and status; afterwards clean for qemu-img, and the
# guest content unchanged.
for spec in "leaks leak.qcow2 0" "all leak.qcow2 0" "leaks low.qcow2 1" "all low.qcow2 0" \
	    "leaks copied.qcow2 0" "all copied.qcow2 0"; do
	set -- $spec
	if [ "$2" = low.qcow2 ] && [ "$1" = all ]; then
		# qemu-img rebuilds the whole refcount structure (other
		# messages); kvmm raises the one refcount: compare results.
		cp low.qcow2 k.qcow2
		rc=0; "$KVMM" img check -r all k.qcow2 > /dev/null 2>&1 || rc=$?
	else
		same -r "$1" "$2"; rc=$ST
	fi
	[ "$rc" = "$3" ] || die "check -r $1 $2: status $rc, want $3"
	if [ "$3" = 0 ]; then
		qemu-img check k.qcow2 > /dev/null 2>&1 || die "check -r $1 $2: qemu-img check still finds problems"
		qemu-img compare "$2" k.qcow2 > /dev/null || die "check -r $1 $2: content changed"
	fi
done
cp leak.qcow2 k.qcow2
"$KVMM" img check -r leaks --output=json k.qcow2 > k.json 2>/dev/null || die "-r leaks --output=json"
grep -q '"leaks-fixed": 1' k.json || die "-r leaks JSON: $(cat k.json)"

# A corrupt-marked image: a read-only check works, -r all clears the mark.
victim cor.qcow2 'put(79, ">B", 2)'
"$KVMM" img check cor.qcow2 > /dev/null 2>&1 || die "check of a corrupt-marked image"
"$KVMM" img check -r all cor.qcow2 > /dev/null 2>&1 || die "check -r all of a corrupt-marked image"
qemu-img info --output=json cor.qcow2 | grep -q '"corrupt": false' || die "corrupt mark not cleared"

# Raw: qemu-img's 63.
truncate -s 1M r.raw
rc=0; "$KVMM" img check r.raw > /dev/null 2> err.txt || rc=$?
[ "$rc" = 63 ] || die "raw: status $rc, want 63"
grep -q 'does not support checks' err.txt || die "raw: $(cat err.txt)"

# Bad input: status 1 (qemu-img check's), one line.
bad() {
	local rc=0
	"$KVMM" img check "$@" > out.txt 2> err.txt || rc=$?
	[ "$rc" = 1 ] || die "kvmm img check $*: status $rc, want 1"
	[ "$(wc -l < err.txt)" = 1 ] && grep -q '^kvmm img: error: ' err.txt ||
		die "kvmm img check $*: stderr: $(cat err.txt)"
}
bad /nonexistent.qcow2
bad
bad clean.qcow2 leak.qcow2
bad -r some clean.qcow2
bad --output=xml clean.qcow2
bad -U -r all clean.qcow2
bad -f vmdk clean.qcow2
bad --frobnicate clean.qcow2
bad clean.qcow2 -r
printf 'QFI\373\0\0\0\3' > trunc.qcow2
bad trunc.qcow2
"$KVMM" img --help | grep -q 'kvmm img check' || die "usage does not mention check"
echo "PASS img_check"
