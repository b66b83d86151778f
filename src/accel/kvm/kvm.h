/*
 * kvm.h - the KVM accelerator (Documentation/virt/kvm/api.rst).
 *
 * kvm.c        /dev/kvm checks, VM fd, memory slots, in-kernel irqchip + PIT,
 *              vCPU threads and KVM_RUN exit dispatch
 * kvm_cpuid.c  CPUID from KVM_GET_SUPPORTED_CPUID, filtered, with topology
 * kvm_regs.c   initial registers, segment state, FPU, MSRs and LAPIC LVTs
 * kvm_irq.c    KVM_IRQ_LINE, KVM_SIGNAL_MSI, the GSI routing table, irqfds
 */
#ifndef KVMM_ACCEL_KVM_KVM_H
#define KVMM_ACCEL_KVM_KVM_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

struct x86_boot_regs;

/* What /dev/kvm offers, for --accel auto and --cpus checks. */
struct kvm_host_info {
	bool usable;      /* /dev/kvm opened and API version 12 */
	bool pvm;         /* served by kvm_pvm: stock Linux kernels cannot run */
	int nr_vcpus;     /* KVM_CAP_NR_VCPUS: recommended maximum */
	int max_vcpus;    /* KVM_CAP_MAX_VCPUS: hard maximum */
	char why[160];    /* when !usable: one line saying why */
};

/* Probe /dev/kvm without creating a VM.  Always fills *info. */
void kvm_probe(struct kvm_host_info *info);

/* Build the CPUID table for vCPU `index` (APIC ID = index) of `nr_cpus`,
 * from the host's KVM_GET_SUPPORTED_CPUID in `sup` (not modified).  Returns
 * a malloc'd table the caller frees, or NULL on ENOMEM. */
struct kvm_cpuid2 *kvm_cpuid_for_vcpu(const struct kvm_cpuid2 *sup,
				      int index, int nr_cpus);

/* Load the BSP (index 0) or AP state into a fresh vCPU: registers for the
 * boot entry mode (BSP only), FPU (FCW 0x37f, MXCSR 0x1f80), MSRs the guest
 * expects (those the host refuses are skipped), and LAPIC LINT0 = ExtINT
 * (BSP only), LINT1 = NMI.  `msr_index` lists the MSRs KVM supports.  Returns 0 or
 * -errno of the failing ioctl. */
int kvm_regs_init(int vcpu_fd, int index, const struct x86_boot_regs *regs,
		  const struct kvm_msr_list *msr_index);

#endif
