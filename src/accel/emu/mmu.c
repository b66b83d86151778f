/*
 * mmu.c - linear -> guest-physical address translation of the software
 * CPU: the page walk and the per-vCPU software TLB.
 *
 * Every guest memory access of the executor (mem.c) is translated once per
 * page it touches: mem.c first looks the page up in the TLB (mmu.h,
 * emu_tlb_lookup(), inlined into the access path) and only on a miss calls
 * emu_mmu_translate() here, which walks the guest's page tables and refills
 * the entry.
 *
 * PAGING MODES (SDM Vol. 3A 4.1.1, table 4-1)
 *   CR0.PG = 0          no paging: linear = physical (A20 is always on).
 *   CR4.PAE = 0         32-bit paging (4.3): 2 levels of 4-byte entries,
 *                       4 KiB pages, 4 MiB pages when CR4.PSE (with the
 *                       PSE-36 high address bits 20:13 up to MAXPHYADDR
 *                       or 40).  No NX.
 *   CR4.PAE, !EFER.LMA  PAE paging (4.4): 4 PDPTEs at CR3[31:5], then PD
 *                       and PT of 8-byte entries; 2 MiB pages; NX.
 *   EFER.LMA            4-level paging (4.5): PML4, PDPT (1 GiB pages),
 *                       PD (2 MiB pages), PT.
 * Permissions (4.6) are the AND of R/W and U/S over all levels and the OR
 * of XD over all levels (XD only with EFER.NXE).  A supervisor access may
 * write a read-only page unless CR0.WP, and read or run user pages (SMEP
 * and SMAP are not offered in CPUID, so not implemented).  A CPL-3 access
 * is a user access, except the implicit supervisor accesses (descriptor
 * tables, IDT, TSS) the caller flags with user = false
 * (emu_mem_read_sys()).
 *
 * Reserved bits (4.3-4.5) give #PF with P and RSVD set: physical-address
 * bits at or above MAXPHYADDR, XD when EFER.NXE = 0, PS in a PML4E, the
 * low address bits of large pages (20:13 of a 2 MiB PDE, 29:13 of a 1 GiB
 * PDPTE, 21 and the bits above MAXPHYADDR of a PSE-36 4 MiB PDE), bits
 * 62:MAXPHYADDR in PAE mode, and PDPTE bits 2:1, 8:5, 63 in PAE mode.
 * 1 GiB pages are always walked (CPUID may or may not advertise them).
 * Two simplifications, both invisible to a guest that follows the SDM's
 * TLB-maintenance rules: the PAE PDPTEs are read on each walk rather than
 * latched at MOV CR3 (reserved bits in them then fault as #PF, not #GP at
 * MOV CR3), and a paging-structure entry outside guest RAM reads as all
 * ones (which is present with reserved bits, so #PF RSVD) and is never
 * written: page walks never reach devices.
 *
 * ACCESSED AND DIRTY (4.8).  The walk sets A in every entry it goes through
 * and, once the access is known to be allowed, A (and D for a write) in the
 * leaf, each with a compare-and-swap on the entry in guest RAM: another
 * vCPU (or the guest's own locked RMW) may change the entry at the same
 * moment, and a plain write-back could undo its change.  When the swap
 * fails the entry is re-checked with its new value.  A fault leaves the
 * leaf's A and D alone.
 *
 * #PF.  emu_raise(cpu, EMU_VEC_PF, true, err) with cpu->exc.cr2 = lin and
 * err = P (a present entry forbade the access or had reserved bits), W,
 * U (user access), RSVD, I (instruction fetch, reported only with PAE or
 * 4-level paging and EFER.NXE, 4.7).  CR2 itself is written when the
 * exception is delivered: a fetch may fault on bytes the decoder turns out
 * not to need.
 *
 * THE TLB (struct emu_tlb in cpu.h).  512 direct-mapped entries indexed by
 * the linear page number with its 9-bit groups XOR-folded (emu_tlb_index():
 * consecutive pages get consecutive slots, and kernel text, direct map and
 * stacks, all aligned to large powers of two, do not collide in slot 0),
 * tagged with the whole linear page number.  An
 * entry holds the guest-physical page, the host address of that page when
 * it is RAM (NULL for MMIO, unmapped space and the LAPIC page, so those
 * always take mem.c's physical path), the six allowed-access bits
 * (read/write/execute for user and supervisor, already combining U/S, R/W,
 * XD, CR0.WP and EFER.NXE), DIRTY (the leaf's D is set: a write hit on a
 * clean entry must walk to set D) and GLOBAL (the leaf had G and CR4.PGE
 * was set).  Pages larger than 4 KiB are cached 4 KiB at a time.  With
 * paging off the TLB caches the identity map, so the fast path serves
 * real and protected mode too.
 *
 * WHEN THE TLB IS FLUSHED.  The system step's code calls
 *   emu_tlb_flush(cpu, false)    on every MOV to CR3 (even with the same
 *                                value: Linux flushes that way), and task
 *                                switches that load CR3;
 *   emu_tlb_flush(cpu, true)     on MOV to CR0 / CR4 and WRMSR EFER that
 *                                change paging (PG, WP, PE, PSE, PAE, PGE,
 *                                LMA, NXE), on WRMSR IA32_APIC_BASE (the
 *                                LAPIC page moved: its host pointer must
 *                                go), INIT / reset and state load;
 *   emu_tlb_flush_page(cpu, lin) for INVLPG (and INVPCID of one address).
 * As a safety net, emu_tlb_lookup() also compares the paging-mode bits and
 * CR3 with the ones the TLB was filled under and flushes by itself
 * (all entries / non-global ones) when they differ, so state loaded by
 * tests, loaders or migration can never hit stale entries.  The guest
 * sees exactly what the SDM allows: a changed PTE takes effect after
 * INVLPG or a CR3 reload, not before (4.10.4); global entries survive CR3
 * loads and go with CR4.PGE changes.  INVLPG of an address inside a large
 * page drops every 4 KiB piece of that large page.
 *
 * Cross-vCPU shootdowns are the guest's business (IPIs + INVLPG), as on
 * hardware; the TLB is private to its vCPU thread and needs no locks.
 */
#include <string.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "accel/emu/blocks.h"
#include "accel/emu/mmu.h"
#include "core/memory.h"

/* Paging-structure entry bits (SDM Vol. 3A tables 4-4 to 4-20). */
#define PTE_P   (1ull << 0)
#define PTE_RW  (1ull << 1)
#define PTE_US  (1ull << 2)
#define PTE_A   (1ull << 5)
#define PTE_D   (1ull << 6)
#define PTE_PS  (1ull << 7)
#define PTE_G   (1ull << 8)
#define PTE_XD  (1ull << 63)

#define CR4_PSE (1ull << 4)
#define CR4_PGE (1ull << 7)

/* What a successful walk found. */
struct walk {
	uint64_t page;    /* guest-physical 4 KiB page holding lin */
	unsigned shift;   /* log2 of the mapping page size */
	unsigned perm;    /* EMU_TLB_* */
};

static unsigned maxphyaddr(const struct emu_cpu *cpu)
{
	unsigned m = cpu->maxphyaddr;

	return m < 32 ? 32 : m > 52 ? 52 : m;
}

/* Bits [lo, hi] set. */
static uint64_t bits(unsigned hi, unsigned lo)
{
	if (hi < lo)
		return 0;
	return (hi >= 63 ? ~0ull : ((1ull << (hi + 1)) - 1)) & ~((1ull << lo) - 1);
}

static int page_fault(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		      bool user, uint32_t err)
{
	if (acc == EMU_ACC_WRITE)
		err |= EMU_PF_W;
	if (user)
		err |= EMU_PF_U;
	if (acc == EMU_ACC_EXEC && (cpu->cr4 & EMU_CR4_PAE) &&
	    (cpu->msr.efer & EMU_EFER_NXE))
		err |= EMU_PF_I;
	cpu->exc.cr2 = lin;
	return emu_raise(cpu, EMU_VEC_PF, true, err);
}

/* The permission bits of a leaf whose accumulated attributes are `rw`,
 * `us`, `nx`, before D is considered. */
static unsigned leaf_perm(const struct emu_cpu *cpu, bool rw, bool us, bool nx)
{
	unsigned p = EMU_TLB_SR;

	if (rw || !(cpu->cr0 & EMU_CR0_WP))
		p |= EMU_TLB_SW;
	if (!nx)
		p |= EMU_TLB_SX;
	if (us) {
		p |= EMU_TLB_UR;
		if (rw)
			p |= EMU_TLB_UW;
		if (!nx)
			p |= EMU_TLB_UX;
	}
	return p;
}

/* Host pointer to a paging-structure entry, NULL when it is not RAM. */
static void *entry_ptr(struct emu_cpu *cpu, uint64_t gpa, unsigned size)
{
	return gm_ptr(cpu->mem, gpa, size);
}

/* Set `set` bits in the 8-byte entry at p, which was read as *e.  Returns
 * true when done (or nothing to do), false when the entry changed meanwhile
 * (*e then holds its new value and the caller re-checks it). */
static bool set_bits64(uint64_t *p, uint64_t *e, uint64_t set)
{
	if (!p || (*e & set) == set)
		return true;
	return __atomic_compare_exchange_n(p, e, *e | set, false,
					   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static bool set_bits32(uint32_t *p, uint32_t *e, uint32_t set)
{
	if (!p || (*e & set) == set)
		return true;
	return __atomic_compare_exchange_n(p, e, *e | set, false,
					   __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static uint64_t load64(const uint64_t *p)
{
	return p ? __atomic_load_n(p, __ATOMIC_ACQUIRE) : ~0ull;
}

static uint32_t load32(const uint32_t *p)
{
	return p ? __atomic_load_n(p, __ATOMIC_ACQUIRE) : ~0u;
}

/* Check the leaf's permissions for the access and set A (and D).  `e`/`p`
 * is the leaf entry, already checked for P and reserved bits by the
 * caller; returns 1 when the entry changed under us (re-walk the level),
 * 0 on success, or EMU_EXC(#PF). */
static int leaf64(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  bool user, uint64_t *p, uint64_t *e, bool rw, bool us,
		  bool nx, struct walk *w)
{
	unsigned perm = leaf_perm(cpu, rw, us, nx);
	uint64_t set = PTE_A;

	if (!(perm & emu_tlb_need(acc, user) & ~EMU_TLB_DIRTY))
		return page_fault(cpu, lin, acc, user, EMU_PF_P);
	if (acc == EMU_ACC_WRITE)
		set |= PTE_D;
	if (!set_bits64(p, e, set))
		return 1;
	if ((*e & PTE_D) || acc == EMU_ACC_WRITE)
		perm |= EMU_TLB_DIRTY;
	if ((*e & PTE_G) && (cpu->cr4 & CR4_PGE))
		perm |= EMU_TLB_GLOBAL;
	w->perm = perm;
	return 0;
}

/* PAE and 4-level paging (SDM Vol. 3A 4.4, 4.5). */
static int walk64(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  bool user, struct walk *w)
{
	bool lm = cpu->msr.efer & EMU_EFER_LMA;
	unsigned m = maxphyaddr(cpu);
	uint64_t addr = bits(m - 1, 12);
	uint64_t rsvd = lm ? bits(51, m) : bits(62, m);
	bool rw = true, us = true, nx = false;
	uint64_t table;
	int level;

	if (!(cpu->msr.efer & EMU_EFER_NXE))
		rsvd |= PTE_XD;
	if (lm) {
		table = cpu->cr3 & addr;
		level = 4;
	} else {
		uint64_t ea = (cpu->cr3 & 0xffffffe0ull) + ((lin >> 30) & 3) * 8;
		uint64_t pdpte = load64(entry_ptr(cpu, ea, 8));

		if (!(pdpte & PTE_P))
			return page_fault(cpu, lin, acc, user, 0);
		if (pdpte & (bits(63, m) | bits(2, 1) | bits(8, 5)))
			return page_fault(cpu, lin, acc, user,
					  EMU_PF_P | EMU_PF_RSVD);
		table = pdpte & addr;
		level = 2;
	}
	for (; level >= 1; level--) {
		unsigned shift = 12 + 9 * (unsigned)(level - 1);
		uint64_t ea = table + ((lin >> shift) & 511) * 8;
		uint64_t *p = entry_ptr(cpu, ea, 8);
		uint64_t e = load64(p);
		bool leaf;
		int r;

	again:
		if (!(e & PTE_P))
			return page_fault(cpu, lin, acc, user, 0);
		leaf = level == 1;
		if (e & rsvd)
			goto reserved;
		if (level == 4 && (e & PTE_PS))
			goto reserved;
		if ((level == 3 || level == 2) && (e & PTE_PS)) {
			/* 1 GiB (bits 29:13) or 2 MiB (bits 20:13) page. */
			if (e & bits(shift - 1, 13))
				goto reserved;
			leaf = true;
		}
		rw = rw && (e & PTE_RW);
		us = us && (e & PTE_US);
		nx = nx || ((e & PTE_XD) && (cpu->msr.efer & EMU_EFER_NXE));
		if (!leaf) {
			if (!set_bits64(p, &e, PTE_A))
				goto again;
			table = e & addr;
			continue;
		}
		/* 1 = the leaf changed under us: the caller re-walks. */
		r = leaf64(cpu, lin, acc, user, p, &e, rw, us, nx, w);
		if (r)
			return r;
		w->shift = shift;
		w->page = ((e & addr & ~bits(shift - 1, 0)) |
			   (lin & bits(shift - 1, 12)));
		return 0;
	}
	/* Not reached: level 1 is always a leaf. */
	return page_fault(cpu, lin, acc, user, 0);
reserved:
	return page_fault(cpu, lin, acc, user, EMU_PF_P | EMU_PF_RSVD);
}

/* 32-bit paging (SDM Vol. 3A 4.3). */
static int walk32(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  bool user, struct walk *w)
{
	unsigned m = maxphyaddr(cpu) > 40 ? 40 : maxphyaddr(cpu);
	uint32_t pde_ea = (uint32_t)(cpu->cr3 & 0xfffff000u) +
			  (uint32_t)((lin >> 22) & 1023) * 4;
	uint32_t *pp = entry_ptr(cpu, pde_ea, 4), *tp;
	uint32_t pde = load32(pp), pte, set;
	unsigned perm;
	bool rw, us;

	if (!(pde & PTE_P))
		return page_fault(cpu, lin, acc, user, 0);
	if ((pde & PTE_PS) && (cpu->cr4 & CR4_PSE)) {
		/* 4 MiB page; PSE-36: bits 20:13 are address bits 39:32,
		 * those at or above MAXPHYADDR and bit 21 are reserved. */
		if (pde & bits(21, 13 + (m - 32)))
			return page_fault(cpu, lin, acc, user,
					  EMU_PF_P | EMU_PF_RSVD);
		rw = pde & PTE_RW;
		us = pde & PTE_US;
		perm = leaf_perm(cpu, rw, us, false);
		if (!(perm & emu_tlb_need(acc, user) & ~EMU_TLB_DIRTY))
			return page_fault(cpu, lin, acc, user, EMU_PF_P);
		set = PTE_A | (acc == EMU_ACC_WRITE ? PTE_D : 0);
		if (!set_bits32(pp, &pde, set))
			return 1;
		if ((pde & PTE_D) || acc == EMU_ACC_WRITE)
			perm |= EMU_TLB_DIRTY;
		if ((pde & PTE_G) && (cpu->cr4 & CR4_PGE))
			perm |= EMU_TLB_GLOBAL;
		w->perm = perm;
		w->shift = 22;
		w->page = (pde & 0xffc00000u) |
			  ((uint64_t)((pde >> 13) & 0xff) << 32) |
			  (lin & 0x3ff000u);
		return 0;
	}
	if (!set_bits32(pp, &pde, PTE_A))
		return 1;
	tp = entry_ptr(cpu, (pde & 0xfffff000u) + ((lin >> 12) & 1023) * 4, 4);
	pte = load32(tp);
	for (;;) {
		if (!(pte & PTE_P))
			return page_fault(cpu, lin, acc, user, 0);
		rw = (pde & PTE_RW) && (pte & PTE_RW);
		us = (pde & PTE_US) && (pte & PTE_US);
		perm = leaf_perm(cpu, rw, us, false);
		if (!(perm & emu_tlb_need(acc, user) & ~EMU_TLB_DIRTY))
			return page_fault(cpu, lin, acc, user, EMU_PF_P);
		set = PTE_A | (acc == EMU_ACC_WRITE ? PTE_D : 0);
		if (set_bits32(tp, &pte, set))
			break;
	}
	if ((pte & PTE_D) || acc == EMU_ACC_WRITE)
		perm |= EMU_TLB_DIRTY;
	if ((pte & PTE_G) && (cpu->cr4 & CR4_PGE))
		perm |= EMU_TLB_GLOBAL;
	w->perm = perm;
	w->shift = 12;
	w->page = pte & 0xfffff000u;
	return 0;
}

static void tlb_clear(struct emu_tlb *t, bool global)
{
	if (global || !t->has_global) {
		memset(t->e, 0, sizeof(t->e));
		t->has_global = false;
		t->has_large = false;
	} else {
		for (size_t i = 0; i < EMU_TLB_ENTRIES; i++)
			if (!(t->e[i].perm & EMU_TLB_GLOBAL))
				t->e[i].tag = 0;
	}
	t->flushes++;
}

void emu_tlb_flush(struct emu_cpu *cpu, bool global)
{
	tlb_clear(&cpu->tlb, global);
	cpu->tlb.key = emu_mmu_key(cpu);
	cpu->tlb.cr3 = cpu->cr3;
}

void emu_tlb_sync(struct emu_cpu *cpu)
{
	struct emu_tlb *t = &cpu->tlb;

	if (t->key != emu_mmu_key(cpu))
		emu_tlb_flush(cpu, true);
	else if (t->cr3 != cpu->cr3)
		emu_tlb_flush(cpu, false);
}

void emu_tlb_flush_page(struct emu_cpu *cpu, uint64_t lin)
{
	struct emu_tlb *t = &cpu->tlb;
	struct emu_tlb_entry *e = &t->e[emu_tlb_index(lin)];

	if ((e->tag & ~1ull) == (lin & ~0xfffull))
		e->tag = 0;
	if (!t->has_large)
		return;
	/* Every 4 KiB piece of a large page holding lin. */
	for (size_t i = 0; i < EMU_TLB_ENTRIES; i++) {
		e = &t->e[i];
		if (e->tag && e->shift > 12 &&
		    ((e->tag ^ lin) >> e->shift) == 0)
			e->tag = 0;
	}
}

static void tlb_fill(struct emu_cpu *cpu, uint64_t lin, const struct walk *w)
{
	struct emu_tlb *t = &cpu->tlb;
	struct emu_tlb_entry *e = &t->e[emu_tlb_index(lin)];

	/* Canonical pages only: a tag hit then implies a canonical address,
	 * so the executor's fast paths need no check of their own. */
	if (t->disabled || (uint64_t)((int64_t)(lin << 16) >> 16) != lin)
		return;
	e->tag = (lin & ~0xfffull) | 1;
	e->gpa = w->page;
	e->host = emu_phys_host(cpu, w->page, 4096);
	e->perm = (uint16_t)w->perm;
	e->shift = (uint8_t)w->shift;
	e->code = 0;
	if (e->host && cpu->code) {
		int64_t p = emu_code_page(cpu->code, w->page);

		if (p >= 0 && p < UINT32_MAX)
			e->code = (uint32_t)p + 1;
	}
	if (w->perm & EMU_TLB_GLOBAL)
		t->has_global = true;
	if (w->shift > 12)
		t->has_large = true;
}

int emu_mmu_translate(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		      bool user, uint64_t *gpa)
{
	const struct emu_tlb_entry *e = emu_tlb_lookup(cpu, lin,
						       emu_tlb_need(acc, user));
	struct walk w = { 0 };
	int r, tries = 0;

	if (e) {
		*gpa = e->gpa | (lin & 0xfff);
		return 0;
	}
	cpu->tlb.misses++;
	if (!(cpu->cr0 & EMU_CR0_PG)) {
		w.page = lin & ~0xfffull;
		w.shift = 12;
		w.perm = 0x3f | EMU_TLB_DIRTY;
	} else {
		/* A walk restarts when a racing vCPU changed an entry between
		 * our read and our A/D update; each restart means the other
		 * side made progress.  Bounded all the same: after a million
		 * lost races the access faults as not present and the guest
		 * retries it, rather than a vCPU spinning here forever. */
		do {
			if ((cpu->msr.efer & EMU_EFER_LMA) ||
			    (cpu->cr4 & EMU_CR4_PAE))
				r = walk64(cpu, lin, acc, user, &w);
			else
				r = walk32(cpu, lin, acc, user, &w);
		} while (r == 1 && ++tries < 1000000);
		if (r == 1)
			r = page_fault(cpu, lin, acc, user, 0);
		if (r)
			return r;
	}
	tlb_fill(cpu, lin, &w);
	*gpa = w.page | (lin & 0xfff);
	return 0;
}

int emu_translate(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  uint64_t *gpa)
{
	return emu_mmu_translate(cpu, lin, acc, cpu->cpl == 3, gpa);
}
