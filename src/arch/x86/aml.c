/*
 * aml.c - the AML encoder; aml.h has the interface and a usage sketch.
 *
 * Why a byte-code writer and not ASL text plus a compiler: the DSDT depends on
 * the machine (how many vCPUs, which PCI windows), so it is built at every VM
 * start, and kvmm must not need iasl at run time.  QEMU builds a tree of AML
 * objects and serialises it; Firecracker's acpi-tables crate builds one Rust
 * value per term.  Here the tables are small (a few KiB), so something simpler
 * suffices: one flat buffer written front to back.
 *
 * The one hard part of AML is the PkgLength (ACPI 6.5 §20.2.4): Scope, Device,
 * Method, Package and Buffer start with the length of their whole body,
 * encoded in 1 to 4 bytes depending on that length, and the length counts the
 * PkgLength bytes themselves.  The body is not known when the construct
 * starts.  The options are to always reserve the 4-byte form (parsers accept
 * it, but it wastes bytes in every small Device and Name and differs from what
 * iasl emits, so the output can no longer be compared byte for byte with the
 * spec's examples), to build each body in its own buffer and copy it into the
 * parent (an allocation and a copy per level), or to write the body in place
 * and, when the construct closes, move the body up by the 1-4 bytes the
 * PkgLength needs and write it in front.
 * We do the last: the move is a memmove of the body per level of nesting, a
 * few KiB in total for a DSDT, and nesting costs nothing but an entry on a
 * small stack of open constructs (AML_MAX_DEPTH; ASL rarely nests 6 deep).
 * Buffers add one twist: their BufferSize integer sits between the PkgLength
 * and the bytes, and is inserted at the same time.  A ResourceTemplate is a
 * Buffer whose close also appends the End Tag (§6.4.2.9) with a checksum over
 * the template; descriptors may only be written directly inside one.
 *
 * Choosing the PkgLength size: a body of n bytes needs the smallest k (1..4)
 * with n + k representable in k bytes: 1 byte holds 0..63 (bits 5:0), k > 1
 * bytes hold 4 + 8 * (k - 1) bits - 12, 20 or 28 bits.  So n = 62 takes one
 * byte (63), n = 63 takes two (65); n = 4093 takes two (4095), n = 4094
 * three (4097).
 *
 * Errors are sticky (the first one is kept in b->err, later calls are no-ops),
 * because table builders are long straight-line sequences: checking every
 * call would hide the structure that makes them readable, and one check at
 * aml_buf_finish() catches everything.  Names, strings and EISA IDs are
 * validated here, so a typo in a table builder fails loudly in a unit test
 * instead of producing a DSDT the guest's interpreter rejects at boot.
 */
#include "arch/x86/aml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Opcodes and prefixes, ACPI 6.5 §20.2 */
#define AML_ZERO_OP         0x00
#define AML_ONE_OP          0x01
#define AML_NAME_OP         0x08
#define AML_BYTE_PREFIX     0x0a
#define AML_WORD_PREFIX     0x0b
#define AML_DWORD_PREFIX    0x0c
#define AML_STRING_PREFIX   0x0d
#define AML_QWORD_PREFIX    0x0e
#define AML_SCOPE_OP        0x10
#define AML_BUFFER_OP       0x11
#define AML_PACKAGE_OP      0x12
#define AML_METHOD_OP       0x14
#define AML_DUAL_NAME       0x2e
#define AML_MULTI_NAME      0x2f
#define AML_EXT_OP_PREFIX   0x5b
#define AML_DEVICE_OP       0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR       0x5c
#define AML_PARENT_CHAR     0x5e
#define AML_NULL_NAME       0x00
#define AML_LOCAL0_OP       0x60
#define AML_ARG0_OP         0x68
#define AML_RETURN_OP       0xa4

/* Resource descriptor tags, §6.4.2 (small) and §6.4.3 (large) */
#define RES_IRQ_NOFLAGS     0x22 /* item 0x4, length 2 */
#define RES_IO              0x47 /* item 0x8, length 7 */
#define RES_END_TAG         0x79 /* item 0xf, length 1 */
#define RES_MEMORY32_FIXED  0x86
#define RES_DWORD_ADDR      0x87
#define RES_WORD_ADDR       0x88
#define RES_EXT_IRQ         0x89
#define RES_QWORD_ADDR      0x8a

enum aml_kind {
	KIND_SCOPE,    /* PkgLength only */
	KIND_BUFFER,   /* PkgLength, BufferSize */
	KIND_RESTEMPLATE, /* like BUFFER, End Tag appended on close */
};

#define PKGLEN_MAX 0x0fffffffu /* 28 bits */

void aml_buf_init(struct aml_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void aml_buf_free(struct aml_buf *b)
{
	free(b->data);
	aml_buf_init(b);
}

int aml_buf_finish(struct aml_buf *b)
{
	if (b->err)
		return b->err;
	if (b->depth)
		return -EINVAL;
	return 0;
}

static void fail(struct aml_buf *b, int err)
{
	if (!b->err)
		b->err = err;
}

/* Make room for n more bytes; false (with b->err set) if impossible. */
static bool reserve(struct aml_buf *b, size_t n)
{
	if (b->err)
		return false;
	if (n > SIZE_MAX - b->len) {
		fail(b, -ENOMEM);
		return false;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n) {
			if (cap > SIZE_MAX / 2) {
				cap = b->len + n;
				break;
			}
			cap *= 2;
		}
		uint8_t *p = realloc(b->data, cap);
		if (!p) {
			fail(b, -ENOMEM);
			return false;
		}
		b->data = p;
		b->cap = cap;
	}
	return true;
}

void aml_bytes(struct aml_buf *b, const void *p, size_t n)
{
	if (!reserve(b, n))
		return;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void aml_byte(struct aml_buf *b, uint8_t v)
{
	aml_bytes(b, &v, 1);
}

static void put_le(uint8_t *out, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out[i] = (uint8_t)(v >> (8 * i));
}

static void emit_le(struct aml_buf *b, uint64_t v, unsigned n)
{
	uint8_t tmp[8];
	put_le(tmp, v, n);
	aml_bytes(b, tmp, n);
}

int aml_pkglen_encode(uint32_t value, uint8_t out[4])
{
	int n;

	if (value > PKGLEN_MAX)
		return -E2BIG;
	if (value <= 0x3f) {
		out[0] = (uint8_t)value;
		return 1;
	}
	n = value <= 0xfff ? 2 : value <= 0xfffff ? 3 : 4;
	/* Lead byte: bits 7:6 = following byte count, bits 3:0 = low nibble. */
	out[0] = (uint8_t)(((n - 1) << 6) | (value & 0x0f));
	for (int i = 1; i < n; i++)
		out[i] = (uint8_t)(value >> (4 + 8 * (i - 1)));
	return n;
}

/* PkgLength bytes needed in front of a body of n bytes, or 0 if too long. */
static unsigned pkglen_size(size_t n)
{
	if (n + 1 <= 0x3f)
		return 1;
	if (n + 2 <= 0xfff)
		return 2;
	if (n + 3 <= 0xfffff)
		return 3;
	if (n + 4 <= PKGLEN_MAX)
		return 4;
	return 0;
}

/* Shortest Integer encoding of v into out; returns its length. */
static size_t int_encode(uint64_t v, uint8_t out[9])
{
	if (v == 0) {
		out[0] = AML_ZERO_OP;
		return 1;
	}
	if (v == 1) {
		out[0] = AML_ONE_OP;
		return 1;
	}
	if (v <= 0xff) {
		out[0] = AML_BYTE_PREFIX;
		put_le(out + 1, v, 1);
		return 2;
	}
	if (v <= 0xffff) {
		out[0] = AML_WORD_PREFIX;
		put_le(out + 1, v, 2);
		return 3;
	}
	if (v <= 0xffffffff) {
		out[0] = AML_DWORD_PREFIX;
		put_le(out + 1, v, 4);
		return 5;
	}
	out[0] = AML_QWORD_PREFIX;
	put_le(out + 1, v, 8);
	return 9;
}

void aml_int(struct aml_buf *b, uint64_t v)
{
	uint8_t tmp[9];
	aml_bytes(b, tmp, int_encode(v, tmp));
}

void aml_string(struct aml_buf *b, const char *s)
{
	if (b->err)
		return;
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p > 0x7f) {
			fail(b, -EINVAL);
			return;
		}
	}
	aml_byte(b, AML_STRING_PREFIX);
	aml_bytes(b, s, strlen(s) + 1); /* with the NullChar */
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int aml_eisaid_value(const char *id, uint32_t *out)
{
	uint32_t v = 0;

	if (strlen(id) != 7)
		return -EINVAL;
	/* Three letters, 5 bits each ('A' = 1), then four hex digits. */
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z')
			return -EINVAL;
		v = (v << 5) | (uint32_t)(id[i] - '@');
	}
	for (int i = 3; i < 7; i++) {
		int d = hex_digit(id[i]);
		if (d < 0)
			return -EINVAL;
		v = (v << 4) | (uint32_t)d;
	}
	/* The 32-bit compressed ID is stored big-endian (byte 0 holds the
	 * first letters); as an AML Integer it is read little-endian. */
	*out = __builtin_bswap32(v);
	return 0;
}

void aml_eisaid(struct aml_buf *b, const char *id)
{
	uint32_t v;

	if (b->err)
		return;
	if (aml_eisaid_value(id, &v)) {
		fail(b, -EINVAL);
		return;
	}
	/* Always a DWord, as ASL's EISAID() is, whatever the value. */
	aml_byte(b, AML_DWORD_PREFIX);
	emit_le(b, v, 4);
}

/* Validate one NameSeg of n characters at s and write it padded to out. */
static bool nameseg(const char *s, size_t n, uint8_t out[4])
{
	if (n < 1 || n > 4)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || c == '_' ||
			  (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	memcpy(out, s, n);
	memset(out + n, '_', 4 - n);
	return true;
}

void aml_namestring(struct aml_buf *b, const char *path)
{
	uint8_t prefix[256];
	uint8_t segs[4 * 255]; /* a MultiNamePath holds at most 255 NameSegs */
	size_t nprefix = 0, nsegs = 0;
	const char *p = path;

	if (b->err)
		return;
	if (!*p) {
		fail(b, -EINVAL);
		return;
	}
	if (*p == '\\') {
		prefix[nprefix++] = AML_ROOT_CHAR;
		p++;
	} else {
		while (*p == '^') {
			if (nprefix == sizeof(prefix)) {
				fail(b, -EINVAL);
				return;
			}
			prefix[nprefix++] = AML_PARENT_CHAR;
			p++;
		}
	}
	if (!*p) { /* "\" or "^": the prefix and NullName */
		aml_bytes(b, prefix, nprefix);
		aml_byte(b, AML_NULL_NAME);
		return;
	}
	/* Check every segment before writing anything. */
	for (const char *s = p;;) {
		const char *dot = strchr(s, '.');
		size_t n = dot ? (size_t)(dot - s) : strlen(s);
		if (nsegs == 255 || !nameseg(s, n, segs + 4 * nsegs)) {
			fail(b, -EINVAL);
			return;
		}
		nsegs++;
		if (!dot)
			break;
		s = dot + 1;
	}
	aml_bytes(b, prefix, nprefix);
	if (nsegs == 2) {
		aml_byte(b, AML_DUAL_NAME);
	} else if (nsegs > 2) {
		aml_byte(b, AML_MULTI_NAME);
		aml_byte(b, (uint8_t)nsegs);
	}
	aml_bytes(b, segs, 4 * nsegs);
}

void aml_name(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_NAME_OP);
	aml_namestring(b, name);
}

void aml_name_int(struct aml_buf *b, const char *name, uint64_t v)
{
	aml_name(b, name);
	aml_int(b, v);
}

void aml_name_str(struct aml_buf *b, const char *name, const char *s)
{
	aml_name(b, name);
	aml_string(b, s);
}

void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id)
{
	aml_name(b, name);
	aml_eisaid(b, id);
}

void aml_return(struct aml_buf *b)
{
	aml_byte(b, AML_RETURN_OP);
}

void aml_arg(struct aml_buf *b, unsigned n)
{
	if (n > 6)
		fail(b, -EINVAL);
	else
		aml_byte(b, (uint8_t)(AML_ARG0_OP + n));
}

void aml_local(struct aml_buf *b, unsigned n)
{
	if (n > 7)
		fail(b, -EINVAL);
	else
		aml_byte(b, (uint8_t)(AML_LOCAL0_OP + n));
}

/* Open a construct whose body starts here (the PkgLength goes here). */
static void open_block(struct aml_buf *b, enum aml_kind kind)
{
	if (b->err)
		return;
	if (b->depth == AML_MAX_DEPTH) {
		fail(b, -EINVAL);
		return;
	}
	b->open[b->depth].start = b->len;
	b->open[b->depth].kind = (uint8_t)kind;
	b->depth++;
}

void aml_scope(struct aml_buf *b, const char *path)
{
	aml_byte(b, AML_SCOPE_OP);
	open_block(b, KIND_SCOPE);
	aml_namestring(b, path);
}

void aml_device(struct aml_buf *b, const char *name)
{
	aml_byte(b, AML_EXT_OP_PREFIX);
	aml_byte(b, AML_DEVICE_OP);
	open_block(b, KIND_SCOPE);
	aml_namestring(b, name);
}

void aml_method(struct aml_buf *b, const char *name, unsigned nargs,
		bool serialized)
{
	if (nargs > 7) {
		fail(b, -EINVAL);
		return;
	}
	aml_byte(b, AML_METHOD_OP);
	open_block(b, KIND_SCOPE);
	aml_namestring(b, name);
	/* MethodFlags: bits 2:0 ArgCount, bit 3 SerializeFlag, 7:4 SyncLevel */
	aml_byte(b, (uint8_t)(nargs | (serialized ? 0x08 : 0)));
}

void aml_package(struct aml_buf *b, unsigned nelems)
{
	if (nelems > 255) {
		fail(b, -EINVAL);
		return;
	}
	aml_byte(b, AML_PACKAGE_OP);
	open_block(b, KIND_SCOPE);
	aml_byte(b, (uint8_t)nelems);
}

void aml_buffer(struct aml_buf *b)
{
	aml_byte(b, AML_BUFFER_OP);
	open_block(b, KIND_BUFFER);
}

void aml_restemplate(struct aml_buf *b)
{
	aml_byte(b, AML_BUFFER_OP);
	open_block(b, KIND_RESTEMPLATE);
}

void aml_end(struct aml_buf *b)
{
	uint8_t head[4 + 9];
	size_t start, body, nhead;
	unsigned k;
	int kind;

	if (b->err)
		return;
	if (b->depth == 0) {
		fail(b, -EINVAL);
		return;
	}
	b->depth--;
	start = b->open[b->depth].start;
	kind = b->open[b->depth].kind;

	if (kind == KIND_RESTEMPLATE) {
		/* End Tag: the checksum makes the template's bytes sum to 0. */
		uint8_t sum = RES_END_TAG;
		for (size_t i = start; i < b->len; i++)
			sum += b->data[i];
		aml_byte(b, RES_END_TAG);
		aml_byte(b, (uint8_t)-sum);
		if (b->err)
			return;
	}

	body = b->len - start;
	nhead = 0;
	uint8_t size_int[9];
	size_t nsize = 0;
	if (kind != KIND_SCOPE)
		nsize = int_encode(body, size_int); /* BufferSize */
	k = pkglen_size(body + nsize);
	if (!k) {
		fail(b, -E2BIG);
		return;
	}
	aml_pkglen_encode((uint32_t)(body + nsize + k), head);
	nhead = k;
	memcpy(head + nhead, size_int, nsize);
	nhead += nsize;

	if (!reserve(b, nhead))
		return;
	memmove(b->data + start + nhead, b->data + start, body);
	memcpy(b->data + start, head, nhead);
	b->len += nhead;
}

/* ---- resource descriptors ---- */

static bool in_restemplate(struct aml_buf *b)
{
	if (b->err)
		return false;
	if (b->depth == 0 ||
	    b->open[b->depth - 1].kind != KIND_RESTEMPLATE) {
		fail(b, -EINVAL);
		return false;
	}
	return true;
}

void aml_res_io(struct aml_buf *b, uint16_t min, uint16_t max, uint8_t align,
		uint8_t len)
{
	uint8_t d[8] = { RES_IO, 0x01 /* Decode16 */ };

	if (!in_restemplate(b))
		return;
	if (min > max) {
		fail(b, -EINVAL);
		return;
	}
	put_le(d + 2, min, 2);
	put_le(d + 4, max, 2);
	d[6] = align;
	d[7] = len;
	aml_bytes(b, d, sizeof(d));
}

void aml_res_irq_noflags(struct aml_buf *b, unsigned irq)
{
	uint8_t d[3] = { RES_IRQ_NOFLAGS };

	if (!in_restemplate(b))
		return;
	if (irq > 15) {
		fail(b, -EINVAL);
		return;
	}
	put_le(d + 1, 1u << irq, 2);
	aml_bytes(b, d, sizeof(d));
}

void aml_res_interrupt(struct aml_buf *b, uint8_t flags, const uint32_t *gsi,
		       unsigned n)
{
	uint8_t d[5] = { RES_EXT_IRQ };

	if (!in_restemplate(b))
		return;
	if (n < 1 || n > 255 || (flags & ~0x1f)) {
		fail(b, -EINVAL);
		return;
	}
	put_le(d + 1, 2 + 4 * n, 2); /* flags, count, table */
	d[3] = flags;
	d[4] = (uint8_t)n;
	aml_bytes(b, d, sizeof(d));
	for (unsigned i = 0; i < n; i++)
		emit_le(b, gsi[i], 4);
}

void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len,
			    bool writable)
{
	uint8_t d[12] = { RES_MEMORY32_FIXED, 9, 0 };

	if (!in_restemplate(b))
		return;
	d[3] = writable ? 1 : 0;
	put_le(d + 4, base, 4);
	put_le(d + 8, len, 4);
	aml_bytes(b, d, sizeof(d));
}

/* Address space descriptor with fields of `width` bytes (2, 4, 8). */
static void res_addr(struct aml_buf *b, uint8_t tag, unsigned width,
		     const struct aml_addr_space *a)
{
	const uint64_t f[5] = { a->granularity, a->min, a->max,
				a->translation, a->length };
	uint8_t d[6] = { tag };

	if (!in_restemplate(b))
		return;
	if (a->type > AML_ADDR_BUS_NUMBER || (a->general_flags & ~0x0f)) {
		fail(b, -EINVAL);
		return;
	}
	for (int i = 0; i < 5; i++) {
		if (width < 8 && (f[i] >> (8 * width))) {
			fail(b, -EINVAL);
			return;
		}
	}
	put_le(d + 1, 3 + 5 * width, 2);
	d[3] = (uint8_t)a->type;
	d[4] = a->general_flags;
	d[5] = a->type_flags;
	aml_bytes(b, d, sizeof(d));
	for (int i = 0; i < 5; i++)
		emit_le(b, f[i], width);
}

void aml_res_word(struct aml_buf *b, const struct aml_addr_space *a)
{
	res_addr(b, RES_WORD_ADDR, 2, a);
}

void aml_res_dword(struct aml_buf *b, const struct aml_addr_space *a)
{
	res_addr(b, RES_DWORD_ADDR, 4, a);
}

void aml_res_qword(struct aml_buf *b, const struct aml_addr_space *a)
{
	res_addr(b, RES_QWORD_ADDR, 8, a);
}

/* A bridge window: producer, fixed min and max, positive decode. */
static bool window(struct aml_buf *b, struct aml_addr_space *a,
		   enum aml_addr_type type, uint8_t type_flags, uint64_t min,
		   uint64_t max)
{
	if (min > max) {
		fail(b, -EINVAL);
		return false;
	}
	*a = (struct aml_addr_space){
		.type = type,
		.general_flags = AML_ADDR_MIN_FIXED | AML_ADDR_MAX_FIXED,
		.type_flags = type_flags,
		.min = min,
		.max = max,
		.length = max - min + 1,
	};
	return true;
}

void aml_res_word_bus_number(struct aml_buf *b, uint16_t min, uint16_t max)
{
	struct aml_addr_space a;
	if (window(b, &a, AML_ADDR_BUS_NUMBER, 0, min, max))
		aml_res_word(b, &a);
}

void aml_res_dword_io(struct aml_buf *b, uint32_t min, uint32_t max)
{
	struct aml_addr_space a;
	if (window(b, &a, AML_ADDR_IO, AML_IO_RANGE_ENTIRE, min, max))
		aml_res_dword(b, &a);
}

void aml_res_dword_memory(struct aml_buf *b, uint8_t cache, uint32_t min,
			  uint32_t max)
{
	struct aml_addr_space a;
	if (cache & ~0x06) {
		fail(b, -EINVAL);
		return;
	}
	if (window(b, &a, AML_ADDR_MEMORY, cache | AML_MEM_RW, min, max))
		aml_res_dword(b, &a);
}

void aml_res_qword_memory(struct aml_buf *b, uint8_t cache, uint64_t min,
			  uint64_t max)
{
	struct aml_addr_space a;
	if (cache & ~0x06) {
		fail(b, -EINVAL);
		return;
	}
	/* [0, 2^64) has a length of 2^64, which does not fit _LEN. */
	if (min == 0 && max == UINT64_MAX) {
		fail(b, -EINVAL);
		return;
	}
	if (window(b, &a, AML_ADDR_MEMORY, cache | AML_MEM_RW, min, max))
		aml_res_qword(b, &a);
}
