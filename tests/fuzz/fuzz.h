/*
 * fuzz.h - what the fuzz targets in tests/fuzz share.
 *
 * Every target is one LLVMFuzzerTestOneInput(): built with libFuzzer
 * (clang, -Dfuzz=true) it is driven by coverage-guided mutation; built
 * with any compiler and replay_main.c it replays the files of
 * tests/fuzz/corpus-regress/<target>/ as a normal meson test (suite
 * "fuzz-regress"), so inputs that once crashed stay fixed.
 *
 * A target never judges an input "bad": every byte string is a legal
 * input and must leave the process alive, with no sanitizer report, no
 * leak and no hang.  The only aborts are the targets' own invariant
 * checks (fuzz_fail()), which name the broken rule.
 *
 * fuzz_in is the byte reader the interpreters use: every get past the end
 * returns 0, so a truncated operation is still a well-defined one.
 */
#ifndef KVMM_TESTS_FUZZ_H
#define KVMM_TESTS_FUZZ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fuzz_in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static inline uint16_t fz_u16(struct fuzz_in *in)
{
	uint16_t v = fz_u8(in);
	return (uint16_t)(v | (uint16_t)fz_u8(in) << 8);
}

static inline uint32_t fz_u32(struct fuzz_in *in)
{
	uint32_t v = fz_u16(in);
	return v | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t fz_u64(struct fuzz_in *in)
{
	uint64_t v = fz_u32(in);
	return v | (uint64_t)fz_u32(in) << 32;
}

/* Up to `want` bytes taken from the input; returns how many (maybe 0). */
static inline size_t fz_take(struct fuzz_in *in, size_t want,
			     const uint8_t **p)
{
	size_t n = want < in->n ? want : in->n;

	*p = in->p;
	in->p += n;
	in->n -= n;
	return n;
}

/* Print "fuzz: <message>" and abort: an invariant the target checks broke. */
static inline __attribute__((format(printf, 1, 2), noreturn)) void
fuzz_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#endif
