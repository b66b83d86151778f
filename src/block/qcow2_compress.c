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
 * Decompression contexts are kept per image (struct qcow2_codec) rather
 * than made per cluster: a zstd context costs a few hundred KiB of
 * allocation, too much to pay for every 64 KiB read.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

struct qcow2_codec {
	z_stream inf;           /* raw inflate, reset per cluster */
	bool inf_ready;
	ZSTD_DCtx *zd;
};

void qcow2_codec_free(struct qimg *im)
{
	struct qcow2_codec *c = im->codec;

	if (!c)
		return;
	if (c->inf_ready)
		inflateEnd(&c->inf);
	ZSTD_freeDCtx(c->zd);
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
