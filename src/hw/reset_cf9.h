/*
 * reset_cf9.h - the chipset's Reset Control Register at port 0xCF9.
 *
 * Intel ICH/PCH (and QEMU's PIIX3/Q35) decode a byte access at 0xCF9 as
 * RST_CNT: bit 1 SYS_RST (hard vs soft reset), bit 2 RST_CPU (a 0 -> 1
 * transition resets), bit 3 FULL_RST.  Linux's reboot=pci, the ACPI FADT
 * reset register of many firmwares, and SeaBIOS use it.
 */
#ifndef KVMM_HW_RESET_CF9_H
#define KVMM_HW_RESET_CF9_H

#include <stdint.h>

struct vm;
struct reset_cf9;

/* Claim port PC_RESET_PORT (1 byte) on vm->pio and add the device to the
 * machine.  *out (may be NULL) receives the device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC or -EBUSY (the inert device then stays in the
 * device list until vm_destroy()).
 *
 * Note for the PCI host bridge: 0xCF9 lies inside 0xCF8-0xCFB, the PCI
 * configuration address register, which is only ever accessed as a dword.
 * Buses do not overlap ranges, so a host bridge that wants to own
 * 0xCF8-0xCFB must create this device with reset_cf9_create_unclaimed()
 * and forward byte accesses at 0xCF9 to reset_cf9_read()/reset_cf9_write(),
 * as chipsets do. */
int reset_cf9_create(struct vm *vm, struct reset_cf9 **out);

/* As reset_cf9_create() but without claiming the port. */
int reset_cf9_create_unclaimed(struct vm *vm, struct reset_cf9 **out);

/* A guest byte write / read of RST_CNT.  Writing with bit 2 going from 0 to
 * 1 calls vm_request_stop(vm, VM_STOP_RESET, 0); bits 1-3 are kept and read
 * back, the others read 0.  Callable from any vCPU thread. */
void reset_cf9_write(struct reset_cf9 *rc, uint8_t value);
uint8_t reset_cf9_read(struct reset_cf9 *rc);

#endif
