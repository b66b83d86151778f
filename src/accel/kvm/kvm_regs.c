/*
 * kvm_regs.c - a vCPU's power-on state under KVM.
 *
 * The BSP starts directly at the kernel's entry point in the mode its boot
 * protocol asks for (arch/x86/boot.h): the hidden parts of the segment
 * registers must match the GDT the loader wrote, because the guest reloads
 * them from memory the moment it touches a selector.  APs keep KVM's reset
 * state (real mode, waiting for INIT/SIPI in the in-kernel LAPIC).
 *
 * Things no PVM host will reveal but every hardware host needs: the FPU's
 * initial control words (a zero MXCSR masks no exceptions, so the first SSE
 * instruction of a guest would fault), MISC_ENABLE with fast strings (Linux
 * reads it in early boot), and the LAPIC LVTs of a PC: the BSP's LINT0 as
 * ExtINT so the 8259 reaches it before the IOAPIC is set up, LINT1 as NMI.
 */
#include "accel/kvm/kvm.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/boot.h"

#define CR0_PE (1u << 0)
#define CR0_MP (1u << 1)
#define CR0_ET (1u << 4)
#define CR0_NE (1u << 5)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE  0x1a0
#define MSR_IA32_CR_PAT       0x277
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102
#define MISC_ENABLE_FAST_STRING 1ull
#define PAT_POWER_ON 0x0007040600070406ull

/* LAPIC register offsets in struct kvm_lapic_state, and LVT delivery modes */
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

static struct kvm_segment flat_segment(uint16_t selector, bool code,
				       enum x86_entry_mode mode)
{
	struct kvm_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = selector,
		.present = 1, .dpl = 0, .s = 1, .g = 1,
		.type = code ? 0xb : 0x3, /* execute/read accessed : read/write accessed */
	};
	if (code && mode == X86_ENTRY_LONG64)
		s.l = 1;
	else
		s.db = 1;
	return s;
}

static int set_boot_regs(int fd, const struct x86_boot_regs *b)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = {
		.rip = b->rip, .rsp = b->rsp, .rax = b->rax, .rbx = b->rbx,
		.rsi = b->rsi, .rflags = 0x2,
	};
	struct kvm_segment data = flat_segment(BOOT_SEL_DATA, false, b->mode);

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs = flat_segment(BOOT_SEL_CODE, true, b->mode);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.gdt.base = b->gdt_base;
	sregs.gdt.limit = b->gdt_limit;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_MP;
	if (b->mode == X86_ENTRY_LONG64) {
		sregs.cr0 |= CR0_PG;
		sregs.cr3 = b->cr3;
		sregs.cr4 = CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
	} else {
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

static bool msr_supported(const struct kvm_msr_list *list, uint32_t index)
{
	for (uint32_t i = 0; list && i < list->nmsrs; i++)
		if (list->indices[i] == index)
			return true;
	return false;
}

static int set_msrs(int fd, const struct kvm_msr_list *list)
{
	static const struct { uint32_t index; uint64_t value; } want[] = {
		{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
		{ MSR_IA32_CR_PAT, PAT_POWER_ON },
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_LSTAR, 0 },
		{ MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_KERNEL_GS_BASE, 0 },
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one;

	/* One MSR per ioctl: KVM_SET_MSRS stops at the first MSR it refuses,
	 * and a host may list an MSR it will not let us set (PVM does).  Ten
	 * ioctls per vCPU cost microseconds. */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!msr_supported(list, want[i].index))
			continue;
		memset(&one, 0, sizeof(one));
		one.hdr.nmsrs = 1;
		one.e.index = want[i].index;
		one.e.data = want[i].value;
		if (ioctl(fd, KVM_SET_MSRS, &one) < 0)
			return -errno;
	}
	return 0;
}

static int set_fpu(int fd)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	return ioctl(fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static void set_lvt_mode(struct kvm_lapic_state *l, int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &l->regs[reg], 4);
	v = (v & ~0x700u & ~(1u << 16)) | (mode << 8); /* unmasked */
	memcpy(&l->regs[reg], &v, 4);
}

static int set_lapic(int fd, int index)
{
	struct kvm_lapic_state l;

	if (ioctl(fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	/* Only the BSP takes the 8259's output, as the MP spec's virtual
	 * wire mode has it; APs keep LINT0 masked. */
	if (index == 0)
		set_lvt_mode(&l, APIC_LVT0, APIC_MODE_EXTINT);
	set_lvt_mode(&l, APIC_LVT1, APIC_MODE_NMI);
	return ioctl(fd, KVM_SET_LAPIC, &l) < 0 ? -errno : 0;
}

int kvm_regs_init(int vcpu_fd, int index, const struct x86_boot_regs *regs,
		  const struct kvm_msr_list *msr_index)
{
	int r;

	r = set_msrs(vcpu_fd, msr_index);
	if (!r)
		r = set_fpu(vcpu_fd);
	if (!r)
		r = set_lapic(vcpu_fd, index);
	if (!r && index == 0)
		r = set_boot_regs(vcpu_fd, regs);
	return r;
}
