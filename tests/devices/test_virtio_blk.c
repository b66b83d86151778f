/*
 * test_virtio_blk.c - virtio-blk played by a guest driver written here.
 *
 * The device sits on the virtio-mmio transport (src/virtio/mmio.c) and the
 * test is its guest driver: it initialises the device through the
 * registers (status, features, queue layout, QueueReady), lays out a split
 * ring in guest RAM, builds descriptor chains by hand (including hostile
 * ones), writes QueueNotify, runs the I/O loop (hx_run_io) until the used
 * ring moves, and takes interrupts as a driver would (the shared line's
 * level, InterruptStatus, InterruptAck).
 *
 * Backends: a real temp file through the block layer (data compared with
 * the file byte for byte; flush proven by the driver's counters of
 * fdatasyncs the kernel completed), and the power-cut backend
 * (tests/harness/block_powercut.h) for durability: what a completed flush
 * covered survives a power cut, nothing else is claimed.  A qcow2
 * overlay (made by qemu-img over the temp file) is driven the same way
 * and then checked and compared by qemu-img.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <sched.h>
#include <stdatomic.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "block/block.h"
#include "block_powercut.h"
#include "harness.h"
#include "virtio/blk.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"

#define RAM        (16 << 20)
#define QSZ        256
#define DESC(q)    (0x10000ull + (q) * 0x4000)
#define AVAIL(q)   (DESC(q) + 0x1000)
#define USED(q)    (DESC(q) + 0x2000)
#define HDR        0x200000ull   /* request headers */
#define DATA       0x300000ull   /* data buffers */
#define STATUS     0x280000ull   /* status bytes */
#define DISK       (1 << 20)     /* 2048 sectors */

struct t {
	struct harness *h;
	struct virtio_dev *vd;
	struct virtio_mmio *mmio;
	struct block_dev *bd;        /* the device's backend (owned by it) */
	uint64_t base;               /* the transport's registers */
	unsigned gsi;
	unsigned vring_irqs, config_irqs; /* interrupts the driver took */
	char path[256];
	uint16_t avail_idx[4], used_seen[4];
	uint16_t next_desc[4];
};

/* ---- the guest driver, through the virtio-mmio registers ---- */

static uint32_t rd(struct t *t, unsigned off)
{
	return (uint32_t)hx_mmio_read(t->h, t->base + off, 4);
}

static void wr(struct t *t, unsigned off, uint32_t v)
{
	hx_mmio_write(t->h, t->base + off, 4, v);
}

static void status_set(struct t *t, uint8_t s)
{
	wr(t, VIRTIO_MMIO_STATUS, s);
}

static uint8_t status_get(struct t *t)
{
	return (uint8_t)rd(t, VIRTIO_MMIO_STATUS);
}

/* The driver's interrupt handler: the line and InterruptStatus agree;
 * count and acknowledge. */
static void irq_poll(struct t *t)
{
	uint32_t isr = rd(t, VIRTIO_MMIO_INTERRUPT_STATUS);

	assert_int_equal(hx_irq_level(t->h, t->gsi), isr != 0);
	if (isr & VIRTIO_MMIO_INT_VRING)
		t->vring_irqs++;
	if (isr & VIRTIO_MMIO_INT_CONFIG)
		t->config_irqs++;
	if (isr)
		wr(t, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	assert_false(hx_irq_level(t->h, t->gsi));
}

static void config_read(struct t *t, struct virtio_blk_config *c)
{
	uint8_t *p = (uint8_t *)c;

	/* Byte, word and dword accesses, as drivers make them. */
	for (unsigned i = 0; i < sizeof(*c); i++)
		p[i] = (uint8_t)hx_mmio_read(t->h, t->base + VIRTIO_MMIO_CONFIG + i, 1);
	assert_int_equal(hx_mmio_read(t->h, t->base + VIRTIO_MMIO_CONFIG, 4),
			 (uint32_t)c->capacity);
	assert_int_equal(hx_mmio_read(t->h, t->base + VIRTIO_MMIO_CONFIG + 34, 2),
			 c->num_queues);
}

static uint64_t host_features(struct t *t)
{
	uint64_t f;

	wr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	f = rd(t, VIRTIO_MMIO_DEVICE_FEATURES);
	wr(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	return f | (uint64_t)rd(t, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
}

/* Reset, negotiate the offered features minus `drop`, enable `nq` queues
 * (section 3.1.1 through the registers of 4.2.3). */
static void drv_init(struct t *t, uint64_t drop, unsigned nq)
{
	uint64_t f;

	status_set(t, 0);
	irq_poll(t);
	assert_int_equal(rd(t, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	assert_int_equal(rd(t, VIRTIO_MMIO_VERSION), 2);
	assert_int_equal(rd(t, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
	status_set(t, VIRTIO_STATUS_ACKNOWLEDGE);
	status_set(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	f = host_features(t) & ~drop;
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
	status_set(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK);
	assert_true(status_get(t) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		uint8_t zero[0x3000] = { 0 };

		gm_write(&t->h->vm.mem, DESC(q), zero, sizeof(zero));
		wr(t, VIRTIO_MMIO_QUEUE_SEL, q);
		assert_true(rd(t, VIRTIO_MMIO_QUEUE_NUM_MAX) >= QSZ);
		wr(t, VIRTIO_MMIO_QUEUE_NUM, QSZ);
		wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)DESC(q));
		wr(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
		wr(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)AVAIL(q));
		wr(t, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
		wr(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)USED(q));
		wr(t, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
		wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
		assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 1);
		t->avail_idx[q] = t->used_seen[q] = t->next_desc[q] = 0;
	}
	status_set(t, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
		      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	hx_run_io(t->h, 0);
	irq_poll(t);
	t->vring_irqs = t->config_irqs = 0;
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Put a chain on queue q's available ring; returns its head. */
static uint16_t add_chain(struct t *t, unsigned q, const struct seg *s, int n)
{
	struct guest_mem *m = &t->h->vm.mem;
	uint16_t head = t->next_desc[q], idx;

	for (int i = 0; i < n; i++) {
		uint16_t d = (head + i) % QSZ;
		struct virtq_desc desc = {
			.addr = htole64(s[i].gpa), .len = htole32(s[i].len),
			.flags = htole16((i + 1 < n ? VIRTQ_DESC_F_NEXT : 0) |
					 (s[i].write ? VIRTQ_DESC_F_WRITE : 0)),
			.next = htole16((d + 1) % QSZ),
		};
		gm_write(m, DESC(q) + 16ull * d, &desc, sizeof(desc));
	}
	t->next_desc[q] = (head + n) % QSZ;
	idx = t->avail_idx[q];
	gm_write(m, AVAIL(q) + 4 + 2ull * (idx % QSZ), &head, 2);
	t->avail_idx[q] = ++idx;
	gm_write(m, AVAIL(q) + 2, &idx, 2);
	return head;
}

/* Make `head` available once more (a well-behaved driver never does so
 * while the device holds it). */
static void publish_head(struct t *t, unsigned q, uint16_t head)
{
	uint16_t idx = t->avail_idx[q];

	gm_write(&t->h->vm.mem, AVAIL(q) + 4 + 2ull * (idx % QSZ), &head, 2);
	t->avail_idx[q] = ++idx;
	gm_write(&t->h->vm.mem, AVAIL(q) + 2, &idx, 2);
}

static uint16_t used_idx(struct t *t, unsigned q)
{
	uint16_t v;

	gm_read(&t->h->vm.mem, USED(q) + 2, &v, 2);
	return v;
}

static void used_elem(struct t *t, unsigned q, uint16_t i, uint32_t *id, uint32_t *len)
{
	uint32_t e[2];

	gm_read(&t->h->vm.mem, USED(q) + 4 + 8ull * (i % QSZ), e, 8);
	*id = e[0];
	*len = e[1];
}

/* Kick and run the I/O thread until `n` more used entries appeared (or
 * nothing happens for a while). */
static void kick_wait(struct t *t, unsigned q, unsigned n)
{
	wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	/* Give up after 5 s (an fdatasync on a busy host disk can take a
	 * while).  hx_run_io may return early with nothing done: io_uring
	 * completes blocking operations through task work, which interrupts
	 * epoll_wait (EINTR) before the completion is posted. */
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((uint16_t)(used_idx(t, q) - t->used_seen[q]) < n) {
		hx_run_io(t->h, 100);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 5)
			break;
	}
	hx_run_io(t->h, 0);
	irq_poll(t);
}

/* Kick when nothing is expected to complete. */
static void kick_idle(struct t *t, unsigned q)
{
	wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	hx_run_io(t->h, 50);
	irq_poll(t);
}

static void put_hdr(struct t *t, uint64_t gpa, uint32_t type, uint64_t sector)
{
	struct virtio_blk_outhdr h = { htole32(type), 0, htole64(sector) };

	gm_write(&t->h->vm.mem, gpa, &h, sizeof(h));
}

static uint8_t status_at(struct t *t, uint64_t gpa)
{
	uint8_t s;

	gm_read(&t->h->vm.mem, gpa, &s, 1);
	return s;
}

/* One request with header, optional data (in or out) and status; waits
 * for it and returns the status (0xff if it did not complete). */
static uint8_t request(struct t *t, unsigned q, uint32_t type, uint64_t sector,
		       uint64_t data_gpa, uint32_t data_len, bool data_in,
		       uint32_t *used_len)
{
	struct seg s[3];
	int n = 0;
	uint32_t id, len;
	uint16_t head;

	put_hdr(t, HDR, type, sector);
	gm_write(&t->h->vm.mem, STATUS, &(uint8_t){ 0xff }, 1);
	s[n++] = (struct seg){ HDR, 16, false };
	if (data_len)
		s[n++] = (struct seg){ data_gpa, data_len, data_in };
	s[n++] = (struct seg){ STATUS, 1, true };
	/* Like Linux: interrupt me once the next used entry is there. */
	gm_write(&t->h->vm.mem, AVAIL(q) + 4 + 2 * QSZ, &t->used_seen[q], 2);
	head = add_chain(t, q, s, n);
	kick_wait(t, q, 1);
	if (used_idx(t, q) == t->used_seen[q])
		return 0xff;
	used_elem(t, q, t->used_seen[q], &id, &len);
	t->used_seen[q]++;
	assert_int_equal(id, head);
	if (used_len)
		*used_len = len;
	return status_at(t, STATUS);
}

/* ---- setup ---- */

static void make_file(struct t *t, uint8_t seed)
{
	uint8_t *buf = malloc(DISK);
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	snprintf(t->path, sizeof(t->path), "%s/kvmm-test-vblk-XXXXXX", dir);
	fd = mkstemp(t->path);
	assert_true(fd >= 0);
	for (int i = 0; i < DISK; i++)
		buf[i] = (uint8_t)(i * 31 + seed + (i >> 12));
	assert_int_equal(pwrite(fd, buf, DISK, 0), DISK);
	close(fd);
	free(buf);
}

static void create(struct t *t, struct virtio_blk_opts *o)
{
	char err[256] = "";
	int r = virtio_blk_create(&t->h->vm, &t->h->loop, o, &t->vd, err, sizeof(err));

	if (r)
		fail_msg("virtio_blk_create: %d %s", r, err);
	assert_int_equal(virtio_mmio_create(&t->h->vm, t->vd, 0, &t->mmio), 0);
	t->base = virtio_mmio_base(t->mmio);
	t->gsi = virtio_mmio_gsi(t->mmio);
}

/* A device on a temp file, opened by the test so it can see bd->stats. */
static struct t *setup_file(bool readonly, const char *serial, unsigned queues)
{
	struct t *t = calloc(1, sizeof(*t));
	struct block_opts bo = { .readonly = readonly };
	struct virtio_blk_opts o = { .readonly = readonly, .serial = serial, .queues = queues };
	char err[256];

	t->h = harness_new(RAM);
	make_file(t, 5);
	bo.path = o.path = t->path;
	assert_int_equal(block_open(&bo, &t->h->loop, &t->bd, err, sizeof(err)), 0);
	o.bdev = t->bd;
	create(t, &o);
	return t;
}

static struct t *setup_powercut(unsigned queues)
{
	struct t *t = calloc(1, sizeof(*t));
	struct virtio_blk_opts o = { .serial = "pc", .queues = queues };

	t->h = harness_new(RAM);
	assert_int_equal(block_powercut_open(DISK, false, &t->h->loop, &t->bd), 0);
	o.bdev = t->bd;
	create(t, &o);
	return t;
}

/* The transport owns the device: the machine destroys it. */
static void finish(struct t *t)
{
	if (t->path[0])
		unlink(t->path);
	harness_free(t->h);
	free(t);
}

static void file_read(struct t *t, void *buf, size_t len, off_t off)
{
	int fd = open(t->path, O_RDONLY);

	assert_int_equal(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

/* ---- tests ---- */

/* A guest on a qcow2 overlay of the temp file: reads show the backing
 * file, writes (whole and partial clusters) land in the overlay only, and
 * QEMU finds the overlay clean and holding exactly what was written. */
static void test_qcow2_overlay(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct virtio_blk_opts o = { .serial = "qc", .queues = 1 };
	struct block_opts bo = { .format = "qcow2" };
	struct guest_mem *m;
	static uint8_t buf[65536], want[DISK];
	char ov[300], cmd[1200], err[256];
	int fd;

	(void)state;
	if (system("qemu-img --version >/dev/null 2>&1"))
		skip();
	t->h = harness_new(RAM);
	m = &t->h->vm.mem;
	make_file(t, 9);
	file_read(t, want, DISK, 0);
	snprintf(ov, sizeof(ov), "%s.qcow2", t->path);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img create -q -f qcow2 -o cluster_size=4k -b '%s' -F raw '%s'", t->path, ov);
	assert_int_equal(system(cmd), 0);
	bo.path = o.path = ov;
	assert_int_equal(block_open(&bo, &t->h->loop, &t->bd, err, sizeof(err)), 0);
	o.bdev = t->bd;
	create(t, &o);
	drv_init(t, 0, 1);

	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 100, DATA, 4096, true, NULL), VIRTIO_BLK_S_OK);
	gm_read(m, DATA, buf, 4096);
	assert_memory_equal(buf, want + 100 * 512, 4096);
	for (int i = 0; i < 65536; i++)
		buf[i] = (uint8_t)(i * 13 + 3);
	gm_write(m, DATA, buf, sizeof(buf));
	/* 64 KiB at sector 1000 (not cluster aligned), then one sector. */
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 1000, DATA, 65536, false, NULL), VIRTIO_BLK_S_OK);
	memcpy(want + 1000 * 512, buf, 65536);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 3, DATA + 512, 512, false, NULL), VIRTIO_BLK_S_OK);
	memcpy(want + 3 * 512, buf + 512, 512);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_true(t->bd->stats.flushes_done >= 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA + 0x100000, 65536, true, NULL), VIRTIO_BLK_S_OK);
	gm_read(m, DATA + 0x100000, buf, 65536);
	assert_memory_equal(buf, want, 65536);

	harness_free(t->h);
	/* The backing file is untouched; the overlay is clean and right. */
	file_read(t, buf, 4096, 1000 * 512);
	assert_memory_not_equal(buf, want + 1000 * 512, 4096);
	snprintf(cmd, sizeof(cmd), "%s.want", t->path);
	fd = open(cmd, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, want, DISK, 0), DISK);
	close(fd);
	snprintf(cmd, sizeof(cmd),
		 "qemu-img check -q '%s' && qemu-img compare -q -f qcow2 -F raw '%s' '%s.want'",
		 ov, ov, t->path);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s.want", t->path);
	unlink(cmd);
	unlink(ov);
	unlink(t->path);
	free(t);
}

static void test_config_and_features(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct virtio_blk_config c;
	uint64_t f = host_features(t);

	config_read(t, &c);
	assert_int_equal(le64toh(c.capacity), DISK / 512);
	assert_int_equal(le32toh(c.seg_max), QSZ - 2);
	assert_int_equal(le32toh(c.size_max), 16 << 20);
	assert_int_equal(le32toh(c.blk_size), 512);
	assert_int_equal(le32toh(c.max_discard_seg), 64);
	assert_int_equal(c.write_zeroes_may_unmap, 1);
	assert_true(f & (1u << VIRTIO_BLK_F_FLUSH));
	assert_true(f & (1u << VIRTIO_BLK_F_DISCARD));
	assert_true(f & (1u << VIRTIO_BLK_F_WRITE_ZEROES));
	assert_true(f & (1u << VIRTIO_BLK_F_SEG_MAX));
	assert_true(f & (1u << VIRTIO_BLK_F_SIZE_MAX));
	assert_true(f & (1u << VIRTIO_BLK_F_BLK_SIZE));
	assert_false(f & (1u << VIRTIO_BLK_F_RO));
	assert_false(f & (1u << VIRTIO_BLK_F_MQ));
	assert_true(f & (1ull << VIRTIO_F_VERSION_1));
	finish(t);

	/* Read-only and multi-queue. */
	t = setup_file(true, NULL, 4);
	f = host_features(t);
	config_read(t, &c);
	assert_true(f & (1u << VIRTIO_BLK_F_RO));
	assert_true(f & (1u << VIRTIO_BLK_F_MQ));
	assert_false(f & (1u << VIRTIO_BLK_F_DISCARD));
	assert_int_equal(le16toh(c.num_queues), 4);
	assert_int_equal(t->vd->nr_queues, 4);
	finish(t);
}

/* gm_note_write reports: the ranges a device said it wrote. */
static struct { uint64_t gpa, len; } notes[64];
static unsigned nr_notes;

static void note(void *opaque, uint64_t gpa, uint64_t len)
{
	if (nr_notes < 64)
		notes[nr_notes++] = (typeof(notes[0])){ gpa, len };
}

static bool noted(uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < nr_notes; i++)
		if (notes[i].gpa <= gpa && gpa + len <= notes[i].gpa + notes[i].len)
			return true;
	return false;
}

static void test_read_write_file(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct guest_mem *m = &t->h->vm.mem;
	static uint8_t buf[65536], ref[65536];
	uint32_t len;

	drv_init(t, 0, 1);
	/* Read 8 sectors at 100: exactly the file's bytes, used len data+1,
	 * and the machine told about the data and the status byte. */
	nr_notes = 0;
	m->write_notify = note;
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 100, DATA, 4096, true, &len), VIRTIO_BLK_S_OK);
	m->write_notify = NULL;
	assert_int_equal(len, 4097);
	assert_true(noted(DATA, 4096));
	assert_true(noted(STATUS, 1));
	gm_read(m, DATA, buf, 4096);
	file_read(t, ref, 4096, 100 * 512);
	assert_memory_equal(buf, ref, 4096);
	/* Write 64 KiB at sector 1000 and read it back. */
	for (int i = 0; i < 65536; i++)
		buf[i] = (uint8_t)(i * 7 + 1);
	gm_write(m, DATA, buf, sizeof(buf));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 1000, DATA, 65536, false, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 1);
	file_read(t, ref, 65536, 1000 * 512);
	assert_memory_equal(buf, ref, 65536);
	memset(buf, 0, sizeof(buf));
	gm_write(m, DATA + 0x100000, buf, sizeof(buf));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 1000, DATA + 0x100000, 65536, true, NULL), VIRTIO_BLK_S_OK);
	gm_read(m, DATA + 0x100000, buf, sizeof(buf));
	assert_memory_equal(buf, ref, 65536);
	/* The last sector exactly. */
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, DISK / 512 - 1, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_true(t->vring_irqs >= 4);
	assert_int_equal(t->config_irqs, 0);
	finish(t);
}

/* The spec forbids relying on framing: a header split over three
 * descriptors, data over many, the status byte sharing the last data
 * descriptor. */
static void test_odd_framing(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct guest_mem *m = &t->h->vm.mem;
	uint8_t buf[2048], ref[2048], st;
	struct seg s[8];
	uint32_t id, len;

	drv_init(t, 0, 1);
	put_hdr(t, HDR, VIRTIO_BLK_T_IN, 7);
	s[0] = (struct seg){ HDR, 3, false };
	s[1] = (struct seg){ HDR + 3, 9, false };
	s[2] = (struct seg){ HDR + 12, 4, false };
	s[3] = (struct seg){ DATA, 1000, true };
	s[4] = (struct seg){ DATA + 5000, 24, true };
	s[5] = (struct seg){ DATA + 9000, 1024 + 1, true }; /* last byte: status */
	add_chain(t, 0, s, 6);
	kick_wait(t, 0, 1);
	assert_int_equal(used_idx(t, 0), 1);
	used_elem(t, 0, 0, &id, &len);
	t->used_seen[0] = 1;
	assert_int_equal(len, 2049);
	gm_read(m, DATA + 9000 + 1024, &st, 1);
	assert_int_equal(st, VIRTIO_BLK_S_OK);
	gm_read(m, DATA, buf, 1000);
	gm_read(m, DATA + 5000, buf + 1000, 24);
	gm_read(m, DATA + 9000, buf + 1024, 1024);
	file_read(t, ref, 2048, 7 * 512);
	assert_memory_equal(buf, ref, 2048);

	/* A write whose data starts inside the header's descriptor. */
	uint8_t hd[16 + 512];
	struct virtio_blk_outhdr h = { htole32(VIRTIO_BLK_T_OUT), 0, htole64(3) };
	memcpy(hd, &h, 16);
	for (int i = 0; i < 512; i++)
		hd[16 + i] = (uint8_t)(0xc3 ^ i);
	gm_write(m, HDR, hd, sizeof(hd));
	s[0] = (struct seg){ HDR, 16 + 500, false };
	s[1] = (struct seg){ HDR + 516, 12, false };
	s[2] = (struct seg){ STATUS, 1, true };
	add_chain(t, 0, s, 3);
	kick_wait(t, 0, 1);
	assert_int_equal(status_at(t, STATUS), VIRTIO_BLK_S_OK);
	t->used_seen[0]++;
	file_read(t, ref, 512, 3 * 512);
	assert_memory_equal(ref, hd + 16, 512);
	finish(t);
}

/* Many requests in one kick: one batch, all complete, one submit. */
static void test_batch(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct guest_mem *m = &t->h->vm.mem;
	uint64_t enters;

	drv_init(t, 0, 1);
	for (int i = 0; i < 64; i++) {
		struct seg s[3] = {
			{ HDR + 16 * i, 16, false },
			{ DATA + 4096ull * i, 4096, true },
			{ STATUS + i, 1, true },
		};
		put_hdr(t, HDR + 16 * i, VIRTIO_BLK_T_IN, 8ull * i);
		add_chain(t, 0, s, 3);
	}
	enters = t->bd->stats.sqes[BLOCK_OP_READ];
	kick_wait(t, 0, 64);
	assert_int_equal(used_idx(t, 0), 64);
	assert_int_equal(t->bd->stats.sqes[BLOCK_OP_READ] - enters, 64);
	for (int i = 0; i < 64; i++) {
		uint8_t buf[4096], ref[4096];

		assert_int_equal(status_at(t, STATUS + i), VIRTIO_BLK_S_OK);
		gm_read(m, DATA + 4096ull * i, buf, 4096);
		file_read(t, ref, 4096, 4096 * i);
		assert_memory_equal(buf, ref, 4096);
	}
	finish(t);
}

static void test_flush_reaches_fdatasync(void **state)
{
	struct t *t = setup_file(false, NULL, 1);

	drv_init(t, 0, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 0, DATA, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->bd->stats.flushes_done, 0);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->bd->stats.sqes[BLOCK_OP_FLUSH], 1);
	assert_int_equal(t->bd->stats.flushes_done, 1);
	/* Without FLUSH negotiated the device is write-through: each write
	 * is followed by an fdatasync before its status. */
	drv_init(t, 1ull << VIRTIO_BLK_F_FLUSH, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 0, DATA, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->bd->stats.flushes_done, 2);
	finish(t);
}

static uint64_t blocks_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_blocks;
}

static uint8_t zap(struct t *t, uint32_t type, const struct virtio_blk_discard_write_zeroes *r,
		   int n, uint32_t bytes)
{
	struct seg s[3];
	uint32_t id, len;

	put_hdr(t, HDR, type, 0);
	gm_write(&t->h->vm.mem, HDR + 16, r, n * sizeof(*r));
	int n_seg = 0;

	s[n_seg++] = (struct seg){ HDR, 16, false };
	if (bytes)
		s[n_seg++] = (struct seg){ HDR + 16, bytes, false };
	s[n_seg++] = (struct seg){ STATUS, 1, true };
	gm_write(&t->h->vm.mem, STATUS, &(uint8_t){ 0xff }, 1);
	add_chain(t, 0, s, n_seg);
	kick_wait(t, 0, 1);
	if (used_idx(t, 0) == t->used_seen[0])
		return 0xff;
	used_elem(t, 0, t->used_seen[0]++, &id, &len);
	return status_at(t, STATUS);
}

static void expect_zeros(struct t *t, uint64_t sector, uint32_t sectors, bool zero)
{
	uint8_t *buf = malloc(sectors * 512);
	uint32_t nz = 0;

	file_read(t, buf, sectors * 512, sector * 512);
	for (uint32_t i = 0; i < sectors * 512; i++)
		nz += buf[i] != 0;
	if (zero)
		assert_int_equal(nz, 0);
	else
		assert_true(nz > sectors * 256);
	free(buf);
}

static void test_discard_write_zeroes(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	uint64_t before;
	int fd = open(t->path, O_RDONLY);

	fdatasync(fd);
	close(fd);
	before = blocks_of(t->path);
	drv_init(t, 0, 1);
	struct virtio_blk_discard_write_zeroes r[3] = {
		{ htole64(512), htole32(512), 0 },
		{ htole64(1536), htole32(256), 0 },
	};
	assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, r, 2, 32), VIRTIO_BLK_S_OK);
	assert_true(blocks_of(t->path) <= before - 768);
	expect_zeros(t, 512, 512, true);
	expect_zeros(t, 1536, 256, true);
	expect_zeros(t, 0, 512, false);
	expect_zeros(t, 1024, 512, false);
	/* Write zeroes, with and without unmap. */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(10), htole32(3), 0 };
	r[1] = (struct virtio_blk_discard_write_zeroes){ htole64(100), htole32(64),
							   htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) };
	assert_int_equal(zap(t, VIRTIO_BLK_T_WRITE_ZEROES, r, 2, 32), VIRTIO_BLK_S_OK);
	expect_zeros(t, 10, 3, true);
	expect_zeros(t, 100, 64, true);
	expect_zeros(t, 13, 87, false);
	/* Refusals. */
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(8),
							   htole32(VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) };
	assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, r, 1, 16), VIRTIO_BLK_S_UNSUPP);
	r[0].flags = htole32(4);
	assert_int_equal(zap(t, VIRTIO_BLK_T_WRITE_ZEROES, r, 1, 16), VIRTIO_BLK_S_UNSUPP);
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(DISK / 512 - 4), htole32(8), 0 };
	assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, r, 1, 16), VIRTIO_BLK_S_IOERR);
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(UINT64_MAX - 2), htole32(8), 0 };
	assert_int_equal(zap(t, VIRTIO_BLK_T_WRITE_ZEROES, r, 1, 16), VIRTIO_BLK_S_IOERR);
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(0), htole32(8), 0 };
	assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, r, 1, 12), VIRTIO_BLK_S_IOERR);
	{
		/* More ranges than max_discard_seg. */
		static struct virtio_blk_discard_write_zeroes many[65];
		for (int i = 0; i < 65; i++)
			many[i] = (struct virtio_blk_discard_write_zeroes){ htole64(i), htole32(1), 0 };
		assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, many, 65, 65 * 16), VIRTIO_BLK_S_UNSUPP);
	}
	expect_zeros(t, 1024, 512, false);
	/* Not negotiated: unsupported. */
	drv_init(t, (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES), 1);
	r[0] = (struct virtio_blk_discard_write_zeroes){ htole64(1024), htole32(8), 0 };
	assert_int_equal(zap(t, VIRTIO_BLK_T_DISCARD, r, 1, 16), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(zap(t, VIRTIO_BLK_T_WRITE_ZEROES, r, 1, 16), VIRTIO_BLK_S_UNSUPP);
	expect_zeros(t, 1024, 8, false);
	finish(t);
}

static void test_get_id(void **state)
{
	struct t *t = setup_file(false, "0123456789abcdefghij", 1);
	uint8_t id[32];
	uint32_t len;

	drv_init(t, 0, 1);
	memset(id, 0xee, sizeof(id));
	gm_write(&t->h->vm.mem, DATA, id, sizeof(id));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true, &len), VIRTIO_BLK_S_OK);
	assert_int_equal(len, 21);
	gm_read(&t->h->vm.mem, DATA, id, 21);
	assert_memory_equal(id, "0123456789abcdefghij", 20); /* no NUL */
	finish(t);

	t = setup_file(false, "short", 1);
	drv_init(t, 0, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_GET_ID, 0, DATA, 20, true, NULL), VIRTIO_BLK_S_OK);
	gm_read(&t->h->vm.mem, DATA, id, 20);
	assert_memory_equal(id, "short\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
	finish(t);

	/* A serial longer than 20 bytes is refused at creation. */
	struct harness *h = harness_new(RAM);
	struct virtio_dev *vd;
	char err[256];
	struct virtio_blk_opts o = { .path = "/nonexistent", .serial = "012345678901234567890" };
	assert_int_equal(virtio_blk_create(&h->vm, &h->loop, &o, &vd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "serial"));
	o.serial = NULL;
	assert_int_equal(virtio_blk_create(&h->vm, &h->loop, &o, &vd, err, sizeof(err)), -ENOENT);
	harness_free(h);
}

static void test_refusals(void **state)
{
	struct t *t = setup_file(true, NULL, 1);
	uint8_t before[4096], after[4096];

	drv_init(t, 0, 1);
	file_read(t, before, 4096, 0);
	gm_write(&t->h->vm.mem, DATA, "hello", 5);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 0, DATA, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	file_read(t, after, 4096, 0);
	assert_memory_equal(before, after, 4096);
	finish(t);

	t = setup_file(false, NULL, 1);
	drv_init(t, 0, 1);
	/* Out of range, overflowing, unaligned lengths, unknown types. */
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, DISK / 512, DATA, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, DISK / 512 - 1, DATA, 1024, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, UINT64_MAX / 512 + 5, DATA, 512, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, UINT64_MAX, DATA, 512, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 100, true, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 0, DATA, 513, false, NULL), VIRTIO_BLK_S_IOERR);
	assert_int_equal(request(t, 0, 2, 0, DATA, 512, false, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(t, 0, 10, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(request(t, 0, 0xffffffff, 0, 0, 0, false, NULL), VIRTIO_BLK_S_UNSUPP);
	/* Still healthy. */
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	finish(t);
}

/* Chains that are not requests break the device (DEVICE_NEEDS_RESET and
 * a configuration interrupt), kvmm survives, a reset heals. */
static void test_hostile_chains(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct seg s[3];

	static const struct {
		struct seg s[3];
		int n;
	} bad[] = {
		{ { { HDR, 16, false }, { DATA, 512, false } }, 2 },           /* no writable byte */
		{ { { HDR, 15, false }, { STATUS, 1, true } }, 2 },            /* short header */
		{ { { STATUS, 1, true } }, 1 },                                /* no header at all */
		{ { { HDR, 16, false }, { RAM - 8, 16, true } }, 2 },           /* past RAM */
		{ { { HDR, 16, false }, { STATUS, 1, true }, { DATA, 8, false } }, 3 }, /* readable after writable */
	};
	for (unsigned k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		drv_init(t, 0, 1);
		put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
		add_chain(t, 0, bad[k].s, bad[k].n);
		kick_idle(t, 0);
		assert_true(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		assert_int_equal(t->config_irqs, 1);
		assert_int_equal(used_idx(t, 0), 0);
		/* Further kicks are ignored until reset. */
		s[0] = (struct seg){ HDR, 16, false };
		s[1] = (struct seg){ STATUS, 1, true };
		add_chain(t, 0, s, 2);
		kick_idle(t, 0);
		assert_int_equal(used_idx(t, 0), 0);
	}
	/* A reset heals it. */
	drv_init(t, 0, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	/* A bogus available index. */
	uint16_t idx = 1000;
	gm_write(&t->h->vm.mem, AVAIL(0) + 2, &idx, 2);
	kick_idle(t, 0);
	assert_true(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	finish(t);
}

/* A driver re-offering a head that is still in flight: after a queue's
 * worth of requests in flight the device takes no more (it would otherwise
 * queue I/O without bound). */
static void test_reoffered_head(void **state)
{
	struct t *t = setup_powercut(1);
	struct seg s[3] = { { HDR, 16, false }, { DATA, 512, true }, { STATUS, 1, true } };
	struct block_powercut *pc = block_powercut_of(t->bd);
	uint16_t head;

	drv_init(t, 0, 1);
	block_powercut_hold(t->bd, true);
	put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
	head = add_chain(t, 0, s, 3);
	for (int i = 1; i < QSZ; i++)
		publish_head(t, 0, head);
	kick_idle(t, 0);
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	publish_head(t, 0, head);
	kick_idle(t, 0);
	/* virtio-blk does not even take it: it pops nothing while a queue's
	 * worth of its requests are in flight. */
	assert_int_equal(pc->submitted[BLOCK_OP_READ], QSZ);
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	/* The QSZ requests taken complete; then the extra one is taken. */
	block_powercut_hold(t->bd, false);
	for (int i = 0; i < 5; i++)
		hx_run_io(t->h, 20);
	assert_int_equal(pc->ops[BLOCK_OP_READ], QSZ + 1);
	drv_init(t, 0, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	finish(t);
}

static void fill(struct t *t, uint64_t gpa, uint8_t v, size_t n)
{
	uint8_t *p = gm_ptr(&t->h->vm.mem, gpa, n);

	memset(p, v, n);
}

/* A reset while a request is in flight: its completion is dropped, and
 * the reset completes (status reads 0) only once the request is over, so
 * the read cannot land in a buffer the re-initialised driver reuses. */
static void test_reset_in_flight(void **state)
{
	struct t *t = setup_powercut(1);
	struct seg s[3] = { { HDR, 16, false }, { DATA, 512, true }, { STATUS, 1, true } };

	drv_init(t, 0, 1);
	block_powercut_hold(t->bd, true);
	put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
	gm_write(&t->h->vm.mem, STATUS, &(uint8_t){ 0xff }, 1);
	add_chain(t, 0, s, 3);
	kick_idle(t, 0);
	assert_int_equal(used_idx(t, 0), 0);
	fill(t, DATA, 0x5a, 512);
	status_set(t, 0);
	assert_int_not_equal(status_get(t), 0);
	hx_run_io(t->h, 20);
	assert_int_not_equal(status_get(t), 0); /* still held by the backend */
	block_powercut_hold(t->bd, false);
	hx_run_io(t->h, 50);
	assert_int_equal(status_get(t), 0);
	assert_int_equal(status_at(t, DATA), 0);  /* the disk's zeros landed first */
	assert_int_equal(used_idx(t, 0), 0);
	assert_int_equal(status_at(t, STATUS), 0xff);
	/* And the device works after re-initialisation. */
	drv_init(t, 0, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	/* A request still in flight at destroy is waited for and freed. */
	block_powercut_hold(t->bd, true);
	add_chain(t, 0, s, 3);
	kick_idle(t, 0);
	finish(t);
}

/* Completed, flushed writes survive a power cut; nothing else is claimed. */
static void test_power_cut(void **state)
{
	struct t *t = setup_powercut(1);
	struct block_powercut *pc = block_powercut_of(t->bd);
	struct seg s[3] = { { HDR, 16, false }, { DATA + 0x10000, 4096, false }, { STATUS, 1, true } };
	uint8_t expect[4096];

	drv_init(t, 0, 1);
	fill(t, DATA, 0xa1, 4096);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 0, DATA, 4096, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	fill(t, DATA, 0xb2, 4096);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 8, DATA, 4096, false, NULL), VIRTIO_BLK_S_OK);
	/* Completed but not flushed: visible, not durable. */
	assert_int_equal(pc->current[8 * 512], 0xb2);
	assert_int_equal(pc->durable[8 * 512], 0);
	/* In flight at the cut: a write and a flush. */
	block_powercut_hold(t->bd, true);
	fill(t, DATA + 0x10000, 0xc3, 4096);
	put_hdr(t, HDR, VIRTIO_BLK_T_OUT, 16);
	gm_write(&t->h->vm.mem, STATUS, &(uint8_t){ 0xff }, 1);
	add_chain(t, 0, s, 3);
	kick_idle(t, 0);
	assert_int_equal(used_idx(t, 0), t->used_seen[0]); /* not claimed */
	block_powercut_cut(t->bd);
	hx_run_io(t->h, 20);
	/* The in-flight write reports an error, never success. */
	assert_int_equal(used_idx(t, 0), (uint16_t)(t->used_seen[0] + 1));
	t->used_seen[0]++;
	assert_int_equal(status_at(t, STATUS), VIRTIO_BLK_S_IOERR);
	memset(expect, 0xa1, sizeof(expect));
	assert_memory_equal(pc->durable, expect, 4096);
	memset(expect, 0, sizeof(expect));
	assert_memory_equal(pc->durable + 8 * 512, expect, 4096);
	assert_memory_equal(pc->durable + 16 * 512, expect, 4096);
	/* After the cut the guest reads the durable image. */
	block_powercut_hold(t->bd, false);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 8, DATA, 4096, true, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gm_ptr(&t->h->vm.mem, DATA, 4096), expect, 4096);
	/* A failing flush is reported as an error, not as success. */
	pc->fail_next[BLOCK_OP_FLUSH] = -EIO;
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_IOERR);

	/* Write-through (FLUSH not negotiated): a completed write is durable. */
	drv_init(t, 1ull << VIRTIO_BLK_F_FLUSH, 1);
	fill(t, DATA, 0xd4, 4096);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 24, DATA, 4096, false, NULL), VIRTIO_BLK_S_OK);
	block_powercut_cut(t->bd);
	memset(expect, 0xd4, sizeof(expect));
	assert_memory_equal(pc->durable + 24 * 512, expect, 4096);
	finish(t);
}

/* cache=none: O_DIRECT, BLK_SIZE is the host's block, guest buffers at odd
 * addresses are bounced, data still lands byte for byte. */
static void test_cache_none(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct virtio_blk_opts o = { .cache = VIRTIO_BLK_CACHE_NONE };
	struct virtio_blk_config c;
	uint8_t buf[8192], ref[8192];
	uint32_t blk;

	t->h = harness_new(RAM);
	make_file(t, 9);
	o.path = t->path;
	create(t, &o);
	config_read(t, &c);
	blk = le32toh(c.blk_size);
	assert_true(blk >= 512 && blk <= 4096 && !(blk & (blk - 1)));
	assert_int_equal(le32toh(c.discard_sector_alignment), blk / 512);
	drv_init(t, 0, 1);
	for (int i = 0; i < 8192; i++)
		buf[i] = (uint8_t)(i * 5 + 3);
	gm_write(&t->h->vm.mem, DATA + 1, buf, sizeof(buf));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_OUT, 64, DATA + 1, 8192, false, NULL), VIRTIO_BLK_S_OK);
	file_read(t, ref, sizeof(ref), 64 * 512);
	assert_memory_equal(buf, ref, sizeof(ref));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 64, DATA + 0x10003, 8192, true, NULL), VIRTIO_BLK_S_OK);
	gm_read(&t->h->vm.mem, DATA + 0x10003, buf, sizeof(buf));
	assert_memory_equal(buf, ref, sizeof(ref));
	/* Aligned: straight into guest RAM. */
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 64, DATA + 0x20000, 8192, true, NULL), VIRTIO_BLK_S_OK);
	assert_memory_equal(gm_ptr(&t->h->vm.mem, DATA + 0x20000, 8192), ref, sizeof(ref));
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false, NULL), VIRTIO_BLK_S_OK);
	finish(t);
}

/* The driver restarts queue q (QueueReady 0, rings zeroed and set up
 * again, QueueReady 1) without resetting the device. */
static void queue_restart(struct t *t, unsigned q)
{
	uint8_t zero[0x3000] = { 0 };

	wr(t, VIRTIO_MMIO_QUEUE_SEL, q);
	wr(t, VIRTIO_MMIO_QUEUE_READY, 0);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 0);
	gm_write(&t->h->vm.mem, DESC(q), zero, sizeof(zero));
	wr(t, VIRTIO_MMIO_QUEUE_NUM, QSZ);
	wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)DESC(q));
	wr(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
	wr(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)AVAIL(q));
	wr(t, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, 0);
	wr(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)USED(q));
	wr(t, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, 0);
	wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(rd(t, VIRTIO_MMIO_QUEUE_READY), 1);
	t->avail_idx[q] = t->used_seen[q] = t->next_desc[q] = 0;
}

/* A request in flight across a queue restart (no device reset): its
 * completion must not land in the new rings. */
static void test_queue_restart_in_flight(void **state)
{
	struct t *t = setup_powercut(1);
	struct seg s[3] = { { HDR, 16, false }, { DATA, 512, true }, { STATUS, 1, true } };

	drv_init(t, 0, 1);
	block_powercut_hold(t->bd, true);
	put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
	add_chain(t, 0, s, 3);
	kick_idle(t, 0);
	assert_int_equal(used_idx(t, 0), 0);
	queue_restart(t, 0);
	block_powercut_hold(t->bd, false);
	for (int i = 0; i < 5; i++)
		hx_run_io(t->h, 20);
	assert_int_equal(used_idx(t, 0), 0);
	/* The new ring works, and the device is healthy. */
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(used_idx(t, 0), 1);
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	finish(t);
}

/* Cycling QueueReady with slow requests in flight must not pile up
 * requests beyond the queue size. */
static void test_queue_restart_bound(void **state)
{
	struct t *t = setup_powercut(1);
	struct block_powercut *pc = block_powercut_of(t->bd);
	struct seg s[3] = { { HDR, 16, false }, { DATA, 512, true }, { STATUS, 1, true } };

	drv_init(t, 0, 1);
	block_powercut_hold(t->bd, true);
	for (int c = 0; c < 20; c++) {
		put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
		for (int i = 0; i < QSZ / 3; i++)
			add_chain(t, 0, s, 3);
		kick_idle(t, 0);
		assert_true(pc->submitted[BLOCK_OP_READ] - pc->ops[BLOCK_OP_READ] <= QSZ);
		queue_restart(t, 0);
	}
	assert_int_equal(pc->submitted[BLOCK_OP_READ] - pc->ops[BLOCK_OP_READ], QSZ);
	/* Once they complete (dropped: their rings are gone), the queue is
	 * served again. */
	block_powercut_hold(t->bd, false);
	for (int i = 0; i < 50 && pc->ops[BLOCK_OP_READ] != QSZ; i++)
		hx_run_io(t->h, 20);
	assert_int_equal(pc->ops[BLOCK_OP_READ], QSZ);
	assert_int_equal(used_idx(t, 0), 0);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 0, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	finish(t);
}

/* A second vCPU re-offering a chain as soon as it is answered (here: the
 * write_notify hook, called at every push) must not keep the I/O thread
 * in one queue_notify forever. */
static struct {
	struct t *t;
	unsigned pushes;
} reoffer;

static void reoffer_notify(void *opaque, uint64_t gpa, uint64_t len)
{
	(void)opaque;
	(void)len;
	if (gpa != USED(0) + 2)
		return;
	if (++reoffer.pushes > 2000000)
		return; /* a stop for the unfixed device */
	publish_head(reoffer.t, 0, 0);
}

static void test_reoffer_livelock(void **state)
{
	struct t *t = setup_powercut(1);
	struct seg s[3] = { { HDR, 16, false }, { DATA, 512, true }, { STATUS, 1, true } };

	drv_init(t, 0, 1);
	put_hdr(t, HDR, 0x1234 /* unsupported: answered at once */, 0);
	add_chain(t, 0, s, 3);
	reoffer.t = t;
	reoffer.pushes = 0;
	t->h->vm.mem.write_notify = reoffer_notify;
	wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
	/* One round of the event loop (hx_run_io would go on while kicks
	 * keep coming, which is the point of the fix). */
	evloop_run_once(&t->h->loop, 100);
	t->h->vm.mem.write_notify = NULL;
	assert_true(reoffer.pushes >= 1);
	assert_true(reoffer.pushes <= 4 * QSZ);
	finish(t);
}

/* More data segments than the SEG_MAX we advertise: IOERR (here the status
 * byte shares the last data descriptor, so 256 descriptors carry 255). */
static void test_seg_max_enforced(void **state)
{
	struct t *t = setup_powercut(1);
	struct seg s[QSZ];
	const uint64_t st = DATA + 254 * 0x400ull + 512;

	drv_init(t, 0, 1);
	put_hdr(t, HDR, VIRTIO_BLK_T_IN, 0);
	s[0] = (struct seg){ HDR, 16, false };
	for (int i = 1; i < QSZ; i++)
		s[i] = (struct seg){ DATA + (i - 1) * 0x400ull, i == QSZ - 1 ? 513 : 512, true };
	gm_write(&t->h->vm.mem, st, &(uint8_t){ 0xff }, 1);
	add_chain(t, 0, s, QSZ);
	kick_wait(t, 0, 1);
	assert_int_equal(used_idx(t, 0), 1);
	assert_int_equal(status_at(t, st), VIRTIO_BLK_S_IOERR);
	/* At SEG_MAX it is served. */
	t->used_seen[0] = 1;
	s[QSZ - 2].len = 513;
	gm_write(&t->h->vm.mem, DATA + 253 * 0x400ull + 512, &(uint8_t){ 0xff }, 1);
	add_chain(t, 0, s, QSZ - 1);
	kick_wait(t, 0, 1);
	assert_int_equal(used_idx(t, 0), 2);
	assert_int_equal(status_at(t, DATA + 253 * 0x400ull + 512), VIRTIO_BLK_S_OK);
	finish(t);
}

/* The reviewer's request: 254 data descriptors naming the same misaligned
 * 8 MiB buffer (2 GiB) on a cache=none disk.  It is refused, and the host
 * does not allocate a bounce buffer the size of the request. */
static void test_bounce_bounded(void **state)
{
	struct t *t = calloc(1, sizeof(*t));
	struct virtio_blk_opts o = { .cache = VIRTIO_BLK_CACHE_NONE };
	enum { NSEG = QSZ - 2, BUF = 8 << 20 };
	const uint64_t buf = (16ull << 20) + 1, hdr = 0x100000, st = 0x100100;
	struct seg s[NSEG + 2];
	struct rusage ru0, ru1;
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	t->h = harness_new(32 << 20);
	snprintf(t->path, sizeof(t->path), "%s/kvmm-test-vblk-XXXXXX", dir);
	fd = mkstemp(t->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 3ull << 30), 0);
	close(fd);
	o.path = t->path;
	create(t, &o);
	drv_init(t, 0, 1);
	put_hdr(t, hdr, VIRTIO_BLK_T_IN, 0);
	gm_write(&t->h->vm.mem, st, &(uint8_t){ 0xff }, 1);
	s[0] = (struct seg){ hdr, 16, false };
	for (int i = 1; i <= NSEG; i++)
		s[i] = (struct seg){ buf, BUF, true };
	s[NSEG + 1] = (struct seg){ st, 1, true };
	getrusage(RUSAGE_SELF, &ru0);
	add_chain(t, 0, s, NSEG + 2);
	kick_wait(t, 0, 1);
	getrusage(RUSAGE_SELF, &ru1);
	assert_int_equal(used_idx(t, 0), 1);
	assert_int_equal(status_at(t, st), VIRTIO_BLK_S_IOERR);
	assert_true(ru1.ru_maxrss - ru0.ru_maxrss < 100 * 1024); /* KiB */
	assert_int_equal(status_get(t) & VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	finish(t);
}

/* The I/O thread is a real thread, as in kvmm: the "vCPU" (this thread)
 * writes the registers and the rings while it serves kicks and
 * completions.  Rounds of 16 writes then 16 reads of the same sectors,
 * data checked each time; run it under ASan/UBSan or TSan to look for
 * races between the transport's register path and the completion path. */
struct io_thread {
	struct harness *h;
	_Atomic bool stop;
};

static void *io_thread_main(void *opaque)
{
	struct io_thread *io = opaque;

	while (!atomic_load(&io->stop))
		evloop_run_once(&io->h->loop, 20);
	return NULL;
}

static void wait_used(struct t *t, unsigned q, uint16_t want)
{
	volatile uint16_t *idx = gm_ptr(&t->h->vm.mem, USED(q) + 2, 2);
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (__atomic_load_n(idx, __ATOMIC_ACQUIRE) != want) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 10)
			fail_msg("used index %u, want %u", *idx, want);
		sched_yield();
	}
}

static void test_io_thread(void **state)
{
	struct t *t = setup_file(false, NULL, 1);
	struct io_thread io = { .h = t->h };
	struct guest_mem *m = &t->h->vm.mem;
	pthread_t th;
	uint16_t used = 0;

	drv_init(t, 0, 1);
	assert_int_equal(pthread_create(&th, NULL, io_thread_main, &io), 0);
	for (unsigned round = 0; round < 100; round++) {
		for (int dir = 0; dir < 2; dir++) {
			for (unsigned i = 0; i < 16; i++) {
				struct seg s[3] = {
					{ HDR + 16 * i, 16, false },
					{ DATA + 4096ull * (i + 16 * dir), 4096, dir == 1 },
					{ STATUS + i, 1, true },
				};
				if (dir == 0)
					fill(t, DATA + 4096ull * i, (uint8_t)(round * 16 + i), 4096);
				put_hdr(t, HDR + 16 * i, dir ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT,
					8ull * (i + 16 * (round % 4)));
				add_chain(t, 0, s, 3);
			}
			wr(t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
			used += 16;
			wait_used(t, 0, used);
			/* The driver's interrupt handler, racing the device. */
			uint32_t isr = rd(t, VIRTIO_MMIO_INTERRUPT_STATUS);
			if (isr)
				wr(t, VIRTIO_MMIO_INTERRUPT_ACK, isr);
		}
		for (unsigned i = 0; i < 16; i++) {
			assert_int_equal(status_at(t, STATUS + i), VIRTIO_BLK_S_OK);
			assert_memory_equal(gm_ptr(m, DATA + 4096ull * (i + 16), 4096),
					    gm_ptr(m, DATA + 4096ull * i, 4096), 4096);
		}
	}
	atomic_store(&io.stop, true);
	pthread_join(th, NULL);
	t->used_seen[0] = used;
	finish(t);
}

static void test_multiqueue_and_interrupts(void **state)
{
	struct t *t = setup_powercut(2);

	drv_init(t, 0, 2);
	fill(t, DATA, 0x5e, 512);
	assert_int_equal(request(t, 1, VIRTIO_BLK_T_OUT, 3, DATA, 512, false, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->vring_irqs, 1);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 3, DATA + 4096, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(*(uint8_t *)gm_ptr(&t->h->vm.mem, DATA + 4096, 1), 0x5e);
	assert_int_equal(t->vring_irqs, 2);
	/* Without EVENT_IDX: an interrupt per batch unless the driver
	 * sets NO_INTERRUPT. */
	drv_init(t, 1ull << VIRTIO_F_EVENT_IDX, 2);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 3, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->vring_irqs, 1);
	uint16_t flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	gm_write(&t->h->vm.mem, AVAIL(0), &flags, 2);
	assert_int_equal(request(t, 0, VIRTIO_BLK_T_IN, 3, DATA, 512, true, NULL), VIRTIO_BLK_S_OK);
	assert_int_equal(t->vring_irqs, 1);
	finish(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_and_features),
		cmocka_unit_test(test_read_write_file),
		cmocka_unit_test(test_odd_framing),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_flush_reaches_fdatasync),
		cmocka_unit_test(test_discard_write_zeroes),
		cmocka_unit_test(test_get_id),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_hostile_chains),
		cmocka_unit_test(test_reoffered_head),
		cmocka_unit_test(test_reset_in_flight),
		cmocka_unit_test(test_queue_restart_in_flight),
		cmocka_unit_test(test_queue_restart_bound),
		cmocka_unit_test(test_reoffer_livelock),
		cmocka_unit_test(test_seg_max_enforced),
		cmocka_unit_test(test_bounce_bounded),
		cmocka_unit_test(test_power_cut),
		cmocka_unit_test(test_cache_none),
		cmocka_unit_test(test_io_thread),
		cmocka_unit_test(test_multiqueue_and_interrupts),
		cmocka_unit_test(test_qcow2_overlay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
