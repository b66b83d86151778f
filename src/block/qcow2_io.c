/*
 * qcow2_io.c - the qcow2 block_driver: requests from a device.
 *
 * Two paths.  The fast path moves guest data with io_uring, as raw.c does:
 * a read whose clusters are all allocated (normal, uncompressed, not zero
 * flagged) and a write whose clusters are all COPIED (written in place)
 * are looked up at submit, synchronously, through the l2 cache
 * (qcow2_map_direct), cut into runs that are contiguous in the file, and
 * each run is prepared as one SQE (READ/WRITE, READV/WRITEV); the request
 * completes when all its runs have, with the first error.  SQEs reach the
 * kernel in one io_uring_submit() per block_submit() (kick); completions
 * raise the ring's eventfd, watched on bd->loop, whose handler calls the
 * callbacks.  FLUSH is an IORING_OP_FSYNC (datasync) of the image.
 *
 * Everything else takes the synchronous path: reads of unallocated
 * clusters (the backing chain, or zeros), zero or compressed clusters,
 * allocating writes with copy-on-write, discard and write zeroes, and any
 * request whose lookup failed (it fails there, with the error logged
 * once).  submit() queues such a request (its iovec copied) and raises an
 * eventfd watched on the loop; the handler runs the queued requests in
 * order with qcow2_img_read/write/discard on the I/O thread.  Either way
 * the callback comes from the event loop, never from inside submit or
 * kick (block.h's rule).  A request is decided whole: one cluster that
 * needs the synchronous path sends the whole request there.  With test
 * hooks (im->hooks: a power-cut file standing in for writes and syncs)
 * everything takes the synchronous path, flushes included.
 *
 * Ordering.  Requests in flight together are unordered (block.h); a
 * flush covers the writes completed before it was queued, and an
 * fdatasync of the file when it runs covers them all, whichever path
 * wrote them (metadata included: one inode).  A lookup at submit can go
 * stale before the SQE runs only through a request the guest queued
 * concurrently for the same clusters: a discard or write zeroes may free
 * a cluster a read or write in flight still targets.  That is harmless
 * because freed clusters are never allocated again (qcow2_alloc_cluster
 * always takes next_free, the end of the file): the late write lands in
 * space nobody references, the late read returns old bytes or zeros,
 * either a valid outcome of racing requests.  If allocation ever reuses
 * freed clusters, in-flight requests must be drained (or tracked per
 * cluster) before a cluster is freed.
 *
 * cache=none.  block.c opens the image O_DIRECT; qcow2_open() clears
 * O_DIRECT on that descriptor (it keeps the image locks) so that metadata
 * and the synchronous path go through the page cache with any alignment,
 * and qcow2_io_attach() opens a second, O_DIRECT descriptor on the same
 * file for the fast path.  Mixing is coherent for the kernel's own
 * reasons: a direct read first writes back dirty page-cache pages of its
 * range, and a direct write invalidates the cached pages of its range
 * once written, so bytes the synchronous path wrote are seen by direct
 * reads and bytes a direct write put on disk are seen by later buffered
 * reads.  Only accesses to the same bytes at the same time could see
 * either version, and those are requests the guest left unordered.  On
 * the direct descriptor offsets, lengths and memory must be aligned to
 * the host's block (bd->logical_block, as raw.c): a read that is not is
 * read through an aligned bounce buffer covering the enclosing blocks; a
 * write with unaligned memory is copied into one; a write whose file
 * range is unaligned (a cluster smaller than the block) takes the
 * synchronous path.  Bounce memory is bounded as in raw.c (a guest picks
 * its size); past the bounds the request takes the synchronous path
 * rather than failing.
 *
 * Short transfers are resubmitted for the rest, a read meeting the end of
 * the file reads zeros for the rest (a cluster past a truncated end), a
 * write making no progress fails with -EIO; -EINTR and -EAGAIN are
 * resubmitted.  At most cq_entries SQEs are in the kernel; more runs wait
 * in a FIFO (raw.c explains why).  Errors reach the device as -EIO,
 * -ENOSPC or -ENOMEM.  bd->stats.sqes counts io_uring SQEs only, so a
 * test can tell which path a request took.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "core/event_loop.h"
#include "util/log.h"

#define RING_ENTRIES      256
#define MAX_RUN           (1u << 30)   /* bytes per SQE (io_uring lengths are 32-bit) */
#define BOUNCE_MAX_REQ    (16u << 20)  /* as raw.c: bounce memory is the guest's choice */
#define BOUNCE_BUDGET     (64u << 20)

/* A request on the synchronous path. */
struct pending {
	struct pending *next;
	struct block_req req;
	struct iovec iov[];
};

struct run;

/* A request on the fast path: done when every run is. */
struct areq {
	enum block_op op;
	unsigned runs_left;
	int err;                /* the first error */
	block_done_fn done;
	void *opaque;
};

/* One SQE's worth: file bytes [host, host + len) <-> iov. */
struct run {
	struct run *next;       /* waiting FIFO */
	struct areq *q;
	uint64_t host, len, done_bytes;
	uint8_t *bounce;        /* O_DIRECT: the aligned range [boff, boff + blen) */
	uint64_t boff, blen;
	int iovcnt;             /* segments left (advanced after short transfers) */
	struct iovec *iov;
};

struct qcow2_state {
	struct qimg *img;
	int efd;                /* synchronous path: raised by submit */
	struct pending *head, *tail;
	struct io_uring ring;
	int ring_efd;           /* the ring's completions */
	int dfd;                /* fast path's descriptor: O_DIRECT one, or img->fd */
	bool direct;
	uint32_t align;         /* O_DIRECT: file offsets and lengths */
	uint32_t mem_align;     /* O_DIRECT: memory */
	unsigned inflight, max_inflight;
	struct run *wait_head, *wait_tail;
	uint64_t bounce_bytes;
};

/* ---- the synchronous path ---- */

/* A guest's discard frees the whole clusters of the range (partial ones
 * are left: discard is advisory).  In version 3 with a backing file they
 * become zero-flag entries, as in QEMU, so that the backing file's old
 * bytes do not reappear under the guest. */
static int discard(struct qimg *im, uint64_t off, uint64_t len)
{
	uint64_t cs = im->cluster_size, end = off + len;
	uint64_t start = (off + cs - 1) & ~(cs - 1);
	uint64_t stop = end == im->size ? end : end & ~(cs - 1);

	if (start >= stop)
		return 0;
	return qcow2_img_discard(im, start, stop - start,
				 im->version >= 3 && im->backing, true);
}

static int run_req(struct block_dev *bd, struct qcow2_state *s, struct pending *p)
{
	const struct block_req *q = &p->req;
	uint8_t *buf, *c;
	int r;

	switch (q->op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		buf = malloc(q->len ? q->len : 1);
		if (!buf)
			return -ENOMEM;
		c = buf;
		if (q->op == BLOCK_OP_WRITE) {
			for (int i = 0; i < q->iovcnt; c += p->iov[i].iov_len, i++)
				memcpy(c, p->iov[i].iov_base, p->iov[i].iov_len);
			r = qcow2_img_write(s->img, q->offset, buf, q->len);
		} else {
			r = qcow2_img_read(s->img, q->offset, buf, q->len);
			for (int i = 0; !r && i < q->iovcnt; c += p->iov[i].iov_len, i++)
				memcpy(p->iov[i].iov_base, c, p->iov[i].iov_len);
		}
		free(buf);
		return r;
	case BLOCK_OP_FLUSH:
		r = qcow2_fdatasync(s->img);
		if (!r)
			bd->stats.flushes_done++;
		return r;
	case BLOCK_OP_DISCARD:
		return discard(s->img, q->offset, q->len);
	case BLOCK_OP_WRITE_ZEROES:
		return qcow2_img_discard(s->img, q->offset, q->len, true, q->unmap);
	}
	return -EINVAL;
}

static int device_error(int r)
{
	return r && r != -ENOMEM && r != -ENOSPC ? -EIO : r;
}

/* Run every queued request; requests queued by the callbacks raise the
 * eventfd again and run on the next round. */
static void run_pending(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;
	struct pending *p = s->head;

	s->head = s->tail = NULL;
	while (p) {
		struct pending *next = p->next;
		int r = run_req(bd, s, p);

		p->req.done(p->req.opaque, device_error(r));
		free(p);
		p = next;
	}
}

static void qcow2_event(void *opaque, uint32_t events)
{
	struct block_dev *bd = opaque;
	struct qcow2_state *s = bd->state;
	uint64_t v;

	(void)events;
	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd: %s", bd->name, strerror(errno));
	run_pending(bd);
}

static int queue_sync(struct block_dev *bd, const struct block_req *req)
{
	struct qcow2_state *s = bd->state;
	int n = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE ? req->iovcnt : 0;
	struct pending *p = malloc(sizeof(*p) + n * sizeof(struct iovec));
	uint64_t one = 1;

	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->req = *req;
	if (n)
		memcpy(p->iov, req->iov, n * sizeof(struct iovec));
	p->req.iov = p->iov;
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd: %s", bd->name, strerror(errno));
	return 0;
}

/* ---- the fast path: io_uring ---- */

static bool aligned(uint64_t v, uint64_t a)
{
	return !(v & (a - 1));
}

static struct io_uring_sqe *get_sqe(struct qcow2_state *s)
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

/* Prepare the next step of run `u` (first try, or the rest after a short
 * transfer) as one SQE. */
static void prep(struct qcow2_state *s, struct block_dev *bd, struct run *u)
{
	struct io_uring_sqe *sqe = get_sqe(s);
	bool rd = u->q->op == BLOCK_OP_READ;
	uint64_t d = u->done_bytes;

	if (u->q->op == BLOCK_OP_FLUSH)
		io_uring_prep_fsync(sqe, s->img->fd, IORING_FSYNC_DATASYNC);
	else if (u->bounce && rd)
		io_uring_prep_read(sqe, s->dfd, u->bounce + d, (unsigned)(u->blen - d), u->boff + d);
	else if (u->bounce)
		io_uring_prep_write(sqe, s->dfd, u->bounce + d, (unsigned)(u->blen - d), u->boff + d);
	else if (u->iovcnt == 1 && rd)
		io_uring_prep_read(sqe, s->dfd, u->iov[0].iov_base, (unsigned)u->iov[0].iov_len,
				   u->host + d);
	else if (u->iovcnt == 1)
		io_uring_prep_write(sqe, s->dfd, u->iov[0].iov_base, (unsigned)u->iov[0].iov_len,
				    u->host + d);
	else if (rd)
		io_uring_prep_readv(sqe, s->dfd, u->iov, (unsigned)u->iovcnt, u->host + d);
	else
		io_uring_prep_writev(sqe, s->dfd, u->iov, (unsigned)u->iovcnt, u->host + d);
	io_uring_sqe_set_data(sqe, u);
	bd->stats.sqes[u->q->op]++;
	s->inflight++;
}

static void start(struct qcow2_state *s, struct block_dev *bd, struct run *u)
{
	if (s->inflight < s->max_inflight && !s->wait_head) {
		prep(s, bd, u);
		return;
	}
	u->next = NULL;
	if (s->wait_tail)
		s->wait_tail->next = u;
	else
		s->wait_head = u;
	s->wait_tail = u;
}

static void start_waiting(struct qcow2_state *s, struct block_dev *bd)
{
	while (s->wait_head && s->inflight < s->max_inflight) {
		struct run *u = s->wait_head;

		s->wait_head = u->next;
		if (!s->wait_head)
			s->wait_tail = NULL;
		prep(s, bd, u);
	}
}

/* Run `u` is over with `res` (0 or -errno); the request completes with
 * its last run.  The runs live in the request's allocation. */
static void run_done(struct qcow2_state *s, struct block_dev *bd, struct run *u, int res)
{
	struct areq *q = u->q;

	if (u->bounce && q->op == BLOCK_OP_READ && res == 0) {
		const uint8_t *src = u->bounce + (u->host - u->boff);

		for (int i = 0; i < u->iovcnt; i++) {
			memcpy(u->iov[i].iov_base, src, u->iov[i].iov_len);
			src += u->iov[i].iov_len;
		}
	}
	if (u->bounce) {
		s->bounce_bytes -= u->blen;
		free(u->bounce);
		u->bounce = NULL;
	}
	if (q->op == BLOCK_OP_FLUSH && res == 0)
		bd->stats.flushes_done++;
	if (res && !q->err)
		q->err = res;
	if (--q->runs_left)
		return;
	q->done(q->opaque, device_error(q->err));
	free(q);
}

static void advance(struct run *u, uint64_t n)
{
	while (n && u->iovcnt) {
		if (n < u->iov[0].iov_len) {
			u->iov[0].iov_base = (uint8_t *)u->iov[0].iov_base + n;
			u->iov[0].iov_len -= n;
			return;
		}
		n -= u->iov[0].iov_len;
		u->iov++;
		u->iovcnt--;
	}
}

static void zero_rest(struct run *u)
{
	if (u->bounce) {
		memset(u->bounce + u->done_bytes, 0, u->blen - u->done_bytes);
		return;
	}
	for (int i = 0; i < u->iovcnt; i++)
		memset(u->iov[i].iov_base, 0, u->iov[i].iov_len);
}

/* One CQE for run `u`: finish it, or prepare its next step. */
static void complete(struct qcow2_state *s, struct block_dev *bd, struct run *u, int res)
{
	bool rd = u->q->op == BLOCK_OP_READ;
	uint64_t total = u->bounce ? u->blen : u->len;

	if (res == -EINTR || res == -EAGAIN) {
		prep(s, bd, u);
		return;
	}
	if (u->q->op == BLOCK_OP_FLUSH || res < 0) {
		run_done(s, bd, u, res < 0 ? res : 0);
		return;
	}
	if (res == 0) {
		/* The end of the file: reads see zeros, a write that makes
		 * no progress fails. */
		if (rd)
			zero_rest(u);
		run_done(s, bd, u, rd ? 0 : -EIO);
		return;
	}
	if (!u->bounce)
		advance(u, res);
	u->done_bytes += res;
	if (u->done_bytes >= total) {
		run_done(s, bd, u, 0);
		return;
	}
	/* O_DIRECT cannot resume at an unaligned position: a short direct
	 * read there is the end of the file. */
	if (s->direct && !aligned(u->done_bytes, s->align)) {
		if (rd)
			zero_rest(u);
		run_done(s, bd, u, rd ? 0 : -EIO);
		return;
	}
	prep(s, bd, u);
}

static void qcow2_kick(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;

	while (io_uring_sq_ready(&s->ring)) {
		int r = io_uring_submit(&s->ring);

		if (r >= 0 || r == -EINTR || r == -EAGAIN)
			continue;
		/* The SQEs stay in the ring and go with the next submit. */
		log_error("%s: io_uring_submit: %s", bd->name, strerror(-r));
		return;
	}
}

/* Reap every CQE; each is consumed before its callback runs, so a
 * callback may queue and submit new requests. */
static void reap(struct qcow2_state *s, struct block_dev *bd)
{
	struct io_uring_cqe *cqe;
	bool more = false;

	while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
		struct run *u = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&s->ring, cqe);
		s->inflight--;
		complete(s, bd, u, res);
		more = true;
	}
	if (more) {
		start_waiting(s, bd);
		if (io_uring_sq_ready(&s->ring))
			qcow2_kick(bd);
	}
}

static void ring_event(void *opaque, uint32_t events)
{
	struct block_dev *bd = opaque;
	struct qcow2_state *s = bd->state;
	uint64_t v;

	(void)events;
	if (read(s->ring_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: completion eventfd: %s", bd->name, strerror(errno));
	reap(s, bd);
}

/* The iovec segments covering bytes [skip, skip + n) of iov, into out;
 * their count. */
static int slice_iov(const struct iovec *iov, int iovcnt, uint64_t skip, uint64_t n,
		     struct iovec *out)
{
	int k = 0;

	for (int i = 0; i < iovcnt && n; i++) {
		uint64_t l = iov[i].iov_len;

		if (skip >= l) {
			skip -= l;
			continue;
		}
		out[k].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[k].iov_len = l - skip < n ? l - skip : n;
		n -= out[k].iov_len;
		skip = 0;
		k++;
	}
	return k;
}

/* Bounce run `u` if O_DIRECT needs it.  1 done (or not needed), 0 when
 * the request must take the synchronous path instead, -ENOMEM. */
static int bounce(struct qcow2_state *s, struct block_dev *bd, struct run *u, bool rd)
{
	bool mem_ok = true;

	for (int i = 0; i < u->iovcnt && mem_ok; i++)
		mem_ok = aligned((uintptr_t)u->iov[i].iov_base, s->mem_align) &&
			 aligned(u->iov[i].iov_len, s->mem_align);
	if (!aligned(u->host, s->align) || !aligned(u->len, s->align)) {
		if (!rd)
			return 0;  /* would need a read-modify-write */
		mem_ok = false;
	}
	if (mem_ok)
		return 1;
	u->boff = u->host & ~(uint64_t)(s->align - 1);
	u->blen = ((u->host + u->len + s->align - 1) & ~(uint64_t)(s->align - 1)) - u->boff;
	if (u->blen > BOUNCE_MAX_REQ || u->blen > BOUNCE_BUDGET - s->bounce_bytes)
		return 0;
	if (posix_memalign((void **)&u->bounce, s->mem_align > s->align ? s->mem_align : s->align,
			   u->blen)) {
		u->bounce = NULL;
		return -ENOMEM;
	}
	s->bounce_bytes += u->blen;
	if (!rd) {
		uint8_t *dst = u->bounce;

		for (int i = 0; i < u->iovcnt; i++) {
			memcpy(dst, u->iov[i].iov_base, u->iov[i].iov_len);
			dst += u->iov[i].iov_len;
		}
	}
	bd->stats.bounced++;
	return 1;
}

static void free_areq(struct qcow2_state *s, struct areq *q, struct run *runs, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		if (runs[i].bounce) {
			s->bounce_bytes -= runs[i].blen;
			free(runs[i].bounce);
		}
	}
	free(q);
}

/* Try the fast path for a read, write or flush.  1 queued, 0 when the
 * synchronous path must take it, -ENOMEM. */
static int try_fast(struct block_dev *bd, const struct block_req *req)
{
	struct qcow2_state *s = bd->state;
	struct qimg *im = s->img;
	bool rd = req->op == BLOCK_OP_READ;
	uint64_t cs = im->cluster_size, nclus = 1;
	unsigned n = 0;
	struct areq *q;
	struct run *runs;
	struct iovec *iovs;
	int r;

	if (im->hooks)
		return 0;
	if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE) {
		if (!req->len)
			return 0;
		nclus = ((req->offset + req->len - 1) >> im->cluster_bits) -
			(req->offset >> im->cluster_bits) + 1;
	}
	/* Runs, then the iovec slices: at most one more segment per run. */
	q = malloc(sizeof(*q) + nclus * sizeof(struct run) +
		   ((req->op == BLOCK_OP_FLUSH ? 0 : req->iovcnt) + nclus) * sizeof(struct iovec));
	if (!q)
		return -ENOMEM;
	runs = (struct run *)(q + 1);
	iovs = (struct iovec *)(runs + nclus);
	*q = (struct areq){ .op = req->op, .done = req->done, .opaque = req->opaque };
	if (req->op == BLOCK_OP_FLUSH) {
		runs[0] = (struct run){ .q = q };
		n = 1;
	}
	for (uint64_t g = req->offset, end = req->offset + req->len; g < end;) {
		uint64_t host, len = cs - (g & (cs - 1));

		if (len > end - g)
			len = end - g;
		r = qcow2_map_direct(im, g, !rd, &host);
		if (r <= 0) {
			free(q);
			return 0;  /* lookup errors are reported by the synchronous path */
		}
		if (n && runs[n - 1].host + runs[n - 1].len == host &&
		    runs[n - 1].len + len <= MAX_RUN) {
			runs[n - 1].len += len;
		} else {
			runs[n] = (struct run){ .q = q, .host = host, .len = len,
						.boff = g - req->offset };
			n++;
		}
		g += len;
	}
	/* Each run's part of the caller's iovec (boff held the run's
	 * offset in the request until now). */
	for (unsigned i = 0; i < n && req->op != BLOCK_OP_FLUSH; i++) {
		struct run *u = &runs[i];

		u->iov = iovs;
		u->iovcnt = slice_iov(req->iov, req->iovcnt, u->boff, u->len, iovs);
		iovs += u->iovcnt;
		u->boff = 0;
		r = s->direct ? bounce(s, bd, u, rd) : 1;
		if (r <= 0) {
			free_areq(s, q, runs, i);
			return r;
		}
	}
	q->runs_left = n;
	for (unsigned i = 0; i < n; i++)
		start(s, bd, &runs[i]);
	return 1;
}

static int qcow2_submit(struct block_dev *bd, const struct block_req *req)
{
	if (req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE || req->op == BLOCK_OP_FLUSH) {
		int r = try_fast(bd, req);

		if (r)
			return r < 0 ? r : 0;
	}
	return queue_sync(bd, req);
}

static void qcow2_close(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;

	while (s->head || s->inflight || s->wait_head) {
		struct io_uring_cqe *cqe;
		int r;

		if (s->head) {
			run_pending(bd);
			continue;
		}
		start_waiting(s, bd);
		qcow2_kick(bd);
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
	evloop_del(bd->loop, s->ring_efd);
	io_uring_queue_exit(&s->ring);
	close(s->efd);
	close(s->ring_efd);
	if (s->dfd != s->img->fd)
		close(s->dfd);
	qcow2_img_free(s->img);
	free(s);
	bd->state = NULL;
}

static const struct block_driver qcow2_driver = {
	.name = "qcow2",
	.submit = qcow2_submit,
	.kick = qcow2_kick,
	.close = qcow2_close,
};

/* cache=none: a second descriptor on the same file, O_DIRECT, for the
 * fast path (img->fd stays buffered: see the top of this file), and the
 * memory alignment the kernel wants. */
static int open_direct(struct block_dev *bd, struct qcow2_state *s, char *err, size_t errlen)
{
	char path[64];
	struct statx stx;
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->img->fd);
	s->dfd = open(path, (s->img->writable ? O_RDWR : O_RDONLY) | O_DIRECT | O_CLOEXEC);
	if (s->dfd < 0) {
		int r = -errno;

		snprintf(err, errlen, "%s: reopening with O_DIRECT: %s", bd->name, strerror(-r));
		return r;
	}
	if (fstat(s->dfd, &a) || fstat(s->img->fd, &b) || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		snprintf(err, errlen, "%s: reopening with O_DIRECT gave another file", bd->name);
		return -EIO;
	}
	s->direct = true;
	s->align = bd->logical_block;
	s->mem_align = bd->logical_block;
	if (!statx(s->dfd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align > s->mem_align)
		s->mem_align = stx.stx_dio_mem_align;
	return 0;
}

int qcow2_io_attach(struct block_dev *bd, struct qimg *im, bool direct, char *err,
		    size_t errlen)
{
	struct qcow2_state *s = calloc(1, sizeof(*s));
	bool ring = false;
	int r;

	if (!s) {
		qcow2_img_free(im);
		snprintf(err, errlen, "%s: out of memory", bd->name);
		return -ENOMEM;
	}
	s->img = im;
	s->dfd = im->fd;
	s->ring_efd = -1;
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd: %s", bd->name, strerror(-r));
		goto fail;
	}
	if (direct && (r = open_direct(bd, s, err, errlen)))
		goto fail;
	/* COOP_TASKRUN as in raw.c; older kernels refuse it. */
	r = io_uring_queue_init(RING_ENTRIES, &s->ring, IORING_SETUP_COOP_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
	if (r < 0) {
		snprintf(err, errlen, "%s: io_uring: %s", bd->name, strerror(-r));
		goto fail;
	}
	ring = true;
	s->max_inflight = s->ring.cq.ring_entries;
	s->ring_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->ring_efd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd: %s", bd->name, strerror(-r));
		goto fail;
	}
	r = io_uring_register_eventfd(&s->ring, s->ring_efd);
	if (r < 0) {
		snprintf(err, errlen, "%s: io_uring eventfd: %s", bd->name, strerror(-r));
		goto fail;
	}
	r = evloop_add(bd->loop, s->efd, EPOLLIN, qcow2_event, bd);
	if (r < 0) {
		snprintf(err, errlen, "%s: event loop: %s", bd->name, strerror(-r));
		goto fail;
	}
	r = evloop_add(bd->loop, s->ring_efd, EPOLLIN, ring_event, bd);
	if (r < 0) {
		evloop_del(bd->loop, s->efd);
		snprintf(err, errlen, "%s: event loop: %s", bd->name, strerror(-r));
		goto fail;
	}
	bd->size = im->size;
	bd->can_discard = true;
	bd->drv = &qcow2_driver;
	bd->state = s;
	return 0;
fail:
	if (ring)
		io_uring_queue_exit(&s->ring);
	if (s->ring_efd >= 0)
		close(s->ring_efd);
	if (s->efd >= 0)
		close(s->efd);
	if (s->dfd >= 0 && s->dfd != im->fd)
		close(s->dfd);
	qcow2_img_free(im);
	free(s);
	return r;
}
