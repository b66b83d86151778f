#!/usr/bin/env bash
# scripts/guest-kernel.sh — fetch a Debian cloud kernel for test guests; print the path of its bzImage.
#
# Usage: scripts/guest-kernel.sh [--refresh]
#
# Result (under the cache dir $KVMM_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/kvmm):
#   kernel/vmlinuz    the bzImage (a copy of boot/vmlinuz-<ver> from the package)
#   kernel/modules/   the lib/modules/<ver> tree (modules.builtin, modules.dep, kernel/…/*.ko)
#   kernel/config     the kernel's .config
#   kernel/version    <ver>, e.g. 6.1.0-56-cloud-amd64
#   kernel/package    the Debian package name and version it came from
# The last line on stdout is the path of kernel/vmlinuz.
#
# How: the newest linux-image-<ver>-cloud-amd64 that apt knows (the one the metapackage linux-image-cloud-amd64
# depends on; else the highest version from apt-cache search) is fetched with `apt-get download` and unpacked
# with `dpkg -x` into the cache — never installed on the host. When kernel/ is complete nothing else is done
# (no apt call at all); --refresh looks again for a newer kernel and replaces the cached one if there is.
# The cloud flavour is chosen because it is small and has the virtio drivers built in.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

refresh=0
for arg in "$@"; do
	case $arg in
	--refresh) refresh=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
	*) die "unknown argument: $arg (usage: guest-kernel.sh [--refresh])" ;;
	esac
done

cache=$(kvmm_cache_dir)
kdir=$cache/kernel

kernel_complete() {
	[ -s "$kdir/vmlinuz" ] && [ -s "$kdir/version" ] && [ -s "$kdir/modules/modules.builtin" ]
}

if [ "$refresh" = 0 ] && kernel_complete; then
	printf '%s\n' "$kdir/vmlinuz"
	exit 0
fi

kvmm_lock "$cache/.kernel.lock"
# Another run may have finished the job while we waited for the lock.
if [ "$refresh" = 0 ] && kernel_complete; then
	printf '%s\n' "$kdir/vmlinuz"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: a Debian host is needed to fetch the guest kernel"
command -v dpkg >/dev/null 2>&1 || die "dpkg not found: a Debian host is needed to unpack the guest kernel"
ensure_apt_lists

# The package the metapackage points at is the current one for this release.
find_package() {
	local pkg
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache search --names-only '^linux-image-[0-9].*-cloud-amd64$' 2>/dev/null |
			awk '{print $1}' | sort -V | tail -n1)
	fi
	printf '%s\n' "$pkg"
}
pkg=$(find_package)
[ -n "$pkg" ] || die "no linux-image-*-cloud-amd64 package known to apt (is deb.debian.org main in sources.list?)"

pkgver=$(apt-cache policy "$pkg" | sed -n 's/^ *Candidate: //p')
if [ "$refresh" = 1 ] && kernel_complete && [ -s "$kdir/package" ] && [ "$(cat "$kdir/package")" = "$pkg $pkgver" ]; then
	log "cached kernel is already the newest ($pkg $pkgver)"
	printf '%s\n' "$kdir/vmlinuz"
	exit 0
fi

work=$(mktemp -d "$cache/.kernel-new.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "downloading $pkg ($pkgver)"
# apt-get download writes into the current directory. As root it would drop privileges to _apt, which cannot
# write into a private cache dir; the sandbox user is set to root for this one download instead.
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2) ||
	die "apt-get download $pkg failed"
deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -n1)
[ -n "$deb" ] || die "apt-get download $pkg produced no .deb"

log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$work/root" || die "dpkg -x $(basename "$deb") failed"

vmlinuz=$(find "$work/root/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "$pkg has no boot/vmlinuz-*"
ver=${vmlinuz##*/vmlinuz-}
moddir=
for d in "$work/root/lib/modules/$ver" "$work/root/usr/lib/modules/$ver"; do
	[ -d "$d" ] && moddir=$d && break
done
[ -n "$moddir" ] || die "$pkg has no lib/modules/$ver"
[ -s "$moddir/modules.builtin" ] || die "$pkg has no modules.builtin"

# Debian packages ship no modules.dep (depmod runs at install time); make one so modprobe works in the guest.
if [ ! -s "$moddir/modules.dep" ]; then
	if command -v depmod >/dev/null 2>&1; then
		depmod -b "$work/root" "$ver" 2>/dev/null || depmod -b "$work/root/usr" "$ver" 2>/dev/null ||
			log "warning: depmod failed; modules.dep missing"
	elif command -v busybox >/dev/null 2>&1; then
		(cd "$moddir" && busybox depmod -b "$work/root" "$ver") 2>/dev/null ||
			log "warning: busybox depmod failed; modules.dep missing"
	fi
fi

new=$work/kernel
mkdir -p "$new"
cp "$vmlinuz" "$new/vmlinuz"
mv "$moddir" "$new/modules"
[ -f "$work/root/boot/config-$ver" ] && cp "$work/root/boot/config-$ver" "$new/config"
printf '%s\n' "$ver" >"$new/version"
printf '%s %s\n' "$pkg" "$pkgver" >"$new/package"

# Swap in the new tree in two renames so a reader never sees a half-written kernel/.
rm -rf "$cache/.kernel-old"
[ -e "$kdir" ] && mv "$kdir" "$cache/.kernel-old"
mv "$new" "$kdir"
rm -rf "$cache/.kernel-old"

log "kernel $ver ready in $kdir"
printf '%s\n' "$kdir/vmlinuz"
