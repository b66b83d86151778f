/*
 * i8042.c - the PC/AT keyboard controller, a PS/2 keyboard and a PS/2 mouse.
 *
 * Why model it at all when kvmm's consoles are serial: every PC operating
 * system probes it, Linux's i8042 and atkbd/psmouse drivers wait up to
 * half a second per unanswered byte (I8042_CTL_TIMEOUT, the PS/2 command
 * timeouts), boot code uses it to open the A20 gate, and command 0xFE is
 * the oldest way to reboot a PC (Linux's reboot=kbd, the default fallback).
 * So the aim is a controller whose every command is answered at once,
 * exactly as Linux's probe expects, which makes the probe take no time.
 *
 * Ports
 *   0x60 read   output buffer (the next byte from keyboard, mouse or
 *               controller)
 *   0x60 write  data: a parameter of the last controller command, or a
 *               command for the keyboard
 *   0x64 read   status: OBF(0) IBF(1) SYS(2) CMD/DATA(3) KEYLOCK(4, 1 =
 *               not locked) AUXB(5, the output buffer holds mouse data)
 *   0x64 write  controller command
 * Input is consumed instantly, so IBF always reads 0.
 *
 * Controller commands (the AT/PS2 set Linux, SeaBIOS and boot loaders use)
 *   0x20-0x3F  read internal RAM byte n (0x20: the command byte, CCB)
 *   0x60-0x7F  write internal RAM byte n (0x60: CCB) with the next data byte
 *   0xA4       password installed? -> 0xF1 (no)
 *   0xA7/0xA8  disable/enable the aux (mouse) interface (CCB bit 5)
 *   0xA9       aux interface test -> 0x00 (ok)
 *   0xAA       controller self test -> 0x55, sets the SYS flag
 *   0xAB       keyboard interface test -> 0x00 (ok)
 *   0xAD/0xAE  disable/enable the keyboard interface (CCB bit 4)
 *   0xC0       read input port -> 0x80 (keyboard not inhibited)
 *   0xD0       read output port; 0xD1 write it (next byte): bit 0 = 0
 *              resets the machine, bit 1 is the A20 gate
 *   0xD2/0xD3  next byte appears in the output buffer as keyboard / mouse
 *              data (0xD3 is Linux's AUX_LOOP test)
 *   0xD4       next byte goes to the mouse
 *   0xDD/0xDF  A20 off/on
 *   0xE0       read test inputs -> 0x00
 *   0xF0-0xFF  pulse output port bits 0-3 low for each 0 bit in the
 *              command's low nibble: bit 0 pulsed = reset (0xFE)
 * Others are ignored.  The A20 bit is kept and reads back but has no effect:
 * under KVM the gate cannot be emulated, and no guest kvmm targets needs
 * the 1 MiB wrap-around.
 *
 * Command byte bits: 0 KBD IRQ enable, 1 AUX IRQ enable, 2 SYS flag,
 * 4 keyboard disabled, 5 aux disabled, 6 translate to scancode set 1.
 * Power-on value 0x65 (translate, aux disabled, SYS, keyboard IRQ on): what
 * a PC BIOS leaves behind, so that a guest booted without firmware finds
 * the controller in the state it would after POST.
 *
 * Output path.  One output buffer byte, fed from three queues of 16 bytes
 * in priority order: controller responses (tagged as keyboard or mouse
 * bytes), then keyboard bytes if the keyboard interface is enabled, then
 * mouse bytes if the aux interface is enabled (a disabled interface holds
 * its device's bytes back, as its clock line is inhibited).  IRQ 1 is
 * "buffer full with a non-mouse byte and CCB bit 0", IRQ 12 "full with a
 * mouse byte and CCB bit 1".  The ISA lines are edge-triggered, so after
 * the guest reads a byte both lines are dropped before the next byte is
 * loaded: each byte gives a new rising edge.  Controller responses can
 * raise IRQ 1 like keyboard bytes (so does a real 8042; Linux's command
 * path reads them by polling and its handler ignores an empty buffer).
 *
 * Aux port: a real PS/2 mouse, minimal but complete enough that nothing
 * times out.  Linux's i8042_check_aux() runs AUX_LOOP (0xD3) and expects
 * the byte back flagged AUXB, then toggles CCB bit 5 and reads it back,
 * then checks that IRQ 12 is delivered for an AUX_LOOP byte; psmouse then
 * resets the mouse and probes a dozen protocol extensions with standard
 * commands.  Answering every byte at once (0xFA and the documented
 * response bytes, 0xFE for commands a plain mouse does not know) makes all
 * of it finish in a few hundred port accesses and leaves a "PS/2 Generic
 * Mouse".  The alternative, reporting no aux port, only works if the loop
 * test fails, which costs a 500 ms timeout in Linux.
 *
 * Keyboard: an MF2 keyboard answering reset (0xFA 0xAA), identify (0xFA
 * 0xAB 0x83, or 0xAB 0x41 with translation on, as the 8042 translates the
 * second byte), echo, LEDs, typematic, scancode set get/set, enable/disable
 * scanning, set-3 key type commands; unknown commands get 0xFE (resend),
 * which Linux treats as a refusal.  No key events are generated yet (a
 * graphical console would add an input entry point).
 *
 * State and locking: everything under one mutex; interrupt lines are driven
 * under it; vm_request_stop() is called after it is dropped.  All of it is
 * saved and validated on load.
 */
#include "hw/i8042.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/vm.h"
#include "hw/pc.h"

/* Status register */
#define STS_OBF     0x01
#define STS_SYS     0x04
#define STS_CMD     0x08
#define STS_UNLOCKED 0x10
#define STS_AUXB    0x20

/* Command byte */
#define CCB_KBD_INT  0x01
#define CCB_AUX_INT  0x02
#define CCB_SYS      0x04
#define CCB_KBD_DIS  0x10
#define CCB_AUX_DIS  0x20
#define CCB_XLATE    0x40
#define CCB_POWER_ON (CCB_XLATE | CCB_AUX_DIS | CCB_SYS | CCB_KBD_INT)

/* Output port */
#define OUT_RESET   0x01 /* 0 = hold the CPU in reset */
#define OUT_A20     0x02
#define OUT_OBF_KBD 0x10
#define OUT_OBF_AUX 0x20
#define OUT_POWER_ON (OUT_RESET | OUT_A20)

/* PS/2 replies */
#define PS2_ACK     0xfa
#define PS2_RESEND  0xfe
#define PS2_BAT_OK  0xaa
#define PS2_ECHO    0xee

#define KBD_TYPEMATIC_DEFAULT 0x2b /* 10.9 cps, 500 ms */
#define AUX_RATE_DEFAULT 100       /* samples/s */
#define AUX_RES_DEFAULT  2         /* 4 counts/mm */

#define Q_SIZE 16
#define I8042_STATE_VERSION 1

enum src { SRC_KBD = 0, SRC_AUX = 1 }; /* what the output byte looks like */

struct byteq {
	uint8_t data[Q_SIZE];
	uint8_t src[Q_SIZE]; /* enum src, used by the controller queue */
	unsigned head, count;
};

struct ps2_kbd {
	uint8_t pending;   /* command waiting for its parameter, or 0 */
	uint8_t leds, typematic, set;
	bool scanning;
	uint8_t last;      /* last byte sent, for 0xFE resend */
};

struct ps2_aux {
	uint8_t pending;
	uint8_t rate, res;
	bool scale21, remote, wrap, reporting;
	uint8_t last;
};

struct i8042 {
	struct vm *vm;
	pthread_mutex_t lock;

	uint8_t ram[32];     /* ram[0] is the command byte */
	bool sys;            /* status SYS flag */
	bool cmd;            /* last write went to 0x64 */
	uint8_t outport;     /* bits 0-3, 6-7 as written; 4-5 computed */
	uint8_t pending;     /* controller command awaiting data, or 0 */
	bool obf;
	uint8_t obuf;
	uint8_t obuf_src;
	struct byteq ctrlq, kbdq, auxq;
	struct ps2_kbd kbd;
	struct ps2_aux aux;

	bool irq1, irq12;    /* levels driven (not saved) */
};

static void q_clear(struct byteq *q)
{
	q->head = q->count = 0;
}

static void q_push(struct byteq *q, uint8_t b, uint8_t src)
{
	unsigned i;

	if (q->count == Q_SIZE)
		return; /* device buffer overrun: the byte is lost */
	i = (q->head + q->count) % Q_SIZE;
	q->data[i] = b;
	q->src[i] = src;
	q->count++;
}

static uint8_t q_pop(struct byteq *q, uint8_t *src)
{
	uint8_t b = q->data[q->head];

	*src = q->src[q->head];
	q->head = (q->head + 1) % Q_SIZE;
	q->count--;
	return b;
}

static uint8_t ccb(const struct i8042 *k)
{
	return k->ram[0];
}

static void drive_irqs(struct i8042 *k, bool l1, bool l12, bool force)
{
	if (l1 != k->irq1 || force) {
		k->irq1 = l1;
		irq_set_level(&k->vm->irq, PC_IRQ_KBD, l1);
	}
	if (l12 != k->irq12 || force) {
		k->irq12 = l12;
		irq_set_level(&k->vm->irq, PC_IRQ_MOUSE, l12);
	}
}

/* Load the output buffer if it is empty, then drive the lines. */
static void update(struct i8042 *k)
{
	uint8_t src;

	if (!k->obf) {
		if (k->ctrlq.count) {
			k->obuf = q_pop(&k->ctrlq, &src);
			k->obuf_src = src;
			k->obf = true;
		} else if (k->kbdq.count && !(ccb(k) & CCB_KBD_DIS)) {
			k->obuf = q_pop(&k->kbdq, &src);
			k->obuf_src = SRC_KBD;
			k->obf = true;
		} else if (k->auxq.count && !(ccb(k) & CCB_AUX_DIS)) {
			k->obuf = q_pop(&k->auxq, &src);
			k->obuf_src = SRC_AUX;
			k->obf = true;
		}
	}
	drive_irqs(k,
		   k->obf && k->obuf_src == SRC_KBD && (ccb(k) & CCB_KBD_INT),
		   k->obf && k->obuf_src == SRC_AUX && (ccb(k) & CCB_AUX_INT),
		   false);
}

static void ctrl_reply(struct i8042 *k, uint8_t b)
{
	q_push(&k->ctrlq, b, SRC_KBD);
}

/* PS/2 keyboard */

static void kbd_send(struct i8042 *k, uint8_t b)
{
	k->kbd.last = b;
	q_push(&k->kbdq, b, SRC_KBD);
}

static void kbd_defaults(struct ps2_kbd *kb)
{
	kb->pending = 0;
	kb->leds = 0;
	kb->typematic = KBD_TYPEMATIC_DEFAULT;
	kb->set = 2;
}

/* The keyboard's bytes as the guest sees them through 8042 translation
 * (only the ones a command reply can contain need it). */
static uint8_t kbd_xlate(const struct i8042 *k, uint8_t b)
{
	if (!(ccb(k) & CCB_XLATE))
		return b;
	switch (b) {
	case 0x01: return 0x43;
	case 0x02: return 0x41;
	case 0x03: return 0x3f;
	case 0x83: return 0x41;
	default: return b;
	}
}

static void kbd_write(struct i8042 *k, uint8_t v)
{
	struct ps2_kbd *kb = &k->kbd;
	uint8_t cmd = kb->pending;

	if (cmd) {
		kb->pending = 0;
		switch (cmd) {
		case 0xed:
			kb->leds = v & 7;
			kbd_send(k, PS2_ACK);
			return;
		case 0xf3:
			kb->typematic = v & 0x7f;
			kbd_send(k, PS2_ACK);
			return;
		case 0xf0:
			if (v == 0) {
				kbd_send(k, PS2_ACK);
				kbd_send(k, kbd_xlate(k, kb->set));
			} else if (v <= 3) {
				kb->set = v;
				kbd_send(k, PS2_ACK);
			} else {
				kbd_send(k, PS2_RESEND);
			}
			return;
		}
	}
	switch (v) {
	case 0xed: /* set LEDs */
	case 0xf3: /* set typematic rate/delay */
	case 0xf0: /* get/set scancode set */
		kbd_send(k, PS2_ACK);
		kb->pending = v;
		break;
	case 0xee:
		kbd_send(k, PS2_ECHO);
		break;
	case 0xf2: /* identify: MF2 keyboard */
		kbd_send(k, PS2_ACK);
		kbd_send(k, 0xab);
		kbd_send(k, kbd_xlate(k, 0x83));
		break;
	case 0xf4:
		kb->scanning = true;
		kbd_send(k, PS2_ACK);
		break;
	case 0xf5: /* disable scanning and restore defaults */
		kbd_defaults(kb);
		kb->scanning = false;
		kbd_send(k, PS2_ACK);
		break;
	case 0xf6: /* restore defaults */
		kbd_defaults(kb);
		kbd_send(k, PS2_ACK);
		break;
	case 0xf7: case 0xf8: case 0xf9: case 0xfa:
	case 0xfb: case 0xfc: case 0xfd: /* set-3 key types: accepted */
		kbd_send(k, PS2_ACK);
		break;
	case 0xfe:
		kbd_send(k, kb->last);
		break;
	case 0xff: /* reset and self test (BAT) */
		kbd_defaults(kb);
		kb->scanning = true;
		kbd_send(k, PS2_ACK);
		kbd_send(k, PS2_BAT_OK);
		break;
	default:
		kbd_send(k, PS2_RESEND);
		break;
	}
}

/* PS/2 mouse */

static void aux_send(struct i8042 *k, uint8_t b)
{
	k->aux.last = b;
	q_push(&k->auxq, b, SRC_AUX);
}

static void aux_defaults(struct ps2_aux *m)
{
	m->pending = 0;
	m->rate = AUX_RATE_DEFAULT;
	m->res = AUX_RES_DEFAULT;
	m->scale21 = false;
	m->remote = false;
	m->reporting = false;
}

static void aux_write(struct i8042 *k, uint8_t v)
{
	struct ps2_aux *m = &k->aux;
	uint8_t cmd = m->pending;

	if (m->wrap && v != 0xec && v != 0xff) {
		aux_send(k, v); /* wrap mode echoes */
		return;
	}
	if (cmd) {
		m->pending = 0;
		if (cmd == 0xf3)
			m->rate = v;
		else /* 0xe8 */
			m->res = v & 3;
		aux_send(k, PS2_ACK);
		return;
	}
	switch (v) {
	case 0xe6:
		m->scale21 = false;
		aux_send(k, PS2_ACK);
		break;
	case 0xe7:
		m->scale21 = true;
		aux_send(k, PS2_ACK);
		break;
	case 0xe8: /* set resolution */
	case 0xf3: /* set sample rate */
		m->pending = v;
		aux_send(k, PS2_ACK);
		break;
	case 0xe9: /* status request */
		aux_send(k, PS2_ACK);
		aux_send(k, (uint8_t)((m->remote ? 0x40 : 0) |
				      (m->reporting ? 0x20 : 0) |
				      (m->scale21 ? 0x10 : 0)));
		aux_send(k, m->res);
		aux_send(k, m->rate);
		break;
	case 0xea:
		m->remote = false;
		aux_send(k, PS2_ACK);
		break;
	case 0xeb: /* read data: one empty movement packet */
		aux_send(k, PS2_ACK);
		aux_send(k, 0x08);
		aux_send(k, 0x00);
		aux_send(k, 0x00);
		break;
	case 0xec:
		m->wrap = false;
		aux_send(k, PS2_ACK);
		break;
	case 0xee:
		m->wrap = true;
		aux_send(k, PS2_ACK);
		break;
	case 0xf0:
		m->remote = true;
		aux_send(k, PS2_ACK);
		break;
	case 0xf2: /* get device ID: standard PS/2 mouse */
		aux_send(k, PS2_ACK);
		aux_send(k, 0x00);
		break;
	case 0xf4:
		m->reporting = true;
		aux_send(k, PS2_ACK);
		break;
	case 0xf5:
		m->reporting = false;
		aux_send(k, PS2_ACK);
		break;
	case 0xf6:
		aux_defaults(m);
		aux_send(k, PS2_ACK);
		break;
	case 0xfe:
		aux_send(k, m->last);
		break;
	case 0xff:
		aux_defaults(m);
		m->wrap = false;
		aux_send(k, PS2_ACK);
		aux_send(k, PS2_BAT_OK);
		aux_send(k, 0x00);
		break;
	default:
		aux_send(k, PS2_RESEND);
		break;
	}
}

/* Controller */

static uint8_t outport_value(const struct i8042 *k)
{
	uint8_t v = k->outport & ~(OUT_OBF_KBD | OUT_OBF_AUX);

	if (k->obf)
		v |= k->obuf_src == SRC_AUX ? OUT_OBF_AUX : OUT_OBF_KBD;
	return v;
}

/* Returns true if the machine must reset. */
static bool ctrl_command(struct i8042 *k, uint8_t c)
{
	k->cmd = true;
	k->pending = 0;
	if (c >= 0x20 && c <= 0x3f) {
		ctrl_reply(k, k->ram[c & 0x1f]);
		return false;
	}
	if (c >= 0x60 && c <= 0x7f) {
		k->pending = c;
		return false;
	}
	if (c >= 0xf0)
		return !(c & OUT_RESET); /* pulse bit 0 low: reset */
	switch (c) {
	case 0xa4:
		ctrl_reply(k, 0xf1);
		break;
	case 0xa7:
		k->ram[0] |= CCB_AUX_DIS;
		break;
	case 0xa8:
		k->ram[0] &= ~CCB_AUX_DIS;
		break;
	case 0xa9:
	case 0xab:
		ctrl_reply(k, 0x00);
		break;
	case 0xaa:
		k->sys = true;
		ctrl_reply(k, 0x55);
		break;
	case 0xad:
		k->ram[0] |= CCB_KBD_DIS;
		break;
	case 0xae:
		k->ram[0] &= ~CCB_KBD_DIS;
		break;
	case 0xc0:
		ctrl_reply(k, 0x80);
		break;
	case 0xd0:
		ctrl_reply(k, outport_value(k));
		break;
	case 0xd1: case 0xd2: case 0xd3: case 0xd4:
		k->pending = c;
		break;
	case 0xdd:
		k->outport &= ~OUT_A20;
		break;
	case 0xdf:
		k->outport |= OUT_A20;
		break;
	case 0xe0:
		ctrl_reply(k, 0x00);
		break;
	default:
		break;
	}
	return false;
}

/* Returns true if the machine must reset. */
static bool data_write(struct i8042 *k, uint8_t v)
{
	uint8_t c = k->pending;

	k->cmd = false;
	k->pending = 0;
	if (c >= 0x60 && c <= 0x7f) {
		k->ram[c & 0x1f] = v;
		if (c == 0x60)
			k->sys = (v & CCB_SYS) != 0;
		return false;
	}
	switch (c) {
	case 0xd1:
		k->outport = v & ~(OUT_OBF_KBD | OUT_OBF_AUX);
		return !(v & OUT_RESET);
	case 0xd2:
		q_push(&k->ctrlq, v, SRC_KBD);
		break;
	case 0xd3:
		q_push(&k->ctrlq, v, SRC_AUX);
		break;
	case 0xd4:
		aux_write(k, v);
		break;
	default:
		kbd_write(k, v);
		break;
	}
	return false;
}

static uint64_t data_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct i8042 *k = opaque;
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	v = k->obuf; /* empty: the last byte again, as the chip does */
	if (k->obf) {
		k->obf = false;
		/* Drop both lines so the next byte is a new edge. */
		drive_irqs(k, false, false, false);
		update(k);
	}
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void data_io_write(void *opaque, uint64_t offset, unsigned size,
			  uint64_t value)
{
	struct i8042 *k = opaque;
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = data_write(k, (uint8_t)value);
	update(k);
	pthread_mutex_unlock(&k->lock);
	if (reset)
		vm_request_stop(k->vm, VM_STOP_RESET, 0);
}

static uint64_t cmd_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct i8042 *k = opaque;
	uint8_t v = STS_UNLOCKED;

	pthread_mutex_lock(&k->lock);
	if (k->obf)
		v |= STS_OBF | (k->obuf_src == SRC_AUX ? STS_AUXB : 0);
	if (k->sys)
		v |= STS_SYS;
	if (k->cmd)
		v |= STS_CMD;
	pthread_mutex_unlock(&k->lock);
	return v;
}

static void cmd_io_write(void *opaque, uint64_t offset, unsigned size,
			 uint64_t value)
{
	struct i8042 *k = opaque;
	bool reset;

	pthread_mutex_lock(&k->lock);
	reset = ctrl_command(k, (uint8_t)value);
	update(k);
	pthread_mutex_unlock(&k->lock);
	if (reset)
		vm_request_stop(k->vm, VM_STOP_RESET, 0);
}

static const struct bus_ops data_bus_ops = {
	.read = data_io_read,
	.write = data_io_write,
};

static const struct bus_ops cmd_bus_ops = {
	.read = cmd_io_read,
	.write = cmd_io_write,
};

/* vm_device ops */

static void reset_locked(struct i8042 *k)
{
	memset(k->ram, 0, sizeof(k->ram));
	k->ram[0] = CCB_POWER_ON;
	k->sys = (CCB_POWER_ON & CCB_SYS) != 0;
	k->cmd = false;
	k->outport = OUT_POWER_ON;
	k->pending = 0;
	k->obf = false;
	k->obuf = 0;
	k->obuf_src = SRC_KBD;
	q_clear(&k->ctrlq);
	q_clear(&k->kbdq);
	q_clear(&k->auxq);
	kbd_defaults(&k->kbd);
	k->kbd.scanning = true;
	k->kbd.last = 0;
	aux_defaults(&k->aux);
	k->aux.wrap = false;
	k->aux.last = 0;
	drive_irqs(k, false, false, true);
}

static void i8042_reset(void *opaque)
{
	struct i8042 *k = opaque;

	pthread_mutex_lock(&k->lock);
	reset_locked(k);
	pthread_mutex_unlock(&k->lock);
}

static void save_q(struct state_buf *b, const struct byteq *q)
{
	state_put_u8(b, (uint8_t)q->count);
	for (unsigned i = 0; i < Q_SIZE; i++) {
		unsigned j = (q->head + i) % Q_SIZE;
		state_put_u8(b, i < q->count ? q->data[j] : 0);
		state_put_u8(b, i < q->count ? q->src[j] : 0);
	}
}

static bool load_q(struct state_reader *r, struct byteq *q)
{
	bool ok = true;

	q->head = 0;
	q->count = state_get_u8(r);
	for (unsigned i = 0; i < Q_SIZE; i++) {
		q->data[i] = state_get_u8(r);
		q->src[i] = state_get_u8(r);
		if (q->src[i] > SRC_AUX)
			ok = false;
	}
	return ok && q->count <= Q_SIZE;
}

static void i8042_save(void *opaque, struct state_buf *b)
{
	struct i8042 *k = opaque;

	pthread_mutex_lock(&k->lock);
	state_put_u8(b, I8042_STATE_VERSION);
	state_put_bytes(b, k->ram, sizeof(k->ram));
	state_put_u8(b, k->sys);
	state_put_u8(b, k->cmd);
	state_put_u8(b, k->outport);
	state_put_u8(b, k->pending);
	state_put_u8(b, k->obf);
	state_put_u8(b, k->obuf);
	state_put_u8(b, k->obuf_src);
	save_q(b, &k->ctrlq);
	save_q(b, &k->kbdq);
	save_q(b, &k->auxq);
	state_put_u8(b, k->kbd.pending);
	state_put_u8(b, k->kbd.leds);
	state_put_u8(b, k->kbd.typematic);
	state_put_u8(b, k->kbd.set);
	state_put_u8(b, k->kbd.scanning);
	state_put_u8(b, k->kbd.last);
	state_put_u8(b, k->aux.pending);
	state_put_u8(b, k->aux.rate);
	state_put_u8(b, k->aux.res);
	state_put_u8(b, k->aux.scale21);
	state_put_u8(b, k->aux.remote);
	state_put_u8(b, k->aux.wrap);
	state_put_u8(b, k->aux.reporting);
	state_put_u8(b, k->aux.last);
	pthread_mutex_unlock(&k->lock);
}

static bool valid_ctrl_pending(uint8_t c)
{
	return c == 0 || (c >= 0x60 && c <= 0x7f) || (c >= 0xd1 && c <= 0xd4);
}

static int i8042_load(void *opaque, struct state_reader *r)
{
	struct i8042 *k = opaque;
	struct i8042 n;
	uint8_t version, flags[2], obf, b[4], bits[4];
	bool ok;

	memset(&n, 0, sizeof(n));
	version = state_get_u8(r);
	state_get_bytes(r, n.ram, sizeof(n.ram));
	flags[0] = state_get_u8(r);
	flags[1] = state_get_u8(r);
	n.outport = state_get_u8(r);
	n.pending = state_get_u8(r);
	obf = state_get_u8(r);
	n.obuf = state_get_u8(r);
	n.obuf_src = state_get_u8(r);
	ok = load_q(r, &n.ctrlq);
	ok &= load_q(r, &n.kbdq);
	ok &= load_q(r, &n.auxq);
	n.kbd.pending = state_get_u8(r);
	n.kbd.leds = state_get_u8(r);
	n.kbd.typematic = state_get_u8(r);
	n.kbd.set = state_get_u8(r);
	b[0] = state_get_u8(r);
	n.kbd.last = state_get_u8(r);
	n.aux.pending = state_get_u8(r);
	n.aux.rate = state_get_u8(r);
	n.aux.res = state_get_u8(r);
	for (int i = 0; i < 4; i++)
		bits[i] = state_get_u8(r);
	n.aux.last = state_get_u8(r);

	if (r->err || version != I8042_STATE_VERSION || !ok)
		return -EINVAL;
	if (flags[0] > 1 || flags[1] > 1 || obf > 1 || n.obuf_src > SRC_AUX ||
	    (n.outport & (OUT_OBF_KBD | OUT_OBF_AUX)) ||
	    !valid_ctrl_pending(n.pending) || b[0] > 1 ||
	    (n.kbd.pending && n.kbd.pending != 0xed &&
	     n.kbd.pending != 0xf3 && n.kbd.pending != 0xf0) ||
	    n.kbd.leds > 7 || n.kbd.typematic > 0x7f ||
	    n.kbd.set < 1 || n.kbd.set > 3 ||
	    (n.aux.pending && n.aux.pending != 0xe8 &&
	     n.aux.pending != 0xf3) ||
	    n.aux.res > 3 || bits[0] > 1 || bits[1] > 1 || bits[2] > 1 ||
	    bits[3] > 1)
		return -EINVAL;

	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, n.ram, sizeof(k->ram));
	k->sys = flags[0];
	k->cmd = flags[1];
	k->outport = n.outport;
	k->pending = n.pending;
	k->obf = obf;
	k->obuf = n.obuf;
	k->obuf_src = n.obuf_src;
	k->ctrlq = n.ctrlq;
	k->kbdq = n.kbdq;
	k->auxq = n.auxq;
	k->kbd = n.kbd;
	k->kbd.scanning = b[0];
	k->aux = n.aux;
	k->aux.scale21 = bits[0];
	k->aux.remote = bits[1];
	k->aux.wrap = bits[2];
	k->aux.reporting = bits[3];
	drive_irqs(k, false, false, true);
	update(k);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static void i8042_destroy(void *opaque)
{
	struct i8042 *k = opaque;

	pthread_mutex_destroy(&k->lock);
	free(k);
}

static const struct vm_device_ops i8042_device_ops = {
	.name = "i8042",
	.reset = i8042_reset,
	.save = i8042_save,
	.load = i8042_load,
	.destroy = i8042_destroy,
};

int i8042_create(struct vm *vm, struct i8042 **out)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	int r;

	if (!k)
		return -ENOMEM;
	k->vm = vm;
	pthread_mutex_init(&k->lock, NULL);
	pthread_mutex_lock(&k->lock);
	reset_locked(k);
	pthread_mutex_unlock(&k->lock);
	r = vm_add_device(vm, &i8042_device_ops, k);
	if (r) {
		i8042_destroy(k);
		return r;
	}
	r = bus_register(&vm->pio, PC_I8042_DATA_PORT, 1, &data_bus_ops, k,
			 "i8042_data");
	if (!r)
		r = bus_register(&vm->pio, PC_I8042_CMD_PORT, 1, &cmd_bus_ops,
				 k, "i8042_cmd");
	if (r)
		return r;
	if (out)
		*out = k;
	return 0;
}
