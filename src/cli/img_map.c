/*
 * img_map.c - `kvmm img map`: where each range of an image's guest view
 * comes from, in qemu-img map's (QEMU 7.2) output formats.
 *
 *   kvmm img map [-f FMT] [--output=human|json] [--start-offset=OFF]
 *                [--max-length=LEN] [-U] FILE
 *
 * The walk is QEMU's: for each range, the first layer from the top that
 * decides it (image_chain_status: allocated there, the bottom of the
 * chain, or past the end of the layer's backing file) gives depth,
 * present (allocated in that layer), zero, data and, where the bytes sit
 * uncompressed in a file, offset.  Consecutive ranges are merged exactly
 * when qemu-img merges them (img_map's entry_mergeable(): same flags,
 * depth and file, offsets contiguous), so the JSON is byte for byte
 * qemu-img's.  The human table lists only the ranges stored as data, and
 * as in qemu-img stops with an error at a compressed range (it has no
 * host offset to show); the JSON shows compressed ranges as data without
 * an offset, as QEMU 7.2 does (it has no "compressed" key yet).
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

/* One run of qemu-img map's output (its MapEntry). */
struct map_entry {
	uint64_t start, length, offset;
	unsigned depth;
	bool present, zero, data, has_offset;
	const char *file;    /* the layer holding the bytes, with an offset */
};

static bool mergeable(const struct map_entry *a, const struct map_entry *b)
{
	if (!a->length || a->zero != b->zero || a->data != b->data ||
	    a->depth != b->depth || a->present != b->present || a->has_offset != b->has_offset)
		return false;
	if (a->has_offset && (strcmp(a->file, b->file) || a->offset + a->length != b->offset))
		return false;
	return true;
}

/* Print one run; `last` ends the JSON list.  Returns 0, or -1 after the
 * error qemu-img gives for data without an offset in the human table. */
static int dump(const struct map_entry *e, bool json, bool last)
{
	if (json) {
		printf("{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u,"
		       " \"present\": %s, \"zero\": %s, \"data\": %s", e->start, e->length,
		       e->depth, e->present ? "true" : "false", e->zero ? "true" : "false",
		       e->data ? "true" : "false");
		if (e->has_offset)
			printf(", \"offset\": %" PRIu64, e->offset);
		putchar('}');
		if (!last)
			puts(",");
		return 0;
	}
	if (e->data && !e->has_offset) {
		fflush(stdout);
		img_fail("%s: the image has compressed clusters: they have no offset to show "
			 "(use --output=json)", e->file);
		return -1;
	}
	/* "%#-16" PRIx64 prints 0 as "0", as qemu-img does. */
	if (e->data && !e->zero)
		printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", e->start, e->length,
		       e->offset, e->file);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvmm img map [-f FMT] [--output=human|json] [--start-offset=OFF]\n"
		   "                    [--max-length=LEN] [-U] FILE\n");
}

int img_map(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'O' },
		{ "start-offset", required_argument, NULL, 's' },
		{ "max-length", required_argument, NULL, 'l' },
		{ "force-share", no_argument, NULL, 'U' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct image_opts o = { 0 };
	const char *output = "human";
	uint64_t start = 0, max_len = UINT64_MAX, end;
	struct map_entry cur = { 0 }, next;
	struct image *img;
	char err[512];
	bool json;
	int c, r, rc = 0;

	optind = 1;
	opterr = 0; /* one line of our own for a bad option */
	while ((c = getopt_long(argc, argv, "f:hU", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': o.format = optarg; break;
		case 'O': output = optarg; break;
		case 'U': o.force_share = true; break;
		case 's':
			if (size_parse(optarg, 1, &start))
				return img_fail("bad --start-offset: %s", optarg);
			break;
		case 'l':
			if (size_parse(optarg, 1, &max_len))
				return img_fail("bad --max-length: %s", optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return img_fail("%s: unknown option or missing argument: %s (see kvmm img --help)",
					argv[0], argv[optind - 1]);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		return img_fail("--output=%s: human or json", output);
	json = !strcmp(output, "json");
	if (optind != argc - 1)
		return img_fail("%s takes one FILE (see kvmm img --help)", argv[0]);
	o.path = argv[optind];
	r = image_open(&o, &img, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	end = image_size(img);
	if (start >= end)
		end = start; /* qemu-img: one empty run at start */
	else if (max_len < end - start)
		end = start + max_len;
	cur.start = start;
	if (json)
		putchar('[');
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	/* qemu-img's loop: extend the current run while the next merges. */
	while (cur.start + cur.length < end) {
		uint64_t off = cur.start + cur.length, pnum, host;
		struct image *layer;
		unsigned flags, depth;

		r = image_chain_status(img, NULL, off, end - off, &pnum, &flags, &host, &layer,
				       &depth);
		if (r) {
			fflush(stdout);
			rc = img_fail("%s: cannot get the status of offset %" PRIu64 ": %s",
				      o.path, off, strerror(-r));
			goto out;
		}
		next = (struct map_entry){
			.start = off, .length = pnum, .depth = depth,
			.present = flags & IMAGE_ALLOCATED, .zero = flags & IMAGE_ZERO,
			.data = flags & IMAGE_DATA, .has_offset = flags & IMAGE_OFFSET_VALID,
			.offset = host, .file = image_path(layer),
		};
		if (mergeable(&cur, &next)) {
			cur.length += next.length;
			continue;
		}
		if (cur.length && dump(&cur, json, false)) {
			rc = KVMM_EXIT_ERROR;
			goto out;
		}
		cur = next;
	}
	if (dump(&cur, json, true))
		rc = KVMM_EXIT_ERROR;
	else if (json)
		printf("]\n");
out:
	image_close(img);
	return rc;
}
