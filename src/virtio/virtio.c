/*
 * virtio.c - the transport-independent virtio device model (virtio 1.2
 * sections 2 and 3); virtio.h has the interface.
 *
 * What lives here: the device status state machine, feature negotiation,
 * device reset, the bounds-checked device configuration window, queue
 * enabling, the kick path from a queue's eventfd to ops->queue_notify, the
 * decision to interrupt the driver, and DEVICE_NEEDS_RESET.  A transport
 * (pci.c, mmio.c) turns register accesses into the calls below, holding
 * vd->lock; a device type (blk.c, console.c, rng.c) only sees its ops
 * callbacks, also under vd->lock.
 *
 * Status (2.1, 3.1.1).  The driver may only set bits; writing 0 resets.
 * A write that would clear a bit keeps it set (2.1.1: "the driver MUST NOT
 * clear a device status bit"), DEVICE_NEEDS_RESET can only be set by us,
 * FEATURES_OK is refused (stays clear, which is how the driver learns it,
 * 3.1.1 step 6) when the accepted features are not a subset of the offered
 * ones or lack VIRTIO_F_VERSION_1 (kvmm's devices are modern only, with
 * no legacy interface).  DRIVER_OK without FEATURES_OK is a driver error
 * (DEVICE_NEEDS_RESET).  When DRIVER_OK is accepted, ops->activate runs and
 * every ready queue is kicked once: the driver may have made buffers
 * available before DRIVER_OK without notifying (3.1.1 forbids notifying
 * before it), so nothing else would make us look at them.
 *
 * Kicks.  Each queue has an eventfd watched by the I/O thread's loop.  The
 * transport (or KVM itself, via vm_ioeventfd) signals it; the handler runs
 * ops->queue_notify under vd->lock only while the device is live (DRIVER_OK
 * set, DEVICE_NEEDS_RESET clear) and the queue is ready and not broken.
 * Kicks that arrive at other times are drained and dropped - a reset
 * device must not touch rings the driver may be freeing.  If a queue went
 * broken during queue_notify (virtq_pop refused a chain) and the device
 * did not report it itself, the handler does (virtio_dev_broken), so no
 * device type can forget it.
 *
 * Broken devices (2.1.2).  virtio_dev_broken() sets DEVICE_NEEDS_RESET,
 * logs the reason once per reset, and sends a configuration-change
 * notification when DRIVER_OK is set, as the spec requires.  From then on
 * no queue is served until the driver writes status 0.
 *
 * Reset bumps vd->generation: a backend completion (virtio-blk's io_uring)
 * that started before the reset compares it and drops its result instead
 * of pushing into rings that no longer exist.  Its data may still land in
 * guest buffers, so the reset is only reported complete (status reads 0)
 * once the requests held at the reset are over (virtio_get_status).
 */
#include "virtio/virtio.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/event_loop.h"
#include "core/state.h"
#include "core/vm.h"
#include "util/log.h"

/* Status bits a driver may set. */
#define DRIVER_STATUS_BITS                                                 \
	(VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |                 \
	 VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK |             \
	 VIRTIO_STATUS_FAILED)

/* Transport feature bits (24..40, section 6) we implement; the others
 * (packed rings, in-order, notification data, ...) change the ring or
 * notification format and must not be offered. */
#define CORE_FEATURES                                                      \
	((1ull << VIRTIO_F_INDIRECT_DESC) | (1ull << VIRTIO_F_EVENT_IDX) |  \
	 (1ull << VIRTIO_F_VERSION_1))
#define TRANSPORT_FEATURE_MASK (((1ull << 41) - 1) & ~((1ull << 24) - 1))

static bool queue_live(const struct virtio_dev *vd, unsigned q)
{
	const struct virtq *vq = &vd->vqs[q];

	return (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) && vq->ready &&
	       !vq->broken;
}

static void kick_ready(void *opaque, uint32_t events)
{
	struct virtio_kick *k = opaque;
	struct virtio_dev *vd = k->vd;
	unsigned q = k->q;
	uint64_t v;

	(void)events;
	/* Non-blocking: a concurrent reader may have emptied it already. */
	if (read(vd->kick_fd[q], &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: queue %u: kick eventfd: %s", vd->ops->name, q,
			 strerror(errno));
	pthread_mutex_lock(&vd->lock);
	if (queue_live(vd, q)) {
		vd->ops->queue_notify(vd, q);
		if (vd->vqs[q].broken)
			virtio_dev_broken(vd, "bad ring index or descriptor chain");
	}
	pthread_mutex_unlock(&vd->lock);
}

int virtio_dev_init(struct virtio_dev *vd, struct vm *vm, struct evloop *loop,
		    const struct virtio_dev_ops *ops, void *opaque,
		    unsigned nr_queues, uint16_t max_queue_size,
		    uint64_t features, uint32_t config_size)
{
	int ret;

	if (!vm || !loop || !ops || !ops->queue_notify || nr_queues == 0 ||
	    nr_queues > VIRTIO_MAX_QUEUES || max_queue_size == 0 ||
	    (max_queue_size & (max_queue_size - 1)) ||
	    max_queue_size > VIRTQ_MAX_SIZE ||
	    (features & TRANSPORT_FEATURE_MASK & ~CORE_FEATURES))
		return -EINVAL;
	memset(vd, 0, sizeof(*vd));
	vd->ops = ops;
	vd->opaque = opaque;
	vd->vm = vm;
	vd->loop = loop;
	vd->host_features = features | CORE_FEATURES;
	vd->config_size = config_size;
	vd->nr_queues = nr_queues;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
		vd->kick_fd[q] = -1;
		vd->vqs[q].max_size = q < nr_queues ? max_queue_size : 0;
	}
	ret = -pthread_mutex_init(&vd->lock, NULL);
	if (ret)
		return ret;
	for (unsigned q = 0; q < nr_queues; q++) {
		vd->kick[q] = (struct virtio_kick){ vd, q };
		vd->kick_fd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (vd->kick_fd[q] < 0) {
			ret = -errno;
			goto fail;
		}
		ret = evloop_add(loop, vd->kick_fd[q], EPOLLIN, kick_ready,
				 &vd->kick[q]);
		if (ret) {
			close(vd->kick_fd[q]);
			vd->kick_fd[q] = -1;
			goto fail;
		}
	}
	return 0;

fail:
	for (unsigned q = 0; q < nr_queues; q++) {
		if (vd->kick_fd[q] >= 0) {
			evloop_del(loop, vd->kick_fd[q]);
			close(vd->kick_fd[q]);
			vd->kick_fd[q] = -1;
		}
	}
	pthread_mutex_destroy(&vd->lock);
	return ret;
}

void virtio_dev_destroy(struct virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		if (vd->kick_fd[q] >= 0) {
			evloop_del(vd->loop, vd->kick_fd[q]);
			close(vd->kick_fd[q]);
			vd->kick_fd[q] = -1;
		}
	}
	pthread_mutex_destroy(&vd->lock);
	/* Last: it may free the memory vd lives in. */
	if (vd->ops->destroy)
		vd->ops->destroy(vd);
}

void virtio_dev_set_transport(struct virtio_dev *vd,
			      const struct virtio_transport_ops *tops,
			      void *transport)
{
	vd->tops = tops;
	vd->transport = transport;
}

static void dev_reset(struct virtio_dev *vd)
{
	if (vd->busy && !vd->reset_status)
		vd->reset_status = vd->status ? vd->status : VIRTIO_STATUS_ACKNOWLEDGE;
	if (vd->ops->reset)
		vd->ops->reset(vd);
	for (unsigned q = 0; q < vd->nr_queues; q++)
		virtq_reset(&vd->vqs[q]);
	vd->driver_features = 0;
	vd->status = 0;
	vd->generation++;
}

uint8_t virtio_get_status(const struct virtio_dev *vd)
{
	return vd->reset_status ? vd->reset_status : vd->status;
}

void virtio_dev_hold(struct virtio_dev *vd)
{
	vd->busy++;
}

void virtio_dev_release(struct virtio_dev *vd)
{
	if (vd->busy && !--vd->busy)
		vd->reset_status = 0;
}

static bool features_ok(const struct virtio_dev *vd)
{
	return !(vd->driver_features & ~vd->host_features) &&
	       (vd->driver_features & (1ull << VIRTIO_F_VERSION_1));
}

void virtio_set_status(struct virtio_dev *vd, uint8_t status)
{
	uint8_t old = vd->status, want;

	if (status == 0) {
		dev_reset(vd);
		return;
	}
	want = old | (status & DRIVER_STATUS_BITS);
	if ((want & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK) && !features_ok(vd))
		want &= ~VIRTIO_STATUS_FEATURES_OK;
	if (!(want & VIRTIO_STATUS_DRIVER_OK) ||
	    (old & VIRTIO_STATUS_DRIVER_OK)) {
		vd->status = want;
		return;
	}
	/* DRIVER_OK is being set. */
	if (!(want & VIRTIO_STATUS_FEATURES_OK)) {
		vd->status = want & ~VIRTIO_STATUS_DRIVER_OK;
		virtio_dev_broken(vd, "DRIVER_OK without FEATURES_OK");
		return;
	}
	vd->status = want;
	if (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	if (vd->ops->activate && vd->ops->activate(vd)) {
		virtio_dev_broken(vd, "device could not start");
		return;
	}
	for (unsigned q = 0; q < vd->nr_queues; q++)
		if (vd->vqs[q].ready)
			virtio_queue_kick(vd, q);
}

uint32_t virtio_get_host_features(struct virtio_dev *vd, uint32_t select)
{
	if (select > 1)
		return 0;
	return (uint32_t)(vd->host_features >> (32 * select));
}

void virtio_set_driver_features(struct virtio_dev *vd, uint32_t select,
				uint32_t value)
{
	uint64_t mask;

	if (select > 1 || (vd->status & VIRTIO_STATUS_FEATURES_OK))
		return;
	mask = 0xffffffffull << (32 * select);
	vd->driver_features = (vd->driver_features & ~mask) |
			      ((uint64_t)value << (32 * select));
}

void virtio_config_read(struct virtio_dev *vd, uint32_t offset, void *buf,
			uint32_t len)
{
	uint32_t n;

	memset(buf, 0, len);
	if (offset >= vd->config_size || !vd->ops->config_read)
		return;
	n = vd->config_size - offset < len ? vd->config_size - offset : len;
	vd->ops->config_read(vd, offset, buf, n);
}

void virtio_config_write(struct virtio_dev *vd, uint32_t offset,
			 const void *buf, uint32_t len)
{
	/* Only whole writes inside the window: half a field is no field. */
	if (offset > vd->config_size || len > vd->config_size - offset ||
	    !vd->ops->config_write)
		return;
	vd->ops->config_write(vd, offset, buf, len);
}

int virtio_queue_enable(struct virtio_dev *vd, unsigned q)
{
	if (q >= vd->nr_queues ||
	    (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
		return -EINVAL;
	if (vd->vqs[q].ready)
		return 0;
	if (!(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_dev_broken(vd, "queue enabled before FEATURES_OK");
		return -EINVAL;
	}
	if (virtq_enable(&vd->vqs[q], &vd->vm->mem,
			 virtio_has_feature(vd, VIRTIO_F_EVENT_IDX),
			 virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC))) {
		virtio_dev_broken(vd, "queue enabled with a bad size or ring address");
		return -EINVAL;
	}
	if (vd->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_queue_kick(vd, q);
	return 0;
}

void virtio_queue_kick(struct virtio_dev *vd, unsigned q)
{
	uint64_t one = 1;

	if (q >= vd->nr_queues)
		return;
	/* Fails only when the counter would overflow: a kick is pending
	 * then anyway. */
	if (write(vd->kick_fd[q], &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: queue %u: kick: %s", vd->ops->name, q,
			 strerror(errno));
}

void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (q >= vd->nr_queues || !queue_live(vd, q))
		return;
	if (virtq_should_notify(&vd->vqs[q]) && vd->tops)
		vd->tops->notify_queue(vd->transport, q);
}

void virtio_dev_broken(struct virtio_dev *vd, const char *why)
{
	if (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	if (vd->broken_logged < VIRTIO_BROKEN_LOG_MAX) {
		vd->broken_logged++;
		log_warn("%s: the driver broke the rules (%s): device needs reset%s",
			 vd->ops->name, why,
			 vd->broken_logged == VIRTIO_BROKEN_LOG_MAX
				 ? " (further reports not logged)"
				 : "");
	}
	vd->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->tops)
		vd->tops->notify_config(vd->transport);
}

void virtio_config_changed(struct virtio_dev *vd)
{
	vd->config_generation++;
	if ((vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->tops)
		vd->tops->notify_config(vd->transport);
}

/* Stream: host_features, driver_features, status, config_generation,
 * nr_queues, each queue (virtq_save), then the device's own state. */
void virtio_dev_save(struct virtio_dev *vd, struct state_buf *b)
{
	state_put_u64(b, vd->host_features);
	state_put_u64(b, vd->driver_features);
	state_put_u8(b, vd->status);
	state_put_u8(b, vd->config_generation);
	state_put_u32(b, vd->nr_queues);
	for (unsigned q = 0; q < vd->nr_queues; q++)
		virtq_save(&vd->vqs[q], b);
	if (vd->ops->save)
		vd->ops->save(vd, b);
}

static int dev_load(struct virtio_dev *vd, struct state_reader *r)
{
	uint64_t host = state_get_u64(r);
	uint64_t driver = state_get_u64(r);
	uint8_t status = state_get_u8(r);
	uint8_t cfg_gen = state_get_u8(r);
	uint32_t nr_queues = state_get_u32(r);
	bool event_idx, indirect;
	int ret;

	if (r->err)
		return r->err;
	/* The snapshot must come from the same device configuration. */
	if (host != vd->host_features || nr_queues != vd->nr_queues)
		return -EINVAL;
	if (status & ~(DRIVER_STATUS_BITS | VIRTIO_STATUS_DEVICE_NEEDS_RESET))
		return -EINVAL;
	/* Unoffered driver bits are a state the driver can reach (they are
	 * refused only when it sets FEATURES_OK, checked below). */
	if ((status & VIRTIO_STATUS_DRIVER_OK) &&
	    !(status & VIRTIO_STATUS_FEATURES_OK))
		return -EINVAL;
	vd->driver_features = driver;
	if ((status & VIRTIO_STATUS_FEATURES_OK) && !features_ok(vd))
		return -EINVAL;
	vd->status = status;
	vd->config_generation = cfg_gen;
	event_idx = virtio_has_feature(vd, VIRTIO_F_EVENT_IDX);
	indirect = virtio_has_feature(vd, VIRTIO_F_INDIRECT_DESC);
	for (unsigned q = 0; q < vd->nr_queues; q++) {
		ret = virtq_load(&vd->vqs[q], &vd->vm->mem, event_idx,
				 indirect, r);
		if (ret)
			return ret;
		/* Rings exist only once features are final. */
		if (vd->vqs[q].ready && !(status & VIRTIO_STATUS_FEATURES_OK))
			return -EINVAL;
	}
	if (vd->ops->load) {
		ret = vd->ops->load(vd, r);
		if (ret)
			return ret;
	}
	return r->err;
}

int virtio_dev_load(struct virtio_dev *vd, struct state_reader *r)
{
	int ret;

	/* Start from a reset device, so that whatever the stream does not
	 * set is power-on state and in-flight requests are forgotten. */
	dev_reset(vd);
	ret = dev_load(vd, r);
	if (ret) {
		dev_reset(vd);
		return ret < 0 ? ret : -EINVAL;
	}
	return 0;
}
