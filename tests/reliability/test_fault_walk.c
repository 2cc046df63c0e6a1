/* Fault-injection walk (white-box; needs -Dfault_injection=true, otherwise every walk is
 * skipped). For each public operation sequence (thread pool, process pool, coroutines) and each
 * set of fault kinds (and the event loop awaiting both pool kinds), run N = 1, 2, 3, ... makes the
 * N-th allocation / thread / descriptor / mapping / process creation fail, until a run completes
 * without reaching the N-th operation. At every N: each call returns 0 or an error its header
 * documents, every accepted future completes within a bound, every done-callback that was accepted
 * runs exactly once, the process is left with the descriptors, threads and children it had, and a
 * fresh pool works at once. Memory leaks are left to the valgrind and ASan runs of this suite (CI
 * kind fault_injection). */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "cf_test_sync.h"
#ifndef CF_TEST_NO_COROUTINES
#include "loop/coro.h"
#endif
#include "core/internal.h"
#include "proc_util.h"

#ifdef CF_FAULT_INJECTION

enum { WALK_LIMIT = 5000 };

static unsigned long total_injected;

/* The kernel removes a joined thread from the count a moment after pthread_join() returns (the
 * join waits for the thread's tid to be cleared, which comes first), so poll for a while. */
static int settled_threads(int expected)
{
    double end = cf_test_monotonic() + CF_TEST_LONG;
    int n;
    while ((n = cf_test_count_threads()) != expected && cf_test_monotonic() < end)
        cf_test_pause_ms(1);
    return n;
}

/* Whether `rc` is 0 or one of the codes in the zero-terminated list. */
static bool allowed(int rc, const int *codes)
{
    if (rc == 0)
        return true;
    for (; *codes; codes++)
        if (rc == *codes)
            return true;
    return false;
}

#define EXPECT(call, rc, ...)                                                                      \
    ck_assert_msg(allowed((rc), (const int[]){__VA_ARGS__, 0}), "%s: %s at fault %lu", call,       \
                  cf_err_name(rc), current_nth)

static unsigned long current_nth;

/* Walks N upwards over one scenario; `fresh` checks that the library works right after. */
static void walk(const char *name, unsigned kinds, void (*scenario)(void), void (*fresh)(void))
{
    fresh(); /* whatever is opened once per process is opened before the baseline */
    int fds = cf_test_count_fds(), threads = cf_test_count_threads(),
        children = proc_util_count_children();
    unsigned long nth;
    unsigned long injected = 0;
    for (nth = 1; nth < WALK_LIMIT; nth++) {
        current_nth = nth;
        cf__fault_arm(kinds, nth);
        scenario();
        bool fired = cf__fault_fired();
        unsigned long ops = cf__fault_count();
        cf__fault_arm(0, 0);
        injected += fired;
        if (getenv("CF_TEST_VERBOSE"))
            fprintf(stderr, "%s: fault %lu %s after %lu operations\n", name, nth,
                    fired ? "fired" : "not reached", ops);
        ck_assert_msg(cf_test_count_fds() == fds, "%s: descriptors %d -> %d at fault %lu", name,
                      fds, cf_test_count_fds(), nth);
        int now = settled_threads(threads);
        ck_assert_msg(now == threads, "%s: threads %d -> %d at fault %lu", name, threads, now, nth);
        ck_assert_msg(proc_util_count_children() == children, "%s: children %d -> %d at fault %lu",
                      name, children, proc_util_count_children(), nth);
        fresh();
        if (!fired)
            break;
    }
    ck_assert_msg(nth < WALK_LIMIT, "%s: still injecting after %d faults", name, WALK_LIMIT);
    total_injected += injected;
    printf("fault walk %-34s %4lu faults injected\n", name, injected);
    fflush(stdout);
}

/* ---- tasks and callbacks ---- */

typedef struct tracked {
    cf_future *f;
    atomic_int calls; /* done-callback runs */
    bool has_callback;
    intptr_t input;
    bool bytes;
} tracked;

static void count_call(cf_future *f, void *data)
{
    (void)f;
    atomic_fetch_add(&((tracked *)data)->calls, 1);
}

/* Checks a finished future of the sequence: the right value, or (process pool only) a failure
 * the pool reports for a fault on its side. */
static void check_outcome(tracked *t, bool process)
{
    int code = 0;
    int rc = cf_future_exception(&code, NULL, t->f, CF_TEST_LONG);
    ck_assert_msg(rc == 0, "future not done at fault %lu: %s", current_nth, cf_err_name(rc));
    if (code) {
        ck_assert_msg(process, "thread task failed with %s at fault %lu", cf_err_name(code),
                      current_nth);
        EXPECT("process task", code, CF_ENOMEM, CF_EMFILE, CF_EBROKEN);
        return;
    }
    if (t->bytes) {
        const void *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, t->f, 0), 0);
        ck_assert_uint_eq(len, sizeof(t->input));
        ck_assert_int_eq(memcmp(data, &t->input, len), 0);
    } else {
        void *v;
        ck_assert_int_eq(cf_future_result(&v, t->f, 0), 0);
        ck_assert_ptr_eq(v, (void *)(t->input * t->input));
    }
}

/* ---- the shared sequence: submit, callbacks, wait, map, as_completed, shutdown, free ---- */

enum { NTASKS = 20, NMAP = 9 };

static void run_sequence(cf_executor *ex, bool process)
{
    static unsigned char big[100 << 10]; /* above the inline limit: a memfd for the process pool */
    tracked ts[NTASKS];
    cf_future *fs[NTASKS];
    size_t n = 0;
    for (int i = 0; i < NTASKS; i++) {
        tracked *t = &ts[n];
        *t = (tracked){.input = i, .bytes = process || i % 2};
        int rc;
        if (!t->bytes)
            rc = cf_executor_submit(&t->f, ex, cf_test_square_task, (void *)t->input);
        else if (process && i == 3)
            rc = cf_executor_submit_bytes(&t->f, ex, cf_test_echo_task, big, sizeof(big));
        else
            rc =
                cf_executor_submit_bytes(&t->f, ex, cf_test_echo_task, &t->input, sizeof(t->input));
        if (process)
            EXPECT("submit", rc, CF_ENOMEM, CF_EMFILE, CF_EAGAIN, CF_EBROKEN);
        else
            EXPECT("submit", rc, CF_ENOMEM, CF_EAGAIN);
        if (rc) {
            ck_assert_ptr_null(t->f);
            continue;
        }
        if (process && i == 3) {
            /* Only its completion matters; drop it from the value checks. */
            ck_assert_int_eq(cf_future_exception(NULL, NULL, t->f, CF_TEST_LONG), 0);
            cf_future_unref(t->f);
            continue;
        }
        rc = cf_future_add_done_callback(t->f, count_call, t);
        EXPECT("add_done_callback", rc, CF_ENOMEM);
        t->has_callback = rc == 0;
        fs[n++] = t->f;
    }
    if (n) {
        size_t n_done = 0;
        int rc = cf_wait(&n_done, NULL, fs, n, CF_ALL_COMPLETED, CF_TEST_LONG);
        EXPECT("wait", rc, CF_ENOMEM);
        if (rc == 0)
            ck_assert_uint_eq(n_done, n);
        cf_as_completed *it = NULL;
        rc = cf_as_completed_new(&it, fs, n, CF_TEST_LONG);
        EXPECT("as_completed_new", rc, CF_ENOMEM);
        if (rc == 0) {
            cf_future *f;
            size_t yielded = 0;
            while ((rc = cf_as_completed_next(&f, it)) == 0)
                yielded++;
            ck_assert_int_eq(rc, CF_EOF);
            ck_assert_uint_eq(yielded, n);
            cf_as_completed_free(it);
        }
    }

    /* map, pointer tasks on the thread pool and bytes tasks on both */
    intptr_t inputs[NMAP];
    void *ptr_args[NMAP];
    cf_bytes byte_args[NMAP];
    for (int i = 0; i < NMAP; i++) {
        inputs[i] = 100 + i;
        ptr_args[i] = (void *)inputs[i];
        byte_args[i] = (cf_bytes){&inputs[i], sizeof(inputs[i])};
    }
    for (int pass = process ? 1 : 0; pass < 2; pass++) {
        cf_map *m = NULL;
        int rc = pass == 0
                     ? cf_executor_map(&m, ex, cf_test_square_task, ptr_args, NMAP, CF_TEST_LONG, 2)
                     : cf_executor_map_bytes(&m, ex, cf_test_echo_task, byte_args, NMAP,
                                             CF_TEST_LONG, 2);
        if (process)
            EXPECT("map", rc, CF_ENOMEM, CF_EMFILE, CF_EAGAIN, CF_EBROKEN);
        else
            EXPECT("map", rc, CF_ENOMEM, CF_EAGAIN);
        if (rc)
            continue;
        for (int i = 0; i < NMAP; i++) {
            void *v;
            rc = cf_map_next(&v, m);
            if (rc == CF_ETASK) {
                ck_assert(process);
                int code = 0;
                cf_future_exception(&code, NULL, cf_map_current(m), 0);
                EXPECT("map task", code, CF_ENOMEM, CF_EMFILE, CF_EBROKEN);
                continue;
            }
            ck_assert_msg(rc == 0, "map_next: %s at fault %lu", cf_err_name(rc), current_nth);
            if (pass == 0) {
                ck_assert_ptr_eq(v, (void *)(inputs[i] * inputs[i]));
            } else {
                const void *data;
                ck_assert_int_eq(cf_future_result_bytes(&data, NULL, cf_map_current(m), 0), 0);
                ck_assert_int_eq(memcmp(data, &inputs[i], sizeof(inputs[i])), 0);
            }
        }
        ck_assert_int_eq(cf_map_next(NULL, m), CF_EOF);
        cf_map_free(m);
    }

    /* a batch: all or nothing */
    if (!process) {
        cf_future *batch[NMAP];
        int rc = cf_executor_submit_batch(batch, ex, cf_test_square_task, ptr_args, NMAP);
        EXPECT("submit_batch", rc, CF_ENOMEM, CF_EAGAIN);
        for (int i = 0; i < NMAP; i++) {
            if (rc) {
                ck_assert_ptr_null(batch[i]);
                continue;
            }
            void *v = NULL;
            ck_assert_int_eq(cf_future_result(&v, batch[i], CF_TEST_LONG), 0);
            ck_assert_ptr_eq(v, (void *)(inputs[i] * inputs[i]));
            cf_future_unref(batch[i]);
        }
    }

    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    for (size_t i = 0; i < n; i++) {
        tracked *t = &ts[i];
        ck_assert_ptr_eq(t->f, fs[i]);
        check_outcome(t, process);
        ck_assert_int_eq(atomic_load(&t->calls), t->has_callback ? 1 : 0);
        cf_future_unref(t->f);
    }
}

/* ---- thread pool ---- */

/* The options of the pools the scenarios create: the defaults first, then the variants that take
 * other paths (a bounded queue whose overflow runs in the caller, threads that exit when idle
 * and start again; workers that retire after two tasks, with an initializer). */
static bool variant;

static void thread_pool_scenario(void)
{
    cf_thread_pool_options o = {.max_workers = 3};
    if (variant)
        o = (cf_thread_pool_options){.max_workers = 2,
                                     .min_workers = 1,
                                     .max_queue = 3,
                                     .queue_policy = CF_QUEUE_CALLER_RUNS,
                                     .idle_timeout = 0.001};
    cf_executor *ex = NULL;
    int rc = cf_thread_pool_new(&ex, &o);
    EXPECT("thread_pool_new", rc, CF_ENOMEM);
    if (rc == 0)
        run_sequence(ex, false);
}

static void thread_pool_fresh(void)
{
    cf_executor *ex = cf_test_pool(2);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_square_task, (void *)7), 0);
    void *v;
    ck_assert_int_eq(cf_future_result(&v, f, CF_TEST_LONG), 0);
    ck_assert_ptr_eq(v, (void *)49);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

/* ---- process pool ---- */

static int worker_init(const void *arg, size_t len)
{
    return len == 4 && memcmp(arg, "init", 4) == 0 ? 0 : CF_EINVAL;
}

static void process_pool_scenario(void)
{
    cf_process_pool_options o = {.max_workers = 2};
    if (variant)
        o = (cf_process_pool_options){.max_workers = 2,
                                      .max_tasks_per_child = 2,
                                      .initializer = worker_init,
                                      .initializer_arg = "init",
                                      .initializer_arg_len = 4};
    cf_executor *ex = NULL;
    int rc = cf_process_pool_new(&ex, &o);
    EXPECT("process_pool_new", rc, CF_ENOMEM, CF_EMFILE, CF_EAGAIN, CF_ESYSTEM);
    if (rc == 0)
        run_sequence(ex, true);
}

static void process_pool_fresh(void)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1}), 0);
    intptr_t x = 5;
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, cf_test_echo_task, &x, sizeof(x)), 0);
    const void *data;
    ck_assert_int_eq(cf_future_result_bytes(&data, NULL, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(memcmp(data, &x, sizeof(x)), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}

/* ---- the event loop: executors of both kinds awaited from the loop ---- */

static void loop_count(cf_loop *loop, void *data)
{
    (void)loop;
    ++*(int *)data;
}

#ifndef CF_TEST_NO_COROUTINES
/* A task awaiting a thread-pool call, a process-pool call, a gather of both and a wait_for. */
typedef struct loop_world {
    cf_executor *tp, *pp;
} loop_world;

static int loop_task_body(void *arg, void **result)
{
    loop_world *w = arg;
    cf_loop *loop = cf_loop_current();
    cf_future *a = NULL, *b = NULL;
    int rc = cf_loop_run_in_executor(&a, loop, w->tp, cf_test_square_task, (void *)3);
    if (rc == 0 && w->pp)
        rc = cf_loop_run_in_executor_bytes(&b, loop, w->pp, cf_test_echo_task, "xy", 2);
    if (rc == 0) {
        void *v = NULL;
        rc = cf_await(&v, a);
        if (rc == 0 && v != (void *)9)
            rc = CF_EPERM; /* not a fault code: the check below fails the test */
    }
    if (rc == 0 && b) {
        cf_future *both[2] = {a, b};
        rc = cf_gather(NULL, both, 2);
    }
    if (rc == 0)
        rc = cf_wait_for(NULL, a, 1.0);
    /* An awaited call that failed: report its own code (a fault on its side), not CF_ETASK. */
    cf_future *children[2] = {a, b};
    for (int i = 0; i < 2 && rc == CF_ETASK; i++) {
        int code = 0;
        if (children[i] && cf_future_exception(&code, NULL, children[i], 0) == 0 && code)
            rc = code;
    }
    cf_future_unref(a);
    cf_future_unref(b);
    *result = NULL;
    return rc;
}
#endif

/* Task and executor outcomes under faults: success, or a documented resource error (the
 * process pool reports its own faults as CF_EBROKEN / CF_ENOMEM / CF_EMFILE). */
static void expect_loop_outcome(const char *what, int rc, cf_future *f);

/* Runs the loop until `f` is done. A run that could not start (its own allocation failed) is
 * retried: a fault fires once. */
static int run_until(cf_loop *loop, cf_future *f)
{
    int rc;
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = cf_loop_run_until_complete(NULL, loop, f);
        if (cf_future_done(f))
            break;
        if (getenv("CF_TEST_VERBOSE"))
            fprintf(stderr, "run_until: rc %s, state %d\n", cf_err_name(rc),
                    (int)cf_future_get_state(f));
        EXPECT("run_until_complete", rc, CF_ENOMEM, CF_EMFILE);
    }
    ck_assert_msg(cf_future_done(f), "a loop future is not done at fault %lu", current_nth);
    return rc;
}

static void expect_loop_outcome(const char *what, int rc, cf_future *f)
{
    if (rc == CF_ETASK) {
        int code = 0;
        cf_future_exception(&code, NULL, f, 0);
        EXPECT(what, code, CF_ENOMEM, CF_EMFILE, CF_EAGAIN, CF_EBROKEN, CF_ESYSTEM);
        return;
    }
    EXPECT(what, rc, CF_ENOMEM, CF_EMFILE, CF_EAGAIN);
}

static void loop_scenario(void)
{
    cf_loop *loop = NULL;
    int rc = cf_loop_new(&loop, &(cf_loop_options){.default_workers = 2});
    EXPECT("loop_new", rc, CF_ENOMEM, CF_EMFILE);
    if (rc)
        return;
    int calls = 0, expected = 0;
    cf_loop_handle *cancelled = NULL;
    rc = cf_loop_call_soon(NULL, loop, loop_count, &calls);
    EXPECT("call_soon", rc, CF_ENOMEM);
    expected += rc == 0;
    rc = cf_loop_call_later(&cancelled, loop, 0.5, loop_count, &calls);
    EXPECT("call_later", rc, CF_ENOMEM);
    cf_loop_handle_cancel(cancelled);
    rc = cf_loop_call_soon_threadsafe(loop, loop_count, &calls);
    EXPECT("call_soon_threadsafe", rc, CF_ENOMEM);
    expected += rc == 0;

    cf_executor *tp = NULL, *pp = NULL;
    rc = cf_thread_pool_new(&tp, &(cf_thread_pool_options){.max_workers = 2});
    EXPECT("thread_pool_new", rc, CF_ENOMEM);
    rc = cf_process_pool_new(&pp, &(cf_process_pool_options){.max_workers = 1});
    EXPECT("process_pool_new", rc, CF_ENOMEM, CF_EMFILE, CF_EAGAIN, CF_ESYSTEM);

    /* The default executor, a wrapped executor future, a sleep, a task. */
    cf_future *fs[5] = {NULL};
    size_t n = 0;
    rc = cf_loop_run_in_executor(&fs[n], loop, NULL, cf_test_square_task, (void *)4);
    EXPECT("run_in_executor(default)", rc, CF_ENOMEM, CF_EAGAIN);
    n += rc == 0;
    if (tp) {
        cf_future *ef = NULL;
        rc = cf_executor_submit(&ef, tp, cf_test_square_task, (void *)5);
        EXPECT("submit", rc, CF_ENOMEM, CF_EAGAIN);
        if (ef) {
            rc = cf_loop_wrap_future(&fs[n], loop, ef);
            EXPECT("wrap_future", rc, CF_ENOMEM);
            n += rc == 0;
            cf_future_unref(ef);
        }
    }
    rc = cf_loop_sleep(&fs[n], loop, 0.001, NULL);
    EXPECT("sleep", rc, CF_ENOMEM);
    n += rc == 0;
#ifndef CF_TEST_NO_COROUTINES
    loop_world w = {.tp = tp, .pp = pp};
    if (tp) {
        rc = cf_loop_create_task(&fs[n], loop, loop_task_body, &w, NULL);
        EXPECT("create_task", rc, CF_ENOMEM);
        n += rc == 0;
    }
#endif
    for (size_t i = 0; i < n; i++)
        expect_loop_outcome("run_until_complete", run_until(loop, fs[i]), fs[i]);
    cf_future *g = NULL;
    if (n) {
        rc = cf_loop_gather(&g, loop, fs, n);
        EXPECT("gather", rc, CF_ENOMEM);
        if (g) {
            expect_loop_outcome("gather", run_until(loop, g), g);
            cf_future_unref(g);
        }
    }
    /* Callbacks that were accepted all ran; the cancelled timer did not. */
    cf_future *tick = NULL;
    if (cf_loop_sleep(&tick, loop, 0, NULL) == 0) {
        expect_loop_outcome("sleep(0)", run_until(loop, tick), tick);
        cf_future_unref(tick);
        ck_assert_int_eq(calls, expected);
    }
    cf_loop_handle_unref(cancelled);
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    ck_assert_int_eq(cf_executor_free(tp), 0);
    ck_assert_int_eq(cf_executor_free(pp), 0);
}

static void loop_fresh(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, loop, NULL, cf_test_square_task, (void *)6), 0);
    void *v;
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, f), 0);
    ck_assert_ptr_eq(v, (void *)36);
    cf_future_unref(f);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    process_pool_fresh();
}

/* ---- coroutines ---- */

#ifndef CF_TEST_NO_COROUTINES

static void coro_body(void *arg)
{
    int *steps = arg;
    for (int i = 0; i < 3; i++) {
        (*steps)++;
        cf__coro_yield();
    }
}

static void coro_run(size_t stack_size, int *steps)
{
    cf__coro *co = NULL;
    int rc = cf__coro_new(&co, coro_body, steps, stack_size);
    EXPECT("coro_new", rc, CF_ENOMEM);
    if (rc) {
        ck_assert_ptr_null(co);
        return;
    }
    while (!cf__coro_resume(co))
        ;
    cf__coro_free(co);
}

static void coro_scenario(void)
{
    /* Stacks of 1 MiB: one per arena, and only a few are kept when free, so holding six at once
     * maps new arenas in every run. */
    enum { HELD = 6 };
    int steps = 0, expected = 0;
    cf__coro *held[HELD] = {NULL};
    for (int i = 0; i < HELD; i++) {
        int rc = cf__coro_new(&held[i], coro_body, &steps, 1 << 20);
        EXPECT("coro_new", rc, CF_ENOMEM);
        if (rc)
            ck_assert_ptr_null(held[i]);
        expected += rc == 0 ? 3 : 0;
    }
    for (int i = 0; i < HELD; i++) {
        while (held[i] && !cf__coro_resume(held[i]))
            ;
        cf__coro_free(held[i]);
    }
    ck_assert_int_eq(steps, expected);
    coro_run(0, &steps);
    ck_assert(steps == expected || steps == expected + 3);
}

static void coro_fresh(void)
{
    int steps = 0;
    cf__coro *co = NULL;
    ck_assert_int_eq(cf__coro_new(&co, coro_body, &steps, 96 << 10), 0);
    while (!cf__coro_resume(co))
        ;
    cf__coro_free(co);
    ck_assert_int_eq(steps, 3);
}

#endif /* CF_TEST_NO_COROUTINES */

#endif /* CF_FAULT_INJECTION */

START_TEST(test_walk_thread_pool)
{
#ifdef CF_FAULT_INJECTION
    walk("thread_pool alloc", CF__FAULT_ALLOC, thread_pool_scenario, thread_pool_fresh);
    walk("thread_pool thread", CF__FAULT_THREAD, thread_pool_scenario, thread_pool_fresh);
    walk("thread_pool all", ~0u, thread_pool_scenario, thread_pool_fresh);
    variant = true;
    walk("thread_pool bounded/idle all", ~0u, thread_pool_scenario, thread_pool_fresh);
    variant = false;
#endif
}
END_TEST

START_TEST(test_walk_process_pool)
{
#ifdef CF_FAULT_INJECTION
    walk("process_pool alloc", CF__FAULT_ALLOC, process_pool_scenario, process_pool_fresh);
    walk("process_pool fd/thread/mmap/fork",
         CF__FAULT_FD | CF__FAULT_THREAD | CF__FAULT_MMAP | CF__FAULT_FORK, process_pool_scenario,
         process_pool_fresh);
    variant = true;
    walk("process_pool recycle alloc", CF__FAULT_ALLOC, process_pool_scenario, process_pool_fresh);
    walk("process_pool recycle fd/...",
         CF__FAULT_FD | CF__FAULT_THREAD | CF__FAULT_MMAP | CF__FAULT_FORK, process_pool_scenario,
         process_pool_fresh);
    variant = false;
#endif
}
END_TEST

START_TEST(test_walk_coroutines)
{
#if defined(CF_FAULT_INJECTION) && !defined(CF_TEST_NO_COROUTINES)
    walk("coroutines", ~0u, coro_scenario, coro_fresh);
#endif
}
END_TEST

START_TEST(test_walk_loop)
{
#ifdef CF_FAULT_INJECTION
    walk("loop alloc", CF__FAULT_ALLOC, loop_scenario, loop_fresh);
    walk("loop fd/thread/mmap/fork",
         CF__FAULT_FD | CF__FAULT_THREAD | CF__FAULT_MMAP | CF__FAULT_FORK, loop_scenario,
         loop_fresh);
#endif
}
END_TEST

START_TEST(test_report_total)
{
#ifdef CF_FAULT_INJECTION
    /* The walks ran in this process only without CK_FORK; the per-walk lines are the figures
     * either way. */
    if (total_injected)
        printf("fault walk total: %lu faults injected\n", total_injected);
#else
    printf("fault walk skipped: build with -Dfault_injection=true\n");
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fault_walk");
    TCase *tc = cf_test_tcase("walk");
    /* Each walk restarts many pools; valgrind runs need the multiplier's headroom. */
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_walk_thread_pool);
    tcase_add_test(tc, test_walk_process_pool);
    tcase_add_test(tc, test_walk_coroutines);
    tcase_add_test(tc, test_walk_loop);
    tcase_add_test(tc, test_report_total);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
