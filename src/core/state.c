/* state.c - see state.h. */
#include "core/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void state_put_bytes(struct state_buf *b, const void *p, size_t len)
{
	if (b->err)
		return;
	if (b->cap - b->len < len) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < len)
			cap *= 2;
		uint8_t *n = realloc(b->data, cap);
		if (!n) {
			b->err = -ENOMEM;
			return;
		}
		b->data = n;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, len);
	b->len += len;
}

#define PUT_LE(bits)                                                     \
	void state_put_u##bits(struct state_buf *b, uint##bits##_t v)    \
	{                                                                \
		uint8_t le[bits / 8];                                    \
		for (unsigned i = 0; i < sizeof(le); i++)                \
			le[i] = (uint8_t)(v >> (8 * i));                 \
		state_put_bytes(b, le, sizeof(le));                      \
	}
PUT_LE(8)
PUT_LE(16)
PUT_LE(32)
PUT_LE(64)

void state_buf_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

void state_get_bytes(struct state_reader *r, void *p, size_t len)
{
	if (r->err || r->len - r->pos < len) {
		r->err = -EINVAL;
		memset(p, 0, len);
		return;
	}
	memcpy(p, r->data + r->pos, len);
	r->pos += len;
}

#define GET_LE(bits)                                                     \
	uint##bits##_t state_get_u##bits(struct state_reader *r)         \
	{                                                                \
		uint8_t le[bits / 8];                                    \
		uint##bits##_t v = 0;                                    \
		state_get_bytes(r, le, sizeof(le));                      \
		for (unsigned i = 0; i < sizeof(le); i++)                \
			v |= (uint##bits##_t)((uint64_t)le[i] << (8 * i)); \
		return v;                                                \
	}
GET_LE(8)
GET_LE(16)
GET_LE(32)
GET_LE(64)
