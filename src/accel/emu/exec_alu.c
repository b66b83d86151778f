/*
 * exec_alu.c - integer arithmetic and logic: ADD, ADC, SUB, SBB, CMP, AND,
 * OR, XOR, TEST, INC, DEC, NEG, NOT, XADD, CMPXCHG, and the flag
 * instructions CLC, STC, CMC, CLD, STD, LAHF, SAHF (SDM Vol. 2).
 *
 * Every arithmetic form is one pure update function (old, src, aux) ->
 * new that also records the lazy flags (flags.c), run by emu_rmw() on a
 * register or memory destination -- atomically with a LOCK prefix.  Inputs
 * that come from flags or registers the update does not own (ADC/SBB's
 * carry-in, INC/DEC's preserved CF, CMPXCHG's accumulator) are read once
 * before the update and passed as `aux`, because a locked update may run
 * the function several times and must see the same inputs each time.
 *
 * Flags per the SDM: ADD/ADC/SUB/SBB/CMP/NEG/XADD/CMPXCHG define all six;
 * AND/OR/XOR/TEST clear CF and OF and leave AF undefined (we clear it);
 * INC/DEC keep CF; NOT changes none.
 */
#include "accel/emu/exec.h"

static uint64_t f_add(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	uint64_t r = a + b;

	emu_lazy(cpu, EMU_LF_ADD, size, r, a, b, 0);
	return r;
}

static uint64_t f_adc(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	uint64_t r = a + b + aux;

	emu_lazy(cpu, EMU_LF_ADC, size, r, a, b, aux);
	return r;
}

static uint64_t f_sub(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	uint64_t r = a - b;

	emu_lazy(cpu, EMU_LF_SUB, size, r, a, b, 0);
	return r;
}

static uint64_t f_sbb(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	uint64_t r = a - b - aux;

	emu_lazy(cpu, EMU_LF_SBB, size, r, a, b, aux);
	return r;
}

static uint64_t f_and(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_LOGIC, size, a & b, 0, 0, 0);
	return a & b;
}

static uint64_t f_or(struct emu_cpu *cpu, unsigned size, uint64_t a,
		     uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_LOGIC, size, a | b, 0, 0, 0);
	return a | b;
}

static uint64_t f_xor(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_LOGIC, size, a ^ b, 0, 0, 0);
	return a ^ b;
}

static uint64_t f_inc(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_INC, size, a + 1, a, 1, aux);
	return a + 1;
}

static uint64_t f_dec(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_DEC, size, a - 1, a, 1, aux);
	return a - 1;
}

static uint64_t f_neg(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_SUB, size, 0 - a, 0, a, 0);
	return 0 - a;
}

static uint64_t f_not(struct emu_cpu *cpu, unsigned size, uint64_t a,
		      uint64_t b, uint64_t aux)
{
	return ~a;
}

/* CMPXCHG: aux is the accumulator.  The destination is always written
 * (with its own value when the comparison fails), as on hardware. */
static uint64_t f_cmpxchg(struct emu_cpu *cpu, unsigned size, uint64_t a,
			  uint64_t b, uint64_t aux)
{
	emu_lazy(cpu, EMU_LF_SUB, size, aux - a, aux, a, 0);
	return (a & emu_mask(size)) == aux ? b : a;
}

EMU_HANDLER(alu2)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = d->size;
	bool write = true;
	uint64_t src, aux = 0;
	emu_rmw_fn fn;
	int r;

	switch (in->op) {
	case EMU_OP_ADD: fn = f_add; break;
	case EMU_OP_ADC: fn = f_adc; aux = emu_flag_cf(cpu); break;
	case EMU_OP_SUB: fn = f_sub; break;
	case EMU_OP_SBB: fn = f_sbb; aux = emu_flag_cf(cpu); break;
	case EMU_OP_CMP: fn = f_sub; write = false; break;
	case EMU_OP_AND: fn = f_and; break;
	case EMU_OP_OR:  fn = f_or; break;
	case EMU_OP_XOR: fn = f_xor; break;
	case EMU_OP_TEST: fn = f_and; write = false; break;
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
	if (in->nr_opnds < 2)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[1], size, *next, &src);
	if (r)
		return r;
	if (d->kind == EMU_OPND_GPR) {
		/* The common register destination, without the indirect
		 * call through fn. */
		uint64_t a = emu_reg_read(cpu, d->reg, size), v;

		switch (in->op) {
		case EMU_OP_ADD: v = f_add(cpu, size, a, src, aux); break;
		case EMU_OP_ADC: v = f_adc(cpu, size, a, src, aux); break;
		case EMU_OP_SUB: case EMU_OP_CMP:
			v = f_sub(cpu, size, a, src, aux); break;
		case EMU_OP_SBB: v = f_sbb(cpu, size, a, src, aux); break;
		case EMU_OP_OR:  v = f_or(cpu, size, a, src, aux); break;
		case EMU_OP_XOR: v = f_xor(cpu, size, a, src, aux); break;
		default:         v = f_and(cpu, size, a, src, aux); break;
		}
		if (write)
			emu_reg_write(cpu, d->reg, size, v);
		return 0;
	}
	return emu_rmw(cpu, in, d, size, src, aux, *next, fn, write, NULL);
}

EMU_HANDLER(incdec)
{
	return emu_rmw(cpu, in, &in->opnd[0], in->opnd[0].size, 0,
		       emu_flag_cf(cpu), *next,
		       in->op == EMU_OP_INC ? f_inc : f_dec, true, NULL);
}

EMU_HANDLER(neg)
{
	return emu_rmw(cpu, in, &in->opnd[0], in->opnd[0].size, 0, 0, *next,
		       f_neg, true, NULL);
}

EMU_HANDLER(not)
{
	return emu_rmw(cpu, in, &in->opnd[0], in->opnd[0].size, 0, 0, *next,
		       f_not, true, NULL);
}

EMU_HANDLER(xadd)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	unsigned size = d->size;
	uint64_t src, old;
	int r;

	if (s->kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	src = emu_reg_read(cpu, s->reg, size);
	if (d->kind == EMU_OPND_GPR) {
		/* TEMP = SRC + DEST; SRC = DEST; DEST = TEMP (in that order,
		 * which matters when both are the same register). */
		old = emu_reg_read(cpu, d->reg, size);
		emu_reg_write(cpu, s->reg, size, old);
		emu_reg_write(cpu, d->reg, size,
			      f_add(cpu, size, old, src, 0));
		return 0;
	}
	r = emu_rmw(cpu, in, d, size, src, 0, *next, f_add, true, &old);
	if (r)
		return r;
	emu_reg_write(cpu, s->reg, size, old);
	return 0;
}

EMU_HANDLER(cmpxchg)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	unsigned size = d->size;
	uint64_t acc = emu_reg_read(cpu, EMU_RAX, size), old;
	int r;

	if (s->kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_rmw(cpu, in, d, size, emu_reg_read(cpu, s->reg, size), acc,
		    *next, f_cmpxchg, true, &old);
	if (r)
		return r;
	if (old != acc)
		emu_reg_write(cpu, EMU_RAX, size, old);
	return 0;
}

EMU_HANDLER(flagop)
{
	uint64_t f;

	switch (in->op) {
	case EMU_OP_CLC:
		emu_flags_update(cpu, EMU_FL_CF, 0);
		break;
	case EMU_OP_STC:
		emu_flags_update(cpu, EMU_FL_CF, EMU_FL_CF);
		break;
	case EMU_OP_CMC:
		f = emu_flag_cf(cpu) ? 0 : EMU_FL_CF;
		emu_flags_update(cpu, EMU_FL_CF, f);
		break;
	case EMU_OP_CLD:
		cpu->rflags &= ~EMU_FL_DF;
		break;
	case EMU_OP_STD:
		cpu->rflags |= EMU_FL_DF;
		break;
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
	return 0;
}

EMU_HANDLER(lahf)
{
	uint64_t f = emu_flags_get(cpu);

	emu_reg_write(cpu, EMU_REG_AH, 1,
		      (f & (EMU_FL_SF | EMU_FL_ZF | EMU_FL_AF | EMU_FL_PF |
			    EMU_FL_CF)) | EMU_FL_FIXED);
	return 0;
}

EMU_HANDLER(sahf)
{
	uint64_t ah = emu_reg_read(cpu, EMU_REG_AH, 1);

	emu_flags_update(cpu, EMU_FL_SF | EMU_FL_ZF | EMU_FL_AF | EMU_FL_PF |
			 EMU_FL_CF, ah);
	return 0;
}
