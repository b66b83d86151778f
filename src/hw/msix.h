/*
 * msix.h - MSI-X for PCI devices: the capability, the vector table and the
 * pending bit array (PBA) in a BAR of their own, masking and pending.
 *
 * A device calls msix_notify(vector); when the vector or the whole function
 * is masked the PBA bit is set instead and the message goes out when the
 * guest unmasks it.  Messages reach the local APICs through an irqfd on an
 * MSI route where the accelerator offers them (KVM), else irq_send_msi()
 * (the software CPU's APIC bus, the harness; KVM_SIGNAL_MSI as KVM's
 * fallback).
 *
 * PCI Local Bus Specification 3.0, section 6.8.2 (MSI-X).
 */
#ifndef KVMM_HW_MSIX_H
#define KVMM_HW_MSIX_H

#include <stdbool.h>
#include <stdint.h>

struct pci_device;
struct state_buf;
struct state_reader;

#define MSIX_MAX_VECTORS 2048
#define MSIX_NO_VECTOR   0xffff   /* VIRTIO_MSI_NO_VECTOR, "none" */

/* Give `dev` `nr_vectors` (1..MSIX_MAX_VECTORS) MSI-X vectors: adds the
 * capability and a 32-bit memory BAR `bar` holding the table at offset 0
 * and the PBA after it (page aligned).  All vectors start masked, MSI-X
 * disabled.  Returns 0, -EINVAL, -ENOSPC or -ENOMEM. */
int msix_init(struct pci_device *dev, unsigned nr_vectors, int bar);

/* True when the guest enabled MSI-X (Message Control bit 15). */
bool msix_enabled(const struct pci_device *dev);

/* Signal `vector`: send its message, or set its pending bit while it or
 * the function is masked.  Out-of-range vectors (MSIX_NO_VECTOR included)
 * are ignored.  Returns false when MSI-X is disabled (nothing done: the
 * device interrupts through INTx instead), decided under the same lock as
 * the send, so an enable toggled concurrently cannot lose the interrupt
 * between a separate msix_enabled() check and the send.  Any thread. */
bool msix_notify(struct pci_device *dev, unsigned vector);

/* Back to power-on state (table masked, PBA clear, disabled). */
void msix_reset(struct pci_device *dev);

/* Save / restore table, PBA and control (core/state.h). */
void msix_save(const struct pci_device *dev, struct state_buf *b);
int msix_load(struct pci_device *dev, struct state_reader *r);

/* For pci.c: the guest wrote the device's configuration space; deliver
 * pending vectors if MSI-X is now enabled and the function unmasked, drop
 * the irqfd routes if it is now disabled.  Called without the device lock. */
void msix_cfg_written(struct pci_device *dev);

/* For pci.c: free the MSI-X state when the bus is destroyed. */
void msix_destroy(struct pci_device *dev);

#endif
