/*
 * decode.h - the software CPU's decoded instruction form.
 *
 * decode.c turns guest bytes into a `struct emu_insn` once; the executor
 * (exec_*.c) only ever looks at this form, never at the bytes, so the
 * decoded-block cache of the next step can keep arrays of them.  The form
 * is small (64 bytes) and self-contained: a handler id, up to three
 * explicit operands in a uniform register / memory / immediate shape, the
 * effective operand and address sizes, the prefixes that change semantics,
 * and the length.  Implicit operands (RAX of MUL, RSI/RDI of string
 * instructions, RSP of PUSH) are the handler's business.
 */
#ifndef KVMM_ACCEL_EMU_DECODE_H
#define KVMM_ACCEL_EMU_DECODE_H

#include <stdint.h>

#include "accel/emu/cpu.h"

/* Handler ids; one per instruction (or per family sharing a handler).
 * EMU_OP_UD: a valid encoding we do not implement, executed as #UD. */
enum emu_op {
	EMU_OP_UD = 0,
	EMU_OP_NOP,
	/* exec_move.c */
	EMU_OP_MOV, EMU_OP_MOVZX, EMU_OP_MOVSX, EMU_OP_MOVSXD, EMU_OP_LEA,
	EMU_OP_XCHG, EMU_OP_CMOV, EMU_OP_SET, EMU_OP_CBW /* CBW/CWDE/CDQE */,
	EMU_OP_CWD /* CWD/CDQ/CQO */, EMU_OP_BSWAP,
	/* exec_alu.c */
	EMU_OP_ADD, EMU_OP_ADC, EMU_OP_SUB, EMU_OP_SBB, EMU_OP_CMP,
	EMU_OP_AND, EMU_OP_OR, EMU_OP_XOR, EMU_OP_TEST, EMU_OP_INC,
	EMU_OP_DEC, EMU_OP_NEG, EMU_OP_NOT, EMU_OP_XADD, EMU_OP_CMPXCHG,
	EMU_OP_CLC, EMU_OP_STC, EMU_OP_CMC, EMU_OP_CLD, EMU_OP_STD,
	EMU_OP_LAHF, EMU_OP_SAHF,
	/* exec_muldiv.c */
	EMU_OP_MUL, EMU_OP_IMUL1 /* one operand */, EMU_OP_IMUL /* 2 and 3 */,
	EMU_OP_DIV, EMU_OP_IDIV,
	/* exec_shift.c */
	EMU_OP_SHL, EMU_OP_SHR, EMU_OP_SAR, EMU_OP_ROL, EMU_OP_ROR,
	EMU_OP_RCL, EMU_OP_RCR,
	/* exec_bit.c */
	EMU_OP_BT, EMU_OP_BTS, EMU_OP_BTR, EMU_OP_BTC, EMU_OP_BSF, EMU_OP_BSR,
	/* exec_stack.c */
	EMU_OP_PUSH, EMU_OP_POP, EMU_OP_PUSHF, EMU_OP_POPF, EMU_OP_LEAVE,
	/* exec_branch.c */
	EMU_OP_JMP, EMU_OP_JCC, EMU_OP_CALL, EMU_OP_RET, EMU_OP_LOOP,
	EMU_OP_LOOPE, EMU_OP_LOOPNE, EMU_OP_JRCXZ,
	/* exec_string.c */
	EMU_OP_MOVS, EMU_OP_STOS, EMU_OP_LODS, EMU_OP_CMPS, EMU_OP_SCAS,
	/* exec_system.c, exec_misc.c, cpuid.c, msr.c, tsc.c */
	/* @SYS-OPS@ */
	EMU_OP_MOVCR, EMU_OP_MOVDR, EMU_OP_CLTS, EMU_OP_HLT, EMU_OP_IN,
	EMU_OP_OUT, EMU_OP_INS, EMU_OP_OUTS, EMU_OP_INVLPG,
	EMU_OP_WBINVD /* WBINVD, INVD */, EMU_OP_FENCE /* L/M/SFENCE */,
	EMU_OP_RDPMC, EMU_OP_RDTSC, EMU_OP_RDTSCP, EMU_OP_RDMSR, EMU_OP_WRMSR,
	EMU_OP_CPUID, EMU_OP_CMPXCHG8B /* and CMPXCHG16B */, EMU_OP_SHLD,
	EMU_OP_SHRD, EMU_OP_POPCNT, EMU_OP_XLAT,
	/* exceptions.c, exec_segment.c */
	/* @SEG-OPS@ */
	EMU_OP_INT, EMU_OP_INT3, EMU_OP_INTO, EMU_OP_INT1, EMU_OP_IRET,
	EMU_OP_JMPF, EMU_OP_CALLF, EMU_OP_RETF, EMU_OP_MOV_SREG, EMU_OP_POP_SREG,
	EMU_OP_LDS, EMU_OP_LES, EMU_OP_LFS, EMU_OP_LGS, EMU_OP_LSS, /* in this order */
	EMU_OP_LGDT, EMU_OP_LIDT, EMU_OP_SGDT, EMU_OP_SIDT, EMU_OP_LLDT,
	EMU_OP_SLDT, EMU_OP_LTR, EMU_OP_STR, EMU_OP_LAR, EMU_OP_LSL, EMU_OP_VERR,
	EMU_OP_VERW, EMU_OP_SWAPGS, EMU_OP_SYSCALL, EMU_OP_SYSRET,
	EMU_OP_SYSENTER, EMU_OP_SYSEXIT, EMU_OP_CLI, EMU_OP_STI,
	/* exec_sse.c, exec_x87.c */
	/* @SIMD-OPS@ */
#define EMU_SIMD_OP(mn, h) EMU_OP_##mn,
#include "accel/emu/simd_ops.def"
#undef EMU_SIMD_OP
	EMU_OP_COUNT
};

enum emu_opnd_kind {
	EMU_OPND_NONE,
	EMU_OPND_GPR,   /* reg: 0-15, or EMU_REG_AH..EMU_REG_BH */
	EMU_OPND_MEM,   /* seg:[base + index * scale + disp] */
	EMU_OPND_IMM,   /* imm: sign-extended to 64 bits where the SDM says so */
	EMU_OPND_REL,   /* imm: branch displacement from the next RIP */
	EMU_OPND_SEG,   /* reg: enum emu_seg */
	EMU_OPND_XMM,   /* reg: 0-15 */
	EMU_OPND_OTHER, /* control/debug/x87/MMX/mask registers, far pointers */
};

#define EMU_REG_AH   16 /* AH, CH, DH, BH: bits 8-15 of RAX..RBX */
#define EMU_REG_RIP  32 /* base of a RIP-relative address */
#define EMU_REG_NONE 0xff

struct emu_opnd {
	uint8_t kind;   /* enum emu_opnd_kind */
	uint8_t size;   /* bytes (0 for LEA's address-only operand) */
	uint8_t reg;    /* GPR / SEG / XMM number */
	uint8_t base;   /* MEM: GPR, EMU_REG_RIP or EMU_REG_NONE */
	uint8_t index;  /* MEM: GPR or EMU_REG_NONE */
	uint8_t scale;  /* MEM: 1, 2, 4, 8 */
	uint8_t seg;    /* MEM: enum emu_seg, default or override applied */
	uint8_t pad;
	int64_t val;    /* MEM: displacement; IMM / REL: the value */
};

#define EMU_PFX_LOCK  (1u << 0)
#define EMU_PFX_REP   (1u << 1) /* F3 on MOVS/STOS/LODS/INS/OUTS, REPE on CMPS/SCAS */
#define EMU_PFX_REPNE (1u << 2) /* F2 on CMPS/SCAS */

struct emu_insn {
	uint16_t op;       /* enum emu_op */
	uint8_t cc;        /* condition 0-15 (SDM Vol. 1 B.1) for Jcc/SETcc/CMOVcc */
	uint8_t len;       /* bytes, 1-15 */
	uint8_t opsize;    /* effective operand size, bytes */
	uint8_t addrsize;  /* effective address size, bytes */
	uint8_t prefixes;  /* EMU_PFX_* */
	uint8_t nr_opnds;  /* explicit operands in opnd[] */
	uint8_t seg;       /* data segment for implicit DS operands (override applied) */
	uint8_t pad[7];
	struct emu_opnd opnd[3];
};

/* Decode the instruction in bytes[0, len) for `mode`; `stack_size` (2, 4
 * or 8 bytes) is the stack-address size (SS.B, or 8 in 64-bit mode).
 * Returns 0 with *insn filled (op = EMU_OP_UD for a valid encoding kvmm does
 * not execute yet), -ENODATA when the instruction runs past `len` bytes,
 * -E2BIG when it is longer than 15 bytes (#GP(0), SDM Vol. 2A 2.3.11),
 * -EILSEQ for an invalid encoding (#UD; also a LOCK prefix on an
 * instruction that does not allow it, SDM Vol. 2A 2.1.1). */
int emu_decode(enum emu_mode mode, unsigned stack_size, const uint8_t *bytes,
	       unsigned len, struct emu_insn *insn);

#endif
