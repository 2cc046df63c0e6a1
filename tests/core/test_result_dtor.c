/* The result destructor given explicitly: cf_executor_submit_dtor() and
 * cf_loop_task_options.result_dtor. It runs once, when the last reference to the future goes
 * (or at once on a value a failing task stored); cf_task_set_result_dtor() inside the task
 * overrides it; it never runs for a NULL value, a cancelled task, or a bytes result. */
#include "cf_test_sync.h"

/* A result value that counts the destructor calls it received. */
typedef struct counted {
    atomic_int freed;
    atomic_int freed_by_other;
} counted;

static void counted_dtor(void *value)
{
    atomic_fetch_add(&((counted *)value)->freed, 1);
}

static void other_dtor(void *value)
{
    atomic_fetch_add(&((counted *)value)->freed_by_other, 1);
}

static int return_arg_task(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int return_arg_with_other_dtor_task(void *arg, void **result)
{
    cf_task_set_result_dtor(other_dtor);
    *result = arg;
    return 0;
}

static int store_then_fail_task(void *arg, void **result)
{
    *result = arg;
    return cf_task_fail(-7, "failed after storing a result");
}

static int return_null_task(void *arg, void **result)
{
    (void)arg;
    *result = NULL;
    return 0;
}

static cf_future *submit_dtor(cf_executor *ex, cf_fn fn, void *arg, cf_dtor dtor)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_dtor(&f, ex, fn, arg, dtor), 0);
    return f;
}

START_TEST(test_called_once_when_freed)
{
    cf_executor *ex = cf_test_pool(2);
    counted c = {0};
    cf_future *f = submit_dtor(ex, return_arg_task, &c, counted_dtor);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, CF_TEST_LONG), 0);
    ck_assert_ptr_eq(value, &c);
    /* The worker drops the pool's reference after completing the future: let it. */
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    cf_future *extra = cf_future_ref(f);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&c.freed), 0); /* a reference is left */
    cf_future_unref(extra);
    ck_assert_int_eq(atomic_load(&c.freed), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(atomic_load(&c.freed), 1);
}
END_TEST

START_TEST(test_task_overrides_it)
{
    cf_executor *ex = cf_test_pool(1);
    counted c = {0};
    cf_future *f = submit_dtor(ex, return_arg_with_other_dtor_task, &c, counted_dtor);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0); /* the pool's reference is gone */
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&c.freed), 0);
    ck_assert_int_eq(atomic_load(&c.freed_by_other), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_failed_task_value_released_at_once)
{
    cf_executor *ex = cf_test_pool(1);
    counted c = {0};
    cf_future *f = submit_dtor(ex, store_then_fail_task, &c, counted_dtor);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    ck_assert_int_eq(atomic_load(&c.freed), 1); /* before the future is freed */
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, -7);
    ck_assert_str_eq(message, "failed after storing a result");
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&c.freed), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_never_for_null_or_cancelled)
{
    cf_executor *ex = cf_test_pool(1);
    counted c = {0};
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *blocker = NULL;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    cf_future *queued = submit_dtor(ex, return_arg_task, &c, counted_dtor);
    ck_assert(cf_future_cancel(queued));
    /* A NULL value is never passed to a destructor (which would crash on it here). */
    cf_future *null_result = submit_dtor(ex, return_null_task, NULL, counted_dtor);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, null_result, CF_TEST_LONG), 0);
    cf_future_unref(queued);
    cf_future_unref(null_result);
    cf_future_unref(blocker);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(atomic_load(&c.freed), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* A bounded queue that runs the overflow in the caller: the same path, the same destructor. */
START_TEST(test_caller_runs)
{
    cf_thread_pool_options o = {
        .max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_CALLER_RUNS};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *blocker = NULL, *queued = NULL;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_submit(&queued, ex, cf_test_identity_task, NULL), 0);
    counted c = {0};
    cf_future *f = submit_dtor(ex, return_arg_task, &c, counted_dtor);
    ck_assert(cf_future_done(f)); /* it ran in this thread, during the submit */
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&c.freed), 1);
    cf_test_event_set(&g.release);
    cf_future_unref(blocker);
    cf_future_unref(queued);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_arguments_and_executors)
{
    cf_executor *ex = cf_test_pool(1);
    counted c = {0};
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_dtor(NULL, ex, return_arg_task, &c, counted_dtor),
                     CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_dtor(&f, NULL, return_arg_task, &c, counted_dtor),
                     CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_dtor(&f, ex, NULL, &c, counted_dtor), CF_EINVAL);
    /* A NULL destructor is a plain submit. */
    f = submit_dtor(ex, return_arg_task, &c, NULL);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(cf_executor_submit_dtor(&f, ex, return_arg_task, &c, counted_dtor),
                     CF_ESHUTDOWN);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(atomic_load(&c.freed), 0);

    /* The process pool runs no pointer task. */
    cf_process_pool_options po = {.max_workers = 1};
    ck_assert_int_eq(cf_process_pool_new(&ex, &po), 0);
    ck_assert_int_eq(cf_executor_submit_dtor(&f, ex, return_arg_task, &c, counted_dtor),
                     CF_ENOTSUP);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES
static int loop_task_returning_arg(void *arg, void **result)
{
    ck_assert_int_eq(cf_sleep(0), 0);
    *result = arg;
    return 0;
}

static int loop_task_failing(void *arg, void **result)
{
    *result = arg;
    return cf_task_fail(-9, "no");
}

START_TEST(test_loop_task_option)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    counted c = {0}, d = {0};
    cf_loop_task_options o = {.result_dtor = counted_dtor};
    cf_future *t = NULL, *u = NULL;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, loop_task_returning_arg, &c, &o), 0);
    ck_assert_int_eq(cf_loop_create_task(&u, loop, loop_task_failing, &d, &o), 0);
    void *value = NULL;
    ck_assert_int_eq(cf_loop_run_until_complete(&value, loop, t), 0);
    ck_assert_ptr_eq(value, &c);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, u), CF_ETASK);
    ck_assert_int_eq(atomic_load(&d.freed), 1);
    ck_assert_int_eq(atomic_load(&c.freed), 0);
    cf_future_unref(t);
    cf_future_unref(u);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(atomic_load(&c.freed), 1);
    ck_assert_int_eq(atomic_load(&d.freed), 1);

    /* The tail is still checked. */
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    o.reserved[14] = 1;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, loop_task_returning_arg, &c, &o), CF_EINVAL);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}
END_TEST
#endif

static Suite *suite(void)
{
    Suite *s = suite_create("result_dtor");
    TCase *tc = cf_test_tcase("explicit");
    tcase_add_test(tc, test_called_once_when_freed);
    tcase_add_test(tc, test_task_overrides_it);
    tcase_add_test(tc, test_failed_task_value_released_at_once);
    tcase_add_test(tc, test_never_for_null_or_cancelled);
    tcase_add_test(tc, test_caller_runs);
    tcase_add_test(tc, test_arguments_and_executors);
#ifndef CF_TEST_NO_COROUTINES
    tcase_add_test(tc, test_loop_task_option);
#endif
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
