/*
 * exceptions.c - event delivery of the software CPU: exceptions, external
 * interrupts, NMI and software interrupts through the IVT/IDT (SDM Vol. 3A
 * chapter 6), and the INT n / INT3 / INTO / INT1 instructions.
 *
 * emu_deliver() is called by the vCPU loop with an event; it looks at the
 * mode the CPU is in and
 *   - real mode (CR0.PE = 0): reads the 4-byte IVT entry at IDTR.base +
 *     4 * vector, pushes FLAGS, CS, IP (16 bits each) and clears IF, TF,
 *     AC (SDM Vol. 3A 20.1.4);
 *   - protected mode: reads the 8-byte gate (16/32-bit interrupt or trap
 *     gate), checks gate and target code segment (#GP/#NP with the
 *     selector or IDT-vector error code, EXT = 1 for events not caused by
 *     INT n), switches to the inner stack from the 32-bit (or 16-bit) TSS
 *     when the handler is more privileged (#TS/#SS on a bad SS), pushes
 *     [SS, ESP,] EFLAGS, CS, EIP [, error code] (6.12.1);
 *   - IA-32e mode (EFER.LMA, 64-bit or compatibility code): reads the
 *     16-byte gate, takes RSP from the 64-bit TSS (RSPn on a privilege
 *     change, ISTn when the gate names an IST slot), aligns it to 16 and
 *     always pushes SS, RSP, RFLAGS, CS, RIP [, error code]; a CPL change
 *     loads SS with a null selector whose RPL is the new CPL (6.14).
 * Then TF, NT, RF and VM are cleared, IF too for interrupt gates, and
 * CS:RIP is the handler.  Task gates are refused with #GP(IDT vector): a
 * hardware task switch does not exist in long mode and 64-bit Linux never
 * uses one; virtual-8086 mode likewise delivers #GP(0) (not implemented).
 *
 * Delivery is all-or-nothing: the gate, descriptors and TSS are read and
 * checked, the frame is written below the new stack pointer, and only
 * then are registers changed.  A fault on the way (a bad gate, a #PF on
 * the stack) therefore leaves the CPU as it was, and emu_deliver() applies
 * SDM Vol. 3A table 6-5: a contributory exception (#DE, #TS, #NP, #SS,
 * #GP) while delivering a contributory one, or a contributory or #PF
 * while delivering a #PF, becomes #DF (error code 0); other combinations
 * deliver the second exception instead (the first re-occurs when the
 * faulting instruction restarts); any fault while delivering #DF is a
 * triple fault, EMU_SHUTDOWN.  For #PF, CR2 gets cpu->exc.cr2 when the
 * delivery starts (CR2 stays written even if the delivery escalates).
 *
 * The IDT, GDT and TSS are read and the inner stack is written through
 * emu_mem_read_sys()/emu_mem_write_sys(): implicit supervisor accesses at
 * linear addresses, so a hostile IDTR base or limit ends in #GP/#PF and
 * then in #DF or shutdown, never outside guest memory.  Table entries
 * outside RAM give #GP/#TS (emu_sys_read_ram(), exec_segment.c).
 *
 * INT n, INT3 and INTO deliver as software interrupts (gate DPL >= CPL,
 * else #GP(vector * 8 + 2)) with RIP after the instruction -- #BP and #OF
 * are traps.  They call the single-attempt delivery directly, so a fault
 * of the delivery is returned from emu_step() with RIP still at the INT
 * instruction and is delivered like any other fault.  INT1 (ICEBP) is a
 * #DB trap without the DPL check.
 */
#include <errno.h>

#include "accel/emu/emu.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

static int raise_err(struct emu_cpu *cpu, unsigned vec, uint32_t err)
{
	return emu_raise(cpu, vec, true, err);
}

/* The frame's words are written from the lowest address up: w[0] is the
 * word at the new stack pointer (error code or RIP). */
struct frame {
	uint64_t w[6];
	unsigned n;     /* words */
	unsigned size;  /* bytes per word */
};

static void frame_push(struct frame *f, uint64_t v)
{
	/* Called from the top of the frame down: shift up and put v first. */
	for (unsigned i = f->n; i > 0; i--)
		f->w[i] = f->w[i - 1];
	f->w[0] = v;
	f->n++;
}

/* ---- real mode -------------------------------------------------------- */

static int deliver_real(struct emu_cpu *cpu, unsigned vector, uint64_t ret)
{
	unsigned ss = emu_stack_size(cpu);
	uint64_t m = emu_mask(ss), sp = cpu->gpr[EMU_RSP], ent, fl;
	struct emu_segment *cs = &cpu->seg[EMU_SEG_CS];
	int r;

	if ((uint64_t)vector * 4 + 3 > cpu->idtr.limit)
		return raise_err(cpu, EMU_VEC_GP, vector * 8 + 2);
	r = emu_sys_read_ram(cpu, (cpu->idtr.base + vector * 4) & 0xffffffffull,
			     4, &ent, EMU_VEC_GP, vector * 8 + 2);
	if (r)
		return r;
	fl = emu_flags_get(cpu);
	r = emu_mem_write(cpu, EMU_SEG_SS, (sp - 2) & m, 2, fl);
	if (!r)
		r = emu_mem_write(cpu, EMU_SEG_SS, (sp - 4) & m, 2, cs->sel);
	if (!r)
		r = emu_mem_write(cpu, EMU_SEG_SS, (sp - 6) & m, 2, ret);
	if (r)
		return r;
	emu_reg_write(cpu, EMU_RSP, ss, (sp - 6) & m);
	cs->sel = (uint16_t)(ent >> 16);
	cs->base = (uint64_t)cs->sel << 4;
	emu_flags_set(cpu, fl & ~(EMU_FL_IF | EMU_FL_TF | EMU_FL_AC |
				  EMU_FL_RF));
	cpu->rip = ent & 0xffff;
	return 0;
}

/* ---- gate and target code segment ------------------------------------- */

/* Checks shared by the protected and IA-32e paths on the handler's code
 * segment (SDM Vol. 3A 6.12.1.1).  *new_cpl is its privilege. */
static int check_handler_cs(struct emu_cpu *cpu, uint16_t sel, uint32_t ext,
			    bool want64, uint64_t *addr, uint64_t *d,
			    unsigned *new_cpl)
{
	unsigned type, dpl;
	int r;

	if ((sel & 0xfffc) == 0)
		return raise_err(cpu, EMU_VEC_GP, ext);
	r = emu_desc_read(cpu, sel, EMU_VEC_GP, ext, addr, d);
	if (r)
		return r;
	type = EMU_DESC_TYPE(*d);
	dpl = EMU_DESC_DPL(*d);
	if (!EMU_DESC_S(*d) || !(type & 8) || dpl > cpu->cpl)
		return raise_err(cpu, EMU_VEC_GP, (sel & 0xfffcu) | ext);
	if (want64 && (!(*d & (1ull << 53)) || (*d & (1ull << 54))))
		return raise_err(cpu, EMU_VEC_GP, (sel & 0xfffcu) | ext);
	if (!EMU_DESC_P(*d))
		return raise_err(cpu, EMU_VEC_NP, (sel & 0xfffcu) | ext);
	*new_cpl = (type & 4) ? cpu->cpl : dpl;
	return 0;
}

/* Read `size` bytes at `off` in the TSS, #TS(TR) when outside its limit. */
static int tss_read(struct emu_cpu *cpu, uint32_t off, unsigned size,
		    uint32_t ext, uint64_t *v)
{
	uint64_t lin;

	if (cpu->tr.unusable || (uint64_t)off + size - 1 > cpu->tr.limit)
		return raise_err(cpu, EMU_VEC_TS, (cpu->tr.sel & 0xfffcu) | ext);
	lin = cpu->tr.base + off;
	if (!(cpu->msr.efer & EMU_EFER_LMA))
		lin &= 0xffffffffull;
	else if (!canonical(lin))
		return raise_err(cpu, EMU_VEC_GP, ext);
	return emu_sys_read_ram(cpu, lin, size, v, EMU_VEC_TS,
				(cpu->tr.sel & 0xfffcu) | ext);
}

/* ---- protected mode --------------------------------------------------- */

static int deliver_prot(struct emu_cpu *cpu, unsigned vector,
			enum emu_event kind, bool has_err, uint32_t err,
			uint64_t ret)
{
	uint32_t ext = kind != EMU_EVENT_SOFTINT;
	uint32_t idt_err = vector * 8 + 2 + ext;
	uint64_t g, cs_addr, cs_d, ss_addr = 0, ss_d = 0, fl, sp, off, lin;
	struct emu_segment ncs, nss = cpu->seg[EMU_SEG_SS];
	unsigned gtype, gs, new_cpl, nss_size;
	bool sw;
	struct frame f = { .n = 0 };
	uint16_t sel;
	int r;

	if (cpu->rflags & EMU_FL_VM)
		return raise_err(cpu, EMU_VEC_GP, ext); /* see the top */
	if ((uint64_t)vector * 8 + 7 > cpu->idtr.limit)
		return raise_err(cpu, EMU_VEC_GP, idt_err);
	r = emu_sys_read_ram(cpu, (cpu->idtr.base + vector * 8) & 0xffffffffull,
			     8, &g, EMU_VEC_GP, idt_err);
	if (r)
		return r;
	gtype = (unsigned)(g >> 40) & 0x1f;
	if (gtype != 0x06 && gtype != 0x07 && gtype != 0x0e && gtype != 0x0f)
		return raise_err(cpu, EMU_VEC_GP, idt_err); /* task gate too */
	if (kind == EMU_EVENT_SOFTINT && EMU_DESC_DPL(g) < cpu->cpl)
		return raise_err(cpu, EMU_VEC_GP, vector * 8 + 2);
	if (!EMU_DESC_P(g))
		return raise_err(cpu, EMU_VEC_NP, idt_err);
	gs = (gtype & 8) ? 4 : 2;
	sel = (uint16_t)(g >> 16);
	off = (g & 0xffff) | (gs == 4 ? ((g >> 48) & 0xffff) << 16 : 0);
	r = check_handler_cs(cpu, sel, ext, false, &cs_addr, &cs_d, &new_cpl);
	if (r)
		return r;
	emu_seg_from_desc(&ncs, (uint16_t)((sel & 0xfffc) | new_cpl), cs_d);
	if (off > ncs.limit)
		return raise_err(cpu, EMU_VEC_GP, ext);

	sw = new_cpl < cpu->cpl;
	sp = cpu->gpr[EMU_RSP];
	if (sw) {
		bool t32 = (cpu->tr.attr & 8) != 0;
		uint64_t nsp, nssv;
		uint16_t s;

		r = tss_read(cpu, t32 ? 4 + 8 * new_cpl : 2 + 4 * new_cpl,
			     t32 ? 4 : 2, ext, &nsp);
		if (!r)
			r = tss_read(cpu, t32 ? 8 + 8 * new_cpl : 4 + 4 * new_cpl,
				     2, ext, &nssv);
		if (r)
			return r;
		s = (uint16_t)nssv;
		if ((s & 0xfffc) == 0)
			return raise_err(cpu, EMU_VEC_TS, ext);
		if ((s & 3) != new_cpl)
			return raise_err(cpu, EMU_VEC_TS, (s & 0xfffcu) | ext);
		r = emu_desc_read(cpu, s, EMU_VEC_TS, ext, &ss_addr, &ss_d);
		if (r)
			return r;
		if (!EMU_DESC_S(ss_d) || (EMU_DESC_TYPE(ss_d) & 0xa) != 0x2 ||
		    EMU_DESC_DPL(ss_d) != new_cpl)
			return raise_err(cpu, EMU_VEC_TS, (s & 0xfffcu) | ext);
		if (!EMU_DESC_P(ss_d))
			return raise_err(cpu, EMU_VEC_SS, (s & 0xfffcu) | ext);
		emu_seg_from_desc(&nss, s, ss_d);
		frame_push(&f, cpu->seg[EMU_SEG_SS].sel);
		frame_push(&f, sp & emu_mask(emu_stack_size(cpu)));
		sp = nsp;
	}
	nss_size = (nss.attr & EMU_SEG_ATTR_DB) ? 4 : 2;
	fl = emu_flags_get(cpu);
	frame_push(&f, fl);
	frame_push(&f, cpu->seg[EMU_SEG_CS].sel);
	frame_push(&f, ret);
	if (has_err)
		frame_push(&f, err);
	f.size = gs;
	sp = (sp - f.n * gs) & emu_mask(nss_size);
	if (sw) {
		if (!emu_seg_room(&nss, sp, f.n * gs))
			return raise_err(cpu, EMU_VEC_SS,
					 (nss.sel & 0xfffcu) | ext);
		for (unsigned i = 0; i < f.n; i++) {
			lin = (nss.base + ((sp + i * gs) & emu_mask(nss_size))) &
			      0xffffffffull;
			r = emu_mem_write_sys(cpu, lin, gs, f.w[i]);
			if (r)
				return r;
		}
	} else {
		for (unsigned i = 0; i < f.n; i++) {
			r = emu_mem_write(cpu, EMU_SEG_SS,
					  (sp + i * gs) & emu_mask(nss_size),
					  gs, f.w[i]);
			if (r)
				return r;
		}
	}
	r = emu_desc_accessed(cpu, cs_addr, cs_d);
	if (!r && ss_addr)
		r = emu_desc_accessed(cpu, ss_addr, ss_d);
	if (r)
		return r;
	ncs.attr |= 1;
	cpu->seg[EMU_SEG_CS] = ncs;
	if (sw) {
		nss.attr |= 1;
		cpu->seg[EMU_SEG_SS] = nss;
	}
	emu_reg_write(cpu, EMU_RSP, nss_size, sp);
	fl &= ~(EMU_FL_TF | EMU_FL_NT | EMU_FL_RF | EMU_FL_VM);
	if (!(gtype & 1))
		fl &= ~EMU_FL_IF;
	emu_flags_set(cpu, fl);
	emu_cpu_update_mode(cpu);
	cpu->rip = off;
	return 0;
}

/* ---- IA-32e mode ------------------------------------------------------ */

static int deliver_long(struct emu_cpu *cpu, unsigned vector,
			enum emu_event kind, bool has_err, uint32_t err,
			uint64_t ret)
{
	uint32_t ext = kind != EMU_EVENT_SOFTINT;
	uint32_t idt_err = vector * 8 + 2 + ext; /* an index, even here */
	uint64_t lo, hi, gl, cs_addr, cs_d, fl, sp, off, tss_sp;
	struct emu_segment ncs;
	struct frame f = { .n = 0 };
	unsigned gtype, ist, new_cpl;
	uint16_t sel;
	int r;

	if ((uint64_t)vector * 16 + 15 > cpu->idtr.limit)
		return raise_err(cpu, EMU_VEC_GP, idt_err);
	gl = cpu->idtr.base + vector * 16;
	if (!canonical(gl) || !canonical(gl + 15))
		return raise_err(cpu, EMU_VEC_GP, ext);
	r = emu_sys_read_ram(cpu, gl, 8, &lo, EMU_VEC_GP, idt_err);
	if (!r)
		r = emu_sys_read_ram(cpu, gl + 8, 8, &hi, EMU_VEC_GP, idt_err);
	if (r)
		return r;
	gtype = (unsigned)(lo >> 40) & 0x1f;
	if ((gtype != 0x0e && gtype != 0x0f) || ((hi >> 40) & 0x1f))
		return raise_err(cpu, EMU_VEC_GP, idt_err);
	if (kind == EMU_EVENT_SOFTINT && EMU_DESC_DPL(lo) < cpu->cpl)
		return raise_err(cpu, EMU_VEC_GP, vector * 8 + 2);
	if (!EMU_DESC_P(lo))
		return raise_err(cpu, EMU_VEC_NP, idt_err);
	sel = (uint16_t)(lo >> 16);
	off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull) | (hi << 32);
	ist = (unsigned)(lo >> 32) & 7;
	r = check_handler_cs(cpu, sel, ext, true, &cs_addr, &cs_d, &new_cpl);
	if (r)
		return r;
	if (!canonical(off))
		return raise_err(cpu, EMU_VEC_GP, ext);
	emu_seg_from_desc(&ncs, (uint16_t)((sel & 0xfffc) | new_cpl), cs_d);

	sp = cpu->gpr[EMU_RSP];
	if (ist || new_cpl < cpu->cpl) {
		/* The 64-bit TSS: RSP0-2 at 4, IST1-7 at 0x24 (SDM 7.7). */
		r = tss_read(cpu, ist ? 0x24 + (ist - 1) * 8 : 4 + 8 * new_cpl,
			     8, ext, &tss_sp);
		if (r)
			return r;
		if (!canonical(tss_sp))
			return raise_err(cpu, EMU_VEC_SS, ext);
	} else {
		tss_sp = cpu->mode == EMU_MODE_LONG64 ? sp : (uint32_t)sp;
	}
	fl = emu_flags_get(cpu);
	frame_push(&f, cpu->seg[EMU_SEG_SS].sel);
	frame_push(&f, sp);
	frame_push(&f, fl);
	frame_push(&f, cpu->seg[EMU_SEG_CS].sel);
	frame_push(&f, ret);
	if (has_err)
		frame_push(&f, err);
	sp = (tss_sp & ~0xfull) - f.n * 8;
	if (!canonical(sp) || !canonical(sp + f.n * 8 - 1))
		return raise_err(cpu, EMU_VEC_SS, ext);
	for (unsigned i = 0; i < f.n; i++) {
		/* A DPL-3 handler at CPL 3 pushes as a user access (64-bit
		 * code: the offset is the linear address). */
		if (new_cpl == 3)
			r = emu_mem_write(cpu, EMU_SEG_SS, sp + i * 8, 8,
					  f.w[i]);
		else
			r = emu_mem_write_sys(cpu, sp + i * 8, 8, f.w[i]);
		if (r)
			return r;
	}
	r = emu_desc_accessed(cpu, cs_addr, cs_d);
	if (r)
		return r;
	ncs.attr |= 1;
	if (new_cpl < cpu->cpl) {
		struct emu_segment *ss = &cpu->seg[EMU_SEG_SS];

		ss->sel = (uint16_t)new_cpl;
		ss->base = 0;
		ss->limit = 0;
		ss->attr = (uint16_t)(new_cpl << 5);
		ss->unusable = true;
	}
	cpu->seg[EMU_SEG_CS] = ncs;
	cpu->gpr[EMU_RSP] = sp;
	fl &= ~(EMU_FL_TF | EMU_FL_NT | EMU_FL_RF | EMU_FL_VM);
	if (!(gtype & 1))
		fl &= ~EMU_FL_IF;
	emu_flags_set(cpu, fl);
	emu_cpu_update_mode(cpu);
	cpu->rip = off;
	return 0;
}

/* ---- one attempt, and escalation -------------------------------------- */

int emu_deliver_once(struct emu_cpu *cpu, unsigned vector, int kind, bool has_err, uint32_t err,
		     uint64_t ret_rip)
{
	int r;

	if (vector > 255)
		return -EINVAL;
	if (!(cpu->cr0 & EMU_CR0_PE))
		r = deliver_real(cpu, vector, ret_rip);
	else if (cpu->msr.efer & EMU_EFER_LMA)
		r = deliver_long(cpu, vector, kind, has_err, err, ret_rip);
	else
		r = deliver_prot(cpu, vector, kind, has_err, err, ret_rip);
	if (r)
		return r;
	if (kind == EMU_EVENT_NMI)
		cpu->nmi_blocked = true;
	cpu->halted = false;
	cpu->int_shadow = false;
	return 0;
}

enum exc_class { BENIGN, CONTRIBUTORY, PAGE_FAULT };

static enum exc_class exc_class(unsigned vector, enum emu_event kind)
{
	if (kind != EMU_EVENT_EXCEPTION)
		return BENIGN;
	switch (vector) {
	case EMU_VEC_DE: case EMU_VEC_TS: case EMU_VEC_NP: case EMU_VEC_SS:
	case EMU_VEC_GP:
		return CONTRIBUTORY;
	case EMU_VEC_PF:
		return PAGE_FAULT;
	default:
		return BENIGN;
	}
}

int emu_deliver(struct emu_cpu *cpu, unsigned vector, enum emu_event kind,
		bool has_error, uint32_t error_code)
{
	/* At most: event, serial replacement(s), #DF, then shutdown. */
	for (int tries = 0; tries < 8; tries++) {
		enum exc_class first = exc_class(vector, kind), second;
		unsigned v2;
		int r;

		if (kind == EMU_EVENT_EXCEPTION && vector == EMU_VEC_PF)
			cpu->cr2 = cpu->exc.cr2;
		r = emu_deliver_once(cpu, vector, kind, has_error, error_code,
				     cpu->rip);
		if (r == 0 || !EMU_IS_EXC(r))
			return r;
		if (kind == EMU_EVENT_EXCEPTION && vector == EMU_VEC_DF)
			return EMU_SHUTDOWN;
		v2 = cpu->exc.vector;
		second = exc_class(v2, EMU_EVENT_EXCEPTION);
		/* A #PF detected during delivery loads CR2 even when it
		 * becomes a #DF. */
		if (v2 == EMU_VEC_PF)
			cpu->cr2 = cpu->exc.cr2;
		if ((first == CONTRIBUTORY && second == CONTRIBUTORY) ||
		    (first == PAGE_FAULT && second != BENIGN)) {
			vector = EMU_VEC_DF;
			has_error = true;
			error_code = 0;
		} else {
			vector = v2;
			has_error = cpu->exc.has_error;
			error_code = cpu->exc.error_code;
		}
		kind = EMU_EVENT_EXCEPTION;
	}
	return EMU_SHUTDOWN;
}

/* ---- INT n, INT3, INTO, INT1 ------------------------------------------ */

EMU_HANDLER(int)
{
	enum emu_event kind = EMU_EVENT_SOFTINT;
	unsigned vec;
	int r;

	switch (in->op) {
	case EMU_OP_INT3:
		vec = EMU_VEC_BP;
		break;
	case EMU_OP_INTO:
		if (cpu->mode == EMU_MODE_LONG64)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		if (!emu_cond(cpu, 0))
			return 0;
		vec = EMU_VEC_OF;
		break;
	case EMU_OP_INT1:
		vec = EMU_VEC_DB;
		kind = EMU_EVENT_EXCEPTION;
		break;
	default:
		if (in->nr_opnds < 1 || in->opnd[0].kind != EMU_OPND_IMM)
			return emu_raise(cpu, EMU_VEC_UD, false, 0);
		vec = (unsigned)in->opnd[0].val & 0xff;
		break;
	}
	/* Virtual-8086 mode: INT n needs IOPL 3 (no VME). */
	if ((cpu->rflags & EMU_FL_VM) && kind == EMU_EVENT_SOFTINT &&
	    ((cpu->rflags & EMU_FL_IOPL) >> 12) < 3)
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	r = emu_deliver_once(cpu, vec, kind, false, 0, *next);
	if (r)
		return r;
	*next = cpu->rip;
	return 0;
}
