/*
 * acpi.c - the board's ACPI tables; acpi.h says where they go and what they
 * promise the guest's devices.
 *
 * Why a full (not hardware-reduced) FADT.  A hardware-reduced platform
 * (FADT flag HW_REDUCED_ACPI, as Firecracker and QEMU's microvm use) has no
 * PM1 registers, no PM timer and no SCI from fixed hardware: power-off goes
 * through the Sleep Control Register, the power button is a GPIO or a
 * generic event device.  Our board is a PC: it has an 8259 pair, an 8254, an
 * i8042, a CMOS RTC and an acpi_pm device with PM1a event/control blocks, a PM
 * timer and GPE0, like QEMU's PIIX4/ICH9 machines.  Describing exactly that is
 * what makes every guest work the old, well-trodden way: Linux powers off
 * through PM1a_CNT.SLP_TYP/SLP_EN with the value in \_S5, gets a fixed power
 * button event from PM1_STS.PWRBTN_STS, may use the PM timer as a clock
 * source, and resets through the FADT's RESET_REG (0xCF9, value 6).
 *
 * ACPI mode.  SMI_CMD is 0 (ACPI 6.5 §5.2.9: "reserved and must be zero on
 * a system that does not support System Management mode"), so OSPM never
 * writes ACPI_ENABLE to an SMI port: the platform has no legacy mode and is
 * always in ACPI mode, which the PM1 control register shows by SCI_EN reading
 * 1 (§4.8.3.2.1).  That is the acpi_pm device's job.  (Linux's ACPICA does
 * not even read SCI_EN when SMI_CMD is 0; other OSes and boot loaders do.)
 *
 * Layout.  All tables are built in one host buffer that mirrors the guest's
 * 0xE0000-0xEFFFF area, then copied in one go; the RSDP goes to 0xF0000 on
 * its own.  Order: FACS first (it must be 64-byte aligned, §5.2.10, and the
 * area start is), then DSDT, FADT, MADT, MCFG, XSDT, RSDT, each 16-byte
 * aligned, so every pointer is known when the table holding it is written and
 * every checksum is computed once, last.  The RSDP is revision 2 and points at
 * both the XSDT (which ACPI 2.0+ OSes use) and an RSDT with the same entries
 * (for ACPI 1.0 OSes and boot loaders that only read RsdtAddress); all tables
 * sit below 4 GiB, so both can hold the same addresses.  The FADT's 32-bit
 * fields (FIRMWARE_CTRL, DSDT, *_BLK) and their 64-bit X_ twins carry equal
 * values, which is what ACPICA checks for.
 *
 * Tables are packed C structs with static_asserts on sizes and on the FADT's
 * field offsets (ACPI 6.5 §5.2.9), written with memcpy (the area has no
 * alignment promises) on a little-endian host, as ACPI is.
 *
 * The DSDT's AML comes from aml.c.  It describes the legacy devices by their
 * PNP IDs - COM1, the RTC, the i8042 keyboard and mouse ports, the PIT - so
 * Linux's PNP layer binds its drivers to them with the right I/O ports and
 * IRQs (and Linux's i8042 driver, finding a PNP keyboard and mouse, does not
 * fall back to blind probing), a processor device (ACPI0007) per vCPU whose
 * _UID matches the MADT's ACPI processor UID, fw_cfg as QEMU0002 (Linux's
 * qemu_fw_cfg driver binds to that ID), and a PNP0C02 "motherboard resources"
 * device that reserves the ports no device object claims: the PM block and
 * the debug-exit port.  The board's PCI host bridge appends its own objects
 * through acpi_config.dsdt_extra.
 *
 * The MADT says what the PC has: the LAPIC page, PCAT_COMPAT (there are
 * 8259s, which OSPM must mask when it switches to the APICs), one enabled
 * Processor Local APIC per vCPU with APIC ID = ACPI processor UID = index,
 * the IOAPIC, and the two places where ISA IRQs are not identity-mapped onto
 * IOAPIC pins: IRQ 0 (the PIT) arrives on pin 2, and IRQ 9 (the SCI) is
 * level-triggered active-high rather than ISA edge.  LINT1 of every LAPIC is
 * the NMI input.  At most 255 vCPUs: xAPIC IDs are 8 bits, 0xFF is the
 * broadcast ID, and UID 0xFF means "all processors" in the NMI entry; more
 * would need x2APIC entries.
 *
 * Checked against ACPICA: iasl -d disassembles every table without a
 * complaint, and compiling the disassembled DSDT again with optimisations off
 * gives our bytes back exactly, except for the header's compiler ID and the
 * End Tag checksums (iasl writes 0, "assume valid"; we write the real sum).
 */
#include "arch/x86/acpi.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "hw/pc.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	      "ACPI tables are little-endian; so must the host be");

#define ACPI_AREA_SIZE (BOOT_RSDP_ADDR - BOOT_ACPI_ADDR) /* 64 KiB */

/* ---- table layouts ---- */

/* RSDP, §5.2.5.3 */
struct acpi_rsdp {
	char signature[8];      /* "RSD PTR " */
	uint8_t checksum;       /* first 20 bytes (the ACPI 1.0 part) sum to 0 */
	char oem_id[6];
	uint8_t revision;       /* 2: ACPI 2.0+ */
	uint32_t rsdt_address;
	uint32_t length;        /* 36 */
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* all 36 bytes sum to 0 */
	uint8_t reserved[3];
} __attribute__((packed));
static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP size");

/* System Description Table Header, §5.2.6 */
struct acpi_header {
	char signature[4];
	uint32_t length;        /* whole table, bytes */
	uint8_t revision;
	uint8_t checksum;       /* whole table sums to 0 */
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
static_assert(sizeof(struct acpi_header) == 36, "header size");

/* Generic Address Structure, §5.2.3.2 */
struct acpi_gas {
	uint8_t space_id;       /* 1: System I/O */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;    /* 1 byte, 2 word, 3 dword, 4 qword */
	uint64_t address;
} __attribute__((packed));
static_assert(sizeof(struct acpi_gas) == 12, "GAS size");

#define GAS_SYSTEM_IO 1
#define GAS_ACCESS_BYTE 1
#define GAS_ACCESS_WORD 2
#define GAS_ACCESS_DWORD 3

/* FADT, §5.2.9, revision 6 */
struct acpi_fadt {
	struct acpi_header h;          /* "FACP" */
	uint32_t firmware_ctrl;        /* FACS, 32-bit */
	uint32_t dsdt;
	uint8_t reserved0;             /* was INT_MODEL (ACPI 1.0) */
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;           /* microseconds; > 100: no C2 */
	uint16_t p_lvl3_lat;           /* microseconds; > 1000: no C3 */
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;               /* CMOS index of the century byte */
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t fadt_minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_identity;
} __attribute__((packed));

/* Offsets from ACPI 6.5 §5.2.9 (FADT Format table). */
#define FADT_AT(field, off) \
	static_assert(offsetof(struct acpi_fadt, field) == (off), "FADT " #field)
FADT_AT(firmware_ctrl, 36);
FADT_AT(dsdt, 40);
FADT_AT(preferred_pm_profile, 45);
FADT_AT(sci_int, 46);
FADT_AT(smi_cmd, 48);
FADT_AT(acpi_enable, 52);
FADT_AT(pstate_cnt, 55);
FADT_AT(pm1a_evt_blk, 56);
FADT_AT(pm1a_cnt_blk, 64);
FADT_AT(pm_tmr_blk, 76);
FADT_AT(gpe0_blk, 80);
FADT_AT(pm1_evt_len, 88);
FADT_AT(pm1_cnt_len, 89);
FADT_AT(pm_tmr_len, 91);
FADT_AT(gpe0_blk_len, 92);
FADT_AT(cst_cnt, 95);
FADT_AT(p_lvl2_lat, 96);
FADT_AT(flush_size, 100);
FADT_AT(duty_offset, 104);
FADT_AT(century, 108);
FADT_AT(iapc_boot_arch, 109);
FADT_AT(flags, 112);
FADT_AT(reset_reg, 116);
FADT_AT(reset_value, 128);
FADT_AT(arm_boot_arch, 129);
FADT_AT(fadt_minor_version, 131);
FADT_AT(x_firmware_ctrl, 132);
FADT_AT(x_dsdt, 140);
FADT_AT(x_pm1a_evt_blk, 148);
FADT_AT(x_pm1a_cnt_blk, 172);
FADT_AT(x_pm_tmr_blk, 208);
FADT_AT(x_gpe0_blk, 220);
FADT_AT(sleep_control_reg, 244);
FADT_AT(sleep_status_reg, 256);
FADT_AT(hypervisor_vendor_identity, 268);
static_assert(sizeof(struct acpi_fadt) == 276, "FADT revision 6 size");

/* FADT Fixed Feature Flags, §5.2.9 */
#define FADT_F_WBINVD        (1u << 0)
#define FADT_F_PROC_C1       (1u << 2)
#define FADT_F_PWR_BUTTON    (1u << 4) /* set: no fixed-feature power button */
#define FADT_F_SLP_BUTTON    (1u << 5) /* set: no fixed-feature sleep button */
#define FADT_F_TMR_VAL_EXT   (1u << 8) /* set: 32-bit PM timer */
#define FADT_F_RESET_REG_SUP (1u << 10)
#define FADT_F_HW_REDUCED    (1u << 20)

/* IA-PC Boot Architecture Flags, §5.2.9.3 */
#define FADT_BOOT_LEGACY_DEVICES (1u << 0) /* LPC/ISA devices the OS can't enumerate */
#define FADT_BOOT_8042           (1u << 1)

/* FACS, §5.2.10 */
struct acpi_facs {
	char signature[4];      /* "FACS" */
	uint32_t length;        /* 64 */
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version;        /* 2 */
	uint8_t reserved[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} __attribute__((packed));
static_assert(sizeof(struct acpi_facs) == 64, "FACS size");

/* MADT, §5.2.12 */
struct acpi_madt {
	struct acpi_header h;   /* "APIC" */
	uint32_t lapic_addr;    /* Local Interrupt Controller Address */
	uint32_t flags;         /* bit 0 PCAT_COMPAT: dual 8259s present */
} __attribute__((packed));
static_assert(sizeof(struct acpi_madt) == 44, "MADT size");

#define MADT_PCAT_COMPAT 1u

/* Processor Local APIC Structure, §5.2.12.2 */
struct madt_lapic {
	uint8_t type, length;   /* 0, 8 */
	uint8_t uid;            /* ACPI Processor UID */
	uint8_t apic_id;
	uint32_t flags;         /* bit 0 Enabled */
} __attribute__((packed));
static_assert(sizeof(struct madt_lapic) == 8, "MADT LAPIC size");

/* I/O APIC Structure, §5.2.12.3 */
struct madt_ioapic {
	uint8_t type, length;   /* 1, 12 */
	uint8_t id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
static_assert(sizeof(struct madt_ioapic) == 12, "MADT IOAPIC size");

/* Interrupt Source Override Structure, §5.2.12.5 */
struct madt_iso {
	uint8_t type, length;   /* 2, 10 */
	uint8_t bus;            /* 0: ISA */
	uint8_t source;         /* ISA IRQ */
	uint32_t gsi;
	uint16_t flags;         /* MPS INTI flags (§5.2.12.5) */
} __attribute__((packed));
static_assert(sizeof(struct madt_iso) == 10, "MADT ISO size");

/* Local APIC NMI Structure, §5.2.12.7 */
struct madt_lapic_nmi {
	uint8_t type, length;   /* 4, 6 */
	uint8_t uid;            /* 0xFF: all processors */
	uint16_t flags;         /* MPS INTI flags */
	uint8_t lint;           /* LINTn input */
} __attribute__((packed));
static_assert(sizeof(struct madt_lapic_nmi) == 6, "MADT LAPIC NMI size");

#define MADT_TYPE_LAPIC     0
#define MADT_TYPE_IOAPIC    1
#define MADT_TYPE_ISO       2
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_LAPIC_ENABLED  1u
/* MPS INTI flags: polarity bits 1:0, trigger mode bits 3:2 */
#define INTI_CONFORMING     0x0000
#define INTI_ACTIVE_HIGH    0x0001
#define INTI_LEVEL          0x000c

/* MCFG (PCI Firmware Specification 3.x, §4.1.2) */
struct acpi_mcfg {
	struct acpi_header h;   /* "MCFG" */
	uint8_t reserved[8];
} __attribute__((packed));
static_assert(sizeof(struct acpi_mcfg) == 44, "MCFG size");

struct mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus, end_bus;
	uint32_t reserved;
} __attribute__((packed));
static_assert(sizeof(struct mcfg_alloc) == 16, "MCFG allocation size");

/* Table revisions we write. */
#define REV_FADT  6
#define REV_FADT_MINOR 5 /* ACPI 6.5: bits 3:0 minor, 7:4 errata */
#define REV_MADT  5
#define REV_DSDT  2      /* 2: 64-bit AML integers */
#define REV_XSDT  1
#define REV_RSDT  1
#define REV_MCFG  1
#define REV_FACS  2

#define CENTURY_CMOS_INDEX 0x32

/* ---- the area being built ---- */

struct area {
	uint8_t *buf;   /* mirrors guest [BOOT_ACPI_ADDR, BOOT_RSDP_ADDR) */
	size_t used;
};

/* Reserve len bytes aligned to `align` (a power of two); returns the offset
 * in the area, or -ENOSPC. */
static long area_alloc(struct area *a, size_t len, size_t align)
{
	size_t off = (a->used + align - 1) & ~(align - 1);
	if (off > ACPI_AREA_SIZE || len > ACPI_AREA_SIZE - off)
		return -ENOSPC;
	a->used = off + len;
	return (long)off;
}

static uint64_t area_gpa(long off)
{
	return BOOT_ACPI_ADDR + (uint64_t)off;
}

static uint8_t checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += b[i];
	return (uint8_t)-sum;
}

static void header_init(struct acpi_header *h, const char *sig, size_t len,
			uint8_t rev)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->signature, sig, 4);
	h->length = (uint32_t)len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = 1;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = 1;
}

/* Set the checksum of the table at offset off, whose header is complete. */
static void table_seal(struct area *a, long off)
{
	struct acpi_header h;
	uint8_t *t = a->buf + off;

	memcpy(&h, t, sizeof(h));
	t[offsetof(struct acpi_header, checksum)] = 0;
	t[offsetof(struct acpi_header, checksum)] = checksum(t, h.length);
}

static struct acpi_gas gas_io(uint16_t port, unsigned bytes, uint8_t access)
{
	return (struct acpi_gas){
		.space_id = GAS_SYSTEM_IO,
		.bit_width = (uint8_t)(8 * bytes),
		.access_size = access,
		.address = port,
	};
}

/* ---- DSDT ---- */

/* Device(name) { _HID EISAID(hid), [_UID uid], _STA 0x0F, _CRS ...}: opens
 * the _CRS ResourceTemplate, which the caller fills and closes with two
 * aml_end() calls (template, device). */
static void isa_device(struct aml_buf *b, const char *name, const char *hid,
		       int uid)
{
	aml_device(b, name);
	aml_name_eisaid(b, "_HID", hid);
	if (uid >= 0)
		aml_name_int(b, "_UID", (uint64_t)uid);
	/* Present, enabled, shown in UI, functioning (§6.3.7). */
	aml_name_int(b, "_STA", 0x0f);
	aml_name(b, "_CRS");
	aml_restemplate(b);
}

static int build_dsdt_aml(struct aml_buf *b, const struct acpi_config *cfg)
{
	char name[16];
	int r;

	/* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved (§7.4.2). */
	aml_name(b, "_S5_");
	aml_package(b, 4);
	aml_int(b, PC_ACPI_SLP_TYP_S5);
	aml_int(b, PC_ACPI_SLP_TYP_S5);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_end(b);

	aml_scope(b, "\\_SB");

	/* One processor device per vCPU; _UID = MADT ACPI Processor UID
	 * (§8.4 "Declaring Processors", §5.2.12.2). */
	for (int i = 0; i < cfg->nr_cpus; i++) {
		snprintf(name, sizeof(name), "C%03X", (unsigned)i & 0xfff);
		aml_device(b, name);
		aml_name_str(b, "_HID", "ACPI0007");
		aml_name_int(b, "_UID", (uint64_t)i);
		aml_end(b);
	}

	isa_device(b, "COM1", "PNP0501", 1); /* 16550A UART */
	aml_res_io(b, PC_COM1_PORT, PC_COM1_PORT, 1, 8);
	aml_res_irq_noflags(b, PC_IRQ_COM1);
	aml_end(b);
	aml_end(b);

	isa_device(b, "RTC", "PNP0B00", -1); /* AT real-time clock */
	aml_res_io(b, PC_RTC_PORT, PC_RTC_PORT, 1, 2);
	aml_res_irq_noflags(b, PC_IRQ_RTC);
	aml_end(b);
	aml_end(b);

	isa_device(b, "KBD", "PNP0303", -1); /* i8042, keyboard port */
	aml_res_io(b, PC_I8042_DATA_PORT, PC_I8042_DATA_PORT, 1, 1);
	aml_res_io(b, PC_I8042_CMD_PORT, PC_I8042_CMD_PORT, 1, 1);
	aml_res_irq_noflags(b, PC_IRQ_KBD);
	aml_end(b);
	aml_end(b);

	isa_device(b, "MOU", "PNP0F13", -1); /* i8042, PS/2 mouse port */
	aml_res_irq_noflags(b, PC_IRQ_MOUSE);
	aml_end(b);
	aml_end(b);

	isa_device(b, "TMR", "PNP0100", -1); /* 8254 PIT */
	aml_res_io(b, PC_PIT_PORT, PC_PIT_PORT, 1, 4);
	aml_res_irq_noflags(b, PC_IRQ_PIT);
	aml_end(b);
	aml_end(b);

	/* fw_cfg: selector, data and the DMA address register. */
	aml_device(b, "FWCF");
	aml_name_str(b, "_HID", "QEMU0002");
	aml_name_int(b, "_STA", 0x0b); /* present, enabled, functioning, not in UI */
	aml_name(b, "_CRS");
	aml_restemplate(b);
	aml_res_io(b, PC_FW_CFG_PORT, PC_FW_CFG_PORT, 1, 0x0c);
	aml_end(b);
	aml_end(b);

	/* Motherboard resources: ports that no device object above claims. */
	isa_device(b, "MBRS", "PNP0C02", 1);
	aml_res_io(b, PC_ACPI_PM_BASE, PC_ACPI_PM_BASE, 1,
		   PC_ACPI_GPE0_BLK + 4 - PC_ACPI_PM_BASE);
	aml_res_io(b, PC_DEBUG_EXIT_PORT, PC_DEBUG_EXIT_PORT, 1, 1);
	aml_end(b);
	aml_end(b);

	aml_end(b); /* \_SB */

	if (cfg->dsdt_extra) {
		r = cfg->dsdt_extra(b, cfg->dsdt_extra_opaque);
		if (r)
			return r;
	}
	return aml_buf_finish(b);
}

static long build_dsdt(struct area *a, const struct acpi_config *cfg)
{
	struct aml_buf b;
	struct acpi_header h;
	long off;
	int r;

	aml_buf_init(&b);
	r = build_dsdt_aml(&b, cfg);
	if (r) {
		aml_buf_free(&b);
		return r;
	}
	off = area_alloc(a, sizeof(h) + b.len, 16);
	if (off >= 0) {
		header_init(&h, "DSDT", sizeof(h) + b.len, REV_DSDT);
		memcpy(a->buf + off, &h, sizeof(h));
		memcpy(a->buf + off + sizeof(h), b.data, b.len);
		table_seal(a, off);
	}
	aml_buf_free(&b);
	return off;
}

/* ---- fixed tables ---- */

static long build_facs(struct area *a)
{
	struct acpi_facs f = { .length = sizeof(f), .version = REV_FACS };
	long off = area_alloc(a, sizeof(f), 64);

	if (off < 0)
		return off;
	memcpy(f.signature, "FACS", 4);
	memcpy(a->buf + off, &f, sizeof(f)); /* no checksum in the FACS */
	return off;
}

static long build_fadt(struct area *a, long facs, long dsdt)
{
	struct acpi_fadt f;
	long off = area_alloc(a, sizeof(f), 16);

	if (off < 0)
		return off;
	memset(&f, 0, sizeof(f));
	header_init(&f.h, "FACP", sizeof(f), REV_FADT);
	f.firmware_ctrl = (uint32_t)area_gpa(facs);
	f.dsdt = (uint32_t)area_gpa(dsdt);
	f.preferred_pm_profile = 0; /* Unspecified */
	f.sci_int = PC_IRQ_SCI;
	f.smi_cmd = 0;              /* always in ACPI mode: no SMI command port */
	f.pm1a_evt_blk = PC_ACPI_PM1A_EVT;
	f.pm1a_cnt_blk = PC_ACPI_PM1A_CNT;
	f.pm_tmr_blk = PC_ACPI_PM_TMR;
	f.gpe0_blk = PC_ACPI_GPE0_BLK;
	f.pm1_evt_len = 4;          /* PM1_STS, PM1_EN: 2 bytes each */
	f.pm1_cnt_len = 2;
	f.pm_tmr_len = 4;
	f.gpe0_blk_len = 4;         /* GPE0_STS, GPE0_EN: 2 bytes each */
	f.p_lvl2_lat = 0x0fff;      /* no C2 */
	f.p_lvl3_lat = 0x0fff;      /* no C3 */
	f.century = CENTURY_CMOS_INDEX;
	f.iapc_boot_arch = FADT_BOOT_LEGACY_DEVICES | FADT_BOOT_8042;
	/* PWR_BUTTON clear: the fixed power button exists (PM1 bit 8).
	 * TMR_VAL_EXT clear: the PM timer counts 24 bits. */
	f.flags = FADT_F_WBINVD | FADT_F_PROC_C1 | FADT_F_SLP_BUTTON |
		  FADT_F_RESET_REG_SUP;
	f.reset_reg = gas_io(PC_RESET_PORT, 1, GAS_ACCESS_BYTE);
	f.reset_value = 0x06;       /* CF9: full reset (bit 2) + system reset (bit 1) */
	f.fadt_minor_version = REV_FADT_MINOR;
	f.x_firmware_ctrl = area_gpa(facs);
	f.x_dsdt = area_gpa(dsdt);
	f.x_pm1a_evt_blk = gas_io(PC_ACPI_PM1A_EVT, 4, GAS_ACCESS_WORD);
	f.x_pm1a_cnt_blk = gas_io(PC_ACPI_PM1A_CNT, 2, GAS_ACCESS_WORD);
	f.x_pm_tmr_blk = gas_io(PC_ACPI_PM_TMR, 4, GAS_ACCESS_DWORD);
	f.x_gpe0_blk = gas_io(PC_ACPI_GPE0_BLK, 4, GAS_ACCESS_BYTE);
	memcpy(&f.hypervisor_vendor_identity, "KVMM\0\0\0\0", 8);

	memcpy(a->buf + off, &f, sizeof(f));
	table_seal(a, off);
	return off;
}

static long build_madt(struct area *a, const struct acpi_config *cfg)
{
	const struct madt_iso isos[] = {
		/* The PIT's IRQ 0 is wired to IOAPIC pin 2 (pin 0 is the
		 * 8259's INTR output); ISA polarity and trigger. */
		{ MADT_TYPE_ISO, sizeof(struct madt_iso), 0, PC_IRQ_PIT,
		  PC_GSI_PIT, INTI_CONFORMING },
		/* The SCI: level-triggered, active-high (the default for an
		 * SCI would be active-low, §5.2.9 SCI_INT). */
		{ MADT_TYPE_ISO, sizeof(struct madt_iso), 0, PC_IRQ_SCI,
		  PC_IRQ_SCI, INTI_ACTIVE_HIGH | INTI_LEVEL },
	};
	const struct madt_ioapic io = {
		MADT_TYPE_IOAPIC, sizeof(io), cfg->ioapic_id, 0,
		cfg->ioapic_addr, cfg->ioapic_gsi_base,
	};
	/* LINT1 of every processor is the NMI input (as on the PC). */
	const struct madt_lapic_nmi nmi = {
		MADT_TYPE_LAPIC_NMI, sizeof(nmi), 0xff, INTI_CONFORMING, 1,
	};
	size_t len = sizeof(struct acpi_madt) +
		     (size_t)cfg->nr_cpus * sizeof(struct madt_lapic) +
		     sizeof(io) + sizeof(isos) + sizeof(nmi);
	struct acpi_madt m;
	long off = area_alloc(a, len, 16);
	uint8_t *p;

	if (off < 0)
		return off;
	header_init(&m.h, "APIC", len, REV_MADT);
	m.lapic_addr = PC_LAPIC_BASE;
	m.flags = MADT_PCAT_COMPAT;
	p = a->buf + off;
	memcpy(p, &m, sizeof(m));
	p += sizeof(m);
	for (int i = 0; i < cfg->nr_cpus; i++) {
		const struct madt_lapic l = {
			MADT_TYPE_LAPIC, sizeof(l), (uint8_t)i, (uint8_t)i,
			MADT_LAPIC_ENABLED,
		};
		memcpy(p, &l, sizeof(l));
		p += sizeof(l);
	}
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	memcpy(p, isos, sizeof(isos));
	p += sizeof(isos);
	memcpy(p, &nmi, sizeof(nmi));
	table_seal(a, off);
	return off;
}

static long build_mcfg(struct area *a, const struct acpi_config *cfg)
{
	size_t len = sizeof(struct acpi_mcfg) +
		     cfg->nr_mcfg * sizeof(struct mcfg_alloc);
	struct acpi_mcfg m;
	long off = area_alloc(a, len, 16);

	if (off < 0)
		return off;
	memset(&m, 0, sizeof(m));
	header_init(&m.h, "MCFG", len, REV_MCFG);
	memcpy(a->buf + off, &m, sizeof(m));
	for (unsigned i = 0; i < cfg->nr_mcfg; i++) {
		const struct mcfg_alloc e = {
			.base = cfg->mcfg[i].base,
			.segment = cfg->mcfg[i].segment,
			.start_bus = cfg->mcfg[i].start_bus,
			.end_bus = cfg->mcfg[i].end_bus,
		};
		memcpy(a->buf + off + sizeof(m) + i * sizeof(e), &e, sizeof(e));
	}
	table_seal(a, off);
	return off;
}

/* XSDT (8-byte entries) or RSDT (4-byte entries) listing tables[0..n). */
static long build_sdt(struct area *a, const char *sig, unsigned entry_size,
		      const long *tables, unsigned n)
{
	size_t len = sizeof(struct acpi_header) + (size_t)n * entry_size;
	struct acpi_header h;
	long off = area_alloc(a, len, 16);

	if (off < 0)
		return off;
	header_init(&h, sig, len, entry_size == 8 ? REV_XSDT : REV_RSDT);
	memcpy(a->buf + off, &h, sizeof(h));
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = area_gpa(tables[i]);
		/* little-endian: the low entry_size bytes */
		memcpy(a->buf + off + sizeof(h) + i * entry_size, &gpa,
		       entry_size);
	}
	table_seal(a, off);
	return off;
}

static int check_config(const struct acpi_config *cfg)
{
	if (cfg->nr_cpus < 1 || cfg->nr_cpus > ACPI_MAX_CPUS)
		return -EINVAL;
	/* The ISA IRQs and the overrides above are GSIs 0-15 of this IOAPIC. */
	if (cfg->ioapic_gsi_base != 0)
		return -EINVAL;
	if (cfg->nr_mcfg && !cfg->mcfg)
		return -EINVAL;
	for (unsigned i = 0; i < cfg->nr_mcfg; i++)
		if (cfg->mcfg[i].start_bus > cfg->mcfg[i].end_bus)
			return -EINVAL;
	return 0;
}

int acpi_dsdt_chain_add(struct acpi_dsdt_chain *c, acpi_dsdt_gen_fn *fn,
			void *opaque)
{
	if (c->n == ACPI_DSDT_MAX_GENERATORS)
		return -ENOSPC;
	c->gen[c->n].fn = fn;
	c->gen[c->n].opaque = opaque;
	c->n++;
	return 0;
}

int acpi_dsdt_chain_run(struct aml_buf *b, void *opaque)
{
	const struct acpi_dsdt_chain *c = opaque;

	for (unsigned i = 0; i < c->n; i++) {
		int r = c->gen[i].fn(b, c->gen[i].opaque);

		if (r)
			return r;
	}
	return 0;
}

void acpi_config_pc(struct acpi_config *cfg, int nr_cpus)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->nr_cpus = nr_cpus;
	cfg->ioapic_id = PC_IOAPIC_ID;
	cfg->ioapic_addr = PC_IOAPIC_BASE;
	cfg->ioapic_gsi_base = 0;
}

int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg,
	       uint64_t *rsdp_addr)
{
	struct area a = { 0 };
	struct acpi_rsdp rsdp;
	long facs, dsdt, fadt, madt, mcfg, xsdt, rsdt;
	long tables[3];
	unsigned n = 0;
	long r;

	if (!gm || !cfg || !rsdp_addr)
		return -EINVAL;
	r = check_config(cfg);
	if (r)
		return (int)r;
	if (!gm_ptr(gm, BOOT_ACPI_ADDR,
		    BOOT_RSDP_ADDR + sizeof(rsdp) - BOOT_ACPI_ADDR))
		return -EFAULT;

	a.buf = calloc(1, ACPI_AREA_SIZE);
	if (!a.buf)
		return -ENOMEM;

	r = facs = build_facs(&a);
	if (r < 0)
		goto out;
	r = dsdt = build_dsdt(&a, cfg);
	if (r < 0)
		goto out;
	r = fadt = build_fadt(&a, facs, dsdt);
	if (r < 0)
		goto out;
	tables[n++] = fadt;
	r = madt = build_madt(&a, cfg);
	if (r < 0)
		goto out;
	tables[n++] = madt;
	if (cfg->nr_mcfg) {
		r = mcfg = build_mcfg(&a, cfg);
		if (r < 0)
			goto out;
		tables[n++] = mcfg;
	}
	r = xsdt = build_sdt(&a, "XSDT", 8, tables, n);
	if (r < 0)
		goto out;
	r = rsdt = build_sdt(&a, "RSDT", 4, tables, n);
	if (r < 0)
		goto out;

	memset(&rsdp, 0, sizeof(rsdp));
	memcpy(rsdp.signature, "RSD PTR ", 8);
	memcpy(rsdp.oem_id, ACPI_OEM_ID, 6);
	rsdp.revision = 2;
	rsdp.rsdt_address = (uint32_t)area_gpa(rsdt);
	rsdp.length = sizeof(rsdp);
	rsdp.xsdt_address = area_gpa(xsdt);
	rsdp.checksum = checksum(&rsdp, 20);
	rsdp.extended_checksum = checksum(&rsdp, sizeof(rsdp));

	/* The whole area, so tables of an earlier build do not linger. */
	r = gm_write(gm, BOOT_ACPI_ADDR, a.buf, ACPI_AREA_SIZE);
	if (!r)
		r = gm_write(gm, BOOT_RSDP_ADDR, &rsdp, sizeof(rsdp));
	if (!r)
		*rsdp_addr = BOOT_RSDP_ADDR;
out:
	free(a.buf);
	return r < 0 ? (int)r : 0;
}
