/*
 * boot.h - loading a guest kernel into RAM and the vCPU state it starts in.
 *
 * Three formats (each in its own file):
 *   boot_linux.c      bzImage, Linux x86 boot protocol (Documentation/arch/x86/boot.rst),
 *                     entered at the 64-bit entry point with boot_params in RSI
 *   boot_pvh.c        ELF vmlinux with XEN_ELFNOTE_PHYS32_ENTRY, entered in 32-bit
 *                     protected mode with hvm_start_info in EBX (xen/include/public/arch-x86/hvm/start_info.h)
 *   boot_multiboot.c  Multiboot v1 ELF (or a.out kludge) with modules, entered in 32-bit
 *                     protected mode, EAX = 0x2BADB002, EBX = multiboot_info
 * x86_boot_load() detects the format from the file's contents.
 *
 * Low-memory layout shared by the loaders (guest-physical addresses):
 *   0x00500  BOOT_GDT_ADDR      GDT: null, null, code (0x10), data (0x18), TSS (0x20)
 *   0x05000  BOOT_STACK_TOP     initial stack grows down from here
 *   0x06000  BOOT_START_INFO    hvm_start_info / multiboot_info + tables
 *   0x07000  BOOT_ZERO_PAGE     boot_params (4 KiB)
 *   0x09000  BOOT_PML4          identity page tables: PML4, PDPT, 4 PDs
 *                               mapping 0-4 GiB with 2 MiB pages (0x9000-0xefff)
 *   0x20000  BOOT_CMDLINE_ADDR  kernel command line (BOOT_CMDLINE_MAX bytes)
 *   0x21000                     multiboot module string (BOOT_CMDLINE_MAX bytes)
 *   0x9fc00-0xfffff             reserved in e820: EBDA, ACPI tables, RSDP at 0xf0000
 *   0x100000 and up             kernel; initrd at the top of low RAM (bzImage,
 *                               PVH), the multiboot module right above the kernel
 *
 * Every kernel byte must land in [1 MiB, end of low RAM): the area below
 * 1 MiB belongs to the loader's own structures and the BIOS hole, and the
 * 32-bit entry modes cannot reach RAM above 4 GiB.
 */
#ifndef KVMM_ARCH_X86_BOOT_H
#define KVMM_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

#define BOOT_GDT_ADDR      0x500ull
#define BOOT_START_INFO    0x6000ull
#define BOOT_ZERO_PAGE     0x7000ull
#define BOOT_STACK_TOP     0x5000ull
#define BOOT_PML4          0x9000ull
#define BOOT_CMDLINE_ADDR  0x20000ull
#define BOOT_CMDLINE_MAX   4096       /* bytes including the NUL */
#define BOOT_EBDA_START    0x9fc00ull /* e820: usable RAM ends here in low memory */
#define BOOT_ACPI_ADDR     0xe0000ull /* ACPI tables (reserved) */
#define BOOT_RSDP_ADDR     0xf0000ull /* RSDP, found by the BIOS-area scan too */
#define BOOT_HIGH_START    0x100000ull

#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18
#define BOOT_SEL_TSS  0x20  /* 32-bit busy TSS, base 0, limit 0x67 (VMX wants a usable TR) */
#define BOOT_GDT_ENTRIES 5  /* gdt_limit = BOOT_GDT_ENTRIES * 8 - 1 */

enum x86_entry_mode {
	X86_ENTRY_PROT32, /* CR0.PE, paging off, flat 4 GiB segments */
	X86_ENTRY_LONG64, /* CR0.PE|PG, CR4.PAE, EFER.LME|LMA, CR3 = BOOT_PML4 */
};

/* The BSP's state at the entry point; the accelerator loads it.  Segment
 * registers are flat: CS = BOOT_SEL_CODE, others = BOOT_SEL_DATA, TR =
 * BOOT_SEL_TSS, described by the GDT the loader wrote at BOOT_GDT_ADDR
 * (x86_boot_gdt_entries() gives the same descriptors).  Interrupts off
 * (RFLAGS = 0x2); registers not listed here are 0. */
struct x86_boot_regs {
	enum x86_entry_mode mode;
	uint64_t rip, rsp, rax, rbx, rsi;
	uint64_t cr3; /* LONG64 only */
	uint64_t gdt_base;
	uint16_t gdt_limit;
	/* About the image, for --accel auto and messages. */
	const char *format; /* "bzImage", "pvh", "multiboot" */
	int is_linux;       /* a Linux kernel (stock kernels cannot run on PVM hosts) */
};

/* What to load.  Files are read whole; the loaders never trust their
 * contents (sizes, offsets and addresses are checked against the file and
 * against guest RAM). */
struct x86_boot_config {
	const char *kernel_path;
	const char *initrd_path;  /* NULL: none (for multiboot: the one module) */
	const char *cmdline;      /* NULL: empty */
	uint64_t rsdp_addr;       /* 0: no ACPI; else passed to the guest */
};

/* e820 entry types (ACPI spec, "Address Range Types") */
#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3

struct e820_entry {
	uint64_t addr, size; /* bytes */
	uint32_t type;
} __attribute__((packed));

#define E820_MAX_ENTRIES 8

/* Fill `out` with the machine's memory map, sorted by address: RAM
 * [0, BOOT_EBDA_START), reserved [BOOT_EBDA_START, 1 MiB), RAM [1 MiB, low
 * end), RAM [4 GiB, 4 GiB + high size) when there is high RAM.  The MMIO hole
 * (LAPIC, IOAPIC, PCI) is simply absent, as on QEMU's PC machines; ACPI
 * describes the devices in it.  Returns the number of entries (at most
 * E820_MAX_ENTRIES), or -ENOSPC if `max` is too small.
 * (ACPI 6.5 section 15, "System Address Map Interfaces".) */
int e820_build(const struct guest_mem *gm, struct e820_entry *out, int max);

/* The GDT's descriptors for an entry mode: null, null, flat 4 GiB code at
 * BOOT_SEL_CODE (L=1 for X86_ENTRY_LONG64, D=1 for X86_ENTRY_PROT32), flat
 * data at BOOT_SEL_DATA, a busy 32-bit TSS at BOOT_SEL_TSS.  An accelerator
 * can derive the hidden segment state from these so that it matches what
 * the guest would load from the GDT.  (Intel SDM vol. 3A, 3.4.5.) */
void x86_boot_gdt_entries(enum x86_entry_mode mode,
			  uint64_t gdt[BOOT_GDT_ENTRIES]);

/* Write that GDT at BOOT_GDT_ADDR.  x86_boot_write_gdt() writes the
 * X86_ENTRY_LONG64 flavour.  Return 0 or -EFAULT if RAM is too small. */
int x86_boot_write_gdt_mode(struct guest_mem *gm, enum x86_entry_mode mode);
int x86_boot_write_gdt(struct guest_mem *gm);

/* Write identity page tables at BOOT_PML4: PML4 (0x9000), PDPT (0xa000)
 * and 4 page directories (0xb000-0xefff) mapping guest-physical 0-4 GiB with
 * 2 MiB pages, present + writable, supervisor.  Returns 0 or -EFAULT if RAM
 * is too small.  (Intel SDM vol. 3A, 4.5 "4-level paging".)
 * x86_boot_load() writes the GDT and, for LONG64 entries, the page tables
 * itself; callers need not call these. */
int x86_boot_write_page_tables(struct guest_mem *gm);

/* Detect the kernel's format and load it, its initrd/module and command line
 * into guest RAM; fill *regs.  Returns 0 or a negative errno, and writes a
 * one-line reason naming the problem into err[errlen] (e.g. "kernel
 * foo: truncated setup header"):
 *   -errno of open/read   a file cannot be read (-EFBIG: larger than the
 *                         loader accepts, -EIO: it shrank while being read)
 *   -ENOEXEC              unknown format, or a malformed / unsupported image
 *                         (bad magic, truncated headers, old boot protocol,
 *                         addresses that overlap the loader's structures)
 *   -E2BIG                the command line is longer than the kernel accepts
 *   -ENOMEM               kernel or initrd does not fit in guest RAM
 * Detection order: bzImage ("HdrS" at 0x202 and 0xAA55 at 0x1fe), ELF with
 * a XEN_ELFNOTE_PHYS32_ENTRY note (PVH wins over a Multiboot header in the
 * same ELF), Multiboot v1 header in the first 8 KiB.  Guest RAM may be
 * partly written when an error is returned. */
int x86_boot_load(struct guest_mem *gm, const struct x86_boot_config *cfg,
		  struct x86_boot_regs *regs, char *err, size_t errlen);

#endif
