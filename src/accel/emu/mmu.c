/*
 * mmu.c - linear -> guest-physical address translation of the software CPU.
 *
 * Every guest memory access of the executor (mem.c) goes through
 * emu_translate() exactly once per page it touches, so this file is the one
 * place paging lives.  This first step implements no page walk: it is the
 * identity map of the physical address space, which is what the guest sees
 * with CR0.PG = 0 and what the loaders' boot page tables (arch/x86/boot.h,
 * identity 0-4 GiB) give for the addresses a freshly booted kernel uses.
 *
 * A linear address at or above 2^MAXPHYADDR cannot be mapped by any page
 * table (the frame field would need reserved bits), so the stand-in raises
 * #PF there, with the error code a real walk of a not-present entry gives
 * (SDM Vol. 3A 4.7): W for writes, U at CPL 3, I for fetches when NX is on.
 * That keeps hostile addresses faults rather than bus accesses.  CR2 is
 * written when the exception is delivered (from cpu->exc.cr2), not here: a
 * fetch may fault on bytes the decoder turns out not to need.
 *
 * The next step replaces the body with the 4-level (and 32-bit / PAE) walk
 * and puts a per-vCPU software TLB in front of it (guest-virtual page ->
 * host pointer with separate read / write / execute permission bits,
 * flushed on CR3 writes, INVLPG and paging-mode changes); callers already
 * pass the access kind and split accesses at page boundaries, so their code
 * does not change.
 */
#include "accel/emu/cpu.h"

int emu_translate(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  uint64_t *gpa)
{
	uint32_t err = 0;

	if (cpu->maxphyaddr < 64 && (lin >> cpu->maxphyaddr) != 0) {
		if (acc == EMU_ACC_WRITE)
			err |= EMU_PF_W;
		if (cpu->cpl == 3)
			err |= EMU_PF_U;
		if (acc == EMU_ACC_EXEC && (cpu->msr.efer & EMU_EFER_NXE))
			err |= EMU_PF_I;
		cpu->exc.cr2 = lin;
		return emu_raise(cpu, EMU_VEC_PF, true, err);
	}
	*gpa = lin;
	return 0;
}
