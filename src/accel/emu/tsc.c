/*
 * tsc.c - the guest's time-stamp counter (SDM Vol. 3B 17.17) and RDTSC /
 * RDTSCP (SDM Vol. 2B).
 *
 * Design.  There is one TSC for the whole VM, derived from vm_clock_ns()
 * (the time base of every device, the LAPIC timer included) at a fixed
 * EMU_TSC_HZ = 2 GHz: ticks = ns * 2.  Each vCPU adds its IA32_TSC offset
 * (cpu->msr.tsc_offset, set by WRMSR IA32_TSC), which is 0 unless the
 * guest writes the TSC.  Consequences, all on purpose:
 *   - the TSC is monotonic and identical on every vCPU (no cross-CPU
 *     warps, so Linux keeps "tsc" stable and never marks it unstable);
 *   - it keeps counting while a vCPU is halted and advances with real time
 *     even though the interpreter runs far fewer than 2e9 instructions per
 *     second: guest time is wall time, not instruction count, so timeouts
 *     in the guest mean what they say (CPUID advertises invariant TSC);
 *   - TSC-deadline timer values convert exactly to vm_clock_ns() time
 *     (msr.c), and the kvm-clock page can be written once (msr.c) with
 *     tsc_to_system_mul = 2^31, shift 0;
 *   - under the test harness's fake clock the TSC is fake too, so tests
 *     are deterministic.
 * The resolution is vm_clock_ns()'s (1 ns, i.e. 2 ticks): RDTSC twice in
 * a row may return the same value, which the SDM allows (it only promises
 * the counter never goes back).
 *
 * RDTSC / RDTSCP at CPL > 0 with CR4.TSD = 1 raise #GP(0) (also in
 * virtual-8086 mode, whose CPL is 3).  RDTSCP returns IA32_TSC_AUX[31:0]
 * in ECX (Linux stores the CPU and node number there for vgetcpu).
 */
#include <time.h>

#include "accel/emu/emu_sys.h"
#include "accel/emu/exec.h"
#include "core/timer.h"

uint64_t emu_clock_ns(struct emu_cpu *cpu)
{
	struct timespec ts;

	if (cpu->vm)
		return vm_clock_ns(cpu->vm);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t emu_tsc_read(struct emu_cpu *cpu)
{
	return emu_ns_to_ticks(emu_clock_ns(cpu)) + cpu->msr.tsc_offset;
}

/* RDTSC and RDTSCP. */
EMU_HANDLER(rdtsc)
{
	uint64_t tsc;

	if ((cpu->cr4 & EMU_CR4_TSD) && cpu->cpl > 0)
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	tsc = emu_tsc_read(cpu);
	emu_reg_write(cpu, EMU_RAX, 4, tsc);
	emu_reg_write(cpu, EMU_RDX, 4, tsc >> 32);
	if (in->op == EMU_OP_RDTSCP)
		emu_reg_write(cpu, EMU_RCX, 4, cpu->msr.tsc_aux);
	return 0;
}
