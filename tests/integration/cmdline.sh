#!/bin/bash
# cmdline.sh KVMM GUEST FORMAT LEN
#
# A command line of exactly LEN characters reaches the guest whole: the
# guest checks that pad= has the promised length and that end=1 is the last
# word.  Run at each format's limit: 2047 for the bzImage (its setup
# header's cmdline_size), 4095 for PVH (kvmm's own limit, BOOT_CMDLINE_MAX
# - 1), and for multiboot 4095 minus the kernel path and a blank, which kvmm
# puts in front as GRUB does.
source "$(dirname "$0")/lib.sh"

KVMM=$1 GUEST=$2 FORMAT=$3 LEN=$4
require_file "$KVMM"
require_file "$GUEST"
require_kvm

[ "$FORMAT" = multiboot ] && LEN=$((LEN - ${#GUEST} - 1))
prefix="tests=cmdline padlen=XXXX pad="
suffix=" end=1"
padlen=$((LEN - ${#prefix} - ${#suffix}))
pad=$(head -c "$padlen" /dev/zero | tr '\0' 'p')
cmdline="tests=cmdline padlen=$(printf '%04d' "$padlen") pad=$pad$suffix"
[ "${#cmdline}" = "$LEN" ] || { echo "internal error: ${#cmdline} != $LEN"; exit 2; }

run_kvmm cmdline run --kernel "$GUEST" --cmdline "$cmdline" --console stdio
check_no_hang_no_signal
check_guest cmdline
check_status 1
pass "$LEN-character command line delivered whole"
