/*
 * img_commit.c - `kvmm img commit`: write an overlay's changes into its
 * backing file, as qemu-img commit does.
 *
 *   kvmm img commit [-f FMT] [-q] [-p] [-d] [-b BASE] FILE
 *
 * Every range that a layer above the base decides (image_chain_status:
 * allocated in FILE or, with -b, in a layer between FILE and BASE; or
 * zeros past the end of a shorter backing file) is copied into the base
 * as FILE's guest sees it: data is read through FILE's chain and written,
 * zeros are written as zeros (zero clusters in a qcow2 base).  Ranges no
 * layer above the base decides already read from the base and are left.
 *
 * The base is reopened writable with a writer's lock (the chain opens it
 * read-only, locked against writers); FILE is opened writable too, so no
 * one else writes either while we copy.  Order, for crash safety: the
 * base is written and fdatasync'ed before FILE is emptied, so a crash in
 * between leaves FILE whole over a base that already holds the same
 * bytes: the guest sees the same disk either way.  Emptying (unless -d)
 * discards every cluster of FILE (image_discard) so that it reads through
 * to the base again, then syncs FILE.
 *
 * As in qemu-img: -b BASE names a layer of FILE's backing chain (as given,
 * or relative to FILE's directory; compared by real path) and implies -d,
 * because the layers between FILE and BASE no longer match the base and
 * FILE must keep its own data.  Unlike qemu-img 7.2, a base smaller than
 * FILE is refused instead of grown (no resize here yet).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/image.h"
#include "cli/cli.h"
#include "cli/img.h"
#include "util/progress.h"

#define COPY_CHUNK (2u << 20) /* bytes read and written at a time */

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmm img commit [-f FMT] [-q] [-p] [-d] [-b BASE] FILE\n");
}

/* Whether `name` (as given, or relative to FILE's directory) is the file
 * `layer` has open. */
static bool same_file(const char *name, const char *file, struct image *layer)
{
	char a[PATH_MAX], b[PATH_MAX], rel[PATH_MAX];
	const char *slash = strrchr(file, '/');

	if (!realpath(image_path(layer), a))
		return false;
	if (realpath(name, b) && !strcmp(a, b))
		return true;
	if (name[0] == '/' || !slash)
		return false;
	snprintf(rel, sizeof(rel), "%.*s/%s", (int)(slash - file), file, name);
	return realpath(rel, b) && !strcmp(a, b);
}

/* Copy what the layers above base decide into base. */
static int copy_down(struct image *top, struct image *base, struct progress *pr)
{
	uint64_t size = image_size(top), off = 0;
	uint8_t *buf = malloc(COPY_CHUNK);
	int r = 0;

	if (!buf)
		return img_fail("out of memory");
	while (off < size) {
		uint64_t n, host;
		struct image *layer;
		unsigned flags, depth;

		r = image_chain_status(top, base, off, size - off, &n, &flags, &host, &layer, &depth);
		if (r) {
			r = img_fail("%s: cannot get the status of offset %" PRIu64 ": %s",
				     image_path(top), off, strerror(-r));
			break;
		}
		if (n > COPY_CHUNK)
			n = COPY_CHUNK;
		if (layer != base) {
			const char *what = "write";

			if (flags & IMAGE_ZERO) {
				r = image_write_zeroes(base, off, n);
			} else {
				what = "read";
				r = image_pread(top, buf, n, off);
				if (!r) {
					what = "write";
					r = image_pwrite(base, buf, n, off);
				}
			}
			if (r) {
				r = img_fail("%s: cannot %s %" PRIu64 " bytes at %" PRIu64 ": %s",
					     image_path(what[0] == 'r' ? top : base), what, n, off,
					     strerror(-r));
				break;
			}
		}
		off += n;
		progress_update(pr, off, size);
	}
	free(buf);
	return r;
}

int img_commit(int argc, char **argv)
{
	const char *base_name = NULL;
	struct image_opts o = { .writable = true };
	bool quiet = false, drop = false, show = false;
	struct image *top, *base;
	struct progress pr;
	char err[512];
	int c, r;

	optind = 1;
	opterr = 0; /* one line of our own for a bad option */
	while ((c = getopt(argc, argv, "f:qpdb:h")) != -1) {
		switch (c) {
		case 'f': o.format = optarg; break;
		case 'q': quiet = true; break;
		case 'p': show = true; break;
		case 'd': drop = true; break;
		case 'b': base_name = optarg; break;
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
	r = image_open(&o, &top, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	base = image_backing(top);
	if (!base) {
		image_close(top);
		return img_fail("%s has no backing file: there is nothing to commit into", o.path);
	}
	if (base_name) {
		while (base && !same_file(base_name, o.path, base))
			base = image_backing(base);
		if (!base) {
			image_close(top);
			return img_fail("%s is not in the backing chain of %s", base_name, o.path);
		}
		drop = true; /* the layers in between no longer match the base */
	}
	if (image_size(base) < image_size(top)) {
		r = img_fail("%s (%" PRIu64 " bytes) is smaller than %s (%" PRIu64
			     " bytes): resize it first", image_path(base), image_size(base), o.path,
			     image_size(top));
		image_close(top);
		return r;
	}
	r = image_reopen_writable(top, &base, err, sizeof(err));
	if (r) {
		image_close(top);
		return img_fail("%s", err);
	}
	progress_init(&pr, show && !quiet);
	r = copy_down(top, base, &pr);
	/* The base holds everything before FILE lets go of anything. */
	if (!r && (r = image_flush(base)))
		r = img_fail("%s: cannot sync: %s", image_path(base), strerror(-r));
	if (!r && !drop) {
		r = image_discard(top, 0, image_size(top));
		if (!r)
			r = image_flush(top);
		if (r)
			r = img_fail("%s: the base holds the data, but emptying %s failed: %s",
				     image_path(base), o.path, strerror(-r));
	}
	if (!r) {
		progress_end(&pr);
		if (!quiet)
			printf("Image committed.\n");
	}
	image_close(top);
	return r;
}
