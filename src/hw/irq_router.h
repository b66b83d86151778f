/*
 * irq_router.h - the software board's interrupt wiring: the irq_chip that
 * vm->irq points to when the PIC and IOAPIC are kvmm's own devices (the
 * software CPU) rather than KVM's in-kernel ones.
 *
 * Devices call irq_set_level(&vm->irq, gsi, ...) / irq_send_msi(); the
 * router turns a GSI into the PIC and IOAPIC input pins it is wired to on a
 * PC, and hands MSIs to the LAPICs.  Design notes at the top of
 * irq_router.c.
 */
#ifndef KVMM_HW_IRQ_ROUTER_H
#define KVMM_HW_IRQ_ROUTER_H

#include <stdint.h>

struct vm;
struct pic;
struct ioapic;
struct irq_router;

/* Receives MSI writes (address 0xfeexxxxx, data) for the LAPICs.  Called
 * from the raising device's thread, possibly with that device's lock held:
 * it must not call back into the raising device. */
typedef void irq_router_msi_fn(void *opaque, uint64_t addr, uint32_t data);

/*
 * Create the router and make it the machine's interrupt controller: sets
 * vm->irq.ops/opaque (replacing whatever was there) and puts the router on
 * the board (vm_add_device, name "irq-router"; it has no guest-visible
 * state, so no save/load).
 *
 * Wiring (a PC with the MADT's IRQ0 -> GSI 2 override):
 *   GSI 0 (ISA IRQ0, the PIT)  -> PIC IRQ 0 and IOAPIC pin 2
 *   GSI 1, 3-15                -> PIC IRQ n and IOAPIC pin n
 *   GSI 2                      -> nothing (the PIC cascade; no ISA device)
 *   GSI 16-23                  -> IOAPIC pin n
 * `pic` or `ioapic` may be NULL (that half is then not wired); both must
 * have been created on `vm` and are not owned by the router.  `msi` (may be
 * NULL: MSIs are dropped) gets every irq_send_msi(); `msi_opaque` must
 * outlive the machine.  vm_destroy() frees the router (and unhooks
 * vm->irq).  Returns 0, -ENOMEM or -ENOSPC (vm_add_device).
 */
int irq_router_create(struct vm *vm, struct pic *pic, struct ioapic *ioapic,
		      irq_router_msi_fn *msi, void *msi_opaque,
		      struct irq_router **out);

#endif
