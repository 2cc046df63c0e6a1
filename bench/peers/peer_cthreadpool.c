/* Peer: C-Thread-Pool as packaged by Debian (cthreadpool-dev), with 2 threads.
 *
 * It has no futures and no per-task wait: the only completion signal is thpool_wait(), which
 * returns when the queue is empty and no thread is working. So burst is "add N, then
 * thpool_wait", and pingpong is "add one, then thpool_wait", N times. thpool_wait wakes a single
 * waiter, so only the main thread ever calls it. */
#include <stdlib.h>
#include <thpool.h>

#include "bench_util.h"

static void job_empty(void *arg)
{
    (void)arg;
}

static void job_gate(void *arg)
{
    bench_gate_pass(arg);
}

static void job_cpu(void *arg)
{
    bench_cpu_slot_run(arg);
}

static void add(threadpool pool, void (*fn)(void *), void *arg)
{
    if (thpool_add_work(pool, fn, arg) != 0)
        BENCH_FAIL("thpool_add_work", "returned -1");
}

static threadpool pool_new_warm(void)
{
    threadpool pool = thpool_init(2);
    if (!pool)
        BENCH_FAIL("thpool_init", "returned NULL");
    add(pool, job_empty, NULL);
    thpool_wait(pool);
    return pool;
}

static int wl_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    threadpool pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        add(pool, job_empty, NULL);
    thpool_wait(pool);
    double s = bench_since_s(t0);
    thpool_destroy(pool);
    bench_report("burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    threadpool pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        add(pool, job_empty, NULL);
        thpool_wait(pool);
    }
    double s = bench_since_s(t0);
    thpool_destroy(pool);
    bench_report("pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_cpu(char **args)
{
    bench_cpu c;
    bench_cpu_prepare(&c, args);
    threadpool pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c.n; i++)
        add(pool, job_cpu, &c.slots[i]);
    thpool_wait(pool);
    double s = bench_since_s(t0);
    thpool_destroy(pool);
    bench_cpu_finish(&c, s, 2);
    return 0;
}

/* The submitters only add; the main thread waits once they are all done adding. */
static void submit_adds(void *pool, size_t share, pthread_barrier_t *start)
{
    pthread_barrier_wait(start);
    for (size_t i = 0; i < share; i++)
        add(pool, job_empty, NULL);
}

static void wait_all(void *pool)
{
    thpool_wait(pool);
}

static int wl_submitters(char **args)
{
    threadpool pool = pool_new_warm();
    bench_submitters(args, submit_adds, wait_all, pool);
    thpool_destroy(pool);
    return 0;
}

static int wl_idle(char **args)
{
    double secs = bench_arg_seconds(args[0], "S");
    threadpool pool = pool_new_warm();
    double cpu0 = bench_cpu_s();
    int64_t t0 = bench_now_ns();
    bench_sleep(secs);
    double s = bench_since_s(t0);
    double cpu_ms = (bench_cpu_s() - cpu0) * 1e3;
    thpool_destroy(pool);
    bench_report("idle", secs, s, 0.0, " cpu_ms=%.3f", cpu_ms);
    return 0;
}

/* The per-task memory is the job record the library mallocs in thpool_add_work. */
static int wl_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    threadpool pool = pool_new_warm();
    bench_gate gate;
    bench_gate_init(&gate);
    add(pool, job_gate, &gate);
    add(pool, job_gate, &gate);
    bench_gate_wait_arrived(&gate, 2);

    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        add(pool, job_empty, NULL);
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();

    bench_gate_open(&gate);
    thpool_wait(pool);
    thpool_destroy(pool);
    bench_gate_destroy(&gate);
    bench_report("memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_future=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}

static const bench_workload workloads[] = {
    {"burst", "N", 1, wl_burst, "add N empty jobs, then thpool_wait"},
    {"pingpong", "N", 1, wl_pingpong, "add one empty job, then thpool_wait, N times"},
    {"cpu", "N ITERS", 2, wl_cpu, "N jobs of ITERS xorshift rounds: sequential vs pool"},
    {"submitters", "N T", 2, wl_submitters, "T threads add N/T jobs each, then thpool_wait"},
    {"idle", "S", 1, wl_idle, "process CPU time of the idle pool over S seconds"},
    {"memory", "N", 1, wl_memory, "resident bytes per queued job, N queued"},
};

int main(int argc, char **argv)
{
    return bench_main("cthreadpool", workloads, sizeof(workloads) / sizeof(workloads[0]), argc,
                      argv);
}
