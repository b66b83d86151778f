/*
 * accel.c - the software CPU as an accelerator (`--accel emu`): vCPU
 * threads running the interpreter, the local APICs, and how the machine's
 * interrupt controllers reach them.
 *
 * SHAPE.  create() makes one `struct emu_cpu` per vCPU, an APIC bus
 * (lapic.h) with one LAPIC each, the VM-wide code map and a decoded-block
 * cache per vCPU (blocks.h).  The BSP starts in the loader's entry state
 * (arch/x86/boot.h: 32-bit protected mode with flat segments, or 64-bit
 * long mode on the loader's identity page tables); the APs start halted,
 * waiting for INIT-SIPI-SIPI like real ones.  There is no in-kernel irqchip:
 * the board creates its own 8259 PICs, IOAPIC and PIT, and run.c asks
 * board_config() where they deliver (the PIC's INTR to every LAPIC's LINT0,
 * IOAPIC and MSI messages to the APIC bus) and calls board_ready() once
 * they exist so EOIs reach the IOAPIC and ExtINT acknowledges reach the PIC.
 *
 * THE vCPU LOOP (one thread per vCPU):
 *   loop:
 *     vm_stopping()?                              -> leave
 *     events from the LAPIC (lapic_poll, lockless):
 *       INIT -> reset (APs wait for SIPI again)   SIPI -> real mode at v<<12
 *       NMI  -> deliver unless blocked            INTR -> if IF and no
 *               interrupt shadow: lapic_ack(), deliver through the IDT
 *     halted or waiting for SIPI?                 -> sleep until kicked
 *     run up to EMU_RUN_BUDGET instructions through the block cache
 *     exception -> deliver through the IDT; triple fault -> crash report
 * So stops, interrupts and timer expiries are seen at block boundaries,
 * at most EMU_RUN_BUDGET instructions apart, and right after any
 * instruction that touched a device port or changed RFLAGS.IF (blocks.c
 * returns after those).
 *
 * SLEEPING AND KICKS.  A halted vCPU waits on its condition variable.  The
 * APIC bus's kick callback (any thread: device timers on the I/O thread,
 * IPIs from other vCPUs, the PIC under its lock) sets the vCPU's `kicked`
 * flag under the vCPU's mutex and signals; the sleeper re-checks the flag
 * under the same mutex, so no wake-up is lost.  The kick takes no other
 * lock and calls nothing, as lapic.h requires.  stop() sets `stopping`,
 * kicks everyone and joins.
 *
 * TIMERS.  The LAPIC timers, PIT and every other device timer are
 * vm_timers run by the main thread's event loop (run.c); they raise
 * interrupts through the APIC bus, which kicks the vCPU.
 *
 * DEBUGGING (emu_debug.c, accel_int.h).  The loop loads st->dbg.slow once
 * per iteration; only while it is set (a debugger attached or pausing,
 * --trace=insn) does it call emu_debug_park() at the top (stop reports,
 * parking) and emu_debug_exec() instead of emu_run_blocks() (per-
 * instruction execution when breakpoints, a step or the instruction trace
 * need it).  deliver() tells the trace about interrupts and exceptions
 * when --trace=int/exc is on.
 *
 * CRASHES.  A triple fault (EMU_SHUTDOWN) or an internal error is reported
 * like KVM's crashes: vCPU, what, RIP, up to 15 instruction bytes, then
 * vm_request_stop(VM_STOP_GUEST_CRASH) (VM_STOP_ERROR for kvmm's own
 * failures).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accel/emu/accel_int.h"
#include "accel/emu/blocks.h"
#include "accel/emu/emu.h"
#include "accel/emu/lapic.h"
#include "arch/x86/boot.h"
#include "core/accel.h"
#include "core/vm.h"
#include "hw/ioapic.h"
#include "hw/pc.h"
#include "hw/pic.h"
#include "util/log.h"

/* Instructions between two looks at stops and interrupts (about 10-50 us
 * of guest time at the interpreter's speed). */
#define EMU_RUN_BUDGET 1000u

/* ---- the APIC bus's callbacks ------------------------------------------- */

static void kick_vcpu(struct emu_vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->kicked = true;
	pthread_cond_signal(&v->wake);
	pthread_mutex_unlock(&v->lock);
}

static void bus_kick(void *opaque, int cpu)
{
	struct emu_state *st = opaque;

	if (cpu >= 0 && cpu < st->nr_vcpus)
		kick_vcpu(&st->vcpus[cpu]);
}

static void bus_eoi(void *opaque, uint8_t vector)
{
	struct emu_state *st = opaque;

	if (st->ioapic)
		ioapic_eoi(st->ioapic, vector);
}

static int bus_extint_ack(void *opaque)
{
	struct emu_state *st = opaque;

	return st->pic ? pic_intack(st->pic) : -1;
}

static const struct lapic_bus_ops bus_ops = {
	.kick = bus_kick,
	.eoi = bus_eoi,
	.extint_ack = bus_extint_ack,
};

/* ---- vCPU state ---------------------------------------------------------- */

static void flat_seg(struct emu_segment *s, uint16_t sel, uint16_t type,
		     bool big)
{
	s->sel = sel;
	s->base = 0;
	s->limit = 0xffffffffu;
	s->attr = type | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P | EMU_SEG_ATTR_G |
		  (big ? EMU_SEG_ATTR_DB : 0);
	s->unusable = false;
}

/* The BSP's entry state from the loader (boot.h: flat segments from the
 * boot GDT, TR = the busy TSS, interrupts off). */
static void load_boot_regs(struct emu_cpu *cpu, const struct x86_boot_regs *r)
{
	if (r->mode == X86_ENTRY_LONG64) {
		emu_cpu_set_long_mode(cpu, r->rip);
		cpu->cr3 = r->cr3;
	} else {
		cpu->cr0 = (cpu->cr0 & ~0x60000000ull) | EMU_CR0_PE;
		for (int i = 0; i < EMU_NR_SEGS; i++)
			flat_seg(&cpu->seg[i], BOOT_SEL_DATA, 0x3, true);
		flat_seg(&cpu->seg[EMU_SEG_CS], BOOT_SEL_CODE, 0xb, true);
		cpu->rip = r->rip;
		emu_flags_set(cpu, EMU_FL_FIXED);
	}
	cpu->tr.sel = BOOT_SEL_TSS;
	cpu->tr.base = 0;
	cpu->tr.limit = 0x67;
	cpu->tr.attr = 0xb | EMU_SEG_ATTR_P;
	cpu->gdtr.base = r->gdt_base;
	cpu->gdtr.limit = r->gdt_limit;
	cpu->idtr.base = 0;
	cpu->idtr.limit = 0;
	cpu->gpr[EMU_RSP] = r->rsp;
	cpu->gpr[EMU_RAX] = r->rax;
	cpu->gpr[EMU_RBX] = r->rbx;
	cpu->gpr[EMU_RSI] = r->rsi;
	emu_cpu_update_mode(cpu);
}

/* Power-on / INIT state (SDM Vol. 3A 9.1.1), keeping what ties the CPU to
 * the machine. */
static void reset_cpu(struct emu_vcpu *v)
{
	struct emu_cpu *c = &v->cpu;
	struct emu_cpu keep = *c;

	emu_cpu_init(c, keep.mem, keep.mmio, keep.pio);
	c->vm = keep.vm;
	c->lapic = keep.lapic;
	c->index = keep.index;
	c->nr_cpus = keep.nr_cpus;
	c->blocks = keep.blocks;
	c->code = keep.code;
	if (c->index != 0)
		c->msr.apic_base &= ~(uint64_t)LAPIC_BASE_BSP;
}

/* ---- crash reports ------------------------------------------------------- */

static void report_crash(struct emu_vcpu *v, const char *what,
			 enum vm_stop_reason why, int value)
{
	struct emu_cpu *c = &v->cpu;
	uint8_t buf[15];
	unsigned got = 0;
	char bytes[64] = "unavailable";

	emu_mem_fetch(c, c->rip, buf, sizeof(buf), &got);
	if (got) {
		bytes[0] = '\0';
		for (unsigned i = 0; i < got; i++)
			snprintf(bytes + strlen(bytes), sizeof(bytes) - strlen(bytes),
				 "%s%02x", i ? " " : "", buf[i]);
	}
	if (why == VM_STOP_GUEST_CRASH)
		log_error("guest crashed: vCPU %d: %s at RIP 0x%llx (CS 0x%x, mode %d), "
			  "instruction bytes: %s", v->cpu.index, what,
			  (unsigned long long)c->rip, c->seg[EMU_SEG_CS].sel,
			  (int)c->mode, bytes);
	else
		log_error("vCPU %d: %s at RIP 0x%llx, instruction bytes: %s",
			  v->cpu.index, what, (unsigned long long)c->rip, bytes);
	vm_request_stop(c->vm, why, value);
}

/* ---- the vCPU loop ------------------------------------------------------- */

static bool should_stop(struct emu_vcpu *v)
{
	return emu_vcpu_should_stop(v);
}

/* Sleep until kicked (or stopped). */
static void sleep_until_kicked(struct emu_vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	while (!v->kicked && !should_stop(v))
		pthread_cond_wait(&v->wake, &v->lock);
	v->kicked = false;
	pthread_mutex_unlock(&v->lock);
}

/* Deliver an event; false when the VM must stop (triple fault). */
static bool deliver(struct emu_vcpu *v, unsigned vector, enum emu_event kind,
		    bool has_error, uint32_t error)
{
	char what[64];

	if (__builtin_expect(v->st->dbg.trace & (ACCEL_TRACE_INT | ACCEL_TRACE_EXC), 0))
		emu_debug_trace_event(v, vector, kind, has_error, error);
	if (emu_deliver(&v->cpu, vector, kind, has_error, error) == 0)
		return true;
	snprintf(what, sizeof(what),
		 "triple fault (delivering vector %u)", vector);
	report_crash(v, what, VM_STOP_GUEST_CRASH, 0);
	return false;
}

/* LAPIC events at an instruction boundary.  Returns false to stop. */
static bool handle_events(struct emu_vcpu *v)
{
	struct emu_cpu *c = &v->cpu;
	struct lapic *l = c->lapic;
	unsigned ev = lapic_poll(l);
	int vec;

	if (!ev)
		return true;
	if ((ev & LAPIC_EV_INIT) && lapic_take_init(l)) {
		reset_cpu(v);
		/* The BSP restarts at the reset vector (no firmware here:
		 * as on a PC without BIOS); APs wait for a SIPI. */
		c->halted = c->index != 0;
	}
	if (ev & LAPIC_EV_SIPI) {
		vec = lapic_take_sipi(l);
		if (vec >= 0) {
			reset_cpu(v);
			c->seg[EMU_SEG_CS].sel = (uint16_t)(vec << 8);
			c->seg[EMU_SEG_CS].base = (uint64_t)vec << 12;
			c->rip = 0;
			c->halted = false;
			emu_cpu_update_mode(c);
		}
	}
	if (lapic_waiting_for_sipi(l))
		return true;
	if ((ev & LAPIC_EV_NMI) && !c->nmi_blocked && lapic_take_nmi(l)) {
		c->halted = false;
		if (!deliver(v, EMU_VEC_NMI, EMU_EVENT_NMI, false, 0))
			return false;
	}
	if ((ev & LAPIC_EV_INTR) && (c->rflags & EMU_FL_IF) && !c->int_shadow) {
		vec = lapic_ack(l);
		if (vec >= 0) {
			c->halted = false;
			if (!deliver(v, (unsigned)vec, EMU_EVENT_EXTINT, false, 0))
				return false;
		}
	}
	return true;
}

/* The result of a run of instructions.  Returns false to stop. */
static bool handle_result(struct emu_vcpu *v, int r)
{
	struct emu_cpu *c = &v->cpu;
	char what[64];

	if (r == 0)
		return true;
	if (EMU_IS_EXC(r)) {
		if (EMU_EXC_VEC(r) == EMU_VEC_PF)
			c->cr2 = c->exc.cr2;
		return deliver(v, c->exc.vector, EMU_EVENT_EXCEPTION,
			       c->exc.has_error, c->exc.error_code);
	}
	if (r == EMU_HALTED) {
		c->halted = true;
		return true;
	}
	if (r == EMU_SHUTDOWN) {
		report_crash(v, "triple fault", VM_STOP_GUEST_CRASH, 0);
		return false;
	}
	if (r < 0) {
		snprintf(what, sizeof(what), "internal error: %s", strerror(-r));
		report_crash(v, what, VM_STOP_ERROR, r);
		return false;
	}
	snprintf(what, sizeof(what), "unexpected result 0x%x", r);
	report_crash(v, what, VM_STOP_ERROR, -EINVAL);
	return false;
}

static void *vcpu_thread(void *arg)
{
	struct emu_vcpu *v = arg;
	struct emu_cpu *c = &v->cpu;
	char name[16];
	unsigned ran;

	snprintf(name, sizeof(name), "vcpu%d", c->index);
	pthread_setname_np(pthread_self(), name);
	while (!should_stop(v)) {
		/* A debugger or the instruction trace: the only cost when
		 * neither is on is this load and branch per run of blocks. */
		bool dbg = atomic_load_explicit(&v->st->dbg.slow,
						memory_order_relaxed);

		if (__builtin_expect(dbg, 0) && emu_debug_park(v))
			continue;
		if (!handle_events(v))
			break;
		if (c->halted || lapic_waiting_for_sipi(c->lapic)) {
			/* Sleep unless something that wakes the CPU arrived
			 * since the poll above (HLT with IF = 0 wakes only
			 * for NMI, INIT, SIPI). */
			unsigned ev = lapic_poll(c->lapic);
			bool wake = (ev & (LAPIC_EV_INIT | LAPIC_EV_SIPI)) ||
				    ((ev & LAPIC_EV_NMI) && !c->nmi_blocked) ||
				    ((ev & LAPIC_EV_INTR) &&
				     (c->rflags & EMU_FL_IF) &&
				     !lapic_waiting_for_sipi(c->lapic));

			if (!wake)
				sleep_until_kicked(v);
			continue;
		}
		if (!handle_result(v, __builtin_expect(dbg, 0) ?
					   emu_debug_exec(v) :
					   emu_run_blocks(c, EMU_RUN_BUDGET, &ran)))
			break;
	}
	return NULL;
}

/* ---- accel_ops ------------------------------------------------------------ */

static void emu_destroy(void *state);

static int emu_create(struct vm *vm, const struct x86_boot_regs *regs,
		      void **state, bool *in_kernel_irqchip)
{
	struct emu_state *st = calloc(1, sizeof(*st));
	int r;

	if (!st)
		return -ENOMEM;
	st->vm = vm;
	st->nr_vcpus = vm->nr_cpus;
	emu_debug_init(st);
	st->vcpus = calloc((size_t)st->nr_vcpus, sizeof(*st->vcpus));
	if (!st->vcpus) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < st->nr_vcpus; i++) {
		pthread_mutex_init(&st->vcpus[i].lock, NULL);
		pthread_cond_init(&st->vcpus[i].wake, NULL);
	}
	r = lapic_bus_create(vm, st->nr_vcpus, &bus_ops, st, &st->bus);
	if (r) {
		log_error("software CPU: cannot create the local APICs: %s",
			  strerror(-r));
		goto fail;
	}
	r = emu_code_map_create(&vm->mem, &st->code);
	if (r) {
		log_error("software CPU: cannot allocate the code map: %s",
			  strerror(-r));
		goto fail;
	}
	for (int i = 0; i < st->nr_vcpus; i++) {
		struct emu_vcpu *v = &st->vcpus[i];
		struct emu_cpu *c = &v->cpu;

		v->st = st;
		emu_cpu_init(c, &vm->mem, &vm->mmio, &vm->pio);
		c->vm = vm;
		c->index = i;
		c->nr_cpus = st->nr_vcpus;
		c->lapic = lapic_bus_get(st->bus, i);
		c->code = st->code;
		r = emu_blocks_create(st->code, &c->blocks);
		if (r) {
			log_error("software CPU: cannot allocate the block cache: %s",
				  strerror(-r));
			goto fail;
		}
		if (i == 0) {
			load_boot_regs(c, regs);
		} else {
			c->msr.apic_base &= ~(uint64_t)LAPIC_BASE_BSP;
			c->halted = true; /* waits for SIPI (the LAPIC knows) */
		}
	}
	vm->mem.write_notify = emu_code_map_gm_notify;
	vm->mem.write_notify_opaque = st->code;
	*in_kernel_irqchip = false;
	*state = st;
	return 0;
fail:
	emu_destroy(st);
	return r;
}

static void emu_board_config(void *state, struct pc_board_config *cfg)
{
	struct emu_state *st = state;

	cfg->pic_intr = lapic_bus_pic_intr_handler;
	cfg->lapic_msi = lapic_bus_msi_handler;
	cfg->cpu_opaque = st->bus;
}

static int emu_board_ready(void *state, struct vm *vm)
{
	struct emu_state *st = state;

	for (int i = 0; i < vm->nr_devices; i++) {
		const char *name = vm->devices[i].ops->name;

		if (!strcmp(name, "ioapic"))
			st->ioapic = vm->devices[i].opaque;
		else if (!strcmp(name, "pic"))
			st->pic = vm->devices[i].opaque;
	}
	if (!st->ioapic || !st->pic) {
		log_error("software CPU: the board has no %s",
			  st->ioapic ? "8259 PIC" : "IOAPIC");
		return -ENODEV;
	}
	lapic_bus_set_ops(st->bus, &bus_ops, st);
	return 0;
}

static int emu_start(void *state)
{
	struct emu_state *st = state;
	int r;

	for (int i = 0; i < st->nr_vcpus; i++) {
		r = pthread_create(&st->vcpus[i].thread, NULL, vcpu_thread,
				   &st->vcpus[i]);
		if (r) {
			log_error("cannot start vCPU thread %d: %s", i, strerror(r));
			vm_request_stop(st->vm, VM_STOP_ERROR, -r);
			return -r;
		}
		st->vcpus[i].started = true;
	}
	return 0;
}

static void emu_stop(void *state)
{
	struct emu_state *st = state;

	atomic_store(&st->stopping, true);
	for (int i = 0; i < st->nr_vcpus; i++)
		kick_vcpu(&st->vcpus[i]);
	for (int i = 0; i < st->nr_vcpus; i++) {
		if (st->vcpus[i].started)
			pthread_join(st->vcpus[i].thread, NULL);
		st->vcpus[i].started = false;
	}
	if (log_max_level >= LOG_DEBUG) {
		for (int i = 0; i < st->nr_vcpus; i++) {
			const struct emu_cpu *c = &st->vcpus[i].cpu;
			const struct emu_blocks_stats *b = &c->blocks->stats;

			log_debug("vCPU %d: %llu instructions, %llu exceptions "
				  "(%llu #UD); blocks: %llu built, %llu hits "
				  "(%llu chained, %llu linked), %llu stale, %llu SMC exits, %llu flushes, "
				  "%llu single steps", i,
				  (unsigned long long)c->stats.insns,
				  (unsigned long long)c->stats.exceptions,
				  (unsigned long long)c->stats.ud,
				  (unsigned long long)b->builds,
				  (unsigned long long)b->hits,
				  (unsigned long long)b->chained,
				  (unsigned long long)b->linked,
				  (unsigned long long)b->stale,
				  (unsigned long long)b->smc_exits,
				  (unsigned long long)b->flushes,
				  (unsigned long long)b->steps);
		}
	}
}

static void emu_destroy(void *state)
{
	struct emu_state *st = state;

	if (!st)
		return;
	if (st->vm->mem.write_notify_opaque == st->code) {
		st->vm->mem.write_notify = NULL;
		st->vm->mem.write_notify_opaque = NULL;
	}
	for (int i = 0; st->vcpus && i < st->nr_vcpus; i++) {
		emu_blocks_destroy(st->vcpus[i].cpu.blocks);
		pthread_mutex_destroy(&st->vcpus[i].lock);
		pthread_cond_destroy(&st->vcpus[i].wake);
	}
	lapic_bus_destroy(st->bus);
	emu_code_map_destroy(st->code);
	emu_debug_destroy(st);
	free(st->vcpus);
	free(st);
}

const struct accel_ops emu_accel_ops = {
	.name = "emu",
	.create = emu_create,
	.board_config = emu_board_config,
	.board_ready = emu_board_ready,
	.start = emu_start,
	.stop = emu_stop,
	.destroy = emu_destroy,
	.debug = &emu_debug_ops,
};
