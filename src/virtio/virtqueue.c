/*
 * virtqueue.c - the device side of split virtqueues (virtio 1.2 section
 * 2.7); virtqueue.h has the interface.
 *
 * Trust.  Everything in the three rings is written by the driver and may
 * change under our feet while we read it (another vCPU), so:
 *   - each descriptor is copied once into a local before it is checked,
 *     and only the copy is used (no check-then-reread window);
 *   - the available index is read once per virtq_pop() and the distance
 *     to last_avail_idx must be at most `size` (a driver can never have
 *     more than `size` chains outstanding; more means a corrupted index,
 *     and trusting it would make us re-pop stale heads); likewise the
 *     chains popped and not yet pushed (last_avail_idx - used_idx) never
 *     exceed `size`, so a device cannot be made to hold more requests
 *     than the ring has descriptors, and a saved queue always loads;
 *   - every buffer is resolved with gm_ptr(), which only succeeds when the
 *     whole [addr, addr + len) lies in one RAM region: a buffer in the MMIO
 *     hole, past the end of RAM, or straddling the hole is refused;
 *   - the ring pointers themselves were checked once at virtq_enable():
 *     RAM regions never move, so they stay valid until reset.
 * A refused chain marks the queue broken; the device model (virtio.c) then
 * sets DEVICE_NEEDS_RESET.  Nothing here aborts on guest input.
 *
 * Chain walking.  Descriptors are followed through `next` while NEXT is
 * set.  Termination is guaranteed by counting: at most `size` descriptors
 * are visited in the queue's own table (a longer walk must revisit one, so
 * it is a loop), at most len/16 in an indirect table, and at most `size`
 * buffers in the whole chain - the spec's "a driver MUST NOT create a
 * descriptor chain longer than the Queue Size" (2.7.5.3.1).  The buffer
 * limit also bounds the element's iov[] (size <= VIRTQ_MAX_SIZE).  The
 * descriptor that points to an indirect table is not a buffer and does not
 * count against that limit, so a full-size indirect table is accepted.
 *
 * Indirect tables (2.7.5.3): only with VIRTIO_F_INDIRECT_DESC negotiated;
 * len a non-zero multiple of 16 and at most VIRTQ_MAX_SIZE entries, the
 * table wholly in RAM; no INDIRECT inside an indirect table; INDIRECT and
 * NEXT in the same descriptor is refused (the spec forbids drivers to set
 * both, and accepting it would make "what follows the table" ambiguous);
 * `next` inside the table must be below its entry count.  The WRITE flag
 * of the descriptor pointing to a table is ignored, as the spec requires.
 * A table need not be 16-byte aligned (the spec asks nothing), which is
 * why descriptors are copied with memcpy rather than dereferenced.
 *
 * Zero-length buffers are accepted and skipped: the split-ring section
 * forbids only chains longer than 2^32 bytes in total and zero-length
 * indirect tables, so a zero-length buffer descriptor is legal; it carries
 * no byte, so it is neither mapped nor put into the element (its address
 * is never dereferenced, so it need not be RAM).  It still counts for loop
 * detection and for the readable-before-writable rule.  Chains whose total
 * length exceeds UINT32_MAX are refused (2.7.5.1: longer than 2^32 bytes;
 * the used ring's len could not express them either).
 *
 * Ordering (2.7.13, and the Linux driver's barriers it pairs with):
 *   - pop: load-acquire of avail->idx, then ring entries and descriptors;
 *   - push: used element stores, then store-release of used->idx;
 *   - should_notify: a seq_cst fence between publishing used->idx and
 *     reading used_event / avail->flags, otherwise the driver may re-arm
 *     used_event after our read yet see the old used->idx (a lost
 *     interrupt).  notify_enable has the mirror-image fence between writing
 *     avail_event / used->flags and re-reading avail->idx.
 * The host is x86_64 (little-endian), the ring format's byte order, so
 * fields are used as they are.
 *
 * Every byte we write into guest RAM (used elements, used->idx, the used
 * flags, avail_event, and the device-writable buffers up to `written`) is
 * reported with gm_note_write() so the software CPU drops decoded code.
 */
#include "virtio/virtqueue.h"

#include <errno.h>
#include <string.h>

#include "core/memory.h"
#include "core/state.h"

/* Byte sizes of the rings for `size` entries (2.7, "Virtqueue Part
 * Sizes"); the event fields at their ends are only touched with
 * VIRTIO_F_EVENT_IDX, so they are only required then. */
static uint64_t avail_bytes(uint16_t size, bool event_idx)
{
	return 4 + 2ull * size + (event_idx ? 2 : 0);
}

static uint64_t used_bytes(uint16_t size, bool event_idx)
{
	return 4 + 8ull * size + (event_idx ? 2 : 0);
}

/* u16 indices into vq->avail / vq->used of the fields we touch. */
#define AVAIL_FLAGS 0
#define AVAIL_IDX   1
#define AVAIL_RING  2
#define USED_FLAGS  0
#define USED_IDX    1

static uint16_t *used_event_ptr(struct virtq *vq)
{
	return (uint16_t *)&vq->avail[AVAIL_RING + vq->size];
}

static uint16_t *avail_event_ptr(struct virtq *vq)
{
	return (uint16_t *)&vq->used[2 + 4 * (unsigned)vq->size];
}

static uint64_t avail_event_gpa(const struct virtq *vq)
{
	return vq->used_gpa + 4 + 8ull * vq->size;
}

int virtq_enable(struct virtq *vq, struct guest_mem *mem, bool event_idx,
		 bool indirect)
{
	uint16_t size = vq->size;
	void *desc, *avail, *used;

	/* Whatever happens, nothing of an earlier enable survives. */
	vq->enable_gen++;
	vq->ready = vq->broken = false;
	vq->signalled_valid = vq->notify_off = false;
	vq->last_avail_idx = vq->used_idx = vq->signalled_used = 0;
	if (size == 0 || (size & (size - 1)) || size > vq->max_size ||
	    size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -EINVAL;
	desc = gm_ptr(mem, vq->desc_gpa, 16ull * size);
	avail = gm_ptr(mem, vq->avail_gpa, avail_bytes(size, event_idx));
	used = gm_ptr(mem, vq->used_gpa, used_bytes(size, event_idx));
	if (!desc || !avail || !used)
		return -EINVAL;
	vq->desc = desc;
	vq->avail = avail;
	vq->used = used;
	vq->mem = mem;
	vq->event_idx = event_idx;
	vq->indirect = indirect;
	vq->ready = true;
	return 0;
}

void virtq_reset(struct virtq *vq)
{
	uint16_t max = vq->max_size;
	uint32_t gen = vq->enable_gen;

	memset(vq, 0, sizeof(*vq));
	vq->max_size = max;
	vq->enable_gen = gen + 1;
}

/* Mark the queue broken and report the driver error. */
static int broken(struct virtq *vq)
{
	vq->broken = true;
	return -EIO;
}

/* Add one buffer descriptor (already copied) to the element. */
static int add_buffer(struct virtq *vq, struct virtq_elem *elem,
		      const struct virtq_desc *d, unsigned *nbufs)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	unsigned k;
	void *p;

	/* Device-readable buffers come first (2.7.4.2 / 2.7.5). */
	if (!writable && elem->in_num)
		return -EIO;
	if (++*nbufs > vq->size)
		return -EIO;
	if (d->len == 0)
		return 0;
	if ((uint64_t)elem->out_len + elem->in_len + d->len > UINT32_MAX)
		return -EIO;
	p = gm_ptr(vq->mem, d->addr, d->len);
	if (!p)
		return -EIO;
	k = elem->out_num + elem->in_num;
	elem->iov[k].iov_base = p;
	elem->iov[k].iov_len = d->len;
	elem->gpa[k] = d->addr;
	if (writable) {
		elem->in_num++;
		elem->in_len += d->len;
	} else {
		elem->out_num++;
		elem->out_len += d->len;
	}
	return 0;
}

/* Walk an indirect table at [addr, addr + len). */
static int walk_indirect(struct virtq *vq, struct virtq_elem *elem,
			 uint64_t addr, uint32_t len, unsigned *nbufs)
{
	const uint8_t *table;
	unsigned entries, visited = 0, i = 0;
	struct virtq_desc d;

	if (!vq->indirect || len == 0 || len % sizeof(d) ||
	    len / sizeof(d) > VIRTQ_MAX_SIZE)
		return -EIO;
	entries = len / sizeof(d);
	table = gm_ptr(vq->mem, addr, len);
	if (!table)
		return -EIO;
	for (;;) {
		if (++visited > entries)
			return -EIO; /* a loop inside the table */
		memcpy(&d, table + (size_t)i * sizeof(d), sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return -EIO; /* nested table */
		if (add_buffer(vq, elem, &d, nbufs))
			return -EIO;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= entries)
			return -EIO;
		i = d.next;
	}
}

int virtq_pop(struct virtq *vq, struct virtq_elem *elem)
{
	uint16_t avail_idx, head;
	unsigned visited = 0, nbufs = 0, i;
	struct virtq_desc d;

	if (!vq->ready || vq->broken)
		return 0;
	avail_idx = __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE);
	if (avail_idx == vq->last_avail_idx)
		return 0;
	if ((uint16_t)(avail_idx - vq->last_avail_idx) > vq->size)
		return broken(vq);
	/* Every chain in flight holds at least one descriptor of the table,
	 * so a driver cannot have more than `size` outstanding: one more
	 * means a head offered again before it came back. */
	if ((uint16_t)(vq->last_avail_idx - vq->used_idx) >= vq->size)
		return broken(vq);
	head = vq->avail[AVAIL_RING + (vq->last_avail_idx & (vq->size - 1))];
	if (head >= vq->size)
		return broken(vq);

	elem->head = head;
	elem->out_num = elem->in_num = 0;
	elem->out_len = elem->in_len = 0;
	for (i = head;;) {
		if (++visited > vq->size)
			return broken(vq); /* revisited a descriptor: a loop */
		memcpy(&d, &vq->desc[i], sizeof(d));
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if ((d.flags & VIRTQ_DESC_F_NEXT) ||
			    walk_indirect(vq, elem, d.addr, d.len, &nbufs))
				return broken(vq);
			break;
		}
		if (add_buffer(vq, elem, &d, &nbufs))
			return broken(vq);
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->size)
			return broken(vq);
		i = d.next;
	}

	vq->last_avail_idx++;
	/* With EVENT_IDX and notifications on, ask to be kicked for the
	 * next entry after this one (as if notify_enable ran), so a device
	 * that just pops on every kick never misses one. */
	if (vq->event_idx && !vq->notify_off) {
		__atomic_store_n(avail_event_ptr(vq), vq->last_avail_idx,
				 __ATOMIC_RELAXED);
		gm_note_write(vq->mem, avail_event_gpa(vq), 2);
	}
	return 1;
}

void virtq_unpop(struct virtq *vq)
{
	vq->last_avail_idx--;
}

void virtq_push(struct virtq *vq, const struct virtq_elem *elem,
		uint32_t written)
{
	unsigned slot;
	uint64_t left;
	volatile uint32_t *ue;

	if (!vq->ready || vq->broken)
		return;
	if (written > elem->in_len)
		written = elem->in_len;
	/* Report the device-writable bytes the device says it wrote. */
	left = written;
	for (unsigned k = elem->out_num; left && k < elem->out_num + elem->in_num;
	     k++) {
		uint64_t n = elem->iov[k].iov_len < left ? elem->iov[k].iov_len
							 : left;
		gm_note_write(vq->mem, elem->gpa[k], n);
		left -= n;
	}

	slot = vq->used_idx & (vq->size - 1);
	ue = (volatile uint32_t *)&vq->used[2 + 4 * slot];
	ue[0] = elem->head;
	ue[1] = written;
	gm_note_write(vq->mem, vq->used_gpa + 4 + 8ull * slot, 8);
	vq->used_idx++;
	__atomic_store_n(&vq->used[USED_IDX], vq->used_idx, __ATOMIC_RELEASE);
	gm_note_write(vq->mem, vq->used_gpa + 2, 2);
}

/* vring_need_event(): has used->idx moved past event_idx since old? */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_notify(struct virtq *vq)
{
	uint16_t old = vq->signalled_used;
	bool valid = vq->signalled_valid;

	if (!vq->ready || vq->broken)
		return false;
	/* used->idx (published in virtq_push) before used_event / flags. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	/* Nothing pushed since the last interrupt (or ever: signalled_used
	 * starts at 0 like used_idx): nothing to tell. */
	if (old == vq->used_idx)
		return false;
	if (vq->event_idx) {
		uint16_t event = __atomic_load_n(used_event_ptr(vq),
						 __ATOMIC_RELAXED);
		vq->signalled_used = vq->used_idx;
		vq->signalled_valid = true;
		/* The first time there is no "old" to compare with. */
		return !valid || need_event(event, vq->used_idx, old);
	}
	if (__atomic_load_n(&vq->avail[AVAIL_FLAGS], __ATOMIC_RELAXED) &
	    VIRTQ_AVAIL_F_NO_INTERRUPT)
		return false;
	vq->signalled_used = vq->used_idx;
	vq->signalled_valid = true;
	return true;
}

void virtq_notify_disable(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return;
	vq->notify_off = true;
	/* With EVENT_IDX, leaving avail_event where it is suffices: the
	 * driver kicks only when its index crosses it. */
	if (vq->event_idx)
		return;
	__atomic_store_n(&vq->used[USED_FLAGS], VIRTQ_USED_F_NO_NOTIFY,
			 __ATOMIC_RELAXED);
	gm_note_write(vq->mem, vq->used_gpa, 2);
}

bool virtq_notify_enable(struct virtq *vq)
{
	if (!vq->ready || vq->broken)
		return false;
	vq->notify_off = false;
	if (vq->event_idx) {
		__atomic_store_n(avail_event_ptr(vq), vq->last_avail_idx,
				 __ATOMIC_RELAXED);
		gm_note_write(vq->mem, avail_event_gpa(vq), 2);
	} else {
		__atomic_store_n(&vq->used[USED_FLAGS], 0, __ATOMIC_RELAXED);
		gm_note_write(vq->mem, vq->used_gpa, 2);
	}
	/* The write above before re-reading avail->idx: a driver that added
	 * a buffer meanwhile either sees notifications on, or we see it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&vq->avail[AVAIL_IDX], __ATOMIC_ACQUIRE) !=
	       vq->last_avail_idx;
}

size_t virtq_elem_read(const struct virtq_elem *elem, size_t offset,
		       void *buf, size_t len)
{
	size_t done = 0;

	for (unsigned k = 0; k < elem->out_num && done < len; k++) {
		size_t seg = elem->iov[k].iov_len, n;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		n = seg - offset < len - done ? seg - offset : len - done;
		memcpy((uint8_t *)buf + done,
		       (const uint8_t *)elem->iov[k].iov_base + offset, n);
		done += n;
		offset = 0;
	}
	return done;
}

size_t virtq_elem_write(const struct virtq_elem *elem, size_t offset,
			const void *buf, size_t len)
{
	size_t done = 0;
	unsigned end = elem->out_num + elem->in_num;

	for (unsigned k = elem->out_num; k < end && done < len; k++) {
		size_t seg = elem->iov[k].iov_len, n;
		if (offset >= seg) {
			offset -= seg;
			continue;
		}
		n = seg - offset < len - done ? seg - offset : len - done;
		memcpy((uint8_t *)elem->iov[k].iov_base + offset,
		       (const uint8_t *)buf + done, n);
		done += n;
		offset = 0;
	}
	return done;
}

/* Stream layout: size, flags (ready, broken, signalled_valid, notify_off),
 * the three ring addresses, then the four indices. */
void virtq_save(const struct virtq *vq, struct state_buf *b)
{
	state_put_u16(b, vq->size);
	state_put_u8(b, (uint8_t)(vq->ready | vq->broken << 1 |
				  vq->signalled_valid << 2 |
				  vq->notify_off << 3));
	state_put_u64(b, vq->desc_gpa);
	state_put_u64(b, vq->avail_gpa);
	state_put_u64(b, vq->used_gpa);
	state_put_u16(b, vq->last_avail_idx);
	state_put_u16(b, vq->used_idx);
	state_put_u16(b, vq->signalled_used);
}

int virtq_load(struct virtq *vq, struct guest_mem *mem, bool event_idx,
	       bool indirect, struct state_reader *r)
{
	uint16_t size = state_get_u16(r);
	uint8_t flags = state_get_u8(r);
	uint64_t desc = state_get_u64(r);
	uint64_t avail = state_get_u64(r);
	uint64_t used = state_get_u64(r);
	uint16_t last_avail = state_get_u16(r);
	uint16_t used_idx = state_get_u16(r);
	uint16_t signalled = state_get_u16(r);
	int ret;

	if (r->err)
		return r->err;
	if (flags & ~0x0f)
		return -EINVAL;
	virtq_reset(vq);
	vq->size = size;
	vq->desc_gpa = desc;
	vq->avail_gpa = avail;
	vq->used_gpa = used;
	if (!(flags & 1))
		return flags ? -EINVAL : 0;
	ret = virtq_enable(vq, mem, event_idx, indirect);
	if (ret)
		return ret;
	/* At most `size` chains can be in flight (popped, not pushed). */
	if ((uint16_t)(last_avail - used_idx) > size) {
		vq->ready = false;
		return -EINVAL;
	}
	vq->last_avail_idx = last_avail;
	vq->used_idx = used_idx;
	vq->signalled_used = signalled;
	vq->broken = flags & 2;
	vq->signalled_valid = flags & 4;
	vq->notify_off = flags & 8;
	return 0;
}
