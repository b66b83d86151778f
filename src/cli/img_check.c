/*
 * img_check.c - `kvmm img check`: the consistency check (and repair) of a
 * qcow2 image, as `qemu-img check` does it, so that scripts can switch:
 *
 *   kvmm img check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] FILE
 *
 * Same texts on stdout (the summary) and stderr (one line per problem,
 * from block/qcow2_check.c), same JSON keys, and qemu-img check's exit
 * statuses: 0 no problem, 1 the check could not run or complete (bad
 * arguments, unreadable image, a repair that failed), 2 corruptions, 3
 * leaks only, 63 a format without checks (raw).  After a repair the image
 * is checked again and the status says what remains.  -r opens the image
 * writable, also when it is marked corrupt (the repair clears the mark);
 * -U (no locking) is for read-only checks only, as with qemu-img.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "block/image.h"
#include "block/qcow2_check.h"
#include "cli/img.h"

#define CHECK_FAILED   1
#define NO_CHECKS      63

/* img_fail(), with qemu-img check's status for errors. */
static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvmm img: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CHECK_FAILED;
}

/* qemu-img's JSON: zero counts are left out, except check-errors. */
static void dump_json(const struct qcow2_check_result *r, const char *file)
{
	const struct { const char *key; uint64_t v; bool always; } f[] = {
		{ "image-end-offset", r->image_end_offset, false },
		{ "compressed-clusters", r->compressed_clusters, false },
		{ "total-clusters", r->total_clusters, false },
		{ "corruptions", r->corruptions, false },
		{ "corruptions-fixed", r->corruptions_fixed, false },
		{ "check-errors", r->check_errors, true },
		{ "leaks", r->leaks, false },
		{ "leaks-fixed", r->leaks_fixed, false },
		{ "allocated-clusters", r->allocated_clusters, false },
	};

	printf("{\n");
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i].v || f[i].always)
			printf("    \"%s\": %" PRIu64 ",\n", f[i].key, f[i].v);
	printf("    \"filename\": ");
	img_json_string(file);
	printf(",\n    \"format\": \"qcow2\"");
	if (r->fragmented_clusters)
		printf(",\n    \"fragmented-clusters\": %" PRIu64, r->fragmented_clusters);
	printf("\n}\n");
}

static void dump_human(const struct qcow2_check_result *r)
{
	if (!r->corruptions && !r->leaks && !r->check_errors) {
		printf("No errors were found on the image.\n");
	} else {
		if (r->corruptions)
			printf("\n%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt it.\n",
			       r->corruptions);
		if (r->leaks)
			printf("\n%" PRIu64 " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n", r->leaks);
		if (r->check_errors)
			printf("\n%" PRIu64 " internal errors have occurred during the check.\n",
			       r->check_errors);
	}
	if (r->total_clusters && r->allocated_clusters)
		printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, "
		       "%0.2f%% compressed clusters\n", r->allocated_clusters, r->total_clusters,
		       r->allocated_clusters * 100.0 / r->total_clusters,
		       r->fragmented_clusters * 100.0 / r->allocated_clusters,
		       r->compressed_clusters * 100.0 / r->allocated_clusters);
	if (r->image_end_offset)
		printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

int img_check(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *format = NULL, *output = "human", *file;
	struct qcow2_check_result res;
	bool quiet = false, share = false, json;
	unsigned fix = 0;
	struct image *img;
	char err[512];
	int c, r;

	optind = 1;
	opterr = 0; /* one error line, ours */
	while ((c = getopt_long(argc, argv, "f:r:qUh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': format = optarg; break;
		case 'O': output = optarg; break;
		case 'q': quiet = true; break;
		case 'U': share = true; break;
		case 'r':
			if (!strcmp(optarg, "leaks"))
				fix = QCOW2_FIX_LEAKS;
			else if (!strcmp(optarg, "all"))
				fix = QCOW2_FIX_LEAKS | QCOW2_FIX_ERRORS;
			else
				return fail("-r %s: expecting 'leaks' or 'all'", optarg);
			break;
		case 'h':
			printf("usage: kvmm img check [-f FMT] [-r leaks|all] [--output=human|json] "
			       "[-q] [-U] FILE\n");
			return 0;
		default:
			return fail("check: unknown option or missing argument: '%s' (see kvmm img --help)",
				    argv[optind - 1]);
		}
	}
	if (optind != argc - 1)
		return fail("check: expecting one image file name");
	file = argv[optind];
	if (strcmp(output, "human") && strcmp(output, "json"))
		return fail("--output=%s: human or json", output);
	json = !strcmp(output, "json");
	if (share && fix)
		return fail("%s: -U (force share) can only be used with read-only checks", file);

	struct image_opts o = { .path = file, .format = format, .writable = fix != 0,
				.force_share = share, .check = true };

	r = image_open(&o, &img, err, sizeof(err));
	if (r)
		return fail("%s", err);
	r = image_check(img, fix, &res);
	if (r == -ENOTSUP && !res.check_errors) {
		image_close(img);
		fail("%s: this image format does not support checks", file);
		return NO_CHECKS;
	}
	if (!r && (res.corruptions_fixed || res.leaks_fixed)) {
		uint64_t cf = res.corruptions_fixed, lf = res.leaks_fixed;

		if (!json && !quiet)
			printf("The following inconsistencies were found and repaired:\n\n"
			       "    %" PRIu64 " leaked clusters\n"
			       "    %" PRIu64 " corruptions\n\n"
			       "Double checking the fixed image now...\n", lf, cf);
		r = image_check(img, 0, &res);
		res.corruptions_fixed = cf;
		res.leaks_fixed = lf;
	}
	image_close(img);
	if (!r && !quiet) {
		if (json)
			dump_json(&res, file);
		else
			dump_human(&res);
	}
	if (r)
		return fail("%s: Check failed: %s", file, strerror(-r));
	if (res.check_errors)
		return fail("%s: Check failed", file);
	return res.corruptions ? 2 : res.leaks ? 3 : 0;
}
