/* The process pool: results and errors across the process boundary, payload sizes, options,
 * initializer, max_tasks_per_child, shutdown, cancellation, callbacks, wait/as_completed mixing,
 * fork() children, the fresh-image rule. Ported in spirit from CPython's test_process_pool,
 * test_init, test_shutdown, test_wait and test_as_completed (process variants). Failure and
 * lifetime cases are in test_process_faults.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"
#include "proc_util.h"

/* ---- tasks (they run in the workers) ---- */

static int fail_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)result;
    (void)result_len;
    return cf_task_fail(-42, "bad input: %.*s", (int)len, (const char *)arg);
}

static int empty_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
    return 0;
}

static int runtime_global;

static int read_global_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    return proc_util_return_int(runtime_global, result, result_len);
}

/* Sum of bytes, with the length: checks a large argument arrived intact. */
static int checksum_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum = sum * 31 + ((const unsigned char *)arg)[i];
    uint64_t *out = malloc(2 * sizeof(uint64_t));
    out[0] = sum;
    out[1] = len;
    *result = out;
    *result_len = 2 * sizeof(uint64_t);
    return 0;
}

/* Returns `n` bytes of a pattern, n given as the argument. */
static int produce_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    uint64_t n;
    if (len != sizeof(n))
        return CF_EINVAL;
    memcpy(&n, arg, sizeof(n));
    unsigned char *out = malloc(n ? n : 1);
    for (uint64_t i = 0; i < n; i++)
        out[i] = (unsigned char)(i * 7 + 3);
    *result = out;
    *result_len = n;
    return 0;
}

static int init_value;

static int init_set(const void *arg, size_t len)
{
    if (len != sizeof(int))
        return CF_EINVAL;
    memcpy(&init_value, arg, sizeof(int));
    return 0;
}

static int read_init_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    return proc_util_return_int(init_value, result, result_len);
}

/* ---- results and errors ---- */

START_TEST(test_result_round_trip)
{
    cf_executor *ex = proc_util_new_pool(2);
    char buf[16] = "hello";
    cf_future *f = proc_util_submit_str(ex, cf_test_reverse_task, buf);
    memcpy(buf, "XXXXX", 5); /* the argument was copied at submit */
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 5);
    ck_assert_int_eq(memcmp(data, "olleh", 5), 0);
    ck_assert_int_eq(cf_future_get_state(f), CF_FUTURE_FINISHED);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_error_round_trip)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = proc_util_submit_str(ex, fail_task, "xyz");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
    ck_assert_int_eq(code, -42);
    ck_assert_str_eq(msg, "bad input: xyz");
    cf_future_unref(f);
    /* The pool stays healthy after a task failure. */
    f = proc_util_submit_str(ex, cf_test_reverse_task, "ab");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_empty_argument_and_result)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, empty_task, NULL, 0), 0);
    const void *data = (const void *)1;
    size_t len = 99;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_many_tasks_in_order)
{
    cf_executor *ex = proc_util_new_pool(2);
    enum { N = 2000 };
    cf_future **fs = malloc(N * sizeof(*fs));
    for (int i = 0; i < N; i++) {
        char s[32];
        snprintf(s, sizeof(s), "%d", i);
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, s);
    }
    for (int i = 0; i < N; i++) {
        char s[32], r[32];
        int n = snprintf(s, sizeof(s), "%d", i);
        for (int k = 0; k < n; k++)
            r[k] = s[n - 1 - k];
        const void *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, fs[i], CF_TEST_LONG), 0);
        ck_assert_uint_eq(len, (size_t)n);
        ck_assert_int_eq(memcmp(data, r, (size_t)n), 0);
        cf_future_unref(fs[i]);
    }
    free(fs);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_map_bytes_in_order_with_errors)
{
    cf_executor *ex = proc_util_new_pool(2);
    const char *in[] = {"a", "bc", "def", "gh", "i"};
    cf_bytes args[5];
    for (int i = 0; i < 5; i++)
        args[i] = (cf_bytes){in[i], strlen(in[i])};
    for (size_t chunk = 0; chunk <= 3; chunk++) {
        cf_map *it;
        ck_assert_int_eq(
            cf_executor_map_bytes(&it, ex, cf_test_reverse_task, args, 5, CF_TEST_LONG, chunk), 0);
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(cf_map_next(NULL, it), 0);
            const void *d;
            size_t len;
            ck_assert_int_eq(cf_future_result_bytes(&d, &len, cf_map_current(it), 0), 0);
            ck_assert_uint_eq(len, strlen(in[i]));
        }
        ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
        cf_map_free(it);
    }
    cf_map *it;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, fail_task, args, 3, CF_TEST_LONG, 2), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(cf_map_next(NULL, it), CF_ETASK); /* iteration continues */
    ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
    cf_map_free(it);
    cf_executor_free(ex);
}
END_TEST

static void check_large(size_t size)
{
    cf_executor *ex = proc_util_new_pool(2);
    unsigned char *big = malloc(size);
    uint64_t sum = 0;
    for (size_t i = 0; i < size; i++) {
        big[i] = (unsigned char)(i * 13 + 1);
        sum = sum * 31 + big[i];
    }
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, checksum_task, big, size), 0);
    free(big);
    const uint64_t *r;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes((const void **)&r, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 16);
    ck_assert_uint_eq(r[0], sum);
    ck_assert_uint_eq(r[1], size);
    cf_future_unref(f);

    uint64_t n = size;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, produce_task, &n, sizeof(n)), 0);
    const unsigned char *out;
    ck_assert_int_eq(cf_future_result_bytes((const void **)&out, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, size);
    for (size_t i = 0; i < size; i++)
        if (out[i] != (unsigned char)(i * 7 + 3))
            ck_abort_msg("byte %zu differs", i);
    cf_future_unref(f);
    cf_executor_free(ex);
}

START_TEST(test_large_payloads_16mib)
{
    check_large((size_t)16 << 20);
}
END_TEST

START_TEST(test_payload_sizes_around_threshold)
{
    size_t sizes[] = {65535, 65536, 65537, 200000};
    for (size_t i = 0; i < 4; i++)
        check_large(sizes[i]);
}
END_TEST

/* ---- the interface rules ---- */

static int pointer_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

START_TEST(test_pointer_tasks_not_supported)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, pointer_task, NULL), CF_ENOTSUP);
    ck_assert_ptr_null(f);
    void *args[1] = {NULL};
    cf_map *it;
    ck_assert_int_eq(cf_executor_map(&it, ex, pointer_task, args, 1, CF_FOREVER, 0), CF_ENOTSUP);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_invalid_options)
{
    cf_executor *ex = (cf_executor *)1;
    ck_assert_int_eq(cf_process_pool_new(NULL, NULL), CF_EINVAL);
    cf_process_pool_options o = {.max_workers = 100000};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_ptr_null(ex);
    o = (cf_process_pool_options){.initializer = init_set, .initializer_arg_len = 4};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    /* An initializer that is not code in any module. */
    static char not_code[16];
    o = (cf_process_pool_options){.initializer = (int (*)(const void *, size_t))(void *)not_code};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_terminate(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_kill(NULL), CF_EINVAL);
    cf_executor *tp;
    ck_assert_int_eq(cf_thread_pool_new(&tp, NULL), 0);
    ck_assert_int_eq(cf_process_pool_terminate(tp), CF_EINVAL);
    cf_executor_free(tp);
}
END_TEST

START_TEST(test_function_outside_modules_rejected)
{
    cf_executor *ex = proc_util_new_pool(1);
    static char data_not_code[64];
    char stack_not_code[64];
    void *heap_not_code = malloc(64);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, (cf_bytes_fn)(void *)data_not_code, "x", 1),
                     CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, (cf_bytes_fn)(void *)stack_not_code, "x", 1),
                     CF_EINVAL);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, (cf_bytes_fn)heap_not_code, "x", 1),
                     CF_EINVAL);
    free(heap_not_code);
    /* The pool is still fine. */
    f = proc_util_submit_str(ex, cf_test_reverse_task, "ok");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_function_from_shared_library)
{
    /* A function in libc: resolved as (libc path, offset) in the worker. A bytes task in libc
     * does not exist, so use one of ours in libcfutures' neighbour: cf_version is code in the
     * cfutures shared library. Calling it as a bytes task would be wrong, so only check that
     * the translation accepts it and the worker resolves the module: use a real task instead
     * through the test's own module, and a library function via the initializer below. */
    cf_process_pool_options o = {.max_workers = 1,
                                 .initializer = (int (*)(const void *, size_t))(void *)cf_version};
    cf_executor *ex;
    /* cf_version() returns a non-zero version: as an initializer that is a failure, which
     * proves the library's function was found and called in the worker. */
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *f = proc_util_submit_str(ex, cf_test_reverse_task, "x");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    int code;
    const char *msg;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, 0), 0);
    ck_assert_int_eq(code, CF_EBROKEN);
    ck_assert_ptr_nonnull(strstr(msg, "initializer failed"));
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_workers_are_fresh_images)
{
    runtime_global = 1234; /* set at run time in the parent: not visible in workers */
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = proc_util_submit_str(ex, read_global_task, "");
    ck_assert_int_eq(proc_util_int_result(f), 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

/* ---- initializer ---- */

START_TEST(test_initializer_runs_in_each_worker)
{
    int value = 77;
    cf_process_pool_options o = {.max_workers = 2,
                                 .initializer = init_set,
                                 .initializer_arg = &value,
                                 .initializer_arg_len = sizeof(value)};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    value = 0; /* copied at creation */
    cf_future *fs[8];
    for (int i = 0; i < 8; i++)
        fs[i] = proc_util_submit_str(ex, read_init_task, "");
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(proc_util_int_result(fs[i]), 77);
        cf_future_unref(fs[i]);
    }
    cf_executor_free(ex);
}
END_TEST

static int init_fail(const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return cf_task_fail(-5, "cannot set up");
}

START_TEST(test_initializer_failure_breaks_pool)
{
    cf_process_pool_options o = {.max_workers = 2, .initializer = init_fail};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    /* The first worker may fail before all of these are submitted: then submit says so. */
    cf_future *fs[5];
    int accepted = 0;
    for (int i = 0; i < 5; i++) {
        int rc = cf_executor_submit_bytes(&fs[accepted], ex, cf_test_reverse_task, "abc", 3);
        if (rc == 0)
            accepted++;
        else
            ck_assert_int_eq(rc, CF_EBROKEN);
    }
    ck_assert_int_ge(accepted, 1);
    for (int i = 0; i < accepted; i++) {
        int code;
        const char *msg;
        ck_assert_int_eq(cf_future_exception(&code, &msg, fs[i], CF_TEST_LONG), 0);
        ck_assert_int_eq(code, CF_EBROKEN);
        ck_assert_ptr_nonnull(strstr(msg, "initializer failed"));
        ck_assert_ptr_nonnull(strstr(msg, "cannot set up"));
        cf_future_unref(fs[i]);
    }
    /* The pool is marked broken before its futures fail. */
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_reverse_task, "a", 1), CF_EBROKEN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_large_initializer_argument)
{
    size_t size = 300000;
    unsigned char *arg = malloc(size);
    memset(arg, 5, size);
    memcpy(arg, &(int){99}, sizeof(int));
    cf_process_pool_options o = {.max_workers = 1,
                                 .initializer = init_set,
                                 .initializer_arg = arg,
                                 .initializer_arg_len = sizeof(int)};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    free(arg);
    cf_future *f = proc_util_submit_str(ex, read_init_task, "");
    ck_assert_int_eq(proc_util_int_result(f), 99);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

/* ---- workers: reuse, saturation, max_tasks_per_child ---- */

START_TEST(test_idle_worker_reuse)
{
    cf_executor *ex = proc_util_new_pool(4);
    int pids[6];
    for (int i = 0; i < 6; i++) {
        cf_future *f = proc_util_submit_str(ex, proc_util_getpid_task, "");
        pids[i] = proc_util_int_result(f);
        cf_future_unref(f);
    }
    for (int i = 1; i < 6; i++)
        ck_assert_int_eq(pids[i], pids[0]);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_saturation)
{
    cf_executor *ex = proc_util_new_pool(2);
    enum { N = 40 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int distinct[N], nd = 0;
    for (int i = 0; i < N; i++) {
        int pid = proc_util_int_result(fs[i]);
        int k = 0;
        while (k < nd && distinct[k] != pid)
            k++;
        if (k == nd)
            distinct[nd++] = pid;
        cf_future_unref(fs[i]);
    }
    ck_assert_int_le(nd, 2);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_max_tasks_per_child_replaces_workers)
{
    cf_process_pool_options o = {.max_workers = 2, .max_tasks_per_child = 1};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    enum { N = 100 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = proc_util_int_result(fs[i]);
        ck_assert_int_gt(pids[i], 0);
        cf_future_unref(fs[i]);
    }
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < N; k++)
            ck_assert_int_ne(pids[i], pids[k]);
    cf_executor_free(ex);
}
END_TEST

/* gh-115634: one worker, two tasks per child, ten tasks: all complete (no hang). */
START_TEST(test_max_tasks_pending_tasks)
{
    cf_process_pool_options o = {.max_workers = 1, .max_tasks_per_child = 2};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int pids[10];
    for (int i = 0; i < 10; i++) {
        pids[i] = proc_util_int_result(fs[i]);
        cf_future_unref(fs[i]);
    }
    /* Each worker ran exactly two tasks. */
    for (int i = 0; i < 10; i += 2) {
        ck_assert_int_eq(pids[i], pids[i + 1]);
        if (i)
            ck_assert_int_ne(pids[i], pids[i - 1]);
    }
    cf_executor_free(ex);
}
END_TEST

/* gh-119592: shutdown(wait=false) with max_tasks_per_child still runs everything. */
START_TEST(test_max_tasks_shutdown_no_wait)
{
    cf_process_pool_options o = {.max_workers = 1, .max_tasks_per_child = 2};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *fs[7];
    for (int i = 0; i < 7; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "ab");
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(cf_future_result(NULL, fs[i], CF_TEST_LONG), 0);
        cf_future_unref(fs[i]);
    }
    cf_executor_free(ex);
}
END_TEST

/* ---- shutdown and cancellation ---- */

START_TEST(test_submit_after_shutdown)
{
    cf_executor *ex = proc_util_new_pool(1);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, true), 0); /* idempotent */
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_reverse_task, "a", 1), CF_ESHUTDOWN);
    ck_assert_ptr_null(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_shutdown_wait_runs_queued_work)
{
    cf_executor *ex = proc_util_new_pool(2);
    enum { N = 50 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "abc");
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    for (int i = 0; i < N; i++) {
        ck_assert(cf_future_done(fs[i])); /* done before shutdown returned */
        ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(proc_util_count_children(), 0);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_cancel_pending_until_dispatched)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex = proc_util_new_pool(1);
    proc_util_warm(ex); /* the blocker is dispatched at once */
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    enum { N = 20 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "x");
    /* The blocker and a few behind it are dispatched (RUNNING: no longer cancellable); the rest
     * are pending and can be cancelled. */
    ck_assert(cf_future_running(blocker));
    ck_assert(!cf_future_cancel(blocker));
    int cancelled = 0, running = 0;
    for (int i = 0; i < N; i++) {
        if (cf_future_running(fs[i])) {
            running++;
            ck_assert(!cf_future_cancel(fs[i]));
        } else {
            ck_assert_int_eq(cf_future_get_state(fs[i]), CF_FUTURE_PENDING);
            ck_assert(cf_future_cancel(fs[i]));
            cancelled++;
        }
    }
    ck_assert_int_ge(cancelled, N - 8);
    proc_util_release_fifo(fifo);
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    for (int i = 0; i < N; i++) {
        int rc = cf_future_result(NULL, fs[i], CF_TEST_LONG);
        ck_assert_int_eq(rc, cf_future_cancelled(fs[i]) ? CF_ECANCELLED : 0);
        cf_future_unref(fs[i]);
    }
    (void)running;
    cf_future_unref(blocker);
    cf_executor_free(ex);
    unlink(fifo);
}
END_TEST

START_TEST(test_shutdown_cancel_futures)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex = proc_util_new_pool(1);
    proc_util_warm(ex); /* the blocker is dispatched at once */
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    enum { N = 30 };
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "x");
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    int cancelled = 0;
    for (int i = 0; i < N; i++)
        cancelled += cf_future_cancelled(fs[i]);
    ck_assert_int_ge(cancelled, N - 8);
    proc_util_release_fifo(fifo);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(cf_future_result(NULL, blocker, 0), 0);
    for (int i = 0; i < N; i++) {
        ck_assert(cf_future_done(fs[i]));
        if (!cf_future_cancelled(fs[i]))
            ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
        cf_future_unref(fs[i]);
    }
    cf_future_unref(blocker);
    cf_executor_free(ex);
    unlink(fifo);
}
END_TEST

static void shutdown_from_callback(cf_future *f, void *data)
{
    (void)f;
    cf_executor_shutdown(data, true, false); /* must not deadlock on the manager thread */
}

START_TEST(test_shutdown_from_callback)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = proc_util_submit_str(ex, cf_test_reverse_task, "a");
    ck_assert_int_eq(cf_future_add_done_callback(f, shutdown_from_callback, ex), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

static void free_from_callback(cf_future *f, void *data)
{
    (void)f;
    ck_assert_int_eq(cf_executor_free(data), 0);
}

START_TEST(test_free_from_callback)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = proc_util_submit_str(ex, cf_test_reverse_task, "a");
    cf_test_event ev;
    cf_test_event_init(&ev);
    ck_assert_int_eq(cf_future_add_done_callback(f, free_from_callback, ex), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    /* The manager frees the pool when it finishes; the processes go away. */
    ck_assert(proc_util_wait_no_children(CF_TEST_LONG));
    cf_test_event_destroy(&ev);
}
END_TEST

/* ---- callbacks, wait, as_completed ---- */

static void count_cb(cf_future *f, void *data)
{
    (void)f;
    __atomic_fetch_add((int *)data, 1, __ATOMIC_SEQ_CST);
}

START_TEST(test_callback_runs_once)
{
    cf_executor *ex = proc_util_new_pool(2);
    int calls[10] = {0};
    cf_future *fs[10];
    for (int i = 0; i < 10; i++) {
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "abc");
        ck_assert_int_eq(cf_future_add_done_callback(fs[i], count_cb, &calls[i]), 0);
    }
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(__atomic_load_n(&calls[i], __ATOMIC_SEQ_CST), 1);
        /* Added after completion: runs at once, once. */
        ck_assert_int_eq(cf_future_add_done_callback(fs[i], count_cb, &calls[i]), 0);
        ck_assert_int_eq(calls[i], 2);
        cf_future_unref(fs[i]);
    }
    cf_executor_free(ex);
}
END_TEST

/* Returns its int argument. */
static int int_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    int v;
    if (len != sizeof(v))
        return CF_EINVAL;
    memcpy(&v, arg, sizeof(v));
    return proc_util_return_int(v, result, result_len);
}

/* Tells the test it started (by opening the FIFO named by its argument for writing), then
 * returns 6. */
static int started_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    char path[256];
    snprintf(path, sizeof(path), "%.*s", (int)len, (const char *)arg);
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return cf_task_fail(-errno, "open %s", path);
    close(fd);
    return proc_util_return_int(6, result, result_len);
}

typedef struct order_log {
    cf_test_event entered, gate;
    pthread_mutex_t mu;
    int seen[8], n;
} order_log;

/* On the manager thread: holds it until the test opens the gate. */
static void hold_manager_cb(cf_future *f, void *data)
{
    (void)f;
    order_log *log = data;
    cf_test_event_set(&log->entered);
    cf_test_event_wait(&log->gate, CF_TEST_LONG);
}

static void log_order_cb(cf_future *f, void *data)
{
    order_log *log = data;
    int v = proc_util_int_result(f);
    pthread_mutex_lock(&log->mu);
    if (log->n < 8)
        log->seen[log->n++] = v;
    pthread_mutex_unlock(&log->mu);
}

START_TEST(test_batch_completes_in_arrival_order)
{
    /* One worker runs a blocker B, then tasks 0..5 and a task 6 that signals its start. While
     * B's done-callback holds the manager, the worker finishes 0..5 and sends their results,
     * which the manager then reads in one batch: their futures must complete in the order the
     * results arrived (as Python's result handler does), so a task's callback never sees an
     * earlier task of the same worker still RUNNING. */
    char block[64], started[64];
    proc_util_make_fifo(block, sizeof(block));
    proc_util_make_fifo(started, sizeof(started));
    order_log log = {.n = 0};
    cf_test_event_init(&log.entered);
    cf_test_event_init(&log.gate);
    pthread_mutex_init(&log.mu, NULL);
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *b = proc_util_submit_str(ex, proc_util_block_task, block), *fs[7];
    ck_assert_int_eq(cf_future_add_done_callback(b, hold_manager_cb, &log), 0);
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(cf_executor_submit_bytes(&fs[i], ex, int_task, &i, sizeof(i)), 0);
    fs[6] = proc_util_submit_str(ex, started_task, started);
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(cf_future_add_done_callback(fs[i], log_order_cb, &log), 0);
    proc_util_release_fifo(block);
    ck_assert(cf_test_event_wait(&log.entered, CF_TEST_LONG));
    /* Task 6 started: 0..5 are done and their results are in the worker's socket. */
    int fd = open(started, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    close(fd);
    cf_test_event_set(&log.gate);
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(proc_util_int_result(fs[i]), i);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(cf_future_result(NULL, b, CF_TEST_LONG), 0);
    cf_future_unref(b);
    ck_assert_int_eq(cf_executor_free(ex), 0); /* every callback has run */
    char order[16] = "";
    for (int i = 0; i < log.n; i++)
        order[i] = (char)('0' + log.seen[i]);
    ck_assert_msg(strcmp(order, "0123456") == 0, "callbacks ran in the order %s", order);
    unlink(block);
    unlink(started);
    pthread_mutex_destroy(&log.mu);
    cf_test_event_destroy(&log.entered);
    cf_test_event_destroy(&log.gate);
}
END_TEST

static int thread_sum(const void *arg, size_t len, void **result, size_t *result_len)
{
    return cf_test_reverse_task(arg, len, result, result_len);
}

START_TEST(test_mixed_with_thread_pool_futures)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *pp = proc_util_new_pool(2);
    cf_executor *tp;
    ck_assert_int_eq(cf_thread_pool_new(&tp, NULL), 0);
    cf_future *fs[4];
    fs[0] = proc_util_submit_str(pp, proc_util_block_task, fifo);
    ck_assert_int_eq(cf_executor_submit_bytes(&fs[1], tp, thread_sum, "ab", 2), 0);
    fs[2] = proc_util_submit_str(pp, cf_test_reverse_task, "cd");
    ck_assert_int_eq(cf_executor_submit_bytes(&fs[3], tp, thread_sum, "ef", 2), 0);
    bool done[4];
    size_t ndone;
    /* Everything but the blocked process task completes. */
    ck_assert_int_eq(cf_wait(&ndone, done, fs + 1, 3, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_wait(&ndone, done, fs, 4, CF_ALL_COMPLETED, 0.05), CF_ETIMEDOUT);
    ck_assert_uint_eq(ndone, 3);
    ck_assert(!done[0]);
    cf_as_completed *it;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, 4, CF_TEST_LONG), 0);
    int yielded = 0;
    cf_future *f;
    while (yielded < 3) {
        ck_assert_int_eq(cf_as_completed_next(&f, it), 0);
        ck_assert_ptr_ne(f, fs[0]);
        yielded++;
    }
    proc_util_release_fifo(fifo);
    ck_assert_int_eq(cf_as_completed_next(&f, it), 0);
    ck_assert_ptr_eq(f, fs[0]);
    ck_assert_int_eq(cf_as_completed_next(&f, it), CF_EOF);
    cf_as_completed_free(it);
    ck_assert_int_eq(cf_wait(&ndone, done, fs, 4, CF_FIRST_EXCEPTION, CF_TEST_LONG), 0);
    ck_assert_uint_eq(ndone, 4);
    for (int i = 0; i < 4; i++)
        cf_future_unref(fs[i]);
    cf_executor_free(tp);
    cf_executor_free(pp);
    unlink(fifo);
}
END_TEST

START_TEST(test_first_exception_process)
{
    cf_executor *ex = proc_util_new_pool(2);
    cf_future *fs[2];
    fs[0] = proc_util_submit_str(ex, fail_task, "e");
    fs[1] = proc_util_submit_str(ex, cf_test_reverse_task, "x");
    size_t nd;
    ck_assert_int_eq(cf_wait(&nd, NULL, fs, 2, CF_FIRST_EXCEPTION, CF_TEST_LONG), 0);
    ck_assert(cf_future_done(fs[0]));
    ck_assert_int_eq(cf_wait(&nd, NULL, fs, 2, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    cf_executor_free(ex);
}
END_TEST

/* ---- threads and fork ---- */

static void *spin_thread(void *arg)
{
    cf_test_event *stop = arg;
    while (!cf_test_event_is_set(stop))
        ;
    return NULL;
}

START_TEST(test_pool_created_while_threads_run)
{
    cf_test_event stop;
    cf_test_event_init(&stop);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, spin_thread, &stop);
    cf_executor *tp;
    ck_assert_int_eq(cf_thread_pool_new(&tp, NULL), 0);
    cf_future *tf;
    ck_assert_int_eq(cf_executor_submit_bytes(&tf, tp, thread_sum, "a", 1), 0);
    cf_executor *ex = proc_util_new_pool(2);
    cf_future *fs[20];
    for (int i = 0; i < 20; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "abc");
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(cf_future_result(NULL, fs[i], CF_TEST_LONG), 0);
        cf_future_unref(fs[i]);
    }
    cf_test_event_set(&stop);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(cf_future_result(NULL, tf, CF_TEST_LONG), 0);
    cf_future_unref(tf);
    cf_executor_free(tp);
    cf_executor_free(ex);
    cf_test_event_destroy(&stop);
}
END_TEST

START_TEST(test_fork_child_gets_eforked)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *f = proc_util_submit_str(ex, cf_test_reverse_task, "a");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int bad = 0;
        cf_future *g = NULL;
        if (cf_executor_submit_bytes(&g, ex, cf_test_reverse_task, "a", 1) != CF_EFORKED)
            bad |= 1;
        if (cf_executor_shutdown(ex, true, false) != CF_EFORKED)
            bad |= 2;
        if (cf_process_pool_kill(ex) != CF_EFORKED)
            bad |= 4;
        if (cf_executor_free(ex) != CF_EFORKED)
            bad |= 8;
#ifndef CF_TEST_TSAN /* TSan cannot start threads after a multithreaded fork (die_after_fork) */
        /* A new pool works in the child. */
        cf_executor *mine;
        if (cf_process_pool_new(&mine, NULL) != 0) {
            bad |= 16;
        } else {
            if (cf_executor_submit_bytes(&g, mine, cf_test_reverse_task, "xy", 2) != 0 ||
                cf_future_result(NULL, g, CF_TEST_LONG) != 0)
                bad |= 32;
            cf_future_unref(g);
            cf_executor_free(mine);
        }
#endif
        /* Through a pipe, not the exit status: under valgrind the child's exit status reports
         * memory that only the parent's vanished threads referenced. */
        ssize_t n = write(p[1], &bad, sizeof(bad));
        _exit(n == sizeof(bad) ? 0 : 1);
    }
    close(p[1]);
    int bad = -1;
    ck_assert_int_eq(read(p[0], &bad, sizeof(bad)), (ssize_t)sizeof(bad));
    close(p[0]);
    ck_assert_int_eq(bad, 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    /* The parent's pool is unaffected by the child. */
    f = proc_util_submit_str(ex, cf_test_reverse_task, "b");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_no_children_after_free)
{
    int before = proc_util_count_children();
    cf_executor *ex = proc_util_new_pool(2);
    cf_future *fs[10];
    for (int i = 0; i < 10; i++)
        fs[i] = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int pids[10];
    for (int i = 0; i < 10; i++) {
        pids[i] = proc_util_int_result(fs[i]);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(proc_util_count_children(), before + 1); /* the fork server */
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(proc_util_count_children(), before);
    for (int i = 0; i < 10; i++)
        ck_assert(proc_util_wait_gone(pids[i], CF_TEST_LONG));
}
END_TEST

/* gh-94440: submit, cancel, then shutdown(wait=true) must not wait for the cancelled work. */
START_TEST(test_cancel_then_shutdown_no_hang)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    cf_future *fs[12];
    for (int i = 0; i < 12; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "x");
    ck_assert(cf_future_cancel(fs[11])); /* beyond the window of 8: still pending */
    proc_util_release_fifo(fifo);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert(cf_future_cancelled(fs[11]));
    for (int i = 0; i < 11; i++) {
        ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
        cf_future_unref(fs[i]);
    }
    cf_future_unref(fs[11]);
    cf_future_unref(blocker);
    cf_executor_free(ex);
    unlink(fifo);
}
END_TEST

START_TEST(test_map_timeout_cancels_the_rest)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex = proc_util_new_pool(1);
    /* One call: calls dispatched behind it would stay blocked on the FIFO. */
    cf_bytes args[1] = {{fifo, strlen(fifo)}};
    cf_map *it;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, proc_util_block_task, args, 1, 0.2, 1), 0);
    ck_assert_int_eq(cf_map_next(NULL, it), CF_ETIMEDOUT);
    ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
    cf_map_free(it);
    proc_util_release_fifo(fifo);
    cf_executor_free(ex);
    unlink(fifo);
}
END_TEST

typedef struct submitter {
    cf_executor *ex;
    int bad;
} submitter;

static void *submit_many(void *arg)
{
    submitter *s = arg;
    for (int i = 0; i < 300; i++) {
        cf_future *f;
        if (cf_executor_submit_bytes(&f, s->ex, cf_test_reverse_task, "abcd", 4) != 0) {
            s->bad++;
            continue;
        }
        const void *d;
        size_t len;
        if (i % 3 == 0 && (cf_future_result_bytes(&d, &len, f, CF_TEST_LONG) != 0 || len != 4 ||
                           memcmp(d, "dcba", 4) != 0))
            s->bad++;
        cf_future_unref(f);
    }
    return NULL;
}

START_TEST(test_concurrent_submitters)
{
    cf_executor *ex = proc_util_new_pool(2);
    submitter s[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        s[i] = (submitter){.ex = ex};
        pthread_create(&t[i], NULL, submit_many, &s[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i].bad, 0);
    }
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_shutdown_no_wait_then_free)
{
    cf_executor *ex = proc_util_new_pool(2);
    cf_future *fs[30];
    for (int i = 0; i < 30; i++)
        fs[i] = proc_util_submit_str(ex, cf_test_reverse_task, "abc");
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    for (int i = 0; i < 30; i++) {
        ck_assert(cf_future_done(fs[i]));
        ck_assert_int_eq(cf_future_result(NULL, fs[i], 0), 0);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(proc_util_count_children(), 0);
}
END_TEST

static int second_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    return cf_test_reverse_task(arg, len, result, result_len);
}

START_TEST(test_many_modules_and_functions)
{
    cf_executor *ex = proc_util_new_pool(1);
    cf_bytes_fn fns[] = {cf_test_reverse_task, second_task, thread_sum, checksum_task};
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < 4; i++) {
            cf_future *f = proc_util_submit_str(ex, fns[i], "abcd");
            ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
            cf_future_unref(f);
        }
    }
    cf_executor_free(ex);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_pool");
    TCase *tc = cf_test_tcase("results");
    tcase_add_test(tc, test_result_round_trip);
    tcase_add_test(tc, test_error_round_trip);
    tcase_add_test(tc, test_empty_argument_and_result);
    tcase_add_test(tc, test_many_tasks_in_order);
    tcase_add_test(tc, test_map_bytes_in_order_with_errors);
    tcase_add_test(tc, test_large_payloads_16mib);
    tcase_add_test(tc, test_payload_sizes_around_threshold);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("rules");
    tcase_add_test(tc, test_pointer_tasks_not_supported);
    tcase_add_test(tc, test_invalid_options);
    tcase_add_test(tc, test_function_outside_modules_rejected);
    tcase_add_test(tc, test_function_from_shared_library);
    tcase_add_test(tc, test_workers_are_fresh_images);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("init");
    tcase_add_test(tc, test_initializer_runs_in_each_worker);
    tcase_add_test(tc, test_initializer_failure_breaks_pool);
    tcase_add_test(tc, test_large_initializer_argument);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("workers");
    tcase_add_test(tc, test_idle_worker_reuse);
    tcase_add_test(tc, test_saturation);
    tcase_add_test(tc, test_max_tasks_per_child_replaces_workers);
    tcase_add_test(tc, test_max_tasks_pending_tasks);
    tcase_add_test(tc, test_max_tasks_shutdown_no_wait);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("shutdown");
    tcase_add_test(tc, test_submit_after_shutdown);
    tcase_add_test(tc, test_shutdown_wait_runs_queued_work);
    tcase_add_test(tc, test_cancel_pending_until_dispatched);
    tcase_add_test(tc, test_shutdown_cancel_futures);
    tcase_add_test(tc, test_shutdown_from_callback);
    tcase_add_test(tc, test_free_from_callback);
    tcase_add_test(tc, test_cancel_then_shutdown_no_hang);
    tcase_add_test(tc, test_map_timeout_cancels_the_rest);
    tcase_add_test(tc, test_shutdown_no_wait_then_free);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("futures");
    tcase_add_test(tc, test_callback_runs_once);
    tcase_add_test(tc, test_batch_completes_in_arrival_order);
    tcase_add_test(tc, test_mixed_with_thread_pool_futures);
    tcase_add_test(tc, test_first_exception_process);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("processes");
    tcase_add_test(tc, test_pool_created_while_threads_run);
    tcase_add_test(tc, test_fork_child_gets_eforked);
    tcase_add_test(tc, test_no_children_after_free);
    tcase_add_test(tc, test_concurrent_submitters);
    tcase_add_test(tc, test_many_modules_and_functions);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
