/* The thread-pool executor: submit and results, task failures and messages, bytes tasks,
 * ordering, thread accounting (saturation, reuse, default size, idle timeout), thread names,
 * initializers, bounded queues, options, and tasks that use their own pool. Ported from the
 * behaviour of CPython's test_thread_pool.py, test_init.py, test_deadlock.py (thread parts)
 * and executor.py, plus the C-specific extras (bounded queue, idle timeout, stack size). */
#include <limits.h>
#include <math.h>
#include <sched.h>

#include "cf_test_sync.h"

static cf_executor *pool_with(cf_thread_pool_options o)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    ck_assert_ptr_nonnull(ex);
    return ex;
}

static cf_thread_pool_stats stats_of(cf_executor *ex)
{
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    return s;
}

static cf_future *submit(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit(&f, ex, fn, arg), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void *result_of(cf_future *f)
{
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, f, CF_TEST_LONG), 0);
    return value;
}

/* Submits `n` gate tasks, waits until `running` of them have started, and returns them. */
static cf_future **submit_gated(cf_executor *ex, cf_test_gate *g, size_t n, unsigned running)
{
    cf_future **fs = calloc(n, sizeof(*fs));
    ck_assert_ptr_nonnull(fs);
    for (size_t i = 0; i < n; i++)
        fs[i] = submit(ex, cf_test_gate_task, g);
    ck_assert(cf_test_latch_wait(&g->started, running, CF_TEST_LONG));
    return fs;
}

static void release_and_collect(cf_test_gate *g, cf_future **fs, size_t n)
{
    cf_test_event_set(&g->release);
    for (size_t i = 0; i < n; i++) {
        ck_assert_ptr_eq(result_of(fs[i]), g);
        cf_future_unref(fs[i]);
    }
    free(fs);
}

/* ---- submit and results ---- */

static int square_task(void *arg, void **result)
{
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * x);
    return 0;
}

START_TEST(test_submit_and_result)
{
    cf_executor *ex = cf_test_pool(4);
    cf_future *f = submit(ex, square_task, (void *)8);
    ck_assert_ptr_eq(result_of(f), (void *)64);
    int code = 1;
    const char *message = "x";
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, 0);
    ck_assert_ptr_null(message);
    ck_assert_int_eq(cf_future_get_state(f), CF_FUTURE_FINISHED);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_many_tasks)
{
    enum { N = 5000 };
    cf_executor *ex = cf_test_pool(4);
    cf_future **fs = calloc(N, sizeof(*fs));
    for (intptr_t i = 0; i < N; i++)
        fs[i] = submit(ex, square_task, (void *)i);
    for (intptr_t i = 0; i < N; i++) {
        ck_assert_ptr_eq(result_of(fs[i]), (void *)(i * i));
        cf_future_unref(fs[i]);
    }
    free(fs);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    cf_thread_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.tasks_completed, N);
    ck_assert_uint_eq(s.threads, 0);
    ck_assert_uint_le(s.threads_started, 4);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* A worker that allocates futures (here: submits from a task) takes a batch of cached futures
 * from the process-wide depot; when the worker exits, that batch must be freed. The leak
 * checkers of the ASan and valgrind builds fail this test if it is not. */
static cf_executor *inner_pool;

static int submit_into_inner_pool(void *arg, void **result)
{
    cf_future *f = NULL;
    int rc = cf_executor_submit(&f, inner_pool, square_task, arg);
    if (rc == 0) {
        rc = cf_future_result(result, f, CF_FOREVER);
        cf_future_unref(f);
    }
    return rc;
}

START_TEST(test_worker_future_cache_freed_at_exit)
{
    enum { N = 1000 }; /* enough released futures to fill the depot with batches */
    inner_pool = cf_test_pool(1);
    cf_executor *outer = cf_test_pool(1);
    cf_future **fs = calloc(N, sizeof(*fs));
    for (intptr_t i = 0; i < N; i++)
        fs[i] = submit(inner_pool, square_task, (void *)i);
    for (intptr_t i = 0; i < N; i++) {
        ck_assert_ptr_eq(result_of(fs[i]), (void *)(i * i));
        cf_future_unref(fs[i]);
    }
    free(fs);
    cf_future *f = submit(outer, submit_into_inner_pool, (void *)7);
    ck_assert_ptr_eq(result_of(f), (void *)49);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(outer), 0);
    ck_assert_int_eq(cf_executor_free(inner_pool), 0);
}
END_TEST

START_TEST(test_task_failure_by_return_code)
{
    cf_executor *ex = cf_test_pool(2);
    cf_future *f = submit(ex, cf_test_fail_task, (void *)(intptr_t)-5);
    void *value = (void *)1;
    ck_assert_int_eq(cf_future_result(&value, f, CF_TEST_LONG), CF_ETASK);
    ck_assert_ptr_null(value);
    int code = 0;
    const char *message = "x";
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, -5);
    ck_assert_ptr_null(message);
    /* Codes are kept verbatim, including positive ones and cfutures codes. */
    cf_future *g = submit(ex, cf_test_fail_task, (void *)(intptr_t)CF_ETIMEDOUT);
    cf_future *h = submit(ex, cf_test_fail_task, (void *)(intptr_t)7);
    ck_assert_int_eq(cf_future_result(NULL, g, CF_TEST_LONG), CF_ETASK);
    ck_assert_int_eq(cf_future_exception(&code, NULL, g, 0), 0);
    ck_assert_int_eq(code, CF_ETIMEDOUT);
    ck_assert_int_eq(cf_future_exception(&code, NULL, h, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, 7);
    cf_future_unref(f);
    cf_future_unref(g);
    cf_future_unref(h);
    /* The pool stays healthy. */
    cf_future *ok = submit(ex, square_task, (void *)3);
    ck_assert_ptr_eq(result_of(ok), (void *)9);
    cf_future_unref(ok);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static int formatted_fail_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_task_fail(-22, "bad %s #%d", "input", 7);
}

static int zero_code_fail_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_task_fail(0, "no code given");
}

static int long_message_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    static char big[10000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    return cf_task_fail(-1, "%s", big);
}

static int fail_twice_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    cf_task_fail(-1, "first");
    return cf_task_fail(-2, "second");
}

static int fail_then_succeed_task(void *arg, void **result)
{
    (void)arg;
    cf_task_fail(-1, "dropped");
    *result = (void *)5;
    return 0;
}

static int null_format_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_task_fail(-4, NULL);
}

static void expect_failure(cf_future *f, int code, const char *message)
{
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    int got = 0;
    const char *msg = NULL;
    ck_assert_int_eq(cf_future_exception(&got, &msg, f, 0), 0);
    ck_assert_int_eq(got, code);
    if (message)
        ck_assert_str_eq(msg, message);
    else
        ck_assert_ptr_null(msg);
}

START_TEST(test_task_fail_keeps_code_and_message)
{
    cf_executor *ex = cf_test_pool(2);
    cf_future *f = submit(ex, formatted_fail_task, NULL);
    expect_failure(f, -22, "bad input #7");
    cf_future *g = submit(ex, zero_code_fail_task, NULL);
    expect_failure(g, CF_ETASK, "no code given");
    cf_future *h = submit(ex, fail_twice_task, NULL);
    expect_failure(h, -2, "second");
    cf_future *k = submit(ex, null_format_task, NULL);
    expect_failure(k, -4, NULL);
    /* Returning 0 means success, whatever cf_task_fail() said before. */
    cf_future *s = submit(ex, fail_then_succeed_task, NULL);
    ck_assert_ptr_eq(result_of(s), (void *)5);
    int code = 1;
    const char *msg = "x";
    ck_assert_int_eq(cf_future_exception(&code, &msg, s, 0), 0);
    ck_assert_int_eq(code, 0);
    ck_assert_ptr_null(msg);
    cf_future_unref(f);
    cf_future_unref(g);
    cf_future_unref(h);
    cf_future_unref(k);
    cf_future_unref(s);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_task_fail_truncates_long_message)
{
    cf_executor *ex = cf_test_pool(1);
    cf_future *f = submit(ex, long_message_task, NULL);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    const char *msg = NULL;
    ck_assert_int_eq(cf_future_exception(NULL, &msg, f, 0), 0);
    ck_assert_ptr_nonnull(msg);
    /* Truncated to 4 KiB including the terminating NUL. */
    ck_assert_uint_eq(strlen(msg), 4095);
    for (size_t i = 0; i < 4095; i++)
        ck_assert_int_eq(msg[i], 'm');
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_task_functions_outside_a_task)
{
    ck_assert_int_eq(cf_task_fail(-9, "ignored %d", 1), -9);
    ck_assert_int_eq(cf_task_fail(0, "ignored"), CF_ETASK);
    ck_assert_int_eq(cf_task_fail(5, NULL), 5);
    cf_task_set_result_dtor(free); /* no effect outside a task */
}
END_TEST

static int dtor_result_task(void *arg, void **result)
{
    cf_task_set_result_dtor(cf_test_count_dtor);
    *result = arg;
    return 0;
}

static int dtor_then_fail_task(void *arg, void **result)
{
    cf_task_set_result_dtor(cf_test_count_dtor);
    *result = arg;
    return -1;
}

START_TEST(test_task_set_result_dtor)
{
    cf_executor *ex = cf_test_pool(2);
    atomic_int calls = 0;
    cf_future *f = submit(ex, dtor_result_task, &calls);
    ck_assert_ptr_eq(result_of(f), &calls);
    cf_future *extra = cf_future_ref(f);
    cf_future_unref(f);
    ck_assert_int_eq(atomic_load(&calls), 0); /* `extra` still holds it */
    cf_future_unref(extra);

    /* A failed task's result is discarded through its destructor, exactly once. */
    atomic_int failed_calls = 0;
    cf_future *g = submit(ex, dtor_then_fail_task, &failed_calls);
    ck_assert_int_eq(cf_future_result(NULL, g, CF_TEST_LONG), CF_ETASK);
    cf_future_unref(g);
    /* The pool drops its own reference just after completing the future: once its workers
     * have exited, ours were the last ones. */
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&calls), 1);
    ck_assert_int_eq(atomic_load(&failed_calls), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- bytes tasks ---- */

static int failing_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    *result = malloc(16); /* discarded on failure */
    *result_len = 16;
    return cf_task_fail(-3, "cannot handle %zu bytes starting with %c", len, *(const char *)arg);
}

static int empty_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    if (len != 0)
        return -1;
    *result = NULL;
    *result_len = 0;
    return 0;
}

START_TEST(test_bytes_task_argument_is_copied)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    /* The single worker is busy, so the bytes task cannot read the buffer before it changes. */
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    char buf[] = "abcdef";
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_reverse_task, buf, 6), 0);
    memset(buf, '#', sizeof(buf));
    release_and_collect(&g, blocker, 1);
    const void *data = NULL;
    size_t len = 0;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 6);
    ck_assert_mem_eq(data, "fedcba", 6);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_bytes_task_failure_and_empty)
{
    cf_executor *ex = cf_test_pool(2);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, failing_bytes_task, "xyz", 3), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), CF_ETASK);
    int code = 0;
    const char *msg = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
    ck_assert_int_eq(code, -3);
    ck_assert_str_eq(msg, "cannot handle 3 bytes starting with x");
    cf_future *e = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&e, ex, empty_bytes_task, NULL, 0), 0);
    size_t len = 99;
    ck_assert_int_eq(cf_future_result_bytes(NULL, &len, e, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 0);
    /* A pointer task's result is not bytes. */
    cf_future *p = submit(ex, square_task, (void *)2);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, p, CF_TEST_LONG), CF_EINVAL);
    cf_future_unref(f);
    cf_future_unref(e);
    cf_future_unref(p);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- ordering and thread accounting ---- */

typedef struct order_log {
    atomic_int next;
    int order[64];
} order_log;

typedef struct order_arg {
    order_log *log;
    int id;
} order_arg;

static int record_order_task(void *arg, void **result)
{
    order_arg *a = arg;
    a->log->order[atomic_fetch_add(&a->log->next, 1)] = a->id;
    *result = NULL;
    return 0;
}

START_TEST(test_start_order_is_submission_order)
{
    enum { N = 50 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    order_log log = {0};
    order_arg args[N];
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        args[i] = (order_arg){.log = &log, .id = i};
        fs[i] = submit(ex, record_order_task, &args[i]);
    }
    ck_assert_uint_eq(stats_of(ex).queued, N);
    release_and_collect(&g, blocker, 1);
    for (int i = 0; i < N; i++) {
        result_of(fs[i]);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(atomic_load(&log.next), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(log.order[i], i);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

static void check_saturation(cf_executor *ex, unsigned max_workers)
{
    size_t n = 15 * (size_t)max_workers;
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **fs = submit_gated(ex, &g, n, max_workers);
    cf_thread_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.threads, max_workers);
    ck_assert_uint_eq(s.threads_started, max_workers);
    ck_assert_uint_eq(s.idle, 0);
    ck_assert_uint_eq(s.queued, n - max_workers);
    ck_assert_uint_eq(cf_test_latch_count(&g.started), max_workers);
    release_and_collect(&g, fs, n);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    s = stats_of(ex);
    ck_assert_uint_eq(s.threads_started, max_workers);
    ck_assert_uint_eq(s.tasks_completed, n);
    ck_assert_uint_eq(s.threads, 0);
    ck_assert_uint_eq(s.queued, 0);
    cf_test_gate_destroy(&g);
}

START_TEST(test_saturation)
{
    cf_executor *ex = cf_test_pool(4);
    check_saturation(ex, 4);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_stats_count_only_tasks_that_ran)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    cf_future *fs[5];
    for (intptr_t i = 0; i < 5; i++)
        fs[i] = submit(ex, square_task, (void *)i);
    ck_assert(cf_future_cancel(fs[1]));
    ck_assert(cf_future_cancel(fs[3]));
    ck_assert(cf_future_cancel(fs[4]));
    /* Cancelled futures stay counted as queued until a worker drains them. */
    ck_assert_uint_eq(stats_of(ex).queued, 5);
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(fs[0]), (void *)0);
    ck_assert_ptr_eq(result_of(fs[2]), (void *)4);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    cf_thread_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.queued, 0);
    /* "tasks run to completion": the blocker, fs[0] and fs[2]; not the cancelled ones. */
    ck_assert_uint_eq(s.tasks_completed, 3);
    for (int i = 0; i < 5; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_default_max_workers)
{
    cpu_set_t set;
    ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    unsigned cpus = (unsigned)CPU_COUNT(&set);
    unsigned expected = cpus + 4 < 32 ? cpus + 4 : 32;
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    check_saturation(ex, expected);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_thread_pool_options zero = {0};
    ck_assert_int_eq(cf_thread_pool_new(&ex, &zero), 0);
    check_saturation(ex, expected);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_idle_thread_reuse)
{
    cf_executor *ex = cf_test_pool(8);
    for (intptr_t i = 0; i < 10; i++) {
        cf_future *f = submit(ex, square_task, (void *)i);
        ck_assert_ptr_eq(result_of(f), (void *)(i * i));
        cf_future_unref(f);
    }
    ck_assert_uint_eq(stats_of(ex).threads_started, 1);
    ck_assert_uint_eq(stats_of(ex).threads, 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_parked_threads_reused_for_a_new_burst)
{
    cf_executor *ex = cf_test_pool(4);
    for (int round = 0; round < 3; round++) {
        cf_test_gate g;
        cf_test_gate_init(&g);
        cf_future **fs = submit_gated(ex, &g, 4, 4);
        release_and_collect(&g, fs, 4);
        cf_test_gate_destroy(&g);
    }
    ck_assert_uint_eq(stats_of(ex).threads_started, 4);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct bounded_shutdown {
    cf_executor *ex;
    cf_test_event returned;
} bounded_shutdown;

static void *bounded_shutdown_main(void *arg)
{
    bounded_shutdown *b = arg;
    cf_executor_shutdown(b->ex, true, false);
    cf_test_event_set(&b->returned);
    return NULL;
}

START_TEST(test_batched_wakeups_lose_no_worker)
{
    /* Each map wakes several parked workers with one submit. A woken worker must never be
     * left asleep after being taken off the idle stack: it would be counted as awake for
     * ever, and shutdown(wait) would wait for it for ever. (TSan reports the race behind this
     * deterministically; a plain build hangs only on unlucky scheduling.) */
    enum { W = 4, N = 8, ROUNDS = 300 };
    cf_executor *ex = cf_test_pool(W);
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    for (int round = 0; round < ROUNDS; round++) {
        cf_map *it = NULL;
        ck_assert_int_eq(cf_executor_map(&it, ex, square_task, args, N, CF_TEST_LONG, N), 0);
        for (intptr_t i = 0; i < N; i++) {
            void *value = NULL;
            ck_assert_int_eq(cf_map_next(&value, it), 0);
            ck_assert_ptr_eq(value, (void *)(i * i));
        }
        cf_map_free(it);
    }
    bounded_shutdown b = {.ex = ex};
    cf_test_event_init(&b.returned);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, bounded_shutdown_main, &b), 0);
    ck_assert_msg(cf_test_event_wait(&b.returned, CF_TEST_LONG), "shutdown(wait) hangs");
    pthread_join(t, NULL);
    ck_assert_uint_eq(stats_of(ex).threads, 0);
    cf_test_event_destroy(&b.returned);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- thread names ---- */

typedef struct name_probe {
    cf_test_gate *gate;
    char name[32];
} name_probe;

static int name_task(void *arg, void **result)
{
    name_probe *p = arg;
    ck_assert_int_eq(pthread_getname_np(pthread_self(), p->name, sizeof(p->name)), 0);
    return cf_test_gate_task(p->gate, result);
}

/* Runs `n` name probes on `n` distinct threads (all blocked at once) and fills `probes`. */
static void probe_names(cf_executor *ex, name_probe *probes, unsigned n)
{
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **fs = calloc(n, sizeof(*fs));
    for (unsigned i = 0; i < n; i++) {
        probes[i].gate = &g;
        fs[i] = submit(ex, name_task, &probes[i]);
    }
    ck_assert(cf_test_latch_wait(&g.started, n, CF_TEST_LONG));
    release_and_collect(&g, fs, n);
    cf_test_gate_destroy(&g);
}

/* The number after the last '_' of a thread name, or -1. */
static int name_number(const char *name)
{
    const char *us = strrchr(name, '_');
    return us && us[1] ? atoi(us + 1) : -1;
}

START_TEST(test_thread_names)
{
    enum { N = 3 };
    cf_executor *ex =
        pool_with((cf_thread_pool_options){.max_workers = N, .thread_name_prefix = "worker"});
    name_probe probes[N] = {0};
    probe_names(ex, probes, N);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(strncmp(probes[i].name, "worker_", 7), 0);
        int k = name_number(probes[i].name);
        ck_assert(k >= 0 && k < N);
        ck_assert(!seen[k]);
        seen[k] = true;
        char expected[16];
        snprintf(expected, sizeof(expected), "worker_%d", k);
        ck_assert_str_eq(probes[i].name, expected);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_thread_names_truncated_keeping_number)
{
    enum { N = 12 };
    const char *prefix = "abcdefghijklmnopqrstuvwxyz";
    cf_executor *ex =
        pool_with((cf_thread_pool_options){.max_workers = N, .thread_name_prefix = prefix});
    name_probe probes[N] = {0};
    probe_names(ex, probes, N);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        const char *name = probes[i].name;
        ck_assert_uint_eq(strlen(name), 15);
        int k = name_number(name);
        ck_assert(k >= 0 && k < N);
        ck_assert(!seen[k]);
        seen[k] = true;
        char suffix[8];
        int slen = snprintf(suffix, sizeof(suffix), "_%d", k);
        ck_assert_str_eq(name + 15 - slen, suffix);
        ck_assert_int_eq(strncmp(name, prefix, 15 - (size_t)slen), 0);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_thread_names_default_prefix)
{
    cf_executor *ex = cf_test_pool(1);
    name_probe probe = {0};
    probe_names(ex, &probe, 1);
    ck_assert_int_eq(strncmp(probe.name, "cfpool", 6), 0);
    size_t len = strlen(probe.name);
    ck_assert_uint_ge(len, 8);
    ck_assert_str_eq(probe.name + len - 2, "_0");
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- initializer ---- */

static _Thread_local int tls_initialized;

typedef struct init_state {
    atomic_int calls;
    atomic_int arg_ok;
} init_state;

static int counting_initializer(void *arg)
{
    init_state *st = arg;
    atomic_fetch_add(&st->calls, 1);
    tls_initialized++;
    return 0;
}

static int require_initialized_task(void *arg, void **result)
{
    (void)arg;
    *result = (void *)(intptr_t)tls_initialized;
    return tls_initialized == 1 ? 0 : CF_EPERM;
}

typedef struct init_probe {
    cf_test_gate *gate;
    int initialized;
} init_probe;

static int gated_init_probe_task(void *arg, void **result)
{
    init_probe *p = arg;
    p->initialized = tls_initialized;
    return cf_test_gate_task(p->gate, result);
}

START_TEST(test_initializer_once_per_thread_before_tasks)
{
    enum { W = 3, N = 30 };
    init_state st = {0};
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = W, .initializer = counting_initializer, .initializer_arg = &st});
    cf_test_gate g;
    cf_test_gate_init(&g);
    init_probe probes[W];
    cf_future *blocked[W];
    for (int i = 0; i < W; i++) {
        probes[i] = (init_probe){.gate = &g};
        blocked[i] = submit(ex, gated_init_probe_task, &probes[i]);
    }
    ck_assert(cf_test_latch_wait(&g.started, W, CF_TEST_LONG));
    for (int i = 0; i < W; i++)
        ck_assert_int_eq(probes[i].initialized, 1);
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, require_initialized_task, NULL);
    cf_test_event_set(&g.release);
    for (int i = 0; i < W; i++) {
        result_of(blocked[i]);
        cf_future_unref(blocked[i]);
    }
    for (int i = 0; i < N; i++) {
        ck_assert_ptr_eq(result_of(fs[i]), (void *)1);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(atomic_load(&st.calls), W);
    ck_assert_uint_eq(stats_of(ex).threads_started, W);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

typedef struct failing_init {
    cf_test_event go;
    atomic_int calls;
} failing_init;

static int failing_initializer(void *arg)
{
    failing_init *fi = arg;
    atomic_fetch_add(&fi->calls, 1);
    cf_test_event_wait(&fi->go, CF_TEST_LONG);
    return -7;
}

static int must_not_run_task(void *arg, void **result)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    *result = NULL;
    return 0;
}

static int noop_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    *result = NULL;
    *result_len = 0;
    return 0;
}

static void check_broken_pool(unsigned max_workers)
{
    enum { N = 6 };
    failing_init fi;
    cf_test_event_init(&fi.go);
    atomic_init(&fi.calls, 0);
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = max_workers, .initializer = failing_initializer, .initializer_arg = &fi});
    atomic_int ran = 0;
    cf_future *fs[N];
    /* Every thread is held in its initializer, so all tasks are still queued when it fails. */
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, must_not_run_task, &ran);
    cf_test_event_set(&fi.go);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cf_future_result(NULL, fs[i], CF_TEST_LONG), CF_ETASK);
        int code = 0;
        const char *msg = NULL;
        ck_assert_int_eq(cf_future_exception(&code, &msg, fs[i], 0), 0);
        ck_assert_int_eq(code, CF_EBROKEN);
        ck_assert_ptr_nonnull(msg);
        ck_assert_ptr_nonnull(strstr(msg, "initializer"));
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(atomic_load(&ran), 0);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, must_not_run_task, &ran), CF_EBROKEN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, noop_bytes_task, "a", 1), CF_EBROKEN);
    ck_assert_ptr_null(f);
    void *args[2] = {&ran, &ran};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(&it, ex, must_not_run_task, args, 2, CF_FOREVER, 0),
                     CF_EBROKEN);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_uint_eq(stats_of(ex).threads, 0);
    ck_assert_int_ge(atomic_load(&fi.calls), 1);
    ck_assert_int_le(atomic_load(&fi.calls), (int)max_workers);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&fi.go);
}

START_TEST(test_initializer_failure_breaks_pool)
{
    check_broken_pool(1);
}
END_TEST

START_TEST(test_initializer_failure_breaks_pool_many_threads)
{
    check_broken_pool(4);
}
END_TEST

/* ---- batch submit ---- */

static int identity_task(void *arg, void **result)
{
    *result = arg;
    return 0;
}

START_TEST(test_batch_results)
{
    enum { N = 3000 };
    cf_executor *ex = cf_test_pool(4);
    static void *args[N];
    static cf_future *fs[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    ck_assert_int_eq(cf_executor_submit_batch(fs, ex, square_task, args, N), 0);
    for (intptr_t i = 0; i < N; i++) {
        ck_assert_ptr_eq(result_of(fs[i]), (void *)(i * i));
        cf_future_unref(fs[i]);
    }
    /* Without args every call gets NULL; an empty batch is fine. */
    ck_assert_int_eq(cf_executor_submit_batch(fs, ex, identity_task, NULL, 3), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_null(result_of(fs[i]));
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(cf_executor_submit_batch(NULL, ex, identity_task, NULL, 0), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_uint_eq(stats_of(ex).tasks_completed, N + 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* A batch starts in index order, after what was queued before it, and before what comes
 * after. */
START_TEST(test_batch_start_order)
{
    enum { N = 40 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    order_log log = {0};
    order_arg args[N];
    void *argp[N];
    cf_future *fs[N];
    for (int i = 0; i < N; i++) {
        args[i] = (order_arg){.log = &log, .id = i};
        argp[i] = &args[i];
    }
    fs[0] = submit(ex, record_order_task, &args[0]);
    ck_assert_int_eq(cf_executor_submit_batch(fs + 1, ex, record_order_task, argp + 1, N - 2), 0);
    fs[N - 1] = submit(ex, record_order_task, &args[N - 1]);
    ck_assert_uint_eq(stats_of(ex).queued, N);
    release_and_collect(&g, blocker, 1);
    for (int i = 0; i < N; i++) {
        result_of(fs[i]);
        cf_future_unref(fs[i]);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(log.order[i], i);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* Each future of a batch is a future of its own: one can be cancelled while queued. */
START_TEST(test_batch_cancel_one)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    void *args[3] = {(void *)1, (void *)2, (void *)3};
    cf_future *fs[3];
    ck_assert_int_eq(cf_executor_submit_batch(fs, ex, square_task, args, 3), 0);
    ck_assert(cf_future_cancel(fs[1]));
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(fs[0]), (void *)1);
    ck_assert_int_eq(cf_future_result(NULL, fs[1], CF_TEST_LONG), CF_ECANCELLED);
    ck_assert_ptr_eq(result_of(fs[2]), (void *)9);
    for (int i = 0; i < 3; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

static void assert_all_null(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_null(fs[i]);
}

START_TEST(test_batch_errors)
{
    cf_executor *ex = cf_test_pool(2);
    cf_future *fs[4] = {(cf_future *)1, (cf_future *)1, (cf_future *)1, (cf_future *)1};
    ck_assert_int_eq(cf_executor_submit_batch(NULL, ex, square_task, NULL, 4), CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_batch(fs, NULL, square_task, NULL, 4), CF_EINVAL);
    assert_all_null(fs, 4);
    fs[0] = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_batch(fs, ex, NULL, NULL, 4), CF_EINVAL);
    assert_all_null(fs, 4);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    fs[3] = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_batch(fs, ex, square_task, NULL, 4), CF_ESHUTDOWN);
    assert_all_null(fs, 4);
    ck_assert_uint_eq(stats_of(ex).tasks_completed, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);

    /* The process pool runs bytes tasks only. */
    cf_executor *pp = NULL;
    ck_assert_int_eq(cf_process_pool_new(&pp, NULL), 0);
    ck_assert_int_eq(cf_executor_submit_batch(fs, pp, square_task, NULL, 4), CF_ENOTSUP);
    assert_all_null(fs, 4);
    ck_assert_int_eq(cf_executor_free(pp), 0);
}
END_TEST

/* A bounded queue takes a batch in pieces of at most max_queue, each under the policy: a full
 * queue with REJECT refuses the whole batch (nothing runs), BLOCK waits for room piece by piece,
 * CALLER_RUNS runs what does not fit in the calling thread. */
START_TEST(test_batch_bounded_queue)
{
    enum { N = 10 };
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_future *fs[N];
    cf_queue_policy policies[] = {CF_QUEUE_REJECT, CF_QUEUE_BLOCK, CF_QUEUE_CALLER_RUNS};
    for (int p = 0; p < 3; p++) {
        cf_executor *ex = pool_with((cf_thread_pool_options){
            .max_workers = 1, .max_queue = 4, .queue_policy = policies[p]});
        cf_test_gate g;
        cf_test_gate_init(&g);
        cf_future **blocker = submit_gated(ex, &g, 1, 1);
        if (policies[p] == CF_QUEUE_REJECT) {
            cf_future *q = submit(ex, square_task, (void *)3);
            ck_assert_int_eq(cf_executor_submit_batch(fs, ex, square_task, args, 4), CF_EFULL);
            assert_all_null(fs, 4);
            ck_assert_uint_eq(stats_of(ex).queued, 1);
            release_and_collect(&g, blocker, 1);
            ck_assert_ptr_eq(result_of(q), (void *)9);
            cf_future_unref(q);
            ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
            ck_assert_uint_eq(stats_of(ex).tasks_completed, 2);
        } else {
            if (policies[p] == CF_QUEUE_BLOCK)
                cf_test_event_set(&g.release); /* room comes as the worker runs */
            ck_assert_int_eq(cf_executor_submit_batch(fs, ex, square_task, args, N), 0);
            if (policies[p] == CF_QUEUE_CALLER_RUNS) {
                for (int i = 4; i < N; i++) /* ran before the call returned */
                    ck_assert(cf_future_done(fs[i]));
                ck_assert(!cf_future_done(fs[0]));
            }
            release_and_collect(&g, blocker, 1);
            for (intptr_t i = 0; i < N; i++) {
                ck_assert_ptr_eq(result_of(fs[i]), (void *)(i * i));
                cf_future_unref(fs[i]);
            }
        }
        ck_assert_int_eq(cf_executor_free(ex), 0);
        cf_test_gate_destroy(&g);
    }
}
END_TEST

/* ---- bounded queue ---- */

START_TEST(test_queue_reject)
{
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = 1, .max_queue = 2, .queue_policy = CF_QUEUE_REJECT});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    cf_future *q1 = submit(ex, square_task, (void *)2);
    cf_future *q2 = submit(ex, square_task, (void *)3);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, square_task, (void *)4), CF_EFULL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, noop_bytes_task, "a", 1), CF_EFULL);
    ck_assert_uint_eq(stats_of(ex).queued, 2);
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(q1), (void *)4);
    ck_assert_ptr_eq(result_of(q2), (void *)9);
    /* Room again. */
    cf_future *q3 = submit(ex, square_task, (void *)5);
    ck_assert_ptr_eq(result_of(q3), (void *)25);
    cf_future_unref(q1);
    cf_future_unref(q2);
    cf_future_unref(q3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_queue_block_times_out)
{
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_BLOCK, .queue_timeout = 0.1});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    cf_future *q = submit(ex, square_task, (void *)2);
    cf_future *f = (cf_future *)1;
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(cf_executor_submit(&f, ex, square_task, (void *)3), CF_ETIMEDOUT);
    ck_assert_double_ge(cf_test_monotonic() - t0, 0.095);
    ck_assert_ptr_null(f);
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(q), (void *)4);
    cf_future_unref(q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

typedef struct blocked_submit {
    cf_executor *ex;
    pid_t tid;
    cf_test_event started;
    int rc;
    cf_future *f;
} blocked_submit;

static void *blocked_submit_main(void *arg)
{
    blocked_submit *b = arg;
    b->tid = cf_test_gettid();
    cf_test_event_set(&b->started);
    b->rc = cf_executor_submit(&b->f, b->ex, square_task, (void *)6);
    return NULL;
}

static void start_blocked_submit(blocked_submit *b, pthread_t *t, cf_executor *ex)
{
    *b = (blocked_submit){.ex = ex, .rc = 1};
    cf_test_event_init(&b->started);
    ck_assert_int_eq(pthread_create(t, NULL, blocked_submit_main, b), 0);
    ck_assert(cf_test_event_wait(&b->started, CF_TEST_LONG));
    cf_test_wait_asleep(b->tid, CF_TEST_LONG);
}

START_TEST(test_queue_block_wakes_on_room)
{
    cf_executor *ex = pool_with(
        (cf_thread_pool_options){.max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_BLOCK});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    cf_future *q = submit(ex, square_task, (void *)2);
    blocked_submit b;
    pthread_t t;
    start_blocked_submit(&b, &t, ex);
    ck_assert_int_eq(b.rc, 1); /* still blocked: nothing made room */
    release_and_collect(&g, blocker, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(b.rc, 0);
    ck_assert_ptr_eq(result_of(b.f), (void *)36);
    ck_assert_ptr_eq(result_of(q), (void *)4);
    cf_future_unref(b.f);
    cf_future_unref(q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&b.started);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_queue_block_returns_on_shutdown)
{
    cf_executor *ex = pool_with(
        (cf_thread_pool_options){.max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_BLOCK});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    cf_future *q = submit(ex, square_task, (void *)2);
    blocked_submit b;
    pthread_t t;
    start_blocked_submit(&b, &t, ex);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(b.rc, CF_ESHUTDOWN);
    ck_assert_ptr_null(b.f);
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(q), (void *)4);
    cf_future_unref(q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&b.started);
    cf_test_gate_destroy(&g);
}
END_TEST

static int record_thread_task(void *arg, void **result)
{
    *(pthread_t *)arg = pthread_self();
    *result = arg;
    return 0;
}

START_TEST(test_queue_caller_runs)
{
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_CALLER_RUNS});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(ex, &g, 1, 1);
    pthread_t queued_thread, caller_thread;
    cf_future *q = submit(ex, record_thread_task, &queued_thread);
    cf_future *c = submit(ex, record_thread_task, &caller_thread);
    /* It ran in this thread, before submit returned. */
    ck_assert(cf_future_done(c));
    ck_assert_ptr_eq(result_of(c), &caller_thread);
    ck_assert(pthread_equal(caller_thread, pthread_self()));
    ck_assert(!cf_future_done(q));
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(q), &queued_thread);
    ck_assert(!pthread_equal(queued_thread, pthread_self()));
    cf_future_unref(q);
    cf_future_unref(c);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* ---- idle timeout ---- */

/* Polls the stats until the pool has `threads` threads of which `idle` are parked. */
static bool wait_threads(cf_executor *ex, unsigned threads, unsigned idle)
{
    double end = cf_test_monotonic() + CF_TEST_LONG;
    for (;;) {
        cf_thread_pool_stats s = stats_of(ex);
        if (s.threads == threads && s.idle == idle)
            return true;
        if (cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(2);
    }
}

static void check_idle_timeout(unsigned min_workers)
{
    enum { W = 4 };
    cf_executor *ex = pool_with((cf_thread_pool_options){
        .max_workers = W, .min_workers = min_workers, .idle_timeout = 0.05});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **fs = submit_gated(ex, &g, W, W);
    ck_assert_uint_eq(stats_of(ex).threads, W);
    release_and_collect(&g, fs, W);
    ck_assert(wait_threads(ex, min_workers, min_workers));
    /* The pool still works: a kept thread is reused, or a new one starts. */
    cf_future *f = submit(ex, square_task, (void *)7);
    ck_assert_ptr_eq(result_of(f), (void *)49);
    cf_future_unref(f);
    ck_assert_uint_eq(stats_of(ex).threads_started, min_workers ? W : W + 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}

START_TEST(test_idle_timeout_keeps_min_workers)
{
    check_idle_timeout(1);
}
END_TEST

START_TEST(test_idle_timeout_to_zero_threads)
{
    check_idle_timeout(0);
}
END_TEST

/* ---- options ---- */

#define expect_invalid(...) expect_invalid_at(__LINE__, (cf_thread_pool_options)__VA_ARGS__)

static void expect_invalid_at(int line, cf_thread_pool_options o)
{
    cf_executor *ex = (cf_executor *)1;
    int rc = cf_thread_pool_new(&ex, &o);
    if (rc == 0)
        cf_executor_free(ex);
    ck_assert_msg(rc == CF_EINVAL, "options at line %d: got %s", line, cf_err_name(rc));
    ck_assert_ptr_null(ex);
}

START_TEST(test_invalid_options)
{
    ck_assert_int_eq(cf_thread_pool_new(NULL, NULL), CF_EINVAL);
    expect_invalid({.max_workers = 2, .min_workers = 3});
    /* max_workers 0 means the default, which is at most 32. */
    expect_invalid({.min_workers = 33});
    expect_invalid({.max_queue = 4, .queue_policy = (cf_queue_policy)3});
    expect_invalid({.max_queue = 4, .queue_policy = (cf_queue_policy)-1});
    expect_invalid({.idle_timeout = NAN});
    expect_invalid({.idle_timeout = -1.0});
    expect_invalid({.queue_timeout = NAN});
    expect_invalid({.stack_size = 1});
    expect_invalid({.stack_size = (size_t)PTHREAD_STACK_MIN - 1});
}
END_TEST

START_TEST(test_max_workers_limit)
{
    /* One documented limit for both pools: a negative int cast to the unsigned field must not
     * silently mean "unbounded". */
    expect_invalid({.max_workers = CF_MAX_WORKERS + 1});
    expect_invalid({.max_workers = UINT_MAX});
    expect_invalid({.max_workers = (unsigned)-1, .min_workers = 1});
    cf_executor *ex = pool_with((cf_thread_pool_options){.max_workers = CF_MAX_WORKERS});
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ex = (cf_executor *)1;
    ck_assert_int_eq(
        cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = CF_MAX_WORKERS + 1}),
        CF_EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = UINT_MAX}),
                     CF_EINVAL);
}
END_TEST

START_TEST(test_valid_edge_options)
{
    cf_executor *ex = NULL;
    /* min == max, a negative queue timeout (no limit), the smallest stack. */
    ex = pool_with((cf_thread_pool_options){.max_workers = 2,
                                            .min_workers = 2,
                                            .max_queue = 1,
                                            .queue_timeout = -1,
                                            .stack_size = PTHREAD_STACK_MIN,
                                            .idle_timeout = 1e300});
    cf_future *f = submit(ex, square_task, (void *)3);
    ck_assert_ptr_eq(result_of(f), (void *)9);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static int stack_size_task(void *arg, void **result)
{
    (void)arg;
    pthread_attr_t attr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return -1;
    pthread_attr_getstacksize(&attr, &size);
    pthread_attr_destroy(&attr);
    *result = (void *)size;
    return 0;
}

START_TEST(test_stack_size)
{
    size_t want = 4u << 20;
    cf_executor *ex = pool_with((cf_thread_pool_options){.max_workers = 1, .stack_size = want});
    cf_future *f = submit(ex, stack_size_task, NULL);
    ck_assert_uint_ge((size_t)result_of(f), want);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_invalid_submit_arguments)
{
    cf_executor *ex = cf_test_pool(1);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(NULL, ex, square_task, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit(&f, NULL, square_task, NULL), CF_EINVAL);
    ck_assert_ptr_null(f);
    f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, NULL, NULL), CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_bytes(NULL, ex, noop_bytes_task, "a", 1), CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, NULL, noop_bytes_task, "a", 1), CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, NULL, "a", 1), CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, noop_bytes_task, NULL, 1), CF_EINVAL);
    ck_assert_ptr_null(f);
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(NULL, ex), CF_EINVAL);
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, NULL), CF_EINVAL);
    /* Nothing was queued and no thread started. */
    s = stats_of(ex);
    ck_assert_uint_eq(s.threads_started, 0);
    ck_assert_uint_eq(s.queued, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_unused_pool)
{
    cf_executor *ex = cf_test_pool(3);
    cf_thread_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.threads, 0);
    ck_assert_uint_eq(s.threads_started, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- tasks that use their own pool ---- */

typedef struct nested {
    cf_executor *ex;
    cf_future *inner;
    int submit_rc;
    int wait_rc;
} nested;

static int submit_inner_task(void *arg, void **result)
{
    nested *n = arg;
    n->submit_rc = cf_executor_submit(&n->inner, n->ex, square_task, (void *)11);
    *result = n;
    return n->submit_rc;
}

static int wait_inner_task(void *arg, void **result)
{
    nested *n = arg;
    n->submit_rc = cf_executor_submit(&n->inner, n->ex, square_task, (void *)12);
    if (n->submit_rc)
        return n->submit_rc;
    /* The only worker is this one: the inner task cannot run until we return. */
    n->wait_rc = cf_future_result(NULL, n->inner, 0.05);
    *result = n;
    return 0;
}

START_TEST(test_submit_from_inside_a_task)
{
    cf_executor *ex = cf_test_pool(1);
    nested n = {.ex = ex};
    cf_future *outer = submit(ex, submit_inner_task, &n);
    ck_assert_ptr_eq(result_of(outer), &n);
    ck_assert_int_eq(n.submit_rc, 0);
    ck_assert_ptr_eq(result_of(n.inner), (void *)121);
    cf_future_unref(outer);
    cf_future_unref(n.inner);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_wait_on_own_saturated_pool_times_out)
{
    cf_executor *ex = cf_test_pool(1);
    nested n = {.ex = ex, .wait_rc = 1};
    cf_future *outer = submit(ex, wait_inner_task, &n);
    ck_assert_ptr_eq(result_of(outer), &n);
    ck_assert_int_eq(n.wait_rc, CF_ETIMEDOUT);
    ck_assert_ptr_eq(result_of(n.inner), (void *)144);
    cf_future_unref(outer);
    cf_future_unref(n.inner);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct inline_ctx {
    cf_executor *inner_pool;
    cf_future *inner;
    int submit_rc;
    atomic_int inner_dtor;
} inline_ctx;

static int inner_failing_task(void *arg, void **result)
{
    inline_ctx *c = arg;
    cf_task_set_result_dtor(cf_test_count_dtor);
    *result = &c->inner_dtor;
    return cf_task_fail(-2, "inner");
}

static int outer_task(void *arg, void **result)
{
    inline_ctx *c = arg;
    cf_task_fail(-1, "outer");
    /* The inner pool's queue is full: this runs the inner task right here, nested. */
    c->submit_rc = cf_executor_submit(&c->inner, c->inner_pool, inner_failing_task, c);
    *result = NULL;
    return -1;
}

START_TEST(test_nested_inline_task_keeps_outer_context)
{
    cf_executor *inner_pool = pool_with((cf_thread_pool_options){
        .max_workers = 1, .max_queue = 1, .queue_policy = CF_QUEUE_CALLER_RUNS});
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future **blocker = submit_gated(inner_pool, &g, 1, 1);
    cf_future *filler = submit(inner_pool, square_task, (void *)1);
    cf_executor *outer_pool = cf_test_pool(1);
    inline_ctx c = {.inner_pool = inner_pool, .submit_rc = 1};
    atomic_init(&c.inner_dtor, 0);
    cf_future *outer = submit(outer_pool, outer_task, &c);
    expect_failure(outer, -1, "outer");
    ck_assert_int_eq(c.submit_rc, 0);
    expect_failure(c.inner, -2, "inner");
    /* The inner result was discarded through the inner destructor, once. */
    ck_assert_int_eq(atomic_load(&c.inner_dtor), 1);
    release_and_collect(&g, blocker, 1);
    ck_assert_ptr_eq(result_of(filler), (void *)1);
    cf_future_unref(filler);
    cf_future_unref(c.inner);
    cf_future_unref(outer);
    ck_assert_int_eq(cf_executor_free(outer_pool), 0);
    ck_assert_int_eq(cf_executor_free(inner_pool), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* ---- a task that ends its thread ---- */

static int pthread_exit_task(void *arg, void **result)
{
    (void)arg, (void)result;
    pthread_exit(NULL);
}

static int cancel_self_task(void *arg, void **result)
{
    (void)arg, (void)result;
    pthread_cancel(pthread_self());
    pthread_testcancel();
    return 0;
}

static void check_thread_ended(cf_fn ender)
{
    /* One thread: the task ends it, the queued task behind it must still run (on a
     * replacement), the ended task's future must fail with a clear error, and free must
     * return. */
    cf_executor *ex = pool_with((cf_thread_pool_options){.max_workers = 1});
    cf_future *ended = submit(ex, ender, NULL);
    cf_future *next = submit(ex, square_task, (void *)7);
    int code = 0;
    const char *msg = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &msg, ended, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EPERM);
    ck_assert_ptr_nonnull(msg);
    ck_assert_ptr_nonnull(strstr(msg, "pthread_exit"));
    ck_assert_ptr_eq(result_of(next), (void *)49);
    cf_future *later = submit(ex, square_task, (void *)8);
    ck_assert_ptr_eq(result_of(later), (void *)64);
    ck_assert_uint_eq(stats_of(ex).threads_started, 2);
    cf_future_unref(ended);
    cf_future_unref(next);
    cf_future_unref(later);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

START_TEST(test_pthread_exit_in_task)
{
    check_thread_ended(pthread_exit_task);
}
END_TEST

START_TEST(test_cancelled_task_thread)
{
    check_thread_ended(cancel_self_task);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("thread_pool");
    TCase *tc = cf_test_tcase("tasks");
    tcase_add_test(tc, test_submit_and_result);
    tcase_add_test(tc, test_many_tasks);
    tcase_add_test(tc, test_worker_future_cache_freed_at_exit);
    tcase_add_test(tc, test_task_failure_by_return_code);
    tcase_add_test(tc, test_task_fail_keeps_code_and_message);
    tcase_add_test(tc, test_task_fail_truncates_long_message);
    tcase_add_test(tc, test_task_functions_outside_a_task);
    tcase_add_test(tc, test_task_set_result_dtor);
    tcase_add_test(tc, test_bytes_task_argument_is_copied);
    tcase_add_test(tc, test_bytes_task_failure_and_empty);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("threads");
    tcase_add_test(tc, test_start_order_is_submission_order);
    tcase_add_test(tc, test_saturation);
    tcase_add_test(tc, test_stats_count_only_tasks_that_ran);
    tcase_add_test(tc, test_default_max_workers);
    tcase_add_test(tc, test_idle_thread_reuse);
    tcase_add_test(tc, test_parked_threads_reused_for_a_new_burst);
    tcase_add_test(tc, test_batched_wakeups_lose_no_worker);
    tcase_add_test(tc, test_thread_names);
    tcase_add_test(tc, test_thread_names_truncated_keeping_number);
    tcase_add_test(tc, test_thread_names_default_prefix);
    tcase_add_test(tc, test_idle_timeout_keeps_min_workers);
    tcase_add_test(tc, test_idle_timeout_to_zero_threads);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("initializer");
    tcase_add_test(tc, test_initializer_once_per_thread_before_tasks);
    tcase_add_test(tc, test_initializer_failure_breaks_pool);
    tcase_add_test(tc, test_initializer_failure_breaks_pool_many_threads);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("batch");
    tcase_add_test(tc, test_batch_results);
    tcase_add_test(tc, test_batch_start_order);
    tcase_add_test(tc, test_batch_cancel_one);
    tcase_add_test(tc, test_batch_errors);
    tcase_add_test(tc, test_batch_bounded_queue);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("hostile tasks");
    tcase_add_test(tc, test_pthread_exit_in_task);
    tcase_add_test(tc, test_cancelled_task_thread);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("queue");
    tcase_add_test(tc, test_queue_reject);
    tcase_add_test(tc, test_queue_block_times_out);
    tcase_add_test(tc, test_queue_block_wakes_on_room);
    tcase_add_test(tc, test_queue_block_returns_on_shutdown);
    tcase_add_test(tc, test_queue_caller_runs);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("options");
    tcase_add_test(tc, test_invalid_options);
    tcase_add_test(tc, test_max_workers_limit);
    tcase_add_test(tc, test_valid_edge_options);
    tcase_add_test(tc, test_stack_size);
    tcase_add_test(tc, test_invalid_submit_arguments);
    tcase_add_test(tc, test_unused_pool);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("reentrancy");
    tcase_add_test(tc, test_submit_from_inside_a_task);
    tcase_add_test(tc, test_wait_on_own_saturated_pool_times_out);
    tcase_add_test(tc, test_nested_inline_task_keeps_outer_context);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
