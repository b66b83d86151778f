/*
 * console.c - virtio-console with a single port (virtio 1.2 section 5.3).
 *
 * Without VIRTIO_CONSOLE_F_MULTIPORT the device has two queues: receiveq
 * (0, host -> guest) and transmitq (1, guest -> host).  We offer
 * VIRTIO_CONSOLE_F_EMERG_WRITE too: a byte written to emerg_wr in the
 * configuration space is output at once, which Linux uses for early or
 * panic output before the queues work.
 *
 * Output: the transmitq is drained on the I/O thread and every readable
 * byte goes to chardev_write() in chain order, so nothing is lost or
 * reordered (the chardev writes synchronously).
 *
 * Input with back pressure, as the UART does: the chardev offers bytes
 * only as far as can_receive() allows.  That is the room in the receiveq
 * buffer we hold: we pop one chain when asked and keep it until it is
 * filled by receive(), which pushes it and interrupts at once (a console
 * wants latency, not batching).  With no buffer posted, can_receive() is 0
 * and the chardev keeps its bytes; when the driver posts buffers
 * (queue_notify on receiveq) we ask the chardev for them with
 * chardev_input_ready() - from a handler of our own eventfd, because
 * queue_notify runs with vd->lock held and the buffer backend delivers
 * synchronously, which would take vd->lock again.
 *
 * Lock order, as in uart_16550.c: chardev lock -> vd->lock on the receive
 * path (can_receive/receive are called with the chardev's lock held), and
 * vd->lock -> chardev output on the transmit path.
 */
#include "virtio/console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/chardev.h"
#include "core/event_loop.h"
#include "virtio/virtio.h"

#define CONSOLE_QUEUE_SIZE 128
#define CONSOLE_RXQ 0
#define CONSOLE_TXQ 1

#define VIRTIO_CONSOLE_F_SIZE        0
#define VIRTIO_CONSOLE_F_MULTIPORT   1
#define VIRTIO_CONSOLE_F_EMERG_WRITE 2

/* struct virtio_console_config (section 5.3.4), little-endian */
#define CONFIG_COLS     0  /* u16 */
#define CONFIG_ROWS     2  /* u16 */
#define CONFIG_MAX_PORTS 4 /* u32 */
#define CONFIG_EMERG_WR 8  /* u32 */
#define CONFIG_SIZE     12

struct virtio_console {
	struct virtio_dev vd;
	struct chardev *cd;
	int rx_efd;                /* "receive buffers posted", run on the loop */
	struct virtq_elem rx;      /* the receiveq buffer being filled */
	bool rx_held;              /* rx holds a popped chain */
	uint32_t rx_gen;           /* receiveq's enable_gen when rx was popped */
	uint32_t rx_used;          /* bytes of rx already filled */
	struct virtq_elem tx;
};

/* ---- guest -> host ---- */

static void console_tx(struct virtio_console *c)
{
	struct virtio_dev *vd = &c->vd;
	struct virtq *vq = &vd->vqs[CONSOLE_TXQ];
	unsigned served = 0;
	int r;

	do {
		virtq_notify_disable(vq);
		while ((r = virtq_pop(vq, &c->tx)) == 1) {
			for (unsigned i = 0; i < c->tx.out_num; i++)
				chardev_write(c->cd, c->tx.iov[i].iov_base,
					      c->tx.iov[i].iov_len);
			virtq_push(vq, &c->tx, 0);
			/* A driver re-posting as fast as we drain would keep
			 * the I/O thread here forever: after a queue's worth,
			 * come back through the event loop. */
			if (++served % vq->size == 0) {
				virtio_queue_interrupt(vd, CONSOLE_TXQ);
				virtio_queue_kick(vd, CONSOLE_TXQ);
				return;
			}
		}
		if (r < 0) {
			virtio_dev_broken(vd, "virtio-console: bad transmitq chain");
			return;
		}
	} while (virtq_notify_enable(vq));
	if (served)
		virtio_queue_interrupt(vd, CONSOLE_TXQ);
}

/* ---- host -> guest ---- */

/* With vd->lock held: make sure we hold a receive buffer if the driver
 * posted one.  Returns its free room in bytes. */
static size_t rx_room(struct virtio_console *c)
{
	struct virtio_dev *vd = &c->vd;
	struct virtq *vq = &vd->vqs[CONSOLE_RXQ];
	int r;

	if (!(vd->status & VIRTIO_STATUS_DRIVER_OK) ||
	    (vd->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
		return 0;
	/* The driver stopped and set up the queue again since we took this
	 * buffer: it belongs to the old ring and must not be pushed into the
	 * new one. */
	if (c->rx_held && c->rx_gen != vq->enable_gen)
		c->rx_held = false;
	while (!c->rx_held) {
		r = virtq_pop(vq, &c->rx);
		if (r < 0)
			virtio_dev_broken(vd, "virtio-console: bad receiveq chain");
		if (r <= 0)
			return 0;
		if (c->rx.out_num) {
			virtio_dev_broken(vd, "virtio-console: receiveq buffer is device-readable");
			return 0;
		}
		if (c->rx.in_len == 0) {
			/* Answering room-less buffers one after another could
			 * keep us here as long as the driver re-posts them. */
			virtio_dev_broken(vd, "virtio-console: receiveq buffer has no room");
			return 0;
		}
		c->rx_held = true;
		c->rx_gen = vq->enable_gen;
		c->rx_used = 0;
	}
	return c->rx.in_len - c->rx_used;
}

static size_t console_can_receive(void *opaque)
{
	struct virtio_console *c = opaque;
	size_t room;

	pthread_mutex_lock(&c->vd.lock);
	room = rx_room(c);
	pthread_mutex_unlock(&c->vd.lock);
	return room;
}

static void console_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct virtio_console *c = opaque;
	struct virtio_dev *vd = &c->vd;

	pthread_mutex_lock(&vd->lock);
	/* The chardev offers at most can_receive() bytes, but the driver may
	 * have reset the device in between: take what fits, drop the rest
	 * (input is lost across a reset on real consoles too). */
	while (len && rx_room(c)) {
		size_t n = virtq_elem_write(&c->rx, c->rx_used, buf, len);

		c->rx_used += (uint32_t)n;
		buf += n;
		len -= n;
		/* Hand the buffer over at once: a console wants latency. */
		virtq_push(&vd->vqs[CONSOLE_RXQ], &c->rx, c->rx_used);
		c->rx_held = false;
		virtio_queue_interrupt(vd, CONSOLE_RXQ);
	}
	pthread_mutex_unlock(&vd->lock);
}

/* ---- virtio_dev_ops ---- */

static void console_queue_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_console *c = vd->opaque;

	uint64_t one = 1;

	if (q == CONSOLE_TXQ)
		console_tx(c);
	else if (write(c->rx_efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow at 2^64 - 2 kicks. */
	}
}

static void console_rx_posted(void *opaque, uint32_t events)
{
	struct virtio_console *c = opaque;
	uint64_t n;

	if (read(c->rx_efd, &n, sizeof(n)) == sizeof(n))
		chardev_input_ready(c->cd);
}

static void console_config_read(struct virtio_dev *vd, uint32_t offset,
				void *buf, uint32_t len)
{
	uint8_t cfg[CONFIG_SIZE] = { 0 };

	/* cols/rows are only valid with F_SIZE, which we do not offer;
	 * max_nr_ports only with F_MULTIPORT: all read 0. */
	memcpy(buf, cfg + offset, len);
}

static void console_config_write(struct virtio_dev *vd, uint32_t offset,
				 const void *buf, uint32_t len)
{
	struct virtio_console *c = vd->opaque;
	uint8_t b;

	/* emerg_wr: the low byte of the 32-bit field is the character. */
	if (offset == CONFIG_EMERG_WR && len >= 1 &&
	    virtio_has_feature(vd, VIRTIO_CONSOLE_F_EMERG_WRITE)) {
		memcpy(&b, buf, 1);
		chardev_write(c->cd, &b, 1);
	}
}

static void console_reset(struct virtio_dev *vd)
{
	struct virtio_console *c = vd->opaque;

	c->rx_held = false; /* the queue and its buffers are gone */
	c->rx_used = 0;
}

static void console_destroy(struct virtio_dev *vd)
{
	struct virtio_console *c = vd->opaque;

	chardev_set_receiver(c->cd, NULL);
	evloop_del(vd->loop, c->rx_efd);
	close(c->rx_efd);
	free(c);
}

static const struct virtio_dev_ops console_ops = {
	.name = "virtio-console",
	.device_id = VIRTIO_ID_CONSOLE,
	.config_read = console_config_read,
	.config_write = console_config_write,
	.queue_notify = console_queue_notify,
	.reset = console_reset,
	.destroy = console_destroy,
};

int virtio_console_create(struct vm *vm, struct evloop *loop,
			  struct chardev *cd, struct virtio_dev **out)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	struct chardev_receiver rx = {
		.can_receive = console_can_receive,
		.receive = console_receive,
	};
	int r;

	if (!c)
		return -ENOMEM;
	c->cd = cd;
	c->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->rx_efd < 0) {
		r = -errno;
		free(c);
		return r;
	}
	r = evloop_add(loop, c->rx_efd, EPOLLIN, console_rx_posted, c);
	if (r) {
		close(c->rx_efd);
		free(c);
		return r;
	}
	r = virtio_dev_init(&c->vd, vm, loop, &console_ops, c, 2,
			    CONSOLE_QUEUE_SIZE,
			    1ull << VIRTIO_CONSOLE_F_EMERG_WRITE, CONFIG_SIZE);
	if (r) {
		evloop_del(loop, c->rx_efd);
		close(c->rx_efd);
		free(c);
		return r;
	}
	rx.opaque = c;
	chardev_set_receiver(cd, &rx);
	*out = &c->vd;
	return 0;
}
