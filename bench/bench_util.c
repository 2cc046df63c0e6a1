#include "bench_util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static const char *bench_lib = "bench";

_Noreturn void bench_fail(const char *file, int line, const char *what, const char *detail)
{
    fprintf(stderr, "%s: %s:%d: %s failed: %s\n", bench_lib, file, line, what,
            detail ? detail : "");
    exit(1);
}

_Noreturn void bench_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_lib);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(BENCH_EXIT_USAGE);
}

size_t bench_arg_count(const char *s, const char *what)
{
    char *end = NULL;
    double v;
    errno = 0;
    if (strncmp(s, "10^", 3) == 0) {
        double e = strtod(s + 3, &end);
        v = pow(10.0, e);
    } else {
        v = strtod(s, &end);
    }
    if (errno || end == s || *end || !(v >= 1 && v <= 1e9) || v != floor(v))
        bench_usage_error("%s must be a whole number from 1 to 1e9, not '%s'", what, s);
    return (size_t)v;
}

double bench_arg_seconds(const char *s, const char *what)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0 && v <= 3600))
        bench_usage_error("%s must be a number of seconds in (0, 3600], not '%s'", what, s);
    return v;
}

void bench_report(const char *workload, double n, double total_s, double per_task_ns,
                  const char *extra, ...)
{
    printf("%s %s n=%.15g total_s=%.6f per_task_ns=%.1f", bench_lib, workload, n, total_s,
           per_task_ns);
    if (extra) {
        va_list ap;
        va_start(ap, extra);
        vprintf(extra, ap);
        va_end(ap);
    }
    putchar('\n');
    if (fflush(stdout) != 0)
        BENCH_FAIL("fflush(stdout)", strerror(errno));
}

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_since_s(int64_t start_ns)
{
    return (double)(bench_now_ns() - start_ns) / 1e9;
}

double bench_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        BENCH_FAIL("getrusage", strerror(errno));
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        BENCH_FAIL("fopen(/proc/self/statm)", strerror(errno));
    long size = 0, resident = 0;
    int got = fscanf(f, "%ld %ld", &size, &resident);
    fclose(f);
    if (got != 2)
        BENCH_FAIL("reading /proc/self/statm", "unexpected format");
    return resident * sysconf(_SC_PAGESIZE);
}

void bench_sleep(double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
        if (errno != EINTR)
            BENCH_FAIL("nanosleep", strerror(errno));
    }
}

void *bench_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        BENCH_FAIL("malloc", "out of memory");
    return p;
}

void *bench_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        BENCH_FAIL("calloc", "out of memory");
    return p;
}

uint64_t bench_spin(uint64_t iters, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

void bench_cpu_slot_run(bench_cpu_slot *slot)
{
    slot->out = bench_spin(slot->iters, slot->seed);
}

void bench_cpu_prepare(bench_cpu *c, char **args)
{
    c->n = bench_arg_count(args[0], "N");
    c->iters = bench_arg_count(args[1], "ITERS");
    c->slots = bench_xcalloc(c->n, sizeof(*c->slots));
    c->expect = bench_xmalloc(c->n * sizeof(*c->expect));
    for (size_t i = 0; i < c->n; i++)
        c->slots[i] = (bench_cpu_slot){.seed = i * 0x9E3779B97F4A7C15ull + 1, .iters = c->iters};
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < c->n; i++)
        c->expect[i] = bench_spin(c->iters, c->slots[i].seed);
    c->seq_s = bench_since_s(t0);
}

void bench_cpu_finish(bench_cpu *c, double parallel_s, unsigned workers)
{
    for (size_t i = 0; i < c->n; i++) {
        if (c->slots[i].out != c->expect[i])
            BENCH_FAIL("cpu task", "result differs from the sequential run");
    }
    free(c->expect);
    free(c->slots);
    double speedup = c->seq_s / parallel_s;
    bench_report("cpu", (double)c->n, parallel_s, parallel_s * 1e9 / (double)c->n,
                 " seq_s=%.6f speedup=%.3f efficiency=%.3f iters=%zu", c->seq_s, speedup,
                 speedup / workers, c->iters);
}

void bench_gate_init(bench_gate *g)
{
    if (pthread_mutex_init(&g->mu, NULL) != 0 || pthread_cond_init(&g->cv, NULL) != 0)
        BENCH_FAIL("bench_gate_init", "pthread init failed");
    g->arrived = 0;
    g->open = false;
}

void bench_gate_destroy(bench_gate *g)
{
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

void bench_gate_pass(bench_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->arrived++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void bench_gate_wait_arrived(bench_gate *g, unsigned n)
{
    pthread_mutex_lock(&g->mu);
    while (g->arrived < n)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void bench_gate_open(bench_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

size_t bench_share(size_t total, size_t parts, size_t i)
{
    return total / parts + (i < total % parts ? 1 : 0);
}

static void print_usage(FILE *out, const char *prog, const bench_workload *table, size_t n)
{
    fprintf(out, "usage: %s WORKLOAD ARGS...   (or: %s list)\n", prog, prog);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-18s %-9s %s\n", table[i].name, table[i].usage, table[i].help);
}

int bench_main(const char *lib, const bench_workload *table, size_t n, int argc, char **argv)
{
    bench_lib = lib;
    const char *prog = argc > 0 ? argv[0] : lib;
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        print_usage(argc < 2 ? stderr : stdout, prog, table, n);
        return argc < 2 ? BENCH_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", table[i].name);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], table[i].name) != 0)
            continue;
        if (argc - 2 != table[i].nargs)
            bench_usage_error("usage: %s %s %s", prog, table[i].name, table[i].usage);
        return table[i].run(argv + 2);
    }
    bench_usage_error("unknown workload '%s' (try: list)", argv[1]);
}

typedef struct submitter {
    pthread_t thread;
    bench_submit_fn body;
    void *ctx;
    size_t share;
    pthread_barrier_t *start;
} submitter;

static void *submitter_main(void *arg)
{
    submitter *sub = arg;
    sub->body(sub->ctx, sub->share, sub->start);
    return NULL;
}

void bench_submitters(char **args, bench_submit_fn body, void (*after)(void *ctx), void *ctx)
{
    size_t n = bench_arg_count(args[0], "N");
    size_t t = bench_arg_count(args[1], "T");
    if (t > n || t > 1024)
        bench_usage_error("T must be at most N and at most 1024");
    submitter *subs = bench_xcalloc(t, sizeof(*subs));
    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, (unsigned)t + 1) != 0)
        BENCH_FAIL("pthread_barrier_init", NULL);
    for (size_t i = 0; i < t; i++) {
        subs[i] =
            (submitter){.body = body, .ctx = ctx, .share = bench_share(n, t, i), .start = &start};
        if (pthread_create(&subs[i].thread, NULL, submitter_main, &subs[i]) != 0)
            BENCH_FAIL("pthread_create", NULL);
    }
    pthread_barrier_wait(&start);
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < t; i++)
        pthread_join(subs[i].thread, NULL);
    if (after)
        after(ctx);
    double s = bench_since_s(t0);
    pthread_barrier_destroy(&start);
    free(subs);
    bench_report("submitters", (double)n, s, s * 1e9 / (double)n, " threads=%zu", t);
}
