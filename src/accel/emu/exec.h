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
/* Set the status flags in `mask` to `bits` and the rest to their current
 * values, ending the lazy state (for instructions defining only some). */
void emu_flags_update(struct emu_cpu *cpu, uint64_t mask, uint64_t bits);

/* operand.c */
/* Effective address (offset in the operand's segment) of a MEM operand,
 * wrapped to the address size; RIP-relative uses `next`. */
uint64_t emu_ea(const struct emu_cpu *cpu, const struct emu_insn *in,
		const struct emu_opnd *o, uint64_t next);
/* Read operand `o` as `size` bytes (zero-extended; IMM values are returned
 * as decoded, masked to size).  Returns 0 or EMU_EXC. */
int emu_opnd_read(struct emu_cpu *cpu, const struct emu_insn *in,
		  const struct emu_opnd *o, unsigned size, uint64_t next,
		  uint64_t *val);
/* Write operand `o` (GPR or MEM) as `size` bytes.  Returns 0 or EMU_EXC. */
int emu_opnd_write(struct emu_cpu *cpu, const struct emu_insn *in,
		   const struct emu_opnd *o, unsigned size, uint64_t next,
		   uint64_t val);

/* A read-modify-write computation: the new value from the old one, the
 * source and `aux` (carry-in, old CF, the accumulator: whatever the
 * instruction read before the update), recording flags with emu_lazy().  Must be pure apart from the
 * flags, since a locked update may evaluate it more than once. */
typedef uint64_t (*emu_rmw_fn)(struct emu_cpu *cpu, unsigned size,
			       uint64_t old, uint64_t src, uint64_t aux);

/* dst = fn(dst, src) on a GPR or memory destination, atomically when the
 * instruction has a LOCK prefix and the destination is aligned guest RAM.
 * With `write` false only the flags are produced (CMP, TEST).  *old gets
 * the value before the update (may be NULL).  Returns 0 or EMU_EXC. */
int emu_rmw(struct emu_cpu *cpu, const struct emu_insn *in,
	    const struct emu_opnd *dst, unsigned size, uint64_t src,
	    uint64_t aux, uint64_t next, emu_rmw_fn fn, bool write,
	    uint64_t *old);

/* Stack-address size in bytes (8 in 64-bit mode, else SS.B ? 4 : 2). */
unsigned emu_stack_size(const struct emu_cpu *cpu);
/* Push / pop `size` bytes; RSP changes only on success. */
int emu_push(struct emu_cpu *cpu, unsigned size, uint64_t val);
int emu_pop(struct emu_cpu *cpu, unsigned size, uint64_t *val);

/* Handlers, one per enum emu_op (emu.c dispatches). */
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
/* @SEG-DECLS@ */
/* @SIMD-DECLS@ */

#endif
