/*
 * boot_internal.h - what boot.c shares with the three format loaders
 * (boot_linux.c, boot_pvh.c, boot_multiboot.c).  Not for use outside
 * src/arch/x86/boot*.c.
 *
 * The kernel file is read whole into host memory (struct boot_ctx) and
 * every loader reads it only through the bounds-checked helpers here or
 * after checking offset + length against ctx->size itself.  Guest addresses
 * taken from the file are checked with boot_check_range() before use.
 */
#ifndef KVMM_ARCH_X86_BOOT_INTERNAL_H
#define KVMM_ARCH_X86_BOOT_INTERNAL_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "arch/x86/boot.h"

#define BOOT_PAGE_SIZE   4096ull
#define BOOT_KERNEL_MAX  (1ull << 30)  /* largest kernel file we read, bytes */
#define BOOT_MODSTR_ADDR (BOOT_CMDLINE_ADDR + BOOT_CMDLINE_MAX)
#define BOOT_MODSTR_MAX  BOOT_CMDLINE_MAX /* bytes including the NUL */
#define BOOT_PT_END      (BOOT_PML4 + 6 * BOOT_PAGE_SIZE) /* PML4, PDPT, 4 PDs */

/* One load in progress: the kernel file's bytes and where errors go. */
struct boot_ctx {
	struct guest_mem *gm;
	const struct x86_boot_config *cfg;
	const uint8_t *data; /* the kernel file, read whole */
	size_t size;         /* its length in bytes */
	char *err;           /* one-line reason on failure, may be NULL */
	size_t errlen;
};

/* Little-endian reads from a host buffer; the caller checked the bounds. */
static inline uint16_t boot_rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}
static inline uint32_t boot_rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}
static inline uint64_t boot_rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* True if [off, off + len) lies inside the kernel file; no overflow. */
static inline bool boot_in_file(const struct boot_ctx *c, uint64_t off,
				uint64_t len)
{
	return off <= c->size && len <= c->size - off;
}

/* True if the half-open ranges [a, a + alen) and [b, b + blen) intersect
 * (empty ranges intersect nothing).  Callers pass sums that cannot wrap. */
static inline bool boot_overlap(uint64_t a, uint64_t alen, uint64_t b,
				uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/* Write "kernel <path>: <message>" into c->err and return rc (a -errno). */
int boot_fail(struct boot_ctx *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Write "<message>" (no prefix) into c->err and return rc. */
int boot_fail_raw(struct boot_ctx *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Read a whole regular file into a malloc'ed buffer (*data, *size bytes;
 * the caller frees *data).  Returns 0, -errno of open/fstat/read, -EFBIG if
 * it is larger than `max` bytes, -EINVAL if it is not a regular file, -EIO
 * if it shrank while being read. */
int boot_read_file(const char *path, uint64_t max, uint8_t **data,
		   size_t *size);

/* Check that the kernel's range [gpa, gpa + len) lies in low RAM above
 * 1 MiB (the layout in boot.h).  `what` names it in the error message.
 * Returns 0, -ENOMEM when it runs past the end of low RAM, -ENOEXEC when it
 * starts below 1 MiB or wraps. */
int boot_check_range(struct boot_ctx *c, const char *what, uint64_t gpa,
		     uint64_t len);

/* Copy cfg->cmdline (or "") with its NUL to BOOT_CMDLINE_ADDR.  `limit` is
 * the longest command line the kernel accepts, without the NUL.  Returns 0,
 * -E2BIG (message names both lengths) or -EFAULT. */
int boot_write_cmdline(struct boot_ctx *c, const char *cmdline,
		       uint64_t limit);

/* Load cfg->initrd_path into guest RAM inside [lo, hi), 4 KiB aligned: at
 * the highest address if `top`, else at the lowest.  Reads straight into
 * guest RAM.  Sets *addr and *size (bytes).  Returns 0, -errno of the file,
 * -ENOMEM with "initrd X (N MiB) does not fit in guest RAM below 0x..". */
int boot_load_initrd(struct boot_ctx *c, uint64_t lo, uint64_t hi, bool top,
		     uint64_t *addr, uint64_t *size);

/* ---- ELF (System V gABI, "Program Header" and "Note Section"); the
 * constants (PT_LOAD, EM_X86_64, ...) come from <elf.h> ---- */

/* The parts of an ELF header the loaders use, class-independent. */
struct boot_elf {
	bool is64;
	uint16_t machine;
	uint64_t entry;  /* e_entry (virtual) */
	uint64_t phoff;  /* program header table: file offset ... */
	uint16_t phnum;  /* ... entries ... */
	uint16_t phentsize; /* ... each this many bytes */
};

struct boot_phdr {
	uint32_t type;
	uint64_t offset, vaddr, paddr, filesz, memsz, align;
};

/* True if the file starts with the ELF magic. */
bool boot_is_elf(const struct boot_ctx *c);

/* Parse and check the ELF header: class 32/64, little-endian, ET_EXEC,
 * EM_386 or EM_X86_64, a program header table inside the file.  Returns 0
 * or -ENOEXEC with a message ("truncated program headers", ...). */
int boot_elf_parse(struct boot_ctx *c, struct boot_elf *e);

/* Program header i (< e->phnum) in class-independent form. */
void boot_elf_phdr(const struct boot_ctx *c, const struct boot_elf *e, int i,
		   struct boot_phdr *ph);

/* Copy every PT_LOAD segment to its p_paddr (p_filesz bytes from the file,
 * zeros up to p_memsz), after checking all of them against the file and
 * against guest RAM (boot_check_range).  Sets [*lo, *hi) to the span of the
 * loaded segments.  Returns 0, -ENOEXEC or -ENOMEM with a message. */
int boot_elf_load(struct boot_ctx *c, const struct boot_elf *e, uint64_t *lo,
		  uint64_t *hi);

#define BOOT_NOTE_ANY_TYPE UINT32_MAX /* boot_elf_find_note: match any type */

/* Find the first note `name`/`type` (or any type) in the PT_NOTE segments.  Returns 1 and
 * sets *desc (into the file buffer) and *descsz, 0 if there is none,
 * -ENOEXEC with a message when a note segment is malformed. */
int boot_elf_find_note(struct boot_ctx *c, const struct boot_elf *e,
		       const char *name, uint32_t type, const uint8_t **desc,
		       uint32_t *descsz);

/* ---- the format loaders; each fills *regs and returns 0 or -errno ---- */

/* bzImage, Linux boot protocol >= 2.06 with XLF_KERNEL_64. */
int boot_linux_load(struct boot_ctx *c, struct x86_boot_regs *regs);

/* ELF with XEN_ELFNOTE_PHYS32_ENTRY; `e` already parsed. */
int boot_pvh_load(struct boot_ctx *c, const struct boot_elf *e,
		  struct x86_boot_regs *regs);

/* Offset of a valid Multiboot v1 header (magic, checksum) within the first
 * 8 KiB of the file, or -1 if there is none. */
long boot_multiboot_find(const struct boot_ctx *c);

/* Multiboot v1 with the header at file offset mb_off; `e` is the parsed
 * ELF header or NULL when the file is not ELF. */
int boot_multiboot_load(struct boot_ctx *c, size_t mb_off,
			const struct boot_elf *e, struct x86_boot_regs *regs);

#endif
