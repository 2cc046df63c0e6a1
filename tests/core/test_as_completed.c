/* The as_completed iterator: finished futures first in input order, then completion order
 * (driven deterministically), duplicates once, CF_EOF, the overall deadline and what happens
 * after it, early free while futures complete, and reference ownership. Ported from CPython's
 * test_as_completed.py; the deadline counts from creation as documented (CPython's generator
 * starts its clock at the first next()). */
#include <math.h>

#include "cf_test_sync.h"

static cf_future *new_future(void)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_future_new(&f), 0);
    return f;
}

static cf_as_completed *iter(cf_future *const *fs, size_t n, double timeout)
{
    cf_as_completed *it = NULL;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, n, timeout), 0);
    ck_assert_ptr_nonnull(it);
    return it;
}

static cf_future *next_of(cf_as_completed *it)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_as_completed_next(&f, it), 0);
    ck_assert_ptr_nonnull(f);
    ck_assert(cf_future_done(f));
    return f;
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
}

static void expect_eof(cf_as_completed *it)
{
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_EOF);
    ck_assert_ptr_null(f);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 0);
}

START_TEST(test_finished_first_in_input_order)
{
    cf_future *fs[6];
    for (int i = 0; i < 6; i++)
        fs[i] = new_future();
    ck_assert_int_eq(cf_future_set_result(fs[4], NULL, NULL), 0);
    ck_assert(cf_future_cancel(fs[1]));
    ck_assert_int_eq(cf_future_set_exception(fs[3], -1, "x"), 0);
    cf_as_completed *it = iter(fs, 6, CF_FOREVER);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 6);
    /* Completed after creation, before the first next(): comes after the finished ones. */
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    ck_assert_ptr_eq(next_of(it), fs[1]);
    ck_assert_ptr_eq(next_of(it), fs[3]);
    ck_assert_ptr_eq(next_of(it), fs[4]);
    ck_assert_ptr_eq(next_of(it), fs[0]);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 2);
    ck_assert_int_eq(cf_future_set_result(fs[5], NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_result(fs[2], NULL, NULL), 0);
    ck_assert_ptr_eq(next_of(it), fs[5]);
    ck_assert_ptr_eq(next_of(it), fs[2]);
    expect_eof(it);
    expect_eof(it);
    cf_as_completed_free(it);
    unref_all(fs, 6);
}
END_TEST

START_TEST(test_completion_order)
{
    enum { N = 200 };
    cf_future *fs[N];
    int order[N];
    for (int i = 0; i < N; i++) {
        fs[i] = new_future();
        order[i] = i;
    }
    /* A fixed pseudo-random permutation. */
    unsigned seed = 12345;
    for (int i = N - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 16) % (unsigned)(i + 1));
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    cf_as_completed *it = iter(fs, N, CF_FOREVER);
    /* Interleave completions and yields: half completed before iterating, then one by one. */
    for (int i = 0; i < N / 2; i++)
        ck_assert_int_eq(cf_future_set_result(fs[order[i]], NULL, NULL), 0);
    for (int i = 0; i < N / 2; i++)
        ck_assert_ptr_eq(next_of(it), fs[order[i]]);
    for (int i = N / 2; i < N; i++) {
        if (i % 3)
            ck_assert_int_eq(cf_future_set_result(fs[order[i]], NULL, NULL), 0);
        else
            ck_assert(cf_future_cancel(fs[order[i]]));
        ck_assert_ptr_eq(next_of(it), fs[order[i]]);
    }
    expect_eof(it);
    cf_as_completed_free(it);
    unref_all(fs, N);
}
END_TEST

typedef struct ordered_completer {
    cf_future **fs;
    const int *order;
    int n;
    pid_t waiter;
} ordered_completer;

static void *ordered_completer_main(void *arg)
{
    ordered_completer *c = arg;
    for (int i = 0; i < c->n; i++) {
        /* Sometimes let the iterator fall asleep first, to use the wake-up path. */
        if (i % 4 == 0)
            cf_test_wait_asleep(c->waiter, CF_TEST_LONG);
        ck_assert_int_eq(cf_future_set_result(c->fs[c->order[i]], NULL, NULL), 0);
    }
    return NULL;
}

START_TEST(test_completion_order_from_another_thread)
{
    enum { N = 16 };
    const int order[N] = {5, 2, 15, 0, 9, 11, 1, 3, 14, 7, 4, 13, 6, 12, 8, 10};
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    cf_as_completed *it = iter(fs, N, CF_FOREVER);
    ordered_completer c = {.fs = fs, .order = order, .n = N, .waiter = cf_test_gettid()};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, ordered_completer_main, &c), 0);
    for (int i = 0; i < N; i++)
        ck_assert_ptr_eq(next_of(it), fs[order[i]]);
    expect_eof(it);
    pthread_join(t, NULL);
    cf_as_completed_free(it);
    unref_all(fs, N);
}
END_TEST

static int double_task(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * 2);
    return 0;
}

START_TEST(test_pool_futures)
{
    /* CPython's test_no_timeout: pool futures mixed with finished and cancelled ones. */
    cf_executor *ex = cf_test_pool(2);
    cf_future *done = new_future(), *failed = new_future(), *cancelled = new_future();
    ck_assert_int_eq(cf_future_set_result(done, NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_exception(failed, -1, NULL), 0);
    ck_assert(cf_future_cancel(cancelled));
    cf_future *f1 = NULL, *f2 = NULL;
    ck_assert_int_eq(cf_executor_submit(&f1, ex, double_task, (void *)21), 0);
    ck_assert_int_eq(cf_executor_submit(&f2, ex, double_task, (void *)5), 0);
    cf_future *fs[] = {done, failed, f1, cancelled, f2};
    cf_as_completed *it = iter(fs, 5, CF_TEST_LONG);
    bool seen[5] = {false};
    for (int i = 0; i < 5; i++) {
        cf_future *f = next_of(it);
        int k = 0;
        while (fs[k] != f)
            k++;
        ck_assert(!seen[k]);
        seen[k] = true;
    }
    expect_eof(it);
    cf_as_completed_free(it);
    unref_all(fs, 5);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_duplicates_yielded_once)
{
    cf_future *f = new_future(), *g = new_future();
    ck_assert_int_eq(cf_future_set_result(g, NULL, NULL), 0);
    cf_future *fs[] = {f, f, g, f, g};
    cf_as_completed *it = iter(fs, 5, CF_FOREVER);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 2);
    ck_assert_ptr_eq(next_of(it), g);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_ptr_eq(next_of(it), f);
    expect_eof(it);
    cf_as_completed_free(it);
    cf_future_unref(f);
    cf_future_unref(g);
}
END_TEST

START_TEST(test_timeout)
{
    /* CPython's test_future_times_out, then what a later call sees. */
    cf_future *fs[4];
    for (int i = 0; i < 4; i++)
        fs[i] = new_future();
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    ck_assert(cf_future_cancel(fs[3]));
    double t0 = cf_test_monotonic();
    cf_as_completed *it = iter(fs, 4, 0.1);
    ck_assert_ptr_eq(next_of(it), fs[0]);
    ck_assert_ptr_eq(next_of(it), fs[3]);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_ETIMEDOUT);
    ck_assert_ptr_null(f);
    ck_assert_double_ge(cf_test_monotonic() - t0, 0.095);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 2);
    /* The deadline has passed: further calls report it at once... */
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_ETIMEDOUT);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 2);
    /* ...but still yield futures that completed since. */
    ck_assert_int_eq(cf_future_set_exception(fs[2], -1, NULL), 0);
    ck_assert_ptr_eq(next_of(it), fs[2]);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 1);
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_set_result(fs[1], NULL, NULL), 0);
    ck_assert_ptr_eq(next_of(it), fs[1]);
    expect_eof(it);
    cf_as_completed_free(it);
    unref_all(fs, 4);
}
END_TEST

START_TEST(test_zero_timeout)
{
    /* CPython's test_zero_timeout: finished ones are yielded even with timeout 0. */
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        fs[i] = new_future();
    ck_assert_int_eq(cf_future_set_result(fs[1], NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_exception(fs[2], -1, NULL), 0);
    cf_as_completed *it = iter(fs, 3, 0);
    ck_assert_ptr_eq(next_of(it), fs[1]);
    ck_assert_ptr_eq(next_of(it), fs[2]);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_ETIMEDOUT);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 1);
    cf_as_completed_free(it);
    unref_all(fs, 3);
}
END_TEST

START_TEST(test_deadline_counts_from_creation)
{
    cf_future *fs[] = {new_future()};
    cf_as_completed *it = iter(fs, 1, 0.3);
    /* Spend the whole budget before the first next(). */
    ck_assert_int_eq(cf_future_result(NULL, fs[0], 0.35), CF_ETIMEDOUT);
    double t0 = cf_test_monotonic();
    cf_future *f = NULL;
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_ETIMEDOUT);
    /* It did not start a fresh wait, which would take at least 0.3 s. */
    ck_assert_double_lt(cf_test_monotonic() - t0, 0.25);
    cf_as_completed_free(it);
    unref_all(fs, 1);
}
END_TEST

START_TEST(test_woken_by_completion_in_another_thread)
{
    /* The deadline is generous; the wait ends at the completion, not at the deadline. */
    enum { N = 3 };
    const int order[N] = {2, 0, 1};
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    cf_as_completed *it = iter(fs, N, CF_TEST_LONG);
    ordered_completer c = {.fs = fs, .order = order, .n = N, .waiter = cf_test_gettid()};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, ordered_completer_main, &c), 0);
    for (int i = 0; i < N; i++)
        ck_assert_ptr_eq(next_of(it), fs[order[i]]);
    expect_eof(it);
    pthread_join(t, NULL);
    cf_as_completed_free(it);
    unref_all(fs, N);
}
END_TEST

/* ---- lifetime ---- */

START_TEST(test_yielded_future_not_kept_alive)
{
    /* CPython's test_free_reference_yielded_future. */
    atomic_int dtor = 0;
    cf_future *f = new_future(), *other = new_future();
    cf_future *fs[] = {f, other};
    cf_as_completed *it = iter(fs, 2, CF_FOREVER);
    ck_assert_int_eq(cf_future_set_result(f, &dtor, cf_test_count_dtor), 0);
    ck_assert_ptr_eq(next_of(it), f);
    cf_future_unref(f);
    /* The iterator is still alive, but the yielded future is gone. */
    ck_assert_int_eq(atomic_load(&dtor), 1);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 1);
    cf_as_completed_free(it);
    cf_future_unref(other);
}
END_TEST

START_TEST(test_iterator_keeps_unyielded_futures)
{
    atomic_int dtor = 0;
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result(f, &dtor, cf_test_count_dtor), 0);
    cf_future *fs[] = {f};
    cf_as_completed *it = iter(fs, 1, CF_FOREVER);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&dtor), 0);
    cf_as_completed_free(it);
    ck_assert_int_eq(atomic_load(&dtor), 1);

    /* Pending futures the caller released survive in the iterator and can still complete. */
    atomic_int dtor2 = 0;
    cf_future *p = new_future();
    cf_future *completer_ref = cf_future_ref(p);
    cf_future *ps[] = {p, p};
    it = iter(ps, 2, CF_FOREVER);
    cf_future_unref(p);
    ck_assert_int_eq(cf_future_set_result(completer_ref, &dtor2, cf_test_count_dtor), 0);
    cf_future_unref(completer_ref);
    ck_assert_int_eq(atomic_load(&dtor2), 0);
    cf_as_completed_free(it);
    ck_assert_int_eq(atomic_load(&dtor2), 1);
}
END_TEST

START_TEST(test_free_early_then_complete)
{
    enum { N = 20 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    ck_assert_int_eq(cf_future_set_result(fs[3], NULL, NULL), 0);
    cf_as_completed *it = iter(fs, N, CF_FOREVER);
    ck_assert_ptr_eq(next_of(it), fs[3]);
    ck_assert_int_eq(cf_future_set_result(fs[7], NULL, NULL), 0);
    /* Freed with one completion not yet taken and the rest pending. */
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++)
        if (i != 3 && i != 7)
            ck_assert_int_eq(cf_future_set_result(fs[i], NULL, NULL), 0);
    /* Futures are not cancelled by the free. */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
    unref_all(fs, N);
}
END_TEST

typedef struct free_race {
    cf_future **fs;
    int n;
    pthread_barrier_t *barrier;
} free_race;

static void *free_race_completer(void *arg)
{
    free_race *r = arg;
    pthread_barrier_wait(r->barrier);
    for (int i = 0; i < r->n; i++) {
        if (i % 4 == 3)
            cf_future_cancel(r->fs[i]);
        else
            cf_future_set_result(r->fs[i], NULL, NULL);
    }
    return NULL;
}

START_TEST(test_free_while_futures_complete_concurrently)
{
    /* No use-after-free when a completing thread fires hooks while the iterator goes away
     * (this is what the ASan and TSan runs check). */
    enum { N = 16, ROUNDS = 300 };
    for (int round = 0; round < ROUNDS; round++) {
        cf_future *fs[N];
        for (int i = 0; i < N; i++)
            fs[i] = new_future();
        cf_as_completed *it = iter(fs, N, CF_FOREVER);
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        free_race r = {.fs = fs, .n = N, .barrier = &barrier};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, free_race_completer, &r), 0);
        pthread_barrier_wait(&barrier);
        /* Take a few, then drop the iterator mid-stream. */
        for (int k = 0; k < round % 4; k++) {
            cf_future *f = NULL;
            int rc = cf_as_completed_next(&f, it);
            ck_assert_int_eq(rc, 0);
        }
        cf_as_completed_free(it);
        pthread_join(t, NULL);
        pthread_barrier_destroy(&barrier);
        unref_all(fs, N);
    }
}
END_TEST

/* ---- arguments ---- */

/* As Python's as_completed([]): an iterator with nothing to yield. */
START_TEST(test_no_futures)
{
    cf_as_completed *it = NULL;
    ck_assert_int_eq(cf_as_completed_new(&it, NULL, 0, CF_FOREVER), 0);
    ck_assert_ptr_nonnull(it);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 0);
    cf_future *out = (cf_future *)1;
    ck_assert_int_eq(cf_as_completed_next(&out, it), CF_EOF);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(cf_as_completed_next(&out, it), CF_EOF);
    cf_as_completed_free(it);
    cf_future *unused = NULL;
    ck_assert_int_eq(cf_as_completed_new(&it, &unused, 0, 0), 0);
    ck_assert_int_eq(cf_as_completed_next(&out, it), CF_EOF);
    cf_as_completed_free(it);
    it = (cf_as_completed *)1;
    ck_assert_int_eq(cf_as_completed_new(&it, NULL, 0, NAN), CF_EINVAL);
    ck_assert_ptr_null(it);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    cf_future *f = new_future();
    cf_future *fs[] = {f, NULL};
    cf_as_completed *it = (cf_as_completed *)1;
    ck_assert_int_eq(cf_as_completed_new(NULL, fs, 1, 0), CF_EINVAL);
    ck_assert_int_eq(cf_as_completed_new(&it, NULL, 1, 0), CF_EINVAL);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_as_completed_new(&it, fs, 2, 0), CF_EINVAL);
    ck_assert_int_eq(cf_as_completed_new(&it, fs + 1, 1, 0), CF_EINVAL);
    ck_assert_int_eq(cf_as_completed_new(&it, fs, 1, NAN), CF_EINVAL);
    ck_assert_ptr_null(it);
    cf_future *out = (cf_future *)1;
    ck_assert_int_eq(cf_as_completed_next(&out, NULL), CF_EINVAL);
    ck_assert_ptr_null(out);
    it = iter(fs, 1, CF_FOREVER);
    ck_assert_int_eq(cf_as_completed_next(NULL, it), CF_EINVAL);
    ck_assert_uint_eq(cf_as_completed_remaining(it), 1);
    ck_assert_uint_eq(cf_as_completed_remaining(NULL), 0);
    cf_as_completed_free(NULL);
    cf_as_completed_free(it);
    cf_future_unref(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("as_completed");
    TCase *tc = cf_test_tcase("order");
    tcase_add_test(tc, test_finished_first_in_input_order);
    tcase_add_test(tc, test_completion_order);
    tcase_add_test(tc, test_completion_order_from_another_thread);
    tcase_add_test(tc, test_pool_futures);
    tcase_add_test(tc, test_duplicates_yielded_once);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("timeout");
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_zero_timeout);
    tcase_add_test(tc, test_deadline_counts_from_creation);
    tcase_add_test(tc, test_woken_by_completion_in_another_thread);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("lifetime");
    tcase_add_test(tc, test_yielded_future_not_kept_alive);
    tcase_add_test(tc, test_iterator_keeps_unyielded_futures);
    tcase_add_test(tc, test_free_early_then_complete);
    tcase_add_test(tc, test_free_while_futures_complete_concurrently);
    tcase_add_test(tc, test_no_futures);
    tcase_add_test(tc, test_invalid_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
