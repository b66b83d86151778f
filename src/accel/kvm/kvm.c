/*
 * kvm.c - the KVM accelerator: one thread per vCPU calling KVM_RUN, exits
 * turned into bus accesses (Documentation/virt/kvm/api.rst).
 *
 * Under KVM the interrupt controllers and the PIT are the kernel's
 * (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2): devices raise GSIs with
 * KVM_IRQ_LINE and MSIs with KVM_SIGNAL_MSI or irqfds on MSI routes
 * (kvm_irq.c), and the board leaves those devices out.  APs wait in the in-kernel LAPIC for INIT/SIPI, so starting
 * them is the guest's business.
 *
 * Stopping: vm_request_stop() may come from any thread.  stop() sets
 * immediate_exit in every kvm_run and sends SIGUSR1 to each vCPU thread; a
 * thread inside KVM_RUN returns with EINTR, one about to enter returns at
 * once because of immediate_exit, so no vCPU runs another guest instruction
 * after the stop is seen (the vCPU that caused the stop checks vm_stopping()
 * right after its exit handler).
 *
 * A guest crash (triple fault, emulation failure, failed entry, an exit we
 * cannot handle) stops the VM with a report naming the vCPU, the exit, RIP
 * and the instruction bytes.
 */
#include "accel/kvm/kvm.h"
#include "accel/kvm/kvm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "core/accel.h"
#include "core/vm.h"
#include "util/log.h"

#define KVM_TSS_ADDR          0xfffbd000ull /* 3 pages below the BIOS ROM */
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

void kvm_probe(struct kvm_host_info *info)
{
	int fd, v;

	memset(info, 0, sizeof(*info));
	info->pvm = access("/sys/module/kvm_pvm", F_OK) == 0;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(info->why, sizeof(info->why), "/dev/kvm: %s",
			 strerror(errno));
		return;
	}
	v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		snprintf(info->why, sizeof(info->why),
			 "/dev/kvm: API version %d, kvmm needs %d", v,
			 KVM_API_VERSION);
		close(fd);
		return;
	}
	info->nr_vcpus = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	info->max_vcpus = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (info->nr_vcpus <= 0)
		info->nr_vcpus = 4; /* api.rst: assume 4 if the cap is missing */
	if (info->max_vcpus <= 0)
		info->max_vcpus = info->nr_vcpus;
	info->usable = true;
	close(fd);
}

/* ---- ioeventfd: doorbells the kernel signals without an exit ------------- */

static int kvm_ioeventfd(void *opaque, bool pio, uint64_t addr, unsigned len,
			 int fd, bool assign)
{
	struct kvm_state *k = opaque;
	struct kvm_ioeventfd ioe = {
		.addr = addr, .len = len, .fd = fd,
		.flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};

	return ioctl(k->vm_fd, KVM_IOEVENTFD, &ioe) < 0 ? -errno : 0;
}

static const struct vm_ioeventfd_ops kvm_ioeventfd_ops = {
	.assign = kvm_ioeventfd,
};

/* ---- crash reports ------------------------------------------------------ */

/* Up to 15 instruction bytes at the vCPU's RIP, as hex, or "unavailable". */
static void insn_bytes(struct kvm_vcpu *v, const uint8_t *known, int nknown,
		       char *out, size_t outlen)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_translation tr;
	uint8_t buf[15];
	int n = 0;

	if (nknown > 0) {
		n = nknown > 15 ? 15 : nknown;
		memcpy(buf, known, n);
	} else if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0 &&
		   ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0) {
		tr = (struct kvm_translation){ .linear_address =
						       sregs.cs.base + regs.rip };
		if (ioctl(v->fd, KVM_TRANSLATE, &tr) == 0 && tr.valid)
			for (n = 0; n < 15; n++) {
				const uint8_t *p = gm_ptr(&v->kvm->vm->mem,
							  tr.physical_address + n, 1);
				if (!p)
					break;
				buf[n] = *p;
			}
	}
	if (n == 0) {
		snprintf(out, outlen, "unavailable");
		return;
	}
	out[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), outlen - strlen(out), "%s%02x",
			 i ? " " : "", buf[i]);
}

static void report_crash(struct kvm_vcpu *v, const char *what,
			 const uint8_t *known_insn, int nknown)
{
	struct kvm_regs regs;
	char bytes[64];
	uint64_t rip = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	insn_bytes(v, known_insn, nknown, bytes, sizeof(bytes));
	log_error("guest crashed: vCPU %d: %s at RIP 0x%llx, instruction bytes: %s",
		  v->index, what, (unsigned long long)rip, bytes);
	vm_request_stop(v->kvm->vm, VM_STOP_GUEST_CRASH, 0);
}

/* ---- the vCPU loop ------------------------------------------------------- */

static void handle_io(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	const struct bus *pio = &v->kvm->vm->pio;
	unsigned size = run->io.size;
	uint8_t *data;

	/* KVM guarantees the data area lies inside the kvm_run mapping:
	 * data_offset + size * count is bounded by the kernel, not the guest. */
	if (size != 1 && size != 2 && size != 4)
		return;
	if (run->io.data_offset + (uint64_t)size * run->io.count > v->kvm->run_size)
		return;
	data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			uint32_t val = 0;
			memcpy(&val, data, size);
			bus_write(pio, run->io.port, size, val);
		} else {
			uint32_t val = (uint32_t)bus_read(pio, run->io.port, size);
			memcpy(data, &val, size);
		}
	}
}

static void handle_mmio(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	const struct bus *mmio = &v->kvm->vm->mmio;
	unsigned len = run->mmio.len;
	uint64_t val = 0;

	if (len != 1 && len != 2 && len != 4 && len != 8)
		return;
	if (run->mmio.is_write) {
		memcpy(&val, run->mmio.data, len);
		bus_write(mmio, run->mmio.phys_addr, len, val);
	} else {
		val = bus_read(mmio, run->mmio.phys_addr, len);
		memcpy(run->mmio.data, &val, len);
	}
}

static void handle_internal_error(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];
	const uint8_t *insn = NULL;
	int ninsn = 0;

	if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
#ifdef KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
		if (run->emulation_failure.ndata >= 3 &&
		    (run->emulation_failure.flags &
		     KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
			insn = run->emulation_failure.insn_bytes;
			ninsn = run->emulation_failure.insn_size;
		}
#endif
		snprintf(what, sizeof(what),
			 "KVM_EXIT_INTERNAL_ERROR (emulation failure)");
	} else {
		snprintf(what, sizeof(what), "KVM_EXIT_INTERNAL_ERROR (suberror %u)",
			 run->internal.suberror);
	}
	report_crash(v, what, insn, ninsn);
}

/* Handle one exit.  Returns false when the vCPU must stop. */
static bool handle_exit(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->kvm->vm;
	char what[64];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_DEBUG: /* a debugger's breakpoint or single step */
		kvm_debug_exit(v);
		return true;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; with one, HLT never exits. */
		report_crash(v, "HLT with no interrupt controller", NULL, 0);
		return false;
	case KVM_EXIT_SHUTDOWN:
		report_crash(v, "KVM_EXIT_SHUTDOWN (triple fault)", NULL, 0);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		handle_internal_error(v);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what),
			 "KVM_EXIT_FAIL_ENTRY (hardware reason 0x%llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		report_crash(v, what, NULL, 0);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vm_request_stop(vm, VM_STOP_POWEROFF, 0);
			return false;
		case KVM_SYSTEM_EVENT_RESET:
			vm_request_stop(vm, VM_STOP_RESET, 0);
			return false;
		case KVM_SYSTEM_EVENT_CRASH:
			report_crash(v, "KVM_SYSTEM_EVENT_CRASH", NULL, 0);
			return false;
		}
		break;
	}
	snprintf(what, sizeof(what), "unhandled exit reason %u",
		 run->exit_reason);
	report_crash(v, what, NULL, 0);
	return false;
}

static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *v = arg;
	struct vm *vm = v->kvm->vm;
	sigset_t set;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%d", v->index);
	pthread_setname_np(pthread_self(), name);
	sigemptyset(&set);
	sigaddset(&set, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!vm_stopping(vm)) {
		if (__builtin_expect(atomic_load_explicit(&v->dbg_pause,
							  memory_order_relaxed), 0)) {
			kvm_debug_park(v);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			log_error("vCPU %d: KVM_RUN: %s", v->index, strerror(errno));
			vm_request_stop(vm, VM_STOP_ERROR, -errno);
			break;
		}
		if (!handle_exit(v))
			break;
	}
	return NULL;
}

/* ---- setup --------------------------------------------------------------- */

static void kick_handler(int sig)
{
	(void)sig;
}

static int vm_ioctl(struct kvm_state *k, unsigned long req, unsigned long arg,
		    const char *what)
{
	if (ioctl(k->vm_fd, req, arg) < 0) {
		int e = errno;
		log_error("KVM: %s: %s", what, strerror(e));
		return -e;
	}
	return 0;
}

static int setup_memory(struct kvm_state *k)
{
	const struct guest_mem *gm = &k->vm->mem;

	for (int i = 0; i < gm->nr_regions; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = (uint32_t)i,
			.guest_phys_addr = gm->regions[i].gpa,
			.memory_size = gm->regions[i].size,
			.userspace_addr = (uintptr_t)gm->regions[i].hva,
		};
		int e = vm_ioctl(k, KVM_SET_USER_MEMORY_REGION, (unsigned long)&r,
				 "KVM_SET_USER_MEMORY_REGION");
		if (e)
			return e;
	}
	return 0;
}

static int get_host_tables(struct kvm_state *k)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	int nent = 128;

	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	k->msr_index = calloc(1, sizeof(*k->msr_index) + probe.nmsrs * sizeof(uint32_t));
	if (!k->msr_index)
		return -ENOMEM;
	k->msr_index->nmsrs = probe.nmsrs;
	if (ioctl(k->sys_fd, KVM_GET_MSR_INDEX_LIST, k->msr_index) < 0)
		return -errno;

	for (;;) {
		k->supported_cpuid = calloc(1, sizeof(struct kvm_cpuid2) +
						       nent * sizeof(struct kvm_cpuid_entry2));
		if (!k->supported_cpuid)
			return -ENOMEM;
		k->supported_cpuid->nent = (uint32_t)nent;
		if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, k->supported_cpuid) == 0)
			return 0;
		free(k->supported_cpuid);
		k->supported_cpuid = NULL;
		if (errno != E2BIG || nent >= 4096)
			return -errno;
		nent *= 2;
	}
}

static int create_vcpu(struct kvm_state *k, int i,
		       const struct x86_boot_regs *regs)
{
	struct kvm_vcpu *v = &k->vcpus[i];
	struct kvm_cpuid2 *cpuid;
	int r;

	v->kvm = k;
	v->index = i;
	v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0) {
		r = -errno;
		log_error("KVM: KVM_CREATE_VCPU %d: %s", i, strerror(-r));
		return r;
	}
	v->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		r = -errno;
		log_error("KVM: mmap of vCPU %d's kvm_run: %s", i, strerror(-r));
		return r;
	}
	cpuid = kvm_cpuid_for_vcpu(k->supported_cpuid, i, k->nr_vcpus);
	if (!cpuid)
		return -ENOMEM;
	r = ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	if (r) {
		log_error("KVM: KVM_SET_CPUID2 on vCPU %d: %s", i, strerror(-r));
		return r;
	}
	r = kvm_regs_init(v->fd, i, regs, k->msr_index);
	if (r)
		log_error("KVM: initial state of vCPU %d: %s", i, strerror(-r));
	return r;
}

static void kvm_destroy(void *state);

static int kvm_create(struct vm *vm, const struct x86_boot_regs *regs,
		      void **state, bool *in_kernel_irqchip)
{
	struct kvm_state *k = calloc(1, sizeof(*k));
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	struct sigaction sa = { .sa_handler = kick_handler };
	int r, sz;

	if (!k)
		return -ENOMEM;
	k->vm = vm;
	k->vm_fd = -1;
	kvm_debug_init(k);
	k->nr_vcpus = vm->nr_cpus;
	k->sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->sys_fd < 0) {
		r = -errno;
		log_error("/dev/kvm: %s", strerror(-r));
		goto fail;
	}
	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		r = -errno;
		log_error("KVM: KVM_CREATE_VM: %s", strerror(-r));
		goto fail;
	}
	sz = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) {
		r = -EINVAL;
		log_error("KVM: KVM_GET_VCPU_MMAP_SIZE failed");
		goto fail;
	}
	k->run_size = (size_t)sz;
	if (!ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT)) {
		r = -ENOTSUP;
		log_error("KVM: the host lacks KVM_CAP_IMMEDIATE_EXIT (Linux >= 4.11 needed)");
		goto fail;
	}
	r = get_host_tables(k);
	if (r) {
		log_error("KVM: reading supported CPUID/MSRs: %s", strerror(-r));
		goto fail;
	}

	/* Both must precede KVM_CREATE_VCPU on Intel (VMX real mode needs
	 * a TSS and an identity page table); AMD and PVM ignore them. */
	if ((r = vm_ioctl(k, KVM_SET_TSS_ADDR, KVM_TSS_ADDR, "KVM_SET_TSS_ADDR")))
		goto fail;
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) &&
	    (r = vm_ioctl(k, KVM_SET_IDENTITY_MAP_ADDR, (unsigned long)&idmap,
			  "KVM_SET_IDENTITY_MAP_ADDR")))
		goto fail;
	/* Where the host can, have emulation failures report the instruction
	 * bytes themselves (for the crash report). */
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE,
					      .args = { 1 } };
		ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap);
	}
	if ((r = vm_ioctl(k, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP")))
		goto fail;
	if ((r = vm_ioctl(k, KVM_CREATE_PIT2, (unsigned long)&pit, "KVM_CREATE_PIT2")))
		goto fail;
	if ((r = setup_memory(k)))
		goto fail;

	k->vcpus = calloc((size_t)k->nr_vcpus, sizeof(*k->vcpus));
	if (!k->vcpus) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < k->nr_vcpus; i++)
		k->vcpus[i].fd = -1;
	for (int i = 0; i < k->nr_vcpus; i++) {
		if ((r = create_vcpu(k, i, regs)))
			goto fail;
	}

	/* The kick signal must interrupt KVM_RUN: no SA_RESTART. */
	sigaction(KVM_KICK_SIGNAL, &sa, NULL);
	vm->irq.ops = kvm_irq_init(k);
	vm->irq.opaque = k;
	if (ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD) > 0) {
		vm->ioeventfd = &kvm_ioeventfd_ops;
		vm->ioeventfd_opaque = k;
	}
	*in_kernel_irqchip = true;
	*state = k;
	return 0;
fail:
	kvm_destroy(k);
	return r;
}

static int kvm_start(void *state)
{
	struct kvm_state *k = state;
	sigset_t block, old;
	int r;

	/* vCPU threads inherit a mask with the kick signal blocked and unblock
	 * it themselves, so it can never hit another thread. */
	sigemptyset(&block);
	sigaddset(&block, KVM_KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (int i = 0; i < k->nr_vcpus; i++) {
		r = pthread_create(&k->vcpus[i].thread, NULL, vcpu_thread,
				   &k->vcpus[i]);
		if (r) {
			log_error("cannot start vCPU thread %d: %s", i, strerror(r));
			vm_request_stop(k->vm, VM_STOP_ERROR, -r);
			return -r;
		}
		k->vcpus[i].started = true;
	}
	return 0;
}

static void kvm_stop(void *state)
{
	struct kvm_state *k = state;

	for (int i = 0; i < k->nr_vcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];
		if (!v->started)
			continue;
		atomic_store((_Atomic uint8_t *)&v->run->immediate_exit, 1);
		pthread_kill(v->thread, KVM_KICK_SIGNAL);
	}
	for (int i = 0; i < k->nr_vcpus; i++) {
		if (k->vcpus[i].started)
			pthread_join(k->vcpus[i].thread, NULL);
		k->vcpus[i].started = false;
	}
}

static void kvm_destroy(void *state)
{
	struct kvm_state *k = state;

	if (!k)
		return;
	for (int i = 0; k->vcpus && i < k->nr_vcpus; i++) {
		if (k->vcpus[i].run)
			munmap(k->vcpus[i].run, k->run_size);
		if (k->vcpus[i].fd >= 0)
			close(k->vcpus[i].fd);
	}
	free(k->vcpus);
	free(k->msr_index);
	free(k->supported_cpuid);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	if (k->vm->irq.opaque == k)
		k->vm->irq.ops = NULL;
	if (k->vm->ioeventfd_opaque == k)
		k->vm->ioeventfd = NULL;
	kvm_irq_destroy(k);
	kvm_debug_destroy(k);
	free(k);
}

const struct accel_ops kvm_accel_ops = {
	.name = "kvm",
	.create = kvm_create,
	.start = kvm_start,
	.stop = kvm_stop,
	.destroy = kvm_destroy,
	.debug = &kvm_debug_ops,
};
