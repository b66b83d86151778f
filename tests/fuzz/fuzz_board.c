/*
 * fuzz_board.c - the fuzz board and its hostile-guest interpreter
 * (fuzz_board.h).
 *
 * Input encoding.  A sequence of operations; each starts with one byte
 * whose low nibble is the kind and high nibble `hi` a parameter, followed
 * by the operands it names (read with fuzz_in: missing bytes are 0).
 *
 *   0  OUT   port, value u32; size 1/2/4 from hi & 3 (3 = 1)
 *   1  IN    port; size as OUT
 *   2  MMIO write near the IOAPIC page: offset u16, value u64; size
 *            1/2/4/8 from hi & 3; with hi & 4 a PCI address instead:
 *            offset u32, bit 31 picks the BAR window (low 16 bits) or
 *            ECAM (low 21 bits: 1 MiB of ECAM and 1 MiB past it)
 *   3  MMIO read: offset u16 (u32 with hi & 4); size and place as 2
 *   4  IOAPIC indirect write: IOREGSEL u8, IOWIN u32; if hi & 1 also an
 *            EOI register write of vector u8
 *   5  RAM write: address (see addr()), length u8, bytes
 *   6  fw_cfg DMA: descriptor address, control u32, length u32, target
 *            address; the descriptor is written big-endian to RAM (when it
 *            is RAM) and started with two 32-bit writes (hi & 1: one 64-bit
 *            write) to the DMA port
 *   7  clock advance, stepping every timer: u32 masked to 2 * hi + 2 bits
 *            (bounded by the run's virtual-time budget)
 *   8  clock jump without stepping, then one vm_timers_run(): u32 << hi,
 *            as when the timer thread runs late (host suspend, SIGSTOP)
 *   9  save / load / save every device (fuzz_board_check_roundtrip)
 *   10 load raw bytes into a device: index u8, length u8, bytes
 *   11 load a mutated save of a device: index u8, then hi + 1 times
 *            { position u8, xor u8 }
 *   12 reset every device (the machine's reset)
 *   13 bytes from the console: length u8, bytes (chardev_buffer_inject)
 *   14 board-side events by hi: INTA cycle, LAPIC EOI, a GSI level from
 *            some other device, power button, GPE, "LAPIC EOIs at once"
 *            toggle, PIC / IOAPIC pins driven directly, CMOS bytes from the
 *            board, a fw_cfg file added while the guest reads, an MSI-X
 *            notification of the PCI function, its INTx line
 *   15 fw_cfg selector u16 then that many data-port byte reads (u8)
 *
 * Ports are chosen by one byte: < NPORTS names a port of some device, 0xff
 * takes a raw u16 port from the input, anything else is a device port -1,
 * 0 or +1 (accesses that straddle the edge of a range).
 */
#include "fuzz_board.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chardev.h"
#include "core/state.h"
#include "core/vm.h"
#include "harness.h"
#include "hw/acpi_pm.h"
#include "hw/cmos_rtc.h"
#include "hw/debug_exit.h"
#include "hw/fw_cfg.h"
#include "hw/i8042.h"
#include "hw/ioapic.h"
#include "hw/msix.h"
#include "hw/pci.h"
#include "hw/irq_router.h"
#include "hw/pc.h"
#include "hw/pic.h"
#include "hw/pit.h"
#include "hw/post_port.h"
#include "hw/uart_16550.h"
#include "util/log.h"

/* Virtual time one input may spend stepping through timers (op 7), and the
 * most a single jump (op 8) may move the clock. */
#define CLOCK_STEP_BUDGET_NS (2ull * 1000 * 1000 * 1000)
#define CLOCK_JUMP_MAX_NS    (1ull << 50) /* ~13 days */
/* CLOCK_MONOTONIC counts from host boot: keep the fake clock below ~2.3
 * years of host uptime, which real hosts reach. */
#define CLOCK_ABS_MAX_NS     (1ull << 56)

static const uint16_t ports[] = {
	PC_PIC_MASTER_PORT, PC_PIC_MASTER_PORT + 1,
	PC_PIC_SLAVE_PORT, PC_PIC_SLAVE_PORT + 1,
	PC_ELCR_PORT, PC_ELCR_PORT + 1,
	PC_PIT_PORT, PC_PIT_PORT + 1, PC_PIT_PORT + 2, PC_PIT_PORT + 3,
	PC_PORT61,
	PC_I8042_DATA_PORT, PC_I8042_CMD_PORT,
	PC_RTC_PORT, PC_RTC_PORT + 1,
	PC_POST_PORT, PC_DEBUG_EXIT_PORT, PC_RESET_PORT,
	PC_FW_CFG_PORT, PC_FW_CFG_PORT + 1,
	PC_FW_CFG_DMA_PORT, PC_FW_CFG_DMA_PORT + 4,
	PC_COM1_PORT, PC_COM1_PORT + 1, PC_COM1_PORT + 2, PC_COM1_PORT + 3,
	PC_COM1_PORT + 4, PC_COM1_PORT + 5, PC_COM1_PORT + 6, PC_COM1_PORT + 7,
	PC_ACPI_PM1A_EVT, PC_ACPI_PM1A_EVT + 2, PC_ACPI_PM1A_CNT,
	PC_ACPI_PM_TMR, PC_ACPI_GPE0_BLK, PC_ACPI_GPE0_BLK + 2,
	PC_PCI_CONFIG_PORT, PC_PCI_CONFIG_PORT + 4, PC_PCI_CONFIG_PORT + 6,
	PC_PCI_IO_BASE, PC_PCI_IO_BASE + 8,
};
#define NPORTS (sizeof(ports) / sizeof(ports[0]))

/* ---- callbacks of the "CPU" side ---- */

static void on_intr(void *opaque, bool level)
{
	struct fuzz_board *b = opaque;

	/* Runs under the PIC's lock: only record (pic.h). */
	b->intr = level;
}

static void on_msi(void *opaque, uint64_t addr, uint32_t data)
{
	struct fuzz_board *b = opaque;

	b->msi_count++;
	/* A LAPIC that cannot take the vector EOIs it at once (ioapic.h allows
	 * calling ioapic_eoi() from here).  Nesting is bounded here because a
	 * real LAPIC would not do this forever; the IOAPIC itself must not
	 * need the bound to stay correct. */
	if (b->eoi_on_deliver && b->eoi_depth < 4 && (data & 0xff) >= 16) {
		b->eoi_depth++;
		ioapic_eoi(b->ioapic, (uint8_t)data);
		b->eoi_depth--;
	}
}

/* The PCI function's BARs: a small register file. */
static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct fuzz_board *b = opaque;
	uint64_t v = 0;

	off %= sizeof(b->bar_mem) - 8;
	memcpy(&v, b->bar_mem + off, size);
	return v;
}

static void bar_write(void *opaque, uint64_t off, unsigned size, uint64_t v)
{
	struct fuzz_board *b = opaque;

	off %= sizeof(b->bar_mem) - 8;
	memcpy(b->bar_mem + off, &v, size);
}

static const struct bus_ops fuzz_bar_ops = { .read = bar_read,
					     .write = bar_write };

/* ---- building and tearing down ---- */

static void must(int r, const char *what)
{
	if (r)
		fuzz_fail("cannot create the %s: %s", what, strerror(-r));
}

void fuzz_board_init(struct fuzz_board *b)
{
	static const char cmdline[] = "console=ttyS0 earlyprintk=serial";
	static uint8_t blob[5000];
	struct irq_router *router;
	struct vm *vm;

	/* Guest-triggered warnings (e.g. unsupported sleep states) would
	 * flood the fuzzer's output; errors still show. */
	log_max_level = LOG_ERROR;
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7 + 3);
	b->h = harness_new(FUZZ_BOARD_RAM);
	vm = &b->h->vm;
	b->cd = chardev_open_buffer();
	if (!b->cd)
		fuzz_fail("chardev_open_buffer failed");
	b->clock_budget_ns = CLOCK_STEP_BUDGET_NS;

	/* The order of hw/pc.c: interrupt controllers first. */
	must(pic_create(vm, on_intr, b, &b->pic), "PIC");
	must(ioapic_create(vm, on_msi, b, &b->ioapic), "IOAPIC");
	must(irq_router_create(vm, b->pic, b->ioapic, on_msi, b, &router),
	     "irq router");
	must(pit_create(vm, &b->pit), "PIT");
	must(uart_16550_create(vm, PC_COM1_PORT, PC_IRQ_COM1, b->cd, &b->uart),
	     "UART");
	must(i8042_create(vm, &b->kbc), "i8042");
	must(cmos_rtc_create(vm, vm->mem.ram_size, &b->rtc), "RTC");
	must(fw_cfg_create(vm, &b->fw), "fw_cfg");
	must(post_port_create(vm, NULL), "POST port");
	must(debug_exit_create(vm, PC_DEBUG_EXIT_PORT, NULL), "debug exit");
	must(pci_bus_create(vm, &b->pci), "PCI host bridge");
	must(acpi_pm_create(vm, &b->pm), "ACPI PM");
	{
		static const struct pci_device_info info = {
			.vendor_id = 0x1af4, .device_id = 0x1040 + 30,
			.class_code = 0xff0000, .irq_pin = 1, .name = "fuzz",
		};
		static const uint8_t vndr[14] = { 16, 1, 4 };

		must(pci_device_add(b->pci, &info, NULL, NULL, &b->pcidev),
		     "PCI function");
		must(pci_bar_add(b->pcidev, 0, PCI_BAR_MEM32, 4096,
				 &fuzz_bar_ops, b), "PCI BAR 0");
		must(pci_bar_add(b->pcidev, 2, PCI_BAR_IO, 16, &fuzz_bar_ops,
				 b), "PCI BAR 2");
		must(pci_cap_add(b->pcidev, PCI_CAP_ID_VNDR, vndr,
				 sizeof(vndr), NULL), "PCI capability");
		must(msix_init(b->pcidev, 5, 4), "MSI-X");
	}

	/* Items of every shape: small, empty, larger than a page. */
	must(fw_cfg_add_bytes(b->fw, FW_CFG_KERNEL_CMDLINE, cmdline,
			      sizeof(cmdline)), "fw_cfg item");
	must(fw_cfg_add_u32(b->fw, FW_CFG_CMDLINE_SIZE, sizeof(cmdline)),
	     "fw_cfg item");
	must(fw_cfg_add_file(b->fw, "etc/e820", blob, 40), "fw_cfg file");
	must(fw_cfg_add_file(b->fw, "etc/empty", NULL, 0), "fw_cfg file");
	must(fw_cfg_add_file(b->fw, "opt/kvmm/fuzz", blob, sizeof(blob)),
	     "fw_cfg file");
	must(fw_cfg_add_bytes(b->fw, FW_CFG_E820_TABLE, blob, 20),
	     "fw_cfg item");
}

void fuzz_board_fini(struct fuzz_board *b)
{
	/* The UART is the chardev's receiver: detach before it is freed. */
	chardev_set_receiver(b->cd, NULL);
	harness_free(b->h);
	chardev_close(b->cd);
	b->h = NULL;
	b->cd = NULL;
}

/* ---- state ---- */

static struct vm_device *loadable(struct fuzz_board *b, unsigned idx,
				  int *which)
{
	struct vm *vm = &b->h->vm;
	unsigned n = 0;

	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].ops->load && vm->devices[i].ops->save)
			n++;
	if (!n)
		return NULL;
	idx %= n;
	for (int i = 0; i < vm->nr_devices; i++) {
		if (!vm->devices[i].ops->load || !vm->devices[i].ops->save)
			continue;
		if (idx-- == 0) {
			*which = i;
			return &vm->devices[i];
		}
	}
	return NULL;
}

static void roundtrip_dev(struct vm_device *d)
{
	struct state_buf s1 = { 0 }, s2 = { 0 };
	struct state_reader r;
	int rc;

	d->ops->save(d->opaque, &s1);
	if (s1.err)
		fuzz_fail("%s: save failed: %d", d->ops->name, s1.err);
	r = (struct state_reader){ .data = s1.data, .len = s1.len };
	rc = d->ops->load(d->opaque, &r);
	if (rc)
		fuzz_fail("%s: rejects its own saved state (%zu bytes): %d",
			  d->ops->name, s1.len, rc);
	if (r.pos != s1.len)
		fuzz_fail("%s: load read %zu of the %zu bytes save wrote",
			  d->ops->name, r.pos, s1.len);
	d->ops->save(d->opaque, &s2);
	if (s2.err)
		fuzz_fail("%s: save failed: %d", d->ops->name, s2.err);
	if (s1.len != s2.len || memcmp(s1.data, s2.data, s1.len)) {
		size_t i = 0;
		while (i < s1.len && i < s2.len && s1.data[i] == s2.data[i])
			i++;
		fuzz_fail("%s: state changed across save/load/save (%zu vs %zu bytes, first difference at byte %zu)",
			  d->ops->name, s1.len, s2.len, i);
	}
	state_buf_free(&s1);
	state_buf_free(&s2);
}

void fuzz_board_check_roundtrip(struct fuzz_board *b)
{
	struct vm *vm = &b->h->vm;

	for (int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i].ops->save && vm->devices[i].ops->load)
			roundtrip_dev(&vm->devices[i]);
}

int fuzz_board_load(struct fuzz_board *b, unsigned idx, const uint8_t *data,
		    size_t len)
{
	struct state_reader r = { .data = data, .len = len };
	struct vm_device *d;
	int which, rc;

	d = loadable(b, idx, &which);
	if (!d)
		return -ENODEV;
	rc = d->ops->load(d->opaque, &r);
	if (r.pos > len)
		fuzz_fail("%s: load read past the end of the stream",
			  d->ops->name);
	if (rc > 0)
		fuzz_fail("%s: load returned %d > 0", d->ops->name, rc);
	if (rc == 0)
		roundtrip_dev(d); /* accepted state must be a state */
	return rc;
}

static void load_mutated(struct fuzz_board *b, unsigned idx, unsigned nmut,
			 struct fuzz_in *in)
{
	struct state_buf s = { 0 };
	struct vm_device *d;
	int which;

	d = loadable(b, idx, &which);
	if (!d)
		return;
	d->ops->save(d->opaque, &s);
	for (unsigned i = 0; i < nmut; i++) {
		uint8_t pos = fz_u8(in), x = fz_u8(in);
		if (s.len)
			s.data[pos % s.len] ^= x;
	}
	if (!s.err)
		fuzz_board_load(b, idx, s.data, s.len);
	state_buf_free(&s);
}

/* ---- the interpreter ---- */

static uint16_t pick_port(struct fuzz_in *in)
{
	uint8_t sel = fz_u8(in);

	if (sel < NPORTS)
		return ports[sel];
	if (sel == 0xff)
		return fz_u16(in);
	return (uint16_t)(ports[sel % NPORTS] + (sel / NPORTS) % 3 - 1);
}

/* A guest-physical address: mostly RAM, sometimes its edge, sometimes
 * anything (fw_cfg must refuse what is not RAM). */
static uint64_t pick_addr(struct fuzz_in *in)
{
	uint8_t mode = fz_u8(in);

	switch (mode & 3) {
	case 0:  return fz_u16(in);
	case 1:  return fz_u32(in) % (FUZZ_BOARD_RAM + 0x2000);
	case 2:  return FUZZ_BOARD_RAM - (fz_u8(in) & 0x3f);
	default: return fz_u64(in);
	}
}

static unsigned pio_size(unsigned hi)
{
	static const unsigned s[4] = { 1, 2, 4, 1 };
	return s[hi & 3];
}

static uint64_t ioapic_addr(struct fuzz_in *in)
{
	uint16_t off = fz_u16(in);

	/* Mostly inside the page; bit 15 reaches 14 KiB either side of it
	 * (unclaimed MMIO, accesses straddling the page's edges). */
	if (off & 0x8000)
		return PC_IOAPIC_BASE - 0x3800 + (off & 0x7fff);
	return PC_IOAPIC_BASE + (off & (IOAPIC_MMIO_SIZE - 1));
}

/* The PCI windows: BARs (the fuzz function's first, at the window
 * start) or ECAM, with room past the ends. */
static uint64_t pci_addr(struct fuzz_in *in)
{
	uint32_t off = fz_u32(in);

	if (off & (1u << 31))
		return PC_PCI_MMIO_BASE + (off & 0xffff);
	return PC_PCI_ECAM_BASE + (off & 0x1fffff);
}

static uint64_t mmio_addr(unsigned hi, struct fuzz_in *in)
{
	return (hi & 4) ? pci_addr(in) : ioapic_addr(in);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void op_dma(struct fuzz_board *b, unsigned hi, struct fuzz_in *in)
{
	struct harness *h = b->h;
	uint64_t desc = pick_addr(in);
	uint32_t control = fz_u32(in), length = fz_u32(in);
	uint64_t target = pick_addr(in);
	uint8_t d[16];

	/* Keep zero-fills cheap without hiding the "not RAM" cases: a length
	 * beyond RAM is refused by fw_cfg anyway. */
	if (!(hi & 2))
		length %= FUZZ_BOARD_RAM + 0x100;
	put_be32(d, control);
	put_be32(d + 4, length);
	put_be32(d + 8, (uint32_t)(target >> 32));
	put_be32(d + 12, (uint32_t)target);
	gm_write(&h->vm.mem, desc, d, sizeof(d)); /* not RAM: left as it is */
	if (hi & 1) {
		bus_write(&h->vm.pio, PC_FW_CFG_DMA_PORT, 8,
			  __builtin_bswap64(desc));
	} else {
		hx_outl(h, PC_FW_CFG_DMA_PORT,
			__builtin_bswap32((uint32_t)(desc >> 32)));
		hx_outl(h, PC_FW_CFG_DMA_PORT + 4,
			__builtin_bswap32((uint32_t)desc));
	}
}

static void op_event(struct fuzz_board *b, unsigned hi, struct fuzz_in *in)
{
	struct vm *vm = &b->h->vm;
	uint8_t a = fz_u8(in), c;

	switch (hi) {
	case 0:
		if (b->intr)
			(void)pic_intack(b->pic);
		break;
	case 1:
		(void)pic_intack(b->pic); /* spurious INTA too */
		break;
	case 2:
		ioapic_eoi(b->ioapic, a);
		break;
	case 3:
		irq_set_level(&vm->irq, a % IRQ_MAX_GSI, a & 0x80);
		break;
	case 4:
		acpi_pm_power_button(b->pm);
		break;
	case 5:
		acpi_pm_gpe_raise(b->pm, a % 20);
		break;
	case 6:
		b->eoi_on_deliver = !b->eoi_on_deliver;
		break;
	case 7:
		pic_set_irq(b->pic, a % 20, a & 0x80);
		break;
	case 8:
		ioapic_set_irq(b->ioapic, a % 30, a & 0x80);
		break;
	case 9:
		c = fz_u8(in);
		(void)cmos_rtc_set_byte(b->rtc, a, c);
		(void)cmos_rtc_get_byte(b->rtc, c, &c);
		break;
	case 10: {
		/* A file added (or replaced) while the guest reads the
		 * directory or the file itself. */
		char name[FW_CFG_MAX_FILE_PATH + 8];
		const uint8_t *p;
		size_t n = fz_take(in, a % sizeof(name), &p);
		uint16_t len = fz_u16(in);
		static uint8_t data[0x10000];

		memcpy(name, p, n);
		name[n] = '\0';
		(void)fw_cfg_add_file(b->fw, name, data, len);
		break;
	}
	case 11:
		msix_notify(b->pcidev, a % 8);
		break;
	case 12:
		pci_set_irq(b->pcidev, a & 1);
		break;
	default:
		vm_reset_devices(vm);
		break;
	}
}

void fuzz_board_run(struct fuzz_board *b, struct fuzz_in *in)
{
	struct harness *h = b->h;

	while (in->n) {
		uint8_t op = fz_u8(in);
		unsigned hi = op >> 4;

		switch (op & 15) {
		case 0: {
			uint16_t port = pick_port(in);
			uint32_t v = fz_u32(in);
			bus_write(&h->vm.pio, port, pio_size(hi), v);
			break;
		}
		case 1:
			(void)bus_read(&h->vm.pio, pick_port(in), pio_size(hi));
			break;
		case 2: {
			uint64_t a = mmio_addr(hi, in);
			hx_mmio_write(h, a, 1u << (hi & 3), fz_u64(in));
			break;
		}
		case 3:
			(void)hx_mmio_read(h, mmio_addr(hi, in), 1u << (hi & 3));
			break;
		case 4:
			hx_mmio_write(h, PC_IOAPIC_BASE, 4, fz_u8(in));
			hx_mmio_write(h, PC_IOAPIC_BASE + 0x10, 4, fz_u32(in));
			if (hi & 1)
				hx_mmio_write(h, PC_IOAPIC_BASE + 0x40, 4,
					      fz_u8(in));
			break;
		case 5: {
			uint64_t a = pick_addr(in);
			const uint8_t *p;
			size_t n = fz_take(in, fz_u8(in), &p);
			gm_write(&h->vm.mem, a, p, n);
			break;
		}
		case 6:
			op_dma(b, hi, in);
			break;
		case 7: {
			uint64_t ns = fz_u32(in) &
				      ((2ull << (2 * hi + 1)) - 1);
			if (ns > b->clock_budget_ns)
				ns = b->clock_budget_ns;
			b->clock_budget_ns -= ns;
			hx_clock_advance(h, ns);
			break;
		}
		case 8: {
			uint64_t ns = (uint64_t)fz_u32(in) << hi;
			uint64_t now = h->vm.fake_clock_ns;
			if (ns > CLOCK_JUMP_MAX_NS)
				ns = CLOCK_JUMP_MAX_NS;
			if (now >= CLOCK_ABS_MAX_NS)
				ns = 0;
			else if (ns > CLOCK_ABS_MAX_NS - now)
				ns = CLOCK_ABS_MAX_NS - now;
			__atomic_store_n(&h->vm.fake_clock_ns, now + ns,
					 __ATOMIC_RELEASE);
			(void)vm_timers_run(&h->vm);
			break;
		}
		case 9:
			fuzz_board_check_roundtrip(b);
			break;
		case 10: {
			uint8_t idx = fz_u8(in);
			const uint8_t *p;
			size_t n = fz_take(in, fz_u8(in), &p);
			(void)fuzz_board_load(b, idx, p, n);
			break;
		}
		case 11:
			load_mutated(b, fz_u8(in), hi + 1, in);
			break;
		case 12:
			vm_reset_devices(&h->vm);
			break;
		case 13: {
			const uint8_t *p;
			size_t n = fz_take(in, fz_u8(in), &p);
			if (n)
				(void)chardev_buffer_inject(b->cd, p, n);
			break;
		}
		case 14:
			op_event(b, hi, in);
			break;
		case 15: {
			uint16_t key = fz_u16(in);
			unsigned n = fz_u8(in);
			hx_outw(h, PC_FW_CFG_PORT, key);
			for (unsigned i = 0; i < n; i++)
				(void)hx_inb(h, PC_FW_CFG_PORT + 1);
			break;
		}
		}
	}
}
