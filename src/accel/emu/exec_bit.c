/*
 * exec_bit.c - bit tests and scans: BT, BTS, BTR, BTC, BSF, BSR (SDM Vol.
 * 2A).
 *
 * BT* with a register bit offset and a memory operand address a bit
 * string: the offset is signed and may reach far outside the operand, so
 * the byte address moves by (offset >> log2(bits)) * (bits / 8) and the
 * bit within the operand is offset & (bits - 1).  The moved address goes
 * through the normal checked path like any other.  With an immediate or a
 * register destination the offset is taken modulo the operand width.
 *
 * Flags: BT* define CF only; ZF is unchanged and OF, SF, AF, PF are
 * undefined (kept).  BSF/BSR define ZF only (set when the source is 0,
 * in which case the destination is left unchanged, as AMD documents and
 * Intel parts do).
 */
#include "accel/emu/exec.h"

static uint64_t f_bt(struct emu_cpu *cpu, unsigned size, uint64_t v,
		     uint64_t bit, uint64_t op)
{
	uint64_t m = 1ull << bit;

	emu_flags_update(cpu, EMU_FL_CF, (v & m) ? EMU_FL_CF : 0);
	switch (op) {
	case EMU_OP_BTS: return v | m;
	case EMU_OP_BTR: return v & ~m;
	case EMU_OP_BTC: return v ^ m;
	default:         return v;
	}
}

EMU_HANDLER(bt)
{
	struct emu_opnd d = in->opnd[0];
	const struct emu_opnd *s = &in->opnd[1];
	unsigned size = d.size, bits = size * 8;
	uint64_t off;
	int r;

	r = emu_opnd_read(cpu, in, s, s->kind == EMU_OPND_IMM ? 1 : size,
			  *next, &off);
	if (r)
		return r;
	if (d.kind == EMU_OPND_MEM && s->kind == EMU_OPND_GPR) {
		int64_t soff = (int64_t)emu_sext(off, size);

		d.val += (soff >> __builtin_ctz(bits)) * (int64_t)size;
	}
	off &= bits - 1;
	return emu_rmw(cpu, in, &d, size, off, in->op, *next, f_bt,
		       in->op != EMU_OP_BT, NULL);
}

static int bit_scan(struct emu_cpu *cpu, const struct emu_insn *in,
		    uint64_t next, bool reverse)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = d->size;
	uint64_t v;
	int r = emu_opnd_read(cpu, in, &in->opnd[1], size, next, &v);

	if (r)
		return r;
	if (v == 0) {
		emu_flags_update(cpu, EMU_FL_ZF, EMU_FL_ZF);
		return 0;
	}
	emu_flags_update(cpu, EMU_FL_ZF, 0);
	emu_reg_write(cpu, d->reg, size,
		      reverse ? 63u - (unsigned)__builtin_clzll(v) :
				(unsigned)__builtin_ctzll(v));
	return 0;
}

EMU_HANDLER(bsf)
{
	return bit_scan(cpu, in, *next, false);
}

EMU_HANDLER(bsr)
{
	return bit_scan(cpu, in, *next, true);
}
