/*
 * exec_shift.c - shifts and rotates: SHL/SAL, SHR, SAR, ROL, ROR, RCL, RCR
 * (SDM Vol. 2B "SAL/SAR/SHL/SHR", "RCL/RCR/ROL/ROR").
 *
 * The count is masked to 5 bits (6 with a 64-bit operand).  A masked count
 * of 0 changes no flag; a 32-bit register destination is still written,
 * which zero-extends it, as hardware does.  Shifts record lazy flags (CF
 * is recomputed from the source and count on demand, see flags.c); OF is
 * defined only for 1-bit shifts and AF never, and the tests mask them.
 * Rotates change only CF and OF: ROL/ROR record them (EMU_LF_ROT) and keep
 * the record before them for the other four; RCL/RCR update them eagerly.  RCL
 * and RCR rotate through CF, modulo 9 / 17 for 8- and 16-bit operands; the
 * loop is at most 64 iterations and rare in practice.
 */
#include "accel/emu/exec.h"

static unsigned masked_count(unsigned size, uint64_t c)
{
	return (unsigned)(c & (size == 8 ? 63 : 31));
}

static uint64_t f_shl(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	uint64_t r = v << c;

	if (c)
		emu_lazy(cpu, EMU_LF_SHL, size, r, v, c, 0);
	return c ? r : v;
}

static uint64_t f_shr(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	uint64_t r;

	v &= emu_mask(size);
	r = v >> c;
	if (c)
		emu_lazy(cpu, EMU_LF_SHR, size, r, v, c, 0);
	return r;
}

static uint64_t f_sar(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	uint64_t r = (uint64_t)((int64_t)emu_sext(v, size) >> c);

	if (c)
		emu_lazy(cpu, EMU_LF_SAR, size, r, v, c, 0);
	return c ? r : v;
}

static int read_count(struct emu_cpu *cpu, const struct emu_insn *in,
		      uint64_t next, unsigned *count)
{
	uint64_t c = 1;
	int r;

	if (in->nr_opnds >= 2) {
		r = emu_opnd_read(cpu, in, &in->opnd[1], 1, next, &c);
		if (r)
			return r;
	}
	*count = masked_count(in->opnd[0].size, c);
	return 0;
}

EMU_HANDLER(shift)
{
	emu_rmw_fn fn;
	unsigned count;
	int r = read_count(cpu, in, *next, &count);

	if (r)
		return r;
	fn = in->op == EMU_OP_SHL ? f_shl : in->op == EMU_OP_SHR ? f_shr : f_sar;
	return emu_rmw(cpu, in, &in->opnd[0], in->opnd[0].size, count, 0,
		       *next, fn, true, NULL);
}

static uint64_t f_rol(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	unsigned bits = size * 8, n = (unsigned)(c % bits);
	uint64_t r, cf, of;

	v &= emu_mask(size);
	if (!c)
		return v;
	r = n ? ((v << n) | (v >> (bits - n))) & emu_mask(size) : v;
	cf = r & 1;
	of = emu_msb(r, size) ^ cf;
	emu_lazy_rot(cpu, cf, of);
	return r;
}

static uint64_t f_ror(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	unsigned bits = size * 8, n = (unsigned)(c % bits);
	uint64_t r, cf, of;

	v &= emu_mask(size);
	if (!c)
		return v;
	r = n ? ((v >> n) | (v << (bits - n))) & emu_mask(size) : v;
	cf = emu_msb(r, size);
	of = cf ^ ((r >> (bits - 2)) & 1);
	emu_lazy_rot(cpu, cf, of);
	return r;
}

static uint64_t f_rcl(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	unsigned n = (unsigned)(size < 4 ? c % (size * 8 + 1) : c);
	uint64_t cf = emu_flag_cf(cpu), of;

	v &= emu_mask(size);
	if (!c)
		return v;
	for (unsigned i = 0; i < n; i++) {
		uint64_t out = emu_msb(v, size);

		v = ((v << 1) | cf) & emu_mask(size);
		cf = out;
	}
	of = emu_msb(v, size) ^ cf;
	emu_flags_update(cpu, EMU_FL_CF | EMU_FL_OF,
			 (cf ? EMU_FL_CF : 0) | (of ? EMU_FL_OF : 0));
	return v;
}

static uint64_t f_rcr(struct emu_cpu *cpu, unsigned size, uint64_t v,
		      uint64_t c, uint64_t aux)
{
	unsigned n = (unsigned)(size < 4 ? c % (size * 8 + 1) : c);
	uint64_t cf = emu_flag_cf(cpu), of;

	v &= emu_mask(size);
	if (!c)
		return v;
	of = emu_msb(v, size) ^ cf; /* defined for count 1: before rotating */
	for (unsigned i = 0; i < n; i++) {
		uint64_t out = v & 1;

		v = (v >> 1) | (cf << (size * 8 - 1));
		cf = out;
	}
	emu_flags_update(cpu, EMU_FL_CF | EMU_FL_OF,
			 (cf ? EMU_FL_CF : 0) | (of ? EMU_FL_OF : 0));
	return v;
}

EMU_HANDLER(rotate)
{
	emu_rmw_fn fn;
	unsigned count;
	int r = read_count(cpu, in, *next, &count);

	if (r)
		return r;
	switch (in->op) {
	case EMU_OP_ROL: fn = f_rol; break;
	case EMU_OP_ROR: fn = f_ror; break;
	case EMU_OP_RCL: fn = f_rcl; break;
	default:         fn = f_rcr; break;
	}
	return emu_rmw(cpu, in, &in->opnd[0], in->opnd[0].size, count, 0,
		       *next, fn, true, NULL);
}
