/* Descriptor readiness on the loop (loop_io.h): readers and writers as level-triggered callbacks,
 * readiness futures and cf_wait_fd in tasks, errors and hang-ups, watching twice, removing from
 * inside a callback, closing a watched descriptor, pipes, eventfd, timerfd, regular files, and the
 * embedded descriptor covering it all. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static void make_pipe(int p[2])
{
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void put(int fd, const char *s)
{
    ck_assert_int_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

/* Runs exactly one iteration. */
static void run_once(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

typedef struct calls {
    int n;
    int fd;
    unsigned events;     /* of the last call */
    unsigned all_events; /* union of every call */
    pthread_t thread;
    int remove_self;     /* 1: remove_reader, 2: remove_writer, 3: forget_fd */
    int remove_other_fd; /* >= 0: remove that descriptor's reader */
    bool stop;
} calls;

static void record_cb(cf_loop *loop, int fd, unsigned events, void *data)
{
    calls *c = data;
    c->n++;
    c->fd = fd;
    c->events = events;
    c->all_events |= events;
    c->thread = pthread_self();
    if (c->remove_self == 1)
        ck_assert_int_eq(cf_loop_remove_reader(loop, fd), 1);
    else if (c->remove_self == 2)
        ck_assert_int_eq(cf_loop_remove_writer(loop, fd), 1);
    else if (c->remove_self == 3)
        ck_assert_int_eq(cf_loop_forget_fd(loop, fd), 0);
    if (c->remove_other_fd >= 0)
        cf_loop_remove_reader(loop, c->remove_other_fd);
    if (c->stop)
        cf_loop_stop(loop);
}

static calls new_calls(void)
{
    return (calls){.fd = -1, .remove_other_fd = -1};
}

/* ---- readers and writers ---- */

START_TEST(test_reader_is_level_triggered)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    calls c = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), 0);
    run_once(loop);
    ck_assert_int_eq(c.n, 0); /* nothing to read */
    put(p[1], "x");
    run_once(loop);
    ck_assert_int_eq(c.n, 1);
    ck_assert_int_eq(c.fd, p[0]);
    ck_assert_uint_eq(c.events, CF_IO_READABLE);
    ck_assert(pthread_equal(c.thread, pthread_self()));
    /* Not read: called again in every iteration, as asyncio's readers. */
    run_once(loop);
    run_once(loop);
    ck_assert_int_eq(c.n, 3);
    char b;
    ck_assert_int_eq(read(p[0], &b, 1), 1);
    run_once(loop);
    ck_assert_int_eq(c.n, 3);
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 1);
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 0);
    put(p[1], "y");
    run_once(loop);
    ck_assert_int_eq(c.n, 3);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_writer_and_reader_are_independent)
{
    cf_loop *loop = new_loop();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    calls r = new_calls(), w = new_calls();
    ck_assert_int_eq(cf_loop_add_writer(loop, sv[0], record_cb, &w), 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, sv[0], record_cb, &r), 0);
    run_once(loop);
    ck_assert_int_eq(w.n, 1);
    ck_assert_uint_eq(w.events, CF_IO_WRITABLE);
    ck_assert_int_eq(r.n, 0);
    put(sv[1], "x");
    run_once(loop);
    ck_assert_int_eq(r.n, 1);
    ck_assert_uint_eq(r.events, CF_IO_READABLE); /* each callback sees its own direction */
    ck_assert_int_eq(w.n, 2);
    ck_assert_uint_eq(w.events, CF_IO_WRITABLE);
    ck_assert_int_eq(cf_loop_remove_writer(loop, sv[0]), 1);
    run_once(loop);
    ck_assert_int_eq(w.n, 2);
    ck_assert_int_eq(r.n, 2); /* the reader is still registered */
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static void other_cb(cf_loop *loop, int fd, unsigned events, void *data)
{
    (void)loop, (void)fd, (void)events;
    ++*(int *)data;
}

START_TEST(test_watching_twice_replaces)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    calls c = new_calls();
    int other = 0;
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], other_cb, &other), 0);
    put(p[1], "x");
    run_once(loop);
    ck_assert_int_eq(c.n, 0);
    ck_assert_int_eq(other, 1);
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 1);
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 0); /* one reader, not two */
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_remove_from_own_callback)
{
    cf_loop *loop = new_loop();
    int p[2], q[2], s[2];
    make_pipe(p);
    make_pipe(q);
    make_pipe(s);
    calls a = new_calls(), b = new_calls(), f = new_calls();
    a.remove_self = 1; /* remove_reader */
    f.remove_self = 3; /* forget_fd */
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &a), 0);
    ck_assert_int_eq(cf_loop_add_writer(loop, q[1], record_cb, &b), 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, s[0], record_cb, &f), 0);
    b.remove_self = 2; /* remove_writer */
    put(p[1], "x");
    put(s[1], "x");
    for (int i = 0; i < 3; i++)
        run_once(loop);
    /* Each ran once although its descriptor stayed ready. */
    ck_assert_int_eq(a.n, 1);
    ck_assert_int_eq(b.n, 1);
    ck_assert_int_eq(f.n, 1);
    /* And the descriptors can be watched again. */
    calls again = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, s[0], record_cb, &again), 0);
    run_once(loop);
    ck_assert_int_eq(again.n, 1);
    cf_loop_free(loop);
    for (int i = 0; i < 2; i++) {
        close(p[i]);
        close(q[i]);
        close(s[i]);
    }
}
END_TEST

START_TEST(test_remove_call_already_due)
{
    /* Two readers ready in the same iteration, each removing the other: exactly one runs, since a
     * removed reader's call that was already due is dropped. */
    cf_loop *loop = new_loop();
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    calls a = new_calls(), b = new_calls();
    a.remove_other_fd = q[0];
    b.remove_other_fd = p[0];
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &a), 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, q[0], record_cb, &b), 0);
    put(p[1], "x");
    put(q[1], "x");
    run_once(loop);
    ck_assert_int_eq(a.n + b.n, 1);
    /* Re-adding the removed one while its dropped call is pending does not revive that call. */
    cf_loop_free(loop);
    for (int i = 0; i < 2; i++) {
        close(p[i]);
        close(q[i]);
    }
}
END_TEST

/* ---- errors and hang-ups ---- */

START_TEST(test_pipe_hangup_reaches_reader)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    calls c = new_calls();
    c.remove_self = 1;
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), 0);
    close(p[1]);
    run_once(loop);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(c.events, CF_IO_HANGUP);
    cf_loop_free(loop);
    close(p[0]);
}
END_TEST

START_TEST(test_pipe_error_reaches_writer)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    /* Fill the pipe so it is not writable: only the error can wake the writer. */
    char block[4096] = {0};
    while (write(p[1], block, sizeof(block)) > 0)
        ;
    calls c = new_calls();
    c.remove_self = 2;
    ck_assert_int_eq(cf_loop_add_writer(loop, p[1], record_cb, &c), 0);
    run_once(loop);
    ck_assert_int_eq(c.n, 0);
    close(p[0]);
    run_once(loop);
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.events & CF_IO_ERROR);
    cf_loop_free(loop);
    close(p[1]);
}
END_TEST

START_TEST(test_socket_hangup_reaches_writer_only_watch)
{
    cf_loop *loop = new_loop();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    char block[4096] = {0};
    while (write(sv[0], block, sizeof(block)) > 0)
        ;
    calls c = new_calls();
    c.remove_self = 2;
    ck_assert_int_eq(cf_loop_add_writer(loop, sv[0], record_cb, &c), 0);
    run_once(loop);
    ck_assert_int_eq(c.n, 0);
    close(sv[1]);
    run_once(loop);
    ck_assert_int_eq(c.n, 1);
    ck_assert(c.events & CF_IO_HANGUP);
    cf_loop_free(loop);
    close(sv[0]);
}
END_TEST

START_TEST(test_peer_shutdown_reaches_reader)
{
    cf_loop *loop = new_loop();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    calls c = new_calls();
    c.remove_self = 1;
    ck_assert_int_eq(cf_loop_add_reader(loop, sv[0], record_cb, &c), 0);
    ck_assert_int_eq(shutdown(sv[1], SHUT_WR), 0);
    run_once(loop);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(c.events, CF_IO_READABLE | CF_IO_HANGUP);
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* ---- other kinds of descriptors ---- */

static void *write_eventfd_later(void *arg)
{
    usleep(20000);
    uint64_t one = 1;
    ck_assert_int_eq(write(*(int *)arg, &one, sizeof(one)), sizeof(one));
    return NULL;
}

START_TEST(test_eventfd_from_another_thread)
{
    cf_loop *loop = new_loop();
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    calls c = new_calls();
    c.remove_self = 1;
    c.stop = true;
    ck_assert_int_eq(cf_loop_add_reader(loop, efd, record_cb, &c), 0);
    pthread_t t;
    pthread_create(&t, NULL, write_eventfd_later, &efd);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0); /* sleeps in epoll until the write */
    pthread_join(t, NULL);
    ck_assert_int_eq(c.n, 1);
    ck_assert_uint_eq(c.events, CF_IO_READABLE);
    cf_loop_free(loop);
    close(efd);
}
END_TEST

START_TEST(test_timerfd)
{
    cf_loop *loop = new_loop();
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {.it_value = {.tv_nsec = 20 * 1000000}};
    double t0 = cf_test_monotonic(); /* before the timer starts counting */
    ck_assert_int_eq(timerfd_settime(tfd, 0, &its, NULL), 0);
    calls c = new_calls();
    c.remove_self = 1;
    c.stop = true;
    ck_assert_int_eq(cf_loop_add_reader(loop, tfd, record_cb, &c), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(c.n, 1);
    ck_assert(cf_test_monotonic() - t0 >= 0.019);
    cf_loop_free(loop);
    close(tfd);
}
END_TEST

START_TEST(test_bad_descriptors)
{
    cf_loop *loop = new_loop();
    calls c = new_calls();
    int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(file, 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, file, record_cb, &c), CF_ENOTSUP);
    ck_assert_int_eq(cf_loop_add_writer(loop, file, record_cb, &c), CF_ENOTSUP);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, file, CF_IO_READABLE), CF_ENOTSUP);
    ck_assert_ptr_null(f);
    close(file);
    int p[2];
    make_pipe(p);
    close(p[1]);
    close(p[0]);
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), CF_EBADF);
    ck_assert_int_eq(cf_loop_add_reader(loop, -1, record_cb, &c), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_reader(loop, 0, NULL, &c), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_reader(NULL, 0, record_cb, &c), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_reader(loop, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_writer(NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_forget_fd(loop, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_forget_fd(loop, 1000), 0); /* unknown: nothing to forget */
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, 0, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, 0, CF_IO_ERROR), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, 0, 0x100), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait_fd(NULL, loop, 0, CF_IO_READABLE), CF_EINVAL);
    cf_loop_close(loop);
    ck_assert_int_eq(cf_loop_add_reader(loop, 0, record_cb, &c), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_remove_reader(loop, 0), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, 0, CF_IO_READABLE), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

typedef struct other_thread_call {
    cf_loop *loop;
    int fd;
    int rc[4];
} other_thread_call;

static void *call_from_other_thread(void *arg)
{
    other_thread_call *c = arg;
    cf_future *f;
    c->rc[0] = cf_loop_add_reader(c->loop, c->fd, other_cb, NULL);
    c->rc[1] = cf_loop_remove_reader(c->loop, c->fd);
    c->rc[2] = cf_loop_wait_fd(&f, c->loop, c->fd, CF_IO_READABLE);
    c->rc[3] = cf_loop_forget_fd(c->loop, c->fd);
    return NULL;
}

START_TEST(test_loop_thread_only)
{
    cf_loop *loop = new_loop();
    other_thread_call c = {.loop = loop, .fd = 0};
    pthread_t t;
    pthread_create(&t, NULL, call_from_other_thread, &c);
    pthread_join(t, NULL);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(c.rc[i], CF_EPERM);
    cf_loop_free(loop);
}
END_TEST

/* ---- closing a watched descriptor ---- */

START_TEST(test_close_while_watched)
{
    /* Closed without removing: the kernel drops the registration with the last reference, so the
     * callback is never called again; remove still works, and a new descriptor that reuses the
     * number can be watched. */
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    int number = p[0];
    calls c = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), 0);
    close(p[0]);
    close(p[1]);
    run_once(loop);
    ck_assert_int_eq(c.n, 0);
    int q[2];
    make_pipe(q); /* lowest numbers first: reuses the closed ones */
    ck_assert_int_eq(q[0], number);
    put(q[1], "x");
    calls d = new_calls();
    /* Replacing the stale reader re-registers the number's new descriptor. */
    ck_assert_int_eq(cf_loop_add_reader(loop, q[0], record_cb, &d), 0);
    run_once(loop);
    ck_assert_int_eq(c.n, 0);
    ck_assert_int_eq(d.n, 1);
    ck_assert_int_eq(cf_loop_remove_reader(loop, q[0]), 1);
    /* Removing after close: fine. */
    ck_assert_int_eq(cf_loop_add_reader(loop, q[0], record_cb, &d), 0);
    close(q[0]);
    ck_assert_int_eq(cf_loop_remove_reader(loop, q[0]), 1);
    cf_loop_free(loop);
    close(q[1]);
}
END_TEST

START_TEST(test_forget_then_close_then_reuse)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    int number = p[0];
    cf_future *f;
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, p[0], CF_IO_READABLE), 0);
    ck_assert_int_eq(cf_loop_forget_fd(loop, p[0]), 0);
    ck_assert(cf_future_done(f));
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, 0), 0);
    ck_assert_int_eq(code, CF_ECLOSED);
    cf_future_unref(f);
    close(p[0]);
    close(p[1]);
    make_pipe(p);
    ck_assert_int_eq(p[0], number);
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, p[0], CF_IO_READABLE), 0);
    put(p[1], "x");
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, f), 0);
    cf_future_unref(f);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- readiness futures ---- */

static unsigned events_of(cf_future *f)
{
    void *v;
    ck_assert_int_eq(cf_future_result(&v, f, 0), 0);
    return (unsigned)(uintptr_t)v;
}

START_TEST(test_wait_fd_future)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    cf_future *a, *b, *w;
    ck_assert_int_eq(cf_loop_wait_fd(&a, loop, p[0], CF_IO_READABLE), 0);
    ck_assert_int_eq(cf_loop_wait_fd(&b, loop, p[0], CF_IO_READABLE), 0);
    ck_assert_int_eq(cf_loop_wait_fd(&w, loop, p[1], CF_IO_WRITABLE), 0);
    ck_assert(!cf_future_done(a));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, w), 0);
    ck_assert_uint_eq(events_of(w), CF_IO_WRITABLE);
    ck_assert(!cf_future_done(a) && !cf_future_done(b));
    put(p[1], "x");
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, a), 0);
    ck_assert(cf_future_done(b)); /* every waiter completes */
    ck_assert_uint_eq(events_of(a), CF_IO_READABLE);
    ck_assert_uint_eq(events_of(b), CF_IO_READABLE);
    cf_future_unref(a);
    cf_future_unref(b);
    cf_future_unref(w);
    /* Still readable: a new wait completes (in a later iteration, as loop futures do). */
    ck_assert_int_eq(cf_loop_wait_fd(&a, loop, p[0], CF_IO_READABLE), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, a), 0);
    cf_future_unref(a);
    /* Drained by our own read: a new wait must not complete on the stale readiness. */
    char c;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    ck_assert_int_eq(cf_loop_wait_fd(&a, loop, p[0], CF_IO_READABLE), 0);
    run_once(loop);
    run_once(loop);
    ck_assert(!cf_future_done(a));
    /* Modes do not mix. */
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, NULL), CF_EINVALSTATE);
    ck_assert(cf_future_cancel(a));
    run_once(loop);
    cf_future_unref(a);
    calls d = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &d), 0); /* no waiter left */
    ck_assert_int_eq(cf_loop_wait_fd(&a, loop, p[0], CF_IO_READABLE), CF_EINVALSTATE);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

typedef struct canceller {
    cf_future *f;
    cf_test_event go;
} canceller;

static void *cancel_from_thread(void *arg)
{
    canceller *c = arg;
    ck_assert(cf_test_event_wait(&c->go, CF_TEST_LONG));
    ck_assert(cf_future_cancel(c->f));
    return NULL;
}

START_TEST(test_wait_fd_cancel_from_other_thread)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    canceller c;
    cf_test_event_init(&c.go);
    ck_assert_int_eq(cf_loop_wait_fd(&c.f, loop, p[0], CF_IO_READABLE), 0);
    pthread_t t;
    pthread_create(&t, NULL, cancel_from_thread, &c);
    cf_test_event_set(&c.go);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, c.f), CF_ECANCELLED);
    pthread_join(t, NULL);
    /* The cancellation reached the loop: the descriptor has no waiter left, so callbacks may
     * take it over. */
    run_once(loop);
    calls d = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &d), 0);
    cf_future_unref(c.f);
    cf_test_event_destroy(&c.go);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

START_TEST(test_close_cancels_waits)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    cf_future *f;
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, p[0], CF_IO_READABLE), 0);
    calls c = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[1], record_cb, &c), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(cf_future_cancelled(f));
    cf_future_unref(f);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

/* ---- in tasks ---- */

#ifndef CF_TEST_NO_COROUTINES
typedef struct waiter_task {
    int fd;
    unsigned events;
    double timeout;
    int rc;
    unsigned revents;
    double took;
} waiter_task;

static int wait_task(void *arg, void **result)
{
    (void)result;
    waiter_task *w = arg;
    double t0 = cf_test_monotonic();
    w->rc = cf_wait_fd(&w->revents, w->fd, w->events, w->timeout);
    w->took = cf_test_monotonic() - t0;
    return w->rc;
}

static cf_future *start_wait(cf_loop *loop, waiter_task *w)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, wait_task, w, NULL), 0);
    return t;
}

START_TEST(test_wait_fd_in_task)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    /* Timeout. */
    waiter_task w = {.fd = p[0], .events = CF_IO_READABLE, .timeout = 0.05};
    cf_future *t = start_wait(loop, &w);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(w.rc, CF_ETIMEDOUT);
    ck_assert_uint_eq(w.revents, 0);
    ck_assert(w.took >= 0.049);
    cf_future_unref(t);
    /* Zero timeout: only checks. */
    w = (waiter_task){.fd = p[1], .events = CF_IO_WRITABLE, .timeout = 0};
    t = start_wait(loop, &w);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    ck_assert_uint_eq(w.revents, CF_IO_WRITABLE);
    cf_future_unref(t);
    w = (waiter_task){.fd = p[0], .events = CF_IO_READABLE, .timeout = 0};
    t = start_wait(loop, &w);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(w.rc, CF_ETIMEDOUT);
    cf_future_unref(t);
    /* Readiness. */
    w = (waiter_task){.fd = p[0], .events = CF_IO_READABLE | CF_IO_WRITABLE, .timeout = -1};
    t = start_wait(loop, &w);
    run_once(loop);
    run_once(loop);
    ck_assert(!cf_future_done(t));
    put(p[1], "x");
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    ck_assert_uint_eq(w.revents, CF_IO_READABLE);
    cf_future_unref(t);
    /* Cancellation. */
    char c;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    w = (waiter_task){.fd = p[0], .events = CF_IO_READABLE, .timeout = -1};
    t = start_wait(loop, &w);
    run_once(loop);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    ck_assert_int_eq(w.rc, CF_ECANCELLED);
    cf_future_unref(t);
    /* Forgotten while waiting. */
    w = (waiter_task){.fd = p[0], .events = CF_IO_READABLE, .timeout = -1};
    t = start_wait(loop, &w);
    run_once(loop);
    ck_assert_int_eq(cf_loop_forget_fd(loop, p[0]), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(w.rc, CF_ECLOSED);
    cf_future_unref(t);
    /* Hang-up. */
    close(p[1]);
    w = (waiter_task){.fd = p[0], .events = CF_IO_READABLE, .timeout = -1};
    t = start_wait(loop, &w);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    ck_assert_uint_eq(w.revents, CF_IO_HANGUP);
    cf_future_unref(t);
    /* Errors outside tasks and for bad arguments. */
    ck_assert_int_eq(cf_wait_fd(NULL, p[0], CF_IO_READABLE, 1), CF_EINVALSTATE);
    w = (waiter_task){.fd = -1, .events = CF_IO_READABLE, .timeout = -1};
    t = start_wait(loop, &w);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(w.rc, CF_EINVAL);
    cf_future_unref(t);
    cf_loop_free(loop);
    close(p[0]);
}
END_TEST

START_TEST(test_close_winds_down_waiting_task)
{
    cf_loop *loop = new_loop();
    int p[2];
    make_pipe(p);
    waiter_task w = {.fd = p[0], .events = CF_IO_READABLE, .timeout = -1};
    cf_future *t = start_wait(loop, &w);
    run_once(loop);
    run_once(loop);
    ck_assert(!cf_future_done(t));
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(w.rc, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    cf_future_unref(t);
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST
#endif /* CF_TEST_NO_COROUTINES */

/* ---- embedded: cf_loop_fd covers watched descriptors ---- */

static bool readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1;
}

START_TEST(test_embedded_fd_covers_descriptors)
{
    cf_loop *loop = new_loop();
    int lfd = cf_loop_fd(loop);
    ck_assert_int_ge(lfd, 0);
    int p[2];
    make_pipe(p);
    calls c = new_calls();
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], record_cb, &c), 0);
    ck_assert(!readable(lfd));
    put(p[1], "x");
    ck_assert(readable(lfd));
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(c.n, 1);
    /* Level-triggered: still readable, so the host comes back. */
    ck_assert(readable(lfd));
    char b;
    ck_assert_int_eq(read(p[0], &b, 1), 1);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert(!readable(lfd));
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 1);
    /* A readiness future too. */
    cf_future *f;
    ck_assert_int_eq(cf_loop_wait_fd(&f, loop, p[0], CF_IO_READABLE), 0);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert(!readable(lfd));
    put(p[1], "y");
    ck_assert(readable(lfd));
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert(cf_future_done(f));
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0); /* the done-callbacks, if any */
    cf_loop_free(loop);
    close(p[0]);
    close(p[1]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_io");
    TCase *tc = cf_test_tcase("callbacks");
    tcase_add_test(tc, test_reader_is_level_triggered);
    tcase_add_test(tc, test_writer_and_reader_are_independent);
    tcase_add_test(tc, test_watching_twice_replaces);
    tcase_add_test(tc, test_remove_from_own_callback);
    tcase_add_test(tc, test_remove_call_already_due);
    tcase_add_test(tc, test_pipe_hangup_reaches_reader);
    tcase_add_test(tc, test_pipe_error_reaches_writer);
    tcase_add_test(tc, test_socket_hangup_reaches_writer_only_watch);
    tcase_add_test(tc, test_peer_shutdown_reaches_reader);
    tcase_add_test(tc, test_eventfd_from_another_thread);
    tcase_add_test(tc, test_timerfd);
    tcase_add_test(tc, test_bad_descriptors);
    tcase_add_test(tc, test_loop_thread_only);
    tcase_add_test(tc, test_close_while_watched);
    tcase_add_test(tc, test_forget_then_close_then_reuse);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("futures");
    tcase_add_test(tc, test_wait_fd_future);
    tcase_add_test(tc, test_wait_fd_cancel_from_other_thread);
    tcase_add_test(tc, test_close_cancels_waits);
    tcase_add_test(tc, test_embedded_fd_covers_descriptors);
    suite_add_tcase(s, tc);
#ifndef CF_TEST_NO_COROUTINES
    tc = cf_test_tcase("tasks");
    tcase_add_test(tc, test_wait_fd_in_task);
    tcase_add_test(tc, test_close_winds_down_waiting_task);
    suite_add_tcase(s, tc);
#endif
    return s;
}

CF_TEST_MAIN(suite)
