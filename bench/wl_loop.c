/* Event-loop workloads of cf-bench (bench/README.md has the contract; bench/probe_loop.c and
 * bench/probe_coro.c measure the same things with more options).
 *
 * Every loop is created before the clock starts and freed after it stops. The workloads that
 * run coroutine tasks exist only when the library has coroutines (CF_BENCH_CORO); the others
 * use the callback API, which every build has. */
#include <stdlib.h>
#include <string.h>

#include "cf_bench.h"

static cf_loop *loop_new(void)
{
    cf_loop *loop;
    CF_CHECK(cf_loop_new(&loop, NULL));
    return loop;
}

static void loop_free(cf_loop *loop)
{
    CF_CHECK(cf_loop_free(loop));
}

/* Runs every callback that is ready now, once. */
static void run_once(cf_loop *loop)
{
    CF_CHECK(cf_loop_stop(loop));
    CF_CHECK(cf_loop_run_forever(loop));
}

/* A countdown shared by the callbacks of one burst: the last one stops the loop. */
typedef struct countdown {
    size_t left;
} countdown;

static void count_down(cf_loop *loop, void *data)
{
    countdown *c = data;
    if (--c->left == 0)
        CF_CHECK(cf_loop_stop(loop));
}

/* Schedules n callbacks, then runs the loop until they have all run; returns the seconds. */
static double call_soon_burst(cf_loop *loop, size_t n)
{
    countdown c = {.left = n};
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_loop_call_soon(NULL, loop, count_down, &c));
    CF_CHECK(cf_loop_run_forever(loop));
    return bench_since_s(t0);
}

/* The first burst runs on fresh memory (reported as cold_per_task_ns); the second, timed one
 * reuses what the first left, as a long-running loop does. */
int wl_loop_call_soon(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    double cold = call_soon_burst(loop, n);
    double s = call_soon_burst(loop, n);
    loop_free(loop);
    bench_report("loop-call-soon", (double)n, s, s * 1e9 / (double)n, " cold_per_task_ns=%.1f",
                 cold * 1e9 / (double)n);
    return 0;
}

typedef struct poster {
    cf_loop *loop;
    countdown *c;
    size_t n;
} poster;

static void *post_all(void *arg)
{
    poster *p = arg;
    for (size_t i = 0; i < p->n; i++)
        CF_CHECK(cf_loop_call_soon_threadsafe(p->loop, count_down, p->c));
    return NULL;
}

/* Another thread posts n callbacks while the loop runs them; the clock stops when the last one
 * has run on the loop thread. */
int wl_loop_threadsafe(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    countdown c = {.left = n};
    poster p = {.loop = loop, .c = &c, .n = n};
    pthread_t t;
    int64_t t0 = bench_now_ns();
    BENCH_CHECK_ZERO(pthread_create(&t, NULL, post_all, &p), strerror);
    CF_CHECK(cf_loop_run_forever(loop));
    double s = bench_since_s(t0);
    BENCH_CHECK_ZERO(pthread_join(t, NULL), strerror);
    loop_free(loop);
    bench_report("loop-threadsafe", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static void on_done(cf_future *f, void *data)
{
    (void)f;
    (void)data;
}

/* Resident bytes per pending loop future that has one done-callback. The caller's array of
 * future pointers is allocated and touched before the first reading. */
int wl_loop_future_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_future **fs = bench_xcalloc(n, sizeof(*fs));
    memset(fs, 0, n * sizeof(*fs));
    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        CF_CHECK(cf_loop_create_future(&fs[i], loop));
        CF_CHECK(cf_future_add_done_callback(fs[i], on_done, NULL));
    }
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();
    for (size_t i = 0; i < n; i++) {
        cf_future_cancel(fs[i]);
        cf_future_unref(fs[i]);
    }
    run_once(loop); /* the cancelled futures' callbacks */
    free(fs);
    loop_free(loop);
    bench_report("loop-future-memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_future=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}

#if CF_BENCH_CORO

static int task_empty(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

/* The tasks of loop-switch: each yields to the loop *arg times. */
static int task_switch(void *arg, void **result)
{
    (void)result;
    size_t k = *(size_t *)arg;
    for (size_t i = 0; i < k; i++)
        CF_CHECK(cf_sleep(0));
    return 0;
}

/* Runs the loop until every task in `ts` is done, then releases them. */
static void gather_and_release(cf_loop *loop, cf_future **ts, size_t n)
{
    cf_future *all;
    CF_CHECK(cf_loop_gather(&all, loop, ts, n));
    CF_CHECK(cf_loop_run_until_complete(NULL, loop, all));
    cf_future_unref(all);
    for (size_t i = 0; i < n; i++)
        cf_future_unref(ts[i]);
}

/* Two tasks share the N yields, so the loop switches from one task to the other each time. */
int wl_loop_switch(char **args)
{
    enum { TASKS = 2 };
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    size_t share[TASKS];
    cf_future *ts[TASKS];
    for (size_t i = 0; i < TASKS; i++) {
        share[i] = bench_share(n, TASKS, i);
        CF_CHECK(cf_loop_create_task(&ts[i], loop, task_switch, &share[i], NULL));
    }
    int64_t t0 = bench_now_ns();
    gather_and_release(loop, ts, TASKS);
    double s = bench_since_s(t0);
    loop_free(loop);
    bench_report("loop-switch", (double)n, s, s * 1e9 / (double)n, " tasks=%d", TASKS);
    return 0;
}

typedef struct roundtrip {
    cf_executor *pool;
    size_t n;
    double s;
} roundtrip;

static int task_roundtrips(void *arg, void **result)
{
    (void)result;
    roundtrip *r = arg;
    cf_loop *loop = cf_loop_current();
    cf_future *f;
    /* One round trip before the clock, as the peer does. */
    CF_CHECK(cf_loop_run_in_executor(&f, loop, r->pool, task_empty, NULL));
    CF_CHECK(cf_await(NULL, f));
    cf_future_unref(f);
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < r->n; i++) {
        CF_CHECK(cf_loop_run_in_executor(&f, loop, r->pool, task_empty, NULL));
        CF_CHECK(cf_await(NULL, f));
        cf_future_unref(f);
    }
    r->s = bench_since_s(t0);
    return 0;
}

/* A task awaits a thread-pool future of an empty function, N times in a row. */
int wl_loop_roundtrip(char **args)
{
    roundtrip r = {.n = bench_arg_count(args[0], "N")};
    cf_thread_pool_options opt = {.max_workers = CF_BENCH_WORKERS};
    CF_CHECK(cf_thread_pool_new(&r.pool, &opt));
    cf_future *f;
    CF_CHECK(cf_executor_submit(&f, r.pool, task_empty, NULL)); /* the pool is warm */
    CF_CHECK(cf_future_result(NULL, f, CF_FOREVER));
    cf_future_unref(f);
    cf_loop *loop = loop_new();
    cf_future *t;
    CF_CHECK(cf_loop_create_task(&t, loop, task_roundtrips, &r, NULL));
    CF_CHECK(cf_loop_run_until_complete(NULL, loop, t));
    cf_future_unref(t);
    loop_free(loop);
    CF_CHECK(cf_executor_free(r.pool));
    bench_report("loop-roundtrip", (double)r.n, r.s, r.s * 1e9 / (double)r.n, NULL);
    return 0;
}

static void finish(cf_loop *loop, void *data)
{
    (void)loop;
    CF_CHECK(cf_future_set_result(data, NULL, NULL));
}

static int task_future_await(void *arg, void **result)
{
    (void)result;
    size_t n = *(size_t *)arg;
    cf_loop *loop = cf_loop_current();
    for (size_t i = 0; i < n; i++) {
        cf_future *f;
        CF_CHECK(cf_loop_create_future(&f, loop));
        CF_CHECK(cf_loop_call_soon(NULL, loop, finish, f));
        CF_CHECK(cf_await(NULL, f));
        cf_future_unref(f);
    }
    return 0;
}

/* A task creates a loop future, has a callback complete it, and awaits it, N times. */
int wl_loop_future_await(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_future *t;
    CF_CHECK(cf_loop_create_task(&t, loop, task_future_await, &n, NULL));
    int64_t t0 = bench_now_ns();
    CF_CHECK(cf_loop_run_until_complete(NULL, loop, t));
    double s = bench_since_s(t0);
    cf_future_unref(t);
    loop_free(loop);
    bench_report("loop-future-await", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

/* Creates N tasks of an empty function, gathers them, runs the loop until all are done and
 * releases them: the life of a short task (its stack comes from the loop's cache). */
int wl_loop_spawn(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_future **ts = bench_xcalloc(n, sizeof(*ts));
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_loop_create_task(&ts[i], loop, task_empty, NULL, NULL));
    gather_and_release(loop, ts, n);
    double s = bench_since_s(t0);
    free(ts);
    loop_free(loop);
    bench_report("loop-spawn", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int task_yield_once(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_sleep(0);
}

/* As loop-spawn, but every task parks once (cf_sleep(0)) before it ends, so all N stacks are
 * in use at once: the stack pool's fresh-stack and give-back paths, as a server's tasks take
 * them. */
int wl_loop_spawn_yield(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_future **ts = bench_xcalloc(n, sizeof(*ts));
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_loop_create_task(&ts[i], loop, task_yield_once, NULL, NULL));
    gather_and_release(loop, ts, n);
    double s = bench_since_s(t0);
    free(ts);
    loop_free(loop);
    bench_report("loop-spawn-yield", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int task_park(void *arg, void **result)
{
    (void)arg;
    (void)result;
    cf_sleep(3600); /* returns CF_ECANCELLED when the loop is freed */
    return 0;
}

/* Resident bytes per task suspended in a long sleep: its stack pages, its record and its timer.
 * The caller's array of task pointers is allocated and touched before the first reading. */
int wl_loop_task_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_future **ts = bench_xcalloc(n, sizeof(*ts));
    memset(ts, 0, n * sizeof(*ts));
    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_loop_create_task(&ts[i], loop, task_park, NULL, NULL));
    run_once(loop); /* every task starts and parks in its sleep */
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();
    for (size_t i = 0; i < n; i++)
        cf_future_unref(ts[i]);
    free(ts);
    loop_free(loop); /* winds the sleeping tasks down */
    bench_report("loop-task-memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_task=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}

/* ---- coordination primitives ---- */

enum { QUEUE_MAXSIZE = 16 };

typedef struct queue_run {
    cf_loop_queue *q;
    size_t n;
} queue_run;

static int task_producer(void *arg, void **result)
{
    (void)result;
    queue_run *r = arg;
    for (size_t i = 0; i < r->n; i++)
        CF_CHECK(cf_loop_queue_put(r->q, (void *)(uintptr_t)(i + 1)));
    CF_CHECK(cf_loop_queue_join(r->q));
    return 0;
}

static int task_consumer(void *arg, void **result)
{
    (void)result;
    queue_run *r = arg;
    for (size_t i = 0; i < r->n; i++) {
        void *item;
        CF_CHECK(cf_loop_queue_get(&item, r->q));
        if ((uintptr_t)item != i + 1)
            BENCH_FAIL("loop-queue", "an item came out of order");
        CF_CHECK(cf_loop_queue_task_done(r->q));
    }
    return 0;
}

/* A producer task puts N items through a queue of maxsize 16 to a consumer task, which marks
 * each done; the producer then joins the queue. Both alternate: the producer fills the queue and
 * waits, the consumer drains it and waits. */
int wl_loop_queue(char **args)
{
    queue_run r = {.n = bench_arg_count(args[0], "N")};
    cf_loop *loop = loop_new();
    cf_loop_queue_options o = {.maxsize = QUEUE_MAXSIZE};
    CF_CHECK(cf_loop_queue_new(&r.q, loop, &o));
    cf_future *ts[2];
    CF_CHECK(cf_loop_create_task(&ts[0], loop, task_producer, &r, NULL));
    CF_CHECK(cf_loop_create_task(&ts[1], loop, task_consumer, &r, NULL));
    int64_t t0 = bench_now_ns();
    gather_and_release(loop, ts, 2);
    double s = bench_since_s(t0);
    CF_CHECK(cf_loop_queue_free(r.q));
    loop_free(loop);
    bench_report("loop-queue", (double)r.n, s, s * 1e9 / (double)r.n, " maxsize=%d", QUEUE_MAXSIZE);
    return 0;
}

typedef struct lock_run {
    cf_loop_lock *lock;
    size_t k;
} lock_run;

static int task_locker(void *arg, void **result)
{
    (void)result;
    lock_run *r = arg;
    for (size_t i = 0; i < r->k; i++) {
        CF_CHECK(cf_loop_lock_acquire(r->lock));
        CF_CHECK(cf_sleep(0)); /* yield while holding it: the other task queues up */
        CF_CHECK(cf_loop_lock_release(r->lock));
    }
    return 0;
}

/* Two tasks take one lock N times in all (N/2 each), each yielding once while it holds it, so
 * every acquisition but the first waits and is handed the lock by the other's release. */
int wl_loop_lock(char **args)
{
    enum { TASKS = 2 };
    size_t n = bench_arg_count(args[0], "N");
    cf_loop *loop = loop_new();
    cf_loop_lock *lock;
    CF_CHECK(cf_loop_lock_new(&lock, loop));
    lock_run runs[TASKS];
    cf_future *ts[TASKS];
    for (size_t i = 0; i < TASKS; i++) {
        runs[i] = (lock_run){.lock = lock, .k = bench_share(n, TASKS, i)};
        CF_CHECK(cf_loop_create_task(&ts[i], loop, task_locker, &runs[i], NULL));
    }
    int64_t t0 = bench_now_ns();
    gather_and_release(loop, ts, TASKS);
    double s = bench_since_s(t0);
    CF_CHECK(cf_loop_lock_free(lock));
    loop_free(loop);
    bench_report("loop-lock", (double)n, s, s * 1e9 / (double)n, " tasks=%d", TASKS);
    return 0;
}

#endif
