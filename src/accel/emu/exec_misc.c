/*
 * exec_misc.c - CPUID, CMPXCHG8B / CMPXCHG16B, SHLD / SHRD, POPCNT, XLAT
 * (SDM Vol. 2A/2B; the CPU model CPUID reports is in cpuid.c).
 *
 * CMPXCHG8B/16B compare EDX:EAX (RDX:RAX) with the memory operand and
 * store ECX:EBX (RCX:RBX) if equal, else load the operand into EDX:EAX
 * (RDX:RAX); ZF tells which, the other flags are kept.  On aligned guest
 * RAM the compare-and-store is one host atomic (a host cmpxchg8b /
 * LOCK CMPXCHG16B), with or without a LOCK prefix: atomicity costs nothing
 * more and other vCPU threads then always see x86 semantics.  CMPXCHG16B
 * on a linear address not 16-byte aligned is #GP(0).  A misaligned
 * CMPXCHG8B or one on MMIO falls back to read, compare, write (not atomic:
 * a host split lock is worse, see mem.c); hardware writes the old value
 * back when the comparison fails, which this fallback skips so an MMIO
 * register does not see a spurious write -- the write permission is still
 * checked first (emu_mem_host_ptr), so the fault behaviour is the
 * hardware's.
 *
 * SHLD/SHRD: the count is masked to 5 bits (6 with REX.W); a zero count
 * changes no flag.  CF is the last bit shifted out, OF (defined for count
 * 1) is set when the sign changed, SF/ZF/PF follow the result, AF is
 * undefined (cleared here).  A 16-bit operand with a count above 16 has
 * an undefined result (SDM); this implementation shifts through the
 * 32-bit concatenation, which is what matters: no crash, some value.
 *
 * POPCNT: ZF = (source == 0), CF/OF/SF/AF/PF cleared.  TZCNT/LZCNT are
 * not here: with BMI1/ABM hidden they execute as BSF/BSR (decode.c).
 *
 * XLAT: AL = [seg:rBX + AL] at the address size (DS or the override).
 */
#include "accel/emu/emu_sys.h"
#include "accel/emu/exec.h"

EMU_HANDLER(cpuid)
{
	uint32_t out[4];

	emu_cpuid(cpu, (uint32_t)cpu->gpr[EMU_RAX], (uint32_t)cpu->gpr[EMU_RCX],
		  out);
	emu_reg_write(cpu, EMU_RAX, 4, out[0]);
	emu_reg_write(cpu, EMU_RBX, 4, out[1]);
	emu_reg_write(cpu, EMU_RCX, 4, out[2]);
	emu_reg_write(cpu, EMU_RDX, 4, out[3]);
	return 0;
}

/* Host LOCK CMPXCHG16B; lo and hi get the old value.  True if equal. */
static bool cas16(void *p, uint64_t *lo, uint64_t *hi, uint64_t nlo,
		  uint64_t nhi)
{
	bool ok;

	__asm__ volatile("lock cmpxchg16b %1"
			 : "=@ccz"(ok), "+m"(*(volatile unsigned __int128 *)p),
			   "+a"(*lo), "+d"(*hi)
			 : "b"(nlo), "c"(nhi)
			 : "memory");
	return ok;
}

/* The linear address of a memory operand (for alignment checks). */
static uint64_t linear(const struct emu_cpu *cpu, const struct emu_opnd *o,
		       uint64_t off)
{
	if (cpu->mode == EMU_MODE_LONG64)
		return ((o->seg == EMU_SEG_FS || o->seg == EMU_SEG_GS) ?
			cpu->seg[o->seg].base : 0) + off;
	return (cpu->seg[o->seg].base + off) & 0xffffffffull;
}

EMU_HANDLER(cmpxchg8b)
{
	const struct emu_opnd *o = &in->opnd[0];
	unsigned size = o->size, half = size / 2;
	uint64_t off, lo, hi, nlo, nhi, m = emu_mask(half);
	void *host;
	bool ok;
	int r;

	if (o->kind != EMU_OPND_MEM || (size != 8 && size != 16))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	off = emu_ea(cpu, in, o, *next);
	if (size == 16 && (linear(cpu, o, off) & 15))
		return emu_raise(cpu, EMU_VEC_GP, true, 0);
	lo = cpu->gpr[EMU_RAX] & m;
	hi = cpu->gpr[EMU_RDX] & m;
	nlo = cpu->gpr[EMU_RBX] & m;
	nhi = cpu->gpr[EMU_RCX] & m;
	r = emu_mem_host_ptr(cpu, o->seg, off, size, &host);
	if (r)
		return r;
	if (host && size == 16) {
		ok = cas16(host, &lo, &hi, nlo, nhi);
	} else if (host) {
		uint64_t exp = lo | (hi << 32);

		ok = __atomic_compare_exchange_n((uint64_t *)host, &exp,
						 nlo | (nhi << 32), false,
						 __ATOMIC_SEQ_CST,
						 __ATOMIC_SEQ_CST);
		lo = exp & m;
		hi = exp >> 32;
	} else {
		uint64_t mlo, mhi;

		r = emu_mem_read(cpu, o->seg, off, half, &mlo);
		if (!r)
			r = emu_mem_read(cpu, o->seg, off + half, half, &mhi);
		if (r)
			return r;
		ok = mlo == lo && mhi == hi;
		if (ok) {
			if (size == 16) {
				r = emu_mem_write(cpu, o->seg, off, 8, nlo);
				if (!r)
					r = emu_mem_write(cpu, o->seg, off + 8,
							  8, nhi);
			} else {
				r = emu_mem_write(cpu, o->seg, off, 8,
						  nlo | (nhi << 32));
			}
			if (r)
				return r;
		}
		lo = mlo;
		hi = mhi;
	}
	if (!ok) {
		emu_reg_write(cpu, EMU_RAX, half, lo);
		emu_reg_write(cpu, EMU_RDX, half, hi);
	}
	emu_flags_update(cpu, EMU_FL_ZF, ok ? EMU_FL_ZF : 0);
	return 0;
}

/* SHLD (left) / SHRD: d = destination, c = count (masked, > 0), s = the
 * source register. */
static uint64_t shxd(struct emu_cpu *cpu, unsigned size, uint64_t d,
		     uint64_t c, uint64_t s, bool left)
{
	unsigned bits = size * 8;
	uint64_t m = emu_mask(size), res, cf;

	d &= m;
	s &= m;
	if (size == 2 && c > 16) {
		/* Undefined result: shift through d:s as 32 bits. */
		uint64_t w = left ? (d << 16) | s : (s << 16) | d;

		w = left ? (w << (c - 16)) | (w >> (48 - c)) :
			   (w >> (c - 16)) | (w << (48 - c));
		res = (left ? w >> 16 : w) & m;
		cf = left ? (d >> (32 - c)) & 1 : (s >> (c - 17)) & 1;
	} else if (c == bits) {
		/* 16-bit count 16: the source moves in whole. */
		res = s;
		cf = left ? d & 1 : (d >> 15) & 1;
	} else if (left) {
		res = ((d << c) | (s >> (bits - c))) & m;
		cf = (d >> (bits - c)) & 1;
	} else {
		res = ((d >> c) | (s << (bits - c))) & m;
		cf = (d >> (c - 1)) & 1;
	}
	emu_lazy(cpu, EMU_LF_LOGIC, size, res, res, 0, 0);
	emu_flags_update(cpu, EMU_FL_CF | EMU_FL_OF,
			 (cf ? EMU_FL_CF : 0) |
			 ((emu_msb(res, size) ^ emu_msb(d, size)) ? EMU_FL_OF
								  : 0));
	return res;
}

static uint64_t f_shld(struct emu_cpu *cpu, unsigned size, uint64_t old,
		       uint64_t c, uint64_t aux)
{
	return c ? shxd(cpu, size, old, c, aux, true) : old;
}

static uint64_t f_shrd(struct emu_cpu *cpu, unsigned size, uint64_t old,
		       uint64_t c, uint64_t aux)
{
	return c ? shxd(cpu, size, old, c, aux, false) : old;
}

/* SHLD/SHRD r/m, r, imm8/CL. */
EMU_HANDLER(shxd)
{
	const struct emu_opnd *d = &in->opnd[0];
	unsigned size = d->size;
	uint64_t src, count;
	int r;

	if (in->nr_opnds != 3 || in->opnd[1].kind != EMU_OPND_GPR ||
	    (size != 2 && size != 4 && size != 8))
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	src = emu_reg_read(cpu, in->opnd[1].reg, size);
	r = emu_opnd_read(cpu, in, &in->opnd[2], 1, *next, &count);
	if (r)
		return r;
	count &= size == 8 ? 63 : 31;
	return emu_rmw(cpu, in, d, size, count, src, *next,
		       in->op == EMU_OP_SHLD ? f_shld : f_shrd, true, NULL);
}

EMU_HANDLER(popcnt)
{
	unsigned size = in->opnd[0].size;
	uint64_t v;
	int r;

	if (in->nr_opnds != 2 || in->opnd[0].kind != EMU_OPND_GPR)
		return emu_raise(cpu, EMU_VEC_UD, false, 0);
	r = emu_opnd_read(cpu, in, &in->opnd[1], size, *next, &v);
	if (r)
		return r;
	emu_reg_write(cpu, in->opnd[0].reg, size,
		      (uint64_t)__builtin_popcountll(v & emu_mask(size)));
	emu_flags_update(cpu, EMU_FL_STATUS, v ? 0 : EMU_FL_ZF);
	return 0;
}

EMU_HANDLER(xlat)
{
	unsigned as = in->addrsize;
	uint64_t off, v;
	int r;

	off = ((cpu->gpr[EMU_RBX] & emu_mask(as)) + (cpu->gpr[EMU_RAX] & 0xff)) &
	      emu_mask(as);
	r = emu_mem_read(cpu, in->seg, off, 1, &v);
	if (r)
		return r;
	emu_reg_write(cpu, EMU_RAX, 1, v);
	return 0;
}
