/*
 * boot_linux.c - the Linux x86 boot protocol for bzImage kernels
 * (Documentation/arch/x86/boot.rst, arch/x86/include/uapi/asm/bootparam.h).
 *
 * Why it is shaped this way
 * -------------------------
 * kvmm enters a bzImage at its 64-bit entry point, startup_64, which sits
 * 0x200 bytes into the protected-mode kernel: the CPU is already in long
 * mode with identity page tables, CS/DS are the flat __BOOT_CS/__BOOT_DS
 * selectors (0x10/0x18) and RSI points at boot_params, the "zero page".
 * That skips the real-mode setup code and the 32-bit entry entirely, which
 * is what Firecracker, Cloud Hypervisor and QEMU's microvm do too: there is
 * no BIOS to call, the VMM fills in everything setup would have gathered
 * (memory map, command line, initrd).  The price is a floor on the kernel:
 * the 64-bit entry exists since boot protocol 2.12 and is advertised by
 * XLF_KERNEL_64 in xloadflags.  We demand protocol >= 2.06 (for
 * cmdline_size) and then XLF_KERNEL_64, which in practice means 2.12
 * (Linux 3.8, 2013) or later; anything older gets a clear error.
 *
 * The file is:
 *   [0, (setup_sects + 1) * 512)   boot sector + real-mode setup code; the
 *                                  setup header sits at 0x1f1 and its end
 *                                  is given by the short jump at 0x200
 *                                  (end = 0x202 + the jump's 8-bit offset)
 *   [(setup_sects + 1) * 512, EOF) the protected-mode kernel (compressed
 *                                  payload + decompressor), possibly with a
 *                                  PE signature appended by the distribution
 * setup_sects == 0 means 4 for historical reasons.
 *
 * Loading follows boot.rst's "Loading the rest of the kernel" and "64-bit
 * boot protocol":
 *   - boot_params is zeroed and only the setup header is copied into it
 *     from the file, so that the "sentinel" logic in the kernel sees a
 *     clean page; fields the loader owns (type_of_loader, cmd_line_ptr,
 *     ramdisk_*, heap_end_ptr, setup_data, hardware_subarch) are then
 *     overwritten, whatever the file said.
 *   - the protected-mode kernel goes to pref_address when the kernel is
 *     relocatable (Debian's: 0x1000000), else to 0x100000.  We do not
 *     relocate a kernel lower to fit a small guest: the 64-bit decompressor
 *     moves itself to at least LOAD_PHYSICAL_ADDR anyway.
 *   - [load address, load address + init_size) is the kernel's working
 *     area during decompression; nothing else may live there, so the
 *     loader's own structures and the initrd are checked against it and
 *     the initrd goes above it.  The area is not zeroed (that would touch
 *     tens of MiB of guest RAM for nothing: the decompressor clears its own
 *     BSS).
 *   - the initrd goes at the top of low RAM, 4 KiB aligned, below
 *     initrd_addr_max (or anywhere below 4 GiB when the kernel sets
 *     XLF_CAN_BE_LOADED_ABOVE_4G - we keep it below 4 GiB all the same,
 *     where the identity map covers it), which is where GRUB and QEMU put
 *     it too, leaving the most contiguous RAM between kernel and initrd.
 *   - the command line goes to BOOT_CMDLINE_ADDR and must fit cmdline_size
 *     (the kernel's limit, without the NUL) and BOOT_CMDLINE_MAX.
 *   - the e820 table comes from e820_build(); the RSDP address goes into
 *     acpi_rsdp_addr for protocol >= 2.14 (older kernels find it by
 *     scanning 0xe0000-0xfffff, where the ACPI builder puts it anyway).
 *
 * The boot_params and setup_header layouts are declared here rather than
 * taken from kernel headers (which are not installed for the guest's
 * architecture on every build host and carry BIOS-era baggage); the
 * static_asserts below pin every offset the loader uses to bootparam.h.
 */
#include "arch/x86/boot_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "boot_params is filled in host byte order");

/* loadflags */
#define LOADED_HIGH   (1u << 0)
#define CAN_USE_HEAP  (1u << 7)
/* xloadflags */
#define XLF_KERNEL_64              (1u << 0)
#define XLF_CAN_BE_LOADED_ABOVE_4G (1u << 1)

#define SETUP_HDR_OFF    0x1f1  /* struct setup_header in the file and in boot_params */
#define SETUP_HDR_MAX    0x290  /* boot_params fields resume here */
#define SETUP_JUMP_OFF   0x200
#define SETUP_SECT_SIZE  512
#define STARTUP_64_OFF   0x200  /* 64-bit entry, from the protected-mode kernel's start */
#define DEFAULT_LOAD     0x100000ull
#define HEAP_END_PTR     0xfe00 /* boot.rst: setup's heap ends here (offset from the setup segment) */
#define TYPE_OF_LOADER_UNDEFINED 0xff

struct linux_setup_header {
	uint8_t setup_sects;            /* 0x1f1 */
	uint16_t root_flags;            /* 0x1f2 */
	uint32_t syssize;               /* 0x1f4 */
	uint16_t ram_size;              /* 0x1f8 */
	uint16_t vid_mode;              /* 0x1fa */
	uint16_t root_dev;              /* 0x1fc */
	uint16_t boot_flag;             /* 0x1fe */
	uint16_t jump;                  /* 0x200 */
	uint32_t header;                /* 0x202 */
	uint16_t version;               /* 0x206 */
	uint32_t realmode_swtch;        /* 0x208 */
	uint16_t start_sys_seg;         /* 0x20c */
	uint16_t kernel_version;        /* 0x20e */
	uint8_t type_of_loader;         /* 0x210 */
	uint8_t loadflags;              /* 0x211 */
	uint16_t setup_move_size;       /* 0x212 */
	uint32_t code32_start;          /* 0x214 */
	uint32_t ramdisk_image;         /* 0x218 */
	uint32_t ramdisk_size;          /* 0x21c */
	uint32_t bootsect_kludge;       /* 0x220 */
	uint16_t heap_end_ptr;          /* 0x224 */
	uint8_t ext_loader_ver;         /* 0x226 */
	uint8_t ext_loader_type;        /* 0x227 */
	uint32_t cmd_line_ptr;          /* 0x228 */
	uint32_t initrd_addr_max;       /* 0x22c */
	uint32_t kernel_alignment;      /* 0x230 */
	uint8_t relocatable_kernel;     /* 0x234 */
	uint8_t min_alignment;          /* 0x235 */
	uint16_t xloadflags;            /* 0x236 */
	uint32_t cmdline_size;          /* 0x238 */
	uint32_t hardware_subarch;      /* 0x23c */
	uint64_t hardware_subarch_data; /* 0x240 */
	uint32_t payload_offset;        /* 0x248 */
	uint32_t payload_length;        /* 0x24c */
	uint64_t setup_data;            /* 0x250 */
	uint64_t pref_address;          /* 0x258 */
	uint32_t init_size;             /* 0x260 */
	uint32_t handover_offset;       /* 0x264 */
	uint32_t kernel_info_offset;    /* 0x268 */
} __attribute__((packed));

struct linux_boot_params {
	uint8_t screen_info[0x40];          /* 0x000 */
	uint8_t apm_bios_info[0x14];        /* 0x040 */
	uint8_t _pad2[4];                   /* 0x054 */
	uint64_t tboot_addr;                /* 0x058 */
	uint8_t ist_info[0x10];             /* 0x060 */
	uint64_t acpi_rsdp_addr;            /* 0x070 */
	uint8_t _pad3[8];                   /* 0x078 */
	uint8_t hd0_info[16];               /* 0x080 */
	uint8_t hd1_info[16];               /* 0x090 */
	uint8_t sys_desc_table[16];         /* 0x0a0 */
	uint8_t olpc_ofw_header[16];        /* 0x0b0 */
	uint32_t ext_ramdisk_image;         /* 0x0c0 */
	uint32_t ext_ramdisk_size;          /* 0x0c4 */
	uint32_t ext_cmd_line_ptr;          /* 0x0c8 */
	uint8_t _pad4[116];                 /* 0x0cc */
	uint8_t edid_info[0x80];            /* 0x140 */
	uint8_t efi_info[0x20];             /* 0x1c0 */
	uint32_t alt_mem_k;                 /* 0x1e0 */
	uint32_t scratch;                   /* 0x1e4 */
	uint8_t e820_entries;               /* 0x1e8 */
	uint8_t eddbuf_entries;             /* 0x1e9 */
	uint8_t edd_mbr_sig_buf_entries;    /* 0x1ea */
	uint8_t kbd_status;                 /* 0x1eb */
	uint8_t secure_boot;                /* 0x1ec */
	uint8_t _pad5[2];                   /* 0x1ed */
	uint8_t sentinel;                   /* 0x1ef */
	uint8_t _pad6[1];                   /* 0x1f0 */
	struct linux_setup_header hdr;      /* 0x1f1 */
	uint8_t _pad7[SETUP_HDR_MAX - SETUP_HDR_OFF - sizeof(struct linux_setup_header)];
	uint32_t edd_mbr_sig_buffer[16];    /* 0x290 */
	struct e820_entry e820_table[128];  /* 0x2d0, E820_MAX_ENTRIES_ZEROPAGE */
	uint8_t _pad8[48];                  /* 0xcd0 */
	uint8_t eddbuf[6 * 82];             /* 0xd00, EDDMAXNR * sizeof(struct edd_info) */
	uint8_t _pad9[276];                 /* 0xeec */
} __attribute__((packed));

#define BP_OFF(f) offsetof(struct linux_boot_params, f)
static_assert(sizeof(struct linux_boot_params) == 4096, "zero page is one page");
static_assert(sizeof(struct e820_entry) == 20, "boot_e820_entry is 20 bytes");
static_assert(BP_OFF(acpi_rsdp_addr) == 0x070, "acpi_rsdp_addr");
static_assert(BP_OFF(ext_ramdisk_image) == 0x0c0, "ext_ramdisk_image");
static_assert(BP_OFF(ext_ramdisk_size) == 0x0c4, "ext_ramdisk_size");
static_assert(BP_OFF(ext_cmd_line_ptr) == 0x0c8, "ext_cmd_line_ptr");
static_assert(BP_OFF(e820_entries) == 0x1e8, "e820_entries");
static_assert(BP_OFF(sentinel) == 0x1ef, "sentinel");
static_assert(BP_OFF(hdr) == SETUP_HDR_OFF, "setup header");
static_assert(BP_OFF(edd_mbr_sig_buffer) == 0x290, "edd_mbr_sig_buffer");
static_assert(BP_OFF(e820_table) == 0x2d0, "e820_table");
static_assert(BP_OFF(eddbuf) == 0xd00, "eddbuf");
#define HDR_OFF(f) (SETUP_HDR_OFF + offsetof(struct linux_setup_header, f))
static_assert(HDR_OFF(boot_flag) == 0x1fe, "boot_flag");
static_assert(HDR_OFF(header) == 0x202, "header");
static_assert(HDR_OFF(type_of_loader) == 0x210, "type_of_loader");
static_assert(HDR_OFF(cmd_line_ptr) == 0x228, "cmd_line_ptr");
static_assert(HDR_OFF(xloadflags) == 0x236, "xloadflags");
static_assert(HDR_OFF(cmdline_size) == 0x238, "cmdline_size");
static_assert(HDR_OFF(pref_address) == 0x258, "pref_address");
static_assert(HDR_OFF(init_size) == 0x260, "init_size");
static_assert(HDR_OFF(kernel_info_offset) + 4 == 0x26c, "end of the 2.15 header");

/* A fixed structure of the loader in low memory, for overlap messages. */
struct fixed_range {
	uint64_t addr, len;
	const char *name;
};

static const struct fixed_range fixed_ranges[] = {
	{ 0, BOOT_GDT_ADDR, "the real-mode IVT and BIOS data area" },
	{ BOOT_GDT_ADDR, BOOT_GDT_ENTRIES * 8, "the boot GDT" },
	{ BOOT_ZERO_PAGE, BOOT_PAGE_SIZE, "the zero page (boot_params)" },
	{ BOOT_STACK_TOP - 0x100, 0x100, "the boot stack" },
	{ BOOT_PML4, BOOT_PT_END - BOOT_PML4, "the boot page tables" },
	{ BOOT_CMDLINE_ADDR, BOOT_CMDLINE_MAX, "the command line" },
	{ BOOT_EBDA_START, BOOT_HIGH_START - BOOT_EBDA_START,
	  "the BIOS area (EBDA, ACPI tables)" },
};

/* True if the kernel's kernel_version pointer (an offset from 0x200, inside
 * the setup code) names a NUL-terminated printable string: the mark of a
 * real Linux kernel rather than some other bzImage-shaped file. */
static bool has_version_string(const struct boot_ctx *c, size_t setup_end)
{
	uint16_t kv = boot_rd16(c->data + HDR_OFF(kernel_version));
	size_t off, i;

	if (kv == 0)
		return false;
	off = (size_t)kv + 0x200;
	if (off >= setup_end || off >= c->size)
		return false;
	for (i = off; i < setup_end && i < c->size && i - off < 256; i++) {
		uint8_t ch = c->data[i];
		if (ch == 0)
			return i > off;
		if (ch < 0x20 || ch > 0x7e)
			return false;
	}
	return false;
}

int boot_linux_load(struct boot_ctx *c, struct x86_boot_regs *regs)
{
	const uint8_t *d = c->data;
	struct linux_boot_params *bp = NULL;
	struct e820_entry e820[E820_MAX_ENTRIES];
	uint64_t load, span, pm_off, pm_size, init_size, initrd_limit;
	uint64_t initrd_addr = 0, initrd_size = 0, low_end = gm_low_end(c->gm);
	size_t hdr_end, need_end;
	uint16_t version, xlf = 0;
	unsigned setup_sects;
	int n, rc;

	/* 1. The setup header: present, long enough, new enough. */
	if (c->size < 0x208 || d[SETUP_JUMP_OFF] != 0xeb)
		return boot_fail(c, -ENOEXEC,
				 c->size < 0x208 ? "truncated setup header (file is %zu bytes)"
						 : "malformed setup header: no short jump at 0x200 (file is %zu bytes)",
				 c->size);
	hdr_end = 0x202 + (size_t)d[SETUP_JUMP_OFF + 1];
	if (hdr_end > c->size)
		return boot_fail(c, -ENOEXEC,
				 "truncated setup header (ends at 0x%zx, file is %zu bytes)",
				 hdr_end, c->size);
	version = boot_rd16(d + HDR_OFF(version));
	if (version < 0x206)
		return boot_fail(c, -ENOEXEC,
				 "boot protocol %u.%02u is too old (kvmm needs 2.06 or later)",
				 version >> 8, version & 0xff);
	need_end = version >= 0x20a ? HDR_OFF(init_size) + 4 : HDR_OFF(cmdline_size) + 4;
	if (hdr_end < need_end)
		return boot_fail(c, -ENOEXEC,
				 "setup header ends at 0x%zx, too short for boot protocol %u.%02u (needs 0x%zx)",
				 hdr_end, version >> 8, version & 0xff, need_end);
	if (hdr_end > SETUP_HDR_MAX)
		return boot_fail(c, -ENOEXEC,
				 "setup header ends at 0x%zx, past boot_params' header area (0x%x)",
				 hdr_end, SETUP_HDR_MAX);
	if (version >= 0x20c)
		xlf = boot_rd16(d + HDR_OFF(xloadflags));
	if (!(xlf & XLF_KERNEL_64))
		return boot_fail(c, -ENOEXEC,
				 "no 64-bit entry point (XLF_KERNEL_64 not set, boot protocol %u.%02u)",
				 version >> 8, version & 0xff);

	/* 2. The protected-mode kernel and where it goes. */
	setup_sects = d[HDR_OFF(setup_sects)] ? d[HDR_OFF(setup_sects)] : 4;
	pm_off = (uint64_t)(setup_sects + 1) * SETUP_SECT_SIZE;
	if (pm_off >= c->size)
		return boot_fail(c, -ENOEXEC,
				 "truncated: the protected-mode kernel starts at 0x%" PRIx64 " but the file is %zu bytes",
				 pm_off, c->size);
	pm_size = c->size - pm_off;
	if (pm_size <= STARTUP_64_OFF)
		return boot_fail(c, -ENOEXEC,
				 "truncated: the protected-mode kernel (%" PRIu64 " bytes) ends before the 64-bit entry at +0x%x",
				 pm_size, STARTUP_64_OFF);
	/* syssize (16-byte units) is what the build wrote; a shorter file was
	 * cut off (a signature may follow, so longer is fine). */
	if ((uint64_t)boot_rd32(d + HDR_OFF(syssize)) * 16 > pm_size)
		return boot_fail(c, -ENOEXEC,
				 "truncated: the header says the protected-mode kernel is %" PRIu64
				 " bytes but the file holds %" PRIu64,
				 (uint64_t)boot_rd32(d + HDR_OFF(syssize)) * 16, pm_size);
	init_size = boot_rd32(d + HDR_OFF(init_size));
	load = DEFAULT_LOAD;
	if (d[HDR_OFF(relocatable_kernel)])
		load = boot_rd64(d + HDR_OFF(pref_address));
	span = init_size > pm_size ? init_size : pm_size;
	if (load > UINT32_MAX || span > UINT32_MAX)
		return boot_fail(c, -ENOEXEC,
				 "load address 0x%" PRIx64 " + init_size 0x%" PRIx64 " lies beyond 4 GiB",
				 load, span);
	for (size_t i = 0; i < sizeof(fixed_ranges) / sizeof(fixed_ranges[0]); i++) {
		const struct fixed_range *f = &fixed_ranges[i];
		if (boot_overlap(load, span, f->addr, f->len))
			return boot_fail(c, -ENOEXEC,
					 "kernel [0x%" PRIx64 ", 0x%" PRIx64 ") (load address + init_size) overlaps %s at 0x%" PRIx64,
					 load, load + span, f->name, f->addr);
	}
	rc = boot_check_range(c, "kernel (load address + init_size)", load, span);
	if (rc)
		return rc;

	/* 3. Command line and initrd (both checked before they are written). */
	rc = boot_write_cmdline(c, c->cfg->cmdline, boot_rd32(d + HDR_OFF(cmdline_size)));
	if (rc)
		return rc;
	initrd_limit = low_end;
	if (!(xlf & XLF_CAN_BE_LOADED_ABOVE_4G)) {
		uint64_t max = (uint64_t)boot_rd32(d + HDR_OFF(initrd_addr_max)) + 1;
		if (max < initrd_limit)
			initrd_limit = max;
	}
	if (c->cfg->initrd_path) {
		rc = boot_load_initrd(c, load + span, initrd_limit, true,
				      &initrd_addr, &initrd_size);
		if (rc)
			return rc;
	}

	/* 4. The kernel itself. */
	memcpy(gm_ptr(c->gm, load, pm_size), d + pm_off, pm_size);

	/* 5. The zero page. */
	bp = calloc(1, sizeof(*bp));
	if (!bp)
		return boot_fail(c, -ENOMEM, "out of host memory");
	memcpy((uint8_t *)bp + SETUP_HDR_OFF, d + SETUP_HDR_OFF, hdr_end - SETUP_HDR_OFF);
	bp->hdr.type_of_loader = TYPE_OF_LOADER_UNDEFINED;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = HEAP_END_PTR;
	bp->hdr.ext_loader_ver = 0;
	bp->hdr.ext_loader_type = 0;
	bp->hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = (uint32_t)(BOOT_CMDLINE_ADDR >> 32);
	bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	bp->hdr.setup_data = 0;
	bp->hdr.hardware_subarch = 0; /* X86_SUBARCH_PC */
	bp->hdr.hardware_subarch_data = 0;
	bp->hdr.code32_start = (uint32_t)load;
	if (version >= 0x20e)
		bp->acpi_rsdp_addr = c->cfg->rsdp_addr;
	n = e820_build(c->gm, e820, E820_MAX_ENTRIES);
	if (n < 0) {
		free(bp);
		return boot_fail(c, n, "cannot build the e820 map");
	}
	memcpy(bp->e820_table, e820, (size_t)n * sizeof(e820[0]));
	bp->e820_entries = (uint8_t)n;
	rc = gm_write(c->gm, BOOT_ZERO_PAGE, bp, sizeof(*bp));
	free(bp);
	if (rc)
		return boot_fail(c, rc, "guest RAM too small for the zero page");

	/* 6. The vCPU at startup_64 (boot.rst, "64-bit Boot Protocol"). */
	regs->mode = X86_ENTRY_LONG64;
	regs->rip = load + STARTUP_64_OFF;
	regs->rsi = BOOT_ZERO_PAGE;
	regs->rsp = BOOT_STACK_TOP;
	regs->format = "bzImage";
	regs->is_linux = has_version_string(c, pm_off);
	return 0;
}
