/*
 * exec_stack.c - PUSH, POP, PUSHF, POPF, LEAVE (SDM Vol. 2B).
 *
 * The stack-address size (8 in 64-bit mode, else SS.B) decides how RSP
 * wraps; the operand size decides how many bytes move (8 or 2 in 64-bit
 * mode).  RSP changes only after the memory access succeeded, so a fault
 * leaves it intact.  Two orderings the SDM fixes and these handlers keep:
 * PUSH RSP pushes the value before the decrement, and POP to a memory
 * operand computes the address with the already incremented RSP.
 *
 * POPF at CPL > 0 may not change IOPL, and changes IF only when CPL <= IOPL;
 * VM and RF are never loaded from the stack, VIF/VIP are cleared (SDM Vol.
 * 2B POPF, protected-mode column).  Loading segment registers (POP DS/ES/
 * SS/FS/GS) needs descriptor loads and comes with the system step: #UD now.
 */
#include "accel/emu/exec.h"

EMU_HANDLER(push)
{
	unsigned size = in->opsize;
	uint64_t v;
	int r = emu_opnd_read(cpu, in, &in->opnd[0], size, *next, &v);

	if (r)
		return r;
	return emu_push(cpu, size, v);
}

EMU_HANDLER(pop)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = in->opsize;
	uint64_t v, old_rsp = cpu->gpr[EMU_RSP];
	int r;

	if (d->kind != EMU_OPND_GPR && d->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_pop(cpu, size, &v);
	if (r)
		return r;
	r = emu_opnd_write(cpu, in, d, size, *next, v);
	if (r)
		cpu->gpr[EMU_RSP] = old_rsp;
	return r;
}

EMU_HANDLER(pushf)
{
	uint64_t f = emu_flags_get(cpu) & ~(EMU_FL_VM | EMU_FL_RF);

	return emu_push(cpu, in->opsize, f);
}

EMU_HANDLER(popf)
{
	unsigned size = in->opsize;
	uint64_t v, cur = emu_flags_get(cpu), keep;
	unsigned iopl = (unsigned)((cur & EMU_FL_IOPL) >> 12);
	int r = emu_pop(cpu, size, &v);

	if (r)
		return r;
	keep = EMU_FL_VM | EMU_FL_RF;
	if (cpu->cpl > 0)
		keep |= EMU_FL_IOPL;
	if (cpu->cpl > iopl)
		keep |= EMU_FL_IF;
	if (size == 2)
		keep |= ~0xffffull; /* the upper bits, VIF/VIP with them */
	else
		v &= ~(EMU_FL_VIF | EMU_FL_VIP);
	v = (v & ~keep) | (cur & keep);
	emu_flags_set(cpu, v);
	return 0;
}

EMU_HANDLER(leave)
{
	unsigned size = in->opsize, ss = emu_stack_size(cpu);
	uint64_t old_rsp = cpu->gpr[EMU_RSP], v;
	int r;

	emu_reg_write(cpu, EMU_RSP, ss == 8 ? 8 : ss,
		      emu_reg_read(cpu, EMU_RBP, ss));
	r = emu_pop(cpu, size, &v);
	if (r) {
		cpu->gpr[EMU_RSP] = old_rsp;
		return r;
	}
	emu_reg_write(cpu, EMU_RBP, size, v);
	return 0;
}
