/*
 * exec_branch.c - near control transfers: JMP, Jcc, CALL, RET, LOOP,
 * LOOPE, LOOPNE, JCXZ/JECXZ/JRCXZ (SDM Vol. 2).
 *
 * A handler branches by storing the target in *next.  Targets are
 * truncated to the operand size (16-bit IP with a 66 prefix outside
 * 64-bit mode), and in 64-bit mode a non-canonical target raises #GP(0)
 * on the branch itself, RIP still pointing at it, as Intel parts do (AMD
 * faults on the target's fetch instead; both are precise).  CALL pushes
 * before RIP changes and RET pops before; a stack fault leaves both
 * intact.  Far transfers (JMP/CALL ptr16:32, m16:xx, RETF) come with the
 * segment-loading step and raise #UD until then.
 */
#include "accel/emu/exec.h"

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* The branch target of operand 0 (relative or register/memory). */
static int target(struct emu_cpu *cpu, const struct emu_insn *in,
		  uint64_t next, uint64_t *t)
{
	const struct emu_opnd *o = &in->opnd[0];
	unsigned size = in->opsize;
	uint64_t v;
	int r;

	if (in->nr_opnds < 1)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (o->kind == EMU_OPND_REL) {
		v = next + (uint64_t)o->val;
	} else if (o->kind == EMU_OPND_GPR || o->kind == EMU_OPND_MEM) {
		if (o->size != size) /* far forms: m16:16/32/64 */
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		r = emu_opnd_read(cpu, in, o, size, next, &v);
		if (r)
			return r;
	} else {
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
	v &= emu_mask(size);
	if (cpu->mode == EMU_MODE_LONG64 && !canonical(v))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	*t = v;
	return 0;
}

EMU_HANDLER(jmp)
{
	return target(cpu, in, *next, next);
}

EMU_HANDLER(jcc)
{
	if (!emu_cond(cpu, in->cc))
		return 0;
	return target(cpu, in, *next, next);
}

EMU_HANDLER(call)
{
	uint64_t t = 0; /* set by target() on success */
	int r = target(cpu, in, *next, &t);

	if (r)
		return r;
	r = emu_push(cpu, in->opsize, *next);
	if (r)
		return r;
	*next = t;
	return 0;
}

EMU_HANDLER(ret)
{
	unsigned size = in->opsize, ss = emu_stack_size(cpu);
	uint64_t t, old_rsp = cpu->gpr[EMU_RSP];
	int r;

	r = emu_pop(cpu, size, &t);
	if (r)
		return r;
	if (cpu->mode == EMU_MODE_LONG64 && !canonical(t)) {
		cpu->gpr[EMU_RSP] = old_rsp;
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	}
	if (in->nr_opnds >= 1 && in->opnd[0].kind == EMU_OPND_IMM) {
		uint64_t sp = (cpu->gpr[EMU_RSP] + ((uint64_t)in->opnd[0].val &
						    0xffff)) & emu_mask(ss);
		emu_reg_write(cpu, EMU_RSP, ss, sp);
	}
	*next = t;
	return 0;
}

/* LOOP, LOOPE, LOOPNE: the count register is CX/ECX/RCX by address size. */
EMU_HANDLER(loop)
{
	unsigned as = in->addrsize;
	uint64_t c = (emu_reg_read(cpu, EMU_RCX, as) - 1) & emu_mask(as);
	bool take = c != 0;
	uint64_t t = 0;
	int r;

	if (in->op == EMU_OP_LOOPE)
		take = take && emu_cond(cpu, 4);
	else if (in->op == EMU_OP_LOOPNE)
		take = take && emu_cond(cpu, 5);
	if (take) {
		r = target(cpu, in, *next, &t);
		if (r)
			return r;
	}
	emu_reg_write(cpu, EMU_RCX, as, c);
	if (take)
		*next = t;
	return 0;
}

EMU_HANDLER(jrcxz)
{
	if (emu_reg_read(cpu, EMU_RCX, in->addrsize) != 0)
		return 0;
	return target(cpu, in, *next, next);
}
