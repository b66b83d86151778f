/*
 * gdbstub.c - the GDB remote serial protocol (RSP) over TCP, for debugging
 * the guest with `gdb -ex 'target remote HOST:PORT'` under either
 * accelerator.  Reference: GDB manual, appendix "Remote Protocol".
 *
 * SHAPE.  One listening socket (gdbstub_create) and one thread that
 * accepts one client at a time and serves it.  The stub talks to the
 * machine only through the accelerator's debugger interface
 * (core/accel.h: accel_debug_ops) and guest memory (gm_ptr).  All-stop
 * model: while the client has the target stopped, every vCPU is paused;
 * `c` resumes them all, `s` resumes one vCPU for one instruction while the
 * others stay paused.  Each vCPU is a GDB thread (id = index + 1).
 *
 * EVENTS.  A vCPU that reaches a breakpoint or finishes a step parks and
 * calls stopped() (any vCPU thread): that records the first report and
 * writes an eventfd the stub's thread polls beside the client socket; the
 * thread then pauses the other vCPUs and sends `T05thread:N;`.  A Ctrl-C
 * byte (0x03) from the client pauses everything and reports `T02` (SIGINT).
 * A client connecting pauses the VM (like QEMU); disconnecting, `D` and
 * `k` drop the breakpoints and resume it (the VM keeps running: stop it
 * from the guest or with Ctrl-A x / SIGTERM).  When the VM stops the client
 * gets `W<status>` (kvmm's exit status) and the connection is closed.
 *
 * LOCKING.  gs->lock guards the attached machine (vm, accel, state) and is
 * held while a packet is handled, so gdbstub_detach() waits for a packet
 * in progress and the machine cannot disappear under it.  ev_lock guards
 * the pending stop report, which vCPU threads write.
 *
 * REGISTERS.  A target description (qXfer:features:read, target.xml)
 * names the i386:x86-64 layout of GDB's 64bit-core.xml + 64bit-sse.xml:
 * rax rbx rcx rdx rsi rdi rbp rsp r8-r15 rip (8 bytes each), eflags and
 * cs ss ds es fs gs (4 each), st0-st7 (10 each), fctrl..fop (4 each),
 * xmm0-15 (16 each), mxcsr (4).  x87 registers read as empty (zeros, FCW
 * 0x37f) and writes to them, to segment selectors and to the x87 words
 * are ignored; GPRs, RIP, RFLAGS, XMM and MXCSR are written through.
 *
 * MEMORY.  m/M addresses are linear (virtual with flat segments): each
 * page is translated through the current thread's vCPU page tables
 * (accel translate: the emu MMU walk, KVM_TRANSLATE), then read or
 * written in guest RAM (writes tell the software CPU's code cache).  MMIO
 * is not reachable.
 *
 * BREAKPOINTS.  Z0 (software) and Z1 (hardware) at linear addresses:
 * under emu an address compare before each instruction (memory is never
 * patched; up to 64), under KVM debug registers (up to 4 in all).
 * Watchpoints (Z2-Z4) are not supported.
 */
#include "debug/gdbstub.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/accel.h"
#include "core/memory.h"
#include "core/vm.h"
#include "util/log.h"

#define GDB_PACKET_MAX 0x4000 /* what we accept and advertise (PacketSize) */
#define GDB_SIGINT  2
#define GDB_SIGTRAP 5

struct gdbstub {
	int listen_fd, client_fd, efd;
	bool wait;
	char where[128];
	pthread_t thread;
	bool quit;                  /* under lock */

	pthread_mutex_t lock;
	struct vm *vm;
	const struct accel_debug_ops *ops;
	void *state;
	bool client_attached;       /* ops->attach(client) done */
	bool running;               /* the client waits for a stop reply */
	int cur;                    /* vCPU of g/m/s (Hg, Hc, the last stop) */
	int last_sig;

	pthread_mutex_t ev_lock;
	bool ev_pending;
	int ev_cpu, ev_sig;
	struct accel_debug_client client;

	/* the packet being received */
	char in[GDB_PACKET_MAX + 4];
	size_t in_len;
	int in_state;               /* 0 idle, 1 data, 2 cksum1, 3 cksum2 */
	unsigned in_ck;
	char ck_hi;
};

static const char target_xml[] =
	"<?xml version=\"1.0\"?>\n"
	"<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n"
	"<target version=\"1.0\">\n"
	"<architecture>i386:x86-64</architecture>\n"
	"<feature name=\"org.gnu.gdb.i386.core\">\n"
	"<flags id=\"i386_eflags\" size=\"4\">"
	"<field name=\"CF\" start=\"0\" end=\"0\"/><field name=\"\" start=\"1\" end=\"1\"/>"
	"<field name=\"PF\" start=\"2\" end=\"2\"/><field name=\"AF\" start=\"4\" end=\"4\"/>"
	"<field name=\"ZF\" start=\"6\" end=\"6\"/><field name=\"SF\" start=\"7\" end=\"7\"/>"
	"<field name=\"TF\" start=\"8\" end=\"8\"/><field name=\"IF\" start=\"9\" end=\"9\"/>"
	"<field name=\"DF\" start=\"10\" end=\"10\"/><field name=\"OF\" start=\"11\" end=\"11\"/>"
	"<field name=\"NT\" start=\"14\" end=\"14\"/><field name=\"RF\" start=\"16\" end=\"16\"/>"
	"<field name=\"VM\" start=\"17\" end=\"17\"/><field name=\"AC\" start=\"18\" end=\"18\"/>"
	"<field name=\"VIF\" start=\"19\" end=\"19\"/><field name=\"VIP\" start=\"20\" end=\"20\"/>"
	"<field name=\"ID\" start=\"21\" end=\"21\"/></flags>\n"
	"<reg name=\"rax\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rbx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rcx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rdx\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rsi\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rdi\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"rbp\" bitsize=\"64\" type=\"data_ptr\"/>"
	"<reg name=\"rsp\" bitsize=\"64\" type=\"data_ptr\"/>"
	"<reg name=\"r8\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r9\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r10\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r11\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r12\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r13\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r14\" bitsize=\"64\" type=\"int64\"/>"
	"<reg name=\"r15\" bitsize=\"64\" type=\"int64\"/>\n"
	"<reg name=\"rip\" bitsize=\"64\" type=\"code_ptr\"/>"
	"<reg name=\"eflags\" bitsize=\"32\" type=\"i386_eflags\"/>"
	"<reg name=\"cs\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"ss\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"ds\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"es\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"fs\" bitsize=\"32\" type=\"int32\"/>"
	"<reg name=\"gs\" bitsize=\"32\" type=\"int32\"/>\n"
	"<reg name=\"st0\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st1\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st2\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st3\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st4\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st5\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st6\" bitsize=\"80\" type=\"i387_ext\"/>"
	"<reg name=\"st7\" bitsize=\"80\" type=\"i387_ext\"/>\n"
	"<reg name=\"fctrl\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fstat\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"ftag\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fiseg\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fioff\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"foseg\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fooff\" bitsize=\"32\" type=\"int\" group=\"float\"/>"
	"<reg name=\"fop\" bitsize=\"32\" type=\"int\" group=\"float\"/>\n"
	"</feature>\n"
	"<feature name=\"org.gnu.gdb.i386.sse\">\n"
	"<vector id=\"v4f\" type=\"ieee_single\" count=\"4\"/>"
	"<vector id=\"v2d\" type=\"ieee_double\" count=\"2\"/>"
	"<vector id=\"v16i8\" type=\"int8\" count=\"16\"/>"
	"<vector id=\"v8i16\" type=\"int16\" count=\"8\"/>"
	"<vector id=\"v4i32\" type=\"int32\" count=\"4\"/>"
	"<vector id=\"v2i64\" type=\"int64\" count=\"2\"/>"
	"<union id=\"vec128\"><field name=\"v4_float\" type=\"v4f\"/>"
	"<field name=\"v2_double\" type=\"v2d\"/><field name=\"v16_int8\" type=\"v16i8\"/>"
	"<field name=\"v8_int16\" type=\"v8i16\"/><field name=\"v4_int32\" type=\"v4i32\"/>"
	"<field name=\"v2_int64\" type=\"v2i64\"/><field name=\"uint128\" type=\"uint128\"/>"
	"</union>\n"
	"<reg name=\"xmm0\" bitsize=\"128\" type=\"vec128\" regnum=\"40\"/>"
	"<reg name=\"xmm1\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm2\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm3\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm4\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm5\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm6\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm7\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm8\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm9\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm10\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm11\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm12\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm13\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm14\" bitsize=\"128\" type=\"vec128\"/>"
	"<reg name=\"xmm15\" bitsize=\"128\" type=\"vec128\"/>\n"
	"<reg name=\"mxcsr\" bitsize=\"32\" type=\"int\" group=\"vector\"/>\n"
	"</feature>\n"
	"</target>\n";

/* ---- the register file in GDB's layout ------------------------------------- */

#define GDB_NR_REGS 57

static unsigned reg_size(int n)
{
	if (n < 17)
		return 8;          /* GPRs, rip */
	if (n < 24)
		return 4;          /* eflags, segments */
	if (n < 32)
		return 10;         /* st0-7 */
	if (n < 40)
		return 4;          /* fctrl..fop */
	if (n < 56)
		return 16;         /* xmm */
	return 4;                  /* mxcsr */
}

static unsigned reg_offset(int n)
{
	unsigned off = 0;

	for (int i = 0; i < n; i++)
		off += reg_size(i);
	return off;
}

/* Serialize into buf (little-endian, the register file); returns bytes. */
static unsigned regs_to_buf(const struct x86_regs_dbg *r, uint8_t *buf)
{
	unsigned len = reg_offset(GDB_NR_REGS);
	uint8_t *p = buf;
	uint32_t v32;

	memset(buf, 0, len);
	memcpy(p, r->gpr, 128);
	p += 128;
	memcpy(p, &r->rip, 8);
	p += 8;
	v32 = (uint32_t)r->rflags;
	memcpy(p, &v32, 4);
	p += 4;
	for (int i = 0; i < 6; i++, p += 4) {
		v32 = r->seg[i];
		memcpy(p, &v32, 4);
	}
	p += 80;                   /* st0-7: zeros */
	v32 = 0x37f;               /* fctrl: the FNINIT value */
	memcpy(p, &v32, 4);
	p += 32;
	memcpy(p, r->xmm, 256);
	p += 256;
	memcpy(p, &r->mxcsr, 4);
	return len;
}

/* Write register n from `val` (reg_size(n) bytes) into *r.  Returns false
 * when the register cannot be written (ignored: selectors, x87). */
static bool reg_from_bytes(struct x86_regs_dbg *r, int n, const uint8_t *val)
{
	uint32_t v32;

	if (n < 16)
		memcpy(&r->gpr[n], val, 8);
	else if (n == 16)
		memcpy(&r->rip, val, 8);
	else if (n == 17) {
		memcpy(&v32, val, 4);
		r->rflags = v32;
	} else if (n >= 40 && n < 56)
		memcpy(r->xmm[n - 40], val, 16);
	else if (n == 56)
		memcpy(&r->mxcsr, val, 4);
	else
		return false;
	return true;
}

/* ---- packets ----------------------------------------------------------------- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void to_hex(char *out, const uint8_t *p, size_t n)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Decode n bytes of hex; false on a bad digit. */
static bool from_hex(uint8_t *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int h = hexval(s[2 * i]), l = h < 0 ? -1 : hexval(s[2 * i + 1]);
		if (h < 0 || l < 0)
			return false;
		out[i] = (uint8_t)(h << 4 | l);
	}
	return true;
}

static void send_all(struct gdbstub *gs, const char *p, size_t n)
{
	while (n && gs->client_fd >= 0) {
		ssize_t w = send(gs->client_fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			log_debug("gdb: send: %s", strerror(errno));
			return; /* the read side notices the close */
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Send `data` (len bytes) as a packet: $data#ck.  '$', '#', '}' and '*'
 * are escaped (binary qXfer data). */
static void send_packet_len(struct gdbstub *gs, const char *data, size_t len)
{
	char *buf = malloc(len * 2 + 8);
	size_t n = 0;
	unsigned ck = 0;

	if (!buf)
		return;
	buf[n++] = '$';
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (c == '$' || c == '#' || c == '}' || c == '*') {
			buf[n++] = '}';
			ck += '}';
			c ^= 0x20;
		}
		buf[n++] = c;
		ck += (uint8_t)c;
	}
	n += (size_t)snprintf(buf + n, 4, "#%02x", ck & 0xff);
	log_debug("gdb: <- %.*s", (int)(len > 200 ? 200 : len), data);
	send_all(gs, buf, n);
	free(buf);
}

static void send_packet(struct gdbstub *gs, const char *s)
{
	send_packet_len(gs, s, strlen(s));
}

static void send_error(struct gdbstub *gs, int err)
{
	char b[8];

	snprintf(b, sizeof(b), "E%02x", err & 0xff);
	send_packet(gs, b);
}

/* ---- machine access (under gs->lock, vCPUs paused) --------------------------- */

static int nr_cpus(struct gdbstub *gs)
{
	return gs->vm ? gs->vm->nr_cpus : 0;
}

/* Copy guest memory at linear `addr` (write: from buf).  Returns the
 * bytes done (< len when a page is not mapped or not RAM). */
static size_t access_mem(struct gdbstub *gs, uint64_t addr, uint8_t *buf,
			 size_t len, bool write)
{
	size_t done = 0;

	while (done < len) {
		uint64_t lin = addr + done, gpa;
		size_t n = 0x1000 - (lin & 0xfff);
		uint8_t *p;

		if (n > len - done)
			n = len - done;
		if (gs->ops->translate(gs->state, gs->cur, lin, &gpa))
			break;
		p = gm_ptr(&gs->vm->mem, gpa, n);
		if (!p)
			break;
		if (write) {
			memcpy(p, buf + done, n);
			gm_note_write(&gs->vm->mem, gpa, n);
		} else {
			memcpy(buf + done, p, n);
		}
		done += n;
	}
	return done;
}

static void send_stop(struct gdbstub *gs, int sig, int cpu)
{
	char b[48];

	gs->last_sig = sig;
	gs->cur = cpu;
	snprintf(b, sizeof(b), "T%02xthread:%x;", sig, cpu + 1);
	send_packet(gs, b);
}

/* Pause every vCPU (if running) and report `sig` on `cpu`. */
static void stop_and_report(struct gdbstub *gs, int sig, int cpu)
{
	gs->ops->pause_all(gs->state);
	gs->running = false;
	send_stop(gs, sig, cpu);
}

static void do_resume(struct gdbstub *gs, int step_cpu)
{
	pthread_mutex_lock(&gs->ev_lock);
	gs->ev_pending = false;
	pthread_mutex_unlock(&gs->ev_lock);
	gs->running = true;
	gs->ops->resume(gs->state, step_cpu);
}

/* The vCPU's (any thread) report: breakpoint or step done. */
static void on_vcpu_stopped(void *opaque, int cpu, int sig)
{
	struct gdbstub *gs = opaque;
	uint64_t one = 1;

	pthread_mutex_lock(&gs->ev_lock);
	if (!gs->ev_pending) {
		gs->ev_pending = true;
		gs->ev_cpu = cpu;
		gs->ev_sig = sig;
	}
	pthread_mutex_unlock(&gs->ev_lock);
	if (write(gs->efd, &one, sizeof(one)) < 0) {
	}
}

/* thread-id field: -1 = all, 0 = any, else index + 1.  Returns the
 * vCPU, -1 for all/any, or -2 when invalid. */
static int parse_thread(struct gdbstub *gs, const char *s)
{
	long t;
	char *end;

	if (!strncmp(s, "-1", 2))
		return -1;
	t = strtol(s, &end, 16);
	if (end == s)
		return -2;
	if (t == 0)
		return -1;
	if (t < 1 || t > nr_cpus(gs))
		return -2;
	return (int)t - 1;
}

static void handle_vcont(struct gdbstub *gs, const char *p)
{
	int step_cpu = -2; /* none */
	bool any = false;

	/* vCont;action[:thread];... : a step for one thread, continue for
	 * the rest (all-stop: the others stay paused while it steps). */
	while (*p == ';') {
		char act = p[1];
		int t = gs->cur;

		p += 2;
		if (act == 'C' || act == 'S')
			while (*p && *p != ':' && *p != ';')
				p++;
		if (*p == ':') {
			t = parse_thread(gs, p + 1);
			while (*p && *p != ';')
				p++;
			if (t < 0)
				t = gs->cur;
		}
		if ((act == 's' || act == 'S') && step_cpu == -2)
			step_cpu = t;
		else if (act == 'c' || act == 'C')
			any = true;
		else if (act != 's' && act != 'S') {
			send_packet(gs, ""); /* vCont;t, r: not supported */
			return;
		}
	}
	if (step_cpu >= 0)
		do_resume(gs, step_cpu);
	else if (any)
		do_resume(gs, -1);
	else
		send_error(gs, 1);
}

static void handle_query(struct gdbstub *gs, const char *p)
{
	char buf[512];

	if (!strncmp(p, "qSupported", 10)) {
		snprintf(buf, sizeof(buf), "PacketSize=%x;qXfer:features:read+;vContSupported+",
			 GDB_PACKET_MAX);
		send_packet(gs, buf);
	} else if (!strncmp(p, "qXfer:features:read:target.xml:", 31)) {
		unsigned long off, len;
		size_t total = sizeof(target_xml) - 1, n;
		char *chunk;

		if (sscanf(p + 31, "%lx,%lx", &off, &len) != 2) {
			send_error(gs, 1);
			return;
		}
		if (off >= total) {
			send_packet(gs, "l");
			return;
		}
		if (len > GDB_PACKET_MAX / 2)
			len = GDB_PACKET_MAX / 2;
		n = total - off < len ? total - off : len;
		chunk = malloc(n + 1);
		if (!chunk) {
			send_error(gs, 12);
			return;
		}
		chunk[0] = off + n < total ? 'm' : 'l';
		memcpy(chunk + 1, target_xml + off, n);
		send_packet_len(gs, chunk, n + 1);
		free(chunk);
	} else if (!strncmp(p, "qXfer:", 6)) {
		send_packet(gs, "");
	} else if (!strcmp(p, "qC")) {
		snprintf(buf, sizeof(buf), "QC%x", gs->cur + 1);
		send_packet(gs, buf);
	} else if (!strcmp(p, "qfThreadInfo")) {
		size_t n = 0;
		buf[n++] = 'm';
		for (int i = 0; i < nr_cpus(gs) && n < sizeof(buf) - 16; i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%x",
					      i ? "," : "", i + 1);
		buf[n] = '\0';
		send_packet(gs, buf);
	} else if (!strcmp(p, "qsThreadInfo")) {
		send_packet(gs, "l");
	} else if (!strncmp(p, "qThreadExtraInfo,", 17)) {
		int t = parse_thread(gs, p + 17);
		char text[32];
		snprintf(text, sizeof(text), "vCPU %d", t < 0 ? 0 : t);
		to_hex(buf, (const uint8_t *)text, strlen(text));
		send_packet(gs, buf);
	} else if (!strcmp(p, "qAttached")) {
		send_packet(gs, "1");
	} else {
		send_packet(gs, "");
	}
}

/* Detach the client: drop breakpoints, resume the VM. */
static void client_detach(struct gdbstub *gs)
{
	if (gs->client_attached && gs->ops)
		gs->ops->attach(gs->state, NULL);
	gs->client_attached = false;
	gs->running = false;
}

/* Returns false when the connection must be closed. */
static bool handle_packet(struct gdbstub *gs, char *p)
{
	struct x86_regs_dbg regs;
	uint8_t rbuf[600];
	char hbuf[1300];
	unsigned long long addr, len;
	int n, t;

	log_debug("gdb: -> %s", p);
	if (!gs->ops) {
		send_error(gs, 1);
		return true;
	}
	switch (p[0]) {
	case '?':
		send_stop(gs, gs->last_sig, gs->cur);
		break;
	case 'q':
		handle_query(gs, p);
		break;
	case 'Q':
		send_packet(gs, "");
		break;
	case 'H':
		t = parse_thread(gs, p + 2);
		if (t == -2) {
			send_error(gs, 1);
			break;
		}
		if (t >= 0)
			gs->cur = t;
		send_packet(gs, "OK");
		break;
	case 'T':
		send_packet(gs, parse_thread(gs, p + 1) >= 0 ? "OK" : "E01");
		break;
	case 'g':
		if (gs->ops->get_regs(gs->state, gs->cur, &regs)) {
			send_error(gs, 14);
			break;
		}
		n = (int)regs_to_buf(&regs, rbuf);
		to_hex(hbuf, rbuf, (size_t)n);
		send_packet(gs, hbuf);
		break;
	case 'G': {
		unsigned total = reg_offset(GDB_NR_REGS);
		size_t have = strlen(p + 1) / 2;

		if (gs->ops->get_regs(gs->state, gs->cur, &regs) ||
		    have > total || !from_hex(rbuf, p + 1, have)) {
			send_error(gs, 22);
			break;
		}
		for (int i = 0; i < GDB_NR_REGS; i++)
			if (reg_offset(i) + reg_size(i) <= have)
				reg_from_bytes(&regs, i, rbuf + reg_offset(i));
		send_packet(gs, gs->ops->set_regs(gs->state, gs->cur, &regs) ?
				    "E0e" : "OK");
		break;
	}
	case 'p':
		n = (int)strtol(p + 1, NULL, 16);
		if (n < 0 || n >= GDB_NR_REGS ||
		    gs->ops->get_regs(gs->state, gs->cur, &regs)) {
			send_error(gs, 22);
			break;
		}
		regs_to_buf(&regs, rbuf);
		to_hex(hbuf, rbuf + reg_offset(n), reg_size(n));
		send_packet(gs, hbuf);
		break;
	case 'P': {
		char *eq = strchr(p, '=');

		n = (int)strtol(p + 1, NULL, 16);
		if (!eq || n < 0 || n >= GDB_NR_REGS ||
		    strlen(eq + 1) < 2 * reg_size(n) ||
		    !from_hex(rbuf, eq + 1, reg_size(n)) ||
		    gs->ops->get_regs(gs->state, gs->cur, &regs)) {
			send_error(gs, 22);
			break;
		}
		if (reg_from_bytes(&regs, n, rbuf) &&
		    gs->ops->set_regs(gs->state, gs->cur, &regs)) {
			send_error(gs, 14);
			break;
		}
		send_packet(gs, "OK");
		break;
	}
	case 'm': {
		uint8_t *mem;
		char *hex;
		size_t got;

		if (sscanf(p + 1, "%llx,%llx", &addr, &len) != 2) {
			send_error(gs, 22);
			break;
		}
		if (len > GDB_PACKET_MAX / 2)
			len = GDB_PACKET_MAX / 2;
		mem = malloc(len + 1);
		hex = malloc(2 * len + 1);
		if (!mem || !hex) {
			free(mem);
			free(hex);
			send_error(gs, 12);
			break;
		}
		got = access_mem(gs, addr, mem, len, false);
		if (!got && len) {
			send_error(gs, 14);
		} else {
			to_hex(hex, mem, got);
			send_packet(gs, hex);
		}
		free(mem);
		free(hex);
		break;
	}
	case 'M': {
		char *colon = strchr(p, ':');
		uint8_t *mem;

		if (!colon || sscanf(p + 1, "%llx,%llx", &addr, &len) != 2 ||
		    strlen(colon + 1) < 2 * len || len > GDB_PACKET_MAX) {
			send_error(gs, 22);
			break;
		}
		mem = malloc(len + 1);
		if (!mem || !from_hex(mem, colon + 1, len)) {
			free(mem);
			send_error(gs, 22);
			break;
		}
		send_packet(gs, access_mem(gs, addr, mem, len, true) == len ?
				    "OK" : "E0e");
		free(mem);
		break;
	}
	case 'c':
	case 'C':
		do_resume(gs, -1);
		break;
	case 's':
	case 'S':
		do_resume(gs, gs->cur);
		break;
	case 'v':
		if (!strcmp(p, "vCont?"))
			send_packet(gs, "vCont;c;C;s;S");
		else if (!strncmp(p, "vCont;", 6))
			handle_vcont(gs, p + 5);
		else
			send_packet(gs, ""); /* vMustReplyEmpty, vKill, ... */
		break;
	case 'Z':
	case 'z':
		if ((p[1] != '0' && p[1] != '1') || p[2] != ',' ||
		    sscanf(p + 3, "%llx", &addr) != 1) {
			send_packet(gs, ""); /* watchpoints: unsupported */
			break;
		}
		n = p[0] == 'Z' ?
			gs->ops->set_breakpoint(gs->state, p[1] == '0' ? ACCEL_BP_SW : ACCEL_BP_HW, addr) :
			gs->ops->clear_breakpoint(gs->state, p[1] == '0' ? ACCEL_BP_SW : ACCEL_BP_HW, addr);
		if (n)
			send_error(gs, -n);
		else
			send_packet(gs, "OK");
		break;
	case 'D':
		send_packet(gs, "OK");
		client_detach(gs);
		return false;
	case 'k':
		client_detach(gs);
		return false;
	default:
		send_packet(gs, "");
	}
	return true;
}

/* Feed received bytes; returns false to close the connection. */
static bool feed(struct gdbstub *gs, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = data[i];

		switch (gs->in_state) {
		case 0:
			if (c == '$') {
				gs->in_state = 1;
				gs->in_len = 0;
				gs->in_ck = 0;
			} else if (c == 0x03) {
				pthread_mutex_lock(&gs->lock);
				if (gs->ops && gs->running)
					stop_and_report(gs, GDB_SIGINT, gs->cur);
				pthread_mutex_unlock(&gs->lock);
			} /* '+', '-': acks of ours; no retransmission */
			break;
		case 1:
			if (c == '#') {
				gs->in_state = 2;
			} else if (gs->in_len < GDB_PACKET_MAX) {
				gs->in[gs->in_len++] = c;
				gs->in_ck += (uint8_t)c;
			} else {
				gs->in_state = 0; /* too long: dropped, nak */
				send_all(gs, "-", 1);
			}
			break;
		case 2:
			gs->ck_hi = c;
			gs->in_state = 3;
			break;
		case 3: {
			int h = hexval(gs->ck_hi), l = hexval(c);
			bool ok;

			gs->in_state = 0;
			if (h < 0 || l < 0 || (unsigned)(h << 4 | l) != (gs->in_ck & 0xff)) {
				send_all(gs, "-", 1);
				break;
			}
			send_all(gs, "+", 1);
			gs->in[gs->in_len] = '\0';
			/* unescape '}' x ^ 0x20 (binary data: X packets) */
			{
				size_t o = 0;
				for (size_t j = 0; j < gs->in_len; j++)
					gs->in[o++] = gs->in[j] == '}' && j + 1 < gs->in_len ?
						      gs->in[++j] ^ 0x20 : gs->in[j];
				gs->in[o] = '\0';
			}
			pthread_mutex_lock(&gs->lock);
			ok = handle_packet(gs, gs->in);
			pthread_mutex_unlock(&gs->lock);
			if (!ok)
				return false;
			break;
		}
		}
	}
	return true;
}

/* ---- the thread ------------------------------------------------------------- */

static void start_session(struct gdbstub *gs)
{
	pthread_mutex_lock(&gs->lock);
	gs->in_state = 0;
	gs->cur = 0;
	gs->last_sig = GDB_SIGTRAP;
	gs->running = false;
	if (gs->ops && !gs->client_attached) {
		gs->ops->attach(gs->state, &gs->client);
		gs->client_attached = true;
		gs->ops->pause_all(gs->state);
	}
	pthread_mutex_unlock(&gs->lock);
}

static void end_session(struct gdbstub *gs)
{
	pthread_mutex_lock(&gs->lock);
	client_detach(gs);
	if (gs->client_fd >= 0)
		close(gs->client_fd);
	gs->client_fd = -1;
	pthread_mutex_unlock(&gs->lock);
	log_info("gdb: client disconnected");
}

static void handle_event(struct gdbstub *gs)
{
	uint64_t v;
	bool pending;
	int cpu, sig;

	if (read(gs->efd, &v, sizeof(v)) < 0) {
	}
	pthread_mutex_lock(&gs->ev_lock);
	pending = gs->ev_pending;
	cpu = gs->ev_cpu;
	sig = gs->ev_sig;
	gs->ev_pending = false;
	pthread_mutex_unlock(&gs->ev_lock);
	pthread_mutex_lock(&gs->lock);
	if (pending && gs->ops && gs->running && gs->client_fd >= 0)
		stop_and_report(gs, sig, cpu);
	pthread_mutex_unlock(&gs->lock);
}

static void *gdb_thread(void *arg)
{
	struct gdbstub *gs = arg;
	char buf[4096];

	pthread_setname_np(pthread_self(), "gdbstub");
	for (;;) {
		struct pollfd pf[2] = {
			{ .fd = gs->client_fd >= 0 ? gs->client_fd : gs->listen_fd,
			  .events = POLLIN },
			{ .fd = gs->efd, .events = POLLIN },
		};
		bool quit, machine;

		pthread_mutex_lock(&gs->lock);
		quit = gs->quit;
		machine = gs->ops != NULL;
		pthread_mutex_unlock(&gs->lock);
		if (quit)
			break;
		/* A client that connected while no machine is attached (before
		 * the first one is built, during a reset) waits: its packets are
		 * read once gdbstub_attach() wakes us. */
		if (gs->client_fd >= 0 && !machine)
			pf[0].fd = -1;
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("gdb: poll: %s", strerror(errno));
			break;
		}
		if (pf[1].revents & POLLIN)
			handle_event(gs);
		if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (gs->client_fd < 0) {
			int fd = accept4(gs->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			int one = 1;

			if (fd < 0)
				continue;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			pthread_mutex_lock(&gs->lock);
			gs->client_fd = fd;
			pthread_mutex_unlock(&gs->lock);
			log_info("gdb: client connected");
			start_session(gs);
			continue;
		}
		ssize_t n = recv(gs->client_fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || !feed(gs, buf, (size_t)n))
			end_session(gs);
	}
	return NULL;
}

/* ---- public ------------------------------------------------------------------- */

static int listen_on(const char *spec, char *where, size_t wlen)
{
	char host[96];
	const char *hp, *colon;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res, *ai;
	int fd = -1, r, e = EINVAL;

	if (strncmp(spec, "tcp:", 4)) {
		log_error("--gdb %s: expected tcp:HOST:PORT (e.g. tcp:127.0.0.1:1234)", spec);
		return -EINVAL;
	}
	hp = spec + 4;
	colon = strrchr(hp, ':');
	if (!colon || colon == hp || (size_t)(colon - hp) >= sizeof(host) || !colon[1]) {
		log_error("--gdb %s: expected tcp:HOST:PORT (e.g. tcp:127.0.0.1:1234)", spec);
		return -EINVAL;
	}
	memcpy(host, hp, (size_t)(colon - hp));
	host[colon - hp] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	r = getaddrinfo(host, colon + 1, &hints, &res);
	if (r) {
		log_error("--gdb %s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0)
			break;
		e = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		log_error("--gdb %s: %s", spec, strerror(e));
		return -e;
	}
	snprintf(where, wlen, "%s:%s", host, colon + 1);
	return fd;
}

int gdbstub_create(const char *spec, bool wait, struct gdbstub **out)
{
	struct gdbstub *gs = calloc(1, sizeof(*gs));
	int r;

	if (!gs)
		return -ENOMEM;
	gs->client_fd = -1;
	gs->efd = -1;
	gs->wait = wait;
	pthread_mutex_init(&gs->lock, NULL);
	pthread_mutex_init(&gs->ev_lock, NULL);
	gs->client.stopped = on_vcpu_stopped;
	gs->client.opaque = gs;
	gs->listen_fd = listen_on(spec, gs->where, sizeof(gs->where));
	if (gs->listen_fd < 0) {
		r = gs->listen_fd;
		goto fail;
	}
	gs->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (gs->efd < 0) {
		r = -errno;
		log_error("gdb: eventfd: %s", strerror(-r));
		goto fail;
	}
	r = pthread_create(&gs->thread, NULL, gdb_thread, gs);
	if (r) {
		log_error("gdb: cannot start the stub's thread: %s", strerror(r));
		r = -r;
		goto fail;
	}
	if (wait)
		log_warn("waiting for GDB on %s before running the guest "
			 "(gdb -ex 'target remote %s')", gs->where, gs->where);
	else
		log_info("GDB stub listening on %s", gs->where);
	*out = gs;
	return 0;
fail:
	if (gs->listen_fd >= 0)
		close(gs->listen_fd);
	if (gs->efd >= 0)
		close(gs->efd);
	pthread_mutex_destroy(&gs->lock);
	pthread_mutex_destroy(&gs->ev_lock);
	free(gs);
	return r;
}

int gdbstub_attach(struct gdbstub *gs, struct vm *vm,
		   const struct accel_ops *accel, void *accel_state)
{
	if (!accel->debug) {
		log_error("--gdb: the %s accelerator has no debugger interface",
			  accel->name);
		return -ENOTSUP;
	}
	pthread_mutex_lock(&gs->lock);
	gs->vm = vm;
	gs->ops = accel->debug;
	gs->state = accel_state;
	gs->cur = 0;
	gs->running = false;
	if (gs->client_fd >= 0 && !gs->client_attached) {
		/* A client stayed connected across a reset. */
		gs->ops->attach(gs->state, &gs->client);
		gs->client_attached = true;
		gs->ops->pause_all(gs->state);
	} else if (gs->wait) {
		gs->ops->pause_all(gs->state);
	}
	pthread_mutex_unlock(&gs->lock);
	if (write(gs->efd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0) {
	}
	return 0;
}

void gdbstub_detach(struct gdbstub *gs, int status)
{
	char b[8];

	if (!gs)
		return;
	pthread_mutex_lock(&gs->lock);
	if (gs->client_fd >= 0) {
		snprintf(b, sizeof(b), "W%02x", status & 0xff);
		send_packet(gs, b);
		shutdown(gs->client_fd, SHUT_RDWR); /* the thread closes it */
	}
	gs->client_attached = false;
	gs->running = false;
	gs->ops = NULL;
	gs->vm = NULL;
	gs->state = NULL;
	pthread_mutex_unlock(&gs->lock);
}

void gdbstub_destroy(struct gdbstub *gs)
{
	uint64_t one = 1;

	if (!gs)
		return;
	pthread_mutex_lock(&gs->lock);
	gs->quit = true;
	pthread_mutex_unlock(&gs->lock);
	if (write(gs->efd, &one, sizeof(one)) < 0) {
	}
	pthread_join(gs->thread, NULL);
	if (gs->client_fd >= 0)
		close(gs->client_fd);
	close(gs->listen_fd);
	close(gs->efd);
	pthread_mutex_destroy(&gs->lock);
	pthread_mutex_destroy(&gs->ev_lock);
	free(gs);
}
