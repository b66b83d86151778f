/*
 * test_emu_sse.c - the software CPU's SSE/SSE2/SSE3/SSSE3, MXCSR,
 * FXSAVE/FXRSTOR and x87 instructions, checked against the host CPU
 * (differential testing) and against the SDM where the host cannot show
 * the case (faults, CR0/CR4 gating, unmasked exceptions).
 *
 * How the differential test works (after test_emu_insn.c).  Code and data
 * live at the same fixed addresses natively and in the guest: host memory
 * is mapped at TEST_BASE, guest RAM covers the same guest-physical range,
 * and the emulator runs flat 64-bit mode with identity translation.  Each
 * form is a short instruction sequence followed by RET.  Natively,
 * native_run() (assembly below) loads XMM0-7, RAX-RDI, RFLAGS, MXCSR and a
 * freshly initialized x87 with the case's FCW, calls the sequence, and
 * stores everything back (plus FSW), restoring kvmm's MXCSR and FCW.  The
 * emulator gets the same state and steps until RIP reaches the RET.  Then
 * XMM0-7, the GPRs, the status flags, MXCSR, FSW and 256 bytes of data
 * memory are compared.
 *
 * Inputs: XMM registers and memory are built lane by lane from edge-value
 * pools (float32 and float64: zeros, ones, NaNs both quiet and signaling,
 * infinities, denormals, the largest finite values, values halfway between
 * integers for rounding; integers: 0, 1, -1 and the saturation limits of
 * each width) or random bytes, and every form runs under all four MXCSR
 * rounding modes, with DAZ|FTZ, and with x87 FCW rounding modes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"
#include "accel/emu/emu.h"
#include "accel/emu/exec.h"
#include "core/memory.h"
#include "emu_native.h"

#define TEST_BASE  NATIVE_BASE
#define TEST_SIZE  0x10000ull
#define CODE       TEST_BASE
#define DATA       (TEST_BASE + 0x3000)
#define STACK      (TEST_BASE + 0x8000)
#define GUEST_RAM  (32ull << 20)

#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR0_NE (1ull << 5)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)

/* The state native_run() loads and stores; offsets are used in the asm. */
struct nstate {
	uint8_t xmm[8][16];   /* 0 */
	uint64_t gpr[6];      /* 128: rax rbx rcx rdx rsi rdi */
	uint64_t rflags;      /* 176 */
	uint32_t mxcsr;       /* 184 */
	uint16_t fsw;         /* 188 */
	uint16_t fcw;         /* 190 */
};
_Static_assert(offsetof(struct nstate, rflags) == 176, "layout");
_Static_assert(offsetof(struct nstate, fcw) == 190, "layout");

void native_run(struct nstate *s);
__asm__(".text\n"
	".globl native_run\n"
	".type native_run,@function\n"
	"native_run:\n"
	"  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
	"  mov %rdi, %r12\n"
	"  sub $24, %rsp\n"
	"  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
	"  ldmxcsr 184(%r12)\n  fninit\n  fldcw 190(%r12)\n"
	"  movdqu 0(%r12), %xmm0\n  movdqu 16(%r12), %xmm1\n"
	"  movdqu 32(%r12), %xmm2\n  movdqu 48(%r12), %xmm3\n"
	"  movdqu 64(%r12), %xmm4\n  movdqu 80(%r12), %xmm5\n"
	"  movdqu 96(%r12), %xmm6\n  movdqu 112(%r12), %xmm7\n"
	"  mov 128(%r12), %rax\n  mov 136(%r12), %rbx\n  mov 144(%r12), %rcx\n"
	"  mov 152(%r12), %rdx\n  mov 160(%r12), %rsi\n  mov 168(%r12), %rdi\n"
	"  pushq 176(%r12)\n  popfq\n"
	"  mov $0x01000000, %r13\n"
	"  call *%r13\n"
	"  pushfq\n  popq 176(%r12)\n"
	"  mov %rax, 128(%r12)\n  mov %rbx, 136(%r12)\n  mov %rcx, 144(%r12)\n"
	"  mov %rdx, 152(%r12)\n  mov %rsi, 160(%r12)\n  mov %rdi, 168(%r12)\n"
	"  movdqu %xmm0, 0(%r12)\n  movdqu %xmm1, 16(%r12)\n"
	"  movdqu %xmm2, 32(%r12)\n  movdqu %xmm3, 48(%r12)\n"
	"  movdqu %xmm4, 64(%r12)\n  movdqu %xmm5, 80(%r12)\n"
	"  movdqu %xmm6, 96(%r12)\n  movdqu %xmm7, 112(%r12)\n"
	"  stmxcsr 184(%r12)\n  fnstsw 188(%r12)\n  fnstcw 190(%r12)\n"
	"  fninit\n"
	"  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n"
	"  add $24, %rsp\n"
	"  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
	"  ret\n"
	".size native_run, .-native_run\n");

/* X(id, "intel syntax; ...", kind): V = vector, X = x87 */
#define FORMS(X) \
	X(pxor_rr, "pxor xmm1, xmm2", KV) \
	X(pxor_rm, "pxor xmm3, xmmword ptr [rsi]", KV) \
	X(por_rr, "por xmm1, xmm2", KV) \
	X(por_rm, "por xmm3, xmmword ptr [rsi]", KV) \
	X(pand_rr, "pand xmm1, xmm2", KV) \
	X(pand_rm, "pand xmm3, xmmword ptr [rsi]", KV) \
	X(pandn_rr, "pandn xmm1, xmm2", KV) \
	X(pandn_rm, "pandn xmm3, xmmword ptr [rsi]", KV) \
	X(xorps_rr, "xorps xmm1, xmm2", KV) \
	X(xorps_rm, "xorps xmm3, xmmword ptr [rsi]", KV) \
	X(orps_rr, "orps xmm1, xmm2", KV) \
	X(orps_rm, "orps xmm3, xmmword ptr [rsi]", KV) \
	X(andps_rr, "andps xmm1, xmm2", KV) \
	X(andps_rm, "andps xmm3, xmmword ptr [rsi]", KV) \
	X(andnps_rr, "andnps xmm1, xmm2", KV) \
	X(andnps_rm, "andnps xmm3, xmmword ptr [rsi]", KV) \
	X(xorpd_rr, "xorpd xmm1, xmm2", KV) \
	X(xorpd_rm, "xorpd xmm3, xmmword ptr [rsi]", KV) \
	X(orpd_rr, "orpd xmm1, xmm2", KV) \
	X(orpd_rm, "orpd xmm3, xmmword ptr [rsi]", KV) \
	X(andpd_rr, "andpd xmm1, xmm2", KV) \
	X(andpd_rm, "andpd xmm3, xmmword ptr [rsi]", KV) \
	X(andnpd_rr, "andnpd xmm1, xmm2", KV) \
	X(andnpd_rm, "andnpd xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpeqb_rr, "pcmpeqb xmm1, xmm2", KV) \
	X(pcmpeqb_rm, "pcmpeqb xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpeqw_rr, "pcmpeqw xmm1, xmm2", KV) \
	X(pcmpeqw_rm, "pcmpeqw xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpeqd_rr, "pcmpeqd xmm1, xmm2", KV) \
	X(pcmpeqd_rm, "pcmpeqd xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpgtb_rr, "pcmpgtb xmm1, xmm2", KV) \
	X(pcmpgtb_rm, "pcmpgtb xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpgtw_rr, "pcmpgtw xmm1, xmm2", KV) \
	X(pcmpgtw_rm, "pcmpgtw xmm3, xmmword ptr [rsi]", KV) \
	X(pcmpgtd_rr, "pcmpgtd xmm1, xmm2", KV) \
	X(pcmpgtd_rm, "pcmpgtd xmm3, xmmword ptr [rsi]", KV) \
	X(pminub_rr, "pminub xmm1, xmm2", KV) \
	X(pminub_rm, "pminub xmm3, xmmword ptr [rsi]", KV) \
	X(pmaxub_rr, "pmaxub xmm1, xmm2", KV) \
	X(pmaxub_rm, "pmaxub xmm3, xmmword ptr [rsi]", KV) \
	X(pminsw_rr, "pminsw xmm1, xmm2", KV) \
	X(pminsw_rm, "pminsw xmm3, xmmword ptr [rsi]", KV) \
	X(pmaxsw_rr, "pmaxsw xmm1, xmm2", KV) \
	X(pmaxsw_rm, "pmaxsw xmm3, xmmword ptr [rsi]", KV) \
	X(paddb_rr, "paddb xmm1, xmm2", KV) \
	X(paddb_rm, "paddb xmm3, xmmword ptr [rsi]", KV) \
	X(paddw_rr, "paddw xmm1, xmm2", KV) \
	X(paddw_rm, "paddw xmm3, xmmword ptr [rsi]", KV) \
	X(paddd_rr, "paddd xmm1, xmm2", KV) \
	X(paddd_rm, "paddd xmm3, xmmword ptr [rsi]", KV) \
	X(paddq_rr, "paddq xmm1, xmm2", KV) \
	X(paddq_rm, "paddq xmm3, xmmword ptr [rsi]", KV) \
	X(psubb_rr, "psubb xmm1, xmm2", KV) \
	X(psubb_rm, "psubb xmm3, xmmword ptr [rsi]", KV) \
	X(psubw_rr, "psubw xmm1, xmm2", KV) \
	X(psubw_rm, "psubw xmm3, xmmword ptr [rsi]", KV) \
	X(psubd_rr, "psubd xmm1, xmm2", KV) \
	X(psubd_rm, "psubd xmm3, xmmword ptr [rsi]", KV) \
	X(psubq_rr, "psubq xmm1, xmm2", KV) \
	X(psubq_rm, "psubq xmm3, xmmword ptr [rsi]", KV) \
	X(paddusb_rr, "paddusb xmm1, xmm2", KV) \
	X(paddusb_rm, "paddusb xmm3, xmmword ptr [rsi]", KV) \
	X(paddusw_rr, "paddusw xmm1, xmm2", KV) \
	X(paddusw_rm, "paddusw xmm3, xmmword ptr [rsi]", KV) \
	X(psubusb_rr, "psubusb xmm1, xmm2", KV) \
	X(psubusb_rm, "psubusb xmm3, xmmword ptr [rsi]", KV) \
	X(psubusw_rr, "psubusw xmm1, xmm2", KV) \
	X(psubusw_rm, "psubusw xmm3, xmmword ptr [rsi]", KV) \
	X(paddsb_rr, "paddsb xmm1, xmm2", KV) \
	X(paddsb_rm, "paddsb xmm3, xmmword ptr [rsi]", KV) \
	X(paddsw_rr, "paddsw xmm1, xmm2", KV) \
	X(paddsw_rm, "paddsw xmm3, xmmword ptr [rsi]", KV) \
	X(psubsb_rr, "psubsb xmm1, xmm2", KV) \
	X(psubsb_rm, "psubsb xmm3, xmmword ptr [rsi]", KV) \
	X(psubsw_rr, "psubsw xmm1, xmm2", KV) \
	X(psubsw_rm, "psubsw xmm3, xmmword ptr [rsi]", KV) \
	X(psllw_rr, "psllw xmm1, xmm2", KV) \
	X(psllw_rm, "psllw xmm3, xmmword ptr [rsi]", KV) \
	X(pslld_rr, "pslld xmm1, xmm2", KV) \
	X(pslld_rm, "pslld xmm3, xmmword ptr [rsi]", KV) \
	X(psllq_rr, "psllq xmm1, xmm2", KV) \
	X(psllq_rm, "psllq xmm3, xmmword ptr [rsi]", KV) \
	X(psrlw_rr, "psrlw xmm1, xmm2", KV) \
	X(psrlw_rm, "psrlw xmm3, xmmword ptr [rsi]", KV) \
	X(psrld_rr, "psrld xmm1, xmm2", KV) \
	X(psrld_rm, "psrld xmm3, xmmword ptr [rsi]", KV) \
	X(psrlq_rr, "psrlq xmm1, xmm2", KV) \
	X(psrlq_rm, "psrlq xmm3, xmmword ptr [rsi]", KV) \
	X(psraw_rr, "psraw xmm1, xmm2", KV) \
	X(psraw_rm, "psraw xmm3, xmmword ptr [rsi]", KV) \
	X(psrad_rr, "psrad xmm1, xmm2", KV) \
	X(psrad_rm, "psrad xmm3, xmmword ptr [rsi]", KV) \
	X(punpcklbw_rr, "punpcklbw xmm1, xmm2", KV) \
	X(punpcklbw_rm, "punpcklbw xmm3, xmmword ptr [rsi]", KV) \
	X(punpcklwd_rr, "punpcklwd xmm1, xmm2", KV) \
	X(punpcklwd_rm, "punpcklwd xmm3, xmmword ptr [rsi]", KV) \
	X(punpckldq_rr, "punpckldq xmm1, xmm2", KV) \
	X(punpckldq_rm, "punpckldq xmm3, xmmword ptr [rsi]", KV) \
	X(punpcklqdq_rr, "punpcklqdq xmm1, xmm2", KV) \
	X(punpcklqdq_rm, "punpcklqdq xmm3, xmmword ptr [rsi]", KV) \
	X(punpckhbw_rr, "punpckhbw xmm1, xmm2", KV) \
	X(punpckhbw_rm, "punpckhbw xmm3, xmmword ptr [rsi]", KV) \
	X(punpckhwd_rr, "punpckhwd xmm1, xmm2", KV) \
	X(punpckhwd_rm, "punpckhwd xmm3, xmmword ptr [rsi]", KV) \
	X(punpckhdq_rr, "punpckhdq xmm1, xmm2", KV) \
	X(punpckhdq_rm, "punpckhdq xmm3, xmmword ptr [rsi]", KV) \
	X(punpckhqdq_rr, "punpckhqdq xmm1, xmm2", KV) \
	X(punpckhqdq_rm, "punpckhqdq xmm3, xmmword ptr [rsi]", KV) \
	X(packuswb_rr, "packuswb xmm1, xmm2", KV) \
	X(packuswb_rm, "packuswb xmm3, xmmword ptr [rsi]", KV) \
	X(packsswb_rr, "packsswb xmm1, xmm2", KV) \
	X(packsswb_rm, "packsswb xmm3, xmmword ptr [rsi]", KV) \
	X(packssdw_rr, "packssdw xmm1, xmm2", KV) \
	X(packssdw_rm, "packssdw xmm3, xmmword ptr [rsi]", KV) \
	X(pmullw_rr, "pmullw xmm1, xmm2", KV) \
	X(pmullw_rm, "pmullw xmm3, xmmword ptr [rsi]", KV) \
	X(pmulhw_rr, "pmulhw xmm1, xmm2", KV) \
	X(pmulhw_rm, "pmulhw xmm3, xmmword ptr [rsi]", KV) \
	X(pmulhuw_rr, "pmulhuw xmm1, xmm2", KV) \
	X(pmulhuw_rm, "pmulhuw xmm3, xmmword ptr [rsi]", KV) \
	X(pmuludq_rr, "pmuludq xmm1, xmm2", KV) \
	X(pmuludq_rm, "pmuludq xmm3, xmmword ptr [rsi]", KV) \
	X(pmaddwd_rr, "pmaddwd xmm1, xmm2", KV) \
	X(pmaddwd_rm, "pmaddwd xmm3, xmmword ptr [rsi]", KV) \
	X(psadbw_rr, "psadbw xmm1, xmm2", KV) \
	X(psadbw_rm, "psadbw xmm3, xmmword ptr [rsi]", KV) \
	X(pavgb_rr, "pavgb xmm1, xmm2", KV) \
	X(pavgb_rm, "pavgb xmm3, xmmword ptr [rsi]", KV) \
	X(pavgw_rr, "pavgw xmm1, xmm2", KV) \
	X(pavgw_rm, "pavgw xmm3, xmmword ptr [rsi]", KV) \
	X(pshufb_rr, "pshufb xmm1, xmm2", KV) \
	X(pshufb_rm, "pshufb xmm3, xmmword ptr [rsi]", KV) \
	X(pabsb_rr, "pabsb xmm1, xmm2", KV) \
	X(pabsb_rm, "pabsb xmm3, xmmword ptr [rsi]", KV) \
	X(pabsw_rr, "pabsw xmm1, xmm2", KV) \
	X(pabsw_rm, "pabsw xmm3, xmmword ptr [rsi]", KV) \
	X(pabsd_rr, "pabsd xmm1, xmm2", KV) \
	X(pabsd_rm, "pabsd xmm3, xmmword ptr [rsi]", KV) \
	X(psignb_rr, "psignb xmm1, xmm2", KV) \
	X(psignb_rm, "psignb xmm3, xmmword ptr [rsi]", KV) \
	X(psignw_rr, "psignw xmm1, xmm2", KV) \
	X(psignw_rm, "psignw xmm3, xmmword ptr [rsi]", KV) \
	X(psignd_rr, "psignd xmm1, xmm2", KV) \
	X(psignd_rm, "psignd xmm3, xmmword ptr [rsi]", KV) \
	X(phaddw_rr, "phaddw xmm1, xmm2", KV) \
	X(phaddw_rm, "phaddw xmm3, xmmword ptr [rsi]", KV) \
	X(phaddd_rr, "phaddd xmm1, xmm2", KV) \
	X(phaddd_rm, "phaddd xmm3, xmmword ptr [rsi]", KV) \
	X(phaddsw_rr, "phaddsw xmm1, xmm2", KV) \
	X(phaddsw_rm, "phaddsw xmm3, xmmword ptr [rsi]", KV) \
	X(phsubw_rr, "phsubw xmm1, xmm2", KV) \
	X(phsubw_rm, "phsubw xmm3, xmmword ptr [rsi]", KV) \
	X(phsubd_rr, "phsubd xmm1, xmm2", KV) \
	X(phsubd_rm, "phsubd xmm3, xmmword ptr [rsi]", KV) \
	X(phsubsw_rr, "phsubsw xmm1, xmm2", KV) \
	X(phsubsw_rm, "phsubsw xmm3, xmmword ptr [rsi]", KV) \
	X(pmaddubsw_rr, "pmaddubsw xmm1, xmm2", KV) \
	X(pmaddubsw_rm, "pmaddubsw xmm3, xmmword ptr [rsi]", KV) \
	X(pmulhrsw_rr, "pmulhrsw xmm1, xmm2", KV) \
	X(pmulhrsw_rm, "pmulhrsw xmm3, xmmword ptr [rsi]", KV) \
	X(unpcklps_rr, "unpcklps xmm1, xmm2", KV) \
	X(unpcklps_rm, "unpcklps xmm3, xmmword ptr [rsi]", KV) \
	X(unpckhps_rr, "unpckhps xmm1, xmm2", KV) \
	X(unpckhps_rm, "unpckhps xmm3, xmmword ptr [rsi]", KV) \
	X(unpcklpd_rr, "unpcklpd xmm1, xmm2", KV) \
	X(unpcklpd_rm, "unpcklpd xmm3, xmmword ptr [rsi]", KV) \
	X(unpckhpd_rr, "unpckhpd xmm1, xmm2", KV) \
	X(unpckhpd_rm, "unpckhpd xmm3, xmmword ptr [rsi]", KV) \
	X(movsldup_rr, "movsldup xmm1, xmm2", KV) \
	X(movsldup_rm, "movsldup xmm3, xmmword ptr [rsi]", KV) \
	X(movshdup_rr, "movshdup xmm1, xmm2", KV) \
	X(movshdup_rm, "movshdup xmm3, xmmword ptr [rsi]", KV) \
	X(addps_rr, "addps xmm1, xmm2", KV) \
	X(addps_rm, "addps xmm3, xmmword ptr [rsi]", KV) \
	X(addpd_rr, "addpd xmm1, xmm2", KV) \
	X(addpd_rm, "addpd xmm3, xmmword ptr [rsi]", KV) \
	X(addss_rr, "addss xmm1, xmm2", KV) \
	X(addss_rm, "addss xmm3, dword ptr [rsi]", KV) \
	X(addsd_rr, "addsd xmm1, xmm2", KV) \
	X(addsd_rm, "addsd xmm3, qword ptr [rsi]", KV) \
	X(subps_rr, "subps xmm1, xmm2", KV) \
	X(subps_rm, "subps xmm3, xmmword ptr [rsi]", KV) \
	X(subpd_rr, "subpd xmm1, xmm2", KV) \
	X(subpd_rm, "subpd xmm3, xmmword ptr [rsi]", KV) \
	X(subss_rr, "subss xmm1, xmm2", KV) \
	X(subss_rm, "subss xmm3, dword ptr [rsi]", KV) \
	X(subsd_rr, "subsd xmm1, xmm2", KV) \
	X(subsd_rm, "subsd xmm3, qword ptr [rsi]", KV) \
	X(mulps_rr, "mulps xmm1, xmm2", KV) \
	X(mulps_rm, "mulps xmm3, xmmword ptr [rsi]", KV) \
	X(mulpd_rr, "mulpd xmm1, xmm2", KV) \
	X(mulpd_rm, "mulpd xmm3, xmmword ptr [rsi]", KV) \
	X(mulss_rr, "mulss xmm1, xmm2", KV) \
	X(mulss_rm, "mulss xmm3, dword ptr [rsi]", KV) \
	X(mulsd_rr, "mulsd xmm1, xmm2", KV) \
	X(mulsd_rm, "mulsd xmm3, qword ptr [rsi]", KV) \
	X(divps_rr, "divps xmm1, xmm2", KV) \
	X(divps_rm, "divps xmm3, xmmword ptr [rsi]", KV) \
	X(divpd_rr, "divpd xmm1, xmm2", KV) \
	X(divpd_rm, "divpd xmm3, xmmword ptr [rsi]", KV) \
	X(divss_rr, "divss xmm1, xmm2", KV) \
	X(divss_rm, "divss xmm3, dword ptr [rsi]", KV) \
	X(divsd_rr, "divsd xmm1, xmm2", KV) \
	X(divsd_rm, "divsd xmm3, qword ptr [rsi]", KV) \
	X(minps_rr, "minps xmm1, xmm2", KV) \
	X(minps_rm, "minps xmm3, xmmword ptr [rsi]", KV) \
	X(minpd_rr, "minpd xmm1, xmm2", KV) \
	X(minpd_rm, "minpd xmm3, xmmword ptr [rsi]", KV) \
	X(minss_rr, "minss xmm1, xmm2", KV) \
	X(minss_rm, "minss xmm3, dword ptr [rsi]", KV) \
	X(minsd_rr, "minsd xmm1, xmm2", KV) \
	X(minsd_rm, "minsd xmm3, qword ptr [rsi]", KV) \
	X(maxps_rr, "maxps xmm1, xmm2", KV) \
	X(maxps_rm, "maxps xmm3, xmmword ptr [rsi]", KV) \
	X(maxpd_rr, "maxpd xmm1, xmm2", KV) \
	X(maxpd_rm, "maxpd xmm3, xmmword ptr [rsi]", KV) \
	X(maxss_rr, "maxss xmm1, xmm2", KV) \
	X(maxss_rm, "maxss xmm3, dword ptr [rsi]", KV) \
	X(maxsd_rr, "maxsd xmm1, xmm2", KV) \
	X(maxsd_rm, "maxsd xmm3, qword ptr [rsi]", KV) \
	X(sqrtps_rr, "sqrtps xmm1, xmm2", KV) \
	X(sqrtps_rm, "sqrtps xmm3, xmmword ptr [rsi]", KV) \
	X(sqrtpd_rr, "sqrtpd xmm1, xmm2", KV) \
	X(sqrtpd_rm, "sqrtpd xmm3, xmmword ptr [rsi]", KV) \
	X(sqrtss_rr, "sqrtss xmm1, xmm2", KV) \
	X(sqrtss_rm, "sqrtss xmm3, dword ptr [rsi]", KV) \
	X(sqrtsd_rr, "sqrtsd xmm1, xmm2", KV) \
	X(sqrtsd_rm, "sqrtsd xmm3, qword ptr [rsi]", KV) \
	X(cvtss2sd_rr, "cvtss2sd xmm1, xmm2", KV) \
	X(cvtss2sd_rm, "cvtss2sd xmm3, dword ptr [rsi]", KV) \
	X(cvtsd2ss_rr, "cvtsd2ss xmm1, xmm2", KV) \
	X(cvtsd2ss_rm, "cvtsd2ss xmm3, qword ptr [rsi]", KV) \
	X(cvtdq2ps_rr, "cvtdq2ps xmm1, xmm2", KV) \
	X(cvtdq2ps_rm, "cvtdq2ps xmm3, xmmword ptr [rsi]", KV) \
	X(cvtps2dq_rr, "cvtps2dq xmm1, xmm2", KV) \
	X(cvtps2dq_rm, "cvtps2dq xmm3, xmmword ptr [rsi]", KV) \
	X(cvttps2dq_rr, "cvttps2dq xmm1, xmm2", KV) \
	X(cvttps2dq_rm, "cvttps2dq xmm3, xmmword ptr [rsi]", KV) \
	X(cvtdq2pd_rr, "cvtdq2pd xmm1, xmm2", KV) \
	X(cvtdq2pd_rm, "cvtdq2pd xmm3, qword ptr [rsi]", KV) \
	X(cvtpd2dq_rr, "cvtpd2dq xmm1, xmm2", KV) \
	X(cvtpd2dq_rm, "cvtpd2dq xmm3, xmmword ptr [rsi]", KV) \
	X(cvttpd2dq_rr, "cvttpd2dq xmm1, xmm2", KV) \
	X(cvttpd2dq_rm, "cvttpd2dq xmm3, xmmword ptr [rsi]", KV) \
	X(cvtps2pd_rr, "cvtps2pd xmm1, xmm2", KV) \
	X(cvtps2pd_rm, "cvtps2pd xmm3, qword ptr [rsi]", KV) \
	X(cvtpd2ps_rr, "cvtpd2ps xmm1, xmm2", KV) \
	X(cvtpd2ps_rm, "cvtpd2ps xmm3, xmmword ptr [rsi]", KV) \
	X(addsubps_rr, "addsubps xmm1, xmm2", KV) \
	X(addsubps_rm, "addsubps xmm3, xmmword ptr [rsi]", KV) \
	X(addsubpd_rr, "addsubpd xmm1, xmm2", KV) \
	X(addsubpd_rm, "addsubpd xmm3, xmmword ptr [rsi]", KV) \
	X(haddps_rr, "haddps xmm1, xmm2", KV) \
	X(haddps_rm, "haddps xmm3, xmmword ptr [rsi]", KV) \
	X(haddpd_rr, "haddpd xmm1, xmm2", KV) \
	X(haddpd_rm, "haddpd xmm3, xmmword ptr [rsi]", KV) \
	X(hsubps_rr, "hsubps xmm1, xmm2", KV) \
	X(hsubps_rm, "hsubps xmm3, xmmword ptr [rsi]", KV) \
	X(hsubpd_rr, "hsubpd xmm1, xmm2", KV) \
	X(hsubpd_rm, "hsubpd xmm3, xmmword ptr [rsi]", KV) \
	X(movddup_rr, "movddup xmm1, xmm2", KV) \
	X(movddup_rm, "movddup xmm3, qword ptr [rsi]", KV) \
	X(psllw_i0, "psllw xmm1, 0", KV) \
	X(psllw_i1, "psllw xmm1, 1", KV) \
	X(psllw_i7, "psllw xmm1, 7", KV) \
	X(psllw_i15, "psllw xmm1, 15", KV) \
	X(psllw_i16, "psllw xmm1, 16", KV) \
	X(psllw_i31, "psllw xmm1, 31", KV) \
	X(psllw_i33, "psllw xmm1, 33", KV) \
	X(psllw_i63, "psllw xmm1, 63", KV) \
	X(psllw_i64, "psllw xmm1, 64", KV) \
	X(psllw_i200, "psllw xmm1, 200", KV) \
	X(pslld_i0, "pslld xmm1, 0", KV) \
	X(pslld_i1, "pslld xmm1, 1", KV) \
	X(pslld_i7, "pslld xmm1, 7", KV) \
	X(pslld_i15, "pslld xmm1, 15", KV) \
	X(pslld_i16, "pslld xmm1, 16", KV) \
	X(pslld_i31, "pslld xmm1, 31", KV) \
	X(pslld_i33, "pslld xmm1, 33", KV) \
	X(pslld_i63, "pslld xmm1, 63", KV) \
	X(pslld_i64, "pslld xmm1, 64", KV) \
	X(pslld_i200, "pslld xmm1, 200", KV) \
	X(psllq_i0, "psllq xmm1, 0", KV) \
	X(psllq_i1, "psllq xmm1, 1", KV) \
	X(psllq_i7, "psllq xmm1, 7", KV) \
	X(psllq_i15, "psllq xmm1, 15", KV) \
	X(psllq_i16, "psllq xmm1, 16", KV) \
	X(psllq_i31, "psllq xmm1, 31", KV) \
	X(psllq_i33, "psllq xmm1, 33", KV) \
	X(psllq_i63, "psllq xmm1, 63", KV) \
	X(psllq_i64, "psllq xmm1, 64", KV) \
	X(psllq_i200, "psllq xmm1, 200", KV) \
	X(psrlw_i0, "psrlw xmm1, 0", KV) \
	X(psrlw_i1, "psrlw xmm1, 1", KV) \
	X(psrlw_i7, "psrlw xmm1, 7", KV) \
	X(psrlw_i15, "psrlw xmm1, 15", KV) \
	X(psrlw_i16, "psrlw xmm1, 16", KV) \
	X(psrlw_i31, "psrlw xmm1, 31", KV) \
	X(psrlw_i33, "psrlw xmm1, 33", KV) \
	X(psrlw_i63, "psrlw xmm1, 63", KV) \
	X(psrlw_i64, "psrlw xmm1, 64", KV) \
	X(psrlw_i200, "psrlw xmm1, 200", KV) \
	X(psrld_i0, "psrld xmm1, 0", KV) \
	X(psrld_i1, "psrld xmm1, 1", KV) \
	X(psrld_i7, "psrld xmm1, 7", KV) \
	X(psrld_i15, "psrld xmm1, 15", KV) \
	X(psrld_i16, "psrld xmm1, 16", KV) \
	X(psrld_i31, "psrld xmm1, 31", KV) \
	X(psrld_i33, "psrld xmm1, 33", KV) \
	X(psrld_i63, "psrld xmm1, 63", KV) \
	X(psrld_i64, "psrld xmm1, 64", KV) \
	X(psrld_i200, "psrld xmm1, 200", KV) \
	X(psrlq_i0, "psrlq xmm1, 0", KV) \
	X(psrlq_i1, "psrlq xmm1, 1", KV) \
	X(psrlq_i7, "psrlq xmm1, 7", KV) \
	X(psrlq_i15, "psrlq xmm1, 15", KV) \
	X(psrlq_i16, "psrlq xmm1, 16", KV) \
	X(psrlq_i31, "psrlq xmm1, 31", KV) \
	X(psrlq_i33, "psrlq xmm1, 33", KV) \
	X(psrlq_i63, "psrlq xmm1, 63", KV) \
	X(psrlq_i64, "psrlq xmm1, 64", KV) \
	X(psrlq_i200, "psrlq xmm1, 200", KV) \
	X(psraw_i0, "psraw xmm1, 0", KV) \
	X(psraw_i1, "psraw xmm1, 1", KV) \
	X(psraw_i7, "psraw xmm1, 7", KV) \
	X(psraw_i15, "psraw xmm1, 15", KV) \
	X(psraw_i16, "psraw xmm1, 16", KV) \
	X(psraw_i31, "psraw xmm1, 31", KV) \
	X(psraw_i33, "psraw xmm1, 33", KV) \
	X(psraw_i63, "psraw xmm1, 63", KV) \
	X(psraw_i64, "psraw xmm1, 64", KV) \
	X(psraw_i200, "psraw xmm1, 200", KV) \
	X(psrad_i0, "psrad xmm1, 0", KV) \
	X(psrad_i1, "psrad xmm1, 1", KV) \
	X(psrad_i7, "psrad xmm1, 7", KV) \
	X(psrad_i15, "psrad xmm1, 15", KV) \
	X(psrad_i16, "psrad xmm1, 16", KV) \
	X(psrad_i31, "psrad xmm1, 31", KV) \
	X(psrad_i33, "psrad xmm1, 33", KV) \
	X(psrad_i63, "psrad xmm1, 63", KV) \
	X(psrad_i64, "psrad xmm1, 64", KV) \
	X(psrad_i200, "psrad xmm1, 200", KV) \
	X(pslldq_i0, "pslldq xmm1, 0", KV) \
	X(pslldq_i1, "pslldq xmm1, 1", KV) \
	X(pslldq_i7, "pslldq xmm1, 7", KV) \
	X(pslldq_i15, "pslldq xmm1, 15", KV) \
	X(pslldq_i16, "pslldq xmm1, 16", KV) \
	X(pslldq_i31, "pslldq xmm1, 31", KV) \
	X(pslldq_i200, "pslldq xmm1, 200", KV) \
	X(psrldq_i0, "psrldq xmm1, 0", KV) \
	X(psrldq_i1, "psrldq xmm1, 1", KV) \
	X(psrldq_i7, "psrldq xmm1, 7", KV) \
	X(psrldq_i15, "psrldq xmm1, 15", KV) \
	X(psrldq_i16, "psrldq xmm1, 16", KV) \
	X(psrldq_i31, "psrldq xmm1, 31", KV) \
	X(psrldq_i200, "psrldq xmm1, 200", KV) \
	X(pshufd_0, "pshufd xmm1, xmm2, 0", KV) \
	X(pshufd_27, "pshufd xmm1, xmm2, 27", KV) \
	X(pshufd_228, "pshufd xmm1, xmm2, 228", KV) \
	X(pshufd_78, "pshufd xmm1, xmm2, 78", KV) \
	X(pshufd_255, "pshufd xmm1, xmm2, 255", KV) \
	X(pshufd_57, "pshufd xmm1, xmm2, 57", KV) \
	X(pshufd_m, "pshufd xmm3, xmmword ptr [rsi], 5", KV) \
	X(pshuflw_0, "pshuflw xmm1, xmm2, 0", KV) \
	X(pshuflw_27, "pshuflw xmm1, xmm2, 27", KV) \
	X(pshuflw_228, "pshuflw xmm1, xmm2, 228", KV) \
	X(pshuflw_78, "pshuflw xmm1, xmm2, 78", KV) \
	X(pshuflw_255, "pshuflw xmm1, xmm2, 255", KV) \
	X(pshuflw_57, "pshuflw xmm1, xmm2, 57", KV) \
	X(pshuflw_m, "pshuflw xmm3, xmmword ptr [rsi], 5", KV) \
	X(pshufhw_0, "pshufhw xmm1, xmm2, 0", KV) \
	X(pshufhw_27, "pshufhw xmm1, xmm2, 27", KV) \
	X(pshufhw_228, "pshufhw xmm1, xmm2, 228", KV) \
	X(pshufhw_78, "pshufhw xmm1, xmm2, 78", KV) \
	X(pshufhw_255, "pshufhw xmm1, xmm2, 255", KV) \
	X(pshufhw_57, "pshufhw xmm1, xmm2, 57", KV) \
	X(pshufhw_m, "pshufhw xmm3, xmmword ptr [rsi], 5", KV) \
	X(shufps_0, "shufps xmm1, xmm2, 0", KV) \
	X(shufps_27, "shufps xmm1, xmm2, 27", KV) \
	X(shufps_228, "shufps xmm1, xmm2, 228", KV) \
	X(shufps_78, "shufps xmm1, xmm2, 78", KV) \
	X(shufps_255, "shufps xmm1, xmm2, 255", KV) \
	X(shufps_57, "shufps xmm1, xmm2, 57", KV) \
	X(shufps_m, "shufps xmm3, xmmword ptr [rsi], 5", KV) \
	X(shufpd_0, "shufpd xmm1, xmm2, 0", KV) \
	X(shufpd_27, "shufpd xmm1, xmm2, 27", KV) \
	X(shufpd_228, "shufpd xmm1, xmm2, 228", KV) \
	X(shufpd_78, "shufpd xmm1, xmm2, 78", KV) \
	X(shufpd_255, "shufpd xmm1, xmm2, 255", KV) \
	X(shufpd_57, "shufpd xmm1, xmm2, 57", KV) \
	X(shufpd_m, "shufpd xmm3, xmmword ptr [rsi], 5", KV) \
	X(palignr_0, "palignr xmm1, xmm2, 0", KV) \
	X(palignr_27, "palignr xmm1, xmm2, 27", KV) \
	X(palignr_228, "palignr xmm1, xmm2, 228", KV) \
	X(palignr_78, "palignr xmm1, xmm2, 78", KV) \
	X(palignr_255, "palignr xmm1, xmm2, 255", KV) \
	X(palignr_57, "palignr xmm1, xmm2, 57", KV) \
	X(palignr_3, "palignr xmm1, xmm2, 3", KV) \
	X(palignr_9, "palignr xmm1, xmm2, 9", KV) \
	X(palignr_17, "palignr xmm1, xmm2, 17", KV) \
	X(palignr_40, "palignr xmm1, xmm2, 40", KV) \
	X(palignr_m, "palignr xmm3, xmmword ptr [rsi], 5", KV) \
	X(cmpps_0, "cmpps xmm1, xmm2, 0", KV) \
	X(cmpps_1, "cmpps xmm1, xmm2, 1", KV) \
	X(cmpps_2, "cmpps xmm1, xmm2, 2", KV) \
	X(cmpps_3, "cmpps xmm1, xmm2, 3", KV) \
	X(cmpps_4, "cmpps xmm1, xmm2, 4", KV) \
	X(cmpps_5, "cmpps xmm1, xmm2, 5", KV) \
	X(cmpps_6, "cmpps xmm1, xmm2, 6", KV) \
	X(cmpps_7, "cmpps xmm1, xmm2, 7", KV) \
	X(cmpps_m, "cmpps xmm3, xmmword ptr [rsi], 1", KV) \
	X(cmppd_0, "cmppd xmm1, xmm2, 0", KV) \
	X(cmppd_1, "cmppd xmm1, xmm2, 1", KV) \
	X(cmppd_2, "cmppd xmm1, xmm2, 2", KV) \
	X(cmppd_3, "cmppd xmm1, xmm2, 3", KV) \
	X(cmppd_4, "cmppd xmm1, xmm2, 4", KV) \
	X(cmppd_5, "cmppd xmm1, xmm2, 5", KV) \
	X(cmppd_6, "cmppd xmm1, xmm2, 6", KV) \
	X(cmppd_7, "cmppd xmm1, xmm2, 7", KV) \
	X(cmppd_m, "cmppd xmm3, xmmword ptr [rsi], 1", KV) \
	X(cmpss_0, "cmpss xmm1, xmm2, 0", KV) \
	X(cmpss_1, "cmpss xmm1, xmm2, 1", KV) \
	X(cmpss_2, "cmpss xmm1, xmm2, 2", KV) \
	X(cmpss_3, "cmpss xmm1, xmm2, 3", KV) \
	X(cmpss_4, "cmpss xmm1, xmm2, 4", KV) \
	X(cmpss_5, "cmpss xmm1, xmm2, 5", KV) \
	X(cmpss_6, "cmpss xmm1, xmm2, 6", KV) \
	X(cmpss_7, "cmpss xmm1, xmm2, 7", KV) \
	X(cmpss_m, "cmpss xmm3, dword ptr [rsi], 1", KV) \
	X(cmpsd_0, "cmpsd xmm1, xmm2, 0", KV) \
	X(cmpsd_1, "cmpsd xmm1, xmm2, 1", KV) \
	X(cmpsd_2, "cmpsd xmm1, xmm2, 2", KV) \
	X(cmpsd_3, "cmpsd xmm1, xmm2, 3", KV) \
	X(cmpsd_4, "cmpsd xmm1, xmm2, 4", KV) \
	X(cmpsd_5, "cmpsd xmm1, xmm2, 5", KV) \
	X(cmpsd_6, "cmpsd xmm1, xmm2, 6", KV) \
	X(cmpsd_7, "cmpsd xmm1, xmm2, 7", KV) \
	X(cmpsd_m, "cmpsd xmm3, qword ptr [rsi], 1", KV) \
	X(movaps_rr, "movaps xmm1, xmm2", KV) \
	X(movaps_rm, "movaps xmm1, [rsi]", KV) \
	X(movaps_mr, "movaps [rdi], xmm2", KV) \
	X(movapd_rm, "movapd xmm1, [rsi]", KV) \
	X(movdqa_rm, "movdqa xmm1, [rsi]", KV) \
	X(movdqa_mr, "movdqa [rdi], xmm2", KV) \
	X(movdqu_rm, "movdqu xmm1, [rsi+3]", KV) \
	X(movdqu_mr, "movdqu [rdi+5], xmm2", KV) \
	X(movups_rm, "movups xmm1, [rsi+1]", KV) \
	X(movupd_mr, "movupd [rdi+9], xmm2", KV) \
	X(lddqu, "lddqu xmm1, [rsi+7]", KV) \
	X(movntdq, "movntdq [rdi], xmm2", KV) \
	X(movntps, "movntps [rdi], xmm2", KV) \
	X(movss_rr, "movss xmm1, xmm2", KV) \
	X(movss_rm, "movss xmm1, dword ptr [rsi]", KV) \
	X(movss_mr, "movss dword ptr [rdi+4], xmm2", KV) \
	X(movsd_rr, "movsd xmm1, xmm2", KV) \
	X(movsd_rm, "movsd xmm1, qword ptr [rsi]", KV) \
	X(movsd_mr, "movsd qword ptr [rdi+4], xmm2", KV) \
	X(movlps_rm, "movlps xmm1, qword ptr [rsi]", KV) \
	X(movlps_mr, "movlps qword ptr [rdi], xmm2", KV) \
	X(movhps_rm, "movhps xmm1, qword ptr [rsi]", KV) \
	X(movhps_mr, "movhps qword ptr [rdi], xmm2", KV) \
	X(movlpd_rm, "movlpd xmm1, qword ptr [rsi]", KV) \
	X(movhpd_mr, "movhpd qword ptr [rdi], xmm2", KV) \
	X(movhlps, "movhlps xmm1, xmm2", KV) \
	X(movlhps, "movlhps xmm1, xmm2", KV) \
	X(movd_xr, "movd xmm1, eax", KV) \
	X(movd_xm, "movd xmm1, dword ptr [rsi]", KV) \
	X(movd_rx, "movd eax, xmm2", KV) \
	X(movd_mx, "movd dword ptr [rdi], xmm2", KV) \
	X(movq_xr, "movq xmm1, rax", KV) \
	X(movq_xm, "movq xmm1, qword ptr [rsi]", KV) \
	X(movq_rx, "movq rax, xmm2", KV) \
	X(movq_mx, "movq qword ptr [rdi], xmm2", KV) \
	X(movq_xx, "movq xmm1, xmm2", KV) \
	X(movnti, "movnti [rdi], rax", KV) \
	X(pmovmskb, "pmovmskb eax, xmm2", KV) \
	X(movmskps, "movmskps eax, xmm2", KV) \
	X(movmskpd, "movmskpd rax, xmm2", KV) \
	X(pextrw, "pextrw eax, xmm2, 5", KV) \
	X(pinsrw_r, "pinsrw xmm1, eax, 3", KV) \
	X(pinsrw_m, "pinsrw xmm1, word ptr [rsi], 7", KV) \
	X(cvtsi2ss_32, "cvtsi2ss xmm1, eax", KV) \
	X(cvtsi2ss_64, "cvtsi2ss xmm1, rax", KV) \
	X(cvtsi2sd_32, "cvtsi2sd xmm1, eax", KV) \
	X(cvtsi2sd_64, "cvtsi2sd xmm1, qword ptr [rsi]", KV) \
	X(cvtss2si_32, "cvtss2si eax, xmm2", KV) \
	X(cvtss2si_64, "cvtss2si rax, xmm2", KV) \
	X(cvttss2si_32, "cvttss2si eax, xmm2", KV) \
	X(cvttss2si_64, "cvttss2si rax, dword ptr [rsi]", KV) \
	X(cvtsd2si_32, "cvtsd2si eax, xmm2", KV) \
	X(cvtsd2si_64, "cvtsd2si rax, xmm2", KV) \
	X(cvttsd2si_32, "cvttsd2si eax, qword ptr [rsi]", KV) \
	X(cvttsd2si_64, "cvttsd2si rax, xmm2", KV) \
	X(ucomiss, "ucomiss xmm1, xmm2", KV) \
	X(comiss, "comiss xmm1, dword ptr [rsi]", KV) \
	X(ucomisd, "ucomisd xmm1, xmm2", KV) \
	X(comisd, "comisd xmm1, xmm2", KV) \
	X(stmxcsr, "stmxcsr dword ptr [rdi]", KV) \
	X(x_fadd, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; faddp st(1), st; fstp qword ptr [rdi]", KX) \
	X(x_fsub, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fsub st, st(1); fstp tbyte ptr [rdi]; fstp qword ptr [rdi+16]", KX) \
	X(x_fsubr, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fsubr st, st(1); fstp tbyte ptr [rdi]; fstp qword ptr [rdi+16]", KX) \
	X(x_fsubp, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fsubp st(1), st; fstp tbyte ptr [rdi]", KX) \
	X(x_fsubrp, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fsubrp st(1), st; fstp tbyte ptr [rdi]", KX) \
	X(x_fdivst, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fdiv st(1), st; fstp tbyte ptr [rdi]; fstp tbyte ptr [rdi+16]", KX) \
	X(x_fdivrst, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fdivr st(1), st; fstp tbyte ptr [rdi]; fstp tbyte ptr [rdi+16]", KX) \
	X(x_fmulm, "fld qword ptr [rsi]; fmul qword ptr [rsi+8]; fstp dword ptr [rdi]", KX) \
	X(x_fdivm32, "fld dword ptr [rsi]; fdiv dword ptr [rsi+8]; fst qword ptr [rdi]; fstp tbyte ptr [rdi+16]", KX) \
	X(x_fdivrm, "fld qword ptr [rsi]; fdivr qword ptr [rsi+8]; fstp tbyte ptr [rdi]", KX) \
	X(x_fsubm, "fld qword ptr [rsi]; fsub qword ptr [rsi+8]; fsubr dword ptr [rsi+4]; fstp tbyte ptr [rdi]", KX) \
	X(x_fiadd, "fld qword ptr [rsi]; fiadd dword ptr [rsi+8]; fimul word ptr [rsi+12]; fstp tbyte ptr [rdi]", KX) \
	X(x_fidiv, "fld qword ptr [rsi]; fidiv dword ptr [rsi+8]; fisubr word ptr [rsi+12]; fstp tbyte ptr [rdi]", KX) \
	X(x_fsqrt, "fld qword ptr [rsi]; fsqrt; fstp tbyte ptr [rdi]", KX) \
	X(x_frndint, "fld qword ptr [rsi]; frndint; fstp tbyte ptr [rdi]", KX) \
	X(x_fscale, "fild word ptr [rsi+8]; fld qword ptr [rsi]; fscale; fstp tbyte ptr [rdi]; fstp st(0)", KX) \
	X(x_fprem, "fld qword ptr [rsi+8]; fld qword ptr [rsi]; fprem; fstp tbyte ptr [rdi]; fstp st(0)", KX) \
	X(x_fchs, "fld qword ptr [rsi]; fchs; fld qword ptr [rsi+8]; fabs; fstp tbyte ptr [rdi]; fstp tbyte ptr [rdi+16]", KX) \
	X(x_fild, "fild word ptr [rsi]; fild dword ptr [rsi+4]; fild qword ptr [rsi+8]; fstp tbyte ptr [rdi]; fstp tbyte ptr [rdi+16]; fstp tbyte ptr [rdi+32]", KX) \
	X(x_fistp16, "fld qword ptr [rsi]; fistp word ptr [rdi]; fld qword ptr [rsi+8]; fist word ptr [rdi+2]; fstp st(0)", KX) \
	X(x_fistp32, "fld qword ptr [rsi]; fistp dword ptr [rdi]; fld qword ptr [rsi+8]; fist dword ptr [rdi+4]; fstp st(0)", KX) \
	X(x_fistp64, "fld qword ptr [rsi]; fistp qword ptr [rdi]; fld qword ptr [rsi+8]; fistp qword ptr [rdi+8]", KX) \
	X(x_fisttp, "fld qword ptr [rsi]; fisttp dword ptr [rdi]; fld qword ptr [rsi+8]; fisttp qword ptr [rdi+8]; fld qword ptr [rsi]; fisttp word ptr [rdi+16]", KX) \
	X(x_fst32, "fld qword ptr [rsi]; fst dword ptr [rdi]; fstp qword ptr [rdi+8]; fld tbyte ptr [rsi]; fstp tbyte ptr [rdi+16]", KX) \
	X(x_consts, "fldz; fld1; fldpi; fldl2e; fldl2t; fldlg2; fldln2; fstp tbyte ptr [rdi]; fstp tbyte ptr [rdi+10]; fstp tbyte ptr [rdi+20]; fstp tbyte ptr [rdi+30]; fstp tbyte ptr [rdi+40]; fstp tbyte ptr [rdi+50]; fstp tbyte ptr [rdi+60]", KX) \
	X(x_fcomi, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fcomi st, st(1); fstp st(0); fstp st(0)", KX) \
	X(x_fucomip, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fucomip st, st(1); fstp st(0)", KX) \
	X(x_fcomip, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fcomip st, st(1); fstp st(0)", KX) \
	X(x_fcom, "fld qword ptr [rsi]; fcom qword ptr [rsi+8]; fnstsw ax; fstp st(0)", KX) \
	X(x_fcompp, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fcompp; fnstsw ax", KX) \
	X(x_fucompp, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fucompp; fnstsw ax", KX) \
	X(x_fucom, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fucom st(1); fnstsw ax; fucomp st(1); fstp st(0)", KX) \
	X(x_ftst, "fld qword ptr [rsi]; ftst; fnstsw ax; fxam; fstp st(0); fstsw word ptr [rdi]", KX) \
	X(x_fxam_empty, "fxam; fnstsw ax", KX) \
	X(x_fxch, "fld qword ptr [rsi]; fld qword ptr [rsi+8]; fxch st(1); fstp qword ptr [rdi]; fstp qword ptr [rdi+8]", KX) \
	X(x_under, "fadd st, st(1); fstp qword ptr [rdi]; fnstsw ax", KX) \
	X(x_over, "fld1; fld1; fld1; fld1; fld1; fld1; fld1; fld1; fld qword ptr [rsi]; fnstsw ax; fstp tbyte ptr [rdi]; fninit", KX) \
	X(x_fldst, "fld qword ptr [rsi]; fld st(0); fmul st, st(1); fst st(1); fstp qword ptr [rdi]; fstp qword ptr [rdi+8]", KX) \
	X(x_cw, "fnstcw word ptr [rdi]; fldcw word ptr [rsi]; fld qword ptr [rsi+8]; fistp dword ptr [rdi+4]; fnstcw word ptr [rdi+8]", KX) \
	X(x_env, "fld qword ptr [rsi]; fld1; fnstenv [rdi]; fldenv [rdi]; fstp qword ptr [rdi+32]; fstp qword ptr [rdi+40]", KX) \
	X(x_clex, "fld qword ptr [rsi]; fdiv qword ptr [rsi+8]; fnstsw ax; fnclex; fstp st(0); fwait", KX) \
	/* end */

enum { KV, KX };

#define EMIT(id, text, k) \
	".pushsection .rodata\n" "sform_" #id ":\n" text "\n" \
	"sform_" #id "_end:\n" ".popsection\n"
__asm__(".intel_syntax noprefix\n" FORMS(EMIT) ".att_syntax prefix\n");

#define DECL(id, text, k) \
	extern const uint8_t sform_##id[] __attribute__((visibility("hidden"))); \
	extern const uint8_t sform_##id##_end[] __attribute__((visibility("hidden")));
FORMS(DECL)

struct form {
	const char *name;
	const uint8_t *start, *end;
	int kind;
};
#define ENTRY(id, text, k) { text, sform_##id, sform_##id##_end, k },
static const struct form forms[] = { FORMS(ENTRY) };
#define NR_FORMS (sizeof(forms) / sizeof(forms[0]))

/* ---- inputs ------------------------------------------------------------ */

static const uint32_t f32_edge[] = {
	0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x3fc00000, 0x40200000,
	0xc0600000, 0x7fc00000, 0xffc00000, 0x7fa00000, 0x7f800000, 0xff800000,
	0x00000001, 0x807fffff, 0x00800000, 0x7f7fffff, 0xff7fffff, 0x4f000000,
	0xcf000000, 0x5f000000, 0xdf000000, 0x3f000000, 0x3fc00001, 0x4b800001,
	0x42f60000, 0x3dcccccd, 0x47000000, 0xc7000080,
};
static const uint64_t f64_edge[] = {
	0x0000000000000000ull, 0x8000000000000000ull, 0x3ff0000000000000ull,
	0xbff0000000000000ull, 0x3ff8000000000000ull, 0x4004000000000000ull,
	0xc00c000000000000ull, 0x7ff8000000000000ull, 0xfff8000000000000ull,
	0x7ff4000000000000ull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
	0x0000000000000001ull, 0x800fffffffffffffull, 0x0010000000000000ull,
	0x7fefffffffffffffull, 0xffefffffffffffffull, 0x41e0000000000000ull,
	0xc1e0000000000000ull, 0x43e0000000000000ull, 0xc3e0000000000000ull,
	0x41dfffffffc00000ull, 0x3fe0000000000000ull, 0x3fb999999999999aull,
	0x4059000000000000ull, 0x40e0000000000000ull, 0x47efffffe0000000ull,
	0x3690000000000000ull, 0x36a0000000000001ull, 0xc0dfffe000000000ull,
};
static const uint32_t i_edge[] = {
	0, 1, 0xffffffff, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff,
	0x80000000, 0x00ff00ff, 0x80808080, 0x7f7f7f7f, 0x01020304, 0xfffe0001,
	0x00008000, 0x80007fff,
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* 16 bytes in one of four flavours. */
static void fill16(uint8_t *p, unsigned flavour)
{
	for (unsigned l = 0; l < 4; l++) {
		uint32_t v;

		switch (flavour & 3) {
		case 0: v = f32_edge[rnd() % N(f32_edge)]; break;
		case 1: {
			uint64_t d = f64_edge[rnd() % N(f64_edge)];

			memcpy(p + 8 * (l / 2), &d, 8);
			l |= 1;
			continue;
		}
		case 2: v = i_edge[rnd() % N(i_edge)]; break;
		default: v = (uint32_t)rnd(); break;
		}
		memcpy(p + 4 * l, &v, 4);
	}
}

/* x87 data: doubles, with integer-ish halves for FILD/FIADD forms. */
static void fill_x87(uint8_t *p, unsigned k)
{
	uint64_t a = f64_edge[k % N(f64_edge)];
	uint64_t b = f64_edge[(k / N(f64_edge) + k) % N(f64_edge)];

	if (k % 5 == 4) { /* integers and small counts */
		int64_t ia = (int64_t)(rnd() % 2001) - 1000;

		memcpy(p, &a, 8);
		memcpy(p + 8, &ia, 8);
		memcpy(p + 12, &(int16_t){ (int16_t)(rnd() % 40 - 20) }, 2);
		return;
	}
	memcpy(p, &a, 8);
	memcpy(p + 8, &b, 8);
}

/* ---- one case ---------------------------------------------------------- */

static int failures_reported;

static void setup_cpu(struct emu_cpu *cpu, struct guest_mem *gm)
{
	emu_cpu_init(cpu, gm, NULL, NULL);
	emu_cpu_set_long_mode(cpu, CODE);
	cpu->seg[EMU_SEG_CS].sel = 0x33;
	cpu->seg[EMU_SEG_SS].sel = 0x2b;
	cpu->cr0 |= CR0_MP | CR0_NE;
	cpu->cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
	emu_cpu_update_mode(cpu);
	emu_x87_reset(cpu);
	cpu->gpr[EMU_RSP] = STACK;
}

static bool check_case(struct native_env *e, const struct form *f,
		       const struct nstate *in, const uint8_t *data)
{
	struct nstate nat = *in;
	struct emu_cpu cpu;
	size_t len = (size_t)(f->end - f->start);
	uint8_t *g = gm_ptr(&e->gm, TEST_BASE, TEST_SIZE);
	uint8_t *hd = e->host + (DATA - TEST_BASE);
	uint8_t *gd = g + (DATA - TEST_BASE);
	char why[200] = "";
	int steps = 0, r = 0;
	bool ok = true;
	uint64_t fl;

	memcpy(hd, data, 256);
	memcpy(gd, data, 256);

	native_run(&nat);

	setup_cpu(&cpu, &e->gm);
	for (int i = 0; i < 8; i++)
		memcpy(cpu.xmm[i], in->xmm[i], 16);
	for (int i = 0; i < 6; i++)
		cpu.gpr[i < 4 ? i : i + 2] = in->gpr[i];
	emu_flags_set(&cpu, in->rflags);
	cpu.mxcsr = in->mxcsr;
	cpu.fcw = in->fcw;
	while (cpu.rip != CODE + len && steps++ < 64) {
		r = emu_step(&cpu);
		if (r)
			break;
	}
	fl = emu_flags_get(&cpu);
	if (r) {
		snprintf(why, sizeof(why), "emu returned %#x at +%#lx", r,
			 (unsigned long)(cpu.rip - CODE));
		ok = false;
	}
	for (int i = 0; ok && i < 8; i++) {
		if (memcmp(nat.xmm[i], cpu.xmm[i], 16)) {
			uint64_t n[2], m[2];

			memcpy(n, nat.xmm[i], 16);
			memcpy(m, cpu.xmm[i], 16);
			snprintf(why, sizeof(why),
				 "xmm%d %016lx%016lx vs %016lx%016lx", i,
				 (unsigned long)n[1], (unsigned long)n[0],
				 (unsigned long)m[1], (unsigned long)m[0]);
			ok = false;
		}
	}
	for (int i = 0; ok && i < 6; i++) {
		uint64_t eg = cpu.gpr[i < 4 ? i : i + 2];

		if (nat.gpr[i] != eg) {
			snprintf(why, sizeof(why), "gpr%d %#lx vs %#lx", i,
				 (unsigned long)nat.gpr[i], (unsigned long)eg);
			ok = false;
		}
	}
	if (ok && ((nat.rflags ^ fl) & EMU_FL_STATUS)) {
		snprintf(why, sizeof(why), "flags %#lx vs %#lx",
			 (unsigned long)nat.rflags, (unsigned long)fl);
		ok = false;
	}
	if (ok && nat.mxcsr != cpu.mxcsr) {
		snprintf(why, sizeof(why), "mxcsr %#x vs %#x", nat.mxcsr,
			 cpu.mxcsr);
		ok = false;
	}
	if (ok && f->kind == KX && (nat.fsw != cpu.fsw || nat.fcw != cpu.fcw)) {
		snprintf(why, sizeof(why), "fsw %#x vs %#x, fcw %#x vs %#x",
			 nat.fsw, cpu.fsw, nat.fcw, cpu.fcw);
		ok = false;
	}
	if (ok && memcmp(hd, gd, 256)) {
		int i = 0;

		while (hd[i] == gd[i])
			i++;
		snprintf(why, sizeof(why), "data differs at +%d: %02x vs %02x",
			 i, hd[i], gd[i]);
		ok = false;
	}
	if (!ok && failures_reported++ < 60) {
		uint64_t a[2], b[2], m[2];

		memcpy(a, in->xmm[1], 16);
		memcpy(b, in->xmm[2], 16);
		memcpy(m, data, 16);
		print_message("MISMATCH %-40s mxcsr=%#x fcw=%#x x1=%016lx%016lx x2=%016lx%016lx m=%016lx%016lx rax=%#lx: %s\n",
			      f->name, in->mxcsr, in->fcw,
			      (unsigned long)a[1], (unsigned long)a[0],
			      (unsigned long)b[1], (unsigned long)b[0],
			      (unsigned long)m[1], (unsigned long)m[0],
			      (unsigned long)in->gpr[0], why);
	}
	return ok;
}

/* Guest RAM with native_identity_map()'s tables (linear = physical) and
 * the test area mapped natively at TEST_BASE; native_run() calls into it
 * and returns, so no signals are involved. */
static int env_setup(void **state)
{
	return native_env_setup(state, TEST_SIZE, GUEST_RAM);
}

static const uint32_t mxcsr_modes[] = {
	0x1f80, 0x3f80, 0x5f80, 0x7f80, 0x9fc0, 0x1f80 | 0x3f,
};
static const uint16_t fcw_modes[] = { 0x037f, 0x077f, 0x0b7f, 0x0f7f, 0x027f, 0x007f };

#define CASES_PER_FORM 600

static void test_differential(void **state)
{
	struct native_env *e = *state;
	unsigned long cases = 0, bad = 0;
	unsigned forms_bad = 0;

	for (size_t fi = 0; fi < NR_FORMS; fi++) {
		const struct form *f = &forms[fi];
		size_t len = (size_t)(f->end - f->start);
		uint8_t *g = gm_ptr(&e->gm, TEST_BASE, TEST_SIZE);
		unsigned long fbad = 0;

		memset(e->host, 0xcc, 0x1000);
		memcpy(e->host, f->start, len);
		e->host[len] = 0xc3; /* ret */
		memcpy(g, e->host, 0x1000);
		for (unsigned k = 0; k < CASES_PER_FORM; k++) {
			struct nstate in;
			uint8_t data[256];

			memset(&in, 0, sizeof(in));
			for (int i = 0; i < 8; i++)
				fill16(in.xmm[i], (k + (unsigned)i * (k / 4)) % 4);
			/* Often make both sources the same flavour. */
			if (k & 8)
				fill16(in.xmm[2], k % 4);
			for (int i = 0; i < 256; i += 16)
				fill16(data + i, (k + (unsigned)i / 16) % 4);
			if (f->kind == KX)
				fill_x87(data, k);
			in.gpr[0] = (k & 1) ? rnd() : (uint64_t)(int64_t)(int32_t)i_edge[k % N(i_edge)];
			if (k % 7 == 3)
				memcpy(&in.gpr[0], in.xmm[2], 8);
			in.gpr[1] = rnd();
			in.gpr[2] = rnd();
			in.gpr[3] = rnd();
			in.gpr[4] = DATA;
			in.gpr[5] = DATA + 128;
			in.rflags = 0x202 | ((k & 16) ? EMU_FL_STATUS : 0);
			in.mxcsr = mxcsr_modes[k % N(mxcsr_modes)];
			in.fcw = fcw_modes[(k / 3) % N(fcw_modes)];
			if (f->kind == KX && strstr(f->name, "fldcw")) {
				uint16_t cw = fcw_modes[k % N(fcw_modes)];

				memcpy(data, &cw, 2);
			}
			cases++;
			if (!check_case(e, f, &in, data))
				fbad++;
		}
		if (fbad) {
			forms_bad++;
			bad += fbad;
			print_message("form %-44s %lu mismatches\n", f->name, fbad);
		}
	}
	print_message("differential: %zu forms, %lu cases, %lu mismatches in %u forms\n",
		      NR_FORMS, cases, bad, forms_bad);
	assert_int_equal(bad, 0);
}

/* ---- emulator-only tests ---------------------------------------------- */

static void emu_code(struct emu_cpu *cpu, struct guest_mem *gm,
		     const uint8_t *code, size_t len)
{
	setup_cpu(cpu, gm);
	assert_int_equal(gm_write(gm, CODE, code, len), 0);
}

static void test_faults(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t movdqa_ld[] = { 0x66, 0x0f, 0x6f, 0x06 };  /* movdqa xmm0, [rsi] */
	static const uint8_t movdqa_st[] = { 0x66, 0x0f, 0x7f, 0x06 };  /* movdqa [rsi], xmm0 */
	static const uint8_t movdqu_ld[] = { 0xf3, 0x0f, 0x6f, 0x06 };  /* movdqu xmm0, [rsi] */
	static const uint8_t paddb_m[] = { 0x66, 0x0f, 0xfc, 0x06 };    /* paddb xmm0, [rsi] */
	static const uint8_t addss_m[] = { 0xf3, 0x0f, 0x58, 0x06 };    /* addss xmm0, [rsi] */
	static const uint8_t ldmxcsr[] = { 0x0f, 0xae, 0x16 };          /* ldmxcsr [rsi] */
	static const uint8_t divps[] = { 0x0f, 0x5e, 0xc1 };            /* divps xmm0, xmm1 */
	static const uint8_t fld1[] = { 0xd9, 0xe8 };
	static const uint8_t fxsave[] = { 0x48, 0x0f, 0xae, 0x06 };     /* fxsave64 [rsi] */
	uint32_t v;
	uint8_t before[16];

	/* Misaligned aligned-form operands: #GP(0), nothing changed. */
	emu_code(&cpu, &e->gm, movdqa_ld, sizeof(movdqa_ld));
	cpu.gpr[EMU_RSI] = DATA + 8;
	memcpy(before, cpu.xmm[0], 16);
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	assert_true(cpu.exc.has_error && cpu.exc.error_code == 0);
	assert_int_equal(cpu.rip, CODE);
	cpu.gpr[EMU_RSI] = DATA;
	assert_int_equal(emu_step(&cpu), 0);
	emu_code(&cpu, &e->gm, movdqa_st, sizeof(movdqa_st));
	cpu.gpr[EMU_RSI] = DATA + 4;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	emu_code(&cpu, &e->gm, paddb_m, sizeof(paddb_m));
	cpu.gpr[EMU_RSI] = DATA + 1;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	/* Unaligned forms and scalar forms do not care. */
	emu_code(&cpu, &e->gm, movdqu_ld, sizeof(movdqu_ld));
	cpu.gpr[EMU_RSI] = DATA + 1;
	assert_int_equal(emu_step(&cpu), 0);
	emu_code(&cpu, &e->gm, addss_m, sizeof(addss_m));
	cpu.gpr[EMU_RSI] = DATA + 1;
	assert_int_equal(emu_step(&cpu), 0);
	/* A 16-byte store straddling into the void writes nothing. */
	emu_code(&cpu, &e->gm, movdqu_ld, sizeof(movdqu_ld));
	static const uint8_t movdqu_st[] = { 0xf3, 0x0f, 0x7f, 0x06 };
	emu_code(&cpu, &e->gm, movdqu_st, sizeof(movdqu_st));
	cpu.gpr[EMU_RSI] = 0x00007ffffffffff8ull; /* last bytes non-canonical */
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	cpu.gpr[EMU_RSI] = (1ull << 40) - 8;      /* second half not mapped */
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu.exc.cr2, 1ull << 40);

	/* CR4.OSFXSR = 0 or CR0.EM: #UD; CR0.TS: #NM. */
	emu_code(&cpu, &e->gm, divps, sizeof(divps));
	cpu.cr4 &= ~CR4_OSFXSR;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	cpu.cr4 |= CR4_OSFXSR;
	cpu.cr0 |= CR0_EM;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	cpu.cr0 &= ~CR0_EM;
	cpu.cr0 |= CR0_TS;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_NM));
	emu_code(&cpu, &e->gm, fld1, sizeof(fld1));
	cpu.cr0 |= CR0_TS;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_NM));
	cpu.cr0 &= ~CR0_TS;
	cpu.cr0 |= CR0_EM;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_NM));
	emu_code(&cpu, &e->gm, fxsave, sizeof(fxsave));
	cpu.gpr[EMU_RSI] = DATA;
	cpu.cr0 |= CR0_TS;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_NM));
	cpu.cr0 &= ~CR0_TS;
	cpu.gpr[EMU_RSI] = DATA + 8;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));

	/* LDMXCSR with reserved bits: #GP(0), MXCSR unchanged. */
	emu_code(&cpu, &e->gm, ldmxcsr, sizeof(ldmxcsr));
	cpu.gpr[EMU_RSI] = DATA;
	v = 0x10000 | 0x1f80;
	assert_int_equal(gm_write(&e->gm, DATA, &v, 4), 0);
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu.mxcsr, 0x1f80);
	v = 0x7f80 | 0x8000 | 0x40;
	assert_int_equal(gm_write(&e->gm, DATA, &v, 4), 0);
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.mxcsr, v);

	/* Unmasked divide-by-zero: #XM with OSXMMEXCPT, #UD without; the
	 * destination is not written and ZE is recorded. */
	emu_code(&cpu, &e->gm, divps, sizeof(divps));
	cpu.mxcsr = 0x1f80 & ~0x200; /* ZM clear */
	{
		float one = 1.0f, zero = 0.0f;

		for (int i = 0; i < 4; i++) {
			memcpy(cpu.xmm[0] + 4 * i, &one, 4);
			memcpy(cpu.xmm[1] + 4 * i, &zero, 4);
		}
	}
	memcpy(before, cpu.xmm[0], 16);
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_XM));
	assert_memory_equal(before, cpu.xmm[0], 16);
	assert_true(cpu.mxcsr & 0x4);
	cpu.cr4 &= ~CR4_OSXMMEXCPT;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	/* Masked: infinity, ZE set. */
	cpu.mxcsr = 0x1f80;
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.mxcsr, 0x1f84);
}

static void test_fxsave_roundtrip(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu, saved;
	/* fld1; fldpi; fxsave64 [rsi]; fninit; xorps xmm3, xmm3; ldmxcsr [rdi];
	 * fxrstor64 [rsi] */
	static const uint8_t code[] = { 0xd9, 0xe8, 0xd9, 0xeb,
		0x48, 0x0f, 0xae, 0x06, 0xdb, 0xe3, 0x0f, 0x57, 0xdb,
		0x0f, 0xae, 0x17, 0x48, 0x0f, 0xae, 0x0e };
	uint8_t area[512], nat[512] __attribute__((aligned(16)));
	uint32_t mx = 0x3f80;

	emu_code(&cpu, &e->gm, code, sizeof(code));
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 16; j++)
			cpu.xmm[i][j] = (uint8_t)(i * 16 + j);
	cpu.mxcsr = 0x5fa0;
	cpu.gpr[EMU_RSI] = DATA;
	cpu.gpr[EMU_RDI] = DATA + 0x400;
	assert_int_equal(gm_write(&e->gm, DATA + 0x400, &mx, 4), 0);
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(emu_step(&cpu), 0);
	saved = cpu;
	assert_int_equal(emu_step(&cpu), 0); /* fxsave64 */
	assert_int_equal(gm_read(&e->gm, DATA, area, 512), 0);
	/* Layout (SDM Vol. 1 table 10-2). */
	assert_int_equal(area[0] | area[1] << 8, 0x037f);
	assert_int_equal((area[2] | area[3] << 8) >> 11 & 7, 6); /* TOP */
	assert_int_equal(area[4], 0xc0);                      /* R6, R7 valid */
	assert_int_equal(area[24] | area[25] << 8, 0x5fa0);
	assert_memory_equal(area + 160 + 16 * 15, cpu.xmm[15], 16);
	/* ST(0) = pi, ST(1) = 1 in the host's own FXSAVE format. */
	{
		long double pi, one = 1.0L;

		__asm__ volatile("fldpi\n\tfstpt %0" : "=m"(pi));
		assert_memory_equal(area + 32, &pi, 10);
		assert_memory_equal(area + 48, &one, 10);
	}
	/* Same image as the host writes for the same state, in the parts
	 * that do not depend on the instruction pointers. */
	{
		uint8_t xm[16] __attribute__((aligned(16)));
		uint32_t hm, gm_ = 0x5fa0;

		memcpy(xm, cpu.xmm[3], 16);
		__asm__ volatile("stmxcsr %1\n\tldmxcsr %2\n\t"
				 "fninit\n\tfld1\n\tfldpi\n\t"
				 "movdqu %3, %%xmm3\n\tfxsave64 %0\n\t"
				 "fninit\n\tldmxcsr %1"
				 : "=m"(nat), "=m"(hm) : "m"(gm_), "m"(xm)
				 : "xmm3", "memory");
		assert_memory_equal(area, nat, 5);           /* FCW FSW FTW */
		assert_memory_equal(area + 24, nat + 24, 4); /* MXCSR */
		assert_memory_equal(area + 32, nat + 32, 128);
		assert_memory_equal(area + 160 + 48, nat + 160 + 48, 16);
	}
	assert_int_equal(emu_step(&cpu), 0); /* fninit */
	assert_int_equal(emu_step(&cpu), 0); /* xorps */
	assert_int_equal(emu_step(&cpu), 0); /* ldmxcsr */
	assert_int_equal(cpu.mxcsr, 0x3f80);
	assert_int_equal(cpu.x87_valid, 0);
	assert_int_equal(emu_step(&cpu), 0); /* fxrstor64 */
	assert_int_equal(cpu.mxcsr, saved.mxcsr);
	assert_int_equal(cpu.fsw, saved.fsw);
	assert_int_equal(cpu.fcw, saved.fcw);
	assert_int_equal(cpu.x87_valid, saved.x87_valid);
	assert_memory_equal(cpu.xmm, saved.xmm, sizeof(cpu.xmm));
	for (int i = 0; i < 8; i++)
		if (saved.x87_valid & (1u << i))
			assert_memory_equal(&cpu.x87_st[i], &saved.x87_st[i], 10);
	/* FXRSTOR with a reserved MXCSR bit: #GP, nothing restored. */
	area[26] = 0x01;
	assert_int_equal(gm_write(&e->gm, DATA, area, 512), 0);
	cpu.rip = CODE + 16;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
}

/* x87 stack faults and the deferred #MF. */
static void test_x87_faults(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	/* fadd st, st(1) on an empty stack; then fld1 */
	static const uint8_t code[] = { 0xd8, 0xc1, 0xd9, 0xe8 };
	/* fldz; fld1; fdiv st, st(1) (1/0, ZE); fld1 */
	static const uint8_t zdiv[] = { 0xd9, 0xee, 0xd9, 0xe8, 0xd8, 0xf1, 0xd9, 0xe8 };
	uint8_t ind[10] = { 0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff };

	emu_code(&cpu, &e->gm, code, sizeof(code));
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.fsw & 0x41, 0x41);                 /* IE | SF */
	assert_memory_equal(&cpu.x87_st[0], ind, 10);          /* indefinite */
	/* Unmasked invalid: ES set, the next FP instruction raises #MF. */
	emu_code(&cpu, &e->gm, zdiv, sizeof(zdiv));
	cpu.fcw = 0x037f & ~0x4; /* ZM clear */
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(emu_step(&cpu), 0);
	assert_true(cpu.fsw & 0x80);
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_MF));
	assert_int_equal(cpu.rip, CODE + 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_fxsave_roundtrip),
		cmocka_unit_test(test_x87_faults),
		cmocka_unit_test(test_differential),
	};

	return cmocka_run_group_tests(tests, env_setup, native_env_teardown);
}
