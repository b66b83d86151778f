/*
 * i8042.h - the PC/AT keyboard controller (Intel 8042 / "KBC") with a PS/2
 * keyboard and a PS/2 mouse behind it.
 *
 * Ports PC_I8042_DATA_PORT (0x60) and PC_I8042_CMD_PORT (0x64); interrupts
 * PC_IRQ_KBD (1) for keyboard bytes and PC_IRQ_MOUSE (12) for mouse bytes.
 * Guests use it for the keyboard, for the A20 gate in real-mode boot code,
 * and to reset the machine (command 0xFE).  See i8042.c for the model;
 * references: the IBM PC/AT and PS/2 technical references (8042 command
 * set, keyboard and mouse protocols) and what Linux's i8042/atkbd/psmouse
 * drivers send.
 */
#ifndef KVMM_HW_I8042_H
#define KVMM_HW_I8042_H

struct vm;
struct i8042;

/* Put the controller on the board: claims ports 0x60 and 0x64 (one byte
 * each; 0x61 belongs to the PIT/speaker logic) on vm->pio, drives ISA lines
 * 1 and 12 through vm->irq, and adds itself to the machine.  A guest reset
 * request (command 0xFE, or clearing output port bit 0) calls
 * vm_request_stop(vm, VM_STOP_RESET, 0).  *out (may be NULL) receives the
 * device, owned by the machine.
 * Returns 0, -ENOMEM, -ENOSPC (device table full) or -EBUSY (ports taken;
 * the inert device then stays in the device list until vm_destroy()). */
int i8042_create(struct vm *vm, struct i8042 **out);

#endif
