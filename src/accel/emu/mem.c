/*
 * mem.c - the software CPU's guest memory accesses: segmentation, page
 * splitting, translation and the physical access.
 *
 * The guest is hostile, so there is exactly one way from a guest address to
 * host memory, and it is checked at every stage:
 *
 *   seg:offset --segmentation--> linear --emu_translate()--> guest-physical
 *              --gm_ptr()--> host pointer inside guest RAM, or the MMIO bus
 *
 * Segmentation (SDM Vol. 3A 3.4, 5.3): in 64-bit mode only FS and GS have
 * a base and every byte's linear address must be canonical (#GP(0), or
 * #SS(0) for stack accesses); in the legacy modes the descriptor cache's
 * base, limit (expand-up and expand-down) and type (read/write/execute)
 * are checked and the linear address wraps at 4 GiB.
 *
 * An access that crosses a 4 KiB page is translated page by page before any
 * byte moves, so a #PF on the second page leaves memory and registers
 * untouched (the instruction restarts after the guest fixes the fault).
 * Each page-sized piece is then either wholly guest RAM (RAM regions start
 * and end on page boundaries) and copied with gm_ptr(), which checks the
 * range again, or wholly outside RAM and sent to the MMIO bus, where an
 * unclaimed address reads as all ones and drops writes, as on a PC.
 *
 * Writes to RAM are where the next step's decoded-block cache hooks in (a
 * per-page "holds code" bit checked here, the block dropped on a hit).
 *
 * Locked read-modify-writes use emu_mem_host_ptr(): a naturally aligned
 * access inside RAM gets a host pointer the executor operates on with host
 * __atomic builtins, which gives the x86 semantics across vCPU threads for
 * free since the host is x86 too.  A misaligned locked access would be a
 * split lock on the host (SIGBUS under split_lock_detect=fatal), so those
 * and MMIO fall back to a plain read and write.
 */
#include <errno.h>
#include <string.h>

#include "accel/emu/cpu.h"
#include "core/bus.h"
#include "core/memory.h"

#define PAGE_SIZE 4096ull
#define PAGE_MASK (PAGE_SIZE - 1)

static bool canonical(uint64_t lin)
{
	return (uint64_t)((int64_t)(lin << 16) >> 16) == lin;
}

static int seg_fault(struct emu_cpu *cpu, enum emu_seg seg)
{
	return emu_raise(cpu, seg == EMU_SEG_SS ? EMU_VEC_SS : EMU_VEC_GP,
			 true, 0);
}

/* Segmentation of [offset, offset + size): the linear address of the first
 * byte, or a fault. */
static int seg_linear(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		      unsigned size, enum emu_access acc, uint64_t *lin)
{
	const struct emu_segment *s = &cpu->seg[seg];
	uint64_t last;

	if (cpu->mode == EMU_MODE_LONG64) {
		uint64_t base = (seg == EMU_SEG_FS || seg == EMU_SEG_GS) ?
					s->base : 0;
		*lin = base + offset;
		if (!canonical(*lin) || !canonical(*lin + size - 1))
			return seg_fault(cpu, seg);
		return 0;
	}

	offset &= 0xffffffffull;
	last = offset + size - 1;
	if (cpu->mode != EMU_MODE_REAL) {
		unsigned type = EMU_SEG_ATTR_TYPE(s->attr);

		if (s->unusable)
			return seg_fault(cpu, seg);
		if (type & 8) { /* code: execute, readable if bit 1 */
			if (acc == EMU_ACC_WRITE ||
			    (acc == EMU_ACC_READ && !(type & 2)))
				return seg_fault(cpu, seg);
		} else if (acc == EMU_ACC_WRITE && !(type & 2)) {
			return seg_fault(cpu, seg);
		}
		if (!(type & 8) && (type & 4)) { /* expand-down data */
			uint64_t upper = (s->attr & EMU_SEG_ATTR_DB) ?
						 0xffffffffull : 0xffffull;
			if (offset <= s->limit || last > upper)
				return seg_fault(cpu, seg);
			*lin = (s->base + offset) & 0xffffffffull;
			return 0;
		}
	}
	if (last > s->limit)
		return seg_fault(cpu, seg);
	*lin = (s->base + offset) & 0xffffffffull;
	return 0;
}

/* The linear address `done` bytes after `lin`, wrapping like the mode. */
static uint64_t lin_add(const struct emu_cpu *cpu, uint64_t lin, unsigned done)
{
	lin += done;
	return cpu->mode == EMU_MODE_LONG64 ? lin : (lin & 0xffffffffull);
}

/* Move one piece that lies inside one page (so it is all RAM or all not). */
static void phys_access(struct emu_cpu *cpu, uint64_t gpa, uint8_t *buf,
			unsigned n, bool write)
{
	uint8_t *host = gm_ptr(cpu->mem, gpa, n);

	if (host) {
		if (write)
			memcpy(host, buf, n);
		else
			memcpy(buf, host, n);
		return;
	}
	if (n == 1 || n == 2 || n == 4 || n == 8) {
		uint64_t v = 0;

		if (write) {
			memcpy(&v, buf, n);
			if (cpu->mmio)
				bus_write(cpu->mmio, gpa, n, v);
		} else {
			v = cpu->mmio ? bus_read(cpu->mmio, gpa, n) : ~0ull;
			memcpy(buf, &v, n);
		}
		return;
	}
	for (unsigned i = 0; i < n; i++)
		phys_access(cpu, gpa + i, buf + i, 1, write);
}

/* Access `size` (1..16) bytes at seg:offset; fault before moving anything. */
static int mem_access(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		      uint8_t *buf, unsigned size, enum emu_access acc)
{
	uint64_t lin, lin2, gpa, gpa2;
	unsigned n1;
	int r;

	r = seg_linear(cpu, seg, offset, size, acc, &lin);
	if (r)
		return r;
	r = emu_translate(cpu, lin, acc, &gpa);
	if (r)
		return r;
	n1 = (unsigned)(PAGE_SIZE - (lin & PAGE_MASK));
	if (n1 >= size) {
		phys_access(cpu, gpa, buf, size, acc == EMU_ACC_WRITE);
		return 0;
	}
	lin2 = lin_add(cpu, lin, n1);
	r = emu_translate(cpu, lin2, acc, &gpa2);
	if (r)
		return r;
	phys_access(cpu, gpa, buf, n1, acc == EMU_ACC_WRITE);
	phys_access(cpu, gpa2, buf + n1, size - n1, acc == EMU_ACC_WRITE);
	return 0;
}

int emu_mem_read(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		 unsigned size, uint64_t *val)
{
	uint8_t buf[8];
	uint64_t v = 0;
	int r;

	if (size == 0 || size > 8)
		return -EINVAL;
	r = mem_access(cpu, seg, offset, buf, size, EMU_ACC_READ);
	if (r)
		return r;
	memcpy(&v, buf, size);
	*val = v;
	return 0;
}

int emu_mem_write(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		  unsigned size, uint64_t val)
{
	uint8_t buf[8];

	if (size == 0 || size > 8)
		return -EINVAL;
	memcpy(buf, &val, size);
	return mem_access(cpu, seg, offset, buf, size, EMU_ACC_WRITE);
}

int emu_mem_fetch(struct emu_cpu *cpu, uint64_t offset, void *buf,
		  unsigned len, unsigned *got)
{
	uint8_t *out = buf;
	uint64_t mask = cpu->mode == EMU_MODE_LONG64 ? ~0ull :
			cpu->mode == EMU_MODE_PROT32 ? 0xffffffffull : 0xffffull;
	int r;

	*got = 0;
	if (len == 0)
		return 0;
	/* Fast path: the whole window is fetchable. */
	if (mem_access(cpu, EMU_SEG_CS, offset, out, len, EMU_ACC_EXEC) == 0) {
		*got = len;
		return 0;
	}
	/* Slow path: byte by byte up to the first byte that faults. */
	for (unsigned i = 0; i < len; i++) {
		r = mem_access(cpu, EMU_SEG_CS, (offset + i) & mask, out + i, 1,
			       EMU_ACC_EXEC);
		if (r)
			return r;
		*got = i + 1;
	}
	return 0;
}

int emu_mem_host_ptr(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		     unsigned size, void **host)
{
	uint64_t lin, gpa;
	int r;

	*host = NULL;
	r = seg_linear(cpu, seg, offset, size, EMU_ACC_WRITE, &lin);
	if (r)
		return r;
	r = emu_translate(cpu, lin, EMU_ACC_WRITE, &gpa);
	if (r)
		return r;
	if (lin & (size - 1)) {
		/* Misaligned: the caller does a plain access, which checks
		 * the second page itself. */
		return 0;
	}
	*host = gm_ptr(cpu->mem, gpa, size);
	return 0;
}
