/*
 * emu_sys.h - the software CPU's CPU model, MSRs, control registers and
 * time-stamp counter, as the rest of accel/emu sees them (cpuid.c, msr.c,
 * tsc.c, exec_system.c).  Private to accel/emu.
 *
 * Return convention as everywhere in the executor: 0, or EMU_EXC(vector)
 * with cpu->exc filled by emu_raise(), changing nothing architectural.
 */
#ifndef KVMM_ACCEL_EMU_EMU_SYS_H
#define KVMM_ACCEL_EMU_EMU_SYS_H

#include <stdbool.h>
#include <stdint.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"

/* --- cpuid.c: the CPU model (design notes at the top of cpuid.c) ------ */

/* CPUID leaf `leaf`, subleaf `sub` as the guest on `cpu` sees it
 * (AMD APM Vol. 3 appendix E; SDM Vol. 2A CPUID).  out = EAX, EBX, ECX,
 * EDX.  Unknown leaves read as zeros (AMD behaviour). */
void emu_cpuid(const struct emu_cpu *cpu, uint32_t leaf, uint32_t sub,
	       uint32_t out[4]);

/* The CR4 bits the model supports (those whose CPUID feature it
 * advertises): DE, TSD, PSE, PAE, PGE, OSFXSR, OSXMMEXCPT.  MOV CR4 with
 * any other bit is #GP(0). */
#define EMU_CR4_VALID ((1ull << 2) | (1ull << 3) | (1ull << 4) | \
		       (1ull << 5) | (1ull << 7) | (1ull << 9) | (1ull << 10))
#define EMU_CR4_TSD (1ull << 2)
#define EMU_CR4_DE  (1ull << 3)
#define EMU_CR4_PSE (1ull << 4)
#define EMU_CR4_PGE (1ull << 7)

/* --- msr.c ------------------------------------------------------------ */

/* MSR numbers (SDM Vol. 4 table 2-2, AMD APM Vol. 2 appendix A, Linux
 * Documentation/virt/kvm/x86/msr.rst). */
#define EMU_MSR_TSC            0x00000010u
#define EMU_MSR_APIC_BASE      0x0000001bu
#define EMU_MSR_FEATURE_CTL    0x0000003au
#define EMU_MSR_UCODE_REV      0x0000008bu
#define EMU_MSR_MTRRCAP        0x000000feu
#define EMU_MSR_SYSENTER_CS    0x00000174u
#define EMU_MSR_SYSENTER_ESP   0x00000175u
#define EMU_MSR_SYSENTER_EIP   0x00000176u
#define EMU_MSR_MISC_ENABLE    0x000001a0u
#define EMU_MSR_PAT            0x00000277u
#define EMU_MSR_MTRR_DEF_TYPE  0x000002ffu
#define EMU_MSR_TSC_DEADLINE   0x000006e0u
#define EMU_MSR_EFER           0xc0000080u
#define EMU_MSR_STAR           0xc0000081u
#define EMU_MSR_LSTAR          0xc0000082u
#define EMU_MSR_CSTAR          0xc0000083u
#define EMU_MSR_FMASK          0xc0000084u
#define EMU_MSR_FS_BASE        0xc0000100u
#define EMU_MSR_GS_BASE        0xc0000101u
#define EMU_MSR_KERNEL_GS_BASE 0xc0000102u
#define EMU_MSR_TSC_AUX        0xc0000103u
#define EMU_MSR_K7_HWCR        0xc0010015u
#define EMU_MSR_K8_INT_PENDING 0xc0010055u
#define EMU_MSR_AMD_DE_CFG     0xc0011029u
#define EMU_MSR_KVM_WALL_CLOCK 0x4b564d00u
#define EMU_MSR_KVM_SYSTEM_TIME 0x4b564d01u

/* RDMSR / WRMSR of `msr` (CPL already checked by the caller). */
int emu_msr_read(struct emu_cpu *cpu, uint32_t msr, uint64_t *val);
int emu_msr_write(struct emu_cpu *cpu, uint32_t msr, uint64_t val);

/* Rewrite the kvm-clock page of `cpu` if enabled (after the TSC offset
 * changed, or after a snapshot load). */
void emu_kvmclock_update(struct emu_cpu *cpu);

/* --- exec_system.c: control registers (SDM Vol. 3A 2.5) --------------- */

/* MOV to CR0 / CR3 / CR4 with every check and side effect (mode change,
 * long-mode activation, TLB flushes); also for task switches and tests. */
int emu_write_cr0(struct emu_cpu *cpu, uint64_t val);
int emu_write_cr3(struct emu_cpu *cpu, uint64_t val);
int emu_write_cr4(struct emu_cpu *cpu, uint64_t val);

/* --- tsc.c ------------------------------------------------------------ */

/* The VM's clock (vm_clock_ns(cpu->vm), or CLOCK_MONOTONIC when the CPU
 * has no VM, as in some unit tests). */
uint64_t emu_clock_ns(struct emu_cpu *cpu);

/* vm_clock_ns() time -> TSC ticks (before the per-vCPU offset), and
 * back.  EMU_TSC_HZ is a whole number of ticks per ns (2). */
#define EMU_TSC_PER_NS (EMU_TSC_HZ / 1000000000ull)
static inline uint64_t emu_ns_to_ticks(uint64_t ns)
{
	return ns * EMU_TSC_PER_NS;
}
static inline uint64_t emu_ticks_to_ns(uint64_t ticks)
{
	return ticks / EMU_TSC_PER_NS;
}

#endif
