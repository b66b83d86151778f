/*
 * state.h - device state serialization for snapshot and migration.
 *
 * A device's save() appends fields to a growable buffer in a fixed order
 * (little-endian, fixed widths); load() reads them back in the same order.
 * Readers check every length: a truncated or foreign stream gives -EINVAL,
 * never an out-of-bounds read.  Loaded values are untrusted (a snapshot file
 * is user input): devices validate them as they would a guest register write.
 */
#ifndef KVMM_CORE_STATE_H
#define KVMM_CORE_STATE_H

#include <stddef.h>
#include <stdint.h>

struct state_buf {
	uint8_t *data;
	size_t len, cap;
	int err; /* first error (-ENOMEM); later puts are dropped */
};

struct state_reader {
	const uint8_t *data;
	size_t len, pos;
	int err; /* -EINVAL once a get ran past the end; later gets read 0 */
};

/* Append fields.  Errors are sticky in buf->err so a save() can put many
 * fields and check once at the end. */
void state_put_u8(struct state_buf *b, uint8_t v);
void state_put_u16(struct state_buf *b, uint16_t v);
void state_put_u32(struct state_buf *b, uint32_t v);
void state_put_u64(struct state_buf *b, uint64_t v);
void state_put_bytes(struct state_buf *b, const void *p, size_t len);
/* Free the buffer's storage. */
void state_buf_free(struct state_buf *b);

/* Read fields back; past the end they return 0 and set r->err = -EINVAL. */
uint8_t state_get_u8(struct state_reader *r);
uint16_t state_get_u16(struct state_reader *r);
uint32_t state_get_u32(struct state_reader *r);
uint64_t state_get_u64(struct state_reader *r);
void state_get_bytes(struct state_reader *r, void *p, size_t len);

#endif
