/* Thread-pool wake-ups: no worker may end up asleep while it has something to do.
 *
 * A submit that wakes several parked workers must wake every one of them, even when a woken
 * worker runs, finds the queue empty and parks again before the submitter has finished waking
 * the others. That interleaving used to make the submitter follow the worker's new idle-stack
 * link (a data race ThreadSanitizer reports) and skip the remaining workers, which then slept
 * while counted as awake. And a shutdown must reach a worker that was looking at the queue,
 * not parked, when it happened. Either bug shows as cf_executor_free() never returning. */
#include "cf_test_sync.h"

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

/* A worker counts as awake from the end of its task function until it looks at the queue again,
 * and a submitter trusts such a worker instead of waking a parked one. If the awake worker does
 * not come back soon (in real runs it is runnable but queued behind the submitter on a shared
 * CPU; here it is held in the result destructor of the future it released last), a submitter
 * that goes on submitting must notice that the pool makes no progress and wake the parked
 * worker. Without that, nothing runs until the destructor returns. */
typedef struct held_worker {
    cf_test_event caller_let_go; /* the test dropped its reference to the first future */
    cf_test_event in_dtor;       /* the worker is inside the result destructor */
    cf_test_event release;       /* the destructor may return */
    atomic_int ran;              /* counting tasks that ran */
} held_worker;

static held_worker held;

static void holding_dtor(void *value)
{
    (void)value;
    cf_test_event_set(&held.in_dtor);
    cf_test_event_wait(&held.release, CF_TEST_LONG);
}

static int task_released_last_by_worker(void *arg, void **result)
{
    (void)arg;
    cf_test_event_wait(&held.caller_let_go, CF_TEST_LONG);
    cf_task_set_result_dtor(holding_dtor);
    *result = &held;
    return 0;
}

static int counting_task(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static bool wait_parked(cf_executor *pool, unsigned parked)
{
    double end = cf_test_monotonic() + CF_TEST_LONG;
    cf_thread_pool_stats st;
    while (cf_thread_pool_get_stats(&st, pool) == 0 && st.idle != parked) {
        if (cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(1);
    }
    return st.idle == parked;
}

START_TEST(test_stalled_awake_worker_does_not_hold_up_the_queue)
{
    cf_test_event_init(&held.caller_let_go);
    cf_test_event_init(&held.in_dtor);
    cf_test_event_init(&held.release);
    atomic_init(&held.ran, 0);
    cf_executor *pool = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *warm[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cf_executor_submit(&warm[i], pool, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 2, CF_TEST_LONG)); /* both threads exist */
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_wait(NULL, NULL, warm, 2, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    ck_assert(wait_parked(pool, 2));

    cf_future *first;
    ck_assert_int_eq(cf_executor_submit(&first, pool, task_released_last_by_worker, NULL), 0);
    cf_future_unref(first);
    cf_test_event_set(&held.caller_let_go);
    ck_assert(cf_test_event_wait(&held.in_dtor, CF_TEST_LONG));
    ck_assert(wait_parked(pool, 1)); /* one worker held while counted awake, one parked */

    /* Keep submitting until a task has run: at most 100,000 tasks (the check needs two rounds of
     * 64), within half the destructor's own limit, so that its timing out cannot make this pass. */
    double end = cf_test_monotonic() + CF_TEST_LONG / 2;
    unsigned long submitted = 0;
    while (atomic_load(&held.ran) == 0 && submitted < 100000 && cf_test_monotonic() < end) {
        cf_future *f;
        ck_assert_int_eq(cf_executor_submit(&f, pool, counting_task, &held.ran), 0);
        cf_future_unref(f);
        submitted++;
    }
    ck_assert_msg(atomic_load(&held.ran) > 0, "nothing ran in %lu submits", submitted);
    cf_thread_pool_stats st;
    ck_assert_int_eq(cf_thread_pool_get_stats(&st, pool), 0);
    ck_assert_uint_eq(st.threads, 2);

    cf_test_event_set(&held.release);
    for (int i = 0; i < 2; i++)
        cf_future_unref(warm[i]);
    ck_assert_int_eq(cf_executor_free(pool), 0);
    ck_assert_int_eq(atomic_load(&held.ran), (int)submitted);
    cf_test_gate_destroy(&g);
    cf_test_event_destroy(&held.caller_let_go);
    cf_test_event_destroy(&held.in_dtor);
    cf_test_event_destroy(&held.release);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool_wakeup");
    TCase *tc = cf_test_tcase("wakeup");
    tcase_add_test(tc, test_batch_wakes_every_parked_worker);
    tcase_add_test(tc, test_concurrent_submitters_wake_workers);
    tcase_add_test(tc, test_free_while_worker_looks_for_work);
    tcase_add_test(tc, test_stalled_awake_worker_does_not_hold_up_the_queue);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
