/*
 * qcow2_compress.c - compressed clusters of a qcow2 image (QEMU's
 * docs/interop/qcow2.txt, "Compressed Clusters Descriptor" and the
 * header's compression_type).
 *
 * An l2 entry with bit 62 set is a compressed cluster descriptor: with
 * x = 62 - (cluster_bits - 8), bits 0..x-1 are the host byte offset of
 * the compressed data (not aligned: QEMU packs compressed clusters end to
 * end) and bits x..61 the number of additional 512-byte sectors the data
 * spans, counted from the sector holding its first byte.  The span is an
 * upper bound: the stream may end before it, and the file may end inside
 * its last sector (QEMU does not pad the last compressed cluster).
 *
 * The header's compression_type (byte 104, with incompatible bit 3 set
 * when it is not 0) says what the streams are: 0, zlib: raw deflate
 * (window bits -12, no zlib header or checksum); 1, zstd: one zstd frame,
 * possibly followed by leftover bytes up to the end of the span.  Either
 * way a stream must decompress to exactly one cluster.
 *
 * Writing (qcow2_write_compressed_n, for `kvmm img convert -c`) follows
 * QEMU: deflate at the default level, or zstd at its default level, into
 * at most cluster_size - 1 bytes (else the cluster is stored uncompressed);
 * the bytes are placed right after the previous compressed cluster's
 * (free_byte_offset), spilling into the next host cluster when it is the
 * next one allocated, else starting a fresh one; every host cluster a
 * compressed cluster touches gets one more reference.  A batch of
 * clusters is compressed first, by up to MAX_WORKERS threads (this is
 * the CPU-bound part of a convert -c), then written in order: data,
 * refcounts, one fdatasync, then the l2 entries, so a crash leaves at
 * most leaked clusters (qcow2.c).
 *
 * Contexts are kept per image (struct qcow2_codec) rather than made per
 * cluster: a zstd context costs a few hundred KiB of allocation, too much
 * to pay for every 64 KiB cluster.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define MAX_WORKERS 8

/* One compressing thread's contexts. */
struct cctx {
	z_stream def;           /* raw deflate, reset per cluster */
	bool def_ready;
	ZSTD_CCtx *zc;
};

struct qcow2_codec {
	z_stream inf;           /* raw inflate, reset per cluster */
	bool inf_ready;
	ZSTD_DCtx *zd;
	struct cctx cc[MAX_WORKERS];
	uint64_t free_byte_offset; /* where the next compressed cluster may
				    * go, inside the host cluster the last
				    * one ended in; 0 = start a new one */
};

void qcow2_codec_free(struct qimg *im)
{
	struct qcow2_codec *c = im->codec;

	if (!c)
		return;
	if (c->inf_ready)
		inflateEnd(&c->inf);
	ZSTD_freeDCtx(c->zd);
	for (unsigned i = 0; i < MAX_WORKERS; i++) {
		if (c->cc[i].def_ready)
			deflateEnd(&c->cc[i].def);
		ZSTD_freeCCtx(c->cc[i].zc);
	}
	free(c);
	im->codec = NULL;
}

static struct qcow2_codec *codec(struct qimg *im)
{
	if (!im->codec)
		im->codec = calloc(1, sizeof(*im->codec));
	return im->codec;
}

/* The host bytes [*coff, *coff + *clen) a descriptor names, checked
 * against the file. */
static int compressed_span(struct qimg *im, uint64_t entry, uint64_t *coff, uint64_t *clen)
{
	unsigned x = 62 - (im->cluster_bits - 8);
	uint64_t nsec = ((entry & ~L2E_COMPRESSED & ~ENTRY_COPIED) >> x) + 1;

	*coff = entry & ((1ull << x) - 1);
	*clen = nsec * 512 - (*coff & 511);
	if (*coff >= im->file_size)
		return qcow2_corrupt(im, "compressed cluster past the end of the file", *coff);
	/* The span may end inside the file's last, partial sector. */
	if (*clen > ((im->file_size + 511) & ~511ull) - *coff)
		return qcow2_corrupt(im, "compressed cluster runs past the end of the file", entry);
	/* The field allows up to two clusters; no compressed cluster
	 * needs more than one plus the sector it starts in. */
	if (*clen > 2 * im->cluster_size)
		*clen = 2 * im->cluster_size;
	if (*clen > im->file_size - *coff)
		*clen = im->file_size - *coff;
	return 0;
}

static bool inflate_cluster(struct qcow2_codec *c, const uint8_t *src, uint64_t slen,
			    uint8_t *dst, uint64_t cs)
{
	int r;

	if (!c->inf_ready) {
		if (inflateInit2(&c->inf, -12) != Z_OK)
			return false;
		c->inf_ready = true;
	} else if (inflateReset(&c->inf) != Z_OK) {
		return false;
	}
	c->inf.next_in = (uint8_t *)src;
	c->inf.avail_in = (uInt)slen;
	c->inf.next_out = dst;
	c->inf.avail_out = (uInt)cs;
	r = inflate(&c->inf, Z_FINISH);
	/* The sector count rounds up, so input may remain once the output
	 * is full: a full cluster is success whatever inflate says. */
	return (r == Z_STREAM_END || r == Z_BUF_ERROR) && !c->inf.avail_out;
}

static bool unzstd_cluster(struct qcow2_codec *c, const uint8_t *src, uint64_t slen,
			   uint8_t *dst, uint64_t cs)
{
	/* The frame ends where its own headers say; what follows, up to
	 * the end of the last sector, is not part of it. */
	size_t flen = ZSTD_findFrameCompressedSize(src, slen), n;

	if (ZSTD_isError(flen))
		return false;
	if (!c->zd && !(c->zd = ZSTD_createDCtx()))
		return false;
	n = ZSTD_decompressDCtx(c->zd, dst, cs, src, flen);
	return !ZSTD_isError(n) && n == cs;
}

int qcow2_decompress(struct qimg *im, uint64_t entry)
{
	struct qcow2_codec *c = codec(im);
	uint64_t coff, clen;
	bool ok;
	int r;

	if (im->dbuf_key == entry)
		return 0;
	if (!c)
		return -ENOMEM;
	r = compressed_span(im, entry, &coff, &clen);
	if (!r)
		r = qcow2_pread(im->fd, im->cbuf, clen, coff);
	if (r)
		return r;
	im->dbuf_key = 0;
	if (im->compression_type == QCOW2_COMPRESSION_ZSTD)
		ok = unzstd_cluster(c, im->cbuf, clen, im->dbuf, im->cluster_size);
	else
		ok = inflate_cluster(c, im->cbuf, clen, im->dbuf, im->cluster_size);
	if (!ok)
		return qcow2_corrupt(im, im->compression_type == QCOW2_COMPRESSION_ZSTD ?
				     "compressed cluster is not one zstd frame of a cluster" :
				     "compressed cluster does not inflate to a cluster", coff);
	im->dbuf_key = entry;
	return 0;
}

/* ---- writing ---- */

/* Compress one cluster (cs bytes) into dst: the compressed length, 0 when
 * it would not be shorter than cs (store it uncompressed), or -errno. */
static long compress_cluster(struct cctx *c, unsigned type, const uint8_t *src,
			     uint8_t *dst, uint64_t cs)
{
	int r;

	if (type == QCOW2_COMPRESSION_ZSTD) {
		size_t n;

		if (!c->zc && !(c->zc = ZSTD_createCCtx()))
			return -ENOMEM;
		n = ZSTD_compress2(c->zc, dst, cs - 1, src, cs);
		if (ZSTD_isError(n))
			return ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall ? 0 : -EIO;
		return (long)n;
	}
	if (!c->def_ready) {
		/* QEMU's parameters: default level, 4 KiB window, no
		 * zlib header. */
		if (deflateInit2(&c->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		c->def_ready = true;
	} else if (deflateReset(&c->def) != Z_OK) {
		return -EIO;
	}
	c->def.next_in = (uint8_t *)src;
	c->def.avail_in = (uInt)cs;
	c->def.next_out = dst;
	c->def.avail_out = (uInt)(cs - 1);
	r = deflate(&c->def, Z_FINISH);
	if (r == Z_STREAM_END)
		return (long)(cs - 1 - c->def.avail_out);
	return r == Z_OK || r == Z_BUF_ERROR ? 0 : -EIO;
}

/* A batch to compress: cluster i of src goes to dst + i * cs, its result
 * (compress_cluster) to len[i]; worker k takes i = k, k + nw, ... */
struct batch {
	struct qcow2_codec *c;
	unsigned type, nw;
	uint64_t cs, n;
	const uint8_t *src;
	uint8_t *dst;
	long *len;
};

struct worker {
	struct batch *b;
	unsigned k;
	pthread_t t;
};

static void *compress_worker(void *arg)
{
	struct worker *w = arg;
	struct batch *b = w->b;

	for (uint64_t i = w->k; i < b->n; i += b->nw)
		b->len[i] = compress_cluster(&b->c->cc[w->k], b->type, b->src + i * b->cs,
					     b->dst + i * b->cs, b->cs);
	return NULL;
}

static void compress_batch(struct batch *b)
{
	struct worker w[MAX_WORKERS];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned started = 1;

	b->nw = cpus < 1 ? 1 : cpus > MAX_WORKERS ? MAX_WORKERS : (unsigned)cpus;
	if (b->nw > b->n)
		b->nw = (unsigned)b->n;
	for (unsigned k = 0; k < b->nw; k++)
		w[k] = (struct worker){ .b = b, .k = k };
	/* Worker 0 is this thread; a thread that cannot start leaves its
	 * clusters to a second pass here. */
	for (unsigned k = 1; k < b->nw; k++, started++)
		if (pthread_create(&w[k].t, NULL, compress_worker, &w[k]))
			break;
	compress_worker(&w[0]);
	for (unsigned k = 1; k < started; k++)
		pthread_join(w[k].t, NULL);
	for (unsigned k = started; k < b->nw; k++)
		compress_worker(&w[k]);
}

static uint64_t refcount_max(const struct qimg *im)
{
	unsigned width = 1u << im->refcount_order;

	return width == 64 ? UINT64_MAX : (1ull << width) - 1;
}

/* len (< cluster_size) bytes of host space for one compressed cluster,
 * packed after the previous one (QEMU's qcow2_alloc_bytes); every host
 * cluster they touch gains a reference. */
static int alloc_bytes(struct qimg *im, struct qcow2_codec *c, uint64_t len, uint64_t *out)
{
	uint64_t cs = im->cluster_size, off = c->free_byte_offset, v = 0, fresh;
	int r;

	if (off) {
		r = qcow2_get_refcount(im, off >> im->cluster_bits, &v);
		if (r)
			return r;
		if (v >= refcount_max(im))
			off = 0;
	}
	if (!off || len > cs - (off & (cs - 1))) {
		r = qcow2_alloc_cluster(im, &fresh);
		if (r)
			return r;
		/* Spill into the new cluster only if it follows. */
		if (off && fresh != ((off + cs - 1) & ~(cs - 1)))
			off = 0;
		if (!off)
			off = fresh;
	}
	if (off & (cs - 1)) {
		r = qcow2_set_refcount(im, off >> im->cluster_bits, v + 1);
		if (r)
			return r;
	}
	c->free_byte_offset = (off + len) & (cs - 1) ? off + len : 0;
	*out = off;
	return 0;
}

/* Host bytes to write, appended while they are contiguous. */
struct stage {
	uint8_t *buf;
	uint64_t off, len;
};

static int stage_flush(struct qimg *im, struct stage *st)
{
	int r = st->len ? qcow2_pwrite(im, st->buf, st->len, st->off) : 0;

	st->len = 0;
	return r;
}

static int stage_add(struct qimg *im, struct stage *st, const uint8_t *p, uint64_t len,
		     uint64_t off)
{
	int r = 0;

	if (st->len && st->off + st->len != off)
		r = stage_flush(im, st);
	if (!st->len)
		st->off = off;
	memcpy(st->buf + st->len, p, len);
	st->len += len;
	return r;
}

/* An l2 entry to write once the data and refcounts are on disk. */
struct cupdate {
	uint64_t l2_off, idx, entry;
};

static int place_batch(struct qimg *im, struct qcow2_codec *c, uint64_t g,
		       const uint8_t *buf, const struct batch *b, struct stage *st,
		       struct cupdate *ups)
{
	uint64_t cs = im->cluster_size;
	unsigned x = 62 - (im->cluster_bits - 8);
	int r = 0;

	for (uint64_t i = 0; i < b->n && !r; i++) {
		uint64_t gi = g + i * cs, l2_off, *table, entry, host;
		uint64_t idx = (gi >> im->cluster_bits) & ((1ull << im->l2_bits) - 1);

		if (b->len[i] < 0)
			return (int)b->len[i];
		r = qcow2_l2_for_write(im, gi, &l2_off, &table);
		if (r)
			return r;
		entry = be64((uint8_t *)&table[idx]);
		if (entry & ~L2E_ZERO)
			return -EEXIST;
		if (b->len[i]) {
			uint64_t len = (uint64_t)b->len[i];

			r = alloc_bytes(im, c, len, &host);
			if (!r)
				r = stage_add(im, st, b->dst + i * cs, len, host);
			/* The additional sectors after the first. */
			entry = L2E_COMPRESSED | ((host + len - 1) / 512 - host / 512) << x | host;
		} else {
			r = qcow2_alloc_cluster(im, &host);
			if (!r)
				r = stage_add(im, st, buf + i * cs, cs, host);
			entry = host | ENTRY_COPIED;
		}
		ups[i] = (struct cupdate){ l2_off, idx, entry };
	}
	return r;
}

int qcow2_write_compressed_n(struct qimg *im, uint64_t g, const uint8_t *buf, uint64_t n)
{
	struct qcow2_codec *c = codec(im);
	uint64_t cs = im->cluster_size, end = (im->size + cs - 1) & ~(cs - 1);
	struct batch b = { .c = c, .type = im->compression_type, .cs = cs, .n = n, .src = buf };
	struct stage st = { 0 };
	struct cupdate *ups;
	int r;

	if (!im->is_qcow2 || !cluster_aligned(im, g) || !n || g > end || n > (end - g) / cs)
		return -EINVAL;
	if (!im->writable)
		return -EROFS;
	if (!c)
		return -ENOMEM;
	b.dst = malloc(n * cs);
	b.len = malloc(n * sizeof(*b.len));
	st.buf = malloc(n * cs);
	ups = malloc(n * sizeof(*ups));
	r = -ENOMEM;
	if (b.dst && b.len && st.buf && ups) {
		compress_batch(&b);
		r = place_batch(im, c, g, buf, &b, &st, ups);
		if (!r)
			r = stage_flush(im, &st);
		/* On failure the new space stays counted but unreferenced:
		 * leaked, as a crash would leave it. */
		if (!r)
			r = qcow2_sync_refcounts(im);
		for (uint64_t i = 0; i < n && !r; i++) {
			uint64_t *table;
			uint8_t e[8];

			r = qcow2_l2_load(im, ups[i].l2_off, &table);
			if (r)
				break;
			put_be64(e, ups[i].entry);
			memcpy(&table[ups[i].idx], e, 8);
			r = qcow2_pwrite(im, e, 8, ups[i].l2_off + ups[i].idx * 8);
		}
	}
	if (r)
		c->free_byte_offset = 0;
	free(b.dst);
	free(b.len);
	free(st.buf);
	free(ups);
	return r;
}

int qcow2_write_compressed(struct qimg *im, uint64_t g, const uint8_t *cluster)
{
	return qcow2_write_compressed_n(im, g, cluster, 1);
}
