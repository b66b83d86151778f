/*
 * img_convert.c - `kvmm img convert`: copy a disk image, with everything
 * its backing chain contributes, into a new image of either format, with
 * qemu-img convert's option names:
 *
 *   kvmm img convert [-f FMT] [-O raw|qcow2] [-c] [-o OPTIONS] [-S SIZE]
 *                    [-p] [-q] [-U] SOURCE DEST
 *
 * -f names SOURCE's format (else probed); -O DEST's (raw unless given).
 * DEST is created afresh (an existing file is truncated) with SOURCE's
 * virtual size and no backing file.  -o takes DEST's creation options
 * (qcow2: cluster_size, compression_type).  -c stores each cluster
 * compressed (qcow2 only).  -S is the sparse granule (default 4 KiB, a
 * multiple of 512 up to 16 MiB; 0 writes everything): a granule of zeros
 * is not written, so DEST stays sparse.  For qcow2 the granule is the
 * cluster.  -p shows progress (util/progress.h), -q silences it, -U reads
 * SOURCE without taking its lock (another process may be writing it).
 *
 * How.  SOURCE is read through image.h in chunks of 2 MiB (whole DEST
 * clusters).  image_block_status(), asked down the chain, tells which
 * ranges read as zeros without reading them (qcow2 zero or unallocated
 * clusters, raw holes): a chunk that is all such ranges costs no I/O, so a
 * mostly empty multi-GiB image converts in about the time its metadata
 * takes to walk.  Data ranges are read, then every granule is checked for
 * zeros (an allocated range can still hold zeros).  What remains is written
 * in runs: raw and plain qcow2 with image_pwrite() (qcow2: the driver's
 * crash-safe allocating write), compressed with image_write_compressed(),
 * which compresses a chunk's clusters on all CPUs.  DEST is fdatasynced
 * at the end.  Exit status 0, or KVMM_EXIT_ERROR with one line on stderr
 * (DEST is left as far as it got, as qemu-img leaves it).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/image.h"
#include "block/qcow2.h"
#include "cli/cli.h"
#include "cli/img.h"
#include "util/progress.h"
#include "util/size.h"

#define CHUNK           (2u << 20)
#define MAX_SPARSE      (16u << 20)

struct convert {
	struct image *src, *dst;
	uint64_t size;          /* virtual size of both, bytes */
	uint64_t granule;       /* zero detection and write unit; 0 = none */
	uint64_t cluster;       /* DEST's cluster size (qcow2) */
	bool qcow2, compress;
	uint8_t *buf;           /* one chunk */
	uint64_t chunk;
	struct progress pg;
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: kvmm img convert [-f FMT] [-O raw|qcow2] [-c] [-o OPTIONS] [-S SIZE] [-p] [-q] [-U]\n"
"                        SOURCE DEST\n"
"\n"
"Copy SOURCE (raw or qcow2, with its backing chain) into a new DEST.\n"
"  -f FMT      SOURCE's format (raw or qcow2; probed when not given)\n"
"  -O FMT      DEST's format: raw (default) or qcow2\n"
"  -c          compress DEST's clusters (qcow2 only)\n"
"  -o OPTIONS  qcow2: cluster_size=N (default 64k), compression_type=zlib|zstd\n"
"  -S SIZE     skip writing zero runs of SIZE bytes (default 4k; 0: write all)\n"
"  -p, -q      show progress / be quiet\n"
"  -U          read SOURCE without locking it\n");
}

/* Whether [off, off + *len) reads as zeros through the chain, answered
 * without reading data; *len shrinks to a run with one answer. */
static int chain_zero(struct image *img, uint64_t off, uint64_t *len, bool *zero)
{
	for (;;) {
		uint64_t size = image_size(img), pnum, host;
		unsigned flags;
		int r;

		/* Past a smaller backing file's end: zeros. */
		if (off >= size) {
			*zero = true;
			return 0;
		}
		if (*len > size - off)
			*len = size - off;
		r = image_block_status(img, off, *len, &pnum, &flags, &host);
		if (r)
			return r;
		*len = pnum;
		if (flags & IMAGE_ZERO) {
			*zero = true;
			return 0;
		}
		if (flags & IMAGE_ALLOCATED) {
			*zero = false;
			return 0;
		}
		img = image_backing(img);
		if (!img) {
			*zero = true;
			return 0;
		}
	}
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
	/* Compare the buffer with itself shifted by 16 once the first 16
	 * bytes are known zero: memcmp is vectorised, a byte loop is not. */
	if (len <= 16) {
		for (uint64_t i = 0; i < len; i++)
			if (p[i])
				return false;
		return true;
	}
	for (unsigned i = 0; i < 16; i++)
		if (p[i])
			return false;
	return !memcmp(p, p + 16, len - 16);
}

static int write_run(struct convert *c, const uint8_t *p, uint64_t len, uint64_t off)
{
	int r;

	if (c->compress) {
		/* Whole clusters: the tail past the virtual size is zeros
		 * in the buffer. */
		uint64_t whole = (len + c->cluster - 1) / c->cluster * c->cluster;

		r = image_write_compressed(c->dst, p, whole, off);
	} else {
		if (len > c->size - off)
			len = c->size - off;
		r = image_pwrite(c->dst, p, len, off);
	}
	if (r)
		return img_fail("%s: cannot write at offset %" PRIu64 ": %s", image_path(c->dst),
				off, strerror(-r));
	return 0;
}

/* Read guest bytes [off, off + n) of SOURCE into c->buf, zero ranges
 * without reading them; or with `probe`, only say whether any range needs
 * reading (*data). */
static int read_chunk(struct convert *c, uint64_t off, uint64_t n, bool probe, bool *data)
{
	*data = false;
	for (uint64_t p = off; p < off + n;) {
		uint64_t len = off + n - p;
		bool zero;
		int r = chain_zero(c->src, p, &len, &zero);

		if (!r && !zero && probe) {
			*data = true;
			return 0;
		}
		if (!r && !zero)
			r = image_pread(c->src, c->buf + (p - off), len, p);
		if (r)
			return img_fail("%s: cannot read at offset %" PRIu64 ": %s",
					image_path(c->src), p, strerror(-r));
		if (zero && !probe)
			memset(c->buf + (p - off), 0, len);
		*data |= !zero;
		p += len;
	}
	return 0;
}

/* Guest bytes [off, off + n) of SOURCE into DEST.  A chunk with nothing
 * to read is skipped before touching the buffer: most chunks of a sparse
 * image are. */
static int convert_chunk(struct convert *c, uint64_t off, uint64_t n)
{
	uint64_t g = c->granule ? c->granule : n, padded;
	bool data;
	int r = read_chunk(c, off, n, true, &data);

	if (r || (!data && c->granule))
		return r;
	r = read_chunk(c, off, n, false, &data);
	if (r)
		return r;
	/* The last chunk: pad to whole granules (clusters for qcow2). */
	padded = (n + g - 1) / g * g;
	memset(c->buf + n, 0, padded - n);
	for (uint64_t p = 0; p < padded;) {
		uint64_t q = p;

		while (q < padded && !(c->granule && all_zero(c->buf + q, g)))
			q += g;
		if (q > p) {
			r = write_run(c, c->buf + p, q - p, off + p);
			if (r)
				return r;
		}
		p = q + g;
	}
	return 0;
}

static int run(struct convert *c)
{
	for (uint64_t off = 0; off < c->size; off += c->chunk) {
		uint64_t n = c->size - off < c->chunk ? c->size - off : c->chunk;
		int r = convert_chunk(c, off, n);

		if (r)
			return r;
		progress_update(&c->pg, off + n, c->size);
	}
	int r = image_flush(c->dst);

	if (r)
		return img_fail("%s: %s", image_path(c->dst), strerror(-r));
	progress_end(&c->pg);
	return 0;
}

/* DEST must not be SOURCE or one of its backing files: creating it would
 * destroy what is being read. */
static int check_not_source(struct image *src, const char *dest)
{
	struct stat d, s;

	if (stat(dest, &d))
		return 0;
	for (struct image *i = src; i; i = image_backing(i))
		if (!stat(image_path(i), &s) && s.st_dev == d.st_dev && s.st_ino == d.st_ino)
			return img_fail("%s: is %s %s: it would be overwritten", dest,
					i == src ? "the source" : "in the source's backing chain,",
					i == src ? "image" : image_path(i));
	return 0;
}

/* Create DEST and open it.  An existing DEST that another process has
 * open for writing (a running VM) is refused before it is truncated, as
 * qemu-img's create refuses it (its lock is tested, then released: the
 * open below takes it again). */
static int create_dest(struct convert *c, const char *dest, const char *fmt,
		       const struct qcow2_create_opts *qo)
{
	struct image_opts o = { .path = dest, .format = fmt, .writable = true };
	char err[512];
	int r, fd = open(dest, O_RDWR | O_CLOEXEC);

	if (fd < 0 && errno != ENOENT)
		return img_fail("%s: %s", dest, strerror(errno));
	if (fd >= 0) {
		r = block_lock_image(fd, dest, false, err, sizeof(err));
		close(fd);
		if (r)
			return img_fail("%s", err);
	}
	if (c->qcow2) {
		r = qcow2_create_with(dest, qo, err, sizeof(err));
		if (r)
			return img_fail("%s", err);
	} else {
		int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd < 0)
			return img_fail("%s: %s", dest, strerror(errno));
		r = ftruncate(fd, (off_t)c->size) ? errno : 0;
		close(fd);
		if (r)
			return img_fail("%s: %s", dest, strerror(r));
	}
	r = image_open(&o, &c->dst, err, sizeof(err));
	return r ? img_fail("%s", err) : 0;
}

/* -o for DEST: qcow2's cluster_size and compression_type. */
static int parse_o(char *opts, struct qcow2_create_opts *qo)
{
	char *kv;

	while ((kv = strsep(&opts, ","))) {
		uint64_t v;

		if (!strncmp(kv, "cluster_size=", 13)) {
			if (size_parse(kv + 13, 1, &v) || !v || v > UINT32_MAX)
				return img_fail("bad cluster_size: %s", kv + 13);
			qo->cluster_size = (uint32_t)v;
		} else if (!strncmp(kv, "compression_type=", 17)) {
			qo->compression_type = kv + 17;
		} else if (*kv) {
			return img_fail("unknown option -o %s (cluster_size, compression_type)", kv);
		}
	}
	return 0;
}

int img_convert(int argc, char **argv)
{
	const char *src_fmt = NULL, *out_fmt = "raw", *sparse = NULL;
	struct qcow2_create_opts qo = { 0 };
	struct image_opts so = { 0 };
	struct convert c = { .granule = 4096 };
	bool progress = false, quiet = false, have_o = false;
	char err[512];
	int ch, r;

	optind = 1;
	opterr = 0; /* one line of our own instead of getopt's */
	while ((ch = getopt(argc, argv, "f:O:co:S:pqUh")) != -1) {
		switch (ch) {
		case 'f': src_fmt = optarg; break;
		case 'O': out_fmt = optarg; break;
		case 'c': c.compress = true; break;
		case 'o':
			have_o = true;
			if (parse_o(optarg, &qo))
				return KVMM_EXIT_ERROR;
			break;
		case 'S': sparse = optarg; break;
		case 'p': progress = true; break;
		case 'q': quiet = true; break;
		case 'U': so.force_share = true; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return img_fail(optopt && strchr("fOoS", optopt) ? "-%c needs a value (kvmm img convert -h)"
					: "unknown option -%c (kvmm img convert -h)", optopt);
		}
	}
	if (argc - optind != 2)
		return img_fail("convert takes SOURCE and DEST (kvmm img convert -h)");
	if (strcmp(out_fmt, "raw") && strcmp(out_fmt, "qcow2"))
		return img_fail("unknown output format %s (-O raw or qcow2)", out_fmt);
	c.qcow2 = !strcmp(out_fmt, "qcow2");
	if (c.compress && !c.qcow2)
		return img_fail("-c: compression needs -O qcow2 (raw images cannot be compressed)");
	if (have_o && !c.qcow2)
		return img_fail("-o: raw images take no creation options");
	if (sparse && (size_parse(sparse, 1, &c.granule) || c.granule % 512 ||
		       c.granule > MAX_SPARSE))
		return img_fail("-S %s: a multiple of 512 up to 16M (0: write everything)", sparse);
	if (src_fmt && strcmp(src_fmt, "raw") && strcmp(src_fmt, "qcow2"))
		return img_fail("unknown source format %s (-f raw or qcow2)", src_fmt);

	so.path = argv[optind];
	so.format = src_fmt;
	r = image_open(&so, &c.src, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	c.size = image_size(c.src);
	qo.size = c.size;
	if (!qo.cluster_size)
		qo.cluster_size = 65536;
	c.cluster = qo.cluster_size;
	/* Writes and zero checks in whole clusters for qcow2 (cluster_size
	 * itself is checked by qcow2_create_with: a power of two up to 2M,
	 * so a chunk holds whole clusters). */
	if (c.qcow2 && (c.granule || c.compress))
		c.granule = c.cluster;
	c.chunk = CHUNK;
	if (c.granule)
		c.chunk = (CHUNK + c.granule - 1) / c.granule * c.granule;
	c.buf = malloc(c.chunk);
	r = c.buf ? check_not_source(c.src, argv[optind + 1]) : img_fail("out of memory");
	if (!r)
		r = create_dest(&c, argv[optind + 1], out_fmt, &qo);
	if (!r) {
		progress_init(&c.pg, progress && !quiet);
		r = run(&c);
	}
	image_close(c.dst);
	image_close(c.src);
	free(c.buf);
	return r;
}
