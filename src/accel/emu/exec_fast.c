/*
 * exec_fast.c - specialised handlers for the hottest instruction forms,
 * chosen once per instruction when the block cache decodes it
 * (emu_fast_handler(), called from blocks.c).
 *
 * Each one is the generic handler (exec_alu.c, exec_move.c, ...) with the
 * operand kinds and the operand size fixed: 32 or 64-bit general registers
 * 0-15, immediates, or a memory source read through the out-of-line
 * operand path.  They must leave exactly the state the generic handler
 * would, lazy-flag record included (the unit tests run both paths).
 */
#include <string.h>

#include "accel/emu/blocks.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"

#define M4 0xffffffffull
#define M8 (~0ull)

static inline uint64_t src_imm(const struct emu_insn *in, uint64_t m)
{
	return (uint64_t)in->opnd[1].val & m;
}

static inline void wr(struct emu_cpu *cpu, unsigned reg, uint64_t m,
		      uint64_t v)
{
	cpu->gpr[reg] = v & m; /* a 32-bit write zero-extends */
}

static inline uint8_t *fhost_lin(struct emu_cpu *cpu, uint64_t lin,
				 unsigned size, enum emu_access acc,
				 uint64_t *gpa);

/* The host byte behind a 64-bit-mode data access of `size` bytes at
 * memory operand `o` that hits the TLB with the permission `acc` needs
 * and stays inside one RAM page, or NULL: emu_mem_read()/emu_mem_write()'s
 * fast path (mem.c: fast64()) without the two calls.  *gpa: its guest-
 * physical address. */
static inline uint8_t *fhost(struct emu_cpu *cpu, const struct emu_insn *in,
			     const struct emu_opnd *o, unsigned size,
			     uint64_t next, enum emu_access acc, uint64_t *gpa)
{
	uint64_t lin;

	if (cpu->mode != EMU_MODE_LONG64)
		return NULL;
	lin = emu_ea(cpu, in, o, next);
	if (o->seg == EMU_SEG_FS || o->seg == EMU_SEG_GS)
		lin += cpu->seg[o->seg].base;
	return fhost_lin(cpu, lin, size, acc, gpa);
}

/* Linear address `lin` in 64-bit mode: fhost() after the segment. */
static inline uint8_t *fhost_lin(struct emu_cpu *cpu, uint64_t lin,
				 unsigned size, enum emu_access acc,
				 uint64_t *gpa)
{
	const struct emu_tlb_entry *e;

	if ((lin & 0xfff) + size > 0x1000 ||
	    (uint64_t)((int64_t)(lin << 16) >> 16) != lin)
		return NULL;
	e = emu_tlb_lookup(cpu, lin, emu_tlb_need(acc, cpu->cpl == 3));
	if (!e || !e->host)
		return NULL;
	*gpa = e->gpa | (lin & 0xfff);
	return e->host + (lin & 0xfff);
}

/* emu_opnd_read_slow() of memory operand `o`, the TLB hit inline. */
static inline __attribute__((always_inline)) int
fload(struct emu_cpu *cpu, const struct emu_insn *in,
      const struct emu_opnd *o, unsigned size, uint64_t next, uint64_t *val)
{
	uint64_t gpa;
	const uint8_t *h = fhost(cpu, in, o, size, next, EMU_ACC_READ, &gpa);

	if (__builtin_expect(h != NULL, 1)) {
		uint64_t v = 0;

		switch (size) {
		case 1: v = *h; break;
		case 2: { uint16_t t; memcpy(&t, h, 2); v = t; break; }
		case 4: { uint32_t t; memcpy(&t, h, 4); v = t; break; }
		default: memcpy(&v, h, 8); break;
		}
		*val = v;
		return 0;
	}
	return emu_opnd_read_slow(cpu, in, o, size, next, val);
}

/* emu_opnd_write_slow() of memory operand `o` (4 or 8 bytes). */
static inline __attribute__((always_inline)) int
fstore(struct emu_cpu *cpu, const struct emu_insn *in,
       const struct emu_opnd *o, unsigned size, uint64_t next, uint64_t val)
{
	uint64_t gpa;
	uint8_t *h = fhost(cpu, in, o, size, next, EMU_ACC_WRITE, &gpa);

	if (__builtin_expect(h != NULL, 1)) {
		if (size == 4) {
			uint32_t t = (uint32_t)val;

			memcpy(h, &t, 4);
		} else {
			memcpy(h, &val, 8);
		}
		emu_code_note_write(cpu, gpa, size);
		return 0;
	}
	return emu_opnd_write_slow(cpu, in, o, size, next, val);
}

/* The lazy record with the size fixed (emu_lazy() masks). */
static inline void lz(struct emu_cpu *cpu, enum emu_lf_op op, unsigned size,
		      uint64_t m, uint64_t res, uint64_t s1, uint64_t s2,
		      uint64_t aux)
{
	cpu->lf.op = (uint8_t)op;
	cpu->lf.size = (uint8_t)size;
	cpu->lf.res = res & m;
	cpu->lf.src1 = s1 & m;
	cpu->lf.src2 = s2 & m;
	cpu->lf.aux = aux;
}

/* Condition `cc` (as emu_cond()), computed straight from the operands
 * after the two records branches follow most: CMP/SUB and logic/TEST. */
static inline bool fcond(const struct emu_cpu *cpu, unsigned cc)
{
	const struct emu_lazy_flags *lf = &cpu->lf;
	bool r;

	if (lf->op == EMU_LF_SUB) {
		uint64_t a = lf->src1, b = lf->src2;
		unsigned sz = lf->size;

		switch (cc >> 1) {
		case 1: r = a < b; break;   /* B: CF */
		case 2: r = a == b; break;  /* Z */
		case 3: r = a <= b; break;  /* BE: CF | ZF */
		case 6: /* L: SF != OF */
			r = (int64_t)emu_sext(a, sz) < (int64_t)emu_sext(b, sz);
			break;
		case 7: /* LE: ZF | (SF != OF) */
			r = (int64_t)emu_sext(a, sz) <= (int64_t)emu_sext(b, sz);
			break;
		default:
			return emu_cond(cpu, cc);
		}
		return r ^ (cc & 1);
	}
	if (lf->op == EMU_LF_LOGIC) { /* CF = OF = 0 */
		switch (cc >> 1) {
		case 0: case 1: r = false; break;          /* O, B */
		case 2: case 3: r = lf->res == 0; break;   /* Z, BE */
		case 4: case 6: r = emu_msb(lf->res, lf->size); break; /* S, L */
		case 7: r = lf->res == 0 || emu_msb(lf->res, lf->size); break;
		default:
			return emu_cond(cpu, cc);
		}
		return r ^ (cc & 1);
	}
	return emu_cond(cpu, cc);
}

/* ---- ALU: ADD ADC SUB SBB CMP AND OR XOR TEST ------------------------- */

#define ALU_BODY(OPK, S, M)                                                   \
	uint64_t a = cpu->gpr[in->opnd[0].reg] & (M), r, aux;                \
	switch (OPK) {                                                        \
	case EMU_OP_ADD:                                                      \
		r = a + b;                                                    \
		lz(cpu, EMU_LF_ADD, S, M, r, a, b, 0);                        \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_ADC:                                                      \
		aux = emu_flag_cf(cpu);                                       \
		r = a + b + aux;                                              \
		lz(cpu, EMU_LF_ADC, S, M, r, a, b, aux);                      \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_SUB:                                                      \
		r = a - b;                                                    \
		lz(cpu, EMU_LF_SUB, S, M, r, a, b, 0);                        \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_SBB:                                                      \
		aux = emu_flag_cf(cpu);                                       \
		r = a - b - aux;                                              \
		lz(cpu, EMU_LF_SBB, S, M, r, a, b, aux);                      \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_CMP:                                                      \
		lz(cpu, EMU_LF_SUB, S, M, a - b, a, b, 0);                    \
		break;                                                        \
	case EMU_OP_AND:                                                      \
		r = a & b;                                                    \
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);                      \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_OR:                                                       \
		r = a | b;                                                    \
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);                      \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	case EMU_OP_XOR:                                                      \
		r = a ^ b;                                                    \
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);                      \
		wr(cpu, in->opnd[0].reg, M, r);                               \
		break;                                                        \
	default: /* TEST */                                                   \
		lz(cpu, EMU_LF_LOGIC, S, M, a & b, 0, 0, 0);                  \
		break;                                                        \
	}                                                                     \
	return 0;

#define ALU_FORMS(name, OPK)                                                  \
static int f_##name##_rr8(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b = cpu->gpr[in->opnd[1].reg];                               \
	(void)next;                                                           \
	ALU_BODY(OPK, 8, M8)                                                  \
}                                                                             \
static int f_##name##_rr4(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b = cpu->gpr[in->opnd[1].reg] & M4;                          \
	(void)next;                                                           \
	ALU_BODY(OPK, 4, M4)                                                  \
}                                                                             \
static int f_##name##_ri8(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b = src_imm(in, M8);                                         \
	(void)next;                                                           \
	ALU_BODY(OPK, 8, M8)                                                  \
}                                                                             \
static int f_##name##_ri4(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b = src_imm(in, M4);                                         \
	(void)next;                                                           \
	ALU_BODY(OPK, 4, M4)                                                  \
}                                                                             \
static int f_##name##_rm8(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b;                                                           \
	int e = fload(cpu, in, &in->opnd[1], 8, *next, &b);      \
	if (e)                                                                \
		return e;                                                     \
	ALU_BODY(OPK, 8, M8)                                                  \
}                                                                             \
static int f_##name##_rm4(struct emu_cpu *cpu, const struct emu_insn *in,    \
			  uint64_t *next)                                     \
{                                                                             \
	uint64_t b;                                                           \
	int e = fload(cpu, in, &in->opnd[1], 4, *next, &b);      \
	if (e)                                                                \
		return e;                                                     \
	b &= M4;                                                              \
	ALU_BODY(OPK, 4, M4)                                                  \
}                                                                             \
static const emu_handler alu_##name[3][2] = {                                 \
	{ f_##name##_rr4, f_##name##_rr8 },                                   \
	{ f_##name##_ri4, f_##name##_ri8 },                                   \
	{ f_##name##_rm4, f_##name##_rm8 },                                   \
};

ALU_FORMS(add, EMU_OP_ADD)
ALU_FORMS(adc, EMU_OP_ADC)
ALU_FORMS(sub, EMU_OP_SUB)
ALU_FORMS(sbb, EMU_OP_SBB)
ALU_FORMS(cmp, EMU_OP_CMP)
ALU_FORMS(and, EMU_OP_AND)
ALU_FORMS(or, EMU_OP_OR)
ALU_FORMS(xor, EMU_OP_XOR)
ALU_FORMS(test, EMU_OP_TEST)

/* ALU op [mem], reg/imm (4 or 8 bytes, no LOCK): a TLB hit that allows
 * both the read and the write updates the host bytes in place; anything
 * else is emu_exec_alu2(), which raises the fault the access would.  CMP
 * and TEST only read. */
static inline int alu_mem(struct emu_cpu *cpu, const struct emu_insn *in,
			  uint64_t *next, unsigned S, uint64_t M)
{
	const struct emu_opnd *s = &in->opnd[1];
	uint64_t b = (s->kind == EMU_OPND_GPR ? cpu->gpr[s->reg] :
					       (uint64_t)s->val) & M;
	uint64_t a = 0, r, aux, lin, gpa;
	const struct emu_tlb_entry *e;
	uint8_t *h;
	bool user = cpu->cpl == 3;

	if (in->op == EMU_OP_CMP || in->op == EMU_OP_TEST) {
		int err = fload(cpu, in, &in->opnd[0], S, *next, &a);

		if (err)
			return err;
		if (in->op == EMU_OP_CMP)
			lz(cpu, EMU_LF_SUB, S, M, a - b, a, b, 0);
		else
			lz(cpu, EMU_LF_LOGIC, S, M, a & b, 0, 0, 0);
		return 0;
	}
	if (cpu->mode != EMU_MODE_LONG64)
		return emu_exec_alu2(cpu, in, next);
	lin = emu_ea(cpu, in, &in->opnd[0], *next);
	if (in->opnd[0].seg == EMU_SEG_FS || in->opnd[0].seg == EMU_SEG_GS)
		lin += cpu->seg[in->opnd[0].seg].base;
	if ((lin & 0xfff) + S > 0x1000 ||
	    (uint64_t)((int64_t)(lin << 16) >> 16) != lin)
		return emu_exec_alu2(cpu, in, next);
	e = emu_tlb_lookup(cpu, lin, emu_tlb_need(EMU_ACC_READ, user) |
				     emu_tlb_need(EMU_ACC_WRITE, user));
	if (!e || !e->host)
		return emu_exec_alu2(cpu, in, next);
	gpa = e->gpa | (lin & 0xfff);
	h = e->host + (lin & 0xfff);
	memcpy(&a, h, S);
	switch (in->op) {
	case EMU_OP_ADD:
		r = a + b;
		lz(cpu, EMU_LF_ADD, S, M, r, a, b, 0);
		break;
	case EMU_OP_ADC:
		aux = emu_flag_cf(cpu);
		r = a + b + aux;
		lz(cpu, EMU_LF_ADC, S, M, r, a, b, aux);
		break;
	case EMU_OP_SUB:
		r = a - b;
		lz(cpu, EMU_LF_SUB, S, M, r, a, b, 0);
		break;
	case EMU_OP_SBB:
		aux = emu_flag_cf(cpu);
		r = a - b - aux;
		lz(cpu, EMU_LF_SBB, S, M, r, a, b, aux);
		break;
	case EMU_OP_AND:
		r = a & b;
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		break;
	case EMU_OP_OR:
		r = a | b;
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		break;
	default: /* XOR */
		r = a ^ b;
		lz(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		break;
	}
	memcpy(h, &r, S); /* little-endian host: the low S bytes */
	emu_code_note_write(cpu, gpa, S);
	return 0;
}

static int f_alu_m8(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t *next)
{
	return alu_mem(cpu, in, next, 8, M8);
}

static int f_alu_m4(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t *next)
{
	return alu_mem(cpu, in, next, 4, M4);
}

/* ---- MOV, LEA, CMOVcc --------------------------------------------------- */

#define SIZED(name, ...)                                                      \
static int name##8(struct emu_cpu *cpu, const struct emu_insn *in,           \
		   uint64_t *next)                                            \
{                                                                             \
	const uint64_t M = M8;                                                \
	const unsigned S = 8;                                                 \
	(void)next; (void)S;                                                  \
	__VA_ARGS__                                                           \
}                                                                             \
static int name##4(struct emu_cpu *cpu, const struct emu_insn *in,           \
		   uint64_t *next)                                            \
{                                                                             \
	const uint64_t M = M4;                                                \
	const unsigned S = 4;                                                 \
	(void)next; (void)S;                                                  \
	__VA_ARGS__                                                           \
}

SIZED(f_mov_rr, {
	wr(cpu, in->opnd[0].reg, M, cpu->gpr[in->opnd[1].reg]);
	return 0;
})

SIZED(f_mov_ri, {
	wr(cpu, in->opnd[0].reg, M, (uint64_t)in->opnd[1].val);
	return 0;
})

SIZED(f_mov_rm, {
	uint64_t v;
	int e = fload(cpu, in, &in->opnd[1], S, *next, &v);

	if (e)
		return e;
	wr(cpu, in->opnd[0].reg, M, v);
	return 0;
})

SIZED(f_mov_mr, {
	return fstore(cpu, in, &in->opnd[0], S, *next,
				   cpu->gpr[in->opnd[1].reg] & M);
})

SIZED(f_mov_mi, {
	return fstore(cpu, in, &in->opnd[0], S, *next,
		      (uint64_t)in->opnd[1].val & M);
})

SIZED(f_lea, {
	wr(cpu, in->opnd[0].reg, M, emu_ea(cpu, in, &in->opnd[1], *next));
	return 0;
})

SIZED(f_cmov_rr, {
	unsigned d = in->opnd[0].reg;
	uint64_t v = fcond(cpu, in->cc) ? cpu->gpr[in->opnd[1].reg] :
					      cpu->gpr[d];

	wr(cpu, d, M, v);
	return 0;
})

/* MOVZX r32/r64, r/m8 and r/m16 (the destination is 4 or 8 bytes: the
 * zero-extended value is the whole register either way). */
static int f_movzx_rr(struct emu_cpu *cpu, const struct emu_insn *in,
		      uint64_t *next)
{
	(void)next;
	cpu->gpr[in->opnd[0].reg] = cpu->gpr[in->opnd[1].reg] &
				    emu_mask(in->opnd[1].size);
	return 0;
}

static int f_movzx_rm(struct emu_cpu *cpu, const struct emu_insn *in,
		      uint64_t *next)
{
	uint64_t v;
	int e = fload(cpu, in, &in->opnd[1], in->opnd[1].size,
				   *next, &v);

	if (e)
		return e;
	cpu->gpr[in->opnd[0].reg] = v & emu_mask(in->opnd[1].size);
	return 0;
}

/* MOVSX r32/r64, r/m8 and r/m16; MOVSXD r64, r/m32. */
SIZED(f_movsx_rr, {
	unsigned ss = in->opnd[1].size;

	wr(cpu, in->opnd[0].reg, M, emu_sext(cpu->gpr[in->opnd[1].reg], ss));
	return 0;
})

SIZED(f_movsx_rm, {
	unsigned ss = in->opnd[1].size;
	uint64_t v;
	int e = fload(cpu, in, &in->opnd[1], ss, *next, &v);

	if (e)
		return e;
	wr(cpu, in->opnd[0].reg, M, emu_sext(v, ss));
	return 0;
})

/* ---- IMUL r, r / IMUL r, r, imm, MUL r ------------------------------- */

static int f_imul_rr8(struct emu_cpu *cpu, const struct emu_insn *in,
		      uint64_t *next)
{
	uint64_t a, b, lo;
	__int128 p;

	(void)next;
	if (in->nr_opnds == 3) {
		a = cpu->gpr[in->opnd[1].reg];
		b = (uint64_t)in->opnd[2].val;
	} else {
		a = cpu->gpr[in->opnd[0].reg];
		b = cpu->gpr[in->opnd[1].reg];
	}
	p = (__int128)(int64_t)a * (__int128)(int64_t)b;
	lo = (uint64_t)p;
	cpu->gpr[in->opnd[0].reg] = lo;
	lz(cpu, EMU_LF_MUL, 8, M8, lo, 0, 0, p != (__int128)(int64_t)lo);
	return 0;
}

static int f_imul_rr4(struct emu_cpu *cpu, const struct emu_insn *in,
		      uint64_t *next)
{
	uint64_t a, b;
	int64_t p;

	(void)next;
	if (in->nr_opnds == 3) {
		a = cpu->gpr[in->opnd[1].reg];
		b = (uint64_t)in->opnd[2].val;
	} else {
		a = cpu->gpr[in->opnd[0].reg];
		b = cpu->gpr[in->opnd[1].reg];
	}
	p = (int64_t)(int32_t)(uint32_t)a * (int64_t)(int32_t)(uint32_t)b;
	cpu->gpr[in->opnd[0].reg] = (uint32_t)p;
	lz(cpu, EMU_LF_MUL, 4, M4, (uint64_t)p, 0, 0,
	   p != (int64_t)(int32_t)(uint32_t)p);
	return 0;
}

static int f_mul_r8(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t *next)
{
	unsigned __int128 p = (unsigned __int128)cpu->gpr[EMU_RAX] *
			      cpu->gpr[in->opnd[0].reg];
	uint64_t hi = (uint64_t)(p >> 64);

	(void)next;
	cpu->gpr[EMU_RAX] = (uint64_t)p;
	cpu->gpr[EMU_RDX] = hi;
	lz(cpu, EMU_LF_MUL, 8, M8, (uint64_t)p, 0, 0, hi != 0);
	return 0;
}

static int f_mul_r4(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t *next)
{
	uint64_t p = (cpu->gpr[EMU_RAX] & M4) *
		     (cpu->gpr[in->opnd[0].reg] & M4);

	(void)next;
	cpu->gpr[EMU_RAX] = (uint32_t)p;
	cpu->gpr[EMU_RDX] = p >> 32;
	lz(cpu, EMU_LF_MUL, 4, M4, p, 0, 0, (p >> 32) != 0);
	return 0;
}

/* ---- SHL / SHR / SAR r, imm ------------------------------------------- */

SIZED(f_shl_ri, {
	unsigned d = in->opnd[0].reg;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (S == 8 ? 63 : 31);
	uint64_t v = cpu->gpr[d] & M, r = v << c;

	if (c)
		lz(cpu, EMU_LF_SHL, S, M, r, v, c, 0);
	wr(cpu, d, M, c ? r : v);
	return 0;
})

SIZED(f_shr_ri, {
	unsigned d = in->opnd[0].reg;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (S == 8 ? 63 : 31);
	uint64_t v = cpu->gpr[d] & M, r = v >> c;

	if (c)
		lz(cpu, EMU_LF_SHR, S, M, r, v, c, 0);
	wr(cpu, d, M, r);
	return 0;
})

SIZED(f_sar_ri, {
	unsigned d = in->opnd[0].reg;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (S == 8 ? 63 : 31);
	uint64_t v = cpu->gpr[d] & M;
	uint64_t r = (uint64_t)((int64_t)emu_sext(v, S) >> c);

	if (c)
		lz(cpu, EMU_LF_SAR, S, M, r, v, c, 0);
	wr(cpu, d, M, c ? r : v);
	return 0;
})

/* ---- ROL / ROR r, imm (CF and OF recorded, see emu_lazy_rot()) -------- */

SIZED(f_rol_ri, {
	unsigned d = in->opnd[0].reg, bits = S * 8;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (bits - 1);
	uint64_t v = cpu->gpr[d] & M, r;

	if (!(in->opnd[1].val & (S == 8 ? 63 : 31))) {
		wr(cpu, d, M, v);
		return 0;
	}
	r = c ? ((v << c) | (v >> (bits - c))) & M : v;
	emu_lazy_rot(cpu, r & 1, ((r >> (bits - 1)) ^ r) & 1);
	wr(cpu, d, M, r);
	return 0;
})

SIZED(f_ror_ri, {
	unsigned d = in->opnd[0].reg, bits = S * 8;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (bits - 1);
	uint64_t v = cpu->gpr[d] & M, r;

	if (!(in->opnd[1].val & (S == 8 ? 63 : 31))) {
		wr(cpu, d, M, v);
		return 0;
	}
	r = c ? ((v >> c) | (v << (bits - c))) & M : v;
	emu_lazy_rot(cpu, (r >> (bits - 1)) & 1,
		     ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1);
	wr(cpu, d, M, r);
	return 0;
})

/* ---- INC / DEC r -------------------------------------------------------- */

SIZED(f_inc_r, {
	unsigned d = in->opnd[0].reg;
	uint64_t a = cpu->gpr[d] & M;

	lz(cpu, EMU_LF_INC, S, M, a + 1, a, 1, emu_flag_cf(cpu));
	wr(cpu, d, M, a + 1);
	return 0;
})

SIZED(f_dec_r, {
	unsigned d = in->opnd[0].reg;
	uint64_t a = cpu->gpr[d] & M;

	lz(cpu, EMU_LF_DEC, S, M, a - 1, a, 1, emu_flag_cf(cpu));
	wr(cpu, d, M, a - 1);
	return 0;
})

/* ---- Jcc rel in 64-bit mode -------------------------------------------- */

static int f_jcc64(struct emu_cpu *cpu, const struct emu_insn *in,
		   uint64_t *next)
{
	uint64_t t;

	if (!fcond(cpu, in->cc))
		return 0;
	t = *next + (uint64_t)in->opnd[0].val;
	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	*next = t;
	return 0;
}

/* ---- PUSH r64 / POP r64, CALL rel / RET in 64-bit mode ------------------ */

/* Push / pop 8 bytes through the TLB's host pointer.  False when the fast
 * path does not apply (not 64-bit mode, TLB miss, MMIO): the caller then
 * runs the generic handler, which raises any fault. */
static bool fpush64(struct emu_cpu *cpu, uint64_t v)
{
	uint64_t sp = cpu->gpr[EMU_RSP] - 8, gpa;
	uint8_t *h;

	if (cpu->mode != EMU_MODE_LONG64)
		return false;
	h = fhost_lin(cpu, sp, 8, EMU_ACC_WRITE, &gpa);
	if (!h)
		return false;
	memcpy(h, &v, 8);
	emu_code_note_write(cpu, gpa, 8);
	cpu->gpr[EMU_RSP] = sp;
	return true;
}

/* Read the 8 bytes at RSP; the caller moves RSP (POP RSP and RET differ). */
static bool fpeek64(struct emu_cpu *cpu, uint64_t *v)
{
	uint64_t gpa;
	const uint8_t *h;

	if (cpu->mode != EMU_MODE_LONG64)
		return false;
	h = fhost_lin(cpu, cpu->gpr[EMU_RSP], 8, EMU_ACC_READ, &gpa);
	if (!h)
		return false;
	memcpy(v, h, 8);
	return true;
}

static bool canonical48(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

static int f_push_r8(struct emu_cpu *cpu, const struct emu_insn *in,
		     uint64_t *next)
{
	if (!fpush64(cpu, cpu->gpr[in->opnd[0].reg]))
		return emu_exec_push(cpu, in, next);
	return 0;
}

static int f_pop_r8(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t *next)
{
	uint64_t v;

	if (!fpeek64(cpu, &v))
		return emu_exec_pop(cpu, in, next);
	cpu->gpr[EMU_RSP] += 8;
	cpu->gpr[in->opnd[0].reg] = v; /* after RSP: POP RSP loads the value */
	return 0;
}

static int f_call_rel64(struct emu_cpu *cpu, const struct emu_insn *in,
			uint64_t *next)
{
	uint64_t t = *next + (uint64_t)in->opnd[0].val;

	if (!canonical48(t) || !fpush64(cpu, *next))
		return emu_exec_call(cpu, in, next); /* raises #GP / #PF */
	*next = t;
	return 0;
}

static int f_ret64(struct emu_cpu *cpu, const struct emu_insn *in,
		   uint64_t *next)
{
	uint64_t t;

	if (!fpeek64(cpu, &t) || !canonical48(t))
		return emu_exec_ret(cpu, in, next); /* raises #GP / #PF */
	cpu->gpr[EMU_RSP] += 8;
	*next = t;
	return 0;
}

/* ---- selection ------------------------------------------------------------ */

static bool gpr(const struct emu_opnd *o, unsigned size)
{
	return o->kind == EMU_OPND_GPR && o->reg < 16 && o->size == size;
}

emu_handler emu_fast_handler(const struct emu_insn *in, int mode)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	unsigned size = d->size, z;

	if (in->prefixes & EMU_PFX_LOCK)
		return NULL;
	if ((in->op == EMU_OP_PUSH || in->op == EMU_OP_POP) &&
	    mode == EMU_MODE_LONG64 && in->nr_opnds == 1 && in->opsize == 8 &&
	    gpr(d, 8))
		return in->op == EMU_OP_PUSH ? f_push_r8 : f_pop_r8;
	if (in->op == EMU_OP_CALL && mode == EMU_MODE_LONG64 &&
	    in->opsize == 8 && in->nr_opnds >= 1 && d->kind == EMU_OPND_REL)
		return f_call_rel64;
	if (in->op == EMU_OP_RET && mode == EMU_MODE_LONG64 &&
	    in->opsize == 8 && in->nr_opnds == 0)
		return f_ret64;
	if (in->op == EMU_OP_JCC)
		return mode == EMU_MODE_LONG64 && in->nr_opnds >= 1 &&
		       d->kind == EMU_OPND_REL && in->opsize == 8 ?
		       f_jcc64 : NULL;
	if (size != 4 && size != 8)
		return NULL;
	z = size == 8;
	if (in->nr_opnds == 1 && gpr(d, size)) {
		switch (in->op) {
		case EMU_OP_MUL: return z ? f_mul_r8 : f_mul_r4;
		case EMU_OP_INC: return z ? f_inc_r8 : f_inc_r4;
		case EMU_OP_DEC: return z ? f_dec_r8 : f_dec_r4;
		default: return NULL;
		}
	}
	if (in->nr_opnds < 2)
		return NULL;
	if (in->op == EMU_OP_MOV) {
		if (gpr(d, size) && gpr(s, size))
			return z ? f_mov_rr8 : f_mov_rr4;
		if (gpr(d, size) && s->kind == EMU_OPND_IMM)
			return z ? f_mov_ri8 : f_mov_ri4;
		if (gpr(d, size) && s->kind == EMU_OPND_MEM && s->size == size)
			return z ? f_mov_rm8 : f_mov_rm4;
		if (d->kind == EMU_OPND_MEM && gpr(s, size))
			return z ? f_mov_mr8 : f_mov_mr4;
		if (d->kind == EMU_OPND_MEM && s->kind == EMU_OPND_IMM)
			return z ? f_mov_mi8 : f_mov_mi4;
		return NULL;
	}
	if (d->kind == EMU_OPND_MEM && in->nr_opnds == 2 &&
	    (gpr(s, size) || s->kind == EMU_OPND_IMM)) {
		switch (in->op) {
		case EMU_OP_ADD: case EMU_OP_ADC: case EMU_OP_SUB:
		case EMU_OP_SBB: case EMU_OP_CMP: case EMU_OP_AND:
		case EMU_OP_OR: case EMU_OP_XOR: case EMU_OP_TEST:
			return z ? f_alu_m8 : f_alu_m4;
		default:
			return NULL;
		}
	}
	if (!gpr(d, size))
		return NULL;
	switch (in->op) {
	case EMU_OP_LEA:
		return s->kind == EMU_OPND_MEM && in->nr_opnds == 2 ?
		       (z ? f_lea8 : f_lea4) : NULL;
	case EMU_OP_MOVZX:
		if (in->nr_opnds != 2 || (s->size != 1 && s->size != 2))
			return NULL;
		if (s->kind == EMU_OPND_GPR && s->reg < 16)
			return f_movzx_rr;
		return s->kind == EMU_OPND_MEM ? f_movzx_rm : NULL;
	case EMU_OP_MOVSX: case EMU_OP_MOVSXD:
		if (in->nr_opnds != 2 || s->size >= size ||
		    (s->size != 1 && s->size != 2 && s->size != 4))
			return NULL;
		if (s->kind == EMU_OPND_GPR && s->reg < 16)
			return z ? f_movsx_rr8 : f_movsx_rr4;
		return s->kind == EMU_OPND_MEM ? (z ? f_movsx_rm8 : f_movsx_rm4) :
		       NULL;
	case EMU_OP_CMOV:
		return gpr(s, size) && in->nr_opnds == 2 ?
		       (z ? f_cmov_rr8 : f_cmov_rr4) : NULL;
	case EMU_OP_IMUL:
		if (!gpr(s, size))
			return NULL;
		if (in->nr_opnds == 3 && in->opnd[2].kind != EMU_OPND_IMM)
			return NULL;
		return z ? f_imul_rr8 : f_imul_rr4;
	case EMU_OP_ROL: case EMU_OP_ROR:
		if (in->nr_opnds != 2 || s->kind != EMU_OPND_IMM)
			return NULL;
		return in->op == EMU_OP_ROL ? (z ? f_rol_ri8 : f_rol_ri4) :
					      (z ? f_ror_ri8 : f_ror_ri4);
	case EMU_OP_SHL: case EMU_OP_SHR: case EMU_OP_SAR:
		if (in->nr_opnds != 2 || s->kind != EMU_OPND_IMM)
			return NULL;
		return in->op == EMU_OP_SHL ? (z ? f_shl_ri8 : f_shl_ri4) :
		       in->op == EMU_OP_SHR ? (z ? f_shr_ri8 : f_shr_ri4) :
					      (z ? f_sar_ri8 : f_sar_ri4);
	default:
		break;
	}
	{
		const emu_handler (*t)[2];
		int form;

		switch (in->op) {
		case EMU_OP_ADD: t = alu_add; break;
		case EMU_OP_ADC: t = alu_adc; break;
		case EMU_OP_SUB: t = alu_sub; break;
		case EMU_OP_SBB: t = alu_sbb; break;
		case EMU_OP_CMP: t = alu_cmp; break;
		case EMU_OP_AND: t = alu_and; break;
		case EMU_OP_OR:  t = alu_or; break;
		case EMU_OP_XOR: t = alu_xor; break;
		case EMU_OP_TEST: t = alu_test; break;
		default: return NULL;
		}
		if (in->nr_opnds != 2)
			return NULL;
		if (gpr(s, size))
			form = 0;
		else if (s->kind == EMU_OPND_IMM)
			form = 1;
		else if (s->kind == EMU_OPND_MEM && s->size == size)
			form = 2;
		else
			return NULL;
		return t[form][z];
	}
}
