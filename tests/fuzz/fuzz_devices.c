/*
 * fuzz_devices.c - the PC board's devices against a hostile guest.
 *
 * The input is a program for fuzz_board_run() (the encoding is at the top
 * of fuzz_board.c): port and IOAPIC MMIO accesses, RAM writes that build
 * fw_cfg DMA descriptors (pointing into RAM, at its edge or anywhere),
 * fake-clock steps and jumps, snapshot round trips and hostile snapshot
 * loads, console input and board-side interrupt events.  A fresh board per
 * input; at the end every device's state must survive save/load/save.
 */
#include "fuzz_board.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_board b;

	fuzz_board_init(&b);
	fuzz_board_run(&b, &in);
	fuzz_board_check_roundtrip(&b);
	fuzz_board_fini(&b);
	return 0;
}
