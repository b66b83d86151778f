/*
 * blk.h - virtio-blk (virtio 1.2 section 5.2): a disk for the guest over
 * the block layer (block/block.h).
 *
 * The integrator creates the device with virtio_blk_create() and attaches a
 * transport (virtio-pci or virtio-mmio) to the returned virtio_dev;
 * virtio_dev_destroy() frees everything (it waits for the I/O in flight
 * and closes the image, which drops its locks).
 */
#ifndef KVMM_VIRTIO_BLK_H
#define KVMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct evloop;
struct virtio_dev;
struct block_dev;

/* Feature bits (5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types (5.2.6) */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

/* Status byte values */
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
/* VIRTIO_BLK_T_DISCARD / WRITE_ZEROES segment flags */
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

/* Device configuration layout (5.2.4), little-endian fields. */
struct virtio_blk_config {
	uint64_t capacity;                 /* 512-byte sectors */
	uint32_t size_max;                 /* bytes per segment */
	uint32_t seg_max;                  /* data segments per request */
	struct virtio_blk_geometry {
		uint16_t cylinders;
		uint8_t heads;
		uint8_t sectors;
	} geometry;
	uint32_t blk_size;                 /* logical block, bytes */
	struct virtio_blk_topology {
		uint8_t physical_block_exp;
		uint8_t alignment_offset;
		uint16_t min_io_size;
		uint32_t opt_io_size;
	} topology;
	uint8_t writeback;
	uint8_t unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors;
	uint32_t max_discard_seg;
	uint32_t discard_sector_alignment;
	uint32_t max_write_zeroes_sectors;
	uint32_t max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint8_t unused1[3];
	uint32_t max_secure_erase_sectors;
	uint32_t max_secure_erase_seg;
	uint32_t secure_erase_sector_alignment;
} __attribute__((packed));

/* The request header at the start of every request (5.2.6). */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

/* One range of a DISCARD / WRITE_ZEROES request (5.2.6). */
struct virtio_blk_discard_write_zeroes {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

enum virtio_blk_cache {
	VIRTIO_BLK_CACHE_WRITEBACK, /* page cache; flush = fdatasync */
	VIRTIO_BLK_CACHE_NONE,      /* O_DIRECT; flush = fdatasync */
};

/* What --disk path=FILE[,readonly=on][,serial=STR][,cache=...][,queues=N]
 * [,format=F][,snapshot=on] gives. */
struct virtio_blk_opts {
	const char *path;
	bool readonly;
	const char *serial;         /* up to 20 bytes, NULL for none */
	enum virtio_blk_cache cache;
	unsigned queues;            /* 1..VIRTIO_MAX_QUEUES (0 means 1) */
	const char *format;         /* "raw", "qcow2", NULL: probe */
	bool snapshot;              /* writes to a throw-away overlay */
	/* Tests: serve this block device instead of opening path (the device
	 * takes ownership, even on error).  NULL normally. */
	struct block_dev *bdev;
};

/* Open the image (block_open: locked, raw, O_DIRECT for cache=none) and
 * build the device, its queues served on `loop` (an I/O thread, never a
 * vCPU).  Returns 0 with *out set, or -errno with a one-line message in
 * err: the block layer's (-EAGAIN locked, -ENOENT, -EINVAL qcow2, ...), or
 * -EINVAL for a serial longer than 20 bytes or a bad queue count.  The
 * transport is not attached. */
int virtio_blk_create(struct vm *vm, struct evloop *loop,
		      const struct virtio_blk_opts *o, struct virtio_dev **out,
		      char *err, size_t errlen);

#endif
