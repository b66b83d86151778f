/*
 * test_acpi.c - the ACPI tables (arch/x86/acpi.h) and the AML encoder
 * (arch/x86/aml.h).
 *
 * The tables are checked the way a guest reads them: find the RSDP (by its
 * address and by the legacy scan of 0xE0000-0xFFFFF), follow XSDT/RSDT to each
 * table, and read fields at the byte offsets the ACPI 6.5 spec gives - never
 * through acpi.c's own structs, so a layout mistake there cannot hide.
 *
 * If iasl (Debian's acpica-tools) is installed, one test also disassembles
 * the DSDT and compiles the result again; without iasl that test is skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "arch/x86/boot.h"
#include "core/memory.h"
#include "harness.h"
#include "hw/pc.h"
#include "virtio/mmio.h"
#include "virtio/virtio.h"

#define RAM (64ull << 20)

/* ---- reading guest memory ---- */

static const uint8_t *gp(const struct guest_mem *gm, uint64_t gpa,
			 uint64_t len)
{
	const uint8_t *p = gm_ptr(gm, gpa, len);
	if (!p) {
		fail_msg("guest range %#llx+%#llx is not RAM",
			 (unsigned long long)gpa, (unsigned long long)len);
		abort(); /* not reached: tells the compiler p != NULL */
	}
	return p;
}

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	return s;
}

/* Check a table's header (§5.2.6) at gpa: signature, length inside the ACPI
 * area, checksum, OEM fields.  Returns a pointer to the whole table. */
static const uint8_t *check_table(const struct guest_mem *gm, uint64_t gpa,
				  const char *sig, uint32_t *len_out)
{
	const uint8_t *h = gp(gm, gpa, 36);
	uint32_t len = le32(h + 4);

	assert_memory_equal(h, sig, 4);
	assert_true(len >= 36);
	assert_true(gpa >= BOOT_ACPI_ADDR);
	assert_true(gpa + len <= BOOT_RSDP_ADDR);
	h = gp(gm, gpa, len);
	assert_int_equal(sum8(h, len), 0);
	assert_memory_equal(h + 10, "KVMM  ", 6);
	assert_memory_equal(h + 16, "KVMMVIRT", 8);
	assert_memory_equal(h + 28, "KVMM", 4);
	if (len_out)
		*len_out = len;
	return h;
}

static bool rsdp_valid(const uint8_t *r)
{
	return !memcmp(r, "RSD PTR ", 8) && sum8(r, 20) == 0 &&
	       r[15] == 2 && le32(r + 20) == 36 && sum8(r, 36) == 0;
}

/* Everything a guest finds, located from the RSDP. */
struct found {
	uint64_t rsdp, xsdt, rsdt, fadt, madt, mcfg, dsdt, facs;
	unsigned nr_xsdt;
};

static struct found find_tables(const struct guest_mem *gm, uint64_t rsdp)
{
	struct found f = { .rsdp = rsdp };
	const uint8_t *r = gp(gm, rsdp, 36), *x, *rs, *fadt;
	uint32_t xlen, rlen;

	assert_true(rsdp_valid(r));
	f.xsdt = le64(r + 24);
	f.rsdt = le32(r + 16);
	x = check_table(gm, f.xsdt, "XSDT", &xlen);
	rs = check_table(gm, f.rsdt, "RSDT", &rlen);
	assert_int_equal((xlen - 36) % 8, 0);
	f.nr_xsdt = (xlen - 36) / 8;
	/* The RSDT lists the same tables with 32-bit pointers. */
	assert_int_equal(rlen, 36 + 4 * f.nr_xsdt);
	for (unsigned i = 0; i < f.nr_xsdt; i++) {
		uint64_t t = le64(x + 36 + 8 * i);
		const uint8_t *sig = gp(gm, t, 4);
		assert_int_equal(le32(rs + 36 + 4 * i), t);
		if (!memcmp(sig, "FACP", 4))
			f.fadt = t;
		else if (!memcmp(sig, "APIC", 4))
			f.madt = t;
		else if (!memcmp(sig, "MCFG", 4))
			f.mcfg = t;
		else
			fail_msg("unexpected table %.4s in the XSDT",
				 (const char *)sig);
	}
	assert_true(f.fadt && f.madt);
	fadt = check_table(gm, f.fadt, "FACP", NULL);
	f.dsdt = le64(fadt + 140);
	f.facs = le64(fadt + 132);
	return f;
}

static int build(struct guest_mem *gm, const struct acpi_config *cfg,
		 struct found *f)
{
	uint64_t rsdp = 0;
	int r = acpi_build(gm, cfg, &rsdp);
	if (!r) {
		assert_int_equal(rsdp, BOOT_RSDP_ADDR);
		*f = find_tables(gm, rsdp);
	}
	return r;
}

static const uint8_t *find_bytes(const uint8_t *hay, size_t n,
				 const void *needle, size_t m)
{
	return memmem(hay, n, needle, m);
}

static unsigned count_bytes(const uint8_t *hay, size_t n, const void *needle,
			    size_t m)
{
	unsigned c = 0;
	for (const uint8_t *p = hay; (p = memmem(p, n - (size_t)(p - hay),
						 needle, m)); p++)
		c++;
	return c;
}

/* Decode a PkgLength at p (§20.2.4): value in *value, returns its size. */
static unsigned pkglen_decode(const uint8_t *p, uint32_t *value)
{
	unsigned n = (p[0] >> 6) + 1;
	if (n == 1) {
		*value = p[0] & 0x3f;
		return 1;
	}
	assert_int_equal(p[0] & 0x30, 0); /* reserved bits */
	*value = p[0] & 0x0f;
	for (unsigned i = 1; i < n; i++)
		*value |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	return n;
}

/* At p: Name(seg, ResourceTemplate(){...}).  Checks the Buffer's lengths,
 * that it ends with an End Tag and that its bytes sum to zero; returns the
 * descriptors and their length (without the End Tag). */
static const uint8_t *check_crs(const uint8_t *p, size_t *len)
{
	uint32_t pkglen, size;
	unsigned k;

	assert_int_equal(p[0], 0x08);           /* NameOp */
	assert_memory_equal(p + 1, "_CRS", 4);
	assert_int_equal(p[5], 0x11);           /* BufferOp */
	k = pkglen_decode(p + 6, &pkglen);
	const uint8_t *q = p + 6 + k;
	switch (q[0]) {                         /* BufferSize */
	case 0x0a: size = q[1]; q += 2; break;
	case 0x0b: size = le16(q + 1); q += 3; break;
	default: fail_msg("BufferSize opcode %#x", q[0]); return NULL;
	}
	assert_int_equal(pkglen, (uint32_t)(q - (p + 6)) + size);
	assert_int_equal(q[size - 2], 0x79);    /* End Tag */
	assert_int_equal(sum8(q, size), 0);
	*len = size - 2;
	return q;
}

/* The DSDT's Device(name) {...}: returns the body after the NameSeg. */
static const uint8_t *find_device(const uint8_t *dsdt, size_t n,
				  const char *seg, size_t *body_len)
{
	for (size_t i = 0; i + 7 < n; i++) {
		uint32_t len;
		unsigned k;
		if (dsdt[i] != 0x5b || dsdt[i + 1] != 0x82)
			continue;
		k = pkglen_decode(dsdt + i + 2, &len);
		if (memcmp(dsdt + i + 2 + k, seg, 4))
			continue;
		*body_len = len - k - 4;
		return dsdt + i + 2 + k + 4;
	}
	fail_msg("no Device(%s) in the DSDT", seg);
	return NULL;
}

static const uint8_t *device_crs(const uint8_t *dsdt, size_t n,
				 const char *seg, size_t *len)
{
	size_t blen;
	const uint8_t *body = find_device(dsdt, n, seg, &blen);
	const uint8_t *crs = find_bytes(body, blen, "\x08_CRS", 5);
	assert_non_null(crs);
	return check_crs(crs, len);
}

/* ---- the whole set, for 1, 2, 4 and 255 vCPUs ---- */

static void check_fadt(const struct guest_mem *gm, const struct found *f)
{
	uint32_t len;
	const uint8_t *t = check_table(gm, f->fadt, "FACP", &len);
	const uint8_t *facs;
	uint32_t flags;

	assert_int_equal(len, 276);
	assert_int_equal(t[8], 6);                      /* revision */
	/* FACS and DSDT, 32- and 64-bit pointers agree (offsets 36/132, 40/140) */
	assert_int_equal(le32(t + 36), f->facs);
	assert_int_equal(le32(t + 40), f->dsdt);
	assert_int_equal(f->facs % 64, 0);
	facs = gp(gm, f->facs, 64);
	assert_memory_equal(facs, "FACS", 4);
	assert_int_equal(le32(facs + 4), 64);
	assert_true(f->facs >= BOOT_ACPI_ADDR && f->facs + 64 <= BOOT_RSDP_ADDR);
	check_table(gm, f->dsdt, "DSDT", NULL);

	assert_int_equal(le16(t + 46), PC_IRQ_SCI);    /* SCI_INT */
	assert_int_equal(le32(t + 48), 0);             /* SMI_CMD */
	assert_int_equal(t[52], 0);                    /* ACPI_ENABLE */
	assert_int_equal(t[53], 0);                    /* ACPI_DISABLE */
	assert_int_equal(le32(t + 56), PC_ACPI_PM1A_EVT);
	assert_int_equal(le32(t + 60), 0);             /* no PM1b */
	assert_int_equal(le32(t + 64), PC_ACPI_PM1A_CNT);
	assert_int_equal(le32(t + 76), PC_ACPI_PM_TMR);
	assert_int_equal(le32(t + 80), PC_ACPI_GPE0_BLK);
	assert_int_equal(t[88], 4);                    /* PM1_EVT_LEN */
	assert_int_equal(t[89], 2);                    /* PM1_CNT_LEN */
	assert_int_equal(t[91], 4);                    /* PM_TMR_LEN */
	assert_int_equal(t[92], 4);                    /* GPE0_BLK_LEN */
	assert_true(le16(t + 96) > 100);               /* no C2 */
	assert_true(le16(t + 98) > 1000);              /* no C3 */
	assert_int_equal(t[108], 0x32);                /* CENTURY */
	/* IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042, not MSI_NOT_SUPPORTED */
	assert_int_equal(le16(t + 109), 0x0003);
	flags = le32(t + 112);
	assert_true(flags & (1u << 0));                /* WBINVD */
	assert_true(flags & (1u << 2));                /* PROC_C1 */
	assert_false(flags & (1u << 4));               /* fixed power button */
	assert_true(flags & (1u << 5));                /* SLP_BUTTON */
	assert_false(flags & (1u << 8));               /* 24-bit PM timer */
	assert_true(flags & (1u << 10));               /* RESET_REG_SUP */
	assert_false(flags & (1u << 20));              /* not HW_REDUCED */
	/* RESET_REG: System I/O, 8 bits, byte access, 0xCF9; value 6 */
	assert_int_equal(t[116], 1);
	assert_int_equal(t[117], 8);
	assert_int_equal(t[118], 0);
	assert_int_equal(t[119], 1);
	assert_int_equal(le64(t + 120), PC_RESET_PORT);
	assert_int_equal(t[128], 0x06);
	/* X_ blocks (GAS at 148, 172, 208, 220): System I/O, width = LEN * 8 */
	const struct { unsigned off; uint16_t port; uint8_t bits; } x[] = {
		{ 148, PC_ACPI_PM1A_EVT, 32 }, { 172, PC_ACPI_PM1A_CNT, 16 },
		{ 208, PC_ACPI_PM_TMR, 32 },   { 220, PC_ACPI_GPE0_BLK, 32 },
	};
	for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++) {
		assert_int_equal(t[x[i].off], 1);
		assert_int_equal(t[x[i].off + 1], x[i].bits);
		assert_int_equal(le64(t + x[i].off + 4), x[i].port);
	}
	/* no PM1b, PM2, GPE1, no sleep control/status (HW-reduced only) */
	const unsigned empty[] = { 160, 184, 196, 232, 244, 256 };
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
		assert_int_equal(le64(t + empty[i] + 4), 0);
}

static void check_madt(const struct guest_mem *gm, const struct found *f,
		       const struct acpi_config *cfg)
{
	uint32_t len;
	const uint8_t *t = check_table(gm, f->madt, "APIC", &len);
	unsigned nr_lapic = 0, nr_ioapic = 0, nr_nmi = 0;
	bool irq0 = false, irq9 = false;
	uint32_t off;

	assert_int_equal(le32(t + 36), PC_LAPIC_BASE);
	assert_int_equal(le32(t + 40) & 1, 1);         /* PCAT_COMPAT */
	for (off = 44; off < len; off += t[off + 1]) {
		const uint8_t *e = t + off;
		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0: /* Processor Local APIC */
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], nr_lapic);   /* UID */
			assert_int_equal(e[3], nr_lapic);   /* APIC ID */
			assert_int_equal(le32(e + 4) & 1, 1);
			nr_lapic++;
			break;
		case 1: /* I/O APIC */
			assert_int_equal(e[1], 12);
			assert_int_equal(e[2], cfg->ioapic_id);
			assert_int_equal(le32(e + 4), cfg->ioapic_addr);
			assert_int_equal(le32(e + 8), 0);
			nr_ioapic++;
			break;
		case 2: /* Interrupt Source Override */
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);          /* ISA */
			if (e[3] == 0) {
				assert_int_equal(le32(e + 4), 2);
				assert_int_equal(le16(e + 8), 0);
				irq0 = true;
			} else if (e[3] == 9) {
				assert_int_equal(le32(e + 4), 9);
				/* level (bits 3:2 = 11), active-high (1:0 = 01) */
				assert_int_equal(le16(e + 8), 0x000d);
				irq9 = true;
			} else {
				fail_msg("override of IRQ %u", e[3]);
			}
			break;
		case 4: /* Local APIC NMI */
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);       /* all processors */
			assert_int_equal(e[5], 1);          /* LINT1 */
			nr_nmi++;
			break;
		default:
			fail_msg("MADT entry type %u", e[0]);
		}
	}
	assert_int_equal(off, len);
	assert_int_equal(nr_lapic, cfg->nr_cpus);
	assert_int_equal(nr_ioapic, 1);
	assert_int_equal(nr_nmi, 1);
	assert_true(irq0 && irq9);
}

static void check_dsdt(const struct guest_mem *gm, const struct found *f,
		       int nr_cpus)
{
	uint32_t len;
	const uint8_t *t = check_table(gm, f->dsdt, "DSDT", &len);
	const uint8_t *d = t + 36, *crs;
	size_t n = len - 36, crs_len;
	/* Name(_S5_, Package(4){0, 0, 0, 0}): NameOp, NameSeg, PackageOp,
	 * PkgLength 6, NumElements 4, four ZeroOps (PC_ACPI_SLP_TYP_S5 = 0). */
	static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x06,
				      0x04, 0x00, 0x00, 0x00, 0x00 };
	/* Name(_HID, EISAID("PNP0501")): DWordPrefix 41 D0 05 01 */
	static const uint8_t com1_hid[] = { 0x08, '_', 'H', 'I', 'D', 0x0c,
					    0x41, 0xd0, 0x05, 0x01 };
	/* IO(Decode16, 0x3F8, 0x3F8, 1, 8), IRQNoFlags(){4} */
	static const uint8_t com1_res[] = { 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03,
					    0x01, 0x08, 0x22, 0x10, 0x00 };
	static const uint8_t kbd_res[] = { 0x47, 0x01, 0x60, 0x00, 0x60, 0x00,
					   0x01, 0x01, 0x47, 0x01, 0x64, 0x00,
					   0x64, 0x00, 0x01, 0x01, 0x22, 0x02,
					   0x00 };
	static const uint8_t rtc_res[] = { 0x47, 0x01, 0x70, 0x00, 0x70, 0x00,
					   0x01, 0x02, 0x22, 0x00, 0x01 };
	static const uint8_t fwcf_res[] = { 0x47, 0x01, 0x10, 0x05, 0x10, 0x05,
					    0x01, 0x0c };
	static const uint8_t mbrs_res[] = { 0x47, 0x01, 0x00, 0x06, 0x00, 0x06,
					    0x01, 0x24, 0x47, 0x01, 0xf4, 0x00,
					    0xf4, 0x00, 0x01, 0x01 };
	size_t blen;
	const uint8_t *body;

	assert_int_equal(t[8], 2); /* revision 2: 64-bit integers */
	assert_int_equal(PC_ACPI_SLP_TYP_S5, 0);
	assert_non_null(find_bytes(d, n, s5, sizeof(s5)));

	body = find_device(d, n, "COM1", &blen);
	assert_non_null(find_bytes(body, blen, com1_hid, sizeof(com1_hid)));
	assert_non_null(find_bytes(body, blen, "\x08_UID\x01", 6));
	assert_non_null(find_bytes(body, blen, "\x08_STA\x0a\x0f", 7));
	crs = device_crs(d, n, "COM1", &crs_len);
	assert_int_equal(crs_len, sizeof(com1_res));
	assert_memory_equal(crs, com1_res, sizeof(com1_res));

	crs = device_crs(d, n, "KBD_", &crs_len);
	assert_int_equal(crs_len, sizeof(kbd_res));
	assert_memory_equal(crs, kbd_res, sizeof(kbd_res));
	crs = device_crs(d, n, "RTC_", &crs_len);
	assert_int_equal(crs_len, sizeof(rtc_res));
	assert_memory_equal(crs, rtc_res, sizeof(rtc_res));
	crs = device_crs(d, n, "MOU_", &crs_len);  /* IRQNoFlags(){12} */
	assert_int_equal(crs_len, 3);
	assert_memory_equal(crs, "\x22\x00\x10", 3);
	crs = device_crs(d, n, "TMR_", &crs_len);  /* IO 0x40/4, IRQ 0 */
	assert_int_equal(crs_len, 11);
	assert_memory_equal(crs, "\x47\x01\x40\x00\x40\x00\x01\x04\x22\x01\x00", 11);
	crs = device_crs(d, n, "FWCF", &crs_len);
	assert_int_equal(crs_len, sizeof(fwcf_res));
	assert_memory_equal(crs, fwcf_res, sizeof(fwcf_res));
	body = find_device(d, n, "FWCF", &blen);
	assert_non_null(find_bytes(body, blen, "\x08_HID\x0dQEMU0002", 15));
	crs = device_crs(d, n, "MBRS", &crs_len);
	assert_int_equal(crs_len, sizeof(mbrs_res));
	assert_memory_equal(crs, mbrs_res, sizeof(mbrs_res));
	body = find_device(d, n, "MBRS", &blen);
	/* EISAID("PNP0C02") = 41 D0 0C 02 */
	assert_non_null(find_bytes(body, blen, "\x08_HID\x0c\x41\xd0\x0c\x02", 10));

	/* One processor device per vCPU, _UID = index. */
	assert_int_equal(count_bytes(d, n, "\x0d" "ACPI0007", 9), nr_cpus);
	for (int i = 0; i < nr_cpus; i++) {
		char seg[16], uid[8];
		size_t ul;
		snprintf(seg, sizeof(seg), "C%03X", (unsigned)i);
		body = find_device(d, n, seg, &blen);
		memcpy(uid, "\x08_UID", 5);
		if (i <= 1) {
			uid[5] = (char)i;  /* ZeroOp / OneOp */
			ul = 6;
		} else {
			uid[5] = 0x0a;     /* BytePrefix */
			uid[6] = (char)i;
			ul = 7;
		}
		assert_non_null(find_bytes(body, blen, uid, ul));
	}
}

static void check_all(int nr_cpus)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	struct found f;
	const uint8_t *scan = NULL;

	assert_int_equal(gm_init(&gm, RAM), 0);
	acpi_config_pc(&cfg, nr_cpus);
	assert_int_equal(build(&gm, &cfg, &f), 0);

	/* RSDP: 16-byte aligned in the BIOS area; the legacy scan of
	 * 0xE0000-0xFFFFF on 16-byte boundaries finds it, and nothing else. */
	assert_int_equal(f.rsdp % 16, 0);
	assert_true(f.rsdp >= 0xf0000 && f.rsdp + 36 <= 0x100000);
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16) {
		const uint8_t *p = gp(&gm, a, 16);
		if (!memcmp(p, "RSD PTR ", 8) && sum8(p, 20) == 0) {
			assert_null(scan);
			scan = p;
			assert_int_equal(a, f.rsdp);
		}
	}
	assert_non_null(scan);
	assert_memory_equal(scan + 9, "KVMM  ", 6);
	assert_int_equal(le32(scan + 16), f.rsdt);

	assert_int_equal(f.nr_xsdt, 2); /* FADT, MADT; no MCFG asked for */
	assert_int_equal(f.mcfg, 0);
	check_fadt(&gm, &f);
	check_madt(&gm, &f, &cfg);
	check_dsdt(&gm, &f, nr_cpus);
	gm_destroy(&gm);
}

static void test_tables_1_cpu(void **state) { check_all(1); }
static void test_tables_2_cpus(void **state) { check_all(2); }
static void test_tables_4_cpus(void **state) { check_all(4); }
static void test_tables_255_cpus(void **state) { check_all(255); }

/* The machine the board builds: tables land in the harness's RAM. */
static void test_tables_in_harness_machine(void **state)
{
	struct harness *h = harness_new(RAM);
	struct acpi_config cfg;
	struct found f;

	acpi_config_pc(&cfg, h->vm.nr_cpus);
	assert_int_equal(build(&h->vm.mem, &cfg, &f), 0);
	check_madt(&h->vm.mem, &f, &cfg);
	harness_free(h);
}

static void test_bad_config_rejected(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	uint64_t rsdp = 0x1234;

	assert_int_equal(gm_init(&gm, RAM), 0);
	acpi_config_pc(&cfg, 0);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EINVAL);
	acpi_config_pc(&cfg, 256);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EINVAL);
	acpi_config_pc(&cfg, 1);
	cfg.ioapic_gsi_base = 24;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EINVAL);
	acpi_config_pc(&cfg, 1);
	struct acpi_mcfg_alloc bad = { 0xb0000000, 0, 10, 9 };
	cfg.mcfg = &bad;
	cfg.nr_mcfg = 1;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EINVAL);
	assert_int_equal(rsdp, 0x1234);
	/* nothing was written */
	assert_int_equal(*gp(&gm, BOOT_RSDP_ADDR, 1), 0);
	assert_int_equal(*gp(&gm, BOOT_ACPI_ADDR, 1), 0);
	gm_destroy(&gm);
}

static void test_ram_too_small(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	uint64_t rsdp;

	acpi_config_pc(&cfg, 1);
	assert_int_equal(gm_init(&gm, 512 << 10), 0);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EFAULT);
	gm_destroy(&gm);
	/* RAM ending just after 0xF0000: the RSDP does not fit. */
	assert_int_equal(gm_init(&gm, 0xf0000), 0);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EFAULT);
	gm_destroy(&gm);
	/* One more page is enough. */
	assert_int_equal(gm_init(&gm, 0xf1000), 0);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), 0);
	gm_destroy(&gm);
}

static int big_extra(struct aml_buf *b, void *opaque)
{
	size_t n = *(size_t *)opaque;
	uint8_t *junk = calloc(1, n);
	assert_non_null(junk);
	aml_name(b, "JUNK");
	aml_buffer(b);
	aml_bytes(b, junk, n);
	aml_end(b);
	free(junk);
	return 0;
}

static void test_overflow_is_enospc(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	struct found f;
	size_t n = 70000;
	uint64_t rsdp = 0;

	assert_int_equal(gm_init(&gm, RAM), 0);
	memset(gm_ptr(&gm, BOOT_ACPI_ADDR, 0x10000 + 36), 0xaa, 0x10000 + 36);
	acpi_config_pc(&cfg, 255);
	cfg.dsdt_extra = big_extra;
	cfg.dsdt_extra_opaque = &n;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -ENOSPC);
	/* Guest RAM untouched on failure. */
	assert_int_equal(*gp(&gm, BOOT_ACPI_ADDR, 1), 0xaa);
	assert_int_equal(*gp(&gm, BOOT_RSDP_ADDR, 1), 0xaa);
	/* A big DSDT that still fits is fine. */
	n = 40000;
	assert_int_equal(build(&gm, &cfg, &f), 0);
	gm_destroy(&gm);
}

static int failing_extra(struct aml_buf *b, void *opaque) { return -EIO; }
static int unclosed_extra(struct aml_buf *b, void *opaque)
{
	aml_scope(b, "\\_SB");
	return 0;
}

/* A PCI host bridge as the PCI engineer will add it. */
static int pci_extra(struct aml_buf *b, void *opaque)
{
	aml_scope(b, "\\_SB");
	aml_device(b, "PCI0");
	aml_name_eisaid(b, "_HID", "PNP0A08");
	aml_name_eisaid(b, "_CID", "PNP0A03");
	aml_name_int(b, "_SEG", 0);
	aml_name_int(b, "_BBN", 0);
	aml_name(b, "_CRS");
	aml_restemplate(b);
	aml_res_word_bus_number(b, 0, 0xff);
	aml_res_io(b, 0xcf8, 0xcf8, 1, 8);
	aml_res_dword_io(b, 0, 0xcf7);
	aml_res_dword_io(b, 0xd00, 0xffff);
	aml_res_dword_memory(b, AML_MEM_NON_CACHEABLE, 0xc0000000, 0xfebfffff);
	aml_res_qword_memory(b, AML_MEM_PREFETCHABLE, 0x8000000000ull,
			     0xffffffffffull);
	aml_end(b);
	aml_name(b, "_PRT");
	aml_package(b, 4);
	for (unsigned pin = 0; pin < 4; pin++) {
		aml_package(b, 4);
		aml_int(b, 0x1ffff);
		aml_int(b, pin);
		aml_int(b, 0);
		aml_int(b, 16 + pin);
		aml_end(b);
	}
	aml_end(b);
	aml_method(b, "_STA", 0, false);
	aml_return(b);
	aml_int(b, 0x0f);
	aml_end(b);
	aml_end(b);
	aml_end(b);
	return 0;
}

static void test_dsdt_extra_and_mcfg(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	struct found f;
	uint32_t len;
	const uint8_t *t;
	const struct acpi_mcfg_alloc mc[2] = {
		{ 0xb0000000, 0, 0, 255 }, { 0xe0000000, 1, 16, 31 },
	};
	uint64_t rsdp;

	assert_int_equal(gm_init(&gm, RAM), 0);
	acpi_config_pc(&cfg, 4);
	cfg.dsdt_extra = pci_extra;
	cfg.mcfg = mc;
	cfg.nr_mcfg = 2;
	assert_int_equal(build(&gm, &cfg, &f), 0);
	assert_int_equal(f.nr_xsdt, 3);
	t = check_table(&gm, f.mcfg, "MCFG", &len);
	assert_int_equal(len, 44 + 2 * 16);
	assert_int_equal(le64(t + 44), 0xb0000000);
	assert_int_equal(le16(t + 52), 0);
	assert_int_equal(t[54], 0);
	assert_int_equal(t[55], 255);
	assert_int_equal(le64(t + 60), 0xe0000000);
	assert_int_equal(le16(t + 68), 1);
	assert_int_equal(t[70], 16);
	assert_int_equal(t[71], 31);

	t = check_table(&gm, f.dsdt, "DSDT", &len);
	/* Device(PCI0) is there, its _HID is EISAID("PNP0A08"), _CRS valid. */
	size_t crs_len;
	const uint8_t *crs = device_crs(t + 36, len - 36, "PCI0", &crs_len);
	/* WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode,
	 * 0, 0, 0xFF, 0, 0x100) */
	static const uint8_t bus[] = { 0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00,
				       0, 0, 0, 0, 0xff, 0, 0, 0, 0x00, 0x01 };
	assert_memory_equal(crs, bus, sizeof(bus));
	assert_int_equal(crs_len, 16 + 8 + 2 * 26 + 26 + 46);
	check_dsdt(&gm, &f, 4); /* the board's part is unchanged */

	cfg.dsdt_extra = failing_extra;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EIO);
	cfg.dsdt_extra = unclosed_extra;
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EINVAL);
	gm_destroy(&gm);
}

/* Building again (after a reset, with a smaller machine) leaves nothing of
 * the old tables behind. */
static void test_rebuild_clears_old_tables(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	struct found f;
	const uint8_t *area;

	assert_int_equal(gm_init(&gm, RAM), 0);
	acpi_config_pc(&cfg, 255);
	assert_int_equal(build(&gm, &cfg, &f), 0);
	area = gp(&gm, BOOT_ACPI_ADDR, 0x10000);
	assert_int_equal(count_bytes(area, 0x10000, "C0FE", 4), 1);
	acpi_config_pc(&cfg, 1);
	assert_int_equal(build(&gm, &cfg, &f), 0);
	assert_int_equal(count_bytes(area, 0x10000, "C0FE", 4), 0);
	assert_int_equal(count_bytes(area, 0x10000, "C001", 4), 0);
	check_madt(&gm, &f, &cfg);
	gm_destroy(&gm);
}

/* ---- the AML encoder ---- */

static void expect_bytes(struct aml_buf *b, const void *want, size_t n)
{
	assert_int_equal(aml_buf_finish(b), 0);
	assert_int_equal(b->len, n);
	assert_memory_equal(b->data, want, n);
}

static void test_aml_pkglen_encoding(void **state)
{
	static const struct {
		uint32_t v;
		int n;
		uint8_t bytes[4];
	} cases[] = {
		{ 0, 1, { 0x00 } },
		{ 63, 1, { 0x3f } },
		{ 64, 2, { 0x40, 0x04 } },
		{ 4095, 2, { 0x4f, 0xff } },
		{ 4096, 3, { 0x80, 0x00, 0x01 } },
		{ 0xfffff, 3, { 0x8f, 0xff, 0xff } },
		{ 0x100000, 4, { 0xc0, 0x00, 0x00, 0x01 } },
		{ 0xfffffff, 4, { 0xcf, 0xff, 0xff, 0xff } },
		{ 0x12345, 3, { 0x85, 0x34, 0x12 } },
	};
	uint8_t out[4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 0xee, sizeof(out));
		assert_int_equal(aml_pkglen_encode(cases[i].v, out), cases[i].n);
		assert_memory_equal(out, cases[i].bytes, (size_t)cases[i].n);
	}
	assert_int_equal(aml_pkglen_encode(0x10000000, out), -E2BIG);
}

/* A Package whose body (NumElements + filler) is `body` bytes: the PkgLength
 * takes `want_k` bytes and counts itself. */
static void check_package_body(size_t body, unsigned want_k)
{
	struct aml_buf b;
	uint8_t *fill = calloc(1, body);
	uint32_t v;
	unsigned k;

	assert_non_null(fill);
	aml_buf_init(&b);
	aml_package(&b, 0);
	aml_bytes(&b, fill, body - 1);
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), 0);
	assert_int_equal(b.data[0], 0x12);
	k = pkglen_decode(b.data + 1, &v);
	assert_int_equal(k, want_k);
	assert_int_equal(v, body + k);
	assert_int_equal(b.len, 1 + v);
	assert_int_equal(b.data[1 + k], 0); /* NumElements */
	aml_buf_free(&b);
	free(fill);
}

static void test_aml_pkglen_boundaries(void **state)
{
	check_package_body(62, 1);    /* 63 */
	check_package_body(63, 2);    /* 64 does not fit 1 byte: 65 */
	check_package_body(64, 2);
	check_package_body(4093, 2);  /* 4095 */
	check_package_body(4094, 3);  /* 4096 does not fit 2 bytes: 4097 */
	check_package_body(4095, 3);
	check_package_body(0xfffff - 3, 3);
	check_package_body(0xfffff - 2, 4);
}

static void test_aml_integers(void **state)
{
	static const struct {
		uint64_t v;
		size_t n;
		uint8_t bytes[9];
	} cases[] = {
		{ 0, 1, { 0x00 } },
		{ 1, 1, { 0x01 } },
		{ 2, 2, { 0x0a, 0x02 } },
		{ 0xff, 2, { 0x0a, 0xff } },
		{ 0x100, 3, { 0x0b, 0x00, 0x01 } },
		{ 0xffff, 3, { 0x0b, 0xff, 0xff } },
		{ 0x10000, 5, { 0x0c, 0x00, 0x00, 0x01, 0x00 } },
		{ 0xffffffff, 5, { 0x0c, 0xff, 0xff, 0xff, 0xff } },
		{ 0x100000000ull, 9, { 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 } },
		{ UINT64_MAX, 9, { 0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				   0xff, 0xff } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aml_buf b;
		aml_buf_init(&b);
		aml_int(&b, cases[i].v);
		expect_bytes(&b, cases[i].bytes, cases[i].n);
		aml_buf_free(&b);
	}
}

static void test_aml_names(void **state)
{
	static const struct {
		const char *path;
		const char *bytes;
		size_t n;
	} ok[] = {
		{ "_SB", "_SB_", 4 },
		{ "COM1", "COM1", 4 },
		{ "A", "A___", 4 },
		{ "\\_SB", "\\_SB_", 5 },
		{ "\\", "\\\0", 2 },
		{ "^^FOO", "^^FOO_", 6 },
		{ "\\_SB.PCI0", "\\\x2e_SB_PCI0", 10 },
		{ "_SB.PCI0.ISA", "\x2f\x03_SB_PCI0ISA_", 14 },
	};
	static const char *bad[] = {
		"", "1ABC", "ABCDE", "abc", "A..B", "A.", ".A", "A-B", "^\\A",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct aml_buf b;
		aml_buf_init(&b);
		aml_namestring(&b, ok[i].path);
		expect_bytes(&b, ok[i].bytes, ok[i].n);
		aml_buf_free(&b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct aml_buf b;
		aml_buf_init(&b);
		aml_namestring(&b, bad[i]);
		assert_int_equal(aml_buf_finish(&b), -EINVAL);
		aml_buf_free(&b);
	}
}

static void test_aml_eisaid_and_strings(void **state)
{
	struct aml_buf b;
	uint32_t v;

	assert_int_equal(aml_eisaid_value("PNP0501", &v), 0);
	assert_int_equal(v, 0x0105d041);
	assert_int_equal(aml_eisaid_value("PNP0A08", &v), 0);
	assert_int_equal(v, 0x080ad041);
	assert_int_equal(aml_eisaid_value("PNP0000", &v), 0);
	assert_int_equal(v, 0x0000d041);
	assert_int_equal(aml_eisaid_value("pnp0501", &v), -EINVAL);
	assert_int_equal(aml_eisaid_value("PNP050", &v), -EINVAL);
	assert_int_equal(aml_eisaid_value("PNP050G", &v), -EINVAL);
	assert_int_equal(aml_eisaid_value("PNP05011", &v), -EINVAL);

	aml_buf_init(&b);
	aml_eisaid(&b, "PNP0000"); /* always a DWord, like ASL's EISAID() */
	expect_bytes(&b, "\x0c\x41\xd0\x00\x00", 5);
	aml_buf_free(&b);

	aml_buf_init(&b);
	aml_name_str(&b, "_HID", "ACPI0007");
	expect_bytes(&b, "\x08_HID\x0d" "ACPI0007\0", 15);
	aml_buf_free(&b);

	aml_buf_init(&b);
	aml_string(&b, "caf\xc3\xa9"); /* not ASCII */
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	aml_buf_free(&b);
}

static void test_aml_method_device_scope(void **state)
{
	struct aml_buf b;

	/* Method(_STA, 0, NotSerialized) { Return (0x0F) } */
	aml_buf_init(&b);
	aml_method(&b, "_STA", 0, false);
	aml_return(&b);
	aml_int(&b, 0x0f);
	aml_end(&b);
	expect_bytes(&b, "\x14\x09_STA\x00\xa4\x0a\x0f", 10);
	aml_buf_free(&b);

	/* Method(M, 2, Serialized) { Return (Arg1) } */
	aml_buf_init(&b);
	aml_method(&b, "M", 2, true);
	aml_return(&b);
	aml_arg(&b, 1);
	aml_local(&b, 7);
	aml_end(&b);
	expect_bytes(&b, "\x14\x09M___\x0a\xa4\x69\x67", 10);
	aml_buf_free(&b);

	/* Scope(\_SB) { Device(DEV) { Name(_UID, 1) } } */
	aml_buf_init(&b);
	aml_scope(&b, "\\_SB");
	aml_device(&b, "DEV");
	aml_name_int(&b, "_UID", 1);
	aml_end(&b);
	aml_end(&b);
	expect_bytes(&b,
		     "\x10\x13\\_SB_"
		     "\x5b\x82\x0b" "DEV_" "\x08_UID\x01", 20);
	aml_buf_free(&b);

	/* Buffer() { 100 bytes }: PkgLength (2 bytes) + BufferSize 0x64 */
	uint8_t hundred[100];
	memset(hundred, 0x5a, sizeof(hundred));
	aml_buf_init(&b);
	aml_buffer(&b);
	aml_bytes(&b, hundred, sizeof(hundred));
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), 0);
	uint32_t v;
	assert_int_equal(b.data[0], 0x11);
	assert_int_equal(pkglen_decode(b.data + 1, &v), 2);
	assert_int_equal(v, 2 + 2 + 100);
	assert_memory_equal(b.data + 3, "\x0a\x64", 2);
	assert_memory_equal(b.data + 5, hundred, 100);
	assert_int_equal(b.len, 105);
	aml_buf_free(&b);
}

static void test_aml_resource_template(void **state)
{
	struct aml_buf b;
	/* ResourceTemplate() { IO(Decode16, 0x3F8, 0x3F8, 1, 8)
	 * IRQNoFlags(){4} }: Buffer, PkgLength 16, BufferSize 13, the two
	 * descriptors, End Tag with its checksum. */
	uint8_t want[17] = { 0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03,
			     0xf8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79 };
	want[16] = (uint8_t)-sum8(want + 4, 12);

	aml_buf_init(&b);
	aml_restemplate(&b);
	aml_res_io(&b, 0x3f8, 0x3f8, 1, 8);
	aml_res_irq_noflags(&b, 4);
	aml_end(&b);
	expect_bytes(&b, want, sizeof(want));
	assert_int_equal(sum8(b.data + 4, 13), 0);
	aml_buf_free(&b);

	/* Large descriptors, byte for byte (§6.4.3). */
	const uint32_t gsi[2] = { 16, 0x12345678 };
	aml_buf_init(&b);
	aml_restemplate(&b);
	aml_res_memory32_fixed(&b, 0xfec00000, 0x1000, true);
	aml_res_interrupt(&b, AML_INT_CONSUMER | AML_INT_ACTIVE_LOW |
			      AML_INT_SHARED, gsi, 2);
	aml_res_dword_memory(&b, AML_MEM_CACHEABLE, 0xc0000000, 0xfebfffff);
	aml_res_qword_memory(&b, AML_MEM_PREFETCHABLE, 0x100000000ull,
			     0x1ffffffffull);
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), 0);
	const uint8_t *d = b.data + 5; /* BufferOp, 2-byte PkgLength, 0A nn */
	assert_int_equal(b.data[3], 0x0a);
	assert_int_equal(b.data[4], 12 + 13 + 26 + 46 + 2);
	assert_memory_equal(d, "\x86\x09\x00\x01\x00\x00\xc0\xfe\x00\x10\x00\x00", 12);
	d += 12;
	assert_memory_equal(d, "\x89\x0a\x00\x0d\x02\x10\x00\x00\x00\x78\x56\x34\x12", 13);
	d += 13;
	/* DWordMemory: type 0, flags MinFixed|MaxFixed, Cacheable|ReadWrite */
	assert_memory_equal(d, "\x87\x17\x00\x00\x0c\x03", 6);
	assert_int_equal(le32(d + 6), 0);             /* _GRA */
	assert_int_equal(le32(d + 10), 0xc0000000);   /* _MIN */
	assert_int_equal(le32(d + 14), 0xfebfffff);   /* _MAX */
	assert_int_equal(le32(d + 18), 0);            /* _TRA */
	assert_int_equal(le32(d + 22), 0x3ec00000);   /* _LEN */
	d += 26;
	assert_memory_equal(d, "\x8a\x2b\x00\x00\x0c\x07", 6);
	assert_int_equal(le64(d + 14), 0x100000000ull);
	assert_int_equal(le64(d + 22), 0x1ffffffffull);
	assert_int_equal(le64(d + 38), 0x100000000ull);
	d += 46;
	assert_int_equal(d[0], 0x79);
	assert_int_equal(sum8(b.data + 5, b.data[4]), 0);
	aml_buf_free(&b);

	/* DWordIO window */
	aml_buf_init(&b);
	aml_restemplate(&b);
	aml_res_dword_io(&b, 0xd00, 0xffff);
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), 0);
	assert_memory_equal(b.data + 4, "\x87\x17\x00\x01\x0c\x03", 6);
	assert_int_equal(le32(b.data + 4 + 26 - 4), 0xf300);
	aml_buf_free(&b);
}

static void test_aml_errors_are_sticky(void **state)
{
	struct aml_buf b;
	size_t len;

	/* A descriptor outside a ResourceTemplate. */
	aml_buf_init(&b);
	aml_res_io(&b, 0x60, 0x60, 1, 1);
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	len = b.len;
	aml_int(&b, 5); /* ignored after the error */
	assert_int_equal(b.len, len);
	aml_buf_free(&b);

	/* ...nor directly inside a Package in a template. */
	aml_buf_init(&b);
	aml_restemplate(&b);
	aml_package(&b, 1);
	aml_res_irq_noflags(&b, 1);
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	aml_buf_free(&b);

	/* aml_end() with nothing open; a construct left open. */
	aml_buf_init(&b);
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	aml_buf_free(&b);
	aml_buf_init(&b);
	aml_device(&b, "DEV");
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	aml_end(&b);
	assert_int_equal(aml_buf_finish(&b), 0);
	aml_buf_free(&b);

	/* Values that do not fit. */
	for (int what = 0; what < 7; what++) {
		struct aml_addr_space a = { .type = AML_ADDR_BUS_NUMBER,
					    .max = 0x10000 };
		aml_buf_init(&b);
		aml_restemplate(&b);
		switch (what) {
		case 0: aml_res_irq_noflags(&b, 16); break;
		case 1: aml_res_word(&b, &a); break;
		case 2: aml_res_word_bus_number(&b, 5, 4); break;
		case 3: aml_res_io(&b, 0x100, 0xff, 1, 1); break;
		case 4: aml_res_interrupt(&b, 0, NULL, 0); break;
		case 5: aml_package(&b, 256); break;
		case 6: aml_method(&b, "M", 8, false); break;
		}
		assert_int_equal(aml_buf_finish(&b), -EINVAL);
		aml_buf_free(&b);
	}

	/* Nesting deeper than AML_MAX_DEPTH. */
	aml_buf_init(&b);
	for (int i = 0; i <= AML_MAX_DEPTH; i++)
		aml_scope(&b, "S");
	assert_int_equal(aml_buf_finish(&b), -EINVAL);
	aml_buf_free(&b);
}

/* ---- virtio-mmio devices (virtio/mmio.h) in the DSDT ---- */

static void nop_notify(struct virtio_dev *vd, unsigned q)
{
	(void)vd;
	(void)q;
}

static const struct virtio_dev_ops nop_virtio_ops = {
	.name = "virtio-nop",
	.device_id = VIRTIO_ID_RNG,
	.queue_notify = nop_notify,
};

/* Two transports (index 0: GSI 16, index 9: GSI 17) as LNRO0005 devices
 * with the resources Linux's virtio_mmio driver takes (a memory window and
 * one interrupt); checked byte for byte and, when installed, by iasl. */
static void test_virtio_mmio_dsdt(void **state)
{
	struct harness *h = harness_new(RAM);
	static struct virtio_dev vd[2];
	struct virtio_mmio *t[2];
	const unsigned idx[2] = { 0, 9 };
	struct virtio_mmio_list list = { t, 2 };
	struct acpi_config cfg;
	struct found f;
	uint32_t len;
	const uint8_t *d;
	char dir[] = "/tmp/kvmm-acpi-XXXXXX", cmd[1024], path[300];
	FILE *fp;

	for (int i = 0; i < 2; i++) {
		assert_int_equal(virtio_dev_init(&vd[i], &h->vm, &h->loop,
						 &nop_virtio_ops, NULL, 1, 8, 0, 0), 0);
		assert_int_equal(virtio_mmio_create(&h->vm, &vd[i], idx[i], &t[i]), 0);
	}
	acpi_config_pc(&cfg, 1);
	cfg.dsdt_extra = virtio_mmio_dsdt;
	cfg.dsdt_extra_opaque = &list;
	assert_int_equal(build(&h->vm.mem, &cfg, &f), 0);
	d = check_table(&h->vm.mem, f.dsdt, "DSDT", &len);

	for (int i = 0; i < 2; i++) {
		char seg[8];
		size_t crs_len, blen;
		uint32_t base = VIRTIO_MMIO_BASE + idx[i] * VIRTIO_MMIO_SIZE;
		const uint8_t res[] = {
			/* Memory32Fixed(ReadWrite, base, 0x200) */
			0x86, 0x09, 0x00, 0x01, (uint8_t)base, (uint8_t)(base >> 8),
			(uint8_t)(base >> 16), (uint8_t)(base >> 24), 0x00, 0x02, 0, 0,
			/* Interrupt(ResourceConsumer, Level, ActiveLow, Shared) {gsi} */
			0x89, 0x06, 0x00, 0x0d, 0x01, (uint8_t)(16 + idx[i] % 8), 0, 0, 0,
		};
		snprintf(seg, sizeof(seg), "VR%02u", idx[i]);
		const uint8_t *crs = device_crs(d + 36, len - 36, seg, &crs_len);
		assert_int_equal(crs_len, sizeof(res));
		assert_memory_equal(crs, res, sizeof(res));
		const uint8_t *body = find_device(d + 36, len - 36, seg, &blen);
		assert_non_null(find_bytes(body, blen, "\x08_HID\x0dLNRO0005", 15));
		assert_int_equal(virtio_mmio_base(t[i]), base);
		assert_int_equal(virtio_mmio_gsi(t[i]), 16 + idx[i] % 8);
	}
	/* No transports: nothing added. */
	struct virtio_mmio_list none = { NULL, 0 };
	struct aml_buf b;
	aml_buf_init(&b);
	assert_int_equal(virtio_mmio_dsdt(&b, &none), 0);
	assert_int_equal(b.len, 0);
	aml_buf_free(&b);

	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		print_message("iasl not installed (apt-get install acpica-tools): iasl part skipped\n");
		harness_free(h);
		return;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/dsdt.dat", dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(d, 1, len, fp), len);
	fclose(fp);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && iasl -d dsdt.dat >iasl.log 2>&1 && iasl dsdt.dsl >>iasl.log 2>&1", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'Device (VR00)' %s/dsdt.dsl && grep -q 'Device (VR09)' %s/dsdt.dsl && "
		 "test $(grep -c 'Name (_HID, \"LNRO0005\")' %s/dsdt.dsl) = 2 && "
		 "grep -q 'Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, )' %s/dsdt.dsl && "
		 "grep -q '0xFEB01200' %s/dsdt.dsl",
		 dir, dir, dir, dir, dir);
	if (system(cmd) != 0)
		print_message("unexpected disassembly: see %s/dsdt.dsl\n", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	harness_free(h);
}

/* ---- iasl, when installed ---- */

static void test_iasl_disassembles_dsdt(void **state)
{
	struct guest_mem gm;
	struct acpi_config cfg;
	struct found f;
	char dir[] = "/tmp/kvmm-acpi-XXXXXX", cmd[512], path[300];
	uint32_t len;
	const uint8_t *t;
	FILE *fp;
	int r;

	if (system("command -v iasl >/dev/null 2>&1") != 0) {
		print_message("iasl not installed (apt-get install acpica-tools): skipped\n");
		skip();
	}
	assert_int_equal(gm_init(&gm, RAM), 0);
	acpi_config_pc(&cfg, 4);
	cfg.dsdt_extra = pci_extra;
	assert_int_equal(build(&gm, &cfg, &f), 0);
	assert_non_null(mkdtemp(dir));

	const struct { uint64_t gpa; const char *file; } tabs[] = {
		{ f.dsdt, "dsdt.dat" }, { f.fadt, "facp.dat" },
		{ f.madt, "apic.dat" }, { f.xsdt, "xsdt.dat" },
	};
	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
		t = gp(&gm, tabs[i].gpa, 36);
		len = le32(t + 4);
		snprintf(path, sizeof(path), "%s/%s", dir, tabs[i].file);
		fp = fopen(path, "wb");
		assert_non_null(fp);
		assert_int_equal(fwrite(gp(&gm, tabs[i].gpa, len), 1, len, fp), len);
		fclose(fp);
		snprintf(cmd, sizeof(cmd), "cd %s && iasl -d %s >iasl.log 2>&1",
			 dir, tabs[i].file);
		r = system(cmd);
		if (r)
			print_message("iasl -d %s failed; see %s/iasl.log\n",
				      tabs[i].file, dir);
		assert_int_equal(r, 0);
	}
	/* The disassembly compiles back without errors. */
	snprintf(cmd, sizeof(cmd), "cd %s && iasl dsdt.dsl >iasl.log 2>&1", dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'EisaId (\"PNP0501\")' %s/dsdt.dsl && "
		 "grep -q 'Name (_S5, Package (0x04)' %s/dsdt.dsl && "
		 "grep -q 'Device (PCI0)' %s/dsdt.dsl", dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	gm_destroy(&gm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tables_1_cpu),
		cmocka_unit_test(test_tables_2_cpus),
		cmocka_unit_test(test_tables_4_cpus),
		cmocka_unit_test(test_tables_255_cpus),
		cmocka_unit_test(test_tables_in_harness_machine),
		cmocka_unit_test(test_bad_config_rejected),
		cmocka_unit_test(test_ram_too_small),
		cmocka_unit_test(test_overflow_is_enospc),
		cmocka_unit_test(test_dsdt_extra_and_mcfg),
		cmocka_unit_test(test_rebuild_clears_old_tables),
		cmocka_unit_test(test_aml_pkglen_encoding),
		cmocka_unit_test(test_aml_pkglen_boundaries),
		cmocka_unit_test(test_aml_integers),
		cmocka_unit_test(test_aml_names),
		cmocka_unit_test(test_aml_eisaid_and_strings),
		cmocka_unit_test(test_aml_method_device_scope),
		cmocka_unit_test(test_aml_resource_template),
		cmocka_unit_test(test_aml_errors_are_sticky),
		cmocka_unit_test(test_iasl_disassembles_dsdt),
		cmocka_unit_test(test_virtio_mmio_dsdt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
