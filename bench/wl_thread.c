/* Thread-pool workloads of cf-bench. Every pool has CF_BENCH_WORKERS workers and is created and
 * warmed with one task (so its threads exist) before any timing starts; creating and freeing
 * the pool are never timed. */
#include <stdlib.h>
#include <string.h>

#include "cf_bench.h"

static int task_empty(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static int task_gate(void *arg, void **result)
{
    (void)result;
    bench_gate_pass(arg);
    return 0;
}

static int task_cpu(void *arg, void **result)
{
    (void)result;
    bench_cpu_slot_run(arg);
    return 0;
}

static void run_and_wait(cf_executor *pool, cf_fn fn, void *arg)
{
    cf_future *f;
    CF_CHECK(cf_executor_submit(&f, pool, fn, arg));
    CF_CHECK(cf_future_result(NULL, f, CF_FOREVER));
    cf_future_unref(f);
}

static cf_executor *pool_new_warm(void)
{
    cf_thread_pool_options opt = {.max_workers = CF_BENCH_WORKERS};
    cf_executor *pool;
    CF_CHECK(cf_thread_pool_new(&pool, &opt));
    run_and_wait(pool, task_empty, NULL);
    return pool;
}

static void pool_free(cf_executor *pool)
{
    CF_CHECK(cf_executor_free(pool));
}

/* Submits n tasks, waits for all of them and releases them: the burst itself. */
static void burst(cf_executor *pool, size_t n, cf_fn fn, void *args, size_t arg_size)
{
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit(&fs[i], pool, fn, args ? (char *)args + i * arg_size : NULL));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    free(fs);
}

int wl_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    burst(pool, n, task_empty, NULL, 0);
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

/* As burst, with the N tasks handed over in one cf_executor_submit_batch(). */
int wl_burst_batch(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    CF_CHECK(cf_executor_submit_batch(fs, pool, task_empty, NULL, n));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    free(fs);
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("burst-batch", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

int wl_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        run_and_wait(pool, task_empty, NULL);
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

int wl_map(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    void **inputs = bench_xcalloc(n, sizeof(*inputs));
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    cf_map *it;
    CF_CHECK(cf_executor_map(&it, pool, task_empty, inputs, n, CF_FOREVER, 0));
    size_t got = 0;
    int rc;
    while ((rc = cf_map_next(NULL, it)) == 0)
        got++;
    cf_map_free(it);
    double s = bench_since_s(t0);
    if (rc != CF_EOF)
        BENCH_FAIL("cf_map_next", cf_err_name(rc));
    if (got != n)
        BENCH_FAIL("cf_map_next", "wrong number of results");
    pool_free(pool);
    free(inputs);
    bench_report("map", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

/* Creates an iterator over fs, takes every future from it, frees it; returns the seconds. */
static double iterate_as_completed(cf_future **fs, size_t n)
{
    int64_t t0 = bench_now_ns();
    cf_as_completed *it;
    CF_CHECK(cf_as_completed_new(&it, fs, n, CF_FOREVER));
    size_t got = 0;
    cf_future *f;
    int rc;
    while ((rc = cf_as_completed_next(&f, it)) == 0)
        got++;
    cf_as_completed_free(it);
    double s = bench_since_s(t0);
    if (rc != CF_EOF)
        BENCH_FAIL("cf_as_completed_next", cf_err_name(rc));
    if (got != n)
        BENCH_FAIL("cf_as_completed_next", "wrong number of futures");
    return s;
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
}

/* Three views of as_completed over n futures:
 * - total: submit n tasks (timed apart as submit_s), then iterate at once, while the pool is
 *   still completing them: what a user of "submit all, then as_completed" sees;
 * - done_ns: iterate over n pool futures that are all done already;
 * - pending_ns: single-threaded, over n plain futures: create the iterator while all are
 *   pending (a hook on each), complete them in reverse order, iterate. This is the machinery
 *   alone, without any pool. */
int wl_as_completed(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    cf_executor *pool = pool_new_warm();

    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit(&fs[i], pool, task_empty, NULL));
    double submit_s = bench_since_s(t0);
    double total_s = iterate_as_completed(fs, n);
    unref_all(fs, n);

    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit(&fs[i], pool, task_empty, NULL));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    double done_s = iterate_as_completed(fs, n);
    unref_all(fs, n);
    pool_free(pool);

    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_future_new(&fs[i]));
    t0 = bench_now_ns();
    cf_as_completed *it;
    CF_CHECK(cf_as_completed_new(&it, fs, n, CF_FOREVER));
    for (size_t i = n; i-- > 0;)
        CF_CHECK(cf_future_set_result(fs[i], NULL, NULL));
    cf_future *f;
    size_t got = 0;
    int rc;
    while ((rc = cf_as_completed_next(&f, it)) == 0)
        got++;
    cf_as_completed_free(it);
    double pending_s = bench_since_s(t0);
    if (rc != CF_EOF || got != n)
        BENCH_FAIL("cf_as_completed_next (pending)", cf_err_name(rc));
    unref_all(fs, n);
    free(fs);

    double dn = (double)n;
    bench_report("as_completed", dn, total_s, total_s * 1e9 / dn,
                 " submit_s=%.6f done_ns=%.1f pending_ns=%.1f", submit_s, done_s * 1e9 / dn,
                 pending_s * 1e9 / dn);
    return 0;
}

int wl_cpu(char **args)
{
    bench_cpu c;
    bench_cpu_prepare(&c, args);
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    burst(pool, c.n, task_cpu, c.slots, sizeof(*c.slots));
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_cpu_finish(&c, s, CF_BENCH_WORKERS);
    return 0;
}

static void submit_burst(void *pool, size_t share, pthread_barrier_t *start)
{
    pthread_barrier_wait(start);
    burst(pool, share, task_empty, NULL, 0);
}

int wl_submitters(char **args)
{
    cf_executor *pool = pool_new_warm();
    bench_submitters(args, submit_burst, NULL, pool);
    pool_free(pool);
    return 0;
}

int wl_idle(char **args)
{
    double secs = bench_arg_seconds(args[0], "S");
    cf_executor *pool = pool_new_warm();
    double cpu0 = bench_cpu_s();
    int64_t t0 = bench_now_ns();
    bench_sleep(secs);
    double s = bench_since_s(t0);
    double cpu_ms = (bench_cpu_s() - cpu0) * 1e3;
    pool_free(pool);
    bench_report("idle", secs, s, 0.0, " cpu_ms=%.3f", cpu_ms);
    return 0;
}

/* Holds both workers at a gate so that the n tasks submitted next stay queued, and measures
 * the resident memory they add. The array holding the future pointers is allocated and touched
 * beforehand: it is the caller's memory, not the library's. */
int wl_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    bench_gate gate;
    bench_gate_init(&gate);
    cf_future *blockers[CF_BENCH_WORKERS];
    for (int i = 0; i < CF_BENCH_WORKERS; i++)
        CF_CHECK(cf_executor_submit(&blockers[i], pool, task_gate, &gate));
    bench_gate_wait_arrived(&gate, CF_BENCH_WORKERS);
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    memset(fs, 0, n * sizeof(*fs));

    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit(&fs[i], pool, task_empty, NULL));
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();

    bench_gate_open(&gate);
    CF_CHECK(cf_wait(NULL, NULL, blockers, CF_BENCH_WORKERS, CF_ALL_COMPLETED, CF_FOREVER));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    unref_all(blockers, CF_BENCH_WORKERS);
    unref_all(fs, n);
    free(fs);
    pool_free(pool);
    bench_gate_destroy(&gate);
    bench_report("memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_future=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}
