/*
 * post_port.h - port 0x80, the POST diagnostic port.
 *
 * Firmware writes progress codes there; Linux writes it as an I/O delay
 * (outb to 0x80 around slow ISA accesses, arch/x86 io_delay).  The device
 * keeps the last byte written and reads it back.
 */
#ifndef KVMM_HW_POST_PORT_H
#define KVMM_HW_POST_PORT_H

#include <stdint.h>

struct vm;
struct post_port;

/* Claim port PC_POST_PORT (1 byte) on vm->pio and add the device to the
 * machine.  *out (may be NULL) receives the device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC or -EBUSY (the inert device then stays in the
 * device list until vm_destroy()). */
int post_port_create(struct vm *vm, struct post_port **out);

/* The last POST code the guest wrote (0 after reset), for diagnostics such
 * as `kvmm ctl` showing where firmware hung.  Callable from any thread. */
uint8_t post_port_last_code(struct post_port *p);

#endif
