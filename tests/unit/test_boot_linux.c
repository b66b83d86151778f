/*
 * test_boot_linux.c - the bzImage loader (src/arch/x86/boot_linux.c).
 *
 * Each test builds a synthetic bzImage in a temp file (boot sector, setup
 * header, a patterned protected-mode kernel), loads it into fresh guest RAM
 * and checks what the guest will see: the zero page field by field (at the
 * offsets of bootparam.h, written out here independently of the loader's
 * struct), the kernel bytes, the command line, the initrd placement and the
 * entry registers.  The rejection tests feed malformed or hostile headers
 * and check for the right errno and a message naming the problem; a seeded
 * corruption loop checks that no header byte can crash the loader.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
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

/* Offsets from Documentation/arch/x86/boot.rst and bootparam.h. */
#define OFF_SETUP_SECTS     0x1f1
#define OFF_BOOT_FLAG       0x1fe
#define OFF_JUMP            0x200
#define OFF_HEADER          0x202
#define OFF_VERSION         0x206
#define OFF_KERNEL_VERSION  0x20e
#define OFF_TYPE_OF_LOADER  0x210
#define OFF_LOADFLAGS       0x211
#define OFF_CODE32_START    0x214
#define OFF_RAMDISK_IMAGE   0x218
#define OFF_RAMDISK_SIZE    0x21c
#define OFF_HEAP_END_PTR    0x224
#define OFF_CMD_LINE_PTR    0x228
#define OFF_INITRD_ADDR_MAX 0x22c
#define OFF_KERNEL_ALIGN    0x230
#define OFF_RELOCATABLE     0x234
#define OFF_XLOADFLAGS      0x236
#define OFF_CMDLINE_SIZE    0x238
#define OFF_SETUP_DATA      0x250
#define OFF_PREF_ADDRESS    0x258
#define OFF_INIT_SIZE       0x260
#define OFF_HDR_END_2_15    0x26c
#define OFF_ACPI_RSDP       0x070
#define OFF_EXT_RAMDISK_IMG 0x0c0
#define OFF_EXT_RAMDISK_SZ  0x0c4
#define OFF_EXT_CMD_LINE    0x0c8
#define OFF_E820_ENTRIES    0x1e8
#define OFF_SENTINEL        0x1ef
#define OFF_E820_TABLE      0x2d0

#define SETUP_SECTS 4
#define PM_OFF      ((SETUP_SECTS + 1) * 512)
#define PM_SIZE     0x3000
#define LOAD        0x1000000ull
#define INIT_SIZE   0x400000u

struct img {
	uint8_t *d;
	size_t size;
};

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint8_t get8(const uint8_t *p) { return *p; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* A well-formed protocol 2.15 bzImage like Debian's, shrunk. */
static struct img make_bzimage(void)
{
	struct img m = { .size = PM_OFF + PM_SIZE };
	uint8_t *d = m.d = calloc(1, m.size);

	assert_non_null(d);
	d[OFF_SETUP_SECTS] = SETUP_SECTS;
	put16(d + OFF_BOOT_FLAG, 0xaa55);
	d[OFF_JUMP] = 0xeb;
	d[OFF_JUMP + 1] = OFF_HDR_END_2_15 - 0x202;
	memcpy(d + OFF_HEADER, "HdrS", 4);
	put16(d + OFF_VERSION, 0x020f);
	put16(d + OFF_KERNEL_VERSION, 0x300);
	strcpy((char *)d + 0x300 + 0x200, "6.1.0-test (kvmm@test) #1 SMP");
	d[OFF_LOADFLAGS] = 0x01; /* LOADED_HIGH */
	put32(d + OFF_INITRD_ADDR_MAX, 0x7fffffff);
	put32(d + OFF_KERNEL_ALIGN, 0x200000);
	d[OFF_RELOCATABLE] = 1;
	put16(d + OFF_XLOADFLAGS, 0x1); /* XLF_KERNEL_64 */
	put32(d + OFF_CMDLINE_SIZE, 0x7ff);
	put64(d + OFF_PREF_ADDRESS, LOAD);
	put32(d + OFF_INIT_SIZE, INIT_SIZE);
	/* Junk the loader must overwrite or must not copy. */
	d[OFF_TYPE_OF_LOADER] = 0x12;
	put32(d + OFF_RAMDISK_IMAGE, 0x12345678);
	put64(d + OFF_SETUP_DATA, 0xdeadbeef);
	d[OFF_SENTINEL] = 0xff;
	d[OFF_HDR_END_2_15] = 0x55;
	for (size_t i = 0; i < PM_SIZE; i++)
		d[PM_OFF + i] = (uint8_t)(i * 7 + 3);
	return m;
}

static char *write_temp(const void *data, size_t len)
{
	char *path = strdup("/tmp/kvmm-test-bzimage-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

/* A sparse file of `len` bytes with a pattern in its first and last KiB. */
static char *write_initrd(uint64_t len)
{
	char *path = strdup("/tmp/kvmm-test-initrd-XXXXXX");
	int fd = mkstemp(path);
	uint8_t buf[1024];

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	for (int i = 0; i < 1024; i++)
		buf[i] = (uint8_t)(i ^ 0x5a);
	if (len >= 2048) {
		assert_int_equal(pwrite(fd, buf, 1024, 0), 1024);
		assert_int_equal(pwrite(fd, buf, 1024, (off_t)(len - 1024)), 1024);
	}
	close(fd);
	return path;
}

struct run {
	struct guest_mem gm;
	struct x86_boot_regs regs;
	char err[512];
	int rc;
	uint8_t *zp;
};

static void load(struct run *r, uint64_t ram, const struct img *m,
		 const char *initrd, const char *cmdline, uint64_t rsdp)
{
	char *kpath = write_temp(m->d, m->size);
	struct x86_boot_config cfg = { .kernel_path = kpath, .initrd_path = initrd,
				       .cmdline = cmdline, .rsdp_addr = rsdp };

	memset(r, 0, sizeof(*r));
	assert_int_equal(gm_init(&r->gm, ram), 0);
	r->rc = x86_boot_load(&r->gm, &cfg, &r->regs, r->err, sizeof(r->err));
	r->zp = gm_ptr(&r->gm, BOOT_ZERO_PAGE, 4096);
	if (r->rc) {
		/* Every error is one line naming the file at fault. */
		assert_true(strstr(r->err, kpath) || !strncmp(r->err, "initrd ", 7));
		assert_null(strchr(r->err, '\n'));
	}
	unlink(kpath);
	free(kpath);
}

static void done(struct run *r) { gm_destroy(&r->gm); }

static void expect_error(struct run *r, int rc, const char *needle)
{
	if (r->rc != rc || !strstr(r->err, needle))
		fail_msg("expected %d \"%s\", got %d \"%s\"", rc, needle, r->rc, r->err);
}

/* ---- accepted images ---- */

static void test_zero_page_and_regs(void **state)
{
	struct img m = make_bzimage();
	uint64_t isz = 1 * MiB + 123;
	char *initrd = write_initrd(isz);
	struct run r;
	uint32_t img_addr;

	load(&r, 256 * MiB, &m, initrd, "console=ttyS0 quiet", 0xf0000);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.err, "");

	/* Entry state: startup_64 at load + 0x200, boot_params in RSI. */
	assert_int_equal(r.regs.mode, X86_ENTRY_LONG64);
	assert_int_equal(r.regs.rip, LOAD + 0x200);
	assert_int_equal(r.regs.rsi, BOOT_ZERO_PAGE);
	assert_int_equal(r.regs.rsp, BOOT_STACK_TOP);
	assert_int_equal(r.regs.cr3, BOOT_PML4);
	assert_int_equal(r.regs.rax, 0);
	assert_int_equal(r.regs.rbx, 0);
	assert_int_equal(r.regs.gdt_base, BOOT_GDT_ADDR);
	assert_int_equal(r.regs.gdt_limit, BOOT_GDT_ENTRIES * 8 - 1);
	assert_string_equal(r.regs.format, "bzImage");
	assert_int_equal(r.regs.is_linux, 1);

	/* The setup header was copied ... */
	assert_int_equal(get8(r.zp + OFF_SETUP_SECTS), SETUP_SECTS);
	assert_memory_equal(r.zp + OFF_HEADER, "HdrS", 4);
	assert_int_equal(get16(r.zp + OFF_VERSION), 0x020f);
	assert_int_equal(get64(r.zp + OFF_PREF_ADDRESS), LOAD);
	assert_int_equal(get32(r.zp + OFF_INIT_SIZE), INIT_SIZE);
	/* ... but nothing past its end, and the rest of the page is clean. */
	assert_int_equal(get8(r.zp + OFF_HDR_END_2_15), 0);
	assert_int_equal(get8(r.zp + OFF_SENTINEL), 0);
	/* Loader-owned fields. */
	assert_int_equal(get8(r.zp + OFF_TYPE_OF_LOADER), 0xff);
	assert_int_equal(get8(r.zp + OFF_LOADFLAGS), 0x81); /* LOADED_HIGH | CAN_USE_HEAP */
	assert_int_equal(get16(r.zp + OFF_HEAP_END_PTR), 0xfe00);
	assert_int_equal(get64(r.zp + OFF_SETUP_DATA), 0);
	assert_int_equal(get32(r.zp + OFF_CODE32_START), LOAD);
	assert_int_equal(get32(r.zp + OFF_CMD_LINE_PTR), BOOT_CMDLINE_ADDR);
	assert_int_equal(get32(r.zp + OFF_EXT_CMD_LINE), 0);
	assert_string_equal((char *)gm_ptr(&r.gm, BOOT_CMDLINE_ADDR, 1), "console=ttyS0 quiet");
	assert_int_equal(get64(r.zp + OFF_ACPI_RSDP), 0xf0000);

	/* The initrd: highest 4 KiB-aligned spot below the end of RAM. */
	img_addr = get32(r.zp + OFF_RAMDISK_IMAGE);
	assert_int_equal(get32(r.zp + OFF_RAMDISK_SIZE), isz);
	assert_int_equal(get32(r.zp + OFF_EXT_RAMDISK_IMG), 0);
	assert_int_equal(get32(r.zp + OFF_EXT_RAMDISK_SZ), 0);
	assert_int_equal(img_addr % 4096, 0);
	assert_int_equal(img_addr, (256 * MiB - isz) & ~0xfffull);
	assert_true(img_addr >= LOAD + INIT_SIZE);
	{
		const uint8_t *p = gm_ptr(&r.gm, img_addr, isz);
		for (int i = 0; i < 1024; i++) {
			assert_int_equal(p[i], (uint8_t)(i ^ 0x5a));
			assert_int_equal(p[isz - 1024 + i], (uint8_t)(i ^ 0x5a));
		}
	}

	/* The e820 table. */
	assert_int_equal(get8(r.zp + OFF_E820_ENTRIES), 3);
	{
		const uint8_t *e = r.zp + OFF_E820_TABLE;
		const uint64_t want[3][3] = { { 0, 0x9fc00, 1 },
					      { 0x9fc00, 0x60400, 2 },
					      { 0x100000, 255 * MiB, 1 } };
		for (int i = 0; i < 3; i++) {
			assert_int_equal(get64(e + i * 20), want[i][0]);
			assert_int_equal(get64(e + i * 20 + 8), want[i][1]);
			assert_int_equal(get32(e + i * 20 + 16), want[i][2]);
		}
		assert_int_equal(get64(e + 3 * 20 + 8), 0);
	}

	/* The protected-mode kernel, byte for byte. */
	assert_memory_equal(gm_ptr(&r.gm, LOAD, PM_SIZE), m.d + PM_OFF, PM_SIZE);

	/* A 64-bit code segment at 0x10 and flat data at 0x18. */
	{
		const uint64_t *gdt = gm_ptr(&r.gm, BOOT_GDT_ADDR, 40);
		assert_int_equal(gdt[2], 0x00af9b000000ffffull);
		assert_int_equal(gdt[3], 0x00cf93000000ffffull);
	}
	/* Identity page tables were written. */
	assert_int_equal(get64(gm_ptr(&r.gm, BOOT_PML4, 8)), 0xa003);

	done(&r);
	unlink(initrd);
	free(initrd);
	free(m.d);
}

static void test_initrd_below_initrd_addr_max(void **state)
{
	struct img m = make_bzimage();
	char *initrd = write_initrd(3 * MiB + 5);
	struct run r;
	uint32_t a, s;

	put32(m.d + OFF_INITRD_ADDR_MAX, 0x07ffffff); /* 128 MiB - 1 */
	load(&r, 256 * MiB, &m, initrd, NULL, 0);
	assert_int_equal(r.rc, 0);
	a = get32(r.zp + OFF_RAMDISK_IMAGE);
	s = get32(r.zp + OFF_RAMDISK_SIZE);
	assert_int_equal(s, 3 * MiB + 5);
	assert_true((uint64_t)a + s <= 0x08000000);
	assert_int_equal(a, (0x08000000 - s) & ~0xfffu);
	assert_int_equal(a % 4096, 0);
	/* An empty command line is still a valid NUL-terminated string. */
	assert_string_equal((char *)gm_ptr(&r.gm, BOOT_CMDLINE_ADDR, 1), "");
	done(&r);

	/* XLF_CAN_BE_LOADED_ABOVE_4G: initrd_addr_max no longer limits it. */
	put16(m.d + OFF_XLOADFLAGS, 0x3);
	load(&r, 256 * MiB, &m, initrd, NULL, 0);
	assert_int_equal(r.rc, 0);
	a = get32(r.zp + OFF_RAMDISK_IMAGE);
	assert_int_equal(a, (256 * MiB - s) & ~0xfffull);
	done(&r);

	/* ... but it stays below 4 GiB even with high RAM. */
	load(&r, 5120 * MiB, &m, initrd, NULL, 0);
	assert_int_equal(r.rc, 0);
	a = get32(r.zp + OFF_RAMDISK_IMAGE);
	assert_int_equal(a, (GM_HOLE_START - s) & ~0xfffull);
	assert_int_equal(get32(r.zp + OFF_EXT_RAMDISK_IMG), 0);
	assert_int_equal(get8(r.zp + OFF_E820_ENTRIES), 4);
	assert_int_equal(get64(r.zp + OFF_E820_TABLE + 3 * 20), 0x100000000ull);
	assert_int_equal(get64(r.zp + OFF_E820_TABLE + 3 * 20 + 8), 2048 * MiB);
	done(&r);

	unlink(initrd);
	free(initrd);
	free(m.d);
}

static void test_no_initrd_old_protocol_fields(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	/* Protocol 2.13 has no acpi_rsdp_addr: it must stay 0. */
	put16(m.d + OFF_VERSION, 0x020d);
	load(&r, 128 * MiB, &m, NULL, "x", 0xf0000);
	assert_int_equal(r.rc, 0);
	assert_int_equal(get64(r.zp + OFF_ACPI_RSDP), 0);
	assert_int_equal(get32(r.zp + OFF_RAMDISK_IMAGE), 0);
	assert_int_equal(get32(r.zp + OFF_RAMDISK_SIZE), 0);
	done(&r);
	free(m.d);
}

static void test_non_relocatable_loads_at_1mib(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	m.d[OFF_RELOCATABLE] = 0;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.rip, 0x100000 + 0x200);
	assert_memory_equal(gm_ptr(&r.gm, 0x100000, PM_SIZE), m.d + PM_OFF, PM_SIZE);
	done(&r);
	free(m.d);
}

static void test_setup_sects_zero_means_four(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	m.d[OFF_SETUP_SECTS] = 0; /* same layout as 4 */
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_memory_equal(gm_ptr(&r.gm, LOAD, PM_SIZE), m.d + PM_OFF, PM_SIZE);
	done(&r);
	free(m.d);
}

static void test_is_linux_needs_version_string(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	put16(m.d + OFF_KERNEL_VERSION, 0);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.is_linux, 0);
	done(&r);

	/* A pointer to binary junk is not a version string either. */
	put16(m.d + OFF_KERNEL_VERSION, 0x300);
	m.d[0x500] = 0x01;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.is_linux, 0);
	done(&r);

	/* A pointer past the setup code is ignored. */
	put16(m.d + OFF_KERNEL_VERSION, 0xff00);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.regs.is_linux, 0);
	done(&r);
	free(m.d);
}

/* ---- rejected images ---- */

static void test_truncated_header(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	m.size = 0x220; /* "HdrS" present, header cut short */
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "truncated setup header");
	done(&r);

	/* The header is complete but the protected-mode kernel is missing. */
	m.size = PM_OFF;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "truncated");
	done(&r);

	/* setup_sects pointing past the end of the file. */
	m.size = PM_OFF + PM_SIZE;
	m.d[OFF_SETUP_SECTS] = 200;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "protected-mode kernel starts at 0x19200");
	done(&r);
	free(m.d);
}

static void test_bad_magic(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	memcpy(m.d + OFF_HEADER, "HdrX", 4);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");
	done(&r);

	memcpy(m.d + OFF_HEADER, "HdrS", 4);
	put16(m.d + OFF_BOOT_FLAG, 0x55aa);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");
	done(&r);

	/* An empty file. */
	m.size = 0;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "not a bzImage");
	done(&r);
	free(m.d);
}

static void test_bad_jump(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	m.d[OFF_JUMP] = 0x90;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "no short jump at 0x200");
	done(&r);

	/* A header that claims to run into boot_params' own fields. */
	m.d[OFF_JUMP] = 0xeb;
	m.d[OFF_JUMP + 1] = 0xf0;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "past boot_params' header area");
	done(&r);

	/* A header too short for its own version. */
	m.d[OFF_JUMP + 1] = 0x30;
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "too short for boot protocol 2.15");
	done(&r);
	free(m.d);
}

static void test_protocol_too_old(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	put16(m.d + OFF_VERSION, 0x0205);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "boot protocol 2.05 is too old");
	done(&r);

	/* 2.10 is new enough for the header, but has no 64-bit entry. */
	put16(m.d + OFF_VERSION, 0x020a);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "XLF_KERNEL_64");
	done(&r);
	free(m.d);
}

static void test_no_xlf_kernel_64(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	put16(m.d + OFF_XLOADFLAGS, 0x2);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "no 64-bit entry point (XLF_KERNEL_64 not set");
	/* Nothing was loaded. */
	assert_int_equal(get32(r.zp + OFF_CMD_LINE_PTR), 0);
	assert_int_equal(*(uint8_t *)gm_ptr(&r.gm, LOAD, 1), 0);
	done(&r);
	free(m.d);
}

static void test_cmdline_too_long(void **state)
{
	struct img m = make_bzimage();
	char big[BOOT_CMDLINE_MAX + 10];
	struct run r;

	put32(m.d + OFF_CMDLINE_SIZE, 16);
	load(&r, 128 * MiB, &m, NULL, "0123456789abcdefg", 0); /* 17 */
	expect_error(&r, -E2BIG, "command line is 17 bytes, the kernel accepts at most 16");
	done(&r);

	/* Exactly cmdline_size is fine. */
	load(&r, 128 * MiB, &m, NULL, "0123456789abcdef", 0);
	assert_int_equal(r.rc, 0);
	assert_string_equal((char *)gm_ptr(&r.gm, BOOT_CMDLINE_ADDR, 1), "0123456789abcdef");
	done(&r);

	/* A kernel that claims a huge cmdline_size is held to BOOT_CMDLINE_MAX. */
	put32(m.d + OFF_CMDLINE_SIZE, 0xffffffff);
	memset(big, 'a', sizeof(big) - 1);
	big[BOOT_CMDLINE_MAX] = '\0'; /* BOOT_CMDLINE_MAX chars + NUL: one too many */
	load(&r, 128 * MiB, &m, NULL, big, 0);
	expect_error(&r, -E2BIG, "the kernel accepts at most 4095");
	done(&r);
	free(m.d);
}

static void test_initrd_too_big(void **state)
{
	struct img m = make_bzimage();
	char *initrd = write_initrd(70 * MiB);
	char want[512];
	struct run r;

	load(&r, 64 * MiB, &m, initrd, NULL, 0);
	snprintf(want, sizeof(want),
		 "initrd %s (70 MiB) does not fit in guest RAM below 0x4000000", initrd);
	if (r.rc != -ENOMEM || strcmp(r.err, want))
		fail_msg("got %d \"%s\"", r.rc, r.err);
	done(&r);

	/* It would fit in RAM, but not below initrd_addr_max. */
	put32(m.d + OFF_INITRD_ADDR_MAX, 0x02ffffff);
	load(&r, 512 * MiB, &m, initrd, NULL, 0);
	expect_error(&r, -ENOMEM, "does not fit in guest RAM below 0x3000000");
	done(&r);

	unlink(initrd);
	free(initrd);

	/* A missing initrd names itself. */
	load(&r, 64 * MiB, &m, "/nonexistent/initrd.img", NULL, 0);
	if (r.rc != -ENOENT || !strstr(r.err, "initrd /nonexistent/initrd.img"))
		fail_msg("got %d \"%s\"", r.rc, r.err);
	gm_destroy(&r.gm);
	free(m.d);
}

static void test_init_size_overlap(void **state)
{
	struct img m = make_bzimage();
	struct run r;

	/* A relocatable kernel asking to run over the loader's structures. */
	put64(m.d + OFF_PREF_ADDRESS, 0x8000);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "overlaps the boot page tables");
	done(&r);

	put64(m.d + OFF_PREF_ADDRESS, 0x80000);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "overlaps the BIOS area");
	done(&r);

	/* init_size reaching past the end of RAM. */
	put64(m.d + OFF_PREF_ADDRESS, LOAD);
	put32(m.d + OFF_INIT_SIZE, 0x7000001);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOMEM, "[0x1000000, 0x8000001) does not fit in guest RAM");
	done(&r);

	/* Hostile 64-bit pref_address. */
	put32(m.d + OFF_INIT_SIZE, INIT_SIZE);
	put64(m.d + OFF_PREF_ADDRESS, 0xfffffffffffff000ull);
	load(&r, 128 * MiB, &m, NULL, NULL, 0);
	expect_error(&r, -ENOEXEC, "beyond 4 GiB");
	done(&r);

	/* The initrd is never placed inside [load, load + init_size). */
	put64(m.d + OFF_PREF_ADDRESS, LOAD);
	put32(m.d + OFF_INIT_SIZE, 0x6000000); /* up to 112 MiB */
	{
		char *initrd = write_initrd(20 * MiB);
		load(&r, 128 * MiB, &m, initrd, NULL, 0);
		expect_error(&r, -ENOMEM, "(20 MiB) does not fit");
		done(&r);
		unlink(initrd);
		free(initrd);
	}
	free(m.d);
}

static void test_missing_kernel(void **state)
{
	struct guest_mem gm;
	struct x86_boot_regs regs;
	struct x86_boot_config cfg = { .kernel_path = "/nonexistent/vmlinuz" };
	char err[256];

	assert_int_equal(gm_init(&gm, 16 * MiB), 0);
	assert_int_equal(x86_boot_load(&gm, &cfg, &regs, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "kernel /nonexistent/vmlinuz: "));
	cfg.kernel_path = "/tmp";
	assert_int_equal(x86_boot_load(&gm, &cfg, &regs, err, sizeof(err)), -EISDIR);
	gm_destroy(&gm);
}

/* Corrupt header bytes at random: the loader may accept or refuse, but
 * it must neither crash nor write outside guest RAM, and every refusal
 * comes with a message. */
static void test_corrupted_headers_never_crash(void **state)
{
	struct img m = make_bzimage();
	struct guest_mem gm;
	char *path = write_temp(m.d, m.size);
	unsigned seed = 12345;
	int accepted = 0, refused = 0;

	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	for (int it = 0; it < 3000; it++) {
		struct img c = { .d = malloc(m.size), .size = m.size };
		struct x86_boot_config cfg = { .kernel_path = path, .cmdline = "a" };
		struct x86_boot_regs regs;
		char err[512] = "";
		FILE *f;
		int rc;

		memcpy(c.d, m.d, m.size);
		for (int k = 0; k < 4; k++) {
			seed = seed * 1103515245 + 12345;
			size_t off = 0x1f1 + (seed >> 8) % (0x270 - 0x1f1);
			if (off == OFF_HEADER || off == OFF_BOOT_FLAG)
				continue; /* keep it a bzImage */
			c.d[off] = (uint8_t)(seed >> 20);
		}
		/* Sometimes truncate too. */
		if (it % 7 == 0)
			c.size = 0x202 + (seed % (m.size - 0x202));
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(c.d, 1, c.size, f), c.size);
		fclose(f);
		rc = x86_boot_load(&gm, &cfg, &regs, err, sizeof(err));
		if (rc) {
			assert_true(rc < 0);
			assert_true(err[0] != '\0');
			refused++;
		} else {
			assert_true(regs.rip >= BOOT_HIGH_START && regs.rip < 64 * MiB);
			accepted++;
		}
		free(c.d);
	}
	assert_true(accepted > 0);
	assert_true(refused > 0);
	gm_destroy(&gm);
	unlink(path);
	free(path);
	free(m.d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_page_and_regs),
		cmocka_unit_test(test_initrd_below_initrd_addr_max),
		cmocka_unit_test(test_no_initrd_old_protocol_fields),
		cmocka_unit_test(test_non_relocatable_loads_at_1mib),
		cmocka_unit_test(test_setup_sects_zero_means_four),
		cmocka_unit_test(test_is_linux_needs_version_string),
		cmocka_unit_test(test_truncated_header),
		cmocka_unit_test(test_bad_magic),
		cmocka_unit_test(test_bad_jump),
		cmocka_unit_test(test_protocol_too_old),
		cmocka_unit_test(test_no_xlf_kernel_64),
		cmocka_unit_test(test_cmdline_too_long),
		cmocka_unit_test(test_initrd_too_big),
		cmocka_unit_test(test_init_size_overlap),
		cmocka_unit_test(test_missing_kernel),
		cmocka_unit_test(test_corrupted_headers_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
