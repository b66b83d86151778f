/*
 * pc.c - the PC board: which devices a kvmm machine has and where they sit
 * (addresses in pc.h).
 *
 * Under KVM the kernel emulates the 8259 PICs, the IOAPIC and the 8254 PIT
 * (with port 0x61), so the board leaves them out and KVM's irqchip is
 * vm->irq.  Without in-kernel controllers (the software CPU, the harness)
 * the board's own PIC, IOAPIC and PIT are created first and the irq router
 * becomes vm->irq, before any device could raise a line.
 */
#include "hw/pc.h"

#include <string.h>

#include "core/vm.h"
#include "hw/acpi_pm.h"
#include "hw/cmos_rtc.h"
#include "hw/debug_exit.h"
#include "hw/fw_cfg.h"
#include "hw/i8042.h"
#include "hw/ioapic.h"
#include "hw/irq_router.h"
#include "hw/pci.h"
#include "hw/pic.h"
#include "hw/pit.h"
#include "hw/post_port.h"
#include "hw/uart_16550.h"
#include "util/log.h"

static int failed(const char *dev, int r)
{
	log_error("cannot create the %s: %s", dev, strerror(-r));
	return r;
}

static int create_interrupt_controllers(struct vm *vm,
					const struct pc_board_config *cfg)
{
	struct pic *pic;
	struct ioapic *ioapic;
	struct irq_router *router;
	struct pit *pit;
	int r;

	if ((r = pic_create(vm, cfg->pic_intr, cfg->cpu_opaque, &pic)))
		return failed("8259 PIC", r);
	if ((r = ioapic_create(vm, cfg->lapic_msi, cfg->cpu_opaque, &ioapic)))
		return failed("IOAPIC", r);
	if ((r = irq_router_create(vm, pic, ioapic, cfg->lapic_msi,
				   cfg->cpu_opaque, &router)))
		return failed("interrupt router", r);
	if ((r = pit_create(vm, &pit)))
		return failed("8254 PIT", r);
	return 0;
}

int pc_board_create(struct vm *vm, const struct pc_board_config *cfg,
		    struct pci_bus **pci)
{
	struct uart_16550 *com1;
	struct i8042 *kbc;
	struct cmos_rtc *rtc;
	struct fw_cfg *fw;
	struct post_port *post;
	struct debug_exit *dbg;
	struct pci_bus *bus;
	struct acpi_pm *pm;
	int r;

	if (!cfg->in_kernel_irqchip &&
	    (r = create_interrupt_controllers(vm, cfg)))
		return r;
	if ((r = uart_16550_create(vm, PC_COM1_PORT, PC_IRQ_COM1, cfg->console,
				   &com1)))
		return failed("COM1 UART", r);
	if ((r = i8042_create(vm, &kbc)))
		return failed("i8042 keyboard controller", r);
	if ((r = cmos_rtc_create(vm, vm->mem.ram_size, &rtc)))
		return failed("CMOS RTC", r);
	if ((r = fw_cfg_create(vm, &fw)))
		return failed("fw_cfg device", r);
	if ((r = post_port_create(vm, &post)))
		return failed("POST port", r);
	if ((r = debug_exit_create(vm, PC_DEBUG_EXIT_PORT, &dbg)))
		return failed("debug-exit port", r);
	/* The host bridge owns 0xCF8-0xCFF and forwards 0xCF9 to the reset
	 * control register it creates. */
	if ((r = pci_bus_create(vm, &bus)))
		return failed("PCI host bridge", r);
	if ((r = acpi_pm_create(vm, &pm)))
		return failed("ACPI PM block", r);
	if (pci)
		*pci = bus;
	return 0;
}
