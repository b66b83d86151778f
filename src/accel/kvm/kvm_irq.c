/*
 * kvm_irq.c - interrupts under KVM: the in-kernel irqchip's input lines
 * (KVM_IRQ_LINE), one-off MSIs (KVM_SIGNAL_MSI), and, where the host has
 * KVM_CAP_IRQ_ROUTING and KVM_CAP_IRQFD, the optional kernel-side injection
 * of core/irq.h: MSI routes and irqfds (Documentation/virt/kvm/api.rst,
 * sections KVM_SET_GSI_ROUTING and KVM_IRQFD).
 *
 * THE ROUTING TABLE
 * KVM_SET_GSI_ROUTING replaces the whole table, so we keep it here and
 * send all of it on every change.  It always starts with the routes
 * KVM_CREATE_IRQCHIP installs by default, which the board depends on:
 * GSIs 0-15 go to both the PIC (master pins 0-7, slave pins 8-15) and the
 * IOAPIC pin of the same number, GSIs 16-23 to the IOAPIC only (as QEMU and
 * kvmtool rebuild it).  MSI routes follow, one GSI each from IRQ_MAX_GSI
 * up; a slot array indexed by GSI - IRQ_MAX_GSI says which are taken.  The
 * kernel bounds GSIs and entries by KVM_CAP_IRQ_ROUTING (KVM_MAX_IRQ_ROUTES),
 * so that is where the slots end.
 *
 * A routing update is expensive (the kernel waits for an SRCU grace
 * period), which is why MSI-X (hw/msix.c) only changes a route when the
 * guest changed the message of a vector it can fire, not on every table
 * write.  Failed updates leave our copy as it was, so it always matches
 * what the kernel holds.
 *
 * LOCKING
 * routes.lock serialises table changes (vCPU threads write MSI-X tables,
 * the I/O thread may add routes on a first notify).  KVM_IRQFD needs no
 * lock of ours: the kernel serialises it.
 */
#include "accel/kvm/kvm_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/irq.h"
#include "util/log.h"

/* Entries of the default table: 16 PIC + 24 IOAPIC. */
#define DEFAULT_ROUTES (16 + IRQ_MAX_GSI)

static void kvm_set_level(void *opaque, unsigned gsi, bool level)
{
	struct kvm_state *k = opaque;
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	if (ioctl(k->vm_fd, KVM_IRQ_LINE, &l) < 0)
		log_debug("KVM_IRQ_LINE %u: %s", gsi, strerror(errno));
}

static void kvm_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct kvm_state *k = opaque;
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	if (ioctl(k->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		log_debug("KVM_SIGNAL_MSI: %s", strerror(errno));
}

static struct kvm_irq_routing_entry irqchip_route(unsigned gsi, unsigned chip,
						  unsigned pin)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};
}

/* Send the whole table; routes.lock held. */
static int commit(struct kvm_state *k)
{
	struct kvm_irq_routes *rt = &k->routes;
	struct kvm_irq_routing *t;
	unsigned n = 0;
	int r;

	t = calloc(1, sizeof(*t) + (DEFAULT_ROUTES + rt->nr_used) *
					   sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	for (unsigned gsi = 0; gsi < IRQ_MAX_GSI; gsi++) {
		if (gsi < 16)
			t->entries[n++] = irqchip_route(gsi, gsi < 8 ?
				KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
				gsi % 8);
		t->entries[n++] = irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi);
	}
	for (unsigned i = 0; i < rt->nr_slots; i++) {
		const struct kvm_msi_route *m = &rt->slots[i];

		if (!m->used)
			continue;
		t->entries[n++] = (struct kvm_irq_routing_entry){
			.gsi = IRQ_MAX_GSI + i, .type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = (uint32_t)m->addr,
				   .address_hi = (uint32_t)(m->addr >> 32),
				   .data = m->data },
		};
	}
	t->nr = n;
	r = ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, t) < 0 ? -errno : 0;
	free(t);
	if (r)
		log_debug("KVM_SET_GSI_ROUTING (%u entries): %s", n, strerror(-r));
	return r;
}

static int kvm_msi_route_add(void *opaque, uint64_t addr, uint32_t data)
{
	struct kvm_state *k = opaque;
	struct kvm_irq_routes *rt = &k->routes;
	int r = -ENOSPC;

	pthread_mutex_lock(&rt->lock);
	for (unsigned i = 0; i < rt->nr_slots; i++) {
		struct kvm_msi_route *m = &rt->slots[i];

		if (m->used)
			continue;
		/* Entries are bounded like GSIs (the kernel's
		 * KVM_MAX_IRQ_ROUTES). */
		if (DEFAULT_ROUTES + rt->nr_used + 1 > rt->max_entries)
			break;
		*m = (struct kvm_msi_route){ .used = true, .addr = addr,
					     .data = data };
		rt->nr_used++;
		r = commit(k);
		if (r) {
			*m = (struct kvm_msi_route){ 0 };
			rt->nr_used--;
		} else {
			r = (int)(IRQ_MAX_GSI + i);
		}
		break;
	}
	pthread_mutex_unlock(&rt->lock);
	return r;
}

/* The slot of MSI route `gsi`, or NULL; routes.lock held. */
static struct kvm_msi_route *slot_of(struct kvm_irq_routes *rt, unsigned gsi)
{
	if (gsi < IRQ_MAX_GSI || gsi - IRQ_MAX_GSI >= rt->nr_slots ||
	    !rt->slots[gsi - IRQ_MAX_GSI].used)
		return NULL;
	return &rt->slots[gsi - IRQ_MAX_GSI];
}

static int kvm_msi_route_set(void *opaque, unsigned gsi, uint64_t addr,
			     uint32_t data)
{
	struct kvm_state *k = opaque;
	struct kvm_irq_routes *rt = &k->routes;
	struct kvm_msi_route *m, old;
	int r = -EINVAL;

	pthread_mutex_lock(&rt->lock);
	m = slot_of(rt, gsi);
	if (m) {
		old = *m;
		m->addr = addr;
		m->data = data;
		r = commit(k);
		if (r)
			*m = old;
	}
	pthread_mutex_unlock(&rt->lock);
	return r;
}

static void kvm_msi_route_del(void *opaque, unsigned gsi)
{
	struct kvm_state *k = opaque;
	struct kvm_irq_routes *rt = &k->routes;
	struct kvm_msi_route *m;

	pthread_mutex_lock(&rt->lock);
	m = slot_of(rt, gsi);
	if (m) {
		*m = (struct kvm_msi_route){ 0 };
		rt->nr_used--;
		/* Should the kernel refuse the smaller table, the stale route
		 * stays there unused (no eventfd is bound to it) until the
		 * next successful update. */
		commit(k);
	}
	pthread_mutex_unlock(&rt->lock);
}

static int kvm_irqfd_assign(void *opaque, unsigned gsi, int fd,
			    int resample_fd)
{
	struct kvm_state *k = opaque;
	struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = gsi };

	if (resample_fd >= 0) {
		if (gsi >= IRQ_MAX_GSI)
			return -EINVAL;
		f.flags = KVM_IRQFD_FLAG_RESAMPLE;
		f.resamplefd = (uint32_t)resample_fd;
	}
	return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

static int kvm_irqfd_deassign(void *opaque, unsigned gsi, int fd)
{
	struct kvm_state *k = opaque;
	struct kvm_irqfd f = { .fd = (uint32_t)fd, .gsi = gsi,
			       .flags = KVM_IRQFD_FLAG_DEASSIGN };

	/* KVM reports an unknown binding as success; callers only unbind
	 * what they bound, so that costs nothing. */
	return ioctl(k->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

static const struct irq_ops kvm_irq_ops = {
	.set_level = kvm_set_level,
	.send_msi = kvm_send_msi,
};

static const struct irq_ops kvm_irq_ops_irqfd = {
	.set_level = kvm_set_level,
	.send_msi = kvm_send_msi,
	.msi_route_add = kvm_msi_route_add,
	.msi_route_set = kvm_msi_route_set,
	.msi_route_del = kvm_msi_route_del,
	.irqfd_assign = kvm_irqfd_assign,
	.irqfd_deassign = kvm_irqfd_deassign,
};

const struct irq_ops *kvm_irq_init(struct kvm_state *k)
{
	struct kvm_irq_routes *rt = &k->routes;
	int max = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQ_ROUTING);

	pthread_mutex_init(&rt->lock, NULL);
	rt->initialised = true;
	if (max <= DEFAULT_ROUTES ||
	    ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) <= 0)
		return &kvm_irq_ops;
	rt->slots = calloc((size_t)max - IRQ_MAX_GSI, sizeof(*rt->slots));
	if (!rt->slots)
		return &kvm_irq_ops;
	rt->nr_slots = (unsigned)max - IRQ_MAX_GSI;
	rt->max_entries = (unsigned)max;
	return &kvm_irq_ops_irqfd;
}

void kvm_irq_destroy(struct kvm_state *k)
{
	struct kvm_irq_routes *rt = &k->routes;

	if (!rt->initialised)
		return;
	free(rt->slots);
	pthread_mutex_destroy(&rt->lock);
	*rt = (struct kvm_irq_routes){ 0 };
}
