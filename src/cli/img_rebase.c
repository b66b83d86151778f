/*
 * img_rebase.c - `kvmm img rebase`: give a qcow2 image another backing
 * file, as qemu-img rebase does.
 *
 *   kvmm img rebase [-f FMT] [-q] [-p] [-u] -b NEW_BACKING [-F NEW_FMT] FILE
 *
 * Safe mode (the default) keeps the guest's view of FILE: every range not
 * allocated in FILE's own layer is read through the old chain and from
 * the new backing file (zeros past its end, or everywhere with -b ""),
 * compared in 512-byte sectors as qemu-img does, and the sectors that
 * differ are written into FILE with the old bytes (a partial cluster is
 * completed from the old chain by the copy-on-write).  Only then is the
 * header rewritten to name the new backing file and format
 * (image_set_backing: fdatasync, one write of the header cluster,
 * fdatasync).  A crash before the header write leaves FILE over its old
 * backing file with extra clusters that hold the same bytes: the guest
 * sees the same disk.  -b "" removes the backing file (everything it
 * provided is copied first).
 *
 * Unsafe mode (-u) only rewrites the header: the new backing file need
 * not exist, nor the old one.
 *
 * As with create, NEW_BACKING is stored as given, and a relative name is
 * relative to FILE's directory; -F is required with a non-empty -b (kvmm
 * never guesses a backing format).  A new backing file whose chain holds
 * FILE is refused (a loop).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/image.h"
#include "cli/cli.h"
#include "cli/img.h"
#include "util/progress.h"

#define CHUNK (2u << 20)  /* bytes compared at a time */
#define SECTOR 512u       /* qemu-img's comparison unit */

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmm img rebase [-f FMT] [-q] [-p] [-u] -b NEW_BACKING [-F NEW_FMT] FILE\n");
}

/* Open the new backing file read-only, its path relative to FILE's
 * directory, and refuse a chain that holds FILE (dev, ino). */
static int open_new(const char *file, const struct stat *fst, const char *name,
		    const char *fmt, struct image **out)
{
	const char *slash = strrchr(file, '/');
	struct image_opts o = { .format = fmt };
	char path[4096], err[512];
	int r;

	if (name[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", name);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - file), file, name);
	o.path = path;
	r = image_open(&o, out, err, sizeof(err));
	if (r)
		return img_fail("new backing file: %s", err);
	for (struct image *l = *out; l; l = image_backing(l)) {
		struct stat st;

		if (!stat(image_path(l), &st) && st.st_dev == fst->st_dev &&
		    st.st_ino == fst->st_ino) {
			image_close(*out);
			return img_fail("%s: rebasing onto %s would make a loop in the backing chain",
					file, path);
		}
	}
	return 0;
}

/* Copy into img the sectors of its unallocated ranges where the old
 * chain and `nb` (NULL: zeros) differ. */
static int copy_differences(struct image *img, struct image *nb, struct progress *pr)
{
	uint64_t size = image_size(img), off = 0;
	uint8_t *old = malloc(CHUNK), *new = calloc(1, CHUNK);
	int r = 0;

	if (!old || !new) {
		free(old);
		free(new);
		return img_fail("out of memory");
	}
	while (off < size && !r) {
		uint64_t n, host;
		unsigned flags;

		r = image_block_status(img, off, size - off, &n, &flags, &host);
		if (r) {
			r = img_fail("%s: cannot get the status of offset %" PRIu64 ": %s",
				     image_path(img), off, strerror(-r));
			break;
		}
		if (n > CHUNK)
			n = CHUNK;
		if (!(flags & IMAGE_ALLOCATED)) {
			r = image_pread(img, old, n, off);
			if (!r && nb)
				r = image_pread(nb, new, n, off);
			if (r) {
				r = img_fail("%s: cannot read %" PRIu64 " bytes at %" PRIu64 ": %s",
					     image_path(img), n, off, strerror(-r));
				break;
			}
			/* Runs of differing sectors, written with the old bytes. */
			for (uint64_t i = 0; i < n && !r;) {
				uint64_t s = n - i < SECTOR ? n - i : SECTOR, j = i;
				bool diff = memcmp(old + i, new + i, s) != 0;

				while (j < n) {
					s = n - j < SECTOR ? n - j : SECTOR;
					if ((memcmp(old + j, new + j, s) != 0) != diff)
						break;
					j += s;
				}
				if (diff && (r = image_pwrite(img, old + i, j - i, off + i)))
					r = img_fail("%s: cannot write %" PRIu64 " bytes at %" PRIu64
						     ": %s", image_path(img), j - i, off + i,
						     strerror(-r));
				i = j;
			}
		}
		off += n;
		progress_update(pr, off, size);
	}
	free(old);
	free(new);
	return r;
}

int img_rebase(int argc, char **argv)
{
	const char *backing = NULL, *fmt = NULL;
	struct image_opts o = { .writable = true };
	bool quiet = false, show = false, unsafe = false;
	struct image *img, *nb = NULL;
	struct progress pr;
	struct stat st;
	char err[512];
	int c, r;

	optind = 1;
	opterr = 0; /* one line of our own for a bad option */
	while ((c = getopt(argc, argv, "f:qpub:F:h")) != -1) {
		switch (c) {
		case 'f': o.format = optarg; break;
		case 'q': quiet = true; break;
		case 'p': show = true; break;
		case 'u': unsafe = true; break;
		case 'b': backing = optarg; break;
		case 'F': fmt = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return img_fail("%s: unknown option or missing argument: %s (see kvmm img --help)",
					argv[0], argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return img_fail("%s takes one FILE (see kvmm img --help)", argv[0]);
	o.path = argv[optind];
	if (!backing)
		return img_fail("rebase needs -b NEW_BACKING (-b \"\" for none)");
	if (*backing && !fmt)
		return img_fail("-b %s needs -F raw|qcow2: kvmm does not guess a backing format",
				backing);
	if (*backing && strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
		return img_fail("unknown backing format %s (raw or qcow2)", fmt);
	if (o.format && strcmp(o.format, "qcow2")) {
		if (strcmp(o.format, "raw"))
			return img_fail("unknown format %s (raw or qcow2)", o.format);
		return img_fail("%s: a raw image has no backing file to change", o.path);
	}
	if (stat(o.path, &st))
		return img_fail("%s: %s", o.path, strerror(errno));
	if (unsafe) {
		r = image_set_backing_path(o.path, backing, fmt, err, sizeof(err));
		return r ? img_fail("%s", err) : 0;
	}
	/* The new chain first: were FILE in it, our writer's lock on FILE
	 * would make it look locked by someone else. */
	if (*backing && (r = open_new(o.path, &st, backing, fmt, &nb)))
		return r;
	r = image_open(&o, &img, err, sizeof(err));
	if (r) {
		image_close(nb);
		return img_fail("%s", err);
	}
	if (strcmp(image_format(img), "qcow2")) {
		r = img_fail("%s: not a qcow2 image: a raw image has no backing file to change",
			     o.path);
		goto out;
	}
	progress_init(&pr, show && !quiet);
	r = copy_differences(img, nb, &pr);
	if (!r && image_set_backing(img, *backing ? backing : NULL, fmt, err, sizeof(err)))
		r = img_fail("%s", err);
	if (!r)
		progress_end(&pr);
out:
	image_close(img);
	image_close(nb);
	return r;
}
