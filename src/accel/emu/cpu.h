/*
 * cpu.h - the software CPU's architectural state and the memory-access
 * interface its executor uses.
 *
 * One `struct emu_cpu` per vCPU, owned by the vCPU's thread; nothing in it
 * is shared except guest RAM (through `mem`) and the buses, which are
 * read-only after the machine is built.
 *
 * Return convention of everything that executes guest code or touches guest
 * memory: 0 on success, a positive EMU_EXC(vector) when the instruction must
 * raise an architectural exception (the error code and, for #PF, the
 * faulting address are in cpu->exc), or -errno when kvmm itself failed.  A
 * faulting instruction leaves the architectural state as it was before the
 * instruction (fault semantics, Intel SDM Vol. 3A 6.5), so the caller can
 * deliver the exception with RIP pointing at the instruction.
 *
 * RFLAGS is kept "lazily" (see flags.c): the six status flags CF, PF, AF,
 * ZF, SF and OF are described by `lf` (the last flag-setting operation, its
 * operands and result) unless lf.op == EMU_LF_NONE, in which case they are
 * the bits in `rflags`.  All other RFLAGS bits always live in `rflags`.
 * Read RFLAGS with emu_flags_get(), write it with emu_flags_set().
 */
#ifndef KVMM_ACCEL_EMU_CPU_H
#define KVMM_ACCEL_EMU_CPU_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;
struct bus;
struct vm;
struct lapic;
struct emu_blocks;
struct emu_code_map;

/* General-purpose registers, in the encoding order of the ModRM/REX fields. */
enum emu_gpr {
	EMU_RAX, EMU_RCX, EMU_RDX, EMU_RBX, EMU_RSP, EMU_RBP, EMU_RSI, EMU_RDI,
	EMU_R8, EMU_R9, EMU_R10, EMU_R11, EMU_R12, EMU_R13, EMU_R14, EMU_R15,
	EMU_NR_GPRS
};

/* Segment registers, in the encoding order of the sreg field. */
enum emu_seg {
	EMU_SEG_ES, EMU_SEG_CS, EMU_SEG_SS, EMU_SEG_DS, EMU_SEG_FS, EMU_SEG_GS,
	EMU_NR_SEGS
};

/* RFLAGS bits (SDM Vol. 1 3.4.3). */
#define EMU_FL_CF   (1ull << 0)
#define EMU_FL_FIXED (1ull << 1) /* always 1 */
#define EMU_FL_PF   (1ull << 2)
#define EMU_FL_AF   (1ull << 4)
#define EMU_FL_ZF   (1ull << 6)
#define EMU_FL_SF   (1ull << 7)
#define EMU_FL_TF   (1ull << 8)
#define EMU_FL_IF   (1ull << 9)
#define EMU_FL_DF   (1ull << 10)
#define EMU_FL_OF   (1ull << 11)
#define EMU_FL_IOPL (3ull << 12)
#define EMU_FL_NT   (1ull << 14)
#define EMU_FL_RF   (1ull << 16)
#define EMU_FL_VM   (1ull << 17)
#define EMU_FL_AC   (1ull << 18)
#define EMU_FL_VIF  (1ull << 19)
#define EMU_FL_VIP  (1ull << 20)
#define EMU_FL_ID   (1ull << 21)
#define EMU_FL_STATUS (EMU_FL_CF | EMU_FL_PF | EMU_FL_AF | EMU_FL_ZF | \
		       EMU_FL_SF | EMU_FL_OF)

/* Control-register and EFER bits the executor looks at (SDM Vol. 3A 2.5). */
#define EMU_CR0_PE (1ull << 0)
#define EMU_CR0_WP (1ull << 16)
#define EMU_CR0_PG (1ull << 31)
#define EMU_CR4_PAE (1ull << 5)
#define EMU_EFER_SCE (1ull << 0)
#define EMU_EFER_LME (1ull << 8)
#define EMU_EFER_LMA (1ull << 10)
#define EMU_EFER_NXE (1ull << 11)

/* Exception vectors (SDM Vol. 3A 6.3.1). */
enum emu_vector {
	EMU_VEC_DE = 0, EMU_VEC_DB = 1, EMU_VEC_NMI = 2, EMU_VEC_BP = 3,
	EMU_VEC_OF = 4, EMU_VEC_BR = 5, EMU_VEC_UD = 6, EMU_VEC_NM = 7,
	EMU_VEC_DF = 8, EMU_VEC_TS = 10, EMU_VEC_NP = 11, EMU_VEC_SS = 12,
	EMU_VEC_GP = 13, EMU_VEC_PF = 14, EMU_VEC_MF = 16, EMU_VEC_AC = 17,
	EMU_VEC_MC = 18, EMU_VEC_XM = 19,
};

/* Positive return value meaning "raise exception `vec`". */
#define EMU_EXC(vec)     (0x100 | (vec))
#define EMU_IS_EXC(rc)   ((rc) >= 0x100 && (rc) < 0x120)
#define EMU_EXC_VEC(rc)  ((rc) & 0x1f)

/* #PF error-code bits (SDM Vol. 3A 4.7). */
#define EMU_PF_P    (1u << 0)
#define EMU_PF_W    (1u << 1)
#define EMU_PF_U    (1u << 2)
#define EMU_PF_RSVD (1u << 3)
#define EMU_PF_I    (1u << 4)

/* The processor mode, derived from CR0.PE, EFER.LMA, CS.L/D and RFLAGS.VM;
 * it selects the decoder's machine mode and the address arithmetic. */
enum emu_mode {
	EMU_MODE_REAL,     /* 16-bit, base = selector << 4 */
	EMU_MODE_PROT16,   /* protected mode, CS.D = 0 (also long-mode compat16) */
	EMU_MODE_PROT32,   /* protected mode, CS.D = 1 (also long-mode compat32) */
	EMU_MODE_LONG64,   /* EFER.LMA and CS.L */
};

/* A segment register: the visible selector and the descriptor cache the
 * processor loaded with it (SDM Vol. 3A 3.4.3). */
struct emu_segment {
	uint16_t sel;
	uint64_t base;   /* linear address */
	uint32_t limit;  /* bytes - 1, already scaled by G */
	/* Descriptor attributes in the layout of the descriptor's bits 40-55:
	 * type[3:0] S[4] DPL[6:5] P[7] AVL[12] L[13] D/B[14] G[15]. */
	uint16_t attr;
	bool unusable;   /* loaded with a null selector (protected mode) */
};

#define EMU_SEG_ATTR_TYPE(a) ((a) & 0xf)
#define EMU_SEG_ATTR_S   (1u << 4)
#define EMU_SEG_ATTR_P   (1u << 7)
#define EMU_SEG_ATTR_L   (1u << 13)
#define EMU_SEG_ATTR_DB  (1u << 14)
#define EMU_SEG_ATTR_G   (1u << 15)

/* GDTR / IDTR (SDM Vol. 3A 2.4). */
struct emu_dtable {
	uint64_t base;
	uint16_t limit;
};

/* Operation kinds of the lazy flags (flags.c says how each computes the
 * six status flags). */
enum emu_lf_op {
	EMU_LF_NONE = 0, /* status flags are the bits in rflags */
	EMU_LF_ADD,      /* res = src1 + src2 */
	EMU_LF_ADC,      /* res = src1 + src2 + aux (carry in) */
	EMU_LF_SUB,      /* res = src1 - src2 (also CMP, NEG with src1 = 0) */
	EMU_LF_SBB,      /* res = src1 - src2 - aux (borrow in) */
	EMU_LF_LOGIC,    /* AND/OR/XOR/TEST: CF = OF = AF = 0 */
	EMU_LF_INC,      /* res = src1 + 1, CF = aux (kept) */
	EMU_LF_DEC,      /* res = src1 - 1, CF = aux (kept) */
	EMU_LF_SHL,      /* res = src1 << src2, src2 in 1..63 */
	EMU_LF_SHR,      /* res = src1 >> src2 */
	EMU_LF_SAR,      /* res = (signed)src1 >> src2 */
	EMU_LF_MUL,      /* CF = OF = aux; SF, ZF, PF from res */
	EMU_LF_ROT,      /* ROL/ROR: CF = aux bit 0, OF = aux bit 1; PF, AF,
			  * ZF, SF those of lf_prev (the record before the
			  * first of a run of rotates) */
};

struct emu_lazy_flags {
	uint8_t op;      /* enum emu_lf_op */
	uint8_t size;    /* operand size in bytes: 1, 2, 4, 8 */
	uint64_t res, src1, src2, aux;
};

/* The exception an instruction raised (valid when it returned EMU_EXC). */
struct emu_exception {
	uint8_t vector;
	bool has_error;
	uint32_t error_code;
	uint64_t cr2;    /* #PF: the faulting linear address */
};

/* MSRs the software CPU implements (SDM Vol. 4 table 2-2). */
struct emu_msrs {
	uint64_t efer;            /* 0xC0000080 */
	uint64_t star;            /* 0xC0000081 */
	uint64_t lstar;           /* 0xC0000082 */
	uint64_t cstar;           /* 0xC0000083 */
	uint64_t sfmask;          /* 0xC0000084 (IA32_FMASK) */
	uint64_t kernel_gs_base;  /* 0xC0000102; FS/GS base live in seg[] */
	uint64_t tsc_aux;         /* 0xC0000103 */
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip; /* 0x174-0x176 */
	uint64_t pat;             /* 0x277 */
	uint64_t apic_base;       /* 0x1B */
	uint64_t misc_enable;     /* 0x1A0 */
	uint64_t tsc_offset;      /* TSC = host clock + offset (next step) */
};

/* Counters, per vCPU, read by `kvmm ctl` and the tests. */
struct emu_stats {
	uint64_t insns;        /* instructions retired */
	uint64_t ud;           /* #UD raised for unknown or unimplemented opcodes */
	uint64_t exceptions;   /* any exception returned by emu_step() */
};

struct emu_cpu {
	/* Integer state. */
	uint64_t gpr[EMU_NR_GPRS];
	uint64_t rip;
	uint64_t rflags;      /* see the lazy-flags note at the top */
	struct emu_lazy_flags lf;
	struct emu_lazy_flags lf_prev; /* meaningful while lf.op is ROT */

	/* System state. */
	struct emu_segment seg[EMU_NR_SEGS];
	struct emu_segment ldtr, tr;
	struct emu_dtable gdtr, idtr;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t dr[8];
	struct emu_msrs msr;
	enum emu_mode mode;   /* kept in step by emu_cpu_update_mode() */
	uint8_t cpl;          /* current privilege level, 0-3 */
	uint8_t maxphyaddr;   /* physical-address bits, 36-52 */

	/* SSE state (SDM Vol. 1 10.2).  x87 state comes with the x87 step. */
	_Alignas(16) uint8_t xmm[16][16];
	uint32_t mxcsr;

	/* The last exception raised. */
	struct emu_exception exc;
	struct emu_stats stats;

	/* The machine: guest RAM and the MMIO / port buses.  Not owned. */
	struct guest_mem *mem;
	const struct bus *mmio;
	const struct bus *pio;
	struct vm *vm;         /* for vm_clock_ns() and stop requests */
	struct lapic *lapic;   /* this vCPU's local APIC (accel/emu/lapic.h) */
	int index;             /* vCPU number = APIC ID */

	/* Event state (exceptions.c, accel.c). */
	bool int_shadow;       /* STI / MOV SS / POP SS: no interrupt before the next insn */
	bool nmi_blocked;      /* from NMI delivery until the next IRET */
	bool halted;           /* HLT retired; waiting for an interrupt */

	/* @MMU-FIELDS@ (mmu.c: TLB) */
	/* Software TLB (mmu.c, mmu.h): direct-mapped by linear page number.
	 * Zero (emu_cpu_init's memset) is the empty TLB. */
	struct emu_tlb {
		uint64_t key;     /* emu_mmu_key() the entries were made under */
		uint64_t cr3;     /* CR3 they were made under */
		bool has_global;  /* some entry has EMU_TLB_GLOBAL */
		bool has_large;   /* some entry came from a 2M/4M/1G page */
		bool disabled;    /* never fill (benchmarks: walk every access) */
		uint64_t misses;  /* page walks (and identity fills) */
		uint64_t flushes; /* full or non-global flushes */
		struct emu_tlb_entry {
			uint64_t tag;   /* linear page | 1; 0 = empty */
			uint8_t *host;  /* host address of the page if RAM, else NULL */
			uint64_t gpa;   /* guest-physical 4 KiB page */
			uint16_t perm;  /* EMU_TLB_* (mmu.h) */
			uint8_t shift;  /* log2 size of the page that mapped it */
			uint32_t code;  /* its page in the VM's code map + 1, or 0 */
		} e[512];
	} tlb;
	/* @SYS-FIELDS@ (exec_system.c, cpuid.c, msr.c, tsc.c) */
	int nr_cpus;                /* vCPUs in the VM, for CPUID topology (0 = 1) */
	uint64_t msr_unknown;       /* RDMSR/WRMSR of an unknown MSR (#GP) */
	uint32_t msr_last_unknown;  /* the last such MSR number */
	uint64_t msr_hwcr;          /* AMD HWCR 0xC0010015 */
	uint64_t msr_de_cfg;        /* AMD DE_CFG 0xC0011029 */
	uint64_t tsc_deadline;      /* IA32_TSC_DEADLINE when there is no LAPIC */
	uint64_t kvmclock_msr;      /* MSR_KVM_SYSTEM_TIME_NEW as written */
	uint64_t kvmclock_wall_msr; /* MSR_KVM_WALL_CLOCK_NEW as written */
	uint32_t kvmclock_version;  /* pvclock version counter (even) */
	/* @SEG-FIELDS@ (exceptions.c, exec_segment.c) */
	/* @SIMD-FIELDS@ (exec_sse.c, exec_x87.c) */
	/* x87 state (SDM Vol. 1 8.1).  st[] are the physical registers
	 * R0-R7 (ST(i) = R[(TOP + i) & 7]), held as the host's 80-bit long
	 * double; TOP lives in fsw bits 13:11; x87_valid bit i = R[i] not
	 * empty (the full tag word is derived when stored). */
	long double x87_st[8];
	uint16_t fcw, fsw, fop;
	uint8_t x87_valid;
	uint16_t fcs, fds;
	uint64_t fip, fdp;
	/* @ACCEL-FIELDS@ (accel.c, blocks.c) */
	struct emu_blocks *blocks;   /* decoded-block cache (blocks.h), or NULL */
	struct emu_code_map *code;   /* the VM's "holds code" pages, or NULL */
	/* While 64-bit blocks run (blocks.c): where the handlers left the
	 * last one (the first slot not retired), its page's generation word
	 * with the value the block was decoded under, and the chaining
	 * state. */
	const void *run_left;
	const _Atomic uint32_t *run_gen;
	uint32_t run_gen_want;
	struct emu_block *run_block;  /* the block running (or last run) */
	unsigned run_budget;          /* instructions chaining may still start */
	unsigned run_chained;         /* retired by blocks chained away from */
	unsigned run_xneed;           /* TLB bits an instruction fetch needs */
	unsigned run_links;           /* blocks entered through links */
};

/* Memory access kinds, for translation checks and #PF error codes. */
enum emu_access {
	EMU_ACC_READ,
	EMU_ACC_WRITE,
	EMU_ACC_EXEC,
};

/* Put `cpu` in the power-on state of SDM Vol. 3A 9.1.1 (real mode, CS:IP =
 * F000:FFF0) with guest RAM `mem` and the buses `mmio` / `pio` (either may
 * be NULL in tests: unclaimed accesses then read as all ones). */
void emu_cpu_init(struct emu_cpu *cpu, struct guest_mem *mem,
		  const struct bus *mmio, const struct bus *pio);

/* Recompute cpu->mode and cpu->cpl from CR0, EFER, CS and RFLAGS.VM.
 * Call after changing any of them directly. */
void emu_cpu_update_mode(struct emu_cpu *cpu);

/* Load a flat 64-bit long-mode state (CR0.PE|PG, CR4.PAE, EFER.LME|LMA,
 * CS.L, flat data segments, CPL 0) with RIP = rip, for tests and for the
 * 64-bit boot entry. */
void emu_cpu_set_long_mode(struct emu_cpu *cpu, uint64_t rip);

/* Record exception `vector` (with `error_code` when has_error) in cpu->exc
 * and return EMU_EXC(vector). */
int emu_raise(struct emu_cpu *cpu, unsigned vector, bool has_error,
	      uint32_t error_code);

/* Full RFLAGS, status flags computed from the lazy state (flags.c). */
uint64_t emu_flags_get(struct emu_cpu *cpu);

/* Replace RFLAGS (bit 1 forced to 1, reserved bits cleared); ends the lazy
 * state. */
void emu_flags_set(struct emu_cpu *cpu, uint64_t rflags);

/*
 * Guest memory accesses of the executor.  `seg:offset` is a logical address
 * (SDM Vol. 3A 3.1); segmentation (base, limits in legacy modes, canonical
 * checks in 64-bit mode: #GP(0), or #SS(0) for SS), then translation
 * (emu_translate), then the physical access: guest RAM through gm_ptr(),
 * anything else through the MMIO bus.  Accesses crossing a page are split
 * after both pages were translated, so a fault leaves memory untouched.
 * `size` is 1, 2, 4 or 8 bytes; values are little-endian in the low bits.
 * Return 0 or EMU_EXC(#GP/#SS/#PF).
 */
int emu_mem_read(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		 unsigned size, uint64_t *val);
int emu_mem_write(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		  unsigned size, uint64_t val);

/* Copy up to `len` instruction bytes from CS:offset into `buf`, stopping at
 * the first byte that cannot be fetched.  *got is the number copied.
 * Returns 0 when all `len` bytes were copied, else the exception that
 * stopped the fetch (the decoder raises it only if it needed those bytes). */
int emu_mem_fetch(struct emu_cpu *cpu, uint64_t offset, void *buf,
		  unsigned len, unsigned *got);

/* For locked read-modify-write: a host pointer to `size` bytes at
 * seg:offset, checked for write access, in *host when the bytes are guest
 * RAM and naturally aligned (so host __atomic builtins apply); *host = NULL
 * otherwise (MMIO, or a misaligned access: the caller falls back to a plain
 * read and write).  Returns 0 or EMU_EXC. */
int emu_mem_host_ptr(struct emu_cpu *cpu, enum emu_seg seg, uint64_t offset,
		     unsigned size, void **host);

/* Linear -> guest-physical translation of one byte's page (mmu.c): the
 * identity map with CR0.PG = 0, else a walk of the 32-bit, PAE or 4-level
 * tables with the permission checks of the CPL (CPL 3 = user access),
 * setting Accessed/Dirty, behind the vCPU's software TLB.  Returns 0 or
 * EMU_EXC(#PF) with cpu->exc.cr2 = lin and the SDM's error code. */
int emu_translate(struct emu_cpu *cpu, uint64_t lin, enum emu_access acc,
		  uint64_t *gpa);

#endif
