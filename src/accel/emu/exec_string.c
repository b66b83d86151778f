/*
 * exec_string.c - string instructions MOVS, STOS, LODS, CMPS, SCAS with
 * the REP / REPE / REPNE prefixes (SDM Vol. 2, "REP/REPE/REPZ/REPNE/REPNZ").
 *
 * RSI/RDI/RCX are used at the address size (SI/DI/CX, ESI/EDI/ECX or the
 * full registers) and step by the element size, backwards when DF = 1.
 * The source segment is DS or the override prefix; the destination is
 * always ES (no override).
 *
 * A REP instruction is interruptible: each iteration commits its register
 * updates before the next begins, so a fault in iteration k leaves RSI,
 * RDI, RCX describing the k - 1 completed iterations and RIP still at the
 * instruction, and re-executing it resumes where it stopped.  To keep
 * interrupt latency bounded one emu_step() runs at most
 * EMU_REP_BATCH iterations and then leaves RIP at the instruction, so the
 * run loop can look at interrupts and the next step continues.
 *
 * BULK.  In 64-bit mode, forward REP MOVS and REP STOS with 64-bit
 * addresses move whole runs of elements at once: as many as stay inside
 * the current source and destination pages, when both hit the TLB on RAM
 * (rep_bulk()).  Everything else -- the first element of a page that
 * misses the TLB (whose walk may fault), MMIO, an element crossing a
 * page -- takes the per-element path, which is the reference the bulk
 * path must match: a MOVS whose destination starts inside its source
 * run copies element by element, forwards, exactly as the per-element
 * loop would.
 */
#include <string.h>

#include "accel/emu/blocks.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"

#define EMU_REP_BATCH 4096

/* One iteration; returns 0 or EMU_EXC with no register changed. */
static int string_once(struct emu_cpu *cpu, const struct emu_insn *in,
		       unsigned size)
{
	unsigned as = in->addrsize;
	uint64_t m = emu_mask(as);
	uint64_t si = cpu->gpr[EMU_RSI] & m, di = cpu->gpr[EMU_RDI] & m;
	uint64_t step = (cpu->rflags & EMU_FL_DF) ? 0 - (uint64_t)size : size;
	uint64_t a, b;
	int r;

	switch (in->op) {
	case EMU_OP_MOVS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (!r)
			r = emu_mem_write(cpu, EMU_SEG_ES, di, size, a);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	case EMU_OP_STOS:
		r = emu_mem_write(cpu, EMU_SEG_ES, di, size,
				  cpu->gpr[EMU_RAX]);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	case EMU_OP_LODS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RAX, size, a);
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		return 0;
	case EMU_OP_CMPS:
		r = emu_mem_read(cpu, in->seg, si, size, &a);
		if (!r)
			r = emu_mem_read(cpu, EMU_SEG_ES, di, size, &b);
		if (r)
			return r;
		emu_lazy(cpu, EMU_LF_SUB, size, a - b, a, b, 0);
		emu_reg_write(cpu, EMU_RSI, as, si + step);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	default: /* SCAS */
		r = emu_mem_read(cpu, EMU_SEG_ES, di, size, &b);
		if (r)
			return r;
		a = emu_reg_read(cpu, EMU_RAX, size);
		emu_lazy(cpu, EMU_LF_SUB, size, a - b, a, b, 0);
		emu_reg_write(cpu, EMU_RDI, as, di + step);
		return 0;
	}
}

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/* The host address of `lin`, when its page is RAM in the TLB with the
 * permission bits `need`; *gpa its guest-physical address. */
static uint8_t *bulk_host(struct emu_cpu *cpu, uint64_t lin, unsigned need,
			  uint64_t *gpa)
{
	const struct emu_tlb_entry *e = emu_tlb_lookup(cpu, lin, need);

	if (!e || !e->host)
		return NULL;
	*gpa = e->gpa | (lin & 0xfff);
	return e->host + (lin & 0xfff);
}

/* Up to `max` iterations of forward REP MOVS / REP STOS with 64-bit
 * addresses in 64-bit mode (see BULK above), RSI/RDI/RCX updated.
 * Returns the iterations done: 0 when the next element needs the
 * per-element path. */
static uint64_t rep_bulk(struct emu_cpu *cpu, const struct emu_insn *in,
			 unsigned size, uint64_t max)
{
	bool user = cpu->cpl == 3;
	uint64_t di = cpu->gpr[EMU_RDI], n, bytes, gd, gs;
	uint8_t *d;

	if (!canonical(di))
		return 0;
	n = (0x1000 - (di & 0xfff)) / size;
	if (in->op == EMU_OP_MOVS) {
		uint64_t sl = cpu->gpr[EMU_RSI];
		const uint8_t *src;

		if (in->seg == EMU_SEG_FS || in->seg == EMU_SEG_GS)
			sl += cpu->seg[in->seg].base;
		if (!canonical(sl))
			return 0;
		if ((0x1000 - (sl & 0xfff)) / size < n)
			n = (0x1000 - (sl & 0xfff)) / size;
		if (n > max)
			n = max;
		if (n == 0)
			return 0;
		src = bulk_host(cpu, sl, emu_tlb_need(EMU_ACC_READ, user), &gs);
		d = src ? bulk_host(cpu, di, emu_tlb_need(EMU_ACC_WRITE, user),
				    &gd) : NULL;
		if (!d)
			return 0;
		bytes = n * size;
		if (d > src && d < src + bytes) {
			/* Forward, element by element: what was just
			 * written is read again, as the loop would. */
			for (uint64_t i = 0; i < bytes; i += size)
				memmove(d + i, src + i, size);
		} else {
			memmove(d, src, bytes);
		}
		cpu->gpr[EMU_RSI] += bytes;
	} else {
		uint64_t v = cpu->gpr[EMU_RAX];

		if (n > max)
			n = max;
		if (n == 0)
			return 0;
		d = bulk_host(cpu, di, emu_tlb_need(EMU_ACC_WRITE, user), &gd);
		if (!d)
			return 0;
		bytes = n * size;
		if (size == 1 || v == (v & 0xff) * (~0ull / 0xff & emu_mask(size)))
			memset(d, (int)(v & 0xff), bytes); /* all bytes alike */
		else
			for (uint64_t i = 0; i < bytes; i += size)
				memcpy(d + i, &v, size);
	}
	emu_code_note_write(cpu, gd, (unsigned)bytes);
	cpu->gpr[EMU_RDI] += bytes;
	cpu->gpr[EMU_RCX] -= n;
	return n;
}

EMU_HANDLER(string)
{
	unsigned size = in->opsize, as = in->addrsize;
	bool cmp = in->op == EMU_OP_CMPS || in->op == EMU_OP_SCAS;
	bool bulk = cpu->mode == EMU_MODE_LONG64 && as == 8 &&
		    !(cpu->rflags & EMU_FL_DF) &&
		    (in->op == EMU_OP_MOVS || in->op == EMU_OP_STOS);
	uint64_t c;
	int r;

	if (!(in->prefixes & (EMU_PFX_REP | EMU_PFX_REPNE)))
		return string_once(cpu, in, size);
	for (unsigned i = 0; i < EMU_REP_BATCH; i++) {
		c = emu_reg_read(cpu, EMU_RCX, as);
		if (c == 0)
			return 0;
		if (bulk) {
			uint64_t n = rep_bulk(cpu, in, size,
					      c < EMU_REP_BATCH - i ? c :
					      EMU_REP_BATCH - i);

			if (n) {
				i += (unsigned)n - 1;
				continue;
			}
		}
		r = string_once(cpu, in, size);
		if (r)
			return r;
		emu_reg_write(cpu, EMU_RCX, as, c - 1);
		if (cmp) {
			bool zf = cpu->lf.res == 0;

			if ((in->prefixes & EMU_PFX_REPNE) ? zf : !zf)
				return 0;
		}
	}
	if (emu_reg_read(cpu, EMU_RCX, as) != 0)
		*next = cpu->rip; /* not done: come back to it */
	return 0;
}
