/*
 * entry32.h - the common prologue of the 32-bit entries (multiboot.S, pvh.S),
 * as an assembler macro: record the entry state, load a stack, clear .bss.
 * Uses no stack and no register but the ones it saves first.
 */
	.macro ENTRY32_SAVE_STATE
	cli
	cld
	movl %eax, entry_state + ES_AX
	movl %ebx, entry_state + ES_BX
	movl %esi, entry_state + ES_SI
	movl %esp, entry_state + ES_SP
	movl $guest_stack_top, %esp
	pushfl
	popl entry_state + ES_FLAGS
	movl %cr0, %eax
	movl %eax, entry_state + ES_CR0
	movl %cr3, %eax
	movl %eax, entry_state + ES_CR3
	movl %cr4, %eax
	movl %eax, entry_state + ES_CR4
	xorl %eax, %eax
	movw %cs, %ax
	movl %eax, entry_state + ES_CS
	movw %ds, %ax
	movl %eax, entry_state + ES_DS
	movw %es, %ax
	movl %eax, entry_state + ES_ES
	movw %ss, %ax
	movl %eax, entry_state + ES_SS
	sgdtl entry_state + ES_GDTR
	movl $ENTRY_PATH_32, entry_state + ES_PATH
	/* clear .bss */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb
	.endm
