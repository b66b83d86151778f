/*
 * aml.h - a small encoder for ACPI Machine Language (AML), the byte code of
 * the DSDT and SSDTs (ACPI 6.5 chapter 20, "ACPI Machine Language (AML)
 * Specification"; resource descriptors: §6.4 "Resource Data Types for ACPI").
 *
 * Everything is appended to one growable buffer.  Constructs that carry a
 * PkgLength (Scope, Device, Method, Package, Buffer, ResourceTemplate) are
 * opened with a begin call and closed with aml_end(), which closes the
 * innermost open construct and inserts its PkgLength (and, for buffers, the
 * BufferSize) in front of the body.  So AML nests the way ASL reads:
 *
 *	aml_scope(b, "\\_SB");
 *	  aml_device(b, "COM1");
 *	    aml_name_eisaid(b, "_HID", "PNP0501");
 *	    aml_name(b, "_CRS");
 *	    aml_restemplate(b);
 *	      aml_res_io(b, 0x3f8, 0x3f8, 1, 8);
 *	      aml_res_irq_noflags(b, 4);
 *	    aml_end(b);             // ResourceTemplate: EndTag appended
 *	  aml_end(b);               // Device
 *	aml_end(b);                 // Scope
 *	r = aml_buf_finish(b);      // 0, or the first error
 *
 * Errors are sticky: the first failing call records -errno in b->err and
 * every later call does nothing, so a long sequence is checked once, at
 * aml_buf_finish().  Errors are -ENOMEM (allocation), -EINVAL (a malformed
 * name, string or EISA ID, a descriptor outside a ResourceTemplate, aml_end()
 * with nothing open, a value that does not fit its field, nesting deeper than
 * AML_MAX_DEPTH) and -E2BIG (a construct longer than a PkgLength can say).
 *
 * The encoder only writes well-formed byte code; whether the objects make
 * sense (a Name followed by exactly one data object, a Package with as many
 * elements as it declares) is the caller's business.
 */
#ifndef KVMM_ARCH_X86_AML_H
#define KVMM_ARCH_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AML_MAX_DEPTH 16

/* A growable buffer of AML.  Zero-initialised (or aml_buf_init) is empty. */
struct aml_buf {
	uint8_t *data;  /* the byte code, len bytes; owned, freed by aml_buf_free */
	size_t len;
	size_t cap;
	int err;        /* first error (-errno), sticky; 0 while all is well */
	int depth;      /* constructs open */
	struct {
		size_t start; /* offset of the body: where the PkgLength goes */
		uint8_t kind;
	} open[AML_MAX_DEPTH];
};

/* Make *b empty.  Cannot fail (memory is allocated on first use). */
void aml_buf_init(struct aml_buf *b);
/* Free the bytes and make *b empty again; safe on an empty buffer. */
void aml_buf_free(struct aml_buf *b);
/* Check a finished stream: 0, the first recorded error, or -EINVAL if a
 * construct is still open.  The bytes stay in b->data / b->len. */
int aml_buf_finish(struct aml_buf *b);

/* Encode a PkgLength (§20.2.4) whose value is `value` bytes - the value
 * counts the PkgLength bytes themselves plus everything up to the end of
 * the construct - into out[0..n).  Returns n (1..4), or -E2BIG if value is
 * 2^28 or more.  One byte holds values up to 63, two up to 4095, three up
 * to 2^20 - 1, four up to 2^28 - 1. */
int aml_pkglen_encode(uint32_t value, uint8_t out[4]);

/* ---- data (§20.2.3) ---- */

/* Raw bytes / one raw byte (an opcode the helpers below do not cover, or
 * the contents of an aml_buffer()). */
void aml_bytes(struct aml_buf *b, const void *p, size_t n);
void aml_byte(struct aml_buf *b, uint8_t v);
/* An Integer in its shortest encoding: ZeroOp, OneOp, then BytePrefix,
 * WordPrefix, DWordPrefix or QWordPrefix with the value little-endian. */
void aml_int(struct aml_buf *b, uint64_t v);
/* A String: StringPrefix, the ASCII characters (0x01-0x7F), NullChar. */
void aml_string(struct aml_buf *b, const char *s);
/* A compressed EISA ID (§6.1.5 _HID), e.g. "PNP0501": three letters A-Z and
 * four hexadecimal digits 0-9 A-F, packed into a DWord integer (always
 * DWordPrefix, as ASL's EISAID()). */
void aml_eisaid(struct aml_buf *b, const char *id);
/* Compute the EISA ID integer without emitting it: the value an OS reads
 * from _HID, e.g. 0x0105D041 for "PNP0501" (bytes 41 D0 05 01).  Returns 0
 * and *out, or -EINVAL for a malformed id. */
int aml_eisaid_value(const char *id, uint32_t *out);

/* ---- names (§20.2.2) ---- */

/* A NameString: optional root '\' or parent '^' prefixes, then NameSegs
 * separated by '.', each 1-4 characters of A-Z, 0-9, '_' not starting with a
 * digit and padded with '_' ("_SB" is "_SB_").  "\" alone is the root.
 * Emitted as a NameSeg, DualNamePath or MultiNamePath as needed. */
void aml_namestring(struct aml_buf *b, const char *path);

/* ---- named objects and control (§20.2.5) ---- */

/* NameOp NameString: the caller emits the object next (aml_int, aml_string,
 * aml_package, aml_restemplate, ...). */
void aml_name(struct aml_buf *b, const char *name);
/* Name(name, Integer) / Name(name, "string") / Name(name, EISAID(id)). */
void aml_name_int(struct aml_buf *b, const char *name, uint64_t v);
void aml_name_str(struct aml_buf *b, const char *name, const char *s);
void aml_name_eisaid(struct aml_buf *b, const char *name, const char *id);
/* ReturnOp: the caller emits the returned term next. */
void aml_return(struct aml_buf *b);
/* Arg0Op..Arg6Op, Local0Op..Local7Op. */
void aml_arg(struct aml_buf *b, unsigned n);
void aml_local(struct aml_buf *b, unsigned n);

/* ---- constructs closed by aml_end() ---- */

/* Scope(path) { ... } */
void aml_scope(struct aml_buf *b, const char *path);
/* Device(name) { ... } */
void aml_device(struct aml_buf *b, const char *name);
/* Method(name, nargs 0..7, Serialized/NotSerialized) { ... }, SyncLevel 0. */
void aml_method(struct aml_buf *b, const char *name, unsigned nargs,
		bool serialized);
/* Package(nelems) { ... }: nelems 0..255, the caller emits that many
 * elements (integers, strings, names, nested packages). */
void aml_package(struct aml_buf *b, unsigned nelems);
/* Buffer() { bytes }: raw bytes follow (aml_bytes); aml_end() computes the
 * BufferSize. */
void aml_buffer(struct aml_buf *b);
/* ResourceTemplate() { descriptors }: a Buffer of resource descriptors;
 * aml_end() appends the End Tag with a checksum that makes the bytes of the
 * template sum to zero (§6.4.2.9). */
void aml_restemplate(struct aml_buf *b);

/* Close the innermost open construct.  -EINVAL (sticky) if none is open. */
void aml_end(struct aml_buf *b);

/* ---- resource descriptors, only inside aml_restemplate() (§6.4) ---- */

/* IO(Decode16, min, max, align, len): I/O Port Descriptor (§6.4.2.5),
 * port addresses in bytes. */
void aml_res_io(struct aml_buf *b, uint16_t min, uint16_t max, uint8_t align,
		uint8_t len);
/* IRQNoFlags() {irq}: IRQ Descriptor without the information byte
 * (§6.4.2.1); irq 0..15, edge-triggered active-high as ISA is. */
void aml_res_irq_noflags(struct aml_buf *b, unsigned irq);

/* Flags of Interrupt() (Extended Interrupt Descriptor, §6.4.3.6). */
#define AML_INT_CONSUMER    0x01 /* ResourceConsumer (else Producer) */
#define AML_INT_EDGE        0x02 /* Edge (else Level) */
#define AML_INT_ACTIVE_LOW  0x04 /* ActiveLow (else ActiveHigh) */
#define AML_INT_SHARED      0x08 /* Shared (else Exclusive) */
#define AML_INT_WAKE        0x10 /* ...AndWake */
/* Interrupt(flags) {gsi[0], ..., gsi[n-1]}, n 1..255, GSI numbers. */
void aml_res_interrupt(struct aml_buf *b, uint8_t flags, const uint32_t *gsi,
		       unsigned n);
/* Memory32Fixed(ReadWrite/ReadOnly, base, len): 32-bit Fixed Memory Range
 * Descriptor (§6.4.3.4), bytes. */
void aml_res_memory32_fixed(struct aml_buf *b, uint32_t base, uint32_t len,
			    bool writable);

/* Address Space Resource Descriptors (§6.4.3.5). */
enum aml_addr_type {
	AML_ADDR_MEMORY = 0,
	AML_ADDR_IO = 1,
	AML_ADDR_BUS_NUMBER = 2,
};
/* General Flags */
#define AML_ADDR_CONSUMER   0x01 /* ResourceConsumer; clear: ResourceProducer (bridge windows) */
#define AML_ADDR_SUB_DECODE 0x02 /* SubDecode; clear: PosDecode */
#define AML_ADDR_MIN_FIXED  0x04
#define AML_ADDR_MAX_FIXED  0x08
/* Type Specific Flags, memory (_MEM in bits 2:1, _RW in bit 0) */
#define AML_MEM_RW              0x01
#define AML_MEM_NON_CACHEABLE   (0 << 1)
#define AML_MEM_CACHEABLE       (1 << 1)
#define AML_MEM_WRITE_COMBINING (2 << 1)
#define AML_MEM_PREFETCHABLE    (3 << 1)
/* Type Specific Flags, I/O (_RNG in bits 1:0) */
#define AML_IO_RANGE_ENTIRE     0x03

struct aml_addr_space {
	enum aml_addr_type type;
	uint8_t general_flags;  /* AML_ADDR_* */
	uint8_t type_flags;     /* AML_MEM_* / AML_IO_* / 0 for bus numbers */
	uint64_t granularity;   /* _GRA */
	uint64_t min, max;      /* _MIN, _MAX (inclusive) */
	uint64_t translation;   /* _TRA */
	uint64_t length;        /* _LEN */
};
/* Word / DWord / QWord Address Space Descriptor with every field given;
 * -EINVAL (sticky) if a value does not fit the descriptor's width. */
void aml_res_word(struct aml_buf *b, const struct aml_addr_space *a);
void aml_res_dword(struct aml_buf *b, const struct aml_addr_space *a);
void aml_res_qword(struct aml_buf *b, const struct aml_addr_space *a);

/* The windows of a PCI host bridge's _CRS: ResourceProducer, MinFixed,
 * MaxFixed, PosDecode, granularity and translation 0, _LEN = max - min + 1.
 * -EINVAL (sticky) if min > max. */
/* WordBusNumber: bus numbers min..max. */
void aml_res_word_bus_number(struct aml_buf *b, uint16_t min, uint16_t max);
/* DWordIO(..., EntireRange): ports min..max. */
void aml_res_dword_io(struct aml_buf *b, uint32_t min, uint32_t max);
/* DWordMemory / QWordMemory(..., cache, ReadWrite): cache is one of
 * AML_MEM_NON_CACHEABLE ... AML_MEM_PREFETCHABLE. */
void aml_res_dword_memory(struct aml_buf *b, uint8_t cache, uint32_t min,
			  uint32_t max);
void aml_res_qword_memory(struct aml_buf *b, uint8_t cache, uint64_t min,
			  uint64_t max);

#endif
