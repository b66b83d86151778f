/*
 * acpi_pm.h - the ACPI fixed-hardware power management block: PM1a event
 * and control registers, the PM timer and GPE0, at PC_ACPI_PM_BASE.
 *
 * kvmm always provides it, under KVM as well as on the software CPU (KVM
 * has no in-kernel PM block).  The FADT (arch/x86) must describe exactly
 * this layout: PM1a_EVT_BLK = PC_ACPI_PM1A_EVT (4 bytes), PM1a_CNT_BLK =
 * PC_ACPI_PM1A_CNT (2), PM_TMR_BLK = PC_ACPI_PM_TMR (4, 24-bit: FADT flag
 * TMR_VAL_EXT clear), GPE0_BLK = PC_ACPI_GPE0_BLK (4), SCI_INT =
 * PC_IRQ_SCI, SMI_CMD = 0 (ACPI always enabled), and \_S5 = {
 * PC_ACPI_SLP_TYP_S5 } in the DSDT.  Design notes at the top of acpi_pm.c.
 */
#ifndef KVMM_HW_ACPI_PM_H
#define KVMM_HW_ACPI_PM_H

struct vm;
struct acpi_pm;

/* PM1 status / enable bits (ACPI 6.4, 4.8.4.1, tables 4.11-4.12) */
#define ACPI_PM1_TMR        (1u << 0)  /* TMR_STS / TMR_EN */
#define ACPI_PM1_BM_STS     (1u << 4)
#define ACPI_PM1_GBL        (1u << 5)  /* GBL_STS / GBL_EN */
#define ACPI_PM1_PWRBTN     (1u << 8)  /* PWRBTN_STS / PWRBTN_EN */
#define ACPI_PM1_SLPBTN     (1u << 9)
#define ACPI_PM1_RTC        (1u << 10)
#define ACPI_PM1_WAK_STS    (1u << 15)
/* PM1 control bits (ACPI 6.4, 4.8.4.2.1, table 4.13) */
#define ACPI_PM1_SCI_EN     (1u << 0)
#define ACPI_PM1_BM_RLD     (1u << 1)
#define ACPI_PM1_GBL_RLS    (1u << 2)
#define ACPI_PM1_SLP_TYP_SHIFT 10      /* 3 bits */
#define ACPI_PM1_SLP_EN     (1u << 13)

/*
 * Create the PM block: allocates it, puts it on the board (vm_add_device,
 * name "acpi-pm") and claims [PC_ACPI_PM_BASE, +12) and
 * [PC_ACPI_GPE0_BLK, +4) on vm->pio.  The SCI is ISA IRQ PC_IRQ_SCI,
 * level-triggered, active high, raised through vm->irq.  The PM timer
 * counts vm_clock_ns() at PC_PM_TMR_HZ (3.579545 MHz).
 *
 * The device belongs to the machine: vm_destroy() frees it; *out is a
 * borrowed pointer for acpi_pm_power_button() / acpi_pm_gpe_raise().
 * Returns 0, -ENOMEM, or -EBUSY/-ENOSPC from bus_register/vm_add_device;
 * on an error after vm_add_device the half-built device stays on the board
 * (inert) until vm_destroy().
 */
int acpi_pm_create(struct vm *vm, struct acpi_pm **out);

/* Press the power button: sets PWRBTN_STS, which raises the SCI if the
 * guest enabled PWRBTN_EN (an ACPI guest then shuts down cleanly; see
 * `kvmm ctl shutdown`).  Thread-safe. */
void acpi_pm_power_button(struct acpi_pm *pm);

/* Set general-purpose event status bit `bit` (0-15) in GPE0_STS; raises
 * the SCI if that GPE is enabled.  For future event sources (hotplug);
 * bit >= 16 is ignored.  Thread-safe. */
void acpi_pm_gpe_raise(struct acpi_pm *pm, unsigned bit);

#endif
