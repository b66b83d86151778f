/*
 * test_e820.c - the memory map, boot GDT and identity page tables
 * (src/arch/x86/boot.c).
 *
 * e820_build() is checked entry by entry for guests below, at and above
 * the MMIO hole.  The page tables are checked twice: raw entries (PML4,
 * PDPT and PD values with their flag bits) and by walking them like the
 * MMU does for a set of addresses, which must translate to themselves.
 * The GDT descriptors are decoded field by field (base, limit,
 * granularity, L/D bits) for both entry modes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "core/memory.h"

#define MiB (1024ull * 1024)
#define GiB (1024 * MiB)

static void expect_map(uint64_t ram, const struct e820_entry *want, int n)
{
	struct guest_mem gm;
	struct e820_entry got[E820_MAX_ENTRIES];

	assert_int_equal(gm_init(&gm, ram), 0);
	memset(got, 0x5a, sizeof(got));
	assert_int_equal(e820_build(&gm, got, E820_MAX_ENTRIES), n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(got[i].addr, want[i].addr);
		assert_int_equal(got[i].size, want[i].size);
		assert_int_equal(got[i].type, want[i].type);
	}
	/* Too small an array is refused, not overrun. */
	memset(got, 0x5a, sizeof(got));
	assert_int_equal(e820_build(&gm, got, n - 1), -ENOSPC);
	assert_int_equal(got[0].type, 0x5a5a5a5a);
	gm_destroy(&gm);
}

static void test_e820_128mib(void **state)
{
	const struct e820_entry want[] = {
		{ 0, 0x9fc00, E820_RAM },
		{ 0x9fc00, 0x100000 - 0x9fc00, E820_RESERVED },
		{ 0x100000, 128 * MiB - 0x100000, E820_RAM },
	};
	expect_map(128 * MiB, want, 3);
}

static void test_e820_3gib(void **state)
{
	/* Exactly fills low RAM up to the hole: no high entry. */
	const struct e820_entry want[] = {
		{ 0, 0x9fc00, E820_RAM },
		{ 0x9fc00, 0x60400, E820_RESERVED },
		{ 0x100000, 3 * GiB - 0x100000, E820_RAM },
	};
	expect_map(3 * GiB, want, 3);
}

static void test_e820_5gib(void **state)
{
	const struct e820_entry want[] = {
		{ 0, 0x9fc00, E820_RAM },
		{ 0x9fc00, 0x60400, E820_RESERVED },
		{ 0x100000, 3 * GiB - 0x100000, E820_RAM },
		{ 4 * GiB, 2 * GiB, E820_RAM },
	};
	expect_map(5 * GiB, want, 4);
}

static void test_e820_tiny(void **state)
{
	/* Less RAM than the EBDA start: RAM stops where RAM stops. */
	const struct e820_entry want[] = {
		{ 0, 512 * 1024, E820_RAM },
		{ 0x9fc00, 0x60400, E820_RESERVED },
	};
	expect_map(512 * 1024, want, 2);
}

static void test_e820_entries_sorted_and_disjoint(void **state)
{
	const uint64_t sizes[] = { 2 * MiB, 1 * GiB, 3 * GiB - 4096, 3 * GiB + 4096, 9 * GiB };

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct guest_mem gm;
		struct e820_entry e[E820_MAX_ENTRIES];
		uint64_t ram = 0;
		int n;

		assert_int_equal(gm_init(&gm, sizes[s]), 0);
		n = e820_build(&gm, e, E820_MAX_ENTRIES);
		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			assert_true(e[i].size > 0);
			if (i)
				assert_true(e[i].addr >= e[i - 1].addr + e[i - 1].size);
			if (e[i].type == E820_RAM) {
				ram += e[i].size;
				/* Every RAM byte the map promises is backed. */
				assert_non_null(gm_ptr(&gm, e[i].addr, e[i].size));
			}
		}
		/* The map promises all RAM except what the BIOS hole hides. */
		assert_int_equal(ram, sizes[s] - (0x100000 - 0x9fc00));
		gm_destroy(&gm);
	}
}

/* ---- page tables ---- */

#define PTE_P  0x1ull
#define PTE_RW 0x2ull
#define PTE_US 0x4ull
#define PTE_PS 0x80ull
#define ADDR_MASK 0x000ffffffffff000ull

static uint64_t rd64(struct guest_mem *gm, uint64_t gpa)
{
	uint64_t v;
	assert_int_equal(gm_read(gm, gpa, &v, 8), 0);
	return v;
}

/* A 4-level walk as the MMU does it; returns the physical address or
 * UINT64_MAX on a fault. */
static uint64_t walk(struct guest_mem *gm, uint64_t cr3, uint64_t va)
{
	uint64_t e = rd64(gm, (cr3 & ADDR_MASK) + ((va >> 39) & 511) * 8);
	if (!(e & PTE_P))
		return UINT64_MAX;
	e = rd64(gm, (e & ADDR_MASK) + ((va >> 30) & 511) * 8);
	if (!(e & PTE_P))
		return UINT64_MAX;
	if (e & PTE_PS)
		return (e & 0x000fffffc0000000ull) | (va & ((1ull << 30) - 1));
	e = rd64(gm, (e & ADDR_MASK) + ((va >> 21) & 511) * 8);
	if (!(e & PTE_P))
		return UINT64_MAX;
	if (e & PTE_PS)
		return (e & 0x000fffffffe00000ull) | (va & ((1ull << 21) - 1));
	e = rd64(gm, (e & ADDR_MASK) + ((va >> 12) & 511) * 8);
	if (!(e & PTE_P))
		return UINT64_MAX;
	return (e & ADDR_MASK) | (va & 0xfff);
}

static void test_page_tables_raw(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	/* Junk where the tables go: every entry must be rewritten. */
	memset(gm_ptr(&gm, 0x9000, 0x6000), 0xff, 0x6000);
	assert_int_equal(x86_boot_write_page_tables(&gm), 0);

	assert_int_equal(rd64(&gm, 0x9000), 0xa000 | PTE_P | PTE_RW);
	for (int i = 1; i < 512; i++)
		assert_int_equal(rd64(&gm, 0x9000 + i * 8), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(rd64(&gm, 0xa000 + i * 8),
				 (0xb000 + i * 0x1000) | PTE_P | PTE_RW);
	for (int i = 4; i < 512; i++)
		assert_int_equal(rd64(&gm, 0xa000 + i * 8), 0);
	for (uint64_t i = 0; i < 2048; i++)
		assert_int_equal(rd64(&gm, 0xb000 + i * 8),
				 (i << 21) | PTE_P | PTE_RW | PTE_PS);
	/* Nothing written past the last PD. */
	assert_int_equal(*(uint8_t *)gm_ptr(&gm, 0xf000, 1), 0);
	gm_destroy(&gm);
}

static void test_page_tables_identity(void **state)
{
	struct guest_mem gm;
	const uint64_t va[] = { 0, 0xfff, 0x1000, 0x7000, 0x100000, 0x1000200,
				0x1234567, 0x3fffffff, 0x40000000, 0xbfffffff,
				0xc0000000, 0xfec00000, 0xfee00020, 0xffffffff };

	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	assert_int_equal(x86_boot_write_page_tables(&gm), 0);
	for (size_t i = 0; i < sizeof(va) / sizeof(va[0]); i++)
		assert_int_equal(walk(&gm, BOOT_PML4, va[i]), va[i]);
	/* 4 GiB and up is not mapped. */
	assert_int_equal(walk(&gm, BOOT_PML4, 0x100000000ull), UINT64_MAX);
	assert_int_equal(walk(&gm, BOOT_PML4, 0x8000000000ull), UINT64_MAX);
	gm_destroy(&gm);
}

static void test_page_tables_need_ram(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 0xe000), 0); /* ends inside the PDs */
	assert_int_equal(x86_boot_write_page_tables(&gm), -EFAULT);
	gm_destroy(&gm);
}

/* ---- GDT ---- */

static uint32_t d_base(uint64_t d)
{
	return (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000));
}
static uint32_t d_limit(uint64_t d) { return (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000)); }
static unsigned d_access(uint64_t d) { return (d >> 40) & 0xff; }
static unsigned d_flags(uint64_t d) { return (d >> 52) & 0xf; } /* G D L AVL */

static void test_gdt_modes(void **state)
{
	uint64_t g64[BOOT_GDT_ENTRIES], g32[BOOT_GDT_ENTRIES];
	struct guest_mem gm;

	x86_boot_gdt_entries(X86_ENTRY_LONG64, g64);
	x86_boot_gdt_entries(X86_ENTRY_PROT32, g32);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(g64[i], 0);
		assert_int_equal(g32[i], 0);
	}
	/* Code at 0x10: flat, 4 KiB granular, present ring-0 exec/read. */
	assert_int_equal(d_base(g64[BOOT_SEL_CODE >> 3]), 0);
	assert_int_equal(d_limit(g64[BOOT_SEL_CODE >> 3]), 0xfffff);
	assert_int_equal(d_access(g64[BOOT_SEL_CODE >> 3]), 0x9b);
	assert_int_equal(d_flags(g64[BOOT_SEL_CODE >> 3]), 0x8 | 0x2); /* G, L; D=0 */
	assert_int_equal(d_flags(g32[BOOT_SEL_CODE >> 3]), 0x8 | 0x4); /* G, D; L=0 */
	assert_int_equal(d_access(g32[BOOT_SEL_CODE >> 3]), 0x9b);
	/* Data at 0x18: flat, writable, 32-bit, same in both modes. */
	assert_int_equal(g64[BOOT_SEL_DATA >> 3], g32[BOOT_SEL_DATA >> 3]);
	assert_int_equal(d_base(g64[BOOT_SEL_DATA >> 3]), 0);
	assert_int_equal(d_limit(g64[BOOT_SEL_DATA >> 3]), 0xfffff);
	assert_int_equal(d_access(g64[BOOT_SEL_DATA >> 3]), 0x93);
	assert_int_equal(d_flags(g64[BOOT_SEL_DATA >> 3]), 0xc);
	/* A busy 32-bit TSS for TR. */
	assert_int_equal(d_access(g64[BOOT_SEL_TSS >> 3]), 0x8b);
	assert_int_equal(d_limit(g64[BOOT_SEL_TSS >> 3]), 0x67);

	assert_int_equal(gm_init(&gm, 1 * MiB), 0);
	assert_int_equal(x86_boot_write_gdt_mode(&gm, X86_ENTRY_PROT32), 0);
	assert_memory_equal(gm_ptr(&gm, BOOT_GDT_ADDR, sizeof(g32)), g32, sizeof(g32));
	assert_int_equal(x86_boot_write_gdt(&gm), 0);
	assert_memory_equal(gm_ptr(&gm, BOOT_GDT_ADDR, sizeof(g64)), g64, sizeof(g64));
	gm_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_e820_128mib),
		cmocka_unit_test(test_e820_3gib),
		cmocka_unit_test(test_e820_5gib),
		cmocka_unit_test(test_e820_tiny),
		cmocka_unit_test(test_e820_entries_sorted_and_disjoint),
		cmocka_unit_test(test_page_tables_raw),
		cmocka_unit_test(test_page_tables_identity),
		cmocka_unit_test(test_page_tables_need_ram),
		cmocka_unit_test(test_gdt_modes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
