/*
 * mmu.h - the software CPU's paging and TLB, as the memory-access path
 * (mem.c) and the tests see them.  Private to accel/emu.  Design notes at
 * the top of mmu.c.
 *
 * The TLB itself lives in struct emu_cpu (cpu.h, `tlb`, after
 * @MMU-FIELDS@): EMU_TLB_ENTRIES direct-mapped entries indexed by a hash
 * of the linear 4 KiB page number (emu_tlb_index()).  A hit needs the tag (linear page | 1) and every
 * bit of the access's `need` mask (emu_tlb_need()); anything else goes to
 * emu_mmu_translate(), which walks the page tables (SDM Vol. 3A 4.3-4.5),
 * sets Accessed / Dirty, and refills the entry.  Only canonical pages are
 * ever filled, so an address that hits is canonical.
 */
#ifndef KVMM_ACCEL_EMU_MMU_H
#define KVMM_ACCEL_EMU_MMU_H

#include <stdbool.h>
#include <stdint.h>

#include "accel/emu/cpu.h"

#define EMU_TLB_ENTRIES (sizeof(((struct emu_cpu *)0)->tlb.e) / \
			 sizeof(((struct emu_cpu *)0)->tlb.e[0]))

/* Permission bits of a TLB entry.  Write bits alone are not enough for a
 * write hit: EMU_TLB_DIRTY must be set too (the leaf's D bit is known to be
 * set), else the write walks the tables to set D. */
#define EMU_TLB_SR     0x01u /* supervisor read */
#define EMU_TLB_SW     0x02u /* supervisor write */
#define EMU_TLB_SX     0x04u /* supervisor execute */
#define EMU_TLB_UR     0x08u /* user (CPL 3) read */
#define EMU_TLB_UW     0x10u
#define EMU_TLB_UX     0x20u
#define EMU_TLB_DIRTY  0x40u /* leaf D already set */
#define EMU_TLB_GLOBAL 0x80u /* G with CR4.PGE: survives non-global flushes */

/* The paging-mode bits a translation depends on, packed in one word:
 * CR0.PE/WP/PG, CR4.PSE/PAE/PGE, EFER.LMA/NXE (shifted up by 32).  When
 * it differs from the TLB's, every entry is dropped (see mmu.c). */
#define EMU_MMU_CR0_BITS (EMU_CR0_PE | EMU_CR0_WP | EMU_CR0_PG)
#define EMU_MMU_CR4_BITS ((1ull << 4) | EMU_CR4_PAE | (1ull << 7))
#define EMU_MMU_EFER_BITS (EMU_EFER_LMA | EMU_EFER_NXE)

static inline uint64_t emu_mmu_key(const struct emu_cpu *cpu)
{
	return (cpu->cr0 & EMU_MMU_CR0_BITS) | (cpu->cr4 & EMU_MMU_CR4_BITS) |
	       ((cpu->msr.efer & EMU_MMU_EFER_BITS) << 32);
}

/* Drop the TLB if CR0/CR4/EFER/CR3 changed behind its back (mmu.c). */
void emu_tlb_sync(struct emu_cpu *cpu);

/* The permission bits an access needs: `user` is a CPL-3 access that is
 * not an implicit supervisor access (SDM Vol. 3A 4.6). */
static inline unsigned emu_tlb_need(enum emu_access acc, bool user)
{
	unsigned n = acc == EMU_ACC_WRITE ? (EMU_TLB_SW | EMU_TLB_DIRTY) :
		     acc == EMU_ACC_EXEC ? EMU_TLB_SX : EMU_TLB_SR;

	if (user)
		n = (n & EMU_TLB_DIRTY) | ((n & 7u) << 3);
	return n;
}

/* The TLB slot of linear address `lin`: the 4 KiB page number with its
 * 9-bit groups XOR-folded, so that consecutive pages take consecutive
 * slots but pages at the same offset in different 2 MiB / 1 GiB / 512 GiB
 * regions (kernel text at 0xffffffff81000000 and the direct map at
 * 0xffff888000000000, stacks, ...) do not all land in slot 0. */
static inline unsigned emu_tlb_index(uint64_t lin)
{
	uint64_t vpn = lin >> 12;

	return (unsigned)((vpn ^ (vpn >> 9) ^ (vpn >> 18) ^ (vpn >> 27)) &
			  (EMU_TLB_ENTRIES - 1));
}

/* Drop the TLB if it was made under other paging state. */
static inline void emu_tlb_check(struct emu_cpu *cpu)
{
	if (__builtin_expect(cpu->tlb.key != emu_mmu_key(cpu) ||
			     cpu->tlb.cr3 != cpu->cr3, 0))
		emu_tlb_sync(cpu);
}

/* The TLB entry that allows `need` at `lin`, or NULL, trusting that the
 * TLB matches the paging state: for the block runner's handlers, whose
 * block entry called emu_tlb_check() and which run no instruction that
 * changes CR0, CR3, CR4 or EFER (those end a block). */
static inline const struct emu_tlb_entry *
emu_tlb_hit(struct emu_cpu *cpu, uint64_t lin, unsigned need)
{
	const struct emu_tlb_entry *e = &cpu->tlb.e[emu_tlb_index(lin)];

	if (e->tag == ((lin & ~0xfffull) | 1) && (e->perm & need) == need)
		return e;
	return NULL;
}

/* The TLB entry that allows `need` at linear address `lin`, or NULL. */
static inline const struct emu_tlb_entry *
emu_tlb_lookup(struct emu_cpu *cpu, uint64_t lin, unsigned need)
{
	emu_tlb_check(cpu);
	return emu_tlb_hit(cpu, lin, need);
}

/* emu_translate() with the privilege given explicitly (user = false for
 * implicit supervisor accesses at CPL 3: GDT, LDT, IDT, TSS).  On success
 * *gpa is the guest-physical address of `lin` and the TLB holds the page. */
int emu_mmu_translate(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		      bool user, uint64_t *gpa);

/* The host address of the 4 KiB-contained range [gpa, gpa + len) when it is
 * ordinary guest RAM, NULL when it is not RAM or is the vCPU's LAPIC page
 * (which overlays RAM if the guest moved it there) (mem.c). */
uint8_t *emu_phys_host(struct emu_cpu *cpu, uint64_t gpa, unsigned len);

/* Implicit supervisor-mode accesses at linear addresses (descriptor
 * tables, IDT, TSS: SDM Vol. 3A 4.6.1): checked as CPL 0 whatever the CPL,
 * no segmentation; linear addresses wrap at 4 GiB unless EFER.LMA.
 * `size` 1, 2, 4 or 8.  Return 0 or EMU_EXC(#PF) (mem.c). */
int emu_mem_read_sys(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		     uint64_t *val);
int emu_mem_write_sys(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		      uint64_t val);

#endif
