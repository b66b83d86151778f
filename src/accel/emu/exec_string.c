/*
 * exec_string.c - string instructions MOVS, STOS, LODS, CMPS, SCAS with
 * the REP / REPE / REPNE prefixes (SDM Vol. 2, "REP/REPE/REPZ/REPNE/REPNZ").
 *
 * RSI/RDI/RCX are used at the address size (SI/DI/CX, ESI/EDI/ECX or the
 * full registers) and step by the element size, backwards when DF = 1.
 * The source segment is DS or the override prefix; the destination is
 * always ES (no override).
 *
 * A REP instruction is interruptible: each iteration commits its register
 * updates before the next begins, so a fault in iteration k leaves RSI,
 * RDI, RCX describing the k - 1 completed iterations and RIP still at the
 * instruction, and re-executing it resumes where it stopped.  To keep
 * interrupt latency bounded one emu_step() runs at most
 * EMU_REP_BATCH iterations and then leaves RIP at the instruction, so the
 * run loop can look at interrupts and the next step continues.  (A bulk
 * fast path for REP MOVSB/STOSB over RAM, page by page, is an obvious later
 * optimization; the per-element path is the reference it must match.)
 */
#include "accel/emu/exec.h"

#define EMU_REP_BATCH 4096

/* One iteration; returns 0 or EMU_EXC with no register changed. */
static int string_once(struct emu_cpu *cpu, const struct emu_insn *in,
		       unsigned size)
{
	unsigned as = in->addrsize;
	uint64_t m = emu_mask(as);
	uint64_t si = cpu->gpr[EMU_RSI] & m, di = cpu->gpr[EMU_RDI] & m;
	uint64_t step = (cpu->rflags & EMU_FL_DF) ? 0 - (uint64_t)size : size;
	uint64_t a, b;
	int r;

	switch (in->op) {
	case EMU_OP_MOVS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (!r)
			r = emu_mem_write(cpu, EMU_SEG_ES, di, size, a);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	case EMU_OP_STOS:
		r = emu_mem_write(cpu, EMU_SEG_ES, di, size,
				  cpu->gpr[EMU_RAX]);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	case EMU_OP_LODS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RAX, size, a);
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		return 0;
	case EMU_OP_CMPS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (!r)
			r = emu_mem_read(cpu, EMU_SEG_ES, di, size, &b);
		if (r)
			return r;
		emu_lazy(cpu, EMU_LF_SUB, size, a - b, a, b, 0);
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	default: /* SCAS */
		r = emu_mem_read(cpu, EMU_SEG_ES, di, size, &b);
		if (r)
			return r;
		a = emu_reg_read(cpu, EMU_RAX, size);
		emu_lazy(cpu, EMU_LF_SUB, size, a - b, a, b, 0);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	}
}

EMU_HANDLER(string)
{
	unsigned size = in->opsize, as = in->addrsize;
	bool cmp = in->op == EMU_OP_CMPS || in->op == EMU_OP_SCAS;
	uint64_t c;
	int r;

	if (!(in->prefixes & (EMU_PFX_REP | EMU_PFX_REPNE)))
		return string_once(cpu, in, size);
	for (unsigned i = 0; i < EMU_REP_BATCH; i++) {
		c = emu_reg_read(cpu, EMU_RCX, as);
		if (c == 0)
			return 0;
		r = string_once(cpu, in, size);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RCX, as, c - 1);
		if (cmp) {
			bool zf = cpu->lf.res == 0;

			if ((in->prefixes & EMU_PFX_REPNE) ? zf : !zf)
				return 0;
		}
	}
	if (emu_reg_read(cpu, EMU_RCX, as) != 0)
		*next = cpu->rip; /* not done: come back to it */
	return 0;
}
