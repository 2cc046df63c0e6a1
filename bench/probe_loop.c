/* Event-loop costs, to compare with Python asyncio (/work/shared/reference/probes/
 * loop_asyncio.py runs the same workloads). One workload per process; take the median of
 * several runs (docs/event_loop.md gives the commands).
 *
 *     probe_loop [switch|call-soon|roundtrip|task-rss|future-size|threadsafe|future-await|all] [n]
 *     probe_loop switch N TASKS     (N switches shared by TASKS tasks; default N/10 tasks)
 *
 * Prints one line per workload:
 *     cfutures loop-switch n=N total_s=S per_task_ns=X          n/10 tasks x 10 cf_sleep(0),
 *                                                               created before the clock
 *     cfutures loop-call-soon n=N total_s=S per_task_ns=X cold_per_task_ns=Y
 *                                                               schedule n callbacks, run them
 *                                                               (warm: a second burst; cold:
 *                                                               the first, on fresh memory)
 *     cfutures loop-roundtrip n=N total_s=S per_task_ns=X       await run_in_executor of an
 *                                                               empty task, sequentially
 *     cfutures loop-task-rss n=N total_s=S per_task_ns=X bytes_per_task=B
 *                                                               n tasks parked in cf_sleep
 *     cfutures loop-future-size n=N total_s=S per_task_ns=X bytes_per_future=B
 *                                                               n loop futures, each with one
 *                                                               done-callback (heap bytes)
 *     cfutures loop-threadsafe n=N total_s=S per_task_ns=X      n call_soon_threadsafe from
 *                                                               another thread
 *     cfutures loop-future-await n=N total_s=S per_task_ns=X    create a loop future, finish
 *                                                               it from call_soon, await it */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfutures.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "probe_loop: %s: %s\n", what, cf_strerror(rc));
        exit(1);
    }
}

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    check(cf_loop_new(&loop, NULL), "cf_loop_new");
    return loop;
}

static void report(const char *name, long n, double total, const char *extra)
{
    printf("cfutures %s n=%ld total_s=%.6f per_task_ns=%.1f%s\n", name, n, total, total * 1e9 / n,
           extra ? extra : "");
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
        exit(1);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

/* Runs the loop until `f` is done. */
static void complete(cf_loop *loop, cf_future *f)
{
    int rc = cf_loop_run_until_complete(NULL, loop, f);
    check(rc, "run_until_complete");
}

/* Lets every ready callback and task run once. */
static void one_iteration(cf_loop *loop)
{
    cf_loop_stop(loop);
    cf_loop_run_forever(loop);
}

/* ---- switch: asyncio's switch_many_pre ---- */

static int switcher(void *arg, void **result)
{
    (void)result;
    long k = *(long *)arg;
    for (long i = 0; i < k; i++)
        cf_sleep(0);
    return 0;
}

static void bench_switch(long n, long ntasks_wanted)
{
    cf_loop *loop = new_loop();
    long ntasks = ntasks_wanted ? ntasks_wanted : n / 10;
    long per_task = n / ntasks;
    cf_future **ts = malloc(ntasks * sizeof(*ts));
    for (long i = 0; i < ntasks; i++)
        check(cf_loop_create_task(&ts[i], loop, switcher, &per_task, NULL), "create_task");
    cf_future *all;
    check(cf_loop_gather(&all, loop, ts, (size_t)ntasks), "gather");
    double t0 = now();
    complete(loop, all);
    char extra[32];
    snprintf(extra, sizeof(extra), " tasks=%ld", ntasks);
    report("loop-switch", ntasks * per_task, now() - t0, extra);
    cf_future_unref(all);
    for (long i = 0; i < ntasks; i++)
        cf_future_unref(ts[i]);
    free(ts);
    cf_loop_free(loop);
}

/* ---- call_soon ---- */

typedef struct counter {
    long left;
} counter;

static void count_down(cf_loop *loop, void *data)
{
    counter *c = data;
    if (--c->left == 0)
        cf_loop_stop(loop);
}

/* Schedules n callbacks, then runs them; returns the seconds taken. */
static double call_soon_burst(cf_loop *loop, long n)
{
    counter c = {.left = n};
    double t0 = now();
    for (long i = 0; i < n; i++)
        check(cf_loop_call_soon(NULL, loop, count_down, &c), "call_soon");
    cf_loop_run_forever(loop);
    return now() - t0;
}

/* Cold: the first burst in the process (every handle on fresh memory, as asyncio's probe).
 * Warm: a second burst of the same size, on memory the first one left. */
static void bench_call_soon(long n)
{
    cf_loop *loop = new_loop();
    double cold = call_soon_burst(loop, n);
    double warm = call_soon_burst(loop, n);
    char extra[64];
    snprintf(extra, sizeof(extra), " cold_per_task_ns=%.1f", cold * 1e9 / n);
    report("loop-call-soon", n, warm, extra);
    cf_loop_free(loop);
}

/* ---- roundtrip: await run_in_executor(empty) ---- */

static int empty(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

typedef struct rt {
    cf_executor *ex;
    long n;
    double total;
} rt;

static int roundtrips(void *arg, void **result)
{
    (void)result;
    rt *r = arg;
    cf_loop *loop = cf_loop_current();
    cf_future *f;
    for (int i = 0; i < 1000; i++) { /* warm: threads started, spin windows adapted */
        check(cf_loop_run_in_executor(&f, loop, r->ex, empty, NULL), "run_in_executor");
        cf_await(NULL, f);
        cf_future_unref(f);
    }
    double t0 = now();
    for (long i = 0; i < r->n; i++) {
        check(cf_loop_run_in_executor(&f, loop, r->ex, empty, NULL), "run_in_executor");
        check(cf_await(NULL, f), "await");
        cf_future_unref(f);
    }
    r->total = now() - t0;
    return 0;
}

/* PROBE_LOOP_SPIN=<seconds> overrides the loop's spin_time (negative: no spinning). */
static void bench_roundtrip(long n)
{
    cf_loop *loop;
    const char *spin = getenv("PROBE_LOOP_SPIN");
    cf_loop_options lo = {.spin_time = spin ? atof(spin) : 0};
    check(cf_loop_new(&loop, &lo), "cf_loop_new");
    rt r = {.n = n};
    cf_thread_pool_options o = {.max_workers = 2}; /* as asyncio's probe */
    check(cf_thread_pool_new(&r.ex, &o), "thread_pool_new");
    cf_future *t;
    check(cf_loop_create_task(&t, loop, roundtrips, &r, NULL), "create_task");
    complete(loop, t);
    report("loop-roundtrip", n, r.total, NULL);
    cf_future_unref(t);
    cf_loop_free(loop);
    cf_executor_free(r.ex);
}

/* ---- task-rss: tasks parked in a long sleep ---- */

static int sleeper(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return cf_sleep(3600);
}

static void bench_task_rss(long n)
{
    cf_loop *loop = new_loop();
    cf_future **ts = malloc(n * sizeof(*ts));
    long before = rss_bytes();
    double t0 = now();
    for (long i = 0; i < n; i++)
        check(cf_loop_create_task(&ts[i], loop, sleeper, NULL, NULL), "create_task");
    one_iteration(loop); /* every task starts and parks in its sleep */
    double total = now() - t0;
    long after = rss_bytes();
    /* The array of handles is the probe's own, not the tasks': leave it out. */
    double per = (double)(after - before - n * (long)sizeof(*ts)) / n;
    char extra[64];
    snprintf(extra, sizeof(extra), " bytes_per_task=%.0f", per);
    report("loop-task-rss", n, total, extra);
    for (long i = 0; i < n; i++)
        cf_future_unref(ts[i]);
    free(ts);
    cf_loop_free(loop); /* winds the sleepers down */
}

/* ---- future-size: callback-style loop futures ---- */

static void on_done(cf_future *f, void *data)
{
    (void)f;
    (void)data;
}

static void bench_future_size(long n)
{
    cf_loop *loop = new_loop();
    cf_future **fs = malloc(n * sizeof(*fs));
    struct mallinfo2 before = mallinfo2();
    double t0 = now();
    for (long i = 0; i < n; i++) {
        check(cf_loop_create_future(&fs[i], loop), "create_future");
        check(cf_future_add_done_callback(fs[i], on_done, NULL), "add_done_callback");
    }
    double total = now() - t0;
    struct mallinfo2 after = mallinfo2();
    char extra[64];
    snprintf(extra, sizeof(extra), " bytes_per_future=%.0f",
             (double)(after.uordblks - before.uordblks) / n);
    report("loop-future-size", n, total, extra);
    for (long i = 0; i < n; i++) {
        cf_future_cancel(fs[i]);
        cf_future_unref(fs[i]);
    }
    one_iteration(loop);
    free(fs);
    cf_loop_free(loop);
}

/* ---- threadsafe: posts from another thread ---- */

typedef struct poster {
    cf_loop *loop;
    counter *c;
    long n;
} poster;

static void *post_all(void *arg)
{
    poster *p = arg;
    for (long i = 0; i < p->n; i++)
        check(cf_loop_call_soon_threadsafe(p->loop, count_down, p->c), "threadsafe");
    return NULL;
}

static void bench_threadsafe(long n)
{
    cf_loop *loop = new_loop();
    counter c = {.left = n};
    poster p = {.loop = loop, .c = &c, .n = n};
    pthread_t t;
    double t0 = now();
    pthread_create(&t, NULL, post_all, &p);
    cf_loop_run_forever(loop);
    double total = now() - t0;
    pthread_join(t, NULL);
    report("loop-threadsafe", n, total, NULL);
    cf_loop_free(loop);
}

/* ---- future-await: asyncio's future_await ---- */

static void finish(cf_loop *loop, void *data)
{
    (void)loop;
    cf_future_set_result(data, NULL, NULL);
}

static int awaiter(void *arg, void **result)
{
    (void)result;
    long n = *(long *)arg;
    cf_loop *loop = cf_loop_current();
    for (long i = 0; i < n; i++) {
        cf_future *f;
        check(cf_loop_create_future(&f, loop), "create_future");
        check(cf_loop_call_soon(NULL, loop, finish, f), "call_soon");
        check(cf_await(NULL, f), "await");
        cf_future_unref(f);
    }
    return 0;
}

static void bench_future_await(long n)
{
    cf_loop *loop = new_loop();
    cf_future *t;
    check(cf_loop_create_task(&t, loop, awaiter, &n, NULL), "create_task");
    double t0 = now();
    complete(loop, t);
    report("loop-future-await", n, now() - t0, NULL);
    cf_future_unref(t);
    cf_loop_free(loop);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 0;
    long tasks = argc > 3 ? atol(argv[3]) : 0; /* switch: tasks sharing the n switches */
    bool all = strcmp(what, "all") == 0;
    if (all || strcmp(what, "switch") == 0)
        bench_switch(n ? n : 1000000, tasks);
    if (all || strcmp(what, "call-soon") == 0)
        bench_call_soon(n ? n : 1000000);
    if (all || strcmp(what, "roundtrip") == 0)
        bench_roundtrip(n ? n : 20000);
    if (all || strcmp(what, "task-rss") == 0)
        bench_task_rss(n ? n : 100000);
    if (all || strcmp(what, "future-size") == 0)
        bench_future_size(n ? n : 100000);
    if (all || strcmp(what, "threadsafe") == 0)
        bench_threadsafe(n ? n : 200000);
    if (all || strcmp(what, "future-await") == 0)
        bench_future_await(n ? n : 200000);
    return 0;
}
