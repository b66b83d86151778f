/*
 * block_powercut.c - see block_powercut.h.  Requests are copied at submit
 * (the iovec array; the buffers stay the caller's until completion), kept
 * in two FIFOs (queued, then kicked), and completed by the eventfd handler
 * in order.  Writes apply to `current` at completion, never earlier, so a
 * flush makes durable exactly what had completed.
 */
#include "block_powercut.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/event_loop.h"

struct pc_req {
	struct pc_req *next;
	struct block_req r;
	struct iovec iov[];
};

static void wake(struct block_powercut *pc)
{
	uint64_t one = 1;

	if (write(pc->efd, &one, sizeof(one)) < 0) {
		/* Only fails when the counter is saturated: already awake. */
	}
}

/* Append a chain of requests (ending in NULL) to a FIFO. */
static void append(struct pc_req **head, struct pc_req **tail, struct pc_req *q)
{
	if (*tail)
		(*tail)->next = q;
	else
		*head = q;
	while (q->next)
		q = q->next;
	*tail = q;
}

static int run_one(struct block_powercut *pc, struct pc_req *q)
{
	uint64_t off = q->r.offset;
	int err = pc->fail_next[q->r.op];

	if (err) {
		pc->fail_next[q->r.op] = 0;
		return err;
	}
	switch (q->r.op) {
	case BLOCK_OP_READ:
	case BLOCK_OP_WRITE:
		for (int i = 0; i < q->r.iovcnt; i++) {
			if (q->r.op == BLOCK_OP_READ)
				memcpy(q->iov[i].iov_base, pc->current + off, q->iov[i].iov_len);
			else
				memcpy(pc->current + off, q->iov[i].iov_base, q->iov[i].iov_len);
			off += q->iov[i].iov_len;
		}
		break;
	case BLOCK_OP_FLUSH:
		memcpy(pc->durable, pc->current, pc->size);
		break;
	case BLOCK_OP_DISCARD:
	case BLOCK_OP_WRITE_ZEROES:
		memset(pc->current + off, 0, q->r.len);
		break;
	}
	pc->ops[q->r.op]++;
	return 0;
}

/* Complete every kicked request, in order; callbacks may submit more. */
static void complete_kicked(struct block_powercut *pc, int force_err)
{
	while (pc->kicked && (force_err || !pc->hold)) {
		struct pc_req *q = pc->kicked;
		int r;

		pc->kicked = q->next;
		if (!pc->kicked)
			pc->kicked_tail = NULL;
		r = force_err ? force_err : run_one(pc, q);
		q->r.done(q->r.opaque, r);
		free(q);
	}
}

static void pc_event(void *opaque, uint32_t events)
{
	struct block_powercut *pc = opaque;
	uint64_t v;

	if (read(pc->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another round emptied it. */
	}
	complete_kicked(pc, 0);
}

static int pc_submit(struct block_dev *bd, const struct block_req *req)
{
	struct block_powercut *pc = bd->state;
	int n = req->op == BLOCK_OP_READ || req->op == BLOCK_OP_WRITE ? req->iovcnt : 0;
	struct pc_req *q = calloc(1, sizeof(*q) + n * sizeof(struct iovec));

	if (!q)
		return -ENOMEM;
	q->r = *req;
	if (n)
		memcpy(q->iov, req->iov, n * sizeof(struct iovec));
	append(&pc->queued, &pc->queued_tail, q);
	pc->submitted[req->op]++;
	return 0;
}

static void pc_kick(struct block_dev *bd)
{
	struct block_powercut *pc = bd->state;

	if (!pc->queued)
		return;
	append(&pc->kicked, &pc->kicked_tail, pc->queued);
	pc->queued = pc->queued_tail = NULL;
	wake(pc);
}

static void pc_close(struct block_dev *bd)
{
	struct block_powercut *pc = bd->state;

	/* Like raw's close: everything in flight completes first. */
	pc->hold = false;
	pc_kick(bd);
	complete_kicked(pc, 0);
	evloop_del(pc->loop, pc->efd);
	close(pc->efd);
	free(pc->durable);
	free(pc->current);
	free(pc);
}

static const struct block_driver powercut_driver = {
	.name = "powercut",
	.submit = pc_submit,
	.kick = pc_kick,
	.close = pc_close,
};

int block_powercut_open(uint64_t size, bool readonly, struct evloop *loop,
			struct block_dev **out)
{
	struct block_powercut *pc = calloc(1, sizeof(*pc));
	int r = -ENOMEM;

	*out = NULL;
	if (!pc)
		return -ENOMEM;
	pc->size = size;
	pc->loop = loop;
	pc->durable = calloc(1, size ? size : 1);
	pc->current = calloc(1, size ? size : 1);
	pc->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!pc->durable || !pc->current)
		goto fail;
	if (pc->efd < 0) {
		r = -errno;
		goto fail;
	}
	r = evloop_add(loop, pc->efd, EPOLLIN, pc_event, pc);
	if (r)
		goto fail;
	r = block_open_driver(&powercut_driver, pc, size, readonly, loop, out);
	if (r) {
		evloop_del(loop, pc->efd);
		goto fail;
	}
	return 0;
fail:
	if (pc->efd >= 0)
		close(pc->efd);
	free(pc->durable);
	free(pc->current);
	free(pc);
	return r;
}

void block_powercut_cut(struct block_dev *bd)
{
	struct block_powercut *pc = bd->state;

	memcpy(pc->current, pc->durable, pc->size);
	pc_kick(bd);
	complete_kicked(pc, -EIO);
}

void block_powercut_hold(struct block_dev *bd, bool hold)
{
	struct block_powercut *pc = bd->state;

	pc->hold = hold;
	if (!hold && pc->kicked)
		wake(pc);
}
