/*
 * chardev.h - byte-stream backends for guest consoles (the UART, later
 * virtio-console): the terminal, a file, nothing, or an in-memory buffer used
 * by tests and the API.
 *
 * Output is written synchronously by the device (under its lock), so guest
 * output is never lost or reordered.  Input flows the other way with back
 * pressure: the backend offers bytes through the receiver's receive() only as
 * far as can_receive() allows, keeps the rest, and offers more when the device
 * calls chardev_input_ready() after the guest drained its FIFO.
 */
#ifndef KVMM_CORE_CHARDEV_H
#define KVMM_CORE_CHARDEV_H

#include <stddef.h>
#include <stdint.h>

struct evloop;
struct chardev;

struct chardev_receiver {
	/* How many bytes the device can take now (FIFO room). */
	size_t (*can_receive)(void *opaque);
	/* Take `len` <= can_receive() bytes. */
	void (*receive)(void *opaque, const uint8_t *buf, size_t len);
	void *opaque;
};

/* The terminal (stdin/stdout).  If stdin is a tty it is put in raw mode,
 * restored by chardev_close() and by chardev_restore_terminal() (atexit-safe),
 * and "Ctrl-A x" calls on_quit(quit_opaque), "Ctrl-A Ctrl-A" sends one Ctrl-A.
 * stdin may be a pipe, a regular file or /dev/null: end of input stops input
 * only.  Input is read on `loop`'s thread.  Returns NULL with errno set. */
struct chardev *chardev_open_stdio(struct evloop *loop,
				   void (*on_quit)(void *), void *quit_opaque);

/* Output appended to `path` (created 0644, truncated); no input. */
struct chardev *chardev_open_file(const char *path);

/* Output discarded; no input. */
struct chardev *chardev_open_null(void);

/* Output kept in memory (read with chardev_buffer_output()); input injected
 * with chardev_buffer_inject().  For the test harness and the API. */
struct chardev *chardev_open_buffer(void);

/* All output so far as a NUL-terminated string, and its length in *len
 * (may be NULL).  Owned by the chardev; valid until the next write. */
const char *chardev_buffer_output(struct chardev *cd, size_t *len);

/* Queue input bytes for the receiver (buffer backend); delivered at once as
 * far as the receiver has room, the rest on chardev_input_ready(). */
int chardev_buffer_inject(struct chardev *cd, const void *buf, size_t len);

/* Attach the device that consumes input (one per chardev), or detach it
 * with NULL before the device is freed. */
void chardev_set_receiver(struct chardev *cd,
			  const struct chardev_receiver *rx);

/* Write all `len` bytes of guest output.  Returns 0 or -errno (the output
 * is then dropped; a closed terminal must not stop the guest). */
int chardev_write(struct chardev *cd, const void *buf, size_t len);

/* The receiver has room again: offer it pending input.  Callable from any
 * thread, including with the device's lock held. */
void chardev_input_ready(struct chardev *cd);

/* Restore the terminal mode if this process changed it.  Idempotent. */
void chardev_restore_terminal(void);

/* Close the backend, restoring the terminal.  NULL is allowed. */
void chardev_close(struct chardev *cd);

#endif
