/* HTTP workloads of cf-bench: examples/http_server (the loop's socket coroutines, one task per
 * connection) under wrk, measured by bench_http.c. The server's path is compiled in
 * (CF_BENCH_HTTP_SERVER); builds without the examples or without coroutines have no HTTP
 * workloads. */
#include <stdio.h>

#include "bench_http.h"
#include "cf_bench.h"

#ifdef CF_BENCH_HTTP_SERVER
static int load(const char *workload, const char *path, char **args)
{
    double seconds = bench_arg_seconds(args[0], "SECONDS");
    char threads[16];
    snprintf(threads, sizeof(threads), "%d", BENCH_HTTP_OFFLOAD_THREADS);
    char *argv[] = {CF_BENCH_HTTP_SERVER, "--port", "0", "--threads", threads, NULL};
    bench_http_result r;
    bench_http_load(&r, argv, path, seconds, BENCH_HTTP_CONNECTIONS);
    bench_http_report(workload, &r);
    return 0;
}

int wl_http_hello(char **args)
{
    return load("http-hello", "/", args);
}

/* Each request awaits a 50 µs blocking call (nanosleep) on the server's thread pool. */
int wl_http_offload(char **args)
{
    return load("http-offload", "/offload?us=50", args);
}
#endif
