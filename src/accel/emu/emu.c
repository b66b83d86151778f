/*
 * emu.c - the software CPU's reset state and its one-instruction step.
 *
 * emu_step() is the interpreter's inner loop body: fetch up to 15 bytes at
 * CS:RIP (mem.c, stopping at the first byte that cannot be fetched),
 * decode them (decode.c), and dispatch on the handler id through a
 * constant table to the exec_*.c handler.  The decoder sees only the bytes
 * that could be fetched, so an instruction that ends before an unmapped
 * page executes, and one that needs bytes from it raises the fetch's fault
 * -- the precise behaviour of hardware.  An instruction longer than 15
 * bytes is #GP(0) (SDM Vol. 2A 2.3.11).
 *
 * Handlers get the next RIP (wrapped to 16/32 bits outside 64-bit mode)
 * and may replace it to branch; emu_step() commits it only if the handler
 * succeeded, which is what makes faults restartable.  Every #UD, whether
 * from an invalid encoding, an instruction kvmm does not implement yet
 * (EMU_OP_UD) or a handler refusing an operand form, is counted in
 * cpu->stats.ud so the gaps show up when a guest runs.
 *
 * The dispatch table is `const`: no mutable global state, vCPU threads
 * share nothing here.  The next step wraps this in a decoded-block cache
 * (so decode runs once per block, not per execution), delivers exceptions
 * and interrupts through the IDT at block boundaries, and adds the
 * accel_ops glue.
 */
#include <errno.h>
#include <string.h>

#include "accel/emu/emu.h"
#include "accel/emu/exec.h"

const emu_handler emu_handlers[EMU_OP_COUNT] = {
	[EMU_OP_NOP] = emu_exec_nop,
	[EMU_OP_MOV] = emu_exec_mov,
	[EMU_OP_MOVZX] = emu_exec_movzx,
	[EMU_OP_MOVSX] = emu_exec_movsx,
	[EMU_OP_MOVSXD] = emu_exec_movsx,
	[EMU_OP_LEA] = emu_exec_lea,
	[EMU_OP_XCHG] = emu_exec_xchg,
	[EMU_OP_CMOV] = emu_exec_cmov,
	[EMU_OP_SET] = emu_exec_set,
	[EMU_OP_CBW] = emu_exec_cbw,
	[EMU_OP_CWD] = emu_exec_cwd,
	[EMU_OP_BSWAP] = emu_exec_bswap,
	[EMU_OP_ADD] = emu_exec_alu2,
	[EMU_OP_ADC] = emu_exec_alu2,
	[EMU_OP_SUB] = emu_exec_alu2,
	[EMU_OP_SBB] = emu_exec_alu2,
	[EMU_OP_CMP] = emu_exec_alu2,
	[EMU_OP_AND] = emu_exec_alu2,
	[EMU_OP_OR] = emu_exec_alu2,
	[EMU_OP_XOR] = emu_exec_alu2,
	[EMU_OP_TEST] = emu_exec_alu2,
	[EMU_OP_INC] = emu_exec_incdec,
	[EMU_OP_DEC] = emu_exec_incdec,
	[EMU_OP_NEG] = emu_exec_neg,
	[EMU_OP_NOT] = emu_exec_not,
	[EMU_OP_XADD] = emu_exec_xadd,
	[EMU_OP_CMPXCHG] = emu_exec_cmpxchg,
	[EMU_OP_CLC] = emu_exec_flagop,
	[EMU_OP_STC] = emu_exec_flagop,
	[EMU_OP_CMC] = emu_exec_flagop,
	[EMU_OP_CLD] = emu_exec_flagop,
	[EMU_OP_STD] = emu_exec_flagop,
	[EMU_OP_LAHF] = emu_exec_lahf,
	[EMU_OP_SAHF] = emu_exec_sahf,
	[EMU_OP_MUL] = emu_exec_mul,
	[EMU_OP_IMUL1] = emu_exec_imul1,
	[EMU_OP_IMUL] = emu_exec_imul,
	[EMU_OP_DIV] = emu_exec_div,
	[EMU_OP_IDIV] = emu_exec_div,
	[EMU_OP_SHL] = emu_exec_shift,
	[EMU_OP_SHR] = emu_exec_shift,
	[EMU_OP_SAR] = emu_exec_shift,
	[EMU_OP_ROL] = emu_exec_rotate,
	[EMU_OP_ROR] = emu_exec_rotate,
	[EMU_OP_RCL] = emu_exec_rotate,
	[EMU_OP_RCR] = emu_exec_rotate,
	[EMU_OP_BT] = emu_exec_bt,
	[EMU_OP_BTS] = emu_exec_bt,
	[EMU_OP_BTR] = emu_exec_bt,
	[EMU_OP_BTC] = emu_exec_bt,
	[EMU_OP_BSF] = emu_exec_bsf,
	[EMU_OP_BSR] = emu_exec_bsr,
	[EMU_OP_PUSH] = emu_exec_push,
	[EMU_OP_POP] = emu_exec_pop,
	[EMU_OP_PUSHF] = emu_exec_pushf,
	[EMU_OP_POPF] = emu_exec_popf,
	[EMU_OP_LEAVE] = emu_exec_leave,
	[EMU_OP_JMP] = emu_exec_jmp,
	[EMU_OP_JCC] = emu_exec_jcc,
	[EMU_OP_CALL] = emu_exec_call,
	[EMU_OP_RET] = emu_exec_ret,
	[EMU_OP_LOOP] = emu_exec_loop,
	[EMU_OP_LOOPE] = emu_exec_loop,
	[EMU_OP_LOOPNE] = emu_exec_loop,
	[EMU_OP_JRCXZ] = emu_exec_jrcxz,
	[EMU_OP_MOVS] = emu_exec_string,
	[EMU_OP_STOS] = emu_exec_string,
	[EMU_OP_LODS] = emu_exec_string,
	[EMU_OP_CMPS] = emu_exec_string,
	[EMU_OP_SCAS] = emu_exec_string,
	/* @SYS-HANDLERS@ */
	[EMU_OP_MOVCR] = emu_exec_movcr,
	[EMU_OP_MOVDR] = emu_exec_movdr,
	[EMU_OP_CLTS] = emu_exec_clts,
	[EMU_OP_HLT] = emu_exec_hlt,
	[EMU_OP_IN] = emu_exec_in,
	[EMU_OP_OUT] = emu_exec_out,
	[EMU_OP_INS] = emu_exec_pio_string,
	[EMU_OP_OUTS] = emu_exec_pio_string,
	[EMU_OP_INVLPG] = emu_exec_invlpg,
	[EMU_OP_WBINVD] = emu_exec_wbinvd,
	[EMU_OP_FENCE] = emu_exec_fence,
	[EMU_OP_RDPMC] = emu_exec_rdpmc,
	[EMU_OP_RDTSC] = emu_exec_rdtsc,
	[EMU_OP_RDTSCP] = emu_exec_rdtsc,
	[EMU_OP_RDMSR] = emu_exec_rdmsr,
	[EMU_OP_WRMSR] = emu_exec_wrmsr,
	[EMU_OP_CPUID] = emu_exec_cpuid,
	[EMU_OP_CMPXCHG8B] = emu_exec_cmpxchg8b,
	[EMU_OP_SHLD] = emu_exec_shxd,
	[EMU_OP_SHRD] = emu_exec_shxd,
	[EMU_OP_POPCNT] = emu_exec_popcnt,
	[EMU_OP_XLAT] = emu_exec_xlat,
	/* @SEG-HANDLERS@ */
	[EMU_OP_INT] = emu_exec_int,
	[EMU_OP_INT3] = emu_exec_int,
	[EMU_OP_INTO] = emu_exec_int,
	[EMU_OP_INT1] = emu_exec_int,
	[EMU_OP_IRET] = emu_exec_iret,
	[EMU_OP_JMPF] = emu_exec_jmpf,
	[EMU_OP_CALLF] = emu_exec_callf,
	[EMU_OP_RETF] = emu_exec_retf,
	[EMU_OP_MOV_SREG] = emu_exec_mov_sreg,
	[EMU_OP_POP_SREG] = emu_exec_pop_sreg,
	[EMU_OP_LDS] = emu_exec_lseg,
	[EMU_OP_LES] = emu_exec_lseg,
	[EMU_OP_LFS] = emu_exec_lseg,
	[EMU_OP_LGS] = emu_exec_lseg,
	[EMU_OP_LSS] = emu_exec_lseg,
	[EMU_OP_LGDT] = emu_exec_lgdt,
	[EMU_OP_LIDT] = emu_exec_lgdt,
	[EMU_OP_SGDT] = emu_exec_sgdt,
	[EMU_OP_SIDT] = emu_exec_sgdt,
	[EMU_OP_LLDT] = emu_exec_lldt,
	[EMU_OP_LTR] = emu_exec_lldt,
	[EMU_OP_SLDT] = emu_exec_sldt,
	[EMU_OP_STR] = emu_exec_sldt,
	[EMU_OP_LAR] = emu_exec_lar,
	[EMU_OP_LSL] = emu_exec_lar,
	[EMU_OP_VERR] = emu_exec_verr,
	[EMU_OP_VERW] = emu_exec_verr,
	[EMU_OP_SWAPGS] = emu_exec_swapgs,
	[EMU_OP_SYSCALL] = emu_exec_syscall,
	[EMU_OP_SYSRET] = emu_exec_sysret,
	[EMU_OP_SYSENTER] = emu_exec_sysenter,
	[EMU_OP_SYSEXIT] = emu_exec_sysexit,
	[EMU_OP_CLI] = emu_exec_cli,
	[EMU_OP_STI] = emu_exec_cli,
	/* @SIMD-HANDLERS@ */
#define EMU_SIMD_OP(mn, h) [EMU_OP_##mn] = emu_exec_##h,
#include "accel/emu/simd_ops.def"
#undef EMU_SIMD_OP
};

int emu_raise(struct emu_cpu *cpu, unsigned vector, bool has_error,
	      uint32_t error_code)
{
	cpu->exc.vector = (uint8_t)vector;
	cpu->exc.has_error = has_error;
	cpu->exc.error_code = has_error ? error_code : 0;
	if (vector != EMU_VEC_PF)
		cpu->exc.cr2 = 0;
	return EMU_EXC(vector);
}

static void seg_load_real(struct emu_segment *s, uint16_t sel, uint16_t type)
{
	s->sel = sel;
	s->base = (uint64_t)sel << 4;
	s->limit = 0xffff;
	s->attr = type | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P;
	s->unusable = false;
}

void emu_cpu_init(struct emu_cpu *cpu, struct guest_mem *mem,
		  const struct bus *mmio, const struct bus *pio)
{
	memset(cpu, 0, sizeof(*cpu));
	cpu->mem = mem;
	cpu->mmio = mmio;
	cpu->pio = pio;
	/* SDM Vol. 3A table 9-1: state after power-up / RESET (FNINIT state
	 * for the x87, as Linux's FPU init assumes masked exceptions). */
	emu_x87_reset(cpu);
	for (int i = 0; i < EMU_NR_SEGS; i++)
		seg_load_real(&cpu->seg[i], 0, 0x3); /* data, read/write, accessed */
	seg_load_real(&cpu->seg[EMU_SEG_CS], 0xf000, 0xb); /* code, r/x, accessed */
	cpu->seg[EMU_SEG_CS].base = 0xffff0000ull;
	cpu->rip = 0xfff0;
	cpu->rflags = EMU_FL_FIXED;
	cpu->cr0 = 0x60000010ull; /* CD, NW, ET */
	cpu->gdtr.limit = cpu->idtr.limit = 0xffff;
	cpu->ldtr.limit = cpu->tr.limit = 0xffff;
	cpu->ldtr.attr = 0x2 | EMU_SEG_ATTR_P;   /* LDT */
	cpu->tr.attr = 0xb | EMU_SEG_ATTR_P;     /* busy 32-bit TSS */
	cpu->dr[6] = 0xffff0ff0ull;
	cpu->dr[7] = 0x400;
	cpu->mxcsr = 0x1f80;
	cpu->msr.pat = 0x0007040600070406ull;
	cpu->msr.apic_base = 0xfee00000ull | (1u << 11) | (1u << 8); /* enabled, BSP */
	cpu->maxphyaddr = 40;
	emu_cpu_update_mode(cpu);
}

void emu_cpu_update_mode(struct emu_cpu *cpu)
{
	const struct emu_segment *cs = &cpu->seg[EMU_SEG_CS];

	if (!(cpu->cr0 & EMU_CR0_PE) || (cpu->rflags & EMU_FL_VM)) {
		/* Virtual-8086 mode decodes like real mode; its privilege
		 * checks come with the system step. */
		cpu->mode = EMU_MODE_REAL;
		cpu->cpl = (cpu->rflags & EMU_FL_VM) ? 3 : 0;
		return;
	}
	if ((cpu->msr.efer & EMU_EFER_LMA) && (cs->attr & EMU_SEG_ATTR_L))
		cpu->mode = EMU_MODE_LONG64;
	else if (cs->attr & EMU_SEG_ATTR_DB)
		cpu->mode = EMU_MODE_PROT32;
	else
		cpu->mode = EMU_MODE_PROT16;
	cpu->cpl = cs->sel & 3;
}

void emu_cpu_set_long_mode(struct emu_cpu *cpu, uint64_t rip)
{
	cpu->cr0 = 0x80050033ull; /* PG, AM, WP, NE, ET, MP, PE */
	cpu->cr4 = EMU_CR4_PAE;
	cpu->msr.efer = EMU_EFER_LME | EMU_EFER_LMA;
	for (int i = 0; i < EMU_NR_SEGS; i++) {
		struct emu_segment *s = &cpu->seg[i];

		s->sel = 0x18;
		s->base = 0;
		s->limit = 0xffffffffu;
		s->attr = 0x3 | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P |
			  EMU_SEG_ATTR_DB | EMU_SEG_ATTR_G;
		s->unusable = false;
	}
	cpu->seg[EMU_SEG_CS].sel = 0x10;
	cpu->seg[EMU_SEG_CS].attr = 0xb | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P |
				    EMU_SEG_ATTR_L | EMU_SEG_ATTR_G;
	cpu->rip = rip;
	emu_flags_set(cpu, EMU_FL_FIXED);
	emu_cpu_update_mode(cpu);
}

int emu_count_exc(struct emu_cpu *cpu, int r)
{
	if (EMU_IS_EXC(r)) {
		cpu->stats.exceptions++;
		if (EMU_EXC_VEC(r) == EMU_VEC_UD)
			cpu->stats.ud++;
	}
	return r;
}

int emu_step(struct emu_cpu *cpu)
{
	uint8_t buf[15];
	struct emu_insn in;
	unsigned got, stack;
	int fr, r;

	fr = emu_mem_fetch(cpu, cpu->rip, buf, sizeof(buf), &got);
	if (fr < 0)
		return fr;
	stack = cpu->mode == EMU_MODE_LONG64 ? 8 :
		(cpu->seg[EMU_SEG_SS].attr & EMU_SEG_ATTR_DB) ? 4 : 2;
	r = emu_decode(cpu->mode, stack, buf, got, &in);
	if (r == -ENODATA && fr)
		return emu_count_exc(cpu, fr);
	if (r == -ENODATA || r == -E2BIG)
		return emu_count_exc(cpu, emu_raise(cpu, EMU_VEC_GP, true, 0));
	if (r == -EILSEQ)
		return emu_count_exc(cpu, emu_raise(cpu, EMU_VEC_UD, false, 0));
	if (r)
		return r;
	return emu_execute(cpu, &in);
}

int emu_execute(struct emu_cpu *cpu, const struct emu_insn *in)
{
	emu_handler h = in->op < EMU_OP_COUNT ? emu_handlers[in->op] : NULL;
	bool shadow = cpu->int_shadow;
	uint64_t next;
	int r;

	if (!h)
		return emu_count_exc(cpu, emu_raise(cpu, EMU_VEC_UD, false, 0));
	next = cpu->rip + in->len;
	if (cpu->mode == EMU_MODE_PROT32)
		next &= 0xffffffffull;
	else if (cpu->mode != EMU_MODE_LONG64)
		next &= 0xffffull;
	r = h(cpu, in, &next);
	/* The shadow of STI / MOV SS covers exactly one instruction. */
	if (shadow)
		cpu->int_shadow = false;
	if (r == EMU_HALTED) {
		/* HLT retired: RIP is past it while the CPU sleeps. */
		cpu->rip = next;
		cpu->stats.insns++;
		return r;
	}
	if (r)
		return emu_count_exc(cpu, r);
	cpu->rip = next;
	cpu->stats.insns++;
	return 0;
}
