/* The public interface for implementing an executor (executor_impl.h), seen from an
 * implementation: cf_executor_new's checks and the ABI rule for the ops table's size, identity
 * through cf_executor_impl, what the library checks before calling an op (NULLs, the task kind,
 * fork), the batches map hands to submit, the task accessors, cf_task_run's state machine,
 * cf_task_call_bytes for the remote side, and adopting a result buffer. The generic behaviour of
 * executors written on it is in test_executor_contract.c. */
#include <signal.h>
#include <stdalign.h>
#include <stdint.h>
#include <sys/wait.h>

#include "cf_test_sync.h"
#include "cfutures/executor_impl.h"

/* ---- a recording implementation: keeps what it is given, runs nothing by itself ---- */

enum { MAX_KEPT = 64 };

typedef struct recorder {
    cf_future *kept[MAX_KEPT];
    size_t nkept;
    size_t batches[MAX_KEPT];
    size_t nbatches;
    int refuse;         /* returned by submit when non-zero */
    size_t refuse_from; /* when non-zero: batches accepted before refusing with CF_EBROKEN */
    int shutdowns;      /* calls */
    int destroys;
    int forgets;
    bool last_wait, last_cancel;
} recorder;

static int rec_submit(void *impl, cf_future *const *fs, size_t n)
{
    recorder *r = impl;
    if (r->refuse)
        return r->refuse;
    if (r->refuse_from && r->nbatches >= r->refuse_from)
        return CF_EBROKEN;
    ck_assert_uint_le(r->nkept + n, MAX_KEPT);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(cf_future_get_state(fs[i]), CF_FUTURE_PENDING);
        r->kept[r->nkept++] = fs[i];
    }
    r->batches[r->nbatches++] = n;
    return 0;
}

static int rec_shutdown(void *impl, bool wait, bool cancel_futures)
{
    recorder *r = impl;
    r->shutdowns++;
    r->last_wait = wait;
    r->last_cancel = cancel_futures;
    return 0;
}

/* Completes what it kept the way an implementation must: run (or skip if cancelled), release. */
static void rec_drain(recorder *r)
{
    for (size_t i = 0; i < r->nkept; i++) {
        cf_task_run(r->kept[i]);
        cf_future_unref(r->kept[i]);
    }
    r->nkept = 0;
}

static int rec_destroy(void *impl)
{
    recorder *r = impl;
    r->destroys++;
    rec_drain(r);
    return 0;
}

static void rec_forget(void *impl)
{
    ((recorder *)impl)->forgets++;
}

static size_t rec_max_chunk(void *impl)
{
    (void)impl;
    return 5;
}

static const cf_executor_ops rec_ops = {
    .name = "recorder",
    .submit = rec_submit,
    .shutdown = rec_shutdown,
    .destroy = rec_destroy,
    .forget = rec_forget,
};

static cf_executor *rec_new(recorder *r, const cf_executor_ops *ops)
{
    *r = (recorder){0};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_executor_new(&ex, ops, r), 0);
    return ex;
}

static int square_fn(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * (intptr_t)arg);
    return 0;
}

static int identity_fn(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int echo_bytes(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *out = malloc(len ? len : 1);
    if (len)
        memcpy(out, arg, len);
    *result = out;
    *result_len = len;
    return 0;
}

static int failing_bytes(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)result;
    (void)result_len;
    *result = malloc(8); /* a failed task's result is discarded by the library */
    return cf_task_fail(-5, "cannot take %zu bytes: %.*s", len, (int)len, (const char *)arg);
}

/* ---- cf_executor_new ---- */

START_TEST(test_new_checks_arguments)
{
    recorder r = {0};
    cf_executor *ex = (cf_executor *)1;
    ck_assert_int_eq(cf_executor_new(NULL, &rec_ops, &r), CF_EINVAL);
    ck_assert_int_eq(cf_executor_new(&ex, NULL, &r), CF_EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert_int_eq(cf_executor_new(&ex, &rec_ops, NULL), CF_EINVAL);
    cf_executor_ops ops = rec_ops;
    ops.submit = NULL;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), CF_EINVAL);
    ops = rec_ops;
    ops.destroy = NULL;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), CF_EINVAL);
    ck_assert_ptr_null(ex);
}
END_TEST

/* docs/abi.md: a member or flag of a later release (a non-zero reserved slot, an unknown flag)
 * is refused, not ignored; a table that leaves them zero works. */
START_TEST(test_new_reserved_and_flags)
{
    recorder r = {0};
    cf_executor *ex = NULL;
    cf_executor_ops ops = rec_ops;
    ops.reserved[15] = 1;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), CF_EINVAL);
    ops = rec_ops;
    ops.reserved[0] = 1;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), CF_EINVAL);
    ops = rec_ops;
    ops.flags = 1u << 7;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), CF_EINVAL);
    ck_assert_ptr_null(ex);
    ops.flags = CF_EXECUTOR_BYTES_ONLY;
    ck_assert_int_eq(cf_executor_new(&ex, &ops, &r), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_impl_identity_and_name)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    ck_assert_ptr_eq(cf_executor_impl(ex, &rec_ops), &r);
    cf_executor_ops other = rec_ops; /* same contents, another table: another kind */
    ck_assert_ptr_null(cf_executor_impl(ex, &other));
    ck_assert_ptr_null(cf_executor_impl(NULL, &rec_ops));
    ck_assert_ptr_null(cf_executor_impl(ex, NULL));
    ck_assert_str_eq(cf_executor_name(ex), "recorder");
    ck_assert_str_eq(cf_executor_name(NULL), "");
    cf_executor *pool = cf_test_pool(1);
    ck_assert_str_eq(cf_executor_name(pool), "thread_pool");
    ck_assert_ptr_null(cf_executor_impl(pool, &rec_ops));
    cf_thread_pool_stats st;
    ck_assert_int_eq(cf_thread_pool_get_stats(&st, ex), CF_EINVAL); /* not a thread pool */
    ck_assert_int_eq(cf_executor_free(pool), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- what the library does before and around the ops ---- */

START_TEST(test_library_checks_before_ops)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, NULL, NULL), CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, echo_bytes, NULL, 3), CF_EINVAL);
    ck_assert_uint_eq(r.nbatches, 0);
    /* A refusal reaches the caller, and the future is discarded (no leak, no lost reference). */
    r.refuse = CF_EBROKEN;
    ck_assert_int_eq(cf_executor_submit(&f, ex, square_fn, NULL), CF_EBROKEN);
    ck_assert_ptr_null(f);
    r.refuse = 0;
    ck_assert_int_eq(cf_executor_shutdown(ex, true, true), 0);
    ck_assert(r.last_wait && r.last_cancel);
    ck_assert_int_eq(cf_executor_shutdown(NULL, true, true), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(r.destroys, 1);
    ck_assert_int_eq(r.shutdowns, 1); /* destroy is the implementation's: no extra shutdown */
}
END_TEST

START_TEST(test_bytes_only_flag)
{
    cf_executor_ops ops = rec_ops;
    ops.flags = CF_EXECUTOR_BYTES_ONLY;
    recorder r;
    cf_executor *ex = rec_new(&r, &ops);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, square_fn, NULL), CF_ENOTSUP);
    ck_assert_ptr_null(f);
    void *args[1] = {NULL};
    cf_map *it;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_fn, args, 1, 1.0, 0), CF_ENOTSUP);
    ck_assert_uint_eq(r.nbatches, 0);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, echo_bytes, "x", 1), 0);
    ck_assert_uint_eq(r.nbatches, 1);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_future_unref(f);
}
END_TEST

/* map hands submit batches of the chunk size, never above the implementation's maximum, and a
 * refused batch cancels the batches already accepted. */
START_TEST(test_map_batches)
{
    cf_executor_ops ops = rec_ops;
    ops.max_chunksize = rec_max_chunk;
    recorder r;
    cf_executor *ex = rec_new(&r, &ops);
    void *args[12];
    for (intptr_t i = 0; i < 12; i++)
        args[i] = (void *)i;
    cf_map *it;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_fn, args, 12, 10.0, 100), 0);
    ck_assert_uint_eq(r.nbatches, 3);
    ck_assert_uint_eq(r.batches[0], 5);
    ck_assert_uint_eq(r.batches[1], 5);
    ck_assert_uint_eq(r.batches[2], 2);
    rec_drain(&r);
    void *v;
    for (intptr_t i = 0; i < 12; i++) {
        ck_assert_int_eq(cf_map_next(&v, it), 0);
        ck_assert_int_eq((intptr_t)v, i * i);
    }
    cf_map_free(it);
    /* Without an opinion from the implementation the default is n / (4 x CPUs), at least 1. */
    r.nbatches = 0;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_fn, args, 3, 10.0, 0), 0);
    ck_assert_uint_eq(r.nbatches, 3);
    ck_assert_uint_eq(r.batches[0], 1);
    rec_drain(&r);
    cf_map_free(it);
    /* A refused chunk: the chunks already accepted are cancelled, and map reports the refusal
     * without making an iterator. */
    r.nbatches = 0;
    r.refuse_from = 1;
    it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(&it, ex, square_fn, args, 12, 10.0, 5), CF_EBROKEN);
    ck_assert_ptr_null(it);
    ck_assert_uint_eq(r.nkept, 5);
    for (size_t i = 0; i < r.nkept; i++)
        ck_assert(cf_future_cancelled(r.kept[i]));
    rec_drain(&r);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_fork_calls_forget)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cf_future *f;
        int ok = cf_executor_submit(&f, ex, square_fn, NULL) == CF_EFORKED &&
                 cf_executor_shutdown(ex, false, false) == CF_EFORKED &&
                 cf_executor_free(ex) == CF_EFORKED && r.forgets == 1 && r.destroys == 0 &&
                 r.nbatches == 0 && r.shutdowns == 0;
        _exit(ok ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(r.forgets, 0);
}
END_TEST

/* ---- the task a future carries ---- */

START_TEST(test_task_accessors)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    cf_future *pf, *bf;
    int target;
    ck_assert_int_eq(cf_executor_submit(&pf, ex, identity_fn, &target), 0);
    unsigned char payload[100];
    for (int i = 0; i < 100; i++)
        payload[i] = (unsigned char)i;
    ck_assert_int_eq(cf_executor_submit_bytes(&bf, ex, echo_bytes, payload, sizeof(payload)), 0);
    memset(payload, 0, sizeof(payload)); /* the task has its own copy */
    cf_future *p = r.kept[0], *b = r.kept[1];
    ck_assert(cf_task_fn(p) == identity_fn);
    ck_assert_ptr_eq(cf_task_arg(p), &target);
    ck_assert(cf_task_bytes_fn(p) == NULL);
    ck_assert(cf_task_bytes_fn(b) == echo_bytes);
    ck_assert(cf_task_fn(b) == NULL);
    ck_assert_ptr_null(cf_task_arg(b));
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_task_bytes_arg(&data, &len, p), CF_EINVAL);
    ck_assert_int_eq(cf_task_bytes_arg(&data, &len, b), 0);
    ck_assert_uint_eq(len, 100);
    ck_assert_uint_eq((uintptr_t)data % 16, 0);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(((const unsigned char *)data)[i], i);
    ck_assert_int_eq(cf_task_bytes_arg(NULL, &len, b), CF_EINVAL);
    /* A plain future carries no task. */
    cf_future *plain;
    ck_assert_int_eq(cf_future_new(&plain), 0);
    ck_assert(cf_task_fn(plain) == NULL && cf_task_bytes_fn(plain) == NULL);
    ck_assert_int_eq(cf_task_run(plain), CF_EINVAL);
    ck_assert_int_eq(cf_task_run(NULL), CF_EINVAL);
    cf_future_unref(plain);
    /* Released early (the implementation sent it elsewhere): gone, and not runnable here. */
    cf_task_release_arg(b);
    cf_task_release_arg(b);
    ck_assert_int_eq(cf_task_bytes_arg(&data, &len, b), CF_EINVALSTATE);
    ck_assert_int_eq(cf_task_run(b), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result_bytes(b, "ok", 2), 0);
    rec_drain(&r); /* runs p; b is done already */
    void *v;
    ck_assert_int_eq(cf_future_result(&v, pf, 0), 0);
    ck_assert_ptr_eq(v, &target);
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, bf, 0), 0);
    ck_assert_uint_eq(len, 2);
    cf_future_unref(pf);
    cf_future_unref(bf);
    cf_executor_free(ex);
}
END_TEST

static atomic_int callback_calls;

static void count_cb(cf_future *f, void *data)
{
    (void)f;
    (void)data;
    atomic_fetch_add(&callback_calls, 1);
}

START_TEST(test_task_run_states)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    cf_future *a, *b, *c;
    ck_assert_int_eq(cf_executor_submit(&a, ex, square_fn, (void *)4), 0);
    ck_assert_int_eq(cf_executor_submit_bytes(&b, ex, failing_bytes, "abc", 3), 0);
    ck_assert_int_eq(cf_executor_submit(&c, ex, square_fn, (void *)5), 0);
    atomic_store(&callback_calls, 0);
    ck_assert_int_eq(cf_future_add_done_callback(a, count_cb, NULL), 0);
    /* Runs in this thread, completes, runs the callbacks here; the caller keeps its reference. */
    ck_assert_int_eq(cf_task_run(r.kept[0]), 1);
    ck_assert_int_eq(atomic_load(&callback_calls), 1);
    ck_assert_int_eq(cf_task_run(r.kept[0]), CF_EINVALSTATE); /* done: never twice */
    void *v;
    ck_assert_int_eq(cf_future_result(&v, a, 0), 0);
    ck_assert_int_eq((intptr_t)v, 16);
    /* A failing bytes task: its code and message, its result buffer discarded. */
    ck_assert_int_eq(cf_task_run(r.kept[1]), 1);
    int code;
    const char *message;
    ck_assert_int_eq(cf_future_exception(&code, &message, b, 0), 0);
    ck_assert_int_eq(code, -5);
    ck_assert_str_eq(message, "cannot take 3 bytes: abc");
    /* Cancelled by its owner first: skipped. Running already: refused. */
    ck_assert(cf_future_cancel(c));
    ck_assert_int_eq(cf_task_run(r.kept[2]), 0);
    cf_future *d;
    ck_assert_int_eq(cf_executor_submit(&d, ex, square_fn, (void *)6), 0);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(r.kept[3]), 1);
    ck_assert_int_eq(cf_task_run(r.kept[3]), CF_EINVALSTATE);
    ck_assert_int_eq(cf_future_set_exception(r.kept[3], CF_EBROKEN, "worker died"), 0);
    ck_assert_int_eq(cf_future_exception(&code, &message, d, 0), 0);
    ck_assert_int_eq(code, CF_EBROKEN);
    for (size_t i = 0; i < r.nkept; i++)
        cf_future_unref(r.kept[i]);
    r.nkept = 0;
    cf_future_unref(a);
    cf_future_unref(b);
    cf_future_unref(c);
    cf_future_unref(d);
    cf_executor_free(ex);
}
END_TEST

static _Atomic int dtor_calls, other_dtor_calls;

static void count_dtor(void *value)
{
    (void)value;
    atomic_fetch_add(&dtor_calls, 1);
}

static void count_other_dtor(void *value)
{
    (void)value;
    atomic_fetch_add(&other_dtor_calls, 1);
}

/* A result destructor given at submit reaches the result however the implementation completes
 * the task: with cf_task_run(), or with cf_future_set_result() and no destructor of its own. */
START_TEST(test_submit_dtor_reaches_the_result)
{
    recorder r;
    cf_executor *ex = rec_new(&r, &rec_ops);
    cf_future *a, *b, *c;
    ck_assert_int_eq(cf_executor_submit_dtor(&a, ex, identity_fn, (void *)1, count_dtor), 0);
    ck_assert_int_eq(cf_executor_submit_dtor(&b, ex, identity_fn, (void *)2, count_dtor), 0);
    ck_assert_int_eq(cf_executor_submit_dtor(&c, ex, identity_fn, (void *)3, count_dtor), 0);
    atomic_store(&dtor_calls, 0);
    atomic_store(&other_dtor_calls, 0);
    ck_assert_int_eq(cf_task_run(r.kept[0]), 1);
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(r.kept[1]), 1);
    ck_assert(cf_task_fn(r.kept[1]) == identity_fn);
    ck_assert_int_eq(cf_future_set_result(r.kept[1], cf_task_arg(r.kept[1]), NULL), 0);
    /* The implementation's own destructor wins over the submitter's. */
    ck_assert_int_eq(cf_future_set_running_or_notify_cancel(r.kept[2]), 1);
    ck_assert_int_eq(cf_future_set_result(r.kept[2], (void *)3, count_other_dtor), 0);
    void *v;
    ck_assert_int_eq(cf_future_result(&v, b, 0), 0);
    ck_assert_int_eq((intptr_t)v, 2);
    for (size_t i = 0; i < r.nkept; i++)
        cf_future_unref(r.kept[i]);
    r.nkept = 0;
    ck_assert_int_eq(atomic_load(&dtor_calls), 0); /* the callers still hold theirs */
    cf_future_unref(a);
    cf_future_unref(b);
    cf_future_unref(c);
    ck_assert_int_eq(atomic_load(&dtor_calls), 2);
    ck_assert_int_eq(atomic_load(&other_dtor_calls), 1);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_task_call_bytes)
{
    void *result = (void *)1;
    size_t len = 9;
    char *message = (char *)1;
    ck_assert_int_eq(cf_task_call_bytes(echo_bytes, "hello", 5, &result, &len, &message), 0);
    ck_assert_uint_eq(len, 5);
    ck_assert_mem_eq(result, "hello", 5);
    ck_assert_ptr_null(message);
    free(result);
    ck_assert_int_eq(cf_task_call_bytes(failing_bytes, "xy", 2, &result, &len, &message), -5);
    ck_assert_ptr_null(result);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(message, "cannot take 2 bytes: xy");
    free(message);
    /* The message may be dropped. */
    ck_assert_int_eq(cf_task_call_bytes(failing_bytes, "xy", 2, &result, &len, NULL), -5);
    message = (char *)1;
    ck_assert_int_eq(cf_task_call_bytes(NULL, "x", 1, &result, &len, &message), CF_EINVAL);
    ck_assert_ptr_null(message);
    ck_assert_int_eq(cf_task_call_bytes(echo_bytes, NULL, 1, &result, &len, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_task_call_bytes(echo_bytes, "x", 1, NULL, &len, NULL), CF_EINVAL);
    /* Outside any task context, cf_task_fail still returns its code (and drops the message). */
    ck_assert_int_eq(cf_task_fail(-3, "nobody hears %d", 1), -3);
}
END_TEST

START_TEST(test_set_result_bytes_owned)
{
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
    char *buf = malloc(4);
    memcpy(buf, "data", 4);
    ck_assert_int_eq(cf_future_set_result_bytes_owned(NULL, buf, 4), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result_bytes_owned(f, NULL, 4), CF_EINVAL);
    ck_assert_int_eq(cf_future_set_result_bytes_owned(f, buf, 4), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_ptr_eq(data, buf); /* adopted, not copied */
    ck_assert_uint_eq(len, 4);
    char *other = malloc(1);
    ck_assert_int_eq(cf_future_set_result_bytes_owned(f, other, 1), CF_EINVALSTATE);
    free(other);        /* refused: still ours */
    cf_future_unref(f); /* frees buf */
    ck_assert_int_eq(cf_future_new(&f), 0);
    ck_assert_int_eq(cf_future_set_result_bytes_owned(f, NULL, 0), 0);
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, 0), 0);
    ck_assert_uint_eq(len, 0);
    cf_future_unref(f);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("executor_impl");
    TCase *tc = cf_test_tcase("core");
    tcase_add_test(tc, test_new_checks_arguments);
    tcase_add_test(tc, test_new_reserved_and_flags);
    tcase_add_test(tc, test_impl_identity_and_name);
    tcase_add_test(tc, test_library_checks_before_ops);
    tcase_add_test(tc, test_bytes_only_flag);
    tcase_add_test(tc, test_map_batches);
    tcase_add_test(tc, test_fork_calls_forget);
    tcase_add_test(tc, test_task_accessors);
    tcase_add_test(tc, test_task_run_states);
    tcase_add_test(tc, test_submit_dtor_reaches_the_result);
    tcase_add_test(tc, test_task_call_bytes);
    tcase_add_test(tc, test_set_result_bytes_owned);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
