/*
 * acpi_pm.c - ACPI fixed-hardware PM block (acpi_pm.h).
 *
 * Reference: ACPI Specification 6.4, section 4.8: 4.8.3 power management
 * timer, 4.8.3.4 legacy/ACPI select and the SCI, 4.8.4.1 PM1 event grouping
 * (PM1_STS write-1-to-clear, PM1_EN; tables 4.11, 4.12), 4.8.4.2 PM1
 * control grouping (SCI_EN, SLP_TYP, SLP_EN; table 4.13), 4.8.4.3 PM_TMR,
 * 4.8.5.1 general-purpose event blocks; chapter 16 (sleeping: SLP_TYP,
 * WAK_STS).  QEMU's hw/acpi/core.c was read for guest-visible behaviour;
 * nothing is copied.
 *
 * WHY IT IS ALWAYS OURS
 * KVM emulates the PIC, IOAPIC and PIT in the kernel but has no ACPI PM
 * block, so this device serves both accelerators; its only outputs are the
 * SCI (a GSI through vm->irq, which is KVM_IRQ_LINE under KVM) and
 * vm_request_stop().
 *
 * LAYOUT (I/O ports, offsets from PC_ACPI_PM_BASE)
 *   0x00  PM1_STS   16 bits, write 1 to clear
 *   0x02  PM1_EN    16 bits
 *   0x04  PM1_CNT   16 bits; 0x06-0x07 unused, read 0
 *   0x08  PM_TMR    32-bit read, 24-bit counter, writes ignored
 *   0x20  GPE0_STS  16 bits, write 1 to clear (at PC_ACPI_GPE0_BLK)
 *   0x22  GPE0_EN   16 bits
 * Any access width works: each byte maps to its register, and a write
 * applies to every register it touches with the bytes it covers.  SLP_TYP
 * and SLP_EN sit in the same byte, so a byte write of the high half of
 * PM1_CNT sleeps exactly like a 16-bit one.
 *
 * ACPI MODE
 * The FADT has SMI_CMD = 0, which tells the OS the machine is always in
 * ACPI mode: SCI_EN reads 1 and cannot be cleared.  BM_RLD and SLP_TYP are
 * stored; GBL_RLS and SLP_EN are write-only events.
 *
 * SLEEP
 * SLP_EN with SLP_TYP == PC_ACPI_SLP_TYP_S5 (the DSDT's \_S5) asks the
 * machine to power off: vm_request_stop(VM_STOP_POWEROFF).  Other sleep
 * states are not implemented; we log one warning per device and "wake" at
 * once by setting WAK_STS, because the OS spins on WAK_STS after writing
 * SLP_EN (ACPICA's acpi_hw_legacy_sleep) and would otherwise hang.  The
 * guest sees a sleep that failed instantly, not a hung machine.
 *
 * PM TIMER
 * A free-running 24-bit counter at 3.579545 MHz.  Like the PIT it is a
 * function of time, not a ticking thing:
 *     value = (floor(now_ns * PC_PM_TMR_HZ / 1e9) + offset) mod 2^24
 * where `offset` lets a snapshot restore the value the guest last saw.
 * TMR_STS is set whenever bit 23 of the counter changes, i.e. every 2^23
 * ticks (2.34 s).  We compute it lazily: `tmr_period` is the index
 * (total ticks >> 23) when TMR_STS was last folded in; any access that sees
 * a newer period sets TMR_STS.  A vm_timer is armed for the next toggle
 * only while TMR_EN is set and TMR_STS clear - the only case where the
 * toggle must raise the SCI without a guest access - so an idle VM does not
 * wake the host every 2.3 s.
 *
 * SCI
 * Level-triggered (FADT/MADT: IRQ 9 level, active high), asserted while
 * (PM1_STS & PM1_EN & {TMR, GBL, PWRBTN, SLPBTN, RTC}) or
 * (GPE0_STS & GPE0_EN) is non-zero.  The line is driven only on changes.
 *
 * HOSTILE GUEST
 * All registers are 16-bit masks; undefined bits read 0 and are dropped on
 * write.  A guest toggling TMR_EN cannot make the timer fire more often
 * than once per 2.34 s period (the deadline is a period boundary).
 * Snapshots are validated (no undefined bits, 24-bit timer).
 *
 * LOCKING
 * One mutex; irq_set_level() and vm_request_stop() are called under it
 * (lock order: acpi_pm -> irq router -> pic/ioapic).
 */
#include "hw/acpi_pm.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/vm.h"
#include "hw/pc.h"
#include "util/log.h"

#define NS_PER_S 1000000000ull
#define TMR_BITS 24
#define TMR_MASK ((1u << TMR_BITS) - 1)
#define TMR_PERIOD_SHIFT (TMR_BITS - 1) /* TMR_STS on bit 23 changes */
#define ACPI_PM_STATE_VERSION 1

#define EVT_LEN 12 /* PM1_STS, PM1_EN, PM1_CNT (+2 unused), PM_TMR */
#define GPE_LEN 4

/* Offsets within the first range */
#define OFF_STS 0x0
#define OFF_EN  0x2
#define OFF_CNT 0x4
#define OFF_TMR 0x8

#define STS_BITS (ACPI_PM1_TMR | ACPI_PM1_BM_STS | ACPI_PM1_GBL | \
		  ACPI_PM1_PWRBTN | ACPI_PM1_SLPBTN | ACPI_PM1_RTC | \
		  ACPI_PM1_WAK_STS)
#define EN_BITS (ACPI_PM1_TMR | ACPI_PM1_GBL | ACPI_PM1_PWRBTN | \
		 ACPI_PM1_SLPBTN | ACPI_PM1_RTC)
#define SCI_BITS EN_BITS
#define SLP_TYP_MASK (7u << ACPI_PM1_SLP_TYP_SHIFT)
#define CNT_STORED (ACPI_PM1_BM_RLD | SLP_TYP_MASK)

struct acpi_pm {
	struct vm *vm;
	pthread_mutex_t lock;
	struct vm_timer timer;
	uint16_t sts, en, cnt;       /* cnt: the stored bits only */
	uint16_t gpe_sts, gpe_en;
	uint64_t tmr_offset;         /* < 2^24 */
	uint64_t tmr_period;         /* total ticks >> 23 last folded in */
	bool sci;
	bool warned_sleep;
};

/* --- PM timer ------------------------------------------------------- */

static uint64_t clock_ticks(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * PC_PM_TMR_HZ / NS_PER_S);
}

static uint64_t tmr_total(const struct acpi_pm *pm, uint64_t now)
{
	return clock_ticks(now) + pm->tmr_offset;
}

/* Fold bit-23 toggles since the last look into TMR_STS. */
static void tmr_sync(struct acpi_pm *pm, uint64_t now)
{
	uint64_t period = tmr_total(pm, now) >> TMR_PERIOD_SHIFT;

	if (period != pm->tmr_period) {
		pm->sts |= ACPI_PM1_TMR;
		pm->tmr_period = period;
	}
}

/* ns at which the total tick count reaches `ticks` (rounded up). */
static uint64_t tmr_time_of(const struct acpi_pm *pm, uint64_t ticks)
{
	uint64_t t = ticks > pm->tmr_offset ? ticks - pm->tmr_offset : 0;

	return (uint64_t)(((unsigned __int128)t * NS_PER_S + PC_PM_TMR_HZ - 1) /
			  PC_PM_TMR_HZ);
}

/* Recompute the SCI and the overflow timer after any change. */
static void pm_update(struct acpi_pm *pm)
{
	bool sci = (pm->sts & pm->en & SCI_BITS) || (pm->gpe_sts & pm->gpe_en);

	if (sci != pm->sci) {
		pm->sci = sci;
		irq_set_level(&pm->vm->irq, PC_IRQ_SCI, sci);
	}
	if ((pm->en & ACPI_PM1_TMR) && !(pm->sts & ACPI_PM1_TMR))
		vm_timer_mod(&pm->timer,
			     tmr_time_of(pm, (pm->tmr_period + 1)
						     << TMR_PERIOD_SHIFT));
	else
		vm_timer_del(&pm->timer);
}

static void pm_timer_cb(void *opaque)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	tmr_sync(pm, vm_clock_ns(pm->vm));
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* --- registers ------------------------------------------------------ */

static void pm_sleep(struct acpi_pm *pm, unsigned slp_typ)
{
	if (slp_typ == PC_ACPI_SLP_TYP_S5) {
		vm_request_stop(pm->vm, VM_STOP_POWEROFF, 0);
		return;
	}
	if (!pm->warned_sleep) {
		pm->warned_sleep = true;
		log_warn("acpi: guest asked for sleep type %u; only S5 (power "
			 "off) is implemented, waking it at once",
			 slp_typ);
	}
	pm->sts |= ACPI_PM1_WAK_STS;
}

/* 16-bit register at `reg` of the first range, as read now. */
static uint16_t evt_reg_read(struct acpi_pm *pm, unsigned reg)
{
	switch (reg) {
	case OFF_STS:
		return pm->sts;
	case OFF_EN:
		return pm->en;
	case OFF_CNT:
		return pm->cnt | ACPI_PM1_SCI_EN;
	default:
		return 0;
	}
}

/* Write bytes `mask` (of 0xffff) of `v` into the 16-bit register `reg`. */
static void evt_reg_write(struct acpi_pm *pm, unsigned reg, uint16_t v,
			  uint16_t mask)
{
	v &= mask;
	switch (reg) {
	case OFF_STS:
		pm->sts &= ~(v & STS_BITS);
		break;
	case OFF_EN:
		pm->en = (uint16_t)((pm->en & ~mask) | (v & EN_BITS));
		break;
	case OFF_CNT:
		pm->cnt = (uint16_t)((pm->cnt & ~mask) | (v & CNT_STORED));
		if (v & ACPI_PM1_SLP_EN)
			pm_sleep(pm, (pm->cnt & SLP_TYP_MASK) >>
					     ACPI_PM1_SLP_TYP_SHIFT);
		break;
	default:
		break;
	}
}

static uint64_t evt_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint64_t now, v = 0;

	pthread_mutex_lock(&pm->lock);
	now = vm_clock_ns(pm->vm);
	tmr_sync(pm, now);
	for (unsigned i = 0; i < size && offset + i < EVT_LEN; i++) {
		unsigned off = (unsigned)offset + i;
		uint32_t reg;

		if (off >= OFF_TMR)
			reg = (uint32_t)(tmr_total(pm, now) & TMR_MASK) >>
			      (8 * (off - OFF_TMR));
		else
			reg = (uint32_t)evt_reg_read(pm, off & ~1u) >>
			      (8 * (off & 1));
		v |= (uint64_t)(reg & 0xff) << (8 * i);
	}
	pm_update(pm); /* TMR_STS may have been folded in */
	pthread_mutex_unlock(&pm->lock);
	return v;
}

static void evt_write(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	tmr_sync(pm, vm_clock_ns(pm->vm));
	/* Each 16-bit register below the timer gets the bytes it covers. */
	for (unsigned reg = OFF_STS; reg < OFF_TMR; reg += 2) {
		uint16_t v = 0, mask = 0;

		for (unsigned b = 0; b < 2; b++) {
			uint64_t off = reg + b;

			if (off < offset || off >= offset + size)
				continue;
			v |= (uint16_t)(((value >> (8 * (off - offset))) & 0xff)
					<< (8 * b));
			mask |= (uint16_t)(0xff << (8 * b));
		}
		if (mask)
			evt_reg_write(pm, reg, v, mask);
	}
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
}

static uint64_t gpe_read(void *opaque, uint64_t offset, unsigned size)
{
	struct acpi_pm *pm = opaque;
	uint32_t regs;
	uint64_t v = 0;

	pthread_mutex_lock(&pm->lock);
	regs = pm->gpe_sts | (uint32_t)pm->gpe_en << 16;
	pthread_mutex_unlock(&pm->lock);
	for (unsigned i = 0; i < size && offset + i < GPE_LEN; i++)
		v |= (uint64_t)((regs >> (8 * (offset + i))) & 0xff) << (8 * i);
	return v;
}

static void gpe_write(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < size && offset + i < GPE_LEN; i++) {
		unsigned off = (unsigned)offset + i;
		uint16_t byte = (uint16_t)(((value >> (8 * i)) & 0xff)
					   << (8 * (off & 1)));
		uint16_t mask = (uint16_t)(0xff << (8 * (off & 1)));

		if (off < 2)
			pm->gpe_sts &= ~byte;
		else
			pm->gpe_en = (uint16_t)((pm->gpe_en & ~mask) | byte);
	}
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
}

static const struct bus_ops evt_ops = { .read = evt_read, .write = evt_write };
static const struct bus_ops gpe_ops = { .read = gpe_read, .write = gpe_write };

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->sts |= ACPI_PM1_PWRBTN;
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_gpe_raise(struct acpi_pm *pm, unsigned bit)
{
	if (bit >= 16)
		return;
	pthread_mutex_lock(&pm->lock);
	pm->gpe_sts |= (uint16_t)(1u << bit);
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* --- lifecycle ------------------------------------------------------ */

/* The PM timer keeps running across a reset, as it does on boards where
 * it lives in the always-powered well; everything else clears. */
static void pm_reset_locked(struct acpi_pm *pm)
{
	uint64_t now = vm_clock_ns(pm->vm);

	pm->sts = pm->en = pm->cnt = 0;
	pm->gpe_sts = pm->gpe_en = 0;
	pm->tmr_period = tmr_total(pm, now) >> TMR_PERIOD_SHIFT;
	pm_update(pm);
}

static void pm_reset(void *opaque)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	pm_reset_locked(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void pm_save(void *opaque, struct state_buf *b)
{
	struct acpi_pm *pm = opaque;

	pthread_mutex_lock(&pm->lock);
	uint64_t now = vm_clock_ns(pm->vm);
	tmr_sync(pm, now);
	state_put_u8(b, ACPI_PM_STATE_VERSION);
	state_put_u16(b, pm->sts);
	state_put_u16(b, pm->en);
	state_put_u16(b, pm->cnt);
	state_put_u16(b, pm->gpe_sts);
	state_put_u16(b, pm->gpe_en);
	state_put_u32(b, (uint32_t)(tmr_total(pm, now) & TMR_MASK));
	pthread_mutex_unlock(&pm->lock);
}

static int pm_load(void *opaque, struct state_reader *r)
{
	struct acpi_pm *pm = opaque;
	uint16_t sts, en, cnt, gpe_sts, gpe_en;
	uint32_t tmr;

	if (state_get_u8(r) != ACPI_PM_STATE_VERSION)
		return -EINVAL;
	sts = state_get_u16(r);
	en = state_get_u16(r);
	cnt = state_get_u16(r);
	gpe_sts = state_get_u16(r);
	gpe_en = state_get_u16(r);
	tmr = state_get_u32(r);
	if (r->err)
		return r->err;
	if ((sts & ~STS_BITS) || (en & ~EN_BITS) || (cnt & ~CNT_STORED) ||
	    (tmr & ~TMR_MASK))
		return -EINVAL;

	pthread_mutex_lock(&pm->lock);
	uint64_t now = vm_clock_ns(pm->vm);
	pm->sts = sts;
	pm->en = en;
	pm->cnt = cnt;
	pm->gpe_sts = gpe_sts;
	pm->gpe_en = gpe_en;
	pm->tmr_offset = (tmr - clock_ticks(now)) & TMR_MASK;
	pm->tmr_period = tmr_total(pm, now) >> TMR_PERIOD_SHIFT;
	pm_update(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static void pm_destroy(void *opaque)
{
	struct acpi_pm *pm = opaque;

	vm_timer_del(&pm->timer);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static const struct vm_device_ops pm_dev_ops = {
	.name = "acpi-pm",
	.reset = pm_reset,
	.save = pm_save,
	.load = pm_load,
	.destroy = pm_destroy,
};

int acpi_pm_create(struct vm *vm, struct acpi_pm **out)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	int r;

	if (!pm)
		return -ENOMEM;
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	vm_timer_init(&pm->timer, vm, pm_timer_cb, pm);
	pm_reset_locked(pm);
	r = vm_add_device(vm, &pm_dev_ops, pm);
	if (r) {
		pm_destroy(pm);
		return r;
	}
	r = bus_register(&vm->pio, PC_ACPI_PM_BASE, EVT_LEN, &evt_ops, pm,
			 "acpi-pm");
	if (!r)
		r = bus_register(&vm->pio, PC_ACPI_GPE0_BLK, GPE_LEN, &gpe_ops,
				 pm, "acpi-gpe0");
	if (r)
		return r;
	*out = pm;
	return 0;
}
