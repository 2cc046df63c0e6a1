/* cf-bench: one cfutures workload per sub-command, one result line per run (see bench_util.h
 * for the format and bench/README.md for what each workload measures).
 *
 * Adding workloads. Each family lives in its own file with functions `int wl_<name>(char **args)`
 * that parse their arguments with bench_arg_*() and print with bench_report():
 *   - the process pool: bench/wl_process.c, with process-burst N, process-pingpong N and
 *     process-bytes SIZE;
 *   - the event loop: bench/wl_loop.c, with loop-switch N and loop-roundtrip N.
 * Then add one X(...) line per workload to CF_BENCH_WORKLOADS below (it declares the function
 * and adds the table entry), and the file to cf_bench_sources in bench/meson.build. Example:
 *     X("process-burst", "N", 1, wl_process_burst, "submit N empty tasks to 2 processes, wait")
 */
#include "cf_bench.h"

/* X(name, usage, nargs, function, help) */
#define CF_BENCH_WORKLOADS(X)                                                                      \
    X("burst", "N", 1, wl_burst, "submit N empty tasks, wait for all, release them")               \
    X("pingpong", "N", 1, wl_pingpong, "submit one empty task and wait for it, N times (hot)")     \
    X("map", "N", 1, wl_map, "cf_executor_map over N empty calls, iterate all results")            \
    X("as_completed", "N", 1, wl_as_completed, "iterate N futures with cf_as_completed")           \
    X("cpu", "N ITERS", 2, wl_cpu, "N tasks of ITERS xorshift rounds: sequential vs pool")         \
    X("submitters", "N T", 2, wl_submitters, "T threads submit N/T tasks each, then wait")         \
    X("idle", "S", 1, wl_idle, "process CPU time of an idle pool over S seconds")                  \
    X("memory", "N", 1, wl_memory, "resident bytes per pending future, N queued")

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
