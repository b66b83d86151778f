#!/usr/bin/env bash
# scripts/guest-initramfs.sh — build the busybox initramfs for test guests; print its path.
#
# Usage: scripts/guest-initramfs.sh [--force] [--with-fio]
#
# Result (under the cache dir $KVMM_CACHE, default ${XDG_CACHE_HOME:-~/.cache}/kvmm):
#   initramfs.cpio.gz     newc cpio, gzip (the Debian cloud kernel has RD_GZIP), for the kernel from
#                         scripts/guest-kernel.sh; the last line on stdout is its path
#   initramfs.stamp       hash of the inputs; the image is rebuilt only when it changes (or with --force)
#   sample.bin            a copy of the guest's /data/sample.bin, and sample.bin.sha256 its "sha256sum" line
#
# With --with-fio (for bench/blk_guest.sh), in the same cache dir, and the default image above is built as usual:
#   initramfs-fio.img     initramfs.cpio.gz, zero padding to a multiple of 4 bytes, then a second, uncompressed newc cpio archive holding the host's
#                         Debian fio as /usr/bin/fio (= /bin/fio) with every shared library `ldd` resolves for it,
#                         at the same paths as on the host, the dynamic loader /lib64/ld-linux-x86-64.so.2 and an
#                         /etc/ld.so.cache made by `ldconfig -r`.  The kernel unpacks concatenated archives, each
#                         compressed or not; the fio part (~85 MiB: Debian links fio against ceph, glusterfs, ICU,
#                         ...) is left uncompressed because gunzip in an emulated guest would cost seconds per boot.
#                         Boot it with --mem 512M or more. The last line on stdout is its path.
#   initramfs-fio.stamp   hash of the base image's stamp, fio's version and the libraries' paths, sizes and mtimes
#   Needs the fio package installed on the host (installed with apt-get when missing).
#
# What is inside:
#   /init                 scripts/initramfs-init (see there: mounts, loads modules, prints KVMM-INIT-OK,
#                         then a shell on the console)
#   /bin/busybox          Debian's busybox-static, plus a symlink in /bin for every applet (`busybox --list`);
#                         /sbin, /usr/bin and /usr/sbin are symlinks to /bin
#   /lib/modules/<ver>/   the kernel modules for the virtio devices (in Debian 12's cloud kernel virtio, virtio_pci,
#                         virtio_mmio, virtio_blk, virtio_net, … are all modules, not built in), with everything
#                         they depend on and a modules.dep cut down to them, so busybox modprobe works
#   /etc/modules          the module names /init loads, in order (change with KVMM_INITRAMFS_MODULES="a b c")
#   /data/sample.bin      1 MiB of deterministic bytes (kvmm_sample_gen in lib.sh) to check guest I/O with sha256sum
#   /dev /proc /sys /tmp /run /root /mnt /etc   empty dirs; /dev is a devtmpfs mounted by /init
#                         (/dev/console for the first open comes from the kernel's built-in initramfs)
#
# Needs on the host: busybox-static and cpio (installed with apt-get when missing), python3, gzip.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=0 with_fio=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	--with-fio) with_fio=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
	*) die "unknown argument: $arg (usage: guest-initramfs.sh [--force] [--with-fio])" ;;
	esac
done

if [ "$with_fio" = 1 ]; then
	# The default image first (its own stamp and lock, untouched), then the fio layer appended to a copy of it.
	base_args=()
	[ "$force" = 1 ] && base_args=(--force)
	base=$(KVMM_PROG=$KVMM_PROG "$0" "${base_args[@]}" | tail -n 1) || die "building the base initramfs failed"
	cache=$(dirname "$base")
	out=$cache/initramfs-fio.img
	stampfile=$cache/initramfs-fio.stamp
	pkg_installed fio || ensure_pkgs fio
	fio=/usr/bin/fio
	[ -x "$fio" ] || die "$fio missing although the fio package is installed"
	# Every library the loader resolves for fio (ldd follows RUNPATHs, e.g. librados -> .../ceph), and the loader.
	libs=$(ldd "$fio" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\/.*ld-linux/ {print $1}' | sort -u)
	[ -n "$libs" ] || die "ldd $fio found no libraries"
	if ldd "$fio" | grep -q 'not found'; then
		die "ldd $fio: $(ldd "$fio" | grep 'not found' | head -n 3 | tr '\n' ' ')"
	fi
	stamp=$(
		{
			cat "$0" "$cache/initramfs.stamp"
			dpkg-query -W -f='fio=${Version}\n' fio
			while IFS= read -r l; do stat -L -c '%n %s %Y' "$l"; done <<<"$libs"
		} | sha256sum | cut -d' ' -f1
	)
	fio_fresh() { [ "$force" = 0 ] && [ -s "$out" ] && [ -s "$stampfile" ] && [ "$(cat "$stampfile")" = "$stamp" ]; }
	if fio_fresh; then printf '%s\n' "$out"; exit 0; fi
	kvmm_lock "$cache/.initramfs-fio.lock"
	if fio_fresh; then printf '%s\n' "$out"; exit 0; fi

	log "building the fio initramfs ($(dpkg-query -W -f='${Version}' fio), $(wc -l <<<"$libs") libraries)"
	work=$(mktemp -d "$cache/.initramfs-fio-build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	root=$work/root
	# /usr/bin is a symlink to /bin in the base image: fio goes to bin/ and no usr/bin entry may shadow the link.
	mkdir -p "$root/bin" "$root/etc" "$root/lib64"
	cp "$fio" "$root/bin/fio"
	while IFS= read -r l; do
		mkdir -p "$root$(dirname "$l")"
		cp -L "$l" "$root$l"
	done <<<"$libs"
	# Directories the loader should search besides its built-in ones (the RUNPATH ones, e.g. ceph).
	while IFS= read -r l; do dirname "$l"; done <<<"$libs" | sort -u >"$root/etc/ld.so.conf"
	ldconfig -r "$root" 2>/dev/null || log "warning: ldconfig -r failed; the guest's loader searches its default dirs"
	rm -f "$root/var/cache/ldconfig/aux-cache"
	rmdir -p "$root/var/cache/ldconfig" 2>/dev/null || true
	# A check on the host before any guest boots: the tree alone must run fio.
	if [ "$(id -u)" = 0 ] && command -v chroot >/dev/null 2>&1; then
		chroot "$root" /bin/fio --version >/dev/null 2>&1 || die "fio does not run from the built tree (chroot test)"
	fi
	find "$root" -exec touch -h -d @0 {} +
	cp "$base" "$work/initramfs-fio.img"
	# The kernel takes a following archive only at a 4-byte aligned offset (zero bytes between are skipped).
	pad=$(( (4 - $(stat -c %s "$base") % 4) % 4 ))
	head -c "$pad" /dev/zero >>"$work/initramfs-fio.img"
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
		>>"$work/initramfs-fio.img" || die "cpio failed"
	mv "$work/initramfs-fio.img" "$out"
	printf '%s\n' "$stamp" >"$stampfile"
	log "fio initramfs ready: $out ($(stat -c %s "$out") bytes)"
	printf '%s\n' "$out"
	exit 0
fi

# Modules /init loads (names as modprobe takes them; dependencies are added from modules.dep).
default_modules="virtio_pci virtio_mmio virtio_blk virtio_net virtio_console virtio_rng virtio_balloon
	virtio_scsi vmw_vsock_virtio_transport virtiofs"
modules=${KVMM_INITRAMFS_MODULES:-$default_modules}
sample_size=1048576

cache=$(kvmm_cache_dir)
out=$cache/initramfs.cpio.gz
stampfile=$cache/initramfs.stamp

# The kernel comes first: its version and modules are inputs.
KVMM_PROG=$KVMM_PROG "$KVMM_SCRIPTS_DIR/guest-kernel.sh" >/dev/null || die "guest-kernel.sh failed"
kdir=$cache/kernel
kver=$(cat "$kdir/version")

# busybox-static ships /bin/busybox; a dynamically linked busybox (package busybox) would not run in the guest.
busybox=/bin/busybox
pkg_installed busybox-static || ensure_pkgs busybox-static
command -v cpio >/dev/null 2>&1 || ensure_pkgs cpio
command -v python3 >/dev/null 2>&1 || die "python3 is needed to generate /data/sample.bin"
[ -x "$busybox" ] || die "$busybox missing although busybox-static is installed"
bbver=$(dpkg-query -W -f='${Version}' busybox-static)

stamp=$(
	{
		cat "$0" "$KVMM_SCRIPTS_DIR/initramfs-init" "$KVMM_SCRIPTS_DIR/lib.sh"
		printf 'kernel=%s busybox=%s modules=%s sample=%s\n' "$kver" "$bbver" "$modules" "$sample_size"
	} | sha256sum | cut -d' ' -f1
)
if [ "$force" = 0 ] && [ -s "$out" ] && [ -s "$stampfile" ] && [ "$(cat "$stampfile")" = "$stamp" ] &&
	[ -s "$cache/sample.bin" ]; then
	printf '%s\n' "$out"
	exit 0
fi

kvmm_lock "$cache/.initramfs.lock"
if [ "$force" = 0 ] && [ -s "$out" ] && [ -s "$stampfile" ] && [ "$(cat "$stampfile")" = "$stamp" ] &&
	[ -s "$cache/sample.bin" ]; then
	printf '%s\n' "$out"
	exit 0
fi

log "building initramfs for kernel $kver"
work=$(mktemp -d "$cache/.initramfs-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,root,mnt,etc,data,usr} "$root/lib/modules/$kver"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

# busybox and its applets
cp "$busybox" "$root/bin/busybox"
"$busybox" --list | while IFS= read -r applet; do
	case $applet in busybox | '' | */*) continue ;; esac
	ln -s busybox "$root/bin/$applet"
done
ln -s bin "$root/sbin"
ln -s ../bin "$root/usr/bin"
ln -s ../bin "$root/usr/sbin"

# /init and a few files in /etc
install -m 0755 "$KVMM_SCRIPTS_DIR/initramfs-init" "$root/init"
printf 'root::0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'kvmm\n' >"$root/etc/hostname"

# Kernel modules: resolve the wanted names to files and add their dependencies (modules.dep lists a module's
# dependencies transitively). A name that is built in (modules.builtin) needs nothing; one that exists in neither
# is reported and skipped, so a different kernel flavour still gets an initramfs.
read -r -d "" -a modlist <<<"$modules" || true  # all words, across lines
python3 - "$kdir/modules" "$root/lib/modules/$kver" "$root/etc/modules" "${modlist[@]}" <<'EOF'
import os, shutil, subprocess, sys
src, dst, listfile, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
norm = lambda p: os.path.basename(p).split(".ko")[0].replace("-", "_")
dep = {}
for line in open(os.path.join(src, "modules.dep")):
    mod, _, deps = line.partition(":")
    dep[mod.strip()] = deps.split()
byname = {norm(m): m for m in dep}
builtin = {norm(l.strip()) for l in open(os.path.join(src, "modules.builtin")) if l.strip()}
want, loaded = [], []
for n in names:
    k = n.replace("-", "_")
    if k in byname:
        loaded.append(n)
        for m in dep[byname[k]][::-1] + [byname[k]]:
            if m not in want:
                want.append(m)
    elif k not in builtin:
        print(f"guest-initramfs.sh: warning: module {n} is neither built in nor a module of this kernel; skipped",
              file=sys.stderr)
dec = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dcq"], ".gz": ["gzip", "-dc"]}
renamed = {}
for m in want:
    base, ext = os.path.splitext(m)
    out = m
    os.makedirs(os.path.join(dst, os.path.dirname(m)), exist_ok=True)
    if ext in dec:
        # Store modules uncompressed: busybox insmod/modprobe loads them without needing kernel decompression.
        out = base
        with open(os.path.join(dst, out), "wb") as f:
            subprocess.run(dec[ext] + [os.path.join(src, m)], stdout=f, check=True)
    else:
        shutil.copyfile(os.path.join(src, m), os.path.join(dst, m))
    renamed[m] = out
with open(os.path.join(dst, "modules.dep"), "w") as f:
    for m in want:
        f.write(renamed[m] + ": " + " ".join(renamed[d] for d in dep[m]) + "\n")
for extra in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
    if os.path.exists(os.path.join(src, extra)):
        shutil.copyfile(os.path.join(src, extra), os.path.join(dst, extra))
with open(listfile, "w") as f:
    f.write("".join(n + "\n" for n in loaded))
print(f"guest-initramfs.sh: {len(loaded)} modules to load ({len(want)} files with dependencies)", file=sys.stderr)
EOF

# Test data, also kept beside the image for the host side of a comparison.
kvmm_sample_gen "$sample_size" >"$root/data/sample.bin"
[ "$(stat -c %s "$root/data/sample.bin")" = "$sample_size" ] || die "sample.bin generation failed"

# Reproducible archive: fixed owner and mtime, sorted names.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) |
	gzip -9n >"$work/initramfs.cpio.gz" || die "cpio/gzip failed"

cp "$root/data/sample.bin" "$cache/sample.bin"
(cd "$cache" && sha256sum sample.bin >sample.bin.sha256)
mv "$work/initramfs.cpio.gz" "$out"
printf '%s\n' "$stamp" >"$stampfile"
log "initramfs ready: $out ($(stat -c %s "$out") bytes)"
printf '%s\n' "$out"
