/*
 * fuzz_board.h - a PC board for the device fuzzers, and the interpreter
 * that plays a hostile guest on it.
 *
 * The board is the software-CPU flavour of hw/pc.c, built device by device
 * (so the fuzzer holds each device's pointer) on a tests/harness machine
 * with a fake clock: 8259 PICs, IOAPIC, the irq router (MSIs go to a
 * callback that counts them and, when the input asks, answers with an
 * immediate EOI like a LAPIC that cannot accept), 8254 PIT, COM1 on a
 * buffer chardev, i8042, CMOS RTC, fw_cfg with a few items and files,
 * POST port, debug exit, the PCI host bridge (with 0xCF9 inside it) and a
 * PCI function with a memory BAR, an I/O BAR, a capability and MSI-X, and
 * the ACPI PM block.  A fresh board is
 * built for every input, so runs are independent and reproducible.
 *
 * The interpreter reads the input as a sequence of operations; see
 * fuzz_board.c for the encoding.  After the run the board checks that every
 * device's saved state loads back and saves identically.
 */
#ifndef KVMM_TESTS_FUZZ_BOARD_H
#define KVMM_TESTS_FUZZ_BOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"

struct harness;
struct chardev;
struct pic;
struct ioapic;
struct pit;
struct uart_16550;
struct i8042;
struct cmos_rtc;
struct fw_cfg;
struct acpi_pm;
struct pci_bus;
struct pci_device;

struct fuzz_board {
	struct harness *h;
	struct chardev *cd;
	struct pic *pic;
	struct ioapic *ioapic;
	struct pit *pit;
	struct uart_16550 *uart;
	struct i8042 *kbc;
	struct cmos_rtc *rtc;
	struct fw_cfg *fw;
	struct acpi_pm *pm;
	struct pci_bus *pci;
	struct pci_device *pcidev;
	uint8_t bar_mem[64];      /* what the PCI function's BARs hold */

	uint64_t clock_budget_ns; /* virtual time the input may still spend */
	unsigned msi_count;
	unsigned eoi_depth;       /* nesting of EOIs from the MSI callback */
	bool eoi_on_deliver;      /* the "LAPIC" EOIs every message at once */
	bool intr;                /* last level of the PIC's INTR output */
};

/* RAM of the fuzz board: small, so a DMA that fills all of it stays cheap. */
#define FUZZ_BOARD_RAM (256 * 1024)

void fuzz_board_init(struct fuzz_board *b);
void fuzz_board_fini(struct fuzz_board *b);

/* Play the operations in `in` until it is exhausted. */
void fuzz_board_run(struct fuzz_board *b, struct fuzz_in *in);

/* Feed data[0..len) to device `idx`'s load() (idx taken modulo the
 * devices that have one).  Returns load()'s result; if it accepted the
 * state, its own save of that state must load back again (checked). */
int fuzz_board_load(struct fuzz_board *b, unsigned idx, const uint8_t *data,
		    size_t len);

/* For every device: save, load that back (must succeed), save again (must
 * be the same bytes).  Aborts through fuzz_fail() otherwise. */
void fuzz_board_check_roundtrip(struct fuzz_board *b);

#endif
