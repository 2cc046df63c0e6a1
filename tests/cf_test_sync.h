/* More deterministic synchronisation for the core suites: a counting latch, a way to know that
 * another thread is asleep in a blocking call, and small task functions that block on events.
 * Everything here bounds its waits with a deadline, so a bug fails a test instead of hanging. */
#ifndef CF_TEST_SYNC_H
#define CF_TEST_SYNC_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "cf_test.h"

/* A counter that threads can wait on until it reaches a value. */
typedef struct cf_test_latch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned count;
} cf_test_latch;

static inline void cf_test_latch_init(cf_test_latch *l)
{
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->count = 0;
}

static inline void cf_test_latch_destroy(cf_test_latch *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

static inline void cf_test_latch_add(cf_test_latch *l)
{
    pthread_mutex_lock(&l->mu);
    l->count++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static inline unsigned cf_test_latch_count(cf_test_latch *l)
{
    pthread_mutex_lock(&l->mu);
    unsigned n = l->count;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* Waits up to `seconds` for the count to reach `n`; returns whether it did. */
static inline bool cf_test_latch_wait(cf_test_latch *l, unsigned n, double seconds)
{
    double end = cf_test_now() + seconds;
    struct timespec ts = {.tv_sec = (time_t)end, .tv_nsec = (long)((end - (time_t)end) * 1e9)};
    pthread_mutex_lock(&l->mu);
    while (l->count < n && pthread_cond_timedwait(&l->cv, &l->mu, &ts) == 0)
        ;
    bool reached = l->count >= n;
    pthread_mutex_unlock(&l->mu);
    return reached;
}

static inline pid_t cf_test_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* The scheduler state letter of thread `tid` of this process ('R', 'S', ...), or 0 if the thread
 * is gone. */
static inline char cf_test_thread_state(pid_t tid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[len] = '\0';
    /* The command name may contain spaces and parentheses: the state follows the last ')'. */
    char *paren = strrchr(buf, ')');
    return paren && paren[1] == ' ' ? paren[2] : 0;
}

static inline void cf_test_pause_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (polling, up to `seconds`) until thread `tid` is asleep. A test calls it before making
 * the event another thread blocks on happen, so that the wake-up path is the one exercised. The
 * tests never depend on it for their outcome: if the thread was not asleep yet, the same result
 * must come out through the fast path. */
static inline bool cf_test_wait_asleep(pid_t tid, double seconds)
{
    double end = cf_test_monotonic() + seconds;
    for (;;) {
        char s = cf_test_thread_state(tid);
        if (s == 'S' || s == 'D')
            return true;
        if (s == 0 || cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(1);
    }
}

/* Waits (polling, up to `seconds`) until thread `tid` has exited. */
static inline bool cf_test_wait_thread_gone(pid_t tid, double seconds)
{
    double end = cf_test_monotonic() + seconds;
    while (cf_test_thread_state(tid) != 0) {
        if (cf_test_monotonic() > end)
            return false;
        cf_test_pause_ms(1);
    }
    return true;
}

/* ---- tasks ---- */

/* A task gate: the task announces that it started, then blocks until released. */
typedef struct cf_test_gate {
    cf_test_latch started;
    cf_test_event release;
    atomic_int finished;
} cf_test_gate;

static inline void cf_test_gate_init(cf_test_gate *g)
{
    cf_test_latch_init(&g->started);
    cf_test_event_init(&g->release);
    atomic_init(&g->finished, 0);
}

static inline void cf_test_gate_destroy(cf_test_gate *g)
{
    cf_test_latch_destroy(&g->started);
    cf_test_event_destroy(&g->release);
}

/* Task: arg is a cf_test_gate. Succeeds with the gate as result once released, or fails with
 * CF_ETIMEDOUT if nobody releases it in CF_TEST_LONG seconds (a test bug, never a hang). */
static inline int cf_test_gate_task(void *arg, void **result)
{
    cf_test_gate *g = arg;
    cf_test_latch_add(&g->started);
    bool released = cf_test_event_wait(&g->release, CF_TEST_LONG);
    atomic_fetch_add(&g->finished, 1);
    *result = g;
    return released ? 0 : CF_ETIMEDOUT;
}

/* Task: the result is the argument. */
static inline int cf_test_identity_task(void *arg, void **result)
{
    *result = arg;
    return 0;
}

/* Task: fails with the code given as argument (an intptr_t). */
static inline int cf_test_fail_task(void *arg, void **result)
{
    (void)result;
    return (int)(intptr_t)arg;
}

/* A result destructor for values that point to an atomic_int: counts its calls there. */
static inline void cf_test_count_dtor(void *value)
{
    atomic_fetch_add((atomic_int *)value, 1);
}

static inline cf_executor *cf_test_pool(unsigned max_workers)
{
    cf_thread_pool_options o = {.max_workers = max_workers};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
    return ex;
}

#endif
