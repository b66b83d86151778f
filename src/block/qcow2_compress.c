/*
 * qcow2_compress.c - compressed clusters of a qcow2 image (QEMU's
 * docs/interop/qcow2.txt, "Compressed Clusters Descriptor").
 *
 * An l2 entry with bit 62 set is a compressed cluster descriptor: with
 * x = 62 - (cluster_bits - 8), bits 0..x-1 are the host byte offset of
 * the compressed data (not aligned: QEMU packs compressed clusters end to
 * end) and bits x..61 the number of additional 512-byte sectors the data
 * spans, counted from the sector holding its first byte.  The span is an
 * upper bound: the compressed stream may end before it.  zlib images hold
 * raw deflate streams (window bits -12, no zlib header or checksum).
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

/* Inflate the compressed cluster `entry` into im->dbuf (kept until
 * another one is needed, keyed by the entry). */
int qcow2_decompress(struct qimg *im, uint64_t entry)
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
		return qcow2_corrupt(im, "compressed cluster past the end of the file", coff);
	if (clen > 2 * im->cluster_size)
		clen = 2 * im->cluster_size;
	if (clen > im->file_size - coff)
		clen = im->file_size - coff;
	r = qcow2_pread(im->fd, im->cbuf, clen, coff);
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
		return qcow2_corrupt(im, "compressed cluster does not inflate", coff);
	}
	im->dbuf_key = entry;
	return 0;
}
