/*
 * test_boot_pvh.c - the PVH ELF loader (src/arch/x86/boot_pvh.c) and the
 * ELF helpers in boot.c.
 *
 * Each test builds a synthetic ELF (64- or 32-bit) in a temp file: two
 * PT_LOAD segments with patterned bytes and a BSS tail, and a PT_NOTE
 * segment with the Xen XEN_ELFNOTE_PHYS32_ENTRY note (plus "Linux" or
 * XEN_ELFNOTE_GUEST_OS notes when a test wants them).  After loading, the
 * tests read guest RAM the way the guest would: hvm_start_info at EBX, its
 * memory map and module list, the command line, the segments.  Layouts are
 * written out here from xen/include/public/arch-x86/hvm/start_info.h, not
 * borrowed from the loader.
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86/boot.h"
#include "core/memory.h"

#define MiB (1024ull * 1024)

#define SEG1_OFF   0x1000
#define SEG1_PADDR 0x200000ull
#define SEG1_FILE  0x2000
#define SEG1_MEM   0x5000
#define SEG2_OFF   0x3000
#define SEG2_PADDR 0x400000ull
#define SEG2_SIZE  0x800
#define NOTE_OFF   0x4000
#define FILE_SIZE  0x4400
#define ENTRY      (SEG1_PADDR + 0x10)

struct seg {
	uint32_t type;
	uint64_t off, paddr, filesz, memsz, align;
};

struct elfb {
	bool is64;
	uint16_t type, machine;
	uint8_t data_enc;
	uint64_t entry;
	int nph;
	uint16_t phnum_override; /* 0: nph */
	struct seg ph[8];
	uint8_t d[FILE_SIZE];
	size_t size;
	size_t note_end; /* notes are appended from NOTE_OFF */
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void add_note(struct elfb *b, const char *name, uint32_t type,
		     const void *desc, uint32_t dsz)
{
	uint32_t nsz = (uint32_t)strlen(name) + 1;
	uint8_t *p = b->d + b->note_end;

	put32(p, nsz);
	put32(p + 4, dsz);
	put32(p + 8, type);
	memcpy(p + 12, name, nsz);
	p += 12 + ((nsz + 3) & ~3u);
	memcpy(p, desc, dsz);
	b->note_end = (size_t)(p - b->d) + ((dsz + 3) & ~3u);
	b->ph[2].filesz = b->note_end - NOTE_OFF;
}

/* Two loadable segments and a note segment with the PVH entry note. */
static void elf_init(struct elfb *b, bool is64, int entry_note_size)
{
	memset(b, 0, sizeof(*b));
	b->is64 = is64;
	b->type = ET_EXEC;
	b->machine = is64 ? EM_X86_64 : EM_386;
	b->data_enc = ELFDATA2LSB;
	b->entry = 0xffffffff81000000ull; /* the virtual entry: unused by PVH */
	b->size = FILE_SIZE;
	b->nph = 3;
	b->ph[0] = (struct seg){ PT_LOAD, SEG1_OFF, SEG1_PADDR, SEG1_FILE, SEG1_MEM, 0x1000 };
	b->ph[1] = (struct seg){ PT_LOAD, SEG2_OFF, SEG2_PADDR, SEG2_SIZE, SEG2_SIZE, 0x1000 };
	b->ph[2] = (struct seg){ PT_NOTE, NOTE_OFF, 0, 0, 0, 4 };
	b->note_end = NOTE_OFF;
	for (int i = 0; i < SEG1_FILE; i++)
		b->d[SEG1_OFF + i] = (uint8_t)(i * 13 + 1);
	for (int i = 0; i < SEG2_SIZE; i++)
		b->d[SEG2_OFF + i] = (uint8_t)(i * 5 + 2);
	if (entry_note_size == 4) {
		uint32_t e = ENTRY;
		add_note(b, "Xen", 18, &e, 4);
	} else if (entry_note_size == 8) {
		uint64_t e = ENTRY;
		add_note(b, "Xen", 18, &e, 8);
	}
}

static void elf_finish(struct elfb *b)
{
	uint8_t *d = b->d;
	uint16_t phnum = b->phnum_override ? b->phnum_override : (uint16_t)b->nph;

	memcpy(d, ELFMAG, SELFMAG);
	d[EI_CLASS] = b->is64 ? ELFCLASS64 : ELFCLASS32;
	d[EI_DATA] = b->data_enc;
	d[EI_VERSION] = EV_CURRENT;
	if (b->is64) {
		Elf64_Ehdr eh = { 0 };
		memcpy(eh.e_ident, d, EI_NIDENT);
		eh.e_type = b->type;
		eh.e_machine = b->machine;
		eh.e_version = EV_CURRENT;
		eh.e_entry = b->entry;
		eh.e_phoff = sizeof(Elf64_Ehdr);
		eh.e_ehsize = sizeof(Elf64_Ehdr);
		eh.e_phentsize = sizeof(Elf64_Phdr);
		eh.e_phnum = phnum;
		memcpy(d, &eh, sizeof(eh));
		for (int i = 0; i < b->nph; i++) {
			Elf64_Phdr ph = { .p_type = b->ph[i].type, .p_offset = b->ph[i].off,
					  .p_vaddr = b->ph[i].paddr + 0xffffffff80000000ull,
					  .p_paddr = b->ph[i].paddr, .p_filesz = b->ph[i].filesz,
					  .p_memsz = b->ph[i].memsz, .p_align = b->ph[i].align };
			memcpy(d + sizeof(eh) + i * sizeof(ph), &ph, sizeof(ph));
		}
	} else {
		Elf32_Ehdr eh = { 0 };
		memcpy(eh.e_ident, d, EI_NIDENT);
		eh.e_type = b->type;
		eh.e_machine = b->machine;
		eh.e_version = EV_CURRENT;
		eh.e_entry = (uint32_t)b->entry;
		eh.e_phoff = sizeof(Elf32_Ehdr);
		eh.e_ehsize = sizeof(Elf32_Ehdr);
		eh.e_phentsize = sizeof(Elf32_Phdr);
		eh.e_phnum = phnum;
		memcpy(d, &eh, sizeof(eh));
		for (int i = 0; i < b->nph; i++) {
			Elf32_Phdr ph = { .p_type = b->ph[i].type, .p_offset = (uint32_t)b->ph[i].off,
					  .p_vaddr = (uint32_t)b->ph[i].paddr + 0xc0000000u,
					  .p_paddr = (uint32_t)b->ph[i].paddr,
					  .p_filesz = (uint32_t)b->ph[i].filesz,
					  .p_memsz = (uint32_t)b->ph[i].memsz,
					  .p_align = (uint32_t)b->ph[i].align };
			memcpy(d + sizeof(eh) + i * sizeof(ph), &ph, sizeof(ph));
		}
	}
}

static char *write_temp(const char *tmpl, const void *data, size_t len)
{
	char *path = strdup(tmpl);
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static char *write_initrd(uint64_t len)
{
	char *path = strdup("/tmp/kvmm-test-initrd-XXXXXX");
	int fd = mkstemp(path);
	uint8_t buf[512];

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	for (int i = 0; i < 512; i++)
		buf[i] = (uint8_t)(i ^ 0xc3);
	if (len >= 512)
		assert_int_equal(pwrite(fd, buf, 512, 0), 512);
	close(fd);
	return path;
}

struct run {
	struct guest_mem gm;
	struct x86_boot_regs regs;
	char err[512];
	int rc;
};

static void load(struct run *r, uint64_t ram, struct elfb *b,
		 const char *initrd, const char *cmdline, uint64_t rsdp)
{
	char *kpath;
	struct x86_boot_config cfg = { .initrd_path = initrd, .cmdline = cmdline,
				       .rsdp_addr = rsdp };

	elf_finish(b);
	kpath = write_temp("/tmp/kvmm-test-pvh-XXXXXX", b->d, b->size);
	cfg.kernel_path = kpath;
	memset(r, 0, sizeof(*r));
	assert_int_equal(gm_init(&r->gm, ram), 0);
	/* Poison around segment 1 to see BSS zeroing and its bound. */
	memset(gm_ptr(&r->gm, SEG1_PADDR, 0x6000), 0xaa, 0x6000);
	r->rc = x86_boot_load(&r->gm, &cfg, &r->regs, r->err, sizeof(r->err));
	if (r->rc) {
		assert_true(strstr(r->err, kpath) || !strncmp(r->err, "initrd ", 7));
		assert_null(strchr(r->err, '\n'));
	}
	unlink(kpath);
	free(kpath);
}

static void expect_error(struct run *r, int rc, const char *needle)
{
	if (r->rc != rc || !strstr(r->err, needle))
		fail_msg("expected %d \"%s\", got %d \"%s\"", rc, needle, r->rc, r->err);
	gm_destroy(&r->gm);
}

static const uint8_t *si_at(struct run *r)
{
	return gm_ptr(&r->gm, r->regs.rbx, 56);
}

/* ---- accepted images ---- */

static void test_elf64_pvh(void **state)
{
	struct elfb b;
	struct run r;
	uint64_t isz = 2 * MiB + 77;
	char *initrd = write_initrd(isz);
	const uint8_t *si, *mod, *mm;

	elf_init(&b, true, 8);
	add_note(&b, "Linux", 0x100, "salt", 4);
	load(&r, 128 * MiB, &b, initrd, "console=hvc0", 0xf0000);
	assert_int_equal(r.rc, 0);

	/* The vCPU: 32-bit protected mode at the note's entry, EBX = start_info. */
	assert_int_equal(r.regs.mode, X86_ENTRY_PROT32);
	assert_int_equal(r.regs.rip, ENTRY);
	assert_int_equal(r.regs.rbx, BOOT_START_INFO);
	assert_int_equal(r.regs.rax, 0);
	assert_int_equal(r.regs.cr3, 0);
	assert_int_equal(r.regs.gdt_base, BOOT_GDT_ADDR);
	assert_string_equal(r.regs.format, "pvh");
	assert_int_equal(r.regs.is_linux, 1);
	{
		const uint64_t *gdt = gm_ptr(&r.gm, BOOT_GDT_ADDR, 40);
		assert_int_equal(gdt[2], 0x00cf9b000000ffffull); /* D=1, not L */
		assert_int_equal(gdt[3], 0x00cf93000000ffffull);
	}
	/* No page tables for a 32-bit entry. */
	assert_int_equal(get64(gm_ptr(&r.gm, BOOT_PML4, 8)), 0);

	/* Segments: file bytes, then zeros to p_memsz, nothing beyond. */
	assert_memory_equal(gm_ptr(&r.gm, SEG1_PADDR, SEG1_FILE), b.d + SEG1_OFF, SEG1_FILE);
	{
		const uint8_t *p = gm_ptr(&r.gm, SEG1_PADDR, 0x6000);
		for (int i = SEG1_FILE; i < SEG1_MEM; i++)
			assert_int_equal(p[i], 0);
		assert_int_equal(p[SEG1_MEM], 0xaa);
	}
	assert_memory_equal(gm_ptr(&r.gm, SEG2_PADDR, SEG2_SIZE), b.d + SEG2_OFF, SEG2_SIZE);

	/* hvm_start_info */
	si = si_at(&r);
	assert_int_equal(get32(si + 0), 0x336ec578);
	assert_int_equal(get32(si + 4), 1);  /* version */
	assert_int_equal(get32(si + 8), 0);  /* flags */
	assert_int_equal(get32(si + 12), 1); /* nr_modules */
	assert_int_equal(get64(si + 24), BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)gm_ptr(&r.gm, get64(si + 24), 1), "console=hvc0");
	assert_int_equal(get64(si + 32), 0xf0000); /* rsdp_paddr */

	/* Module 0: the initrd, top of RAM, above every segment. */
	mod = gm_ptr(&r.gm, get64(si + 16), 32);
	assert_non_null(mod);
	assert_int_equal(get64(mod + 8), isz);
	assert_int_equal(get64(mod + 0) % 4096, 0);
	assert_int_equal(get64(mod + 0), (128 * MiB - isz) & ~0xfffull);
	assert_true(get64(mod + 0) >= SEG2_PADDR + SEG2_SIZE);
	assert_int_equal(*(uint8_t *)gm_ptr(&r.gm, get64(mod + 0) + 1, 1), 1 ^ 0xc3);

	/* The memory map: e820 entries as hvm_memmap_table_entry. */
	assert_int_equal(get32(si + 48), 3);
	mm = gm_ptr(&r.gm, get64(si + 40), 3 * 24);
	assert_non_null(mm);
	{
		const uint64_t want[3][3] = { { 0, 0x9fc00, 1 },
					      { 0x9fc00, 0x100000 - 0x9fc00, 2 },
					      { 0x100000, 127 * MiB, 1 } };
		for (int i = 0; i < 3; i++) {
			assert_int_equal(get64(mm + i * 24), want[i][0]);
			assert_int_equal(get64(mm + i * 24 + 8), want[i][1]);
			assert_int_equal(get32(mm + i * 24 + 16), want[i][2]);
			assert_int_equal(get32(mm + i * 24 + 20), 0);
		}
	}
	gm_destroy(&r.gm);
	unlink(initrd);
	free(initrd);
}

static void test_no_initrd_no_acpi(void **state)
{
	struct elfb b;
	struct run r;
	const uint8_t *si;

	elf_init(&b, true, 8);
	load(&r, 64 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	si = si_at(&r);
	assert_int_equal(get32(si + 12), 0);  /* nr_modules */
	assert_int_equal(get64(si + 16), 0);  /* modlist_paddr: absent */
	assert_int_equal(get64(si + 32), 0);  /* rsdp_paddr: absent */
	assert_string_equal((char *)gm_ptr(&r.gm, get64(si + 24), 1), "");
	assert_int_equal(r.regs.is_linux, 0); /* nothing says Linux */
	gm_destroy(&r.gm);
}

static void test_elf32_four_byte_note(void **state)
{
	struct elfb b;
	struct run r;

	elf_init(&b, false, 4);
	add_note(&b, "Xen", 6 /* XEN_ELFNOTE_GUEST_OS */, "linux", 6);
	load(&r, 64 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.rip, ENTRY);
	assert_int_equal(r.regs.is_linux, 1);
	assert_memory_equal(gm_ptr(&r.gm, SEG2_PADDR, SEG2_SIZE), b.d + SEG2_OFF, SEG2_SIZE);
	gm_destroy(&r.gm);

	elf_init(&b, false, 4);
	add_note(&b, "Xen", 6, "Mini-OS", 8);
	load(&r, 64 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.is_linux, 0);
	gm_destroy(&r.gm);
}

static void test_pvh_wins_over_multiboot(void **state)
{
	struct elfb b;
	struct run r;
	uint32_t mb[3] = { 0x1BADB002, 0x3, 0 };

	mb[2] = (uint32_t)-(mb[0] + mb[1]);
	elf_init(&b, true, 8);
	memcpy(b.d + SEG1_OFF + 0x40, mb, sizeof(mb));
	load(&r, 64 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.regs.format, "pvh");
	assert_int_equal(r.regs.rax, 0);
	gm_destroy(&r.gm);

	/* Without the PVH note the same file is a Multiboot kernel. */
	elf_init(&b, true, 0);
	b.entry = ENTRY + 0xffffffff80000000ull;
	memcpy(b.d + SEG1_OFF + 0x40, mb, sizeof(mb));
	load(&r, 64 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.regs.format, "multiboot");
	assert_int_equal(r.regs.rip, ENTRY);
	gm_destroy(&r.gm);
}

static void test_high_ram_memmap(void **state)
{
	struct elfb b;
	struct run r;
	const uint8_t *si, *mm;

	elf_init(&b, true, 8);
	load(&r, 5120 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	si = si_at(&r);
	assert_int_equal(get32(si + 48), 4);
	mm = gm_ptr(&r.gm, get64(si + 40), 4 * 24);
	assert_int_equal(get64(mm + 2 * 24 + 8), 3072 * MiB - 1 * MiB);
	assert_int_equal(get64(mm + 3 * 24), 0x100000000ull);
	assert_int_equal(get64(mm + 3 * 24 + 8), 2048 * MiB);
	assert_int_equal(get32(mm + 3 * 24 + 16), 1);
	gm_destroy(&r.gm);
}

/* ---- rejected images ---- */

static void test_segment_outside_ram(void **state)
{
	struct elfb b;
	struct run r;

	elf_init(&b, true, 8);
	b.ph[1].paddr = 128 * MiB - 0x400; /* runs 0x400 bytes past the end */
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOMEM, "segment 1 [0x7fffc00, 0x8000400) does not fit in guest RAM");

	/* Into the MMIO hole of a big guest. */
	elf_init(&b, true, 8);
	b.ph[1].paddr = GM_HOLE_START;
	load(&r, 5120 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOMEM, "segment 1");

	/* Over the loader's own structures. */
	elf_init(&b, true, 8);
	b.ph[1].paddr = BOOT_START_INFO;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "segment 1 at 0x6000 lies below 1 MiB");

	/* A 64-bit address that wraps. */
	elf_init(&b, true, 8);
	b.ph[0].paddr = 0xfffffffffffff000ull;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "wraps around");

	/* Nothing was written by a refused image: segment 0 was fine, but
	 * the check runs before any copy. */
	elf_init(&b, true, 8);
	b.ph[1].paddr = 128 * MiB;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	assert_int_equal(*(uint8_t *)gm_ptr(&r.gm, SEG1_PADDR, 1), 0xaa);
	expect_error(&r, -ENOMEM, "segment 1");
}

static void test_segment_outside_file(void **state)
{
	struct elfb b;
	struct run r;

	elf_init(&b, true, 8);
	b.ph[1].filesz = 0x10000;
	b.ph[1].memsz = 0x10000;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "segment 1: file range");

	elf_init(&b, true, 8);
	b.ph[1].off = 0xffffffffffffff00ull;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "past the end of the file");

	elf_init(&b, true, 8);
	b.ph[0].filesz = SEG1_MEM + 1;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "exceeds p_memsz");
}

static void test_truncated_headers(void **state)
{
	struct elfb b;
	struct run r;

	elf_init(&b, true, 8);
	b.phnum_override = 400; /* table runs past the end of the file */
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "truncated program headers");

	elf_init(&b, true, 8);
	b.size = 40; /* shorter than an ELF64 header */
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "truncated ELF header");

	elf_init(&b, true, 8);
	b.size = NOTE_OFF + 8; /* the note segment is cut */
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "note segment 2 lies past the end of the file");
}

static void test_missing_or_bad_entry(void **state)
{
	struct elfb b;
	struct run r;

	/* No PVH note, no Multiboot header: not a kernel we know. */
	elf_init(&b, true, 0);
	add_note(&b, "Linux", 0x100, "salt", 4);
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");

	/* A PVH note of the wrong size. */
	elf_init(&b, true, 0);
	add_note(&b, "Xen", 18, "\x10\x00", 2);
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "has 2 bytes, expected 4 or 8");

	/* An entry outside the loaded segments. */
	elf_init(&b, true, 0);
	{
		uint64_t e = 0x900000;
		add_note(&b, "Xen", 18, &e, 8);
	}
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "PVH entry point 0x900000 lies outside the loaded segments");

	/* An 8-byte entry above 4 GiB is outside too. */
	elf_init(&b, true, 0);
	{
		uint64_t e = 0x100200010ull;
		add_note(&b, "Xen", 18, &e, 8);
	}
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "lies outside the loaded segments");
}

static void test_malformed_notes_and_headers(void **state)
{
	struct elfb b;
	struct run r;

	/* A note whose name runs past its segment. */
	elf_init(&b, true, 8);
	put32(b.d + NOTE_OFF, 0x10000);
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "name runs past the segment");

	elf_init(&b, true, 8);
	put32(b.d + NOTE_OFF + 4, 0xfffffff0);
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "descriptor runs past the segment");

	elf_init(&b, true, 8);
	b.machine = EM_AARCH64;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "is not x86");

	elf_init(&b, true, 8);
	b.type = ET_DYN;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not an executable");

	elf_init(&b, true, 8);
	b.data_enc = ELFDATA2MSB;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not little-endian");

	/* Only notes, nothing to load. */
	elf_init(&b, true, 8);
	b.ph[0].type = PT_NULL;
	b.ph[1].type = PT_NULL;
	load(&r, 128 * MiB, &b, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "no loadable segment");
}

static void test_initrd_too_big(void **state)
{
	struct elfb b;
	struct run r;
	char *initrd = write_initrd(200 * MiB);

	elf_init(&b, true, 8);
	load(&r, 128 * MiB, &b, initrd, NULL, 0);
	expect_error(&r, -ENOMEM, "(200 MiB) does not fit in guest RAM below 0x8000000");
	unlink(initrd);
	free(initrd);
}

static void test_cmdline_too_long(void **state)
{
	struct elfb b;
	struct run r;
	char big[BOOT_CMDLINE_MAX + 1];

	memset(big, 'x', sizeof(big) - 1);
	big[BOOT_CMDLINE_MAX] = '\0';
	elf_init(&b, true, 8);
	load(&r, 128 * MiB, &b, NULL, big, 0);
	expect_error(&r, -E2BIG, "command line is 4096 bytes");
}

/* Random corruption of headers and notes never crashes the loader. */
static void test_corrupted_images_never_crash(void **state)
{
	struct elfb b, c;
	struct guest_mem gm;
	char *path = write_temp("/tmp/kvmm-test-pvh-XXXXXX", "", 0);
	unsigned seed = 777;
	int accepted = 0, refused = 0;

	elf_init(&b, true, 8);
	add_note(&b, "Linux", 0x100, "salt", 4);
	elf_finish(&b);
	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	for (int it = 0; it < 3000; it++) {
		struct x86_boot_config cfg = { .kernel_path = path };
		struct x86_boot_regs regs;
		char err[512] = "";
		FILE *f;
		int rc;

		c = b;
		if (it % 2)
			c.d[EI_CLASS] = ELFCLASS32; /* reinterpret as ELF32 */
		for (int k = 0; k < 3; k++) {
			seed = seed * 1103515245 + 12345;
			size_t off = (seed >> 8) % 0x100;
			if (k == 2)
				off = NOTE_OFF + (seed >> 8) % 0x40;
			if (off < SELFMAG)
				continue;
			c.d[off] = (uint8_t)(seed >> 20);
		}
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(c.d, 1, c.size, f), c.size);
		fclose(f);
		rc = x86_boot_load(&gm, &cfg, &regs, err, sizeof(err));
		if (rc) {
			assert_true(rc < 0 && err[0]);
			refused++;
		} else {
			assert_true(regs.rip < 64 * MiB);
			accepted++;
		}
	}
	assert_true(accepted > 0);
	assert_true(refused > 0);
	gm_destroy(&gm);
	unlink(path);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_elf64_pvh),
		cmocka_unit_test(test_no_initrd_no_acpi),
		cmocka_unit_test(test_elf32_four_byte_note),
		cmocka_unit_test(test_pvh_wins_over_multiboot),
		cmocka_unit_test(test_high_ram_memmap),
		cmocka_unit_test(test_segment_outside_ram),
		cmocka_unit_test(test_segment_outside_file),
		cmocka_unit_test(test_truncated_headers),
		cmocka_unit_test(test_missing_or_bad_entry),
		cmocka_unit_test(test_malformed_notes_and_headers),
		cmocka_unit_test(test_initrd_too_big),
		cmocka_unit_test(test_cmdline_too_long),
		cmocka_unit_test(test_corrupted_images_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
