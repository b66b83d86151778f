/*
 * qcow2.h - the qcow2 driver (qcow2.c), used by block_open() in block.c.
 * Not a public interface: devices go through block.h.
 */
#ifndef KVMM_BLOCK_QCOW2_H
#define KVMM_BLOCK_QCOW2_H

#include <stddef.h>

struct block_dev;

/* Attach the qcow2 driver to `bd` over the open image file `fd` (owned
 * from now on: closed by the driver's close, or here on error).
 * bd->readonly says how fd was opened; bd->name is the path, against
 * which a relative backing file name is resolved.  Sets bd->size to the
 * virtual disk size in bytes (the header's `size`), and forces
 * bd->readonly when the image is marked corrupt.  Backing files (raw or
 * qcow2, format taken from the image's backing format extension, never
 * probed) are opened read-only, the whole chain at once.
 * Returns 0, or -errno with a one-line message naming the file in err:
 * -EINVAL for an invalid header or a loop in the backing chain,
 * -ENOTSUP for features kvmm does not implement (named in the message),
 * -EROFS for a dirty image opened for writing, -EIO for read errors. */
int qcow2_open(struct block_dev *bd, int fd, char *err, size_t errlen);

#endif
