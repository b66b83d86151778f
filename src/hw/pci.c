/*
 * pci.c - the PCI root bus and its host bridge (pci.h).
 *
 * CONFIGURATION SPACE
 * Every device has a 4 KiB configuration space in three arrays: cfg (what
 * the guest reads), wmask (bits a guest write may change) and w1cmask
 * (bits a guest write of 1 clears).  A write of value v to byte i becomes
 *     cfg[i] = (cfg[i] & ~wmask[i]) | (v & wmask[i]);  cfg[i] &= ~(v & w1cmask[i])
 * so identification, read-only and reserved bits can never change, whatever
 * the size or alignment of the access.  Header type 0 (PCI 3.0 section 6.2):
 *   COMMAND   writable: I/O, memory, bus master, parity, SERR#, INTx disable
 *   STATUS    CAP_LIST and INTERRUPT are read-only, the error bits are RW1C
 *             (we never set them)
 *   BARs      writable address bits only (below); the low type bits are
 *             read-only
 *   INTERRUPT_LINE writable (firmware's scratch byte); INTERRUPT_PIN not
 *   expansion ROM BAR reads 0 (none), cache line size is writable
 * Functions other than 0 and empty slots do not exist: reads return all
 * ones, as a master abort does, and writes vanish.
 *
 * Two ways in: CONFIG_ADDRESS (0xCF8, dword accesses only: enable bit 31,
 * bus 23:16, device 15:11, function 10:8, register 7:2) with CONFIG_DATA
 * at 0xCFC-0xCFF (any size at any offset inside the dword), and ECAM
 * (PCIe 4.0 section 7.2.2: bus 0 only, 4 KiB per function, offsets >=
 * 0x100 reach the extended space; accesses must be naturally aligned, the
 * others read all ones).  Byte accesses to 0xCF9 are the chipset's reset
 * control register (reset_cf9.h), which lives inside CONFIG_ADDRESS.  One
 * bus mutex serializes all configuration cycles, which are rare: it keeps
 * CONFIG_ADDRESS + CONFIG_DATA pairs from different vCPUs from mixing
 * halfway (guests serialize them with a lock of their own anyway), and it
 * lets device hooks run without the device lock.
 *
 * BARS AND DECODING
 * kvmm plays firmware: pci_bar_add() gives each BAR a naturally aligned
 * address in the MMIO (or I/O) window, written to the BAR register and
 * restored on reset.  COMMAND starts at 0, as after firmware that left the
 * enabling to the OS (Linux's pci_enable_device() sets it).  A BAR decodes
 * only while COMMAND.MEMORY (IO) is set and its address lies entirely inside
 * the window; writing all ones to size it yields an address outside the
 * window, so a BAR being sized decodes nothing.  The bus owns the whole
 * windows on vm->mmio / vm->pio and keeps a table of the BARs that decode
 * now; the buses themselves never change after the machine is built.
 * Lookups take the table's rwlock for reading, copy the entry and call the
 * BAR's handler after dropping it, so a handler may raise interrupts or
 * touch configuration state freely; an access racing with a guest BAR move
 * may reach the BAR at its old place, as on hardware where the cycles are
 * not ordered either.  bar->addr changes only under the bus mutex, and
 * ops->bar_moved is called (still under the bus mutex, never under a device
 * lock) whenever it does, so a device can move its ioeventfds.
 *
 * INTx
 * A device drives its INTx line with pci_set_irq(); STATUS.INTERRUPT shows
 * that line, and the GSI sees it only while COMMAND.INTX_DISABLE is clear.
 * Slot s pin p reaches GSI 16 + (s + p - 1) % 8, the usual swizzle, shared
 * wired-OR through vm_irq_set_shared() with the slot as the source.
 *
 * LOCKING
 * Order: bus mutex -> device lock -> machine irq lock -> interrupt
 * controllers; the decode table's rwlock is a leaf.  Device hooks
 * (cfg_read, cfg_write, bar_moved) run under the bus mutex only.
 *
 * SNAPSHOTS
 * The bus saves CONFIG_ADDRESS and, per device, its whole configuration
 * space, its INTx level and its MSI-X state.  A load is checked like a
 * guest write: bits the guest cannot write must equal ours (so a stream
 * from a different machine is refused), then decoding and the INTx lines
 * are recomputed from what was loaded.
 */
#include "hw/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "core/vm.h"
#include "hw/msix.h"
#include "hw/reset_cf9.h"

#define PCI_STATE_VERSION 1

/* Header registers used only here */
#define PCI_REVISION_ID     0x08
#define PCI_CLASS_PROG      0x09
#define PCI_CACHE_LINE_SIZE 0x0c
#define PCI_HEADER_TYPE     0x0e
#define PCI_BASE_ADDRESS_0  0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID    0x2e
#define PCI_CAP_START       0x40
#define PCI_STD_CFG_END     0x100

#define PCI_COMMAND_PARITY  0x40
#define PCI_COMMAND_SERR    0x100
#define PCI_COMMAND_WMASK   (PCI_COMMAND_IO | PCI_COMMAND_MEMORY | \
			     PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | \
			     PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE)
/* Master data parity error, signaled/received target abort, received
 * master abort, signaled system error, detected parity error */
#define PCI_STATUS_W1C      0xf900

#define BAR_MEM_TYPE_64     0x04
#define BAR_IO_SPACE        0x01

#define CONFIG_ADDRESS_ENABLE 0x80000000u
#define CONFIG_ADDRESS_MASK   0x80fffffcu

#define HOST_BRIDGE_VENDOR 0x1b36 /* Red Hat, as QEMU's PCIe host */
#define HOST_BRIDGE_DEVICE 0x0008
#define HOST_BRIDGE_CLASS  0x060000

#define MAX_DECODES (PCI_SLOTS * PCI_NUM_BARS)

/* A BAR that decodes now: a copy, so lookups need no device lock. */
struct pci_decode {
	uint64_t base, size;
	const struct bus_ops *ops;
	void *opaque;
};

struct pci_bus {
	struct vm *vm;
	struct reset_cf9 *cf9;
	pthread_mutex_t lock;        /* configuration cycles, bar->addr */
	uint32_t config_address;
	struct pci_device *devs[PCI_SLOTS];
	int nr_devs;
	uint64_t mmio_next;          /* first free address of each window */
	uint32_t io_next;
	pthread_rwlock_t map_lock;
	struct pci_decode mmio_map[MAX_DECODES], io_map[MAX_DECODES];
	int nr_mmio, nr_io;
};

/* A BAR whose decoded address changed, reported after the device lock is
 * dropped. */
struct bar_move {
	int bar;
	uint64_t addr;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t rd32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	wr16(p, (uint16_t)v);
	wr16(p + 2, (uint16_t)(v >> 16));
}

struct vm *pci_bus_vm(const struct pci_bus *bus)
{
	return bus->vm;
}

unsigned pci_intx_gsi(const struct pci_device *dev)
{
	unsigned pin = dev->info.irq_pin ? dev->info.irq_pin - 1u : 0;

	return PC_PCI_GSI_BASE + ((unsigned)dev->slot + pin) % 8;
}

/* ---- BAR decoding ---- */

/* Where BAR `i` decodes given the current COMMAND and BAR registers; 0 when
 * it does not (disabled, being sized, or outside the window we own).
 * Called with dev->lock held. */
static uint64_t bar_decode_addr(const struct pci_device *dev, int i)
{
	const struct pci_bar *b = &dev->bars[i];
	uint16_t cmd = rd16(dev->cfg + PCI_COMMAND);
	uint32_t lo = rd32(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * i);
	uint64_t a;

	switch (b->type) {
	case PCI_BAR_IO:
		if (!(cmd & PCI_COMMAND_IO))
			return 0;
		a = lo & 0xfffcu;
		if (a < PC_PCI_IO_BASE ||
		    a > (uint64_t)PC_PCI_IO_BASE + PC_PCI_IO_SIZE - b->size)
			return 0;
		return a;
	case PCI_BAR_MEM32:
	case PCI_BAR_MEM64:
		if (!(cmd & PCI_COMMAND_MEMORY))
			return 0;
		a = lo & ~0xfu;
		if (b->type == PCI_BAR_MEM64)
			a |= (uint64_t)rd32(dev->cfg + PCI_BASE_ADDRESS_0 +
					    4 * (i + 1)) << 32;
		/* (written so that a sized 64-bit BAR cannot wrap) */
		if (a < PC_PCI_MMIO_BASE ||
		    a > PC_PCI_MMIO_BASE + PC_PCI_MMIO_SIZE - b->size)
			return 0;
		return a;
	default:
		return 0;
	}
}

/* Recompute every BAR's decoded address; record those that changed.
 * Called with the bus mutex and dev->lock held. */
static int update_bars(struct pci_device *dev, struct bar_move *moves)
{
	int n = 0;

	for (int i = 0; i < PCI_NUM_BARS; i++) {
		uint64_t a;

		if (dev->bars[i].type == PCI_BAR_NONE)
			continue;
		a = bar_decode_addr(dev, i);
		if (a != dev->bars[i].addr) {
			dev->bars[i].addr = a;
			moves[n++] = (struct bar_move){ i, a };
		}
	}
	return n;
}

/* Rebuild the decode tables from every device's bar->addr.  Called with
 * the bus mutex held (which guards bar->addr). */
static void rebuild_map(struct pci_bus *bus)
{
	pthread_rwlock_wrlock(&bus->map_lock);
	bus->nr_mmio = bus->nr_io = 0;
	for (int s = 0; s < bus->nr_devs; s++) {
		struct pci_device *dev = bus->devs[s];

		for (int i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &dev->bars[i];
			struct pci_decode d = { b->addr, b->size, b->ops,
						b->opaque };

			if (!b->addr)
				continue;
			if (b->type == PCI_BAR_IO)
				bus->io_map[bus->nr_io++] = d;
			else
				bus->mmio_map[bus->nr_mmio++] = d;
		}
	}
	pthread_rwlock_unlock(&bus->map_lock);
}

/* Report moves to the device, bus mutex held. */
static void report_moves(struct pci_device *dev, const struct bar_move *m,
			 int n)
{
	for (int i = 0; i < n; i++)
		if (dev->ops && dev->ops->bar_moved)
			dev->ops->bar_moved(dev->opaque, m[i].bar, m[i].addr);
}

/* Find the BAR decoding [addr, addr + size); false if none or if the
 * access runs past its end. */
static bool lookup(struct pci_bus *bus, bool io, uint64_t addr, unsigned size,
		   struct pci_decode *out)
{
	const struct pci_decode *map;
	bool found = false;
	int n;

	pthread_rwlock_rdlock(&bus->map_lock);
	map = io ? bus->io_map : bus->mmio_map;
	n = io ? bus->nr_io : bus->nr_mmio;
	for (int i = 0; i < n; i++) {
		if (addr >= map[i].base && addr - map[i].base < map[i].size) {
			found = addr - map[i].base + size <= map[i].size;
			*out = map[i];
			break;
		}
	}
	pthread_rwlock_unlock(&bus->map_lock);
	return found;
}

static uint64_t window_read(struct pci_bus *bus, bool io, uint64_t addr,
			    unsigned size)
{
	struct pci_decode d;

	if (!lookup(bus, io, addr, size, &d) || !d.ops->read)
		return ~0ull;
	return d.ops->read(d.opaque, addr - d.base, size);
}

static void window_write(struct pci_bus *bus, bool io, uint64_t addr,
			 unsigned size, uint64_t value)
{
	struct pci_decode d;

	if (lookup(bus, io, addr, size, &d) && d.ops->write)
		d.ops->write(d.opaque, addr - d.base, size, value);
}

static uint64_t mmio_window_read(void *opaque, uint64_t off, unsigned size)
{
	return window_read(opaque, false, PC_PCI_MMIO_BASE + off, size);
}

static void mmio_window_write(void *opaque, uint64_t off, unsigned size,
			      uint64_t value)
{
	window_write(opaque, false, PC_PCI_MMIO_BASE + off, size, value);
}

static uint64_t io_window_read(void *opaque, uint64_t off, unsigned size)
{
	return window_read(opaque, true, PC_PCI_IO_BASE + off, size);
}

static void io_window_write(void *opaque, uint64_t off, unsigned size,
			    uint64_t value)
{
	window_write(opaque, true, PC_PCI_IO_BASE + off, size, value);
}

static const struct bus_ops mmio_window_ops = {
	.read = mmio_window_read,
	.write = mmio_window_write,
};

static const struct bus_ops io_window_ops = {
	.read = io_window_read,
	.write = io_window_write,
};

/* ---- configuration cycles (bus mutex held) ---- */

static struct pci_device *cfg_target(struct pci_bus *bus, unsigned busnr,
				     unsigned slot, unsigned fn)
{
	if (busnr != 0 || fn != 0 || slot >= (unsigned)bus->nr_devs)
		return NULL;
	return bus->devs[slot];
}

/* Read `size` bytes at `reg` (reg + size <= PCI_CFG_SIZE). */
static uint32_t cfg_read(struct pci_device *dev, unsigned reg, unsigned size)
{
	uint32_t v = 0;

	if (!dev)
		return 0xffffffffu;
	pthread_mutex_lock(&dev->lock);
	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)dev->cfg[reg + i] << (8 * i);
	pthread_mutex_unlock(&dev->lock);
	if (dev->ops && dev->ops->cfg_read)
		dev->ops->cfg_read(dev->opaque, reg, size, &v);
	return v;
}

/* Apply INTX_DISABLE and the device's line to its GSI; dev->lock held. */
static void drive_intx(struct pci_device *dev)
{
	bool on = dev->intx_level &&
		  !(rd16(dev->cfg + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE);

	if (dev->info.irq_pin)
		vm_irq_set_shared(dev->bus->vm, pci_intx_gsi(dev),
				  (unsigned)dev->slot, on);
}

static void cfg_write(struct pci_device *dev, unsigned reg, unsigned size,
		      uint32_t value)
{
	struct bar_move moves[PCI_NUM_BARS];
	uint16_t old_cmd;
	int n;

	if (!dev)
		return;
	pthread_mutex_lock(&dev->lock);
	old_cmd = rd16(dev->cfg + PCI_COMMAND);
	for (unsigned i = 0; i < size; i++) {
		unsigned o = reg + i;
		uint8_t v = (uint8_t)(value >> (8 * i));

		dev->cfg[o] = (uint8_t)((dev->cfg[o] & ~dev->wmask[o]) |
					(v & dev->wmask[o]));
		dev->cfg[o] &= (uint8_t)~(v & dev->w1cmask[o]);
	}
	n = update_bars(dev, moves);
	if ((old_cmd ^ rd16(dev->cfg + PCI_COMMAND)) & PCI_COMMAND_INTX_DISABLE)
		drive_intx(dev);
	pthread_mutex_unlock(&dev->lock);
	if (n) {
		rebuild_map(dev->bus);
		report_moves(dev, moves, n);
	}
	if (dev->msix)
		msix_cfg_written(dev);
	if (dev->ops && dev->ops->cfg_write)
		dev->ops->cfg_write(dev->opaque, reg, size, value);
}

/* 0xCF8-0xCFF */
static uint64_t cfg_port_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bus *bus = opaque;
	uint32_t a, v = 0xffffffffu;

	if (off == 1 && size == 1)
		return reset_cf9_read(bus->cf9);
	pthread_mutex_lock(&bus->lock);
	a = bus->config_address;
	if (off == 0 && size == 4) {
		v = a;
	} else if (off >= 4 && (a & CONFIG_ADDRESS_ENABLE)) {
		unsigned reg = (a & 0xfc) + (unsigned)(off - 4);

		v = cfg_read(cfg_target(bus, (a >> 16) & 0xff, (a >> 11) & 0x1f,
					(a >> 8) & 7), reg, size);
	}
	pthread_mutex_unlock(&bus->lock);
	return v;
}

static void cfg_port_write(void *opaque, uint64_t off, unsigned size,
			   uint64_t value)
{
	struct pci_bus *bus = opaque;
	uint32_t a;

	if (off == 1 && size == 1) {
		reset_cf9_write(bus->cf9, (uint8_t)value);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	a = bus->config_address;
	if (off == 0 && size == 4) {
		bus->config_address = (uint32_t)value & CONFIG_ADDRESS_MASK;
	} else if (off >= 4 && (a & CONFIG_ADDRESS_ENABLE)) {
		unsigned reg = (a & 0xfc) + (unsigned)(off - 4);

		cfg_write(cfg_target(bus, (a >> 16) & 0xff, (a >> 11) & 0x1f,
				     (a >> 8) & 7), reg, size, (uint32_t)value);
	}
	pthread_mutex_unlock(&bus->lock);
}

static const struct bus_ops cfg_port_ops = {
	.read = cfg_port_read,
	.write = cfg_port_write,
};

/* ECAM: offset = device << 15 | function << 12 | register (bus 0 only) */
static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bus *bus = opaque;
	uint32_t v;

	if (size > 4 || (off & (size - 1)))
		return ~0ull;
	pthread_mutex_lock(&bus->lock);
	v = cfg_read(cfg_target(bus, 0, (off >> 15) & 0x1f, (off >> 12) & 7),
		     off & 0xfff, size);
	pthread_mutex_unlock(&bus->lock);
	return v;
}

static void ecam_write(void *opaque, uint64_t off, unsigned size,
		       uint64_t value)
{
	struct pci_bus *bus = opaque;

	if (size > 4 || (off & (size - 1)))
		return;
	pthread_mutex_lock(&bus->lock);
	cfg_write(cfg_target(bus, 0, (off >> 15) & 0x1f, (off >> 12) & 7),
		  off & 0xfff, size, (uint32_t)value);
	pthread_mutex_unlock(&bus->lock);
}

static const struct bus_ops ecam_ops = {
	.read = ecam_read,
	.write = ecam_write,
};

/* ---- devices ---- */

int pci_device_add(struct pci_bus *bus, const struct pci_device_info *info,
		   const struct pci_device_ops *ops, void *opaque,
		   struct pci_device **out)
{
	struct pci_device *dev;

	if (info->irq_pin > 4)
		return -EINVAL;
	if (bus->nr_devs == PCI_SLOTS)
		return -ENOSPC;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->bus = bus;
	dev->slot = bus->nr_devs;
	dev->info = *info;
	dev->ops = ops;
	dev->opaque = opaque;
	dev->cap_end = PCI_CAP_START;
	pthread_mutex_init(&dev->lock, NULL);

	wr16(dev->cfg + PCI_VENDOR_ID, info->vendor_id);
	wr16(dev->cfg + PCI_DEVICE_ID, info->device_id);
	wr16(dev->wmask + PCI_COMMAND, PCI_COMMAND_WMASK);
	wr16(dev->w1cmask + PCI_STATUS, PCI_STATUS_W1C);
	dev->cfg[PCI_REVISION_ID] = info->revision;
	dev->cfg[PCI_CLASS_PROG] = (uint8_t)info->class_code;
	wr16(dev->cfg + PCI_CLASS_PROG + 1, (uint16_t)(info->class_code >> 8));
	dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	wr16(dev->cfg + PCI_SUBSYSTEM_VENDOR_ID, info->subsystem_vendor_id);
	wr16(dev->cfg + PCI_SUBSYSTEM_ID, info->subsystem_id);
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->cfg[PCI_INTERRUPT_PIN] = info->irq_pin;

	bus->devs[bus->nr_devs++] = dev;
	if (out)
		*out = dev;
	return 0;
}

int pci_bar_add(struct pci_device *dev, int bar, enum pci_bar_type type,
		uint64_t size, const struct bus_ops *ops, void *opaque)
{
	struct pci_bus *bus = dev->bus;
	uint8_t *reg = dev->cfg + PCI_BASE_ADDRESS_0 + 4 * bar;
	uint8_t *mask = dev->wmask + PCI_BASE_ADDRESS_0 + 4 * bar;
	uint64_t base;

	if (bar < 0 || bar >= PCI_NUM_BARS || !ops || !size ||
	    (size & (size - 1)) || dev->bars[bar].type != PCI_BAR_NONE ||
	    (bar > 0 && dev->bars[bar - 1].type == PCI_BAR_MEM64))
		return -EINVAL;
	switch (type) {
	case PCI_BAR_IO:
		/* PCI 3.0 section 6.2.5.1: I/O BARs claim at most 256 bytes */
		if (size < 4 || size > 256)
			return -EINVAL;
		base = (bus->io_next + size - 1) & ~(size - 1);
		if (base + size > (uint64_t)PC_PCI_IO_BASE + PC_PCI_IO_SIZE)
			return -ENOSPC;
		bus->io_next = (uint32_t)(base + size);
		wr32(reg, (uint32_t)base | BAR_IO_SPACE);
		wr32(mask, (uint32_t)~(size - 1) & 0xfffcu);
		break;
	case PCI_BAR_MEM64:
		if (bar == PCI_NUM_BARS - 1)
			return -EINVAL;
		if (dev->bars[bar + 1].type != PCI_BAR_NONE)
			return -EINVAL;
		/* fall through */
	case PCI_BAR_MEM32:
		if (size < 4096 || size > PC_PCI_MMIO_SIZE)
			return -EINVAL;
		base = (bus->mmio_next + size - 1) & ~(size - 1);
		if (base + size > PC_PCI_MMIO_BASE + PC_PCI_MMIO_SIZE)
			return -ENOSPC;
		bus->mmio_next = base + size;
		wr32(reg, (uint32_t)base |
			  (type == PCI_BAR_MEM64 ? BAR_MEM_TYPE_64 : 0));
		wr32(mask, (uint32_t)~(size - 1) & ~0xfu);
		if (type == PCI_BAR_MEM64) {
			/* The upper half: any 32-bit value, the window decides
			 * whether it decodes. */
			wr32(reg + 4, (uint32_t)(base >> 32));
			wr32(mask + 4, 0xffffffffu);
		}
		break;
	default:
		return -EINVAL;
	}
	dev->bars[bar] = (struct pci_bar){ .type = type, .size = size,
					   .ops = ops, .opaque = opaque,
					   .assigned = base };
	return 0;
}

int pci_cap_add(struct pci_device *dev, uint8_t cap_id, const void *body,
		size_t len, uint8_t *offset)
{
	unsigned off = dev->cap_end, prev;

	/* cap_end wraps to 0 once a capability ends at 0x100 */
	if (off < PCI_CAP_START || off + 2 + len > PCI_STD_CFG_END)
		return -ENOSPC;
	pthread_mutex_lock(&dev->lock);
	dev->cfg[off] = cap_id;
	dev->cfg[off + 1] = 0;
	if (len)
		memcpy(dev->cfg + off + 2, body, len);
	/* Append to the end of the list, so it reads in order of adding. */
	prev = dev->cfg[PCI_CAPABILITY_LIST];
	if (!prev) {
		dev->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	} else {
		while (dev->cfg[prev + 1])
			prev = dev->cfg[prev + 1];
		dev->cfg[prev + 1] = (uint8_t)off;
	}
	wr16(dev->cfg + PCI_STATUS,
	     rd16(dev->cfg + PCI_STATUS) | PCI_STATUS_CAP_LIST);
	dev->cap_end = (uint8_t)((off + 2 + len + 3) & ~3u);
	pthread_mutex_unlock(&dev->lock);
	if (offset)
		*offset = (uint8_t)off;
	return 0;
}

void pci_set_irq(struct pci_device *dev, bool level)
{
	uint16_t st;

	pthread_mutex_lock(&dev->lock);
	dev->intx_level = level;
	st = rd16(dev->cfg + PCI_STATUS) & ~PCI_STATUS_INTERRUPT;
	wr16(dev->cfg + PCI_STATUS, st | (level ? PCI_STATUS_INTERRUPT : 0));
	drive_intx(dev);
	pthread_mutex_unlock(&dev->lock);
}

/* ---- machine lifecycle ---- */

static void pci_reset(void *opaque)
{
	struct pci_bus *bus = opaque;

	pthread_mutex_lock(&bus->lock);
	bus->config_address = 0;
	for (int s = 0; s < bus->nr_devs; s++) {
		struct pci_device *dev = bus->devs[s];
		struct bar_move moves[PCI_NUM_BARS];
		int n;

		/* Power-on value of every guest-writable bit is 0, except
		 * the BAR addresses, which firmware (we) assigned. */
		pthread_mutex_lock(&dev->lock);
		for (int i = 0; i < PCI_CFG_SIZE; i++)
			dev->cfg[i] &= (uint8_t)~(dev->wmask[i] |
						  dev->w1cmask[i]);
		for (int i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &dev->bars[i];
			uint8_t *reg = dev->cfg + PCI_BASE_ADDRESS_0 + 4 * i;

			if (b->type == PCI_BAR_NONE)
				continue;
			wr32(reg, rd32(reg) | (uint32_t)b->assigned);
			if (b->type == PCI_BAR_MEM64)
				wr32(reg + 4, (uint32_t)(b->assigned >> 32));
		}
		dev->intx_level = false;
		wr16(dev->cfg + PCI_STATUS,
		     rd16(dev->cfg + PCI_STATUS) & ~PCI_STATUS_INTERRUPT);
		drive_intx(dev);
		n = update_bars(dev, moves);
		pthread_mutex_unlock(&dev->lock);
		if (dev->msix)
			msix_reset(dev);
		rebuild_map(bus);
		report_moves(dev, moves, n);
	}
	pthread_mutex_unlock(&bus->lock);
}

static void pci_save(void *opaque, struct state_buf *b)
{
	struct pci_bus *bus = opaque;

	pthread_mutex_lock(&bus->lock);
	state_put_u8(b, PCI_STATE_VERSION);
	state_put_u32(b, bus->config_address);
	state_put_u8(b, (uint8_t)bus->nr_devs);
	for (int s = 0; s < bus->nr_devs; s++) {
		struct pci_device *dev = bus->devs[s];

		pthread_mutex_lock(&dev->lock);
		state_put_bytes(b, dev->cfg, PCI_CFG_SIZE);
		state_put_u8(b, dev->intx_level);
		pthread_mutex_unlock(&dev->lock);
	}
	for (int s = 0; s < bus->nr_devs; s++)
		if (bus->devs[s]->msix)
			msix_save(bus->devs[s], b);
	pthread_mutex_unlock(&bus->lock);
}

/* Whether loaded configuration space `cfg` only differs from dev's in
 * guest-writable bits (STATUS.INTERRUPT is recomputed, so it may too). */
static bool cfg_compatible(const struct pci_device *dev, const uint8_t *cfg)
{
	for (int i = 0; i < PCI_CFG_SIZE; i++) {
		uint8_t fixed = (uint8_t)~(dev->wmask[i] | dev->w1cmask[i]);

		if (i == PCI_STATUS)
			fixed &= (uint8_t)~PCI_STATUS_INTERRUPT;
		if ((cfg[i] ^ dev->cfg[i]) & fixed)
			return false;
	}
	return true;
}

static int pci_load(void *opaque, struct state_reader *r)
{
	struct pci_bus *bus = opaque;
	uint8_t (*cfg)[PCI_CFG_SIZE];
	bool intx[PCI_SLOTS];
	uint32_t ca;
	int err = 0;

	if (state_get_u8(r) != PCI_STATE_VERSION)
		return -EINVAL;
	ca = state_get_u32(r);
	if (r->err || (ca & ~CONFIG_ADDRESS_MASK) ||
	    state_get_u8(r) != bus->nr_devs)
		return -EINVAL;
	cfg = malloc(sizeof(*cfg) * (size_t)bus->nr_devs);
	if (!cfg)
		return -ENOMEM;
	pthread_mutex_lock(&bus->lock);
	for (int s = 0; s < bus->nr_devs && !err; s++) {
		uint8_t v;

		state_get_bytes(r, cfg[s], PCI_CFG_SIZE);
		v = state_get_u8(r);
		intx[s] = v;
		pthread_mutex_lock(&bus->devs[s]->lock);
		if (r->err || v > 1 || !cfg_compatible(bus->devs[s], cfg[s]))
			err = -EINVAL;
		pthread_mutex_unlock(&bus->devs[s]->lock);
	}
	for (int s = 0; s < bus->nr_devs && !err; s++)
		if (bus->devs[s]->msix)
			err = msix_load(bus->devs[s], r);
	if (!err) {
		bus->config_address = ca;
		for (int s = 0; s < bus->nr_devs; s++) {
			struct pci_device *dev = bus->devs[s];
			struct bar_move moves[PCI_NUM_BARS];
			uint16_t st;
			int n;

			pthread_mutex_lock(&dev->lock);
			memcpy(dev->cfg, cfg[s], PCI_CFG_SIZE);
			dev->intx_level = intx[s];
			st = rd16(dev->cfg + PCI_STATUS) & ~PCI_STATUS_INTERRUPT;
			wr16(dev->cfg + PCI_STATUS,
			     st | (intx[s] ? PCI_STATUS_INTERRUPT : 0));
			drive_intx(dev);
			n = update_bars(dev, moves);
			pthread_mutex_unlock(&dev->lock);
			rebuild_map(bus);
			report_moves(dev, moves, n);
		}
	}
	pthread_mutex_unlock(&bus->lock);
	free(cfg);
	return err;
}

static void pci_destroy(void *opaque)
{
	struct pci_bus *bus = opaque;

	for (int s = 0; s < bus->nr_devs; s++) {
		msix_destroy(bus->devs[s]);
		pthread_mutex_destroy(&bus->devs[s]->lock);
		free(bus->devs[s]);
	}
	pthread_rwlock_destroy(&bus->map_lock);
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

static const struct vm_device_ops pci_device_ops_vm = {
	.name = "pci",
	.reset = pci_reset,
	.save = pci_save,
	.load = pci_load,
	.destroy = pci_destroy,
};

int pci_bus_create(struct vm *vm, struct pci_bus **out)
{
	static const struct pci_device_info host_bridge = {
		.vendor_id = HOST_BRIDGE_VENDOR,
		.device_id = HOST_BRIDGE_DEVICE,
		.subsystem_vendor_id = HOST_BRIDGE_VENDOR,
		.subsystem_id = 0x1100, /* QEMU's default subsystem ID */
		.class_code = HOST_BRIDGE_CLASS,
		.name = "host bridge",
	};
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	int r;

	if (!bus)
		return -ENOMEM;
	bus->vm = vm;
	bus->mmio_next = PC_PCI_MMIO_BASE;
	bus->io_next = PC_PCI_IO_BASE;
	pthread_mutex_init(&bus->lock, NULL);
	pthread_rwlock_init(&bus->map_lock, NULL);
	r = vm_add_device(vm, &pci_device_ops_vm, bus);
	if (r) {
		pci_destroy(bus);
		return r;
	}
	/* From here the machine owns the bus (freed by vm_destroy). */
	if ((r = pci_device_add(bus, &host_bridge, NULL, NULL, NULL)) ||
	    (r = reset_cf9_create_unclaimed(vm, &bus->cf9)) ||
	    (r = bus_register(&vm->pio, PC_PCI_CONFIG_PORT, 8, &cfg_port_ops,
			      bus, "pci-config")) ||
	    (r = bus_register(&vm->mmio, PC_PCI_ECAM_BASE, PC_PCI_ECAM_SIZE,
			      &ecam_ops, bus, "pci-ecam")) ||
	    (r = bus_register(&vm->mmio, PC_PCI_MMIO_BASE, PC_PCI_MMIO_SIZE,
			      &mmio_window_ops, bus, "pci-mmio")) ||
	    (r = bus_register(&vm->pio, PC_PCI_IO_BASE, PC_PCI_IO_SIZE,
			      &io_window_ops, bus, "pci-io")))
		return r;
	if (out)
		*out = bus;
	return 0;
}

/* ---- ACPI ---- */

void pci_acpi_mcfg(struct acpi_mcfg_alloc *alloc)
{
	*alloc = (struct acpi_mcfg_alloc){ .base = PC_PCI_ECAM_BASE,
					   .segment = 0, .start_bus = 0,
					   .end_bus = 0 };
}

/*
 * Scope(\_SB) {
 *   Device(PCI0) { _HID PNP0A08, _CID PNP0A03, _ADR/_UID/_SEG/_BBN 0,
 *     _CRS: bus 0, the configuration ports, I/O around them, the MMIO
 *     window; _PRT: Package{slot << 16 | 0xFFFF, pin, 0, GSI} }
 *   Device(PRES) { _HID PNP0C02, _CRS: the ECAM window }
 * }
 * The _PRT names GSIs directly (source 0), so the OS programs them as PCI
 * interrupts: level-triggered, active low (ACPI 6.5 section 6.2.13).
 * Linux uses ECAM only once it finds the MCFG region reserved, and the
 * PNP0C02 _CRS is where it looks (arch/x86/pci/mmconfig-shared.c).
 */
int pci_acpi_dsdt(struct aml_buf *b, void *opaque)
{
	(void)opaque; /* fixed layout: every slot is routed, used or not */
	aml_scope(b, "\\_SB");
	aml_device(b, "PCI0");
	aml_name_eisaid(b, "_HID", "PNP0A08");
	aml_name_eisaid(b, "_CID", "PNP0A03");
	aml_name_int(b, "_ADR", 0);
	aml_name_int(b, "_UID", 0);
	aml_name_int(b, "_SEG", 0);
	aml_name_int(b, "_BBN", 0);
	aml_name(b, "_CRS");
	aml_restemplate(b);
	aml_res_word_bus_number(b, 0, 0);
	aml_res_io(b, PC_PCI_CONFIG_PORT, PC_PCI_CONFIG_PORT, 1, 8);
	aml_res_dword_io(b, 0x0000, PC_PCI_CONFIG_PORT - 1);
	aml_res_dword_io(b, PC_PCI_CONFIG_PORT + 8, 0xffff);
	aml_res_dword_memory(b, AML_MEM_NON_CACHEABLE,
			     (uint32_t)PC_PCI_MMIO_BASE,
			     (uint32_t)(PC_PCI_MMIO_BASE + PC_PCI_MMIO_SIZE - 1));
	aml_end(b);
	aml_name(b, "_PRT");
	aml_package(b, PCI_SLOTS * 4);
	for (unsigned slot = 0; slot < PCI_SLOTS; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			aml_package(b, 4);
			aml_int(b, (uint64_t)slot << 16 | 0xffff);
			aml_int(b, pin);
			aml_int(b, 0);
			aml_int(b, PC_PCI_GSI_BASE + (slot + pin) % 8);
			aml_end(b);
		}
	}
	aml_end(b);
	aml_end(b); /* PCI0 */
	aml_device(b, "PRES");
	aml_name_eisaid(b, "_HID", "PNP0C02");
	aml_name_int(b, "_UID", 2); /* the board's MBRS is 1 */
	aml_name(b, "_CRS");
	aml_restemplate(b);
	aml_res_memory32_fixed(b, (uint32_t)PC_PCI_ECAM_BASE,
			       (uint32_t)PC_PCI_ECAM_SIZE, true);
	aml_end(b);
	aml_end(b); /* PRES */
	aml_end(b); /* \_SB */
	return b->err;
}
