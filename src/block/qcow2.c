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
 * (raw deflate, window bits -12).  The refcount_table (refcount_table
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
 * Requests.  submit() only queues the request (its iovec copied) and
 * raises an eventfd watched on the device's event loop; the handler runs
 * the queued requests in order with synchronous pread/pwrite on the I/O
 * thread and calls their callbacks there, so block.h's rule holds (never a
 * callback from inside submit).  io_uring for the data path is left for
 * later: metadata lookups are synchronous anyway while the l2 cache is
 * small.  bd->stats.sqes counts requests, not system calls.
 *
 * Allocation.  New clusters come from the end of the file (next_free);
 * a refcount claiming one of them is in use is corruption.  Writing a cluster that
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
 * refcount_table entry points at a new refcount_block.  A crash at any instant thus leaves at most
 * leaked clusters (refcount too high), never a reference to a cluster
 * counted free.  Flush is fdatasync of the image.  Known limit: a full
 * refcount_table is not grown (allocation fails with -ENOSPC); with the
 * default 64 KiB clusters one refcount_table cluster covers 16 TiB.
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "block/block.h"
#include "core/event_loop.h"
#include "util/log.h"

#define QCOW2_MAGIC          0x514649fbu
#define HDR_V2_LEN           72
#define HDR_V3_LEN           104
#define EXT_END              0
#define EXT_BACKING_FMT      0xe2792acau
#define EXT_FEATURE_NAMES    0x6803f857u

#define INCOMPAT_DIRTY       (1ull << 0)
#define INCOMPAT_CORRUPT     (1ull << 1)
#define INCOMPAT_DATA_FILE   (1ull << 2)
#define INCOMPAT_COMPRESSION (1ull << 3)
#define INCOMPAT_EXTL2       (1ull << 4)

#define OFFSET_MASK          0x00fffffffffffe00ull /* bits 9..55 */
#define L2E_ZERO             (1ull << 0)
#define L2E_COMPRESSED       (1ull << 62)
#define ENTRY_COPIED         (1ull << 63)
#define REFT_OFFSET_MASK     0xfffffffffffffe00ull /* bits 9..63 */

/* QEMU's limits (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): tables we
 * hold in memory are bounded whatever the header claims. */
#define MAX_L1_BYTES         (32u << 20)
#define MAX_REFTABLE_BYTES   (8u << 20)
#define MAX_BACKING_NAME     1023
#define L2_CACHE_BYTES       (8u << 20)
#define L2_CACHE_MAX_SLOTS   32
#define ZERO_CHUNK           (1u << 20)

/* A sorted set of host offsets. */
struct oset {
	uint64_t *v;
	size_t n, cap;
};

struct l2_slot {
	uint64_t offset;        /* host offset of the l2_table; 0 = empty */
	uint64_t used;          /* LRU clock */
	uint64_t *table;        /* big-endian, as on disk */
};

/* One file of a chain: the image itself, or a backing file. */
struct qimg {
	int fd;
	bool is_qcow2;
	bool writable;
	char *path;
	dev_t dev;
	ino_t ino;
	uint64_t size;          /* bytes the guest sees */
	uint64_t file_size;     /* bytes, at open; grows as we allocate */
	struct qimg *child;     /* the image naming this one (loop check) */
	struct qimg *backing;
	/* qcow2 only. */
	uint32_t version, cluster_bits, l2_bits, refcount_order;
	uint64_t cluster_size;
	uint64_t *l1;           /* host-endian copy of l1_table */
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *reftable;     /* host-endian copy of refcount_table */
	uint64_t reftable_entries, reftable_offset, reftable_bytes;
	struct l2_slot *l2_cache;
	unsigned l2_slots;
	uint64_t lru_clock;
	uint64_t next_free;     /* where the next cluster is allocated */
	struct oset l2s, rbs;   /* every l2_table, refcount_block */
	bool refcounts_unsynced;
	uint8_t *cbuf;          /* compressed bytes, up to 2 clusters */
	uint8_t *dbuf;          /* the last decompressed cluster ... */
	uint64_t dbuf_key;      /* ... its l2 entry; 0 = none */
};

struct pending {
	struct pending *next;
	struct block_req req;
	struct iovec iov[];
};

struct qcow2_state {
	struct qimg *img;
	int efd;
	struct pending *head, *tail;
	uint8_t *zeros;         /* ZERO_CHUNK of zeros, lazily */
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* pread all of it; bytes past the end of the file read as zeros. */
static int rd(int fd, void *buf, uint64_t len, uint64_t off)
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

static int wr(struct qimg *im, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;

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

static bool cluster_aligned(const struct qimg *im, uint64_t off)
{
	return !(off & (im->cluster_size - 1));
}

static int corrupt(const struct qimg *im, const char *what, uint64_t v)
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

static bool oset_has(const struct oset *o, uint64_t off)
{
	size_t i = oset_pos(o, off);

	return i < o->n && o->v[i] == off;
}

static int oset_add(struct oset *o, uint64_t off)
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

/* A table pointer read from the image must be in its set: a table that
 * was inside the file at open, clear of the header, the l1_table, the
 * refcount_table and tables of the other kind (or one we allocated).
 * Anything else could overlap clusters we write. */
static int check_table(const struct qimg *im, const struct oset *o, uint64_t off,
		       const char *what)
{
	return oset_has(o, off) ? 0 : corrupt(im, what, off);
}

/* ---- l2 cache ---- */

/* The l2_table at host offset `off` (cluster aligned, checked by the
 * caller), read through the cache. */
static int l2_load(struct qimg *im, uint64_t off, uint64_t **table)
{
	struct l2_slot *victim = &im->l2_cache[0];

	for (unsigned i = 0; i < im->l2_slots; i++) {
		struct l2_slot *s = &im->l2_cache[i];

		if (s->offset == off) {
			s->used = ++im->lru_clock;
			*table = s->table;
			return 0;
		}
		if (s->used < victim->used)
			victim = s;
	}
	int r = rd(im->fd, victim->table, im->cluster_size, off);

	if (r) {
		victim->offset = 0;
		return r;
	}
	victim->offset = off;
	victim->used = ++im->lru_clock;
	*table = victim->table;
	return 0;
}

/* The l2 entry for guest offset `g` (0 when its l1 entry is empty). */
static int l2_entry(struct qimg *im, uint64_t g, uint64_t *entry)
{
	uint64_t l1_idx = g >> (im->cluster_bits + im->l2_bits);
	uint64_t l2_off, *table;
	int r;

	*entry = 0;
	if (l1_idx >= im->l1_size)
		return corrupt(im, "guest offset beyond the l1_table", g);
	l2_off = im->l1[l1_idx] & OFFSET_MASK;
	if (!l2_off)
		return 0;
	r = check_table(im, &im->l2s, l2_off, "bad l2_table offset");
	if (r)
		return r;
	r = l2_load(im, l2_off, &table);
	if (r)
		return r;
	*entry = be64((uint8_t *)&table[(g >> im->cluster_bits) &
					((1ull << im->l2_bits) - 1)]);
	return 0;
}

/* ---- reads ---- */

static int img_read(struct qimg *im, uint64_t off, uint8_t *buf, uint64_t len);

static int decompress(struct qimg *im, uint64_t entry)
{
	unsigned x = 62 - (im->cluster_bits - 8);
	uint64_t coff = entry & ((1ull << x) - 1);
	uint64_t nsec = ((entry & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;
	uint64_t clen = nsec * 512 - (coff & 511);
	z_stream z = { 0 };
	int r;

	if (im->dbuf_key == entry)
		return 0;
	if (coff >= im->file_size)
		return corrupt(im, "compressed cluster past the end of the file", coff);
	if (clen > 2 * im->cluster_size)
		clen = 2 * im->cluster_size;
	if (clen > im->file_size - coff)
		clen = im->file_size - coff;
	r = rd(im->fd, im->cbuf, clen, coff);
	if (r)
		return r;
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = im->cbuf;
	z.avail_in = (uInt)clen;
	z.next_out = im->dbuf;
	z.avail_out = (uInt)im->cluster_size;
	r = inflate(&z, Z_FINISH);
	inflateEnd(&z);
	/* The sector count rounds up, so input may remain once the output
	 * is full: a full cluster is success whatever inflate says. */
	if ((r != Z_STREAM_END && r != Z_BUF_ERROR) || z.avail_out) {
		im->dbuf_key = 0;
		return corrupt(im, "compressed cluster does not inflate", coff);
	}
	im->dbuf_key = entry;
	return 0;
}

/* Bytes [g, g + n) of one guest cluster, whose l2 entry is `entry`. */
static int read_mapped(struct qimg *im, uint64_t entry, uint64_t g,
		       uint8_t *buf, uint64_t n)
{
	uint64_t in = g & (im->cluster_size - 1);
	uint64_t host = entry & OFFSET_MASK;
	int r;

	if (entry & L2E_COMPRESSED) {
		r = decompress(im, entry);
		if (!r)
			memcpy(buf, im->dbuf + in, n);
		return r;
	}
	if (entry & L2E_ZERO) {
		if (im->version < 3)
			return corrupt(im, "zero flag in a version 2 l2 entry", entry);
		memset(buf, 0, n);
		return 0;
	}
	if (!host) {
		if (im->backing)
			return img_read(im->backing, g, buf, n);
		memset(buf, 0, n);
		return 0;
	}
	if (!cluster_aligned(im, host) || (entry & 0x1fe))
		return corrupt(im, "bad data cluster entry", entry);
	return rd(im->fd, buf, n, host + in);
}

/* Guest bytes [off, off + len); past the virtual size reads zeros (a
 * backing file smaller than its overlay). */
static int img_read(struct qimg *im, uint64_t off, uint8_t *buf, uint64_t len)
{
	while (len) {
		uint64_t n, entry;
		int r;

		if (off >= im->size) {
			memset(buf, 0, len);
			return 0;
		}
		if (!im->is_qcow2) {
			n = len < im->size - off ? len : im->size - off;
			r = rd(im->fd, buf, n, off);
		} else {
			n = im->cluster_size - (off & (im->cluster_size - 1));
			if (n > len)
				n = len;
			r = l2_entry(im, off, &entry);
			if (!r)
				r = read_mapped(im, entry, off, buf, n);
		}
		if (r)
			return r;
		off += n;
		buf += n;
		len -= n;
	}
	return 0;
}

/* ---- refcounts ---- */

static unsigned rb_bits(const struct qimg *im)
{
	return im->cluster_bits + 3 - im->refcount_order;
}

/* Where host cluster `idx`'s refcount lives: the refcount_block's offset
 * (0: none yet) and the entry's bit position in it. */
static int ref_locate(struct qimg *im, uint64_t idx, uint64_t *rb, uint64_t *bit)
{
	uint64_t t = idx >> rb_bits(im);

	*rb = t < im->reftable_entries ? im->reftable[t] & REFT_OFFSET_MASK : 0;
	*bit = (idx & ((1ull << rb_bits(im)) - 1)) << im->refcount_order;
	return *rb ? check_table(im, &im->rbs, *rb, "bad refcount_block offset") : 0;
}

static uint64_t ref_from(const uint8_t *p, unsigned width, uint64_t bit)
{
	uint64_t v = 0;

	if (width < 8)
		return (p[0] >> (bit & 7)) & ((1u << width) - 1);
	for (unsigned i = 0; i < width / 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void ref_into(uint8_t *p, unsigned width, uint64_t bit, uint64_t v)
{
	if (width < 8) {
		unsigned mask = ((1u << width) - 1) << (bit & 7);

		p[0] = (uint8_t)((p[0] & ~mask) | ((v << (bit & 7)) & mask));
		return;
	}
	for (int i = (int)width / 8 - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static int get_refcount(struct qimg *im, uint64_t idx, uint64_t *val)
{
	unsigned width = 1u << im->refcount_order;
	uint64_t rb, bit;
	uint8_t b[8];
	int r = ref_locate(im, idx, &rb, &bit);

	*val = 0;
	if (r || !rb)
		return r;
	r = rd(im->fd, b, width < 8 ? 1 : width / 8, rb + bit / 8);
	if (!r)
		*val = ref_from(b, width, bit);
	return r;
}

static int set_refcount(struct qimg *im, uint64_t idx, uint64_t val);

/* A new, zeroed refcount_block for refcount_table entry `t`, placed at
 * next_free and counting itself. */
static int alloc_refblock(struct qimg *im, uint64_t t)
{
	uint64_t nb = im->next_free, nb_idx = nb >> im->cluster_bits;
	uint8_t *buf, e[8];
	int r;

	if (t >= im->reftable_entries) {
		log_error("%s: the refcount_table is full (growing it is not implemented)",
			  im->path);
		return -ENOSPC;
	}
	buf = calloc(1, im->cluster_size);
	if (!buf)
		return -ENOMEM;
	im->next_free += im->cluster_size;
	if (nb_idx >> rb_bits(im) == t) {
		uint64_t bit = (nb_idx & ((1ull << rb_bits(im)) - 1)) << im->refcount_order;

		ref_into(buf + bit / 8, 1u << im->refcount_order, bit, 1);
		r = 0;
	} else {
		r = set_refcount(im, nb_idx, 1);
	}
	if (!r)
		r = wr(im, buf, im->cluster_size, nb);
	free(buf);
	/* The block must be on disk before the table points at it. */
	if (!r && fdatasync(im->fd))
		r = -errno;
	if (r)
		return r;
	r = oset_add(&im->rbs, nb);
	if (r)
		return r;
	put_be64(e, nb);
	r = wr(im, e, 8, im->reftable_offset + t * 8);
	if (!r)
		im->reftable[t] = nb;
	return r;
}

static int set_refcount(struct qimg *im, uint64_t idx, uint64_t val)
{
	unsigned width = 1u << im->refcount_order;
	uint64_t rb, bit;
	uint8_t b[8];
	int r = ref_locate(im, idx, &rb, &bit);

	if (!r && !rb) {
		r = alloc_refblock(im, idx >> rb_bits(im));
		if (!r)
			r = ref_locate(im, idx, &rb, &bit);
	}
	if (r)
		return r;
	if (width < 8) {
		r = rd(im->fd, b, 1, rb + bit / 8);
		if (r)
			return r;
	}
	ref_into(b, width, bit, val);
	im->refcounts_unsynced = true;
	return wr(im, b, width < 8 ? 1 : width / 8, rb + bit / 8);
}

/* Drop one reference to each host cluster of [off, off + len). */
static int unref_range(struct qimg *im, uint64_t off, uint64_t len)
{
	uint64_t first = off >> im->cluster_bits;
	uint64_t last = (off + len - 1) >> im->cluster_bits;

	/* Freed space may be reused: forget what was decompressed. */
	im->dbuf_key = 0;
	for (uint64_t i = first; i <= last; i++) {
		uint64_t v;
		int r = get_refcount(im, i, &v);

		if (r)
			return r;
		if (!v)
			return corrupt(im, "dropping a reference to a free cluster",
				       i << im->cluster_bits);
		r = set_refcount(im, i, v - 1);
		if (r)
			return r;
	}
	return 0;
}

/* Clusters the header, the l1_table and the refcount_table occupy: never
 * written as data. */
static bool is_fixed_metadata(const struct qimg *im, uint64_t host)
{
	uint64_t end = host + im->cluster_size;

	return host < im->cluster_size ||
	       (host < im->l1_offset + im->l1_size * 8ull && end > im->l1_offset) ||
	       (host < im->reftable_offset + im->reftable_bytes &&
		end > im->reftable_offset);
}

/* A free host cluster at the end of the file, its refcount set to 1.
 * Nothing past the end can be in use: a refcount there is corruption,
 * refused rather than skipped (skipping could walk a hostile
 * refcount_table's claims for a very long time). */
static int alloc_cluster(struct qimg *im, uint64_t *host)
{
	uint64_t off = im->next_free, v;
	int r = get_refcount(im, off >> im->cluster_bits, &v);

	if (r)
		return r;
	if (v)
		return corrupt(im, "refcount for a cluster past the end of the file", off);
	im->next_free += im->cluster_size;
	*host = off;
	return set_refcount(im, off >> im->cluster_bits, 1);
}

/* Before a table entry starts referencing newly counted clusters. */
static int sync_refcounts(struct qimg *im)
{
	if (!im->refcounts_unsynced)
		return 0;
	if (fdatasync(im->fd))
		return -errno;
	im->refcounts_unsynced = false;
	return 0;
}

/* ---- writes ---- */

/* The l2_table for guest offset `g`, made private (COPIED) and allocated
 * if needed; *l2_off is its host offset. */
static int l2_for_write(struct qimg *im, uint64_t g, uint64_t *l2_off, uint64_t **table)
{
	uint64_t l1_idx = g >> (im->cluster_bits + im->l2_bits);
	uint64_t old = im->l1[l1_idx], old_off = old & OFFSET_MASK, nt;
	uint64_t *src = NULL, *dst;
	uint8_t e[8];
	int r;

	if (old_off) {
		r = check_table(im, &im->l2s, old_off, "bad l2_table offset");
		if (r)
			return r;
	}
	if (old_off && (old & ENTRY_COPIED)) {
		*l2_off = old_off;
		return l2_load(im, old_off, table);
	}
	if (old_off) {
		r = l2_load(im, old_off, &src);
		if (r)
			return r;
	}
	r = alloc_cluster(im, &nt);
	if (!r)
		r = oset_add(&im->l2s, nt);
	if (r)
		return r;
	/* Load the new table into the cache (reads zeros past the end of
	 * the file), then fill it: a copy of the shared table with COPIED
	 * recomputed, or empty. */
	dst = malloc(im->cluster_size);
	if (!dst)
		return -ENOMEM;
	if (src)
		memcpy(dst, src, im->cluster_size);
	else
		memset(dst, 0, im->cluster_size);
	for (uint64_t i = 0; src && i < (1ull << im->l2_bits); i++) {
		uint64_t ent = be64((uint8_t *)&dst[i]), host = ent & OFFSET_MASK, v;

		if (!(ent & L2E_COMPRESSED) && host) {
			r = get_refcount(im, host >> im->cluster_bits, &v);
			if (r)
				break;
			ent = v == 1 ? ent | ENTRY_COPIED : ent & ~ENTRY_COPIED;
			put_be64((uint8_t *)&dst[i], ent);
		}
	}
	if (!r)
		r = wr(im, dst, im->cluster_size, nt);
	free(dst);
	if (!r)
		r = sync_refcounts(im);
	if (r)
		return r;
	put_be64(e, nt | ENTRY_COPIED);
	r = wr(im, e, 8, im->l1_offset + l1_idx * 8);
	if (r)
		return r;
	im->l1[l1_idx] = nt | ENTRY_COPIED;
	if (old_off) {
		r = unref_range(im, old_off, im->cluster_size);
		if (r)
			return r;
	}
	*l2_off = nt;
	return l2_load(im, nt, table);
}

/* An l2 entry to point at a newly written cluster, once the refcounts
 * that count it are on disk. */
struct l2_update {
	uint64_t l2_off, idx;   /* the l2_table (host offset), entry index */
	uint64_t entry, old;    /* new and previous l2 entries */
};

/* Guest bytes [g, g + n), within one cluster: written in place (*u_used
 * stays false), or into a new cluster, filled whole with the old contents
 * around the new bytes, whose l2 update is left in *u. */
static int write_part(struct qimg *im, uint64_t g, const uint8_t *buf, uint64_t n,
		      struct l2_update *u, bool *u_used)
{
	uint64_t cs = im->cluster_size, in = g & (cs - 1), cstart = g - in;
	uint64_t idx = (g >> im->cluster_bits) & ((1ull << im->l2_bits) - 1);
	uint64_t l2_off, *table, entry, host, nh;
	uint8_t *cl;
	int r = l2_for_write(im, g, &l2_off, &table);

	*u_used = false;
	if (r)
		return r;
	entry = be64((uint8_t *)&table[idx]);
	host = entry & OFFSET_MASK;
	if ((entry & ENTRY_COPIED) && !(entry & L2E_COMPRESSED) && host &&
	    !(entry & L2E_ZERO)) {
		/* Never through a data entry onto metadata, nor past the
		 * end of the file where the allocator hands out clusters. */
		if (!cluster_aligned(im, host) || is_fixed_metadata(im, host) ||
		    oset_has(&im->l2s, host) || oset_has(&im->rbs, host) ||
		    host >= im->next_free)
			return corrupt(im, "bad data cluster entry", entry);
		return wr(im, buf, n, host + in);
	}
	cl = malloc(cs);
	if (!cl)
		return -ENOMEM;
	if (n < cs) {
		uint64_t avail = im->size - cstart < cs ? im->size - cstart : cs;

		memset(cl, 0, cs);
		r = read_mapped(im, entry, cstart, cl, avail);
	}
	if (!r) {
		memcpy(cl + in, buf, n);
		r = alloc_cluster(im, &nh);
	}
	if (!r)
		r = wr(im, cl, cs, nh);
	free(cl);
	if (r)
		return r;
	*u = (struct l2_update){ l2_off, idx, nh | ENTRY_COPIED, entry };
	*u_used = true;
	return 0;
}

/* Point the l2_table at the new cluster, then drop the old cluster's
 * reference: a crash in between leaks, never frees what is in use. */
static int apply_update(struct qimg *im, const struct l2_update *u)
{
	uint64_t *table, host = u->old & OFFSET_MASK;
	uint8_t e[8];
	int r = l2_load(im, u->l2_off, &table);

	if (r)
		return r;
	put_be64(e, u->entry);
	memcpy(&table[u->idx], e, 8);
	r = wr(im, e, 8, u->l2_off + u->idx * 8);
	if (r)
		return r;
	if (u->old & L2E_COMPRESSED) {
		unsigned x = 62 - (im->cluster_bits - 8);
		uint64_t coff = u->old & ((1ull << x) - 1);
		uint64_t nsec = ((u->old & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;

		return unref_range(im, coff, nsec * 512 - (coff & 511));
	}
	/* Not written in place: a host cluster it had (shared, or
	 * preallocated with the zero flag) loses this reference. */
	if (host)
		return unref_range(im, host, im->cluster_size);
	return 0;
}

/* One request's clusters: data and refcounts of all new clusters first,
 * one fdatasync, then every l2 update (not a sync per cluster). */
static int img_write(struct qimg *im, uint64_t off, const uint8_t *buf, uint64_t len)
{
	uint64_t cs = im->cluster_size;
	size_t max = (size_t)(len / cs + 2), nr = 0;
	struct l2_update *ups = malloc(max * sizeof(*ups));
	int r = 0;

	if (!ups)
		return -ENOMEM;
	while (len && !r) {
		uint64_t n = cs - (off & (cs - 1));
		bool used;

		if (n > len)
			n = len;
		r = write_part(im, off, buf, n, &ups[nr], &used);
		nr += used;
		off += n;
		buf += n;
		len -= n;
	}
	/* On failure the new clusters stay unreferenced: leaked, as a crash
	 * would leave them. */
	if (!r && nr)
		r = sync_refcounts(im);
	for (size_t i = 0; i < nr && !r; i++)
		r = apply_update(im, &ups[i]);
	free(ups);
	return r;
}

/* ---- requests ---- */

static int run_req(struct block_dev *bd, struct qcow2_state *s, struct pending *p)
{
	const struct block_req *q = &p->req;
	uint8_t *buf, *c;
	int r;

	switch (q->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		buf = malloc(q->len ? q->len : 1);
		if (!buf)
			return -ENOMEM;
		c = buf;
		if (q->op == BLOCK_OP_WRITE) {
			for (int i = 0; i < q->iovcnt; c += p->iov[i].iov_len, i++)
				memcpy(c, p->iov[i].iov_base, p->iov[i].iov_len);
			r = img_write(s->img, q->offset, buf, q->len);
		} else {
			r = img_read(s->img, q->offset, buf, q->len);
			for (int i = 0; !r && i < q->iovcnt; c += p->iov[i].iov_len, i++)
				memcpy(p->iov[i].iov_base, c, p->iov[i].iov_len);
		}
		free(buf);
		return r;
	case BLOCK_OP_FLUSH:
		if (fdatasync(s->img->fd))
			return -errno;
		bd->stats.flushes_done++;
		return 0;
	case BLOCK_OP_DISCARD:
		/* Advisory: freeing clusters is not implemented yet, and the
		 * device was told so through can_discard. */
		return 0;
	case BLOCK_OP_WRITE_ZEROES:
		if (!s->zeros && !(s->zeros = calloc(1, ZERO_CHUNK)))
			return -ENOMEM;
		for (uint64_t done = 0; done < q->len; done += ZERO_CHUNK) {
			uint64_t n = q->len - done < ZERO_CHUNK ? q->len - done : ZERO_CHUNK;

			r = img_write(s->img, q->offset + done, s->zeros, n);
			if (r)
				return r;
		}
		return 0;
	}
	return -EINVAL;
}

/* Run every queued request; requests queued by the callbacks raise the
 * eventfd again and run on the next round. */
static void run_pending(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;
	struct pending *p = s->head;

	s->head = s->tail = NULL;
	while (p) {
		struct pending *next = p->next;
		int r = run_req(bd, s, p);

		if (r && r != -ENOMEM && r != -ENOSPC)
			r = -EIO;
		p->req.done(p->req.opaque, r);
		free(p);
		p = next;
	}
}

static void qcow2_event(void *opaque, uint32_t events)
{
	struct block_dev *bd = opaque;
	struct qcow2_state *s = bd->state;
	uint64_t v;

	(void)events;
	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd: %s", bd->name, strerror(errno));
	run_pending(bd);
}

static int qcow2_submit(struct block_dev *bd, const struct block_req *req)
{
	struct qcow2_state *s = bd->state;
	int n = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE ? req->iovcnt : 0;
	struct pending *p = malloc(sizeof(*p) + n * sizeof(struct iovec));
	uint64_t one = 1;

	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->req = *req;
	if (n)
		memcpy(p->iov, req->iov, n * sizeof(struct iovec));
	p->req.iov = p->iov;
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	bd->stats.sqes[req->op]++;
	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd: %s", bd->name, strerror(errno));
	return 0;
}

/* ---- opening ---- */

static void img_free(struct qimg *im)
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
		free(im->cbuf);
		free(im->dbuf);
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
	r = rd(im->fd, h, hlen, 0);
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
		if ((incompat & INCOMPAT_COMPRESSION) &&
		    (hlen < HDR_V3_LEN + 1 || h[HDR_V3_LEN] != 0))
			BAD("%s: compression type %u is not supported (zlib only)", path,
			    hlen > HDR_V3_LEN ? h[HDR_V3_LEN] : 0);
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
	if ((incompat & INCOMPAT_DIRTY) && im->writable) {
		snprintf(err, errlen,
			 "%s: the image is dirty (its refcounts need a repair: qemu-img check -r all); "
			 "it can only be opened read-only", path);
		r = -EROFS;
		goto out;
	}
	if (incompat & INCOMPAT_CORRUPT) {
		log_warn("%s: the image is marked corrupt: opened read-only", path);
		*force_ro = true;
	}

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

		r = wr(im, z, 8, 88);
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
	r = rd(im->fd, raw, im->l1_size * 8ull, im->l1_offset);
	for (uint32_t i = 0; !r && i < im->l1_size; i++)
		im->l1[i] = be64(raw + i * 8);
	raw = (uint8_t *)im->reftable;
	if (!r)
		r = rd(im->fd, raw, im->reftable_bytes, im->reftable_offset);
	for (uint64_t i = 0; !r && i < im->reftable_entries; i++)
		im->reftable[i] = be64(raw + i * 8);
	if (r) {
		snprintf(err, errlen, "%s: cannot read the tables: %s", im->path, strerror(-r));
		return r;
	}
	im->next_free = (im->file_size + cs - 1) & ~(cs - 1);
	/* The tables' pointers that are usable; the others are reported as
	 * corruption when used. */
	for (uint32_t i = 0; i < im->l1_size; i++) {
		uint64_t o = im->l1[i] & OFFSET_MASK;

		if (o && cluster_aligned(im, o) && o + cs <= im->file_size &&
		    !is_fixed_metadata(im, o) && oset_add(&im->l2s, o))
			goto nomem;
	}
	for (uint64_t i = 0; i < im->reftable_entries; i++) {
		uint64_t o = im->reftable[i] & REFT_OFFSET_MASK;

		if (o && cluster_aligned(im, o) && o + cs <= im->file_size &&
		    !is_fixed_metadata(im, o) && !oset_has(&im->l2s, o) &&
		    oset_add(&im->rbs, o))
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
	if (hi.has_backing)
		snprintf(info->backing, sizeof(info->backing), "%s", hi.backing);
	if (hi.has_backing_fmt)
		snprintf(info->backing_fmt, sizeof(info->backing_fmt), "%s", hi.backing_fmt);
	return 0;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int qcow2_create(const char *path, uint64_t size, uint32_t cluster_size,
		 const char *backing, const char *backing_fmt, char *err,
		 size_t errlen)
{
	uint64_t cs = cluster_size, l1_size, l1_clusters, meta, p;
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
	if ((backing && (!backing_fmt || !nlen || nlen > MAX_BACKING_NAME)) ||
	    flen >= 64 || size > (1ull << 61)) {
		snprintf(err, errlen, "%s: bad size, backing file name or format", path);
		return -EINVAL;
	}
	size = (size + 511) & ~511ull;
	l1_size = (size + (cs << (bits - 3)) - 1) >> (2 * bits - 3);
	l1_clusters = (l1_size * 8 + cs - 1) / cs;
	if (!l1_clusters)
		l1_clusters = 1;
	/* Header, refcount_table, one refcount_block, l1_table: all counted
	 * by that one refcount_block (16-bit refcounts: cs / 2 clusters). */
	meta = 3 + l1_clusters;
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
	put_be64(buf + 40, 3 * cs);
	put_be64(buf + 48, cs);
	put_be32(buf + 56, 1);
	put_be32(buf + 96, 4);
	/* header_length 112: the compression_type byte (0, zlib) padded. */
	put_be32(buf + 100, HDR_V3_LEN + 8);
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
	put_be64(buf + cs, 2 * cs);
	for (uint64_t i = 0; i < meta; i++) {
		buf[2 * cs + 2 * i] = 0;
		buf[2 * cs + 2 * i + 1] = 1;
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

static void qcow2_close(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;

	while (s->head)
		run_pending(bd);
	evloop_del(bd->loop, s->efd);
	close(s->efd);
	img_free(s->img);
	free(s->zeros);
	free(s);
	bd->state = NULL;
}

static const struct block_driver qcow2_driver = {
	.name = "qcow2",
	.submit = qcow2_submit,
	.close = qcow2_close,
};

int qcow2_open(struct block_dev *bd, int fd, char *err, size_t errlen)
{
	struct qcow2_state *s = calloc(1, sizeof(*s));
	struct qimg *im = calloc(1, sizeof(*im));
	bool force_ro = false;
	struct stat st;
	int r;

	if (!s || !im || !(im->path = strdup(bd->name))) {
		close(fd);
		free(s);
		free(im);
		snprintf(err, errlen, "%s: out of memory", bd->name);
		return -ENOMEM;
	}
	im->fd = fd;
	im->is_qcow2 = true;
	im->writable = !bd->readonly;
	s->img = im;
	s->efd = -1;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", bd->name, strerror(-r));
		goto fail;
	}
	im->dev = st.st_dev;
	im->ino = st.st_ino;
	im->file_size = (uint64_t)st.st_size;
	r = open_chain(im, &force_ro, err, errlen);
	if (r)
		goto fail;
	if (force_ro) {
		bd->readonly = true;
		im->writable = false;
	}
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd: %s", bd->name, strerror(-r));
		goto fail;
	}
	bd->size = im->size;
	bd->can_discard = false;
	bd->drv = &qcow2_driver;
	bd->state = s;
	r = evloop_add(bd->loop, s->efd, EPOLLIN, qcow2_event, bd);
	if (r < 0) {
		snprintf(err, errlen, "%s: event loop: %s", bd->name, strerror(-r));
		goto fail;
	}
	return 0;
fail:
	if (s->efd >= 0)
		close(s->efd);
	img_free(im);
	free(s);
	bd->state = NULL;
	bd->drv = NULL;
	return r;
}
