/*
 * irq.h - how devices raise interrupts.
 *
 * Devices see GSIs (global system interrupts: ISA IRQ n is GSI n, except that
 * the PIT's IRQ0 arrives at IOAPIC pin 2 through the MADT override) and MSI
 * messages.  The interrupt controllers behind them belong to the accelerator:
 * KVM's in-kernel PIC/IOAPIC/LAPIC (KVM_IRQ_LINE, KVM_SIGNAL_MSI), the
 * software CPU's models, or the test harness, which records what was raised.
 *
 * KERNEL-SIDE INJECTION (optional)
 * An accelerator with in-kernel interrupt controllers may also let a device
 * inject without a system call per interrupt into the accelerator: the
 * device owns an eventfd, binds it to a GSI (KVM_IRQFD), and a write to the
 * eventfd raises that GSI inside the kernel.  GSIs below IRQ_MAX_GSI are the
 * IOAPIC/PIC pins; GSIs from IRQ_MAX_GSI up are MSI routes the device asks
 * for (KVM_SET_GSI_ROUTING), each carrying one (address, data) message.
 * The five ops come as a set: all present (irq_has_irqfd()) or all NULL, as
 * for the software CPU and the test harness, whose devices keep using
 * set_level and send_msi.
 */
#ifndef KVMM_CORE_IRQ_H
#define KVMM_CORE_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#define IRQ_MAX_GSI 24 /* pins on the board's IOAPIC */

struct irq_ops {
	/* Drive input line `gsi` (< IRQ_MAX_GSI) to `level`.  Edge-triggered
	 * ISA devices make a rising edge by going 0 -> 1. */
	void (*set_level)(void *opaque, unsigned gsi, bool level);
	/* Deliver an MSI write (address 0xFEExxxxx, data) to the LAPICs. */
	void (*send_msi)(void *opaque, uint64_t addr, uint32_t data);

	/* Optional, all or none (see above).  Any thread. */
	/* Allocate a GSI >= IRQ_MAX_GSI whose route delivers the MSI (addr,
	 * data).  Returns the GSI, -ENOSPC when every route is taken, or the
	 * -errno of the routing update (KVM: api.rst, section
	 * KVM_SET_GSI_ROUTING). */
	int (*msi_route_add)(void *opaque, uint64_t addr, uint32_t data);
	/* Change the message of route `gsi` (from msi_route_add).  Returns 0,
	 * -EINVAL for a GSI that is not an allocated MSI route, or -errno of
	 * the routing update. */
	int (*msi_route_set)(void *opaque, unsigned gsi, uint64_t addr,
			     uint32_t data);
	/* Free route `gsi`; unbind its eventfds first.  Unknown GSIs are
	 * ignored. */
	void (*msi_route_del)(void *opaque, unsigned gsi);
	/* Bind eventfd `fd` to `gsi`: each write to it raises the GSI (an
	 * edge; for an MSI route, one message).  With `resample_fd` >= 0 the
	 * GSI must be an IOAPIC pin (< IRQ_MAX_GSI) and is level-triggered:
	 * the write asserts it, the guest's EOI deasserts it and signals
	 * `resample_fd`, and the device re-asserts if its line is still up.
	 * Returns 0 or -errno (KVM: api.rst, section KVM_IRQFD; -EBUSY if
	 * `fd` is already bound, -EINVAL for a bad GSI or resample on an MSI
	 * route).  kvmm's own INTx does not resample (see vm.h). */
	int (*irqfd_assign)(void *opaque, unsigned gsi, int fd, int resample_fd);
	/* Undo irqfd_assign.  Returns 0 or -errno; unbinding an fd that is
	 * not bound may succeed (KVM's does), so callers track bindings. */
	int (*irqfd_deassign)(void *opaque, unsigned gsi, int fd);
};

struct irq_chip {
	const struct irq_ops *ops;
	void *opaque;
};

/* Set line `gsi` to `level`.  Out-of-range GSIs are ignored (a device bug,
 * never guest-controlled).  Callable from any thread. */
void irq_set_level(const struct irq_chip *chip, unsigned gsi, bool level);

/* Raise and lower `gsi`: one edge for edge-triggered ISA lines. */
void irq_pulse(const struct irq_chip *chip, unsigned gsi);

/* Deliver one MSI message. */
void irq_send_msi(const struct irq_chip *chip, uint64_t addr, uint32_t data);

/* Whether the chip offers kernel-side injection (the optional ops). */
bool irq_has_irqfd(const struct irq_chip *chip);

/* The optional ops, or -ENOTSUP without them (irq_msi_route_del: nothing). */
int irq_msi_route_add(const struct irq_chip *chip, uint64_t addr,
		      uint32_t data);
int irq_msi_route_set(const struct irq_chip *chip, unsigned gsi,
		      uint64_t addr, uint32_t data);
void irq_msi_route_del(const struct irq_chip *chip, unsigned gsi);
int irq_irqfd_assign(const struct irq_chip *chip, unsigned gsi, int fd,
		     int resample_fd);
int irq_irqfd_deassign(const struct irq_chip *chip, unsigned gsi, int fd);

#endif
