/*
 * qcow2_check.c - consistency check and repair of a qcow2 image (what
 * `qemu-img check [-r leaks|all]` does, counted the same way so that the
 * two tools agree on every image).
 *
 * The check rebuilds in memory the refcount every host cluster should
 * have, from the metadata alone: the header cluster, the active l1_table,
 * its l2_tables and their data clusters (a compressed cluster counts once
 * for each host cluster its sector span touches), every snapshot's
 * l1_table with its l2_tables and data, the snapshot table, the
 * refcount_table and the refcount_blocks.  It then compares with the
 * stored refcounts: stored above computed is a leak (space wasted, data
 * safe), stored below is a corruption (a write could free, then reuse, a
 * cluster still in use).  Last it checks the COPIED flags of the active
 * tables against the stored refcounts (COPIED exactly when refcount is 1),
 * references past the end of the file or misaligned, and reserved bits
 * set in l1 and l2 entries (counted, not repaired, as qemu-img does).
 *
 * Repair is ordered so that a crash during it never makes things worse:
 * refcounts that are too low are raised first and synced, then leaked
 * refcounts are lowered and synced, then COPIED flags are fixed and
 * synced (a flag must not claim a cluster is private before its refcount
 * says so on disk).  A broken refcount structure itself (a refcount_block
 * misaligned, outside the file or shared) would need the whole structure
 * rebuilt elsewhere, as QEMU does; kvmm does not implement that and says
 * so (check error).  Messages per problem go to stderr in qemu-img's
 * words; the summary is the caller's (src/cli/img_check.c).
 *
 * The image is hostile: every offset is bounds-checked before it is used
 * as an index, tables are read with reads past the end giving zeros, and
 * the in-memory table grows only to about the file's size.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bits the spec reserves (must be zero) in an l1 entry and in a standard
 * (not compressed) l2 entry; QEMU counts each entry with one set as a
 * corruption. */
#define L1E_RESERVED_MASK 0x7f000000000001ffull
#define L2E_RESERVED_MASK 0x3f000000000001feull

struct chk {
	struct qimg *im;
	struct qcow2_check_result *res;
	unsigned fix;
	uint64_t file_len;       /* bytes */
	uint32_t *ref;           /* computed refcount per host cluster
				  * (saturating) */
	uint64_t nb;             /* entries of ref */
	uint64_t refmax;         /* the largest refcount the width holds */
	bool rebuild;            /* the refcount structure itself is broken */
	bool zero_stored;        /* a used cluster has a stored refcount 0 */
	uint8_t *rb;             /* the refcount_block last read ... */
	uint64_t rb_off;         /* ... from here (0: none) */
	uint8_t *buf;            /* one cluster */
};

/* One more reference to every host cluster of [off, off + size).  As in
 * QEMU, the last cluster may lie partly past the end of the file. */
static int inc(struct chk *c, uint64_t off, uint64_t size)
{
	unsigned bits = c->im->cluster_bits;

	if (!size)
		return 0;
	if (off + size > c->file_len && off + size - c->file_len >= c->im->cluster_size) {
		fprintf(stderr, "ERROR: counting reference for region exceeding the end of the "
			"file by one cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64 "\n",
			off, size);
		c->res->corruptions++;
		return 0;
	}
	for (uint64_t k = off >> bits; k <= (off + size - 1) >> bits; k++) {
		if (k >= c->nb) {
			uint32_t *n = realloc(c->ref, (k + 1) * sizeof(*n));

			if (!n)
				return -ENOMEM;
			memset(n + c->nb, 0, (k + 1 - c->nb) * sizeof(*n));
			c->ref = n;
			c->nb = k + 1;
		}
		if (c->ref[k] >= c->refmax || c->ref[k] == UINT32_MAX) {
			fprintf(stderr, "ERROR: overflow cluster offset=0x%" PRIx64 "\n", k << bits);
			c->res->corruptions++;
			continue;
		}
		c->ref[k]++;
	}
	return 0;
}

/* The stored refcount of host cluster i. */
static int stored(struct chk *c, uint64_t i, uint64_t *v)
{
	struct qimg *im = c->im;
	unsigned rbb = im->cluster_bits + 3 - im->refcount_order;
	uint64_t t = i >> rbb, off;
	int r;

	*v = 0;
	if (t >= im->reftable_entries)
		return 0;
	off = im->reftable[t] & REFT_OFFSET_MASK;
	if (!off)
		return 0;
	/* Misaligned: unusable (QEMU: a check error).  Past the end of the
	 * file it reads as zeros, as in QEMU. */
	if (!cluster_aligned(im, off))
		return -EIO;
	if (c->rb_off != off) {
		c->rb_off = 0;
		r = qcow2_pread(im->fd, c->rb, im->cluster_size, off);
		if (r)
			return r;
		c->rb_off = off;
	}
	*v = qcow2_refblock_get(im, c->rb, i & ((1ull << rbb) - 1));
	return 0;
}

/* A table we may rewrite: one the driver trusts as an l2_table. */
static bool writable_l2(const struct chk *c, uint64_t off)
{
	return qcow2_oset_has(&c->im->l2s, off);
}

/* The l2_table at l2_off: count what it references; `active` tables
 * also give the allocation statistics. */
static int check_l2(struct chk *c, uint64_t l2_off, bool active)
{
	struct qimg *im = c->im;
	uint64_t cs = im->cluster_size, next = 0;
	unsigned x = 62 - (im->cluster_bits - 8);
	struct qcow2_check_result *res = c->res;
	int r = qcow2_pread(im->fd, c->buf, cs, l2_off);

	if (r) {
		fprintf(stderr, "ERROR: I/O error in check_refcounts_l2\n");
		res->check_errors++;
		return r;
	}
	for (uint64_t j = 0; j < cs / 8; j++) {
		uint64_t e = be64(c->buf + j * 8), off;

		if (!(e & L2E_COMPRESSED) && (e & L2E_RESERVED_MASK)) {
			fprintf(stderr, "ERROR found l2 entry with reserved bits set: %" PRIx64 "\n", e);
			res->corruptions++;
		}
		if (e & L2E_COMPRESSED) {
			uint64_t coff = e & ((1ull << x) - 1);
			uint64_t nsec = ((e >> x) & ((1ull << (im->cluster_bits - 8)) - 1)) + 1;

			if (e & ENTRY_COPIED) {
				fprintf(stderr, "ERROR: coffset=0x%" PRIx64 ": copied flag must never "
					"be set for compressed clusters\n", coff);
				res->corruptions++;
			}
			r = inc(c, coff, nsec * 512 - (coff & 511));
			if (r)
				return r;
			if (active) {
				res->allocated_clusters++;
				res->compressed_clusters++;
				/* Compressed clusters share sectors: never
				 * contiguous, as QEMU counts them. */
				res->fragmented_clusters++;
			}
			continue;
		}
		off = e & OFFSET_MASK;
		if (!off)
			continue; /* unallocated, or zero without a cluster */
		if (off & (cs - 1)) {
			res->corruptions++;
			if (e & L2E_ZERO) {
				bool fix = (c->fix & QCOW2_FIX_ERRORS) && writable_l2(c, l2_off);

				fprintf(stderr, "%s offset=%" PRIx64 ": Preallocated cluster is not "
					"properly aligned; L2 entry corrupted.\n",
					fix ? "Repairing" : "ERROR", off);
				if (fix) {
					uint8_t z[8];

					put_be64(z, L2E_ZERO);
					r = qcow2_pwrite(im, z, 8, l2_off + j * 8);
					if (r) {
						res->check_errors++;
						return r;
					}
					res->corruptions--;
					res->corruptions_fixed++;
					continue;
				}
			} else {
				fprintf(stderr, "ERROR offset=%" PRIx64 ": Data cluster is not properly "
					"aligned; L2 entry corrupted.\n", off);
			}
		}
		if (active) {
			res->allocated_clusters++;
			if (next && off != next)
				res->fragmented_clusters++;
			next = off + cs;
		}
		r = inc(c, off, cs);
		if (r)
			return r;
	}
	return 0;
}

/* An l1_table (the active one, or a snapshot's) and all it references. */
static int check_l1(struct chk *c, uint64_t l1_off, uint32_t l1_size, bool active)
{
	struct qimg *im = c->im;
	uint8_t *raw;
	int r;

	if (!l1_size)
		return 0;
	r = inc(c, l1_off, l1_size * 8ull);
	if (r)
		return r;
	raw = malloc(l1_size * 8ull);
	if (!raw)
		return -ENOMEM;
	r = qcow2_pread(im->fd, raw, l1_size * 8ull, l1_off);
	if (r) {
		fprintf(stderr, "ERROR: I/O error in check_refcounts_l1\n");
		c->res->check_errors++;
	}
	for (uint32_t i = 0; !r && i < l1_size; i++) {
		uint64_t e = be64(raw + i * 8ull), l2 = e & OFFSET_MASK;

		if (e & L1E_RESERVED_MASK) {
			fprintf(stderr, "ERROR found L1 entry with reserved bits set: %" PRIx64 "\n", e);
			c->res->corruptions++;
		}
		/* As QEMU: only an all-zero entry is empty; one with just
		 * reserved bits names an l2_table at offset 0. */
		if (!e)
			continue;
		r = inc(c, l2, im->cluster_size);
		if (r)
			break;
		if (!cluster_aligned(im, l2)) {
			fprintf(stderr, "ERROR l2_offset=%" PRIx64 ": Table is not cluster aligned; "
				"L1 entry corrupted\n", l2);
			c->res->corruptions++;
		}
		r = check_l2(c, l2, active);
	}
	free(raw);
	return r;
}

/* The refcount_table's entries: each refcount_block must be aligned,
 * inside the file and used by nothing else. */
static int check_refblocks(struct chk *c)
{
	struct qimg *im = c->im;
	uint64_t file_clusters = (c->file_len + im->cluster_size - 1) >> im->cluster_bits;

	for (uint64_t i = 0; i < im->reftable_entries; i++) {
		uint64_t off = im->reftable[i] & REFT_OFFSET_MASK, cl = off >> im->cluster_bits;
		int r;

		if (im->reftable[i] & ~REFT_OFFSET_MASK) {
			fprintf(stderr, "ERROR refcount table entry %" PRIu64 " has reserved bits set\n", i);
			c->res->corruptions++;
			c->rebuild = true;
			continue;
		}
		if (!cluster_aligned(im, off)) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is not cluster aligned; "
				"refcount table entry corrupted\n", i);
			c->res->corruptions++;
			c->rebuild = true;
			continue;
		}
		if (off && cl >= file_clusters) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " is outside image\n", i);
			c->res->corruptions++;
			c->rebuild = true;
			continue;
		}
		if (!off)
			continue;
		r = inc(c, off, im->cluster_size);
		if (r)
			return r;
		if (cl < c->nb && c->ref[cl] != 1) {
			fprintf(stderr, "ERROR refcount block %" PRIu64 " refcount=%" PRIu32 "\n", i,
				c->ref[cl]);
			c->res->corruptions++;
			c->rebuild = true;
		}
	}
	return 0;
}

static int calculate(struct chk *c)
{
	struct qimg *im = c->im;
	int r = inc(c, 0, im->cluster_size);

	if (!r)
		r = check_l1(c, im->l1_offset, im->l1_size, true);
	for (uint32_t i = 0; !r && i < im->nb_snapshots; i++)
		r = check_l1(c, im->snaps[i].l1_offset, im->snaps[i].l1_size, false);
	if (!r && im->nb_snapshots)
		r = inc(c, im->snapshots_offset, im->snapshots_bytes);
	if (!r)
		r = inc(c, im->reftable_offset, im->reftable_bytes);
	if (!r)
		r = check_refblocks(c);
	return r;
}

/* A stored refcount that differs from the computed one. */
struct mismatch {
	uint64_t idx, stored, computed;
	bool fix;                /* the repair asked for sets it right */
};

static const char *label(const struct mismatch *m, bool repairing)
{
	return repairing && m->fix ? "Repairing" : m->stored < m->computed ? "ERROR" : "Leaked";
}

/* Compare stored and computed refcounts, one line per mismatch; with a
 * repair asked, the lines again as the repair goes (qemu-img prints both
 * passes), all raises first, sync, then all lowerings, sync. */
static int compare(struct chk *c, uint64_t *highest)
{
	struct qimg *im = c->im;
	struct qcow2_check_result *res = c->res;
	struct mismatch *mm = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	for (uint64_t i = 0; i < c->nb; i++) {
		uint64_t s1, s2 = c->ref[i];

		r = stored(c, i, &s1);
		if (r) {
			fprintf(stderr, "Can't get refcount for cluster %" PRIu64 ": %s\n", i,
				strerror(-r));
			res->check_errors++;
			r = 0;
			continue;
		}
		if (s1 || s2)
			*highest = i;
		if (s1 == s2)
			continue;
		if (!s1)
			c->zero_stored = true;
		if (n == cap) {
			struct mismatch *nm;

			cap = cap ? 2 * cap : 64;
			nm = realloc(mm, cap * sizeof(*mm));
			if (!nm) {
				free(mm);
				return -ENOMEM;
			}
			mm = nm;
		}
		mm[n] = (struct mismatch){ i, s1, s2,
			(s1 > s2 && (c->fix & QCOW2_FIX_LEAKS)) ||
			(s1 < s2 && (c->fix & QCOW2_FIX_ERRORS)) };
		fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%" PRIu64 "\n",
			label(&mm[n], false), i, s1, s2);
		n++;
	}
	/* -r leaks cannot make a used cluster's refcount right: refuse to
	 * touch anything, as qemu-img does. */
	if (c->fix && !(c->fix & QCOW2_FIX_ERRORS) && (c->rebuild || c->zero_stored)) {
		fprintf(stderr, "ERROR need to rebuild refcount structures\n");
		res->check_errors++;
		free(mm);
		return -EIO;
	}
	if (c->fix && c->rebuild) {
		fprintf(stderr, "ERROR the refcount structure is broken (a refcount_block is "
			"misaligned, outside the image or shared); kvmm cannot rebuild it\n");
		res->check_errors++;
		free(mm);
		return -ENOTSUP;
	}
	for (size_t k = 0; k < n; k++) {
		if (c->fix)
			fprintf(stderr, "%s cluster %" PRIu64 " refcount=%" PRIu64 " reference=%"
				PRIu64 "\n", label(&mm[k], true), mm[k].idx, mm[k].stored,
				mm[k].computed);
		if (mm[k].fix)
			continue;
		if (mm[k].stored < mm[k].computed)
			res->corruptions++;
		else
			res->leaks++;
	}
	for (int pass = 0; pass < 2 && !r; pass++) {
		for (size_t k = 0; k < n; k++) {
			bool raise = mm[k].stored < mm[k].computed;

			if (!mm[k].fix || raise != !pass)
				continue;
			r = qcow2_set_refcount(im, mm[k].idx, mm[k].computed);
			if (r) {
				res->check_errors++;
				break;
			}
			if (raise)
				res->corruptions_fixed++;
			else
				res->leaks_fixed++;
		}
		if (!r)
			r = qcow2_sync_refcounts(im);
	}
	/* Fixing may have written refcount_blocks we cached. */
	c->rb_off = 0;
	free(mm);
	return r;
}

/* COPIED on the active tables: set exactly when the stored refcount is 1
 * (qemu's check_oflag_copied). */
static int check_copied(struct chk *c)
{
	struct qimg *im = c->im;
	struct qcow2_check_result *res = c->res;
	uint64_t cs = im->cluster_size;
	bool repair;
	int r;

	/* -r leaks fixes flags too when the refcounts are now known right
	 * (qemu-img does the same). */
	repair = (c->fix & QCOW2_FIX_ERRORS) ||
		 ((c->fix & QCOW2_FIX_LEAKS) && !res->check_errors && !res->corruptions &&
		  !res->leaks);

	for (uint32_t i = 0; i < im->l1_size; i++) {
		uint64_t e = im->l1[i], l2 = e & OFFSET_MASK, rc;
		unsigned dirty = 0;

		if (!l2 || stored(c, l2 >> im->cluster_bits, &rc))
			continue;
		if ((rc == 1) != !!(e & ENTRY_COPIED)) {
			res->corruptions++;
			fprintf(stderr, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu32 " l1_entry=%"
				PRIx64 " refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", i, e, rc);
			if (repair) {
				uint8_t b[8];

				e = rc == 1 ? e | ENTRY_COPIED : e & ~ENTRY_COPIED;
				put_be64(b, e);
				r = qcow2_pwrite(im, b, 8, im->l1_offset + i * 8ull);
				if (r) {
					res->check_errors++;
					return r;
				}
				im->l1[i] = e;
				res->corruptions--;
				res->corruptions_fixed++;
			}
		}
		r = qcow2_pread(im->fd, c->buf, cs, l2);
		if (r) {
			fprintf(stderr, "ERROR: Could not read L2 table: %s\n", strerror(-r));
			res->check_errors++;
			return r;
		}
		for (uint64_t j = 0; j < cs / 8; j++) {
			uint64_t le = be64(c->buf + j * 8), off = le & OFFSET_MASK;

			if ((le & L2E_COMPRESSED) || !off || stored(c, off >> im->cluster_bits, &rc))
				continue;
			if ((rc == 1) == !!(le & ENTRY_COPIED))
				continue;
			res->corruptions++;
			fprintf(stderr, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64
				" refcount=%" PRIu64 "\n", repair ? "Repairing" : "ERROR", le, rc);
			if (repair) {
				le = rc == 1 ? le | ENTRY_COPIED : le & ~ENTRY_COPIED;
				put_be64(c->buf + j * 8, le);
				dirty++;
			}
		}
		if (!dirty)
			continue;
		if (!writable_l2(c, l2)) {
			fprintf(stderr, "ERROR: Could not write L2 table; metadata overlap check failed\n");
			res->check_errors++;
			return -EIO;
		}
		r = qcow2_pwrite(im, c->buf, cs, l2);
		if (r) {
			res->check_errors++;
			return r;
		}
		res->corruptions -= dirty;
		res->corruptions_fixed += dirty;
	}
	return 0;
}

/* Clear the dirty and corrupt bits (version 3 only has them). */
static int mark_clean(struct qimg *im)
{
	uint8_t b[8];
	uint64_t f;
	int r;

	if (im->version < 3)
		return 0;
	r = qcow2_pread(im->fd, b, 8, 72);
	if (r)
		return r;
	f = be64(b);
	if (!(f & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT)))
		return 0;
	put_be64(b, f & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT));
	r = qcow2_pwrite(im, b, 8, 72);
	return r ? r : qcow2_fdatasync(im);
}

int qcow2_check(struct qimg *im, unsigned fix, struct qcow2_check_result *res)
{
	struct chk c = { .im = im, .res = res, .fix = fix, .file_len = im->file_size };
	unsigned width = 1u << im->refcount_order;
	uint64_t highest = 0;
	int r;

	memset(res, 0, sizeof(*res));
	if (fix && !im->writable)
		return -EROFS;
	c.refmax = width == 64 ? UINT64_MAX : (1ull << width) - 1;
	c.nb = (c.file_len + im->cluster_size - 1) >> im->cluster_bits;
	c.ref = calloc(c.nb ? c.nb : 1, sizeof(*c.ref));
	c.rb = malloc(im->cluster_size);
	c.buf = malloc(im->cluster_size);
	res->total_clusters = (im->size + im->cluster_size - 1) >> im->cluster_bits;
	r = c.ref && c.rb && c.buf ? 0 : -ENOMEM;
	if (!r)
		r = calculate(&c);
	if (!r)
		r = compare(&c, &highest);
	if (!r)
		r = check_copied(&c);
	if (!r && fix) {
		/* Tables were rewritten behind the caches. */
		for (unsigned i = 0; i < im->l2_slots; i++)
			im->l2_cache[i].offset = 0;
		im->dbuf_key = 0;
		r = qcow2_fdatasync(im);
	}
	if (!r && fix && !res->check_errors && !res->corruptions)
		r = mark_clean(im);
	res->image_end_offset = (highest + 1) << im->cluster_bits;
	if (r && r != -ENOMEM && !res->check_errors)
		res->check_errors++;
	free(c.ref);
	free(c.rb);
	free(c.buf);
	return r;
}

int image_check(struct image *img, unsigned fix, struct qcow2_check_result *res)
{
	/* An image handle is a struct qimg (image.c). */
	struct qimg *im = (struct qimg *)img;

	memset(res, 0, sizeof(*res));
	if (!im->is_qcow2)
		return -ENOTSUP;
	return qcow2_check(im, fix, res);
}
