/* Futures: every state transition and predicate, outcomes, waiting with timeouts,
 * done-callbacks, reference counting and the result destructor, NULL handling.
 * Ported from the behaviour of CPython's test_concurrent_futures/test_future.py, adapted to
 * cfutures' documented divergences (negative timeout waits forever, NaN is CF_EINVAL). */
#include <math.h>

#include "cf_test_sync.h"

static cf_future *new_future(void)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_future_new(&f), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void assert_state(cf_future *f, cf_future_state state)
{
    ck_assert_int_eq(cf_future_get_state(f), state);
    ck_assert(cf_future_running(f) == (state == CF_FUTURE_RUNNING));
    ck_assert(cf_future_cancelled(f) == (state == CF_FUTURE_CANCELLED));
    ck_assert(cf_future_done(f) == (state == CF_FUTURE_FINISHED || state == CF_FUTURE_CANCELLED));
}

/* ---- callbacks recorder ---- */

enum { LOG_MAX = 32 };

typedef struct cb_log {
    pthread_mutex_t mu;
    int n;
    int ids[LOG_MAX];
    pthread_t threads[LOG_MAX];
    cf_future_state states[LOG_MAX];
} cb_log;

typedef struct cb_entry {
    cb_log *log;
    int id;
} cb_entry;

static void log_init(cb_log *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->mu, NULL);
}

static int log_count(cb_log *log)
{
    pthread_mutex_lock(&log->mu);
    int n = log->n;
    pthread_mutex_unlock(&log->mu);
    return n;
}

static void record_cb(cf_future *f, void *data)
{
    cb_entry *e = data;
    cb_log *log = e->log;
    pthread_mutex_lock(&log->mu);
    ck_assert_int_lt(log->n, LOG_MAX);
    log->ids[log->n] = e->id;
    log->threads[log->n] = pthread_self();
    log->states[log->n] = cf_future_get_state(f);
    log->n++;
    pthread_mutex_unlock(&log->mu);
}

static void count_cb(cf_future *f, void *data)
{
    (void)f;
    atomic_fetch_add((atomic_int *)data, 1);
}

/* ---- states ---- */

START_TEST(test_new_future_is_pending)
{
    cf_future *f = new_future();
    assert_state(f, CF_FUTURE_PENDING);
    void *value = (void *)1;
    ck_assert_int_eq(cf_future_result(&value, f, 0), CF_ETIMEDOUT);
    int code = 1;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0), CF_ETIMEDOUT);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_running_then_finish)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 1);
    assert_state(f, CF_FUTURE_RUNNING);
    ck_assert_int_eq(cf_future_result(NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_set_result(f, (void *)42, NULL), 0);
    assert_state(f, CF_FUTURE_FINISHED);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, (void *)42);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_running_twice_is_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 1);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), CF_EINVALSTATE);
    assert_state(f, CF_FUTURE_RUNNING);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_running_after_finish_is_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), CF_EINVALSTATE);
    cf_future *g = new_future();
    ck_assert_int_eq(cf_future_set_exception(g, CF_EPERM, "no"), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(g), CF_EINVALSTATE);
    assert_state(f, CF_FUTURE_FINISHED);
    assert_state(g, CF_FUTURE_FINISHED);
    cf_future_unref(f);
    cf_future_unref(g);
}
END_TEST

START_TEST(test_cancel_pending)
{
    cf_future *f = new_future();
    ck_assert(cf_future_cancel(f));
    assert_state(f, CF_FUTURE_CANCELLED);
    void *value = (void *)1;
    ck_assert_int_eq(cf_future_result(&value, f, 0), CF_ECANCELLED);
    ck_assert_ptr_null(value);
    ck_assert_int_eq(cf_future_result(&value, f, CF_FOREVER), CF_ECANCELLED);
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, CF_FOREVER), CF_ECANCELLED);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0), CF_ECANCELLED);
    /* A cancelled future is final. */
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_exception(f, CF_EPERM, NULL), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_result_bytes(f, "x", 1), CF_EINVALSTATE);
    assert_state(f, CF_FUTURE_CANCELLED);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_cancel_twice_runs_callbacks_once)
{
    cf_future *f = new_future();
    atomic_int calls = 0;
    ck_assert_int_eq(cf_future_add_done_callback(f, count_cb, &calls), 0);
    ck_assert(cf_future_cancel(f));
    ck_assert(cf_future_cancel(f));
    /* The executor-side acknowledgement does not notify again. */
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 0);
    ck_assert(cf_future_cancel(f));
    ck_assert_int_eq(atomic_load(&calls), 1);
    assert_state(f, CF_FUTURE_CANCELLED);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_cancel_running_fails)
{
    cf_future *f = new_future();
    atomic_int calls = 0;
    ck_assert_int_eq(cf_future_add_done_callback(f, count_cb, &calls), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 1);
    ck_assert(!cf_future_cancel(f));
    assert_state(f, CF_FUTURE_RUNNING);
    ck_assert_int_eq(atomic_load(&calls), 0);
    ck_assert_int_eq(cf_future_set_result(f, (void *)7, NULL), 0);
    ck_assert_int_eq(atomic_load(&calls), 1);
    ck_assert(!cf_future_cancel(f));
    cf_future_unref(f);
}
END_TEST

START_TEST(test_cancel_finished_fails)
{
    cf_future *ok = new_future();
    cf_future *failed = new_future();
    cf_future *bytes = new_future();
    ck_assert_int_eq(cf_future_set_result(ok, (void *)1, NULL), 0);
    ck_assert_int_eq(cf_future_set_exception(failed, CF_EPERM, "denied"), 0);
    ck_assert_int_eq(cf_future_set_result_bytes(bytes, "ab", 2), 0);
    ck_assert(!cf_future_cancel(ok));
    ck_assert(!cf_future_cancel(failed));
    ck_assert(!cf_future_cancel(bytes));
    assert_state(ok, CF_FUTURE_FINISHED);
    assert_state(failed, CF_FUTURE_FINISHED);
    assert_state(bytes, CF_FUTURE_FINISHED);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, ok, 0), 0);
    ck_assert_ptr_eq(value, (void *)1);
    ck_assert_int_eq(cf_future_result(&value, failed, 0), CF_ETASK);
    cf_future_unref(ok);
    cf_future_unref(failed);
    cf_future_unref(bytes);
}
END_TEST

/* ---- outcomes ---- */

START_TEST(test_set_result_from_pending)
{
    cf_future *f = new_future();
    int x = 5;
    ck_assert_int_eq(cf_future_set_result(f, &x, NULL), 0);
    assert_state(f, CF_FUTURE_FINISHED);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, &x);
    int code = 99;
    const char *message = "unset";
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, 0);
    ck_assert_ptr_null(message);
    /* NULL is a valid result. */
    cf_future *g = new_future();
    ck_assert_int_eq(cf_future_set_result(g, NULL, NULL), 0);
    value = &x;
    ck_assert_int_eq(cf_future_result(&value, g, CF_FOREVER), 0);
    ck_assert_ptr_null(value);
    cf_future_unref(f);
    cf_future_unref(g);
}
END_TEST

START_TEST(test_double_set_result_keeps_first)
{
    atomic_int first = 0, second = 0;
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result(f, &first, cf_test_count_dtor), 0);
    ck_assert_int_eq(cf_future_set_result(f, &second, cf_test_count_dtor), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_exception(f, CF_EPERM, "late"), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_result_bytes(f, "late", 4), CF_EINVALSTATE);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, &first);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&first), 1);
    /* A refused value stays the caller's: its destructor is never called. */
    ck_assert_int_eq(atomic_load(&second), 0);
}
END_TEST

START_TEST(test_set_exception_keeps_code_and_message)
{
    cf_future *f = new_future();
    char buf[32] = "disk on fire";
    ck_assert_int_eq(cf_future_set_exception(f, -5, buf), 0);
    /* The message was copied. */
    strcpy(buf, "overwritten");
    assert_state(f, CF_FUTURE_FINISHED);
    void *value = (void *)1;
    ck_assert_int_eq(cf_future_result(&value, f, 0), CF_ETASK);
    ck_assert_ptr_null(value);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, -5);
    ck_assert_str_eq(message, "disk on fire");
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0), CF_ETASK);
    /* Any non-zero code is kept verbatim, even a positive one or a cfutures code. */
    cf_future *g = new_future();
    ck_assert_int_eq(cf_future_set_exception(g, 1234, NULL), 0);
    ck_assert_int_eq(cf_future_exception(&code, &message, g, 0), 0);
    ck_assert_int_eq(code, 1234);
    ck_assert_ptr_null(message);
    cf_future *h = new_future();
    ck_assert_int_eq(cf_future_set_exception(h, CF_ETIMEDOUT, "inner timeout"), 0);
    ck_assert_int_eq(cf_future_result(NULL, h, 0), CF_ETASK);
    ck_assert_int_eq(cf_future_exception(&code, NULL, h, 0), 0);
    ck_assert_int_eq(code, CF_ETIMEDOUT);
    cf_future_unref(f);
    cf_future_unref(g);
    cf_future_unref(h);
}
END_TEST

START_TEST(test_double_set_exception_keeps_first)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_exception(f, CF_EPERM, "first"), 0);
    ck_assert_int_eq(cf_future_set_exception(f, CF_EAGAIN, "second"), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_result(f, (void *)1, NULL), CF_EINVALSTATE);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, CF_EPERM);
    ck_assert_str_eq(message, "first");
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_exception_code_zero_is_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_exception(f, 0, "no code"), CF_EINVAL);
    assert_state(f, CF_FUTURE_PENDING);
    ck_assert_int_eq(cf_future_set_exception(f, 0, NULL), CF_EINVAL);
    assert_state(f, CF_FUTURE_PENDING);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_exception(f, 0, NULL), CF_EINVAL);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_result_bytes)
{
    cf_future *f = new_future();
    char buf[] = "hello\0world";
    ck_assert_int_eq(cf_future_set_result_bytes(f, buf, sizeof(buf)), 0);
    memset(buf, 'x', sizeof(buf)); /* copied */
    const void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_uint_eq(len, sizeof(buf));
    ck_assert_mem_eq(data, "hello\0world", sizeof(buf));
    ck_assert_int_eq(cf_future_result_bytes(NULL, &len, f, CF_FOREVER), 0);
    ck_assert_int_eq(cf_future_result_bytes(&data, NULL, f, CF_FOREVER), 0);
    int code = 1;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, 0), 0);
    ck_assert_int_eq(code, 0);
    /* Double set keeps the first bytes. */
    ck_assert_int_eq(cf_future_set_result_bytes(f, "other", 5), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_uint_eq(len, sizeof(buf));
    ck_assert_mem_eq(data, "hello\0world", sizeof(buf));
    cf_future_unref(f);
}
END_TEST

START_TEST(test_set_result_bytes_empty)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result_bytes(f, NULL, 0), 0);
    size_t len = 99;
    ck_assert_int_eq(cf_future_result_bytes(NULL, &len, f, 0), 0);
    ck_assert_uint_eq(len, 0);
    cf_future *g = new_future();
    ck_assert_int_eq(cf_future_set_result_bytes(g, "abc", 0), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, &len, g, 0), 0);
    ck_assert_uint_eq(len, 0);
    cf_future_unref(f);
    cf_future_unref(g);
}
END_TEST

START_TEST(test_set_result_bytes_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result_bytes(f, NULL, 3), CF_EINVAL);
    assert_state(f, CF_FUTURE_PENDING);
    ck_assert_int_eq(cf_future_set_result_bytes(NULL, "abc", 3), CF_EINVAL);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_result_bytes_of_pointer_result_is_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_result(f, (void *)"abc", NULL), 0);
    const void *data = (void *)1;
    size_t len = 1;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), CF_EINVAL);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_optional_out_parameters)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_set_exception(f, CF_EPERM, "m"), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, 0), CF_ETASK);
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, 0), 0);
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(NULL, &message, f, 0), 0);
    ck_assert_str_eq(message, "m");
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, 0), 0);
    ck_assert_int_eq(code, CF_EPERM);
    cf_future_unref(f);
}
END_TEST

/* Several threads race to complete one future: exactly one wins, the callbacks run once, and
 * the outcome is the winner's. */
typedef struct race {
    cf_future *f;
    pthread_barrier_t barrier;
    atomic_int winners;
    atomic_int winner_kind;
    atomic_int value_dtor; /* destructor calls for the pointer values */
} race;

typedef struct racer {
    race *r;
    int kind;
} racer;

static void *racer_main(void *arg)
{
    racer *me = arg;
    race *r = me->r;
    pthread_barrier_wait(&r->barrier);
    int rc;
    bool won;
    switch (me->kind) {
    case 0:
        rc = cf_future_set_result(r->f, &r->value_dtor, cf_test_count_dtor);
        ck_assert(rc == 0 || rc == CF_EINVALSTATE);
        won = rc == 0;
        break;
    case 1:
        rc = cf_future_set_exception(r->f, CF_EPERM, "racer");
        ck_assert(rc == 0 || rc == CF_EINVALSTATE);
        won = rc == 0;
        break;
    case 2:
        rc = cf_future_set_result_bytes(r->f, "racer", 5);
        ck_assert(rc == 0 || rc == CF_EINVALSTATE);
        won = rc == 0;
        break;
    default:
        won = cf_future_cancel(r->f);
        break;
    }
    if (won) {
        atomic_fetch_add(&r->winners, 1);
        atomic_store(&r->winner_kind, me->kind);
    }
    return NULL;
}

START_TEST(test_concurrent_completion_exactly_one_wins)
{
    enum { KINDS = 4, ROUNDS = 200 };
    for (int round = 0; round < ROUNDS; round++) {
        race r = {.f = new_future()};
        atomic_init(&r.winners, 0);
        atomic_init(&r.value_dtor, 0);
        atomic_int calls = 0;
        ck_assert_int_eq(cf_future_add_done_callback(r.f, count_cb, &calls), 0);
        pthread_barrier_init(&r.barrier, NULL, KINDS);
        pthread_t threads[KINDS];
        racer racers[KINDS];
        for (int i = 0; i < KINDS; i++) {
            racers[i] = (racer){.r = &r, .kind = (i + round) % KINDS};
            ck_assert_int_eq(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
        }
        for (int i = 0; i < KINDS; i++)
            pthread_join(threads[i], NULL);
        pthread_barrier_destroy(&r.barrier);
        ck_assert_int_eq(atomic_load(&r.winners), 1);
        ck_assert_int_eq(atomic_load(&calls), 1);
        int kind = atomic_load(&r.winner_kind);
        void *value = NULL;
        int rc = cf_future_result(&value, r.f, 0);
        ck_assert_int_eq(rc, kind == 0 ? 0 : kind == 1 ? CF_ETASK : kind == 2 ? 0 : CF_ECANCELLED);
        if (kind == 0)
            ck_assert_ptr_eq(value, &r.value_dtor);
        if (kind == 2)
            ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, r.f, 0), 0);
        cf_future_unref(r.f);
        ck_assert_int_eq(atomic_load(&r.value_dtor), kind == 0 ? 1 : 0);
    }
}
END_TEST

typedef struct run_cancel_race {
    cf_future *f;
    pthread_barrier_t barrier;
    int run_rc;
} run_cancel_race;

static void *set_running_main(void *arg)
{
    run_cancel_race *r = arg;
    pthread_barrier_wait(&r->barrier);
    r->run_rc = cf_future_set_running_or_notify_cancel(r->f);
    return NULL;
}

START_TEST(test_set_running_races_cancel)
{
    /* The executor starting a task and a user cancelling it: exactly one wins. */
    for (int round = 0; round < 500; round++) {
        run_cancel_race r = {.f = new_future(), .run_rc = 99};
        atomic_int calls = 0;
        ck_assert_int_eq(cf_future_add_done_callback(r.f, count_cb, &calls), 0);
        pthread_barrier_init(&r.barrier, NULL, 2);
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, set_running_main, &r), 0);
        pthread_barrier_wait(&r.barrier);
        bool cancelled = cf_future_cancel(r.f);
        pthread_join(t, NULL);
        pthread_barrier_destroy(&r.barrier);
        if (cancelled) {
            ck_assert_int_eq(r.run_rc, 0);
            assert_state(r.f, CF_FUTURE_CANCELLED);
            ck_assert_int_eq(atomic_load(&calls), 1);
        } else {
            ck_assert_int_eq(r.run_rc, 1);
            assert_state(r.f, CF_FUTURE_RUNNING);
            ck_assert_int_eq(atomic_load(&calls), 0);
            ck_assert_int_eq(cf_future_set_result(r.f, NULL, NULL), 0);
            ck_assert_int_eq(atomic_load(&calls), 1);
        }
        cf_future_unref(r.f);
    }
}
END_TEST

/* ---- waiting ---- */

START_TEST(test_zero_timeout_polls)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_result(NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 1);
    ck_assert_int_eq(cf_future_result(NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_set_result(f, (void *)3, NULL), 0);
    /* A result that is already available is returned even with a zero timeout. */
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, (void *)3);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_short_timeout_times_out)
{
    cf_future *f = new_future();
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_future_result(NULL, f, 0.05), CF_ETIMEDOUT);
    double elapsed = cf_test_monotonic() - t0;
    /* It waited (at least the timeout, within clock granularity) and did not hang. */
    ck_assert_double_ge(elapsed, 0.045);
    ck_assert_double_lt(elapsed, CF_TEST_LONG);
    t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, 0.05), CF_ETIMEDOUT);
    ck_assert_double_ge(cf_test_monotonic() - t0, 0.045);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, 0.02), CF_ETIMEDOUT);
    /* A tiny timeout behaves as a short wait, not as forever. */
    ck_assert_int_eq(cf_future_result(NULL, f, 1e-9), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_result(NULL, f, 1e-300), CF_ETIMEDOUT);
    assert_state(f, CF_FUTURE_PENDING);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_nan_timeout_is_invalid)
{
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_result(NULL, f, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    /* Rejected even when the outcome is available. */
    ck_assert_int_eq(cf_future_result(NULL, f, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_future_exception(NULL, NULL, f, -NAN), CF_EINVAL);
    cf_future_unref(f);
}
END_TEST

/* A helper that completes a future once a given thread is asleep waiting on it. */
typedef struct completer {
    cf_future *f;
    pid_t waiter_tid;
    int how; /* 0 result, 1 exception, 2 cancel, 3 bytes */
    cf_test_event go;
} completer;

static void *completer_main(void *arg)
{
    completer *c = arg;
    ck_assert(cf_test_event_wait(&c->go, CF_TEST_LONG));
    cf_test_wait_asleep(c->waiter_tid, CF_TEST_LONG);
    switch (c->how) {
    case 0:
        ck_assert_int_eq(cf_future_set_result(c->f, (void *)77, NULL), 0);
        break;
    case 1:
        ck_assert_int_eq(cf_future_set_exception(c->f, CF_EPERM, "late failure"), 0);
        break;
    case 2:
        ck_assert(cf_future_cancel(c->f));
        break;
    default:
        ck_assert_int_eq(cf_future_set_result_bytes(c->f, "late", 4), 0);
        break;
    }
    return NULL;
}

static void start_completer(completer *c, pthread_t *t, cf_future *f, int how)
{
    c->f = f;
    c->how = how;
    c->waiter_tid = cf_test_gettid();
    cf_test_event_init(&c->go);
    ck_assert_int_eq(pthread_create(t, NULL, completer_main, c), 0);
    cf_test_event_set(&c->go);
}

static void join_completer(completer *c, pthread_t t)
{
    pthread_join(t, NULL);
    cf_test_event_destroy(&c->go);
}

START_TEST(test_infinite_wait_woken_by_other_thread)
{
    const double forever[] = {CF_FOREVER, -0.5, -1e300, -INFINITY, INFINITY};
    for (size_t i = 0; i < sizeof(forever) / sizeof(forever[0]); i++) {
        cf_future *f = new_future();
        completer c;
        pthread_t t;
        start_completer(&c, &t, f, 0);
        void *value = NULL;
        ck_assert_int_eq(cf_future_result(&value, f, forever[i]), 0);
        ck_assert_ptr_eq(value, (void *)77);
        join_completer(&c, t);
        cf_future_unref(f);
    }
}
END_TEST

START_TEST(test_long_timeout_woken_early)
{
    cf_future *f = new_future();
    completer c;
    pthread_t t;
    start_completer(&c, &t, f, 0);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, CF_TEST_LONG), 0);
    ck_assert_ptr_eq(value, (void *)77);
    join_completer(&c, t);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_wait_woken_by_exception)
{
    cf_future *f = new_future();
    completer c;
    pthread_t t;
    start_completer(&c, &t, f, 1);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, CF_FOREVER), 0);
    ck_assert_int_eq(code, CF_EPERM);
    ck_assert_str_eq(message, "late failure");
    ck_assert_int_eq(cf_future_result(NULL, f, 0), CF_ETASK);
    join_completer(&c, t);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_wait_woken_by_cancel)
{
    cf_future *f = new_future();
    completer c;
    pthread_t t;
    start_completer(&c, &t, f, 2);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_FOREVER), CF_ECANCELLED);
    join_completer(&c, t);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_wait_bytes_woken)
{
    cf_future *f = new_future();
    completer c;
    pthread_t t;
    start_completer(&c, &t, f, 3);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_FOREVER), 0);
    ck_assert_uint_eq(len, 4);
    ck_assert_mem_eq(data, "late", 4);
    join_completer(&c, t);
    cf_future_unref(f);
}
END_TEST

/* Many threads wait on one future in different ways; one completion wakes them all. */
typedef struct multi_waiter {
    cf_future *f;
    int kind;
    int rc;
    void *value;
    pid_t tid;
    cf_test_latch *ready;
} multi_waiter;

static void *multi_waiter_main(void *arg)
{
    multi_waiter *w = arg;
    w->tid = cf_test_gettid();
    cf_test_latch_add(w->ready);
    if (w->kind == 0)
        w->rc = cf_future_result(&w->value, w->f, CF_FOREVER);
    else if (w->kind == 1)
        w->rc = cf_future_result(&w->value, w->f, CF_TEST_LONG);
    else
        w->rc = cf_future_exception(NULL, NULL, w->f, CF_FOREVER);
    return NULL;
}

START_TEST(test_many_waiters_all_woken)
{
    enum { N = 12 };
    cf_future *f = new_future();
    cf_test_latch ready;
    cf_test_latch_init(&ready);
    multi_waiter w[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        w[i] = (multi_waiter){.f = f, .kind = i % 3, .ready = &ready, .rc = 1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, multi_waiter_main, &w[i]), 0);
    }
    ck_assert(cf_test_latch_wait(&ready, N, CF_TEST_LONG));
    for (int i = 0; i < N; i++)
        cf_test_wait_asleep(w[i].tid, CF_TEST_LONG);
    ck_assert_int_eq(cf_future_set_result(f, (void *)9, NULL), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].rc, 0);
        if (w[i].kind != 2)
            ck_assert_ptr_eq(w[i].value, (void *)9);
    }
    cf_test_latch_destroy(&ready);
    cf_future_unref(f);
}
END_TEST

/* ---- done-callbacks ---- */

typedef struct cb_thread_arg {
    cf_future *f;
    pthread_t self;
} cb_thread_arg;

static void *complete_in_thread(void *arg)
{
    cb_thread_arg *a = arg;
    a->self = pthread_self();
    ck_assert_int_eq(cf_future_set_result(a->f, (void *)5, NULL), 0);
    return NULL;
}

START_TEST(test_callbacks_run_in_order_in_completing_thread)
{
    cf_future *f = new_future();
    cb_log log;
    log_init(&log);
    cb_entry e[5];
    for (int i = 0; i < 5; i++) {
        e[i] = (cb_entry){.log = &log, .id = i};
        ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &e[i]), 0);
    }
    ck_assert_int_eq(log_count(&log), 0);
    cb_thread_arg a = {.f = f};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, complete_in_thread, &a), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(log.n, 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(log.ids[i], i);
        ck_assert(pthread_equal(log.threads[i], a.self));
        /* The state has changed before callbacks run. */
        ck_assert_int_eq(log.states[i], CF_FUTURE_FINISHED);
    }
    /* Nothing runs again later. */
    ck_assert(!cf_future_cancel(f));
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), CF_EINVALSTATE);
    ck_assert_int_eq(log.n, 5);
    pthread_mutex_destroy(&log.mu);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_callback_added_after_done_runs_immediately)
{
    cf_future *ok = new_future();
    cf_future *failed = new_future();
    cf_future *cancelled = new_future();
    ck_assert_int_eq(cf_future_set_result(ok, NULL, NULL), 0);
    ck_assert_int_eq(cf_future_set_exception(failed, CF_EPERM, NULL), 0);
    ck_assert(cf_future_cancel(cancelled));
    cb_log log;
    log_init(&log);
    cb_entry e[3] = {{&log, 0}, {&log, 1}, {&log, 2}};
    ck_assert_int_eq(cf_future_add_done_callback(ok, record_cb, &e[0]), 0);
    ck_assert_int_eq(log.n, 1);
    ck_assert_int_eq(cf_future_add_done_callback(failed, record_cb, &e[1]), 0);
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(cf_future_add_done_callback(cancelled, record_cb, &e[2]), 0);
    ck_assert_int_eq(log.n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(log.ids[i], i);
        ck_assert(pthread_equal(log.threads[i], pthread_self()));
    }
    ck_assert_int_eq(log.states[2], CF_FUTURE_CANCELLED);
    pthread_mutex_destroy(&log.mu);
    cf_future_unref(ok);
    cf_future_unref(failed);
    cf_future_unref(cancelled);
}
END_TEST

static void *cancel_in_thread(void *arg)
{
    cb_thread_arg *a = arg;
    a->self = pthread_self();
    ck_assert(cf_future_cancel(a->f));
    return NULL;
}

START_TEST(test_callbacks_of_cancelled_future_run_in_cancelling_thread)
{
    cf_future *f = new_future();
    cb_log log;
    log_init(&log);
    cb_entry e[2] = {{&log, 0}, {&log, 1}};
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &e[0]), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &e[1]), 0);
    cb_thread_arg a = {.f = f};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, cancel_in_thread, &a), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(log.n, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(log.ids[i], i);
        ck_assert(pthread_equal(log.threads[i], a.self));
        ck_assert_int_eq(log.states[i], CF_FUTURE_CANCELLED);
    }
    ck_assert(cf_future_cancel(f));
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(f), 0);
    ck_assert_int_eq(log.n, 2);
    pthread_mutex_destroy(&log.mu);
    cf_future_unref(f);
}
END_TEST

typedef struct reentrant {
    cb_log *log;
    cb_entry inner;
    int result_rc;
    void *value;
    int add_rc;
    int log_len_after_add;
    int exception_code;
} reentrant;

static void reentrant_cb(cf_future *f, void *data)
{
    reentrant *r = data;
    r->result_rc = cf_future_result(&r->value, f, CF_FOREVER);
    cf_future_exception(&r->exception_code, NULL, f, 0);
    ck_assert(cf_future_done(f));
    ck_assert(!cf_future_cancel(f));
    /* The future is done, so this runs inside this call, before it returns. */
    r->add_rc = cf_future_add_done_callback(f, record_cb, &r->inner);
    r->log_len_after_add = log_count(r->log);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), CF_EINVALSTATE);
}

START_TEST(test_callback_may_use_the_same_future)
{
    cf_future *f = new_future();
    cb_log log;
    log_init(&log);
    reentrant r = {.log = &log, .inner = {&log, 100}, .result_rc = 1, .add_rc = 1};
    cb_entry later = {&log, 1};
    ck_assert_int_eq(cf_future_add_done_callback(f, reentrant_cb, &r), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, record_cb, &later), 0);
    ck_assert_int_eq(cf_future_set_result(f, (void *)11, NULL), 0);
    ck_assert_int_eq(r.result_rc, 0);
    ck_assert_ptr_eq(r.value, (void *)11);
    ck_assert_int_eq(r.exception_code, 0);
    ck_assert_int_eq(r.add_rc, 0);
    ck_assert_int_eq(r.log_len_after_add, 1);
    /* The nested callback ran immediately, then the one added earlier in order. */
    ck_assert_int_eq(log.n, 2);
    ck_assert_int_eq(log.ids[0], 100);
    ck_assert_int_eq(log.ids[1], 1);
    pthread_mutex_destroy(&log.mu);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_callback_sees_failure)
{
    cf_future *f = new_future();
    cb_log log;
    log_init(&log);
    reentrant r = {.log = &log, .inner = {&log, 1}};
    ck_assert_int_eq(cf_future_add_done_callback(f, reentrant_cb, &r), 0);
    ck_assert_int_eq(cf_future_set_exception(f, CF_EAGAIN, "again"), 0);
    ck_assert_int_eq(r.result_rc, CF_ETASK);
    ck_assert_int_eq(r.exception_code, CF_EAGAIN);
    ck_assert_int_eq(log.n, 1);
    pthread_mutex_destroy(&log.mu);
    cf_future_unref(f);
}
END_TEST

START_TEST(test_same_callback_twice_runs_twice)
{
    cf_future *f = new_future();
    atomic_int calls = 0;
    ck_assert_int_eq(cf_future_add_done_callback(f, count_cb, &calls), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, count_cb, &calls), 0);
    ck_assert_int_eq(cf_future_set_result_bytes(f, "z", 1), 0);
    ck_assert_int_eq(atomic_load(&calls), 2);
    ck_assert_int_eq(cf_future_add_done_callback(f, count_cb, &calls), 0);
    ck_assert_int_eq(atomic_load(&calls), 3);
    cf_future_unref(f);
}
END_TEST

/* Callbacks added while another thread completes the future each run exactly once. */
typedef struct adder {
    cf_future *f;
    atomic_int *calls;
    pthread_barrier_t *barrier;
    int added;
} adder;

static void *adder_main(void *arg)
{
    adder *a = arg;
    pthread_barrier_wait(a->barrier);
    for (int i = 0; i < 50; i++)
        if (cf_future_add_done_callback(a->f, count_cb, a->calls) == 0)
            a->added++;
    return NULL;
}

START_TEST(test_callbacks_exactly_once_while_completing)
{
    for (int round = 0; round < 100; round++) {
        cf_future *f = new_future();
        atomic_int calls = 0;
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 3);
        adder a[2] = {{.f = f, .calls = &calls, .barrier = &barrier},
                      {.f = f, .calls = &calls, .barrier = &barrier}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            ck_assert_int_eq(pthread_create(&t[i], NULL, adder_main, &a[i]), 0);
        pthread_barrier_wait(&barrier);
        if (round % 2)
            ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
        else
            ck_assert(cf_future_cancel(f));
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&barrier);
        ck_assert_int_eq(a[0].added + a[1].added, 100);
        ck_assert_int_eq(atomic_load(&calls), 100);
        cf_future_unref(f);
    }
}
END_TEST

/* ---- lifetime ---- */

START_TEST(test_ref_unref_and_destructor)
{
    atomic_int dtor = 0;
    cf_future *f = new_future();
    ck_assert_ptr_eq(cf_future_ref(f), f);
    ck_assert_ptr_eq(cf_future_ref(f), f);
    ck_assert_int_eq(cf_future_set_result(f, &dtor, cf_test_count_dtor), 0);
    cf_future_unref(f);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&dtor), 0);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, 0), 0);
    ck_assert_ptr_eq(value, &dtor);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&dtor), 1);
}
END_TEST

static void *unref_in_thread(void *arg)
{
    cf_future_unref(arg);
    return NULL;
}

START_TEST(test_destructor_once_with_concurrent_unrefs)
{
    enum { N = 8 };
    for (int round = 0; round < 50; round++) {
        atomic_int dtor = 0;
        cf_future *f = new_future();
        ck_assert_int_eq(cf_future_set_result(f, &dtor, cf_test_count_dtor), 0);
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            cf_future_ref(f);
            ck_assert_int_eq(pthread_create(&t[i], NULL, unref_in_thread, f), 0);
        }
        cf_future_unref(f);
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        ck_assert_int_eq(atomic_load(&dtor), 1);
    }
}
END_TEST

START_TEST(test_no_destructor_without_a_kept_value)
{
    atomic_int dtor = 0;
    /* Failed, cancelled and never-completed futures have no value to destroy. */
    cf_future *failed = new_future();
    ck_assert_int_eq(cf_future_set_exception(failed, CF_EPERM, "x"), 0);
    ck_assert_int_eq(cf_future_set_result(failed, &dtor, cf_test_count_dtor), CF_EINVALSTATE);
    cf_future_unref(failed);
    cf_future *cancelled = new_future();
    ck_assert(cf_future_cancel(cancelled));
    ck_assert_int_eq(cf_future_set_result(cancelled, &dtor, cf_test_count_dtor), CF_EINVALSTATE);
    cf_future_unref(cancelled);
    cf_future *pending = new_future();
    cf_future_unref(pending);
    ck_assert_int_eq(atomic_load(&dtor), 0);
    /* A NULL destructor is fine. */
    cf_future *plain = new_future();
    ck_assert_int_eq(cf_future_set_result(plain, &dtor, NULL), 0);
    cf_future_unref(plain);
}
END_TEST

START_TEST(test_pending_future_released_before_completion)
{
    /* "Whoever completes it holds its own reference": the completer keeps it alive. */
    atomic_int dtor = 0;
    cf_future *f = new_future();
    cf_future *completer_ref = cf_future_ref(f);
    cf_future_unref(f);
    ck_assert_int_eq(cf_future_set_result(completer_ref, &dtor, cf_test_count_dtor), 0);
    ck_assert_int_eq(atomic_load(&dtor), 0);
    cf_future_unref(completer_ref);
    ck_assert_int_eq(atomic_load(&dtor), 1);
}
END_TEST

static void unref_cb(cf_future *f, void *data)
{
    (void)data;
    cf_future_unref(f);
}

START_TEST(test_callback_may_drop_a_reference)
{
    atomic_int dtor = 0;
    cf_future *f = new_future();
    cf_future_ref(f); /* the callback's reference */
    ck_assert_int_eq(cf_future_add_done_callback(f, unref_cb, NULL), 0);
    ck_assert_int_eq(cf_future_set_result(f, &dtor, cf_test_count_dtor), 0);
    ck_assert_int_eq(atomic_load(&dtor), 0);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&dtor), 1);
}
END_TEST

/* ---- arguments ---- */

static void never_cb(cf_future *f, void *data)
{
    (void)f;
    (void)data;
    ck_abort_msg("callback must not run");
}

START_TEST(test_null_handling)
{
    ck_assert_int_eq(cf_future_new(NULL), CF_EINVAL);
    ck_assert_ptr_null(cf_future_ref(NULL));
    cf_future_unref(NULL);
    ck_assert(!cf_future_cancel(NULL));
    ck_assert(!cf_future_cancelled(NULL));
    ck_assert(!cf_future_running(NULL));
    ck_assert(!cf_future_done(NULL));
    ck_assert_int_eq(cf_future_get_state(NULL), CF_FUTURE_PENDING);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_future_result(NULL, NULL, CF_FOREVER), CF_EINVAL);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, NULL, CF_FOREVER), CF_EINVAL);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, NULL, CF_FOREVER), CF_EINVAL);
    ck_assert_int_eq(cf_future_add_done_callback(NULL, never_cb, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result(NULL, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result_bytes(NULL, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_exception(NULL, CF_EPERM, "x"), CF_EINVAL);
    /* A NULL callback is refused and nothing is registered. */
    cf_future *f = new_future();
    ck_assert_int_eq(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, NULL, NULL), CF_EINVAL);
    cf_future_unref(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("future");
    TCase *tc = cf_test_tcase("states");
    tcase_add_test(tc, test_new_future_is_pending);
    tcase_add_test(tc, test_set_running_then_finish);
    tcase_add_test(tc, test_set_running_twice_is_invalid);
    tcase_add_test(tc, test_set_running_after_finish_is_invalid);
    tcase_add_test(tc, test_cancel_pending);
    tcase_add_test(tc, test_cancel_twice_runs_callbacks_once);
    tcase_add_test(tc, test_cancel_running_fails);
    tcase_add_test(tc, test_cancel_finished_fails);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("outcomes");
    tcase_add_test(tc, test_set_result_from_pending);
    tcase_add_test(tc, test_double_set_result_keeps_first);
    tcase_add_test(tc, test_set_exception_keeps_code_and_message);
    tcase_add_test(tc, test_double_set_exception_keeps_first);
    tcase_add_test(tc, test_set_exception_code_zero_is_invalid);
    tcase_add_test(tc, test_set_result_bytes);
    tcase_add_test(tc, test_set_result_bytes_empty);
    tcase_add_test(tc, test_set_result_bytes_invalid);
    tcase_add_test(tc, test_result_bytes_of_pointer_result_is_invalid);
    tcase_add_test(tc, test_optional_out_parameters);
    tcase_add_test(tc, test_concurrent_completion_exactly_one_wins);
    tcase_add_test(tc, test_set_running_races_cancel);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("waiting");
    tcase_add_test(tc, test_zero_timeout_polls);
    tcase_add_test(tc, test_short_timeout_times_out);
    tcase_add_test(tc, test_nan_timeout_is_invalid);
    tcase_add_test(tc, test_infinite_wait_woken_by_other_thread);
    tcase_add_test(tc, test_long_timeout_woken_early);
    tcase_add_test(tc, test_wait_woken_by_exception);
    tcase_add_test(tc, test_wait_woken_by_cancel);
    tcase_add_test(tc, test_wait_bytes_woken);
    tcase_add_test(tc, test_many_waiters_all_woken);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("callbacks");
    tcase_add_test(tc, test_callbacks_run_in_order_in_completing_thread);
    tcase_add_test(tc, test_callback_added_after_done_runs_immediately);
    tcase_add_test(tc, test_callbacks_of_cancelled_future_run_in_cancelling_thread);
    tcase_add_test(tc, test_callback_may_use_the_same_future);
    tcase_add_test(tc, test_callback_sees_failure);
    tcase_add_test(tc, test_same_callback_twice_runs_twice);
    tcase_add_test(tc, test_callbacks_exactly_once_while_completing);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("lifetime");
    tcase_add_test(tc, test_ref_unref_and_destructor);
    tcase_add_test(tc, test_destructor_once_with_concurrent_unrefs);
    tcase_add_test(tc, test_no_destructor_without_a_kept_value);
    tcase_add_test(tc, test_pending_future_released_before_completion);
    tcase_add_test(tc, test_callback_may_drop_a_reference);
    tcase_add_test(tc, test_null_handling);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
