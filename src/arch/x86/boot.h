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
 *   0x00500  BOOT_GDT_ADDR      GDT: null, null, code (0x10), data (0x18)
 *   0x06000  BOOT_START_INFO    hvm_start_info / multiboot_info + tables
 *   0x07000  BOOT_ZERO_PAGE     boot_params (4 KiB)
 *   0x08000  BOOT_STACK_TOP     initial stack grows down from here
 *   0x09000  BOOT_PML4          identity page tables: PML4, PDPT, 4 PDs
 *                               mapping 0-4 GiB with 2 MiB pages (0x9000-0xefff)
 *   0x20000  BOOT_CMDLINE_ADDR  kernel command line (BOOT_CMDLINE_MAX bytes)
 *   0x9fc00-0xfffff             reserved in e820: EBDA, ACPI tables, RSDP at 0xf0000
 *   0x100000 and up             kernel; initrd/modules at the top of low RAM
 */
#ifndef KVMM_ARCH_X86_BOOT_H
#define KVMM_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

#define BOOT_GDT_ADDR      0x500ull
#define BOOT_START_INFO    0x6000ull
#define BOOT_ZERO_PAGE     0x7000ull
#define BOOT_STACK_TOP     0x8000ull
#define BOOT_PML4          0x9000ull
#define BOOT_CMDLINE_ADDR  0x20000ull
#define BOOT_CMDLINE_MAX   4096       /* bytes including the NUL */
#define BOOT_EBDA_START    0x9fc00ull /* e820: usable RAM ends here in low memory */
#define BOOT_ACPI_ADDR     0xe0000ull /* ACPI tables (reserved) */
#define BOOT_RSDP_ADDR     0xf0000ull /* RSDP, found by the BIOS-area scan too */
#define BOOT_HIGH_START    0x100000ull

#define BOOT_SEL_CODE 0x10
#define BOOT_SEL_DATA 0x18

enum x86_entry_mode {
	X86_ENTRY_PROT32, /* CR0.PE, paging off, flat 4 GiB segments */
	X86_ENTRY_LONG64, /* CR0.PE|PG, CR4.PAE, EFER.LME|LMA, CR3 = BOOT_PML4 */
};

/* The BSP's state at the entry point; the accelerator loads it.  Segment
 * registers are flat: CS = BOOT_SEL_CODE, others = BOOT_SEL_DATA, described
 * by the GDT the loader wrote at BOOT_GDT_ADDR. */
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

/* Fill `out` with the machine's memory map: RAM [0, BOOT_EBDA_START),
 * reserved [BOOT_EBDA_START, 1 MiB), RAM [1 MiB, low end), RAM above 4 GiB,
 * reserved for the LAPIC/IOAPIC page ranges.  Returns the number of entries. */
int e820_build(const struct guest_mem *gm, struct e820_entry *out, int max);

/* Write the GDT and identity page tables (0-4 GiB, 2 MiB pages) for the
 * entry modes above.  Returns 0 or -EFAULT if RAM is too small. */
int x86_boot_write_gdt(struct guest_mem *gm);
int x86_boot_write_page_tables(struct guest_mem *gm);

/* Detect the kernel's format and load it, its initrd/module and command line
 * into guest RAM; fill *regs.  Returns 0 or a negative errno, and writes a
 * one-line reason naming the problem into err[errlen] (e.g. "kernel
 * foo: truncated setup header"). */
int x86_boot_load(struct guest_mem *gm, const struct x86_boot_config *cfg,
		  struct x86_boot_regs *regs, char *err, size_t errlen);

#endif
