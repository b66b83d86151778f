/*
 * chardev.c - console backends (chardev.h).
 *
 * Output: the device calls chardev_write() under its own lock and we write()
 * until every byte is out, so guest output is neither lost nor reordered.
 *
 * Input: bytes read from stdin wait in `pending` until the device has room;
 * we only read more once `pending` is empty, so a guest that never drains its
 * FIFO simply stops input (back pressure), never kvmm.  All reading and
 * delivery of stdin happens on the event-loop thread; the device signals
 * "room again" through an eventfd because it may call chardev_input_ready()
 * with its own lock held, while delivery takes the device's lock.
 *
 * epoll refuses regular files and /dev/null (EPERM).  Such stdin is always
 * "readable": we read it whenever the device has room, and end of file just
 * ends input.
 *
 * Lock order: chardev->lock, then the receiver's device lock (inside
 * receive()/can_receive()).  chardev_input_ready() takes no lock for the
 * stdio backend; for the buffer backend it delivers synchronously, so the
 * device must call it without its own lock held.
 */
#include "core/chardev.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "core/event_loop.h"

enum chardev_kind { CD_STDIO, CD_FILE, CD_NULL, CD_BUFFER };

#define CTRL_A 0x01

struct chardev {
	enum chardev_kind kind;
	int out_fd, in_fd; /* -1 if none */
	pthread_mutex_t lock;
	struct chardev_receiver rx;
	bool has_rx;

	uint8_t *pending; /* input waiting for the receiver */
	size_t pend_off, pend_len, pend_cap;

	/* stdio input */
	struct evloop *loop;
	int wake_efd;
	bool in_epoll; /* in_fd is watched by epoll (not a regular file) */
	bool in_eof;
	bool escape; /* saw Ctrl-A */
	void (*on_quit)(void *);
	void *quit_opaque;

	/* buffer output, under its own lock: output comes from vCPU threads
	 * holding the device lock, while delivery holds `lock` and then takes
	 * the device lock, so sharing `lock` would invert the order. */
	pthread_mutex_t out_lock;
	char *obuf;
	size_t olen, ocap;
};

static struct termios saved_termios;
static bool termios_saved;

void chardev_restore_terminal(void)
{
	if (termios_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
		termios_saved = false;
	}
}

static struct chardev *alloc_chardev(enum chardev_kind kind)
{
	struct chardev *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return NULL;
	cd->kind = kind;
	cd->out_fd = cd->in_fd = cd->wake_efd = -1;
	pthread_mutex_init(&cd->lock, NULL);
	pthread_mutex_init(&cd->out_lock, NULL);
	return cd;
}

static int pending_append(struct chardev *cd, const uint8_t *buf, size_t len)
{
	if (cd->pend_off && cd->pend_off == cd->pend_len)
		cd->pend_off = cd->pend_len = 0;
	if (cd->pend_cap - cd->pend_len < len) {
		size_t cap = cd->pend_cap ? cd->pend_cap : 4096;
		while (cap - cd->pend_len < len)
			cap *= 2;
		uint8_t *n = realloc(cd->pending, cap);
		if (!n)
			return -ENOMEM;
		cd->pending = n;
		cd->pend_cap = cap;
	}
	memcpy(cd->pending + cd->pend_len, buf, len);
	cd->pend_len += len;
	return 0;
}

/* Hand pending input to the receiver as far as it has room.  Lock held. */
static void deliver_locked(struct chardev *cd)
{
	while (cd->has_rx && cd->pend_off < cd->pend_len) {
		size_t room = cd->rx.can_receive(cd->rx.opaque);
		size_t n = cd->pend_len - cd->pend_off;
		if (room == 0)
			break;
		if (n > room)
			n = room;
		cd->rx.receive(cd->rx.opaque, cd->pending + cd->pend_off, n);
		cd->pend_off += n;
	}
}

/* Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A; other bytes pass through. */
static void filter_escapes(struct chardev *cd, const uint8_t *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = in[i];
		if (cd->escape) {
			cd->escape = false;
			if (c == 'x' || c == 'X') {
				if (cd->on_quit)
					cd->on_quit(cd->quit_opaque);
				continue;
			}
			if (c != CTRL_A)
				continue; /* unknown escape: swallowed, as QEMU does */
		} else if (c == CTRL_A) {
			cd->escape = true;
			continue;
		}
		pending_append(cd, &c, 1);
	}
}

/* Read stdin when nothing is pending and deliver.  Loop thread only. */
static void pump_stdin(struct chardev *cd, bool readable)
{
	uint8_t buf[4096];

	pthread_mutex_lock(&cd->lock);
	for (;;) {
		deliver_locked(cd);
		if (cd->in_eof || cd->pend_off < cd->pend_len)
			break;
		/* Nothing pending: read more, but only if it cannot block. */
		if (cd->in_epoll && !readable)
			break;
		if (!cd->in_epoll && cd->has_rx &&
		    cd->rx.can_receive(cd->rx.opaque) == 0)
			break;
		ssize_t n = read(cd->in_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cd->in_eof = true;
			break;
		}
		filter_escapes(cd, buf, (size_t)n);
		readable = false;
	}
	/* Watch stdin only while there is room for what it brings. */
	if (cd->in_epoll) {
		bool want = !cd->in_eof && cd->pend_off == cd->pend_len;
		if (cd->in_eof)
			evloop_del(cd->loop, cd->in_fd);
		else
			evloop_mod(cd->loop, cd->in_fd, want ? EPOLLIN : 0);
	}
	pthread_mutex_unlock(&cd->lock);
}

static void stdin_ready(void *opaque, uint32_t events)
{
	pump_stdin(opaque, true);
}

static void wake_ready(void *opaque, uint32_t events)
{
	struct chardev *cd = opaque;
	uint64_t v;

	if (read(cd->wake_efd, &v, sizeof(v)) < 0) {
	}
	pump_stdin(cd, false);
}

struct chardev *chardev_open_stdio(struct evloop *loop,
				   void (*on_quit)(void *), void *quit_opaque)
{
	struct chardev *cd = alloc_chardev(CD_STDIO);
	int r;

	if (!cd)
		return NULL;
	cd->out_fd = STDOUT_FILENO;
	cd->in_fd = STDIN_FILENO;
	cd->loop = loop;
	cd->on_quit = on_quit;
	cd->quit_opaque = quit_opaque;
	cd->wake_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (cd->wake_efd < 0 ||
	    evloop_add(loop, cd->wake_efd, EPOLLIN, wake_ready, cd) < 0)
		goto fail;

	r = evloop_add(loop, cd->in_fd, EPOLLIN, stdin_ready, cd);
	if (r == 0) {
		cd->in_epoll = true;
	} else if (r == -EPERM) {
		/* Regular file or /dev/null: read it as the device drains. */
		chardev_input_ready(cd);
	} else if (r == -EBADF) {
		cd->in_eof = true; /* stdin closed */
	} else {
		errno = -r;
		goto fail;
	}

	/* Raw mode only when we own the terminal: a background process group
	 * changing it would be stopped with SIGTTOU. */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp() &&
	    tcgetattr(STDIN_FILENO, &saved_termios) == 0) {
		struct termios raw = saved_termios;
		termios_saved = true;
		cfmakeraw(&raw);
		/* Keep output post-processing off but let the guest own ^C/^Z:
		 * Ctrl-A x is the way out, as in QEMU. */
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	return cd;
fail:
	r = errno;
	chardev_close(cd);
	errno = r;
	return NULL;
}

struct chardev *chardev_open_file(const char *path)
{
	struct chardev *cd = alloc_chardev(CD_FILE);
	int e;

	if (!cd)
		return NULL;
	cd->out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (cd->out_fd < 0) {
		e = errno;
		chardev_close(cd);
		errno = e;
		return NULL;
	}
	return cd;
}

struct chardev *chardev_open_null(void)
{
	return alloc_chardev(CD_NULL);
}

struct chardev *chardev_open_buffer(void)
{
	return alloc_chardev(CD_BUFFER);
}

const char *chardev_buffer_output(struct chardev *cd, size_t *len)
{
	if (len)
		*len = cd->olen;
	return cd->obuf ? cd->obuf : "";
}

int chardev_buffer_inject(struct chardev *cd, const void *buf, size_t len)
{
	int r;

	pthread_mutex_lock(&cd->lock);
	r = pending_append(cd, buf, len);
	deliver_locked(cd);
	pthread_mutex_unlock(&cd->lock);
	return r;
}

void chardev_set_receiver(struct chardev *cd,
			  const struct chardev_receiver *rx)
{
	pthread_mutex_lock(&cd->lock);
	cd->has_rx = rx != NULL;
	if (rx)
		cd->rx = *rx;
	pthread_mutex_unlock(&cd->lock);
	if (rx)
		chardev_input_ready(cd);
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int chardev_write(struct chardev *cd, const void *buf, size_t len)
{
	switch (cd->kind) {
	case CD_STDIO:
	case CD_FILE:
		return write_all(cd->out_fd, buf, len);
	case CD_NULL:
		return 0;
	case CD_BUFFER:
		pthread_mutex_lock(&cd->out_lock);
		if (cd->ocap - cd->olen <= len) {
			size_t cap = cd->ocap ? cd->ocap : 256;
			while (cap - cd->olen <= len)
				cap *= 2;
			char *n = realloc(cd->obuf, cap);
			if (!n) {
				pthread_mutex_unlock(&cd->out_lock);
				return -ENOMEM;
			}
			cd->obuf = n;
			cd->ocap = cap;
		}
		memcpy(cd->obuf + cd->olen, buf, len);
		cd->olen += len;
		cd->obuf[cd->olen] = '\0';
		pthread_mutex_unlock(&cd->out_lock);
		return 0;
	}
	return -EINVAL;
}

void chardev_input_ready(struct chardev *cd)
{
	uint64_t one = 1;

	if (cd->kind == CD_STDIO) {
		if (write(cd->wake_efd, &one, sizeof(one)) < 0) {
			/* Counter already non-zero: a wake-up is pending. */
		}
	} else if (cd->kind == CD_BUFFER) {
		pthread_mutex_lock(&cd->lock);
		deliver_locked(cd);
		pthread_mutex_unlock(&cd->lock);
	}
}

void chardev_close(struct chardev *cd)
{
	if (!cd)
		return;
	if (cd->kind == CD_STDIO) {
		chardev_restore_terminal();
		if (cd->loop) {
			if (cd->in_epoll && !cd->in_eof)
				evloop_del(cd->loop, cd->in_fd);
			if (cd->wake_efd >= 0)
				evloop_del(cd->loop, cd->wake_efd);
		}
	}
	if (cd->kind == CD_FILE && cd->out_fd >= 0)
		close(cd->out_fd);
	if (cd->wake_efd >= 0)
		close(cd->wake_efd);
	pthread_mutex_destroy(&cd->lock);
	pthread_mutex_destroy(&cd->out_lock);
	free(cd->pending);
	free(cd->obuf);
	free(cd);
}
