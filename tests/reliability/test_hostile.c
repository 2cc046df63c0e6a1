/* Hostile and invalid input: every public function of include/cfutures/ (every header) called with
 * NULL handles, NULL out-pointers, zero and oversized counts and lengths, NaN / negative / tiny /
 * huge timeouts, objects in every state (pending, running, finished, failed, cancelled; executors
 * live, shut down, of the wrong kind), and from inside tasks and done-callbacks (re-entrancy).
 * Each row states the codes the header documents; a crash, a hang (every blocking row is bounded)
 * or any other code fails the suite. The number of bad inputs tried is printed.
 *
 * Rows are `ROW(expression, allowed results...)`: the list of (call, expected) pairs is the
 * table, kept as code so that each call is written as a user would write it. */
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cf_test_rows.h"
#include "cf_test_sync.h"

/* Huge requests must come back as NULL (and so as CF_ENOMEM), which is what the library is
 * tested for here; the sanitizers' allocators abort on them unless told otherwise. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* ---- tasks ---- */

static int identity(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static void noop_cb(cf_future *f, void *data)
{
    (void)f;
    (void)data;
}

/* ---- the objects the rows act on ---- */

typedef struct fixture {
    cf_executor *tp, *tp_down; /* thread pools: live, shut down */
    cf_executor *pp, *pp_down; /* process pools: live, shut down */
    cf_future *pending, *running, *done_ptr, *done_bytes, *failed, *cancelled;
} fixture;

static fixture fx;
static int some_value = 42;

static void fixture_setup(void)
{
    fx.tp = cf_test_pool(2);
    fx.tp_down = cf_test_pool(2);
    ck_assert_int_eq(cf_executor_shutdown(fx.tp_down, true, false), 0);
    ck_assert_int_eq(cf_process_pool_new(&fx.pp, &(cf_process_pool_options){.max_workers = 1}), 0);
    ck_assert_int_eq(cf_process_pool_new(&fx.pp_down, &(cf_process_pool_options){.max_workers = 1}),
                     0);
    ck_assert_int_eq(cf_executor_shutdown(fx.pp_down, true, false), 0);
    cf_future **all[] = {&fx.pending,    &fx.running, &fx.done_ptr,
                         &fx.done_bytes, &fx.failed,  &fx.cancelled};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ck_assert_int_eq(cf_future_new(all[i]), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(fx.running), 1);
    ck_assert_int_eq(cf_future_set_result(fx.done_ptr, &some_value, NULL), 0);
    ck_assert_int_eq(cf_future_set_result_bytes(fx.done_bytes, "abc", 3), 0);
    ck_assert_int_eq(cf_future_set_exception(fx.failed, CF_EPERM, "refused"), 0);
    ck_assert(cf_future_cancel(fx.cancelled));
}

static void fixture_teardown(void)
{
    cf_future *all[] = {fx.pending,    fx.running, fx.done_ptr,
                        fx.done_bytes, fx.failed,  fx.cancelled};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        cf_future_unref(all[i]);
    ck_assert_int_eq(cf_executor_free(fx.tp), 0);
    ck_assert_int_eq(cf_executor_free(fx.tp_down), 0);
    ck_assert_int_eq(cf_executor_free(fx.pp), 0);
    ck_assert_int_eq(cf_executor_free(fx.pp_down), 0);
    cf_test_rows_report();
}

/* ---- wrappers that release what a call creates, and check "no object on error" ---- */

#define POISON ((void *)0x1)

static int submit_rc(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = POISON;
    int rc = cf_executor_submit(&f, ex, fn, arg);
    ck_assert(rc == 0 ? f != NULL && f != POISON : f == NULL);
    if (rc == 0) {
        ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
        cf_future_unref(f);
    }
    return rc;
}

static int submit_bytes_rc(cf_executor *ex, cf_bytes_fn fn, const void *arg, size_t len)
{
    cf_future *f = POISON;
    int rc = cf_executor_submit_bytes(&f, ex, fn, arg, len);
    ck_assert(rc == 0 ? f != NULL && f != POISON : f == NULL);
    if (rc == 0) {
        ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), 0);
        cf_future_unref(f);
    }
    return rc;
}

/* Runs a map to the end (or to its first error) and returns the first non-zero code of the call
 * or of the iteration, or 0. */
static int map_rc(cf_executor *ex, cf_fn fn, void *const *args, size_t n, double timeout,
                  size_t chunksize)
{
    cf_map *m = POISON;
    int rc = cf_executor_map(&m, ex, fn, args, n, timeout, chunksize);
    ck_assert(rc == 0 ? m != NULL && m != POISON : m == NULL);
    while (rc == 0 && (rc = cf_map_next(NULL, m)) == 0)
        ;
    if (m && m != POISON) {
        ck_assert_int_eq(cf_map_next(NULL, m), CF_EOF);
        cf_map_free(m);
    }
    return rc == CF_EOF ? 0 : rc;
}

static int map_bytes_rc(cf_executor *ex, cf_bytes_fn fn, const cf_bytes *args, size_t n,
                        double timeout, size_t chunksize)
{
    cf_map *m = POISON;
    int rc = cf_executor_map_bytes(&m, ex, fn, args, n, timeout, chunksize);
    ck_assert(rc == 0 ? m != NULL && m != POISON : m == NULL);
    while (rc == 0 && (rc = cf_map_next(NULL, m)) == 0)
        ;
    if (m && m != POISON)
        cf_map_free(m);
    return rc == CF_EOF ? 0 : rc;
}

static int thread_pool_new_rc(const cf_thread_pool_options *o)
{
    cf_executor *ex = POISON;
    int rc = cf_thread_pool_new(&ex, o);
    ck_assert(rc == 0 ? ex != NULL && ex != POISON : ex == NULL);
    if (rc == 0) {
        int src = submit_rc(ex, identity, NULL);
        ck_assert_int_eq(cf_executor_free(ex), 0);
        return src;
    }
    return rc;
}

static int process_pool_new_rc(const cf_process_pool_options *o)
{
    cf_executor *ex = POISON;
    int rc = cf_process_pool_new(&ex, o);
    ck_assert(rc == 0 ? ex != NULL && ex != POISON : ex == NULL);
    if (rc == 0)
        ck_assert_int_eq(cf_executor_free(ex), 0);
    return rc;
}

static int as_completed_new_rc(cf_future *const *fs, size_t n, double timeout)
{
    cf_as_completed *it = POISON;
    int rc = cf_as_completed_new(&it, fs, n, timeout);
    ck_assert(rc == 0 ? it != NULL && it != POISON : it == NULL);
    if (rc == 0)
        cf_as_completed_free(it);
    return rc;
}

/* Iterates an as_completed over `fs` until EOF or an error; returns that code (EOF as 0). */
static int as_completed_rc(cf_future *const *fs, size_t n, double timeout)
{
    cf_as_completed *it;
    int rc = cf_as_completed_new(&it, fs, n, timeout);
    if (rc)
        return rc;
    cf_future *f;
    while ((rc = cf_as_completed_next(&f, it)) == 0)
        ;
    cf_as_completed_free(it);
    return rc == CF_EOF ? 0 : rc;
}

static int set_bytes_rc(const void *data, size_t len)
{
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
    int rc = cf_future_set_result_bytes(f, data, len);
    ck_assert(rc == 0 ? cf_future_done(f) : !cf_future_done(f));
    cf_future_unref(f);
    return rc;
}

static int set_exception_rc(int code, const char *message)
{
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
    int rc = cf_future_set_exception(f, code, message);
    if (rc == 0) {
        int got = 0;
        const char *msg = NULL;
        ck_assert_int_eq(cf_future_exception(&got, &msg, f, 0), 0);
        ck_assert_int_eq(got, code);
        ck_assert(message ? msg && strcmp(msg, message) == 0 : msg == NULL);
    }
    cf_future_unref(f);
    return rc;
}

/* ---- NULL handles, NULL out-pointers, bad states ---- */

START_TEST(test_futures)
{
    cf_future *f = NULL;
    void *v;
    const void *data;
    size_t len;
    int code;
    const char *msg;
    ROW(cf_future_new(NULL), CF_EINVAL);
    ROW(cf_future_ref(NULL) == NULL, 1);
    ROW((cf_future_unref(NULL), 0), 0);
    ROW(cf_future_cancel(NULL), 0);
    ROW(cf_future_cancelled(NULL), 0);
    ROW(cf_future_running(NULL), 0);
    ROW(cf_future_done(NULL), 0);
    ROW(cf_future_get_state(NULL), CF_FUTURE_PENDING);
    ROW(cf_future_result(&v, NULL, 0), CF_EINVAL);
    ROW(cf_future_result(NULL, NULL, CF_FOREVER), CF_EINVAL);
    ROW(cf_future_result(NULL, fx.done_ptr, 0), 0);
    ROW(cf_future_result(&v, fx.failed, 0), CF_ETASK);
    ROW(cf_future_result(&v, fx.cancelled, 0), CF_ECANCELLED);
    ROW(cf_future_result(&v, fx.running, 0), CF_ETIMEDOUT);
    ROW(cf_future_result_bytes(NULL, NULL, NULL, 0), CF_EINVAL);
    ROW(cf_future_result_bytes(&data, &len, fx.done_ptr, 0), CF_EINVAL); /* a pointer result */
    ROW(cf_future_result_bytes(NULL, NULL, fx.done_bytes, 0), 0);
    ROW(cf_future_result_bytes(&data, &len, fx.failed, 0), CF_ETASK);
    ROW(cf_future_result_bytes(&data, &len, fx.cancelled, 0), CF_ECANCELLED);
    ROW(cf_future_exception(NULL, NULL, NULL, 0), CF_EINVAL);
    ROW(cf_future_exception(NULL, NULL, fx.failed, 0), 0);
    ROW(cf_future_exception(&code, &msg, fx.cancelled, 0), CF_ECANCELLED);
    ROW(cf_future_exception(&code, &msg, fx.pending, 0), CF_ETIMEDOUT);
    ROW(cf_future_add_done_callback(NULL, noop_cb, NULL), CF_EINVAL);
    ROW(cf_future_add_done_callback(fx.pending, NULL, NULL), CF_EINVAL);
    ROW(cf_future_add_done_callback(fx.done_ptr, NULL, NULL), CF_EINVAL);
    ROW(cf_future_set_running_or_notify_cancel(NULL), CF_EINVAL);
    ROW(cf_future_set_running_or_notify_cancel(fx.running), CF_EINVALSTATE);
    ROW(cf_future_set_running_or_notify_cancel(fx.done_ptr), CF_EINVALSTATE);
    ROW(cf_future_set_running_or_notify_cancel(fx.failed), CF_EINVALSTATE);
    ROW(cf_future_set_running_or_notify_cancel(fx.cancelled), 0);
    ROW(cf_future_set_result(NULL, &f, NULL), CF_EINVAL);
    ROW(cf_future_set_result(fx.done_ptr, &f, NULL), CF_EINVALSTATE);
    ROW(cf_future_set_result(fx.cancelled, &f, NULL), CF_EINVALSTATE);
    ROW(cf_future_set_result_bytes(NULL, "x", 1), CF_EINVAL);
    ROW(cf_future_set_result_bytes(fx.done_bytes, "x", 1), CF_EINVALSTATE);
    ROW(cf_future_set_result_bytes(fx.failed, NULL, 0), CF_EINVALSTATE);
    ROW(set_bytes_rc(NULL, 1), CF_EINVAL);
    ROW(set_bytes_rc(NULL, SIZE_MAX), CF_EINVAL);
    ROW(set_bytes_rc(NULL, 0), 0);
    ROW(cf_future_set_exception(NULL, CF_EPERM, "x"), CF_EINVAL);
    ROW(cf_future_set_exception(fx.failed, CF_EPERM, "x"), CF_EINVALSTATE);
    ROW(cf_future_set_exception(fx.cancelled, CF_EPERM, NULL), CF_EINVALSTATE);
    ROW(set_exception_rc(0, "x"), CF_EINVAL);
    ROW(set_exception_rc(INT_MIN, "x"), 0);
    ROW(set_exception_rc(INT_MAX, NULL), 0);
    ROW(set_exception_rc(CF_EPERM, ""), 0);
    /* State queries of every state agree with each other. */
    ROW(cf_future_get_state(fx.running), CF_FUTURE_RUNNING);
    ROW(cf_future_running(fx.running), 1);
    ROW(cf_future_cancel(fx.running), 0);
    ROW(cf_future_cancel(fx.done_ptr), 0);
    ROW(cf_future_cancel(fx.cancelled), 1);
    ROW(cf_future_done(fx.cancelled), 1);
    ROW(cf_future_get_state(fx.failed), CF_FUTURE_FINISHED);
}
END_TEST

START_TEST(test_oversized_lengths)
{
    /* A length whose copy cannot be made: CF_ENOMEM, nothing changed, no overflow. */
    static const char byte = 'x';
    ROW(set_bytes_rc(&byte, SIZE_MAX), CF_ENOMEM);
    ROW(set_bytes_rc(&byte, SIZE_MAX - 1), CF_ENOMEM);
    ROW(set_bytes_rc(&byte, SIZE_MAX / 2), CF_ENOMEM);
    ROW(set_bytes_rc(&byte, (size_t)1 << 62), CF_ENOMEM);
    cf_executor *pools[] = {fx.tp, fx.pp};
    for (int i = 0; i < 2; i++) {
        ROW(submit_bytes_rc(pools[i], cf_test_echo_task, &byte, SIZE_MAX), CF_ENOMEM);
        ROW(submit_bytes_rc(pools[i], cf_test_echo_task, &byte, SIZE_MAX - 15), CF_ENOMEM);
        ROW(submit_bytes_rc(pools[i], cf_test_echo_task, &byte, (size_t)1 << 62), CF_ENOMEM);
        cf_bytes huge[2] = {{&byte, 1}, {&byte, SIZE_MAX}};
        ROW(map_bytes_rc(pools[i], cf_test_echo_task, huge, 2, CF_TEST_LONG, 1), CF_ENOMEM);
        ROW(map_bytes_rc(pools[i], cf_test_echo_task, huge, 2, CF_TEST_LONG, 0), CF_ENOMEM);
    }
    /* Counts whose array could not even be addressed are refused before any element is read. */
    void *one[1] = {NULL};
    ROW(map_rc(fx.tp, identity, one, SIZE_MAX, CF_TEST_LONG, 0), CF_ENOMEM);
    ROW(map_rc(fx.tp, identity, one, SIZE_MAX / sizeof(void *) + 1, CF_TEST_LONG, 0), CF_ENOMEM);
    cf_bytes b1[1] = {{"a", 1}};
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, b1, SIZE_MAX, CF_TEST_LONG, 0), CF_ENOMEM);
    cf_future *fs[1] = {fx.done_ptr};
    bool done[1];
    size_t n_done;
    ROW(cf_wait(&n_done, done, fs, (size_t)1 << 30, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ROW(cf_wait(&n_done, done, fs, SIZE_MAX, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ROW(as_completed_new_rc(fs, (size_t)1 << 30, 0), CF_EINVAL);
    ROW(as_completed_new_rc(fs, SIZE_MAX, 0), CF_EINVAL);
    /* Messages far beyond the 4 KiB a task may attach are copied whole by set_exception. */
    size_t big = 1 << 20;
    char *long_message = malloc(big + 1);
    memset(long_message, 'm', big);
    long_message[big] = '\0';
    ROW(set_exception_rc(CF_EPERM, long_message), 0);
    free(long_message);
}
END_TEST

START_TEST(test_executors)
{
    void *args[3] = {NULL, NULL, NULL};
    cf_bytes bargs[3] = {{"a", 1}, {NULL, 0}, {"ccc", 3}};
    cf_bytes bad_bargs[2] = {{"a", 1}, {NULL, 4}};
    cf_future *f = POISON;
    cf_map *m = POISON;
    ROW(cf_executor_submit(NULL, fx.tp, identity, NULL), CF_EINVAL);
    ROW(cf_executor_submit(&f, NULL, identity, NULL), CF_EINVAL);
    ROW(f == NULL, 1);
    ROW(submit_rc(NULL, identity, NULL), CF_EINVAL);
    ROW(submit_rc(fx.tp, NULL, NULL), CF_EINVAL);
    ROW(submit_rc(fx.tp, identity, NULL), 0);
    ROW(submit_rc(fx.pp, identity, NULL), CF_ENOTSUP);
    ROW(cf_executor_submit_bytes(NULL, fx.tp, cf_test_echo_task, "a", 1), CF_EINVAL);
    ROW(submit_bytes_rc(NULL, cf_test_echo_task, "a", 1), CF_EINVAL);
    ROW(submit_bytes_rc(fx.tp, NULL, "a", 1), CF_EINVAL);
    ROW(submit_bytes_rc(fx.tp, cf_test_echo_task, NULL, 1), CF_EINVAL);
    ROW(submit_bytes_rc(fx.tp, cf_test_echo_task, NULL, SIZE_MAX), CF_EINVAL);
    ROW(submit_bytes_rc(fx.tp, cf_test_echo_task, NULL, 0), 0);
    ROW(submit_bytes_rc(fx.pp, cf_test_echo_task, NULL, 0), 0);
    ROW(submit_bytes_rc(fx.pp, cf_test_echo_task, NULL, 3), CF_EINVAL);
    /* A process-pool task must be code of a loaded module. */
    void *heap = malloc(64);
    ROW(submit_bytes_rc(fx.pp, (cf_bytes_fn)heap, "a", 1), CF_EINVAL);
    ROW(submit_bytes_rc(fx.pp, (cf_bytes_fn)(uintptr_t)1, "a", 1), CF_EINVAL);
    ROW(submit_bytes_rc(fx.pp, (cf_bytes_fn)(void *)&some_value, "a", 1), CF_EINVAL);
    ROW(map_bytes_rc(fx.pp, (cf_bytes_fn)heap, bargs, 3, CF_TEST_LONG, 0), CF_EINVAL);
    free(heap);
    ROW(cf_executor_map(NULL, fx.tp, identity, args, 3, CF_FOREVER, 0), CF_EINVAL);
    ROW(cf_executor_map(&m, NULL, identity, args, 3, CF_FOREVER, 0), CF_EINVAL);
    ROW(m == NULL, 1);
    ROW(map_rc(fx.tp, NULL, args, 3, CF_FOREVER, 0), CF_EINVAL);
    ROW(map_rc(fx.tp, identity, NULL, 3, CF_FOREVER, 0), CF_EINVAL);
    ROW(map_rc(fx.tp, identity, args, 0, CF_FOREVER, 0), 0); /* empty, as Python's map */
    ROW(map_rc(fx.tp, identity, NULL, 0, CF_FOREVER, 0), 0);
    ROW(map_rc(fx.tp, identity, args, 3, NAN, 0), CF_EINVAL);
    ROW(map_rc(fx.tp, identity, args, 3, -NAN, 0), CF_EINVAL);
    ROW(map_rc(fx.tp, identity, args, 3, CF_FOREVER, SIZE_MAX), 0);
    ROW(map_rc(fx.tp, identity, args, 3, INFINITY, 1), 0);
    ROW(map_rc(fx.tp, identity, args, 3, -INFINITY, 2), 0);
    ROW(map_rc(fx.tp, identity, args, 3, DBL_MAX, 3), 0);
    ROW(map_rc(fx.pp, identity, args, 3, CF_FOREVER, 0), CF_ENOTSUP);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, bargs, 3, CF_FOREVER, SIZE_MAX), 0);
    ROW(map_bytes_rc(fx.tp, cf_test_echo_task, bargs, 3, CF_FOREVER, 0), 0);
    ROW(map_bytes_rc(fx.tp, cf_test_echo_task, bad_bargs, 2, CF_FOREVER, 0), CF_EINVAL);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, bad_bargs, 2, CF_FOREVER, 0), CF_EINVAL);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, NULL, 2, CF_FOREVER, 0), CF_EINVAL);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, bargs, 0, CF_FOREVER, 0), 0);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, NULL, 0, CF_FOREVER, 0), 0);
    ROW(map_bytes_rc(fx.pp, cf_test_echo_task, bargs, 3, NAN, 0), CF_EINVAL);
    ROW(cf_map_next(NULL, NULL), CF_EINVAL);
    void *v = POISON;
    ROW(cf_map_next(&v, NULL), CF_EINVAL);
    ROW(v == NULL, 1);
    ROW(cf_map_current(NULL) == NULL, 1);
    ROW((cf_map_free(NULL), 0), 0);
    ROW(cf_executor_shutdown(NULL, true, true), CF_EINVAL);
    ROW(cf_executor_shutdown(NULL, false, false), CF_EINVAL);
    ROW(cf_executor_free(NULL), 0);
    /* Thread-pool specifics. */
    cf_thread_pool_stats st;
    ROW(cf_thread_pool_new(NULL, NULL), CF_EINVAL);
    ROW(thread_pool_new_rc(NULL), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.min_workers = 3, .max_workers = 2}),
        CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.min_workers = UINT_MAX}), CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.max_queue = 1, .queue_policy = 3}),
        CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.queue_policy = (cf_queue_policy)-1}),
        CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = NAN}), CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = -1}), CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = -INFINITY}), CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = INFINITY}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = DBL_MAX}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.idle_timeout = DBL_MIN}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.queue_timeout = NAN, .max_queue = 1}),
        CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.queue_timeout = -INFINITY, .max_queue = 1}),
        0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.queue_timeout = DBL_MAX, .max_queue = 1}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.max_queue = SIZE_MAX}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.max_workers = UINT_MAX}), CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.max_workers = CF_MAX_WORKERS + 1}),
        CF_EINVAL);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.max_workers = CF_MAX_WORKERS}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.stack_size = 1}), CF_EINVAL);
    /* A stack no thread can have: creation succeeds, the first submit cannot start a thread. */
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.stack_size = SIZE_MAX}), CF_ENOMEM,
        CF_EAGAIN);
    char prefix[2000];
    memset(prefix, 'p', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.thread_name_prefix = prefix}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.thread_name_prefix = ""}), 0);
    ROW(thread_pool_new_rc(&(cf_thread_pool_options){.thread_name_prefix = "%s%n%x"}), 0);
    ROW(cf_thread_pool_get_stats(NULL, fx.tp), CF_EINVAL);
    ROW(cf_thread_pool_get_stats(&st, NULL), CF_EINVAL);
    ROW(cf_thread_pool_get_stats(&st, fx.pp), CF_EINVAL);
    ROW(cf_thread_pool_get_stats(&st, fx.tp_down), 0);
    /* Process-pool specifics. */
    ROW(cf_process_pool_new(NULL, NULL), CF_EINVAL);
    ROW(process_pool_new_rc(&(cf_process_pool_options){.max_workers = 4097}), CF_EINVAL);
    ROW(process_pool_new_rc(&(cf_process_pool_options){.max_workers = UINT_MAX}), CF_EINVAL);
    ROW(process_pool_new_rc(&(cf_process_pool_options){.initializer_arg_len = 5}), CF_EINVAL);
    ROW(process_pool_new_rc(&(cf_process_pool_options){
            .initializer = (int (*)(const void *, size_t))(void *)&some_value}),
        CF_EINVAL);
    ROW(process_pool_new_rc(
            &(cf_process_pool_options){.initializer = (int (*)(const void *, size_t))(uintptr_t)8}),
        CF_EINVAL);
    ROW(cf_process_pool_terminate(NULL), CF_EINVAL);
    ROW(cf_process_pool_kill(NULL), CF_EINVAL);
    ROW(cf_process_pool_terminate(fx.tp), CF_EINVAL);
    ROW(cf_process_pool_kill(fx.tp), CF_EINVAL);
}
END_TEST

static int init_ok(const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 0;
}

START_TEST(test_process_pool_huge_initializer_argument)
{
    static const char byte = 'i';
    ROW(process_pool_new_rc(&(cf_process_pool_options){
            .initializer = init_ok, .initializer_arg = &byte, .initializer_arg_len = SIZE_MAX}),
        CF_ENOMEM);
    ROW(process_pool_new_rc(&(cf_process_pool_options){.initializer = init_ok,
                                                       .initializer_arg = &byte,
                                                       .initializer_arg_len = SIZE_MAX - 16}),
        CF_ENOMEM);
    ROW(process_pool_new_rc(&(cf_process_pool_options){
            .initializer = init_ok, .initializer_arg = NULL, .initializer_arg_len = 0}),
        0);
}
END_TEST

START_TEST(test_after_shutdown)
{
    void *args[2] = {NULL, NULL};
    cf_bytes bargs[2] = {{"a", 1}, {"b", 1}};
    cf_executor *down[] = {fx.tp_down, fx.pp_down};
    for (int i = 0; i < 2; i++) {
        cf_executor *ex = down[i];
        ROW(submit_bytes_rc(ex, cf_test_echo_task, "a", 1), CF_ESHUTDOWN);
        ROW(map_bytes_rc(ex, cf_test_echo_task, bargs, 2, CF_FOREVER, 0), CF_ESHUTDOWN);
        ROW(cf_executor_shutdown(ex, true, true), 0);
        ROW(cf_executor_shutdown(ex, false, false), 0);
        ROW(cf_executor_shutdown(ex, true, false), 0);
    }
    ROW(submit_rc(fx.tp_down, identity, NULL), CF_ESHUTDOWN);
    ROW(map_rc(fx.tp_down, identity, args, 2, CF_FOREVER, 0), CF_ESHUTDOWN);
    ROW(submit_rc(fx.pp_down, identity, NULL), CF_ENOTSUP, CF_ESHUTDOWN);
    ROW(cf_process_pool_terminate(fx.pp_down), 0);
    ROW(cf_process_pool_kill(fx.pp_down), 0);
    ROW(submit_bytes_rc(fx.pp_down, cf_test_echo_task, "a", 1), CF_ESHUTDOWN);
}
END_TEST

START_TEST(test_wait_and_as_completed)
{
    cf_future *fs[3] = {fx.done_ptr, fx.pending, fx.failed};
    cf_future *with_null[3] = {fx.done_ptr, NULL, fx.failed};
    bool done[4];
    size_t n_done = 99;
    ROW(cf_wait(NULL, NULL, NULL, 1, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ROW(cf_wait(&n_done, done, fs, 0, CF_ALL_COMPLETED, 0), 0); /* as Python's wait([]) */
    ROW(n_done, 0);
    ROW(cf_wait(&n_done, NULL, NULL, 0, CF_FIRST_EXCEPTION, CF_FOREVER), 0);
    ROW(cf_wait(&n_done, done, with_null, 3, CF_ALL_COMPLETED, 0), CF_EINVAL);
    ROW(cf_wait(&n_done, done, fs, 3, (cf_return_when)3, 0), CF_EINVAL);
    ROW(cf_wait(&n_done, done, fs, 3, (cf_return_when)-1, 0), CF_EINVAL);
    ROW(cf_wait(&n_done, done, fs, 3, CF_ALL_COMPLETED, NAN), CF_EINVAL);
    ROW(cf_wait(NULL, NULL, fs, 3, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    ROW(cf_wait(&n_done, done, fs, 3, CF_FIRST_COMPLETED, 0), 0);
    ROW(n_done, 2);
    ROW(cf_wait(&n_done, done, fs, 3, CF_FIRST_EXCEPTION, CF_FOREVER), 0);
    ROW(done[0] && !done[1] && done[2], 1);
    ROW(cf_wait(&n_done, done, fs, 3, CF_ALL_COMPLETED, 0), CF_ETIMEDOUT);
    cf_future *dup[4] = {fx.done_ptr, fx.done_ptr, fx.done_bytes, fx.done_ptr};
    ROW(cf_wait(&n_done, done, dup, 4, CF_ALL_COMPLETED, CF_FOREVER), 0);
    ROW(n_done, 4);
    cf_as_completed *it = POISON;
    cf_future *f = POISON;
    ROW(cf_as_completed_new(NULL, fs, 3, 0), CF_EINVAL);
    ROW(cf_as_completed_new(&it, NULL, 3, 0), CF_EINVAL);
    ROW(it == NULL, 1);
    ROW(as_completed_new_rc(fs, 0, 0), 0);
    ROW(as_completed_rc(NULL, 0, CF_FOREVER), 0);
    ROW(as_completed_new_rc(with_null, 3, 0), CF_EINVAL);
    ROW(as_completed_new_rc(fs, 3, NAN), CF_EINVAL);
    ROW(as_completed_new_rc(fs, 3, CF_FOREVER), 0);
    ROW(as_completed_rc(fs, 3, 0), CF_ETIMEDOUT);
    ROW(as_completed_rc(dup, 4, CF_FOREVER), 0);
    ROW(cf_as_completed_next(&f, NULL), CF_EINVAL);
    ROW(f == NULL, 1);
    ROW(cf_as_completed_remaining(NULL), 0);
    ROW((cf_as_completed_free(NULL), 0), 0);
    ROW(cf_as_completed_new(&it, dup, 4, 0), 0);
    ROW(cf_as_completed_next(NULL, it), CF_EINVAL);
    ROW(cf_as_completed_remaining(it), 2);
    ROW(cf_as_completed_next(&f, it), 0);
    ROW(cf_as_completed_next(&f, it), 0);
    ROW(cf_as_completed_next(&f, it), CF_EOF);
    ROW(cf_as_completed_next(&f, it), CF_EOF);
    ROW(cf_as_completed_remaining(it), 0);
    cf_as_completed_free(it);
}
END_TEST

START_TEST(test_error_and_version)
{
    ROW(cf_strerror(INT_MIN) != NULL, 1);
    ROW(cf_strerror(INT_MAX) != NULL, 1);
    ROW(cf_err_name(INT_MIN) != NULL, 1);
    ROW(strcmp(cf_err_name(1), "CF_EUNKNOWN"), 0);
    ROW(strcmp(cf_err_name(-4000), "CF_EUNKNOWN"), 0);
    ROW(cf_version() != 0, 1);
    ROW(cf_version_string() != NULL, 1);
    ROW(cf_task_fail(0, NULL), CF_ETASK);
    ROW(cf_task_fail(CF_EPERM, "%s %d", "outside", 1), CF_EPERM);
    ROW(cf_task_fail(INT_MIN, NULL), INT_MIN);
    ROW((cf_task_set_result_dtor(NULL), 0), 0);
    ROW((cf_task_set_result_dtor(free), 0), 0);
}
END_TEST

/* ---- timeouts: NaN, negative, zero, tiny, huge ---- */

/* Tiny or zero timeouts on a pending future time out at once; NaN is refused. */
START_TEST(test_short_and_nan_timeouts)
{
    const double expire[] = {0.0, -0.0, DBL_MIN, 1e-300, 4.9e-324, 1e-9, 1e-6};
    cf_future *fs[1] = {fx.pending};
    for (size_t i = 0; i < sizeof(expire) / sizeof(expire[0]); i++) {
        double t = expire[i];
        ROW(cf_future_result(NULL, fx.pending, t), CF_ETIMEDOUT);
        ROW(cf_future_result_bytes(NULL, NULL, fx.pending, t), CF_ETIMEDOUT);
        ROW(cf_future_exception(NULL, NULL, fx.pending, t), CF_ETIMEDOUT);
        ROW(cf_wait(NULL, NULL, fs, 1, CF_ALL_COMPLETED, t), CF_ETIMEDOUT);
        ROW(cf_wait(NULL, NULL, fs, 1, CF_FIRST_COMPLETED, t), CF_ETIMEDOUT);
        ROW(cf_wait(NULL, NULL, fs, 1, CF_FIRST_EXCEPTION, t), CF_ETIMEDOUT);
        ROW(as_completed_rc(fs, 1, t), CF_ETIMEDOUT);
        /* A finished future is reported whatever the timeout. */
        ROW(cf_future_result(NULL, fx.done_ptr, t), 0);
    }
    const double nans[] = {NAN, -NAN, nan("1")};
    for (size_t i = 0; i < sizeof(nans) / sizeof(nans[0]); i++) {
        double t = nans[i];
        ROW(cf_future_result(NULL, fx.done_ptr, t), CF_EINVAL);
        ROW(cf_future_result_bytes(NULL, NULL, fx.done_bytes, t), CF_EINVAL);
        ROW(cf_future_exception(NULL, NULL, fx.failed, t), CF_EINVAL);
        ROW(cf_wait(NULL, NULL, fs, 1, CF_ALL_COMPLETED, t), CF_EINVAL);
        ROW(as_completed_new_rc(fs, 1, t), CF_EINVAL);
    }
}
END_TEST

/* Negative, infinite and huge timeouts mean "no limit" (or a limit centuries away): a wait must
 * neither time out at once (an overflowed deadline) nor miss the completion. Each wait runs
 * while another thread completes the future once the waiter sleeps. */
typedef struct completer {
    cf_future *f;
    pid_t waiter;
} completer;

static void *complete_later(void *arg)
{
    completer *c = arg;
    cf_test_wait_asleep(c->waiter, CF_TEST_LONG);
    cf_future_set_result(c->f, &some_value, NULL);
    return NULL;
}

static cf_future *pending_completed_later(pthread_t *t, completer *c)
{
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
    *c = (completer){.f = f, .waiter = cf_test_gettid()};
    ck_assert_int_eq(pthread_create(t, NULL, complete_later, c), 0);
    return f;
}

typedef struct releaser {
    cf_test_gate *gate;
    pid_t tid;
} releaser;

static void *release_later(void *arg)
{
    releaser *r = arg;
    cf_test_wait_asleep(r->tid, CF_TEST_LONG);
    cf_test_event_set(&r->gate->release);
    return NULL;
}

enum { W_RESULT, W_EXCEPTION, W_WAIT_ALL, W_WAIT_FIRST, W_AS_COMPLETED, W_MAP, W_KINDS };

static int gate_task(void *arg, void **result)
{
    return cf_test_gate_task(arg, result);
}

static int long_wait(int kind, double t)
{
    pthread_t th;
    completer c;
    if (kind == W_MAP) {
        /* The map's only task blocks until the main thread sleeps in cf_map_next(). */
        cf_test_gate g;
        cf_test_gate_init(&g);
        void *args[1] = {&g};
        cf_map *m;
        int rc = cf_executor_map(&m, fx.tp, gate_task, args, 1, t, 0);
        if (rc == 0) {
            releaser rel = {.gate = &g, .tid = cf_test_gettid()};
            ck_assert_int_eq(pthread_create(&th, NULL, release_later, &rel), 0);
            rc = cf_map_next(NULL, m);
            pthread_join(th, NULL);
            cf_map_free(m);
        }
        cf_test_gate_destroy(&g);
        return rc;
    }
    cf_future *f = pending_completed_later(&th, &c);
    int rc;
    switch (kind) {
    case W_RESULT:
        rc = cf_future_result(NULL, f, t);
        break;
    case W_EXCEPTION:
        rc = cf_future_exception(NULL, NULL, f, t);
        break;
    case W_WAIT_ALL:
    case W_WAIT_FIRST: {
        cf_future *fs[2] = {f, fx.pending};
        size_t n_done;
        rc = cf_wait(&n_done, NULL, fs, kind == W_WAIT_ALL ? 1 : 2,
                     kind == W_WAIT_ALL ? CF_ALL_COMPLETED : CF_FIRST_COMPLETED, t);
        break;
    }
    default:
        rc = as_completed_rc(&f, 1, t);
        break;
    }
    pthread_join(th, NULL);
    cf_future_unref(f);
    return rc;
}

START_TEST(test_long_timeouts)
{
    const double forever[] = {CF_FOREVER, -1e-300, -DBL_MIN, -0.5,  -DBL_MAX, -INFINITY,
                              INFINITY,   DBL_MAX, 1e300,    1e18,  1e10,     9.3e9,
                              9e9,        1e9,     86400.0,  3600.5};
    for (size_t i = 0; i < sizeof(forever) / sizeof(forever[0]); i++)
        for (int kind = 0; kind < W_KINDS; kind++)
            ROW(long_wait(kind, forever[i]), 0);
}
END_TEST

/* ---- re-entrancy: calls from tasks and done-callbacks ---- */

typedef struct reentry {
    cf_executor *ex;
    cf_future *self; /* the future of the task or callback, once published */
    cf_test_event published, finished;
    int rc[8];
} reentry;

static void reentry_init(reentry *r, cf_executor *ex)
{
    memset(r, 0, sizeof(*r));
    r->ex = ex;
    cf_test_event_init(&r->published);
    cf_test_event_init(&r->finished);
}

static void reentry_destroy(reentry *r)
{
    cf_test_event_destroy(&r->published);
    cf_test_event_destroy(&r->finished);
}

/* A task that submits to its own pool, waits for the inner task (which cannot start while this
 * one occupies the only worker: a bounded wait, not a deadlock), waits on its own future, tries
 * to cancel itself, runs a map over its own pool with a deadline, and waits on the lot. */
static int reentrant_task(void *arg, void **result)
{
    reentry *r = arg;
    cf_test_event_wait(&r->published, CF_TEST_LONG);
    cf_future *inner = NULL;
    r->rc[0] = cf_executor_submit(&inner, r->ex, identity, r);
    r->rc[1] = inner ? cf_future_result(NULL, inner, 0.05) : -1;
    r->rc[2] = cf_future_result(NULL, r->self, 0.05);
    r->rc[3] = cf_future_cancel(r->self);
    void *args[2] = {r, r};
    cf_map *m = NULL;
    r->rc[4] = cf_executor_map(&m, r->ex, identity, args, 2, 0.05, 0);
    r->rc[5] = m ? cf_map_next(NULL, m) : -1;
    cf_map_free(m);
    cf_future *fs[2] = {r->self, inner};
    r->rc[6] = inner ? cf_wait(NULL, NULL, fs, 2, CF_FIRST_COMPLETED, 0.05) : -1;
    r->rc[7] = inner ? as_completed_rc(&inner, 1, 0.05) : -1;
    cf_future_unref(inner);
    *result = r;
    return 0;
}

START_TEST(test_reentrant_task)
{
    reentry r;
    cf_executor *ex = cf_test_pool(1);
    reentry_init(&r, ex);
    ck_assert_int_eq(cf_executor_submit(&r.self, ex, reentrant_task, &r), 0);
    cf_test_event_set(&r.published);
    ck_assert_int_eq(cf_future_result(NULL, r.self, CF_TEST_LONG), 0);
    ROW(r.rc[0], 0);
    ROW(r.rc[1], CF_ETIMEDOUT); /* the only worker is busy with us */
    ROW(r.rc[2], CF_ETIMEDOUT); /* our own future cannot finish while we run */
    ROW(r.rc[3], 0);            /* running: not cancellable */
    ROW(r.rc[4], 0);
    ROW(r.rc[5], CF_ETIMEDOUT);
    ROW(r.rc[6], CF_ETIMEDOUT);
    ROW(r.rc[7], CF_ETIMEDOUT);
    cf_future_unref(r.self);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    reentry_destroy(&r);
}
END_TEST

/* A done-callback (run by the worker that finished the task) waits on its own future, submits to
 * its own pool, waits on and iterates futures of another pool, adds callbacks to its own future,
 * and shuts its pool down with wait (which must not wait for its own thread). Waiting in the
 * callback for a task of the same pool is test_callback_waits_on_same_pool. */
static cf_executor *other_pool;
static atomic_int nested_calls;

static void count_nested(cf_future *f, void *data)
{
    (void)f;
    (void)data;
    atomic_fetch_add(&nested_calls, 1);
}

static void reentrant_callback(cf_future *f, void *data)
{
    reentry *r = data;
    void *v = NULL;
    r->rc[0] = cf_future_result(&v, f, 0.05);
    cf_future *own = NULL, *other = NULL;
    r->rc[1] = cf_executor_submit(&own, r->ex, identity, r);
    r->rc[2] = cf_executor_submit(&other, other_pool, identity, r);
    cf_future *fs[2] = {f, other};
    r->rc[3] = other ? cf_wait(NULL, NULL, fs, 2, CF_ALL_COMPLETED, CF_TEST_LONG) : -1;
    r->rc[4] = other ? as_completed_rc(fs, 2, CF_TEST_LONG) : -1;
    r->rc[5] = cf_future_add_done_callback(f, count_nested, NULL); /* runs at once */
    r->rc[6] = cf_executor_shutdown(r->ex, true, false);
    r->rc[7] = cf_executor_submit(&fs[0], r->ex, identity, r);
    r->self = own; /* accepted before the shutdown: it runs once this callback returns */
    cf_future_unref(other);
    cf_test_event_set(&r->finished);
}

START_TEST(test_reentrant_callback)
{
    reentry r;
    cf_executor *ex = cf_test_pool(2);
    reentry_init(&r, ex);
    other_pool = cf_test_pool(1);
    atomic_store(&nested_calls, 0);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_gate_task, &g), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, reentrant_callback, &r), 0);
    cf_test_event_set(&g.release);
    ck_assert(cf_test_event_wait(&r.finished, CF_TEST_LONG));
    ROW(r.rc[0], 0);
    ROW(r.rc[1], 0);
    ROW(r.rc[2], 0);
    ROW(r.rc[3], 0);
    ROW(r.rc[4], 0);
    ROW(r.rc[5], 0);
    ROW(r.rc[6], 0);
    ROW(r.rc[7], CF_ESHUTDOWN);
    ROW(atomic_load(&nested_calls), 1);
    ROW(cf_future_result(NULL, r.self, CF_TEST_LONG), 0);
    cf_future_unref(r.self);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(cf_executor_free(other_pool), 0);
    cf_test_gate_destroy(&g);
    reentry_destroy(&r);
}
END_TEST

/* A done-callback runs on the worker that completed the future, so that worker is not free
 * while it runs: a callback that submits to its own pool and waits for that task must get
 * another thread (Python releases its idle token only after the callbacks too). */
static void wait_same_pool(cf_future *f, void *data)
{
    (void)f;
    reentry *r = data;
    cf_future *inner = NULL;
    r->rc[0] = cf_executor_submit(&inner, r->ex, identity, NULL);
    r->rc[1] = inner ? cf_future_result(NULL, inner, 2.0) : -1;
    cf_future_unref(inner);
    cf_test_event_set(&r->finished);
}

START_TEST(test_callback_waits_on_same_pool)
{
    reentry r;
    cf_executor *ex = cf_test_pool(2);
    reentry_init(&r, ex);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_gate_task, &g), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, wait_same_pool, &r), 0);
    cf_test_event_set(&g.release);
    ck_assert(cf_test_event_wait(&r.finished, CF_TEST_LONG));
    ROW(r.rc[0], 0);
    ROW(r.rc[1], 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
    reentry_destroy(&r);
}
END_TEST

/* The same from the process pool's manager thread, where callbacks run: waiting there on a
 * pending future of the same pool times out (the manager is the one that would complete it),
 * submitting works, and shutdown(wait) returns instead of waiting for itself. */
static void process_callback(cf_future *f, void *data)
{
    reentry *r = data;
    r->rc[0] = cf_future_result_bytes(NULL, NULL, f, 0.05);
    cf_future *other = NULL;
    r->rc[1] = cf_executor_submit_bytes(&other, r->ex, cf_test_echo_task, "b", 1);
    r->rc[2] = other ? cf_future_result_bytes(NULL, NULL, other, 0.05) : -1;
    cf_future *fs[2] = {f, other};
    r->rc[3] = other ? cf_wait(NULL, NULL, fs, 2, CF_ALL_COMPLETED, 0.05) : -1;
    r->rc[4] = cf_future_add_done_callback(f, count_nested, NULL);
    r->rc[5] = cf_executor_shutdown(r->ex, true, false);
    r->rc[6] = cf_executor_submit_bytes(&fs[0], r->ex, cf_test_echo_task, "c", 1);
    r->self = other; /* released by the test once it is done */
    cf_test_event_set(&r->finished);
}

START_TEST(test_reentrant_process_callback)
{
    reentry r;
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
    reentry_init(&r, ex);
    atomic_store(&nested_calls, 0);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_echo_task, "a", 1), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, process_callback, &r), 0);
    ck_assert(cf_test_event_wait(&r.finished, CF_TEST_LONG));
    ROW(r.rc[0], 0);
    ROW(r.rc[1], 0);
    ROW(r.rc[2], CF_ETIMEDOUT, 0);
    ROW(r.rc[3], CF_ETIMEDOUT, 0);
    ROW(r.rc[4], 0);
    ROW(r.rc[5], 0);
    ROW(r.rc[6], CF_ESHUTDOWN);
    ROW(atomic_load(&nested_calls), 1);
    /* The task submitted from the callback was accepted before the shutdown: it still runs. */
    ROW(cf_future_result_bytes(NULL, NULL, r.self, CF_TEST_LONG), 0);
    cf_future_unref(r.self);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    reentry_destroy(&r);
}
END_TEST

/* cf_executor_free() from a done-callback, on both kinds: the pool is released by the thread
 * that runs the callback once it is done; every future still completes. */
static void free_from_callback(cf_future *f, void *data)
{
    (void)f;
    reentry *r = data;
    r->rc[0] = cf_executor_free(r->ex);
    cf_test_event_set(&r->finished);
}

START_TEST(test_free_from_callback)
{
    for (int kind = 0; kind < 2; kind++) {
        reentry r;
        cf_executor *ex;
        if (kind == 0)
            ex = cf_test_pool(2);
        else
            ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 2}),
                             0);
        reentry_init(&r, ex);
        cf_future *fs[6];
        for (int i = 0; i < 6; i++)
            ck_assert_int_eq(cf_executor_submit_bytes(&fs[i], ex, cf_test_echo_task, "x", 1), 0);
        ck_assert_int_eq(cf_future_add_done_callback(fs[0], free_from_callback, &r), 0);
        ck_assert(cf_test_event_wait(&r.finished, CF_TEST_LONG));
        ROW(r.rc[0], 0);
        for (int i = 0; i < 6; i++) {
            ROW(cf_future_result_bytes(NULL, NULL, fs[i], CF_TEST_LONG), 0);
            cf_future_unref(fs[i]);
        }
        reentry_destroy(&r);
    }
}
END_TEST

/* Shutdown (with wait, cancelling the queue) and free, each from a task of the same pool. */
static int shutdown_task(void *arg, void **result)
{
    reentry *r = arg;
    r->rc[0] = cf_executor_shutdown(r->ex, true, true);
    *result = NULL;
    return 0;
}

static int free_task(void *arg, void **result)
{
    reentry *r = arg;
    cf_test_event_wait(&r->published, CF_TEST_LONG);
    r->rc[1] = cf_executor_free(r->ex);
    *result = NULL;
    return 0;
}

START_TEST(test_shutdown_and_free_from_tasks)
{
    reentry r;
    cf_executor *ex = cf_test_pool(1);
    reentry_init(&r, ex);
    cf_future *s, *queued[4];
    ck_assert_int_eq(cf_executor_submit(&s, ex, shutdown_task, &r), 0);
    int accepted = 0;
    for (int i = 0; i < 4; i++)
        accepted += cf_executor_submit(&queued[accepted], ex, identity, NULL) == 0;
    ROW(cf_future_result(NULL, s, CF_TEST_LONG), 0);
    ROW(r.rc[0], 0);
    for (int i = 0; i < accepted; i++) {
        ROW(cf_future_result(NULL, queued[i], CF_TEST_LONG), 0, CF_ECANCELLED);
        cf_future_unref(queued[i]);
    }
    cf_future_unref(s);
    ck_assert_int_eq(cf_executor_free(ex), 0);

    ex = cf_test_pool(2);
    r.ex = ex;
    cf_future *fr, *others[4];
    ck_assert_int_eq(cf_executor_submit(&fr, ex, free_task, &r), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(cf_executor_submit(&others[i], ex, identity, NULL), 0);
    cf_test_event_set(&r.published);
    ROW(cf_future_result(NULL, fr, CF_TEST_LONG), 0);
    ROW(r.rc[1], 0);
    for (int i = 0; i < 4; i++) {
        ROW(cf_future_result(NULL, others[i], CF_TEST_LONG), 0);
        cf_future_unref(others[i]);
    }
    cf_future_unref(fr);
    reentry_destroy(&r);
}
END_TEST

/* A bounded queue whose submit blocks, called from the pool's only worker: it waits out its
 * queue_timeout instead of deadlocking. */
static int blocking_submit_task(void *arg, void **result)
{
    reentry *r = arg;
    cf_future *f = NULL;
    r->rc[0] = cf_executor_submit(&f, r->ex, identity, NULL); /* fills the queue */
    cf_future *g = NULL;
    r->rc[1] = cf_executor_submit(&g, r->ex, identity, NULL); /* no room: waits, times out */
    cf_future_unref(f);
    cf_future_unref(g);
    *result = NULL;
    return 0;
}

START_TEST(test_blocking_submit_from_own_worker)
{
    reentry r;
    cf_executor *ex;
    ck_assert_int_eq(
        cf_thread_pool_new(&ex, &(cf_thread_pool_options){.max_workers = 1,
                                                          .max_queue = 1,
                                                          .queue_policy = CF_QUEUE_BLOCK,
                                                          .queue_timeout = 0.05}),
        0);
    reentry_init(&r, ex);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, ex, blocking_submit_task, &r), 0);
    ROW(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    ROW(r.rc[0], 0);
    ROW(r.rc[1], CF_ETIMEDOUT);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    reentry_destroy(&r);
}
END_TEST

/* ---- the event loop (loop.h, loop_task.h) ---- */

static void loop_noop(cf_loop *loop, void *data)
{
    (void)loop;
    (void)data;
}

static int loop_new_rc(const cf_loop_options *o)
{
    cf_loop *loop = POISON;
    int rc = cf_loop_new(&loop, o);
    ck_assert(rc == 0 ? loop != NULL && loop != POISON : loop == NULL);
    if (rc == 0)
        ck_assert_int_eq(cf_loop_free(loop), 0);
    return rc;
}

/* Creates, checks and releases a loop future with `make`, then runs the loop until it is
 * done and returns the outcome (or the creation error). */
static int loop_future_rc(cf_loop *loop, int rc, cf_future **fp)
{
    cf_future *f = *fp; /* read after the call that made it (arguments are unordered) */
    if (rc) {
        ck_assert_ptr_null(f);
        return rc;
    }
    ck_assert_ptr_nonnull(f);
    rc = cf_loop_run_until_complete(NULL, loop, f);
    cf_future_unref(f);
    return rc;
}

static cf_loop *hl; /* the loop of the "loop" test case */

static void loop_setup(void)
{
    fixture_setup();
    ck_assert_int_eq(cf_loop_new(&hl, NULL), 0);
}

static void loop_teardown(void)
{
    ck_assert_int_eq(cf_loop_free(hl), 0);
    fixture_teardown();
}

/* Calls from a thread that is not the loop thread. */
typedef struct foreign {
    int rc[8];
} foreign;

static void *foreign_calls(void *arg)
{
    foreign *c = arg;
    cf_future *f = NULL;
    c->rc[0] = cf_loop_call_soon(NULL, hl, loop_noop, NULL);
    c->rc[1] = cf_loop_call_later(NULL, hl, 1, loop_noop, NULL);
    c->rc[2] = cf_loop_sleep(&f, hl, 0, NULL);
    c->rc[3] = cf_loop_run_in_executor(&f, hl, NULL, identity, NULL);
    c->rc[4] = cf_loop_call_at(NULL, hl, 0, loop_noop, NULL);
    c->rc[5] = cf_loop_create_task(&f, hl, identity, NULL, NULL);
    /* Any thread: */
    c->rc[6] = cf_loop_call_soon_threadsafe(hl, loop_noop, NULL);
    c->rc[7] = cf_loop_create_future(&f, hl);
    cf_future_unref(f);
    return NULL;
}

typedef struct claimer {
    cf_loop *loop;
    int rc;
} claimer;

static void *claim_fd(void *arg)
{
    claimer *c = arg;
    c->rc = cf_loop_fd(c->loop);
    return NULL;
}

START_TEST(test_loop_arguments)
{
    cf_future *f = POISON;
    cf_loop_handle *h = POISON;
    ROW(cf_loop_new(NULL, NULL), CF_EINVAL);
    ROW(loop_new_rc(&(cf_loop_options){.spin_time = NAN}), CF_EINVAL);
    ROW(loop_new_rc(&(cf_loop_options){.spin_time = INFINITY}), 0);
    ROW(loop_new_rc(&(cf_loop_options){.spin_time = -INFINITY}), 0);
    ROW(loop_new_rc(&(cf_loop_options){.spin_time = DBL_MAX, .default_workers = UINT_MAX}), 0);
    ROW(cf_loop_close(NULL), CF_EINVAL);
    ROW(cf_loop_free(NULL), 0);
    ROW(cf_loop_run_forever(NULL), CF_EINVAL);
    ROW(cf_loop_run_until_complete(NULL, NULL, fx.done_ptr), CF_EINVAL);
    ROW(cf_loop_run_until_complete(NULL, hl, NULL), CF_EINVAL);
    ROW(cf_loop_stop(NULL), CF_EINVAL);
    ROW(cf_loop_is_running(NULL), 0);
    ROW(cf_loop_is_closed(NULL), 0);
    ROW(cf_loop_time(NULL) > 0, 1);
    ROW(cf_loop_current() == NULL, 1);
    ROW(cf_loop_call_soon(NULL, NULL, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_soon(&h, hl, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_call_later(NULL, hl, NAN, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_later(NULL, NULL, 1, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_later(NULL, hl, 1, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_call_at(NULL, hl, NAN, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_at(NULL, hl, -NAN, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_soon_threadsafe(NULL, loop_noop, NULL), CF_EINVAL);
    ROW(cf_loop_call_soon_threadsafe(hl, NULL, NULL), CF_EINVAL);
    ROW((cf_loop_handle_cancel(NULL), 0), 0);
    ROW(cf_loop_handle_cancelled(NULL), 0);
    ROW(cf_loop_handle_when(NULL) == 0, 1);
    ROW((cf_loop_handle_unref(NULL), 0), 0);
    ROW(cf_loop_create_future(NULL, hl), CF_EINVAL);
    ROW(cf_loop_create_future(&f, NULL), CF_EINVAL);
    ROW(cf_loop_wrap_future(&f, hl, NULL), CF_EINVAL);
    ROW(cf_loop_wrap_future(NULL, hl, fx.done_ptr), CF_EINVAL);
    ROW(cf_loop_wrap_future(&f, NULL, fx.done_ptr), CF_EINVAL);
    ROW(cf_loop_run_in_executor(&f, hl, fx.tp, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_run_in_executor(NULL, hl, fx.tp, identity, NULL), CF_EINVAL);
    ROW(cf_loop_run_in_executor(&f, NULL, fx.tp, identity, NULL), CF_EINVAL);
    ROW(cf_loop_run_in_executor_bytes(&f, hl, fx.tp, cf_test_echo_task, NULL, 4), CF_EINVAL);
    ROW(cf_loop_run_in_executor_bytes(&f, hl, fx.pp, NULL, "a", 1), CF_EINVAL);
    ROW(cf_loop_sleep(&f, hl, NAN, NULL), CF_EINVAL);
    ROW(cf_loop_sleep(NULL, hl, 0, NULL), CF_EINVAL);
    ROW(cf_loop_gather(&f, hl, NULL, 2), CF_EINVAL);
    cf_future *with_null[2] = {fx.done_ptr, NULL};
    ROW(cf_loop_gather(&f, hl, with_null, 2), CF_EINVAL);
    ROW(cf_loop_gather(NULL, hl, with_null, 1), CF_EINVAL);
    ROW(cf_loop_wait_for(&f, hl, fx.pending, NAN), CF_EINVAL);
    ROW(cf_loop_wait_for(&f, hl, NULL, 1), CF_EINVAL);
    ROW(cf_loop_fd(NULL), CF_EINVAL);
    ROW(cf_loop_dispatch(NULL), CF_EINVAL);
    ROW(cf_loop_create_task(NULL, hl, identity, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_create_task(&f, NULL, identity, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_create_task(&f, hl, NULL, NULL, NULL), CF_EINVAL, CF_ENOTSUP);
    ROW(cf_loop_create_task(&f, hl, identity, NULL,
                            &(cf_loop_task_options){.stack_size = SIZE_MAX}),
        CF_EINVAL, CF_ENOMEM, CF_ENOTSUP);
    /* Inside-a-task calls, outside any task. */
    ROW(cf_await(NULL, fx.done_ptr), CF_EINVALSTATE);
    ROW(cf_sleep(0), CF_EINVALSTATE);
    ROW(cf_sleep(NAN), CF_EINVAL, CF_EINVALSTATE);
    ROW(cf_gather(NULL, &fx.done_ptr, 1), CF_EINVALSTATE);
    ROW(cf_wait_for(NULL, fx.done_ptr, 1), CF_EINVALSTATE);
    ROW(cf_current_task() == NULL, 1);

    /* Loop futures over every kind of input, run to completion. */
    ROW(loop_future_rc(hl, cf_loop_wrap_future(&f, hl, fx.done_ptr), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_wrap_future(&f, hl, fx.failed), &f), CF_ETASK);
    ROW(loop_future_rc(hl, cf_loop_wrap_future(&f, hl, fx.cancelled), &f), CF_ECANCELLED);
    ROW(loop_future_rc(hl, cf_loop_run_in_executor(&f, hl, fx.tp, identity, NULL), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_run_in_executor(&f, hl, NULL, identity, NULL), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_run_in_executor(&f, hl, fx.pp, identity, NULL), &f), CF_ENOTSUP);
    ROW(loop_future_rc(hl, cf_loop_run_in_executor(&f, hl, fx.tp_down, identity, NULL), &f),
        CF_ESHUTDOWN);
    ROW(loop_future_rc(hl, cf_loop_run_in_executor_bytes(&f, hl, fx.pp, cf_test_echo_task, "ab", 2),
                       &f),
        0);
    ROW(loop_future_rc(
            hl, cf_loop_run_in_executor_bytes(&f, hl, fx.pp, cf_test_echo_task, "a", SIZE_MAX), &f),
        CF_ENOMEM);
    ROW(loop_future_rc(
            hl, cf_loop_run_in_executor_bytes(&f, hl, fx.pp_down, cf_test_echo_task, "a", 1), &f),
        CF_ESHUTDOWN);
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, -INFINITY, NULL), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, -DBL_MAX, NULL), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, DBL_MIN, NULL), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_gather(&f, hl, NULL, 0), &f), 0);
    cf_future *mixed[3] = {fx.done_ptr, fx.done_bytes, fx.done_ptr};
    ROW(loop_future_rc(hl, cf_loop_gather(&f, hl, mixed, 3), &f), 0);
    cf_future *bad[2] = {fx.done_ptr, fx.failed};
    ROW(loop_future_rc(hl, cf_loop_gather(&f, hl, bad, 2), &f), CF_ETASK);
    ROW(loop_future_rc(hl, cf_loop_wait_for(&f, hl, fx.done_ptr, 0), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_wait_for(&f, hl, fx.done_ptr, -INFINITY), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_wait_for(&f, hl, fx.done_ptr, INFINITY), &f), 0);
    ROW(loop_future_rc(hl, cf_loop_wait_for(&f, hl, fx.done_ptr, DBL_MAX), &f), 0);
    /* A future nobody completes: wait_for gives up and cancels it (a fresh one: the fixture's
     * pending future must stay pending). */
    cf_future *lonely;
    ck_assert_int_eq(cf_future_new(&lonely), 0);
    ROW(loop_future_rc(hl, cf_loop_wait_for(&f, hl, lonely, 1e-9), &f), CF_ETASK);
    ROW(cf_future_cancelled(lonely), 1);
    cf_future_unref(lonely);
    ROW(cf_loop_run_until_complete(NULL, hl, fx.done_ptr), 0);
    ROW(cf_loop_run_until_complete(NULL, hl, fx.failed), CF_ETASK);
    ROW(cf_loop_run_until_complete(NULL, hl, fx.cancelled), CF_ECANCELLED);
    /* Timers at absurd times: scheduled (and cancelled), never run early or overflow. */
    const double whens[] = {INFINITY, DBL_MAX, 1e300, 9.3e9, -INFINITY, -DBL_MAX};
    for (size_t i = 0; i < sizeof(whens) / sizeof(whens[0]); i++) {
        cf_loop_handle *th = NULL;
        ROW(cf_loop_call_later(&th, hl, whens[i], loop_noop, NULL), 0);
        cf_loop_handle_cancel(th);
        ROW(cf_loop_handle_cancelled(th), 1);
        cf_loop_handle_unref(th);
        ROW(cf_loop_call_at(&th, hl, whens[i], loop_noop, NULL), 0);
        cf_loop_handle_cancel(th);
        cf_loop_handle_unref(th);
    }
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, 0, NULL), &f), 0);
    /* The loop thread only. */
    foreign c;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, foreign_calls, &c), 0);
    pthread_join(t, NULL);
    ROW(c.rc[0], CF_EPERM);
    ROW(c.rc[1], CF_EPERM);
    ROW(c.rc[2], CF_EPERM);
    ROW(c.rc[3], CF_EPERM);
    ROW(c.rc[4], CF_EPERM);
    ROW(c.rc[5], CF_EPERM, CF_ENOTSUP);
    ROW(c.rc[6], 0);
    ROW(c.rc[7], 0);
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, 0, NULL), &f), 0); /* runs the posted callback */
    /* The first cf_loop_fd() claims the loop for its caller, as a dispatch does; after that,
     * other threads get CF_EPERM, and a dispatch moves the loop to its caller. */
    cf_loop *embedded;
    ck_assert_int_eq(cf_loop_new(&embedded, NULL), 0);
    claimer cl = {.loop = embedded};
    ck_assert_int_eq(pthread_create(&t, NULL, claim_fd, &cl), 0);
    pthread_join(t, NULL);
    ROW(cl.rc >= 0, 1);
    ROW(cf_loop_fd(embedded), CF_EPERM);
    ROW(cf_loop_run_forever(embedded), CF_EINVALSTATE);
    ROW(cf_loop_dispatch(embedded), 0);
    ROW(cf_loop_fd(embedded), cl.rc);
    ROW(cf_loop_free(embedded), 0);
}
END_TEST

static void io_noop(cf_loop *loop, int fd, unsigned events, void *data)
{
    (void)loop, (void)fd, (void)events, (void)data;
}

static void signal_noop(cf_loop *loop, int signum, void *data)
{
    (void)loop, (void)signum, (void)data;
}

static void *foreign_io_calls(void *arg)
{
    int *rc = arg;
    cf_future *f = NULL;
    rc[0] = cf_loop_add_reader(hl, 0, io_noop, NULL);
    rc[1] = cf_loop_remove_writer(hl, 0);
    rc[2] = cf_loop_wait_fd(&f, hl, 0, CF_IO_READABLE);
    rc[3] = cf_loop_forget_fd(hl, 0);
    rc[4] = cf_loop_add_signal_handler(hl, SIGUSR1, signal_noop, NULL);
    rc[5] = cf_loop_remove_signal_handler(hl, SIGUSR1);
    return NULL;
}

START_TEST(test_loop_io_arguments)
{
    cf_future *f = POISON;
    int dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(dev_null, 0);
    ROW(cf_loop_add_reader(NULL, 0, io_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_reader(hl, -1, io_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_reader(hl, INT_MIN, io_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_reader(hl, 0, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_add_reader(hl, INT_MAX, io_noop, NULL), CF_EBADF, CF_ENOMEM);
    ROW(cf_loop_add_writer(hl, INT_MAX, io_noop, NULL), CF_EBADF, CF_ENOMEM);
    ROW(cf_loop_add_reader(hl, dev_null, io_noop, NULL), CF_ENOTSUP);
    ROW(cf_loop_add_writer(NULL, 0, io_noop, NULL), CF_EINVAL);
    ROW(cf_loop_remove_reader(NULL, 0), CF_EINVAL);
    ROW(cf_loop_remove_reader(hl, -1), CF_EINVAL);
    ROW(cf_loop_remove_reader(hl, INT_MAX), 0);
    ROW(cf_loop_remove_writer(hl, INT_MAX), 0);
    ROW(cf_loop_remove_writer(hl, dev_null), 0);
    ROW(cf_loop_wait_fd(NULL, hl, 0, CF_IO_READABLE), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, NULL, 0, CF_IO_READABLE), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, hl, -1, CF_IO_READABLE), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, hl, 0, 0), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, hl, 0, CF_IO_HANGUP), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, hl, 0, UINT_MAX), CF_EINVAL);
    ROW(cf_loop_wait_fd(&f, hl, INT_MAX, CF_IO_WRITABLE), CF_EBADF, CF_ENOMEM);
    ROW(cf_loop_wait_fd(&f, hl, dev_null, CF_IO_READABLE), CF_ENOTSUP);
    ROW(f == NULL, 1);
    ROW(cf_loop_forget_fd(NULL, 0), CF_EINVAL);
    ROW(cf_loop_forget_fd(hl, -1), CF_EINVAL);
    ROW(cf_loop_forget_fd(hl, INT_MAX), 0);
    ROW(cf_loop_forget_fd(hl, dev_null), 0);
    /* Inside-a-task calls, outside any task. */
    size_t n;
    void *data;
    int client;
    char buf[4];
    struct sockaddr sa = {0};
    ROW(cf_wait_fd(NULL, 0, CF_IO_READABLE, 1), CF_EINVALSTATE);
    ROW(cf_wait_fd(NULL, -1, 0, NAN), CF_EINVALSTATE);
    ROW(cf_sock_accept(&client, 0, NULL, NULL, 1), CF_EINVALSTATE);
    ROW(cf_sock_connect(0, &sa, sizeof(sa), 1), CF_EINVALSTATE);
    ROW(cf_sock_recv(&data, &n, 0, 4, 1), CF_EINVALSTATE);
    ROW(cf_sock_recv_into(&n, 0, buf, sizeof(buf), 1), CF_EINVALSTATE);
    ROW(cf_sock_sendall(&n, 0, buf, sizeof(buf), 1), CF_EINVALSTATE);
    /* Signals. */
    ROW(cf_loop_add_signal_handler(NULL, SIGUSR1, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, SIGUSR1, NULL, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, SIGKILL, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, SIGSTOP, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, 0, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, -1, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_add_signal_handler(hl, INT_MAX, signal_noop, NULL), CF_EINVAL);
    ROW(cf_loop_remove_signal_handler(NULL, SIGUSR1), CF_EINVAL);
    ROW(cf_loop_remove_signal_handler(hl, INT_MIN), CF_EINVAL);
    ROW(cf_loop_remove_signal_handler(hl, SIGUSR1), 0);
    /* The loop thread only. */
    int rc[6];
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, foreign_io_calls, rc), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 6; i++)
        ROW(rc[i], CF_EPERM);
    close(dev_null);
}
END_TEST

/* Calls that a running loop refuses, made from its own callbacks and tasks. */
typedef struct inside {
    int rc[12];
    cf_future *self;
    int ran;
} inside;

static void inside_callback(cf_loop *loop, void *data)
{
    inside *c = data;
    cf_future *f = fx.done_ptr;
    c->rc[0] = cf_loop_run_forever(loop);
    c->rc[1] = cf_loop_run_until_complete(NULL, loop, f);
    c->rc[2] = cf_loop_close(loop);
    c->rc[3] = cf_loop_free(loop);
    c->rc[4] = cf_loop_dispatch(loop);
    c->rc[5] = cf_loop_fd(loop);
    c->rc[6] = cf_loop_is_running(loop);
    c->rc[7] = cf_loop_current() == loop;
    /* A blocking wait on an executor future works (it blocks the loop, as any slow callback). */
    cf_future *e = NULL;
    c->rc[8] = cf_executor_submit(&e, fx.tp, identity, NULL);
    c->rc[9] = e ? cf_future_result(NULL, e, CF_TEST_LONG) : -1;
    cf_future_unref(e);
    c->ran++;
}

static int inside_task(void *arg, void **result)
{
    inside *c = arg;
    cf_loop *loop = cf_loop_current();
    c->rc[0] = cf_loop_run_forever(loop);
    c->rc[1] = cf_loop_close(loop);
    c->rc[2] = cf_loop_dispatch(loop);
    c->rc[3] = cf_await(NULL, cf_current_task()); /* awaiting itself */
    c->rc[4] = cf_await(NULL, NULL);
    c->rc[5] = cf_sleep(NAN);
    c->rc[6] = cf_wait_for(NULL, fx.pending, NAN);
    c->rc[7] = cf_gather(NULL, NULL, 1);
    c->rc[8] = cf_wait_for(NULL, fx.pending, 0.001); /* the fixture's pending future: cancelled? */
    c->rc[9] = cf_gather(NULL, NULL, 0);
    c->rc[10] = cf_sleep(-INFINITY);
    c->rc[11] = cf_await(NULL, fx.failed);
    c->ran++;
    *result = c;
    return 0;
}

START_TEST(test_loop_reentrancy)
{
    inside c;
    memset(&c, 0, sizeof(c));
    cf_future *f;
    ck_assert_int_eq(cf_loop_call_soon(NULL, hl, inside_callback, &c), 0);
    ROW(loop_future_rc(hl, cf_loop_sleep(&f, hl, 0.001, NULL), &f), 0);
    ROW(c.ran, 1);
    ROW(c.rc[0], CF_EINVALSTATE);
    ROW(c.rc[1], CF_EINVALSTATE);
    ROW(c.rc[2], CF_EINVALSTATE);
    ROW(c.rc[3], CF_EINVALSTATE);
    ROW(c.rc[4], CF_EINVALSTATE);
    ROW(c.rc[5], CF_EINVALSTATE);
    ROW(c.rc[6], 1);
    ROW(c.rc[7], 1);
    ROW(c.rc[8], 0);
    ROW(c.rc[9], 0);
    inside t;
    memset(&t, 0, sizeof(t));
    /* Its own pending future here: wait_for cancels what it waited for on timeout. */
    cf_future *own_pending;
    ck_assert_int_eq(cf_future_new(&own_pending), 0);
    cf_future *saved = fx.pending;
    fx.pending = own_pending;
    int rc = cf_loop_create_task(&f, hl, inside_task, &t, NULL);
    ROW(rc, 0, CF_ENOTSUP);
    if (rc == 0) {
        ROW(cf_loop_run_until_complete(NULL, hl, f), 0);
        cf_future_unref(f);
        ROW(t.ran, 1);
        ROW(t.rc[0], CF_EINVALSTATE);
        ROW(t.rc[1], CF_EINVALSTATE);
        ROW(t.rc[2], CF_EINVALSTATE);
        ROW(t.rc[3], CF_EINVAL);
        ROW(t.rc[4], CF_EINVAL);
        ROW(t.rc[5], CF_EINVAL);
        ROW(t.rc[6], CF_EINVAL);
        ROW(t.rc[7], CF_EINVAL);
        ROW(t.rc[8], CF_ETIMEDOUT);
        ROW(t.rc[9], 0);
        ROW(t.rc[10], 0);
        ROW(t.rc[11], CF_ETASK);
    }
    fx.pending = saved;
    cf_future_unref(own_pending);
}
END_TEST

/* After cf_loop_close(): every scheduling call returns CF_ECLOSED. */
START_TEST(test_loop_after_close)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_future *pending_lf;
    ck_assert_int_eq(cf_loop_create_future(&pending_lf, loop), 0);
    ROW(cf_loop_close(loop), 0);
    ROW(cf_loop_close(loop), 0);
    ROW(cf_loop_is_closed(loop), 1);
    cf_future *f = POISON;
    ROW(cf_loop_run_forever(loop), CF_ECLOSED);
    ROW(cf_loop_run_until_complete(NULL, loop, fx.done_ptr), CF_ECLOSED);
    ROW(cf_loop_stop(loop), CF_ECLOSED);
    ROW(cf_loop_call_soon(NULL, loop, loop_noop, NULL), CF_ECLOSED);
    ROW(cf_loop_call_later(NULL, loop, 0, loop_noop, NULL), CF_ECLOSED);
    ROW(cf_loop_call_soon_threadsafe(loop, loop_noop, NULL), CF_ECLOSED);
    ROW(cf_loop_create_future(&f, loop), CF_ECLOSED);
    ROW(cf_loop_wrap_future(&f, loop, fx.done_ptr), CF_ECLOSED);
    ROW(cf_loop_run_in_executor(&f, loop, fx.tp, identity, NULL), CF_ECLOSED);
    ROW(cf_loop_run_in_executor(&f, loop, NULL, identity, NULL), CF_ECLOSED);
    ROW(cf_loop_sleep(&f, loop, 0, NULL), CF_ECLOSED);
    ROW(cf_loop_gather(&f, loop, &fx.done_ptr, 1), CF_ECLOSED);
    ROW(cf_loop_wait_for(&f, loop, fx.done_ptr, 1), CF_ECLOSED);
    ROW(cf_loop_fd(loop), CF_ECLOSED);
    ROW(cf_loop_dispatch(loop), CF_ECLOSED);
    ROW(cf_loop_create_task(&f, loop, identity, NULL, NULL), CF_ECLOSED, CF_ENOTSUP);
    /* A loop future left pending stays pending, and can still be completed and released. */
    ROW(cf_future_done(pending_lf), 0);
    ROW(cf_future_add_done_callback(pending_lf, noop_cb, NULL), 0);
    ROW(cf_future_set_result(pending_lf, NULL, NULL), 0);
    cf_future_unref(pending_lf);
    ROW(cf_loop_free(loop), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = cf_test_tcase("inputs");
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_add_test(tc, test_futures);
    tcase_add_test(tc, test_oversized_lengths);
    tcase_add_test(tc, test_executors);
    tcase_add_test(tc, test_process_pool_huge_initializer_argument);
    tcase_add_test(tc, test_after_shutdown);
    tcase_add_test(tc, test_wait_and_as_completed);
    tcase_add_test(tc, test_error_and_version);
    tcase_add_test(tc, test_short_and_nan_timeouts);
    tcase_add_test(tc, test_long_timeouts);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("reentrancy");
    tcase_add_checked_fixture(tc, NULL, cf_test_rows_report);
    tcase_add_test(tc, test_reentrant_task);
    tcase_add_test(tc, test_reentrant_callback);
    tcase_add_test(tc, test_callback_waits_on_same_pool);
    tcase_add_test(tc, test_reentrant_process_callback);
    tcase_add_test(tc, test_free_from_callback);
    tcase_add_test(tc, test_shutdown_and_free_from_tasks);
    tcase_add_test(tc, test_blocking_submit_from_own_worker);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("loop");
    tcase_add_checked_fixture(tc, loop_setup, loop_teardown);
    tcase_add_test(tc, test_loop_arguments);
    tcase_add_test(tc, test_loop_io_arguments);
    tcase_add_test(tc, test_loop_reentrancy);
    tcase_add_test(tc, test_loop_after_close);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
