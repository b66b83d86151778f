/*
 * test_fw_cfg.c - fw_cfg through the harness: the test plays SeaBIOS/OVMF
 * (selector + data port, file directory, DMA descriptors in guest RAM) and a
 * hostile guest (descriptors and buffers outside RAM, garbage commands).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "hw/fw_cfg.h"
#include "hw/pc.h"

#define RAM (16u << 20)
#define SEL  PC_FW_CFG_PORT
#define DATA (PC_FW_CFG_PORT + 1)
#define DMA  PC_FW_CFG_DMA_PORT

struct fixture {
	struct harness *h;
	struct fw_cfg *fw;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->h = harness_new(RAM);
	assert_int_equal(fw_cfg_create(&f->h->vm, &f->fw), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	harness_free(f->h);
	free(f);
	return 0;
}

static void read_item(struct harness *h, uint16_t key, void *buf, size_t len)
{
	uint8_t *p = buf;

	hx_outw(h, SEL, key);
	for (size_t i = 0; i < len; i++)
		p[i] = hx_inb(h, DATA);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Write an FWCfgDmaAccess at gpa in guest RAM. */
static void put_desc(struct harness *h, uint64_t gpa, uint32_t control,
		     uint32_t length, uint64_t address)
{
	uint8_t d[16];

	put_be32(d, control);
	put_be32(d + 4, length);
	put_be32(d + 8, (uint32_t)(address >> 32));
	put_be32(d + 12, (uint32_t)address);
	assert_int_equal(gm_write(&h->vm.mem, gpa, d, sizeof(d)), 0);
}

/* What Linux's and OVMF's drivers do: two big-endian 32-bit writes. */
static void kick_dma(struct harness *h, uint64_t desc)
{
	hx_outl(h, DMA, __builtin_bswap32((uint32_t)(desc >> 32)));
	hx_outl(h, DMA + 4, __builtin_bswap32((uint32_t)desc));
}

static uint32_t desc_control(struct harness *h, uint64_t gpa)
{
	uint8_t c[4];

	assert_int_equal(gm_read(&h->vm.mem, gpa, c, 4), 0);
	return be32(c);
}

/* Find a file in the directory read through the data port; 0 if absent. */
static uint16_t lookup_file(struct harness *h, const char *name,
			    uint32_t *size)
{
	uint8_t cnt[4], e[64];
	uint32_t n;

	read_item(h, FW_CFG_FILE_DIR, cnt, 4);
	n = be32(cnt);
	for (uint32_t i = 0; i < n; i++) {
		for (int j = 0; j < 64; j++)
			e[j] = hx_inb(h, DATA);
		assert_int_equal(e[63], 0); /* NUL-terminated */
		if (!strcmp((char *)e + 8, name)) {
			if (size)
				*size = be32(e);
			return (uint16_t)(e[4] << 8 | e[5]);
		}
	}
	return 0;
}

static void test_signature_and_id(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	char sig[9] = { 0 };
	uint8_t id[4];

	read_item(h, FW_CFG_SIGNATURE, sig, 4);
	assert_string_equal(sig, "QEMU");
	assert_int_equal(hx_inb(h, DATA), 0); /* past the end */
	/* Byte reads at the selector port read data too (as QEMU). */
	hx_outw(h, SEL, FW_CFG_SIGNATURE);
	assert_int_equal(hx_inb(h, SEL), 'Q');
	assert_int_equal(hx_inb(h, DATA), 'E');

	read_item(h, FW_CFG_ID, id, 4);
	assert_int_equal(id[0], FW_CFG_VERSION | FW_CFG_VERSION_DMA);
	assert_int_equal(id[1] | id[2] | id[3], 0);

	/* The DMA register reads "QEMU CFG" in address order. */
	assert_int_equal(hx_inl(h, DMA), 0x554d4551);     /* "QEMU" */
	assert_int_equal(hx_inl(h, DMA + 4), 0x47464320); /* " CFG" */
	assert_int_equal(hx_inb(h, DMA + 7), 'G');
	memcpy(sig, (uint32_t[]){ hx_inl(h, DMA), hx_inl(h, DMA + 4) }, 8);
	assert_string_equal(sig, "QEMU CFG");

	/* Power-on selects the signature. */
	vm_reset_devices(&h->vm);
	assert_int_equal(hx_inb(h, DATA), 'Q');
}

static void test_cpus_and_ram_size(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint8_t b[8];
	uint64_t ram = 0;

	read_item(h, FW_CFG_RAM_SIZE, b, 8);
	for (int i = 7; i >= 0; i--)
		ram = ram << 8 | b[i];
	assert_int_equal(ram, RAM);
	read_item(h, FW_CFG_NB_CPUS, b, 3);
	assert_int_equal(b[0] | b[1] << 8, 1);
	assert_int_equal(b[2], 0);
	read_item(h, FW_CFG_MAX_CPUS, b, 2);
	assert_int_equal(b[0] | b[1] << 8, 1);

	/* The board can override items. */
	assert_int_equal(fw_cfg_add_u16(f->fw, FW_CFG_NB_CPUS, 4), 0);
	read_item(h, FW_CFG_NB_CPUS, b, 2);
	assert_int_equal(b[0] | b[1] << 8, 4);
	/* The write-channel bit of the selector is ignored for reads. */
	read_item(h, FW_CFG_NB_CPUS | FW_CFG_WRITE_CHANNEL, b, 2);
	assert_int_equal(b[0], 4);
	/* Arch-local keys. */
	assert_int_equal(fw_cfg_add_u32(f->fw, FW_CFG_IRQ0_OVERRIDE, 1), 0);
	read_item(h, FW_CFG_IRQ0_OVERRIDE, b, 4);
	assert_int_equal(b[0], 1);
}

static void test_file_dir_lookup(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	const char e820[] = "e820-table-contents";
	const char wait[] = "\x05\x00";
	uint32_t size;
	uint16_t key;
	char buf[64];

	assert_int_equal(lookup_file(h, "etc/e820", NULL), 0);
	assert_int_equal(fw_cfg_add_file(f->fw, "etc/e820", e820,
					 sizeof(e820)), 0);
	assert_int_equal(fw_cfg_add_file(f->fw, "etc/boot-fail-wait", wait,
					 2), 0);

	key = lookup_file(h, "etc/e820", &size);
	assert_int_equal(key, FW_CFG_FILE_FIRST);
	assert_int_equal(size, sizeof(e820));
	read_item(h, key, buf, size);
	assert_memory_equal(buf, e820, sizeof(e820));

	key = lookup_file(h, "etc/boot-fail-wait", &size);
	assert_int_equal(key, FW_CFG_FILE_FIRST + 1);
	assert_int_equal(size, 2);

	/* Replacing keeps the key and updates the directory's size. */
	assert_int_equal(fw_cfg_add_file(f->fw, "etc/e820", "x", 1), 0);
	key = lookup_file(h, "etc/e820", &size);
	assert_int_equal(key, FW_CFG_FILE_FIRST);
	assert_int_equal(size, 1);
	read_item(h, key, buf, 2);
	assert_int_equal(buf[0], 'x');
	assert_int_equal(buf[1], 0);

	/* A 55-byte name fits, 56 does not. */
	memset(buf, 'n', 55);
	buf[55] = 0;
	assert_int_equal(fw_cfg_add_file(f->fw, buf, "", 0), 0);
	assert_int_equal(lookup_file(h, buf, &size), FW_CFG_FILE_FIRST + 2);
	assert_int_equal(size, 0);
	buf[55] = 'n';
	buf[56] = 0;
	assert_int_equal(fw_cfg_add_file(f->fw, buf, "", 0), -ENAMETOOLONG);
	assert_int_equal(fw_cfg_add_file(f->fw, "", "", 0), -EINVAL);
	/* Keys reserved for files and the directory are refused. */
	assert_int_equal(fw_cfg_add_bytes(f->fw, FW_CFG_FILE_DIR, "a", 1),
			 -EINVAL);
	assert_int_equal(fw_cfg_add_bytes(f->fw, FW_CFG_FILE_FIRST, "a", 1),
			 -EINVAL);
	assert_int_equal(fw_cfg_add_bytes(f->fw, 0x4005, "a", 1), -EINVAL);
	assert_int_equal(fw_cfg_add_bytes(f->fw, 0x8020, "a", 1), -EINVAL);
}

static void test_dma_read(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint8_t data[300], got[400];
	uint16_t key;

	for (int i = 0; i < 300; i++)
		data[i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(fw_cfg_add_file(f->fw, "etc/table", data, 300), 0);
	key = lookup_file(h, "etc/table", NULL);
	assert_int_not_equal(key, 0);

	/* SELECT + READ 100 bytes to 0x2000. */
	memset(got, 0xaa, sizeof(got));
	gm_write(&h->vm.mem, 0x2000, got, sizeof(got));
	put_desc(h, 0x1000, (uint32_t)key << 16 | FW_CFG_DMA_CTL_SELECT |
		 FW_CFG_DMA_CTL_READ, 100, 0x2000);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	gm_read(&h->vm.mem, 0x2000, got, sizeof(got));
	assert_memory_equal(got, data, 100);
	assert_int_equal(got[100], 0xaa); /* nothing past length */

	/* SKIP 50, then READ the rest and beyond: zero-filled tail. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_SKIP, 50, 0);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_READ, 200, 0x3000);
	memset(got, 0xaa, sizeof(got));
	gm_write(&h->vm.mem, 0x3000, got, sizeof(got));
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	gm_read(&h->vm.mem, 0x3000, got, sizeof(got));
	assert_memory_equal(got, data + 150, 150);
	for (int i = 150; i < 200; i++)
		assert_int_equal(got[i], 0);
	assert_int_equal(got[200], 0xaa);

	/* The data port continues from the same offset: at the end. */
	assert_int_equal(hx_inb(h, DATA), 0);

	/* The address register is 0 after a transfer: one low write with a
	 * 32-bit address suffices. */
	put_desc(h, 0x1000, (uint32_t)FW_CFG_SIGNATURE << 16 |
		 FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, 0x2000);
	hx_outl(h, DMA + 4, __builtin_bswap32(0x1000));
	assert_int_equal(desc_control(h, 0x1000), 0);
	gm_read(&h->vm.mem, 0x2000, got, 4);
	assert_memory_equal(got, "QEMU", 4);

	/* WRITE is refused: every item is read-only. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_WRITE, 4, 0x2000);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), FW_CFG_DMA_CTL_ERROR);
	/* SELECT alone: control 0, the data port then reads that item. */
	put_desc(h, 0x1000, (uint32_t)key << 16 | FW_CFG_DMA_CTL_SELECT, 0, 0);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	assert_int_equal(hx_inb(h, DATA), data[0]);
}

static void test_dma_outside_ram(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint8_t pat[64], got[64];
	uint8_t *ram_end = gm_ptr(&h->vm.mem, RAM - 64, 64);

	memset(pat, 0x5c, sizeof(pat));
	memcpy(ram_end, pat, 64);

	/* Buffer runs past the end of RAM: error bit, nothing written. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 16,
		 RAM - 8);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), FW_CFG_DMA_CTL_ERROR);
	assert_memory_equal(ram_end, pat, 64);

	/* Buffer in the MMIO hole / above RAM. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_READ, 4, 0xfee00000);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), FW_CFG_DMA_CTL_ERROR);

	/* address + length wraps around 2^64. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_READ, 0x100, ~0ull - 0x10);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), FW_CFG_DMA_CTL_ERROR);

	/* Maximum length from a valid address: still refused. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_READ, 0xffffffff, 0);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), FW_CFG_DMA_CTL_ERROR);

	/* Descriptor straddling the end of RAM: ignored, nothing touched. */
	kick_dma(h, RAM - 8);
	assert_memory_equal(ram_end, pat, 64);
	/* Descriptor far outside RAM, with a 64-bit address. */
	kick_dma(h, 0x123456789000ull);
	kick_dma(h, ~0ull);
	gm_read(&h->vm.mem, RAM - 64, got, 64);
	assert_memory_equal(got, pat, 64);

	/* The device still works. */
	put_desc(h, 0x1000, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4,
		 RAM - 4);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	assert_memory_equal(ram_end + 60, "QEMU", 4);
}

static void test_unknown_key_reads_zeros(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint8_t got[32];

	hx_outw(h, SEL, 0x1234);
	for (int i = 0; i < 16; i++)
		assert_int_equal(hx_inb(h, DATA), 0);
	hx_outw(h, SEL, 0xbfff);
	assert_int_equal(hx_inb(h, DATA), 0);

	memset(got, 0xee, sizeof(got));
	gm_write(&h->vm.mem, 0x2000, got, sizeof(got));
	put_desc(h, 0x1000, 0x3fffu << 16 | FW_CFG_DMA_CTL_SELECT |
		 FW_CFG_DMA_CTL_READ, 16, 0x2000);
	kick_dma(h, 0x1000);
	assert_int_equal(desc_control(h, 0x1000), 0);
	gm_read(&h->vm.mem, 0x2000, got, sizeof(got));
	for (int i = 0; i < 16; i++)
		assert_int_equal(got[i], 0);
	assert_int_equal(got[16], 0xee);
}

static void test_dma_high_ram(void **state)
{
	/* 1 MiB of RAM above 4 GiB: a 64-bit descriptor and buffer. */
	struct harness *h = harness_new(GM_HOLE_START + (1u << 20));
	uint64_t desc = GM_HIGH_START + 0x100, buf = GM_HIGH_START + 0x1000;
	uint8_t got[8];

	assert_int_equal(fw_cfg_create(&h->vm, NULL), 0);
	read_item(h, FW_CFG_RAM_SIZE, got, 8);
	assert_int_equal(got[4], 0); /* 0xC0100000 */
	assert_int_equal(got[3], 0xc0);
	assert_int_equal(got[2], 0x10);

	put_desc(h, desc, (uint32_t)FW_CFG_SIGNATURE << 16 |
		 FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, buf);
	kick_dma(h, desc);
	assert_int_equal(desc_control(h, desc), 0);
	gm_read(&h->vm.mem, buf, got, 4);
	assert_memory_equal(got, "QEMU", 4);
	harness_free(h);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h, *g;
	struct fw_cfg *fw2;
	struct state_buf b = { 0 };

	assert_int_equal(fw_cfg_add_file(f->fw, "etc/x", "abcdef", 6), 0);
	hx_outw(h, SEL, FW_CFG_FILE_FIRST);
	assert_int_equal(hx_inb(h, DATA), 'a');
	assert_int_equal(hx_inb(h, DATA), 'b');
	hx_outl(h, DMA, __builtin_bswap32(0x1)); /* high half pending */
	assert_int_equal(hx_save(h, "fw_cfg", &b), 0);

	g = harness_new(RAM);
	assert_int_equal(fw_cfg_create(&g->vm, &fw2), 0);
	assert_int_equal(fw_cfg_add_file(fw2, "etc/x", "abcdef", 6), 0);
	assert_int_equal(hx_load(g, "fw_cfg", b.data, b.len), 0);
	assert_int_equal(hx_inb(g, DATA), 'c');
	assert_int_equal(hx_inb(g, DATA), 'd');

	/* Offset past the destination's item: refused. */
	fw_cfg_add_file(fw2, "etc/x", "a", 1);
	assert_int_equal(hx_load(g, "fw_cfg", b.data, b.len), -EINVAL);
	/* Truncated, bad version. */
	assert_int_equal(hx_load(g, "fw_cfg", b.data, b.len - 1), -EINVAL);
	b.data[0] = 0;
	assert_int_equal(hx_load(g, "fw_cfg", b.data, b.len), -EINVAL);

	state_buf_free(&b);
	harness_free(g);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_hostile_guest(void **state)
{
	struct fixture *f = *state;
	struct harness *h = f->h;
	uint64_t s = 0x9e3779b97f4a7c15ull;
	char sig[5] = { 0 };

	fw_cfg_add_file(f->fw, "etc/big", NULL, 0);
	for (int i = 0; i < 20000; i++) {
		uint64_t v = rnd(&s);
		uint16_t port = (uint16_t)(SEL + v % 12);
		unsigned size = 1u << ((v >> 8) % 3);
		switch ((v >> 16) % 4) {
		case 0:
			bus_write(&h->vm.pio, port, size, rnd(&s));
			break;
		case 1:
			bus_read(&h->vm.pio, port, size);
			break;
		default: {
			/* A random descriptor, somewhere in or near RAM. */
			uint64_t desc = rnd(&s) % (RAM + 64);
			uint64_t w = rnd(&s);
			uint8_t d[16];
			for (int j = 0; j < 16; j++)
				d[j] = (uint8_t)(w >> (j * 4));
			if (desc + 16 <= RAM)
				gm_write(&h->vm.mem, desc, d, 16);
			/* Small lengths mostly, so the test stays fast. */
			if (desc + 8 <= RAM && (w & 1))
				gm_write(&h->vm.mem, desc + 4,
					 (uint8_t[]){ 0, 0, (uint8_t)(w >> 8), 0 }, 4);
			kick_dma(h, desc);
		}
		}
	}
	read_item(h, FW_CFG_SIGNATURE, sig, 4);
	assert_string_equal(sig, "QEMU");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_signature_and_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cpus_and_ram_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_dir_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dma_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_reads_zeros, setup, teardown),
		cmocka_unit_test(test_dma_high_ram),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_guest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
