/*
 * fuzz_virtio_blk.c - the virtio-blk request path under a hostile driver.
 *
 * The input is a guest driver's program.  The machine has 1 MiB of RAM;
 * virtio-blk sits on the in-memory power-cut backend (64 KiB, no file is
 * touched) behind a minimal transport that calls the virtio core directly.
 * Encoding (every byte string is a program; reads past the end are 0):
 *
 *   config  u8: bit0 read-only disk, bit1 refuse EVENT_IDX, bit2 refuse
 *           INDIRECT_DESC, bit3 refuse FLUSH, bit4 refuse DISCARD and
 *           WRITE_ZEROES, bit5 two queues, bits6-7 queue size 256/16/4/1
 *   then operations, an opcode byte (mod 10) each:
 *     0 REQ    q, type selector, sector selector, data segments, layout:
 *              a request built well-formed-ish in fresh RAM and made
 *              available (segment lengths and types from the input, so
 *              many are malformed in one way or another)
 *     1 DESC   q, index, address selector, len, flags, next: one raw
 *              descriptor written into the table
 *     2 AVAIL  q, head: a raw available-ring entry published
 *     3 KICK   q: notify, run the I/O loop
 *     4 RUN    run the I/O loop
 *     5 HOLD   backend holds completions / releases them
 *     6 CUT    power cut (in-flight requests fail)
 *     7 RESET  the driver resets and re-initialises the device
 *     8 POKE   offset u16, len u8 (<= 32), bytes: write into the ring area
 *     9 INDEX  q, what (avail idx / used_event / avail flags), u16 value
 *
 * Checks besides the sanitizers: every used entry the device publishes
 * names a head inside the queue (while the program has not scribbled on
 * the rings itself); after the program the backend is
 * released and drained, the device destroyed, and nothing may leak.
 */
#include <endian.h>
#include <string.h>

#include "block/block.h"
#include "block_powercut.h"
#include "core/vm.h"
#include "fuzz.h"
#include "harness.h"
#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/virtio.h"

#define RAM        (1u << 20)
#define DISK       (64u << 10)
#define RING(q)    (0x1000u + (q) * 0x4000u)
#define AVAIL(q)   (RING(q) + 0x1000u)
#define USED(q)    (RING(q) + 0x2000u)
#define BUMP_START 0x10000u
#define MAX_OPS    256

struct fz {
	struct harness *h;
	struct virtio_dev *vd;
	struct block_dev *bd;
	uint8_t cfg;
	unsigned nq;
	uint16_t qsize;
	uint16_t avail_idx[2], next_desc[2], used_checked[2];
	uint32_t bump;
	bool scribbled;    /* the program wrote the rings itself (DESC, POKE) */
};

static void tt_queue(void *t, unsigned q) { (void)t; (void)q; }
static void tt_config(void *t) { (void)t; }
static const struct virtio_transport_ops tt_ops = { tt_queue, tt_config };

static void drv_init(struct fz *f)
{
	struct virtio_dev *vd = f->vd;
	uint64_t feat, drop = 0;
	static const uint8_t zero[0x3000];

	if (f->cfg & 2)
		drop |= 1ull << VIRTIO_F_EVENT_IDX;
	if (f->cfg & 4)
		drop |= 1ull << VIRTIO_F_INDIRECT_DESC;
	if (f->cfg & 8)
		drop |= 1ull << VIRTIO_BLK_F_FLUSH;
	if (f->cfg & 16)
		drop |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
	pthread_mutex_lock(&vd->lock);
	virtio_set_status(vd, 0);
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	feat = (virtio_get_host_features(vd, 0) |
		(uint64_t)virtio_get_host_features(vd, 1) << 32) & ~drop;
	virtio_set_driver_features(vd, 0, (uint32_t)feat);
	virtio_set_driver_features(vd, 1, (uint32_t)(feat >> 32));
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < f->nq; q++) {
		gm_write(&f->h->vm.mem, RING(q), zero, sizeof(zero));
		vd->vqs[q].size = f->qsize;
		vd->vqs[q].desc_gpa = RING(q);
		vd->vqs[q].avail_gpa = AVAIL(q);
		vd->vqs[q].used_gpa = USED(q);
		virtio_queue_enable(vd, q);
		f->avail_idx[q] = f->next_desc[q] = f->used_checked[q] = 0;
	}
	virtio_set_status(vd, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&vd->lock);
	f->bump = BUMP_START;
}

/* Fresh guest memory for a buffer (wraps around the data area). */
static uint32_t alloc(struct fz *f, uint32_t len)
{
	uint32_t a;

	if (len > RAM - BUMP_START)
		len = RAM - BUMP_START;
	if (f->bump + len > RAM)
		f->bump = BUMP_START;
	a = f->bump;
	f->bump += (len + 15) & ~15u;
	return a;
}

static void put_desc(struct fz *f, unsigned q, uint16_t i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	struct virtq_desc d = { htole64(addr), htole32(len), htole16(flags), htole16(next) };

	gm_write(&f->h->vm.mem, RING(q) + 16u * (i % f->qsize), &d, sizeof(d));
}

static void publish(struct fz *f, unsigned q, uint16_t head)
{
	uint16_t idx = f->avail_idx[q];

	gm_write(&f->h->vm.mem, AVAIL(q) + 4 + 2u * (idx % f->qsize), &head, 2);
	f->avail_idx[q] = ++idx;
	gm_write(&f->h->vm.mem, AVAIL(q) + 2, &idx, 2);
}

static void op_req(struct fz *f, struct fuzz_in *in)
{
	static const uint32_t types[] = {
		VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
		VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES,
	};
	unsigned q = fz_u8(in) % f->nq;
	uint8_t tsel = fz_u8(in), ssel = fz_u8(in), layout = fz_u8(in);
	uint32_t type = tsel < 240 ? types[tsel % 6] : fz_u32(in);
	uint64_t sector;
	struct { uint64_t addr; uint32_t len; uint16_t flags; } seg[8];
	unsigned n = 0, nd = fz_u8(in) % 4;
	struct virtio_blk_outhdr hdr;
	uint32_t a;

	switch (ssel % 4) {
	case 0: sector = ssel >> 2; break;
	case 1: sector = DISK / 512 - (ssel >> 2) % 8; break;
	case 2: sector = fz_u64(in); break;
	default: sector = fz_u16(in); break;
	}
	hdr = (struct virtio_blk_outhdr){ htole32(type), 0, htole64(sector) };
	a = alloc(f, 16);
	gm_write(&f->h->vm.mem, a, &hdr, sizeof(hdr));
	if (layout & 1) { /* header split in two */
		seg[n++] = (typeof(seg[0])){ a, 7, 0 };
		seg[n++] = (typeof(seg[0])){ a + 7, 9, 0 };
	} else {
		seg[n++] = (typeof(seg[0])){ a, (layout & 2) ? 16 - (layout >> 6) : 16, 0 };
	}
	for (unsigned i = 0; i < nd; i++) {
		uint16_t l = fz_u16(in);
		uint32_t len = (l & 0x8000) ? (l & 0x7fff) : (uint32_t)(l % 9) * 512;
		bool w = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
		const uint8_t *p;
		size_t got;

		if (l & 0x4000)
			w = !w;
		a = alloc(f, len ? len : 1);
		if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES ||
		    (layout & 4)) {
			got = fz_take(in, len < 64 ? len : 64, &p);
			gm_write(&f->h->vm.mem, a, p, got);
		}
		seg[n++] = (typeof(seg[0])){ a, len, w ? VIRTQ_DESC_F_WRITE : 0 };
	}
	if (!(layout & 8)) { /* status byte, unless the chain omits it */
		a = alloc(f, 1);
		seg[n++] = (typeof(seg[0])){ a, 1, VIRTQ_DESC_F_WRITE };
	}
	if ((layout & 16) && !(f->cfg & 4)) {
		/* Indirect: the table in fresh RAM, one ring descriptor. */
		uint32_t t = alloc(f, 16 * n);

		for (unsigned i = 0; i < n; i++) {
			struct virtq_desc d = {
				htole64(seg[i].addr), htole32(seg[i].len),
				htole16(seg[i].flags | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
				htole16(i + 1),
			};
			gm_write(&f->h->vm.mem, t + 16 * i, &d, sizeof(d));
		}
		put_desc(f, q, f->next_desc[q], t, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
		publish(f, q, f->next_desc[q] % f->qsize);
		f->next_desc[q] = (f->next_desc[q] + 1) % f->qsize;
		return;
	}
	uint16_t head = f->next_desc[q] % f->qsize;
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (head + i) % f->qsize;

		put_desc(f, q, d, seg[i].addr, seg[i].len,
			 seg[i].flags | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0),
			 (d + 1) % f->qsize);
	}
	f->next_desc[q] = (head + n) % f->qsize;
	publish(f, q, head);
}

/* Used entries must name a head in the queue.  Only while the program
 * has not written into the ring area itself (POKE, or a raw descriptor
 * that may point a device write there): then the used ring is the
 * device's alone. */
static void check_used(struct fz *f)
{
	if (f->scribbled)
		return;
	for (unsigned q = 0; q < f->nq; q++) {
		const struct virtq *vq = &f->vd->vqs[q];
		uint16_t idx;

		if (!vq->ready)
			continue;
		gm_read(&f->h->vm.mem, USED(q) + 2, &idx, 2);
		while (f->used_checked[q] != idx) {
			uint32_t e[2];

			gm_read(&f->h->vm.mem, USED(q) + 4 + 8u * (f->used_checked[q] % f->qsize), e, 8);
			if (e[0] >= f->qsize)
				fuzz_fail("used id %u >= queue size %u", e[0], f->qsize);
			f->used_checked[q]++;
		}
	}
}

static void run(struct fz *f)
{
	hx_run_io(f->h, 0);
	check_used(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t qsizes[] = { 256, 16, 4, 1 };
	struct fuzz_in in = { data, size };
	struct virtio_blk_opts o = { .serial = "fuzz-serial" };
	struct fz f = { 0 };
	char err[256];

	log_max_level = LOG_ERROR;
	f.cfg = fz_u8(&in);
	f.nq = (f.cfg & 32) ? 2 : 1;
	f.qsize = qsizes[f.cfg >> 6];
	f.h = harness_new(RAM);
	if (block_powercut_open(DISK, f.cfg & 1, &f.h->loop, &f.bd))
		fuzz_fail("powercut backend");
	o.bdev = f.bd;
	o.queues = f.nq;
	if (virtio_blk_create(&f.h->vm, &f.h->loop, &o, &f.vd, err, sizeof(err)))
		fuzz_fail("virtio_blk_create: %s", err);
	virtio_dev_set_transport(f.vd, &tt_ops, &f);
	drv_init(&f);

	for (int ops = 0; in.n && ops < MAX_OPS; ops++) {
		uint8_t op = fz_u8(&in) % 10;
		unsigned q;

		switch (op) {
		case 0:
			op_req(&f, &in);
			break;
		case 1: {
			uint16_t i;
			uint8_t asel;
			uint64_t addr;
			uint32_t len;
			uint16_t flags, next;

			q = fz_u8(&in) % f.nq;
			i = fz_u8(&in);
			asel = fz_u8(&in);
			addr = asel & 1 ? fz_u64(&in) : (asel & 2 ? RAM - (asel >> 2) : BUMP_START + fz_u16(&in) * 16u);
			len = fz_u32(&in);
			flags = fz_u8(&in) & 7;
			next = fz_u16(&in);
			put_desc(&f, q, i, addr, len, flags, next);
			f.scribbled = true;
			break;
		}
		case 2:
			q = fz_u8(&in) % f.nq;
			publish(&f, q, fz_u16(&in));
			break;
		case 3:
			q = fz_u8(&in) % f.nq;
			virtio_queue_kick(f.vd, q);
			run(&f);
			break;
		case 4:
			run(&f);
			break;
		case 5:
			block_powercut_hold(f.bd, !block_powercut_of(f.bd)->hold);
			break;
		case 6:
			block_powercut_cut(f.bd);
			break;
		case 7:
			drv_init(&f);
			break;
		case 8: {
			uint16_t off = fz_u16(&in) % 0xc000;
			const uint8_t *p;
			size_t n = fz_take(&in, fz_u8(&in) % 33, &p);

			gm_write(&f.h->vm.mem, 0x1000u + off, p, n);
			f.scribbled = true;
			break;
		}
		case 9: {
			uint8_t what = fz_u8(&in);
			uint16_t v = fz_u16(&in);

			q = what % f.nq;
			switch ((what >> 1) % 3) {
			case 0:
				gm_write(&f.h->vm.mem, AVAIL(q) + 2, &v, 2);
				f.avail_idx[q] = v;
				break;
			case 1:
				gm_write(&f.h->vm.mem, AVAIL(q) + 4 + 2u * f.qsize, &v, 2);
				break;
			default:
				gm_write(&f.h->vm.mem, AVAIL(q), &v, 2);
				break;
			}
			break;
		}
		}
	}
	block_powercut_hold(f.bd, false);
	run(&f);
	virtio_dev_destroy(f.vd);
	harness_free(f.h);
	return 0;
}
