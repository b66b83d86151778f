/*
 * blocks.c - the software CPU's decoded-block cache.
 *
 * Decoding (Zydis, then our compact form) costs several times more than
 * executing a typical instruction, and guests spend their time in loops, so
 * each instruction is decoded once per "block" and the block is replayed
 * from the cache: emu_run_blocks() looks up CS:RIP's block and runs its
 * instructions one after the other.  In 64-bit mode the block runs
 * threaded (blocks.h): each slot's handler, chosen when the block was
 * built (a specialised one from exec_fast.c for the hottest register/
 * immediate/memory forms, else emu_t_generic() around the handler
 * emu_step() uses), tail-calls the next one; the legacy modes go through
 * the generic handlers with the CS-limit and interrupt-shadow checks per
 * instruction.
 *
 * KEY.  A block is keyed by the guest-physical address of its first byte
 * plus what changes decoding: the machine mode (real, 16/32-bit protected,
 * 64-bit) and the stack-address size.  The decoded form holds no absolute
 * address (branch targets and RIP-relative operands are displacements
 * resolved at execution), so the same physical code mapped at several
 * linear addresses shares blocks, and a CR3 switch does not invalidate
 * anything: each lookup translates CS:RIP (through the TLB) first.
 *
 * SHAPE.  A block holds up to EMU_BLOCK_MAX_INSNS instructions inside one
 * 4 KiB page (and inside the CS limit in the legacy modes).  It ends after
 *   - a branch (JMP, Jcc, CALL, RET, LOOP, JrCXZ): the run goes on with
 *     the target's block;
 *   - a "system" instruction: anything that may change the mode, the
 *     paging structures' meaning, RFLAGS.IF/TF, or touch a device through
 *     a port (I/O, MSRs, control registers, POPF, segment loads, HLT,
 *     interrupts, anything we do not know).  The run then returns to the
 *     vCPU loop, which checks vm_stopping() and interrupts before the next
 *     instruction - so a write to the debug-exit port or an STI is seen
 *     right away;
 *   - an instruction that does not fit (crosses the page or the limit) or
 *     does not decode: emu_step() runs it, fetching byte by byte and
 *     raising the precise fault.
 * FOLLOWED JUMPS (64-bit mode): a JMP rel to the same page does not end
 * its block; decoding goes on at the target, and the JMP's slot passes
 * the target's RIP to the next one.  Everything in a block is in one
 * page, so one translation and one page generation still cover it.
 * While a block runs, every instruction checks that RIP went where the
 * block expects (a taken branch, a REP string instruction that retired only
 * some iterations, an exception leave the block early).
 *
 * CHAINING.  Each block remembers the two blocks that last ran after it
 * (succ[]: a jump target, the fall-through, a return site); the next lookup
 * still translates CS:RIP through the TLB, then tries those before the hash
 * table, checking the physical address, the decoding key and the page
 * generation exactly as a hash hit does.  Links die with the arena: a
 * lookup whose build flushed the cache does not write into `prev`.
 *
 * DIRECT CHAINING (64-bit mode).  The handler of a block's last
 * instruction (a branch, or the end slot) leaves through emu_t_chain(),
 * which tail-calls the next block's first handler when the block's
 * link[] for the target is valid: the link remembers the TLB slot that
 * translated the target and what it held, and the target block must
 * still match its page generation.  Nothing that changes the mode, CPL,
 * paging or IF runs inside a chain (system instructions end a block and
 * the run), so the TLB entry is all the translation check needed; the
 * chain stops when cpu->run_budget runs out, so interrupts are still
 * seen every EMU_RUN_BUDGET instructions.  Links are made by the run
 * loop after an ordinary lookup and die with the arena like succ[].
 *
 * INVALIDATION.  The VM-wide code map has, per RAM page, a "holds code"
 * byte and a 32-bit write generation.  Building a block sets the byte and
 * records the generation; a write to a page whose byte is set (the vCPU's
 * write path in mem.c through emu_code_note_write(), devices through
 * gm_note_write()/gm_write()) clears the byte and bumps the generation, so
 * every vCPU's blocks for that page become stale at once, without locks:
 * a lookup that finds a stale block decodes it again.  Pages without code
 * cost one byte load per write.  Order on both sides: the builder sets the
 * byte before it reads the generation and the bytes; the writer writes the
 * bytes, then exchanges the byte to 0 and only then bumps the generation,
 * so a block decoded from old bytes always ends up stale and a page never
 * keeps a valid block with its byte clear.  (Code modified by another
 * vCPU without synchronisation is seen "eventually", which is what x86's
 * cross-modifying-code rules allow; SDM Vol. 3A 8.1.3.)
 *
 * SELF-MODIFYING CODE.  After each instruction that may write memory
 * (may_write_mem(), decided when the block is built; in 64-bit mode the
 * storing handlers check through emu_t_smc()) the running block compares
 * its page's generation with its own: a store into the page (even into an
 * instruction later in the same block) ends the block at once, and the
 * next lookup decodes the new bytes (SDM Vol. 3A 8.1.3: stores to the
 * instruction stream take effect for the next instruction).
 *
 * MEMORY.  Blocks live in a per-vCPU arena (mmap'ed, MAP_NORESERVE: only
 * the touched part costs RAM); a stale block stays in the arena until the
 * arena is full, and then the whole cache is dropped at once (a lookup is
 * the only place that allocates, and no block is running then).  The hash
 * table is per vCPU too, so vCPU threads share nothing but the code map.
 */
#include "accel/emu/blocks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "accel/emu/emu.h"
#include "accel/emu/exec.h"
#include "accel/emu/mmu.h"
#include "core/memory.h"

#define PAGE_SIZE 4096ull
#define ARENA_SIZE (64u << 20) /* per vCPU, reserved; only what is used costs RAM */

/* ---- the VM-wide code map --------------------------------------------- */

int emu_code_map_create(const struct guest_mem *gm, struct emu_code_map **out)
{
	struct emu_code_map *m;
	uint64_t pages = 0;

	*out = NULL;
	if (gm->nr_regions < 1 || gm->nr_regions > 2)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->nr_regions = gm->nr_regions;
	for (int i = 0; i < gm->nr_regions; i++) {
		m->region[i].gpa = gm->regions[i].gpa;
		m->region[i].size = gm->regions[i].size & ~(PAGE_SIZE - 1);
		m->region[i].first_page = pages;
		pages += m->region[i].size / PAGE_SIZE;
	}
	m->nr_pages = pages;
	m->holds = calloc(pages ? pages : 1, sizeof(*m->holds));
	m->gen = calloc(pages ? pages : 1, sizeof(*m->gen));
	if (!m->holds || !m->gen) {
		emu_code_map_destroy(m);
		return -ENOMEM;
	}
	*out = m;
	return 0;
}

void emu_code_map_destroy(struct emu_code_map *m)
{
	if (!m)
		return;
	free((void *)m->holds);
	free((void *)m->gen);
	free(m);
}

void emu_code_map_invalidate(struct emu_code_map *m, uint64_t page)
{
	if (page >= m->nr_pages)
		return;
	/* Clear first, then bump: see "INVALIDATION" above. */
	if (atomic_exchange(&m->holds[page], 0)) {
		atomic_fetch_add_explicit(&m->gen[page], 1, memory_order_release);
		atomic_fetch_add_explicit(&m->invalidations, 1,
					  memory_order_relaxed);
	}
}

void emu_code_map_note_write(struct emu_code_map *m, uint64_t gpa,
			     uint64_t len)
{
	uint64_t last;

	if (!m || len == 0)
		return;
	last = gpa + len - 1;
	if (last < gpa)
		last = UINT64_MAX;
	/* Per region, so a hostile length never loops over the address
	 * space, only over RAM pages. */
	for (int i = 0; i < m->nr_regions; i++) {
		uint64_t rs = m->region[i].gpa, re, lo, hi;

		if (m->region[i].size == 0)
			continue;
		re = rs + m->region[i].size - 1;
		lo = gpa > rs ? gpa : rs;
		hi = last < re ? last : re;
		if (lo > hi)
			continue;
		for (uint64_t p = (lo - rs) / PAGE_SIZE; p <= (hi - rs) / PAGE_SIZE; p++) {
			uint64_t idx = m->region[i].first_page + p;

			if (atomic_load_explicit(&m->holds[idx],
						 memory_order_relaxed))
				emu_code_map_invalidate(m, idx);
		}
	}
}

void emu_code_map_gm_notify(void *map, uint64_t gpa, uint64_t len)
{
	emu_code_map_note_write(map, gpa, len);
}

/* ---- the per-vCPU cache ------------------------------------------------ */

int emu_blocks_create(struct emu_code_map *map, struct emu_blocks **out)
{
	struct emu_blocks *b = calloc(1, sizeof(*b));
	void *a;

	*out = NULL;
	if (!b)
		return -ENOMEM;
	a = mmap(NULL, ARENA_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a == MAP_FAILED) {
		free(b);
		return -ENOMEM;
	}
	b->map = map;
	b->arena = a;
	b->arena_size = ARENA_SIZE;
	*out = b;
	return 0;
}

void emu_blocks_destroy(struct emu_blocks *b)
{
	if (!b)
		return;
	munmap(b->arena, b->arena_size);
	free(b);
}

void emu_blocks_flush(struct emu_blocks *b)
{
	memset(b->hash, 0, sizeof(b->hash));
	memset(b->jc, 0, sizeof(b->jc));
	b->used = 0;
	b->stats.flushes++;
}

static unsigned hash_of(uint64_t gpa, unsigned mode)
{
	return (unsigned)(((gpa ^ ((uint64_t)mode << 60)) *
			   0x9e3779b97f4a7c15ull) >> 49) & (EMU_BLOCKS_HASH - 1);
}

static unsigned stack_size(const struct emu_cpu *cpu)
{
	return cpu->mode == EMU_MODE_LONG64 ? 8 :
	       (cpu->seg[EMU_SEG_SS].attr & EMU_SEG_ATTR_DB) ? 4 : 2;
}

const struct emu_block *emu_blocks_find(struct emu_blocks *bc,
					const struct emu_cpu *cpu,
					uint64_t gpa)
{
	unsigned mode = cpu->mode, stack = stack_size(cpu);

	for (struct emu_block *b = bc->hash[hash_of(gpa, mode)]; b; b = b->next)
		if (b->gpa == gpa && b->mode == mode && b->stack == stack)
			return b;
	return NULL;
}

/* How an instruction ends a block. */
enum block_end { END_NONE, END_BRANCH, END_SYSTEM };

static enum block_end insn_end(const struct emu_insn *in)
{
	switch (in->op) {
	case EMU_OP_JMP: case EMU_OP_JCC: case EMU_OP_CALL: case EMU_OP_RET:
	case EMU_OP_LOOP: case EMU_OP_LOOPE: case EMU_OP_LOOPNE:
	case EMU_OP_JRCXZ:
		return END_BRANCH;
	case EMU_OP_POPF: /* IF, TF */
	case EMU_OP_UD:
		return END_SYSTEM;
	/* System-group instructions that change nothing decoding or
	 * interrupts depend on, and touch no device. */
	case EMU_OP_FENCE: case EMU_OP_RDPMC: case EMU_OP_RDTSC:
	case EMU_OP_RDTSCP: case EMU_OP_CPUID: case EMU_OP_CMPXCHG8B:
	case EMU_OP_SHLD: case EMU_OP_SHRD: case EMU_OP_POPCNT:
	case EMU_OP_XLAT:
	/* SSE and x87: data only. */
#define EMU_SIMD_OP(mn, h) case EMU_OP_##mn:
#include "accel/emu/simd_ops.def"
#undef EMU_SIMD_OP
		break;
	default:
		if (in->op > EMU_OP_SCAS)
			return END_SYSTEM; /* not one of the integer core's */
		break;
	}
	/* MOV / POP to a segment register (MOV SS, POP SS: the shadow,
	 * the stack size), control/debug registers. */
	for (unsigned i = 0; i < in->nr_opnds && i < 3; i++)
		if (in->opnd[i].kind == EMU_OPND_SEG ||
		    in->opnd[i].kind == EMU_OPND_OTHER)
			return END_SYSTEM;
	return END_NONE;
}

/* Whether executing `in` may store to memory (conservative: anything not
 * known to touch registers only, or to only read memory, counts). */
static bool may_write_mem(const struct emu_insn *in)
{
	bool mem = false;

	if (in->op > EMU_OP_SCAS)
		return true;
	switch (in->op) {
	case EMU_OP_PUSH: case EMU_OP_PUSHF: case EMU_OP_CALL:
	case EMU_OP_MOVS: case EMU_OP_STOS: case EMU_OP_CMPS:
	case EMU_OP_SCAS: case EMU_OP_LODS: case EMU_OP_UD:
		return true;
	default:
		break;
	}
	for (unsigned i = 0; i < in->nr_opnds && i < 3; i++)
		if (in->opnd[i].kind == EMU_OPND_MEM)
			mem = true;
	if (!mem || in->op == EMU_OP_LEA || in->op == EMU_OP_NOP)
		return false;
	switch (in->op) {
	/* Memory only as a source. */
	case EMU_OP_MOV: case EMU_OP_MOVZX: case EMU_OP_MOVSX:
	case EMU_OP_MOVSXD: case EMU_OP_CMOV: case EMU_OP_ADD:
	case EMU_OP_ADC: case EMU_OP_SUB: case EMU_OP_SBB: case EMU_OP_AND:
	case EMU_OP_OR: case EMU_OP_XOR: case EMU_OP_IMUL:
		return in->opnd[0].kind == EMU_OPND_MEM;
	case EMU_OP_CMP: case EMU_OP_TEST: case EMU_OP_BT:
		return false;
	default:
		return true;
	}
}

static bool canonical(uint64_t lin)
{
	return (uint64_t)((int64_t)(lin << 16) >> 16) == lin;
}

/* ---- threaded handlers (64-bit blocks) -------------------------------- */

/* The end slot: every instruction of the block retired; t_end_sys after
 * a system instruction, which ends the run too. */
static int t_end(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip)
{
	return emu_t_chain(cpu, s - 1, rip);
}

static int t_end_sys(struct emu_cpu *cpu, const struct emu_slot *s,
		     uint64_t rip)
{
	cpu->rip = rip;
	cpu->run_left = s;
	return 0;
}

static unsigned jc_index(uint64_t rip)
{
	return (unsigned)(rip ^ (rip >> 12)) & (EMU_BLOCKS_JC - 1);
}

/* The valid 64-bit block the jump cache holds for linear `rip`, or NULL:
 * the TLB must still translate `rip` to its page, with `xneed`. */
static struct emu_block *jc_find(struct emu_cpu *cpu, struct emu_blocks *bc,
				 uint64_t rip, unsigned xneed)
{
	const struct emu_jc *j = &bc->jc[jc_index(rip)];
	struct emu_block *b = j->b;
	const struct emu_tlb_entry *e = &cpu->tlb.e[emu_tlb_index(rip)];

	if (j->rip != rip || !b || e->tag != ((rip & ~0xfffull) | 1) ||
	    e->gpa != (b->gpa & ~0xfffull) || !(e->perm & xneed) ||
	    atomic_load_explicit(&bc->map->gen[b->page],
				 memory_order_acquire) != b->gen)
		return NULL;
	return b;
}

static void link_blocks(struct emu_cpu *cpu, struct emu_block *prev,
			struct emu_block *b);

int emu_t_chain_jc(struct emu_cpu *cpu, uint64_t rip)
{
	struct emu_block *b = cpu->run_block, *nb;

	if (cpu->run_budget <= b->n)
		return 0;
	nb = jc_find(cpu, cpu->blocks, rip, cpu->run_xneed);
	if (!nb)
		return 0;
	link_blocks(cpu, b, nb);
	cpu->run_budget -= b->n;
	cpu->run_chained += b->n;
	cpu->run_links++;
	cpu->run_block = nb;
	cpu->run_gen = &cpu->blocks->map->gen[nb->page];
	cpu->run_gen_want = nb->gen;
	return nb->slot[0].h(cpu, nb->slot, rip);
}

/* Remember in `prev` (a 64-bit block whose last instruction retired) that
 * it led to `b` at CS:RIP, for emu_t_chain(). */
static void link_blocks(struct emu_cpu *cpu, struct emu_block *prev,
			struct emu_block *b)
{
	uint64_t rip = cpu->rip;
	unsigned i = emu_tlb_index(rip);
	const struct emu_tlb_entry *e = &cpu->tlb.e[i];
	struct emu_link *l;

	if (b->mode != EMU_MODE_LONG64 ||
	    e->tag != ((rip & ~0xfffull) | 1) ||
	    e->gpa != (b->gpa & ~0xfffull))
		return;
	l = prev->link[0].rip == rip ? &prev->link[0] :
	    prev->link[1].rip == rip ? &prev->link[1] :
	    &prev->link[prev->link_next ^= 1];
	l->rip = rip;
	l->b = b;
	l->tag = e->tag;
	l->page = e->gpa;
	l->gen = &cpu->code->gen[b->page];
	l->want = b->gen;
	l->tlb_index = i;
}

/* An op without a handler: emu_execute() raises (and counts) the #UD. */
static int t_ud(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip)
{
	cpu->rip = rip;
	cpu->run_left = s;
	return emu_execute(cpu, &s->in);
}

/* emu_t_generic() with `smc`: whether to compare the page generation
 * afterwards (the instruction may store). */
static inline __attribute__((always_inline)) int
generic(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip, bool smc)
{
	uint64_t next = rip + s->in.len, nx = next;
	int r;

	/* Some handlers read it: REP string ops and x87 FIP, delivery. */
	cpu->rip = rip;
	r = emu_handlers[s->in.op](cpu, &s->in, &nx);
	if (__builtin_expect(r != 0, 0)) {
		if (r == EMU_HALTED) { /* RIP is past HLT while it sleeps */
			emu_t_leave(cpu, s, nx);
			return r;
		}
		cpu->run_left = s;
		return emu_count_exc(cpu, r);
	}
	if (__builtin_expect(nx != next, 0))
		return emu_t_leave(cpu, s, nx); /* branched, or REP paused */
	if (smc && __builtin_expect(emu_t_smc(cpu), 0))
		return emu_t_smc_exit(cpu, s, next);
	EMU_T_NEXT(cpu, s, next);
}

int emu_t_generic(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip)
{
	return generic(cpu, s, rip, true);
}

/* emu_t_generic() for instructions known not to store. */
static int t_generic_r(struct emu_cpu *cpu, const struct emu_slot *s,
		       uint64_t rip)
{
	return generic(cpu, s, rip, false);
}

int emu_t_smc_exit(struct emu_cpu *cpu, const struct emu_slot *s,
		   uint64_t next)
{
	if (cpu->blocks)
		cpu->blocks->stats.smc_exits++;
	return emu_t_leave(cpu, s, next);
}

int emu_t_run_one(struct emu_cpu *cpu, emu_thandler h,
		  const struct emu_insn *in)
{
	static const _Atomic uint32_t gen0;
	struct emu_block *b = calloc(1, sizeof(*b) + 2 * sizeof(b->slot[0]));
	int r;

	if (!b)
		return -ENOMEM;
	b->n = 1;
	b->system_end = true;
	b->slot[0].h = h;
	b->slot[0].in = *in;
	b->slot[1].h = t_end_sys;
	emu_tlb_check(cpu);
	cpu->run_gen = &gen0;
	cpu->run_gen_want = 0;
	cpu->run_block = b;
	r = h(cpu, b->slot, cpu->rip);
	cpu->run_block = NULL;
	free(b);
	return r;
}

/* A JMP rel whose target lies in the same page, in 64-bit mode: the
 * target's offset in the page (`end`: the page offset after the JMP),
 * else -1. */
static int64_t jmp_in_page(const struct emu_cpu *cpu, const struct emu_insn *in,
			   uint64_t end)
{
	int64_t to;

	if (cpu->mode != EMU_MODE_LONG64 || in->op != EMU_OP_JMP ||
	    in->nr_opnds < 1 || in->opnd[0].kind != EMU_OPND_REL ||
	    in->opsize != 8 || (in->prefixes & EMU_PFX_LOCK))
		return -1;
	to = (int64_t)end + in->opnd[0].val;
	return to >= 0 && to < (int64_t)PAGE_SIZE ? to : -1;
}

/* A followed JMP: the next slot is its target. */
static int t_jmp_in(struct emu_cpu *cpu, const struct emu_slot *s,
		    uint64_t rip)
{
	EMU_T_NEXT(cpu, s, rip + s->in.len + (uint64_t)s->in.opnd[0].val);
}

/* Decode a block at gpa (CS:RIP's physical address) into the arena. */
static struct emu_block *build(struct emu_cpu *cpu, struct emu_blocks *bc,
			       uint64_t gpa, unsigned stack)
{
	struct emu_insn tmp[EMU_BLOCK_MAX_INSNS];
	bool dead[EMU_BLOCK_MAX_INSNS], follow[EMU_BLOCK_MAX_INSNS];
	const uint64_t b_gpa = gpa;
	struct emu_code_map *m = bc->map;
	const uint8_t *host;
	struct emu_block *b;
	uint64_t avail, pos = 0;
	int64_t page;
	uint32_t gen;
	unsigned n = 0, live;
	size_t size;

	page = emu_code_page(m, gpa);
	host = gm_ptr(cpu->mem, gpa & ~(PAGE_SIZE - 1), PAGE_SIZE);
	if (page < 0 || !host)
		return NULL;
	host += gpa & (PAGE_SIZE - 1);
	avail = PAGE_SIZE - (gpa & (PAGE_SIZE - 1));
	if (cpu->mode != EMU_MODE_LONG64) {
		/* The caller checked rip <= limit. */
		uint64_t room = (uint64_t)cpu->seg[EMU_SEG_CS].limit - cpu->rip + 1;

		if (room < avail)
			avail = room;
	}
	atomic_store(&m->holds[page], 1);
	gen = atomic_load(&m->gen[page]);
	while (n < EMU_BLOCK_MAX_INSNS && pos < avail) {
		unsigned len = avail - pos < 15 ? (unsigned)(avail - pos) : 15;
		int64_t to;

		if (emu_decode(cpu->mode, stack, host + pos, len, &tmp[n]))
			break; /* emu_step() handles it, with the fault */
		pos += tmp[n].len;
		to = jmp_in_page(cpu, &tmp[n], (gpa & (PAGE_SIZE - 1)) + pos);
		follow[n] = to >= 0;
		if (follow[n]) {
			/* Decoding goes on at the target (FOLLOWED JUMPS). */
			host += to - (int64_t)(gpa & (PAGE_SIZE - 1));
			avail = PAGE_SIZE - (uint64_t)to;
			pos = 0;
			gpa = (gpa & ~(PAGE_SIZE - 1)) | (uint64_t)to;
			n++;
			continue;
		}
		if (insn_end(&tmp[n++]) != END_NONE)
			break;
	}
	gpa = b_gpa;
	if (n == 0)
		return NULL;
	size = (sizeof(*b) + (n + 1) * sizeof(b->slot[0]) + 63) & ~(size_t)63;
	if (bc->used + size > bc->arena_size)
		emu_blocks_flush(bc);
	b = (struct emu_block *)(bc->arena + bc->used);
	bc->used += size;
	b->gpa = gpa;
	b->page = (uint64_t)page;
	b->gen = gen;
	b->mode = (uint8_t)cpu->mode;
	b->stack = (uint8_t)stack;
	b->n = (uint8_t)n;
	b->hits = 0;
	b->succ[0] = b->succ[1] = NULL;
	b->succ_next = 0;
	memset(b->link, 0, sizeof(b->link));
	b->link_next = 0;
	b->system_end = insn_end(&tmp[n - 1]) == END_SYSTEM;
	live = EMU_FL_STATUS; /* FLAG LIVENESS in blocks.h */
	for (unsigned i = n; i-- > 0;) {
		unsigned reads, kill, touch;

		emu_flags_effect(&tmp[i], &reads, &kill, &touch);
		dead[i] = touch && !(touch & live);
		live = (live & ~kill) | reads;
	}
	for (unsigned i = 0; i < n; i++) {
		emu_thandler f = emu_fast_handler(&tmp[i], cpu->mode, dead[i]);

		b->slot[i].in = tmp[i];
		if (follow[i])
			f = t_jmp_in;
		if (!f)
			f = tmp[i].op < EMU_OP_COUNT && emu_handlers[tmp[i].op] ?
			    (may_write_mem(&tmp[i]) ? emu_t_generic :
						      t_generic_r) :
			    t_ud;
		b->slot[i].h = f;
	}
	if (n >= 2) {
		emu_thandler f = emu_fast_fused(&tmp[n - 2], &tmp[n - 1],
						cpu->mode);

		if (f)
			b->slot[n - 2].h = f;
	}
	memset(&b->slot[n].in, 0, sizeof(b->slot[n].in));
	b->slot[n].h = b->system_end ? t_end_sys : t_end;
	b->next = bc->hash[hash_of(gpa, cpu->mode)];
	bc->hash[hash_of(gpa, cpu->mode)] = b;
	bc->stats.builds++;
	return b;
}

/* The valid block at CS:RIP, or NULL when emu_step() must run it.  `prev`
 * (may be NULL) is the block that ran just before: its succ[] links are
 * tried first, and the block found is linked there. */
static struct emu_block *lookup(struct emu_cpu *cpu, struct emu_blocks *bc,
				struct emu_block *prev)
{
	const struct emu_segment *cs = &cpu->seg[EMU_SEG_CS];
	unsigned mode = cpu->mode, stack = stack_size(cpu);
	const struct emu_tlb_entry *e;
	struct emu_block **pp, *b;
	uint64_t lin, gpa, flushes;

	if (cpu->mode == EMU_MODE_LONG64) {
		lin = cpu->rip;
		if (!canonical(lin))
			return NULL;
		emu_tlb_check(cpu);
		b = jc_find(cpu, bc, lin,
			    emu_tlb_need(EMU_ACC_EXEC, cpu->cpl == 3));
		if (b) {
			b->hits++;
			bc->stats.hits++;
			goto link;
		}
	} else {
		if (cpu->rip > cs->limit)
			return NULL;
		lin = (cs->base + cpu->rip) & 0xffffffffull;
	}
	e = emu_tlb_lookup(cpu, lin, emu_tlb_need(EMU_ACC_EXEC, cpu->cpl == 3));
	if (e)
		gpa = e->gpa | (lin & 0xfff);
	else if (emu_translate(cpu, lin, EMU_ACC_EXEC, &gpa))
		return NULL; /* emu_step() raises the fault */
	if (prev) {
		for (int i = 0; i < 2; i++) {
			b = prev->succ[i];
			if (b && b->gpa == gpa && b->mode == mode &&
			    b->stack == stack &&
			    atomic_load_explicit(&bc->map->gen[b->page],
						 memory_order_acquire) == b->gen) {
				b->hits++;
				bc->stats.hits++;
				bc->stats.chained++;
				return b;
			}
		}
	}
	for (pp = &bc->hash[hash_of(gpa, mode)]; *pp; pp = &(*pp)->next) {
		b = *pp;
		if (b->gpa != gpa || b->mode != mode || b->stack != stack)
			continue;
		if (atomic_load_explicit(&bc->map->gen[b->page],
					 memory_order_acquire) == b->gen) {
			b->hits++;
			bc->stats.hits++;
			goto link;
		}
		*pp = b->next; /* stale: unlink, decode again */
		bc->stats.stale++;
		break;
	}
	flushes = bc->stats.flushes;
	b = build(cpu, bc, gpa, stack);
	if (!b || bc->stats.flushes != flushes)
		return b; /* a flush dropped `prev` with everything else */
link:
	if (mode == EMU_MODE_LONG64) {
		bc->jc[jc_index(lin)].rip = lin;
		bc->jc[jc_index(lin)].b = b;
	}
	if (prev) {
		prev->succ[prev->succ_next] = b;
		prev->succ_next ^= 1;
	}
	return b;
}

/* emu_execute() for a cached instruction whose next RIP (wrapped) the
 * runner already knows, without the call: the interrupt-shadow case, the
 * rare results and unknown ops go the full way. */
static inline int execute(struct emu_cpu *cpu, const struct emu_insn *in,
			  uint64_t next)
{
	emu_handler h = in->op < EMU_OP_COUNT ? emu_handlers[in->op] : NULL;
	int r;

	if (__builtin_expect(!h || cpu->int_shadow, 0))
		return emu_execute(cpu, in);
	r = h(cpu, in, &next);
	if (__builtin_expect(r != 0, 0)) {
		if (r != EMU_HALTED)
			return emu_count_exc(cpu, r);
		/* HLT retired: RIP is past it while the CPU sleeps. */
	}
	cpu->rip = next;
	cpu->stats.insns++;
	return r;
}

/* run_block() outside 64-bit mode: every instruction checks the CS limit
 * and the interrupt shadow, and goes through the generic handlers. */
static int run_block_legacy(struct emu_cpu *cpu, struct emu_blocks *bc,
			    const struct emu_block *b, unsigned *done,
			    bool *stop)
{
	const _Atomic uint32_t *gen = &bc->map->gen[b->page];
	uint64_t mask = cpu->mode == EMU_MODE_LONG64 ? ~0ull :
			cpu->mode == EMU_MODE_PROT32 ? 0xffffffffull : 0xffffull;
	bool legacy = cpu->mode != EMU_MODE_LONG64;
	uint64_t limit = cpu->seg[EMU_SEG_CS].limit;
	uint64_t rip = cpu->rip;
	int r;

	for (unsigned i = 0; i < b->n; i++) {
		const struct emu_insn *in = &b->slot[i].in;
		uint64_t next = (rip + in->len) & mask;

		if (legacy && rip + in->len - 1 > limit) {
			/* CS changed limit under the block: the slow path
			 * raises #GP exactly as the fetch would. */
			*stop = true;
			bc->stats.steps++;
			r = emu_step(cpu);
			if (r == 0 || r == EMU_HALTED)
				(*done)++;
			return r;
		}
		r = execute(cpu, in, next);
		if (r) {
			if (r == EMU_HALTED)
				(*done)++;
			return r;
		}
		(*done)++;
		if (cpu->rip != next)
			return 0; /* branched, or a REP instruction paused */
		if (atomic_load_explicit(gen, memory_order_relaxed) != b->gen) {
			bc->stats.smc_exits++;
			return 0; /* our page was written: decode again */
		}
		rip = next;
	}
	if (b->system_end)
		*stop = true;
	return 0;
}

/* Run block `b` from its first instruction (CS:RIP).  Returns the first
 * non-zero result, or 0; *stop says the run must return to the vCPU loop
 * (a system instruction ended the block).  In 64-bit mode the block runs
 * threaded (see blocks.h) without emu_execute(): the interrupt shadow
 * (set only by a system instruction, which ends its block) is handled for
 * the first instruction, and cpu->stats.insns is added once on the way
 * out. */
static int run_block(struct emu_cpu *cpu, struct emu_blocks *bc,
		     struct emu_block *b, unsigned budget, unsigned *done,
		     bool *stop)
{
	const struct emu_slot *first = b->slot;
	unsigned cnt, off;
	int r;

	cpu->run_block = b;
	if (cpu->mode != EMU_MODE_LONG64)
		return run_block_legacy(cpu, bc, b, done, stop);
	emu_tlb_check(cpu);
	cpu->run_gen = &bc->map->gen[b->page];
	cpu->run_gen_want = b->gen;
	if (__builtin_expect(cpu->int_shadow, 0)) {
		/* Through emu_execute(), which ends the shadow. */
		uint64_t next = cpu->rip + first->in.len;

		r = emu_execute(cpu, &first->in);
		if (r) {
			if (r == EMU_HALTED)
				(*done)++;
			return r;
		}
		(*done)++;
		if (cpu->rip != next)
			return 0;
		if (emu_t_smc(cpu)) {
			bc->stats.smc_exits++;
			return 0;
		}
		first++;
		if (first == &b->slot[b->n]) {
			*stop = b->system_end;
			cpu->run_left = first;
			return 0;
		}
	}
	off = (unsigned)(first - b->slot);
	cpu->run_budget = budget;
	cpu->run_chained = 0;
	cpu->run_links = 0;
	cpu->run_xneed = emu_tlb_need(EMU_ACC_EXEC, cpu->cpl == 3);
	r = first->h(cpu, first, cpu->rip);
	b = cpu->run_block; /* the last of the chain */
	cnt = cpu->run_chained - off +
	      (unsigned)((const struct emu_slot *)cpu->run_left - b->slot);
	cpu->stats.insns += cnt;
	*done += cnt;
	bc->stats.hits += cpu->run_links;
	bc->stats.linked += cpu->run_links;
	/* After the last instruction, whether it branched or not. */
	if (r == 0 && cpu->run_left == &b->slot[b->n] && b->system_end)
		*stop = true;
	return r;
}

int emu_run_blocks(struct emu_cpu *cpu, unsigned budget, unsigned *ran)
{
	struct emu_blocks *bc = cpu->blocks;
	struct emu_block *prev = NULL;
	unsigned done = 0;
	bool stop = false, led = false;
	int r = 0;

	while (done < budget && !stop && !cpu->halted) {
		struct emu_block *b = NULL;

		if (bc && !bc->disabled) {
			uint64_t flushes = bc->stats.flushes;

			b = lookup(cpu, bc, prev);
			if (bc->stats.flushes != flushes)
				prev = NULL; /* dropped with the arena */
		}
		if (b && prev && led)
			link_blocks(cpu, prev, b);
		if (!b) {
			if (bc)
				bc->stats.steps++;
			r = emu_step(cpu);
			if (r == 0 || r == EMU_HALTED)
				done++;
			/* Unknown instruction: back to the vCPU loop. */
			stop = true;
		} else {
			r = run_block(cpu, bc, b, budget - done, &done, &stop);
			/* The last block run (chains end elsewhere) and
			 * whether its last instruction led here. */
			prev = cpu->run_block;
			led = prev->mode == EMU_MODE_LONG64 &&
			      cpu->run_left == &prev->slot[prev->n];
		}
		if (r)
			break;
	}
	if (ran)
		*ran = done;
	return r;
}
