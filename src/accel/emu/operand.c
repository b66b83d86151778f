/*
 * operand.c - operand access for the instruction handlers: effective
 * addresses, reading and writing register / memory / immediate operands,
 * read-modify-write (atomic under LOCK) and the stack.
 *
 * Handlers never compute addresses or touch memory themselves; they go
 * through these functions, which go through mem.c, so the bounds-checked
 * path of mem.c is the only way any handler reaches guest memory.
 *
 * Read-modify-write.  Without LOCK, x86 RMW instructions are a read and a
 * write; other vCPUs may interleave.  With LOCK (or XCHG with memory, which
 * is always locked) they are atomic with respect to every other vCPU's
 * locked and plain accesses.  Since the host is x86 too, an atomic host
 * instruction on the guest RAM byte range gives exactly that: emu_rmw()
 * asks mem.c for a host pointer (write access checked, RAM, aligned) and
 * runs a compare-exchange loop around the handler's pure update function.
 * MMIO and misaligned locked accesses fall back to read + write (see
 * mem.c for why misaligned ones cannot be host-atomic).
 *
 * Fault semantics: an RMW whose write faults (a read-only page, once paging
 * exists) must leave the flags as they were, so emu_rmw() saves the flag
 * state before calling the update function and restores it on a fault.
 */
#include "accel/emu/exec.h"

int emu_opnd_read_slow(struct emu_cpu *cpu, const struct emu_insn *in,
		  const struct emu_opnd *o, unsigned size, uint64_t next,
		  uint64_t *val)
{
	switch (o->kind) {
	case EMU_OPND_GPR:
		*val = emu_reg_read(cpu, o->reg, size);
		return 0;
	case EMU_OPND_IMM:
		*val = (uint64_t)o->val & emu_mask(size);
		return 0;
	case EMU_OPND_MEM:
		return emu_mem_read(cpu, o->seg, emu_ea(cpu, in, o, next),
				    size, val);
	case EMU_OPND_SEG:
		*val = cpu->seg[o->reg % EMU_NR_SEGS].sel;
		return 0;
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
}

int emu_opnd_write_slow(struct emu_cpu *cpu, const struct emu_insn *in,
		   const struct emu_opnd *o, unsigned size, uint64_t next,
		   uint64_t val)
{
	switch (o->kind) {
	case EMU_OPND_GPR:
		emu_reg_write(cpu, o->reg, size, val);
		return 0;
	case EMU_OPND_MEM:
		return emu_mem_write(cpu, o->seg, emu_ea(cpu, in, o, next),
				     size, val);
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
}

/* Compare-exchange loop on a host pointer of `size` bytes. */
#define CAS_LOOP(type)                                                       \
	do {                                                                 \
		type *p_ = host;                                             \
		type o_ = __atomic_load_n(p_, __ATOMIC_SEQ_CST), n_;         \
		do {                                                         \
			n_ = (type)fn(cpu, size, o_, src, aux);                   \
		} while (!__atomic_compare_exchange_n(p_, &o_, n_, false,    \
						      __ATOMIC_SEQ_CST,      \
						      __ATOMIC_SEQ_CST));    \
		prev = o_;                                                   \
	} while (0)

int emu_rmw_slow(struct emu_cpu *cpu, const struct emu_insn *in,
	    const struct emu_opnd *dst, unsigned size, uint64_t src,
	    uint64_t aux, uint64_t next, emu_rmw_fn fn, bool write,
	    uint64_t *old)
{
	struct emu_lazy_flags saved_lf;
	uint64_t saved_rflags, prev, val, off;
	void *host;
	int r;

	if (dst->kind == EMU_OPND_GPR) {
		prev = emu_reg_read(cpu, dst->reg, size);
		val = fn(cpu, size, prev, src, aux);
		if (write)
			emu_reg_write(cpu, dst->reg, size, val);
		if (old)
			*old = prev;
		return 0;
	}
	if (dst->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);

	off = emu_ea(cpu, in, dst, next);
	if (write && (in->prefixes & EMU_PFX_LOCK)) {
		r = emu_mem_host_ptr(cpu, dst->seg, off, size, &host);
		if (r)
			return r;
		if (host) {
			switch (size) {
			case 1: CAS_LOOP(uint8_t); break;
			case 2: CAS_LOOP(uint16_t); break;
			case 4: CAS_LOOP(uint32_t); break;
			default: CAS_LOOP(uint64_t); break;
			}
			if (old)
				*old = prev;
			return 0;
		}
	}
	r = emu_mem_read(cpu, dst->seg, off, size, &prev);
	if (r)
		return r;
	saved_lf = cpu->lf;
	saved_rflags = cpu->rflags;
	val = fn(cpu, size, prev, src, aux);
	if (write) {
		r = emu_mem_write(cpu, dst->seg, off, size, val);
		if (r) {
			cpu->lf = saved_lf;
			cpu->rflags = saved_rflags;
			return r;
		}
	}
	if (old)
		*old = prev;
	return 0;
}

unsigned emu_stack_size(const struct emu_cpu *cpu)
{
	if (cpu->mode == EMU_MODE_LONG64)
		return 8;
	return (cpu->seg[EMU_SEG_SS].attr & EMU_SEG_ATTR_DB) ? 4 : 2;
}

/* RSP with its stack-size part replaced by v. */
static uint64_t stack_merge(const struct emu_cpu *cpu, uint64_t v)
{
	unsigned ss = emu_stack_size(cpu);

	if (ss == 8)
		return v;
	if (ss == 4)
		return (uint32_t)v;
	return (cpu->gpr[EMU_RSP] & ~0xffffull) | (v & 0xffff);
}

int emu_push(struct emu_cpu *cpu, unsigned size, uint64_t val)
{
	uint64_t sp = (cpu->gpr[EMU_RSP] - size) &
		      emu_mask(emu_stack_size(cpu));
	int r;

	r = emu_mem_write(cpu, EMU_SEG_SS, sp, size, val);
	if (r)
		return r;
	cpu->gpr[EMU_RSP] = stack_merge(cpu, sp);
	return 0;
}

int emu_pop(struct emu_cpu *cpu, unsigned size, uint64_t *val)
{
	uint64_t m = emu_mask(emu_stack_size(cpu));
	uint64_t sp = cpu->gpr[EMU_RSP] & m;
	int r;

	r = emu_mem_read(cpu, EMU_SEG_SS, sp, size, val);
	if (r)
		return r;
	cpu->gpr[EMU_RSP] = stack_merge(cpu, (sp + size) & m);
	return 0;
}
