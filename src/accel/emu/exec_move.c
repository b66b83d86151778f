/*
 * exec_move.c - data movement: MOV, MOVZX, MOVSX/MOVSXD, LEA, XCHG,
 * CMOVcc, SETcc, CBW/CWDE/CDQE, CWD/CDQ/CQO, BSWAP and the NOP forms
 * (SDM Vol. 2).
 *
 * None of these touch the status flags, so none of them disturb the lazy
 * flag record.  The subtle rules are all about register widths and are
 * kept in emu_reg_write(): a 32-bit destination zero-extends into bits
 * 63:32, narrower ones merge.  Two consequences the SDM spells out and the
 * host-differential tests check: CMOVcc with a 32-bit destination clears
 * bits 63:32 even when the condition is false, and its memory source is
 * read (and may fault) whatever the condition.  XCHG with a memory operand
 * is atomic without a LOCK prefix (SDM Vol. 2B XCHG), so it takes the
 * locked path of emu_rmw().
 *
 * Moves to segment, control and debug registers need descriptor loads and
 * mode changes; they belong to the system-instruction step and raise #UD
 * (counted) until then.
 */
#include <string.h>

#include "accel/emu/exec.h"

EMU_HANDLER(nop)
{
	return 0;
}

EMU_HANDLER(mov)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	unsigned size = d->size;
	uint64_t v;
	int r;

	if (d->kind == EMU_OPND_SEG || d->kind == EMU_OPND_OTHER ||
	    s->kind == EMU_OPND_OTHER)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (s->kind == EMU_OPND_SEG)
		size = d->kind == EMU_OPND_MEM ? 2 : d->size;
	r = emu_opnd_read(cpu, in, s, size, *next, &v);
	if (r)
		return r;
	return emu_opnd_write(cpu, in, d, size, *next, v);
}

EMU_HANDLER(movzx)
{
	uint64_t v;
	int r = emu_opnd_read(cpu, in, &in->opnd[1], in->opnd[1].size, *next,
			      &v);

	if (r)
		return r;
	return emu_opnd_write(cpu, in, &in->opnd[0], in->opnd[0].size, *next,
			      v);
}

/* MOVSX and MOVSXD. */
EMU_HANDLER(movsx)
{
	uint64_t v;
	int r = emu_opnd_read(cpu, in, &in->opnd[1], in->opnd[1].size, *next,
			      &v);

	if (r)
		return r;
	v = emu_sext(v, in->opnd[1].size);
	return emu_opnd_write(cpu, in, &in->opnd[0], in->opnd[0].size, *next,
			      v);
}

EMU_HANDLER(lea)
{
	if (in->opnd[1].kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	return emu_opnd_write(cpu, in, &in->opnd[0], in->opnd[0].size, *next,
			      emu_ea(cpu, in, &in->opnd[1], *next));
}

static uint64_t xchg_fn(struct emu_cpu *cpu, unsigned size, uint64_t old,
			uint64_t src, uint64_t aux)
{
	return src;
}

EMU_HANDLER(xchg)
{
	const struct emu_opnd *a = &in->opnd[0], *b = &in->opnd[1];
	unsigned size = a->size;
	struct emu_insn locked;
	uint64_t va, old;
	int r;

	if (a->kind == EMU_OPND_GPR && b->kind == EMU_OPND_GPR) {
		va = emu_reg_read(cpu, a->reg, size);
		emu_reg_write(cpu, a->reg, size, emu_reg_read(cpu, b->reg, size));
		emu_reg_write(cpu, b->reg, size, va);
		return 0;
	}
	if (a->kind != EMU_OPND_MEM) { /* reg, mem: make a the memory one */
		const struct emu_opnd *t = a;
		a = b;
		b = t;
	}
	if (a->kind != EMU_OPND_MEM || b->kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	memcpy(&locked, in, sizeof(locked));
	locked.prefixes |= EMU_PFX_LOCK;
	r = emu_rmw(cpu, &locked, a, size, emu_reg_read(cpu, b->reg, size), 0,
		    *next, xchg_fn, true, &old);
	if (r)
		return r;
	emu_reg_write(cpu, b->reg, size, old);
	return 0;
}

EMU_HANDLER(cmov)
{
	const struct emu_opnd *d = &in->opnd[0];
	uint64_t v;
	int r = emu_opnd_read(cpu, in, &in->opnd[1], d->size, *next, &v);

	if (r)
		return r;
	if (!emu_cond(cpu, in->cc))
		v = emu_reg_read(cpu, d->reg, d->size);
	emu_reg_write(cpu, d->reg, d->size, v);
	return 0;
}

EMU_HANDLER(set)
{
	return emu_opnd_write(cpu, in, &in->opnd[0], 1, *next,
			      emu_cond(cpu, in->cc) ? 1 : 0);
}

EMU_HANDLER(cbw)
{
	unsigned half = in->opsize / 2;

	emu_reg_write(cpu, EMU_RAX, in->opsize,
		      emu_sext(cpu->gpr[EMU_RAX], half));
	return 0;
}

EMU_HANDLER(cwd)
{
	unsigned size = in->opsize;
	uint64_t sign = emu_msb(cpu->gpr[EMU_RAX], size);

	emu_reg_write(cpu, EMU_RDX, size, sign ? ~0ull : 0);
	return 0;
}

EMU_HANDLER(bswap)
{
	const struct emu_opnd *d = &in->opnd[0];
	uint64_t v = emu_reg_read(cpu, d->reg, d->size);

	if (d->size == 8)
		v = __builtin_bswap64(v);
	else if (d->size == 4)
		v = __builtin_bswap32((uint32_t)v);
	else
		v = 0; /* 16-bit BSWAP is undefined (SDM); zero like Intel parts */
	emu_reg_write(cpu, d->reg, d->size, v);
	return 0;
}
