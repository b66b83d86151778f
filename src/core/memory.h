/*
 * memory.h - guest physical memory.
 *
 * Guest RAM is anonymous host memory (MAP_NORESERVE, so a large guest costs
 * only the pages it touches) split around the PC's PCI/MMIO hole:
 *
 *   [0, min(ram, GM_HOLE_START))          low RAM
 *   [GM_HOLE_START, 4 GiB)                MMIO hole: LAPIC, IOAPIC, PCI BARs
 *   [4 GiB, 4 GiB + ram - low)            high RAM, when ram > GM_HOLE_START
 *
 * Every guest-physical address that comes from the guest is untrusted: the
 * accessors below check that the whole range lies inside one RAM region and
 * return NULL / -EFAULT otherwise, so a hostile guest can never make the VMM
 * touch host memory outside guest RAM.
 */
#ifndef KVMM_CORE_MEMORY_H
#define KVMM_CORE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#define GM_HOLE_START 0xC0000000ull /* 3 GiB: start of the MMIO hole */
#define GM_HIGH_START 0x100000000ull /* 4 GiB: high RAM starts here */
#define GM_MAX_REGIONS 2

struct gm_region {
	uint64_t gpa;  /* guest-physical start, bytes */
	uint64_t size; /* bytes */
	uint8_t *hva;  /* host mapping of the region */
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size; /* total RAM in bytes, both regions */
	/* Told about every write to RAM that does not come from a vCPU's own
	 * write path (gm_note_write), so the software CPU can drop decoded
	 * code for it.  NULL unless the software CPU runs. */
	void (*write_notify)(void *opaque, uint64_t gpa, uint64_t len);
	void *write_notify_opaque;
};

/* Map `ram_size` bytes of guest RAM (a multiple of 4096, > 0) laid out around
 * the MMIO hole.  Returns 0, -EINVAL for a bad size, -ENOMEM if the host
 * refuses the mapping.  Release with gm_destroy(). */
int gm_init(struct guest_mem *gm, uint64_t ram_size);

/* Unmap guest RAM.  Safe on a zeroed or already destroyed guest_mem. */
void gm_destroy(struct guest_mem *gm);

/* Host pointer to [gpa, gpa + len) if the whole range is RAM inside one
 * region, else NULL.  len 0 is allowed (checks gpa only).  The pointer stays
 * valid until gm_destroy(). */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Copy between guest RAM and host buffers.  Return 0, or -EFAULT when any
 * byte of the range is not RAM (nothing is copied then). */
int gm_read(const struct guest_mem *gm, uint64_t gpa, void *buf, size_t len);
int gm_write(struct guest_mem *gm, uint64_t gpa, const void *buf, size_t len);

/* A device (or anything but a vCPU) wrote [gpa, gpa + len) of RAM through
 * a pointer from gm_ptr(); gm_write() calls it itself.  Cheap when nobody
 * listens (one NULL check). */
static inline void gm_note_write(struct guest_mem *gm, uint64_t gpa,
				 uint64_t len)
{
	if (gm->write_notify && len)
		gm->write_notify(gm->write_notify_opaque, gpa, len);
}

/* End of low RAM (bytes): min(ram_size, GM_HOLE_START). */
uint64_t gm_low_end(const struct guest_mem *gm);

#endif
