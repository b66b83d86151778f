/*
 * img_resize.c - `kvmm img resize [-f FMT] [--shrink] [-q] FILE [+|-]SIZE`:
 * set an image's virtual size (block/image.h image_resize()), with
 * qemu-img's syntax: SIZE absolute, or relative with + or -; shrinking
 * needs --shrink (data past the new end is lost).  A qcow2 image grows
 * (its l1_table with it) or shrinks (clusters past the end freed).  Prints
 * "Image resized." unless -q, as qemu-img does.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "block/image.h"
#include "cli/cli.h"
#include "cli/img.h"
#include "util/size.h"

#define USAGE "usage: kvmm img resize [-f FMT] [--shrink] [-q] FILE [+|-]SIZE"

int img_resize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shrink", no_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *fmt = NULL, *file, *arg;
	bool quiet = false, shrink = false;
	uint64_t delta, cur, size;
	struct image *img;
	char err[1024];
	int c, r, sign = 0;

	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf(USAGE "\n");
		return 0;
	}
	/* The size is the last argument, taken before getopt sees "-1G"
	 * as an option (qemu-img does the same). */
	if (argc < 3)
		return img_fail(USAGE);
	arg = argv[--argc];
	optind = 1;
	while ((c = getopt_long(argc, argv, "f:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'q': quiet = true; break;
		case 'S': shrink = true; break;
		case 'h':
			printf(USAGE "\n");
			return 0;
		default:
			return img_fail(USAGE);
		}
	}
	if (optind != argc - 1)
		return img_fail(USAGE);
	file = argv[optind];
	if (arg[0] == '+' || arg[0] == '-')
		sign = arg[0] == '+' ? 1 : -1;
	if (size_parse(arg + (sign != 0), 1, &delta))
		return img_fail("bad size: %s (a number of bytes, with an optional k, M, G, T suffix, "
				"+ or - for a change)", arg);
	r = image_open(&(struct image_opts){ .path = file, .format = fmt, .writable = true },
		       &img, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	cur = image_size(img);
	if (sign < 0 && delta >= cur) {
		image_close(img);
		return img_fail("%s: the new size must be positive (%" PRIu64 " - %" PRIu64 ")",
				file, cur, delta);
	}
	if (sign > 0 && delta > UINT64_MAX - cur) {
		image_close(img);
		return img_fail("%s: size overflows: %s", file, arg);
	}
	size = sign > 0 ? cur + delta : sign < 0 ? cur - delta : delta;
	if (!size) {
		image_close(img);
		return img_fail("%s: the new size must be positive", file);
	}
	if (size < cur && !shrink) {
		image_close(img);
		return img_fail("%s: shrinking to %" PRIu64 " bytes loses the data past it: "
				"use --shrink to do it anyway", file, size);
	}
	r = image_resize(img, size, err, sizeof(err));
	image_close(img);
	if (r)
		return img_fail("%s", err);
	if (!quiet)
		printf("Image resized.\n");
	return 0;
}
