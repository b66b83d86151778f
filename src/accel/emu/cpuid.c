/*
 * cpuid.c - the software CPU's CPU model: what CPUID reports (AMD APM
 * Vol. 3 appendix E "Obtaining Processor Information Via the CPUID
 * Instruction"; SDM Vol. 2A CPUID).
 *
 * The model is chosen on purpose, for what it makes Linux do.
 *
 * Vendor and family.  "AuthenticAMD", family 0Fh, model 6Bh, stepping 1:
 * QEMU's qemu64 model, the default of QEMU's TCG, i.e. the software-CPU
 * model Linux is most tested on.  Linux's cpu_vuln_whitelist
 * (arch/x86/kernel/cpu/common.c) marks AMD families 0Fh-12h NO_MELTDOWN,
 * NO_SSB, NO_L1TF, NO_MDS, NO_SWAPGS, NO_ITLB_MULTIHIT, NO_MMIO, NO_BHI,
 * and family 0Fh is in none of the blacklists (RETBleed is 15h-17h, SRSO
 * and Zenbleed 17h/19h, TSA 19h), so Linux enables neither page-table
 * isolation (a CR3 write and full TLB flush on every kernel entry and
 * exit: ruinous for a software TLB), nor VERW on return to user, nor BHB
 * clearing, nor return thunks; Spectre v2 gets retpolines, which cost an
 * interpreter nothing special.  A modern family (17h+, "EPYC") would turn
 * on SRSO/RETBleed mitigations; an Intel model would turn on PTI and MDS
 * clearing.  Family 0Fh model >= 41h makes Linux set X86_BUG_AMD_E400
 * and read MSR C001_0055 once (msr.c returns 0: no C1E), harmless.
 *
 * Features: only what the software CPU implements, nothing it does not,
 * since Linux uses what CPUID claims without asking twice.
 *   leaf 1 EDX: FPU DE PSE TSC MSR PAE CX8 APIC PGE CMOV PAT CLFSH MMX FXSR
 *               SSE SSE2, HTT with more than one vCPU.  APIC reads 0 while
 *               IA32_APIC_BASE.EN = 0 (SDM 11.4.3).  PSE is required by
 *               Linux's verify_cpu on x86-64.  Not: VME, MCE, MCA (no
 *               machine-check MSRs), SEP (SYSENTER is not implemented),
 *               MTRR (MTRRs are reported absent; MSRs FEh/2FFh read 0),
 *               PSE36, ACPI/TM/PBE, DS, SS.
 *   leaf 1 ECX: SSE3 SSSE3 CX16 POPCNT TSC-DEADLINE HYPERVISOR.  Not:
 *               SSE4.1/4.2, AES, PCLMUL, AVX, XSAVE/OSXSAVE (so XGETBV is
 *               #UD and leaf 0Dh is absent), MONITOR, VMX, x2APIC, PCID,
 *               MOVBE, RDRAND, F16C, FMA, PDCM.
 *   leaf 6:     ARAT (the LAPIC timer runs in any idle state).
 *   leaf 7:     nothing (no FSGSBASE, BMI1/2, SMEP, SMAP, INVPCID, AVX2,
 *               RDSEED, PKU, LA57, UMIP, SPEC_CTRL...).  TZCNT/LZCNT
 *               therefore execute as BSF/BSR (decode.c), as on CPUs
 *               without BMI1/ABM.
 *   leaf 0Ah:   absent (max basic leaf 7): no architectural PMU.
 *   80000001h:  EDX: the AMD aliases of leaf 1 EDX, SYSCALL, NX, PDPE1GB,
 *               RDTSCP, LM.  ECX: LAHF_LM, CmpLegacy with >1 vCPU.  Not:
 *               SVM, ABM, SSE4A, 3DNow!, PerfCtrCore, TopoExt, MWAITX,
 *               AltMovCr8 (LOCK MOV CR0 is #UD).
 *   80000007h:  EDX bit 8, invariant TSC (tsc.c: it is wall time).
 *   80000008h:  40 physical / 48 virtual address bits (cpu->maxphyaddr is
 *               40), NC = vCPUs - 1, ApicIdSize 0 (legacy: derive from NC).
 *               EBX 0: no IBPB/IBRS/STIBP/SSBD controls (and no MSRs).
 *   80000005h/6h: 64 KiB L1 caches, 512 KiB L2, no L3 (QEMU's numbers;
 *               Linux only prints and sizes things with them).
 *   Brand string "kvmm virtual CPU".
 *
 * Paravirtual: the hypervisor bit and KVM's signature at 40000000h
 * ("KVMKVMKVM\0\0\0", max leaf 40000001h) with features
 * KVM_FEATURE_CLOCKSOURCE2 and KVM_FEATURE_CLOCKSOURCE_STABLE_BIT
 * (Documentation/virt/kvm/x86/cpuid.rst), so Linux uses kvm-clock
 * (msr.c) and trusts the TSC across vCPUs; no async PF, PV EOI, steal
 * time or PV spinlocks (their MSRs would be #GP).
 *
 * Topology: APIC ID = vCPU index (CPUID.1:EBX[31:24]), all vCPUs cores of
 * one package (logical count in CPUID.1:EBX[23:16], NC in 80000008h).
 *
 * Leaves above the maximum read as zeros (AMD; Intel would repeat the
 * highest basic leaf).  Everything is computed from the vCPU's own state,
 * so no shared data.
 */
#include <string.h>

#include "accel/emu/emu_sys.h"
#include "accel/emu/exec.h"
#include "accel/emu/lapic.h"

#define MAX_BASIC 0x7u
#define MAX_EXT   0x80000008u
#define KVM_BASE  0x40000000u

/* CPUID.1:EDX (SDM Vol. 2A table 3-11). */
#define F1D_FPU   (1u << 0)
#define F1D_DE    (1u << 2)
#define F1D_PSE   (1u << 3)
#define F1D_TSC   (1u << 4)
#define F1D_MSR   (1u << 5)
#define F1D_PAE   (1u << 6)
#define F1D_CX8   (1u << 8)
#define F1D_APIC  (1u << 9)
#define F1D_PGE   (1u << 13)
#define F1D_CMOV  (1u << 15)
#define F1D_PAT   (1u << 16)
#define F1D_CLFSH (1u << 19)
#define F1D_MMX   (1u << 23)
#define F1D_FXSR  (1u << 24)
#define F1D_SSE   (1u << 25)
#define F1D_SSE2  (1u << 26)
#define F1D_HTT   (1u << 28)
/* CPUID.1:ECX (table 3-10). */
#define F1C_SSE3   (1u << 0)
#define F1C_SSSE3  (1u << 9)
#define F1C_CX16   (1u << 13)
#define F1C_POPCNT (1u << 23)
#define F1C_TSCDL  (1u << 24)
#define F1C_HV     (1u << 31)
/* CPUID.80000001h (APM Vol. 3 E.4.2). */
#define FXC_LAHF   (1u << 0)
#define FXC_CMPLEG (1u << 1)
#define FXD_ALIASES 0x0183f3ffu /* EDX bits mirroring leaf 1 EDX on AMD */
#define FXD_SYSCALL (1u << 11)
#define FXD_NX     (1u << 20)
#define FXD_1GB    (1u << 26)
#define FXD_RDTSCP (1u << 27)
#define FXD_LM     (1u << 29)

/* Family 0Fh, extended model 6, model 0Bh (6Bh), stepping 1. */
#define SIGNATURE 0x00060fb1u

#define KVM_FEATURE_CLOCKSOURCE2            (1u << 3)
#define KVM_FEATURE_CLOCKSOURCE_STABLE_BIT  (1u << 24)

static const char brand[48] = "kvmm virtual CPU";

static uint32_t str4(const char *s)
{
	uint32_t v;

	memcpy(&v, s, 4);
	return v;
}

static bool apic_enabled(const struct emu_cpu *cpu)
{
	if (cpu->lapic)
		return lapic_hw_enabled(cpu->lapic);
	return cpu->msr.apic_base & LAPIC_BASE_ENABLE;
}

static unsigned nr_cpus(const struct emu_cpu *cpu)
{
	return cpu->nr_cpus > 1 ? (unsigned)cpu->nr_cpus : 1;
}

static uint32_t leaf1_edx(const struct emu_cpu *cpu)
{
	uint32_t d = F1D_FPU | F1D_DE | F1D_PSE | F1D_TSC | F1D_MSR |
		     F1D_PAE | F1D_CX8 | F1D_PGE | F1D_CMOV | F1D_PAT |
		     F1D_CLFSH | F1D_MMX | F1D_FXSR | F1D_SSE | F1D_SSE2;

	if (apic_enabled(cpu))
		d |= F1D_APIC;
	if (nr_cpus(cpu) > 1)
		d |= F1D_HTT;
	return d;
}

void emu_cpuid(const struct emu_cpu *cpu, uint32_t leaf, uint32_t sub,
	       uint32_t out[4])
{
	uint32_t *a = &out[0], *b = &out[1], *c = &out[2], *d = &out[3];
	unsigned n = nr_cpus(cpu);

	(void)sub; /* no leaf with subleaves is reported */
	*a = *b = *c = *d = 0;
	switch (leaf) {
	case 0:
		*a = MAX_BASIC;
		*b = str4("Auth");
		*d = str4("enti");
		*c = str4("cAMD");
		break;
	case 1:
		*a = SIGNATURE;
		/* APIC ID, logical processors per package, CLFLUSH line size
		 * in 8-byte units (64 bytes). */
		*b = ((uint32_t)(cpu->index & 0xff) << 24) |
		     ((n > 255 ? 255 : n) << 16) | (8u << 8);
		*c = F1C_SSE3 | F1C_SSSE3 | F1C_CX16 | F1C_POPCNT | F1C_TSCDL |
		     F1C_HV;
		*d = leaf1_edx(cpu);
		break;
	case 6:
		*a = 1u << 2; /* ARAT */
		break;
	case KVM_BASE:
		*a = KVM_BASE + 1;
		*b = str4("KVMK");
		*c = str4("VMKV");
		*d = str4("M\0\0\0");
		break;
	case KVM_BASE + 1:
		*a = KVM_FEATURE_CLOCKSOURCE2 |
		     KVM_FEATURE_CLOCKSOURCE_STABLE_BIT;
		break;
	case 0x80000000u:
		*a = MAX_EXT;
		*b = str4("Auth");
		*d = str4("enti");
		*c = str4("cAMD");
		break;
	case 0x80000001u:
		*a = SIGNATURE;
		*c = FXC_LAHF | (n > 1 ? FXC_CMPLEG : 0);
		*d = (leaf1_edx(cpu) & FXD_ALIASES) | FXD_SYSCALL | FXD_NX |
		     FXD_1GB | FXD_RDTSCP | FXD_LM;
		break;
	case 0x80000002u: case 0x80000003u: case 0x80000004u:
		memcpy(out, brand + (leaf - 0x80000002u) * 16, 16);
		break;
	case 0x80000005u:
		/* L1 TLBs: 255 entries, fully associative, 2M and 4K pages;
		 * L1D / L1I: 64 KiB, 2-way, 1 line per tag, 64-byte lines. */
		*a = 0x01ff01ffu;
		*b = 0x01ff01ffu;
		*c = 0x40020140u;
		*d = 0x40020140u;
		break;
	case 0x80000006u:
		/* L2: 512 KiB, 16-way (code 8), 1 line per tag, 64 bytes;
		 * no L2 TLB details, no L3 (EDX 0). */
		*c = (512u << 16) | (0x8u << 12) | (1u << 8) | 64u;
		break;
	case 0x80000007u:
		*d = 1u << 8; /* invariant TSC */
		break;
	case 0x80000008u:
		*a = (48u << 8) | cpu->maxphyaddr;
		*c = (n - 1) & 0xff;
		break;
	default:
		break;
	}
}
