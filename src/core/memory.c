/*
 * memory.c - guest RAM regions; see memory.h for the layout and the trust
 * rules.  Lookups walk at most two regions, which is cheaper than any tree.
 */
#include "core/memory.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_SKIP (2ull << 20)

static int map_region(struct guest_mem *gm, uint64_t gpa, uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* Huge pages make guest TLB misses cheaper; harmless if refused.  Not
	 * for the first 2 MiB of RAM, which the loader always touches (boot
	 * tables, ACPI): a small guest would pay a whole huge page for them. */
	if (gpa == 0 && size > HUGE_SKIP)
		madvise((uint8_t *)p + HUGE_SKIP, size - HUGE_SKIP, MADV_HUGEPAGE);
	else if (gpa != 0)
		madvise(p, size, MADV_HUGEPAGE);
	gm->regions[gm->nr_regions++] =
		(struct gm_region){ .gpa = gpa, .size = size, .hva = p };
	return 0;
}

int gm_init(struct guest_mem *gm, uint64_t ram_size)
{
	uint64_t low;
	int r;

	memset(gm, 0, sizeof(*gm));
	if (ram_size == 0 || (ram_size & 0xfff))
		return -EINVAL;
	low = ram_size < GM_HOLE_START ? ram_size : GM_HOLE_START;
	r = map_region(gm, 0, low);
	if (!r && ram_size > low)
		r = map_region(gm, GM_HIGH_START, ram_size - low);
	if (r) {
		gm_destroy(gm);
		return r;
	}
	gm->ram_size = ram_size;
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	for (int i = 0; i < gm->nr_regions; i++)
		munmap(gm->regions[i].hva, gm->regions[i].size);
	memset(gm, 0, sizeof(*gm));
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	for (int i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->regions[i];
		/* Written so that no sum can overflow with hostile values. */
		if (gpa >= r->gpa && gpa - r->gpa <= r->size &&
		    len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *buf, size_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int gm_write(struct guest_mem *gm, uint64_t gpa, const void *buf, size_t len)
{
	void *p = gm_ptr(gm, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	gm_note_write(gm, gpa, len);
	return 0;
}

uint64_t gm_low_end(const struct guest_mem *gm)
{
	return gm->ram_size < GM_HOLE_START ? gm->ram_size : GM_HOLE_START;
}
