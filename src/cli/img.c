/*
 * img.c - `kvmm img`: disk image tools, with qemu-img's option names so
 * that scripts can switch between them.
 *
 *   kvmm img create -f raw|qcow2 [-b BACKING -F FMT] [-o cluster_size=N,compression_type=T] FILE [SIZE]
 *   kvmm img info [--output=human|json] FILE
 *   kvmm img map | commit | rebase ...   (img_map.c, img_commit.c,
 *                                         img_rebase.c: backing chains)
 *   kvmm img check ...  (img_check.c)
 *
 * create: a raw image is a sparse file of SIZE bytes; a qcow2 image is
 * written by qcow2_create() (block/qcow2.h).  Without SIZE, a qcow2 image
 * with a backing file takes the backing file's virtual size.  As with
 * qemu-img, a relative BACKING is relative to FILE's directory, and the
 * backing format must be given (-F): kvmm never guesses it.
 *
 * info: the format is probed from the magic (qcow2, else raw).  The JSON
 * uses qemu-img's key names (virtual-size, actual-size, cluster-size,
 * backing-filename, backing-filename-format, dirty-flag, format-specific)
 * for the fields kvmm knows.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "block/qcow2.h"
#include "cli/cli.h"
#include "cli/img.h"
#include "util/size.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: kvmm img create -f raw|qcow2 [-b BACKING -F FMT]\n"
"                       [-o cluster_size=N,compression_type=zlib|zstd] FILE [SIZE]\n"
"       kvmm img info [--output=human|json] FILE\n"
"       kvmm img convert [-f FMT] [-O raw|qcow2] [-c] [-o OPTIONS] [-S SIZE] [-p] [-q] [-U]\n"
"                        SOURCE DEST\n"
"       kvmm img map [-f FMT] [--output=human|json] [--start-offset=OFF] [--max-length=LEN] [-U] FILE\n"
"       kvmm img commit [-f FMT] [-q] [-p] [-d] [-b BASE] FILE\n"
"       kvmm img rebase [-f FMT] [-q] [-p] [-u] -b NEW_BACKING [-F NEW_FMT] FILE\n"
"       kvmm img check [-f FMT] [-r leaks|all] [--output=human|json] [-q] [-U] FILE\n"
"       kvmm img snapshot [-f FMT] [-q] [-U] [-l | -c NAME | -a SNAPSHOT | -d SNAPSHOT] FILE\n"
"       kvmm img resize [-f FMT] [--shrink] [-q] FILE [+|-]SIZE\n"
"\n"
"SIZE takes k, M, G, T suffixes (powers of 1024); a bare number is bytes.\n"
"A relative BACKING is relative to FILE's directory; -F (raw or qcow2) is\n"
"required with -b.  qcow2 images are version 3 (compat 1.1), 16-bit\n"
"refcounts, cluster_size 64k unless given (512 to 2M, a power of two),\n"
"compression_type (of compressed clusters) zlib unless given.\n");
}

int img_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "kvmm img: error: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return KVMM_EXIT_ERROR;
}

/* The virtual size of `backing` (relative to image's directory) in `fmt`. */
static int backing_size(const char *image, const char *backing, const char *fmt,
			uint64_t *size)
{
	const char *slash = strrchr(image, '/');
	char path[4096], err[512];
	struct qcow2_info info;
	off_t end;
	int fd, r = 0;

	if (backing[0] == '/' || !slash)
		snprintf(path, sizeof(path), "%s", backing);
	else
		snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - image), image, backing);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return img_fail("backing file %s: %s", path, strerror(errno));
	if (!strcmp(fmt, "qcow2")) {
		r = qcow2_info(fd, path, &info, err, sizeof(err));
		if (r)
			img_fail("%s", err);
		*size = info.size;
	} else if ((end = lseek(fd, 0, SEEK_END)) < 0) {
		r = img_fail("backing file %s: %s", path, strerror(errno));
	} else {
		*size = (uint64_t)end;
	}
	close(fd);
	return r ? KVMM_EXIT_ERROR : 0;
}

static int img_create(int argc, char **argv)
{
	const char *fmt = NULL, *backing = NULL, *backing_fmt = NULL, *file, *ctype = NULL;
	uint64_t size = 0, cs = 65536;
	bool have_size = false;
	char err[512];
	int c, r;

	optind = 1;
	while ((c = getopt(argc, argv, "f:b:F:o:h")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': backing = optarg; break;
		case 'F': backing_fmt = optarg; break;
		case 'o': {
			char *opts = optarg, *kv;

			while ((kv = strsep(&opts, ","))) {
				if (!strncmp(kv, "cluster_size=", 13)) {
					if (size_parse(kv + 13, 1, &cs))
						return img_fail("bad cluster_size: %s", kv + 13);
				} else if (!strncmp(kv, "compression_type=", 17)) {
					ctype = kv + 17;
				} else if (*kv) {
					return img_fail("unknown option -o %s (cluster_size, compression_type)",
							kv);
				}
			}
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return KVMM_EXIT_ERROR;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return KVMM_EXIT_ERROR;
	}
	file = argv[optind];
	if (argc - optind == 2) {
		if (size_parse(argv[optind + 1], 1, &size))
			return img_fail("bad size: %s", argv[optind + 1]);
		have_size = true;
	}
	if (!fmt)
		return img_fail("-f raw|qcow2 is required");
	if (backing && !backing_fmt)
		return img_fail("-b %s needs -F raw|qcow2: kvmm does not guess a backing format",
			    backing);
	if (backing_fmt && strcmp(backing_fmt, "raw") && strcmp(backing_fmt, "qcow2"))
		return img_fail("unknown backing format %s (raw or qcow2)", backing_fmt);
	if (!strcmp(fmt, "raw")) {
		int fd;

		if (backing || cs != 65536 || ctype)
			return img_fail("raw images take no backing file, cluster_size or compression_type");
		if (!have_size)
			return img_fail("a size is needed for %s", file);
		fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return img_fail("%s: %s", file, strerror(errno));
		r = ftruncate(fd, (off_t)size) ? errno : 0;
		close(fd);
		if (r)
			return img_fail("%s: %s", file, strerror(r));
		return 0;
	}
	if (strcmp(fmt, "qcow2"))
		return img_fail("unknown format %s (raw or qcow2)", fmt);
	if (!have_size) {
		if (!backing)
			return img_fail("a size is needed for %s (or a backing file)", file);
		r = backing_size(file, backing, backing_fmt, &size);
		if (r)
			return r;
	}
	if (cs > UINT32_MAX)
		return img_fail("bad cluster_size");
	r = qcow2_create_with(file, &(struct qcow2_create_opts){
					  .size = size, .cluster_size = (uint32_t)cs,
					  .backing = backing, .backing_fmt = backing_fmt,
					  .compression_type = ctype,
				  }, err, sizeof(err));
	if (r)
		return img_fail("%s", err);
	return 0;
}

void img_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

/* "64 KiB", "1.5 GiB": qemu-img's human sizes. */
static void human(uint64_t v, char *out, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double d = (double)v;
	unsigned u = 0;

	while (d >= 1024 && u < 6) {
		d /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.3g %s" : "%.0f %s", d, units[u]);
}

/* qemu-img info's "snapshots" array (QEMU's SnapshotInfo: the guest clock
 * split in seconds and nanoseconds, icount only when recorded). */
static void json_snapshots(struct image *img)
{
	unsigned n = image_snapshot_count(img);

	printf("    \"snapshots\": [\n");
	for (unsigned i = 0; i < n; i++) {
		struct image_snapshot s;

		image_snapshot_get(img, i, &s);
		printf("        {\n");
		if (s.has_icount && s.icount != UINT64_MAX)
			printf("            \"icount\": %" PRIu64 ",\n", s.icount);
		printf("            \"vm-clock-nsec\": %" PRIu64 ",\n            \"name\": ",
		       s.vm_clock_nsec % 1000000000);
		img_json_string(s.name);
		printf(",\n            \"date-sec\": %u,\n            \"date-nsec\": %u,\n"
		       "            \"vm-clock-sec\": %" PRIu64 ",\n            \"id\": ",
		       s.date_sec, s.date_nsec, s.vm_clock_nsec / 1000000000);
		img_json_string(s.id);
		printf(",\n            \"vm-state-size\": %" PRIu64 "\n        }%s\n",
		       s.vm_state_size, i + 1 < n ? "," : "");
	}
	printf("    ],\n");
}

static int img_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *file, *output = "human";
	struct qcow2_info qi = { 0 };
	struct image *img = NULL;
	bool qcow2 = false, json;
	unsigned char magic[4] = { 0 };
	char err[512], vs[32], ds[32];
	struct stat st;
	int c, fd, r = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'O': output = optarg; break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return KVMM_EXIT_ERROR;
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		return img_fail("--output=%s: human or json", output);
	json = !strcmp(output, "json");
	if (optind != argc - 1) {
		usage(stderr);
		return KVMM_EXIT_ERROR;
	}
	file = argv[optind];
	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0)
		return img_fail("%s: %s", file, strerror(errno));
	if (pread(fd, magic, 4, 0) == 4 && !memcmp(magic, "QFI\xfb", 4)) {
		qcow2 = true;
		r = qcow2_info(fd, file, &qi, err, sizeof(err));
	} else {
		off_t end = lseek(fd, 0, SEEK_END);

		qi.size = end < 0 ? 0 : (uint64_t)end;
	}
	close(fd);
	if (r)
		return img_fail("%s", err);
	if (qcow2) {
		/* The snapshot table, through the driver (which validates it);
		 * an image whose chain cannot be opened is shown without. */
		struct image_opts o = { .path = file, .format = "qcow2", .force_share = true };

		if (image_open(&o, &img, err, sizeof(err)))
			img = NULL;
	}
	if (json) {
		printf("{\n");
		if (img && image_snapshot_count(img))
			json_snapshots(img);
		printf("    \"virtual-size\": %" PRIu64 ",\n    \"filename\": ", qi.size);
		img_json_string(file);
		printf(",\n    \"format\": \"%s\",\n    \"actual-size\": %" PRIu64,
		       qcow2 ? "qcow2" : "raw", (uint64_t)st.st_blocks * 512);
		if (qcow2) {
			printf(",\n    \"cluster-size\": %" PRIu64, qi.cluster_size);
			if (qi.backing[0]) {
				printf(",\n    \"backing-filename\": ");
				img_json_string(qi.backing);
			}
			if (qi.backing_fmt[0]) {
				printf(",\n    \"backing-filename-format\": ");
				img_json_string(qi.backing_fmt);
			}
			printf(",\n    \"dirty-flag\": %s", qi.dirty ? "true" : "false");
			printf(",\n    \"format-specific\": {\n        \"type\": \"qcow2\",\n"
			       "        \"data\": {\n            \"compat\": \"%s\",\n",
			       qi.version == 2 ? "0.10" : "1.1");
			if (qi.version == 3)
				printf("            \"compression-type\": \"%s\",\n"
				       "            \"lazy-refcounts\": %s,\n"
				       "            \"corrupt\": %s,\n"
				       "            \"extended-l2\": false,\n",
				       qi.compression_type, qi.lazy_refcounts ? "true" : "false",
				       qi.corrupt ? "true" : "false");
			printf("            \"refcount-bits\": %u\n        }\n    }", qi.refcount_bits);
		}
		printf("\n}\n");
		image_close(img);
		return 0;
	}
	human(qi.size, vs, sizeof(vs));
	human((uint64_t)st.st_blocks * 512, ds, sizeof(ds));
	printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n"
	       "disk size: %s\n", file, qcow2 ? "qcow2" : "raw", vs, qi.size, ds);
	if (!qcow2)
		return 0;
	printf("cluster_size: %" PRIu64 "\n", qi.cluster_size);
	if (qi.backing[0])
		printf("backing file: %s\n", qi.backing);
	if (qi.backing_fmt[0])
		printf("backing file format: %s\n", qi.backing_fmt);
	if (img)
		img_snapshot_table(img);
	image_close(img);
	printf("Format specific information:\n    compat: %s\n",
	       qi.version == 2 ? "0.10" : "1.1");
	if (qi.version == 3)
		printf("    compression type: %s\n    lazy refcounts: %s\n",
		       qi.compression_type, qi.lazy_refcounts ? "true" : "false");
	printf("    refcount bits: %u\n", qi.refcount_bits);
	if (qi.version == 3)
		printf("    corrupt: %s\n    extended l2: false\n", qi.corrupt ? "true" : "false");
	if (qi.dirty)
		printf("    dirty: true\n");
	return 0;
}

/* The subcommands; each lives in img_<name>.c but create and info. */
static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{ "create", img_create },
	{ "info", img_info },
	{ "convert", img_convert },
	{ "map", img_map },
	{ "commit", img_commit },
	{ "rebase", img_rebase },
	{ "check", img_check },
	{ "snapshot", img_snapshot },
	{ "resize", img_resize },
};

int cli_img(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? KVMM_EXIT_ERROR : 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	return img_fail("unknown command '%s' (see kvmm img --help)", argv[1]);
}
