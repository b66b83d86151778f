/*
 * mmio.h - the virtio-mmio transport, version 2 (virtio 1.2 section 4.2).
 *
 * Each transport is a 512-byte register window on the MMIO bus plus one
 * level-triggered interrupt line, and carries one virtio device
 * (virtio.h).  Device n (0 <= n < VIRTIO_MMIO_MAX_DEVICES) sits at
 *
 *	VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_SIZE     (below the IOAPIC)
 *	GSI VIRTIO_MMIO_GSI_BASE + n % 8           (16..23)
 *
 * The GSIs are shared with PCI INTx (vm_irq_set_shared, source 32 + n) and
 * declared Level, ActiveLow, Shared in the DSDT.  Linux finds the devices
 * through ACPI: each is Device(VRnn) with _HID "LNRO0005" (drivers/virtio/
 * virtio_mmio.c's ACPI match), like QEMU's microvm; see virtio_mmio_dsdt().
 */
#ifndef KVMM_VIRTIO_MMIO_H
#define KVMM_VIRTIO_MMIO_H

#include <stdint.h>

struct vm;
struct virtio_dev;
struct aml_buf;

#define VIRTIO_MMIO_BASE        0xFEB00000u
#define VIRTIO_MMIO_SIZE        0x200u
#define VIRTIO_MMIO_GSI_BASE    16
#define VIRTIO_MMIO_MAX_DEVICES 32   /* shared-line sources 32..63 */

/* Register offsets (section 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_QUEUE_RESET         0x0c0
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC      0x74726976u /* "virt" */
#define VIRTIO_MMIO_VENDOR     0x4D4D564Bu /* "KVMM" */
#define VIRTIO_MMIO_INT_VRING  1u /* InterruptStatus: used buffers */
#define VIRTIO_MMIO_INT_CONFIG 2u /* InterruptStatus: config change / reset needed */

struct virtio_mmio;

/* Put virtio device `vd` (virtio_dev_init done) on the MMIO bus as
 * transport number `index`, at the address and GSI above, and on the
 * board's device list (reset, save/load, destroy; named "virtio-mmio.N").
 * Single-queue devices get their QueueNotify register as a kernel
 * doorbell (vm_ioeventfd) when the accelerator has them; otherwise, and
 * for several queues (the register is shared and the value written is the
 * queue index, which an ioeventfd without datamatch cannot tell apart),
 * the register write handler kicks the queue.
 * On success the transport owns vd: vm_destroy() calls
 * virtio_dev_destroy(vd) (and so vd->ops->destroy).  On failure the caller
 * still owns it.  Returns 0 (and *out if out is non-NULL), -EINVAL
 * (index >= VIRTIO_MMIO_MAX_DEVICES), -EBUSY (the range is taken),
 * -ENOSPC (no device slot), -ENOMEM. */
int virtio_mmio_create(struct vm *vm, struct virtio_dev *vd, unsigned index,
		       struct virtio_mmio **out);

/* Where transport `t` sits: guest-physical base (bytes) and GSI. */
uint64_t virtio_mmio_base(const struct virtio_mmio *t);
unsigned virtio_mmio_gsi(const struct virtio_mmio *t);

/* The transports to describe in the DSDT, in index order. */
struct virtio_mmio_list {
	struct virtio_mmio *const *devs;
	unsigned n;
};

/* A dsdt_extra generator (arch/x86/acpi.h; opaque: a struct
 * virtio_mmio_list).  Emits, at the DSDT root,
 *	Scope (\_SB) { Device (VRnn) { Name (_HID, "LNRO0005")
 *		Name (_UID, n) Name (_CCA, One)
 *		Name (_CRS, ResourceTemplate () {
 *			Memory32Fixed (ReadWrite, base, 0x200)
 *			Interrupt (ResourceConsumer, Level, ActiveLow, Shared) {gsi}
 *		}) } ... }
 * for each transport (nothing if the list is empty).  Returns 0 or the
 * AML encoder's error (-ENOMEM, -EINVAL).  So the transports must exist
 * before acpi_build() runs; a board with PCI too calls this and the PCI
 * generator from one dsdt_extra function (acpi_config has one slot). */
int virtio_mmio_dsdt(struct aml_buf *b, void *opaque);

#endif
