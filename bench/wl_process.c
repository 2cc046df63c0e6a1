/* Process-pool workloads of cf-bench (bench/README.md has the contract; bench/probe_process.c
 * measures the same things with its own medians).
 *
 * The task functions are static functions of the cf-bench executable. The pool names them by
 * module and offset, and its workers are forks of a fresh image of cf-bench that the library's
 * constructor takes over before main() runs (docs/process_pool.md). So nothing cf-bench does in
 * main() reaches a worker, and the tasks need no state from it.
 *
 * Every pool has CF_BENCH_WORKERS worker processes, all started and warm before the clock
 * starts; creating and freeing the pool are never timed. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf_bench.h"

/* Up to this many tasks sit in one worker's dispatch window: a warm-up round of this many
 * tasks per worker leaves more work than one worker can take, so the pool starts them all. */
#define WARM_TASKS_PER_WORKER 8
#define WARM_MAX_ROUNDS       100

static int task_empty(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
    return 0;
}

static int task_pid(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    pid_t *pid = malloc(sizeof(*pid));
    if (!pid)
        return CF_ENOMEM;
    *pid = getpid();
    *result = pid;
    *result_len = sizeof(*pid);
    return 0;
}

static int task_echo(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return CF_ENOMEM;
    memcpy(copy, arg, len);
    *result = copy;
    *result_len = len;
    return 0;
}

/* Runs one round of warm-up tasks and adds the worker pids it had not seen to `pids`. */
static size_t warm_round(cf_executor *pool, pid_t *pids, size_t seen)
{
    enum { N = CF_BENCH_WORKERS * WARM_TASKS_PER_WORKER };
    cf_future *fs[N];
    for (size_t i = 0; i < N; i++)
        CF_CHECK(cf_executor_submit_bytes(&fs[i], pool, task_pid, NULL, 0));
    CF_CHECK(cf_wait(NULL, NULL, fs, N, CF_ALL_COMPLETED, CF_FOREVER));
    for (size_t i = 0; i < N; i++) {
        const void *data;
        size_t len;
        CF_CHECK(cf_future_result_bytes(&data, &len, fs[i], 0));
        if (len != sizeof(pid_t))
            BENCH_FAIL("task_pid", "wrong result length");
        pid_t pid;
        memcpy(&pid, data, sizeof(pid));
        size_t k = 0;
        while (k < seen && pids[k] != pid)
            k++;
        if (k == seen && seen < CF_BENCH_WORKERS)
            pids[seen++] = pid;
        cf_future_unref(fs[i]);
    }
    return seen;
}

/* A pool whose every worker process has run a task: workers start on demand, so the warm-up
 * repeats until each has answered (bounded, in case the pool keeps fewer workers busy). */
static cf_executor *pool_new_warm(void)
{
    cf_process_pool_options opt = {.max_workers = CF_BENCH_WORKERS};
    cf_executor *pool;
    CF_CHECK(cf_process_pool_new(&pool, &opt));
    pid_t pids[CF_BENCH_WORKERS];
    size_t seen = 0;
    for (int r = 0; r < WARM_MAX_ROUNDS && seen < CF_BENCH_WORKERS; r++)
        seen = warm_round(pool, pids, seen);
    return pool;
}

static void pool_free(cf_executor *pool)
{
    CF_CHECK(cf_executor_free(pool));
}

int wl_process_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit_bytes(&fs[i], pool, task_empty, NULL, 0));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    double s = bench_since_s(t0);
    free(fs);
    pool_free(pool);
    bench_report("process-burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

int wl_process_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        cf_future *f;
        CF_CHECK(cf_executor_submit_bytes(&f, pool, task_empty, NULL, 0));
        CF_CHECK(cf_future_result(NULL, f, CF_FOREVER));
        cf_future_unref(f);
    }
    double s = bench_since_s(t0);
    pool_free(pool);
    bench_report("process-pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

/* Round trips of process-bytes SIZE: 64 MiB of payload each way, clamped to [16, 2000], so that
 * small sizes are not dominated by the clock and large ones stay short. */
static size_t bytes_rounds(size_t size)
{
    size_t r = ((size_t)64 << 20) / size;
    return r < 16 ? 16 : r > 2000 ? 2000 : r;
}

int wl_process_bytes(char **args)
{
    size_t size = bench_arg_count(args[0], "SIZE");
    size_t rounds = bytes_rounds(size);
    unsigned char *payload = bench_xmalloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)i;
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t r = 0; r < rounds; r++) {
        cf_future *f;
        CF_CHECK(cf_executor_submit_bytes(&f, pool, task_echo, payload, size));
        const void *data;
        size_t len;
        CF_CHECK(cf_future_result_bytes(&data, &len, f, CF_FOREVER));
        if (len != size || memcmp(data, payload, size) != 0)
            BENCH_FAIL("task_echo", "the echo differs from the argument");
        cf_future_unref(f);
    }
    double s = bench_since_s(t0);
    pool_free(pool);
    free(payload);
    double mib_s = 2.0 * (double)size * (double)rounds / s / (double)(1 << 20);
    bench_report("process-bytes", (double)rounds, s, s * 1e9 / (double)rounds,
                 " bytes=%zu mib_s=%.1f", size, mib_s);
    return 0;
}

/* The echo in shared blocks (bytes.h): the worker copies its argument, which it reads in the
 * caller's pages, into a block it returns, which the caller reads in the worker's pages. */
static int task_echo_shared(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *copy;
    int rc = cf_bytes_alloc(&copy, len);
    if (rc)
        return rc;
    memcpy(copy, arg, len);
    *result = copy;
    *result_len = len;
    return 0;
}

/* Reads one byte per page of the result (every page is touched, as a reader would) and checks
 * them against the argument. */
static void check_echo(const unsigned char *got, const unsigned char *want, size_t size)
{
    for (size_t i = 0; i < size; i += 4096)
        if (got[i] != want[i])
            BENCH_FAIL("task_echo_shared", "the echo differs from the argument");
    if (size && got[size - 1] != want[size - 1])
        BENCH_FAIL("task_echo_shared", "the echo differs from the argument");
}

/* One memcpy of `size` bytes into fresh memory (malloc, copy, check as the echo is checked,
 * free): the reference the shared round trip is compared with, in ns per round. */
static double memcpy_ns(const unsigned char *src, size_t size, size_t rounds)
{
    int64_t t0 = bench_now_ns();
    for (size_t r = 0; r < rounds; r++) {
        unsigned char *dst = bench_xmalloc(size);
        memcpy(dst, src, size);
        check_echo(dst, src, size);
        free(dst);
    }
    return (double)(bench_now_ns() - t0) / (double)rounds;
}

int wl_process_bytes_shared(char **args)
{
    size_t size = bench_arg_count(args[0], "SIZE");
    size_t rounds = bytes_rounds(size);
    unsigned char *payload;
    CF_CHECK(cf_bytes_alloc((void **)&payload, size));
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)(i * 7 + 3);
    CF_CHECK(cf_bytes_freeze(payload));
    cf_executor *pool = pool_new_warm();
    int64_t t0 = bench_now_ns();
    for (size_t r = 0; r < rounds; r++) {
        cf_future *f;
        CF_CHECK(cf_executor_submit_bytes(&f, pool, task_echo_shared, payload, size));
        const void *data;
        size_t len;
        CF_CHECK(cf_future_result_bytes(&data, &len, f, CF_FOREVER));
        if (len != size)
            BENCH_FAIL("task_echo_shared", "the echo has the wrong length");
        check_echo(data, payload, size);
        cf_future_unref(f);
    }
    double s = bench_since_s(t0);
    double trip = s * 1e9 / (double)rounds;
    pool_free(pool);
    double copy = memcpy_ns(payload, size, rounds);
    CF_CHECK(cf_bytes_free(payload));
    double mib_s = 2.0 * (double)size * (double)rounds / s / (double)(1 << 20);
    bench_report("process-bytes-shared", (double)rounds, s, trip,
                 " bytes=%zu mib_s=%.1f memcpy_ns=%.0f vs_memcpy=%.2f", size, mib_s, copy,
                 trip / copy);
    return 0;
}
