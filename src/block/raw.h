/*
 * raw.h - the raw-file driver (raw.c), used by block_open() in block.c.
 * Not a public interface: devices go through block.h.
 */
#ifndef KVMM_BLOCK_RAW_H
#define KVMM_BLOCK_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_dev;

/* Attach the raw driver to `bd` over the open file `fd` (which it owns from
 * now on, closed by the driver's close even on error): an io_uring ring
 * whose completion eventfd is watched on bd->loop.  bd->size, readonly and
 * logical_block are already set; `direct` says fd is O_DIRECT and
 * `mem_align` (bytes, a power of two) is the buffer alignment it needs.
 * Returns 0, or -errno with a message in err (io_uring refused, eventfd,
 * event loop full). */
int raw_open(struct block_dev *bd, int fd, bool direct, uint32_t mem_align,
	     char *err, size_t errlen);

#endif
