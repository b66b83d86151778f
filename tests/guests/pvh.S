/*
 * pvh.S - entry of pvh.elf / pvh32.elf: a PVH kernel.
 *
 * The ELF note XEN_ELFNOTE_PHYS32_ENTRY (name "Xen", type 18) gives the
 * physical address of the 32-bit entry.  Its descriptor is 4 bytes in the
 * ELF32 flavour and 8 bytes (PVH_NOTE_DESC64) in the one converted to ELF64,
 * as in Linux's 32-bit and 64-bit vmlinux.  The loader enters in 32-bit
 * protected mode, paging off, with EBX = hvm_start_info.
 */
#include "guest.h"
#include "entry32.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.GNU-stack, "", @progbits

	.section .note.Xen, "a", @note
	.balign 4
	.long 4                 /* namesz */
	.long 2f - 1f           /* descsz */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.balign 4
1:
#ifdef PVH_NOTE_DESC64
	.long _start, 0		/* a 64-bit value, assembled in 32-bit code */
#else
	.long _start
#endif
2:
	.balign 4

	.section .text.entry, "ax"
	.code32
	.globl _start
_start:
	ENTRY32_SAVE_STATE
	call guest_main_pvh
1:	cli
	hlt
	jmp 1b

	.section .stack, "aw", @nobits
	.balign 16
	.space GUEST_STACK_SIZE
	.globl guest_stack_top
guest_stack_top:
