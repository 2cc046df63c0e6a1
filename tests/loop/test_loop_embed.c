/* The embedding interface: cf_loop_fd() is readable exactly when work is due, cf_loop_dispatch()
 * runs one non-blocking iteration. The host loop here is plain poll(2). */
#include <poll.h>

#include "cf_test.h"
#include "loop/loop_internal.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

/* Whether `fd` becomes readable within `seconds`. */
static bool readable(int fd, double seconds)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, (int)(seconds * 1000));
    while (rc < 0);
    return rc == 1 && (p.revents & POLLIN);
}

static void count_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ++*(int *)data;
}

static void chain_cb(cf_loop *loop, void *data)
{
    ++*(int *)data;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, count_cb, data), 0);
}

START_TEST(test_fd_readable_only_with_work)
{
    cf_loop *loop = new_loop();
    int fd = cf_loop_fd(loop);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(cf_loop_fd(loop), fd); /* stable */
    ck_assert(!readable(fd, 0));
    int count = 0;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, count_cb, &count), 0);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(count, 1);
    ck_assert(!readable(fd, 0));
    /* Work left by a dispatch keeps the descriptor readable. */
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, chain_cb, &count), 0);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(count, 2);
    ck_assert(readable(fd, 0));
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(count, 3);
    ck_assert(!readable(fd, 0));
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_timer_makes_fd_readable)
{
    cf_loop *loop = new_loop();
    int fd = cf_loop_fd(loop);
    int count = 0;
    /* A timer not yet due leaves the descriptor quiet (an hour away, so that no delay of a
     * loaded machine between the two calls can make it due). */
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 3600, count_cb, &count), 0);
    ck_assert(!readable(fd, 0));
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.02, count_cb, &count), 0);
    ck_assert(readable(fd, CF_TEST_LONG));
    ck_assert(cf_test_monotonic() - t0 >= 0.019);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(count, 1);
    ck_assert(!readable(fd, 0));
    /* An earlier timer scheduled later re-arms the descriptor. */
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 3600, count_cb, &count), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.01, count_cb, &count), 0);
    ck_assert(readable(fd, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(count, 2);
    ck_assert(!readable(fd, 0));
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_embedded_cannot_run)
{
    cf_loop *loop = new_loop();
    ck_assert_int_ge(cf_loop_fd(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), CF_EINVALSTATE);
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, f), CF_EINVALSTATE);
    ck_assert(cf_future_cancel(f));
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

/* A dispatch with nothing to do makes no wake-up write (and no other system call: see the
 * code; the write counter is what is observable). */
START_TEST(test_idle_dispatch_is_quiet)
{
    cf_loop *loop = new_loop();
    ck_assert_int_ge(cf_loop_fd(loop), 0);
    cf__loop_stats before, after;
    cf__loop_get_stats(loop, &before);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    cf__loop_get_stats(loop, &after);
    ck_assert_uint_eq(after.wake_writes, before.wake_writes);
    ck_assert_uint_eq(after.iterations, before.iterations + 100);
    cf_loop_free(loop);
}
END_TEST

/* ---- a host loop on its own thread ---- */

typedef struct host {
    cf_loop *loop;
    int fd;
    pthread_t thread;
    bool stop;      /* host thread only */
    pthread_t seen; /* thread of the done-callback */
    void *value;
    int calls;
} host;

static void done_cb(cf_future *f, void *data)
{
    host *h = data;
    h->seen = pthread_self();
    ck_assert_int_eq(cf_future_result(&h->value, f, 0), 0);
    h->calls++;
    h->stop = true;
}

static void *host_main(void *arg)
{
    host *h = arg;
    while (!h->stop) {
        ck_assert(readable(h->fd, CF_TEST_LONG));
        ck_assert_int_eq(cf_loop_dispatch(h->loop), 0);
    }
    return NULL;
}

static int slow_value(void *arg, void **result)
{
    ck_assert(cf_test_event_wait(arg, CF_TEST_LONG));
    *result = (void *)"from the pool";
    return 0;
}

/* A thread-pool future completed while the host loop sleeps in poll: its loop future's
 * callback runs on the host loop's thread. */
START_TEST(test_completion_delivered_on_host_thread)
{
    host h = {0};
    h.loop = new_loop();
    h.fd = cf_loop_fd(h.loop);
    cf_executor *ex;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    cf_test_event go;
    cf_test_event_init(&go);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, h.loop, ex, slow_value, &go), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, done_cb, &h), 0);
    pthread_create(&h.thread, NULL, host_main, &h);
    cf_test_event_set(&go);
    pthread_join(h.thread, NULL);
    ck_assert_int_eq(h.calls, 1);
    ck_assert(pthread_equal(h.seen, h.thread));
    ck_assert_str_eq(h.value, "from the pool");
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_free(h.loop), 0); /* the host thread is gone: adopt and free */
    cf_executor_free(ex);
    cf_test_event_destroy(&go);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_embed");
    TCase *tc = cf_test_tcase("fd");
    tcase_add_test(tc, test_fd_readable_only_with_work);
    tcase_add_test(tc, test_timer_makes_fd_readable);
    tcase_add_test(tc, test_embedded_cannot_run);
    tcase_add_test(tc, test_idle_dispatch_is_quiet);
    tcase_add_test(tc, test_completion_delivered_on_host_thread);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
