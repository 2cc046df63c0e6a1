/* The event loop core: callback and timer ordering, the iteration snapshot, stop, close,
 * run_until_complete, cross-thread posting and wake-up coalescing, thread checks. */
#include <math.h>
#include <string.h>

#include "cf_test.h"
#include "loop/loop_internal.h"

/* ---- an order recorder ---- */

enum { LOG_MAX = 4096 };
static int order_log[LOG_MAX];
static size_t order_n;

static void log_reset(void)
{
    order_n = 0;
}

static void log_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_uint_lt(order_n, LOG_MAX);
    order_log[order_n++] = (int)(intptr_t)data;
}

static void stop_cb(cf_loop *loop, void *data)
{
    (void)data;
    ck_assert_int_eq(cf_loop_stop(loop), 0);
}

static void assert_log(const int *want, size_t n)
{
    ck_assert_uint_eq(order_n, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(order_log[i], want[i]);
}

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

#define P(i) ((void *)(intptr_t)(i))

/* ---- basics ---- */

START_TEST(test_new_and_free)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(NULL, NULL), CF_EINVAL);
    cf_loop_options bad = {.spin_time = NAN};
    ck_assert_int_eq(cf_loop_new(&loop, &bad), CF_EINVAL);
    ck_assert_ptr_null(loop);
    loop = new_loop();
    ck_assert(!cf_loop_is_running(loop));
    ck_assert(!cf_loop_is_closed(loop));
    ck_assert_ptr_null(cf_loop_current());
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(cf_loop_free(NULL), 0);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    cf_loop *loop = new_loop();
    cf_loop_handle *h = (cf_loop_handle *)1;
    ck_assert_int_eq(cf_loop_call_soon(&h, NULL, log_cb, NULL), CF_EINVAL);
    ck_assert_ptr_null(h);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_call_later(&h, loop, NAN, log_cb, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_call_at(&h, loop, NAN, log_cb, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(NULL, log_cb, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(loop, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_run_forever(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_stop(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_close(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_fd(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_dispatch(NULL), CF_EINVAL);
    cf_loop_handle_cancel(NULL);
    cf_loop_handle_unref(NULL);
    ck_assert(!cf_loop_handle_cancelled(NULL));
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

START_TEST(test_time_is_monotonic_seconds)
{
    cf_loop *loop = new_loop();
    double a = cf_loop_time(loop);
    double b = cf_loop_time(loop);
    ck_assert(b >= a);
    ck_assert(fabs(a - cf_test_monotonic()) < 1.0);
    cf_loop_free(loop);
}
END_TEST

/* ---- ordering ---- */

START_TEST(test_call_soon_fifo)
{
    cf_loop *loop = new_loop();
    log_reset();
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(i)), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(order_n, 100);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(order_log[i], i);
    cf_loop_free(loop);
}
END_TEST

/* A due timer joins the ready queue behind the callbacks already there (asyncio). */
START_TEST(test_call_soon_before_due_timer)
{
    cf_loop *loop = new_loop();
    log_reset();
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(1)), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0, log_cb, P(3)), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, -5, log_cb, P(4)), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(2)), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.05, log_cb, P(6)), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.01, log_cb, P(5)), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.06, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    int want[] = {1, 2, 3, 4, 5, 6};
    assert_log(want, 6);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_timers_in_deadline_order)
{
    cf_loop *loop = new_loop();
    log_reset();
    double base = cf_loop_time(loop) + 0.02;
    int offsets[] = {7, 3, 9, 0, 5, 1, 8, 2, 6, 4};
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(
            cf_loop_call_at(NULL, loop, base + offsets[i] * 0.002, log_cb, P(offsets[i])), 0);
    ck_assert_int_eq(cf_loop_call_at(NULL, loop, base + 0.05, stop_cb, NULL), 0);
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert(cf_test_monotonic() - t0 >= 0.04); /* it waited for the timers */
    int want[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    assert_log(want, 10);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_equal_deadlines_fifo)
{
    cf_loop *loop = new_loop();
    log_reset();
    double when = cf_loop_time(loop) + 0.01;
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(cf_loop_call_at(NULL, loop, when, log_cb, P(i)), 0);
    ck_assert_int_eq(cf_loop_call_at(NULL, loop, when, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(order_n, 2000);
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(order_log[i], i);
    cf_loop_free(loop);
}
END_TEST

/* ---- the iteration snapshot and stop ---- */

static void schedule_next(cf_loop *loop, void *data)
{
    log_cb(loop, data);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P((int)(intptr_t)data + 100)), 0);
}

/* stop() lets the current iteration finish; what it scheduled waits for the next run. */
START_TEST(test_stop_from_callback)
{
    cf_loop *loop = new_loop();
    log_reset();
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, schedule_next, P(1)), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(2)), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    int want1[] = {1, 2};
    assert_log(want1, 2);
    ck_assert(!cf_loop_is_running(loop));
    /* The callback scheduled during the stopped iteration runs in the next run. */
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    int want2[] = {1, 2, 101};
    assert_log(want2, 3);
    cf_loop_free(loop);
}
END_TEST

/* stop() before run_forever: exactly one iteration. */
START_TEST(test_stop_before_run)
{
    cf_loop *loop = new_loop();
    log_reset();
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, schedule_next, P(1)), 0);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    int want[] = {1};
    assert_log(want, 1);
    cf_loop_free(loop);
}
END_TEST

static void forever_soon(cf_loop *loop, void *data)
{
    int *count = data;
    ++*count;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, forever_soon, data), 0);
}

/* A callback that re-schedules itself forever does not starve timers. */
START_TEST(test_snapshot_does_not_starve_timers)
{
    cf_loop *loop = new_loop();
    int count = 0;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, forever_soon, &count), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.02, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_gt(count, 1);
    cf_loop_free(loop);
}
END_TEST

static void nested_calls(cf_loop *loop, void *data)
{
    (void)data;
    ck_assert_ptr_eq(cf_loop_current(), loop);
    ck_assert(cf_loop_is_running(loop));
    ck_assert_int_eq(cf_loop_run_forever(loop), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_close(loop), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_free(loop), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_dispatch(loop), CF_EINVALSTATE);
    cf_loop *other = new_loop();
    ck_assert_int_eq(cf_loop_run_forever(other), CF_EINVALSTATE); /* one loop per thread */
    cf_loop_free(other);
    cf_loop_stop(loop);
}

START_TEST(test_not_reentrant)
{
    cf_loop *loop = new_loop();
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, nested_calls, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_ptr_null(cf_loop_current());
    cf_loop_free(loop);
}
END_TEST

/* ---- handles and cancellation ---- */

START_TEST(test_cancel_timer_and_soon)
{
    cf_loop *loop = new_loop();
    log_reset();
    cf_loop_handle *t1, *t2, *s1;
    /* The deadline is the loop time at the call plus the delay (bracketed, however slow the
     * machine). */
    double before = cf_loop_time(loop);
    ck_assert_int_eq(cf_loop_call_later(&t1, loop, 0.01, log_cb, P(1)), 0);
    double after = cf_loop_time(loop);
    ck_assert_int_eq(cf_loop_call_later(&t2, loop, 0.02, log_cb, P(2)), 0);
    ck_assert_int_eq(cf_loop_call_soon(&s1, loop, log_cb, P(3)), 0);
    ck_assert(cf_loop_handle_when(t1) >= before + 0.01 - 1e-6);
    ck_assert(cf_loop_handle_when(t1) <= after + 0.01 + 1e-6);
    ck_assert(cf_loop_handle_when(s1) == 0);
    cf_loop_handle_cancel(t1);
    cf_loop_handle_cancel(t1); /* idempotent */
    cf_loop_handle_cancel(s1);
    ck_assert(cf_loop_handle_cancelled(t1));
    ck_assert(cf_loop_handle_cancelled(s1));
    ck_assert(!cf_loop_handle_cancelled(t2));
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.03, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    int want[] = {2};
    assert_log(want, 1);
    /* Cancelling after it ran has no effect. */
    cf_loop_handle_cancel(t2);
    ck_assert(!cf_loop_handle_cancelled(t2));
    cf_loop_handle_unref(t1);
    cf_loop_handle_unref(t2);
    cf_loop_handle_unref(s1);
    cf_loop_free(loop);
}
END_TEST

/* More than 100 timers with more than half cancelled: the heap is compacted (asyncio). */
START_TEST(test_cancelled_timers_compaction)
{
    cf_loop *loop = new_loop();
    log_reset();
    cf_loop_handle *h[300];
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(cf_loop_call_later(&h[i], loop, 3600, log_cb, P(i)), 0);
    for (int i = 0; i < 200; i++)
        cf_loop_handle_cancel(h[i]);
    ck_assert_uint_eq(loop->timers.n, 300);
    ck_assert_uint_eq(loop->timers_cancelled, 200);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(loop->timers.n, 100);
    ck_assert_uint_eq(loop->timers_cancelled, 0);
    /* Below the threshold only cancelled heads are dropped. */
    for (int i = 200; i < 240; i++)
        cf_loop_handle_cancel(h[i]);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(loop->timers.n, 60);
    cf_loop_handle_cancel(h[299]); /* not at the head: stays */
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_uint_eq(loop->timers.n, 60);
    ck_assert_uint_eq(loop->timers_cancelled, 1);
    for (int i = 0; i < 300; i++)
        cf_loop_handle_unref(h[i]);
    ck_assert_uint_eq(order_n, 0);
    cf_loop_free(loop);
}
END_TEST

static void count_cb0(cf_loop *loop, void *data)
{
    (void)loop;
    ++*(int *)data;
}

/* A burst of callbacks takes many handle slabs; once the loop idles, the empty ones are given
 * back (all but a couple of spares). */
START_TEST(test_handle_slabs_trimmed_when_idle)
{
    cf_loop *loop = new_loop();
    int count = 0;
    for (int i = 0; i < 100000; i++)
        ck_assert_int_eq(cf_loop_call_soon(NULL, loop, count_cb0, &count), 0);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0); /* one iteration: the whole burst */
    ck_assert_int_eq(count, 100000);
    ck_assert_uint_gt(loop->handles.nspare, 2);  /* not in the middle of work */
    ck_assert_int_eq(cf_loop_dispatch(loop), 0); /* an idle iteration */
    ck_assert_uint_le(loop->handles.nspare, 2);
    cf_loop_free(loop);
}
END_TEST

/* ---- close ---- */

START_TEST(test_close_drops_pending_and_is_idempotent)
{
    cf_loop *loop = new_loop();
    log_reset();
    cf_loop_handle *h;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(1)), 0);
    ck_assert_int_eq(cf_loop_call_later(&h, loop, 0.001, log_cb, P(2)), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(cf_loop_is_closed(loop));
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, P(3)), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0, log_cb, P(3)), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(loop, log_cb, P(3)), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_run_forever(loop), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_stop(loop), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_fd(loop), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_dispatch(loop), CF_ECLOSED);
    ck_assert_uint_eq(order_n, 0);
    cf_loop_handle_unref(h); /* still valid after close */
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

/* ---- run_until_complete ---- */

typedef struct completer {
    cf_future *future;
    cf_test_event go;
    pthread_t thread;
} completer;

static void *complete_later(void *arg)
{
    completer *c = arg;
    ck_assert(cf_test_event_wait(&c->go, CF_TEST_LONG));
    ck_assert_int_eq(cf_future_set_result(c->future, (void *)"from thread", NULL), 0);
    return NULL;
}

static void set_event_cb(cf_loop *loop, void *data)
{
    (void)loop;
    cf_test_event_set(data);
}

static void run_until_complete_threaded(cf_future *f, cf_loop *loop)
{
    completer c = {.future = f};
    cf_test_event_init(&c.go);
    pthread_create(&c.thread, NULL, complete_later, &c);
    /* The thread completes the future only once the loop runs. */
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, set_event_cb, &c.go), 0);
    void *value = NULL;
    ck_assert_int_eq(cf_loop_run_until_complete(&value, loop, f), 0);
    ck_assert_str_eq(value, "from thread");
    pthread_join(c.thread, NULL);
    cf_test_event_destroy(&c.go);
}

START_TEST(test_run_until_complete_loop_future_from_thread)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    run_until_complete_threaded(f, loop);
    ck_assert(!cf_loop_is_running(loop));
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_plain_future_from_thread)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
    run_until_complete_threaded(f, loop);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_run_until_complete_outcomes)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    void *v = (void *)1;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    ck_assert_int_eq(cf_future_set_exception(f, -7, "boom"), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), CF_ETASK);
    ck_assert_ptr_null(v);
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    ck_assert(cf_future_cancel(f));
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), CF_ECANCELLED);
    cf_future_unref(f);
    /* Stopped before the future is done. */
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, stop_cb, NULL), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), CF_EINVALSTATE);
    ck_assert(!cf_future_done(f));
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

/* ---- other threads ---- */

enum { POSTERS = 8, POSTS = 5000 };

typedef struct post_state {
    cf_loop *loop;
    cf_test_event *start;
    int id;
    int last_seen[POSTERS]; /* loop thread only */
    size_t received;
    bool in_order;
    pthread_t threads[POSTERS];
} post_state;

typedef struct post_msg {
    post_state *st;
    int id, seq;
} post_msg;

static post_msg msgs[POSTERS][POSTS];

static void receive(cf_loop *loop, void *data)
{
    post_msg *m = data;
    post_state *st = m->st;
    if (m->seq != st->last_seen[m->id] + 1)
        st->in_order = false;
    st->last_seen[m->id] = m->seq;
    if (++st->received == POSTERS * POSTS)
        cf_loop_stop(loop);
}

typedef struct poster {
    post_state *st;
    int id;
} poster;

static void *post_many(void *arg)
{
    poster *p = arg;
    ck_assert(cf_test_event_wait(p->st->start, CF_TEST_LONG));
    for (int i = 0; i < POSTS; i++) {
        msgs[p->id][i] = (post_msg){.st = p->st, .id = p->id, .seq = i};
        ck_assert_int_eq(cf_loop_call_soon_threadsafe(p->st->loop, receive, &msgs[p->id][i]), 0);
    }
    return NULL;
}

/* Many threads post; none is lost, each thread's posts run in order, and the eventfd is written
 * at most once per sleep of the loop. */
START_TEST(test_threadsafe_many_threads)
{
    cf_loop *loop = new_loop();
    cf_test_event start;
    cf_test_event_init(&start);
    post_state st = {.loop = loop, .start = &start, .in_order = true};
    for (int i = 0; i < POSTERS; i++)
        st.last_seen[i] = -1;
    poster ps[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        ps[i] = (poster){.st = &st, .id = i};
        pthread_create(&st.threads[i], NULL, post_many, &ps[i]);
    }
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, set_event_cb, &start), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    for (int i = 0; i < POSTERS; i++)
        pthread_join(st.threads[i], NULL);
    ck_assert_uint_eq(st.received, POSTERS * POSTS);
    ck_assert(st.in_order);
    cf__loop_stats stats;
    cf__loop_get_stats(loop, &stats);
    /* +1: the loop starts out asleep (nobody had woken it). */
    ck_assert_uint_le(stats.wake_writes, stats.sleeps + 1);
    ck_assert_uint_lt(stats.wake_writes, POSTERS * POSTS);
    cf_test_event_destroy(&start);
    cf_loop_free(loop);
}
END_TEST

typedef struct burst {
    cf_loop *loop;
    int n;
    int *count;
} burst;

static void count_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ++*(int *)data;
}

static void *post_burst(void *arg)
{
    burst *b = arg;
    for (int i = 0; i < b->n; i++)
        ck_assert_int_eq(cf_loop_call_soon_threadsafe(b->loop, count_cb, b->count), 0);
    return NULL;
}

/* Posts made while the loop is not draining make exactly one eventfd write. */
START_TEST(test_threadsafe_coalesced_wakeup)
{
    cf_loop *loop = new_loop();
    int count = 0;
    burst b = {.loop = loop, .n = 1000, .count = &count};
    pthread_t t;
    pthread_create(&t, NULL, post_burst, &b);
    pthread_join(t, NULL);
    cf__loop_stats stats;
    cf__loop_get_stats(loop, &stats);
    ck_assert_uint_eq(stats.wake_writes, 1);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(count, 1000);
    cf__loop_get_stats(loop, &stats);
    ck_assert_uint_eq(stats.drains, 1);
    cf_loop_free(loop);
}
END_TEST

typedef struct wrong_thread {
    cf_loop *loop;
    int soon, later, close, stop;
} wrong_thread;

static void *call_from_other_thread(void *arg)
{
    wrong_thread *w = arg;
    w->soon = cf_loop_call_soon(NULL, w->loop, log_cb, NULL);
    w->later = cf_loop_call_later(NULL, w->loop, 0, log_cb, NULL);
    w->close = cf_loop_close(w->loop);
    w->stop = cf_loop_stop(w->loop); /* posts a stop */
    return NULL;
}

/* Runs the other thread while the loop runs (blocking the loop briefly: fine in a test). */
static void spawn_wrong_thread(cf_loop *loop, void *data)
{
    (void)loop;
    pthread_t t;
    pthread_create(&t, NULL, call_from_other_thread, data);
    pthread_join(t, NULL);
}

START_TEST(test_loop_thread_checks)
{
    cf_loop *loop = new_loop();
    log_reset();
    wrong_thread w = {.loop = loop};
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, spawn_wrong_thread, &w), 0);
    /* The stop posted by the other thread makes run_forever return. */
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(w.soon, CF_EPERM);
    ck_assert_int_eq(w.later, CF_EPERM);
    ck_assert_int_eq(w.close, CF_EINVALSTATE);
    ck_assert_int_eq(w.stop, 0);
    ck_assert_uint_eq(order_n, 0);
    cf_loop_free(loop);
}
END_TEST

static void record_thread(cf_loop *loop, void *data)
{
    (void)loop;
    *(pthread_t *)data = pthread_self();
    cf_loop_stop(loop);
}

static void *run_in_thread(void *arg)
{
    ck_assert_int_eq(cf_loop_run_forever(arg), 0);
    return NULL;
}

/* The thread that runs the loop becomes its loop thread; an idle loop can be adopted back
 * (here by close/free). */
START_TEST(test_run_in_another_thread)
{
    cf_loop *loop = new_loop();
    pthread_t seen = pthread_self();
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, record_thread, &seen), 0);
    pthread_t t;
    pthread_create(&t, NULL, run_in_thread, loop);
    pthread_join(t, NULL);
    ck_assert(pthread_equal(seen, t));
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, log_cb, NULL), CF_EPERM);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

/* ---- build flavour ---- */

START_TEST(test_tasks_match_build)
{
    cf_loop *loop = new_loop();
    cf_future *t;
    int rc = cf_loop_create_task(&t, loop, (cf_fn)NULL, NULL, NULL);
    ck_assert_int_eq(rc, CF_EINVAL);
#ifdef CF_TEST_NO_COROUTINES
    ck_assert_int_eq(cf_loop_create_task(&t, loop, (cf_fn)1, NULL, NULL), CF_ENOTSUP);
#endif
    ck_assert_int_eq(cf_await(NULL, NULL), CF_EINVALSTATE);
    ck_assert_int_eq(cf_sleep(0), CF_EINVALSTATE);
    ck_assert_ptr_null(cf_current_task());
    cf_loop_free(loop);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = cf_test_tcase("basics");
    tcase_add_test(tc, test_new_and_free);
    tcase_add_test(tc, test_invalid_arguments);
    tcase_add_test(tc, test_time_is_monotonic_seconds);
    tcase_add_test(tc, test_tasks_match_build);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("ordering");
    tcase_add_test(tc, test_call_soon_fifo);
    tcase_add_test(tc, test_call_soon_before_due_timer);
    tcase_add_test(tc, test_timers_in_deadline_order);
    tcase_add_test(tc, test_equal_deadlines_fifo);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("iteration");
    tcase_add_test(tc, test_stop_from_callback);
    tcase_add_test(tc, test_stop_before_run);
    tcase_add_test(tc, test_snapshot_does_not_starve_timers);
    tcase_add_test(tc, test_not_reentrant);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("handles");
    tcase_add_test(tc, test_cancel_timer_and_soon);
    tcase_add_test(tc, test_cancelled_timers_compaction);
    tcase_add_test(tc, test_handle_slabs_trimmed_when_idle);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("close");
    tcase_add_test(tc, test_close_drops_pending_and_is_idempotent);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("run_until_complete");
    tcase_add_test(tc, test_run_until_complete_loop_future_from_thread);
    tcase_add_test(tc, test_run_until_complete_plain_future_from_thread);
    tcase_add_test(tc, test_run_until_complete_outcomes);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("threads");
    tcase_add_test(tc, test_threadsafe_many_threads);
    tcase_add_test(tc, test_threadsafe_coalesced_wakeup);
    tcase_add_test(tc, test_loop_thread_checks);
    tcase_add_test(tc, test_run_in_another_thread);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
