/*
 * blocks.h - the software CPU's decoded-block cache and the VM-wide map of
 * guest RAM pages that hold decoded code.  Private to accel/emu; design
 * notes at the top of blocks.c.
 *
 *   - One `struct emu_code_map` per VM (accel.c creates it): for every 4 KiB
 *     page of guest RAM a "holds code" byte and a write generation.  Any
 *     write to a page whose byte is set clears the byte and bumps the
 *     generation; a cached block remembers the generation it was decoded
 *     under and is stale once it differs.  The vCPU's own writes report
 *     through emu_code_note_write() (mem.c), everything else through
 *     gm_note_write() (core/memory.h) -> emu_code_map_gm_notify().
 *   - One `struct emu_blocks` per vCPU (cpu->blocks): blocks of decoded
 *     instructions keyed by the guest-physical address of the first one and
 *     the decoding mode; run with emu_run_blocks().
 */
#ifndef KVMM_ACCEL_EMU_BLOCKS_H
#define KVMM_ACCEL_EMU_BLOCKS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accel/emu/cpu.h"
#include "accel/emu/decode.h"
#include "accel/emu/exec.h"

struct guest_mem;

/* Most instructions in one block (a block also ends at a branch, a system
 * instruction, an undecodable instruction or the end of its page). */
#define EMU_BLOCK_MAX_INSNS 32

struct emu_code_map {
	_Atomic uint8_t *holds;   /* per page: some vCPU cached code from it */
	_Atomic uint32_t *gen;    /* per page: bumped when code was written */
	uint64_t nr_pages;
	int nr_regions;
	struct {
		uint64_t gpa, size, first_page;
	} region[2];
	_Atomic uint64_t invalidations; /* statistics: generations bumped */
};

/* Create the map for the RAM regions of `gm` (which must not change
 * afterwards).  Returns 0 or -ENOMEM / -EINVAL. */
int emu_code_map_create(const struct guest_mem *gm, struct emu_code_map **out);
void emu_code_map_destroy(struct emu_code_map *map);

/* Page index of `gpa` in the map, or -1 when it is not RAM. */
static inline int64_t emu_code_page(const struct emu_code_map *m, uint64_t gpa)
{
	for (int i = 0; i < m->nr_regions; i++)
		if (gpa - m->region[i].gpa < m->region[i].size)
			return (int64_t)(m->region[i].first_page +
					 ((gpa - m->region[i].gpa) >> 12));
	return -1;
}

/* Page `page` was written while it holds code: drop its blocks. */
void emu_code_map_invalidate(struct emu_code_map *m, uint64_t page);

/* [gpa, gpa + len) was written (any length, any thread). */
void emu_code_map_note_write(struct emu_code_map *m, uint64_t gpa,
			     uint64_t len);

/* emu_code_map_note_write() shaped as guest_mem.write_notify. */
void emu_code_map_gm_notify(void *map, uint64_t gpa, uint64_t len);

/* The vCPU's write path (mem.c): `n` bytes at `gpa` inside one page were
 * written.  One load of the page's byte when the page holds no code. */
static inline void emu_code_note_write(struct emu_cpu *cpu, uint64_t gpa,
				       unsigned n)
{
	struct emu_code_map *m = cpu->code;
	int64_t p;

	(void)n;
	if (!m)
		return;
	p = emu_code_page(m, gpa);
	if (p >= 0 && atomic_load_explicit(&m->holds[p], memory_order_relaxed))
		emu_code_map_invalidate(m, (uint64_t)p);
}

/*
 * THREADED EXECUTION (64-bit mode).  A block is an array of slots, one
 * per instruction plus an end slot; each slot's handler runs its
 * instruction at RIP `rip` (the runner keeps RIP in a register, cpu->rip
 * is only written when the block is left) and then tail-calls the next
 * slot's handler, so the block runs as a chain of jumps with no loop, no
 * per-instruction bookkeeping and one indirect-branch site per handler
 * for the predictor.  A handler leaves the block by returning: it sets
 * cpu->rip and cpu->run_left (the first slot not retired), which is all
 * the runner needs to count instructions.  The chain is at most
 * EMU_BLOCK_MAX_INSNS + 1 calls deep even where the compiler does not
 * turn the tail calls into jumps (unoptimised builds).
 */
struct emu_slot;
typedef int (*emu_thandler)(struct emu_cpu *cpu, const struct emu_slot *s,
			    uint64_t rip);

struct emu_slot {
	emu_thandler h;
	struct emu_insn in;
};

/* Run the next slot: the tail of every handler that falls through. */
#define EMU_T_NEXT(cpu, s, next) return (s)[1].h((cpu), &(s)[1], (next))

/* Leave the block with `s` retired and RIP = rip (a taken branch). */
static inline int emu_t_leave(struct emu_cpu *cpu, const struct emu_slot *s,
			      uint64_t rip)
{
	cpu->rip = rip;
	cpu->run_left = s + 1;
	return 0;
}

/* Whether the running block's page was written since it was decoded
 * (checked after each instruction that may store). */
static inline bool emu_t_smc(const struct emu_cpu *cpu)
{
	return atomic_load_explicit(cpu->run_gen, memory_order_relaxed) !=
	       cpu->run_gen_want;
}

/* `s` (at `rip`) through its generic handler (emu_handlers[]), then the
 * next slot: the handler of every instruction without a specialised one,
 * and the fallback of the specialised ones (TLB miss, MMIO, a page
 * crossing, any fault). */
int emu_t_generic(struct emu_cpu *cpu, const struct emu_slot *s,
		  uint64_t rip);
/* Leave after `s` retired because the block's page was written. */
int emu_t_smc_exit(struct emu_cpu *cpu, const struct emu_slot *s,
		   uint64_t next);

/* exec_fast.c: a specialised threaded handler for `in` decoded in
 * `mode` (enum emu_mode; only 64-bit mode has them), or NULL when
 * emu_t_generic() must run it.  `nf`: the instruction's flags are dead
 * (see emu_flags_effect()), a handler that does not record them will do. */
emu_thandler emu_fast_handler(const struct emu_insn *in, int mode, bool nf);

/* exec_fast.c: a handler for `a` that also runs `b`, the Jcc after it
 * that ends the block (CMP/TEST + Jcc), or NULL. */
emu_thandler emu_fast_fused(const struct emu_insn *a, const struct emu_insn *b,
			    int mode);

/*
 * FLAG LIVENESS.  Most flag results are overwritten before anything reads
 * them, so a block is scanned backwards when built: an instruction whose
 * flags are all overwritten later in the block, with no reader and no
 * instruction that may fault in between, gets a handler that skips the
 * lazy-flag record.  Flags are live at the block's end and before any
 * instruction that may fault (an exception handler sees RFLAGS), and a
 * block is only left early after such an instruction or a branch, so
 * RFLAGS is exact wherever anyone can look at it.  The status flags
 * (EMU_FL_STATUS bits) that `in` reads (*reads: all for an instruction
 * that may fault or that kvmm does not classify), always sets whatever
 * its operands (*kill), and may set (*touch).
 */
void emu_flags_effect(const struct emu_insn *in, unsigned *reads,
		      unsigned *kill, unsigned *touch);

/* Run `in` alone at CS:RIP through threaded handler `h` (tests: the
 * specialised handlers against emu_step()).  Returns as emu_execute(),
 * with RIP advanced on success. */
int emu_t_run_one(struct emu_cpu *cpu, emu_thandler h,
		  const struct emu_insn *in);

struct emu_block {
	uint64_t gpa;              /* of the first instruction */
	uint64_t page;             /* its page index in the code map */
	uint32_t gen;              /* the page's generation when decoded */
	uint8_t mode, stack;       /* decoding key: enum emu_mode, stack size */
	uint8_t n;                 /* instructions */
	uint8_t succ_next;         /* succ[] slot the next miss replaces */
	bool system_end;           /* the last instruction is a system one */
	uint64_t hits;             /* times entered from the cache */
	struct emu_block *next;    /* hash chain */
	/* Blocks that ran right after this one (a direct jump's target, the
	 * fall-through, a return site), tried before the hash table; each
	 * is still checked against the translated CS:RIP, the decoding key
	 * and its page's generation, so a stale link only costs a lookup. */
	struct emu_block *succ[2];
	/* 64-bit blocks: the blocks its last instruction led to, entered
	 * straight from emu_t_chain() while the TLB entry that translated
	 * `rip` still holds the same page (DIRECT CHAINING in blocks.c). */
	struct emu_link {
		uint64_t rip;            /* linear target */
		struct emu_block *b;
		uint64_t tag, page;      /* the TLB entry then: tag, gpa */
		const _Atomic uint32_t *gen; /* b's page generation word */
		uint32_t want;           /* ... and b->gen */
		unsigned tlb_index;
	} link[2];
	uint8_t link_next;         /* link[] slot the next miss replaces */
	/* n instructions and the end slot.  In 64-bit mode each handler was
	 * chosen when the block was built (a specialised one from
	 * exec_fast.c for the hottest register/immediate/memory forms, else
	 * emu_t_generic()); the legacy modes only use the decoded forms. */
	struct emu_slot slot[];
};

struct emu_blocks_stats {
	uint64_t hits;      /* block found valid in the cache */
	uint64_t builds;    /* blocks decoded */
	uint64_t stale;     /* found, but its page was written since */
	uint64_t smc_exits; /* left a block because its page was written */
	uint64_t flushes;   /* whole cache dropped (arena full) */
	uint64_t steps;     /* instructions run through emu_step() instead */
	uint64_t chained;   /* found through the previous block's succ[] */
	uint64_t linked;    /* entered straight from the previous one's link[] */
};

#define EMU_BLOCKS_HASH 32768u
/* Entries of the jump cache (DIRECT CHAINING in blocks.c). */
#define EMU_BLOCKS_JC 4096u

struct emu_blocks {
	struct emu_code_map *map;
	struct emu_block *hash[EMU_BLOCKS_HASH];
	/* 64-bit blocks by linear RIP, checked against the TLB like links:
	 * where chaining and the run loop look before the hash table. */
	struct emu_jc {
		uint64_t rip;
		struct emu_block *b;
	} jc[EMU_BLOCKS_JC];
	uint8_t *arena;
	size_t arena_size, used;
	bool disabled;              /* run everything through emu_step() */
	struct emu_blocks_stats stats;
};

/* A per-vCPU cache over the VM's code map.  Returns 0 or -ENOMEM. */
int emu_blocks_create(struct emu_code_map *map, struct emu_blocks **out);
void emu_blocks_destroy(struct emu_blocks *b);
/* Drop every block. */
void emu_blocks_flush(struct emu_blocks *b);

/* The cached block for guest-physical `gpa` in the CPU's current decoding
 * mode, or NULL (for tests). */
const struct emu_block *emu_blocks_find(struct emu_blocks *b,
					const struct emu_cpu *cpu,
					uint64_t gpa);

/*
 * Run up to about `budget` instructions from CS:RIP, through the block
 * cache (cpu->blocks; emu_step() for each instruction when it is NULL or
 * disabled, and for instructions the cache cannot hold: ones crossing a
 * page, outside RAM, or that do not decode).  Stops early after a branch
 * out of line, a write to the running block's page, or any non-zero
 * result.  *ran (may be NULL) counts the instructions retired.  Returns
 * 0, or the first non-zero result of emu_step()/emu_execute() (EMU_EXC,
 * EMU_HALTED, EMU_SHUTDOWN, -errno), with the state as emu_step() leaves
 * it.
 */
int emu_run_blocks(struct emu_cpu *cpu, unsigned budget, unsigned *ran);

/* emu_t_chain() when the links do not lead to `rip`: through the jump
 * cache, linking the block found; 0 (back to the run loop) if none. */
int emu_t_chain_jc(struct emu_cpu *cpu, uint64_t rip);

/* Leave the block after `s`, its last instruction, retired with RIP =
 * rip (a branch, or the fall-through), going straight on to the next
 * block when the block's link for `rip` is still valid (DIRECT CHAINING
 * in blocks.c).  Inline, so that each kind of exit jumps to the next
 * block from its own site, which the branch predictor tells apart. */
static inline __attribute__((always_inline)) int
emu_t_chain(struct emu_cpu *cpu, const struct emu_slot *s, uint64_t rip)
{
	struct emu_block *b = cpu->run_block, *nb;
	const struct emu_link *l = &b->link[0];
	const struct emu_tlb_entry *e;

	cpu->rip = rip;
	cpu->run_left = s + 1;
	if (l->rip != rip) {
		l = &b->link[1];
		if (l->rip != rip)
			return emu_t_chain_jc(cpu, rip);
	}
	nb = l->b;
	e = &cpu->tlb.e[l->tlb_index];
	if (!nb || cpu->run_budget <= b->n || e->tag != l->tag ||
	    e->gpa != l->page || !(e->perm & cpu->run_xneed) ||
	    atomic_load_explicit(l->gen, memory_order_acquire) != l->want)
		return emu_t_chain_jc(cpu, rip);
	cpu->run_budget -= b->n;
	cpu->run_chained += b->n;
	cpu->run_links++;
	cpu->run_block = nb;
	cpu->run_gen = l->gen;
	cpu->run_gen_want = l->want;
	return nb->slot[0].h(cpu, nb->slot, rip);
}

#endif
