/* cf-bench-mpi: the MPI executor's workloads (bench/README.md). Run as `cf-bench-mpi WORKLOAD
 * ARGS` (it starts itself under mpirun with 3 ranks: rank 0 is the client, ranks 1 and 2 serve,
 * the executor's default window), or through cf-bench, which hands its mpi-* workloads here.
 * Rank 0 prints one line in cf-bench's format. The executor is created and warmed before the
 * clock starts; creating and freeing it are never timed. bench/peers/peer_mpi_raw.c runs the
 * same workloads on raw MPI_Send/MPI_Recv, bench/peers/peer_mpi4py.py on mpi4py.futures. */
#include <stdlib.h>
#include <string.h>

#include "cf_bench.h"
#include "cfutures/mpi.h"
#include "mpi_launch.h"

enum { WARM_TASKS = 64 };

static cf_executor *ex;

static int task_empty(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
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

/* Every worker has answered a burst: their windows, buffers and modules are warm. */
static void warm(void)
{
    cf_future *fs[WARM_TASKS];
    for (int i = 0; i < WARM_TASKS; i++)
        CF_CHECK(cf_executor_submit_bytes(&fs[i], ex, task_empty, NULL, 0));
    CF_CHECK(cf_wait(NULL, NULL, fs, WARM_TASKS, CF_ALL_COMPLETED, CF_FOREVER));
    for (int i = 0; i < WARM_TASKS; i++)
        cf_future_unref(fs[i]);
}

static int wl_mpi_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    cf_future **fs = bench_xmalloc(n * sizeof(*fs));
    warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++)
        CF_CHECK(cf_executor_submit_bytes(&fs[i], ex, task_empty, NULL, 0));
    CF_CHECK(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER));
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    double s = bench_since_s(t0);
    free(fs);
    bench_report("mpi-burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_mpi_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    warm();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        cf_future *f;
        CF_CHECK(cf_executor_submit_bytes(&f, ex, task_empty, NULL, 0));
        CF_CHECK(cf_future_result(NULL, f, CF_FOREVER));
        cf_future_unref(f);
    }
    double s = bench_since_s(t0);
    bench_report("mpi-pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

/* Round trips of mpi-bytes SIZE: 256 MiB of payload each way, clamped to [4, 2000]. */
static size_t bytes_rounds(size_t size)
{
    size_t r = ((size_t)256 << 20) / size;
    return r < 4 ? 4 : r > 2000 ? 2000 : r;
}

static int wl_mpi_bytes(char **args)
{
    size_t size = bench_arg_count(args[0], "SIZE");
    size_t rounds = bytes_rounds(size);
    unsigned char *payload = bench_xmalloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)i;
    warm();
    double s = 0;
    for (size_t r = 0; r <= rounds; r++) { /* round 0 warms the large-message path */
        int64_t t0 = bench_now_ns();
        cf_future *f;
        CF_CHECK(cf_executor_submit_bytes(&f, ex, task_echo, payload, size));
        const void *data;
        size_t len;
        CF_CHECK(cf_future_result_bytes(&data, &len, f, CF_FOREVER));
        if (r > 0)
            s += bench_since_s(t0); /* the check below is not timed */
        if (len != size || memcmp(data, payload, size) != 0)
            BENCH_FAIL("task_echo", "the echo differs from the argument");
        cf_future_unref(f);
    }
    free(payload);
    double mib_s = 2.0 * (double)size * (double)rounds / s / (double)(1 << 20);
    bench_report("mpi-bytes", (double)rounds, s, s * 1e9 / (double)rounds, " bytes=%zu mib_s=%.1f",
                 size, mib_s);
    return 0;
}

static const bench_workload workloads[] = {
    {"mpi-burst", "N", 1, wl_mpi_burst, "submit N empty tasks to 2 worker ranks, wait for all"},
    {"mpi-pingpong", "N", 1, wl_mpi_pingpong, "one empty task to a worker rank, N times"},
    {"mpi-bytes", "SIZE", 1, wl_mpi_bytes, "echo a SIZE-byte argument through a worker rank"},
};

int main(int argc, char **argv)
{
    bench_mpi_launch(argc, argv);
    if (argc < 2 || strcmp(argv[1], "list") == 0 || strcmp(argv[1], "help") == 0)
        return bench_main("cfutures", workloads, sizeof(workloads) / sizeof(workloads[0]), argc,
                          argv);
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    CF_CHECK(cf_mpi_executor_new(&ex, MPI_COMM_WORLD, NULL));
    int rc = 0;
    if (ex) { /* rank 0; the other ranks served until the executor was freed */
        rc =
            bench_main("cfutures", workloads, sizeof(workloads) / sizeof(workloads[0]), argc, argv);
        CF_CHECK(cf_executor_free(ex));
    }
    MPI_Finalize();
    return rc;
}
