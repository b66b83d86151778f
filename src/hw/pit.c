/*
 * pit.c - Intel 8254 programmable interval timer and PC port 0x61 (pit.h).
 *
 * Reference: Intel 8254 Programmable Interval Timer datasheet (order
 * 231164): "Operation" (control word, counter latch, read-back command,
 * status byte) and "Modes" 0-5; IBM PC/AT technical reference for port
 * 0x61.  QEMU's hw/timer/i8254*.c and Linux's arch/x86/kvm/i8254.c were read
 * for the behaviour guests rely on; nothing is copied from them.
 *
 * WHY NO PER-TICK WORK
 * The PIT's input clock runs at 1.193182 MHz.  Simulating clock pulses is
 * out of the question, so each channel keeps `start_ns`, the time its
 * counting element (CE) was (re)started, plus `base_d`, the clock pulses
 * it counted before (a channel gated off in mode 0/4 freezes its count and
 * resumes later).  The number of decrements so far is then
 *
 *     d(now) = base_d + max(0, floor((now - start_ns) * PC_PIT_HZ / 1e9)
 *                              - delay)
 *
 * and every guest-visible quantity - the counter value, OUT, the status
 * byte - is a pure function of d and the mode.  Reads cost a multiply and
 * a divide; nothing runs while the guest is not looking, except one
 * vm_timer for channel 0's interrupt.
 *
 * The datasheet says a written count is transferred to the CE "on the next
 * CLK pulse" and counting starts from there, so OUT in mode 0 goes high N+1
 * pulses after the count was written.  We take the PIT clock's phase to
 * start at the write (it is unknowable) and let the first pulse load rather
 * than decrement (`delay` = 1 in the formula above), so OUT rises exactly
 * (N+1) / 1.193182 MHz after the write.  That first pulse also gives the
 * status byte's NULL COUNT bit its meaning: it reads 1 until then.
 *
 * WHAT LINUX NEEDS EXACTLY
 * Linux calibrates the TSC (arch/x86/kernel/tsc.c, pit_calibrate_tsc and
 * quick_pit_calibrate) by raising channel 2's gate through port 0x61 bit 0,
 * programming channel 2 in mode 0, then spinning on port 0x61 bit 5 (OUT2)
 * or on the counter's MSB read without a latch.  Both follow directly from
 * d(now): OUT2 rises exactly when the count reaches 0, N+1 PIT clocks after
 * the count write (or after the gate rises, if it was low).  Unlatched
 * reads in LSB-then-MSB mode sample the live counter on each byte, as the
 * hardware does.
 *
 * MODES, in terms of d and the initial count n (n = 0 written means 65536
 * binary, 10000 BCD):
 *   0  OUT low after the write, high from d == n on; the counter keeps
 *      wrapping.  GATE low pauses counting.  Writing the first byte of a
 *      two-byte count stops counting and drops OUT at once.
 *   1  hardware one-shot: a GATE rising edge loads the CR into the CE;
 *      OUT low while d < n.
 *   2  rate generator: OUT low for the pulse where the count is 1,
 *      otherwise high; the CE reloads every n pulses.  GATE low stops
 *      counting and forces OUT high; a GATE rising edge reloads.
 *   3  square wave: OUT high for ceil(n/2) pulses, low for floor(n/2); the
 *      counter decrements by two.  GATE as in mode 2.
 *   4  software strobe: OUT low for the single pulse where d == n.
 *   5  hardware strobe: as 4, triggered by a GATE rising edge.
 * A count written in modes 2/3 while the CE is running takes effect at the
 * end of the current period (`reload_at`); in modes 1/5 at the next
 * trigger.  BCD counting is implemented (the count register and the value
 * read back are decimal); invalid BCD digits are clamped to 9.
 *
 * Gates: channels 0 and 1 are tied high on a PC; channel 2's is port 0x61
 * bit 0.  Port 0x61 also keeps the speaker data bit (1) and the NMI enable
 * bits (2, 3) as written, toggles bit 4 every 18 PIT clocks (15.1 us, the
 * DRAM refresh that channel 1 paces on a real PC; old delay loops poll it)
 * and reads OUT2 in bit 5.  Bits 6-7 (NMI sources) read 0.
 *
 * IRQ0
 * Channel 0's OUT drives ISA IRQ0.  Both consumers are edge-triggered (the
 * 8259's IRQ0 can never be level, the MADT declares the IOAPIC pin edge),
 * so the line rests low and every rising edge of OUT produced by counting
 * becomes one pulse (irq_set_level 1 then 0), like Linux KVM's PIT does.
 * Resting low also keeps a misprogrammed level-triggered IOAPIC pin quiet.
 * OUT changes made directly by programming (a control word setting OUT to
 * its initial state) raise no IRQ.
 *
 * A guest may program mode 2 with n = 2: 600 kHz of interrupts.  The
 * counter still runs at that rate, but pulses are spaced at least
 * PIT_MIN_IRQ_PERIOD_NS apart, and the spacing is measured from the last
 * pulse, so reprogramming in a loop does not defeat it.  Pulses that the
 * timer thread misses because it ran late are coalesced into one (the 8259
 * would merge them in IRR anyway); guests that count ticks for time keeping
 * drift, as they do on QEMU, which is why Linux uses the TSC.
 *
 * HOSTILE GUEST
 * Every register write is accepted and clamped into the model: counts are
 * 1..65536, modes 6/7 alias 2/3, read-back of no channel is a no-op.  All
 * arithmetic on times is in 64 bits with 128-bit intermediates, so no
 * guest value can overflow into a wrong deadline.  Snapshot loads are
 * validated field by field.
 *
 * LOCKING
 * One mutex guards everything.  irq_set_level() is called with it held
 * (lock order: pit -> irq router -> pic/ioapic), which keeps IRQ0 pulses in
 * order with respect to reprogramming.  The vm_timer callback takes the
 * lock; vm_timer_mod/del are called under it (they only take the timer
 * list lock).
 */
#include "hw/pit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pc.h"

#define NS_PER_S 1000000000ull
#define NEVER UINT64_MAX
/* One PIT clock, rounded up (838.095 ns). */
#define PIT_TICK_NS ((NS_PER_S + PC_PIT_HZ - 1) / PC_PIT_HZ)
/* Refresh toggle period of port 0x61 bit 4, in PIT clocks. */
#define PIT_REFRESH_TICKS 18
/* Bound for future deadlines in a snapshot (real ones are <= 110 ms). */
#define PIT_MAX_FUTURE_NS NS_PER_S
#define PIT_STATE_VERSION 1

enum { RW_LATCH = 0, RW_LSB = 1, RW_MSB = 2, RW_WORD = 3 };

struct pit_channel {
	/* Programming */
	uint8_t ctrl;     /* bits 5-0 of the last control word, as written */
	uint8_t mode;     /* 0-5 (6 and 7 alias 2 and 3) */
	uint32_t cr;      /* count register, 1..65536 */
	bool cr_valid;    /* a count was written since the control word */
	bool gate;

	/* Counting element */
	bool loaded;      /* the CE holds a count (mode 1/5: triggered) */
	bool counting;    /* d advances with time */
	bool held;        /* mode 0: first byte of a word written, OUT low */
	uint32_t n;       /* initial count of the current run, 1..65536 */
	uint64_t start_ns; /* time counting (re)started */
	uint8_t delay;     /* 1: the CE loads on the first clock after start */
	uint64_t base_d;   /* pulses counted before start_ns */
	uint64_t reload_at; /* modes 2/3: CR -> CE at this time, or NEVER */
	uint64_t null_until; /* NULL COUNT reads 1 while now < this */

	/* Bus interface */
	bool write_msb_next;
	uint8_t write_lsb;
	bool read_msb_next;
	bool count_latched;
	uint16_t latch;
	bool status_latched;
	uint8_t status;
};

struct pit {
	struct vm *vm;
	pthread_mutex_t lock;
	struct vm_timer timer;
	struct pit_channel ch[3];
	uint8_t port61;      /* bits 0-3 as written */
	/* IRQ0 scheduling (channel 0) */
	bool tc_done;        /* one-shot modes: the pulse of this run was sent */
	uint64_t pulse_at;   /* periodic modes: next pulse, or NEVER */
	uint64_t last_pulse; /* time of the last periodic pulse, 0 if none */
};

/* --- time arithmetic ------------------------------------------------ */

static uint64_t ns_to_ticks(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * PC_PIT_HZ / NS_PER_S);
}

/* Smallest ns such that ns_to_ticks(ns) >= t. */
static uint64_t ticks_to_ns_ceil(uint64_t t)
{
	unsigned __int128 ns =
		((unsigned __int128)t * NS_PER_S + PC_PIT_HZ - 1) / PC_PIT_HZ;
	return ns > (unsigned __int128)(NEVER / 2) ? NEVER / 2 : (uint64_t)ns;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > NEVER - b ? NEVER : a + b;
}

/* --- the counting model --------------------------------------------- */

static uint32_t ch_modulus(const struct pit_channel *c)
{
	return (c->ctrl & 1) ? 10000 : 65536;
}

static uint64_t ch_elapsed(const struct pit_channel *c, uint64_t now)
{
	uint64_t d = c->base_d;

	if (c->counting && now > c->start_ns) {
		uint64_t t = ns_to_ticks(now - c->start_ns);
		d += t > c->delay ? t - c->delay : 0;
	}
	return d;
}

/* When the CE has loaded (or will load) its count. */
static uint64_t ch_load_time(const struct pit_channel *c)
{
	return c->start_ns + (c->delay ? ticks_to_ns_ceil(c->delay) : 0);
}

/* Time at which d reaches `target`, or NEVER when not counting. */
static uint64_t ch_time_at(const struct pit_channel *c, uint64_t target)
{
	if (!c->counting)
		return NEVER;
	if (target <= c->base_d)
		return c->start_ns;
	return sat_add(c->start_ns,
		       ticks_to_ns_ceil(target - c->base_d + c->delay));
}

/* Apply a pending mode 2/3 reload whose time has come. */
static void ch_sync(struct pit_channel *c, uint64_t now)
{
	if (c->reload_at != NEVER && now >= c->reload_at) {
		c->n = c->cr;
		c->base_d = 0;
		c->start_ns = c->reload_at;
		c->delay = 0;
		c->reload_at = NEVER;
	}
}

/* The next period boundary (d a multiple of n) strictly after now. */
static uint64_t ch_next_boundary(const struct pit_channel *c, uint64_t now)
{
	uint64_t d = ch_elapsed(c, now);

	return ch_time_at(c, (d / c->n + 1) * c->n);
}

static bool ch_out(const struct pit_channel *c, uint64_t now)
{
	uint64_t d = ch_elapsed(c, now);
	uint32_t n = c->n;

	switch (c->mode) {
	case 0:
		return c->loaded && !c->held && d >= n;
	case 1:
		return !c->loaded || d >= n;
	case 2:
		if (!c->loaded || !c->gate || n < 2)
			return true;
		return d % n != n - 1;
	case 3:
		if (!c->loaded || !c->gate)
			return true;
		return d % n < (n + 1) / 2;
	default: /* 4, 5 */
		return !c->loaded || d != n;
	}
}

static uint16_t to_bcd(uint32_t v)
{
	return (uint16_t)((v % 10) | (v / 10 % 10) << 4 | (v / 100 % 10) << 8 |
			  (v / 1000 % 10) << 12);
}

static uint32_t from_bcd(uint16_t raw)
{
	uint32_t v = 0;

	for (int shift = 12; shift >= 0; shift -= 4) {
		uint32_t digit = (raw >> shift) & 0xf;
		v = v * 10 + (digit > 9 ? 9 : digit);
	}
	return v;
}

/* The counter as the guest reads it (binary or BCD), 16 bits. */
static uint16_t ch_count(const struct pit_channel *c, uint64_t now)
{
	uint32_t m = ch_modulus(c);
	uint64_t d = ch_elapsed(c, now);
	uint32_t v;

	if (!c->loaded) {
		v = c->cr_valid ? c->cr : 0;
	} else {
		switch (c->mode) {
		case 2:
			v = c->n - (uint32_t)(d % c->n);
			break;
		case 3:
			v = c->n - (uint32_t)((2 * (d % c->n)) % c->n);
			break;
		default: /* counts down through 0 and wraps */
			v = (uint32_t)((c->n % m + m - d % m) % m);
			break;
		}
	}
	v %= m;
	return (c->ctrl & 1) ? to_bcd(v) : (uint16_t)v;
}

static uint8_t ch_status(const struct pit_channel *c, uint64_t now)
{
	return (uint8_t)((ch_out(c, now) ? 0x80 : 0) |
			 (now < c->null_until ? 0x40 : 0) | c->ctrl);
}

/* Start counting from scratch with the CR: the CE loads on the next clock. */
static void ch_restart(struct pit_channel *c, uint64_t now, bool counting)
{
	c->n = c->cr;
	c->loaded = true;
	c->counting = counting;
	c->base_d = 0;
	c->start_ns = now;
	c->delay = 1;
	c->reload_at = NEVER;
	c->null_until = ch_load_time(c);
}

/* --- channel 0 -> IRQ0 ---------------------------------------------- */

static void pit_pulse(struct pit *p)
{
	irq_set_level(&p->vm->irq, PC_IRQ_PIT, true);
	irq_set_level(&p->vm->irq, PC_IRQ_PIT, false);
}

/* Send the pulses due at `now` and arm the timer for the next one. */
static void pit_irq_update(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->ch[0];
	uint64_t next = NEVER;

	ch_sync(c, now);
	switch (c->mode) {
	case 0:
	case 1:
	case 4:
	case 5: {
		/* OUT rises once per run: at d == n (0, 1) or after the
		 * one-pulse strobe (4, 5). */
		uint64_t edge = c->n + (c->mode >= 4 ? 1 : 0);

		if (!c->loaded || !c->counting || c->held || p->tc_done)
			break;
		if (ch_elapsed(c, now) >= edge) {
			p->tc_done = true;
			pit_pulse(p);
		} else {
			next = ch_time_at(c, edge);
		}
		break;
	}
	default: /* 2, 3: a rising edge at every period boundary */
		if (!c->loaded || !c->counting) {
			p->pulse_at = NEVER;
			break;
		}
		uint64_t after = now;

		if (p->pulse_at != NEVER && now >= p->pulse_at) {
			pit_pulse(p);
			p->last_pulse = now;
			p->pulse_at = NEVER;
			/* The boundary just served may still lie a rounding
			 * error ahead (e.g. after a snapshot load); periods
			 * are >= 2 clocks, so look one clock further. */
			after = now + PIT_TICK_NS;
		}
		if (p->pulse_at == NEVER) {
			uint64_t t = ch_next_boundary(c, after);
			uint64_t min = sat_add(p->last_pulse,
					       PIT_MIN_IRQ_PERIOD_NS);

			if (p->last_pulse && t < min)
				t = min;
			p->pulse_at = t;
		}
		next = p->pulse_at;
		break;
	}
	if (next == NEVER)
		vm_timer_del(&p->timer);
	else
		vm_timer_mod(&p->timer, next);
}

/* Channel 0 was reprogrammed: forget the old schedule. */
static void pit_irq_reprogram(struct pit *p, uint64_t now)
{
	p->tc_done = false;
	p->pulse_at = NEVER;
	pit_irq_update(p, now);
}

static void pit_timer_cb(void *opaque)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	pit_irq_update(p, vm_clock_ns(p->vm));
	pthread_mutex_unlock(&p->lock);
}

/* --- programming ---------------------------------------------------- */

static void ch_control(struct pit_channel *c, uint8_t cw, uint64_t now)
{
	uint8_t mode = (cw >> 1) & 7;

	ch_sync(c, now);
	c->ctrl = cw & 0x3f;
	c->mode = mode > 5 ? mode - 4 : mode;
	c->cr_valid = false;
	c->loaded = false;
	c->counting = false;
	c->held = false;
	c->base_d = 0;
	c->reload_at = NEVER;
	c->null_until = NEVER;
	c->write_msb_next = false;
	c->read_msb_next = false;
	c->count_latched = false;
	c->status_latched = false;
}

/* A complete count arrived in the count register. */
static void ch_write_count(struct pit_channel *c, uint16_t raw, uint64_t now)
{
	uint32_t v = (c->ctrl & 1) ? from_bcd(raw) : raw;

	ch_sync(c, now);
	c->cr = v ? v : ch_modulus(c);
	c->cr_valid = true;
	c->held = false;
	switch (c->mode) {
	case 0:
	case 4:
		ch_restart(c, now, c->gate);
		break;
	case 1:
	case 5:
		/* Loaded into the CE by the next trigger. */
		if (!c->loaded)
			c->n = c->cr;
		c->null_until = NEVER;
		break;
	default: /* 2, 3 */
		if (!c->loaded || !c->counting) {
			ch_restart(c, now, c->gate);
		} else if (now < ch_load_time(c)) {
			c->n = c->cr; /* the CE has not loaded yet */
		} else {
			c->reload_at = ch_next_boundary(c, now);
			c->null_until = c->reload_at;
		}
		break;
	}
}

static void ch_set_gate(struct pit_channel *c, bool gate, uint64_t now)
{
	ch_sync(c, now);
	if (gate == c->gate)
		return;
	c->gate = gate;
	switch (c->mode) {
	case 0:
	case 4:
		if (gate && c->loaded && !c->held) {
			c->counting = true;
			if (ch_load_time(c) <= now) {
				c->start_ns = now;
				c->delay = 0;
			}
		} else if (!gate && c->counting) {
			c->base_d = ch_elapsed(c, now);
			c->counting = false;
		}
		break;
	case 1:
	case 5:
		if (gate && c->cr_valid)
			ch_restart(c, now, true);
		break;
	default: /* 2, 3 */
		if (gate && c->loaded) {
			ch_restart(c, now, true);
		} else if (!gate && c->counting) {
			c->base_d = ch_elapsed(c, now);
			c->counting = false;
			c->reload_at = NEVER;
		}
		break;
	}
}

static void ch_latch_count(struct pit_channel *c, uint64_t now)
{
	if (!c->count_latched) {
		c->latch = ch_count(c, now);
		c->count_latched = true;
	}
}

static void pit_write_control(struct pit *p, uint8_t cw, uint64_t now)
{
	unsigned sel = cw >> 6;

	if (sel == 3) { /* read-back */
		for (unsigned i = 0; i < 3; i++) {
			struct pit_channel *c = &p->ch[i];

			if (!(cw & (2u << i)))
				continue;
			ch_sync(c, now);
			if (!(cw & 0x20))
				ch_latch_count(c, now);
			if (!(cw & 0x10) && !c->status_latched) {
				c->status = ch_status(c, now);
				c->status_latched = true;
			}
		}
		return;
	}
	if (((cw >> 4) & 3) == RW_LATCH) {
		ch_sync(&p->ch[sel], now);
		ch_latch_count(&p->ch[sel], now);
		return;
	}
	ch_control(&p->ch[sel], cw, now);
	if (sel == 0)
		pit_irq_reprogram(p, now);
}

static uint8_t pit_read_channel(struct pit_channel *c, uint64_t now)
{
	uint16_t v;
	uint8_t b;

	ch_sync(c, now);
	if (c->status_latched) {
		c->status_latched = false;
		return c->status;
	}
	v = c->count_latched ? c->latch : ch_count(c, now);
	switch ((c->ctrl >> 4) & 3) {
	case RW_LSB:
		b = (uint8_t)v;
		c->count_latched = false;
		break;
	case RW_MSB:
		b = (uint8_t)(v >> 8);
		c->count_latched = false;
		break;
	default:
		if (!c->read_msb_next) {
			b = (uint8_t)v;
			c->read_msb_next = true;
		} else {
			b = (uint8_t)(v >> 8);
			c->read_msb_next = false;
			c->count_latched = false;
		}
		break;
	}
	return b;
}

static void pit_write_channel(struct pit *p, unsigned i, uint8_t val,
			      uint64_t now)
{
	struct pit_channel *c = &p->ch[i];

	switch ((c->ctrl >> 4) & 3) {
	case RW_LSB:
		ch_write_count(c, val, now);
		break;
	case RW_MSB:
		ch_write_count(c, (uint16_t)(val << 8), now);
		break;
	default:
		if (!c->write_msb_next) {
			c->write_lsb = val;
			c->write_msb_next = true;
			if (c->mode != 0)
				return;
			/* Datasheet, mode 0: the first byte stops counting
			 * and drops OUT at once. */
			ch_sync(c, now);
			c->base_d = ch_elapsed(c, now);
			c->counting = false;
			c->held = true;
			break;
		}
		c->write_msb_next = false;
		ch_write_count(c, (uint16_t)(c->write_lsb | val << 8), now);
		break;
	}
	if (i == 0)
		pit_irq_reprogram(p, now);
}

/* --- bus interface -------------------------------------------------- */

static uint8_t pit_readb(struct pit *p, unsigned port, uint64_t now)
{
	if (port < 3)
		return pit_read_channel(&p->ch[port], now);
	return 0xff; /* the control word register is write-only */
}

static void pit_writeb(struct pit *p, unsigned port, uint8_t v, uint64_t now)
{
	if (port < 3)
		pit_write_channel(p, port, v, now);
	else
		pit_write_control(p, v, now);
}

/* A wider access touches consecutive byte ports, as on the ISA bus. */
static uint64_t pit_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&p->lock);
	uint64_t now = vm_clock_ns(p->vm);
	for (unsigned i = 0; i < size && offset + i < 4; i++)
		v |= (uint64_t)pit_readb(p, (unsigned)offset + i, now) << (8 * i);
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void pit_write(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	uint64_t now = vm_clock_ns(p->vm);
	for (unsigned i = 0; i < size && offset + i < 4; i++)
		pit_writeb(p, (unsigned)offset + i, (uint8_t)(value >> (8 * i)),
			   now);
	pthread_mutex_unlock(&p->lock);
}

static uint64_t port61_read(void *opaque, uint64_t offset, unsigned size)
{
	struct pit *p = opaque;
	uint64_t now;
	uint8_t v;

	pthread_mutex_lock(&p->lock);
	now = vm_clock_ns(p->vm);
	ch_sync(&p->ch[2], now);
	v = p->port61 & 0x0f;
	if ((ns_to_ticks(now) / PIT_REFRESH_TICKS) & 1)
		v |= 0x10;
	if (ch_out(&p->ch[2], now))
		v |= 0x20;
	pthread_mutex_unlock(&p->lock);
	return v;
}

static void port61_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	p->port61 = value & 0x0f;
	ch_set_gate(&p->ch[2], value & 1, vm_clock_ns(p->vm));
	pthread_mutex_unlock(&p->lock);
}

static const struct bus_ops pit_ops = { .read = pit_read, .write = pit_write };
static const struct bus_ops port61_ops = {
	.read = port61_read,
	.write = port61_write,
};

/* --- lifecycle ------------------------------------------------------ */

static void pit_reset_locked(struct pit *p)
{
	for (unsigned i = 0; i < 3; i++) {
		struct pit_channel *c = &p->ch[i];

		memset(c, 0, sizeof(*c));
		c->ctrl = RW_WORD << 4; /* mode 0, LSB then MSB, binary */
		c->cr = c->n = 65536;
		c->reload_at = NEVER;
		c->null_until = NEVER;
		c->gate = i != 2; /* GATE0/1 tied high; GATE2 = port 0x61 */
	}
	p->port61 = 0;
	p->tc_done = false;
	p->pulse_at = NEVER;
	p->last_pulse = 0;
	vm_timer_del(&p->timer);
}

static void pit_reset(void *opaque)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	pit_reset_locked(p);
	pthread_mutex_unlock(&p->lock);
}

/* Times are saved relative to the moment of saving, so a snapshot can be
 * loaded on another host whose monotonic clock has another origin: past
 * times are folded into base_d, future ones stored as offsets. */
static uint64_t future_offset(uint64_t t, uint64_t now)
{
	return t == NEVER ? NEVER : t > now ? t - now : 0;
}

static void pit_save(void *opaque, struct state_buf *b)
{
	struct pit *p = opaque;

	pthread_mutex_lock(&p->lock);
	uint64_t now = vm_clock_ns(p->vm);
	state_put_u8(b, PIT_STATE_VERSION);
	for (unsigned i = 0; i < 3; i++) {
		struct pit_channel *c = &p->ch[i];

		ch_sync(c, now);
		state_put_u8(b, c->ctrl);
		state_put_u8(b, (uint8_t)(c->cr_valid | c->gate << 1 |
					  c->loaded << 2 | c->counting << 3 |
					  c->held << 4 | c->write_msb_next << 5 |
					  c->read_msb_next << 6 |
					  c->count_latched << 7));
		state_put_u8(b, c->status_latched);
		state_put_u32(b, c->cr);
		state_put_u32(b, c->n);
		state_put_u64(b, ch_elapsed(c, now));
		state_put_u64(b, future_offset(ch_load_time(c), now));
		state_put_u64(b, future_offset(c->reload_at, now));
		state_put_u64(b, future_offset(c->null_until, now));
		state_put_u8(b, c->write_lsb);
		state_put_u16(b, c->latch);
		state_put_u8(b, c->status);
	}
	state_put_u8(b, p->port61);
	state_put_u8(b, p->tc_done);
	state_put_u64(b, future_offset(p->pulse_at, now));
	state_put_u64(b, p->last_pulse && now - p->last_pulse <
					     PIT_MIN_IRQ_PERIOD_NS
				 ? now - p->last_pulse
				 : NEVER);
	pthread_mutex_unlock(&p->lock);
}

static bool offset_ok(uint64_t off)
{
	return off == NEVER || off <= PIT_MAX_FUTURE_NS;
}

static uint64_t from_offset(uint64_t off, uint64_t now)
{
	return off == NEVER ? NEVER : now + off;
}

static int pit_load(void *opaque, struct state_reader *r)
{
	struct pit *p = opaque;
	struct pit_channel ch[3];
	uint64_t pulse_off, since;
	uint8_t port61, tc_done;

	if (state_get_u8(r) != PIT_STATE_VERSION)
		return -EINVAL;
	memset(ch, 0, sizeof(ch));
	for (unsigned i = 0; i < 3; i++) {
		struct pit_channel *c = &ch[i];
		uint8_t flags, mode, status_latched;
		uint64_t start_off, reload_off, null_off;

		c->ctrl = state_get_u8(r);
		flags = state_get_u8(r);
		status_latched = state_get_u8(r);
		c->cr = state_get_u32(r);
		c->n = state_get_u32(r);
		c->base_d = state_get_u64(r);
		start_off = state_get_u64(r);
		reload_off = state_get_u64(r);
		null_off = state_get_u64(r);
		c->write_lsb = state_get_u8(r);
		c->latch = state_get_u16(r);
		c->status = state_get_u8(r);
		if (r->err)
			return r->err;
		if ((c->ctrl & ~0x3f) || !((c->ctrl >> 4) & 3) ||
		    status_latched > 1 || c->cr < 1 || c->cr > 65536 ||
		    c->n < 1 || c->n > 65536 || c->base_d > (1ull << 62) ||
		    start_off > PIT_TICK_NS || !offset_ok(reload_off) ||
		    !offset_ok(null_off))
			return -EINVAL;
		mode = (c->ctrl >> 1) & 7;
		c->mode = mode > 5 ? mode - 4 : mode;
		c->status_latched = status_latched;
		c->cr_valid = flags & 1;
		c->gate = flags & 2;
		c->loaded = flags & 4;
		c->counting = flags & 8;
		c->held = flags & 16;
		c->write_msb_next = flags & 32;
		c->read_msb_next = flags & 64;
		c->count_latched = flags & 128;
		/* GATE0/1 are wired high; only GATE2 is guest-controlled. */
		if (i != 2 && !c->gate)
			return -EINVAL;
		/* Pending reloads only exist in modes 2/3 while counting. */
		if (reload_off != NEVER &&
		    (c->mode < 2 || c->mode > 3 || !c->counting))
			return -EINVAL;
		c->start_ns = start_off; /* made absolute below */
		c->reload_at = reload_off;
		c->null_until = null_off;
	}
	port61 = state_get_u8(r);
	tc_done = state_get_u8(r);
	pulse_off = state_get_u64(r);
	since = state_get_u64(r);
	if (r->err)
		return r->err;
	if ((port61 & ~0x0f) || tc_done > 1 || !offset_ok(pulse_off) ||
	    (since != NEVER && since >= PIT_MIN_IRQ_PERIOD_NS) ||
	    (bool)(port61 & 1) != ch[2].gate)
		return -EINVAL;

	pthread_mutex_lock(&p->lock);
	uint64_t now = vm_clock_ns(p->vm);
	for (unsigned i = 0; i < 3; i++) {
		ch[i].start_ns = now + ch[i].start_ns;
		ch[i].delay = 0;
		ch[i].reload_at = from_offset(ch[i].reload_at, now);
		ch[i].null_until = from_offset(ch[i].null_until, now);
		p->ch[i] = ch[i];
	}
	p->port61 = port61;
	p->tc_done = tc_done;
	p->pulse_at = from_offset(pulse_off, now);
	p->last_pulse = since == NEVER || since >= now ? 0 : now - since;
	pit_irq_update(p, now);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void pit_destroy(void *opaque)
{
	struct pit *p = opaque;

	vm_timer_del(&p->timer);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static const struct vm_device_ops pit_dev_ops = {
	.name = "pit",
	.reset = pit_reset,
	.save = pit_save,
	.load = pit_load,
	.destroy = pit_destroy,
};

int pit_create(struct vm *vm, struct pit **out)
{
	struct pit *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	pthread_mutex_init(&p->lock, NULL);
	vm_timer_init(&p->timer, vm, pit_timer_cb, p);
	pit_reset_locked(p);
	r = vm_add_device(vm, &pit_dev_ops, p);
	if (r) {
		pit_destroy(p);
		return r;
	}
	r = bus_register(&vm->pio, PC_PIT_PORT, 4, &pit_ops, p, "pit");
	if (!r)
		r = bus_register(&vm->pio, PC_PORT61, 1, &port61_ops, p,
				 "port61");
	if (r)
		return r;
	*out = p;
	return 0;
}
