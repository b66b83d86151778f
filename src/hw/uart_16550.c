/*
 * uart_16550.c - the 16550A UART behind the PC's COM ports.
 *
 * Why this device matters
 * -----------------------
 * The serial port is the console of almost every guest kvmm runs: firmware
 * prints to it, Linux's earlyprintk polls it, and the Linux tty layer drives
 * it by interrupts once the 8250 driver is up.  So the model has to be the
 * chip Linux expects (a 16550A, found by autoconfig), fast (no timing), and
 * exact in the handful of places drivers depend on.
 *
 * Register map (offset from the base port; datasheet NS PC16550D section 8)
 *
 *   off  read                     write                 with LCR.DLAB = 1
 *   0    RBR receive buffer       THR transmit holding  DLL divisor low
 *   1    IER interrupt enable     IER                   DLM divisor high
 *   2    IIR interrupt ident      FCR FIFO control
 *   3    LCR line control         LCR
 *   4    MCR modem control        MCR
 *   5    LSR line status          (ignored: factory test)
 *   6    MSR modem status         (ignored)
 *   7    SCR scratch              SCR
 *
 * A wider access (outw to the base, say) is split into byte accesses at
 * consecutive offsets, as an ISA bus does for an 8-bit device.
 *
 * Transmitter: there is no baud-rate timing.  A byte written to THR goes to
 * chardev_write() at once, under the device lock, so bytes from different
 * vCPUs are never reordered or lost; the transmitter is therefore always
 * empty: LSR.THRE and LSR.TEMT always read 1.  The byte is sent as written
 * (8 bits) whatever LCR's word length says: small test guests and boot
 * loaders often print before programming LCR (whose reset value selects
 * 5 bits), and masking would garble exactly that early output.
 *
 * THRE interrupt (the part Linux's interrupt-driven tty output depends on):
 * `thr_ipending` is the "THR empty" interrupt latch.  It is set
 *   - when IER.ETBEI goes 0 -> 1 (the transmitter is always empty, so
 *     enabling the interrupt raises it at once; Linux's startup test writes
 *     IER=THRI, reads IIR, writes 0, writes THRI again and expects the
 *     interrupt to be reasserted, otherwise it falls back to a polling
 *     timer (UART_BUG_THRE)),
 *   - after every THR write (the byte left immediately, so THR is empty
 *     again);
 * and cleared
 *   - by a read of IIR that reports THRE (datasheet table 4),
 *   - by a THR write (then set again as above),
 *   - when ETBEI goes 1 -> 0 (it is resampled on the next 0 -> 1).
 *
 * Interrupt identification priority (datasheet table 4):
 *   receiver line status (OE/PE/FE/BI, ELSI)       IIR 0x6, cleared by LSR read
 *   received data at or above trigger (ERBFI)      IIR 0x4, cleared by draining
 *   character timeout (ERBFI)                      IIR 0xC, cleared by RBR read
 *   THR empty (ETBEI)                              IIR 0x2, see above
 *   modem status (EDSSI)                           IIR 0x0, cleared by MSR read
 * With FIFOs enabled IIR bits 7:6 read 11.
 *
 * Character timeout, the simple rule: real hardware reports a timeout when
 * data sits below the trigger level with no activity for four character
 * times.  We have no character times, so whenever data is pending below the
 * trigger level a timeout is reported at once.  Drivers treat "data" and
 * "timeout" alike (drain while LSR.DR), and the guest sees typed characters
 * immediately instead of after a timer.
 *
 * Interrupt line: the PC routes the UART's INTR through a buffer enabled by
 * the OUT2 modem-control output, so the line is
 *     (an interrupt is pending) && MCR.OUT2 && !MCR.LOOP.
 * In loopback mode the chip forces its external OUT2 pin inactive (datasheet
 * 8.6), which on a PC gates the line off; QEMU ignores OUT2 altogether, but
 * Linux sets OUT2 on PC ports before it expects interrupts, so following the
 * hardware costs nothing.  The ISA line is edge-triggered at the interrupt
 * controller; we drive its level and change it only when it changes.
 *
 * Loopback (MCR.LOOP): transmitted bytes go to the receive FIFO instead of
 * the chardev; MSR's inputs follow the MCR outputs (DTR->DSR, RTS->CTS,
 * OUT1->RI, OUT2->DCD), which is how Linux's probe checks that a UART is
 * there (MCR=0x1A must read MSR[7:4] = 0x9).  Input from the chardev is held
 * back (can_receive() returns 0) while looping, as the serial input pin is
 * disconnected.  Out of loopback, MSR reports CTS|DSR|DCD: a modem that is
 * always connected and ready.  Changes of the inputs set the MSR delta bits
 * (TERI only on RI's trailing edge), which MSR reads clear.
 *
 * Receiver: a 16-byte FIFO (1 byte with FIFOs disabled, the 16450 holding
 * register).  The chardev offers bytes through can_receive()/receive() as
 * far as there is room (back pressure), so overrun (LSR.OE) only happens if
 * a backend ignores can_receive(), or in loopback when the guest sends more
 * than the FIFO holds.  Reading RBR with the FIFO empty returns the last
 * byte read again.
 *
 * Input flow control and locking: when the guest makes room (RBR read,
 * FIFO reset, leaving loopback, reset, load) and the backend may be holding
 * input, we call chardev_input_ready().  The buffer backend delivers from
 * inside that call, i.e. calls receive() which takes our lock, so we always
 * call it after dropping the lock.  To avoid a call (for stdio: an eventfd
 * write) on every byte read, `rx_throttled` remembers whether the backend
 * can be holding anything: it is set when can_receive() answers 0 or a
 * receive() fills the FIFO, which is the only way a backend that offers "as
 * far as can_receive() allows" ends up with input left over.
 *
 * Lock order: chardev lock -> device lock (receive paths);
 * device lock -> chardev output (THR writes) and -> interrupt controller.
 * A backend must therefore not hold the lock it takes in chardev_write()
 * while it calls receive()/can_receive() (the stdio backend's write takes
 * none).
 *
 * Not modelled: baud timing, parity/framing errors, break, the DMA mode
 * signals (FCR bit 3 is stored and saved, nothing more).  The divisor latch
 * is kept and saved but has no effect.
 */
#include "hw/uart_16550.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/chardev.h"
#include "core/vm.h"

/* Offsets */
#define UART_RBR 0
#define UART_THR 0
#define UART_DLL 0
#define UART_IER 1
#define UART_DLM 1
#define UART_IIR 2
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_ERBFI 0x01
#define IER_ETBEI 0x02
#define IER_ELSI  0x04
#define IER_EDSSI 0x08
#define IER_MASK  0x0f

#define IIR_NO_INT  0x01
#define IIR_MSI     0x00
#define IIR_THRI    0x02
#define IIR_RDI     0x04
#define IIR_RLSI    0x06
#define IIR_TIMEOUT 0x0c
#define IIR_ID_MASK 0x0f
#define IIR_FIFO    0xc0

#define FCR_FE        0x01
#define FCR_CLEAR_RX  0x02
#define FCR_CLEAR_TX  0x04
#define FCR_DMA       0x08
#define FCR_TRIG_MASK 0xc0
#define FCR_KEPT      (FCR_FE | FCR_DMA | FCR_TRIG_MASK)

#define LCR_DLAB 0x80

#define MCR_DTR  0x01
#define MCR_RTS  0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR   0x01
#define LSR_OE   0x02
#define LSR_PE   0x04
#define LSR_FE   0x08
#define LSR_BI   0x10
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_ERRS (LSR_OE | LSR_PE | LSR_FE | LSR_BI)

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS  0x10
#define MSR_DSR  0x20
#define MSR_RI   0x40
#define MSR_DCD  0x80
#define MSR_CONNECTED (MSR_CTS | MSR_DSR | MSR_DCD)

#define UART_FIFO_SIZE 16
#define UART_STATE_VERSION 1

struct uart_16550 {
	struct vm *vm;
	struct chardev *cd;
	unsigned gsi;
	pthread_mutex_t lock;

	/* Guest-visible registers (under lock) */
	uint8_t dll, dlm;
	uint8_t ier, lcr, mcr, fcr, scr;
	uint8_t lsr_err; /* sticky LSR error bits; DR/THRE/TEMT are derived */
	uint8_t msr;     /* inputs (7:4) and delta bits (3:0) */
	uint8_t rbr;     /* last byte read from RBR */
	bool thr_ipending;
	uint8_t fifo[UART_FIFO_SIZE];
	unsigned head, count;

	/* Host-side bookkeeping (not guest-visible, not saved) */
	bool irq_level;    /* level last driven on gsi */
	bool rx_throttled; /* the chardev may be holding input for us */
};

static unsigned fifo_cap(const struct uart_16550 *u)
{
	return (u->fcr & FCR_FE) ? UART_FIFO_SIZE : 1;
}

static unsigned trigger_level(const struct uart_16550 *u)
{
	static const unsigned levels[4] = { 1, 4, 8, 14 };
	return levels[(u->fcr & FCR_TRIG_MASK) >> 6];
}

static void fifo_clear(struct uart_16550 *u)
{
	u->head = u->count = 0;
}

static void fifo_push(struct uart_16550 *u, uint8_t b)
{
	if (u->count >= fifo_cap(u)) {
		u->lsr_err |= LSR_OE; /* the new character is lost */
		return;
	}
	u->fifo[(u->head + u->count) % UART_FIFO_SIZE] = b;
	u->count++;
}

static uint8_t fifo_pop(struct uart_16550 *u)
{
	uint8_t b = u->fifo[u->head];
	u->head = (u->head + 1) % UART_FIFO_SIZE;
	u->count--;
	return b;
}

/* MSR input bits implied by MCR: loopback wiring, or a connected modem. */
static uint8_t msr_inputs(uint8_t mcr)
{
	uint8_t in = 0;

	if (!(mcr & MCR_LOOP))
		return MSR_CONNECTED;
	if (mcr & MCR_DTR)
		in |= MSR_DSR;
	if (mcr & MCR_RTS)
		in |= MSR_CTS;
	if (mcr & MCR_OUT1)
		in |= MSR_RI;
	if (mcr & MCR_OUT2)
		in |= MSR_DCD;
	return in;
}

/* Move MSR's inputs to `in`, setting the delta bits for what changed. */
static void msr_set_inputs(struct uart_16550 *u, uint8_t in)
{
	uint8_t old = u->msr & 0xf0, changed = old ^ in, d = 0;

	if (changed & MSR_CTS)
		d |= MSR_DCTS;
	if (changed & MSR_DSR)
		d |= MSR_DDSR;
	if ((old & MSR_RI) && !(in & MSR_RI))
		d |= MSR_TERI;
	if (changed & MSR_DCD)
		d |= MSR_DDCD;
	u->msr = in | (u->msr & MSR_DELTAS) | d;
}

/* Highest-priority pending interrupt, as IIR reads. */
static uint8_t iir_locked(const struct uart_16550 *u)
{
	uint8_t fifo = (u->fcr & FCR_FE) ? IIR_FIFO : 0;

	if ((u->ier & IER_ELSI) && (u->lsr_err & LSR_ERRS))
		return fifo | IIR_RLSI;
	if ((u->ier & IER_ERBFI) && u->count) {
		if ((u->fcr & FCR_FE) && u->count < trigger_level(u))
			return fifo | IIR_TIMEOUT;
		return fifo | IIR_RDI;
	}
	if ((u->ier & IER_ETBEI) && u->thr_ipending)
		return fifo | IIR_THRI;
	if ((u->ier & IER_EDSSI) && (u->msr & MSR_DELTAS))
		return fifo | IIR_MSI;
	return fifo | IIR_NO_INT;
}

static bool irq_wanted(const struct uart_16550 *u)
{
	return !(iir_locked(u) & IIR_NO_INT) && (u->mcr & MCR_OUT2) &&
	       !(u->mcr & MCR_LOOP);
}

/* Drive the line if its level changed (or always, with force). */
static void update_irq(struct uart_16550 *u, bool force)
{
	bool level = irq_wanted(u);

	if (level != u->irq_level || force) {
		u->irq_level = level;
		irq_set_level(&u->vm->irq, u->gsi, level);
	}
}

/* Whether to call chardev_input_ready() once the lock is dropped: the
 * backend may hold input and we now have room for it. */
static bool want_input_locked(struct uart_16550 *u)
{
	if (!u->cd || !u->rx_throttled || (u->mcr & MCR_LOOP) ||
	    u->count >= fifo_cap(u))
		return false;
	u->rx_throttled = false;
	return true;
}

static uint8_t read_reg(struct uart_16550 *u, unsigned off)
{
	uint8_t v;

	switch (off) {
	case UART_RBR:
		if (u->lcr & LCR_DLAB)
			return u->dll;
		if (u->count)
			u->rbr = fifo_pop(u);
		update_irq(u, false);
		return u->rbr;
	case UART_IER:
		return (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
	case UART_IIR:
		v = iir_locked(u);
		if ((v & IIR_ID_MASK) == IIR_THRI) {
			u->thr_ipending = false;
			update_irq(u, false);
		}
		return v;
	case UART_LCR:
		return u->lcr;
	case UART_MCR:
		return u->mcr;
	case UART_LSR:
		v = u->lsr_err | LSR_THRE | LSR_TEMT | (u->count ? LSR_DR : 0);
		u->lsr_err = 0;
		update_irq(u, false);
		return v;
	case UART_MSR:
		v = u->msr;
		u->msr &= ~MSR_DELTAS;
		update_irq(u, false);
		return v;
	default: /* UART_SCR */
		return u->scr;
	}
}

static void write_thr(struct uart_16550 *u, uint8_t b)
{
	if (u->mcr & MCR_LOOP)
		fifo_push(u, b);
	else if (u->cd)
		chardev_write(u->cd, &b, 1); /* errors drop output by design */
	/* The byte left at once: THR is empty again. */
	u->thr_ipending = true;
}

static void write_fcr(struct uart_16550 *u, uint8_t v)
{
	/* Toggling FIFO enable resets the FIFOs (datasheet 8.4, FCR0). */
	if ((v ^ u->fcr) & FCR_FE)
		fifo_clear(u);
	if (!(v & FCR_FE)) {
		/* Other bits are only programmed together with FCR0 = 1. */
		u->fcr = 0;
		return;
	}
	if (v & FCR_CLEAR_RX)
		fifo_clear(u);
	/* FCR_CLEAR_TX: the transmit FIFO is always empty. */
	u->fcr = v & FCR_KEPT;
}

static void write_reg(struct uart_16550 *u, unsigned off, uint8_t v)
{
	uint8_t changed;

	switch (off) {
	case UART_THR:
		if (u->lcr & LCR_DLAB)
			u->dll = v;
		else
			write_thr(u, v);
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->dlm = v;
			break;
		}
		v &= IER_MASK;
		/* ETBEI 0 -> 1 with THR empty (always) raises THRE at once. */
		if ((v ^ u->ier) & IER_ETBEI)
			u->thr_ipending = (v & IER_ETBEI) != 0;
		u->ier = v;
		break;
	case UART_FCR:
		write_fcr(u, v);
		break;
	case UART_LCR:
		u->lcr = v;
		break;
	case UART_MCR:
		v &= MCR_MASK;
		changed = v ^ u->mcr;
		u->mcr = v;
		if (changed)
			msr_set_inputs(u, msr_inputs(v));
		break;
	case UART_SCR:
		u->scr = v;
		break;
	default: /* LSR, MSR: read-only here */
		break;
	}
	update_irq(u, false);
}

static uint64_t uart_io_read(void *opaque, uint64_t offset, unsigned size)
{
	struct uart_16550 *u = opaque;
	uint64_t v = 0;
	bool kick;

	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < size && offset + i < UART_16550_NR_PORTS; i++)
		v |= (uint64_t)read_reg(u, (unsigned)(offset + i)) << (8 * i);
	kick = want_input_locked(u);
	pthread_mutex_unlock(&u->lock);
	if (kick)
		chardev_input_ready(u->cd);
	return v;
}

static void uart_io_write(void *opaque, uint64_t offset, unsigned size,
			  uint64_t value)
{
	struct uart_16550 *u = opaque;
	bool kick;

	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < size && offset + i < UART_16550_NR_PORTS; i++)
		write_reg(u, (unsigned)(offset + i), (uint8_t)(value >> (8 * i)));
	kick = want_input_locked(u);
	pthread_mutex_unlock(&u->lock);
	if (kick)
		chardev_input_ready(u->cd);
}

static const struct bus_ops uart_bus_ops = {
	.read = uart_io_read,
	.write = uart_io_write,
};

/* chardev receiver side */

static size_t uart_can_receive(void *opaque)
{
	struct uart_16550 *u = opaque;
	size_t room;

	pthread_mutex_lock(&u->lock);
	room = (u->mcr & MCR_LOOP) ? 0 : fifo_cap(u) - u->count;
	if (room == 0)
		u->rx_throttled = true;
	pthread_mutex_unlock(&u->lock);
	return room;
}

static void uart_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct uart_16550 *u = opaque;

	pthread_mutex_lock(&u->lock);
	/* In loopback the serial input is disconnected: drop. */
	for (size_t i = 0; i < len && !(u->mcr & MCR_LOOP); i++)
		fifo_push(u, buf[i]);
	if (u->count >= fifo_cap(u))
		u->rx_throttled = true;
	update_irq(u, false);
	pthread_mutex_unlock(&u->lock);
}

/* vm_device ops */

static void reset_locked(struct uart_16550 *u)
{
	u->dll = 0x0c; /* 9600 baud from 1.8432 MHz, a common power-on value */
	u->dlm = 0;
	u->ier = u->lcr = u->mcr = u->fcr = u->scr = 0;
	u->lsr_err = 0;
	u->msr = MSR_CONNECTED;
	u->rbr = 0;
	u->thr_ipending = false;
	fifo_clear(u);
	update_irq(u, true);
}

static void uart_reset(void *opaque)
{
	struct uart_16550 *u = opaque;
	bool kick;

	pthread_mutex_lock(&u->lock);
	reset_locked(u);
	kick = want_input_locked(u);
	pthread_mutex_unlock(&u->lock);
	if (kick)
		chardev_input_ready(u->cd);
}

static void uart_save(void *opaque, struct state_buf *b)
{
	struct uart_16550 *u = opaque;

	pthread_mutex_lock(&u->lock);
	state_put_u8(b, UART_STATE_VERSION);
	state_put_u8(b, u->dll);
	state_put_u8(b, u->dlm);
	state_put_u8(b, u->ier);
	state_put_u8(b, u->lcr);
	state_put_u8(b, u->mcr);
	state_put_u8(b, u->fcr);
	state_put_u8(b, u->scr);
	state_put_u8(b, u->lsr_err);
	state_put_u8(b, u->msr);
	state_put_u8(b, u->rbr);
	state_put_u8(b, u->thr_ipending);
	state_put_u8(b, (uint8_t)u->count);
	for (unsigned i = 0; i < UART_FIFO_SIZE; i++)
		state_put_u8(b, i < u->count ?
			     u->fifo[(u->head + i) % UART_FIFO_SIZE] : 0);
	pthread_mutex_unlock(&u->lock);
}

static int uart_load(void *opaque, struct state_reader *r)
{
	struct uart_16550 *u = opaque;
	struct uart_16550 n;
	uint8_t version, thr, count;
	bool kick;

	memset(&n, 0, sizeof(n));
	version = state_get_u8(r);
	n.dll = state_get_u8(r);
	n.dlm = state_get_u8(r);
	n.ier = state_get_u8(r);
	n.lcr = state_get_u8(r);
	n.mcr = state_get_u8(r);
	n.fcr = state_get_u8(r);
	n.scr = state_get_u8(r);
	n.lsr_err = state_get_u8(r);
	n.msr = state_get_u8(r);
	n.rbr = state_get_u8(r);
	thr = state_get_u8(r);
	count = state_get_u8(r);
	state_get_bytes(r, n.fifo, sizeof(n.fifo));
	if (r->err || version != UART_STATE_VERSION)
		return -EINVAL;
	/* Validate as a register write would be: reserved bits clear, the FIFO
	 * within the capacity its mode allows, MSR inputs as MCR implies. */
	if ((n.ier & ~IER_MASK) || (n.mcr & ~MCR_MASK) ||
	    (n.lsr_err & ~LSR_ERRS) || (n.fcr & ~FCR_KEPT) ||
	    (!(n.fcr & FCR_FE) && n.fcr) || thr > 1 ||
	    count > fifo_cap(&n) || (n.msr & 0xf0) != msr_inputs(n.mcr))
		return -EINVAL;
	n.thr_ipending = thr;
	n.count = count;
	n.head = 0;

	pthread_mutex_lock(&u->lock);
	u->dll = n.dll;
	u->dlm = n.dlm;
	u->ier = n.ier;
	u->lcr = n.lcr;
	u->mcr = n.mcr;
	u->fcr = n.fcr;
	u->scr = n.scr;
	u->lsr_err = n.lsr_err;
	u->msr = n.msr;
	u->rbr = n.rbr;
	u->thr_ipending = n.thr_ipending;
	memcpy(u->fifo, n.fifo, sizeof(u->fifo));
	u->head = 0;
	u->count = n.count;
	update_irq(u, true);
	u->rx_throttled = true; /* the backend may hold input: offer room */
	kick = want_input_locked(u);
	pthread_mutex_unlock(&u->lock);
	if (kick)
		chardev_input_ready(u->cd);
	return 0;
}

static void uart_destroy(void *opaque)
{
	struct uart_16550 *u = opaque;

	pthread_mutex_destroy(&u->lock);
	free(u);
}

static const struct vm_device_ops uart_device_ops = {
	.name = "uart_16550",
	.reset = uart_reset,
	.save = uart_save,
	.load = uart_load,
	.destroy = uart_destroy,
};

int uart_16550_create(struct vm *vm, uint16_t base, unsigned gsi,
		      struct chardev *cd, struct uart_16550 **out)
{
	struct uart_16550 *u;
	int r;

	if (gsi >= IRQ_MAX_GSI)
		return -EINVAL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->vm = vm;
	u->cd = cd;
	u->gsi = gsi;
	pthread_mutex_init(&u->lock, NULL);
	pthread_mutex_lock(&u->lock);
	reset_locked(u);
	pthread_mutex_unlock(&u->lock);

	/* Add the device first: once its ports are on the bus it must stay
	 * alive until vm_destroy(), which only frees listed devices. */
	r = vm_add_device(vm, &uart_device_ops, u);
	if (r) {
		uart_destroy(u);
		return r;
	}
	r = bus_register(&vm->pio, base, UART_16550_NR_PORTS, &uart_bus_ops,
			 u, "uart_16550");
	if (r)
		return r;
	if (cd) {
		struct chardev_receiver rx = {
			.can_receive = uart_can_receive,
			.receive = uart_receive,
			.opaque = u,
		};
		/* Delivers pending input at once for some backends: unlocked. */
		chardev_set_receiver(cd, &rx);
	}
	if (out)
		*out = u;
	return 0;
}
