/*
 * rng.c - virtio-rng (virtio 1.2 section 5.4).
 *
 * One queue, requestq: the driver posts writable buffers and the device
 * fills them with random bytes.  The bytes come from getrandom(2), the
 * kernel's CSPRNG, which never blocks once the host's pool is initialised
 * (long before a VM starts).  The device may return fewer bytes than the
 * buffer holds (5.4.6.1), so each request is capped at RNG_MAX_REQUEST:
 * a guest posting a gigabyte-sized chain gets a short answer instead of
 * keeping the I/O thread busy.  Readable segments in a chain are a driver
 * error (the spec only has device-writable buffers here).
 */
#include "virtio/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "virtio/virtio.h"

#define RNG_QUEUE_SIZE  64
#define RNG_MAX_REQUEST 65536u /* bytes per chain */

struct virtio_rng {
	struct virtio_dev vd;
	struct virtq_elem elem; /* one chain at a time: the queue is drained in place */
};

/* Fill up to `len` bytes of the chain's writable segments; returns the
 * number written.  getrandom() of at most 256 bytes never returns short
 * (random(7)); larger requests may, so loop. */
static uint32_t fill_random(struct virtq_elem *e, uint32_t len)
{
	uint32_t done = 0;

	for (unsigned i = e->out_num; i < e->out_num + e->in_num && done < len; i++) {
		uint8_t *p = e->iov[i].iov_base;
		size_t want = e->iov[i].iov_len;

		if (want > len - done)
			want = len - done;
		while (want) {
			ssize_t n = getrandom(p, want, 0);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return done;
			}
			p += n;
			want -= (size_t)n;
			done += (uint32_t)n;
		}
	}
	return done;
}

static void rng_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_rng *rng = vd->opaque;
	struct virtq *vq = &vd->vqs[q];
	unsigned served = 0;
	int r;

	do {
		virtq_notify_disable(vq);
		while ((r = virtq_pop(vq, &rng->elem)) == 1) {
			if (rng->elem.out_num) {
				virtio_dev_broken(vd, "virtio-rng: request with a device-readable buffer");
				return;
			}
			virtq_push(vq, &rng->elem,
				   fill_random(&rng->elem, RNG_MAX_REQUEST));
			/* A driver re-posting as fast as we answer would keep
			 * the I/O thread here forever: after a queue's worth,
			 * come back through the event loop. */
			if (++served % vq->size == 0) {
				virtio_queue_interrupt(vd, q);
				virtio_queue_kick(vd, q);
				return;
			}
		}
		if (r < 0) {
			virtio_dev_broken(vd, "virtio-rng: bad descriptor chain");
			return;
		}
	} while (virtq_notify_enable(vq));
	if (served)
		virtio_queue_interrupt(vd, q);
}

static void rng_destroy(struct virtio_dev *vd)
{
	free(vd->opaque);
}

static const struct virtio_dev_ops rng_ops = {
	.name = "virtio-rng",
	.device_id = VIRTIO_ID_RNG,
	.queue_notify = rng_queue_notify,
	.destroy = rng_destroy,
};

int virtio_rng_create(struct vm *vm, struct evloop *loop,
		      struct virtio_dev **out)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int r;

	if (!rng)
		return -ENOMEM;
	r = virtio_dev_init(&rng->vd, vm, loop, &rng_ops, rng, 1,
			    RNG_QUEUE_SIZE, 0, 0);
	if (r) {
		free(rng);
		return r;
	}
	*out = &rng->vd;
	return 0;
}
