/* Waiting on many futures from the loop: cf_loop_wait (asyncio.wait) in callback style, its
 * coroutine form cf_await_many, and cf_loop_as_completed: conditions, timeouts (which never
 * cancel anything), already-done futures, duplicates, executor futures watched directly,
 * cancellation of the waiter, close, and the argument errors. */
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

static void step(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

static cf_future *loop_future(cf_loop *loop)
{
    cf_future *f;
    ck_assert_int_eq(cf_loop_create_future(&f, loop), 0);
    return f;
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
}

START_TEST(test_wait_arguments)
{
    cf_loop *loop = new_loop();
    cf_future *fs[2] = {loop_future(loop), NULL};
    cf_future *w = (cf_future *)1;
    ck_assert_int_eq(cf_loop_wait(NULL, loop, fs, 1, CF_ALL_COMPLETED, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 0, CF_ALL_COMPLETED, -1), CF_EINVAL);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(cf_loop_wait(&w, loop, NULL, 1, CF_ALL_COMPLETED, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 2, CF_ALL_COMPLETED, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 1, (cf_return_when)9, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 1, CF_ALL_COMPLETED, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_loop_wait(&w, NULL, fs, 1, CF_ALL_COMPLETED, -1), CF_EINVAL);
    cf_loop_as_completed *it = (cf_loop_as_completed *)1;
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 0, -1), CF_EINVAL);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 2, -1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 1, NAN), CF_EINVAL);
    cf_future *out;
    ck_assert_int_eq(cf_loop_as_completed_next(&out, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&out, NULL), CF_EINVAL);
    ck_assert_uint_eq(cf_loop_as_completed_remaining(NULL), 0);
    ck_assert_int_eq(cf_loop_as_completed_free(NULL), 0);
    size_t n_done = 7;
    ck_assert_int_eq(cf_await_many(&n_done, NULL, fs, 1, CF_ALL_COMPLETED, -1), CF_EINVALSTATE);
    ck_assert_uint_eq(n_done, 0);
    /* Outside a task, as_completed_next cannot wait. */
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 1, -1), 0);
    ck_assert_int_eq(cf_loop_as_completed_next(&out, it), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_as_completed_free(it), 0);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 1, CF_ALL_COMPLETED, -1), CF_ECLOSED);
    cf_future_unref(fs[0]);
    cf_loop_free(loop);
}
END_TEST

static void finish_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_int_eq(cf_future_set_result(data, data, NULL), 0);
}

static void fail_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ck_assert_int_eq(cf_future_set_exception(data, -77, "failed"), 0);
}

/* The three conditions over loop futures completed by callbacks, one iteration at a time. */
START_TEST(test_wait_conditions)
{
    cf_loop *loop = new_loop();
    cf_future *fs[3] = {loop_future(loop), loop_future(loop), loop_future(loop)};
    cf_future *first, *exc, *all;
    ck_assert_int_eq(cf_loop_wait(&first, loop, fs, 3, CF_FIRST_COMPLETED, -1), 0);
    ck_assert_int_eq(cf_loop_wait(&exc, loop, fs, 3, CF_FIRST_EXCEPTION, -1), 0);
    ck_assert_int_eq(cf_loop_wait(&all, loop, fs, 3, CF_ALL_COMPLETED, -1), 0);
    step(loop);
    ck_assert(!cf_future_done(first));
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, finish_cb, fs[1]), 0);
    step(loop); /* fs[1] finishes; the waits learn it in the next iteration */
    step(loop);
    ck_assert(cf_future_done(first));
    ck_assert_int_eq(cf_future_result(NULL, first, 0), 0);
    ck_assert(!cf_future_done(exc));
    ck_assert(!cf_future_done(all));
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, fail_cb, fs[2]), 0);
    step(loop);
    step(loop);
    ck_assert(cf_future_done(exc));
    ck_assert(!cf_future_done(all));
    ck_assert(cf_future_cancel(fs[0]));
    step(loop);
    ck_assert(cf_future_done(all));
    ck_assert(!cf_future_cancelled(all));
    cf_future_unref(first);
    cf_future_unref(exc);
    cf_future_unref(all);
    unref_all(fs, 3);
    cf_loop_free(loop);
}
END_TEST

/* Already true at creation: finished on return. Timeout 0: finished at once either way. A
 * positive timeout finishes it without cancelling anything. FIRST_EXCEPTION without a failure
 * waits for all. */
START_TEST(test_wait_immediate_and_timeout)
{
    cf_loop *loop = new_loop();
    cf_future *fs[2] = {loop_future(loop), loop_future(loop)};
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    cf_future *w;
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 2, CF_FIRST_COMPLETED, -1), 0);
    ck_assert(cf_future_done(w));
    cf_future_unref(w);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 2, CF_ALL_COMPLETED, 0), 0);
    ck_assert(cf_future_done(w));
    cf_future_unref(w);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 2, CF_ALL_COMPLETED, 0.001), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, w), 0);
    ck_assert(!cf_future_done(fs[1])); /* never cancelled */
    cf_future_unref(w);
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 2, CF_FIRST_EXCEPTION, -1), 0);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, finish_cb, fs[1]), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, w), 0);
    cf_future_unref(w);
    unref_all(fs, 2);
    cf_loop_free(loop);
}
END_TEST

/* Futures of an executor are watched directly; the same future twice is fine. Cancelling the
 * wait cancels only the wait. */
START_TEST(test_wait_executor_futures_and_cancel)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate gate;
    cf_test_gate_init(&gate);
    cf_future *fs[3];
    ck_assert_int_eq(cf_executor_submit(&fs[0], ex, cf_test_gate_task, &gate), 0);
    ck_assert_int_eq(cf_executor_submit(&fs[1], ex, cf_test_identity_task, (void *)5), 0);
    fs[2] = cf_future_ref(fs[0]);
    cf_future *w;
    ck_assert_int_eq(cf_loop_wait(&w, loop, fs, 3, CF_ALL_COMPLETED, -1), 0);
    cf_future *w2;
    ck_assert_int_eq(cf_loop_wait(&w2, loop, fs, 3, CF_ALL_COMPLETED, -1), 0);
    ck_assert(cf_future_cancel(w2));
    ck_assert(cf_future_cancelled(w2));
    ck_assert(!cf_future_done(fs[0]));
    cf_future_unref(w2);
    ck_assert(cf_test_latch_wait(&gate.started, 1, CF_TEST_LONG));
    cf_test_event_set(&gate.release);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, w), 0);
    ck_assert(cf_future_done(fs[0]) && cf_future_done(fs[1]));
    cf_future_unref(w);
    unref_all(fs, 3);
    cf_executor_free(ex);
    cf_test_gate_destroy(&gate);
    cf_loop_free(loop);
}
END_TEST

/* Close with a wait still pending: it ends cancelled (the loop can never finish it). */
START_TEST(test_wait_close)
{
    cf_loop *loop = new_loop();
    cf_future *f = loop_future(loop);
    cf_future *w;
    ck_assert_int_eq(cf_loop_wait(&w, loop, &f, 1, CF_ALL_COMPLETED, 100), 0);
    step(loop);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert(cf_future_cancelled(w));
    cf_future_unref(w);
    cf_future_unref(f);
    cf_loop_free(loop);
}
END_TEST

/* as_completed in callback style: done ones first (input order), then completion order;
 * duplicates once; CF_EAGAIN, then CF_EOF. */
START_TEST(test_as_completed_try_next)
{
    cf_loop *loop = new_loop();
    cf_future *fs[5] = {loop_future(loop), loop_future(loop), loop_future(loop), loop_future(loop),
                        NULL};
    fs[4] = fs[1];
    ck_assert_int_eq(cf_future_set_result(fs[3], NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_result(fs[1], NULL, NULL), 0);
    cf_loop_as_completed *it;
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 5, -1), 0);
    ck_assert_uint_eq(cf_loop_as_completed_remaining(it), 4);
    cf_future *f;
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), 0);
    ck_assert_ptr_eq(f, fs[1]);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), 0);
    ck_assert_ptr_eq(f, fs[3]);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), CF_EAGAIN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, finish_cb, fs[2]), 0);
    step(loop);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, fail_cb, fs[0]), 0);
    step(loop);
    step(loop);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), 0);
    ck_assert_ptr_eq(f, fs[2]);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), 0);
    ck_assert_ptr_eq(f, fs[0]);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, it), CF_EOF);
    ck_assert_uint_eq(cf_loop_as_completed_remaining(it), 0);
    ck_assert_int_eq(cf_loop_as_completed_free(it), 0);
    unref_all(fs, 4);
    cf_loop_free(loop);
}
END_TEST

/* Freed with futures still pending (one of an executor): nothing leaks, nothing is
 * cancelled. */
START_TEST(test_as_completed_free_early)
{
    cf_loop *loop = new_loop();
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate gate;
    cf_test_gate_init(&gate);
    cf_future *fs[2] = {loop_future(loop), NULL};
    ck_assert_int_eq(cf_executor_submit(&fs[1], ex, cf_test_gate_task, &gate), 0);
    cf_loop_as_completed *it;
    ck_assert_int_eq(cf_loop_as_completed_new(&it, loop, fs, 2, 50), 0);
    ck_assert_int_eq(cf_loop_as_completed_free(it), 0);
    ck_assert(!cf_future_done(fs[0]));
    cf_test_event_set(&gate.release);
    ck_assert_int_eq(cf_future_result(NULL, fs[1], CF_TEST_LONG), 0);
    unref_all(fs, 2);
    cf_executor_free(ex);
    cf_test_gate_destroy(&gate);
    cf_loop_free(loop);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES

static cf_future *spawn(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, fn, arg, NULL), 0);
    return t;
}

/* Steps the loop until *flag leaves `value` (a hang detector bounds it, never a speed). */
static void step_until_changed(cf_loop *loop, const int *flag, int value)
{
    double end = cf_test_monotonic() + CF_TEST_LONG;
    while (*flag == value) {
        ck_assert(cf_test_monotonic() < end);
        step(loop);
    }
}

typedef struct many {
    cf_future *fs[3];
    bool done[3];
    size_t n_done[5];
    int rc[5];
} many;

static int await_many_task(void *arg, void **result)
{
    (void)result;
    many *m = arg;
    m->rc[0] = cf_await_many(&m->n_done[0], m->done, m->fs, 3, CF_FIRST_COMPLETED, -1);
    m->rc[1] = cf_await_many(&m->n_done[1], NULL, m->fs, 3, CF_ALL_COMPLETED, 0); /* looks */
    m->rc[2] = cf_await_many(&m->n_done[2], m->done, m->fs, 3, CF_ALL_COMPLETED, 0.001);
    m->rc[3] = cf_await_many(&m->n_done[3], m->done, m->fs, 3, CF_ALL_COMPLETED, -1);
    m->rc[4] = cf_await_many(&m->n_done[4], NULL, m->fs, 3, CF_FIRST_EXCEPTION, -1);
    return 0;
}

START_TEST(test_await_many)
{
    cf_loop *loop = new_loop();
    many m = {.rc = {1, 1, 1, 1, 1}};
    for (int i = 0; i < 3; i++)
        m.fs[i] = loop_future(loop);
    cf_future *t = spawn(loop, await_many_task, &m);
    step(loop);
    ck_assert_int_eq(cf_loop_call_soon(NULL, loop, finish_cb, m.fs[2]), 0);
    step_until_changed(loop, &m.rc[0], 1);
    ck_assert_int_eq(m.rc[0], 0);
    ck_assert_uint_eq(m.n_done[0], 1);
    ck_assert(!m.done[0] && !m.done[1] && m.done[2]);
    step_until_changed(loop, &m.rc[2], 1);
    ck_assert_int_eq(m.rc[1], CF_ETIMEDOUT);
    ck_assert_uint_eq(m.n_done[1], 1);
    ck_assert_int_eq(m.rc[2], CF_ETIMEDOUT);
    ck_assert_uint_eq(m.n_done[2], 1);
    ck_assert(!cf_future_done(m.fs[0])); /* a timeout cancels nothing */
    step(loop);
    ck_assert_int_eq(m.rc[3], 1);
    ck_assert_int_eq(cf_future_set_exception(m.fs[0], -77, "x"), 0);
    ck_assert_int_eq(cf_future_set_result(m.fs[1], NULL, NULL), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    ck_assert_int_eq(m.rc[3], 0);
    ck_assert_uint_eq(m.n_done[3], 3);
    ck_assert(m.done[0] && m.done[1] && m.done[2]);
    ck_assert_int_eq(m.rc[4], 0);
    cf_future_unref(t);
    unref_all(m.fs, 3);
    cf_loop_free(loop);
}
END_TEST

static int await_many_forever(void *arg, void **result)
{
    (void)result;
    many *m = arg;
    m->rc[0] = cf_await_many(&m->n_done[0], m->done, m->fs, 3, CF_ALL_COMPLETED, -1);
    return m->rc[0];
}

/* Cancelling the task that waits cancels none of the futures. */
START_TEST(test_await_many_cancelled)
{
    cf_loop *loop = new_loop();
    many m = {.rc = {1, 1, 1, 1, 1}};
    for (int i = 0; i < 3; i++)
        m.fs[i] = loop_future(loop);
    cf_future *t = spawn(loop, await_many_forever, &m);
    step(loop);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    ck_assert_int_eq(m.rc[0], CF_ECANCELLED);
    for (int i = 0; i < 3; i++)
        ck_assert(!cf_future_done(m.fs[i]));
    cf_future_unref(t);
    unref_all(m.fs, 3);
    cf_loop_free(loop);
}
END_TEST

typedef struct iter {
    cf_loop_as_completed *it;
    cf_future *order[4];
    int n;
    int rc;
    int second_rc;
} iter;

static int iterate_task(void *arg, void **result)
{
    (void)result;
    iter *s = arg;
    cf_future *f;
    while ((s->rc = cf_loop_as_completed_next(&f, s->it)) == 0)
        s->order[s->n++] = f;
    return s->rc == CF_EOF ? 0 : s->rc;
}

static int second_iterator(void *arg, void **result)
{
    (void)result;
    iter *s = arg;
    cf_future *f;
    s->second_rc = cf_loop_as_completed_next(&f, s->it);
    return 0;
}

/* In a task: yields in completion order, then CF_EOF; one task at a time; the iterator cannot
 * be freed under a waiting task. */
START_TEST(test_as_completed_next)
{
    cf_loop *loop = new_loop();
    cf_future *fs[3] = {loop_future(loop), loop_future(loop), loop_future(loop)};
    iter s = {.rc = 1, .second_rc = 1};
    ck_assert_int_eq(cf_loop_as_completed_new(&s.it, loop, fs, 3, -1), 0);
    cf_future *t = spawn(loop, iterate_task, &s);
    step(loop);
    cf_future *t2 = spawn(loop, second_iterator, &s);
    step(loop);
    ck_assert_int_eq(s.second_rc, CF_EPERM);
    ck_assert_int_eq(cf_loop_as_completed_free(s.it), CF_EINVALSTATE);
    int order[3] = {1, 0, 2};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(cf_loop_call_soon(NULL, loop, i == 1 ? fail_cb : finish_cb, fs[order[i]]),
                         0);
        step(loop);
        step(loop);
        step(loop);
        ck_assert_int_eq(s.n, i + 1);
    }
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    ck_assert_int_eq(s.rc, CF_EOF);
    for (int i = 0; i < 3; i++)
        ck_assert_ptr_eq(s.order[i], fs[order[i]]);
    ck_assert_int_eq(cf_loop_as_completed_free(s.it), 0);
    cf_future_unref(t);
    cf_future_unref(t2);
    unref_all(fs, 3);
    cf_loop_free(loop);
}
END_TEST

/* The deadline passes with a future pending: CF_ETIMEDOUT (nothing cancelled), and a later
 * completion is still yielded. A task cancelled while it waits in next gets CF_ECANCELLED. */
START_TEST(test_as_completed_timeout_and_cancel)
{
    cf_loop *loop = new_loop();
    cf_future *fs[1] = {loop_future(loop)};
    iter s = {.rc = 1};
    ck_assert_int_eq(cf_loop_as_completed_new(&s.it, loop, fs, 1, 0.001), 0);
    cf_future *t = spawn(loop, iterate_task, &s);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(s.rc, CF_ETIMEDOUT);
    ck_assert_int_eq(s.n, 0);
    ck_assert(!cf_future_done(fs[0]));
    ck_assert_uint_eq(cf_loop_as_completed_remaining(s.it), 1);
    cf_future_unref(t);
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    step(loop);
    cf_future *f;
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, s.it), 0);
    ck_assert_ptr_eq(f, fs[0]);
    ck_assert_int_eq(cf_loop_as_completed_try_next(&f, s.it), CF_EOF);
    ck_assert_int_eq(cf_loop_as_completed_free(s.it), 0);
    cf_future_unref(fs[0]);

    fs[0] = loop_future(loop);
    s = (iter){.rc = 1};
    ck_assert_int_eq(cf_loop_as_completed_new(&s.it, loop, fs, 1, -1), 0);
    t = spawn(loop, iterate_task, &s);
    step(loop);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    ck_assert_int_eq(s.rc, CF_ECANCELLED);
    ck_assert_int_eq(cf_loop_as_completed_free(s.it), 0);
    cf_future_unref(t);
    cf_future_unref(fs[0]);
    cf_loop_free(loop);
}
END_TEST

#endif /* CF_TEST_NO_COROUTINES */

static Suite *suite(void)
{
    Suite *s = suite_create("loop_wait");
    TCase *tc = cf_test_tcase("wait");
    tcase_add_test(tc, test_wait_arguments);
    tcase_add_test(tc, test_wait_conditions);
    tcase_add_test(tc, test_wait_immediate_and_timeout);
    tcase_add_test(tc, test_wait_executor_futures_and_cancel);
    tcase_add_test(tc, test_wait_close);
    tcase_add_test(tc, test_as_completed_try_next);
    tcase_add_test(tc, test_as_completed_free_early);
    suite_add_tcase(s, tc);
#ifndef CF_TEST_NO_COROUTINES
    tc = cf_test_tcase("coroutines");
    tcase_add_test(tc, test_await_many);
    tcase_add_test(tc, test_await_many_cancelled);
    tcase_add_test(tc, test_as_completed_next);
    tcase_add_test(tc, test_as_completed_timeout_and_cancel);
    suite_add_tcase(s, tc);
#endif
    return s;
}

CF_TEST_MAIN(suite)
