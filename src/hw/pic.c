/*
 * pic.c - two cascaded 8259A PICs and the ELCR (pic.h).
 *
 * Reference: Intel 8259A Programmable Interrupt Controller datasheet (order
 * 231468): "Interrupt sequence", "Programming the 8259A" (ICW1-4, OCW1-3),
 * "Fully nested mode", "Automatic rotation", "Special mask mode", "Poll
 * command", "Edge and level triggered modes", "Cascade mode"; the EISA ELCR
 * at 0x4d0/0x4d1 (Intel 82374/82378 datasheets).  QEMU's hw/intc/i8259.c
 * and Linux's arch/x86/kvm/i8259.c were read for guest-visible behaviour;
 * nothing is copied.
 *
 * ROLE
 * On the software-CPU board the PIC is what a guest sees first: the BIOS
 * and early Linux use it, and Linux keeps using it for IRQ0 routing checks
 * (check_timer) and the "virtual wire" mode, where the master's INTR goes
 * to LAPIC LINT0 in ExtINT mode and the LAPIC fetches the vector with an
 * INTA cycle: pic_intack().  Under KVM the in-kernel PIC replaces this.
 *
 * MODEL
 * Each chip keeps the datasheet's registers: IRR, ISR, IMR, plus the input
 * line levels, because edge detection needs them and level-triggered
 * inputs keep IRR equal to the line.  Priorities are resolved exactly as
 * the datasheet describes: `priority_add` names the IR with the highest
 * priority (0 after ICW1, moved by the rotate commands), a request is
 * served if it beats every in-service level (fully nested mode), except
 * that
 *   - in special mask mode, in-service levels do not block; only masked
 *     ones are excluded ("minimal" support: what Linux and DOS use),
 *   - in special fully nested mode, the master's in-service IR2 does not
 *     block further requests from the slave.
 * Auto-EOI (ICW4 bit 1) skips setting ISR at INTA, optionally rotating.
 * Poll mode (OCW3 P) turns the next command-port read into an INTA that
 * returns 0x80 | level.  ICW1 LTIM makes every input level-triggered; so
 * does the ELCR bit of that IRQ (IRQ 0, 1, 2, 8 and 13 are always edge:
 * the ELCR masks are 0xf8 and 0xde).  The 8080/85 call format (ICW4 bit 0
 * clear) and buffered mode are accepted and ignored: vectors are always
 * base + level, as in 8086 mode.
 *
 * The cascade: the slave's INT output is the master's IR2.  Like QEMU and
 * Linux KVM we treat it as a pulse each time the slave has a request
 * ready, so the master latches IR2 again after an auto-EOI slave INTA.  If
 * the slave's request vanishes (a level line dropped) before the INTA, the
 * master still answers IR2 and the slave returns its spurious vector
 * (IRQ15), as the hardware does.  In single mode (ICW1 SNGL) the master
 * ignores the slave.
 *
 * Edge inputs latch IRR on 0 -> 1 and keep it until INTA, even if the line
 * drops; a level input's IRR follows the line, so a request withdrawn
 * before INTA turns into the spurious IRQ7 - the behaviour Linux's
 * spurious-interrupt check expects.  After ICW1 the edge sense is reset:
 * an input already high must go low and high again.
 *
 * HOSTILE GUEST
 * Every register is 8 bits and every combination is valid for the 8259A;
 * nothing the guest writes can index out of range or loop.  An interrupt
 * storm of a level line is bounded by the guest's own INTA/EOI rate.
 * Snapshot loads are validated (init state, ELCR masks, vector base).
 *
 * LOCKING
 * One mutex.  The intr callback runs under it (see pic.h for the rules);
 * the router calls pic_set_irq() from device threads with their own device
 * locks held (order: device -> pic).
 */
#include "hw/pic.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pc.h"

#define PIC_STATE_VERSION 1

/* ICW1 */
#define ICW1_IC4  0x01
#define ICW1_SNGL 0x02
#define ICW1_LTIM 0x08
#define ICW1_INIT 0x10
/* ICW4 */
#define ICW4_AEOI 0x02
#define ICW4_SFNM 0x10
/* OCW3 */
#define OCW3_SEL  0x08
#define OCW3_RIS  0x01
#define OCW3_RR   0x02
#define OCW3_P    0x04
#define OCW3_SMM  0x20
#define OCW3_ESMM 0x40

#define CASCADE_IR 2
#define NO_IRQ 8

enum { INIT_READY, INIT_ICW2, INIT_ICW3, INIT_ICW4 };

struct pic_chip {
	struct pic *pic;
	bool is_slave;
	uint8_t irr, isr, imr;
	uint8_t line;         /* input levels */
	uint8_t elcr, elcr_mask;
	uint8_t base;         /* ICW2 & 0xf8 */
	uint8_t icw1, icw3, icw4;
	uint8_t init_state;
	uint8_t priority_add; /* the IR with the highest priority */
	bool read_isr, poll, special_mask, rotate_aeoi;
};

struct pic {
	struct vm *vm;
	pthread_mutex_t lock;
	struct pic_chip chip[2];
	pic_intr_fn *intr;
	void *intr_opaque;
	bool intr_level;
};

static uint8_t level_mask(const struct pic_chip *c)
{
	return (c->icw1 & ICW1_LTIM) ? 0xff : c->elcr;
}

/* Priority rank (0 = highest) of the best bit of `mask`, or NO_IRQ. */
static unsigned chip_priority(const struct pic_chip *c, uint8_t mask)
{
	for (unsigned p = 0; p < 8; p++)
		if (mask & (1u << ((p + c->priority_add) & 7)))
			return p;
	return NO_IRQ;
}

/* The level the chip would present at INTA now, or -1. */
static int chip_get_irq(const struct pic_chip *c)
{
	uint8_t req = c->irr & ~c->imr;
	uint8_t in_service = c->isr;
	unsigned pri, cur;

	if (c->special_mask) {
		/* Only the levels being served (and masked ones) are out. */
		req &= ~c->isr;
		in_service = 0;
	}
	pri = chip_priority(c, req);
	if (pri == NO_IRQ)
		return -1;
	if (!c->is_slave && (c->icw4 & ICW4_SFNM))
		in_service &= ~(1u << CASCADE_IR);
	cur = chip_priority(c, in_service);
	return pri < cur ? (int)((pri + c->priority_add) & 7) : -1;
}

static void chip_set_line(struct pic_chip *c, unsigned irq, bool level)
{
	uint8_t bit = (uint8_t)(1u << irq);

	if (level_mask(c) & bit) {
		if (level)
			c->irr |= bit;
		else
			c->irr &= ~bit;
	} else if (level && !(c->line & bit)) {
		c->irr |= bit;
	}
	if (level)
		c->line |= bit;
	else
		c->line &= ~bit;
}

/* INTA (or poll) on one chip for level `irq`. */
static void chip_ack(struct pic_chip *c, int irq)
{
	uint8_t bit = (uint8_t)(1u << irq);

	if (c->icw4 & ICW4_AEOI) {
		if (c->rotate_aeoi)
			c->priority_add = (uint8_t)((irq + 1) & 7);
	} else {
		c->isr |= bit;
	}
	if (!(level_mask(c) & bit))
		c->irr &= ~bit;
}

static bool cascaded(const struct pic *pic)
{
	return !(pic->chip[0].icw1 & ICW1_SNGL);
}

/* Propagate the slave's output into the master and the master's to INTR. */
static void pic_update(struct pic *pic)
{
	struct pic_chip *m = &pic->chip[0];
	bool intr;

	if (cascaded(pic) && chip_get_irq(&pic->chip[1]) >= 0) {
		if (level_mask(m) & (1u << CASCADE_IR))
			chip_set_line(m, CASCADE_IR, true);
		else
			m->irr |= 1u << CASCADE_IR;
	} else if (cascaded(pic) && (level_mask(m) & (1u << CASCADE_IR))) {
		chip_set_line(m, CASCADE_IR, false);
	}
	intr = chip_get_irq(m) >= 0;
	if (intr != pic->intr_level) {
		pic->intr_level = intr;
		if (pic->intr)
			pic->intr(pic->intr_opaque, intr);
	}
}

void pic_set_irq(struct pic *pic, unsigned irq, bool level)
{
	if (irq >= 16)
		return;
	pthread_mutex_lock(&pic->lock);
	chip_set_line(&pic->chip[irq >> 3], irq & 7, level);
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
}

int pic_intack(struct pic *pic)
{
	struct pic_chip *m = &pic->chip[0], *s = &pic->chip[1];
	int irq, vector;

	pthread_mutex_lock(&pic->lock);
	irq = chip_get_irq(m);
	if (irq < 0) {
		vector = m->base | 7;
	} else {
		chip_ack(m, irq);
		if (irq == CASCADE_IR && cascaded(pic)) {
			int irq2 = chip_get_irq(s);

			if (irq2 >= 0) {
				chip_ack(s, irq2);
				vector = s->base | irq2;
			} else {
				vector = s->base | 7;
			}
		} else {
			vector = m->base | irq;
		}
	}
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
	return vector;
}

bool pic_intr_pending(struct pic *pic)
{
	bool v;

	pthread_mutex_lock(&pic->lock);
	v = pic->intr_level;
	pthread_mutex_unlock(&pic->lock);
	return v;
}

/* --- registers ------------------------------------------------------ */

static void chip_icw1(struct pic_chip *c, uint8_t v)
{
	c->icw1 = v;
	c->icw4 = 0; /* "if IC4 = 0, all ICW4 functions are set to zero" */
	c->icw3 = 0;
	c->imr = 0;
	c->isr = 0;
	c->priority_add = 0;
	c->read_isr = false;
	c->poll = false;
	c->special_mask = false;
	c->rotate_aeoi = false;
	/* Edge sense reset: only level-triggered inputs stay requested. */
	c->irr = c->line & level_mask(c);
	c->init_state = INIT_ICW2;
}

static void chip_ocw2(struct pic_chip *c, uint8_t v)
{
	unsigned level = v & 7;

	switch (v >> 5) {
	case 0: /* clear rotate in auto-EOI mode */
		c->rotate_aeoi = false;
		break;
	case 4: /* set rotate in auto-EOI mode */
		c->rotate_aeoi = true;
		break;
	case 1: /* non-specific EOI */
	case 5: { /* rotate on non-specific EOI */
		unsigned pri = chip_priority(c, c->isr);

		if (pri != NO_IRQ) {
			unsigned irq = (pri + c->priority_add) & 7;

			c->isr &= ~(1u << irq);
			if (v >> 5 == 5)
				c->priority_add = (uint8_t)((irq + 1) & 7);
		}
		break;
	}
	case 3: /* specific EOI */
		c->isr &= ~(1u << level);
		break;
	case 7: /* rotate on specific EOI */
		c->isr &= ~(1u << level);
		c->priority_add = (uint8_t)((level + 1) & 7);
		break;
	case 6: /* set priority: `level` becomes the lowest */
		c->priority_add = (uint8_t)((level + 1) & 7);
		break;
	default: /* 2: no operation */
		break;
	}
}

static void chip_write_cmd(struct pic_chip *c, uint8_t v)
{
	if (v & ICW1_INIT) {
		chip_icw1(c, v);
	} else if (v & OCW3_SEL) {
		if (v & OCW3_P)
			c->poll = true;
		if (v & OCW3_RR)
			c->read_isr = v & OCW3_RIS;
		if (v & OCW3_ESMM)
			c->special_mask = v & OCW3_SMM;
	} else {
		chip_ocw2(c, v);
	}
}

static void chip_write_data(struct pic_chip *c, uint8_t v)
{
	switch (c->init_state) {
	case INIT_ICW2:
		c->base = v & 0xf8;
		if (!(c->icw1 & ICW1_SNGL))
			c->init_state = INIT_ICW3;
		else
			c->init_state = (c->icw1 & ICW1_IC4) ? INIT_ICW4
							     : INIT_READY;
		break;
	case INIT_ICW3:
		c->icw3 = v;
		c->init_state = (c->icw1 & ICW1_IC4) ? INIT_ICW4 : INIT_READY;
		break;
	case INIT_ICW4:
		c->icw4 = v;
		c->init_state = INIT_READY;
		break;
	default: /* OCW1 */
		c->imr = v;
		break;
	}
}

static uint8_t chip_read_cmd(struct pic_chip *c)
{
	if (c->poll) {
		int irq;

		c->poll = false;
		irq = chip_get_irq(c);
		if (irq < 0)
			return 0;
		chip_ack(c, irq);
		return (uint8_t)(0x80 | irq);
	}
	return c->read_isr ? c->isr : c->irr;
}

/* A wider access touches both byte ports, as on the ISA bus. */
static uint64_t chip_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pic_chip *c = opaque;
	struct pic *pic = c->pic;
	uint64_t v = 0;

	pthread_mutex_lock(&pic->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t b = offset + i == 0 ? chip_read_cmd(c) : c->imr;

		v |= (uint64_t)b << (8 * i);
	}
	pic_update(pic); /* a poll read is an INTA */
	pthread_mutex_unlock(&pic->lock);
	return v;
}

static void chip_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value)
{
	struct pic_chip *c = opaque;
	struct pic *pic = c->pic;

	pthread_mutex_lock(&pic->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++) {
		uint8_t b = (uint8_t)(value >> (8 * i));

		if (offset + i == 0)
			chip_write_cmd(c, b);
		else
			chip_write_data(c, b);
	}
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
}

static void elcr_set(struct pic_chip *c, uint8_t v)
{
	c->elcr = v & c->elcr_mask;
	/* Inputs that became level-triggered request while high. */
	c->irr = (uint8_t)((c->irr & ~level_mask(c)) |
			   (c->line & level_mask(c)));
}

/* 0x4d0 and 0x4d1; a 16-bit access covers both. */
static uint64_t elcr_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pic *pic = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&pic->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++)
		v |= (uint64_t)pic->chip[offset + i].elcr << (8 * i);
	pthread_mutex_unlock(&pic->lock);
	return v;
}

static void elcr_write(void *opaque, uint64_t offset, unsigned size,
		       uint64_t value)
{
	struct pic *pic = opaque;

	pthread_mutex_lock(&pic->lock);
	for (unsigned i = 0; i < size && offset + i < 2; i++)
		elcr_set(&pic->chip[offset + i], (uint8_t)(value >> (8 * i)));
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
}

static const struct bus_ops chip_ops = { .read = chip_read,
					 .write = chip_write };
static const struct bus_ops elcr_ops = { .read = elcr_read,
					 .write = elcr_write };

/* --- lifecycle ------------------------------------------------------ */

static void chip_reset(struct pic_chip *c)
{
	uint8_t line = c->line, mask = c->elcr_mask;
	struct pic *pic = c->pic;
	bool slave = c->is_slave;

	memset(c, 0, sizeof(*c));
	c->pic = pic;
	c->is_slave = slave;
	c->elcr_mask = mask;
	c->line = line; /* the wires keep their levels */
}

static void pic_reset(void *opaque)
{
	struct pic *pic = opaque;

	pthread_mutex_lock(&pic->lock);
	chip_reset(&pic->chip[0]);
	chip_reset(&pic->chip[1]);
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
}

static void pic_save(void *opaque, struct state_buf *b)
{
	struct pic *pic = opaque;

	pthread_mutex_lock(&pic->lock);
	state_put_u8(b, PIC_STATE_VERSION);
	for (unsigned i = 0; i < 2; i++) {
		const struct pic_chip *c = &pic->chip[i];

		state_put_u8(b, c->irr);
		state_put_u8(b, c->isr);
		state_put_u8(b, c->imr);
		state_put_u8(b, c->line);
		state_put_u8(b, c->elcr);
		state_put_u8(b, c->base);
		state_put_u8(b, c->icw1);
		state_put_u8(b, c->icw3);
		state_put_u8(b, c->icw4);
		state_put_u8(b, c->init_state);
		state_put_u8(b, c->priority_add);
		state_put_u8(b, (uint8_t)(c->read_isr | c->poll << 1 |
					  c->special_mask << 2 |
					  c->rotate_aeoi << 3));
	}
	pthread_mutex_unlock(&pic->lock);
}

static int pic_load(void *opaque, struct state_reader *r)
{
	struct pic *pic = opaque;
	struct pic_chip chip[2];

	if (state_get_u8(r) != PIC_STATE_VERSION)
		return -EINVAL;
	for (unsigned i = 0; i < 2; i++) {
		struct pic_chip *c = &chip[i];
		uint8_t flags;

		*c = pic->chip[i]; /* keeps pic, is_slave, elcr_mask */
		c->irr = state_get_u8(r);
		c->isr = state_get_u8(r);
		c->imr = state_get_u8(r);
		c->line = state_get_u8(r);
		c->elcr = state_get_u8(r);
		c->base = state_get_u8(r);
		c->icw1 = state_get_u8(r);
		c->icw3 = state_get_u8(r);
		c->icw4 = state_get_u8(r);
		c->init_state = state_get_u8(r);
		c->priority_add = state_get_u8(r);
		flags = state_get_u8(r);
		if (r->err)
			return r->err;
		if ((c->elcr & ~c->elcr_mask) || (c->base & 7) ||
		    c->init_state > INIT_ICW4 || c->priority_add > 7 ||
		    (flags & ~0x0f))
			return -EINVAL;
		c->read_isr = flags & 1;
		c->poll = flags & 2;
		c->special_mask = flags & 4;
		c->rotate_aeoi = flags & 8;
	}
	pthread_mutex_lock(&pic->lock);
	pic->chip[0] = chip[0];
	pic->chip[1] = chip[1];
	pic_update(pic);
	pthread_mutex_unlock(&pic->lock);
	return 0;
}

static void pic_destroy(void *opaque)
{
	struct pic *pic = opaque;

	pthread_mutex_destroy(&pic->lock);
	free(pic);
}

static const struct vm_device_ops pic_dev_ops = {
	.name = "pic",
	.reset = pic_reset,
	.save = pic_save,
	.load = pic_load,
	.destroy = pic_destroy,
};

int pic_create(struct vm *vm, pic_intr_fn *intr, void *opaque,
	       struct pic **out)
{
	struct pic *pic = calloc(1, sizeof(*pic));
	int r;

	if (!pic)
		return -ENOMEM;
	pic->vm = vm;
	pic->intr = intr;
	pic->intr_opaque = opaque;
	pthread_mutex_init(&pic->lock, NULL);
	for (unsigned i = 0; i < 2; i++) {
		pic->chip[i].pic = pic;
		pic->chip[i].is_slave = i == 1;
		/* IRQ 0, 1, 2 and 8, 13 are edge-only on the ELCR. */
		pic->chip[i].elcr_mask = i ? 0xde : 0xf8;
		chip_reset(&pic->chip[i]);
	}
	r = vm_add_device(vm, &pic_dev_ops, pic);
	if (r) {
		pic_destroy(pic);
		return r;
	}
	r = bus_register(&vm->pio, PC_PIC_MASTER_PORT, 2, &chip_ops,
			 &pic->chip[0], "pic-master");
	if (!r)
		r = bus_register(&vm->pio, PC_PIC_SLAVE_PORT, 2, &chip_ops,
				 &pic->chip[1], "pic-slave");
	if (!r)
		r = bus_register(&vm->pio, PC_ELCR_PORT, 2, &elcr_ops, pic,
				 "elcr");
	if (r)
		return r;
	*out = pic;
	return 0;
}
