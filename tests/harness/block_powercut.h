/*
 * block_powercut.h - an in-memory block driver that can lose power.
 *
 * It keeps two images: `durable` (what survives a power cut) and `current`
 * (what reads see: durable plus every completed write).  A completed flush
 * copies current into durable, so exactly the writes that completed before
 * the flush was processed become durable.  block_powercut_cut() is the
 * power failure: current goes back to durable, and every request not yet
 * completed fails with -EIO (the machine that issued it is gone; nothing
 * is claimed for it).
 *
 * Requests complete asynchronously like the raw driver's: queued by submit,
 * handed over at kick, completed in submission order from an eventfd
 * handler on the event loop (hx_run_io() runs it).  With `hold` set they
 * stay in flight until it is cleared, so a test can cut the power with
 * requests outstanding.  Used by the virtio-blk device tests and the
 * virtio-blk fuzzer (no files touched).
 */
#ifndef KVMM_TESTS_BLOCK_POWERCUT_H
#define KVMM_TESTS_BLOCK_POWERCUT_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

struct block_powercut {
	uint64_t size;
	uint8_t *durable, *current;
	int efd;
	struct evloop *loop;
	struct pc_req *queued, *queued_tail; /* FIFOs (singly linked) */
	struct pc_req *kicked, *kicked_tail;
	bool hold;                         /* do not complete anything */
	int fail_next[5];                  /* -errno for the next op of a kind */
	uint64_t ops[5];                   /* completed, per enum block_op */
	uint64_t submitted[5];             /* accepted by submit, per enum block_op */
};

/* An image of `size` bytes (zeros), read-only or not, completing on
 * `loop`.  Returns 0 with *out set (bd->state is the block_powercut), or
 * -ENOMEM / -errno of eventfd or evloop_add.  block_close() frees it. */
int block_powercut_open(uint64_t size, bool readonly, struct evloop *loop,
			struct block_dev **out);

/* The driver state behind a block_dev from block_powercut_open(). */
static inline struct block_powercut *block_powercut_of(struct block_dev *bd)
{
	return bd->state;
}

/* Power failure: drop everything not flushed, fail what is in flight. */
void block_powercut_cut(struct block_dev *bd);

/* Hold requests in flight (true) or let them complete again (false; the
 * loop is woken). */
void block_powercut_hold(struct block_dev *bd, bool hold);

#endif
