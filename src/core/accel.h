/*
 * accel.h - what an accelerator is, seen from the machine.
 *
 * An accelerator owns the vCPUs and the interrupt controllers they need: it
 * runs guest code (KVM_RUN threads, or the software CPU) and turns the guest's
 * port and MMIO accesses into bus_read()/bus_write() on the machine's buses.
 * It sets vm->irq so devices can raise interrupts (or, without an in-kernel
 * irqchip, lets the board's own controllers do it: board_config() and
 * board_ready() below), and it stops every vCPU before executing another
 * guest instruction once vm_stopping() is true.
 */
#ifndef KVMM_CORE_ACCEL_H
#define KVMM_CORE_ACCEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct vm;
struct x86_boot_regs;
struct pc_board_config;

struct accel_ops {
	const char *name; /* "kvm", "emu" */
	/* Prepare vCPUs (vm->nr_cpus) with the BSP at `regs`; set vm->irq.
	 * `*in_kernel_irqchip` says whether the board must leave the PIC,
	 * IOAPIC and PIT to the accelerator.  Returns 0 or -errno after
	 * logging one line naming the problem. */
	int (*create)(struct vm *vm, const struct x86_boot_regs *regs,
		      void **state, bool *in_kernel_irqchip);
	/* Optional; only for accelerators without an in-kernel irqchip:
	 * fill in where the board's own interrupt controllers deliver
	 * (cfg->pic_intr, cfg->lapic_msi, cfg->cpu_opaque) before
	 * pc_board_create().  May be NULL. */
	void (*board_config)(void *state, struct pc_board_config *cfg);
	/* Optional: the board exists (vm->devices); find the devices the
	 * accelerator calls back (e.g. "ioapic" for EOIs, "pic" for INTA).
	 * Called before start().  Returns 0 or -errno after logging. */
	int (*board_ready)(void *state, struct vm *vm);
	/* Start the vCPU threads.  Returns 0 or -errno. */
	int (*start)(void *state);
	/* After vm_request_stop(): make every vCPU leave guest mode and wait
	 * for the threads to end. */
	void (*stop)(void *state);
	/* Free everything create() made.  Called after stop(), or instead of
	 * start()/stop() when building the machine failed. */
	void (*destroy)(void *state);
	/* Optional: the debugger interface (GDB stub, traces); NULL when the
	 * accelerator has none. */
	const struct accel_debug_ops *debug;
};

/*
 * Debugging (src/debug/gdbstub.c, --trace).  All-stop model: the debugger
 * pauses every vCPU, looks at and changes their state, then resumes all
 * of them (or single-steps one while the others stay paused).  A vCPU
 * that hits a breakpoint or finishes a step parks itself and reports
 * through accel_debug_client.stopped(); the debugger then pauses the rest.
 *
 * Threads: every op but stopped() is called from the debugger's own
 * thread.  get/set_regs, translate and the breakpoint calls are only made
 * while every vCPU is paused (after pause_all() returned 0).
 * Addresses of breakpoints and translate() are linear (CS base + RIP for
 * code; the same as virtual addresses with flat segments).
 */

/* The registers a debugger sees, in GDB's amd64 order. */
enum { DBG_RAX, DBG_RBX, DBG_RCX, DBG_RDX, DBG_RSI, DBG_RDI, DBG_RBP, DBG_RSP,
       DBG_R8, DBG_R9, DBG_R10, DBG_R11, DBG_R12, DBG_R13, DBG_R14, DBG_R15 };
enum { DBG_CS, DBG_SS, DBG_DS, DBG_ES, DBG_FS, DBG_GS };

struct x86_regs_dbg {
	uint64_t gpr[16];   /* DBG_RAX.. in GDB order */
	uint64_t rip, rflags;
	uint16_t seg[6];    /* selectors, DBG_CS.. in GDB order */
	uint64_t seg_base[6];
	uint64_t cr0, cr2, cr3, cr4, efer;
	uint8_t xmm[16][16];
	uint32_t mxcsr;
};

enum accel_bp_type {
	ACCEL_BP_SW = 0,   /* GDB Z0: software breakpoint */
	ACCEL_BP_HW = 1,   /* GDB Z1: hardware breakpoint */
};

/* What the debugger is told (any vCPU thread). */
struct accel_debug_client {
	/* vCPU `cpu` parked itself after a breakpoint (sig = 5, SIGTRAP)
	 * or a completed single step. */
	void (*stopped)(void *opaque, int cpu, int sig);
	void *opaque;
};

/* What --trace asks for (bits). */
#define ACCEL_TRACE_INSN 0x1u  /* every executed instruction */
#define ACCEL_TRACE_INT  0x2u  /* external interrupts and NMIs delivered */
#define ACCEL_TRACE_EXC  0x4u  /* exceptions delivered */

struct accel_debug_ops {
	/* A debugger attached (client != NULL) or detached (NULL: every
	 * breakpoint is dropped and the vCPUs are resumed). */
	void (*attach)(void *state, const struct accel_debug_client *client);
	/* Stop every vCPU outside guest mode and wait until they are.  May be
	 * called before start() (the vCPUs then park before their first
	 * instruction).  Returns 0, or -ESHUTDOWN when the VM is stopping. */
	int (*pause_all)(void *state);
	/* Resume: every vCPU when step_cpu < 0; else only vCPU step_cpu, for
	 * one instruction, after which it reports stopped(). */
	void (*resume)(void *state, int step_cpu);
	int (*get_regs)(void *state, int cpu, struct x86_regs_dbg *regs);
	int (*set_regs)(void *state, int cpu, const struct x86_regs_dbg *regs);
	/* Linear -> guest-physical through vCPU `cpu`'s page tables.
	 * Returns 0 or -EFAULT. */
	int (*translate)(void *state, int cpu, uint64_t lin, uint64_t *gpa);
	/* Returns 0, -ENOSPC (no slot left) or -ENOTSUP. */
	int (*set_breakpoint)(void *state, enum accel_bp_type type, uint64_t addr);
	int (*clear_breakpoint)(void *state, enum accel_bp_type type, uint64_t addr);
	/* Optional: trace ACCEL_TRACE_* events as text lines to `f` (mask 0
	 * turns it off).  Called before start().  Returns 0 or -ENOTSUP
	 * for the parts the accelerator cannot trace. */
	int (*set_trace)(void *state, unsigned mask, FILE *f);
};

extern const struct accel_ops kvm_accel_ops;
extern const struct accel_ops emu_accel_ops;

#endif
