/* The generic executor tests: what every cf_executor must do, whatever runs its tasks (threads,
 * worker processes, MPI ranks, an implementation written outside the library). A suite sets
 * `cf_contract` to its target, then adds cf_contract_tcase() to its suite.
 *
 * The tasks are bytes tasks unless the target runs pointer tasks, and blocking tasks are
 * released through files in a scratch directory, so that the same tests hold when tasks run in
 * other processes on this machine (their memory is not ours). The assertions are the contract
 * of executor.h: results and errors, map order, wait and as_completed, done-callbacks exactly
 * once (also when they submit to the same executor), shutdown(wait, cancel_futures), submit after
 * shutdown, cancelling a future that has not started, free waiting for accepted work, and an
 * event loop awaiting the executor's futures. */
#ifndef CF_EXECUTOR_CONTRACT_H
#define CF_EXECUTOR_CONTRACT_H

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_test_sync.h"

typedef struct cf_contract_target {
    const char *name;
    /* Returns a fresh executor (asserting on failure). */
    cf_executor *(*make)(void);
    /* Runs pointer tasks (cf_executor_submit); otherwise they must give CF_ENOTSUP. */
    bool pointer_tasks;
    /* The most tasks it may start (or dispatch, making them RUNNING) while all its workers are
     * blocked; 0 for no limit (every task starts at once). It must have at least two workers:
     * a task submitted while one blocks runs on another. */
    unsigned max_started;
} cf_contract_target;

static const cf_contract_target *cf_contract;

/* ---- a scratch directory of gate files ---- */

typedef struct contract_gate_arg {
    char dir[200];
    int id;
} contract_gate_arg;

static char contract_dir[200];

static void contract_setup(void)
{
    snprintf(contract_dir, sizeof(contract_dir), "/tmp/cf-contract-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(contract_dir));
}

static void contract_teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", contract_dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void contract_path(char *out, size_t cap, const char *dir, const char *what, int id)
{
    snprintf(out, cap, "%s/%s.%d", dir, what, id);
}

static void contract_touch(const char *dir, const char *what, int id)
{
    char path[256];
    contract_path(path, sizeof(path), dir, what, id);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
}

/* Polls (1 ms steps) until the file exists or `seconds` pass; returns whether it exists. */
static bool contract_exists_within(const char *dir, const char *what, int id, double seconds)
{
    char path[256];
    contract_path(path, sizeof(path), dir, what, id);
    double end = cf_test_monotonic() + seconds;
    while (access(path, F_OK) != 0) {
        if (cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(1);
    }
    return true;
}

static void contract_release(void)
{
    contract_touch(contract_dir, "release", 0);
}

static int contract_int_result(int v, void **result, size_t *result_len)
{
    int *out = malloc(sizeof(int));
    if (!out)
        return CF_ENOMEM;
    *out = v;
    *result = out;
    *result_len = sizeof(int);
    return 0;
}

/* ---- tasks (they may run in another process) ---- */

/* Marks "started.<id>", waits for "release.0", marks "ran.<id>", returns id. */
static int contract_gate_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    contract_gate_arg g;
    if (len != sizeof(g))
        return CF_EINVAL;
    memcpy(&g, arg, sizeof(g));
    contract_touch(g.dir, "started", g.id);
    if (!contract_exists_within(g.dir, "release", 0, CF_TEST_LONG))
        return cf_task_fail(CF_ETIMEDOUT, "nobody released the gate");
    contract_touch(g.dir, "ran", g.id);
    return contract_int_result(g.id, result, result_len);
}

/* The square of an int argument; fails with -77 and a message for 13. */
static int contract_square_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    int x;
    if (len != sizeof(x))
        return cf_task_fail(CF_EINVAL, "expected an int, got %zu bytes", len);
    memcpy(&x, arg, sizeof(x));
    if (x == 13)
        return cf_task_fail(-77, "unlucky %d", x);
    return contract_int_result(x * x, result, result_len);
}

static int contract_echo_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    if (len)
        memcpy(out, arg, len);
    *result = out;
    *result_len = len;
    return 0;
}

static int contract_pointer_square(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * (intptr_t)arg);
    return 0;
}

/* ---- helpers ---- */

static cf_future *contract_submit_int(cf_executor *ex, int x)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, contract_square_task, &x, sizeof(x)), 0);
    return f;
}

static cf_future *contract_submit_gate(cf_executor *ex, int id)
{
    contract_gate_arg g = {.id = id};
    snprintf(g.dir, sizeof(g.dir), "%s", contract_dir);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, contract_gate_task, &g, sizeof(g)), 0);
    return f;
}

/* The int result of a future, or -1000 + the failure code. */
static int contract_int(cf_future *f)
{
    const void *data;
    size_t len;
    int rc = cf_future_result_bytes(&data, &len, f, CF_TEST_LONG);
    if (rc == CF_ETASK) {
        int code = 0;
        cf_future_exception(&code, NULL, f, 0);
        return -1000 + code;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(len, sizeof(int));
    int v;
    memcpy(&v, data, sizeof(v));
    return v;
}

/* ---- the tests ---- */

START_TEST(contract_submit_and_result)
{
    cf_executor *ex = cf_contract->make();
    ck_assert_str_ne(cf_executor_name(ex), "");
    cf_future *f = contract_submit_int(ex, 12);
    ck_assert_int_eq(contract_int(f), 144);
    ck_assert_int_eq(cf_future_get_state(f), CF_FUTURE_FINISHED);
    cf_future_unref(f);
    /* Bytes come back exactly, empty ones included. */
    const char text[] = "across the executor";
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, contract_echo_task, text, sizeof(text)), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, sizeof(text));
    ck_assert_mem_eq(data, text, sizeof(text));
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, contract_echo_task, NULL, 0), 0);
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 0);
    cf_future_unref(f);
    /* Pointer tasks run where memory is shared, and are refused elsewhere. */
    int rc = cf_executor_submit(&f, ex, contract_pointer_square, (void *)7);
    if (cf_contract->pointer_tasks) {
        ck_assert_int_eq(rc, 0);
        void *v;
        ck_assert_int_eq(cf_future_result(&v, f, CF_TEST_LONG), 0);
        ck_assert_int_eq((intptr_t)v, 49);
        cf_future_unref(f);
    } else {
        ck_assert_int_eq(rc, CF_ENOTSUP);
        ck_assert_ptr_null(f);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(contract_task_failure)
{
    cf_executor *ex = cf_contract->make();
    cf_future *f = contract_submit_int(ex, 13);
    void *v = (void *)1;
    ck_assert_int_eq(cf_future_result(&v, f, CF_TEST_LONG), CF_ETASK);
    int code;
    const char *message;
    ck_assert_int_eq(cf_future_exception(&code, &message, f, 0), 0);
    ck_assert_int_eq(code, -77);
    ck_assert_str_eq(message, "unlucky 13");
    cf_future_unref(f);
    /* A failure does not break the executor. */
    f = contract_submit_int(ex, 3);
    ck_assert_int_eq(contract_int(f), 9);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static void contract_map(size_t chunksize)
{
    enum { N = 60 };
    cf_executor *ex = cf_contract->make();
    int xs[N];
    cf_bytes args[N];
    for (int i = 0; i < N; i++) {
        xs[i] = i;
        args[i] = (cf_bytes){&xs[i], sizeof(int)};
    }
    cf_map *it;
    ck_assert_int_eq(
        cf_executor_map_bytes(&it, ex, contract_square_task, args, N, CF_TEST_LONG, chunksize), 0);
    for (int i = 0; i < N; i++) {
        int rc = cf_map_next(NULL, it);
        if (i == 13) {
            ck_assert_int_eq(rc, CF_ETASK); /* at its position, and iteration goes on */
            ck_assert_int_eq(contract_int(cf_map_current(it)), -1000 - 77);
            continue;
        }
        ck_assert_int_eq(rc, 0);
        ck_assert_int_eq(contract_int(cf_map_current(it)), i * i);
    }
    ck_assert_int_eq(cf_map_next(NULL, it), CF_EOF);
    cf_map_free(it);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

START_TEST(contract_map_in_order)
{
    contract_map(0);
    contract_map(1);
    contract_map(7);
}
END_TEST

START_TEST(contract_wait_first_and_all)
{
    cf_executor *ex = cf_contract->make();
    cf_future *fs[2] = {contract_submit_gate(ex, 1), NULL};
    ck_assert(contract_exists_within(contract_dir, "started", 1, CF_TEST_LONG));
    fs[1] = contract_submit_int(ex, 5);
    /* The second task goes to a free worker: it completes while the first blocks. */
    bool done[2];
    ck_assert_int_eq(cf_wait(NULL, done, fs, 2, CF_FIRST_COMPLETED, CF_TEST_LONG), 0);
    ck_assert(done[1] && !done[0]);
    contract_release();
    ck_assert_int_eq(cf_wait(NULL, NULL, fs, 2, CF_ALL_COMPLETED, CF_TEST_LONG), 0);
    ck_assert_int_eq(contract_int(fs[0]), 1);
    ck_assert_int_eq(contract_int(fs[1]), 25);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(contract_as_completed_yields_each_once)
{
    enum { N = 24 };
    cf_executor *ex = cf_contract->make();
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = contract_submit_int(ex, i);
    cf_as_completed *it;
    ck_assert_int_eq(cf_as_completed_new(&it, fs, N, CF_TEST_LONG), 0);
    bool seen[N] = {false};
    cf_future *f;
    int count = 0, rc;
    while ((rc = cf_as_completed_next(&f, it)) == 0) {
        ck_assert(cf_future_done(f));
        int i = 0;
        while (i < N && fs[i] != f)
            i++;
        ck_assert_int_lt(i, N);
        ck_assert(!seen[i]);
        seen[i] = true;
        count++; /* borrowed: no reference to release */
    }
    ck_assert_int_eq(rc, CF_EOF);
    ck_assert_int_eq(count, N);
    cf_as_completed_free(it);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(contract_int(fs[i]), (i == 13 ? -1077 : i * i));
        cf_future_unref(fs[i]);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

typedef struct contract_cb {
    atomic_int calls;
    cf_executor *ex;
    cf_future *chained; /* submitted from the callback */
    cf_test_event done;
} contract_cb;

static void contract_count_cb(cf_future *f, void *data)
{
    contract_cb *c = data;
    ck_assert(cf_future_done(f));
    atomic_fetch_add(&c->calls, 1);
}

/* A callback that submits to the executor that completed its future. */
static void contract_chain_cb(cf_future *f, void *data)
{
    contract_cb *c = data;
    (void)f;
    int x = 4;
    int rc = cf_executor_submit_bytes(&c->chained, c->ex, contract_square_task, &x, sizeof(x));
    atomic_fetch_add(&c->calls, rc == 0 ? 1 : 100);
    cf_test_event_set(&c->done);
}

START_TEST(contract_callbacks_once_and_reentrant)
{
    cf_executor *ex = cf_contract->make();
    contract_cb c = {.ex = ex};
    cf_test_event_init(&c.done);
    cf_future *gated = contract_submit_gate(ex, 1);
    ck_assert_int_eq(cf_future_add_done_callback(gated, contract_count_cb, &c), 0);
    ck_assert_int_eq(cf_future_add_done_callback(gated, contract_chain_cb, &c), 0);
    ck_assert_int_eq(atomic_load(&c.calls), 0);
    contract_release();
    ck_assert(cf_test_event_wait(&c.done, CF_TEST_LONG));
    ck_assert_int_eq(atomic_load(&c.calls), 2);
    ck_assert_int_eq(contract_int(c.chained), 16);
    /* Added after completion: runs at once, in this thread. */
    ck_assert_int_eq(cf_future_add_done_callback(gated, contract_count_cb, &c), 0);
    ck_assert_int_eq(atomic_load(&c.calls), 3);
    cf_future_unref(c.chained);
    cf_future_unref(gated);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(atomic_load(&c.calls), 3);
    cf_test_event_destroy(&c.done);
}
END_TEST

START_TEST(contract_shutdown_refuses_then_finishes_work)
{
    cf_executor *ex = cf_contract->make();
    cf_future *gated = contract_submit_gate(ex, 1);
    cf_future *queued = contract_submit_int(ex, 6);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    cf_future *f = (cf_future *)1;
    int x = 1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, contract_square_task, &x, sizeof(x)),
                     CF_ESHUTDOWN);
    ck_assert_ptr_null(f);
    cf_bytes arg = {&x, sizeof(x)};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, contract_square_task, &arg, 1, 1.0, 0),
                     CF_ESHUTDOWN);
    ck_assert_ptr_null(it);
    contract_release();
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    /* shutdown(wait) returned: the accepted work is done, with its results. */
    ck_assert(cf_future_done(gated) && cf_future_done(queued));
    ck_assert_int_eq(contract_int(gated), 1);
    ck_assert_int_eq(contract_int(queued), 36);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, true), 0); /* idempotent */
    cf_future_unref(gated);
    cf_future_unref(queued);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(contract_shutdown_cancel_futures)
{
    enum { EXTRA = 4 };
    cf_executor *ex = cf_contract->make();
    unsigned bound = cf_contract->max_started;
    unsigned n = (bound ? bound : 8) + EXTRA;
    cf_future **fs = calloc(n, sizeof(*fs));
    for (unsigned i = 0; i < n; i++)
        fs[i] = contract_submit_gate(ex, (int)i);
    ck_assert(contract_exists_within(contract_dir, "started", 0, CF_TEST_LONG));
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    contract_release();
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    unsigned cancelled = 0;
    for (unsigned i = 0; i < n; i++) {
        /* Every future is done: cancelled, or run to its result; never lost. */
        ck_assert(cf_future_done(fs[i]));
        char path[256];
        contract_path(path, sizeof(path), contract_dir, "ran", (int)i);
        if (cf_future_cancelled(fs[i])) {
            ck_assert_uint_ne(i, 0); /* it had started */
            cancelled++;
            ck_assert_int_ne(access(path, F_OK), 0); /* a cancelled task never runs */
        } else {
            ck_assert_int_eq(contract_int(fs[i]), (int)i);
        }
        cf_future_unref(fs[i]);
    }
    if (bound)
        ck_assert_uint_ge(cancelled, EXTRA);
    free(fs);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(contract_cancel_pending_future)
{
    unsigned bound = cf_contract->max_started;
    if (!bound)
        return; /* every task starts at once: there is never a pending one to cancel */
    cf_executor *ex = cf_contract->make();
    unsigned n = bound + 1;
    cf_future **fs = calloc(n, sizeof(*fs));
    for (unsigned i = 0; i < n; i++)
        fs[i] = contract_submit_gate(ex, (int)i);
    ck_assert(contract_exists_within(contract_dir, "started", 0, CF_TEST_LONG));
    cf_future *last = fs[n - 1];
    ck_assert(!cf_future_running(last));
    ck_assert(cf_future_cancel(last));
    ck_assert_int_eq(cf_future_get_state(last), CF_FUTURE_CANCELLED);
    ck_assert_int_eq(cf_future_result(NULL, last, 0), CF_ECANCELLED);
    contract_release();
    ck_assert_int_eq(cf_executor_free(ex), 0);
    for (unsigned i = 0; i + 1 < n; i++) {
        ck_assert_int_eq(contract_int(fs[i]), (int)i);
        cf_future_unref(fs[i]);
    }
    ck_assert(!contract_exists_within(contract_dir, "ran", (int)n - 1, 0));
    cf_future_unref(last);
    free(fs);
}
END_TEST

static void *contract_release_later(void *arg)
{
    (void)arg;
    ck_assert(contract_exists_within(contract_dir, "started", 0, CF_TEST_LONG));
    contract_release();
    return NULL;
}

START_TEST(contract_free_waits_for_accepted_work)
{
    cf_executor *ex = cf_contract->make();
    cf_future *fs[4];
    fs[0] = contract_submit_gate(ex, 0);
    for (int i = 1; i < 4; i++)
        fs[i] = contract_submit_int(ex, i);
    pthread_t t;
    pthread_create(&t, NULL, contract_release_later, NULL);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    for (int i = 0; i < 4; i++)
        ck_assert(cf_future_done(fs[i]));
    pthread_join(t, NULL);
    ck_assert_int_eq(contract_int(fs[0]), 0);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(contract_int(fs[i]), i * i);
    for (int i = 0; i < 4; i++)
        cf_future_unref(fs[i]);
}
END_TEST

typedef struct contract_submitter {
    cf_executor *ex;
    int base;
    int bad;
} contract_submitter;

static void *contract_submit_many(void *arg)
{
    contract_submitter *s = arg;
    enum { PER = 25 };
    cf_future *fs[PER];
    for (int i = 0; i < PER; i++) {
        int x = s->base + i;
        if (cf_executor_submit_bytes(&fs[i], s->ex, contract_square_task, &x, sizeof(x)) != 0)
            fs[i] = NULL;
    }
    for (int i = 0; i < PER; i++) {
        int x = s->base + i;
        if (!fs[i] || contract_int(fs[i]) != (x == 13 ? -1077 : x * x))
            s->bad++;
        cf_future_unref(fs[i]);
    }
    return NULL;
}

START_TEST(contract_concurrent_submitters)
{
    enum { T = 4 };
    cf_executor *ex = cf_contract->make();
    pthread_t t[T];
    contract_submitter s[T];
    for (int i = 0; i < T; i++) {
        s[i] = (contract_submitter){.ex = ex, .base = 100 * i};
        pthread_create(&t[i], NULL, contract_submit_many, &s[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(s[i].bad, 0);
    }
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(contract_loop_awaits_executor_future)
{
    cf_executor *ex = cf_contract->make();
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    int x = 11;
    cf_future *f;
    ck_assert_int_eq(
        cf_loop_run_in_executor_bytes(&f, loop, ex, contract_square_task, &x, sizeof(x)), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, f), 0);
    ck_assert_int_eq(contract_int(f), 121);
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static TCase *cf_contract_tcase(void)
{
    TCase *tc = cf_test_tcase("contract");
    tcase_add_checked_fixture(tc, contract_setup, contract_teardown);
    tcase_add_test(tc, contract_submit_and_result);
    tcase_add_test(tc, contract_task_failure);
    tcase_add_test(tc, contract_map_in_order);
    tcase_add_test(tc, contract_wait_first_and_all);
    tcase_add_test(tc, contract_as_completed_yields_each_once);
    tcase_add_test(tc, contract_callbacks_once_and_reentrant);
    tcase_add_test(tc, contract_shutdown_refuses_then_finishes_work);
    tcase_add_test(tc, contract_shutdown_cancel_futures);
    tcase_add_test(tc, contract_cancel_pending_future);
    tcase_add_test(tc, contract_free_waits_for_accepted_work);
    tcase_add_test(tc, contract_concurrent_submitters);
    tcase_add_test(tc, contract_loop_awaits_executor_future);
    return tc;
}

#endif
