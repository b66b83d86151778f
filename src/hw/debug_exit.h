/*
 * debug_exit.h - the debug-exit port: a guest ends the VM with a status.
 *
 * Compatible with QEMU's isa-debug-exit (iobase=0xf4, iosize=4), which test
 * guests (kvm-unit-tests style, our own tests/guests) use to report pass or
 * fail: writing v stops the VM, and kvmm exits with status (v << 1) | 1.
 */
#ifndef KVMM_HW_DEBUG_EXIT_H
#define KVMM_HW_DEBUG_EXIT_H

#include <stdint.h>

struct vm;
struct debug_exit;

/* Ports the device decodes, starting at its base. */
#define DEBUG_EXIT_NR_PORTS 4

/* Claim ports [port, port + 4) on vm->pio (PC_DEBUG_EXIT_PORT on the PC
 * board) and add the device to the machine.  A 1-, 2- or 4-byte write of v
 * anywhere in the range calls vm_request_stop(vm, VM_STOP_DEBUG_EXIT, v),
 * with v masked to the access size and passed as written (the exit status
 * (v << 1) | 1 is computed by whoever ends the process; the OS truncates it
 * to 8 bits).  Only the first stop request counts (vm.h).  Reads return 0.
 * *out (may be NULL) receives the device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC (device table full) or -EBUSY (ports taken;
 * the inert device then stays in the device list until vm_destroy()). */
int debug_exit_create(struct vm *vm, uint16_t port, struct debug_exit **out);

#endif
