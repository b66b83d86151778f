/*
 * cmos_rtc.c - the MC146818A real-time clock and CMOS RAM (see cmos_rtc.h).
 *
 * Why it matters: it is the PC's only wall clock.  Linux reads the time
 * from it at boot (mc146818_get_time, which polls register A's UIP bit and
 * re-reads the seconds to get a consistent snapshot), writes it back on
 * shutdown/hwclock, uses its interrupts through rtc-cmos (/dev/rtc0: alarms,
 * update interrupts, the periodic interrupt), and firmware and old guests
 * read the memory size from the CMOS bytes.
 *
 * Registers (datasheet "Address map")
 *   0x00 seconds  0x01 seconds alarm  0x02 minutes  0x03 minutes alarm
 *   0x04 hours    0x05 hours alarm    0x06 day of week (1 = Sunday)
 *   0x07 day of month  0x08 month  0x09 year (two digits)
 *   0x0A A: UIP(7, read-only) DV2-0(6:4) divider, RS3-0(3:0) periodic rate
 *   0x0B B: SET(7) PIE(6) AIE(5) UIE(4) SQWE(3) DM(2, 1 = binary)
 *           24/12(1, 1 = 24 h) DSE(0)
 *   0x0C C: IRQF(7) PF(6) AF(5) UF(4), read-only, cleared by reading
 *   0x0D D: VRT(7), battery good: always 0x80
 *   0x0E-0x7F RAM; 0x32 is the century (IBM PS/2 convention, named by the
 *           ACPI FADT), kept with the clock.
 * Port 0x70 selects the register (bit 7, the PC's NMI mask, is ignored:
 * kvmm has no NMI source it would gate); 0x71 reads/writes it.  Reading
 * 0x70 returns 0xFF (write-only on a PC).
 *
 * Time base.  The clock counts UTC (Linux's and QEMU's default) from the
 * host's CLOCK_REALTIME, sampled once when the device is created, and then
 * advances with vm_clock_ns(): guest time = host time at creation + machine
 * time elapsed + an offset the guest sets by writing the clock.  Deriving it
 * from the machine clock keeps the clock, the update/alarm events and the
 * periodic interrupt on one time base (deterministic under the test
 * harness's fake clock), and keeps the guest's clock from jumping when the
 * host's is stepped.  Snapshots store the offset from host real time, so a
 * restored guest sees the host's current time plus its own adjustment, as
 * QEMU's default rtc clock=host does.
 *
 * Reading and setting.  While the clock runs, reads of the time registers
 * convert the current time to the format register B selects (BCD or
 * binary, 12-hour with bit 7 = PM or 24-hour).  The clock stops while B.SET
 * is 1 or the divider is held in reset (DV = 11x; QEMU's rule: running iff
 * DV <= 010); the registers then hold the time latched at the stop and
 * whatever the guest writes.  When the clock starts again the registers
 * are converted back: after SET goes 0 the next second starts then, after
 * the divider is released the first update comes 500 ms later (datasheet,
 * "divider reset").  A write to a time register while the clock runs
 * changes that field and keeps the others and the sub-second phase.  Values
 * the guest writes are not checked (a BCD 0xFF minute is legal input); the
 * conversion normalizes out-of-range fields with plain integer arithmetic
 * (months past 12 roll into years, etc.), so garbage in gives some time
 * out, never undefined behaviour.  The day of week is computed, not kept.
 * Register B's DSE (daylight saving) and SQWE (square wave pin) are stored
 * with no effect.
 *
 * Update in progress.  UIP reads 1 during the last 244 us of every second
 * while the clock runs (8 periods of the 32768 Hz time base before the
 * update, which here is instantaneous at the second boundary), as on the
 * chip and in QEMU: drivers that wait for UIP to fall, or for a 1 -> 0
 * transition to find the start of a second (hwclock), work unchanged.
 *
 * Interrupts.  The flags in C follow the datasheet: UF at every update
 * (second boundary) while running, AF when the updated time matches the
 * three alarm bytes (a byte with bits 7:6 = 11 matches anything), PF at
 * every periodic tick while the divider runs and RS != 0 (period RS 1, 2:
 * 3.90625, 7.8125 ms; RS 3-15: 2^(RS-1) / 32768 s), all set whether or not
 * enabled; IRQF = (PF & PIE) | (AF & AIE) | (UF & UIE) and drives IRQ 8.
 * Reading C returns and clears all four and lowers the line.
 * Flags are computed lazily from the clock whenever C is read or the
 * configuration changes, so an RTC whose interrupts are off costs nothing;
 * a vm_timer is armed only for the next event that can raise IRQF (the next
 * periodic tick if PIE and PF is clear, the next second boundary if UIE/AIE
 * and their flag is clear).  Events that happen while the flag is already
 * pending merge into it, as they do on the chip.  Periodic ticks are
 * counted in whole 32768 Hz cycles from an anchor, so the rate has no
 * rounding drift.  AF over a long unobserved interval checks at most one
 * day of seconds (every possible alarm time).
 *
 * Reset (machine reset): the chip's RESET input clears PIE, AIE, UIE, SQWE
 * and the flags in C; time and CMOS RAM are battery-backed and survive.
 *
 * Memory-size bytes (QEMU's PC layout, read by SeaBIOS and old guests):
 * 0x15/0x16 base memory in KiB (640), 0x17/0x18 and 0x30/0x31 KiB above
 * 1 MiB (at most 65535), 0x34/0x35 64 KiB units between 16 MiB and the PCI
 * hole, 0x5B-0x5D 64 KiB units above 4 GiB, 0x5F CPUs - 1.
 *
 * Locking: one mutex for everything; the timer callback takes it; the
 * timer is armed under it (lock order device -> timer list, as timer.h
 * expects); IRQ 8 is driven under it.
 */
#include "hw/cmos_rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/vm.h"
#include "hw/pc.h"

#define REG_SEC        0x00
#define REG_SEC_ALARM  0x01
#define REG_MIN        0x02
#define REG_MIN_ALARM  0x03
#define REG_HOUR       0x04
#define REG_HOUR_ALARM 0x05
#define REG_WDAY       0x06
#define REG_MDAY       0x07
#define REG_MONTH      0x08
#define REG_YEAR       0x09
#define REG_A          0x0a
#define REG_B          0x0b
#define REG_C          0x0c
#define REG_D          0x0d

#define A_UIP     0x80
#define A_DV_MASK 0x70
#define A_DV_NORMAL 0x20
#define A_RS_MASK 0x0f
#define B_SET     0x80
#define B_PIE     0x40
#define B_AIE     0x20
#define B_UIE     0x10
#define B_SQWE    0x08
#define B_DM_BIN  0x04
#define B_24H     0x02
#define C_IRQF    0x80
#define C_PF      0x40
#define C_AF      0x20
#define C_UF      0x10
#define C_FLAGS   (C_PF | C_AF | C_UF) /* same bits as B's enables */
#define D_VRT     0x80

#define NSEC       1000000000ll
#define RTC_HZ     32768
#define UIP_NS     244141 /* 8 / 32768 s, rounded up */
#define DAY_S      86400
#define MAX_OFFSET_S (1ll << 42) /* beyond any year the registers can hold */

#define CMOS_SIZE 128
#define RTC_STATE_VERSION 1

struct cmos_rtc {
	struct vm *vm;
	pthread_mutex_t lock;
	struct vm_timer timer;

	uint8_t cmos[CMOS_SIZE];
	uint8_t index;

	/* Time base (host side, not saved) */
	uint64_t base_rt_ns; /* CLOCK_REALTIME at creation */
	uint64_t base_vm_ns; /* vm_clock_ns() at the same moment */

	/* guest time = host time + off_s seconds + off_ns (0 <= off_ns < 1e9) */
	int64_t off_s;
	int64_t off_ns;

	int64_t last_sec;     /* guest second of the last update accounted */
	uint64_t pf_anchor;   /* vm time of periodic tick 0 */
	uint64_t pf_last_idx; /* last periodic tick accounted */

	bool irq_level;
};

/* Integer helpers: floor division and modulo for possibly negative x. */
static int64_t fdiv(int64_t x, int64_t d)
{
	return x >= 0 ? x / d : -((-x + d - 1) / d);
}

static int64_t fmodp(int64_t x, int64_t d)
{
	return x - fdiv(x, d) * d;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (m 1..12, d 1..31);
 * the classic era/day-of-era computation, valid for any year. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = fdiv(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = fdiv(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = yoe + era * 400 + (*m <= 2);
}

static bool div_on(uint8_t a)
{
	return (a & A_DV_MASK) <= A_DV_NORMAL;
}

static bool running_ab(uint8_t a, uint8_t b)
{
	return div_on(a) && !(b & B_SET);
}

static bool running(const struct cmos_rtc *rtc)
{
	return running_ab(rtc->cmos[REG_A], rtc->cmos[REG_B]);
}

/* Register encoding per register B. */
static uint8_t enc(const struct cmos_rtc *rtc, int64_t v)
{
	v = fmodp(v, 100);
	if (rtc->cmos[REG_B] & B_DM_BIN)
		return (uint8_t)v;
	return (uint8_t)((v / 10) << 4 | v % 10);
}

static int64_t dec(const struct cmos_rtc *rtc, uint8_t v)
{
	if (rtc->cmos[REG_B] & B_DM_BIN)
		return v;
	return (v >> 4) * 10 + (v & 0x0f);
}

static uint8_t enc_hour(const struct cmos_rtc *rtc, int64_t h)
{
	int64_t h12;

	if (rtc->cmos[REG_B] & B_24H)
		return enc(rtc, h);
	h12 = h % 12 ? h % 12 : 12;
	return (uint8_t)(enc(rtc, h12) | (h >= 12 ? 0x80 : 0));
}

static int64_t dec_hour(const struct cmos_rtc *rtc, uint8_t v)
{
	if (rtc->cmos[REG_B] & B_24H)
		return dec(rtc, v);
	return dec(rtc, v & 0x7f) % 12 + ((v & 0x80) ? 12 : 0);
}

/* Host real time now, ns, on the machine clock's time base. */
static uint64_t host_ns(const struct cmos_rtc *rtc, uint64_t now)
{
	return rtc->base_rt_ns + (now - rtc->base_vm_ns);
}

static void guest_time(const struct cmos_rtc *rtc, uint64_t now,
		       int64_t *sec, int64_t *nsec)
{
	uint64_t h = host_ns(rtc, now);
	int64_t s = (int64_t)(h / NSEC) + rtc->off_s;
	int64_t ns = (int64_t)(h % NSEC) + rtc->off_ns;

	if (ns >= NSEC) {
		s++;
		ns -= NSEC;
	}
	*sec = s;
	*nsec = ns;
}

static void set_guest_time(struct cmos_rtc *rtc, uint64_t now, int64_t sec,
			   int64_t nsec)
{
	uint64_t h = host_ns(rtc, now);

	rtc->off_s = sec - (int64_t)(h / NSEC);
	rtc->off_ns = nsec - (int64_t)(h % NSEC);
	if (rtc->off_ns < 0) {
		rtc->off_ns += NSEC;
		rtc->off_s--;
	}
}

/* Write the time `sec` into the time registers in the current format. */
static void latch_time(struct cmos_rtc *rtc, int64_t sec)
{
	int64_t days = fdiv(sec, DAY_S), sod = fmodp(sec, DAY_S);
	int64_t y, m, d;

	civil_from_days(days, &y, &m, &d);
	rtc->cmos[REG_SEC] = enc(rtc, sod % 60);
	rtc->cmos[REG_MIN] = enc(rtc, sod / 60 % 60);
	rtc->cmos[REG_HOUR] = enc_hour(rtc, sod / 3600);
	rtc->cmos[REG_WDAY] = enc(rtc, fmodp(days + 4, 7) + 1);
	rtc->cmos[REG_MDAY] = enc(rtc, d);
	rtc->cmos[REG_MONTH] = enc(rtc, m);
	rtc->cmos[REG_YEAR] = enc(rtc, fmodp(y, 100));
	rtc->cmos[CMOS_CENTURY] = enc(rtc, fdiv(y, 100));
}

static void latch_now(struct cmos_rtc *rtc, uint64_t now)
{
	int64_t s, ns;

	guest_time(rtc, now, &s, &ns);
	latch_time(rtc, s);
}

/* The time the registers hold, normalized (see the header comment). */
static int64_t decode_time(const struct cmos_rtc *rtc)
{
	int64_t year = dec(rtc, rtc->cmos[REG_YEAR]) +
		       100 * dec(rtc, rtc->cmos[CMOS_CENTURY]);
	int64_t mon = dec(rtc, rtc->cmos[REG_MONTH]) - 1;
	int64_t days;

	year += fdiv(mon, 12);
	mon = fmodp(mon, 12) + 1;
	days = days_from_civil(year, mon, 1) + dec(rtc, rtc->cmos[REG_MDAY]) - 1;
	return days * DAY_S + dec_hour(rtc, rtc->cmos[REG_HOUR]) * 3600 +
	       dec(rtc, rtc->cmos[REG_MIN]) * 60 + dec(rtc, rtc->cmos[REG_SEC]);
}

static bool alarm_field(uint8_t alarm, uint8_t now)
{
	return (alarm & 0xc0) == 0xc0 || alarm == now;
}

static bool alarm_match(const struct cmos_rtc *rtc, int64_t sec)
{
	int64_t sod = fmodp(sec, DAY_S);

	return alarm_field(rtc->cmos[REG_SEC_ALARM], enc(rtc, sod % 60)) &&
	       alarm_field(rtc->cmos[REG_MIN_ALARM], enc(rtc, sod / 60 % 60)) &&
	       alarm_field(rtc->cmos[REG_HOUR_ALARM], enc_hour(rtc, sod / 3600));
}

/* Periodic interrupt period in 32768 Hz cycles, 0 = off. */
static uint64_t period_cycles(uint8_t a)
{
	unsigned rs = a & A_RS_MASK;

	if (rs == 0)
		return 0;
	return rs <= 2 ? 1ull << (rs + 6) : 1ull << (rs - 1);
}

static uint64_t cycles_since(uint64_t anchor, uint64_t now)
{
	uint64_t d = now - anchor;

	return d / NSEC * RTC_HZ + d % NSEC * RTC_HZ / NSEC;
}

/* The first vm time at which `cycles` cycles have elapsed since anchor. */
static uint64_t cycles_deadline(uint64_t anchor, uint64_t cycles)
{
	return anchor + cycles / RTC_HZ * NSEC +
	       (cycles % RTC_HZ * NSEC + RTC_HZ - 1) / RTC_HZ;
}

static bool periodic_on(const struct cmos_rtc *rtc)
{
	return div_on(rtc->cmos[REG_A]) && period_cycles(rtc->cmos[REG_A]);
}

static void rearm_periodic(struct cmos_rtc *rtc, uint64_t now)
{
	rtc->pf_anchor = now;
	rtc->pf_last_idx = 0;
}

static void recompute_irqf(struct cmos_rtc *rtc)
{
	uint8_t c = rtc->cmos[REG_C] & C_FLAGS;

	if (c & rtc->cmos[REG_B] & C_FLAGS)
		c |= C_IRQF;
	rtc->cmos[REG_C] = c;
}

/* Account every update, alarm and periodic tick up to `now`. */
static void update_flags(struct cmos_rtc *rtc, uint64_t now)
{
	if (running(rtc)) {
		int64_t s, ns;

		guest_time(rtc, now, &s, &ns);
		if (s > rtc->last_sec) {
			int64_t t = rtc->last_sec + 1;

			rtc->cmos[REG_C] |= C_UF;
			if (s - t >= DAY_S)
				t = s - DAY_S + 1;
			for (; t <= s; t++) {
				if (alarm_match(rtc, t)) {
					rtc->cmos[REG_C] |= C_AF;
					break;
				}
			}
		}
		rtc->last_sec = s;
	}
	if (periodic_on(rtc)) {
		uint64_t idx = cycles_since(rtc->pf_anchor, now) /
			       period_cycles(rtc->cmos[REG_A]);
		if (idx > rtc->pf_last_idx) {
			rtc->cmos[REG_C] |= C_PF;
			rtc->pf_last_idx = idx;
		}
	}
	recompute_irqf(rtc);
}

static void update_irq(struct cmos_rtc *rtc, bool force)
{
	bool level = rtc->cmos[REG_C] & C_IRQF;

	if (level != rtc->irq_level || force) {
		rtc->irq_level = level;
		irq_set_level(&rtc->vm->irq, PC_IRQ_RTC, level);
	}
}

/* Arm the timer for the next event that could raise IRQF.  Flags must
 * have been brought up to `now` (update_flags). */
static void schedule(struct cmos_rtc *rtc, uint64_t now)
{
	uint8_t b = rtc->cmos[REG_B], c = rtc->cmos[REG_C];
	uint64_t d = UINT64_MAX;

	if (periodic_on(rtc) && (b & B_PIE) && !(c & C_PF))
		d = cycles_deadline(rtc->pf_anchor,
				    (rtc->pf_last_idx + 1) *
					    period_cycles(rtc->cmos[REG_A]));
	if (running(rtc) && (((b & B_UIE) && !(c & C_UF)) ||
			     ((b & B_AIE) && !(c & C_AF)))) {
		int64_t s, ns;
		uint64_t next;

		guest_time(rtc, now, &s, &ns);
		next = now + (uint64_t)(NSEC - ns);
		if (next < d)
			d = next;
	}
	if (d == UINT64_MAX)
		vm_timer_del(&rtc->timer);
	else
		vm_timer_mod(&rtc->timer, d);
}

static void sync_locked(struct cmos_rtc *rtc, uint64_t now)
{
	update_flags(rtc, now);
	update_irq(rtc, false);
	schedule(rtc, now);
}

static void rtc_timer_cb(void *opaque)
{
	struct cmos_rtc *rtc = opaque;

	pthread_mutex_lock(&rtc->lock);
	sync_locked(rtc, vm_clock_ns(rtc->vm));
	pthread_mutex_unlock(&rtc->lock);
}

/* New values of registers A and B: start/stop the clock as they say. */
static void set_ab(struct cmos_rtc *rtc, uint8_t na, uint8_t nb, uint64_t now)
{
	uint8_t oa = rtc->cmos[REG_A];
	bool was = running(rtc), will = running_ab(na, nb);
	bool released = !div_on(oa) && div_on(na);

	if (was && !will)
		latch_now(rtc, now); /* in the format in force until now */
	rtc->cmos[REG_A] = na;
	rtc->cmos[REG_B] = nb;
	if (!was && will) {
		int64_t sec = decode_time(rtc);
		set_guest_time(rtc, now, sec, released ? NSEC / 2 : 0);
		rtc->last_sec = sec;
	}
	if (released || ((oa ^ na) & A_RS_MASK))
		rearm_periodic(rtc, now);
}

static bool is_time_reg(unsigned idx)
{
	return idx == REG_SEC || idx == REG_MIN || idx == REG_HOUR ||
	       idx == REG_WDAY || idx == REG_MDAY || idx == REG_MONTH ||
	       idx == REG_YEAR || idx == CMOS_CENTURY;
}

static uint8_t read_reg(struct cmos_rtc *rtc, unsigned idx)
{
	uint64_t now = vm_clock_ns(rtc->vm);
	uint8_t v;

	if (is_time_reg(idx)) {
		if (running(rtc))
			latch_now(rtc, now);
		return rtc->cmos[idx];
	}
	switch (idx) {
	case REG_A:
		v = rtc->cmos[REG_A];
		if (running(rtc)) {
			int64_t s, ns;
			guest_time(rtc, now, &s, &ns);
			if (ns >= NSEC - UIP_NS)
				v |= A_UIP;
		}
		return v;
	case REG_C:
		update_flags(rtc, now);
		v = rtc->cmos[REG_C];
		rtc->cmos[REG_C] = 0;
		update_irq(rtc, false);
		schedule(rtc, now);
		return v;
	case REG_D:
		return D_VRT;
	default:
		return rtc->cmos[idx];
	}
}

static void write_reg(struct cmos_rtc *rtc, unsigned idx, uint8_t v)
{
	uint64_t now = vm_clock_ns(rtc->vm);

	/* Account what happened under the old settings first. */
	update_flags(rtc, now);
	if (is_time_reg(idx)) {
		if (running(rtc)) {
			int64_t s, ns, sec;
			guest_time(rtc, now, &s, &ns);
			latch_time(rtc, s);
			rtc->cmos[idx] = v;
			sec = decode_time(rtc);
			set_guest_time(rtc, now, sec, ns);
			rtc->last_sec = sec;
		} else {
			rtc->cmos[idx] = v;
		}
	} else {
		switch (idx) {
		case REG_A:
			set_ab(rtc, v & ~A_UIP, rtc->cmos[REG_B], now);
			break;
		case REG_B:
			if (v & B_SET)
				v &= ~B_UIE; /* datasheet: SET clears UIE */
			set_ab(rtc, rtc->cmos[REG_A], v, now);
			break;
		case REG_C:
		case REG_D:
			break; /* read-only */
		default:
			rtc->cmos[idx] = v;
			break;
		}
	}
	recompute_irqf(rtc);
	update_irq(rtc, false);
	schedule(rtc, now);
}

static uint64_t rtc_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct cmos_rtc *rtc = opaque;
	uint8_t v;

	if (offset == 0)
		return 0xff; /* the index register is write-only */
	pthread_mutex_lock(&rtc->lock);
	v = read_reg(rtc, rtc->index);
	pthread_mutex_unlock(&rtc->lock);
	return v;
}

static void rtc_io_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct cmos_rtc *rtc = opaque;

	pthread_mutex_lock(&rtc->lock);
	if (offset == 0)
		rtc->index = value & 0x7f; /* bit 7: NMI mask, ignored */
	else
		write_reg(rtc, rtc->index, (uint8_t)value);
	pthread_mutex_unlock(&rtc->lock);
}

static const struct bus_ops rtc_bus_ops = {
	.read = rtc_io_read,
	.write = rtc_io_write,
};

int cmos_rtc_set_byte(struct cmos_rtc *rtc, unsigned index, uint8_t value)
{
	if (index <= REG_D || index >= CMOS_SIZE || index == CMOS_CENTURY)
		return -EINVAL;
	pthread_mutex_lock(&rtc->lock);
	rtc->cmos[index] = value;
	pthread_mutex_unlock(&rtc->lock);
	return 0;
}

int cmos_rtc_get_byte(struct cmos_rtc *rtc, unsigned index, uint8_t *value)
{
	if (index <= REG_D || index >= CMOS_SIZE || index == CMOS_CENTURY)
		return -EINVAL;
	pthread_mutex_lock(&rtc->lock);
	*value = rtc->cmos[index];
	pthread_mutex_unlock(&rtc->lock);
	return 0;
}

/* vm_device ops */

static void rtc_reset(void *opaque)
{
	struct cmos_rtc *rtc = opaque;
	uint64_t now;

	pthread_mutex_lock(&rtc->lock);
	now = vm_clock_ns(rtc->vm);
	update_flags(rtc, now);
	rtc->cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE);
	rtc->cmos[REG_C] = 0;
	update_irq(rtc, true);
	schedule(rtc, now);
	pthread_mutex_unlock(&rtc->lock);
}

static void rtc_save(void *opaque, struct state_buf *b)
{
	struct cmos_rtc *rtc = opaque;

	pthread_mutex_lock(&rtc->lock);
	update_flags(rtc, vm_clock_ns(rtc->vm));
	state_put_u8(b, RTC_STATE_VERSION);
	state_put_bytes(b, rtc->cmos, sizeof(rtc->cmos));
	state_put_u8(b, rtc->index);
	state_put_u64(b, (uint64_t)rtc->off_s);
	state_put_u32(b, (uint32_t)rtc->off_ns);
	pthread_mutex_unlock(&rtc->lock);
}

static int rtc_load(void *opaque, struct state_reader *r)
{
	struct cmos_rtc *rtc = opaque;
	uint8_t cmos[CMOS_SIZE], version, index;
	int64_t off_s;
	uint32_t off_ns;
	uint64_t now;

	version = state_get_u8(r);
	state_get_bytes(r, cmos, sizeof(cmos));
	index = state_get_u8(r);
	off_s = (int64_t)state_get_u64(r);
	off_ns = state_get_u32(r);
	if (r->err || version != RTC_STATE_VERSION || index >= CMOS_SIZE ||
	    (cmos[REG_A] & A_UIP) || (cmos[REG_C] & ~(C_FLAGS | C_IRQF)) ||
	    cmos[REG_D] != D_VRT ||
	    ((cmos[REG_B] & B_SET) && (cmos[REG_B] & B_UIE)) ||
	    off_ns >= NSEC || off_s > MAX_OFFSET_S || off_s < -MAX_OFFSET_S)
		return -EINVAL;

	pthread_mutex_lock(&rtc->lock);
	now = vm_clock_ns(rtc->vm);
	memcpy(rtc->cmos, cmos, sizeof(cmos));
	rtc->index = index;
	rtc->off_s = off_s;
	rtc->off_ns = off_ns;
	if (running(rtc)) {
		int64_t s, ns;
		guest_time(rtc, now, &s, &ns);
		rtc->last_sec = s;
	}
	rearm_periodic(rtc, now);
	recompute_irqf(rtc);
	update_irq(rtc, true);
	schedule(rtc, now);
	pthread_mutex_unlock(&rtc->lock);
	return 0;
}

static void rtc_destroy(void *opaque)
{
	struct cmos_rtc *rtc = opaque;

	vm_timer_del(&rtc->timer);
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}

static const struct vm_device_ops rtc_device_ops = {
	.name = "cmos_rtc",
	.reset = rtc_reset,
	.save = rtc_save,
	.load = rtc_load,
	.destroy = rtc_destroy,
};

static void put_u16(uint8_t *cmos, unsigned lo, uint64_t v)
{
	if (v > 0xffff)
		v = 0xffff;
	cmos[lo] = (uint8_t)v;
	cmos[lo + 1] = (uint8_t)(v >> 8);
}

static void fill_memory_bytes(struct cmos_rtc *rtc, uint64_t ram_size)
{
	uint64_t low = ram_size < GM_HOLE_START ? ram_size : GM_HOLE_START;
	uint64_t high = ram_size - low, above4g = high >> 16;
	int cpus = rtc->vm->nr_cpus;

	put_u16(rtc->cmos, CMOS_BASE_MEM_LO, 640);
	put_u16(rtc->cmos, CMOS_EXT_MEM_LO,
		low > (1u << 20) ? (low - (1u << 20)) >> 10 : 0);
	put_u16(rtc->cmos, CMOS_EXT_MEM2_LO,
		low > (1u << 20) ? (low - (1u << 20)) >> 10 : 0);
	put_u16(rtc->cmos, CMOS_MEM_ABOVE_16M_LO,
		low > (16u << 20) ? (low - (16u << 20)) >> 16 : 0);
	if (above4g > 0xffffff)
		above4g = 0xffffff;
	rtc->cmos[CMOS_MEM_ABOVE_4G_LO] = (uint8_t)above4g;
	rtc->cmos[CMOS_MEM_ABOVE_4G_MID] = (uint8_t)(above4g >> 8);
	rtc->cmos[CMOS_MEM_ABOVE_4G_HI] = (uint8_t)(above4g >> 16);
	rtc->cmos[CMOS_NR_CPUS_MINUS_1] =
		(uint8_t)(cpus < 1 ? 0 : cpus > 256 ? 255 : cpus - 1);
}

int cmos_rtc_create(struct vm *vm, uint64_t ram_size, struct cmos_rtc **out)
{
	struct cmos_rtc *rtc = calloc(1, sizeof(*rtc));
	struct timespec ts;
	int64_t s, ns;
	int r;

	if (!rtc)
		return -ENOMEM;
	rtc->vm = vm;
	pthread_mutex_init(&rtc->lock, NULL);
	vm_timer_init(&rtc->timer, vm, rtc_timer_cb, rtc);

	clock_gettime(CLOCK_REALTIME, &ts);
	rtc->base_rt_ns = (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
	rtc->base_vm_ns = vm_clock_ns(vm);

	/* What a PC BIOS leaves: 32768 Hz time base, 1024 Hz periodic rate,
	 * BCD, 24-hour clock, interrupts off. */
	rtc->cmos[REG_A] = A_DV_NORMAL | 0x06;
	rtc->cmos[REG_B] = B_24H;
	rtc->cmos[REG_C] = 0;
	rtc->cmos[REG_D] = D_VRT;
	fill_memory_bytes(rtc, ram_size);
	guest_time(rtc, rtc->base_vm_ns, &s, &ns);
	rtc->last_sec = s;
	latch_time(rtc, s);
	rearm_periodic(rtc, rtc->base_vm_ns);
	update_irq(rtc, true);

	r = vm_add_device(vm, &rtc_device_ops, rtc);
	if (r) {
		rtc_destroy(rtc);
		return r;
	}
	r = bus_register(&vm->pio, PC_RTC_PORT, 2, &rtc_bus_ops, rtc,
			 "cmos_rtc");
	if (r)
		return r;
	if (out)
		*out = rtc;
	return 0;
}
