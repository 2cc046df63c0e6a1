/* The HTTP workloads' driver, shared by cf-bench and the C peers: starts a server program, loads
 * it with wrk on loopback, and measures what the server spent.
 *
 * The server program must print "listening on http://127.0.0.1:PORT" on stdout once it accepts
 * connections, and exit on SIGTERM. The load is `wrk -t1 -cCONNECTIONS -dSECONDS --latency`,
 * after a one-second warm-up run of the same kind (so that lazily started threads and caches
 * exist). The server's CPU time is utime + stime of its process (all its threads) from
 * /proc/PID/stat, read right before and right after the measured run. */
#ifndef BENCH_HTTP_H
#define BENCH_HTTP_H

typedef struct bench_http_result {
    double requests; /* completed, as wrk counts them */
    double seconds;  /* wrk's measured duration */
    double cpu_s;    /* server CPU time over the run */
    double rps;
    double p50_us, p99_us;
    double errors; /* wrk's socket errors plus non-2xx answers */
} bench_http_result;

/* Runs the server `argv` (argv[0] is the program's path), loads `path` (such as "/") for
 * `seconds` with `connections` connections, stops the server, and fills `out`. Exits through
 * bench_fail() when the server or wrk cannot run. */
void bench_http_load(bench_http_result *out, char *const *argv, const char *path, double seconds,
                     unsigned connections);

/* Prints the result line of an HTTP workload: per_task_ns is the server's CPU time per request,
 * followed by rps, p50_us, p99_us, cpu_s and errors. */
void bench_http_report(const char *workload, const bench_http_result *r);

/* The connections of every HTTP workload (the issue's `wrk -t1 -c50`). */
#define BENCH_HTTP_CONNECTIONS 50

/* Thread-pool workers of every offload server: asyncio's default executor size on 2 CPUs
 * (min(32, CPUs + 4)), so that every server gets the same pool. */
#define BENCH_HTTP_OFFLOAD_THREADS 6

#endif
