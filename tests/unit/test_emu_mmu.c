/*
 * test_emu_mmu.c - the software CPU's paging and TLB (accel/emu/mmu.c) and
 * the memory-access paths around them (mem.c): page walks in all three
 * paging modes, permission checks and #PF error codes (SDM Vol. 3A 4.6,
 * 4.7), Accessed/Dirty updates (4.8), TLB invalidation semantics (4.10),
 * hostile page tables, the LAPIC page, and a timing of the TLB.
 *
 * Page tables are built in guest RAM by the helpers below (a bump
 * allocator of zeroed table pages at TABLES), then addresses are
 * translated with emu_translate() directly or instructions run through
 * emu_step() in flat 64-bit mode.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <setjmp.h>
#include <cmocka.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "accel/emu/lapic.h"
#include "accel/emu/mmu.h"
#include "core/bus.h"
#include "core/memory.h"
#include "harness.h"

#define RAM      (64ull << 20)
#define TABLES   0x100000ull  /* page-table pages are allocated from here */
#define P   0x1ull
#define RW  0x2ull
#define US  0x4ull
#define A   0x20ull
#define D   0x40ull
#define PS  0x80ull
#define G   0x100ull
#define XD  (1ull << 63)

struct env {
	struct harness *h;
	struct guest_mem *gm;
	uint64_t next_table;
	struct emu_cpu cpu;
};

/* ---- page-table builders --------------------------------------------- */

static uint64_t table_alloc(struct env *e)
{
	uint64_t t = e->next_table;
	void *p = gm_ptr(e->gm, t, 4096);

	assert_non_null(p);
	memset(p, 0, 4096);
	e->next_table += 4096;
	return t;
}

static uint64_t *ent64(struct env *e, uint64_t gpa)
{
	uint64_t *p = gm_ptr(e->gm, gpa, 8);

	assert_non_null(p);
	return p;
}

static uint32_t *ent32(struct env *e, uint64_t gpa)
{
	uint32_t *p = gm_ptr(e->gm, gpa, 4);

	assert_non_null(p);
	return p;
}

/* Map `lin` -> `gpa` in the 4-level tables at `cr3` with a page of
 * 1 << shift bytes (12, 21, 30) and leaf flags `leaf`; intermediate entries
 * are created with `mid`, or get `mid` OR'd in.  Returns the
 * guest-physical address of the leaf entry. */
static uint64_t map4(struct env *e, uint64_t cr3, uint64_t lin, uint64_t gpa,
		     unsigned shift, uint64_t leaf, uint64_t mid)
{
	uint64_t table = cr3 & ~0xfffull;

	for (int level = 4; level >= 1; level--) {
		unsigned s = 12 + 9 * (unsigned)(level - 1);
		uint64_t ea = table + ((lin >> s) & 511) * 8;
		uint64_t *p = ent64(e, ea);

		if (s == shift) {
			*p = gpa | leaf | (shift > 12 ? PS : 0);
			return ea;
		}
		if (!(*p & P))
			*p = table_alloc(e) | mid;
		else
			*p |= mid;
		table = *p & 0x000ffffffffff000ull;
	}
	fail();
	return 0;
}

/* Fresh 4-level paging state (long mode, flat, CPL 0, CR0.WP, NXE). */
static uint64_t setup_long(struct env *e)
{
	struct emu_cpu *cpu = &e->cpu;
	uint64_t cr3;

	e->next_table = TABLES;
	cr3 = table_alloc(e);
	emu_cpu_init(cpu, e->gm, &e->h->vm.mmio, NULL);
	emu_cpu_set_long_mode(cpu, 0);
	cpu->cr3 = cr3;
	cpu->msr.efer |= EMU_EFER_NXE;
	emu_tlb_flush(cpu, true);
	return cr3;
}

static int xlat(struct env *e, uint64_t lin, enum emu_access acc,
		uint64_t *gpa)
{
	*gpa = 0xdeadull;
	return emu_translate(&e->cpu, lin, acc, gpa);
}

/* Expect a #PF with `err` at `lin`. */
static void expect_pf(struct env *e, uint64_t lin, enum emu_access acc,
		      uint32_t err)
{
	uint64_t gpa;

	emu_tlb_flush(&e->cpu, true);
	assert_int_equal(xlat(e, lin, acc, &gpa), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(e->cpu.exc.vector, EMU_VEC_PF);
	assert_true(e->cpu.exc.has_error);
	assert_int_equal(e->cpu.exc.error_code, err);
	assert_int_equal(e->cpu.exc.cr2, lin);
}

static void expect_ok(struct env *e, uint64_t lin, enum emu_access acc,
		      uint64_t want)
{
	uint64_t gpa;

	assert_int_equal(xlat(e, lin, acc, &gpa), 0);
	assert_int_equal(gpa, want);
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	e->h = harness_new(RAM);
	e->gm = &e->h->vm.mem;
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	harness_free(e->h);
	free(e);
	return 0;
}

/* ---- 4-level paging ---------------------------------------------------- */

static void test_long_mode_pages(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	uint64_t l4k = 0xffff800000123000ull, l2m = 0x0000000040200000ull;
	uint64_t l1g = 0x0000008040000000ull; /* PML4[1], PDPT[1] */
	uint64_t pte, pde, pdpte;

	pte = map4(e, cr3, l4k, 0x345000, 12, P | RW, P | RW);
	pde = map4(e, cr3, l2m, 0x600000, 21, P | RW, P | RW);
	pdpte = map4(e, cr3, l1g, 0xc0000000ull, 30, P | RW, P | RW);

	expect_ok(e, l4k + 0x9a, EMU_ACC_READ, 0x34509a);
	expect_ok(e, l2m + 0x1fffff, EMU_ACC_READ, 0x7fffff);
	expect_ok(e, l2m + 0x12345, EMU_ACC_WRITE, 0x612345);
	expect_ok(e, l1g + 0x3fffffff, EMU_ACC_READ, 0xffffffffull);
	expect_ok(e, l1g + 0x12345678, EMU_ACC_EXEC, 0xd2345678ull);

	/* Accessed on every level, Dirty only on the written leaf. */
	assert_int_equal(*ent64(e, pte) & (A | D), A);
	assert_int_equal(*ent64(e, pde) & (A | D), A | D);
	assert_int_equal(*ent64(e, pdpte) & (A | D), A);
	assert_true(*ent64(e, cr3 + ((l4k >> 39) & 511) * 8) & A);
	/* Upper levels carry no D. */
	assert_false(*ent64(e, cr3 + ((l4k >> 39) & 511) * 8) & D);

	/* A write after a read hit must still set D (walks again). */
	expect_ok(e, l4k, EMU_ACC_WRITE, 0x345000);
	assert_int_equal(*ent64(e, pte) & (A | D), A | D);
}

static void test_long_mode_faults(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	uint64_t ro = 0x10000, sup = 0x11000, nx = 0x12000, user = 0x13000;
	uint64_t pte, pte_ro;

	pte_ro = map4(e, cr3, ro, 0x200000, 12, P | US, P | RW | US);
	map4(e, cr3, sup, 0x201000, 12, P | RW, P | RW | US);
	pte = map4(e, cr3, nx, 0x202000, 12, P | RW | US | XD, P | RW | US);
	map4(e, cr3, user, 0x203000, 12, P | RW | US, P | RW | US);

	/* Not present: P = 0 with W / U / I. */
	expect_pf(e, 0x7f0000000000ull, EMU_ACC_READ, 0);
	expect_pf(e, 0x14000, EMU_ACC_WRITE, EMU_PF_W);
	expect_pf(e, 0x14000, EMU_ACC_EXEC, EMU_PF_I);
	cpu->cpl = 3;
	expect_pf(e, 0x14000, EMU_ACC_READ, EMU_PF_U);
	cpu->cpl = 0;

	/* Read-only: CPL 0 with WP faults, without WP writes. */
	expect_pf(e, ro, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W);
	assert_int_equal(*ent64(e, pte_ro) & (A | D), 0);
	cpu->cr0 &= ~EMU_CR0_WP;
	emu_tlb_flush(cpu, true);
	expect_ok(e, ro + 8, EMU_ACC_WRITE, 0x200008);
	cpu->cr0 |= EMU_CR0_WP;
	cpu->cpl = 3;
	expect_pf(e, ro, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W | EMU_PF_U);
	expect_ok(e, ro + 4, EMU_ACC_READ, 0x200004);

	/* User access to a supervisor page; supervisor may use it. */
	expect_pf(e, sup, EMU_ACC_READ, EMU_PF_P | EMU_PF_U);
	expect_pf(e, sup, EMU_ACC_EXEC, EMU_PF_P | EMU_PF_U | EMU_PF_I);
	cpu->cpl = 0;
	expect_ok(e, sup, EMU_ACC_WRITE, 0x201000);
	/* ... and supervisor may read and run user pages (no SMAP/SMEP). */
	expect_ok(e, user, EMU_ACC_EXEC, 0x203000);

	/* NX: fetch faults with I, data accesses work. */
	expect_pf(e, nx, EMU_ACC_EXEC, EMU_PF_P | EMU_PF_I);
	expect_ok(e, nx, EMU_ACC_WRITE, 0x202000);
	/* XD set without EFER.NXE is a reserved bit; I is not reported. */
	cpu->msr.efer &= ~EMU_EFER_NXE;
	expect_pf(e, nx, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	expect_pf(e, nx, EMU_ACC_EXEC, EMU_PF_P | EMU_PF_RSVD);
	cpu->msr.efer |= EMU_EFER_NXE;

	/* Reserved bits above MAXPHYADDR (40). */
	*ent64(e, pte) |= 1ull << 45;
	expect_pf(e, nx, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	/* Bits 62:52 are ignored in 4-level paging. */
	*ent64(e, pte) = (*ent64(e, pte) & ~(1ull << 45)) | (1ull << 55);
	expect_ok(e, nx, EMU_ACC_READ, 0x202000);

	/* PS in a PML4E is reserved. */
	*ent64(e, cr3) |= PS;
	expect_pf(e, ro, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	*ent64(e, cr3) &= ~PS;
	/* A 2 MiB page with bit 13 set. */
	map4(e, cr3, 0x40000000, 0x400000 | (1ull << 13), 21, P | RW, P | RW);
	expect_pf(e, 0x40000000, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	/* A 1 GiB page with bit 29 set. */
	map4(e, cr3, 0x8000000000ull, 1ull << 29, 30, P | RW, P | RW);
	expect_pf(e, 0x8000000000ull, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);

	/* A fault does not set the leaf's A. */
	pte = map4(e, cr3, 0x15000, 0x205000, 12, P, P | RW | US);
	expect_pf(e, 0x15000, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W);
	assert_false(*ent64(e, pte) & A);

	/* R/W and U/S combine over the levels: a read-only PDE makes a
	 * writable PTE read-only. */
	map4(e, cr3, 0x600000000ull, 0x206000, 12, P | RW | US, P | US);
	expect_pf(e, 0x600000000ull, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W);
}

/* ---- PAE and 32-bit paging --------------------------------------------- */

static void set_prot32(struct emu_cpu *cpu, uint64_t cr3, uint64_t cr4,
		       uint64_t efer)
{
	cpu->msr.efer = efer;
	cpu->cr4 = cr4;
	cpu->cr3 = cr3;
	cpu->cr0 = EMU_CR0_PE | EMU_CR0_PG | EMU_CR0_WP;
	cpu->seg[EMU_SEG_CS].attr = 0xb | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P |
				    EMU_SEG_ATTR_DB | EMU_SEG_ATTR_G;
	emu_cpu_update_mode(cpu);
	emu_tlb_flush(cpu, true);
}

static void test_pae(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t pdpt, pd, pt;

	setup_long(e);
	pdpt = table_alloc(e) + 0x20;  /* 32-byte aligned, not page aligned */
	pd = table_alloc(e);
	pt = table_alloc(e);
	set_prot32(cpu, pdpt, EMU_CR4_PAE, EMU_EFER_NXE);
	assert_int_equal(cpu->mode, EMU_MODE_PROT32);

	/* lin 0xc0123456: PDPTE 3, PDE 0, PTE 0x123. */
	*ent64(e, pdpt + 3 * 8) = pd | P;
	*ent64(e, pd) = pt | P | RW;
	*ent64(e, pt + 0x123 * 8) = 0x789000 | P | RW | XD;
	/* lin 0xc0400000: 2 MiB page (PDE 2). */
	*ent64(e, pd + 2 * 8) = 0xa00000 | P | PS;

	expect_ok(e, 0xc0123456, EMU_ACC_WRITE, 0x789456);
	assert_int_equal(*ent64(e, pt + 0x123 * 8) & (A | D), A | D);
	assert_true(*ent64(e, pd) & A);
	expect_pf(e, 0xc0123456, EMU_ACC_EXEC, EMU_PF_P | EMU_PF_I);
	expect_ok(e, 0xc0512345, EMU_ACC_EXEC, 0xb12345);
	expect_pf(e, 0xc0512345, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W);
	/* PDPTE 0 not present. */
	expect_pf(e, 0x1000, EMU_ACC_READ, 0);
	/* PDPTE reserved bits (RW is reserved in a PAE PDPTE). */
	*ent64(e, pdpt) = pd | P | RW;
	expect_pf(e, 0x1000, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	/* Bits 62:MAXPHYADDR are reserved in PAE paging. */
	*ent64(e, pt + 0x123 * 8) |= 1ull << 55;
	expect_pf(e, 0xc0123456, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	/* Without NXE, XD is reserved. */
	*ent64(e, pt + 0x123 * 8) &= ~(1ull << 55);
	set_prot32(cpu, pdpt, EMU_CR4_PAE, 0);
	expect_pf(e, 0xc0123456, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
}

static void test_paging32(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t pd, pt;

	setup_long(e);
	pd = table_alloc(e);
	pt = table_alloc(e);
	set_prot32(cpu, pd, 0, 0);

	/* lin 0x00403abc: PDE 1, PTE 3. */
	*ent32(e, pd + 1 * 4) = (uint32_t)(pt | P | RW | US);
	*ent32(e, pt + 3 * 4) = 0x00777000 | P | US;
	expect_ok(e, 0x00403abc, EMU_ACC_READ, 0x777abc);
	assert_int_equal(*ent32(e, pt + 3 * 4) & (A | D), A);
	assert_true(*ent32(e, pd + 4) & A);
	expect_pf(e, 0x00403abc, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W);
	/* No NX in 32-bit paging: fetches work, I is never reported. */
	expect_ok(e, 0x00403abc, EMU_ACC_EXEC, 0x777abc);
	cpu->msr.efer |= EMU_EFER_NXE;
	expect_pf(e, 0x00404000, EMU_ACC_EXEC, 0);
	cpu->msr.efer &= ~EMU_EFER_NXE;
	cpu->cpl = 3;
	expect_ok(e, 0x00403000, EMU_ACC_READ, 0x777000);
	cpu->cpl = 0;

	/* 4 MiB pages need CR4.PSE; without it PS is ignored and the PDE
	 * points at a page table. */
	*ent32(e, pd + 0x300 * 4) = 0x01c00000 | P | RW | PS;  /* lin 0xc0000000 */
	*ent32(e, pd + 0x301 * 4) = (uint32_t)(pt | P | RW | PS);
	set_prot32(cpu, pd, 1u << 4, 0);
	expect_ok(e, 0xc0123456, EMU_ACC_WRITE, 0x01d23456);
	assert_int_equal(*ent32(e, pd + 0x300 * 4) & (A | D), A | D);
	/* PSE-36: bits 20:13 are physical bits 39:32. */
	*ent32(e, pd + 0x302 * 4) = 0x00400000 | (0x12u << 13) | P | PS;
	expect_ok(e, 0xc0800010, EMU_ACC_READ, 0x1200400010ull);
	/* Bit 21 of a 4 MiB PDE is reserved. */
	*ent32(e, pd + 0x302 * 4) |= 1u << 21;
	expect_pf(e, 0xc0800010, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	/* Without PSE: PDE 0x301 is a table pointer to `pt`. */
	set_prot32(cpu, pd, 0, 0);
	expect_ok(e, 0xc0403000, EMU_ACC_READ, 0x777000);
}

/* ---- the TLB ----------------------------------------------------------- */

static void test_tlb_invalidation(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	uint64_t lin = 0x7000000, pte, gpte, big;
	uint64_t misses;

	pte = map4(e, cr3, lin, 0x300000, 12, P | RW, P | RW);
	expect_ok(e, lin, EMU_ACC_READ, 0x300000);
	misses = cpu->tlb.misses;
	expect_ok(e, lin + 8, EMU_ACC_READ, 0x300008);
	assert_int_equal(cpu->tlb.misses, misses); /* a hit */

	/* A changed PTE is not seen until INVLPG ... */
	*ent64(e, pte) = 0x301000 | P | RW;
	expect_ok(e, lin, EMU_ACC_READ, 0x300000);
	emu_tlb_flush_page(cpu, lin + 0x123);
	expect_ok(e, lin, EMU_ACC_READ, 0x301000);
	/* ... or a CR3 reload (the same CR3: the MOV CR3 code flushes). */
	*ent64(e, pte) = 0x302000 | P | RW;
	expect_ok(e, lin, EMU_ACC_READ, 0x301000);
	emu_tlb_flush(cpu, false);
	expect_ok(e, lin, EMU_ACC_READ, 0x302000);
	/* Removing the mapping: still cached until INVLPG, then #PF. */
	*ent64(e, pte) = 0;
	expect_ok(e, lin, EMU_ACC_READ, 0x302000);
	emu_tlb_flush_page(cpu, lin);
	assert_int_equal(xlat(e, lin, EMU_ACC_READ, &misses),
			 EMU_EXC(EMU_VEC_PF));

	/* Global entries survive a non-global flush (with CR4.PGE) and go
	 * with a global one. */
	cpu->cr4 |= 1u << 7;
	emu_tlb_flush(cpu, true);
	gpte = map4(e, cr3, 0x8000000, 0x400000, 12, P | RW | G, P | RW);
	pte = map4(e, cr3, 0x8001000, 0x401000, 12, P | RW, P | RW);
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x400000);
	expect_ok(e, 0x8001000, EMU_ACC_READ, 0x401000);
	*ent64(e, gpte) = 0x500000 | P | RW | G;
	*ent64(e, pte) = 0x501000 | P | RW;
	emu_tlb_flush(cpu, false);
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x400000);  /* kept */
	expect_ok(e, 0x8001000, EMU_ACC_READ, 0x501000);  /* dropped */
	/* A CR3 change behind the TLB's back flushes non-global ones too. */
	*ent64(e, pte) = 0x502000 | P | RW;
	cpu->cr3 = cr3 | 0x8; /* PWT: same tables, different CR3 value */
	expect_ok(e, 0x8001000, EMU_ACC_READ, 0x502000);
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x400000);
	emu_tlb_flush(cpu, true);
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x500000);
	/* G without CR4.PGE is not global. */
	cpu->cr4 &= ~(1ull << 7);
	*ent64(e, gpte) = 0x600000 | P | RW | G;
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x600000); /* PGE change flushed */
	*ent64(e, gpte) = 0x601000 | P | RW | G;
	emu_tlb_flush(cpu, false);
	expect_ok(e, 0x8000000, EMU_ACC_READ, 0x601000);

	/* INVLPG anywhere in a 2 MiB page drops all its cached pieces. */
	big = map4(e, cr3, 0x40000000, 0x800000, 21, P | RW, P | RW);
	expect_ok(e, 0x40000000, EMU_ACC_READ, 0x800000);
	expect_ok(e, 0x40155000, EMU_ACC_READ, 0x955000);
	*ent64(e, big) = 0xc00000 | P | RW | PS;
	emu_tlb_flush_page(cpu, 0x401ff000);
	expect_ok(e, 0x40000000, EMU_ACC_READ, 0xc00000);
	expect_ok(e, 0x40155000, EMU_ACC_READ, 0xd55000);

	/* A mode change (CR0.WP off) is noticed without an explicit flush:
	 * a read-only page cached as read-only becomes writable. */
	pte = map4(e, cr3, 0x9000000, 0x402000, 12, P, P | RW);
	expect_ok(e, 0x9000000, EMU_ACC_READ, 0x402000);
	cpu->cr0 &= ~EMU_CR0_WP;
	expect_ok(e, 0x9000000, EMU_ACC_WRITE, 0x402000);
	cpu->cr0 |= EMU_CR0_WP;
	assert_int_equal(xlat(e, 0x9000000, EMU_ACC_WRITE, &misses),
			 EMU_EXC(EMU_VEC_PF));
}

/* A write hit on a clean entry walks to set D; a D cleared by the guest
 * (and INVLPG'd) is set again. */
static void test_tlb_dirty(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	uint64_t pte = map4(e, cr3, 0xa000000, 0x303000, 12, P | RW, P | RW);
	uint64_t v;

	cpu->gpr[EMU_RBX] = 0xa000000;
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0xa000010, 8, &v), 0);
	assert_int_equal(*ent64(e, pte) & (A | D), A);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, 0xa000010, 8, 42), 0);
	assert_int_equal(*ent64(e, pte) & (A | D), A | D);
	*ent64(e, pte) &= ~(A | D);
	emu_tlb_flush_page(cpu, 0xa000000);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, 0xa000018, 4, 7), 0);
	assert_int_equal(*ent64(e, pte) & (A | D), A | D);
	assert_int_equal(gm_read(e->gm, 0x303010, &v, 8), 0);
	assert_int_equal(v, 42);
}

/* ---- instructions through paged memory --------------------------------- */

static void test_step_paged(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	const uint64_t code = 0xffffffff81000ff8ull; /* crosses into the next page */
	const uint64_t data = 0xffff888000010000ull;
	const uint64_t stack = 0x7ffff000ull;
	/* mov rax, [rsi]; mov [rdi], rax; push rax; add qword [rsi], 1;
	 * lock inc qword [rdi]; mov [rdx], eax (read-only page) */
	static const uint8_t insns[] = { 0x48, 0x8b, 0x06, 0x48, 0x89, 0x07,
		0x50, 0x48, 0x83, 0x06, 0x01, 0xf0, 0x48, 0xff, 0x07, 0x89, 0x02 };
	uint64_t v, pte_ro;
	uint8_t *host;

	map4(e, cr3, code & ~0xfffull, 0x2000000, 12, P, P | RW);
	map4(e, cr3, (code & ~0xfffull) + 0x1000, 0x2005000, 12, P, P | RW);
	map4(e, cr3, data, 0x2100000, 12, P | RW | XD, P | RW);
	map4(e, cr3, stack - 0x1000, 0x2200000, 12, P | RW | XD, P | RW);
	pte_ro = map4(e, cr3, 0x50000000, 0x2300000, 12, P | XD, P | RW);
	host = gm_ptr(e->gm, 0x2000ff8, 8);
	memcpy(host, insns, 8);
	host = gm_ptr(e->gm, 0x2005000, sizeof(insns) - 8);
	memcpy(host, insns + 8, sizeof(insns) - 8);
	v = 0x1122334455667788ull;
	assert_int_equal(gm_write(e->gm, 0x2100000, &v, 8), 0);

	cpu->rip = code;
	cpu->gpr[EMU_RSI] = data;
	cpu->gpr[EMU_RDI] = data + 0x100;
	cpu->gpr[EMU_RDX] = 0x50000000;
	cpu->gpr[EMU_RSP] = stack;
	for (int i = 0; i < 5; i++)
		assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->gpr[EMU_RAX], 0x1122334455667788ull);
	assert_int_equal(gm_read(e->gm, 0x2100100, &v, 8), 0);
	assert_int_equal(v, 0x1122334455667789ull);
	assert_int_equal(gm_read(e->gm, 0x2200ff8, &v, 8), 0);
	assert_int_equal(v, 0x1122334455667788ull);
	assert_int_equal(gm_read(e->gm, 0x2100000, &v, 8), 0);
	assert_int_equal(v, 0x1122334455667789ull);
	assert_int_equal(cpu->gpr[EMU_RSP], stack - 8);
	/* The store to the read-only page faults and changes nothing. */
	v = cpu->rip;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu->exc.error_code, EMU_PF_P | EMU_PF_W);
	assert_int_equal(cpu->exc.cr2, 0x50000000);
	assert_int_equal(cpu->rip, v);
	/* Make it writable + INVLPG: it retires. */
	*ent64(e, pte_ro) |= RW;
	emu_tlb_flush_page(cpu, 0x50000000);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(gm_read(e->gm, 0x2300000, &v, 4), 0);
	assert_int_equal(v & 0xffffffff, 0x55667788);

	/* Fetch from an NX page: #PF with I; data is NX. */
	cpu->rip = data;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu->exc.error_code, EMU_PF_P | EMU_PF_I);
	/* An instruction straddling into a not-present page: #PF at the
	 * second page, nothing done. */
	map4(e, cr3, 0x60000000, 0x2400000, 12, P, P | RW);
	host = gm_ptr(e->gm, 0x2400ffe, 2);
	host[0] = 0x48; host[1] = 0x8b;  /* mov rax, [rsi] continues */
	cpu->rip = 0x60000ffe;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu->exc.cr2, 0x60001000);
	assert_int_equal(cpu->exc.error_code, EMU_PF_I);

	/* User mode: CPL 3 reading a supervisor page through an
	 * instruction gives U; the implicit supervisor path may read it. */
	map4(e, cr3, 0x70000000, 0x2500000, 12, P | RW | US, P | RW | US);
	host = gm_ptr(e->gm, 0x2500000, 3);
	memcpy(host, insns, 3);
	cpu->rip = 0x70000000;
	cpu->seg[EMU_SEG_CS].sel = 0x33;
	emu_cpu_update_mode(cpu);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu->exc.error_code, EMU_PF_P | EMU_PF_U);
	assert_int_equal(cpu->exc.cr2, data);
	assert_int_equal(emu_mem_read_sys(cpu, data, 8, &v), 0);
	assert_int_equal(v, 0x1122334455667789ull);
	assert_int_equal(emu_mem_write_sys(cpu, data + 8, 8, 5), 0);
	assert_int_equal(emu_mem_read_sys(cpu, 0x30000000, 8, &v),
			 EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu->exc.error_code, 0); /* implicit: no U */
}

/* ---- hostile page tables ----------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void test_hostile_tables(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	uint64_t v, gpa;
	uint64_t pte;

	/* CR3 outside RAM: the walk reads all ones -> RSVD, no crash. */
	cpu->cr3 = 0xfff0000000ull;
	expect_pf(e, 0x1000, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	cpu->cr3 = ~0ull;
	expect_pf(e, 0x1000, EMU_ACC_WRITE, EMU_PF_P | EMU_PF_W | EMU_PF_RSVD);
	/* A PDE pointing at a table beyond RAM. */
	cpu->cr3 = cr3;
	map4(e, cr3, 0x10000000, 0x1000, 12, P | RW, P | RW);
	*ent64(e, cr3) = 0x20000000000ull - 0x1000; /* > 2^40: reserved */
	*ent64(e, cr3) |= P | RW;
	expect_pf(e, 0x10000000, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);
	*ent64(e, cr3) = 0xff00000000ull | P | RW; /* below 2^40, not RAM */
	expect_pf(e, 0x10000000, EMU_ACC_READ, EMU_PF_P | EMU_PF_RSVD);

	/* A leaf pointing outside RAM (unclaimed MMIO): reads all ones,
	 * writes are dropped. */
	cr3 = setup_long(e);
	pte = map4(e, cr3, 0x10000000, 0xff00000000ull, 12, P | RW, P | RW);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x10000ff8, 8, &v), 0);
	assert_int_equal(v, ~0ull);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, 0x10000ff8, 8, 1), 0);
	/* ... and the last page of RAM mapped there, crossing into the
	 * void: the RAM part is written, the rest dropped. */
	map4(e, cr3, 0x10001000, 0xff00001000ull, 12, P | RW, P | RW);
	*ent64(e, pte) = (RAM - 0x1000) | P | RW;
	emu_tlb_flush(cpu, false);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, 0x10000ffc, 8,
				       0x1122334455667788ull), 0);
	assert_int_equal(gm_read(e->gm, RAM - 4, &v, 4), 0);
	assert_int_equal(v & 0xffffffff, 0x55667788);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x10000ffc, 8, &v), 0);
	assert_int_equal(v, 0xffffffff55667788ull);

	/* Garbage tables: every table page random, many random addresses
	 * in every mode; only the absence of a crash and sane results. */
	for (int round = 0; round < 3; round++) {
		e->next_table = TABLES;
		cr3 = setup_long(e);
		for (int t = 0; t < 64; t++) {
			uint64_t *p = gm_ptr(e->gm, TABLES + t * 4096ull, 4096);

			for (int i = 0; i < 512; i++) {
				uint64_t r = rnd();
				/* Keep most pointers inside the table area or
				 * RAM so walks go deep. */
				if (r & 0x100)
					r = (r & 0xfff0000000000fffull) |
					    (TABLES + (r >> 12) % 64 * 4096);
				p[i] = r;
			}
		}
		if (round == 1)
			set_prot32(cpu, TABLES + 0x20, EMU_CR4_PAE, EMU_EFER_NXE);
		if (round == 2)
			set_prot32(cpu, TABLES, 1u << 4, 0);
		for (int i = 0; i < 20000; i++) {
			uint64_t lin = rnd();
			enum emu_access acc = (enum emu_access)(rnd() % 3);
			int r;

			if (round)
				lin &= 0xffffffffull;
			else
				lin = (uint64_t)((int64_t)(lin << 16) >> 16);
			cpu->cpl = (i & 1) ? 3 : 0;
			r = emu_translate(cpu, lin, acc, &gpa);
			assert_true(r == 0 || r == EMU_EXC(EMU_VEC_PF));
			if (r == 0) {
				assert_true(gpa >> 52 == 0);
				assert_int_equal(gpa & 0xfff, lin & 0xfff);
				/* And an access there is safe. */
				emu_mem_read(cpu, EMU_SEG_DS, lin, 8, &v);
				emu_mem_write(cpu, EMU_SEG_DS, lin, 4, 0);
			}
			if (i % 1000 == 0)
				emu_tlb_flush(cpu, true);
		}
		cpu->cpl = 0;
	}
}

/* ---- concurrent A/D updates ------------------------------------------- */

struct flipper {
	uint64_t *entry;
	int iters;
	volatile int *start;
};

/* Another "vCPU" (or the guest's own locked RMW) toggling a software bit of
 * the PTE while walks set A/D: with compare-and-swap no toggle is lost. */
static void *flip_thread(void *arg)
{
	struct flipper *f = arg;

	while (!*f->start)
		;
	for (int i = 0; i < f->iters; i++)
		__atomic_fetch_xor(f->entry, 1ull << 9, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_concurrent_ad(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	uint64_t pte = map4(e, cr3, 0xb000000, 0x310000, 12, P | RW, P | RW);
	uint64_t *entry = ent64(e, pte);
	volatile int start = 0;
	struct flipper f = { entry, 2000000, &start };
	pthread_t t;
	uint64_t gpa;
	int walks = 0;

	assert_int_equal(pthread_create(&t, NULL, flip_thread, &f), 0);
	start = 1;
	for (int i = 0; i < 200000; i++) {
		/* Clear A and D (atomically, like the guest's own kernel), drop
		 * the TLB entry and write: the walk sets A and D again. */
		__atomic_fetch_and(entry, ~(A | D), __ATOMIC_SEQ_CST);
		emu_tlb_flush_page(cpu, 0xb000000);
		assert_int_equal(emu_translate(cpu, 0xb000000, EMU_ACC_WRITE,
					       &gpa), 0);
		walks++;
	}
	pthread_join(t, NULL);
	/* An even number of toggles: bit 9 is back to 0; a lost update
	 * (plain write-back of a stale value) would leave it set or clear
	 * at random -- check over the whole run by the toggle count. */
	assert_false(*entry & (1ull << 9));
	assert_int_equal(*entry & (A | D), A | D);
	assert_int_equal(*entry & ~0xfffull, 0x310000);
	assert_true(walks == 200000);
}

/* ---- the LAPIC page ---------------------------------------------------- */

struct mmio_probe {
	unsigned reads, writes;
};

static uint64_t probe_read(void *opaque, uint64_t off, unsigned size)
{
	((struct mmio_probe *)opaque)->reads++;
	return 0x5a5a5a5a5a5a5a5aull;
}

static void probe_write(void *opaque, uint64_t off, unsigned size,
			uint64_t v)
{
	((struct mmio_probe *)opaque)->writes++;
}

static const struct bus_ops probe_ops = {
	.read = probe_read,
	.write = probe_write,
};

static void test_lapic_page(void **state)
{
	struct env *e = *state;
	uint64_t cr3 = setup_long(e);
	struct emu_cpu *cpu = &e->cpu;
	struct lapic_bus *bus;
	struct lapic *l;
	static struct mmio_probe probe; /* stays registered on the bus */
	uint64_t v;
	const uint64_t apic_lin = 0xffffffffff5fb000ull; /* Linux's fixmap-ish */

	assert_int_equal(bus_register(&e->h->vm.mmio, 0xfee00000ull, 0x1000,
				      &probe_ops, &probe, "probe"), 0);
	assert_int_equal(lapic_bus_create(&e->h->vm, 1, NULL, NULL, &bus), 0);
	l = lapic_bus_get(bus, 0);
	map4(e, cr3, apic_lin, 0xfee00000ull, 12, P | RW | XD, P | RW);
	map4(e, cr3, 0x20000000, 0xfee00000ull, 21, P | RW | XD, P | RW);

	/* Without a LAPIC the bus sees the access. */
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x30, 4, &v), 0);
	assert_int_equal(v, 0x5a5a5a5a);
	assert_int_equal(probe.reads, 1);

	cpu->lapic = l;
	emu_tlb_flush(cpu, true);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x30, 4, &v), 0);
	assert_int_equal(v, LAPIC_VERSION);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x20, 4, &v), 0);
	assert_int_equal(v, 0);  /* APIC ID 0 */
	/* TPR write and read back, through the 2 MiB alias too. */
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, apic_lin + 0x80, 4, 0x50), 0);
	assert_int_equal(lapic_read(l, LAPIC_REG_TPR), 0x50);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x20000080, 4, &v), 0);
	assert_int_equal(v, 0x50);
	/* Other sizes: reads 0, writes ignored. */
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x30, 2, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x30, 8, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, apic_lin + 0x80, 1, 0x20), 0);
	assert_int_equal(lapic_read(l, LAPIC_REG_TPR), 0x50);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, apic_lin + 0x82, 4, &v), 0);
	assert_int_equal(v, 0);  /* misaligned */
	assert_int_equal(probe.reads, 1);
	assert_int_equal(probe.writes, 0);

	/* Moved into RAM: the page shadows RAM, RAM is untouched; a
	 * hardware-disabled APIC gives the page back. */
	v = 0xabcdef;
	assert_int_equal(gm_write(e->gm, 0x1000080, &v, 4), 0);
	map4(e, cr3, 0x30000000, 0x1000000, 12, P | RW | XD, P | RW);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x30000080, 4, &v), 0);
	assert_int_equal(v, 0xabcdef);
	assert_int_equal(lapic_set_base(l, 0x1000000 | LAPIC_BASE_ENABLE |
					LAPIC_BASE_BSP), 0);
	emu_tlb_flush(cpu, true); /* WRMSR IA32_APIC_BASE flushes */
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x30000030, 4, &v), 0);
	assert_int_equal(v, LAPIC_VERSION);
	assert_int_equal(emu_mem_write(cpu, EMU_SEG_DS, 0x30000080, 4, 0x30), 0);
	assert_int_equal(gm_read(e->gm, 0x1000080, &v, 4), 0);
	assert_int_equal(v, 0xabcdef);
	/* A locked RMW on the LAPIC page gets no host pointer. */
	{
		void *hp = (void *)1;

		assert_int_equal(emu_mem_host_ptr(cpu, EMU_SEG_DS, 0x30000080,
						  4, &hp), 0);
		assert_null(hp);
	}
	assert_int_equal(lapic_set_base(l, 0x1000000 | LAPIC_BASE_BSP), 0);
	emu_tlb_flush(cpu, true);
	assert_int_equal(emu_mem_read(cpu, EMU_SEG_DS, 0x30000080, 4, &v), 0);
	assert_int_equal(v, 0xabcdef);
	cpu->lapic = NULL;
	lapic_bus_destroy(bus);
}

/* ---- speed ------------------------------------------------------------- */

static double run_loop(struct env *e, bool tlb, unsigned iters,
		       uint64_t *misses)
{
	struct emu_cpu *cpu = &e->cpu;
	uint64_t cr3 = setup_long(e);
	/* loop: mov [rsi], rax; mov rbx, [rsi]; add rax, 1; dec rcx; jnz */
	static const uint8_t loop[] = { 0x48, 0x89, 0x06, 0x48, 0x8b, 0x1e,
		0x48, 0x83, 0xc0, 0x01, 0x48, 0xff, 0xc9, 0x75, 0xf1 };
	struct timespec a, b;
	double ns;

	map4(e, cr3, 0xffffffff81000000ull, 0x3000000, 12, P, P | RW);
	map4(e, cr3, 0xffff888000000000ull, 0x3100000, 12, P | RW | XD, P | RW);
	assert_int_equal(gm_write(e->gm, 0x3000000, loop, sizeof(loop)), 0);
	cpu->rip = 0xffffffff81000000ull;
	cpu->gpr[EMU_RSI] = 0xffff888000000000ull;
	cpu->gpr[EMU_RCX] = iters;
	cpu->tlb.disabled = !tlb;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	while (cpu->gpr[EMU_RCX])
		assert_int_equal(emu_step(cpu), 0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	cpu->tlb.disabled = false;
	*misses = cpu->tlb.misses;
	ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
	return ns / (double)cpu->stats.insns;
}

static void test_speed(void **state)
{
	struct env *e = *state;
	uint64_t walk_misses, tlb_misses;
	double walk = run_loop(e, false, 200000, &walk_misses);
	double tlb = run_loop(e, true, 1000000, &tlb_misses);

	print_message("paged loop through emu_step: %.1f ns/insn walking every "
		      "access, %.1f ns/insn with the TLB (%.2fx); walks %llu "
		      "vs %llu\n", walk, tlb, walk / tlb,
		      (unsigned long long)walk_misses,
		      (unsigned long long)tlb_misses);
	/* Timing is only reported (shared hosts are noisy); the walk
	 * counts are what must hold: every access walks without the TLB,
	 * a handful with it (one per page: code and data). */
	assert_true(walk_misses >= 200000 * 5); /* >= 1 per insn */
	assert_true(tlb_misses <= 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_long_mode_pages),
		cmocka_unit_test(test_long_mode_faults),
		cmocka_unit_test(test_pae),
		cmocka_unit_test(test_paging32),
		cmocka_unit_test(test_tlb_invalidation),
		cmocka_unit_test(test_tlb_dirty),
		cmocka_unit_test(test_step_paged),
		cmocka_unit_test(test_hostile_tables),
		cmocka_unit_test(test_concurrent_ad),
		cmocka_unit_test(test_lapic_page),
		cmocka_unit_test(test_speed),
	};

	return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
