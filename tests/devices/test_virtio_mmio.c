/*
 * test_virtio_mmio.c - the virtio-mmio transport (src/virtio/mmio.c) and
 * the device model under it (src/virtio/virtio.c), driven through the
 * machine harness: the test is the guest driver.
 *
 * The device is a tiny "echo" type defined here: each chain's readable
 * bytes are copied into its writable buffers and the chain is returned
 * with the number of bytes written.  It has two queues and 8 bytes of
 * configuration (a read-only u32 and a writable u32).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"

#define RAM (16u << 20)
#define ECHO_ID 0x7e
#define QMAX 16
#define ECHO_CONFIG_MAGIC 0xEC40C0DEu

/* ---- the echo device ---- */

struct echo {
	struct virtio_dev vd;
	uint32_t cfg_rw;
	unsigned activated, resets, notified[2];
	int fail_activate;
};

static void echo_config_read(struct virtio_dev *vd, uint32_t off, void *buf,
			     uint32_t len)
{
	struct echo *e = vd->opaque;
	uint32_t cfg[2] = { ECHO_CONFIG_MAGIC, e->cfg_rw };

	memcpy(buf, (uint8_t *)cfg + off, len);
}

static void echo_config_write(struct virtio_dev *vd, uint32_t off,
			      const void *buf, uint32_t len)
{
	struct echo *e = vd->opaque;

	if (off == 4 && len == 4)
		memcpy(&e->cfg_rw, buf, 4);
}

static int echo_activate(struct virtio_dev *vd)
{
	struct echo *e = vd->opaque;

	e->activated++;
	return e->fail_activate;
}

static void echo_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct echo *e = vd->opaque;
	struct virtq *vq = &vd->vqs[q];
	static struct virtq_elem elem;
	uint8_t buf[4096];
	int r;

	e->notified[q]++;
	do {
		virtq_notify_disable(vq);
		while ((r = virtq_pop(vq, &elem)) == 1) {
			size_t n = virtq_elem_read(&elem, 0, buf, sizeof(buf));
			n = virtq_elem_write(&elem, 0, buf, n);
			virtq_push(vq, &elem, (uint32_t)n);
		}
		if (r < 0) {
			virtio_dev_broken(vd, "echo: bad chain");
			return;
		}
		virtio_queue_interrupt(vd, q);
	} while (virtq_notify_enable(vq));
}

static void echo_reset(struct virtio_dev *vd)
{
	struct echo *e = vd->opaque;

	e->resets++;
}

static void echo_save(struct virtio_dev *vd, struct state_buf *b)
{
	struct echo *e = vd->opaque;

	state_put_u32(b, e->cfg_rw);
}

static int echo_load(struct virtio_dev *vd, struct state_reader *r)
{
	struct echo *e = vd->opaque;

	e->cfg_rw = state_get_u32(r);
	return r->err;
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
	.activate = echo_activate,
	.queue_notify = echo_queue_notify,
	.reset = echo_reset,
	.save = echo_save,
	.load = echo_load,
	.destroy = echo_destroy,
};

static struct echo *echo_new(struct harness *h, unsigned index,
			     unsigned nr_queues)
{
	struct echo *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(virtio_dev_init(&e->vd, &h->vm, &h->loop, &echo_ops,
					 e, nr_queues, QMAX, 0, 8),
			 0);
	assert_int_equal(virtio_mmio_create(&h->vm, &e->vd, index, NULL), 0);
	return e;
}

/* ---- the driver ---- */

static uint64_t base_of(unsigned index)
{
	return VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_SIZE;
}

static uint32_t rd(struct harness *h, unsigned dev, uint32_t off)
{
	return (uint32_t)hx_mmio_read(h, base_of(dev) + off, 4);
}

static void wr(struct harness *h, unsigned dev, uint32_t off, uint32_t v)
{
	hx_mmio_write(h, base_of(dev) + off, 4, v);
}

/* Ring layout of queue q of device dev. */
static uint64_t desc_gpa(unsigned dev, unsigned q)
{
	return 0x100000 + dev * 0x10000 + q * 0x4000;
}
static uint64_t avail_gpa(unsigned dev, unsigned q) { return desc_gpa(dev, q) + 0x1000; }
static uint64_t used_gpa(unsigned dev, unsigned q) { return desc_gpa(dev, q) + 0x2000; }
static uint64_t buf_gpa(unsigned dev, unsigned q) { return 0x800000 + dev * 0x10000 + q * 0x4000; }

static uint16_t g16(struct harness *h, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(gm_read(&h->vm.mem, gpa, &v, 2), 0);
	return v;
}

static uint32_t g32(struct harness *h, uint64_t gpa)
{
	uint32_t v;

	assert_int_equal(gm_read(&h->vm.mem, gpa, &v, 4), 0);
	return v;
}

static void p16(struct harness *h, uint64_t gpa, uint16_t v)
{
	assert_int_equal(gm_write(&h->vm.mem, gpa, &v, 2), 0);
}

static void put_desc(struct harness *h, uint64_t table, unsigned i,
		     uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	assert_int_equal(gm_write(&h->vm.mem, table + 16 * i, &d, 16), 0);
}

static void set_queue(struct harness *h, unsigned dev, unsigned q,
		      uint32_t num)
{
	wr(h, dev, VIRTIO_MMIO_QUEUE_SEL, q);
	assert_int_equal(rd(h, dev, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(rd(h, dev, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	wr(h, dev, VIRTIO_MMIO_QUEUE_NUM, num);
	wr(h, dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc_gpa(dev, q));
	wr(h, dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(h, dev, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)avail_gpa(dev, q));
	wr(h, dev, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
	wr(h, dev, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)used_gpa(dev, q));
	wr(h, dev, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
}

/* Status up to FEATURES_OK with `features`; returns the status read back. */
static uint32_t negotiate(struct harness *h, unsigned dev, uint64_t features)
{
	wr(h, dev, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(rd(h, dev, VIRTIO_MMIO_STATUS), 0);
	wr(h, dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(h, dev, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(h, dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(h, dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	wr(h, dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(h, dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	wr(h, dev, VIRTIO_MMIO_STATUS,
	   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		   VIRTIO_STATUS_FEATURES_OK);
	return rd(h, dev, VIRTIO_MMIO_STATUS);
}

#define F_V1  (1ull << VIRTIO_F_VERSION_1)
#define F_EI  (1ull << VIRTIO_F_EVENT_IDX)
#define F_IND (1ull << VIRTIO_F_INDIRECT_DESC)
#define ST_OK (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
	       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)

/* The whole handshake (3.1.1) with `nq` queues of 8 entries. */
static void bring_up(struct harness *h, unsigned dev, unsigned nq,
		     uint64_t features)
{
	for (unsigned q = 0; q < nq; q++) {
		/* Rings zeroed, as a driver allocates them. */
		uint8_t zero[0x3000] = { 0 };
		assert_int_equal(gm_write(&h->vm.mem, desc_gpa(dev, q), zero,
					  sizeof(zero)), 0);
	}
	assert_int_equal(negotiate(h, dev, features),
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				 VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		set_queue(h, dev, q, 8);
		wr(h, dev, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(rd(h, dev, VIRTIO_MMIO_QUEUE_READY), 1);
	}
	wr(h, dev, VIRTIO_MMIO_STATUS, ST_OK);
	assert_int_equal(rd(h, dev, VIRTIO_MMIO_STATUS), ST_OK);
}

/* Driver's avail index per (dev, q) is kept in guest RAM itself. */
static void post_echo(struct harness *h, unsigned dev, unsigned q,
		      const char *msg, uint16_t head)
{
	uint64_t b = buf_gpa(dev, q) + head * 0x200;
	uint16_t idx = g16(h, avail_gpa(dev, q) + 2);

	assert_int_equal(gm_write(&h->vm.mem, b, msg, strlen(msg)), 0);
	put_desc(h, desc_gpa(dev, q), head, b, (uint32_t)strlen(msg),
		 VIRTQ_DESC_F_NEXT, (uint16_t)(head + 1));
	put_desc(h, desc_gpa(dev, q), head + 1, b + 0x100, 0x100,
		 VIRTQ_DESC_F_WRITE, 0);
	p16(h, avail_gpa(dev, q) + 4 + 2 * (idx % 8), head);
	p16(h, avail_gpa(dev, q) + 2, (uint16_t)(idx + 1));
}

static void check_echoed(struct harness *h, unsigned dev, unsigned q,
			 uint16_t used_slot, const char *msg, uint16_t head)
{
	char out[64] = { 0 };
	uint64_t b = buf_gpa(dev, q) + head * 0x200;

	assert_int_equal(g32(h, used_gpa(dev, q) + 4 + 8 * used_slot), head);
	assert_int_equal(g32(h, used_gpa(dev, q) + 8 + 8 * used_slot),
			 strlen(msg));
	assert_int_equal(gm_read(&h->vm.mem, b + 0x100, out, strlen(msg)), 0);
	assert_string_equal(out, msg);
}

/* ---- tests ---- */

static void test_identity(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 2);

	assert_int_equal(rd(h, 0, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_DEVICE_ID), ECHO_ID);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	wr(h, 0, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_DEVICE_FEATURES),
			 (uint32_t)(F_EI | F_IND));
	wr(h, 0, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 */
	wr(h, 0, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_NUM_MAX), QMAX);
	wr(h, 0, VIRTIO_MMIO_QUEUE_SEL, 2);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_SHM_LEN_HIGH), 0xffffffffu);
	/* Registers only answer 32-bit aligned accesses. */
	assert_int_equal(hx_mmio_read(h, base_of(0), 2), 0);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 1, 4), 0);
	assert_int_equal(hx_mmio_read(h, base_of(0), 8), 0);
	/* Configuration: any width, zeros past the end. */
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x100, 4),
			 ECHO_CONFIG_MAGIC);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x101, 1), 0xC0);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x102, 2), 0xEC40);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x100, 8),
			 ECHO_CONFIG_MAGIC);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x106, 4), 0);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x1fc, 4), 0);
	hx_mmio_write(h, base_of(0) + 0x104, 4, 0x1234);
	assert_int_equal(e->cfg_rw, 0x1234);
	hx_mmio_write(h, base_of(0) + 0x106, 4, 0xffffffff); /* straddles the end */
	hx_mmio_write(h, base_of(0) + 0x100, 4, 0xffffffff); /* read-only field */
	assert_int_equal(e->cfg_rw, 0x1234);
	assert_int_equal(hx_mmio_read(h, base_of(0) + 0x100, 4),
			 ECHO_CONFIG_MAGIC);
	/* The next device slot is empty. */
	assert_int_equal(rd(h, 1, VIRTIO_MMIO_MAGIC_VALUE), 0xffffffffu);
	harness_free(h);
}

static void echo_roundtrip(uint64_t features)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 2);

	bring_up(h, 0, 2, features);
	assert_int_equal(e->activated, 1);
	assert_false(hx_irq_level(h, 16));
	assert_int_equal(e->vd.vqs[0].event_idx, !!(features & F_EI));

	post_echo(h, 0, 0, "hello", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 1);
	check_echoed(h, 0, 0, 0, "hello", 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_MMIO_INT_VRING);
	assert_true(hx_irq_level(h, 16));
	wr(h, 0, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(hx_irq_level(h, 16));

	/* Two more at once, on queue 1, kicked with the queue index. */
	unsigned n0 = e->notified[0], n1 = e->notified[1];
	post_echo(h, 0, 1, "abc", 2);
	post_echo(h, 0, 1, "defgh", 4);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(e->notified[0], n0);
	assert_int_equal(e->notified[1], n1 + 1);
	assert_int_equal(g16(h, used_gpa(0, 1) + 2), 2);
	check_echoed(h, 0, 1, 0, "abc", 2);
	check_echoed(h, 0, 1, 1, "defgh", 4);
	assert_true(hx_irq_level(h, 16));
	assert_int_equal(hx_irq_edges(h, 16), 2);
	wr(h, 0, VIRTIO_MMIO_INTERRUPT_ACK, 3);
	assert_false(hx_irq_level(h, 16));

	/* NO_INTERRUPT (ignored with EVENT_IDX, where used_event rules). */
	p16(h, avail_gpa(0, 0), VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (features & F_EI)
		p16(h, avail_gpa(0, 0) + 4 + 2 * 8, 5); /* used_event far ahead */
	post_echo(h, 0, 0, "quiet", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 2);
	assert_false(hx_irq_level(h, 16));
	/* Kicks for out-of-range queues are ignored. */
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 2);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
	assert_int_equal(hx_run_io(h, 0), 0);
	harness_free(h);
}

static void test_echo(void **state)
{
	echo_roundtrip(F_V1);
}

static void test_echo_event_idx(void **state)
{
	echo_roundtrip(F_V1 | F_EI | F_IND);
}

static void test_indirect_through_mmio(void **state)
{
	struct harness *h = harness_new(RAM);

	echo_new(h, 0, 1);
	bring_up(h, 0, 1, F_V1 | F_IND);
	uint64_t table = 0x600000, b = buf_gpa(0, 0);
	assert_int_equal(gm_write(&h->vm.mem, b, "indirect", 8), 0);
	put_desc(h, table, 0, b, 8, VIRTQ_DESC_F_NEXT, 1);
	put_desc(h, table, 1, b + 0x100, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	put_desc(h, table, 2, b + 0x200, 4, VIRTQ_DESC_F_WRITE, 0);
	put_desc(h, desc_gpa(0, 0), 0, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
	p16(h, avail_gpa(0, 0) + 4, 0);
	p16(h, avail_gpa(0, 0) + 2, 1);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(g32(h, used_gpa(0, 0) + 8), 8);
	char out[9] = { 0 };
	assert_int_equal(gm_read(&h->vm.mem, b + 0x100, out, 4), 0);
	assert_int_equal(gm_read(&h->vm.mem, b + 0x200, out + 4, 4), 0);
	assert_string_equal(out, "indirect");
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);
	harness_free(h);
}

static void test_feature_negotiation(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 1);
	const uint32_t drv = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	/* Not offered: bit 0, RING_PACKED, bit 63. */
	assert_int_equal(negotiate(h, 0, F_V1 | 1), drv);
	assert_int_equal(negotiate(h, 0, F_V1 | (1ull << VIRTIO_F_RING_PACKED)), drv);
	assert_int_equal(negotiate(h, 0, F_V1 | (1ull << 63)), drv);
	/* No VERSION_1: a legacy driver. */
	assert_int_equal(negotiate(h, 0, F_EI), drv);
	assert_int_equal(negotiate(h, 0, 0), drv);
	/* DRIVER_OK without FEATURES_OK is a driver error. */
	wr(h, 0, VIRTIO_MMIO_STATUS, drv | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS),
			 drv | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(e->activated, 0);
	/* A subset is fine; afterwards the feature words are frozen. */
	assert_int_equal(negotiate(h, 0, F_V1 | F_EI), drv | VIRTIO_STATUS_FEATURES_OK);
	wr(h, 0, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(h, 0, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	assert_int_equal(e->vd.driver_features, F_V1 | F_EI);
	/* Status bits cannot be cleared except by reset; NEEDS_RESET cannot
	 * be set by the driver. */
	wr(h, 0, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE |
	   VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), drv | VIRTIO_STATUS_FEATURES_OK);
	/* Reset: features forgotten, generation moves on. */
	uint32_t gen = e->vd.generation;
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(e->vd.driver_features, 0);
	assert_int_equal(e->vd.generation, gen + 1);
	assert_true(e->resets >= 1);
	/* activate() refusing: DEVICE_NEEDS_RESET and a config interrupt. */
	e->fail_activate = -EIO;
	assert_int_equal(negotiate(h, 0, F_V1), drv | VIRTIO_STATUS_FEATURES_OK);
	wr(h, 0, VIRTIO_MMIO_STATUS, ST_OK);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS),
			 ST_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_MMIO_INT_CONFIG);
	assert_true(hx_irq_level(h, 16));
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	assert_false(hx_irq_level(h, 16));
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	harness_free(h);
}

static void test_hostile_registers(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 2);
	const unsigned sizes[] = { 1, 2, 4, 8 };

	/* Every offset, every width, garbage values: nothing may crash and
	 * the registers that matter must stay sane. */
	srand(1);
	for (int round = 0; round < 4; round++) {
		for (uint32_t off = 0; off < VIRTIO_MMIO_SIZE; off++) {
			for (unsigned s = 0; s < 4; s++) {
				uint64_t v = (uint64_t)rand() << 32 | (unsigned)rand();
				/* Mostly real queues, so their registers
				 * get garbage too. */
				if (off == VIRTIO_MMIO_QUEUE_SEL)
					v %= 3;
				hx_mmio_write(h, base_of(0) + off, sizes[s], v);
				(void)hx_mmio_read(h, base_of(0) + off, sizes[s]);
			}
		}
		hx_run_io(h, 0);
	}
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), 0);

	/* Read-only registers ignore writes. */
	wr(h, 0, VIRTIO_MMIO_MAGIC_VALUE, 0);
	wr(h, 0, VIRTIO_MMIO_VERSION, 1);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NUM_MAX, 1024);
	wr(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS, 3);
	wr(h, 0, VIRTIO_MMIO_CONFIG_GENERATION, 7);
	wr(h, 0, VIRTIO_MMIO_QUEUE_RESET, 1);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_RESET), 0);
	assert_false(hx_irq_level(h, 16));

	/* Queue enable before FEATURES_OK is a driver error. */
	set_queue(h, 0, 0, 8);
	wr(h, 0, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_true(rd(h, 0, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);

	/* Bad queue layouts: each gives DEVICE_NEEDS_RESET, never a ready queue. */
	struct {
		uint32_t num;
		uint64_t desc, avail, used;
	} bad[] = {
		{ 6, desc_gpa(0, 0), avail_gpa(0, 0), used_gpa(0, 0) },     /* not 2^n */
		{ 0, desc_gpa(0, 0), avail_gpa(0, 0), used_gpa(0, 0) },
		{ 32, desc_gpa(0, 0), avail_gpa(0, 0), used_gpa(0, 0) },    /* > max */
		{ 0x10008, desc_gpa(0, 0), avail_gpa(0, 0), used_gpa(0, 0) }, /* > max (16 bits: 8) */
		{ 8, desc_gpa(0, 0) + 8, avail_gpa(0, 0), used_gpa(0, 0) },
		{ 8, desc_gpa(0, 0), avail_gpa(0, 0) + 1, used_gpa(0, 0) },
		{ 8, desc_gpa(0, 0), avail_gpa(0, 0), used_gpa(0, 0) + 2 },
		{ 8, 0xC0000000, avail_gpa(0, 0), used_gpa(0, 0) },         /* hole */
		{ 8, desc_gpa(0, 0), RAM - 8, used_gpa(0, 0) },           /* crosses the end */
		{ 8, desc_gpa(0, 0), avail_gpa(0, 0), 0x100000000ull },     /* no high RAM */
		{ 8, desc_gpa(0, 0), avail_gpa(0, 0), 0xFFFFFFFFFFFFFFF0ull },
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(negotiate(h, 0, F_V1 | F_EI),
				 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
					 VIRTIO_STATUS_FEATURES_OK);
		wr(h, 0, VIRTIO_MMIO_QUEUE_SEL, 0);
		wr(h, 0, VIRTIO_MMIO_QUEUE_NUM, bad[i].num);
		wr(h, 0, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)bad[i].desc);
		wr(h, 0, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(bad[i].desc >> 32));
		wr(h, 0, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)bad[i].avail);
		wr(h, 0, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(bad[i].avail >> 32));
		wr(h, 0, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)bad[i].used);
		wr(h, 0, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(bad[i].used >> 32));
		wr(h, 0, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_READY), 0);
		assert_true(rd(h, 0, VIRTIO_MMIO_STATUS) &
			    VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		/* Not DRIVER_OK yet: no config interrupt. */
		assert_false(hx_irq_level(h, 16));
		wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	}

	/* Queue registers are frozen while the queue is ready. */
	bring_up(h, 0, 1, F_V1);
	wr(h, 0, VIRTIO_MMIO_QUEUE_SEL, 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NUM, 4);
	wr(h, 0, VIRTIO_MMIO_QUEUE_DESC_LOW, 0xC0000000);
	wr(h, 0, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 5);
	assert_int_equal(e->vd.vqs[0].size, 8);
	assert_int_equal(e->vd.vqs[0].desc_gpa, desc_gpa(0, 0));
	assert_int_equal(e->vd.vqs[0].used_gpa, used_gpa(0, 0));
	/* Queue 1 was never enabled: kicking it does nothing. */
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
	assert_int_equal(hx_run_io(h, 100), 1);
	assert_int_equal(e->notified[1], 0);
	/* QueueReady 0 stops the queue; the rings stay as written. */
	wr(h, 0, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(e->vd.vqs[0].desc_gpa, desc_gpa(0, 0));
	post_echo(h, 0, 0, "stopped", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	hx_run_io(h, 100);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 0);
	/* Enabled again: the chain is served (indices restart at 0). */
	wr(h, 0, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 1);
	check_echoed(h, 0, 0, 0, "stopped", 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);
	harness_free(h);
}

static void test_bad_chain_needs_reset(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 1);

	bring_up(h, 0, 1, F_V1 | F_EI);
	/* A writable buffer in the MMIO hole. */
	put_desc(h, desc_gpa(0, 0), 0, buf_gpa(0, 0), 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(h, desc_gpa(0, 0), 1, 0xFEB00000, 0x200, VIRTQ_DESC_F_WRITE, 0);
	p16(h, avail_gpa(0, 0) + 4, 0);
	p16(h, avail_gpa(0, 0) + 2, 1);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS),
			 ST_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS),
			 VIRTIO_MMIO_INT_CONFIG);
	assert_true(hx_irq_level(h, 16));
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 0);
	/* The device no longer serves the queue. */
	unsigned before = e->notified[0];
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	hx_run_io(h, 100);
	assert_int_equal(e->notified[0], before);
	/* Nor does the driver clear the bit by writing status. */
	wr(h, 0, VIRTIO_MMIO_STATUS, ST_OK);
	assert_true(rd(h, 0, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);

	/* Recovery: reset and start again. */
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	assert_false(hx_irq_level(h, 16));
	bring_up(h, 0, 1, F_V1 | F_EI);
	post_echo(h, 0, 0, "again", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	check_echoed(h, 0, 0, 0, "again", 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);

	/* A loop and a huge avail index jump each break it the same way. */
	put_desc(h, desc_gpa(0, 0), 3, buf_gpa(0, 0), 4, VIRTQ_DESC_F_NEXT, 3);
	p16(h, avail_gpa(0, 0) + 4 + 2, 3);
	p16(h, avail_gpa(0, 0) + 2, 2);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	hx_run_io(h, 1000);
	assert_true(rd(h, 0, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	bring_up(h, 0, 1, F_V1);
	p16(h, avail_gpa(0, 0) + 2, 9);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	hx_run_io(h, 1000);
	assert_true(rd(h, 0, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	harness_free(h);
}

static void test_buffers_before_driver_ok(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 1);

	assert_int_equal(negotiate(h, 0, F_V1),
			 VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				 VIRTIO_STATUS_FEATURES_OK);
	uint8_t zero[0x3000] = { 0 };
	assert_int_equal(gm_write(&h->vm.mem, desc_gpa(0, 0), zero, sizeof(zero)), 0);
	set_queue(h, 0, 0, 8);
	wr(h, 0, VIRTIO_MMIO_QUEUE_READY, 1);
	post_echo(h, 0, 0, "early", 0);
	/* A kick before DRIVER_OK is not served... */
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	hx_run_io(h, 100);
	assert_int_equal(e->notified[0], 0);
	/* ... but DRIVER_OK looks at the ready queues. */
	wr(h, 0, VIRTIO_MMIO_STATUS, ST_OK);
	assert_true(hx_run_io(h, 1000) > 0);
	check_echoed(h, 0, 0, 0, "early", 0);
	assert_true(hx_irq_level(h, 16));
	harness_free(h);
}

static void test_shared_line(void **state)
{
	struct harness *h = harness_new(RAM);

	/* Devices 0 and 8 share GSI 16; device 1 has GSI 17. */
	echo_new(h, 0, 1);
	echo_new(h, 1, 1);
	echo_new(h, 8, 1);
	const unsigned devs[] = { 0, 1, 8 };
	for (int i = 0; i < 3; i++)
		bring_up(h, devs[i], 1, F_V1);
	post_echo(h, 0, 0, "zero", 0);
	post_echo(h, 8, 0, "eight", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	wr(h, 8, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	check_echoed(h, 0, 0, 0, "zero", 0);
	check_echoed(h, 8, 0, 0, "eight", 0);
	assert_true(hx_irq_level(h, 16));
	assert_false(hx_irq_level(h, 17));
	wr(h, 0, VIRTIO_MMIO_INTERRUPT_ACK, 1);
	assert_true(hx_irq_level(h, 16)); /* device 8 still asserts it */
	wr(h, 8, VIRTIO_MMIO_INTERRUPT_ACK, 1);
	assert_false(hx_irq_level(h, 16));
	post_echo(h, 1, 0, "one", 0);
	wr(h, 1, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_true(hx_irq_level(h, 17));
	assert_false(hx_irq_level(h, 16));

	/* Creation errors: a taken slot, an index out of range. */
	struct echo *x = calloc(1, sizeof(*x));
	assert_int_equal(virtio_dev_init(&x->vd, &h->vm, &h->loop, &echo_ops,
					 x, 1, QMAX, 0, 8), 0);
	assert_int_equal(virtio_mmio_create(&h->vm, &x->vd, 1, NULL), -EBUSY);
	assert_int_equal(virtio_mmio_create(&h->vm, &x->vd, VIRTIO_MMIO_MAX_DEVICES,
					    NULL), -EINVAL);
	virtio_dev_destroy(&x->vd);
	harness_free(h);
}

static void test_dev_init_checks(void **state)
{
	struct harness *h = harness_new(RAM);
	struct virtio_dev vd;

	assert_int_equal(virtio_dev_init(&vd, &h->vm, &h->loop, &echo_ops, NULL,
					 0, 8, 0, 0), -EINVAL);
	assert_int_equal(virtio_dev_init(&vd, &h->vm, &h->loop, &echo_ops, NULL,
					 VIRTIO_MAX_QUEUES + 1, 8, 0, 0), -EINVAL);
	assert_int_equal(virtio_dev_init(&vd, &h->vm, &h->loop, &echo_ops, NULL,
					 1, 12, 0, 0), -EINVAL);
	assert_int_equal(virtio_dev_init(&vd, &h->vm, &h->loop, &echo_ops, NULL,
					 1, 2048, 0, 0), -EINVAL);
	assert_int_equal(virtio_dev_init(&vd, &h->vm, &h->loop, &echo_ops, NULL,
					 1, 8, 1ull << VIRTIO_F_RING_PACKED, 0),
			 -EINVAL);
	harness_free(h);
}

static void test_config_changed(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 3, 1);

	/* Before DRIVER_OK: the generation moves, no interrupt. */
	pthread_mutex_lock(&e->vd.lock);
	virtio_config_changed(&e->vd);
	pthread_mutex_unlock(&e->vd.lock);
	assert_int_equal(rd(h, 3, VIRTIO_MMIO_CONFIG_GENERATION), 1);
	assert_false(hx_irq_level(h, 19));
	bring_up(h, 3, 1, F_V1);
	pthread_mutex_lock(&e->vd.lock);
	virtio_config_changed(&e->vd);
	pthread_mutex_unlock(&e->vd.lock);
	assert_int_equal(rd(h, 3, VIRTIO_MMIO_CONFIG_GENERATION), 2);
	assert_int_equal(rd(h, 3, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	assert_true(hx_irq_level(h, 19));
	/* Acknowledging another bit leaves the line up. */
	wr(h, 3, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	assert_true(hx_irq_level(h, 19));
	wr(h, 3, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	assert_false(hx_irq_level(h, 19));
	/* A machine reset (vm_reset_devices) resets the transport. */
	post_echo(h, 3, 0, "x", 0);
	wr(h, 3, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_true(hx_irq_level(h, 19));
	vm_reset_devices(&h->vm);
	assert_false(hx_irq_level(h, 19));
	assert_int_equal(rd(h, 3, VIRTIO_MMIO_STATUS), 0);
	assert_int_equal(rd(h, 3, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	harness_free(h);
}

/* A fake accelerator with kernel doorbells: records what is assigned. */
struct fake_ioeventfd {
	unsigned assigned, deassigned;
	uint64_t addr;
	unsigned len;
	int fd;
	bool pio;
};

static int fake_assign(void *opaque, bool pio, uint64_t addr, unsigned len,
		       int fd, bool assign)
{
	struct fake_ioeventfd *f = opaque;

	if (assign)
		f->assigned++;
	else
		f->deassigned++;
	f->pio = pio;
	f->addr = addr;
	f->len = len;
	f->fd = fd;
	return 0;
}

static const struct vm_ioeventfd_ops fake_ioeventfd_ops = {
	.assign = fake_assign,
};

static void test_kernel_doorbell(void **state)
{
	struct harness *h = harness_new(RAM);
	static struct fake_ioeventfd f;
	struct echo *e;

	h->vm.ioeventfd = &fake_ioeventfd_ops;
	h->vm.ioeventfd_opaque = &f;
	/* Two queues share QueueNotify: no doorbell without datamatch. */
	echo_new(h, 0, 2);
	assert_int_equal(f.assigned, 0);
	/* One queue: any write to QueueNotify means queue 0. */
	e = echo_new(h, 2, 1);
	assert_int_equal(f.assigned, 1);
	assert_false(f.pio);
	assert_int_equal(f.addr, base_of(2) + VIRTIO_MMIO_QUEUE_NOTIFY);
	assert_int_equal(f.len, 4);
	assert_int_equal(f.fd, e->vd.kick_fd[0]);
	/* The kernel signals the eventfd itself; the device runs on the
	 * I/O thread as with a trapped write. */
	bring_up(h, 2, 1, F_V1);
	post_echo(h, 2, 0, "doorbell", 0);
	uint64_t one = 1;
	assert_int_equal(write(e->vd.kick_fd[0], &one, 8), 8);
	assert_true(hx_run_io(h, 1000) > 0);
	check_echoed(h, 2, 0, 0, "doorbell", 0);
	harness_free(h);
	assert_int_equal(f.deassigned, 1);
}

/* The driver on its own thread (a vCPU), the device on the I/O thread:
 * 3000 requests through an 8-entry ring with EVENT_IDX, every kick and
 * acknowledgement a register access racing with the device.  Checks that
 * every request completes once, in order, with its own bytes. */
struct racer {
	struct harness *h;
	unsigned done;      /* requests seen completed by the driver */
	int failed;
	_Atomic bool finished;
};

#define RACE_N 3000

static void *race_driver(void *opaque)
{
	struct racer *r = opaque;
	struct harness *h = r->h;
	volatile uint16_t *avail_idx = gm_ptr(&h->vm.mem, avail_gpa(0, 0) + 2, 2);
	volatile uint16_t *used_idx = gm_ptr(&h->vm.mem, used_gpa(0, 0) + 2, 2);
	uint16_t posted = 0, seen = 0;

	while (seen < RACE_N) {
		/* Post while fewer than 4 (two descriptors each) are
		 * outstanding; request n uses descriptors 2(n%4), 2(n%4)+1
		 * and ring slot n%8. */
		while (posted < RACE_N && (uint16_t)(posted - seen) < 4) {
			unsigned pair = posted % 4;
			uint64_t b = buf_gpa(0, 0) + pair * 0x200;
			uint32_t tag = posted;

			memcpy(gm_ptr(&h->vm.mem, b, 4), &tag, 4);
			put_desc(h, desc_gpa(0, 0), 2 * pair, b, 4,
				 VIRTQ_DESC_F_NEXT, (uint16_t)(2 * pair + 1));
			put_desc(h, desc_gpa(0, 0), 2 * pair + 1, b + 0x100, 4,
				 VIRTQ_DESC_F_WRITE, 0);
			p16(h, avail_gpa(0, 0) + 4 + 2 * (posted % 8),
			    (uint16_t)(2 * pair));
			posted++;
			__atomic_store_n(avail_idx, posted, __ATOMIC_RELEASE);
			wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		}
		uint16_t u = __atomic_load_n(used_idx, __ATOMIC_ACQUIRE);
		while (seen != u) {
			unsigned slot = seen % 8, pair = seen % 4;
			uint32_t id = g32(h, used_gpa(0, 0) + 4 + 8 * slot);
			uint32_t len = g32(h, used_gpa(0, 0) + 8 + 8 * slot);
			uint32_t echoed = g32(h, buf_gpa(0, 0) + pair * 0x200 + 0x100);
			if (id != 2 * pair || len != 4 || echoed != seen)
				r->failed = 1;
			seen++;
		}
		if (rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS))
			wr(h, 0, VIRTIO_MMIO_INTERRUPT_ACK, 3);
		/* A broken device would never answer: fail, do not hang. */
		if (rd(h, 0, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) {
			r->failed = 2;
			break;
		}
	}
	r->done = seen;
	atomic_store(&r->finished, true);
	return NULL;
}

static void test_concurrent_driver(void **state)
{
	struct harness *h = harness_new(RAM);
	struct racer r = { .h = h };
	pthread_t t;

	echo_new(h, 0, 1);
	bring_up(h, 0, 1, F_V1 | F_EI);
	assert_int_equal(pthread_create(&t, NULL, race_driver, &r), 0);
	for (unsigned spins = 0; !atomic_load(&r.finished); spins++) {
		assert_true(spins < 3000); /* 30 s */
		hx_run_io(h, 10);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(r.failed, 0);
	assert_int_equal(r.done, RACE_N);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), RACE_N);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);
	harness_free(h);
}

static void test_save_load(void **state)
{
	struct harness *h = harness_new(RAM);
	struct echo *e = echo_new(h, 0, 2);
	struct state_buf b = { 0 }, b2 = { 0 };

	bring_up(h, 0, 2, F_V1 | F_EI | F_IND);
	e->cfg_rw = 0xfeed;
	post_echo(h, 0, 0, "before", 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	wr(h, 0, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(hx_save(h, "virtio-mmio.0", &b), 0);

	/* Wipe the device, then restore it. */
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	e->cfg_rw = 0;
	assert_false(hx_irq_level(h, 16));
	assert_int_equal(hx_load(h, "virtio-mmio.0", b.data, b.len), 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);
	assert_int_equal(e->cfg_rw, 0xfeed);
	assert_int_equal(e->vd.driver_features, F_V1 | F_EI | F_IND);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
	assert_true(hx_irq_level(h, 16));
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_QUEUE_READY), 1); /* QueueSel 1 kept */
	assert_int_equal(hx_save(h, "virtio-mmio.0", &b2), 0);
	assert_int_equal(b.len, b2.len);
	assert_memory_equal(b.data, b2.data, b.len);
	/* It carries on where it was. */
	wr(h, 0, VIRTIO_MMIO_INTERRUPT_ACK, 1);
	post_echo(h, 0, 0, "after", 2);
	wr(h, 0, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	assert_true(hx_run_io(h, 1000) > 0);
	assert_int_equal(g16(h, used_gpa(0, 0) + 2), 2);
	check_echoed(h, 0, 0, 1, "after", 2);

	/* Truncated and corrupted streams: an error and a reset device. */
	for (size_t n = 0; n < b.len; n += 7) {
		assert_int_not_equal(hx_load(h, "virtio-mmio.0", b.data, n), 0);
		assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), 0);
		assert_false(hx_irq_level(h, 16));
	}
	uint8_t *bad = malloc(b.len);
	assert_non_null(bad);
	/* InterruptStatus, host features, driver features, status. */
	const size_t offs[] = { 16, 20, 28, 36 };
	const uint8_t flip[] = { 0x40, 0x40, 0x40, 0x10 };
	for (unsigned i = 0; i < 4; i++) {
		memcpy(bad, b.data, b.len);
		bad[offs[i]] ^= flip[i];
		assert_int_equal(hx_load(h, "virtio-mmio.0", bad, b.len), -EINVAL);
		assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), 0);
	}
	free(bad);
	/* Unoffered driver features before FEATURES_OK are reachable (the
	 * check comes with FEATURES_OK), so such a state round-trips. */
	wr(h, 0, VIRTIO_MMIO_STATUS, 0);
	wr(h, 0, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(h, 0, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(h, 0, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
	state_buf_free(&b2);
	assert_int_equal(hx_save(h, "virtio-mmio.0", &b2), 0);
	assert_int_equal(hx_load(h, "virtio-mmio.0", b2.data, b2.len), 0);
	assert_int_equal(e->vd.driver_features, 0xffffffffu);
	/* And the good stream still loads. */
	assert_int_equal(hx_load(h, "virtio-mmio.0", b.data, b.len), 0);
	assert_int_equal(rd(h, 0, VIRTIO_MMIO_STATUS), ST_OK);
	state_buf_free(&b);
	state_buf_free(&b2);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_echo),
		cmocka_unit_test(test_echo_event_idx),
		cmocka_unit_test(test_indirect_through_mmio),
		cmocka_unit_test(test_feature_negotiation),
		cmocka_unit_test(test_hostile_registers),
		cmocka_unit_test(test_bad_chain_needs_reset),
		cmocka_unit_test(test_buffers_before_driver_ok),
		cmocka_unit_test(test_shared_line),
		cmocka_unit_test(test_dev_init_checks),
		cmocka_unit_test(test_config_changed),
		cmocka_unit_test(test_kernel_doorbell),
		cmocka_unit_test(test_concurrent_driver),
		cmocka_unit_test(test_save_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
