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
 * The fast path (every access that stays inside one page): the linear
 * page is looked up in the vCPU's software TLB (mmu.h, emu_tlb_lookup());
 * a hit that allows the access (user / supervisor, read / write / execute,
 * D already set for writes) and carries a host pointer -- RAM, which the
 * TLB fill got from emu_phys_host() with gm_ptr()'s bounds check for the
 * whole 4 KiB page -- is a memcpy at host + (lin & 0xfff), and since the
 * piece does not cross the page it stays inside that checked page.
 * Everything else (misses, MMIO, page-crossing accesses) takes the slow
 * path below, which is where faults are raised.
 *
 * The LAPIC page: while the vCPU's LAPIC is hardware-enabled, physical
 * accesses to [APIC base, +4 KiB) go to lapic_read()/lapic_write() instead
 * of RAM or the MMIO bus (SDM Vol. 3A 11.4.1): aligned 32-bit accesses
 * only; other sizes read 0 and drop writes.  The TLB never holds a host
 * pointer for that page (emu_phys_host() says NULL), so the fast path
 * cannot bypass it; when the base moves (WRMSR IA32_APIC_BASE) the TLB
 * must be flushed (mmu.c says who calls what).
 *
 * Every write to RAM by the vCPU goes through ram_written() (fast path,
 * slow path, locked RMW pointers): that is where the decoded-block cache
 * hooks in (a per-page "holds code" bit checked, the blocks dropped on a
 * hit).
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

#include "accel/emu/blocks.h"
#include "accel/emu/cpu.h"
#include "accel/emu/lapic.h"
#include "accel/emu/mmu.h"
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

/* The vCPU wrote [gpa, gpa + n) of RAM, n <= 4096 inside one page. */
static inline void ram_written(struct emu_cpu *cpu, uint64_t gpa, unsigned n)
{
	emu_code_note_write(cpu, gpa, n); /* blocks.h */
}

/* Is `gpa` inside this vCPU's LAPIC page (while the LAPIC is enabled)? */
static bool lapic_page(struct emu_cpu *cpu, uint64_t gpa)
{
	return cpu->lapic && lapic_hw_enabled(cpu->lapic) &&
	       ((gpa ^ lapic_get_base(cpu->lapic)) & LAPIC_BASE_ADDR &
		~0xfffull) == 0 && (gpa >> 52) == 0;
}

uint8_t *emu_phys_host(struct emu_cpu *cpu, uint64_t gpa, unsigned len)
{
	if (lapic_page(cpu, gpa))
		return NULL;
	return gm_ptr(cpu->mem, gpa, len);
}

/* A LAPIC register access (SDM Vol. 3A 11.4.1: aligned dwords only). */
static void lapic_access(struct emu_cpu *cpu, uint64_t gpa, uint8_t *buf,
			 unsigned n, bool write)
{
	uint32_t off = (uint32_t)(gpa & 0xfff), v;

	if (n != 4 || (off & 3)) {
		if (!write)
			memset(buf, 0, n);
		return;
	}
	if (write) {
		memcpy(&v, buf, 4);
		lapic_write(cpu->lapic, off, v);
	} else {
		v = lapic_read(cpu->lapic, off);
		memcpy(buf, &v, 4);
	}
}

/* Move one piece that lies inside one page (so it is all RAM or all not). */
static void phys_access(struct emu_cpu *cpu, uint64_t gpa, uint8_t *buf,
			unsigned n, bool write)
{
	uint8_t *host;

	if (lapic_page(cpu, gpa)) {
		lapic_access(cpu, gpa, buf, n, write);
		return;
	}
	host = gm_ptr(cpu->mem, gpa, n);
	if (host) {
		if (write) {
			memcpy(host, buf, n);
			ram_written(cpu, gpa, n);
		} else {
			memcpy(buf, host, n);
		}
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

/* Copy n (1..16) bytes between guest RAM and a buffer with fixed-size
 * moves: the usual 1/2/4/8-byte operands become one load and one store
 * (so an aligned access is single-copy atomic towards other vCPUs, as on
 * x86), and instruction fetches (9..16 bytes) two overlapping 8-byte
 * moves, instead of a variable-length memcpy (rep movs) that costs more
 * than the rest of the access. */
static inline void copy_small(uint8_t *d, const uint8_t *s, unsigned n)
{
	uint64_t a, b;

	switch (n) {
	case 1: *d = *s; return;
	case 2: memcpy(d, s, 2); return;
	case 4: memcpy(d, s, 4); return;
	case 8: memcpy(d, s, 8); return;
	default: break;
	}
	if (n > 8 && n <= 16) {
		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
		return;
	}
	memcpy(d, s, n);
}

/* Access `size` (1..16) bytes at linear address `lin` (the next page's
 * address wraps at 4 GiB when `wrap32`) with the privilege `user`; fault
 * before moving anything. */
static int lin_access(struct emu_cpu *cpu, uint64_t lin, bool wrap32,
		      uint8_t *buf, unsigned size, enum emu_access acc,
		      bool user)
{
	const struct emu_tlb_entry *e;
	uint64_t lin2, gpa, gpa2;
	unsigned n1 = (unsigned)(PAGE_SIZE - (lin & PAGE_MASK));
	int r;

	if (__builtin_expect(n1 >= size, 1)) {
		e = emu_tlb_lookup(cpu, lin, emu_tlb_need(acc, user));
		if (e && e->host) {
			/* Inside the page gm_ptr() checked at fill time. */
			uint8_t *host = e->host + (lin & PAGE_MASK);

			if (acc == EMU_ACC_WRITE) {
				copy_small(host, buf, size);
				ram_written(cpu, e->gpa | (lin & PAGE_MASK),
					    size);
			} else {
				copy_small(buf, host, size);
			}
			return 0;
		}
	}
	r = emu_mmu_translate(cpu, lin, acc, user, &gpa);
	if (r)
		return r;
	if (n1 >= size) {
		phys_access(cpu, gpa, buf, size, acc == EMU_ACC_WRITE);
		return 0;
	}
	lin2 = lin + n1;
	if (wrap32)
		lin2 &= 0xffffffffull;
	r = emu_mmu_translate(cpu, lin2, acc, user, &gpa2);
	if (r)
		return r;
	phys_access(cpu, gpa, buf, n1, acc == EMU_ACC_WRITE);
	phys_access(cpu, gpa2, buf + n1, size - n1, acc == EMU_ACC_WRITE);
	return 0;
}

/* Access `size` (1..16) bytes at seg:offset; fault before moving anything. */
static int mem_access(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		      uint8_t *buf, unsigned size, enum emu_access acc)
{
	uint64_t lin = 0; /* set by seg_linear() on success; -O3 cannot tell */
	int r;

	r = seg_linear(cpu, seg, offset, size, acc, &lin);
	if (r)
		return r;
	return lin_access(cpu, lin, cpu->mode != EMU_MODE_LONG64, buf, size,
			  acc, cpu->cpl == 3);
}

/* The 64-bit fast path of emu_mem_read()/emu_mem_write(): the host
 * address of seg:offset when the access stays inside one page, is
 * canonical and hits the TLB with a host pointer, else NULL (the caller
 * takes the full path, which raises any fault).  A page-contained access
 * is canonical iff its first byte is (the canonical boundaries are page
 * boundaries). */
static inline uint8_t *fast64(struct emu_cpu *cpu, enum emu_seg seg,
			      uint64_t offset, unsigned size,
			      enum emu_access acc, uint64_t *gpa)
{
	const struct emu_tlb_entry *e;
	uint64_t lin = offset;

	if (seg == EMU_SEG_FS || seg == EMU_SEG_GS)
		lin += cpu->seg[seg].base;
	if ((lin & PAGE_MASK) + size > PAGE_SIZE || !canonical(lin))
		return NULL;
	e = emu_tlb_lookup(cpu, lin, emu_tlb_need(acc, cpu->cpl == 3));
	if (!e || !e->host)
		return NULL;
	*gpa = e->gpa | (lin & PAGE_MASK);
	return e->host + (lin & PAGE_MASK);
}

int emu_mem_read(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		 unsigned size, uint64_t *val)
{
	uint8_t buf[8];
	uint64_t v = 0, gpa;
	int r;

	if (size == 0 || size > 8)
		return -EINVAL;
	if (cpu->mode == EMU_MODE_LONG64) {
		const uint8_t *h = fast64(cpu, seg, offset, size, EMU_ACC_READ,
					  &gpa);

		if (h) {
			copy_small((uint8_t *)&v, h, size);
			*val = v;
			return 0;
		}
	}
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
	uint64_t gpa;

	if (size == 0 || size > 8)
		return -EINVAL;
	memcpy(buf, &val, size);
	if (cpu->mode == EMU_MODE_LONG64) {
		uint8_t *h = fast64(cpu, seg, offset, size, EMU_ACC_WRITE, &gpa);

		if (h) {
			copy_small(h, buf, size);
			ram_written(cpu, gpa, size);
			return 0;
		}
	}
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
	uint64_t lin = 0, gpa; /* lin: set by seg_linear() on success */
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
	*host = emu_phys_host(cpu, gpa, size);
	if (*host)
		ram_written(cpu, gpa, size);
	return 0;
}

/* Implicit supervisor accesses (mmu.h). */
static int sys_access(struct emu_cpu *cpu, uint64_t lin, uint8_t *buf,
		      unsigned size, enum emu_access acc)
{
	bool wrap32 = !(cpu->msr.efer & EMU_EFER_LMA);

	if (wrap32)
		lin &= 0xffffffffull;
	return lin_access(cpu, lin, wrap32, buf, size, acc, false);
}

int emu_mem_read_sys(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		     uint64_t *val)
{
	uint8_t buf[8];
	uint64_t v = 0;
	int r;

	if (size == 0 || size > 8)
		return -EINVAL;
	r = sys_access(cpu, lin, buf, size, EMU_ACC_READ);
	if (r)
		return r;
	memcpy(&v, buf, size);
	*val = v;
	return 0;
}

int emu_mem_write_sys(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		      uint64_t val)
{
	uint8_t buf[8];

	if (size == 0 || size > 8)
		return -EINVAL;
	memcpy(buf, &val, size);
	return sys_access(cpu, lin, buf, size, EMU_ACC_WRITE);
}
