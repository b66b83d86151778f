/*
 * uart_16550.h - a National Semiconductor 16550A UART (the PC's COM ports).
 *
 * Eight byte-wide registers at a base port (PC_COM1_PORT = 0x3f8 for COM1),
 * one ISA interrupt line, output and input through a struct chardev.  See
 * uart_16550.c for the register model and how it maps to the datasheet
 * (NS PC16550D, "Universal Asynchronous Receiver/Transmitter with FIFOs").
 */
#ifndef KVMM_HW_UART_16550_H
#define KVMM_HW_UART_16550_H

#include <stdint.h>

struct vm;
struct chardev;
struct uart_16550;

/* Number of I/O ports a 16550A decodes. */
#define UART_16550_NR_PORTS 8

/* Put a 16550A on the board: claims ports [base, base + 8) on vm->pio,
 * drives ISA line `gsi` (< IRQ_MAX_GSI) through vm->irq, registers itself
 * with vm_add_device() (reset/save/load/destroy) and attaches itself as the
 * receiver of `cd`.
 *
 * `cd` may be NULL (nothing connected: output dropped, no input).  It is not
 * owned: the caller keeps it open for as long as the device exists and must
 * stop it delivering input (chardev_close) before vm_destroy() frees the
 * device.  *out (may be NULL) receives the device, owned by the machine.
 *
 * Returns 0, -EINVAL (gsi out of range), -ENOMEM, -ENOSPC (device table
 * full) or -EBUSY (ports taken).  After -EBUSY the inert device stays in the
 * machine's device list and vm_destroy() frees it; no port points at it. */
int uart_16550_create(struct vm *vm, uint16_t base, unsigned gsi,
		      struct chardev *cd, struct uart_16550 **out);

#endif
