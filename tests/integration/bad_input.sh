#!/bin/bash
# bad_input.sh KVMM CASE BZIMAGE MULTIBOOT
#
# kvmm given bad input must fail cleanly: exit status 2 (`kvmm run --help`:
# "kvmm failed: bad flags or files, or a host error"), exactly one line on
# stderr starting with "kvmm:", and neither a hang (timeout) nor a crash
# (death by signal).  Cases:
#   missing-kernel         --kernel names no file
#   empty-kernel           a 0-byte kernel
#   directory-kernel       --kernel /
#   foreign-kernel         a text file (/etc/passwd) as the kernel
#   truncated-bzimage      the first 600 bytes of basic.bzImage (setup cut)
#   truncated-bzimage-body setup intact, protected-mode part cut short
#   truncated-elf          the first 100 bytes of multiboot.elf (phdrs cut)
#   truncated-elf-body     multiboot.elf cut inside its segment
#   missing-initrd         --initrd names no file
#   initrd-too-big         a 300 MiB (sparse) initrd for a 128 MiB guest
#   cpus-0 / cpus-huge / cpus-junk        --cpus 0 / 100000 / two
#   mem-0 / mem-huge / mem-junk           --mem 0 / 99999999G / 12Q
#   cmdline-too-long       a 5000-character --cmdline (bzImage: over its limit)
#   cmdline-too-long-multiboot  the same for multiboot.elf (over kvmm's 4095)
#   cmdline-over-image-limit  3000 characters for basic.bzImage, whose
#                          setup header says cmdline_size 2047
#   unknown-option         --frobnicate
#   no-kernel              "kvmm run" without --kernel
#   bad-accel              --accel warp
#   bad-console            --console /nonexistent/dir/file
# These need no /dev/kvm: without it kvmm fails too, and must do so the same
# clean way.
source "$(dirname "$0")/lib.sh"

KVMM=$1 CASE=$2 BZIMAGE=$3 MULTIBOOT=$4
require_file "$KVMM"
require_file "$BZIMAGE"
require_file "$MULTIBOOT"

kernel=$BZIMAGE
args=()
long() { head -c "$1" /dev/zero | tr '\0' 'a'; }

case $CASE in
missing-kernel) kernel=$TMP/no-such-kernel ;;
empty-kernel) kernel=$TMP/empty && : >"$kernel" ;;
directory-kernel) kernel=/ ;;
foreign-kernel) kernel=$TMP/passwd && cp /etc/passwd "$kernel" ;;
truncated-bzimage) kernel=$TMP/trunc && head -c 600 "$BZIMAGE" >"$kernel" ;;
truncated-bzimage-body)
	setup=$(( ($(od -An -tu1 -j 0x1f1 -N1 "$BZIMAGE") + 1) * 512 ))
	kernel=$TMP/trunc && head -c $((setup + 1000)) "$BZIMAGE" >"$kernel"
	;;
truncated-elf) kernel=$TMP/trunc && head -c 100 "$MULTIBOOT" >"$kernel" ;;
truncated-elf-body) kernel=$TMP/trunc && head -c 8192 "$MULTIBOOT" >"$kernel" ;;
missing-initrd) args=(--initrd "$TMP/no-such-initrd") ;;
initrd-too-big) truncate -s 300M "$TMP/big" && args=(--initrd "$TMP/big" --mem 128M) ;;
cpus-0) args=(--cpus 0) ;;
cpus-huge) args=(--cpus 100000) ;;
cpus-junk) args=(--cpus two) ;;
mem-0) args=(--mem 0) ;;
mem-huge) args=(--mem 99999999G) ;;
mem-junk) args=(--mem 12Q) ;;
cmdline-too-long) args=(--cmdline "$(long 5000)") ;;
cmdline-too-long-multiboot) kernel=$MULTIBOOT args=(--cmdline "$(long 5000)") ;;
cmdline-over-image-limit) args=(--cmdline "$(long 3000)") ;;
unknown-option) args=(--frobnicate) ;;
bad-accel) args=(--accel warp) ;;
bad-console) args=(--console /nonexistent/dir/file) ;;
no-kernel) kernel= ;;
*)
	echo "unknown case $CASE"
	exit 2
	;;
esac

if [ -n "$kernel" ]; then
	run_kvmm bad run --kernel "$kernel" "${args[@]}"
else
	run_kvmm bad run "${args[@]}"
fi
check_no_hang_no_signal
[ "$RC" != 0 ] || fail "exit status 0 for bad input ($CASE)"
if [ $((RC & 1)) = 1 ] && grep -q '^RESULT ' "$OUT"; then
	fail "the guest ran: kvmm accepted the bad input ($CASE)"
fi
[ "$RC" = 2 ] || fail "exit status $RC for bad input ($CASE), expected 2"
nlines=$(wc -l <"$ERR")
if [ "$nlines" != 1 ] || ! head -n 1 "$ERR" | grep -q '^kvmm:'; then
	fail "stderr must be exactly one line starting with \"kvmm:\"; it has $nlines line(s)"
fi
echo "stderr: $(cat "$ERR")"
pass "$CASE: exit status $RC"
