/* cf_loop_get_stats: each count follows what the loop holds (ready callbacks, timers, tasks,
 * watched descriptors, signals, awaited executor futures, iterations), and the thread rule. */
#include <signal.h>
#include <unistd.h>

#include "cf_test_sync.h"

static cf_loop_stats stats_of(cf_loop *loop)
{
    cf_loop_stats s;
    memset(&s, 0xAB, sizeof(s));
    ck_assert_int_eq(cf_loop_get_stats(&s, loop), 0);
    for (size_t i = 0; i < sizeof(s.reserved) / sizeof(s.reserved[0]); i++)
        ck_assert_uint_eq(s.reserved[i], 0);
    return s;
}

static void nothing_cb(cf_loop *loop, void *data)
{
    (void)loop;
    (void)data;
}

static void stop_cb(cf_loop *loop, void *data)
{
    (void)data;
    cf_loop_stop(loop);
}

static void io_cb(cf_loop *loop, int fd, unsigned events, void *data)
{
    (void)loop;
    (void)fd;
    (void)events;
    (void)data;
}

static void signal_cb(cf_loop *loop, int signum, void *data)
{
    (void)loop;
    (void)signum;
    (void)data;
}

START_TEST(test_callbacks_and_timers)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_loop_stats s = stats_of(loop);
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.timers, 0);
    ck_assert_uint_eq(s.tasks, 0);
    ck_assert_uint_eq(s.descriptors, 0);
    ck_assert_uint_eq(s.signals, 0);
    ck_assert_uint_eq(s.executor_waits, 0);
    ck_assert_uint_eq(s.iterations, 0);

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(cf_loop_call_soon(NULL, loop, nothing_cb, NULL), 0);
    cf_loop_handle *h = NULL;
    ck_assert_int_eq(cf_loop_call_later(&h, loop, 3600, nothing_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 3600, nothing_cb, NULL), 0);
    s = stats_of(loop);
    ck_assert_uint_eq(s.ready, 3);
    ck_assert_uint_eq(s.timers, 2);
    cf_loop_handle_cancel(h); /* a cancelled timer no longer counts */
    cf_loop_handle_unref(h);
    ck_assert_uint_eq(stats_of(loop).timers, 1);

    /* One iteration runs the three; the stop callback runs in the next. */
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    s = stats_of(loop);
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.timers, 1);
    ck_assert_uint_ge(s.iterations, 1);
    unsigned long long before = s.iterations;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(stats_of(loop).iterations, before + 1);

    ck_assert_int_eq(cf_loop_close(loop), 0);
    s = stats_of(loop); /* a closed loop: nothing held */
    ck_assert_uint_eq(s.ready, 0);
    ck_assert_uint_eq(s.timers, 0);
    ck_assert_uint_eq(s.iterations, before + 1);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

START_TEST(test_descriptors_and_signals)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    int p[2], q[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(pipe(q), 0);
    ck_assert_int_eq(cf_loop_add_reader(loop, p[0], io_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_add_writer(loop, p[1], io_cb, NULL), 0);
    ck_assert_uint_eq(stats_of(loop).descriptors, 2);
    cf_future *wait = NULL;
    ck_assert_int_eq(cf_loop_wait_fd(&wait, loop, q[0], CF_IO_READABLE), 0);
    ck_assert_uint_eq(stats_of(loop).descriptors, 3);
    /* The signalfd is the loop's own: counted as a signal, not as a descriptor. */
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR2, signal_cb, NULL), 0);
    cf_loop_stats s = stats_of(loop);
    ck_assert_uint_eq(s.descriptors, 3);
    ck_assert_uint_eq(s.signals, 1);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR2), 1);
    ck_assert_uint_eq(stats_of(loop).signals, 0);
    ck_assert_int_eq(cf_loop_remove_reader(loop, p[0]), 1);
    ck_assert_uint_eq(stats_of(loop).descriptors, 2);
    ck_assert_int_eq(cf_loop_forget_fd(loop, q[0]), 0);
    ck_assert_int_eq(cf_loop_remove_writer(loop, p[1]), 1);
    ck_assert_uint_eq(stats_of(loop).descriptors, 0);
    cf_future_unref(wait);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}
END_TEST

typedef struct probe {
    cf_loop *loop;
    cf_test_gate *gate;
    cf_loop_stats seen;
} probe;

static void read_stats_cb(cf_loop *loop, void *data)
{
    probe *p = data;
    ck_assert_int_eq(cf_loop_get_stats(&p->seen, loop), 0);
    cf_test_event_set(&p->gate->release);
}

static void *post_read_stats(void *arg)
{
    probe *p = arg;
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(p->loop, read_stats_cb, p), 0);
    return NULL;
}

/* An awaited executor future counts until its completion arrives; another thread reads the
 * stats through a callback it posts (the documented way). */
START_TEST(test_executor_waits_and_other_threads)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, ex, cf_test_gate_task, &g), 0);
    ck_assert_uint_eq(stats_of(loop).executor_waits, 1);
    cf_loop_stats s;
    ck_assert_int_eq(cf_loop_get_stats(&s, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_get_stats(NULL, loop), CF_EINVAL);
    /* The callback reads them on the loop, then lets the task finish. */
    probe p = {.loop = loop, .gate = &g};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, post_read_stats, &p), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, f), 0);
    ck_assert_uint_eq(p.seen.executor_waits, 1);
    ck_assert_uint_eq(stats_of(loop).executor_waits, 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

typedef struct other_thread_call {
    cf_loop *loop;
    int rc;
} other_thread_call;

static void *get_stats_elsewhere(void *arg)
{
    other_thread_call *c = arg;
    cf_loop_stats s;
    c->rc = cf_loop_get_stats(&s, c->loop);
    return NULL;
}

START_TEST(test_loop_thread_only)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    other_thread_call c = {.loop = loop};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, get_stats_elsewhere, &c), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.rc, CF_EPERM);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES
static int sleeping_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_sleep(3600);
}

static int counting_task(void *arg, void **result)
{
    (void)result;
    cf_loop_stats *out = arg;
    return cf_loop_get_stats(out, cf_loop_current());
}

START_TEST(test_tasks)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_future *sleeper = NULL, *counter = NULL;
    ck_assert_int_eq(cf_loop_create_task(&sleeper, loop, sleeping_task, NULL, NULL), 0);
    cf_loop_stats inside;
    ck_assert_int_eq(cf_loop_create_task(&counter, loop, counting_task, &inside, NULL), 0);
    cf_loop_stats s = stats_of(loop);
    ck_assert_uint_eq(s.tasks, 2);
    ck_assert_uint_eq(s.ready, 2); /* their first steps */
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, counter), 0);
    /* Inside the counter: both tasks alive, the sleeper's timer armed. */
    ck_assert_uint_eq(inside.tasks, 2);
    ck_assert_uint_eq(inside.timers, 1);
    s = stats_of(loop);
    ck_assert_uint_eq(s.tasks, 1);
    ck_assert_uint_eq(s.timers, 1);
    ck_assert(cf_future_cancel(sleeper));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, sleeper), CF_ECANCELLED);
    s = stats_of(loop);
    ck_assert_uint_eq(s.tasks, 0);
    ck_assert_uint_eq(s.timers, 0);
    cf_future_unref(sleeper);
    cf_future_unref(counter);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST
#endif

static Suite *suite(void)
{
    Suite *s = suite_create("loop_stats");
    TCase *tc = cf_test_tcase("stats");
    tcase_add_test(tc, test_callbacks_and_timers);
    tcase_add_test(tc, test_descriptors_and_signals);
    tcase_add_test(tc, test_executor_waits_and_other_threads);
    tcase_add_test(tc, test_loop_thread_only);
#ifndef CF_TEST_NO_COROUTINES
    tcase_add_test(tc, test_tasks);
#endif
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
