/*
 * fw_cfg.c - QEMU's firmware configuration device (see fw_cfg.h and QEMU's
 * docs/specs/fw_cfg.rst).
 *
 * Why fw_cfg: SeaBIOS and OVMF, built for QEMU, learn everything about the
 * machine through it (RAM size, CPU count, "etc/e820", the ACPI tables as
 * "etc/acpi/tables" with the table-loader script, boot order, the kernel and
 * initrd for -kernel style boots).  Speaking the same interface lets kvmm
 * boot the distribution's stock firmware unchanged.
 *
 * Items.  An item is a byte blob with a 16-bit key.  The board fills them
 * before the guest starts (fw_cfg_add_*), and they never change because of
 * the guest: all items are read-only to it (the DMA WRITE operation is
 * refused with the error bit, as QEMU does for read-only items; no writable
 * item exists yet).  Keys: generic items below FW_CFG_FILE_FIRST, x86
 * arch-local ones with bit 15 set, and files from FW_CFG_FILE_FIRST up,
 * numbered in the order they were added.  (QEMU sorts its file entries by
 * name; firmware looks names up in the directory and never relies on the
 * order, so insertion order keeps keys stable when a file is replaced.)
 * The file directory FW_CFG_FILE_DIR is rebuilt on every fw_cfg_add_file():
 * BE32 count, then per file { BE32 size, BE16 key, u16 reserved,
 * char name[56] }.
 *
 * Selector and data port.  A 16-bit write to 0x510 selects an item and
 * rewinds the data offset; bit 14 (the old write channel) is ignored, as
 * writes through the data port are (QEMU >= 2.4).  Each byte read of the
 * data port returns the next byte of the item, and 0 past its end or when
 * the key names no item.  QEMU decodes byte reads at either port of the
 * pair as data reads, so do we; other access sizes read 0 and write
 * nothing.
 *
 * DMA.  The guest writes the guest-physical address of an FWCfgDmaAccess
 * { BE32 control, BE32 length, BE64 address } to the DMA address register:
 * 32-bit writes, the most significant half at 0x514 first, the least
 * significant at 0x518, whose write runs the transfer synchronously on the
 * writing vCPU; the register is 0 again afterwards.  (An 8-byte write at
 * 0x514 also runs it, for buses that allow one.)  Register values arrive as
 * the little-endian value of the four port bytes, so each half is
 * byte-swapped into the big-endian address.
 *
 * Everything in the descriptor is hostile:
 *   - the 16-byte descriptor is copied out of guest RAM once with
 *     gm_read(); if it is not entirely RAM nothing happens at all (there is
 *     nowhere to report the error);
 *   - SELECT (upper 16 bits of control) selects like the selector port;
 *   - READ: the whole destination [address, address + length) must be RAM
 *     in one region (gm_ptr) or the operation fails with the error bit and
 *     no byte of guest memory is written; otherwise the item's bytes from
 *     the current offset are copied and the rest of the buffer (past the end
 *     of the item, or all of it for a missing item) is zero-filled, as QEMU
 *     does;
 *   - SKIP advances the offset, clamped to the item's end;
 *   - WRITE with a non-zero length sets the error bit;
 *   - no operation bit: nothing but the optional select;
 *   - the control word is written back as 0 (done) or FW_CFG_DMA_CTL_ERROR.
 * The work per transfer is bounded by the length the guest gave, which the
 * RAM check bounds by the guest's own RAM size.  All guest RAM accesses go
 * through gm_read()/gm_write(), so a future "RAM changed" hook (for the
 * software CPU's code cache) sees them.
 *
 * State and locking.  Items, the current key and offset and the DMA
 * register live under one mutex; port accesses and fw_cfg_add_*() take it.
 * Item contents are not saved: they are machine configuration, rebuilt by
 * the board on the destination.  Saved: selected key, data offset (checked
 * against the destination's item on load), DMA address register.
 */
#include "hw/fw_cfg.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pc.h"

#define FW_CFG_NR_PORTS     2
#define FW_CFG_DMA_NR_PORTS 8
#define FW_CFG_FILE_ENTRY   64 /* bytes per directory entry */
#define FW_CFG_STATE_VERSION 1

struct fw_cfg_item {
	uint16_t key;
	uint32_t len;
	uint8_t *data;
	char name[FW_CFG_MAX_FILE_PATH]; /* files only, else "" */
};

struct fw_cfg {
	struct vm *vm;
	pthread_mutex_t lock;

	struct fw_cfg_item *items;
	int nr_items, cap_items;
	int nr_files;

	/* Guest-visible state */
	uint16_t cur_key;  /* as last selected */
	int cur;           /* index into items, or -1 */
	uint32_t offset;   /* data offset in the current item, <= its len */
	uint64_t dma_addr; /* DMA address register */
};

static const uint8_t zeros[4096];

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* The item stored for a guest key (write-channel bit ignored), or -1. */
static int find_item(const struct fw_cfg *fw, uint16_t key)
{
	key &= (uint16_t)~FW_CFG_WRITE_CHANNEL;
	for (int i = 0; i < fw->nr_items; i++)
		if (fw->items[i].key == key)
			return i;
	return -1;
}

static void select_locked(struct fw_cfg *fw, uint16_t key)
{
	fw->cur_key = key;
	fw->cur = find_item(fw, key);
	fw->offset = 0;
}

static uint8_t read_data_locked(struct fw_cfg *fw)
{
	const struct fw_cfg_item *it;

	if (fw->cur < 0)
		return 0;
	it = &fw->items[fw->cur];
	if (fw->offset >= it->len)
		return 0;
	return it->data[fw->offset++];
}

/* Item storage; lock held (or device not yet visible). */
static int set_item_locked(struct fw_cfg *fw, uint16_t key, const char *name,
			   const void *data, size_t len)
{
	uint8_t *copy = NULL;
	int i = find_item(fw, key);

	if (len > UINT32_MAX)
		return -EINVAL;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, data, len);
	}
	if (i < 0) {
		if (fw->nr_items == fw->cap_items) {
			int cap = fw->cap_items ? fw->cap_items * 2 : 32;
			struct fw_cfg_item *n =
				realloc(fw->items, (size_t)cap * sizeof(*n));
			if (!n) {
				free(copy);
				return -ENOMEM;
			}
			fw->items = n;
			fw->cap_items = cap;
		}
		i = fw->nr_items++;
		memset(&fw->items[i], 0, sizeof(fw->items[i]));
		fw->items[i].key = key;
		if (name)
			strcpy(fw->items[i].name, name); /* length checked */
	}
	free(fw->items[i].data);
	fw->items[i].data = copy;
	fw->items[i].len = (uint32_t)len;
	/* A guest reading this item now reads the new contents; keep its
	 * offset inside them. */
	if (fw->cur == i && fw->offset > fw->items[i].len)
		fw->offset = fw->items[i].len;
	return 0;
}

/* Rebuild FW_CFG_FILE_DIR from the file items; lock held. */
static int rebuild_dir_locked(struct fw_cfg *fw)
{
	size_t len = 4 + (size_t)fw->nr_files * FW_CFG_FILE_ENTRY;
	uint8_t *dir = calloc(1, len), *e;
	int r;

	if (!dir)
		return -ENOMEM;
	put_be32(dir, (uint32_t)fw->nr_files);
	e = dir + 4;
	for (int i = 0; i < fw->nr_items; i++) {
		const struct fw_cfg_item *it = &fw->items[i];
		if (!it->name[0])
			continue;
		put_be32(e, it->len);
		put_be16(e + 4, it->key);
		memcpy(e + 8, it->name, strlen(it->name)); /* rest stays 0 */
		e += FW_CFG_FILE_ENTRY;
	}
	r = set_item_locked(fw, FW_CFG_FILE_DIR, NULL, dir, len);
	free(dir);
	return r;
}

int fw_cfg_add_bytes(struct fw_cfg *fw, uint16_t key, const void *data,
		     size_t len)
{
	uint16_t n = key & (uint16_t)~FW_CFG_ARCH_LOCAL;
	int r;

	if ((key & FW_CFG_WRITE_CHANNEL) || n >= FW_CFG_FILE_FIRST ||
	    key == FW_CFG_FILE_DIR || (len && !data))
		return -EINVAL;
	pthread_mutex_lock(&fw->lock);
	r = set_item_locked(fw, key, NULL, data, len);
	pthread_mutex_unlock(&fw->lock);
	return r;
}

int fw_cfg_add_u16(struct fw_cfg *fw, uint16_t key, uint16_t v)
{
	uint8_t le[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
	return fw_cfg_add_bytes(fw, key, le, sizeof(le));
}

int fw_cfg_add_u32(struct fw_cfg *fw, uint16_t key, uint32_t v)
{
	uint8_t le[4];
	for (int i = 0; i < 4; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return fw_cfg_add_bytes(fw, key, le, sizeof(le));
}

int fw_cfg_add_u64(struct fw_cfg *fw, uint16_t key, uint64_t v)
{
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	return fw_cfg_add_bytes(fw, key, le, sizeof(le));
}

int fw_cfg_add_file(struct fw_cfg *fw, const char *name, const void *data,
		    size_t len)
{
	size_t nlen = name ? strlen(name) : 0;
	int r = 0, i;

	if (!nlen || len > UINT32_MAX || (len && !data))
		return -EINVAL;
	if (nlen >= FW_CFG_MAX_FILE_PATH)
		return -ENAMETOOLONG;
	pthread_mutex_lock(&fw->lock);
	for (i = 0; i < fw->nr_items; i++)
		if (!strcmp(fw->items[i].name, name))
			break;
	if (i < fw->nr_items) {
		r = set_item_locked(fw, fw->items[i].key, NULL, data, len);
	} else if (fw->nr_files >= FW_CFG_MAX_FILES) {
		r = -ENOSPC;
	} else {
		r = set_item_locked(fw, (uint16_t)(FW_CFG_FILE_FIRST +
						   fw->nr_files),
				    name, data, len);
		if (!r)
			fw->nr_files++;
	}
	if (!r)
		r = rebuild_dir_locked(fw);
	pthread_mutex_unlock(&fw->lock);
	return r;
}

/* Selector / data ports */

static uint64_t fw_cfg_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct fw_cfg *fw = opaque;
	uint8_t v;

	if (size != 1)
		return 0;
	pthread_mutex_lock(&fw->lock);
	v = read_data_locked(fw);
	pthread_mutex_unlock(&fw->lock);
	return v;
}

static void fw_cfg_io_write(void *opaque, uint64_t offset, unsigned size,
			    uint64_t value)
{
	struct fw_cfg *fw = opaque;

	/* Only the 16-bit selector write does anything; data port writes
	 * are ignored (QEMU >= 2.4). */
	if (size != 2 || offset != 0)
		return;
	pthread_mutex_lock(&fw->lock);
	select_locked(fw, (uint16_t)value);
	pthread_mutex_unlock(&fw->lock);
}

static const struct bus_ops fw_cfg_bus_ops = {
	.read = fw_cfg_io_read,
	.write = fw_cfg_io_write,
};

/* DMA */

/* Copy len bytes of zeros to guest RAM at gpa (already checked). */
static void zero_fill(struct fw_cfg *fw, uint64_t gpa, uint64_t len)
{
	while (len) {
		size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		gm_write(&fw->vm->mem, gpa, zeros, n);
		gpa += n;
		len -= n;
	}
}

/* Run the transfer described at guest-physical `desc`; lock held. */
static void dma_run_locked(struct fw_cfg *fw, uint64_t desc)
{
	struct guest_mem *mem = &fw->vm->mem;
	uint8_t raw[16], out[4];
	uint32_t control, length;
	uint64_t address;
	bool error = false;

	if (gm_read(mem, desc, raw, sizeof(raw)))
		return; /* no descriptor, nowhere to report: ignore */
	control = get_be32(raw);
	length = get_be32(raw + 4);
	address = get_be64(raw + 8);

	if (control & FW_CFG_DMA_CTL_SELECT)
		select_locked(fw, (uint16_t)(control >> 16));

	if (control & FW_CFG_DMA_CTL_READ) {
		const struct fw_cfg_item *it =
			fw->cur >= 0 ? &fw->items[fw->cur] : NULL;
		uint32_t avail = it ? it->len - fw->offset : 0;
		uint32_t n = length < avail ? length : avail;

		if (!gm_ptr(mem, address, length)) {
			error = true;
		} else {
			if (n) {
				gm_write(mem, address, it->data + fw->offset, n);
				fw->offset += n;
			}
			zero_fill(fw, address + n, length - n);
		}
	} else if (control & FW_CFG_DMA_CTL_WRITE) {
		/* Every item is read-only to the guest. */
		if (length)
			error = true;
	} else if (control & FW_CFG_DMA_CTL_SKIP) {
		if (fw->cur >= 0) {
			uint32_t avail = fw->items[fw->cur].len - fw->offset;
			fw->offset += length < avail ? length : avail;
		}
	}

	put_be32(out, error ? FW_CFG_DMA_CTL_ERROR : 0);
	gm_write(mem, desc, out, sizeof(out)); /* RAM: checked by gm_read */
}

static uint64_t fw_cfg_dma_read(void *opaque, uint64_t offset, unsigned size)
{
	uint64_t v = 0;

	/* The signature's bytes in address order: "QEMU CFG". */
	for (unsigned i = 0; i < size && offset + i < FW_CFG_DMA_NR_PORTS; i++)
		v |= ((FW_CFG_DMA_SIGNATURE >> (8 * (7 - (offset + i)))) &
		      0xff) << (8 * i);
	return v;
}

static void fw_cfg_dma_write(void *opaque, uint64_t offset, unsigned size,
			     uint64_t value)
{
	struct fw_cfg *fw = opaque;

	pthread_mutex_lock(&fw->lock);
	if (size == 4 && offset == 0) {
		fw->dma_addr = (uint64_t)__builtin_bswap32((uint32_t)value) << 32;
	} else if (size == 4 && offset == 4) {
		uint64_t desc = fw->dma_addr |
				__builtin_bswap32((uint32_t)value);
		fw->dma_addr = 0;
		dma_run_locked(fw, desc);
	} else if (size == 8 && offset == 0) {
		fw->dma_addr = 0;
		dma_run_locked(fw, __builtin_bswap64(value));
	}
	/* Other widths and offsets are not valid accesses: ignored. */
	pthread_mutex_unlock(&fw->lock);
}

static const struct bus_ops fw_cfg_dma_bus_ops = {
	.read = fw_cfg_dma_read,
	.write = fw_cfg_dma_write,
};

/* vm_device ops */

static void fw_cfg_reset(void *opaque)
{
	struct fw_cfg *fw = opaque;

	pthread_mutex_lock(&fw->lock);
	select_locked(fw, FW_CFG_SIGNATURE);
	fw->dma_addr = 0;
	pthread_mutex_unlock(&fw->lock);
}

static void fw_cfg_save(void *opaque, struct state_buf *b)
{
	struct fw_cfg *fw = opaque;

	pthread_mutex_lock(&fw->lock);
	state_put_u8(b, FW_CFG_STATE_VERSION);
	state_put_u16(b, fw->cur_key);
	state_put_u32(b, fw->offset);
	state_put_u64(b, fw->dma_addr);
	pthread_mutex_unlock(&fw->lock);
}

static int fw_cfg_load(void *opaque, struct state_reader *r)
{
	struct fw_cfg *fw = opaque;
	uint8_t version = state_get_u8(r);
	uint16_t key = state_get_u16(r);
	uint32_t offset = state_get_u32(r);
	uint64_t dma_addr = state_get_u64(r);
	int cur, ret = 0;

	if (r->err || version != FW_CFG_STATE_VERSION)
		return -EINVAL;
	/* The DMA register only ever holds a high half between the two
	 * writes of a transfer. */
	if (dma_addr & 0xffffffffull)
		return -EINVAL;
	pthread_mutex_lock(&fw->lock);
	cur = find_item(fw, key);
	if (offset > (cur >= 0 ? fw->items[cur].len : 0)) {
		ret = -EINVAL;
	} else {
		fw->cur_key = key;
		fw->cur = cur;
		fw->offset = offset;
		fw->dma_addr = dma_addr;
	}
	pthread_mutex_unlock(&fw->lock);
	return ret;
}

static void fw_cfg_destroy(void *opaque)
{
	struct fw_cfg *fw = opaque;

	for (int i = 0; i < fw->nr_items; i++)
		free(fw->items[i].data);
	free(fw->items);
	pthread_mutex_destroy(&fw->lock);
	free(fw);
}

static const struct vm_device_ops fw_cfg_device_ops = {
	.name = "fw_cfg",
	.reset = fw_cfg_reset,
	.save = fw_cfg_save,
	.load = fw_cfg_load,
	.destroy = fw_cfg_destroy,
};

int fw_cfg_create(struct vm *vm, struct fw_cfg **out)
{
	struct fw_cfg *fw = calloc(1, sizeof(*fw));
	uint16_t cpus;
	int r;

	if (!fw)
		return -ENOMEM;
	fw->vm = vm;
	fw->cur = -1;
	pthread_mutex_init(&fw->lock, NULL);
	cpus = vm->nr_cpus > 0 && vm->nr_cpus <= UINT16_MAX ?
		       (uint16_t)vm->nr_cpus : 1;
	r = fw_cfg_add_bytes(fw, FW_CFG_SIGNATURE, "QEMU", 4);
	if (!r)
		r = fw_cfg_add_u32(fw, FW_CFG_ID,
				   FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	if (!r)
		r = fw_cfg_add_u64(fw, FW_CFG_RAM_SIZE, vm->mem.ram_size);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_NB_CPUS, cpus);
	if (!r)
		r = fw_cfg_add_u16(fw, FW_CFG_MAX_CPUS, cpus);
	if (!r) {
		pthread_mutex_lock(&fw->lock);
		r = rebuild_dir_locked(fw);
		select_locked(fw, FW_CFG_SIGNATURE);
		pthread_mutex_unlock(&fw->lock);
	}
	if (r) {
		fw_cfg_destroy(fw);
		return r;
	}
	r = vm_add_device(vm, &fw_cfg_device_ops, fw);
	if (r) {
		fw_cfg_destroy(fw);
		return r;
	}
	r = bus_register(&vm->pio, PC_FW_CFG_PORT, FW_CFG_NR_PORTS,
			 &fw_cfg_bus_ops, fw, "fw_cfg");
	if (!r)
		r = bus_register(&vm->pio, PC_FW_CFG_DMA_PORT,
				 FW_CFG_DMA_NR_PORTS, &fw_cfg_dma_bus_ops, fw,
				 "fw_cfg_dma");
	if (r)
		return r;
	if (out)
		*out = fw;
	return 0;
}
