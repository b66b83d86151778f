/*
 * run_devices.c - the virtio devices of `kvmm run` (run_devices.h).
 *
 * --disk takes comma-separated key=value pairs like cloud-hypervisor's; the
 * value of serial= may not contain a comma (QEMU's doubled-comma escape is
 * not worth its surprises for a 20-byte ID).  Each disk keeps its own copy
 * of the spec, cut into NUL-terminated fields, so that the run options can
 * point into it for the life of the process.
 */
#include "cli/run_devices.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/pci.h"
#include "virtio/rng.h"
#include "virtio/virtio.h"

int run_parse_transport(const char *opt, const char *s, enum run_transport *t)
{
	if (!strcmp(s, "pci"))
		*t = RUN_TRANSPORT_PCI;
	else if (!strcmp(s, "mmio"))
		*t = RUN_TRANSPORT_MMIO;
	else {
		log_error("%s: transport '%s' must be pci or mmio", opt, s);
		return 1;
	}
	return 0;
}

static int parse_on_off(const char *spec, const char *key, const char *v,
			bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "0"))
		*out = false;
	else {
		log_error("--disk %s: %s=%s must be on or off", spec, key, v);
		return 1;
	}
	return 0;
}

/* One key=value of a --disk spec into *dk.  Returns 0 or 1 after a message. */
static int parse_disk_field(const char *spec, struct run_disk *dk, char *kv,
			    bool first)
{
	char *v = strchr(kv, '='), *end;
	unsigned long n;

	if (!v) {
		if (first && *kv) {
			dk->path = kv;
			return 0;
		}
		log_error("--disk %s: '%s' is not key=value", spec, kv);
		return 1;
	}
	*v++ = '\0';
	if (!strcmp(kv, "path") || !strcmp(kv, "file")) {
		if (!*v) {
			log_error("--disk %s: empty path", spec);
			return 1;
		}
		dk->path = v;
	} else if (!strcmp(kv, "readonly")) {
		return parse_on_off(spec, kv, v, &dk->readonly);
	} else if (!strcmp(kv, "snapshot")) {
		return parse_on_off(spec, kv, v, &dk->snapshot);
	} else if (!strcmp(kv, "serial")) {
		if (strlen(v) > RUN_SERIAL_MAX) {
			log_error("--disk %s: serial '%s' is longer than %d bytes",
				  spec, v, RUN_SERIAL_MAX);
			return 1;
		}
		dk->serial = v;
	} else if (!strcmp(kv, "cache")) {
		if (!strcmp(v, "none"))
			dk->direct = true;
		else if (!strcmp(v, "writeback"))
			dk->direct = false;
		else {
			log_error("--disk %s: cache=%s must be none or writeback", spec, v);
			return 1;
		}
	} else if (!strcmp(kv, "queues")) {
		errno = 0;
		n = strtoul(v, &end, 10);
		if (errno || *end || end == v || n < 1 || n > 64) {
			log_error("--disk %s: queues=%s must be a number from 1 to 64", spec, v);
			return 1;
		}
		dk->queues = (unsigned)n;
	} else if (!strcmp(kv, "format")) {
		if (strcmp(v, "raw") && strcmp(v, "qcow2")) {
			log_error("--disk %s: format=%s is not supported (raw or qcow2)", spec, v);
			return 1;
		}
		dk->format = v;
	} else if (!strcmp(kv, "transport")) {
		return run_parse_transport("--disk", v, &dk->transport);
	} else {
		log_error("--disk %s: unknown key '%s' (path, readonly, serial, cache, "
			  "queues, format, snapshot, transport)", spec, kv);
		return 1;
	}
	return 0;
}

int run_parse_disk(struct run_devices *d, const char *spec)
{
	struct run_disk *dk;
	char *save = NULL, *tok;
	bool first = true;

	if (d->nr_disks == RUN_MAX_DISKS) {
		log_error("--disk %s: at most %d disks", spec, RUN_MAX_DISKS);
		return 1;
	}
	dk = &d->disks[d->nr_disks];
	*dk = (struct run_disk){ .queues = 1 };
	dk->spec = strdup(spec);
	if (!dk->spec) {
		log_error("--disk: out of memory");
		return 1;
	}
	for (tok = strtok_r(dk->spec, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save), first = false)
		if (parse_disk_field(spec, dk, tok, first))
			goto bad;
	if (!dk->path) {
		log_error("--disk %s: no path=FILE", spec);
		goto bad;
	}
	d->nr_disks++;
	return 0;
bad:
	free(dk->spec);
	dk->spec = NULL;
	return 1;
}

/* Attach `vd` to its transport; on failure it is freed here. */
static int attach(const struct run_devices *d, enum run_transport t,
		  struct vm *vm, struct pci_bus *pci, struct virtio_dev *vd,
		  const char *what, struct run_virtio *out)
{
	int r;

	if (t == RUN_TRANSPORT_DEFAULT)
		t = d->transport == RUN_TRANSPORT_MMIO ? RUN_TRANSPORT_MMIO
						       : RUN_TRANSPORT_PCI;
	if (t == RUN_TRANSPORT_PCI) {
		r = virtio_pci_create(pci, vd, NULL);
	} else if (out->nr_mmio == VIRTIO_MMIO_MAX_DEVICES) {
		r = -ENOSPC;
	} else {
		r = virtio_mmio_create(vm, vd, out->nr_mmio,
				       &out->mmio[out->nr_mmio]);
		if (!r)
			out->nr_mmio++;
	}
	if (r) {
		log_error("%s: no room on the virtio-%s transport: %s", what,
			  t == RUN_TRANSPORT_PCI ? "pci" : "mmio", strerror(-r));
		virtio_dev_destroy(vd);
	}
	return r;
}

int run_devices_create(const struct run_devices *d, struct vm *vm,
		       struct evloop *loop, struct pci_bus *pci,
		       struct chardev *console, struct run_virtio *out)
{
	struct virtio_dev *vd;
	char err[512];
	int r;

	out->nr_mmio = 0;
	for (int i = 0; i < d->nr_disks; i++) {
		const struct run_disk *dk = &d->disks[i];
		struct virtio_blk_opts bo = {
			.path = dk->path,
			.readonly = dk->readonly,
			.serial = dk->serial,
			.cache = dk->direct ? VIRTIO_BLK_CACHE_NONE
					    : VIRTIO_BLK_CACHE_WRITEBACK,
			.queues = dk->queues,
			.format = dk->format,
			.snapshot = dk->snapshot,
		};

		err[0] = '\0';
		r = virtio_blk_create(vm, loop, &bo, &vd, err, sizeof(err));
		if (r) {
			log_error("--disk %s", err[0] ? err : strerror(-r));
			return r;
		}
		if ((r = attach(d, dk->transport, vm, pci, vd, dk->path, out)))
			return r;
	}
	if (d->virtio_console) {
		r = virtio_console_create(vm, loop, console, &vd);
		if (r) {
			log_error("cannot create the virtio-console: %s", strerror(-r));
			return r;
		}
		if ((r = attach(d, RUN_TRANSPORT_DEFAULT, vm, pci, vd,
				"virtio-console", out)))
			return r;
	}
	if (d->rng) {
		r = virtio_rng_create(vm, loop, &vd);
		if (r) {
			log_error("cannot create the virtio-rng: %s", strerror(-r));
			return r;
		}
		if ((r = attach(d, d->rng_transport, vm, pci, vd, "virtio-rng",
				out)))
			return r;
	}
	return 0;
}

void run_devices_free(struct run_devices *d)
{
	for (int i = 0; i < d->nr_disks; i++)
		free(d->disks[i].spec);
	d->nr_disks = 0;
}
