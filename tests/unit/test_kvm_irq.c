/*
 * test_kvm_irq.c - kvm_irq.c against the host's /dev/kvm: the GSI routing
 * table and irqfds on a VM with an in-kernel irqchip, no guest code run.
 *
 * Injection is observed in the interrupt controllers' state, which KVM
 * reports without running a vCPU: a PIC input raised through an irqfd on
 * GSI 3 shows in the master PIC's IRR (so the default PIC routes survived
 * our KVM_SET_GSI_ROUTING), a level-triggered irqfd with a resample fd on
 * GSI 17 in the IOAPIC's IRR (so did the IOAPIC routes), and an MSI route
 * in the IRR of a vCPU's LAPIC, software-enabled for the purpose.
 *
 * Last, the whole path: an MSI-X device on the harness's PCI bus
 * (hw/msix.c) over these ops, masked and unmasked as a driver would.
 *
 * Skips (exit status 77) when /dev/kvm is missing or will not give a VM
 * with an irqchip, routes and irqfds, saying which.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "accel/kvm/kvm_int.h"
#include "core/irq.h"
#include "harness.h"
#include "hw/msix.h"
#include "hw/pci.h"

#define LAPIC_SVR      0xf0
#define LAPIC_IRR      0x200
#define MSI_VECTOR     0x41

static char skip_reason[128];

struct fixture {
	struct kvm_state k;
	const struct irq_ops *ops;
};

/* A VM with an irqchip and our routing ops, or NULL with skip_reason. */
static struct fixture *vm_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->k.sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	f->k.vm_fd = -1;
	if (f->k.sys_fd < 0) {
		snprintf(skip_reason, sizeof(skip_reason), "/dev/kvm: %s",
			 strerror(errno));
		goto fail;
	}
	f->k.vm_fd = ioctl(f->k.sys_fd, KVM_CREATE_VM, 0);
	if (f->k.vm_fd < 0 || ioctl(f->k.vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		snprintf(skip_reason, sizeof(skip_reason),
			 "KVM_CREATE_VM/KVM_CREATE_IRQCHIP: %s", strerror(errno));
		goto fail;
	}
	f->ops = kvm_irq_init(&f->k);
	if (!f->ops->msi_route_add) {
		snprintf(skip_reason, sizeof(skip_reason),
			 "no KVM_CAP_IRQ_ROUTING or KVM_CAP_IRQFD");
		kvm_irq_destroy(&f->k);
		goto fail;
	}
	return f;
fail:
	if (f->k.vm_fd >= 0)
		close(f->k.vm_fd);
	if (f->k.sys_fd >= 0)
		close(f->k.sys_fd);
	free(f);
	return NULL;
}

static void vm_free(struct fixture *f)
{
	kvm_irq_destroy(&f->k);
	close(f->k.vm_fd);
	close(f->k.sys_fd);
	free(f);
}

static int efd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	assert_true(fd >= 0);
	return fd;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
}

/* Level-triggered irqfds inject from a kernel work item: poll up to 1 s. */
static bool wait_irr(struct fixture *f, unsigned chip, unsigned bit)
{
	for (int i = 0; i < 1000; i++) {
		struct kvm_irqchip c = { .chip_id = chip };

		assert_int_equal(ioctl(f->k.vm_fd, KVM_GET_IRQCHIP, &c), 0);
		if (chip == KVM_IRQCHIP_IOAPIC ? c.chip.ioapic.irr >> bit & 1 :
						 c.chip.pic.irr >> bit & 1)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	return false;
}

static void test_routes(void **state)
{
	struct fixture *f = vm_new();
	void *k = &f->k;
	int g1, g2, fd = efd(), fd2 = efd(), resample_fd = efd();

	g1 = f->ops->msi_route_add(k, 0xfee00000, MSI_VECTOR);
	g2 = f->ops->msi_route_add(k, 0xfee00000, MSI_VECTOR + 1);
	assert_int_equal(g1, IRQ_MAX_GSI);
	assert_int_equal(g2, IRQ_MAX_GSI + 1);
	assert_int_equal(f->ops->msi_route_set(k, (unsigned)g1, 0xfee01000, 0x42), 0);
	/* Not an MSI route: the board's pins, free slots, past the end. */
	assert_int_equal(f->ops->msi_route_set(k, 5, 0xfee00000, 1), -EINVAL);
	assert_int_equal(f->ops->msi_route_set(k, IRQ_MAX_GSI + 2, 0xfee00000, 1),
			 -EINVAL);
	assert_int_equal(f->ops->msi_route_set(k, 1u << 20, 0xfee00000, 1),
			 -EINVAL);
	assert_int_equal(f->ops->irqfd_assign(k, (unsigned)g1, fd, -1), 0);
	assert_int_equal(f->ops->irqfd_assign(k, (unsigned)g1, fd, -1), -EBUSY);
	/* Resampling belongs to IOAPIC pins only. */
	assert_int_equal(f->ops->irqfd_assign(k, (unsigned)g2, fd2, resample_fd),
			 -EINVAL);
	signal_fd(fd);
	assert_int_equal(f->ops->irqfd_deassign(k, (unsigned)g1, fd), 0);
	/* A freed GSI is handed out again. */
	f->ops->msi_route_del(k, (unsigned)g1);
	f->ops->msi_route_del(k, (unsigned)g1);
	assert_int_equal(f->ops->msi_route_add(k, 0xfee00000, 0x50), g1);
	close(fd);
	close(fd2);
	close(resample_fd);
	vm_free(f);
}

/* Every route up to the kernel's limit, then -ENOSPC, the default routes
 * counted in. */
static void test_route_limit(void **state)
{
	struct fixture *f = vm_new();
	unsigned n = 0;
	int g;

	while ((g = f->ops->msi_route_add(&f->k, 0xfee00000, n & 0xff)) >= 0)
		n++;
	assert_int_equal(g, -ENOSPC);
	assert_int_equal(n, f->k.routes.max_entries - (16 + IRQ_MAX_GSI));
	f->ops->msi_route_del(&f->k, IRQ_MAX_GSI + 7);
	assert_int_equal(f->ops->msi_route_add(&f->k, 0xfee00000, 7),
			 IRQ_MAX_GSI + 7);
	vm_free(f);
}

/* The PIC and IOAPIC routes of KVM_CREATE_IRQCHIP survive our table. */
static void test_irqchip_routes_kept(void **state)
{
	struct fixture *f = vm_new();
	int pic_fd = efd(), lvl_fd = efd(), resample_fd = efd();

	assert_true(f->ops->msi_route_add(&f->k, 0xfee00000, MSI_VECTOR) >= 0);
	assert_int_equal(f->ops->irqfd_assign(&f->k, 3, pic_fd, -1), 0);
	signal_fd(pic_fd);
	assert_true(wait_irr(f, KVM_IRQCHIP_PIC_MASTER, 3));
	assert_int_equal(f->ops->irqfd_assign(&f->k, 17, lvl_fd, resample_fd), 0);
	signal_fd(lvl_fd);
	assert_true(wait_irr(f, KVM_IRQCHIP_IOAPIC, 17));
	assert_int_equal(f->ops->irqfd_deassign(&f->k, 17, lvl_fd), 0);
	assert_int_equal(f->ops->irqfd_deassign(&f->k, 3, pic_fd), 0);
	close(pic_fd);
	close(lvl_fd);
	close(resample_fd);
	vm_free(f);
}

static bool lapic_irr(int vcpu_fd, unsigned vec)
{
	struct kvm_lapic_state l;
	uint32_t w;

	assert_int_equal(ioctl(vcpu_fd, KVM_GET_LAPIC, &l), 0);
	memcpy(&w, l.regs + LAPIC_IRR + 0x10 * (vec / 32), 4);
	return w >> (vec % 32) & 1;
}

/* A vCPU whose LAPIC (APIC ID 0) accepts fixed interrupts, or -1. */
static int enabled_vcpu(struct fixture *f)
{
	struct kvm_lapic_state l;
	int vcpu = ioctl(f->k.vm_fd, KVM_CREATE_VCPU, 0);
	uint32_t svr;

	if (vcpu < 0)
		return -1;
	/* A software-disabled LAPIC drops fixed interrupts. */
	assert_int_equal(ioctl(vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&svr, l.regs + LAPIC_SVR, 4);
	svr |= 0x100;
	memcpy(l.regs + LAPIC_SVR, &svr, 4);
	assert_int_equal(ioctl(vcpu, KVM_SET_LAPIC, &l), 0);
	return vcpu;
}

static bool wait_lapic_irr(int vcpu, unsigned vec)
{
	for (int i = 0; i < 1000 && !lapic_irr(vcpu, vec); i++)
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	return lapic_irr(vcpu, vec);
}

/* An MSI route, retargeted, reaches vCPU 0's LAPIC through an irqfd. */
static void test_msi_irqfd_injects(void **state)
{
	struct fixture *f = vm_new();
	int vcpu = enabled_vcpu(f), g, fd = efd();

	if (vcpu < 0) {
		vm_free(f);
		close(fd);
		skip();
	}

	g = f->ops->msi_route_add(&f->k, 0xfee01000, MSI_VECTOR); /* APIC 1 */
	assert_true(g >= IRQ_MAX_GSI);
	assert_int_equal(f->ops->irqfd_assign(&f->k, (unsigned)g, fd, -1), 0);
	signal_fd(fd);
	assert_false(lapic_irr(vcpu, MSI_VECTOR));
	assert_int_equal(f->ops->msi_route_set(&f->k, (unsigned)g, 0xfee00000,
					       MSI_VECTOR + 1), 0);
	signal_fd(fd);
	assert_true(wait_lapic_irr(vcpu, MSI_VECTOR + 1));
	assert_false(lapic_irr(vcpu, MSI_VECTOR));
	close(vcpu);
	close(fd);
	vm_free(f);
}

/* msix.c over kvm_irq.c: a masked vector stays pending, not injected, and
 * reaches the LAPIC once unmasked. */
static void test_msix_over_kvm(void **state)
{
	struct fixture *f = vm_new();
	struct harness *h = harness_new(1 << 20);
	static const struct pci_device_info info = {
		.vendor_id = 0x1234, .device_id = 0x1111,
		.class_code = 0xff0000, .name = "msix-kvm",
	};
	struct pci_bus *bus;
	struct pci_device *dev;
	uint64_t ecam = PC_PCI_ECAM_BASE + (1u << 15), table;
	uint8_t cap = 0;
	int vcpu = enabled_vcpu(f);

	if (vcpu < 0) {
		harness_free(h);
		vm_free(f);
		skip();
	}
	h->vm.irq.ops = f->ops;
	h->vm.irq.opaque = &f->k;
	assert_int_equal(pci_bus_create(&h->vm, &bus), 0);
	assert_int_equal(pci_device_add(bus, &info, NULL, NULL, &dev), 0);
	assert_int_equal(msix_init(dev, 2, 1), 0);
	for (uint8_t p = (uint8_t)hx_mmio_read(h, ecam + PCI_CAPABILITY_LIST, 1);
	     p && !cap; p = (uint8_t)hx_mmio_read(h, ecam + p + 1, 1))
		if (hx_mmio_read(h, ecam + p, 1) == PCI_CAP_ID_MSIX)
			cap = p;
	assert_int_not_equal(cap, 0);
	table = hx_mmio_read(h, ecam + 0x14, 4) & ~0xfull;
	hx_mmio_write(h, ecam + PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	hx_mmio_write(h, table + 16, 4, 0xfee00000);   /* vector 1 -> APIC 0 */
	hx_mmio_write(h, table + 24, 4, MSI_VECTOR + 2);
	hx_mmio_write(h, ecam + cap + 2, 2, 0x8000);   /* MSI-X enable */

	msix_notify(dev, 1);                         /* masked: pending */
	nanosleep(&(struct timespec){ .tv_nsec = 20000000 }, NULL);
	assert_false(lapic_irr(vcpu, MSI_VECTOR + 2));
	assert_int_equal(hx_mmio_read(h, table + 4096, 4), 2);
	hx_mmio_write(h, table + 28, 4, 0);          /* unmask: fires */
	assert_true(wait_lapic_irr(vcpu, MSI_VECTOR + 2));
	assert_int_equal(hx_mmio_read(h, table + 4096, 4), 0);
	/* Through an irqfd on an MSI route: one route taken. */
	assert_int_equal(f->k.routes.nr_used, 1);

	harness_free(h);  /* releases the route */
	assert_int_equal(f->k.routes.nr_used, 0);
	close(vcpu);
	vm_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_route_limit),
		cmocka_unit_test(test_irqchip_routes_kept),
		cmocka_unit_test(test_msi_irqfd_injects),
		cmocka_unit_test(test_msix_over_kvm),
	};
	struct fixture *probe = vm_new();

	if (!probe) {
		printf("skipped: %s\n", skip_reason);
		return 77;
	}
	vm_free(probe);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
