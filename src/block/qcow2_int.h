/*
 * qcow2_int.h - what the qcow2 driver's files share (qcow2.c: header,
 * open, create; qcow2_cluster.c: l2 cache, guest reads and writes;
 * qcow2_refcount.c: refcounts and cluster allocation; qcow2_io.c: the
 * block_driver requests).  Not an interface: devices use block.h, tools
 * image.h.  The format and the driver's design are described at the top
 * of qcow2.c; names follow QEMU's docs/interop/qcow2.txt.
 */
#ifndef KVMM_BLOCK_QCOW2_INT_H
#define KVMM_BLOCK_QCOW2_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "block/qcow2_check.h"

struct block_dev;

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

/* One entry of the snapshot table, parsed (spec: "Snapshot table"). */
struct qcow2_snapshot {
	uint64_t l1_offset;        /* host byte offset of its l1_table */
	uint32_t l1_size;          /* entries */
	char *id, *name;           /* NUL-terminated copies */
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;    /* bytes (vm_state_size_large when present) */
	uint64_t disk_size;        /* bytes; the image's size when not recorded */
	uint8_t *extra;            /* extra data as read, unknown fields kept */
	uint32_t extra_size;
};

/* Tests stand in for the file's writes and syncs (a recording "power
 * cut" file, tests/unit/test_qcow2_powercut.c).  With hooks set, every
 * write and sync of the image goes through qcow2_pwrite() and
 * qcow2_fdatasync(), data included (no io_uring).  Return 0 or -errno. */
struct qcow2_file_hooks {
	int (*pwrite)(void *opaque, int fd, const void *buf, uint64_t len, uint64_t off);
	int (*fdatasync)(void *opaque, int fd);
	void *opaque;
};

/* One file of a chain: the image itself, or a backing file. */
struct qimg {
	int fd;
	const struct qcow2_file_hooks *hooks; /* tests only; NULL */
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
	/* Internal snapshots (qcow2_snapshot.c). */
	uint64_t snapshots_offset, snapshots_bytes; /* the snapshot table */
	uint32_t nb_snapshots;
	struct qcow2_snapshot *snaps;
	struct oset snapmeta;   /* clusters of the snapshot table and of the
				 * snapshots' l1_tables: never written as data */
	bool refcounts_unsynced;
	/* Writes other than refcount entries since the last fdatasync: a
	 * refcount may only fall once the pointer writes before it are
	 * durable (qcow2_unref_range), and a sync with none is skipped. */
	bool pointers_unsynced;
	bool writing_refcount;  /* qcow2_set_refcount's own write */
	bool throwaway;         /* snapshot=on's unlinked overlay: no
				 * fdatasync (qcow2_open_throwaway) */
	uint8_t *cbuf;          /* compressed bytes, up to 2 clusters */
	uint8_t *dbuf;          /* the last decompressed cluster ... */
	uint64_t dbuf_key;      /* ... its l2 entry; 0 = none */
	uint8_t compression_type;  /* QCOW2_COMPRESSION_*: header byte 104 */
	struct qcow2_codec *codec; /* qcow2_compress.c's state; NULL = none yet */
	uint8_t map_prealloc;   /* image.c: QEMU's guess that the image has
				 * metadata preallocation (0 not made yet,
				 * 1 no, 2 yes) */
};

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline bool cluster_aligned(const struct qimg *im, uint64_t off)
{
	return !(off & (im->cluster_size - 1));
}

/* ---- qcow2.c: file access, the metadata sets, opening ---- */

/* pread len bytes at file offset off of fd; bytes past the end of the
 * file read as zeros.  Returns 0 or -errno. */
int qcow2_pread(int fd, void *buf, uint64_t len, uint64_t off);

/* pwrite all of buf at off in im's file, growing im->file_size.
 * Returns 0, -errno, or -EIO for a short write that made no progress. */
int qcow2_pwrite(struct qimg *im, const void *buf, uint64_t len, uint64_t off);

/* fdatasync im's file.  Returns 0 or -errno. */
int qcow2_fdatasync(struct qimg *im);

/* Log that im is corrupt (`what`, value v) and return -EIO. */
int qcow2_corrupt(const struct qimg *im, const char *what, uint64_t v);

/* Sorted sets of host offsets (byte offsets, cluster aligned). */
bool qcow2_oset_has(const struct oset *o, uint64_t off);
int qcow2_oset_add(struct oset *o, uint64_t off);  /* 0 or -ENOMEM */

/* A table pointer read from the image must be in its set (im->l2s or
 * im->rbs): 0, or qcow2_corrupt() naming `what`. */
int qcow2_check_table(const struct qimg *im, const struct oset *o, uint64_t off,
		      const char *what);

/* Open the chain whose top image is open on fd (owned from now on, also
 * on error) at `path`: a qcow2 image when is_qcow2, else raw.  writable
 * says how fd was opened; *force_ro is set when the image is marked
 * corrupt.  A dirty image opened writable has its refcounts repaired
 * first (qcow2_check), which clears the dirty bit.  Backing files are opened read-only and locked as QEMU locks
 * a backing child.  Returns 0 with *out, or -errno with a message in err
 * (the errors of qcow2_open()). */
int qcow2_img_open(int fd, const char *path, bool is_qcow2, bool writable,
		   bool *force_ro, struct qimg **out, char *err, size_t errlen);

/* qcow2_img_open() for `kvmm img check`: a corrupt image opened writable
 * stays writable (*force_ro still says it is marked corrupt) so that a
 * repair can clear the mark, and a dirty image is left for the check to
 * repair rather than repaired at open. */
int qcow2_img_open_check(int fd, const char *path, bool is_qcow2, bool writable,
			 bool *force_ro, struct qimg **out, char *err, size_t errlen);

/* Close and free a chain (NULL is a no-op). */
void qcow2_img_free(struct qimg *im);

/* Rewrite im's header cluster (cluster 0) so that it names backing file
 * `backing` (stored as given: relative names are relative to the image's
 * directory) of format `fmt` (the backing format extension, 0xe2792aca),
 * or no backing file when backing is NULL or "".  Other header extensions
 * are kept.  fdatasync, one write of cluster 0, fdatasync: what was
 * written before is on disk before the header changes.  im must be a
 * writable qcow2 image; its backing chain in memory is stale afterwards
 * (close it).  Returns 0, -EINVAL for a bad name or format, -ENOSPC when
 * the name and extensions do not fit cluster 0, or -errno; a message in
 * err.  (Spec: "Header", "Header extensions".) */
int qcow2_set_backing(struct qimg *im, const char *backing, const char *fmt,
		      char *err, size_t errlen);

/* ---- qcow2_cluster.c: the l2 cache, reads and writes of guest bytes ---- */

/* The l2_table at host offset `off` (checked by the caller), through the
 * cache; *table is big-endian, valid until the next load. */
int qcow2_l2_load(struct qimg *im, uint64_t off, uint64_t **table);

/* The l2 entry for guest offset g (0 when its l1 entry is empty). */
int qcow2_l2_entry(struct qimg *im, uint64_t g, uint64_t *entry);

/* Bytes [g, g + n) of one guest cluster whose l2 entry is `entry`. */
int qcow2_read_mapped(struct qimg *im, uint64_t entry, uint64_t g, uint8_t *buf,
		      uint64_t n);

/* Guest bytes [off, off + len) of any image of a chain (raw or qcow2);
 * past the virtual size reads zeros.  0 or -errno. */
int qcow2_img_read(struct qimg *im, uint64_t off, uint8_t *buf, uint64_t len);

/* Write guest bytes [off, off + len) of a writable qcow2 image, with the
 * crash-safe ordering described in qcow2.c.  0 or -errno. */
int qcow2_img_write(struct qimg *im, uint64_t off, const uint8_t *buf, uint64_t len);

/* Where guest offset g's bytes may be read (write false) or written in
 * place (write true) directly in im's file, without the synchronous path:
 * 1 with *host the file offset of g (the rest of g's cluster follows it),
 * when the cluster is allocated, uncompressed, not zero-flagged and
 * correctly aligned, and for a write COPIED and clear of metadata and of
 * next_free (the checks of an in-place write); 0 when the synchronous
 * path must do it (qcow2_img_read/write: backing file, zeros,
 * decompression, allocation, corruption reported there); -errno when the
 * l2 lookup failed.  Metadata is read through the l2 cache. */
int qcow2_map_direct(struct qimg *im, uint64_t g, bool write, uint64_t *host);

/* Discard (zero false) or write zeroes (zero true) guest bytes [off, off
 * + len) of a writable qcow2 image (any alignment, within the virtual
 * size).  Discard: every whole cluster's l2 entry becomes 0 (the backing
 * file's bytes, or zeros, show through: what a commit's emptying of the
 * overlay wants) and its host cluster or compressed sectors lose their
 * reference; partial clusters at the ends are left alone (discard is
 * advisory); unmap is ignored.  Write zeroes: the range reads back as
 * zeros; in version 3 whole clusters get the zero flag (unmap: the host
 * cluster is freed; without, a COPIED host cluster stays allocated under
 * the flag), partial clusters are written as zeros, as is everything in
 * version 2 with a backing file (no zero flag; without a backing file a
 * 0 entry reads zeros).  Ordering: the l2 entries are made durable
 * (fdatasync) before any refcount falls, so a crash leaks at most.
 * Space of clusters whose refcount reaches 0 is punched out of the file
 * (advisory).  Returns 0, -EROFS (read-only or raw), -EINVAL (range past
 * the end), -EIO (a bad entry, logged as corruption), -ENOSPC, -ENOMEM,
 * or another -errno from the file. */
int qcow2_img_discard(struct qimg *im, uint64_t off, uint64_t len, bool zero, bool unmap);
/* The l2_table for guest offset g of a writable image, made private
 * (COPIED) and allocated if needed, with the ordering of qcow2.c (it may
 * fdatasync); *l2_off is its host offset, *table its cached copy
 * (big-endian, valid until the next qcow2_l2_load).  0 or -errno. */
int qcow2_l2_for_write(struct qimg *im, uint64_t g, uint64_t *l2_off, uint64_t **table);

/* ---- qcow2_refcount.c: refcounts and allocation ---- */

/* Refcount of host cluster number idx (0 when no refcount_block). */
int qcow2_get_refcount(struct qimg *im, uint64_t idx, uint64_t *val);

/* Entry i of the refcount_block `block` (one cluster, as on disk). */
uint64_t qcow2_refblock_get(const struct qimg *im, const uint8_t *block, uint64_t i);

/* Set it (allocating a refcount_block if needed); marks refcounts
 * unsynced. */
int qcow2_set_refcount(struct qimg *im, uint64_t idx, uint64_t val);

/* Drop one reference to each host cluster of bytes [off, off + len),
 * after an fdatasync: the write that removed the reference must be
 * durable before a refcount says the cluster is free. */
int qcow2_unref_range(struct qimg *im, uint64_t off, uint64_t len);

/* Whether the cluster at host offset `host` holds the header, the
 * l1_table or the refcount_table. */
bool qcow2_is_fixed_metadata(const struct qimg *im, uint64_t host);

/* A free host cluster at the end of the file, its refcount set to 1
 * (clusters there a crash left counted are skipped: leaked). */
int qcow2_alloc_cluster(struct qimg *im, uint64_t *host);

/* fdatasync if refcounts were written since the last sync. */
int qcow2_sync_refcounts(struct qimg *im);

/* ---- qcow2_check.c: consistency check and repair (qcow2_check.h) ---- */

/* Rebuild the refcounts the metadata implies, compare them with the
 * stored ones and repair what `fix` (QCOW2_FIX_*) asks, as image_check()
 * describes. */
int qcow2_check(struct qimg *im, unsigned fix, struct qcow2_check_result *res);

/* ---- qcow2_snapshot.c: internal snapshots ---- */

/* Read and validate the snapshot table the header names
 * (im->snapshots_offset, im->nb_snapshots) into im->snaps, and fill
 * im->snapmeta.  QEMU's limits apply (65536 snapshots, 64 MiB of table,
 * 1 KiB of extra data per entry).  Returns 0, or -errno with a message
 * naming the image in err (-EINVAL for a bad table). */
int qcow2_snapshots_load(struct qimg *im, char *err, size_t errlen);

/* Free im->snaps (im->nb_snapshots entries). */
void qcow2_snapshots_free(struct qimg *im);
/* ---- qcow2_compress.c: compressed clusters ---- */

/* The header's compression_type (spec: "Header", byte 104). */
#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* Decompress the compressed cluster whose l2 entry is `entry` into
 * im->dbuf (cached: im->dbuf_key), as im->compression_type says (raw
 * deflate or a zstd frame).  0, -EIO (logged) for a descriptor whose
 * span lies past the end of the file or data that does not decompress to
 * exactly one cluster, or -errno.  Spec: "Compressed Clusters
 * Descriptor". */
int qcow2_decompress(struct qimg *im, uint64_t entry);

/* Write n whole guest clusters from g (cluster aligned; g + n clusters
 * within the virtual size rounded up to a cluster) of a writable qcow2
 * image, compressed as im->compression_type says: each compressed
 * cluster takes the bytes it needs, packed after the previous one as
 * QEMU packs them (a host cluster's refcount counts the compressed
 * clusters touching it); one that does not compress to less than a
 * cluster is stored uncompressed, as QEMU does.  The clusters must be
 * unallocated in this image (l2 entry 0, or the zero flag alone).  Order:
 * data, refcounts, fdatasync, l2 entries.  Returns 0, -EINVAL (bad range),
 * -EEXIST (a cluster already allocated), or -errno.  Spec: "Compressed
 * Clusters Descriptor". */
int qcow2_write_compressed_n(struct qimg *im, uint64_t g, const uint8_t *buf, uint64_t n);

/* One cluster: qcow2_write_compressed_n(im, g, cluster, 1). */
int qcow2_write_compressed(struct qimg *im, uint64_t g, const uint8_t *cluster);

/* Free im->codec (compression contexts); called by qcow2_img_free(). */
void qcow2_codec_free(struct qimg *im);

/* The snapshot whose id (first) or name (then) is `key`, as QEMU's
 * find_snapshot_by_id_or_name(); prefer_name looks at names first (qemu-img
 * snapshot -d finds by name).  Returns the index, or -ENOENT. */
int qcow2_snapshot_find(const struct qimg *im, const char *key, bool prefer_name);

/* Create snapshot `name` of the active image (a writable qcow2 image):
 * id = 1 + the largest numeric id, the date now, no VM state, disk_size
 * the virtual size.  Crash-safe ordering: the top of qcow2_snapshot.c.
 * Returns 0, or -errno with a message naming the image in err. */
int qcow2_snapshot_create(struct qimg *im, const char *name, char *err, size_t errlen);

/* Make snapshot number idx (index in im->snaps) the active image's
 * content and virtual size.  Returns 0, or -errno with a message. */
int qcow2_snapshot_apply(struct qimg *im, uint32_t idx, char *err, size_t errlen);

/* Delete snapshot number idx, freeing what only it referenced and
 * setting COPIED again where the active image is the only user.
 * Returns 0, or -errno with a message. */
int qcow2_snapshot_delete(struct qimg *im, uint32_t idx, char *err, size_t errlen);

/* n contiguous free clusters at the end of the file, each with refcount
 * 1 (refcount_blocks they need are placed after them); *host is the
 * first one's byte offset.  Refcounts are left unsynced.  0 or -errno. */
int qcow2_alloc_run(struct qimg *im, uint64_t n, uint64_t *host);

/* ---- qcow2_resize.c ---- */

/* Set the virtual size of a writable qcow2 image to `size` bytes (a
 * multiple of 512), growing the l1_table if needed (qcow2.txt: "Header",
 * l1_size); shrinking drops the clusters past the new end (qcow2_resize.c).
 * The area a resize adds reads as zeros, also over a longer backing file.
 * Returns 0, or -errno with a message naming the image in err. */
int qcow2_resize(struct qimg *im, uint64_t size, char *err, size_t errlen);

/* ---- qcow2_io.c: the block_driver ---- */

/* Attach the block driver over the chain `im` (owned from now on, also
 * on error) to bd, on bd->loop.  direct (cache=none): im->fd is buffered
 * (O_DIRECT cleared by qcow2_open) and data moves through a second,
 * O_DIRECT descriptor on the file, aligned to bd->logical_block.
 * Returns 0, or -errno with a message. */
int qcow2_io_attach(struct block_dev *bd, struct qimg *im, bool direct, char *err,
		    size_t errlen);

#endif
