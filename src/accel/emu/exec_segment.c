/*
 * exec_segment.c - segmentation and control transfer between code
 * segments: loading segment registers from descriptors (MOV/POP Sreg,
 * LDS/LES/LFS/LGS/LSS), far JMP/CALL/RET, IRET, the descriptor-table
 * registers (LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR), the descriptor probes
 * (LAR/LSL/VERR/VERW), SWAPGS, SYSCALL/SYSRET, SYSENTER/SYSEXIT and
 * CLI/STI (SDM Vol. 3A chapters 3, 5 and 6; Vol. 2 for each instruction).
 *
 * Descriptor tables are read at linear addresses (GDTR/LDTR base + index)
 * through emu_mem_read_sys() (mem.c), the implicit-supervisor path: checked
 * by the MMU as a CPL-0 access, never by segmentation, and faulting with
 * #PF (or #GP for a non-canonical address) like any other access.  A
 * selector beyond the table's limit is a #GP/#TS/#NP with the selector as
 * error code, exactly as the SDM lists, so a hostile table (limit too
 * large, base outside RAM, garbage descriptors) can only ever produce an
 * architectural exception: there is no other path from a descriptor to
 * host memory.  One deliberate deviation: a descriptor-table, IDT or TSS
 * read whose page maps outside guest RAM raises the exception a bad
 * selector would (#GP/#TS with the selector or vector error code) instead
 * of reading the MMIO bus -- real hardware would read all ones from an
 * unclaimed address, which decodes as a usable conforming code segment,
 * and a device register read from a descriptor load would have side
 * effects no guest relies on (emu_sys_read_ram()).
 *
 * Every handler follows the executor's rule (exec.h): all reads and checks
 * first, then the commit; a fault leaves registers as they were.  Stack
 * frames are read at RSP + k without moving RSP, and writes of a far CALL
 * go below RSP before RSP moves.  The accessed bit of a loaded data/code
 * descriptor is set (one byte written) only when it is clear: Linux maps
 * its GDT read-only and pre-sets the bit for that reason.
 *
 * What is deliberately not implemented (documented refusals):
 *   - call gates, task gates and TSS descriptors as targets of far
 *     JMP/CALL: #GP(selector).  Neither 64-bit Linux nor its boot path
 *     uses them; hardware task switching does not exist in long mode.
 *   - IRET with NT = 1 (task return) and IRET to virtual-8086 mode: #GP(0).
 *   - SYSCALL/SYSRET outside 64-bit mode: #UD (Intel behaviour; the CPUID
 *     we expose is Intel's, so 32-bit guests use SYSENTER or INT 0x80).
 *   - CLI/STI/POPF virtual-interrupt extensions (CR4.VME/PVI).
 * IRET lives here rather than in exceptions.c because it is a segment
 * load with the same checks as a far RET.
 */
#include <errno.h>
#include <string.h>

#include "accel/emu/emu.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"

#define CR4_UMIP (1ull << 11)

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

static bool lma(const struct emu_cpu *cpu)
{
	return (cpu->msr.efer & EMU_EFER_LMA) != 0;
}

static int gp(struct emu_cpu *cpu, uint32_t err)
{
	return emu_raise(cpu, EMU_VEC_GP, true, err);
}

/* ---- descriptors ------------------------------------------------------ */

uint64_t emu_desc_base(uint64_t d)
{
	return ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
}

uint32_t emu_desc_limit(uint64_t d)
{
	uint32_t l = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

	return (d & (1ull << 55)) ? (l << 12) | 0xfff : l;
}

void emu_seg_from_desc(struct emu_segment *s, uint16_t sel, uint64_t d)
{
	s->sel = sel;
	s->base = emu_desc_base(d);
	s->limit = emu_desc_limit(d);
	s->attr = (uint16_t)((d >> 40) & 0xf0ff);
	s->unusable = false;
}

int emu_sys_read_ram(struct emu_cpu *cpu, uint64_t lin, unsigned size,
		     uint64_t *val, unsigned vec, uint32_t err)
{
	uint64_t last = lin + size - 1, gpa;
	int r;

	if (!lma(cpu))
		last &= 0xffffffffull;
	for (int i = 0; i < 2; i++) {
		r = emu_mmu_translate(cpu, i ? last : lin, EMU_ACC_READ, false,
				      &gpa);
		if (r)
			return r;
		if (!emu_phys_host(cpu, gpa, 1))
			return emu_raise(cpu, vec, true, err);
	}
	return emu_mem_read_sys(cpu, lin, size, val);
}

int emu_desc_read(struct emu_cpu *cpu, uint16_t sel, unsigned vec,
		  uint32_t ext, uint64_t *addr, uint64_t *d)
{
	uint64_t base, idx = sel & 0xfff8u;
	uint32_t limit;

	if (sel & 4) {
		/* A null LDTR (LLDT 0, or never loaded) has no table. */
		if (cpu->ldtr.unusable || (cpu->ldtr.sel & 0xfffc) == 0)
			return emu_raise(cpu, vec, true, (sel & 0xfffcu) | ext);
		base = cpu->ldtr.base;
		limit = cpu->ldtr.limit;
	} else {
		base = cpu->gdtr.base;
		limit = cpu->gdtr.limit;
	}
	if (idx + 7 > limit)
		return emu_raise(cpu, vec, true, (sel & 0xfffcu) | ext);
	*addr = base + idx;
	if (!lma(cpu))
		*addr &= 0xffffffffull;
	else if (!canonical(*addr) || !canonical(*addr + 7))
		return gp(cpu, ext);
	return emu_sys_read_ram(cpu, *addr, 8, d, vec, (sel & 0xfffcu) | ext);
}

/* The upper half of a 16-byte system descriptor (long mode LDT/TSS). */
static int desc_read_hi(struct emu_cpu *cpu, uint16_t sel, uint64_t addr,
			uint64_t *hi)
{
	uint32_t limit = cpu->gdtr.limit;

	if ((uint64_t)(sel & 0xfff8u) + 15 > limit)
		return gp(cpu, sel & 0xfffcu);
	if (!canonical(addr + 8) || !canonical(addr + 15))
		return gp(cpu, 0);
	return emu_sys_read_ram(cpu, addr + 8, 8, hi, EMU_VEC_GP, sel & 0xfffcu);
}

int emu_desc_accessed(struct emu_cpu *cpu, uint64_t addr, uint64_t d)
{
	if (!EMU_DESC_S(d) || (d & (1ull << 40)))
		return 0;
	return emu_mem_write_sys(cpu, addr + 5, 1, ((d >> 40) & 0xff) | 1);
}

/* A null segment: selector kept (its RPL matters for SS), unusable. */
static void seg_null(struct emu_segment *s, uint16_t sel, unsigned dpl)
{
	s->sel = sel;
	s->base = 0;
	s->limit = 0;
	s->attr = (uint16_t)(dpl << 5);
	s->unusable = true;
}

/* Real-mode / virtual-8086 load: only selector and base change (SDM Vol.
 * 3A 20.1.1), VM86 segments are DPL 3. */
static void seg_load_real(struct emu_cpu *cpu, struct emu_segment *s,
			  uint16_t sel)
{
	s->sel = sel;
	s->base = (uint64_t)sel << 4;
	s->unusable = false;
	if (cpu->rflags & EMU_FL_VM) {
		s->limit = 0xffff;
		s->attr = (uint16_t)((s->attr & 0xf) | EMU_SEG_ATTR_S |
				     EMU_SEG_ATTR_P | (3u << 5));
	}
}

/* Whether a legacy-mode stack segment holds [off, off + n). */
bool emu_seg_room(const struct emu_segment *s, uint64_t off, unsigned n)
{
	uint64_t last = off + n - 1;

	if (!(s->attr & 8) && (s->attr & 4)) { /* expand-down */
		uint64_t upper = (s->attr & EMU_SEG_ATTR_DB) ? 0xffffffffull :
							       0xffffull;
		return off > s->limit && last <= upper;
	}
	return last <= s->limit;
}

/* The checks of MOV/POP/LxS into DS, ES, FS, GS or SS (SDM Vol. 2B MOV,
 * "Operation" for protected mode).  *s gets the new cache. */
static int sreg_check(struct emu_cpu *cpu, enum emu_seg seg, uint16_t sel,
		      struct emu_segment *s, uint64_t *addr, uint64_t *d)
{
	unsigned rpl = sel & 3, cpl = cpu->cpl, dpl, type;
	int r;

	*addr = 0;
	*d = 0;
	if ((sel & 0xfffc) == 0) {
		if (seg == EMU_SEG_SS &&
		    !(cpu->mode == EMU_MODE_LONG64 && cpl != 3 && rpl == cpl))
			return gp(cpu, 0);
		seg_null(s, sel, seg == EMU_SEG_SS ? cpl : 0);
		return 0;
	}
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, addr, d);
	if (r)
		return r;
	dpl = EMU_DESC_DPL(*d);
	type = EMU_DESC_TYPE(*d);
	if (!EMU_DESC_S(*d))
		return gp(cpu, sel & 0xfffc);
	if (seg == EMU_SEG_SS) {
		if (rpl != cpl || (type & 8) || !(type & 2) || dpl != cpl)
			return gp(cpu, sel & 0xfffc);
		if (!EMU_DESC_P(*d))
			return emu_raise(cpu, EMU_VEC_SS, true, sel & 0xfffc);
	} else {
		if ((type & 0xa) == 0x8) /* execute-only code */
			return gp(cpu, sel & 0xfffc);
		/* data or non-conforming code: DPL >= max(CPL, RPL) */
		if (!((type & 0xc) == 0xc) && (rpl > dpl || cpl > dpl))
			return gp(cpu, sel & 0xfffc);
		if (!EMU_DESC_P(*d))
			return emu_raise(cpu, EMU_VEC_NP, true, sel & 0xfffc);
	}
	emu_seg_from_desc(s, sel, *d);
	return 0;
}

int emu_load_sreg(struct emu_cpu *cpu, enum emu_seg seg, uint16_t sel)
{
	struct emu_segment s;
	uint64_t addr, d;
	int r;

	if (seg == EMU_SEG_CS)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->mode == EMU_MODE_REAL) {
		seg_load_real(cpu, &cpu->seg[seg], sel);
		return 0;
	}
	r = sreg_check(cpu, seg, sel, &s, &addr, &d);
	if (r)
		return r;
	if (addr) {
		r = emu_desc_accessed(cpu, addr, d);
		if (r)
			return r;
		s.attr |= 1;
	}
	cpu->seg[seg] = s;
	return 0;
}

/* ---- MOV / POP Sreg, LxS --------------------------------------------- */

EMU_HANDLER(mov_sreg)
{
	const struct emu_opnd *d = &in->opnd[0];
	uint64_t v;
	int r;

	if (d->kind != EMU_OPND_SEG || d->reg == EMU_SEG_CS)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[1], 2, *next, &v);
	if (r)
		return r;
	r = emu_load_sreg(cpu, d->reg, (uint16_t)v);
	if (r)
		return r;
	if (d->reg == EMU_SEG_SS)
		cpu->int_shadow = true;
	return 0;
}

EMU_HANDLER(pop_sreg)
{
	const struct emu_opnd *d = &in->opnd[0];
	uint64_t v, old = cpu->gpr[EMU_RSP];
	int r;

	if (d->kind != EMU_OPND_SEG || d->reg == EMU_SEG_CS)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_pop(cpu, in->opsize, &v);
	if (r)
		return r;
	r = emu_load_sreg(cpu, d->reg, (uint16_t)v);
	if (r) {
		cpu->gpr[EMU_RSP] = old;
		return r;
	}
	if (d->reg == EMU_SEG_SS)
		cpu->int_shadow = true;
	return 0;
}

/* LDS, LES, LFS, LGS, LSS r, m16:16/32/64: offset first, selector after. */
EMU_HANDLER(lseg)
{
	static const uint8_t segs[] = {
		[EMU_OP_LDS - EMU_OP_LDS] = EMU_SEG_DS,
		[EMU_OP_LES - EMU_OP_LDS] = EMU_SEG_ES,
		[EMU_OP_LFS - EMU_OP_LDS] = EMU_SEG_FS,
		[EMU_OP_LGS - EMU_OP_LDS] = EMU_SEG_GS,
		[EMU_OP_LSS - EMU_OP_LDS] = EMU_SEG_SS,
	};
	const struct emu_opnd *m = &in->opnd[1];
	unsigned os = in->opsize;
	uint64_t ea, off, sel;
	enum emu_seg seg;
	int r;

	if (in->nr_opnds < 2 || m->kind != EMU_OPND_MEM ||
	    in->opnd[0].kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	seg = segs[in->op - EMU_OP_LDS];
	ea = emu_ea(cpu, in, m, *next);
	r = emu_mem_read(cpu, m->seg, ea, os, &off);
	if (r)
		return r;
	r = emu_mem_read(cpu, m->seg, (ea + os) & emu_mask(in->addrsize), 2,
			 &sel);
	if (r)
		return r;
	r = emu_load_sreg(cpu, seg, (uint16_t)sel);
	if (r)
		return r;
	emu_reg_write(cpu, in->opnd[0].reg, os, off);
	return 0;
}

/* ---- far transfers ---------------------------------------------------- */

/* Read a stack slot at RSP + k without moving RSP. */
static int stk_read(struct emu_cpu *cpu, uint64_t k, unsigned size,
		    uint64_t *v)
{
	unsigned ss = emu_stack_size(cpu);

	return emu_mem_read(cpu, EMU_SEG_SS,
			    (cpu->gpr[EMU_RSP] + k) & emu_mask(ss), size, v);
}

/* RSP = v, in the width of the stack (`ss` bytes). */
static void set_rsp(struct emu_cpu *cpu, unsigned ss, uint64_t v)
{
	emu_reg_write(cpu, EMU_RSP, ss, v);
}

/* The code-segment checks of far JMP/CALL to a code segment (SDM Vol. 2A
 * JMP, "far jump to conforming/non-conforming code segment"). */
static int far_cs_check(struct emu_cpu *cpu, uint16_t sel, uint64_t *addr,
			uint64_t *d)
{
	unsigned type, dpl;
	int r;

	if ((sel & 0xfffc) == 0)
		return gp(cpu, 0);
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, addr, d);
	if (r)
		return r;
	type = EMU_DESC_TYPE(*d);
	dpl = EMU_DESC_DPL(*d);
	/* System descriptors: call gates, task gates, TSS (see the top). */
	if (!EMU_DESC_S(*d) || !(type & 8))
		return gp(cpu, sel & 0xfffc);
	if (type & 4) {
		if (dpl > cpu->cpl)
			return gp(cpu, sel & 0xfffc);
	} else if ((sel & 3) > cpu->cpl || dpl != cpu->cpl) {
		return gp(cpu, sel & 0xfffc);
	}
	if (!EMU_DESC_P(*d))
		return emu_raise(cpu, EMU_VEC_NP, true, sel & 0xfffc);
	if (lma(cpu) && (*d & (1ull << 53)) && (*d & (1ull << 54)))
		return gp(cpu, sel & 0xfffc);
	return 0;
}

/* Whether `off` is a valid RIP in code segment `cs` (64-bit: canonical;
 * else within the limit).  *off is masked to `os` bytes outside 64-bit. */
static bool target_ok(const struct emu_cpu *cpu, const struct emu_segment *cs,
		      unsigned os, uint64_t *off)
{
	if (lma(cpu) && (cs->attr & EMU_SEG_ATTR_L))
		return canonical(*off);
	*off &= emu_mask(os < 8 ? os : 4);
	return *off <= cs->limit;
}

/* The far pointer operand of JMP/CALL: ptr16:xx (decode.c gives offset and
 * selector as two immediates) or m16:xx (offset, then selector). */
static int far_operand(struct emu_cpu *cpu, const struct emu_insn *in,
		       uint64_t next, uint16_t *sel, uint64_t *off)
{
	const struct emu_opnd *o = &in->opnd[0];
	unsigned os = in->opsize;
	uint64_t ea, v;
	int r;

	if (o->kind == EMU_OPND_IMM && in->nr_opnds >= 2) {
		*off = (uint64_t)o->val & emu_mask(os);
		*sel = (uint16_t)in->opnd[1].val;
		return 0;
	}
	if (o->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	ea = emu_ea(cpu, in, o, next);
	r = emu_mem_read(cpu, o->seg, ea, os, off);
	if (r)
		return r;
	r = emu_mem_read(cpu, o->seg, (ea + os) & emu_mask(in->addrsize), 2,
			 &v);
	if (r)
		return r;
	*sel = (uint16_t)v;
	return 0;
}

static int far_jmp_call(struct emu_cpu *cpu, const struct emu_insn *in,
			uint64_t *next, bool call)
{
	unsigned os = in->opsize, ss = emu_stack_size(cpu);
	struct emu_segment cs = cpu->seg[EMU_SEG_CS];
	uint64_t off = 0, addr = 0, d = 0, sp = cpu->gpr[EMU_RSP];
	uint16_t sel = 0;
	int r;

	r = far_operand(cpu, in, *next, &sel, &off);
	if (r)
		return r;
	if (cpu->mode == EMU_MODE_REAL) {
		cs.sel = sel;
		cs.base = (uint64_t)sel << 4;
		off &= emu_mask(os);
		if (off > cs.limit)
			return gp(cpu, 0);
	} else {
		r = far_cs_check(cpu, sel, &addr, &d);
		if (r)
			return r;
		emu_seg_from_desc(&cs, (uint16_t)((sel & 0xfffc) | cpu->cpl),
				  d);
		if (!target_ok(cpu, &cs, os, &off))
			return gp(cpu, 0);
	}
	if (call) {
		uint64_t m = emu_mask(ss);

		r = emu_mem_write(cpu, EMU_SEG_SS, (sp - os) & m, os,
				  cpu->seg[EMU_SEG_CS].sel);
		if (r)
			return r;
		r = emu_mem_write(cpu, EMU_SEG_SS, (sp - 2 * os) & m, os,
				  *next);
		if (r)
			return r;
	}
	if (addr) {
		r = emu_desc_accessed(cpu, addr, d);
		if (r)
			return r;
		cs.attr |= 1;
	}
	if (call)
		set_rsp(cpu, ss, (sp - 2 * os) & emu_mask(ss));
	cpu->seg[EMU_SEG_CS] = cs;
	emu_cpu_update_mode(cpu);
	*next = off;
	return 0;
}

EMU_HANDLER(jmpf)
{
	return far_jmp_call(cpu, in, next, false);
}

EMU_HANDLER(callf)
{
	return far_jmp_call(cpu, in, next, true);
}

/* The checks of the code segment a far RET or IRET returns to (SDM Vol.
 * 2B RET, IRET: "return to ... privilege level"). */
static int ret_cs_check(struct emu_cpu *cpu, uint16_t sel, uint64_t *addr,
			uint64_t *d)
{
	unsigned rpl = sel & 3, dpl, type;
	int r;

	if ((sel & 0xfffc) == 0)
		return gp(cpu, 0);
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, addr, d);
	if (r)
		return r;
	type = EMU_DESC_TYPE(*d);
	dpl = EMU_DESC_DPL(*d);
	if (!EMU_DESC_S(*d) || !(type & 8) || rpl < cpu->cpl)
		return gp(cpu, sel & 0xfffc);
	if ((type & 4) ? dpl > rpl : dpl != rpl)
		return gp(cpu, sel & 0xfffc);
	if (!EMU_DESC_P(*d))
		return emu_raise(cpu, EMU_VEC_NP, true, sel & 0xfffc);
	if (lma(cpu) && (*d & (1ull << 53)) && (*d & (1ull << 54)))
		return gp(cpu, sel & 0xfffc);
	return 0;
}

/* The checks of the SS a far RET / IRET loads (`rpl` = the return CS's
 * RPL).  A null SS is allowed returning to 64-bit code at CPL < 3. */
static int ret_ss_check(struct emu_cpu *cpu, uint16_t sel, unsigned rpl,
			bool to64, struct emu_segment *s, uint64_t *addr,
			uint64_t *d)
{
	int r;

	*addr = 0;
	if ((sel & 0xfffc) == 0) {
		if (!to64 || rpl == 3 || (sel & 3) != rpl)
			return gp(cpu, 0);
		seg_null(s, sel, rpl);
		return 0;
	}
	if ((sel & 3) != rpl)
		return gp(cpu, sel & 0xfffc);
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, addr, d);
	if (r)
		return r;
	if (!EMU_DESC_S(*d) || (EMU_DESC_TYPE(*d) & 0xa) != 0x2 ||
	    EMU_DESC_DPL(*d) != rpl)
		return gp(cpu, sel & 0xfffc);
	if (!EMU_DESC_P(*d))
		return emu_raise(cpu, EMU_VEC_SS, true, sel & 0xfffc);
	emu_seg_from_desc(s, sel, *d);
	return 0;
}

/* Returning to an outer level: data segments the new CPL may not use
 * become null (SDM Vol. 3A 5.8.6). */
void emu_null_inner_segs(struct emu_cpu *cpu, unsigned cpl)
{
	static const uint8_t segs[] = {
		EMU_SEG_ES, EMU_SEG_DS, EMU_SEG_FS, EMU_SEG_GS
	};

	for (unsigned i = 0; i < sizeof(segs); i++) {
		struct emu_segment *s = &cpu->seg[segs[i]];
		unsigned dpl = (s->attr >> 5) & 3;

		if (s->unusable || (s->sel & 0xfffc) == 0)
			continue;
		/* data or non-conforming code with DPL < CPL */
		if ((s->attr & 0xc) != 0xc && dpl < cpl) {
			s->sel = 0;
			s->unusable = true;
		}
	}
}

/* The stack width of a freshly loaded SS (8 for 64-bit code). */
static unsigned new_stack_size(const struct emu_cpu *cpu,
			       const struct emu_segment *cs,
			       const struct emu_segment *ss)
{
	if (lma(cpu) && (cs->attr & EMU_SEG_ATTR_L))
		return 8;
	return (ss->attr & EMU_SEG_ATTR_DB) ? 4 : 2;
}

EMU_HANDLER(retf)
{
	unsigned os = in->opsize, ss = emu_stack_size(cpu), rpl;
	uint64_t m = emu_mask(ss), sp = cpu->gpr[EMU_RSP] & m;
	uint64_t imm = 0, ip, csv, nsp, nssv, a1, d1, a2 = 0, d2 = 0;
	struct emu_segment cs, nss;
	bool outer;
	int r;

	if (in->nr_opnds >= 1 && in->opnd[0].kind == EMU_OPND_IMM)
		imm = (uint64_t)in->opnd[0].val & 0xffff;
	r = stk_read(cpu, 0, os, &ip);
	if (!r)
		r = stk_read(cpu, os, os, &csv);
	if (r)
		return r;
	if (cpu->mode == EMU_MODE_REAL) {
		cs = cpu->seg[EMU_SEG_CS];
		cs.sel = (uint16_t)csv;
		cs.base = (uint64_t)(uint16_t)csv << 4;
		ip &= emu_mask(os);
		if (ip > cs.limit)
			return gp(cpu, 0);
		cpu->seg[EMU_SEG_CS] = cs;
		set_rsp(cpu, ss, (sp + 2 * os + imm) & m);
		*next = ip;
		return 0;
	}
	r = ret_cs_check(cpu, (uint16_t)csv, &a1, &d1);
	if (r)
		return r;
	rpl = csv & 3;
	emu_seg_from_desc(&cs, (uint16_t)csv, d1);
	if (!target_ok(cpu, &cs, os, &ip))
		return gp(cpu, 0);
	outer = rpl > cpu->cpl;
	if (outer) {
		r = stk_read(cpu, 2 * os + imm, os, &nsp);
		if (!r)
			r = stk_read(cpu, 3 * os + imm, os, &nssv);
		if (r)
			return r;
		r = ret_ss_check(cpu, (uint16_t)nssv, rpl,
				 lma(cpu) && (cs.attr & EMU_SEG_ATTR_L), &nss,
				 &a2, &d2);
		if (r)
			return r;
	}
	r = emu_desc_accessed(cpu, a1, d1);
	if (!r && a2)
		r = emu_desc_accessed(cpu, a2, d2);
	if (r)
		return r;
	cs.attr |= 1;
	cpu->seg[EMU_SEG_CS] = cs;
	if (outer) {
		unsigned nss_size = new_stack_size(cpu, &cs, &nss);

		if (a2)
			nss.attr |= 1;
		cpu->seg[EMU_SEG_SS] = nss;
		set_rsp(cpu, nss_size, (nsp + imm) & emu_mask(nss_size));
		emu_null_inner_segs(cpu, rpl);
	} else {
		set_rsp(cpu, ss, (sp + 2 * os + imm) & m);
	}
	emu_cpu_update_mode(cpu);
	*next = ip;
	return 0;
}

/* IRET / IRETD / IRETQ (SDM Vol. 2A IRET).  Pops RIP, CS, RFLAGS, and
 * RSP, SS when returning to an outer level or, always, in 64-bit mode. */
EMU_HANDLER(iret)
{
	unsigned os = in->opsize, ss = emu_stack_size(cpu), rpl, cpl = cpu->cpl;
	uint64_t m = emu_mask(ss), sp = cpu->gpr[EMU_RSP] & m;
	uint64_t ip, csv, fl, nsp = 0, nssv = 0, a1, d1, a2 = 0, d2 = 0;
	uint64_t cur = emu_flags_get(cpu), ld, nf;
	struct emu_segment cs, nss;
	bool pop_ss, to64;
	int r;

	r = stk_read(cpu, 0, os, &ip);
	if (!r)
		r = stk_read(cpu, os, os, &csv);
	if (!r)
		r = stk_read(cpu, 2 * os, os, &fl);
	if (r)
		return r;
	if (os == 2)
		fl = (cur & ~0xffffull) | (fl & 0xffff);

	if (cpu->mode == EMU_MODE_REAL) {
		if ((cur & EMU_FL_VM) && ((cur & EMU_FL_IOPL) >> 12) < 3)
			return gp(cpu, 0); /* VME not implemented */
		cs = cpu->seg[EMU_SEG_CS];
		ip &= emu_mask(os);
		if (ip > cs.limit)
			return gp(cpu, 0);
		seg_load_real(cpu, &cs, (uint16_t)csv);
		/* Real mode: everything but VM, VIF, VIP (and IOPL in VM86). */
		ld = 0x257fd5ull;
		if (cur & EMU_FL_VM)
			ld &= ~EMU_FL_IOPL;
		nf = (fl & ld) | (cur & ~ld);
		cpu->seg[EMU_SEG_CS] = cs;
		set_rsp(cpu, ss, (sp + 3 * os) & m);
		emu_flags_set(cpu, nf);
		cpu->nmi_blocked = false;
		*next = ip;
		return 0;
	}
	if (cur & EMU_FL_NT)
		return gp(cpu, 0); /* task return: see the top */
	if (!lma(cpu) && os == 4 && (fl & EMU_FL_VM) && cpl == 0)
		return gp(cpu, 0); /* return to virtual-8086 mode */

	r = ret_cs_check(cpu, (uint16_t)csv, &a1, &d1);
	if (r)
		return r;
	rpl = csv & 3;
	emu_seg_from_desc(&cs, (uint16_t)csv, d1);
	to64 = lma(cpu) && (cs.attr & EMU_SEG_ATTR_L);
	if (!target_ok(cpu, &cs, os, &ip))
		return gp(cpu, 0);
	pop_ss = cpu->mode == EMU_MODE_LONG64 || rpl > cpl;
	if (pop_ss) {
		r = stk_read(cpu, 3 * os, os, &nsp);
		if (!r)
			r = stk_read(cpu, 4 * os, os, &nssv);
		if (r)
			return r;
		r = ret_ss_check(cpu, (uint16_t)nssv, rpl, to64, &nss, &a2,
				 &d2);
		if (r)
			return r;
	}
	r = emu_desc_accessed(cpu, a1, d1);
	if (!r && a2)
		r = emu_desc_accessed(cpu, a2, d2);
	if (r)
		return r;

	/* Flags (the IRET pseudocode, with the old CPL). */
	ld = EMU_FL_STATUS | EMU_FL_TF | EMU_FL_DF | EMU_FL_NT;
	if (os >= 4)
		ld |= EMU_FL_RF | EMU_FL_AC | EMU_FL_ID;
	if (cpl <= ((cur & EMU_FL_IOPL) >> 12))
		ld |= EMU_FL_IF;
	if (cpl == 0) {
		ld |= EMU_FL_IOPL;
		if (os >= 4)
			ld |= EMU_FL_VIF | EMU_FL_VIP;
	}
	nf = (fl & ld) | (cur & ~ld);

	cs.attr |= 1;
	cpu->seg[EMU_SEG_CS] = cs;
	if (pop_ss) {
		unsigned nss_size = new_stack_size(cpu, &cs, &nss);

		if (a2)
			nss.attr |= 1;
		cpu->seg[EMU_SEG_SS] = nss;
		set_rsp(cpu, nss_size == 8 ? 8 : nss_size, nsp);
	} else {
		set_rsp(cpu, ss, (sp + 3 * os) & m);
	}
	if (rpl > cpl)
		emu_null_inner_segs(cpu, rpl);
	emu_flags_set(cpu, nf);
	cpu->nmi_blocked = false;
	emu_cpu_update_mode(cpu);
	*next = ip;
	return 0;
}

/* ---- descriptor-table registers --------------------------------------- */

/* LGDT / LIDT m16&32 (m16&64 in 64-bit mode; 16-bit operand size keeps 24
 * bits of the base).  CPL 0 only. */
EMU_HANDLER(lgdt)
{
	const struct emu_opnd *o = &in->opnd[0];
	unsigned bs = cpu->mode == EMU_MODE_LONG64 ? 8 : 4;
	struct emu_dtable *t =
		in->op == EMU_OP_LGDT ? &cpu->gdtr : &cpu->idtr;
	uint64_t ea, lim, base;
	int r;

	if (o->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cpl != 0)
		return gp(cpu, 0);
	ea = emu_ea(cpu, in, o, *next);
	r = emu_mem_read(cpu, o->seg, ea, 2, &lim);
	if (!r)
		r = emu_mem_read(cpu, o->seg, (ea + 2) & emu_mask(in->addrsize),
				 bs, &base);
	if (r)
		return r;
	if (bs == 8 && !canonical(base))
		return gp(cpu, 0);
	if (bs == 4 && in->opsize == 2)
		base &= 0xffffff;
	t->base = base;
	t->limit = (uint16_t)lim;
	return 0;
}

static bool umip_blocks(const struct emu_cpu *cpu)
{
	return (cpu->cr4 & CR4_UMIP) && cpu->cpl > 0 &&
	       cpu->mode != EMU_MODE_REAL;
}

/* SGDT / SIDT: limit then base (8 bytes in 64-bit mode, else 4). */
EMU_HANDLER(sgdt)
{
	const struct emu_opnd *o = &in->opnd[0];
	unsigned bs = cpu->mode == EMU_MODE_LONG64 ? 8 : 4;
	const struct emu_dtable *t =
		in->op == EMU_OP_SGDT ? &cpu->gdtr : &cpu->idtr;
	uint64_t ea;
	int r;

	if (o->kind != EMU_OPND_MEM)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (umip_blocks(cpu))
		return gp(cpu, 0);
	ea = emu_ea(cpu, in, o, *next);
	/* Check both parts can be written before writing either. */
	r = emu_mem_write(cpu, o->seg, (ea + 2) & emu_mask(in->addrsize), bs,
			  t->base & emu_mask(bs));
	if (r)
		return r;
	return emu_mem_write(cpu, o->seg, ea, 2, t->limit);
}

/* SLDT / STR r/m16 (a register destination gets the selector
 * zero-extended to the operand size). */
EMU_HANDLER(sldt)
{
	const struct emu_opnd *o = &in->opnd[0];
	uint16_t sel = in->op == EMU_OP_SLDT ? cpu->ldtr.sel : cpu->tr.sel;

	if (cpu->mode == EMU_MODE_REAL)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (umip_blocks(cpu))
		return gp(cpu, 0);
	return emu_opnd_write(cpu, in, o,
			      o->kind == EMU_OPND_MEM ? 2 : in->opsize, *next,
			      sel);
}

/* LLDT / LTR r/m16: system descriptors from the GDT, 16 bytes in IA-32e
 * mode (SDM Vol. 3A 7.2.3, 3.5.2).  LTR marks the TSS busy. */
EMU_HANDLER(lldt)
{
	bool ltr = in->op == EMU_OP_LTR;
	struct emu_segment *s = ltr ? &cpu->tr : &cpu->ldtr;
	struct emu_segment n;
	uint64_t v, addr, d, hi = 0;
	unsigned type;
	uint16_t sel;
	int r;

	if (cpu->mode == EMU_MODE_REAL)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cpl != 0)
		return gp(cpu, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[0], 2, *next, &v);
	if (r)
		return r;
	sel = (uint16_t)v;
	if ((sel & 0xfffc) == 0) {
		if (ltr)
			return gp(cpu, 0);
		seg_null(s, sel, 0);
		return 0;
	}
	if (sel & 4)
		return gp(cpu, sel & 0xfffc);
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, &addr, &d);
	if (r)
		return r;
	type = EMU_DESC_TYPE(d);
	if (EMU_DESC_S(d))
		return gp(cpu, sel & 0xfffc);
	if (ltr ? !(type == 9 || (type == 1 && !lma(cpu))) : type != 2)
		return gp(cpu, sel & 0xfffc);
	if (!EMU_DESC_P(d))
		return emu_raise(cpu, EMU_VEC_NP, true, sel & 0xfffc);
	if (lma(cpu)) {
		r = desc_read_hi(cpu, sel, addr, &hi);
		if (r)
			return r;
		if ((hi >> 40) & 0x1f) /* the upper type field must be 0 */
			return gp(cpu, sel & 0xfffc);
		if (!canonical(emu_desc_base(d) | (hi << 32)))
			return gp(cpu, sel & 0xfffc);
	}
	emu_seg_from_desc(&n, sel, d);
	n.base |= (hi & 0xffffffffull) << 32;
	if (ltr) {
		r = emu_mem_write_sys(cpu, addr + 5, 1, ((d >> 40) & 0xff) | 2);
		if (r)
			return r;
		n.attr |= 2;
	}
	*s = n;
	return 0;
}

/* ---- LAR / LSL / VERR / VERW ----------------------------------------- */

/* Read and privilege-check the descriptor a probe names; false (ZF = 0)
 * when the selector is null, outside the table, or not visible at this
 * CPL/RPL.  Faults of the table read itself (#PF) are returned in *r. */
static bool probe(struct emu_cpu *cpu, uint16_t sel, uint64_t *d, int *r)
{
	uint64_t addr;
	uint32_t limit = (sel & 4) ? cpu->ldtr.limit : cpu->gdtr.limit;
	unsigned dpl;

	*r = 0;
	if ((sel & 0xfffc) == 0 || (uint64_t)(sel & 0xfff8) + 7 > limit)
		return false;
	if ((sel & 4) &&
	    (cpu->ldtr.unusable || (cpu->ldtr.sel & 0xfffc) == 0))
		return false;
	*r = emu_desc_read(cpu, sel, EMU_VEC_GP, 0, &addr, d);
	if (*r)
		return false;
	dpl = EMU_DESC_DPL(*d);
	/* Conforming code skips the privilege check. */
	if (EMU_DESC_S(*d) && (EMU_DESC_TYPE(*d) & 0xc) == 0xc)
		return true;
	return dpl >= cpu->cpl && dpl >= (sel & 3u);
}

static void set_zf(struct emu_cpu *cpu, bool z)
{
	emu_flags_update(cpu, EMU_FL_ZF, z ? EMU_FL_ZF : 0);
}

/* LAR and LSL r, r/m16. */
EMU_HANDLER(lar)
{
	bool lsl = in->op == EMU_OP_LSL;
	uint64_t v, d = 0;
	bool ok;
	int r;

	if (cpu->mode == EMU_MODE_REAL)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[1], 2, *next, &v);
	if (r)
		return r;
	ok = probe(cpu, (uint16_t)v, &d, &r);
	if (r)
		return r;
	if (ok && !EMU_DESC_S(d)) {
		unsigned t = EMU_DESC_TYPE(d);

		if (lma(cpu))
			ok = t == 2 || t == 9 || t == 0xb || (!lsl && t == 0xc);
		else
			ok = t == 1 || t == 2 || t == 3 || t == 9 ||
			     t == 0xb || (!lsl && (t == 4 || t == 5 || t == 0xc));
	}
	if (ok)
		emu_reg_write(cpu, in->opnd[0].reg, in->opsize,
			      lsl ? emu_desc_limit(d) :
				    (uint32_t)(d >> 32) & 0x00f0ff00u);
	set_zf(cpu, ok);
	return 0;
}

/* VERR and VERW r/m16: readable / writable at this CPL (Linux's MDS
 * mitigation executes VERW with its kernel data selector). */
EMU_HANDLER(verr)
{
	uint64_t v, d = 0;
	unsigned t;
	bool ok;
	int r;

	if (cpu->mode == EMU_MODE_REAL)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[0], 2, *next, &v);
	if (r)
		return r;
	ok = probe(cpu, (uint16_t)v, &d, &r);
	if (r)
		return r;
	t = EMU_DESC_TYPE(d);
	if (ok && !EMU_DESC_S(d))
		ok = false;
	else if (ok && in->op == EMU_OP_VERW)
		ok = !(t & 8) && (t & 2);
	else if (ok)
		ok = !(t & 8) || (t & 2);
	set_zf(cpu, ok);
	return 0;
}

/* ---- fast system calls ----------------------------------------------- */

/* Flat 4 GiB code / data caches of SYSCALL, SYSRET, SYSENTER, SYSEXIT. */
static void flat_seg(struct emu_segment *s, uint16_t sel, unsigned type,
		     unsigned dpl, bool l)
{
	s->sel = sel;
	s->base = 0;
	s->limit = 0xffffffffu;
	s->attr = (uint16_t)(type | EMU_SEG_ATTR_S | (dpl << 5) |
			     EMU_SEG_ATTR_P | EMU_SEG_ATTR_G |
			     (l ? EMU_SEG_ATTR_L : EMU_SEG_ATTR_DB));
	s->unusable = false;
}

EMU_HANDLER(swapgs)
{
	uint64_t t;

	if (cpu->mode != EMU_MODE_LONG64)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cpl != 0)
		return gp(cpu, 0);
	t = cpu->seg[EMU_SEG_GS].base;
	cpu->seg[EMU_SEG_GS].base = cpu->msr.kernel_gs_base;
	cpu->msr.kernel_gs_base = t;
	return 0;
}

/* SYSCALL (SDM Vol. 2B): RCX = next RIP, R11 = RFLAGS, CS/SS from
 * STAR[47:32], RIP = LSTAR, RFLAGS &= ~FMASK. */
EMU_HANDLER(syscall)
{
	uint16_t sel = (uint16_t)(cpu->msr.star >> 32);
	uint64_t fl;

	if (!(cpu->msr.efer & EMU_EFER_SCE) || cpu->mode != EMU_MODE_LONG64)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (!canonical(cpu->msr.lstar))
		return gp(cpu, 0);
	fl = emu_flags_get(cpu);
	cpu->gpr[EMU_RCX] = *next;
	cpu->gpr[EMU_R11] = fl & ~EMU_FL_RF;
	flat_seg(&cpu->seg[EMU_SEG_CS], sel & 0xfffc, 0xb, 0, true);
	flat_seg(&cpu->seg[EMU_SEG_SS], (uint16_t)(sel + 8), 0x3, 0, false);
	emu_flags_set(cpu, fl & ~(cpu->msr.sfmask | EMU_FL_RF));
	emu_cpu_update_mode(cpu);
	*next = cpu->msr.lstar;
	return 0;
}

/* SYSRET: to 64-bit code (REX.W: CS = STAR[63:48] + 16) or compat code
 * (CS = STAR[63:48]); SS = STAR[63:48] + 8; RFLAGS from R11. */
EMU_HANDLER(sysret)
{
	uint16_t sel = (uint16_t)(cpu->msr.star >> 48);
	bool to64 = in->opsize == 8;
	uint64_t rip;

	if (!(cpu->msr.efer & EMU_EFER_SCE) || cpu->mode != EMU_MODE_LONG64)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	if (cpu->cpl != 0)
		return gp(cpu, 0);
	rip = to64 ? cpu->gpr[EMU_RCX] : (uint32_t)cpu->gpr[EMU_RCX];
	if (!canonical(rip))
		return gp(cpu, 0);
	flat_seg(&cpu->seg[EMU_SEG_CS],
		 (uint16_t)((to64 ? sel + 16 : sel) | 3), 0xb, 3, to64);
	/* SS keeps only selector and DPL from SYSRET (a flat data cache). */
	flat_seg(&cpu->seg[EMU_SEG_SS], (uint16_t)((sel + 8) | 3), 0x3, 3,
		 false);
	emu_flags_set(cpu, (cpu->gpr[EMU_R11] & 0x3c7fd7ull) | EMU_FL_FIXED);
	emu_cpu_update_mode(cpu);
	*next = rip;
	return 0;
}

/* SYSENTER (SDM Vol. 2B): to IA32_SYSENTER_CS/EIP/ESP at CPL 0, 64-bit
 * code in IA-32e mode. */
EMU_HANDLER(sysenter)
{
	uint16_t sel = (uint16_t)cpu->msr.sysenter_cs;
	bool l = lma(cpu);

	if (!(cpu->cr0 & EMU_CR0_PE))
		return gp(cpu, 0);
	if ((sel & 0xfffc) == 0)
		return gp(cpu, 0);
	flat_seg(&cpu->seg[EMU_SEG_CS], sel & 0xfffc, 0xb, 0, l);
	flat_seg(&cpu->seg[EMU_SEG_SS], (uint16_t)((sel & 0xfffc) + 8), 0x3, 0,
		 false);
	emu_flags_set(cpu, emu_flags_get(cpu) &
			   ~(EMU_FL_VM | EMU_FL_IF | EMU_FL_RF));
	cpu->gpr[EMU_RSP] = l ? cpu->msr.sysenter_esp :
				(uint32_t)cpu->msr.sysenter_esp;
	emu_cpu_update_mode(cpu);
	*next = l ? cpu->msr.sysenter_eip : (uint32_t)cpu->msr.sysenter_eip;
	return 0;
}

/* SYSEXIT: to CPL 3, RIP = RDX, RSP = RCX (REX.W: 64-bit code). */
EMU_HANDLER(sysexit)
{
	uint16_t sel = (uint16_t)cpu->msr.sysenter_cs;
	bool to64 = in->opsize == 8;
	uint64_t rip = cpu->gpr[EMU_RDX], rsp = cpu->gpr[EMU_RCX];

	if (!(cpu->cr0 & EMU_CR0_PE) || cpu->cpl != 0 ||
	    (sel & 0xfffc) == 0)
		return gp(cpu, 0);
	if (to64 && (!canonical(rip) || !canonical(rsp)))
		return gp(cpu, 0);
	if (!to64) {
		rip = (uint32_t)rip;
		rsp = (uint32_t)rsp;
	}
	flat_seg(&cpu->seg[EMU_SEG_CS],
		 (uint16_t)((sel + (to64 ? 32 : 16)) | 3), 0xb, 3, to64);
	flat_seg(&cpu->seg[EMU_SEG_SS],
		 (uint16_t)((sel + (to64 ? 40 : 24)) | 3), 0x3, 3, false);
	cpu->gpr[EMU_RSP] = rsp;
	emu_cpu_update_mode(cpu);
	*next = rip;
	return 0;
}

/* ---- CLI / STI ------------------------------------------------------- */

/* CLI / STI: protected mode needs CPL <= IOPL, else #GP(0) (VME/PVI not
 * implemented).  STI with IF = 0 opens an interrupt shadow. */
EMU_HANDLER(cli)
{
	uint64_t fl = emu_flags_get(cpu);
	unsigned iopl = (unsigned)((fl & EMU_FL_IOPL) >> 12);

	if ((cpu->cr0 & EMU_CR0_PE) && cpu->cpl > iopl)
		return gp(cpu, 0);
	if (in->op == EMU_OP_CLI) {
		cpu->rflags &= ~EMU_FL_IF;
	} else {
		if (!(cpu->rflags & EMU_FL_IF))
			cpu->int_shadow = true;
		cpu->rflags |= EMU_FL_IF;
	}
	return 0;
}
