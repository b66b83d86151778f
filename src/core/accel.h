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
};

extern const struct accel_ops kvm_accel_ops;
extern const struct accel_ops emu_accel_ops;

#endif
