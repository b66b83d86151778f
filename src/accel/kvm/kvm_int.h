/*
 * kvm_int.h - the KVM accelerator's VM and vCPU state, shared by kvm.c
 * (vCPU threads, exits) and kvm_debug.c (the debugger interface).
 * Private to accel/kvm.
 */
#ifndef KVMM_ACCEL_KVM_KVM_INT_H
#define KVMM_ACCEL_KVM_KVM_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accel/kvm/kvm.h"
#include "core/accel.h"

/* Makes a vCPU thread leave KVM_RUN (EINTR); unblocked only in vCPU threads. */
#define KVM_KICK_SIGNAL SIGUSR1

struct kvm_vcpu {
	struct kvm_state *kvm;
	int index, fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	/* Debugger (kvm_debug.c). */
	atomic_bool dbg_pause; /* park before the next KVM_RUN */
	bool dbg_parked;       /* under kvm_state.dbg.lock */
	bool dbg_stepover;     /* stepping off a breakpoint before a continue */
};

#define KVM_DBG_MAX_BPS 4 /* DR0-DR3 */

struct kvm_dbg {
	bool attached;
	struct accel_debug_client client;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int nr_bps;
	uint64_t bps[KVM_DBG_MAX_BPS];
	int step_cpu;          /* -1: none */
};

/* One MSI route (kvm_irq.c); GSI = IRQ_MAX_GSI + its slot index. */
struct kvm_msi_route {
	bool used;
	uint64_t addr;
	uint32_t data;
};

/* The GSI routing table beyond the irqchip defaults (kvm_irq.c). */
struct kvm_irq_routes {
	bool initialised;        /* lock is valid */
	pthread_mutex_t lock;
	struct kvm_msi_route *slots;
	unsigned nr_slots, nr_used;
	unsigned max_entries;    /* KVM_CAP_IRQ_ROUTING */
};

struct kvm_state {
	struct vm *vm;
	int sys_fd, vm_fd;
	size_t run_size;
	struct kvm_vcpu *vcpus;
	int nr_vcpus;
	struct kvm_msr_list *msr_index;
	struct kvm_cpuid2 *supported_cpuid;
	struct kvm_dbg dbg;
	struct kvm_irq_routes routes;
};

struct irq_ops;

/* kvm_irq.c: after KVM_CREATE_IRQCHIP, the irq_ops for vm->irq (with MSI
 * routes and irqfds when the host offers KVM_CAP_IRQ_ROUTING and
 * KVM_CAP_IRQFD).  Needs sys_fd and vm_fd only. */
const struct irq_ops *kvm_irq_init(struct kvm_state *k);
/* Free the routing state (the kernel's goes with the VM fd). */
void kvm_irq_destroy(struct kvm_state *k);

/* kvm_debug.c */
extern const struct accel_debug_ops kvm_debug_ops;
void kvm_debug_init(struct kvm_state *k);
void kvm_debug_destroy(struct kvm_state *k);
/* The vCPU thread, when dbg_pause is set: wait until resumed. */
void kvm_debug_park(struct kvm_vcpu *v);
/* KVM_EXIT_DEBUG: a breakpoint or a single step. */
void kvm_debug_exit(struct kvm_vcpu *v);

#endif
