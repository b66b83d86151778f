/*
 * run.c - `kvmm run`: build one machine, boot a kernel on it, and wait in the
 * main thread's event loop (console input, signals, device timers) until the
 * VM stops.
 *
 * Order matters: the ACPI tables go first (the loader passes their address
 * in boot_params / hvm_start_info), then the kernel, then the accelerator
 * (which owns the interrupt controllers), then the board's devices (which
 * need vm->irq).  A reset under --reboot=restart tears the machine down and
 * builds it again from the same files; the console and the event loop stay.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accel/kvm/kvm.h"
#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "cli/cli.h"
#include "cli/run_devices.h"
#include "util/size.h"
#include "core/accel.h"
#include "core/chardev.h"
#include "core/event_loop.h"
#include "core/vm.h"
#include "debug/gdbstub.h"
#include "hw/pc.h"
#include "hw/pci.h"
#include "util/log.h"
#include "virtio/mmio.h"

#define MEM_MIN (2ull << 20)  /* below this no kernel we load fits */
#define MEM_MAX (1ull << 40)  /* 1 TiB: beyond it, surely a typo */
#define CPUS_MAX 255          /* xAPIC IDs; 0xff is the broadcast ID */

struct run_opts {
	struct x86_boot_config boot;
	uint64_t mem;
	int cpus;
	const char *console; /* "stdio", "none" or a file name */
	const char *accel;   /* "auto", "kvm", "emu" */
	bool reboot_restart;
	const char *gdb;     /* --gdb tcp:HOST:PORT, or NULL */
	bool gdb_wait;
	unsigned trace;      /* ACCEL_TRACE_* */
	const char *trace_file;
	struct run_devices dev; /* --disk, --rng, --console virtio, --transport */
};

static void usage(FILE *f)
{
	fprintf(f,
"usage: kvmm run --kernel FILE [options]\n"
"\n"
"Boot a guest kernel in a new virtual machine; the guest's serial console\n"
"(COM1) is on stdin/stdout.  Press Ctrl-A x to quit.\n"
"\n"
"  --kernel FILE        bzImage, PVH ELF (vmlinux) or Multiboot v1 ELF\n"
"  --initrd FILE        initial ramdisk (the first module for Multiboot)\n"
"  --cmdline STRING     kernel command line\n"
"  --mem SIZE           guest RAM: K/M/G/T suffix, bare number = MiB (default 256M)\n"
"  --cpus N             number of vCPUs (default 1)\n"
"  --console stdio|none|FILE|virtio\n"
"                       where COM1 goes (default stdio); virtio: stdin/stdout\n"
"                       on a virtio-console instead (the guest's hvc0; boot\n"
"                       with console=hvc0), COM1 goes nowhere\n"
"  --disk path=FILE[,readonly=on][,serial=STR][,cache=none|writeback]\n"
"         [,queues=N][,format=raw|qcow2][,snapshot=on][,transport=pci|mmio]\n"
"                       a virtio-blk disk (repeatable: vda, vdb, ... in this\n"
"                       order); cache=none uses O_DIRECT; a file another kvmm\n"
"                       or QEMU has open for writing is refused; snapshot=on:\n"
"                       writes go to a temporary qcow2 overlay in $TMPDIR\n"
"                       (default /var/tmp), dropped at exit; FILE unchanged\n"
"  --rng[=pci|mmio]     a virtio-rng device fed from the host's getrandom()\n"
"  --transport pci|mmio how virtio devices attach unless they say (default\n"
"                       pci; mmio devices are described in ACPI like QEMU's\n"
"                       microvm)\n"
"  --accel auto|kvm|emu accelerator (default auto: KVM where it can run the\n"
"                       guest, else the software CPU, emu, which is much\n"
"                       slower; stock Linux kernels cannot run on PVM hosts)\n"
"  --reboot=exit|restart  what a guest reset does (default exit)\n"
"  --gdb tcp:HOST:PORT  serve the GDB remote protocol there (one client;\n"
"                       gdb -ex 'target remote HOST:PORT'); both accelerators\n"
"  --gdb-wait           with --gdb: start paused until the debugger continues\n"
"  --trace LIST         comma-separated insn,int,exc: trace executed\n"
"                       instructions (much slower), external interrupts and\n"
"                       exceptions to the trace file (software CPU only)\n"
"  --trace-file FILE    where --trace writes (default kvmm-trace.log)\n"
"  --verbose, -v        more diagnostics (repeat for debug)\n"
"  --version            print the version and exit\n"
"  --help, -h           this text\n"
"\n"
"Exit status:\n"
"  0            the guest powered off or reset (with --reboot=exit), or the\n"
"               user quit (Ctrl-A x, SIGINT, SIGTERM)\n"
"  (v << 1) | 1 the guest wrote v to the debug-exit port 0xf4 (always odd)\n"
"  2            kvmm failed: bad flags or files, or a host error\n"
"  4            the guest crashed: triple fault, emulation failure, or an\n"
"               exit kvmm cannot handle (a report is printed)\n");
}

/* --trace insn,int,exc -> ACCEL_TRACE_* bits.  Returns 0, or 1 with a
 * message printed. */
static int parse_trace(const char *list, unsigned *mask)
{
	char buf[128], *tok, *save = NULL;

	*mask = 0;
	if (strlen(list) >= sizeof(buf))
		goto bad;
	strcpy(buf, list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strcmp(tok, "insn"))
			*mask |= ACCEL_TRACE_INSN;
		else if (!strcmp(tok, "int"))
			*mask |= ACCEL_TRACE_INT;
		else if (!strcmp(tok, "exc"))
			*mask |= ACCEL_TRACE_EXC;
		else
			goto bad;
	}
	if (*mask)
		return 0;
bad:
	log_error("--trace %s: must be a comma-separated list of insn, int, exc", list);
	return 1;
}

/* Returns 0, or 1 with a message printed. */
static int parse_opts(int argc, char **argv, struct run_opts *o)
{
	enum { OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEM, OPT_CPUS,
	       OPT_CONSOLE, OPT_ACCEL, OPT_REBOOT, OPT_VERSION, OPT_GDB,
	       OPT_GDB_WAIT, OPT_TRACE, OPT_TRACE_FILE, OPT_DISK, OPT_RNG,
	       OPT_TRANSPORT };
	static const struct option longopts[] = {
		{ "kernel", required_argument, NULL, OPT_KERNEL },
		{ "initrd", required_argument, NULL, OPT_INITRD },
		{ "cmdline", required_argument, NULL, OPT_CMDLINE },
		{ "append", required_argument, NULL, OPT_CMDLINE },
		{ "mem", required_argument, NULL, OPT_MEM },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "console", required_argument, NULL, OPT_CONSOLE },
		{ "accel", required_argument, NULL, OPT_ACCEL },
		{ "reboot", required_argument, NULL, OPT_REBOOT },
		{ "gdb", required_argument, NULL, OPT_GDB },
		{ "gdb-wait", no_argument, NULL, OPT_GDB_WAIT },
		{ "trace", required_argument, NULL, OPT_TRACE },
		{ "trace-file", required_argument, NULL, OPT_TRACE_FILE },
		{ "disk", required_argument, NULL, OPT_DISK },
		{ "rng", optional_argument, NULL, OPT_RNG },
		{ "transport", required_argument, NULL, OPT_TRANSPORT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char *end;
	long n;
	int c, r;

	*o = (struct run_opts){ .mem = 256ull << 20, .cpus = 1,
				.console = "stdio", .accel = "auto" };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL: o->boot.kernel_path = optarg; break;
		case OPT_INITRD: o->boot.initrd_path = optarg; break;
		case OPT_CMDLINE: o->boot.cmdline = optarg; break;
		case OPT_MEM:
			r = size_parse(optarg, 1ull << 20, &o->mem);
			if (r || o->mem < MEM_MIN || o->mem > MEM_MAX) {
				log_error("--mem %s: %s", optarg,
					  r == -EINVAL ? "not a size (examples: 512M, 2G)"
						       : "out of range (2M to 1T)");
				return 1;
			}
			/* Guest RAM is mapped in whole pages. */
			o->mem = (o->mem + 0xfff) & ~0xfffull;
			break;
		case OPT_CPUS:
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || n < 1 || n > CPUS_MAX) {
				log_error("--cpus %s: must be a number from 1 to %d",
					  optarg, CPUS_MAX);
				return 1;
			}
			o->cpus = (int)n;
			break;
		case OPT_CONSOLE:
			o->dev.virtio_console = !strcmp(optarg, "virtio");
			o->console = o->dev.virtio_console ? "stdio" : optarg;
			break;
		case OPT_DISK:
			if (run_parse_disk(&o->dev, optarg))
				return 1;
			break;
		case OPT_RNG:
			o->dev.rng = true;
			if (optarg && run_parse_transport("--rng", optarg,
							  &o->dev.rng_transport))
				return 1;
			break;
		case OPT_TRANSPORT:
			if (run_parse_transport("--transport", optarg,
						&o->dev.transport))
				return 1;
			break;
		case OPT_ACCEL:
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") &&
			    strcmp(optarg, "emu")) {
				log_error("--accel %s: must be auto, kvm or emu", optarg);
				return 1;
			}
			o->accel = optarg;
			break;
		case OPT_REBOOT:
			if (!strcmp(optarg, "restart"))
				o->reboot_restart = true;
			else if (strcmp(optarg, "exit")) {
				log_error("--reboot=%s: must be exit or restart", optarg);
				return 1;
			}
			break;
		case OPT_GDB: o->gdb = optarg; break;
		case OPT_GDB_WAIT: o->gdb_wait = true; break;
		case OPT_TRACE_FILE: o->trace_file = optarg; break;
		case OPT_TRACE:
			if (parse_trace(optarg, &o->trace))
				return 1;
			break;
		case 'v':
			if (log_max_level < LOG_DEBUG)
				log_max_level++;
			break;
		case OPT_VERSION:
			printf("kvmm %s\n", KVMM_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			if (optopt >= OPT_KERNEL)
				log_error("%s needs a value (see kvmm run --help)",
					  argv[optind - 1]);
			else
				log_error("unknown option %s (see kvmm run --help)",
					  argv[optind - 1]);
			return 1;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s' (see kvmm run --help)", argv[optind]);
		return 1;
	}
	if (!o->boot.kernel_path) {
		log_error("no --kernel given (see kvmm run --help)");
		return 1;
	}
	if (o->gdb_wait && !o->gdb) {
		log_error("--gdb-wait needs --gdb tcp:HOST:PORT");
		return 1;
	}
	if (o->trace_file && !o->trace) {
		log_error("--trace-file needs --trace (insn, int, exc)");
		return 1;
	}
	return 0;
}

/* ---- the main loop --------------------------------------------------------- */

struct run_ctx {
	struct vm vm;
	struct evloop loop;
	struct chardev *console;
	struct chardev *com1_null; /* COM1's backend with --console virtio */
	int sigfd;
	struct gdbstub *gdb;  /* --gdb, or NULL */
	FILE *trace;          /* --trace's file, or NULL */
	/* The user asked to quit: no restart after a guest reset that won
	 * the race against the signal (first stop request wins). */
	bool quit;
};

static void on_stop_efd(void *opaque, uint32_t events)
{
	struct run_ctx *ctx = opaque;
	uint64_t v;

	if (read(ctx->vm.stop_efd, &v, sizeof(v)) < 0) {
	}
}

static void on_timer_efd(void *opaque, uint32_t events)
{
	struct run_ctx *ctx = opaque;
	uint64_t v;

	/* Timers run after every wait; this only wakes the loop. */
	if (read(ctx->vm.timer_efd, &v, sizeof(v)) < 0) {
	}
}

static void on_signal(void *opaque, uint32_t events)
{
	struct run_ctx *ctx = opaque;
	struct signalfd_siginfo si;

	if (read(ctx->sigfd, &si, sizeof(si)) == sizeof(si)) {
		ctx->quit = true;
		vm_request_stop(&ctx->vm, VM_STOP_SIGNAL, (int)si.ssi_signo);
	}
}

static void on_quit_key(void *opaque)
{
	struct run_ctx *ctx = opaque;
	ctx->quit = true;
	vm_request_stop(&ctx->vm, VM_STOP_SIGNAL, 0);
}

/* Which accelerator runs this guest; NULL after logging why none can.
 * --accel auto takes KVM where it can run the guest and otherwise the
 * software CPU, saying why in one line (it is far slower). */
static const struct accel_ops *pick_accel(const struct run_opts *o,
					  const struct x86_boot_regs *regs)
{
	struct kvm_host_info kvm;
	bool auto_pick = !strcmp(o->accel, "auto");

	if (!strcmp(o->accel, "emu"))
		return &emu_accel_ops;
	kvm_probe(&kvm);
	if (!kvm.usable) {
		if (auto_pick) {
			log_warn("using the software CPU (--accel emu): %s", kvm.why);
			return &emu_accel_ops;
		}
		log_error("%s (--accel emu runs guests without KVM)", kvm.why);
		return NULL;
	}
	if (kvm.pvm && regs->is_linux) {
		if (auto_pick) {
			log_warn("using the software CPU (--accel emu): this host's "
				 "/dev/kvm is PVM (kvm_pvm), which cannot run a stock "
				 "Linux kernel (--accel kvm tries anyway)");
			return &emu_accel_ops;
		}
		log_warn("this host's /dev/kvm is PVM (kvm_pvm): a stock Linux kernel "
			 "will not boot under --accel kvm");
	} else if (kvm.pvm) {
		/* Said once either way; a warning when the user forced KVM. */
		log_msg(auto_pick ? LOG_INFO : LOG_WARN,
			"this host's /dev/kvm is PVM (kvm_pvm): small guests like this "
			"one run, stock Linux kernels do not");
	}
	if (o->cpus > kvm.max_vcpus) {
		log_error("--cpus %d: this host's KVM allows at most %d vCPUs",
			  o->cpus, kvm.max_vcpus);
		return NULL;
	}
	if (o->cpus > kvm.nr_vcpus)
		log_warn("--cpus %d: above the %d vCPUs this host's KVM recommends",
			 o->cpus, kvm.nr_vcpus);
	return &kvm_accel_ops;
}

/* Write the ACPI tables for the machine as built: the board's own DSDT
 * content, then the generators of `dsdt` in order (the PCI root bus;
 * devices that describe themselves, like virtio-mmio, add theirs), and the
 * MCFG for ECAM.  They go last because they describe the devices, but the
 * RSDP address is fixed, so the boot protocol already passed it on. */
static int build_acpi(struct vm *vm, int nr_cpus,
		      struct acpi_dsdt_chain *dsdt, uint64_t rsdp_addr)
{
	struct acpi_config acpi;
	struct acpi_mcfg_alloc mcfg;
	uint64_t rsdp;
	int r;

	acpi_config_pc(&acpi, nr_cpus);
	pci_acpi_mcfg(&mcfg);
	acpi.mcfg = &mcfg;
	acpi.nr_mcfg = 1;
	acpi.dsdt_extra = acpi_dsdt_chain_run;
	acpi.dsdt_extra_opaque = dsdt;
	r = acpi_build(&vm->mem, &acpi, &rsdp);
	if (!r && rsdp != rsdp_addr)
		r = -EFAULT; /* acpi.h promises BOOT_RSDP_ADDR */
	if (r)
		log_error("cannot build the ACPI tables: %s", strerror(-r));
	return r;
}

/* Build the machine and run it until it stops.  Returns the exit status, or
 * -1 when a reset under --reboot=restart asks for another round. */
static int run_once(struct run_ctx *ctx, const struct run_opts *o)
{
	struct vm *vm = &ctx->vm;
	struct x86_boot_regs regs;
	struct x86_boot_config boot = o->boot;
	const struct accel_ops *accel;
	struct pc_board_config board;
	struct pci_bus *pci = NULL;
	struct run_virtio virtio = { 0 };
	struct virtio_mmio_list mmio_list;
	struct acpi_dsdt_chain dsdt = { 0 };
	void *accel_state = NULL;
	bool in_kernel = false;
	char err[512] = "";
	int r, status = KVMM_EXIT_ERROR;

	r = vm_init(vm, o->mem, o->cpus);
	if (r) {
		log_error("cannot allocate %llu MiB of guest RAM: %s",
			  (unsigned long long)(o->mem >> 20), strerror(-r));
		return KVMM_EXIT_ERROR;
	}
	/* The tables are written once the board exists (build_acpi); their
	 * RSDP address is fixed, so the boot protocol can carry it now. */
	boot.rsdp_addr = BOOT_RSDP_ADDR;
	r = x86_boot_load(&vm->mem, &boot, &regs, err, sizeof(err));
	if (r) {
		log_error("%s", err[0] ? err : strerror(-r));
		goto out_vm;
	}
	accel = pick_accel(o, &regs);
	if (!accel)
		goto out_vm;
	r = accel->create(vm, &regs, &accel_state, &in_kernel);
	if (r)
		goto out_vm;
	r = evloop_add(&ctx->loop, vm->stop_efd, EPOLLIN, on_stop_efd, ctx);
	if (!r)
		r = evloop_add(&ctx->loop, vm->timer_efd, EPOLLIN, on_timer_efd, ctx);
	if (r) {
		log_error("event loop: %s", strerror(-r));
		goto out_accel;
	}
	ctx->loop.vm = vm;
	/* With --console virtio the terminal is the virtio-console's and
	 * COM1 talks to nobody. */
	board = (struct pc_board_config){
		.console = o->dev.virtio_console ? ctx->com1_null : ctx->console,
		.in_kernel_irqchip = in_kernel };
	/* Without an in-kernel irqchip the accelerator says where the
	 * board's PIC, IOAPIC and MSIs deliver, and learns about them. */
	if (!in_kernel && accel->board_config)
		accel->board_config(accel_state, &board);
	r = pc_board_create(vm, &board, &pci);
	if (!r)
		r = run_devices_create(&o->dev, vm, &ctx->loop, pci, ctx->console,
				       &virtio);
	if (!r)
		r = acpi_dsdt_chain_add(&dsdt, pci_acpi_dsdt, pci);
	mmio_list = (struct virtio_mmio_list){ virtio.mmio, virtio.nr_mmio };
	if (!r)
		r = acpi_dsdt_chain_add(&dsdt, virtio_mmio_dsdt, &mmio_list);
	if (!r)
		r = build_acpi(vm, o->cpus, &dsdt, boot.rsdp_addr);
	if (!r && accel->board_ready)
		r = accel->board_ready(accel_state, vm);
	if (!r && ctx->trace) {
		/* Said once: the KVM accelerator cannot trace. */
		if (!accel->debug || !accel->debug->set_trace ||
		    accel->debug->set_trace(accel_state, o->trace, ctx->trace))
			log_warn("--trace: not available under KVM (the software CPU, "
				 "--accel emu, traces instructions, interrupts and exceptions)");
	}
	if (!r && ctx->gdb)
		r = gdbstub_attach(ctx->gdb, vm, accel, accel_state);
	if (r)
		goto out_loop;
	log_info("booting %s (%s) with %d vCPU(s), %llu MiB, accel %s",
		 o->boot.kernel_path, regs.format, o->cpus,
		 (unsigned long long)(o->mem >> 20), accel->name);

	if (accel->start(accel_state) == 0)
		while (!vm_stopping(vm))
			evloop_run_once(&ctx->loop, -1);
	vm_request_stop(vm, VM_STOP_ERROR, 0); /* no-op unless start failed */
	accel->stop(accel_state);

	switch (atomic_load(&vm->stop_reason)) {
	case VM_STOP_POWEROFF:
		status = KVMM_EXIT_OK;
		break;
	case VM_STOP_RESET:
		status = o->reboot_restart ? -1 : KVMM_EXIT_OK;
		break;
	case VM_STOP_DEBUG_EXIT:
		status = (int)(((unsigned)vm->stop_value << 1) | 1) & 0xff;
		break;
	case VM_STOP_GUEST_CRASH:
		status = KVMM_EXIT_GUEST_CRASH;
		break;
	case VM_STOP_SIGNAL:
		status = KVMM_EXIT_OK;
		break;
	default:
		status = KVMM_EXIT_ERROR;
	}
	if (ctx->trace)
		fflush(ctx->trace);
out_loop:
	/* The debugger lets go of the machine before it is destroyed. */
	gdbstub_detach(ctx->gdb, status);
	ctx->loop.vm = NULL;
	evloop_del(&ctx->loop, vm->stop_efd);
	evloop_del(&ctx->loop, vm->timer_efd);
out_accel:
	chardev_set_receiver(ctx->console, NULL);
	accel->destroy(accel_state);
out_vm:
	vm_destroy(vm);
	return status;
}

static struct chardev *open_console(struct run_ctx *ctx, const char *spec)
{
	struct chardev *cd;

	if (!strcmp(spec, "stdio"))
		cd = chardev_open_stdio(&ctx->loop, on_quit_key, ctx);
	else if (!strcmp(spec, "none"))
		cd = chardev_open_null();
	else
		cd = chardev_open_file(spec);
	if (!cd)
		log_error("--console %s: %s", spec, strerror(errno));
	return cd;
}

int cli_run(int argc, char **argv)
{
	static struct run_ctx ctx; /* the vCPU threads' signals reach it */
	struct run_opts o;
	sigset_t sigs;
	int status;

	if (parse_opts(argc, argv, &o))
		return KVMM_EXIT_ERROR;

	/* SIGINT/SIGTERM become events; a closed stdout must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	ctx.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (ctx.sigfd < 0 || evloop_init(&ctx.loop, NULL) ||
	    evloop_add(&ctx.loop, ctx.sigfd, EPOLLIN, on_signal, &ctx)) {
		log_error("cannot set up the event loop: %s", strerror(errno));
		return KVMM_EXIT_ERROR;
	}
	ctx.console = open_console(&ctx, o.console);
	if (!ctx.console)
		return KVMM_EXIT_ERROR;
	if (o.dev.virtio_console && !(ctx.com1_null = chardev_open_null())) {
		log_error("cannot open a null console for COM1: %s", strerror(errno));
		return KVMM_EXIT_ERROR;
	}
	if (o.trace) {
		const char *tf = o.trace_file ? o.trace_file : "kvmm-trace.log";

		ctx.trace = fopen(tf, "we");
		if (!ctx.trace) {
			log_error("--trace-file %s: %s", tf, strerror(errno));
			return KVMM_EXIT_ERROR;
		}
		setvbuf(ctx.trace, NULL, _IOFBF, 1 << 20);
	}
	if (o.gdb && gdbstub_create(o.gdb, o.gdb_wait, &ctx.gdb))
		return KVMM_EXIT_ERROR;
	atexit(chardev_restore_terminal);

	while ((status = run_once(&ctx, &o)) == -1 && !ctx.quit)
		log_info("guest reset: restarting");
	if (status == -1)
		status = KVMM_EXIT_OK; /* reset, then quit */

	gdbstub_destroy(ctx.gdb);
	if (ctx.trace)
		fclose(ctx.trace);
	chardev_close(ctx.console);
	chardev_close(ctx.com1_null);
	run_devices_free(&o.dev);
	evloop_destroy(&ctx.loop);
	close(ctx.sigfd);
	return status;
}
