/*
 * qcow2.c - the qcow2 driver: QEMU's copy-on-write image format, versions 2
 * and 3 (QEMU's docs/interop/qcow2.txt; names below are the spec's).
 *
 * On disk.  The file is cut into clusters of 1 << cluster_bits bytes (512
 * B .. 2 MiB).  Cluster 0 holds the header (big-endian fields), then, from
 * header_length (72 in version 2), header extensions {u32 type, u32 length,
 * data padded to 8} up to an end marker of type 0; we use the backing file
 * format name (0xe2792aca) and the feature name table (0x6803f857, entries
 * of {u8 type, u8 bit, char name[46]}, to name unknown feature bits).
 * Guest offsets map through two levels:
 *
 *   l1_table[guest >> (cluster_bits + l2_bits)]   -> l2_table (bits 9..55;
 *                                                   bit 63 COPIED)
 *   l2_table[(guest >> cluster_bits) % l2_size]   -> data cluster
 *
 * with l2_bits = cluster_bits - 3 (an l2_table is one cluster of u64).  An
 * l2_table entry is: 0 (unallocated: the backing file's bytes, or zeros);
 * bit 0 set (version 3: reads as zeros, whatever the offset); bits 9..55 a
 * host cluster, with bit 63 COPIED when its refcount is exactly 1 (so it
 * may be written in place); or, with bit 62, a compressed cluster whose
 * descriptor holds the host byte offset in its low x = 62 - (cluster_bits
 * - 8) bits and, above, the count of 512-byte sectors it spans minus one
 * (raw deflate, window bits -12, or a zstd frame, as the header's
 * compression_type says: qcow2_compress.c).  The refcount_table (refcount_table
 * clusters of u64) points at refcount_blocks, one cluster each, holding a
 * refcount of 1 << refcount_order bits for every host cluster; a
 * refcount_block covers 1 << (cluster_bits + 3 - refcount_order) clusters.
 *
 * The image is untrusted input: every header field is checked at open
 * (a message names the field), every offset read from a table is checked
 * for alignment before use, reads past the end of the file read zeros.
 * At open, the l2_table and refcount_block offsets the tables name are
 * collected into two sorted sets, keeping only those inside the file and
 * clear of the header, the l1_table, the refcount_table and each other; a
 * table pointer outside its set is corruption when used, and a data
 * cluster is written in place only if it is in neither set and below
 * next_free.  So a hostile image cannot make a guest write land on
 * metadata, nor on a cluster the allocator will hand out later.
 *
 * Files.  qcow2.c (this file): file access, header, open, create;
 * qcow2_cluster.c: the l2 cache, guest reads and writes, discard;
 * qcow2_compress.c: compressed clusters (zlib, zstd) read and written;
 * qcow2_refcount.c: refcounts and allocation; qcow2_check.c: check and
 * repair (also of a dirty image, at a writable open); qcow2_snapshot.c:
 * internal snapshots; qcow2_resize.c: growing the virtual size;
 * qcow2_io.c: requests from a device (the block_driver); image.c gives
 * tools (kvmm img) synchronous access.
 *
 * Allocation.  New clusters come from the end of the file (next_free);
 * clusters there that a crash left counted are skipped (leaked), a long
 * run of them is corruption.  Writing a cluster that
 * is not COPIED (unallocated, zero, compressed, or shared with a snapshot)
 * allocates a new one, fills it (the old contents, from the backing file,
 * the compressed data or zeros, merged with the new bytes), then points
 * the l2_table at it and only then drops the old cluster's refcount.  An
 * l1_table entry without COPIED (an l2_table shared with a snapshot) gets a
 * private copy of the l2_table first.
 *
 * Crash safety.  Writes reach the file in the order data, refcounts,
 * l2_table, l1_table, with an fdatasync between the refcount updates and
 * the first table write that references what they counted (the
 * refcounts_unsynced flag; one per request, however many clusters it
 * allocates: img_write defers its l2 updates), and one before a
 * refcount_table entry points at a new refcount_block, and one between a
 * table write that drops a reference and the refcount lowered for it
 * (qcow2_unref_range: writes since a sync persist in any order).  A crash
 * at any instant thus leaves at most leaked clusters (refcount too
 * high), never a reference to a cluster counted free.  Flush is fdatasync of the image.  A full
 * refcount_table is replaced by a larger one (qcow2_refcount.c: new table
 * and blocks written and synced, then the header switched in one write,
 * synced, then the old table freed), up to QEMU's 8 MiB of table.
 *
 * Backing files (raw or qcow2) are opened read-only, locked as QEMU locks
 * a backing file (block_lock_backing: nobody may write it while we read
 * it), with the format the backing format extension names; an image without one is refused rather
 * than having its backing file's format guessed.  A chain may be of any
 * depth; a file met twice (same device and inode) is a loop and refused.
 */
#include "block/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2_int.h"
#include "util/log.h"

int qcow2_pread(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(p, 0, len);
			return 0;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int qcow2_fdatasync(struct qimg *im)
{
	int r;

	if (im->throwaway)
		r = 0;
	else if (im->hooks)
		r = im->hooks->fdatasync(im->hooks->opaque, im->fd);
	else
		r = fdatasync(im->fd) ? -errno : 0;
	if (!r)
		im->pointers_unsynced = im->refcounts_unsynced = false;
	return r;
}

int qcow2_pwrite(struct qimg *im, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;

	if (!im->writing_refcount)
		im->pointers_unsynced = true;
	if (im->hooks) {
		int r = im->hooks->pwrite(im->hooks->opaque, im->fd, buf, len, off);

		if (!r && off + len > im->file_size)
			im->file_size = off + len;
		return r;
	}
	while (len) {
		ssize_t n = pwrite(im->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		off += n;
		len -= n;
	}
	if (off > im->file_size)
		im->file_size = off;
	return 0;
}

int qcow2_corrupt(const struct qimg *im, const char *what, uint64_t v)
{
	log_error("%s: corrupt image: %s (0x%" PRIx64 ")", im->path, what, v);
	return -EIO;
}

/* ---- the metadata set ---- */

static size_t oset_pos(const struct oset *o, uint64_t off)
{
	size_t lo = 0, hi = o->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (o->v[mid] < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool qcow2_oset_has(const struct oset *o, uint64_t off)
{
	size_t i = oset_pos(o, off);

	return i < o->n && o->v[i] == off;
}

int qcow2_oset_add(struct oset *o, uint64_t off)
{
	size_t i = oset_pos(o, off);

	if (i < o->n && o->v[i] == off)
		return 0;
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		uint64_t *v = realloc(o->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		o->v = v;
		o->cap = cap;
	}
	memmove(o->v + i + 1, o->v + i, (o->n - i) * sizeof(*o->v));
	o->v[i] = off;
	o->n++;
	return 0;
}

/* The sets hold the tables that were inside the file at open, clear of
 * the header, the l1_table, the refcount_table and tables of the other
 * kind (or that we allocated).  Anything else could overlap clusters we
 * write. */
int qcow2_check_table(const struct qimg *im, const struct oset *o, uint64_t off,
		       const char *what)
{
	return qcow2_oset_has(o, off) ? 0 : qcow2_corrupt(im, what, off);
}

/* ---- opening ---- */

void qcow2_img_free(struct qimg *im)
{
	while (im) {
		struct qimg *b = im->backing;

		if (im->fd >= 0)
			close(im->fd);
		for (unsigned i = 0; im->l2_cache && i < im->l2_slots; i++)
			free(im->l2_cache[i].table);
		free(im->l2_cache);
		free(im->l1);
		free(im->reftable);
		free(im->l2s.v);
		free(im->rbs.v);
		qcow2_snapshots_free(im);
		free(im->snapmeta.v);
		free(im->cbuf);
		free(im->dbuf);
		qcow2_codec_free(im);
		free(im->path);
		free(im);
		im = b;
	}
}

static const char *const incompat_names[] = {
	"dirty", "corrupt", "external data file", "compression type", "extended L2 entries",
};

/* The name of incompatible feature `bit`, from the feature name table if
 * the image has one. */
static void feature_name(const uint8_t *names, uint64_t names_len, unsigned bit,
			 char *out, size_t outlen)
{
	for (uint64_t i = 0; names && i + 48 <= names_len; i += 48) {
		if (names[i] == 0 && names[i + 1] == bit) {
			snprintf(out, outlen, "%.46s", (const char *)names + i + 2);
			return;
		}
	}
	if (bit < sizeof(incompat_names) / sizeof(incompat_names[0]))
		snprintf(out, outlen, "%s", incompat_names[bit]);
	else
		snprintf(out, outlen, "unknown incompatible feature bit %u", bit);
}

/* Fields of a header and its extensions needed past parsing. */
struct hdr_info {
	char backing[MAX_BACKING_NAME + 1];
	char backing_fmt[64];
	bool has_backing, has_backing_fmt;
	uint64_t incompatible, compatible;
};

#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); r = -EINVAL; goto out; } while (0)

static int parse_header(struct qimg *im, bool *force_ro, struct hdr_info *hi,
			char *err, size_t errlen)
{
	const char *path = im->path;
	uint8_t *h = NULL;
	uint64_t hlen, l1_need, bf_off, incompat = 0, autoclear = 0, names_len = 0;
	uint64_t size, l1_off, rt_off, snap_off;
	uint32_t bf_size, rt_clusters, nb_snap, crypt, l1_size;
	const uint8_t *names = NULL;
	int r = 0;

	if (im->file_size < HDR_V2_LEN) {
		snprintf(err, errlen, "%s: truncated qcow2 header (%" PRIu64 " bytes)",
			 path, im->file_size);
		return -EINVAL;
	}
	/* The header and its extensions live in cluster 0, at most 2 MiB. */
	hlen = im->file_size < (2u << 20) ? im->file_size : (2u << 20);
	h = malloc(hlen);
	if (!h)
		return -ENOMEM;
	r = qcow2_pread(im->fd, h, hlen, 0);
	if (r) {
		snprintf(err, errlen, "%s: cannot read the header: %s", path, strerror(-r));
		goto out;
	}
	if (be32(h) != QCOW2_MAGIC)
		BAD("%s: not a qcow2 image (bad magic)", path);
	im->version = be32(h + 4);
	if (im->version != 2 && im->version != 3)
		BAD("%s: qcow2 version %u is not supported (2 or 3)", path, im->version);
	bf_off = be64(h + 8);
	bf_size = be32(h + 16);
	im->cluster_bits = be32(h + 20);
	size = be64(h + 24);
	crypt = be32(h + 32);
	l1_size = be32(h + 36);
	l1_off = be64(h + 40);
	rt_off = be64(h + 48);
	rt_clusters = be32(h + 56);
	nb_snap = be32(h + 60);
	snap_off = be64(h + 64);
	if (im->cluster_bits < 9 || im->cluster_bits > 21)
		BAD("%s: cluster_bits %u out of range (9..21)", path, im->cluster_bits);
	im->cluster_size = 1ull << im->cluster_bits;
	im->l2_bits = im->cluster_bits - 3;
	im->refcount_order = 4;
	if (im->version == 3) {
		if (hlen < HDR_V3_LEN)
			BAD("%s: truncated qcow2 version 3 header", path);
		incompat = be64(h + 72);
		hi->incompatible = incompat;
		hi->compatible = be64(h + 80);
		autoclear = be64(h + 88);
		im->refcount_order = be32(h + 96);
		if (im->refcount_order > 6)
			BAD("%s: refcount_order %u out of range (0..6)", path, im->refcount_order);
		hlen = be32(h + 100);
		if (hlen < HDR_V3_LEN || hlen > im->cluster_size || hlen % 8 ||
		    hlen > im->file_size)
			BAD("%s: bad header_length %" PRIu64, path, hlen);
		/* As QEMU: the incompatible bit is set exactly when the
		 * type is not zlib. */
		im->compression_type = hlen > HDR_V3_LEN ? h[HDR_V3_LEN] : 0;
		if (im->compression_type > QCOW2_COMPRESSION_ZSTD)
			BAD("%s: compression type %u is not supported (zlib or zstd)", path,
			    im->compression_type);
		if (!(incompat & INCOMPAT_COMPRESSION) != !im->compression_type)
			BAD("%s: compression type %u with incompatible bit 3 %s", path,
			    im->compression_type,
			    incompat & INCOMPAT_COMPRESSION ? "set" : "clear");
	} else {
		hlen = HDR_V2_LEN;
	}
	if (crypt)
		BAD("%s: encrypted images are not supported (crypt_method %u)", path, crypt);

	/* Header extensions, up to the end marker, inside cluster 0. */
	for (uint64_t p = hlen;;) {
		uint32_t type, len;

		if (p + 8 > im->cluster_size || p + 8 > im->file_size)
			BAD("%s: header extensions run past the first cluster", path);
		type = be32(h + p);
		len = be32(h + p + 4);
		if (type == EXT_END)
			break;
		if (len > im->cluster_size - p - 8 || p + 8 + len > im->file_size)
			BAD("%s: header extension 0x%x runs past the first cluster", path, type);
		if (type == EXT_BACKING_FMT) {
			if (len >= sizeof(hi->backing_fmt))
				BAD("%s: backing format name too long", path);
			memcpy(hi->backing_fmt, h + p + 8, len);
			hi->backing_fmt[len] = 0;
			hi->has_backing_fmt = true;
		} else if (type == EXT_FEATURE_NAMES) {
			names = h + p + 8;
			names_len = len;
		}
		p += 8 + ((len + 7ull) & ~7ull);
	}

	for (unsigned bit = 0; bit < 64; bit++) {
		uint64_t m = 1ull << bit;
		char name[64];

		if (!(incompat & m) || m == INCOMPAT_COMPRESSION || m == INCOMPAT_CORRUPT ||
		    m == INCOMPAT_DIRTY)
			continue;
		feature_name(names, names_len, bit, name, sizeof(name));
		snprintf(err, errlen, "%s: unsupported qcow2 feature: %s (incompatible bit %u)",
			 path, name, bit);
		r = -ENOTSUP;
		goto out;
	}
	/* A dirty image (lazy refcounts, not closed cleanly) opened
	 * writable gets its refcounts repaired once its tables are loaded:
	 * repair_dirty(). */
	/* Said by img_open(), which knows whether a repair opens it. */
	if (incompat & INCOMPAT_CORRUPT)
		*force_ro = true;

	if (size > (1ull << 61))
		BAD("%s: virtual size %" PRIu64 " too large", path, size);
	im->size = size;
	/* l1_size must cover the virtual size. */
	l1_need = (size + (1ull << (im->cluster_bits + im->l2_bits)) - 1) >>
		  (im->cluster_bits + im->l2_bits);
	if (l1_size < l1_need)
		BAD("%s: l1_size %u too small for the size (%" PRIu64 " needed)", path,
		    l1_size, l1_need);
	if ((uint64_t)l1_size * 8 > MAX_L1_BYTES)
		BAD("%s: l1_size %u too large", path, l1_size);
	if (l1_size && (!cluster_aligned(im, l1_off) || !l1_off ||
			l1_off > im->file_size || l1_size * 8ull > im->file_size - l1_off))
		BAD("%s: l1_table_offset 0x%" PRIx64 " not cluster-aligned or past the end of the file",
		    path, l1_off);
	im->l1_size = l1_size;
	im->l1_offset = l1_off;
	im->reftable_bytes = (uint64_t)rt_clusters * im->cluster_size;
	if (!rt_clusters || im->reftable_bytes > MAX_REFTABLE_BYTES)
		BAD("%s: refcount_table_clusters %u out of range", path, rt_clusters);
	if (!cluster_aligned(im, rt_off) || !rt_off || rt_off > im->file_size ||
	    im->reftable_bytes > im->file_size - rt_off)
		BAD("%s: refcount_table_offset 0x%" PRIx64 " not cluster-aligned or past the end of the file",
		    path, rt_off);
	im->reftable_offset = rt_off;
	im->reftable_entries = im->reftable_bytes / 8;
	if (nb_snap && (!cluster_aligned(im, snap_off) || snap_off >= im->file_size))
		BAD("%s: snapshots_offset 0x%" PRIx64 " not cluster-aligned or past the end of the file",
		    path, snap_off);
	im->nb_snapshots = nb_snap;
	im->snapshots_offset = nb_snap ? snap_off : 0;
	if (bf_off) {
		/* Inside cluster 0, which h holds (cluster_size may be
		 * smaller than the longest name). */
		if (bf_size == 0 || bf_size > MAX_BACKING_NAME || bf_size > im->cluster_size ||
		    bf_off > im->cluster_size - bf_size || bf_off + bf_size > im->file_size)
			BAD("%s: backing file name (offset %" PRIu64 ", %u bytes) out of range",
			    path, bf_off, bf_size);
		memcpy(hi->backing, h + bf_off, bf_size);
		hi->backing[bf_size] = 0;
		hi->has_backing = true;
	}
	/* Bits we do not understand describe data we will not keep up to
	 * date (bitmaps): clearing them tells QEMU that data is stale. */
	if (im->writable && autoclear && !*force_ro) {
		uint8_t z[8] = { 0 };

		r = qcow2_pwrite(im, z, 8, 88);
		if (r) {
			snprintf(err, errlen, "%s: cannot update the header: %s", path, strerror(-r));
			goto out;
		}
	}
out:
	free(h);
	return r;
}

static int load_tables(struct qimg *im, char *err, size_t errlen)
{
	uint64_t cs = im->cluster_size;
	uint8_t *raw;
	int r;

	im->l1 = calloc(im->l1_size ? im->l1_size : 1, 8);
	im->reftable = calloc(im->reftable_entries, 8);
	im->cbuf = malloc(2 * cs);
	im->dbuf = malloc(cs);
	im->l2_slots = (unsigned)(L2_CACHE_BYTES / cs);
	if (im->l2_slots > L2_CACHE_MAX_SLOTS)
		im->l2_slots = L2_CACHE_MAX_SLOTS;
	if (im->l2_slots < 2)
		im->l2_slots = 2;
	im->l2_cache = calloc(im->l2_slots, sizeof(*im->l2_cache));
	if (!im->l1 || !im->reftable || !im->cbuf || !im->dbuf || !im->l2_cache)
		goto nomem;
	for (unsigned i = 0; i < im->l2_slots; i++)
		if (!(im->l2_cache[i].table = malloc(cs)))
			goto nomem;
	raw = (uint8_t *)im->l1;
	r = qcow2_pread(im->fd, raw, im->l1_size * 8ull, im->l1_offset);
	for (uint32_t i = 0; !r && i < im->l1_size; i++)
		im->l1[i] = be64(raw + i * 8);
	raw = (uint8_t *)im->reftable;
	if (!r)
		r = qcow2_pread(im->fd, raw, im->reftable_bytes, im->reftable_offset);
	for (uint64_t i = 0; !r && i < im->reftable_entries; i++)
		im->reftable[i] = be64(raw + i * 8);
	if (r) {
		snprintf(err, errlen, "%s: cannot read the tables: %s", im->path, strerror(-r));
		return r;
	}
	im->next_free = (im->file_size + cs - 1) & ~(cs - 1);
	/* Before the sets: their clusters are metadata too. */
	r = qcow2_snapshots_load(im, err, errlen);
	if (r)
		return r;
	/* The tables' pointers that are usable; the others are reported as
	 * corruption when used. */
	for (uint32_t i = 0; i < im->l1_size; i++) {
		uint64_t o = im->l1[i] & OFFSET_MASK;

		if (o && cluster_aligned(im, o) && o + cs <= im->file_size &&
		    !qcow2_is_fixed_metadata(im, o) && qcow2_oset_add(&im->l2s, o))
			goto nomem;
	}
	for (uint64_t i = 0; i < im->reftable_entries; i++) {
		uint64_t o = im->reftable[i] & REFT_OFFSET_MASK;

		if (o && cluster_aligned(im, o) && o + cs <= im->file_size &&
		    !qcow2_is_fixed_metadata(im, o) && !qcow2_oset_has(&im->l2s, o) &&
		    qcow2_oset_add(&im->rbs, o))
			goto nomem;
	}
	return 0;
nomem:
	snprintf(err, errlen, "%s: out of memory", im->path);
	return -ENOMEM;
}

static int open_chain(struct qimg *im, bool *force_ro, char *err, size_t errlen);

/* Open the backing file `name` of `child` (relative names are relative to
 * the child's directory) with format `fmt`. */
static int open_backing(struct qimg *child, const char *name, const char *fmt,
			char *err, size_t errlen)
{
	const char *slash = strrchr(child->path, '/');
	struct qimg *b = calloc(1, sizeof(*b));
	bool ro = false;
	struct stat st;
	int r;

	if (!b)
		return -ENOMEM;
	b->fd = -1;
	b->child = child;
	child->backing = b;
	if (name[0] == '/' || !slash)
		b->path = strdup(name);
	else if (asprintf(&b->path, "%.*s/%s", (int)(slash - child->path), child->path, name) < 0)
		b->path = NULL;
	if (!b->path)
		return -ENOMEM;
	if (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
		snprintf(err, errlen, "%s: backing file %s has format \"%s\" (raw or qcow2 supported)",
			 child->path, b->path, fmt);
		return -ENOTSUP;
	}
	/* O_NONBLOCK: a FIFO named by a hostile image must not hang the
	 * open; it is refused below (regular files ignore the flag). */
	b->fd = open(b->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (b->fd < 0 || fstat(b->fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: backing file %s: %s", child->path, b->path, strerror(-r));
		return r;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, errlen, "%s: backing file %s is not a regular file or block device",
			 child->path, b->path);
		return -EINVAL;
	}
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	r = block_lock_backing(b->fd, b->path, err, errlen);
	if (r)
		return r;
	for (struct qimg *c = child; c; c = c->child) {
		if (c->dev == b->dev && c->ino == b->ino) {
			snprintf(err, errlen, "%s: backing file %s makes a loop in the chain",
				 child->path, b->path);
			return -EINVAL;
		}
	}
	off_t end = lseek(b->fd, 0, SEEK_END);

	if (end < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", b->path, strerror(-r));
		return r;
	}
	b->file_size = (uint64_t)end;
	if (!strcmp(fmt, "raw")) {
		b->size = b->file_size;
		return 0;
	}
	b->is_qcow2 = true;
	return open_chain(b, &ro, err, errlen);
}

static int open_chain(struct qimg *im, bool *force_ro, char *err, size_t errlen)
{
	struct hdr_info hi = { 0 };
	int r = parse_header(im, force_ro, &hi, err, errlen);

	if (!r)
		r = load_tables(im, err, errlen);
	if (r || !hi.has_backing)
		return r;
	if (!hi.has_backing_fmt) {
		snprintf(err, errlen,
			 "%s: backing file %s has no format recorded (recreate with -F raw|qcow2); "
			 "kvmm does not guess it", im->path, hi.backing);
		return -EINVAL;
	}
	return open_backing(im, hi.backing, hi.backing_fmt, err, errlen);
}

int qcow2_info(int fd, const char *path, struct qcow2_info *info, char *err,
	       size_t errlen)
{
	struct qimg im = { .fd = fd, .path = (char *)path };
	struct hdr_info hi = { 0 };
	bool force_ro = false;
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	im.file_size = (uint64_t)st.st_size;
	r = parse_header(&im, &force_ro, &hi, err, errlen);
	if (r)
		return r;
	memset(info, 0, sizeof(*info));
	info->version = im.version;
	info->size = im.size;
	info->cluster_size = im.cluster_size;
	info->refcount_bits = 1u << im.refcount_order;
	info->dirty = hi.incompatible & INCOMPAT_DIRTY;
	info->corrupt = hi.incompatible & INCOMPAT_CORRUPT;
	info->lazy_refcounts = hi.compatible & 1;
	info->compression_type = im.compression_type == QCOW2_COMPRESSION_ZSTD ? "zstd" : "zlib";
	if (hi.has_backing)
		snprintf(info->backing, sizeof(info->backing), "%s", hi.backing);
	if (hi.has_backing_fmt)
		snprintf(info->backing_fmt, sizeof(info->backing_fmt), "%s", hi.backing_fmt);
	return 0;
}

int qcow2_create(const char *path, uint64_t size, uint32_t cluster_size,
		 const char *backing, const char *backing_fmt, char *err,
		 size_t errlen)
{
	struct qcow2_create_opts o = {
		.size = size, .cluster_size = cluster_size,
		.backing = backing, .backing_fmt = backing_fmt,
	};

	return qcow2_create_with(path, &o, err, errlen);
}

int qcow2_create_with(const char *path, const struct qcow2_create_opts *o, char *err,
		      size_t errlen)
{
	uint32_t cluster_size = o->cluster_size ? o->cluster_size : 65536;
	const char *backing = o->backing, *backing_fmt = o->backing_fmt;
	uint64_t size = o->size, cs = cluster_size, l1_size, l1_clusters, meta, p;
	uint64_t rb, est, rt_clusters;
	uint8_t ctype;
	unsigned bits = 0;
	uint8_t *buf;
	size_t blen, nlen = backing ? strlen(backing) : 0;
	size_t flen = backing_fmt ? strlen(backing_fmt) : 0;
	int fd, r = 0;

	while (bits < 22 && (1ull << bits) < cs)
		bits++;
	if (bits < 9 || bits > 21 || (1ull << bits) != cs) {
		snprintf(err, errlen, "%s: cluster size %u must be a power of two from 512 to 2M",
			 path, cluster_size);
		return -EINVAL;
	}
	if (!o->compression_type || !strcmp(o->compression_type, "zlib")) {
		ctype = QCOW2_COMPRESSION_ZLIB;
	} else if (!strcmp(o->compression_type, "zstd")) {
		ctype = QCOW2_COMPRESSION_ZSTD;
	} else {
		snprintf(err, errlen, "%s: unknown compression_type %s (zlib or zstd)", path,
			 o->compression_type);
		return -EINVAL;
	}
	if ((backing && (!backing_fmt || !nlen || nlen > MAX_BACKING_NAME)) ||
	    flen >= 64 || size > (1ull << 61)) {
		snprintf(err, errlen, "%s: bad size, backing file name or format", path);
		return -EINVAL;
	}
	size = (size + 511) & ~511ull;
	l1_size = (size + (cs << (bits - 3)) - 1) >> (2 * bits - 3);
	/* A 0-byte image has no l1_table (offset 0), as qemu-img makes it:
	 * a cluster for it would be counted but unused, a leak to check. */
	l1_clusters = (l1_size * 8 + cs - 1) / cs;
	/* The driver does not grow the refcount_table, so make it large
	 * enough for the image filled: every data cluster, its l2_tables,
	 * the refcount_blocks counting them, and some slack (QEMU starts
	 * with one cluster and grows it).  One cluster covers 16 TiB of
	 * 64 KiB clusters but only 8 MiB of 512-byte ones.  Capped by the
	 * limits below; the rest is then left to growing. */
	rb = cs / 2;
	est = (size + cs - 1) / cs;
	est += (est + (cs / 8) - 1) / (cs / 8) + 64;
	est += (est + rb - 1) / rb;
	rt_clusters = ((est + rb - 1) / rb * 8 + cs - 1) / cs;
	if (rt_clusters * cs > MAX_REFTABLE_BYTES)
		rt_clusters = MAX_REFTABLE_BYTES / cs;
	if (2 + rt_clusters + l1_clusters > cs / 2 && cs / 2 > 2 + l1_clusters)
		rt_clusters = cs / 2 - 2 - l1_clusters;
	if (!rt_clusters)
		rt_clusters = 1;
	/* Header, refcount_table, one refcount_block, l1_table: all counted
	 * by that one refcount_block (16-bit refcounts: cs / 2 clusters). */
	meta = 2 + rt_clusters + l1_clusters;
	if (l1_size * 8 > MAX_L1_BYTES || meta > cs / 2) {
		snprintf(err, errlen, "%s: size %" PRIu64 " too large for %u-byte clusters",
			 path, size, cluster_size);
		return -EINVAL;
	}
	if (HDR_V3_LEN + 8 + 8 + ((flen + 7) & ~7ull) + 8 + nlen > cs) {
		snprintf(err, errlen, "%s: backing file name too long for %u-byte clusters",
			 path, cluster_size);
		return -EINVAL;
	}
	blen = meta * cs;
	buf = calloc(1, blen);
	if (!buf)
		return -ENOMEM;
	put_be32(buf, QCOW2_MAGIC);
	put_be32(buf + 4, 3);
	put_be32(buf + 20, bits);
	put_be64(buf + 24, size);
	put_be32(buf + 36, (uint32_t)l1_size);
	put_be64(buf + 40, l1_size ? (2 + rt_clusters) * cs : 0);
	put_be64(buf + 48, cs);
	put_be32(buf + 56, (uint32_t)rt_clusters);
	put_be32(buf + 96, 4);
	/* header_length 112: the compression_type byte padded; a type
	 * other than zlib sets its incompatible bit. */
	put_be32(buf + 100, HDR_V3_LEN + 8);
	buf[HDR_V3_LEN] = ctype;
	if (ctype != QCOW2_COMPRESSION_ZLIB)
		put_be64(buf + 72, INCOMPAT_COMPRESSION);
	p = HDR_V3_LEN + 8;
	if (backing) {
		put_be32(buf + p, EXT_BACKING_FMT);
		put_be32(buf + p + 4, (uint32_t)flen);
		memcpy(buf + p + 8, backing_fmt, flen);
		p += 8 + ((flen + 7) & ~7ull);
	}
	p += 8; /* the end marker: type 0, length 0 */
	if (backing) {
		put_be64(buf + 8, p);
		put_be32(buf + 16, (uint32_t)nlen);
		memcpy(buf + p, backing, nlen);
	}
	put_be64(buf + cs, (1 + rt_clusters) * cs);
	for (uint64_t i = 0; i < meta; i++) {
		buf[(1 + rt_clusters) * cs + 2 * i] = 0;
		buf[(1 + rt_clusters) * cs + 2 * i + 1] = 1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		free(buf);
		return r;
	}
	for (uint64_t off = 0; off < blen && !r;) {
		ssize_t n = pwrite(fd, buf + off, blen - off, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			r = n < 0 ? -errno : -EIO;
		else
			off += n;
	}
	if (!r && fsync(fd))
		r = -errno;
	if (r)
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-r));
	close(fd);
	free(buf);
	return r;
}

/* The dirty bit (spec: incompatible feature bit 0) says refcounts may be
 * wrong: QEMU's lazy_refcounts defers refcount updates, so after a crash
 * refcounts may be too low.  Writing before repairing could free a used
 * cluster, so a writable open rebuilds them first (qcow2_check -r all,
 * which also clears the bit), as QEMU does. */
static int repair_dirty(struct qimg *im, char *err, size_t errlen)
{
	struct qcow2_check_result res;
	uint8_t b[8];
	int r;

	if (im->version < 3)
		return 0;
	r = qcow2_pread(im->fd, b, 8, 72);
	if (r || !(be64(b) & INCOMPAT_DIRTY))
		return r;
	log_info("%s: the image is dirty (not closed cleanly with lazy refcounts): "
		 "repairing its refcounts", im->path);
	r = qcow2_check(im, QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS, &res);
	if (!r && (res.corruptions || res.check_errors))
		r = -EIO;
	if (r)
		snprintf(err, errlen, "%s: the image is dirty and its refcounts could not be "
			 "repaired (%" PRIu64 " corruptions left): %s", im->path, res.corruptions,
			 strerror(-r));
	return r;
}

static int img_open(int fd, const char *path, bool is_qcow2, bool writable, bool check,
		    bool *force_ro, struct qimg **out, char *err, size_t errlen)
{
	struct qimg *im = calloc(1, sizeof(*im));
	struct stat st;
	int r;

	*out = NULL;
	if (!im || !(im->path = strdup(path))) {
		close(fd);
		free(im);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	im->fd = fd;
	im->is_qcow2 = is_qcow2;
	im->writable = writable;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
		goto fail;
	}
	im->dev = st.st_dev;
	im->ino = st.st_ino;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end < 0) {
			r = -errno;
			snprintf(err, errlen, "%s: %s", path, strerror(-r));
			goto fail;
		}
		im->file_size = (uint64_t)end;
	} else {
		im->file_size = (uint64_t)st.st_size;
	}
	if (!is_qcow2) {
		im->size = im->file_size;
		*out = im;
		return 0;
	}
	r = open_chain(im, force_ro, err, errlen);
	if (r)
		goto fail;
	if (*force_ro)
		log_warn("%s: the image is marked corrupt: %s", path,
			 check && writable ? "opened writable for repair" : "opened read-only");
	if (*force_ro && !check)
		im->writable = false;
	if (im->writable && !check) {
		r = repair_dirty(im, err, errlen);
		if (r)
			goto fail;
	}
	*out = im;
	return 0;
fail:
	qcow2_img_free(im);
	return r;
}

int qcow2_img_open(int fd, const char *path, bool is_qcow2, bool writable,
		   bool *force_ro, struct qimg **out, char *err, size_t errlen)
{
	return img_open(fd, path, is_qcow2, writable, false, force_ro, out, err, errlen);
}

int qcow2_img_open_check(int fd, const char *path, bool is_qcow2, bool writable,
			 bool *force_ro, struct qimg **out, char *err, size_t errlen)
{
	return img_open(fd, path, is_qcow2, writable, true, force_ro, out, err, errlen);
}

static int open_top(struct block_dev *bd, int fd, bool throwaway, char *err,
		    size_t errlen)
{
	int fl = fcntl(fd, F_GETFL);
	bool force_ro = false, direct = fl >= 0 && (fl & O_DIRECT);
	struct qimg *im;
	int r;

	/* cache=none: metadata through the page cache on this descriptor
	 * (which holds the locks), data on an O_DIRECT one (qcow2_io.c). */
	if (direct && fcntl(fd, F_SETFL, fl & ~O_DIRECT) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", bd->name, strerror(-r));
		close(fd);
		return r;
	}
	r = qcow2_img_open(fd, bd->name, true, !bd->readonly, &force_ro, &im, err, errlen);
	if (r)
		return r;
	if (force_ro)
		bd->readonly = true;
	im->throwaway = throwaway;
	return qcow2_io_attach(bd, im, direct, err, errlen);
}

int qcow2_open(struct block_dev *bd, int fd, char *err, size_t errlen)
{
	return open_top(bd, fd, false, err, errlen);
}

int qcow2_open_throwaway(struct block_dev *bd, int fd, char *err, size_t errlen)
{
	return open_top(bd, fd, true, err, errlen);
}

/* ---- rewriting the backing file name (kvmm img rebase) ---- */

/* Append a header extension {type, len, data padded to 8} at *p of the
 * cluster-sized header buffer h; false when it does not fit. */
static bool put_ext(uint8_t *h, uint64_t cs, uint64_t *p, uint32_t type,
		    const void *data, uint32_t len)
{
	uint64_t padded = (len + 7ull) & ~7ull;

	if (*p + 8 + padded > cs)
		return false;
	put_be32(h + *p, type);
	put_be32(h + *p + 4, len);
	memcpy(h + *p + 8, data, len);
	*p += 8 + padded;
	return true;
}

int qcow2_set_backing(struct qimg *im, const char *backing, const char *fmt,
		      char *err, size_t errlen)
{
	struct qimg tmp = { .fd = im->fd, .path = im->path };
	size_t nlen = backing ? strlen(backing) : 0, flen = nlen && fmt ? strlen(fmt) : 0;
	struct hdr_info hi = { 0 };
	uint8_t *old = NULL, *h = NULL;
	uint64_t cs, hlen, p;
	bool force_ro = false;
	struct stat st;
	int r;

	if (!im->writable || !im->is_qcow2) {
		snprintf(err, errlen, "%s: not a qcow2 image opened writable", im->path);
		return -EROFS;
	}
	if (nlen > MAX_BACKING_NAME || (nlen && !flen) || flen >= sizeof(hi.backing_fmt)) {
		snprintf(err, errlen, "%s: bad backing file name or format (a name of at most %d bytes and a format)",
			 im->path, MAX_BACKING_NAME);
		return -EINVAL;
	}
	if (fstat(im->fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", im->path, strerror(-r));
		return r;
	}
	/* Parse cluster 0 again from the file: it is validated as at open,
	 * and we keep every extension but the backing format as it is. */
	tmp.file_size = (uint64_t)st.st_size;
	r = parse_header(&tmp, &force_ro, &hi, err, errlen);
	if (r)
		return r;
	if (force_ro) {
		snprintf(err, errlen, "%s: the image is marked corrupt: its header is not rewritten",
			 im->path);
		return -EROFS;
	}
	cs = tmp.cluster_size;
	old = calloc(1, cs);
	h = calloc(1, cs);
	if (!old || !h) {
		r = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", im->path);
		goto out;
	}
	r = qcow2_pread(im->fd, old, cs, 0);
	if (r) {
		snprintf(err, errlen, "%s: cannot read the header: %s", im->path, strerror(-r));
		goto out;
	}
	hlen = tmp.version == 3 ? be32(old + 100) : HDR_V2_LEN;
	memcpy(h, old, hlen);
	p = hlen;
	r = -ENOSPC;
	if (flen && !put_ext(h, cs, &p, EXT_BACKING_FMT, fmt, (uint32_t)flen))
		goto too_long;
	/* parse_header checked that the extensions end inside cluster 0. */
	for (uint64_t q = hlen; q + 8 <= cs;) {
		uint32_t type = be32(old + q), len = be32(old + q + 4);

		if (type == EXT_END || len > cs - q - 8)
			break;
		if (type != EXT_BACKING_FMT && !put_ext(h, cs, &p, type, old + q + 8, len))
			goto too_long;
		q += 8 + ((len + 7ull) & ~7ull);
	}
	p += 8; /* the end marker, zeros */
	if (p + nlen > cs)
		goto too_long;
	put_be64(h + 8, nlen ? p : 0);
	put_be32(h + 16, (uint32_t)nlen);
	if (nlen)
		memcpy(h + p, backing, nlen);
	/* Whatever the caller wrote (the old backing's bytes copied in by a
	 * safe rebase) is on disk before the header names the new backing
	 * file; the header itself, one write of cluster 0, is synced after. */
	r = qcow2_fdatasync(im);
	if (!r)
		r = qcow2_pwrite(im, h, cs, 0);
	if (!r)
		r = qcow2_fdatasync(im);
	if (r)
		snprintf(err, errlen, "%s: cannot write the header: %s", im->path, strerror(-r));
	goto out;
too_long:
	snprintf(err, errlen, "%s: the backing file name and header extensions do not fit the %" PRIu64
		 "-byte header cluster", im->path, cs);
out:
	free(old);
	free(h);
	return r;
}
