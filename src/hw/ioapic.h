/*
 * ioapic.h - the board's I/O APIC (Intel 82093AA register interface,
 * version 0x20 with the EOI register), IRQ_MAX_GSI (24) input pins, at
 * PC_IOAPIC_BASE.  Used with the software CPU; under KVM the in-kernel
 * IOAPIC replaces it.  Design notes at the top of ioapic.c.
 */
#ifndef KVMM_HW_IOAPIC_H
#define KVMM_HW_IOAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/irq.h"

struct vm;
struct ioapic;

#define IOAPIC_MMIO_SIZE 0x1000 /* bytes claimed at PC_IOAPIC_BASE */
#define IOAPIC_VERSION   0x20   /* has the EOI register at 0x40 */
#define IOAPIC_PINS      IRQ_MAX_GSI

/* Deliver one interrupt as an MSI-format message, the way the IOAPIC puts
 * it on the APIC bus: addr = 0xfee00000 | dest << 12 | dest_mode << 2,
 * data = vector | delivery_mode << 8 | trigger << 15 (1 = level).  Called
 * WITHOUT the IOAPIC's lock held, so it may call ioapic_eoi() (e.g. a LAPIC
 * that cannot accept); messages from concurrent threads may arrive in
 * either order. */
typedef void ioapic_deliver_fn(void *opaque, uint64_t msi_addr,
			       uint32_t msi_data);

/*
 * Create the IOAPIC: allocates it, puts it on the board (vm_add_device,
 * name "ioapic") and claims [PC_IOAPIC_BASE, +IOAPIC_MMIO_SIZE) on
 * vm->mmio.  Its ID register starts as PC_IOAPIC_ID; every redirection
 * entry starts masked.  `deliver` (may be NULL: messages are dropped)
 * receives every interrupt; `opaque` must outlive the machine.
 *
 * The device belongs to the machine: vm_destroy() frees it; *out is a
 * borrowed pointer.  Returns 0, -ENOMEM, or -EBUSY/-ENOSPC from
 * bus_register/vm_add_device; on an error after vm_add_device the
 * half-built device stays on the board (inert) until vm_destroy().
 */
int ioapic_create(struct vm *vm, ioapic_deliver_fn *deliver, void *opaque,
		  struct ioapic **out);

/* Drive input pin `pin` (< IOAPIC_PINS; others ignored) to `level`: the
 * logical level (true = asserted) whatever polarity the guest programmed,
 * as KVM_IRQ_LINE takes it.  An edge-triggered entry delivers on each asserting
 * edge (lost while masked); a level-triggered entry delivers while the pin
 * is asserted, unmasked and its Remote IRR is clear, and sets Remote IRR.
 * Thread-safe.  82093AA datasheet, section 3.2.4 (redirection table). */
void ioapic_set_irq(struct ioapic *ioapic, unsigned pin, bool level);

/* End of interrupt for `vector`, from a LAPIC's EOI of a level-triggered
 * interrupt (or the guest's write to the EOI register): clears Remote IRR
 * of every level entry with that vector and delivers again those whose pin
 * is still asserted and unmasked.  Thread-safe; call it without holding a
 * lock the deliver callback takes. */
void ioapic_eoi(struct ioapic *ioapic, uint8_t vector);

#endif
