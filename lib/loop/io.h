/* Descriptor watching inside the loop, shared by loop/io.c (records, callbacks, waits),
 * loop/sock.c (socket coroutines), loop/signal.c and loop.c (which owns epoll_wait). Not
 * installed.
 *
 * One record per watched descriptor, found by number in loop->io. A record is in one of two
 * modes:
 *
 *  - CALLBACKS (add_reader / add_writer): registered level-triggered for exactly the directions
 *    that have a callback. Each event queues the record's embedded reader and/or writer handle,
 *    which calls the callback with the events seen. Unregistered when the last callback goes.
 *  - AWAIT (waits and socket functions): registered once, edge-triggered for both directions,
 *    and kept registered until cf_loop_forget_fd (a socket is waited on again and again; one
 *    registration saves two epoll_ctl calls per wait). `ready` remembers which directions
 *    reported readiness since an operation last found nothing to do (EAGAIN): a direction that
 *    is not ready needs no system call before waiting, since an edge will come.
 *
 * epoll's data word carries the record's descriptor and a generation number, so an event that
 * was queued for a record since forgotten (or for an older descriptor with the same number) is
 * recognised and ignored. Loop thread only, like everything here. */
#ifndef CFUTURES_LOOP_IO_INTERNAL_H
#define CFUTURES_LOOP_IO_INTERNAL_H

#include "cfutures/loop_io.h"
#include "core/list.h"
#include "loop/loop_internal.h"

enum {
    CF__IO_IDLE = 0,
    CF__IO_CALLBACKS,
    CF__IO_AWAIT,
};

enum {
    CF__IO_READY_IN = CF_IO_READABLE,
    CF__IO_READY_OUT = CF_IO_WRITABLE,
};

/* What loop/sock.c learns once per record. */
enum {
    CF__IO_KNOWN_TYPE = 1u << 0, /* sock_type is valid */
    CF__IO_NONBLOCK = 1u << 1,   /* checked: O_NONBLOCK is set */
};

typedef struct cf__io {
    int fd;
    uint32_t gen;                  /* tag of its epoll registration */
    uint32_t registered;           /* the epoll events asked for; 0 when not in the epoll set */
    uint8_t mode;                  /* CF__IO_IDLE, CALLBACKS, AWAIT */
    uint8_t ready;                 /* AWAIT: CF__IO_READY_* seen since the last EAGAIN */
    uint8_t running;               /* a callback of this record is running */
    uint8_t sock_flags;            /* CF__IO_KNOWN_TYPE, CF__IO_NONBLOCK */
    int sock_type;                 /* SOCK_STREAM...; 0 if not a socket */
    bool rd_skip, wr_skip;         /* the queued call was removed: drop it when it comes */
    unsigned rd_events, wr_events; /* events for the queued calls */
    cf_loop_io_cb rd_cb, wr_cb;
    void *rd_data, *wr_data;
    cf_loop_handle rd, wr; /* embedded; queued when an event calls for the callback */
    cf__dlink *waiters;    /* AWAIT: pending readiness futures (cf__io_wait.link), newest first */
    cf__wait_list parked;  /* AWAIT: tasks parked in cf__io_await / cf_wait_fd, oldest first */
} cf__io;

/* The record of `fd`, or NULL. */
static inline cf__io *cf__io_find(cf_loop *loop, int fd)
{
    return fd >= 0 && (size_t)fd < loop->io_cap ? loop->io[fd] : NULL;
}

/* The record of `fd`, made if needed (IDLE, unregistered). Returns 0, CF_EINVAL (negative fd) or
 * CF_ENOMEM. */
int cf__io_get(cf__io **out, cf_loop *loop, int fd);

/* Puts an AWAIT (or IDLE) record into AWAIT mode and registers it if it is not. Returns 0,
 * CF_EINVALSTATE (the descriptor has callbacks), CF_EBADF, CF_ENOTSUP, CF_ENOMEM. */
int cf__io_await_mode(cf_loop *loop, cf__io *io);

/* A loop future for readiness of `fd` for `events`, finishing with the events (as a pointer),
 * or with 0 at `deadline_ns` (CF__FOREVER_NS: none), which is `duration_ns` after some moment
 * (waits with equal durations share a timer: loop/shared_timer.h; 0: unknown). With `confirm`, a
 * direction the record believes ready is checked with poll() first (a caller that did its own
 * I/O may have drained it); without it the caller has just seen EAGAIN and cleared that
 * direction itself. */
int cf__io_wait_new(cf_future **out, cf_loop *loop, int fd, unsigned events, int64_t deadline_ns,
                    int64_t duration_ns, bool confirm);

/* Inside a task: parks it on the record of `fd` (made and registered if needed) until `fd` is
 * ready for `events`, `deadline_ns` passes (`duration_ns` as for cf__io_wait_new), the task is
 * cancelled or the descriptor forgotten. The caller has just seen EAGAIN and cleared the
 * direction. A deadline already passed is met in the next iteration (checking it first is the
 * caller's choice: it costs a clock read). No allocation: the parking node is on the task's
 * stack (cf__task_park). Returns 0, CF_ETIMEDOUT, CF_ECANCELLED, CF_ECLOSED, CF_EINVALSTATE (the
 * descriptor has callbacks), the registration's errors (CF_EBADF...), CF_ENOMEM. */
int cf__io_await(cf_loop *loop, int fd, unsigned events, int64_t deadline_ns, int64_t duration_ns);

/* Forgets `fd` (cf_loop_forget_fd without the checks): a descriptor number that comes back from
 * accept() or is being connected is a new descriptor, whatever the loop remembered. */
void cf__io_forget(cf_loop *loop, int fd);

/* ---- called by loop.c ---- */

/* Handles one epoll event of a watched descriptor (`tag` is the registration's data word). */
void cf__loop_io_event(cf_loop *loop, uint64_t tag, uint32_t events);
/* Called by close once no handle can run any more: ends every pending wait cancelled and frees
 * every record. */
void cf__loop_io_close(cf_loop *loop);

/* Registration tags: the loop's own descriptors use small numbers, records (gen << 32) | fd with
 * gen >= 1. */
static inline uint64_t cf__io_tag(const cf__io *io)
{
    return ((uint64_t)io->gen << 32) | (uint32_t)io->fd;
}

#define CF__IO_TAG_MIN ((uint64_t)1 << 32)

#endif
