/*
 * test_msix.c - MSI-X: the capability, the table and PBA in their BAR,
 * masking, pending bits and delivery, played through ECAM and MMIO as a
 * guest driver would.  The delivery tests run twice: with messages sent
 * through irq_send_msi(), and with the harness offering irqfds and MSI
 * routes as KVM does (hx_irqfd_enable), where the harness plays the kernel
 * injecting from the eventfds (nr_msi() below).  Masking must look the
 * same to the guest either way.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/msix.h"
#include "hw/pci.h"

#define NVEC 3
#define SLOT 1
#define ECAM(reg) (PC_PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + (reg))
#define CTRL_ENABLE  0x8000
#define CTRL_MASKALL 0x4000

struct fixture {
	struct harness *h;
	struct pci_bus *bus;
	struct pci_device *dev;
	uint8_t cap;
	uint64_t table, pba;  /* guest addresses */
};

static const struct pci_device_info info = {
	.vendor_id = 0x1234, .device_id = 0x1111, .class_code = 0xff0000,
	.irq_pin = 1, .name = "msix-test",
};

static uint8_t find_cap(struct harness *h, uint8_t id)
{
	for (uint8_t p = (uint8_t)hx_mmio_read(h, ECAM(PCI_CAPABILITY_LIST), 1);
	     p; p = (uint8_t)hx_mmio_read(h, ECAM(p + 1), 1))
		if (hx_mmio_read(h, ECAM(p), 1) == id)
			return p;
	return 0;
}

static void ctrl_write(struct fixture *f, uint16_t v)
{
	hx_mmio_write(f->h, ECAM(f->cap + 2), 2, v);
}

static bool with_irqfd = true;

/* Build the device and play the driver's setup: find the capability,
 * locate table and PBA, enable memory decoding.  `state`: cmocka's, a
 * pointer to with_irqfd for the irqfd runs. */
static struct fixture *setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint32_t tbl, pba, bar;

	f->h = harness_new(1 << 20);
	if (*state)
		hx_irqfd_enable(f->h);
	assert_int_equal(pci_bus_create(&f->h->vm, &f->bus), 0);
	assert_int_equal(pci_device_add(f->bus, &info, NULL, NULL, &f->dev), 0);
	assert_int_equal(msix_init(f->dev, NVEC, 1), 0);
	f->cap = find_cap(f->h, PCI_CAP_ID_MSIX);
	assert_int_not_equal(f->cap, 0);
	assert_int_equal(hx_mmio_read(f->h, ECAM(f->cap + 2), 2), NVEC - 1);
	tbl = (uint32_t)hx_mmio_read(f->h, ECAM(f->cap + 4), 4);
	pba = (uint32_t)hx_mmio_read(f->h, ECAM(f->cap + 8), 4);
	assert_int_equal(tbl & 7, 1);   /* BIR 1 */
	assert_int_equal(pba & 7, 1);
	assert_int_equal(tbl & ~7u, 0);
	assert_int_equal(pba & ~7u, 4096);
	bar = (uint32_t)hx_mmio_read(f->h, ECAM(0x14), 4) & ~0xfu;
	assert_true(bar >= PC_PCI_MMIO_BASE);
	f->table = bar + (tbl & ~7u);
	f->pba = bar + (pba & ~7u);
	hx_mmio_write(f->h, ECAM(PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	return f;
}

/* Messages delivered so far, the kernel's injections from irqfds
 * included. */
static unsigned nr_msi(struct fixture *f)
{
	hx_irqfd_inject(f->h);
	return f->h->nr_msi;
}

static void teardown(struct fixture *f)
{
	struct harness *h = f->h;

	/* With irqfds on and routes to spare, no message took the slow way. */
	if (irq_has_irqfd(&h->vm.irq) && h->route_limit == HARNESS_MAX_ROUTES)
		assert_int_equal(h->nr_msi_irqfd, nr_msi(f));
	harness_free(f->h);
	free(f);
}

static void program(struct fixture *f, unsigned v, uint64_t addr,
		    uint32_t data, bool masked)
{
	uint64_t e = f->table + 16 * v;

	hx_mmio_write(f->h, e + 0, 4, (uint32_t)addr);
	hx_mmio_write(f->h, e + 4, 4, (uint32_t)(addr >> 32));
	hx_mmio_write(f->h, e + 8, 4, data);
	hx_mmio_write(f->h, e + 12, 4, masked);
}

static void test_capability_and_bar(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	/* BAR 1 is a 32-bit memory BAR of one page + the PBA page. */
	hx_mmio_write(h, ECAM(0x14), 4, 0xffffffff);
	assert_int_equal(hx_mmio_read(h, ECAM(0x14), 4), 0xffffe000);
	/* Only the enable and function-mask bits are writable. */
	ctrl_write(f, 0xffff);
	assert_int_equal(hx_mmio_read(h, ECAM(f->cap + 2), 2),
			 CTRL_ENABLE | CTRL_MASKALL | (NVEC - 1));
	hx_mmio_write(h, ECAM(f->cap + 4), 4, 0xffffffff);
	hx_mmio_write(h, ECAM(f->cap + 8), 4, 0);
	assert_int_equal(hx_mmio_read(h, ECAM(f->cap + 4), 4), 1);
	assert_int_equal(hx_mmio_read(h, ECAM(f->cap + 8), 4), 4097);
	assert_true(msix_enabled(f->dev));
	/* Bad arguments */
	assert_int_equal(msix_init(f->dev, 4, 2), -EINVAL); /* already */
	teardown(f);
}

static void test_bad_init(void **state)
{
	struct harness *h = harness_new(1 << 20);
	struct pci_bus *bus;
	struct pci_device *dev;

	assert_int_equal(pci_bus_create(&h->vm, &bus), 0);
	assert_int_equal(pci_device_add(bus, &info, NULL, NULL, &dev), 0);
	assert_int_equal(msix_init(dev, 0, 1), -EINVAL);
	assert_int_equal(msix_init(dev, MSIX_MAX_VECTORS + 1, 1), -EINVAL);
	assert_int_equal(msix_init(dev, 4, 6), -EINVAL);
	assert_false(msix_enabled(dev));
	assert_false(msix_notify(dev, 0)); /* no MSI-X: the caller uses INTx */
	/* The largest table works: 2048 vectors = 32 KiB + a PBA page. */
	assert_int_equal(msix_init(dev, MSIX_MAX_VECTORS, 0), 0);
	assert_int_equal(dev->bars[0].size, 65536);
	harness_free(h);
}

static void test_table_read_write(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	/* Power-on: every vector masked, the rest 0. */
	for (unsigned v = 0; v < NVEC; v++) {
		assert_int_equal(hx_mmio_read(h, f->table + 16 * v, 8), 0);
		assert_int_equal(hx_mmio_read(h, f->table + 16 * v + 8, 4), 0);
		assert_int_equal(hx_mmio_read(h, f->table + 16 * v + 12, 4), 1);
	}
	program(f, 1, 0xfee01003ull | 0x12ull << 32, 0x4041, true);
	assert_int_equal(hx_mmio_read(h, f->table + 16, 4), 0xfee01000);
	assert_int_equal(hx_mmio_read(h, f->table + 20, 4), 0x12);
	assert_int_equal(hx_mmio_read(h, f->table + 24, 4), 0x4041);
	/* qword accesses */
	hx_mmio_write(h, f->table + 32, 8, 0x00000000fee02000ull);
	hx_mmio_write(h, f->table + 40, 8, 0xfffffffe00000051ull);
	assert_int_equal(hx_mmio_read(h, f->table + 32, 8), 0xfee02000);
	/* Reserved vector-control bits read 0. */
	assert_int_equal(hx_mmio_read(h, f->table + 40, 8), 0x51);
	assert_int_equal(hx_mmio_read(h, f->table + 44, 4), 0);
	/* Misaligned and sub-dword accesses: ignored, read 0. */
	hx_mmio_write(h, f->table + 24, 1, 0xff);
	hx_mmio_write(h, f->table + 24, 2, 0xffff);
	hx_mmio_write(h, f->table + 26, 4, 0xffffffff);
	hx_mmio_write(h, f->table + 20, 8, ~0ull);
	assert_int_equal(hx_mmio_read(h, f->table + 24, 4), 0x4041);
	assert_int_equal(hx_mmio_read(h, f->table + 20, 4), 0x12);
	assert_int_equal(hx_mmio_read(h, f->table + 24, 1), 0);
	assert_int_equal(hx_mmio_read(h, f->table + 24, 2), 0);
	assert_int_equal(hx_mmio_read(h, f->table + 20, 8), 0);
	/* Past the table, between table and PBA, past the PBA: 0 / ignored */
	hx_mmio_write(h, f->table + 16 * NVEC, 4, 0x1234);
	assert_int_equal(hx_mmio_read(h, f->table + 16 * NVEC, 4), 0);
	assert_int_equal(hx_mmio_read(h, f->table + 2048, 4), 0);
	assert_int_equal(hx_mmio_read(h, f->pba + 8, 8), 0);
	assert_int_equal(hx_mmio_read(h, f->pba + 4088, 8), 0);
	/* The PBA is read-only. */
	hx_mmio_write(h, f->pba, 8, ~0ull);
	assert_int_equal(hx_mmio_read(h, f->pba, 8), 0);
	assert_int_equal(nr_msi(f), 0);
	teardown(f);
}

static void test_mask_pending_unmask(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	program(f, 0, 0xfee00000, 0x30, false);
	program(f, 2, 0xfee01000, 0x32, true);
	ctrl_write(f, CTRL_ENABLE);
	/* Unmasked vector: delivered at once. */
	msix_notify(f->dev, 0);
	assert_int_equal(nr_msi(f), 1);
	assert_int_equal(h->msi[0].addr, 0xfee00000);
	assert_int_equal(h->msi[0].data, 0x30);
	/* Masked vector: pending bit, no message; twice is still one. */
	msix_notify(f->dev, 2);
	msix_notify(f->dev, 2);
	assert_int_equal(nr_msi(f), 1);
	assert_int_equal(hx_mmio_read(h, f->pba, 8), 1u << 2);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 1u << 2);
	assert_int_equal(hx_mmio_read(h, f->pba + 4, 4), 0);
	/* Rewriting it still masked delivers nothing. */
	hx_mmio_write(h, f->table + 32 + 12, 4, 1);
	assert_int_equal(nr_msi(f), 1);
	/* Unmask: exactly one message, pending cleared. */
	hx_mmio_write(h, f->table + 32 + 12, 4, 0);
	assert_int_equal(nr_msi(f), 2);
	assert_int_equal(h->msi[1].addr, 0xfee01000);
	assert_int_equal(h->msi[1].data, 0x32);
	assert_int_equal(hx_mmio_read(h, f->pba, 8), 0);
	hx_mmio_write(h, f->table + 32 + 12, 4, 0);
	assert_int_equal(nr_msi(f), 2);
	/* Out-of-range vectors are ignored. */
	msix_notify(f->dev, NVEC);
	msix_notify(f->dev, MSIX_NO_VECTOR);
	assert_int_equal(nr_msi(f), 2);
	assert_int_equal(hx_mmio_read(h, f->pba, 8), 0);
	teardown(f);
}

static void test_function_mask(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	program(f, 0, 0xfee00000, 0x40, false);
	program(f, 1, 0xfee00000, 0x41, false);
	program(f, 2, 0xfee00000, 0x42, true);
	ctrl_write(f, CTRL_ENABLE | CTRL_MASKALL);
	msix_notify(f->dev, 1);
	msix_notify(f->dev, 2);
	assert_int_equal(nr_msi(f), 0);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 6);
	/* Function unmasked: vector 1 goes, vector 2 stays masked/pending. */
	ctrl_write(f, CTRL_ENABLE);
	assert_int_equal(nr_msi(f), 1);
	assert_int_equal(h->msi[0].data, 0x41);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 4);
	ctrl_write(f, CTRL_ENABLE);
	assert_int_equal(nr_msi(f), 1);
	hx_mmio_write(h, f->table + 32 + 8, 8, 0x43);  /* data + unmask */
	assert_int_equal(nr_msi(f), 2);
	assert_int_equal(h->msi[1].data, 0x43);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);
	teardown(f);
}

static void test_enable_bit(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	program(f, 0, 0xfee00000, 0x50, false);
	assert_false(msix_enabled(f->dev));
	/* Disabled: the device uses INTx (told by the result, decided under
	 * the lock of the send); nothing is sent or kept. */
	assert_false(msix_notify(f->dev, 0));
	assert_int_equal(nr_msi(f), 0);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);
	ctrl_write(f, CTRL_ENABLE);
	assert_true(msix_enabled(f->dev));
	assert_int_equal(nr_msi(f), 0);
	assert_true(msix_notify(f->dev, 0));
	assert_int_equal(nr_msi(f), 1);
	/* Enabling with a pending vector (masked when notified) sends it. */
	ctrl_write(f, CTRL_ENABLE | CTRL_MASKALL);
	assert_true(msix_notify(f->dev, 0)); /* handled: pending */
	ctrl_write(f, 0);
	assert_int_equal(nr_msi(f), 1);
	ctrl_write(f, CTRL_ENABLE);
	assert_int_equal(nr_msi(f), 2);
	/* Memory decoding off: the table is out of reach, state kept. */
	hx_mmio_write(h, ECAM(PCI_COMMAND), 2, 0);
	assert_int_equal(hx_mmio_read(h, f->table + 8, 4), 0xffffffff);
	hx_mmio_write(h, f->table + 12, 4, 1);
	hx_mmio_write(h, ECAM(PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	assert_int_equal(hx_mmio_read(h, f->table + 12, 4), 0);
	teardown(f);
}

static void test_reset_and_save_load(void **state)
{
	struct fixture *f = setup(state), *g = setup(state);
	struct harness *h = f->h;
	struct state_buf b = { 0 };

	program(f, 1, 0xfee03000, 0x61, true);
	ctrl_write(f, CTRL_ENABLE);
	msix_notify(f->dev, 1);
	assert_int_equal(hx_save(h, "pci", &b), 0);

	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), 0);
	assert_true(msix_enabled(g->dev));
	assert_int_equal(hx_mmio_read(g->h, g->pba, 4), 2);
	assert_int_equal(hx_mmio_read(g->h, g->table + 16, 4), 0xfee03000);
	hx_mmio_write(g->h, g->table + 16 + 12, 4, 0);
	assert_int_equal(nr_msi(g), 1);
	assert_int_equal(g->h->msi[0].data, 0x61);

	/* A hostile stream: a pending bit past the last vector. */
	b.data[b.len - 8] |= 1u << NVEC;
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), -EINVAL);
	b.data[b.len - 8] &= (uint8_t)~(1u << NVEC);
	/* Reserved vector-control bits */
	b.data[b.len - 8 - 4 * 4 * NVEC + 12 + 1] = 1;
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), -EINVAL);
	assert_int_equal(hx_mmio_read(g->h, g->pba, 4), 0);

	/* Machine reset: disabled, masked, nothing pending. */
	vm_reset_devices(&h->vm);
	assert_false(msix_enabled(f->dev));
	hx_mmio_write(h, ECAM(PCI_COMMAND), 2, PCI_COMMAND_MEMORY);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);
	assert_int_equal(hx_mmio_read(h, f->table + 16, 4), 0);
	assert_int_equal(hx_mmio_read(h, f->table + 16 + 12, 4), 1);
	ctrl_write(f, CTRL_ENABLE);
	assert_int_equal(nr_msi(f), 0);

	state_buf_free(&b);
	teardown(f);
	teardown(g);
}

/* The route of `f`'s vector that the harness saw bound, or NULL. */
static const struct hx_route *bound_route(struct fixture *f, uint32_t data)
{
	for (unsigned i = 0; i < HARNESS_MAX_ROUTES; i++)
		if (f->h->routes[i].used && f->h->routes[i].fd >= 0 &&
		    f->h->routes[i].data == data)
			return &f->h->routes[i];
	return NULL;
}

/* How msix.c drives routes and eventfds: lazily, following the message,
 * never signalling a masked vector, all released on disable and reset. */
static void test_irqfd_routes(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;
	const struct hx_route *r;

	program(f, 0, 0xfee00000, 0x30, false);
	program(f, 1, 0xfee01000, 0x31, true);
	ctrl_write(f, CTRL_ENABLE);
	/* No route before a vector fires. */
	assert_int_equal(h->route_adds, 0);
	msix_notify(f->dev, 0);
	assert_int_equal(h->route_adds, 1);
	assert_int_equal(h->irqfd_assigns, 1);
	assert_non_null(r = bound_route(f, 0x30));
	assert_int_equal(r->addr, 0xfee00000);
	assert_int_equal(h->nr_msi, 0);       /* nothing by send_msi */
	assert_int_equal(hx_irqfd_inject(h), 1);
	assert_int_equal(h->msi[0].data, 0x30);
	/* Firing again reuses the route. */
	msix_notify(f->dev, 0);
	assert_int_equal(hx_irqfd_inject(h), 1);
	assert_int_equal(h->route_adds, 1);

	/* The guest retargets an unmasked vector: the route follows at once. */
	hx_mmio_write(h, f->table + 8, 4, 0x38);
	assert_int_equal(h->route_sets, 1);
	assert_non_null(r = bound_route(f, 0x38));
	hx_mmio_write(h, f->table + 0, 8, 0x00000000fee02000ull);
	assert_int_equal(h->route_sets, 2);
	assert_int_equal(r->addr, 0xfee02000);
	/* The same message again costs no update. */
	hx_mmio_write(h, f->table + 8, 4, 0x38);
	assert_int_equal(h->route_sets, 2);

	/* Masked and rewritten: no update yet, the eventfd stays silent and
	 * the pending bit is set, twice notified is one pending message. */
	hx_mmio_write(h, f->table + 12, 4, 1);
	hx_mmio_write(h, f->table + 8, 4, 0x39);
	assert_int_equal(h->route_sets, 2);
	msix_notify(f->dev, 0);
	msix_notify(f->dev, 0);
	assert_int_equal(hx_irqfd_inject(h), 0);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 1);
	/* Unmask: the route gets the new message first, then fires once. */
	hx_mmio_write(h, f->table + 12, 4, 0);
	assert_int_equal(h->route_sets, 3);
	assert_int_equal(hx_irqfd_inject(h), 1);
	assert_int_equal(h->msi[h->nr_msi - 1].data, 0x39);
	assert_int_equal(h->msi[h->nr_msi - 1].addr, 0xfee02000);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);
	assert_int_equal(hx_irqfd_inject(h), 0);

	/* Function mask: silent and pending; unmasked: exactly one. */
	ctrl_write(f, CTRL_ENABLE | CTRL_MASKALL);
	assert_true(msix_notify(f->dev, 0)); /* handled: pending */
	assert_int_equal(hx_irqfd_inject(h), 0);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 1);
	ctrl_write(f, CTRL_ENABLE);
	assert_int_equal(hx_irqfd_inject(h), 1);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);

	/* A second vector gets a route of its own. */
	hx_mmio_write(h, f->table + 16 + 12, 4, 0);
	msix_notify(f->dev, 1);
	assert_int_equal(hx_routes_used(h), 2);
	assert_non_null(bound_route(f, 0x31));
	assert_int_equal(hx_irqfd_inject(h), 1);

	/* Disabled: every route and binding goes; notifications drop. */
	ctrl_write(f, 0);
	assert_int_equal(hx_routes_used(h), 0);
	assert_int_equal(h->route_dels, h->route_adds);
	assert_int_equal(h->irqfd_deassigns, h->irqfd_assigns);
	msix_notify(f->dev, 0);
	assert_int_equal(hx_irqfd_inject(h), 0);
	assert_int_equal(hx_mmio_read(h, f->pba, 4), 0);
	/* Enabled again: a fresh route on first use. */
	ctrl_write(f, CTRL_ENABLE);
	msix_notify(f->dev, 1);
	assert_int_equal(hx_routes_used(h), 1);
	assert_int_equal(hx_irqfd_inject(h), 1);
	/* Machine reset releases them too. */
	vm_reset_devices(&h->vm);
	assert_int_equal(hx_routes_used(h), 0);
	assert_int_equal(h->irqfd_deassigns, h->irqfd_assigns);
	assert_int_equal(h->nr_msi, h->nr_msi_irqfd);
	teardown(f);
}

/* No route to be had: the vector falls back to irq_send_msi(), masking
 * unchanged, and gets a route once one is free. */
static void test_irqfd_fallback(void **state)
{
	struct fixture *f = setup(state);
	struct harness *h = f->h;

	h->route_limit = 0;
	program(f, 0, 0xfee00000, 0x70, false);
	ctrl_write(f, CTRL_ENABLE);
	msix_notify(f->dev, 0);
	assert_int_equal(h->nr_msi, 1);
	assert_int_equal(h->nr_msi_irqfd, 0);
	assert_int_equal(h->msi[0].data, 0x70);
	hx_mmio_write(h, f->table + 12, 4, 1);
	msix_notify(f->dev, 0);
	assert_int_equal(nr_msi(f), 1);
	hx_mmio_write(h, f->table + 12, 4, 0);
	assert_int_equal(nr_msi(f), 2);
	assert_int_equal(h->nr_msi_irqfd, 0);
	h->route_limit = HARNESS_MAX_ROUTES;
	msix_notify(f->dev, 0);
	assert_int_equal(hx_routes_used(h), 1);
	assert_int_equal(nr_msi(f), 3);
	assert_int_equal(h->nr_msi_irqfd, 1);
	h->route_limit = 0; /* teardown: not every message by irqfd */
	teardown(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capability_and_bar),
		cmocka_unit_test(test_bad_init),
		cmocka_unit_test(test_table_read_write),
		cmocka_unit_test(test_mask_pending_unmask),
		cmocka_unit_test(test_function_mask),
		cmocka_unit_test(test_enable_bit),
		cmocka_unit_test(test_reset_and_save_load),
		cmocka_unit_test_prestate(test_table_read_write, &with_irqfd),
		cmocka_unit_test_prestate(test_mask_pending_unmask, &with_irqfd),
		cmocka_unit_test_prestate(test_function_mask, &with_irqfd),
		cmocka_unit_test_prestate(test_enable_bit, &with_irqfd),
		cmocka_unit_test_prestate(test_reset_and_save_load, &with_irqfd),
		cmocka_unit_test_prestate(test_irqfd_routes, &with_irqfd),
		cmocka_unit_test_prestate(test_irqfd_fallback, &with_irqfd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
