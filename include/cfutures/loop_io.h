/** @file
 * cfutures: descriptors, sockets and signals on the event loop.
 *
 * Three layers, as in asyncio:
 *
 *  - Readiness callbacks (asyncio's add_reader / add_writer): a callback runs on the loop thread
 *    in every iteration in which the descriptor is readable (writable), until it is removed.
 *  - Awaiting readiness: cf_loop_wait_fd() is a loop future that completes once the descriptor is
 *    ready; inside a task, cf_wait_fd() awaits it with a timeout.
 *  - Socket coroutines (asyncio's sock_accept, sock_recv, sock_recv_into, sock_sendall,
 *    sock_connect), called from tasks on non-blocking sockets: each suspends the task until the
 *    operation is done, the timeout passes or the task is cancelled, and never loses data that was
 *    already received or sent.
 *
 * And signals (asyncio's add_signal_handler), delivered through a signalfd so the handler is an
 * ordinary callback on the loop thread.
 *
 * Everything uses the loop's own epoll descriptor, so cf_loop_fd() still covers all of it: an
 * embedded loop's descriptor is readable when a watched descriptor is ready or a signal arrived.
 *
 * Descriptors. A descriptor is watched in one of two ways at a time: with callbacks
 * (add_reader / add_writer: level-triggered, as asyncio) or by awaiting it (cf_loop_wait_fd,
 * cf_wait_fd and the socket functions: the loop registers it once, edge-triggered, and keeps it
 * registered). Mixing both on one descriptor at the same time returns CF_EINVALSTATE. A
 * descriptor the loop has awaited stays registered until cf_loop_forget_fd(): call it before
 * close() (docs/event_loop.md, "Closing a watched descriptor", says what happens otherwise).
 * Regular files and directories cannot be watched (epoll refuses them): CF_ENOTSUP.
 *
 * Every function here runs on the loop thread; the ones whose name starts with cf_sock_ or
 * cf_wait_ must be called from inside a task (CF_EINVALSTATE elsewhere). See docs/event_loop.md.
 */
#ifndef CFUTURES_LOOP_IO_H
#define CFUTURES_LOOP_IO_H

#include <stddef.h>
#include <sys/socket.h>

#include "future.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Readiness flags: what to wait for (READABLE, WRITABLE) and what happened (all four). ERROR and
 * HANGUP are always reported, whatever was asked for. */
typedef enum cf_io_events {
    CF_IO_READABLE = 1u << 0, /**< data to read, a connection to accept, or end of file */
    CF_IO_WRITABLE = 1u << 1, /**< room to write, or a connection attempt that finished */
    CF_IO_ERROR = 1u << 2,  /**< an error is pending (EPOLLERR; read it with SO_ERROR or a read) */
    CF_IO_HANGUP = 1u << 3, /**< the peer hung up (EPOLLHUP), or shut down its writing side */
} cf_io_events;

/** A readiness callback: runs on the loop thread with the descriptor and the cf_io_events that
 * made it run (READABLE or WRITABLE, plus ERROR and HANGUP when they occurred). */
typedef void (*cf_loop_io_cb)(cf_loop *loop, int fd, unsigned events, void *data);

/* ---- readiness callbacks ---- */

/** Calls `cb(loop, fd, events, data)` on the loop thread in every iteration in which `fd` is
 * readable, has an error, or was hung up (level-triggered: as long as that lasts), until
 * cf_loop_remove_reader(). A second call for the same descriptor replaces the callback and data
 * (asyncio's rule); a writer on the same descriptor is independent. The callback may add and
 * remove watchers, including its own. Returns 0; CF_EINVAL (NULL loop or cb, negative fd, the
 * loop's own descriptor); CF_EBADF (not an open descriptor); CF_ENOTSUP (a descriptor epoll
 * cannot watch: regular file, directory);
 * CF_EINVALSTATE (the descriptor is being awaited); CF_ECLOSED; CF_EPERM (not the loop thread);
 * CF_ENOMEM. Loop thread. */
int cf_loop_add_reader(cf_loop *loop, int fd, cf_loop_io_cb cb, void *data);

/** As cf_loop_add_reader() for writability: `cb` runs while `fd` is writable, has an error or was
 * hung up. Loop thread. */
int cf_loop_add_writer(cf_loop *loop, int fd, cf_loop_io_cb cb, void *data);

/** Stops calling the reader of `fd`; a call already due in this iteration is dropped too. Works
 * after `fd` was closed. Returns 1 if a reader was removed, 0 if there was none; CF_EINVAL;
 * CF_ECLOSED; CF_EPERM. Loop thread (also from inside that reader). */
int cf_loop_remove_reader(cf_loop *loop, int fd);

/** As cf_loop_remove_reader() for the writer. Loop thread. */
int cf_loop_remove_writer(cf_loop *loop, int fd);

/* ---- awaiting readiness ---- */

/** Returns a loop future that completes once `fd` is ready for one of `events` (CF_IO_READABLE,
 * CF_IO_WRITABLE or both), or has an error or was hung up. Its result is the cf_io_events that
 * happened, as an integer in the pointer: `(unsigned)(uintptr_t)value`. A descriptor that is
 * ready already completes it in the next iteration. Cancelling the future stops the watch (from
 * any thread). Any number of futures may wait on one descriptor; each completes. If the
 * descriptor is forgotten (cf_loop_forget_fd) first, the future fails with code CF_ECLOSED;
 * if the loop closes first, it ends cancelled. Returns 0; CF_EINVAL (NULL, negative fd, events
 * without READABLE or WRITABLE, or with unknown bits); CF_EBADF; CF_ENOTSUP; CF_EINVALSTATE (the
 * descriptor has readiness callbacks); CF_ECLOSED; CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_wait_fd(cf_future **out, cf_loop *loop, int fd, unsigned events);

/** Drops everything the loop holds for `fd`: its readiness callbacks (a call due in this
 * iteration included), its registration in the loop's epoll, and its pending waits (their
 * futures fail with code CF_ECLOSED: the socket functions waiting on it return CF_ECLOSED).
 * Call it before close(fd); the descriptor itself is left open. A descriptor the loop does not
 * know is fine. Returns 0; CF_EINVAL (NULL loop, negative fd); CF_ECLOSED; CF_EPERM. Loop
 * thread. */
int cf_loop_forget_fd(cf_loop *loop, int fd);

/** Inside a task: suspends until `fd` is ready for one of `events` (as cf_loop_wait_fd()), the
 * timeout passes (seconds; 0: only checks; negative: no limit) or the task is cancelled. Stores
 * the cf_io_events that happened in `*revents` (may be NULL; 0 unless it returns 0). Returns 0;
 * CF_ETIMEDOUT; CF_ECANCELLED; CF_ECLOSED (forgotten while waiting); the errors of
 * cf_loop_wait_fd(); CF_EINVALSTATE outside a task. */
int cf_wait_fd(unsigned *revents, int fd, unsigned events, double timeout);

/* ---- socket coroutines (inside a task; non-blocking sockets) ----
 *
 * Common rules. `timeout` is in seconds for the whole call, counted from its first wait (0: do
 * what can be done without waiting; negative: no limit). The calls return 0; CF_ETIMEDOUT;
 * CF_ECANCELLED (the task was cancelled, or its loop is closing); CF_ECLOSED (cf_loop_forget_fd was
 * called on the socket while waiting); a socket error as the negated errno (CF_ECONNRESET,
 * CF_EPIPE, CF_ECONNREFUSED, CF_ENOTSOCK...); CF_EINVAL for bad arguments; CF_EINVALSTATE outside a
 * task or on a socket with readiness callbacks; CF_ENOMEM. recv and send never block the loop, even
 * on a blocking socket (they pass MSG_DONTWAIT); send never raises SIGPIPE (MSG_NOSIGNAL). The
 * socket stays registered with the loop: call cf_loop_forget_fd() before closing it. */

/** Accepts a connection on the listening socket `fd`, which must be non-blocking (CF_EINVAL
 * otherwise). The new socket, stored in `*client` (-1 on failure), is non-blocking and
 * close-on-exec; the caller owns it. `addr` and `addrlen` are as accept()'s (may be NULL). A
 * connection is either returned or left in the backlog: cancelling loses none. Returns the
 * common codes and CF_EMFILE (no descriptor left: the connection stays queued). */
int cf_sock_accept(int *client, int fd, struct sockaddr *addr, socklen_t *addrlen, double timeout);

/** Connects the non-blocking socket `fd` (CF_EINVAL if it is blocking) to `addr`. After
 * CF_ETIMEDOUT or CF_ECANCELLED the attempt may still be in progress: close the socket. Returns
 * the common codes (CF_ECONNREFUSED, CF_ENETUNREACH, ... as the negated errno), and CF_EAGAIN for
 * a Unix socket whose listener's backlog is full. */
int cf_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout);

/** Receives up to `len` bytes into `buf`: waits until some data arrives, then returns at once with
 * what one read gave (`*received` bytes; 0 means the peer closed its side). `len` 0 returns 0 at
 * once. Data is never lost to a timeout or a cancellation: either nothing was read, or the call
 * returns 0 with it. */
int cf_sock_recv_into(size_t *received, int fd, void *buf, size_t len, double timeout);

/** As cf_sock_recv_into() into a new buffer of up to `max` bytes, stored in `*data` (free it with
 * free(); NULL when `*len` is 0 or on failure). `max` 0 is CF_EINVAL. */
int cf_sock_recv(void **data, size_t *len, int fd, size_t max, double timeout);

/** Sends all `len` bytes of `buf`, continuing after partial writes until everything is sent.
 * `*sent` (may be NULL) receives the number of bytes the kernel accepted, also when the call
 * fails: after CF_ETIMEDOUT, CF_ECANCELLED or an error, the first `*sent` bytes were sent and the
 * rest was not. */
int cf_sock_sendall(size_t *sent, int fd, const void *buf, size_t len, double timeout);

/* ---- signals ---- */

/** A signal handler: runs on the loop thread, as an ordinary callback, with the signal number. */
typedef void (*cf_loop_signal_cb)(cf_loop *loop, int signum, void *data);

/** Runs `cb(loop, signum, data)` on the loop thread when `signum` is delivered to the process
 * (or to the loop thread), until cf_loop_remove_signal_handler(). The loop reads signals from a
 * signalfd and blocks `signum` in the calling thread: block it in every other thread of the
 * process too (create threads, pools included, after this call, or block it yourself), or the
 * kernel may deliver it to a thread that does not block it, with its default action. Several
 * deliveries of a standard signal before the loop reads them count as one (the kernel's rule).
 * A second call for the same signal replaces the handler. The process pool's processes are not
 * affected (they start with no signal blocked: a terminal's Ctrl-C reaches them too). Returns 0;
 * CF_EINVAL (NULL loop or cb, SIGKILL, SIGSTOP, a signal glibc reserves, out of range);
 * CF_EINVALSTATE (another open loop handles signals, or, in builds with the ucontext coroutine
 * backend, called inside a task); CF_ECLOSED; CF_EPERM (not the loop thread); CF_EMFILE;
 * CF_ENOMEM. Loop thread. */
int cf_loop_add_signal_handler(cf_loop *loop, int signum, cf_loop_signal_cb cb, void *data);

/** Removes the handler of `signum`: deliveries not yet handled are discarded, and the signal is
 * unblocked in the calling thread if it was not blocked before cf_loop_add_signal_handler(). The
 * signal's disposition is then whatever it was (usually its default action). Returns 1 if a
 * handler was removed, 0 if there was none; CF_EINVAL; CF_ECLOSED; CF_EPERM. Loop thread.
 * cf_loop_close() removes every handler the same way. */
int cf_loop_remove_signal_handler(cf_loop *loop, int signum);

#ifdef __cplusplus
}
#endif
#endif
