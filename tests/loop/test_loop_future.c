/* Loop futures and the executor bridge: done-callbacks always scheduled on the loop thread,
 * wrap_future / run_in_executor, cancellation in both directions, bytes results, close with
 * work in flight; and the callback-style combinators (sleep, gather, wait_for). */
#include <math.h>
#include <string.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static cf_executor *new_pool(unsigned workers)
{
    cf_executor *ex;
    cf_thread_pool_options o = {.max_workers = workers};
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    return ex;
}

/* What a done-callback saw. */
typedef struct seen {
    int calls;
    pthread_t thread;
    bool inside_set_result; /* ran while set_result was still on the stack */
    bool cancelled;
    int rc;
    void *value;
} seen;

static bool in_set_result;

static void record_cb(cf_future *f, void *data)
{
    seen *s = data;
    s->calls++;
    s->thread = pthread_self();
    s->inside_set_result = in_set_result;
    s->cancelled = cf_future_cancelled(f);
    s->rc = cf_future_result(&s->value, f, 0);
}

/* Runs the loop until `f` is done; its outcome code. */
static int drive(cf_loop *loop, cf_future *f)
{
    return cf_loop_run_until_complete(NULL, loop, f);
}

/* Runs one more iteration (lets callbacks scheduled by a completion run). */
static void spin_once(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

/* ---- loop futures ---- */

START_TEST(test_create_future_arguments)
{
    cf_loop *loop = new_loop();
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_loop_create_future(NULL, loop), CF_EINVAL);
    ck_assert_int_eq(cf_loop_create_future(&f, NULL), CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    ck_assert(!cf_future_done(f));
    void *v;
    ck_assert_int_eq(cf_future_result(&v, f, 0), CF_ETIMEDOUT);
    cf_future_unref(f);
    cf_loop_close(loop);
    ck_assert_int_eq(cf_loop_create_future(&f, loop), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

/* The callback never runs inside set_result: it is scheduled with call_soon. */
START_TEST(test_callback_scheduled_not_inline)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    in_set_result = true;
    ck_assert_int_eq(cf_future_set_result(f, (void *)"v", NULL), 0);
    in_set_result = false;
    ck_assert_int_eq(s.calls, 0);
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(!s.inside_set_result);
    ck_assert_str_eq(s.value, "v");
    /* Added to a done future: still scheduled, not called now. */
    seen s2 = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s2), 0);
    ck_assert_int_eq(s2.calls, 0);
    spin_once(loop);
    ck_assert_int_eq(s2.calls, 1);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

typedef struct remote_set {
    cf_future *f;
    pthread_t thread;
} remote_set;

static void *set_from_thread(void *arg)
{
    remote_set *r = arg;
    ck_assert_int_eq(cf_future_set_result(r->f, (void *)"remote", NULL), 0);
    return NULL;
}

/* Completed by another thread: callbacks still run on the loop thread. */
START_TEST(test_completed_from_other_thread)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    remote_set r = {.f = f};
    pthread_create(&r.thread, NULL, set_from_thread, &r);
    pthread_join(r.thread, NULL);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_int_eq(drive(loop, f), 0);
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(pthread_equal(s.thread, pthread_self()));
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_loop_future_cancel)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    ck_assert(cf_future_cancel(f));
    ck_assert(cf_future_cancelled(f));
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), CF_EINVALSTATE);
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.cancelled);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

/* ---- executor bridge ---- */

static int return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int fail_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_task_fail(-42, "failed on purpose");
}

START_TEST(test_run_in_executor_result_on_loop_thread)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(2);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, ex, return_arg, (void *)"x"), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    void *v;
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), 0);
    ck_assert_str_eq(v, "x");
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(pthread_equal(s.thread, pthread_self()));
    cf_future_unref(f);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_run_in_default_executor)
{
    cf_loop *loop = new_loop();
    cf_future *fs[8];
    for (intptr_t i = 0; i < 8; i++)
        ck_assert_int_eq(cf_loop_run_in_executor(&fs[i], loop, NULL, return_arg, (void *)i), 0);
    for (intptr_t i = 0; i < 8; i++) {
        void *v;
        ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, fs[i]), 0);
        ck_assert_ptr_eq(v, (void *)i);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(cf_loop_run_in_executor(NULL, loop, NULL, return_arg, NULL), CF_EINVAL);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, NULL, NULL, NULL), CF_EINVAL);
    cf_loop_close(loop);
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, NULL, return_arg, NULL), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_run_in_executor_failure)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, ex, fail_task, NULL), 0);
    ck_assert_int_eq(drive(loop, f), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
    ck_assert_int_eq(code, -42);
    ck_assert_str_eq(msg, "failed on purpose");
    cf_future_unref(f);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

static int bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    char *out = malloc(len + 7);
    memcpy(out, "echo: ", 6);
    memcpy(out + 6, arg, len);
    *result = out;
    *result_len = len + 6;
    return 0;
}

START_TEST(test_bytes_result_readable_from_loop_future)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor_bytes(&f, loop, ex, bytes_task, "abc", 3), 0);
    ck_assert_int_eq(drive(loop, f), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_uint_eq(len, 9);
    ck_assert(memcmp(data, "echo: abc", 9) == 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_run_in_executor_bytes(&f, loop, ex, bytes_task, NULL, 3), CF_EINVAL);
    ck_assert_ptr_null(f);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

/* The same through a process pool: the bytes cross the process boundary and the loop future
 * reads them. */
START_TEST(test_process_pool_bytes_on_loop_future)
{
    cf_loop *loop = new_loop();
    cf_executor *ex;
    cf_process_pool_options o = {.max_workers = 1};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor_bytes(&f, loop, ex, bytes_task, "xyz", 3), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    ck_assert_int_eq(drive(loop, f), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_uint_eq(len, 9);
    ck_assert(memcmp(data, "echo: xyz", 9) == 0);
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(pthread_equal(s.thread, pthread_self()));
    /* Pointer tasks cannot cross processes. */
    cf_future *g;
    ck_assert_int_eq(cf_loop_run_in_executor(&g, loop, ex, return_arg, NULL), CF_ENOTSUP);
    cf_future_unref(f);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

/* asyncio: wrap_future of a finished future gives a pending future completed next iteration. */
START_TEST(test_wrap_done_future_completes_later)
{
    cf_loop *loop = new_loop();
    cf_future *src, *w;
    ck_assert_int_eq(cf_future_new(&src), 0);
    ck_assert_int_eq(cf_future_set_result(src, (void *)"done", NULL), 0);
    ck_assert_int_eq(cf_loop_wrap_future(&w, loop, src), 0);
    ck_assert(!cf_future_done(w));
    spin_once(loop);
    ck_assert(cf_future_done(w));
    void *v;
    ck_assert_int_eq(cf_future_result(&v, w, 0), 0);
    ck_assert_str_eq(v, "done");
    /* A loop future of the same loop is returned as is. */
    cf_future *same;
    ck_assert_int_eq(cf_loop_wrap_future(&same, loop, w), 0);
    ck_assert_ptr_eq(same, w);
    cf_future_unref(same);
    cf_future_unref(w);
    cf_future_unref(src);
    cf_loop_free(loop);
}
END_TEST

/* Cancel the loop future while the executor future is still queued: the work never runs. */
START_TEST(test_cancel_loop_side_pending)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_test_gate busy, never;
    cf_test_gate_init(&busy);
    cf_test_gate_init(&never);
    cf_future *blocker, *src, *w;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &busy), 0);
    ck_assert(cf_test_latch_wait(&busy.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_submit(&src, ex, cf_test_gate_task, &never), 0);
    ck_assert_int_eq(cf_loop_wrap_future(&w, loop, src), 0);
    ck_assert(cf_future_cancel(w));
    ck_assert(cf_future_cancelled(w));
    ck_assert(cf_future_cancelled(src)); /* it had not started */
    cf_test_event_set(&busy.release);
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    spin_once(loop);
    ck_assert(cf_future_cancelled(w));
    cf_executor_shutdown(ex, true, false);
    ck_assert_uint_eq(cf_test_latch_count(&never.started), 0);
    cf_future_unref(blocker);
    cf_future_unref(src);
    cf_future_unref(w);
    cf_loop_free(loop);
    cf_executor_free(ex);
    cf_test_gate_destroy(&busy);
    cf_test_gate_destroy(&never);
}
END_TEST

/* Cancel the loop future while the work runs: the loop future is cancelled at once, the work
 * finishes, and its late outcome is dropped without a "set twice" error. */
START_TEST(test_cancel_loop_side_running)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *w;
    ck_assert_int_eq(cf_loop_run_in_executor(&w, loop, ex, cf_test_gate_task, &g), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(w, record_cb, &s), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert(cf_future_cancel(w));
    ck_assert(cf_future_cancelled(w));
    cf_test_event_set(&g.release);
    cf_executor_shutdown(ex, true, false); /* the work has finished */
    spin_once(loop);
    spin_once(loop);
    ck_assert(cf_future_cancelled(w));
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.cancelled);
    cf_future_unref(w);
    cf_loop_free(loop);
    cf_executor_free(ex);
    cf_test_gate_destroy(&g);
}
END_TEST

/* Cancel the executor future: the loop future ends cancelled, on the loop thread. */
START_TEST(test_cancel_executor_side)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_test_gate busy;
    cf_test_gate_init(&busy);
    cf_future *blocker, *src, *w;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &busy), 0);
    ck_assert(cf_test_latch_wait(&busy.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_submit(&src, ex, return_arg, NULL), 0);
    ck_assert_int_eq(cf_loop_wrap_future(&w, loop, src), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(w, record_cb, &s), 0);
    ck_assert(cf_future_cancel(src));
    ck_assert(!cf_future_done(w)); /* applied on the loop thread */
    ck_assert_int_eq(drive(loop, w), CF_ECANCELLED);
    spin_once(loop);
    ck_assert_int_eq(s.calls, 1);
    ck_assert(s.cancelled);
    ck_assert(pthread_equal(s.thread, pthread_self()));
    cf_test_event_set(&busy.release);
    cf_future_unref(blocker);
    cf_future_unref(src);
    cf_future_unref(w);
    cf_loop_free(loop);
    cf_executor_free(ex);
    cf_test_gate_destroy(&busy);
}
END_TEST

/* Close with executor work in flight: nothing is called after close, nothing leaks. */
START_TEST(test_close_with_inflight_executor_future)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *w, *w2;
    ck_assert_int_eq(cf_loop_run_in_executor(&w, loop, ex, cf_test_gate_task, &g), 0);
    ck_assert_int_eq(cf_loop_run_in_executor(&w2, loop, NULL, return_arg, NULL), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(w, record_cb, &s), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_close(loop), 0);
    cf_test_event_set(&g.release);
    cf_executor_shutdown(ex, true, false);
    ck_assert_int_eq(s.calls, 0);
    /* The completion was dropped: the closed loop cancels the future it cannot finish. */
    ck_assert(cf_future_cancelled(w));
    cf_future_unref(w);
    cf_future_unref(w2);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(s.calls, 0);
    cf_executor_free(ex);
    cf_test_gate_destroy(&g);
}
END_TEST

/* Close with callbacks pending: they are dropped, and their futures released. */
START_TEST(test_close_with_pending_callbacks)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    seen s = {0};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &s), 0);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    cf_future_unref(f); /* the scheduled callback holds the future */
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(s.calls, 0);
}
END_TEST

/* ---- combinators, callback style ---- */

START_TEST(test_sleep_future)
{
    cf_loop *loop = new_loop();
    cf_future *f;
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_loop_sleep(&f, loop, 0.03, (void *)"slept"), 0);
    ck_assert(!cf_future_done(f));
    void *v;
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), 0);
    ck_assert_str_eq(v, "slept");
    ck_assert(cf_test_monotonic() - t0 >= 0.029);
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_sleep(&f, loop, NAN, NULL), CF_EINVAL);
    /* Cancelled: its timer goes too. */
    ck_assert_int_eq(cf_loop_sleep(&f, loop, 3600, NULL), 0);
    ck_assert(cf_future_cancel(f));
    ck_assert_int_eq(drive(loop, f), CF_ECANCELLED);
    cf_future_unref(f);
    /* Released while pending: the timer keeps it alive, close frees it. */
    ck_assert_int_eq(cf_loop_sleep(&f, loop, 3600, NULL), 0);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

static void set_result_cb(cf_loop *loop, void *data)
{
    (void)loop;
    cf_future_set_result(data, data, NULL);
}

static void fail_cb(cf_loop *loop, void *data)
{
    (void)loop;
    cf_future_set_exception(data, -5, "child failed");
}

START_TEST(test_gather_order)
{
    cf_loop *loop = new_loop();
    cf_future *fs[4], *g;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(cf_loop_create_future(&fs[i], loop), 0);
    /* Complete in reverse order, at increasing times. */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.001 * (4 - i), set_result_cb, fs[i]), 0);
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 4), 0);
    void **values;
    ck_assert_int_eq(cf_loop_run_until_complete((void **)&values, loop, g), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_eq(values[i], fs[i]);
    cf_future_unref(g);
    /* The same future twice is fine. */
    cf_future *dup[2] = {fs[0], fs[0]};
    ck_assert_int_eq(cf_loop_gather(&g, loop, dup, 2), 0);
    ck_assert_int_eq(cf_loop_run_until_complete((void **)&values, loop, g), 0);
    ck_assert_ptr_eq(values[1], fs[0]);
    cf_future_unref(g);
    /* Empty. */
    ck_assert_int_eq(cf_loop_gather(&g, loop, NULL, 0), 0);
    ck_assert_int_eq(drive(loop, g), 0);
    cf_future_unref(g);
    cf_future *bad[1] = {NULL};
    ck_assert_int_eq(cf_loop_gather(&g, loop, bad, 1), CF_EINVAL);
    for (int i = 0; i < 4; i++)
        cf_future_unref(fs[i]);
    cf_loop_free(loop);
}
END_TEST

/* The first failure ends the gather; the other children keep running. */
START_TEST(test_gather_first_failure)
{
    cf_loop *loop = new_loop();
    cf_future *fs[3], *g;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(cf_loop_create_future(&fs[i], loop), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, fail_cb, fs[1]), 0);
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 3), 0);
    ck_assert_int_eq(drive(loop, g), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, g, 0), 0);
    ck_assert_int_eq(code, -5);
    ck_assert_str_eq(msg, "child failed");
    ck_assert(!cf_future_done(fs[0]));
    ck_assert(!cf_future_done(fs[2]));
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    spin_once(loop);
    /* A cancelled child fails the gather with CF_ECANCELLED (it is not itself cancelled). */
    cf_future_unref(g);
    cf_future_unref(fs[1]);
    ck_assert_int_eq(cf_loop_create_future(&fs[1], loop), 0);
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 3), 0);
    ck_assert(cf_future_cancel(fs[2]));
    ck_assert_int_eq(drive(loop, g), CF_ETASK);
    ck_assert(!cf_future_cancelled(g));
    ck_assert_int_eq(cf_future_exception(&code, NULL, g, 0), 0);
    ck_assert_int_eq(code, CF_ECANCELLED);
    cf_future_unref(g);
    ck_assert_int_eq(cf_future_set_result(fs[1], NULL, NULL), 0); /* creators finish futures */
    for (int i = 0; i < 3; i++)
        cf_future_unref(fs[i]);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_gather_cancel_and_executor_children)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(2);
    cf_future *fs[2], *g;
    ck_assert_int_eq(cf_loop_create_future(&fs[0], loop), 0);
    ck_assert_int_eq(cf_executor_submit(&fs[1], ex, return_arg, (void *)"exec"), 0);
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 2), 0);
    ck_assert(cf_future_cancel(g));
    ck_assert(cf_future_cancelled(fs[0]));
    ck_assert_int_eq(drive(loop, g), CF_ECANCELLED);
    ck_assert(cf_future_cancelled(g));
    cf_future_unref(g);
    /* With an executor child that succeeds (the cancel above reached the first one). */
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    ck_assert_int_eq(cf_loop_create_future(&fs[0], loop), 0);
    ck_assert_int_eq(cf_executor_submit(&fs[1], ex, return_arg, (void *)"exec"), 0);
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 2), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, set_result_cb, fs[0]), 0);
    void **values;
    ck_assert_int_eq(cf_loop_run_until_complete((void **)&values, loop, g), 0);
    ck_assert_ptr_eq(values[0], fs[0]);
    ck_assert_str_eq(values[1], "exec");
    cf_future_unref(g);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    cf_loop_free(loop);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_wait_for_result_and_timeout)
{
    cf_loop *loop = new_loop();
    cf_future *inner, *w;
    void *v;
    /* In time. */
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.001, set_result_cb, inner), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, 10), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, w), 0);
    ck_assert_ptr_eq(v, inner);
    cf_future_unref(w);
    cf_future_unref(inner);
    /* Too late: the inner future is cancelled, then the wait fails with CF_ETIMEDOUT. */
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, 0.01), 0);
    ck_assert_int_eq(drive(loop, w), CF_ETASK);
    int code;
    ck_assert_int_eq(cf_future_exception(&code, NULL, w, 0), 0);
    ck_assert_int_eq(code, CF_ETIMEDOUT);
    ck_assert(cf_future_cancelled(inner));
    cf_future_unref(w);
    cf_future_unref(inner);
    /* Timeout 0 on a done future returns its outcome; on a pending one times out at once. */
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_future_set_result(inner, (void *)"ready", NULL), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, 0), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, w), 0);
    ck_assert_str_eq(v, "ready");
    cf_future_unref(w);
    cf_future_unref(inner);
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, 0), 0);
    ck_assert_int_eq(drive(loop, w), CF_ETASK);
    ck_assert(cf_future_cancelled(inner));
    cf_future_unref(w);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, NAN), CF_EINVAL);
    cf_future_unref(inner);
    cf_loop_free(loop);
}
END_TEST

/* Cancelling the wait cancels the inner future; the wait ends cancelled. */
START_TEST(test_wait_for_cancelled)
{
    cf_loop *loop = new_loop();
    cf_future *inner, *w;
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, CF_FOREVER), 0);
    ck_assert(cf_future_cancel(w));
    ck_assert(cf_future_cancelled(inner));
    ck_assert_int_eq(drive(loop, w), CF_ECANCELLED);
    cf_future_unref(w);
    cf_future_unref(inner);
    /* Pending at close: the dropped timer cancels nothing by itself (the inner future may
     * still finish); cancelling the inner future after close releases the wait. */
    ck_assert_int_eq(cf_loop_create_future(&inner, loop), 0);
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, inner, 3600), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(!cf_future_done(w));
    ck_assert(cf_future_cancel(inner));
    ck_assert(cf_future_cancelled(w));
    cf_future_unref(w);
    cf_future_unref(inner);
    cf_loop_free(loop);
}
END_TEST

/* wait_for on an executor future that runs too long: the loop side is cancelled at once; the
 * work goes on. */
START_TEST(test_wait_for_executor_timeout)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = new_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *src, *w;
    ck_assert_int_eq(cf_executor_submit(&src, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_wait_for(&w, loop, src, 0.01), 0);
    ck_assert_int_eq(drive(loop, w), CF_ETASK);
    int code;
    ck_assert_int_eq(cf_future_exception(&code, NULL, w, 0), 0);
    ck_assert_int_eq(code, CF_ETIMEDOUT);
    ck_assert(cf_future_running(src));
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, src, CF_TEST_LONG), 0);
    cf_future_unref(w);
    cf_future_unref(src);
    cf_loop_free(loop);
    cf_executor_free(ex);
    cf_test_gate_destroy(&g);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_future");
    TCase *tc = cf_test_tcase("loop futures");
    tcase_add_test(tc, test_create_future_arguments);
    tcase_add_test(tc, test_callback_scheduled_not_inline);
    tcase_add_test(tc, test_completed_from_other_thread);
    tcase_add_test(tc, test_loop_future_cancel);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("executor bridge");
    tcase_add_test(tc, test_run_in_executor_result_on_loop_thread);
    tcase_add_test(tc, test_run_in_default_executor);
    tcase_add_test(tc, test_run_in_executor_failure);
    tcase_add_test(tc, test_bytes_result_readable_from_loop_future);
    tcase_add_test(tc, test_process_pool_bytes_on_loop_future);
    tcase_add_test(tc, test_wrap_done_future_completes_later);
    tcase_add_test(tc, test_cancel_loop_side_pending);
    tcase_add_test(tc, test_cancel_loop_side_running);
    tcase_add_test(tc, test_cancel_executor_side);
    tcase_add_test(tc, test_close_with_inflight_executor_future);
    tcase_add_test(tc, test_close_with_pending_callbacks);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("combinators");
    tcase_add_test(tc, test_sleep_future);
    tcase_add_test(tc, test_gather_order);
    tcase_add_test(tc, test_gather_first_failure);
    tcase_add_test(tc, test_gather_cancel_and_executor_children);
    tcase_add_test(tc, test_wait_for_result_and_timeout);
    tcase_add_test(tc, test_wait_for_cancelled);
    tcase_add_test(tc, test_wait_for_executor_timeout);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
