/*
 * accel_int.h - the software CPU accelerator's vCPU and VM state, shared by
 * accel.c (the vCPU loop, accel_ops) and emu_debug.c (the debugger and
 * trace hooks).  Private to accel/emu.
 */
#ifndef KVMM_ACCEL_EMU_ACCEL_INT_H
#define KVMM_ACCEL_EMU_ACCEL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "accel/emu/cpu.h"
#include "core/accel.h"
#include "core/vm.h"

struct emu_vcpu {
	struct emu_state *st;
	struct emu_cpu cpu;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool kicked; /* under lock */
	/* Debugger (emu_debug.c); only looked at while st->dbg.slow. */
	atomic_bool dbg_pause;  /* park at the top of the loop */
	bool dbg_parked;        /* under st->dbg.lock */
	bool dbg_step;          /* run one instruction, then report */
	bool dbg_report;        /* report a stop (breakpoint, step) and park */
	bool dbg_skip_valid;    /* do not stop at the breakpoint at dbg_skip_lin */
	uint64_t dbg_skip_lin;  /* (the one the vCPU was resumed from) */
};

#define EMU_DBG_MAX_BPS 64

/* Debugger and trace state of the VM (emu_debug.c). */
struct emu_dbg {
	/* The vCPU loop takes the slow path (emu_debug_park/exec): a debugger
	 * is attached, a pause was asked for, or instructions are traced.
	 * One relaxed load per run of blocks when false. */
	atomic_bool slow;
	bool attached;
	struct accel_debug_client client;
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* parked / resumed */
	/* Breakpoints (linear addresses); changed only while every vCPU is
	 * paused, so the vCPUs read them without the lock. */
	int nr_bps;
	uint64_t bps[EMU_DBG_MAX_BPS];
	/* --trace (ACCEL_TRACE_*), set before start(). */
	unsigned trace;
	FILE *trace_f;
};

struct emu_state {
	struct vm *vm;
	int nr_vcpus;
	struct emu_vcpu *vcpus;
	struct lapic_bus *bus;
	struct emu_code_map *code;
	struct ioapic *ioapic; /* the board's, after board_ready() */
	struct pic *pic;
	atomic_bool stopping;
	struct emu_dbg dbg;
};

static inline bool emu_vcpu_should_stop(struct emu_vcpu *v)
{
	return vm_stopping(v->cpu.vm) ||
	       atomic_load_explicit(&v->st->stopping, memory_order_acquire);
}

/* emu_debug.c */
extern const struct accel_debug_ops emu_debug_ops;
void emu_debug_init(struct emu_state *st);
void emu_debug_destroy(struct emu_state *st);
/* At the top of the vCPU loop when dbg.slow: report a pending stop, park
 * while paused.  True when the caller must re-check everything (loop). */
bool emu_debug_park(struct emu_vcpu *v);
/* Instead of emu_run_blocks() when dbg.slow: instruction by instruction
 * when breakpoints, a step or the instruction trace need it.  Same
 * results as emu_run_blocks(). */
int emu_debug_exec(struct emu_vcpu *v);
/* An event is about to be delivered (for --trace=int,exc). */
void emu_debug_trace_event(struct emu_vcpu *v, unsigned vector, int kind,
			   bool has_error, uint32_t error);

#endif
