/*
 * test_emu_blocks.c - the software CPU's decoded-block cache (blocks.c).
 *
 * The CPU runs flat 32-bit protected code without paging (linear = guest
 * physical), placed in guest RAM by the test:
 *   - a loop runs from one cached block (hit counter, same result as
 *     emu_step() alone);
 *   - a guest store into a code page drops its blocks (the new code runs);
 *   - a store into the running block itself (self-modifying code) takes
 *     effect for the very next instruction;
 *   - a device write (gm_write -> gm_note_write) drops the blocks;
 *   - an instruction crossing a page boundary and one past the CS limit go
 *     through emu_step() with the architectural result (#GP for the limit);
 *   - two vCPUs (two caches) over one code map both see a write;
 *   - the code map's page index over RAM above 4 GiB and hostile lengths;
 *   - in 64-bit mode (identity-mapped 2 MiB pages; the threaded runner): a
 *     loop, self-modifying code, and RFLAGS exact at a fault and at the
 *     end of a block whatever the flag-liveness pass dropped, and a
 *     chained jump that follows its target to a new mapping; the address
 *     forms with handlers of their own (GS:[disp], base + index, RIP);
 *     CMP/TEST + Jcc fused, against emu_step(); a JMP followed inside
 *     its block.
 * Finally a tight loop is timed with and without the cache (printed, not
 * checked: the numbers go into the report).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "accel/emu/blocks.h"
#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "accel/emu/mmu.h"
#include "core/memory.h"

#define RAM (16ull << 20)

struct fixture {
	struct guest_mem mem;
	struct emu_code_map *map;
	struct emu_cpu cpu;
};

static void flat32(struct emu_cpu *c)
{
	for (int i = 0; i < EMU_NR_SEGS; i++) {
		struct emu_segment *s = &c->seg[i];

		s->sel = i == EMU_SEG_CS ? 0x10 : 0x18;
		s->base = 0;
		s->limit = 0xffffffffu;
		s->attr = (i == EMU_SEG_CS ? 0xb : 0x3) | EMU_SEG_ATTR_S |
			  EMU_SEG_ATTR_P | EMU_SEG_ATTR_DB | EMU_SEG_ATTR_G;
		s->unusable = false;
	}
	c->cr0 = 0x11; /* PE, ET */
	emu_cpu_update_mode(c);
}

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	assert_int_equal(gm_init(&f.mem, RAM), 0);
	assert_int_equal(emu_code_map_create(&f.mem, &f.map), 0);
	f.mem.write_notify = emu_code_map_gm_notify;
	f.mem.write_notify_opaque = f.map;
	emu_cpu_init(&f.cpu, &f.mem, NULL, NULL);
	flat32(&f.cpu);
	f.cpu.code = f.map;
	assert_int_equal(emu_blocks_create(f.map, &f.cpu.blocks), 0);
	f.cpu.gpr[EMU_RSP] = 0x8000;
	*state = &f;
	return 0;
}

/* 64-bit mode over identity-mapped 2 MiB pages, the last one of the
 * 16 MiB not present. */
#define PT_BASE 0x100000ull
#define UNMAPPED (RAM - (2ull << 20))

static int setup64(void **state)
{
	struct fixture *f;
	uint64_t *pml4, *pdpt, *pd;

	setup(state);
	f = *state;
	pml4 = gm_ptr(&f->mem, PT_BASE, 4096);
	pdpt = gm_ptr(&f->mem, PT_BASE + 0x1000, 4096);
	pd = gm_ptr(&f->mem, PT_BASE + 0x2000, 4096);
	pml4[0] = (PT_BASE + 0x1000) | 3;
	pdpt[0] = (PT_BASE + 0x2000) | 3;
	for (uint64_t i = 0; i < UNMAPPED >> 21; i++)
		pd[i] = (i << 21) | 0x83; /* P, RW, PS */
	emu_cpu_set_long_mode(&f->cpu, 0);
	f->cpu.cr3 = PT_BASE;
	f->cpu.gpr[EMU_RSP] = 0x8000;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	emu_blocks_destroy(f->cpu.blocks);
	emu_code_map_destroy(f->map);
	gm_destroy(&f->mem);
	return 0;
}

static void put(struct fixture *f, uint64_t gpa, const void *code, size_t n)
{
	/* Behind the cache's back: like the loader, before the CPU runs. */
	memcpy(gm_ptr(&f->mem, gpa, n), code, n);
}

/* Run until RIP == stop_at (a `jmp $` there), at most `max` insns. */
static int run_to(struct emu_cpu *c, uint64_t stop_at, unsigned max)
{
	unsigned total = 0, ran;
	int r;

	while (c->rip != stop_at && total < max) {
		r = emu_run_blocks(c, 100, &ran);
		if (r)
			return r;
		total += ran;
	}
	return c->rip == stop_at ? 0 : -ETIMEDOUT;
}

/* mov ecx, N; L: add eax, 1; dec ecx; jnz L; jmp $ */
static const uint8_t loop_code[] = {
	0xb9, 0x10, 0x27, 0x00, 0x00, /* 0: mov ecx, 10000 */
	0x83, 0xc0, 0x01,             /* 5: add eax, 1 */
	0x49,                         /* 8: dec ecx */
	0x75, 0xfa,                   /* 9: jnz 5 */
	0xeb, 0xfe,                   /* b: jmp $ */
};

static void test_loop_reuses_block(void **state)
{
	struct fixture *f = *state;
	const struct emu_block *b;

	put(f, 0x1000, loop_code, sizeof(loop_code));
	f->cpu.rip = 0x1000;
	f->cpu.gpr[EMU_RAX] = 0;
	assert_int_equal(run_to(&f->cpu, 0x100b, 100000), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 10000);
	assert_int_equal(f->cpu.gpr[EMU_RCX], 0);
	b = emu_blocks_find(f->cpu.blocks, &f->cpu, 0x1005);
	assert_non_null(b);
	assert_int_equal(b->n, 3); /* add, dec, jnz: ends at the branch */
	assert_true(b->hits >= 9998);
	assert_true(f->cpu.blocks->stats.builds <= 4);
	/* run_to() may spin on the final `jmp $` for the rest of a run. */
	assert_true(f->cpu.stats.insns >= 1 + 3 * 10000);
	assert_true(f->cpu.stats.insns <= 1 + 3 * 10000 + 100);
}

/* Store code at 0x3000 that patches the immediate of `mov eax, 1` at 0x2000. */
static void test_guest_write_invalidates(void **state)
{
	struct fixture *f = *state;
	static const uint8_t target[] = {
		0xb8, 0x01, 0x00, 0x00, 0x00, /* 2000: mov eax, 1 */
		0xeb, 0xfe,                   /* 2005: jmp $ */
	};
	static const uint8_t patch[] = {
		0xc6, 0x05, 0x01, 0x20, 0x00, 0x00, 0x02, /* mov byte [0x2001], 2 */
		0xeb, 0xfe,                               /* 3007: jmp $ */
	};
	uint64_t stale;

	put(f, 0x2000, target, sizeof(target));
	put(f, 0x3000, patch, sizeof(patch));
	f->cpu.rip = 0x2000;
	assert_int_equal(run_to(&f->cpu, 0x2005, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 1);
	assert_non_null(emu_blocks_find(f->cpu.blocks, &f->cpu, 0x2000));

	f->cpu.rip = 0x3000;
	assert_int_equal(run_to(&f->cpu, 0x3007, 10), 0);
	stale = f->cpu.blocks->stats.stale;
	f->cpu.rip = 0x2000;
	assert_int_equal(run_to(&f->cpu, 0x2005, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 2);
	/* Both blocks of the page (0x2000, the jmp at 0x2005) are stale. */
	assert_int_equal(f->cpu.blocks->stats.stale, stale + 2);
}

/* A store into the running block: the next instruction is the new one. */
static void test_self_modifying_block(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0xc6, 0x05, 0x08, 0x40, 0x00, 0x00, 0x05, /* 4000: mov byte [0x4008], 5 */
		0xb8, 0x01, 0x00, 0x00, 0x00,             /* 4007: mov eax, 1 */
		0xeb, 0xfe,                               /* 400c: jmp $ */
	};
	const struct emu_block *b;

	put(f, 0x4000, code, sizeof(code));
	f->cpu.rip = 0x4000;
	f->cpu.gpr[EMU_RAX] = 0;
	assert_int_equal(run_to(&f->cpu, 0x400c, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 5);
	assert_true(f->cpu.blocks->stats.smc_exits >= 1);
	/* The block at 0x4000 was decoded before the store: stale now. */
	b = emu_blocks_find(f->cpu.blocks, &f->cpu, 0x4000);
	assert_non_null(b);
	assert_int_not_equal(b->gen, atomic_load(&f->map->gen[b->page]));
}

/* A device (fw_cfg DMA, virtio) writes code: gm_write notifies. */
static void test_device_write_invalidates(void **state)
{
	struct fixture *f = *state;
	static const uint8_t target[] = {
		0xb8, 0x01, 0x00, 0x00, 0x00, /* 5000: mov eax, 1 */
		0xeb, 0xfe,                   /* 5005: jmp $ */
	};
	uint8_t three = 3;

	put(f, 0x5000, target, sizeof(target));
	f->cpu.rip = 0x5000;
	assert_int_equal(run_to(&f->cpu, 0x5005, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 1);
	assert_int_equal(gm_write(&f->mem, 0x5001, &three, 1), 0);
	f->cpu.rip = 0x5000;
	assert_int_equal(run_to(&f->cpu, 0x5005, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 3);

	/* And through a raw pointer plus gm_note_write(). */
	*(uint8_t *)gm_ptr(&f->mem, 0x5001, 1) = 4;
	gm_note_write(&f->mem, 0x5000, 0x1000);
	f->cpu.rip = 0x5000;
	assert_int_equal(run_to(&f->cpu, 0x5005, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 4);
}

/* An instruction crossing into the next page runs through emu_step(). */
static void test_page_crossing(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0x90,                         /* 6ffd: nop */
		0xb8, 0x78, 0x56, 0x34, 0x12, /* 6ffe: mov eax, 0x12345678 */
		0xeb, 0xfe,                   /* 7003: jmp $ */
	};
	uint64_t steps = f->cpu.blocks->stats.steps;

	put(f, 0x6ffd, code, sizeof(code));
	f->cpu.rip = 0x6ffd;
	assert_int_equal(run_to(&f->cpu, 0x7003, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 0x12345678);
	assert_true(f->cpu.blocks->stats.steps > steps);
}

/* A cached block must not run past a CS limit lowered after decoding. */
static void test_cs_limit(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0x90, 0x90, 0x90, 0x90,       /* 8000..8003 */
		0xeb, 0xfe,                   /* 8004: jmp $ */
	};
	unsigned ran;
	int r;

	put(f, 0x8000, code, sizeof(code));
	f->cpu.rip = 0x8000;
	assert_int_equal(run_to(&f->cpu, 0x8004, 10), 0);
	f->cpu.seg[EMU_SEG_CS].limit = 0x8001;
	f->cpu.rip = 0x8000;
	r = emu_run_blocks(&f->cpu, 10, &ran);
	assert_int_equal(r, EMU_EXC(EMU_VEC_GP));
	assert_int_equal(f->cpu.rip, 0x8002);
	assert_int_equal(ran, 2);
	f->cpu.seg[EMU_SEG_CS].limit = 0xffffffffu;
}

/* Two vCPUs, two caches, one map: a write by one drops the other's. */
static void test_two_caches(void **state)
{
	struct fixture *f = *state;
	struct emu_cpu c2;
	static const uint8_t target[] = {
		0xb8, 0x01, 0x00, 0x00, 0x00, /* 9000: mov eax, 1 */
		0xeb, 0xfe,
	};
	static const uint8_t patch[] = {
		0xc6, 0x05, 0x01, 0x90, 0x00, 0x00, 0x07, /* mov byte [0x9001], 7 */
		0xeb, 0xfe,                               /* a007 */
	};

	emu_cpu_init(&c2, &f->mem, NULL, NULL);
	flat32(&c2);
	c2.code = f->map;
	assert_int_equal(emu_blocks_create(f->map, &c2.blocks), 0);
	put(f, 0x9000, target, sizeof(target));
	put(f, 0xa000, patch, sizeof(patch));
	c2.rip = 0x9000;
	assert_int_equal(run_to(&c2, 0x9005, 10), 0);
	assert_int_equal(c2.gpr[EMU_RAX], 1);
	f->cpu.rip = 0xa000;
	assert_int_equal(run_to(&f->cpu, 0xa007, 10), 0);
	c2.rip = 0x9000;
	assert_int_equal(run_to(&c2, 0x9005, 10), 0);
	assert_int_equal(c2.gpr[EMU_RAX], 7);
	emu_blocks_destroy(c2.blocks);
}

/* The page index over two regions, and writes of hostile lengths. */
static void test_code_map_regions(void **state)
{
	struct guest_mem mem;
	struct emu_code_map *m;

	(void)state;
	assert_int_equal(gm_init(&mem, GM_HOLE_START + (8ull << 20)), 0);
	assert_int_equal(emu_code_map_create(&mem, &m), 0);
	assert_int_equal(m->nr_pages, (GM_HOLE_START + (8ull << 20)) >> 12);
	assert_int_equal(emu_code_page(m, 0), 0);
	assert_int_equal(emu_code_page(m, GM_HOLE_START - 1), (GM_HOLE_START >> 12) - 1);
	assert_int_equal(emu_code_page(m, GM_HOLE_START), -1);
	assert_int_equal(emu_code_page(m, 0xfee00000), -1);
	assert_int_equal(emu_code_page(m, GM_HIGH_START), GM_HOLE_START >> 12);
	assert_int_equal(emu_code_page(m, GM_HIGH_START + (8ull << 20)), -1);
	assert_int_equal(emu_code_page(m, UINT64_MAX), -1);

	atomic_store(&m->holds[GM_HOLE_START >> 12], 1);
	emu_code_map_note_write(m, GM_HIGH_START + 5, 1);
	assert_int_equal(atomic_load(&m->gen[GM_HOLE_START >> 12]), 1);
	assert_int_equal(atomic_load(&m->holds[GM_HOLE_START >> 12]), 0);
	/* A page without code: nothing changes. */
	emu_code_map_note_write(m, GM_HIGH_START + 5, 1);
	assert_int_equal(atomic_load(&m->gen[GM_HOLE_START >> 12]), 1);
	/* Huge and wrapping lengths finish and stay inside the map. */
	atomic_store(&m->holds[3], 1);
	emu_code_map_note_write(m, 0x2000, UINT64_MAX);
	assert_int_equal(atomic_load(&m->gen[3]), 1);
	emu_code_map_note_write(m, UINT64_MAX - 10, 100);
	emu_code_map_note_write(m, 0, 0);
	emu_code_map_invalidate(m, m->nr_pages + 5); /* ignored */
	emu_code_map_destroy(m);
	gm_destroy(&mem);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* mov ecx, N; L: add eax, 1; dec ecx; jnz L; jmp $ -- 64-bit encoding. */
static void test_long_loop(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0xb9, 0x10, 0x27, 0x00, 0x00, /* 0: mov ecx, 10000 */
		0x83, 0xc0, 0x01,             /* 5: add eax, 1 */
		0xff, 0xc9,                   /* 8: dec ecx */
		0x75, 0xf9,                   /* a: jnz 5 */
		0xeb, 0xfe,                   /* c: jmp $ */
	};
	const struct emu_block *b;

	put(f, 0x1000, code, sizeof(code));
	f->cpu.rip = 0x1000;
	assert_int_equal(run_to(&f->cpu, 0x100c, 100000), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 10000);
	assert_int_equal(f->cpu.gpr[EMU_RCX], 0);
	b = emu_blocks_find(f->cpu.blocks, &f->cpu, 0x1005);
	assert_non_null(b);
	assert_int_equal(b->n, 3);
	/* Entered from itself through its link, but for one lookup per
	 * run_to() batch of 100 instructions. */
	assert_true(f->cpu.blocks->stats.linked >= 9000);
	assert_true(f->cpu.stats.insns >= 1 + 3 * 10000);
	assert_true(f->cpu.stats.insns <= 1 + 3 * 10000 + 100);
	/* The last DEC set ZF, the ADD before it was dropped. */
	assert_true(emu_flags_get(&f->cpu) & EMU_FL_ZF);
}

/* A RIP-relative store into the running block's next instruction. */
static void test_long_self_modifying(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0xc6, 0x05, 0x01, 0x00, 0x00, 0x00, 0x05, /* 4000: mov byte [rip + 1], 5 */
		0xb8, 0x01, 0x00, 0x00, 0x00,             /* 4007: mov eax, 1 */
		0xeb, 0xfe,                               /* 400c: jmp $ */
	};
	uint64_t smc = f->cpu.blocks->stats.smc_exits;

	/* Twice: the second store hits the TLB (the exec_fast.c path). */
	for (int i = 0; i < 2; i++) {
		put(f, 0x4000, code, sizeof(code));
		gm_note_write(&f->mem, 0x4000, sizeof(code));
		f->cpu.rip = 0x4000;
		f->cpu.gpr[EMU_RAX] = 0;
		assert_int_equal(run_to(&f->cpu, 0x400c, 10), 0);
		assert_int_equal(f->cpu.gpr[EMU_RAX], 5);
		assert_true(f->cpu.blocks->stats.smc_exits > smc);
		smc = f->cpu.blocks->stats.smc_exits;
	}
}

/* Flags whose producer the liveness pass would drop if nothing could look
 * at them: a faulting load sees the CMP's flags, a block's end sees the
 * last writer's, and a rotate's CF feeds ADC. */
static void test_long_flags_liveness(void **state)
{
	struct fixture *f = *state;
	static const uint8_t fault[] = {
		0x48, 0x39, 0xd8,             /* 5000: cmp rax, rbx */
		0x48, 0x8b, 0x0a,             /* 5003: mov rcx, [rdx] (#PF) */
		0x31, 0xc0,                   /* 5006: xor eax, eax */
		0xeb, 0xfe,                   /* 5008: jmp $ */
	};
	static const uint8_t chain[] = {
		0x48, 0x01, 0xd8,             /* 6000: add rax, rbx */
		0xc1, 0xc0, 0x01,             /* 6003: rol eax, 1 */
		0x48, 0x83, 0xd1, 0x00,       /* 6006: adc rcx, 0 */
		0x83, 0xc2, 0x01,             /* 600a: add edx, 1 */
		0x83, 0xc2, 0x01,             /* 600d: add edx, 1 */
		0x83, 0xfa, 0x05,             /* 6010: cmp edx, 5 */
		0xeb, 0xfe,                   /* 6013: jmp $ */
	};
	unsigned ran;
	uint64_t fl;

	put(f, 0x5000, fault, sizeof(fault));
	f->cpu.rip = 0x5000;
	f->cpu.gpr[EMU_RAX] = 1;
	f->cpu.gpr[EMU_RBX] = 2;
	f->cpu.gpr[EMU_RDX] = UNMAPPED + 8;
	assert_int_equal(emu_run_blocks(&f->cpu, 10, &ran),
			 EMU_EXC(EMU_VEC_PF));
	assert_int_equal(f->cpu.rip, 0x5003);
	assert_int_equal(ran, 1);
	fl = emu_flags_get(&f->cpu);
	assert_true(fl & EMU_FL_CF);  /* 1 - 2 borrows */
	assert_true(fl & EMU_FL_SF);
	assert_false(fl & EMU_FL_ZF);

	put(f, 0x6000, chain, sizeof(chain));
	f->cpu.rip = 0x6000;
	f->cpu.gpr[EMU_RAX] = 0x80000000u;
	f->cpu.gpr[EMU_RBX] = 0;
	f->cpu.gpr[EMU_RCX] = 10;
	f->cpu.gpr[EMU_RDX] = 3;
	assert_int_equal(run_to(&f->cpu, 0x6013, 20), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 1);  /* rol moved bit 31 to 0 */
	assert_int_equal(f->cpu.gpr[EMU_RCX], 11); /* ... and into CF */
	assert_int_equal(f->cpu.gpr[EMU_RDX], 5);
	fl = emu_flags_get(&f->cpu);
	assert_true(fl & EMU_FL_ZF);                /* cmp edx, 5 */
	assert_false(fl & EMU_FL_CF);
}

/* FS:/GS:[disp], [base + index * scale + disp] and [rip + disp]: each has
 * handlers of its own (exec_fast.c, TH_MEM). */
static void test_long_address_kinds(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0x65, 0x48, 0x8b, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00, /* 7000: mov rax, gs:[0x10] */
		0x65, 0x48, 0x83, 0x04, 0x25, 0x18, 0x00, 0x00, 0x00, 0x05, /* add qword gs:[0x18], 5 */
		0x48, 0x8b, 0x4c, 0xde, 0x08,             /* mov rcx, [rsi + rbx*8 + 8] */
		0x48, 0x03, 0x15, 0xf1, 0x0f, 0x00, 0x00, /* 7018: add rdx, [rip + 0xff1] (0x8010) */
		0xeb, 0xfe,                               /* 701f: jmp $ */
	};
	uint64_t v = 0x1122334455667788ull, w = 40, x = 0xabcdef, y = 7, z;

	put(f, 0x7000, code, sizeof(code));
	put(f, 0x9010, &v, 8);
	put(f, 0xa000 + 3 * 8 + 8, &x, 8);
	put(f, 0x8010, &y, 8);
	f->cpu.seg[EMU_SEG_GS].base = 0x9000;
	f->cpu.gpr[EMU_RSI] = 0xa000;
	f->cpu.gpr[EMU_RBX] = 3;
	/* Twice: the first run fills the TLB through the generic path. */
	for (int i = 0; i < 2; i++) {
		put(f, 0x9018, &w, 8);
		f->cpu.gpr[EMU_RAX] = f->cpu.gpr[EMU_RCX] = 0;
		f->cpu.gpr[EMU_RDX] = 100;
		f->cpu.rip = 0x7000;
		assert_int_equal(run_to(&f->cpu, 0x701f, 10), 0);
		assert_int_equal(f->cpu.gpr[EMU_RAX], v);
		memcpy(&z, gm_ptr(&f->mem, 0x9018, 8), 8);
		assert_int_equal(z, 45);
		assert_int_equal(f->cpu.gpr[EMU_RCX], x);
		assert_int_equal(f->cpu.gpr[EMU_RDX], 107);
	}
}

/* A chained jump must follow a new translation of its target: the link
 * from the block at 0x1000 to the one at 0x400000 dies when that 2 MiB
 * page is mapped elsewhere (the load refills the TLB entry first, so the
 * link sees the new page there, not just an empty slot). */
static void test_long_link_remap(void **state)
{
	struct fixture *f = *state;
	static const uint8_t jump[] = {
		0x8b, 0x0c, 0x25, 0x00, 0x00, 0x40, 0x00, /* 1000: mov ecx, [0x400000] */
		0xe9, 0xf4, 0xef, 0x3f, 0x00,             /* 1007: jmp 0x400000 */
	};
	uint8_t one[] = { 0xb8, 0x01, 0x00, 0x00, 0x00, 0xeb, 0xfe }; /* mov eax, 1; jmp $ */
	uint64_t *pd = gm_ptr(&f->mem, PT_BASE + 0x2000, 4096);

	put(f, 0x1000, jump, sizeof(jump));
	put(f, 0x400000, one, sizeof(one));
	one[1] = 2;
	put(f, 0x600000, one, sizeof(one));
	for (int i = 0; i < 2; i++) {
		f->cpu.rip = 0x1000;
		f->cpu.gpr[EMU_RAX] = 0;
		assert_int_equal(run_to(&f->cpu, 0x400005, 100), 0);
		assert_int_equal(f->cpu.gpr[EMU_RAX], 1);
	}
	assert_true(f->cpu.blocks->stats.linked > 0);
	pd[2] = 0x600000 | 0x83;
	emu_tlb_flush(&f->cpu, true);
	f->cpu.rip = 0x1000;
	assert_int_equal(run_to(&f->cpu, 0x400005, 100), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 2);
}

/* A JMP within the page does not end a 64-bit block: decoding follows
 * it, and the skipped bytes never run. */
static void test_long_followed_jump(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0xb8, 0x01, 0x00, 0x00, 0x00, /* 3000: mov eax, 1 */
		0xeb, 0x05,                   /* 3005: jmp 300c */
		0xb8, 0x02, 0x00, 0x00, 0x00, /* 3007: mov eax, 2 */
		0x83, 0xc0, 0x03,             /* 300c: add eax, 3 */
		0xe9, 0xec, 0x1f, 0x00, 0x00, /* 300f: jmp 5000 (another page) */
	};
	static const uint8_t stop[] = { 0xeb, 0xfe }; /* 5000: jmp $ */
	const struct emu_block *b;

	put(f, 0x3000, code, sizeof(code));
	put(f, 0x5000, stop, sizeof(stop));
	f->cpu.rip = 0x3000;
	assert_int_equal(run_to(&f->cpu, 0x5000, 10), 0);
	assert_int_equal(f->cpu.gpr[EMU_RAX], 4);
	b = emu_blocks_find(f->cpu.blocks, &f->cpu, 0x3000);
	assert_non_null(b);
	assert_int_equal(b->n, 4); /* mov, jmp (followed), add, jmp */
}

/* CMP/TEST + Jcc at a block's end run as one handler (exec_fast.c): for
 * every condition, register and immediate forms and edge values, the
 * branch and the flags must be what emu_step() gives. */
static void test_long_fused_cmp_jcc(void **state)
{
	struct fixture *f = *state;
	static const uint8_t ops[4][5] = {
		{ 0x48, 0x39, 0xd8 },             /* cmp rax, rbx */
		{ 0x3d, 0x00, 0x00, 0x00, 0x80 }, /* cmp eax, 0x80000000 */
		{ 0x48, 0x85, 0xd8 },             /* test rax, rbx */
		{ 0xa9, 0x01, 0x00, 0x00, 0x80 }, /* test eax, 0x80000001 */
	};
	static const unsigned op_len[4] = { 3, 5, 3, 5 };
	static const uint64_t vals[] = {
		0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x80000001,
		0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull,
	};
	const size_t nv = sizeof(vals) / sizeof(vals[0]);
	unsigned long cases = 0;

	for (unsigned op = 0; op < 4; op++)
		for (unsigned cc = 0; cc < 16; cc++) {
			uint64_t at = 0x10000 + (op * 16 + cc) * 0x20, stop;
			uint8_t code[0x20];
			unsigned n = op_len[op];

			memcpy(code, ops[op], n);
			code[n++] = 0x0f;
			code[n++] = (uint8_t)(0x80 + cc);
			memcpy(code + n, "\x05\x00\x00\x00", 4); /* jcc +5 */
			n += 4;
			memcpy(code + n, "\xb9\x01\x00\x00\x00", 5); /* mov ecx, 1 */
			n += 5;
			stop = at + n;
			code[n++] = 0xeb;
			code[n++] = 0xfe; /* jmp $ */
			put(f, at, code, n);
			for (size_t i = 0; i < nv; i++)
				for (size_t j = 0; j < nv; j++) {
				uint64_t want_rcx, want_fl;

				for (int way = 0; way < 2; way++) {
					f->cpu.gpr[EMU_RAX] = vals[i];
					f->cpu.gpr[EMU_RBX] = vals[j];
					f->cpu.gpr[EMU_RCX] = 0;
					f->cpu.rip = at;
					if (way == 0) {
						while (f->cpu.rip != stop)
							assert_int_equal(emu_step(&f->cpu), 0);
						want_rcx = f->cpu.gpr[EMU_RCX];
						want_fl = emu_flags_get(&f->cpu);
						continue;
					}
					assert_int_equal(run_to(&f->cpu, stop, 10), 0);
					assert_int_equal(f->cpu.gpr[EMU_RCX], want_rcx);
					assert_int_equal(emu_flags_get(&f->cpu), want_fl);
					cases++;
				}
			}
		}
	printf("# fused CMP/TEST + Jcc: %lu cases\n", cases);
}

/* Instructions per second on the loop, with and without the cache. */
static void test_speed(void **state)
{
	struct fixture *f = *state;
	static const uint8_t code[] = {
		0xb9, 0x40, 0x42, 0x0f, 0x00, /* mov ecx, 1000000 */
		0x83, 0xc0, 0x01,             /* L: add eax, 1 */
		0x31, 0xd3,                   /* xor ebx, edx */
		0x8d, 0x14, 0x40,             /* lea edx, [eax + eax*2] */
		0x49,                         /* dec ecx */
		0x75, 0xf5,                   /* jnz L */
		0xeb, 0xfe,                   /* jmp $ */
	};
	uint64_t end = 0xb000 + sizeof(code) - 2, insns;
	double t, cached, stepped;

	put(f, 0xb000, code, sizeof(code));
	f->cpu.rip = 0xb000;
	insns = f->cpu.stats.insns;
	t = now();
	assert_int_equal(run_to(&f->cpu, end, 100000000), 0);
	cached = (f->cpu.stats.insns - insns) / (now() - t);

	f->cpu.rip = 0xb000;
	insns = f->cpu.stats.insns;
	t = now();
	while (f->cpu.rip != end)
		assert_int_equal(emu_step(&f->cpu), 0);
	stepped = (f->cpu.stats.insns - insns) / (now() - t);
	printf("# tight loop: %.1f M insns/s with the block cache, "
	       "%.1f M insns/s with emu_step() alone (x%.1f)\n",
	       cached / 1e6, stepped / 1e6, cached / stepped);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_loop_reuses_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guest_write_invalidates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_modifying_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_write_invalidates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_crossing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cs_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_caches, setup, teardown),
		cmocka_unit_test(test_code_map_regions),
		cmocka_unit_test_setup_teardown(test_long_loop, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_self_modifying, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_flags_liveness, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_link_remap, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_address_kinds, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_fused_cmp_jcc, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_long_followed_jump, setup64, teardown),
		cmocka_unit_test_setup_teardown(test_speed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
