/*
 * pci.c - the modern virtio-pci transport (virtio 1.2 section 4.1); pci.h
 * has the layout.
 *
 * IDENTITY (4.1.2)
 * Vendor 0x1af4, device 0x1040 + virtio device ID, revision 1 (so legacy
 * drivers leave it alone), subsystem 0x1af4 / device ID, a class code by
 * device type, INTA.
 *
 * CAPABILITIES (4.1.4)
 * One vendor capability (struct virtio_pci_cap) per structure in BAR 4:
 * common (type 1), notify (2, with notify_off_multiplier), ISR (3), device
 * (4, only when the device has a configuration space), then the
 * VIRTIO_PCI_CAP_PCI_CFG window (5) and MSI-X.  In the PCI_CFG capability
 * the driver may write bar, offset, length and pci_cfg_data; an access to
 * pci_cfg_data reaches BAR 4 at `offset` with `length` bytes (1, 2 or 4,
 * naturally aligned, inside the BAR; anything else reads 0 and writes
 * nothing, 4.1.4.9.1 leaves it undefined).
 *
 * COMMON CONFIGURATION (4.1.4.3)
 * Each field is reached with its own width; 64-bit fields also as two
 * dwords (Linux writes them so).  Other widths and offsets read 0 and are
 * dropped: a hostile driver cannot tear a field.  queue_* registers act on
 * queue_select; an out-of-range select reads queue_size 0 ("not
 * available") and drops writes.  queue_size and the ring addresses are
 * frozen once the queue is enabled; queue_enable takes 1 only
 * (virtio_queue_enable checks the size and the rings and marks the device
 * DEVICE_NEEDS_RESET if they are bad), a 0 is ignored (4.1.4.3.2: the
 * driver MUST NOT write 0).  MSI-X vector registers read back NO_VECTOR
 * when the driver names a vector the function does not have, which is how
 * it learns of the failure (4.1.5.1.2).
 *
 * INTERRUPTS (4.1.5)
 * With MSI-X enabled a used-buffer notification is msix_notify() of the
 * queue's vector and a configuration change that of config_msix_vector.
 * Otherwise ISR bit 0 (queue) or bit 1 (configuration) is set and INTx
 * asserted; reading ISR returns and clears it and deasserts INTx.
 *
 * NOTIFICATIONS (4.1.4.4)
 * Queue q's notify address gets an ioeventfd on the queue's kick eventfd
 * (vm_ioeventfd), moved whenever BAR 4 moves (bar_moved) and dropped while
 * the BAR does not decode (and with the accelerator's VM at the end).
 * Where the accelerator has none (-ENOTSUP: the software CPU, the
 * harness) the MMIO write reaches us and we signal the same eventfd: the
 * device code always runs on the I/O thread.
 *
 * LOCKING
 * Register accesses take vd->lock (as virtio.h asks), so the order is
 * vd->lock -> PCI device lock (msix_notify, pci_set_irq) -> irq.  Config
 * space hooks run under the PCI bus lock only (pci.h), which comes before
 * vd->lock.  The ioeventfd bookkeeping is touched only in bar_moved (bus
 * lock) and at destruction.
 */
#include "virtio/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/state.h"
#include "core/vm.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "util/log.h"
#include "virtio/virtio.h"

#define VIRTIO_PCI_STATE_VERSION 1

/* struct virtio_pci_common_cfg offsets */
#define CC_DFSELECT     0x00
#define CC_DF           0x04
#define CC_GFSELECT     0x08
#define CC_GF           0x0c
#define CC_MSIX         0x10
#define CC_NUMQ         0x12
#define CC_STATUS       0x14
#define CC_CFGGENERATION 0x15
#define CC_Q_SELECT     0x16
#define CC_Q_SIZE       0x18
#define CC_Q_MSIX       0x1a
#define CC_Q_ENABLE     0x1c
#define CC_Q_NOFF       0x1e
#define CC_Q_DESCLO     0x20
#define CC_Q_DESCHI     0x24
#define CC_Q_AVAILLO    0x28
#define CC_Q_AVAILHI    0x2c
#define CC_Q_USEDLO     0x30
#define CC_Q_USEDHI     0x34
#define CC_SIZE         0x38

#define ISR_QUEUE  1
#define ISR_CONFIG 2

/* struct virtio_pci_cap, after cap_vndr and cap_next */
#define CAP_BODY_LEN 14
#define CAP_OFF_BAR    4   /* from the capability start */
#define CAP_OFF_OFFSET 8
#define CAP_OFF_LENGTH 12
#define CAP_OFF_DATA   16  /* virtio_pci_cfg_cap.pci_cfg_data */

struct virtio_pci {
	struct virtio_dev *vd;       /* NULL while half-built */
	bool owns_vd;
	struct pci_device *pci;
	struct vm *vm;
	uint8_t pci_cfg_cap;         /* config offset of the PCI_CFG capability */
	/* Driver-visible transport state, under vd->lock */
	uint32_t dfselect, gfselect;
	uint16_t queue_select;
	uint16_t config_vector;
	uint16_t queue_vector[VIRTIO_MAX_QUEUES];
	uint8_t isr;
	/* Where queue doorbells are assigned as ioeventfds (0: none). */
	uint64_t ioeventfd_base;
	bool ioeventfd_unsupported;
	bool ioeventfd_warned;        /* once per device: a guest moving BAR 4
					 * onto taken addresses could flood the log */
};

struct pci_device *virtio_pci_device(const struct virtio_pci *vp)
{
	return vp->pci;
}

static uint32_t class_of(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_BLOCK:   return 0x010000; /* mass storage, SCSI */
	case VIRTIO_ID_CONSOLE: return 0x078000; /* communication, other */
	case VIRTIO_ID_RNG:     return 0x00ff00; /* unclassified */
	default:                return 0xff0000;
	}
}

/* ---- interrupts (virtio_transport_ops; vd->lock held) ---- */

static void vp_notify(struct virtio_pci *vp, uint16_t vector, uint8_t isr)
{
	if (msix_notify(vp->pci, vector))
		return;
	vp->isr |= isr;
	pci_set_irq(vp->pci, true);
}

static void vp_notify_queue(void *transport, unsigned q)
{
	struct virtio_pci *vp = transport;

	if (q < VIRTIO_MAX_QUEUES)
		vp_notify(vp, vp->queue_vector[q], ISR_QUEUE);
}

static void vp_notify_config(void *transport)
{
	struct virtio_pci *vp = transport;

	vp_notify(vp, vp->config_vector, ISR_CONFIG);
}

static const struct virtio_transport_ops vp_transport_ops = {
	.notify_queue = vp_notify_queue,
	.notify_config = vp_notify_config,
};

/* ---- common configuration (vd->lock held) ---- */

/* A vector the function has, or NO_VECTOR. */
static uint16_t check_vector(const struct virtio_pci *vp, uint16_t v)
{
	return v <= vp->vd->nr_queues ? v : MSIX_NO_VECTOR;
}

static struct virtq *selected(struct virtio_pci *vp)
{
	return vp->queue_select < vp->vd->nr_queues ?
		       &vp->vd->vqs[vp->queue_select] : NULL;
}

/* Back to the state after device reset: every queue offers its maximum
 * size, no vectors, ISR clear and INTx low. */
static void transport_reset(struct virtio_pci *vp)
{
	struct virtio_dev *vd = vp->vd;

	for (unsigned q = 0; q < vd->nr_queues; q++)
		vd->vqs[q].size = vd->vqs[q].max_size;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_select = 0;
	vp->config_vector = MSIX_NO_VECTOR;
	for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
		vp->queue_vector[q] = MSIX_NO_VECTOR;
	vp->isr = 0;
	pci_set_irq(vp->pci, false);
}

static uint64_t *queue_addr(struct virtq *vq, uint64_t off)
{
	switch (off & ~7ull) {
	case CC_Q_DESCLO:  return &vq->desc_gpa;
	case CC_Q_AVAILLO: return &vq->avail_gpa;
	default:           return &vq->used_gpa;
	}
}

static uint64_t common_read(struct virtio_pci *vp, uint64_t off,
			    unsigned size)
{
	struct virtio_dev *vd = vp->vd;
	struct virtq *vq = selected(vp);

	if (off >= CC_Q_DESCLO && off < CC_SIZE) {
		uint64_t a;

		if (!vq || !(size == 8 ? !(off & 7) : size == 4 && !(off & 3)))
			return 0;
		a = *queue_addr(vq, off);
		return size == 8 ? a : (uint32_t)(a >> (8 * (off & 4)));
	}
	switch (off) {
	case CC_DFSELECT: return size == 4 ? vp->dfselect : 0;
	case CC_DF:
		return size == 4 ? virtio_get_host_features(vd, vp->dfselect) : 0;
	case CC_GFSELECT: return size == 4 ? vp->gfselect : 0;
	case CC_GF:
		if (size != 4 || vp->gfselect > 1)
			return 0;
		return (uint32_t)(vd->driver_features >> (32 * vp->gfselect));
	case CC_MSIX:     return size == 2 ? vp->config_vector : 0;
	case CC_NUMQ:     return size == 2 ? vd->nr_queues : 0;
	case CC_STATUS:   return size == 1 ? virtio_get_status(vd) : 0;
	case CC_CFGGENERATION: return size == 1 ? vd->config_generation : 0;
	case CC_Q_SELECT: return size == 2 ? vp->queue_select : 0;
	case CC_Q_SIZE:   return size == 2 && vq ? vq->size : 0;
	case CC_Q_MSIX:
		return size == 2 && vq ? vp->queue_vector[vp->queue_select] :
		       size == 2 ? MSIX_NO_VECTOR : 0;
	case CC_Q_ENABLE: return size == 2 && vq ? vq->ready : 0;
	case CC_Q_NOFF:   return size == 2 && vq ? vp->queue_select : 0;
	default:          return 0;
	}
}

static void common_write(struct virtio_pci *vp, uint64_t off, unsigned size,
			 uint64_t value)
{
	struct virtio_dev *vd = vp->vd;
	struct virtq *vq = selected(vp);

	if (off >= CC_Q_DESCLO && off < CC_SIZE) {
		uint64_t *a;

		if (!vq || vq->ready ||
		    !(size == 8 ? !(off & 7) : size == 4 && !(off & 3)))
			return;
		a = queue_addr(vq, off);
		if (size == 8)
			*a = value;
		else if (off & 4)
			*a = (*a & 0xffffffffull) | value << 32;
		else
			*a = (*a & ~0xffffffffull) | (uint32_t)value;
		return;
	}
	switch (off) {
	case CC_DFSELECT:
		if (size == 4)
			vp->dfselect = (uint32_t)value;
		break;
	case CC_GFSELECT:
		if (size == 4)
			vp->gfselect = (uint32_t)value;
		break;
	case CC_GF:
		if (size == 4)
			virtio_set_driver_features(vd, vp->gfselect,
						   (uint32_t)value);
		break;
	case CC_MSIX:
		if (size == 2)
			vp->config_vector = check_vector(vp, (uint16_t)value);
		break;
	case CC_STATUS:
		if (size != 1)
			break;
		virtio_set_status(vd, (uint8_t)value);
		if (!value)
			transport_reset(vp);
		break;
	case CC_Q_SELECT:
		if (size == 2)
			vp->queue_select = (uint16_t)value;
		break;
	case CC_Q_SIZE:
		/* Any value until enable: virtio_queue_enable checks it. */
		if (size == 2 && vq && !vq->ready)
			vq->size = (uint16_t)value;
		break;
	case CC_Q_MSIX:
		if (size == 2 && vq)
			vp->queue_vector[vp->queue_select] =
				check_vector(vp, (uint16_t)value);
		break;
	case CC_Q_ENABLE:
		if (size == 2 && vq && value == 1)
			virtio_queue_enable(vd, vp->queue_select);
		break;
	default:
		break; /* read-only or reserved */
	}
}

/* ---- BAR 4 ---- */

static uint64_t vp_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;
	uint64_t v = 0;

	if (!vd)
		return 0;
	pthread_mutex_lock(&vd->lock);
	if (off < VIRTIO_PCI_ISR_OFFSET) {
		v = common_read(vp, off, size);
	} else if (off == VIRTIO_PCI_ISR_OFFSET) {
		/* Read to clear (4.1.4.5), any width. */
		v = vp->isr;
		vp->isr = 0;
		pci_set_irq(vp->pci, false);
	} else if (off >= VIRTIO_PCI_DEVICE_OFFSET &&
		   off < VIRTIO_PCI_NOTIFY_OFFSET && size <= 4) {
		uint8_t buf[4];

		virtio_config_read(vd, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFFSET),
				   buf, size);
		for (unsigned i = 0; i < size; i++)
			v |= (uint64_t)buf[i] << (8 * i);
	}
	pthread_mutex_unlock(&vd->lock);
	return v;
}

static void vp_bar_write(void *opaque, uint64_t off, unsigned size,
			 uint64_t value)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;

	if (!vd)
		return;
	if (off >= VIRTIO_PCI_NOTIFY_OFFSET) {
		/* Any width and value (the driver writes the queue index,
		 * which we do not need: the address says it). */
		uint64_t q = (off - VIRTIO_PCI_NOTIFY_OFFSET) /
			     VIRTIO_PCI_NOTIFY_MULT;

		if (q < vd->nr_queues)
			virtio_queue_kick(vd, (unsigned)q);
		return;
	}
	pthread_mutex_lock(&vd->lock);
	if (off < VIRTIO_PCI_ISR_OFFSET) {
		common_write(vp, off, size, value);
	} else if (off >= VIRTIO_PCI_DEVICE_OFFSET && size <= 4) {
		uint8_t buf[4];

		for (unsigned i = 0; i < size; i++)
			buf[i] = (uint8_t)(value >> (8 * i));
		virtio_config_write(vd, (uint32_t)(off - VIRTIO_PCI_DEVICE_OFFSET),
				    buf, size);
	}
	pthread_mutex_unlock(&vd->lock);
}

static const struct bus_ops vp_bar_ops = {
	.read = vp_bar_read,
	.write = vp_bar_write,
};

/* ---- PCI hooks (PCI bus lock held) ---- */

static void set_ioeventfds(struct virtio_pci *vp, uint64_t base, bool assign)
{
	for (unsigned q = 0; q < vp->vd->nr_queues; q++) {
		int r = vm_ioeventfd(vp->vm, false,
				     base + VIRTIO_PCI_NOTIFY_OFFSET +
					     VIRTIO_PCI_NOTIFY_MULT * q,
				     VIRTIO_PCI_NOTIFY_MULT,
				     vp->vd->kick_fd[q], assign);

		if (r == -ENOTSUP) {
			vp->ioeventfd_unsupported = true;
			return;
		}
		if (r && assign && !vp->ioeventfd_warned) {
			vp->ioeventfd_warned = true;
			log_warn("%s: queue %u: no ioeventfd (%s): kicks take the "
				 "MMIO path (not reported again)", vp->vd->ops->name, q,
				 strerror(-r));
		}
	}
}

static void vp_bar_moved(void *opaque, int bar, uint64_t addr)
{
	struct virtio_pci *vp = opaque;

	if (bar != VIRTIO_PCI_BAR || !vp->vd || vp->ioeventfd_unsupported)
		return;
	if (vp->ioeventfd_base)
		set_ioeventfds(vp, vp->ioeventfd_base, false);
	vp->ioeventfd_base = 0;
	if (addr) {
		set_ioeventfds(vp, addr, true);
		if (!vp->ioeventfd_unsupported)
			vp->ioeventfd_base = addr;
	}
}

/* The PCI_CFG window: bar/offset/length as the driver set them, or false
 * when they do not name an access we allow. */
static bool pci_cfg_target(struct virtio_pci *vp, uint32_t *offset,
			   unsigned *len)
{
	struct pci_device *dev = vp->pci;
	const uint8_t *c;
	uint8_t bar;

	pthread_mutex_lock(&dev->lock);
	c = dev->cfg + vp->pci_cfg_cap;
	bar = c[CAP_OFF_BAR];
	*offset = c[CAP_OFF_OFFSET] | c[CAP_OFF_OFFSET + 1] << 8 |
		  c[CAP_OFF_OFFSET + 2] << 16 |
		  (uint32_t)c[CAP_OFF_OFFSET + 3] << 24;
	*len = c[CAP_OFF_LENGTH];
	if (c[CAP_OFF_LENGTH + 1] || c[CAP_OFF_LENGTH + 2] ||
	    c[CAP_OFF_LENGTH + 3])
		*len = 0;
	pthread_mutex_unlock(&dev->lock);
	return bar == VIRTIO_PCI_BAR && (*len == 1 || *len == 2 || *len == 4) &&
	       !(*offset & (*len - 1)) &&
	       *offset <= VIRTIO_PCI_BAR_SIZE - *len;
}

/* Whether [reg, reg + size) touches pci_cfg_data. */
static bool touches_data(const struct virtio_pci *vp, uint32_t reg,
			 unsigned size)
{
	uint32_t d = vp->pci_cfg_cap + CAP_OFF_DATA;

	return reg < d + 4 && reg + size > d;
}

static void vp_cfg_write(void *opaque, uint32_t reg, unsigned size,
			 uint32_t value)
{
	struct virtio_pci *vp = opaque;
	uint32_t offset, data = 0;
	unsigned len;
	const uint8_t *p;

	if (!vp->vd || !touches_data(vp, reg, size) ||
	    !pci_cfg_target(vp, &offset, &len))
		return;
	pthread_mutex_lock(&vp->pci->lock);
	p = vp->pci->cfg + vp->pci_cfg_cap + CAP_OFF_DATA;
	data = p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
	pthread_mutex_unlock(&vp->pci->lock);
	(void)value; /* the masked bytes are in configuration space now */
	vp_bar_write(vp, offset, len, data);
}

static void vp_cfg_read(void *opaque, uint32_t reg, unsigned size,
			uint32_t *value)
{
	struct virtio_pci *vp = opaque;
	uint32_t offset, d = vp->pci_cfg_cap + CAP_OFF_DATA;
	uint64_t data;
	unsigned len;

	if (!vp->vd || !touches_data(vp, reg, size) ||
	    !pci_cfg_target(vp, &offset, &len))
		return;
	data = vp_bar_read(vp, offset, len);
	for (unsigned i = 0; i < size; i++) {
		uint32_t at = reg + i;

		if (at >= d && at < d + 4) {
			*value &= ~(0xffu << (8 * i));
			*value |= (uint32_t)((data >> (8 * (at - d))) & 0xff)
				  << (8 * i);
		}
	}
}

static const struct pci_device_ops vp_pci_ops = {
	.cfg_write = vp_cfg_write,
	.cfg_read = vp_cfg_read,
	.bar_moved = vp_bar_moved,
};

/* ---- machine device ---- */

static void vp_reset(void *opaque)
{
	struct virtio_pci *vp = opaque;

	if (!vp->vd)
		return;
	pthread_mutex_lock(&vp->vd->lock);
	virtio_set_status(vp->vd, 0);
	transport_reset(vp);
	pthread_mutex_unlock(&vp->vd->lock);
}

static void vp_save(void *opaque, struct state_buf *b)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;

	state_put_u8(b, VIRTIO_PCI_STATE_VERSION);
	if (!vd)
		return;
	pthread_mutex_lock(&vd->lock);
	state_put_u32(b, vp->dfselect);
	state_put_u32(b, vp->gfselect);
	state_put_u16(b, vp->queue_select);
	state_put_u16(b, vp->config_vector);
	for (unsigned q = 0; q < vd->nr_queues; q++)
		state_put_u16(b, vp->queue_vector[q]);
	state_put_u8(b, vp->isr);
	virtio_dev_save(vd, b);
	pthread_mutex_unlock(&vd->lock);
}

static int vp_load(void *opaque, struct state_reader *r)
{
	struct virtio_pci *vp = opaque;
	struct virtio_dev *vd = vp->vd;
	uint16_t qv[VIRTIO_MAX_QUEUES], cv, qs;
	uint32_t dfs, gfs;
	uint8_t isr;
	int err;

	if (state_get_u8(r) != VIRTIO_PCI_STATE_VERSION)
		return -EINVAL;
	if (!vd)
		return r->err;
	dfs = state_get_u32(r);
	gfs = state_get_u32(r);
	qs = state_get_u16(r);
	cv = state_get_u16(r);
	for (unsigned q = 0; q < vd->nr_queues; q++)
		qv[q] = state_get_u16(r);
	isr = state_get_u8(r);
	if (r->err || isr & ~(ISR_QUEUE | ISR_CONFIG))
		return -EINVAL;
	pthread_mutex_lock(&vd->lock);
	err = virtio_dev_load(vd, r);
	if (!err) {
		vp->dfselect = dfs;
		vp->gfselect = gfs;
		vp->queue_select = qs;
		vp->config_vector = check_vector(vp, cv);
		for (unsigned q = 0; q < vd->nr_queues; q++)
			vp->queue_vector[q] = check_vector(vp, qv[q]);
		vp->isr = isr;
	}
	pthread_mutex_unlock(&vd->lock);
	return err;
}

static void vp_destroy(void *opaque)
{
	struct virtio_pci *vp = opaque;

	/* No ioeventfd deassignment here: the accelerator is gone by now
	 * (run.c destroys it before the machine) and its doorbells went with
	 * its VM. */
	if (vp->vd && vp->owns_vd)
		virtio_dev_destroy(vp->vd);
	free(vp);
}

static const struct vm_device_ops vp_device_ops = {
	.name = "virtio-pci",
	.reset = vp_reset,
	.save = vp_save,
	.load = vp_load,
	.destroy = vp_destroy,
};

/* ---- construction ---- */

static int add_cap(struct pci_device *dev, uint8_t cfg_type, uint32_t offset,
		   uint32_t length, const void *extra, size_t extra_len,
		   uint8_t *at)
{
	uint8_t body[CAP_BODY_LEN + 4] = { 0 };

	body[0] = (uint8_t)(2 + CAP_BODY_LEN + extra_len); /* cap_len */
	body[1] = cfg_type;
	body[2] = VIRTIO_PCI_BAR;
	for (int i = 0; i < 4; i++) {
		body[6 + i] = (uint8_t)(offset >> (8 * i));
		body[10 + i] = (uint8_t)(length >> (8 * i));
	}
	if (extra_len)
		memcpy(body + CAP_BODY_LEN, extra, extra_len);
	return pci_cap_add(dev, PCI_CAP_ID_VNDR, body, CAP_BODY_LEN + extra_len,
			   at);
}

static int build_function(struct virtio_pci *vp, struct pci_bus *bus)
{
	struct virtio_dev *vd = vp->vd;
	const uint32_t id = vd->ops->device_id;
	const struct pci_device_info info = {
		.vendor_id = VIRTIO_PCI_VENDOR_ID,
		.device_id = (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + id),
		.subsystem_vendor_id = VIRTIO_PCI_VENDOR_ID,
		.subsystem_id = (uint16_t)id,
		.revision = 1,
		.class_code = class_of(id),
		.irq_pin = 1,
		.name = vd->ops->name,
	};
	const uint8_t mult[4] = { VIRTIO_PCI_NOTIFY_MULT };
	struct pci_device *dev;
	int r;

	if ((r = pci_device_add(bus, &info, &vp_pci_ops, vp, &dev)))
		return r;
	vp->pci = dev;
	if ((r = pci_bar_add(dev, VIRTIO_PCI_BAR, PCI_BAR_MEM64,
			     VIRTIO_PCI_BAR_SIZE, &vp_bar_ops, vp)) ||
	    (r = add_cap(dev, VIRTIO_PCI_CAP_COMMON_CFG,
			 VIRTIO_PCI_COMMON_OFFSET, CC_SIZE, NULL, 0, NULL)) ||
	    (r = add_cap(dev, VIRTIO_PCI_CAP_NOTIFY_CFG,
			 VIRTIO_PCI_NOTIFY_OFFSET,
			 VIRTIO_PCI_NOTIFY_MULT * vd->nr_queues, mult, 4,
			 NULL)) ||
	    (r = add_cap(dev, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFFSET,
			 1, NULL, 0, NULL)) ||
	    (vd->config_size &&
	     (r = add_cap(dev, VIRTIO_PCI_CAP_DEVICE_CFG,
			  VIRTIO_PCI_DEVICE_OFFSET,
			  vd->config_size < 0x1000 ? vd->config_size : 0x1000,
			  NULL, 0, NULL))) ||
	    (r = add_cap(dev, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, "\0\0\0\0", 4,
			 &vp->pci_cfg_cap)) ||
	    (r = msix_init(dev, vd->nr_queues + 1, VIRTIO_PCI_MSIX_BAR)))
		return r;
	/* The driver points the window with bar, offset and length and
	 * moves data through pci_cfg_data (4.1.4.9). */
	pthread_mutex_lock(&dev->lock);
	dev->wmask[vp->pci_cfg_cap + CAP_OFF_BAR] = 0xff;
	memset(dev->wmask + vp->pci_cfg_cap + CAP_OFF_OFFSET, 0xff, 12);
	pthread_mutex_unlock(&dev->lock);
	return 0;
}

int virtio_pci_create(struct pci_bus *bus, struct virtio_dev *vd,
		      struct virtio_pci **out)
{
	struct vm *vm = pci_bus_vm(bus);
	struct virtio_pci *vp;
	int r;

	if (vd->tops)
		return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->vm = vm;
	/* On the board first, so that a half-built PCI function never
	 * points at freed memory: on failure it stays, inert (vd NULL). */
	r = vm_add_device(vm, &vp_device_ops, vp);
	if (r) {
		free(vp);
		return r;
	}
	vp->vd = vd;
	r = build_function(vp, bus);
	if (r) {
		vp->vd = NULL;
		return r;
	}
	pthread_mutex_lock(&vd->lock);
	transport_reset(vp);
	pthread_mutex_unlock(&vd->lock);
	virtio_dev_set_transport(vd, &vp_transport_ops, vp);
	vp->owns_vd = true;
	if (out)
		*out = vp;
	return 0;
}
