/*
 * pci.h - the modern virtio-pci transport (virtio 1.2 section 4.1): a
 * virtio device as a PCI function with its registers in a 64-bit memory
 * BAR described by vendor capabilities, and MSI-X.
 *
 * Layout (BAR 4, 16 KiB, one page per structure):
 *   0x0000  common configuration (struct virtio_pci_common_cfg, 4.1.4.3)
 *   0x1000  ISR status (4.1.4.5): read to clear, deasserts INTx
 *   0x2000  device-specific configuration (when the device has one)
 *   0x3000  notifications: queue q at 0x3000 + 4 * q
 *           (queue_notify_off = q, notify_off_multiplier = 4)
 * BAR 1 holds the MSI-X table and PBA: nr_queues + 1 vectors.  A
 * VIRTIO_PCI_CAP_PCI_CFG capability gives access to BAR 4 through
 * configuration space (4.1.4.9).
 */
#ifndef KVMM_VIRTIO_PCI_H
#define KVMM_VIRTIO_PCI_H

#include <stdint.h>

struct pci_bus;
struct virtio_dev;
struct virtio_pci;

/* virtio_pci_cap.cfg_type (4.1.4) */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5

#define VIRTIO_PCI_VENDOR_ID      0x1af4
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040 /* + virtio device ID (4.1.2.1) */

#define VIRTIO_PCI_BAR            4      /* common, ISR, device, notify */
#define VIRTIO_PCI_MSIX_BAR       1
#define VIRTIO_PCI_BAR_SIZE       0x4000
#define VIRTIO_PCI_COMMON_OFFSET  0x0000
#define VIRTIO_PCI_ISR_OFFSET     0x1000
#define VIRTIO_PCI_DEVICE_OFFSET  0x2000
#define VIRTIO_PCI_NOTIFY_OFFSET  0x3000
#define VIRTIO_PCI_NOTIFY_MULT    4

/* Put `vd` (initialised with virtio_dev_init, not yet connected to a
 * transport) on `bus` in the next free slot: PCI identity from the device
 * type (vendor 0x1af4, device 0x1040 + device ID, revision 1), the
 * capabilities, BARs and MSI-X, and a machine device ("virtio-pci") that
 * resets, saves and loads the transport together with vd.  From then on
 * the machine owns vd: vm_destroy() calls virtio_dev_destroy(vd).  *out
 * (may be NULL) receives the transport, owned by the machine.  Call before
 * the guest runs.  Returns 0, -ENOSPC (no slot / window / device left),
 * -EINVAL (vd already has a transport) or -ENOMEM; on error vd is still
 * the caller's. */
int virtio_pci_create(struct pci_bus *bus, struct virtio_dev *vd,
		      struct virtio_pci **out);

/* The transport's PCI function (for tests and diagnostics). */
struct pci_device *virtio_pci_device(const struct virtio_pci *vp);

#endif
