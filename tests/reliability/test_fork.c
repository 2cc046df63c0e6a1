/* fork() by the user while thread pools and process pools run: tasks in flight, other threads
 * submitting, waiting and adding callbacks at the moment of the fork. In the child:
 *   - every call on an inherited executor returns CF_EFORKED at once (submit, map, shutdown,
 *     stats, terminate, kill; free releases the memory and returns CF_EFORKED);
 *   - inherited futures that were done stay readable; a pending one never completes there
 *     (nothing in the child would complete it), so every timed wait on it returns CF_ETIMEDOUT;
 *   - nothing blocks on a lock that a thread of the parent held when it vanished;
 *   - new pools of both kinds work;
 *   - an inherited event loop refuses to run or take callbacks (CF_EFORKED) and a new one
 *     works.
 * The child reports each step through a pipe before taking it, so a hang names its step, and the
 * parent bounds the wait. The fork is repeated at arbitrary points of the other threads' work;
 * it is also made from inside a running task. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "cf_test_sync.h"
#include "proc_util.h"

/* The sanitizer runtimes CI uses (GCC 12, Clang 14) do not take their allocator locks around
 * fork(), so a child can inherit one held by a parent thread that was inside malloc or free, and
 * hang at its next allocation or free (seen here: a new pool thread blocked in ASan's quarantine
 * refill). Upstream fixed it later: LLVM PR #75290 ("[asan] Install pthread_atfork") and PR #96600
 * ("[tsan] Lock/Unlock allocator and stacks on fork"). glibc's own malloc is fork-safe, so the
 * plain, clang and valgrind builds run every step; the sanitizer builds run the steps that neither
 * allocate nor free. */
#if defined(CF_TEST_TSAN) || defined(CF_TEST_ASAN)
#define CHILD_MALLOC_MAY_HANG 1
#endif

/* ThreadSanitizer refuses to let a child of a multithreaded process start threads unless told;
 * the child here must (its new pools), and the fork is the subject of the test. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}

/* ---- tasks ---- */

static void loop_noop(cf_loop *loop, void *data)
{
    (void)loop;
    (void)data;
}

static void count_cb(cf_future *f, void *data)
{
    (void)f;
    atomic_fetch_add((atomic_int *)data, 1);
}

/* ---- the parent's moving parts ---- */

typedef struct world {
    cf_executor *tp, *pp;
    cf_test_gate gate;            /* two thread tasks block on it */
    cf_future *tp_blocked[2];     /* running (blocked) in the thread pool */
    cf_future *pp_blocked;        /* running (blocked on a FIFO) in the process pool */
    cf_future *tp_done, *pp_done; /* finished before any fork */
    char fifo[64];
    atomic_bool stop;
    atomic_int callbacks;
    atomic_ulong submitted;
    cf_loop *loop; /* runs in loop_thread */
    pthread_t loop_thread;
    cf_future *loop_waiting; /* a loop future of `loop` mirroring tp_blocked[0] */
} world;

static world W;

/* Other threads keep the pools and the futures' locks busy while the main thread forks. */
static void *submitter(void *arg)
{
    (void)arg;
    unsigned long i = 0;
    while (!atomic_load(&W.stop)) {
        cf_future *fs[3] = {NULL, NULL, NULL};
        int n = 0;
        if (cf_executor_submit(&fs[n], W.tp, cf_test_square_task, (void *)(intptr_t)(i % 1000)) ==
            0)
            n++;
        if (cf_executor_submit_bytes(&fs[n], W.pp, cf_test_echo_task, &i, sizeof(i)) == 0)
            n++;
        if (cf_executor_submit_bytes(&fs[n], W.tp, cf_test_echo_task, &i, sizeof(i)) == 0)
            n++;
        for (int k = 0; k < n; k++)
            cf_future_add_done_callback(fs[k], count_cb, &W.callbacks);
        if (n) {
            cf_wait(NULL, NULL, fs, (size_t)n, (cf_return_when)(i % 3), CF_TEST_LONG);
            cf_as_completed *it;
            if (cf_as_completed_new(&it, fs, (size_t)n, CF_TEST_LONG) == 0) {
                cf_future *f;
                while (cf_as_completed_next(&f, it) == 0)
                    ;
                cf_as_completed_free(it);
            }
        }
        for (int k = 0; k < n; k++)
            cf_future_unref(fs[k]);
        atomic_fetch_add(&W.submitted, (unsigned long)n);
        i++;
    }
    return NULL;
}

static void *loop_main(void *arg)
{
    (void)arg;
    int rc = cf_loop_run_forever(W.loop);
    return (void *)(intptr_t)rc;
}

static void world_start(void)
{
    memset(&W, 0, sizeof(W));
    W.tp = cf_test_pool(4);
    ck_assert_int_eq(cf_process_pool_new(&W.pp, &(cf_process_pool_options){.max_workers = 2}), 0);
    cf_test_gate_init(&W.gate);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cf_executor_submit(&W.tp_blocked[i], W.tp, cf_test_gate_task, &W.gate), 0);
    ck_assert(cf_test_latch_wait(&W.gate.started, 2, CF_TEST_LONG));
    proc_util_make_fifo(W.fifo, sizeof(W.fifo));
    ck_assert_int_eq(
        cf_executor_submit_bytes(&W.pp_blocked, W.pp, proc_util_block_task, W.fifo, strlen(W.fifo)),
        0);
    ck_assert_int_eq(cf_executor_submit(&W.tp_done, W.tp, cf_test_square_task, (void *)7), 0);
    ck_assert_int_eq(cf_future_result(NULL, W.tp_done, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_submit_bytes(&W.pp_done, W.pp, cf_test_echo_task, "done", 4), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, W.pp_done, CF_TEST_LONG), 0);
    /* An event loop running in its own thread, waiting for a blocked pool task. */
    ck_assert_int_eq(cf_loop_new(&W.loop, NULL), 0);
    ck_assert_int_eq(cf_loop_wrap_future(&W.loop_waiting, W.loop, W.tp_blocked[0]), 0);
    ck_assert_int_eq(pthread_create(&W.loop_thread, NULL, loop_main, NULL), 0);
    double end = cf_test_monotonic() + CF_TEST_LONG;
    while (!cf_loop_is_running(W.loop) && cf_test_monotonic() < end)
        cf_test_pause_ms(1);
    ck_assert(cf_loop_is_running(W.loop));
}

static void world_stop(void)
{
    cf_test_event_set(&W.gate.release);
    proc_util_release_fifo(W.fifo);
    /* The loop sees the blocked task finish, then stops. */
    ck_assert_int_eq(cf_future_exception(NULL, NULL, W.loop_waiting, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_loop_stop(W.loop), 0);
    void *loop_rc;
    pthread_join(W.loop_thread, &loop_rc);
    ck_assert_int_eq((int)(intptr_t)loop_rc, 0);
    cf_future_unref(W.loop_waiting);
    ck_assert_int_eq(cf_loop_free(W.loop), 0);
    cf_future *all[] = {W.tp_blocked[0], W.tp_blocked[1], W.pp_blocked, W.tp_done, W.pp_done};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        ck_assert_int_eq(cf_future_exception(NULL, NULL, all[i], CF_TEST_LONG), 0);
        cf_future_unref(all[i]);
    }
    /* The parent's pools are untouched by the children's calls. */
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, W.tp, cf_test_square_task, (void *)9), 0);
    void *v;
    ck_assert_int_eq(cf_future_result(&v, f, CF_TEST_LONG), 0);
    ck_assert_ptr_eq(v, (void *)81);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, W.pp, cf_test_echo_task, "p", 1), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(W.tp), 0);
    ck_assert_int_eq(cf_executor_free(W.pp), 0);
    cf_test_gate_destroy(&W.gate);
    unlink(W.fifo);
}

/* ---- the child ---- */

static int report_fd = -1;

static void step(int n)
{
    ssize_t w = write(report_fd, &n, sizeof(n));
    (void)w;
}

/* Ends the child without the exit-time leak checks of valgrind and LeakSanitizer: an exec
 * replaces the image (neither follows it). The vanished threads of the parent own memory (the
 * futures they were completing, referenced from their stacks) that the child can neither see nor
 * release; that is inherent to fork(), not a leak of the library. The result travels through the
 * pipe, not the exit status. */
static _Noreturn void leave_child(void)
{
    execl("/bin/true", "true", (char *)NULL);
    _exit(0);
}

/* Fails the child: reports the negated step and the code seen, then stops. */
#define CHILD_EXPECT(n, cond, rc)                                                                  \
    do {                                                                                           \
        step(n);                                                                                   \
        if (!(cond)) {                                                                             \
            int fail[2] = {-(n), (rc)};                                                            \
            ssize_t w_ = write(report_fd, fail, sizeof(fail));                                     \
            (void)w_;                                                                              \
            raise(SIGKILL);                                                                        \
        }                                                                                          \
    } while (0)

/* Everything a child may do, in order. */
static _Noreturn void child_main(void)
{
    cf_future *f = (cf_future *)1;
    cf_map *m = (cf_map *)1;
    void *args[2] = {(void *)1, (void *)2};
    cf_bytes bargs[1] = {{"x", 1}};
    cf_thread_pool_stats st;
    int rc;

    /* 1-9: inherited executors refuse everything. */
    rc = cf_executor_submit(&f, W.tp, cf_test_square_task, (void *)3);
    CHILD_EXPECT(1, rc == CF_EFORKED && f == NULL, rc);
    rc = cf_executor_submit_bytes(&f, W.pp, cf_test_echo_task, "x", 1);
    CHILD_EXPECT(2, rc == CF_EFORKED && f == NULL, rc);
    rc = cf_executor_map(&m, W.tp, cf_test_square_task, args, 2, 1.0, 0);
    CHILD_EXPECT(3, rc == CF_EFORKED && m == NULL, rc);
    rc = cf_executor_map_bytes(&m, W.pp, cf_test_echo_task, bargs, 1, 1.0, 0);
    CHILD_EXPECT(4, rc == CF_EFORKED, rc);
    rc = cf_executor_shutdown(W.tp, true, true);
    CHILD_EXPECT(5, rc == CF_EFORKED, rc);
    rc = cf_executor_shutdown(W.pp, true, false);
    CHILD_EXPECT(6, rc == CF_EFORKED, rc);
    rc = cf_thread_pool_get_stats(&st, W.tp);
    CHILD_EXPECT(7, rc == CF_EFORKED, rc);
    rc = cf_process_pool_terminate(W.pp);
    CHILD_EXPECT(8, rc == CF_EFORKED, rc);
    rc = cf_process_pool_kill(W.pp);
    CHILD_EXPECT(9, rc == CF_EFORKED, rc);

    /* 10-19: inherited futures. Pending ones stay pending; done ones are readable. */
    rc = cf_future_result(NULL, W.tp_blocked[0], 0.05);
    CHILD_EXPECT(10, rc == CF_ETIMEDOUT, rc);
    rc = cf_future_exception(NULL, NULL, W.pp_blocked, 0.05);
    CHILD_EXPECT(11, rc == CF_ETIMEDOUT, rc);
    cf_future *mix[3] = {W.tp_blocked[1], W.tp_done, W.pp_blocked};
    size_t n_done = 0;
    rc = cf_wait(&n_done, NULL, mix, 3, CF_ALL_COMPLETED, 0.05);
    CHILD_EXPECT(12, rc == CF_ETIMEDOUT && n_done == 1, rc);
    rc = cf_wait(&n_done, NULL, mix, 3, CF_FIRST_COMPLETED, 0.05);
    CHILD_EXPECT(13, rc == 0 && n_done == 1, rc);
#ifndef CHILD_MALLOC_MAY_HANG
    /* The first allocation in the child (see CHILD_MALLOC_MAY_HANG). */
    cf_as_completed *it;
    rc = cf_as_completed_new(&it, mix, 3, 0.05);
    CHILD_EXPECT(14, rc == 0, rc);
    rc = cf_as_completed_next(&f, it);
    CHILD_EXPECT(15, rc == 0 && f == W.tp_done, rc);
    rc = cf_as_completed_next(&f, it);
    CHILD_EXPECT(16, rc == CF_ETIMEDOUT, rc);
    cf_as_completed_free(it);
#endif
    void *v = NULL;
    rc = cf_future_result(&v, W.tp_done, 0);
    CHILD_EXPECT(17, rc == 0 && v == (void *)49, rc);
    const void *data = NULL;
    size_t len = 0;
    rc = cf_future_result_bytes(&data, &len, W.pp_done, 0);
    CHILD_EXPECT(18, rc == 0 && len == 4 && memcmp(data, "done", 4) == 0, rc);
    atomic_int calls = 0;
    rc = cf_future_add_done_callback(W.tp_done, count_cb, &calls);
    CHILD_EXPECT(19, rc == 0 && atomic_load(&calls) == 1, rc);

    /* 20-30: new pools of both kinds work, and futures from them mix with inherited ones.
     * Not under the sanitizers: they allocate (see CHILD_MALLOC_MAY_HANG), and ThreadSanitizer
     * also loses track of threads started after a fork of a multithreaded process (it reports
     * "dup thread with used id" and pthread_join() never returns), as its die_after_fork flag
     * documents. */
#ifndef CHILD_MALLOC_MAY_HANG
    cf_executor *tp2 = NULL, *pp2 = NULL;
    rc = cf_thread_pool_new(&tp2, &(cf_thread_pool_options){.max_workers = 2});
    CHILD_EXPECT(20, rc == 0, rc);
    rc = cf_executor_submit(&f, tp2, cf_test_square_task, (void *)6);
    CHILD_EXPECT(21, rc == 0, rc);
    rc = cf_future_result(&v, f, CF_TEST_LONG);
    CHILD_EXPECT(22, rc == 0 && v == (void *)36, rc);
    cf_future_unref(f);
    rc = cf_executor_map(&m, tp2, cf_test_square_task, args, 2, CF_TEST_LONG, 0);
    CHILD_EXPECT(23, rc == 0, rc);
    rc = cf_map_next(&v, m);
    CHILD_EXPECT(24, rc == 0 && v == (void *)1, rc);
    cf_map_free(m);
    rc = cf_process_pool_new(&pp2, &(cf_process_pool_options){.max_workers = 1});
    CHILD_EXPECT(25, rc == 0, rc);
    rc = cf_executor_submit_bytes(&f, pp2, cf_test_echo_task, "child", 5);
    CHILD_EXPECT(26, rc == 0, rc);
    cf_future *both[2] = {f, W.pp_done};
    rc = cf_wait(NULL, NULL, both, 2, CF_ALL_COMPLETED, CF_TEST_LONG);
    CHILD_EXPECT(27, rc == 0, rc);
    rc = cf_future_result_bytes(&data, &len, f, 0);
    CHILD_EXPECT(28, rc == 0 && len == 5 && memcmp(data, "child", 5) == 0, rc);
    cf_future_unref(f);
    rc = cf_executor_free(tp2);
    CHILD_EXPECT(29, rc == 0, rc);
    rc = cf_executor_free(pp2);
    CHILD_EXPECT(30, rc == 0, rc);
#endif

    /* 40-49: the inherited event loop (running in a thread that is gone) refuses to run or to
     * take callbacks; its pending loop future stays pending; a new loop works. */
    rc = cf_loop_call_soon_threadsafe(W.loop, loop_noop, NULL);
    CHILD_EXPECT(40, rc == CF_EFORKED, rc);
    rc = cf_loop_run_forever(W.loop);
    CHILD_EXPECT(41, rc == CF_EFORKED, rc);
    rc = cf_loop_dispatch(W.loop);
    CHILD_EXPECT(42, rc == CF_EFORKED, rc);
    rc = cf_loop_stop(W.loop);
    CHILD_EXPECT(43, rc == CF_EFORKED, rc);
    rc = cf_future_result(NULL, W.loop_waiting, 0.05);
    CHILD_EXPECT(44, rc == CF_ETIMEDOUT, rc);
    rc = cf_loop_free(W.loop); /* it runs (in the parent's vanished thread): not freed */
    CHILD_EXPECT(45, rc == CF_EINVALSTATE, rc);
#ifndef CHILD_MALLOC_MAY_HANG
    cf_loop *loop2 = NULL;
    rc = cf_loop_new(&loop2, NULL);
    CHILD_EXPECT(46, rc == 0, rc);
    rc = cf_loop_run_in_executor(&f, loop2, NULL, cf_test_square_task, (void *)8);
    CHILD_EXPECT(47, rc == 0, rc);
    rc = cf_loop_run_until_complete(&v, loop2, f);
    CHILD_EXPECT(48, rc == 0 && v == (void *)64, rc);
    cf_future_unref(f);
    rc = cf_loop_free(loop2);
    CHILD_EXPECT(49, rc == 0, rc);
#endif

    /* 31-32: the inherited executors' memory is released without touching their threads. */
#ifndef CHILD_MALLOC_MAY_HANG
    rc = cf_executor_free(W.tp);
    CHILD_EXPECT(31, rc == CF_EFORKED, rc);
    rc = cf_executor_free(W.pp);
    CHILD_EXPECT(32, rc == CF_EFORKED, rc);
#endif
    step(100); /* done */
    leave_child();
}

/* Forks (in the calling thread) and reads the child's report. Returns NULL if the child passed,
 * else a description (no assertion here: a pool thread calls it too). */
static const char *fork_and_check(void)
{
    static _Thread_local char why[128];
    int p[2];
    if (pipe(p) != 0)
        return "pipe failed";
    pid_t pid = fork();
    if (pid < 0)
        return "fork failed";
    if (pid == 0) {
        close(p[0]);
        report_fd = p[1];
        child_main();
    }
    close(p[1]);
    int last = 0, failed_rc = 0;
    bool failed = false;
    double end = cf_test_monotonic() + CF_TEST_LONG * 3;
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int ms = (int)((end - cf_test_monotonic()) * 1000);
        if (ms <= 0 || poll(&pfd, 1, ms) <= 0)
            break;
        int n;
        if (read(p[0], &n, sizeof(n)) != (ssize_t)sizeof(n))
            break;
        if (n < 0) {
            failed = true;
            last = -n;
            if (read(p[0], &failed_rc, sizeof(failed_rc)) != (ssize_t)sizeof(failed_rc))
                failed_rc = 0;
            break;
        }
        last = n;
        if (n == 100)
            break;
    }
    close(p[0]);
    bool hung = !failed && last != 100;
    if (hung)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (failed)
        snprintf(why, sizeof(why), "child: step %d failed (%s)", last, cf_err_name(failed_rc));
    else if (hung)
        snprintf(why, sizeof(why), "child: hung after step %d", last);
    return failed || hung ? why : NULL;
}

START_TEST(test_fork_while_busy)
{
    enum { SUBMITTERS = 2, FORKS = 8 };
    world_start();
    pthread_t threads[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, submitter, NULL), 0);
    for (int i = 0; i < FORKS; i++) {
        /* Fork at different points of the submitters' work. */
        unsigned long target = atomic_load(&W.submitted) + 1 + (unsigned long)i * 7;
        while (atomic_load(&W.submitted) < target)
            sched_yield();
        const char *why = fork_and_check();
        ck_assert_msg(why == NULL, "fork %d: %s", i, why);
    }
    atomic_store(&W.stop, true);
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(threads[i], NULL);
    world_stop();
}
END_TEST

/* The fork is made by a pool thread, inside a task of the pool being inherited. */
static int fork_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    const char *why = fork_and_check();
    return why ? cf_task_fail(CF_EPERM, "%s", why) : 0;
}

START_TEST(test_fork_from_a_task)
{
    world_start();
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, submitter, NULL), 0);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit(&f, W.tp, fork_task, NULL), 0);
    int code = -1;
    const char *why = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &why, f, CF_TEST_LONG * 4), 0);
    ck_assert_msg(code == 0, "%s", why ? why : "no message");
    cf_future_unref(f);
    atomic_store(&W.stop, true);
    pthread_join(t, NULL);
    world_stop();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fork");
    TCase *tc = cf_test_tcase("fork");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_fork_while_busy);
    tcase_add_test(tc, test_fork_from_a_task);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
