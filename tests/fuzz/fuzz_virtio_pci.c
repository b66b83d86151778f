/*
 * fuzz_virtio_pci.c - the virtio-pci transport (src/virtio/pci.c) with the
 * PCI bus, MSI-X and the virtio core behind it, against a hostile driver.
 *
 * The machine: a harness with 1 MiB of RAM, the PCI host bridge and, in
 * slot 1, a small virtio device ("echo": 2 queues of up to 8 entries, 8
 * bytes of configuration) that copies each chain's readable bytes into
 * its writable ones.  Memory decoding starts enabled so most inputs reach
 * the BARs at once; the input may turn it off, move BARs, break the rings.
 *
 * Input: a sequence of operations, one byte each (low nibble the kind,
 * high nibble `hi` a parameter), then operands (missing bytes read 0):
 *   0  common configuration write: offset u8 (& 0x3f), value u64; size
 *          1/2/4/8 from hi & 3
 *   1  common configuration read: offset u8; size as 0
 *   2  notify write: slot u8 (queue = slot, so 2.. are past the queues),
 *          size as 0
 *   3  ISR read (hi & 1: through the PCI_CFG window)
 *   4  device configuration: offset u8, value u32; hi & 4 write else
 *          read; size 1/2/4/8 from hi & 3
 *   5  configuration space write through ECAM: register u16 (& 0xfff),
 *          value u32; size 1/2/4 from hi & 3 (3: 1)
 *   6  configuration space read: register u16; size as 5
 *   7  RAM write: address u32 (mostly RAM, sometimes past it), length u8,
 *          bytes
 *   8  run the I/O thread (queue kicks)
 *   9  MSI-X BAR write: offset u16 (& 0x1fff), value u64; size as 0
 *   10 MSI-X BAR read: offset u16; size as 0
 *   11 save / load / save of the bus and the transport (must round trip)
 *   12 machine reset (vm_reset_devices)
 *   13 a well-behaved driver setup of queue 0 (status, features with
 *          EVENT_IDX if hi & 1 and INDIRECT_DESC if hi & 2, rings in RAM,
 *          enable, DRIVER_OK), so the fuzzer starts from a live device
 *   14 descriptor i (u8 % 8): address u32, length u32, flags u16, next
 *          u16; then make head (u8) available on queue 0
 *   15 device-side events by hi: configuration change, device broken,
 *          a used-buffer interrupt of queue u8
 * At the end the state must round trip again.
 */
#include <errno.h>
#include <string.h>

#include "core/state.h"
#include "fuzz.h"
#include "harness.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "util/log.h"
#include "virtio/pci.h"
#include "virtio/virtio.h"

#define RAM        (1u << 20)
#define SLOT       1
#define ECAM(reg)  (PC_PCI_ECAM_BASE + ((uint64_t)SLOT << 15) + (reg))
#define DESC_GPA   0x1000
#define AVAIL_GPA  0x2000
#define USED_GPA   0x3000

struct echo {
	struct virtio_dev vd;
	struct virtq_elem elem;
	uint8_t cfg[8];
};

struct fz {
	struct harness *h;
	struct pci_bus *bus;
	struct echo *e;
	struct virtio_pci *vp;
	uint64_t bar4, msix;
	uint8_t pci_cfg_cap;
};

static void echo_notify(struct virtio_dev *vd, unsigned q)
{
	struct echo *e = vd->opaque;
	uint8_t buf[512];

	while (virtq_pop(&vd->vqs[q], &e->elem) == 1) {
		size_t n = virtq_elem_read(&e->elem, 0, buf, sizeof(buf));

		virtq_push(&vd->vqs[q], &e->elem,
			   (uint32_t)virtq_elem_write(&e->elem, 0, buf, n));
	}
	virtio_queue_interrupt(vd, q);
}

static void echo_config_read(struct virtio_dev *vd, uint32_t off, void *buf,
			     uint32_t len)
{
	memcpy(buf, ((struct echo *)vd->opaque)->cfg + off, len);
}

static void echo_config_write(struct virtio_dev *vd, uint32_t off,
			      const void *buf, uint32_t len)
{
	memcpy(((struct echo *)vd->opaque)->cfg + off, buf, len);
}

static void echo_destroy(struct virtio_dev *vd)
{
	free(vd->opaque);
}

static const struct virtio_dev_ops echo_ops = {
	.name = "virtio-echo",
	.device_id = 30,
	.config_read = echo_config_read,
	.config_write = echo_config_write,
	.queue_notify = echo_notify,
	.destroy = echo_destroy,
};

static void must(int r, const char *what)
{
	if (r)
		fuzz_fail("cannot create the %s: %s", what, strerror(-r));
}

static void fz_init(struct fz *f)
{
	struct echo *e = calloc(1, sizeof(*e));

	log_max_level = LOG_ERROR;  /* drivers breaking rules are the point */
	memset(f, 0, sizeof(*f));
	if (!e)
		fuzz_fail("out of memory");
	f->h = harness_new(RAM);
	must(pci_bus_create(&f->h->vm, &f->bus), "PCI bus");
	must(virtio_dev_init(&e->vd, &f->h->vm, &f->h->loop, &echo_ops, e, 2,
			     8, 0, sizeof(e->cfg)), "virtio device");
	must(virtio_pci_create(f->bus, &e->vd, &f->vp), "virtio-pci");
	f->e = e;
	f->bar4 = hx_mmio_read(f->h, ECAM(0x20), 4) & ~0xfull;
	f->msix = hx_mmio_read(f->h, ECAM(0x14), 4) & ~0xfull;
	/* The PCI_CFG capability: the vendor capability of type 5. */
	for (unsigned p = (unsigned)hx_mmio_read(f->h, ECAM(PCI_CAPABILITY_LIST), 1);
	     p; p = (unsigned)hx_mmio_read(f->h, ECAM(p + 1), 1))
		if (hx_mmio_read(f->h, ECAM(p), 1) == PCI_CAP_ID_VNDR &&
		    hx_mmio_read(f->h, ECAM(p + 3), 1) == VIRTIO_PCI_CAP_PCI_CFG)
			f->pci_cfg_cap = (uint8_t)p;
	if (!f->pci_cfg_cap)
		fuzz_fail("no VIRTIO_PCI_CAP_PCI_CFG capability");
	hx_mmio_write(f->h, ECAM(PCI_COMMAND), 2,
		      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
}

static void roundtrip(struct fz *f, const char *name)
{
	struct state_buf s1 = { 0 }, s2 = { 0 };
	int r;

	if (hx_save(f->h, name, &s1))
		fuzz_fail("%s: save failed", name);
	r = hx_load(f->h, name, s1.data, s1.len);
	if (r)
		fuzz_fail("%s: rejects its own saved state (%zu bytes): %d",
			  name, s1.len, r);
	if (hx_save(f->h, name, &s2))
		fuzz_fail("%s: save failed", name);
	if (s1.len != s2.len || memcmp(s1.data, s2.data, s1.len))
		fuzz_fail("%s: state changed across save/load/save", name);
	state_buf_free(&s1);
	state_buf_free(&s2);
}

static void check_roundtrip(struct fz *f)
{
	roundtrip(f, "pci");
	roundtrip(f, "virtio-pci");
}

static unsigned mmio_size(unsigned hi)
{
	return 1u << (hi & 3);
}

static void cc_w(struct fz *f, unsigned off, unsigned size, uint64_t v)
{
	hx_mmio_write(f->h, f->bar4 + VIRTIO_PCI_COMMON_OFFSET + off, size, v);
}

/* 3.1.1, done right, for queue 0 of 8 entries. */
static void good_driver(struct fz *f, unsigned hi)
{
	uint32_t feat = (hi & 1 ? 1u << VIRTIO_F_EVENT_IDX : 0) |
			(hi & 2 ? 1u << VIRTIO_F_INDIRECT_DESC : 0);

	cc_w(f, 0x14, 1, 0);
	cc_w(f, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_w(f, 0x08, 4, 0);
	cc_w(f, 0x0c, 4, feat);
	cc_w(f, 0x08, 4, 1);
	cc_w(f, 0x0c, 4, 1);
	cc_w(f, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK);
	cc_w(f, 0x16, 2, 0);
	cc_w(f, 0x18, 2, 8);
	cc_w(f, 0x1a, 2, 0);
	cc_w(f, 0x20, 8, DESC_GPA);
	cc_w(f, 0x28, 8, AVAIL_GPA);
	cc_w(f, 0x30, 8, USED_GPA);
	cc_w(f, 0x1c, 2, 1);
	cc_w(f, 0x14, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void post(struct fz *f, struct fuzz_in *in)
{
	uint8_t i = fz_u8(in) % 8;
	struct virtq_desc d = { .addr = fz_u32(in), .len = fz_u32(in) };
	uint16_t idx, head;

	d.flags = fz_u16(in);
	d.next = fz_u16(in);
	head = fz_u8(in);
	gm_write(&f->h->vm.mem, DESC_GPA + 16 * i, &d, sizeof(d));
	if (gm_read(&f->h->vm.mem, AVAIL_GPA + 2, &idx, 2))
		return;
	gm_write(&f->h->vm.mem, AVAIL_GPA + 4 + 2 * (idx % 8), &head, 2);
	idx++;
	gm_write(&f->h->vm.mem, AVAIL_GPA + 2, &idx, 2);
}

static void event(struct fz *f, unsigned hi, struct fuzz_in *in)
{
	struct virtio_dev *vd = &f->e->vd;
	uint8_t q = fz_u8(in);

	pthread_mutex_lock(&vd->lock);
	switch (hi % 3) {
	case 0:
		virtio_config_changed(vd);
		break;
	case 1:
		virtio_dev_broken(vd, "fuzz");
		break;
	default:
		virtio_queue_interrupt(vd, q % 4);
		break;
	}
	pthread_mutex_unlock(&vd->lock);
}

static void run(struct fz *f, struct fuzz_in *in)
{
	struct harness *h = f->h;

	while (in->n) {
		uint8_t op = fz_u8(in);
		unsigned hi = op >> 4;

		switch (op & 15) {
		case 0: {
			uint8_t off = fz_u8(in) & 0x3f;

			cc_w(f, off, mmio_size(hi), fz_u64(in));
			break;
		}
		case 1:
			(void)hx_mmio_read(h, f->bar4 + (fz_u8(in) & 0x3f),
					   mmio_size(hi));
			break;
		case 2:
			hx_mmio_write(h, f->bar4 + VIRTIO_PCI_NOTIFY_OFFSET +
					 VIRTIO_PCI_NOTIFY_MULT * fz_u8(in),
				      mmio_size(hi), 0);
			break;
		case 3:
			if (hi & 1) {
				unsigned c = f->pci_cfg_cap;

				hx_mmio_write(h, ECAM(c + 4), 1, VIRTIO_PCI_BAR);
				hx_mmio_write(h, ECAM(c + 8), 4,
					      VIRTIO_PCI_ISR_OFFSET);
				hx_mmio_write(h, ECAM(c + 12), 4, 1);
				(void)hx_mmio_read(h, ECAM(c + 16), 1);
			} else {
				(void)hx_mmio_read(h, f->bar4 +
						   VIRTIO_PCI_ISR_OFFSET, 1);
			}
			break;
		case 4: {
			uint64_t a = f->bar4 + VIRTIO_PCI_DEVICE_OFFSET +
				     fz_u8(in);
			uint32_t v = fz_u32(in);

			if (hi & 4)
				hx_mmio_write(h, a, mmio_size(hi), v);
			else
				(void)hx_mmio_read(h, a, mmio_size(hi));
			break;
		}
		case 5: {
			static const unsigned s[4] = { 1, 2, 4, 1 };
			uint16_t reg = fz_u16(in) & 0xfff;

			hx_mmio_write(h, ECAM(reg & ~(s[hi & 3] - 1)), s[hi & 3],
				      fz_u32(in));
			break;
		}
		case 6: {
			static const unsigned s[4] = { 1, 2, 4, 1 };
			uint16_t reg = fz_u16(in) & 0xfff;

			(void)hx_mmio_read(h, ECAM(reg & ~(s[hi & 3] - 1)),
					   s[hi & 3]);
			break;
		}
		case 7: {
			uint32_t a = fz_u32(in) % (RAM + 0x100);
			const uint8_t *p;
			size_t n = fz_take(in, fz_u8(in), &p);

			gm_write(&h->vm.mem, a, p, n); /* past RAM: refused */
			break;
		}
		case 8:
			(void)hx_run_io(h, 0);
			break;
		case 9: {
			uint16_t off = fz_u16(in) & 0x1fff;

			hx_mmio_write(h, f->msix + off, mmio_size(hi), fz_u64(in));
			break;
		}
		case 10:
			(void)hx_mmio_read(h, f->msix + (fz_u16(in) & 0x1fff),
					   mmio_size(hi));
			break;
		case 11:
			check_roundtrip(f);
			break;
		case 12:
			vm_reset_devices(&h->vm);
			hx_mmio_write(h, ECAM(PCI_COMMAND), 2,
				      PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
			break;
		case 13:
			good_driver(f, hi);
			break;
		case 14:
			post(f, in);
			break;
		default:
			event(f, hi, in);
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fz f;

	fz_init(&f);
	run(&f, &in);
	(void)hx_run_io(f.h, 0);
	check_roundtrip(&f);
	harness_free(f.h);
	return 0;
}
