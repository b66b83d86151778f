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

#endif
