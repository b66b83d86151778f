/*
 * bzimage.S - the bzImage flavour of the test guest (basic.bzImage): setup
 * header, real-mode setup code, 32-bit entry and 64-bit entry.
 *
 * File layout (bzimage.ld, then objcopy -O binary):
 *   0x000  boot sector area (zeros) and the setup header at 0x1f1
 *   0x26c  real-mode setup code, padded to (setup_sects + 1) * 512 bytes
 *   then   the protected-mode part, loaded at 0x100000:
 *            +0x000 startup_32: the 32-bit entry (ESI = boot_params)
 *            +0x200 startup_64: the 64-bit entry (RSI = boot_params)
 *
 * A 64-bit loader (kvmm) loads the protected-mode part at 1 MiB, fills
 * boot_params (the header copied from the file, e820, cmd_line_ptr,
 * ramdisk) and jumps to startup_64 in long mode with identity page tables.
 *
 * A BIOS loader (QEMU -kernel, through its linuxboot option ROM) loads the
 * setup sectors at some real-mode segment and jumps to the setup code,
 * which does what Linux's setup does, minimally: builds boot_params in the
 * setup segment at offset BP_OFF (header copied, e820 from INT 15h/E820),
 * marks it with BZ_SCRATCH_MAGIC, enables A20, switches to protected mode
 * and jumps to code32_start.  startup_32 builds page tables (0-4 GiB, 2 MiB
 * pages in .pgtables), enables long mode and continues as startup_64 does.
 * Either way guest_main_bzimage() learns the path from entry_state.path.
 */
#include "guest.h"
#include "bzhdr.h"

#define BP_OFF 0x1000	/* boot_params, from the setup segment's base */

	.section .note.GNU-stack, "", @progbits

/* ---- boot sector, setup header, real-mode setup ---------------------------- */

	.section .bzsetup, "ax"
	.code16
bz_setup:
	BZ_SETUP_HEADER setup16

setup16:
	cli
	cld
	/* normalise CS:IP to DS:offset (the loader jumped to DS+0x20:0) */
	pushw %ds
	pushw $(1f - bz_setup)
	lretw
1:	movw %ds, %ax
	movw %ax, %es
	/* boot_params: zeroed, the setup header copied in */
	movw $BP_OFF, %di
	xorl %eax, %eax
	movw $1024, %cx
	rep stosl
	movw $0x1f1, %si
	movw $(BP_OFF + 0x1f1), %di
	movw $(BZ_HDR_END - 0x1f1), %cx
	rep movsb
	/* the memory map from INT 15h, AX=E820h */
	movw $(BP_OFF + 0x2d0), %di
	xorl %ebx, %ebx
	xorw %bp, %bp
2:	movl $0xe820, %eax
	movl $0x534d4150, %edx	/* "SMAP" */
	movl $20, %ecx
	int $0x15
	jc 3f
	cmpl $0x534d4150, %eax
	jne 3f
	incw %bp
	addw $20, %di
	cmpw $128, %bp
	jae 3f
	testl %ebx, %ebx
	jnz 2b
3:	movw %bp, %ax
	movb %al, BP_OFF + 0x1e8
	movl $BZ_SCRATCH_MAGIC, BP_OFF + 0x1e4
	/* A20 through port 0x92 */
	inb $0x92, %al
	orb $2, %al
	andb $0xfe, %al
	outb %al, $0x92
	/* linear addresses: ESI = boot_params; patch the GDT base and the far pointer */
	xorl %eax, %eax
	movw %ds, %ax
	shll $4, %eax
	leal BP_OFF(%eax), %esi
	addl $(setup_gdt - bz_setup), %eax
	movl %eax, setup_gdt_desc + 2 - bz_setup
	movl 0x214, %eax		/* code32_start */
	movl %eax, setup_farptr - bz_setup
	lgdtl setup_gdt_desc - bz_setup
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	movw $BZ_BOOT_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	xorl %ebp, %ebp
	xorl %edi, %edi
	xorl %ebx, %ebx
	ljmpl *%cs:(setup_farptr - bz_setup)

	.balign 8
setup_gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x10 __BOOT_CS: code, flat, 32-bit */
	.quad 0x00cf92000000ffff	/* 0x18 __BOOT_DS: data, flat */
setup_gdt_desc:
	.word setup_gdt_desc - setup_gdt - 1
	.long 0
setup_farptr:
	.long 0
	.word BZ_BOOT_CS

/* ---- protected-mode part, at 0x100000 ------------------------------------------ */

	.section .bztext, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
	cld
	movl %eax, entry_state + ES_AX
	movl %ebx, entry_state + ES_BX
	movl %esi, entry_state + ES_SI
	movl %esp, entry_state + ES_SP
	movl $bz_stack_top, %esp
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
	movl $ENTRY_PATH_BZ32, entry_state + ES_PATH
	cmpl $BZ_SCRATCH_MAGIC, 0x1e4(%esi)
	jne 1f
	movl $ENTRY_PATH_BZ16, entry_state + ES_PATH
1:	lgdtl bz_gdt_desc
	ljmpl $0x10, $2f
2:	movl $0x18, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl %eax, %fs
	movl %eax, %gs
	/* page tables: PML4 -> PDPT -> 4 PDs mapping 0-4 GiB with 2 MiB pages */
	movl $pgt_pml4, %edi
	movl $(6 * 1024), %ecx
	xorl %eax, %eax
	rep stosl
	movl $(pgt_pdpt + 3), pgt_pml4
	movl $(pgt_pd + 0x0000 + 3), pgt_pdpt + 0
	movl $(pgt_pd + 0x1000 + 3), pgt_pdpt + 8
	movl $(pgt_pd + 0x2000 + 3), pgt_pdpt + 16
	movl $(pgt_pd + 0x3000 + 3), pgt_pdpt + 24
	movl $pgt_pd, %edi
	movl $0x83, %eax
	movl $2048, %ecx
3:	movl %eax, (%edi)
	addl $0x200000, %eax
	addl $8, %edi
	loop 3b
	movl %cr4, %eax
	orl $0x20, %eax			/* PAE */
	movl %eax, %cr4
	movl $pgt_pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	orl $0x100, %eax
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax		/* PG | PE */
	movl %eax, %cr0
	ljmpl $0x20, $startup_64_from32

	.org 0x200
	.code64
	.globl startup_64
startup_64:
	movq %rsp, entry_state + ES_SP(%rip)
	leaq bz_stack_top(%rip), %rsp
	pushfq
	popq entry_state + ES_FLAGS(%rip)
	cli
	cld
	movq %rax, entry_state + ES_AX(%rip)
	movq %rbx, entry_state + ES_BX(%rip)
	movq %rsi, entry_state + ES_SI(%rip)
	movq %cr0, %rax
	movq %rax, entry_state + ES_CR0(%rip)
	movq %cr3, %rax
	movq %rax, entry_state + ES_CR3(%rip)
	movq %cr4, %rax
	movq %rax, entry_state + ES_CR4(%rip)
	xorl %eax, %eax
	movw %cs, %ax
	movl %eax, entry_state + ES_CS(%rip)
	movw %ds, %ax
	movl %eax, entry_state + ES_DS(%rip)
	movw %es, %ax
	movl %eax, entry_state + ES_ES(%rip)
	movw %ss, %ax
	movl %eax, entry_state + ES_SS(%rip)
	sgdt entry_state + ES_GDTR(%rip)
	movl $ENTRY_PATH_BZ64, entry_state + ES_PATH(%rip)
	jmp common64

startup_64_from32:
	leaq bz_stack_top(%rip), %rsp
common64:
	leaq __bss_start(%rip), %rdi
	leaq __bss_end(%rip), %rcx
	subq %rdi, %rcx
	xorl %eax, %eax
	rep stosb
	call guest_main_bzimage
1:	cli
	hlt
	jmp 1b

	.section .rodata
	.balign 8
bz_gdt:
	.quad 0
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x10 code, flat, 32-bit */
	.quad 0x00cf92000000ffff	/* 0x18 data, flat */
	.quad 0x00af9a000000ffff	/* 0x20 code, 64-bit */
bz_gdt_desc:
	.word bz_gdt_desc - bz_gdt - 1
	.long bz_gdt

	.section .pgtables, "aw", @nobits
	.balign 4096
	.globl pgt_pml4, pgt_pdpt, pgt_pd
pgt_pml4:
	.space 4096
pgt_pdpt:
	.space 4096
pgt_pd:
	.space 64 * 4096

	.section .stack, "aw", @nobits
	.balign 16
	.space GUEST_STACK_SIZE
bz_stack_top:
