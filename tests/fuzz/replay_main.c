/*
 * replay_main.c - run a fuzz target over saved inputs without libFuzzer.
 *
 *   <target>-replay FILE-OR-DIR...
 *
 * Each file (directories: every regular file in them, in name order) is
 * read whole and passed once to LLVMFuzzerTestOneInput().  Any compiler
 * builds it, so the regression inputs in tests/fuzz/corpus-regress/ run as
 * ordinary meson tests (suite "fuzz-regress"), under ASan/UBSan in the
 * sanitizer build.  A crash is the failure; exit 1 if no input was found
 * (a misplaced corpus must not pass silently).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	do {
		if (cap - len < 65536) {
			uint8_t *nb = realloc(buf, cap = cap ? 2 * cap : 65536);
			if (!nb) {
				fprintf(stderr, "%s: out of memory\n", path);
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n);
	if (ferror(f)) {
		fprintf(stderr, "%s: read error\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	fprintf(stderr, "replay %s (%zu bytes)\n", path, len);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	int files = 0, errors = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		struct dirent *de;
		char **names = NULL;
		size_t nn = 0;
		DIR *d;

		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			errors++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			errors += run_file(argv[i]) < 0;
			files++;
			continue;
		}
		d = opendir(argv[i]);
		if (!d) {
			fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			errors++;
			continue;
		}
		while ((de = readdir(d))) {
			char *path;
			if (de->d_name[0] == '.')
				continue;
			if (asprintf(&path, "%s/%s", argv[i], de->d_name) < 0)
				abort();
			if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
				free(path);
				continue;
			}
			names = realloc(names, (nn + 1) * sizeof(*names));
			if (!names)
				abort();
			names[nn++] = path;
		}
		closedir(d);
		qsort(names, nn, sizeof(*names), cmp);
		for (size_t j = 0; j < nn; j++) {
			errors += run_file(names[j]) < 0;
			files++;
			free(names[j]);
		}
		free(names);
	}
	fprintf(stderr, "%d inputs replayed, %d unreadable\n", files, errors);
	return files == 0 || errors ? 1 : 0;
}
