#!/usr/bin/env bash
# Install what kvmm needs to build, test and boot its guests, from Debian 12's
# packages.  Idempotent: installs only what is missing.  Run as root (or with
# sudo available).
set -euo pipefail

pkgs=(
	gcc meson ninja-build pkg-config   # build
	libcmocka-dev                      # unit and device tests
	busybox-static cpio                # the default guest's initramfs
	qemu-system-x86 qemu-utils         # the reference for benchmarks and image interoperability
	python3 time                       # test-result summary; GNU time measures peak RSS in bench/
	acpica-tools                       # iasl: checks our ACPI tables disassemble cleanly
	libzydis-dev                       # x86 decoder of the software CPU (--accel emu)
	liburing-dev                       # asynchronous block I/O (io_uring)
	zlib1g-dev                         # qcow2 compressed clusters (deflate)
	libzstd-dev                        # qcow2 compressed clusters (compression_type zstd)
	fio                                # bench/blk.sh: the host-side reference
	clang libclang-rt-14-dev           # libFuzzer: the bounded fuzz campaign of make check
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "kvmm: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q >&2
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
