/*
 * boot_info.c - the format-specific half of the test guests: check what the
 * loader handed over (registers, CPU state, the boot information structure)
 * and convert it into a struct boot_info for the common checks in guest.c.
 *
 * Each guest_main_*() prints a "PASS boot" / "FAIL boot" line for the
 * format's own rules:
 *   multiboot  EAX = 0x2BADB002, EBX = multiboot_info (flags: mem_*, cmdline,
 *              mods, mmap), protected mode without paging, IF clear,
 *              mem_upper consistent with the memory map
 *   pvh        hvm_start_info magic 0x336ec578, version >= 1 (memmap),
 *              CR0 = PE only, CR4 = 0, IF clear, flat CS/DS
 *   bzimage    RSI = boot_params with the image's setup header copied in
 *              (boot flag, "HdrS", version, setup_sects, code32_start,
 *              xloadflags, cmdline_size), type_of_loader set, e820 table;
 *              entered at the 64-bit entry: long mode, CS = 0x10,
 *              DS/ES/SS = 0x18 flat, IF clear
 * and records which fields the format has (RSDP address, a limit on the
 * command line), so that the common checks know what to expect.
 */
#include "guest.h"

static struct boot_info bi;

/* Collects the reasons of a FAIL boot line; the first one wins. */
static char boot_problem[160];

static void problem(const char *what)
{
	if (!boot_problem[0]) {
		size_t n = strnlen(what, sizeof(boot_problem) - 1);
		memcpy(boot_problem, what, n);
		boot_problem[n] = 0;
	}
}

static void report_boot(const char *fmt, ...)
{
	va_list ap;
	if (boot_problem[0]) {
		test_fail("boot", "%s", boot_problem);
		return;
	}
	va_start(ap, fmt);
	test_vpass("boot", fmt, ap);
	va_end(ap);
}

static void copy_cmdline(uint64_t addr)
{
	if (!addr)
		return;
	if (!phys_ok(addr, 1)) {
		problem("the command line is out of reach");
		return;
	}
	bi.has_cmdline = true;
	bi.cmdline_addr = addr;
	uint64_t avail = phys_limit() - addr;
	size_t max = avail < BOOT_MAX_CMDLINE ? (size_t)avail : BOOT_MAX_CMDLINE;
	size_t n = strnlen(phys_ptr(addr), max);
	if (n >= BOOT_MAX_CMDLINE)
		n = BOOT_MAX_CMDLINE - 1; /* check_cmdline() reports it */
	memcpy(bi.cmdline, phys_ptr(addr), n);
	bi.cmdline[n] = 0;
	bi.cmdline_len = n;
}

static void add_region(uint64_t addr, uint64_t size, uint32_t type)
{
	if (bi.nmem >= BOOT_MAX_REGIONS) {
		problem("more than 128 memory map entries");
		return;
	}
	bi.mem[bi.nmem].addr = addr;
	bi.mem[bi.nmem].size = size;
	bi.mem[bi.nmem].type = type;
	bi.nmem++;
	bi.has_memmap = true;
}

/* The GDT the loader left (entry_state.gdtr, from SGDT) */
static uint64_t gdt_base(void)
{
	uint32_t b32;
	uint64_t b64 = 0;
	if (sizeof(uintptr_t) == 8) {
		memcpy(&b64, entry_state.gdtr + 2, 8);
	} else {
		memcpy(&b32, entry_state.gdtr + 2, 4);
		b64 = b32;
	}
	return b64;
}

/* Decode the descriptor of `sel` in that GDT.  Returns a reason it is not
 * a flat 4 GiB segment of the wanted kind (code: 32-bit, or 64-bit with
 * `long_mode`), or NULL if it is. */
static const char *check_flat_segment(uint32_t sel, bool code, bool long_mode)
{
	uint16_t glim;
	memcpy(&glim, entry_state.gdtr, 2);
	uint64_t base = gdt_base();
	if ((sel & ~7u) == 0 || (sel & 4) || (sel | 7) > glim)
		return "selector outside the GDT";
	if (!phys_ok(base + (sel & ~7u), 8))
		return "GDT out of reach";
	uint64_t d;
	memcpy(&d, phys_ptr(base + (sel & ~7u)), 8);
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
	if (d & (1ull << 55))
		limit = (limit << 12) | 0xfff;
	uint64_t sbase = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
	uint8_t access = (uint8_t)(d >> 40);
	if (!(access & 0x80))
		return "descriptor not present";
	if (!(access & 0x10) || !!(access & 0x08) != code)
		return code ? "not a code descriptor" : "not a data descriptor";
	if (code && !(access & 0x02))
		return "code segment not readable";
	if (!code && !(access & 0x02))
		return "data segment not writable";
	if (sbase != 0)
		return "base not 0";
	if (limit != 0xffffffffu && !(code && long_mode))
		return "limit not 4 GiB";
	if (code && long_mode && !(d & (1ull << 53)))
		return "not a 64-bit code segment (L clear)";
	if (code && !long_mode && !(d & (1ull << 54)))
		return "not a 32-bit code segment (D clear)";
	return 0;
}

static void print_entry_state(void)
{
	struct entry_state *e = &entry_state;
	gprintf("INFO entry: ax %#llx bx %#llx si %#llx flags %#llx sp %#llx\n", (unsigned long long)e->ax,
		(unsigned long long)e->bx, (unsigned long long)e->si, (unsigned long long)e->flags,
		(unsigned long long)e->sp);
	gprintf("INFO entry: cr0 %#llx cr3 %#llx cr4 %#llx cs %#x ds %#x es %#x ss %#x", (unsigned long long)e->cr0,
		(unsigned long long)e->cr3, (unsigned long long)e->cr4, e->cs, e->ds, e->es, e->ss);
	uint16_t glim;
	memcpy(&glim, e->gdtr, 2);
	gprintf(" gdt %#llx+%#x\n", (unsigned long long)gdt_base(), glim);
}

#ifdef __i386__
/* The rules the two 32-bit protocols share. */
static void check_entry32(bool strict_cr)
{
	struct entry_state *e = &entry_state;
	if (!(e->cr0 & 1))
		problem("CR0.PE clear at the entry");
	if (e->cr0 & 0x80000000u)
		problem("paging enabled at the 32-bit entry (CR0.PG set)");
	if (e->flags & (1u << 9))
		problem("interrupts enabled at the entry (EFLAGS.IF set)");
	if (e->flags & (1u << 17))
		problem("EFLAGS.VM set at the entry");
	if (strict_cr && e->cr4)
		problem("CR4 not 0 at the PVH entry");
	/* The segment registers' hidden parts cannot be read back; the GDT
	 * descriptors they were loaded from can.  Multiboot allows an invalid
	 * GDTR ("the OS image must create its own GDT"), PVH does not say;
	 * both only mention it. */
	const char *why = check_flat_segment(e->cs, true, false);
	if (why)
		gprintf("INFO entry: CS %#x in the loader's GDT: %s\n", e->cs, why);
	why = check_flat_segment(e->ds, false, false);
	if (why)
		gprintf("INFO entry: DS %#x in the loader's GDT: %s\n", e->ds, why);
}

/* ======================================================================
 * Multiboot v1
 * ====================================================================== */

#define MB_INFO_MEM     (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS    (1u << 3)
#define MB_INFO_MMAP    (1u << 6)
#define MB_INFO_LOADER  (1u << 9)

_Noreturn void guest_main_multiboot(void)
{
	guest_early_init();
	bi.format = "multiboot";
	gprintf("\nkvmm test guest: multiboot, 32-bit\n");
	print_entry_state();
	check_entry32(false);

	uint32_t magic = (uint32_t)entry_state.ax, mbi = (uint32_t)entry_state.bx;
	uint32_t flags = 0;
	if (magic != 0x2badb002u) {
		problem("EAX is not the multiboot magic 0x2BADB002");
	} else if (!mbi || !phys_ok(mbi, 88)) {
		problem("EBX does not point to a multiboot_info");
	} else {
		const uint32_t *m = phys_ptr(mbi);
		flags = m[0];
		bi.info_addr = mbi;
		bi.info_size = 88;
		gprintf("INFO multiboot_info at %#x, flags %#x\n", mbi, flags);
		if (flags & MB_INFO_LOADER && m[16] && phys_ok(m[16], 1))
			gprintf("INFO boot loader: %.64s\n", (const char *)phys_ptr(m[16]));
		if (flags & MB_INFO_CMDLINE)
			copy_cmdline(m[4]);
		if (flags & MB_INFO_MMAP) {
			uint32_t p = m[12], end = m[12] + m[11];
			if (!phys_ok(p, m[11]))
				problem("the mmap is out of reach");
			while (!boot_problem[0] && p + 24 <= end) {
				const uint8_t *ent = phys_ptr(p);
				uint32_t size;
				uint64_t base, len;
				uint32_t type;
				memcpy(&size, ent, 4);
				memcpy(&base, ent + 4, 8);
				memcpy(&len, ent + 12, 8);
				memcpy(&type, ent + 20, 4);
				if (size < 20) {
					problem("an mmap entry's size field is below 20");
					break;
				}
				add_region(base, len, type);
				p += size + 4;
			}
			if (!bi.nmem)
				problem("the mmap is empty");
		} else {
			problem("no memory map (flags bit 6 clear), though the header asked for memory information");
		}
		if (flags & MB_INFO_MEM) {
			uint32_t lower = m[1], upper = m[2];
			gprintf("INFO mem_lower %u KiB, mem_upper %u KiB\n", lower, upper);
			if (lower > 640)
				problem("mem_lower above 640 KiB");
			/* mem_upper: RAM from 1 MiB to the first hole */
			for (int i = 0; i < bi.nmem; i++) {
				const struct mem_region *r = &bi.mem[i];
				if (r->type == MEM_RAM && r->addr <= 1 * MIB && r->addr + r->size > 1 * MIB) {
					uint64_t kib = (r->addr + r->size - 1 * MIB) >> 10;
					if (kib != upper) {
						gprintf("INFO mmap says %llu KiB from 1 MiB on\n", (unsigned long long)kib);
						problem("mem_upper disagrees with the mmap");
					}
				}
			}
		} else {
			problem("no mem_lower/mem_upper (flags bit 0 clear), though the header asked for them");
		}
		if (flags & MB_INFO_MODS) {
			uint32_t count = m[5], addr = m[6];
			gprintf("INFO %u module(s), list at %#x\n", count, addr);
			if (count && phys_ok(addr, 16ull * count)) {
				const uint32_t *mod = phys_ptr(addr);
				for (uint32_t i = 0; i < count && i < 8; i++) {
					const uint32_t *md = mod + 4 * i;
					gprintf("INFO module %u: [%#x, %#x) \"%.80s\"\n", i, md[0], md[1],
						md[2] && phys_ok(md[2], 1) ? (const char *)phys_ptr(md[2]) : "");
				}
				if (mod[1] < mod[0]) {
					problem("module 0 ends before it starts");
				} else {
					bi.has_initrd = true;
					bi.initrd_addr = mod[0];
					bi.initrd_size = mod[1] - mod[0];
				}
			} else if (count) {
				problem("the module list is out of reach");
			}
		}
	}
	report_boot("multiboot, EAX %#x, info at %#x, flags %#x, 32-bit protected mode", magic, mbi, flags);
	guest_run(&bi);
}

/* ======================================================================
 * PVH
 * ====================================================================== */

#define HVM_START_MAGIC 0x336ec578u

_Noreturn void guest_main_pvh(void)
{
	guest_early_init();
	bi.format = "pvh";
	bi.has_rsdp_field = true;
	gprintf("\nkvmm test guest: pvh, 32-bit\n");
	print_entry_state();
	check_entry32(true);

	uint32_t si = (uint32_t)entry_state.bx;
	uint32_t version = 0;
	if (!si || !phys_ok(si, 56)) {
		problem("EBX does not point to an hvm_start_info");
	} else {
		const uint8_t *s = phys_ptr(si);
		uint32_t magic, flags, nr_modules, memmap_entries, reserved;
		uint64_t modlist, cmdline, rsdp, memmap;
		memcpy(&magic, s, 4);
		memcpy(&version, s + 4, 4);
		memcpy(&flags, s + 8, 4);
		memcpy(&nr_modules, s + 12, 4);
		memcpy(&modlist, s + 16, 8);
		memcpy(&cmdline, s + 24, 8);
		memcpy(&rsdp, s + 32, 8);
		memcpy(&memmap, s + 40, 8);
		memcpy(&memmap_entries, s + 48, 4);
		memcpy(&reserved, s + 52, 4);
		bi.info_addr = si;
		bi.info_size = 56;
		gprintf("INFO hvm_start_info at %#x: magic %#x version %u flags %#x modules %u at %#llx cmdline %#llx "
			"rsdp %#llx memmap %u at %#llx\n", si, magic, version, flags, nr_modules,
			(unsigned long long)modlist, (unsigned long long)cmdline, (unsigned long long)rsdp, memmap_entries,
			(unsigned long long)memmap);
		if (magic != HVM_START_MAGIC) {
			problem("hvm_start_info magic is not 0x336ec578");
		} else {
			if (version < 1)
				problem("hvm_start_info version 0: no memory map");
			if (reserved)
				problem("hvm_start_info.reserved is not 0");
			copy_cmdline(cmdline);
			bi.rsdp_addr = rsdp;
			if (version >= 1) {
				if (!memmap_entries || !phys_ok(memmap, 24ull * memmap_entries)) {
					problem("memmap missing or out of reach");
				} else {
					const uint8_t *e = phys_ptr(memmap);
					for (uint32_t i = 0; i < memmap_entries; i++, e += 24) {
						uint64_t a, sz;
						uint32_t type, res;
						memcpy(&a, e, 8);
						memcpy(&sz, e + 8, 8);
						memcpy(&type, e + 16, 4);
						memcpy(&res, e + 20, 4);
						if (res)
							problem("a memmap entry's reserved field is not 0");
						add_region(a, sz, type);
					}
				}
			}
			if (nr_modules) {
				if (!phys_ok(modlist, 32ull * nr_modules)) {
					problem("the module list is out of reach");
				} else {
					const uint8_t *md = phys_ptr(modlist);
					uint64_t pa, sz, mcmd;
					memcpy(&pa, md, 8);
					memcpy(&sz, md + 8, 8);
					memcpy(&mcmd, md + 16, 8);
					gprintf("INFO module 0: %#llx, %llu bytes, cmdline %#llx\n", (unsigned long long)pa,
						(unsigned long long)sz, (unsigned long long)mcmd);
					bi.has_initrd = true;
					bi.initrd_addr = pa;
					bi.initrd_size = sz;
				}
			}
		}
	}
	report_boot("pvh, start_info at %#x version %u, 32-bit protected mode", si, version);
	guest_run(&bi);
}

#endif /* __i386__ */

#ifdef __x86_64__
/* ======================================================================
 * bzImage (Linux boot protocol)
 * ====================================================================== */

_Noreturn void guest_main_bzimage(void)
{
	struct entry_state *e = &entry_state;
	guest_early_init();
	bi.format = "bzimage";
	bi.has_rsdp_field = true;
	bi.cmdline_max = BZ_CMDLINE_SIZE;
	const char *path = e->path == ENTRY_PATH_BZ64   ? "64-bit entry"
			   : e->path == ENTRY_PATH_BZ32 ? "32-bit entry"
			   : e->path == ENTRY_PATH_BZ16 ? "real-mode setup (BIOS loader)"
							: "unknown entry";
	gprintf("\nkvmm test guest: bzImage, 64-bit, entered through the %s\n", path);
	print_entry_state();

	if (e->path == ENTRY_PATH_BZ64) {
		uint64_t efer = rdmsr(0xc0000080);
		if ((e->cr0 & 0x80000001u) != 0x80000001u || !(e->cr4 & 0x20) || !(efer & 0x400))
			problem("not in long mode (CR0.PG/PE, CR4.PAE, EFER.LMA)");
		if (e->cs != BZ_BOOT_CS)
			problem("CS is not __BOOT_CS (0x10)");
		if (e->ds != BZ_BOOT_DS || e->es != BZ_BOOT_DS || e->ss != BZ_BOOT_DS)
			problem("DS, ES or SS is not __BOOT_DS (0x18)");
		/* boot.rst: __BOOT_CS and __BOOT_DS "must be 4G flat segments" */
		if (check_flat_segment(BZ_BOOT_CS, true, true))
			problem("GDT entry 0x10 is not a flat 64-bit code segment");
		if (check_flat_segment(BZ_BOOT_DS, false, false))
			problem("GDT entry 0x18 is not a flat 4 GiB data segment");
	}
	if (e->flags & (1u << 9))
		problem("interrupts enabled at the entry (IF set)");

	uint64_t bp = e->si;
	if (e->path == ENTRY_PATH_BZ32 || e->path == ENTRY_PATH_BZ16)
		bp &= 0xffffffffu;
	if (!bp || !phys_ok(bp, 4096)) {
		problem("RSI does not point to boot_params");
		report_boot("");
		guest_run(&bi);
	}
	const uint8_t *p = phys_ptr(bp);
	bi.info_addr = bp;
	bi.info_size = 4096;
	uint16_t boot_flag, version, xloadflags;
	uint32_t code32, cmdline_size, initrd_max;
	memcpy(&boot_flag, p + 0x1fe, 2);
	memcpy(&version, p + 0x206, 2);
	memcpy(&code32, p + 0x214, 4);
	memcpy(&initrd_max, p + 0x22c, 4);
	memcpy(&xloadflags, p + 0x236, 2);
	memcpy(&cmdline_size, p + 0x238, 4);
	uint8_t setup_sects = p[0x1f1], type_of_loader = p[0x210], loadflags = p[0x211];
	gprintf("INFO boot_params at %#llx: version %#x setup_sects %u loader %#x loadflags %#x code32_start %#x "
		"xloadflags %#x cmdline_size %u\n", (unsigned long long)bp, version, setup_sects, type_of_loader,
		loadflags, code32, xloadflags, cmdline_size);
	if (boot_flag != 0xaa55 || memcmp(p + 0x202, "HdrS", 4))
		problem("boot_params lacks the setup header (boot flag 0xAA55, \"HdrS\")");
	else if (version != BZ_PROTOCOL_VERSION)
		problem("boot_params.hdr.version is not the image's 0x020f");
	else if (setup_sects != (uint8_t)(uintptr_t)__bz_setup_sects)
		problem("boot_params.hdr.setup_sects is not the image's");
	else if (xloadflags != BZ_XLOADFLAGS || cmdline_size != BZ_CMDLINE_SIZE || initrd_max != BZ_INITRD_ADDR_MAX)
		problem("boot_params.hdr differs from the image's header (xloadflags, cmdline_size, initrd_addr_max)");
	if (type_of_loader == 0)
		problem("type_of_loader is 0 (the loader must set it, 0xff if it has no ID)");
	if (!(loadflags & 0x01))
		problem("loadflags lost LOADED_HIGH");
	if (code32 != GUEST_LOAD_ADDR)
		problem("code32_start is not 0x100000");

	/* e820 */
	uint8_t n = p[0x1e8];
	gprintf("INFO e820: %u entries\n", n);
	if (n == 0 || n > 128)
		problem("e820_entries is 0 or above 128");
	for (unsigned i = 0; i < n && i < 128; i++) {
		const uint8_t *ent = p + 0x2d0 + 20 * i;
		uint64_t a, sz;
		uint32_t type;
		memcpy(&a, ent, 8);
		memcpy(&sz, ent + 8, 8);
		memcpy(&type, ent + 16, 4);
		add_region(a, sz, type);
	}

	/* command line */
	uint32_t cl, cl_hi;
	memcpy(&cl, p + 0x228, 4);
	memcpy(&cl_hi, p + 0x0c8, 4);
	copy_cmdline(((uint64_t)cl_hi << 32) | cl);

	/* initrd */
	uint32_t ri, rs, ri_hi, rs_hi;
	memcpy(&ri, p + 0x218, 4);
	memcpy(&rs, p + 0x21c, 4);
	memcpy(&ri_hi, p + 0x0c0, 4);
	memcpy(&rs_hi, p + 0x0c4, 4);
	uint64_t rd = ((uint64_t)ri_hi << 32) | ri, rdsz = ((uint64_t)rs_hi << 32) | rs;
	if (rdsz) {
		bi.has_initrd = true;
		bi.initrd_addr = rd;
		bi.initrd_size = rdsz;
		if (rd + rdsz - 1 > BZ_INITRD_ADDR_MAX)
			problem("the initrd ends above initrd_addr_max");
	}

	/* ACPI */
	memcpy(&bi.rsdp_addr, p + 0x070, 8);

	/* setup_data list */
	uint64_t sd;
	memcpy(&sd, p + 0x250, 8);
	for (int i = 0; sd && i < 16; i++) {
		if (!phys_ok(sd, 16)) {
			problem("setup_data points out of reach");
			break;
		}
		const uint8_t *s = phys_ptr(sd);
		uint32_t type, len;
		memcpy(&type, s + 8, 4);
		memcpy(&len, s + 12, 4);
		gprintf("INFO setup_data at %#llx: type %u, %u bytes\n", (unsigned long long)sd, type, len);
		memcpy(&sd, s, 8);
	}

	report_boot("bzImage, boot_params at %#llx, protocol %#x, %s", (unsigned long long)bp, version, path);
	guest_run(&bi);
}
#endif /* __x86_64__ */
