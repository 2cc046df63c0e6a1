/* mpi_demo: the same CPU-bound job (counting primes in ranges) on a thread pool, a process pool
 * and MPI worker ranks, with the wall time of each. The job is written once, as a bytes task and
 * a map over cf_executor, so only the constructors differ.
 *
 * Run it under mpirun: rank 0 runs the job three ways, the other ranks serve the MPI executor
 *     mpirun -n 3 --oversubscribe build/examples/mpi_demo [LIMIT]
 * (as root, Open MPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
 * Started alone, it spawns its two MPI workers with MPI_Comm_spawn instead (docs/mpi.md). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"
#include "cfutures/mpi.h"

enum { CHUNKS = 32 };

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

/* The task: a range in, a count out, both as bytes, so it runs in any executor. */
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
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the job on `ex` and prints its time; returns the count (or UINT64_MAX on failure). */
static uint64_t run_on(const char *label, cf_executor *ex, uint64_t limit)
{
    range ranges[CHUNKS];
    cf_bytes args[CHUNKS];
    for (int i = 0; i < CHUNKS; i++) {
        ranges[i] = (range){limit * (uint64_t)i / CHUNKS, limit * (uint64_t)(i + 1) / CHUNKS};
        args[i] = (cf_bytes){&ranges[i], sizeof(range)};
    }
    double t = now();
    cf_map *it;
    int rc = cf_executor_map_bytes(&it, ex, primes_task, args, CHUNKS, CF_FOREVER, 1);
    if (rc) {
        fprintf(stderr, "%s: map: %s\n", label, cf_strerror(rc));
        return UINT64_MAX;
    }
    uint64_t total = 0;
    while ((rc = cf_map_next(NULL, it)) != CF_EOF) {
        const void *data;
        if (rc || cf_future_result_bytes(&data, NULL, cf_map_current(it), 0) != 0) {
            fprintf(stderr, "%s: a chunk failed: %s\n", label, cf_strerror(rc));
            total = UINT64_MAX;
            break;
        }
        uint64_t n;
        memcpy(&n, data, sizeof(n));
        total += n;
    }
    cf_map_free(it);
    printf("%-26s %llu primes in %.3f s\n", label, (unsigned long long)total, now() - t);
    return total;
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    uint64_t limit = argc > 1 ? strtoull(argv[1], NULL, 10) : 2000000;
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);

    /* Under mpirun every rank makes the same call: rank 0 gets the executor, the others serve
     * in it. Started alone, the program spawns two workers; in them, the same spawn call serves
     * the parent. */
    cf_executor *mpi = NULL;
    int rc = size > 1 && parent == MPI_COMM_NULL
                 ? cf_mpi_executor_new(&mpi, MPI_COMM_WORLD, NULL)
                 : cf_mpi_executor_spawn(&mpi, 2, MPI_INFO_NULL, NULL);
    if (rc) {
        fprintf(stderr, "MPI executor: %s\n", cf_strerror(rc));
        MPI_Finalize();
        return 1;
    }
    if (!mpi) { /* a worker rank: its client has freed the executor */
        MPI_Finalize();
        return 0;
    }

    double t = now();
    uint64_t seq = count_primes(0, limit);
    printf("%-26s %llu primes below %llu in %.3f s\n", "sequential:", (unsigned long long)seq,
           (unsigned long long)limit, now() - t);
    cf_executor *threads = NULL, *procs = NULL;
    cf_thread_pool_options topt = {.max_workers = 2};
    cf_process_pool_options popt = {.max_workers = 2};
    if (cf_thread_pool_new(&threads, &topt) != 0 || cf_process_pool_new(&procs, &popt) != 0) {
        fprintf(stderr, "cannot create the pools\n");
        return 1;
    }
    char label[64];
    snprintf(label, sizeof(label), "MPI (%d worker ranks):", cf_mpi_executor_workers(mpi));
    uint64_t a = run_on("thread pool (2 threads):", threads, limit);
    uint64_t b = run_on("process pool (2 workers):", procs, limit);
    uint64_t c = run_on(label, mpi, limit);
    cf_executor_free(threads);
    cf_executor_free(procs);
    cf_executor_free(mpi); /* the worker ranks return from their call now */
    MPI_Finalize();
    return a == seq && b == seq && c == seq ? 0 : 1;
}
