/*
 * rng.h - virtio-rng: an entropy source for the guest (virtio 1.2 section
 * 5.4), fed from the host's getrandom().
 */
#ifndef KVMM_VIRTIO_RNG_H
#define KVMM_VIRTIO_RNG_H

struct vm;
struct evloop;
struct virtio_dev;

/* Create a virtio-rng device whose queue is served on `loop`'s thread.
 * The caller attaches a transport (virtio-pci or virtio-mmio), which then
 * owns the device and frees it with virtio_dev_destroy().  Returns 0 with
 * *out set, or -ENOMEM / the error of virtio_dev_init(). */
int virtio_rng_create(struct vm *vm, struct evloop *loop,
		      struct virtio_dev **out);

#endif
