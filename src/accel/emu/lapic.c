/*
 * lapic.c - the software CPU's local APICs and the APIC bus (lapic.h).
 *
 * Reference: Intel SDM Vol. 3A chapter 11, "Advanced Programmable Interrupt
 * Controller (APIC)": 11.4 (the local APIC, its base MSR, power-on / INIT /
 * software-disabled states), 11.5 (LVT, ESR, timer incl. TSC-deadline),
 * 11.6 (ICR and IPI destinations), 11.8 (TPR/PPR/APR, acceptance, EOI,
 * CR8), 11.11 (MSI format).  QEMU's hw/intc/apic.c and Linux's
 * arch/x86/kvm/lapic.c were read for the behaviour guests rely on where the
 * SDM leaves room; nothing is copied.
 *
 * SHAPE
 * One `struct lapic` per vCPU, all of them in one `struct lapic_bus` per
 * VM.  The bus is the APIC bus / system bus of a real machine: it carries
 * messages (IPIs from an ICR write, IOAPIC redirections and PCI MSIs, all
 * in one internal form, `struct apic_msg`) to the LAPICs whose destination
 * matches.  The bus is owned by the accelerator, not registered as a board
 * device: the accelerator outlives nothing it hands out (accel->destroy runs
 * before vm_destroy), and LAPIC state is per-vCPU state the accelerator
 * saves alongside the CPU registers (lapic_bus_save/load).
 *
 * The software CPU talks to its own LAPIC through plain calls: lapic_read/
 * lapic_write for the 4 KiB xAPIC page (its MMU routes the vCPU's accesses
 * there, never through vm->mmio, because each CPU sees its own APIC at the
 * same address), MSR and CR8 helpers, and at instruction boundaries an
 * atomic "events" word (lapic_poll) that tells it, with one load and no
 * lock, whether to look closer: INTR (a maskable interrupt is deliverable
 * once IF = 1), NMI, INIT, SIPI.  `events` is recomputed under the lock
 * after every state change, so it is exact up to the moment another thread
 * changes the LAPIC again, and every such change is followed by a kick.
 *
 * ACKNOWLEDGE
 * lapic_ack() acknowledges "the highest deliverable interrupt now" rather
 * than a vector the CPU read earlier: an IPI may land between the CPU's
 * check and its INTA, and the real LAPIC also decides at INTA time.  An
 * ExtINT (LINT0 in ExtINT mode wired to the 8259's INTR, the PC's "virtual
 * wire") is resolved by calling the 8259's INTA (ops.extint_ack) with no
 * LAPIC lock held: the PIC calls lapic_bus_pic_intr_handler() under its own
 * lock, so holding ours around pic_intack() would invert the lock order.
 * ExtINT is not subject to the TPR/PPR (SDM 11.8.3.2) and comes first.
 *
 * RESET STATE
 * Power-on (SDM 11.4.7.1): IRR/ISR/TMR/ICR/LDR/TPR 0, DFR all ones, every
 * LVT masked, SVR 0xFF (software-disabled), timer stopped, ID = CPU index,
 * IA32_APIC_BASE = 0xFEE00000 | ENABLE (| BSP on CPU 0).  One deviation, as
 * KVM and QEMU: the BSP's LVT LINT0 starts as 0x700 (ExtINT, unmasked),
 * which is what a BIOS leaves behind, so a guest loaded without firmware
 * (our direct kernel boot, our small test guests) gets PIC interrupts
 * without programming its LAPIC first.  INIT (11.4.7.3) is the same except
 * that the ID and IA32_APIC_BASE keep their values; it is applied when the
 * vCPU consumes it (lapic_take_init), on its own thread.  APs start in the
 * wait-for-SIPI state; a SIPI is accepted only in that state.
 *
 * SOFTWARE / GLOBAL DISABLE
 * SVR bit 8 clear: every LVT gets its mask bit set (and LVT writes keep
 * it), fixed and lowest-priority messages are dropped, NMI/INIT/SIPI still
 * arrive; IRR/ISR are kept (11.4.7.2).  IA32_APIC_BASE.ENABLE clear: the
 * APIC disappears from the bus (no destination matches it), its state goes
 * back to power-on, and LINT0/LINT1 act as the CPU's plain INTR and NMI
 * pins (as a CPU without an APIC), which is what KVM does too.
 *
 * DESTINATIONS (11.6.2)
 * Physical: the 8-bit ID, 0xFF broadcast.  Logical: flat model (DFR
 * 31:28 = 1111: the destination is a bit mask ANDed with LDR 31:24) and
 * cluster model (0000: high nibble cluster, low nibble mask; 0xFF
 * broadcast).  Lowest priority goes to the matching LAPIC with the lowest
 * arbitration priority (APR, 11.8.3.1 as the P6 family describes it),
 * first by CPU index on a tie; no focus-processor check.  ICR shorthands:
 * self, all including self, all excluding self.  A disabled APIC matches
 * nothing.  Matching reads each target's ID/LDR/DFR under that target's
 * lock, one LAPIC at a time.
 *
 * TIMER (11.5.4)
 * The APIC timer counts bus clocks.  We take the bus clock as 1 GHz, one
 * tick per ns of vm_clock_ns(), the convention of both KVM
 * (APIC_BUS_CYCLE_NS = 1) and QEMU: guests calibrate the LAPIC timer
 * against the PIT/PM timer or read the rate, so any rate works, and 1 GHz
 * makes "initial count x divide" a duration in ns with no rounding.  The
 * TSC rate is the CPU model's business: TSC-deadline mode takes its
 * deadline already converted to vm_clock_ns() time.
 *   State: `timer_deadline` is the absolute ns of the next expiry (0 = not
 *   running).  Current count = ceil((deadline - now) / divide), capped at
 *   the initial count, so it reads the initial count right after the
 *   write and 0 at expiry; in periodic mode a late timer thread is
 *   accounted for by taking the remainder modulo the period.
 *   One-shot: expiry delivers once and stops.  Periodic: the period is
 *   initial x divide but never below LAPIC_MIN_PERIOD_NS (200 us, KVM's
 *   min_timer_period_us): a hostile count of 1 with divide 1 would
 *   otherwise make the I/O thread fire a billion times a second.  If the
 *   timer thread falls behind, missed periods are skipped (the interrupt
 *   is an edge into IRR, so they would coalesce anyway) instead of firing
 *   back to back.  One-shot and TSC-deadline need no clamp: each expiry
 *   costs the guest a register write.
 *   Writing the divide register while counting keeps the current count
 *   and continues at the new rate.  Switching into or out of TSC-deadline
 *   mode stops the timer and clears the initial count (as KVM); switching
 *   between one-shot and periodic takes effect at the next expiry.  Mode
 *   3 (reserved) does not count.  The vm_timer callback re-checks the
 *   deadline under the lock, so a timer reprogrammed while its callback
 *   was already on its way is ignored.
 *
 * ERRORS (11.5.3)
 * Vectors 0-15 are illegal for fixed/lowest-priority interrupts: sending
 * one sets ESR bit 5 and sends nothing, receiving one (MSI, LVT) sets
 * ESR bit 6 and drops it; either raises the LVT error interrupt if that
 * is unmasked with a legal vector.  Errors collect in `esr_pending` and
 * appear in ESR on the next ESR write, as the SDM describes.
 *
 * HOSTILE GUEST
 * Every register write is masked to its writable bits; reserved offsets
 * are ignored; no guest value indexes anything without a bound (vectors
 * are 8 bits into 256-bit arrays).  Interrupt storms are bounded: the
 * periodic timer by the clamp above, IPIs by the guest's own ICR writes,
 * level interrupts by its EOIs.  Snapshot loads are validated like
 * register writes plus the invariants the code relies on.
 *
 * LOCKING
 * One mutex per LAPIC.  It is never held while calling out (kick, eoi,
 * extint_ack) or while taking another LAPIC's lock: a message is built
 * under the sender's lock and delivered after it is dropped, then each
 * target is locked in turn.  Lock order: PIC lock -> LAPIC lock (the
 * PIC's intr callback) and LAPIC lock -> vm->timer_lock (arming the
 * timer); vm_timers_run() calls our timer callback with no lock held.
 * x2APIC is not offered (CPUID hides it; EXTD in IA32_APIC_BASE is
 * reserved); it would add an MSR front end to the same register file.
 */
#include "accel/emu/lapic.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/timer.h"
#include "core/vm.h"

#define LAPIC_STATE_VERSION 1
#define BUS_STATE_VERSION   1

/* LVT indices: lvt[i] is at LAPIC_REG_LVT_TIMER + 0x10 * i. */
enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR,
       NR_LVT };

#define LVT_VECTOR   0x000ffu
#define LVT_MODE     0x00700u
#define LVT_POLARITY 0x02000u
#define LVT_LEVEL    0x08000u
#define LVT_MASKED   0x10000u
#define LVT_TIMER_MODE (3u << 17)

/* Writable bits of each LVT (delivery status 12 and remote IRR 14 are
 * read-only and always 0 here: we deliver at once). */
static const uint32_t lvt_writable[NR_LVT] = {
	[LVT_TIMER] = LVT_VECTOR | LVT_MASKED | LVT_TIMER_MODE,
	[LVT_THERMAL] = LVT_VECTOR | LVT_MODE | LVT_MASKED,
	[LVT_PERF] = LVT_VECTOR | LVT_MODE | LVT_MASKED,
	[LVT_LINT0] = LVT_VECTOR | LVT_MODE | LVT_POLARITY | LVT_LEVEL |
		      LVT_MASKED,
	[LVT_LINT1] = LVT_VECTOR | LVT_MODE | LVT_POLARITY | LVT_LEVEL |
		      LVT_MASKED,
	[LVT_ERROR] = LVT_VECTOR | LVT_MASKED,
};

/* Timer modes, LVT timer bits 18:17. */
enum { TIMER_ONESHOT, TIMER_PERIODIC, TIMER_TSC_DEADLINE, TIMER_RESERVED };

/* Delivery modes (ICR / MSI data bits 10:8, LVT bits 10:8). */
enum { DM_FIXED, DM_LOWEST, DM_SMI, DM_RES3, DM_NMI, DM_INIT, DM_SIPI,
       DM_EXTINT };

/* ICR shorthands, bits 19:18. */
enum { SH_NONE, SH_SELF, SH_ALL, SH_OTHERS };

#define ICR_LO_WRITABLE 0x000ccfffu /* delivery status 12 reads 0 */
#define ICR_LEVEL       (1u << 14)
#define ICR_TRIGGER     (1u << 15)
#define ICR_LOGICAL     (1u << 11)

#define SVR_WRITABLE 0x3ffu /* vector, enable (8), focus check (9) */
#define SVR_ENABLE   0x100u

#define ESR_SEND_ILLEGAL 0x20u
#define ESR_RECV_ILLEGAL 0x40u
#define ESR_DEFINED      0xefu /* bits 0-3, 5-7 */

#define DIV_WRITABLE 0xbu

#define BASE_RESERVED (0xffull | 1ull << 9 | LAPIC_BASE_EXTD | \
		       0xfff0000000000000ull)
#define BASE_DEFAULT  (0xfee00000ull | LAPIC_BASE_ENABLE)

/* The largest timer span: initial count 2^32-1 at divide 128. */
#define TIMER_MAX_NS (0xffffffffull * 128)

struct lapic {
	struct lapic_bus *bus;
	int index;
	pthread_mutex_t lock;
	unsigned events;           /* LAPIC_EV_*, atomic accesses only */
	uint64_t apic_base;        /* atomic stores, read lockless */

	uint32_t id, tpr, ldr, dfr, svr;
	uint32_t isr[8], tmr[8], irr[8];
	uint32_t esr, esr_pending;
	uint32_t icr_lo, icr_hi;
	uint32_t lvt[NR_LVT];
	uint32_t timer_init, timer_div;
	uint64_t timer_deadline;   /* ns; 0 = not counting / TSC disarmed */

	bool nmi_pending, init_pending, sipi_pending, wait_sipi, extint_msg;
	uint8_t sipi_vector;
	bool lint0, lint1;         /* pin levels as driven (before polarity) */

	struct vm_timer timer;
};

struct lapic_bus {
	struct vm *vm;
	int nr;
	struct lapic_bus_ops ops;
	void *opaque;
	struct lapic cpus[];
};

/* A message on the APIC bus: an IPI, an IOAPIC redirection or an MSI. */
struct apic_msg {
	uint8_t vector, mode, dest;
	bool logical;
	bool level_trig; /* sets TMR: EOI goes back to the IOAPIC */
	bool assert;     /* false only for an INIT level de-assert */
	int shorthand;
	const struct lapic *src; /* for shorthands */
};

/* --- small helpers --------------------------------------------------- */

static bool vec_test(const uint32_t *a, unsigned v)
{
	return (a[v >> 5] >> (v & 31)) & 1;
}

static void vec_set(uint32_t *a, unsigned v)
{
	a[v >> 5] |= 1u << (v & 31);
}

static void vec_clear(uint32_t *a, unsigned v)
{
	a[v >> 5] &= ~(1u << (v & 31));
}

static int vec_highest(const uint32_t *a)
{
	for (int i = 7; i >= 0; i--)
		if (a[i])
			return i * 32 + 31 - __builtin_clz(a[i]);
	return -1;
}

static bool hw_enabled(const struct lapic *l)
{
	return __atomic_load_n(&l->apic_base, __ATOMIC_ACQUIRE) &
	       LAPIC_BASE_ENABLE;
}

static bool sw_enabled(const struct lapic *l)
{
	return l->svr & SVR_ENABLE;
}

static bool is_bsp(const struct lapic *l)
{
	return l->apic_base & LAPIC_BASE_BSP;
}

static unsigned timer_mode(const struct lapic *l)
{
	return (l->lvt[LVT_TIMER] >> 17) & 3;
}

static unsigned lvt_mode(uint32_t lvt)
{
	return (lvt >> 8) & 7;
}

/* Divide configuration bits 0, 1, 3 -> 2, 4, ..., 128, 1 (11.5.4). */
static uint64_t timer_divide(const struct lapic *l)
{
	unsigned bits = (l->timer_div & 3) | ((l->timer_div >> 1) & 4);

	return 1ull << ((bits + 1) & 7);
}

static uint64_t now_ns(const struct lapic *l)
{
	return vm_clock_ns(l->bus->vm);
}

/* PPR (11.8.3.1): the higher of TPR and the in-service class. */
static uint32_t ppr(const struct lapic *l)
{
	int isrv = vec_highest(l->isr);
	uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

	return (l->tpr & 0xf0) >= isr_class ? l->tpr & 0xff : isr_class;
}

/* APR (11.8.3.1, as the P6 family defines it): TPR if it is at least the
 * highest requested and above the in-service class, else the highest of
 * the three classes. */
static uint32_t apr(const struct lapic *l)
{
	int isrv = vec_highest(l->isr), irrv = vec_highest(l->irr);
	uint32_t tc = l->tpr & 0xf0;
	uint32_t sc = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;
	uint32_t rc = irrv < 0 ? 0 : (uint32_t)irrv & 0xf0;
	uint32_t m;

	if (tc >= rc && tc > sc)
		return l->tpr & 0xff;
	m = tc > sc ? tc : sc;
	return m > rc ? m : rc;
}

static bool lint_asserted(const struct lapic *l, int idx)
{
	bool wire = idx == LVT_LINT0 ? l->lint0 : l->lint1;

	if (!hw_enabled(l))
		return wire;
	return wire != !!(l->lvt[idx] & LVT_POLARITY);
}

static bool extint_pending_locked(const struct lapic *l)
{
	uint32_t lvt0 = l->lvt[LVT_LINT0];

	if (l->extint_msg)
		return true;
	if (!hw_enabled(l))
		return l->lint0;
	return !(lvt0 & LVT_MASKED) && lvt_mode(lvt0) == DM_EXTINT &&
	       lint_asserted(l, LVT_LINT0);
}

static int fixed_pending_locked(const struct lapic *l)
{
	int irrv = vec_highest(l->irr);

	if (irrv < 0 || ((uint32_t)irrv & 0xf0) <= (ppr(l) & 0xf0))
		return -1;
	return irrv;
}

static void update_events_locked(struct lapic *l)
{
	unsigned ev = 0;

	if (extint_pending_locked(l) || fixed_pending_locked(l) >= 0)
		ev |= LAPIC_EV_INTR;
	if (l->nmi_pending)
		ev |= LAPIC_EV_NMI;
	if (l->init_pending)
		ev |= LAPIC_EV_INIT;
	if (l->sipi_pending)
		ev |= LAPIC_EV_SIPI;
	__atomic_store_n(&l->events, ev, __ATOMIC_RELEASE);
}

static void kick(struct lapic *l)
{
	struct lapic_bus *bus = l->bus;

	if (bus->ops.kick)
		bus->ops.kick(bus->opaque, l->index);
}

/* --- acceptance ------------------------------------------------------ */

static void error_locked(struct lapic *l, uint32_t bit);

/* Put fixed `vector` into IRR (11.8.4); false if it was refused. */
static bool accept_fixed_locked(struct lapic *l, uint8_t vector,
				bool level_trig)
{
	if (!sw_enabled(l))
		return false;
	if (vector < 16) {
		error_locked(l, ESR_RECV_ILLEGAL);
		return true;
	}
	vec_set(l->irr, vector);
	if (level_trig)
		vec_set(l->tmr, vector);
	else
		vec_clear(l->tmr, vector);
	return true;
}

/* Record an error; raise the LVT error interrupt if it is set up. */
static void error_locked(struct lapic *l, uint32_t bit)
{
	uint32_t lvt = l->lvt[LVT_ERROR];

	l->esr_pending |= bit;
	if ((lvt & LVT_MASKED) || !sw_enabled(l))
		return;
	if ((lvt & LVT_VECTOR) < 16) {
		l->esr_pending |= ESR_RECV_ILLEGAL; /* no recursion */
		return;
	}
	vec_set(l->irr, lvt & LVT_VECTOR);
	vec_clear(l->tmr, lvt & LVT_VECTOR);
}

/* Accept one message (11.6.1 delivery modes).  Returns whether the vCPU
 * needs a kick. */
static bool accept_locked(struct lapic *l, const struct apic_msg *m)
{
	bool r = true;

	switch (m->mode) {
	case DM_FIXED:
	case DM_LOWEST:
		r = accept_fixed_locked(l, m->vector, m->level_trig);
		break;
	case DM_NMI:
		l->nmi_pending = true;
		break;
	case DM_INIT:
		if (m->level_trig && !m->assert)
			return false; /* INIT level de-assert (11.4.7.4) */
		l->init_pending = true;
		break;
	case DM_SIPI:
		l->sipi_pending = true;
		l->sipi_vector = m->vector;
		break;
	case DM_EXTINT:
		l->extint_msg = true;
		break;
	default: /* SMI (no SMM), reserved modes */
		return false;
	}
	update_events_locked(l);
	return r;
}

/* Deliver through LVT entry `idx` (timer, LINT, ...): 11.5.1. */
static bool local_deliver_locked(struct lapic *l, int idx)
{
	uint32_t lvt = l->lvt[idx];
	struct apic_msg m = { .vector = lvt & LVT_VECTOR, .assert = true };

	if (lvt & LVT_MASKED)
		return false;
	/* The timer and error LVTs have no delivery mode: always fixed. */
	m.mode = (idx == LVT_TIMER || idx == LVT_ERROR) ? DM_FIXED
							: lvt_mode(lvt);
	if (m.mode == DM_EXTINT || m.mode == DM_LOWEST || m.mode == DM_SIPI)
		return false; /* ExtINT is level-polled; the others are not
				 valid LVT delivery modes */
	return accept_locked(l, &m);
}

/* --- the bus ---------------------------------------------------------- */

static bool match_locked(const struct lapic *l, const struct apic_msg *m)
{
	uint8_t lid;

	if (!hw_enabled(l))
		return false;
	if (!m->logical)
		return m->dest == 0xff || m->dest == (uint8_t)(l->id >> 24);
	lid = (uint8_t)(l->ldr >> 24);
	switch (l->dfr >> 28) {
	case 0xf: /* flat */
		return (lid & m->dest) != 0;
	case 0x0: /* cluster */
		if (m->dest == 0xff)
			return true;
		return (m->dest >> 4) == (lid >> 4) &&
		       (m->dest & lid & 0x0f) != 0;
	default:
		return false;
	}
}

static bool targeted_locked(const struct lapic *l, const struct apic_msg *m)
{
	switch (m->shorthand) {
	case SH_SELF:
		return l == m->src;
	case SH_ALL:
		return hw_enabled(l);
	case SH_OTHERS:
		return l != m->src && hw_enabled(l);
	default:
		return match_locked(l, m);
	}
}

static void bus_deliver(struct lapic_bus *bus, const struct apic_msg *m)
{
	if (m->mode == DM_LOWEST) {
		int best = -1;
		uint32_t best_apr = 0;

		for (int i = 0; i < bus->nr; i++) {
			struct lapic *l = &bus->cpus[i];
			uint32_t a;
			bool t;

			pthread_mutex_lock(&l->lock);
			t = targeted_locked(l, m) && sw_enabled(l);
			a = apr(l);
			pthread_mutex_unlock(&l->lock);
			if (t && (best < 0 || a < best_apr)) {
				best = i;
				best_apr = a;
			}
		}
		if (best >= 0) {
			struct lapic *l = &bus->cpus[best];
			bool k;

			pthread_mutex_lock(&l->lock);
			k = accept_locked(l, m);
			pthread_mutex_unlock(&l->lock);
			if (k)
				kick(l);
		}
		return;
	}
	for (int i = 0; i < bus->nr; i++) {
		struct lapic *l = &bus->cpus[i];
		bool k = false;

		pthread_mutex_lock(&l->lock);
		if (targeted_locked(l, m))
			k = accept_locked(l, m);
		pthread_mutex_unlock(&l->lock);
		if (k)
			kick(l);
	}
}

void lapic_bus_deliver_msi(struct lapic_bus *bus, uint64_t addr,
			   uint32_t data)
{
	struct apic_msg m = {
		.vector = (uint8_t)data,
		.mode = (data >> 8) & 7,
		.dest = (uint8_t)(addr >> 12),
		.logical = (addr >> 2) & 1,
		.level_trig = (data >> 15) & 1,
		.assert = true, /* an MSI always asserts (data bit 14 ignored) */
		.shorthand = SH_NONE,
	};

	if ((addr & 0xfffffffffff00000ull) != 0xfee00000ull)
		return;
	bus_deliver(bus, &m);
}

void lapic_bus_msi_handler(void *bus, uint64_t addr, uint32_t data)
{
	lapic_bus_deliver_msi(bus, addr, data);
}

void lapic_bus_pic_intr_handler(void *opaque, bool level)
{
	struct lapic_bus *bus = opaque;

	for (int i = 0; i < bus->nr; i++)
		lapic_set_lint0(&bus->cpus[i], level);
}

/* --- timer ------------------------------------------------------------ */

static uint64_t periodic_ns(const struct lapic *l)
{
	uint64_t p = (uint64_t)l->timer_init * timer_divide(l);

	return p < LAPIC_MIN_PERIOD_NS ? LAPIC_MIN_PERIOD_NS : p;
}

static void timer_stop_locked(struct lapic *l)
{
	l->timer_deadline = 0;
	vm_timer_del(&l->timer);
}

static void timer_arm_locked(struct lapic *l, uint64_t deadline)
{
	l->timer_deadline = deadline ? deadline : 1;
	vm_timer_mod(&l->timer, l->timer_deadline);
}

/* (Re)start counting from the initial count (11.5.4). */
static void timer_start_locked(struct lapic *l, uint64_t now)
{
	unsigned mode = timer_mode(l);

	if (!l->timer_init || (mode != TIMER_ONESHOT && mode != TIMER_PERIODIC)) {
		timer_stop_locked(l);
		return;
	}
	if (mode == TIMER_PERIODIC)
		timer_arm_locked(l, now + periodic_ns(l));
	else
		timer_arm_locked(l, now + (uint64_t)l->timer_init *
					      timer_divide(l));
}

static uint32_t current_count_locked(const struct lapic *l, uint64_t now)
{
	unsigned mode = timer_mode(l);
	uint64_t div = timer_divide(l), rem, cnt;

	if (!l->timer_deadline ||
	    (mode != TIMER_ONESHOT && mode != TIMER_PERIODIC))
		return 0;
	if (now < l->timer_deadline) {
		rem = l->timer_deadline - now;
	} else if (mode == TIMER_PERIODIC) {
		uint64_t p = periodic_ns(l);

		rem = p - (now - l->timer_deadline) % p;
	} else {
		return 0;
	}
	cnt = (rem + div - 1) / div;
	return cnt > l->timer_init ? l->timer_init : (uint32_t)cnt;
}

static void timer_fire(void *opaque)
{
	struct lapic *l = opaque;
	uint64_t now = now_ns(l);
	bool k = false;

	pthread_mutex_lock(&l->lock);
	if (!l->timer_deadline || now < l->timer_deadline) {
		/* Reprogrammed or stopped while we were on our way. */
		pthread_mutex_unlock(&l->lock);
		return;
	}
	switch (timer_mode(l)) {
	case TIMER_PERIODIC: {
		uint64_t p = periodic_ns(l);
		uint64_t missed = (now - l->timer_deadline) / p;

		k = local_deliver_locked(l, LVT_TIMER);
		/* Skip periods the timer thread missed: no burst. */
		timer_arm_locked(l, l->timer_deadline + (missed + 1) * p);
		break;
	}
	case TIMER_ONESHOT:
	case TIMER_TSC_DEADLINE:
		l->timer_deadline = 0;
		k = local_deliver_locked(l, LVT_TIMER);
		break;
	default:
		l->timer_deadline = 0;
		break;
	}
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

void lapic_set_tsc_deadline(struct lapic *l, uint64_t deadline_ns)
{
	bool k = false;

	pthread_mutex_lock(&l->lock);
	if (timer_mode(l) != TIMER_TSC_DEADLINE) {
		pthread_mutex_unlock(&l->lock);
		return;
	}
	if (!deadline_ns) {
		timer_stop_locked(l);
	} else if (deadline_ns <= now_ns(l)) {
		timer_stop_locked(l);
		k = local_deliver_locked(l, LVT_TIMER);
	} else {
		timer_arm_locked(l, deadline_ns);
	}
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

uint64_t lapic_get_tsc_deadline(struct lapic *l)
{
	uint64_t d;

	pthread_mutex_lock(&l->lock);
	d = timer_mode(l) == TIMER_TSC_DEADLINE ? l->timer_deadline : 0;
	pthread_mutex_unlock(&l->lock);
	return d;
}

/* --- reset ------------------------------------------------------------ */

/* INIT state (11.4.7.3): power-on state but ID and base kept. */
static void init_reset_locked(struct lapic *l)
{
	timer_stop_locked(l);
	l->tpr = 0;
	l->ldr = 0;
	l->dfr = 0xffffffffu;
	l->svr = 0xff;
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	memset(l->irr, 0, sizeof(l->irr));
	l->esr = l->esr_pending = 0;
	l->icr_lo = l->icr_hi = 0;
	for (int i = 0; i < NR_LVT; i++)
		l->lvt[i] = LVT_MASKED;
	if (is_bsp(l))
		l->lvt[LVT_LINT0] = DM_EXTINT << 8; /* what a BIOS leaves */
	l->timer_init = 0;
	l->timer_div = 0;
	l->nmi_pending = false;
	l->extint_msg = false;
}

static void power_on_reset_locked(struct lapic *l)
{
	__atomic_store_n(&l->apic_base,
			 BASE_DEFAULT | (l->index == 0 ? LAPIC_BASE_BSP : 0),
			 __ATOMIC_RELEASE);
	l->id = (uint32_t)l->index << 24;
	init_reset_locked(l);
	l->init_pending = l->sipi_pending = false;
	l->sipi_vector = 0;
	l->wait_sipi = !is_bsp(l);
	update_events_locked(l);
}

void lapic_reset(struct lapic *l)
{
	pthread_mutex_lock(&l->lock);
	power_on_reset_locked(l);
	pthread_mutex_unlock(&l->lock);
}

void lapic_bus_reset(struct lapic_bus *bus)
{
	for (int i = 0; i < bus->nr; i++)
		lapic_reset(&bus->cpus[i]);
}

/* --- registers --------------------------------------------------------- */

uint32_t lapic_read(struct lapic *l, uint32_t offset)
{
	uint32_t v = 0;

	if ((offset & 0xf) || offset >= LAPIC_MMIO_SIZE)
		return 0;
	pthread_mutex_lock(&l->lock);
	switch (offset) {
	case LAPIC_REG_ID:
		v = l->id;
		break;
	case LAPIC_REG_VERSION:
		v = LAPIC_VERSION;
		break;
	case LAPIC_REG_TPR:
		v = l->tpr;
		break;
	case LAPIC_REG_APR:
		v = apr(l);
		break;
	case LAPIC_REG_PPR:
		v = ppr(l);
		break;
	case LAPIC_REG_LDR:
		v = l->ldr;
		break;
	case LAPIC_REG_DFR:
		v = l->dfr;
		break;
	case LAPIC_REG_SVR:
		v = l->svr;
		break;
	case LAPIC_REG_ESR:
		v = l->esr;
		break;
	case LAPIC_REG_ICR_LO:
		v = l->icr_lo;
		break;
	case LAPIC_REG_ICR_HI:
		v = l->icr_hi;
		break;
	case LAPIC_REG_TIMER_INIT:
		v = l->timer_init;
		break;
	case LAPIC_REG_TIMER_CUR:
		v = current_count_locked(l, now_ns(l));
		break;
	case LAPIC_REG_TIMER_DIV:
		v = l->timer_div;
		break;
	default:
		if (offset >= LAPIC_REG_ISR && offset < LAPIC_REG_ISR + 0x80)
			v = l->isr[(offset - LAPIC_REG_ISR) >> 4];
		else if (offset >= LAPIC_REG_TMR && offset < LAPIC_REG_TMR + 0x80)
			v = l->tmr[(offset - LAPIC_REG_TMR) >> 4];
		else if (offset >= LAPIC_REG_IRR && offset < LAPIC_REG_IRR + 0x80)
			v = l->irr[(offset - LAPIC_REG_IRR) >> 4];
		else if (offset >= LAPIC_REG_LVT_TIMER &&
			 offset <= LAPIC_REG_LVT_ERROR)
			v = l->lvt[(offset - LAPIC_REG_LVT_TIMER) >> 4];
		/* EOI (write-only), RRD, CMCI, reserved: 0 */
		break;
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

/* Side effects to run once the lock is dropped. */
struct post {
	bool send;
	struct apic_msg msg;
	int eoi_vector; /* -1: none */
	bool kick;
};

static void write_lvt_locked(struct lapic *l, int idx, uint32_t value)
{
	uint32_t old = l->lvt[idx], nv = value & lvt_writable[idx];
	unsigned om, nm;

	if (!sw_enabled(l))
		nv |= LVT_MASKED;
	l->lvt[idx] = nv;
	if (idx != LVT_TIMER)
		return;
	/* Into or out of TSC-deadline (or into the reserved mode): stop and
	 * forget the count.  One-shot <-> periodic: next expiry decides. */
	om = (old >> 17) & 3;
	nm = (nv >> 17) & 3;
	if ((om == TIMER_TSC_DEADLINE) != (nm == TIMER_TSC_DEADLINE) ||
	    nm == TIMER_RESERVED) {
		timer_stop_locked(l);
		l->timer_init = 0;
	}
}

static void write_icr_locked(struct lapic *l, uint32_t value, struct post *p)
{
	struct apic_msg *m = &p->msg;

	l->icr_lo = value & ICR_LO_WRITABLE;
	*m = (struct apic_msg){
		.vector = (uint8_t)l->icr_lo,
		.mode = (l->icr_lo >> 8) & 7,
		.dest = (uint8_t)(l->icr_hi >> 24),
		.logical = l->icr_lo & ICR_LOGICAL,
		.level_trig = l->icr_lo & ICR_TRIGGER,
		.assert = l->icr_lo & ICR_LEVEL,
		.shorthand = (l->icr_lo >> 18) & 3,
		.src = l,
	};
	/* Fixed and lowest-priority IPIs are edge-triggered: TMR stays 0. */
	if (m->mode == DM_FIXED || m->mode == DM_LOWEST) {
		m->level_trig = false;
		if (m->vector < 16) {
			error_locked(l, ESR_SEND_ILLEGAL);
			return;
		}
	}
	if (m->mode == DM_EXTINT || m->mode == DM_RES3)
		return; /* not valid in the ICR */
	p->send = true;
}

void lapic_write(struct lapic *l, uint32_t offset, uint32_t value)
{
	struct post p = { .eoi_vector = -1 };
	uint64_t now;
	int v;

	if ((offset & 0xf) || offset >= LAPIC_MMIO_SIZE)
		return;
	now = now_ns(l);
	pthread_mutex_lock(&l->lock);
	switch (offset) {
	case LAPIC_REG_ID:
		l->id = value & 0xff000000u;
		break;
	case LAPIC_REG_TPR:
		l->tpr = value & 0xff;
		break;
	case LAPIC_REG_EOI:
		v = vec_highest(l->isr);
		if (v >= 0) {
			vec_clear(l->isr, (unsigned)v);
			if (vec_test(l->tmr, (unsigned)v))
				p.eoi_vector = v;
		}
		break;
	case LAPIC_REG_LDR:
		l->ldr = value & 0xff000000u;
		break;
	case LAPIC_REG_DFR:
		l->dfr = (value & 0xf0000000u) | 0x0fffffffu;
		break;
	case LAPIC_REG_SVR:
		l->svr = value & SVR_WRITABLE;
		if (!sw_enabled(l))
			for (int i = 0; i < NR_LVT; i++)
				l->lvt[i] |= LVT_MASKED;
		break;
	case LAPIC_REG_ESR:
		l->esr = l->esr_pending;
		l->esr_pending = 0;
		break;
	case LAPIC_REG_ICR_LO:
		write_icr_locked(l, value, &p);
		break;
	case LAPIC_REG_ICR_HI:
		l->icr_hi = value & 0xff000000u;
		break;
	case LAPIC_REG_TIMER_INIT:
		if (timer_mode(l) == TIMER_TSC_DEADLINE ||
		    timer_mode(l) == TIMER_RESERVED)
			break; /* ignored in TSC-deadline mode (11.5.4.1) */
		l->timer_init = value;
		timer_start_locked(l, now);
		break;
	case LAPIC_REG_TIMER_DIV: {
		uint32_t cur = current_count_locked(l, now);
		bool counting = l->timer_deadline &&
				(timer_mode(l) == TIMER_ONESHOT ||
				 timer_mode(l) == TIMER_PERIODIC);

		l->timer_div = value & DIV_WRITABLE;
		/* Keep the current count, continue at the new rate. */
		if (counting && cur)
			timer_arm_locked(l, now + (uint64_t)cur *
						      timer_divide(l));
		break;
	}
	default:
		if (offset >= LAPIC_REG_LVT_TIMER &&
		    offset <= LAPIC_REG_LVT_ERROR)
			write_lvt_locked(l, (offset - LAPIC_REG_LVT_TIMER) >> 4,
					 value);
		/* ID/version/APR/PPR/ISR/TMR/IRR/RRD/current count and
		 * reserved offsets: read-only or nothing. */
		break;
	}
	update_events_locked(l);
	pthread_mutex_unlock(&l->lock);

	if (p.eoi_vector >= 0 && l->bus->ops.eoi)
		l->bus->ops.eoi(l->bus->opaque, (uint8_t)p.eoi_vector);
	if (p.send)
		bus_deliver(l->bus, &p.msg);
}

/* --- MSRs, CR8, pins ----------------------------------------------------- */

uint64_t lapic_get_base(struct lapic *l)
{
	return __atomic_load_n(&l->apic_base, __ATOMIC_ACQUIRE);
}

bool lapic_hw_enabled(struct lapic *l)
{
	return hw_enabled(l);
}

int lapic_set_base(struct lapic *l, uint64_t value)
{
	uint64_t old;

	if (value & BASE_RESERVED)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	old = l->apic_base;
	if ((old & LAPIC_BASE_ENABLE) && !(value & LAPIC_BASE_ENABLE)) {
		/* Going away: back to power-on state (11.4.3); the CPU's
		 * run state (waiting for SIPI or not) does not change. */
		bool wait = l->wait_sipi;

		power_on_reset_locked(l);
		l->wait_sipi = wait;
	}
	__atomic_store_n(&l->apic_base, value, __ATOMIC_RELEASE);
	update_events_locked(l);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

uint8_t lapic_get_cr8(struct lapic *l)
{
	uint8_t v;

	pthread_mutex_lock(&l->lock);
	v = (uint8_t)((l->tpr >> 4) & 0xf);
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_set_cr8(struct lapic *l, uint8_t cr8)
{
	pthread_mutex_lock(&l->lock);
	l->tpr = (uint32_t)(cr8 & 0xf) << 4;
	update_events_locked(l);
	pthread_mutex_unlock(&l->lock);
}

static void set_lint(struct lapic *l, int idx, bool level)
{
	bool *wire = idx == LVT_LINT0 ? &l->lint0 : &l->lint1;
	bool was, now, k = false;

	pthread_mutex_lock(&l->lock);
	was = lint_asserted(l, idx);
	*wire = level;
	now = lint_asserted(l, idx);
	if (!was && now) {
		if (!hw_enabled(l)) {
			/* No APIC: LINT0 is INTR (polled), LINT1 is NMI. */
			if (idx == LVT_LINT1)
				l->nmi_pending = true;
			k = true;
		} else if (lvt_mode(l->lvt[idx]) == DM_EXTINT) {
			k = !(l->lvt[idx] & LVT_MASKED);
		} else {
			k = local_deliver_locked(l, idx);
		}
	}
	update_events_locked(l);
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

void lapic_set_lint0(struct lapic *l, bool level)
{
	set_lint(l, LVT_LINT0, level);
}

void lapic_set_lint1(struct lapic *l, bool level)
{
	set_lint(l, LVT_LINT1, level);
}

/* --- the CPU's side ------------------------------------------------------ */

int lapic_cpu_index(const struct lapic *l)
{
	return l->index;
}

unsigned lapic_poll(struct lapic *l)
{
	return __atomic_load_n(&l->events, __ATOMIC_ACQUIRE);
}

int lapic_pending_vector(struct lapic *l)
{
	int v;

	pthread_mutex_lock(&l->lock);
	v = extint_pending_locked(l) ? LAPIC_EXTINT : fixed_pending_locked(l);
	pthread_mutex_unlock(&l->lock);
	return v;
}

int lapic_ack(struct lapic *l)
{
	struct lapic_bus *bus = l->bus;
	int v;

	pthread_mutex_lock(&l->lock);
	if (extint_pending_locked(l)) {
		l->extint_msg = false;
		update_events_locked(l);
		pthread_mutex_unlock(&l->lock);
		/* The 8259 drops INTR (lapic_set_lint0) inside its INTA. */
		if (!bus->ops.extint_ack)
			return -1;
		return bus->ops.extint_ack(bus->opaque) & 0xff;
	}
	v = fixed_pending_locked(l);
	if (v >= 0) {
		vec_clear(l->irr, (unsigned)v);
		vec_set(l->isr, (unsigned)v);
		update_events_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

bool lapic_take_nmi(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->nmi_pending;
	l->nmi_pending = false;
	update_events_locked(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

bool lapic_take_init(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->init_pending;
	if (r) {
		l->init_pending = false;
		init_reset_locked(l);
		l->wait_sipi = !is_bsp(l);
		update_events_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
	return r;
}

int lapic_take_sipi(struct lapic *l)
{
	int v = -1;

	pthread_mutex_lock(&l->lock);
	if (l->sipi_pending) {
		l->sipi_pending = false;
		if (l->wait_sipi) {
			l->wait_sipi = false;
			v = l->sipi_vector;
		}
		update_events_locked(l);
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

bool lapic_waiting_for_sipi(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->wait_sipi;
	pthread_mutex_unlock(&l->lock);
	return r;
}

/* --- save / load ------------------------------------------------------- */

enum { F_NMI = 1, F_INIT = 2, F_SIPI = 4, F_WAIT_SIPI = 8, F_EXTINT = 16,
       F_LINT0 = 32, F_LINT1 = 64, F_ALL = 127 };

/* Everything a LAPIC saves, parsed and validated before it is applied. */
struct lapic_image {
	uint64_t base;
	uint32_t id, tpr, ldr, dfr, svr;
	uint32_t isr[8], tmr[8], irr[8];
	uint32_t esr, esr_pending, icr_lo, icr_hi;
	uint32_t lvt[NR_LVT];
	uint32_t timer_init, timer_div;
	uint64_t timer_remaining; /* ns; 0 = not counting */
	uint8_t flags, sipi_vector;
};

void lapic_save(struct lapic *l, struct state_buf *b)
{
	uint64_t now = now_ns(l), rem = 0;
	uint8_t f;

	pthread_mutex_lock(&l->lock);
	if (l->timer_deadline) {
		rem = l->timer_deadline > now ? l->timer_deadline - now : 1;
		if (timer_mode(l) == TIMER_PERIODIC && rem > periodic_ns(l))
			rem = periodic_ns(l);
	}
	f = (l->nmi_pending ? F_NMI : 0) | (l->init_pending ? F_INIT : 0) |
	    (l->sipi_pending ? F_SIPI : 0) | (l->wait_sipi ? F_WAIT_SIPI : 0) |
	    (l->extint_msg ? F_EXTINT : 0) | (l->lint0 ? F_LINT0 : 0) |
	    (l->lint1 ? F_LINT1 : 0);
	state_put_u8(b, LAPIC_STATE_VERSION);
	state_put_u64(b, l->apic_base);
	state_put_u32(b, l->id);
	state_put_u32(b, l->tpr);
	state_put_u32(b, l->ldr);
	state_put_u32(b, l->dfr);
	state_put_u32(b, l->svr);
	for (int i = 0; i < 8; i++)
		state_put_u32(b, l->isr[i]);
	for (int i = 0; i < 8; i++)
		state_put_u32(b, l->tmr[i]);
	for (int i = 0; i < 8; i++)
		state_put_u32(b, l->irr[i]);
	state_put_u32(b, l->esr);
	state_put_u32(b, l->esr_pending);
	state_put_u32(b, l->icr_lo);
	state_put_u32(b, l->icr_hi);
	for (int i = 0; i < NR_LVT; i++)
		state_put_u32(b, l->lvt[i]);
	state_put_u32(b, l->timer_init);
	state_put_u32(b, l->timer_div);
	state_put_u64(b, rem);
	state_put_u8(b, f);
	state_put_u8(b, l->sipi_vector);
	pthread_mutex_unlock(&l->lock);
}

static int parse_image(struct state_reader *r, struct lapic_image *im)
{
	unsigned mode;

	if (state_get_u8(r) != LAPIC_STATE_VERSION)
		return -EINVAL;
	im->base = state_get_u64(r);
	im->id = state_get_u32(r);
	im->tpr = state_get_u32(r);
	im->ldr = state_get_u32(r);
	im->dfr = state_get_u32(r);
	im->svr = state_get_u32(r);
	for (int i = 0; i < 8; i++)
		im->isr[i] = state_get_u32(r);
	for (int i = 0; i < 8; i++)
		im->tmr[i] = state_get_u32(r);
	for (int i = 0; i < 8; i++)
		im->irr[i] = state_get_u32(r);
	im->esr = state_get_u32(r);
	im->esr_pending = state_get_u32(r);
	im->icr_lo = state_get_u32(r);
	im->icr_hi = state_get_u32(r);
	for (int i = 0; i < NR_LVT; i++)
		im->lvt[i] = state_get_u32(r);
	im->timer_init = state_get_u32(r);
	im->timer_div = state_get_u32(r);
	im->timer_remaining = state_get_u64(r);
	im->flags = state_get_u8(r);
	im->sipi_vector = state_get_u8(r);
	if (r->err)
		return r->err;

	if ((im->base & BASE_RESERVED) || (im->id & 0x00ffffffu) ||
	    (im->tpr & ~0xffu) || (im->ldr & 0x00ffffffu) ||
	    (im->dfr & 0x0fffffffu) != 0x0fffffffu ||
	    (im->svr & ~SVR_WRITABLE) || (im->esr & ~ESR_DEFINED) ||
	    (im->esr_pending & ~ESR_DEFINED) ||
	    (im->icr_lo & ~ICR_LO_WRITABLE) || (im->icr_hi & 0x00ffffffu) ||
	    (im->timer_div & ~DIV_WRITABLE) || (im->flags & ~F_ALL))
		return -EINVAL;
	/* Vectors 0-15 never reach IRR/ISR/TMR. */
	if ((im->isr[0] | im->tmr[0] | im->irr[0]) & 0xffffu)
		return -EINVAL;
	for (int i = 0; i < NR_LVT; i++)
		if (im->lvt[i] & ~lvt_writable[i])
			return -EINVAL;
	mode = (im->lvt[LVT_TIMER] >> 17) & 3;
	if (im->timer_remaining) {
		uint64_t div = 1ull << ((((im->timer_div & 3) |
					  ((im->timer_div >> 1) & 4)) + 1) & 7);
		uint64_t max = (uint64_t)im->timer_init * div;

		/* A period started clamped may finish in one-shot mode. */
		if (max < LAPIC_MIN_PERIOD_NS)
			max = LAPIC_MIN_PERIOD_NS;
		if (mode == TIMER_TSC_DEADLINE)
			max = 1ull << 62;
		if (mode == TIMER_RESERVED || im->timer_remaining > max ||
		    (mode != TIMER_TSC_DEADLINE && !im->timer_init))
			return -EINVAL;
	}
	if (mode == TIMER_TSC_DEADLINE && im->timer_init)
		return -EINVAL;
	return 0;
}

static void apply_image(struct lapic *l, const struct lapic_image *im)
{
	uint64_t now = now_ns(l);
	unsigned ev;

	pthread_mutex_lock(&l->lock);
	__atomic_store_n(&l->apic_base, im->base, __ATOMIC_RELEASE);
	l->id = im->id;
	l->tpr = im->tpr;
	l->ldr = im->ldr;
	l->dfr = im->dfr;
	l->svr = im->svr;
	memcpy(l->isr, im->isr, sizeof(l->isr));
	memcpy(l->tmr, im->tmr, sizeof(l->tmr));
	memcpy(l->irr, im->irr, sizeof(l->irr));
	l->esr = im->esr;
	l->esr_pending = im->esr_pending;
	l->icr_lo = im->icr_lo;
	l->icr_hi = im->icr_hi;
	memcpy(l->lvt, im->lvt, sizeof(l->lvt));
	l->timer_init = im->timer_init;
	l->timer_div = im->timer_div;
	if (im->timer_remaining)
		timer_arm_locked(l, now + im->timer_remaining);
	else
		timer_stop_locked(l);
	l->nmi_pending = im->flags & F_NMI;
	l->init_pending = im->flags & F_INIT;
	l->sipi_pending = im->flags & F_SIPI;
	l->wait_sipi = im->flags & F_WAIT_SIPI;
	l->extint_msg = im->flags & F_EXTINT;
	l->lint0 = im->flags & F_LINT0;
	l->lint1 = im->flags & F_LINT1;
	l->sipi_vector = im->sipi_vector;
	update_events_locked(l);
	ev = __atomic_load_n(&l->events, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&l->lock);
	if (ev)
		kick(l);
}

int lapic_load(struct lapic *l, struct state_reader *r)
{
	struct lapic_image im;
	int e = parse_image(r, &im);

	if (e)
		return e;
	apply_image(l, &im);
	return 0;
}

void lapic_bus_save(struct lapic_bus *bus, struct state_buf *b)
{
	state_put_u8(b, BUS_STATE_VERSION);
	state_put_u32(b, (uint32_t)bus->nr);
	for (int i = 0; i < bus->nr; i++)
		lapic_save(&bus->cpus[i], b);
}

int lapic_bus_load(struct lapic_bus *bus, struct state_reader *r)
{
	struct lapic_image *im;
	int e = 0;

	if (state_get_u8(r) != BUS_STATE_VERSION ||
	    state_get_u32(r) != (uint32_t)bus->nr)
		return -EINVAL;
	if (r->err)
		return r->err;
	im = calloc((size_t)bus->nr, sizeof(*im));
	if (!im)
		return -ENOMEM;
	for (int i = 0; i < bus->nr && !e; i++)
		e = parse_image(r, &im[i]);
	if (!e)
		for (int i = 0; i < bus->nr; i++)
			apply_image(&bus->cpus[i], &im[i]);
	free(im);
	return e;
}

/* --- lifecycle ------------------------------------------------------------ */

int lapic_bus_create(struct vm *vm, int nr_cpus,
		     const struct lapic_bus_ops *ops, void *opaque,
		     struct lapic_bus **out)
{
	struct lapic_bus *bus;

	if (nr_cpus < 1 || nr_cpus > LAPIC_MAX_CPUS)
		return -EINVAL;
	bus = calloc(1, sizeof(*bus) + (size_t)nr_cpus * sizeof(struct lapic));
	if (!bus)
		return -ENOMEM;
	bus->vm = vm;
	bus->nr = nr_cpus;
	if (ops)
		bus->ops = *ops;
	bus->opaque = opaque;
	for (int i = 0; i < nr_cpus; i++) {
		struct lapic *l = &bus->cpus[i];

		l->bus = bus;
		l->index = i;
		pthread_mutex_init(&l->lock, NULL);
		vm_timer_init(&l->timer, vm, timer_fire, l);
		power_on_reset_locked(l);
	}
	*out = bus;
	return 0;
}

void lapic_bus_set_ops(struct lapic_bus *bus, const struct lapic_bus_ops *ops,
		       void *opaque)
{
	bus->ops = ops ? *ops : (struct lapic_bus_ops){ 0 };
	bus->opaque = opaque;
}

void lapic_bus_destroy(struct lapic_bus *bus)
{
	if (!bus)
		return;
	for (int i = 0; i < bus->nr; i++) {
		vm_timer_del(&bus->cpus[i].timer);
		pthread_mutex_destroy(&bus->cpus[i].lock);
	}
	free(bus);
}

int lapic_bus_nr_cpus(const struct lapic_bus *bus)
{
	return bus->nr;
}

struct lapic *lapic_bus_get(struct lapic_bus *bus, int cpu)
{
	if (cpu < 0 || cpu >= bus->nr)
		return NULL;
	return &bus->cpus[cpu];
}
