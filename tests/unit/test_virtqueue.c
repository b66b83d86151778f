/*
 * test_virtqueue.c - split virtqueues (src/virtio/virtqueue.c) against
 * rings crafted in guest RAM: the test plays the driver, writing
 * descriptors and ring indices directly, and checks what the device side
 * takes, refuses and writes back.
 *
 * Guest RAM is 3 GiB + 64 MiB, so it has both regions and the MMIO hole
 * between them (MAP_NORESERVE: only touched pages cost anything).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/memory.h"
#include "core/state.h"
#include "virtio/virtqueue.h"

#define RAM_SIZE (GM_HOLE_START + (64ull << 20))
#define DESC_GPA  0x1000ull
#define AVAIL_GPA 0x2000ull
#define USED_GPA  0x3000ull
#define BUF_GPA   0x10000ull
#define QSIZE     8

struct note {
	uint64_t gpa, len;
};

struct fix {
	struct guest_mem gm;
	struct virtq vq;
	struct virtq_elem elem;
	struct note notes[64];
	unsigned nr_notes;
	uint16_t avail_idx; /* the driver's copy */
};

static void record_write(void *opaque, uint64_t gpa, uint64_t len)
{
	struct fix *f = opaque;

	if (f->nr_notes < 64)
		f->notes[f->nr_notes++] = (struct note){ gpa, len };
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(gm_init(&f->gm, RAM_SIZE), 0);
	f->gm.write_notify = record_write;
	f->gm.write_notify_opaque = f;
	f->vq.max_size = 256;
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	gm_destroy(&f->gm);
	free(f);
	return 0;
}

/* ---- the driver's side ---- */

static void put_desc_at(struct fix *f, uint64_t table, unsigned i,
			uint64_t addr, uint32_t len, uint16_t flags,
			uint16_t next)
{
	struct virtq_desc d = { addr, len, flags, next };

	assert_int_equal(gm_write(&f->gm, table + 16ull * i, &d, sizeof(d)), 0);
}

static void put_desc(struct fix *f, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	put_desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

static void put_u16(struct fix *f, uint64_t gpa, uint16_t v)
{
	assert_int_equal(gm_write(&f->gm, gpa, &v, 2), 0);
}

static uint16_t get_u16(struct fix *f, uint64_t gpa)
{
	uint16_t v;

	assert_int_equal(gm_read(&f->gm, gpa, &v, 2), 0);
	return v;
}

static uint32_t get_u32(struct fix *f, uint64_t gpa)
{
	uint32_t v;

	assert_int_equal(gm_read(&f->gm, gpa, &v, 4), 0);
	return v;
}

/* Make chain `head` available. */
static void offer(struct fix *f, uint16_t head)
{
	put_u16(f, AVAIL_GPA + 4 + 2 * (f->avail_idx % f->vq.size), head);
	f->avail_idx++;
	put_u16(f, AVAIL_GPA + 2, f->avail_idx);
}

static void enable(struct fix *f, bool event_idx, bool indirect)
{
	assert_int_equal(virtq_enable(&f->vq, &f->gm, event_idx, indirect), 0);
	assert_true(f->vq.ready);
	f->nr_notes = 0;
}

static void expect_refused(struct fix *f)
{
	assert_int_equal(virtq_pop(&f->vq, &f->elem), -EIO);
	assert_true(f->vq.broken);
	/* A broken queue gives nothing more, and takes nothing back. */
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 0);
	uint16_t used = get_u16(f, USED_GPA + 2);
	f->nr_notes = 0;
	virtq_push(&f->vq, &f->elem, 0);
	assert_int_equal(f->nr_notes, 0);
	assert_int_equal(get_u16(f, USED_GPA + 2), used);
	assert_false(virtq_should_notify(&f->vq));
}

/* ---- enable ---- */

static void test_enable_checks(void **state)
{
	struct fix *f = *state;
	struct virtq *vq = &f->vq;
	const uint16_t bad_sizes[] = { 0, 3, 6, 12, 255, 512 };

	for (unsigned i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		vq->size = bad_sizes[i];
		assert_int_equal(virtq_enable(vq, &f->gm, true, true), -EINVAL);
		assert_false(vq->ready);
	}
	vq->size = 256;
	assert_int_equal(virtq_enable(vq, &f->gm, true, true), 0);
	vq->size = 1;
	assert_int_equal(virtq_enable(vq, &f->gm, true, true), 0);
	vq->size = QSIZE;

	/* Alignment: desc 16, avail 2, used 4. */
	vq->desc_gpa = DESC_GPA + 8;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = DESC_GPA;
	vq->avail_gpa = AVAIL_GPA + 1;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->avail_gpa = AVAIL_GPA;
	vq->used_gpa = USED_GPA + 2;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->used_gpa = USED_GPA;

	/* In the MMIO hole, past the end of RAM, straddling the hole. */
	vq->desc_gpa = GM_HOLE_START;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = 0xFEE00000;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = GM_HOLE_START - 16 * (QSIZE - 1);
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = GM_HOLE_START - 16 * QSIZE; /* just fits */
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), 0);
	vq->desc_gpa = GM_HIGH_START + (64ull << 20);
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = UINT64_MAX - 15;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), -EINVAL);
	vq->desc_gpa = DESC_GPA;
	vq->used_gpa = GM_HIGH_START + (64ull << 20) - 4 - 8 * QSIZE;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), 0);
	/* avail_event needs two more bytes with EVENT_IDX. */
	assert_int_equal(virtq_enable(vq, &f->gm, true, false), -EINVAL);
	vq->used_gpa = USED_GPA;
	vq->avail_gpa = GM_HOLE_START - 4 - 2 * QSIZE;
	assert_int_equal(virtq_enable(vq, &f->gm, false, false), 0);
	assert_int_equal(virtq_enable(vq, &f->gm, true, false), -EINVAL);
	vq->avail_gpa = AVAIL_GPA;

	/* The rings in high RAM work like low RAM. */
	vq->desc_gpa = GM_HIGH_START;
	vq->avail_gpa = GM_HIGH_START + 0x1000;
	vq->used_gpa = GM_HIGH_START + 0x2000;
	assert_int_equal(virtq_enable(vq, &f->gm, true, true), 0);

	virtq_reset(vq);
	assert_false(vq->ready);
	assert_int_equal(vq->max_size, 256);
	assert_int_equal(vq->size, 0);
}

/* ---- normal chains ---- */

static void test_direct_chain(void **state)
{
	struct fix *f = *state;
	struct virtq_elem *e = &f->elem;
	uint8_t hdr[16], data[4];

	enable(f, false, false);
	assert_int_equal(virtq_pop(&f->vq, e), 0); /* empty */

	memset(hdr, 0xAB, sizeof(hdr));
	assert_int_equal(gm_write(&f->gm, BUF_GPA, hdr, sizeof(hdr)), 0);
	put_desc(f, 5, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF_GPA + 0x100, 32, VIRTQ_DESC_F_NEXT, 7);
	put_desc(f, 7, BUF_GPA + 0x1000, 100,
		 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	put_desc(f, 0, BUF_GPA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 5);

	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->head, 5);
	assert_int_equal(e->out_num, 2);
	assert_int_equal(e->in_num, 2);
	assert_int_equal(e->out_len, 48);
	assert_int_equal(e->in_len, 101);
	assert_ptr_equal(e->iov[0].iov_base, gm_ptr(&f->gm, BUF_GPA, 16));
	assert_int_equal(e->iov[1].iov_len, 32);
	assert_int_equal(e->gpa[2], BUF_GPA + 0x1000);
	assert_int_equal(e->gpa[3], BUF_GPA + 0x2000);
	assert_int_equal(virtq_pop(&f->vq, e), 0);

	assert_int_equal(virtq_elem_read(e, 0, hdr, sizeof(hdr)), 16);
	assert_int_equal(hdr[15], 0xAB);
	/* Writable bytes 99..102 straddle the two segments (100 + 1). */
	assert_int_equal(virtq_elem_write(e, 99, "wxyz", 4), 2);
	assert_int_equal(gm_read(&f->gm, BUF_GPA + 0x1000 + 99, data, 1), 0);
	assert_int_equal(data[0], 'w');
	assert_int_equal(gm_read(&f->gm, BUF_GPA + 0x2000, data, 1), 0);
	assert_int_equal(data[0], 'x');

	f->nr_notes = 0;
	virtq_push(&f->vq, e, 101);
	assert_int_equal(get_u16(f, USED_GPA + 2), 1);
	assert_int_equal(get_u32(f, USED_GPA + 4), 5);
	assert_int_equal(get_u32(f, USED_GPA + 8), 101);
	/* Both writable segments, the used element and used->idx. */
	assert_int_equal(f->nr_notes, 4);
	assert_int_equal(f->notes[0].gpa, BUF_GPA + 0x1000);
	assert_int_equal(f->notes[0].len, 100);
	assert_int_equal(f->notes[1].gpa, BUF_GPA + 0x2000);
	assert_int_equal(f->notes[1].len, 1);
	assert_int_equal(f->notes[2].gpa, USED_GPA + 4);
	assert_int_equal(f->notes[2].len, 8);
	assert_int_equal(f->notes[3].gpa, USED_GPA + 2);
	assert_int_equal(f->notes[3].len, 2);
}

static void test_note_write_exact(void **state)
{
	struct fix *f = *state;
	struct virtq_elem *e = &f->elem;

	enable(f, false, false);
	put_desc(f, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA + 0x100, 20,
		 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF_GPA + 0x200, 30, VIRTQ_DESC_F_WRITE, 0);
	for (int i = 0; i < 4; i++)
		offer(f, 0);
	const uint32_t written[] = { 0, 20, 25, 1000 };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(virtq_pop(&f->vq, e), 1);
		f->nr_notes = 0;
		virtq_push(&f->vq, e, written[i]);
		uint64_t sum = 0;
		for (unsigned k = 0; k + 2 < f->nr_notes; k++) {
			assert_true(f->notes[k].gpa == BUF_GPA + 0x100 ||
				    f->notes[k].gpa == BUF_GPA + 0x200);
			sum += f->notes[k].len;
		}
		/* written is clamped to the writable size (50). */
		assert_int_equal(sum, written[i] < 50 ? written[i] : 50);
		assert_int_equal(get_u32(f, USED_GPA + 4 + 8 * i + 4),
				 written[i] < 50 ? written[i] : 50);
	}
	/* 20 bytes fill the first segment exactly: one note. */
	assert_int_equal(get_u16(f, USED_GPA + 2), 4);
}

static void test_zero_length_skipped(void **state)
{
	struct fix *f = *state;
	struct virtq_elem *e = &f->elem;

	enable(f, false, false);
	/* A zero-length buffer anywhere, even with an address in the hole. */
	put_desc(f, 0, GM_HOLE_START + 0x1000, 0, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF_GPA + 0x100, 0,
		 VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	put_desc(f, 3, BUF_GPA + 0x200, 4, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->out_num, 1);
	assert_int_equal(e->in_num, 1);
	assert_int_equal(e->out_len, 8);
	assert_int_equal(e->in_len, 4);
	assert_int_equal(e->gpa[1], BUF_GPA + 0x200);

	/* ... but a zero-length readable after a writable one still breaks
	 * the order rule. */
	put_desc(f, 4, BUF_GPA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 5);
	put_desc(f, 5, BUF_GPA, 0, 0, 0);
	offer(f, 4);
	expect_refused(f);
}

static void test_indirect(void **state)
{
	struct fix *f = *state;
	struct virtq_elem *e = &f->elem;
	const uint64_t table = 0x8000;

	enable(f, false, true);
	/* Table entries 0 -> 2 -> 1 (any order via next). */
	put_desc_at(f, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc_at(f, table, 2, BUF_GPA + 0x100, 512,
		    VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(f, table, 1, BUF_GPA + 0x1000, 1, VIRTQ_DESC_F_WRITE, 0);
	/* The WRITE flag on the pointing descriptor is ignored. */
	put_desc(f, 3, table, 3 * 16,
		 VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	offer(f, 3);
	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->head, 3);
	assert_int_equal(e->out_num, 2);
	assert_int_equal(e->in_num, 1);
	assert_int_equal(e->out_len, 528);
	assert_int_equal(e->gpa[2], BUF_GPA + 0x1000);

	/* Direct descriptors followed by an indirect one (2.7.5.3.2). */
	put_desc(f, 6, BUF_GPA + 0x300, 8, VIRTQ_DESC_F_NEXT, 7);
	put_desc(f, 7, table + 16, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 6);
	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->out_num, 1);
	assert_int_equal(e->in_num, 1);
	assert_int_equal(e->gpa[0], BUF_GPA + 0x300);
	assert_int_equal(e->gpa[1], BUF_GPA + 0x1000);

	/* A table need not be 16-byte aligned, nor in low RAM. */
	put_desc_at(f, GM_HIGH_START + 4, 0, GM_HIGH_START + 0x1000, 64,
		    VIRTQ_DESC_F_WRITE, 0);
	put_desc(f, 1, GM_HIGH_START + 4, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 1);
	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->in_len, 64);

	/* A full-size table: `size` buffers are allowed... */
	for (unsigned i = 0; i < QSIZE; i++)
		put_desc_at(f, table, i, BUF_GPA + i, 1,
			    i + 1 < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	put_desc(f, 0, table, 16 * QSIZE, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, e), 1);
	assert_int_equal(e->out_num, QSIZE);
	/* ... one more is a chain longer than the queue. */
	for (unsigned i = 0; i < QSIZE + 1; i++)
		put_desc_at(f, table, i, BUF_GPA + i, 1,
			    i < QSIZE ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	put_desc(f, 0, table, 16 * (QSIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_refused(f);
}

/* ---- hostile chains: each must break the queue, nothing else ---- */

struct hostile {
	const char *what;
	bool indirect_feature;
	void (*lay_out)(struct fix *f);
};

#define TABLE 0x8000ull

static void h_outside_ram(struct fix *f)
{
	put_desc(f, 0, GM_HIGH_START + (64ull << 20), 1, 0, 0);
}

static void h_in_hole(struct fix *f)
{
	put_desc(f, 0, 0xFEC00000, 4, 0, 0);
}

static void h_straddles_hole(struct fix *f)
{
	put_desc(f, 0, GM_HOLE_START - 8, 16, 0, 0);
}

static void h_straddles_end(struct fix *f)
{
	put_desc(f, 0, GM_HIGH_START + (64ull << 20) - 8, 16,
		 VIRTQ_DESC_F_WRITE, 0);
}

static void h_huge_len(struct fix *f)
{
	put_desc(f, 0, BUF_GPA, 0xFFFFFFFF, 0, 0);
}

static void h_wrapping_addr(struct fix *f)
{
	put_desc(f, 0, UINT64_MAX - 3, 8, 0, 0);
}

static void h_total_over_4g(struct fix *f)
{
	/* Two 2 GiB buffers, each inside low RAM: 4 GiB in total. */
	put_desc(f, 0, 0, 0x80000000u, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, 0x40000000, 0x80000000u, 0, 0);
}

static void h_loop_self(struct fix *f)
{
	put_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 0);
}

static void h_loop_long(struct fix *f)
{
	for (unsigned i = 0; i < QSIZE; i++)
		put_desc(f, i, BUF_GPA, 1, VIRTQ_DESC_F_NEXT,
			 (i + 1) % QSIZE);
}

static void h_loop_zero_len(struct fix *f)
{
	/* Zero-length buffers still count: a loop of them is a loop. */
	put_desc(f, 0, 0, 0, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, 0, 0, VIRTQ_DESC_F_NEXT, 0);
}

static void h_next_out_of_range(struct fix *f)
{
	put_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, QSIZE);
}

static void h_head_out_of_range(struct fix *f)
{
	put_u16(f, AVAIL_GPA + 4, QSIZE);
}

static void h_readable_after_writable(struct fix *f)
{
	put_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF_GPA, 1, 0, 0);
}

static void h_indirect_without_feature(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, 0, 0);
	put_desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_with_next(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, 0, 0);
	put_desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT,
		 1);
	put_desc(f, 1, BUF_GPA, 1, 0, 0);
}

static void h_indirect_nested(struct fix *f)
{
	put_desc_at(f, TABLE + 0x100, 0, BUF_GPA, 1, 0, 0);
	put_desc_at(f, TABLE, 0, TABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_len_zero(struct fix *f)
{
	put_desc(f, 0, TABLE, 0, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_len_odd(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, 0, 0);
	put_desc(f, 0, TABLE, 17, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_huge(struct fix *f)
{
	put_desc(f, 0, 0, 0xFFFFFFF0u, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_in_hole(struct fix *f)
{
	put_desc(f, 0, GM_HOLE_START, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_next_past_table(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF_GPA, 1, 0, 0); /* outside the 16-byte table */
	put_desc(f, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_loop(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 0);
	put_desc(f, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_buffer_in_hole(struct fix *f)
{
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, 0xFEB00000, 1, VIRTQ_DESC_F_WRITE, 0);
	put_desc(f, 0, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_order(struct fix *f)
{
	/* Writable in the direct part, readable in the table. */
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, 0, 0);
	put_desc(f, 0, BUF_GPA, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
}

static void h_indirect_then_longer_than_queue(struct fix *f)
{
	/* size - 1 direct buffers, then a table of 2: size + 1 buffers. */
	for (unsigned i = 0; i < QSIZE - 1; i++)
		put_desc(f, i, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, i + 1);
	put_desc(f, QSIZE - 1, TABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc_at(f, TABLE, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF_GPA, 1, 0, 0);
}

static const struct hostile hostile_cases[] = {
	{ "buffer past the end of RAM", false, h_outside_ram },
	{ "buffer in the MMIO hole", false, h_in_hole },
	{ "buffer straddling the hole", false, h_straddles_hole },
	{ "buffer straddling the end of RAM", false, h_straddles_end },
	{ "huge length", false, h_huge_len },
	{ "wrapping address", false, h_wrapping_addr },
	{ "more than 4 GiB in total", false, h_total_over_4g },
	{ "next pointing to itself", false, h_loop_self },
	{ "a ring of `size` descriptors", false, h_loop_long },
	{ "a loop of zero-length buffers", false, h_loop_zero_len },
	{ "next >= size", false, h_next_out_of_range },
	{ "head >= size", false, h_head_out_of_range },
	{ "readable after writable", false, h_readable_after_writable },
	{ "INDIRECT not negotiated", false, h_indirect_without_feature },
	{ "INDIRECT with NEXT", true, h_indirect_with_next },
	{ "nested INDIRECT", true, h_indirect_nested },
	{ "indirect table of length 0", true, h_indirect_len_zero },
	{ "indirect table of length 17", true, h_indirect_len_odd },
	{ "indirect table of ~4 GiB", true, h_indirect_huge },
	{ "indirect table in the hole", true, h_indirect_in_hole },
	{ "next past the indirect table", true, h_indirect_next_past_table },
	{ "loop in the indirect table", true, h_indirect_loop },
	{ "indirect buffer in the hole", true, h_indirect_buffer_in_hole },
	{ "indirect readable after writable", true, h_indirect_order },
	{ "direct + indirect longer than the queue", true,
	  h_indirect_then_longer_than_queue },
};

static void test_hostile_chains(void **state)
{
	struct fix *f = *state;

	for (unsigned i = 0; i < sizeof(hostile_cases) / sizeof(hostile_cases[0]);
	     i++) {
		const struct hostile *c = &hostile_cases[i];

		print_message("hostile: %s\n", c->what);
		virtq_reset(&f->vq);
		f->vq.size = QSIZE;
		f->vq.desc_gpa = DESC_GPA;
		f->vq.avail_gpa = AVAIL_GPA;
		f->vq.used_gpa = USED_GPA;
		f->avail_idx = 0;
		put_u16(f, USED_GPA + 2, 0);
		enable(f, false, c->indirect_feature);
		offer(f, 0);
		c->lay_out(f);
		expect_refused(f);
		/* virtq_enable() starts over (a device reset does this). */
		f->avail_idx = 0;
		put_u16(f, AVAIL_GPA + 2, 0);
		enable(f, false, c->indirect_feature);
		assert_false(f->vq.broken);
		assert_int_equal(virtq_pop(&f->vq, &f->elem), 0);
	}
}

static void test_avail_idx_jump(void **state)
{
	struct fix *f = *state;

	enable(f, false, false);
	put_desc(f, 0, BUF_GPA, 1, 0, 0);
	for (int i = 0; i < QSIZE; i++)
		put_u16(f, AVAIL_GPA + 4 + 2 * i, 0);
	/* Exactly `size` outstanding is fine. */
	put_u16(f, AVAIL_GPA + 2, QSIZE);
	for (int i = 0; i < QSIZE; i++)
		assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 0);
	/* size + 1 ahead of last_avail_idx is not. */
	put_u16(f, AVAIL_GPA + 2, 2 * QSIZE + 1);
	expect_refused(f);

	/* Going backwards looks like a jump of ~65535. */
	put_u16(f, AVAIL_GPA + 2, 0);
	enable(f, false, false);
	put_u16(f, AVAIL_GPA + 2, 1);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	put_u16(f, AVAIL_GPA + 2, 0);
	expect_refused(f);
}

static void test_too_many_in_flight(void **state)
{
	struct fix *f = *state;

	enable(f, false, false);
	put_desc(f, 0, BUF_GPA, 1, 0, 0);
	/* `size` chains popped, none returned: all descriptors are busy. */
	for (int i = 0; i < QSIZE; i++)
		offer(f, 0);
	for (int i = 0; i < QSIZE; i++)
		assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	/* Returning one makes room for one. */
	virtq_push(&f->vq, &f->elem, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	/* A head offered again while `size` are still out: refused. */
	offer(f, 0);
	expect_refused(f);
}

static void test_wraparound(void **state)
{
	struct fix *f = *state;

	/* Indices wrap at 65536, not at the ring size. */
	enable(f, false, false);
	put_desc(f, 1, BUF_GPA, 4, VIRTQ_DESC_F_WRITE, 0);
	for (unsigned n = 0; n < 70000; n++) {
		offer(f, 1);
		assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
		virtq_push(&f->vq, &f->elem, 4);
	}
	assert_int_equal(get_u16(f, USED_GPA + 2), (uint16_t)70000);
	assert_int_equal(f->vq.last_avail_idx, (uint16_t)70000);
}

static void test_unpop(void **state)
{
	struct fix *f = *state;

	enable(f, false, false);
	put_desc(f, 3, BUF_GPA, 4, 0, 0);
	offer(f, 3);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	virtq_unpop(&f->vq);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	assert_int_equal(f->elem.head, 3);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 0);
}

/* ---- notifications ---- */

static void push_one(struct fix *f)
{
	put_desc(f, 0, BUF_GPA, 4, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	virtq_push(&f->vq, &f->elem, 4);
}

static void test_no_interrupt_flag(void **state)
{
	struct fix *f = *state;

	enable(f, false, false);
	push_one(f);
	assert_true(virtq_should_notify(&f->vq));
	/* Nothing new since: no interrupt. */
	assert_false(virtq_should_notify(&f->vq));
	put_u16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	push_one(f);
	assert_false(virtq_should_notify(&f->vq));
	put_u16(f, AVAIL_GPA, 0);
	assert_true(virtq_should_notify(&f->vq));
	/* used_event is ignored without EVENT_IDX. */
	put_u16(f, AVAIL_GPA + 4 + 2 * QSIZE, 100);
	push_one(f);
	assert_true(virtq_should_notify(&f->vq));
}

static void test_event_idx_notify(void **state)
{
	struct fix *f = *state;
	const uint64_t used_event = AVAIL_GPA + 4 + 2 * QSIZE;

	enable(f, true, false);
	/* The flag is ignored with EVENT_IDX. */
	put_u16(f, AVAIL_GPA, VIRTQ_AVAIL_F_NO_INTERRUPT);
	put_u16(f, used_event, 0);
	push_one(f); /* used idx 1: crossed used_event 0 */
	assert_true(virtq_should_notify(&f->vq));
	push_one(f); /* 2: used_event 0 already passed */
	assert_false(virtq_should_notify(&f->vq));
	put_u16(f, used_event, 3);
	push_one(f); /* 3 */
	assert_false(virtq_should_notify(&f->vq));
	push_one(f); /* 4: crossed 3 */
	assert_true(virtq_should_notify(&f->vq));
	/* A batch: 5, 6, 7 with used_event 5 -> one interrupt. */
	put_u16(f, used_event, 5);
	push_one(f);
	push_one(f);
	push_one(f);
	assert_true(virtq_should_notify(&f->vq));
	assert_false(virtq_should_notify(&f->vq));
	/* used_event far behind (the driver is not interested). */
	put_u16(f, used_event, 0xF000);
	push_one(f);
	assert_false(virtq_should_notify(&f->vq));
	/* Wrapping: used_event 0xFFFF, idx going 0xFFFF -> 0x0000. */
	virtq_reset(&f->vq);
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	enable(f, true, false);
	f->vq.used_idx = 0xFFFE;
	f->vq.last_avail_idx = f->avail_idx = 0xFFFE;
	put_u16(f, AVAIL_GPA + 2, f->avail_idx);
	put_u16(f, used_event, 0xFFFF);
	push_one(f); /* used idx 0xFFFF; first call always says yes */
	assert_true(virtq_should_notify(&f->vq));
	push_one(f); /* 0x0000: crossed 0xFFFF */
	assert_true(virtq_should_notify(&f->vq));
	push_one(f);
	assert_false(virtq_should_notify(&f->vq));
}

static void test_notify_suppression(void **state)
{
	struct fix *f = *state;
	const uint64_t avail_event = USED_GPA + 4 + 8 * QSIZE;

	/* Without EVENT_IDX: the used ring's NO_NOTIFY flag. */
	enable(f, false, false);
	virtq_notify_disable(&f->vq);
	assert_int_equal(get_u16(f, USED_GPA), VIRTQ_USED_F_NO_NOTIFY);
	assert_int_equal(f->nr_notes, 1);
	assert_int_equal(f->notes[0].gpa, USED_GPA);
	assert_false(virtq_notify_enable(&f->vq));
	assert_int_equal(get_u16(f, USED_GPA), 0);
	virtq_notify_disable(&f->vq);
	put_desc(f, 0, BUF_GPA, 4, 0, 0);
	offer(f, 0); /* arrives while disabled */
	assert_true(virtq_notify_enable(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	assert_false(virtq_notify_enable(&f->vq));

	/* With EVENT_IDX: avail_event follows last_avail_idx. */
	virtq_reset(&f->vq);
	f->vq.size = QSIZE;
	f->vq.desc_gpa = DESC_GPA;
	f->vq.avail_gpa = AVAIL_GPA;
	f->vq.used_gpa = USED_GPA;
	f->avail_idx = 0;
	put_u16(f, AVAIL_GPA + 2, 0);
	enable(f, true, false);
	offer(f, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	assert_int_equal(get_u16(f, avail_event), 1);
	virtq_notify_disable(&f->vq);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1);
	assert_int_equal(get_u16(f, avail_event), 1); /* not moved */
	assert_int_equal(get_u16(f, USED_GPA), 0);    /* flags stay 0 */
	assert_false(virtq_notify_enable(&f->vq));
	assert_int_equal(get_u16(f, avail_event), 2);
	offer(f, 0);
	virtq_notify_disable(&f->vq);
	assert_true(virtq_notify_enable(&f->vq));
}

/* ---- save / load ---- */

static void test_save_load(void **state)
{
	struct fix *f = *state;
	struct state_buf b = { 0 };
	struct state_reader r;
	struct virtq copy = { .max_size = 256 };

	enable(f, true, true);
	push_one(f);
	push_one(f);
	put_desc(f, 0, BUF_GPA, 4, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->elem), 1); /* one in flight */
	assert_true(virtq_should_notify(&f->vq));
	virtq_save(&f->vq, &b);
	assert_int_equal(b.err, 0);

	r = (struct state_reader){ .data = b.data, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), 0);
	assert_int_equal(r.pos, b.len);
	assert_true(copy.ready);
	assert_int_equal(copy.last_avail_idx, 3);
	assert_int_equal(copy.used_idx, 2);
	assert_int_equal(copy.signalled_used, 2);
	assert_true(copy.signalled_valid);
	assert_ptr_equal(copy.desc, f->vq.desc);
	/* And it works: push the in-flight chain. */
	virtq_push(&copy, &f->elem, 0);
	assert_int_equal(get_u16(f, USED_GPA + 2), 3);

	/* Truncated streams, and hostile contents. */
	for (size_t n = 0; n < b.len; n++) {
		r = (struct state_reader){ .data = b.data, .len = n };
		assert_int_not_equal(virtq_load(&copy, &f->gm, true, true, &r), 0);
	}
	uint8_t bad[64];
	memcpy(bad, b.data, b.len);
	bad[0] = 3; /* size 3 */
	r = (struct state_reader){ .data = bad, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), -EINVAL);
	assert_false(copy.ready);
	memcpy(bad, b.data, b.len);
	bad[2] |= 0x80; /* unknown flag */
	r = (struct state_reader){ .data = bad, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), -EINVAL);
	memcpy(bad, b.data, b.len);
	bad[3 + 7] = 0xC0; /* desc_gpa far outside RAM */
	r = (struct state_reader){ .data = bad, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), -EINVAL);
	memcpy(bad, b.data, b.len);
	bad[27] = 100; /* last_avail 100 with used 2: 98 in flight */
	r = (struct state_reader){ .data = bad, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), -EINVAL);
	assert_false(copy.ready);

	/* A queue that was never enabled. */
	state_buf_free(&b);
	virtq_reset(&f->vq);
	virtq_save(&f->vq, &b);
	r = (struct state_reader){ .data = b.data, .len = b.len };
	assert_int_equal(virtq_load(&copy, &f->gm, true, true, &r), 0);
	assert_false(copy.ready);
	state_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enable_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_note_write_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_chains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_idx_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unpop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_interrupt_flag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_suppression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
