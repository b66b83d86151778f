/*
 * bus.h - the port-I/O and MMIO buses devices register on.
 *
 * A device owns address ranges on a bus and gets read/write callbacks with
 * the offset inside its range.  Accelerators (KVM exits, the software CPU)
 * and the test harness turn guest accesses into bus_read()/bus_write(); no
 * device ever sees /dev/kvm.
 *
 * Ranges are registered while the machine is built, before any vCPU runs, and
 * are read-only afterwards, so lookups take no lock.  Devices serialize their
 * own state (one lock per device), since several vCPU threads may access them
 * at once.
 *
 * Accesses to unclaimed addresses read as all ones and drop writes, as on a
 * PC where nothing answers the cycle.
 */
#ifndef KVMM_CORE_BUS_H
#define KVMM_CORE_BUS_H

#include <stdint.h>

struct bus_ops {
	/* Read `size` bytes (1, 2, 4 or 8) at `offset` from the range start;
	 * return them in the low bits. */
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	/* Write the low `size` bytes of `value` at `offset`. */
	void (*write)(void *opaque, uint64_t offset, unsigned size,
		      uint64_t value);
};

struct bus_range {
	uint64_t base, len; /* bytes */
	const struct bus_ops *ops;
	void *opaque;
	const char *name; /* for diagnostics and `kvmm ctl` listings */
};

struct bus {
	const char *name; /* "pio" or "mmio" */
	struct bus_range *ranges; /* sorted by base, non-overlapping */
	int nr_ranges, cap_ranges;
};

/* Claim [base, base + len) for a device.  `ops` and `opaque` must outlive
 * the bus.  Returns 0, -EINVAL for len 0 or a wrapping range, -EBUSY if it
 * overlaps a registered range, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_ops *ops, void *opaque, const char *name);

/* The range containing addr, or NULL. */
const struct bus_range *bus_find(const struct bus *bus, uint64_t addr);

/* Dispatch a guest access of `size` bytes (1, 2, 4, 8) to whoever owns
 * `addr`.  An access that starts in a range but runs past its end, or hits
 * no range, reads all ones / is dropped. */
uint64_t bus_read(const struct bus *bus, uint64_t addr, unsigned size);
void bus_write(const struct bus *bus, uint64_t addr, unsigned size,
	       uint64_t value);

/* Free the range table. */
void bus_destroy(struct bus *bus);

#endif
