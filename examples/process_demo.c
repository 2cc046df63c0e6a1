/* A CPU-bound job (counting primes in ranges) run three ways: sequentially, on a thread pool
 * and on a process pool, with the wall time of each. The process pool's task takes its range
 * as bytes and returns its count as bytes, because it runs in another process. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"

enum { CHUNKS = 16 };
static const uint64_t LIMIT = 1500000;

typedef struct range {
    uint64_t lo, hi;
} range;

static uint64_t count_primes(uint64_t lo, uint64_t hi)
{
    uint64_t n = 0;
    for (uint64_t k = lo < 2 ? 2 : lo; k < hi; k++) {
        bool prime = true;
        for (uint64_t d = 2; d * d <= k; d++) {
            if (k % d == 0) {
                prime = false;
                break;
            }
        }
        n += prime;
    }
    return n;
}

/* The bytes task: argument and result are plain structs copied as bytes. */
static int primes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    if (len != sizeof(range))
        return cf_task_fail(CF_EINVAL, "expected a range, got %zu bytes", len);
    range r;
    memcpy(&r, arg, sizeof(r));
    uint64_t *out = malloc(sizeof(*out));
    if (!out)
        return CF_ENOMEM;
    *out = count_primes(r.lo, r.hi);
    *result = out;
    *result_len = sizeof(*out);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t run_on(cf_executor *ex)
{
    cf_bytes args[CHUNKS];
    range ranges[CHUNKS];
    for (int i = 0; i < CHUNKS; i++) {
        ranges[i] = (range){LIMIT * i / CHUNKS, LIMIT * (i + 1) / CHUNKS};
        args[i] = (cf_bytes){&ranges[i], sizeof(range)};
    }
    cf_map *it;
    int rc = cf_executor_map_bytes(&it, ex, primes_task, args, CHUNKS, CF_FOREVER, 1);
    if (rc) {
        fprintf(stderr, "map: %s\n", cf_strerror(rc));
        exit(1);
    }
    uint64_t total = 0;
    while ((rc = cf_map_next(NULL, it)) != CF_EOF) {
        const void *data;
        if (rc || cf_future_result_bytes(&data, NULL, cf_map_current(it), 0) != 0) {
            fprintf(stderr, "a chunk failed: %s\n", cf_strerror(rc));
            exit(1);
        }
        uint64_t n;
        memcpy(&n, data, sizeof(n));
        total += n;
    }
    cf_map_free(it);
    return total;
}

int main(void)
{
    double t = now();
    uint64_t seq = count_primes(0, LIMIT);
    printf("sequential:   %llu primes below %llu in %.3f s\n", (unsigned long long)seq,
           (unsigned long long)LIMIT, now() - t);

    cf_executor *threads, *procs;
    if (cf_thread_pool_new(&threads, NULL) != 0 || cf_process_pool_new(&procs, NULL) != 0) {
        fprintf(stderr, "cannot create the pools\n");
        return 1;
    }
    t = now();
    uint64_t a = run_on(threads);
    printf("thread pool:  %llu primes in %.3f s\n", (unsigned long long)a, now() - t);
    t = now();
    uint64_t b = run_on(procs);
    printf("process pool: %llu primes in %.3f s (workers started on demand)\n",
           (unsigned long long)b, now() - t);
    cf_executor_free(threads);
    cf_executor_free(procs);
    return a == seq && b == seq ? 0 : 1;
}
