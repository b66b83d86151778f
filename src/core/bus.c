/*
 * bus.c - a sorted array of ranges with binary search.  A PC board has a few
 * dozen ranges; an array beats a tree on cache misses and has no lock.
 */
#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int bus_register(struct bus *bus, uint64_t base, uint64_t len,
		 const struct bus_ops *ops, void *opaque, const char *name)
{
	int i;

	if (len == 0 || base + len < base)
		return -EINVAL;
	for (i = 0; i < bus->nr_ranges; i++) {
		const struct bus_range *r = &bus->ranges[i];
		if (base < r->base + r->len && r->base < base + len)
			return -EBUSY;
		if (r->base > base)
			break;
	}
	if (bus->nr_ranges == bus->cap_ranges) {
		int cap = bus->cap_ranges ? bus->cap_ranges * 2 : 16;
		struct bus_range *n = realloc(bus->ranges, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		bus->ranges = n;
		bus->cap_ranges = cap;
	}
	memmove(&bus->ranges[i + 1], &bus->ranges[i],
		(bus->nr_ranges - i) * sizeof(bus->ranges[0]));
	bus->ranges[i] = (struct bus_range){ base, len, ops, opaque, name };
	bus->nr_ranges++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *bus, uint64_t addr)
{
	int lo = 0, hi = bus->nr_ranges - 1;

	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const struct bus_range *r = &bus->ranges[mid];
		if (addr < r->base)
			hi = mid - 1;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

static const struct bus_range *find_access(const struct bus *bus,
					   uint64_t addr, unsigned size)
{
	const struct bus_range *r = bus_find(bus, addr);
	if (!r || size > r->len - (addr - r->base))
		return NULL;
	return r;
}

uint64_t bus_read(const struct bus *bus, uint64_t addr, unsigned size)
{
	const struct bus_range *r = find_access(bus, addr, size);
	uint64_t ones = size >= 8 ? ~0ull : (1ull << (size * 8)) - 1;

	if (!r || !r->ops->read)
		return ones;
	return r->ops->read(r->opaque, addr - r->base, size) & ones;
}

void bus_write(const struct bus *bus, uint64_t addr, unsigned size,
	       uint64_t value)
{
	const struct bus_range *r = find_access(bus, addr, size);

	if (r && r->ops->write)
		r->ops->write(r->opaque, addr - r->base, size, value);
}

void bus_destroy(struct bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->nr_ranges = bus->cap_ranges = 0;
}
