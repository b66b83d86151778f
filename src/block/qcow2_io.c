/*
 * qcow2_io.c - the qcow2 block_driver: requests from a device.
 *
 * submit() only queues the request (its iovec copied) and raises an
 * eventfd watched on the device's event loop; the handler runs the queued
 * requests in order with synchronous reads and writes on the I/O thread
 * and calls their callbacks there, so block.h's rule holds (never a
 * callback from inside submit).  bd->stats.sqes counts requests, not
 * system calls.
 */
#include "block/qcow2_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/block.h"
#include "core/event_loop.h"
#include "util/log.h"

struct pending {
	struct pending *next;
	struct block_req req;
	struct iovec iov[];
};

struct qcow2_state {
	struct qimg *img;
	int efd;
	struct pending *head, *tail;
};

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

		if (r && r != -ENOMEM && r != -ENOSPC)
			r = -EIO;
		p->req.done(p->req.opaque, r);
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

static int qcow2_submit(struct block_dev *bd, const struct block_req *req)
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
	bd->stats.sqes[req->op]++;
	if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: eventfd: %s", bd->name, strerror(errno));
	return 0;
}

static void qcow2_close(struct block_dev *bd)
{
	struct qcow2_state *s = bd->state;

	while (s->head)
		run_pending(bd);
	evloop_del(bd->loop, s->efd);
	close(s->efd);
	qcow2_img_free(s->img);
	free(s);
	bd->state = NULL;
}

static const struct block_driver qcow2_driver = {
	.name = "qcow2",
	.submit = qcow2_submit,
	.close = qcow2_close,
};

int qcow2_io_attach(struct block_dev *bd, struct qimg *im, char *err, size_t errlen)
{
	struct qcow2_state *s = calloc(1, sizeof(*s));
	int r;

	if (!s) {
		qcow2_img_free(im);
		snprintf(err, errlen, "%s: out of memory", bd->name);
		return -ENOMEM;
	}
	s->img = im;
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: eventfd: %s", bd->name, strerror(-r));
		goto fail;
	}
	r = evloop_add(bd->loop, s->efd, EPOLLIN, qcow2_event, bd);
	if (r < 0) {
		snprintf(err, errlen, "%s: event loop: %s", bd->name, strerror(-r));
		goto fail;
	}
	bd->size = im->size;
	bd->can_discard = true;
	bd->drv = &qcow2_driver;
	bd->state = s;
	return 0;
fail:
	if (s->efd >= 0)
		close(s->efd);
	qcow2_img_free(im);
	free(s);
	return r;
}
