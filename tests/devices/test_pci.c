/*
 * test_pci.c - the PCI root bus: configuration space through 0xCF8/0xCFC
 * and ECAM, BAR sizing and decoding, capabilities, INTx, reset, save/load.
 *
 * A test device stands in for a real one: three BARs (a 32-bit memory BAR,
 * a 64-bit memory BAR and an I/O BAR), each backed by a small register
 * file that remembers what was written, and hooks that count bar_moved
 * calls.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/pc.h"
#include "hw/pci.h"
#include "hw/reset_cf9.h"

#define ECAM(slot, fn, reg) \
	(PC_PCI_ECAM_BASE + ((uint64_t)(slot) << 15) + ((fn) << 12) + (reg))

struct tdev {
	struct pci_device *pci;
	uint8_t regs[3][256];        /* what each BAR holds (first 256 bytes) */
	int moves[PCI_NUM_BARS];     /* bar_moved calls */
	uint64_t moved_to[PCI_NUM_BARS];
	unsigned cfg_writes;
};

struct bar_ctx {
	struct tdev *t;
	int idx;
};

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct bar_ctx *c = opaque;
	uint64_t v = 0;

	if (off + size > 256)
		return 0xdead;
	memcpy(&v, c->t->regs[c->idx] + off, size);
	return v;
}

static void bar_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	struct bar_ctx *c = opaque;

	if (off + size <= 256)
		memcpy(c->t->regs[c->idx] + off, &v, size);
}

static const struct bus_ops bar_ops = { .read = bar_read, .write = bar_write };

static void t_bar_moved(void *opaque, int bar, uint64_t addr)
{
	struct tdev *t = opaque;

	t->moves[bar]++;
	t->moved_to[bar] = addr;
}

static void t_cfg_write(void *opaque, uint32_t offset, unsigned size,
			uint32_t value)
{
	struct tdev *t = opaque;

	t->cfg_writes++;
}

static const struct pci_device_ops tdev_ops = {
	.bar_moved = t_bar_moved,
	.cfg_write = t_cfg_write,
};

static const struct pci_device_info tdev_info = {
	.vendor_id = 0x1234, .device_id = 0x5678,
	.subsystem_vendor_id = 0xabcd, .subsystem_id = 0xef01,
	.revision = 3, .class_code = 0xff0000, .irq_pin = 1,
	.name = "test",
};

struct fixture {
	struct harness *h;
	struct pci_bus *bus;
	struct tdev t[2];
	struct bar_ctx ctx[2][3];
};

/* BAR 0: MEM32 8 KiB, BAR 2-3: MEM64 16 KiB, BAR 4: I/O 32 bytes */
static void add_tdev(struct fixture *f, int i)
{
	struct tdev *t = &f->t[i];

	assert_int_equal(pci_device_add(f->bus, &tdev_info, &tdev_ops, t,
					&t->pci), 0);
	for (int b = 0; b < 3; b++)
		f->ctx[i][b] = (struct bar_ctx){ t, b };
	assert_int_equal(pci_bar_add(t->pci, 0, PCI_BAR_MEM32, 0x2000, &bar_ops,
				     &f->ctx[i][0]), 0);
	assert_int_equal(pci_bar_add(t->pci, 2, PCI_BAR_MEM64, 0x4000, &bar_ops,
				     &f->ctx[i][1]), 0);
	assert_int_equal(pci_bar_add(t->pci, 4, PCI_BAR_IO, 32, &bar_ops,
				     &f->ctx[i][2]), 0);
}

static struct fixture *setup(int ndev)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->h = harness_new(16 << 20);
	assert_int_equal(pci_bus_create(&f->h->vm, &f->bus), 0);
	for (int i = 0; i < ndev; i++)
		add_tdev(f, i);
	return f;
}

static void teardown(struct fixture *f)
{
	harness_free(f->h);
	free(f);
}

static uint32_t cfg_addr(unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cf8_read(struct harness *h, unsigned slot, unsigned reg,
			 unsigned size)
{
	hx_outl(h, 0xcf8, cfg_addr(slot, 0, reg));
	switch (size) {
	case 1: return hx_inb(h, 0xcfc + (reg & 3));
	case 2: return hx_inw(h, 0xcfc + (reg & 3));
	default: return hx_inl(h, 0xcfc);
	}
}

static void cf8_write(struct harness *h, unsigned slot, unsigned reg,
		      unsigned size, uint32_t v)
{
	hx_outl(h, 0xcf8, cfg_addr(slot, 0, reg));
	switch (size) {
	case 1: hx_outb(h, 0xcfc + (reg & 3), (uint8_t)v); break;
	case 2: hx_outw(h, 0xcfc + (reg & 3), (uint16_t)v); break;
	default: hx_outl(h, 0xcfc, v);
	}
}

static uint32_t ecam_r(struct harness *h, unsigned slot, unsigned reg,
		       unsigned size)
{
	return (uint32_t)hx_mmio_read(h, ECAM(slot, 0, reg), size);
}

static void ecam_w(struct harness *h, unsigned slot, unsigned reg,
		   unsigned size, uint32_t v)
{
	hx_mmio_write(h, ECAM(slot, 0, reg), size, v);
}

static void test_host_bridge_header(void **state)
{
	struct fixture *f = setup(0);
	struct harness *h = f->h;

	assert_int_equal(cf8_read(h, 0, 0, 4), 0x00081b36);
	assert_int_equal(cf8_read(h, 0, 0x08, 4) >> 8, 0x060000);
	assert_int_equal(cf8_read(h, 0, 0x0e, 1), 0); /* type 0, single fn */
	assert_int_equal(ecam_r(h, 0, 0, 4), 0x00081b36);
	assert_int_equal(ecam_r(h, 0, 0x0a, 2), 0x0600);
	assert_int_equal(ecam_r(h, 0, PCI_INTERRUPT_PIN, 1), 0);
	/* CONFIG_ADDRESS reads back without reserved and low bits. */
	hx_outl(h, 0xcf8, 0xff00ff03);
	assert_int_equal(hx_inl(h, 0xcf8), 0x8000ff00);
	/* Enable bit clear: CONFIG_DATA reads all ones. */
	hx_outl(h, 0xcf8, 0x00000000);
	assert_int_equal(hx_inl(h, 0xcfc), 0xffffffff);
	teardown(f);
}

static void test_cf8_and_ecam_agree(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;

	for (unsigned reg = 0; reg < 0x40; reg += 4)
		assert_int_equal(cf8_read(h, 1, reg, 4), ecam_r(h, 1, reg, 4));
	assert_int_equal(cf8_read(h, 1, 0, 4), 0x56781234);
	assert_int_equal(cf8_read(h, 1, 0x02, 2), 0x5678);
	assert_int_equal(cf8_read(h, 1, 0x03, 1), 0x56);
	/* Word at 0xCFD: bytes 1-2 of the dword */
	hx_outl(h, 0xcf8, cfg_addr(1, 0, 0));
	assert_int_equal(hx_inw(h, 0xcfd), 0x7812);
	assert_int_equal(cf8_read(h, 1, 0x08, 4), 0xff000003);
	assert_int_equal(ecam_r(h, 1, 0x2c, 4), 0xef01abcd);
	assert_int_equal(ecam_r(h, 1, PCI_INTERRUPT_PIN, 1), 1);

	/* A write one way reads back the other way. */
	cf8_write(h, 1, PCI_INTERRUPT_LINE, 1, 0x0b);
	assert_int_equal(ecam_r(h, 1, PCI_INTERRUPT_LINE, 1), 0x0b);
	ecam_w(h, 1, PCI_INTERRUPT_LINE, 1, 0x0c);
	assert_int_equal(cf8_read(h, 1, PCI_INTERRUPT_LINE, 1), 0x0c);
	assert_true(f->t[0].cfg_writes >= 2);

	/* Extended space: reachable through ECAM only, reads 0 here, RO. */
	ecam_w(h, 1, 0x100, 4, 0x12345678);
	assert_int_equal(ecam_r(h, 1, 0x100, 4), 0);
	assert_int_equal(ecam_r(h, 1, 0xffc, 4), 0);
	/* Unaligned ECAM accesses read all ones and write nothing. */
	assert_int_equal(ecam_r(h, 1, 0x01, 2), 0xffff);
	assert_int_equal(ecam_r(h, 1, 0x02, 4), 0xffffffff);
	ecam_w(h, 1, 0x3b, 2, 0x4444);
	assert_int_equal(ecam_r(h, 1, PCI_INTERRUPT_LINE, 1), 0x0c);
	teardown(f);
}

static void test_absent_functions(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;

	/* Empty slot, other functions, other buses */
	assert_int_equal(cf8_read(h, 2, 0, 4), 0xffffffff);
	assert_int_equal(ecam_r(h, 31, 0, 4), 0xffffffff);
	assert_int_equal(hx_mmio_read(h, ECAM(1, 1, 0), 4), 0xffffffff);
	assert_int_equal(hx_mmio_read(h, ECAM(0, 7, 0), 2), 0xffff);
	hx_outl(h, 0xcf8, 0x80000000u | 1 << 11 | 3 << 8);
	assert_int_equal(hx_inl(h, 0xcfc), 0xffffffff);
	hx_outl(h, 0xcf8, 0x80000000u | 1 << 16 | 1 << 11);
	assert_int_equal(hx_inl(h, 0xcfc), 0xffffffff);
	/* Writes there go nowhere: function 0 unchanged. */
	hx_mmio_write(h, ECAM(1, 1, PCI_INTERRUPT_LINE), 1, 0x5a);
	assert_int_equal(ecam_r(h, 1, PCI_INTERRUPT_LINE, 1), 0);
	teardown(f);
}

static void test_read_only_bits(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;

	/* Identification, class, header type, pin, subsystem: read-only */
	ecam_w(h, 1, 0x00, 4, 0xffffffff);
	ecam_w(h, 1, 0x08, 4, 0xffffffff);
	ecam_w(h, 1, 0x2c, 4, 0);
	cf8_write(h, 1, PCI_INTERRUPT_PIN, 1, 4);
	cf8_write(h, 1, 0x0e, 1, 0x80);
	ecam_w(h, 1, 0x30, 4, 0xffffffff);  /* no expansion ROM */
	assert_int_equal(ecam_r(h, 1, 0x00, 4), 0x56781234);
	assert_int_equal(ecam_r(h, 1, 0x08, 4), 0xff000003);
	assert_int_equal(ecam_r(h, 1, 0x2c, 4), 0xef01abcd);
	assert_int_equal(ecam_r(h, 1, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(ecam_r(h, 1, 0x0e, 1), 0);
	assert_int_equal(ecam_r(h, 1, 0x30, 4), 0);
	/* COMMAND: reserved bits stay 0; STATUS: read-only/RW1C */
	ecam_w(h, 1, PCI_COMMAND, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, PCI_COMMAND, 2), 0x0547);
	assert_int_equal(ecam_r(h, 1, PCI_STATUS, 2), 0);
	/* Capability pointer is read-only. */
	ecam_w(h, 1, PCI_CAPABILITY_LIST, 1, 0x40);
	assert_int_equal(ecam_r(h, 1, PCI_CAPABILITY_LIST, 1), 0);
	teardown(f);
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;
	uint32_t bar0 = ecam_r(h, 1, 0x10, 4), bar2 = ecam_r(h, 1, 0x18, 4);
	uint32_t bar3 = ecam_r(h, 1, 0x1c, 4), bar4 = ecam_r(h, 1, 0x20, 4);

	/* Assigned like firmware: in the windows, naturally aligned. */
	assert_int_equal(bar0 & 0xf, 0);
	assert_true(bar0 >= PC_PCI_MMIO_BASE && !(bar0 & 0x1fff));
	assert_int_equal(bar2 & 0xf, 0x4);  /* 64-bit, non-prefetchable */
	assert_true((bar2 & ~0xfu) >= PC_PCI_MMIO_BASE && !(bar2 & 0x3ff0));
	assert_int_equal(bar3, 0);
	assert_int_equal(bar4 & 3, 1);
	assert_true((bar4 & ~3u) >= PC_PCI_IO_BASE && !(bar4 & 0x1c));
	assert_int_equal(ecam_r(h, 1, 0x14, 4), 0);  /* unused BAR 1 */

	/* Size them: all ones, read the mask, restore. */
	ecam_w(h, 1, 0x10, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, 0x10, 4), 0xffffe000);
	ecam_w(h, 1, 0x18, 4, 0xffffffff);
	ecam_w(h, 1, 0x1c, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, 0x18, 4), 0xffffc004);
	assert_int_equal(ecam_r(h, 1, 0x1c, 4), 0xffffffff);
	ecam_w(h, 1, 0x20, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, 0x20, 4), 0x0000ffe1);
	ecam_w(h, 1, 0x14, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, 0x14, 4), 0);
	/* A memory BAR being sized decodes nothing even with decoding on (a
	 * 64-bit one must not wrap around to 0 either); an I/O BAR sits at
	 * the top of port space then, as on hardware. */
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	assert_int_equal(f->t[0].pci->bars[0].addr, 0);
	assert_int_equal(f->t[0].pci->bars[2].addr, 0);
	assert_int_equal(f->t[0].pci->bars[4].addr, 0xffe0);
	ecam_w(h, 1, 0x10, 4, bar0);
	ecam_w(h, 1, 0x18, 4, bar2);
	ecam_w(h, 1, 0x1c, 4, bar3);
	ecam_w(h, 1, 0x20, 4, bar4);
	assert_int_equal(ecam_r(h, 1, 0x10, 4), bar0);
	assert_int_equal(f->t[0].pci->bars[0].addr, bar0);
	assert_int_equal(f->t[0].pci->bars[2].addr, bar2 & ~0xfu);
	assert_int_equal(f->t[0].pci->bars[4].addr, bar4 & ~3u);

	/* Invalid registrations */
	assert_int_equal(pci_bar_add(f->t[0].pci, 3, PCI_BAR_MEM32, 4096,
				     &bar_ops, NULL), -EINVAL); /* upper half */
	assert_int_equal(pci_bar_add(f->t[0].pci, 1, PCI_BAR_MEM32, 4097,
				     &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_bar_add(f->t[0].pci, 1, PCI_BAR_MEM32, 2048,
				     &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_bar_add(f->t[0].pci, 5, PCI_BAR_MEM64, 4096,
				     &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_bar_add(f->t[0].pci, 1, PCI_BAR_IO, 512,
				     &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_bar_add(f->t[0].pci, 1, PCI_BAR_MEM32,
				     PC_PCI_MMIO_SIZE, &bar_ops, NULL), -ENOSPC);
	teardown(f);
}

static void test_bar_decoding(void **state)
{
	struct fixture *f = setup(2);
	struct harness *h = f->h;
	struct tdev *t = &f->t[0];
	uint32_t bar0 = ecam_r(h, 1, 0x10, 4);
	uint32_t bar2 = ecam_r(h, 1, 0x18, 4) & ~0xfu;
	uint16_t io = ecam_r(h, 1, 0x20, 4) & ~3u;
	uint32_t other = ecam_r(h, 2, 0x10, 4);
	uint32_t moved = PC_PCI_MMIO_BASE + 0x10000000;

	assert_int_not_equal(bar0, other);
	/* Decoding off at power-on. */
	hx_mmio_write(h, bar0 + 8, 4, 0x11111111);
	assert_int_equal(hx_mmio_read(h, bar0 + 8, 4), 0xffffffff);
	assert_int_equal(t->regs[0][8], 0);
	assert_int_equal(hx_inb(h, io), 0xff);

	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(t->moves[0], 1);
	assert_int_equal(t->moved_to[0], bar0);
	assert_int_equal(t->moves[4], 0);   /* I/O still off */
	hx_mmio_write(h, bar0 + 8, 4, 0x11111111);
	assert_int_equal(hx_mmio_read(h, bar0 + 8, 4), 0x11111111);
	hx_mmio_write(h, bar2 + 0x10, 8, 0x2222222233333333ull);
	assert_int_equal(hx_mmio_read(h, bar2 + 0x10, 8), 0x2222222233333333ull);
	assert_int_equal(f->t[0].regs[1][0x10], 0x33);
	/* The other device is not enabled, and the first does not see its
	 * range. */
	assert_int_equal(hx_mmio_read(h, other + 8, 4), 0xffffffff);
	/* Past the end of a BAR: nothing there. */
	assert_int_equal(hx_mmio_read(h, bar0 + 0x2000, 4), 0xffffffff);
	assert_int_equal(hx_mmio_read(h, bar0 + 0x1ffe, 4), 0xffffffff);

	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	hx_outw(h, io + 2, 0xbeef);
	assert_int_equal(hx_inw(h, io + 2), 0xbeef);
	assert_int_equal(t->moved_to[4], io);

	/* Move BAR 0: the old address stops decoding, the new one starts. */
	ecam_w(h, 1, 0x10, 4, moved);
	assert_int_equal(t->moves[0], 2);
	assert_int_equal(t->moved_to[0], moved);
	assert_int_equal(hx_mmio_read(h, bar0 + 8, 4), 0xffffffff);
	assert_int_equal(hx_mmio_read(h, moved + 8, 4), 0x11111111);
	/* Outside the window we own: decodes nothing. */
	ecam_w(h, 1, 0x10, 4, 0x80000000);
	assert_int_equal(t->moved_to[0], 0);
	assert_int_equal(hx_mmio_read(h, moved + 8, 4), 0xffffffff);
	ecam_w(h, 1, 0x10, 4, moved);

	/* COMMAND.MEMORY off: every memory BAR stops, I/O keeps going. */
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	assert_int_equal(t->moved_to[0], 0);
	assert_int_equal(t->moved_to[2], 0);
	assert_int_equal(hx_mmio_read(h, moved + 8, 4), 0xffffffff);
	assert_int_equal(hx_mmio_read(h, bar2 + 0x10, 4), 0xffffffff);
	assert_int_equal(hx_inw(h, io + 2), 0xbeef);
	ecam_w(h, 1, PCI_COMMAND, 2, 0);
	assert_int_equal(hx_inw(h, io + 2), 0xffff);

	/* 64-bit BAR: an upper half that is not 0 leaves the window. */
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ecam_w(h, 1, 0x1c, 4, 1);
	assert_int_equal(hx_mmio_read(h, bar2 + 0x10, 4), 0xffffffff);
	ecam_w(h, 1, 0x1c, 4, 0);
	assert_int_equal(hx_mmio_read(h, bar2 + 0x10, 4), 0x33333333);

	/* Reset: assigned addresses come back, decoding off. */
	ecam_w(h, 1, 0x10, 4, moved);
	vm_reset_devices(&h->vm);
	assert_int_equal(ecam_r(h, 1, 0x10, 4), bar0);
	assert_int_equal(ecam_r(h, 1, PCI_COMMAND, 2), 0);
	assert_int_equal(t->moved_to[0], 0);
	assert_int_equal(hx_mmio_read(h, bar0 + 8, 4), 0xffffffff);
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(hx_mmio_read(h, bar0 + 8, 4), 0x11111111);
	teardown(f);
}

static void test_capabilities(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;
	uint8_t body1[6] = { 1, 2, 3, 4, 5, 6 }, body2[13] = { 9 }, off1, off2;
	uint8_t big[200] = { 0 };
	unsigned p, n = 0;

	assert_int_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	assert_int_equal(pci_cap_add(f->t[0].pci, PCI_CAP_ID_VNDR, body1,
				     sizeof(body1), &off1), 0);
	assert_int_equal(pci_cap_add(f->t[0].pci, PCI_CAP_ID_MSIX, body2,
				     sizeof(body2), &off2), 0);
	assert_int_equal(off1, 0x40);
	assert_true(off2 >= off1 + 8 && !(off2 & 3));
	assert_int_equal(pci_cap_add(f->t[0].pci, 0x05, big, sizeof(big), NULL),
			 -ENOSPC);
	{
		/* Filling up to 0x100 exactly, then nothing more fits. */
		struct fixture *g = setup(1);
		uint8_t o;
		size_t fill = 0x100 - 0x40 - 2;

		assert_int_equal(pci_cap_add(g->t[0].pci, 0x09, big, fill, &o), 0);
		assert_int_equal(o, 0x40);
		assert_int_equal(pci_cap_add(g->t[0].pci, 0x09, big, 0, NULL),
				 -ENOSPC);
		assert_int_equal(ecam_r(g->h, 1, 0, 4), 0x56781234);
		teardown(g);
	}
	assert_int_not_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);

	/* Walk the list as an OS does. */
	for (p = cf8_read(h, 1, PCI_CAPABILITY_LIST, 1); p; p = cf8_read(h, 1, p + 1, 1)) {
		assert_true(p >= 0x40 && !(p & 3));
		n++;
		if (n == 1) {
			assert_int_equal(cf8_read(h, 1, p, 1), PCI_CAP_ID_VNDR);
			assert_int_equal(cf8_read(h, 1, p + 2, 2), 0x0201);
			assert_int_equal(cf8_read(h, 1, p + 4, 4), 0x06050403);
		} else {
			assert_int_equal(cf8_read(h, 1, p, 1), PCI_CAP_ID_MSIX);
			assert_int_equal(cf8_read(h, 1, p + 2, 1), 9);
		}
		assert_true(n <= 2);
	}
	assert_int_equal(n, 2);
	/* Bodies are read-only unless the device says otherwise. */
	ecam_w(h, 1, off1, 4, 0xffffffff);
	assert_int_equal(ecam_r(h, 1, off1, 4), 0x02010009 | (unsigned)off2 << 8);
	teardown(f);
}

static void test_intx(void **state)
{
	struct fixture *f = setup(0);
	struct harness *h = f->h;
	struct pci_device *devs[9];
	unsigned gsi;

	/* Slot s pin A: GSI 16 + s % 8; slots 1 and 9 share one line. */
	for (int i = 0; i < 9; i++) {
		static struct tdev t[9];

		assert_int_equal(pci_device_add(f->bus, &tdev_info, &tdev_ops,
						&t[i], &devs[i]), 0);
		assert_int_equal(devs[i]->slot, i + 1);
	}
	gsi = pci_intx_gsi(devs[0]);
	assert_int_equal(gsi, 17);
	assert_int_equal(pci_intx_gsi(devs[8]), 17);
	assert_int_equal(pci_intx_gsi(devs[1]), 18);

	pci_set_irq(devs[0], true);
	assert_true(hx_irq_level(h, 17));
	assert_int_not_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	assert_int_equal(ecam_r(h, 9, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	pci_set_irq(devs[8], true);
	pci_set_irq(devs[0], false);
	assert_true(hx_irq_level(h, 17));   /* slot 9 still holds it */
	assert_int_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	pci_set_irq(devs[8], false);
	assert_false(hx_irq_level(h, 17));
	assert_false(hx_irq_level(h, 18));

	/* INTX_DISABLE hides the line but not STATUS.INTERRUPT. */
	pci_set_irq(devs[0], true);
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	assert_false(hx_irq_level(h, 17));
	assert_int_not_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	pci_set_irq(devs[0], true);
	assert_false(hx_irq_level(h, 17));
	ecam_w(h, 1, PCI_COMMAND, 2, 0);
	assert_true(hx_irq_level(h, 17));
	/* Disabled on one device, the other still drives the shared line. */
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE);
	pci_set_irq(devs[8], true);
	assert_true(hx_irq_level(h, 17));
	pci_set_irq(devs[8], false);
	assert_false(hx_irq_level(h, 17));
	/* STATUS.INTERRUPT cannot be written. */
	ecam_w(h, 1, PCI_STATUS, 2, 0xffff);
	assert_int_not_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	/* Reset lowers the device's line. */
	ecam_w(h, 1, PCI_COMMAND, 2, 0);
	assert_true(hx_irq_level(h, 17));
	vm_reset_devices(&h->vm);
	assert_false(hx_irq_level(h, 17));
	assert_int_equal(ecam_r(h, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	teardown(f);
}

static void test_slots_run_out(void **state)
{
	struct fixture *f = setup(0);
	static struct tdev t[PCI_SLOTS];
	struct pci_device *d;
	struct pci_device_info bad = tdev_info;

	for (int i = 1; i < PCI_SLOTS; i++)
		assert_int_equal(pci_device_add(f->bus, &tdev_info, &tdev_ops,
						&t[i], &d), 0);
	assert_int_equal(d->slot, 31);
	assert_int_equal(pci_device_add(f->bus, &tdev_info, &tdev_ops, &t[0],
					&d), -ENOSPC);
	bad.irq_pin = 5;
	assert_int_equal(pci_device_add(f->bus, &bad, NULL, NULL, &d), -EINVAL);
	assert_int_equal(ecam_r(f->h, 31, 0, 4), 0x56781234);
	teardown(f);
}

static void test_cf9_reset_through_bridge(void **state)
{
	struct fixture *f = setup(1);
	struct harness *h = f->h;

	/* Byte accesses at 0xCF9 are RST_CNT, the dword at 0xCF8 is
	 * CONFIG_ADDRESS: neither disturbs the other. */
	hx_outl(h, 0xcf8, cfg_addr(1, 0, 0));
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0);
	hx_outb(h, PC_RESET_PORT, 0x02);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0x02);
	assert_int_equal(hx_inl(h, 0xcf8), cfg_addr(1, 0, 0));
	assert_int_equal(hx_inl(h, 0xcfc), 0x56781234);
	assert_false(vm_stopping(&h->vm));
	/* Other sub-dword accesses to CONFIG_ADDRESS are ignored. */
	hx_outb(h, 0xcf8, 0x00);
	hx_outw(h, 0xcfa, 0x0000);
	hx_outb(h, 0xcfb, 0x01);
	assert_int_equal(hx_inl(h, 0xcf8), cfg_addr(1, 0, 0));
	assert_int_equal(hx_inw(h, 0xcf8), 0xffff);
	hx_outb(h, PC_RESET_PORT, 0x06);
	assert_true(vm_stopping(&h->vm));
	assert_int_equal(h->vm.stop_reason, VM_STOP_RESET);
	vm_reset_devices(&h->vm);
	assert_int_equal(hx_inb(h, PC_RESET_PORT), 0);
	assert_int_equal(hx_inl(h, 0xcf8), 0);
	teardown(f);
}

static void test_save_load(void **state)
{
	struct fixture *f = setup(1), *g = setup(1);
	struct harness *h = f->h;
	struct state_buf b = { 0 }, b2 = { 0 };
	uint32_t moved = PC_PCI_MMIO_BASE + 0x08000000;

	ecam_w(h, 1, 0x10, 4, moved);
	ecam_w(h, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	ecam_w(h, 1, PCI_INTERRUPT_LINE, 1, 11);
	pci_set_irq(f->t[0].pci, true);
	hx_outl(h, 0xcf8, cfg_addr(1, 0, 0x3c));
	assert_int_equal(hx_save(h, "pci", &b), 0);

	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), 0);
	assert_int_equal(ecam_r(g->h, 1, 0x10, 4), moved);
	assert_int_equal(g->t[0].moved_to[0], moved);
	assert_int_equal(g->t[0].pci->bars[0].addr, moved);
	assert_int_equal(hx_inl(g->h, 0xcf8), cfg_addr(1, 0, 0x3c));
	assert_int_equal(hx_inb(g->h, 0xcfc), 11);
	assert_true(hx_irq_level(g->h, 17));
	g->t[0].regs[0][0] = 0x77;
	assert_int_equal(hx_mmio_read(g->h, moved, 1), 0x77);
	assert_int_equal(hx_save(g->h, "pci", &b2), 0);
	assert_int_equal(b.len, b2.len);
	assert_memory_equal(b.data, b2.data, b.len);

	/* Hostile streams: truncated, wrong version, a read-only bit
	 * changed (vendor ID), a bad intx byte. */
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len - 1), -EINVAL);
	assert_int_equal(hx_load(g->h, "pci", b.data, 3), -EINVAL);
	b.data[0] ^= 0xff;
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), -EINVAL);
	b.data[0] ^= 0xff;
	b.data[6 + 4097] ^= 1;   /* device 1's vendor ID */
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), -EINVAL);
	b.data[6 + 4097] ^= 1;
	b.data[6 + 4097 + 4096] = 2;  /* device 1's intx level */
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), -EINVAL);
	/* Refused loads changed nothing. */
	assert_int_equal(ecam_r(g->h, 1, 0, 4), 0x56781234);
	assert_int_equal(g->t[0].pci->bars[0].addr, moved);

	state_buf_free(&b);
	state_buf_free(&b2);
	teardown(f);
	teardown(g);
}

/* vCPU threads: one moves BAR 0 and flips decoding through both config
 * mechanisms, one reads and writes through the window and drives INTx,
 * one does config reads.  Nothing may deadlock, crash or hit the wrong
 * place: an access either reaches the register file or reads all ones. */
struct race {
	struct fixture *f;
	uint32_t a, b;
	_Atomic int stop;
	unsigned bad;
};

static void *race_mover(void *opaque)
{
	struct race *r = opaque;
	struct harness *h = r->f->h;

	for (int i = 0; i < 3000; i++) {
		ecam_w(h, 1, 0x10, 4, i & 1 ? r->a : r->b);
		if (i % 3 == 0)
			cf8_write(h, 1, PCI_COMMAND, 2, i & 4 ? 0 : PCI_COMMAND_MEMORY);
	}
	r->stop = 1;
	return NULL;
}

static void *race_user(void *opaque)
{
	struct race *r = opaque;
	struct harness *h = r->f->h;
	unsigned i = 0;

	while (!r->stop) {
		uint32_t v = (uint32_t)hx_mmio_read(h, (i & 1 ? r->a : r->b) + 16, 4);

		if (v != 0xffffffff && v != 0xa5a5a5a5)
			r->bad++;
		pci_set_irq(r->f->t[0].pci, i & 1);
		hx_mmio_write(h, r->a + 16, 4, 0xa5a5a5a5);
		i++;
	}
	return NULL;
}

static void *race_reader(void *opaque)
{
	struct race *r = opaque;

	while (!r->stop)
		if (cf8_read(r->f->h, 1, 0, 4) != 0x56781234)
			r->bad++;
	return NULL;
}

static void test_concurrent_access(void **state)
{
	struct fixture *f = setup(1);
	struct race r = { .f = f };
	pthread_t t[3];

	r.a = ecam_r(f->h, 1, 0x10, 4);
	r.b = r.a + 0x100000;
	memset(f->t[0].regs[0], 0xa5, sizeof(f->t[0].regs[0]));
	assert_int_equal(pthread_create(&t[0], NULL, race_mover, &r), 0);
	assert_int_equal(pthread_create(&t[1], NULL, race_user, &r), 0);
	/* The reader uses CONFIG_ADDRESS too: a guest serializes that pair,
	 * so here only ECAM-based checks run alongside the mover. */
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	r.stop = 0;
	assert_int_equal(pthread_create(&t[2], NULL, race_reader, &r), 0);
	assert_int_equal(pthread_create(&t[1], NULL, race_user, &r), 0);
	for (int i = 0; i < 1000; i++)
		pci_set_irq(f->t[0].pci, i & 1);
	r.stop = 1;
	pthread_join(t[2], NULL);
	pthread_join(t[1], NULL);
	assert_int_equal(r.bad, 0);
	/* The last level won, on the line and in STATUS. */
	pci_set_irq(f->t[0].pci, true);
	assert_true(hx_irq_level(f->h, 17));
	pci_set_irq(f->t[0].pci, false);
	assert_false(hx_irq_level(f->h, 17));
	teardown(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_bridge_header),
		cmocka_unit_test(test_cf8_and_ecam_agree),
		cmocka_unit_test(test_absent_functions),
		cmocka_unit_test(test_read_only_bits),
		cmocka_unit_test(test_bar_sizing),
		cmocka_unit_test(test_bar_decoding),
		cmocka_unit_test(test_capabilities),
		cmocka_unit_test(test_intx),
		cmocka_unit_test(test_slots_run_out),
		cmocka_unit_test(test_cf9_reset_through_bridge),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_concurrent_access),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
