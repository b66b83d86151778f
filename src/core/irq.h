/*
 * irq.h - how devices raise interrupts.
 *
 * Devices see GSIs (global system interrupts: ISA IRQ n is GSI n, except that
 * the PIT's IRQ0 arrives at IOAPIC pin 2 through the MADT override) and MSI
 * messages.  The interrupt controllers behind them belong to the accelerator:
 * KVM's in-kernel PIC/IOAPIC/LAPIC (KVM_IRQ_LINE, KVM_SIGNAL_MSI), the
 * software CPU's models, or the test harness, which records what was raised.
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

#endif
