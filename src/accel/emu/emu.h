/*
 * emu.h - the software CPU (--accel emu), seen from the rest of kvmm.
 *
 * This step provides the interpreter core: architectural state (cpu.h),
 * the decoder (decode.h) and the executor, driven one instruction at a
 * time by emu_step().  Exception delivery through the IDT, paging with a
 * TLB, the decoded-block cache and the accel_ops glue that runs vCPU
 * threads are the next steps; until then an exception is returned to the
 * caller instead of being delivered.
 */
#ifndef KVMM_ACCEL_EMU_EMU_H
#define KVMM_ACCEL_EMU_EMU_H

#include "accel/emu/cpu.h"

/* Fetch, decode and execute the instruction at CS:RIP (SDM Vol. 2).
 * Returns 0 when it retired (RIP advanced or branched; a REP string
 * instruction may retire only part of its iterations and leave RIP in
 * place), EMU_EXC(vector) when it raised an exception (architectural state
 * unchanged except the completed iterations of a REP instruction; cpu->exc
 * holds the error code and #PF address; #UD is counted in cpu->stats.ud),
 * or -errno for an internal error. */
int emu_step(struct emu_cpu *cpu);

/* Execute one already decoded instruction at CS:RIP (the second half of
 * emu_step(), for the decoded-block cache): same results as emu_step().
 * It also ends an interrupt shadow that was set before the instruction,
 * and commits RIP past a HLT that returned EMU_HALTED. */
struct emu_insn;
int emu_execute(struct emu_cpu *cpu, const struct emu_insn *in);

/* Further results of emu_step(), beside 0 and EMU_EXC(). */
#define EMU_HALTED   0x200 /* HLT retired: sleep until an interrupt (cpu->halted) */
#define EMU_SHUTDOWN 0x201 /* triple fault: the VM stops as crashed */

/* What emu_deliver() delivers (SDM Vol. 3A 6.4, 6.12). */
enum emu_event {
	EMU_EVENT_EXCEPTION, /* fault/trap from an instruction; may escalate to #DF */
	EMU_EVENT_EXTINT,    /* maskable external interrupt (LAPIC, PIC) */
	EMU_EVENT_NMI,
	EMU_EVENT_SOFTINT,   /* INT n / INT3 / INTO: DPL checked against CPL */
};

/* Deliver an event through the IDT in the current mode (real-mode IVT,
 * protected-mode gates with TSS stack switch, long-mode gates with IST),
 * pushing the frame and error code and loading CS:RIP.  An exception while
 * delivering escalates to #DF, and one during #DF gives EMU_SHUTDOWN.
 * Returns 0 or EMU_SHUTDOWN (exceptions.c). */
int emu_deliver(struct emu_cpu *cpu, unsigned vector, enum emu_event kind,
		bool has_error, uint32_t error_code);

/* Drop cached translations: all non-global ones (and global ones too when
 * `global`), or the one page holding linear address `lin` (mmu.c). */
void emu_tlb_flush(struct emu_cpu *cpu, bool global);
void emu_tlb_flush_page(struct emu_cpu *cpu, uint64_t lin);

/* The guest's time-stamp counter: one TSC for all vCPUs, derived from
 * vm_clock_ns() at EMU_TSC_HZ, plus the vCPU's IA32_TSC offset (tsc.c). */
#define EMU_TSC_HZ 2000000000ull
uint64_t emu_tsc_read(struct emu_cpu *cpu);

#endif
