/*
 * boot_pvh.c - PVH direct boot of an ELF kernel (xen/include/public/
 * arch-x86/hvm/start_info.h, xen/include/public/elfnote.h,
 * Linux arch/x86/platform/pvh/).
 *
 * Why it is shaped this way
 * -------------------------
 * PVH is the simplest way into an uncompressed ELF kernel (vmlinux, and
 * unikernels built for Xen/Firecracker/QEMU's microvm): load the PT_LOAD
 * segments where their p_paddr says, write one small hvm_start_info
 * structure, and jump to the 32-bit entry point the kernel names in an ELF
 * note, XEN_ELFNOTE_PHYS32_ENTRY (name "Xen", type 18), with:
 *   - CR0.PE set, paging off, flat 4 GiB code and data segments (the code
 *     descriptor with D=1) - X86_ENTRY_PROT32;
 *   - EBX = guest-physical address of hvm_start_info.
 * No zero page, no decompressor, no real-mode anything.  Linux has this
 * entry (CONFIG_PVH) and reads its memory map, command line, initrd
 * (module 0) and RSDP from start_info - the same facts the bzImage path
 * puts into boot_params, taken from the same e820_build() table.
 *
 * hvm_start_info version 1 is written, with the memory map (memmap_paddr /
 * memmap_entries, hvm_memmap_table_entry uses e820 type numbers).  Version
 * 1 readers (Linux >= 4.20) use the map; version 0 readers ignore the
 * fields and fall back to the E820 hypercall, which a KVM guest does not
 * have, so version 1 is the only useful choice.  Everything sits in one
 * page at BOOT_START_INFO:
 *   +0x000  struct hvm_start_info (56 bytes)
 *   +0x040  struct hvm_modlist_entry[1] (the initrd, 32 bytes)
 *   +0x080  struct hvm_memmap_table_entry[E820_MAX_ENTRIES] (24 bytes each)
 * The command line is at BOOT_CMDLINE_ADDR as for every format, and the
 * initrd at the top of low RAM, above the highest segment (the kernel's
 * own BSS/brk are part of p_memsz, so nothing the kernel will clear is
 * overwritten).  Per the start_info contract a 0 address means "absent".
 *
 * The entry note is 4 bytes in some kernels and 8 in others (Linux emits
 * it with _ASM_PTR, so 8 on x86_64); either is accepted, but the value must
 * be a 32-bit address inside a loaded segment, since we will jump there
 * with paging off.
 *
 * is_linux is set from the image's own notes: a note named "Linux" (Linux
 * emits several: build salt, LTO info) or the Xen note
 * XEN_ELFNOTE_GUEST_OS = "linux".  It decides whether --accel auto may pick
 * KVM on a PVM host, so it errs on the side of "not Linux" only when the
 * image really says nothing.
 */
#include "arch/x86/boot_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <strings.h>

#define XEN_ELFNOTE_GUEST_OS      6
#define XEN_ELFNOTE_PHYS32_ENTRY  18
#define XEN_HVM_START_MAGIC_VALUE 0x336ec578u

struct hvm_start_info {
	uint32_t magic;          /* XEN_HVM_START_MAGIC_VALUE */
	uint32_t version;        /* 1: has the memory map */
	uint32_t flags;          /* SIF_xxx, none here */
	uint32_t nr_modules;
	uint64_t modlist_paddr;  /* struct hvm_modlist_entry[nr_modules] */
	uint64_t cmdline_paddr;  /* NUL-terminated */
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;   /* struct hvm_memmap_table_entry[memmap_entries] */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr, size; /* bytes */
	uint32_t type;       /* e820 type */
	uint32_t reserved;
};

static_assert(sizeof(struct hvm_start_info) == 56, "start_info.h layout");
static_assert(offsetof(struct hvm_start_info, memmap_paddr) == 40, "memmap_paddr");
static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");
static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "start_info is filled in host byte order");

#define PVH_MODLIST_OFF 0x40
#define PVH_MEMMAP_OFF  0x80
static_assert(PVH_MEMMAP_OFF + E820_MAX_ENTRIES * sizeof(struct hvm_memmap_table_entry)
	      <= BOOT_PAGE_SIZE, "start_info page");

static bool elf_says_linux(struct boot_ctx *c, const struct boot_elf *e)
{
	const uint8_t *desc;
	uint32_t dsz;

	if (boot_elf_find_note(c, e, "Linux", BOOT_NOTE_ANY_TYPE, &desc, &dsz) > 0)
		return true;
	if (boot_elf_find_note(c, e, "Xen", XEN_ELFNOTE_GUEST_OS, &desc, &dsz) > 0 &&
	    dsz >= 5 && !strncasecmp((const char *)desc, "linux", 5) &&
	    (dsz == 5 || desc[5] == '\0'))
		return true;
	return false;
}

int boot_pvh_load(struct boot_ctx *c, const struct boot_elf *e,
		  struct x86_boot_regs *regs)
{
	struct hvm_start_info si = { 0 };
	struct hvm_modlist_entry mod = { 0 };
	struct hvm_memmap_table_entry mm[E820_MAX_ENTRIES] = { 0 };
	struct e820_entry e820[E820_MAX_ENTRIES];
	const uint8_t *desc;
	uint32_t dsz;
	uint64_t entry, lo = 0, hi = 0, initrd_addr = 0, initrd_size = 0;
	uint8_t *page;
	int n, rc;

	rc = boot_elf_find_note(c, e, "Xen", XEN_ELFNOTE_PHYS32_ENTRY, &desc, &dsz);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return boot_fail(c, -ENOEXEC, "no XEN_ELFNOTE_PHYS32_ENTRY note (not a PVH kernel)");
	if (dsz == 4)
		entry = boot_rd32(desc);
	else if (dsz == 8)
		entry = boot_rd64(desc);
	else
		return boot_fail(c, -ENOEXEC,
				 "PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) has %u bytes, expected 4 or 8",
				 dsz);

	/* Check every segment, then the entry, then the command line, before
	 * anything but segments is written. */
	rc = boot_elf_load(c, e, &lo, &hi);
	if (rc)
		return rc;
	if (entry < lo || entry >= hi)
		return boot_fail(c, -ENOEXEC,
				 "PVH entry point 0x%" PRIx64 " lies outside the loaded segments [0x%" PRIx64 ", 0x%" PRIx64 ")",
				 entry, lo, hi);
	rc = boot_write_cmdline(c, c->cfg->cmdline, BOOT_CMDLINE_MAX - 1);
	if (rc)
		return rc;
	if (c->cfg->initrd_path) {
		rc = boot_load_initrd(c, hi, gm_low_end(c->gm), true,
				      &initrd_addr, &initrd_size);
		if (rc)
			return rc;
	}

	n = e820_build(c->gm, e820, E820_MAX_ENTRIES);
	if (n < 0)
		return boot_fail(c, n, "cannot build the e820 map");
	for (int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){
			.addr = e820[i].addr, .size = e820[i].size, .type = e820[i].type };

	si.magic = XEN_HVM_START_MAGIC_VALUE;
	si.version = 1;
	si.cmdline_paddr = BOOT_CMDLINE_ADDR;
	si.rsdp_paddr = c->cfg->rsdp_addr;
	si.memmap_paddr = BOOT_START_INFO + PVH_MEMMAP_OFF;
	si.memmap_entries = (uint32_t)n;
	if (c->cfg->initrd_path) {
		si.nr_modules = 1;
		si.modlist_paddr = BOOT_START_INFO + PVH_MODLIST_OFF;
		mod.paddr = initrd_addr;
		mod.size = initrd_size;
	}
	page = gm_ptr(c->gm, BOOT_START_INFO, BOOT_PAGE_SIZE);
	if (!page)
		return boot_fail(c, -EFAULT, "guest RAM too small for hvm_start_info");
	memset(page, 0, BOOT_PAGE_SIZE);
	memcpy(page, &si, sizeof(si));
	memcpy(page + PVH_MODLIST_OFF, &mod, sizeof(mod));
	memcpy(page + PVH_MEMMAP_OFF, mm, (size_t)n * sizeof(mm[0]));

	regs->mode = X86_ENTRY_PROT32;
	regs->rip = entry;
	regs->rbx = BOOT_START_INFO;
	regs->rsp = BOOT_STACK_TOP;
	regs->format = "pvh";
	regs->is_linux = elf_says_linux(c, e);
	return 0;
}
