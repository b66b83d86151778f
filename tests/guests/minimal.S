/*
 * minimal.S - minimal.bzImage: the smallest guest that still goes through
 * the whole bzImage path.  Every entry (real-mode setup, startup_32,
 * startup_64) does the same three port writes: "K\n" to COM1's transmit
 * register (no LSR polling: an emulated UART is always ready) and 0 to the
 * debug-exit port, so the VMM exits with status 1.  bench/boot.sh times it.
 */
#include "guest.h"
#include "bzhdr.h"

	.section .note.GNU-stack, "", @progbits

	.macro SAY_K_AND_EXIT
	movw $GUEST_COM1, %dx
	movb $'K', %al
	outb %al, %dx
	movb $'\n', %al
	outb %al, %dx
	xorl %eax, %eax
	outb %al, $GUEST_DEBUG_EXIT
1:	cli
	hlt
	jmp 1b
	.endm

	.section .bzsetup, "ax"
	.code16
	BZ_SETUP_HEADER setup16
setup16:
	SAY_K_AND_EXIT

	.section .bztext, "ax"
	.code32
	.globl startup_32
startup_32:
	SAY_K_AND_EXIT

	.org 0x200
	.code64
	.globl startup_64
startup_64:
	SAY_K_AND_EXIT
