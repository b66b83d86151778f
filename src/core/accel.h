/*
 * accel.h - what an accelerator is, seen from the machine.
 *
 * An accelerator owns the vCPUs and the interrupt controllers they need: it
 * runs guest code (KVM_RUN threads, or the software CPU) and turns the guest's
 * port and MMIO accesses into bus_read()/bus_write() on the machine's buses.
 * It sets vm->irq so devices can raise interrupts, and it stops every vCPU
 * before executing another guest instruction once vm_stopping() is true.
 */
#ifndef KVMM_CORE_ACCEL_H
#define KVMM_CORE_ACCEL_H

#include <stdbool.h>

struct vm;
struct x86_boot_regs;

struct accel_ops {
	const char *name; /* "kvm", "emu" */
	/* Prepare vCPUs (vm->nr_cpus) with the BSP at `regs`; set vm->irq.
	 * `*in_kernel_irqchip` says whether the board must leave the PIC,
	 * IOAPIC and PIT to the accelerator.  Returns 0 or -errno after
	 * logging one line naming the problem. */
	int (*create)(struct vm *vm, const struct x86_boot_regs *regs,
		      void **state, bool *in_kernel_irqchip);
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

#endif
