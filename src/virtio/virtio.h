/*
 * virtio.h - the virtio device model, independent of the transport
 * (virtio 1.2, sections 2 and 3).
 *
 * A virtio device (blk.c, console.c, rng.c) fills in a virtio_dev_ops and
 * calls virtio_dev_init(); a transport (pci.c: virtio-pci modern, section
 * 4.1; mmio.c: virtio-mmio version 2, section 4.2) owns the registers and
 * calls the virtio_* functions below when the driver reads or writes them.
 * The device never knows which transport it sits on.
 *
 * Threads.  Register accesses come from vCPU threads; queue processing and
 * backend completions run on the I/O thread (the event loop given to
 * virtio_dev_init).  vd->lock serializes them: the transport holds it around
 * every register access, and the core holds it around every ops callback.
 * A driver kick never runs device code on the vCPU thread: the queue's kick
 * eventfd is signalled (by KVM itself when vm_ioeventfd() succeeded, else by
 * the transport's notify register), and the I/O thread calls queue_notify.
 *
 * The guest is hostile: every value the driver writes is checked.  A driver
 * that breaks the rules (a bad ring, a bad chain, a malformed request) gets
 * DEVICE_NEEDS_RESET and a config-change interrupt (section 2.1.2), and the
 * device stops serving it until it resets the device; kvmm keeps running.
 */
#ifndef KVMM_VIRTIO_VIRTIO_H
#define KVMM_VIRTIO_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/virtqueue.h"

struct vm;
struct evloop;
struct state_buf;
struct state_reader;

/* Device IDs (section 5) */
#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_CONSOLE 3
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK   19

/* Device status bits (section 2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE        1
#define VIRTIO_STATUS_DRIVER             2
#define VIRTIO_STATUS_DRIVER_OK          4
#define VIRTIO_STATUS_FEATURES_OK        8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64
#define VIRTIO_STATUS_FAILED             128

/* Reserved feature bits (section 6) */
#define VIRTIO_F_INDIRECT_DESC   28
#define VIRTIO_F_EVENT_IDX       29
#define VIRTIO_F_VERSION_1       32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_F_RING_PACKED     34

#define VIRTIO_MAX_QUEUES 64

struct virtio_dev;

/* What a device type provides.  Callbacks run with vd->lock held. */
struct virtio_dev_ops {
	const char *name;        /* "virtio-blk", for diagnostics */
	uint32_t device_id;      /* VIRTIO_ID_* */
	/* Read / write `len` bytes of device-specific configuration at
	 * `offset` (already checked against config_size).  write may be
	 * NULL (read-only configuration). */
	void (*config_read)(struct virtio_dev *vd, uint32_t offset, void *buf,
			    uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t offset,
			     const void *buf, uint32_t len);
	/* The driver set DRIVER_OK: vd->driver_features are final and the
	 * ready queues may be used.  Return 0, or -errno to refuse (the core
	 * then sets DEVICE_NEEDS_RESET). May be NULL. */
	int (*activate)(struct virtio_dev *vd);
	/* Queue `q` has new buffers (I/O thread). */
	void (*queue_notify)(struct virtio_dev *vd, unsigned q);
	/* Device reset (status written 0): forget requests.  Requests still
	 * in flight in a backend must not be pushed to the (now reset)
	 * queues when they complete: compare vd->generation.  May be NULL. */
	void (*reset)(struct virtio_dev *vd);
	/* Device-specific state for snapshots; may be NULL. */
	void (*save)(struct virtio_dev *vd, struct state_buf *b);
	int (*load)(struct virtio_dev *vd, struct state_reader *r);
	/* Free the device (after the transport is gone). */
	void (*destroy)(struct virtio_dev *vd);
};

/* What the transport provides: raising interrupts its own way. */
struct virtio_transport_ops {
	/* Used buffers on queue q (MSI-X vector of the queue, or ISR bit 0 +
	 * INTx).  Any thread, vd->lock held. */
	void (*notify_queue)(void *transport, unsigned q);
	/* Configuration changed or DEVICE_NEEDS_RESET (ISR bit 1 / config
	 * vector).  Any thread, vd->lock held. */
	void (*notify_config)(void *transport);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *opaque;                       /* the device type's state */
	struct vm *vm;
	struct evloop *loop;                /* I/O thread running queue_notify */
	pthread_mutex_t lock;

	const struct virtio_transport_ops *tops;
	void *transport;

	uint64_t host_features;             /* offered (VERSION_1 always) */
	uint64_t driver_features;           /* accepted by the driver */
	uint8_t status;                     /* device status field */
	uint8_t config_generation;
	uint32_t config_size;               /* bytes of device configuration */
	uint32_t generation;                /* bumped on every device reset */
	unsigned busy;                      /* requests held in a backend
					     * (virtio_dev_hold), any generation */
	uint8_t reset_status;               /* non-zero: a reset waits for busy
					     * requests; what status reads */
	unsigned broken_logged;             /* virtio_dev_broken reports logged */

	unsigned nr_queues;
	struct virtq vqs[VIRTIO_MAX_QUEUES];
	int kick_fd[VIRTIO_MAX_QUEUES];     /* eventfd per queue */
	/* What each kick_fd's loop handler gets as its opaque. */
	struct virtio_kick {
		struct virtio_dev *vd;
		unsigned q;
	} kick[VIRTIO_MAX_QUEUES];
};

/* Set up the common part: `nr_queues` queues of at most `max_queue_size`
 * entries (a power of two <= VIRTQ_MAX_SIZE), `features` offered besides
 * VIRTIO_F_VERSION_1 (and INDIRECT_DESC / EVENT_IDX, which the core always
 * offers), `config_size` bytes of device configuration; a kick eventfd per
 * queue watched on `loop`.  vd is zeroed first (set vd fields after).
 * ops->queue_notify is required.  Returns 0; -EINVAL for a bad argument,
 * including any transport feature bit (24..40) other than the three the
 * core implements (packed rings, IN_ORDER, NOTIFICATION_DATA, RING_RESET,
 * ACCESS_PLATFORM ... would change the ring or notification format);
 * -ENOSPC when the loop has no handler slot left; -errno of
 * eventfd()/epoll.  Nothing is left allocated on failure. */
int virtio_dev_init(struct virtio_dev *vd, struct vm *vm, struct evloop *loop,
		    const struct virtio_dev_ops *ops, void *opaque,
		    unsigned nr_queues, uint16_t max_queue_size,
		    uint64_t features, uint32_t config_size);

/* Undo virtio_dev_init (eventfds, loop handlers, lock); then ops->destroy. */
void virtio_dev_destroy(struct virtio_dev *vd);

/* Connect the transport (once, before the guest runs). */
void virtio_dev_set_transport(struct virtio_dev *vd,
			      const struct virtio_transport_ops *tops,
			      void *transport);

/* ---- called by transports, with vd->lock held ---- */

/* The driver wrote the device status.  0 resets the device (queues,
 * features, status; ops->reset; generation++).  Clearing bits other than by
 * reset, or setting FEATURES_OK with features we did not offer, is refused
 * as the spec says (FEATURES_OK stays clear, section 3.1.1).  Setting
 * DRIVER_OK calls ops->activate. */
void virtio_set_status(struct virtio_dev *vd, uint8_t status);

/* The device status as the driver reads it.  After a reset (status 0)
 * it reads 0 only once every request the device held at the reset has
 * completed (2.4.1: the device indicates completion of the reset by
 * reinitializing status to 0, after which it must not touch the rings or
 * the buffers): until then a read returns the status from before the
 * reset.  Linux's virtio-pci driver waits for 0 before reinitializing, so
 * a read still in flight cannot land in a buffer the driver reused. */
uint8_t virtio_get_status(const struct virtio_dev *vd);

/* The driver's view of the offered / accepted features, 32 bits at a
 * time (select 0 = bits 0-31, 1 = bits 32-63, other selects read 0 /
 * are ignored).  Writes are ignored once FEATURES_OK is set. */
uint32_t virtio_get_host_features(struct virtio_dev *vd, uint32_t select);
void virtio_set_driver_features(struct virtio_dev *vd, uint32_t select,
				uint32_t value);

/* Device configuration: bounds-checked against config_size (reads past
 * the end return zeros, writes past it are dropped). */
void virtio_config_read(struct virtio_dev *vd, uint32_t offset, void *buf,
			uint32_t len);
void virtio_config_write(struct virtio_dev *vd, uint32_t offset,
			 const void *buf, uint32_t len);

/* The driver enabled queue q with the addresses it wrote into vd->vqs[q]:
 * checks and maps the rings (virtq_enable) with the negotiated EVENT_IDX /
 * INDIRECT_DESC.  A bad ring, or enabling before FEATURES_OK (the ring
 * format is not known yet), sets DEVICE_NEEDS_RESET.  Enabling a ready
 * queue again does nothing.  After DRIVER_OK the queue is kicked once.
 * Returns 0 or -EINVAL (also for q out of range, or while
 * DEVICE_NEEDS_RESET is set). */
int virtio_queue_enable(struct virtio_dev *vd, unsigned q);

/* The driver kicked queue q (notify register): signal its eventfd so the
 * I/O thread runs ops->queue_notify.  Out-of-range q is ignored.  Safe
 * without vd->lock. */
void virtio_queue_kick(struct virtio_dev *vd, unsigned q);

/* ---- called by devices, with vd->lock held ---- */

/* After pushing used buffers on queue q: interrupt the driver if it wants
 * one (virtq_should_notify). */
void virtio_queue_interrupt(struct virtio_dev *vd, unsigned q);

/* A device took a request whose backend may still write guest memory
 * (hold), or that request is over, pushed or dropped (release): the
 * count a reset waits for (virtio_get_status).  vd->lock held. */
void virtio_dev_hold(struct virtio_dev *vd);
void virtio_dev_release(struct virtio_dev *vd);

/* The driver broke the rules (`why` is logged once per reset, and at most
 * VIRTIO_BROKEN_LOG_MAX times per device, so a guest looping through
 * reset and breakage cannot flood the log): set DEVICE_NEEDS_RESET and
 * raise a configuration interrupt if DRIVER_OK (section 2.1.2). */
#define VIRTIO_BROKEN_LOG_MAX 8
void virtio_dev_broken(struct virtio_dev *vd, const char *why);

/* Device configuration changed (config_generation++, config interrupt). */
void virtio_config_changed(struct virtio_dev *vd);

/* True when the feature bit was negotiated. */
static inline bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return (vd->driver_features >> bit) & 1;
}

/* Save / restore the common state and the queues, then the device's
 * (ops->save / ops->load).  Load resets the device first (ops->reset,
 * generation++), checks the stream like register writes (same offered
 * features and queue count, accepted features a subset once FEATURES_OK
 * is set (before, the driver may have written anything), valid status
 * bits, rings that virtq_enable accepts) and returns 0, or -EINVAL (or
 * ops->load's error) with the device left reset.  It does not call
 * ops->activate: ops->load restores a running device's state itself. */
void virtio_dev_save(struct virtio_dev *vd, struct state_buf *b);
int virtio_dev_load(struct virtio_dev *vd, struct state_reader *r);

#endif
