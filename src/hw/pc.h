/*
 * pc.h - the board's address map: where each legacy device sits and which
 * interrupt it raises.  One table so that devices, ACPI tables and test
 * guests agree.  Values follow the IBM PC/AT and QEMU's PC machines, which is
 * what guests and their drivers assume.
 */
#ifndef KVMM_HW_PC_H
#define KVMM_HW_PC_H

/* Port I/O */
#define PC_PIC_MASTER_PORT 0x20   /* 8259 master, 2 ports */
#define PC_PIT_PORT        0x40   /* 8254, 4 ports */
#define PC_I8042_DATA_PORT 0x60
#define PC_PORT61          0x61   /* NMI status/control: PIT gate 2, speaker, OUT2 */
#define PC_I8042_CMD_PORT  0x64
#define PC_RTC_PORT        0x70   /* CMOS index, data at 0x71 */
#define PC_POST_PORT       0x80   /* POST code, used by Linux as an I/O delay */
#define PC_PIC_SLAVE_PORT  0xa0
#define PC_DEBUG_EXIT_PORT 0xf4   /* write v: kvmm exits with (v << 1) | 1 */
#define PC_ELCR_PORT       0x4d0  /* edge/level control, 2 ports */
#define PC_FW_CFG_PORT     0x510  /* selector 0x510 (16-bit), data 0x511 */
#define PC_FW_CFG_DMA_PORT 0x514  /* DMA address, big-endian, 8 bytes */
#define PC_ACPI_PM_BASE    0x600  /* PM1a_EVT_BLK (4), PM1a_CNT_BLK (2), PM_TMR (4) */
#define PC_ACPI_PM1A_EVT   (PC_ACPI_PM_BASE + 0x0)
#define PC_ACPI_PM1A_CNT   (PC_ACPI_PM_BASE + 0x4)
#define PC_ACPI_PM_TMR     (PC_ACPI_PM_BASE + 0x8)
#define PC_ACPI_GPE0_BLK   (PC_ACPI_PM_BASE + 0x20) /* 4 bytes: status, enable */
#define PC_ACPI_SLP_TYP_S5 0      /* SLP_TYP value for \_S5 in the DSDT */
#define PC_RESET_PORT      0xcf9  /* reset control register, value 0x06 resets */
#define PC_COM1_PORT       0x3f8

/* ISA IRQs (= GSIs, except IRQ0 which the MADT overrides to GSI 2) */
#define PC_IRQ_PIT   0
#define PC_IRQ_KBD   1
#define PC_IRQ_COM1  4
#define PC_IRQ_RTC   8
#define PC_IRQ_SCI   9
#define PC_IRQ_MOUSE 12
#define PC_GSI_PIT   2

/* MMIO */
#define PC_IOAPIC_BASE 0xfec00000u
#define PC_IOAPIC_ID   0          /* IOAPIC IDs are their own name space on modern CPUs */
#define PC_LAPIC_BASE  0xfee00000u

/* Frequencies */
#define PC_PIT_HZ     1193182u    /* 8254 input clock */
#define PC_PM_TMR_HZ  3579545u    /* ACPI PM timer */

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct chardev;

struct pc_board_config {
	struct chardev *console; /* COM1's backend; owned by the caller */
	bool in_kernel_irqchip;  /* KVM provides PIC, IOAPIC and PIT */
	/* Without in-kernel controllers: where the board's interrupt
	 * controllers deliver — the 8259's INTR line to the BSP's LINT0 and
	 * IOAPIC/MSI messages to the local APICs (the software CPU's). */
	void (*pic_intr)(void *opaque, bool level);
	void (*lapic_msi)(void *opaque, uint64_t addr, uint32_t data);
	void *cpu_opaque;
};

struct pci_bus;

/* Put the PC's devices on vm's buses: COM1, i8042, CMOS/RTC, fw_cfg, POST
 * port, debug exit, the PCI host bridge (with the 0xCF9 reset register
 * inside its CONFIG_ADDRESS port), the ACPI PM block, and, unless the
 * accelerator has them in kernel, the 8259 PICs, 8254 PIT and IOAPIC.
 * vm->irq must be set unless the board provides the interrupt controllers.
 * *pci (if pci is not NULL) receives the PCI root bus, owned by the
 * machine, for PCI devices and the ACPI tables (pci_acpi_dsdt).
 * Returns 0 or -errno after logging which device failed. */
int pc_board_create(struct vm *vm, const struct pc_board_config *cfg,
		    struct pci_bus **pci);

#endif
