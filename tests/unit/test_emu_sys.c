/*
 * test_emu_sys.c - the software CPU's system instructions and CPU model:
 * CPUID (vendor, family, hidden features really hidden, KVM leaves,
 * per-vCPU APIC IDs), RDMSR/WRMSR (round trips, checks, #GP and counting
 * of unknown MSRs), kvm-clock (the pvclock page agrees with the TSC and
 * vm_clock_ns()), the TSC (one counter shared by vCPUs, RDTSCP, CR4.TSD),
 * MOV CR checks, HLT, port I/O through a bus (IN, OUT, REP INSB, IOPL),
 * and, against the host CPU, SHLD/SHRD/POPCNT/CMPXCHG8B/CMPXCHG16B/XLAT
 * (the differential approach of test_emu_insn.c, in a smaller harness).
 *
 * Every test runs the instructions through emu_step() in flat 64-bit mode
 * with identity page tables (1 GiB pages, user-accessible) built in guest
 * RAM, so CPL 3 accesses work too.  The machine comes from the test
 * harness: fake clock (so time is deterministic), PIO bus, guest RAM.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "accel/emu/cpu.h"
#include "accel/emu/emu.h"
#include "accel/emu/emu_sys.h"
#include "core/bus.h"
#include "core/memory.h"
#include "core/timer.h"
#include "emu_native.h"
#include "harness.h"

#define RAM      (32ull << 20)
#define PML4     0x1000ull
#define PDPT     0x2000ull
#define CODE_AT  0x10000ull
#define DATA_AT  0x20000ull
#define CLOCK_AT 0x30000ull

static struct harness *h;

/* Identity map of the first 4 GiB with user-accessible 1 GiB pages. */
static void build_page_tables(struct guest_mem *gm)
{
	uint64_t e = PDPT | 7;

	assert_int_equal(gm_write(gm, PML4, &e, 8), 0);
	for (uint64_t i = 0; i < 4; i++) {
		e = (i << 30) | 0x87; /* P RW US PS */
		assert_int_equal(gm_write(gm, PDPT + i * 8, &e, 8), 0);
	}
}

static void cpu_setup(struct emu_cpu *cpu, int index, int cpl)
{
	emu_cpu_init(cpu, &h->vm.mem, &h->vm.mmio, &h->vm.pio);
	cpu->vm = &h->vm;
	cpu->index = index;
	cpu->nr_cpus = 1;
	emu_cpu_set_long_mode(cpu, CODE_AT);
	cpu->cr3 = PML4;
	if (cpl == 3) {
		cpu->seg[EMU_SEG_CS].sel = 0x33;
		cpu->seg[EMU_SEG_SS].sel = 0x2b;
	}
	emu_cpu_update_mode(cpu);
	emu_tlb_flush(cpu, true);
}

/* Put `len` code bytes at CODE_AT and run one instruction. */
static int run(struct emu_cpu *cpu, const void *code, size_t len)
{
	assert_int_equal(gm_write(&h->vm.mem, CODE_AT, code, len), 0);
	cpu->rip = CODE_AT;
	return emu_step(cpu);
}

#define RUN(cpu, ...) ({ static const uint8_t c_[] = { __VA_ARGS__ }; \
			 run(cpu, c_, sizeof(c_)); })

static void cpuid(struct emu_cpu *cpu, uint32_t leaf, uint32_t sub,
		  uint32_t out[4])
{
	cpu->gpr[EMU_RAX] = 0xdead00000000ull | leaf;
	cpu->gpr[EMU_RCX] = sub;
	cpu->gpr[EMU_RBX] = cpu->gpr[EMU_RDX] = ~0ull;
	assert_int_equal(RUN(cpu, 0x0f, 0xa2), 0);
	assert_int_equal(cpu->rip, CODE_AT + 2);
	for (int i = 0; i < 4; i++) {
		static const int r[4] = { EMU_RAX, EMU_RBX, EMU_RCX, EMU_RDX };

		assert_true(cpu->gpr[r[i]] >> 32 == 0); /* 32-bit writes */
		out[i] = (uint32_t)cpu->gpr[r[i]];
	}
}

/* ---- CPUID ------------------------------------------------------------ */

static void test_cpuid_model(void **state)
{
	struct emu_cpu cpu;
	uint32_t r[4];
	char s[49] = "";

	cpu_setup(&cpu, 0, 3); /* CPUID works at any CPL */
	cpuid(&cpu, 0, 0, r);
	assert_true(r[0] >= 6 && r[0] < 0xa); /* no PMU leaf 0Ah, no 0Bh */
	memcpy(s, &r[1], 4);
	memcpy(s + 4, &r[3], 4);
	memcpy(s + 8, &r[2], 4);
	s[12] = 0;
	assert_string_equal(s, "AuthenticAMD");

	cpuid(&cpu, 1, 0, r);
	/* Family 0Fh (whitelisted by Linux as not affected). */
	assert_int_equal((r[0] >> 8) & 0xf, 0xf);
	assert_int_equal((r[0] >> 20) & 0xff, 0);
	assert_true(r[2] & (1u << 31));                 /* hypervisor */
	assert_true(r[2] & (1u << 24));                 /* TSC deadline */
	assert_true(r[2] & (1u << 13));                 /* CX16 */
	assert_true(r[2] & (1u << 23));                 /* POPCNT */
	assert_true(r[2] & (1u << 0) && r[2] & (1u << 9)); /* SSE3 SSSE3 */
	/* Hidden: MONITOR VMX SSE4.1 SSE4.2 x2APIC MOVBE PCID AES XSAVE
	 * OSXSAVE AVX F16C RDRAND FMA PCLMUL PDCM. */
	assert_int_equal(r[2] & ((1u << 3) | (1u << 5) | (1u << 19) |
				 (1u << 20) | (1u << 21) | (1u << 22) |
				 (1u << 17) | (1u << 25) | (1u << 26) |
				 (1u << 27) | (1u << 28) | (1u << 29) |
				 (1u << 30) | (1u << 12) | (1u << 1) |
				 (1u << 15)), 0);
	/* Required by Linux x86-64: FPU PSE TSC MSR PAE CX8 APIC PGE CMOV
	 * PAT CLFSH MMX FXSR SSE SSE2. */
	assert_int_equal(r[3] & 0x0789a379u, 0x0789a379u);
	/* Hidden: MCE SEP MTRR MCA (no machine-check, SYSENTER, MTRRs). */
	assert_int_equal(r[3] & ((1u << 7) | (1u << 11) | (1u << 12) |
				 (1u << 14)), 0);
	assert_int_equal((r[1] >> 24) & 0xff, 0);       /* APIC ID */

	cpuid(&cpu, 6, 0, r);
	assert_true(r[0] & (1u << 2));                  /* ARAT */
	cpuid(&cpu, 7, 0, r);
	assert_int_equal(r[1], 0); /* no FSGSBASE BMI SMEP SMAP INVPCID AVX2 */
	assert_int_equal(r[2], 0); /* no PKU LA57 UMIP */
	assert_int_equal(r[3], 0); /* no SPEC_CTRL etc. */
	cpuid(&cpu, 0xa, 0, r);
	assert_true(!r[0] && !r[1] && !r[2] && !r[3]);  /* no PMU */
	cpuid(&cpu, 0xd, 0, r);
	assert_true(!r[0] && !r[1] && !r[2] && !r[3]);  /* no XSAVE */

	cpuid(&cpu, 0x40000000, 0, r);
	assert_int_equal(r[0], 0x40000001);
	memcpy(s, &r[1], 4);
	memcpy(s + 4, &r[2], 4);
	memcpy(s + 8, &r[3], 4);
	assert_memory_equal(s, "KVMKVMKVM\0\0\0", 12);
	cpuid(&cpu, 0x40000001, 0, r);
	assert_int_equal(r[0], (1u << 3) | (1u << 24));
	assert_int_equal(r[3], 0);

	cpuid(&cpu, 0x80000000, 0, r);
	assert_true(r[0] >= 0x80000008);
	cpuid(&cpu, 0x80000001, 0, r);
	/* LM NX SYSCALL RDTSCP PDPE1GB, LAHF_LM. */
	assert_int_equal(r[3] & 0x2c100800u, 0x2c100800u);
	assert_true(r[2] & 1);
	/* Hidden: SVM ABM SSE4A 3DNowPrefetch? (kept off) TOPOEXT
	 * PERFCTR_CORE MWAITX, 3DNow, MMXEXT. */
	assert_int_equal(r[2] & ((1u << 2) | (1u << 5) | (1u << 6) |
				 (1u << 22) | (1u << 23) | (1u << 29)), 0);
	assert_int_equal(r[3] & ((1u << 31) | (1u << 30) | (1u << 22)), 0);
	cpuid(&cpu, 0x80000007, 0, r);
	assert_true(r[3] & (1u << 8));                  /* invariant TSC */
	cpuid(&cpu, 0x80000008, 0, r);
	assert_int_equal(r[0] & 0xffff, (48u << 8) | 40u);
	assert_int_equal(r[1], 0);                      /* no IBPB etc. */
	for (uint32_t l = 0; l < 3; l++) {
		cpuid(&cpu, 0x80000002 + l, 0, r);
		memcpy(s + l * 16, r, 16);
	}
	s[48] = 0;
	assert_string_equal(s, "kvmm virtual CPU");
	cpuid(&cpu, 0x8000001e, 0, r);
	assert_true(!r[0] && !r[1] && !r[2] && !r[3]);  /* no topoext */
}

static void test_cpuid_topology(void **state)
{
	struct emu_cpu a, b;
	uint32_t r[4];

	cpu_setup(&a, 0, 0);
	cpu_setup(&b, 3, 0);
	a.nr_cpus = b.nr_cpus = 4;
	cpuid(&a, 1, 0, r);
	assert_int_equal(r[1] >> 24, 0);
	assert_int_equal((r[1] >> 16) & 0xff, 4);
	assert_true(r[3] & (1u << 28));                 /* HTT */
	cpuid(&b, 1, 0, r);
	assert_int_equal(r[1] >> 24, 3);
	cpuid(&b, 0x80000008, 0, r);
	assert_int_equal(r[2] & 0xff, 3);               /* NC */
	cpuid(&b, 0x80000001, 0, r);
	assert_true(r[2] & 2);                          /* CmpLegacy */

	/* APIC disabled in IA32_APIC_BASE: CPUID.1:EDX.APIC reads 0. */
	b.msr.apic_base &= ~(1ull << 11);
	cpuid(&b, 1, 0, r);
	assert_false(r[3] & (1u << 9));
}

/* ---- MSRs ------------------------------------------------------------- */

static int wrmsr(struct emu_cpu *cpu, uint32_t msr, uint64_t v)
{
	cpu->gpr[EMU_RCX] = msr;
	cpu->gpr[EMU_RAX] = (uint32_t)v | 0xabcd00000000ull; /* high half ignored */
	cpu->gpr[EMU_RDX] = v >> 32;
	return RUN(cpu, 0x0f, 0x30);
}

static int rdmsr(struct emu_cpu *cpu, uint32_t msr, uint64_t *v)
{
	int r;

	cpu->gpr[EMU_RCX] = msr;
	cpu->gpr[EMU_RAX] = cpu->gpr[EMU_RDX] = ~0ull;
	r = RUN(cpu, 0x0f, 0x32);
	if (!r) {
		assert_true(cpu->gpr[EMU_RAX] >> 32 == 0);
		assert_true(cpu->gpr[EMU_RDX] >> 32 == 0);
		*v = cpu->gpr[EMU_RAX] | (cpu->gpr[EMU_RDX] << 32);
	}
	return r;
}

static void test_msr_round_trips(void **state)
{
	static const struct { uint32_t msr; uint64_t v; } rt[] = {
		{ EMU_MSR_STAR, 0x0023001000000000ull },
		{ EMU_MSR_LSTAR, 0xffffffff81a00000ull },
		{ EMU_MSR_CSTAR, 0xffffffff81a00100ull },
		{ EMU_MSR_FMASK, 0x47700 },
		{ EMU_MSR_KERNEL_GS_BASE, 0xffff888012345000ull },
		{ EMU_MSR_FS_BASE, 0x00007f0012340000ull },
		{ EMU_MSR_GS_BASE, 0xffff888077770000ull },
		{ EMU_MSR_TSC_AUX, 0x1003 },
		{ EMU_MSR_PAT, 0x0407050600070106ull },
		{ EMU_MSR_SYSENTER_CS, 0x10 },
		{ EMU_MSR_SYSENTER_ESP, 0xfffffe0000001000ull },
		{ EMU_MSR_SYSENTER_EIP, 0xffffffff81a01000ull },
		{ EMU_MSR_MISC_ENABLE, 1 },
		{ EMU_MSR_EFER, EMU_EFER_SCE | EMU_EFER_LME | EMU_EFER_LMA |
				EMU_EFER_NXE },
		{ EMU_MSR_TSC_DEADLINE, 123456789 },
		{ EMU_MSR_AMD_DE_CFG, 2 },
	};
	struct emu_cpu cpu;
	uint64_t v;

	cpu_setup(&cpu, 0, 0);
	for (size_t i = 0; i < sizeof(rt) / sizeof(rt[0]); i++) {
		assert_int_equal(wrmsr(&cpu, rt[i].msr, rt[i].v), 0);
		assert_int_equal(cpu.rip, CODE_AT + 2);
		assert_int_equal(rdmsr(&cpu, rt[i].msr, &v), 0);
		if (v != rt[i].v)
			fail_msg("MSR %#x: wrote %#llx read %#llx", rt[i].msr,
				 (unsigned long long)rt[i].v,
				 (unsigned long long)v);
	}
	assert_int_equal(cpu.seg[EMU_SEG_FS].base, 0x00007f0012340000ull);
	assert_int_equal(cpu.seg[EMU_SEG_GS].base, 0xffff888077770000ull);
	/* Reads Linux does without rdmsr_safe on this model. */
	assert_int_equal(rdmsr(&cpu, EMU_MSR_K8_INT_PENDING, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_K7_HWCR, &v), 0);
	assert_true(v & (1ull << 24));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_K7_HWCR, v | 0x40), 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_UCODE_REV, &v), 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_MTRRCAP, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_MTRR_DEF_TYPE, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_FEATURE_CTL, &v), 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_APIC_BASE, &v), 0);
	assert_int_equal(v, 0xfee00900ull);
	assert_int_equal(cpu.msr_unknown, 0);
}

static void test_msr_faults(void **state)
{
	struct emu_cpu cpu;
	uint64_t v;

	cpu_setup(&cpu, 0, 0);
	/* Unknown MSRs: #GP(0), counted, RIP and registers untouched. */
	cpu.gpr[EMU_RAX] = 0x1111;
	assert_int_equal(rdmsr(&cpu, 0x12345, &v), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu.rip, CODE_AT);
	assert_int_equal(cpu.exc.error_code, 0);
	assert_int_equal(wrmsr(&cpu, 0xc0010004 /* K7 PERFCTR0 */, 1),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(rdmsr(&cpu, 0x48 /* SPEC_CTRL: hidden */, &v),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu.msr_unknown, 3);
	assert_int_equal(cpu.msr_last_unknown, 0x48);
	/* Checked values. */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_LSTAR, 0x0000800000000000ull),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_GS_BASE, 0x8000000000000000ull),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_PAT, 0x0007040600070402ull),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_TSC_AUX, 1ull << 32),
			 EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_EFER, cpu.msr.efer | (1u << 12)),
			 EMU_EXC(EMU_VEC_GP)); /* SVME */
	/* LME may not change while paging is on. */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_EFER, 0), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_APIC_BASE, 0xfee00900ull | (1u << 10)),
			 EMU_EXC(EMU_VEC_GP)); /* x2APIC */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_APIC_BASE, 1ull << 45 | 0x900),
			 EMU_EXC(EMU_VEC_GP)); /* above MAXPHYADDR */
	assert_int_equal(cpu.msr_unknown, 3); /* known MSRs are not counted */
	/* CPL 3: #GP for RDMSR/WRMSR of any MSR. */
	cpu_setup(&cpu, 0, 3);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_EFER, &v), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(wrmsr(&cpu, EMU_MSR_STAR, 0), EMU_EXC(EMU_VEC_GP));
	/* RDPMC: no counters. */
	cpu_setup(&cpu, 0, 0);
	cpu.gpr[EMU_RCX] = 0;
	assert_int_equal(RUN(&cpu, 0x0f, 0x33), EMU_EXC(EMU_VEC_GP));
	/* XGETBV: no XSAVE. */
	assert_int_equal(RUN(&cpu, 0x0f, 0x01, 0xd0), EMU_EXC(EMU_VEC_UD));
}

/* ---- time ------------------------------------------------------------- */

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t mul;
	int8_t shift;
	uint8_t flags, pad[2];
} __attribute__((packed));

static uint64_t rdtsc_emu(struct emu_cpu *cpu)
{
	assert_int_equal(RUN(cpu, 0x0f, 0x31), 0);
	return (uint32_t)cpu->gpr[EMU_RAX] | (cpu->gpr[EMU_RDX] << 32);
}

static uint64_t pv_time(const struct pvclock *p, uint64_t tsc)
{
	uint64_t d = tsc - p->tsc_timestamp;

	d = p->shift < 0 ? d >> -p->shift : d << p->shift;
	return p->system_time + (uint64_t)(((unsigned __int128)d * p->mul) >> 32);
}

static void test_tsc_shared_monotonic(void **state)
{
	struct emu_cpu a, b;
	uint64_t t0, t1, t2;

	cpu_setup(&a, 0, 3);
	cpu_setup(&b, 1, 0);
	t0 = rdtsc_emu(&a);
	assert_int_equal(t0, emu_tsc_read(&b));
	assert_int_equal(t0, vm_clock_ns(&h->vm) * 2);
	hx_clock_advance(h, 1000);
	t1 = rdtsc_emu(&b);
	assert_int_equal(t1 - t0, 2000);               /* 2 GHz */
	t2 = rdtsc_emu(&a);
	assert_int_equal(t1, t2);                      /* one TSC for all */
	/* Real clock: never goes back. */
	a.vm = NULL;
	t0 = emu_tsc_read(&a);
	for (int i = 0; i < 1000; i++) {
		t1 = emu_tsc_read(&a);
		assert_true(t1 >= t0);
		t0 = t1;
	}
	a.vm = &h->vm;

	/* WRMSR IA32_TSC moves this vCPU's TSC only. */
	assert_int_equal(wrmsr(&b, EMU_MSR_TSC, 1000000), 0);
	assert_int_equal(rdtsc_emu(&b), 1000000);
	hx_clock_advance(h, 500);
	assert_int_equal(rdtsc_emu(&b), 1001000);
	assert_int_equal(rdtsc_emu(&a), vm_clock_ns(&h->vm) * 2);

	/* RDTSCP: ECX = TSC_AUX. */
	assert_int_equal(wrmsr(&b, EMU_MSR_TSC_AUX, 0x2003), 0);
	b.gpr[EMU_RCX] = ~0ull;
	assert_int_equal(RUN(&b, 0x0f, 0x01, 0xf9), 0);
	assert_int_equal(b.gpr[EMU_RCX], 0x2003);
	assert_int_equal(b.rip, CODE_AT + 3);

	/* CR4.TSD: #GP at CPL 3, fine at CPL 0. */
	a.cr4 |= EMU_CR4_TSD;
	b.cr4 |= EMU_CR4_TSD;
	assert_int_equal(RUN(&a, 0x0f, 0x31), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&a, 0x0f, 0x01, 0xf9), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&b, 0x0f, 0x31), 0);
}

static void test_kvmclock(void **state)
{
	struct emu_cpu cpu;
	struct pvclock *p = gm_ptr(&h->vm.mem, CLOCK_AT, sizeof(*p));
	struct { uint32_t version, sec, nsec; } __attribute__((packed)) *w =
		gm_ptr(&h->vm.mem, CLOCK_AT + 0x100, 12);
	uint64_t v, tsc;
	time_t now = time(NULL);

	memset(p, 0xee, sizeof(*p));
	cpu_setup(&cpu, 0, 0);
	assert_int_equal(wrmsr(&cpu, EMU_MSR_KVM_SYSTEM_TIME, CLOCK_AT | 1), 0);
	assert_int_equal(rdmsr(&cpu, EMU_MSR_KVM_SYSTEM_TIME, &v), 0);
	assert_int_equal(v, CLOCK_AT | 1);
	assert_int_equal(p->version & 1, 0);
	assert_true(p->version != 0);
	assert_int_equal(p->flags, 1);                 /* TSC_STABLE */
	for (int i = 0; i < 5; i++) {
		hx_clock_advance(h, 123456789ull * (i + 1));
		tsc = rdtsc_emu(&cpu);
		assert_int_equal(pv_time(p, tsc), vm_clock_ns(&h->vm));
	}
	/* A TSC write rewrites the page so the formula still holds. */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_TSC, 42), 0);
	hx_clock_advance(h, 1000);
	tsc = rdtsc_emu(&cpu);
	assert_int_equal(tsc, 42 + 2000);
	assert_int_equal(pv_time(p, tsc), vm_clock_ns(&h->vm));
	assert_int_equal(p->version & 1, 0);

	/* Wall clock: boot time = now - vm_clock_ns(). */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_KVM_WALL_CLOCK, CLOCK_AT + 0x100), 0);
	assert_int_equal(w->version & 1, 0);
	assert_true(w->nsec < 1000000000u);
	v = w->sec + vm_clock_ns(&h->vm) / 1000000000ull;
	assert_true(v + 2 >= (uint64_t)now && v <= (uint64_t)now + 2);

	/* An address outside RAM is accepted but nothing is written. */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_KVM_SYSTEM_TIME, (1ull << 39) | 1), 0);
	assert_int_equal(wrmsr(&cpu, EMU_MSR_KVM_SYSTEM_TIME, (RAM - 16) | 1), 0);
}

/* ---- control registers, HLT ------------------------------------------- */

static void test_mov_cr(void **state)
{
	struct emu_cpu cpu;
	uint64_t flushes;

	cpu_setup(&cpu, 0, 0);
	/* mov rax, cr0 / cr4 / cr3 */
	assert_int_equal(RUN(&cpu, 0x0f, 0x20, 0xc0), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], cpu.cr0);
	assert_int_equal(RUN(&cpu, 0x0f, 0x20, 0xe0), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], EMU_CR4_PAE);
	assert_int_equal(RUN(&cpu, 0x0f, 0x20, 0xd8), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], PML4);

	/* mov cr0, rax: bit 32 -> #GP; PG without PE -> #GP; NW without CD. */
	cpu.gpr[EMU_RAX] = cpu.cr0 | (1ull << 32);
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RAX] = cpu.cr0 & ~EMU_CR0_PE;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RAX] = cpu.cr0 | (1ull << 29);
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));
	/* Clearing PG in 64-bit mode -> #GP. */
	cpu.gpr[EMU_RAX] = cpu.cr0 & ~EMU_CR0_PG;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu.rip, CODE_AT);
	/* Clearing WP: allowed, flushes the TLB. */
	flushes = cpu.tlb.flushes;
	cpu.gpr[EMU_RAX] = cpu.cr0 & ~EMU_CR0_WP;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), 0);
	assert_false(cpu.cr0 & EMU_CR0_WP);
	assert_true(cpu.tlb.flushes > flushes);

	/* mov cr4, rax: VMXE, OSXSAVE, SMEP, PCIDE, FSGSBASE, LA57 -> #GP;
	 * clearing PAE in long mode -> #GP; PGE is fine. */
	static const unsigned bad4[] = { 13, 18, 20, 21, 17, 16, 12, 8, 6, 0, 1, 11, 22, 40 };
	for (size_t i = 0; i < sizeof(bad4) / sizeof(bad4[0]); i++) {
		cpu.gpr[EMU_RAX] = cpu.cr4 | (1ull << bad4[i]);
		if (RUN(&cpu, 0x0f, 0x22, 0xe0) != EMU_EXC(EMU_VEC_GP))
			fail_msg("CR4 bit %u accepted", bad4[i]);
	}
	cpu.gpr[EMU_RAX] = 0;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xe0), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RAX] = EMU_CR4_PAE | EMU_CR4_PGE | (3u << 9);
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xe0), 0);
	assert_int_equal(cpu.cr4, EMU_CR4_PAE | EMU_CR4_PGE | (3u << 9));

	/* mov cr3, rax: every write flushes; reserved high bits -> #GP. */
	flushes = cpu.tlb.flushes;
	cpu.gpr[EMU_RAX] = PML4;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xd8), 0);
	assert_true(cpu.tlb.flushes > flushes);
	cpu.gpr[EMU_RAX] = PML4 | (1ull << 63);
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xd8), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RAX] = PML4 | (1ull << 45);
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xd8), EMU_EXC(EMU_VEC_GP));

	/* CR8 (REX.R): 0-15 only. */
	cpu.gpr[EMU_RAX] = 9;
	assert_int_equal(RUN(&cpu, 0x44, 0x0f, 0x22, 0xc0), 0);
	cpu.gpr[EMU_RBX] = 0;
	assert_int_equal(RUN(&cpu, 0x44, 0x0f, 0x20, 0xc3), 0);
	assert_int_equal(cpu.gpr[EMU_RBX], 9);
	cpu.gpr[EMU_RAX] = 16;
	assert_int_equal(RUN(&cpu, 0x44, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));

	/* CR2 round trip, DR7 round trip, DR4 alias of DR6 without DE. */
	cpu.gpr[EMU_RAX] = 0xffffffff81234567ull;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xd0), 0);
	assert_int_equal(cpu.cr2, 0xffffffff81234567ull);
	cpu.gpr[EMU_RAX] = 0x1;
	assert_int_equal(RUN(&cpu, 0x0f, 0x23, 0xf8), 0);      /* dr7 */
	assert_int_equal(cpu.dr[7], 0x401);
	assert_int_equal(RUN(&cpu, 0x0f, 0x21, 0xe1), 0);      /* rcx = dr4 */
	assert_int_equal(cpu.gpr[EMU_RCX], cpu.dr[6]);
	cpu.cr4 |= EMU_CR4_DE;
	assert_int_equal(RUN(&cpu, 0x0f, 0x21, 0xe1), EMU_EXC(EMU_VEC_UD));
	cpu.gpr[EMU_RAX] = 1ull << 32;
	assert_int_equal(RUN(&cpu, 0x0f, 0x23, 0xf8), EMU_EXC(EMU_VEC_GP));

	/* CLTS. */
	cpu.cr0 |= 8;
	assert_int_equal(RUN(&cpu, 0x0f, 0x06), 0);
	assert_false(cpu.cr0 & 8);

	/* CPL 3: #GP for all of them. */
	cpu_setup(&cpu, 0, 3);
	assert_int_equal(RUN(&cpu, 0x0f, 0x20, 0xc0), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xd8), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0x0f, 0x21, 0xf8), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0x0f, 0x06), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0x0f, 0x09), EMU_EXC(EMU_VEC_GP)); /* wbinvd */
	assert_int_equal(RUN(&cpu, 0x0f, 0x01, 0x38), EMU_EXC(EMU_VEC_GP)); /* invlpg */
	assert_int_equal(RUN(&cpu, 0xf4), EMU_EXC(EMU_VEC_GP));       /* hlt */
	assert_int_equal(cpu.rip, CODE_AT);
	/* Fences, CLFLUSH and prefetches are fine at CPL 3. */
	cpu.gpr[EMU_RAX] = DATA_AT;
	assert_int_equal(RUN(&cpu, 0x0f, 0xae, 0xf0), 0);             /* mfence */
	assert_int_equal(RUN(&cpu, 0x0f, 0xae, 0x38), 0);             /* clflush [rax] */
	assert_int_equal(RUN(&cpu, 0x0f, 0x0d, 0x08), 0);             /* prefetchw [rax] */
}

/* Entering long mode the way a kernel does, from 32-bit protected mode
 * without paging: CR4.PAE, EFER.LME, then CR0.PG sets EFER.LMA. */
static void test_long_mode_activation(void **state)
{
	struct emu_cpu cpu;
	uint64_t v;

	cpu_setup(&cpu, 0, 0);
	cpu.cr0 = EMU_CR0_PE | 0x10;
	cpu.cr4 = 0;
	cpu.msr.efer = 0;
	cpu.seg[EMU_SEG_CS].attr = 0xb | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P |
				   EMU_SEG_ATTR_DB | EMU_SEG_ATTR_G;
	emu_cpu_update_mode(&cpu);
	assert_int_equal(cpu.mode, EMU_MODE_PROT32);
	/* PG with LME but without PAE -> #GP. */
	assert_int_equal(wrmsr(&cpu, EMU_MSR_EFER, EMU_EFER_LME), 0);
	cpu.gpr[EMU_RAX] = EMU_CR0_PE | EMU_CR0_PG;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RAX] = EMU_CR4_PAE;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xe0), 0);
	cpu.gpr[EMU_RAX] = EMU_CR0_PE | EMU_CR0_PG;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), 0);
	assert_true(cpu.msr.efer & EMU_EFER_LMA);
	assert_int_equal(cpu.mode, EMU_MODE_PROT32); /* compatibility mode */
	assert_int_equal(rdmsr(&cpu, EMU_MSR_EFER, &v), 0);
	assert_int_equal(v, EMU_EFER_LME | EMU_EFER_LMA);
	/* Leaving again from compatibility mode clears LMA. */
	cpu.gpr[EMU_RAX] = EMU_CR0_PE;
	assert_int_equal(RUN(&cpu, 0x0f, 0x22, 0xc0), 0);
	assert_false(cpu.msr.efer & EMU_EFER_LMA);
}

static void test_hlt(void **state)
{
	struct emu_cpu cpu;
	uint64_t insns;

	cpu_setup(&cpu, 0, 0);
	insns = cpu.stats.insns;
	assert_int_equal(RUN(&cpu, 0xf4), EMU_HALTED);
	assert_int_equal(cpu.rip, CODE_AT + 1);
	assert_true(cpu.halted);
	assert_int_equal(cpu.stats.insns, insns + 1);
	assert_int_equal(cpu.stats.exceptions, 0);
}

/* ---- port I/O --------------------------------------------------------- */

struct iodev {
	uint64_t last_off, last_val;
	unsigned last_size, writes, reads;
	uint8_t next;
};

static uint64_t iodev_read(void *opaque, uint64_t off, unsigned size)
{
	struct iodev *d = opaque;
	uint64_t v = 0;

	d->reads++;
	for (unsigned i = 0; i < size; i++)
		v |= (uint64_t)(uint8_t)(d->next++ + off) << (i * 8);
	return v;
}

static void iodev_write(void *opaque, uint64_t off, unsigned size,
			uint64_t v)
{
	struct iodev *d = opaque;

	d->writes++;
	d->last_off = off;
	d->last_size = size;
	d->last_val = v;
}

static const struct bus_ops iodev_ops = { iodev_read, iodev_write };
static struct iodev dev;

static void test_port_io(void **state)
{
	struct emu_cpu cpu;
	uint8_t buf[32];

	cpu_setup(&cpu, 0, 0);
	memset(&dev, 0, sizeof(dev));
	/* out dx, al */
	cpu.gpr[EMU_RDX] = 0x5001;
	cpu.gpr[EMU_RAX] = 0x12345678;
	assert_int_equal(RUN(&cpu, 0xee), 0);
	assert_int_equal(dev.writes, 1);
	assert_int_equal(dev.last_off, 1);
	assert_int_equal(dev.last_size, 1);
	assert_int_equal(dev.last_val, 0x78);
	/* out 0x02 + 0x5000? no: imm8 ports are 0-255 -> unclaimed */
	assert_int_equal(RUN(&cpu, 0xe6, 0x02), 0);
	assert_int_equal(dev.writes, 1);
	/* out dx, eax; out dx, ax */
	assert_int_equal(RUN(&cpu, 0xef), 0);
	assert_int_equal(dev.last_size, 4);
	assert_int_equal(dev.last_val, 0x12345678);
	assert_int_equal(RUN(&cpu, 0x66, 0xef), 0);
	assert_int_equal(dev.last_val, 0x5678);
	/* in eax, dx: 32-bit write clears RAX[63:32]. */
	cpu.gpr[EMU_RAX] = ~0ull;
	dev.next = 0x10;
	assert_int_equal(RUN(&cpu, 0xed), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 0x14131211);
	/* in al, dx keeps the rest. */
	cpu.gpr[EMU_RAX] = 0xaabbccdd;
	dev.next = 0x40;
	assert_int_equal(RUN(&cpu, 0xec), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 0xaabbcc41);
	/* in al, 0x60: nobody there, all ones. */
	assert_int_equal(RUN(&cpu, 0xe4, 0x60), 0);
	assert_int_equal(cpu.gpr[EMU_RAX] & 0xff, 0xff);

	/* rep insb: 16 bytes from the port into memory. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(gm_write(&h->vm.mem, DATA_AT, buf, sizeof(buf)), 0);
	dev.next = 0x80;
	dev.reads = 0;
	cpu.gpr[EMU_RDX] = 0x5000;
	cpu.gpr[EMU_RDI] = DATA_AT;
	cpu.gpr[EMU_RCX] = 16;
	assert_int_equal(RUN(&cpu, 0xf3, 0x6c), 0);
	assert_int_equal(cpu.rip, CODE_AT + 2);
	assert_int_equal(cpu.gpr[EMU_RCX], 0);
	assert_int_equal(cpu.gpr[EMU_RDI], DATA_AT + 16);
	assert_int_equal(dev.reads, 16);
	assert_int_equal(gm_read(&h->vm.mem, DATA_AT, buf, sizeof(buf)), 0);
	for (int i = 0; i < 16; i++)
		assert_int_equal(buf[i], 0x80 + i);
	assert_int_equal(buf[16], 0);
	/* rep outsw: 4 words from memory to the port. */
	dev.writes = 0;
	cpu.gpr[EMU_RSI] = DATA_AT;
	cpu.gpr[EMU_RCX] = 4;
	assert_int_equal(RUN(&cpu, 0x66, 0xf3, 0x6f), 0);
	assert_int_equal(dev.writes, 4);
	assert_int_equal(dev.last_size, 2);
	assert_int_equal(dev.last_val, 0x8786);
	assert_int_equal(cpu.gpr[EMU_RSI], DATA_AT + 8);
	/* insb into an unmapped linear address: #PF before the port read. */
	dev.reads = 0;
	cpu.gpr[EMU_RDI] = 5ull << 30;
	assert_int_equal(RUN(&cpu, 0x6c), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(dev.reads, 0);

	/* CPL 3: #GP unless IOPL is 3. */
	cpu_setup(&cpu, 0, 3);
	cpu.gpr[EMU_RDX] = 0x5001;
	dev.writes = 0;
	assert_int_equal(RUN(&cpu, 0xee), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0xec), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(RUN(&cpu, 0x6c), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(dev.writes, 0);
	cpu.rflags |= EMU_FL_IOPL;
	assert_int_equal(RUN(&cpu, 0xee), 0);
	assert_int_equal(dev.writes, 1);
}

/* ---- misc: TZCNT as BSF, CMPXCHG16B alignment, XLAT -------------------- */

static void test_misc(void **state)
{
	struct emu_cpu cpu;

	cpu_setup(&cpu, 0, 3);
	/* tzcnt rax, rbx with rbx = 0: BSF semantics (ZF=1, RAX kept). */
	cpu.gpr[EMU_RAX] = 0x1234;
	cpu.gpr[EMU_RBX] = 0;
	assert_int_equal(RUN(&cpu, 0xf3, 0x48, 0x0f, 0xbc, 0xc3), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 0x1234);
	assert_true(emu_flags_get(&cpu) & EMU_FL_ZF);
	cpu.gpr[EMU_RBX] = 0x100;
	assert_int_equal(RUN(&cpu, 0xf3, 0x48, 0x0f, 0xbc, 0xc3), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 8);
	/* lzcnt rax, rbx: BSR (index of the highest bit, not the count). */
	assert_int_equal(RUN(&cpu, 0xf3, 0x48, 0x0f, 0xbd, 0xc3), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 8);
	/* cmpxchg16b [rsi] misaligned: #GP(0). */
	cpu.gpr[EMU_RSI] = DATA_AT + 8;
	assert_int_equal(RUN(&cpu, 0x48, 0x0f, 0xc7, 0x0e), EMU_EXC(EMU_VEC_GP));
	/* cmpxchg8b misaligned works (not atomic). */
	uint64_t m = 0x1111111122222222ull, got;
	assert_int_equal(gm_write(&h->vm.mem, DATA_AT + 3, &m, 8), 0);
	cpu.gpr[EMU_RSI] = DATA_AT + 3;
	cpu.gpr[EMU_RAX] = 0x22222222;
	cpu.gpr[EMU_RDX] = 0x11111111;
	cpu.gpr[EMU_RBX] = 0x44444444;
	cpu.gpr[EMU_RCX] = 0x33333333;
	assert_int_equal(RUN(&cpu, 0x0f, 0xc7, 0x0e), 0);
	assert_true(emu_flags_get(&cpu) & EMU_FL_ZF);
	assert_int_equal(gm_read(&h->vm.mem, DATA_AT + 3, &got, 8), 0);
	assert_int_equal(got, 0x3333333344444444ull);
}

/* Two vCPU threads increment one 128-bit counter with LOCK CMPXCHG16B
 * retry loops: no update may be lost. */
struct cas_arg {
	int iters, failures;
};

static void *cas_thread(void *p)
{
	struct cas_arg *a = p;
	struct emu_cpu cpu;
	static const uint8_t code[] = { 0xf0, 0x48, 0x0f, 0xc7, 0x0e };
	uint64_t v[2];

	cpu_setup(&cpu, 0, 0);
	assert_int_equal(gm_write(&h->vm.mem, CODE_AT + 0x100, code, sizeof(code)), 0);
	for (int i = 0; i < a->iters; i++) {
		for (;;) {
			gm_read(&h->vm.mem, DATA_AT + 0x800, v, 16);
			cpu.gpr[EMU_RSI] = DATA_AT + 0x800;
			cpu.gpr[EMU_RAX] = v[0];
			cpu.gpr[EMU_RDX] = v[1];
			cpu.gpr[EMU_RBX] = v[0] + 1;
			cpu.gpr[EMU_RCX] = v[1] + 1;
			cpu.rip = CODE_AT + 0x100;
			if (emu_step(&cpu))
				a->failures++;
			if (emu_flags_get(&cpu) & EMU_FL_ZF)
				break;
		}
	}
	return NULL;
}

static void test_cmpxchg16b_atomic(void **state)
{
	struct cas_arg a[2] = { { 100000, 0 }, { 100000, 0 } };
	pthread_t t[2];
	uint64_t v[2] = { 0, 0 };

	assert_int_equal(gm_write(&h->vm.mem, DATA_AT + 0x800, v, 16), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, cas_thread, &a[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].failures, 0);
	}
	assert_int_equal(gm_read(&h->vm.mem, DATA_AT + 0x800, v, 16), 0);
	assert_int_equal(v[0], 200000);
	assert_int_equal(v[1], 200000);
}

/* ---- differential tests against the host CPU ---------------------------
 * As test_emu_insn.c: code and data at the same addresses natively and in
 * the guest (TEST_BASE mapped natively with MAP_FIXED_NOREPLACE, inside
 * guest RAM and the identity map), all GPRs and RFLAGS loaded, one
 * instruction run natively up to the int3 after it (or its own fault;
 * native_exec() in emu_native.c) and once through emu_step() at CPL 3,
 * then RIP, GPRs, the defined flags and the data page compared. */

#define TEST_BASE NATIVE_BASE
#define TEST_SIZE 0x4000ull
#define DCODE     TEST_BASE
#define DDATA     (TEST_BASE + 0x2000)

enum dkind {
	D_PLAIN,   /* RAX=a RBX=b RCX=b RDX=c; [RSI]=a,b */
	D_CAS_EQ,  /* memory at [RSI] equals RDX:RAX (EDX:EAX) */
	D_SH16,    /* 16-bit SHLD/SHRD: counts above 16 are undefined */
};

struct dform {
	const char *name;
	const uint8_t *start, *end;
	uint8_t kind;      /* enum dkind */
	uint8_t size;
	uint64_t undef;    /* flags never compared */
	bool shift;        /* OF undefined unless count == 1 (count in CL or imm) */
	int imm_count;     /* >= 0: the immediate count; -1: CL */
};

#define FL_STATUS (EMU_FL_CF | EMU_FL_PF | EMU_FL_AF | EMU_FL_ZF | \
		   EMU_FL_SF | EMU_FL_OF)

/* X(id, "intel syntax", kind, size, undef, shift, imm_count) */
#define DFORMS(X) \
	X(shld_cl64, "shld rax, rbx, cl", D_PLAIN, 8, EMU_FL_AF, 1, -1) \
	X(shld_cl32, "shld eax, ebx, cl", D_PLAIN, 4, EMU_FL_AF, 1, -1) \
	X(shld_cl16, "shld ax, bx, cl", D_SH16, 2, EMU_FL_AF, 1, -1) \
	X(shld_i1, "shld rax, rbx, 1", D_PLAIN, 8, EMU_FL_AF, 1, 1) \
	X(shld_i7, "shld edx, ebx, 7", D_PLAIN, 4, EMU_FL_AF, 1, 7) \
	X(shld_m, "shld qword ptr [rsi], rbx, cl", D_PLAIN, 8, EMU_FL_AF, 1, -1) \
	X(shrd_cl64, "shrd rax, rbx, cl", D_PLAIN, 8, EMU_FL_AF, 1, -1) \
	X(shrd_cl32, "shrd eax, ebx, cl", D_PLAIN, 4, EMU_FL_AF, 1, -1) \
	X(shrd_cl16, "shrd ax, bx, cl", D_SH16, 2, EMU_FL_AF, 1, -1) \
	X(shrd_i1, "shrd eax, ebx, 1", D_PLAIN, 4, EMU_FL_AF, 1, 1) \
	X(shrd_i63, "shrd rax, rdx, 63", D_PLAIN, 8, EMU_FL_AF, 1, 63) \
	X(shrd_m32, "shrd dword ptr [rsi + 4], ebx, cl", D_PLAIN, 4, EMU_FL_AF, 1, -1) \
	X(popcnt64, "popcnt rax, rbx", D_PLAIN, 8, 0, 0, 0) \
	X(popcnt32, "popcnt eax, ebx", D_PLAIN, 4, 0, 0, 0) \
	X(popcnt16, "popcnt ax, bx", D_PLAIN, 2, 0, 0, 0) \
	X(popcnt_m, "popcnt rdx, qword ptr [rsi + 8]", D_PLAIN, 8, 0, 0, 0) \
	X(cx8, "cmpxchg8b qword ptr [rsi]", D_PLAIN, 8, 0, 0, 0) \
	X(cx8_eq, "cmpxchg8b qword ptr [rsi]", D_CAS_EQ, 8, 0, 0, 0) \
	X(lock_cx8_eq, "lock cmpxchg8b qword ptr [rsi]", D_CAS_EQ, 8, 0, 0, 0) \
	X(cx16, "cmpxchg16b xmmword ptr [rsi]", D_PLAIN, 16, 0, 0, 0) \
	X(cx16_eq, "lock cmpxchg16b xmmword ptr [rsi]", D_CAS_EQ, 16, 0, 0, 0) \
	X(xlat, "xlatb", D_PLAIN, 1, 0, 0, 0) \

#define DEMIT(id, text, k, sz, und, sh, ic) \
	".pushsection .rodata\n" \
	"dform_" #id ":\n" text "\n" \
	"dform_" #id "_end:\n" \
	".popsection\n"
__asm__(".intel_syntax noprefix\n" DFORMS(DEMIT) ".att_syntax prefix\n");

#define DDECL(id, text, k, sz, und, sh, ic) \
	extern const uint8_t dform_##id[] __attribute__((visibility("hidden"))); \
	extern const uint8_t dform_##id##_end[] __attribute__((visibility("hidden")));
DFORMS(DDECL)

#define DENTRY(id, text, k, sz, und, sh, ic) \
	{ .name = text, .start = dform_##id, .end = dform_##id##_end, \
	  .kind = k, .size = sz, .undef = und, .shift = sh, .imm_count = ic },
static const struct dform dforms[] = { DFORMS(DENTRY) };

static const uint64_t dedge[] = {
	0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 0x7f, 0x80, 0xff,
	0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
	0x100000000ull, 0x7fffffffffffffffull, 0x8000000000000000ull,
	0xffffffffffffffffull, 0x123456789abcdef0ull, 0xfedcba9876543210ull,
};
#define NR_DEDGE (sizeof(dedge) / sizeof(dedge[0]))

static void dfill(uint8_t *base, const struct dform *f,
		  const struct native_regs *in)
{
	uint8_t *data = base + (DDATA - TEST_BASE);

	memset(base, 0xcc, 0x1000);
	memcpy(base, f->start, (size_t)(f->end - f->start));
	for (int i = 0; i < 0x1000; i++)
		data[i] = (uint8_t)(i * 37 + 11);
	memcpy(data, &in->gpr[EMU_RAX], 8);
	memcpy(data + 8, &in->gpr[EMU_RBX], 8);
	if (f->kind == D_CAS_EQ) {
		if (f->size == 8) {
			uint64_t v = (uint32_t)in->gpr[EMU_RAX] |
				     (in->gpr[EMU_RDX] << 32);
			memcpy(data, &v, 8);
		} else {
			memcpy(data, &in->gpr[EMU_RAX], 8);
			memcpy(data + 8, &in->gpr[EMU_RDX], 8);
		}
	}
}

static int dreported;
#define print_message(...) \
	(dreported++ < 40 ? print_message(__VA_ARGS__) : (void)0)

static bool dcheck(uint8_t *host, const struct dform *f,
		   const struct native_regs *in)
{
	uint8_t *g = gm_ptr(&h->vm.mem, TEST_BASE, TEST_SIZE);
	struct native_regs nout;
	struct emu_cpu cpu;
	uint64_t undef = f->undef, count;
	bool skip_rax = false, skip_flags = false;
	int trapno, r;

	dfill(host, f, in);
	dfill(g, f, in);
	trapno = native_exec(in, &nout);

	cpu_setup(&cpu, 0, 3);
	memcpy(cpu.gpr, in->gpr, sizeof(cpu.gpr));
	emu_flags_set(&cpu, in->rflags);
	cpu.rip = DCODE;
	r = emu_step(&cpu);

	count = f->imm_count >= 0 ? (uint64_t)f->imm_count :
		in->gpr[EMU_RCX] & (f->size == 8 ? 63 : 31);
	if (f->shift && count != 1)
		undef |= EMU_FL_OF;
	if (f->kind == D_SH16 && count > 16)
		skip_rax = skip_flags = true;

	if (trapno != 3 || r != 0) {
		print_message("%s: native trap %d, emu %#x\n", f->name,
			      trapno, r);
		return false;
	}
	nout.rip -= 1;
	if (nout.rip != cpu.rip) {
		print_message("%s: rip %#lx vs %#lx\n", f->name,
			      (unsigned long)nout.rip, (unsigned long)cpu.rip);
		return false;
	}
	for (int i = 0; i < 16; i++) {
		if (i == EMU_RAX && skip_rax)
			continue;
		if (nout.gpr[i] != cpu.gpr[i]) {
			print_message("%s rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx: gpr%d %#lx vs %#lx\n",
				      f->name, (unsigned long)in->gpr[0],
				      (unsigned long)in->gpr[3],
				      (unsigned long)in->gpr[1],
				      (unsigned long)in->gpr[2], i,
				      (unsigned long)nout.gpr[i],
				      (unsigned long)cpu.gpr[i]);
			return false;
		}
	}
	if (!skip_flags &&
	    ((nout.rflags ^ emu_flags_get(&cpu)) & FL_STATUS & ~undef)) {
		print_message("%s rax=%#lx rbx=%#lx rcx=%#lx: flags %#lx vs %#lx\n",
			      f->name, (unsigned long)in->gpr[0],
			      (unsigned long)in->gpr[3],
			      (unsigned long)in->gpr[1],
			      (unsigned long)nout.rflags,
			      (unsigned long)emu_flags_get(&cpu));
		return false;
	}
	if (memcmp(host + (DDATA - TEST_BASE), g + (DDATA - TEST_BASE),
		   0x1000)) {
		print_message("%s: data memory differs\n", f->name);
		return false;
	}
	return true;
}

static void test_differential(void **state)
{
	uint8_t *host;
	unsigned long cases = 0, bad = 0;
	static const uint64_t pat = 0x0101010101010101ull;

	host = native_map(TEST_SIZE);
	if (!host)
		fail();
	native_catch_begin();

	for (size_t fi = 0; fi < sizeof(dforms) / sizeof(dforms[0]); fi++) {
		const struct dform *f = &dforms[fi];
		unsigned fbad = 0;

		for (size_t i = 0; i < NR_DEDGE; i++) {
			for (size_t j = 0; j < NR_DEDGE; j++) {
				for (int fl = 0; fl < 2; fl++) {
					struct native_regs in;

					for (int k = 0; k < 16; k++)
						in.gpr[k] = pat * (uint64_t)(k + 0x10);
					in.gpr[EMU_RAX] = dedge[i];
					in.gpr[EMU_RBX] = dedge[j];
					in.gpr[EMU_RCX] = dedge[j] ^ (fl ? 0x5a5a5a5a00000000ull : 0);
					in.gpr[EMU_RDX] = dedge[(i + j) % NR_DEDGE];
					in.gpr[EMU_RSI] = DDATA;
					in.gpr[EMU_RSP] = DDATA + 0x800;
					if (f->name[0] == 'x') /* xlatb */
						in.gpr[EMU_RBX] = DDATA;
					in.rip = DCODE;
					in.rflags = (fl ? FL_STATUS : 0) | 0x202;
					cases++;
					if (!dcheck(host, f, &in))
						fbad++;
				}
			}
		}
		if (fbad)
			print_message("%s: %u mismatches\n", f->name, fbad);
		bad += fbad;
	}
	native_catch_end();
	munmap(host, TEST_SIZE);
	dreported = 0;
	print_message("differential: %lu cases, %lu mismatches\n", cases, bad);
	assert_int_equal(bad, 0);
}

static int setup(void **state)
{
	h = harness_new(RAM);
	build_page_tables(&h->vm.mem);
	return bus_register(&h->vm.pio, 0x5000, 16, &iodev_ops, &dev, "iodev");
}

static int teardown(void **state)
{
	harness_free(h);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpuid_model),
		cmocka_unit_test(test_cpuid_topology),
		cmocka_unit_test(test_msr_round_trips),
		cmocka_unit_test(test_msr_faults),
		cmocka_unit_test(test_tsc_shared_monotonic),
		cmocka_unit_test(test_kvmclock),
		cmocka_unit_test(test_mov_cr),
		cmocka_unit_test(test_long_mode_activation),
		cmocka_unit_test(test_hlt),
		cmocka_unit_test(test_port_io),
		cmocka_unit_test(test_misc),
		cmocka_unit_test(test_cmpxchg16b_atomic),
		cmocka_unit_test(test_differential),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
