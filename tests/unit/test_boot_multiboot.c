/*
 * test_boot_multiboot.c - the Multiboot v1 loader
 * (src/arch/x86/boot_multiboot.c).
 *
 * Two kinds of synthetic image are built in temp files: raw binaries that
 * use the a.out kludge (header flag 16: the header says where the file
 * goes) and ELF32 files loaded by program headers, including a higher-half
 * one whose e_entry is virtual.  The tests then read the multiboot_info
 * structure from guest RAM at EBX, as a kernel would, using the offsets of
 * the Multiboot 0.6.96 specification, section 3.3 - written out here, not
 * taken from the loader.  Rejection tests cover every validated header
 * field, and a seeded corruption loop checks that no header can crash the
 * loader.
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

#define MB_MAGIC      0x1BADB002u
#define MB_EAX_MAGIC  0x2BADB002u
#define MB_AOUT       (1u << 16)

/* multiboot_info offsets and flags (spec 3.3) */
#define MBI_FLAGS       0
#define MBI_MEM_LOWER   4
#define MBI_MEM_UPPER   8
#define MBI_CMDLINE     16
#define MBI_MODS_COUNT  20
#define MBI_MODS_ADDR   24
#define MBI_MMAP_LENGTH 44
#define MBI_MMAP_ADDR   48
#define MBI_LOADER_NAME 64
#define F_MEM     (1u << 0)
#define F_CMDLINE (1u << 2)
#define F_MODS    (1u << 3)
#define F_MMAP    (1u << 6)
#define F_NAME    (1u << 9)

#define IMG_SIZE  0x2800
#define LOAD_ADDR 0x100000u

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

struct img {
	uint8_t d[IMG_SIZE];
	size_t size;
};

struct aout {
	uint32_t flags, header_addr, load_addr, load_end, bss_end, entry;
	size_t hoff;   /* header's file offset */
	bool bad_sum;
};

static void put_header(uint8_t *p, uint32_t flags, bool bad_sum)
{
	put32(p, MB_MAGIC);
	put32(p + 4, flags);
	put32(p + 8, (uint32_t)-(MB_MAGIC + flags) + (bad_sum ? 1 : 0));
}

/* A raw a.out-kludge image: bytes patterned, header at a.hoff. */
static void make_aout(struct img *m, const struct aout *a)
{
	m->size = IMG_SIZE;
	for (size_t i = 0; i < IMG_SIZE; i++)
		m->d[i] = (uint8_t)(i * 11 + 7);
	put_header(m->d + a->hoff, a->flags, a->bad_sum);
	put32(m->d + a->hoff + 12, a->header_addr);
	put32(m->d + a->hoff + 16, a->load_addr);
	put32(m->d + a->hoff + 20, a->load_end);
	put32(m->d + a->hoff + 24, a->bss_end);
	put32(m->d + a->hoff + 28, a->entry);
}

static struct aout good_aout(void)
{
	return (struct aout){ .flags = MB_AOUT | 0x3, .header_addr = LOAD_ADDR,
			      .load_addr = LOAD_ADDR, .load_end = LOAD_ADDR + 0x1000,
			      .bss_end = LOAD_ADDR + 0x4000, .entry = LOAD_ADDR + 0x40 };
}

/* An ELF32 higher-half kernel: one PT_LOAD (file 0x1000 at 0x1000, 0x3000
 * in memory) at p_paddr 1 MiB, p_vaddr 0xc0100000, and a Multiboot header
 * (without the kludge) inside the segment. */
#define ELF_SEG_OFF 0x1000
#define ELF_VBASE   0xc0100000u
static void make_elf32(struct img *m, uint32_t entry_virt)
{
	Elf32_Ehdr eh = { 0 };
	Elf32_Phdr ph = { 0 };

	memset(m, 0, sizeof(*m));
	m->size = ELF_SEG_OFF + 0x1000;
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = entry_virt;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	ph.p_type = PT_LOAD;
	ph.p_offset = ELF_SEG_OFF;
	ph.p_vaddr = ELF_VBASE;
	ph.p_paddr = LOAD_ADDR;
	ph.p_filesz = 0x1000;
	ph.p_memsz = 0x3000;
	ph.p_align = 0x1000;
	memcpy(m->d, &eh, sizeof(eh));
	memcpy(m->d + sizeof(eh), &ph, sizeof(ph));
	for (size_t i = 0; i < 0x1000; i++)
		m->d[ELF_SEG_OFF + i] = (uint8_t)(i * 3 + 1);
	put_header(m->d + ELF_SEG_OFF + 0x10, 0x3, false);
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
	char *path = strdup("/tmp/kvmm-test-module-XXXXXX");
	int fd = mkstemp(path);
	uint8_t buf[256];

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	for (int i = 0; i < 256; i++)
		buf[i] = (uint8_t)(255 - i);
	if (len >= 256)
		assert_int_equal(pwrite(fd, buf, 256, 0), 256);
	close(fd);
	return path;
}

struct run {
	struct guest_mem gm;
	struct x86_boot_regs regs;
	char err[512];
	char kpath[64];
	int rc;
};

static void load(struct run *r, uint64_t ram, const struct img *m,
		 const char *initrd, const char *cmdline)
{
	char *kpath = write_temp("/tmp/kvmm-test-mb-XXXXXX", m->d, m->size);
	struct x86_boot_config cfg = { .kernel_path = kpath, .initrd_path = initrd,
				       .cmdline = cmdline };

	memset(r, 0, sizeof(*r));
	snprintf(r->kpath, sizeof(r->kpath), "%s", kpath);
	assert_int_equal(gm_init(&r->gm, ram), 0);
	memset(gm_ptr(&r->gm, LOAD_ADDR, 0x8000), 0xaa, 0x8000); /* poison */
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

static const uint8_t *mbi(struct run *r)
{
	return gm_ptr(&r->gm, r->regs.rbx, 88);
}

static const char *gstr(struct run *r, uint32_t addr)
{
	const char *s = gm_ptr(&r->gm, addr, 1);
	assert_non_null(s);
	return s;
}

/* Walk the mmap the way the spec says (step size + 4) and compare. */
static void check_mmap(struct run *r, const uint64_t (*want)[3], int n)
{
	const uint8_t *info = mbi(r);
	uint32_t len = get32(info + MBI_MMAP_LENGTH), addr = get32(info + MBI_MMAP_ADDR);
	int i = 0;

	assert_int_equal(len, n * 24);
	for (uint32_t off = 0; off < len; i++) {
		const uint8_t *e = gm_ptr(&r->gm, addr + off, 24);
		assert_non_null(e);
		assert_true(i < n);
		assert_int_equal(get32(e), 20);
		assert_int_equal(get64(e + 4), want[i][0]);
		assert_int_equal(get64(e + 12), want[i][1]);
		assert_int_equal(get32(e + 20), want[i][2]);
		off += get32(e) + 4;
	}
	assert_int_equal(i, n);
}

/* ---- accepted images ---- */

static void test_aout_kludge_info(void **state)
{
	struct aout a = good_aout();
	struct img m;
	struct run r;
	uint64_t isz = 1 * MiB + 5;
	char *initrd = write_initrd(isz);
	char want_cmd[128];
	const uint8_t *info, *mod;

	make_aout(&m, &a);
	load(&r, 128 * MiB, &m, initrd, "console=ttyS0");
	assert_int_equal(r.rc, 0);

	assert_int_equal(r.regs.mode, X86_ENTRY_PROT32);
	assert_int_equal(r.regs.rip, LOAD_ADDR + 0x40);
	assert_int_equal(r.regs.rax, MB_EAX_MAGIC);
	assert_int_equal(r.regs.rbx, BOOT_START_INFO);
	assert_int_equal(r.regs.cr3, 0);
	assert_string_equal(r.regs.format, "multiboot");
	assert_int_equal(r.regs.is_linux, 0);
	assert_int_equal(((const uint64_t *)gm_ptr(&r.gm, BOOT_GDT_ADDR, 40))[2],
			 0x00cf9b000000ffffull);

	/* [load_addr, load_end_addr) from the file, zeros to bss_end_addr. */
	assert_memory_equal(gm_ptr(&r.gm, LOAD_ADDR, 0x1000), m.d, 0x1000);
	{
		const uint8_t *p = gm_ptr(&r.gm, LOAD_ADDR + 0x1000, 0x3000);
		for (int i = 0; i < 0x3000; i++)
			assert_int_equal(p[i], 0);
	}

	info = mbi(&r);
	assert_int_equal(get32(info + MBI_FLAGS), F_MEM | F_CMDLINE | F_MODS | F_MMAP | F_NAME);
	assert_int_equal(get32(info + MBI_MEM_LOWER), 639);
	assert_int_equal(get32(info + MBI_MEM_UPPER), (128 * MiB - 1 * MiB) / 1024);
	snprintf(want_cmd, sizeof(want_cmd), "%s console=ttyS0", r.kpath);
	assert_string_equal(gstr(&r, get32(info + MBI_CMDLINE)), want_cmd);
	assert_string_equal(gstr(&r, get32(info + MBI_LOADER_NAME)), "kvmm");

	/* The module: page aligned right above bss_end_addr, named by its path. */
	assert_int_equal(get32(info + MBI_MODS_COUNT), 1);
	mod = gm_ptr(&r.gm, get32(info + MBI_MODS_ADDR), 16);
	assert_non_null(mod);
	assert_int_equal(get32(mod + 0), LOAD_ADDR + 0x4000);
	assert_int_equal(get32(mod + 4), LOAD_ADDR + 0x4000 + isz);
	assert_string_equal(gstr(&r, get32(mod + 8)), initrd);
	assert_int_equal(*(uint8_t *)gm_ptr(&r.gm, get32(mod + 0) + 3, 1), 252);

	{
		const uint64_t want[3][3] = { { 0, 0x9fc00, 1 },
					      { 0x9fc00, 0x60400, 2 },
					      { 0x100000, 127 * MiB, 1 } };
		check_mmap(&r, want, 3);
	}
	gm_destroy(&r.gm);
	unlink(initrd);
	free(initrd);
}

static void test_aout_header_inside_image(void **state)
{
	struct aout a = good_aout();
	struct img m;
	struct run r;
	const uint8_t *info;

	/* Header at file offset 0x100; load_end 0: the whole file; no BSS. */
	a.hoff = 0x100;
	a.header_addr = LOAD_ADDR + 0x100;
	a.load_end = 0;
	a.bss_end = 0;
	a.entry = LOAD_ADDR + IMG_SIZE - 4;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.rip, LOAD_ADDR + IMG_SIZE - 4);
	assert_memory_equal(gm_ptr(&r.gm, LOAD_ADDR, IMG_SIZE), m.d, IMG_SIZE);
	assert_int_equal(*(uint8_t *)gm_ptr(&r.gm, LOAD_ADDR + IMG_SIZE, 1), 0xaa);
	info = mbi(&r);
	assert_int_equal(get32(info + MBI_FLAGS), F_MEM | F_CMDLINE | F_MMAP | F_NAME);
	assert_int_equal(get32(info + MBI_MODS_COUNT), 0);
	assert_string_equal(gstr(&r, get32(info + MBI_CMDLINE)), r.kpath);
	gm_destroy(&r.gm);

	/* The header may also sit after load_addr's start in a cropped image:
	 * load_addr < header_addr with the header later in the file. */
	a = good_aout();
	a.hoff = 0x800;
	a.header_addr = LOAD_ADDR + 0x400;
	a.load_addr = LOAD_ADDR;
	a.load_end = LOAD_ADDR + 0x1000;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	assert_int_equal(r.rc, 0);
	/* load_addr maps to file offset 0x800 - 0x400 = 0x400. */
	assert_memory_equal(gm_ptr(&r.gm, LOAD_ADDR, 0x1000), m.d + 0x400, 0x1000);
	gm_destroy(&r.gm);
}

static void test_elf32_higher_half(void **state)
{
	struct img m;
	struct run r;

	make_elf32(&m, ELF_VBASE + 0x20);
	load(&r, 64 * MiB, &m, NULL, "a b");
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.regs.format, "multiboot");
	assert_int_equal(r.regs.rip, LOAD_ADDR + 0x20); /* translated to physical */
	assert_int_equal(r.regs.rax, MB_EAX_MAGIC);
	assert_memory_equal(gm_ptr(&r.gm, LOAD_ADDR, 0x1000), m.d + ELF_SEG_OFF, 0x1000);
	{
		const uint8_t *p = gm_ptr(&r.gm, LOAD_ADDR + 0x1000, 0x2001);
		for (int i = 0; i < 0x2000; i++)
			assert_int_equal(p[i], 0);
		assert_int_equal(p[0x2000], 0xaa);
	}
	gm_destroy(&r.gm);
}

static void test_high_ram_and_video_flag(void **state)
{
	struct aout a = good_aout();
	struct img m;
	struct run r;
	const uint8_t *info;

	a.flags |= 1u << 2; /* video mode wanted: optional to honour */
	make_aout(&m, &a);
	load(&r, 5120 * MiB, &m, NULL, NULL);
	assert_int_equal(r.rc, 0);
	info = mbi(&r);
	assert_int_equal(get32(info + MBI_MEM_UPPER), (3072 * MiB - 1 * MiB) / 1024);
	{
		const uint64_t want[4][3] = { { 0, 0x9fc00, 1 },
					      { 0x9fc00, 0x60400, 2 },
					      { 0x100000, 3072 * MiB - 1 * MiB, 1 },
					      { 0x100000000ull, 2048 * MiB, 1 } };
		check_mmap(&r, want, 4);
	}
	gm_destroy(&r.gm);
}

/* ---- rejected images ---- */

static void test_header_rejections(void **state)
{
	struct aout a;
	struct img m;
	struct run r;

	a = good_aout();
	a.flags |= 1u << 3; /* a requirement we do not know */
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "requires features kvmm does not provide (flags 0x8)");

	a = good_aout();
	a.bad_sum = true;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");

	/* A header past the first 8192 bytes does not count. */
	a = good_aout();
	a.hoff = 8192;
	a.header_addr = LOAD_ADDR + 8192;
	make_aout(&m, &a);
	memset(m.d, 0, 8192);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");

	/* The kludge fields cut off by the end of the file. */
	a = good_aout();
	make_aout(&m, &a);
	m.size = 20;
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "truncated multiboot header");

	/* Neither ELF nor the kludge. */
	a = good_aout();
	a.flags = 0x3;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "neither ELF nor uses the a.out kludge");
}

static void test_aout_address_rejections(void **state)
{
	struct aout a;
	struct img m;
	struct run r;

	a = good_aout();
	a.load_addr = LOAD_ADDR + 0x10; /* above header_addr */
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "load_addr 0x100010 lies above header_addr 0x100000");

	a = good_aout();
	a.load_addr = LOAD_ADDR - 0x1000; /* would start 4 KiB before the file */
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "lies before the start of the file");

	a = good_aout();
	a.load_end = LOAD_ADDR + IMG_SIZE + 1;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "load_end_addr 0x102801 lies past the end of the file");

	a = good_aout();
	a.load_end = LOAD_ADDR - 1;
	a.header_addr = LOAD_ADDR;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "lies below load_addr");

	a = good_aout();
	a.bss_end = LOAD_ADDR + 0x800; /* below load_end_addr */
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "bss_end_addr 0x100800 lies below the end of the loaded image");

	a = good_aout();
	a.entry = LOAD_ADDR + 0x4000; /* == bss_end: one past the image */
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "entry_addr 0x104000 lies outside the loaded image");

	a = good_aout();
	a.header_addr = a.load_addr = 0x7000; /* over the zero page */
	a.load_end = 0x8000;
	a.bss_end = 0;
	a.entry = 0x7000;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "lies below 1 MiB");

	a = good_aout();
	a.header_addr = a.load_addr = 64 * MiB - 0x1000;
	a.load_end = a.load_addr + 0x1000;
	a.bss_end = a.load_addr + 0x2000; /* BSS past the end of RAM */
	a.entry = a.load_addr;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOMEM, "does not fit in guest RAM");

	a = good_aout();
	a.header_addr = a.load_addr = 0xfffff000u; /* wraps within 32 bits */
	a.load_end = 0;
	a.bss_end = 0;
	a.entry = a.load_addr;
	make_aout(&m, &a);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOMEM, "does not fit in guest RAM");
}

static void test_elf_rejections(void **state)
{
	struct img m;
	struct run r;

	make_elf32(&m, 0x12345678); /* in no segment */
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "ELF entry point 0x12345678 is not inside any loadable segment");

	/* A broken ELF with a multiboot header and no kludge: say what broke. */
	make_elf32(&m, ELF_VBASE);
	put32(m.d + offsetof(Elf32_Ehdr, e_phoff), 0x7ffffff0);
	load(&r, 64 * MiB, &m, NULL, NULL);
	expect_error(&r, -ENOEXEC, "truncated program headers");
}

static void test_module_and_cmdline_rejections(void **state)
{
	struct aout a = good_aout();
	struct img m;
	struct run r;
	char *initrd = write_initrd(200 * MiB);
	char big[BOOT_CMDLINE_MAX];

	make_aout(&m, &a);
	load(&r, 128 * MiB, &m, initrd, NULL);
	expect_error(&r, -ENOMEM, "(200 MiB) does not fit in guest RAM below 0x8000000");
	unlink(initrd);
	free(initrd);

	/* The kernel path counts against the command line. */
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1 - 10] = '\0';
	load(&r, 128 * MiB, &m, NULL, big);
	expect_error(&r, -E2BIG, "with the kernel path in front");
}

static void test_corrupted_headers_never_crash(void **state)
{
	struct aout a = good_aout();
	struct img m, c;
	struct guest_mem gm;
	char *path = write_temp("/tmp/kvmm-test-mb-XXXXXX", "", 0);
	unsigned seed = 4242;
	int accepted = 0, refused = 0;

	make_aout(&m, &a);
	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	for (int it = 0; it < 3000; it++) {
		struct x86_boot_config cfg = { .kernel_path = path };
		struct x86_boot_regs regs;
		char err[512] = "";
		FILE *f;
		int rc;

		c = m;
		seed = seed * 1103515245 + 12345;
		/* Change one kludge field and fix the checksum half the time. */
		int field = 1 + (seed >> 8) % 7;
		uint32_t v = seed ^ (seed << 7);
		if (it % 3 == 0)
			v = LOAD_ADDR + (v % 0x6000);
		put32(c.d + field * 4, v);
		if (it % 2)
			put32(c.d + 8, (uint32_t)-(get32(c.d) + get32(c.d + 4)));
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(c.d, 1, c.size, f), c.size);
		fclose(f);
		rc = x86_boot_load(&gm, &cfg, &regs, err, sizeof(err));
		if (rc) {
			assert_true(rc < 0 && err[0]);
			refused++;
		} else {
			assert_true(regs.rip >= BOOT_HIGH_START && regs.rip < 64 * MiB);
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
		cmocka_unit_test(test_aout_kludge_info),
		cmocka_unit_test(test_aout_header_inside_image),
		cmocka_unit_test(test_elf32_higher_half),
		cmocka_unit_test(test_high_ram_and_video_flag),
		cmocka_unit_test(test_header_rejections),
		cmocka_unit_test(test_aout_address_rejections),
		cmocka_unit_test(test_elf_rejections),
		cmocka_unit_test(test_module_and_cmdline_rejections),
		cmocka_unit_test(test_corrupted_headers_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
