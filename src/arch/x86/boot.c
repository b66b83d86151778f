/*
 * boot.c - kernel format detection and what the three loaders share: file
 * reading, range checks, the command line, initrd placement, ELF parsing,
 * the e820 map, the boot GDT and the identity page tables.
 *
 * Why it is shaped this way
 * -------------------------
 * A kernel or initrd path comes from the user, and the file behind it may
 * be anything: a truncated download, a fuzzer's output, a hostile image.
 * Every number read from it (a size, an offset, a guest address) is
 * therefore checked twice before use: against the file's length (nothing is
 * read past the end of the buffer) and against guest RAM (nothing is written
 * outside it, and nothing the loader itself needs - GDT, zero page, page
 * tables, command line - is overwritten).  A bad file gives a one-line error
 * naming the file and the problem and a negative errno; it never crashes
 * the VMM.  The arithmetic is written so that no sum of two hostile 64-bit
 * values can wrap (compare differences, not sums).
 *
 * The kernel file is read whole into host memory: kernels are small
 * (a Debian bzImage is ~8-15 MiB), every format needs random access to
 * headers scattered through the file, and a private copy cannot change or
 * vanish under us the way a mapping of a file being rewritten could (SIGBUS).
 * The initrd, which may be hundreds of MiB, is read straight into guest RAM
 * instead: its placement depends only on its size, which fstat() gives.
 *
 * Format detection looks only at magic numbers, in a fixed order:
 *   1. bzImage: boot_flag 0xAA55 at 0x1fe and "HdrS" at 0x202
 *      (Documentation/arch/x86/boot.rst, "The real-mode kernel header").
 *   2. ELF (\x7fELF) with a Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY: PVH.
 *      An ELF may also carry a Multiboot header (some hobby kernels and
 *      Xen itself do); PVH wins because it hands over more (ACPI RSDP, a
 *      typed memory map with 64-bit fields) and is what Linux prefers.
 *   3. A Multiboot v1 header (magic 0x1BADB002, 4-byte aligned, in the first
 *      8192 bytes, checksum) - ELF or a.out kludge.
 * Anything else is refused with "not a bzImage, PVH ELF or Multiboot image".
 *
 * The ELF helpers live here because PVH and Multiboot both load ELF images
 * by program headers (p_paddr, p_filesz, p_memsz), as GRUB, QEMU and
 * Firecracker do.  Section headers are never used: a loader must not depend
 * on them and they may be stripped.
 *
 * Memory map: one e820 table serves the bzImage zero page, the PVH memmap
 * and the Multiboot mmap, so all three describe the same machine: RAM below
 * the EBDA, the legacy BIOS hole reserved (ACPI tables and the RSDP live
 * there), RAM from 1 MiB to the MMIO hole, RAM above 4 GiB.  The LAPIC and
 * IOAPIC pages are not listed as reserved: QEMU does not list them either,
 * Linux learns them from the MADT, and a reserved e820 range inside the PCI
 * hole would only shrink the window Linux uses for BARs.
 *
 * The GDT at BOOT_GDT_ADDR has the layout the Linux boot protocol requires
 * (__BOOT_CS = 0x10, __BOOT_DS = 0x18, flat 4 GiB).  The code descriptor
 * depends on the entry mode: L=1 for the 64-bit bzImage entry, D=1 for the
 * 32-bit PVH and Multiboot entries, so a guest that reloads CS from the GDT
 * gets the mode it was entered in.  A busy TSS at 0x20 gives VMX the usable
 * TR it insists on.  The page tables identity-map 0-4 GiB with 2 MiB pages,
 * which covers every address the 64-bit Linux entry may touch (kernel, zero
 * page, command line, initrd - all in low RAM).
 */
#include "arch/x86/boot_internal.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024ull * 1024)

/* ---- errors ---- */

static int vfail(struct boot_ctx *c, int rc, const char *prefix,
		 const char *fmt, va_list ap)
{
	if (c->err && c->errlen) {
		int n = snprintf(c->err, c->errlen, "%s", prefix);
		if (n >= 0 && (size_t)n < c->errlen)
			vsnprintf(c->err + n, c->errlen - n, fmt, ap);
	}
	return rc;
}

int boot_fail(struct boot_ctx *c, int rc, const char *fmt, ...)
{
	char prefix[256];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "kernel %s: ",
		 c->cfg && c->cfg->kernel_path ? c->cfg->kernel_path : "?");
	va_start(ap, fmt);
	vfail(c, rc, prefix, fmt, ap);
	va_end(ap);
	return rc;
}

int boot_fail_raw(struct boot_ctx *c, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(c, rc, "", fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- files ---- */

int boot_read_file(const char *path, uint64_t max, uint8_t **data,
		   size_t *size)
{
	struct stat st;
	uint8_t *buf;
	size_t len, got = 0;
	int fd, rc = 0;

	*data = NULL;
	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	len = (size_t)st.st_size;
	buf = malloc(len ? len : 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			free(buf);
			goto out;
		}
		got += (size_t)n;
	}
	*data = buf;
	*size = len;
out:
	close(fd);
	return rc;
}

/* ---- guest ranges, command line, initrd ---- */

int boot_check_range(struct boot_ctx *c, const char *what, uint64_t gpa,
		     uint64_t len)
{
	uint64_t low_end = gm_low_end(c->gm);

	if (gpa < BOOT_HIGH_START)
		return boot_fail(c, -ENOEXEC,
				 "%s at 0x%" PRIx64 " lies below 1 MiB, in the loader's area",
				 what, gpa);
	if (len > UINT64_MAX - gpa)
		return boot_fail(c, -ENOEXEC,
				 "%s at 0x%" PRIx64 " (0x%" PRIx64 " bytes) wraps around",
				 what, gpa, len);
	if (gpa + len > low_end || !gm_ptr(c->gm, gpa, len))
		return boot_fail(c, -ENOMEM,
				 "%s [0x%" PRIx64 ", 0x%" PRIx64 ") does not fit in guest RAM (low RAM ends at 0x%" PRIx64 ")",
				 what, gpa, gpa + len, low_end);
	return 0;
}

int boot_write_cmdline(struct boot_ctx *c, const char *cmdline,
		       uint64_t limit)
{
	size_t len;

	if (!cmdline)
		cmdline = "";
	len = strlen(cmdline);
	if (limit > BOOT_CMDLINE_MAX - 1)
		limit = BOOT_CMDLINE_MAX - 1;
	if (len > limit)
		return boot_fail(c, -E2BIG,
				 "command line is %zu bytes, the kernel accepts at most %" PRIu64,
				 len, limit);
	if (gm_write(c->gm, BOOT_CMDLINE_ADDR, cmdline, len + 1))
		return boot_fail(c, -EFAULT,
				 "guest RAM too small for the command line at 0x%llx",
				 BOOT_CMDLINE_ADDR);
	return 0;
}

int boot_load_initrd(struct boot_ctx *c, uint64_t lo, uint64_t hi, bool top,
		     uint64_t *addr, uint64_t *size)
{
	const char *path = c->cfg->initrd_path;
	struct stat st;
	uint64_t sz, a, got = 0;
	uint8_t *dst;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		return boot_fail_raw(c, rc, "initrd %s: %s", path, strerror(-rc));
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		boot_fail_raw(c, rc, "initrd %s: %s", path, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		boot_fail_raw(c, rc, "initrd %s: not a regular file", path);
		goto out;
	}
	sz = (uint64_t)st.st_size;
	/* lo aligned up; the fit is checked without forming lo + sz. */
	lo = (lo + BOOT_PAGE_SIZE - 1) & ~(BOOT_PAGE_SIZE - 1);
	if (hi < lo || sz > hi - lo) {
		rc = -ENOMEM;
		goto too_big;
	}
	a = top ? (hi - sz) & ~(BOOT_PAGE_SIZE - 1) : lo;
	if (a < lo) {
		rc = -ENOMEM;
		goto too_big;
	}
	dst = gm_ptr(c->gm, a, sz);
	if (!dst) {
		rc = -ENOMEM;
		goto too_big;
	}
	while (got < sz) {
		ssize_t n = pread(fd, dst + got, sz - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			boot_fail_raw(c, rc, "initrd %s: %s", path,
				      n < 0 ? strerror(-rc) : "file shrank while being read");
			goto out;
		}
		got += (uint64_t)n;
	}
	*addr = a;
	*size = sz;
	goto out;
too_big:
	boot_fail_raw(c, rc,
		      "initrd %s (%" PRIu64 " MiB) does not fit in guest RAM below 0x%" PRIx64,
		      path, (uint64_t)((sz + MIB - 1) / MIB), hi);
out:
	close(fd);
	return rc;
}

/* ---- ELF ---- */

bool boot_is_elf(const struct boot_ctx *c)
{
	return c->size >= SELFMAG && !memcmp(c->data, ELFMAG, SELFMAG);
}

int boot_elf_parse(struct boot_ctx *c, struct boot_elf *e)
{
	const uint8_t *d = c->data;
	uint16_t type;
	size_t ehsize;

	memset(e, 0, sizeof(*e));
	if (!boot_is_elf(c) || c->size < EI_NIDENT)
		return boot_fail(c, -ENOEXEC, "truncated ELF header");
	if (d[EI_CLASS] != ELFCLASS32 && d[EI_CLASS] != ELFCLASS64)
		return boot_fail(c, -ENOEXEC, "unknown ELF class %u", d[EI_CLASS]);
	e->is64 = d[EI_CLASS] == ELFCLASS64;
	ehsize = e->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	if (c->size < ehsize)
		return boot_fail(c, -ENOEXEC, "truncated ELF header");
	if (d[EI_DATA] != ELFDATA2LSB)
		return boot_fail(c, -ENOEXEC, "ELF image is not little-endian");
	if (d[EI_VERSION] != EV_CURRENT)
		return boot_fail(c, -ENOEXEC, "unknown ELF version %u", d[EI_VERSION]);

	/* e_type, e_machine and e_version sit at the same offsets in both classes. */
	type = boot_rd16(d + 16);
	e->machine = boot_rd16(d + 18);
	if (type != ET_EXEC)
		return boot_fail(c, -ENOEXEC, "ELF type %u is not an executable (ET_EXEC)", type);
	if (e->machine != EM_386 && e->machine != EM_X86_64)
		return boot_fail(c, -ENOEXEC, "ELF machine %u is not x86", e->machine);
	if (e->is64) {
		e->entry = boot_rd64(d + offsetof(Elf64_Ehdr, e_entry));
		e->phoff = boot_rd64(d + offsetof(Elf64_Ehdr, e_phoff));
		e->phentsize = boot_rd16(d + offsetof(Elf64_Ehdr, e_phentsize));
		e->phnum = boot_rd16(d + offsetof(Elf64_Ehdr, e_phnum));
	} else {
		e->entry = boot_rd32(d + offsetof(Elf32_Ehdr, e_entry));
		e->phoff = boot_rd32(d + offsetof(Elf32_Ehdr, e_phoff));
		e->phentsize = boot_rd16(d + offsetof(Elf32_Ehdr, e_phentsize));
		e->phnum = boot_rd16(d + offsetof(Elf32_Ehdr, e_phnum));
	}
	if (e->phnum == 0 || e->phnum == PN_XNUM)
		return boot_fail(c, -ENOEXEC, "ELF image has no program headers");
	if (e->phentsize != (e->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr)))
		return boot_fail(c, -ENOEXEC, "bad ELF program header size %u",
				 e->phentsize);
	if (!boot_in_file(c, e->phoff, (uint64_t)e->phnum * e->phentsize))
		return boot_fail(c, -ENOEXEC,
				 "truncated program headers (%u at offset 0x%" PRIx64 ", file is %zu bytes)",
				 e->phnum, e->phoff, c->size);
	return 0;
}

void boot_elf_phdr(const struct boot_ctx *c, const struct boot_elf *e, int i,
		   struct boot_phdr *ph)
{
	const uint8_t *p = c->data + e->phoff + (uint64_t)i * e->phentsize;

	if (e->is64) {
		ph->type = boot_rd32(p + offsetof(Elf64_Phdr, p_type));
		ph->offset = boot_rd64(p + offsetof(Elf64_Phdr, p_offset));
		ph->vaddr = boot_rd64(p + offsetof(Elf64_Phdr, p_vaddr));
		ph->paddr = boot_rd64(p + offsetof(Elf64_Phdr, p_paddr));
		ph->filesz = boot_rd64(p + offsetof(Elf64_Phdr, p_filesz));
		ph->memsz = boot_rd64(p + offsetof(Elf64_Phdr, p_memsz));
		ph->align = boot_rd64(p + offsetof(Elf64_Phdr, p_align));
	} else {
		ph->type = boot_rd32(p + offsetof(Elf32_Phdr, p_type));
		ph->offset = boot_rd32(p + offsetof(Elf32_Phdr, p_offset));
		ph->vaddr = boot_rd32(p + offsetof(Elf32_Phdr, p_vaddr));
		ph->paddr = boot_rd32(p + offsetof(Elf32_Phdr, p_paddr));
		ph->filesz = boot_rd32(p + offsetof(Elf32_Phdr, p_filesz));
		ph->memsz = boot_rd32(p + offsetof(Elf32_Phdr, p_memsz));
		ph->align = boot_rd32(p + offsetof(Elf32_Phdr, p_align));
	}
}

int boot_elf_load(struct boot_ctx *c, const struct boot_elf *e, uint64_t *lo,
		  uint64_t *hi)
{
	struct boot_phdr ph;
	uint64_t l = UINT64_MAX, h = 0;
	char what[64];
	int i, rc;

	/* Check every segment before writing any, so that a bad segment
	 * late in the table leaves guest RAM untouched. */
	for (i = 0; i < e->phnum; i++) {
		boot_elf_phdr(c, e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		if (ph.filesz > ph.memsz)
			return boot_fail(c, -ENOEXEC,
					 "segment %d: p_filesz 0x%" PRIx64 " exceeds p_memsz 0x%" PRIx64,
					 i, ph.filesz, ph.memsz);
		if (!boot_in_file(c, ph.offset, ph.filesz))
			return boot_fail(c, -ENOEXEC,
					 "segment %d: file range [0x%" PRIx64 ", +0x%" PRIx64 ") lies past the end of the file (%zu bytes)",
					 i, ph.offset, ph.filesz, c->size);
		snprintf(what, sizeof(what), "segment %d", i);
		rc = boot_check_range(c, what, ph.paddr, ph.memsz);
		if (rc)
			return rc;
		if (ph.paddr < l)
			l = ph.paddr;
		if (ph.paddr + ph.memsz > h)
			h = ph.paddr + ph.memsz;
	}
	if (h == 0)
		return boot_fail(c, -ENOEXEC, "ELF image has no loadable segment");
	for (i = 0; i < e->phnum; i++) {
		uint8_t *dst;

		boot_elf_phdr(c, e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		dst = gm_ptr(c->gm, ph.paddr, ph.memsz); /* checked above */
		memcpy(dst, c->data + ph.offset, ph.filesz);
		memset(dst + ph.filesz, 0, ph.memsz - ph.filesz);
	}
	*lo = l;
	*hi = h;
	return 0;
}

int boot_elf_find_note(struct boot_ctx *c, const struct boot_elf *e,
		       const char *name, uint32_t type, const uint8_t **desc,
		       uint32_t *descsz)
{
	size_t want = strlen(name) + 1;
	struct boot_phdr ph;

	for (int i = 0; i < e->phnum; i++) {
		const uint8_t *seg;
		uint64_t pos = 0, al;

		boot_elf_phdr(c, e, i, &ph);
		if (ph.type != PT_NOTE)
			continue;
		if (!boot_in_file(c, ph.offset, ph.filesz))
			return boot_fail(c, -ENOEXEC,
					 "note segment %d lies past the end of the file", i);
		seg = c->data + ph.offset;
		/* gABI says 8 for ELF64, but Linux and most toolchains emit
		 * 4-byte aligned notes; p_align tells which one this is. */
		al = ph.align == 8 ? 8 : 4;
		while (ph.filesz - pos >= 12) {
			uint64_t nsz = boot_rd32(seg + pos);
			uint64_t dsz = boot_rd32(seg + pos + 4);
			uint32_t t = boot_rd32(seg + pos + 8);
			uint64_t nal = (nsz + al - 1) & ~(al - 1);
			uint64_t dal = (dsz + al - 1) & ~(al - 1);
			const uint8_t *n;

			pos += 12;
			if (nal > ph.filesz - pos)
				return boot_fail(c, -ENOEXEC,
						 "note segment %d: name runs past the segment", i);
			n = seg + pos;
			pos += nal;
			if (dsz > ph.filesz - pos)
				return boot_fail(c, -ENOEXEC,
						 "note segment %d: descriptor runs past the segment", i);
			if ((type == BOOT_NOTE_ANY_TYPE || t == type) &&
			    nsz == want && !memcmp(n, name, want)) {
				*desc = seg + pos;
				*descsz = (uint32_t)dsz;
				return 1;
			}
			pos += dal > ph.filesz - pos ? ph.filesz - pos : dal;
		}
	}
	return 0;
}

/* ---- memory map ---- */

int e820_build(const struct guest_mem *gm, struct e820_entry *out, int max)
{
	uint64_t low_end = gm_low_end(gm);
	struct e820_entry t[E820_MAX_ENTRIES];
	int n = 0;

	if (low_end)
		t[n++] = (struct e820_entry){ 0, low_end < BOOT_EBDA_START ?
						 low_end : BOOT_EBDA_START, E820_RAM };
	t[n++] = (struct e820_entry){ BOOT_EBDA_START,
				      BOOT_HIGH_START - BOOT_EBDA_START,
				      E820_RESERVED };
	if (low_end > BOOT_HIGH_START)
		t[n++] = (struct e820_entry){ BOOT_HIGH_START,
					      low_end - BOOT_HIGH_START, E820_RAM };
	if (gm->ram_size > low_end)
		t[n++] = (struct e820_entry){ GM_HIGH_START,
					      gm->ram_size - low_end, E820_RAM };
	if (n > max)
		return -ENOSPC;
	memcpy(out, t, n * sizeof(t[0]));
	return n;
}

/* ---- GDT and page tables ---- */

/* A segment descriptor (Intel SDM vol. 3A, 3.4.5): base, 20-bit limit,
 * access byte (P, DPL, S, type) and flags nibble (G, D/B, L, AVL). */
static uint64_t gdt_entry(uint8_t flags, uint8_t access, uint32_t base,
			  uint32_t limit)
{
	return ((uint64_t)(base & 0xff000000u) << 32) |
	       ((uint64_t)(flags & 0xf) << 52) |
	       ((uint64_t)(limit & 0xf0000u) << 32) |
	       ((uint64_t)access << 40) |
	       ((uint64_t)(base & 0x00ffffffu) << 16) |
	       (limit & 0xffffu);
}

void x86_boot_gdt_entries(enum x86_entry_mode mode,
			  uint64_t gdt[BOOT_GDT_ENTRIES])
{
	/* flags: G=8, D/B=4, L=2.  access: 0x9b code r/x accessed, 0x93 data
	 * r/w accessed, 0x8b busy 32-bit TSS; all present, DPL 0. */
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[BOOT_SEL_CODE >> 3] = gdt_entry(mode == X86_ENTRY_LONG64 ? 0xa : 0xc,
					    0x9b, 0, 0xfffff);
	gdt[BOOT_SEL_DATA >> 3] = gdt_entry(0xc, 0x93, 0, 0xfffff);
	gdt[BOOT_SEL_TSS >> 3] = gdt_entry(0x0, 0x8b, 0, 0x67);
}

int x86_boot_write_gdt_mode(struct guest_mem *gm, enum x86_entry_mode mode)
{
	uint64_t gdt[BOOT_GDT_ENTRIES];

	x86_boot_gdt_entries(mode, gdt);
	for (int i = 0; i < BOOT_GDT_ENTRIES; i++)
		gdt[i] = htole64(gdt[i]);
	return gm_write(gm, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

int x86_boot_write_gdt(struct guest_mem *gm)
{
	return x86_boot_write_gdt_mode(gm, X86_ENTRY_LONG64);
}

#define PTE_P  0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull

int x86_boot_write_page_tables(struct guest_mem *gm)
{
	uint64_t *pt = gm_ptr(gm, BOOT_PML4, BOOT_PT_END - BOOT_PML4);
	uint64_t *pml4, *pdpt, *pd;

	if (!pt)
		return -EFAULT;
	pml4 = pt;
	pdpt = pt + 512;
	pd = pt + 1024;
	memset(pt, 0, BOOT_PT_END - BOOT_PML4);
	pml4[0] = htole64((BOOT_PML4 + BOOT_PAGE_SIZE) | PTE_P | PTE_RW);
	for (int i = 0; i < 4; i++)
		pdpt[i] = htole64((BOOT_PML4 + (2 + i) * BOOT_PAGE_SIZE) |
				  PTE_P | PTE_RW);
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = htole64((i << 21) | PTE_P | PTE_RW | PTE_PS);
	return 0;
}

/* ---- detection ---- */

static bool is_bzimage(const struct boot_ctx *c)
{
	return c->size >= 0x206 && boot_rd16(c->data + 0x1fe) == 0xaa55 &&
	       !memcmp(c->data + 0x202, "HdrS", 4);
}

static int detect_and_load(struct boot_ctx *c, struct x86_boot_regs *regs)
{
	struct boot_elf e;
	int elf_rc = -ENOEXEC;
	long mb;

	if (is_bzimage(c))
		return boot_linux_load(c, regs);
	if (boot_is_elf(c)) {
		const uint8_t *desc;
		uint32_t dsz;
		int r;

		elf_rc = boot_elf_parse(c, &e);
		if (!elf_rc) {
			r = boot_elf_find_note(c, &e, "Xen", 18 /* PHYS32_ENTRY */,
					       &desc, &dsz);
			if (r < 0)
				return r;
			if (r > 0)
				return boot_pvh_load(c, &e, regs);
		}
	}
	mb = boot_multiboot_find(c);
	if (mb >= 0) {
		uint32_t flags = boot_rd32(c->data + mb + 4);
		/* Without the a.out kludge the image must be a good ELF: report
		 * why it is not, which boot_elf_parse() already wrote. */
		if (!(flags & (1u << 16)) && boot_is_elf(c) && elf_rc)
			return elf_rc;
		return boot_multiboot_load(c, (size_t)mb,
					   boot_is_elf(c) && !elf_rc ? &e : NULL,
					   regs);
	}
	if (boot_is_elf(c) && elf_rc)
		return elf_rc; /* a broken ELF: say what is broken */
	return boot_fail(c, -ENOEXEC, "not a bzImage, PVH ELF or Multiboot image");
}

int x86_boot_load(struct guest_mem *gm, const struct x86_boot_config *cfg,
		  struct x86_boot_regs *regs, char *err, size_t errlen)
{
	struct boot_ctx c = { .gm = gm, .cfg = cfg, .err = err, .errlen = errlen };
	uint8_t *data;
	size_t size;
	int rc;

	memset(regs, 0, sizeof(*regs));
	if (err && errlen)
		err[0] = '\0';
	if (!cfg || !cfg->kernel_path)
		return boot_fail(&c, -EINVAL, "no kernel given");
	rc = boot_read_file(cfg->kernel_path, BOOT_KERNEL_MAX, &data, &size);
	if (rc == -EFBIG)
		return boot_fail(&c, rc, "larger than %llu MiB",
				 BOOT_KERNEL_MAX / MIB);
	if (rc)
		return boot_fail(&c, rc, "%s", strerror(-rc));
	c.data = data;
	c.size = size;

	rc = detect_and_load(&c, regs);
	if (!rc) {
		regs->gdt_base = BOOT_GDT_ADDR;
		regs->gdt_limit = BOOT_GDT_ENTRIES * 8 - 1;
		if (!regs->rsp)
			regs->rsp = BOOT_STACK_TOP;
		rc = x86_boot_write_gdt_mode(gm, regs->mode);
		if (!rc && regs->mode == X86_ENTRY_LONG64) {
			rc = x86_boot_write_page_tables(gm);
			regs->cr3 = BOOT_PML4;
		}
		if (rc)
			boot_fail(&c, rc, "guest RAM too small for the boot GDT and page tables");
	}
	free(data);
	return rc;
}
