/* Thread-pool wake-ups: no worker may end up asleep while it has something to do.
 *
 * A submit that wakes several parked workers must wake every one of them, even when a woken
 * worker runs, finds the queue empty and parks again before the submitter has finished waking
 * the others. That interleaving used to make the submitter follow the worker's new idle-stack
 * link (a data race ThreadSanitizer reports) and skip the remaining workers, which then slept
 * while counted as awake. And a shutdown must reach a worker that was looking at the queue,
 * not parked, when it happened. Either bug shows as cf_executor_free() never returning. */
#include "cf_test.h"

enum { WORKERS = 4, ROUNDS = 3000 };

static int noop(void *arg, void **result)
{
    *result = arg;
    return 0;
}

/* Each round queues WORKERS trivial calls in one batch, which wakes every parked worker at
 * once; the calls finish at once, so the first workers woken park again while the submitter
 * is still waking the last ones. Every call must complete well within the deadline. */
START_TEST(test_batch_wakes_every_parked_worker)
{
    cf_thread_pool_options opts = {.max_workers = WORKERS};
    cf_executor *pool;
    ck_assert_int_eq(cf_thread_pool_new(&pool, &opts), 0);
    void *args[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        args[i] = &args[i];
    for (int round = 0; round < ROUNDS; round++) {
        cf_map *it;
        ck_assert_int_eq(cf_executor_map(&it, pool, noop, args, WORKERS, CF_TEST_LONG, WORKERS), 0);
        for (int i = 0; i < WORKERS; i++) {
            void *value;
            ck_assert_int_eq(cf_map_next(&value, it), 0);
            ck_assert_ptr_eq(value, args[i]);
        }
        ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
        cf_map_free(it);
    }
    ck_assert_int_eq(cf_executor_free(pool), 0);
}
END_TEST

/* The same with single submits from two threads, so that wake-ups from different submitters
 * interleave with workers parking. */
typedef struct submitter_arg {
    cf_executor *pool;
    int failures;
} submitter_arg;

static void *submitter(void *p)
{
    submitter_arg *a = p;
    for (int round = 0; round < ROUNDS; round++) {
        cf_future *fs[WORKERS];
        for (int i = 0; i < WORKERS; i++)
            if (cf_executor_submit(&fs[i], a->pool, noop, NULL) != 0)
                return (a->failures++, NULL);
        if (cf_wait(NULL, NULL, fs, WORKERS, CF_ALL_COMPLETED, CF_TEST_LONG) != 0)
            a->failures++;
        for (int i = 0; i < WORKERS; i++)
            cf_future_unref(fs[i]);
    }
    return NULL;
}

START_TEST(test_concurrent_submitters_wake_workers)
{
    cf_thread_pool_options opts = {.max_workers = WORKERS};
    cf_executor *pool;
    ck_assert_int_eq(cf_thread_pool_new(&pool, &opts), 0);
    submitter_arg a = {.pool = pool}, b = {.pool = pool};
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, submitter, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, submitter, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_int_eq(a.failures, 0);
    ck_assert_int_eq(b.failures, 0);
    ck_assert_int_eq(cf_executor_free(pool), 0);
}
END_TEST

/* A worker that runs out of work may watch the queue for a few microseconds before parking.
 * A shutdown in that window wakes only the workers already parked, so the watcher must notice
 * the shutdown itself instead of parking for ever (which made cf_executor_free() hang). Each
 * round frees the pool right after its only task completes, which is when its worker watches
 * the queue. */
START_TEST(test_free_while_worker_looks_for_work)
{
    cf_thread_pool_options opts = {.max_workers = 1};
    for (int round = 0; round < ROUNDS; round++) {
        cf_executor *pool;
        ck_assert_int_eq(cf_thread_pool_new(&pool, &opts), 0);
        cf_future *f;
        ck_assert_int_eq(cf_executor_submit(&f, pool, noop, NULL), 0);
        ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
        cf_future_unref(f);
        ck_assert_int_eq(cf_executor_free(pool), 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool_wakeup");
    TCase *tc = cf_test_tcase("wakeup");
    tcase_add_test(tc, test_batch_wakes_every_parked_worker);
    tcase_add_test(tc, test_concurrent_submitters_wake_workers);
    tcase_add_test(tc, test_free_while_worker_looks_for_work);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
