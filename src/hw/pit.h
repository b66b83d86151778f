/*
 * pit.h - the board's Intel 8254 programmable interval timer, plus the
 * PC/AT "port B" (port 0x61) that gates its channel 2 and reads back OUT2.
 *
 * Used with the software CPU; under KVM the in-kernel PIT (KVM_CREATE_PIT2)
 * takes ports 0x40-0x43 and 0x61 instead, and this device is not created.
 * The design (time from vm_clock_ns(), IRQ0 pulses, the clamp below) is
 * explained at the top of pit.c.
 */
#ifndef KVMM_HW_PIT_H
#define KVMM_HW_PIT_H

#include <stdint.h>

struct vm;
struct pit;

/* Shortest IRQ0 period in the periodic modes (2 and 3), in ns.  A guest
 * that programs a faster rate still sees the counter run at the programmed
 * rate, but IRQ0 pulses at most once per PIT_MIN_IRQ_PERIOD_NS, so a hostile
 * guest cannot make the host's timer thread spin.  200 us is Linux KVM's
 * default min_timer_period_us for its in-kernel PIT (arch/x86/kvm/x86.c). */
#define PIT_MIN_IRQ_PERIOD_NS 200000u

/*
 * Create the PIT: allocates it, puts it on the board (vm_add_device, name
 * "pit") and claims ports PC_PIT_PORT..+3 and PC_PORT61 on vm->pio.
 * Channel 0's OUT rising edges pulse ISA IRQ PC_IRQ_PIT through vm->irq.
 * All counting follows vm_clock_ns() at PC_PIT_HZ (1.193182 MHz).
 *
 * The device belongs to the machine: vm_destroy() frees it.  *out is a
 * borrowed pointer, for board code only (there is no other API yet).
 * Returns 0, -ENOMEM, or -EBUSY/-ENOSPC from bus_register/vm_add_device;
 * on an error after vm_add_device the half-built device stays on the board
 * (inert) until vm_destroy(), which the caller must then run.
 */
int pit_create(struct vm *vm, struct pit **out);

#endif
