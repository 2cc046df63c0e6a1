/* cf_thread_pool_get_options: the options a pool runs with, defaults resolved. */
#include <limits.h>
#include <math.h>

#include "cf_test_sync.h"

static int init_ok(void *arg)
{
    (void)arg;
    return 0;
}

static bool tail_zero(const cf_thread_pool_options *o)
{
    for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
        if (o->reserved[i])
            return false;
    return true;
}

START_TEST(test_defaults_resolved)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    cf_thread_pool_options o;
    memset(&o, 0xAB, sizeof(o));
    ck_assert_int_eq(cf_thread_pool_get_options(&o, ex), 0);
    /* Python's default: min(32, CPUs + 4). */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
    ck_assert_uint_eq(o.max_workers, cpus + 4 < 32 ? (unsigned)cpus + 4 : 32);
    ck_assert_uint_eq(o.min_workers, 0);
    ck_assert_ptr_nonnull(o.thread_name_prefix);
    ck_assert_int_eq(strncmp(o.thread_name_prefix, "cfpool", 6), 0);
    ck_assert_ptr_null((void *)o.initializer);
    ck_assert_uint_gt(o.stack_size, 0); /* the system default, whatever it is here */
    ck_assert_uint_eq(o.max_queue, 0);
    ck_assert_int_eq(o.queue_policy, CF_QUEUE_BLOCK);
    ck_assert(o.queue_timeout == 0 && o.idle_timeout == 0);
    ck_assert(!o.finish_at_exit);
    ck_assert(tail_zero(&o));
    /* What it reports can create an equal pool. */
    cf_executor *copy = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&copy, &o), 0);
    cf_thread_pool_options o2;
    ck_assert_int_eq(cf_thread_pool_get_options(&o2, copy), 0);
    ck_assert_uint_eq(o2.max_workers, o.max_workers);
    ck_assert_uint_eq(o2.stack_size, o.stack_size);
    ck_assert_int_eq(cf_executor_free(copy), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_given_values)
{
    int arg;
    cf_thread_pool_options in = {
        .max_workers = 3,
        .min_workers = 1,
        .thread_name_prefix = "a-rather-long-prefix",
        .initializer = init_ok,
        .initializer_arg = &arg,
        .stack_size = 1 << 20,
        .max_queue = 7,
        .queue_policy = CF_QUEUE_REJECT,
        .queue_timeout = 0.5,
        .idle_timeout = 2.5,
        .finish_at_exit = true,
    };
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &in), 0);
    cf_thread_pool_options o;
    ck_assert_int_eq(cf_thread_pool_get_options(&o, ex), 0);
    ck_assert_uint_eq(o.max_workers, 3);
    ck_assert_uint_eq(o.min_workers, 1);
    /* The prefix as the pool keeps it: at most 15 characters (Linux's thread names). */
    ck_assert_str_eq(o.thread_name_prefix, "a-rather-long-p");
    ck_assert_ptr_eq((void *)o.initializer, (void *)init_ok);
    ck_assert_ptr_eq(o.initializer_arg, &arg);
    ck_assert_uint_eq(o.stack_size, 1 << 20);
    ck_assert_uint_eq(o.max_queue, 7);
    ck_assert_int_eq(o.queue_policy, CF_QUEUE_REJECT);
    ck_assert(o.queue_timeout == 0.5 && o.idle_timeout == 2.5);
    ck_assert(o.finish_at_exit);
    ck_assert(tail_zero(&o));
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_invalid)
{
    cf_executor *tp = cf_test_pool(1);
    cf_thread_pool_options o;
    ck_assert_int_eq(cf_thread_pool_get_options(NULL, tp), CF_EINVAL);
    ck_assert_int_eq(cf_thread_pool_get_options(&o, NULL), CF_EINVAL);
    cf_executor *pp = NULL;
    cf_process_pool_options po = {.max_workers = 1};
    ck_assert_int_eq(cf_process_pool_new(&pp, &po), 0);
    ck_assert_int_eq(cf_thread_pool_get_options(&o, pp), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(pp), 0);
    /* A non-zero slot is still refused, the new field's included. */
    cf_thread_pool_options bad = {.reserved[14] = 1};
    cf_executor *ex = (cf_executor *)1;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &bad), CF_EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_int_eq(cf_executor_free(tp), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool_options");
    TCase *tc = cf_test_tcase("get_options");
    tcase_add_test(tc, test_defaults_resolved);
    tcase_add_test(tc, test_given_values);
    tcase_add_test(tc, test_invalid);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
