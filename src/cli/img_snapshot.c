/*
 * img_snapshot.c - `kvmm img snapshot [-f FMT] [-q] [-U] [-l | -c NAME |
 * -a SNAPSHOT | -d SNAPSHOT] FILE`: list, create, apply and delete the
 * internal snapshots of a qcow2 image (block/qcow2_snapshot.c), with
 * qemu-img's options and output.
 *
 * -l prints qemu-img's table (columns ID, TAG, VM SIZE, DATE in local
 * time, VM CLOCK, ICOUNT, same widths) and nothing when there are no
 * snapshots.  -a finds a snapshot by id, then by name (QEMU's
 * find_snapshot_by_id_or_name); -d by name, then by id (qemu-img 7.2 finds
 * only names: trying the name first keeps its choice whenever it has one).
 * Snapshot names need not be unique; ids are numbers chosen by kvmm.
 * Without an action, as with qemu-img, the image is opened and nothing
 * is done.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "block/image.h"
#include "cli/cli.h"
#include "cli/img.h"

/* QEMU's size_to_str(): "0 B", "1.5 KiB", "0.977 KiB" (1000 bytes). */
static void size_str(uint64_t v, char *out, size_t len)
{
	static const char *const sfx[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	int e;

	frexp((double)v / (1000.0 / 1024.0), &e);
	e = (e - 1) / 10;
	if (e < 0)
		e = 0;
	if (e > 6)
		e = 6;
	snprintf(out, len, "%0.3g %sB", (double)v / (double)(1ull << (e * 10)), sfx[e]);
}

void img_snapshot_table(struct image *img)
{
	unsigned n = image_snapshot_count(img);

	if (!n)
		return;
	printf("Snapshot list:\n%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE",
	       "VM CLOCK", "ICOUNT");
	for (unsigned i = 0; i < n; i++) {
		struct image_snapshot s;
		char size[32], date[32] = "", clock[48], icount[24] = "";
		time_t t;
		struct tm tm;
		uint64_t secs;

		image_snapshot_get(img, i, &s);
		t = (time_t)s.date_sec;
		if (localtime_r(&t, &tm))
			strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
		secs = s.vm_clock_nsec / 1000000000;
		snprintf(clock, sizeof(clock), "%02u:%02u:%02u.%03u", (unsigned)(secs / 3600),
			 (unsigned)(secs / 60 % 60), (unsigned)(secs % 60),
			 (unsigned)(s.vm_clock_nsec / 1000000 % 1000));
		size_str(s.vm_state_size, size, sizeof(size));
		if (s.has_icount && s.icount != UINT64_MAX)
			snprintf(icount, sizeof(icount), "%" PRIu64, s.icount);
		printf("%-9s %-16s %8s%20s%13s%11s\n", s.id, s.name, size, date, clock, icount);
	}
}

int img_snapshot(int argc, char **argv)
{
	const char *fmt = NULL, *arg = NULL, *file;
	char action = 0, err[1024];
	bool quiet = false, share = false;
	struct image *img;
	int c, r, i;

	(void)quiet; /* nothing is printed but -l's table, as with qemu-img */
	optind = 1;
	while ((c = getopt(argc, argv, "f:qUlc:a:d:h")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'q': quiet = true; break;
		case 'U': share = true; break;
		case 'l': case 'c': case 'a': case 'd':
			if (action)
				return img_fail("snapshot: cannot mix -l, -a, -c, -d");
			action = (char)c;
			arg = optarg;
			break;
		case 'h':
			printf("usage: kvmm img snapshot [-f FMT] [-q] [-U] [-l | -c NAME | -a SNAPSHOT | -d SNAPSHOT] FILE\n");
			return 0;
		default:
			return img_fail("usage: kvmm img snapshot [-f FMT] [-q] [-U] "
					"[-l | -c NAME | -a SNAPSHOT | -d SNAPSHOT] FILE");
		}
	}
	if (optind != argc - 1)
		return img_fail("snapshot: expected one FILE (see kvmm img --help)");
	file = argv[optind];
	if (share && action && action != 'l')
		return img_fail("snapshot: -U only goes with -l (changing a shared image is unsafe)");
	r = image_open(&(struct image_opts){ .path = file, .format = fmt,
					     .writable = action && action != 'l',
					     .force_share = share },
		       &img, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	switch (action) {
	case 'l':
		img_snapshot_table(img);
		break;
	case 'c':
		if (strcmp(image_format(img), "qcow2")) {
			r = -ENOTSUP;
			snprintf(err, sizeof(err), "%s: %s images have no internal snapshots", file,
				 image_format(img));
			break;
		}
		r = image_snapshot_create(img, arg, err, sizeof(err));
		break;
	case 'a':
	case 'd':
		i = image_snapshot_find(img, arg, action == 'd');
		if (i < 0) {
			r = i;
			snprintf(err, sizeof(err), "%s: no snapshot '%s'", file, arg);
		} else if (action == 'a') {
			r = image_snapshot_apply(img, (unsigned)i, err, sizeof(err));
		} else {
			r = image_snapshot_delete(img, (unsigned)i, err, sizeof(err));
		}
		break;
	}
	image_close(img);
	if (r)
		return img_fail("%s", err);
	return 0;
}
