/* cf_wait(): the three modes over mixed finished / pending / cancelled / failed futures from
 * thread pools and plain futures, the done[] split on success and timeout, duplicates,
 * wake-ups from other threads, polling, argument checks, and concurrent waiters. Ported from
 * CPython's test_wait.py; cancelled futures count as done at once (a documented divergence:
 * CPython leaves a future cancelled by cancel() in not_done). */
#include <math.h>

#include "cf_test_sync.h"

static cf_future *new_future(void)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_future_new(&f), 0);
    return f;
}

static cf_future *finished_future(void *value)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result(f, value, NULL), 0);
    return f;
}

static cf_future *failed_future(int code)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_exception(f, code, "this is an exception"), 0);
    return f;
}

static cf_future *cancelled_future(void)
{
    cf_future *f = new_future();
    ck_assert(cf_future_cancel(f));
    return f;
}

static cf_future *submit(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit(&f, ex, fn, arg), 0);
    return f;
}

static int mul_task(void *arg, void **result)
{
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * 2);
    return 0;
}

/* Task: waits for the event in arg, then fails. */
static int wait_and_raise_task(void *arg, void **result)
{
    (void)result;
    if (!cf_test_event_wait(arg, CF_TEST_LONG))
        return CF_ETIMEDOUT;
    return cf_task_fail(-42, "this is an exception");
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
}

/* Checks done[] against the futures' own state, and the expected pattern ('d'one/'p'ending). */
static void check_split(const bool *done, size_t n_done, cf_future *const *fs, const char *want)
{
    size_t n = strlen(want), count = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(done[i] == (want[i] == 'd'), "entry %zu: done=%d, want %c", i, done[i],
                      want[i]);
        ck_assert(done[i] == cf_future_done(fs[i]) || !done[i]);
        count += done[i];
    }
    ck_assert_uint_eq(n_done, count);
}

/* ---- modes ---- */

START_TEST(test_all_completed_when_all_done)
{
    cf_future *fs[] = {finished_future((void *)1), failed_future(-1), cancelled_future(),
                       finished_future(NULL)};
    bool done[4];
    size_t n_done = 99;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 4, CF_ALL_COMPLETED, 0), 0);
    check_split(done, n_done, fs, "dddd");
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 4, CF_ALL_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "dddd");
    unref_all(fs, 4);
}
END_TEST

START_TEST(test_all_completed_times_out_with_valid_split)
{
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *fs[] = {finished_future(NULL), submit(ex, cf_test_gate_task, &g), cancelled_future(),
                       new_future(), failed_future(-3)};
    bool done[5];
    size_t n_done = 0;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 5, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    check_split(done, n_done, fs, "dpdpd");
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 5, CF_ALL_COMPLETED, 0.05), CF_ETIMEDOUT);
    ck_assert_double_ge(cf_test_monotonic() - t0, 0.045);
    check_split(done, n_done, fs, "dpdpd");
    /* Complete the rest and the condition holds. */
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_set_result(fs[3], NULL, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 5, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    check_split(done, n_done, fs, "ddddd");
    unref_all(fs, 5);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_first_completed)
{
    /* CPython's test_first_completed, with the cancelled future counted as done. */
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *f1 = submit(ex, mul_task, (void *)21);
    cf_future *f2 = submit(ex, cf_test_gate_task, &g);
    ck_assert_int_eq(cf_future_result(NULL, f1, CF_TEST_LONG), 0);
    cf_future *fs[] = {cancelled_future(), f1, f2};
    bool done[3];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "ddp");
    cf_test_event_set(&g.release);
    unref_all(fs, 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_first_completed_woken_by_completion)
{
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *fs[] = {submit(ex, cf_test_gate_task, &g), new_future(), new_future()};
    bool done[3];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, 0), CF_ETIMEDOUT);
    check_split(done, n_done, fs, "ppp");
    /* The pool future completes first; the plain ones stay pending. */
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "dpp");
    ck_assert_int_eq(cf_future_set_exception(fs[2], -1, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "dpd");
    unref_all(fs, 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_first_completed_some_already_completed)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *fs[] = {cancelled_future(), finished_future((void *)42),
                       submit(ex, cf_test_gate_task, &g)};
    bool done[3];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "ddp");
    cf_test_event_set(&g.release);
    unref_all(fs, 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_first_exception)
{
    /* CPython's test_first_exception: returns at the failure, with the slow task pending. */
    cf_executor *ex = cf_test_pool(3);
    cf_test_event fail_now;
    cf_test_event_init(&fail_now);
    cf_test_gate slow;
    cf_test_gate_init(&slow);
    cf_future *fs[] = {submit(ex, mul_task, (void *)21), submit(ex, wait_and_raise_task, &fail_now),
                       submit(ex, cf_test_gate_task, &slow)};
    ck_assert_int_eq(cf_future_result(NULL, fs[0], CF_TEST_LONG), 0);
    bool done[3];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, 0), CF_ETIMEDOUT);
    check_split(done, n_done, fs, "dpp");
    cf_test_event_set(&fail_now);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, CF_FOREVER), 0);
    check_split(done, n_done, fs, "ddp");
    ck_assert_int_eq(cf_future_result(NULL, fs[1], 0), CF_ETASK);
    cf_test_event_set(&slow.release);
    unref_all(fs, 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&fail_now);
    cf_test_gate_destroy(&slow);
}
END_TEST

START_TEST(test_first_exception_some_already_complete)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *fs[] = {finished_future((void *)42), failed_future(-1), cancelled_future(),
                       submit(ex, cf_test_gate_task, &g)};
    bool done[4];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 4, CF_FIRST_EXCEPTION, CF_FOREVER), 0);
    check_split(done, n_done, fs, "dddp");
    cf_test_event_set(&g.release);
    unref_all(fs, 4);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_first_exception_without_failure_is_all_completed)
{
    /* A cancelled future is a completion, not an exception. */
    cf_future *fs[] = {finished_future(NULL), cancelled_future(), new_future()};
    bool done[3];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, 0), CF_ETIMEDOUT);
    check_split(done, n_done, fs, "ddp");
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, 0.02), CF_ETIMEDOUT);
    check_split(done, n_done, fs, "ddp");
    ck_assert_int_eq(cf_future_set_result(fs[2], NULL, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, 0), 0);
    check_split(done, n_done, fs, "ddd");
    unref_all(fs, 3);
}
END_TEST

START_TEST(test_all_completed_with_pool_futures)
{
    /* CPython's test_all_completed, with futures of two pools and plain ones mixed. */
    cf_executor *a = cf_test_pool(2);
    cf_executor *b = cf_test_pool(1);
    cf_future *fs[] = {finished_future(NULL),
                       failed_future(-1),
                       submit(a, mul_task, (void *)1),
                       submit(b, mul_task, (void *)2),
                       submit(a, cf_test_fail_task, (void *)-9),
                       cancelled_future()};
    bool done[6];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 6, CF_ALL_COMPLETED, CF_FOREVER), 0);
    check_split(done, n_done, fs, "dddddd");
    /* Waiting on a failed pool future with FIRST_EXCEPTION returns at once. */
    ck_assert_int_eq(cf_wait(&n_done, done, fs + 4, 1, CF_FIRST_EXCEPTION, 0), 0);
    unref_all(fs, 6);
    ck_assert_int_eq(cf_executor_free(a), 0);
    ck_assert_int_eq(cf_executor_free(b), 0);
}
END_TEST

START_TEST(test_optional_outputs)
{
    cf_future *fs[] = {finished_future(NULL), new_future()};
    ck_assert_int_eq(cf_wait(NULL, NULL, fs, 2, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_wait(NULL, NULL, fs, 2, CF_FIRST_COMPLETED, 0), 0);
    size_t n_done = 0;
    ck_assert_int_eq(cf_wait(&n_done, NULL, fs, 2, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    ck_assert_uint_eq(n_done, 1);
    bool done[2];
    ck_assert_int_eq(cf_wait(NULL, done, fs, 2, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    ck_assert(done[0] && !done[1]);
    unref_all(fs, 2);
}
END_TEST

/* ---- duplicates ---- */

START_TEST(test_duplicates)
{
    /* CPython's test_20369. */
    cf_executor *ex = cf_test_pool(1);
    cf_future *f = submit(ex, mul_task, (void *)1);
    cf_future *fs[] = {f, f};
    bool done[2];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, CF_ALL_COMPLETED, CF_FOREVER), 0);
    ck_assert(done[0] && done[1]);
    ck_assert_uint_eq(n_done, 2);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct delayed {
    cf_future *f;
    pid_t waiter;
    int how; /* 0 result, 1 exception, 2 cancel */
} delayed;

/* Completes a future once the waiting thread is asleep. */
static void *delayed_main(void *arg)
{
    delayed *d = arg;
    cf_test_wait_asleep(d->waiter, CF_TEST_LONG);
    if (d->how == 0)
        ck_assert_int_eq(cf_future_set_result(d->f, NULL, NULL), 0);
    else if (d->how == 1)
        ck_assert_int_eq(cf_future_set_exception(d->f, -1, "late"), 0);
    else
        ck_assert(cf_future_cancel(d->f));
    return NULL;
}

static void start_delayed(delayed *d, pthread_t *t, cf_future *f, int how)
{
    *d = (delayed){.f = f, .waiter = cf_test_gettid(), .how = how};
    ck_assert_int_eq(pthread_create(t, NULL, delayed_main, d), 0);
}

START_TEST(test_duplicates_pending)
{
    cf_future *p = new_future();
    cf_future *q = new_future();
    cf_future *fs[] = {p, q, p, p};
    bool done[4];
    size_t n_done;
    delayed d;
    pthread_t t;
    start_delayed(&d, &t, p, 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 4, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    pthread_join(t, NULL);
    check_split(done, n_done, fs, "dpdd");
    start_delayed(&d, &t, q, 1);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 4, CF_ALL_COMPLETED, CF_FOREVER), 0);
    pthread_join(t, NULL);
    check_split(done, n_done, fs, "dddd");
    cf_future_unref(p);
    cf_future_unref(q);
}
END_TEST

/* ---- wake-ups ---- */

START_TEST(test_woken_by_other_thread_each_mode)
{
    const cf_return_when modes[] = {CF_ALL_COMPLETED, CF_FIRST_COMPLETED, CF_FIRST_EXCEPTION};
    for (int how = 0; how < 3; how++) {
        for (size_t m = 0; m < 3; m++) {
            cf_future *f = new_future();
            cf_future *fs[] = {f, f};
            bool done[2];
            size_t n_done;
            delayed d;
            pthread_t t;
            start_delayed(&d, &t, f, how);
            ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, modes[m], CF_FOREVER), 0);
            pthread_join(t, NULL);
            check_split(done, n_done, fs, "dd");
            cf_future_unref(f);
        }
    }
}
END_TEST

START_TEST(test_cancel_wakes_all_completed)
{
    /* A cancel from another thread completes the wait immediately (divergence from CPython,
     * where the future would stay in not_done until its executor acknowledged it). */
    cf_future *fs[] = {new_future(), new_future()};
    ck_assert_int_eq(cf_future_set_result(fs[1], NULL, NULL), 0);
    delayed d;
    pthread_t t;
    start_delayed(&d, &t, fs[0], 2);
    bool done[2];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    pthread_join(t, NULL);
    check_split(done, n_done, fs, "dd");
    ck_assert(cf_future_cancelled(fs[0]));
    unref_all(fs, 2);
}
END_TEST

START_TEST(test_first_exception_woken_by_failure_only)
{
    /* Successes from another thread do not end a FIRST_EXCEPTION wait; the failure does. */
    enum { N = 5 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    for (int i = 0; i < N - 2; i++)
        ck_assert_int_eq(cf_future_set_result(fs[i], NULL, NULL), 0);
    delayed d;
    pthread_t t;
    start_delayed(&d, &t, fs[N - 2], 1);
    bool done[N];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_FIRST_EXCEPTION, CF_FOREVER), 0);
    pthread_join(t, NULL);
    check_split(done, n_done, fs, "ddddp");
    unref_all(fs, N);
}
END_TEST

START_TEST(test_many_futures)
{
    /* More futures than fit in the on-stack hook array. */
    enum { N = 100 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = new_future();
    delayed d;
    pthread_t t;
    start_delayed(&d, &t, fs[57], 0);
    bool done[N];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_FIRST_COMPLETED, CF_FOREVER), 0);
    pthread_join(t, NULL);
    ck_assert_uint_eq(n_done, 1);
    ck_assert(done[57]);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_ALL_COMPLETED, 0.01), CF_ETIMEDOUT);
    ck_assert_uint_eq(n_done, 1);
    for (int i = 0; i < N; i++)
        if (i != 57)
            ck_assert_int_eq(cf_future_set_exception(fs[i], -1, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_ALL_COMPLETED, 0), 0);
    ck_assert_uint_eq(n_done, N);
    unref_all(fs, N);
}
END_TEST

START_TEST(test_timeout_zero_polls)
{
    cf_future *fs[] = {new_future(), new_future()};
    bool done[2] = {true, true};
    size_t n_done = 9;
    for (int m = 0; m < 3; m++) {
        ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, (cf_return_when)m, 0), CF_ETIMEDOUT);
        check_split(done, n_done, fs, "pp");
    }
    ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, CF_FIRST_COMPLETED, 0), 0);
    check_split(done, n_done, fs, "dp");
    unref_all(fs, 2);
}
END_TEST

START_TEST(test_pending_calls_race)
{
    /* CPython's test_pending_calls_race (issue 14406): many completions racing one waiter. */
    enum { N = 100 };
    cf_executor *ex = cf_test_pool(4);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, cf_test_gate_task, &g);
    cf_test_event_set(&g.release);
    bool done[N];
    size_t n_done;
    ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_ALL_COMPLETED, CF_FOREVER), 0);
    ck_assert_uint_eq(n_done, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
    unref_all(fs, N);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* ---- concurrency ---- */

enum { SHARED = 32, WAITERS = 8 };

typedef struct shared_set {
    cf_future *fs[SHARED];
    cf_test_latch ready;
} shared_set;

typedef struct waiter_arg {
    shared_set *set;
    int first;
    int count;
    cf_return_when when;
    int rc;
    bool done[SHARED];
    size_t n_done;
} waiter_arg;

static void *waiter_main(void *arg)
{
    waiter_arg *w = arg;
    cf_test_latch_add(&w->set->ready);
    w->rc = cf_wait(&w->n_done, w->done, w->set->fs + w->first, (size_t)w->count, w->when,
                    CF_TEST_LONG);
    return NULL;
}

START_TEST(test_concurrent_waiters_on_overlapping_sets)
{
    for (int round = 0; round < 20; round++) {
        shared_set set;
        cf_test_latch_init(&set.ready);
        for (int i = 0; i < SHARED; i++)
            set.fs[i] = new_future();
        waiter_arg w[WAITERS];
        pthread_t t[WAITERS];
        for (int i = 0; i < WAITERS; i++) {
            w[i] = (waiter_arg){.set = &set,
                                .first = i * 3,
                                .count = SHARED - i * 3,
                                .when = (cf_return_when)(i % 3),
                                .rc = 1};
            ck_assert_int_eq(pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
        }
        ck_assert(cf_test_latch_wait(&set.ready, WAITERS, CF_TEST_LONG));
        /* Complete from the last one back, mixing outcomes; the waiters race the completions. */
        for (int i = SHARED - 1; i >= 0; i--) {
            if (i % 5 == 0)
                ck_assert(cf_future_cancel(set.fs[i]));
            else if (i % 7 == 0 && i != SHARED - 1)
                ck_assert_int_eq(cf_future_set_exception(set.fs[i], -1, NULL), 0);
            else
                ck_assert_int_eq(cf_future_set_result(set.fs[i], NULL, NULL), 0);
        }
        for (int i = 0; i < WAITERS; i++) {
            pthread_join(t[i], NULL);
            ck_assert_int_eq(w[i].rc, 0);
            ck_assert_uint_ge(w[i].n_done, 1);
            size_t count = 0;
            for (int k = 0; k < w[i].count; k++)
                count += w[i].done[k];
            ck_assert_uint_eq(count, w[i].n_done);
            if (w[i].when == CF_ALL_COMPLETED)
                ck_assert_uint_eq(w[i].n_done, (size_t)w[i].count);
        }
        unref_all(set.fs, SHARED);
        cf_test_latch_destroy(&set.ready);
    }
}
END_TEST

typedef struct racing_completer {
    cf_future **fs;
    int n;
    pthread_barrier_t *barrier;
} racing_completer;

static void *racing_completer_main(void *arg)
{
    racing_completer *c = arg;
    pthread_barrier_wait(c->barrier);
    for (int i = 0; i < c->n; i++)
        cf_future_set_result(c->fs[i], NULL, NULL);
    return NULL;
}

START_TEST(test_timeouts_racing_completions)
{
    /* Waits that give up while completions fire must unhook cleanly (ASan/TSan check this). */
    enum { N = 8, ROUNDS = 300 };
    for (int round = 0; round < ROUNDS; round++) {
        cf_future *fs[N];
        for (int i = 0; i < N; i++)
            fs[i] = new_future();
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        racing_completer c = {.fs = fs, .n = N, .barrier = &barrier};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, racing_completer_main, &c), 0);
        pthread_barrier_wait(&barrier);
        bool done[N];
        size_t n_done;
        int rc = cf_wait(&n_done, done, fs, N, (cf_return_when)(round % 3), 1e-5);
        ck_assert(rc == 0 || rc == CF_ETIMEDOUT);
        size_t count = 0;
        for (int i = 0; i < N; i++)
            count += done[i];
        ck_assert_uint_eq(count, n_done);
        pthread_join(t, NULL);
        pthread_barrier_destroy(&barrier);
        ck_assert_int_eq(cf_wait(&n_done, done, fs, N, CF_ALL_COMPLETED, 0), 0);
        unref_all(fs, N);
    }
}
END_TEST

static void check_rc_agrees_with_split(int rc, size_t n_done, size_t n, cf_return_when when)
{
    /* No failures in these rounds: FIRST_EXCEPTION behaves as ALL_COMPLETED. */
    bool holds = when == CF_FIRST_COMPLETED ? n_done >= 1 : n_done == n;
    ck_assert_msg((rc == 0) == holds, "rc %s but %zu of %zu reported done", cf_err_name(rc), n_done,
                  n);
}

START_TEST(test_return_code_agrees_with_split)
{
    /* The return code and done[] describe one snapshot: a completion racing the end of the
     * call must not give 0 together with a split in which the condition does not hold. */
    enum { N = 2, ROUNDS = 3000 };
    for (int round = 0; round < ROUNDS; round++) {
        cf_return_when when = (cf_return_when)(round % 3);
        cf_future *fs[N];
        for (int i = 0; i < N; i++)
            fs[i] = new_future();
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        racing_completer c = {.fs = fs, .n = N, .barrier = &barrier};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, racing_completer_main, &c), 0);
        pthread_barrier_wait(&barrier);
        bool done[N];
        size_t n_done;
        int rc;
        do {
            rc = cf_wait(&n_done, done, fs, N, when, round % 2 ? 0 : 1e-6);
            ck_assert(rc == 0 || rc == CF_ETIMEDOUT);
            check_rc_agrees_with_split(rc, n_done, N, when);
        } while (rc != 0);
        pthread_join(t, NULL);
        pthread_barrier_destroy(&barrier);
        unref_all(fs, N);
    }
}
END_TEST

/* ---- arguments ---- */

/* Python's wait([]) returns at once with nothing done: a caller's list is often empty. */
START_TEST(test_no_futures)
{
    static const cf_return_when modes[] = {CF_ALL_COMPLETED, CF_FIRST_COMPLETED,
                                           CF_FIRST_EXCEPTION};
    for (size_t m = 0; m < 3; m++) {
        size_t n_done = 77;
        ck_assert_int_eq(cf_wait(&n_done, NULL, NULL, 0, modes[m], CF_FOREVER), 0);
        ck_assert_uint_eq(n_done, 0);
        cf_future *unused = NULL;
        bool done = true;
        n_done = 77;
        ck_assert_int_eq(cf_wait(&n_done, &done, &unused, 0, modes[m], 0), 0);
        ck_assert_uint_eq(n_done, 0);
        ck_assert(done); /* no entry is written */
        ck_assert_int_eq(cf_wait(NULL, NULL, NULL, 0, modes[m], CF_FOREVER), 0);
    }
    /* The other arguments are still checked. */
    ck_assert_int_eq(cf_wait(NULL, NULL, NULL, 0, (cf_return_when)3, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(NULL, NULL, NULL, 0, CF_ALL_COMPLETED, NAN), CF_EINVAL);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    cf_future *f = new_future();
    cf_future *fs[] = {f, NULL};
    bool done[2];
    size_t n_done = 77;
    ck_assert_int_eq(cf_wait(&n_done, done, NULL, 1, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 2, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs + 1, 1, CF_FIRST_COMPLETED, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, (cf_return_when)3, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, (cf_return_when)-1, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, CF_ALL_COMPLETED, NAN), CF_EINVAL);
    /* Validated even when the condition already holds (CPython checks only when blocking). */
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, (cf_return_when)7, 0), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, CF_FIRST_COMPLETED, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_wait(&n_done, done, fs, 1, CF_ALL_COMPLETED, -1.0), 0);
    cf_future_unref(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("wait");
    TCase *tc = cf_test_tcase("modes");
    tcase_add_test(tc, test_all_completed_when_all_done);
    tcase_add_test(tc, test_all_completed_times_out_with_valid_split);
    tcase_add_test(tc, test_first_completed);
    tcase_add_test(tc, test_first_completed_woken_by_completion);
    tcase_add_test(tc, test_first_completed_some_already_completed);
    tcase_add_test(tc, test_first_exception);
    tcase_add_test(tc, test_first_exception_some_already_complete);
    tcase_add_test(tc, test_first_exception_without_failure_is_all_completed);
    tcase_add_test(tc, test_all_completed_with_pool_futures);
    tcase_add_test(tc, test_optional_outputs);
    tcase_add_test(tc, test_duplicates);
    tcase_add_test(tc, test_duplicates_pending);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("wakeups");
    tcase_add_test(tc, test_woken_by_other_thread_each_mode);
    tcase_add_test(tc, test_cancel_wakes_all_completed);
    tcase_add_test(tc, test_first_exception_woken_by_failure_only);
    tcase_add_test(tc, test_many_futures);
    tcase_add_test(tc, test_timeout_zero_polls);
    tcase_add_test(tc, test_pending_calls_race);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("concurrency");
    tcase_add_test(tc, test_concurrent_waiters_on_overlapping_sets);
    tcase_add_test(tc, test_timeouts_racing_completions);
    tcase_add_test(tc, test_return_code_agrees_with_split);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("arguments");
    tcase_add_test(tc, test_no_futures);
    tcase_add_test(tc, test_invalid_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
