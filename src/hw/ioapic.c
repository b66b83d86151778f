/*
 * ioapic.c - I/O APIC (ioapic.h).
 *
 * Reference: Intel 82093AA I/O Advanced Programmable Interrupt Controller
 * datasheet (order 290566), section 3 (IOREGSEL, IOWIN, IOAPICID, IOAPICVER,
 * IOAPICARB, IOREDTBL), and the EOI register of the version 0x20 IOAPICs in
 * Intel's PCH/ICH datasheets.  QEMU's hw/intc/ioapic.c and Linux's
 * arch/x86/kvm/ioapic.c were read for guest-visible behaviour; nothing is
 * copied.
 *
 * REGISTERS
 * MMIO at PC_IOAPIC_BASE: IOREGSEL (0x00, the index, 8 bits), IOWIN (0x10,
 * the selected 32-bit register; 32-bit writes only, as the datasheet
 * requires), EOI (0x40, write a vector).  Indirect registers: 0x00 ID
 * (bits 27-24), 0x01 version (0x00170020: 24 entries, version 0x20), 0x02
 * arbitration ID (reads the ID), 0x10 + 2n / 0x11 + 2n the low / high half
 * of redirection entry n.  Any other index reads 0 and ignores writes.
 *
 * We advertise version 0x20 rather than the 82093AA's 0x11 because only
 * 0x20 has the EOI register: Linux then clears Remote IRR with one write
 * instead of the edge/level flip dance, and that is what QEMU and KVM
 * report too.
 *
 * DELIVERY
 * A redirection entry is the datasheet's 64 bits: vector 7:0, delivery mode
 * 10:8, destination mode 11, delivery status 12 (always 0 here: messages go
 * out at once), polarity 13 (1 = active low; stored and read back, see
 * below), Remote IRR 14, trigger mode 15 (1 = level), mask 16, destination
 * 63:56.  Bits 12 and 14 are read-only; reserved bits read 0.
 *
 * POLARITY
 * Pin levels are logical: ioapic_set_irq(pin, true) means "asserted",
 * whatever polarity the guest programs.  The polarity bit describes the
 * electrical signal on a real board's wire; our devices have no wire, they
 * say whether they request an interrupt.  KVM's in-kernel IOAPIC
 * (KVM_IRQ_LINE) and QEMU's model treat levels the same way, and so must
 * we, since the devices are shared between the accelerators: Linux
 * programs the PCI GSIs it finds in the _PRT as level-triggered, active
 * low (ACPI's default for PCI interrupts), so inverting here would make
 * every idle PCI INTx line fire under the software CPU and a raised one
 * go quiet.
 *
 *   edge:  an asserting edge of the pin sends one
 *          message.  "Edge-sensitive interrupts signaled on a masked
 *          interrupt pin are ignored (i.e., not delivered or held
 *          pending)" - so unmasking later delivers nothing.
 *   level: while the pin is asserted and the entry unmasked with Remote
 *          IRR clear, send one message and set Remote IRR.  The LAPIC's
 *          EOI of that vector (ioapic_eoi) clears Remote IRR; if the pin
 *          is still asserted the interrupt is delivered again.  Unmasking
 *          an asserted level pin delivers it.
 * Switching an entry to edge clears Remote IRR (Linux relies on that for
 * IOAPICs without the EOI register, and KVM does the same).
 *
 * Messages use the MSI format (the APIC bus and MSIs carry the same
 * fields), handed to the `deliver` callback - the software CPU's LAPICs -
 * and never through vm->irq, which is the interrupt router that calls us.
 * We collect them under the lock and send them after unlocking, so the
 * LAPIC may take its own locks and call back (ioapic_eoi) without
 * deadlock.
 *
 * HOSTILE GUEST
 * IOREGSEL is masked to 8 bits and checked against the table; an
 * interrupt storm from a level pin is paced by the guest's own EOIs (one
 * delivery per EOI).  Snapshot loads reject reserved bits and pins beyond
 * 24.
 *
 * LOCKING
 * One mutex; lock order: device -> router -> ioapic.  No callback runs
 * under it.
 */
#include "hw/ioapic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pc.h"

#define IOAPIC_STATE_VERSION 1

/* MMIO offsets */
#define IOREGSEL 0x00
#define IOWIN    0x10
#define IOEOI    0x40

/* Indirect registers */
#define REG_ID    0x00
#define REG_VER   0x01
#define REG_ARB   0x02
#define REG_TABLE 0x10

/* Redirection entry bits */
#define RTE_VECTOR     0xffull
#define RTE_DELMODE    (7ull << 8)
#define RTE_DESTMODE   (1ull << 11)
#define RTE_DELIVS     (1ull << 12)
#define RTE_POLARITY   (1ull << 13)
#define RTE_REMOTE_IRR (1ull << 14)
#define RTE_LEVEL      (1ull << 15)
#define RTE_MASK       (1ull << 16)
#define RTE_DEST       (0xffull << 56)
#define RTE_WRITABLE   (RTE_VECTOR | RTE_DELMODE | RTE_DESTMODE | \
			RTE_POLARITY | RTE_LEVEL | RTE_MASK | RTE_DEST)

#define ALL_PINS ((1u << IOAPIC_PINS) - 1)

struct ioapic {
	struct vm *vm;
	pthread_mutex_t lock;
	ioapic_deliver_fn *deliver;
	void *opaque;
	uint8_t ioregsel;
	uint8_t id;                  /* 4 bits */
	uint64_t rte[IOAPIC_PINS];
	uint32_t line;               /* raw pin levels */
	uint32_t irr;                /* level-triggered pins that are asserted */
};

/* Messages produced under the lock, sent after it. */
struct msg_queue {
	unsigned n;
	struct { uint64_t addr; uint32_t data; } m[IOAPIC_PINS];
};

static bool asserted(const struct ioapic *io, unsigned pin)
{
	return (io->line >> pin) & 1; /* logical levels: see POLARITY above */
}

static void queue_msg(struct msg_queue *q, uint64_t rte)
{
	uint8_t dest = (uint8_t)(rte >> 56);

	if (q->n == IOAPIC_PINS)
		return; /* cannot happen: one message per pin per call */
	q->m[q->n].addr = 0xfee00000ull | (uint64_t)dest << 12 |
			  ((rte & RTE_DESTMODE) ? 1u << 2 : 0);
	q->m[q->n].data = (uint32_t)((rte & RTE_VECTOR) | (rte & RTE_DELMODE) |
				     ((rte & RTE_LEVEL) ? 1u << 15 : 0));
	q->n++;
}

/* Deliver a level pin if it is asserted, unmasked and not in service. */
static void service_level(struct ioapic *io, unsigned pin,
			  struct msg_queue *q)
{
	uint64_t *e = &io->rte[pin];

	if (!(*e & RTE_LEVEL) || !((io->irr >> pin) & 1) || (*e & RTE_MASK) ||
	    (*e & RTE_REMOTE_IRR))
		return;
	*e |= RTE_REMOTE_IRR;
	queue_msg(q, *e);
}

static void flush(struct ioapic *io, const struct msg_queue *q)
{
	if (!io->deliver)
		return;
	for (unsigned i = 0; i < q->n; i++)
		io->deliver(io->opaque, q->m[i].addr, q->m[i].data);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, bool level)
{
	struct msg_queue q = { 0 };
	uint32_t bit;
	bool was;

	if (pin >= IOAPIC_PINS)
		return;
	bit = 1u << pin;
	pthread_mutex_lock(&io->lock);
	was = asserted(io, pin);
	io->line = level ? io->line | bit : io->line & ~bit;
	if (io->rte[pin] & RTE_LEVEL) {
		io->irr = asserted(io, pin) ? io->irr | bit : io->irr & ~bit;
		service_level(io, pin, &q);
	} else if (!was && asserted(io, pin) && !(io->rte[pin] & RTE_MASK)) {
		queue_msg(&q, io->rte[pin]);
	}
	pthread_mutex_unlock(&io->lock);
	flush(io, &q);
}

static void eoi_locked(struct ioapic *io, uint8_t vector, struct msg_queue *q)
{
	for (unsigned pin = 0; pin < IOAPIC_PINS; pin++) {
		uint64_t *e = &io->rte[pin];

		if ((*e & RTE_VECTOR) != vector || !(*e & RTE_REMOTE_IRR))
			continue;
		*e &= ~RTE_REMOTE_IRR;
		service_level(io, pin, q);
	}
}

void ioapic_eoi(struct ioapic *io, uint8_t vector)
{
	struct msg_queue q = { 0 };

	pthread_mutex_lock(&io->lock);
	eoi_locked(io, vector, &q);
	pthread_mutex_unlock(&io->lock);
	flush(io, &q);
}

/* --- registers ------------------------------------------------------ */

static uint32_t reg_read(const struct ioapic *io, uint8_t reg)
{
	switch (reg) {
	case REG_ID:
	case REG_ARB:
		return (uint32_t)io->id << 24;
	case REG_VER:
		return (uint32_t)(IOAPIC_PINS - 1) << 16 | IOAPIC_VERSION;
	default:
		if (reg >= REG_TABLE && reg < REG_TABLE + 2 * IOAPIC_PINS) {
			uint64_t e = io->rte[(reg - REG_TABLE) / 2];

			return (reg & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
		}
		return 0;
	}
}

static void reg_write(struct ioapic *io, uint8_t reg, uint32_t v,
		      struct msg_queue *q)
{
	unsigned pin;
	uint64_t e;

	if (reg == REG_ID) {
		io->id = (v >> 24) & 0x0f;
		return;
	}
	if (reg < REG_TABLE || reg >= REG_TABLE + 2 * IOAPIC_PINS)
		return; /* version, arbitration: read-only; others: none */
	pin = (reg - REG_TABLE) / 2;
	e = io->rte[pin];
	if (reg & 1)
		e = (e & 0xffffffffull) | (uint64_t)v << 32;
	else
		e = (e & ~0xffffffffull) | v;
	e = (e & RTE_WRITABLE) | (io->rte[pin] & RTE_REMOTE_IRR);
	if (!(e & RTE_LEVEL))
		e &= ~RTE_REMOTE_IRR;
	io->rte[pin] = e;
	/* Trigger mode may have changed: recompute the level request, and
	 * deliver it if now deliverable. */
	if (asserted(io, pin) && (e & RTE_LEVEL))
		io->irr |= 1u << pin;
	else
		io->irr &= ~(1u << pin);
	service_level(io, pin, q);
}

static uint64_t ioapic_read(void *opaque, uint64_t offset, unsigned size)
{
	struct ioapic *io = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&io->lock);
	if (offset < IOREGSEL + 4)
		v = (uint64_t)io->ioregsel >> (8 * (offset - IOREGSEL));
	else if (offset >= IOWIN && offset < IOWIN + 4)
		v = reg_read(io, io->ioregsel) >> (8 * (offset - IOWIN));
	pthread_mutex_unlock(&io->lock);
	if (size < 8)
		v &= (1ull << (8 * size)) - 1;
	return v;
}

static void ioapic_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct ioapic *io = opaque;
	struct msg_queue q = { 0 };

	pthread_mutex_lock(&io->lock);
	if (offset == IOREGSEL)
		io->ioregsel = (uint8_t)value;
	else if (offset == IOWIN && size == 4)
		reg_write(io, io->ioregsel, (uint32_t)value, &q);
	else if (offset == IOEOI && size == 4)
		eoi_locked(io, (uint8_t)value, &q);
	pthread_mutex_unlock(&io->lock);
	flush(io, &q);
}

static const struct bus_ops ioapic_ops = { .read = ioapic_read,
					   .write = ioapic_write };

/* --- lifecycle ------------------------------------------------------ */

static void ioapic_reset_locked(struct ioapic *io)
{
	io->ioregsel = 0;
	io->id = PC_IOAPIC_ID & 0x0f;
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		io->rte[i] = RTE_MASK;
	io->irr = 0; /* every entry is edge now; `line` keeps the wires */
}

static void ioapic_reset(void *opaque)
{
	struct ioapic *io = opaque;

	pthread_mutex_lock(&io->lock);
	ioapic_reset_locked(io);
	pthread_mutex_unlock(&io->lock);
}

static void ioapic_save(void *opaque, struct state_buf *b)
{
	struct ioapic *io = opaque;

	pthread_mutex_lock(&io->lock);
	state_put_u8(b, IOAPIC_STATE_VERSION);
	state_put_u8(b, io->id);
	state_put_u8(b, io->ioregsel);
	state_put_u32(b, io->line);
	state_put_u32(b, io->irr);
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		state_put_u64(b, io->rte[i]);
	pthread_mutex_unlock(&io->lock);
}

/* Nothing is delivered on load: in a consistent snapshot every deliverable
 * request has already been delivered (its Remote IRR is set), and the
 * LAPICs' own state carries the interrupts in flight. */
static int ioapic_load(void *opaque, struct state_reader *r)
{
	struct ioapic *io = opaque;
	uint64_t rte[IOAPIC_PINS];
	uint32_t line, irr;
	uint8_t id, sel;

	if (state_get_u8(r) != IOAPIC_STATE_VERSION)
		return -EINVAL;
	id = state_get_u8(r);
	sel = state_get_u8(r);
	line = state_get_u32(r);
	irr = state_get_u32(r);
	for (unsigned i = 0; i < IOAPIC_PINS; i++)
		rte[i] = state_get_u64(r);
	if (r->err)
		return r->err;
	if (id > 0x0f || (line & ~ALL_PINS) || (irr & ~ALL_PINS))
		return -EINVAL;
	for (unsigned i = 0; i < IOAPIC_PINS; i++) {
		if (rte[i] & ~(RTE_WRITABLE | RTE_REMOTE_IRR))
			return -EINVAL;
		if ((rte[i] & RTE_REMOTE_IRR) && !(rte[i] & RTE_LEVEL))
			return -EINVAL;
		/* irr must be the level pins' asserted state. */
		bool lvl = (line >> i) & 1;
		bool want = (rte[i] & RTE_LEVEL) && lvl;
		if (((irr >> i) & 1) != want)
			return -EINVAL;
	}
	pthread_mutex_lock(&io->lock);
	io->id = id;
	io->ioregsel = sel;
	io->line = line;
	io->irr = irr;
	memcpy(io->rte, rte, sizeof(rte));
	pthread_mutex_unlock(&io->lock);
	return 0;
}

static void ioapic_destroy(void *opaque)
{
	struct ioapic *io = opaque;

	pthread_mutex_destroy(&io->lock);
	free(io);
}

static const struct vm_device_ops ioapic_dev_ops = {
	.name = "ioapic",
	.reset = ioapic_reset,
	.save = ioapic_save,
	.load = ioapic_load,
	.destroy = ioapic_destroy,
};

int ioapic_create(struct vm *vm, ioapic_deliver_fn *deliver, void *opaque,
		  struct ioapic **out)
{
	struct ioapic *io = calloc(1, sizeof(*io));
	int r;

	if (!io)
		return -ENOMEM;
	io->vm = vm;
	io->deliver = deliver;
	io->opaque = opaque;
	pthread_mutex_init(&io->lock, NULL);
	ioapic_reset_locked(io);
	r = vm_add_device(vm, &ioapic_dev_ops, io);
	if (r) {
		ioapic_destroy(io);
		return r;
	}
	r = bus_register(&vm->mmio, PC_IOAPIC_BASE, IOAPIC_MMIO_SIZE,
			 &ioapic_ops, io, "ioapic");
	if (r)
		return r;
	*out = io;
	return 0;
}
