/* The loop across threads and executors: cf_loop_run_coroutine_threadsafe (a task started from
 * another thread, its cf_future, cancellation both ways, close), cf_loop_set_default_executor and
 * cf_loop_shutdown_default_executor (the loop keeps running while the executor drains; timeout;
 * close meanwhile), and cf_loop_run_once for embedding. Threads meet on latches and events,
 * never on sleeps. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static void count_cb(cf_loop *loop, void *data)
{
    (void)loop;
    (*(int *)data)++;
}

/* ---- run_once ---- */

static void schedule_again_cb(cf_loop *loop, void *data)
{
    (*(int *)data)++;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, count_cb, data), 0);
}

static void nested_run_once_cb(cf_loop *loop, void *data)
{
    *(int *)data = cf_loop_run_once(loop, 0);
}

START_TEST(test_run_once)
{
    cf_loop *loop = new_loop();
    int n = 0;
    ck_assert_int_eq(cf_loop_run_once(NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_run_once(loop, NAN), CF_EINVAL);
    /* Runs what is ready; what that schedules waits for the next call. */
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, schedule_again_cb, &n), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(n, 2);
    /* Nothing due: a bounded wait returns with nothing run. */
    ck_assert_int_eq(cf_loop_run_once(loop, 0.001), 0);
    ck_assert_int_eq(n, 2);
    /* A timer: an unbounded wait lasts until it is due, then runs it. */
    ck_assert_int_eq(cf_loop_call_later(NULL, loop, 0.002, count_cb, &n), 0);
    while (n == 2)
        ck_assert_int_eq(cf_loop_run_once(loop, -1), 0);
    ck_assert_int_eq(n, 3);
    /* Not re-entrant. */
    int nested = 1;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, nested_run_once_cb, &nested), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(nested, CF_EINVALSTATE);
    ck_assert(!cf_loop_is_running(loop));
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

static void *post_from_thread(void *arg)
{
    void **args = arg;
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(args[0], count_cb, args[1]), 0);
    return NULL;
}

/* A post from another thread ends an unbounded wait (whether run_once sleeps already or not). An
 * embedded loop refuses run_once. */
START_TEST(test_run_once_woken_and_embedded)
{
    cf_loop *loop = new_loop();
    int n = 0;
    void *args[2] = {loop, &n};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, post_from_thread, args), 0);
    while (n == 0)
        ck_assert_int_eq(cf_loop_run_once(loop, -1), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(n, 1);
    ck_assert_int_ge(cf_loop_fd(loop), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), CF_EINVALSTATE);
    cf_loop_free(loop);
}
END_TEST

/* ---- default executor ---- */

/* Task: the name of the thread it runs on (a pool names its threads). */
static int thread_name_task(void *arg, void **result)
{
    (void)arg;
    char *name = calloc(1, 32);
    pthread_getname_np(pthread_self(), name, 32);
    cf_task_set_result_dtor(free);
    *result = name;
    return 0;
}

/* Runs thread_name_task on the default executor; true if its thread's name starts with
 * `prefix`. */
static bool default_runs_on(cf_loop *loop, const char *prefix)
{
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, NULL, thread_name_task, NULL), 0);
    void *name;
    ck_assert_int_eq(cf_loop_run_until_complete(&name, loop, f), 0);
    bool on = strncmp(name, prefix, strlen(prefix)) == 0;
    cf_future_unref(f);
    return on;
}

START_TEST(test_set_default_executor)
{
    cf_loop *loop = new_loop();
    cf_thread_pool_options o = {.max_workers = 1, .thread_name_prefix = "mine"};
    cf_executor *mine;
    ck_assert_int_eq(cf_thread_pool_new(&mine, &o), 0);
    ck_assert(default_runs_on(loop, "cfloop")); /* the loop's own pool */
    ck_assert_int_eq(cf_loop_set_default_executor(NULL, mine), CF_EINVAL);
    ck_assert_int_eq(cf_loop_set_default_executor(loop, mine), 0);
    ck_assert(default_runs_on(loop, "mine"));
    ck_assert_int_eq(cf_loop_set_default_executor(loop, NULL), 0);
    ck_assert(default_runs_on(loop, "cfloop"));
    /* The loop never shuts a borrowed executor down. */
    ck_assert_int_eq(cf_loop_set_default_executor(loop, mine), 0);
    cf_loop_free(loop);
    cf_future *g;
    ck_assert_int_eq(cf_executor_submit(&g, mine, cf_test_square_task, (void *)2), 0);
    ck_assert_int_eq(cf_future_result(NULL, g, CF_TEST_LONG), 0);
    cf_future_unref(g);
    cf_executor_free(mine);
}
END_TEST

static void *set_from_thread(void *arg)
{
    return (void *)(intptr_t)cf_loop_set_default_executor(arg, NULL);
}

/* shutdown_default_executor waits on a helper thread: the loop keeps running callbacks while
 * the executor's work drains; afterwards the default executor refuses work until another one
 * is set. */
START_TEST(test_shutdown_default_executor)
{
    cf_loop *loop = new_loop();
    pthread_t th;
    void *rc;
    ck_assert_int_eq(pthread_create(&th, NULL, set_from_thread, loop), 0);
    pthread_join(th, &rc);
    ck_assert_int_eq((intptr_t)rc, CF_EPERM);
    cf_test_gate gate;
    cf_test_gate_init(&gate);
    cf_future *work, *done;
    ck_assert_int_eq(cf_loop_run_in_executor(&work, loop, NULL, cf_test_gate_task, &gate), 0);
    ck_assert(cf_test_latch_wait(&gate.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, loop, CF_FOREVER), 0);
    ck_assert(!cf_future_done(done));
    int ticks = 0;
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, count_cb, &ticks), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(ticks, 1); /* the loop is not blocked */
    ck_assert(!cf_future_done(done));
    cf_future *refused;
    ck_assert_int_eq(cf_loop_run_in_executor(&refused, loop, NULL, cf_test_square_task, NULL),
                     CF_ESHUTDOWN);
    cf_test_event_set(&gate.release);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, done), 0);
    ck_assert(cf_future_done(work)); /* shut down with wait: its work finished first */
    cf_future_unref(done);
    cf_future_unref(work);
    /* Another executor lifts the refusal. */
    cf_executor *mine = cf_test_pool(1);
    ck_assert_int_eq(cf_loop_set_default_executor(loop, mine), 0);
    ck_assert_int_eq(cf_loop_run_in_executor(&work, loop, NULL, cf_test_square_task, NULL), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, work), 0);
    cf_future_unref(work);
    cf_loop_free(loop);
    cf_executor_free(mine);
    cf_test_gate_destroy(&gate);
}
END_TEST

/* Nothing was ever started: done at once. Arguments. */
START_TEST(test_shutdown_default_executor_unused)
{
    cf_loop *loop = new_loop();
    cf_future *done;
    ck_assert_int_eq(cf_loop_shutdown_default_executor(NULL, loop, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, loop, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, NULL, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, loop, -1), 0);
    ck_assert(cf_future_done(done));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, done), 0);
    cf_future_unref(done);
    cf_future *refused;
    ck_assert_int_eq(cf_loop_run_in_executor(&refused, loop, NULL, cf_test_square_task, NULL),
                     CF_ESHUTDOWN);
    cf_loop_free(loop);
}
END_TEST

/* The timeout passes with work still running: the future fails with CF_ETIMEDOUT, the shutdown
 * goes on, and cf_loop_free waits for it. A second shutdown meanwhile works too. */
START_TEST(test_shutdown_default_executor_timeout)
{
    cf_loop *loop = new_loop();
    cf_test_gate gate;
    cf_test_gate_init(&gate);
    cf_future *work, *done, *again;
    ck_assert_int_eq(cf_loop_run_in_executor(&work, loop, NULL, cf_test_gate_task, &gate), 0);
    ck_assert(cf_test_latch_wait(&gate.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, loop, 0), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, done), CF_ETASK);
    int code;
    ck_assert_int_eq(cf_future_exception(&code, NULL, done, 0), 0);
    ck_assert_int_eq(code, CF_ETIMEDOUT);
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&again, loop, -1), 0);
    cf_test_event_set(&gate.release);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, again), 0);
    cf_future_unref(done);
    cf_future_unref(again);
    cf_future_unref(work);
    cf_loop_free(loop);
    cf_test_gate_destroy(&gate);
}
END_TEST

/* Closed while the helper waits: the future ends cancelled when the helper is done, and
 * cf_loop_free joins it. */
START_TEST(test_shutdown_default_executor_close)
{
    cf_loop *loop = new_loop();
    cf_test_gate gate;
    cf_test_gate_init(&gate);
    cf_future *work, *done;
    ck_assert_int_eq(cf_loop_run_in_executor(&work, loop, NULL, cf_test_gate_task, &gate), 0);
    ck_assert(cf_test_latch_wait(&gate.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_loop_shutdown_default_executor(&done, loop, -1), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    cf_test_event_set(&gate.release);
    ck_assert_int_eq(cf_future_result(NULL, done, CF_TEST_LONG), CF_ECANCELLED);
    cf_future_unref(done);
    cf_future_unref(work);
    cf_loop_free(loop);
    cf_test_gate_destroy(&gate);
}
END_TEST

/* ---- run_coroutine_threadsafe ---- */

START_TEST(test_threadsafe_arguments)
{
    cf_loop *loop = new_loop();
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(
        cf_loop_run_coroutine_threadsafe(NULL, loop, cf_test_identity_task, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, NULL, cf_test_identity_task, NULL, NULL),
                     CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, NULL, NULL, NULL), CF_EINVAL);
    cf_loop_task_options o = {0};
    o.reserved[0] = 1;
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, cf_test_identity_task, NULL, &o),
                     CF_EINVAL);
#ifdef CF_TEST_NO_COROUTINES
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, cf_test_identity_task, NULL, NULL),
                     CF_ENOTSUP);
#endif
    ck_assert_int_eq(cf_loop_close(loop), 0);
#ifndef CF_TEST_NO_COROUTINES
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, cf_test_identity_task, NULL, NULL),
                     CF_ECLOSED);
#endif
    cf_loop_free(loop);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES

typedef struct remote {
    cf_loop *loop;
    cf_loop_event *event; /* the task waits on it if set */
    cf_loop_event *go;    /* the task waits for it, set by the other thread once it watches */
    cf_test_latch started;
    cf_test_event task_ended;
    pthread_t task_thread;
    pthread_t callback_thread;
    int task_rc;
    int result_rc;
    void *value;
    bool fail;
    int code;
    const char *message;
} remote;

static int remote_task(void *arg, void **result)
{
    remote *r = arg;
    r->task_thread = pthread_self();
    cf_test_latch_add(&r->started);
    int rc = cf_sleep(0);
    if (rc == 0 && r->event)
        rc = cf_loop_event_wait(r->event);
    if (rc == 0 && r->go)
        rc = cf_loop_event_wait(r->go);
    r->task_rc = rc;
    cf_test_event_set(&r->task_ended);
    if (rc)
        return rc;
    *result = (void *)"from the loop";
    return r->fail ? cf_task_fail(-4242, "failed on purpose") : 0;
}

static void record_callback_thread(cf_future *f, void *data)
{
    (void)f;
    ((remote *)data)->callback_thread = pthread_self();
}

static void set_go(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_int_eq(cf_loop_event_set(data), 0);
}

static void *remote_thread(void *arg)
{
    remote *r = arg;
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, r->loop, remote_task, r, NULL), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, record_callback_thread, r), 0);
    /* Only now may the task end: its future's callback then runs on the loop thread. */
    ck_assert_int_eq(cf_loop_call_soon_threadsafe(r->loop, set_go, r->go), 0);
    if (r->event) {
        /* Cancel it while it waits: the future is cancelled at once, the task soon. */
        ck_assert(cf_test_latch_wait(&r->started, 1, CF_TEST_LONG));
        ck_assert(cf_future_cancel(f));
        ck_assert(cf_future_cancelled(f));
        ck_assert(cf_test_event_wait(&r->task_ended, CF_TEST_LONG));
    }
    r->result_rc = cf_future_result(&r->value, f, CF_TEST_LONG);
    if (r->result_rc == CF_ETASK)
        cf_future_exception(&r->code, &r->message, f, 0);
    if (r->message)
        r->message = strdup(r->message);
    cf_future_unref(f);
    cf_loop_stop(r->loop);
    return NULL;
}

static void run_remote(remote *r)
{
    r->loop = new_loop();
    cf_test_latch_init(&r->started);
    cf_test_event_init(&r->task_ended);
    r->task_rc = r->result_rc = 1;
    if (r->event == (cf_loop_event *)1)
        ck_assert_int_eq(cf_loop_event_new(&r->event, r->loop), 0);
    ck_assert_int_eq(cf_loop_event_new(&r->go, r->loop), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, remote_thread, r), 0);
    ck_assert_int_eq(cf_loop_run_forever(r->loop), 0);
    pthread_join(th, NULL);
    /* Let the task's last steps run (a cancelled one ends after the future). */
    cf_loop_event_free(r->event);
    cf_loop_event_free(r->go);
    cf_loop_free(r->loop);
    cf_test_latch_destroy(&r->started);
    cf_test_event_destroy(&r->task_ended);
}

START_TEST(test_threadsafe_result)
{
    remote r = {0};
    run_remote(&r);
    ck_assert_int_eq(r.result_rc, 0);
    ck_assert_str_eq(r.value, "from the loop");
    ck_assert(pthread_equal(r.task_thread, pthread_self())); /* ran on the loop thread */
    ck_assert(pthread_equal(r.callback_thread, pthread_self()));
}
END_TEST

START_TEST(test_threadsafe_failure)
{
    remote r = {.fail = true};
    run_remote(&r);
    ck_assert_int_eq(r.result_rc, CF_ETASK);
    ck_assert_int_eq(r.code, -4242);
    ck_assert_str_eq(r.message, "failed on purpose");
    free((void *)r.message);
}
END_TEST

/* Cancelling the future cancels the task. */
START_TEST(test_threadsafe_cancel_reaches_task)
{
    remote r = {.event = (cf_loop_event *)1};
    run_remote(&r);
    ck_assert_int_eq(r.result_rc, CF_ECANCELLED);
    ck_assert_int_eq(r.task_rc, CF_ECANCELLED);
}
END_TEST

/* Cancelled before the loop got to it: the task never runs. From the loop thread itself. The
 * task ending cancelled cancels the future. Closing the loop before the start cancels it. */
static int cancels_itself(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return CF_ECANCELLED;
}

START_TEST(test_threadsafe_cancel_early_and_close)
{
    cf_loop *loop = new_loop();
    remote r = {0};
    cf_test_latch_init(&r.started);
    cf_test_event_init(&r.task_ended);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, remote_task, &r, NULL), 0);
    ck_assert(cf_future_cancel(f));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_uint_eq(cf_test_latch_count(&r.started), 0);
    ck_assert(cf_future_cancel(f)); /* again: still cancelled, nothing posted twice */
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    cf_future_unref(f);

    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, cancels_itself, NULL, NULL), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, f), CF_ECANCELLED);
    cf_future_unref(f);

    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, remote_task, &r, NULL), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(cf_future_cancelled(f));
    ck_assert_uint_eq(cf_test_latch_count(&r.started), 0);
    cf_future_unref(f);
    cf_loop_free(loop);
    cf_test_latch_destroy(&r.started);
    cf_test_event_destroy(&r.task_ended);
}
END_TEST

/* A task started from another thread and still waiting when the loop closes: the future ends
 * cancelled. */
START_TEST(test_threadsafe_close_while_running)
{
    cf_loop *loop = new_loop();
    remote r = {0};
    cf_test_latch_init(&r.started);
    cf_test_event_init(&r.task_ended);
    ck_assert_int_eq(cf_loop_event_new(&r.event, loop), 0);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_coroutine_threadsafe(&f, loop, remote_task, &r, NULL), 0);
    while (cf_test_latch_count(&r.started) == 0)
        ck_assert_int_eq(cf_loop_run_once(loop, 0), 0);
    ck_assert_int_eq(cf_loop_run_once(loop, 0), 0); /* now in the event wait */
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(r.task_rc, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(f));
    cf_future_unref(f);
    cf_loop_event_free(r.event);
    cf_loop_free(loop);
    cf_test_latch_destroy(&r.started);
    cf_test_event_destroy(&r.task_ended);
}
END_TEST

#endif /* CF_TEST_NO_COROUTINES */

static Suite *suite(void)
{
    Suite *s = suite_create("loop_threads");
    TCase *tc = cf_test_tcase("run_once");
    tcase_add_test(tc, test_run_once);
    tcase_add_test(tc, test_run_once_woken_and_embedded);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("default_executor");
    tcase_add_test(tc, test_set_default_executor);
    tcase_add_test(tc, test_shutdown_default_executor);
    tcase_add_test(tc, test_shutdown_default_executor_unused);
    tcase_add_test(tc, test_shutdown_default_executor_timeout);
    tcase_add_test(tc, test_shutdown_default_executor_close);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("threadsafe");
    tcase_add_test(tc, test_threadsafe_arguments);
#ifndef CF_TEST_NO_COROUTINES
    tcase_add_test(tc, test_threadsafe_result);
    tcase_add_test(tc, test_threadsafe_failure);
    tcase_add_test(tc, test_threadsafe_cancel_reaches_task);
    tcase_add_test(tc, test_threadsafe_cancel_early_and_close);
    tcase_add_test(tc, test_threadsafe_close_while_running);
#endif
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
