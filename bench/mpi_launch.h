/* Starting an MPI benchmark from a plain command line, as bench/compare runs every program:
 * a program that finds itself outside an MPI job runs itself again under
 * `mpirun -n CF_BENCH_MPI_RANKS --oversubscribe`, and rank 0 prints the result line. */
#ifndef CF_BENCH_MPI_LAUNCH_H
#define CF_BENCH_MPI_LAUNCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One client and two workers (or two answering ranks), like the pools' 2 workers. */
#define CF_BENCH_MPI_RANKS "3"

/* If this process is not an MPI rank (and is not just asked for its list), replaces it with
 * mpirun running the same command line; returns otherwise. As root, Open MPI must be told it may
 * run; the ranks may outnumber the cores. */
static inline void bench_mpi_launch(int argc, char **argv)
{
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || argc < 2 ||
        strcmp(argv[1], "list") == 0 || strcmp(argv[1], "help") == 0)
        return;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        exit(1);
    }
    self[n] = '\0';
    char **args = calloc((size_t)argc + 6, sizeof(char *));
    int k = 0;
    args[k++] = "mpirun";
    args[k++] = "-n";
    args[k++] = CF_BENCH_MPI_RANKS;
    args[k++] = "--oversubscribe";
    args[k++] = self;
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    execvp("mpirun", args);
    perror("mpirun");
    exit(1);
}

#endif
