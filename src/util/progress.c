/*
 * progress.c - the progress bar of long `kvmm img` operations.
 */
#include "util/progress.h"

#include <stdio.h>
#include <unistd.h>

#define BAR_WIDTH 40

void progress_init(struct progress *p, bool enabled)
{
	p->on = enabled;
	p->tty = enabled && isatty(STDOUT_FILENO);
	p->shown = -1;
	if (p->on)
		progress_update(p, 0, 1);
}

static void draw(const struct progress *p, int hundredths)
{
	if (p->tty) {
		int fill = hundredths * BAR_WIDTH / 10000;

		printf("\r[%.*s%*s] %3d.%02d%%", fill,
		       "########################################", BAR_WIDTH - fill, "",
		       hundredths / 100, hundredths % 100);
	} else {
		printf("    (%d.%02d/100%%)\r", hundredths / 100, hundredths % 100);
	}
	fflush(stdout);
}

void progress_update(struct progress *p, uint64_t done, uint64_t total)
{
	int h;

	if (!p->on)
		return;
	h = total ? (int)((done > total ? total : done) * 10000.0 / (double)total) : 10000;
	if (h == p->shown)
		return;
	p->shown = h;
	draw(p, h);
}

void progress_end(struct progress *p)
{
	if (!p->on)
		return;
	if (p->shown != 10000)
		draw(p, 10000);
	putchar('\n');
	fflush(stdout);
}
