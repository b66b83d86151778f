/*
 * guest.h - the shared core of kvmm's freestanding test guests.
 *
 * The test guests are tiny bare-metal programs that kvmm (or QEMU, as the
 * reference) boots through each of the boot protocols it supports:
 *
 *   multiboot.elf   Multiboot v1, ELF32, entered in 32-bit protected mode
 *   pvh.elf         PVH (XEN_ELFNOTE_PHYS32_ENTRY), ELF64 holding 32-bit code
 *   pvh32.elf       the same as an ELF32 file
 *   basic.bzImage   Linux x86 boot protocol 2.15, entered at the 64-bit entry
 *                   (or, from a BIOS loader such as QEMU's, through the real-mode
 *                   setup code and the 32-bit entry)
 *   minimal.bzImage prints "K\n" and exits with 0 through the debug-exit port
 *
 * One C core (guest.c, boot_info.c) is compiled twice: for i386 (multiboot,
 * PVH; no paging, so physical addresses above 4 GiB are out of reach) and
 * for x86-64 (the bzImage).  Each entry file (multiboot.S, pvh.S, bzimage.S)
 * records the CPU state it was entered with in `entry_state`, sets up a
 * stack and calls the matching guest_main_*() in boot_info.c, which checks
 * the format's own boot information, converts it into a `struct boot_info`
 * and hands over to guest_run(): the checks common to all formats.
 *
 * What to check is steered by the kernel command line (key=value words,
 * everything else is ignored, so a loader that prepends the file name is
 * fine); see guest_run() in guest.c for the list.  Every check prints one of
 *
 *   PASS <name>[: detail]
 *   FAIL <name>: reason
 *   SKIP <name>: reason
 *
 * and free-form "INFO ..." lines, then "RESULT pass=P fail=F skip=S" and the
 * guest writes its exit value to the debug-exit port 0xf4: 0 when nothing
 * failed (kvmm then exits with status 1), the number of failures otherwise
 * (capped at 100), GUEST_EXIT_TRAP after an unexpected CPU exception, or
 * the value given with exit=V.
 */
#ifndef KVMM_TEST_GUEST_H
#define KVMM_TEST_GUEST_H

/* ---- constants shared with the assembly files ------------------------- */

#define GUEST_COM1          0x3f8
#define GUEST_DEBUG_EXIT    0xf4
#define GUEST_LAPIC_BASE    0xfee00000
#define GUEST_IOAPIC_BASE   0xfec00000
#define GUEST_LOAD_ADDR     0x100000    /* every guest image is linked here */
#define GUEST_TRAMP_ADDR    0x70000     /* AP real-mode trampoline (SIPI vector 0x70) */
#define GUEST_STACK_SIZE    0x4000

#define GUEST_EXIT_TRAP     0x7e        /* an unexpected exception */
#define GUEST_EXIT_ACTION   0x7d        /* action=... did not stop the VM */
#define GUEST_EXIT_MAXFAIL  100

/* bzImage setup header values (bzimage.S writes them, boot_info.c expects
 * the loader to have copied them into boot_params) */
#define BZ_PROTOCOL_VERSION 0x020f
#define BZ_LOADFLAGS        0x01        /* LOADED_HIGH */
#define BZ_XLOADFLAGS       0x0001      /* XLF_KERNEL_64 */
#define BZ_CMDLINE_SIZE     2047        /* max command line length without the NUL */
#define BZ_INITRD_ADDR_MAX  0x7fffffff
#define BZ_KERNEL_ALIGN     0x200000
#define BZ_BOOT_CS          0x10        /* the boot protocol's __BOOT_CS / __BOOT_DS */
#define BZ_BOOT_DS          0x18
#define BZ_SCRATCH_MAGIC    0x36316b42  /* "Bk16" in boot_params.scratch: came through setup */

/* offsets in struct entry_state */
#define ES_AX       0
#define ES_BX       8
#define ES_SI       16
#define ES_FLAGS    24
#define ES_SP       32
#define ES_CR0      40
#define ES_CR3      48
#define ES_CR4      56
#define ES_CS       64
#define ES_DS       68
#define ES_ES       72
#define ES_SS       76
#define ES_GDTR     80      /* SGDT: 2-byte limit, then the base */
#define ES_PATH     96

#define ENTRY_PATH_32   1   /* multiboot / PVH 32-bit entry */
#define ENTRY_PATH_BZ64 2   /* bzImage: the loader jumped to the 64-bit entry */
#define ENTRY_PATH_BZ32 3   /* bzImage: the 32-bit entry (a 32-bit boot protocol loader) */
#define ENTRY_PATH_BZ16 4   /* bzImage: the real-mode setup code (BIOS loader, e.g. QEMU) */

#ifndef __ASSEMBLER__

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GIB (1ull << 30)
#define MIB (1ull << 20)
#define KIB (1ull << 10)

/* ---- CPU primitives ---------------------------------------------------- */

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void cpu_cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Physical memory.  Without paging (32-bit guests) and with the identity
 * map (64-bit guest) a physical address is a pointer, as long as it is
 * reachable: below 4 GiB in 32-bit mode, below phys_limit() in 64-bit mode. */
uint64_t phys_limit(void);
static inline bool phys_ok(uint64_t addr, uint64_t len)
{
	return addr + len >= addr && addr + len <= phys_limit();
}
static inline void *phys_ptr(uint64_t addr) { return (void *)(uintptr_t)addr; }
static inline uint32_t mmio_read32(uint64_t addr) { return *(volatile uint32_t *)(uintptr_t)addr; }
static inline void mmio_write32(uint64_t addr, uint32_t v) { *(volatile uint32_t *)(uintptr_t)addr = v; }

/* ---- the CPU state at the entry point (filled by the entry file) ------- */

struct entry_state {
	uint64_t ax, bx, si;   /* registers the protocols pass values in */
	uint64_t flags;        /* EFLAGS/RFLAGS */
	uint64_t sp;
	uint64_t cr0, cr3, cr4;
	uint32_t cs, ds, es, ss;
	uint8_t gdtr[16];      /* SGDT at the entry (LSL is avoided: PVM cannot emulate it) */
	uint32_t path;         /* ENTRY_PATH_* : how the guest was entered */
	uint32_t pad;
};
extern struct entry_state entry_state;

/* Symbols from the linker scripts */
extern char __image_start[], __image_end[];

/* ---- console and results ---------------------------------------------- */

void con_init(void);
void con_putc(char c);
void con_write(const char *s, size_t n);
void gprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gvprintf(const char *fmt, va_list ap);

void test_pass(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void test_vpass(const char *name, const char *fmt, va_list ap);
void test_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void test_skip(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the RESULT line and leave through the debug-exit port. */
_Noreturn void guest_finish(void);
_Noreturn void guest_exit(uint8_t value);

/* ---- the boot information, format independent -------------------------- */

enum { MEM_RAM = 1, MEM_RESERVED = 2, MEM_ACPI = 3, MEM_NVS = 4, MEM_UNUSABLE = 5 };

struct mem_region {
	uint64_t addr, size;
	uint32_t type;
};

#define BOOT_MAX_REGIONS 128
#define BOOT_MAX_CMDLINE 8192

struct boot_info {
	const char *format;               /* "multiboot", "pvh", "bzimage" */
	/* the command line, copied out of guest RAM (so RAM tests may clobber it) */
	bool has_cmdline;
	uint64_t cmdline_addr;
	char cmdline[BOOT_MAX_CMDLINE];
	size_t cmdline_len;
	size_t cmdline_max;               /* the format's limit (bytes without NUL), 0: none */
	/* the memory map */
	bool has_memmap;
	struct mem_region mem[BOOT_MAX_REGIONS];
	int nmem;
	/* the initrd / first module */
	bool has_initrd;
	uint64_t initrd_addr, initrd_size;
	/* ranges the RAM test must not overwrite and loaders must not overlap */
	uint64_t info_addr, info_size;    /* the boot information structure */
	/* ACPI */
	bool has_rsdp_field;              /* the format can pass the RSDP address */
	uint64_t rsdp_addr;               /* 0: not passed */
};

/* The entry points called by the entry files, in boot_info.c. */
_Noreturn void guest_main_multiboot(void);
_Noreturn void guest_main_pvh(void);
_Noreturn void guest_main_bzimage(void);

/* Common checks, in guest.c. */
void guest_early_init(void);
_Noreturn void guest_run(struct boot_info *bi);

/* Command line options (valid after guest_run() started; boot_info.c may
 * call opt_* on bi->cmdline directly with opt_parse()). */
void opt_parse(const char *cmdline);
const char *opt_str(const char *key);           /* NULL if absent; value ends at a blank */
size_t opt_len(const char *key);                /* length of the value */
bool opt_u64(const char *key, uint64_t *out);   /* decimal, 0x hex, K/M/G/T suffix */
bool opt_has(const char *key);
bool opt_test_enabled(const char *name);        /* tests=a,b (default: all) */

/* ---- small libc ------------------------------------------------------- */

void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strncmp(const char *a, const char *b, size_t n);

/* POSIX cksum(1) CRC over a buffer (length appended, complemented). */
uint32_t posix_cksum(const void *buf, uint64_t len);

/* ---- time ------------------------------------------------------------- */

/* Microseconds since the first call: the ACPI PM timer when the FADT names
 * one, else the TSC at an assumed 1 GHz.  Never stops advancing: a PM timer
 * that does not move is detected and replaced by the TSC. */
uint64_t time_us(void);
void udelay(uint64_t us);
void time_use_pm_timer(uint16_t port, bool ext32);

/* ---- mode-specific pieces (guest.c, arch.S) -------------------------- */

/* Install an IDT whose handlers report the exception and exit. */
void arch_setup_idt(void);
/* x86-64: build page tables identity-mapping [0, top) (whole GiBs, at least
 * 4 GiB, at most 64 GiB) and load them; returns the mapped limit.  i386:
 * returns 4 GiB (no paging). */
uint64_t arch_map_memory(uint64_t top);

/* arch.S: the exception entry stubs (vectors 0-31) ... */
extern const uintptr_t trap_stubs[32];
/* ... which call this */
_Noreturn void guest_trap(uintptr_t vector, uintptr_t error, uintptr_t ip);

/* arch.S: the AP trampoline blob, copied to GUEST_TRAMP_ADDR.  Each AP
 * counts itself in real mode (rm_count, and its CPUID initial APIC ID in
 * the rm_ids bitmap), switches to 32-bit protected mode, counts itself again
 * (pm_count, LAPIC ID register in pm_ids) and halts with interrupts off. */
extern const char ap_tramp_start[], ap_tramp_end[];
extern const char ap_tramp_rm_count[], ap_tramp_rm_ids[];
extern const char ap_tramp_pm_count[], ap_tramp_pm_ids[];

/* bzimage.S / bzimage.ld */
extern char __bz_setup_sects[];   /* its address is the value */
extern uint64_t pgt_pml4[512], pgt_pdpt[512], pgt_pd[64][512];

#endif /* __ASSEMBLER__ */
#endif
