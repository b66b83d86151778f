/*
 * msix.c - MSI-X (msix.h), PCI Local Bus Specification 3.0 section 6.8.2.
 *
 * THE CAPABILITY (configuration space, ID 0x11)
 *   +2 Message Control  table size - 1 (bits 10:0, read-only), function
 *                       mask (bit 14) and MSI-X enable (bit 15), writable
 *   +4 Table offset / BIR    offset 0 in BAR `bar`
 *   +8 PBA offset / BIR      page aligned after the table, same BAR
 * Message Control lives in the device's configuration space (the bus
 * applies the write mask); the bus tells us after every configuration
 * write (msix_cfg_written), which is when an unmask or an enable may have
 * to deliver pending vectors.
 *
 * THE TABLE AND THE PBA (the BAR)
 * 16 bytes per vector: message address low (bits 1:0 read 0, since the
 * address is dword aligned), address high, data, vector control (bit 0
 * mask; the other bits are reserved and read 0).  Software may access the
 * table with aligned dwords or aligned qwords only (section 6.8.2.9): any
 * other access reads 0 and writes nothing.  The PBA is read-only, one bit
 * per vector.
 *
 * DELIVERY
 * msix_notify(v) while MSI-X is enabled: if the vector or the function is
 * masked the PBA bit is set, otherwise the message goes out through
 * irq_send_msi().  Clearing a mask (vector control, or the function mask,
 * or enabling MSI-X with the function unmasked) sends the message of every
 * vector that is pending and now unmasked, once, and clears its PBA bit.
 * While MSI-X is disabled, notifications are dropped: the device falls
 * back to INTx (virtio-pci checks msix_enabled()).
 *
 * KERNEL-SIDE INJECTION (irqfd)
 * When the accelerator offers MSI routes and irqfds (irq_has_irqfd(): KVM),
 * a vector that fires gets an eventfd bound to a GSI routed to its message,
 * and firing is a write to that eventfd: the kernel injects, with no
 * KVM_SIGNAL_MSI per interrupt.  Masking stays ours: the pending bit, the
 * one message on unmask and the dropped notifications while disabled are
 * decided above, under the lock, exactly as without irqfd; the eventfd is
 * written only when the message may go out now, so a bound eventfd never
 * delivers anything the guest masked.  That lets a route outlive a mask
 * (no KVM_SET_GSI_ROUTING per mask/unmask, which the guest does often):
 *   - a vector gets its route lazily, the first time it fires;
 *   - the route follows the message: when the guest rewrites the address
 *     or data of a vector that may fire, at once; of a masked one, when it
 *     next fires (its pending message on unmask included), so a stale
 *     route is never signalled;
 *   - every route goes when MSI-X is disabled, at reset, on a state load
 *     and when the device is destroyed, so GSIs do not leak.
 * If a route or an eventfd cannot be had (GSIs used up, fds exhausted),
 * the vector falls back to irq_send_msi(), which is always correct, and
 * tries again next time.
 *
 * LOCKING
 * The state is guarded by the device's lock (pci_device.lock), which also
 * guards Message Control in configuration space; messages are sent after
 * the lock is dropped, so the interrupt controllers never nest inside it.
 * The irqfd path is the exception on purpose: routes change and eventfds
 * are written under the lock, so a vCPU masking a vector cannot slip in
 * between the decision to fire and the write.  The accelerator's routing
 * lock nests inside the device lock and takes no device lock itself.
 */
#include "hw/msix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/state.h"
#include "core/vm.h"
#include "hw/pci.h"
#include "util/log.h"

#define MSIX_STATE_VERSION 1

#define MSIX_CTRL_TABLE_SIZE 0x07ff
#define MSIX_CTRL_MASKALL    0x4000
#define MSIX_CTRL_ENABLE     0x8000

#define ENTRY_SIZE       16
#define ENTRY_ADDR_LO    0
#define ENTRY_ADDR_HI    4
#define ENTRY_DATA       8
#define ENTRY_CTRL       12
#define ENTRY_CTRL_MASK  1u

#define PAGE_SIZE 4096u

/* A vector's irqfd binding: eventfd `efd` raises MSI route `gsi`, which
 * carries (addr, data).  gsi < 0: none, the vector uses irq_send_msi(). */
struct msix_route {
	int efd, gsi;
	uint64_t addr;
	uint32_t data;
};

struct msix {
	struct pci_device *dev;
	unsigned nr;           /* vectors */
	uint8_t cap;           /* configuration-space offset of the capability */
	uint32_t pba_offset;   /* bytes into the BAR */
	uint32_t *table;       /* nr * 4 dwords */
	uint64_t *pba;         /* (nr + 63) / 64 words */
	struct msix_route *routes; /* nr; kernel-side injection */
	unsigned nr_routed;        /* routes with gsi >= 0 */
};

static unsigned pba_words(unsigned nr) { return (nr + 63) / 64; }

static uint16_t control(const struct pci_device *dev)
{
	const uint8_t *p = dev->cfg + dev->msix->cap + 2;

	return (uint16_t)(p[0] | p[1] << 8);
}

/* Whether vector v's message may go out now; dev->lock held. */
static bool can_send(const struct pci_device *dev, unsigned v)
{
	uint16_t c = control(dev);

	return (c & MSIX_CTRL_ENABLE) && !(c & MSIX_CTRL_MASKALL) &&
	       !(dev->msix->table[v * 4 + 3] & ENTRY_CTRL_MASK);
}

static void message(const struct msix *m, unsigned v, uint64_t *addr,
		    uint32_t *data)
{
	const uint32_t *e = m->table + v * 4;

	*addr = (uint64_t)e[1] << 32 | e[0];
	*data = e[2];
}

static const struct irq_chip *chip_of(const struct pci_device *dev)
{
	return &pci_bus_vm(dev->bus)->irq;
}

/* Drop vector v's binding and route; dev->lock held. */
static void route_release(struct pci_device *dev, unsigned v)
{
	struct msix *m = dev->msix;
	struct msix_route *rt = &m->routes[v];

	if (rt->gsi < 0)
		return;
	irq_irqfd_deassign(chip_of(dev), (unsigned)rt->gsi, rt->efd);
	irq_msi_route_del(chip_of(dev), (unsigned)rt->gsi);
	close(rt->efd);
	*rt = (struct msix_route){ .efd = -1, .gsi = -1 };
	m->nr_routed--;
}

static void release_all(struct pci_device *dev)
{
	for (unsigned v = 0; dev->msix->nr_routed && v < dev->msix->nr; v++)
		route_release(dev, v);
}

/* Make vector v's route carry its current message, creating it if need
 * be; dev->lock held.  On failure the vector is left without a route. */
static void route_sync(struct pci_device *dev, unsigned v)
{
	const struct irq_chip *chip = chip_of(dev);
	struct msix_route *rt = &dev->msix->routes[v];
	uint64_t addr;
	uint32_t data;
	int r;

	if (!irq_has_irqfd(chip))
		return;
	message(dev->msix, v, &addr, &data);
	if (rt->gsi >= 0) {
		if (rt->addr == addr && rt->data == data)
			return;
		r = irq_msi_route_set(chip, (unsigned)rt->gsi, addr, data);
		if (!r) {
			rt->addr = addr;
			rt->data = data;
			return;
		}
		route_release(dev, v);
		goto fail;
	}
	rt->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rt->efd < 0) {
		r = -errno;
		goto fail;
	}
	r = irq_msi_route_add(chip, addr, data);
	if (r < 0) {
		close(rt->efd);
		rt->efd = -1;
		goto fail;
	}
	rt->gsi = r;
	rt->addr = addr;
	rt->data = data;
	dev->msix->nr_routed++;
	r = irq_irqfd_assign(chip, (unsigned)rt->gsi, rt->efd, -1);
	if (r) {
		route_release(dev, v);
		goto fail;
	}
	return;
fail:
	log_debug("%s: MSI-X vector %u: no irqfd route (%s), using MSIs",
		  dev->info.name, v, strerror(-r));
}

/* Vector v may fire now: fire it through its irqfd, or say that the
 * caller must send (*addr, *data) after dropping dev->lock. */
static bool fire(struct pci_device *dev, unsigned v, uint64_t *addr,
		 uint32_t *data)
{
	struct msix_route *rt = &dev->msix->routes[v];
	uint64_t one = 1;

	route_sync(dev, v);
	if (rt->gsi >= 0 && write(rt->efd, &one, sizeof(one)) == sizeof(one))
		return false;
	message(dev->msix, v, addr, data);
	return true;
}

/* Send every pending vector that can go now, each once. */
static void deliver_pending(struct pci_device *dev)
{
	struct msix *m = dev->msix;
	struct vm *vm = pci_bus_vm(dev->bus);

	for (unsigned v = 0; v < m->nr; v++) {
		uint64_t addr;
		uint32_t data;
		bool send = false;

		pthread_mutex_lock(&dev->lock);
		if ((m->pba[v / 64] >> (v % 64) & 1) && can_send(dev, v)) {
			m->pba[v / 64] &= ~(1ull << (v % 64));
			send = fire(dev, v, &addr, &data);
		}
		pthread_mutex_unlock(&dev->lock);
		if (send)
			irq_send_msi(&vm->irq, addr, data);
	}
}

bool msix_enabled(const struct pci_device *dev)
{
	struct pci_device *d = (struct pci_device *)dev;
	bool on;

	if (!dev->msix)
		return false;
	pthread_mutex_lock(&d->lock);
	on = control(dev) & MSIX_CTRL_ENABLE;
	pthread_mutex_unlock(&d->lock);
	return on;
}

bool msix_notify(struct pci_device *dev, unsigned vector)
{
	struct msix *m = dev->msix;
	uint64_t addr;
	uint32_t data;
	bool send = false, on;

	if (!m)
		return false;
	pthread_mutex_lock(&dev->lock);
	on = control(dev) & MSIX_CTRL_ENABLE;
	if (on && vector < m->nr) {
		if (can_send(dev, vector))
			send = fire(dev, vector, &addr, &data);
		else
			m->pba[vector / 64] |= 1ull << (vector % 64);
	}
	pthread_mutex_unlock(&dev->lock);
	if (send)
		irq_send_msi(&pci_bus_vm(dev->bus)->irq, addr, data);
	return on;
}

void msix_cfg_written(struct pci_device *dev)
{
	pthread_mutex_lock(&dev->lock);
	if (!(control(dev) & MSIX_CTRL_ENABLE))
		release_all(dev);
	pthread_mutex_unlock(&dev->lock);
	deliver_pending(dev);
}

/* ---- the BAR ---- */

static bool table_access_ok(uint64_t off, unsigned size)
{
	return (size == 4 || size == 8) && !(off & (size - 1));
}

static uint64_t msix_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct msix *m = opaque;
	struct pci_device *dev = m->dev;
	uint64_t v = 0;

	if (!table_access_ok(off, size))
		return 0;
	pthread_mutex_lock(&dev->lock);
	if (off + size <= (uint64_t)m->nr * ENTRY_SIZE) {
		const uint32_t *t = m->table + off / 4;

		v = t[0];
		if (size == 8)
			v |= (uint64_t)t[1] << 32;
	} else if (off >= m->pba_offset &&
		   off - m->pba_offset + size <= pba_words(m->nr) * 8ull) {
		uint64_t w = m->pba[(off - m->pba_offset) / 8];

		v = size == 8 ? w : (uint32_t)(w >> (8 * (off & 4)));
	}
	pthread_mutex_unlock(&dev->lock);
	return v;
}

/* Store one dword of the table, keeping reserved bits at 0. */
static void table_store(struct msix *m, unsigned idx, uint32_t v)
{
	switch (idx % 4 * 4) {
	case ENTRY_ADDR_LO:
		v &= ~3u;
		break;
	case ENTRY_CTRL:
		v &= ENTRY_CTRL_MASK;
		break;
	}
	m->table[idx] = v;
}

static void msix_bar_write(void *opaque, uint64_t off, unsigned size,
			   uint64_t value)
{
	struct msix *m = opaque;
	struct pci_device *dev = m->dev;

	if (!table_access_ok(off, size))
		return;
	pthread_mutex_lock(&dev->lock);
	if (off + size <= (uint64_t)m->nr * ENTRY_SIZE) {
		unsigned v = (unsigned)(off / ENTRY_SIZE);

		table_store(m, (unsigned)(off / 4), (uint32_t)value);
		if (size == 8)
			table_store(m, (unsigned)(off / 4 + 1),
				    (uint32_t)(value >> 32));
		/* A new message for a vector that may fire any moment: its
		 * route must carry it before the next interrupt, and the
		 * vCPU can afford the update better than the I/O thread. */
		if (m->routes[v].gsi >= 0 && can_send(dev, v))
			route_sync(dev, v);
	}
	pthread_mutex_unlock(&dev->lock);
	/* An unmask may release a pending vector. */
	deliver_pending(dev);
}

static const struct bus_ops msix_bar_ops = {
	.read = msix_bar_read,
	.write = msix_bar_write,
};

/* ---- setup and lifecycle ---- */

/* Table masked, PBA clear; dev->lock held. */
static void clear_state(struct msix *m)
{
	memset(m->table, 0, (size_t)m->nr * ENTRY_SIZE);
	for (unsigned v = 0; v < m->nr; v++)
		m->table[v * 4 + 3] = ENTRY_CTRL_MASK;
	memset(m->pba, 0, pba_words(m->nr) * sizeof(uint64_t));
}

int msix_init(struct pci_device *dev, unsigned nr_vectors, int bar)
{
	struct msix *m;
	uint8_t body[10];
	uint32_t pba_offset, bar_size;
	uint16_t ctrl = (uint16_t)(nr_vectors - 1);
	int r;

	if (!nr_vectors || nr_vectors > MSIX_MAX_VECTORS || dev->msix ||
	    bar < 0 || bar >= PCI_NUM_BARS ||
	    dev->bars[bar].type != PCI_BAR_NONE)
		return -EINVAL;
	pba_offset = (nr_vectors * ENTRY_SIZE + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	bar_size = PAGE_SIZE;
	while (bar_size < pba_offset + pba_words(nr_vectors) * 8)
		bar_size <<= 1;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->dev = dev;
	m->nr = nr_vectors;
	m->pba_offset = pba_offset;
	m->table = calloc(nr_vectors, ENTRY_SIZE);
	m->pba = calloc(pba_words(nr_vectors), sizeof(uint64_t));
	m->routes = calloc(nr_vectors, sizeof(*m->routes));
	if (!m->table || !m->pba || !m->routes) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned v = 0; v < nr_vectors; v++)
		m->routes[v] = (struct msix_route){ .efd = -1, .gsi = -1 };
	clear_state(m);
	r = pci_bar_add(dev, bar, PCI_BAR_MEM32, bar_size, &msix_bar_ops, m);
	if (r)
		goto fail;
	body[0] = (uint8_t)ctrl;
	body[1] = (uint8_t)(ctrl >> 8);
	for (int i = 0; i < 4; i++) {
		body[2 + i] = (uint8_t)((uint32_t)bar >> (8 * i)); /* offset 0 */
		body[6 + i] = (uint8_t)((pba_offset | (uint32_t)bar) >> (8 * i));
	}
	r = pci_cap_add(dev, PCI_CAP_ID_MSIX, body, sizeof(body), &m->cap);
	if (r) {
		/* Leave no BAR pointing at freed state. */
		dev->bars[bar] = (struct pci_bar){ 0 };
		memset(dev->cfg + 0x10 + 4 * bar, 0, 4);
		memset(dev->wmask + 0x10 + 4 * bar, 0, 4);
		goto fail;
	}
	pthread_mutex_lock(&dev->lock);
	dev->wmask[m->cap + 3] = (MSIX_CTRL_MASKALL | MSIX_CTRL_ENABLE) >> 8;
	dev->msix = m;
	pthread_mutex_unlock(&dev->lock);
	return 0;
fail:
	free(m->table);
	free(m->pba);
	free(m->routes);
	free(m);
	return r;
}

void msix_reset(struct pci_device *dev)
{
	struct msix *m = dev->msix;

	if (!m)
		return;
	pthread_mutex_lock(&dev->lock);
	dev->cfg[m->cap + 3] &= (uint8_t)~((MSIX_CTRL_MASKALL |
					    MSIX_CTRL_ENABLE) >> 8);
	release_all(dev);
	clear_state(m);
	pthread_mutex_unlock(&dev->lock);
}

void msix_destroy(struct pci_device *dev)
{
	struct msix *m = dev->msix;

	if (!m)
		return;
	pthread_mutex_lock(&dev->lock);
	release_all(dev);
	pthread_mutex_unlock(&dev->lock);
	free(m->table);
	free(m->pba);
	free(m->routes);
	free(m);
	dev->msix = NULL;
}

void msix_save(const struct pci_device *dev, struct state_buf *b)
{
	struct pci_device *d = (struct pci_device *)dev;
	const struct msix *m = dev->msix;

	if (!m)
		return;
	pthread_mutex_lock(&d->lock);
	state_put_u8(b, MSIX_STATE_VERSION);
	state_put_u32(b, m->nr);
	for (unsigned i = 0; i < m->nr * 4; i++)
		state_put_u32(b, m->table[i]);
	for (unsigned i = 0; i < pba_words(m->nr); i++)
		state_put_u64(b, m->pba[i]);
	pthread_mutex_unlock(&d->lock);
}

int msix_load(struct pci_device *dev, struct state_reader *r)
{
	struct msix *m = dev->msix;
	uint32_t *table;
	uint64_t *pba;
	int err = 0;

	if (!m)
		return 0;
	if (state_get_u8(r) != MSIX_STATE_VERSION ||
	    state_get_u32(r) != m->nr || r->err)
		return -EINVAL;
	table = calloc(m->nr, ENTRY_SIZE);
	pba = calloc(pba_words(m->nr), sizeof(uint64_t));
	if (!table || !pba) {
		err = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < m->nr * 4; i++) {
		table[i] = state_get_u32(r);
		if ((i % 4 == 0 && (table[i] & 3)) ||
		    (i % 4 == 3 && (table[i] & ~ENTRY_CTRL_MASK)))
			err = -EINVAL;
	}
	for (unsigned i = 0; i < pba_words(m->nr); i++)
		pba[i] = state_get_u64(r);
	/* Bits past the last vector do not exist. */
	if (m->nr % 64 && (pba[m->nr / 64] >> (m->nr % 64)))
		err = -EINVAL;
	if (r->err)
		err = -EINVAL;
	if (!err) {
		pthread_mutex_lock(&dev->lock);
		/* Routes carry the old messages; new ones come on first use. */
		release_all(dev);
		memcpy(m->table, table, (size_t)m->nr * ENTRY_SIZE);
		memcpy(m->pba, pba, pba_words(m->nr) * sizeof(uint64_t));
		pthread_mutex_unlock(&dev->lock);
	}
out:
	free(table);
	free(pba);
	return err;
}
