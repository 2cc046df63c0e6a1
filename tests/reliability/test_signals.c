/* Blocking calls under a storm of signals. A helper thread sends a no-op signal, whose handler
 * is installed without SA_RESTART (so every interrupted system call fails with EINTR), to the
 * thread blocked in the call, about every half millisecond. Each call must return either at its
 * deadline (never before it, and within a generous bound after) with its timeout code, or when
 * the event it waits for happens, with success: never early, never with a spurious error. Every
 * case checks that signals really arrived while the call was blocked. The event loop's sleep
 * (timers, and the wait for a completion posted from another thread) is checked the same way. */
#include <signal.h>
#include <string.h>

#include "cf_test_sync.h"
#include "proc_util.h"

#define DEADLINE 0.3 /* seconds: the timeout the timed calls are given */
#define LATE     10.0

static atomic_uint delivered;

static void on_signal(int sig)
{
    (void)sig;
    atomic_fetch_add(&delivered, 1);
}

typedef struct pester {
    pthread_t target;
    pthread_t thread;
    atomic_bool stop;
} pester;

static void *pester_main(void *arg)
{
    pester *p = arg;
    while (!atomic_load(&p->stop)) {
        pthread_kill(p->target, SIGUSR1);
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void pester_start(pester *p)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted calls fail with EINTR */
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    p->target = pthread_self();
    atomic_store(&p->stop, false);
    ck_assert_int_eq(pthread_create(&p->thread, NULL, pester_main, p), 0);
}

static void pester_stop(pester *p)
{
    atomic_store(&p->stop, true);
    pthread_join(p->thread, NULL);
}

/* Runs a timed call under the storm and checks that it timed out at its deadline. On a loaded
 * machine the pester thread may hardly run during one call; a call that saw few signals tested
 * little, so it is repeated (each try checks the timing and the code) until one saw enough. */
typedef int (*timed_call)(void *ctx, double timeout);

#define STORM_MIN   10 /* signals one call must see to count as tested under a storm */
#define STORM_TRIES 8

static unsigned timed_call_once(const char *what, timed_call call, void *ctx, int timeout_code)
{
    pester p;
    pester_start(&p);
    unsigned before = atomic_load(&delivered);
    double start = cf_test_monotonic();
    int rc = call(ctx, DEADLINE);
    double took = cf_test_monotonic() - start;
    pester_stop(&p);
    ck_assert_msg(rc == timeout_code, "%s: %s instead of %s after %.3f s", what, cf_err_name(rc),
                  cf_err_name(timeout_code), took);
    ck_assert_msg(took >= DEADLINE * 0.99, "%s returned early: %.3f s of %.3f", what, took,
                  DEADLINE);
    ck_assert_msg(took < DEADLINE + LATE, "%s returned late: %.3f s", what, took);
    return atomic_load(&delivered) - before;
}

static void expect_deadline(const char *what, timed_call call, void *ctx, int timeout_code)
{
    unsigned got = 0;
    for (int i = 0; i < STORM_TRIES && got < STORM_MIN; i++)
        got = timed_call_once(what, call, ctx, timeout_code);
    ck_assert_msg(got >= STORM_MIN, "%s: only %u signals arrived in %d tries", what, got,
                  STORM_TRIES);
}

/* Runs a blocking call under the storm while another thread makes its event happen once the
 * call is asleep and a batch of signals has hit it; the call must then succeed. */
typedef struct eventful {
    void (*trigger)(void *ctx);
    void *ctx;
    pid_t tid;
    atomic_bool fired;
} eventful;

static void *trigger_main(void *arg)
{
    eventful *e = arg;
    cf_test_wait_asleep(e->tid, CF_TEST_LONG);
    unsigned target = atomic_load(&delivered) + 20;
    double end = cf_test_monotonic() + CF_TEST_LONG;
    while (atomic_load(&delivered) < target && cf_test_monotonic() < end)
        cf_test_pause_ms(1);
    atomic_store(&e->fired, true);
    e->trigger(e->ctx);
    return NULL;
}

static void expect_event(const char *what, timed_call call, void (*trigger)(void *), void *ctx,
                         double timeout)
{
    eventful e = {.trigger = trigger, .ctx = ctx, .tid = cf_test_gettid()};
    pthread_t t;
    pester p;
    pester_start(&p);
    ck_assert_int_eq(pthread_create(&t, NULL, trigger_main, &e), 0);
    int rc = call(ctx, timeout);
    bool fired = atomic_load(&e.fired);
    pester_stop(&p);
    pthread_join(t, NULL);
    ck_assert_msg(rc == 0, "%s: %s instead of success", what, cf_err_name(rc));
    ck_assert_msg(fired, "%s returned before its event", what);
}

/* ---- futures, wait, as_completed ---- */

typedef struct fctx {
    cf_future *f, *other;
} fctx;

static int call_result(void *ctx, double t)
{
    return cf_future_result(NULL, ((fctx *)ctx)->f, t);
}

static int call_result_bytes(void *ctx, double t)
{
    int rc = cf_future_result_bytes(NULL, NULL, ((fctx *)ctx)->f, t);
    return rc == CF_EINVAL ? 0 : rc; /* the trigger sets a pointer result: done is what counts */
}

static int call_exception(void *ctx, double t)
{
    return cf_future_exception(NULL, NULL, ((fctx *)ctx)->f, t);
}

static int call_wait(void *ctx, double t, cf_return_when when)
{
    fctx *c = ctx;
    cf_future *fs[2] = {c->f, c->other};
    return cf_wait(NULL, NULL, fs, when == CF_ALL_COMPLETED ? 1 : 2, when, t);
}

static int call_wait_all(void *ctx, double t)
{
    return call_wait(ctx, t, CF_ALL_COMPLETED);
}

static int call_wait_first(void *ctx, double t)
{
    return call_wait(ctx, t, CF_FIRST_COMPLETED);
}

static int call_wait_exception(void *ctx, double t)
{
    fctx *c = ctx;
    cf_future *fs[1] = {c->f};
    return cf_wait(NULL, NULL, fs, 1, CF_FIRST_EXCEPTION, t);
}

static int call_as_completed(void *ctx, double t)
{
    fctx *c = ctx;
    cf_as_completed *it;
    int rc = cf_as_completed_new(&it, &c->f, 1, t);
    if (rc)
        return rc;
    cf_future *f;
    rc = cf_as_completed_next(&f, it);
    cf_as_completed_free(it);
    return rc;
}

static void finish_future(void *ctx)
{
    cf_future_set_result(((fctx *)ctx)->f, NULL, NULL);
}

static void fail_future(void *ctx)
{
    cf_future_set_exception(((fctx *)ctx)->f, CF_EPERM, NULL);
}

static void with_future(const char *what, timed_call call, void (*trigger)(void *))
{
    fctx c;
    ck_assert_int_eq(cf_future_new(&c.f), 0);
    ck_assert_int_eq(cf_future_new(&c.other), 0);
    expect_deadline(what, call, &c, CF_ETIMEDOUT);
    expect_event(what, call, trigger, &c, CF_FOREVER);
    cf_future_unref(c.f);
    ck_assert_int_eq(cf_future_new(&c.f), 0);
    expect_event(what, call, trigger, &c, CF_TEST_LONG);
    cf_future_unref(c.f);
    cf_future_unref(c.other);
}

START_TEST(test_future_waits)
{
    with_future("cf_future_result", call_result, finish_future);
    with_future("cf_future_result_bytes", call_result_bytes, finish_future);
    with_future("cf_future_exception", call_exception, finish_future);
}
END_TEST

START_TEST(test_wait_and_as_completed)
{
    with_future("cf_wait(ALL)", call_wait_all, finish_future);
    with_future("cf_wait(FIRST_COMPLETED)", call_wait_first, finish_future);
    with_future("cf_wait(FIRST_EXCEPTION)", call_wait_exception, fail_future);
    with_future("cf_as_completed_next", call_as_completed, finish_future);
}
END_TEST

/* ---- map, shutdown, bounded submit: pool work that blocks on a gate ---- */

typedef struct pctx {
    cf_executor *ex;
    cf_test_gate gate;
    cf_future *busy, *queued;
} pctx;

static int call_map_next(void *ctx, double t)
{
    pctx *c = ctx;
    void *args[1] = {&c->gate};
    cf_map *m;
    int rc = cf_executor_map(&m, c->ex, cf_test_gate_task, args, 1, t, 0);
    if (rc)
        return rc;
    rc = cf_map_next(NULL, m);
    cf_map_free(m);
    return rc;
}

static void release_gate(void *ctx)
{
    cf_test_event_set(&((pctx *)ctx)->gate.release);
}

START_TEST(test_map_next)
{
    pctx c = {.ex = cf_test_pool(2)};
    cf_test_gate_init(&c.gate);
    expect_deadline("cf_map_next", call_map_next, &c, CF_ETIMEDOUT);
    expect_event("cf_map_next", call_map_next, release_gate, &c, CF_FOREVER);
    ck_assert_int_eq(cf_executor_free(c.ex), 0);
    cf_test_gate_destroy(&c.gate);
}
END_TEST

static int call_shutdown(void *ctx, double t)
{
    (void)t;
    return cf_executor_shutdown(((pctx *)ctx)->ex, true, false);
}

START_TEST(test_thread_pool_shutdown_wait)
{
    pctx c = {.ex = cf_test_pool(2)};
    cf_test_gate_init(&c.gate);
    ck_assert_int_eq(cf_executor_submit(&c.busy, c.ex, cf_test_gate_task, &c.gate), 0);
    ck_assert(cf_test_latch_wait(&c.gate.started, 1, CF_TEST_LONG));
    expect_event("cf_executor_shutdown(wait)", call_shutdown, release_gate, &c, CF_FOREVER);
    ck_assert(cf_future_done(c.busy));
    ck_assert_int_eq(cf_future_result(NULL, c.busy, 0), 0);
    cf_future_unref(c.busy);
    ck_assert_int_eq(cf_executor_free(c.ex), 0);
    cf_test_gate_destroy(&c.gate);
}
END_TEST

typedef struct ppctx {
    cf_executor *ex;
    char fifo[64];
} ppctx;

static int call_pp_shutdown(void *ctx, double t)
{
    (void)t;
    return cf_executor_shutdown(((ppctx *)ctx)->ex, true, false);
}

static int call_pp_free(void *ctx, double t)
{
    (void)t;
    return cf_executor_free(((ppctx *)ctx)->ex);
}

static void release_fifo(void *ctx)
{
    proc_util_release_fifo(((ppctx *)ctx)->fifo);
}

START_TEST(test_process_pool_waits)
{
    for (int pass = 0; pass < 2; pass++) {
        ppctx c;
        ck_assert_int_eq(cf_process_pool_new(&c.ex, &(cf_process_pool_options){.max_workers = 1}),
                         0);
        proc_util_make_fifo(c.fifo, sizeof(c.fifo));
        cf_future *f;
        ck_assert_int_eq(
            cf_executor_submit_bytes(&f, c.ex, proc_util_block_task, c.fifo, strlen(c.fifo)), 0);
        fctx fc = {.f = f};
        /* The result of a task running in another process, under the storm. */
        expect_deadline("process cf_future_result", call_result_bytes, &fc, CF_ETIMEDOUT);
        if (pass == 0) {
            expect_event("process cf_executor_shutdown(wait)", call_pp_shutdown, release_fifo, &c,
                         CF_FOREVER);
            ck_assert(cf_future_done(f));
            ck_assert_int_eq(cf_executor_free(c.ex), 0);
        } else {
            expect_event("process cf_executor_free", call_pp_free, release_fifo, &c, CF_FOREVER);
            ck_assert(cf_future_done(f));
        }
        ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0), 0);
        cf_future_unref(f);
        unlink(c.fifo);
    }
}
END_TEST

/* A bounded queue, full: the blocking submit waits for room until its queue_timeout. */
static int call_submit(void *ctx, double t)
{
    (void)t; /* the pool's queue_timeout bounds it */
    pctx *c = ctx;
    cf_future *f = NULL;
    int rc = cf_executor_submit(&f, c->ex, cf_test_identity_task, NULL);
    cf_future_unref(f);
    return rc;
}

static void bounded_pool(pctx *c, double queue_timeout)
{
    cf_thread_pool_options o = {.max_workers = 1,
                                .max_queue = 1,
                                .queue_policy = CF_QUEUE_BLOCK,
                                .queue_timeout = queue_timeout};
    ck_assert_int_eq(cf_thread_pool_new(&c->ex, &o), 0);
    cf_test_gate_init(&c->gate);
    ck_assert_int_eq(cf_executor_submit(&c->busy, c->ex, cf_test_gate_task, &c->gate), 0);
    ck_assert(cf_test_latch_wait(&c->gate.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_submit(&c->queued, c->ex, cf_test_identity_task, NULL), 0);
}

static void bounded_done(pctx *c)
{
    cf_test_event_set(&c->gate.release);
    ck_assert_int_eq(cf_future_result(NULL, c->busy, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_future_result(NULL, c->queued, CF_TEST_LONG), 0);
    cf_future_unref(c->busy);
    cf_future_unref(c->queued);
    ck_assert_int_eq(cf_executor_free(c->ex), 0);
    cf_test_gate_destroy(&c->gate);
}

START_TEST(test_bounded_submit)
{
    pctx c;
    bounded_pool(&c, DEADLINE);
    expect_deadline("blocking submit", call_submit, &c, CF_ETIMEDOUT);
    bounded_done(&c);
    bounded_pool(&c, 0); /* no limit: only room ends the wait */
    expect_event("blocking submit", call_submit, release_gate, &c, CF_FOREVER);
    bounded_done(&c);
}
END_TEST

/* ---- the event loop: its sleep (epoll) keeps the timers' deadlines ---- */

typedef struct lctx {
    cf_loop *loop;
    cf_future *event; /* a plain future the trigger completes */
} lctx;

/* run_until_complete on a loop sleep of `t`: returns when the timer fires, not before. */
static int call_loop_sleep(void *ctx, double t)
{
    lctx *c = ctx;
    cf_future *f;
    int rc = cf_loop_sleep(&f, c->loop, t, NULL);
    if (rc)
        return rc;
    rc = cf_loop_run_until_complete(NULL, c->loop, f);
    cf_future_unref(f);
    return rc == 0 ? CF_ETIMEDOUT : rc; /* "the deadline came" */
}

static void stop_loop(cf_loop *loop, void *data)
{
    (void)data;
    cf_loop_stop(loop);
}

/* run_forever with a timer that stops the loop after `t`. */
static int call_loop_timer(void *ctx, double t)
{
    lctx *c = ctx;
    int rc = cf_loop_call_later(NULL, c->loop, t, stop_loop, NULL);
    if (rc)
        return rc;
    rc = cf_loop_run_forever(c->loop);
    return rc == 0 ? CF_ETIMEDOUT : rc;
}

/* run_until_complete on a wrapped future that another thread completes. */
static int call_loop_wrapped(void *ctx, double t)
{
    (void)t;
    lctx *c = ctx;
    cf_future *f;
    int rc = cf_loop_wrap_future(&f, c->loop, c->event);
    if (rc)
        return rc;
    rc = cf_loop_run_until_complete(NULL, c->loop, f);
    cf_future_unref(f);
    return rc;
}

static void finish_event(void *ctx)
{
    cf_future_set_result(((lctx *)ctx)->event, NULL, NULL);
}

START_TEST(test_loop_waits)
{
    lctx c;
    ck_assert_int_eq(cf_loop_new(&c.loop, NULL), 0);
    expect_deadline("loop sleep", call_loop_sleep, &c, CF_ETIMEDOUT);
    expect_deadline("loop timer", call_loop_timer, &c, CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_new(&c.event), 0);
    expect_event("loop wrapped future", call_loop_wrapped, finish_event, &c, CF_FOREVER);
    cf_future_unref(c.event);
    ck_assert_int_eq(cf_loop_free(c.loop), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("signals");
    TCase *tc = cf_test_tcase("eintr");
    tcase_add_test(tc, test_future_waits);
    tcase_add_test(tc, test_wait_and_as_completed);
    tcase_add_test(tc, test_map_next);
    tcase_add_test(tc, test_thread_pool_shutdown_wait);
    tcase_add_test(tc, test_process_pool_waits);
    tcase_add_test(tc, test_bounded_submit);
    tcase_add_test(tc, test_loop_waits);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
