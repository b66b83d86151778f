/*
 * exec_system.c - system instructions: MOV to/from control and debug
 * registers, CLTS, HLT, port I/O (IN, OUT, INS, OUTS), INVLPG, cache and
 * fence instructions, RDMSR/WRMSR, RDPMC (SDM Vol. 2, Vol. 3A 2.5-2.8;
 * AMD APM Vol. 2 3.1).
 *
 * Privilege.  Everything here except the fences, port I/O under IOPL and
 * RDTSC (tsc.c) is CPL 0 only: #GP(0) otherwise, checked before anything
 * else happens.  Virtual-8086 mode runs at CPL 3 (emu_cpu_update_mode), so
 * the same checks cover it.
 *
 * Control registers (SDM Vol. 3A 2.5, 10.8.5, 4.1.1):
 *   CR0  bits 63:32 set -> #GP; reserved bits in 31:0 are ignored (as KVM)
 *        and ET always reads 1; PG without PE, NW without CD -> #GP.
 *        Setting PG with EFER.LME activates long mode (EFER.LMA = 1) and
 *        needs CR4.PAE (#GP otherwise) and CS.L = 0; clearing PG in 64-bit
 *        mode is #GP, in compatibility mode it leaves long mode.  A change
 *        of PE, PG or WP recomputes the mode and drops the whole TLB.
 *   CR3  is stored with bits above MAXPHYADDR reserved (#GP) in long mode
 *        (no PCID, so bit 63 too), truncated to 32 bits outside it; every
 *        write drops the non-global TLB entries, even an unchanged value.
 *        PAE-mode PDPTE loading is the MMU's business (it walks from CR3).
 *   CR4  only the bits of the CPU model (EMU_CR4_VALID: DE, TSD, PSE, PAE,
 *        PGE, OSFXSR, OSXMMEXCPT); anything else -> #GP, as is clearing
 *        PAE while EFER.LMA = 1.  PAE/PGE/PSE changes drop the whole TLB.
 *   CR8  is the LAPIC's TPR[7:4] (lapic_get_cr8/lapic_set_cr8), or a plain
 *        field without a LAPIC (tests); bits above 3 -> #GP.
 *   CR2  is a plain register.  CR1, CR5-7, CR9-15 -> #UD.
 * The decoded-block cache must end a block after MOV CR0/CR4/EFER changes
 * (mode) -- the accel's rule for any instruction of this file.
 *
 * Debug registers: DR0-3, DR6, DR7 are stored; DR4/DR5 alias DR6/DR7
 * unless CR4.DE, when they are #UD.  DR6/DR7 writes with bits 63:32 set
 * are #GP; fixed bits are forced (DR6 = 0xFFFF0FF0 | B0-3/BD/BS/BT, DR7
 * bit 10 set, 11/12/14/15 clear).  No breakpoint is implemented: DR7 is
 * never acted upon (no #DB on address match, no DR7.GD general detect).
 * Linux only saves/restores them unless a debugger arms hardware
 * breakpoints, which then silently never fire.
 *
 * HLT sets cpu->halted and returns EMU_HALTED; emu_execute() (emu.c)
 * commits RIP past it and counts it, so the vCPU resumes after the HLT
 * when an interrupt wakes it and the interrupt frame holds the next RIP,
 * as on hardware.
 *
 * Port I/O goes to cpu->pio with bus_read/bus_write (an absent bus reads as
 * all ones).  Permission (SDM Vol. 1 19.5): real mode always; protected
 * mode when CPL <= IOPL; otherwise the TSS I/O bitmap would be consulted,
 * which is not implemented, so it is #GP(0) -- Linux only uses the bitmap
 * for ioperm() in user space.  INS/OUTS with REP run at most
 * EMU_PIO_BATCH iterations per step and leave RIP in place if more
 * remain, committing RDI/RSI/RCX per iteration like exec_string.c.  INS
 * probes the destination for write access before it reads the port, so a
 * #PF does not swallow a device read; only a destination that crosses a
 * page whose second half faults can still lose the element (rare enough).
 *
 * Caches and fences: WBINVD and INVD (CPL 0) do nothing (there is no
 * cache to write back; guest RAM is host RAM).  CLFLUSH, CLFLUSHOPT and
 * PREFETCH* decode as NOP (decode.c): architecturally they may fault on
 * an inaccessible address, which is not modelled -- no guest depends on
 * it.  LFENCE/MFENCE/SFENCE are a host full fence (stores of other vCPU
 * threads are host stores, so this is the ordering they ask for).  PAUSE
 * is a NOP (decode.c); the accel's idle logic handles spinning.
 *
 * RDPMC is #GP(0): the model has no performance counters (cpuid.c).
 * XGETBV/XSETBV are #UD (no XSAVE in the model); they decode as EMU_OP_UD.
 */
#include "accel/emu/emu_sys.h"
#include "accel/emu/exec.h"
#include "accel/emu/lapic.h"
#include "core/bus.h"

#define EMU_CR0_MP (1ull << 1)
#define EMU_CR0_EM (1ull << 2)
#define EMU_CR0_TS (1ull << 3)
#define EMU_CR0_ET (1ull << 4)
#define EMU_CR0_NE (1ull << 5)
#define EMU_CR0_AM (1ull << 18)
#define EMU_CR0_NW (1ull << 29)
#define EMU_CR0_CD (1ull << 30)
#define EMU_CR0_VALID (EMU_CR0_PE | EMU_CR0_MP | EMU_CR0_EM | EMU_CR0_TS | \
		       EMU_CR0_ET | EMU_CR0_NE | EMU_CR0_WP | EMU_CR0_AM | \
		       EMU_CR0_NW | EMU_CR0_CD | EMU_CR0_PG)

#define EMU_PIO_BATCH 4096

static int gp0(struct emu_cpu *cpu)
{
	return emu_raise(cpu, EMU_VEC_GP, true, 0);
}

static int ud(struct emu_cpu *cpu)
{
	return emu_raise(cpu, EMU_VEC_UD, false, 0);
}

int emu_write_cr0(struct emu_cpu *cpu, uint64_t val)
{
	uint64_t old = cpu->cr0, efer = cpu->msr.efer;

	if (val >> 32)
		return gp0(cpu);
	val = (val & EMU_CR0_VALID) | EMU_CR0_ET;
	if ((val & EMU_CR0_PG) && !(val & EMU_CR0_PE))
		return gp0(cpu);
	if ((val & EMU_CR0_NW) && !(val & EMU_CR0_CD))
		return gp0(cpu);
	if (!(old & EMU_CR0_PG) && (val & EMU_CR0_PG) &&
	    (efer & EMU_EFER_LME)) {
		if (!(cpu->cr4 & EMU_CR4_PAE) ||
		    (cpu->seg[EMU_SEG_CS].attr & EMU_SEG_ATTR_L))
			return gp0(cpu);
		efer |= EMU_EFER_LMA;
	}
	if ((old & EMU_CR0_PG) && !(val & EMU_CR0_PG) &&
	    (efer & EMU_EFER_LMA)) {
		if (cpu->mode == EMU_MODE_LONG64)
			return gp0(cpu);
		efer &= ~EMU_EFER_LMA;
	}
	cpu->cr0 = val;
	cpu->msr.efer = efer;
	if ((old ^ val) & (EMU_CR0_PE | EMU_CR0_PG | EMU_CR0_WP)) {
		emu_cpu_update_mode(cpu);
		emu_tlb_flush(cpu, true);
	}
	return 0;
}

int emu_write_cr3(struct emu_cpu *cpu, uint64_t val)
{
	if (cpu->msr.efer & EMU_EFER_LMA) {
		if (val & ~((1ull << cpu->maxphyaddr) - 1))
			return gp0(cpu);
	} else {
		val &= 0xffffffffull;
	}
	cpu->cr3 = val;
	emu_tlb_flush(cpu, false);
	return 0;
}

int emu_write_cr4(struct emu_cpu *cpu, uint64_t val)
{
	uint64_t old = cpu->cr4;

	if (val & ~EMU_CR4_VALID)
		return gp0(cpu);
	if ((cpu->msr.efer & EMU_EFER_LMA) && !(val & EMU_CR4_PAE))
		return gp0(cpu);
	cpu->cr4 = val;
	if ((old ^ val) & (EMU_CR4_PAE | EMU_CR4_PGE | EMU_CR4_PSE)) {
		emu_cpu_update_mode(cpu);
		emu_tlb_flush(cpu, true);
	}
	return 0;
}

/* MOV r, CRn (0F 20) and MOV CRn, r (0F 22): operand 0 is the
 * destination; the CR operand is EMU_OPND_OTHER with the number in reg. */
EMU_HANDLER(movcr)
{
	bool to_cr = in->opnd[0].kind == EMU_OPND_OTHER;
	const struct emu_opnd *g = &in->opnd[to_cr ? 1 : 0];
	unsigned cr = in->opnd[to_cr ? 0 : 1].reg;
	uint64_t v;

	if (in->nr_opnds != 2 || g->kind != EMU_OPND_GPR)
		return ud(cpu);
	if (cr != 0 && cr != 2 && cr != 3 && cr != 4 && cr != 8)
		return ud(cpu);
	if (cpu->cpl != 0)
		return gp0(cpu);
	if (!to_cr) {
		switch (cr) {
		case 0: v = cpu->cr0; break;
		case 2: v = cpu->cr2; break;
		case 3: v = cpu->cr3; break;
		case 4: v = cpu->cr4; break;
		default:
			v = cpu->lapic ? lapic_get_cr8(cpu->lapic) : cpu->cr8;
			break;
		}
		emu_reg_write(cpu, g->reg, g->size, v);
		return 0;
	}
	v = emu_reg_read(cpu, g->reg, g->size);
	switch (cr) {
	case 0: return emu_write_cr0(cpu, v);
	case 2: cpu->cr2 = v; return 0;
	case 3: return emu_write_cr3(cpu, v);
	case 4: return emu_write_cr4(cpu, v);
	default:
		if (v & ~0xfull)
			return gp0(cpu);
		cpu->cr8 = v;
		if (cpu->lapic)
			lapic_set_cr8(cpu->lapic, (uint8_t)v);
		return 0;
	}
}

/* MOV r, DRn (0F 21) and MOV DRn, r (0F 23). */
EMU_HANDLER(movdr)
{
	bool to_dr = in->opnd[0].kind == EMU_OPND_OTHER;
	const struct emu_opnd *g = &in->opnd[to_dr ? 1 : 0];
	unsigned dr = in->opnd[to_dr ? 0 : 1].reg;
	uint64_t v;

	if (in->nr_opnds != 2 || g->kind != EMU_OPND_GPR || dr > 7)
		return ud(cpu);
	if (cpu->cpl != 0)
		return gp0(cpu);
	if (dr == 4 || dr == 5) {
		if (cpu->cr4 & EMU_CR4_DE)
			return ud(cpu);
		dr += 2;
	}
	if (!to_dr) {
		emu_reg_write(cpu, g->reg, g->size, cpu->dr[dr]);
		return 0;
	}
	v = emu_reg_read(cpu, g->reg, g->size);
	if (dr >= 6 && (v >> 32))
		return gp0(cpu);
	if (dr == 6)
		v = (v & 0xe00full) | 0xffff0ff0ull;
	else if (dr == 7)
		v = (v & ~0xd800ull) | 0x400ull;
	cpu->dr[dr] = v;
	return 0;
}

EMU_HANDLER(clts)
{
	if (cpu->cpl != 0)
		return gp0(cpu);
	cpu->cr0 &= ~EMU_CR0_TS;
	return 0;
}

EMU_HANDLER(hlt)
{
	if (cpu->cpl != 0)
		return gp0(cpu);
	cpu->halted = true;
	return EMU_HALTED; /* emu_execute() commits RIP = *next */
}

/* May the current privilege level access I/O ports (no I/O bitmap)? */
static bool io_allowed(const struct emu_cpu *cpu)
{
	if (!(cpu->cr0 & EMU_CR0_PE))
		return true;
	if (cpu->rflags & EMU_FL_VM)
		return false;
	return cpu->cpl <= ((cpu->rflags & EMU_FL_IOPL) >> 12);
}

static uint64_t port_in(struct emu_cpu *cpu, uint16_t port, unsigned size)
{
	if (!cpu->pio)
		return emu_mask(size);
	return bus_read(cpu->pio, port, size) & emu_mask(size);
}

static void port_out(struct emu_cpu *cpu, uint16_t port, unsigned size,
		     uint64_t v)
{
	if (cpu->pio)
		bus_write(cpu->pio, port, size, v & emu_mask(size));
}

static uint16_t port_of(const struct emu_cpu *cpu, const struct emu_opnd *o)
{
	if (o->kind == EMU_OPND_IMM)
		return (uint16_t)(o->val & 0xff);
	return (uint16_t)cpu->gpr[EMU_RDX];
}

/* IN AL/AX/EAX, imm8 / DX. */
EMU_HANDLER(in)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = d->size;

	if (in->nr_opnds != 2 || d->kind != EMU_OPND_GPR ||
	    (size != 1 && size != 2 && size != 4))
		return ud(cpu);
	if (!io_allowed(cpu))
		return gp0(cpu);
	emu_reg_write(cpu, EMU_RAX, size, port_in(cpu, port_of(cpu, &in->opnd[1]),
						  size));
	return 0;
}

/* OUT imm8 / DX, AL/AX/EAX. */
EMU_HANDLER(out)
{
	const struct emu_opnd *s = &in->opnd[1];
	unsigned size = s->size;

	if (in->nr_opnds != 2 || s->kind != EMU_OPND_GPR ||
	    (size != 1 && size != 2 && size != 4))
		return ud(cpu);
	if (!io_allowed(cpu))
		return gp0(cpu);
	port_out(cpu, port_of(cpu, &in->opnd[0]), size,
		 emu_reg_read(cpu, EMU_RAX, size));
	return 0;
}

/* One INS / OUTS element; registers change only on success. */
static int pio_once(struct emu_cpu *cpu, const struct emu_insn *in,
		    unsigned size)
{
	unsigned as = in->addrsize;
	uint64_t m = emu_mask(as);
	uint64_t step = (cpu->rflags & EMU_FL_DF) ? 0 - (uint64_t)size : size;
	uint16_t port = (uint16_t)cpu->gpr[EMU_RDX];
	uint64_t v;
	void *host;
	int r;

	if (in->op == EMU_OP_INS) {
		uint64_t di = cpu->gpr[EMU_RDI] & m;

		r = emu_mem_host_ptr(cpu, EMU_SEG_ES, di, size, &host);
		if (r)
			return r;
		v = port_in(cpu, port, size);
		r = emu_mem_write(cpu, EMU_SEG_ES, di, size, v);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RDI, as, di + step);
	} else {
		uint64_t si = cpu->gpr[EMU_RSI] & m;

		r = emu_mem_read(cpu, in->seg, si, size, &v);
		if (r)
			return r;
		port_out(cpu, port, size, v);
		emu_reg_write(cpu, EMU_RSI, as, si + step);
	}
	return 0;
}

/* INSB/W/D and OUTSB/W/D, with REP. */
EMU_HANDLER(pio_string)
{
	unsigned size = in->opsize, as = in->addrsize;
	uint64_t c;
	int r;

	if (size != 1 && size != 2 && size != 4)
		return ud(cpu);
	if (!io_allowed(cpu))
		return gp0(cpu);
	if (!(in->prefixes & (EMU_PFX_REP | EMU_PFX_REPNE)))
		return pio_once(cpu, in, size);
	for (unsigned i = 0; i < EMU_PIO_BATCH; i++) {
		c = emu_reg_read(cpu, EMU_RCX, as);
		if (c == 0)
			return 0;
		r = pio_once(cpu, in, size);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RCX, as, c - 1);
	}
	if (emu_reg_read(cpu, EMU_RCX, as) != 0)
		*next = cpu->rip;
	return 0;
}

/* INVLPG m: drop the translation of the page holding the linear address.
 * Never faults on the address (a non-canonical one is simply a no-op). */
EMU_HANDLER(invlpg)
{
	const struct emu_opnd *o = &in->opnd[0];
	uint64_t ea, lin;

	if (in->nr_opnds < 1 || o->kind != EMU_OPND_MEM)
		return ud(cpu);
	if (cpu->cpl != 0)
		return gp0(cpu);
	ea = emu_ea(cpu, in, o, *next);
	if (cpu->mode == EMU_MODE_LONG64)
		lin = ((o->seg == EMU_SEG_FS || o->seg == EMU_SEG_GS) ?
		       cpu->seg[o->seg].base : 0) + ea;
	else
		lin = (cpu->seg[o->seg].base + ea) & 0xffffffffull;
	emu_tlb_flush_page(cpu, lin);
	return 0;
}

/* WBINVD, INVD. */
EMU_HANDLER(wbinvd)
{
	if (cpu->cpl != 0)
		return gp0(cpu);
	return 0;
}

/* LFENCE, MFENCE, SFENCE. */
EMU_HANDLER(fence)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

EMU_HANDLER(rdpmc)
{
	return gp0(cpu);
}

EMU_HANDLER(rdmsr)
{
	uint64_t v;
	int r;

	if (cpu->cpl != 0)
		return gp0(cpu);
	r = emu_msr_read(cpu, (uint32_t)cpu->gpr[EMU_RCX], &v);
	if (r)
		return r;
	emu_reg_write(cpu, EMU_RAX, 4, v);
	emu_reg_write(cpu, EMU_RDX, 4, v >> 32);
	return 0;
}

EMU_HANDLER(wrmsr)
{
	uint64_t v = (cpu->gpr[EMU_RAX] & 0xffffffffull) |
		     (cpu->gpr[EMU_RDX] << 32);

	if (cpu->cpl != 0)
		return gp0(cpu);
	return emu_msr_write(cpu, (uint32_t)cpu->gpr[EMU_RCX], v);
}
