/*
 * test_virtio_pci.c - the modern virtio-pci transport, driven the way a
 * guest driver does it: find the function and its capabilities through
 * configuration space, negotiate features, lay out a split virtqueue in
 * guest RAM, ring the doorbell, and watch the used ring and the interrupts
 * (MSI-X, and INTx with the ISR when MSI-X is off).
 *
 * The device behind it is a tiny "echo" type: for every chain it copies
 * the readable bytes, prefixed with "echo:", into the writable part and
 * returns it.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/memory.h"
#include "harness.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "virtio/pci.h"
#include "virtio/virtio.h"

#define ECHO_ID     30     /* not a real virtio type: class "other" */
#define QSIZE_MAX   16
#define SLOT        1
#define ECAM(reg)   (PC_PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + (reg))
#define RAM         (16 << 20)

/* Guest RAM layout used by the driver side */
#define DESC_GPA    0x10000
#define AVAIL_GPA   0x11000
#define USED_GPA    0x12000
#define OUT_GPA     0x20000
#define IN_GPA      0x21000

/* ---- the echo device ---- */

struct echo {
	struct virtio_dev vd;
	struct virtq_elem elem;
	uint32_t cfg[2];        /* config: a read-only magic, a RW word */
	unsigned notifies;
};

static void echo_notify(struct virtio_dev *vd, unsigned q)
{
	struct echo *e = vd->opaque;
	uint8_t buf[256];

	e->notifies++;
	while (virtq_pop(&vd->vqs[q], &e->elem) == 1) {
		size_t n = virtq_elem_read(&e->elem, 0, buf + 5,
					   sizeof(buf) - 5);
		size_t w;

		memcpy(buf, "echo:", 5);
		w = virtq_elem_write(&e->elem, 0, buf, n + 5);
		virtq_push(&vd->vqs[q], &e->elem, (uint32_t)w);
	}
	virtio_queue_interrupt(vd, q);
}

static void echo_config_read(struct virtio_dev *vd, uint32_t off, void *buf,
			     uint32_t len)
{
	struct echo *e = vd->opaque;

	memcpy(buf, (uint8_t *)e->cfg + off, len);
}

static void echo_config_write(struct virtio_dev *vd, uint32_t off,
			      const void *buf, uint32_t len)
{
	struct echo *e = vd->opaque;

	if (off >= 4)
		memcpy((uint8_t *)e->cfg + off, buf, len);
}

static void echo_destroy(struct virtio_dev *vd)
{
	free(vd->opaque);
}

static const struct virtio_dev_ops echo_ops = {
	.name = "virtio-echo",
	.device_id = ECHO_ID,
	.config_read = echo_config_read,
	.config_write = echo_config_write,
	.queue_notify = echo_notify,
	.destroy = echo_destroy,
};

/* ---- a fake accelerator with ioeventfds ---- */

struct fake_iofd {
	unsigned assigned, deassigned;
	uint64_t last_addr;
	int last_fd;
	unsigned nr_live;
};

static int fake_assign(void *opaque, bool pio, uint64_t addr, unsigned len,
		       int fd, bool assign)
{
	struct fake_iofd *f = opaque;

	assert_false(pio);
	assert_int_equal(len, 4);
	if (assign) {
		f->assigned++;
		f->nr_live++;
	} else {
		f->deassigned++;
		f->nr_live--;
	}
	f->last_addr = addr;
	f->last_fd = fd;
	return 0;
}

static const struct vm_ioeventfd_ops fake_iofd_ops = { .assign = fake_assign };

/* ---- the driver side ---- */

struct drv {
	struct harness *h;
	struct pci_bus *bus;
	struct echo *e;
	struct virtio_pci *vp;
	uint64_t bar4;
	uint32_t common, notify, isr, device, notify_mult;
	uint8_t msix_cap, pci_cfg_cap;
	uint64_t msix_table;
	uint16_t used_seen;
	uint16_t qsize;
};

static uint32_t cfg_r(struct drv *d, unsigned reg, unsigned size)
{
	return (uint32_t)hx_mmio_read(d->h, ECAM(reg), size);
}

static void cfg_w(struct drv *d, unsigned reg, unsigned size, uint32_t v)
{
	hx_mmio_write(d->h, ECAM(reg), size, v);
}

static uint64_t cc_r(struct drv *d, unsigned off, unsigned size)
{
	return hx_mmio_read(d->h, d->bar4 + d->common + off, size);
}

static void cc_w(struct drv *d, unsigned off, unsigned size, uint64_t v)
{
	hx_mmio_write(d->h, d->bar4 + d->common + off, size, v);
}

static struct drv *setup_iofd(struct fake_iofd *iofd)
{
	struct drv *d = calloc(1, sizeof(*d));
	struct echo *e = calloc(1, sizeof(*e));

	d->h = harness_new(RAM);
	if (iofd) {
		d->h->vm.ioeventfd = &fake_iofd_ops;
		d->h->vm.ioeventfd_opaque = iofd;
	}
	assert_int_equal(pci_bus_create(&d->h->vm, &d->bus), 0);
	e->cfg[0] = 0x12345678;
	assert_int_equal(virtio_dev_init(&e->vd, &d->h->vm, &d->h->loop,
					 &echo_ops, e, 1, QSIZE_MAX, 0, 8), 0);
	assert_int_equal(virtio_pci_create(d->bus, &e->vd, &d->vp), 0);
	d->e = e;
	/* A second transport for the same device is refused. */
	assert_int_equal(virtio_pci_create(d->bus, &e->vd, NULL), -EINVAL);
	return d;
}

static struct drv *setup(void) { return setup_iofd(NULL); }

static void teardown(struct drv *d)
{
	harness_free(d->h);
	free(d);
}

/* What a driver does first: identify, walk the capabilities, enable the
 * function. */
static void probe(struct drv *d)
{
	uint8_t seen = 0;

	assert_int_equal(cfg_r(d, 0, 2), 0x1af4);
	assert_int_equal(cfg_r(d, 2, 2), 0x1040 + ECHO_ID);
	assert_int_equal(cfg_r(d, 0x08, 1), 1);              /* revision */
	assert_int_equal(cfg_r(d, 0x08, 4) >> 8, 0xff0000); /* class */
	assert_int_equal(cfg_r(d, 0x2c, 2), 0x1af4);
	assert_int_equal(cfg_r(d, 0x2e, 2), ECHO_ID);
	assert_int_equal(cfg_r(d, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_not_equal(cfg_r(d, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	for (unsigned p = cfg_r(d, PCI_CAPABILITY_LIST, 1); p;
	     p = cfg_r(d, p + 1, 1)) {
		unsigned id = cfg_r(d, p, 1);

		if (id == PCI_CAP_ID_MSIX) {
			d->msix_cap = (uint8_t)p;
			continue;
		}
		assert_int_equal(id, PCI_CAP_ID_VNDR);
		unsigned type = cfg_r(d, p + 3, 1), bar = cfg_r(d, p + 4, 1);
		uint32_t off = cfg_r(d, p + 8, 4), len = cfg_r(d, p + 12, 4);

		seen |= 1u << type;
		if (type != VIRTIO_PCI_CAP_PCI_CFG)
			assert_int_equal(bar, 4);
		switch (type) {
		case VIRTIO_PCI_CAP_COMMON_CFG:
			assert_int_equal(cfg_r(d, p + 2, 1), 16);
			assert_true(len >= 0x38);
			d->common = off;
			break;
		case VIRTIO_PCI_CAP_NOTIFY_CFG:
			assert_int_equal(cfg_r(d, p + 2, 1), 20);
			d->notify = off;
			d->notify_mult = cfg_r(d, p + 16, 4);
			break;
		case VIRTIO_PCI_CAP_ISR_CFG:
			d->isr = off;
			assert_true(len >= 1);
			break;
		case VIRTIO_PCI_CAP_DEVICE_CFG:
			d->device = off;
			assert_int_equal(len, 8);
			break;
		case VIRTIO_PCI_CAP_PCI_CFG:
			assert_int_equal(cfg_r(d, p + 2, 1), 20);
			d->pci_cfg_cap = (uint8_t)p;
			break;
		default:
			fail_msg("unknown virtio capability type %u", type);
		}
	}
	assert_int_equal(seen, 0x3e);
	assert_int_not_equal(d->msix_cap, 0);
	/* MSI-X: nr_queues + 1 vectors */
	assert_int_equal(cfg_r(d, d->msix_cap + 2, 2) & 0x7ff, 1);
	/* BAR 4: 64-bit memory */
	assert_int_equal(cfg_r(d, 0x20, 4) & 7, 4);
	d->bar4 = (cfg_r(d, 0x20, 4) & ~0xfull) | (uint64_t)cfg_r(d, 0x24, 4) << 32;
	d->msix_table = cfg_r(d, 0x14, 4) & ~0xfu;
	cfg_w(d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void set_status(struct drv *d, uint8_t s)
{
	cc_w(d, 0x14, 1, s);
}

/* 3.1.1 steps 1-8 with queue 0 of `size` entries. */
static void handshake(struct drv *d, uint16_t size, uint16_t vector)
{
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	set_status(d, 0);
	assert_int_equal(cc_r(d, 0x14, 1), 0);
	set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
	set_status(d, s);
	cc_w(d, 0x00, 4, 1);
	assert_int_equal(cc_r(d, 0x04, 4) & 1, 1); /* VERSION_1 (bit 32) */
	cc_w(d, 0x08, 4, 1);
	cc_w(d, 0x0c, 4, 1);
	cc_w(d, 0x08, 4, 0);
	cc_w(d, 0x0c, 4, 0);
	set_status(d, s |= VIRTIO_STATUS_FEATURES_OK);
	assert_int_equal(cc_r(d, 0x14, 1), s);
	assert_int_equal(cc_r(d, 0x12, 2), 1);     /* num_queues */
	cc_w(d, 0x16, 2, 0);
	assert_int_equal(cc_r(d, 0x18, 2), QSIZE_MAX);
	cc_w(d, 0x18, 2, size);
	cc_w(d, 0x1a, 2, vector);
	cc_w(d, 0x20, 4, DESC_GPA);
	cc_w(d, 0x24, 4, 0);
	cc_w(d, 0x28, 8, AVAIL_GPA);
	cc_w(d, 0x30, 4, USED_GPA);
	cc_w(d, 0x34, 4, 0);
	cc_w(d, 0x1c, 2, 1);
	assert_int_equal(cc_r(d, 0x1c, 2), 1);
	set_status(d, s |= VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(cc_r(d, 0x14, 1), s);
	d->used_seen = 0;
	d->qsize = size;
	memset(gm_ptr(&d->h->vm.mem, USED_GPA, 4), 0, 4);
	memset(gm_ptr(&d->h->vm.mem, AVAIL_GPA, 4), 0, 4);
}

static uint16_t rd16g(struct drv *d, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(gm_read(&d->h->vm.mem, gpa, &v, 2), 0);
	return v;
}

static void wr16g(struct drv *d, uint64_t gpa, uint16_t v)
{
	assert_int_equal(gm_write(&d->h->vm.mem, gpa, &v, 2), 0);
}

/* Post one request {out "msg"} {in 64 bytes}, kick, serve; returns what
 * the device wrote. */
static uint32_t request(struct drv *d, const char *msg, char *reply)
{
	struct virtq_desc desc[2] = {
		{ OUT_GPA, (uint32_t)strlen(msg), VIRTQ_DESC_F_NEXT, 1 },
		{ IN_GPA, 64, VIRTQ_DESC_F_WRITE, 0 },
	};
	uint16_t idx = rd16g(d, AVAIL_GPA + 2);
	uint32_t used[2];

	assert_int_equal(gm_write(&d->h->vm.mem, DESC_GPA, desc, sizeof(desc)), 0);
	assert_int_equal(gm_write(&d->h->vm.mem, OUT_GPA, msg, strlen(msg)), 0);
	wr16g(d, AVAIL_GPA + 4 + 2 * (idx % d->qsize), 0);
	wr16g(d, AVAIL_GPA + 2, (uint16_t)(idx + 1));
	/* notify: queue 0's queue_notify_off is read from common config */
	cc_w(d, 0x16, 2, 0);
	hx_mmio_write(d->h, d->bar4 + d->notify +
		      cc_r(d, 0x1e, 2) * d->notify_mult, 2, 0);
	assert_true(hx_run_io(d->h, 1000) > 0);
	assert_int_equal(rd16g(d, USED_GPA + 2), (uint16_t)(d->used_seen + 1));
	assert_int_equal(gm_read(&d->h->vm.mem,
				 USED_GPA + 4 + 8 * (d->used_seen % d->qsize), used, 8), 0);
	d->used_seen++;
	assert_int_equal(used[0], 0);
	assert_int_equal(gm_read(&d->h->vm.mem, IN_GPA, reply, used[1]), 0);
	reply[used[1]] = 0;
	return used[1];
}

/* MSIs delivered, the harness playing the kernel for irqfds. */
static unsigned msis(struct drv *d)
{
	hx_irqfd_inject(d->h);
	return d->h->nr_msi;
}

static bool with_irqfd = true;

/* Runs twice: MSIs sent by irq_send_msi(), then through irqfds on MSI
 * routes (as under KVM), every message then coming from an eventfd. */
static void test_handshake_msix(void **state)
{
	struct drv *d = setup();
	char reply[80];

	/* cmocka's state: with_irqfd for the run through irqfds. */
	if (*state)
		hx_irqfd_enable(d->h);

	probe(d);
	handshake(d, 4, 0);
	/* MSI-X on, vector 0 programmed and unmasked. */
	cfg_w(d, d->msix_cap + 2, 2, 0x8000);
	hx_mmio_write(d->h, d->msix_table, 4, 0xfee00000);
	hx_mmio_write(d->h, d->msix_table + 8, 4, 0x4061);
	hx_mmio_write(d->h, d->msix_table + 12, 4, 0);
	assert_int_equal(request(d, "hello", reply), 10);
	assert_string_equal(reply, "echo:hello");
	assert_int_equal(msis(d), 1);
	assert_int_equal(d->h->msi[0].addr, 0xfee00000);
	assert_int_equal(d->h->msi[0].data, 0x4061);
	assert_false(hx_irq_level(d->h, pci_intx_gsi(virtio_pci_device(d->vp))));
	/* Masked: pending, delivered on unmask. */
	hx_mmio_write(d->h, d->msix_table + 12, 4, 1);
	assert_int_equal(request(d, "again", reply), 10);
	assert_int_equal(msis(d), 1);
	hx_mmio_write(d->h, d->msix_table + 12, 4, 0);
	assert_int_equal(msis(d), 2);
	/* Device configuration through the device cap */
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->device, 4), 0x12345678);
	hx_mmio_write(d->h, d->bar4 + d->device, 4, 0);
	hx_mmio_write(d->h, d->bar4 + d->device + 4, 4, 0xcafe);
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->device, 4), 0x12345678);
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->device + 4, 2), 0xcafe);
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->device + 8, 4), 0);
	/* A config change goes to config_msix_vector: none set -> nothing. */
	pthread_mutex_lock(&d->e->vd.lock);
	virtio_config_changed(&d->e->vd);
	pthread_mutex_unlock(&d->e->vd.lock);
	assert_int_equal(msis(d), 2);
	assert_int_equal(cc_r(d, 0x15, 1), 1);   /* config_generation */
	cc_w(d, 0x10, 2, 1);
	assert_int_equal(cc_r(d, 0x10, 2), 1);
	hx_mmio_write(d->h, d->msix_table + 16, 4, 0xfee00000);
	hx_mmio_write(d->h, d->msix_table + 24, 4, 0x4062);
	hx_mmio_write(d->h, d->msix_table + 28, 4, 0);
	pthread_mutex_lock(&d->e->vd.lock);
	virtio_config_changed(&d->e->vd);
	pthread_mutex_unlock(&d->e->vd.lock);
	assert_int_equal(msis(d), 3);
	assert_int_equal(d->h->msi[2].data, 0x4062);
	if (*state) {
		assert_int_equal(d->h->nr_msi_irqfd, 3);
		assert_int_equal(hx_routes_used(d->h), 2);
	}
	teardown(d);
}

static void test_intx_fallback(void **state)
{
	struct drv *d = setup();
	unsigned gsi;
	char reply[80];

	probe(d);
	gsi = pci_intx_gsi(virtio_pci_device(d->vp));
	assert_int_equal(gsi, 17);
	handshake(d, 8, MSIX_NO_VECTOR);
	assert_int_equal(request(d, "x", reply), 6);
	assert_string_equal(reply, "echo:x");
	assert_int_equal(d->h->nr_msi, 0);
	assert_true(hx_irq_level(d->h, gsi));
	assert_int_not_equal(cfg_r(d, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT, 0);
	/* ISR: read to clear, deasserts INTx. */
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr, 1), 1);
	assert_false(hx_irq_level(d->h, gsi));
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr, 1), 0);
	/* Config change: ISR bit 1. */
	pthread_mutex_lock(&d->e->vd.lock);
	virtio_config_changed(&d->e->vd);
	pthread_mutex_unlock(&d->e->vd.lock);
	assert_true(hx_irq_level(d->h, gsi));
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr, 1), 2);
	assert_false(hx_irq_level(d->h, gsi));
	/* INTX_DISABLE masks the line, not the ISR. */
	cfg_w(d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
				 PCI_COMMAND_INTX_DISABLE);
	assert_int_equal(request(d, "y", reply), 6);
	assert_false(hx_irq_level(d->h, gsi));
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr, 1), 1);
	/* Device reset lowers the line. */
	cfg_w(d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_int_equal(request(d, "z", reply), 6);
	assert_true(hx_irq_level(d->h, gsi));
	set_status(d, 0);
	assert_false(hx_irq_level(d->h, gsi));
	assert_int_equal(cc_r(d, 0x1c, 2), 0);    /* queue disabled */
	assert_int_equal(cc_r(d, 0x18, 2), QSIZE_MAX);
	teardown(d);
}

static void test_vectors_and_selects(void **state)
{
	struct drv *d = setup();

	probe(d);
	set_status(d, 0);
	/* Vectors the function does not have read back NO_VECTOR. */
	cc_w(d, 0x10, 2, 2);     /* 2 vectors: 0 and 1 */
	assert_int_equal(cc_r(d, 0x10, 2), MSIX_NO_VECTOR);
	cc_w(d, 0x10, 2, 1);
	assert_int_equal(cc_r(d, 0x10, 2), 1);
	cc_w(d, 0x1a, 2, 99);
	assert_int_equal(cc_r(d, 0x1a, 2), MSIX_NO_VECTOR);
	cc_w(d, 0x1a, 2, 0);
	assert_int_equal(cc_r(d, 0x1a, 2), 0);
	/* Queue select out of range: size 0, writes dropped. */
	cc_w(d, 0x16, 2, 5);
	assert_int_equal(cc_r(d, 0x18, 2), 0);
	cc_w(d, 0x18, 2, 4);
	cc_w(d, 0x20, 8, 0x1000);
	cc_w(d, 0x1c, 2, 1);
	assert_int_equal(cc_r(d, 0x20, 8), 0);
	assert_int_equal(cc_r(d, 0x1a, 2), MSIX_NO_VECTOR);
	assert_int_equal(cc_r(d, 0x14, 1), 0);
	cc_w(d, 0x16, 2, 0);
	/* Read-only fields */
	cc_w(d, 0x04, 4, 0);
	cc_w(d, 0x12, 2, 7);
	cc_w(d, 0x15, 1, 9);
	cc_w(d, 0x1e, 2, 3);
	assert_int_equal(cc_r(d, 0x12, 2), 1);
	assert_int_equal(cc_r(d, 0x15, 1), 0);
	assert_int_equal(cc_r(d, 0x1e, 2), 0);
	cc_w(d, 0x00, 4, 1);
	assert_int_equal(cc_r(d, 0x04, 4) & 1, 1);
	/* Wrong widths and offsets read 0 and write nothing. */
	assert_int_equal(cc_r(d, 0x12, 4), 0);
	assert_int_equal(cc_r(d, 0x14, 2), 0);
	assert_int_equal(cc_r(d, 0x22, 4), 0);
	assert_int_equal(cc_r(d, 0x24, 8), 0);
	cc_w(d, 0x16, 1, 5);
	assert_int_equal(cc_r(d, 0x16, 2), 0);
	cc_w(d, 0x22, 4, 0xffff);
	cc_w(d, 0x20, 2, 0xffff);
	assert_int_equal(cc_r(d, 0x20, 8), 0);
	assert_int_equal(cc_r(d, 0x38, 4), 0);
	assert_int_equal(cc_r(d, 0xffc, 4), 0);
	/* 64-bit fields as dwords and qwords */
	cc_w(d, 0x28, 4, 0x11112222);
	cc_w(d, 0x2c, 4, 0x3);
	assert_int_equal(cc_r(d, 0x28, 8), 0x311112222ull);
	assert_int_equal(cc_r(d, 0x2c, 4), 3);
	/* Notify writes past the queues and odd offsets do nothing bad. */
	hx_mmio_write(d->h, d->bar4 + d->notify + 4, 2, 1);
	hx_mmio_write(d->h, d->bar4 + d->notify + 0x3ff, 1, 1);
	hx_mmio_write(d->h, d->bar4 + 0x3ffc, 4, 1);
	assert_int_equal(hx_run_io(d->h, 0), 0);
	/* ISR and gaps */
	hx_mmio_write(d->h, d->bar4 + d->isr, 1, 3);
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr, 1), 0);
	assert_int_equal(hx_mmio_read(d->h, d->bar4 + d->isr + 4, 4), 0);
	teardown(d);
}

static void test_hostile_queue_setup(void **state)
{
	struct drv *d = setup();
	char reply[80];

	probe(d);
	/* Queue size not a power of two: enabling it breaks the device. */
	set_status(d, 0);
	set_status(d, 3);
	cc_w(d, 0x08, 4, 1);
	cc_w(d, 0x0c, 4, 1);
	set_status(d, 11);
	cc_w(d, 0x18, 2, 3);
	cc_w(d, 0x20, 8, DESC_GPA);
	cc_w(d, 0x28, 8, AVAIL_GPA);
	cc_w(d, 0x30, 8, USED_GPA);
	cc_w(d, 0x1c, 2, 1);
	assert_int_equal(cc_r(d, 0x1c, 2), 0);
	assert_int_not_equal(cc_r(d, 0x14, 1) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	/* Rings in the MMIO hole */
	set_status(d, 0);
	assert_int_equal(cc_r(d, 0x14, 1), 0);
	set_status(d, 3);
	cc_w(d, 0x08, 4, 1);
	cc_w(d, 0x0c, 4, 1);
	set_status(d, 11);
	cc_w(d, 0x20, 8, PC_PCI_MMIO_BASE);
	cc_w(d, 0x28, 8, AVAIL_GPA);
	cc_w(d, 0x30, 8, USED_GPA);
	cc_w(d, 0x1c, 2, 1);
	assert_int_not_equal(cc_r(d, 0x14, 1) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	/* A proper setup works again after reset; addresses and size are
	 * frozen while enabled; queue_enable 0 is ignored. */
	handshake(d, 4, MSIX_NO_VECTOR);
	cc_w(d, 0x18, 2, 2);
	cc_w(d, 0x20, 8, 0x5000);
	cc_w(d, 0x1c, 2, 0);
	assert_int_equal(cc_r(d, 0x18, 2), 4);
	assert_int_equal(cc_r(d, 0x20, 8), DESC_GPA);
	assert_int_equal(cc_r(d, 0x1c, 2), 1);
	assert_int_equal(request(d, "ok", reply), 7);
	teardown(d);
}

static void test_pci_cfg_window(void **state)
{
	struct drv *d = setup();
	unsigned c;

	probe(d);
	c = d->pci_cfg_cap;
	/* Point the window at device_feature_select (4 bytes) and write it,
	 * then at device_feature and read. */
	cfg_w(d, c + 4, 1, 4);
	cfg_w(d, c + 8, 4, d->common + 0x00);
	cfg_w(d, c + 12, 4, 4);
	cfg_w(d, c + 16, 4, 1);
	assert_int_equal(cc_r(d, 0x00, 4), 1);
	cfg_w(d, c + 8, 4, d->common + 0x04);
	assert_int_equal(cfg_r(d, c + 16, 4) & 1, 1);
	/* Status byte through the window */
	cfg_w(d, c + 8, 4, d->common + 0x14);
	cfg_w(d, c + 12, 4, 1);
	cfg_w(d, c + 16, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(cc_r(d, 0x14, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	assert_int_equal(cfg_r(d, c + 16, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* Bad windows: another BAR, length 3, misaligned, past the BAR */
	cfg_w(d, c + 4, 1, 1);
	cfg_w(d, c + 16, 1, 0);
	assert_int_equal(cc_r(d, 0x14, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	cfg_w(d, c + 4, 1, 4);
	cfg_w(d, c + 12, 4, 3);
	cfg_w(d, c + 16, 1, 0);
	cfg_w(d, c + 8, 4, d->common + 0x15);
	cfg_w(d, c + 12, 4, 2);
	cfg_w(d, c + 16, 2, 0);
	cfg_w(d, c + 8, 4, VIRTIO_PCI_BAR_SIZE - 2);
	cfg_w(d, c + 12, 4, 4);
	cfg_w(d, c + 16, 4, 0);
	cfg_w(d, c + 8, 4, 0xfffffffc);
	cfg_w(d, c + 16, 4, 0);
	(void)cfg_r(d, c + 16, 4);
	assert_int_equal(cc_r(d, 0x14, 1), VIRTIO_STATUS_ACKNOWLEDGE);
	/* The cap header itself stays read-only. */
	cfg_w(d, c, 4, 0);
	assert_int_equal(cfg_r(d, c, 1), PCI_CAP_ID_VNDR);
	assert_int_equal(cfg_r(d, c + 3, 1), VIRTIO_PCI_CAP_PCI_CFG);
	teardown(d);
}

static void test_ioeventfd_follows_bar(void **state)
{
	struct fake_iofd iofd = { 0 };
	struct drv *d = setup_iofd(&iofd);
	uint64_t moved = PC_PCI_MMIO_BASE + 0x1000000;

	probe(d);   /* enables memory decoding */
	assert_int_equal(iofd.assigned, 1);
	assert_int_equal(iofd.nr_live, 1);
	assert_int_equal(iofd.last_addr, d->bar4 + d->notify);
	assert_int_equal(iofd.last_fd, d->e->vd.kick_fd[0]);
	/* Move BAR 4: old doorbell dropped, new one assigned. */
	cfg_w(d, 0x20, 4, (uint32_t)moved | 4);
	assert_int_equal(iofd.deassigned, 1);
	assert_int_equal(iofd.assigned, 2);
	assert_int_equal(iofd.nr_live, 1);
	assert_int_equal(iofd.last_addr, moved + d->notify);
	/* Decoding off: none. */
	cfg_w(d, PCI_COMMAND, 2, 0);
	assert_int_equal(iofd.nr_live, 0);
	assert_int_equal(iofd.deassigned, 2);
	/* On again, then a machine reset (decoding off at power-on). */
	cfg_w(d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(iofd.nr_live, 1);
	assert_int_equal(iofd.last_addr, moved + d->notify);
	vm_reset_devices(&d->h->vm);
	assert_int_equal(iofd.nr_live, 0);
	teardown(d);
}

static void test_machine_reset_and_save_load(void **state)
{
	struct drv *d = setup(), *g = setup();
	struct state_buf b = { 0 }, b2 = { 0 };
	char reply[80];

	probe(d);
	handshake(d, 4, MSIX_NO_VECTOR);
	assert_int_equal(request(d, "abc", reply), 8);
	cc_w(d, 0x10, 2, 1);
	assert_int_equal(hx_save(d->h, "pci", &b), 0);
	assert_int_equal(hx_save(d->h, "virtio-pci", &b2), 0);
	assert_int_equal(hx_load(g->h, "pci", b.data, b.len), 0);
	assert_int_equal(hx_load(g->h, "virtio-pci", b2.data, b2.len), 0);
	g->bar4 = d->bar4;
	g->common = d->common;
	g->notify = d->notify;
	g->notify_mult = d->notify_mult;
	g->isr = d->isr;
	g->used_seen = d->used_seen;
	g->qsize = d->qsize;
	assert_int_equal(cc_r(g, 0x14, 1), cc_r(d, 0x14, 1));
	assert_int_equal(cc_r(g, 0x10, 2), 1);
	assert_true(hx_irq_level(g->h, 17));
	/* The restored queue keeps going where the first one stopped. */
	memcpy(gm_ptr(&g->h->vm.mem, 0, RAM), gm_ptr(&d->h->vm.mem, 0, RAM), RAM);
	assert_int_equal(request(g, "def", reply), 8);
	assert_string_equal(reply, "echo:def");
	assert_int_equal(hx_load(g->h, "virtio-pci", b2.data, b2.len - 1),
			 -EINVAL);

	/* Machine reset: the device is reset, BAR decoding off. */
	vm_reset_devices(&d->h->vm);
	assert_false(hx_irq_level(d->h, 17));
	cfg_w(d, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(cc_r(d, 0x14, 1), 0);
	assert_int_equal(cc_r(d, 0x10, 2), MSIX_NO_VECTOR);
	assert_int_equal(cc_r(d, 0x18, 2), QSIZE_MAX);
	state_buf_free(&b);
	state_buf_free(&b2);
	teardown(d);
	teardown(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_msix),
		cmocka_unit_test_prestate(test_handshake_msix, &with_irqfd),
		cmocka_unit_test(test_intx_fallback),
		cmocka_unit_test(test_vectors_and_selects),
		cmocka_unit_test(test_hostile_queue_setup),
		cmocka_unit_test(test_pci_cfg_window),
		cmocka_unit_test(test_ioeventfd_follows_bar),
		cmocka_unit_test(test_machine_reset_and_save_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
