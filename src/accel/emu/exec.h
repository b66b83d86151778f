/*
 * exec.h - what the instruction handlers (exec_*.c) share: register and
 * operand access, lazy-flag recording, and the handler signature.  Private
 * to accel/emu.
 *
 * A handler executes one decoded instruction.  It gets the address of the
 * next instruction in *next (already RIP + length, wrapped to the mode) and
 * changes it to branch.  It returns 0, or EMU_EXC / -errno after changing
 * nothing architectural: every access that can fault happens before the
 * first register, flag or RSP update.  emu_step() commits RIP = *next only
 * on success.
 */
#ifndef KVMM_ACCEL_EMU_EXEC_H
#define KVMM_ACCEL_EMU_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"

typedef int (*emu_handler)(struct emu_cpu *cpu, const struct emu_insn *in,
			   uint64_t *next);

/* All-ones in the low `size` bytes. */
static inline uint64_t emu_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;
}

/* Sign-extend the low `size` bytes of v to 64 bits. */
static inline uint64_t emu_sext(uint64_t v, unsigned size)
{
	unsigned sh = 64 - size * 8;

	return (uint64_t)((int64_t)(v << sh) >> sh);
}

/* The sign bit of a `size`-byte value. */
static inline uint64_t emu_msb(uint64_t v, unsigned size)
{
	return (v >> (size * 8 - 1)) & 1;
}

/* Read a GPR (0-15, or EMU_REG_AH..BH) as `size` bytes, zero-extended. */
static inline uint64_t emu_reg_read(const struct emu_cpu *cpu, unsigned reg,
				    unsigned size)
{
	if (reg >= EMU_REG_AH)
		return (cpu->gpr[(reg - EMU_REG_AH) & 3] >> 8) & 0xff;
	return cpu->gpr[reg & 15] & emu_mask(size);
}

/* Write `size` bytes of a GPR with the SDM's rules (Vol. 1 3.4.1.1): 8 and
 * 16-bit writes keep the other bits, 32-bit writes zero bits 63:32. */
static inline void emu_reg_write(struct emu_cpu *cpu, unsigned reg,
				 unsigned size, uint64_t val)
{
	uint64_t *g;

	if (reg >= EMU_REG_AH) {
		g = &cpu->gpr[(reg - EMU_REG_AH) & 3];
		*g = (*g & ~0xff00ull) | ((val & 0xff) << 8);
		return;
	}
	g = &cpu->gpr[reg & 15];
	switch (size) {
	case 1: *g = (*g & ~0xffull) | (val & 0xff); break;
	case 2: *g = (*g & ~0xffffull) | (val & 0xffff); break;
	case 4: *g = (uint32_t)val; break;
	default: *g = val; break;
	}
}

/* Record a flag-setting operation (values are masked to `size`). */
static inline void emu_lazy(struct emu_cpu *cpu, enum emu_lf_op op,
			    unsigned size, uint64_t res, uint64_t src1,
			    uint64_t src2, uint64_t aux)
{
	uint64_t m = emu_mask(size);

	cpu->lf.op = (uint8_t)op;
	cpu->lf.size = (uint8_t)size;
	cpu->lf.res = res & m;
	cpu->lf.src1 = src1 & m;
	cpu->lf.src2 = src2 & m;
	cpu->lf.aux = aux;
}

/* flags.c */
/* CF alone (cheap: no other flag is computed). */
bool emu_flag_cf(const struct emu_cpu *cpu);
/* Condition `cc` (SDM Vol. 1 B.1: 0 = O ... 15 = NLE/G) is true. */
bool emu_cond(const struct emu_cpu *cpu, unsigned cc);
/* A rotate's flags: CF and OF as given, the other four unchanged; the
 * record they come from is kept in lf_prev instead of being evaluated. */
static inline void emu_lazy_rot(struct emu_cpu *cpu, bool cf, bool of)
{
	if (cpu->lf.op != EMU_LF_ROT) {
		cpu->lf_prev = cpu->lf;
		cpu->lf.op = EMU_LF_ROT;
	}
	cpu->lf.aux = (uint64_t)cf | ((uint64_t)of << 1);
}

/* Set the status flags in `mask` to `bits` and the rest to their current
 * values, ending the lazy state (for instructions defining only some). */
void emu_flags_update(struct emu_cpu *cpu, uint64_t mask, uint64_t bits);

/* operand.c */
/* Effective address (offset in the operand's segment) of a MEM operand,
 * wrapped to the address size; RIP-relative uses `next`. */
/* The effective address of memory operand `o` (`next`: RIP-relative
 * base), wrapped to the address size. */
static inline uint64_t emu_ea(const struct emu_cpu *cpu,
			      const struct emu_insn *in,
			      const struct emu_opnd *o, uint64_t next)
{
	uint64_t a = (uint64_t)o->val;

	if (o->base == EMU_REG_RIP)
		a += next;
	else if (o->base != EMU_REG_NONE)
		a += cpu->gpr[o->base & 15];
	if (o->index != EMU_REG_NONE)
		a += cpu->gpr[o->index & 15] * o->scale;
	return a & emu_mask(in->addrsize);
}

/* Operand access, out of line for memory and the rare kinds (operand.c);
 * the inline wrappers below handle registers and immediates, the forms
 * most instructions use, without a call. */
int emu_opnd_read_slow(struct emu_cpu *cpu, const struct emu_insn *in,
		       const struct emu_opnd *o, unsigned size, uint64_t next,
		       uint64_t *val);
int emu_opnd_write_slow(struct emu_cpu *cpu, const struct emu_insn *in,
			const struct emu_opnd *o, unsigned size, uint64_t next,
			uint64_t val);

static inline int emu_opnd_read(struct emu_cpu *cpu, const struct emu_insn *in,
				const struct emu_opnd *o, unsigned size,
				uint64_t next, uint64_t *val)
{
	if (o->kind == EMU_OPND_GPR) {
		*val = emu_reg_read(cpu, o->reg, size);
		return 0;
	}
	if (o->kind == EMU_OPND_IMM) {
		*val = (uint64_t)o->val & emu_mask(size);
		return 0;
	}
	return emu_opnd_read_slow(cpu, in, o, size, next, val);
}

static inline int emu_opnd_write(struct emu_cpu *cpu, const struct emu_insn *in,
				 const struct emu_opnd *o, unsigned size,
				 uint64_t next, uint64_t val)
{
	if (o->kind == EMU_OPND_GPR) {
		emu_reg_write(cpu, o->reg, size, val);
		return 0;
	}
	return emu_opnd_write_slow(cpu, in, o, size, next, val);
}

typedef uint64_t (*emu_rmw_fn)(struct emu_cpu *cpu, unsigned size,
			       uint64_t old, uint64_t src, uint64_t aux);

int emu_rmw_slow(struct emu_cpu *cpu, const struct emu_insn *in,
		 const struct emu_opnd *dst, unsigned size, uint64_t src,
		 uint64_t aux, uint64_t next, emu_rmw_fn fn, bool write,
		 uint64_t *old);

static inline int emu_rmw(struct emu_cpu *cpu, const struct emu_insn *in,
			  const struct emu_opnd *dst, unsigned size,
			  uint64_t src, uint64_t aux, uint64_t next,
			  emu_rmw_fn fn, bool write, uint64_t *old)
{
	if (dst->kind == EMU_OPND_GPR) {
		uint64_t prev = emu_reg_read(cpu, dst->reg, size);
		uint64_t val = fn(cpu, size, prev, src, aux);

		if (write)
			emu_reg_write(cpu, dst->reg, size, val);
		if (old)
			*old = prev;
		return 0;
	}
	return emu_rmw_slow(cpu, in, dst, size, src, aux, next, fn, write,
			    old);
}

unsigned emu_stack_size(const struct emu_cpu *cpu);
/* Push / pop `size` bytes; RSP changes only on success. */
int emu_push(struct emu_cpu *cpu, unsigned size, uint64_t val);
int emu_pop(struct emu_cpu *cpu, unsigned size, uint64_t *val);

/* Handlers, one per enum emu_op (emu.c dispatches). */
/* emu.c: the dispatch table, and the exception accounting of
 * emu_execute() (for the block runner's inlined copy of it). */
extern const emu_handler emu_handlers[EMU_OP_COUNT];
int emu_count_exc(struct emu_cpu *cpu, int r);

#define EMU_HANDLER(name) \
	int emu_exec_##name(struct emu_cpu *cpu, const struct emu_insn *in, \
			    uint64_t *next)

EMU_HANDLER(nop); EMU_HANDLER(mov); EMU_HANDLER(movzx); EMU_HANDLER(movsx);
EMU_HANDLER(lea); EMU_HANDLER(xchg); EMU_HANDLER(cmov); EMU_HANDLER(set);
EMU_HANDLER(cbw); EMU_HANDLER(cwd); EMU_HANDLER(bswap);
EMU_HANDLER(alu2); EMU_HANDLER(incdec); EMU_HANDLER(neg); EMU_HANDLER(not);
EMU_HANDLER(xadd); EMU_HANDLER(cmpxchg); EMU_HANDLER(flagop);
EMU_HANDLER(lahf); EMU_HANDLER(sahf);
EMU_HANDLER(mul); EMU_HANDLER(imul1); EMU_HANDLER(imul); EMU_HANDLER(div);
EMU_HANDLER(shift); EMU_HANDLER(rotate);
EMU_HANDLER(bt); EMU_HANDLER(bsf); EMU_HANDLER(bsr);
EMU_HANDLER(push); EMU_HANDLER(pop); EMU_HANDLER(pushf); EMU_HANDLER(popf);
EMU_HANDLER(leave);
EMU_HANDLER(jmp); EMU_HANDLER(jcc); EMU_HANDLER(call); EMU_HANDLER(ret);
EMU_HANDLER(loop); EMU_HANDLER(jrcxz);
EMU_HANDLER(string);
/* @SYS-DECLS@ */
EMU_HANDLER(movcr); EMU_HANDLER(movdr); EMU_HANDLER(clts); EMU_HANDLER(hlt);
EMU_HANDLER(in); EMU_HANDLER(out); EMU_HANDLER(pio_string);
EMU_HANDLER(invlpg); EMU_HANDLER(wbinvd); EMU_HANDLER(fence);
EMU_HANDLER(rdpmc); EMU_HANDLER(rdtsc); EMU_HANDLER(rdmsr); EMU_HANDLER(wrmsr);
EMU_HANDLER(cpuid); EMU_HANDLER(cmpxchg8b); EMU_HANDLER(shxd);
EMU_HANDLER(popcnt); EMU_HANDLER(xlat);
/* @SEG-DECLS@ */
/* exec_segment.c, exceptions.c: descriptors (SDM Vol. 3A 3.4.5) as the
 * raw 8-byte value. */
#define EMU_DESC_TYPE(d) ((unsigned)((d) >> 40) & 0xfu)
#define EMU_DESC_S(d)    (((d) >> 44) & 1u)
#define EMU_DESC_DPL(d)  ((unsigned)((d) >> 45) & 3u)
#define EMU_DESC_P(d)    (((d) >> 47) & 1u)
uint64_t emu_desc_base(uint64_t d);
uint32_t emu_desc_limit(uint64_t d); /* scaled by G */
void emu_seg_from_desc(struct emu_segment *s, uint16_t sel, uint64_t d);
/* Read the descriptor `sel` names from the GDT/LDT; a selector outside the
 * table raises `vec` with error code (sel & ~3) | ext.  *addr = its linear
 * address.  Returns 0 or EMU_EXC. */
int emu_desc_read(struct emu_cpu *cpu, uint16_t sel, unsigned vec,
		  uint32_t ext, uint64_t *addr, uint64_t *d);
/* emu_mem_read_sys() of a descriptor-table / IDT / TSS entry; a page that
 * maps outside guest RAM raises `vec` with `err` (see exec_segment.c). */
int emu_sys_read_ram(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		     uint64_t *val, unsigned vec, uint32_t err);
/* Set the accessed bit of a code/data descriptor if it is clear. */
int emu_desc_accessed(struct emu_cpu *cpu, uint64_t addr, uint64_t d);
/* Whether a legacy-mode segment holds [off, off + n) (expand-down aware). */
bool emu_seg_room(const struct emu_segment *s, uint64_t off, unsigned n);
/* MOV/POP Sreg semantics: load DS/ES/FS/GS/SS with all checks. */
int emu_load_sreg(struct emu_cpu *cpu, enum emu_seg seg, uint16_t sel);
/* Null DS/ES/FS/GS the new CPL may not use (return to outer level). */
void emu_null_inner_segs(struct emu_cpu *cpu, unsigned cpl);
/* One delivery attempt (no #DF escalation), pushing `ret_rip`: 0 or the
 * EMU_EXC of the fault that stopped it, state unchanged (exceptions.c). */
int emu_deliver_once(struct emu_cpu *cpu, unsigned vector,
		     int kind /* enum emu_event */, bool has_err, uint32_t err,
		     uint64_t ret_rip);
EMU_HANDLER(int); EMU_HANDLER(iret); EMU_HANDLER(jmpf); EMU_HANDLER(callf);
EMU_HANDLER(retf); EMU_HANDLER(mov_sreg); EMU_HANDLER(pop_sreg);
EMU_HANDLER(lseg); EMU_HANDLER(lgdt); EMU_HANDLER(sgdt); EMU_HANDLER(lldt);
EMU_HANDLER(sldt); EMU_HANDLER(lar); EMU_HANDLER(verr); EMU_HANDLER(swapgs);
EMU_HANDLER(syscall); EMU_HANDLER(sysret); EMU_HANDLER(sysenter);
EMU_HANDLER(sysexit); EMU_HANDLER(cli);
/* @SIMD-DECLS@ */
EMU_HANDLER(sse_mov); EMU_HANDLER(sse_movmsk); EMU_HANDLER(sse_pextrw);
EMU_HANDLER(sse_pinsrw); EMU_HANDLER(sse_op); EMU_HANDLER(sse_cvtsi2f);
EMU_HANDLER(sse_cvtf2si); EMU_HANDLER(sse_comi); EMU_HANDLER(sse_ldmxcsr);
EMU_HANDLER(sse_stmxcsr); EMU_HANDLER(fxsave); EMU_HANDLER(fxrstor);
EMU_HANDLER(emms); EMU_HANDLER(x87);
/* exec_x87.c: FNINIT state (also for reset) */
void emu_x87_reset(struct emu_cpu *cpu);

#endif
