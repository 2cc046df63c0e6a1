/* Peer: libuv's thread pool (uv_queue_work) with 2 threads.
 *
 * libuv has no futures: a task is a caller-allocated uv_work_t, and its completion is the
 * after_work callback, which runs on the loop thread. "Wait for all" is running the loop until
 * it has no active requests left, which is exactly when every after_work callback has run. The
 * requests are allocated inside the timing, as a libuv user has to allocate them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_util.h"

#define UV_CHECK(call) BENCH_CHECK_ZERO(call, uv_strerror)

/* Each loop counts its completions in loop->data. */
static void after_count(uv_work_t *req, int status)
{
    if (status != 0)
        BENCH_FAIL("after_work", uv_strerror(status));
    (*(size_t *)req->loop->data)++;
}

static void work_empty(uv_work_t *req)
{
    (void)req;
}

static void work_gate(uv_work_t *req)
{
    bench_gate_pass(req->data);
}

static void work_cpu(uv_work_t *req)
{
    bench_cpu_slot_run(req->data);
}

typedef struct bloop {
    uv_loop_t loop;
    size_t done;
} bloop;

static void bloop_init(bloop *l)
{
    UV_CHECK(uv_loop_init(&l->loop));
    l->done = 0;
    l->loop.data = &l->done;
}

static void bloop_close(bloop *l)
{
    UV_CHECK(uv_loop_close(&l->loop));
}

/* Runs the loop until every queued request has completed; checks the count. */
static void bloop_drain(bloop *l, size_t expect)
{
    int rc = uv_run(&l->loop, UV_RUN_DEFAULT);
    if (rc < 0)
        BENCH_FAIL("uv_run", uv_strerror(rc));
    if (l->done != expect)
        BENCH_FAIL("uv_run", "not every after_work callback ran");
}

/* Sets the pool size before libuv reads it, then runs one request so the threads exist. */
static void pool_warm(bloop *l)
{
    if (setenv("UV_THREADPOOL_SIZE", "2", 1) != 0)
        BENCH_FAIL("setenv", NULL);
    uv_work_t req;
    UV_CHECK(uv_queue_work(&l->loop, &req, work_empty, after_count));
    bloop_drain(l, l->done + 1);
}

static void burst(bloop *l, size_t n)
{
    size_t base = l->done;
    uv_work_t *reqs = bench_xmalloc(n * sizeof(*reqs));
    for (size_t i = 0; i < n; i++)
        UV_CHECK(uv_queue_work(&l->loop, &reqs[i], work_empty, after_count));
    bloop_drain(l, base + n);
    free(reqs);
}

static int wl_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    bloop l;
    bloop_init(&l);
    pool_warm(&l);
    int64_t t0 = bench_now_ns();
    burst(&l, n);
    double s = bench_since_s(t0);
    bloop_close(&l);
    bench_report("burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    bloop l;
    bloop_init(&l);
    pool_warm(&l);
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        uv_work_t req;
        UV_CHECK(uv_queue_work(&l.loop, &req, work_empty, after_count));
        bloop_drain(&l, l.done + 1);
    }
    double s = bench_since_s(t0);
    bloop_close(&l);
    bench_report("pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_cpu(char **args)
{
    bench_cpu c;
    bench_cpu_prepare(&c, args);
    uv_work_t *reqs = bench_xcalloc(c.n, sizeof(*reqs));
    bloop l;
    bloop_init(&l);
    pool_warm(&l);
    size_t base = l.done;
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c.n; i++) {
        reqs[i].data = &c.slots[i];
        UV_CHECK(uv_queue_work(&l.loop, &reqs[i], work_cpu, after_count));
    }
    bloop_drain(&l, base + c.n);
    double s = bench_since_s(t0);
    bloop_close(&l);
    free(reqs);
    bench_cpu_finish(&c, s, 2);
    return 0;
}

/* Each submitter has its own loop (libuv loops are single-threaded), set up before the start;
 * all share the one process-wide pool. */
static void submit_burst(void *ctx, size_t share, pthread_barrier_t *start)
{
    (void)ctx;
    bloop l;
    bloop_init(&l);
    pthread_barrier_wait(start);
    burst(&l, share);
    bloop_close(&l);
}

static int wl_submitters(char **args)
{
    bloop main_loop;
    bloop_init(&main_loop);
    pool_warm(&main_loop);
    bench_submitters(args, submit_burst, NULL, NULL);
    bloop_close(&main_loop);
    return 0;
}

static int wl_idle(char **args)
{
    double secs = bench_arg_seconds(args[0], "S");
    bloop l;
    bloop_init(&l);
    pool_warm(&l);
    double cpu0 = bench_cpu_s();
    int64_t t0 = bench_now_ns();
    bench_sleep(secs);
    double s = bench_since_s(t0);
    double cpu_ms = (bench_cpu_s() - cpu0) * 1e3;
    bloop_close(&l);
    bench_report("idle", secs, s, 0.0, " cpu_ms=%.3f", cpu_ms);
    return 0;
}

/* The per-task memory of libuv is the caller's uv_work_t (the queue is intrusive), so the
 * requests are allocated inside the measurement. */
static int wl_memory(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    bloop l;
    bloop_init(&l);
    pool_warm(&l);
    size_t base = l.done;
    bench_gate gate;
    bench_gate_init(&gate);
    uv_work_t blockers[2];
    for (int i = 0; i < 2; i++) {
        blockers[i].data = &gate;
        UV_CHECK(uv_queue_work(&l.loop, &blockers[i], work_gate, after_count));
    }
    bench_gate_wait_arrived(&gate, 2);

    long rss0 = bench_rss_bytes();
    int64_t t0 = bench_now_ns();
    uv_work_t *reqs = bench_xmalloc(n * sizeof(*reqs));
    for (size_t i = 0; i < n; i++)
        UV_CHECK(uv_queue_work(&l.loop, &reqs[i], work_empty, after_count));
    double s = bench_since_s(t0);
    long rss1 = bench_rss_bytes();

    bench_gate_open(&gate);
    bloop_drain(&l, base + 2 + n);
    free(reqs);
    bloop_close(&l);
    bench_gate_destroy(&gate);
    bench_report("memory", (double)n, s, s * 1e9 / (double)n, " bytes_per_future=%.1f",
                 (double)(rss1 - rss0) / (double)n);
    return 0;
}

static const bench_workload workloads[] = {
    {"burst", "N", 1, wl_burst, "queue N empty requests, run the loop until all completed"},
    {"pingpong", "N", 1, wl_pingpong, "queue one request and run the loop until done, N times"},
    {"cpu", "N ITERS", 2, wl_cpu, "N requests of ITERS xorshift rounds: sequential vs pool"},
    {"submitters", "N T", 2, wl_submitters, "T threads, each with its own loop, queue N/T"},
    {"idle", "S", 1, wl_idle, "process CPU time of the idle pool over S seconds"},
    {"memory", "N", 1, wl_memory, "resident bytes per queued request, N queued"},
};

int main(int argc, char **argv)
{
    return bench_main("libuv", workloads, sizeof(workloads) / sizeof(workloads[0]), argc, argv);
}
