/*
 * blk.c - virtio-blk (virtio 1.2 section 5.2) over the block layer.
 *
 * Requests.  Each available chain is one request: a 16-byte
 * virtio_blk_outhdr (type, ioprio, sector) at the start of the readable
 * part, for T_OUT the data after it, for T_DISCARD / T_WRITE_ZEROES an
 * array of virtio_blk_discard_write_zeroes; in the writable part the data
 * of T_IN / T_GET_ID and, as its very last byte, the status.  Segment
 * boundaries mean nothing (the spec forbids relying on framing, 2.6.4), so
 * the header may be split across descriptors and the status byte may share
 * a descriptor with data.  A chain with no writable byte (nowhere to put a
 * status) or fewer than 16 readable bytes is not a request at all: the
 * driver broke the rules, the device is marked broken (virtio_dev_broken,
 * DEVICE_NEEDS_RESET) and the queue is not served until reset.  Anything
 * else gets a status:
 *   UNSUPP  unknown type (T_GET_LIFETIME, SCSI, secure erase, ...), a
 *           DISCARD / WRITE_ZEROES that was not negotiated, with reserved
 *           flags, unmap on DISCARD, or more segments than advertised;
 *   IOERR   a data length that is not a multiple of 512, a sector range
 *           past the capacity (checked without overflow), a write on a
 *           read-only disk, data in a segment longer than SIZE_MAX or in
 *           more segments than SEG_MAX, a malformed discard array, a
 *           backend error.
 *
 * Zero copy.  The iovecs given to the block layer point straight into
 * guest RAM (virtq_pop checked every buffer lies inside one RAM region);
 * io_uring reads land in the guest's buffers.  virtq_push reports the
 * written bytes to the machine (gm_note_write): data + status for T_IN
 * (written = data bytes + 1), id + status for T_GET_ID; for the others
 * written is 1 and the status byte, which is not at the start of the
 * writable part, is reported here.
 *
 * Memory per request.  struct virtq_elem holds VIRTQ_MAX_SIZE segments
 * (24 KiB); keeping one per request in flight would cost megabytes per
 * queue.  Instead there is ONE elem per device, used only on the I/O
 * thread under vd->lock: chains are popped into it, and what a request
 * needs until completion is copied into a struct blk_req sized to the
 * chain (malloc'ed at pop, freed at completion): the data iovecs and the
 * writable segments (address + guest address, for virtq_push).  At
 * completion the elem is rebuilt from the request (head, writable segments
 * only) and pushed.  A 4 KiB read costs about 130 bytes.
 *
 * Batching.  queue_notify turns notifications off, pops every available
 * chain and queues its I/O, turns notifications on again (popping again if
 * more arrived meanwhile: virtq_notify_enable), and only then calls
 * block_submit() once: one io_uring_enter for the whole batch.  One call
 * takes at most `size` chains: another vCPU re-offering chains that are
 * answered at once could keep it popping forever, so past that it kicks
 * its own queue (the event loop comes back to it after other work) and
 * returns.  Out of memory, the chain is given back, notifications are
 * turned on again and the queue is kicked for a later try.
 *
 * In flight.  A driver may only make available buffers it owns, so a
 * queue never has more requests in flight than its size: virtq_pop
 * refuses a chain offered while `size` are popped and not pushed (a driver
 * re-offering heads could otherwise make us queue I/O and memory without
 * bound), which breaks the device.  That count starts again at every
 * queue enable, so a driver cycling QueueReady 0/1 with slow requests
 * would escape it; blk keeps its own count per queue (inflight[]), which
 * survives restarts and resets and drops at completion whether the result
 * is pushed or dropped: no chain is popped while it is >= the queue size,
 * and the completion that brings it below kicks the queue again.
 * test_reoffered_head and test_queue_restart_bound check it.
 *
 * Completion runs on the I/O thread from the block layer's callback, which
 * takes vd->lock (the block layer never calls back from inside submit, so
 * queue_notify holding the lock is safe).  The result is pushed only if the
 * device was not reset since the request was popped (vd->generation), the
 * queue was not restarted (virtq.enable_gen: QueueReady 0 then 1 with new
 * rings, no reset) and the queue is still ready; otherwise the request is
 * just freed - the rings it came from are gone.  Its read may still have
 * written the guest's buffers, so a reset is complete (status reads 0,
 * virtio_get_status) only once every request taken before it is over
 * (virtio_dev_hold / virtio_dev_release).
 *
 * Durability.  FLUSH is offered; T_FLUSH is block_flush (fdatasync).  If
 * the driver does not accept FLUSH it cannot ask for durability, so the
 * device is write-through (5.2.5: "the device SHOULD be write-through"):
 * each write, discard and write-zeroes is followed by a flush before its
 * status is returned.
 *
 * Limits advertised (5.2.4).  SEG_MAX: queue size - 2 (the header and
 * status take a descriptor each in the usual layout).  SIZE_MAX: 16 MiB,
 * so that a request within the limits (seg_max * size_max = 4064 MiB) never
 * exceeds the 4 GiB a chain may carry.  BLK_SIZE: the block layer's
 * logical_block (4096 or the host's with cache=none, 512 otherwise).
 * DISCARD / WRITE_ZEROES: up to 64 ranges of at most 4 Mi sectors (2 GiB)
 * each, alignment logical_block; may_unmap.  MQ with num_queues when more
 * than one queue is asked for (all queues share the block device and its
 * ring; they exist so that guest CPUs need not share a ring).  RO for a
 * read-only disk (and no DISCARD / WRITE_ZEROES then).
 */
#include "virtio/blk.h"

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "core/memory.h"
#include "core/vm.h"
#include "virtio/virtio.h"

#define BLK_QUEUE_SIZE      256
#define BLK_SECTOR          512u
#define BLK_SIZE_MAX        (16u << 20)
#define BLK_SEG_MAX         (BLK_QUEUE_SIZE - 2)
#define BLK_MAX_ZAP_SECTORS (4u << 20)
#define BLK_MAX_ZAP_SEG     64u

_Static_assert(sizeof(struct virtio_blk_config) == 72, "virtio_blk_config layout");
_Static_assert(offsetof(struct virtio_blk_config, num_queues) == 34, "num_queues");
_Static_assert(offsetof(struct virtio_blk_config, write_zeroes_may_unmap) == 56,
	       "write_zeroes_may_unmap");

struct virtio_blk {
	struct virtio_dev vd;          /* first: container_of is a cast */
	struct block_dev *bd;
	struct virtio_blk_config config;
	char serial[VIRTIO_BLK_ID_BYTES];
	bool closing;                  /* destroy: callbacks only free */
	struct virtq_elem *elem;       /* the one per device (see top) */
	/* Requests popped from each queue and not yet completed (pushed or
	 * dropped).  Unlike virtq's popped-not-pushed count it survives
	 * queue restarts and device resets, so cycling QueueReady cannot
	 * pile up requests: no pop while it is >= the queue size. */
	unsigned inflight[VIRTIO_MAX_QUEUES];
	bool throttled[VIRTIO_MAX_QUEUES]; /* stopped on inflight: kick at completion */
};

struct blk_req {
	struct virtio_blk *b;
	uint32_t generation;
	uint32_t enable_gen;           /* the queue's, at pop (virtq.enable_gen) */
	uint16_t q, head;
	uint16_t in_num;               /* writable segments kept for the push */
	uint16_t nr_data;              /* data iovecs */
	uint32_t in_len;
	uint32_t written;              /* used length on success */
	uint32_t type;
	int pending;                   /* block operations outstanding + 1 while issuing */
	int err;                       /* first backend error */
	bool flushed;                  /* write-through flush done */
	uint8_t *status;
	uint64_t status_gpa;
	struct iovec *data;            /* nr_data, into storage below */
	struct iovec *in_iov;          /* in_num */
	uint64_t *in_gpa;              /* in_num */
};

static struct virtio_blk *to_blk(struct virtio_dev *vd)
{
	return (struct virtio_blk *)vd;
}

/* Push a finished chain (in b->elem) with `status` and notify. */
static void push_elem(struct virtio_blk *b, unsigned q, uint8_t *status,
		      uint64_t status_gpa, uint8_t value, uint32_t written)
{
	struct virtio_dev *vd = &b->vd;

	*status = value;
	gm_note_write(&vd->vm->mem, status_gpa, 1);
	virtq_push(&vd->vqs[q], b->elem, written);
	virtio_queue_interrupt(vd, q);
}

/* Free a request, counting it out of its queue; a queue that stopped
 * popping for too many in flight is run again. */
static void req_free(struct blk_req *r)
{
	struct virtio_blk *b = r->b;
	unsigned q = r->q;

	free(r);
	b->inflight[q]--;
	virtio_dev_release(&b->vd);
	if (b->throttled[q] && !b->closing && b->inflight[q] < b->vd.vqs[q].size) {
		b->throttled[q] = false;
		virtio_queue_kick(&b->vd, q);
	}
}

/* The request is over: push it if its rings still exist (same device
 * generation and same queue enable: the driver may have restarted the
 * queue with QueueReady 0/1, and a stale head pushed into the new rings
 * would run their used index ahead), then free it.  vd->lock held (or the
 * device is being destroyed). */
static void req_complete(struct blk_req *r)
{
	struct virtio_blk *b = r->b;
	struct virtio_dev *vd = &b->vd;

	if (!b->closing && r->generation == vd->generation && vd->vqs[r->q].ready &&
	    r->enable_gen == vd->vqs[r->q].enable_gen) {
		struct virtq_elem *e = b->elem;
		uint8_t st = r->err ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK;

		e->head = r->head;
		e->out_num = 0;
		e->out_len = 0;
		e->in_num = r->in_num;
		e->in_len = r->in_len;
		memcpy(e->iov, r->in_iov, r->in_num * sizeof(struct iovec));
		memcpy(e->gpa, r->in_gpa, r->in_num * sizeof(uint64_t));
		push_elem(b, r->q, r->status, r->status_gpa, st, r->written);
	} else if (r->type == VIRTIO_BLK_T_IN && r->written > 1) {
		/* Not returned (reset or closing), but the kernel wrote the
		 * guest's buffers all the same: the machine must hear of it. */
		uint64_t left = r->written - 1;

		for (unsigned i = 0; i < r->in_num && left; i++) {
			uint64_t n = r->in_iov[i].iov_len < left ? r->in_iov[i].iov_len : left;

			gm_note_write(&vd->vm->mem, r->in_gpa[i], n);
			left -= n;
		}
	}
	req_free(r);
}

static void req_done(void *opaque, int result);

/* One block operation of `r` finished (or the issuing reference dropped).
 * vd->lock held. */
static void req_put(struct blk_req *r)
{
	struct virtio_blk *b = r->b;

	if (--r->pending > 0)
		return;
	if (!r->err && !r->flushed && !b->closing &&
	    (r->type == VIRTIO_BLK_T_OUT || r->type == VIRTIO_BLK_T_DISCARD ||
	     r->type == VIRTIO_BLK_T_WRITE_ZEROES) &&
	    !virtio_has_feature(&b->vd, VIRTIO_BLK_F_FLUSH)) {
		/* Write-through: durable before the guest hears of it. */
		r->flushed = true;
		r->pending = 1;
		if (block_flush(b->bd, req_done, r) == 0) {
			block_submit(b->bd);
			return;
		}
		r->err = -EIO;
		r->pending = 0;
	}
	req_complete(r);
}

static void req_done(void *opaque, int result)
{
	struct blk_req *r = opaque;
	struct virtio_blk *b = r->b;
	bool lock = !b->closing;

	if (lock)
		pthread_mutex_lock(&b->vd.lock);
	if (result < 0 && !r->err)
		r->err = result;
	req_put(r);
	if (lock)
		pthread_mutex_unlock(&b->vd.lock);
}

/* The data bytes [skip, skip + len) of segments iov[0..n) as iovecs into
 * out[] (NULL: only count them); returns how many, and the longest in
 * *longest (bytes) when longest is non-NULL. */
static unsigned iov_slice(const struct iovec *iov, unsigned n, uint64_t skip,
			  uint64_t len, struct iovec *out, uint64_t *longest)
{
	unsigned k = 0;
	uint64_t max = 0;

	for (unsigned i = 0; i < n && len; i++) {
		uint64_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		l -= skip;
		if (l > len)
			l = len;
		if (out)
			out[k] = (struct iovec){ (uint8_t *)iov[i].iov_base + skip, l };
		k++;
		if (l > max)
			max = l;
		len -= l;
		skip = 0;
	}
	if (longest)
		*longest = max;
	return k;
}

/* Do the data bytes [skip, skip + len) of segments iov[0..n) respect
 * what we advertise: at most seg_max segments of at most size_max bytes
 * each?  (A driver that ignores them can make one request of 4 GiB out of
 * one buffer named many times.) */
static bool segs_ok(const struct iovec *iov, unsigned n, uint64_t skip,
		    uint64_t len)
{
	uint64_t longest;

	return iov_slice(iov, n, skip, len, NULL, &longest) <= BLK_SEG_MAX &&
	       longest <= BLK_SIZE_MAX;
}

static bool range_ok(const struct virtio_blk *b, uint64_t sector,
		     uint64_t sectors)
{
	uint64_t cap = b->config.capacity;

	return sector <= cap && sectors <= cap - sector;
}

/* A request whose status is decided without I/O. */
static void answer_now(struct virtio_blk *b, unsigned q, uint8_t *status,
		       uint64_t status_gpa, uint8_t value, uint32_t written)
{
	push_elem(b, q, status, status_gpa, value, written);
}

static struct blk_req *req_new(struct virtio_blk *b, unsigned q,
			       const struct virtq_elem *e, unsigned max_data)
{
	struct blk_req *r;
	size_t sz = sizeof(*r) + (max_data + e->in_num) * sizeof(struct iovec) +
		    e->in_num * sizeof(uint64_t);

	r = malloc(sz);
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->b = b;
	r->generation = b->vd.generation;
	r->enable_gen = b->vd.vqs[q].enable_gen;
	r->q = q;
	r->head = e->head;
	r->in_num = e->in_num;
	r->in_len = e->in_len;
	r->written = 1;
	r->pending = 1;
	r->data = (struct iovec *)(r + 1);
	r->in_iov = r->data + max_data;
	r->in_gpa = (uint64_t *)(r->in_iov + e->in_num);
	memcpy(r->in_iov, e->iov + e->out_num, e->in_num * sizeof(struct iovec));
	memcpy(r->in_gpa, e->gpa + e->out_num, e->in_num * sizeof(uint64_t));
	b->inflight[q]++;
	virtio_dev_hold(&b->vd);
	return r;
}

/* DISCARD / WRITE_ZEROES: check every range, then one block operation
 * per range. */
static void handle_zap(struct virtio_blk *b, struct blk_req *r,
		       const struct virtq_elem *e, uint32_t type)
{
	struct virtio_blk_discard_write_zeroes seg[BLK_MAX_ZAP_SEG];
	bool wz = type == VIRTIO_BLK_T_WRITE_ZEROES;
	uint32_t bytes = e->out_len - sizeof(struct virtio_blk_outhdr);
	unsigned n = bytes / sizeof(seg[0]);
	uint8_t st = VIRTIO_BLK_S_OK;

	if (!virtio_has_feature(&b->vd, wz ? VIRTIO_BLK_F_WRITE_ZEROES
					   : VIRTIO_BLK_F_DISCARD))
		st = VIRTIO_BLK_S_UNSUPP;
	else if (b->bd->readonly)
		st = VIRTIO_BLK_S_IOERR;
	else if (bytes == 0 || bytes % sizeof(seg[0]))
		st = VIRTIO_BLK_S_IOERR;
	else if (n > BLK_MAX_ZAP_SEG)
		st = VIRTIO_BLK_S_UNSUPP;
	if (st == VIRTIO_BLK_S_OK) {
		virtq_elem_read(e, sizeof(struct virtio_blk_outhdr), seg, bytes);
		for (unsigned i = 0; i < n && st == VIRTIO_BLK_S_OK; i++) {
			uint64_t sector = le64toh(seg[i].sector);
			uint32_t num = le32toh(seg[i].num_sectors);
			uint32_t flags = le32toh(seg[i].flags);

			if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ||
			    (!wz && flags))
				st = VIRTIO_BLK_S_UNSUPP;
			else if (num > BLK_MAX_ZAP_SECTORS || !range_ok(b, sector, num))
				st = VIRTIO_BLK_S_IOERR;
		}
	}
	if (st != VIRTIO_BLK_S_OK) {
		answer_now(b, r->q, r->status, r->status_gpa, st, 1);
		req_free(r);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = le64toh(seg[i].sector) * BLK_SECTOR;
		uint64_t len = (uint64_t)le32toh(seg[i].num_sectors) * BLK_SECTOR;
		int rc;

		r->pending++;
		if (wz)
			rc = block_write_zeroes(b->bd, off, len,
						le32toh(seg[i].flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
						req_done, r);
		else
			rc = block_discard(b->bd, off, len, req_done, r);
		if (rc) {
			r->pending--;
			r->err = rc;
			break;
		}
	}
	req_put(r);
}

/* Serve one popped chain (in b->elem).  Returns false when the chain is
 * not a request (the device is then broken) or memory ran out (the chain
 * is given back for later). */
static bool handle(struct virtio_blk *b, unsigned q)
{
	struct virtq_elem *e = b->elem;
	struct virtio_blk_outhdr hdr;
	const struct iovec *last;
	uint8_t *status;
	uint64_t status_gpa, sector, data_len;
	uint32_t type;
	struct blk_req *r;
	int rc;

	if (e->in_len < 1 || e->in_num < 1) {
		virtio_dev_broken(&b->vd, "virtio-blk: request without a status byte");
		return false;
	}
	if (e->out_len < sizeof(hdr)) {
		virtio_dev_broken(&b->vd, "virtio-blk: request shorter than its header");
		return false;
	}
	virtq_elem_read(e, 0, &hdr, sizeof(hdr));
	type = le32toh(hdr.type);
	sector = le64toh(hdr.sector);
	last = &e->iov[e->out_num + e->in_num - 1];
	status = (uint8_t *)last->iov_base + last->iov_len - 1;
	status_gpa = e->gpa[e->out_num + e->in_num - 1] + last->iov_len - 1;

	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = type == VIRTIO_BLK_T_IN;

		data_len = in ? e->in_len - 1u : e->out_len - sizeof(hdr);
		if ((!in && b->bd->readonly) || data_len % BLK_SECTOR ||
		    !range_ok(b, sector, data_len / BLK_SECTOR) ||
		    !(in ? segs_ok(e->iov + e->out_num, e->in_num, 0, data_len)
			 : segs_ok(e->iov, e->out_num, sizeof(hdr), data_len))) {
			answer_now(b, q, status, status_gpa, VIRTIO_BLK_S_IOERR, 1);
			return true;
		}
		r = req_new(b, q, e, in ? e->in_num : e->out_num);
		if (!r)
			return false;
		r->type = type;
		r->status = status;
		r->status_gpa = status_gpa;
		r->pending++;
		if (in) {
			r->nr_data = iov_slice(e->iov + e->out_num, e->in_num, 0,
					       data_len, r->data, NULL);
			r->written = data_len + 1;
			rc = block_readv(b->bd, sector * BLK_SECTOR, r->data,
					 r->nr_data, req_done, r);
		} else {
			r->nr_data = iov_slice(e->iov, e->out_num, sizeof(hdr),
					       data_len, r->data, NULL);
			rc = block_writev(b->bd, sector * BLK_SECTOR, r->data,
					  r->nr_data, req_done, r);
		}
		if (rc) {
			r->pending--;
			r->err = rc;
			/* Nothing was read into guest memory. */
			r->written = 1;
		}
		req_put(r);
		return true;
	}
	case VIRTIO_BLK_T_FLUSH:
		r = req_new(b, q, e, 0);
		if (!r)
			return false;
		r->type = type;
		r->status = status;
		r->status_gpa = status_gpa;
		r->pending++;
		rc = block_flush(b->bd, req_done, r);
		if (rc) {
			r->pending--;
			r->err = rc;
		}
		req_put(r);
		return true;
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = e->in_len - 1u < VIRTIO_BLK_ID_BYTES ? e->in_len - 1u
								: VIRTIO_BLK_ID_BYTES;

		virtq_elem_write(e, 0, b->serial, n);
		answer_now(b, q, status, status_gpa, VIRTIO_BLK_S_OK, n + 1);
		return true;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		r = req_new(b, q, e, 0);
		if (!r)
			return false;
		r->type = type;
		r->status = status;
		r->status_gpa = status_gpa;
		handle_zap(b, r, e, type);
		return true;
	default:
		answer_now(b, q, status, status_gpa, VIRTIO_BLK_S_UNSUPP, 1);
		return true;
	}
}

static void blk_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_blk *b = to_blk(vd);
	struct virtq *vq = &vd->vqs[q];
	/* At most a queue's worth of chains per call: a driver re-offering
	 * chains answered at once (another vCPU) would otherwise keep the
	 * I/O thread here forever; the rest waits for a kick we send. */
	unsigned budget = vq->size;
	int rc = 0;

	if (!vq->ready || vq->broken)
		goto out;
	do {
		virtq_notify_disable(vq);
		for (;;) {
			if (b->inflight[q] >= vq->size) {
				/* Enough in flight, maybe from before a queue
				 * restart: a completion kicks us again. */
				b->throttled[q] = true;
				virtq_notify_enable(vq);
				goto out;
			}
			if (!budget) {
				virtio_queue_kick(vd, q);
				goto out;
			}
			rc = virtq_pop(vq, b->elem);
			if (rc != 1)
				break;
			budget--;
			if (!handle(b, q)) {
				if (!(vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
					/* Out of memory: try again later, with
					 * notifications on as they should be. */
					virtq_unpop(vq);
					virtq_notify_enable(vq);
					virtio_queue_kick(vd, q);
				}
				goto out;
			}
		}
		/* rc < 0: the queue is broken; virtio.c reports it. */
	} while (rc == 0 && virtq_notify_enable(vq));
out:
	block_submit(b->bd);
}

static void blk_config_read(struct virtio_dev *vd, uint32_t offset, void *buf,
			    uint32_t len)
{
	memcpy(buf, (const uint8_t *)&to_blk(vd)->config + offset, len);
}

static void blk_destroy(struct virtio_dev *vd)
{
	struct virtio_blk *b = to_blk(vd);

	/* Requests still in flight complete from block_close; with the lock
	 * gone (virtio_dev_destroy) they are only freed. */
	b->closing = true;
	block_close(b->bd);
	free(b->elem);
	free(b);
}

static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_ID_BLOCK,
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.destroy = blk_destroy,
};

int virtio_blk_create(struct vm *vm, struct evloop *loop,
		      const struct virtio_blk_opts *o, struct virtio_dev **out,
		      char *err, size_t errlen)
{
	unsigned queues = o->queues ? o->queues : 1;
	struct block_dev *bd = o->bdev;
	struct virtio_blk *b;
	uint64_t features;
	int r;

	*out = NULL;
	if (queues > VIRTIO_MAX_QUEUES ||
	    (o->serial && strlen(o->serial) > VIRTIO_BLK_ID_BYTES)) {
		snprintf(err, errlen, "%s: %s", o->path ? o->path : "disk",
			 queues > VIRTIO_MAX_QUEUES ? "queues must be 1..64"
						    : "serial longer than 20 bytes");
		block_close(bd);
		return -EINVAL;
	}
	if (!bd) {
		struct block_opts bo = {
			.path = o->path, .format = o->format, .readonly = o->readonly,
			.direct = o->cache == VIRTIO_BLK_CACHE_NONE,
			.snapshot = o->snapshot,
		};

		r = block_open(&bo, loop, &bd, err, errlen);
		if (r)
			return r;
	}
	b = calloc(1, sizeof(*b));
	if (b)
		b->elem = malloc(sizeof(*b->elem));
	if (!b || !b->elem) {
		snprintf(err, errlen, "%s: out of memory", bd->name);
		free(b);
		block_close(bd);
		return -ENOMEM;
	}
	b->bd = bd;
	if (o->serial)
		memcpy(b->serial, o->serial, strlen(o->serial));

	b->config.capacity = htole64(bd->size / BLK_SECTOR);
	b->config.size_max = htole32(BLK_SIZE_MAX);
	b->config.seg_max = htole32(BLK_SEG_MAX);
	b->config.blk_size = htole32(bd->logical_block);
	b->config.num_queues = htole16(queues);
	features = (1ull << VIRTIO_BLK_F_SIZE_MAX) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
		   (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH);
	if (queues > 1)
		features |= 1ull << VIRTIO_BLK_F_MQ;
	if (bd->readonly) {
		features |= 1ull << VIRTIO_BLK_F_RO;
	} else {
		features |= (1ull << VIRTIO_BLK_F_DISCARD) |
			    (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
		b->config.max_discard_sectors = htole32(BLK_MAX_ZAP_SECTORS);
		b->config.max_discard_seg = htole32(BLK_MAX_ZAP_SEG);
		b->config.discard_sector_alignment = htole32(bd->logical_block / BLK_SECTOR);
		b->config.max_write_zeroes_sectors = htole32(BLK_MAX_ZAP_SECTORS);
		b->config.max_write_zeroes_seg = htole32(BLK_MAX_ZAP_SEG);
		b->config.write_zeroes_may_unmap = 1;
	}
	r = virtio_dev_init(&b->vd, vm, loop, &blk_ops, b, queues, BLK_QUEUE_SIZE,
			    features, sizeof(b->config));
	if (r) {
		snprintf(err, errlen, "%s: virtio device: %s", bd->name, strerror(-r));
		block_close(bd);
		free(b->elem);
		free(b);
		return r;
	}
	*out = &b->vd;
	return 0;
}
