/* Watched descriptors: readiness callbacks (add_reader / add_writer), readiness futures
 * (cf_loop_wait_fd, cf_wait_fd) and the per-descriptor records behind both. loop/io.h explains
 * the two modes a record can be in; loop.c calls cf__loop_io_event() for each epoll event.
 *
 * Lifetimes. A record lives while it has a callback, a pending wait, an epoll registration, or
 * a queued or running call of its own. cf_loop_forget_fd() detaches it from the table at once
 * (a new record may take the number) and frees it when its last call has run, so a callback can
 * forget or remove its own descriptor. A pending wait (cf__io_wait, a loop future) is linked on
 * its record with one reference; whatever unlinks it (an event, its deadline, a cancellation,
 * forget, close) completes it and drops that reference. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>

#include "loop/shared_timer.h"
#include "loop/io.h"

typedef struct cf__io_wait {
    cf__loop_future lf;
    cf__dlink link;                 /* on its record's waiters */
    cf__io *io;                     /* the record it is linked on; NULL once unlinked */
    unsigned events;                /* CF_IO_READABLE and/or CF_IO_WRITABLE */
    cf__shared_timer deadline;      /* armed while linked, if it has one */
    cf_loop_handle unlink;          /* embedded: a cancellation made on another thread */
    struct cf__io_wait *spare_next; /* in loop->io_spare once released */
} cf__io_wait;

static cf__io_wait *wait_of(cf__dlink *l)
{
    return CF__CONTAINER_OF(l, cf__io_wait, link);
}

#define ASK_READ    (CF_IO_READABLE | CF_IO_WRITABLE)
#define SPARE_WAITS 64 /* readiness futures a loop keeps for reuse */
#define AWAIT_SET   (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET)

/* The epoll events that concern each direction: errors and hang-ups wake both, so they are never
 * lost whichever direction is watched. A half-close by the peer (RDHUP) concerns readers only. */
#define WAKES_READER (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)
#define WAKES_WRITER (EPOLLOUT | EPOLLERR | EPOLLHUP)

static unsigned public_events(uint32_t e)
{
    return (e & EPOLLIN ? CF_IO_READABLE : 0u) | (e & EPOLLOUT ? CF_IO_WRITABLE : 0u) |
           (e & EPOLLERR ? CF_IO_ERROR : 0u) | (e & (EPOLLHUP | EPOLLRDHUP) ? CF_IO_HANGUP : 0u);
}

/* epoll_ctl's errno in the terms of this API; what is not specific to epoll goes through the
 * library's one translation. */
static int epoll_errno_code(int e)
{
    switch (e) {
    case EBADF:
        return CF_EBADF;
    case EPERM: /* a regular file or a directory */
        return CF_ENOTSUP;
    case ENOSPC: /* fs.epoll.max_user_watches */
        return CF_ENOMEM;
    case EINVAL: /* the loop's own descriptor */
    case ELOOP:  /* an epoll descriptor that watches this loop's */
        return CF_EINVAL;
    default:
        return cf__errno_code(e);
    }
}

/* ---- the table ---- */

static int grow_table(cf_loop *loop, int fd)
{
    size_t old = loop->io_cap;
    if (cf__grow(&loop->io, &loop->io_cap, (size_t)fd + 1, sizeof(*loop->io)) != 0)
        return CF_ENOMEM;
    memset(loop->io + old, 0, (loop->io_cap - old) * sizeof(*loop->io));
    return 0;
}

static const cf__handle_kind reader_kind, writer_kind;

int cf__io_get(cf__io **out, cf_loop *loop, int fd)
{
    CF__ASSERT_LOOP_THREAD(loop);
    if (fd < 0)
        return CF_EINVAL;
    cf__io *io = cf__io_find(loop, fd);
    if (!io) {
        /* The table is indexed by number: make sure a number beyond it names a descriptor
         * before making room for it (INT_MAX would ask for 16 GiB). */
        if ((size_t)fd >= loop->io_cap && fcntl(fd, F_GETFD) < 0)
            return CF_EBADF;
        if ((size_t)fd >= loop->io_cap && grow_table(loop, fd) != 0)
            return CF_ENOMEM;
        io = cf__calloc(1, sizeof(*io));
        if (!io)
            return CF_ENOMEM;
        io->fd = fd;
        if (++loop->io_gen == 0)
            ++loop->io_gen;
        io->gen = loop->io_gen;
        cf__loop_handle_embed(&io->rd, loop, &reader_kind, io);
        cf__loop_handle_embed(&io->wr, loop, &writer_kind, io);
        loop->io[fd] = io;
    }
    *out = io;
    return 0;
}

static bool queued(const cf_loop_handle *h)
{
    return h->flags & CF__H_QUEUED;
}

/* Frees a record nothing needs any more. */
static void release_if_unused(cf_loop *loop, cf__io *io)
{
    CF__ASSERT_LOOP_THREAD(loop);
    if (io->rd_cb || io->wr_cb || io->waiters || !cf__wait_list_empty(&io->parked) ||
        io->registered || io->running || queued(&io->rd) || queued(&io->wr))
        return;
    if (cf__io_find(loop, io->fd) == io)
        loop->io[io->fd] = NULL;
    cf__free(io);
}

/* ---- registration ---- */

enum {
    REG_UPDATE,  /* make it so, if it is not already */
    REG_REFRESH, /* the same, with a system call even if nothing seems to change: the number may
                  * be a new descriptor whose predecessor was closed while registered */
    REG_REMOVE,  /* a descriptor that is gone (its owner closed it, which dropped the
                  * registration with it) counts as unregistered */
};

/* Makes the record's epoll registration `events` (0: none). */
static int set_registration(cf_loop *loop, cf__io *io, uint32_t events, int how)
{
    bool removing = how == REG_REMOVE;
    if (events == io->registered && (how != REG_REFRESH || !events))
        return 0;
    struct epoll_event ev = {.events = events, .data.u64 = cf__io_tag(io)};
    int op = !io->registered ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    int rc = epoll_ctl(loop->epfd, op, io->fd, &ev);
    if (rc != 0 && op == EPOLL_CTL_MOD && errno == ENOENT) /* closed and reopened meanwhile */
        rc = epoll_ctl(loop->epfd, op = EPOLL_CTL_ADD, io->fd, &ev);
    else if (rc != 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
        rc = epoll_ctl(loop->epfd, op = EPOLL_CTL_MOD, io->fd, &ev);
    if (rc != 0 && !removing && op != EPOLL_CTL_DEL)
        return epoll_errno_code(errno);
    if (rc != 0)
        events = 0; /* the descriptor is gone, and its registration with it */
    loop->io_registered += (events != 0) - (io->registered != 0);
    io->registered = events;
    return 0;
}

/* ---- readiness callbacks ---- */

static uint32_t callback_events(const cf__io *io)
{
    return (io->rd_cb ? EPOLLIN | EPOLLRDHUP : 0u) | (io->wr_cb ? EPOLLOUT : 0u);
}

static void call_run(cf_loop *loop, cf__io *io, bool reader)
{
    unsigned events = reader ? io->rd_events : io->wr_events;
    bool *skip = reader ? &io->rd_skip : &io->wr_skip;
    cf_loop_io_cb cb = reader ? io->rd_cb : io->wr_cb;
    void *data = reader ? io->rd_data : io->wr_data;
    if (reader)
        io->rd_events = 0;
    else
        io->wr_events = 0;
    if (*skip) {
        *skip = false;
    } else if (cb) {
        io->running++;
        cb(loop, io->fd, events, data);
        io->running--;
    }
    release_if_unused(loop, io);
}

static void reader_run(cf_loop *loop, cf_loop_handle *h)
{
    call_run(loop, h->data, true);
}

static void writer_run(cf_loop *loop, cf_loop_handle *h)
{
    call_run(loop, h->data, false);
}

/* A call dropped by close: only a record already forgotten needs freeing here (close frees the
 * others). */
static void call_drop(cf_loop_handle *h)
{
    cf__io *io = h->data;
    io->rd_skip = io->wr_skip = false;
    if (cf__io_find(h->loop, io->fd) != io)
        release_if_unused(h->loop, io);
}

static const cf__handle_kind reader_kind = {.run = reader_run, .drop = call_drop};
static const cf__handle_kind writer_kind = {.run = writer_run, .drop = call_drop};

static int add_callback(cf_loop *loop, int fd, bool reader, cf_loop_io_cb cb, void *data)
{
    if (!cb)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    cf__io *io;
    rc = cf__io_get(&io, loop, fd);
    if (rc)
        return rc;
    if (io->mode == CF__IO_AWAIT && (io->waiters || !cf__wait_list_empty(&io->parked)))
        return CF_EINVALSTATE;
    cf_loop_io_cb *slot = reader ? &io->rd_cb : &io->wr_cb;
    void **slot_data = reader ? &io->rd_data : &io->wr_data;
    cf_loop_io_cb old = *slot;
    *slot = cb;
    /* An awaited descriptor without waiters moves to callbacks: its edge-triggered registration
     * becomes a level-triggered one. */
    rc = set_registration(loop, io, callback_events(io), REG_REFRESH);
    if (rc) {
        *slot = old;
        release_if_unused(loop, io);
        return rc;
    }
    *slot_data = data;
    io->mode = CF__IO_CALLBACKS;
    io->ready = 0;
    return 0;
}

static int remove_callback(cf_loop *loop, int fd, bool reader)
{
    if (fd < 0)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    cf__io *io = cf__io_find(loop, fd);
    if (!io || !(reader ? io->rd_cb : io->wr_cb))
        return 0;
    if (reader) {
        io->rd_cb = NULL;
        io->rd_data = NULL;
        io->rd_skip = queued(&io->rd);
    } else {
        io->wr_cb = NULL;
        io->wr_data = NULL;
        io->wr_skip = queued(&io->wr);
    }
    set_registration(loop, io, callback_events(io), REG_REMOVE);
    if (!io->rd_cb && !io->wr_cb)
        io->mode = CF__IO_IDLE;
    release_if_unused(loop, io);
    return 1;
}

int cf_loop_add_reader(cf_loop *loop, int fd, cf_loop_io_cb cb, void *data)
{
    return add_callback(loop, fd, true, cb, data);
}

int cf_loop_add_writer(cf_loop *loop, int fd, cf_loop_io_cb cb, void *data)
{
    return add_callback(loop, fd, false, cb, data);
}

int cf_loop_remove_reader(cf_loop *loop, int fd)
{
    return remove_callback(loop, fd, true);
}

int cf_loop_remove_writer(cf_loop *loop, int fd)
{
    return remove_callback(loop, fd, false);
}

/* ---- readiness futures ---- */

/* Takes a pending wait off its record (the caller then drops the link's reference). */
static void unlink_wait(cf_loop *loop, cf__io_wait *w)
{
    CF__ASSERT_LOOP_THREAD(loop);
    CF__ASSERT(w->io != NULL);
    cf__dlist_remove(&w->io->waiters, &w->link);
    w->io = NULL;
    cf__shared_timer_stop(loop, &w->deadline);
}

/* Completes a linked wait with `events` (0: its deadline passed). A wait cancelled meanwhile
 * stays cancelled. */
static void finish_wait(cf_loop *loop, cf__io_wait *w, unsigned events)
{
    unlink_wait(loop, w);
    cf_future_set_result(&w->lf.base, (void *)(uintptr_t)events, NULL);
    cf_future_unref(&w->lf.base);
}

static void fail_wait(cf_loop *loop, cf__io_wait *w, int code, const char *message)
{
    unlink_wait(loop, w);
    cf_future_set_exception(&w->lf.base, code, message);
    cf_future_unref(&w->lf.base);
}

static void wait_expired(cf_loop *loop, cf__shared_timer *d)
{
    cf__io_wait *w = CF__CONTAINER_OF(d, cf__io_wait, deadline);
    if (w->io)
        finish_wait(loop, w, 0);
}

/* A cancellation made on another thread, carried to the loop thread (with a reference). */
static void unlink_run(cf_loop *loop, cf_loop_handle *h)
{
    cf__io_wait *w = h->data;
    if (w->io) {
        cf__io *io = w->io;
        unlink_wait(loop, w);
        cf_future_unref(&w->lf.base); /* the link's */
        release_if_unused(loop, io);
    }
    cf_future_unref(&w->lf.base); /* the trip's */
}

static void unlink_drop(cf_loop_handle *h)
{
    cf_future_unref(&((cf__io_wait *)h->data)->lf.base);
}

static const cf__handle_kind unlink_kind = {.run = unlink_run, .drop = unlink_drop};

static bool wait_cancel(cf_future *f)
{
    cf__io_wait *w = (cf__io_wait *)f;
    if (!cf__future_cancel_plain(f))
        return false;
    cf_loop *loop = w->lf.loop;
    if (cf__loop_on_thread(loop) && !loop->closed) {
        if (w->io) {
            cf__io *io = w->io;
            unlink_wait(loop, w);
            cf_future_unref(f);
            release_if_unused(loop, io);
        }
        return true;
    }
    /* The record belongs to the loop thread. */
    cf_future_ref(f);
    cf__loop_post(loop, &w->unlink);
    return true;
}

/* Released on the loop thread of an open loop, a readiness future is kept for the next wait (the
 * loop's reference goes: the user's keeps the loop alive until close, which frees the spares). */
static void wait_release(cf_future *f)
{
    cf__io_wait *w = (cf__io_wait *)f;
    cf_loop *loop = w->lf.loop;
    if (cf__loop_on_thread(loop) && !loop->closed && loop->io_spares < SPARE_WAITS) {
        w->spare_next = loop->io_spare;
        loop->io_spare = w;
        loop->io_spares++;
        cf__loop_unref(loop);
        return;
    }
    cf__loop_future_free(&w->lf);
}

static const cf__future_ops wait_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = wait_cancel,
    .release = wait_release,
};

int cf__io_await_mode(cf_loop *loop, cf__io *io)
{
    if (io->mode == CF__IO_CALLBACKS)
        return CF_EINVALSTATE;
    if (io->mode == CF__IO_AWAIT && io->registered)
        return 0;
    int rc = set_registration(loop, io, AWAIT_SET, REG_UPDATE);
    if (rc)
        return rc;
    /* Edge-triggered: if the descriptor is ready now, its first event is already queued. */
    io->mode = CF__IO_AWAIT;
    io->ready = 0;
    return 0;
}

/* The readiness of `fd` for `events` right now, as public events that concern them; or
 * CF_EBADF if the descriptor is closed. */
static int poll_now(int fd, unsigned events)
{
    struct pollfd p = {.fd = fd,
                       .events = (short)((events & CF_IO_READABLE ? POLLIN | POLLRDHUP : 0) |
                                         (events & CF_IO_WRITABLE ? POLLOUT : 0))};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if (p.revents & POLLNVAL)
        return CF_EBADF;
    uint32_t e = (p.revents & POLLIN ? EPOLLIN : 0u) | (p.revents & POLLOUT ? EPOLLOUT : 0u) |
                 (p.revents & POLLERR ? EPOLLERR : 0u) | (p.revents & POLLHUP ? EPOLLHUP : 0u) |
                 (p.revents & POLLRDHUP ? EPOLLRDHUP : 0u);
    bool concern = ((events & CF_IO_READABLE) && (e & WAKES_READER)) ||
                   ((events & CF_IO_WRITABLE) && (e & WAKES_WRITER));
    return concern ? (int)public_events(e) : 0;
}

static cf__io_wait *wait_alloc(cf_loop *loop, unsigned events)
{
    cf__io_wait *w = loop->io_spare;
    if (w) {
        loop->io_spare = w->spare_next;
        loop->io_spares--;
        memset(w, 0, sizeof(*w));
    } else if (!(w = cf__calloc(1, sizeof(*w)))) {
        return NULL;
    }
    cf__loop_future_init(&w->lf, loop, 1, &wait_ops);
    w->events = events;
    cf__loop_handle_embed(&w->unlink, loop, &unlink_kind, w);
    return w;
}

static void link_wait(cf__io *io, cf__io_wait *w)
{
    cf_future_ref(&w->lf.base); /* the link's */
    w->io = io;
    cf__dlist_push(&io->waiters, &w->link);
}

int cf__io_wait_new(cf_future **out, cf_loop *loop, int fd, unsigned events, int64_t deadline_ns,
                    int64_t duration_ns, bool confirm)
{
    *out = NULL;
    events &= ASK_READ;
    if (!events)
        return CF_EINVAL;
    cf__io *io;
    int rc = cf__io_get(&io, loop, fd);
    if (rc)
        return rc;
    rc = cf__io_await_mode(loop, io);
    int now = 0;
    if (rc == 0 && confirm && (io->ready & events)) {
        /* A direction seen ready may have been drained by the caller's own I/O since. */
        now = poll_now(fd, events);
        if (now == 0)
            io->ready &= (uint8_t)~events;
        rc = now < 0 ? now : 0;
    }
    cf__io_wait *w = rc ? NULL : wait_alloc(loop, events);
    if (!rc && !w)
        rc = CF_ENOMEM;
    if (!rc && !now && deadline_ns != CF__FOREVER_NS &&
        (rc = cf__shared_timer_arm(loop, &w->deadline, deadline_ns, duration_ns, wait_expired)))
        cf_future_unref(&w->lf.base);
    if (rc) {
        release_if_unused(loop, io);
        return rc;
    }
    if (now)
        cf_future_set_result(&w->lf.base, (void *)(uintptr_t)now, NULL);
    else
        link_wait(io, w);
    *out = &w->lf.base;
    return 0;
}

int cf_loop_wait_fd(cf_future **out, cf_loop *loop, int fd, unsigned events)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (fd < 0 || !(events & ASK_READ) || events > 0xf)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    return rc ? rc : cf__io_wait_new(out, loop, fd, events, CF__FOREVER_NS, 0, true);
}

/* ---- tasks parked on a record ---- */

/* A task waiting for a descriptor: a node on its own stack, linked on the record's `parked`. It
 * is woken with the events that happened (a positive status) or a negative code. */
typedef struct io_park {
    cf__wait wait;
    unsigned events;
    cf__shared_timer deadline;
} io_park;

static void park_expired(cf_loop *loop, cf__shared_timer *t)
{
    (void)loop;
    io_park *p = CF__CONTAINER_OF(t, io_park, deadline);
    if (p->wait.list)
        cf__task_wake(&p->wait, CF_ETIMEDOUT);
}

/* Parks the running task on `io` (in await mode). Returns the events (> 0) or a code. */
static int park_on(cf_loop *loop, cf__io *io, unsigned events, int64_t deadline_ns,
                   int64_t duration_ns)
{
    io_park p = {.events = events};
    int rc = deadline_ns == CF__FOREVER_NS
                 ? 0
                 : cf__shared_timer_arm(loop, &p.deadline, deadline_ns, duration_ns, park_expired);
    if (rc == 0) {
        rc = cf__task_park(&p.wait, &io->parked); /* `io` may be gone once this returns */
        cf__shared_timer_stop(loop, &p.deadline);
    } else {
        release_if_unused(loop, io);
    }
    return rc;
}

/* The record of `fd` in await mode, for a task about to park on it. */
static int await_record(cf__io **out, cf_loop *loop, int fd)
{
    int rc = cf__io_get(out, loop, fd);
    if (rc == 0 && (rc = cf__io_await_mode(loop, *out)) != 0)
        release_if_unused(loop, *out);
    return rc;
}

int cf__io_await(cf_loop *loop, int fd, unsigned events, int64_t deadline_ns, int64_t duration_ns)
{
    if (loop->closing)
        return CF_ECANCELLED;
    cf__io *io;
    int rc = await_record(&io, loop, fd);
    if (rc == 0)
        rc = park_on(loop, io, events & ASK_READ, deadline_ns, duration_ns);
    return rc > 0 ? 0 : rc;
}

int cf_wait_fd(unsigned *revents, int fd, unsigned events, double timeout)
{
    if (revents)
        *revents = 0;
    if (!cf_current_task())
        return CF_EINVALSTATE;
    if (fd < 0 || !(events & ASK_READ) || events > 0xf || isnan(timeout))
        return CF_EINVAL;
    cf_loop *loop = cf_loop_current();
    if (loop->closing)
        return CF_ECANCELLED;
    int64_t deadline = CF__FOREVER_NS;
    cf__deadline(timeout, &deadline);
    events &= ASK_READ;
    cf__io *io;
    int rc = await_record(&io, loop, fd);
    if (rc == 0 && ((io->ready & events) || timeout == 0)) {
        /* A direction seen ready may have been drained by the caller's own I/O since; and a
         * check without waiting cannot wait for the edge of a fresh registration. */
        rc = poll_now(fd, events);
        if (rc == 0)
            io->ready &= (uint8_t)~events;
    }
    if (rc == 0)
        rc = timeout == 0 ? CF_ETIMEDOUT
                          : park_on(loop, io, events, deadline, cf__seconds_to_ns(timeout));
    if (rc > 0 && revents)
        *revents = (unsigned)rc;
    return rc > 0 ? 0 : rc;
}

/* ---- forgetting ---- */

void cf__io_forget(cf_loop *loop, int fd)
{
    cf__io *io = cf__io_find(loop, fd);
    if (!io)
        return;
    io->rd_cb = io->wr_cb = NULL;
    io->rd_data = io->wr_data = NULL;
    io->rd_skip = queued(&io->rd);
    io->wr_skip = queued(&io->wr);
    while (io->waiters)
        fail_wait(loop, wait_of(io->waiters), CF_ECLOSED, "the loop forgot the descriptor");
    cf__task_wake_all(&io->parked, CF_ECLOSED);
    set_registration(loop, io, 0, REG_REMOVE);
    io->mode = CF__IO_IDLE;
    io->ready = 0;
    loop->io[fd] = NULL; /* the number is free for a new record now */
    release_if_unused(loop, io);
}

int cf_loop_forget_fd(cf_loop *loop, int fd)
{
    if (fd < 0)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc == 0)
        cf__io_forget(loop, fd);
    return rc;
}

/* ---- events and close (from loop.c) ---- */

static void queue_call(cf_loop *loop, cf_loop_handle *h, unsigned *pending, unsigned events)
{
    *pending |= events;
    if (!queued(h))
        cf__loop_ready_push(loop, h);
}

void cf__loop_io_event(cf_loop *loop, uint64_t tag, uint32_t e)
{
    CF__ASSERT_LOOP_THREAD(loop);
    cf__io *io = cf__io_find(loop, (int)(uint32_t)tag);
    if (!io || io->gen != (uint32_t)(tag >> 32))
        return; /* for a record since forgotten */
    unsigned events = public_events(e);
    bool rd = e & WAKES_READER, wr = e & WAKES_WRITER;
    if (io->mode == CF__IO_AWAIT) {
        io->ready |= (uint8_t)((rd ? CF__IO_READY_IN : 0) | (wr ? CF__IO_READY_OUT : 0));
        for (cf__wait *w = io->parked.head, *next; w; w = next) {
            next = w->next;
            unsigned want = CF__CONTAINER_OF(w, io_park, wait)->events;
            if (((want & CF_IO_READABLE) && rd) || ((want & CF_IO_WRITABLE) && wr))
                cf__task_wake(w, (int)events);
        }
        for (cf__dlink *l = io->waiters, *next; l; l = next) {
            next = l->next;
            cf__io_wait *w = wait_of(l);
            if (((w->events & CF_IO_READABLE) && rd) || ((w->events & CF_IO_WRITABLE) && wr))
                finish_wait(loop, w, events);
        }
        return;
    }
    if (rd && io->rd_cb)
        queue_call(loop, &io->rd, &io->rd_events, events & ~CF_IO_WRITABLE);
    if (wr && io->wr_cb)
        queue_call(loop, &io->wr, &io->wr_events, events & ~CF_IO_READABLE);
}

void cf__loop_io_close(cf_loop *loop)
{
    for (size_t fd = 0; fd < loop->io_cap; fd++) {
        cf__io *io = loop->io[fd];
        if (!io)
            continue;
        CF__ASSERT(cf__wait_list_empty(&io->parked)); /* close unlinked every parked task */
        while (io->waiters) {
            cf__io_wait *w = wait_of(io->waiters);
            unlink_wait(loop, w);
            cf__future_cancel_plain(&w->lf.base); /* the closed loop can never finish it */
            cf_future_unref(&w->lf.base);
        }
        loop->io[fd] = NULL;
        cf__free(io);
    }
    cf__free(loop->io);
    loop->io = NULL;
    loop->io_cap = 0;
    loop->io_registered = 0;
    while (loop->io_spare) {
        cf__io_wait *w = loop->io_spare;
        loop->io_spare = w->spare_next;
        cf__free(w);
    }
    loop->io_spares = 0;
    cf__loop_shared_timers_close(loop);
}
