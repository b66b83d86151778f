/*
 * boot_multiboot.c - Multiboot v1 (the Multiboot Specification 0.6.96,
 * sections 3.1 "OS image format", 3.2 "Machine state", 3.3 "Boot
 * information format").
 *
 * Why it is shaped this way
 * -------------------------
 * Multiboot v1 is what small test kernels, hobby operating systems and
 * many teaching kernels speak, and what GRUB and QEMU's -kernel load; it
 * lets kvmm boot them without a firmware.  The image carries a header,
 * 4-byte aligned in its first 8192 bytes: magic 0x1BADB002, flags, and a
 * checksum making the three sum to 0 (mod 2^32).  Flags 0-15 are
 * requirements - a loader that cannot meet one must refuse the image; 16-31
 * are optional:
 *   bit 0   align modules on 4 KiB           always done
 *   bit 1   provide mem_* (and mmap)         always done
 *   bit 2   video mode table                 we have no framebuffer to set
 *                                            up; the spec lets the loader
 *                                            ignore the preference, GRUB
 *                                            does on a text console too
 *   bit 3-15                                 unknown: refuse the image
 *   bit 16  the "a.out kludge": header_addr, load_addr, load_end_addr,
 *           bss_end_addr, entry_addr say where the file goes, so the image
 *           need not be ELF; otherwise it must be an ELF file, loaded by
 *           its program headers (p_paddr) like GRUB does.
 * The kludge addresses are hostile numbers like any other: load_addr must
 * not lie before the file's start (header_addr - load_addr <= the header's
 * file offset), load_end_addr must lie within the file, bss_end_addr after
 * load_end_addr, the entry inside what was loaded, and all of it in low RAM
 * above 1 MiB (boot_check_range).  For ELF, e_entry is a virtual address;
 * like GRUB we translate it through the PT_LOAD segment that contains it
 * (p_paddr + e_entry - p_vaddr), which is the identity for the common
 * p_vaddr == p_paddr case and right for higher-half kernels.
 *
 * Machine state at entry (section 3.2): 32-bit protected mode, paging off,
 * flat segments, EAX = 0x2BADB002, EBX = physical address of the
 * multiboot_info structure - X86_ENTRY_PROT32.
 *
 * The boot information (section 3.3) lives in the page at BOOT_START_INFO:
 *   +0x000  struct multiboot_info (the 0.6.96 layout, 88 bytes)
 *   +0x100  struct multiboot_mod_list[1]  (the initrd as module 0)
 *   +0x200  the memory map: entries of {size = 20, base_addr, length, type},
 *           where `size` counts the bytes after itself (so a reader steps
 *           size + 4), from the same e820_build() table as the other formats
 *   +0x400  the boot loader name, "kvmm"
 * with flags MEM (mem_lower = 639 KiB below the EBDA, mem_upper = KiB from
 * 1 MiB to the first hole), CMDLINE, MODS (when there is a module), MMAP and
 * BOOT_LOADER_NAME.  The command line is "<kernel path> <cmdline>", as GRUB
 * and QEMU pass it (kernels skip the first word as argv[0] does); the
 * module's string is its path, at BOOT_MODSTR_ADDR.  The module goes right
 * above the kernel, page aligned (flag 0), as GRUB and QEMU place it, so
 * the RAM above it is one free block the kernel can use.
 */
#include "arch/x86/boot_internal.h"

#include <assert.h>
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define MB_HEADER_MAGIC      0x1BADB002u
#define MB_BOOTLOADER_MAGIC  0x2BADB002u
#define MB_SEARCH            8192  /* the header lies within this many bytes */

/* Header flags */
#define MB_PAGE_ALIGN  (1u << 0)
#define MB_MEMORY_INFO (1u << 1)
#define MB_VIDEO_MODE  (1u << 2)
#define MB_AOUT_KLUDGE (1u << 16)
#define MB_SUPPORTED_REQUIRED (MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_VIDEO_MODE)

/* multiboot_info.flags */
#define MBI_MEM              (1u << 0)
#define MBI_CMDLINE          (1u << 2)
#define MBI_MODS             (1u << 3)
#define MBI_MMAP             (1u << 6)
#define MBI_BOOT_LOADER_NAME (1u << 9)

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower, mem_upper;   /* KiB */
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr; /* bytes, address of the first size field */
	uint32_t drives_length, drives_addr;
	uint32_t config_table;
	uint32_t boot_loader_name;
	uint32_t apm_table;
	uint32_t vbe_control_info, vbe_mode_info;
	uint16_t vbe_mode, vbe_interface_seg, vbe_interface_off, vbe_interface_len;
};

struct multiboot_mod_list {
	uint32_t mod_start, mod_end; /* [start, end) */
	uint32_t cmdline;
	uint32_t pad;
};

struct multiboot_mmap_entry {
	uint32_t size; /* 20: the bytes after this field */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));

static_assert(sizeof(struct multiboot_info) == 88, "multiboot_info 0.6.96");
static_assert(offsetof(struct multiboot_info, mmap_length) == 44, "mmap_length");
static_assert(offsetof(struct multiboot_info, boot_loader_name) == 64, "boot_loader_name");
static_assert(sizeof(struct multiboot_mod_list) == 16, "multiboot_mod_list");
static_assert(sizeof(struct multiboot_mmap_entry) == 24, "mmap entry");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "multiboot_info is filled in host byte order");

#define MBI_MODS_OFF 0x100
#define MBI_MMAP_OFF 0x200
#define MBI_NAME_OFF 0x400
static_assert(MBI_MMAP_OFF + E820_MAX_ENTRIES * sizeof(struct multiboot_mmap_entry)
	      <= MBI_NAME_OFF, "mmap fits");

long boot_multiboot_find(const struct boot_ctx *c)
{
	size_t end = c->size < MB_SEARCH ? c->size : MB_SEARCH;

	for (size_t off = 0; off + 12 <= end; off += 4) {
		const uint8_t *p = c->data + off;
		if (boot_rd32(p) == MB_HEADER_MAGIC &&
		    (uint32_t)(boot_rd32(p) + boot_rd32(p + 4) + boot_rd32(p + 8)) == 0)
			return (long)off;
	}
	return -1;
}

/* Load by the a.out kludge fields; sets [*lo, *hi) and *entry. */
static int load_aout(struct boot_ctx *c, size_t mb, uint64_t *lo,
		     uint64_t *hi, uint64_t *entry)
{
	const uint8_t *h = c->data + mb;
	uint32_t header_addr, load_addr, load_end, bss_end, entry_addr;
	uint64_t load_off, load_len, mem_end;
	uint8_t *dst;
	int rc;

	if (mb + 32 > c->size || mb + 32 > MB_SEARCH)
		return boot_fail(c, -ENOEXEC,
				 "truncated multiboot header (a.out kludge fields at 0x%zx)", mb + 12);
	header_addr = boot_rd32(h + 12);
	load_addr = boot_rd32(h + 16);
	load_end = boot_rd32(h + 20);
	bss_end = boot_rd32(h + 24);
	entry_addr = boot_rd32(h + 28);

	if (load_addr > header_addr)
		return boot_fail(c, -ENOEXEC,
				 "multiboot load_addr 0x%x lies above header_addr 0x%x",
				 load_addr, header_addr);
	if (header_addr - load_addr > mb)
		return boot_fail(c, -ENOEXEC,
				 "multiboot load_addr 0x%x lies before the start of the file (header_addr 0x%x, header at file offset 0x%zx)",
				 load_addr, header_addr, mb);
	load_off = mb - (header_addr - load_addr);
	if (load_end == 0) {
		load_len = c->size - load_off;
	} else {
		if (load_end < load_addr)
			return boot_fail(c, -ENOEXEC,
					 "multiboot load_end_addr 0x%x lies below load_addr 0x%x",
					 load_end, load_addr);
		load_len = (uint64_t)load_end - load_addr;
		if (!boot_in_file(c, load_off, load_len))
			return boot_fail(c, -ENOEXEC,
					 "multiboot load_end_addr 0x%x lies past the end of the file (%zu bytes)",
					 load_end, c->size);
	}
	mem_end = (uint64_t)load_addr + load_len;
	if (bss_end) {
		if (bss_end < mem_end)
			return boot_fail(c, -ENOEXEC,
					 "multiboot bss_end_addr 0x%x lies below the end of the loaded image 0x%" PRIx64,
					 bss_end, mem_end);
		mem_end = bss_end;
	}
	rc = boot_check_range(c, "multiboot image", load_addr, mem_end - load_addr);
	if (rc)
		return rc;
	if (entry_addr < load_addr || entry_addr >= mem_end)
		return boot_fail(c, -ENOEXEC,
				 "multiboot entry_addr 0x%x lies outside the loaded image [0x%x, 0x%" PRIx64 ")",
				 entry_addr, load_addr, mem_end);
	dst = gm_ptr(c->gm, load_addr, mem_end - load_addr);
	memcpy(dst, c->data + load_off, load_len);
	memset(dst + load_len, 0, mem_end - load_addr - load_len);
	*lo = load_addr;
	*hi = mem_end;
	*entry = entry_addr;
	return 0;
}

/* Load an ELF by program headers; the entry is translated to physical. */
static int load_elf(struct boot_ctx *c, const struct boot_elf *e,
		    uint64_t *lo, uint64_t *hi, uint64_t *entry)
{
	struct boot_phdr ph;
	int rc;

	for (int i = 0; i < e->phnum; i++) {
		boot_elf_phdr(c, e, i, &ph);
		if (ph.type != PT_LOAD || ph.memsz == 0)
			continue;
		if (e->entry >= ph.vaddr && e->entry - ph.vaddr < ph.memsz) {
			rc = boot_elf_load(c, e, lo, hi);
			if (rc)
				return rc;
			/* boot_elf_load checked this segment: no wrap. */
			*entry = ph.paddr + (e->entry - ph.vaddr);
			return 0;
		}
	}
	return boot_fail(c, -ENOEXEC,
			 "ELF entry point 0x%" PRIx64 " is not inside any loadable segment",
			 e->entry);
}

int boot_multiboot_load(struct boot_ctx *c, size_t mb, const struct boot_elf *e,
			struct x86_boot_regs *regs)
{
	const char *kpath = c->cfg->kernel_path;
	const char *user = c->cfg->cmdline ? c->cfg->cmdline : "";
	struct multiboot_info mbi = { 0 };
	struct multiboot_mod_list mod = { 0 };
	struct multiboot_mmap_entry mm[E820_MAX_ENTRIES];
	struct e820_entry e820[E820_MAX_ENTRIES];
	char cmdline[BOOT_CMDLINE_MAX];
	uint64_t lo = 0, hi = 0, entry = 0, low_end = gm_low_end(c->gm);
	uint64_t mod_addr = 0, mod_size = 0;
	uint32_t flags = boot_rd32(c->data + mb + 4);
	uint8_t *page;
	int n, rc;

	if (flags & 0xffffu & ~MB_SUPPORTED_REQUIRED)
		return boot_fail(c, -ENOEXEC,
				 "multiboot header requires features kvmm does not provide (flags 0x%x)",
				 flags & 0xffffu & ~MB_SUPPORTED_REQUIRED);

	/* The command line and module string are checked before loading. */
	if ((size_t)snprintf(cmdline, sizeof(cmdline), "%s%s%s", kpath,
			     *user ? " " : "", user) >= sizeof(cmdline))
		return boot_fail(c, -E2BIG,
				 "command line (with the kernel path in front) is %zu bytes, at most %d fit",
				 strlen(kpath) + 1 + strlen(user), BOOT_CMDLINE_MAX - 1);
	if (c->cfg->initrd_path && strlen(c->cfg->initrd_path) >= BOOT_MODSTR_MAX)
		return boot_fail_raw(c, -E2BIG,
				     "initrd path is %zu bytes, at most %d fit in the multiboot module string",
				     strlen(c->cfg->initrd_path), BOOT_MODSTR_MAX - 1);

	if (flags & MB_AOUT_KLUDGE)
		rc = load_aout(c, mb, &lo, &hi, &entry);
	else if (e)
		rc = load_elf(c, e, &lo, &hi, &entry);
	else
		rc = boot_fail(c, -ENOEXEC,
			       "multiboot image is neither ELF nor uses the a.out kludge (header flag 16)");
	if (rc)
		return rc;

	rc = boot_write_cmdline(c, cmdline, BOOT_CMDLINE_MAX - 1);
	if (rc)
		return rc;
	if (c->cfg->initrd_path) {
		rc = boot_load_initrd(c, hi, low_end, false, &mod_addr, &mod_size);
		if (rc)
			return rc;
		if (gm_write(c->gm, BOOT_MODSTR_ADDR, c->cfg->initrd_path,
			     strlen(c->cfg->initrd_path) + 1))
			return boot_fail(c, -EFAULT, "guest RAM too small for the module string");
		mod.mod_start = (uint32_t)mod_addr;
		mod.mod_end = (uint32_t)(mod_addr + mod_size);
		mod.cmdline = (uint32_t)BOOT_MODSTR_ADDR;
		mbi.flags |= MBI_MODS;
		mbi.mods_count = 1;
		mbi.mods_addr = (uint32_t)(BOOT_START_INFO + MBI_MODS_OFF);
	}

	n = e820_build(c->gm, e820, E820_MAX_ENTRIES);
	if (n < 0)
		return boot_fail(c, n, "cannot build the e820 map");
	for (int i = 0; i < n; i++)
		mm[i] = (struct multiboot_mmap_entry){
			.size = sizeof(mm[0]) - 4, .addr = e820[i].addr,
			.len = e820[i].size, .type = e820[i].type };

	mbi.flags |= MBI_MEM | MBI_CMDLINE | MBI_MMAP | MBI_BOOT_LOADER_NAME;
	mbi.mem_lower = (uint32_t)((low_end < BOOT_EBDA_START ? low_end : BOOT_EBDA_START) / 1024);
	mbi.mem_upper = (uint32_t)(low_end > BOOT_HIGH_START ?
				   (low_end - BOOT_HIGH_START) / 1024 : 0);
	mbi.cmdline = (uint32_t)BOOT_CMDLINE_ADDR;
	mbi.mmap_addr = (uint32_t)(BOOT_START_INFO + MBI_MMAP_OFF);
	mbi.mmap_length = (uint32_t)((size_t)n * sizeof(mm[0]));
	mbi.boot_loader_name = (uint32_t)(BOOT_START_INFO + MBI_NAME_OFF);

	page = gm_ptr(c->gm, BOOT_START_INFO, BOOT_PAGE_SIZE);
	if (!page)
		return boot_fail(c, -EFAULT, "guest RAM too small for multiboot_info");
	memset(page, 0, BOOT_PAGE_SIZE);
	memcpy(page, &mbi, sizeof(mbi));
	memcpy(page + MBI_MODS_OFF, &mod, sizeof(mod));
	memcpy(page + MBI_MMAP_OFF, mm, (size_t)n * sizeof(mm[0]));
	memcpy(page + MBI_NAME_OFF, "kvmm", 5);

	regs->mode = X86_ENTRY_PROT32;
	regs->rip = entry;
	regs->rax = MB_BOOTLOADER_MAGIC;
	regs->rbx = BOOT_START_INFO;
	regs->rsp = BOOT_STACK_TOP;
	regs->format = "multiboot";
	regs->is_linux = 0;
	return 0;
}
