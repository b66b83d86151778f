/*
 * pci.h - the PCI bus: one root bus (bus 0) behind a host bridge, devices
 * with a 4 KiB configuration space, BARs and capability lists.
 *
 * The host bridge answers configuration cycles through the legacy ports
 * 0xCF8 (CONFIG_ADDRESS) / 0xCFC-0xCFF (CONFIG_DATA) and through ECAM
 * (MMCONFIG) at PC_PCI_ECAM_BASE, described to the guest in the ACPI MCFG
 * and claimed by a PNP0C02 resource; the root bus itself is a PNP0A08 object
 * in the DSDT with _CRS windows and a _PRT that routes INTA-D of each slot to
 * IOAPIC pins 16-23 (level-triggered, active low), as firmware would
 * describe it.
 *
 * kvmm assigns every BAR an address inside the MMIO / I/O windows when the
 * device is registered, like firmware does, and Linux keeps them.  The guest
 * may still size and move BARs and turn decoding off in the command register:
 * the host bridge owns the whole windows on vm->mmio / vm->pio and forwards
 * each access to the BAR that currently decodes it, so the buses never change
 * after the machine is built.
 *
 * PCI Local Bus Specification 3.0 (configuration header, BARs, capability
 * list), PCI Express Base Specification 4.0 section 7.2.2 (ECAM), PCI
 * Firmware Specification 3.2 (MCFG).
 */
#ifndef KVMM_HW_PCI_H
#define KVMM_HW_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"

struct vm;
struct pci_bus;
struct msix;

#define PCI_SLOTS      32      /* devices on bus 0; function 0 of each only */
#define PCI_CFG_SIZE   4096    /* bytes of configuration space (PCIe) */
#define PCI_NUM_BARS   6

/* Configuration header offsets used outside pci.c */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_CAPABILITY_LIST 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN  0x3d

#define PCI_COMMAND_IO      0x1
#define PCI_COMMAND_MEMORY  0x2
#define PCI_COMMAND_MASTER  0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_INTERRUPT 0x08
#define PCI_STATUS_CAP_LIST  0x10

#define PCI_CAP_ID_MSIX    0x11
#define PCI_CAP_ID_VNDR    0x09

/* Address map (inside the memory.h MMIO hole, below the IOAPIC) */
#define PC_PCI_MMIO_BASE   0xc0000000ull  /* 32-bit BAR window */
#define PC_PCI_MMIO_SIZE   0x20000000ull  /* 512 MiB */
#define PC_PCI_ECAM_BASE   0xe0000000ull  /* MMCONFIG, bus 0 only */
#define PC_PCI_ECAM_SIZE   0x00100000ull  /* 1 MiB = 1 bus x 32 dev x 8 fn x 4 KiB */
#define PC_PCI_IO_BASE     0xc000u        /* I/O BAR window */
#define PC_PCI_IO_SIZE     0x4000u
#define PC_PCI_CONFIG_PORT 0xcf8          /* CONFIG_ADDRESS; data at 0xcfc */
#define PC_PCI_GSI_BASE    16             /* INTx of slot s, pin p (0=A): GSI 16 + (s + p) % 8 */

enum pci_bar_type {
	PCI_BAR_NONE = 0,
	PCI_BAR_MEM32,   /* 32-bit memory BAR, placed in the MMIO window */
	PCI_BAR_MEM64,   /* 64-bit memory BAR (uses bars i and i+1) */
	PCI_BAR_IO,      /* I/O BAR, placed in the I/O window */
};

/* What a device identifies itself with (configuration header type 0). */
struct pci_device_info {
	uint16_t vendor_id, device_id;
	uint16_t subsystem_vendor_id, subsystem_id;
	uint8_t revision;
	uint32_t class_code;  /* base class << 16 | subclass << 8 | prog-if */
	uint8_t irq_pin;      /* 0: no INTx, 1: INTA .. 4: INTD */
	const char *name;     /* for diagnostics, e.g. "virtio-blk-pci" */
};

/* Device-specific hooks; every member may be NULL. */
struct pci_device_ops {
	/* Called after every guest configuration write to the device, once
	 * the common code applied the write masks, with the value the guest
	 * wrote: for registers the common code does not interpret, e.g.
	 * virtio-pci's VIRTIO_PCI_CAP_PCI_CFG window.  `offset` in bytes,
	 * size 1/2/4.  Runs without the device lock (it may access the
	 * device's BARs, raise interrupts ...), serialized with every other
	 * configuration access on the bus. */
	void (*cfg_write)(void *opaque, uint32_t offset, unsigned size,
			  uint32_t value);
	/* Called after every configuration read of the device with what the
	 * common code read (`*value`, size 1/2/4 at `offset`); the device may
	 * replace it (virtio-pci fills pci_cfg_data from its BAR).  Runs
	 * without the device lock, like cfg_write. */
	void (*cfg_read)(void *opaque, uint32_t offset, unsigned size,
			 uint32_t *value);
	/* BAR `bar` now decodes at `addr`, or at nothing when addr is 0
	 * (decoding disabled, or the guest is sizing it).  For devices that
	 * registered ioeventfds inside the BAR. */
	void (*bar_moved)(void *opaque, int bar, uint64_t addr);
};

struct pci_bar {
	enum pci_bar_type type;
	uint64_t size;             /* bytes, power of two (>= 4096 for memory) */
	const struct bus_ops *ops; /* offset is relative to the BAR start */
	void *opaque;
	uint64_t addr;             /* where it decodes now; 0 = not decoding */
	uint64_t assigned;         /* the address pci_bar_add gave it, restored on reset */
};

struct pci_device {
	struct pci_bus *bus;
	int slot;                         /* device number on bus 0 */
	struct pci_device_info info;
	const struct pci_device_ops *ops;
	void *opaque;
	uint8_t cfg[PCI_CFG_SIZE];        /* current contents */
	uint8_t wmask[PCI_CFG_SIZE];      /* bits the guest may write */
	uint8_t w1cmask[PCI_CFG_SIZE];    /* write-1-to-clear bits */
	struct pci_bar bars[PCI_NUM_BARS];
	uint8_t cap_end;                  /* where the next capability goes */
	bool intx_level;                  /* the device's INTx line, before INTX_DISABLE */
	struct msix *msix;                /* NULL unless msix_init() was called */
	pthread_mutex_t lock;             /* config space and BAR state */
};

/* Create the host bridge (device 00.0, vendor 1b36 device 0008 like QEMU's
 * PCIe host) on vm: claims PC_PCI_CONFIG_PORT..+7 on vm->pio (taking over
 * the 0xCF9 reset register, hw/reset_cf9.h), the ECAM window and the BAR
 * windows on vm->mmio / vm->pio, and adds itself to the machine.  Must run
 * before any device registers.  Returns 0, -ENOMEM, -EBUSY or -ENOSPC. */
int pci_bus_create(struct vm *vm, struct pci_bus **out);

/* Add a device in the next free slot (slots are taken in call order, so
 * guests enumerate devices in command-line order).  `info` is copied; ops
 * and opaque must outlive the bus.  The device is freed with the bus.
 * Returns 0, -ENOSPC (no slot left), -EINVAL (irq_pin > 4) or -ENOMEM. */
int pci_device_add(struct pci_bus *bus, const struct pci_device_info *info,
		   const struct pci_device_ops *ops, void *opaque,
		   struct pci_device **out);

/* Give device `dev` BAR `bar` (0-5; a MEM64 BAR also uses bar + 1) of
 * `size` bytes (a power of two, at least 4096 for memory BARs, 4 for I/O)
 * backed by ops/opaque, and assign it an address in the window.  Call
 * before the guest runs.  Returns 0, -EINVAL or -ENOSPC (window full). */
int pci_bar_add(struct pci_device *dev, int bar, enum pci_bar_type type,
		uint64_t size, const struct bus_ops *ops, void *opaque);

/* Append a capability with ID `cap_id` whose body (everything after the
 * ID and next-pointer bytes) is `len` bytes at `body`, guest read-only
 * unless the caller sets wmask bits afterwards.  *offset receives its
 * configuration-space offset.  Returns 0 or -ENOSPC (past 0x100). */
int pci_cap_add(struct pci_device *dev, uint8_t cap_id, const void *body,
		size_t len, uint8_t *offset);

/* Drive the device's INTx line (level-triggered; the guest sees it unless
 * COMMAND.INTX_DISABLE is set).  Updates STATUS.INTERRUPT.  Any thread. */
void pci_set_irq(struct pci_device *dev, bool level);

/* The GSI the device's INTx pin reaches (PC_PCI_GSI_BASE + swizzle). */
unsigned pci_intx_gsi(const struct pci_device *dev);

/* Describe the root bus in the DSDT: PNP0A08/PNP0A03 with _CRS windows,
 * _PRT for every slot, and a PNP0C02 claiming ECAM.  Signature matches
 * acpi_config.dsdt_extra (arch/x86/acpi.h); opaque is the pci_bus. */
struct aml_buf;
int pci_acpi_dsdt(struct aml_buf *b, void *opaque);

/* The MCFG allocation that goes with pci_acpi_dsdt(): ECAM at
 * PC_PCI_ECAM_BASE for segment 0, bus 0 (PCI Firmware Spec 3.2 4.1.2). */
struct acpi_mcfg_alloc;
void pci_acpi_mcfg(struct acpi_mcfg_alloc *alloc);

/* The machine the bus sits on (for devices that raise MSIs or register
 * ioeventfds). */
struct vm *pci_bus_vm(const struct pci_bus *bus);

#endif
