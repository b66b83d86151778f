/*
 * mmio.c - the virtio-mmio transport, version 2 (virtio 1.2 section 4.2);
 * mmio.h has the interface and the address map.
 *
 * The transport is a thin register file in front of the device model
 * (virtio.c): feature words go to virtio_get_host_features() /
 * virtio_set_driver_features(), Status to virtio_set_status(), the queue
 * registers fill in vd->vqs[QueueSel] and QueueReady = 1 hands them to
 * virtio_queue_enable(), which checks the rings.  Only version 2 (virtio
 * 1.0+, "modern") is offered: the legacy layout with a page-frame queue
 * address is not, so a legacy-only driver sees Version 2 and gives up.
 *
 * Accesses.  The spec has drivers use 32-bit aligned accesses for the
 * registers (4.2.2.2); anything else is ignored (reads give 0), as are
 * writes to read-only or reserved registers and to queue registers while
 * the queue is ready (4.2.2.2: the driver must not).  Values the driver
 * writes are never trusted: QueueSel beyond the device's queues makes the
 * queue registers read 0 (QueueNumMax 0 = "no such queue") and drops
 * writes, QueueNum above QueueNumMax is stored as 0 so that enabling fails
 * the size check, and the configuration window is bounds-checked by
 * virtio_config_read/write.
 *
 * Notifications.  QueueNotify is one register for all queues; the value
 * written is the queue index (no VIRTIO_F_NOTIFICATION_DATA).  The write
 * handler kicks that queue's eventfd (virtio_queue_kick), so the device
 * runs on the I/O thread, never on the vCPU thread.  A kernel doorbell
 * (vm_ioeventfd, no datamatch) cannot tell queue indices apart, so it is
 * only registered for single-queue devices, where any write means queue 0.
 *
 * Interrupts.  InterruptStatus bit 0 (used buffers) and bit 1 (config
 * change, also sent with DEVICE_NEEDS_RESET) are set by the device model's
 * notify callbacks and cleared by InterruptACK; the line is asserted while
 * any bit is set - level-triggered, which is what the DSDT declares.  The
 * line is shared (GSI 16 + n % 8, also PCI INTx), driven as source 32 + n
 * of vm_irq_set_shared().
 *
 * Locking.  Every register access takes vd->lock, as virtio.h requires;
 * the notify callbacks run with it held already, so InterruptStatus is
 * only ever touched under the lock.
 */
#include "virtio/mmio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "core/bus.h"
#include "core/state.h"
#include "core/vm.h"
#include "util/log.h"
#include "virtio/virtio.h"

struct virtio_mmio {
	struct vm *vm;
	struct virtio_dev *vd;
	unsigned index, gsi;
	uint64_t base;
	bool ioeventfd;              /* QueueNotify is a kernel doorbell */
	/* Driver-visible transport registers. */
	uint32_t device_features_sel, driver_features_sel, queue_sel, shm_sel;
	uint32_t interrupt_status;
	/* Board device hooks; per instance for the name. */
	struct vm_device_ops dev_ops;
	char name[24];
};

/* The shared line follows InterruptStatus. */
static void update_irq(struct virtio_mmio *t)
{
	vm_irq_set_shared(t->vm, t->gsi, 32 + t->index,
			  t->interrupt_status != 0);
}

static void mmio_notify_queue(void *transport, unsigned q)
{
	struct virtio_mmio *t = transport;

	(void)q;
	t->interrupt_status |= VIRTIO_MMIO_INT_VRING;
	update_irq(t);
}

static void mmio_notify_config(void *transport)
{
	struct virtio_mmio *t = transport;

	t->interrupt_status |= VIRTIO_MMIO_INT_CONFIG;
	update_irq(t);
}

static const struct virtio_transport_ops mmio_tops = {
	.notify_queue = mmio_notify_queue,
	.notify_config = mmio_notify_config,
};

/* The selected queue, or NULL when QueueSel names none. */
static struct virtq *sel_queue(struct virtio_mmio *t)
{
	return t->queue_sel < t->vd->nr_queues ? &t->vd->vqs[t->queue_sel]
					       : NULL;
}

/* Back to power-on state, with vd->lock held: device reset (status 0)
 * plus the transport's own registers. */
static void transport_reset(struct virtio_mmio *t)
{
	virtio_set_status(t->vd, 0);
	t->device_features_sel = t->driver_features_sel = 0;
	t->queue_sel = t->shm_sel = 0;
	t->interrupt_status = 0;
	update_irq(t);
}

static uint32_t reg_read(struct virtio_mmio *t, uint64_t off)
{
	struct virtio_dev *vd = t->vd;
	struct virtq *vq = sel_queue(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return vd->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return virtio_get_host_features(vd, t->device_features_sel);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? vq->max_size : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return t->interrupt_status;
	case VIRTIO_MMIO_STATUS:
		return virtio_get_status(vd);
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:
		return 0xffffffffu; /* no shared memory region (4.2.2) */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return vd->config_generation;
	default:
		return 0; /* write-only and reserved registers */
	}
}

static void set_low(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & ~0xffffffffull) | v;
}

static void set_high(uint64_t *addr, uint32_t v)
{
	*addr = (*addr & 0xffffffffull) | (uint64_t)v << 32;
}

static void queue_ready_write(struct virtio_mmio *t, struct virtq *vq,
			      uint32_t v)
{
	struct virtq saved;

	if (v) {
		/* A bad ring marks the device DEVICE_NEEDS_RESET itself. */
		virtio_queue_enable(t->vd, t->queue_sel);
		return;
	}
	/* Stop using the queue but keep what the driver wrote. */
	saved = *vq;
	virtq_reset(vq);
	vq->size = saved.size;
	vq->desc_gpa = saved.desc_gpa;
	vq->avail_gpa = saved.avail_gpa;
	vq->used_gpa = saved.used_gpa;
}

static void reg_write(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtio_dev *vd = t->vd;
	struct virtq *vq = sel_queue(t);

	/* Queue layout registers only while the queue is not ready. */
	if (off == VIRTIO_MMIO_QUEUE_NUM ||
	    (off >= VIRTIO_MMIO_QUEUE_DESC_LOW &&
	     off <= VIRTIO_MMIO_QUEUE_DEVICE_HIGH)) {
		if (!vq || vq->ready)
			return;
	}
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		t->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		virtio_set_driver_features(vd, t->driver_features_sel, v);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		t->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		t->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		vq->size = v <= vq->max_size ? (uint16_t)v : 0;
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (vq)
			queue_ready_write(t, vq, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		virtio_queue_kick(vd, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->interrupt_status &= ~v;
		update_irq(t);
		break;
	case VIRTIO_MMIO_STATUS:
		if ((uint8_t)v == 0)
			transport_reset(t);
		else
			virtio_set_status(vd, (uint8_t)v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
		set_low(&vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		set_high(&vq->desc_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
		set_low(&vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
		set_high(&vq->avail_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
		set_low(&vq->used_gpa, v);
		break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		set_high(&vq->used_gpa, v);
		break;
	case VIRTIO_MMIO_SHM_SEL:
		t->shm_sel = v;
		break;
	default:
		break; /* read-only, reserved, QueueReset (not offered) */
	}
}

static uint64_t mmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_mmio *t = opaque;
	uint64_t v = 0;

	pthread_mutex_lock(&t->vd->lock);
	if (off >= VIRTIO_MMIO_CONFIG)
		virtio_config_read(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG),
				   &v, size);
	else if (size == 4 && !(off & 3))
		v = reg_read(t, off);
	pthread_mutex_unlock(&t->vd->lock);
	return v;
}

static void mmio_write(void *opaque, uint64_t off, unsigned size,
		       uint64_t value)
{
	struct virtio_mmio *t = opaque;

	pthread_mutex_lock(&t->vd->lock);
	if (off >= VIRTIO_MMIO_CONFIG)
		virtio_config_write(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG),
				    &value, size);
	else if (size == 4 && !(off & 3))
		reg_write(t, off, (uint32_t)value);
	pthread_mutex_unlock(&t->vd->lock);
}

static const struct bus_ops mmio_bus_ops = {
	.read = mmio_read,
	.write = mmio_write,
};

/* ---- board device hooks ---- */

static void dev_reset(void *opaque)
{
	struct virtio_mmio *t = opaque;

	pthread_mutex_lock(&t->vd->lock);
	transport_reset(t);
	pthread_mutex_unlock(&t->vd->lock);
}

/* Stream: the transport registers, then the device model's state. */
static void dev_save(void *opaque, struct state_buf *b)
{
	struct virtio_mmio *t = opaque;

	pthread_mutex_lock(&t->vd->lock);
	state_put_u32(b, t->device_features_sel);
	state_put_u32(b, t->driver_features_sel);
	state_put_u32(b, t->queue_sel);
	state_put_u32(b, t->shm_sel);
	state_put_u32(b, t->interrupt_status);
	virtio_dev_save(t->vd, b);
	pthread_mutex_unlock(&t->vd->lock);
}

static int dev_load(void *opaque, struct state_reader *r)
{
	struct virtio_mmio *t = opaque;
	uint32_t dfsel, drvsel, qsel, shmsel, isr;
	int ret;

	pthread_mutex_lock(&t->vd->lock);
	dfsel = state_get_u32(r);
	drvsel = state_get_u32(r);
	qsel = state_get_u32(r);
	shmsel = state_get_u32(r);
	isr = state_get_u32(r);
	ret = r->err;
	if (!ret && (isr & ~(VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG)))
		ret = -EINVAL;
	if (!ret)
		ret = virtio_dev_load(t->vd, r);
	if (ret) {
		transport_reset(t);
	} else {
		t->device_features_sel = dfsel;
		t->driver_features_sel = drvsel;
		t->queue_sel = qsel;
		t->shm_sel = shmsel;
		t->interrupt_status = isr;
		update_irq(t);
	}
	pthread_mutex_unlock(&t->vd->lock);
	return ret;
}

static void dev_destroy(void *opaque)
{
	struct virtio_mmio *t = opaque;

	if (t->ioeventfd)
		vm_ioeventfd(t->vm, false, t->base + VIRTIO_MMIO_QUEUE_NOTIFY, 4,
			     t->vd->kick_fd[0], false);
	virtio_dev_destroy(t->vd);
	free(t);
}

int virtio_mmio_create(struct vm *vm, struct virtio_dev *vd, unsigned index,
		       struct virtio_mmio **out)
{
	struct virtio_mmio *t;
	int ret;

	if (index >= VIRTIO_MMIO_MAX_DEVICES)
		return -EINVAL;
	if (vm->nr_devices >= VM_MAX_DEVICES)
		return -ENOSPC;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->vm = vm;
	t->vd = vd;
	t->index = index;
	t->base = VIRTIO_MMIO_BASE + (uint64_t)index * VIRTIO_MMIO_SIZE;
	t->gsi = VIRTIO_MMIO_GSI_BASE + index % 8;
	snprintf(t->name, sizeof(t->name), "virtio-mmio.%u", index);
	t->dev_ops = (struct vm_device_ops){
		.name = t->name,
		.reset = dev_reset,
		.save = dev_save,
		.load = dev_load,
		.destroy = dev_destroy,
	};
	ret = bus_register(&vm->mmio, t->base, VIRTIO_MMIO_SIZE, &mmio_bus_ops,
			   t, t->name);
	if (ret) {
		free(t);
		return ret;
	}
	/* Cannot fail: the slot was checked above, and the bus range now
	 * belongs to the board for good. */
	vm_add_device(vm, &t->dev_ops, t);
	virtio_dev_set_transport(vd, &mmio_tops, t);
	if (vd->nr_queues == 1) {
		ret = vm_ioeventfd(vm, false, t->base + VIRTIO_MMIO_QUEUE_NOTIFY,
				   4, vd->kick_fd[0], true);
		if (ret && ret != -ENOTSUP)
			log_warn("%s: no kernel doorbell (%s); notifying through exits",
				 t->name, strerror(-ret));
		t->ioeventfd = ret == 0;
	}
	if (out)
		*out = t;
	return 0;
}

uint64_t virtio_mmio_base(const struct virtio_mmio *t)
{
	return t->base;
}

unsigned virtio_mmio_gsi(const struct virtio_mmio *t)
{
	return t->gsi;
}

int virtio_mmio_dsdt(struct aml_buf *b, void *opaque)
{
	const struct virtio_mmio_list *list = opaque;
	char name[8];

	if (!list->n)
		return 0;
	aml_scope(b, "\\_SB");
	for (unsigned i = 0; i < list->n; i++) {
		const struct virtio_mmio *t = list->devs[i];
		uint32_t gsi = t->gsi;

		snprintf(name, sizeof(name), "VR%02u", t->index);
		aml_device(b, name);
		aml_name_str(b, "_HID", "LNRO0005");
		aml_name_int(b, "_UID", t->index);
		/* DMA is cache-coherent (as QEMU's microvm says too). */
		aml_name_int(b, "_CCA", 1);
		aml_name(b, "_CRS");
		aml_restemplate(b);
		aml_res_memory32_fixed(b, (uint32_t)t->base, VIRTIO_MMIO_SIZE,
				       true);
		aml_res_interrupt(b, AML_INT_CONSUMER | AML_INT_ACTIVE_LOW |
					     AML_INT_SHARED,
				  &gsi, 1);
		aml_end(b); /* ResourceTemplate */
		aml_end(b); /* Device */
	}
	aml_end(b); /* Scope */
	return b->err;
}
