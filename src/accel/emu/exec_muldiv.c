/*
 * exec_muldiv.c - MUL, IMUL (one-, two- and three-operand forms), DIV and
 * IDIV (SDM Vol. 2).
 *
 * Products and quotients of the 64-bit forms need 128 bits; the host
 * compiler's unsigned/signed __int128 gives them exactly.  MUL/IMUL set
 * CF = OF when the upper half is significant and leave SF, ZF, AF, PF
 * undefined (we compute SF/ZF/PF from the low half through the lazy MUL
 * record, AF = 0).  DIV/IDIV leave all six flags undefined; we leave them
 * unchanged.  A zero divisor or a quotient that does not fit raises #DE
 * before any register changes -- including the one signed overflow C
 * itself cannot compute (INT128_MIN / -1), which is checked explicitly.
 */
#include "accel/emu/exec.h"

typedef unsigned __int128 u128;
typedef __int128 s128;

/* The double-width accumulator RDX:RAX (AX for bytes) of `size`. */
static u128 acc_read(const struct emu_cpu *cpu, unsigned size)
{
	if (size == 1)
		return cpu->gpr[EMU_RAX] & 0xffff;
	return ((u128)emu_reg_read(cpu, EMU_RDX, size) << (size * 8)) |
	       emu_reg_read(cpu, EMU_RAX, size);
}

static void acc_write(struct emu_cpu *cpu, unsigned size, u128 v)
{
	if (size == 1) {
		emu_reg_write(cpu, EMU_RAX, 2, (uint64_t)v);
		return;
	}
	emu_reg_write(cpu, EMU_RAX, size, (uint64_t)v);
	emu_reg_write(cpu, EMU_RDX, size, (uint64_t)(v >> (size * 8)));
}

static int read_src(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t next, unsigned *size, uint64_t *v)
{
	*size = in->opnd[0].size;
	return emu_opnd_read(cpu, in, &in->opnd[0], *size, next, v);
}

EMU_HANDLER(mul)
{
	unsigned size;
	uint64_t src;
	u128 p;
	int r = read_src(cpu, in, *next, &size, &src);

	if (r)
		return r;
	p = (u128)emu_reg_read(cpu, EMU_RAX, size) * src;
	acc_write(cpu, size, p);
	emu_lazy(cpu, EMU_LF_MUL, size, (uint64_t)p, 0, 0,
		 (p >> (size * 8)) != 0);
	return 0;
}

EMU_HANDLER(imul1)
{
	unsigned size;
	uint64_t src;
	s128 p;
	int r = read_src(cpu, in, *next, &size, &src);

	if (r)
		return r;
	p = (s128)(int64_t)emu_sext(emu_reg_read(cpu, EMU_RAX, size), size) *
	    (s128)(int64_t)emu_sext(src, size);
	acc_write(cpu, size, (u128)p);
	emu_lazy(cpu, EMU_LF_MUL, size, (uint64_t)p, 0, 0,
		 p != (s128)(int64_t)emu_sext((uint64_t)p, size));
	return 0;
}

/* IMUL r, r/m and IMUL r, r/m, imm: the product truncated to the size. */
EMU_HANDLER(imul)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = d->size;
	uint64_t a, b;
	s128 p;
	int r;

	if (in->nr_opnds == 3) {
		r = emu_opnd_read(cpu, in, &in->opnd[1], size, *next, &a);
		if (r)
			return r;
		b = (uint64_t)in->opnd[2].val;
	} else {
		a = emu_reg_read(cpu, d->reg, size);
		r = emu_opnd_read(cpu, in, &in->opnd[1], size, *next, &b);
		if (r)
			return r;
	}
	p = (s128)(int64_t)emu_sext(a, size) * (s128)(int64_t)emu_sext(b, size);
	emu_reg_write(cpu, d->reg, size, (uint64_t)p);
	emu_lazy(cpu, EMU_LF_MUL, size, (uint64_t)p, 0, 0,
		 p != (s128)(int64_t)emu_sext((uint64_t)p, size));
	return 0;
}

/* DIV and IDIV (in->op tells which). */
EMU_HANDLER(div)
{
	unsigned size, bits;
	uint64_t src;
	u128 dividend, q, rem;
	int r = read_src(cpu, in, *next, &size, &src);

	if (r)
		return r;
	bits = size * 8;
	dividend = acc_read(cpu, size);
	if (src == 0)
		return emu_raise(cpu, EMU_VEC_DE, false, 0);
	if (in->op == EMU_OP_DIV) {
		q = dividend / src;
		rem = dividend % src;
		if (q > emu_mask(size))
			return emu_raise(cpu, EMU_VEC_DE, false, 0);
	} else {
		/* Sign-extend the 2*size-byte dividend to 128 bits. */
		s128 sd = (s128)(dividend << (128 - 2 * bits)) >>
			  (128 - 2 * bits);
		s128 sv = (s128)(int64_t)emu_sext(src, size);
		s128 sq, sr;
		s128 max = ((s128)1 << (bits - 1)) - 1, min = -max - 1;

		if (sv == -1 && size == 8 &&
		    sd == (s128)((u128)1 << 127))
			return emu_raise(cpu, EMU_VEC_DE, false, 0);
		sq = sd / sv;
		sr = sd % sv;
		if (sq < min || sq > max)
			return emu_raise(cpu, EMU_VEC_DE, false, 0);
		q = (u128)sq;
		rem = (u128)sr;
	}
	if (size == 1) {
		emu_reg_write(cpu, EMU_RAX, 2,
			      ((uint64_t)rem & 0xff) << 8 | ((uint64_t)q & 0xff));
	} else {
		emu_reg_write(cpu, EMU_RAX, size, (uint64_t)q);
		emu_reg_write(cpu, EMU_RDX, size, (uint64_t)rem);
	}
	return 0;
}
