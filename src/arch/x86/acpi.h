/*
 * acpi.h - the ACPI tables of the PC board (not hardware-reduced): RSDP,
 * XSDT, RSDT, FADT, FACS, DSDT, MADT and optionally MCFG, written into guest
 * RAM at boot (ACPI 6.5 chapter 5, "ACPI Software Programming Model").
 *
 * Where things go (guest-physical, see arch/x86/boot.h):
 *   [BOOT_ACPI_ADDR, BOOT_RSDP_ADDR)   0xE0000-0xEFFFF: every table
 *   BOOT_RSDP_ADDR                     0xF0000: the RSDP, 16-byte aligned in
 *                                      the BIOS area, so OSPM's legacy scan
 *                                      of 0xE0000-0xFFFFF finds it too
 *
 * What the tables promise the guest, and so what the devices must do:
 *   - SMI_CMD = 0: the platform is always in ACPI mode.  PM1_CNT.SCI_EN must
 *     read as 1 from reset on (hw/acpi_pm).
 *   - \_S5 is Package {PC_ACPI_SLP_TYP_S5, PC_ACPI_SLP_TYP_S5, 0, 0}: OSPM
 *     powers off by writing PM1a_CNT with SLP_TYP (bits 12:10) =
 *     PC_ACPI_SLP_TYP_S5 and SLP_EN (bit 13) set, 16 bits wide.
 *   - The SCI is ISA IRQ PC_IRQ_SCI = GSI 9, level-triggered, active-high.
 *   - PWR_BUTTON is clear in the FADT flags: a fixed-feature power button
 *     exists (PM1 PWRBTN_STS/PWRBTN_EN, bit 8), for a graceful shutdown.
 *   - The PM timer is 24 bits (TMR_VAL_EXT clear), read as 32 bits.
 *   - RESET_REG is system I/O PC_RESET_PORT, byte access, RESET_VALUE 0x06.
 */
#ifndef KVMM_ARCH_X86_ACPI_H
#define KVMM_ARCH_X86_ACPI_H

#include <stdint.h>

#include "arch/x86/aml.h"
#include "core/memory.h"

#define ACPI_MAX_CPUS 255 /* APIC IDs 0..254: 0xFF is the broadcast ID and
			   * processor UID 0xFF means "all" in the MADT */
#define ACPI_OEM_ID       "KVMM  "   /* 6 bytes */
#define ACPI_OEM_TABLE_ID "KVMMVIRT" /* 8 bytes */
#define ACPI_CREATOR_ID   "KVMM"     /* 4 bytes */

/* One MCFG allocation (PCI Firmware Specification 3.x, "MCFG Table"): the
 * ECAM window for buses start_bus..end_bus of a PCI segment group.  base is
 * the address of bus 0's configuration space, even when start_bus > 0. */
struct acpi_mcfg_alloc {
	uint64_t base;     /* guest-physical, bytes */
	uint16_t segment;  /* PCI segment group */
	uint8_t start_bus;
	uint8_t end_bus;
};

struct acpi_config {
	int nr_cpus;              /* 1..ACPI_MAX_CPUS; APIC IDs and ACPI
				   * processor UIDs are 0..nr_cpus-1 */
	uint8_t ioapic_id;        /* I/O APIC ID (MADT §5.2.12.3) */
	uint32_t ioapic_addr;     /* guest-physical MMIO base */
	uint32_t ioapic_gsi_base; /* must be 0: ISA IRQs are GSIs 0-15 on it */

	/* Optional: called once after the board's own DSDT content, at the
	 * root scope of the DSDT, to append more (e.g. Scope(\_SB) {
	 * Device(PCI0) {...} }).  Must leave no construct open.  Returns 0 or
	 * -errno, which acpi_build() returns; errors in *b are caught too. */
	int (*dsdt_extra)(struct aml_buf *b, void *opaque);
	void *dsdt_extra_opaque;

	/* Optional: an MCFG with nr_mcfg allocations (none if 0). */
	const struct acpi_mcfg_alloc *mcfg;
	unsigned nr_mcfg;
};

/* Several DSDT generators behind the one dsdt_extra hook (the PCI root
 * bus, virtio-mmio devices, ...): set dsdt_extra = acpi_dsdt_chain_run and
 * dsdt_extra_opaque = the chain; they run in the order they were added. */
#define ACPI_DSDT_MAX_GENERATORS 8
typedef int acpi_dsdt_gen_fn(struct aml_buf *b, void *opaque);
struct acpi_dsdt_chain {
	unsigned n;
	struct {
		acpi_dsdt_gen_fn *fn;
		void *opaque;
	} gen[ACPI_DSDT_MAX_GENERATORS];
};

/* Append generator fn(b, opaque) to the chain (zero-initialised is
 * empty).  Returns 0 or -ENOSPC. */
int acpi_dsdt_chain_add(struct acpi_dsdt_chain *c, acpi_dsdt_gen_fn *fn,
			void *opaque);
/* A dsdt_extra hook: run every generator of the chain `opaque` in order;
 * returns 0 or the first error (later generators do not run). */
int acpi_dsdt_chain_run(struct aml_buf *b, void *opaque);

/* Fill *cfg for the PC board (hw/pc.h): nr_cpus vCPUs, the IOAPIC at
 * PC_IOAPIC_BASE with ID PC_IOAPIC_ID and GSI base 0, no extras. */
void acpi_config_pc(struct acpi_config *cfg, int nr_cpus);

/* Write every table into guest RAM (layout above) and store the RSDP's
 * guest-physical address (BOOT_RSDP_ADDR) in *rsdp_addr.  Tables are built
 * in a host buffer first, so on failure guest RAM is left untouched.  May be
 * called again (after a reset) to rewrite them.
 * Returns 0; -EINVAL for a bad cfg (nr_cpus out of range, a GSI base other
 * than 0, an MCFG allocation with start_bus > end_bus); -EFAULT if RAM does
 * not cover 0xE0000 up to the end of the RSDP; -ENOSPC if the tables do not
 * fit below BOOT_RSDP_ADDR; -ENOMEM; or the error of cfg->dsdt_extra or of
 * the AML it wrote (aml.h).
 * ACPI 6.5 §5.2.5 (RSDP), §5.2.7-5.2.12 (RSDT ... MADT). */
int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg,
	       uint64_t *rsdp_addr);

#endif
