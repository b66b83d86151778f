/*
 * fuzz_virtqueue.c - split virtqueue parsing (src/virtio/virtqueue.c)
 * against rings and descriptors laid out by the fuzzer.
 *
 * Guest RAM is two small regions around a "hole", built by hand so every
 * run starts from zeroed memory without mapping gigabytes:
 *   LOW  [0xBFFE0000, 0xC0000000)  128 KiB ending where the MMIO hole starts
 *   HIGH [0x100000000, +64 KiB)     high RAM
 * so buffers can end exactly at RAM's edge, straddle the hole, land in it
 * or past the end.
 *
 * Input:
 *   u8  config: bits 0-2 log2 of the queue size (1..128), bit 3 EVENT_IDX,
 *       bit 4 INDIRECT_DESC
 *   3 x address (below): descriptor table, available ring, used ring
 *   then up to 512 operations, each an opcode byte (mod 11) and operands:
 *     0 write bytes      addr, u8 n, n bytes
 *     1 descriptor       u8 where (0: the queue's table, else an addr),
 *                        u16 index, addr, u32 len, u16 flags, u16 next
 *     2 offer            u16 head, u8 step (avail idx += step; a jump)
 *     3 pop + push       u32 written (bytes the "device" claims to write)
 *     4 pop, read the readable bytes, unpop
 *     5 should_notify
 *     6 notify disable, 7 notify enable
 *     8 re-enable (what a device reset + driver setup does)
 *     9 flags / events   u8 which, u16 value (avail flags, used_event)
 *    10 pop and hold     the chain stays in flight (up to 8 held; the
 *                        oldest is pushed to make room), as a device with
 *                        slow requests does
 *   address: u8 sel (mod 4): 0 LOW + u16, 1 HIGH + u16, 2 hole start -
 *            u16 (near the edge), 3 a raw u64
 * Checks beyond the sanitizers: every popped segment is inside RAM and is
 * exactly what gm_ptr() gives for its address; counts and totals add up;
 * no more than `size` segments; a refused chain breaks the queue for good;
 * every gm_note_write() range is RAM and the buffer bytes reported equal
 * min(written, writable bytes); never more than `size` chains in flight;
 * save -> load -> save is byte-identical, also with chains in flight.
 */
#include <errno.h>
#include <string.h>

#include "core/memory.h"
#include "core/state.h"
#include "fuzz.h"
#include "virtio/virtqueue.h"

#define LOW_GPA  (GM_HOLE_START - 0x20000)
#define LOW_SIZE 0x20000u
#define HIGH_GPA GM_HIGH_START
#define HIGH_SIZE 0x10000u
#define MAX_OPS 512

static uint8_t low_ram[LOW_SIZE] __attribute__((aligned(4096)));
static uint8_t high_ram[HIGH_SIZE] __attribute__((aligned(4096)));
static struct virtq_elem elem;
#define MAX_HELD 8
static struct virtq_elem held[MAX_HELD];
static uint64_t noted; /* bytes reported through gm_note_write */

static void note_write(void *opaque, uint64_t gpa, uint64_t len)
{
	struct guest_mem *gm = opaque;

	if (!gm_ptr(gm, gpa, len))
		fuzz_fail("gm_note_write(%#llx, %llu) is not RAM",
			  (unsigned long long)gpa, (unsigned long long)len);
	noted += len;
}

static uint64_t fz_addr(struct fuzz_in *in)
{
	switch (fz_u8(in) & 3) {
	case 0:
		return LOW_GPA + fz_u16(in);
	case 1:
		return HIGH_GPA + fz_u16(in);
	case 2:
		return GM_HOLE_START - fz_u16(in);
	default:
		return fz_u64(in);
	}
}

static void check_elem(const struct virtq *vq, struct guest_mem *gm)
{
	uint64_t out = 0, in = 0;
	unsigned n = elem.out_num + elem.in_num;

	if (n > vq->size)
		fuzz_fail("%u segments in a queue of %u", n, vq->size);
	if (elem.head >= vq->size)
		fuzz_fail("head %u >= size %u", elem.head, vq->size);
	for (unsigned k = 0; k < n; k++) {
		if (!elem.iov[k].iov_len)
			fuzz_fail("zero-length segment %u kept", k);
		if (gm_ptr(gm, elem.gpa[k], elem.iov[k].iov_len) !=
		    elem.iov[k].iov_base)
			fuzz_fail("segment %u is not the RAM at its address", k);
		if (k < elem.out_num)
			out += elem.iov[k].iov_len;
		else
			in += elem.iov[k].iov_len;
	}
	if (out != elem.out_len || in != elem.in_len)
		fuzz_fail("totals %llu/%llu, element says %u/%u",
			  (unsigned long long)out, (unsigned long long)in,
			  elem.out_len, elem.in_len);
}

static void check_roundtrip(const struct virtq *vq, struct guest_mem *gm)
{
	struct state_buf a = { 0 }, b = { 0 };
	struct state_reader r;
	struct virtq copy = { .max_size = vq->max_size };
	int ret;

	virtq_save(vq, &a);
	r = (struct state_reader){ .data = a.data, .len = a.len };
	ret = virtq_load(&copy, gm, vq->event_idx, vq->indirect, &r);
	if (ret)
		fuzz_fail("virtq_load refused what virtq_save wrote (%d)", ret);
	if (r.pos != a.len)
		fuzz_fail("virtq_load left %zu bytes", a.len - r.pos);
	virtq_save(&copy, &b);
	if (a.len != b.len || memcmp(a.data, b.data, a.len))
		fuzz_fail("save -> load -> save differs");
	state_buf_free(&a);
	state_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct guest_mem gm = { 0 };
	struct virtq vq = { .max_size = 128 };
	uint8_t cfg = fz_u8(&in);
	bool event_idx = cfg & 8, indirect = cfg & 16;
	uint16_t avail_idx = 0;
	const uint8_t *p;
	int ops = 0, r;
	unsigned nheld = 0;

	memset(low_ram, 0, sizeof(low_ram));
	memset(high_ram, 0, sizeof(high_ram));
	gm.regions[0] = (struct gm_region){ LOW_GPA, LOW_SIZE, low_ram };
	gm.regions[1] = (struct gm_region){ HIGH_GPA, HIGH_SIZE, high_ram };
	gm.nr_regions = 2;
	gm.ram_size = LOW_SIZE + HIGH_SIZE;
	gm.write_notify = note_write;
	gm.write_notify_opaque = &gm;

	vq.size = (uint16_t)(1u << (cfg & 7));
	vq.desc_gpa = fz_addr(&in);
	vq.avail_gpa = fz_addr(&in);
	vq.used_gpa = fz_addr(&in);
	if (virtq_enable(&vq, &gm, event_idx, indirect))
		return 0;

	while (in.n && ops++ < MAX_OPS) {
		bool was_broken = vq.broken;

		switch (fz_u8(&in) % 11) {
		case 0: {
			uint64_t a = fz_addr(&in);
			size_t n = fz_take(&in, fz_u8(&in), &p);
			(void)gm_write(&gm, a, p, n);
			break;
		}
		case 1: {
			uint8_t where = fz_u8(&in);
			uint16_t i = fz_u16(&in);
			struct virtq_desc d;
			uint64_t table = where ? fz_addr(&in) : vq.desc_gpa;
			d.addr = fz_addr(&in);
			d.len = fz_u32(&in);
			d.flags = fz_u16(&in);
			d.next = fz_u16(&in);
			if (!where)
				i %= vq.size;
			(void)gm_write(&gm, table + 16ull * i, &d, sizeof(d));
			break;
		}
		case 2: {
			uint16_t head = fz_u16(&in);
			uint8_t step = fz_u8(&in);
			(void)gm_write(&gm, vq.avail_gpa + 4 + 2ull * (avail_idx % vq.size),
				       &head, 2);
			avail_idx = (uint16_t)(avail_idx + step);
			(void)gm_write(&gm, vq.avail_gpa + 2, &avail_idx, 2);
			break;
		}
		case 3: {
			uint32_t written = fz_u32(&in);
			r = virtq_pop(&vq, &elem);
			if (r < 0 && !vq.broken)
				fuzz_fail("pop refused a chain but the queue is not broken");
			if (r == 1) {
				uint64_t want = written < elem.in_len ? written
								      : elem.in_len;
				check_elem(&vq, &gm);
				/* The "device" fills what it claims to write. */
				for (uint64_t off = 0; off < want;) {
					uint8_t chunk[256];
					size_t n = want - off < sizeof(chunk)
							   ? (size_t)(want - off)
							   : sizeof(chunk);
					memset(chunk, 0xA5, n);
					if (virtq_elem_write(&elem, off, chunk, n) != n)
						fuzz_fail("short elem write");
					off += n;
				}
				noted = 0;
				virtq_push(&vq, &elem, written);
				/* Buffer bytes plus the used element (8) and
				 * used->idx (2). */
				if (noted != want + 10)
					fuzz_fail("reported %llu bytes written, want %llu",
						  (unsigned long long)noted,
						  (unsigned long long)want + 10);
			}
			break;
		}
		case 4:
			r = virtq_pop(&vq, &elem);
			if (r == 1) {
				uint8_t chunk[512];
				size_t got, total = 0;

				check_elem(&vq, &gm);
				/* Read the readable bytes in odd-sized steps. */
				while ((got = virtq_elem_read(&elem, total, chunk,
							      sizeof(chunk) - 7)))
					total += got;
				if (total != elem.out_len)
					fuzz_fail("read %zu readable bytes of %u",
						  total, elem.out_len);
				virtq_unpop(&vq);
			}
			break;
		case 5:
			(void)virtq_should_notify(&vq);
			break;
		case 6:
			virtq_notify_disable(&vq);
			break;
		case 7:
			(void)virtq_notify_enable(&vq);
			break;
		case 8:
			avail_idx = 0;
			(void)gm_write(&gm, vq.avail_gpa + 2, &avail_idx, 2);
			if (virtq_enable(&vq, &gm, event_idx, indirect))
				fuzz_fail("re-enable of a good layout failed");
			was_broken = false;
			nheld = 0; /* a reset device forgets its requests */
			break;
		case 9: {
			uint8_t which = fz_u8(&in);
			uint16_t v = fz_u16(&in);
			uint64_t a = which & 1 ? vq.avail_gpa + 4 + 2ull * vq.size
					       : vq.avail_gpa;
			(void)gm_write(&gm, a, &v, 2);
			break;
		}
		case 10:
			r = virtq_pop(&vq, &elem);
			if (r != 1)
				break;
			check_elem(&vq, &gm);
			if (nheld == MAX_HELD) {
				noted = 0;
				virtq_push(&vq, &held[0], 0);
				if (noted != 10)
					fuzz_fail("pushing a held chain reported %llu bytes",
						  (unsigned long long)noted);
				memmove(&held[0], &held[1],
					(MAX_HELD - 1) * sizeof(held[0]));
				nheld--;
			}
			held[nheld++] = elem;
			break;
		}
		if ((uint16_t)(vq.last_avail_idx - vq.used_idx) > vq.size)
			fuzz_fail("%u chains in flight in a queue of %u",
				  (uint16_t)(vq.last_avail_idx - vq.used_idx), vq.size);
		if (was_broken && !vq.broken)
			fuzz_fail("a broken queue recovered without reset");
		if (vq.broken && virtq_pop(&vq, &elem) != 0)
			fuzz_fail("a broken queue gave a chain");
	}
	check_roundtrip(&vq, &gm);
	return 0;
}
