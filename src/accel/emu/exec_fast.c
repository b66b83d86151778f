/*
 * exec_fast.c - specialised threaded handlers (blocks.h) for the hottest
 * instruction forms in 64-bit mode, chosen once per instruction when the
 * block cache decodes it (emu_fast_handler(), called from blocks.c).
 *
 * Each one is the generic handler (exec_alu.c, exec_move.c, ...) with the
 * operand kinds and the operand size fixed: 32 or 64-bit general registers
 * 0-15, immediates, or memory that hits the TLB on a RAM page.  Anything
 * else -- a TLB miss, MMIO, an access crossing a page, any fault -- goes
 * to emu_t_generic(), which runs the generic handler for the whole
 * instruction, so the fast paths never raise anything themselves.  They
 * must leave exactly the state the generic handler would, lazy-flag
 * record included (the unit tests run both paths).
 */
#include <string.h>

#include "accel/emu/blocks.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"

#define M4 0xffffffffull
#define M8 (~0ull)

#define TH(name) \
	static int name(struct emu_cpu *cpu, const struct emu_slot *s, \
			uint64_t rip)
/* How a memory handler computes its operand's linear address, fixed per
 * copy (ea_kind() picks one when the block is built): EA_GEN the general
 * way (emu_ea(), FS/GS bases); the others only with 64-bit addressing:
 * [base + disp], [base + index * scale + disp] and [rip + disp] without
 * an FS/GS override, and FS:/GS:[disp] (per-CPU data). */
enum { EA_GEN, EA_BASE, EA_BIS, EA_RIP, EA_SEG, EA_KINDS };

/* A handler with a memory operand, one copy per address kind: `name`
 * (EA_GEN), name##_b, _x, _r, _s. */
#define TH_MEM(name)                                                          \
	static inline __attribute__((always_inline)) int                      \
	name##_(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip,  \
		const int eak);                                               \
	TH(name) { return name##_(cpu, s, rip, EA_GEN); }                     \
	TH(name##_b) { return name##_(cpu, s, rip, EA_BASE); }                \
	TH(name##_x) { return name##_(cpu, s, rip, EA_BIS); }                 \
	TH(name##_r) { return name##_(cpu, s, rip, EA_RIP); }                 \
	TH(name##_s) { return name##_(cpu, s, rip, EA_SEG); }                 \
	static inline __attribute__((always_inline)) int                      \
	name##_(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip,  \
		const int eak)

/* The copies of a TH_MEM handler, indexed by address kind. */
#define MEM_COPIES(name) { name, name##_b, name##_x, name##_r, name##_s }

/* A flag-setting handler in two copies: `name` records the flags,
 * `name##_nf` does not, for an instruction whose flags the block
 * overwrites before anything can read them (blocks.c decides from
 * emu_flags_effect(); F says which copy the body is). */
#define TH_F(name)                                                            \
	static inline __attribute__((always_inline)) int                      \
	name##_(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip,  \
		const bool F);                                                \
	TH(name) { return name##_(cpu, s, rip, true); }                       \
	TH(name##_nf) { return name##_(cpu, s, rip, false); }                 \
	static inline __attribute__((always_inline)) int                      \
	name##_(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip,  \
		const bool F)

/* lz() in a TH_F body. */
#define LZ(...) do { if (F) lz(__VA_ARGS__); } while (0)

/* The address of the next instruction. */
#define NEXT (rip + s->in.len)
/* Fall through to the next slot. */
#define CONT() EMU_T_NEXT(cpu, s, NEXT)
/* The generic handler runs the instruction instead. */
#define SLOW() return emu_t_generic(cpu, s, rip)
/* After a store: leave if it hit the block's own page. */
#define CONT_W()                                                              \
	do {                                                                  \
		if (__builtin_expect(emu_t_smc(cpu), 0))                      \
			return emu_t_smc_exit(cpu, s, NEXT);                  \
		CONT();                                                       \
	} while (0)

static inline uint64_t src_imm(const struct emu_insn *in, uint64_t m)
{
	return (uint64_t)in->opnd[1].val & m;
}

static inline void wr(struct emu_cpu *cpu, unsigned reg, uint64_t m,
		      uint64_t v)
{
	cpu->gpr[reg] = v & m; /* a 32-bit write zero-extends */
}

/* General register `reg` as S bytes (AH..BH too when S = 1): the
 * selection below guarantees reg < 16 for the 4 and 8-byte forms. */
static inline __attribute__((always_inline)) uint64_t
rd(const struct emu_cpu *cpu, unsigned reg, unsigned S)
{
	if (S >= 4)
		return cpu->gpr[reg] & emu_mask(S);
	return emu_reg_read(cpu, reg, S);
}

static inline __attribute__((always_inline)) void
wrs(struct emu_cpu *cpu, unsigned reg, unsigned S, uint64_t v)
{
	if (S == 8)
		cpu->gpr[reg] = v;
	else if (S == 4)
		cpu->gpr[reg] = (uint32_t)v;
	else
		emu_reg_write(cpu, reg, S, v);
}

/* The permission bits of `acc` at the current privilege. */
#define NEED(acc) emu_tlb_need(EMU_ACC_##acc, cpu->cpl == 3)

/* The host byte behind a data access of `size` bytes at linear `lin`
 * that hits the TLB with the permission bits `need` and stays inside one
 * RAM page, or NULL: emu_mem_read()/emu_mem_write()'s fast path
 * (mem.c: fast64()) without the calls.  *ep: the TLB entry. */
static inline __attribute__((always_inline)) uint8_t *
fhost_lin(struct emu_cpu *cpu, uint64_t lin, unsigned size, unsigned need,
	  const struct emu_tlb_entry **ep)
{
	const struct emu_tlb_entry *e;

	/* No canonical check: the TLB holds only canonical pages (mmu.h),
	 * so a non-canonical address misses and the slow path faults. */
	if ((lin & 0xfff) + size > 0x1000)
		return NULL;
	e = emu_tlb_hit(cpu, lin, need);
	if (!e || !e->host)
		return NULL;
	*ep = e;
	return e->host + (lin & 0xfff);
}

/* Whether the page of TLB entry `e`, just stored to, holds decoded code
 * (emu_code_note_write() without finding the page: the entry knows it). */
static inline __attribute__((always_inline)) bool
fcode(const struct emu_cpu *cpu, const struct emu_tlb_entry *e)
{
	return e->code && atomic_load_explicit(&cpu->code->holds[e->code - 1],
					       memory_order_relaxed);
}

/* A store by `s` hit a page holding code: drop its blocks, then go on
 * as the store's handler would (leaving the block if it was this one's
 * page).  Out of line, so the storing handlers make no call. */
static int t_wrote_code(struct emu_cpu *cpu, const struct emu_slot *s,
			uint64_t rip, uint32_t code)
{
	emu_code_map_invalidate(cpu->code, code - 1);
	if (emu_t_smc(cpu))
		return emu_t_smc_exit(cpu, s, rip + s->in.len);
	EMU_T_NEXT(cpu, s, rip + s->in.len);
}

/* fhost_lin() of memory operand `o` (`next`: the RIP-relative base;
 * eak: the address kind, see TH_MEM). */
static inline __attribute__((always_inline)) uint8_t *
fhost(struct emu_cpu *cpu, const struct emu_insn *in, const struct emu_opnd *o,
      unsigned size, uint64_t next, unsigned need,
      const struct emu_tlb_entry **ep, int eak)
{
	uint64_t lin = (uint64_t)o->val;

	switch (eak) {
	case EA_BASE:
		lin += cpu->gpr[o->base];
		break;
	case EA_BIS:
		lin += cpu->gpr[o->base] + cpu->gpr[o->index] * o->scale;
		break;
	case EA_RIP:
		lin += next;
		break;
	case EA_SEG:
		lin += cpu->seg[o->seg].base;
		break;
	default:
		lin = emu_ea(cpu, in, o, next);
		if (o->seg == EMU_SEG_FS || o->seg == EMU_SEG_GS)
			lin += cpu->seg[o->seg].base;
		break;
	}
	return fhost_lin(cpu, lin, size, need, ep);
}

static inline __attribute__((always_inline)) uint64_t
ld(const uint8_t *h, unsigned size)
{
	switch (size) {
	case 1: return *h;
	case 2: { uint16_t t; memcpy(&t, h, 2); return t; }
	case 4: { uint32_t t; memcpy(&t, h, 4); return t; }
	default: { uint64_t t; memcpy(&t, h, 8); return t; }
	}
}

static inline __attribute__((always_inline)) void
st(uint8_t *h, unsigned size, uint64_t v)
{
	switch (size) {
	case 1: *h = (uint8_t)v; break;
	case 2: { uint16_t t = (uint16_t)v; memcpy(h, &t, 2); break; }
	case 4: { uint32_t t = (uint32_t)v; memcpy(h, &t, 4); break; }
	default: memcpy(h, &v, 8); break;
	}
}

/* Load `size` bytes of memory operand `o` into v, or run the instruction
 * through the generic handler (which faults or takes the slow path). */
#define FLOAD(o, size, v)                                                     \
	do {                                                                  \
		const struct emu_tlb_entry *e_;                               \
		const uint8_t *h_ = fhost(cpu, &s->in, (o), (size), NEXT,     \
					  NEED(READ), &e_, eak);              \
		if (__builtin_expect(!h_, 0))                                 \
			SLOW();                                               \
		(v) = ld(h_, (size));                                         \
	} while (0)

/* Store, likewise. */
#define FSTORE(o, size, v)                                                    \
	do {                                                                  \
		const struct emu_tlb_entry *e_;                               \
		uint8_t *h_ = fhost(cpu, &s->in, (o), (size), NEXT,           \
				    NEED(WRITE), &e_, eak);                   \
		if (__builtin_expect(!h_, 0))                                 \
			SLOW();                                               \
		st(h_, (size), (v));                                          \
		if (__builtin_expect(fcode(cpu, e_), 0))                      \
			return t_wrote_code(cpu, s, rip, e_->code);           \
	} while (0)

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

/* Condition `cc` (as emu_cond()) computed straight from the record for
 * the conditions and records branches meet most (CMP/SUB, logic/TEST, Z
 * and S after anything): 1 or 0, or -1 when emu_cond() must evaluate
 * it. */
static inline __attribute__((always_inline)) int
fcond_quick(const struct emu_cpu *cpu, unsigned cc)
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
			return -1;
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
			return -1;
		}
		return r ^ (cc & 1);
	}
	/* ZF and SF come from the result for every other record (flags.c)
	 * but eager flags and rotates; CF of an ADD is a compare. */
	if (lf->op != EMU_LF_NONE && lf->op != EMU_LF_ROT) {
		switch (cc >> 1) {
		case 1:
			if (lf->op != EMU_LF_ADD)
				return -1;
			r = lf->res < lf->src1;
			break;
		case 2: r = lf->res == 0; break;
		case 4: r = emu_msb(lf->res, lf->size); break;
		default:
			return -1;
		}
		return r ^ (cc & 1);
	}
	return -1;
}

static inline __attribute__((always_inline)) bool
fcond(const struct emu_cpu *cpu, unsigned cc)
{
	int r = fcond_quick(cpu, cc);

	return r < 0 ? emu_cond(cpu, cc) : r;
}

/* ---- ALU: ADD ADC SUB SBB CMP AND OR XOR TEST ------------------------- */

/* `a` op `b` of `size` bytes, the flags recorded if F; *w: whether the
 * result is written back (not for CMP and TEST). */
static inline __attribute__((always_inline)) uint64_t
alu(struct emu_cpu *cpu, unsigned op, unsigned S, uint64_t M, uint64_t a,
    uint64_t b, bool *w, const bool F)
{
	uint64_t r, aux;

	*w = true;
	switch (op) {
	case EMU_OP_ADD:
		r = a + b;
		LZ(cpu, EMU_LF_ADD, S, M, r, a, b, 0);
		return r;
	case EMU_OP_ADC:
		aux = emu_flag_cf(cpu);
		r = a + b + aux;
		LZ(cpu, EMU_LF_ADC, S, M, r, a, b, aux);
		return r;
	case EMU_OP_SUB:
		r = a - b;
		LZ(cpu, EMU_LF_SUB, S, M, r, a, b, 0);
		return r;
	case EMU_OP_SBB:
		aux = emu_flag_cf(cpu);
		r = a - b - aux;
		LZ(cpu, EMU_LF_SBB, S, M, r, a, b, aux);
		return r;
	case EMU_OP_CMP:
		*w = false;
		LZ(cpu, EMU_LF_SUB, S, M, a - b, a, b, 0);
		return 0;
	case EMU_OP_AND:
		r = a & b;
		LZ(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		return r;
	case EMU_OP_OR:
		r = a | b;
		LZ(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		return r;
	case EMU_OP_XOR:
		r = a ^ b;
		LZ(cpu, EMU_LF_LOGIC, S, M, r, 0, 0, 0);
		return r;
	default: /* TEST */
		*w = false;
		LZ(cpu, EMU_LF_LOGIC, S, M, a & b, 0, 0, 0);
		return 0;
	}
}

/* reg op= b */
#define ALU_REG(OPK, S, FL)                                                   \
	do {                                                                  \
		unsigned d_ = s->in.opnd[0].reg;                              \
		bool w_;                                                      \
		uint64_t r_ = alu(cpu, OPK, S, emu_mask(S), rd(cpu, d_, S),   \
				  b, &w_, FL);                                \
		if (w_)                                                       \
			wrs(cpu, d_, S, r_);                                  \
		CONT();                                                       \
	} while (0)

/* op [mem], reg/imm (no LOCK): a TLB hit that allows both the read and
 * the write updates the host bytes in place; CMP and TEST only read. */
#define ALU_MEM(OPK, S)                                                       \
	do {                                                                  \
		const struct emu_opnd *o_ = &s->in.opnd[1];                   \
		uint64_t b = o_->kind == EMU_OPND_GPR ? rd(cpu, o_->reg, S) : \
			     (uint64_t)o_->val & emu_mask(S);                 \
		const struct emu_tlb_entry *e;                                \
		uint64_t a, r;                                                \
		uint8_t *h;                                                   \
		bool w;                                                       \
		if (OPK == EMU_OP_CMP || OPK == EMU_OP_TEST) {                \
			FLOAD(&s->in.opnd[0], S, a);                          \
			alu(cpu, OPK, S, emu_mask(S), a, b, &w, true);        \
			CONT();                                               \
		}                                                             \
		h = fhost(cpu, &s->in, &s->in.opnd[0], S, NEXT,               \
			  NEED(READ) | NEED(WRITE), &e, eak);                 \
		if (!h)                                                       \
			SLOW();                                               \
		a = ld(h, S);                                                 \
		r = alu(cpu, OPK, S, emu_mask(S), a, b, &w, true);            \
		st(h, S, r);                                                  \
		if (__builtin_expect(fcode(cpu, e), 0))                       \
			return t_wrote_code(cpu, s, rip, e->code);            \
		CONT_W();                                                     \
	} while (0)

/* The four forms (reg op reg, reg op imm, reg op mem, mem op reg/imm) of
 * one operation at operand size S. */
#define ALU_SIZE(name, OPK, S)                                                \
TH_F(f_##name##_rr##S)                                                        \
{                                                                             \
	uint64_t b = rd(cpu, s->in.opnd[1].reg, S);                           \
	ALU_REG(OPK, S, F);                                                   \
}                                                                             \
TH_F(f_##name##_ri##S)                                                        \
{                                                                             \
	uint64_t b = src_imm(&s->in, emu_mask(S));                            \
	ALU_REG(OPK, S, F);                                                   \
}                                                                             \
TH_MEM(f_##name##_rm##S)                                                      \
{                                                                             \
	uint64_t b;                                                           \
	FLOAD(&s->in.opnd[1], S, b);                                          \
	ALU_REG(OPK, S, true);                                                \
}                                                                             \
TH_MEM(f_##name##_m##S)                                                       \
{                                                                             \
	ALU_MEM(OPK, S);                                                      \
}

#define ALU_FORMS(name, OPK)                                                  \
ALU_SIZE(name, OPK, 1)                                                        \
ALU_SIZE(name, OPK, 2)                                                        \
ALU_SIZE(name, OPK, 4)                                                        \
ALU_SIZE(name, OPK, 8)                                                        \
static const emu_thandler alu_##name##_reg[4][4] = {                          \
	{ f_##name##_rr1, f_##name##_rr2, f_##name##_rr4, f_##name##_rr8 },   \
	{ f_##name##_ri1, f_##name##_ri2, f_##name##_ri4, f_##name##_ri8 },   \
	{ f_##name##_rr1_nf, f_##name##_rr2_nf, f_##name##_rr4_nf,            \
	  f_##name##_rr8_nf },                                                \
	{ f_##name##_ri1_nf, f_##name##_ri2_nf, f_##name##_ri4_nf,            \
	  f_##name##_ri8_nf },                                                \
};                                                                            \
static const emu_thandler alu_##name##_mem[2][EA_KINDS][4] = {                \
	{ ALU_COPIES(name, rm) },                                             \
	{ ALU_COPIES(name, m) },                                              \
};

/* [kind][size] of the TH_MEM forms of one operation. */
#define ALU_COPIES(name, form)                                                \
	ALU_KIND(name, form, ), ALU_KIND(name, form, _b),                     \
	ALU_KIND(name, form, _x), ALU_KIND(name, form, _r),                   \
	ALU_KIND(name, form, _s)
#define ALU_KIND(name, form, k)                                               \
	{ f_##name##_##form##1##k, f_##name##_##form##2##k,                   \
	  f_##name##_##form##4##k, f_##name##_##form##8##k }

ALU_FORMS(add, EMU_OP_ADD)
ALU_FORMS(adc, EMU_OP_ADC)
ALU_FORMS(sub, EMU_OP_SUB)
ALU_FORMS(sbb, EMU_OP_SBB)
ALU_FORMS(cmp, EMU_OP_CMP)
ALU_FORMS(and, EMU_OP_AND)
ALU_FORMS(or, EMU_OP_OR)
ALU_FORMS(xor, EMU_OP_XOR)
ALU_FORMS(test, EMU_OP_TEST)

/* ---- MOV, LEA, CMOVcc --------------------------------------------------- */

#define SIZED(name, ...)                                                      \
TH(name##8)                                                                   \
{                                                                             \
	const uint64_t M = M8;                                                \
	const unsigned S = 8;                                                 \
	const struct emu_insn *in = &s->in;                                   \
	(void)S; (void)M; (void)in;                                           \
	__VA_ARGS__                                                           \
}                                                                             \
TH(name##4)                                                                   \
{                                                                             \
	const uint64_t M = M4;                                                \
	const unsigned S = 4;                                                 \
	const struct emu_insn *in = &s->in;                                   \
	(void)S; (void)M; (void)in;                                           \
	__VA_ARGS__                                                           \
}

/* SIZED() with TH_F copies. */
#define SIZED_F(name, ...)                                                    \
TH_F(name##8)                                                                 \
{                                                                             \
	const uint64_t M = M8;                                                \
	const unsigned S = 8;                                                 \
	const struct emu_insn *in = &s->in;                                   \
	(void)S; (void)M; (void)in;                                           \
	__VA_ARGS__                                                           \
}                                                                             \
TH_F(name##4)                                                                 \
{                                                                             \
	const uint64_t M = M4;                                                \
	const unsigned S = 4;                                                 \
	const struct emu_insn *in = &s->in;                                   \
	(void)S; (void)M; (void)in;                                           \
	__VA_ARGS__                                                           \
}

/* The same body at operand sizes 1, 2, 4 and 8 (register operands of
 * any size through rd()/wrs()). */
#define SIZED_ONE(name, SZ, ...)                                              \
TH(name##SZ)                                                                  \
{                                                                             \
	const unsigned S = SZ;                                                \
	const struct emu_insn *in = &s->in;                                   \
	__VA_ARGS__                                                           \
}
#define SIZED_ALL(name, ...)                                                  \
	SIZED_ONE(name, 1, __VA_ARGS__)                                       \
	SIZED_ONE(name, 2, __VA_ARGS__)                                       \
	SIZED_ONE(name, 4, __VA_ARGS__)                                       \
	SIZED_ONE(name, 8, __VA_ARGS__)                                       \
static const emu_thandler name[4] = { name##1, name##2, name##4, name##8 };
#define SIZED_ONE_MEM(name, SZ, ...)                                          \
TH_MEM(name##SZ)                                                              \
{                                                                             \
	const unsigned S = SZ;                                                \
	const struct emu_insn *in = &s->in;                                   \
	__VA_ARGS__                                                           \
}
/* The same, with a memory operand: name[address kind][size]. */
#define SIZED_ALL_MEM(name, ...)                                              \
	SIZED_ONE_MEM(name, 1, __VA_ARGS__)                                   \
	SIZED_ONE_MEM(name, 2, __VA_ARGS__)                                   \
	SIZED_ONE_MEM(name, 4, __VA_ARGS__)                                   \
	SIZED_ONE_MEM(name, 8, __VA_ARGS__)                                   \
static const emu_thandler name[EA_KINDS][4] = {                               \
	{ name##1, name##2, name##4, name##8 },                               \
	{ name##1_b, name##2_b, name##4_b, name##8_b },                       \
	{ name##1_x, name##2_x, name##4_x, name##8_x },                       \
	{ name##1_r, name##2_r, name##4_r, name##8_r },                       \
	{ name##1_s, name##2_s, name##4_s, name##8_s },                       \
};

SIZED_ALL(f_mov_rr, {
	wrs(cpu, in->opnd[0].reg, S, rd(cpu, in->opnd[1].reg, S));
	CONT();
})

SIZED_ALL(f_mov_ri, {
	wrs(cpu, in->opnd[0].reg, S, (uint64_t)in->opnd[1].val & emu_mask(S));
	CONT();
})

SIZED_ALL_MEM(f_mov_rm, {
	uint64_t v;

	FLOAD(&in->opnd[1], S, v);
	wrs(cpu, in->opnd[0].reg, S, v);
	CONT();
})

SIZED_ALL_MEM(f_mov_mr, {
	FSTORE(&in->opnd[0], S, rd(cpu, in->opnd[1].reg, S));
	CONT_W();
})

SIZED_ALL_MEM(f_mov_mi, {
	FSTORE(&in->opnd[0], S, (uint64_t)in->opnd[1].val);
	CONT_W();
})

/* SETcc m8 (SETcc r8 below, with CMOVcc) */
TH_MEM(f_set_m)
{
	FSTORE(&s->in.opnd[0], 1, fcond(cpu, s->in.cc));
	CONT_W();
}

TH(f_nop)
{
	CONT();
}

/* NOT / NEG r */
SIZED_ALL(f_not_r, {
	unsigned d = in->opnd[0].reg;

	wrs(cpu, d, S, ~rd(cpu, d, S));
	CONT();
})

/* NEG r: name[!F][size] */
#define SIZED_ONE_F(name, SZ, ...)                                            \
TH_F(name##SZ)                                                                \
{                                                                             \
	const unsigned S = SZ;                                                \
	const struct emu_insn *in = &s->in;                                   \
	__VA_ARGS__                                                           \
}
#define NEG_BODY {                                                             \
	unsigned d = in->opnd[0].reg;                                         \
	uint64_t a = rd(cpu, d, S);                                           \
									      \
	LZ(cpu, EMU_LF_SUB, S, emu_mask(S), 0 - a, 0, a, 0);                  \
	wrs(cpu, d, S, 0 - a);                                                \
	CONT();                                                               \
}
SIZED_ONE_F(f_neg_r, 1, NEG_BODY)
SIZED_ONE_F(f_neg_r, 2, NEG_BODY)
SIZED_ONE_F(f_neg_r, 4, NEG_BODY)
SIZED_ONE_F(f_neg_r, 8, NEG_BODY)
static const emu_thandler f_neg_r[2][4] = {
	{ f_neg_r1, f_neg_r2, f_neg_r4, f_neg_r8 },
	{ f_neg_r1_nf, f_neg_r2_nf, f_neg_r4_nf, f_neg_r8_nf },
};

SIZED(f_lea, {
	wr(cpu, in->opnd[0].reg, M, emu_ea(cpu, in, &in->opnd[1], NEXT));
	CONT();
})

/* CMOVcc r, r and SETcc r8: one copy per condition and size (like Jcc),
 * and a shared one for the records fcond_quick() leaves to emu_cond(). */
static inline __attribute__((always_inline)) int
cmov_rr(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip,
	uint64_t M, bool c)
{
	unsigned d = s->in.opnd[0].reg;

	wr(cpu, d, M, c ? cpu->gpr[s->in.opnd[1].reg] : cpu->gpr[d]);
	CONT();
}

TH(f_cmov_rr4_cond)
{
	return cmov_rr(cpu, s, rip, M4, emu_cond(cpu, s->in.cc));
}

TH(f_cmov_rr8_cond)
{
	return cmov_rr(cpu, s, rip, M8, emu_cond(cpu, s->in.cc));
}

TH(f_set_r_cond)
{
	wrs(cpu, s->in.opnd[0].reg, 1, emu_cond(cpu, s->in.cc));
	CONT();
}

#define CC_COPIES(CC)                                                         \
TH(f_cmov_rr4_##CC)                                                           \
{                                                                             \
	int c = fcond_quick(cpu, CC);                                         \
									      \
	if (c < 0)                                                            \
		return f_cmov_rr4_cond(cpu, s, rip);                          \
	return cmov_rr(cpu, s, rip, M4, c);                                   \
}                                                                             \
TH(f_cmov_rr8_##CC)                                                           \
{                                                                             \
	int c = fcond_quick(cpu, CC);                                         \
									      \
	if (c < 0)                                                            \
		return f_cmov_rr8_cond(cpu, s, rip);                          \
	return cmov_rr(cpu, s, rip, M8, c);                                   \
}                                                                             \
TH(f_set_r_##CC)                                                              \
{                                                                             \
	int c = fcond_quick(cpu, CC);                                         \
									      \
	if (c < 0)                                                            \
		return f_set_r_cond(cpu, s, rip);                             \
	wrs(cpu, s->in.opnd[0].reg, 1, (uint64_t)c);                          \
	CONT();                                                               \
}
CC_COPIES(0) CC_COPIES(1) CC_COPIES(2) CC_COPIES(3) CC_COPIES(4)
CC_COPIES(5) CC_COPIES(6) CC_COPIES(7) CC_COPIES(8) CC_COPIES(9)
CC_COPIES(10) CC_COPIES(11) CC_COPIES(12) CC_COPIES(13) CC_COPIES(14)
CC_COPIES(15)

#define BY_CC(name) {                                                         \
	name##_0, name##_1, name##_2, name##_3, name##_4, name##_5,           \
	name##_6, name##_7, name##_8, name##_9, name##_10, name##_11,         \
	name##_12, name##_13, name##_14, name##_15 }
static const emu_thandler f_cmov_rr[2][16] = {
	BY_CC(f_cmov_rr4), BY_CC(f_cmov_rr8),
};
static const emu_thandler f_set_r[16] = BY_CC(f_set_r);

/* MOVZX r32/r64, r/m8 and r/m16 (the destination is 4 or 8 bytes: the
 * zero-extended value is the whole register either way). */
TH(f_movzx_rr)
{
	cpu->gpr[s->in.opnd[0].reg] = cpu->gpr[s->in.opnd[1].reg] &
				      emu_mask(s->in.opnd[1].size);
	CONT();
}

TH_MEM(f_movzx_rm8)
{
	uint64_t v;

	FLOAD(&s->in.opnd[1], 1, v);
	cpu->gpr[s->in.opnd[0].reg] = v;
	CONT();
}

TH_MEM(f_movzx_rm16)
{
	uint64_t v;

	FLOAD(&s->in.opnd[1], 2, v);
	cpu->gpr[s->in.opnd[0].reg] = v;
	CONT();
}

/* MOVSX r32/r64, r/m8 and r/m16; MOVSXD r64, r/m32. */
SIZED(f_movsx_rr, {
	unsigned ss = in->opnd[1].size;

	wr(cpu, in->opnd[0].reg, M, emu_sext(cpu->gpr[in->opnd[1].reg], ss));
	CONT();
})

TH_MEM(f_movsx_rm)
{
	unsigned ss = s->in.opnd[1].size;
	uint64_t v;

	FLOAD(&s->in.opnd[1], ss, v);
	v = emu_sext(v, ss);
	cpu->gpr[s->in.opnd[0].reg] = s->in.opnd[0].size == 8 ? v : (uint32_t)v;
	CONT();
}

/* ---- IMUL r, r / IMUL r, r, imm, MUL r ------------------------------- */

TH_F(f_imul_rr8)
{
	const struct emu_insn *in = &s->in;
	uint64_t a, b, lo;
	__int128 p;

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
	LZ(cpu, EMU_LF_MUL, 8, M8, lo, 0, 0, p != (__int128)(int64_t)lo);
	CONT();
}

TH_F(f_imul_rr4)
{
	const struct emu_insn *in = &s->in;
	uint64_t a, b;
	int64_t p;

	if (in->nr_opnds == 3) {
		a = cpu->gpr[in->opnd[1].reg];
		b = (uint64_t)in->opnd[2].val;
	} else {
		a = cpu->gpr[in->opnd[0].reg];
		b = cpu->gpr[in->opnd[1].reg];
	}
	p = (int64_t)(int32_t)(uint32_t)a * (int64_t)(int32_t)(uint32_t)b;
	cpu->gpr[in->opnd[0].reg] = (uint32_t)p;
	LZ(cpu, EMU_LF_MUL, 4, M4, (uint64_t)p, 0, 0,
	   p != (int64_t)(int32_t)(uint32_t)p);
	CONT();
}

TH_F(f_mul_r8)
{
	unsigned __int128 p = (unsigned __int128)cpu->gpr[EMU_RAX] *
			      cpu->gpr[s->in.opnd[0].reg];
	uint64_t hi = (uint64_t)(p >> 64);

	cpu->gpr[EMU_RAX] = (uint64_t)p;
	cpu->gpr[EMU_RDX] = hi;
	LZ(cpu, EMU_LF_MUL, 8, M8, (uint64_t)p, 0, 0, hi != 0);
	CONT();
}

TH_F(f_mul_r4)
{
	uint64_t p = (cpu->gpr[EMU_RAX] & M4) *
		     (cpu->gpr[s->in.opnd[0].reg] & M4);

	cpu->gpr[EMU_RAX] = (uint32_t)p;
	cpu->gpr[EMU_RDX] = p >> 32;
	LZ(cpu, EMU_LF_MUL, 4, M4, p, 0, 0, (p >> 32) != 0);
	CONT();
}

/* ---- SHL / SHR / SAR r, imm ------------------------------------------- */

/* The count of an immediate form (C1 /n ib) and of a CL form (D3 /n). */
#define CNT_I ((unsigned)(in->opnd[1].val & 0xff))
#define CNT_C ((unsigned)(cpu->gpr[EMU_RCX] & 0xff))

#define SHIFTS(sfx, CNT)                                                      \
SIZED_F(f_shl_##sfx, {                                                          \
	unsigned d = in->opnd[0].reg;                                         \
	unsigned c = CNT & (S == 8 ? 63 : 31);                                \
	uint64_t v = cpu->gpr[d] & M, r = v << c;                             \
									      \
	if (c)                                                                \
		LZ(cpu, EMU_LF_SHL, S, M, r, v, c, 0);                        \
	wr(cpu, d, M, c ? r : v);                                             \
	CONT();                                                               \
})                                                                            \
SIZED_F(f_shr_##sfx, {                                                          \
	unsigned d = in->opnd[0].reg;                                         \
	unsigned c = CNT & (S == 8 ? 63 : 31);                                \
	uint64_t v = cpu->gpr[d] & M, r = v >> c;                             \
									      \
	if (c)                                                                \
		LZ(cpu, EMU_LF_SHR, S, M, r, v, c, 0);                        \
	wr(cpu, d, M, r);                                                     \
	CONT();                                                               \
})                                                                            \
SIZED_F(f_sar_##sfx, {                                                          \
	unsigned d = in->opnd[0].reg;                                         \
	unsigned c = CNT & (S == 8 ? 63 : 31);                                \
	uint64_t v = cpu->gpr[d] & M;                                         \
	uint64_t r = (uint64_t)((int64_t)emu_sext(v, S) >> c);                \
									      \
	if (c)                                                                \
		LZ(cpu, EMU_LF_SAR, S, M, r, v, c, 0);                        \
	wr(cpu, d, M, c ? r : v);                                             \
	CONT();                                                               \
})

SHIFTS(ri, CNT_I)
SHIFTS(rc, CNT_C)

/* ---- ROL / ROR r, imm (CF and OF recorded, see emu_lazy_rot()) -------- */

SIZED_F(f_rol_ri, {
	unsigned d = in->opnd[0].reg, bits = S * 8;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (bits - 1);
	uint64_t v = cpu->gpr[d] & M, r;

	if (!(in->opnd[1].val & (S == 8 ? 63 : 31))) {
		wr(cpu, d, M, v);
		CONT();
	}
	r = c ? ((v << c) | (v >> (bits - c))) & M : v;
	if (F)
		emu_lazy_rot(cpu, r & 1, ((r >> (bits - 1)) ^ r) & 1);
	wr(cpu, d, M, r);
	CONT();
})

SIZED_F(f_ror_ri, {
	unsigned d = in->opnd[0].reg, bits = S * 8;
	unsigned c = (unsigned)(in->opnd[1].val & 0xff) & (bits - 1);
	uint64_t v = cpu->gpr[d] & M, r;

	if (!(in->opnd[1].val & (S == 8 ? 63 : 31))) {
		wr(cpu, d, M, v);
		CONT();
	}
	r = c ? ((v >> c) | (v << (bits - c))) & M : v;
	if (F)
		emu_lazy_rot(cpu, (r >> (bits - 1)) & 1,
			     ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1);
	wr(cpu, d, M, r);
	CONT();
})

/* ---- INC / DEC r -------------------------------------------------------- */

SIZED_F(f_inc_r, {
	unsigned d = in->opnd[0].reg;
	uint64_t a = cpu->gpr[d] & M;

	LZ(cpu, EMU_LF_INC, S, M, a + 1, a, 1, emu_flag_cf(cpu));
	wr(cpu, d, M, a + 1);
	CONT();
})

SIZED_F(f_dec_r, {
	unsigned d = in->opnd[0].reg;
	uint64_t a = cpu->gpr[d] & M;

	LZ(cpu, EMU_LF_DEC, S, M, a - 1, a, 1, emu_flag_cf(cpu));
	wr(cpu, d, M, a - 1);
	CONT();
})

/* ---- Jcc rel ------------------------------------------------------------ */

/* A branch ends its block, so both ways leave it (the next slot is the
 * end slot), through the block's links.  One copy per condition, so that
 * fcond() folds to the test of that condition. */
#define JCC_BODY(COND)                                                        \
	uint64_t t;                                                           \
									      \
	if (!(COND))                                                          \
		return emu_t_chain(cpu, s, NEXT);                             \
	t = NEXT + (uint64_t)s->in.opnd[0].val;                               \
	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)                        \
		SLOW(); /* #GP */                                             \
	return emu_t_chain(cpu, s, t);

/* The other records: emu_cond(), called from here so that the copies
 * below make no call of their own (and need no stack frame). */
TH(f_jcc64_cond)
{
	JCC_BODY(emu_cond(cpu, s->in.cc))
}

#define JCC(CC)                                                               \
TH(f_jcc64_##CC)                                                              \
{                                                                             \
	int c = fcond_quick(cpu, CC);                                         \
									      \
	if (c < 0)                                                            \
		return f_jcc64_cond(cpu, s, rip);                             \
	JCC_BODY(c)                                                           \
}
JCC(0) JCC(1) JCC(2) JCC(3) JCC(4) JCC(5) JCC(6) JCC(7)
JCC(8) JCC(9) JCC(10) JCC(11) JCC(12) JCC(13) JCC(14) JCC(15)

static const emu_thandler f_jcc64[16] = {
	f_jcc64_0, f_jcc64_1, f_jcc64_2, f_jcc64_3, f_jcc64_4, f_jcc64_5,
	f_jcc64_6, f_jcc64_7, f_jcc64_8, f_jcc64_9, f_jcc64_10, f_jcc64_11,
	f_jcc64_12, f_jcc64_13, f_jcc64_14, f_jcc64_15,
};

/* CMP or TEST (register/immediate, 4 or 8 bytes) followed by the Jcc
 * that ends the block, in one handler for the CMP's slot: the flags are
 * recorded as CMP's handler would (they stay live past the block), the
 * condition comes straight from them, and the Jcc's own slot runs only
 * when something is unusual (a non-canonical target raises #GP there,
 * a condition fcond_quick() leaves to emu_cond()). */
#define FUSED(name, OPK, S, SRC, CC)                                          \
TH(f_##name##_jcc##CC)                                                        \
{                                                                             \
	const struct emu_slot *j = s + 1;                                     \
	uint64_t a = rd(cpu, s->in.opnd[0].reg, S), b = (SRC), next, t;       \
	bool w;                                                               \
	int c;                                                                \
									      \
	alu(cpu, OPK, S, emu_mask(S), a, b, &w, true);                        \
	c = fcond_quick(cpu, CC);                                             \
	if (c < 0)                                                            \
		CONT();                                                       \
	next = NEXT + j->in.len;                                              \
	if (!c)                                                               \
		return emu_t_chain(cpu, j, next);                             \
	t = next + (uint64_t)j->in.opnd[0].val;                               \
	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)                        \
		CONT();                                                       \
	return emu_t_chain(cpu, j, t);                                        \
}
#define FUSED_CC(name, OPK, S, SRC)                                           \
	FUSED(name, OPK, S, SRC, 0) FUSED(name, OPK, S, SRC, 1)               \
	FUSED(name, OPK, S, SRC, 2) FUSED(name, OPK, S, SRC, 3)               \
	FUSED(name, OPK, S, SRC, 4) FUSED(name, OPK, S, SRC, 5)               \
	FUSED(name, OPK, S, SRC, 6) FUSED(name, OPK, S, SRC, 7)               \
	FUSED(name, OPK, S, SRC, 8) FUSED(name, OPK, S, SRC, 9)               \
	FUSED(name, OPK, S, SRC, 10) FUSED(name, OPK, S, SRC, 11)             \
	FUSED(name, OPK, S, SRC, 12) FUSED(name, OPK, S, SRC, 13)             \
	FUSED(name, OPK, S, SRC, 14) FUSED(name, OPK, S, SRC, 15)
#define FUSED_TABLE(name) {                                                   \
	f_##name##_jcc0, f_##name##_jcc1, f_##name##_jcc2, f_##name##_jcc3,   \
	f_##name##_jcc4, f_##name##_jcc5, f_##name##_jcc6, f_##name##_jcc7,   \
	f_##name##_jcc8, f_##name##_jcc9, f_##name##_jcc10, f_##name##_jcc11, \
	f_##name##_jcc12, f_##name##_jcc13, f_##name##_jcc14,                 \
	f_##name##_jcc15 }

#define SRC_R(S) rd(cpu, s->in.opnd[1].reg, S)
#define SRC_I(S) src_imm(&s->in, emu_mask(S))
FUSED_CC(cmp_rr4, EMU_OP_CMP, 4, SRC_R(4))
FUSED_CC(cmp_rr8, EMU_OP_CMP, 8, SRC_R(8))
FUSED_CC(cmp_ri4, EMU_OP_CMP, 4, SRC_I(4))
FUSED_CC(cmp_ri8, EMU_OP_CMP, 8, SRC_I(8))
FUSED_CC(test_rr4, EMU_OP_TEST, 4, SRC_R(4))
FUSED_CC(test_rr8, EMU_OP_TEST, 8, SRC_R(8))
FUSED_CC(test_ri4, EMU_OP_TEST, 4, SRC_I(4))
FUSED_CC(test_ri8, EMU_OP_TEST, 8, SRC_I(8))

/* [CMP, TEST][reg, imm][4, 8 bytes][condition] */
static const emu_thandler f_fused[2][2][2][16] = {
	{ { FUSED_TABLE(cmp_rr4), FUSED_TABLE(cmp_rr8) },
	  { FUSED_TABLE(cmp_ri4), FUSED_TABLE(cmp_ri8) } },
	{ { FUSED_TABLE(test_rr4), FUSED_TABLE(test_rr8) },
	  { FUSED_TABLE(test_ri4), FUSED_TABLE(test_ri8) } },
};

/* JMP rel, JMP r64, JMP m64 */
TH(f_jmp_rel64)
{
	uint64_t t = NEXT + (uint64_t)s->in.opnd[0].val;

	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)
		SLOW(); /* #GP */
	return emu_t_chain(cpu, s, t);
}

TH(f_jmp_r64)
{
	uint64_t t = cpu->gpr[s->in.opnd[0].reg];

	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)
		SLOW(); /* #GP */
	return emu_t_chain(cpu, s, t);
}

TH_MEM(f_jmp_m64)
{
	uint64_t t;

	FLOAD(&s->in.opnd[0], 8, t);
	if ((uint64_t)((int64_t)(t << 16) >> 16) != t)
		SLOW(); /* #GP */
	return emu_t_chain(cpu, s, t);
}

/* ---- PUSH r64 / POP r64, CALL rel / RET --------------------------------- */

static bool canonical48(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* Push 8 bytes through the TLB's host pointer: the entry written (the
 * caller checks fcode()), or NULL when the fast path does not apply (TLB
 * miss, MMIO, a page crossing): the caller then runs the generic
 * handler, which raises any fault. */
static inline __attribute__((always_inline)) const struct emu_tlb_entry *
fpush64(struct emu_cpu *cpu, uint64_t v)
{
	uint64_t sp = cpu->gpr[EMU_RSP] - 8;
	const struct emu_tlb_entry *e;
	uint8_t *h = fhost_lin(cpu, sp, 8, NEED(WRITE), &e);

	if (!h)
		return NULL;
	memcpy(h, &v, 8);
	cpu->gpr[EMU_RSP] = sp;
	return e;
}

/* The 8 bytes at RSP, or NULL; the caller moves RSP (POP RSP and RET
 * differ). */
static inline __attribute__((always_inline)) const uint8_t *
fpeek64(struct emu_cpu *cpu)
{
	const struct emu_tlb_entry *e;

	return fhost_lin(cpu, cpu->gpr[EMU_RSP], 8, NEED(READ), &e);
}

TH(f_push_r8)
{
	const struct emu_tlb_entry *e = fpush64(cpu, cpu->gpr[s->in.opnd[0].reg]);

	if (!e)
		SLOW();
	if (__builtin_expect(fcode(cpu, e), 0))
		return t_wrote_code(cpu, s, rip, e->code);
	CONT_W();
}

TH(f_pop_r8)
{
	const uint8_t *h = fpeek64(cpu);

	if (!h)
		SLOW();
	cpu->gpr[EMU_RSP] += 8;
	/* After RSP: POP RSP loads the value. */
	cpu->gpr[s->in.opnd[0].reg] = ld(h, 8);
	CONT();
}

/* CALL whose return address landed on a page holding code: drop its
 * blocks and leave for the target (a tail call, like t_wrote_code()). */
static int t_call_wrote_code(struct emu_cpu *cpu, const struct emu_slot *s,
			     uint64_t t, uint32_t code)
{
	emu_code_map_invalidate(cpu->code, code - 1);
	return emu_t_leave(cpu, s, t);
}

/* The pushed return address may land on the block's own page; the block
 * ends here anyway. */
TH(f_call_rel64)
{
	uint64_t t = NEXT + (uint64_t)s->in.opnd[0].val;
	const struct emu_tlb_entry *e;

	if (!canonical48(t) || !(e = fpush64(cpu, NEXT)))
		SLOW(); /* raises #GP / #PF */
	if (__builtin_expect(fcode(cpu, e), 0))
		return t_call_wrote_code(cpu, s, t, e->code);
	return emu_t_chain(cpu, s, t);
}

TH(f_ret64)
{
	const uint8_t *h = fpeek64(cpu);
	uint64_t t;

	if (!h)
		SLOW();
	t = ld(h, 8);
	if (!canonical48(t))
		SLOW(); /* #GP */
	cpu->gpr[EMU_RSP] += 8;
	return emu_t_chain(cpu, s, t);
}

/* ---- selection ------------------------------------------------------------ */

/* A general register operand of `size` bytes the fast handlers take:
 * 0-15, or AH..BH at byte size. */
static bool gpr(const struct emu_opnd *o, unsigned size)
{
	return o->kind == EMU_OPND_GPR && o->size == size &&
	       (o->reg < 16 || (size == 1 && o->reg >= EMU_REG_AH &&
				o->reg < EMU_REG_AH + 4));
}

/* The address kind (TH_MEM) for memory operand `o`. */
static int ea_kind(const struct emu_insn *in, const struct emu_opnd *o)
{
	bool fsgs = o->seg == EMU_SEG_FS || o->seg == EMU_SEG_GS;

	if (in->addrsize != 8)
		return EA_GEN;
	if (fsgs)
		return o->base == EMU_REG_NONE && o->index == EMU_REG_NONE ?
		       EA_SEG : EA_GEN;
	if (o->base == EMU_REG_RIP)
		return EA_RIP;
	if (o->base >= 16)
		return EA_GEN;
	if (o->index == EMU_REG_NONE)
		return EA_BASE;
	return o->index < 16 ? EA_BIS : EA_GEN;
}

/* The copy of a TH_MEM handler for memory operand `o`. */
#define MEMH(name, o) (((const emu_thandler[])MEM_COPIES(name))[ea_kind(in, (o))])

/* Index of operand size 1, 2, 4, 8 in the handler tables, or -1. */
static int size_index(unsigned size)
{
	switch (size) {
	case 1: return 0;
	case 2: return 1;
	case 4: return 2;
	case 8: return 3;
	default: return -1;
	}
}

/* The handler or its no-flags copy (TH_F). */
#define FH(name) (nf ? name##_nf : name)

emu_thandler emu_fast_handler(const struct emu_insn *in, int mode, bool nf)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	unsigned size = d->size, z;
	int si = size_index(size);

	if (mode != EMU_MODE_LONG64 || (in->prefixes & EMU_PFX_LOCK))
		return NULL;
	switch (in->op) {
	case EMU_OP_NOP:
		return f_nop;
	case EMU_OP_PUSH: case EMU_OP_POP:
		if (in->nr_opnds != 1 || in->opsize != 8 || !gpr(d, 8))
			return NULL;
		return in->op == EMU_OP_PUSH ? f_push_r8 : f_pop_r8;
	case EMU_OP_CALL:
		return in->opsize == 8 && in->nr_opnds >= 1 &&
		       d->kind == EMU_OPND_REL ? f_call_rel64 : NULL;
	case EMU_OP_RET:
		return in->opsize == 8 && in->nr_opnds == 0 ? f_ret64 : NULL;
	case EMU_OP_JCC:
		return in->nr_opnds >= 1 && d->kind == EMU_OPND_REL &&
		       in->opsize == 8 ? f_jcc64[in->cc & 15] : NULL;
	case EMU_OP_JMP:
		if (in->opsize != 8 || in->nr_opnds < 1)
			return NULL;
		if (d->kind == EMU_OPND_REL)
			return f_jmp_rel64;
		if (gpr(d, 8))
			return f_jmp_r64;
		return d->kind == EMU_OPND_MEM && d->size == 8 ?
		       MEMH(f_jmp_m64, d) : NULL;
	case EMU_OP_SET:
		if (in->nr_opnds != 1 || d->size != 1)
			return NULL;
		if (gpr(d, 1))
			return f_set_r[in->cc & 15];
		return d->kind == EMU_OPND_MEM ? MEMH(f_set_m, d) : NULL;
	case EMU_OP_MOV:
		if (in->nr_opnds != 2 || si < 0)
			return NULL;
		if (gpr(d, size) && gpr(s, size))
			return f_mov_rr[si];
		if (gpr(d, size) && s->kind == EMU_OPND_IMM)
			return f_mov_ri[si];
		if (gpr(d, size) && s->kind == EMU_OPND_MEM && s->size == size)
			return f_mov_rm[ea_kind(in, s)][si];
		if (d->kind == EMU_OPND_MEM && gpr(s, size))
			return f_mov_mr[ea_kind(in, d)][si];
		if (d->kind == EMU_OPND_MEM && s->kind == EMU_OPND_IMM)
			return f_mov_mi[ea_kind(in, d)][si];
		return NULL;
	case EMU_OP_NOT: case EMU_OP_NEG:
		if (in->nr_opnds != 1 || si < 0 || !gpr(d, size))
			return NULL;
		return in->op == EMU_OP_NOT ? f_not_r[si] : f_neg_r[nf][si];
	case EMU_OP_ADD: case EMU_OP_ADC: case EMU_OP_SUB: case EMU_OP_SBB:
	case EMU_OP_CMP: case EMU_OP_AND: case EMU_OP_OR: case EMU_OP_XOR:
	case EMU_OP_TEST: {
		const emu_thandler (*t)[4], (*tm)[EA_KINDS][4];

		switch (in->op) {
		case EMU_OP_ADD: t = alu_add_reg; tm = alu_add_mem; break;
		case EMU_OP_ADC: t = alu_adc_reg; tm = alu_adc_mem; break;
		case EMU_OP_SUB: t = alu_sub_reg; tm = alu_sub_mem; break;
		case EMU_OP_SBB: t = alu_sbb_reg; tm = alu_sbb_mem; break;
		case EMU_OP_CMP: t = alu_cmp_reg; tm = alu_cmp_mem; break;
		case EMU_OP_AND: t = alu_and_reg; tm = alu_and_mem; break;
		case EMU_OP_OR:  t = alu_or_reg; tm = alu_or_mem; break;
		case EMU_OP_XOR: t = alu_xor_reg; tm = alu_xor_mem; break;
		default: t = alu_test_reg; tm = alu_test_mem; break;
		}
		if (in->nr_opnds != 2 || si < 0)
			return NULL;
		if (d->kind == EMU_OPND_MEM)
			return gpr(s, size) || s->kind == EMU_OPND_IMM ?
			       tm[1][ea_kind(in, d)][si] : NULL;
		if (!gpr(d, size))
			return NULL;
		if (gpr(s, size))
			return t[nf ? 2 : 0][si];
		if (s->kind == EMU_OPND_IMM)
			return t[nf ? 3 : 1][si];
		if (s->kind == EMU_OPND_MEM && s->size == size)
			return tm[0][ea_kind(in, s)][si];
		return NULL;
	}
	default:
		break;
	}
	if (size != 4 && size != 8)
		return NULL;
	z = size == 8;
	if (in->nr_opnds == 1 && gpr(d, size)) {
		switch (in->op) {
		case EMU_OP_MUL: return z ? FH(f_mul_r8) : FH(f_mul_r4);
		case EMU_OP_INC: return z ? FH(f_inc_r8) : FH(f_inc_r4);
		case EMU_OP_DEC: return z ? FH(f_dec_r8) : FH(f_dec_r4);
		default: return NULL;
		}
	}
	if (in->nr_opnds < 2 || !gpr(d, size))
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
		if (s->kind != EMU_OPND_MEM)
			return NULL;
		return s->size == 1 ? MEMH(f_movzx_rm8, s) :
				      MEMH(f_movzx_rm16, s);
	case EMU_OP_MOVSX: case EMU_OP_MOVSXD:
		if (in->nr_opnds != 2 || s->size >= size ||
		    (s->size != 1 && s->size != 2 && s->size != 4))
			return NULL;
		if (s->kind == EMU_OPND_GPR && s->reg < 16)
			return z ? f_movsx_rr8 : f_movsx_rr4;
		return s->kind == EMU_OPND_MEM ? MEMH(f_movsx_rm, s) : NULL;
	case EMU_OP_CMOV:
		return gpr(s, size) && in->nr_opnds == 2 ?
		       f_cmov_rr[z][in->cc & 15] : NULL;
	case EMU_OP_IMUL:
		if (!gpr(s, size))
			return NULL;
		if (in->nr_opnds == 3 && in->opnd[2].kind != EMU_OPND_IMM)
			return NULL;
		return z ? FH(f_imul_rr8) : FH(f_imul_rr4);
	case EMU_OP_ROL: case EMU_OP_ROR:
		if (in->nr_opnds != 2 || s->kind != EMU_OPND_IMM)
			return NULL;
		return in->op == EMU_OP_ROL ? (z ? FH(f_rol_ri8) : FH(f_rol_ri4)) :
					      (z ? FH(f_ror_ri8) : FH(f_ror_ri4));
	case EMU_OP_SHL: case EMU_OP_SHR: case EMU_OP_SAR:
		if (in->nr_opnds != 2)
			return NULL;
		if (s->kind == EMU_OPND_IMM)
			return in->op == EMU_OP_SHL ?
				       (z ? FH(f_shl_ri8) : FH(f_shl_ri4)) :
			       in->op == EMU_OP_SHR ?
				       (z ? FH(f_shr_ri8) : FH(f_shr_ri4)) :
				       (z ? FH(f_sar_ri8) : FH(f_sar_ri4));
		if (s->kind != EMU_OPND_GPR || s->reg != EMU_RCX || s->size != 1)
			return NULL;
		return in->op == EMU_OP_SHL ? (z ? FH(f_shl_rc8) : FH(f_shl_rc4)) :
		       in->op == EMU_OP_SHR ? (z ? FH(f_shr_rc8) : FH(f_shr_rc4)) :
					      (z ? FH(f_sar_rc8) : FH(f_sar_rc4));
	default:
		return NULL;
	}
}

void emu_flags_effect(const struct emu_insn *in, unsigned *reads,
		      unsigned *kill, unsigned *touch)
{
	const unsigned all = EMU_FL_STATUS, cf = EMU_FL_CF;
	bool mem = false, known = true;
	unsigned c;

	for (unsigned i = 0; i < in->nr_opnds && i < 3; i++) {
		switch (in->opnd[i].kind) {
		case EMU_OPND_MEM:
			mem = true;
			break;
		case EMU_OPND_GPR: case EMU_OPND_IMM: case EMU_OPND_REL:
			break;
		default:
			known = false;
			break;
		}
	}
	*reads = 0;
	*kill = *touch = 0;
	switch (known ? in->op : EMU_OP_UD) {
	case EMU_OP_LEA: case EMU_OP_NOP:
		return; /* no access even with a memory operand */
	case EMU_OP_MOV: case EMU_OP_MOVZX: case EMU_OP_MOVSX:
	case EMU_OP_MOVSXD: case EMU_OP_NOT: case EMU_OP_XCHG:
	case EMU_OP_BSWAP: case EMU_OP_CBW: case EMU_OP_CWD:
	case EMU_OP_PUSH: case EMU_OP_POP:
	case EMU_OP_JMP: case EMU_OP_CALL: case EMU_OP_RET:
		break;
	case EMU_OP_ADD: case EMU_OP_SUB: case EMU_OP_CMP: case EMU_OP_AND:
	case EMU_OP_OR: case EMU_OP_XOR: case EMU_OP_TEST: case EMU_OP_NEG:
	case EMU_OP_MUL: case EMU_OP_IMUL:
		*kill = *touch = all;
		break;
	case EMU_OP_ADC: case EMU_OP_SBB:
		*reads = cf;
		*kill = *touch = all;
		break;
	case EMU_OP_INC: case EMU_OP_DEC: /* CF kept */
		*kill = *touch = all & ~cf;
		break;
	case EMU_OP_SHL: case EMU_OP_SHR: case EMU_OP_SAR:
	case EMU_OP_ROL: case EMU_OP_ROR: {
		unsigned w = in->op == EMU_OP_ROL || in->op == EMU_OP_ROR ?
			     cf | EMU_FL_OF : all;

		*touch = w;
		/* A zero count (after masking) changes no flag. */
		if (in->nr_opnds < 2)
			c = 1;
		else if (in->opnd[1].kind == EMU_OPND_IMM)
			c = (unsigned)in->opnd[1].val &
			    (in->opnd[0].size == 8 ? 63 : 31);
		else
			c = 0; /* CL: unknown, so no kill */
		if (c)
			*kill = w;
		break;
	}
	default: /* conditions, unknown effects */
		*reads = all;
		*touch = all;
		break;
	}
	switch (in->op) {
	case EMU_OP_PUSH: case EMU_OP_POP: case EMU_OP_CALL: case EMU_OP_RET:
		mem = true;
		break;
	default:
		break;
	}
	if (mem)
		*reads = all; /* may fault: the handler sees RFLAGS */
}

emu_thandler emu_fast_fused(const struct emu_insn *a, const struct emu_insn *b,
			    int mode)
{
	const struct emu_opnd *d = &a->opnd[0], *src = &a->opnd[1];
	unsigned size = d->size;
	int imm;

	if (mode != EMU_MODE_LONG64 || (a->prefixes & EMU_PFX_LOCK) ||
	    (a->op != EMU_OP_CMP && a->op != EMU_OP_TEST) ||
	    a->nr_opnds != 2 || (size != 4 && size != 8) || !gpr(d, size) ||
	    b->op != EMU_OP_JCC || b->nr_opnds < 1 ||
	    b->opnd[0].kind != EMU_OPND_REL || b->opsize != 8)
		return NULL;
	if (gpr(src, size))
		imm = 0;
	else if (src->kind == EMU_OPND_IMM)
		imm = 1;
	else
		return NULL;
	return f_fused[a->op == EMU_OP_TEST][imm][size == 8][b->cc & 15];
}
