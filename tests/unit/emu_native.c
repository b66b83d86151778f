/* emu_native.c - see emu_native.h. */
#include "emu_native.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <cmocka.h>

_Static_assert(offsetof(struct native_regs, rflags) == 0x88, "native_enter");

/* Native entry: RDI = struct native_regs *.  Flags first (still on our
 * stack), then RSP and the GPRs, RDI last, then jump to NATIVE_BASE.
 * Never returns: the signal handler longjmps out. */
void native_enter(const struct native_regs *r) __attribute__((noreturn));
__asm__(".text\n"
	".globl native_enter\n"
	".type native_enter,@function\n"
	"native_enter:\n"
	"  pushq 0x88(%rdi)\n"
	"  popfq\n"
	"  mov 0x20(%rdi), %rsp\n"
	"  mov 0x00(%rdi), %rax\n"
	"  mov 0x08(%rdi), %rcx\n"
	"  mov 0x10(%rdi), %rdx\n"
	"  mov 0x18(%rdi), %rbx\n"
	"  mov 0x28(%rdi), %rbp\n"
	"  mov 0x30(%rdi), %rsi\n"
	"  mov 0x40(%rdi), %r8\n"
	"  mov 0x48(%rdi), %r9\n"
	"  mov 0x50(%rdi), %r10\n"
	"  mov 0x58(%rdi), %r11\n"
	"  mov 0x60(%rdi), %r12\n"
	"  mov 0x68(%rdi), %r13\n"
	"  mov 0x70(%rdi), %r14\n"
	"  mov 0x78(%rdi), %r15\n"
	"  mov 0x38(%rdi), %rdi\n"
	"  jmp *native_code_addr(%rip)\n"
	".size native_enter, .-native_enter\n"
	".section .rodata\n"
	".p2align 3\n"
	"native_code_addr: .quad 0x01000000\n"
	".text\n");
_Static_assert(NATIVE_BASE == 0x01000000ull, "native_code_addr above");

/* What the signal handler hands back (a signal handler has no other way
 * to reach the test). */
static struct {
	sigjmp_buf env;
	struct native_regs out;
	int trapno;
} nat;

static void on_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	static const int map[16] = {
		REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI,
		REG_RDI, REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13,
		REG_R14, REG_R15,
	};

	(void)sig;
	(void)si;
	for (int i = 0; i < 16; i++)
		nat.out.gpr[i] = (uint64_t)g[map[i]];
	nat.out.rip = (uint64_t)g[REG_RIP];
	nat.out.rflags = (uint64_t)g[REG_EFL];
	nat.trapno = (int)g[REG_TRAPNO];
	siglongjmp(nat.env, 1);
}

int native_exec(const struct native_regs *in, struct native_regs *out)
{
	if (sigsetjmp(nat.env, 1) == 0)
		native_enter(in);
	*out = nat.out;
	return nat.trapno;
}

static const int caught[] = { SIGTRAP, SIGFPE, SIGSEGV, SIGBUS, SIGILL };
#define NR_CAUGHT (sizeof(caught) / sizeof(caught[0]))
static struct sigaction saved[NR_CAUGHT];
static stack_t altstack;

void native_catch_begin(void)
{
	struct sigaction sa;

	altstack.ss_sp = malloc(65536);
	altstack.ss_size = 65536;
	altstack.ss_flags = 0;
	assert_non_null(altstack.ss_sp);
	assert_int_equal(sigaltstack(&altstack, NULL), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	for (size_t i = 0; i < NR_CAUGHT; i++)
		sigaction(caught[i], &sa, &saved[i]);
}

void native_catch_end(void)
{
	stack_t off = { .ss_flags = SS_DISABLE };

	for (size_t i = 0; i < NR_CAUGHT; i++)
		sigaction(caught[i], &saved[i], NULL);
	sigaltstack(&off, NULL);
	free(altstack.ss_sp);
	altstack.ss_sp = NULL;
}

uint8_t *native_map(size_t size)
{
	void *p = mmap((void *)NATIVE_BASE, size,
		       PROT_READ | PROT_WRITE | PROT_EXEC,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == (void *)NATIVE_BASE)
		return p;
	print_error("cannot map test memory at %#llx: %s\n", NATIVE_BASE,
		    p == MAP_FAILED ? strerror(errno) : "placed elsewhere");
	/* An old kernel treats MAP_FIXED_NOREPLACE as a hint. */
	if (p != MAP_FAILED)
		munmap(p, size);
	return NULL;
}

void native_identity_map(struct guest_mem *gm)
{
	uint64_t *pml4 = gm_ptr(gm, 0, 0x3000);

	memset(pml4, 0, 0x3000);
	for (uint64_t i = 0; i < 1024; i++)
		pml4[512 + i] = (i << 30) | 0x87; /* P, RW, US, PS */
	pml4[0] = 0x1000 | 0x7;
	pml4[1] = 0x2000 | 0x7;
}

int native_env_setup(void **state, size_t size, uint64_t ram_size)
{
	struct native_env *e = calloc(1, sizeof(*e));

	if (!e)
		return -1;
	e->size = size;
	e->host = native_map(size);
	if (!e->host) {
		free(e);
		return -1;
	}
	if (gm_init(&e->gm, ram_size)) {
		munmap(e->host, size);
		free(e);
		return -1;
	}
	native_identity_map(&e->gm);
	*state = e;
	return 0;
}

int native_env_teardown(void **state)
{
	struct native_env *e = *state;

	gm_destroy(&e->gm);
	munmap(e->host, e->size);
	free(e);
	return 0;
}
