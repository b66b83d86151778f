/*
 * pic.h - the board's two cascaded Intel 8259A interrupt controllers and
 * the EISA edge/level control registers (ELCR).
 *
 * Ports: master PC_PIC_MASTER_PORT (0x20-0x21), slave PC_PIC_SLAVE_PORT
 * (0xa0-0xa1), cascaded on master IR2; ELCR at PC_ELCR_PORT (0x4d0 for IRQ
 * 0-7, 0x4d1 for IRQ 8-15).  Used with the software CPU; under KVM the
 * in-kernel PIC replaces it.  Design notes at the top of pic.c.
 */
#ifndef KVMM_HW_PIC_H
#define KVMM_HW_PIC_H

#include <stdbool.h>

struct vm;
struct pic;

/* Called when the master's INTR output changes (true = an interrupt is
 * ready for an INTA cycle).  It runs with the PIC's lock held, from
 * whichever thread changed an input or register: it must only record the
 * level / kick the vCPU (e.g. set an atomic flag), never call back into the
 * PIC, and never take a lock that is held around pic_intack() calls. */
typedef void pic_intr_fn(void *opaque, bool level);

/*
 * Create the PIC pair: allocates it, puts it on the board (vm_add_device,
 * name "pic") and claims ports 0x20-0x21, 0xa0-0xa1 and 0x4d0-0x4d1 on
 * vm->pio.  `intr` (may be NULL) follows the INTR line; `opaque` is passed
 * to it and must outlive the machine.
 *
 * The device belongs to the machine: vm_destroy() frees it; *out is a
 * borrowed pointer.  Returns 0, -ENOMEM, or -EBUSY/-ENOSPC from
 * bus_register/vm_add_device; on an error after vm_add_device the
 * half-built device stays on the board (inert) until vm_destroy().
 */
int pic_create(struct vm *vm, pic_intr_fn *intr, void *opaque,
	       struct pic **out);

/* Drive input line `irq` (0-15; 8-15 are the slave's IR0-7) to `level`.
 * Edge-triggered inputs latch IRR on a 0 -> 1 transition; level-triggered
 * ones (ELCR bit set, or ICW1 LTIM) keep IRR equal to the line.  IRQ 2 is
 * the cascade input: driving it only matters if the master runs in single
 * mode.  Out-of-range irq is ignored.  Thread-safe.  8259A datasheet,
 * "Interrupt sequence" and "Edge and level triggered modes". */
void pic_set_irq(struct pic *pic, unsigned irq, bool level);

/* The INTA cycle: returns the vector (0-255) of the highest-priority
 * unmasked request, moves it from IRR to ISR (unless auto-EOI) on the
 * master and, for IR2, the slave.  With nothing pending returns the
 * spurious vector: master base + 7 (IRQ7) without touching ISR, or slave
 * base + 7 (IRQ15) if the master saw the cascade but the slave's request
 * vanished.  Thread-safe; calls the intr callback with the new level. */
int pic_intack(struct pic *pic);

/* The current INTR output level (what the last intr callback reported). */
bool pic_intr_pending(struct pic *pic);

#endif
