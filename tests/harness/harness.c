/* harness.c - see harness.h. */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void h_set_level(void *opaque, unsigned gsi, bool level)
{
	struct harness *h = opaque;
	if (level && !h->irq_level[gsi])
		h->irq_edges[gsi]++;
	h->irq_level[gsi] = level;
}

static void h_send_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct harness *h = opaque;
	if (h->nr_msi < HARNESS_MAX_MSI) {
		h->msi[h->nr_msi].addr = addr;
		h->msi[h->nr_msi].data = data;
		h->nr_msi++;
	}
}

static const struct irq_ops harness_irq_ops = {
	.set_level = h_set_level,
	.send_msi = h_send_msi,
};

static struct hx_route *h_route(struct harness *h, unsigned gsi)
{
	if (gsi < IRQ_MAX_GSI || gsi - IRQ_MAX_GSI >= HARNESS_MAX_ROUTES ||
	    !h->routes[gsi - IRQ_MAX_GSI].used)
		return NULL;
	return &h->routes[gsi - IRQ_MAX_GSI];
}

static int h_msi_route_add(void *opaque, uint64_t addr, uint32_t data)
{
	struct harness *h = opaque;

	if (hx_routes_used(h) >= h->route_limit)
		return -ENOSPC;
	for (unsigned i = 0; i < HARNESS_MAX_ROUTES; i++)
		if (!h->routes[i].used) {
			h->routes[i] = (struct hx_route){ true, addr, data, -1 };
			h->route_adds++;
			return (int)(IRQ_MAX_GSI + i);
		}
	return -ENOSPC;
}

static int h_msi_route_set(void *opaque, unsigned gsi, uint64_t addr,
			   uint32_t data)
{
	struct harness *h = opaque;
	struct hx_route *r = h_route(h, gsi);

	if (!r)
		return -EINVAL;
	r->addr = addr;
	r->data = data;
	h->route_sets++;
	return 0;
}

static void h_msi_route_del(void *opaque, unsigned gsi)
{
	struct harness *h = opaque;
	struct hx_route *r = h_route(h, gsi);

	if (r) {
		*r = (struct hx_route){ .fd = -1 };
		h->route_dels++;
	}
}

/* Only MSI routes, like msix.c uses them; INTx stays on set_level. */
static int h_irqfd_assign(void *opaque, unsigned gsi, int fd, int resample_fd)
{
	struct harness *h = opaque;
	struct hx_route *r = h_route(h, gsi);

	if (!r || resample_fd >= 0)
		return -EINVAL;
	if (r->fd >= 0)
		return -EBUSY;
	r->fd = fd;
	h->irqfd_assigns++;
	return 0;
}

static int h_irqfd_deassign(void *opaque, unsigned gsi, int fd)
{
	struct harness *h = opaque;
	struct hx_route *r = h_route(h, gsi);

	if (!r || r->fd != fd)
		return -ENOENT;
	r->fd = -1;
	h->irqfd_deassigns++;
	return 0;
}

static const struct irq_ops harness_irqfd_ops = {
	.set_level = h_set_level,
	.send_msi = h_send_msi,
	.msi_route_add = h_msi_route_add,
	.msi_route_set = h_msi_route_set,
	.msi_route_del = h_msi_route_del,
	.irqfd_assign = h_irqfd_assign,
	.irqfd_deassign = h_irqfd_deassign,
};

void hx_irqfd_enable(struct harness *h)
{
	for (unsigned i = 0; i < HARNESS_MAX_ROUTES; i++)
		h->routes[i] = (struct hx_route){ .fd = -1 };
	h->route_limit = HARNESS_MAX_ROUTES;
	h->vm.irq.ops = &harness_irqfd_ops;
}

unsigned hx_irqfd_inject(struct harness *h)
{
	unsigned n = 0;

	for (unsigned i = 0; i < HARNESS_MAX_ROUTES; i++) {
		struct hx_route *r = &h->routes[i];
		uint64_t count;

		if (!r->used || r->fd < 0 ||
		    read(r->fd, &count, sizeof(count)) != sizeof(count))
			continue;
		for (; count; count--, n++) {
			h_send_msi(h, r->addr, r->data);
			h->nr_msi_irqfd++;
		}
	}
	return n;
}

unsigned hx_routes_used(struct harness *h)
{
	unsigned n = 0;

	for (unsigned i = 0; i < HARNESS_MAX_ROUTES; i++)
		n += h->routes[i].used;
	return n;
}

struct harness *harness_new(uint64_t ram_size)
{
	struct harness *h = calloc(1, sizeof(*h));
	if (!h || vm_init(&h->vm, ram_size, 1)) {
		fprintf(stderr, "harness: cannot build a machine\n");
		abort();
	}
	h->vm.fake_clock = true;
	h->vm.fake_clock_ns = 1000000000ull;
	h->vm.irq.ops = &harness_irq_ops;
	h->vm.irq.opaque = h;
	if (evloop_init(&h->loop, NULL)) {
		fprintf(stderr, "harness: cannot create the I/O event loop\n");
		abort();
	}
	return h;
}

void harness_free(struct harness *h)
{
	/* Devices (virtio, block) unregister from the loop as they go. */
	vm_destroy(&h->vm);
	evloop_destroy(&h->loop);
	free(h);
}

uint8_t hx_inb(struct harness *h, uint16_t port) { return bus_read(&h->vm.pio, port, 1); }
uint16_t hx_inw(struct harness *h, uint16_t port) { return bus_read(&h->vm.pio, port, 2); }
uint32_t hx_inl(struct harness *h, uint16_t port) { return bus_read(&h->vm.pio, port, 4); }
void hx_outb(struct harness *h, uint16_t port, uint8_t v) { bus_write(&h->vm.pio, port, 1, v); }
void hx_outw(struct harness *h, uint16_t port, uint16_t v) { bus_write(&h->vm.pio, port, 2, v); }
void hx_outl(struct harness *h, uint16_t port, uint32_t v) { bus_write(&h->vm.pio, port, 4, v); }

uint64_t hx_mmio_read(struct harness *h, uint64_t addr, unsigned size)
{
	return bus_read(&h->vm.mmio, addr, size);
}

void hx_mmio_write(struct harness *h, uint64_t addr, unsigned size, uint64_t v)
{
	bus_write(&h->vm.mmio, addr, size, v);
}

bool hx_irq_level(struct harness *h, unsigned gsi) { return h->irq_level[gsi]; }
unsigned hx_irq_edges(struct harness *h, unsigned gsi) { return h->irq_edges[gsi]; }

void hx_irq_clear_edges(struct harness *h)
{
	for (unsigned i = 0; i < IRQ_MAX_GSI; i++)
		h->irq_edges[i] = 0;
}

void hx_clock_advance(struct harness *h, uint64_t ns)
{
	uint64_t target = h->vm.fake_clock_ns + ns;

	/* Step through deadlines so each timer sees the clock at its own
	 * expiry, as it would in real time. */
	for (;;) {
		uint64_t next = vm_timers_run(&h->vm);
		if (next > target)
			break;
		__atomic_store_n(&h->vm.fake_clock_ns, next, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&h->vm.fake_clock_ns, target, __ATOMIC_RELEASE);
	vm_timers_run(&h->vm);
}

int hx_run_io(struct harness *h, int timeout_ms)
{
	int rounds = 0;

	/* The first wait may block (a completion in flight); after that only
	 * drain what is already ready. */
	for (int t = timeout_ms;; t = 0) {
		int n = evloop_run_once(&h->loop, t);
		if (n <= 0)
			return rounds;
		rounds++;
	}
}

const struct vm_device *hx_device(struct harness *h, const char *name)
{
	for (int i = 0; i < h->vm.nr_devices; i++)
		if (!strcmp(h->vm.devices[i].ops->name, name))
			return &h->vm.devices[i];
	/* The harness does not link cmocka (fail_msg); abort still fails
	 * the test, with the reason on stderr. */
	fprintf(stderr, "harness: no device %s\n", name);
	abort();
}

int hx_save(struct harness *h, const char *name, struct state_buf *b)
{
	const struct vm_device *d = hx_device(h, name);

	d->ops->save(d->opaque, b);
	return b->err;
}

int hx_load(struct harness *h, const char *name, const void *data,
	    size_t len)
{
	const struct vm_device *d = hx_device(h, name);
	struct state_reader r = { .data = data, .len = len };

	return d->ops->load(d->opaque, &r);
}
