/*
 * kvm_cpuid.c - the CPUID a vCPU sees under KVM.
 *
 * We start from KVM_GET_SUPPORTED_CPUID (what host and KVM can virtualize)
 * and change only what must describe *this* VM rather than the host:
 *   - leaf 1: the initial APIC ID, logical processor count and HTT, the
 *     hypervisor bit; no VMX (we offer no nested virtualization);
 *   - leaves 4, 0xB, 0x1F (Intel) and 0x80000008 / 0x8000001E (AMD): a
 *     topology of nr_cpus cores with one thread each, consistent with the
 *     APIC IDs 0..n-1 the MADT lists, so Linux's topology code agrees with
 *     ACPI (a mismatch gives "APIC ID mismatch" warnings or lost CPUs);
 *   - leaf 0xA: removed when the host has no PMU (version 0), so guests do
 *     not probe counters that fault;
 *   - 0x80000001: no SVM.
 * Everything else (feature leaves, XSAVE, the KVM paravirt leaves
 * 0x40000000/1) is passed through as KVM reports it.
 */
#include "accel/kvm/kvm.h"

#include <stdlib.h>
#include <string.h>

#define CPUID_1_ECX_VMX        (1u << 5)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT        (1u << 28)
#define CPUID_80000001_ECX_SVM (1u << 2)
#define CPUID_80000001_ECX_CMP_LEGACY (1u << 1)

/* Bits needed to number `n` cores: ceil(log2(n)). */
static unsigned id_bits(int n)
{
	unsigned b = 0;
	while ((1 << b) < n)
		b++;
	return b;
}

static bool is_amd(const struct kvm_cpuid2 *c)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == 0)
			return c->entries[i].ebx == 0x68747541; /* "Auth" */
	return false;
}

static void fix_topology_leaf(struct kvm_cpuid_entry2 *e, int apic_id,
			      int nr_cpus)
{
	unsigned level = e->index;

	e->edx = (uint32_t)apic_id;
	if (level == 0) { /* SMT level: one thread per core */
		e->eax = 0;
		e->ebx = 1;
		e->ecx = 0 | (1u << 8);
	} else if (level == 1) { /* core level: every vCPU is a core */
		e->eax = id_bits(nr_cpus);
		e->ebx = (uint32_t)nr_cpus;
		e->ecx = 1 | (2u << 8);
	} else { /* invalid level ends the enumeration */
		e->eax = e->ebx = 0;
		e->ecx = level;
	}
}

struct kvm_cpuid2 *kvm_cpuid_for_vcpu(const struct kvm_cpuid2 *sup,
				      int index, int nr_cpus)
{
	size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);
	bool amd = is_amd(sup);
	uint32_t out = 0;

	if (!c)
		return NULL;
	memcpy(c, sup, size);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) | ((uint32_t)index << 24) |
				 ((uint32_t)(nr_cpus > 255 ? 255 : nr_cpus) << 16);
			e->ecx = (e->ecx & ~CPUID_1_ECX_VMX) | CPUID_1_ECX_HYPERVISOR;
			e->edx = nr_cpus > 1 ? e->edx | CPUID_1_EDX_HTT
					     : e->edx & ~CPUID_1_EDX_HTT;
			break;
		case 4: /* deterministic cache parameters: cores per package */
			e->eax = (e->eax & 0x03ffffffu) |
				 ((uint32_t)(nr_cpus - 1) << 26);
			/* Cache shared by one thread (no SMT) */
			e->eax &= ~(0xfffu << 14);
			break;
		case 0xa:
			if ((e->eax & 0xff) == 0)
				continue; /* no PMU: drop the leaf */
			break;
		case 0xb:
		case 0x1f:
			fix_topology_leaf(e, index, nr_cpus);
			break;
		case 0x80000001:
			e->ecx &= ~CPUID_80000001_ECX_SVM;
			if (amd)
				e->ecx = nr_cpus > 1 ? e->ecx | CPUID_80000001_ECX_CMP_LEGACY
						     : e->ecx & ~CPUID_80000001_ECX_CMP_LEGACY;
			break;
		case 0x80000008:
			if (amd) /* NC and ApicIdSize */
				e->ecx = (e->ecx & ~0xf0ffu) |
					 (uint32_t)(nr_cpus - 1) |
					 (id_bits(nr_cpus) << 12);
			break;
		case 0x8000001e:
			if (amd) {
				e->eax = (uint32_t)index; /* extended APIC ID */
				e->ebx = (uint32_t)index; /* core ID, 1 thread/core */
				e->ecx = 0;               /* node 0, 1 node */
			}
			break;
		}
		c->entries[out++] = *e;
	}
	c->nent = out;
	return c;
}
