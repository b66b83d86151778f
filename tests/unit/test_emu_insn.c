/*
 * test_emu_insn.c - the software CPU's integer instructions, checked
 * against the host CPU (differential testing) and against the SDM for the
 * cases the host cannot show (faults on guest addresses, #UD counting,
 * atomicity across vCPU threads, 16/32-bit decoding).
 *
 * How the differential test works.  Code, data and stack live at the same
 * fixed addresses natively and in the guest: the test maps host memory at
 * TEST_BASE (MAP_FIXED_NOREPLACE) and builds guest RAM large enough to
 * contain the same guest-physical range, and the emulator runs in flat
 * 64-bit mode with paging's identity stand-in, so linear = physical = host
 * virtual address.  Each case then
 *   - fills code page (instruction + int3 everywhere else), data and stack
 *     identically on both sides,
 *   - natively: loads all 16 GPRs and RFLAGS, jumps to the instruction and
 *     catches whatever stops it -- the int3 that follows or any branch
 *     target (SIGTRAP), or the instruction's own exception (SIGFPE for #DE,
 *     SIGSEGV, ...) -- in a signal handler that copies the registers out of
 *     the ucontext and siglongjmps back (native_exec() in emu_native.c,
 *     shared with test_emu_sys.c and test_emu_sse.c),
 *   - in the emulator: the same registers, one emu_step(),
 *   - compares RIP (or the exception vector), all GPRs, the flags the SDM
 *     defines for that instruction and input, and the data and stack
 *     memory.
 * Inputs: every pair from an edge-value table (0, 1, -1, the signed and
 * unsigned limits of every width, shift counts around 0/1/7/8/15/16/31/32/
 * 63/64, patterns) with status flags all clear and all set (and DF both
 * ways for string instructions).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "accel/emu/blocks.h"
#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"
#include "accel/emu/emu.h"
#include "accel/emu/exec.h"
#include "core/memory.h"
#include "emu_native.h"

#define TEST_BASE  NATIVE_BASE
#define TEST_SIZE  0x10000ull
#define CODE       TEST_BASE
#define DATA       (TEST_BASE + 0x3000)   /* +-4 KiB compared */
#define STACK      (TEST_BASE + 0x8000)   /* RSP; +-4 KiB compared */
#define GUEST_RAM  (32ull << 20)

#define FL_STATUS (EMU_FL_CF | EMU_FL_PF | EMU_FL_AF | EMU_FL_ZF | EMU_FL_SF | \
		   EMU_FL_OF)
#define FL_CMP    (FL_STATUS | EMU_FL_DF)

/* ---- instruction forms ------------------------------------------------ */

struct form;
/* Per-input refinement: flags the SDM leaves undefined for this input,
 * registers whose result is undefined. */
typedef void (*undef_fn)(const struct form *f, const struct native_regs *in,
			 uint64_t *flags, uint32_t *regs);

enum input_kind {
	IN_DEFAULT,  /* RAX=a RBX=b RCX=b RDX=c, [RSI]=a,b [RDI]=b,a */
	IN_BITOFF,   /* like DEFAULT but RBX, RCX small signed bit offsets */
	IN_COUNT,    /* RCX = b & 63 (string, LOOP) */
	IN_CODEPTR,  /* RAX, [RSI], [RSP] are code addresses */
	IN_POPF,     /* [RSP] = a limited to status flags and DF */
	IN_OVL_UP,   /* RCX = b & 63, RDI = RSI + 3 just below a page end */
	IN_OVL_DOWN, /* RCX = b & 63, RDI = RSI - 3 likewise */
};

struct form {
	const char *name;
	const uint8_t *start, *end;
	uint8_t size;       /* operand size for undef_fn */
	uint8_t input;      /* enum input_kind */
	bool df;            /* also run with DF = 1 */
	uint64_t undef;     /* flags the SDM leaves undefined */
	undef_fn fn;
};

static void u_shift(const struct form *f, const struct native_regs *in,
		    uint64_t *fl, uint32_t *rg)
{
	unsigned c = in->gpr[EMU_RCX] & (f->size == 8 ? 63 : 31);

	if (c == 0)
		return;
	*fl |= EMU_FL_AF;
	if (c != 1)
		*fl |= EMU_FL_OF;
	if (c >= f->size * 8u)
		*fl |= EMU_FL_CF;
}

static void u_sar(const struct form *f, const struct native_regs *in, uint64_t *fl,
		  uint32_t *rg)
{
	unsigned c = in->gpr[EMU_RCX] & (f->size == 8 ? 63 : 31);

	if (c == 0)
		return;
	*fl |= EMU_FL_AF;
	if (c != 1)
		*fl |= EMU_FL_OF;
}

static void u_rot(const struct form *f, const struct native_regs *in, uint64_t *fl,
		  uint32_t *rg)
{
	unsigned c = in->gpr[EMU_RCX] & (f->size == 8 ? 63 : 31);

	if (c > 1)
		*fl |= EMU_FL_OF;
}

/* BSF/BSR with a zero source: the destination (RAX) is undefined. */
static void u_bsx(const struct form *f, const struct native_regs *in, uint64_t *fl,
		  uint32_t *rg)
{
	if ((in->gpr[EMU_RBX] & (f->size == 8 ? ~0ull :
				 (1ull << (f->size * 8)) - 1)) == 0)
		*rg |= 1u << EMU_RAX;
}

/* CMPXCHG r32 that fails: Intel writes the destination back (clearing bits
 * 63:32 like any 32-bit write, as the SDM's pseudo-code says), AMD leaves
 * it alone.  Either is right; do not compare it. */
static void u_cmpxchg32(const struct form *f, const struct native_regs *in,
			uint64_t *fl, uint32_t *rg)
{
	if ((uint32_t)in->gpr[EMU_RAX] != (uint32_t)in->gpr[EMU_RCX])
		*rg |= 1u << EMU_RCX;
}

#define U_LOGIC EMU_FL_AF
#define U_MUL   (EMU_FL_SF | EMU_FL_ZF | EMU_FL_AF | EMU_FL_PF)
#define U_DIV   FL_STATUS
#define U_BT    (EMU_FL_OF | EMU_FL_SF | EMU_FL_AF | EMU_FL_PF)
#define U_BSX   (EMU_FL_CF | EMU_FL_OF | EMU_FL_SF | EMU_FL_AF | EMU_FL_PF)
#define U_SHIMM (EMU_FL_AF | EMU_FL_OF) /* shift by an immediate > 1 */

/* X(id, "intel syntax", size, input, df, undef, fn) */
#define FORMS(X) \
	X(add_rr64, "add rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(add_rr32, "add eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(add_rr16, "add ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(add_rr8, "add al, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(add_rr8h, "add ah, bh", 1, IN_DEFAULT, 0, 0, NULL) \
	X(add_ri8, "add rax, -3", 8, IN_DEFAULT, 0, 0, NULL) \
	X(add_ri32, "add rax, 0x7fffffff", 8, IN_DEFAULT, 0, 0, NULL) \
	X(add_eax_imm, "add eax, 0x80000000", 4, IN_DEFAULT, 0, 0, NULL) \
	X(add_mr64, "add [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(add_rm32, "add ebx, [rsi]", 4, IN_DEFAULT, 0, 0, NULL) \
	X(add_mi8, "add byte ptr [rsi], 0x81", 1, IN_DEFAULT, 0, 0, NULL) \
	X(adc_rr64, "adc rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(adc_rr32, "adc eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(adc_rr16, "adc ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(adc_rr8, "adc al, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(adc_mr64, "adc [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sub_rr64, "sub rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sub_rr32, "sub eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(sub_rr16, "sub ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(sub_rr8, "sub al, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(sub_ri8, "sub rax, 1", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sub_mr32, "sub [rsi], ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_rr64, "sbb rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_rr32, "sbb eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_rr16, "sbb ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_rr8, "sbb al, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_rm8, "sbb bl, [rsi]", 1, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_rr64, "cmp rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_rr32, "cmp eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_rr16, "cmp ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_rr8, "cmp al, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_mi64, "cmp qword ptr [rsi], -1", 8, IN_DEFAULT, 0, 0, NULL) \
	X(adc_mr32, "adc dword ptr [rsi], ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(sub_mi64, "sub qword ptr [rsi], 5", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sbb_mr64, "sbb qword ptr [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_mr32, "cmp dword ptr [rsi], ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(and_mr32, "and dword ptr [rsi], ebx", 4, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(or_mi64, "or qword ptr [rsi], -16", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(xor_mr64, "xor qword ptr [rsi + 8], rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(test_mr64, "test qword ptr [rsi], rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(cmp_al_imm, "cmp al, 0x80", 1, IN_DEFAULT, 0, 0, NULL) \
	X(and_rr64, "and rax, rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(and_rr32, "and eax, ebx", 4, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(and_rr8, "and al, bl", 1, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(and_ri, "and rax, -16", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(or_rr64, "or rax, rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(or_rr16, "or ax, bx", 2, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(or_mr8, "or [rsi], bl", 1, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(xor_rr64, "xor rax, rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(xor_rr32, "xor eax, ebx", 4, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(xor_self, "xor eax, eax", 4, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(test_rr64, "test rax, rbx", 8, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(test_rr8, "test al, bl", 1, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(test_mi32, "test dword ptr [rsi], 0x80000001", 4, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(test_mi8, "test byte ptr [rsi + 1], 0x81", 1, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(cmp_mr8, "cmp byte ptr [rsi], bh", 1, IN_DEFAULT, 0, 0, NULL) \
	X(cmp_rm16, "cmp bx, word ptr [rsi + 6]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(xor_mr16, "xor word ptr [rsi + 2], bx", 2, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(sub_ri8h, "sub ch, 0x7f", 1, IN_DEFAULT, 0, 0, NULL) \
	X(and_rm8, "and dl, byte ptr [rsi + 9]", 1, IN_DEFAULT, 0, U_LOGIC, NULL) \
	X(inc_r64, "inc rax", 8, IN_DEFAULT, 0, 0, NULL) \
	X(inc_r32, "inc eax", 4, IN_DEFAULT, 0, 0, NULL) \
	X(inc_r16, "inc ax", 2, IN_DEFAULT, 0, 0, NULL) \
	X(inc_r8, "inc al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(inc_m64, "inc qword ptr [rsi]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(dec_r64, "dec rax", 8, IN_DEFAULT, 0, 0, NULL) \
	X(dec_r32, "dec eax", 4, IN_DEFAULT, 0, 0, NULL) \
	X(dec_r8, "dec al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(dec_m16, "dec word ptr [rsi]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(neg_r64, "neg rax", 8, IN_DEFAULT, 0, 0, NULL) \
	X(neg_r32, "neg eax", 4, IN_DEFAULT, 0, 0, NULL) \
	X(neg_r8, "neg al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(neg_m16, "neg word ptr [rsi]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(not_r64, "not rax", 8, IN_DEFAULT, 0, 0, NULL) \
	X(not_r32, "not eax", 4, IN_DEFAULT, 0, 0, NULL) \
	X(not_m8, "not byte ptr [rsi]", 1, IN_DEFAULT, 0, 0, NULL) \
	X(lock_add, "lock add [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(lock_sub32, "lock sub [rsi], ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(lock_inc, "lock inc dword ptr [rsi]", 4, IN_DEFAULT, 0, 0, NULL) \
	X(lock_adc8, "lock adc [rsi], bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(lock_xadd, "lock xadd [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(xadd_rr, "xadd rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(xadd_rr32, "xadd eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(xadd_m16, "xadd [rsi], bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cmpxchg_m64, "cmpxchg [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(lock_cmpxchg_m32, "lock cmpxchg [rsi], ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cmpxchg_r8, "cmpxchg cl, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(cmpxchg_r64, "cmpxchg rcx, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmpxchg_r32, "cmpxchg ecx, ebx", 4, IN_DEFAULT, 0, 0, u_cmpxchg32) \
	X(mov_rr64, "mov rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rr32, "mov eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rr16, "mov ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rr8, "mov al, bh", 1, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rr8rex, "mov sil, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(mov_ri64, "movabs rax, 0x8877665544332211", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_ri32, "mov eax, 0xdeadbeef", 4, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rsx, "mov rax, -2", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rm64, "mov rax, [rsi + 8]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mr32, "mov [rdi + 4], eax", 4, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mr8, "mov byte ptr [rsi + 3], bh", 1, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rm8, "mov ah, byte ptr [rsi + 5]", 1, IN_DEFAULT, 0, 0, NULL) \
	X(mov_rm16, "mov bx, word ptr [rsi + 6]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mi8, "mov byte ptr [rdi + 1], 0x9c", 1, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mi16, "mov word ptr [rsi + 2], 0x1234", 2, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mi64, "mov qword ptr [rsi + 8], -3", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mi64p, "mov qword ptr [rdi], 0x7eadbeef", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_mi32, "mov dword ptr [rdi + 4], 0x89abcdef", 4, IN_DEFAULT, 0, 0, NULL) \
	X(mov_sib, "mov rax, [rsi + r8*1 + 0]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(mov_riprel, "mov rax, [rip + 0x2ff9]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(movzx_8, "movzx eax, bl", 4, IN_DEFAULT, 0, 0, NULL) \
	X(movzx_16, "movzx rax, bx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(movzx_m8, "movzx ax, byte ptr [rsi + 1]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(movsx_8, "movsx rax, bl", 8, IN_DEFAULT, 0, 0, NULL) \
	X(movsx_16, "movsx eax, bx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(movsx_8h, "movsx eax, bh", 4, IN_DEFAULT, 0, 0, NULL) \
	X(movsxd, "movsxd rax, ebx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(movsxd_m, "movsxd rax, dword ptr [rsi + 4]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(lea_64, "lea rax, [rbx + rcx*4 + 0x10]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(lea_32, "lea eax, [rbx + rcx*8 - 1]", 4, IN_DEFAULT, 0, 0, NULL) \
	X(lea_a32, "lea rax, [ebx + ecx]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(lea_16, "lea ax, [rbx + 0x7fff]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(lea_rip, "lea rax, [rip + 0x100]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(xchg_rr, "xchg rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(xchg_rr32, "xchg ecx, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(xchg_rr8, "xchg ah, bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(xchg_mr, "xchg [rsi], rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(xchg_rm16, "xchg bx, [rsi]", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cbw, "cbw", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cwde, "cwde", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cdqe, "cdqe", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cwd, "cwd", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cdq, "cdq", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cqo, "cqo", 8, IN_DEFAULT, 0, 0, NULL) \
	X(bswap64, "bswap rax", 8, IN_DEFAULT, 0, 0, NULL) \
	X(bswap32, "bswap ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(bswap_r9, "bswap r9", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmovz64, "cmovz rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmovnz32, "cmovnz eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cmovb16, "cmovb ax, bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(cmovl32, "cmovl eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cmovle64m, "cmovle rax, [rsi + 8]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmova32, "cmova eax, ebx", 4, IN_DEFAULT, 0, 0, NULL) \
	X(cmovp64, "cmovp rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmovo64, "cmovo rax, rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(seto, "seto al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setno, "setno bl", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setb, "setb al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setae, "setae ah", 1, IN_DEFAULT, 0, 0, NULL) \
	X(sete, "sete al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setne, "setne r9b", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setbe, "setbe al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(seta, "seta al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(sets, "sets byte ptr [rsi]", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setns, "setns al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setp, "setp al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setnp, "setnp al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setl, "setl al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setge, "setge al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setle, "setle al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(setg, "setg al", 1, IN_DEFAULT, 0, 0, NULL) \
	X(shl_cl64, "shl rax, cl", 8, IN_DEFAULT, 0, 0, u_shift) \
	X(shl_cl32, "shl eax, cl", 4, IN_DEFAULT, 0, 0, u_shift) \
	X(shl_cl16, "shl ax, cl", 2, IN_DEFAULT, 0, 0, u_shift) \
	X(shl_cl8, "shl al, cl", 1, IN_DEFAULT, 0, 0, u_shift) \
	X(shl_1, "shl rax, 1", 8, IN_DEFAULT, 0, EMU_FL_AF, NULL) \
	X(shl_imm, "shl eax, 7", 4, IN_DEFAULT, 0, U_SHIMM, NULL) \
	X(shl_m, "shl qword ptr [rsi], cl", 8, IN_DEFAULT, 0, 0, u_shift) \
	X(shr_cl64, "shr rax, cl", 8, IN_DEFAULT, 0, 0, u_shift) \
	X(shr_cl32, "shr eax, cl", 4, IN_DEFAULT, 0, 0, u_shift) \
	X(shr_cl16, "shr ax, cl", 2, IN_DEFAULT, 0, 0, u_shift) \
	X(shr_cl8, "shr al, cl", 1, IN_DEFAULT, 0, 0, u_shift) \
	X(shr_1, "shr eax, 1", 4, IN_DEFAULT, 0, EMU_FL_AF, NULL) \
	X(shr_imm, "shr rax, 63", 8, IN_DEFAULT, 0, U_SHIMM, NULL) \
	X(sar_cl64, "sar rax, cl", 8, IN_DEFAULT, 0, 0, u_sar) \
	X(sar_cl32, "sar eax, cl", 4, IN_DEFAULT, 0, 0, u_sar) \
	X(sar_cl16, "sar ax, cl", 2, IN_DEFAULT, 0, 0, u_sar) \
	X(sar_cl8, "sar al, cl", 1, IN_DEFAULT, 0, 0, u_sar) \
	X(sar_1, "sar rax, 1", 8, IN_DEFAULT, 0, EMU_FL_AF, NULL) \
	X(sar_imm, "sar bx, 3", 2, IN_DEFAULT, 0, U_SHIMM, NULL) \
	X(rol_cl64, "rol rax, cl", 8, IN_DEFAULT, 0, 0, u_rot) \
	X(rol_cl32, "rol eax, cl", 4, IN_DEFAULT, 0, 0, u_rot) \
	X(rol_cl16, "rol ax, cl", 2, IN_DEFAULT, 0, 0, u_rot) \
	X(rol_cl8, "rol al, cl", 1, IN_DEFAULT, 0, 0, u_rot) \
	X(rol_1, "rol rax, 1", 8, IN_DEFAULT, 0, 0, NULL) \
	X(ror_cl64, "ror rax, cl", 8, IN_DEFAULT, 0, 0, u_rot) \
	X(ror_cl32, "ror eax, cl", 4, IN_DEFAULT, 0, 0, u_rot) \
	X(ror_cl16, "ror ax, cl", 2, IN_DEFAULT, 0, 0, u_rot) \
	X(ror_cl8, "ror al, cl", 1, IN_DEFAULT, 0, 0, u_rot) \
	X(ror_1, "ror eax, 1", 4, IN_DEFAULT, 0, 0, NULL) \
	X(ror_m, "ror word ptr [rsi], cl", 2, IN_DEFAULT, 0, 0, u_rot) \
	X(rol_imm64, "rol rax, 13", 8, IN_DEFAULT, 0, EMU_FL_OF, NULL) \
	X(rol_imm32, "rol ebx, 7", 4, IN_DEFAULT, 0, EMU_FL_OF, NULL) \
	X(rol_imm1, "rol ebx, 1", 4, IN_DEFAULT, 0, 0, NULL) \
	X(rol_imm0, "rol ebx, 32", 4, IN_DEFAULT, 0, 0, NULL) \
	X(ror_imm64, "ror rdx, 41", 8, IN_DEFAULT, 0, EMU_FL_OF, NULL) \
	X(ror_imm32, "ror eax, 22", 4, IN_DEFAULT, 0, EMU_FL_OF, NULL) \
	X(ror_imm1, "ror rax, 1", 8, IN_DEFAULT, 0, 0, NULL) \
	X(ror_imm0, "ror eax, 0", 4, IN_DEFAULT, 0, 0, NULL) \
	X(rcl_cl64, "rcl rax, cl", 8, IN_DEFAULT, 0, 0, u_rot) \
	X(rcl_cl32, "rcl eax, cl", 4, IN_DEFAULT, 0, 0, u_rot) \
	X(rcl_cl16, "rcl ax, cl", 2, IN_DEFAULT, 0, 0, u_rot) \
	X(rcl_cl8, "rcl al, cl", 1, IN_DEFAULT, 0, 0, u_rot) \
	X(rcl_1, "rcl rax, 1", 8, IN_DEFAULT, 0, 0, NULL) \
	X(rcr_cl64, "rcr rax, cl", 8, IN_DEFAULT, 0, 0, u_rot) \
	X(rcr_cl32, "rcr eax, cl", 4, IN_DEFAULT, 0, 0, u_rot) \
	X(rcr_cl16, "rcr ax, cl", 2, IN_DEFAULT, 0, 0, u_rot) \
	X(rcr_cl8, "rcr al, cl", 1, IN_DEFAULT, 0, 0, u_rot) \
	X(rcr_1, "rcr eax, 1", 4, IN_DEFAULT, 0, 0, NULL) \
	X(mul_64, "mul rbx", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(mul_32, "mul ebx", 4, IN_DEFAULT, 0, U_MUL, NULL) \
	X(mul_16, "mul bx", 2, IN_DEFAULT, 0, U_MUL, NULL) \
	X(mul_8, "mul bl", 1, IN_DEFAULT, 0, U_MUL, NULL) \
	X(mul_m64, "mul qword ptr [rsi + 8]", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul1_64, "imul rbx", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul1_32, "imul ebx", 4, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul1_16, "imul bx", 2, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul1_8, "imul bl", 1, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul2_64, "imul rax, rbx", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul2_32, "imul eax, ebx", 4, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul2_16, "imul ax, bx", 2, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul2_m, "imul rax, [rsi + 8]", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul3_8, "imul rax, rbx, -7", 8, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul3_32, "imul eax, ebx, 0x12345", 4, IN_DEFAULT, 0, U_MUL, NULL) \
	X(imul3_16, "imul ax, bx, 0x7fff", 2, IN_DEFAULT, 0, U_MUL, NULL) \
	X(div_64, "div rbx", 8, IN_DEFAULT, 0, U_DIV, NULL) \
	X(div_32, "div ebx", 4, IN_DEFAULT, 0, U_DIV, NULL) \
	X(div_16, "div bx", 2, IN_DEFAULT, 0, U_DIV, NULL) \
	X(div_8, "div bl", 1, IN_DEFAULT, 0, U_DIV, NULL) \
	X(div_m32, "div dword ptr [rsi + 8]", 4, IN_DEFAULT, 0, U_DIV, NULL) \
	X(idiv_64, "idiv rbx", 8, IN_DEFAULT, 0, U_DIV, NULL) \
	X(idiv_32, "idiv ebx", 4, IN_DEFAULT, 0, U_DIV, NULL) \
	X(idiv_16, "idiv bx", 2, IN_DEFAULT, 0, U_DIV, NULL) \
	X(idiv_8, "idiv bl", 1, IN_DEFAULT, 0, U_DIV, NULL) \
	X(bt_rr64, "bt rax, rbx", 8, IN_DEFAULT, 0, U_BT, NULL) \
	X(bt_rr32, "bt eax, ebx", 4, IN_DEFAULT, 0, U_BT, NULL) \
	X(bt_ri, "bt rax, 63", 8, IN_DEFAULT, 0, U_BT, NULL) \
	X(bts_rr64, "bts rax, rbx", 8, IN_DEFAULT, 0, U_BT, NULL) \
	X(btr_rr16, "btr ax, bx", 2, IN_DEFAULT, 0, U_BT, NULL) \
	X(btc_ri32, "btc eax, 31", 4, IN_DEFAULT, 0, U_BT, NULL) \
	X(bt_mr, "bt qword ptr [rsi + 16], rbx", 8, IN_BITOFF, 0, U_BT, NULL) \
	X(bts_mr32, "bts dword ptr [rsi + 16], ebx", 4, IN_BITOFF, 0, U_BT, NULL) \
	X(btr_mr16, "btr word ptr [rsi + 16], bx", 2, IN_BITOFF, 0, U_BT, NULL) \
	X(lock_btc_mr, "lock btc qword ptr [rsi + 16], rbx", 8, IN_BITOFF, 0, U_BT, NULL) \
	X(bts_mi, "bts word ptr [rsi], 13", 2, IN_DEFAULT, 0, U_BT, NULL) \
	X(bsf_64, "bsf rax, rbx", 8, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(bsf_32, "bsf eax, ebx", 4, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(bsf_16, "bsf ax, bx", 2, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(bsr_64, "bsr rax, rbx", 8, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(bsr_32, "bsr eax, ebx", 4, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(bsr_16, "bsr ax, bx", 2, IN_DEFAULT, 0, U_BSX, u_bsx) \
	X(clc, "clc", 8, IN_DEFAULT, 0, 0, NULL) \
	X(stc, "stc", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cmc, "cmc", 8, IN_DEFAULT, 0, 0, NULL) \
	X(cld, "cld", 8, IN_DEFAULT, 1, 0, NULL) \
	X(std, "std", 8, IN_DEFAULT, 1, 0, NULL) \
	X(lahf, "lahf", 8, IN_DEFAULT, 0, 0, NULL) \
	X(sahf, "sahf", 8, IN_DEFAULT, 0, 0, NULL) \
	X(nop, "nop", 8, IN_DEFAULT, 0, 0, NULL) \
	X(nop_long, "nop dword ptr [rax + rax*1 + 0]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(nop_66, ".byte 0x66, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0", 8, IN_DEFAULT, 0, 0, NULL) \
	X(endbr64, ".byte 0xf3, 0x0f, 0x1e, 0xfa", 8, IN_DEFAULT, 0, 0, NULL) \
	X(pause, "pause", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_r, "push rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_r12, "push r12", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_rsp, "push rsp", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_i8, "push -5", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_i32, "push 0x12345678", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_m, "push qword ptr [rsi]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(push_16, "push bx", 2, IN_DEFAULT, 0, 0, NULL) \
	X(pop_r, "pop rbx", 8, IN_DEFAULT, 0, 0, NULL) \
	X(pop_rsp, "pop rsp", 8, IN_DEFAULT, 0, 0, NULL) \
	X(pop_m, "pop qword ptr [rsi + 8]", 8, IN_DEFAULT, 0, 0, NULL) \
	X(pop_16, "pop ax", 2, IN_DEFAULT, 0, 0, NULL) \
	X(pushfq, "pushfq", 8, IN_DEFAULT, 1, 0, NULL) \
	X(popfq, "popfq", 8, IN_POPF, 0, 0, NULL) \
	X(leave, "leave", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jmp_rel8, "jmp .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jmp_rel32, "jmp .+0x400", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jmp_r, "jmp rax", 8, IN_CODEPTR, 0, 0, NULL) \
	X(jmp_m, "jmp qword ptr [rsi]", 8, IN_CODEPTR, 0, 0, NULL) \
	X(jo, "jo .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jno, "jno .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jb, "jb .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jae, "jae .+0x400", 8, IN_DEFAULT, 0, 0, NULL) \
	X(je, "je .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jne, "jne .+0x400", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jbe, "jbe .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(ja, "ja .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(js, "js .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jns, "jns .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jp, "jp .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jnp, "jnp .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jl, "jl .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jge, "jge .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jle, "jle .+0x400", 8, IN_DEFAULT, 0, 0, NULL) \
	X(jg, "jg .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(call_rel, "call .+0x80", 8, IN_DEFAULT, 0, 0, NULL) \
	X(call_r, "call rax", 8, IN_CODEPTR, 0, 0, NULL) \
	X(call_m, "call qword ptr [rsi]", 8, IN_CODEPTR, 0, 0, NULL) \
	X(ret, "ret", 8, IN_CODEPTR, 0, 0, NULL) \
	X(ret_imm, "ret 0x18", 8, IN_CODEPTR, 0, 0, NULL) \
	X(loop, "loop .+0x40", 8, IN_COUNT, 0, 0, NULL) \
	X(loope, "loope .+0x40", 8, IN_COUNT, 0, 0, NULL) \
	X(loopne, "loopne .+0x40", 8, IN_COUNT, 0, 0, NULL) \
	X(jrcxz, "jrcxz .+0x40", 8, IN_COUNT, 0, 0, NULL) \
	X(jecxz, "jecxz .+0x40", 8, IN_DEFAULT, 0, 0, NULL) \
	X(movsb, "movsb", 1, IN_COUNT, 1, 0, NULL) \
	X(movsq, "movsq", 8, IN_COUNT, 1, 0, NULL) \
	X(rep_movsb, "rep movsb", 1, IN_COUNT, 1, 0, NULL) \
	X(rep_movsd, "rep movsd", 4, IN_COUNT, 1, 0, NULL) \
	X(rep_movsq, "rep movsq", 8, IN_COUNT, 1, 0, NULL) \
	X(rep_movsb_up, "rep movsb", 1, IN_OVL_UP, 1, 0, NULL) \
	X(rep_movsb_down, "rep movsb", 1, IN_OVL_DOWN, 1, 0, NULL) \
	X(rep_movsq_up, "rep movsq", 8, IN_OVL_UP, 1, 0, NULL) \
	X(rep_movsd_down, "rep movsd", 4, IN_OVL_DOWN, 1, 0, NULL) \
	X(rep_stosq_cross, "rep stosq", 8, IN_OVL_UP, 1, 0, NULL) \
	X(stosb, "stosb", 1, IN_COUNT, 1, 0, NULL) \
	X(rep_stosb, "rep stosb", 1, IN_COUNT, 1, 0, NULL) \
	X(rep_stosw, "rep stosw", 2, IN_COUNT, 1, 0, NULL) \
	X(rep_stosq, "rep stosq", 8, IN_COUNT, 1, 0, NULL) \
	X(lodsb, "lodsb", 1, IN_COUNT, 1, 0, NULL) \
	X(lodsq, "lodsq", 8, IN_COUNT, 1, 0, NULL) \
	X(cmpsb, "cmpsb", 1, IN_COUNT, 1, 0, NULL) \
	X(repe_cmpsb, "repe cmpsb", 1, IN_COUNT, 1, 0, NULL) \
	X(repne_cmpsd, "repne cmpsd", 4, IN_COUNT, 1, 0, NULL) \
	X(scasb, "scasb", 1, IN_COUNT, 1, 0, NULL) \
	X(repne_scasb, "repne scasb", 1, IN_COUNT, 1, 0, NULL) \
	X(repe_scasq, "repe scasq", 8, IN_COUNT, 1, 0, NULL) \
	X(ud2, "ud2", 8, IN_DEFAULT, 0, 0, NULL) \

/* Assemble every form into .rodata between two local labels. */
#define EMIT(id, text, sz, inp, df, und, fn) \
	".pushsection .rodata\n" \
	"form_" #id ":\n" text "\n" \
	"form_" #id "_end:\n" \
	".popsection\n"
__asm__(".intel_syntax noprefix\n" FORMS(EMIT) ".att_syntax prefix\n");

#define DECL(id, text, sz, inp, df, und, fn) \
	extern const uint8_t form_##id[] __attribute__((visibility("hidden"))); \
	extern const uint8_t form_##id##_end[] __attribute__((visibility("hidden")));
FORMS(DECL)

#define ENTRY(id, text, sz, inp, d, und, f) \
	{ .name = text, .start = form_##id, .end = form_##id##_end, \
	  .size = sz, .input = inp, .df = d, .undef = und, .fn = f },
static const struct form forms[] = { FORMS(ENTRY) };
#define NR_FORMS (sizeof(forms) / sizeof(forms[0]))

static const uint64_t edge[] = {
	0, 1, 2, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65,
	0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff,
	0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull,
	0x7fffffffffffffffull, 0x8000000000000000ull, 0xffffffffffffffffull,
	0x123456789abcdef0ull, 0xfedcba9876543210ull, 0xdeadbeefull,
};
#define NR_EDGE (sizeof(edge) / sizeof(edge[0]))

/* ---- one case, both ways ---------------------------------------------- */

static void fill_memory(uint8_t *base, const struct form *f,
			const struct native_regs *in, uint64_t a, uint64_t b)
{
	uint8_t *code = base + (CODE - TEST_BASE);
	uint8_t *data = base + (DATA - TEST_BASE);
	uint8_t *stk = base + (STACK - TEST_BASE);
	uint64_t top;

	memset(code, 0xcc, 0x2000);
	memcpy(code, f->start, (size_t)(f->end - f->start));
	for (int i = -0x1000; i < 0x1000; i++) {
		data[i] = (uint8_t)(i * 37 + 11);
		stk[i] = (uint8_t)(i * 13 + 5);
	}
	memcpy(data, &a, 8);
	memcpy(data + 8, &b, 8);
	memcpy(data + 64, &b, 8);
	memcpy(data + 72, &a, 8);
	if (f->input == IN_CODEPTR) {
		uint64_t t = CODE + 0x100 + (a & 0xff0);
		memcpy(data, &t, 8);
		top = CODE + 0x200 + (b & 0xff0);
		memcpy(stk, &top, 8);
	} else if (f->input == IN_POPF) {
		top = (a & FL_CMP) | 0x202;
		memcpy(stk, &top, 8);
	}
	(void)in;
}

static void make_input(const struct form *f, struct native_regs *in, uint64_t a,
		       uint64_t b, uint64_t c, uint64_t flags)
{
	static const uint64_t pat = 0x0101010101010101ull;

	for (int i = 0; i < 16; i++)
		in->gpr[i] = pat * (uint64_t)(i + 0x10);
	in->gpr[EMU_RAX] = a;
	in->gpr[EMU_RBX] = b;
	in->gpr[EMU_RCX] = b;
	in->gpr[EMU_RDX] = c;
	in->gpr[EMU_RSI] = DATA;
	in->gpr[EMU_RDI] = DATA + 64;
	in->gpr[EMU_RSP] = STACK;
	in->gpr[EMU_RBP] = STACK + 0x100;
	in->gpr[EMU_R8] = 8;
	in->gpr[EMU_R9] = a ^ b;
	switch (f->input) {
	case IN_BITOFF:
		in->gpr[EMU_RBX] = in->gpr[EMU_RCX] = (uint64_t)(int64_t)(int8_t)b;
		break;
	case IN_COUNT:
		in->gpr[EMU_RCX] = b & 63;
		break;
	case IN_OVL_UP: case IN_OVL_DOWN:
		/* Both directions of DF run inside the compared +-4 KiB,
		 * across the page boundary at DATA. */
		in->gpr[EMU_RCX] = b & 63;
		in->gpr[EMU_RSI] = DATA - 21;
		in->gpr[EMU_RDI] = DATA - 21 + (f->input == IN_OVL_UP ? 3 : -3);
		break;
	case IN_CODEPTR:
		in->gpr[EMU_RAX] = CODE + 0x100 + (a & 0xff0);
		break;
	default:
		break;
	}
	in->rip = CODE;
	in->rflags = flags | 0x202; /* IF is always set in user mode */
}

static int run_emu(struct native_env *e, const struct native_regs *in,
		   struct native_regs *out, struct emu_cpu *cpu)
{
	int r;

	emu_cpu_init(cpu, &e->gm, NULL, NULL);
	emu_cpu_set_long_mode(cpu, CODE);
	cpu->seg[EMU_SEG_CS].sel = 0x33; /* CPL 3, like the native run */
	cpu->seg[EMU_SEG_SS].sel = 0x2b;
	emu_cpu_update_mode(cpu);
	memcpy(cpu->gpr, in->gpr, sizeof(cpu->gpr));
	emu_flags_set(cpu, in->rflags);
	r = emu_step(cpu);
	memcpy(out->gpr, cpu->gpr, sizeof(out->gpr));
	out->rip = cpu->rip;
	out->rflags = emu_flags_get(cpu);
	return r;
}

static int failures_reported;
static unsigned long fast_cases;

/* The specialised handler the block cache would pick for the instruction
 * at CODE (exec_fast.c), run on the same input: it must leave exactly
 * what emu_step() left in `eout` (all status flags, defined or not).  Its
 * no-flags copy (for an instruction whose flags are dead), if it has one,
 * must leave the same except for the flags.  Returns false with `why`
 * filled on a difference. */
static bool check_fast(struct native_env *e, const struct form *f,
		       const struct native_regs *in, int r_step,
		       const struct native_regs *eout, char *why, size_t n)
{
	uint8_t *g = gm_ptr(&e->gm, TEST_BASE, TEST_SIZE);
	struct emu_cpu cpu;
	struct emu_insn insn;
	emu_thandler h, h_flags = NULL;
	uint64_t fl;
	int r;

	if (emu_decode(EMU_MODE_LONG64, 8, f->start,
		       (unsigned)(f->end - f->start) < 15 ?
		       (unsigned)(f->end - f->start) : 15, &insn))
		return true;
	for (int nf = 0; nf < 2; nf++) {
		const char *what = nf ? "fast, no flags" : "fast";

		h = emu_fast_handler(&insn, EMU_MODE_LONG64, nf);
		if (!h || h == h_flags)
			return true;
		h_flags = h;
		fast_cases++;
		/* The no-flags copies are register forms: memory is still
		 * what the run with flags left (cheap under sanitizers). */
		if (!nf)
			fill_memory(g, f, in, in->gpr[EMU_RAX],
				    in->gpr[EMU_RBX]);
		emu_cpu_init(&cpu, &e->gm, NULL, NULL);
		emu_cpu_set_long_mode(&cpu, CODE);
		cpu.seg[EMU_SEG_CS].sel = 0x33;
		cpu.seg[EMU_SEG_SS].sel = 0x2b;
		emu_cpu_update_mode(&cpu);
		memcpy(cpu.gpr, in->gpr, sizeof(cpu.gpr));
		emu_flags_set(&cpu, in->rflags);
		r = emu_t_run_one(&cpu, h, &insn);
		if (r != r_step) {
			snprintf(why, n, "%s: returned %#x, step %#x", what, r,
				 r_step);
			return false;
		}
		if (r)
			return true;
		if (cpu.rip != eout->rip) {
			snprintf(why, n, "%s: rip %#lx vs %#lx", what,
				 (unsigned long)cpu.rip,
				 (unsigned long)eout->rip);
			return false;
		}
		for (int i = 0; i < 16; i++)
			if (cpu.gpr[i] != eout->gpr[i]) {
				snprintf(why, n, "%s: gpr%d %#lx vs %#lx", what,
					 i, (unsigned long)cpu.gpr[i],
					 (unsigned long)eout->gpr[i]);
				return false;
			}
		if (memcmp(e->host + (DATA - TEST_BASE) - 0x1000,
			   g + (DATA - TEST_BASE) - 0x1000, 0x2000)) {
			snprintf(why, n, "%s: data memory differs", what);
			return false;
		}
		fl = emu_flags_get(&cpu);
		if (!nf && fl != eout->rflags) {
			snprintf(why, n, "fast: flags %#lx vs %#lx",
				 (unsigned long)fl,
				 (unsigned long)eout->rflags);
			return false;
		}
	}
	return true;
}

static bool check_case(struct native_env *e, const struct form *f,
		       const struct native_regs *in)
{
	struct native_regs nout, eout;
	struct emu_cpu cpu;
	uint64_t undef = f->undef, fmask;
	uint32_t skip = 0;
	uint8_t *g = gm_ptr(&e->gm, TEST_BASE, TEST_SIZE);
	int trapno, r;
	bool ok = true;
	char why[160] = "";

	fill_memory(e->host, f, in, in->gpr[EMU_RAX], in->gpr[EMU_RBX]);
	fill_memory(g, f, in, in->gpr[EMU_RAX], in->gpr[EMU_RBX]);
	trapno = native_exec(in, &nout);
	r = run_emu(e, in, &eout, &cpu);
	if (f->fn)
		f->fn(f, in, &undef, &skip);
	fmask = FL_CMP & ~undef;

	if (trapno == 3) {
		nout.rip -= 1;
		if (r != 0) {
			snprintf(why, sizeof(why), "native ran, emu returned %#x", r);
			ok = false;
		}
	} else if (r != EMU_EXC(trapno)) {
		snprintf(why, sizeof(why), "native trap %d, emu returned %#x",
			 trapno, r);
		ok = false;
	}
	if (ok && nout.rip != eout.rip) {
		snprintf(why, sizeof(why), "rip %#lx vs %#lx",
			 (unsigned long)nout.rip, (unsigned long)eout.rip);
		ok = false;
	}
	for (int i = 0; ok && i < 16; i++) {
		if (!(skip & (1u << i)) && nout.gpr[i] != eout.gpr[i]) {
			snprintf(why, sizeof(why), "gpr%d %#lx vs %#lx", i,
				 (unsigned long)nout.gpr[i],
				 (unsigned long)eout.gpr[i]);
			ok = false;
		}
	}
	if (ok && ((nout.rflags ^ eout.rflags) & fmask)) {
		snprintf(why, sizeof(why), "flags %#lx vs %#lx (mask %#lx)",
			 (unsigned long)nout.rflags, (unsigned long)eout.rflags,
			 (unsigned long)fmask);
		ok = false;
	}
	if (ok && memcmp(e->host + (DATA - TEST_BASE) - 0x1000,
			 g + (DATA - TEST_BASE) - 0x1000, 0x2000)) {
		snprintf(why, sizeof(why), "data memory differs");
		ok = false;
	}
	if (ok && memcmp(e->host + (STACK - TEST_BASE) - 0x1000,
			 g + (STACK - TEST_BASE) - 0x1000, 0x2000)) {
		snprintf(why, sizeof(why), "stack memory differs");
		ok = false;
	}
	if (ok)
		ok = check_fast(e, f, in, r, &eout, why, sizeof(why));
	if (!ok && failures_reported++ < 40)
		print_message("MISMATCH %-34s rax=%#lx rbx=%#lx rcx=%#lx rdx=%#lx fl=%#lx: %s\n",
			      f->name, (unsigned long)in->gpr[EMU_RAX],
			      (unsigned long)in->gpr[EMU_RBX],
			      (unsigned long)in->gpr[EMU_RCX],
			      (unsigned long)in->gpr[EMU_RDX],
			      (unsigned long)in->rflags, why);
	return ok;
}

/* Guest page tables from native_identity_map(): linear = physical below
 * 2^40, not present above (#PF with error code 0, what the hostile-address
 * test expects); user-accessible, since the differential test runs at
 * CPL 3. */
static int env_setup(void **state)
{
	return native_env_setup(state, TEST_SIZE, GUEST_RAM);
}

/* The differential sweep over every form and input. */
static void test_differential(void **state)
{
	struct native_env *e = *state;
	unsigned long cases = 0, bad = 0;
	unsigned forms_bad = 0;

	native_catch_begin();
	for (size_t fi = 0; fi < NR_FORMS; fi++) {
		const struct form *f = &forms[fi];
		unsigned long fbad = 0;
		int nflags = f->df ? 4 : 2;

		for (size_t i = 0; i < NR_EDGE; i++) {
			for (size_t j = 0; j < NR_EDGE; j++) {
				for (int fl = 0; fl < nflags; fl++) {
					struct native_regs in;
					uint64_t flags = ((fl & 1) ? FL_STATUS : 0) |
							 ((fl & 2) ? EMU_FL_DF : 0);

					make_input(f, &in, edge[i], edge[j],
						   edge[(i * 7 + j * 3) % NR_EDGE] >>
							   (j & 1 ? 0 : 32),
						   flags);
					cases++;
					if (!check_case(e, f, &in))
						fbad++;
				}
			}
		}
		if (fbad) {
			forms_bad++;
			bad += fbad;
			print_message("form %-36s %lu mismatches\n", f->name, fbad);
		}
	}
	native_catch_end();
	print_message("differential: %zu forms, %lu cases, %lu mismatches in %u forms\n",
		      NR_FORMS, cases, bad, forms_bad);
	print_message("differential: %lu cases also through exec_fast.c\n",
		      fast_cases);
	assert_int_equal(bad, 0);
}

/* ---- emulator-only tests ---------------------------------------------- */

/* A flat 64-bit CPU over `gm` with `code` at CODE. */
static void emu_at(struct emu_cpu *cpu, struct guest_mem *gm,
		   const void *code, size_t len)
{
	emu_cpu_init(cpu, gm, NULL, NULL);
	emu_cpu_set_long_mode(cpu, CODE);
	assert_int_equal(gm_write(gm, CODE, code, len), 0);
	cpu->gpr[EMU_RSP] = STACK;
}

static void test_undefined_opcodes(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	static const uint8_t ud0[] = { 0x0f, 0xff, 0xc0 };
	static const uint8_t bad_lock[] = { 0xf0, 0x48, 0x01, 0xd8 }; /* lock add rax, rbx */
	static const uint8_t vzeroupper[] = { 0xc5, 0xf8, 0x77 }; /* valid, AVX is not offered */
	static const uint8_t too_long[] = { 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
		0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x90 };

	emu_at(&cpu, &e->gm, ud2, sizeof(ud2));
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	assert_int_equal(cpu.rip, CODE);
	assert_int_equal(cpu.stats.ud, 1);

	emu_at(&cpu, &e->gm, ud0, sizeof(ud0));
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	assert_int_equal(cpu.stats.ud, 1);

	emu_at(&cpu, &e->gm, bad_lock, sizeof(bad_lock));
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));

	emu_at(&cpu, &e->gm, vzeroupper, sizeof(vzeroupper));
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_UD));
	assert_int_equal(cpu.stats.ud, 1);
	assert_int_equal(cpu.stats.insns, 0);

	/* 15 bytes of prefixes + opcode = 16 bytes: #GP(0). */
	emu_at(&cpu, &e->gm, too_long, sizeof(too_long));
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
}

static void test_divide_error(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t div_rbx[] = { 0x48, 0xf7, 0xf3 };
	static const uint8_t idiv_rbx[] = { 0x48, 0xf7, 0xfb };

	emu_at(&cpu, &e->gm, div_rbx, sizeof(div_rbx));
	cpu.gpr[EMU_RAX] = 5;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_DE));
	assert_int_equal(cpu.rip, CODE);
	assert_int_equal(cpu.gpr[EMU_RAX], 5);
	/* Quotient overflow. */
	cpu.gpr[EMU_RDX] = 1;
	cpu.gpr[EMU_RBX] = 1;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_DE));
	/* INT64_MIN / -1 (the case C cannot even compute). */
	emu_at(&cpu, &e->gm, idiv_rbx, sizeof(idiv_rbx));
	cpu.gpr[EMU_RDX] = ~0ull;
	cpu.gpr[EMU_RAX] = 0x8000000000000000ull;
	cpu.gpr[EMU_RBX] = ~0ull;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_DE));
	assert_int_equal(cpu.stats.exceptions, 1);
}

static void test_hostile_addresses(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t load[] = { 0x48, 0x8b, 0x03 };  /* mov rax, [rbx] */
	static const uint8_t store[] = { 0x48, 0x89, 0x03 }; /* mov [rbx], rax */
	static const uint8_t movsq[] = { 0xf3, 0x48, 0xa5 }; /* rep movsq */
	uint64_t v;

	/* Non-canonical: #GP(0). */
	emu_at(&cpu, &e->gm, load, sizeof(load));
	cpu.gpr[EMU_RBX] = 0x0000800000000000ull;
	cpu.gpr[EMU_RAX] = 42;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	assert_int_equal(cpu.exc.error_code, 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 42);
	/* Beyond MAXPHYADDR: #PF with the address. */
	cpu.gpr[EMU_RBX] = 0x00007fff00000000ull;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu.exc.cr2, 0x00007fff00000000ull);
	assert_int_equal(cpu.exc.error_code, 0);
	/* A stack access through a non-canonical RSP: #SS(0). */
	emu_at(&cpu, &e->gm, (const uint8_t[]){ 0x50 }, 1); /* push rax */
	cpu.gpr[EMU_RSP] = 0x0000800000000008ull;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_SS));
	assert_int_equal(cpu.gpr[EMU_RSP], 0x0000800000000008ull);
	/* Physical address with no RAM and no device: all ones, no crash. */
	emu_at(&cpu, &e->gm, load, sizeof(load));
	cpu.gpr[EMU_RBX] = GUEST_RAM + 0x1000;
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], ~0ull);
	/* A store there is dropped, and one straddling the end of RAM
	 * writes the RAM part only. */
	emu_at(&cpu, &e->gm, store, sizeof(store));
	cpu.gpr[EMU_RBX] = GUEST_RAM - 4;
	cpu.gpr[EMU_RAX] = 0x1122334455667788ull;
	assert_int_equal(emu_step(&cpu), 0);
	v = 0;
	assert_int_equal(gm_read(&e->gm, GUEST_RAM - 4, &v, 4), 0);
	assert_int_equal(v, 0x55667788);
	/* A store whose last bytes are non-canonical writes nothing. */
	emu_at(&cpu, &e->gm, store, sizeof(store));
	cpu.gpr[EMU_RBX] = 0x00007ffffffffffcull; /* last bytes below 2^47 */
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
	/* Instruction fetch beyond MAXPHYADDR: #PF with I/D clear (no NX). */
	emu_cpu_init(&cpu, &e->gm, NULL, NULL);
	emu_cpu_set_long_mode(&cpu, 0x00007fff00000000ull);
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_PF));
	/* REP MOVSQ from RAM into the void stops with the fault, having
	 * done the iterations before it. */
	emu_at(&cpu, &e->gm, movsq, sizeof(movsq));
	cpu.gpr[EMU_RSI] = DATA;
	cpu.gpr[EMU_RDI] = (1ull << 40) - 16;
	cpu.gpr[EMU_RCX] = 10;
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_PF));
	assert_int_equal(cpu.gpr[EMU_RCX], 8);
	assert_int_equal(cpu.gpr[EMU_RDI], 1ull << 40);
	assert_int_equal(cpu.rip, CODE);
}

/* Two vCPU threads hammer one counter with LOCK-prefixed RMWs. */
struct hammer {
	struct guest_mem *gm;
	const uint8_t *code;
	size_t len;
	uint64_t code_at;
	int iters;
	int failures;
};

static void *hammer_thread(void *arg)
{
	struct hammer *h = arg;
	struct emu_cpu cpu;

	emu_cpu_init(&cpu, h->gm, NULL, NULL);
	emu_cpu_set_long_mode(&cpu, h->code_at);
	for (int i = 0; i < h->iters; i++) {
		cpu.rip = h->code_at;
		cpu.gpr[EMU_RSI] = DATA + 0x800;
		cpu.gpr[EMU_RBX] = 1;
		if (emu_step(&cpu) != 0)
			h->failures++;
	}
	return NULL;
}

static void hammer(struct native_env *e, const uint8_t *code, size_t len,
		   uint64_t expect)
{
	struct hammer h[2];
	pthread_t t[2];
	uint64_t zero = 0, v;

	assert_int_equal(gm_write(&e->gm, DATA + 0x800, &zero, 8), 0);
	assert_int_equal(gm_write(&e->gm, CODE + 0x100, code, len), 0);
	for (int i = 0; i < 2; i++) {
		h[i] = (struct hammer){ &e->gm, code, len, CODE + 0x100, 200000, 0 };
		assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, &h[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(h[i].failures, 0);
	}
	assert_int_equal(gm_read(&e->gm, DATA + 0x800, &v, 8), 0);
	assert_int_equal(v, expect);
}

static void test_locked_ops_atomic(void **state)
{
	struct native_env *e = *state;
	static const uint8_t lock_inc[] = { 0xf0, 0x48, 0xff, 0x06 };       /* lock inc qword [rsi] */
	static const uint8_t lock_xadd[] = { 0xf0, 0x48, 0x0f, 0xc1, 0x1e }; /* lock xadd [rsi], rbx */
	static const uint8_t lock_add32[] = { 0xf0, 0x01, 0x1e };           /* lock add [rsi], ebx */

	hammer(e, lock_inc, sizeof(lock_inc), 400000);
	hammer(e, lock_xadd, sizeof(lock_xadd), 400000);
	hammer(e, lock_add32, sizeof(lock_add32), 400000);
}

static void test_rep_movsb_long(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t rep_movsb[] = { 0xf3, 0xa4 };
	uint8_t *src = gm_ptr(&e->gm, 0x100000, 20000);
	uint8_t *dst = gm_ptr(&e->gm, 0x200000, 20000);
	int steps = 0;

	for (int i = 0; i < 20000; i++)
		src[i] = (uint8_t)(i * 7);
	memset(dst, 0, 20000);
	emu_at(&cpu, &e->gm, rep_movsb, sizeof(rep_movsb));
	cpu.gpr[EMU_RSI] = 0x100000;
	cpu.gpr[EMU_RDI] = 0x200000;
	cpu.gpr[EMU_RCX] = 20000;
	while (cpu.rip == CODE && steps < 100) {
		assert_int_equal(emu_step(&cpu), 0);
		steps++;
	}
	assert_true(steps > 1); /* interruptible: came back between batches */
	assert_int_equal(cpu.rip, CODE + 2);
	assert_int_equal(cpu.gpr[EMU_RCX], 0);
	assert_memory_equal(src, dst, 20000);
}

/* The same bytes mean different things in 16-, 32- and 64-bit modes. */
static void test_legacy_modes(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	static const uint8_t inc_eax[] = { 0x40 };            /* INC EAX, or REX */
	static const uint8_t mov_bx_si[] = { 0x8b, 0x00 };   /* 16-bit: mov ax, [bx+si] */
	uint16_t w = 0xbeef;

	emu_cpu_init(&cpu, &e->gm, NULL, NULL);
	emu_cpu_set_long_mode(&cpu, CODE);
	cpu.msr.efer = 0;
	cpu.cr0 = EMU_CR0_PE;
	cpu.seg[EMU_SEG_CS].attr = 0xb | EMU_SEG_ATTR_S | EMU_SEG_ATTR_P |
				   EMU_SEG_ATTR_DB | EMU_SEG_ATTR_G;
	emu_cpu_update_mode(&cpu);
	assert_int_equal(cpu.mode, EMU_MODE_PROT32);
	assert_int_equal(gm_write(&e->gm, CODE, inc_eax, 1), 0);
	cpu.gpr[EMU_RAX] = 0xffffffff;
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.gpr[EMU_RAX], 0);
	assert_true(emu_flags_get(&cpu) & EMU_FL_ZF);
	assert_int_equal(cpu.rip, CODE + 1);

	/* Real mode after reset: CS:IP = F000:FFF0 is not RAM here, so put
	 * code at 0x1000:0x0010 = 0x10010 and data at DS = 0x2000. */
	emu_cpu_init(&cpu, &e->gm, NULL, NULL);
	assert_int_equal(cpu.mode, EMU_MODE_REAL);
	cpu.seg[EMU_SEG_CS].sel = 0x1000;
	cpu.seg[EMU_SEG_CS].base = 0x10000;
	cpu.rip = 0x10;
	cpu.seg[EMU_SEG_DS].sel = 0x2000;
	cpu.seg[EMU_SEG_DS].base = 0x20000;
	cpu.gpr[EMU_RBX] = 0x100;
	cpu.gpr[EMU_RSI] = 0x23;
	assert_int_equal(gm_write(&e->gm, 0x10010, mov_bx_si, 2), 0);
	assert_int_equal(gm_write(&e->gm, 0x20123, &w, 2), 0);
	assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.gpr[EMU_RAX] & 0xffff, 0xbeef);
	assert_int_equal(cpu.rip, 0x12);
	/* Beyond the 64 KiB limit: #GP(0). */
	cpu.rip = 0x10;
	cpu.gpr[EMU_RBX] = 0xffff;
	cpu.gpr[EMU_RSI] = 0xffff; /* bx+si wraps to 0xfffe: in limit */
	assert_int_equal(emu_step(&cpu), 0);
	cpu.rip = 0x10;
	cpu.gpr[EMU_RBX] = 0xffff;
	cpu.gpr[EMU_RSI] = 0; /* word at 0xffff crosses the limit */
	assert_int_equal(emu_step(&cpu), EMU_EXC(EMU_VEC_GP));
}

/* Lazy flags survive instructions that do not write flags, and are read
 * correctly by a later consumer. */
static void test_lazy_flags_sequence(void **state)
{
	struct native_env *e = *state;
	struct emu_cpu cpu;
	/* cmp rax, rbx; mov rcx, rdx; lea rdx, [rdx+1]; setb al; adc rcx, 0 */
	static const uint8_t seq[] = { 0x48, 0x39, 0xd8, 0x48, 0x89, 0xd1,
		0x48, 0x8d, 0x52, 0x01, 0x0f, 0x92, 0xc0, 0x48, 0x83, 0xd1, 0x00 };

	emu_at(&cpu, &e->gm, seq, sizeof(seq));
	cpu.gpr[EMU_RAX] = 1;
	cpu.gpr[EMU_RBX] = 2;
	cpu.gpr[EMU_RDX] = 10;
	for (int i = 0; i < 5; i++)
		assert_int_equal(emu_step(&cpu), 0);
	assert_int_equal(cpu.gpr[EMU_RAX] & 0xff, 1);
	assert_int_equal(cpu.gpr[EMU_RCX], 11);
	assert_int_equal(cpu.gpr[EMU_RDX], 11);
	assert_int_equal(cpu.stats.insns, 5);
}

/* exec_fast.c's Jcc and CMOVcc evaluate conditions straight from CMP/SUB
 * and logic records, and Z/S (and an ADD's C) from any record: every
 * condition must agree with emu_cond(). */
static void test_fast_conditions(void **state)
{
	static const unsigned sizes[] = { 1, 2, 4, 8 };
	struct emu_cpu cpu;
	struct emu_insn jcc, cmov;
	static const uint8_t cmov_bytes[] = { 0x48, 0x0f, 0x40, 0xc3 }; /* cmovo rax, rbx */
	uint8_t jcc_bytes[6] = { 0x0f, 0x80, 0x10, 0, 0, 0 };  /* jo +16 */
	unsigned long n = 0;

	(void)state;
	memset(&cpu, 0, sizeof(cpu));
	for (unsigned cc = 0; cc < 16; cc++) {
		uint8_t cb[4];

		jcc_bytes[1] = (uint8_t)(0x80 + cc);
		memcpy(cb, cmov_bytes, sizeof(cb));
		cb[2] = (uint8_t)(0x40 + cc);
		assert_int_equal(emu_decode(EMU_MODE_LONG64, 8, jcc_bytes, 6,
					    &jcc), 0);
		assert_int_equal(emu_decode(EMU_MODE_LONG64, 8, cb, 4, &cmov), 0);
		emu_thandler hj = emu_fast_handler(&jcc, EMU_MODE_LONG64, false);
		emu_thandler hc = emu_fast_handler(&cmov, EMU_MODE_LONG64, false);

		assert_non_null(hj);
		assert_non_null(hc);
		for (size_t si = 0; si < 4; si++)
			for (size_t i = 0; i < NR_EDGE; i++)
				for (size_t j = 0; j < NR_EDGE; j++)
					for (int kind = 0; kind < 5; kind++) {
			unsigned sz = sizes[si];
			uint64_t m = sz == 8 ? ~0ull : (1ull << (sz * 8)) - 1;
			uint64_t a = edge[i] & m, b = edge[j] & m;
			unsigned c = (unsigned)(b % (sz * 8 - 1)) + 1;
			bool want;

			cpu.lf.size = (uint8_t)sz;
			cpu.lf.aux = 0;
			switch (kind) {
			case 0: /* SUB */
				cpu.lf.op = EMU_LF_SUB;
				cpu.lf.res = (a - b) & m;
				cpu.lf.src1 = a;
				cpu.lf.src2 = b;
				break;
			case 1: /* logic */
				cpu.lf.op = EMU_LF_LOGIC;
				cpu.lf.res = a & b;
				cpu.lf.src1 = cpu.lf.src2 = 0;
				break;
			case 2: /* ADD */
				cpu.lf.op = EMU_LF_ADD;
				cpu.lf.res = (a + b) & m;
				cpu.lf.src1 = a;
				cpu.lf.src2 = b;
				break;
			case 3: /* DEC, CF kept from b */
				cpu.lf.op = EMU_LF_DEC;
				cpu.lf.res = (a - 1) & m;
				cpu.lf.src1 = a;
				cpu.lf.src2 = 1;
				cpu.lf.aux = b & 1;
				break;
			default: /* SHR */
				cpu.lf.op = EMU_LF_SHR;
				cpu.lf.res = a >> c;
				cpu.lf.src1 = a;
				cpu.lf.src2 = c;
				break;
			}
			want = emu_cond(&cpu, cc);
			cpu.rip = 0x1000 - jcc.len;
			assert_int_equal(emu_t_run_one(&cpu, hj, &jcc), 0);
			assert_int_equal(cpu.rip != 0x1000, want);
			cpu.gpr[EMU_RAX] = 1;
			cpu.gpr[EMU_RBX] = 2;
			assert_int_equal(emu_t_run_one(&cpu, hc, &cmov), 0);
			assert_int_equal(cpu.gpr[EMU_RAX], want ? 2 : 1);
			n++;
		}
	}
	print_message("fast conditions: %lu cases\n", n);
}

/* ROL/ROR keep the record before them (EMU_LF_ROT + lf_prev): after one or
 * two rotates following a SUB record, a logic record or eager flags,
 * PF/AF/ZF/SF must be those before the rotates, CF/OF the rotate's, and
 * emu_cond()/emu_flag_cf() must agree with them. */
static bool cond_of(uint64_t f, unsigned cc)
{
	bool r;

	switch (cc >> 1) {
	case 0: r = f & EMU_FL_OF; break;
	case 1: r = f & EMU_FL_CF; break;
	case 2: r = f & EMU_FL_ZF; break;
	case 3: r = f & (EMU_FL_CF | EMU_FL_ZF); break;
	case 4: r = f & EMU_FL_SF; break;
	case 5: r = f & EMU_FL_PF; break;
	case 6: r = !(f & EMU_FL_SF) != !(f & EMU_FL_OF); break;
	default:
		r = (f & EMU_FL_ZF) || (!(f & EMU_FL_SF) != !(f & EMU_FL_OF));
		break;
	}
	return r ^ (cc & 1);
}

static void test_rotate_lazy(void **state)
{
	static const uint8_t ror_b[] = { 0xc1, 0xc8, 0x07 };       /* ror eax, 7 */
	static const uint8_t rol_b[] = { 0x48, 0xc1, 0xc0, 0x01 }; /* rol rax, 1 */
	struct emu_insn ror, rol;
	emu_thandler hr, hl;
	struct emu_cpu cpu;
	unsigned long n = 0;

	(void)state;
	assert_int_equal(emu_decode(EMU_MODE_LONG64, 8, ror_b, 3, &ror), 0);
	assert_int_equal(emu_decode(EMU_MODE_LONG64, 8, rol_b, 4, &rol), 0);
	hr = emu_fast_handler(&ror, EMU_MODE_LONG64, false);
	hl = emu_fast_handler(&rol, EMU_MODE_LONG64, false);
	assert_non_null(hr);
	assert_non_null(hl);
	memset(&cpu, 0, sizeof(cpu));
	for (size_t i = 0; i < NR_EDGE; i++)
		for (size_t j = 0; j < NR_EDGE; j++)
			for (int kind = 0; kind < 3; kind++)
				for (int twice = 0; twice < 2; twice++) {
		uint64_t a = edge[i], b = edge[j], before, want, v;
		uint64_t st = EMU_FL_PF | EMU_FL_AF | EMU_FL_ZF | EMU_FL_SF;

		if (kind == 2) {
			emu_flags_set(&cpu, (a ^ b) & EMU_FL_STATUS);
		} else {
			cpu.lf.op = kind ? EMU_LF_LOGIC : EMU_LF_SUB;
			cpu.lf.size = 8;
			cpu.lf.res = kind ? (a & b) : a - b;
			cpu.lf.src1 = kind ? 0 : a;
			cpu.lf.src2 = kind ? 0 : b;
			cpu.lf.aux = 0;
		}
		before = emu_flags_get(&cpu);
		cpu.gpr[EMU_RAX] = a;
		assert_int_equal(emu_t_run_one(&cpu, hr, &ror), 0);
		v = cpu.gpr[EMU_RAX];
		want = (before & st) | ((v >> 31) & 1 ? EMU_FL_CF : 0) |
		       (((v >> 31) ^ (v >> 30)) & 1 ? EMU_FL_OF : 0);
		if (twice) {
			assert_int_equal(emu_t_run_one(&cpu, hl, &rol), 0);
			v = cpu.gpr[EMU_RAX];
			want = (before & st) | (v & 1 ? EMU_FL_CF : 0) |
			       (((v >> 63) ^ v) & 1 ? EMU_FL_OF : 0);
		}
		assert_int_equal(emu_flags_get(&cpu) & EMU_FL_STATUS, want);
		assert_int_equal(emu_flag_cf(&cpu), !!(want & EMU_FL_CF));
		for (unsigned cc = 0; cc < 16; cc++)
			assert_int_equal(emu_cond(&cpu, cc), cond_of(want, cc));
		n++;
	}
	print_message("rotate lazy flags: %lu cases\n", n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_undefined_opcodes),
		cmocka_unit_test(test_divide_error),
		cmocka_unit_test(test_hostile_addresses),
		cmocka_unit_test(test_locked_ops_atomic),
		cmocka_unit_test(test_rep_movsb_long),
		cmocka_unit_test(test_legacy_modes),
		cmocka_unit_test(test_lazy_flags_sequence),
		cmocka_unit_test(test_fast_conditions),
		cmocka_unit_test(test_rotate_lazy),
		cmocka_unit_test(test_differential),
	};

	return cmocka_run_group_tests(tests, env_setup, native_env_teardown);
}
