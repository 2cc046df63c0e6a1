/* cf-bench: one cfutures workload per sub-command, one result line per run (see bench_util.h
 * for the format and bench/README.md for what each workload measures).
 *
 * Each family of workloads lives in its own file with functions `int wl_<name>(char **args)`
 * that parse their arguments with bench_arg_*() and print with bench_report(): the thread pool
 * in wl_thread.c, the process pool in wl_process.c, the event loop in wl_loop.c, the MPI
 * executor in wl_mpi.c (which hands over to cf-bench-mpi, bench/cf_bench_mpi.c). A workload is
 * one X(...) line below (it declares the function and adds the table entry); a new file also
 * goes into cf_bench_sources in bench/meson.build.
 *
 * main() does nothing before bench_main(): the process pool's workers are fresh images of this
 * program, taken over by the library's constructor before main() runs (docs/process_pool.md).
 */
#include "cf_bench.h"

/* X(name, usage, nargs, function, help) */
#define CF_BENCH_WORKLOADS(X)                                                                      \
    X("burst", "N", 1, wl_burst, "submit N empty tasks, wait for all, release them")               \
    X("burst-batch", "N", 1, wl_burst_batch,                                                       \
      "submit N empty tasks as one batch, wait for all, release them")                             \
    X("pingpong", "N", 1, wl_pingpong, "submit one empty task and wait for it, N times (hot)")     \
    X("map", "N", 1, wl_map, "cf_executor_map over N empty calls, iterate all results")            \
    X("as_completed", "N", 1, wl_as_completed, "iterate N futures with cf_as_completed")           \
    X("cpu", "N ITERS", 2, wl_cpu, "N tasks of ITERS xorshift rounds: sequential vs pool")         \
    X("submitters", "N T", 2, wl_submitters, "T threads submit N/T tasks each, then wait")         \
    X("idle", "S", 1, wl_idle, "process CPU time of an idle pool over S seconds")                  \
    X("memory", "N", 1, wl_memory, "resident bytes per pending future, N queued")                  \
    X("process-burst", "N", 1, wl_process_burst, "submit N empty tasks to 2 processes, wait")      \
    X("process-pingpong", "N", 1, wl_process_pingpong, "one empty task to a process, N times")     \
    X("process-bytes", "SIZE", 1, wl_process_bytes, "echo a SIZE-byte argument through a process") \
    X("process-bytes-shared", "SIZE", 1, wl_process_bytes_shared,                                  \
      "echo SIZE bytes through a process in shared blocks (bytes.h), next to one memcpy")          \
    X("loop-call-soon", "N", 1, wl_loop_call_soon, "schedule N callbacks, then run them")          \
    X("loop-threadsafe", "N", 1, wl_loop_threadsafe,                                               \
      "another thread posts N callbacks to the loop")                                              \
    X("loop-future-memory", "N", 1, wl_loop_future_memory,                                         \
      "resident bytes per pending loop future")                                                    \
    CF_BENCH_TASK_WORKLOADS(X)                                                                     \
    CF_BENCH_HTTP_WORKLOADS(X)                                                                     \
    CF_BENCH_MPI_WORKLOADS(X)

/* Workloads of the MPI executor (wl_mpi.c runs cf-bench-mpi under mpirun): only where MPI was
 * found. */
#if CF_BENCH_MPI
#define CF_BENCH_MPI_WORKLOADS(X)                                                                  \
    X("mpi-burst", "N", 1, wl_mpi_burst, "submit N empty tasks to 2 MPI worker ranks, wait")       \
    X("mpi-pingpong", "N", 1, wl_mpi_pingpong, "one empty task to an MPI worker rank, N times")    \
    X("mpi-bytes", "SIZE", 1, wl_mpi_bytes, "echo a SIZE-byte argument through an MPI rank")
#else
#define CF_BENCH_MPI_WORKLOADS(X)
#endif

/* Workloads that run coroutine tasks: only in builds with coroutines. */
#if CF_BENCH_CORO
#define CF_BENCH_TASK_WORKLOADS(X)                                                                 \
    X("loop-switch", "N", 1, wl_loop_switch, "2 tasks yield to the loop N times in all")           \
    X("loop-roundtrip", "N", 1, wl_loop_roundtrip,                                                 \
      "a task awaits an empty thread-pool task, N times")                                          \
    X("loop-future-await", "N", 1, wl_loop_future_await,                                           \
      "a task awaits a loop future set by a callback")                                             \
    X("loop-spawn", "N", 1, wl_loop_spawn, "create N empty tasks, gather them, run until done")    \
    X("loop-spawn-yield", "N", 1, wl_loop_spawn_yield,                                             \
      "create N tasks that yield once, gather them, run until done")                               \
    X("loop-task-memory", "N", 1, wl_loop_task_memory,                                             \
      "resident bytes per task parked in a sleep")                                                 \
    X("loop-queue", "N", 1, wl_loop_queue, "a producer task puts N items through a queue of 16")   \
    X("loop-lock", "N", 1, wl_loop_lock, "2 tasks hand one lock to each other N times in all")
#else
#define CF_BENCH_TASK_WORKLOADS(X)
#endif

/* Workloads that load examples/http_server with wrk: only when it was built. */
#ifdef CF_BENCH_HTTP_SERVER
#define CF_BENCH_HTTP_WORKLOADS(X)                                                                 \
    X("http-hello", "SECONDS", 1, wl_http_hello,                                                   \
      "server CPU time per request of the example server's hello route under wrk")                 \
    X("http-offload", "SECONDS", 1, wl_http_offload,                                               \
      "requests/s and p99 of a route awaiting a 50 us blocking call on the thread pool")
#else
#define CF_BENCH_HTTP_WORKLOADS(X)
#endif

#define CF_BENCH_DECLARE(name, usage, nargs, fn, help) int fn(char **args);
CF_BENCH_WORKLOADS(CF_BENCH_DECLARE)
#undef CF_BENCH_DECLARE

#define CF_BENCH_ENTRY(name, usage, nargs, fn, help) {name, usage, nargs, fn, help},
static const bench_workload workloads[] = {CF_BENCH_WORKLOADS(CF_BENCH_ENTRY)};
#undef CF_BENCH_ENTRY

int main(int argc, char **argv)
{
    return bench_main("cfutures", workloads, sizeof(workloads) / sizeof(workloads[0]), argc, argv);
}
