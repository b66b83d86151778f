/*
 * emu_native.h - the native half of the emulator's differential tests
 * (test_emu_insn.c, test_emu_sys.c, test_emu_sse.c).
 *
 * Those tests run the same instruction on the host CPU and through
 * emu_step() and compare the results.  To make addresses mean the same
 * thing on both sides, code and data live at NATIVE_BASE natively (a fixed
 * host mapping) and at the same guest-physical address in guest RAM, which
 * identity page tables map linear = physical.  This file holds what the
 * three tests share: the fixed mapping, the identity tables, the
 * guest-memory environment, and running a snippet natively up to the trap
 * that stops it (int3 after it, or its own #DE/#GP/...), with the
 * registers read back from the signal's ucontext.  How each test builds
 * its inputs and what it compares stays in the test.
 */
#ifndef KVMM_TESTS_EMU_NATIVE_H
#define KVMM_TESTS_EMU_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#include "core/memory.h"

/* Where native_exec() jumps; fixed because the entry stub hard-codes it. */
#define NATIVE_BASE 0x01000000ull

/* GPRs in the emulator's order (EMU_RAX..EMU_R15); the entry stub in
 * emu_native.c uses these offsets. */
struct native_regs {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
};

/* Guest RAM plus the native mapping of the test area. */
struct native_env {
	struct guest_mem gm;
	uint8_t *host;      /* NATIVE_BASE mapped natively */
	size_t size;        /* bytes mapped at NATIVE_BASE */
};

/* Map `size` bytes RWX at NATIVE_BASE (never over an existing mapping).
 * Returns NATIVE_BASE, or NULL after printing why. */
uint8_t *native_map(size_t size);

/* 4-level tables at guest-physical 0..0x3000 (PML4 at 0, PDPTs at 0x1000
 * and 0x2000) identity-mapping the 40-bit physical space with user 1 GiB
 * pages: emu_cpu_set_long_mode() leaves CR3 = 0, so this makes linear =
 * physical at any CPL; addresses at 2^40 and above are not present. */
void native_identity_map(struct guest_mem *gm);

/* cmocka group setup/teardown: a struct native_env in *state with
 * `ram_size` bytes of identity-mapped guest RAM and `size` bytes mapped at
 * NATIVE_BASE. */
int native_env_setup(void **state, size_t size, uint64_t ram_size);
int native_env_teardown(void **state);

/* Catch the signals a native snippet can stop with (SIGTRAP for the int3
 * after it, SIGFPE, SIGSEGV, SIGBUS, SIGILL for its own fault) on an
 * alternate stack, since the snippet's RSP is the test's.  Call inside
 * the test (cmocka installs its own handlers around each test);
 * native_catch_end() puts back what was there before. */
void native_catch_begin(void);
void native_catch_end(void);

/* Load all GPRs and RFLAGS from `in` and jump to NATIVE_BASE at CPL 3;
 * on the first signal, store the registers at that point in `out` and
 * return the trap number (3 for int3, with RIP after it). */
int native_exec(const struct native_regs *in, struct native_regs *out);

#endif
