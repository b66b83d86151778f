/*
 * arch.S - the assembly both guest flavours share: the exception entry
 * stubs (assembled for i386 or x86-64) and the AP trampoline (16-bit and
 * 32-bit code, identical in both).
 *
 * Exceptions: each stub pushes a dummy error code where the CPU pushes
 * none, then its vector, and jumps to trap_common, which calls
 * guest_trap(vector, error, ip) in guest.c; that prints a FAIL line and
 * exits through the debug-exit port.  Interrupts stay disabled throughout,
 * so only exceptions (and NMIs) arrive here.
 *
 * The AP trampoline runs at GUEST_TRAMP_ADDR (0x70000; the STARTUP IPI's
 * vector is 0x70): in real mode with CS = 0x7000, IP = 0.  Each AP counts
 * itself (lock incl), records its CPUID initial APIC ID in a bitmap (lock
 * bts), switches to flat 32-bit protected mode, counts itself again,
 * records its LAPIC ID register, and halts with interrupts disabled.  The
 * BSP reads the counters and bitmaps through the same physical addresses.
 * The code is position dependent: it must be copied to GUEST_TRAMP_ADDR.
 */
#include "guest.h"

	.section .note.GNU-stack, "", @progbits

/* ---- exception stubs ---------------------------------------------------- */

	.text
	.balign 16
trap_stub_base:
	.set vec, 0
	.rept 32
	.balign 16
	/* vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30 */
	.if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	.else
	push $0
	.endif
	push $vec
	jmp trap_common
	.set vec, vec + 1
	.endr

trap_common:
#ifdef __x86_64__
	/* stack: vector, error, rip, cs, rflags, rsp, ss */
	mov (%rsp), %rdi
	mov 8(%rsp), %rsi
	mov 16(%rsp), %rdx
	and $-16, %rsp
	call guest_trap
#else
	/* stack: vector, error, eip, cs, eflags */
	mov (%esp), %eax
	mov 4(%esp), %ecx
	mov 8(%esp), %edx
	and $-16, %esp
	push %edx
	push %ecx
	push %eax
	call guest_trap
#endif
1:	cli
	hlt
	jmp 1b

	.section .rodata
	.balign 8
	.globl trap_stubs
trap_stubs:
	.set vec, 0
	.rept 32
#ifdef __x86_64__
	.quad trap_stub_base + 16 * vec
#else
	.long trap_stub_base + 16 * vec
#endif
	.set vec, vec + 1
	.endr

/* ---- AP trampoline -------------------------------------------------------- */

#define T(sym) (GUEST_TRAMP_ADDR + ((sym) - ap_tramp_start))   /* linear address */
#define R(sym) ((sym) - ap_tramp_start)                        /* offset from CS/DS base */

	.section .rodata
	.balign 16
	.globl ap_tramp_start, ap_tramp_end
	.globl ap_tramp_rm_count, ap_tramp_pm_count, ap_tramp_rm_ids, ap_tramp_pm_ids
	.code16
ap_tramp_start:
	cli
	cld
	movw %cs, %ax
	movw %ax, %ds
	movl $1, %eax
	xorl %ecx, %ecx
	cpuid
	shrl $24, %ebx
	lock incl R(ap_tramp_rm_count)
	lock btsl %ebx, R(ap_tramp_rm_ids)
	lgdtl R(tramp_gdt_desc)
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $0x08, $T(tramp_pm)

	.code32
tramp_pm:
	movl $0x10, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	movl GUEST_LAPIC_BASE + 0x20, %ebx
	shrl $24, %ebx
	lock incl T(ap_tramp_pm_count)
	lock btsl %ebx, T(ap_tramp_pm_ids)
1:	cli
	hlt
	jmp 1b

	.balign 8
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: code, flat 4 GiB, 32-bit */
	.quad 0x00cf92000000ffff	/* 0x10: data, flat 4 GiB */
tramp_gdt_desc:
	.word tramp_gdt_desc - tramp_gdt - 1
	.long T(tramp_gdt)

	.balign 4
ap_tramp_rm_count:
	.long 0
ap_tramp_pm_count:
	.long 0
ap_tramp_rm_ids:
	.fill 8, 4, 0
ap_tramp_pm_ids:
	.fill 8, 4, 0
ap_tramp_end:
#ifdef __x86_64__
	.code64
#else
	.code32
#endif
