/* cf_executor_map / cf_executor_map_bytes: input order whatever the completion order, failed
 * calls reported in place while iteration continues (CPython main, gh-108518), the deadline
 * measured from the map call and the cancellation it triggers, chunk sizes, bounded pools,
 * bytes arguments copied, freeing early, shutdown and argument checks. Ported from the map
 * parts of CPython's executor.py and test_thread_pool.py. */
#include <ctype.h>
#include <math.h>

#include "cf_test_sync.h"

static cf_map *map_of(cf_executor *ex, cf_fn fn, void *const *args, size_t n, double timeout,
                      size_t chunksize)
{
    cf_map *it = NULL;
    ck_assert_int_eq(cf_executor_map(&it, ex, fn, args, n, timeout, chunksize), 0);
    ck_assert_ptr_nonnull(it);
    return it;
}

static void expect_eof(cf_map *it)
{
    void *value = (void *)1;
    ck_assert_int_eq(cf_map_next(&value, it), CF_EOF);
    ck_assert_ptr_null(value);
    ck_assert_ptr_null(cf_map_current(it));
}

static int square_task(void *arg, void **result)
{
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * x);
    return 0;
}

/* ---- order ---- */

typedef struct ordered_call {
    cf_test_event go;
    cf_test_latch *started;
    cf_test_latch *finished;
    atomic_int *finish_seq;
    int finish_pos;
    int id;
} ordered_call;

static int ordered_task(void *arg, void **result)
{
    ordered_call *c = arg;
    cf_test_latch_add(c->started);
    if (!cf_test_event_wait(&c->go, CF_TEST_LONG))
        return CF_ETIMEDOUT;
    c->finish_pos = atomic_fetch_add(c->finish_seq, 1);
    *result = (void *)(intptr_t)(c->id * 10);
    cf_test_latch_add(c->finished);
    return 0;
}

START_TEST(test_results_in_input_order)
{
    enum { N = 4 };
    cf_executor *ex = cf_test_pool(N);
    cf_test_latch started, finished;
    cf_test_latch_init(&started);
    cf_test_latch_init(&finished);
    atomic_int seq = 0;
    ordered_call calls[N];
    void *args[N];
    for (int i = 0; i < N; i++) {
        calls[i] =
            (ordered_call){.started = &started, .finished = &finished, .finish_seq = &seq, .id = i};
        cf_test_event_init(&calls[i].go);
        args[i] = &calls[i];
    }
    cf_map *it = map_of(ex, ordered_task, args, N, CF_FOREVER, 1);
    ck_assert(cf_test_latch_wait(&started, N, CF_TEST_LONG));
    /* Finish them last to first. */
    for (int i = N - 1; i >= 0; i--) {
        cf_test_event_set(&calls[i].go);
        ck_assert(cf_test_latch_wait(&finished, (unsigned)(N - i), CF_TEST_LONG));
    }
    ck_assert_ptr_null(cf_map_current(it));
    for (int i = 0; i < N; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_map_next(&value, it), 0);
        ck_assert_ptr_eq(value, (void *)(intptr_t)(i * 10));
        ck_assert_ptr_nonnull(cf_map_current(it));
        ck_assert_int_eq(calls[i].finish_pos, N - 1 - i);
    }
    expect_eof(it);
    expect_eof(it);
    cf_map_free(it);
    for (int i = 0; i < N; i++)
        cf_test_event_destroy(&calls[i].go);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_latch_destroy(&started);
    cf_test_latch_destroy(&finished);
}
END_TEST

static int fail_some_task(void *arg, void **result)
{
    intptr_t i = (intptr_t)arg;
    if (i % 4 == 3)
        return cf_task_fail((int)(-100 - i), "call %d failed", (int)i);
    *result = (void *)(i + 1);
    return 0;
}

static void check_failures_continue(size_t chunksize)
{
    enum { N = 10 };
    cf_executor *ex = cf_test_pool(3);
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_map *it = map_of(ex, fail_some_task, args, N, CF_FOREVER, chunksize);
    for (intptr_t i = 0; i < N; i++) {
        void *value = (void *)-1;
        int rc = cf_map_next(&value, it);
        cf_future *f = cf_map_current(it);
        ck_assert_ptr_nonnull(f);
        ck_assert(cf_future_done(f));
        if (i % 4 == 3) {
            ck_assert_int_eq(rc, CF_ETASK);
            ck_assert_ptr_null(value);
            int code = 0;
            const char *msg = NULL;
            ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
            ck_assert_int_eq(code, -100 - (int)i);
            char want[32];
            snprintf(want, sizeof(want), "call %d failed", (int)i);
            ck_assert_str_eq(msg, want);
        } else {
            ck_assert_int_eq(rc, 0);
            ck_assert_ptr_eq(value, (void *)(i + 1));
        }
    }
    expect_eof(it);
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

START_TEST(test_failed_call_reported_and_iteration_continues)
{
    check_failures_continue(1);
    check_failures_continue(3); /* CPython's chunksize=3 variant */
    check_failures_continue(0);
}
END_TEST

START_TEST(test_chunksizes)
{
    enum { N = 50 };
    const size_t sizes[] = {1, 7, N, 0, 1000, N - 1};
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        cf_executor *ex = cf_test_pool(3);
        cf_map *it = map_of(ex, square_task, args, N, CF_FOREVER, sizes[k]);
        for (intptr_t i = 0; i < N; i++) {
            void *value = NULL;
            ck_assert_int_eq(cf_map_next(&value, it), 0);
            ck_assert_ptr_eq(value, (void *)(i * i));
        }
        expect_eof(it);
        cf_map_free(it);
        ck_assert_int_eq(cf_executor_free(ex), 0);
    }
}
END_TEST

START_TEST(test_single_call_and_null_value)
{
    cf_executor *ex = cf_test_pool(1);
    void *args[] = {(void *)9};
    cf_map *it = map_of(ex, square_task, args, 1, CF_FOREVER, 0);
    ck_assert_int_eq(cf_map_next(NULL, it), 0);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, cf_map_current(it), 0), 0);
    ck_assert_ptr_eq(value, (void *)81);
    ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct dtor_count {
    atomic_int dtor; /* first: the result value points here */
    atomic_int ran;
} dtor_count;

static int dtor_result_task(void *arg, void **result)
{
    dtor_count *dc = arg;
    atomic_fetch_add(&dc->ran, 1);
    cf_task_set_result_dtor(cf_test_count_dtor);
    *result = &dc->dtor;
    return 0;
}

START_TEST(test_results_released_once)
{
    enum { N = 20 };
    dtor_count dc;
    atomic_init(&dc.dtor, 0);
    atomic_init(&dc.ran, 0);
    cf_executor *ex = cf_test_pool(2);
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = &dc;
    cf_map *it = map_of(ex, dtor_result_task, args, N, CF_FOREVER, 4);
    for (int i = 0; i < N / 2; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_map_next(&value, it), 0);
        ck_assert_ptr_eq(value, &dc.dtor);
    }
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    /* Every result produced is destroyed exactly once (later calls may have been cancelled). */
    ck_assert_int_ge(atomic_load(&dc.ran), N / 2);
    ck_assert_int_eq(atomic_load(&dc.dtor), atomic_load(&dc.ran));
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- deadline ---- */

typedef struct counted_gate {
    cf_test_gate gate;
    atomic_int ran;
} counted_gate;

typedef struct call {
    counted_gate *cg;
    bool block;
} call;

static int call_task(void *arg, void **result)
{
    call *c = arg;
    atomic_fetch_add(&c->cg->ran, 1);
    if (c->block)
        return cf_test_gate_task(&c->cg->gate, result);
    *result = c;
    return 0;
}

START_TEST(test_timeout_from_map_call_cancels_rest)
{
    enum { N = 5 };
    cf_executor *ex = cf_test_pool(1);
    counted_gate cg;
    cf_test_gate_init(&cg.gate);
    atomic_init(&cg.ran, 0);
    call calls[N];
    void *args[N];
    for (int i = 0; i < N; i++) {
        calls[i] = (call){.cg = &cg, .block = i == 0};
        args[i] = &calls[i];
    }
    double t0 = cf_test_monotonic();
    cf_map *it = map_of(ex, call_task, args, N, 0.3, 1);
    ck_assert(cf_test_latch_wait(&cg.gate.started, 1, CF_TEST_LONG));
    /* Spend most of the budget before iterating. */
    cf_future *never = NULL;
    ck_assert_int_eq(cf_future_new(&never), 0);
    ck_assert_int_eq(cf_future_result(NULL, never, 0.25), CF_ETIMEDOUT);
    double t1 = cf_test_monotonic();
    void *value = (void *)1;
    ck_assert_int_eq(cf_map_next(&value, it), CF_ETIMEDOUT);
    double t2 = cf_test_monotonic();
    ck_assert_ptr_null(value);
    ck_assert_double_ge(t2 - t0, 0.295);
    /* Measured from the map call, not from this next(), which would take at least 0.3 s. */
    ck_assert_double_lt(t2 - t1, 0.25);
    /* The iterator is finished. */
    expect_eof(it);
    cf_map_free(it);
    /* The running call cannot be cancelled; every later one was. */
    cf_test_event_set(&cg.gate.release);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&cg.ran), 1);
    ck_assert_int_eq(atomic_load(&cg.gate.finished), 1);
    cf_future_unref(never);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&cg.gate);
}
END_TEST

START_TEST(test_timeout_cancels_the_call_waited_for)
{
    /* CPython's test_executor_map_current_future_cancel: with the only worker busy, a zero
     * timeout expires at the first next(); the call it waited for is cancelled like the rest,
     * so neither call ever runs. */
    cf_executor *ex = cf_test_pool(1);
    counted_gate cg;
    cf_test_gate_init(&cg.gate);
    atomic_init(&cg.ran, 0);
    call first = {.cg = &cg, .block = true};
    cf_future *busy = NULL;
    ck_assert_int_eq(cf_executor_submit(&busy, ex, call_task, &first), 0);
    ck_assert(cf_test_latch_wait(&cg.gate.started, 1, CF_TEST_LONG));
    call calls[2] = {{.cg = &cg}, {.cg = &cg}};
    void *args[2] = {&calls[0], &calls[1]};
    cf_map *it = map_of(ex, call_task, args, 2, 0, 1);
    ck_assert_int_eq(cf_map_next(NULL, it), CF_ETIMEDOUT);
    expect_eof(it);
    cf_map_free(it);
    cf_test_event_set(&cg.gate.release);
    ck_assert_int_eq(cf_future_result(NULL, busy, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&cg.ran), 1);
    cf_future_unref(busy);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&cg.gate);
}
END_TEST

START_TEST(test_available_result_returned_after_deadline)
{
    cf_executor *ex = cf_test_pool(1);
    counted_gate cg;
    cf_test_gate_init(&cg.gate);
    atomic_init(&cg.ran, 0);
    call calls[2] = {{.cg = &cg}, {.cg = &cg, .block = true}};
    void *args[2] = {&calls[0], &calls[1]};
    cf_map *it = map_of(ex, call_task, args, 2, 0.05, 1);
    /* One worker: once call 1 runs, call 0 has completed. */
    ck_assert(cf_test_latch_wait(&cg.gate.started, 1, CF_TEST_LONG));
    cf_future *never = NULL;
    ck_assert_int_eq(cf_future_new(&never), 0);
    ck_assert_int_eq(cf_future_result(NULL, never, 0.1), CF_ETIMEDOUT);
    void *value = NULL;
    ck_assert_int_eq(cf_map_next(&value, it), 0);
    ck_assert_ptr_eq(value, &calls[0]);
    ck_assert_int_eq(cf_map_next(&value, it), CF_ETIMEDOUT);
    expect_eof(it);
    cf_map_free(it);
    cf_test_event_set(&cg.gate.release);
    cf_future_unref(never);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&cg.gate);
}
END_TEST

START_TEST(test_generous_timeout_not_hit)
{
    enum { N = 30 };
    cf_executor *ex = cf_test_pool(2);
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_map *it = map_of(ex, square_task, args, N, CF_TEST_LONG, 0);
    for (intptr_t i = 0; i < N; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_map_next(&value, it), 0);
        ck_assert_ptr_eq(value, (void *)(i * i));
    }
    expect_eof(it);
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- bounded pools ---- */

static void check_bounded(cf_queue_policy policy, size_t chunksize)
{
    enum { N = 100 };
    cf_thread_pool_options o = {.max_workers = 2, .max_queue = 4, .queue_policy = policy};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    void *args[N];
    for (intptr_t i = 0; i < N; i++)
        args[i] = (void *)i;
    cf_map *it = map_of(ex, square_task, args, N, CF_FOREVER, chunksize);
    for (intptr_t i = 0; i < N; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_map_next(&value, it), 0);
        ck_assert_ptr_eq(value, (void *)(i * i));
    }
    expect_eof(it);
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

START_TEST(test_bounded_pool_block)
{
    check_bounded(CF_QUEUE_BLOCK, 10);
    check_bounded(CF_QUEUE_BLOCK, 0);
    check_bounded(CF_QUEUE_BLOCK, 1);
    check_bounded(CF_QUEUE_BLOCK, 4);
}
END_TEST

START_TEST(test_bounded_pool_caller_runs)
{
    check_bounded(CF_QUEUE_CALLER_RUNS, 10);
    check_bounded(CF_QUEUE_CALLER_RUNS, 0);
}
END_TEST

static int count_task(void *arg, void **result)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    *result = NULL;
    return 0;
}

START_TEST(test_bounded_pool_reject_runs_nothing)
{
    /* The queue takes one chunk of 4; the next chunk is refused, so the map fails as a whole
     * and the chunk already queued is cancelled before it can start. */
    cf_thread_pool_options o = {.max_workers = 1, .max_queue = 4, .queue_policy = CF_QUEUE_REJECT};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *blocker = NULL;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    atomic_int ran = 0;
    void *args[10];
    for (int i = 0; i < 10; i++)
        args[i] = &ran;
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(&it, ex, count_task, args, 10, CF_FOREVER, 0), CF_EFULL);
    ck_assert_ptr_null(it);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    cf_future_unref(blocker);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* ---- bytes ---- */

static int upper_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    char *out = malloc(len + 1);
    if (!out)
        return CF_ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)toupper(((const unsigned char *)arg)[i]);
    *result = out;
    *result_len = len;
    return 0;
}

START_TEST(test_map_bytes)
{
    enum { N = 4 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *blocker = NULL;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    char bufs[N][8] = {"alpha", "be", "", "delta"};
    cf_bytes args[N];
    for (int i = 0; i < N; i++)
        args[i] = (cf_bytes){.data = bufs[i], .len = strlen(bufs[i])};
    args[2] = (cf_bytes){.data = NULL, .len = 0};
    cf_map *it = NULL;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, args, N, CF_FOREVER, 2), 0);
    /* The arguments were copied: the calls have not run yet, and cannot see this. */
    for (int i = 0; i < N; i++)
        memset(bufs[i], '#', sizeof(bufs[i]));
    cf_test_event_set(&g.release);
    const char *want[N] = {"ALPHA", "BE", "", "DELTA"};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cf_map_next(NULL, it), 0);
        const void *data = NULL;
        size_t len = 99;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, cf_map_current(it), 0), 0);
        ck_assert_uint_eq(len, strlen(want[i]));
        ck_assert_mem_eq(data, want[i], len);
    }
    expect_eof(it);
    cf_map_free(it);
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    cf_future_unref(blocker);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

/* cf_map_next_bytes gives each result's bytes with their length; a pointer result is refused
 * without ending the iteration. */
START_TEST(test_map_next_bytes)
{
    cf_executor *ex = cf_test_pool(2);
    cf_bytes args[3] = {{"one", 3}, {NULL, 0}, {"three", 5}};
    cf_map *it = NULL;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, args, 3, CF_FOREVER, 0), 0);
    const char *want[3] = {"ONE", "", "THREE"};
    for (int i = 0; i < 3; i++) {
        const void *data = NULL;
        size_t len = 99;
        ck_assert_int_eq(cf_map_next_bytes(&data, &len, it), 0);
        ck_assert_ptr_nonnull(data);
        ck_assert_uint_eq(len, strlen(want[i]));
        ck_assert_mem_eq(data, want[i], len);
        /* The same bytes as through the future. */
        const void *again = NULL;
        ck_assert_int_eq(cf_future_result_bytes(&again, NULL, cf_map_current(it), 0), 0);
        ck_assert_ptr_eq(again, data);
    }
    const void *data = (const void *)1;
    size_t len = 99;
    ck_assert_int_eq(cf_map_next_bytes(&data, &len, it), CF_EOF);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(cf_map_next_bytes(NULL, NULL, it), CF_EOF);
    cf_map_free(it);

    /* The results of a pointer map are not bytes: CF_EINVAL for each, and iteration goes on. */
    void *pargs[2] = {(void *)2, (void *)3};
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, pargs, 2, CF_FOREVER, 0), 0);
    ck_assert_int_eq(cf_map_next_bytes(&data, &len, it), CF_EINVAL);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(cf_map_next_bytes(&data, &len, it), CF_EINVAL);
    ck_assert_int_eq(cf_map_next_bytes(&data, &len, it), CF_EOF);
    cf_map_free(it);
    ck_assert_int_eq(cf_map_next_bytes(&data, &len, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* As Python's map over an empty iterable: an iterator with nothing to yield, no task run. */
START_TEST(test_map_of_nothing)
{
    cf_executor *ex = cf_test_pool(1);
    cf_map *it = NULL;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, NULL, 0, CF_FOREVER, 0), 0);
    void *value = (void *)1;
    ck_assert_int_eq(cf_map_next(&value, it), CF_EOF);
    ck_assert_ptr_null(value);
    ck_assert_ptr_null(cf_map_current(it));
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, NULL, 0, 1.0, 7), 0);
    ck_assert_int_eq(cf_map_next_bytes(NULL, NULL, it), CF_EOF);
    cf_map_free(it);
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    ck_assert_uint_eq(s.threads_started, 0);
    /* The other arguments are still checked. */
    ck_assert_int_eq(cf_executor_map(&it, ex, NULL, NULL, 0, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, NULL, 0, NAN, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_map_bytes_invalid)
{
    cf_executor *ex = cf_test_pool(1);
    cf_bytes args[3] = {{"a", 1}, {NULL, 2}, {"c", 1}};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, args, 3, CF_FOREVER, 0),
                     CF_EINVAL);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, NULL, 3, CF_FOREVER, 0),
                     CF_EINVAL);
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, NULL, args, 1, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, args, 1, NAN, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map_bytes(NULL, ex, upper_bytes_task, args, 1, CF_FOREVER, 0),
                     CF_EINVAL);
    /* Nothing ran. */
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    ck_assert_uint_eq(s.threads_started, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- freeing early, cancellation, shutdown ---- */

START_TEST(test_free_before_start_cancels_everything)
{
    enum { N = 10 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *blocker = NULL;
    ck_assert_int_eq(cf_executor_submit(&blocker, ex, cf_test_gate_task, &g), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    atomic_int ran = 0;
    void *args[N];
    for (int i = 0; i < N; i++)
        args[i] = &ran;
    cf_map *it = map_of(ex, count_task, args, N, CF_FOREVER, 3);
    cf_map_free(it);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_int_eq(cf_future_result(NULL, blocker, 0), 0);
    cf_future_unref(blocker);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_free_midway_cancels_not_started)
{
    enum { N = 10 };
    cf_executor *ex = cf_test_pool(1);
    counted_gate cg;
    cf_test_gate_init(&cg.gate);
    atomic_init(&cg.ran, 0);
    call calls[N];
    void *args[N];
    for (int i = 0; i < N; i++) {
        calls[i] = (call){.cg = &cg, .block = i == 2};
        args[i] = &calls[i];
    }
    cf_map *it = map_of(ex, call_task, args, N, CF_FOREVER, 1);
    for (int i = 0; i < 2; i++) {
        void *value = NULL;
        ck_assert_int_eq(cf_map_next(&value, it), 0);
        ck_assert_ptr_eq(value, &calls[i]);
    }
    /* Call 2 is running on the only worker; 3..9 have not started. */
    ck_assert(cf_test_latch_wait(&cg.gate.started, 1, CF_TEST_LONG));
    cf_map_free(it);
    cf_test_event_set(&cg.gate.release);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&cg.ran), 3);
    ck_assert_int_eq(atomic_load(&cg.gate.finished), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&cg.gate);
}
END_TEST

START_TEST(test_calls_cancelled_by_shutdown)
{
    enum { N = 5 };
    cf_executor *ex = cf_test_pool(1);
    counted_gate cg;
    cf_test_gate_init(&cg.gate);
    atomic_init(&cg.ran, 0);
    call calls[N];
    void *args[N];
    for (int i = 0; i < N; i++) {
        calls[i] = (call){.cg = &cg, .block = i == 0};
        args[i] = &calls[i];
    }
    cf_map *it = map_of(ex, call_task, args, N, CF_FOREVER, 2);
    ck_assert(cf_test_latch_wait(&cg.gate.started, 1, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    cf_test_event_set(&cg.gate.release);
    void *value = NULL;
    ck_assert_int_eq(cf_map_next(&value, it), 0);
    ck_assert_ptr_eq(value, &cg.gate);
    for (int i = 1; i < N; i++) {
        ck_assert_int_eq(cf_map_next(&value, it), CF_ECANCELLED);
        ck_assert(cf_future_cancelled(cf_map_current(it)));
    }
    expect_eof(it);
    cf_map_free(it);
    ck_assert_int_eq(atomic_load(&cg.ran), 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&cg.gate);
}
END_TEST

START_TEST(test_map_after_shutdown)
{
    cf_executor *ex = cf_test_pool(1);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    void *args[] = {(void *)1, (void *)2};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, args, 2, CF_FOREVER, 0), CF_ESHUTDOWN);
    ck_assert_ptr_null(it);
    cf_bytes bargs[] = {{"x", 1}};
    it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, upper_bytes_task, bargs, 1, CF_FOREVER, 0),
                     CF_ESHUTDOWN);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_invalid_arguments)
{
    cf_executor *ex = cf_test_pool(1);
    void *args[] = {(void *)1};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(NULL, ex, square_task, args, 1, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map(&it, NULL, square_task, args, 1, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_ptr_null(it);
    ck_assert_int_eq(cf_executor_map(&it, ex, NULL, args, 1, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, NULL, 1, CF_FOREVER, 0), CF_EINVAL);
    ck_assert_int_eq(cf_executor_map(&it, ex, square_task, args, 1, NAN, 0), CF_EINVAL);
    ck_assert_ptr_null(it);
    void *value = (void *)1;
    ck_assert_int_eq(cf_map_next(&value, NULL), CF_EINVAL);
    ck_assert_ptr_null(value);
    ck_assert_ptr_null(cf_map_current(NULL));
    cf_map_free(NULL);
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    ck_assert_uint_eq(s.threads_started, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("map");
    TCase *tc = cf_test_tcase("results");
    tcase_add_test(tc, test_results_in_input_order);
    tcase_add_test(tc, test_failed_call_reported_and_iteration_continues);
    tcase_add_test(tc, test_chunksizes);
    tcase_add_test(tc, test_single_call_and_null_value);
    tcase_add_test(tc, test_results_released_once);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("deadline");
    tcase_add_test(tc, test_timeout_from_map_call_cancels_rest);
    tcase_add_test(tc, test_timeout_cancels_the_call_waited_for);
    tcase_add_test(tc, test_available_result_returned_after_deadline);
    tcase_add_test(tc, test_generous_timeout_not_hit);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("bounded");
    tcase_add_test(tc, test_bounded_pool_block);
    tcase_add_test(tc, test_bounded_pool_caller_runs);
    tcase_add_test(tc, test_bounded_pool_reject_runs_nothing);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("bytes");
    tcase_add_test(tc, test_map_bytes);
    tcase_add_test(tc, test_map_bytes_invalid);
    tcase_add_test(tc, test_map_next_bytes);
    tcase_add_test(tc, test_map_of_nothing);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("lifetime");
    tcase_add_test(tc, test_free_before_start_cancels_everything);
    tcase_add_test(tc, test_free_midway_cancels_not_started);
    tcase_add_test(tc, test_calls_cancelled_by_shutdown);
    tcase_add_test(tc, test_map_after_shutdown);
    tcase_add_test(tc, test_invalid_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
