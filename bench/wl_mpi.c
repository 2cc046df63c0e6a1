/* MPI-executor workloads of cf-bench: each runs bench/cf_bench_mpi.c (built next to cf-bench
 * when MPI is found), which starts itself under mpirun, so that `cf-bench mpi-burst N` works
 * like every other workload and bench/compare needs nothing special for them. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cf_bench.h"

static int run_mpi_bench(const char *workload, char **args)
{
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
    if (n <= 0)
        BENCH_FAIL("readlink", "cannot find cf-bench's own path");
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    strcpy(slash ? slash + 1 : path, "cf-bench-mpi");
    char *argv[] = {path, (char *)workload, args[0], NULL};
    execv(path, argv);
    BENCH_FAIL("execv", "cannot run cf-bench-mpi (built next to cf-bench when MPI is found)");
}

int wl_mpi_burst(char **args)
{
    return run_mpi_bench("mpi-burst", args);
}

int wl_mpi_pingpong(char **args)
{
    return run_mpi_bench("mpi-pingpong", args);
}

int wl_mpi_bytes(char **args)
{
    return run_mpi_bench("mpi-bytes", args);
}
