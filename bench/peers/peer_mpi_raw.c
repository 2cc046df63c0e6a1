/* Peer: raw MPI, the floor an MPI executor adds its costs to. The same workloads as
 * cf-bench-mpi, with the same job (3 ranks; it starts itself under mpirun), done with plain
 * MPI_Send/MPI_Recv of the bytes alone: no futures, no task functions, no framing.
 *   mpi-burst N     rank 0 sends N 16-byte messages to ranks 1 and 2 in turn, at most 16 in
 *                   flight per rank (the executor's default window), each answered with 16 bytes;
 *   mpi-pingpong N  16 bytes to rank 1 and back, N times;
 *   mpi-bytes SIZE  SIZE bytes to rank 1 and SIZE bytes back, into buffers already touched.
 * Rank 0 prints one line in cf-bench's format, with "raw-mpi" first. */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "mpi_launch.h"

enum { SMALL = 16, WINDOW = 16, TAG_WORK = 1, TAG_STOP = 2, WARM = 200 };

static int rank, size;

/* Ranks other than 0 answer every message with `reply` bytes until told to stop. */
static void answer_until_stop(size_t cap)
{
    unsigned char *buf = bench_xmalloc(cap ? cap : 1);
    for (;;) {
        MPI_Status st;
        MPI_Probe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
        int count;
        MPI_Get_count(&st, MPI_BYTE, &count);
        MPI_Recv(buf, count, MPI_BYTE, 0, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (st.MPI_TAG == TAG_STOP)
            break;
        MPI_Send(buf, count, MPI_BYTE, 0, TAG_WORK, MPI_COMM_WORLD);
    }
    free(buf);
}

static void stop_others(void)
{
    for (int r = 1; r < size; r++)
        MPI_Send(NULL, 0, MPI_BYTE, r, TAG_STOP, MPI_COMM_WORLD);
}

static void burst(size_t n)
{
    unsigned char msg[SMALL] = {0}, in[SMALL];
    int workers = size - 1;
    int outstanding[64] = {0};
    size_t sent = 0, received = 0;
    while (received < n) {
        while (sent < n) {
            int to = 1 + (int)(sent % (size_t)workers);
            if (outstanding[to] >= WINDOW)
                break;
            MPI_Send(msg, SMALL, MPI_BYTE, to, TAG_WORK, MPI_COMM_WORLD);
            outstanding[to]++;
            sent++;
        }
        MPI_Status st;
        MPI_Recv(in, SMALL, MPI_BYTE, MPI_ANY_SOURCE, TAG_WORK, MPI_COMM_WORLD, &st);
        outstanding[st.MPI_SOURCE]--;
        received++;
    }
}

static int wl_burst(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    burst(WARM);
    int64_t t0 = bench_now_ns();
    burst(n);
    double s = bench_since_s(t0);
    bench_report("mpi-burst", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static void pingpong(size_t n)
{
    unsigned char msg[SMALL] = {0};
    for (size_t i = 0; i < n; i++) {
        MPI_Send(msg, SMALL, MPI_BYTE, 1, TAG_WORK, MPI_COMM_WORLD);
        MPI_Recv(msg, SMALL, MPI_BYTE, 1, TAG_WORK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
}

static int wl_pingpong(char **args)
{
    size_t n = bench_arg_count(args[0], "N");
    pingpong(WARM);
    int64_t t0 = bench_now_ns();
    pingpong(n);
    double s = bench_since_s(t0);
    bench_report("mpi-pingpong", (double)n, s, s * 1e9 / (double)n, NULL);
    return 0;
}

static int wl_bytes(char **args)
{
    size_t len = bench_arg_count(args[0], "SIZE");
    size_t rounds = ((size_t)256 << 20) / len;
    rounds = rounds < 4 ? 4 : rounds > 2000 ? 2000 : rounds;
    unsigned char *out = bench_xmalloc(len), *back = bench_xmalloc(len);
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)i;
    memset(back, 0, len);
    double s = 0;
    for (size_t r = 0; r <= rounds; r++) { /* round 0 warms the large-message path */
        int64_t t0 = bench_now_ns();
        MPI_Send(out, (int)len, MPI_BYTE, 1, TAG_WORK, MPI_COMM_WORLD);
        MPI_Recv(back, (int)len, MPI_BYTE, 1, TAG_WORK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (r > 0)
            s += bench_since_s(t0);
    }
    if (memcmp(out, back, len) != 0)
        BENCH_FAIL("MPI_Recv", "the echo differs from what was sent");
    free(out);
    free(back);
    double mib_s = 2.0 * (double)len * (double)rounds / s / (double)(1 << 20);
    bench_report("mpi-bytes", (double)rounds, s, s * 1e9 / (double)rounds, " bytes=%zu mib_s=%.1f",
                 len, mib_s);
    return 0;
}

static const bench_workload workloads[] = {
    {"mpi-burst", "N", 1, wl_burst, "N 16-byte messages to 2 ranks, 16 in flight each, answered"},
    {"mpi-pingpong", "N", 1, wl_pingpong, "16 bytes to rank 1 and back, N times"},
    {"mpi-bytes", "SIZE", 1, wl_bytes, "SIZE bytes to rank 1 and back"},
};

int main(int argc, char **argv)
{
    bench_mpi_launch(argc, argv);
    size_t nw = sizeof(workloads) / sizeof(workloads[0]);
    if (argc < 2 || strcmp(argv[1], "list") == 0 || strcmp(argv[1], "help") == 0)
        return bench_main("raw-mpi", workloads, nw, argc, argv);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2 || size > 64)
        BENCH_FAIL("MPI_Comm_size", "needs 2 to 64 ranks");
    int rc = 0;
    if (rank == 0) {
        rc = bench_main("raw-mpi", workloads, nw, argc, argv);
        stop_others();
    } else {
        size_t cap = argc > 2 && strcmp(argv[1], "mpi-bytes") == 0
                         ? bench_arg_count(argv[2], "SIZE")
                         : SMALL;
        answer_until_stop(cap);
    }
    MPI_Finalize();
    return rc;
}
