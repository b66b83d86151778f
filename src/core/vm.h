/*
 * vm.h - the machine: guest RAM, the two buses, the interrupt controller
 * interface, the devices on the board and how the VM stops.
 *
 * The machine knows nothing about how vCPUs run: an accelerator (accel/kvm,
 * accel/emu) or the test harness supplies the irq_chip and executes guest
 * code.  A machine with RAM, buses and devices but no vCPU is what device
 * tests drive (tests/harness).
 */
#ifndef KVMM_CORE_VM_H
#define KVMM_CORE_VM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/irq.h"
#include "core/memory.h"
#include "core/state.h"
#include "core/timer.h"

#include <pthread.h>

/* Why the VM stopped.  The first request wins; later ones are ignored. */
enum vm_stop_reason {
	VM_RUNNING = 0,
	VM_STOP_POWEROFF,    /* ACPI S5, or the guest asked to halt for good */
	VM_STOP_RESET,       /* keyboard controller, 0xCF9, FADT reset, triple fault under --reboot */
	VM_STOP_DEBUG_EXIT,  /* write of v to the debug-exit port; value = v */
	VM_STOP_GUEST_CRASH, /* triple fault, emulation failure, unhandled exit */
	VM_STOP_ERROR,       /* kvmm itself failed (host error) */
	VM_STOP_SIGNAL,      /* SIGINT/SIGTERM, or Ctrl-A x */
};

/* Lifecycle hooks of a board device, so the machine can reset, save, load
 * and free every device without knowing its type. */
struct vm_device_ops {
	const char *name;
	/* Back to power-on state (guest-visible registers). May be NULL. */
	void (*reset)(void *opaque);
	/* Append / restore guest-visible state (core/state.h). */
	void (*save)(void *opaque, struct state_buf *b);
	int (*load)(void *opaque, struct state_reader *r);
	/* Free the device; its bus ranges are gone by then. */
	void (*destroy)(void *opaque);
};

struct vm_device {
	const struct vm_device_ops *ops;
	void *opaque;
};

#define VM_MAX_DEVICES 64

/* Kernel-side doorbells (KVM_IOEVENTFD), offered by accelerators that have
 * them.  A guest write of any value and size to [addr, addr + len) then
 * signals eventfd `fd` without leaving the kernel. */
struct vm_ioeventfd_ops {
	int (*assign)(void *opaque, bool pio, uint64_t addr, unsigned len,
		      int fd, bool assign);
};

struct vm {
	struct guest_mem mem;
	struct bus pio;  /* port I/O, 16-bit addresses */
	struct bus mmio; /* memory-mapped I/O, guest-physical addresses */
	struct irq_chip irq;
	int nr_cpus;
	/* Level-triggered lines shared by several devices: bit s of
	 * irq_shared[gsi] is source s's level (vm_irq_set_shared). */
	pthread_mutex_t irq_shared_lock;
	uint64_t irq_shared[IRQ_MAX_GSI];
	const struct vm_ioeventfd_ops *ioeventfd; /* NULL: none */
	void *ioeventfd_opaque;

	struct vm_device devices[VM_MAX_DEVICES];
	int nr_devices;

	/* Timers (core/timer.c).  fake_clock is set by the test harness. */
	pthread_mutex_t timer_lock;
	struct vm_timer *timers;   /* armed, sorted by deadline */
	int timer_efd;             /* eventfd: the earliest deadline changed */
	bool fake_clock;
	uint64_t fake_clock_ns;

	_Atomic int stop_reason;  /* enum vm_stop_reason */
	int stop_value;           /* debug-exit value, or -errno for ERROR */
	int stop_efd;             /* eventfd, readable once a stop was requested */
};

/* Build an empty machine: `ram_size` bytes of RAM (memory.h), empty buses,
 * no interrupt controller yet.  Returns 0, -EINVAL, -ENOMEM or -errno of
 * eventfd(). */
int vm_init(struct vm *vm, uint64_t ram_size, int nr_cpus);

/* Destroy every device (in reverse order of adding), the buses and RAM. */
void vm_destroy(struct vm *vm);

/* Put a device on the board; its ops and opaque must stay valid until
 * vm_destroy(), which calls ops->destroy.  Returns 0 or -ENOSPC. */
int vm_add_device(struct vm *vm, const struct vm_device_ops *ops,
		  void *opaque);

/* Ask the accelerator to signal eventfd `fd` itself on guest writes to
 * [addr, addr + len) of the port (pio) or MMIO space, or stop doing so
 * (assign false).  Returns 0, -ENOTSUP when the accelerator cannot (the
 * device's bus write handler must then signal fd), or -errno. */
int vm_ioeventfd(struct vm *vm, bool pio, uint64_t addr, unsigned len, int fd,
		 bool assign);

/* Drive source `source` (0..63, unique among the devices sharing `gsi`:
 * PCI INTx use their slot, virtio-mmio devices 32 + their index) of the
 * shared level-triggered line `gsi`; the line is asserted while any source
 * asserts it (wired-OR, as PCI INTx lines are).  Levels are logical
 * (asserted = true) whatever polarity the guest programs, as with KVM's
 * KVM_IRQ_LINE.  Any thread.
 *
 * Under KVM the line moves with KVM_IRQ_LINE, not with an irqfd in resample
 * mode (KVM_IRQFD_FLAG_RESAMPLE), on purpose.  Such an irqfd asserts the
 * line under a kernel source of its own that only the guest's EOI clears,
 * so a device dropping its level (the driver read the ISR, disabled INTx,
 * reset the device) could not lower the line: a guest that has the pin
 * masked meanwhile would take a spurious interrupt on unmask, and every
 * EOI would cost an I/O-thread wake-up on the resample fd to re-check the
 * wired-OR.  With devices emulated in this process, each edge is one
 * syscall either way, so the irqfd would buy nothing here; it pays off for
 * vhost or VFIO, where the kernel raises the line without us. */
void vm_irq_set_shared(struct vm *vm, unsigned gsi, unsigned source,
		       bool level);

/* Reset every device to power-on state. */
void vm_reset_devices(struct vm *vm);

/* Ask the VM to stop; safe from any thread and from device callbacks.  Only
 * the first request counts.  vCPUs see it through vm_stopping() before they
 * run another guest instruction. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason, int value);

/* True once a stop was requested. */
static inline bool vm_stopping(const struct vm *vm)
{
	return atomic_load_explicit(&vm->stop_reason, memory_order_acquire) !=
	       VM_RUNNING;
}

#endif
