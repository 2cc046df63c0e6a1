/* Shared helpers for cf-bench and the C peers: the command-line driver, argument parsing,
 * clocks, resource probes, the one-line result format, a gate to hold workers, and the CPU
 * kernel. Every program that links this prints results in exactly the same way, so the compare
 * script can parse them all with one rule.
 *
 * Output: one line per run,
 *     LIB WORKLOAD n=N total_s=S per_task_ns=X [key=value ...]
 * with S printed with 6 decimals and X with 1. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit status for a bad command line or a workload this program does not have. */
#define BENCH_EXIT_USAGE 2

/* One workload: `run` receives exactly `nargs` strings and returns 0, or exits on failure. */
typedef struct bench_workload {
    const char *name;
    const char *usage; /* the argument names, e.g. "N ITERS" */
    int nargs;
    int (*run)(char **args);
    const char *help; /* one line: what is measured */
} bench_workload;

/* Runs `argv[1]` from `table`, with `lib` as the first word of every result line.
 * `PROG list` prints the workload names, one per line; `PROG help` (or no arguments) prints the
 * usage. Returns the process exit status. */
int bench_main(const char *lib, const bench_workload *table, size_t n, int argc, char **argv);

/* Parses a count such as "1000", "1e6" or "10^6": a whole number in [1, 1e9]. Exits with a
 * usage error otherwise. `what` names the argument in the message. */
size_t bench_arg_count(const char *s, const char *what);

/* Parses a duration in seconds: a finite number in (0, 3600]. Exits with a usage error
 * otherwise. */
double bench_arg_seconds(const char *s, const char *what);

/* Prints the result line. `n` is printed as a number (a whole one without decimals); `extra`
 * (may be NULL) is a printf format for further " key=value" fields. */
void bench_report(const char *workload, double n, double total_s, double per_task_ns,
                  const char *extra, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Reports a bad command line (printf-style) and exits with BENCH_EXIT_USAGE. */
_Noreturn void bench_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Reports a failed call and exits: `what` names the call, `detail` describes the error. */
_Noreturn void bench_fail(const char *file, int line, const char *what, const char *detail);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t bench_now_ns(void);
/* Seconds elapsed since `start_ns`. */
double bench_since_s(int64_t start_ns);
/* User plus system CPU time of the whole process, in seconds (getrusage). */
double bench_cpu_s(void);
/* Resident set size of the process in bytes (/proc/self/statm). Exits if unreadable. */
long bench_rss_bytes(void);
/* Sleeps `seconds`, resuming after signals. */
void bench_sleep(double seconds);

/* malloc/calloc that exit on failure, so workloads can stay flat. */
void *bench_xmalloc(size_t size);
void *bench_xcalloc(size_t n, size_t size);

/* The CPU kernel of the `cpu` workload: `iters` rounds of xorshift64 from `seed`. Every round
 * depends on the one before and the result is returned, so the compiler cannot remove or
 * vectorise it. Lives in its own translation unit so every program runs identical code. */
uint64_t bench_spin(uint64_t iters, uint64_t seed);

/* One task of the cpu workload, padded so that tasks on different workers never share a line. */
typedef struct bench_cpu_slot {
    uint64_t seed;
    uint64_t iters;
    uint64_t out;
    char pad[40];
} bench_cpu_slot;

/* The task body every program runs for one slot. */
void bench_cpu_slot_run(bench_cpu_slot *slot);

/* The cpu workload around each program's own pool: bench_cpu_prepare() reads N and ITERS from
 * args, seeds the slots and times the sequential reference; the program then runs every slot
 * on its pool and passes the time to bench_cpu_finish(), which checks each result against the
 * reference, prints the line and frees the slots. */
typedef struct bench_cpu {
    size_t n;
    size_t iters;
    bench_cpu_slot *slots;
    uint64_t *expect;
    double seq_s;
} bench_cpu;

void bench_cpu_prepare(bench_cpu *c, char **args);
void bench_cpu_finish(bench_cpu *c, double parallel_s, unsigned workers);

/* A gate that holds tasks until it opens: workloads use it to keep the workers busy so that
 * further submissions stay queued. */
typedef struct bench_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned arrived;
    bool open;
} bench_gate;

void bench_gate_init(bench_gate *g);
void bench_gate_destroy(bench_gate *g);
/* Called by a task: counts itself as arrived, then blocks until the gate opens. */
void bench_gate_pass(bench_gate *g);
/* Blocks until `n` tasks have arrived. */
void bench_gate_wait_arrived(bench_gate *g, unsigned n);
void bench_gate_open(bench_gate *g);

/* Splits `total` items over `parts` workers: the share of worker `i`. */
size_t bench_share(size_t total, size_t parts, size_t i);

/* The submitters workload's harness. Reads N and T from args, runs `body` in T threads, each
 * with its share of N, and then `after` (if not NULL) in the calling thread; prints the line
 * with the time from the threads' common start to the end of `after`. Each body does its own
 * untimed setup first, then calls pthread_barrier_wait(start), which starts them together. */
typedef void (*bench_submit_fn)(void *ctx, size_t share, pthread_barrier_t *start);
void bench_submitters(char **args, bench_submit_fn body, void (*after)(void *ctx), void *ctx);

#define BENCH_FAIL(what, detail) bench_fail(__FILE__, __LINE__, (what), (detail))

/* Evaluates a call that returns 0 on success; on anything else reports it and exits. */
#define BENCH_CHECK_ZERO(call, strerr)                                                             \
    do {                                                                                           \
        int bench_rc_ = (call);                                                                    \
        if (bench_rc_ != 0)                                                                        \
            BENCH_FAIL(#call, (strerr)(bench_rc_));                                                \
    } while (0)

#endif
