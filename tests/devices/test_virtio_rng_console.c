/*
 * test_virtio_rng_console.c - virtio-rng and virtio-console through the
 * virtio-mmio registers, the harness playing Linux's drivers: random bytes
 * land in the guest's buffers, console output reaches the chardev and input
 * reaches the guest with back pressure, and a driver that re-posts buffers
 * as fast as the device answers cannot keep the I/O thread busy forever.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/chardev.h"
#include "harness.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/rng.h"
#include "virtio/virtio.h"

#define RAM   (16u << 20)
#define QN    8                      /* entries per queue we set up */
#define DESC(q) (0x100000u + (q) * 0x4000u)
#define AVAIL(q) (DESC(q) + 0x1000u)
#define USED(q)  (DESC(q) + 0x2000u)
#define BUF   0x800000u
#define ST_OK (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
	       VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)

static uint32_t rd(struct harness *h, uint32_t off)
{
	return (uint32_t)hx_mmio_read(h, VIRTIO_MMIO_BASE + off, 4);
}

static void wr(struct harness *h, uint32_t off, uint32_t v)
{
	hx_mmio_write(h, VIRTIO_MMIO_BASE + off, 4, v);
}

static uint16_t g16(struct harness *h, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(gm_read(&h->vm.mem, gpa, &v, 2), 0);
	return v;
}

static void p16(struct harness *h, uint64_t gpa, uint16_t v)
{
	assert_int_equal(gm_write(&h->vm.mem, gpa, &v, 2), 0);
}

/* Handshake with VERSION_1 only and `nq` queues of QN entries. */
static void bring_up(struct harness *h, unsigned nq)
{
	uint8_t zero[0x3000] = { 0 };

	wr(h, VIRTIO_MMIO_STATUS, 0);
	wr(h, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(h, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(h, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
	wr(h, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
				  VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		assert_int_equal(gm_write(&h->vm.mem, DESC(q), zero, sizeof(zero)), 0);
		wr(h, VIRTIO_MMIO_QUEUE_SEL, q);
		wr(h, VIRTIO_MMIO_QUEUE_NUM, QN);
		wr(h, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC(q));
		wr(h, VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL(q));
		wr(h, VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED(q));
		wr(h, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	wr(h, VIRTIO_MMIO_STATUS, ST_OK);
	assert_int_equal(rd(h, VIRTIO_MMIO_STATUS), ST_OK);
}

/* Post one single-descriptor chain (descriptor i) on queue q and kick. */
static void post(struct harness *h, unsigned q, unsigned i, uint64_t addr,
		 uint32_t len, bool writable)
{
	struct virtq_desc d = { addr, len, writable ? VIRTQ_DESC_F_WRITE : 0, 0 };
	uint16_t idx = g16(h, AVAIL(q) + 2);

	assert_int_equal(gm_write(&h->vm.mem, DESC(q) + 16 * i, &d, 16), 0);
	p16(h, AVAIL(q) + 4 + 2 * (idx % QN), (uint16_t)i);
	p16(h, AVAIL(q) + 2, (uint16_t)(idx + 1));
	wr(h, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

static uint32_t used_len(struct harness *h, unsigned q, unsigned n)
{
	uint32_t len;

	assert_int_equal(gm_read(&h->vm.mem, USED(q) + 4 + 8 * (n % QN) + 4, &len, 4), 0);
	return len;
}

static struct harness *with_rng(void)
{
	struct harness *h = harness_new(RAM);
	struct virtio_dev *vd;

	assert_int_equal(virtio_rng_create(&h->vm, &h->loop, &vd), 0);
	assert_int_equal(virtio_mmio_create(&h->vm, vd, 0, NULL), 0);
	bring_up(h, 1);
	return h;
}

static void test_rng_bytes(void **state)
{
	struct harness *h = with_rng();
	uint8_t buf[64], zero[64] = { 0 };

	assert_int_equal(rd(h, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	assert_int_equal(gm_write(&h->vm.mem, BUF, zero, sizeof(zero)), 0);
	post(h, 0, 0, BUF, sizeof(buf), true);
	hx_run_io(h, 100);
	assert_int_equal(g16(h, USED(0) + 2), 1);
	assert_int_equal(used_len(h, 0, 0), sizeof(buf));
	assert_int_equal(gm_read(&h->vm.mem, BUF, buf, sizeof(buf)), 0);
	assert_memory_not_equal(buf, zero, sizeof(buf));
	assert_true(rd(h, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	/* A device-readable buffer is a driver error, not a crash. */
	post(h, 0, 1, BUF, 16, false);
	hx_run_io(h, 100);
	assert_true(rd(h, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	harness_free(h);
}

/* The second vCPU of a hostile guest, modelled through the write hook
 * that virtq_push calls: every completion is answered with a new offer of
 * the same chain. */
static struct harness *storm_h;
static unsigned storm_q, storm_pushes;

static void storm_vcpu(void *opaque, uint64_t gpa, uint64_t len)
{
	if (gpa != USED(storm_q) + 2 || ++storm_pushes > 1000000)
		return;
	p16(storm_h, AVAIL(storm_q) + 4 + 2 * (g16(storm_h, AVAIL(storm_q) + 2) % QN), 0);
	p16(storm_h, AVAIL(storm_q) + 2, (uint16_t)(g16(storm_h, AVAIL(storm_q) + 2) + 1));
}

/* One dispatch of the I/O loop serves at most a few queues' worth. */
static void storm(struct harness *h, unsigned q, uint64_t addr, bool writable)
{
	storm_h = h;
	storm_q = q;
	storm_pushes = 0;
	h->vm.mem.write_notify = storm_vcpu;
	post(h, q, 0, addr, 16, writable);
	evloop_run_once(&h->loop, 100);
	h->vm.mem.write_notify = NULL;
	assert_true(storm_pushes >= QN);
	assert_true(storm_pushes <= 4 * QN);
}

static void test_rng_storm_yields(void **state)
{
	struct harness *h = with_rng();

	storm(h, 0, BUF, true);
	harness_free(h);
}

static struct harness *with_console(struct chardev **cd)
{
	struct harness *h = harness_new(RAM);
	struct virtio_dev *vd;

	*cd = chardev_open_buffer();
	assert_non_null(*cd);
	assert_int_equal(virtio_console_create(&h->vm, &h->loop, *cd, &vd), 0);
	assert_int_equal(virtio_mmio_create(&h->vm, vd, 0, NULL), 0);
	bring_up(h, 2);
	return h;
}

static void test_console_output(void **state)
{
	struct chardev *cd;
	struct harness *h = with_console(&cd);

	assert_int_equal(rd(h, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_CONSOLE);
	assert_int_equal(gm_write(&h->vm.mem, BUF, "hello, hvc0\n", 12), 0);
	post(h, 1, 0, BUF, 12, false);
	hx_run_io(h, 100);
	assert_int_equal(g16(h, USED(1) + 2), 1);
	assert_string_equal(chardev_buffer_output(cd, NULL), "hello, hvc0\n");
	storm(h, 1, BUF, false);
	harness_free(h);
	chardev_close(cd);
}

static void test_console_input(void **state)
{
	struct chardev *cd;
	struct harness *h = with_console(&cd);
	char got[8] = { 0 };

	/* Input before any receive buffer waits in the chardev. */
	assert_int_equal(chardev_buffer_inject(cd, "ls -l\n", 6), 0);
	hx_run_io(h, 10);
	assert_int_equal(g16(h, USED(0) + 2), 0);
	/* A 4-byte buffer takes 4 bytes; the rest waits for the next one. */
	post(h, 0, 0, BUF, 4, true);
	hx_run_io(h, 100);
	assert_int_equal(g16(h, USED(0) + 2), 1);
	assert_int_equal(used_len(h, 0, 0), 4);
	post(h, 0, 1, BUF + 0x100, 8, true);
	hx_run_io(h, 100);
	assert_int_equal(g16(h, USED(0) + 2), 2);
	assert_int_equal(used_len(h, 0, 1), 2);
	assert_int_equal(gm_read(&h->vm.mem, BUF, got, 4), 0);
	assert_int_equal(gm_read(&h->vm.mem, BUF + 0x100, got + 4, 2), 0);
	assert_memory_equal(got, "ls -l\n", 6);
	/* A receive buffer with no room is a driver error. */
	post(h, 0, 2, BUF, 0, true);
	assert_int_equal(chardev_buffer_inject(cd, "x", 1), 0);
	hx_run_io(h, 100);
	assert_true(rd(h, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	harness_free(h);
	chardev_close(cd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng_bytes),
		cmocka_unit_test(test_rng_storm_yields),
		cmocka_unit_test(test_console_output),
		cmocka_unit_test(test_console_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
