/*
 * blk_bench.c - virtio-blk's device path alone, for bench/blk.sh.
 *
 *   blk_bench FILE randread|randwrite|read|write BS QD SECONDS none|writeback
 *
 * A machine with no vCPU (tests/harness) gets a virtio-blk device on FILE;
 * this program plays a guest driver that keeps QD requests of BS bytes in
 * flight (random BS-aligned offsets, or sequential) for SECONDS, the way a
 * guest's blk-mq queue would: one chain per slot (header, data, status),
 * a kick after each round of refills.  The I/O thread's work - the kick
 * eventfd, queue_notify popping and queuing to io_uring, one
 * io_uring_submit per batch, the completion eventfd, virtq_push - runs in
 * this same thread through hx_run_io(), so the CPU time measured is the
 * device path's plus a very small driver.
 *
 * Prints one line: "ops=N seconds=S iops=I mbps=M cpu_us_per_op=C".
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "harness.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define QSZ      256
#define DESC     0x10000ull
#define AVAIL    (DESC + 0x1000)
#define USED     (DESC + 0x2000)
#define HDRS     0x20000ull
#define STATUSES 0x30000ull
#define DATA     0x100000ull

static void tq(void *t, unsigned q) { (void)t; (void)q; }
static void tc(void *t) { (void)t; }
static const struct virtio_transport_ops tops = { tq, tc };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s FILE randread|randwrite|read|write BS QD SECONDS none|writeback\n",
			argv[0]);
		return 2;
	}
	const char *mode = argv[2];
	uint32_t bs = strtoul(argv[3], NULL, 0);
	unsigned qd = strtoul(argv[4], NULL, 0);
	double secs = strtod(argv[5], NULL);
	bool write = strstr(mode, "write") != NULL;
	bool rnd = !strncmp(mode, "rand", 4);
	struct virtio_blk_opts o = {
		.path = argv[1],
		.cache = strcmp(argv[6], "none") ? VIRTIO_BLK_CACHE_WRITEBACK : VIRTIO_BLK_CACHE_NONE,
	};
	struct harness *h;
	struct virtio_dev *vd;
	struct guest_mem *m;
	char err[256];
	uint64_t feat, sectors, seq = 0, ops = 0;
	uint16_t avail = 0, used_seen = 0;
	double t0, c0, t1, c1;

	if (qd < 1 || qd > QSZ / 3 || bs < 512 || bs % 512) {
		fprintf(stderr, "blk_bench: QD 1..%d, BS a multiple of 512\n", QSZ / 3);
		return 2;
	}
	h = harness_new(DATA + (uint64_t)qd * bs + (1 << 20));
	m = &h->vm.mem;
	if (virtio_blk_create(&h->vm, &h->loop, &o, &vd, err, sizeof(err))) {
		fprintf(stderr, "blk_bench: %s\n", err);
		return 1;
	}
	virtio_dev_set_transport(vd, &tops, NULL);
	pthread_mutex_lock(&vd->lock);
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	feat = virtio_get_host_features(vd, 0) | (uint64_t)virtio_get_host_features(vd, 1) << 32;
	virtio_set_driver_features(vd, 0, (uint32_t)feat);
	virtio_set_driver_features(vd, 1, (uint32_t)(feat >> 32));
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	vd->vqs[0].size = QSZ;
	vd->vqs[0].desc_gpa = DESC;
	vd->vqs[0].avail_gpa = AVAIL;
	vd->vqs[0].used_gpa = USED;
	if (virtio_queue_enable(vd, 0)) {
		fprintf(stderr, "blk_bench: queue\n");
		return 1;
	}
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&vd->lock);
	hx_run_io(h, 0);
	{
		struct virtio_blk_config c;

		virtio_config_read(vd, 0, &c, sizeof(c));
		sectors = le64toh(c.capacity);
	}
	if (sectors * 512 < (uint64_t)bs * qd) {
		fprintf(stderr, "blk_bench: file too small\n");
		return 1;
	}
	/* Slot i uses descriptors 3i..3i+2 and its own buffers. */
	for (unsigned i = 0; i < qd; i++) {
		struct virtq_desc d[3] = {
			{ HDRS + 16 * i, 16, VIRTQ_DESC_F_NEXT, 3 * i + 1 },
			{ DATA + (uint64_t)bs * i, bs, VIRTQ_DESC_F_NEXT | (write ? 0 : VIRTQ_DESC_F_WRITE), 3 * i + 2 },
			{ STATUSES + i, 1, VIRTQ_DESC_F_WRITE, 0 },
		};
		gm_write(m, DESC + 48ull * i, d, sizeof(d));
		memset(gm_ptr(m, DATA + (uint64_t)bs * i, bs), 0x5a, bs);
	}

	uint64_t blocks = sectors * 512 / bs;
	volatile uint16_t *ring = gm_ptr(m, AVAIL, 4 + 2 * QSZ + 2);
	volatile uint16_t *uidx = gm_ptr(m, USED + 2, 2);
	volatile uint32_t *uring = gm_ptr(m, USED + 4, 8 * QSZ);
	unsigned refill[QSZ];
	unsigned nrefill = qd;

	for (unsigned i = 0; i < qd; i++)
		refill[i] = i;
	t0 = now();
	c0 = cpu();
	for (;;) {
		for (unsigned k = 0; k < nrefill; k++) {
			unsigned i = refill[k];
			uint64_t blk = rnd ? next_rand() % blocks : seq++ % blocks;
			struct virtio_blk_outhdr hd = {
				htole32(write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN), 0,
				htole64(blk * (bs / 512)),
			};

			memcpy(gm_ptr(m, HDRS + 16 * i, 16), &hd, 16);
			ring[2 + avail % QSZ] = 3 * i;
			avail++;
		}
		__atomic_store_n(&ring[1], avail, __ATOMIC_RELEASE);
		nrefill = 0;
		virtio_queue_kick(vd, 0);
		while (!nrefill) {
			/* One dispatch round, as an I/O thread's loop does. */
			evloop_run_once(&h->loop, 1000);
			uint16_t u = __atomic_load_n(uidx, __ATOMIC_ACQUIRE);
			while (used_seen != u) {
				unsigned id = uring[2 * (used_seen % QSZ)];

				if (*(uint8_t *)gm_ptr(m, STATUSES + id / 3, 1) != VIRTIO_BLK_S_OK) {
					fprintf(stderr, "blk_bench: I/O error\n");
					return 1;
				}
				refill[nrefill++] = id / 3;
				used_seen++;
				ops++;
			}
		}
		if (now() - t0 >= secs)
			break;
	}
	t1 = now();
	c1 = cpu();
	printf("ops=%llu seconds=%.3f iops=%.0f mbps=%.1f cpu_us_per_op=%.2f\n",
	       (unsigned long long)ops, t1 - t0, ops / (t1 - t0),
	       ops * (double)bs / (t1 - t0) / 1e6, (c1 - c0) / ops * 1e6);
	/* Waits for the requests still in flight. */
	virtio_dev_destroy(vd);
	harness_free(h);
	return 0;
}
