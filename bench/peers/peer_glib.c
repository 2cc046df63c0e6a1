/* Peer: GLib's GThreadPool with 2 exclusive threads, and its main loop.
 *
 * GThreadPool has no futures, so each task carries what a GLib user writes to wait for one: a
 * GMutex, a GCond and a done flag, set by the worker after the function ran. A task record is
 * allocated per submission and freed after its wait, as a future is.
 *
 * The main-loop workloads use g_idle_add(), GLib's way to have a function called soon on the
 * main loop, from the loop thread or from any other thread: one idle source per call. */
#include <glib.h>
#include <stdlib.h>

#include "bench_util.h"

typedef struct btask btask;
struct btask {
    GMutex mu;
    GCond cv;
    gboolean done;
    void (*fn)(btask *t);
    void *arg;
};

static btask *btask_new(void (*fn)(btask *), void *arg)
{
    btask *t = g_new0(btask, 1);
    g_mutex_init(&t->mu);
    g_cond_init(&t->cv);
    t->fn = fn;
    t->arg = arg;
    return t;
}

static void btask_free(btask *t)
{
    g_cond_clear(&t->cv);
    g_mutex_clear(&t->mu);
    g_free(t);
}

static void btask_wait(btask *t)
{
    g_mutex_lock(&t->mu);
    while (!t->done)
        g_cond_wait(&t->cv, &t->mu);
    g_mutex_unlock(&t->mu);
}

static void pool_func(gpointer data, gpointer user_data)
{
    (void)user_data;
    btask *t = data;
    if (t->fn)
        t->fn(t);
    g_mutex_lock(&t->mu);
    t->done = TRUE;
    g_cond_signal(&t->cv);
    g_mutex_unlock(&t->mu);
}

static void push(GThreadPool *pool, btask *t)
{
    GError *err = NULL;
    if (!g_thread_pool_push(pool, t, &err))
        BENCH_FAIL("g_thread_pool_push", err ? err->message : NULL);
}

static void run_and_wait(GThreadPool *pool, void (*fn)(btask *), void *arg)
{
    btask *t = btask_new(fn, arg);
    push(pool, t);
    btask_wait(t);
    btask_free(t);
}

static GThreadPool *pool_new_warm(void)
{
    GError *err = NULL;
    GThreadPool *pool = g_thread_pool_new(pool_func, NULL, 2, TRUE, &err);
    if (!pool)
        BENCH_FAIL("g_thread_pool_new", err ? err->message : NULL);
    run_and_wait(pool, NULL, NULL);
    return pool;
}

static void pool_free(GThreadPool *pool)
{
    g_thread_pool_free(pool, FALSE, TRUE);
}

static void fn_gate(btask *t)
{
    bench_gate_pass(t->arg);
}

static void fn_cpu(btask *t)
{
    bench_cpu_slot_run(t->arg);
}

static void burst(GThreadPool *pool, size_t n, void (*fn)(btask *), void *args, size_t arg_size)
{
    btask **ts = bench_xmalloc(n * sizeof(*ts));
    for (size_t i = 0; i < n; i++) {
        ts[i] = btask_new(fn, args ? (char *)args + i * arg_size : NULL);
        push(pool, ts[i]);
    }
    for (size_t i = 0; i < n; i++) {
        btask_wait(ts[i]);
        btask_free(ts[i]);
    }
    free(ts);
}

static int wl_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    GThreadPool *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    burst(pool, n, NULL, NULL, 0);
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    GThreadPool *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        run_and_wait(pool, NULL, NULL);
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_cpu(char **args)
{
    bench_cpu c;
    bench_cpu_prepare(&c, args);
    GThreadPool *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    burst(pool, c.n, fn_cpu, c.slots, sizeof(*c.slots));
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_cpu_finish(&c, s, 2);
    return 0;
}

static void submit_burst(void *pool, size_t share, pthread_barrier_t *start)
{
    pthread_barrier_wait(start);
    burst(pool, share, NULL, NULL, 0);
}

static int wl_submitters(char **args)
{
    GThreadPool *pool = pool_new_warm();
    bench_submitters(args, submit_burst, NULL, pool);
    pool_free(pool);
    return 0;
}

static int wl_idle(char **args)
{
    double secs = bench_arg_seconds(args[0], "S");
    GThreadPool *pool = pool_new_warm();
    double cpu0 = bench_cpu_s();
    int64_t t0 = bench_now_ns();
    bench_sleep(secs);
    double s = bench_since_s(t0);
    double cpu_ms = (bench_cpu_s() - cpu0) * 1e3;
    pool_free(pool);
    bench_report("idle", secs, s, 0.0, " cpu_ms=%.3f", cpu_ms);
    return 0;
}

/* The per-task memory is the task record (with its mutex and cond) plus GLib's queue node. */
static int wl_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    GThreadPool *pool = pool_new_warm();
    bench_gate gate;
    bench_gate_init(&gate);
    btask *blockers[2];
    for (int i = 0; i < 2; i++) {
        blockers[i] = btask_new(fn_gate, &gate);
        push(pool, blockers[i]);
    }
    bench_gate_wait_arrived(&gate, 2);
    btask **ts = bench_xcalloc(n, sizeof(*ts));

    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        ts[i] = btask_new(NULL, NULL);
        push(pool, ts[i]);
    }
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();

    bench_gate_open(&gate);
    for (int i = 0; i < 2; i++) {
        btask_wait(blockers[i]);
        btask_free(blockers[i]);
    }
    for (size_t i = 0; i < n; i++) {
        btask_wait(ts[i]);
        btask_free(ts[i]);
    }
    free(ts);
    pool_free(pool);
    bench_gate_destroy(&gate);
    bench_report("memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_future=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}

/* A countdown shared by the idle callbacks of one burst: the last one quits the loop. */
typedef struct countdown {
    GMainLoop *loop;
    size_t left;
} countdown;

static gboolean count_down(gpointer data)
{
    countdown *c = data;
    if (--c->left == 0)
        g_main_loop_quit(c->loop);
    return G_SOURCE_REMOVE;
}

/* Adds n idle callbacks, then runs the loop until they have all run; returns the seconds. */
static double idle_burst(GMainLoop *loop, size_t n)
{
    countdown c = {.loop = loop, .left = n};
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        g_idle_add(count_down, &c);
    g_main_loop_run(loop);
    return bench_since_s(t0);
}

/* As cf-bench: a first burst on fresh memory (cold_per_task_ns), then the timed one. */
static int wl_loop_call_soon(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    double cold = idle_burst(loop, n);
    double s = idle_burst(loop, n);
    g_main_loop_unref(loop);
    bench_report("loop-call-soon", (double)n, s, s * 1e9 / (double)n, " cold_per_task_ns=%.1f",
                 cold * 1e9 / (double)n);
    return 0;
}

typedef struct poster {
    countdown *c;
    size_t n;
} poster;

static gpointer post_all(gpointer data)
{
    poster *p = data;
    for (size_t i = 0; i < p->n; i++)
        g_idle_add(count_down, p->c);
    return NULL;
}

/* Another thread adds n idle callbacks while the loop runs them. */
static int wl_loop_threadsafe(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    countdown c = {.loop = loop, .left = n};
    poster p = {.c = &c, .n = n};
    int64_t t0 = bench_now_ns();
    GThread *t = g_thread_new("poster", post_all, &p);
    g_main_loop_run(loop);
    double s = bench_since_s(t0);
    g_thread_join(t);
    g_main_loop_unref(loop);
    bench_report("loop-threadsafe", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static const bench_workload workloads[] = {
    {"burst", "N", 1, wl_burst, "push N empty tasks, wait for each one's completion"},
    {"pingpong", "N", 1, wl_pingpong, "push one empty task and wait for it, N times"},
    {"cpu", "N ITERS", 2, wl_cpu, "N tasks of ITERS xorshift rounds: sequential vs pool"},
    {"submitters", "N T", 2, wl_submitters, "T threads push N/T tasks each, then wait"},
    {"idle", "S", 1, wl_idle, "process CPU time of the idle pool over S seconds"},
    {"memory", "N", 1, wl_memory, "resident bytes per pending task, N queued"},
    {"loop-call-soon", "N", 1, wl_loop_call_soon, "g_idle_add N callbacks, then run them"},
    {"loop-threadsafe", "N", 1, wl_loop_threadsafe, "another thread g_idle_adds N callbacks"},
};

int main(int argc, char **argv)
{
    return bench_main("glib", workloads, sizeof(workloads) / sizeof(workloads[0]), argc, argv);
}
