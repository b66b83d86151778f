/*
 * console.h - virtio-console: a fast paravirtual console (virtio 1.2
 * section 5.3); the guest sees /dev/hvc0.
 */
#ifndef KVMM_VIRTIO_CONSOLE_H
#define KVMM_VIRTIO_CONSOLE_H

struct vm;
struct evloop;
struct chardev;
struct virtio_dev;

/* Create a virtio-console with one port connected to `cd` (guest output
 * goes to it, its input to the guest), served on `loop`'s thread.  `cd` is
 * the caller's and must outlive the device.  The caller attaches a
 * transport, which then owns the device (virtio_dev_destroy frees it and
 * detaches it from cd).  Returns 0 with *out set, -ENOMEM or the error of
 * virtio_dev_init(). */
int virtio_console_create(struct vm *vm, struct evloop *loop,
			  struct chardev *cd, struct virtio_dev **out);

#endif
