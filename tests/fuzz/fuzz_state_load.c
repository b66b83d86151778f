/*
 * fuzz_state_load.c - device snapshot loads (vm_device_ops.load) against
 * hostile state streams.
 *
 * A snapshot file is user input (core/state.h): a device must reject what
 * it could not have produced, and whatever it accepts must behave like a
 * state the guest could have reached.  Input:
 *   u8   device index (modulo the devices with save/load, in board order:
 *        pic, ioapic, pit, uart_16550, i8042, cmos_rtc, fw_cfg, post_port,
 *        debug_exit, reset_cf9, acpi_pm)
 *   u16  stream length, then the stream fed to that device's load()
 *   ...  a fuzz_board program run afterwards (fuzz_board.c), so accepted
 *        state is exercised through the device's registers and timers
 * Checks: load() never reads past the stream, returns 0 or -errno, and an
 * accepted state saves, loads back and saves identically.
 */
#include "fuzz_board.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_board b;
	const uint8_t *p;
	uint8_t idx;
	size_t n;

	fuzz_board_init(&b);
	idx = fz_u8(&in);
	n = fz_take(&in, fz_u16(&in), &p);
	(void)fuzz_board_load(&b, idx, p, n);
	fuzz_board_run(&b, &in);
	fuzz_board_check_roundtrip(&b);
	fuzz_board_fini(&b);
	return 0;
}
