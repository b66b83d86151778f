/*
 * harness.h - the qtest-style machine harness.
 *
 * A test builds a machine with guest RAM and devices but no vCPU, then plays
 * the guest: port and MMIO accesses go through the buses exactly as an
 * accelerator would send them, guest memory is read and written directly,
 * and interrupts raised by devices are recorded (current level of each GSI,
 * number of rising edges, MSI messages) for the test to check.
 */
#ifndef KVMM_TESTS_HARNESS_H
#define KVMM_TESTS_HARNESS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/state.h"
#include "core/event_loop.h"
#include "core/vm.h"

#define HARNESS_MAX_MSI 64
#define HARNESS_MAX_ROUTES 16

/* A fake MSI route (hx_irqfd_enable): GSI IRQ_MAX_GSI + its index. */
struct hx_route {
	bool used;
	uint64_t addr;
	uint32_t data;
	int fd;        /* the eventfd bound to it, -1: none */
};

struct harness {
	struct vm vm;
	bool irq_level[IRQ_MAX_GSI];
	unsigned irq_edges[IRQ_MAX_GSI]; /* rising edges seen */
	struct { uint64_t addr; uint32_t data; } msi[HARNESS_MAX_MSI];
	unsigned nr_msi;
	struct evloop loop; /* the I/O thread's loop, run by hx_run_io() */
	/* The fake kernel-side injection, after hx_irqfd_enable(). */
	struct hx_route routes[HARNESS_MAX_ROUTES];
	unsigned route_limit;   /* routes it grants (HARNESS_MAX_ROUTES) */
	unsigned route_adds, route_sets, route_dels;
	unsigned irqfd_assigns, irqfd_deassigns;
	unsigned nr_msi_irqfd;  /* of msi[], those injected from an irqfd */
};

/* A machine with `ram_size` bytes of RAM and 1 vCPU (for tables that count
 * them).  Aborts the test on failure. */
struct harness *harness_new(uint64_t ram_size);
/* vm_destroy() and free. */
void harness_free(struct harness *h);

uint8_t hx_inb(struct harness *h, uint16_t port);
uint16_t hx_inw(struct harness *h, uint16_t port);
uint32_t hx_inl(struct harness *h, uint16_t port);
void hx_outb(struct harness *h, uint16_t port, uint8_t v);
void hx_outw(struct harness *h, uint16_t port, uint16_t v);
void hx_outl(struct harness *h, uint16_t port, uint32_t v);
uint64_t hx_mmio_read(struct harness *h, uint64_t addr, unsigned size);
void hx_mmio_write(struct harness *h, uint64_t addr, unsigned size, uint64_t v);

/* Current level / rising edges since harness_new or the last clear. */
bool hx_irq_level(struct harness *h, unsigned gsi);
unsigned hx_irq_edges(struct harness *h, unsigned gsi);
void hx_irq_clear_edges(struct harness *h);

/* Offer the optional irq ops (core/irq.h) as KVM would: MSI routes from
 * GSI IRQ_MAX_GSI up and eventfds bound to them, all recorded.  Call before
 * creating the devices that should use them. */
void hx_irqfd_enable(struct harness *h);
/* Play the kernel: drain every bound eventfd and record, for each write
 * seen, the MSI its route carries now (in msi[]).  Returns how many. */
unsigned hx_irqfd_inject(struct harness *h);
/* Routes in use. */
unsigned hx_routes_used(struct harness *h);

/* The machine runs on a fake clock starting at 1 s; advance it by `ns` and
 * run every device timer that expired (in deadline order). */
void hx_clock_advance(struct harness *h, uint64_t ns);

/* Play the I/O thread: dispatch ready event-loop handlers (doorbells,
 * block completions), waiting up to timeout_ms for the first one, then
 * until nothing more is ready.  Returns the number of dispatch rounds that
 * ran a handler (0: nothing happened). */
int hx_run_io(struct harness *h, int timeout_ms);

/* Device state as vm snapshots see it, for the save/load tests. */
/* The device registered under `name`.  Aborts (failing the test, like
 * harness_new) if there is none, so callers need no NULL check. */
const struct vm_device *hx_device(struct harness *h, const char *name);
/* Append device `name`'s state to `b`; returns b->err (0 on success). */
int hx_save(struct harness *h, const char *name, struct state_buf *b);
/* Run device `name`'s load() on `len` bytes at `data`, as a snapshot
 * restore would; returns what load() returns (-EINVAL for a bad stream). */
int hx_load(struct harness *h, const char *name, const void *data,
	    size_t len);

#endif
