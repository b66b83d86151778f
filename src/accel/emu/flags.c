/*
 * flags.c - lazy evaluation of the arithmetic status flags.
 *
 * Most instructions that set CF, PF, AF, ZF, SF and OF have their flags
 * overwritten by the next such instruction before anything reads them, so
 * computing six flags per ADD would be wasted work.  Instead a flag-setting
 * instruction records what it did in cpu->lf (emu_lazy() in exec.h): the
 * operation kind, the operand size, both sources (masked to the size), the
 * result, and one auxiliary value (carry-in for ADC/SBB, the preserved CF
 * for INC/DEC, CF=OF for MUL).  Readers (Jcc, SETcc, CMOVcc, ADC/SBB,
 * PUSHF, LAHF, RCL/RCR, ...) compute only what they need from that record:
 *
 *   ZF = (res == 0)         SF = msb(res)       PF = even parity of res[7:0]
 *   CF, OF, AF depend on the kind:
 *     ADD/ADC  CF = res < src1 (or == with carry-in)   OF = msb((s1^r)&(s2^r))
 *     SUB/SBB  CF = src1 < src2 (or == with borrow)    OF = msb((s1^s2)&(s1^r))
 *              AF = bit 4 of (src1 ^ src2 ^ res) for both, and INC/DEC
 *     LOGIC    CF = OF = AF = 0
 *     INC/DEC  CF = aux (unchanged)   OF = the result crossed the sign
 *     SHL      CF = last bit shifted out = bit (size*8 - count) of src1,
 *              OF = msb(res) ^ CF
 *     SHR/SAR  CF = bit (count - 1) of src1 (sign-extended for SAR),
 *              OF = msb(src1) for SHR, 0 for SAR
 *     MUL      CF = OF = aux
 *     ROT      CF, OF = aux bits 0, 1; the rest from lf_prev, the record
 *              before a run of ROL/ROR (its own op NONE: rflags' bits)
 * Flags the SDM leaves undefined (AF after shifts and logic ops, SF/ZF/PF
 * after MUL, OF after multi-bit shifts) get a fixed, documented value here;
 * tests do not compare them.
 *
 * When lf.op is EMU_LF_NONE the status flags are the bits of cpu->rflags;
 * instructions that define only some flags (BT, rotates, CLC, SAHF, ...)
 * materialize the rest with emu_flags_update() and leave that state.
 */
#include "accel/emu/cpu.h"
#include "accel/emu/exec.h"

/* RFLAGS bits software can change (SDM Vol. 1 3.4.3); others read as 0. */
#define EMU_FL_WRITABLE (EMU_FL_STATUS | EMU_FL_TF | EMU_FL_IF | EMU_FL_DF | \
			 EMU_FL_IOPL | EMU_FL_NT | EMU_FL_RF | EMU_FL_VM | \
			 EMU_FL_AC | EMU_FL_VIF | EMU_FL_VIP | EMU_FL_ID)

static bool lazy_cf(const struct emu_lazy_flags *lf)
{
	unsigned bits = lf->size * 8u;
	uint64_t count = lf->src2;

	switch (lf->op) {
	case EMU_LF_ADD:
		return lf->res < lf->src1;
	case EMU_LF_ADC:
		return lf->res < lf->src1 || (lf->aux && lf->res == lf->src1);
	case EMU_LF_SUB:
		return lf->src1 < lf->src2;
	case EMU_LF_SBB:
		return lf->src1 < lf->src2 || (lf->aux && lf->src1 == lf->src2);
	case EMU_LF_INC:
	case EMU_LF_DEC:
	case EMU_LF_MUL:
		return lf->aux & 1;
	case EMU_LF_SHL:
		return count <= bits ? (lf->src1 >> (bits - count)) & 1 : 0;
	case EMU_LF_SHR:
		return count <= 64 ? (lf->src1 >> (count - 1)) & 1 : 0;
	case EMU_LF_SAR:
		return (emu_sext(lf->src1, lf->size) >>
			(count - 1 < 63 ? count - 1 : 63)) & 1;
	default:
		return false;
	}
}

static bool lazy_of(const struct emu_lazy_flags *lf)
{
	unsigned sz = lf->size;

	switch (lf->op) {
	case EMU_LF_ADD:
	case EMU_LF_ADC:
		return emu_msb((lf->src1 ^ lf->res) & (lf->src2 ^ lf->res), sz);
	case EMU_LF_SUB:
	case EMU_LF_SBB:
		return emu_msb((lf->src1 ^ lf->src2) & (lf->src1 ^ lf->res), sz);
	case EMU_LF_INC:
		return emu_msb(lf->res & ~lf->src1, sz);
	case EMU_LF_DEC:
		return emu_msb(lf->src1 & ~lf->res, sz);
	case EMU_LF_SHL:
		return emu_msb(lf->res, sz) ^ lazy_cf(lf);
	case EMU_LF_SHR:
		return emu_msb(lf->src1, sz);
	case EMU_LF_MUL:
		return lf->aux & 1;
	default:
		return false;
	}
}

static bool lazy_af(const struct emu_lazy_flags *lf)
{
	switch (lf->op) {
	case EMU_LF_ADD: case EMU_LF_ADC: case EMU_LF_SUB: case EMU_LF_SBB:
	case EMU_LF_INC: case EMU_LF_DEC:
		return ((lf->src1 ^ lf->src2 ^ lf->res) >> 4) & 1;
	default:
		return false;
	}
}

static uint64_t lazy_status(const struct emu_lazy_flags *lf)
{
	uint64_t f = 0;

	if (lazy_cf(lf))
		f |= EMU_FL_CF;
	if (!__builtin_parity((unsigned)(lf->res & 0xff)))
		f |= EMU_FL_PF;
	if (lazy_af(lf))
		f |= EMU_FL_AF;
	if (lf->res == 0)
		f |= EMU_FL_ZF;
	if (emu_msb(lf->res, lf->size))
		f |= EMU_FL_SF;
	if (lazy_of(lf))
		f |= EMU_FL_OF;
	return f;
}

/* The six status flags, lf.op not NONE. */
static uint64_t cur_status(const struct emu_cpu *cpu)
{
	uint64_t f;

	if (cpu->lf.op != EMU_LF_ROT)
		return lazy_status(&cpu->lf);
	f = cpu->lf_prev.op == EMU_LF_NONE ? cpu->rflags & EMU_FL_STATUS :
					     lazy_status(&cpu->lf_prev);
	f &= ~(EMU_FL_CF | EMU_FL_OF);
	if (cpu->lf.aux & 1)
		f |= EMU_FL_CF;
	if (cpu->lf.aux & 2)
		f |= EMU_FL_OF;
	return f;
}

uint64_t emu_flags_get(struct emu_cpu *cpu)
{
	if (cpu->lf.op == EMU_LF_NONE)
		return cpu->rflags;
	return (cpu->rflags & ~EMU_FL_STATUS) | cur_status(cpu);
}

void emu_flags_set(struct emu_cpu *cpu, uint64_t rflags)
{
	cpu->rflags = (rflags & EMU_FL_WRITABLE) | EMU_FL_FIXED;
	cpu->lf.op = EMU_LF_NONE;
}

void emu_flags_update(struct emu_cpu *cpu, uint64_t mask, uint64_t bits)
{
	uint64_t f = emu_flags_get(cpu);

	cpu->rflags = (f & ~mask) | (bits & mask);
	cpu->lf.op = EMU_LF_NONE;
}

bool emu_flag_cf(const struct emu_cpu *cpu)
{
	if (cpu->lf.op == EMU_LF_NONE)
		return cpu->rflags & EMU_FL_CF;
	if (cpu->lf.op == EMU_LF_ROT)
		return cpu->lf.aux & 1;
	return lazy_cf(&cpu->lf);
}

bool emu_cond(const struct emu_cpu *cpu, unsigned cc)
{
	const struct emu_lazy_flags *lf = &cpu->lf;
	uint64_t f;
	bool r;

	/* Fast paths for the pairs compilers emit most. */
	if (lf->op == EMU_LF_ROT) {
		f = cur_status(cpu);
	} else if (lf->op != EMU_LF_NONE) {
		switch (cc >> 1) {
		case 2: /* Z / NZ */
			return (lf->res == 0) ^ (cc & 1);
		case 4: /* S / NS */
			return emu_msb(lf->res, lf->size) ^ (cc & 1);
		case 1: /* B / NB */
			return lazy_cf(lf) ^ (cc & 1);
		default:
			break;
		}
		f = lazy_status(lf);
	} else {
		f = cpu->rflags;
	}
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
