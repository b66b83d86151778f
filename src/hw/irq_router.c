/*
 * irq_router.c - GSIs to PIC and IOAPIC pins on the software board
 * (irq_router.h).
 *
 * WHY A ROUTER
 * Devices only know GSIs (core/irq.h); which controller pins a GSI reaches
 * is a property of the board.  Under KVM that wiring is the kernel's GSI
 * routing table (KVM_IRQ_LINE on the in-kernel PIC + IOAPIC); on the
 * software CPU it is this file.  Both implement the same PC wiring, the one
 * our ACPI MADT and MP table describe and QEMU's PC machines use:
 *
 *   - every ISA IRQ n (0-15) goes to both the 8259 pair (IRQ n) and the
 *     IOAPIC (pin n), because a guest may use either: the BIOS and early
 *     boot run on the PIC, Linux switches to the IOAPIC, and Linux's
 *     check_timer() probes IRQ0 through both paths;
 *   - except that ISA IRQ0 (the PIT) reaches IOAPIC pin 2, not pin 0: the
 *     MADT's interrupt source override IRQ0 -> GSI 2, as on real boards
 *     where the IOAPIC's pin 0 carries the 8259's INTR for virtual-wire
 *     mode;
 *   - GSI 2 is therefore never driven by a device: on the PIC it is the
 *     cascade input from the slave, on the IOAPIC it is the PIT;
 *   - GSIs 16-23 (PCI INTx) exist only on the IOAPIC.
 *
 * The router keeps no state of its own - levels live in the controllers,
 * which do their own edge detection - so it needs no lock and no
 * save/load.  MSIs go straight to the callback given at create (the
 * software CPU's LAPICs).
 *
 * The controllers' own outputs (PIC INTR, IOAPIC messages) do not pass
 * through here: they go to the LAPICs through the callbacks the board
 * gave pic_create() and ioapic_create().
 */
#include "hw/irq_router.h"

#include <errno.h>
#include <stdlib.h>

#include "core/vm.h"
#include "hw/ioapic.h"
#include "hw/pc.h"
#include "hw/pic.h"

#define ISA_IRQS 16

struct irq_router {
	struct vm *vm;
	struct pic *pic;
	struct ioapic *ioapic;
	irq_router_msi_fn *msi;
	void *msi_opaque;
};

static void router_set_level(void *opaque, unsigned gsi, bool level)
{
	struct irq_router *r = opaque;

	if (gsi == PC_GSI_PIT || gsi >= IRQ_MAX_GSI)
		return; /* the cascade: no device drives it */
	if (gsi < ISA_IRQS && r->pic)
		pic_set_irq(r->pic, gsi, level);
	if (r->ioapic)
		ioapic_set_irq(r->ioapic, gsi == PC_IRQ_PIT ? PC_GSI_PIT : gsi,
			       level);
}

static void router_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct irq_router *r = opaque;

	if (r->msi)
		r->msi(r->msi_opaque, addr, data);
}

static const struct irq_ops router_ops = {
	.set_level = router_set_level,
	.send_msi = router_send_msi,
};

static void router_destroy(void *opaque)
{
	struct irq_router *r = opaque;

	/* Devices destroyed after us must not reach freed memory. */
	if (r->vm->irq.opaque == r) {
		r->vm->irq.ops = NULL;
		r->vm->irq.opaque = NULL;
	}
	free(r);
}

static const struct vm_device_ops router_dev_ops = {
	.name = "irq-router",
	.destroy = router_destroy,
};

int irq_router_create(struct vm *vm, struct pic *pic, struct ioapic *ioapic,
		      irq_router_msi_fn *msi, void *msi_opaque,
		      struct irq_router **out)
{
	struct irq_router *r = calloc(1, sizeof(*r));
	int err;

	if (!r)
		return -ENOMEM;
	*r = (struct irq_router){ .vm = vm, .pic = pic, .ioapic = ioapic,
				  .msi = msi, .msi_opaque = msi_opaque };
	err = vm_add_device(vm, &router_dev_ops, r);
	if (err) {
		free(r);
		return err;
	}
	vm->irq.ops = &router_ops;
	vm->irq.opaque = r;
	*out = r;
	return 0;
}
