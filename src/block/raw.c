/*
 * raw.c - the raw-file driver: guest sectors are file bytes, moved with
 * io_uring.
 *
 * One ring per block device, owned by the I/O thread of the event loop the
 * device was opened on.  Requests are prepared as SQEs when a device queues
 * them (raw_submit) and reach the kernel in one io_uring_submit() when the
 * device has taken everything a kick gave it (raw_kick), so a burst of
 * guest requests costs one system call.  Completions raise the ring's
 * eventfd (io_uring_register_eventfd), which the event loop watches; the
 * handler reaps every CQE and calls the callbacks there, on that thread,
 * never from inside submit or kick (block.h promises it: devices call us
 * with their lock held and take it again in the callback).
 *
 * Operations:
 *   READ / WRITE    IORING_OP_READ / WRITE for one segment, READV / WRITEV
 *                   for more; a zero-length request is a NOP.
 *   FLUSH           IORING_OP_FSYNC with IORING_FSYNC_DATASYNC: fdatasync.
 *   DISCARD         IORING_OP_FALLOCATE, PUNCH_HOLE | KEEP_SIZE.  Discard
 *                   is advisory: if the file system refuses, the request
 *                   still succeeds and later discards are not tried.
 *   WRITE_ZEROES    IORING_OP_FALLOCATE, ZERO_RANGE | KEEP_SIZE, or
 *                   PUNCH_HOLE | KEEP_SIZE when the caller allows unmapping;
 *                   when the file system refuses (EOPNOTSUPP, EINVAL) the
 *                   zeros are written from a shared zero buffer, 1 MiB at a
 *                   time, and the refused mode is not tried again.
 *
 * Short transfers (a signal, a huge request) are resubmitted for the rest
 * with the iovec advanced; a read that meets the end of the file (someone
 * truncated it under us: the size is fixed at open) returns zeros for the
 * rest, as reading a hole would.  -EINTR and -EAGAIN completions are
 * resubmitted unchanged.
 *
 * Never dropping a request.  The kernel posts a CQE for every SQE; with
 * more requests in flight than the completion queue holds it would have to
 * buffer overflow CQEs and io_uring_submit() could fail with -EBUSY.  So at
 * most cq_entries requests are in the kernel; beyond that they wait in a
 * FIFO here and are prepared as completions free slots.  A full submission
 * queue is not an error either: the prepared SQEs are submitted and the
 * SQE taken again.
 *
 * cache=none (O_DIRECT).  The kernel wants the file offset and length
 * multiples of logical_block and every buffer address and length a multiple
 * of mem_align.  Guest buffers usually are (Linux uses whole pages), but a
 * guest may hand us any address, so a request whose memory is not aligned
 * goes through a bounce buffer (aligned, the size of the request); a read
 * whose offset or length is not aligned reads the enclosing aligned range
 * into a bounce buffer and copies the part asked for.  An unaligned write
 * would need a read-modify-write that races with other writes to the same
 * block, so it is refused (-EINVAL) by raw_submit; virtio-blk advertises
 * logical_block with VIRTIO_BLK_F_BLK_SIZE so drivers do not send them.
 * Bounce memory is host memory the guest chooses the size of (one buffer
 * named in many descriptors costs it nothing), so it is bounded: a request
 * needing more than RAW_BOUNCE_MAX_REQ fails with -EINVAL, and one that
 * would take the device's bounce buffers in flight past RAW_BOUNCE_BUDGET
 * fails with -ENOMEM (not queued: simpler, and no legitimate guest
 * bounces that much).
 *
 * Closing waits for everything in flight (their callbacks run from
 * raw_close), then closes the ring, the eventfd and the file, which drops
 * the image locks (block.c).
 */
#include "block/raw.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/falloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/block.h"
#include "core/event_loop.h"
#include "util/log.h"

#define RAW_RING_ENTRIES 256
#define RAW_ZERO_CHUNK   (1u << 20)
/* Bounce memory is host memory a guest can make us allocate by sending
 * unaligned buffers (aliasing one buffer in many descriptors costs it
 * nothing), so it is bounded: per request and per device in flight.
 * Linux guests never bounce (bio pages are aligned), so these only stop
 * abuse. */
#define RAW_BOUNCE_MAX_REQ (16u << 20)
#define RAW_BOUNCE_BUDGET  (64u << 20)

struct raw_req {
	struct raw_req *next;         /* waiting FIFO */
	enum block_op op;
	bool unmap;
	bool zero_fallback;           /* WRITE_ZEROES written as zeros */
	uint64_t offset, len;         /* bytes, as the caller asked */
	uint64_t done_bytes;          /* transferred so far */
	block_done_fn done;
	void *opaque;
	/* Bounce (O_DIRECT): the aligned range [boff, boff + blen). */
	uint8_t *bounce;
	uint64_t boff, blen;
	int iovcnt;                   /* segments left in iov (advanced) */
	struct iovec *iov;            /* into iov_store */
	struct iovec iov_store[];
};

struct raw_state {
	int fd, efd;
	struct io_uring ring;
	bool direct;
	uint32_t mem_align;
	bool no_discard;              /* the file system refused PUNCH_HOLE */
	bool no_zero_range;           /* ... ZERO_RANGE */
	unsigned inflight;            /* SQEs the kernel owes a CQE for */
	unsigned max_inflight;        /* the CQ size */
	struct raw_req *wait_head, *wait_tail;
	uint8_t *zeros;               /* RAW_ZERO_CHUNK, aligned, lazily */
	uint64_t bounce_bytes;        /* in bounce buffers now (<= RAW_BOUNCE_BUDGET) */
};

static bool aligned(uint64_t v, uint32_t a)
{
	return !(v & (a - 1));
}

static struct io_uring_sqe *get_sqe(struct raw_state *s)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&s->ring))) {
		int r = io_uring_submit(&s->ring);

		if (r < 0 && r != -EINTR && r != -EAGAIN) {
			log_error("io_uring_submit: %s", strerror(-r));
			sched_yield();
		}
	}
	return sqe;
}

/* Prepare the next step of `q` (first try, or the rest after a short
 * transfer) as one SQE. */
static void prep(struct raw_state *s, struct block_dev *bd, struct raw_req *q)
{
	struct io_uring_sqe *sqe = get_sqe(s);
	uint64_t pos = q->offset + q->done_bytes;
	uint64_t left = q->len - q->done_bytes;

	switch (q->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		if (q->bounce) {
			uint64_t d = q->done_bytes;

			if (q->op == BLOCK_OP_READ)
				io_uring_prep_read(sqe, s->fd, q->bounce + d,
						   q->blen - d, q->boff + d);
			else
				io_uring_prep_write(sqe, s->fd, q->bounce + d,
						    q->blen - d, q->boff + d);
		} else if (left == 0) {
			io_uring_prep_nop(sqe);
		} else if (q->iovcnt == 1) {
			if (q->op == BLOCK_OP_READ)
				io_uring_prep_read(sqe, s->fd, q->iov[0].iov_base,
						   q->iov[0].iov_len, pos);
			else
				io_uring_prep_write(sqe, s->fd, q->iov[0].iov_base,
						    q->iov[0].iov_len, pos);
		} else {
			if (q->op == BLOCK_OP_READ)
				io_uring_prep_readv(sqe, s->fd, q->iov, q->iovcnt, pos);
			else
				io_uring_prep_writev(sqe, s->fd, q->iov, q->iovcnt, pos);
		}
		break;
	case BLOCK_OP_FLUSH:
		io_uring_prep_fsync(sqe, s->fd, IORING_FSYNC_DATASYNC);
		break;
	case BLOCK_OP_DISCARD:
		io_uring_prep_fallocate(sqe, s->fd,
					FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					q->offset, q->len);
		break;
	case BLOCK_OP_WRITE_ZEROES:
		if (q->zero_fallback)
			io_uring_prep_write(sqe, s->fd, s->zeros,
					    left < RAW_ZERO_CHUNK ? left : RAW_ZERO_CHUNK,
					    pos);
		else
			io_uring_prep_fallocate(sqe, s->fd,
						(q->unmap ? FALLOC_FL_PUNCH_HOLE
							  : FALLOC_FL_ZERO_RANGE) |
							FALLOC_FL_KEEP_SIZE,
						q->offset, q->len);
		break;
	}
	io_uring_sqe_set_data(sqe, q);
	bd->stats.sqes[q->op]++;
	s->inflight++;
}

/* Into the kernel's queue, or the waiting FIFO when it owes as many
 * completions as its CQ holds. */
static void start(struct raw_state *s, struct block_dev *bd, struct raw_req *q)
{
	if (s->inflight < s->max_inflight && !s->wait_head) {
		prep(s, bd, q);
		return;
	}
	q->next = NULL;
	if (s->wait_tail)
		s->wait_tail->next = q;
	else
		s->wait_head = q;
	s->wait_tail = q;
}

static void start_waiting(struct raw_state *s, struct block_dev *bd)
{
	while (s->wait_head && s->inflight < s->max_inflight) {
		struct raw_req *q = s->wait_head;

		s->wait_head = q->next;
		if (!s->wait_head)
			s->wait_tail = NULL;
		prep(s, bd, q);
	}
}

static void finish(struct raw_state *s, struct raw_req *q, int result)
{
	if (q->bounce && q->op == BLOCK_OP_READ && result == 0) {
		const uint8_t *src = q->bounce + (q->offset - q->boff);

		for (int i = 0; i < q->iovcnt; i++) {
			memcpy(q->iov[i].iov_base, src, q->iov[i].iov_len);
			src += q->iov[i].iov_len;
		}
	}
	if (q->bounce)
		s->bounce_bytes -= q->blen;
	free(q->bounce);
	q->done(q->opaque, result);
	free(q);
}

/* Drop `n` transferred bytes from the front of q's iovec. */
static void advance(struct raw_req *q, uint64_t n)
{
	while (n && q->iovcnt) {
		if (n < q->iov[0].iov_len) {
			q->iov[0].iov_base = (uint8_t *)q->iov[0].iov_base + n;
			q->iov[0].iov_len -= n;
			return;
		}
		n -= q->iov[0].iov_len;
		q->iov++;
		q->iovcnt--;
	}
}

static void zero_rest(struct raw_req *q)
{
	if (q->bounce) {
		memset(q->bounce + q->done_bytes, 0, q->blen - q->done_bytes);
		return;
	}
	for (int i = 0; i < q->iovcnt; i++)
		memset(q->iov[i].iov_base, 0, q->iov[i].iov_len);
}

/* One CQE for `q`: finish it, or prepare its next step. */
static void complete(struct raw_state *s, struct block_dev *bd,
		     struct raw_req *q, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		prep(s, bd, q);
		return;
	}
	switch (q->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE: {
		uint64_t total = q->bounce ? q->blen : q->len;

		if (res < 0 || total == 0)
			break;
		if (res == 0) {
			/* The end of the file moved under us: reads see
			 * zeros, a write that makes no progress fails. */
			if (q->op == BLOCK_OP_WRITE) {
				res = -EIO;
				break;
			}
			zero_rest(q);
			res = 0;
			break;
		}
		if (!q->bounce)
			advance(q, res);
		q->done_bytes += res;
		if (q->done_bytes >= total) {
			res = 0;
			break;
		}
		/* O_DIRECT cannot resume at an unaligned position: a
		 * short direct read there is the end of the file. */
		if (s->direct && !aligned(q->done_bytes, bd->logical_block)) {
			if (q->op == BLOCK_OP_WRITE) {
				res = -EIO;
				break;
			}
			zero_rest(q);
			res = 0;
			break;
		}
		prep(s, bd, q);
		return;
	}
	case BLOCK_OP_FLUSH:
		if (res == 0)
			bd->stats.flushes_done++;
		break;
	case BLOCK_OP_DISCARD:
		if (res == -EOPNOTSUPP || res == -EINVAL) {
			s->no_discard = true;
			bd->can_discard = false;
			res = 0;
		}
		break;
	case BLOCK_OP_WRITE_ZEROES:
		if (!q->zero_fallback && (res == -EOPNOTSUPP || res == -EINVAL)) {
			if (q->unmap)
				s->no_discard = true;
			else
				s->no_zero_range = true;
			q->zero_fallback = true;
			bd->stats.zero_fallbacks++;
			prep(s, bd, q);
			return;
		}
		if (q->zero_fallback && res >= 0) {
			if (res == 0) {
				res = -EIO;
				break;
			}
			q->done_bytes += res;
			if (q->done_bytes < q->len) {
				prep(s, bd, q);
				return;
			}
			res = 0;
		}
		break;
	}
	finish(s, q, res < 0 ? res : 0);
}

/* Reap every CQE; prepare waiting requests and resubmissions; send them.
 * Each CQE is consumed before its callback runs, so a callback may queue
 * and submit new requests. */
static void reap(struct raw_state *s, struct block_dev *bd)
{
	struct io_uring_cqe *cqe;
	bool more = false;

	while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
		struct raw_req *q = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&s->ring, cqe);
		s->inflight--;
		complete(s, bd, q, res);
		more = true;
	}
	if (more) {
		start_waiting(s, bd);
		if (io_uring_sq_ready(&s->ring))
			bd->drv->kick(bd);
	}
}

static void raw_event(void *opaque, uint32_t events)
{
	struct block_dev *bd = opaque;
	struct raw_state *s = bd->state;
	uint64_t v;

	/* The count does not matter: every CQE in the ring is reaped. */
	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: completion eventfd: %s", bd->name, strerror(errno));
	reap(s, bd);
}

static int raw_submit(struct block_dev *bd, const struct block_req *req)
{
	struct raw_state *s = bd->state;
	int n = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE ? req->iovcnt : 0;
	struct raw_req *q;

	q = calloc(1, sizeof(*q) + n * sizeof(struct iovec));
	if (!q)
		return -ENOMEM;
	q->op = req->op;
	q->offset = req->offset;
	q->len = req->len;
	q->unmap = req->unmap;
	q->done = req->done;
	q->opaque = req->opaque;
	q->iovcnt = n;
	q->iov = q->iov_store;
	if (n)
		memcpy(q->iov_store, req->iov, n * sizeof(struct iovec));

	if (q->op == BLOCK_OP_DISCARD && s->no_discard) {
		/* Advisory and refused before: nothing to send, but the
		 * callback still comes from the loop, through a NOP. */
		q->op = BLOCK_OP_READ;
		q->len = 0;
		q->iovcnt = 0;
	}
	if (q->op == BLOCK_OP_WRITE_ZEROES &&
	    (q->unmap ? s->no_discard : s->no_zero_range))
		q->zero_fallback = true;
	if (q->op == BLOCK_OP_WRITE_ZEROES && !s->zeros) {
		/* Allocated before the first WRITE_ZEROES: its fallocate may
		 * be refused, and the fallback must not fail for memory. */
		if (posix_memalign((void **)&s->zeros, 4096, RAW_ZERO_CHUNK)) {
			s->zeros = NULL;
			free(q);
			return -ENOMEM;
		}
		memset(s->zeros, 0, RAW_ZERO_CHUNK);
	}

	if (s->direct && (q->op == BLOCK_OP_READ || q->op == BLOCK_OP_WRITE)) {
		uint32_t lb = bd->logical_block;
		bool mem_ok = true;

		for (int i = 0; i < n && mem_ok; i++)
			mem_ok = aligned((uintptr_t)q->iov[i].iov_base, s->mem_align) &&
				 aligned(q->iov[i].iov_len, s->mem_align);
		if (!aligned(q->offset, lb) || !aligned(q->len, lb)) {
			if (q->op == BLOCK_OP_WRITE) {
				free(q);
				return -EINVAL;
			}
			mem_ok = false;
		}
		if (!mem_ok && q->len) {
			q->boff = q->offset & ~(uint64_t)(lb - 1);
			q->blen = ((q->offset + q->len + lb - 1) & ~(uint64_t)(lb - 1)) - q->boff;
			/* Too big to be a legitimate bounce: refused.  Over
			 * the device's budget: refused too (-ENOMEM, the
			 * request fails) rather than queued, which keeps the
			 * FIFO free of requests that cannot be prepared. */
			if (q->blen > RAW_BOUNCE_MAX_REQ) {
				free(q);
				return -EINVAL;
			}
			if (q->blen > RAW_BOUNCE_BUDGET - s->bounce_bytes) {
				free(q);
				return -ENOMEM;
			}
			/* io_uring_prep_read/write take an unsigned length. */
			assert(q->blen <= UINT32_MAX);
			if (posix_memalign((void **)&q->bounce, s->mem_align > lb ? s->mem_align : lb,
					   q->blen)) {
				free(q);
				return -ENOMEM;
			}
			s->bounce_bytes += q->blen;
			if (q->op == BLOCK_OP_WRITE) {
				uint8_t *dst = q->bounce;

				for (int i = 0; i < n; i++) {
					memcpy(dst, q->iov[i].iov_base, q->iov[i].iov_len);
					dst += q->iov[i].iov_len;
				}
			}
			bd->stats.bounced++;
		}
	}
	start(s, bd, q);
	return 0;
}

static void raw_kick(struct block_dev *bd)
{
	struct raw_state *s = bd->state;

	while (io_uring_sq_ready(&s->ring)) {
		int r = io_uring_submit(&s->ring);

		if (r >= 0 || r == -EINTR || r == -EAGAIN)
			continue;
		/* The SQEs stay in the ring and go with the next submit. */
		log_error("%s: io_uring_submit: %s", bd->name, strerror(-r));
		return;
	}
}

static void raw_close(struct block_dev *bd)
{
	struct raw_state *s = bd->state;

	while (s->inflight || s->wait_head) {
		struct io_uring_cqe *cqe;
		int r;

		start_waiting(s, bd);
		raw_kick(bd);
		r = io_uring_wait_cqe(&s->ring, &cqe);
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r < 0) {
			log_error("%s: waiting for I/O at close: %s", bd->name, strerror(-r));
			break;
		}
		reap(s, bd);
	}
	evloop_del(bd->loop, s->efd);
	io_uring_queue_exit(&s->ring);
	close(s->efd);
	close(s->fd);
	free(s->zeros);
	free(s);
	bd->state = NULL;
}

static const struct block_driver raw_driver = {
	.name = "raw",
	.submit = raw_submit,
	.kick = raw_kick,
	.close = raw_close,
};

int raw_open(struct block_dev *bd, int fd, bool direct, uint32_t mem_align,
	     char *err, size_t errlen)
{
	struct raw_state *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		close(fd);
		snprintf(err, errlen, "%s: out of memory", bd->name);
		return -ENOMEM;
	}
	s->fd = fd;
	s->direct = direct;
	s->mem_align = mem_align;
	/* COOP_TASKRUN: completions need not interrupt this thread with an
	 * IPI while it runs; it is still woken from epoll_wait.  Older
	 * kernels (< 5.19) refuse the flag. */
	r = io_uring_queue_init(RAW_RING_ENTRIES, &s->ring, IORING_SETUP_COOP_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(RAW_RING_ENTRIES, &s->ring, 0);
	if (r < 0) {
		snprintf(err, errlen, "%s: io_uring: %s", bd->name, strerror(-r));
		goto fail_ring;
	}
	s->max_inflight = s->ring.cq.ring_entries;
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd: %s", bd->name, strerror(errno));
		goto fail_efd;
	}
	r = io_uring_register_eventfd(&s->ring, s->efd);
	if (r < 0) {
		snprintf(err, errlen, "%s: io_uring eventfd: %s", bd->name, strerror(-r));
		goto fail_reg;
	}
	bd->drv = &raw_driver;
	bd->state = s;
	r = evloop_add(bd->loop, s->efd, EPOLLIN, raw_event, bd);
	if (r < 0) {
		snprintf(err, errlen, "%s: event loop: %s", bd->name, strerror(-r));
		goto fail_reg;
	}
	return 0;
fail_reg:
	close(s->efd);
fail_efd:
	io_uring_queue_exit(&s->ring);
fail_ring:
	close(fd);
	free(s);
	bd->state = NULL;
	return r;
}
