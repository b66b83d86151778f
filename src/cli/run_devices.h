/*
 * run_devices.h - the virtio devices of `kvmm run`: parsing --disk, --rng
 * and --console virtio, and putting the devices on the machine with the
 * transport each one asked for.
 */
#ifndef KVMM_CLI_RUN_DEVICES_H
#define KVMM_CLI_RUN_DEVICES_H

#include <stdbool.h>

enum run_transport {
	RUN_TRANSPORT_DEFAULT = 0, /* the machine's (--transport) */
	RUN_TRANSPORT_PCI,         /* modern virtio-pci, virtio 1.2 section 4.1 */
	RUN_TRANSPORT_MMIO,        /* virtio-mmio, section 4.2, found through ACPI */
};

#define RUN_MAX_DISKS 24
#define RUN_SERIAL_MAX 20          /* VIRTIO_BLK_ID_BYTES */

struct run_disk {
	char *spec;                /* our copy of the --disk value, cut up */
	const char *path;
	const char *serial;        /* NULL: none */
	const char *format;        /* NULL: probe */
	bool readonly;
	bool direct;               /* cache=none */
	bool snapshot;             /* snapshot=on: a throw-away overlay */
	unsigned queues;           /* 1.. */
	enum run_transport transport;
};

struct run_devices {
	struct run_disk disks[RUN_MAX_DISKS];
	int nr_disks;
	bool rng;
	enum run_transport rng_transport;
	bool virtio_console;       /* --console virtio */
	enum run_transport transport; /* machine default: PCI */
};

/* Parse one --disk value, "path=FILE[,readonly=on][,serial=STR]
 * [,cache=none|writeback][,queues=N][,format=raw|qcow2][,snapshot=on]
 * [,transport=pci|mmio]" (a bare FILE first is taken as path=FILE), into the next disk.  Returns
 * 0, or 1 after printing one line naming the problem. */
int run_parse_disk(struct run_devices *d, const char *spec);

/* Parse "pci" or "mmio" for `opt` (the flag name, for the message).
 * Returns 0, or 1 after printing one line. */
int run_parse_transport(const char *opt, const char *s, enum run_transport *t);

struct vm;
struct evloop;
struct chardev;
struct pci_bus;
struct virtio_mmio;

/* What run_devices_create() put on the machine that ACPI must describe. */
struct run_virtio {
	struct virtio_mmio *mmio[32];  /* VIRTIO_MMIO_MAX_DEVICES */
	unsigned nr_mmio;
};

/* Create the devices `d` asks for on `vm`, in command-line order (disks,
 * then the console, then the rng), each on its transport: a PCI slot on
 * `pci`, or the next virtio-mmio slot.  Queues are served on `loop`.  The
 * virtio-console takes `console`.  The machine owns the devices once
 * created (vm_destroy frees them).  Returns 0, or -errno after printing one
 * line naming the device and the problem. */
int run_devices_create(const struct run_devices *d, struct vm *vm,
		       struct evloop *loop, struct pci_bus *pci,
		       struct chardev *console, struct run_virtio *out);

/* Free what parsing allocated. */
void run_devices_free(struct run_devices *d);

#endif
