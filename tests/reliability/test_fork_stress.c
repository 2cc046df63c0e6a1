/* fork() at any moment: one thread forks in a loop while others submit to, cancel and drop the
 * futures of a thread pool and a process pool. The library's fork handlers must take its locks
 * in the order its own code nests them (a process pool's lock, then the futures' free-list
 * depot: a dispatch that dropped the last reference of a cancelled future under the pool's lock
 * did exactly that in issue 11), or a fork() racing such a dispatch deadlocks in the parent. Every
 * fork must return, and every child (which uses the library: a new thread pool runs a task) must
 * exit within a bounded time.
 *
 * The process pool is created before any future is released, so that on a library whose
 * modules register their handlers lazily, the depot's registers after the pool's: that is the
 * order that deadlocks. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "cf_test_sync.h"
#include "proc_util.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define CHILD_MALLOC_MAY_HANG 1 /* see test_fork.c: the sanitizers' allocators and fork() */
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define CHILD_MALLOC_MAY_HANG 1
#endif
#endif

const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}

enum { SUBMITTERS = 2, BATCH = 300 };

typedef struct world {
    cf_executor *pp, *tp;
    atomic_bool stop;
    atomic_long submitted;
    int forks, slow_children;
    cf_test_event forker_done;
} world;

static int empty_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    return 0;
}

static int square_task(void *arg, void **result)
{
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * x);
    return 0;
}

/* Submits batches larger than the process pool's dispatch window, cancels half of each and drops
 * every reference but the last one's: the pool's dispatch then releases the cancelled futures
 * under its lock, spilling the thread's future cache into the depot. Waiting for the last task
 * of a batch keeps the queues short. The thread pool gets the same treatment. */
static void *submitter(void *arg)
{
    world *w = arg;
    cf_future *fs[BATCH];
    while (!atomic_load(&w->stop)) {
        size_t n = 0;
        for (size_t i = 0; i < BATCH; i++)
            if (cf_executor_submit_bytes(&fs[n], w->pp, empty_task, "", 0) == 0)
                n++;
        for (size_t i = 0; i + 1 < n; i++) {
            if (i % 2)
                cf_future_cancel(fs[i]);
            cf_future_unref(fs[i]);
        }
        if (n) {
            cf_future_result(NULL, fs[n - 1], CF_TEST_LONG);
            cf_future_unref(fs[n - 1]);
        }
        size_t m = 0;
        for (size_t i = 0; i < BATCH / 3; i++)
            if (cf_executor_submit(&fs[m], w->tp, square_task, (void *)(intptr_t)i) == 0)
                m++;
        for (size_t i = 0; i + 1 < m; i++) {
            if (i % 3 == 0)
                cf_future_cancel(fs[i]);
            cf_future_unref(fs[i]);
        }
        if (m) {
            cf_future_result(NULL, fs[m - 1], CF_TEST_LONG);
            cf_future_unref(fs[m - 1]);
        }
        atomic_fetch_add(&w->submitted, (long)(n + m));
    }
    return NULL;
}

/* The child: uses the library (unless the sanitizer's allocator may hang it), says so on
 * `report`, then leaves. (Its exit status is not the verdict: under valgrind it reports the
 * futures the parent's vanished threads held as leaks, and exits with valgrind's error code.) */
static _Noreturn void child_main(int report)
{
#ifndef CHILD_MALLOC_MAY_HANG
    cf_executor *tp;
    if (cf_thread_pool_new(&tp, NULL) != 0)
        _exit(2);
    cf_future *f;
    if (cf_executor_submit(&f, tp, square_task, (void *)7) != 0)
        _exit(3);
    void *r = NULL;
    if (cf_future_result(&r, f, 10) != 0 || r != (void *)49)
        _exit(4);
    cf_future_unref(f);
    cf_executor_free(tp);
#endif
    ssize_t n = write(report, "k", 1);
    _exit(n == 1 ? 0 : 5);
}

/* Waits for `pid` up to `seconds`; kills it if it did not exit. Returns whether it exited after
 * reporting success on `report`. */
static bool reap_within(pid_t pid, int report, double seconds)
{
    double end = cf_test_monotonic() + seconds;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            char byte = 0;
            return WIFEXITED(status) && read(report, &byte, 1) == 1 && byte == 'k';
        }
        if (r < 0 && errno != EINTR)
            return false;
        if (cf_test_monotonic() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return false;
        }
        struct timespec ts = {0, 1000000}; /* polling a child's exit, bounded */
        nanosleep(&ts, NULL);
    }
}

static void *forker(void *arg)
{
    world *w = arg;
    bool valgrind = getenv("CF_TEST_UNDER_VALGRIND") != NULL;
    int forks = valgrind ? 20 : 300;
    double end = cf_test_monotonic() + (valgrind ? 20 : 4);
    for (int i = 0; i < forks && cf_test_monotonic() < end; i++) {
        int report[2];
        if (pipe2(report, O_CLOEXEC) != 0)
            continue;
        pid_t pid = fork();
        if (pid == 0)
            child_main(report[1]);
        close(report[1]);
        if (pid >= 0) {
            w->forks++;
            if (!reap_within(pid, report[0], 10))
                w->slow_children++;
        }
        close(report[0]);
    }
    cf_test_event_set(&w->forker_done);
    return NULL;
}

START_TEST(test_fork_while_pools_churn)
{
    world w = {.forks = 0};
    cf_test_event_init(&w.forker_done);
    /* First, before any future exists (see the file comment). */
    ck_assert_int_eq(cf_process_pool_new(&w.pp, &(cf_process_pool_options){.max_workers = 1}), 0);
    ck_assert_int_eq(cf_thread_pool_new(&w.tp, &(cf_thread_pool_options){.max_workers = 2}), 0);
    pthread_t subs[SUBMITTERS], fk;
    for (int i = 0; i < SUBMITTERS; i++)
        ck_assert_int_eq(pthread_create(&subs[i], NULL, submitter, &w), 0);
    ck_assert_int_eq(pthread_create(&fk, NULL, forker, &w), 0);
    bool done = cf_test_event_wait(&w.forker_done, 60);
    ck_assert_msg(done, "fork() deadlocked in the parent after %d forks (%ld tasks submitted)",
                  w.forks, atomic_load(&w.submitted));
    atomic_store(&w.stop, true);
    for (int i = 0; i < SUBMITTERS; i++)
        pthread_join(subs[i], NULL);
    pthread_join(fk, NULL);
    printf("fork_stress: %d forks while %ld tasks were submitted\n", w.forks,
           atomic_load(&w.submitted));
    ck_assert_int_gt(w.forks, 0);
    ck_assert_msg(w.slow_children == 0, "%d of %d children did not exit cleanly within 10 s",
                  w.slow_children, w.forks);
    ck_assert_int_eq(cf_executor_free(w.tp), 0);
    ck_assert_int_eq(cf_executor_free(w.pp), 0);
    cf_test_event_destroy(&w.forker_done);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("fork_stress");
    TCase *tc = cf_test_tcase("fork");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fork_while_pools_churn);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
