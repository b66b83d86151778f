/*
 * kvm_debug.c - the KVM accelerator's side of the debugger interface
 * (core/accel.h: accel_debug_ops), for the GDB stub.
 *
 * PAUSING.  pause_all() sets each vCPU's dbg_pause, sets immediate_exit in
 * its kvm_run and sends it the kick signal, like stop() does: a thread in
 * KVM_RUN returns with EINTR (KVM finishes a pending I/O or MMIO exit
 * first, so the registers are consistent), one about to enter returns at
 * once.  The thread then parks in kvm_debug_park() (one relaxed load per
 * KVM_RUN when no debugger is around) until resume(), re-checking every
 * 50 ms for a VM stop.  While every vCPU is parked the debugger's thread
 * issues the vCPU ioctls itself (KVM takes the vCPU's mutex; no vCPU is
 * inside KVM_RUN).
 *
 * BREAKPOINTS are hardware breakpoints through KVM_SET_GUEST_DEBUG
 * (KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, DR0-DR3 = the addresses,
 * DR7 = global enables, execute, length 1): at most four, Z0 and Z1 alike.
 * Software breakpoints (int3 patched into guest memory) are not used: PVM
 * hosts cannot even emulate int3 in guest supervisor code, and the debug
 * registers leave guest memory alone.  A fifth breakpoint is refused
 * (GDB says it cannot insert it).  While a debugger has breakpoints set,
 * the guest's own use of DR0-DR7 is overridden (KVM's rule).
 *
 * SINGLE STEP: KVM_GUESTDBG_SINGLESTEP on the one vCPU that is resumed;
 * the others stay parked.  KVM_EXIT_DEBUG (either cause) parks the vCPU
 * and tells the debugger; it then pauses the others.
 *
 * TRACING (--trace) is not available under KVM: set_trace says -ENOTSUP.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "accel/kvm/kvm_int.h"
#include "core/vm.h"
#include "util/log.h"

static struct kvm_state *to_k(void *state) { return state; }

void kvm_debug_init(struct kvm_state *k)
{
	pthread_mutex_init(&k->dbg.lock, NULL);
	pthread_cond_init(&k->dbg.cond, NULL);
	k->dbg.step_cpu = -1;
}

void kvm_debug_destroy(struct kvm_state *k)
{
	pthread_mutex_destroy(&k->dbg.lock);
	pthread_cond_destroy(&k->dbg.cond);
}

static void timed_wait(struct kvm_dbg *d, long ms)
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

static int apply_guest_debug(struct kvm_state *k, int i, bool step, bool bps);

/* ---- the vCPU side --------------------------------------------------------- */

void kvm_debug_park(struct kvm_vcpu *v)
{
	struct kvm_dbg *d = &v->kvm->dbg;
	struct vm *vm = v->kvm->vm;

	pthread_mutex_lock(&d->lock);
	v->dbg_parked = true;
	pthread_cond_broadcast(&d->cond);
	while (atomic_load(&v->dbg_pause) && !vm_stopping(vm))
		timed_wait(d, 50);
	v->dbg_parked = false;
	pthread_mutex_unlock(&d->lock);
	/* Undo pause_all()'s immediate_exit, unless stop() set it since:
	 * the caller checks vm_stopping() after this store. */
	if (!vm_stopping(vm))
		atomic_store((_Atomic uint8_t *)&v->run->immediate_exit, 0);
}

void kvm_debug_exit(struct kvm_vcpu *v)
{
	struct kvm_dbg *d = &v->kvm->dbg;
	struct accel_debug_client c;
	bool attached;

	pthread_mutex_lock(&d->lock);
	attached = d->attached;
	c = d->client;
	if (v->dbg_stepover) {
		/* Stepped off a breakpoint for a continue: load the
		 * breakpoints and go on, nothing to report. */
		v->dbg_stepover = false;
		apply_guest_debug(v->kvm, v->index, false, true);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (attached)
		atomic_store(&v->dbg_pause, true);
	pthread_mutex_unlock(&d->lock);
	log_debug("vCPU %d: KVM_EXIT_DEBUG (exception %u, pc 0x%llx, dr6 0x%llx)",
		  v->index, v->run->debug.arch.exception,
		  (unsigned long long)v->run->debug.arch.pc,
		  (unsigned long long)v->run->debug.arch.dr6);
	if (attached && c.stopped)
		c.stopped(c.opaque, v->index, 5);
}

/* ---- the debugger's side ----------------------------------------------------- */

/* Load the breakpoints (when `bps`) and the step flag into vCPU `i`. */
static int apply_guest_debug(struct kvm_state *k, int i, bool step, bool bps)
{
	struct kvm_dbg *d = &k->dbg;
	struct kvm_guest_debug g;

	memset(&g, 0, sizeof(g));
	if (d->attached && ((bps && d->nr_bps) || step)) {
		g.control = KVM_GUESTDBG_ENABLE;
		if (step)
			g.control |= KVM_GUESTDBG_SINGLESTEP;
		if (bps && d->nr_bps) {
			g.control |= KVM_GUESTDBG_USE_HW_BP;
			g.arch.debugreg[7] = 0x600; /* GE, and bit 10 (reads as 1) */
			for (int b = 0; b < d->nr_bps; b++) {
				g.arch.debugreg[b] = d->bps[b];
				/* G<b>; R/W = 00 (execute), LEN = 00 */
				g.arch.debugreg[7] |= 2ull << (b * 2);
			}
		}
	}
	if (ioctl(k->vcpus[i].fd, KVM_SET_GUEST_DEBUG, &g) < 0) {
		int e = errno;
		log_warn("vCPU %d: KVM_SET_GUEST_DEBUG: %s", i, strerror(e));
		return -e;
	}
	return 0;
}

static void kvm_dbg_attach(void *state, const struct accel_debug_client *client)
{
	struct kvm_state *k = to_k(state);
	struct kvm_dbg *d = &k->dbg;

	pthread_mutex_lock(&d->lock);
	if (client) {
		d->client = *client;
		d->attached = true;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	/* Detach: drop the breakpoints (the vCPUs are paused), resume. */
	d->nr_bps = 0;
	for (int i = 0; i < k->nr_vcpus; i++)
		apply_guest_debug(k, i, false, true);
	d->attached = false;
	memset(&d->client, 0, sizeof(d->client));
	for (int i = 0; i < k->nr_vcpus; i++)
		atomic_store(&k->vcpus[i].dbg_pause, false);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static int kvm_dbg_pause_all(void *state)
{
	struct kvm_state *k = to_k(state);
	struct kvm_dbg *d = &k->dbg;
	int r = 0;

	for (int i = 0; i < k->nr_vcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];

		atomic_store(&v->dbg_pause, true);
		atomic_store((_Atomic uint8_t *)&v->run->immediate_exit, 1);
		if (v->started)
			pthread_kill(v->thread, KVM_KICK_SIGNAL);
	}
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < k->nr_vcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];

		while (v->started && !v->dbg_parked) {
			if (vm_stopping(k->vm)) {
				r = -ESHUTDOWN;
				break;
			}
			timed_wait(d, 50);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Is vCPU i sitting on one of our breakpoints? */
static bool at_breakpoint(struct kvm_state *k, int i)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int fd = k->vcpus[i].fd;

	if (!k->dbg.nr_bps || ioctl(fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return false;
	for (int b = 0; b < k->dbg.nr_bps; b++)
		if (k->dbg.bps[b] == sregs.cs.base + regs.rip)
			return true;
	return false;
}

static void kvm_dbg_resume(void *state, int step_cpu)
{
	struct kvm_state *k = to_k(state);
	struct kvm_dbg *d = &k->dbg;

	pthread_mutex_lock(&d->lock);
	/* A vCPU resumed on one of our breakpoints would stop there again at
	 * once (RFLAGS.RF is not honoured everywhere, e.g. PVM): a single step
	 * runs without breakpoints (it stops after one instruction anyway),
	 * and a continue first steps off the breakpoint without them, then
	 * loads them (kvm_debug_exit, dbg_stepover). */
	for (int i = 0; i < k->nr_vcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];

		v->dbg_stepover = false;
		if (i == step_cpu) {
			apply_guest_debug(k, i, true, false);
		} else if (step_cpu < 0 && at_breakpoint(k, i)) {
			v->dbg_stepover = true;
			apply_guest_debug(k, i, true, false);
		} else {
			apply_guest_debug(k, i, false, true);
		}
	}
	d->step_cpu = step_cpu;
	for (int i = 0; i < k->nr_vcpus; i++)
		if (step_cpu < 0 || i == step_cpu)
			atomic_store(&k->vcpus[i].dbg_pause, false);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static int kvm_dbg_get_regs(void *state, int cpu, struct x86_regs_dbg *r)
{
	struct kvm_state *k = to_k(state);
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	int fd;

	if (cpu < 0 || cpu >= k->nr_vcpus)
		return -EINVAL;
	fd = k->vcpus[cpu].fd;
	if (ioctl(fd, KVM_GET_REGS, &regs) < 0 || ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	memset(r, 0, sizeof(*r));
	const uint64_t g[16] = { regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi,
				 regs.rdi, regs.rbp, regs.rsp, regs.r8, regs.r9,
				 regs.r10, regs.r11, regs.r12, regs.r13, regs.r14,
				 regs.r15 };
	memcpy(r->gpr, g, sizeof(g));
	r->rip = regs.rip;
	r->rflags = regs.rflags;
	const struct kvm_segment *s[6] = { &sregs.cs, &sregs.ss, &sregs.ds,
					   &sregs.es, &sregs.fs, &sregs.gs };
	for (int i = 0; i < 6; i++) {
		r->seg[i] = s[i]->selector;
		r->seg_base[i] = s[i]->base;
	}
	r->cr0 = sregs.cr0;
	r->cr2 = sregs.cr2;
	r->cr3 = sregs.cr3;
	r->cr4 = sregs.cr4;
	r->efer = sregs.efer;
	if (ioctl(fd, KVM_GET_FPU, &fpu) == 0) {
		memcpy(r->xmm, fpu.xmm, sizeof(r->xmm));
		r->mxcsr = fpu.mxcsr;
	}
	return 0;
}

static int kvm_dbg_set_regs(void *state, int cpu, const struct x86_regs_dbg *r)
{
	struct kvm_state *k = to_k(state);
	struct kvm_regs regs;
	struct kvm_fpu fpu;
	int fd;

	if (cpu < 0 || cpu >= k->nr_vcpus)
		return -EINVAL;
	fd = k->vcpus[cpu].fd;
	if (ioctl(fd, KVM_GET_REGS, &regs) < 0)
		return -errno;
	regs.rax = r->gpr[DBG_RAX]; regs.rbx = r->gpr[DBG_RBX];
	regs.rcx = r->gpr[DBG_RCX]; regs.rdx = r->gpr[DBG_RDX];
	regs.rsi = r->gpr[DBG_RSI]; regs.rdi = r->gpr[DBG_RDI];
	regs.rbp = r->gpr[DBG_RBP]; regs.rsp = r->gpr[DBG_RSP];
	regs.r8 = r->gpr[DBG_R8];   regs.r9 = r->gpr[DBG_R9];
	regs.r10 = r->gpr[DBG_R10]; regs.r11 = r->gpr[DBG_R11];
	regs.r12 = r->gpr[DBG_R12]; regs.r13 = r->gpr[DBG_R13];
	regs.r14 = r->gpr[DBG_R14]; regs.r15 = r->gpr[DBG_R15];
	regs.rip = r->rip;
	regs.rflags = r->rflags | 2;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (ioctl(fd, KVM_GET_FPU, &fpu) == 0) {
		memcpy(fpu.xmm, r->xmm, sizeof(fpu.xmm));
		fpu.mxcsr = r->mxcsr;
		ioctl(fd, KVM_SET_FPU, &fpu);
	}
	return 0;
}

static int kvm_dbg_translate(void *state, int cpu, uint64_t lin, uint64_t *gpa)
{
	struct kvm_state *k = to_k(state);
	struct kvm_translation tr = { .linear_address = lin };

	if (cpu < 0 || cpu >= k->nr_vcpus)
		return -EINVAL;
	if (ioctl(k->vcpus[cpu].fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
		return -EFAULT;
	*gpa = tr.physical_address;
	return 0;
}

static int kvm_dbg_set_bp(void *state, enum accel_bp_type type, uint64_t addr)
{
	struct kvm_state *k = to_k(state);
	struct kvm_dbg *d = &k->dbg;
	int r = 0;

	(void)type; /* both are debug-register breakpoints */
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nr_bps; i++)
		if (d->bps[i] == addr)
			goto out;
	if (d->nr_bps == KVM_DBG_MAX_BPS) {
		r = -ENOSPC;
		goto out;
	}
	d->bps[d->nr_bps++] = addr;
	for (int i = 0; i < k->nr_vcpus && !r; i++)
		r = apply_guest_debug(k, i, false, true);
	if (r) {
		d->nr_bps--;
		for (int i = 0; i < k->nr_vcpus; i++)
			apply_guest_debug(k, i, false, true);
	}
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}

static int kvm_dbg_clear_bp(void *state, enum accel_bp_type type, uint64_t addr)
{
	struct kvm_state *k = to_k(state);
	struct kvm_dbg *d = &k->dbg;

	(void)type;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nr_bps; i++)
		if (d->bps[i] == addr) {
			memmove(&d->bps[i], &d->bps[i + 1],
				(size_t)(d->nr_bps - i - 1) * sizeof(d->bps[0]));
			d->nr_bps--;
			for (int j = 0; j < k->nr_vcpus; j++)
				apply_guest_debug(k, j, false, true);
			break;
		}
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static int kvm_dbg_set_trace(void *state, unsigned mask, FILE *f)
{
	(void)state;
	(void)f;
	return mask ? -ENOTSUP : 0;
}

const struct accel_debug_ops kvm_debug_ops = {
	.attach = kvm_dbg_attach,
	.pause_all = kvm_dbg_pause_all,
	.resume = kvm_dbg_resume,
	.get_regs = kvm_dbg_get_regs,
	.set_regs = kvm_dbg_set_regs,
	.translate = kvm_dbg_translate,
	.set_breakpoint = kvm_dbg_set_bp,
	.clear_breakpoint = kvm_dbg_clear_bp,
	.set_trace = kvm_dbg_set_trace,
};
