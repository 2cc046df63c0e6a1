/* The ABI rule for public structs (docs/abi.md), as a caller sees it: a zero-initialised options
 * struct and a NULL pointer both mean "every default", a non-zero reserved slot (an option this
 * library does not know) is rejected with CF_EINVAL rather than ignored, and a stats struct comes
 * back with its reserved tail zeroed whatever the caller left in it. The sizes themselves are
 * held to docs/abi.md by check_abi.py. */
#include <string.h>

#include "cf_test.h"

#define NSLOTS(s) (sizeof((s).reserved) / sizeof((s).reserved[0]))

START_TEST(test_thread_pool_options)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    cf_executor_free(ex);
    cf_thread_pool_options o = {0};
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    cf_executor_free(ex);
    for (size_t i = 0; i < NSLOTS(o); i += NSLOTS(o) - 1) { /* the first and the last slot */
        memset(&o, 0, sizeof(o));
        o.reserved[i] = 1;
        ex = (cf_executor *)&o;
        ck_assert_int_eq(cf_thread_pool_new(&ex, &o), CF_EINVAL);
        ck_assert_ptr_null(ex);
    }
}
END_TEST

START_TEST(test_thread_pool_stats_tail_zeroed)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    cf_thread_pool_stats st;
    memset(&st, 0xa5, sizeof(st));
    ck_assert_int_eq(cf_thread_pool_get_stats(&st, ex), 0);
    for (size_t i = 0; i < NSLOTS(st); i++)
        ck_assert_uint_eq(st.reserved[i], 0);
    ck_assert_uint_eq(st.threads, 0);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_process_pool_options)
{
    cf_process_pool_options o = {0};
    cf_executor *ex = NULL;
    for (size_t i = 0; i < NSLOTS(o); i += NSLOTS(o) - 1) {
        memset(&o, 0, sizeof(o));
        o.reserved[i] = 1;
        ex = (cf_executor *)&o;
        ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
        ck_assert_ptr_null(ex);
    }
    /* A zero struct starts a pool (its fork server) and runs a task. */
    memset(&o, 0, sizeof(o));
    o.max_workers = 1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_echo_task, "ab", 2), 0);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 2);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_loop_options)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_loop_free(loop);
    cf_loop_options o = {0};
    ck_assert_int_eq(cf_loop_new(&loop, &o), 0);
    cf_loop_free(loop);
    for (size_t i = 0; i < NSLOTS(o); i += NSLOTS(o) - 1) {
        memset(&o, 0, sizeof(o));
        o.reserved[i] = 1;
        loop = (cf_loop *)&o;
        ck_assert_int_eq(cf_loop_new(&loop, &o), CF_EINVAL);
        ck_assert_ptr_null(loop);
    }
}
END_TEST

static int return_zero(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

START_TEST(test_loop_task_options)
{
    cf_loop *loop = NULL;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_loop_task_options o = {0};
    cf_future *t = NULL;
    for (size_t i = 0; i < NSLOTS(o); i += NSLOTS(o) - 1) {
        memset(&o, 0, sizeof(o));
        o.reserved[i] = 1;
        t = (cf_future *)&o;
        ck_assert_int_eq(cf_loop_create_task(&t, loop, return_zero, NULL, &o), CF_EINVAL);
        ck_assert_ptr_null(t);
    }
#ifndef CF_TEST_NO_COROUTINES
    memset(&o, 0, sizeof(o));
    ck_assert_int_eq(cf_loop_create_task(&t, loop, return_zero, NULL, &o), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), 0);
    cf_future_unref(t);
#endif
    cf_loop_free(loop);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("abi");
    TCase *tc = cf_test_tcase("reserved");
    tcase_add_test(tc, test_thread_pool_options);
    tcase_add_test(tc, test_thread_pool_stats_tail_zeroed);
    tcase_add_test(tc, test_process_pool_options);
    tcase_add_test(tc, test_loop_options);
    tcase_add_test(tc, test_loop_task_options);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
