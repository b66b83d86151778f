/*
 * exec_sse.c - SSE, SSE2, SSE3 and SSSE3 instructions of the software CPU,
 * MXCSR and FXSAVE/FXRSTOR (SDM Vol. 1 chapters 10-12, Vol. 2 for each
 * instruction).
 *
 * Design.  The host is x86-64, so SSE2 is architecturally guaranteed on
 * it, and the host implements exactly the IEEE semantics the guest must
 * see: NaN propagation and quieting, the operand order of MIN/MAX, DAZ/FTZ,
 * the "integer indefinite" of overflowing conversions, rounding by
 * MXCSR.RC.  Re-implementing those in C is where emulators collect bugs, so
 * the SSE/SSE2/SSE3 computations run on the host: each instruction has a
 * tiny function with one inline-asm block that loads the destination and
 * source values from memory into xmm0/xmm1, executes the same instruction
 * and stores xmm0 back.  Guest registers are never host registers; only
 * values pass through.  Floating-point forms run bracketed by a host MXCSR
 * equal to the guest's rounding/DAZ/FTZ bits with every exception masked
 * and the flags cleared; the host's resulting flags are merged into the
 * guest MXCSR and, when the guest has one of them unmasked, the
 * instruction faults with #XM (CR4.OSXMMEXCPT=1) or #UD (SDM Vol. 1 11.5)
 * without writing its destination.  The host MXCSR is restored after each
 * instruction, so kvmm's own floating point never sees guest settings.
 *
 * SSSE3 is not in the x86-64 baseline, so its instructions (PSHUFB,
 * PALIGNR, PABSx, PSIGNx, PHADDx, PHSUBx, PMADDUBSW, PMULHRSW) and the
 * shuffles that take an immediate (whose encoding cannot vary at run time
 * in an asm block) are written in C from the SDM's pseudo-code; the tests
 * check them against the host where the host has them.
 *
 * Operands come decoded: the destination must be an XMM register (the MMX
 * forms of the same mnemonics decode to EMU_OPND_OTHER and raise #UD: no
 * MMX state is emulated), the source an XMM register, memory (loaded with
 * the decoded operand size, zero-extended into a 16-byte buffer, so scalar
 * forms see the same bits the host would) or an immediate (shift counts).
 * Legacy-SSE 16-byte memory operands must be 16-byte aligned except for the
 * explicitly unaligned moves (#GP(0), SDM Vol. 1 11.6.8).  Stores of more
 * than 8 bytes probe both ends for write access first, so a fault on the
 * second page leaves memory untouched.
 *
 * Availability (SDM Vol. 1 11.6.2, 13.x): CR0.EM=1 or CR4.OSFXSR=0 -> #UD,
 * CR0.TS=1 -> #NM.  FXSAVE/FXRSTOR fault #NM on EM or TS.
 */
#include <string.h>

#include "accel/emu/exec.h"

#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR4_OSFXSR (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)

/* MXCSR bits the guest may set (DAZ included; SDM Vol. 1 11.6.6). */
#define MXCSR_MASK 0xffffu
#define MXCSR_FLAGS 0x3fu

static int sse_avail(struct emu_cpu *cpu)
{
	if ((cpu->cr0 & CR0_EM) || !(cpu->cr4 & CR4_OSFXSR))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cr0 & CR0_TS)
		return emu_raise(cpu, EMU_VEC_NM, false, 0);
	return 0;
}

/* Linear-address alignment of a memory operand (the segment base counts:
 * all of them outside 64-bit mode, FS/GS in it). */
static bool misaligned(const struct emu_cpu *cpu, const struct emu_opnd *o,
		       uint64_t off, unsigned align)
{
	uint64_t base = cpu->seg[o->seg % EMU_NR_SEGS].base;

	if (cpu->mode == EMU_MODE_LONG64 && o->seg != EMU_SEG_FS &&
	    o->seg != EMU_SEG_GS)
		base = 0;
	return ((base + off) & (align - 1)) != 0;
}

/* Read `size` (1-16, or up to 512 in 8-byte steps) bytes at seg:off. */
static int mem_read_buf(struct emu_cpu *cpu, unsigned seg, uint64_t off,
			uint8_t *buf, unsigned size, unsigned addrsize)
{
	unsigned done = 0;

	while (done < size) {
		unsigned n = size - done >= 8 ? 8 : size - done >= 4 ? 4 :
			     size - done >= 2 ? 2 : 1;
		uint64_t v;
		int r = emu_mem_read(cpu, (enum emu_seg)seg,
				     (off + done) & emu_mask(addrsize), n, &v);

		if (r)
			return r;
		memcpy(buf + done, &v, n);
		done += n;
	}
	return 0;
}

/* Check that [off, off + size) is writable (size <= 4096) before the
 * first byte is stored. */
static int mem_probe_write(struct emu_cpu *cpu, unsigned seg, uint64_t off,
			   unsigned size, unsigned addrsize)
{
	void *host;
	int r;

	/* The whole range first (segment limit, canonical form: #GP/#SS
	 * before any #PF), then the last byte's page. */
	r = emu_mem_host_ptr(cpu, (enum emu_seg)seg, off & emu_mask(addrsize),
			     size, &host);
	if (!r && size > 1) {
		/* The first byte on the last byte's page, if it is another
		 * page, so #PF reports that page's first address. */
		uint64_t base = cpu->seg[seg % EMU_NR_SEGS].base;
		uint64_t last = off + size - 1, next_page;

		if (cpu->mode == EMU_MODE_LONG64 && seg != EMU_SEG_FS &&
		    seg != EMU_SEG_GS)
			base = 0;
		next_page = ((base + last) & ~0xfffull) - base;
		if (next_page > off)
			r = emu_mem_host_ptr(cpu, (enum emu_seg)seg,
					     next_page & emu_mask(addrsize),
					     1, &host);
	}
	return r;
}

static int mem_write_buf(struct emu_cpu *cpu, unsigned seg, uint64_t off,
			 const uint8_t *buf, unsigned size, unsigned addrsize)
{
	unsigned done = 0;
	int r;

	if (size > 8) {
		r = mem_probe_write(cpu, seg, off, size, addrsize);
		if (r)
			return r;
	}
	while (done < size) {
		unsigned n = size - done >= 8 ? 8 : size - done >= 4 ? 4 :
			     size - done >= 2 ? 2 : 1;
		uint64_t v = 0;

		memcpy(&v, buf + done, n);
		r = emu_mem_write(cpu, (enum emu_seg)seg,
				  (off + done) & emu_mask(addrsize), n, v);
		if (r)
			return r;
		done += n;
	}
	return 0;
}

/* Load an XMM or memory operand of `size` bytes into buf (zero-extended
 * to 16 bytes); `aligned`: a 16-byte memory operand must be aligned. */
static int opnd_load(struct emu_cpu *cpu, const struct emu_insn *in,
		     const struct emu_opnd *o, uint64_t next, unsigned size,
		     bool aligned, uint8_t buf[16])
{
	uint64_t off;

	memset(buf, 0, 16);
	if (o->kind == EMU_OPND_XMM) {
		memcpy(buf, cpu->xmm[o->reg & 15], 16);
		return 0;
	}
	if (o->kind != EMU_OPND_MEM || size == 0 || size > 16)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	off = emu_ea(cpu, in, o, next);
	if (aligned && size == 16 && misaligned(cpu, o, off, 16))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	return mem_read_buf(cpu, o->seg, off, buf, size, in->addrsize);
}

static int opnd_store(struct emu_cpu *cpu, const struct emu_insn *in,
		      const struct emu_opnd *o, uint64_t next, unsigned size,
		      bool aligned, const uint8_t *buf)
{
	uint64_t off;

	if (o->kind != EMU_OPND_MEM || size == 0 || size > 16)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	off = emu_ea(cpu, in, o, next);
	if (aligned && size == 16 && misaligned(cpu, o, off, 16))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	return mem_write_buf(cpu, o->seg, off, buf, size, in->addrsize);
}

/* ---- running host code under the guest's MXCSR ----------------------- */

typedef void (*sse_fn)(uint8_t *d, const uint8_t *s, unsigned imm);

static uint32_t host_stmxcsr(void)
{
	uint32_t v;

	__asm__ volatile("stmxcsr %0" : "=m"(v) : : "memory");
	return v;
}

static void host_ldmxcsr(uint32_t v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v) : "memory");
}

/* Enter: host MXCSR = guest control bits, all masked, flags clear. */
static uint32_t fp_enter(const struct emu_cpu *cpu)
{
	uint32_t saved = host_stmxcsr();

	host_ldmxcsr(((cpu->mxcsr & MXCSR_MASK) | 0x1f80u) & ~MXCSR_FLAGS);
	return saved;
}

/* Leave: restore the host MXCSR; merge the flags raised into the guest's
 * and decide whether an unmasked exception faults (SDM Vol. 1 11.5.1:
 * pre-computation exceptions IE/DE/ZE take precedence and suppress the
 * post-computation ones). */
static int fp_leave(struct emu_cpu *cpu, uint32_t saved)
{
	uint32_t flags = host_stmxcsr() & MXCSR_FLAGS;
	uint32_t unmasked;

	host_ldmxcsr(saved);
	unmasked = flags & ~(cpu->mxcsr >> 7) & MXCSR_FLAGS;
	if (unmasked) {
		if (unmasked & 0x7) /* IE, DE, ZE */
			flags &= 0x7;
		cpu->mxcsr |= flags;
		if (cpu->cr4 & CR4_OSXMMEXCPT)
			return emu_raise(cpu, EMU_VEC_XM, false, 0);
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
	cpu->mxcsr |= flags;
	return 0;
}

/* Host execution of `insn xmm1, xmm0` on d (dst) and s (src). */
#define ASM2(name, insn)                                                     \
	static void a_##name(uint8_t *d, const uint8_t *s, unsigned imm)     \
	{                                                                    \
		(void)imm;                                                   \
		__asm__ volatile("movdqu (%0), %%xmm0\n\t"                   \
				 "movdqu (%1), %%xmm1\n\t"                   \
				 insn " %%xmm1, %%xmm0\n\t"                  \
				 "movdqu %%xmm0, (%0)"                       \
				 : : "r"(d), "r"(s)                          \
				 : "xmm0", "xmm1", "memory");                \
	}

#define ASM2_LIST(X)                                                         \
	X(pxor) X(por) X(pand) X(pandn) X(xorps) X(orps) X(andps) X(andnps)  \
	X(xorpd) X(orpd) X(andpd) X(andnpd)                                  \
	X(pcmpeqb) X(pcmpeqw) X(pcmpeqd) X(pcmpgtb) X(pcmpgtw) X(pcmpgtd)    \
	X(pminub) X(pmaxub) X(pminsw) X(pmaxsw)                              \
	X(paddb) X(paddw) X(paddd) X(paddq) X(psubb) X(psubw) X(psubd)       \
	X(psubq) X(paddusb) X(paddusw) X(psubusb) X(psubusw) X(paddsb)       \
	X(paddsw) X(psubsb) X(psubsw)                                        \
	X(psllw) X(pslld) X(psllq) X(psrlw) X(psrld) X(psrlq) X(psraw)       \
	X(psrad)                                                             \
	X(punpcklbw) X(punpcklwd) X(punpckldq) X(punpcklqdq) X(punpckhbw)    \
	X(punpckhwd) X(punpckhdq) X(punpckhqdq)                              \
	X(packuswb) X(packsswb) X(packssdw)                                  \
	X(pmullw) X(pmulhw) X(pmulhuw) X(pmuludq) X(pmaddwd) X(psadbw)       \
	X(pavgb) X(pavgw)                                                    \
	X(unpcklps) X(unpckhps) X(unpcklpd) X(unpckhpd)                      \
	X(addps) X(addpd) X(addss) X(addsd) X(subps) X(subpd) X(subss)       \
	X(subsd) X(mulps) X(mulpd) X(mulss) X(mulsd) X(divps) X(divpd)       \
	X(divss) X(divsd) X(minps) X(minpd) X(minss) X(minsd) X(maxps)       \
	X(maxpd) X(maxss) X(maxsd) X(sqrtps) X(sqrtpd) X(sqrtss) X(sqrtsd)   \
	X(cvtss2sd) X(cvtsd2ss) X(cvtdq2ps) X(cvtps2dq) X(cvttps2dq)         \
	X(cvtdq2pd) X(cvtpd2dq) X(cvttpd2dq) X(cvtps2pd) X(cvtpd2ps)         \
	X(addsubps) X(addsubpd) X(haddps) X(haddpd) X(hsubps) X(hsubpd)      \
	X(movsldup) X(movshdup) X(movddup)

#define ASM2_DEF(n) ASM2(n, #n)
ASM2_LIST(ASM2_DEF)

/* CMPPS/PD/SS/SD: the predicate is imm8[2:0] (bits 7:3 are ignored by the
 * legacy-SSE forms, SDM Vol. 2A CMPPS). */
#define CMPK(insn, k)                                                        \
	__asm__ volatile("movdqu (%0), %%xmm0\n\t"                           \
			 "movdqu (%1), %%xmm1\n\t"                           \
			 insn " $" #k ", %%xmm1, %%xmm0\n\t"                 \
			 "movdqu %%xmm0, (%0)"                               \
			 : : "r"(d), "r"(s) : "xmm0", "xmm1", "memory")
#define ASMCMP(name)                                                         \
	static void a_##name(uint8_t *d, const uint8_t *s, unsigned imm)     \
	{                                                                    \
		switch (imm & 7) {                                           \
		case 0: CMPK(#name, 0); break;                               \
		case 1: CMPK(#name, 1); break;                               \
		case 2: CMPK(#name, 2); break;                               \
		case 3: CMPK(#name, 3); break;                               \
		case 4: CMPK(#name, 4); break;                               \
		case 5: CMPK(#name, 5); break;                               \
		case 6: CMPK(#name, 6); break;                               \
		default: CMPK(#name, 7); break;                              \
		}                                                            \
	}
ASMCMP(cmpps) ASMCMP(cmppd) ASMCMP(cmpss) ASMCMP(cmpsd)

/* ---- C implementations (immediates, SSSE3) --------------------------- */

static inline uint16_t ld16(const uint8_t *p, unsigned i)
{
	uint16_t v;

	memcpy(&v, p + 2 * i, 2);
	return v;
}

static inline void st16(uint8_t *p, unsigned i, uint16_t v)
{
	memcpy(p + 2 * i, &v, 2);
}

static inline uint32_t ld32(const uint8_t *p, unsigned i)
{
	uint32_t v;

	memcpy(&v, p + 4 * i, 4);
	return v;
}

static inline void st32(uint8_t *p, unsigned i, uint32_t v)
{
	memcpy(p + 4 * i, &v, 4);
}

static int16_t sat16(int32_t v)
{
	return (int16_t)(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
}

static void c_pshufd(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	for (unsigned i = 0; i < 4; i++)
		st32(r, i, ld32(s, (imm >> (2 * i)) & 3));
	memcpy(d, r, 16);
}

static void c_pshuflw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	memcpy(r, s, 16);
	for (unsigned i = 0; i < 4; i++)
		st16(r, i, ld16(s, (imm >> (2 * i)) & 3));
	memcpy(d, r, 16);
}

static void c_pshufhw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	memcpy(r, s, 16);
	for (unsigned i = 0; i < 4; i++)
		st16(r, 4 + i, ld16(s, 4 + ((imm >> (2 * i)) & 3)));
	memcpy(d, r, 16);
}

static void c_shufps(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	st32(r, 0, ld32(d, imm & 3));
	st32(r, 1, ld32(d, (imm >> 2) & 3));
	st32(r, 2, ld32(s, (imm >> 4) & 3));
	st32(r, 3, ld32(s, (imm >> 6) & 3));
	memcpy(d, r, 16);
}

static void c_shufpd(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	memcpy(r, d + 8 * (imm & 1), 8);
	memcpy(r + 8, s + 8 * ((imm >> 1) & 1), 8);
	memcpy(d, r, 16);
}

static void c_pslldq(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16] = { 0 };

	(void)s;
	imm &= 0xff;
	for (unsigned i = imm; i < 16; i++)
		r[i] = d[i - imm];
	memcpy(d, r, 16);
}

static void c_psrldq(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16] = { 0 };

	(void)s;
	imm &= 0xff;
	for (unsigned i = 0; i + imm < 16; i++)
		r[i] = d[i + imm];
	memcpy(d, r, 16);
}

static void c_pshufb(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t r[16];

	(void)imm;
	for (unsigned i = 0; i < 16; i++)
		r[i] = (s[i] & 0x80) ? 0 : d[s[i] & 15];
	memcpy(d, r, 16);
}

static void c_palignr(uint8_t *d, const uint8_t *s, unsigned imm)
{
	uint8_t cat[32], r[16];

	memcpy(cat, s, 16);
	memcpy(cat + 16, d, 16);
	imm &= 0xff;
	for (unsigned i = 0; i < 16; i++)
		r[i] = i + imm < 32 ? cat[i + imm] : 0;
	memcpy(d, r, 16);
}

static void c_pabsb(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 16; i++) {
		int8_t v = (int8_t)s[i];

		d[i] = (uint8_t)(v < 0 ? -v : v);
	}
}

static void c_pabsw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 8; i++) {
		int16_t v = (int16_t)ld16(s, i);

		st16(d, i, (uint16_t)(v < 0 ? -(int32_t)v : v));
	}
}

static void c_pabsd(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 4; i++) {
		uint32_t v = ld32(s, i);

		st32(d, i, (v & 0x80000000u) ? 0u - v : v);
	}
}

static void c_psignb(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 16; i++) {
		int8_t v = (int8_t)s[i];

		d[i] = v < 0 ? (uint8_t)(0u - d[i]) : v == 0 ? 0 : d[i];
	}
}

static void c_psignw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 8; i++) {
		int16_t v = (int16_t)ld16(s, i);
		uint16_t x = ld16(d, i);

		st16(d, i, v < 0 ? (uint16_t)(0u - x) : v == 0 ? 0 : x);
	}
}

static void c_psignd(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 4; i++) {
		int32_t v = (int32_t)ld32(s, i);
		uint32_t x = ld32(d, i);

		st32(d, i, v < 0 ? 0u - x : v == 0 ? 0 : x);
	}
}

/* Horizontal word ops: kind 0 add, 1 add saturating, 2 sub, 3 sub sat. */
static void hword(uint8_t *d, const uint8_t *s, int kind)
{
	uint8_t r[16];

	for (unsigned i = 0; i < 8; i++) {
		const uint8_t *src = i < 4 ? d : s;
		unsigned j = (i & 3) * 2;
		int32_t a = (int16_t)ld16(src, j), b = (int16_t)ld16(src, j + 1);
		int32_t v = kind < 2 ? a + b : a - b;

		st16(r, i, (kind & 1) ? (uint16_t)sat16(v) : (uint16_t)v);
	}
	memcpy(d, r, 16);
}

static void hdword(uint8_t *d, const uint8_t *s, bool sub)
{
	uint8_t r[16];

	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *src = i < 2 ? d : s;
		unsigned j = (i & 1) * 2;
		uint32_t a = ld32(src, j), b = ld32(src, j + 1);

		st32(r, i, sub ? a - b : a + b);
	}
	memcpy(d, r, 16);
}

static void c_phaddw(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hword(d, s, 0); }
static void c_phaddsw(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hword(d, s, 1); }
static void c_phsubw(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hword(d, s, 2); }
static void c_phsubsw(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hword(d, s, 3); }
static void c_phaddd(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hdword(d, s, false); }
static void c_phsubd(uint8_t *d, const uint8_t *s, unsigned i) { (void)i; hdword(d, s, true); }

static void c_pmaddubsw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 8; i++) {
		int32_t v = (int32_t)d[2 * i] * (int8_t)s[2 * i] +
			    (int32_t)d[2 * i + 1] * (int8_t)s[2 * i + 1];

		st16(d, i, (uint16_t)sat16(v));
	}
}

static void c_pmulhrsw(uint8_t *d, const uint8_t *s, unsigned imm)
{
	(void)imm;
	for (unsigned i = 0; i < 8; i++) {
		int32_t v = (int32_t)(int16_t)ld16(d, i) * (int16_t)ld16(s, i);

		st16(d, i, (uint16_t)(((v >> 14) + 1) >> 1));
	}
}

/* ---- the table-driven handler ----------------------------------------- */

struct sse_desc {
	sse_fn fn;
	bool fp;   /* runs under the guest MXCSR, may raise SIMD exceptions */
};

#define I(mn, f) [EMU_OP_##mn] = { f, false }
#define F(mn, f) [EMU_OP_##mn] = { f, true }
static const struct sse_desc descs[EMU_OP_COUNT] = {
	I(PXOR, a_pxor), I(POR, a_por), I(PAND, a_pand), I(PANDN, a_pandn),
	I(XORPS, a_xorps), I(ORPS, a_orps), I(ANDPS, a_andps),
	I(ANDNPS, a_andnps), I(XORPD, a_xorpd), I(ORPD, a_orpd),
	I(ANDPD, a_andpd), I(ANDNPD, a_andnpd),
	I(PCMPEQB, a_pcmpeqb), I(PCMPEQW, a_pcmpeqw), I(PCMPEQD, a_pcmpeqd),
	I(PCMPGTB, a_pcmpgtb), I(PCMPGTW, a_pcmpgtw), I(PCMPGTD, a_pcmpgtd),
	I(PMINUB, a_pminub), I(PMAXUB, a_pmaxub), I(PMINSW, a_pminsw),
	I(PMAXSW, a_pmaxsw),
	I(PADDB, a_paddb), I(PADDW, a_paddw), I(PADDD, a_paddd),
	I(PADDQ, a_paddq), I(PSUBB, a_psubb), I(PSUBW, a_psubw),
	I(PSUBD, a_psubd), I(PSUBQ, a_psubq), I(PADDUSB, a_paddusb),
	I(PADDUSW, a_paddusw), I(PSUBUSB, a_psubusb), I(PSUBUSW, a_psubusw),
	I(PADDSB, a_paddsb), I(PADDSW, a_paddsw), I(PSUBSB, a_psubsb),
	I(PSUBSW, a_psubsw),
	I(PSLLW, a_psllw), I(PSLLD, a_pslld), I(PSLLQ, a_psllq),
	I(PSRLW, a_psrlw), I(PSRLD, a_psrld), I(PSRLQ, a_psrlq),
	I(PSRAW, a_psraw), I(PSRAD, a_psrad),
	I(PSLLDQ, c_pslldq), I(PSRLDQ, c_psrldq),
	I(PUNPCKLBW, a_punpcklbw), I(PUNPCKLWD, a_punpcklwd),
	I(PUNPCKLDQ, a_punpckldq), I(PUNPCKLQDQ, a_punpcklqdq),
	I(PUNPCKHBW, a_punpckhbw), I(PUNPCKHWD, a_punpckhwd),
	I(PUNPCKHDQ, a_punpckhdq), I(PUNPCKHQDQ, a_punpckhqdq),
	I(PACKUSWB, a_packuswb), I(PACKSSWB, a_packsswb),
	I(PACKSSDW, a_packssdw),
	I(PSHUFD, c_pshufd), I(PSHUFLW, c_pshuflw), I(PSHUFHW, c_pshufhw),
	I(SHUFPS, c_shufps), I(SHUFPD, c_shufpd),
	I(PMULLW, a_pmullw), I(PMULHW, a_pmulhw), I(PMULHUW, a_pmulhuw),
	I(PMULUDQ, a_pmuludq), I(PMADDWD, a_pmaddwd), I(PSADBW, a_psadbw),
	I(PAVGB, a_pavgb), I(PAVGW, a_pavgw),
	I(PSHUFB, c_pshufb), I(PALIGNR, c_palignr),
	I(PABSB, c_pabsb), I(PABSW, c_pabsw), I(PABSD, c_pabsd),
	I(PSIGNB, c_psignb), I(PSIGNW, c_psignw), I(PSIGND, c_psignd),
	I(PHADDW, c_phaddw), I(PHADDD, c_phaddd), I(PHADDSW, c_phaddsw),
	I(PHSUBW, c_phsubw), I(PHSUBD, c_phsubd), I(PHSUBSW, c_phsubsw),
	I(PMADDUBSW, c_pmaddubsw), I(PMULHRSW, c_pmulhrsw),
	I(UNPCKLPS, a_unpcklps), I(UNPCKHPS, a_unpckhps),
	I(UNPCKLPD, a_unpcklpd), I(UNPCKHPD, a_unpckhpd),
	I(MOVSLDUP, a_movsldup), I(MOVSHDUP, a_movshdup),
	I(MOVDDUP, a_movddup),
	F(ADDPS, a_addps), F(ADDPD, a_addpd), F(ADDSS, a_addss),
	F(ADDSD, a_addsd), F(SUBPS, a_subps), F(SUBPD, a_subpd),
	F(SUBSS, a_subss), F(SUBSD, a_subsd), F(MULPS, a_mulps),
	F(MULPD, a_mulpd), F(MULSS, a_mulss), F(MULSD, a_mulsd),
	F(DIVPS, a_divps), F(DIVPD, a_divpd), F(DIVSS, a_divss),
	F(DIVSD, a_divsd), F(MINPS, a_minps), F(MINPD, a_minpd),
	F(MINSS, a_minss), F(MINSD, a_minsd), F(MAXPS, a_maxps),
	F(MAXPD, a_maxpd), F(MAXSS, a_maxss), F(MAXSD, a_maxsd),
	F(SQRTPS, a_sqrtps), F(SQRTPD, a_sqrtpd), F(SQRTSS, a_sqrtss),
	F(SQRTSD, a_sqrtsd),
	F(CMPPS, a_cmpps), F(CMPPD, a_cmppd), F(CMPSS, a_cmpss),
	F(CMPSD, a_cmpsd),
	F(CVTSS2SD, a_cvtss2sd), F(CVTSD2SS, a_cvtsd2ss),
	F(CVTDQ2PS, a_cvtdq2ps), F(CVTPS2DQ, a_cvtps2dq),
	F(CVTTPS2DQ, a_cvttps2dq), F(CVTDQ2PD, a_cvtdq2pd),
	F(CVTPD2DQ, a_cvtpd2dq), F(CVTTPD2DQ, a_cvttpd2dq),
	F(CVTPS2PD, a_cvtps2pd), F(CVTPD2PS, a_cvtpd2ps),
	F(ADDSUBPS, a_addsubps), F(ADDSUBPD, a_addsubpd),
	F(HADDPS, a_haddps), F(HADDPD, a_haddpd), F(HSUBPS, a_hsubps),
	F(HSUBPD, a_hsubpd),
};
#undef I
#undef F

EMU_HANDLER(sse_op)
{
	const struct sse_desc *ds = &descs[in->op < EMU_OP_COUNT ? in->op : 0];
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	uint8_t dv[16], sv[16];
	unsigned imm = 0;
	uint32_t saved;
	int r;

	if (!ds->fn || in->nr_opnds < 2 || d->kind != EMU_OPND_XMM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	memcpy(dv, cpu->xmm[d->reg & 15], 16);
	if (s->kind == EMU_OPND_IMM) {
		/* PSxx xmm, imm8: the count as a 64-bit source; PSLLDQ. */
		uint64_t c = (uint64_t)s->val & 0xff;

		memset(sv, 0, 16);
		memcpy(sv, &c, 8);
		imm = (unsigned)c;
	} else {
		r = opnd_load(cpu, in, s, *next, s->size, true, sv);
		if (r)
			return r;
	}
	if (in->nr_opnds >= 3 && in->opnd[2].kind == EMU_OPND_IMM)
		imm = (unsigned)(in->opnd[2].val & 0xff);
	if (ds->fp) {
		saved = fp_enter(cpu);
		ds->fn(dv, sv, imm);
		r = fp_leave(cpu, saved);
		if (r)
			return r;
	} else {
		ds->fn(dv, sv, imm);
	}
	memcpy(cpu->xmm[d->reg & 15], dv, 16);
	return 0;
}

/* ---- moves ------------------------------------------------------------ */

EMU_HANDLER(sse_mov)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	uint8_t v[16];
	unsigned size = 16, lo = 0;  /* bytes moved; offset in the XMM */
	bool aligned = false, zero_ext = false;
	int r;

	if (in->nr_opnds < 2 || d->kind == EMU_OPND_OTHER ||
	    s->kind == EMU_OPND_OTHER)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	switch (in->op) {
	case EMU_OP_MOVAPS: case EMU_OP_MOVAPD: case EMU_OP_MOVDQA:
	case EMU_OP_MOVNTDQ: case EMU_OP_MOVNTPS: case EMU_OP_MOVNTPD:
		aligned = true;
		break;
	case EMU_OP_MOVUPS: case EMU_OP_MOVUPD: case EMU_OP_MOVDQU:
	case EMU_OP_LDDQU:
		break;
	case EMU_OP_MOVSS:
	case EMU_OP_MOVSD:
		/* xmm <- mem zero-extends; register and store forms move the
		 * low element only. */
		size = in->op == EMU_OP_MOVSS ? 4 : 8;
		zero_ext = s->kind == EMU_OPND_MEM;
		break;
	case EMU_OP_MOVLPS: case EMU_OP_MOVLPD:
		size = 8;
		break;
	case EMU_OP_MOVHPS: case EMU_OP_MOVHPD:
		size = 8;
		lo = 8;
		break;
	case EMU_OP_MOVHLPS: /* xmm1[63:0] = xmm2[127:64] */
		if (d->kind != EMU_OPND_XMM || s->kind != EMU_OPND_XMM)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		memcpy(cpu->xmm[d->reg & 15], cpu->xmm[s->reg & 15] + 8, 8);
		return 0;
	case EMU_OP_MOVLHPS: /* xmm1[127:64] = xmm2[63:0] */
		if (d->kind != EMU_OPND_XMM || s->kind != EMU_OPND_XMM)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		memcpy(cpu->xmm[d->reg & 15] + 8, cpu->xmm[s->reg & 15], 8);
		return 0;
	case EMU_OP_MOVD:
	case EMU_OP_MOVQ:
		if (d->kind == EMU_OPND_XMM) {
			uint64_t x = 0;

			if (s->kind == EMU_OPND_XMM) {
				memcpy(&x, cpu->xmm[s->reg & 15], 8);
			} else {
				size = s->size == 8 ? 8 : 4;
				r = emu_opnd_read(cpu, in, s, size, *next, &x);
				if (r)
					return r;
			}
			memset(cpu->xmm[d->reg & 15], 0, 16);
			memcpy(cpu->xmm[d->reg & 15], &x, 8);
			return 0;
		}
		if (s->kind == EMU_OPND_XMM) {
			uint64_t x = 0;

			size = d->size == 8 ? 8 : 4;
			memcpy(&x, cpu->xmm[s->reg & 15], size);
			return emu_opnd_write(cpu, in, d, size, *next, x);
		}
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}

	if (d->kind == EMU_OPND_XMM) {
		uint8_t *x = cpu->xmm[d->reg & 15];

		if (s->kind == EMU_OPND_XMM) {
			memcpy(v, cpu->xmm[s->reg & 15] + lo, size);
		} else {
			r = opnd_load(cpu, in, s, *next, size, aligned, v);
			if (r)
				return r;
		}
		if (zero_ext)
			memset(x, 0, 16);
		memcpy(x + lo, v, size);
		return 0;
	}
	if (s->kind != EMU_OPND_XMM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	return opnd_store(cpu, in, d, *next, size, aligned,
			  cpu->xmm[s->reg & 15] + lo);
}

EMU_HANDLER(sse_movmsk)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	const uint8_t *x;
	uint64_t m = 0;
	int r;

	if (d->kind != EMU_OPND_GPR || s->kind != EMU_OPND_XMM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	x = cpu->xmm[s->reg & 15];
	switch (in->op) {
	case EMU_OP_PMOVMSKB:
		for (unsigned i = 0; i < 16; i++)
			m |= (uint64_t)(x[i] >> 7) << i;
		break;
	case EMU_OP_MOVMSKPS:
		for (unsigned i = 0; i < 4; i++)
			m |= (uint64_t)(x[4 * i + 3] >> 7) << i;
		break;
	default:
		m = (uint64_t)(x[7] >> 7) | (uint64_t)(x[15] >> 7) << 1;
		break;
	}
	emu_reg_write(cpu, d->reg, d->size >= 4 ? d->size : 4, m);
	return 0;
}

EMU_HANDLER(sse_pextrw)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	uint16_t w;
	int r;

	if (in->nr_opnds < 3 || s->kind != EMU_OPND_XMM ||
	    (d->kind != EMU_OPND_GPR && d->kind != EMU_OPND_MEM))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	w = ld16(cpu->xmm[s->reg & 15], (unsigned)in->opnd[2].val & 7);
	if (d->kind == EMU_OPND_MEM) /* SSE4.1 form */
		return emu_opnd_write(cpu, in, d, 2, *next, w);
	emu_reg_write(cpu, d->reg, d->size >= 4 ? d->size : 4, w);
	return 0;
}

EMU_HANDLER(sse_pinsrw)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	uint64_t v;
	int r;

	if (in->nr_opnds < 3 || d->kind != EMU_OPND_XMM ||
	    (s->kind != EMU_OPND_GPR && s->kind != EMU_OPND_MEM))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	r = emu_opnd_read(cpu, in, s, 2, *next, &v);
	if (r)
		return r;
	st16(cpu->xmm[d->reg & 15], (unsigned)in->opnd[2].val & 7,
	     (uint16_t)v);
	return 0;
}

/* ---- conversions with a GPR, COMISS ----------------------------------- */

EMU_HANDLER(sse_cvtsi2f)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	uint8_t dv[16];
	uint64_t v;
	unsigned size = s->size == 8 ? 8 : 4;
	bool sd = in->op == EMU_OP_CVTSI2SD;
	uint32_t saved;
	int r;

	if (d->kind != EMU_OPND_XMM ||
	    (s->kind != EMU_OPND_GPR && s->kind != EMU_OPND_MEM))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	r = emu_opnd_read(cpu, in, s, size, *next, &v);
	if (r)
		return r;
	memcpy(dv, cpu->xmm[d->reg & 15], 16);
	saved = fp_enter(cpu);
#define CVTI(insn)                                                           \
	__asm__ volatile("movdqu (%0), %%xmm0\n\t" insn " (%1), %%xmm0\n\t"  \
			 "movdqu %%xmm0, (%0)"                               \
			 : : "r"(dv), "r"(&v) : "xmm0", "memory")
	if (sd && size == 8)
		CVTI("cvtsi2sdq");
	else if (sd)
		CVTI("cvtsi2sdl");
	else if (size == 8)
		CVTI("cvtsi2ssq");
	else
		CVTI("cvtsi2ssl");
#undef CVTI
	r = fp_leave(cpu, saved);
	if (r)
		return r;
	memcpy(cpu->xmm[d->reg & 15], dv, 16);
	return 0;
}

EMU_HANDLER(sse_cvtf2si)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	bool sd = in->op == EMU_OP_CVTSD2SI || in->op == EMU_OP_CVTTSD2SI;
	bool trunc = in->op == EMU_OP_CVTTSS2SI || in->op == EMU_OP_CVTTSD2SI;
	bool q = d->size == 8;
	uint8_t sv[16];
	uint64_t res = 0;
	uint32_t saved;
	int r, k;

	if (d->kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	r = opnd_load(cpu, in, s, *next, sd ? 8 : 4, false, sv);
	if (r)
		return r;
	k = (sd ? 4 : 0) | (trunc ? 2 : 0) | (q ? 1 : 0);
	saved = fp_enter(cpu);
#define CVTF(insn, reg)                                                      \
	__asm__ volatile(insn " (%1), %" reg "0" : "=r"(res) : "r"(sv)       \
			 : "memory")
	switch (k) {
	case 0: CVTF("cvtss2si", "k"); break;
	case 1: CVTF("cvtss2si", "q"); break;
	case 2: CVTF("cvttss2si", "k"); break;
	case 3: CVTF("cvttss2si", "q"); break;
	case 4: CVTF("cvtsd2si", "k"); break;
	case 5: CVTF("cvtsd2si", "q"); break;
	case 6: CVTF("cvttsd2si", "k"); break;
	default: CVTF("cvttsd2si", "q"); break;
	}
#undef CVTF
	r = fp_leave(cpu, saved);
	if (r)
		return r;
	emu_reg_write(cpu, d->reg, q ? 8 : 4, res);
	return 0;
}

EMU_HANDLER(sse_comi)
{
	const struct emu_opnd *d = &in->opnd[0], *s = &in->opnd[1];
	bool sd = in->op == EMU_OP_UCOMISD || in->op == EMU_OP_COMISD;
	bool u = in->op == EMU_OP_UCOMISS || in->op == EMU_OP_UCOMISD;
	uint8_t dv[16], sv[16], zf = 0, pf = 0, cf = 0;
	uint32_t saved;
	uint64_t fl;
	int r;

	if (d->kind != EMU_OPND_XMM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	r = opnd_load(cpu, in, s, *next, sd ? 8 : 4, false, sv);
	if (r)
		return r;
	memcpy(dv, cpu->xmm[d->reg & 15], 16);
	saved = fp_enter(cpu);
#define COMI(insn)                                                           \
	__asm__ volatile("movdqu (%3), %%xmm0\n\tmovdqu (%4), %%xmm1\n\t"    \
			 insn " %%xmm1, %%xmm0\n\t"                          \
			 "setz %0\n\tsetp %1\n\tsetc %2"                     \
			 : "=q"(zf), "=q"(pf), "=q"(cf)                      \
			 : "r"(dv), "r"(sv) : "xmm0", "xmm1", "memory", "cc")
	switch ((sd ? 2 : 0) | (u ? 1 : 0)) {
	case 0: COMI("comiss"); break;
	case 1: COMI("ucomiss"); break;
	case 2: COMI("comisd"); break;
	default: COMI("ucomisd"); break;
	}
#undef COMI
	r = fp_leave(cpu, saved);
	if (r)
		return r;
	/* ZF, PF, CF from the compare; OF, SF, AF cleared (SDM Vol. 2B
	 * UCOMISS). */
	fl = emu_flags_get(cpu) & ~(uint64_t)EMU_FL_STATUS;
	if (zf)
		fl |= EMU_FL_ZF;
	if (pf)
		fl |= EMU_FL_PF;
	if (cf)
		fl |= EMU_FL_CF;
	emu_flags_set(cpu, fl);
	return 0;
}

/* ---- state ------------------------------------------------------------ */

EMU_HANDLER(sse_ldmxcsr)
{
	uint64_t v;
	int r;

	if (in->opnd[0].kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	r = emu_opnd_read(cpu, in, &in->opnd[0], 4, *next, &v);
	if (r)
		return r;
	if (v & ~(uint64_t)MXCSR_MASK)
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	cpu->mxcsr = (uint32_t)v;
	return 0;
}

EMU_HANDLER(sse_stmxcsr)
{
	int r;

	if (in->opnd[0].kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = sse_avail(cpu);
	if (r)
		return r;
	return emu_opnd_write(cpu, in, &in->opnd[0], 4, *next, cpu->mxcsr);
}

static int fx_avail(struct emu_cpu *cpu)
{
	if (cpu->cr0 & (CR0_EM | CR0_TS))
		return emu_raise(cpu, EMU_VEC_NM, false, 0);
	return 0;
}

/* The FXSAVE area (SDM Vol. 1 10.5.1, tables 10-2 and 10-3). */
EMU_HANDLER(fxsave)
{
	const struct emu_opnd *o = &in->opnd[0];
	bool w64 = in->op == EMU_OP_FXSAVE64;
	unsigned top = (cpu->fsw >> 11) & 7, nxmm;
	uint8_t a[416];
	uint64_t off;
	uint32_t mask = MXCSR_MASK;
	int r;

	if (o->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = fx_avail(cpu);
	if (r)
		return r;
	off = emu_ea(cpu, in, o, *next);
	if (misaligned(cpu, o, off, 16))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	memset(a, 0, sizeof(a));
	memcpy(a + 0, &cpu->fcw, 2);
	memcpy(a + 2, &cpu->fsw, 2);
	a[4] = cpu->x87_valid;
	memcpy(a + 6, &cpu->fop, 2);
	if (w64) {
		memcpy(a + 8, &cpu->fip, 8);
		memcpy(a + 16, &cpu->fdp, 8);
	} else {
		memcpy(a + 8, &cpu->fip, 4);
		memcpy(a + 12, &cpu->fcs, 2);
		memcpy(a + 16, &cpu->fdp, 4);
		memcpy(a + 20, &cpu->fds, 2);
	}
	memcpy(a + 24, &cpu->mxcsr, 4);
	memcpy(a + 28, &mask, 4);
	for (unsigned i = 0; i < 8; i++)
		memcpy(a + 32 + 16 * i, &cpu->x87_st[(top + i) & 7], 10);
	nxmm = cpu->mode == EMU_MODE_LONG64 ? 16 : 8;
	for (unsigned i = 0; i < nxmm; i++)
		memcpy(a + 160 + 16 * i, cpu->xmm[i], 16);
	/* Bytes 416-511 are not written (reserved / available to
	 * software); mem_write_buf() probes both ends before storing. */
	return mem_write_buf(cpu, o->seg, off, a, 160 + 16 * nxmm,
			     in->addrsize);
}

EMU_HANDLER(fxrstor)
{
	const struct emu_opnd *o = &in->opnd[0];
	bool w64 = in->op == EMU_OP_FXRSTOR64;
	unsigned top, nxmm;
	uint8_t a[416];
	uint32_t mx;
	uint64_t off;
	int r;

	if (o->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = fx_avail(cpu);
	if (r)
		return r;
	off = emu_ea(cpu, in, o, *next);
	if (misaligned(cpu, o, off, 16))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	nxmm = cpu->mode == EMU_MODE_LONG64 ? 16 : 8;
	r = mem_read_buf(cpu, o->seg, off, a, 160 + 16 * nxmm, in->addrsize);
	if (r)
		return r;
	memcpy(&mx, a + 24, 4);
	if (mx & ~MXCSR_MASK)
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	/* All checks done: commit. */
	cpu->mxcsr = mx;
	memcpy(&cpu->fcw, a + 0, 2);
	memcpy(&cpu->fsw, a + 2, 2);
	cpu->x87_valid = a[4];
	memcpy(&cpu->fop, a + 6, 2);
	cpu->fop &= 0x7ff;
	if (w64) {
		memcpy(&cpu->fip, a + 8, 8);
		memcpy(&cpu->fdp, a + 16, 8);
		cpu->fcs = cpu->fds = 0;
	} else {
		cpu->fip = cpu->fdp = 0;
		memcpy(&cpu->fip, a + 8, 4);
		memcpy(&cpu->fcs, a + 12, 2);
		memcpy(&cpu->fdp, a + 16, 4);
		memcpy(&cpu->fds, a + 20, 2);
	}
	top = (cpu->fsw >> 11) & 7;
	for (unsigned i = 0; i < 8; i++) {
		long double *st = &cpu->x87_st[(top + i) & 7];

		memset(st, 0, sizeof(*st));
		memcpy(st, a + 32 + 16 * i, 10);
	}
	for (unsigned i = 0; i < nxmm; i++)
		memcpy(cpu->xmm[i], a + 160 + 16 * i, 16);
	return 0;
}

/* EMMS: all x87 tags empty (SDM Vol. 2A EMMS). */
EMU_HANDLER(emms)
{
	if (cpu->cr0 & CR0_EM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cr0 & CR0_TS)
		return emu_raise(cpu, EMU_VEC_NM, false, 0);
	cpu->x87_valid = 0;
	return 0;
}
