/*
 * lapic.h - the software CPU's local APICs (xAPIC) and the "APIC bus" that
 * connects them: IPIs, MSIs and IOAPIC messages, the LAPIC timer, and the
 * interface the software CPU uses at instruction boundaries.
 *
 * Reference: Intel SDM Vol. 3A, chapter 11 "Advanced Programmable Interrupt
 * Controller (APIC)"; section numbers below are that chapter's.  Design
 * notes (locking, timer clock, what is modelled and what is not) at the top
 * of lapic.c.
 *
 * HOW THE SOFTWARE CPU USES IT
 *   - Create one bus per VM (lapic_bus_create) before the board; give the
 *     board lapic_bus_msi_handler / lapic_bus_pic_intr_handler with the bus
 *     as opaque (pc_board_config.lapic_msi, .pic_intr, .cpu_opaque); once
 *     the board exists, point the bus's eoi / extint_ack callbacks at
 *     ioapic_eoi() / pic_intack() (lapic_bus_set_ops).
 *   - vCPU i owns lapic_bus_get(bus, i).  Its MMU sends the vCPU's own
 *     aligned 32-bit accesses to [lapic_get_base() & ~0xfff, +4 KiB) to
 *     lapic_read()/lapic_write() while lapic_hw_enabled(); RDMSR/WRMSR 0x1B
 *     go to lapic_get_base()/lapic_set_base(); MOV CR8 to lapic_get_cr8()/
 *     lapic_set_cr8(); IA32_TSC_DEADLINE (0x6E0) to lapic_set_tsc_deadline()
 *     after converting TSC ticks to vm_clock_ns() time.
 *   - At each block boundary and in HLT: if lapic_poll() is non-zero,
 *       LAPIC_EV_INIT -> lapic_take_init(); if true, reset the CPU (BSP:
 *                        to the reset vector; AP: wait for SIPI, halted)
 *       LAPIC_EV_SIPI -> v = lapic_take_sipi(); if v >= 0 start in real
 *                        mode at CS = v << 8 (base v << 12), IP = 0
 *       LAPIC_EV_NMI  -> if NMIs are not blocked, lapic_take_nmi() and
 *                        deliver vector 2
 *       LAPIC_EV_INTR -> if RFLAGS.IF = 1 and no interrupt shadow (STI,
 *                        MOV SS): v = lapic_ack(); if v >= 0 deliver v
 *     A halted vCPU sleeps until the bus's kick callback runs for it, then
 *     re-checks lapic_poll().
 *   - The I/O thread runs vm_timers_run(), which fires LAPIC timers.
 */
#ifndef KVMM_ACCEL_EMU_LAPIC_H
#define KVMM_ACCEL_EMU_LAPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"

struct vm;
struct lapic;
struct lapic_bus;

#define LAPIC_MAX_CPUS 255      /* xAPIC IDs 0-254; 0xff is broadcast */
#define LAPIC_VERSION  0x00050014u /* version 0x14, max LVT entry 5 (6 LVTs) */
#define LAPIC_MMIO_SIZE 0x1000

/* MSR numbers the CPU forwards here (SDM 11.4.4, 11.5.4.1). */
#define LAPIC_MSR_APIC_BASE    0x1bu
#define LAPIC_MSR_TSC_DEADLINE 0x6e0u

/* IA32_APIC_BASE bits (SDM 11.4.4, figure 11-5). */
#define LAPIC_BASE_BSP    (1ull << 8)
#define LAPIC_BASE_EXTD   (1ull << 10) /* x2APIC enable: not offered */
#define LAPIC_BASE_ENABLE (1ull << 11)
#define LAPIC_BASE_ADDR   0x000ffffffffff000ull

/* Register offsets in the 4 KiB page (SDM 11.4.1, table 11-1). */
enum {
	LAPIC_REG_ID = 0x020,
	LAPIC_REG_VERSION = 0x030,
	LAPIC_REG_TPR = 0x080,
	LAPIC_REG_APR = 0x090,
	LAPIC_REG_PPR = 0x0a0,
	LAPIC_REG_EOI = 0x0b0,
	LAPIC_REG_RRD = 0x0c0,
	LAPIC_REG_LDR = 0x0d0,
	LAPIC_REG_DFR = 0x0e0,
	LAPIC_REG_SVR = 0x0f0,
	LAPIC_REG_ISR = 0x100,  /* 8 registers, 0x10 apart */
	LAPIC_REG_TMR = 0x180,
	LAPIC_REG_IRR = 0x200,
	LAPIC_REG_ESR = 0x280,
	LAPIC_REG_LVT_CMCI = 0x2f0, /* not implemented (max LVT 5): reads 0 */
	LAPIC_REG_ICR_LO = 0x300,
	LAPIC_REG_ICR_HI = 0x310,
	LAPIC_REG_LVT_TIMER = 0x320,
	LAPIC_REG_LVT_THERMAL = 0x330,
	LAPIC_REG_LVT_PERF = 0x340,
	LAPIC_REG_LVT_LINT0 = 0x350,
	LAPIC_REG_LVT_LINT1 = 0x360,
	LAPIC_REG_LVT_ERROR = 0x370,
	LAPIC_REG_TIMER_INIT = 0x380,
	LAPIC_REG_TIMER_CUR = 0x390,
	LAPIC_REG_TIMER_DIV = 0x3e0,
};

/* Bits of lapic_poll(): what the vCPU has to look at. */
#define LAPIC_EV_INTR 1u /* a maskable interrupt (fixed or ExtINT) is
			    deliverable once RFLAGS.IF = 1 */
#define LAPIC_EV_NMI  2u
#define LAPIC_EV_INIT 4u
#define LAPIC_EV_SIPI 8u

/* lapic_pending_vector()'s answer for an ExtINT (the 8259 owns the vector). */
#define LAPIC_EXTINT 256

/* The periodic timer never fires more often than this (as KVM's
 * min_timer_period_us default): a guest programming initial count 1,
 * divide 1, periodic, gets one interrupt per 200 us, not one per ns. */
#define LAPIC_MIN_PERIOD_NS 200000ull

/* What the bus calls back into the software CPU and the board. */
struct lapic_bus_ops {
	/* Something was queued for vCPU `cpu` (interrupt, NMI, INIT, SIPI,
	 * LINT0 rose): wake it if halted.  Called without any LAPIC lock
	 * held, from any thread - possibly with the PIC's lock held (the
	 * PIC's intr callback path), so it must only signal (condvar,
	 * eventfd, atomic), never call into a device.  May be NULL. */
	void (*kick)(void *opaque, int cpu);
	/* The guest EOI'd level-triggered `vector` (its TMR bit was set):
	 * the board's ioapic_eoi().  Called without LAPIC locks held, on the
	 * thread of the vCPU that wrote EOI.  May be NULL. */
	void (*eoi)(void *opaque, uint8_t vector);
	/* INTA cycle for an ExtINT: the board's pic_intack(); returns the
	 * vector 0-255.  Called without LAPIC locks held, on the vCPU's
	 * thread.  May be NULL (ExtINTs are then dropped). */
	int (*extint_ack)(void *opaque);
};

/*
 * Create the bus and `nr_cpus` (1..LAPIC_MAX_CPUS) LAPICs with APIC IDs
 * 0..nr_cpus-1, in power-on state (SDM 11.4.7.1); CPU 0 is the BSP.  Each
 * LAPIC gets a vm_timer on `vm` (the LAPIC timer).  `ops` is copied;
 * `opaque` must outlive the bus.  The bus belongs to the caller (the
 * accelerator): free it with lapic_bus_destroy().  Returns 0, -EINVAL
 * (nr_cpus out of range) or -ENOMEM.
 */
int lapic_bus_create(struct vm *vm, int nr_cpus,
		     const struct lapic_bus_ops *ops, void *opaque,
		     struct lapic_bus **out);

/* Replace the callbacks (e.g. once the board's IOAPIC and PIC exist).
 * Only while no vCPU runs and no timer can fire (before start). */
void lapic_bus_set_ops(struct lapic_bus *bus, const struct lapic_bus_ops *ops,
		       void *opaque);

/* Disarm every timer and free the bus and its LAPICs.  The thread running
 * vm_timers_run() must no longer run (or the machine's timers must not be
 * run again) and no vCPU may use the LAPICs.  NULL is ignored. */
void lapic_bus_destroy(struct lapic_bus *bus);

/* Number of LAPICs, and LAPIC `cpu` (NULL if out of range); borrowed. */
int lapic_bus_nr_cpus(const struct lapic_bus *bus);
struct lapic *lapic_bus_get(struct lapic_bus *bus, int cpu);

/*
 * Deliver one message in MSI format (SDM 11.11): address 0xFEExxxxx with
 * destination ID bits 19:12, redirection hint bit 3, destination mode bit 2
 * (1 = logical); data: vector 7:0, delivery mode 10:8 (fixed, lowest
 * priority, SMI, NMI, INIT, StartUp, ExtINT), trigger bit 15 (1 = level;
 * sets the target's TMR bit so its EOI calls ops.eoi).  The level bit 14 is
 * ignored: an MSI always asserts (as KVM).  Addresses outside
 * 0xFEE00000-0xFEEFFFFF (including any bit above 31) are dropped.
 * Destination matching follows SDM 11.6.2 (physical, logical flat and
 * cluster, broadcast 0xFF); lowest priority goes to the matching LAPIC with
 * the lowest arbitration priority, the lowest CPU index on a tie.
 * Thread-safe; takes LAPIC locks one at a time and kicks after unlocking.
 */
void lapic_bus_deliver_msi(struct lapic_bus *bus, uint64_t addr,
			   uint32_t data);

/* lapic_bus_deliver_msi() with a void * bus: fits ioapic_deliver_fn,
 * irq_router_msi_fn and pc_board_config.lapic_msi. */
void lapic_bus_msi_handler(void *bus, uint64_t addr, uint32_t data);

/* The 8259's INTR output: drives LINT0 of every LAPIC (virtual wire;
 * only a LAPIC whose LVT LINT0 is unmasked ExtINT, or which is globally
 * disabled, takes it).  Fits pic_intr_fn / pc_board_config.pic_intr:
 * safe under the PIC's lock (it only takes LAPIC locks and kicks).
 * SDM 11.5.1 (LVT LINT0, ExtINT delivery mode). */
void lapic_bus_pic_intr_handler(void *bus, bool level);

/* Power-on reset of every LAPIC (machine reset; SDM 11.4.7.1). */
void lapic_bus_reset(struct lapic_bus *bus);

/* Save every LAPIC in CPU order / load them back (as lapic_save/
 * lapic_load).  Load parses and validates every LAPIC's state before it
 * changes any: all or nothing.  Returns 0, -EINVAL (truncated, wrong CPU
 * count, or a LAPIC's state invalid) or -ENOMEM. */
void lapic_bus_save(struct lapic_bus *bus, struct state_buf *b);
int lapic_bus_load(struct lapic_bus *bus, struct state_reader *r);

/* --- one LAPIC -------------------------------------------------------- */

/* Index of this LAPIC's vCPU on the bus (its initial APIC ID). */
int lapic_cpu_index(const struct lapic *l);

/* Read the 32-bit register at `offset` (0..0xfff) of the APIC page.
 * Offsets that are not 16-byte aligned, unimplemented registers and
 * write-only ones (EOI) read 0.  A sub-dword or unaligned guest access is
 * the CPU's business (SDM 11.4.1 says only aligned 32-bit accesses are
 * defined); it may read the dword at offset & ~0xf and extract bytes.
 * Thread-safe.  SDM 11.4.1, table 11-1. */
uint32_t lapic_read(struct lapic *l, uint32_t offset);

/* Write the 32-bit register at `offset` with the side effects the SDM
 * gives it: EOI (11.8.5), ICR low sends an IPI (11.6.1), initial count
 * (re)starts the timer (11.5.4), SVR bit 8 software-enables (11.4.7.2;
 * disabling masks every LVT), ESR write latches errors (11.5.3).  Read-only
 * bits and registers ignore writes; unaligned or unknown offsets are
 * ignored.  Never fails: any value is safe.  Thread-safe; callbacks (eoi,
 * kick) run after the LAPIC's lock is dropped. */
void lapic_write(struct lapic *l, uint32_t offset, uint32_t value);

/* IA32_APIC_BASE (SDM 11.4.4).  Reset value 0xFEE00000 | ENABLE, | BSP on
 * CPU 0. */
uint64_t lapic_get_base(struct lapic *l);

/* WRMSR IA32_APIC_BASE.  Returns -EINVAL (the CPU raises #GP) if a
 * reserved bit is set: bits 0-7, 9, 10 (x2APIC is not offered) or 52-63;
 * the CPU must also check the base against its own MAXPHYADDR.  Clearing
 * ENABLE hides the APIC (lapic_hw_enabled() false: MMIO goes to the normal
 * buses, CPUID.1:EDX.APIC should read 0, no message is accepted) and puts
 * it in power-on state (SDM 11.4.3); setting it again brings the APIC back
 * with its initial APIC ID, software-disabled.  The base address may move
 * (the CPU routes the new page).  Returns 0 otherwise. */
int lapic_set_base(struct lapic *l, uint64_t value);

/* IA32_APIC_BASE.ENABLE (SDM 11.4.3).  Lockless. */
bool lapic_hw_enabled(struct lapic *l);

/* CR8 = TPR[7:4] (SDM 11.8.6).  set takes the low 4 bits (the CPU raises
 * #GP for CR8 values above 15). */
uint8_t lapic_get_cr8(struct lapic *l);
void lapic_set_cr8(struct lapic *l, uint8_t cr8);

/* LAPIC_EV_* bits currently pending; lockless (one atomic load), for the
 * CPU's fast path at block boundaries.  A set LAPIC_EV_INTR may be stale
 * by the time lapic_ack() runs (which then returns -1); a clear one is
 * always followed by a kick when something arrives.  LAPIC_EV_INTR
 * already accounts for TPR/PPR (SDM 11.8.3.2), not for RFLAGS.IF. */
unsigned lapic_poll(struct lapic *l);

/* The maskable interrupt the LAPIC would deliver now: an ExtINT
 * (LAPIC_EXTINT; LINT0 in ExtINT mode with the 8259's INTR high, or an
 * ExtINT message), else the highest IRR vector whose priority class is
 * above the PPR's (SDM 11.8.3.2, 11.8.4), else -1.  Does not change
 * anything.  Thread-safe. */
int lapic_pending_vector(struct lapic *l);

/* Acknowledge the interrupt lapic_pending_vector() reports at this moment
 * (the CPU's INTA, when RFLAGS.IF = 1 at an instruction boundary): a fixed
 * vector moves from IRR to ISR (PPR rises) and is returned; an ExtINT
 * runs ops.extint_ack (the 8259's INTA, without LAPIC locks) and returns
 * its vector & 0xff.  Returns -1 if nothing is deliverable.  Acking
 * "whatever is highest now" rather than a vector the caller names keeps
 * the pair race-free against IPIs arriving in between.  SDM 11.8.4. */
int lapic_ack(struct lapic *l);

/* Consume a pending NMI (from an NMI message or LINT1 in NMI mode).
 * Returns whether there was one; NMIs pending at once merge into one
 * (the CPU keeps the NMI-blocked state itself).  SDM 11.6.1 (NMI mode). */
bool lapic_take_nmi(struct lapic *l);

/* Consume a pending INIT.  If there was one, the LAPIC itself is now in
 * INIT state (SDM 11.4.7.3: power-on state except the APIC ID and the
 * APIC base MSR; timer stopped) and, unless it is the BSP, waits for a
 * SIPI; returns true and the CPU must reset itself (SDM 9.1.1).  INIT
 * level de-assert messages are ignored on delivery (11.4.7.4). */
bool lapic_take_init(struct lapic *l);

/* Consume a pending StartUp IPI.  Returns its vector (0-255: start in real
 * mode at CS selector vector << 8, base vector << 12, IP 0) if the LAPIC
 * was waiting for one (an AP after power-on or INIT), else -1; a SIPI that
 * arrives while the CPU runs is dropped, as on hardware (SDM 9.4.4). */
int lapic_take_sipi(struct lapic *l);

/* True while the LAPIC waits for a SIPI (APs after power-on or INIT): the
 * vCPU should stay halted, ignoring maskable interrupts. */
bool lapic_waiting_for_sipi(struct lapic *l);

/* Drive the LINT0 / LINT1 input pins (SDM 11.5.1).  LINT0 in ExtINT mode
 * is level-sensitive (pending while high); otherwise a rising edge
 * delivers per the LVT entry (fixed: the vector; NMI: an NMI).  With the
 * APIC globally disabled, LINT0 is the CPU's INTR pin (ExtINT) and LINT1
 * its NMI pin.  Thread-safe; kicks after unlocking. */
void lapic_set_lint0(struct lapic *l, bool level);
void lapic_set_lint1(struct lapic *l, bool level);

/* IA32_TSC_DEADLINE (SDM 11.5.4.1), in vm_clock_ns() time: the CPU converts
 * TSC ticks to ns (and back for RDMSR).  0 disarms; a deadline in the past
 * fires at once.  Ignored unless the LVT timer is in TSC-deadline mode.
 * The timer interrupt clears it. */
void lapic_set_tsc_deadline(struct lapic *l, uint64_t deadline_ns);

/* The armed TSC deadline in vm_clock_ns() time, or 0 (disarmed, fired, or
 * not in TSC-deadline mode). */
uint64_t lapic_get_tsc_deadline(struct lapic *l);

/* Power-on reset of this LAPIC (SDM 11.4.7.1).  Thread-safe. */
void lapic_reset(struct lapic *l);

/* Append this LAPIC's state / restore it.  Timer deadlines are saved
 * relative to vm_clock_ns(), so a snapshot restores on another host.
 * Load validates everything (reserved bits, vectors 0-15 in IRR/ISR, timer
 * bounds) before changing the LAPIC; it delivers nothing and kicks the
 * vCPU if something is pending.  Returns 0 or -EINVAL. */
void lapic_save(struct lapic *l, struct state_buf *b);
int lapic_load(struct lapic *l, struct state_reader *r);

#endif
