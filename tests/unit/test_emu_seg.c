/*
 * test_emu_seg.c - the software CPU's event delivery (exceptions.c) and
 * segmentation / control transfer (exec_segment.c), against the SDM.
 *
 * Each test builds the system tables a kernel would -- a GDT laid out like
 * 64-bit Linux's (kernel CS 0x10, DS 0x18, user32 CS 0x23, user DS 0x2b,
 * user CS 0x33, TSS 0x40, a per-CPU segment 0x53 for LSL), an IDT, a TSS --
 * in guest RAM, puts the CPU in the mode under test and either calls
 * emu_deliver() or runs instructions with emu_step().  Frames are checked
 * word by word in guest memory; selectors, RSP, RIP, RFLAGS and the mode
 * after each transfer.  The hostile cases point the tables outside RAM or
 * past their limits and check for an architectural answer (#GP, #DF,
 * shutdown), never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "core/memory.h"

#define RAM      (16ull << 20)
#define GDT      0x1000ull
#define IDT      0x2000ull
#define TSS64    0x3000ull
#define TSS32    0x3800ull
#define IDT32    0x4000ull
#define CODE     0x5000ull
#define DATA     0x6000ull
#define USTACK   0x7000ull
#define KSTACK   0x9000ull
#define ISTACK   0xa000ull
#define HANDLER  0x10000ull   /* handler of vector v at HANDLER + v * 16 */
#define PML4     0x100000ull  /* identity page tables for 0-16 MiB */
#define HOLE_LIN (16ull << 20) /* 2 MiB page mapped outside RAM */
#define HOLE_PHYS 0xff00000000ull

#define K32_CS  0x08
#define K_CS    0x10
#define K_DS    0x18
#define U32_CS  0x23
#define U_DS    0x2b
#define U_CS    0x33
#define NP_DS   0x38
#define TSS_SEL 0x40
#define PCPU    0x53
#define TSS32_SEL 0x58

struct env {
	struct guest_mem gm;
	struct emu_cpu cpu;
};

static void w64(struct env *e, uint64_t gpa, uint64_t v)
{
	assert_int_equal(gm_write(&e->gm, gpa, &v, 8), 0);
}

static uint64_t r64(struct env *e, uint64_t gpa)
{
	uint64_t v = 0;

	assert_int_equal(gm_read(&e->gm, gpa, &v, 8), 0);
	return v;
}

static uint32_t r32(struct env *e, uint64_t gpa)
{
	uint32_t v = 0;

	assert_int_equal(gm_read(&e->gm, gpa, &v, 4), 0);
	return v;
}

static uint16_t r16(struct env *e, uint64_t gpa)
{
	uint16_t v = 0;

	assert_int_equal(gm_read(&e->gm, gpa, &v, 2), 0);
	return v;
}

static void code(struct env *e, uint64_t gpa, const void *b, size_t n)
{
	assert_int_equal(gm_write(&e->gm, gpa, b, n), 0);
}

/* A system descriptor's low 8 bytes: base (32 bits), limit, type, P. */
static uint64_t sysdesc(uint32_t base, uint32_t limit, unsigned type)
{
	return (limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) |
	       ((uint64_t)(type | 0x80) << 40) |
	       ((uint64_t)((limit >> 16) & 0xf) << 48) |
	       ((uint64_t)(base >> 24) << 56);
}

static void gate64(struct env *e, unsigned vec, uint16_t sel, uint64_t off,
		   unsigned ist, unsigned type, unsigned dpl)
{
	uint64_t lo = (off & 0xffff) | ((uint64_t)sel << 16) |
		      ((uint64_t)ist << 32) |
		      ((uint64_t)(type | (dpl << 5) | 0x80) << 40) |
		      (((off >> 16) & 0xffff) << 48);

	w64(e, IDT + vec * 16, lo);
	w64(e, IDT + vec * 16 + 8, off >> 32);
}

static void gate32(struct env *e, unsigned vec, uint16_t sel, uint32_t off,
		   unsigned type, unsigned dpl)
{
	uint64_t g = (off & 0xffff) | ((uint64_t)sel << 16) |
		     ((uint64_t)(type | (dpl << 5) | 0x80) << 40) |
		     ((uint64_t)(off >> 16) << 48);

	w64(e, IDT32 + vec * 8, g);
}

static void write_gdt(struct env *e)
{
	w64(e, GDT + 0x00, 0);
	w64(e, GDT + 0x08, 0x00cf9b000000ffffull); /* kernel 32-bit code */
	w64(e, GDT + 0x10, 0x00af9b000000ffffull); /* kernel 64-bit code */
	w64(e, GDT + 0x18, 0x00cf93000000ffffull); /* kernel data */
	w64(e, GDT + 0x20, 0x00cffb000000ffffull); /* user 32-bit code */
	w64(e, GDT + 0x28, 0x00cff3000000ffffull); /* user data */
	w64(e, GDT + 0x30, 0x00affb000000ffffull); /* user 64-bit code */
	w64(e, GDT + 0x38, 0x00cf13000000ffffull); /* data, not present */
	w64(e, GDT + 0x40, sysdesc((uint32_t)TSS64, 0x67, 0x9));
	w64(e, GDT + 0x48, 0);                     /* TSS base 63:32 */
	w64(e, GDT + 0x50, 0x0040f30000001234ull); /* per-CPU, limit 0x1234 */
	w64(e, GDT + 0x58, sysdesc((uint32_t)TSS32, 0x67, 0x9));
	e->cpu.gdtr.base = GDT;
	e->cpu.gdtr.limit = 0x5f;
}

/* Flat 64-bit kernel state with the Linux-like tables. */
static void setup_long(struct env *e)
{
	struct emu_cpu *cpu = &e->cpu;

	emu_cpu_init(cpu, &e->gm, NULL, NULL);
	emu_cpu_set_long_mode(cpu, CODE);
	/* Identity map 0-16 MiB with 2 MiB user pages, plus HOLE_LIN. */
	w64(e, PML4, (PML4 + 0x1000) | 7);
	w64(e, PML4 + 0x1000, (PML4 + 0x2000) | 7);
	for (uint64_t i = 0; i < 8; i++)
		w64(e, PML4 + 0x2000 + i * 8, (i << 21) | 0x87);
	w64(e, PML4 + 0x2000 + 8 * 8, HOLE_PHYS | 0x87);
	cpu->cr3 = PML4;
	write_gdt(e);
	for (unsigned v = 0; v < 256; v++)
		gate64(e, v, K_CS, HANDLER + v * 16, 0, 0xe, v >= 0x80 ? 3 : 0);
	cpu->idtr.base = IDT;
	cpu->idtr.limit = 0xfff;
	w64(e, TSS64 + 4, KSTACK);      /* RSP0 */
	w64(e, TSS64 + 0x24, ISTACK);   /* IST1 */
	cpu->tr.sel = TSS_SEL;
	cpu->tr.base = TSS64;
	cpu->tr.limit = 0x67;
	cpu->tr.attr = 0x8b;
	cpu->tr.unusable = false;
	cpu->gpr[EMU_RSP] = KSTACK - 0x800;
	emu_flags_set(cpu, EMU_FL_FIXED | EMU_FL_IF);
}

/* Switch a long-mode CPU to user mode: CS 0x33 (or 0x23), SS/DS 0x2b. */
static void to_user(struct env *e, bool compat)
{
	struct emu_cpu *cpu = &e->cpu;

	cpu->seg[EMU_SEG_CS].sel = compat ? U32_CS : U_CS;
	cpu->seg[EMU_SEG_CS].attr = compat ? 0xc0fb : 0xa0fb;
	for (int s = 0; s < EMU_NR_SEGS; s++) {
		if (s == EMU_SEG_CS)
			continue;
		cpu->seg[s].sel = U_DS;
		cpu->seg[s].attr = 0xc0f3;
	}
	emu_cpu_update_mode(cpu);
	assert_int_equal(cpu->cpl, 3);
}

static int setup(void **state)
{
	struct env *e = test_calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(gm_init(&e->gm, RAM), 0);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	gm_destroy(&e->gm);
	test_free(e);
	return 0;
}

/* ---- long-mode delivery ---------------------------------------------- */

static void test_long_gp_frame(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t sp;

	setup_long(e);
	cpu->gpr[EMU_RSP] = 0x8008; /* not 16-aligned: aligned down */
	assert_int_equal(emu_deliver(cpu, EMU_VEC_GP, EMU_EVENT_EXCEPTION,
				     true, 0x1234), 0);
	sp = 0x8000 - 48;
	assert_int_equal(cpu->rip, HANDLER + 13 * 16);
	assert_int_equal(cpu->gpr[EMU_RSP], sp);
	assert_int_equal(r64(e, sp + 0), 0x1234);        /* error code */
	assert_int_equal(r64(e, sp + 8), CODE);          /* RIP */
	assert_int_equal(r64(e, sp + 16), K_CS);         /* CS */
	assert_int_equal(r64(e, sp + 24), EMU_FL_FIXED | EMU_FL_IF);
	assert_int_equal(r64(e, sp + 32), 0x8008);       /* old RSP */
	assert_int_equal(r64(e, sp + 40), K_DS);         /* old SS */
	assert_false(emu_flags_get(cpu) & EMU_FL_IF);    /* interrupt gate */
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, K_CS);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
}

static void test_long_trap_gate_keeps_if(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	gate64(e, 0x30, K_CS, HANDLER, 0, 0xf, 0);
	emu_flags_set(cpu, EMU_FL_FIXED | EMU_FL_IF | EMU_FL_TF);
	assert_int_equal(emu_deliver(cpu, 0x30, EMU_EVENT_EXTINT, false, 0),
			 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_IF);
	assert_false(emu_flags_get(cpu) & EMU_FL_TF);
}

static void test_long_pf_cr2(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t sp;

	setup_long(e);
	cpu->exc.cr2 = 0xdeadb000;
	assert_int_equal(emu_deliver(cpu, EMU_VEC_PF, EMU_EVENT_EXCEPTION,
				     true, EMU_PF_W), 0);
	sp = cpu->gpr[EMU_RSP];
	assert_int_equal(cpu->cr2, 0xdeadb000);
	assert_int_equal(r64(e, sp), EMU_PF_W);
	assert_int_equal(cpu->rip, HANDLER + 14 * 16);
}

static void test_long_ist_nmi(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	gate64(e, EMU_VEC_NMI, K_CS, HANDLER + 0x20, 1, 0xe, 0);
	w64(e, TSS64 + 0x24, ISTACK + 8); /* aligned down to ISTACK */
	assert_int_equal(emu_deliver(cpu, EMU_VEC_NMI, EMU_EVENT_NMI, false,
				     0), 0);
	assert_int_equal(cpu->gpr[EMU_RSP], ISTACK - 40);
	assert_int_equal(r64(e, ISTACK - 40), CODE);
	assert_int_equal(r64(e, ISTACK - 8), K_DS);
	assert_int_equal(r64(e, ISTACK - 16), KSTACK - 0x800);
	assert_true(cpu->nmi_blocked);
	assert_int_equal(cpu->rip, HANDLER + 0x20);
}

/* Ring 3 -> 0 through INT 0x80 (DPL 3 gate) and IRETQ back. */
static void test_long_user_int_iretq(void **state)
{
	static const uint8_t int80[] = { 0xcd, 0x80 };
	static const uint8_t iretq[] = { 0x48, 0xcf };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t sp = KSTACK - 40;

	setup_long(e);
	to_user(e, false);
	cpu->gpr[EMU_RSP] = USTACK + 8;
	code(e, CODE, int80, sizeof(int80));
	code(e, HANDLER + 0x80 * 16, iretq, sizeof(iretq));
	emu_flags_set(cpu, EMU_FL_FIXED | EMU_FL_IF | EMU_FL_CF);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 0);
	assert_int_equal(cpu->rip, HANDLER + 0x80 * 16);
	assert_int_equal(cpu->gpr[EMU_RSP], sp);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, 0); /* null, RPL 0 */
	assert_int_equal(r64(e, sp + 0), CODE + 2);
	assert_int_equal(r64(e, sp + 8), U_CS);
	assert_int_equal(r64(e, sp + 24), USTACK + 8);
	assert_int_equal(r64(e, sp + 32), U_DS);
	cpu->nmi_blocked = true;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
	assert_int_equal(cpu->rip, CODE + 2);
	assert_int_equal(cpu->gpr[EMU_RSP], USTACK + 8);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, U_DS);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, U_CS);
	assert_true(emu_flags_get(cpu) & EMU_FL_IF);
	assert_true(emu_flags_get(cpu) & EMU_FL_CF);
	assert_false(cpu->nmi_blocked);
}

/* INT n to a DPL-0 gate from ring 3: #GP(vector * 8 + 2), RIP at INT. */
static void test_int_gate_dpl(void **state)
{
	static const uint8_t int0d[] = { 0xcd, 0x0d };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	to_user(e, false);
	cpu->gpr[EMU_RSP] = USTACK;
	code(e, CODE, int0d, sizeof(int0d));
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->exc.error_code, 0x0d * 8 + 2);
	assert_int_equal(cpu->rip, CODE);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(emu_deliver(cpu, EMU_VEC_GP, EMU_EVENT_EXCEPTION,
				     true, cpu->exc.error_code), 0);
	assert_int_equal(r64(e, KSTACK - 48), 0x0d * 8 + 2);
	assert_int_equal(r64(e, KSTACK - 40), CODE);
}

static void test_int3_frame(void **state)
{
	static const uint8_t int3[] = { 0xcc };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	code(e, CODE, int3, sizeof(int3));
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->rip, HANDLER + 3 * 16);
	assert_int_equal(r64(e, cpu->gpr[EMU_RSP]), CODE + 1); /* a trap */
}

/* ---- escalation ------------------------------------------------------- */

/* #NP whose gate is broken -> #GP -> #DF (error code 0). */
static void test_double_fault(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	w64(e, IDT + 11 * 16, 0); /* not a gate: #GP(11 * 8 + 2 + 1) */
	assert_int_equal(emu_deliver(cpu, EMU_VEC_NP, EMU_EVENT_EXCEPTION,
				     true, 0x38), 0);
	assert_int_equal(cpu->rip, HANDLER + 8 * 16);
	assert_int_equal(r64(e, cpu->gpr[EMU_RSP]), 0);
	assert_int_equal(r64(e, cpu->gpr[EMU_RSP] + 8), CODE);
}

/* A contributory exception while delivering a benign one is delivered
 * serially (no #DF): an NMI with a not-present gate gives #NP. */
static void test_benign_then_np(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	w64(e, IDT + 2 * 16, r64(e, IDT + 2 * 16) & ~(1ull << 47));
	assert_int_equal(emu_deliver(cpu, EMU_VEC_NMI, EMU_EVENT_NMI, false,
				     0), 0);
	assert_int_equal(cpu->rip, HANDLER + 11 * 16);
	assert_int_equal(r64(e, cpu->gpr[EMU_RSP]), 2 * 8 + 2 + 1);
	assert_false(cpu->nmi_blocked);
}

/* #PF while pushing the #PF frame -> #DF, delivered on IST1. */
static void test_pf_pf_double_fault_ist(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	gate64(e, EMU_VEC_DF, K_CS, HANDLER + 8 * 16, 1, 0xe, 0);
	cpu->gpr[EMU_RSP] = 1ull << 45; /* canonical, beyond MAXPHYADDR */
	cpu->exc.cr2 = 0x1000000000ull;
	assert_int_equal(emu_deliver(cpu, EMU_VEC_PF, EMU_EVENT_EXCEPTION,
				     true, 0), 0);
	assert_int_equal(cpu->rip, HANDLER + 8 * 16);
	assert_int_equal(cpu->gpr[EMU_RSP], ISTACK - 48);
	/* CR2 holds the second fault's address (the stack push). */
	assert_true(cpu->cr2 >= (1ull << 45) - 48 && cpu->cr2 < (1ull << 45));
}

static void test_triple_fault(void **state)
{
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	struct emu_cpu before;

	setup_long(e);
	cpu->idtr.limit = 0;
	before = *cpu;
	assert_int_equal(emu_deliver(cpu, EMU_VEC_GP, EMU_EVENT_EXCEPTION,
				     true, 0), EMU_SHUTDOWN);
	assert_int_equal(cpu->rip, before.rip);
	assert_int_equal(cpu->gpr[EMU_RSP], before.gpr[EMU_RSP]);
}

/* ---- real and protected mode ------------------------------------------ */

static void test_real_int_iret(void **state)
{
	static const uint8_t int10[] = { 0xcd, 0x10 };
	static const uint8_t iret[] = { 0xcf };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint32_t ivt = (0x1234u << 16) | 0x0100;

	emu_cpu_init(cpu, &e->gm, NULL, NULL);
	cpu->seg[EMU_SEG_CS].sel = 0;
	cpu->seg[EMU_SEG_CS].base = 0;
	cpu->rip = 0x7c00;
	cpu->gpr[EMU_RSP] = 0x7000;
	cpu->idtr.base = 0;
	cpu->idtr.limit = 0x3ff;
	emu_flags_set(cpu, EMU_FL_FIXED | EMU_FL_IF | EMU_FL_ZF);
	assert_int_equal(gm_write(&e->gm, 0x10 * 4, &ivt, 4), 0);
	code(e, 0x7c00, int10, sizeof(int10));
	code(e, 0x12340 + 0x100, iret, sizeof(iret));
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, 0x1234);
	assert_int_equal(cpu->seg[EMU_SEG_CS].base, 0x12340);
	assert_int_equal(cpu->rip, 0x100);
	assert_int_equal(cpu->gpr[EMU_RSP], 0x6ffa);
	assert_int_equal(r16(e, 0x6ffa), 0x7c02);
	assert_int_equal(r16(e, 0x6ffc), 0);
	assert_int_equal(r16(e, 0x6ffe), EMU_FL_FIXED | EMU_FL_IF | EMU_FL_ZF);
	assert_false(emu_flags_get(cpu) & EMU_FL_IF);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->rip, 0x7c02);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, 0);
	assert_int_equal(cpu->gpr[EMU_RSP], 0x7000);
	assert_true(emu_flags_get(cpu) & EMU_FL_IF);
	assert_true(emu_flags_get(cpu) & EMU_FL_ZF);
	/* jmp 0x1234:0x0100 */
	{
		static const uint8_t jmpf[] = { 0xea, 0x00, 0x01, 0x34, 0x12 };

		code(e, 0x7c02, jmpf, sizeof(jmpf));
		assert_int_equal(emu_step(cpu), 0);
		assert_int_equal(cpu->seg[EMU_SEG_CS].base, 0x12340);
		assert_int_equal(cpu->rip, 0x100);
	}
}

/* 32-bit protected mode, ring 3 -> 0 through the TSS's SS0:ESP0, IRETD. */
static void test_prot_ring3_to_0(void **state)
{
	static const uint8_t int80[] = { 0xcd, 0x80 };
	static const uint8_t iretd[] = { 0xcf };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t sp = KSTACK - 20;
	uint32_t v;

	setup_long(e); /* for the GDT; then leave long mode */
	cpu->msr.efer = 0;
	cpu->cr0 = 0x11; /* PE, ET */
	cpu->cr4 = 0;
	cpu->idtr.base = IDT32;
	cpu->idtr.limit = 0x7ff;
	gate32(e, 0x80, K32_CS, 0x12345, 0xe, 3);
	v = (uint32_t)KSTACK;
	assert_int_equal(gm_write(&e->gm, TSS32 + 4, &v, 4), 0);
	v = K_DS;
	assert_int_equal(gm_write(&e->gm, TSS32 + 8, &v, 4), 0);
	cpu->tr.sel = TSS32_SEL;
	cpu->tr.base = TSS32;
	cpu->tr.attr = 0x8b;
	to_user(e, true);
	assert_int_equal(cpu->mode, EMU_MODE_PROT32);
	cpu->gpr[EMU_RSP] = USTACK;
	code(e, CODE, int80, sizeof(int80));
	code(e, 0x12345, iretd, sizeof(iretd));
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 0);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, K32_CS);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, K_DS);
	assert_int_equal(cpu->rip, 0x12345);
	assert_int_equal(cpu->gpr[EMU_RSP], sp);
	assert_int_equal(r32(e, sp + 0), CODE + 2);
	assert_int_equal(r32(e, sp + 4), U32_CS);
	assert_int_equal(r32(e, sp + 12), USTACK);
	assert_int_equal(r32(e, sp + 16), U_DS);
	/* Back out: DS etc. stay (DPL 3 data). */
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, U_DS);
	assert_int_equal(cpu->gpr[EMU_RSP], USTACK);
	assert_int_equal(cpu->rip, CODE + 2);
	assert_int_equal(cpu->seg[EMU_SEG_DS].sel, U_DS);
}

/* ---- instructions ------------------------------------------------------ */

/* 32-bit protected mode: CALL FAR ptr16:32, RETF imm16, LSS, POP SS, and
 * RETF to ring 3 (data segments the user may not use become null). */
static void test_prot_far_call_retf(void **state)
{
	static const uint8_t c0[] = {
		0x9a, 0x00, 0x51, 0x00, 0x00, K32_CS, 0x00, /* call 0x08:0x5100 */
		0x0f, 0xb2, 0x1d, 0x00, 0x60, 0x00, 0x00,   /* lss ebx, [0x6000] */
		0x6a, K_DS, 0x17,                           /* push 0x18; pop ss */
		0x6a, U_DS, 0x68, 0x00, 0x70, 0x00, 0x00,   /* push 0x2b; push 0x7000 */
		0x6a, U32_CS, 0x68, 0x00, 0x52, 0x00, 0x00, /* push 0x23; push 0x5200 */
		0xcb,                                       /* retf */
	};
	static const uint8_t retf8[] = { 0xca, 0x08, 0x00 };
	static const uint8_t ptr[6] = { 0x88, 0x88, 0x00, 0x00, K_DS, 0x00 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	cpu->msr.efer = 0;
	cpu->cr0 = 0x11;
	cpu->cr4 = 0;
	cpu->seg[EMU_SEG_CS].sel = K32_CS;
	cpu->seg[EMU_SEG_CS].attr = 0xc09b;
	emu_cpu_update_mode(cpu);
	assert_int_equal(cpu->mode, EMU_MODE_PROT32);
	cpu->gpr[EMU_RSP] = 0x8800;
	code(e, CODE, c0, sizeof(c0));
	code(e, 0x5100, retf8, sizeof(retf8));
	code(e, DATA, ptr, sizeof(ptr));
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->rip, 0x5100);
	assert_int_equal(cpu->gpr[EMU_RSP], 0x8800 - 8);
	assert_int_equal(r32(e, 0x8800 - 8), CODE + 7);
	assert_int_equal(r32(e, 0x8800 - 4) & 0xffff, K32_CS);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->rip, CODE + 7);
	assert_int_equal(cpu->gpr[EMU_RSP], 0x8800 + 8);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->gpr[EMU_RBX], 0x8888);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, K_DS);
	assert_false(cpu->int_shadow);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(emu_step(cpu), 0);
	assert_true(cpu->int_shadow); /* POP SS */
	for (int i = 0; i < 5; i++)
		assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, U32_CS);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, U_DS);
	assert_int_equal(cpu->gpr[EMU_RSP], USTACK);
	assert_int_equal(cpu->rip, 0x5200);
	assert_true(cpu->seg[EMU_SEG_DS].unusable);  /* was DPL 0 data */
	assert_int_equal(cpu->seg[EMU_SEG_DS].sel, 0);
	/* Back to ring 0 by RETF is refused: #GP(sel). */
	{
		static const uint8_t back[] = {
			0x6a, K32_CS, 0x68, 0x00, 0x50, 0x00, 0x00, 0xcb,
		};

		code(e, 0x5200, back, sizeof(back));
		for (int i = 0; i < 2; i++)
			assert_int_equal(emu_step(cpu), 0);
		assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
		assert_int_equal(cpu->exc.error_code, K32_CS);
		assert_int_equal(cpu->cpl, 3);
	}
}

static void test_syscall_sysret(void **state)
{
	static const uint8_t syscall[] = { 0x0f, 0x05 };
	static const uint8_t sysretq[] = { 0x48, 0x0f, 0x07 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	cpu->msr.efer |= EMU_EFER_SCE;
	cpu->msr.star = (0x23ull << 48) | ((uint64_t)K_CS << 32);
	cpu->msr.lstar = DATA;
	cpu->msr.sfmask = EMU_FL_IF | EMU_FL_DF | EMU_FL_TF | EMU_FL_AC;
	to_user(e, false);
	code(e, CODE, syscall, sizeof(syscall));
	code(e, DATA, sysretq, sizeof(sysretq));
	emu_flags_set(cpu, EMU_FL_FIXED | EMU_FL_IF | EMU_FL_DF | EMU_FL_CF);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 0);
	assert_int_equal(cpu->rip, DATA);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, K_CS);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, K_DS);
	assert_int_equal(cpu->gpr[EMU_RCX], CODE + 2);
	assert_int_equal(cpu->gpr[EMU_R11],
			 EMU_FL_FIXED | EMU_FL_IF | EMU_FL_DF | EMU_FL_CF);
	assert_int_equal(emu_flags_get(cpu), EMU_FL_FIXED | EMU_FL_CF);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->cpl, 3);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, U_CS);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, U_DS);
	assert_int_equal(cpu->rip, CODE + 2);
	assert_int_equal(emu_flags_get(cpu),
			 EMU_FL_FIXED | EMU_FL_IF | EMU_FL_DF | EMU_FL_CF);
	/* SYSRET to a non-canonical RCX: #GP(0) at CPL 0. */
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), 0); /* syscall again */
	cpu->gpr[EMU_RCX] = 0x0000800000000000ull;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->cpl, 0);
	assert_int_equal(cpu->rip, DATA);
	/* SYSRET at CPL 3: #GP; SYSCALL without EFER.SCE: #UD. */
	to_user(e, false);
	cpu->rip = DATA;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	cpu->msr.efer &= ~EMU_EFER_SCE;
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_UD));
}

static void test_swapgs(void **state)
{
	static const uint8_t swapgs[] = { 0x0f, 0x01, 0xf8 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	code(e, CODE, swapgs, sizeof(swapgs));
	cpu->seg[EMU_SEG_GS].base = 0x1111;
	cpu->msr.kernel_gs_base = 0xffff888000002222ull;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->seg[EMU_SEG_GS].base, 0xffff888000002222ull);
	assert_int_equal(cpu->msr.kernel_gs_base, 0x1111);
	to_user(e, false);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->seg[EMU_SEG_GS].base, 0xffff888000002222ull);
}

static void test_mov_sreg(void **state)
{
	static const uint8_t mov_ss_ax[] = { 0x8e, 0xd0 };
	static const uint8_t mov_ds_ax[] = { 0x8e, 0xd8 };
	static const uint8_t mov_ax_ds[] = { 0x8c, 0xd8 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	code(e, CODE, mov_ss_ax, sizeof(mov_ss_ax));
	cpu->gpr[EMU_RAX] = K_DS;
	cpu->seg[EMU_SEG_SS].sel = 0;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->seg[EMU_SEG_SS].sel, K_DS);
	assert_true(cpu->int_shadow);
	cpu->int_shadow = false;
	/* RPL != CPL for SS: #GP(sel). */
	cpu->rip = CODE;
	cpu->gpr[EMU_RAX] = K_DS | 3;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->exc.error_code, K_DS);
	/* Not present: #NP(sel). */
	code(e, CODE, mov_ds_ax, sizeof(mov_ds_ax));
	cpu->rip = CODE;
	cpu->gpr[EMU_RAX] = NP_DS;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_NP));
	assert_int_equal(cpu->exc.error_code, NP_DS);
	/* Beyond the GDT limit: #GP(sel). */
	cpu->rip = CODE;
	cpu->gpr[EMU_RAX] = 0x100;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->exc.error_code, 0x100);
	/* A code segment in SS / user data seg: fine in DS, accessed set. */
	cpu->rip = CODE;
	cpu->gpr[EMU_RAX] = U_DS;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->seg[EMU_SEG_DS].sel, U_DS);
	/* Null DS at CPL 3 in 64-bit mode is fine; null SS is not. */
	to_user(e, false);
	cpu->rip = CODE;
	cpu->gpr[EMU_RAX] = 0;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(cpu->seg[EMU_SEG_DS].unusable);
	code(e, CODE, mov_ss_ax, sizeof(mov_ss_ax));
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	/* MOV r, Sreg. */
	code(e, CODE, mov_ax_ds, sizeof(mov_ax_ds));
	cpu->rip = CODE;
	cpu->seg[EMU_SEG_DS].sel = U_DS;
	cpu->gpr[EMU_RAX] = ~0ull;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->gpr[EMU_RAX], U_DS); /* mov eax, ds */
}

/* 64-bit: JMP FAR m16:32 into compat code, RETF (32) back, LRETQ to
 * compat again, JMP ptr16:32 back to 64-bit. */
static void test_far_jmp_compat_lretq(void **state)
{
	/* jmp far dword [DATA] */
	static const uint8_t jmpf[] = { 0xff, 0x2c, 0x25, 0x00, 0x60, 0x00, 0x00 };
	/* compat: push 0x10; push 0x5200; retf */
	static const uint8_t c1[] = { 0x6a, 0x10, 0x68, 0x00, 0x52, 0x00, 0x00,
				      0xcb };
	/* 64-bit: push 8; push 0x5300; lretq */
	static const uint8_t c2[] = { 0x6a, 0x08, 0x68, 0x00, 0x53, 0x00, 0x00,
				      0x48, 0xcb };
	/* compat: jmp 0x10:0x5400 */
	static const uint8_t c3[] = { 0xea, 0x00, 0x54, 0x00, 0x00, 0x10, 0x00 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	uint64_t sp;

	setup_long(e);
	{
		uint8_t p[6] = { 0x00, 0x51, 0x00, 0x00, K32_CS, 0x00 };

		code(e, DATA, p, sizeof(p));
	}
	code(e, CODE, jmpf, sizeof(jmpf));
	code(e, 0x5100, c1, sizeof(c1));
	code(e, 0x5200, c2, sizeof(c2));
	code(e, 0x5300, c3, sizeof(c3));
	sp = cpu->gpr[EMU_RSP];
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->mode, EMU_MODE_PROT32);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, K32_CS);
	assert_int_equal(cpu->rip, 0x5100);
	for (int i = 0; i < 3; i++)
		assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
	assert_int_equal(cpu->rip, 0x5200);
	assert_int_equal(cpu->gpr[EMU_RSP], sp);
	for (int i = 0; i < 3; i++)
		assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->mode, EMU_MODE_PROT32);
	assert_int_equal(cpu->rip, 0x5300);
	assert_int_equal(cpu->gpr[EMU_RSP], sp);
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
	assert_int_equal(cpu->seg[EMU_SEG_CS].sel, K_CS);
	assert_int_equal(cpu->rip, 0x5400);
	/* Far JMP to a DPL-3 code segment from CPL 0: #GP(sel). */
	{
		uint8_t p[6] = { 0x00, 0x51, 0x00, 0x00, U32_CS, 0x00 };

		code(e, DATA, p, sizeof(p));
	}
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->exc.error_code, U32_CS & ~3);
	/* To the TSS descriptor (no task switches): #GP(sel). */
	{
		uint8_t p[6] = { 0x00, 0x51, 0x00, 0x00, TSS_SEL, 0x00 };

		code(e, DATA, p, sizeof(p));
	}
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->exc.error_code, TSS_SEL);
	assert_int_equal(cpu->mode, EMU_MODE_LONG64);
}

static void test_lsl_lar_verw(void **state)
{
	static const uint8_t lsl[] = { 0x0f, 0x03, 0xc1 };  /* lsl eax, ecx */
	static const uint8_t lar[] = { 0x0f, 0x02, 0xc1 };  /* lar eax, ecx */
	static const uint8_t verw[] = { 0x0f, 0x00, 0xe9 }; /* verw cx */
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	to_user(e, false);
	code(e, CODE, lsl, sizeof(lsl));
	cpu->gpr[EMU_RCX] = PCPU;
	cpu->gpr[EMU_RAX] = 0;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_ZF);
	assert_int_equal(cpu->gpr[EMU_RAX], 0x1234);
	/* Beyond the limit: ZF = 0, EAX unchanged. */
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = 0x403;
	cpu->gpr[EMU_RAX] = 77;
	assert_int_equal(emu_step(cpu), 0);
	assert_false(emu_flags_get(cpu) & EMU_FL_ZF);
	assert_int_equal(cpu->gpr[EMU_RAX], 77);
	/* Kernel data from CPL 3: not visible. */
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = K_DS;
	assert_int_equal(emu_step(cpu), 0);
	assert_false(emu_flags_get(cpu) & EMU_FL_ZF);
	/* LAR of the per-CPU segment. */
	code(e, CODE, lar, sizeof(lar));
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = PCPU;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_ZF);
	assert_int_equal(cpu->gpr[EMU_RAX], 0x0040f300);
	/* VERW: user data at CPL 3 yes, kernel data no; at CPL 0 kernel
	 * data yes (Linux's MDS clearing), code no. */
	code(e, CODE, verw, sizeof(verw));
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = U_DS;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_ZF);
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = K_DS;
	assert_int_equal(emu_step(cpu), 0);
	assert_false(emu_flags_get(cpu) & EMU_FL_ZF);
	setup_long(e);
	code(e, CODE, verw, sizeof(verw));
	cpu->gpr[EMU_RCX] = K_DS;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_ZF);
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = K_CS;
	assert_int_equal(emu_step(cpu), 0);
	assert_false(emu_flags_get(cpu) & EMU_FL_ZF);
}

static void test_ltr_lgdt_sgdt(void **state)
{
	static const uint8_t ltr[] = { 0x0f, 0x00, 0xd8 };           /* ltr ax */
	static const uint8_t sgdt[] = { 0x0f, 0x01, 0x04, 0x25, 0x00, 0x60,
					0x00, 0x00 };                /* sgdt [0x6000] */
	static const uint8_t lidt[] = { 0x0f, 0x01, 0x1c, 0x25, 0x00, 0x60,
					0x00, 0x00 };                /* lidt [0x6000] */
	static const uint8_t str[] = { 0x0f, 0x00, 0xc9 };           /* str cx */
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	memset(&cpu->tr, 0, sizeof(cpu->tr));
	code(e, CODE, ltr, sizeof(ltr));
	cpu->gpr[EMU_RAX] = TSS_SEL;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->tr.sel, TSS_SEL);
	assert_int_equal(cpu->tr.base, TSS64);
	assert_int_equal(cpu->tr.limit, 0x67);
	assert_int_equal((r64(e, GDT + TSS_SEL) >> 40) & 0xf, 0xb); /* busy */
	/* A busy TSS cannot be loaded again. */
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	code(e, CODE, str, sizeof(str));
	cpu->rip = CODE;
	cpu->gpr[EMU_RCX] = ~0ull;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->gpr[EMU_RCX], TSS_SEL); /* str ecx: zero-extended */

	code(e, CODE, sgdt, sizeof(sgdt));
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(r16(e, DATA), 0x5f);
	assert_int_equal(r64(e, DATA + 2), GDT);
	w64(e, DATA + 2, 0xfffffe0000000000ull);
	code(e, CODE, lidt, sizeof(lidt));
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), 0);
	assert_int_equal(cpu->idtr.base, 0xfffffe0000000000ull);
	assert_int_equal(cpu->idtr.limit, 0x5f);
	/* Non-canonical base: #GP(0); CPL 3: #GP(0). */
	w64(e, DATA + 2, 0x0000800000000000ull);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	w64(e, DATA + 2, IDT);
	to_user(e, false);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
}

static void test_cli_sti(void **state)
{
	static const uint8_t cli[] = { 0xfa };
	static const uint8_t sti[] = { 0xfb };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;

	setup_long(e);
	code(e, CODE, cli, 1);
	assert_int_equal(emu_step(cpu), 0);
	assert_false(emu_flags_get(cpu) & EMU_FL_IF);
	code(e, CODE, sti, 1);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), 0);
	assert_true(emu_flags_get(cpu) & EMU_FL_IF);
	assert_true(cpu->int_shadow);
	to_user(e, false);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_GP));
	emu_flags_set(cpu, emu_flags_get(cpu) | EMU_FL_IOPL);
	cpu->rip = CODE;
	assert_int_equal(emu_step(cpu), 0);
}

/* ---- hostile tables ---------------------------------------------------- */

static void test_hostile_tables(void **state)
{
	static const uint8_t mov_ds_ax[] = { 0x8e, 0xd8 };
	static const uint8_t int80[] = { 0xcd, 0x80 };
	struct env *e = *state;
	struct emu_cpu *cpu = &e->cpu;
	int r;

	/* GDT outside RAM (mapped, but unclaimed bus: all ones). */
	setup_long(e);
	code(e, CODE, mov_ds_ax, sizeof(mov_ds_ax));
	cpu->gdtr.base = HOLE_LIN;
	cpu->gdtr.limit = 0xffff;
	cpu->gpr[EMU_RAX] = 0x18;
	r = emu_step(cpu);
	assert_int_equal(r, EMU_EXC(EMU_VEC_GP));
	/* GDT not mapped: #PF on the implicit read. */
	cpu->gdtr.base = 1ull << 44;
	r = emu_step(cpu);
	assert_int_equal(r, EMU_EXC(EMU_VEC_PF));
	/* GDT with a non-canonical base. */
	cpu->gdtr.base = 0x8000000000000000ull;
	r = emu_step(cpu);
	assert_int_equal(r, EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu->seg[EMU_SEG_DS].sel, K_DS);

	/* IDT outside RAM / beyond MAXPHYADDR / non-canonical: the delivery
	 * ends in #DF or shutdown, never anywhere else. */
	static const uint64_t bases[] = { HOLE_LIN, 1ull << 44,
					  0x8000000000000000ull,
					  RAM - 8 };
	for (unsigned i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		setup_long(e);
		cpu->idtr.base = bases[i];
		cpu->idtr.limit = 0xffff;
		r = emu_deliver(cpu, EMU_VEC_GP, EMU_EVENT_EXCEPTION, true, 0);
		assert_int_equal(r, EMU_SHUTDOWN);
		assert_int_equal(cpu->rip, CODE);
	}
	/* A gate naming a selector beyond the GDT: #GP(sel | EXT) -> #DF
	 * through the (good) #DF gate. */
	setup_long(e);
	gate64(e, 0x40, 0x7ff8, HANDLER, 0, 0xe, 0);
	r = emu_deliver(cpu, 0x40, EMU_EVENT_EXTINT, false, 0);
	assert_int_equal(r, 0);
	assert_int_equal(cpu->rip, HANDLER + 13 * 16);
	assert_int_equal(r64(e, cpu->gpr[EMU_RSP]), 0x7ff8 | 1);
	/* TSS limit too small for RSP0: #TS(TR | EXT) from user mode. */
	setup_long(e);
	to_user(e, false);
	cpu->tr.limit = 3;
	code(e, CODE, int80, sizeof(int80));
	assert_int_equal(emu_step(cpu), EMU_EXC(EMU_VEC_TS));
	assert_int_equal(cpu->exc.error_code, TSS_SEL);
	assert_int_equal(cpu->cpl, 3);
	/* And a guest that lies in every table: never crashes. */
	setup_long(e);
	memset(gm_ptr(&e->gm, IDT, 0x1000), 0xff, 0x1000);
	memset(gm_ptr(&e->gm, GDT, 0x60), 0xa5, 0x60);
	for (unsigned v = 0; v < 256; v++) {
		setup_long(e);
		memset(gm_ptr(&e->gm, IDT, 0x1000), (int)(v * 37), 0x1000);
		r = emu_deliver(cpu, v, EMU_EVENT_EXTINT, false, 0);
		assert_true(r == 0 || r == EMU_SHUTDOWN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_long_gp_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_trap_gate_keeps_if, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_pf_cr2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_ist_nmi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_user_int_iretq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_int_gate_dpl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_int3_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_double_fault, setup, teardown),
		cmocka_unit_test_setup_teardown(test_benign_then_np, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pf_pf_double_fault_ist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_triple_fault, setup, teardown),
		cmocka_unit_test_setup_teardown(test_real_int_iret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prot_ring3_to_0, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prot_far_call_retf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syscall_sysret, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swapgs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mov_sreg, setup, teardown),
		cmocka_unit_test_setup_teardown(test_far_jmp_compat_lretq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lsl_lar_verw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ltr_lgdt_sgdt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cli_sti, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_tables, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
