/*
 * virtqueue.h - split virtqueues (virtio 1.2 section 2.7): the device side.
 *
 * The driver's rings live in guest RAM and everything in them is untrusted.
 * virtq_enable() checks that the descriptor table, available ring and used
 * ring lie wholly inside guest RAM (one region each) with their required
 * alignment; virtq_pop() walks one descriptor chain, direct or indirect
 * (VIRTIO_F_INDIRECT_DESC), and turns it into host pointers, refusing
 * chains that leave RAM, loop, are longer than the queue, nest indirect
 * tables, or put a device-readable buffer after a device-writable one.  A
 * refused chain marks the queue broken: the device then sets
 * DEVICE_NEEDS_RESET (virtio.h) and ignores the queue until reset.
 *
 * Memory ordering against the driver's vCPUs follows section 2.7.13: the
 * available index is read with acquire semantics before the ring entries,
 * used entries are written before the used index is published with
 * release semantics, and a full barrier separates publishing the used
 * index from reading used_event / the avail flags (VIRTIO_F_EVENT_IDX).
 *
 * A queue is used by one thread at a time (the owning device's lock).
 */
#ifndef KVMM_VIRTIO_VIRTQUEUE_H
#define KVMM_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_mem;
struct state_buf;
struct state_reader;

#define VIRTQ_MAX_SIZE  1024   /* largest queue size a kvmm device offers */

/* virtq_desc.flags */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
/* virtq_avail.flags / virtq_used.flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

struct virtq_desc {
	uint64_t addr;   /* guest-physical, little-endian */
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtq {
	/* Set by the transport from the driver's registers. */
	uint16_t size;             /* entries, power of two, <= max_size */
	uint16_t max_size;         /* what the device offers */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;                /* enabled and checked (virtq_enable) */
	bool broken;               /* a bad chain was seen; reset needed */
	/* Negotiated features that change the ring format. */
	bool event_idx, indirect;
	/* Host views of the rings, valid while ready. */
	struct virtq_desc *desc;
	volatile uint16_t *avail;  /* flags, idx, ring[size], used_event */
	volatile uint16_t *used;   /* flags, idx, then virtq_used_elem[size], avail_event */
	struct guest_mem *mem;
	uint16_t last_avail_idx;   /* next available entry to take */
	uint16_t used_idx;         /* next used entry to fill (our copy) */
	uint16_t signalled_used;   /* used_idx when the driver was last interrupted */
	bool signalled_valid;
	bool notify_off;           /* between virtq_notify_disable and _enable */
	/* Bumped by every virtq_enable() and virtq_reset(): a device keeps
	 * it with a request it popped and pushes the result only if it
	 * still matches, so a completion from before a queue restart
	 * (QueueReady 0 then 1, no device reset) never lands in the new
	 * rings.  Not saved: nothing is in flight across save / load. */
	uint32_t enable_gen;
};

/* One descriptor chain taken from the available ring, as host pointers.
 * Segments the device reads (driver -> device) come first, then the
 * writable ones; gpa[] keeps each segment's guest address so that written
 * ranges can be reported (gm_note_write) when the chain is returned. */
struct virtq_elem {
	uint16_t head;             /* descriptor index returned in the used ring */
	uint16_t out_num, in_num;  /* readable, then writable segments */
	uint32_t out_len, in_len;  /* their total sizes, bytes */
	struct iovec iov[VIRTQ_MAX_SIZE];
	uint64_t gpa[VIRTQ_MAX_SIZE];
};

/* Check and map the rings of `vq` (size, desc_gpa, avail_gpa, used_gpa as
 * the driver wrote them) in `mem`; on success the queue is ready with
 * last_avail_idx = used_idx = 0.  Returns 0, or -EINVAL when the size is
 * not a power of two in 1..max_size, a ring is misaligned (desc 16 bytes,
 * avail 2, used 4) or not wholly inside one RAM region.  Section 2.7. */
int virtq_enable(struct virtq *vq, struct guest_mem *mem, bool event_idx,
		 bool indirect);

/* Forget the rings (device reset or queue reset): not ready, not broken,
 * indices 0.  Keeps max_size. */
void virtq_reset(struct virtq *vq);

/* Take the next available chain into *elem.  Returns 1 when one was taken,
 * 0 when the ring is empty (or the queue not ready / broken), -EIO when
 * the driver broke the rules (avail index more than `size` ahead, a
 * chain offered while `size` are already popped and not pushed, head
 * index >= size, a buffer not wholly inside one RAM region, a loop, more
 * than `size` buffers, INDIRECT without the feature / with NEXT / nested,
 * an indirect table of zero or non-multiple-of-16 length, readable after
 * writable, more than UINT32_MAX bytes in total): the queue is marked
 * broken and nothing more is taken from it.  Zero-length buffers are legal
 * and skipped (not in iov[]).  With EVENT_IDX and notifications enabled,
 * avail_event is advanced past the popped entry. */
int virtq_pop(struct virtq *vq, struct virtq_elem *elem);

/* Return a chain to the driver with `written` bytes written into its
 * writable segments (reported to the machine with gm_note_write).  The
 * used index is published at once.  Section 2.7.8. */
void virtq_push(struct virtq *vq, const struct virtq_elem *elem,
		uint32_t written);

/* Give the last popped chain back unused (it will be popped again). */
void virtq_unpop(struct virtq *vq);

/* After virtq_push()es: does the driver want an interrupt now?  Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX
 * (section 2.7.10).  Updates the "signalled" bookkeeping when it says
 * yes, so call it once per batch and interrupt when it returns true. */
bool virtq_should_notify(struct virtq *vq);

/* Ask the driver not to kick us while we are draining the queue (flag or
 * avail_event), then to kick again; virtq_notify_enable() returns true if
 * more entries arrived meanwhile (the caller must pop again).  Section
 * 2.7.7 / 2.7.10. */
void virtq_notify_disable(struct virtq *vq);
bool virtq_notify_enable(struct virtq *vq);

/* Copy up to `len` bytes out of / into an element's readable / writable
 * segments starting `offset` bytes in; return the number of bytes copied
 * (short when the segments are shorter).  For small headers and status
 * bytes. */
size_t virtq_elem_read(const struct virtq_elem *elem, size_t offset,
		       void *buf, size_t len);
size_t virtq_elem_write(const struct virtq_elem *elem, size_t offset,
			const void *buf, size_t len);

/* Save / restore the queue's addresses and indices (core/state.h); load
 * re-runs virtq_enable() on a ready queue and returns its error. */
void virtq_save(const struct virtq *vq, struct state_buf *b);
int virtq_load(struct virtq *vq, struct guest_mem *mem, bool event_idx,
	       bool indirect, struct state_reader *r);

#endif
