/*
 * exec_x87.c - the x87 FPU subset user space needs (SDM Vol. 1 chapter 8,
 * Vol. 2 for each instruction).
 *
 * State (cpu.h): the eight physical registers R0-R7 as host `long double`
 * (the host is x86-64, whose long double is the same 80-bit extended
 * format, so no bit is lost: the value is kept as its 10 bytes), FCW, FSW
 * (with TOP in bits 13:11), a valid bit per physical register (the
 * abridged tag of FXSAVE; the full tag word is derived when FNSTENV stores
 * it), FOP and the last instruction / data pointers.
 *
 * Arithmetic runs on the host FPU, like the SSE side: the operands are
 * loaded from our state into the host x87 stack inside one asm block that
 * runs with the guest's FCW (precision and rounding control) but all
 * exceptions masked, executes the same instruction, stores the result and
 * the status word and leaves the host stack empty, as the ABI wants it.
 * The host's exception flags and C0-C3 are merged into the guest FSW.  The
 * guest's own unmasked exceptions follow the x87 model: the flag and
 * FSW.ES/B are set and the #MF is raised by the next waiting x87
 * instruction (or FWAIT) when CR0.NE=1 (SDM Vol. 1 8.7); for invalid,
 * divide-by-zero and denormal the destination is left unchanged.
 *
 * Stack faults (SDM Vol. 1 8.5.1.1) never reach the host: reading an empty
 * register sets IE|SF (C1=0) and, masked, yields the QNaN "real
 * indefinite"; pushing onto a full register sets IE|SF|C1 and, masked,
 * loads the indefinite.
 *
 * Decoding: Zydis gives the mnemonic, the memory operand and its size, and
 * the primary opcode (D8-DF, in insn->cc); register forms need ST(i), which
 * the decoded form does not carry, so it is read from the ModRM byte, the
 * last byte of every x87 register-form instruction.
 *
 * Availability: CR0.EM or CR0.TS -> #NM; FWAIT: #NM when CR0.TS and MP.
 */
#include <string.h>

#include "accel/emu/exec.h"

#define CR0_MP (1ull << 1)
#define CR0_EM (1ull << 2)
#define CR0_TS (1ull << 3)
#define CR0_NE (1ull << 5)

#define FSW_IE 0x0001u
#define FSW_DE 0x0002u
#define FSW_ZE 0x0004u
#define FSW_SF 0x0040u
#define FSW_ES 0x0080u
#define FSW_C0 0x0100u
#define FSW_C1 0x0200u
#define FSW_C2 0x0400u
#define FSW_C3 0x4000u
#define FSW_B  0x8000u
#define FSW_CC (FSW_C0 | FSW_C1 | FSW_C2 | FSW_C3)
#define FSW_TOP_SHIFT 11

void emu_x87_reset(struct emu_cpu *cpu)
{
	cpu->fcw = 0x037f;
	cpu->fsw = 0;
	cpu->x87_valid = 0;
	cpu->fop = 0;
	cpu->fip = cpu->fdp = 0;
	cpu->fcs = cpu->fds = 0;
}

static unsigned x_top(const struct emu_cpu *cpu)
{
	return (cpu->fsw >> FSW_TOP_SHIFT) & 7;
}

static void x_set_top(struct emu_cpu *cpu, unsigned top)
{
	cpu->fsw = (uint16_t)((cpu->fsw & ~(7u << FSW_TOP_SHIFT)) |
			      ((top & 7) << FSW_TOP_SHIFT));
}

static unsigned phys(const struct emu_cpu *cpu, unsigned i)
{
	return (x_top(cpu) + i) & 7;
}

static bool x_valid(const struct emu_cpu *cpu, unsigned i)
{
	return cpu->x87_valid & (1u << phys(cpu, i));
}

static long double *x_st(struct emu_cpu *cpu, unsigned i)
{
	return &cpu->x87_st[phys(cpu, i)];
}

static long double indefinite(void)
{
	/* sign 1, exponent all ones, mantissa 0xC000000000000000 */
	static const uint8_t b[10] = { 0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff };
	long double v;

	memset(&v, 0, sizeof(v));
	memcpy(&v, b, 10);
	return v;
}

static void x_push(struct emu_cpu *cpu, long double v)
{
	unsigned t = (x_top(cpu) - 1) & 7;

	x_set_top(cpu, t);
	memset(&cpu->x87_st[t], 0, sizeof(long double));
	memcpy(&cpu->x87_st[t], &v, 10);
	cpu->x87_valid |= (uint8_t)(1u << t);
}

static void x_pop(struct emu_cpu *cpu)
{
	cpu->x87_valid &= (uint8_t)~(1u << x_top(cpu));
	x_set_top(cpu, x_top(cpu) + 1);
}

/* Record exceptions `ex` (IE..PE, SF); true when the result may be
 * written (no unmasked IE/ZE/DE). */
static bool x_except(struct emu_cpu *cpu, unsigned ex)
{
	unsigned unmasked = ex & ~cpu->fcw & 0x3f;

	cpu->fsw |= (uint16_t)(ex & 0x7f);
	if (unmasked) {
		cpu->fsw |= FSW_ES | FSW_B;
		if (unmasked & (FSW_IE | FSW_DE | FSW_ZE))
			return false;
	}
	return true;
}

/* Stack underflow reading ST(i): IE|SF, C1 = 0. */
static bool x_underflow(struct emu_cpu *cpu)
{
	cpu->fsw &= (uint16_t)~FSW_C1;
	return x_except(cpu, FSW_IE | FSW_SF);
}

/* Push with the overflow check. */
static void x_push_checked(struct emu_cpu *cpu, long double v, bool ok)
{
	unsigned t = (x_top(cpu) - 1) & 7;

	if (cpu->x87_valid & (1u << t)) {
		cpu->fsw |= FSW_C1;
		if (!x_except(cpu, FSW_IE | FSW_SF))
			return;
		v = indefinite();
	} else if (!ok) {
		return;
	}
	x_push(cpu, v);
}

/* ---- host execution ---------------------------------------------------- */

enum host_op {
	H_ADD, H_SUB, H_SUBR, H_MUL, H_DIV, H_DIVR, /* r = a op b */
	H_SQRT, H_RNDINT, H_SCALE, H_PREM, H_COM, H_UCOM, H_XAM,
	H_LD32, H_LD64, H_ST32, H_ST64, H_ILD16, H_ILD32, H_ILD64,
	H_IST16, H_IST32, H_IST64, H_ITT16, H_ITT32, H_ITT64,
	H_LDZ, H_LD1, H_LDPI, H_LDL2E, H_LDL2T, H_LDLG2, H_LDLN2,
};

/* Run `op` on the host FPU under the guest's FCW with exceptions masked.
 * a, b: operands (80-bit); m: memory image for loads/stores; r: result.
 * Returns the host status word. */
static uint16_t host_x87(const struct emu_cpu *cpu, enum host_op op,
			 const long double *a, const long double *b,
			 void *m, long double *r)
{
	uint16_t hcw, gcw = (uint16_t)(cpu->fcw | 0x3f), sw;
	/* The status word right after the operation (C0-C3 belong to it,
	 * not to the FSTP that stores the result); 0xffff: not captured. */
	volatile uint16_t opsw = 0xffff;

	__asm__ volatile("fnstcw %0\n\tfnclex\n\tfldcw %1"
			 : "=m"(hcw) : "m"(gcw) : "memory");
#define BIN(insn)                                                            \
	__asm__ volatile("fldt %1\n\tfldt %0\n\t" insn " %%st(1), %%st\n\t"  \
			 "fnstsw %3\n\tfstpt %2\n\tfstp %%st(0)"          \
			 : : "m"(*a), "m"(*b), "m"(*r), "m"(opsw) : "memory")
#define UN(insn)                                                             \
	__asm__ volatile("fldt %0\n\t" insn "\n\tfnstsw %2\n\tfstpt %1"      \
			 : : "m"(*a), "m"(*r), "m"(opsw) : "memory")
#define TWO(insn) /* st0 = a, st1 = b, result st0 */                         \
	__asm__ volatile("fldt %1\n\tfldt %0\n\t" insn "\n\t"                \
			 "fnstsw %3\n\tfstpt %2\n\tfstp %%st(0)"          \
			 : : "m"(*a), "m"(*b), "m"(*r), "m"(opsw) : "memory")
#define CMP(insn) /* st0 = a, st1 = b; both popped */                     \
	__asm__ volatile("fldt %1\n\tfldt %0\n\t" insn "\n\t"                \
			 "fstp %%st(0)\n\tfstp %%st(0)"                      \
			 : : "m"(*a), "m"(*b) : "memory")
#define LOAD(insn)                                                           \
	__asm__ volatile(insn " %0\n\tfnstsw %2\n\tfstpt %1"                 \
			 : : "m"(*(char *)m), "m"(*r), "m"(opsw) : "memory")
#define STORE(insn) /* the p forms pop, leaving the stack empty */           \
	__asm__ volatile("fldt %0\n\t" insn " %1" : : "m"(*a),               \
			 "m"(*(char *)m) : "memory")
#define CONST(insn)                                                          \
	__asm__ volatile(insn "\n\tfnstsw %1\n\tfstpt %0"                    \
			 : : "m"(*r), "m"(opsw) : "memory")
	switch (op) {
	case H_ADD: BIN("fadd"); break;
	case H_SUB: BIN("fsub"); break;
	case H_SUBR: BIN("fsubr"); break;
	case H_MUL: BIN("fmul"); break;
	case H_DIV: BIN("fdiv"); break;
	case H_DIVR: BIN("fdivr"); break;
	case H_SQRT: UN("fsqrt"); break;
	case H_RNDINT: UN("frndint"); break;
	case H_XAM: UN("fxam"); break;
	case H_SCALE: TWO("fscale"); break;
	case H_PREM: TWO("fprem"); break;
	case H_COM: CMP("fcom"); break;
	case H_UCOM: CMP("fucom"); break;
	case H_LD32: LOAD("flds"); break;
	case H_LD64: LOAD("fldl"); break;
	case H_ILD16: LOAD("filds"); break;
	case H_ILD32: LOAD("fildl"); break;
	case H_ILD64: LOAD("fildll"); break;
	case H_ST32: STORE("fstps"); break;
	case H_ST64: STORE("fstpl"); break;
	case H_IST16: STORE("fistps"); break;
	case H_IST32: STORE("fistpl"); break;
	case H_IST64: STORE("fistpll"); break;
	case H_ITT16: STORE("fisttps"); break;
	case H_ITT32: STORE("fisttpl"); break;
	case H_ITT64: STORE("fisttpll"); break;
	case H_LDZ: CONST("fldz"); break;
	case H_LD1: CONST("fld1"); break;
	case H_LDPI: CONST("fldpi"); break;
	case H_LDL2E: CONST("fldl2e"); break;
	case H_LDL2T: CONST("fldl2t"); break;
	case H_LDLG2: CONST("fldlg2"); break;
	case H_LDLN2: CONST("fldln2"); break;
	}
#undef BIN
#undef UN
#undef TWO
#undef CMP
#undef LOAD
#undef STORE
#undef CONST
	/* Every block above leaves the host stack empty. */
	__asm__ volatile("fnstsw %0\n\tfnclex\n\tfldcw %1"
			 : "=m"(sw) : "m"(hcw) : "memory");
	if (opsw != 0xffff)
		sw = (uint16_t)((sw & ~FSW_CC) | (opsw & FSW_CC));
	return sw;
}


/* ST(0) op memory on the host, so operand-class precedence (NaN before
 * denormal, which SNaN is returned) is the host's: kind 0-5 = add, sub,
 * subr, mul, div, divr (r = result), 6 = fcom (r unused); type 0-3 = m32
 * real, m64 real, m16 int, m32 int.  Returns the host status word. */
static uint16_t host_x87_mem(const struct emu_cpu *cpu, unsigned kind,
			     unsigned type, const long double *a,
			     const void *m, long double *r)
{
	uint16_t hcw, gcw = (uint16_t)(cpu->fcw | 0x3f), sw;
	volatile uint16_t opsw = 0xffff; /* as in host_x87() */

	__asm__ volatile("fnstcw %0\n\tfnclex\n\tfldcw %1"
			 : "=m"(hcw) : "m"(gcw) : "memory");
#define BM(insn)                                                             \
	__asm__ volatile("fldt %0\n\t" insn " %1\n\tfnstsw %3\n\tfstpt %2"  \
			 : : "m"(*a), "m"(*(const char *)m), "m"(*r),        \
			 "m"(opsw) : "memory")
#define CM(insn)                                                             \
	__asm__ volatile("fldt %0\n\t" insn " %1\n\tfstp %%st(0)" : : "m"(*a), \
			 "m"(*(const char *)m) : "memory")
#define B4(i, f, l, is, il)                                                  \
	case i * 4 + 0: BM(f); break;                                        \
	case i * 4 + 1: BM(l); break;                                        \
	case i * 4 + 2: BM(is); break;                                       \
	case i * 4 + 3: BM(il); break;
	switch (kind * 4 + type) {
	B4(0, "fadds", "faddl", "fiadds", "fiaddl")
	B4(1, "fsubs", "fsubl", "fisubs", "fisubl")
	B4(2, "fsubrs", "fsubrl", "fisubrs", "fisubrl")
	B4(3, "fmuls", "fmull", "fimuls", "fimull")
	B4(4, "fdivs", "fdivl", "fidivs", "fidivl")
	B4(5, "fdivrs", "fdivrl", "fidivrs", "fidivrl")
	case 24: CM("fcoms"); break;
	case 25: CM("fcoml"); break;
	case 26: CM("ficoms"); break;
	default: CM("ficoml"); break;
	}
#undef BM
#undef CM
#undef B4
	__asm__ volatile("fnstsw %0\n\tfnclex\n\tfldcw %1"
			 : "=m"(sw) : "m"(hcw) : "memory");
	if (opsw != 0xffff)
		sw = (uint16_t)((sw & ~FSW_CC) | (opsw & FSW_CC));
	return sw;
}

/* ---- operand helpers ----------------------------------------------------- */

static const struct emu_opnd *mem_opnd(const struct emu_insn *in)
{
	for (unsigned i = 0; i < in->nr_opnds; i++)
		if (in->opnd[i].kind == EMU_OPND_MEM)
			return &in->opnd[i];
	return NULL;
}

/* The ModRM byte of a register form: the instruction's last byte. */
static int modrm_rm(struct emu_cpu *cpu, const struct emu_insn *in,
		    unsigned *rm)
{
	uint8_t b;
	unsigned got;
	int r = emu_mem_fetch(cpu, cpu->rip + in->len - 1, &b, 1, &got);

	if (r)
		return r;
	*rm = b & 7;
	return 0;
}

static int mem_read_n(struct emu_cpu *cpu, const struct emu_insn *in,
		      const struct emu_opnd *o, uint64_t next, uint8_t *buf,
		      unsigned size)
{
	uint64_t off = emu_ea(cpu, in, o, next), v;
	unsigned done = 0;
	int r;

	while (done < size) {
		unsigned n = size - done >= 8 ? 8 : size - done >= 4 ? 4 : 2;

		r = emu_mem_read(cpu, (enum emu_seg)o->seg,
				 (off + done) & emu_mask(in->addrsize), n, &v);
		if (r)
			return r;
		memcpy(buf + done, &v, n);
		done += n;
	}
	return 0;
}

static int mem_write_n(struct emu_cpu *cpu, const struct emu_insn *in,
		       const struct emu_opnd *o, uint64_t next,
		       const uint8_t *buf, unsigned size)
{
	uint64_t off = emu_ea(cpu, in, o, next), v;
	unsigned done = 0;
	void *host;
	int r;

	if (size > 8) { /* probe both ends: no partial store on a fault */
		r = emu_mem_host_ptr(cpu, (enum emu_seg)o->seg, off, size,
				     &host);
		if (!r)
			r = emu_mem_host_ptr(cpu, (enum emu_seg)o->seg,
					     (off + size - 1) &
						     emu_mask(in->addrsize),
					     1, &host);
		if (r)
			return r;
	}
	while (done < size) {
		unsigned n = size - done >= 8 ? 8 : size - done >= 4 ? 4 : 2;

		v = 0;
		memcpy(&v, buf + done, n);
		r = emu_mem_write(cpu, (enum emu_seg)o->seg,
				  (off + done) & emu_mask(in->addrsize), n, v);
		if (r)
			return r;
		done += n;
	}
	return 0;
}

/* Load a memory operand (float m32/m64/m80 or integer m16/m32/m64) as an
 * 80-bit value through the host; *ex gets the exceptions. */
static int load_mem(struct emu_cpu *cpu, const struct emu_insn *in,
		    const struct emu_opnd *o, uint64_t next, bool integer,
		    long double *v, unsigned *ex)
{
	uint8_t buf[16] = { 0 };
	unsigned size = o->size;
	enum host_op op;
	int r;

	if (integer)
		op = size == 2 ? H_ILD16 : size == 4 ? H_ILD32 : H_ILD64;
	else
		op = size == 4 ? H_LD32 : H_LD64;
	if (size != 2 && size != 4 && size != 8 && !(size == 10 && !integer))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = mem_read_n(cpu, in, o, next, buf, size);
	if (r)
		return r;
	memset(v, 0, sizeof(*v));
	if (size == 10) {
		memcpy(v, buf, 10);
		*ex = 0;
		return 0;
	}
	*ex = host_x87(cpu, op, NULL, NULL, buf, v) & 0x3f;
	return 0;
}

/* ---- the handler -------------------------------------------------------- */

/* Compare result -> C3/C2/C0 (FCOM) from the host status word. */
static void set_cc(struct emu_cpu *cpu, uint16_t cc)
{
	cpu->fsw = (uint16_t)((cpu->fsw & ~FSW_CC) | (cc & FSW_CC));
}

static int x87_arith(struct emu_cpu *cpu, const struct emu_insn *in,
		     uint64_t next, enum host_op hop, bool integer, bool pop)
{
	const struct emu_opnd *m = mem_opnd(in);
	unsigned prim = 0xd0 | in->cc, rm = 0, dst, src;
	long double res;
	uint16_t sw;
	int r;

	if (m) {
		uint8_t buf[8] = { 0 };
		unsigned type;

		if (m->size != (integer ? 2 : 4) && m->size != (integer ? 4 : 8))
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		type = (integer ? 2 : 0) + (m->size == (integer ? 4 : 8));
		r = mem_read_n(cpu, in, m, next, buf, m->size);
		if (r)
			return r;
		dst = 0;
		if (!x_valid(cpu, 0)) {
			if (x_underflow(cpu))
				*x_st(cpu, 0) = indefinite(),
				cpu->x87_valid |= (uint8_t)(1u << phys(cpu, 0));
			return 0;
		}
		sw = host_x87_mem(cpu, (unsigned)(hop - H_ADD), type,
				  x_st(cpu, 0), buf, &res);
	} else {
		if (in->nr_opnds == 0) /* FADDP etc. without operands */
			rm = 1;
		else if ((r = modrm_rm(cpu, in, &rm)))
			return r;
		/* D8: ST(0) = ST(0) op ST(i); DC/DE: ST(i) = ST(i) op ST(0). */
		dst = prim == 0xd8 ? 0 : rm;
		src = prim == 0xd8 ? rm : 0;
		if (!x_valid(cpu, dst) || !x_valid(cpu, src)) {
			if (x_underflow(cpu)) {
				*x_st(cpu, dst) = indefinite();
				cpu->x87_valid |= (uint8_t)(1u << phys(cpu, dst));
				if (pop)
					x_pop(cpu);
			}
			return 0;
		}
		sw = host_x87(cpu, hop, x_st(cpu, dst), x_st(cpu, src), NULL,
			      &res);
	}
	cpu->fsw &= (uint16_t)~FSW_C1;
	if (x_except(cpu, sw & 0x3f)) {
		memcpy(x_st(cpu, dst), &res, 10);
		cpu->fsw |= sw & FSW_C1;
		if (pop)
			x_pop(cpu);
	}
	return 0;
}

/* FCOM family and FCOMI family.  eflags: write ZF/PF/CF instead of C3/C2/C0. */
static int x87_compare(struct emu_cpu *cpu, const struct emu_insn *in,
		       uint64_t next, bool unordered, unsigned pops,
		       bool eflags)
{
	const struct emu_opnd *m = mem_opnd(in);
	unsigned rm = 1, ex = 0;
	long double zero = 0.0L;
	const long double *bp;
	uint16_t sw, cc;
	int r;

	if (m) {
		uint8_t buf[8] = { 0 };

		if (m->size != 4 && m->size != 8)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		r = mem_read_n(cpu, in, m, next, buf, m->size);
		if (r)
			return r;
		if (!x_valid(cpu, 0))
			goto underflow;
		sw = host_x87_mem(cpu, 6, m->size == 8, x_st(cpu, 0), buf,
				  NULL);
		ex = sw & 0x3f;
		cc = sw & (FSW_C0 | FSW_C2 | FSW_C3);
		goto done;
	} else if (in->op == EMU_OP_FTST) {
		bp = &zero;
	} else {
		if (in->op != EMU_OP_FCOMPP && in->op != EMU_OP_FUCOMPP &&
		    in->nr_opnds > 0 && (r = modrm_rm(cpu, in, &rm)))
			return r;
		if (!x_valid(cpu, rm))
			goto underflow;
		bp = x_st(cpu, rm);
	}
	if (!x_valid(cpu, 0))
		goto underflow;
	sw = host_x87(cpu, unordered ? H_UCOM : H_COM, x_st(cpu, 0), bp,
		      NULL, NULL);
	ex |= sw & 0x3f;
	cc = sw & (FSW_C0 | FSW_C2 | FSW_C3);
	goto done;
underflow:
	ex = FSW_IE | FSW_SF;
	cc = FSW_C0 | FSW_C2 | FSW_C3; /* unordered */
done:
	cpu->fsw &= (uint16_t)~FSW_C1;
	if (!x_except(cpu, ex))
		return 0;
	if (eflags) {
		uint64_t fl = emu_flags_get(cpu) & ~(uint64_t)EMU_FL_STATUS;

		if (cc & FSW_C3)
			fl |= EMU_FL_ZF;
		if (cc & FSW_C2)
			fl |= EMU_FL_PF;
		if (cc & FSW_C0)
			fl |= EMU_FL_CF;
		emu_flags_set(cpu, fl);
	} else {
		set_cc(cpu, cc);
	}
	while (pops--)
		x_pop(cpu);
	return 0;
}

static int x87_store(struct emu_cpu *cpu, const struct emu_insn *in,
		     uint64_t next, bool pop, int integer /* 0, 1, 2: fisttp */)
{
	const struct emu_opnd *m = mem_opnd(in);
	uint8_t buf[16] = { 0 };
	long double v;
	unsigned rm, size;
	uint16_t sw = 0;
	enum host_op op;
	bool empty = !x_valid(cpu, 0);
	int r;

	if (!m) { /* FST/FSTP ST(i) */
		if ((r = modrm_rm(cpu, in, &rm)))
			return r;
		if (empty) {
			if (!x_underflow(cpu))
				return 0;
			v = indefinite();
		} else {
			v = *x_st(cpu, 0);
		}
		memcpy(x_st(cpu, rm), &v, 10);
		cpu->x87_valid |= (uint8_t)(1u << phys(cpu, rm));
		cpu->fsw &= (uint16_t)~FSW_C1;
		if (pop)
			x_pop(cpu);
		return 0;
	}
	size = m->size;
	if (integer)
		op = integer == 2 ? (size == 2 ? H_ITT16 : size == 4 ? H_ITT32 : H_ITT64)
				  : (size == 2 ? H_IST16 : size == 4 ? H_IST32 : H_IST64);
	else
		op = size == 4 ? H_ST32 : H_ST64;
	if (size != 2 && size != 4 && size != 8 && !(size == 10 && !integer))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	v = empty ? indefinite() : *x_st(cpu, 0);
	if (size == 10)
		memcpy(buf, &v, 10);
	else
		sw = host_x87(cpu, op, &v, NULL, buf, NULL);
	if (empty) {
		/* Masked underflow stores the indefinite (the host produced
		 * it from the indefinite operand). */
		cpu->fsw &= (uint16_t)~FSW_C1;
		if (!x_except(cpu, FSW_IE | FSW_SF))
			return 0;
	} else {
		unsigned ex = sw & 0x3f;

		if (ex & ~cpu->fcw & (FSW_IE | FSW_DE | FSW_ZE)) {
			x_except(cpu, ex);
			return 0;
		}
	}
	r = mem_write_n(cpu, in, m, next, buf, size);
	if (r)
		return r;
	if (!empty) {
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_except(cpu, sw & 0x3f);
		cpu->fsw |= sw & FSW_C1;
	}
	if (pop)
		x_pop(cpu);
	return 0;
}

/* Full tag word from the valid bits and the register contents. */
static uint16_t full_tag(const struct emu_cpu *cpu)
{
	uint16_t tw = 0;

	for (unsigned i = 0; i < 8; i++) {
		uint8_t b[10];
		uint16_t exp, t;
		uint64_t man;

		memcpy(b, &cpu->x87_st[i], 10);
		memcpy(&man, b, 8);
		memcpy(&exp, b + 8, 2);
		exp &= 0x7fff;
		if (!(cpu->x87_valid & (1u << i)))
			t = 3;
		else if (exp == 0 && man == 0)
			t = 1;
		else if (exp == 0x7fff || exp == 0 || !(man >> 63))
			t = 2;
		else
			t = 0;
		tw |= (uint16_t)(t << (2 * i));
	}
	return tw;
}

static int x87_env(struct emu_cpu *cpu, const struct emu_insn *in,
		   uint64_t next, bool store)
{
	const struct emu_opnd *m = mem_opnd(in);
	uint8_t buf[28] = { 0 };
	bool big = in->opsize != 2;
	unsigned size = big ? 28 : 14, step = big ? 4 : 2;
	uint32_t f[7];
	int r;

	if (!m)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (store) {
		f[0] = cpu->fcw | 0xffff0000u;
		f[1] = cpu->fsw | 0xffff0000u;
		f[2] = full_tag(cpu) | 0xffff0000u;
		f[3] = (uint32_t)cpu->fip;
		f[4] = cpu->fcs | ((uint32_t)(cpu->fop & 0x7ff) << 16);
		f[5] = (uint32_t)cpu->fdp;
		f[6] = cpu->fds | 0xffff0000u;
		for (unsigned i = 0; i < 7; i++)
			memcpy(buf + i * step, &f[i], step);
		r = mem_write_n(cpu, in, m, next, buf, size);
		if (r)
			return r;
		cpu->fcw |= 0x3f; /* FNSTENV masks all exceptions */
		return 0;
	}
	r = mem_read_n(cpu, in, m, next, buf, size);
	if (r)
		return r;
	memset(f, 0, sizeof(f));
	for (unsigned i = 0; i < 7; i++)
		memcpy(&f[i], buf + i * step, step);
	cpu->fcw = (uint16_t)f[0];
	cpu->fsw = (uint16_t)f[1];
	cpu->x87_valid = 0;
	for (unsigned i = 0; i < 8; i++)
		if (((f[2] >> (2 * i)) & 3) != 3)
			cpu->x87_valid |= (uint8_t)(1u << i);
	cpu->fip = f[3];
	cpu->fcs = (uint16_t)f[4];
	if (big)
		cpu->fop = (uint16_t)((f[4] >> 16) & 0x7ff);
	cpu->fdp = f[5];
	cpu->fds = (uint16_t)f[6];
	/* A pending unmasked exception is re-armed (SDM Vol. 1 8.6). */
	if (cpu->fsw & ~cpu->fcw & 0x3f)
		cpu->fsw |= FSW_ES | FSW_B;
	else
		cpu->fsw &= (uint16_t)~(FSW_ES | FSW_B);
	return 0;
}

/* FOP (SDM Vol. 1 8.1.9): the low 3 bits of the opcode byte and the
 * ModRM byte, found after the prefixes in the instruction's bytes. */
static void x_update_fop(struct emu_cpu *cpu, const struct emu_insn *in)
{
	uint8_t b[15];
	unsigned got = 0, i;

	emu_mem_fetch(cpu, cpu->rip, b, in->len, &got);
	for (i = 0; i + 1 < got; i++) {
		if (b[i] >= 0xd8 && b[i] <= 0xdf) {
			cpu->fop = (uint16_t)(((b[i] & 7u) << 8) | b[i + 1]);
			return;
		}
	}
}

static bool non_waiting(unsigned op)
{
	return op == EMU_OP_FNINIT || op == EMU_OP_FNCLEX ||
	       op == EMU_OP_FNSTSW || op == EMU_OP_FNSTCW ||
	       op == EMU_OP_FNSTENV;
}

EMU_HANDLER(x87)
{
	const struct emu_opnd *m = mem_opnd(in);
	unsigned rm, ex;
	long double v, res;
	uint16_t sw;
	uint64_t x;
	int r;

	if (in->op == EMU_OP_FWAIT) {
		if ((cpu->cr0 & (CR0_TS | CR0_MP)) == (CR0_TS | CR0_MP))
			return emu_raise(cpu, EMU_VEC_NM, false, 0);
	} else if (cpu->cr0 & (CR0_EM | CR0_TS)) {
		return emu_raise(cpu, EMU_VEC_NM, false, 0);
	}
	if (!non_waiting(in->op) && (cpu->fsw & FSW_ES) &&
	    (cpu->cr0 & CR0_NE))
		return emu_raise(cpu, EMU_VEC_MF, false, 0);

	/* Last instruction / data pointers (not for control instructions). */
	if (in->op != EMU_OP_FWAIT && in->op != EMU_OP_FNINIT &&
	    in->op != EMU_OP_FNCLEX && in->op != EMU_OP_FNSTSW &&
	    in->op != EMU_OP_FNSTCW && in->op != EMU_OP_FLDCW &&
	    in->op != EMU_OP_FNSTENV && in->op != EMU_OP_FLDENV) {
		cpu->fip = cpu->rip;
		cpu->fcs = cpu->seg[EMU_SEG_CS].sel;
		x_update_fop(cpu, in);
		/* FDS is kept 0, as on current parts with deprecated
		 * FCS/FDS values (CPUID.7.0:EBX[13]). */
		if (m)
			cpu->fdp = emu_ea(cpu, in, m, *next);
	}

	switch (in->op) {
	case EMU_OP_FWAIT:
	case EMU_OP_FNOP:
		return 0;
	case EMU_OP_FNINIT:
		emu_x87_reset(cpu);
		return 0;
	case EMU_OP_FNCLEX:
		cpu->fsw &= (uint16_t)~(0xff | FSW_B);
		return 0;
	case EMU_OP_FNSTSW:
		if (in->nr_opnds && in->opnd[0].kind == EMU_OPND_GPR) {
			emu_reg_write(cpu, EMU_RAX, 2, cpu->fsw);
			return 0;
		}
		if (!m)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		return emu_opnd_write(cpu, in, m, 2, *next, cpu->fsw);
	case EMU_OP_FNSTCW:
		if (!m)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		return emu_opnd_write(cpu, in, m, 2, *next, cpu->fcw);
	case EMU_OP_FLDCW:
		if (!m)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		r = emu_opnd_read(cpu, in, m, 2, *next, &x);
		if (r)
			return r;
		cpu->fcw = (uint16_t)(x | 0x40); /* bit 6 reads as 1 */
		if (cpu->fsw & ~cpu->fcw & 0x3f)
			cpu->fsw |= FSW_ES | FSW_B;
		else
			cpu->fsw &= (uint16_t)~(FSW_ES | FSW_B);
		return 0;
	case EMU_OP_FNSTENV:
		return x87_env(cpu, in, *next, true);
	case EMU_OP_FLDENV:
		return x87_env(cpu, in, *next, false);

	case EMU_OP_FLD:
		if (m) {
			r = load_mem(cpu, in, m, *next, false, &v, &ex);
			if (r)
				return r;
			cpu->fsw &= (uint16_t)~FSW_C1;
			if (cpu->x87_valid & (1u << ((x_top(cpu) - 1) & 7))) {
				x_push_checked(cpu, v, true); /* overflow wins */
				return 0;
			}
			x_push_checked(cpu, v, x_except(cpu, ex));
			return 0;
		}
		if ((r = modrm_rm(cpu, in, &rm)))
			return r;
		if (!x_valid(cpu, rm)) {
			x_push_checked(cpu, indefinite(), x_underflow(cpu));
			return 0;
		}
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_push_checked(cpu, *x_st(cpu, rm), true);
		return 0;
	case EMU_OP_FILD:
		if (!m)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		r = load_mem(cpu, in, m, *next, true, &v, &ex);
		if (r)
			return r;
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_push_checked(cpu, v, true);
		return 0;
	case EMU_OP_FLDZ: case EMU_OP_FLD1: case EMU_OP_FLDPI:
	case EMU_OP_FLDL2E: case EMU_OP_FLDL2T: case EMU_OP_FLDLG2:
	case EMU_OP_FLDLN2: {
		static const enum host_op c[] = { H_LDZ, H_LD1, H_LDPI,
			H_LDL2E, H_LDL2T, H_LDLG2, H_LDLN2 };

		host_x87(cpu, c[in->op - EMU_OP_FLDZ], NULL, NULL, NULL, &res);
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_push_checked(cpu, res, true);
		return 0;
	}
	case EMU_OP_FST:
		return x87_store(cpu, in, *next, false, 0);
	case EMU_OP_FSTP:
		return x87_store(cpu, in, *next, true, 0);
	case EMU_OP_FIST:
		return x87_store(cpu, in, *next, false, 1);
	case EMU_OP_FISTP:
		return x87_store(cpu, in, *next, true, 1);
	case EMU_OP_FISTTP:
		return x87_store(cpu, in, *next, true, 2);

	case EMU_OP_FADD: return x87_arith(cpu, in, *next, H_ADD, false, false);
	case EMU_OP_FADDP: return x87_arith(cpu, in, *next, H_ADD, false, true);
	case EMU_OP_FIADD: return x87_arith(cpu, in, *next, H_ADD, true, false);
	case EMU_OP_FSUB: return x87_arith(cpu, in, *next, H_SUB, false, false);
	case EMU_OP_FSUBP: return x87_arith(cpu, in, *next, H_SUB, false, true);
	case EMU_OP_FISUB: return x87_arith(cpu, in, *next, H_SUB, true, false);
	case EMU_OP_FSUBR: return x87_arith(cpu, in, *next, H_SUBR, false, false);
	case EMU_OP_FSUBRP: return x87_arith(cpu, in, *next, H_SUBR, false, true);
	case EMU_OP_FISUBR: return x87_arith(cpu, in, *next, H_SUBR, true, false);
	case EMU_OP_FMUL: return x87_arith(cpu, in, *next, H_MUL, false, false);
	case EMU_OP_FMULP: return x87_arith(cpu, in, *next, H_MUL, false, true);
	case EMU_OP_FIMUL: return x87_arith(cpu, in, *next, H_MUL, true, false);
	case EMU_OP_FDIV: return x87_arith(cpu, in, *next, H_DIV, false, false);
	case EMU_OP_FDIVP: return x87_arith(cpu, in, *next, H_DIV, false, true);
	case EMU_OP_FIDIV: return x87_arith(cpu, in, *next, H_DIV, true, false);
	case EMU_OP_FDIVR: return x87_arith(cpu, in, *next, H_DIVR, false, false);
	case EMU_OP_FDIVRP: return x87_arith(cpu, in, *next, H_DIVR, false, true);
	case EMU_OP_FIDIVR: return x87_arith(cpu, in, *next, H_DIVR, true, false);

	case EMU_OP_FCHS:
	case EMU_OP_FABS:
		if (!x_valid(cpu, 0)) {
			if (x_underflow(cpu))
				*x_st(cpu, 0) = indefinite(),
				cpu->x87_valid |= (uint8_t)(1u << phys(cpu, 0));
			return 0;
		}
		((uint8_t *)x_st(cpu, 0))[9] =
			in->op == EMU_OP_FCHS ?
				((uint8_t *)x_st(cpu, 0))[9] ^ 0x80 :
				((uint8_t *)x_st(cpu, 0))[9] & 0x7f;
		cpu->fsw &= (uint16_t)~FSW_C1;
		return 0;
	case EMU_OP_FSQRT:
	case EMU_OP_FRNDINT:
		if (!x_valid(cpu, 0)) {
			if (x_underflow(cpu))
				*x_st(cpu, 0) = indefinite(),
				cpu->x87_valid |= (uint8_t)(1u << phys(cpu, 0));
			return 0;
		}
		sw = host_x87(cpu, in->op == EMU_OP_FSQRT ? H_SQRT : H_RNDINT,
			      x_st(cpu, 0), NULL, NULL, &res);
		cpu->fsw &= (uint16_t)~FSW_C1;
		if (x_except(cpu, sw & 0x3f)) {
			memcpy(x_st(cpu, 0), &res, 10);
			cpu->fsw |= sw & FSW_C1;
		}
		return 0;
	case EMU_OP_FSCALE:
	case EMU_OP_FPREM:
		if (!x_valid(cpu, 0) || !x_valid(cpu, 1)) {
			if (x_underflow(cpu))
				*x_st(cpu, 0) = indefinite(),
				cpu->x87_valid |= (uint8_t)(1u << phys(cpu, 0));
			return 0;
		}
		sw = host_x87(cpu, in->op == EMU_OP_FSCALE ? H_SCALE : H_PREM,
			      x_st(cpu, 0), x_st(cpu, 1), NULL, &res);
		if (in->op == EMU_OP_FPREM)
			set_cc(cpu, sw);
		else
			cpu->fsw = (uint16_t)((cpu->fsw & ~FSW_C1) |
					      (sw & FSW_C1));
		if (x_except(cpu, sw & 0x3f))
			memcpy(x_st(cpu, 0), &res, 10);
		return 0;
	case EMU_OP_FXCH: {
		long double t;
		unsigned p0, pi;

		rm = 1;
		if (in->nr_opnds > 0 && (r = modrm_rm(cpu, in, &rm)))
			return r;
		cpu->fsw &= (uint16_t)~FSW_C1;
		if (!x_valid(cpu, 0) || !x_valid(cpu, rm)) {
			if (!x_underflow(cpu))
				return 0;
			if (!x_valid(cpu, 0))
				*x_st(cpu, 0) = indefinite();
			if (!x_valid(cpu, rm))
				*x_st(cpu, rm) = indefinite();
			cpu->x87_valid |= (uint8_t)((1u << phys(cpu, 0)) |
						    (1u << phys(cpu, rm)));
		}
		p0 = phys(cpu, 0);
		pi = phys(cpu, rm);
		t = cpu->x87_st[p0];
		cpu->x87_st[p0] = cpu->x87_st[pi];
		cpu->x87_st[pi] = t;
		return 0;
	}
	case EMU_OP_FXAM: {
		uint16_t cc;

		if (!x_valid(cpu, 0)) {
			cc = FSW_C3 | FSW_C0;
		} else {
			sw = host_x87(cpu, H_XAM, x_st(cpu, 0), NULL, NULL, &res);
			cc = sw & (FSW_C0 | FSW_C2 | FSW_C3);
		}
		if (((uint8_t *)x_st(cpu, 0))[9] & 0x80)
			cc |= FSW_C1;
		set_cc(cpu, cc);
		return 0;
	}
	case EMU_OP_FTST:
		return x87_compare(cpu, in, *next, false, 0, false);
	case EMU_OP_FCOM: return x87_compare(cpu, in, *next, false, 0, false);
	case EMU_OP_FCOMP: return x87_compare(cpu, in, *next, false, 1, false);
	case EMU_OP_FCOMPP: return x87_compare(cpu, in, *next, false, 2, false);
	case EMU_OP_FUCOM: return x87_compare(cpu, in, *next, true, 0, false);
	case EMU_OP_FUCOMP: return x87_compare(cpu, in, *next, true, 1, false);
	case EMU_OP_FUCOMPP: return x87_compare(cpu, in, *next, true, 2, false);
	case EMU_OP_FCOMI: return x87_compare(cpu, in, *next, false, 0, true);
	case EMU_OP_FCOMIP: return x87_compare(cpu, in, *next, false, 1, true);
	case EMU_OP_FUCOMI: return x87_compare(cpu, in, *next, true, 0, true);
	case EMU_OP_FUCOMIP: return x87_compare(cpu, in, *next, true, 1, true);
	case EMU_OP_FFREE:
		if ((r = modrm_rm(cpu, in, &rm)))
			return r;
		cpu->x87_valid &= (uint8_t)~(1u << phys(cpu, rm));
		return 0;
	case EMU_OP_FINCSTP:
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_set_top(cpu, x_top(cpu) + 1);
		return 0;
	case EMU_OP_FDECSTP:
		cpu->fsw &= (uint16_t)~FSW_C1;
		x_set_top(cpu, x_top(cpu) - 1);
		return 0;
	default:
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	}
}
