# shellcheck shell=bash
# scripts/lib.sh — helpers shared by the guest-asset scripts (sourced, not run).
#
# Conventions for every script in scripts/:
#   - the one useful result (a path) is printed last on stdout;
#   - progress goes to stderr, prefixed with the script name;
#   - a failure is one line on stderr, "<script>: error: ...", and a non-zero exit;
#   - everything is cached under $KVMM_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/kvmm), never in the repo,
#     and nothing is ever installed on the host except the helper tools named in the scripts
#     (busybox-static, cpio) — the guest kernel is unpacked with dpkg -x, not installed.

# shellcheck disable=SC2034  # used by the scripts that source this file
KVMM_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KVMM_PROG=${KVMM_PROG:-$(basename "$0")}

log() { printf '%s: %s\n' "$KVMM_PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$KVMM_PROG" "$*" >&2; exit 1; }

# kvmm_cache_dir: print (and create) the cache directory.
kvmm_cache_dir() {
	local dir=${KVMM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kvmm}
	mkdir -p "$dir" || die "cannot create cache directory $dir"
	printf '%s\n' "$dir"
}

# kvmm_lock FILE: take an exclusive lock on FILE for the rest of the script (fd 9), so two test runs that
# build the same asset at once do not step on each other.
kvmm_lock() {
	command -v flock >/dev/null 2>&1 || return 0
	exec 9>"$1" || die "cannot open lock file $1"
	flock 9 || die "cannot lock $1"
}

# apt_lists_present: true when apt has package lists to search (apt-cache finds nothing without them).
apt_lists_present() {
	local f
	for f in /var/lib/apt/lists/*_Packages*; do
		[ -s "$f" ] && return 0
	done
	return 1
}

# ensure_apt_lists: run `apt-get update` once if the package lists are missing or empty.
ensure_apt_lists() {
	apt_lists_present && return 0
	log "apt package lists are missing; running apt-get update"
	as_root apt-get update -qq >&2 || die "apt-get update failed"
	apt_lists_present || die "apt-get update left no package lists in /var/lib/apt/lists"
}

# as_root CMD...: run CMD as root (directly when we are root, else through sudo if it is there).
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run: $*"
	fi
}

# pkg_installed PKG: true when the Debian package PKG is installed.
pkg_installed() {
	dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

# ensure_pkgs PKG...: apt-get install whichever of the packages are missing (host helper tools only).
ensure_pkgs() {
	local missing=() p
	for p in "$@"; do
		pkg_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	ensure_apt_lists
	log "installing ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
		|| die "apt-get install ${missing[*]} failed"
}

# kvmm_sample_gen N: write N deterministic pseudo-random bytes to stdout. Block i (32 bytes) is
# SHA-256("kvmm-sample-" || i as 8-byte little endian), i = 0, 1, ... — easy to regenerate in any language,
# so tests can compare a guest's sha256sum with the host's.
kvmm_sample_gen() {
	python3 -c '
import hashlib, sys
n = int(sys.argv[1]); out = bytearray(); i = 0
while len(out) < n:
    out += hashlib.sha256(b"kvmm-sample-" + i.to_bytes(8, "little")).digest(); i += 1
sys.stdout.buffer.write(bytes(out[:n]))' "$1"
}
