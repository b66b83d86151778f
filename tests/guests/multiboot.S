/*
 * multiboot.S - entry of multiboot.elf: a Multiboot v1 kernel (ELF32).
 *
 * The header asks for page-aligned modules (flag 0) and memory information
 * (flag 1); it is an ELF kernel, so no address fields (flag 16 clear).  The
 * loader enters _start in 32-bit protected mode, paging off, with
 * EAX = 0x2BADB002 and EBX = the multiboot_info; boot_info.c checks both.
 */
#include "guest.h"
#include "entry32.h"

#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003

	.section .note.GNU-stack, "", @progbits

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.section .text.entry, "ax"
	.code32
	.globl _start
_start:
	ENTRY32_SAVE_STATE
	call guest_main_multiboot
1:	cli
	hlt
	jmp 1b

	.section .stack, "aw", @nobits
	.balign 16
	.space GUEST_STACK_SIZE
	.globl guest_stack_top
guest_stack_top:
