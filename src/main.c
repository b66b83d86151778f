/*
 * main.c - the kvmm binary: one program, several front doors (BRIEF.md):
 * `kvmm run` (the VMM) and `kvmm img` (disk images) today; `kvmm ctl` follows.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *f)
{
	fprintf(f,
"usage: kvmm <command> [options]\n"
"\n"
"commands:\n"
"  run       boot a virtual machine (kvmm run --help)\n"
"  img       create and inspect disk images (kvmm img --help)\n"
"\n"
"  --version print the version\n"
"  --help    this text\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return KVMM_EXIT_ERROR;
	}
	if (!strcmp(argv[1], "run"))
		return cli_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "img"))
		return cli_img(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version")) {
		printf("kvmm %s\n", KVMM_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "kvmm: error: unknown command '%s' (see kvmm --help)\n",
		argv[1]);
	return KVMM_EXIT_ERROR;
}
