/*
 * emu_debug.c - the software CPU's side of the debugger interface
 * (core/accel.h: accel_debug_ops) and of --trace.
 *
 * ZERO COST WHEN OFF.  The vCPU loop (accel.c) loads st->dbg.slow once per
 * run of blocks (up to EMU_RUN_BUDGET instructions); while it is false
 * nothing here runs.  It becomes true while a debugger is attached, while
 * a pause is asked for, and with --trace=insn.
 *
 * THE SLOW PATH.  At the top of each loop iteration emu_debug_park() first
 * reports a pending stop (a breakpoint was reached, a single step retired)
 * to the debugger and then parks while the vCPU's dbg_pause is set, on
 * dbg.cond, re-checking every 50 ms for a VM stop (so stop() needs no
 * extra wake-up).  Instead of emu_run_blocks(), emu_debug_exec() runs
 * instructions one at a time with emu_step() when breakpoints are set, a
 * single step was asked for or instructions are traced: before each one
 * it compares the linear address CS.base + RIP with the breakpoint list
 * (so Z0 and Z1 are the same thing here, and the guest's memory is never
 * patched), and after each one it looks at stop requests and LAPIC events
 * like the block runner does at block ends.  With a debugger attached but
 * no breakpoint it runs blocks as usual.
 *
 * A single step retires exactly one instruction (or delivers the exception
 * it raised: the step then ends at the handler's first instruction);
 * interrupts that are pending are delivered before it, as on hardware.
 * A HLT step ends right after the HLT (the vCPU is then halted: the next
 * continue waits for its interrupt).
 *
 * TRACE.  --trace=insn prints each instruction before it executes:
 *     insn cpu0 0010:0000000000100200 48 89 e5             mov rbp, rsp
 * (forcing emu_step() for everything: expect a ten- to thirtyfold slowdown
 * plus the cost of the file).  --trace=exc and --trace=int print each
 * exception and external interrupt / NMI as accel.c delivers it:
 *     exc cpu0 vec=14 err=0x2 rip=0x401234 cr2=0xdead000
 *     int cpu0 vec=32 rip=0xffffffff81000000
 * Software interrupts (INT n, INT3) are instructions, delivered inside the
 * executor: they show up with --trace=insn only.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include <Zydis/Zydis.h>

#include "accel/emu/accel_int.h"
#include "accel/emu/blocks.h"
#include "accel/emu/emu.h"
#include "accel/emu/lapic.h"
#include "accel/emu/mmu.h"
#include "util/log.h"

#define EMU_DBG_BUDGET 1000u /* instructions between two looks at events */

static struct emu_state *to_st(void *state) { return state; }

static void update_slow(struct emu_dbg *d, bool paused)
{
	atomic_store_explicit(&d->slow,
			      paused || d->attached || (d->trace & ACCEL_TRACE_INSN),
			      memory_order_release);
}

void emu_debug_init(struct emu_state *st)
{
	pthread_mutex_init(&st->dbg.lock, NULL);
	pthread_cond_init(&st->dbg.cond, NULL);
}

void emu_debug_destroy(struct emu_state *st)
{
	if (st->dbg.trace_f)
		fflush(st->dbg.trace_f);
	pthread_mutex_destroy(&st->dbg.lock);
	pthread_cond_destroy(&st->dbg.cond);
}

static uint64_t cur_lin(const struct emu_cpu *c)
{
	return c->seg[EMU_SEG_CS].base + c->rip;
}

/* ---- the vCPU side ---------------------------------------------------------- */

static void timed_wait(struct emu_dbg *d, long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ms * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&d->cond, &d->lock, &ts);
}

bool emu_debug_park(struct emu_vcpu *v)
{
	struct emu_dbg *d = &v->st->dbg;

	if (v->dbg_report) {
		v->dbg_report = false;
		atomic_store(&v->dbg_pause, true);
		if (d->client.stopped)
			d->client.stopped(d->client.opaque, v->cpu.index, 5);
	}
	if (!atomic_load(&v->dbg_pause))
		return false;
	pthread_mutex_lock(&d->lock);
	v->dbg_parked = true;
	pthread_cond_broadcast(&d->cond);
	while (atomic_load(&v->dbg_pause) && !emu_vcpu_should_stop(v))
		timed_wait(d, 50);
	v->dbg_parked = false;
	pthread_mutex_unlock(&d->lock);
	return true;
}

static bool bp_hit(struct emu_vcpu *v)
{
	const struct emu_dbg *d = &v->st->dbg;
	uint64_t lin = cur_lin(&v->cpu);

	if (v->dbg_skip_valid) {
		v->dbg_skip_valid = false;
		if (lin == v->dbg_skip_lin)
			return false;
	}
	for (int i = 0; i < d->nr_bps; i++)
		if (d->bps[i] == lin)
			return true;
	return false;
}

static void trace_insn(struct emu_vcpu *v)
{
	struct emu_cpu *c = &v->cpu;
	uint8_t buf[15];
	unsigned got = 0;
	char hex[48] = "", text[128] = "??";
	ZydisDecoder dec;
	ZydisFormatter fmt;
	ZydisDecodedInstruction zi;
	ZydisDecodedOperand zo[ZYDIS_MAX_OPERAND_COUNT];
	ZydisMachineMode mm;
	ZydisStackWidth sw;

	emu_mem_fetch(c, c->rip, buf, sizeof(buf), &got);
	switch (c->mode) {
	case EMU_MODE_LONG64: mm = ZYDIS_MACHINE_MODE_LONG_64; sw = ZYDIS_STACK_WIDTH_64; break;
	case EMU_MODE_PROT32: mm = ZYDIS_MACHINE_MODE_LEGACY_32; sw = ZYDIS_STACK_WIDTH_32; break;
	case EMU_MODE_PROT16: mm = ZYDIS_MACHINE_MODE_LEGACY_16; sw = ZYDIS_STACK_WIDTH_16; break;
	default: mm = ZYDIS_MACHINE_MODE_REAL_16; sw = ZYDIS_STACK_WIDTH_16; break;
	}
	if (got && ZYAN_SUCCESS(ZydisDecoderInit(&dec, mm, sw)) &&
	    ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, buf, got, &zi, zo)) &&
	    ZYAN_SUCCESS(ZydisFormatterInit(&fmt, ZYDIS_FORMATTER_STYLE_INTEL))) {
		ZydisFormatterFormatInstruction(&fmt, &zi, zo, zi.operand_count_visible,
						text, sizeof(text), cur_lin(c), NULL);
		got = zi.length;
	} else if (got > 8) {
		got = 8;
	}
	for (unsigned i = 0; i < got; i++)
		snprintf(hex + strlen(hex), sizeof(hex) - strlen(hex), "%s%02x",
			 i ? " " : "", buf[i]);
	fprintf(v->st->dbg.trace_f, "insn cpu%d %04x:%016" PRIx64 " %-30s %s\n",
		c->index, c->seg[EMU_SEG_CS].sel, c->rip, hex, text);
}

int emu_debug_exec(struct emu_vcpu *v)
{
	struct emu_state *st = v->st;
	struct emu_dbg *d = &st->dbg;
	struct emu_cpu *c = &v->cpu;
	bool step = v->dbg_step;
	bool trace = d->trace & ACCEL_TRACE_INSN;
	unsigned ran;
	int r;

	if (!step && !trace && d->nr_bps == 0)
		return emu_run_blocks(c, EMU_DBG_BUDGET, &ran);
	for (unsigned n = 0; n < (step ? 1u : EMU_DBG_BUDGET); n++) {
		if (d->nr_bps && bp_hit(v)) {
			v->dbg_report = true;
			return 0;
		}
		v->dbg_skip_valid = false;
		if (trace)
			trace_insn(v);
		r = emu_step(c);
		if (step) {
			/* Reported at the top of the loop, after a fault was
			 * delivered (the step then ends in the handler). */
			v->dbg_step = false;
			v->dbg_report = true;
		}
		if (r)
			return r;
		if (vm_stopping(c->vm) || lapic_poll(c->lapic) ||
		    atomic_load_explicit(&v->dbg_pause, memory_order_relaxed))
			break;
	}
	return 0;
}

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "",
	"#TS", "#NP", "#SS", "#GP", "#PF", "", "#MF", "#AC", "#MC", "#XM",
	"#VE", "#CP",
};

void emu_debug_trace_event(struct emu_vcpu *v, unsigned vector, int kind,
			   bool has_error, uint32_t error)
{
	struct emu_dbg *d = &v->st->dbg;
	struct emu_cpu *c = &v->cpu;
	char err[24] = "", cr2[32] = "";
	bool exc = kind == EMU_EVENT_EXCEPTION;

	if (!(d->trace & (exc ? ACCEL_TRACE_EXC : ACCEL_TRACE_INT)) || !d->trace_f)
		return;
	if (has_error)
		snprintf(err, sizeof(err), " err=0x%x", error);
	if (exc && vector == EMU_VEC_PF)
		snprintf(cr2, sizeof(cr2), " cr2=0x%" PRIx64, c->cr2);
	fprintf(d->trace_f, "%s cpu%d vec=%u%s%s%s cs=0x%04x rip=0x%" PRIx64 "%s\n",
		exc ? "exc" : kind == EMU_EVENT_NMI ? "nmi" : "int", c->index,
		vector, exc && vector < 32 && exc_names[vector][0] ? " " : "",
		exc && vector < 32 ? exc_names[vector] : "", err,
		c->seg[EMU_SEG_CS].sel, c->rip, cr2);
}

/* ---- the debugger's side ------------------------------------------------------ */

static void emu_dbg_attach(void *state, const struct accel_debug_client *client)
{
	struct emu_state *st = to_st(state);
	struct emu_dbg *d = &st->dbg;

	pthread_mutex_lock(&d->lock);
	if (client) {
		d->client = *client;
		d->attached = true;
		update_slow(d, true);
	} else {
		d->attached = false;
		d->nr_bps = 0;
		memset(&d->client, 0, sizeof(d->client));
		for (int i = 0; i < st->nr_vcpus; i++) {
			st->vcpus[i].dbg_step = false;
			st->vcpus[i].dbg_report = false;
			atomic_store(&st->vcpus[i].dbg_pause, false);
		}
		update_slow(d, false);
		pthread_cond_broadcast(&d->cond);
	}
	pthread_mutex_unlock(&d->lock);
}

static int emu_dbg_pause_all(void *state)
{
	struct emu_state *st = to_st(state);
	struct emu_dbg *d = &st->dbg;
	int r = 0;

	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < st->nr_vcpus; i++)
		atomic_store(&st->vcpus[i].dbg_pause, true);
	update_slow(d, true);
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < st->nr_vcpus; i++) {
		struct emu_vcpu *v = &st->vcpus[i];

		pthread_mutex_lock(&v->lock); /* wake a halted vCPU */
		v->kicked = true;
		pthread_cond_signal(&v->wake);
		pthread_mutex_unlock(&v->lock);
	}
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < st->nr_vcpus; i++) {
		struct emu_vcpu *v = &st->vcpus[i];

		while (v->started && !v->dbg_parked) {
			if (emu_vcpu_should_stop(v)) {
				r = -ESHUTDOWN;
				break;
			}
			timed_wait(d, 50);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

static void emu_dbg_resume(void *state, int step_cpu)
{
	struct emu_state *st = to_st(state);
	struct emu_dbg *d = &st->dbg;

	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < st->nr_vcpus; i++) {
		struct emu_vcpu *v = &st->vcpus[i];

		if (step_cpu >= 0 && i != step_cpu)
			continue;
		v->dbg_step = i == step_cpu;
		v->dbg_report = false;
		v->dbg_skip_valid = true;
		v->dbg_skip_lin = cur_lin(&v->cpu);
		atomic_store(&v->dbg_pause, false);
	}
	update_slow(d, false);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static int emu_dbg_get_regs(void *state, int cpu, struct x86_regs_dbg *r)
{
	struct emu_state *st = to_st(state);
	static const int gmap[16] = { EMU_RAX, EMU_RBX, EMU_RCX, EMU_RDX, EMU_RSI,
				      EMU_RDI, EMU_RBP, EMU_RSP, 8, 9, 10, 11,
				      12, 13, 14, 15 };
	static const int smap[6] = { EMU_SEG_CS, EMU_SEG_SS, EMU_SEG_DS,
				     EMU_SEG_ES, EMU_SEG_FS, EMU_SEG_GS };
	struct emu_cpu *c;

	if (cpu < 0 || cpu >= st->nr_vcpus)
		return -EINVAL;
	c = &st->vcpus[cpu].cpu;
	memset(r, 0, sizeof(*r));
	for (int i = 0; i < 16; i++)
		r->gpr[i] = c->gpr[gmap[i]];
	r->rip = c->rip;
	r->rflags = emu_flags_get(c);
	for (int i = 0; i < 6; i++) {
		r->seg[i] = c->seg[smap[i]].sel;
		r->seg_base[i] = c->seg[smap[i]].base;
	}
	r->cr0 = c->cr0;
	r->cr2 = c->cr2;
	r->cr3 = c->cr3;
	r->cr4 = c->cr4;
	r->efer = c->msr.efer;
	memcpy(r->xmm, c->xmm, sizeof(r->xmm));
	r->mxcsr = c->mxcsr;
	return 0;
}

static int emu_dbg_set_regs(void *state, int cpu, const struct x86_regs_dbg *r)
{
	struct emu_state *st = to_st(state);
	static const int gmap[16] = { EMU_RAX, EMU_RBX, EMU_RCX, EMU_RDX, EMU_RSI,
				      EMU_RDI, EMU_RBP, EMU_RSP, 8, 9, 10, 11,
				      12, 13, 14, 15 };
	struct emu_cpu *c;

	if (cpu < 0 || cpu >= st->nr_vcpus)
		return -EINVAL;
	c = &st->vcpus[cpu].cpu;
	for (int i = 0; i < 16; i++)
		c->gpr[gmap[i]] = r->gpr[i];
	c->rip = r->rip;
	emu_flags_set(c, r->rflags);
	memcpy(c->xmm, r->xmm, sizeof(c->xmm));
	c->mxcsr = r->mxcsr;
	return 0;
}

static int emu_dbg_translate(void *state, int cpu, uint64_t lin, uint64_t *gpa)
{
	struct emu_state *st = to_st(state);
	struct emu_cpu *c;
	struct emu_exception saved;

	if (cpu < 0 || cpu >= st->nr_vcpus)
		return -EINVAL;
	c = &st->vcpus[cpu].cpu;
	saved = c->exc;
	/* As a supervisor read: the debugger may look at kernel and user
	 * pages alike.  (The walk sets Accessed bits, like a real access.) */
	if (emu_mmu_translate(c, lin, EMU_ACC_READ, false, gpa)) {
		c->exc = saved;
		return -EFAULT;
	}
	return 0;
}

static int emu_dbg_set_bp(void *state, enum accel_bp_type type, uint64_t addr)
{
	struct emu_dbg *d = &to_st(state)->dbg;
	int r = 0;

	(void)type; /* no memory is patched: Z0 and Z1 are the same */
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nr_bps; i++)
		if (d->bps[i] == addr)
			goto out;
	if (d->nr_bps == EMU_DBG_MAX_BPS)
		r = -ENOSPC;
	else
		d->bps[d->nr_bps++] = addr;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int emu_dbg_clear_bp(void *state, enum accel_bp_type type, uint64_t addr)
{
	struct emu_dbg *d = &to_st(state)->dbg;

	(void)type;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nr_bps; i++)
		if (d->bps[i] == addr) {
			d->bps[i] = d->bps[--d->nr_bps];
			break;
		}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static int emu_dbg_set_trace(void *state, unsigned mask, FILE *f)
{
	struct emu_dbg *d = &to_st(state)->dbg;

	pthread_mutex_lock(&d->lock);
	d->trace = f ? mask : 0;
	d->trace_f = f;
	update_slow(d, false);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

const struct accel_debug_ops emu_debug_ops = {
	.attach = emu_dbg_attach,
	.pause_all = emu_dbg_pause_all,
	.resume = emu_dbg_resume,
	.get_regs = emu_dbg_get_regs,
	.set_regs = emu_dbg_set_regs,
	.translate = emu_dbg_translate,
	.set_breakpoint = emu_dbg_set_bp,
	.clear_breakpoint = emu_dbg_clear_bp,
	.set_trace = emu_dbg_set_trace,
};
