/*
 * decode.c - x86 instruction decoding for the software CPU, on libzydis.
 *
 * Why Zydis: x86 decoding is a large, table-driven, well-specified problem
 * in which hand-written decoders collect subtle bugs (which prefixes a map
 * accepts, REX vs. high-byte registers, 16-bit ModRM forms, VEX/EVEX
 * escapes, the 15-byte limit, LOCK legality).  Zydis is a maintained
 * decoder packaged by Debian (libzydis-dev 4.0) with exactly that in its
 * tables; it decodes every machine mode (real, 16/32-bit protected, compat,
 * 64-bit) from one call, reports invalid encodings, and resolves the
 * effective operand/address sizes, the default segment of each memory
 * operand (SS for RSP/RBP bases) and sign-extended immediates.  What we own
 * is the translation from Zydis's rich, general structure (about 1 KiB per
 * instruction) into `struct emu_insn` (64 bytes), done once per instruction
 * and cached with its block by the next step, so Zydis's cost is paid once
 * per decoded instruction, not per execution.
 *
 * The mapping is deliberately narrow: only visible (explicit) operands are
 * kept, registers become small numbers (GPR 0-15, AH-BH as 16-19, segment
 * and XMM numbers), memory operands keep base/index/scale/disp/segment, and
 * each mnemonic we execute maps to a handler id.  Any other valid
 * instruction maps to EMU_OP_UD, which the executor raises as #UD and
 * counts, so missing instructions are visible in the statistics.
 *
 * The decoder is stateless: a ZydisDecoder is a few bytes of mode settings
 * and is initialized on the stack per call, so no global state is needed
 * and vCPU threads never share anything here.
 */
#include <errno.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "accel/emu/decode.h"

static ZydisMachineMode zydis_mode(enum emu_mode mode)
{
	switch (mode) {
	case EMU_MODE_REAL:   return ZYDIS_MACHINE_MODE_REAL_16;
	case EMU_MODE_PROT16: return ZYDIS_MACHINE_MODE_LEGACY_16;
	case EMU_MODE_PROT32: return ZYDIS_MACHINE_MODE_LEGACY_32;
	case EMU_MODE_LONG64: break;
	}
	return ZYDIS_MACHINE_MODE_LONG_64;
}

/* Zydis segment register -> enum emu_seg; DS for anything else. */
static uint8_t map_seg(ZydisRegister r)
{
	switch (r) {
	case ZYDIS_REGISTER_ES: return EMU_SEG_ES;
	case ZYDIS_REGISTER_CS: return EMU_SEG_CS;
	case ZYDIS_REGISTER_SS: return EMU_SEG_SS;
	case ZYDIS_REGISTER_FS: return EMU_SEG_FS;
	case ZYDIS_REGISTER_GS: return EMU_SEG_GS;
	default:                return EMU_SEG_DS;
	}
}

/* Zydis GPR -> our number (0-15, AH-BH = 16-19), or EMU_REG_NONE. */
static uint8_t map_gpr(ZydisRegister r)
{
	if (r >= ZYDIS_REGISTER_AL && r <= ZYDIS_REGISTER_BL)
		return (uint8_t)(r - ZYDIS_REGISTER_AL);
	if (r >= ZYDIS_REGISTER_AH && r <= ZYDIS_REGISTER_BH)
		return (uint8_t)(EMU_REG_AH + (r - ZYDIS_REGISTER_AH));
	if (r >= ZYDIS_REGISTER_SPL && r <= ZYDIS_REGISTER_R15B)
		return (uint8_t)(4 + (r - ZYDIS_REGISTER_SPL));
	if (r >= ZYDIS_REGISTER_AX && r <= ZYDIS_REGISTER_R15W)
		return (uint8_t)(r - ZYDIS_REGISTER_AX);
	if (r >= ZYDIS_REGISTER_EAX && r <= ZYDIS_REGISTER_R15D)
		return (uint8_t)(r - ZYDIS_REGISTER_EAX);
	if (r >= ZYDIS_REGISTER_RAX && r <= ZYDIS_REGISTER_R15)
		return (uint8_t)(r - ZYDIS_REGISTER_RAX);
	return EMU_REG_NONE;
}

static void map_operand(const ZydisDecodedOperand *zo, struct emu_opnd *o)
{
	memset(o, 0, sizeof(*o));
	o->size = (uint8_t)(zo->size / 8);
	o->base = o->index = EMU_REG_NONE;
	switch (zo->type) {
	case ZYDIS_OPERAND_TYPE_REGISTER: {
		ZydisRegister r = zo->reg.value;

		if ((o->reg = map_gpr(r)) != EMU_REG_NONE) {
			o->kind = EMU_OPND_GPR;
		} else if (r >= ZYDIS_REGISTER_ES && r <= ZYDIS_REGISTER_GS) {
			o->kind = EMU_OPND_SEG;
			o->reg = map_seg(r);
		} else if (r >= ZYDIS_REGISTER_XMM0 &&
			   r <= ZYDIS_REGISTER_XMM15) {
			o->kind = EMU_OPND_XMM;
			o->reg = (uint8_t)(r - ZYDIS_REGISTER_XMM0);
		} else {
			o->kind = EMU_OPND_OTHER;
		}
		break;
	}
	case ZYDIS_OPERAND_TYPE_MEMORY:
		if (zo->mem.type != ZYDIS_MEMOP_TYPE_MEM &&
		    zo->mem.type != ZYDIS_MEMOP_TYPE_AGEN) {
			o->kind = EMU_OPND_OTHER; /* MIB, VSIB */
			break;
		}
		o->kind = EMU_OPND_MEM;
		if (zo->mem.base == ZYDIS_REGISTER_RIP ||
		    zo->mem.base == ZYDIS_REGISTER_EIP)
			o->base = EMU_REG_RIP;
		else if (zo->mem.base != ZYDIS_REGISTER_NONE)
			o->base = map_gpr(zo->mem.base);
		if (zo->mem.index != ZYDIS_REGISTER_NONE)
			o->index = map_gpr(zo->mem.index);
		/* A base or index that is no GPR (VSIB vector index). */
		if ((zo->mem.base != ZYDIS_REGISTER_NONE &&
		     o->base == EMU_REG_NONE) ||
		    (zo->mem.index != ZYDIS_REGISTER_NONE &&
		     o->index == EMU_REG_NONE))
			o->kind = EMU_OPND_OTHER;
		o->scale = zo->mem.scale ? zo->mem.scale : 1;
		o->seg = map_seg(zo->mem.segment);
		o->val = zo->mem.disp.has_displacement ? zo->mem.disp.value : 0;
		break;
	case ZYDIS_OPERAND_TYPE_IMMEDIATE:
		o->kind = zo->imm.is_relative ? EMU_OPND_REL : EMU_OPND_IMM;
		o->val = zo->imm.value.s;
		break;
	default:
		o->kind = EMU_OPND_OTHER; /* far pointer */
		break;
	}
}

static uint16_t map_mnemonic(ZydisMnemonic m, unsigned nr_visible)
{
	switch (m) {
	case ZYDIS_MNEMONIC_NOP:
	case ZYDIS_MNEMONIC_ENDBR64:
	case ZYDIS_MNEMONIC_ENDBR32:
	case ZYDIS_MNEMONIC_PAUSE:     return EMU_OP_NOP;
	case ZYDIS_MNEMONIC_MOV:       return EMU_OP_MOV;
	case ZYDIS_MNEMONIC_MOVZX:     return EMU_OP_MOVZX;
	case ZYDIS_MNEMONIC_MOVSX:     return EMU_OP_MOVSX;
	case ZYDIS_MNEMONIC_MOVSXD:    return EMU_OP_MOVSXD;
	case ZYDIS_MNEMONIC_LEA:       return EMU_OP_LEA;
	case ZYDIS_MNEMONIC_XCHG:      return EMU_OP_XCHG;
	case ZYDIS_MNEMONIC_CMOVO: case ZYDIS_MNEMONIC_CMOVNO:
	case ZYDIS_MNEMONIC_CMOVB: case ZYDIS_MNEMONIC_CMOVNB:
	case ZYDIS_MNEMONIC_CMOVZ: case ZYDIS_MNEMONIC_CMOVNZ:
	case ZYDIS_MNEMONIC_CMOVBE: case ZYDIS_MNEMONIC_CMOVNBE:
	case ZYDIS_MNEMONIC_CMOVS: case ZYDIS_MNEMONIC_CMOVNS:
	case ZYDIS_MNEMONIC_CMOVP: case ZYDIS_MNEMONIC_CMOVNP:
	case ZYDIS_MNEMONIC_CMOVL: case ZYDIS_MNEMONIC_CMOVNL:
	case ZYDIS_MNEMONIC_CMOVLE: case ZYDIS_MNEMONIC_CMOVNLE:
		return EMU_OP_CMOV;
	case ZYDIS_MNEMONIC_SETO: case ZYDIS_MNEMONIC_SETNO:
	case ZYDIS_MNEMONIC_SETB: case ZYDIS_MNEMONIC_SETNB:
	case ZYDIS_MNEMONIC_SETZ: case ZYDIS_MNEMONIC_SETNZ:
	case ZYDIS_MNEMONIC_SETBE: case ZYDIS_MNEMONIC_SETNBE:
	case ZYDIS_MNEMONIC_SETS: case ZYDIS_MNEMONIC_SETNS:
	case ZYDIS_MNEMONIC_SETP: case ZYDIS_MNEMONIC_SETNP:
	case ZYDIS_MNEMONIC_SETL: case ZYDIS_MNEMONIC_SETNL:
	case ZYDIS_MNEMONIC_SETLE: case ZYDIS_MNEMONIC_SETNLE:
		return EMU_OP_SET;
	case ZYDIS_MNEMONIC_CBW: case ZYDIS_MNEMONIC_CWDE:
	case ZYDIS_MNEMONIC_CDQE:      return EMU_OP_CBW;
	case ZYDIS_MNEMONIC_CWD: case ZYDIS_MNEMONIC_CDQ:
	case ZYDIS_MNEMONIC_CQO:       return EMU_OP_CWD;
	case ZYDIS_MNEMONIC_BSWAP:     return EMU_OP_BSWAP;
	case ZYDIS_MNEMONIC_ADD:       return EMU_OP_ADD;
	case ZYDIS_MNEMONIC_ADC:       return EMU_OP_ADC;
	case ZYDIS_MNEMONIC_SUB:       return EMU_OP_SUB;
	case ZYDIS_MNEMONIC_SBB:       return EMU_OP_SBB;
	case ZYDIS_MNEMONIC_CMP:       return EMU_OP_CMP;
	case ZYDIS_MNEMONIC_AND:       return EMU_OP_AND;
	case ZYDIS_MNEMONIC_OR:        return EMU_OP_OR;
	case ZYDIS_MNEMONIC_XOR:       return EMU_OP_XOR;
	case ZYDIS_MNEMONIC_TEST:      return EMU_OP_TEST;
	case ZYDIS_MNEMONIC_INC:       return EMU_OP_INC;
	case ZYDIS_MNEMONIC_DEC:       return EMU_OP_DEC;
	case ZYDIS_MNEMONIC_NEG:       return EMU_OP_NEG;
	case ZYDIS_MNEMONIC_NOT:       return EMU_OP_NOT;
	case ZYDIS_MNEMONIC_XADD:      return EMU_OP_XADD;
	case ZYDIS_MNEMONIC_CMPXCHG:   return EMU_OP_CMPXCHG;
	case ZYDIS_MNEMONIC_CLC:       return EMU_OP_CLC;
	case ZYDIS_MNEMONIC_STC:       return EMU_OP_STC;
	case ZYDIS_MNEMONIC_CMC:       return EMU_OP_CMC;
	case ZYDIS_MNEMONIC_CLD:       return EMU_OP_CLD;
	case ZYDIS_MNEMONIC_STD:       return EMU_OP_STD;
	case ZYDIS_MNEMONIC_LAHF:      return EMU_OP_LAHF;
	case ZYDIS_MNEMONIC_SAHF:      return EMU_OP_SAHF;
	case ZYDIS_MNEMONIC_MUL:       return EMU_OP_MUL;
	case ZYDIS_MNEMONIC_IMUL:
		return nr_visible == 1 ? EMU_OP_IMUL1 : EMU_OP_IMUL;
	case ZYDIS_MNEMONIC_DIV:       return EMU_OP_DIV;
	case ZYDIS_MNEMONIC_IDIV:      return EMU_OP_IDIV;
	case ZYDIS_MNEMONIC_SHL:       return EMU_OP_SHL;
	case ZYDIS_MNEMONIC_SHR:       return EMU_OP_SHR;
	case ZYDIS_MNEMONIC_SAR:       return EMU_OP_SAR;
	case ZYDIS_MNEMONIC_ROL:       return EMU_OP_ROL;
	case ZYDIS_MNEMONIC_ROR:       return EMU_OP_ROR;
	case ZYDIS_MNEMONIC_RCL:       return EMU_OP_RCL;
	case ZYDIS_MNEMONIC_RCR:       return EMU_OP_RCR;
	case ZYDIS_MNEMONIC_BT:        return EMU_OP_BT;
	case ZYDIS_MNEMONIC_BTS:       return EMU_OP_BTS;
	case ZYDIS_MNEMONIC_BTR:       return EMU_OP_BTR;
	case ZYDIS_MNEMONIC_BTC:       return EMU_OP_BTC;
	case ZYDIS_MNEMONIC_BSF:       return EMU_OP_BSF;
	case ZYDIS_MNEMONIC_BSR:       return EMU_OP_BSR;
	case ZYDIS_MNEMONIC_PUSH:      return EMU_OP_PUSH;
	case ZYDIS_MNEMONIC_POP:       return EMU_OP_POP;
	case ZYDIS_MNEMONIC_PUSHF: case ZYDIS_MNEMONIC_PUSHFD:
	case ZYDIS_MNEMONIC_PUSHFQ:    return EMU_OP_PUSHF;
	case ZYDIS_MNEMONIC_POPF: case ZYDIS_MNEMONIC_POPFD:
	case ZYDIS_MNEMONIC_POPFQ:     return EMU_OP_POPF;
	case ZYDIS_MNEMONIC_LEAVE:     return EMU_OP_LEAVE;
	case ZYDIS_MNEMONIC_JMP:       return EMU_OP_JMP;
	case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JNO:
	case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JNB:
	case ZYDIS_MNEMONIC_JZ: case ZYDIS_MNEMONIC_JNZ:
	case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JNBE:
	case ZYDIS_MNEMONIC_JS: case ZYDIS_MNEMONIC_JNS:
	case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JNP:
	case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_JNL:
	case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNLE:
		return EMU_OP_JCC;
	case ZYDIS_MNEMONIC_CALL:      return EMU_OP_CALL;
	case ZYDIS_MNEMONIC_RET:       return EMU_OP_RET;
	case ZYDIS_MNEMONIC_LOOP:      return EMU_OP_LOOP;
	case ZYDIS_MNEMONIC_LOOPE:     return EMU_OP_LOOPE;
	case ZYDIS_MNEMONIC_LOOPNE:    return EMU_OP_LOOPNE;
	case ZYDIS_MNEMONIC_JCXZ: case ZYDIS_MNEMONIC_JECXZ:
	case ZYDIS_MNEMONIC_JRCXZ:     return EMU_OP_JRCXZ;
	case ZYDIS_MNEMONIC_MOVSB: case ZYDIS_MNEMONIC_MOVSW:
	case ZYDIS_MNEMONIC_MOVSQ:     return EMU_OP_MOVS;
	case ZYDIS_MNEMONIC_STOSB: case ZYDIS_MNEMONIC_STOSW:
	case ZYDIS_MNEMONIC_STOSD: case ZYDIS_MNEMONIC_STOSQ:
		return EMU_OP_STOS;
	case ZYDIS_MNEMONIC_LODSB: case ZYDIS_MNEMONIC_LODSW:
	case ZYDIS_MNEMONIC_LODSD: case ZYDIS_MNEMONIC_LODSQ:
		return EMU_OP_LODS;
	case ZYDIS_MNEMONIC_CMPSB: case ZYDIS_MNEMONIC_CMPSW:
	case ZYDIS_MNEMONIC_CMPSQ:     return EMU_OP_CMPS;
	case ZYDIS_MNEMONIC_SCASB: case ZYDIS_MNEMONIC_SCASW:
	case ZYDIS_MNEMONIC_SCASD: case ZYDIS_MNEMONIC_SCASQ:
		return EMU_OP_SCAS;
	/* @SYS-MNEMONICS@ */
	case ZYDIS_MNEMONIC_CLTS:      return EMU_OP_CLTS;
	case ZYDIS_MNEMONIC_HLT:       return EMU_OP_HLT;
	case ZYDIS_MNEMONIC_IN:        return EMU_OP_IN;
	case ZYDIS_MNEMONIC_OUT:       return EMU_OP_OUT;
	case ZYDIS_MNEMONIC_INSB: case ZYDIS_MNEMONIC_INSW:
	case ZYDIS_MNEMONIC_INSD:      return EMU_OP_INS;
	case ZYDIS_MNEMONIC_OUTSB: case ZYDIS_MNEMONIC_OUTSW:
	case ZYDIS_MNEMONIC_OUTSD:     return EMU_OP_OUTS;
	case ZYDIS_MNEMONIC_INVLPG:    return EMU_OP_INVLPG;
	case ZYDIS_MNEMONIC_WBINVD: case ZYDIS_MNEMONIC_INVD:
		return EMU_OP_WBINVD;
	case ZYDIS_MNEMONIC_LFENCE: case ZYDIS_MNEMONIC_MFENCE:
	case ZYDIS_MNEMONIC_SFENCE:    return EMU_OP_FENCE;
	/* Cache-line and prefetch hints: no architectural effect here
	 * (exec_system.c says why CLFLUSH does not even probe). */
	case ZYDIS_MNEMONIC_CLFLUSH: case ZYDIS_MNEMONIC_CLFLUSHOPT:
	case ZYDIS_MNEMONIC_PREFETCHNTA: case ZYDIS_MNEMONIC_PREFETCHT0:
	case ZYDIS_MNEMONIC_PREFETCHT1: case ZYDIS_MNEMONIC_PREFETCHT2:
	case ZYDIS_MNEMONIC_PREFETCHW: case ZYDIS_MNEMONIC_PREFETCH:
		return EMU_OP_NOP;
	case ZYDIS_MNEMONIC_RDPMC:     return EMU_OP_RDPMC;
	case ZYDIS_MNEMONIC_RDTSC:     return EMU_OP_RDTSC;
	case ZYDIS_MNEMONIC_RDTSCP:    return EMU_OP_RDTSCP;
	case ZYDIS_MNEMONIC_RDMSR:     return EMU_OP_RDMSR;
	case ZYDIS_MNEMONIC_WRMSR:     return EMU_OP_WRMSR;
	case ZYDIS_MNEMONIC_CPUID:     return EMU_OP_CPUID;
	case ZYDIS_MNEMONIC_CMPXCHG8B: case ZYDIS_MNEMONIC_CMPXCHG16B:
		return EMU_OP_CMPXCHG8B;
	case ZYDIS_MNEMONIC_SHLD:      return EMU_OP_SHLD;
	case ZYDIS_MNEMONIC_SHRD:      return EMU_OP_SHRD;
	case ZYDIS_MNEMONIC_POPCNT:    return EMU_OP_POPCNT;
	/* BMI1 and ABM are hidden (cpuid.c), so F3 0F BC / F3 0F BD execute
	 * as BSF / BSR with the REP prefix ignored, as on CPUs without them. */
	case ZYDIS_MNEMONIC_TZCNT:     return EMU_OP_BSF;
	case ZYDIS_MNEMONIC_LZCNT:     return EMU_OP_BSR;
	case ZYDIS_MNEMONIC_XLAT:      return EMU_OP_XLAT;
	/* @SEG-MNEMONICS@ */
	case ZYDIS_MNEMONIC_INT:       return EMU_OP_INT;
	case ZYDIS_MNEMONIC_INT3:      return EMU_OP_INT3;
	case ZYDIS_MNEMONIC_INTO:      return EMU_OP_INTO;
	case ZYDIS_MNEMONIC_INT1:      return EMU_OP_INT1;
	case ZYDIS_MNEMONIC_IRET: case ZYDIS_MNEMONIC_IRETD:
	case ZYDIS_MNEMONIC_IRETQ:     return EMU_OP_IRET;
	case ZYDIS_MNEMONIC_LDS:       return EMU_OP_LDS;
	case ZYDIS_MNEMONIC_LES:       return EMU_OP_LES;
	case ZYDIS_MNEMONIC_LFS:       return EMU_OP_LFS;
	case ZYDIS_MNEMONIC_LGS:       return EMU_OP_LGS;
	case ZYDIS_MNEMONIC_LSS:       return EMU_OP_LSS;
	case ZYDIS_MNEMONIC_LGDT:      return EMU_OP_LGDT;
	case ZYDIS_MNEMONIC_LIDT:      return EMU_OP_LIDT;
	case ZYDIS_MNEMONIC_SGDT:      return EMU_OP_SGDT;
	case ZYDIS_MNEMONIC_SIDT:      return EMU_OP_SIDT;
	case ZYDIS_MNEMONIC_LLDT:      return EMU_OP_LLDT;
	case ZYDIS_MNEMONIC_SLDT:      return EMU_OP_SLDT;
	case ZYDIS_MNEMONIC_LTR:       return EMU_OP_LTR;
	case ZYDIS_MNEMONIC_STR:       return EMU_OP_STR;
	case ZYDIS_MNEMONIC_LAR:       return EMU_OP_LAR;
	case ZYDIS_MNEMONIC_LSL:       return EMU_OP_LSL;
	case ZYDIS_MNEMONIC_VERR:      return EMU_OP_VERR;
	case ZYDIS_MNEMONIC_VERW:      return EMU_OP_VERW;
	case ZYDIS_MNEMONIC_SWAPGS:    return EMU_OP_SWAPGS;
	case ZYDIS_MNEMONIC_SYSCALL:   return EMU_OP_SYSCALL;
	case ZYDIS_MNEMONIC_SYSRET:    return EMU_OP_SYSRET;
	case ZYDIS_MNEMONIC_SYSENTER:  return EMU_OP_SYSENTER;
	case ZYDIS_MNEMONIC_SYSEXIT:   return EMU_OP_SYSEXIT;
	case ZYDIS_MNEMONIC_CLI:       return EMU_OP_CLI;
	case ZYDIS_MNEMONIC_STI:       return EMU_OP_STI;
	/* @SIMD-MNEMONICS@ */
#define EMU_SIMD_OP(mn, h) case ZYDIS_MNEMONIC_##mn: return EMU_OP_##mn;
#include "accel/emu/simd_ops.def"
#undef EMU_SIMD_OP
	default:
		return EMU_OP_UD;
	}
}

int emu_decode(enum emu_mode mode, unsigned stack_size, const uint8_t *bytes,
	       unsigned len, struct emu_insn *insn)
{
	ZydisDecoder dec;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
	ZydisStackWidth sw;
	ZyanStatus st;
	unsigned n;

	sw = stack_size == 8 ? ZYDIS_STACK_WIDTH_64 :
	     stack_size == 4 ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16;
	if (mode == EMU_MODE_LONG64)
		sw = ZYDIS_STACK_WIDTH_64;
	if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, zydis_mode(mode), sw)))
		return -EINVAL;
	st = ZydisDecoderDecodeFull(&dec, bytes, len, &zi, zo);
	if (st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG ||
	    (st == ZYDIS_STATUS_NO_MORE_DATA &&
	     len >= ZYDIS_MAX_INSTRUCTION_LENGTH))
		return -E2BIG;
	if (st == ZYDIS_STATUS_NO_MORE_DATA)
		return -ENODATA;
	if (!ZYAN_SUCCESS(st))
		return -EILSEQ;

	memset(insn, 0, sizeof(*insn));
	n = zi.operand_count_visible;
	if (n > 3)
		n = 3; /* only AVX-512 forms have more; they map to UD */
	insn->op = map_mnemonic(zi.mnemonic, n);
	/* Zydis names the string MOVSD/CMPSD (A5/A7) like the SSE2 ones. */
	if (zi.opcode_map == ZYDIS_OPCODE_MAP_DEFAULT) {
		if (zi.mnemonic == ZYDIS_MNEMONIC_MOVSD)
			insn->op = EMU_OP_MOVS;
		else if (zi.mnemonic == ZYDIS_MNEMONIC_CMPSD)
			insn->op = EMU_OP_CMPS;
	}
	insn->len = zi.length;
	insn->opsize = (uint8_t)(zi.operand_width / 8);
	insn->addrsize = (uint8_t)(zi.address_width / 8);
	insn->nr_opnds = (uint8_t)n;
	insn->cc = zi.opcode & 0xf;
	if (zi.attributes & ZYDIS_ATTRIB_HAS_LOCK)
		insn->prefixes |= EMU_PFX_LOCK;
	if (zi.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE))
		insn->prefixes |= EMU_PFX_REP;
	if (zi.attributes & ZYDIS_ATTRIB_HAS_REPNE)
		insn->prefixes |= EMU_PFX_REPNE;
	insn->seg = EMU_SEG_DS;
	if (zi.attributes & ZYDIS_ATTRIB_HAS_SEGMENT_ES)
		insn->seg = EMU_SEG_ES;
	else if (zi.attributes & ZYDIS_ATTRIB_HAS_SEGMENT_CS)
		insn->seg = EMU_SEG_CS;
	else if (zi.attributes & ZYDIS_ATTRIB_HAS_SEGMENT_SS)
		insn->seg = EMU_SEG_SS;
	else if (zi.attributes & ZYDIS_ATTRIB_HAS_SEGMENT_FS)
		insn->seg = EMU_SEG_FS;
	else if (zi.attributes & ZYDIS_ATTRIB_HAS_SEGMENT_GS)
		insn->seg = EMU_SEG_GS;
	for (unsigned i = 0; i < n; i++)
		map_operand(&zo[i], &insn->opnd[i]);
	/* SEG: far JMP/CALL/RET share Zydis's mnemonics with the near ones
	 * (ptr16:xx becomes offset and selector immediates), and MOV/POP to a
	 * segment register with the GPR forms (exec_segment.c). */
	if (zi.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR) {
		if (insn->op == EMU_OP_JMP)
			insn->op = EMU_OP_JMPF;
		else if (insn->op == EMU_OP_CALL)
			insn->op = EMU_OP_CALLF;
		else if (insn->op == EMU_OP_RET)
			insn->op = EMU_OP_RETF;
		if (n >= 1 && zo[0].type == ZYDIS_OPERAND_TYPE_POINTER) {
			insn->opnd[0].kind = insn->opnd[1].kind = EMU_OPND_IMM;
			insn->opnd[0].val = zo[0].ptr.offset;
			insn->opnd[1].val = zo[0].ptr.segment;
			insn->nr_opnds = 2;
		}
	}
	if (n >= 1 && insn->opnd[0].kind == EMU_OPND_SEG) {
		if (insn->op == EMU_OP_MOV)
			insn->op = EMU_OP_MOV_SREG;
		else if (insn->op == EMU_OP_POP)
			insn->op = EMU_OP_POP_SREG;
	}
	/* SYS: MOV to/from CRn / DRn (0F 20-23) go to exec_system.c with the
	 * CR/DR number in the reg of the EMU_OPND_OTHER operand. */
	if (zi.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY &&
	    zi.opcode_map == ZYDIS_OPCODE_MAP_0F &&
	    (zi.opcode & 0xfc) == 0x20) {
		insn->op = (zi.opcode & 1) ? EMU_OP_MOVDR : EMU_OP_MOVCR;
		for (unsigned i = 0; i < n; i++) {
			ZydisRegister r = zo[i].reg.value;

			if (insn->opnd[i].kind != EMU_OPND_OTHER)
				continue;
			if (r >= ZYDIS_REGISTER_CR0 && r <= ZYDIS_REGISTER_CR15)
				insn->opnd[i].reg = (uint8_t)(r - ZYDIS_REGISTER_CR0);
			else if (r >= ZYDIS_REGISTER_DR0 &&
				 r <= ZYDIS_REGISTER_DR15)
				insn->opnd[i].reg = (uint8_t)(r - ZYDIS_REGISTER_DR0);
		}
	}
	/* LOCK is legal only with a memory destination (SDM Vol. 2A LOCK). */
	if ((insn->prefixes & EMU_PFX_LOCK) &&
	    (n == 0 || insn->opnd[0].kind != EMU_OPND_MEM))
		return -EILSEQ;
	return 0;
}
