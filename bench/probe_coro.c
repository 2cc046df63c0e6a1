/* Coroutine costs: switch round trip, create-run-free from a warm pool, resident memory per
 * parked coroutine. One measurement per run: take the median of several runs (see
 * docs/coroutines.md for the command).
 *
 *     probe_coro [switch|create|rss|all] [n]
 *
 * Prints, per workload, one line:
 *     cfutures coro-switch n=N total_s=S per_task_ns=X per_switch_ns=Y backend=B
 *     cfutures coro-create n=N total_s=S per_task_ns=X backend=B
 *     cfutures coro-rss n=N total_s=S per_task_ns=X bytes_per_coro=B vmas=V backend=B
 * per_task_ns is one resume+yield round trip (two switches), one create+run+free, or one
 * create+first resume respectively. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loop/coro.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "probe_coro: %s\n", what);
    exit(1);
}

static cf__coro *new_coro(cf__coro_fn fn, void *arg)
{
    cf__coro *co;
    if (cf__coro_new(&co, fn, arg, 0) != 0)
        die("cf__coro_new failed");
    return co;
}

static void yield_forever(void *arg)
{
    (void)arg;
    for (;;)
        cf__coro_yield();
}

static void bench_switch(long n)
{
    cf__coro *co = new_coro(yield_forever, NULL);
    for (long i = 0; i < 10000; i++) /* warm up caches and predictors */
        cf__coro_resume(co);
    double t0 = now();
    for (long i = 0; i < n; i++)
        cf__coro_resume(co);
    double total = now() - t0;
    cf__coro_free(co);
    printf("cfutures coro-switch n=%ld total_s=%.6f per_task_ns=%.2f per_switch_ns=%.2f "
           "backend=%s\n",
           n, total, total / n * 1e9, total / n / 2 * 1e9, cf__coro_backend());
}

static void nothing(void *arg)
{
    (void)arg;
}

static void bench_create(long n)
{
    for (int i = 0; i < 1000; i++) { /* warm the pool */
        cf__coro *co = new_coro(nothing, NULL);
        cf__coro_resume(co);
        cf__coro_free(co);
    }
    double t0 = now();
    for (long i = 0; i < n; i++) {
        cf__coro *co = new_coro(nothing, NULL);
        cf__coro_resume(co);
        cf__coro_free(co);
    }
    double total = now() - t0;
    printf("cfutures coro-create n=%ld total_s=%.6f per_task_ns=%.2f backend=%s\n", n, total,
           total / n * 1e9, cf__coro_backend());
}

static long resident_pages(void)
{
    long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return resident;
}

static long vma_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        die("cannot read /proc/self/maps");
    long n = 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

static void park(void *arg)
{
    (void)arg;
    cf__coro_yield();
}

static void bench_rss(long n)
{
    cf__coro **cos = malloc((size_t)n * sizeof *cos);
    if (!cos)
        die("out of memory");
    memset(cos, 0, (size_t)n * sizeof *cos); /* commit the array before the first reading */
    long rss0 = resident_pages(), vmas0 = vma_count();
    double t0 = now();
    for (long i = 0; i < n; i++) {
        cos[i] = new_coro(park, NULL);
        cf__coro_resume(cos[i]);
    }
    double total = now() - t0;
    long rss1 = resident_pages(), vmas1 = vma_count();
    for (long i = 0; i < n; i++) {
        cf__coro_resume(cos[i]);
        cf__coro_free(cos[i]);
    }
    free(cos);
    double bytes = (double)(rss1 - rss0) * (double)sysconf(_SC_PAGESIZE) / (double)n;
    printf("cfutures coro-rss n=%ld total_s=%.6f per_task_ns=%.2f bytes_per_coro=%.0f vmas=%ld "
           "backend=%s\n",
           n, total, total / n * 1e9, bytes, vmas1 - vmas0, cf__coro_backend());
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    long n = argc > 2 ? atol(argv[2]) : 0;
    bool all = strcmp(what, "all") == 0;
    if (n < 0)
        die("n must be positive");
    if (all || strcmp(what, "switch") == 0)
        bench_switch(n ? n : 10000000);
    if (all || strcmp(what, "create") == 0)
        bench_create(n ? n : 1000000);
    if (all || strcmp(what, "rss") == 0)
        bench_rss(n ? n : 100000);
    if (!all && strcmp(what, "switch") && strcmp(what, "create") && strcmp(what, "rss"))
        die("usage: probe_coro [switch|create|rss|all] [n]");
    return 0;
}
