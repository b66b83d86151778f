/*
 * msr.c - RDMSR / WRMSR targets of the software CPU (SDM Vol. 4 table 2-2
 * "IA-32 Architectural MSRs", AMD APM Vol. 2 appendix A, Linux
 * Documentation/virt/kvm/x86/msr.rst for kvm-clock).
 *
 * Only the MSRs of the CPU model (cpuid.c) exist; any other RDMSR/WRMSR
 * raises #GP(0), is counted in cpu->msr_unknown and remembered in
 * cpu->msr_last_unknown, so what a guest probes is visible.  Linux probes
 * optional MSRs with rdmsr_safe()/wrmsr_safe(), which survive the #GP;
 * the MSRs it accesses unconditionally on this model are all here:
 *   - architectural: EFER, STAR/LSTAR/CSTAR/FMASK, FS/GS/KERNEL_GS base,
 *     TSC_AUX (RDTSCP is advertised), PAT, APIC_BASE, TSC, TSC_DEADLINE,
 *     SYSENTER_CS/ESP/EIP (written by syscall_init even without SEP);
 *   - read by code paths before any IDT exists (where a #GP is a triple
 *     fault): MISC_ENABLE (verify_cpu, on Intel), UCODE_REV 8Bh (also
 *     AMD's PATCH_LEVEL; reads 0, writes ignored);
 *   - AMD family 0Fh (arch/x86/kernel/cpu/amd.c): HWCR C001_0015 (init_amd_k8
 *     sets FFDIS; TscFreqSel bit 24 reads 1), INT_PENDING_MSG C001_0055
 *     (read with plain rdmsr for the E400 check: 0 = no C1E), DE_CFG
 *     C001_1029 (LFENCE-serializing bit, kept);
 *   - FEATURE_CONTROL 3Ah reads 0 (no VMX, unlocked), MTRRcap FEh reads 0
 *     (no variable ranges, no fixed ranges, no WC), MTRRdefType 2FFh reads
 *     0 (MTRRs disabled; writes of 0 accepted, anything else #GP);
 *   - kvm-clock (CPUID 40000001h advertises CLOCKSOURCE2 and the stable
 *     bit): MSR_KVM_WALL_CLOCK_NEW 4B564D00h and MSR_KVM_SYSTEM_TIME_NEW
 *     4B564D01h.
 *
 * kvm-clock.  Guest time is vm_clock_ns() and the TSC is 2 * vm_clock_ns()
 * + offset (tsc.c), an exact linear relation.  So the per-vCPU pvclock
 * page needs writing only when the guest enables it or changes the TSC
 * offset: tsc_timestamp = TSC at one instant, system_time = vm_clock_ns()
 * at the same instant (both from one clock reading), tsc_to_system_mul =
 * 2^31 and tsc_shift = 0 (ns = ticks / 2), flags = PVCLOCK_TSC_STABLE_BIT,
 * so the guest's system_time + ((tsc - tsc_timestamp) * mul >> 32) equals
 * vm_clock_ns() for ever, identically on every vCPU.  The version field
 * is made odd while the fields are written and even after, with release
 * ordering, per the pvclock protocol.  The wall-clock structure gets the
 * boot time: CLOCK_REALTIME minus vm_clock_ns() (the time kvm-clock counts
 * from).  Both addresses are validated with gm_ptr(); an address that is
 * not guest RAM is remembered but nothing is written (as KVM, which fails
 * the write to the page silently).  The guest may scribble on the page;
 * it only misleads itself.
 *
 * Checks (SDM Vol. 4, KVM's behaviour where the SDM is loose):
 *   - EFER: only SCE, LME, NXE are writable (LMA is read-only and kept;
 *     SVME, LMSLE, FFXSR, TCE are not in the model): reserved bit -> #GP.
 *     Changing LME while CR0.PG = 1 -> #GP (SDM Vol. 3A 10.8.5).  A NXE
 *     change flushes the whole TLB (it changes what PTE bit 63 means).
 *   - canonical addresses for FS/GS/KERNEL_GS base, LSTAR, CSTAR,
 *     SYSENTER_ESP/EIP -> #GP otherwise;
 *   - PAT: every byte a valid memory type (0, 1, 4, 5, 6, 7);
 *   - APIC_BASE: lapic_set_base() -> -EINVAL is #GP; the base must also fit
 *     MAXPHYADDR;
 *   - TSC_AUX: bits 63:32 reserved.
 * WRMSR IA32_TSC sets the offset so the TSC reads the value now, and
 * rewrites the kvm-clock page.  IA32_TSC_DEADLINE converts TSC ticks to
 * vm_clock_ns() time for the LAPIC (a deadline already past fires at
 * once) and back on read.
 */
#include <time.h>

#include "accel/emu/emu_sys.h"
#include "accel/emu/exec.h"
#include "accel/emu/lapic.h"
#include "core/memory.h"

#define PVCLOCK_TSC_STABLE_BIT 1u

/* struct pvclock_vcpu_time_info (Linux include/asm/pvclock-abi.h). */
struct emu_pvclock {
	uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

/* struct pvclock_wall_clock. */
struct emu_pvclock_wall {
	uint32_t version;
	uint32_t sec;
	uint32_t nsec;
} __attribute__((packed));

_Static_assert(sizeof(struct emu_pvclock) == 32, "pvclock ABI");
_Static_assert(sizeof(struct emu_pvclock_wall) == 12, "pvclock ABI");

static bool canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

static int gp(struct emu_cpu *cpu)
{
	return emu_raise(cpu, EMU_VEC_GP, true, 0);
}

static int unknown(struct emu_cpu *cpu, uint32_t msr)
{
	cpu->msr_unknown++;
	cpu->msr_last_unknown = msr;
	return gp(cpu);
}

void emu_kvmclock_update(struct emu_cpu *cpu)
{
	struct emu_pvclock *p;
	uint32_t v;
	uint64_t ns;

	if (!(cpu->kvmclock_msr & 1) || !cpu->mem)
		return;
	p = gm_ptr(cpu->mem, cpu->kvmclock_msr & ~1ull, sizeof(*p));
	if (!p)
		return;
	v = cpu->kvmclock_version;
	__atomic_store_n(&p->version, v + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	ns = emu_clock_ns(cpu);
	p->tsc_timestamp = emu_ns_to_ticks(ns) + cpu->msr.tsc_offset;
	p->system_time = ns;
	/* ns = ticks * 2^31 >> 32 = ticks / 2 (EMU_TSC_HZ = 2 GHz). */
	_Static_assert(EMU_TSC_PER_NS == 2, "mul/shift assume 2 GHz");
	p->tsc_to_system_mul = 0x80000000u;
	p->tsc_shift = 0;
	p->flags = PVCLOCK_TSC_STABLE_BIT;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&p->version, v + 2, __ATOMIC_RELAXED);
	cpu->kvmclock_version = v + 2;
}

static void kvm_wall_clock(struct emu_cpu *cpu, uint64_t gpa)
{
	struct emu_pvclock_wall *w;
	struct timespec ts;
	uint64_t now, boot;
	uint32_t v;

	w = cpu->mem ? gm_ptr(cpu->mem, gpa, sizeof(*w)) : NULL;
	if (!w)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	boot = now - emu_clock_ns(cpu);
	v = __atomic_load_n(&w->version, __ATOMIC_RELAXED) & ~1u;
	__atomic_store_n(&w->version, v + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	w->sec = (uint32_t)(boot / 1000000000ull);
	w->nsec = (uint32_t)(boot % 1000000000ull);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&w->version, v + 2, __ATOMIC_RELAXED);
}

static bool pat_valid(uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		unsigned t = (v >> (i * 8)) & 0xff;

		if (t == 2 || t == 3 || t > 7)
			return false;
	}
	return true;
}

int emu_msr_read(struct emu_cpu *cpu, uint32_t msr, uint64_t *val)
{
	uint64_t ns;

	switch (msr) {
	case EMU_MSR_TSC:          *val = emu_tsc_read(cpu); return 0;
	case EMU_MSR_APIC_BASE:
		*val = cpu->lapic ? lapic_get_base(cpu->lapic) :
				    cpu->msr.apic_base;
		return 0;
	case EMU_MSR_FEATURE_CTL:
	case EMU_MSR_UCODE_REV:
	case EMU_MSR_MTRRCAP:
	case EMU_MSR_MTRR_DEF_TYPE:
	case EMU_MSR_K8_INT_PENDING: *val = 0; return 0;
	case EMU_MSR_SYSENTER_CS:  *val = cpu->msr.sysenter_cs; return 0;
	case EMU_MSR_SYSENTER_ESP: *val = cpu->msr.sysenter_esp; return 0;
	case EMU_MSR_SYSENTER_EIP: *val = cpu->msr.sysenter_eip; return 0;
	case EMU_MSR_MISC_ENABLE:  *val = cpu->msr.misc_enable; return 0;
	case EMU_MSR_PAT:          *val = cpu->msr.pat; return 0;
	case EMU_MSR_TSC_DEADLINE:
		if (!cpu->lapic) {
			*val = cpu->tsc_deadline;
			return 0;
		}
		ns = lapic_get_tsc_deadline(cpu->lapic);
		*val = ns ? emu_ns_to_ticks(ns) + cpu->msr.tsc_offset : 0;
		return 0;
	case EMU_MSR_EFER:         *val = cpu->msr.efer; return 0;
	case EMU_MSR_STAR:         *val = cpu->msr.star; return 0;
	case EMU_MSR_LSTAR:        *val = cpu->msr.lstar; return 0;
	case EMU_MSR_CSTAR:        *val = cpu->msr.cstar; return 0;
	case EMU_MSR_FMASK:        *val = cpu->msr.sfmask; return 0;
	case EMU_MSR_FS_BASE:      *val = cpu->seg[EMU_SEG_FS].base; return 0;
	case EMU_MSR_GS_BASE:      *val = cpu->seg[EMU_SEG_GS].base; return 0;
	case EMU_MSR_KERNEL_GS_BASE: *val = cpu->msr.kernel_gs_base; return 0;
	case EMU_MSR_TSC_AUX:      *val = cpu->msr.tsc_aux; return 0;
	case EMU_MSR_K7_HWCR:      *val = cpu->msr_hwcr | (1ull << 24); return 0;
	case EMU_MSR_AMD_DE_CFG:   *val = cpu->msr_de_cfg; return 0;
	case EMU_MSR_KVM_WALL_CLOCK: *val = cpu->kvmclock_wall_msr; return 0;
	case EMU_MSR_KVM_SYSTEM_TIME: *val = cpu->kvmclock_msr; return 0;
	default:
		return unknown(cpu, msr);
	}
}

static int write_efer(struct emu_cpu *cpu, uint64_t val)
{
	const uint64_t writable = EMU_EFER_SCE | EMU_EFER_LME | EMU_EFER_NXE;
	uint64_t old = cpu->msr.efer;

	if (val & ~(writable | EMU_EFER_LMA))
		return gp(cpu);
	if ((cpu->cr0 & EMU_CR0_PG) && ((val ^ old) & EMU_EFER_LME))
		return gp(cpu);
	cpu->msr.efer = (val & writable) | (old & EMU_EFER_LMA);
	if ((val ^ old) & EMU_EFER_NXE)
		emu_tlb_flush(cpu, true);
	emu_cpu_update_mode(cpu);
	return 0;
}

static int write_apic_base(struct emu_cpu *cpu, uint64_t val)
{
	/* Reserved: 0-7, 9, 10 (x2APIC not offered), MAXPHYADDR-63. */
	uint64_t rsvd = 0x6ffull | ~((1ull << cpu->maxphyaddr) - 1);

	if (val & rsvd)
		return gp(cpu);
	if (cpu->lapic) {
		if (lapic_set_base(cpu->lapic, val))
			return gp(cpu);
		val = lapic_get_base(cpu->lapic);
	}
	/* The LAPIC page may have moved or appeared / disappeared: the TLB
	 * caches host pointers for it (mmu.c). */
	if (val != cpu->msr.apic_base)
		emu_tlb_flush(cpu, true);
	cpu->msr.apic_base = val;
	return 0;
}

static void write_tsc_deadline(struct emu_cpu *cpu, uint64_t val)
{
	uint64_t off = cpu->msr.tsc_offset, ns;

	if (!cpu->lapic) {
		cpu->tsc_deadline = val;
		return;
	}
	if (val == 0) {
		lapic_set_tsc_deadline(cpu->lapic, 0);
		return;
	}
	/* The offset may be "negative" (the guest set the TSC back): the
	 * clock's own ticks are val - off modulo 2^64, and a value at or
	 * before the clock's origin is simply in the past (1 ns). */
	if ((int64_t)(val - off) <= 0)
		ns = 1;
	else
		ns = emu_ticks_to_ns(val - off);
	lapic_set_tsc_deadline(cpu->lapic, ns ? ns : 1);
}

int emu_msr_write(struct emu_cpu *cpu, uint32_t msr, uint64_t val)
{
	switch (msr) {
	case EMU_MSR_TSC:
		cpu->msr.tsc_offset = val - emu_ns_to_ticks(emu_clock_ns(cpu));
		emu_kvmclock_update(cpu);
		return 0;
	case EMU_MSR_APIC_BASE:
		return write_apic_base(cpu, val);
	case EMU_MSR_UCODE_REV:
		return 0; /* Intel's "write 0, CPUID, read" protocol */
	case EMU_MSR_MTRR_DEF_TYPE:
		return val ? gp(cpu) : 0;
	case EMU_MSR_SYSENTER_CS:
		cpu->msr.sysenter_cs = val & 0xffff;
		return 0;
	case EMU_MSR_SYSENTER_ESP:
	case EMU_MSR_SYSENTER_EIP:
		if (!canonical(val))
			return gp(cpu);
		if (msr == EMU_MSR_SYSENTER_ESP)
			cpu->msr.sysenter_esp = val;
		else
			cpu->msr.sysenter_eip = val;
		return 0;
	case EMU_MSR_MISC_ENABLE:
		cpu->msr.misc_enable = val;
		return 0;
	case EMU_MSR_PAT:
		if (!pat_valid(val))
			return gp(cpu);
		cpu->msr.pat = val;
		return 0;
	case EMU_MSR_TSC_DEADLINE:
		write_tsc_deadline(cpu, val);
		return 0;
	case EMU_MSR_EFER:
		return write_efer(cpu, val);
	case EMU_MSR_STAR:
		cpu->msr.star = val;
		return 0;
	case EMU_MSR_FMASK:
		cpu->msr.sfmask = val & 0xffffffffull;
		return 0;
	case EMU_MSR_LSTAR:
	case EMU_MSR_CSTAR:
	case EMU_MSR_FS_BASE:
	case EMU_MSR_GS_BASE:
	case EMU_MSR_KERNEL_GS_BASE:
		if (!canonical(val))
			return gp(cpu);
		if (msr == EMU_MSR_LSTAR)
			cpu->msr.lstar = val;
		else if (msr == EMU_MSR_CSTAR)
			cpu->msr.cstar = val;
		else if (msr == EMU_MSR_FS_BASE)
			cpu->seg[EMU_SEG_FS].base = val;
		else if (msr == EMU_MSR_GS_BASE)
			cpu->seg[EMU_SEG_GS].base = val;
		else
			cpu->msr.kernel_gs_base = val;
		return 0;
	case EMU_MSR_TSC_AUX:
		if (val >> 32)
			return gp(cpu);
		cpu->msr.tsc_aux = val;
		return 0;
	case EMU_MSR_K7_HWCR:
		cpu->msr_hwcr = val;
		return 0;
	case EMU_MSR_AMD_DE_CFG:
		cpu->msr_de_cfg = val;
		return 0;
	case EMU_MSR_KVM_WALL_CLOCK:
		cpu->kvmclock_wall_msr = val;
		kvm_wall_clock(cpu, val);
		return 0;
	case EMU_MSR_KVM_SYSTEM_TIME:
		cpu->kvmclock_msr = val;
		emu_kvmclock_update(cpu);
		return 0;
	default:
		return unknown(cpu, msr);
	}
}
