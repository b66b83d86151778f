/*
 * guest.c - the checks every kvmm test guest runs, whatever the boot format.
 *
 * The entry file and boot_info.c turn the format's boot information into a
 * struct boot_info; guest_run() then runs, in this order (each one can be
 * switched off with tests=..., which lists the ones to run):
 *
 *   cmdline  the command line arrived whole: printable, within the format's
 *            limit, and when it carries pad=<padlen chars> it must end with
 *            the word end=1 (catches truncation)
 *   memmap   the memory map: sorted or not, no overlaps, no RAM in the legacy
 *            hole (0xa0000-1 MiB) or on the IOAPIC/LAPIC pages, the guest
 *            image and the AP trampoline page inside RAM, and total RAM close
 *            to expect_mem=SIZE (or expect_mem_mb=N): at most SIZE, at least
 *            SIZE - SIZE/32 - 4 MiB; with SIZE > 4 GiB RAM above 4 GiB too
 *   initrd   with initrd_size=N / initrd_cksum=N (POSIX cksum(1) of the
 *            file) / initrd_head=STR: an initrd/module of that size and
 *            content, page aligned, in RAM, overlapping nothing
 *   acpi     the RSDP (found by the BIOS-area scan and, when the format has
 *            a field for it, the one passed; expect_rsdp=1 makes the passed
 *            one mandatory), RSDT/XSDT and every table's checksum, FADT,
 *            DSDT, tables outside RAM
 *   madt     enabled LAPIC entries = expect_cpus=N, APIC IDs unique and
 *            0..n-1, LAPIC address 0xfee00000
 *   ioapic   an IOAPIC in the MADT at 0xfec00000 answering its version register
 *   lapic    the BSP's LAPIC: IA32_APIC_BASE (base, enabled, BSP flag), ID
 *            register = CPUID initial APIC ID and listed in the MADT
 *   smp      every AP of the MADT started with INIT-SIPI-SIPI through the
 *            xAPIC ICR: each runs the real-mode trampoline at 0x70000, counts
 *            itself with a locked add, switches to protected mode, counts
 *            itself again and halts.  "APs did not start" (none ran the
 *            trampoline) is reported as its own case: FAIL by default, SKIP
 *            with smp=optional; smp=off skips the test
 *   ram      writes a distinct pattern every 16 MiB of every RAM region and
 *            at each region's end, then reads all back (catches aliasing of
 *            high memory onto low memory); above 4 GiB only in 64-bit mode
 *
 * Other options: exit=V (write V to the debug-exit port at the end instead
 * of the result), action=triple|cf9|kbd|s5|ud|hang (after the results: triple
 * fault, reset through port 0xcf9 or the i8042, ACPI S5 power-off, an
 * invalid opcode (exit value GUEST_EXIT_TRAP), or hang),
 * smp_timeout_ms=N (default 3000), verbose=1.
 *
 * No libc: the few string functions the compiler may call are here, and in
 * 32-bit builds the 64-bit division helpers libgcc would provide.
 */
#include "guest.h"

struct entry_state entry_state __attribute__((section(".data")));

_Static_assert(__builtin_offsetof(struct entry_state, bx) == ES_BX, "entry_state layout");
_Static_assert(__builtin_offsetof(struct entry_state, flags) == ES_FLAGS, "entry_state layout");
_Static_assert(__builtin_offsetof(struct entry_state, cr4) == ES_CR4, "entry_state layout");
_Static_assert(__builtin_offsetof(struct entry_state, ss) == ES_SS, "entry_state layout");
_Static_assert(__builtin_offsetof(struct entry_state, path) == ES_PATH, "entry_state layout");
_Static_assert(__builtin_offsetof(struct entry_state, gdtr) == ES_GDTR, "entry_state layout");
_Static_assert(sizeof(struct entry_state) == 104, "entry_state layout");

/* ======================================================================
 * small libc
 * ====================================================================== */

void *memcpy(void *d, const void *s, size_t n)
{
	char *dp = d;
	const char *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

void *memmove(void *d, const void *s, size_t n)
{
	char *dp = d;
	const char *sp = s;
	if (dp < sp) {
		while (n--)
			*dp++ = *sp++;
	} else {
		while (n--)
			dp[n] = sp[n];
	}
	return d;
}

void *memset(void *d, int c, size_t n)
{
	char *dp = d;
	while (n--)
		*dp++ = (char)c;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

size_t strnlen(const char *s, size_t max)
{
	size_t n = 0;
	while (n < max && s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (unsigned char)*a - (unsigned char)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

#ifdef __i386__
/* libgcc's 64-bit division helpers, which gcc calls for uint64_t / and % in
 * 32-bit code.  Shift-and-subtract: slow, but only used for printing and
 * for a few conversions. */
uint64_t __udivmoddi4(uint64_t n, uint64_t d, uint64_t *rem);
uint64_t __udivdi3(uint64_t n, uint64_t d);
uint64_t __umoddi3(uint64_t n, uint64_t d);
int64_t __divdi3(int64_t n, int64_t d);
int64_t __moddi3(int64_t n, int64_t d);

uint64_t __udivmoddi4(uint64_t n, uint64_t d, uint64_t *rem)
{
	uint64_t q = 0, r = 0;
	if (d == 0) {
		__asm__ volatile("ud2"); /* like the hardware: #UD instead of #DE, reported by the trap handler */
		__builtin_unreachable();
	}
	if ((n >> 32) == 0 && (d >> 32) == 0) {
		q = (uint32_t)n / (uint32_t)d;
		r = (uint32_t)n % (uint32_t)d;
	} else {
		for (int i = 63; i >= 0; i--) {
			r = (r << 1) | ((n >> i) & 1);
			if (r >= d) {
				r -= d;
				q |= 1ull << i;
			}
		}
	}
	if (rem)
		*rem = r;
	return q;
}
uint64_t __udivdi3(uint64_t n, uint64_t d) { return __udivmoddi4(n, d, 0); }
uint64_t __umoddi3(uint64_t n, uint64_t d)
{
	uint64_t r;
	__udivmoddi4(n, d, &r);
	return r;
}
int64_t __divdi3(int64_t n, int64_t d)
{
	int neg = (n < 0) != (d < 0);
	uint64_t q = __udivdi3(n < 0 ? -(uint64_t)n : (uint64_t)n, d < 0 ? -(uint64_t)d : (uint64_t)d);
	return neg ? -(int64_t)q : (int64_t)q;
}
int64_t __moddi3(int64_t n, int64_t d)
{
	uint64_t r = __umoddi3(n < 0 ? -(uint64_t)n : (uint64_t)n, d < 0 ? -(uint64_t)d : (uint64_t)d);
	return n < 0 ? -(int64_t)r : (int64_t)r;
}
#endif

/* POSIX cksum: CRC-32 (polynomial 0x04c11db7, MSB first) over the data and
 * then over the length in as few bytes as it takes, least significant first;
 * the result complemented. */
static uint32_t crc_table[256];

static uint32_t cksum_update(uint32_t crc, const unsigned char *p, uint64_t n)
{
	while (n--)
		crc = (crc << 8) ^ crc_table[((crc >> 24) ^ *p++) & 0xff];
	return crc;
}

uint32_t posix_cksum(const void *buf, uint64_t len)
{
	if (!crc_table[1]) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i << 24;
			for (int k = 0; k < 8; k++)
				c = (c & 0x80000000u) ? (c << 1) ^ 0x04c11db7u : c << 1;
			crc_table[i] = c;
		}
	}
	uint32_t crc = cksum_update(0, buf, len);
	for (uint64_t l = len; l; l >>= 8) {
		unsigned char b = (unsigned char)l;
		crc = cksum_update(crc, &b, 1);
	}
	return ~crc;
}

/* ======================================================================
 * console: the 16550A at COM1, polled
 * ====================================================================== */

#define UART_THR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void con_init(void)
{
	outb(GUEST_COM1 + UART_IER, 0x00);   /* no interrupts */
	outb(GUEST_COM1 + UART_LCR, 0x80);   /* DLAB */
	outb(GUEST_COM1 + 0, 0x01);          /* divisor 1: 115200 baud */
	outb(GUEST_COM1 + 1, 0x00);
	outb(GUEST_COM1 + UART_LCR, 0x03);   /* 8N1 */
	outb(GUEST_COM1 + UART_FCR, 0x07);   /* FIFOs on and cleared */
	outb(GUEST_COM1 + UART_MCR, 0x03);   /* DTR, RTS */
}

void con_putc(char c)
{
	/* Wait for the transmitter holding register, but never forever: a UART
	 * that never reports THRE must not hang the guest. */
	for (unsigned n = 0; n < 100000; n++) {
		if (inb(GUEST_COM1 + UART_LSR) & UART_LSR_THRE)
			break;
		cpu_pause();
	}
	outb(GUEST_COM1 + UART_THR, (uint8_t)c);
}

void con_write(const char *s, size_t n)
{
	while (n--)
		con_putc(*s++);
}

static void put_num(uint64_t v, unsigned base, int width, bool zero, bool upper, bool neg)
{
	char buf[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		buf[n++] = digits[v % base];
		v /= base;
	} while (v);
	if (neg)
		buf[n++] = '-';
	for (int i = n; i < width; i++)
		con_putc(zero ? '0' : ' ');
	while (n)
		con_putc(buf[--n]);
}

/* printf subset: %[-0#][width][.prec][l|ll|z]{d,u,x,X,p,s,c,%}; '#' prints
 * 0x, the precision only applies to %s. */
void gvprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			con_putc(*fmt);
			continue;
		}
		fmt++;
		bool zero = false, alt = false, left = false;
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '#')
				alt = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int prec = -1;
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		while (*fmt == 'l' || *fmt == 'z') {
			lng += *fmt == 'z' ? (sizeof(size_t) == 8 ? 2 : 0) : 1;
			fmt++;
		}
		uint64_t u;
		int64_t s;
		switch (*fmt) {
		case 'd':
			s = lng >= 2 ? va_arg(ap, long long) : lng == 1 ? va_arg(ap, long) : va_arg(ap, int);
			put_num(s < 0 ? -(uint64_t)s : (uint64_t)s, 10, width, zero, false, s < 0);
			break;
		case 'u':
		case 'x':
		case 'X':
			u = lng >= 2 ? va_arg(ap, unsigned long long)
			    : lng == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
			if (alt && *fmt != 'u')
				con_write("0x", 2);
			put_num(u, *fmt == 'u' ? 10 : 16, width, zero, *fmt == 'X', false);
			break;
		case 'p':
			con_write("0x", 2);
			put_num((uintptr_t)va_arg(ap, void *), 16, 0, false, false, false);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			size_t len = prec >= 0 ? strnlen(str, prec) : strlen(str);
			if (!left)
				for (size_t i = len; i < (size_t)width; i++)
					con_putc(' ');
			con_write(str, len);
			if (left)
				for (size_t i = len; i < (size_t)width; i++)
					con_putc(' ');
			break;
		}
		case 'c':
			con_putc((char)va_arg(ap, int));
			break;
		case '%':
			con_putc('%');
			break;
		case 0:
			return;
		default:
			con_putc('%');
			con_putc(*fmt);
		}
	}
}

void gprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	gvprintf(fmt, ap);
	va_end(ap);
}

/* ======================================================================
 * results and exit
 * ====================================================================== */

static unsigned n_pass, n_fail, n_skip;

static void test_line(const char *kind, const char *name, const char *fmt, va_list ap)
{
	gprintf("%s %s", kind, name);
	if (fmt && *fmt) {
		con_write(": ", 2);
		gvprintf(fmt, ap);
	}
	con_putc('\n');
}

void test_vpass(const char *name, const char *fmt, va_list ap)
{
	test_line("PASS", name, fmt, ap);
	n_pass++;
}

void test_pass(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	test_line("PASS", name, fmt, ap);
	va_end(ap);
	n_pass++;
}

void test_fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	test_line("FAIL", name, fmt, ap);
	va_end(ap);
	n_fail++;
}

void test_skip(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	test_line("SKIP", name, fmt, ap);
	va_end(ap);
	n_skip++;
}

_Noreturn void guest_exit(uint8_t value)
{
	outb(GUEST_DEBUG_EXIT, value);
	/* Still here: the debug-exit device is missing.  Say so and stop. */
	gprintf("FAIL exit: writing %u to port 0xf4 did not end the VM\n", value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void do_action(void);

_Noreturn void guest_finish(void)
{
	uint64_t v;
	gprintf("RESULT pass=%u fail=%u skip=%u\n", n_pass, n_fail, n_skip);
	do_action();
	if (opt_u64("exit", &v))
		guest_exit((uint8_t)v);
	guest_exit(n_fail > GUEST_EXIT_MAXFAIL ? GUEST_EXIT_MAXFAIL : n_fail);
}

static const char *const exc_names[32] = {
	"DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "CSO", "TS", "NP", "SS", "GP", "PF", "15",
	"MF", "AC", "MC", "XM", "VE", "CP", "22", "23", "24", "25", "26", "27", "HV", "VC", "SX", "31",
};

_Noreturn void guest_trap(uintptr_t vector, uintptr_t error, uintptr_t ip)
{
	static int nested;
	if (nested++)
		guest_exit(GUEST_EXIT_TRAP);
	uintptr_t cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	test_fail("exception", "#%s (vector %u) error %#lx at ip %#lx, cr2 %#lx",
		  exc_names[vector & 31], (unsigned)vector, (unsigned long)error, (unsigned long)ip,
		  (unsigned long)cr2);
	gprintf("RESULT pass=%u fail=%u skip=%u\n", n_pass, n_fail, n_skip);
	guest_exit(GUEST_EXIT_TRAP);
}

/* ======================================================================
 * mode-specific: IDT and page tables
 * ====================================================================== */

static uint64_t phys_limit_v = 4 * GIB;

uint64_t phys_limit(void) { return phys_limit_v; }

#ifdef __x86_64__
struct idt_gate {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));
#else
struct idt_gate {
	uint16_t off0, sel;
	uint8_t zero, type;
	uint16_t off1;
} __attribute__((packed));
#endif

static struct idt_gate idt[32] __attribute__((aligned(16)));

void arch_setup_idt(void)
{
	uint16_t cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	for (int i = 0; i < 32; i++) {
		uintptr_t a = trap_stubs[i];
		idt[i].off0 = (uint16_t)a;
		idt[i].sel = cs;
		idt[i].type = 0x8e; /* present, DPL 0, interrupt gate */
		idt[i].off1 = (uint16_t)(a >> 16);
#ifdef __x86_64__
		idt[i].off2 = (uint32_t)(a >> 32);
#endif
	}
	struct {
		uint16_t limit;
		uintptr_t base;
	} __attribute__((packed)) desc = { sizeof(idt) - 1, (uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(desc));
}

uint64_t arch_map_memory(uint64_t top)
{
#ifdef __x86_64__
	uint64_t ngb = (top + GIB - 1) >> 30;
	if (ngb < 4)
		ngb = 4;
	if (ngb > 64)
		ngb = 64;
	for (uint64_t g = 0; g < ngb; g++) {
		for (uint64_t i = 0; i < 512; i++) {
			uint64_t a = (g << 30) | (i << 21);
			uint64_t e = a | 0x83; /* present, writable, 2 MiB page */
			if (a >= 0xfe000000ull && a < 4 * GIB)
				e |= 0x18; /* PCD | PWT: the APIC pages */
			pgt_pd[g][i] = e;
		}
		pgt_pdpt[g] = (uintptr_t)pgt_pd[g] | 3;
	}
	pgt_pml4[0] = (uintptr_t)pgt_pdpt | 3;
	__asm__ volatile("mov %0, %%cr3" : : "r"((uintptr_t)pgt_pml4) : "memory");
	phys_limit_v = ngb << 30;
#else
	(void)top;
#endif
	return phys_limit_v;
}

/* ======================================================================
 * command line options
 * ====================================================================== */

static const char *opt_line = "";

void opt_parse(const char *cmdline) { opt_line = cmdline ? cmdline : ""; }

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

const char *opt_str(const char *key)
{
	size_t klen = strlen(key);
	const char *p = opt_line;
	while (*p) {
		while (is_blank(*p))
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=')
			return p + klen + 1;
		while (*p && !is_blank(*p))
			p++;
	}
	return 0;
}

size_t opt_len(const char *key)
{
	const char *v = opt_str(key);
	size_t n = 0;
	if (v)
		while (v[n] && !is_blank(v[n]))
			n++;
	return n;
}

bool opt_has(const char *key) { return opt_str(key) != 0; }

static bool parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned base = 10;
	bool any = false;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (;; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			break;
		v = v * base + d;
		any = true;
	}
	switch (*s) {
	case 'k': case 'K': v <<= 10; s++; break;
	case 'm': case 'M': v <<= 20; s++; break;
	case 'g': case 'G': v <<= 30; s++; break;
	case 't': case 'T': v <<= 40; s++; break;
	}
	if (!any || (*s && !is_blank(*s)))
		return false;
	*out = v;
	return true;
}

bool opt_u64(const char *key, uint64_t *out)
{
	const char *v = opt_str(key);
	if (!v)
		return false;
	if (!parse_u64(v, out)) {
		gprintf("INFO option %s: not a number, ignored\n", key);
		return false;
	}
	return true;
}

static bool opt_is(const char *key, const char *val)
{
	const char *v = opt_str(key);
	size_t n = strlen(val);
	return v && !strncmp(v, val, n) && (!v[n] || is_blank(v[n]));
}

bool opt_test_enabled(const char *name)
{
	const char *v = opt_str("tests");
	size_t n = strlen(name);
	if (!v)
		return true;
	while (*v && !is_blank(*v)) {
		if (!strncmp(v, name, n) && (v[n] == ',' || !v[n] || is_blank(v[n])))
			return true;
		while (*v && *v != ',' && !is_blank(*v))
			v++;
		if (*v == ',')
			v++;
	}
	return false;
}

static bool verbose;

/* ======================================================================
 * time
 * ====================================================================== */

static uint16_t pm_port;
static bool pm_ext;
static uint32_t pm_last;
static uint64_t pm_ticks, pm_last_change_tsc;
static uint64_t tsc_base, tsc_per_ms = 1000000; /* assume 1 GHz until calibrated */
static uint64_t us_offset;                      /* time_us() value when the source last changed */
static bool time_started;

static uint64_t tsc_us(void) { return (rdtsc() - tsc_base) * 1000 / tsc_per_ms; }

static uint32_t pm_read(void)
{
	uint32_t v = inl(pm_port);
	return pm_ext ? v : v & 0xffffff;
}

uint64_t time_us(void)
{
	if (!time_started) {
		time_started = true;
		tsc_base = rdtsc();
	}
	if (pm_port) {
		uint32_t v = pm_read();
		uint64_t now = rdtsc();
		if (v != pm_last) {
			pm_ticks += (v - pm_last) & (pm_ext ? 0xffffffffu : 0xffffffu);
			pm_last = v;
			pm_last_change_tsc = now;
		} else if (now - pm_last_change_tsc > (4ull << 30)) {
			uint64_t t = us_offset + pm_ticks * 1000000 / 3579545;
			test_fail("pmtimer", "the ACPI PM timer at port %#x stopped at %#x; using the TSC",
				  pm_port, v);
			pm_port = 0;
			us_offset = t;
			tsc_base = now;
			return t;
		}
		return us_offset + pm_ticks * 1000000 / 3579545;
	}
	return us_offset + tsc_us();
}

void udelay(uint64_t us)
{
	uint64_t end = time_us() + us;
	while (time_us() < end)
		cpu_pause();
}

void time_use_pm_timer(uint16_t port, bool ext32)
{
	uint64_t now = time_us();
	pm_port = port;
	pm_ext = ext32;
	pm_last = pm_read();
	pm_ticks = 0;
	pm_last_change_tsc = rdtsc();
	us_offset = now;
	/* calibrate the TSC against it over ~10 ms, for the fallback */
	uint64_t t0 = time_us(), c0 = rdtsc();
	while (pm_port && time_us() - t0 < 10000)
		cpu_pause();
	if (pm_port) {
		uint64_t dt = time_us() - t0, dc = rdtsc() - c0;
		if (dt)
			tsc_per_ms = dc * 1000 / dt;
		if (!tsc_per_ms)
			tsc_per_ms = 1;
		gprintf("INFO time: ACPI PM timer at port %#x (%s bits), TSC %llu kHz\n", port,
			ext32 ? "32" : "24", (unsigned long long)tsc_per_ms);
	}
}

/* ======================================================================
 * shared state of the checks
 * ====================================================================== */

struct acpi_info {
	bool ok;                 /* tables found and sane enough to use */
	uint64_t rsdp;
	int ncpu;                /* enabled LAPIC / x2APIC entries */
	uint32_t apic_ids[256];
	uint32_t lapic_addr;
	int nioapic;
	uint32_t ioapic_addr, ioapic_id, ioapic_gsi;
	uint16_t pm_tmr_port;
	bool pm_tmr_ext;
	uint16_t pm1a_cnt;
	uint64_t dsdt;
	int s5_typ;              /* -1: no \_S5 found */
};

static struct acpi_info acpi;
static struct boot_info *binfo;

static const char *mem_type_name(uint32_t t)
{
	switch (t) {
	case MEM_RAM: return "RAM";
	case MEM_RESERVED: return "reserved";
	case MEM_ACPI: return "ACPI";
	case MEM_NVS: return "NVS";
	case MEM_UNUSABLE: return "unusable";
	default: return "other";
	}
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < b + blen && b < a + alen;
}

/* Is [addr, addr+len) entirely inside one RAM region? */
static bool in_ram(uint64_t addr, uint64_t len)
{
	for (int i = 0; i < binfo->nmem; i++) {
		const struct mem_region *r = &binfo->mem[i];
		if (r->type == MEM_RAM && addr >= r->addr && addr + len <= r->addr + r->size)
			return true;
	}
	return false;
}

/* Does any RAM region touch [addr, addr+len)? */
static bool touches_ram(uint64_t addr, uint64_t len)
{
	for (int i = 0; i < binfo->nmem; i++) {
		const struct mem_region *r = &binfo->mem[i];
		if (r->type == MEM_RAM && ranges_overlap(addr, len, r->addr, r->size))
			return true;
	}
	return false;
}

static uint64_t image_start(void) { return (uintptr_t)__image_start; }
static uint64_t image_size(void) { return (uintptr_t)__image_end - (uintptr_t)__image_start; }

/* ======================================================================
 * cmdline
 * ====================================================================== */

static void check_cmdline(void)
{
	struct boot_info *bi = binfo;
	if (!opt_test_enabled("cmdline"))
		return;
	if (!bi->has_cmdline) {
		gprintf("INFO cmdline: none\n");
		if (opt_has("expect_cmdline"))
			test_fail("cmdline", "no command line was passed");
		return;
	}
	gprintf("INFO cmdline at %#llx, %zu bytes\n", (unsigned long long)bi->cmdline_addr, bi->cmdline_len);
	if (bi->cmdline_len >= BOOT_MAX_CMDLINE - 1) {
		test_fail("cmdline", "not NUL-terminated within %u bytes", BOOT_MAX_CMDLINE);
		return;
	}
	if (bi->cmdline_max && bi->cmdline_len > bi->cmdline_max) {
		test_fail("cmdline", "%zu bytes, more than the format's limit of %zu",
			  bi->cmdline_len, bi->cmdline_max);
		return;
	}
	for (size_t i = 0; i < bi->cmdline_len; i++) {
		unsigned char c = bi->cmdline[i];
		if ((c < 0x20 && c != '\t' && c != '\n') || c >= 0x7f) {
			test_fail("cmdline", "byte %#x at offset %zu is not printable", c, i);
			return;
		}
	}
	if (bi->has_memmap && !in_ram(bi->cmdline_addr, bi->cmdline_len + 1))
		gprintf("INFO cmdline: not in RAM (in memory the OS will not reuse)\n");
	if (ranges_overlap(bi->cmdline_addr, bi->cmdline_len + 1, image_start(), image_size())) {
		test_fail("cmdline", "placed over the kernel image");
		return;
	}
	uint64_t padlen;
	if (opt_u64("padlen", &padlen)) {
		size_t got = opt_len("pad");
		if (got != padlen) {
			test_fail("cmdline", "pad= has %zu characters, expected %llu (truncated?)", got,
				  (unsigned long long)padlen);
			return;
		}
		if (!opt_is("end", "1")) {
			test_fail("cmdline", "the final word end=1 is missing (truncated at %zu bytes?)",
				  bi->cmdline_len);
			return;
		}
	}
	test_pass("cmdline", "%zu bytes", bi->cmdline_len);
}

/* ======================================================================
 * memmap
 * ====================================================================== */

static uint64_t ram_total, ram_top, ram_top_below_4g;

static void check_memmap(void)
{
	struct boot_info *bi = binfo;
	const char *name = "memmap";
	struct mem_region sorted[BOOT_MAX_REGIONS];
	int n = bi->nmem;
	bool enabled = opt_test_enabled(name);

	if (!bi->has_memmap || n == 0) {
		if (enabled)
			test_fail(name, "no memory map");
		return;
	}
	for (int i = 0; i < n; i++) {
		const struct mem_region *r = &bi->mem[i];
		gprintf("INFO mem [%#012llx-%#012llx] %s", (unsigned long long)r->addr,
			(unsigned long long)(r->addr + r->size - 1), mem_type_name(r->type));
		if (r->type > MEM_UNUSABLE)
			gprintf(" (type %u)", r->type);
		con_putc('\n');
	}
	/* Empty entries carry no information (some BIOSes, e.g. qboot, return
	 * one); Linux drops them as well.  Then sort by address. */
	n = 0;
	for (int i = 0; i < bi->nmem; i++) {
		if (bi->mem[i].size)
			sorted[n++] = bi->mem[i];
		else
			gprintf("INFO memmap: empty entry at %#llx ignored\n", (unsigned long long)bi->mem[i].addr);
	}
	for (int i = 1; i < n; i++) {
		struct mem_region t = sorted[i];
		int j = i - 1;
		while (j >= 0 && sorted[j].addr > t.addr) {
			sorted[j + 1] = sorted[j];
			j--;
		}
		sorted[j + 1] = t;
	}
	ram_total = ram_top = ram_top_below_4g = 0;
	for (int i = 0; i < n; i++) {
		const struct mem_region *r = &sorted[i];
		if (r->type != MEM_RAM)
			continue;
		ram_total += r->size;
		if (r->addr + r->size > ram_top)
			ram_top = r->addr + r->size;
		if (r->addr < 4 * GIB) {
			uint64_t e = r->addr + r->size < 4 * GIB ? r->addr + r->size : 4 * GIB;
			if (e > ram_top_below_4g)
				ram_top_below_4g = e;
		}
	}
	if (!enabled)
		return;
	for (int i = 0; i < n; i++) {
		const struct mem_region *r = &sorted[i];
		if (r->addr + r->size < r->addr) {
			test_fail(name, "region at %#llx wraps around", (unsigned long long)r->addr);
			return;
		}
		if (i + 1 < n && r->addr + r->size > sorted[i + 1].addr) {
			test_fail(name, "regions overlap: [%#llx, +%#llx) and [%#llx, +%#llx)",
				  (unsigned long long)r->addr, (unsigned long long)r->size,
				  (unsigned long long)sorted[i + 1].addr, (unsigned long long)sorted[i + 1].size);
			return;
		}
	}
	if (touches_ram(0xa0000, 0x60000)) {
		test_fail(name, "RAM in the legacy hole 0xa0000-0xfffff");
		return;
	}
	if (touches_ram(GUEST_IOAPIC_BASE, 0x1000) || touches_ram(GUEST_LAPIC_BASE, 0x1000)) {
		test_fail(name, "RAM over the IOAPIC or LAPIC page");
		return;
	}
	if (!in_ram(image_start(), image_size())) {
		test_fail(name, "the guest image [%#llx, +%#llx) is not inside one RAM region",
			  (unsigned long long)image_start(), (unsigned long long)image_size());
		return;
	}
	if (!in_ram(GUEST_TRAMP_ADDR, 0x1000)) {
		test_fail(name, "no RAM at %#x (low memory)", GUEST_TRAMP_ADDR);
		return;
	}
	uint64_t exp = 0;
	if (!opt_u64("expect_mem", &exp) && opt_u64("expect_mem_mb", &exp))
		exp <<= 20;
	if (exp) {
		uint64_t lo = exp - exp / 32 - 4 * MIB;
		if (exp < 8 * MIB)
			lo = exp / 2;
		if (ram_total > exp || ram_total < lo) {
			test_fail(name, "%llu KiB of RAM, expected %llu KiB (between %llu and %llu)",
				  (unsigned long long)(ram_total >> 10), (unsigned long long)(exp >> 10),
				  (unsigned long long)(lo >> 10), (unsigned long long)(exp >> 10));
			return;
		}
		if (exp > 4 * GIB && ram_top <= 4 * GIB) {
			test_fail(name, "expected %llu MiB but no RAM above 4 GiB", (unsigned long long)(exp >> 20));
			return;
		}
	}
	test_pass(name, "%d regions, %llu KiB RAM%s, top %#llx", n, (unsigned long long)(ram_total >> 10),
		  exp ? " (as expected)" : "", (unsigned long long)ram_top);
}

/* ======================================================================
 * initrd
 * ====================================================================== */

static void check_initrd(void)
{
	struct boot_info *bi = binfo;
	const char *name = "initrd";
	uint64_t want_size, want_sum;
	bool has_size = opt_u64("initrd_size", &want_size);
	bool has_sum = opt_u64("initrd_cksum", &want_sum);
	const char *head = opt_str("initrd_head");
	size_t head_len = opt_len("initrd_head");
	bool expected = has_size || has_sum || head || opt_is("expect_initrd", "1");

	if (!opt_test_enabled(name))
		return;
	if (!bi->has_initrd) {
		if (expected)
			test_fail(name, "no initrd/module was passed");
		else
			gprintf("INFO initrd: none\n");
		return;
	}
	uint64_t a = bi->initrd_addr, sz = bi->initrd_size;
	gprintf("INFO initrd at %#llx, %llu bytes\n", (unsigned long long)a, (unsigned long long)sz);
	if (opt_is("expect_initrd", "0")) {
		test_fail(name, "an initrd was passed, none expected");
		return;
	}
	if (a & 0xfff) {
		test_fail(name, "address %#llx is not page aligned", (unsigned long long)a);
		return;
	}
	if (sz && !in_ram(a, sz)) {
		test_fail(name, "[%#llx, +%llu) is not inside one RAM region", (unsigned long long)a,
			  (unsigned long long)sz);
		return;
	}
	if (ranges_overlap(a, sz, image_start(), image_size())) {
		test_fail(name, "overlaps the kernel image");
		return;
	}
	if (bi->has_cmdline && ranges_overlap(a, sz, bi->cmdline_addr, bi->cmdline_len + 1)) {
		test_fail(name, "overlaps the command line");
		return;
	}
	if (ranges_overlap(a, sz, bi->info_addr, bi->info_size)) {
		test_fail(name, "overlaps the boot information at %#llx", (unsigned long long)bi->info_addr);
		return;
	}
	if (has_size && sz != want_size) {
		test_fail(name, "%llu bytes, expected %llu", (unsigned long long)sz, (unsigned long long)want_size);
		return;
	}
	if (!phys_ok(a, sz)) {
		test_skip(name, "at %#llx, out of reach in this mode", (unsigned long long)a);
		return;
	}
	if (head && (sz < head_len || memcmp(phys_ptr(a), head, head_len))) {
		test_fail(name, "does not start with \"%.*s\"", (int)head_len, head);
		return;
	}
	uint32_t sum = posix_cksum(phys_ptr(a), sz);
	if (has_sum && sum != want_sum) {
		test_fail(name, "cksum %u, expected %llu", sum, (unsigned long long)want_sum);
		return;
	}
	test_pass(name, "%llu bytes at %#llx, cksum %u", (unsigned long long)sz, (unsigned long long)a, sum);
}

/* ======================================================================
 * ACPI
 * ====================================================================== */

struct acpi_header {
	char sig[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

static uint8_t sum8(const void *p, uint64_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;
	while (n--)
		s += *b++;
	return s;
}

static uint32_t rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static bool rsdp_valid(uint64_t a)
{
	if (!phys_ok(a, 36))
		return false;
	const uint8_t *p = phys_ptr(a);
	if (memcmp(p, "RSD PTR ", 8) || sum8(p, 20))
		return false;
	if (p[15] >= 2) {
		uint32_t len = rd32(p + 20);
		if (len < 36 || len > 4096 || sum8(p, len))
			return false;
	}
	return true;
}

static uint64_t rsdp_scan(void)
{
	/* the first KiB of the EBDA, then the BIOS area */
	uint64_t ebda = (uint64_t)*(volatile uint16_t *)phys_ptr(0x40e) << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		for (uint64_t a = ebda; a < ebda + 1024; a += 16)
			if (rsdp_valid(a))
				return a;
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_valid(a))
			return a;
	return 0;
}

/* Check a table header; returns NULL (after a FAIL) if unusable. */
static const struct acpi_header *acpi_table(uint64_t a, const char *what, const char *sig)
{
	if (!a || !phys_ok(a, sizeof(struct acpi_header))) {
		test_fail("acpi", "%s at %#llx is out of reach", what, (unsigned long long)a);
		return 0;
	}
	const struct acpi_header *h = phys_ptr(a);
	if (sig && memcmp(h->sig, sig, 4)) {
		test_fail("acpi", "%s at %#llx has signature \"%.4s\", not %s", what, (unsigned long long)a,
			  h->sig, sig);
		return 0;
	}
	if (h->length < sizeof(*h) || h->length > 1 * MIB || !phys_ok(a, h->length)) {
		test_fail("acpi", "%s at %#llx: bad length %u", what, (unsigned long long)a, h->length);
		return 0;
	}
	if (sum8(h, h->length)) {
		test_fail("acpi", "%s (%.4s) at %#llx: bad checksum", what, h->sig, (unsigned long long)a);
		return 0;
	}
	if (binfo->has_memmap && touches_ram(a, h->length)) {
		test_fail("acpi", "%.4s at %#llx lies in RAM (an OS would overwrite it)", h->sig,
			  (unsigned long long)a);
		return 0;
	}
	gprintf("INFO acpi %.4s at %#llx, %u bytes, rev %u, OEM \"%.6s\" \"%.8s\"\n", h->sig,
		(unsigned long long)a, h->length, h->revision, h->oem_id, h->oem_table_id);
	return h;
}

/* The first element of the \_S5 package in the DSDT: the SLP_TYP for S5. */
static int find_s5(const struct acpi_header *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt, *end = p + dsdt->length;
	for (; p + 8 < end; p++) {
		if (memcmp(p, "_S5_", 4) || p[4] != 0x12) /* NameOp _S5_ PackageOp */
			continue;
		const uint8_t *q = p + 5;
		q += 1 + (*q >> 6);  /* PkgLength */
		q++;                 /* NumElements */
		if (q >= end)
			return -1;
		if (*q == 0x0a && q + 1 < end) /* BytePrefix */
			return q[1];
		if (*q == 0x00 || *q == 0x01) /* ZeroOp, OneOp */
			return *q;
		return -1;
	}
	return -1;
}

static void parse_fadt(const struct acpi_header *h)
{
	const uint8_t *f = (const uint8_t *)h;
	uint64_t dsdt = rd32(f + 40);
	if (h->length >= 148 && rd64(f + 140))
		dsdt = rd64(f + 140);
	acpi.pm1a_cnt = (uint16_t)rd32(f + 64);
	if (h->length >= 116) {
		acpi.pm_tmr_port = (uint16_t)rd32(f + 76);
		acpi.pm_tmr_ext = (rd32(f + 112) >> 8) & 1;
		if (f[91] != 4 && acpi.pm_tmr_port) {
			gprintf("INFO acpi FADT PM_TMR_LEN %u, not 4: timer not used\n", f[91]);
			acpi.pm_tmr_port = 0;
		}
	}
	gprintf("INFO acpi FADT: DSDT %#llx, PM1a_CNT %#x, PM_TMR %#x%s, SCI %u\n", (unsigned long long)dsdt,
		acpi.pm1a_cnt, acpi.pm_tmr_port, acpi.pm_tmr_ext ? " (32-bit)" : "", rd16(f + 46));
	const struct acpi_header *d = acpi_table(dsdt, "FADT.DSDT", "DSDT");
	if (d) {
		acpi.dsdt = dsdt;
		acpi.s5_typ = find_s5(d);
	} else {
		acpi.ok = false;
	}
}

static const uint8_t *madt_ptr;
static uint32_t madt_len;

static void check_acpi(void)
{
	struct boot_info *bi = binfo;
	const char *name = "acpi";
	bool enabled = opt_test_enabled(name) || opt_test_enabled("madt") || opt_test_enabled("smp") ||
		       opt_is("action", "s5");

	memset(&acpi, 0, sizeof(acpi));
	acpi.s5_typ = -1;
	if (!enabled)
		return;
	uint64_t scanned = rsdp_scan();
	uint64_t rsdp = 0;
	if (bi->has_rsdp_field && bi->rsdp_addr) {
		if (!rsdp_valid(bi->rsdp_addr)) {
			test_fail(name, "the RSDP address passed by the loader, %#llx, holds no valid RSDP",
				  (unsigned long long)bi->rsdp_addr);
			return;
		}
		rsdp = bi->rsdp_addr;
		if (scanned && scanned != rsdp)
			gprintf("INFO acpi: passed RSDP %#llx differs from the scanned one %#llx\n",
				(unsigned long long)rsdp, (unsigned long long)scanned);
	} else {
		if (bi->has_rsdp_field)
			gprintf("INFO acpi: the loader passed no RSDP address\n");
		if (opt_is("expect_rsdp", "1") && bi->has_rsdp_field) {
			test_fail(name, "the loader passed no RSDP address (%s field is 0)", bi->format);
			return;
		}
		rsdp = scanned;
	}
	if (!rsdp) {
		if (opt_is("expect_acpi", "0"))
			test_pass(name, "no ACPI, as expected");
		else
			test_fail(name, "no RSDP found (scan of 0xe0000-0xfffff and the EBDA)");
		return;
	}
	if (opt_is("expect_acpi", "0")) {
		test_fail(name, "an RSDP at %#llx, none expected", (unsigned long long)rsdp);
		return;
	}
	const uint8_t *r = phys_ptr(rsdp);
	gprintf("INFO acpi RSDP at %#llx, revision %u, OEM \"%.6s\", RSDT %#x", (unsigned long long)rsdp, r[15],
		r + 9, rd32(r + 16));
	uint64_t xsdt = r[15] >= 2 ? rd64(r + 24) : 0;
	if (r[15] >= 2)
		gprintf(", XSDT %#llx", (unsigned long long)xsdt);
	con_putc('\n');
	if (bi->has_memmap && touches_ram(rsdp, 20)) {
		test_fail(name, "the RSDP at %#llx lies in RAM", (unsigned long long)rsdp);
		return;
	}
	const struct acpi_header *root;
	unsigned esize;
	if (xsdt) {
		root = acpi_table(xsdt, "RSDP.XSDT", "XSDT");
		esize = 8;
	} else {
		root = acpi_table(rd32(r + 16), "RSDP.RSDT", "RSDT");
		esize = 4;
	}
	if (!root)
		return;
	if (xsdt && rd32(r + 16)) {
		/* an RSDT too: it must be valid and list the same tables */
		const struct acpi_header *rsdt = acpi_table(rd32(r + 16), "RSDP.RSDT", "RSDT");
		if (!rsdt)
			return;
		if ((rsdt->length - 36) / 4 != (root->length - 36) / 8) {
			test_fail(name, "the RSDT and the XSDT list different numbers of tables");
			return;
		}
	}
	acpi.ok = true;
	acpi.rsdp = rsdp;
	unsigned n = (root->length - sizeof(*root)) / esize;
	const uint8_t *ent = (const uint8_t *)(root + 1);
	bool have_fadt = false;
	char list[64] = "";
	size_t ll = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = esize == 8 ? rd64(ent + 8 * i) : rd32(ent + 4 * i);
		const struct acpi_header *h = acpi_table(a, "a table listed in the root table", 0);
		if (!h) {
			acpi.ok = false;
			return;
		}
		if (ll + 6 < sizeof(list)) {
			if (ll)
				list[ll++] = ' ';
			memcpy(list + ll, h->sig, 4);
			ll += 4;
			list[ll] = 0;
		}
		if (!memcmp(h->sig, "FACP", 4)) {
			have_fadt = true;
			parse_fadt(h);
			if (!acpi.ok)
				return;
		} else if (!memcmp(h->sig, "APIC", 4)) {
			madt_ptr = (const uint8_t *)h;
			madt_len = h->length;
		}
	}
	if (!madt_ptr) {
		test_fail(name, "no MADT (APIC) table");
		acpi.ok = false;
		return;
	}
	if (opt_test_enabled(name))
		test_pass(name, "RSDP %#llx rev %u, %s with %u tables: %s%s", (unsigned long long)rsdp, r[15],
			  xsdt ? "XSDT" : "RSDT", n, list, have_fadt ? "" : " (no FADT)");
	if (acpi.pm_tmr_port)
		time_use_pm_timer(acpi.pm_tmr_port, acpi.pm_tmr_ext);
}

static void check_madt(void)
{
	const char *name = "madt";
	if (!acpi.ok || !madt_ptr) {
		if (opt_test_enabled(name) && opt_has("expect_cpus"))
			test_fail(name, "no usable ACPI tables");
		return;
	}
	const uint8_t *m = madt_ptr;
	acpi.lapic_addr = rd32(m + 36);
	uint32_t flags = rd32(m + 40);
	bool bad = false;
	for (uint32_t off = 44; off < madt_len;) {
		uint8_t type = m[off], len = m[off + 1];
		if (len < 2 || off + len > madt_len) {
			test_fail(name, "entry at offset %u: bad length %u", off, len);
			return;
		}
		const uint8_t *e = m + off;
		switch (type) {
		case 0: /* processor local APIC */
			if (len < 8) {
				bad = true;
				break;
			}
			if (verbose)
				gprintf("INFO madt LAPIC uid %u id %u flags %#x\n", e[2], e[3], rd32(e + 4));
			if ((rd32(e + 4) & 1) && acpi.ncpu < 256)
				acpi.apic_ids[acpi.ncpu++] = e[3];
			break;
		case 1: /* IOAPIC */
			if (len < 12) {
				bad = true;
				break;
			}
			if (!acpi.nioapic++) {
				acpi.ioapic_id = e[2];
				acpi.ioapic_addr = rd32(e + 4);
				acpi.ioapic_gsi = rd32(e + 8);
			}
			gprintf("INFO madt IOAPIC id %u at %#x, GSI base %u\n", e[2], rd32(e + 4), rd32(e + 8));
			break;
		case 2: /* interrupt source override */
			if (len < 10) {
				bad = true;
				break;
			}
			gprintf("INFO madt override: IRQ %u -> GSI %u, flags %#x\n", e[3], rd32(e + 4), rd16(e + 8));
			break;
		case 4: /* LAPIC NMI */
			break;
		case 5: /* LAPIC address override */
			if (len >= 12)
				acpi.lapic_addr = (uint32_t)rd64(e + 4);
			break;
		case 9: /* x2APIC */
			if (len < 16) {
				bad = true;
				break;
			}
			if ((rd32(e + 8) & 1) && acpi.ncpu < 256)
				acpi.apic_ids[acpi.ncpu++] = rd32(e + 4);
			break;
		default:
			gprintf("INFO madt entry type %u, %u bytes\n", type, len);
		}
		if (bad) {
			test_fail(name, "entry type %u at offset %u is too short (%u bytes)", type, off, len);
			return;
		}
		off += len;
	}
	gprintf("INFO madt: LAPIC at %#x, flags %#x, %d enabled CPUs, APIC IDs", acpi.lapic_addr, flags, acpi.ncpu);
	for (int i = 0; i < acpi.ncpu; i++)
		gprintf(" %u", acpi.apic_ids[i]);
	con_putc('\n');
	if (!opt_test_enabled(name))
		return;
	if (acpi.lapic_addr != GUEST_LAPIC_BASE) {
		test_fail(name, "LAPIC address %#x, expected %#x", acpi.lapic_addr, GUEST_LAPIC_BASE);
		return;
	}
	uint64_t want;
	if (opt_u64("expect_cpus", &want) && (uint64_t)acpi.ncpu != want) {
		test_fail(name, "%d enabled CPUs, expected %llu", acpi.ncpu, (unsigned long long)want);
		return;
	}
	if (acpi.ncpu == 0) {
		test_fail(name, "no enabled processor");
		return;
	}
	for (int i = 0; i < acpi.ncpu; i++)
		for (int j = i + 1; j < acpi.ncpu; j++)
			if (acpi.apic_ids[i] == acpi.apic_ids[j]) {
				test_fail(name, "APIC ID %u listed twice", acpi.apic_ids[i]);
				return;
			}
	for (int i = 0; i < acpi.ncpu; i++)
		if (acpi.apic_ids[i] >= (uint32_t)acpi.ncpu) {
			test_fail(name, "APIC IDs are not 0..%d (found %u)", acpi.ncpu - 1, acpi.apic_ids[i]);
			return;
		}
	test_pass(name, "%d CPUs, APIC IDs 0..%d", acpi.ncpu, acpi.ncpu - 1);
}

static void check_ioapic(void)
{
	const char *name = "ioapic";
	if (!acpi.ok || !madt_ptr || !opt_test_enabled(name))
		return;
	if (!acpi.nioapic) {
		test_fail(name, "no IOAPIC in the MADT");
		return;
	}
	if (acpi.ioapic_addr != GUEST_IOAPIC_BASE) {
		test_fail(name, "at %#x, expected %#x", acpi.ioapic_addr, GUEST_IOAPIC_BASE);
		return;
	}
	mmio_write32(acpi.ioapic_addr, 1); /* IOREGSEL: version */
	uint32_t ver = mmio_read32(acpi.ioapic_addr + 0x10);
	mmio_write32(acpi.ioapic_addr, 0); /* ID */
	uint32_t id = mmio_read32(acpi.ioapic_addr + 0x10);
	unsigned nredir = ((ver >> 16) & 0xff) + 1;
	if (ver == 0xffffffffu || (ver & 0xff) < 0x11 || nredir < 16) {
		test_fail(name, "version register reads %#x (no IOAPIC answering at %#x?)", ver, acpi.ioapic_addr);
		return;
	}
	if (((id >> 24) & 0xf) != (acpi.ioapic_id & 0xf))
		gprintf("INFO ioapic: ID register %u, MADT says %u\n", (id >> 24) & 0xf, acpi.ioapic_id);
	test_pass(name, "version %#x, %u pins, GSI base %u", ver & 0xff, nredir, acpi.ioapic_gsi);
}

/* ======================================================================
 * LAPIC and SMP
 * ====================================================================== */

#define LAPIC_ID    0x020
#define LAPIC_VER   0x030
#define LAPIC_SVR   0x0f0
#define LAPIC_ESR   0x280
#define LAPIC_ICR0  0x300
#define LAPIC_ICR1  0x310
#define ICR_BUSY    (1u << 12)

static uint32_t lapic_rd(uint32_t reg) { return mmio_read32(GUEST_LAPIC_BASE + reg); }
static void lapic_wr(uint32_t reg, uint32_t v) { mmio_write32(GUEST_LAPIC_BASE + reg, v); }
static uint32_t bsp_apic_id;
static bool lapic_ok;

static void check_lapic(void)
{
	const char *name = "lapic";
	uint32_t r[4];
	cpuid(1, 0, r);
	uint32_t cpuid_id = r[1] >> 24;
	if (!(r[3] & (1u << 9))) {
		if (opt_test_enabled(name))
			test_fail(name, "CPUID.1:EDX.APIC is clear");
		return;
	}
	uint64_t base = rdmsr(0x1b);
	if ((base & ~0xfffull) != GUEST_LAPIC_BASE || !(base & (1u << 11)) || !(base & (1u << 8))) {
		if (opt_test_enabled(name))
			test_fail(name, "IA32_APIC_BASE = %#llx (want base %#x, enabled, BSP)", (unsigned long long)base,
				  GUEST_LAPIC_BASE);
		return;
	}
	if (base & (1u << 10))
		gprintf("INFO lapic: already in x2APIC mode\n");
	bsp_apic_id = lapic_rd(LAPIC_ID) >> 24;
	uint32_t ver = lapic_rd(LAPIC_VER);
	lapic_ok = true;
	if (!opt_test_enabled(name))
		return;
	if (bsp_apic_id != cpuid_id) {
		test_fail(name, "LAPIC ID register %u, CPUID initial APIC ID %u", bsp_apic_id, cpuid_id);
		return;
	}
	if ((ver & 0xff) < 0x10 || ver == 0xffffffffu) {
		test_fail(name, "version register %#x: no integrated xAPIC at %#x", ver, GUEST_LAPIC_BASE);
		return;
	}
	if (acpi.ok && acpi.ncpu) {
		bool listed = false;
		for (int i = 0; i < acpi.ncpu; i++)
			listed |= acpi.apic_ids[i] == bsp_apic_id;
		if (!listed) {
			test_fail(name, "the BSP's APIC ID %u is not in the MADT", bsp_apic_id);
			return;
		}
	}
	test_pass(name, "BSP APIC ID %u, version %#x, %u LVT entries", bsp_apic_id, ver & 0xff,
		  ((ver >> 16) & 0xff) + 1);
}

static bool icr_wait(void)
{
	uint64_t end = time_us() + 100000;
	while (lapic_rd(LAPIC_ICR0) & ICR_BUSY) {
		if (time_us() > end)
			return false;
		cpu_pause();
	}
	return true;
}

static bool send_ipi(uint32_t apic_id, uint32_t low)
{
	lapic_wr(LAPIC_ICR1, apic_id << 24);
	lapic_wr(LAPIC_ICR0, low);
	return icr_wait();
}

static volatile uint32_t *tramp_var(const char *sym)
{
	return (volatile uint32_t *)phys_ptr(GUEST_TRAMP_ADDR + (sym - ap_tramp_start));
}

static unsigned popcount256(volatile uint32_t *bm)
{
	unsigned n = 0;
	for (int i = 0; i < 8; i++)
		for (uint32_t w = bm[i]; w; w &= w - 1)
			n++;
	return n;
}

static void check_smp(void)
{
	const char *name = "smp";
	if (!opt_test_enabled(name))
		return;
	if (opt_is("smp", "off")) {
		test_skip(name, "smp=off");
		return;
	}
	if (!acpi.ok || !acpi.ncpu) {
		if (opt_has("expect_cpus"))
			test_fail(name, "no MADT to find the APs in");
		return;
	}
	if (acpi.ncpu == 1) {
		gprintf("INFO smp: one CPU, no AP to start\n");
		return;
	}
	if (!lapic_ok) {
		test_fail(name, "the BSP's LAPIC is not usable");
		return;
	}
	int naps = acpi.ncpu - 1;
	uint64_t timeout_ms = 3000;
	opt_u64("smp_timeout_ms", &timeout_ms);

	/* the trampoline, with its counters zeroed */
	size_t tsize = ap_tramp_end - ap_tramp_start;
	memcpy(phys_ptr(GUEST_TRAMP_ADDR), ap_tramp_start, tsize);
	volatile uint32_t *rm_count = tramp_var(ap_tramp_rm_count), *pm_count = tramp_var(ap_tramp_pm_count);
	volatile uint32_t *rm_ids = tramp_var(ap_tramp_rm_ids), *pm_ids = tramp_var(ap_tramp_pm_ids);
	*rm_count = *pm_count = 0;
	for (int i = 0; i < 8; i++)
		rm_ids[i] = pm_ids[i] = 0;

	/* software-enable the LAPIC (spurious vector 0xff) and clear errors */
	lapic_wr(LAPIC_SVR, lapic_rd(LAPIC_SVR) | 0x1ff);
	lapic_wr(LAPIC_ESR, 0);
	lapic_wr(LAPIC_ESR, 0);

	uint64_t t0 = time_us();
	uint32_t vector = GUEST_TRAMP_ADDR >> 12;
	const char *ipi_err = 0;
	/* INIT (assert, then de-assert as Linux does) to every AP ... */
	for (int i = 0; i < acpi.ncpu && !ipi_err; i++) {
		uint32_t id = acpi.apic_ids[i];
		if (id == bsp_apic_id)
			continue;
		if (!send_ipi(id, 0x0000c500) || !send_ipi(id, 0x00008500))
			ipi_err = "INIT";
	}
	udelay(10000);
	/* ... then two STARTUPs, 200 us apart */
	for (int round = 0; round < 2 && !ipi_err; round++) {
		for (int i = 0; i < acpi.ncpu && !ipi_err; i++) {
			uint32_t id = acpi.apic_ids[i];
			if (id != bsp_apic_id && !send_ipi(id, 0x00000600 | vector))
				ipi_err = "STARTUP";
		}
		udelay(200);
	}
	if (ipi_err) {
		test_fail(name, "the ICR stayed busy (delivery status) after an %s IPI", ipi_err);
		return;
	}
	uint32_t esr;
	lapic_wr(LAPIC_ESR, 0);
	esr = lapic_rd(LAPIC_ESR);
	if (esr)
		gprintf("INFO smp: LAPIC ESR %#x after the IPIs\n", esr);

	uint64_t deadline = t0 + timeout_ms * 1000;
	while (time_us() < deadline && (*rm_count < (uint32_t)naps || *pm_count < (uint32_t)naps))
		cpu_pause();
	/* give a late duplicate a moment to show up */
	udelay(2000);
	uint64_t ms = (time_us() - t0) / 1000;
	uint32_t rmc = *rm_count, pmc = *pm_count;
	gprintf("INFO smp: %u of %d APs ran the real-mode trampoline, %u reached protected mode, after %llu ms\n",
		rmc, naps, pmc, (unsigned long long)ms);

	if (rmc == 0) {
		const char *why = "APs did not start: none of the %d APs ran the real-mode trampoline "
				  "within %llu ms of INIT-SIPI-SIPI";
		if (opt_is("smp", "optional"))
			test_skip(name, why, naps, (unsigned long long)timeout_ms);
		else
			test_fail(name, why, naps, (unsigned long long)timeout_ms);
		return;
	}
	if (rmc != (uint32_t)naps) {
		test_fail(name, "%u of %d APs started (%s)", rmc, naps, rmc > (uint32_t)naps ? "an AP ran twice" : "some missing");
		return;
	}
	/* every AP's CPUID initial APIC ID and LAPIC ID must be the MADT's */
	for (int pass = 0; pass < 2; pass++) {
		volatile uint32_t *bm = pass ? pm_ids : rm_ids;
		const char *what = pass ? "LAPIC ID register" : "CPUID initial APIC ID";
		if (pass && pmc != (uint32_t)naps) {
			test_fail(name, "%d APs started but only %u reached protected mode", naps, pmc);
			return;
		}
		for (int i = 0; i < acpi.ncpu; i++) {
			uint32_t id = acpi.apic_ids[i];
			bool seen = id < 256 && (bm[id / 32] >> (id % 32)) & 1;
			if (id != bsp_apic_id && !seen) {
				test_fail(name, "no AP reported %s %u (%u distinct IDs reported)", what, id, popcount256(bm));
				return;
			}
		}
		if (popcount256(bm) != (unsigned)naps) {
			test_fail(name, "APs reported %u distinct %ss for %d APs", popcount256(bm), what, naps);
			return;
		}
	}
	test_pass(name, "%d APs started (INIT-SIPI-SIPI, real mode -> protected mode) in %llu ms", naps,
		  (unsigned long long)ms);
}

/* ======================================================================
 * RAM
 * ====================================================================== */

#define RAM_STRIDE (16 * MIB)
#define RAM_MAX_PROBES 8192

static uint64_t probe_pattern(uint64_t a) { return a ^ 0x5a5aa5a5c3c33c3cull; }

static bool probe_allowed(uint64_t a)
{
	struct boot_info *bi = binfo;
	if (a < 1 * MIB || !phys_ok(a, 8))
		return false;
	if (ranges_overlap(a, 8, image_start(), image_size()))
		return false;
	if (bi->has_initrd && ranges_overlap(a, 8, bi->initrd_addr, bi->initrd_size))
		return false;
	return true;
}

static void check_ram(void)
{
	struct boot_info *bi = binfo;
	const char *name = "ram";
	static uint64_t probes[RAM_MAX_PROBES];
	unsigned n = 0, unreachable = 0, high = 0;

	if (!opt_test_enabled(name) || !bi->has_memmap)
		return;
	uint64_t limit = arch_map_memory(ram_top);
	for (int i = 0; i < bi->nmem; i++) {
		const struct mem_region *r = &bi->mem[i];
		if (r->type != MEM_RAM || r->size < 8)
			continue;
		uint64_t end = r->addr + r->size;
		uint64_t a = (r->addr + RAM_STRIDE - 1) & ~(RAM_STRIDE - 1);
		for (;; a += RAM_STRIDE) {
			uint64_t p = a < end - 8 ? a : (end - 8) & ~7ull; /* the last one: the region's end */
			if (n >= RAM_MAX_PROBES)
				break;
			if (!phys_ok(p, 8) && p >= 1 * MIB)
				unreachable++;
			else if (probe_allowed(p) && (n == 0 || probes[n - 1] != p)) {
				probes[n++] = p;
				high += p >= 4 * GIB;
			}
			if (a >= end - 8)
				break;
		}
	}
	for (unsigned i = 0; i < n; i++)
		*(volatile uint64_t *)phys_ptr(probes[i]) = probe_pattern(probes[i]);
	for (unsigned i = 0; i < n; i++) {
		uint64_t got = *(volatile uint64_t *)phys_ptr(probes[i]);
		if (got != probe_pattern(probes[i])) {
			test_fail(name, "at %#llx read %#llx, wrote %#llx (aliased or not RAM)",
				  (unsigned long long)probes[i], (unsigned long long)got,
				  (unsigned long long)probe_pattern(probes[i]));
			return;
		}
	}
	if (unreachable)
		gprintf("INFO ram: %u probe points at or above %#llx not reachable in this mode\n", unreachable,
			(unsigned long long)limit);
	uint64_t top = 0;
	for (unsigned i = 0; i < n; i++)
		if (probes[i] > top)
			top = probes[i];
	test_pass(name, "%u probes up to %#llx, %u above 4 GiB", n, (unsigned long long)top, high);
}

/* ======================================================================
 * actions at the end
 * ====================================================================== */

static void do_action(void)
{
	const char *a = opt_str("action");
	if (!a)
		return;
	if (opt_is("action", "triple")) {
		gprintf("INFO action: triple fault\n");
		struct {
			uint16_t limit;
			uintptr_t base;
		} __attribute__((packed)) desc = { 0, 0 };
		__asm__ volatile("lidt %0; ud2" : : "m"(desc)); /* not int3: PVM cannot emulate it */
	} else if (opt_is("action", "cf9")) {
		gprintf("INFO action: reset through port 0xcf9\n");
		outb(0xcf9, 0x02);
		outb(0xcf9, 0x06);
	} else if (opt_is("action", "kbd")) {
		gprintf("INFO action: reset through the i8042 (0xfe to port 0x64)\n");
		outb(0x64, 0xfe);
	} else if (opt_is("action", "s5")) {
		if (!acpi.pm1a_cnt || acpi.s5_typ < 0) {
			test_fail("action", "no PM1a_CNT or \\_S5 in the ACPI tables");
			return;
		}
		gprintf("INFO action: ACPI S5 (SLP_TYP %d to PM1a_CNT %#x)\n", acpi.s5_typ, acpi.pm1a_cnt);
		outw(acpi.pm1a_cnt, (uint16_t)((acpi.s5_typ << 10) | (1 << 13)));
	} else if (opt_is("action", "ud")) {
		gprintf("INFO action: ud2 (the exception handler must report it)\n");
		__asm__ volatile("ud2");
	} else if (opt_is("action", "hang")) {
		gprintf("INFO action: hang\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	} else {
		gprintf("INFO action: unknown\n");
		return;
	}
	udelay(500000);
	test_fail("action", "the VM is still running 500 ms after the action");
	guest_exit(GUEST_EXIT_ACTION);
}

/* ======================================================================
 * the sequence
 * ====================================================================== */

void guest_early_init(void)
{
	con_init();
	arch_setup_idt();
}

_Noreturn void guest_run(struct boot_info *bi)
{
	binfo = bi;
	opt_parse(bi->has_cmdline ? bi->cmdline : "");
	verbose = opt_is("verbose", "1");
	(void)time_us();
	check_cmdline();
	check_memmap();
	check_initrd();
	check_acpi();
	check_madt();
	check_ioapic();
	check_lapic();
	check_smp();
	check_ram();
	guest_finish();
}
