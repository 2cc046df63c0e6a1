/* Regression: shutting a thread pool down while one of its workers spins for more work.
 *
 * A worker that finds the queue empty spins briefly without the pool lock before it parks.
 * A shutdown that lands inside that window wakes only the workers already parked; the spinner
 * must re-check for shutdown before parking, or it parks forever and cf_executor_free() hangs. */
#include "cf_test.h"

static int noop(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

typedef struct freer {
    cf_executor *ex;
    cf_test_event done;
} freer;

static void *free_pool(void *arg)
{
    freer *fr = arg;
    cf_executor_free(fr->ex);
    cf_test_event_set(&fr->done);
    return NULL;
}

START_TEST(test_free_right_after_a_result)
{
    for (int i = 0; i < 200; i++) {
        freer fr;
        cf_thread_pool_options o = {.max_workers = 1};
        ck_assert_int_eq(cf_thread_pool_new(&fr.ex, &o), 0);
        cf_future *f;
        ck_assert_int_eq(cf_executor_submit(&f, fr.ex, noop, NULL), 0);
        ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
        cf_future_unref(f);
        /* The worker is now (most likely) spinning for more work: free the pool at once, on a
         * helper thread so that a hang is reported instead of blocking the suite. */
        cf_test_event_init(&fr.done);
        pthread_t t;
        pthread_create(&t, NULL, free_pool, &fr);
        ck_assert_msg(cf_test_event_wait(&fr.done, CF_TEST_LONG),
                      "cf_executor_free hung at iteration %d: a worker parked after shutdown", i);
        pthread_join(t, NULL);
        cf_test_event_destroy(&fr.done);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool_spin_shutdown");
    TCase *tc = cf_test_tcase("shutdown");
    tcase_add_test(tc, test_free_right_after_a_result);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
