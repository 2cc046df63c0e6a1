/* Loop tasks on coroutines: results, await of loop/executor/failed futures, cancellation in all
 * its places, gather and wait_for, thousands of interleaved sleepers, close with live tasks,
 * per-task cf_task_fail contexts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static cf_future *spawn(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, fn, arg, NULL), 0);
    return t;
}

/* Runs the loop until `f` is done; returns its outcome and stores the value. */
static int run(cf_loop *loop, cf_future *f, void **value)
{
    return cf_loop_run_until_complete(value, loop, f);
}

static int return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

/* ---- basics ---- */

START_TEST(test_task_result_and_current)
{
    cf_loop *loop = new_loop();
    cf_future *t = spawn(loop, return_arg, (void *)"hello");
    ck_assert(!cf_future_done(t)); /* starts in a later iteration */
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_str_eq(v, "hello");
    cf_future_unref(t);
    ck_assert_int_eq(cf_loop_create_task(NULL, loop, return_arg, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_create_task(&t, NULL, return_arg, NULL, NULL), CF_EINVAL);
    cf_loop_free(loop);
}
END_TEST

static int check_self(void *arg, void **result)
{
    (void)arg;
    cf_future *self = cf_current_task();
    ck_assert_ptr_nonnull(self);
    ck_assert_int_eq(cf_await(NULL, self), CF_EINVAL);
    ck_assert_int_eq(cf_await(NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_sleep(NAN), CF_EINVAL);
    ck_assert_ptr_nonnull(cf_loop_current());
    *result = self;
    return 0;
}

START_TEST(test_current_task_and_bad_awaits)
{
    cf_loop *loop = new_loop();
    ck_assert_ptr_null(cf_current_task());
    cf_future *t = spawn(loop, check_self, NULL);
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_ptr_eq(v, t);
    ck_assert_ptr_null(cf_current_task());
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

typedef struct pingpong {
    int *log;
    int *n;
    int id;
} pingpong;

static int yielder(void *arg, void **result)
{
    (void)result;
    pingpong *p = arg;
    for (int i = 0; i < 3; i++) {
        p->log[(*p->n)++] = p->id;
        ck_assert_int_eq(cf_sleep(0), 0);
    }
    return 0;
}

/* cf_sleep(0) yields one iteration: two tasks alternate. */
START_TEST(test_sleep_zero_interleaves)
{
    cf_loop *loop = new_loop();
    int log[6], n = 0;
    pingpong a = {log, &n, 1}, b = {log, &n, 2};
    cf_future *ta = spawn(loop, yielder, &a), *tb = spawn(loop, yielder, &b);
    ck_assert_int_eq(run(loop, tb, NULL), 0);
    ck_assert_int_eq(run(loop, ta, NULL), 0);
    int want[] = {1, 2, 1, 2, 1, 2};
    ck_assert_int_eq(n, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(log[i], want[i]);
    cf_future_unref(ta);
    cf_future_unref(tb);
    cf_loop_free(loop);
}
END_TEST

/* ---- await ---- */

static void set_result_cb(cf_loop *loop, void *data)
{
    (void)loop;
    cf_future_set_result(data, (void *)"set by callback", NULL);
}

static int await_loop_future(void *arg, void **result)
{
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, cf_loop_current()), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, cf_loop_current(), 0.005, set_result_cb, f), 0);
    void *v;
    int rc = cf_await(&v, f);
    *(void **)arg = v;
    cf_future_unref(f); /* the string is static */
    *result = v;
    return rc;
}

START_TEST(test_await_loop_future)
{
    cf_loop *loop = new_loop();
    void *seen = NULL;
    cf_future *t = spawn(loop, await_loop_future, &seen);
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_str_eq(v, "set by callback");
    ck_assert_str_eq(seen, "set by callback");
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

static void flag_cb(cf_loop *loop, void *data)
{
    (void)loop;
    *(bool *)data = true;
}

static int await_done_future(void *arg, void **result)
{
    (void)result;
    bool *flag = arg;
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, cf_loop_current()), 0);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, cf_loop_current(), flag_cb, flag), 0);
    ck_assert_int_eq(cf_await(NULL, f), 0);
    ck_assert(!*flag); /* did not suspend: the callback has not run */
    cf_future_unref(f);
    return 0;
}

START_TEST(test_await_done_future_does_not_suspend)
{
    cf_loop *loop = new_loop();
    bool flag = false;
    cf_future *t = spawn(loop, await_done_future, &flag);
    ck_assert_int_eq(run(loop, t, NULL), 0);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

typedef struct exec_ctx {
    cf_executor *ex;
    pthread_t loop_thread;
} exec_ctx;

static int await_executor(void *arg, void **result)
{
    exec_ctx *c = arg;
    cf_future *f;
    int total = 0;
    for (intptr_t i = 1; i <= 20; i++) {
        ck_assert_int_eq(cf_executor_submit(&f, c->ex, return_arg, (void *)i), 0);
        void *v;
        ck_assert_int_eq(cf_await(&v, f), 0);
        ck_assert(pthread_equal(pthread_self(), c->loop_thread));
        total += (int)(intptr_t)v;
        cf_future_unref(f);
        ck_assert_int_eq(cf_loop_run_in_executor(&f, cf_loop_current(), NULL, return_arg, NULL), 0);
        ck_assert_int_eq(cf_await(NULL, f), 0);
        cf_future_unref(f);
    }
    *result = (void *)(intptr_t)total;
    return 0;
}

START_TEST(test_await_thread_pool_futures)
{
    cf_loop *loop = new_loop();
    exec_ctx c = {.loop_thread = pthread_self()};
    cf_thread_pool_options o = {.max_workers = 2};
    ck_assert_int_eq(cf_thread_pool_new(&c.ex, &o), 0);
    cf_future *t = spawn(loop, await_executor, &c);
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_int_eq((int)(intptr_t)v, 210);
    cf_future_unref(t);
    cf_loop_free(loop);
    cf_executor_free(c.ex);
}
END_TEST

static int square_bytes(const void *arg, size_t len, void **result, size_t *result_len)
{
    if (len != sizeof(int))
        return cf_task_fail(CF_EINVAL, "got %zu bytes", len);
    int x;
    memcpy(&x, arg, sizeof(x));
    int *out = malloc(sizeof(int));
    *out = x * x;
    *result = out;
    *result_len = sizeof(int);
    return 0;
}

static int await_process_pool(void *arg, void **result)
{
    cf_executor *ex = arg;
    intptr_t total = 0;
    for (int i = 1; i <= 10; i++) {
        cf_future *f;
        ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, square_bytes, &i, sizeof(i)), 0);
        int rc = cf_await(NULL, f);
        const char *msg = NULL;
        int code = 0;
        cf_future_exception(&code, &msg, f, 0);
        ck_assert_msg(rc == 0, "rc %d code %d: %s", rc, code, msg ? msg : "-");
        const void *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
        ck_assert_uint_eq(len, sizeof(int));
        int sq;
        memcpy(&sq, data, sizeof(sq));
        total += sq;
        cf_future_unref(f);
    }
    *result = (void *)total;
    return 0;
}

START_TEST(test_await_process_pool_futures)
{
    cf_loop *loop = new_loop();
    cf_executor *ex;
    cf_process_pool_options o = {.max_workers = 2};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *t = spawn(loop, await_process_pool, ex);
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_int_eq((int)(intptr_t)v, 385);
    cf_future_unref(t);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

static int fail_with_message(void *arg, void **result)
{
    (void)result;
    return cf_task_fail((int)(intptr_t)arg, "task %d failed", (int)(intptr_t)arg);
}

static int await_failure(void *arg, void **result)
{
    (void)result;
    cf_executor *ex = arg;
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, ex, fail_with_message, (void *)-9), 0);
    ck_assert_int_eq(cf_await(NULL, f), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
    ck_assert_int_eq(code, -9);
    ck_assert_str_eq(msg, "task -9 failed");
    cf_future_unref(f);
    /* A failing sub-task of this loop. */
    cf_future *sub = spawn(cf_loop_current(), fail_with_message, (void *)-3);
    ck_assert_int_eq(cf_await(NULL, sub), CF_ETASK);
    ck_assert_int_eq(cf_future_exception(&code, &msg, sub, 0), 0);
    ck_assert_int_eq(code, -3);
    ck_assert_str_eq(msg, "task -3 failed");
    cf_future_unref(sub);
    return cf_task_fail(-77, "outer");
}

START_TEST(test_await_failed_future)
{
    cf_loop *loop = new_loop();
    cf_executor *ex;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    cf_future *t = spawn(loop, await_failure, ex);
    ck_assert_int_eq(run(loop, t, NULL), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, t, 0), 0);
    ck_assert_int_eq(code, -77);
    ck_assert_str_eq(msg, "outer");
    cf_future_unref(t);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

static int interleaved_fail(void *arg, void **result)
{
    (void)result;
    intptr_t id = (intptr_t)arg;
    char msg[32];
    snprintf(msg, sizeof(msg), "from %d", (int)id);
    cf_task_fail(-1, "%s", msg); /* the message is kept across suspensions */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(cf_sleep(0), 0);
    return -(int)id;
}

/* Each task keeps its own cf_task_fail context while they interleave. */
START_TEST(test_task_fail_context_per_task)
{
    cf_loop *loop = new_loop();
    cf_future *ts[5];
    for (intptr_t i = 0; i < 5; i++)
        ts[i] = spawn(loop, interleaved_fail, (void *)(i + 1));
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(run(loop, ts[i], NULL), CF_ETASK);
        int code;
        const char *msg;
        ck_assert_int_eq(cf_future_exception(&code, &msg, ts[i], 0), 0);
        ck_assert_int_eq(code, -(i + 1));
        char want[32];
        snprintf(want, sizeof(want), "from %d", i + 1);
        ck_assert_str_eq(msg, want);
        cf_future_unref(ts[i]);
    }
    cf_loop_free(loop);
}
END_TEST

/* ---- cancellation ---- */

typedef struct cancel_ctx {
    cf_executor *ex;
    cf_test_gate *g;
    cf_future *work;
    int await_rc;
    bool after_await;
} cancel_ctx;

static int await_gated_work(void *arg, void **result)
{
    (void)result;
    cancel_ctx *c = arg;
    ck_assert_int_eq(cf_executor_submit(&c->work, c->ex, cf_test_gate_task, c->g), 0);
    c->await_rc = cf_await(NULL, c->work);
    c->after_await = true;
    return c->await_rc;
}

static void cancel_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert(cf_future_cancel(data));
}

/* Cancelling a task that awaits running executor work: the await returns CF_ECANCELLED at
 * once, the task ends cancelled, the work goes on. */
START_TEST(test_cancel_task_awaiting_running_work)
{
    cf_loop *loop = new_loop();
    cf_test_gate g;
    cf_test_gate_init(&g);
    cancel_ctx c = {.g = &g};
    ck_assert_int_eq(cf_thread_pool_new(&c.ex, NULL), 0);
    cf_future *t = spawn(loop, await_gated_work, &c);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0); /* the task starts and parks */
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(run(loop, t, NULL), CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    ck_assert(c.after_await);
    ck_assert_int_eq(c.await_rc, CF_ECANCELLED);
    ck_assert(cf_future_running(c.work));
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, c.work, CF_TEST_LONG), 0);
    cf_future_unref(c.work);
    cf_future_unref(t);
    cf_loop_free(loop);
    cf_executor_free(c.ex);
    cf_test_gate_destroy(&g);
}
END_TEST

static int ignore_cancel(void *arg, void **result)
{
    (void)arg;
    int rc = cf_sleep(3600);
    ck_assert_int_eq(rc, CF_ECANCELLED);
    ck_assert_int_eq(cf_sleep(0), 0); /* the request was consumed */
    *result = (void *)"ignored";
    return 0;
}

/* A task may catch the cancellation and finish normally (asyncio allows it). */
START_TEST(test_cancel_sleeping_task_that_ignores_it)
{
    cf_loop *loop = new_loop();
    cf_future *t = spawn(loop, ignore_cancel, NULL);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.005, cancel_cb, t), 0);
    void *v;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_str_eq(v, "ignored");
    ck_assert(!cf_future_cancelled(t));
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

static int must_not_run(void *arg, void **result)
{
    (void)result;
    *(bool *)arg = true;
    return 0;
}

START_TEST(test_cancel_before_start)
{
    cf_loop *loop = new_loop();
    bool ran = false;
    cf_future *t = spawn(loop, must_not_run, &ran);
    ck_assert(cf_future_cancel(t));
    ck_assert(!cf_future_done(t)); /* a request until the task acts on it */
    ck_assert_int_eq(run(loop, t, NULL), CF_ECANCELLED);
    ck_assert(!ran);
    ck_assert(!cf_future_cancel(t)); /* done */
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

static int cancel_self_then_return(void *arg, void **result)
{
    (void)arg;
    ck_assert(cf_future_cancel(cf_current_task()));
    *result = (void *)"ignored";
    return 0; /* a cancellation still pending at return cancels the task */
}

START_TEST(test_cancel_pending_at_return)
{
    cf_loop *loop = new_loop();
    cf_future *t = spawn(loop, cancel_self_then_return, NULL);
    ck_assert_int_eq(run(loop, t, NULL), CF_ECANCELLED);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

static int await_shared(void *arg, void **result)
{
    (void)result;
    return cf_await(NULL, arg);
}

/* Cancelling a task parked on a loop future cancels that future (asyncio's rule). */
START_TEST(test_cancel_propagates_to_awaited_future)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    cf_future *t = spawn(loop, await_shared, f);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.002, cancel_cb, t), 0);
    ck_assert_int_eq(run(loop, t, NULL), CF_ECANCELLED);
    ck_assert(cf_future_cancelled(f));
    cf_future_unref(t);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

typedef struct remote_cancel {
    cf_future *task;
    cf_test_event *parked;
} remote_cancel;

static void *cancel_from_thread(void *arg)
{
    remote_cancel *r = arg;
    ck_assert(cf_test_event_wait(r->parked, CF_TEST_LONG));
    ck_assert(cf_future_cancel(r->task));
    return NULL;
}

static void set_event_cb(cf_loop *loop, void *data)
{
    (void)loop;
    cf_test_event_set(data);
}

static int sleep_long(void *arg, void **result)
{
    (void)result;
    ck_assert_int_eq(cf_loop_call_soon(NULL, cf_loop_current(), set_event_cb, arg), 0);
    return cf_sleep(3600);
}

START_TEST(test_cancel_from_other_thread)
{
    cf_loop *loop = new_loop();
    cf_test_event parked;
    cf_test_event_init(&parked);
    cf_future *t = spawn(loop, sleep_long, &parked);
    remote_cancel r = {.task = t, .parked = &parked};
    pthread_t th;
    pthread_create(&th, NULL, cancel_from_thread, &r);
    ck_assert_int_eq(run(loop, t, NULL), CF_ECANCELLED);
    pthread_join(th, NULL);
    cf_future_unref(t);
    cf_test_event_destroy(&parked);
    cf_loop_free(loop);
}
END_TEST

/* ---- gather and wait_for ---- */

static int sleep_then_return(void *arg, void **result)
{
    intptr_t ms = (intptr_t)arg;
    if (cf_sleep((double)ms / 1000) != 0)
        return CF_ECANCELLED;
    *result = arg;
    return 0;
}

static int fail_after(void *arg, void **result)
{
    (void)result;
    ck_assert_int_eq(cf_sleep((double)(intptr_t)arg / 1000), 0);
    return cf_task_fail(-11, "gathered failure");
}

typedef struct gather_ctx {
    cf_future *children[3];
    void *values[3];
    int rc;
} gather_ctx;

static int gatherer(void *arg, void **result)
{
    (void)result;
    gather_ctx *c = arg;
    c->rc = cf_gather(c->values, c->children, 3);
    return 0;
}

START_TEST(test_gather_in_order)
{
    cf_loop *loop = new_loop();
    gather_ctx c = {0};
    intptr_t ms[3] = {15, 5, 10};
    for (int i = 0; i < 3; i++)
        c.children[i] = spawn(loop, sleep_then_return, (void *)ms[i]);
    cf_future *t = spawn(loop, gatherer, &c);
    ck_assert_int_eq(run(loop, t, NULL), 0);
    ck_assert_int_eq(c.rc, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_eq(c.values[i], (void *)ms[i]);
        cf_future_unref(c.children[i]);
    }
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* Awaits the gate (a loop future), then returns its value: finishes only when the test says. */
static int await_gate(void *arg, void **result)
{
    return cf_await(result, arg);
}

START_TEST(test_gather_first_failure_others_continue)
{
    cf_loop *loop = new_loop();
    gather_ctx c = {0};
    cf_future *gate;
    ck_assert_int_eq(cf_loop_create_future(&gate, loop), 0);
    c.children[0] = spawn(loop, await_gate, gate);
    c.children[1] = spawn(loop, fail_after, (void *)1);
    c.children[2] = spawn(loop, await_gate, gate);
    cf_future *t = spawn(loop, gatherer, &c);
    ck_assert_int_eq(run(loop, t, NULL), 0);
    ck_assert_int_eq(c.rc, CF_ETASK);
    ck_assert(!cf_future_done(c.children[0]));
    ck_assert(!cf_future_done(c.children[2]));
    ck_assert_int_eq(cf_future_set_result(gate, (void *)20, NULL), 0);
    void *v;
    ck_assert_int_eq(run(loop, c.children[2], &v), 0);
    ck_assert_ptr_eq(v, (void *)20);
    ck_assert_int_eq(run(loop, c.children[0], NULL), 0);
    cf_future_unref(gate);
    int code;
    ck_assert_int_eq(cf_future_exception(&code, NULL, c.children[1], 0), 0);
    ck_assert_int_eq(code, -11);
    for (int i = 0; i < 3; i++)
        cf_future_unref(c.children[i]);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

typedef struct wait_for_ctx {
    cf_future *inner;
    double timeout;
    int rc;
    void *value;
    bool inner_done_at_return;
} wait_for_ctx;

static int waiter_task(void *arg, void **result)
{
    (void)result;
    wait_for_ctx *c = arg;
    c->rc = cf_wait_for(&c->value, c->inner, c->timeout);
    c->inner_done_at_return = cf_future_done(c->inner);
    return 0;
}

static int stubborn(void *arg, void **result)
{
    (void)arg;
    (void)result;
    /* Needs a few iterations to honour the cancellation. */
    int rc = cf_sleep(3600);
    for (int i = 0; i < 3; i++)
        cf_sleep(0);
    return rc;
}

/* wait_for: on timeout the inner task is cancelled and really done before CF_ETIMEDOUT. */
START_TEST(test_wait_for_timeout_waits_for_cancellation)
{
    cf_loop *loop = new_loop();
    wait_for_ctx c = {.timeout = 0.01};
    c.inner = spawn(loop, stubborn, NULL);
    cf_future *t = spawn(loop, waiter_task, &c);
    ck_assert_int_eq(run(loop, t, NULL), 0);
    ck_assert_int_eq(c.rc, CF_ETIMEDOUT);
    ck_assert(c.inner_done_at_return);
    ck_assert(cf_future_cancelled(c.inner));
    cf_future_unref(c.inner);
    cf_future_unref(t);
    /* In time. */
    wait_for_ctx ok = {.timeout = 10};
    ok.inner = spawn(loop, sleep_then_return, (void *)2);
    t = spawn(loop, waiter_task, &ok);
    ck_assert_int_eq(run(loop, t, NULL), 0);
    ck_assert_int_eq(ok.rc, 0);
    ck_assert_ptr_eq(ok.value, (void *)2);
    cf_future_unref(ok.inner);
    cf_future_unref(t);
    cf_loop_free(loop);
}
END_TEST

/* ---- many tasks ---- */

/* TSan models every coroutine as a fiber, counted against its limit of 8128 threads. */
#ifdef CF_TEST_TSAN
enum { SLEEPERS = 4000 };
#else
enum { SLEEPERS = 10000 };
#endif
enum { ROUNDS = 3, MAX_DELAY_MS = 40 };

typedef struct sleeper {
    double earliest[ROUNDS]; /* the loop clock before the sleep, plus the delay */
    double woke[ROUNDS];
    int delay_ms[ROUNDS];
    int sleep_seq[ROUNDS]; /* order in which the tasks went to sleep */
} sleeper;

typedef struct wake_log {
    int *order[ROUNDS];
    int n[ROUNDS];
    int slept[ROUNDS];
    sleeper *s;
} wake_log;

static wake_log wlog;

static int sleeper_task(void *arg, void **result)
{
    (void)result;
    int id = (int)(intptr_t)arg;
    sleeper *s = &wlog.s[id];
    for (int r = 0; r < ROUNDS; r++) {
        double d = s->delay_ms[r] / 1000.0;
        s->sleep_seq[r] = wlog.slept[r]++;
        s->earliest[r] = cf_loop_time(NULL) + d;
        ck_assert_int_eq(cf_sleep(d), 0);
        s->woke[r] = cf_loop_time(NULL);
        wlog.order[r][wlog.n[r]++] = id;
    }
    return 0;
}

/* Deadline order without comparing clock readings: if A went to sleep before B with a delay no
 * longer than B's, A's deadline is not later than B's, so A must wake first. Walking the wake
 * order, no task may follow one that slept after it with an equal or longer delay. */
static void check_round(int r)
{
    int max_seq[MAX_DELAY_MS + 2];
    for (int d = 0; d <= MAX_DELAY_MS + 1; d++)
        max_seq[d] = -1;
    for (int k = 0; k < SLEEPERS; k++) {
        sleeper *s = &wlog.s[wlog.order[r][k]];
        ck_assert(s->woke[r] >= s->earliest[r]); /* never early */
        for (int d = s->delay_ms[r]; d <= MAX_DELAY_MS; d++)
            ck_assert_msg(max_seq[d] < s->sleep_seq[r], "round %d: woke out of deadline order", r);
        if (s->sleep_seq[r] > max_seq[s->delay_ms[r]])
            max_seq[s->delay_ms[r]] = s->sleep_seq[r];
    }
}

/* 10,000 tasks interleaving sleeps of random lengths wake in deadline order, never early. */
START_TEST(test_many_sleepers_wake_in_deadline_order)
{
    cf_loop *loop = new_loop();
    srand(12345);
    wlog.s = calloc(SLEEPERS, sizeof(sleeper));
    for (int r = 0; r < ROUNDS; r++) {
        wlog.order[r] = calloc(SLEEPERS, sizeof(int));
        wlog.n[r] = wlog.slept[r] = 0;
    }
    for (int i = 0; i < SLEEPERS; i++)
        for (int r = 0; r < ROUNDS; r++)
            wlog.s[i].delay_ms[r] =
                1 + rand() % MAX_DELAY_MS; /* sleep(0) is a yield, not a timer */
    cf_future **ts = calloc(SLEEPERS, sizeof(*ts));
    for (intptr_t i = 0; i < SLEEPERS; i++)
        ts[i] = spawn(loop, sleeper_task, (void *)i);
    cf_future *all;
    ck_assert_int_eq(cf_loop_gather(&all, loop, ts, SLEEPERS), 0);
    ck_assert_int_eq(run(loop, all, NULL), 0);
    for (int r = 0; r < ROUNDS; r++) {
        ck_assert_int_eq(wlog.n[r], SLEEPERS);
        check_round(r);
    }
    for (int i = 0; i < SLEEPERS; i++)
        cf_future_unref(ts[i]);
    cf_future_unref(all);
    free(ts);
    for (int r = 0; r < ROUNDS; r++)
        free(wlog.order[r]);
    free(wlog.s);
    cf_loop_free(loop);
}
END_TEST

/* Equal delays: tasks wake in the order they went to sleep. */
enum { EQUAL_SLEEPERS = 1000 };

typedef struct equal_log {
    int started, woken;
    int order[EQUAL_SLEEPERS];
} equal_log;

static int equal_sleeper(void *arg, void **result)
{
    (void)result;
    equal_log *log = arg;
    int id = log->started++;
    ck_assert_int_eq(cf_sleep(0.005), 0);
    log->order[log->woken++] = id;
    return 0;
}

START_TEST(test_equal_sleeps_fifo)
{
    cf_loop *loop = new_loop();
    equal_log *log = calloc(1, sizeof(*log));
    cf_future *ts[EQUAL_SLEEPERS];
    for (int i = 0; i < EQUAL_SLEEPERS; i++)
        ts[i] = spawn(loop, equal_sleeper, log);
    cf_future *all;
    ck_assert_int_eq(cf_loop_gather(&all, loop, ts, EQUAL_SLEEPERS), 0);
    ck_assert_int_eq(run(loop, all, NULL), 0);
    ck_assert_int_eq(log->woken, EQUAL_SLEEPERS);
    for (int i = 0; i < EQUAL_SLEEPERS; i++) {
        ck_assert_int_eq(log->order[i], i);
        cf_future_unref(ts[i]);
    }
    cf_future_unref(all);
    free(log);
    cf_loop_free(loop);
}
END_TEST

/* ---- close ---- */

typedef struct closing_ctx {
    int await_rc, sleep_rc, later_rc;
    bool finished;
} closing_ctx;

static int await_forever(void *arg, void **result)
{
    (void)result;
    closing_ctx *c = arg;
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, cf_loop_current()), 0);
    char *owned = malloc(64); /* freed on the way out: close unwinds the task */
    c->await_rc = cf_await(NULL, f);
    c->later_rc = cf_await(NULL, f); /* no suspension once the loop closes */
    free(owned);
    cf_future_unref(f);
    c->finished = true;
    return c->await_rc;
}

static int sleep_forever(void *arg, void **result)
{
    (void)result;
    closing_ctx *c = arg;
    c->sleep_rc = cf_sleep(3600);
    c->finished = true;
    return c->sleep_rc;
}

static int await_executor_forever(void *arg, void **result)
{
    (void)result;
    cf_test_gate *g = arg;
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, cf_loop_current(), NULL, cf_test_gate_task, g), 0);
    int rc = cf_await(NULL, f);
    cf_future_unref(f);
    return rc;
}

/* Close winds down every task: pending awaits and sleeps return CF_ECANCELLED, stacks are
 * unwound (nothing leaks), tasks end cancelled. */
START_TEST(test_close_with_live_tasks)
{
    cf_loop *loop = new_loop();
    closing_ctx a = {0}, b = {0};
    cf_test_gate g;
    cf_test_gate_init(&g);
    bool ran = false;
    cf_future *ta = spawn(loop, await_forever, &a);
    cf_future *tb = spawn(loop, sleep_forever, &b);
    cf_future *tc = spawn(loop, await_executor_forever, &g);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);  /* all three park */
    cf_future *td = spawn(loop, must_not_run, &ran); /* never started */
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(a.finished && b.finished);
    ck_assert_int_eq(a.await_rc, CF_ECANCELLED);
    ck_assert_int_eq(a.later_rc, CF_ECANCELLED);
    ck_assert_int_eq(b.sleep_rc, CF_ECANCELLED);
    ck_assert(!ran);
    ck_assert(cf_future_cancelled(ta));
    ck_assert(cf_future_cancelled(tb));
    ck_assert(cf_future_cancelled(tc));
    ck_assert(cf_future_cancelled(td));
    cf_test_event_set(&g.release);
    cf_future_unref(ta);
    cf_future_unref(tb);
    cf_future_unref(tc);
    cf_future_unref(td);
    ck_assert_int_eq(cf_loop_create_task(&ta, loop, must_not_run, &ran, NULL), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* ---- coroutines never migrate between threads ---- */

typedef struct other_thread {
    cf_loop *loop;
    cf_future *gate; /* owned by the test: nothing lives only on the dropped stack */
    bool resumed;
    int run_rc, dispatch_rc, close_rc;
} other_thread;

static int park_forever(void *arg, void **result)
{
    (void)result;
    other_thread *o = arg;
    cf_await(NULL, o->gate);
    o->resumed = true; /* must not run on another thread */
    return CF_ECANCELLED;
}

static void *run_elsewhere(void *arg)
{
    other_thread *o = arg;
    o->run_rc = cf_loop_run_forever(o->loop);
    o->dispatch_rc = cf_loop_dispatch(o->loop);
    return NULL;
}

static void *close_elsewhere(void *arg)
{
    other_thread *o = arg;
    o->close_rc = cf_loop_close(o->loop);
    return NULL;
}

/* While a task is suspended, the loop stays on the thread its coroutine runs on: another thread
 * may not run it; closing it from another thread drops the task without resuming it. */
START_TEST(test_loop_with_suspended_task_stays_on_its_thread)
{
    cf_loop *loop = new_loop();
    other_thread o = {.loop = loop};
    ck_assert_int_eq(cf_loop_create_future(&o.gate, loop), 0);
    cf_future *t = spawn(loop, park_forever, &o);
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0); /* the task starts and parks */
    pthread_t th;
    pthread_create(&th, NULL, run_elsewhere, &o);
    pthread_join(th, NULL);
    ck_assert_int_eq(o.run_rc, CF_EINVALSTATE);
    ck_assert_int_eq(o.dispatch_rc, CF_EINVALSTATE);
    pthread_create(&th, NULL, close_elsewhere, &o);
    pthread_join(th, NULL);
    ck_assert_int_eq(o.close_rc, 0);
    ck_assert(!o.resumed);
    ck_assert(cf_future_cancelled(t));
    ck_assert(cf_future_cancel(o.gate));
    cf_future_unref(o.gate);
    cf_future_unref(t);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

/* ---- stacks ---- */

/* Records where its stack is: the address of its frame. */
static int record_stack(void *arg, void **result)
{
    (void)arg;
    *result = __builtin_frame_address(0);
    return 0;
}

static int record_stack_then_yield(void *arg, void **result)
{
    (void)arg;
    *result = __builtin_frame_address(0);
    return cf_sleep(0);
}

/* A task takes its stack when it starts, not when it is created: tasks that each run to their
 * end without suspending take turns on one stack, however many were created at once. */
START_TEST(test_short_tasks_reuse_one_stack)
{
    enum { N = 200 };
    cf_loop *loop = new_loop();
    cf_future *ts[N];
    for (int i = 0; i < N; i++)
        ts[i] = spawn(loop, record_stack, NULL);
    cf_future *all;
    ck_assert_int_eq(cf_loop_gather(&all, loop, ts, N), 0);
    ck_assert_int_eq(run(loop, all, NULL), 0);
    void *first = NULL;
    ck_assert_int_eq(cf_future_result(&first, ts[0], 0), 0);
    for (int i = 1; i < N; i++) {
        void *v = NULL;
        ck_assert_int_eq(cf_future_result(&v, ts[i], 0), 0);
        ck_assert_ptr_eq(v, first);
    }
    cf_future_unref(all);
    for (int i = 0; i < N; i++)
        cf_future_unref(ts[i]);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

/* Tasks that suspend keep their own stacks meanwhile: no two share one. */
START_TEST(test_suspended_tasks_have_their_own_stacks)
{
    enum { N = 100 };
    cf_loop *loop = new_loop();
    cf_future *ts[N];
    for (int i = 0; i < N; i++)
        ts[i] = spawn(loop, record_stack_then_yield, NULL);
    cf_future *all;
    ck_assert_int_eq(cf_loop_gather(&all, loop, ts, N), 0);
    ck_assert_int_eq(run(loop, all, NULL), 0);
    uintptr_t at[N];
    for (int i = 0; i < N; i++) {
        void *v = NULL;
        ck_assert_int_eq(cf_future_result(&v, ts[i], 0), 0);
        at[i] = (uintptr_t)v;
        for (int j = 0; j < i; j++)
            ck_assert_uint_ne(at[j], at[i]);
    }
    cf_future_unref(all);
    for (int i = 0; i < N; i++)
        cf_future_unref(ts[i]);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

/* The stack size is checked when the task is created, although the stack comes later. */
START_TEST(test_stack_size_checked_at_create)
{
    cf_loop *loop = new_loop();
    cf_future *t = NULL;
    cf_loop_task_options big = {.stack_size = (size_t)2 << 30};
    ck_assert_int_eq(cf_loop_create_task(&t, loop, record_stack, NULL, &big), CF_EINVAL);
    ck_assert_ptr_null(t);
    cf_loop_task_options odd = {.stack_size = 100000};
    ck_assert_int_eq(cf_loop_create_task(&t, loop, record_stack, NULL, &odd), 0);
    void *v = NULL;
    ck_assert_int_eq(run(loop, t, &v), 0);
    ck_assert_ptr_nonnull(v);
    cf_future_unref(t);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_task");
    TCase *tc = cf_test_tcase("basics");
    tcase_add_test(tc, test_task_result_and_current);
    tcase_add_test(tc, test_current_task_and_bad_awaits);
    tcase_add_test(tc, test_sleep_zero_interleaves);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("await");
    tcase_add_test(tc, test_await_loop_future);
    tcase_add_test(tc, test_await_done_future_does_not_suspend);
    tcase_add_test(tc, test_await_thread_pool_futures);
    tcase_add_test(tc, test_await_process_pool_futures);
    tcase_add_test(tc, test_await_failed_future);
    tcase_add_test(tc, test_task_fail_context_per_task);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("cancel");
    tcase_add_test(tc, test_cancel_task_awaiting_running_work);
    tcase_add_test(tc, test_cancel_sleeping_task_that_ignores_it);
    tcase_add_test(tc, test_cancel_before_start);
    tcase_add_test(tc, test_cancel_pending_at_return);
    tcase_add_test(tc, test_cancel_propagates_to_awaited_future);
    tcase_add_test(tc, test_cancel_from_other_thread);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("combinators");
    tcase_add_test(tc, test_gather_in_order);
    tcase_add_test(tc, test_gather_first_failure_others_continue);
    tcase_add_test(tc, test_wait_for_timeout_waits_for_cancellation);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("many");
    tcase_add_test(tc, test_many_sleepers_wake_in_deadline_order);
    tcase_add_test(tc, test_equal_sleeps_fifo);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("close");
    tcase_add_test(tc, test_close_with_live_tasks);
    tcase_add_test(tc, test_loop_with_suspended_task_stays_on_its_thread);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("stacks");
    tcase_add_test(tc, test_short_tasks_reuse_one_stack);
    tcase_add_test(tc, test_suspended_tasks_have_their_own_stacks);
    tcase_add_test(tc, test_stack_size_checked_at_create);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
