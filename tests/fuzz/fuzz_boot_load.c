/*
 * fuzz_boot_load.c - the kernel loaders (arch/x86/boot*.c) against hostile
 * image files.
 *
 * Two targets are built from this file:
 *
 *   fuzz_boot_load   the input is the kernel file, loaded with a fixed
 *                    command line into 64 MiB of guest RAM: every byte the
 *                    mutator changes lands in a header, a program header,
 *                    a note or a multiboot field.
 *   fuzz_boot_split  (-DFUZZ_BOOT_SPLIT) the input also chooses the guest
 *                    RAM size, the command line, the initrd (contents,
 *                    declared size, or a path that is not a regular file)
 *                    and the RSDP address:
 *                      u8   flags: bits 0-2 RAM size (ram_sizes[] below),
 *                           bit 3 an initrd, bit 4 no command line (NULL),
 *                           bits 5-6 initrd kind (0/3 memfd, 1 a
 *                           directory, 2 a missing file)
 *                      u32  rsdp_addr
 *                      u32  initrd size: bit 31 set = that many bytes + 3 GiB
 *                           (never fits), else (value & 0xfffff) bytes, at
 *                           least the initrd bytes given below
 *                      u16  command line length, then its bytes (cut at a NUL)
 *                      u16  initrd data length, then its bytes
 *                      ...  the kernel file
 *
 * x86_boot_load() takes paths, not buffers (the loaders read the kernel
 * whole and stream the initrd straight into guest RAM), so the bytes go to
 * memfds, named by /proc/self/fd/N: no file system traffic, and the sizes
 * the loaders fstat() are exactly what the input says.  Guest RAM is
 * mapped once per size and reused; the loaders must not depend on it being
 * zero.
 *
 * Checks beyond "no crash": on failure the error message is non-empty and
 * NUL-terminated inside the buffer; on success the entry point lies in low
 * RAM above 1 MiB, the format is named, the boot GDT is in place, and guest
 * RAM holds, intact, everything the loader wrote: the command line (for
 * Multiboot "<kernel path> <cmdline>"), the zero page / hvm_start_info /
 * multiboot_info, the initrd exactly as given (bytes, size, above 1 MiB,
 * passed on iff given) and, for bzImage, the protected-mode kernel - so a
 * loader write that lands on another one is caught, not just one outside
 * RAM.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "core/memory.h"
#include "fuzz.h"

#define MIB (1024ull * 1024)

static int memfd(const char *name)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		fuzz_fail("memfd_create: %s", strerror(errno));
	return fd;
}

/* Make fd's contents exactly data[0..len), then grow it (sparse) to size. */
static void fill(int fd, const uint8_t *data, size_t len, uint64_t size)
{
	if (ftruncate(fd, 0) < 0)
		fuzz_fail("ftruncate: %s", strerror(errno));
	if (len && pwrite(fd, data, len, 0) != (ssize_t)len)
		fuzz_fail("pwrite: %s", strerror(errno));
	if (size > len && ftruncate(fd, (off_t)size) < 0)
		fuzz_fail("ftruncate: %s", strerror(errno));
}

static struct guest_mem *ram(unsigned idx)
{
	/* Sizes around the loaders' edges: the default, odd and small ones
	 * (cmdline / start info / page tables barely fit or do not).  No
	 * size with high RAM: that needs 3 GiB of low RAM, and an ELF may
	 * legally ask for all of it to be zeroed (p_memsz), which makes a
	 * slow, memory-hungry run rather than a finding. */
	static const uint64_t ram_sizes[8] = {
		64 * MIB, 16 * MIB + 4096, 2 * MIB, MIB,
		MIB - 4096, 640 * 1024, 64 * 1024, 128 * MIB,
	};
	static struct guest_mem gms[8];
	static bool ready[8];

	idx &= 7;
	if (!ready[idx]) {
		int r = gm_init(&gms[idx], ram_sizes[idx]);
		if (r)
			fuzz_fail("gm_init(%llu): %s",
				  (unsigned long long)ram_sizes[idx], strerror(-r));
		ready[idx] = true;
	}
	return &gms[idx];
}

/* What the input asked for, to compare guest RAM with after a load. */
struct expect {
	const uint8_t *kernel;
	size_t klen;
	const char *kpath, *cmdline; /* cmdline as passed (may be NULL) */
	bool initrd;                 /* a memfd initrd was given */
	const uint8_t *idata;        /* its first ilen bytes; zeros up to isize */
	size_t ilen;
	uint64_t isize;
};

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* After a successful load: the command line, the format's boot structure,
 * the initrd and (bzImage) the kernel are all intact in guest RAM - no
 * write of the loader clobbered another. */
static void check_ram(struct guest_mem *gm, const struct x86_boot_regs *regs,
		      const struct expect *x)
{
	const char *user = x->cmdline ? x->cmdline : "";
	bool mb = !strcmp(regs->format, "multiboot");
	char want[BOOT_CMDLINE_MAX + 256];
	const uint8_t *p;
	uint64_t iaddr = 0, isize = 0;
	bool has_initrd = false;

	if (mb)
		snprintf(want, sizeof(want), "%s%s%s", x->kpath, *user ? " " : "", user);
	else
		snprintf(want, sizeof(want), "%s", user);
	p = gm_ptr(gm, BOOT_CMDLINE_ADDR, strlen(want) + 1);
	if (!p || memcmp(p, want, strlen(want) + 1))
		fuzz_fail("%s: command line in guest RAM is not the one given",
			  regs->format);

	if (!strcmp(regs->format, "bzImage")) {
		const uint8_t *zp = gm_ptr(gm, BOOT_ZERO_PAGE, 4096);
		size_t pm_off = ((size_t)(x->kernel[0x1f1] ? x->kernel[0x1f1] : 4) + 1) * 512;
		const uint8_t *k;

		if (!zp || rd32(zp + 0x202) != 0x53726448)
			fuzz_fail("bzImage: zero page lost its setup header");
		iaddr = rd32(zp + 0x218) | (uint64_t)rd32(zp + 0xc0) << 32;
		isize = rd32(zp + 0x21c) | (uint64_t)rd32(zp + 0xc4) << 32;
		has_initrd = iaddr || isize;
		k = gm_ptr(gm, regs->rip - 0x200, x->klen - pm_off);
		if (!k || memcmp(k, x->kernel + pm_off, x->klen - pm_off))
			fuzz_fail("bzImage: protected-mode kernel not intact in guest RAM");
	} else if (!strcmp(regs->format, "pvh")) {
		const uint8_t *si = gm_ptr(gm, BOOT_START_INFO, 4096), *m;

		if (!si || rd32(si) != 0x336ec578u)
			fuzz_fail("pvh: hvm_start_info lost its magic");
		if (rd32(si + 12)) {
			m = gm_ptr(gm, rd64(si + 16), 32);
			if (!m)
				fuzz_fail("pvh: module list outside RAM");
			iaddr = rd64(m);
			isize = rd64(m + 8);
			has_initrd = true;
		}
	} else if (mb) {
		const uint8_t *mbi = gm_ptr(gm, BOOT_START_INFO, 4096), *m;

		if (!mbi || !(rd32(mbi) & 1))
			fuzz_fail("multiboot: multiboot_info lost its flags");
		if (rd32(mbi) & (1u << 3)) {
			if (rd32(mbi + 20) != 1 || !(m = gm_ptr(gm, rd32(mbi + 24), 16)))
				fuzz_fail("multiboot: bad module list");
			iaddr = rd32(m);
			isize = (uint64_t)rd32(m + 4) - rd32(m);
			has_initrd = true;
		}
	} else {
		fuzz_fail("unknown format \"%s\"", regs->format);
	}

	if (has_initrd != x->initrd)
		fuzz_fail("%s: initrd %s", regs->format,
			  x->initrd ? "given but not passed on" : "passed on but not given");
	if (!x->initrd)
		return;
	if (isize != x->isize)
		fuzz_fail("%s: initrd size %llu passed on, %llu given", regs->format,
			  (unsigned long long)isize, (unsigned long long)x->isize);
	if (!isize)
		return;
	p = gm_ptr(gm, iaddr, isize);
	if (!p || iaddr < BOOT_HIGH_START || memcmp(p, x->idata, x->ilen))
		fuzz_fail("%s: initrd at 0x%llx not intact in guest RAM", regs->format,
			  (unsigned long long)iaddr);
	for (uint64_t i = x->ilen; i < isize; i++)
		if (p[i])
			fuzz_fail("%s: initrd at 0x%llx not intact in guest RAM (byte %llu)",
				  regs->format, (unsigned long long)iaddr,
				  (unsigned long long)i);
}

static void check(struct guest_mem *gm, int rc,
		  const struct x86_boot_regs *regs, const char *err,
		  size_t errlen, const struct expect *x)
{
	if (strnlen(err, errlen) >= errlen)
		fuzz_fail("error message not NUL-terminated");
	if (rc > 0)
		fuzz_fail("x86_boot_load returned %d > 0", rc);
	if (rc < 0) {
		if (!err[0])
			fuzz_fail("x86_boot_load failed (%d) without a message", rc);
		return;
	}
	if (!regs->format)
		fuzz_fail("loaded without naming the format");
	if (regs->rip < 0x100000 || regs->rip >= gm_low_end(gm))
		fuzz_fail("%s entry 0x%llx outside low RAM above 1 MiB (end 0x%llx)",
			  regs->format, (unsigned long long)regs->rip,
			  (unsigned long long)gm_low_end(gm));
	if (regs->gdt_base != BOOT_GDT_ADDR || !gm_ptr(gm, BOOT_GDT_ADDR, 40))
		fuzz_fail("loaded without a boot GDT");
	check_ram(gm, regs, x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int kfd = -1, ifd = -1;
	static char kpath[64], ipath[64];
	struct x86_boot_config cfg = { 0 };
	struct expect x = { 0 };
	struct x86_boot_regs regs;
	struct guest_mem *gm;
	char err[512];
	int rc;

	if (kfd < 0) {
		kfd = memfd("kernel");
		ifd = memfd("initrd");
		snprintf(kpath, sizeof(kpath), "/proc/self/fd/%d", kfd);
		snprintf(ipath, sizeof(ipath), "/proc/self/fd/%d", ifd);
	}
	cfg.kernel_path = kpath;

#ifndef FUZZ_BOOT_SPLIT
	gm = ram(0);
	cfg.cmdline = "console=ttyS0 panic=-1";
	cfg.rsdp_addr = 0xf0000;
	fill(kfd, data, size, 0);
	x.kernel = data;
	x.klen = size;
#else
	struct fuzz_in in = { data, size };
	uint8_t flags = fz_u8(&in);
	uint32_t isize_field;
	uint64_t isize;
	const uint8_t *p;
	size_t n;
	char cmdline[70000];

	gm = ram(flags & 7);
	cfg.rsdp_addr = fz_u32(&in);
	isize_field = fz_u32(&in);
	n = fz_take(&in, fz_u16(&in), &p);
	memcpy(cmdline, p, n);
	cmdline[n] = '\0';
	cfg.cmdline = (flags & 0x10) ? NULL : cmdline;
	n = fz_take(&in, fz_u16(&in), &p);
	if (isize_field & 0x80000000u)
		isize = (isize_field & 0x7fffffffu) + 3 * 1024 * MIB;
	else
		isize = isize_field & 0xfffffu;
	if (flags & 0x08) {
		switch ((flags >> 5) & 3) {
		case 1: cfg.initrd_path = "/"; break;
		case 2: cfg.initrd_path = "/nonexistent/kvmm-fuzz-initrd"; break;
		default:
			fill(ifd, p, n, isize);
			cfg.initrd_path = ipath;
			x.initrd = true;
			x.idata = p;
			x.ilen = n;
			x.isize = isize > n ? isize : n;
		}
	}
	fill(kfd, in.p, in.n, 0);
	x.kernel = in.p;
	x.klen = in.n;
#endif
	x.kpath = kpath;
	x.cmdline = cfg.cmdline;

	rc = x86_boot_load(gm, &cfg, &regs, err, sizeof(err));
	check(gm, rc, &regs, err, sizeof(err), &x);
	return 0;
}
