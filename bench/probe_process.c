/* Process-pool probe: burst (submit N tiny tasks, then wait for all), ping-pong (submit one,
 * wait, repeat) and a large-payload round trip, each the median of 5 runs, next to Python's
 * ProcessPoolExecutor doing the same in the same run. Usage: probe_process [--no-python]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"

enum { RUNS = 5 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof(double), cmp);
    return v[RUNS / 2];
}

static int noop(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    return 0;
}

static int echo(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    memcpy(out, arg, len);
    *result = out;
    *result_len = len;
    return 0;
}

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "%s: %s\n", what, cf_strerror(rc));
        exit(1);
    }
}

static double burst(cf_executor *ex, size_t n)
{
    cf_future **fs = malloc(n * sizeof(*fs));
    double t = now();
    for (size_t i = 0; i < n; i++)
        check(cf_executor_submit_bytes(&fs[i], ex, noop, NULL, 0), "submit");
    check(cf_wait(NULL, NULL, fs, n, CF_ALL_COMPLETED, CF_FOREVER), "wait");
    t = now() - t;
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    free(fs);
    return t;
}

static double pingpong(cf_executor *ex, size_t n)
{
    double t = now();
    for (size_t i = 0; i < n; i++) {
        cf_future *f;
        check(cf_executor_submit_bytes(&f, ex, noop, NULL, 0), "submit");
        check(cf_future_result(NULL, f, CF_FOREVER), "result");
        cf_future_unref(f);
    }
    return now() - t;
}

static double bytes_trip(cf_executor *ex, const void *buf, size_t size)
{
    double t = now();
    cf_future *f;
    check(cf_executor_submit_bytes(&f, ex, echo, buf, size), "submit");
    size_t len;
    check(cf_future_result_bytes(NULL, &len, f, CF_FOREVER), "result");
    t = now() - t;
    if (len != size)
        exit(1);
    cf_future_unref(f);
    return t;
}

static void report(const char *who, const char *what, size_t n, double total, size_t per)
{
    printf("%s %s n=%zu total_s=%.6f per_task_ns=%.0f\n", who, what, n, total,
           total / (double)per * 1e9);
}

static const char *python_code =
    "import time,sys\n"
    "from concurrent.futures import ProcessPoolExecutor, wait\n"
    "def noop(x): return None\n"
    "def echo(b): return b\n"
    "def med(v): v=sorted(v); return v[len(v)//2]\n"
    "if __name__=='__main__':\n"
    "  nb,npp,size=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3])\n"
    "  with ProcessPoolExecutor(2) as ex:\n"
    "    list(ex.map(noop, range(100)))\n"
    "    r=[]\n"
    "    for _ in range(5):\n"
    "      t=time.perf_counter(); fs=[ex.submit(noop,i) for i in range(nb)]; wait(fs); "
    "r.append(time.perf_counter()-t)\n"
    "    t=med(r); print('python process-burst n=%d total_s=%.6f "
    "per_task_ns=%.0f'%(nb,t,t/nb*1e9))\n"
    "    r=[]\n"
    "    for _ in range(5):\n"
    "      t=time.perf_counter()\n"
    "      for i in range(npp): ex.submit(noop,i).result()\n"
    "      r.append(time.perf_counter()-t)\n"
    "    t=med(r); print('python process-pingpong n=%d total_s=%.6f "
    "per_task_ns=%.0f'%(npp,t,t/npp*1e9))\n"
    "    b=bytes(size); r=[]\n"
    "    for _ in range(5):\n"
    "      t=time.perf_counter(); ex.submit(echo,b).result(); r.append(time.perf_counter()-t)\n"
    "    t=med(r); print('python process-bytes n=%d total_s=%.6f per_task_ns=%.0f mib_per_s=%.1f'"
    "%(size,t,t*1e9,2*size/t/1048576))\n"
    "    sys.stdout.flush()\n";

int main(int argc, char **argv)
{
    bool python = !(argc > 1 && strcmp(argv[1], "--no-python") == 0);
    size_t nburst = 20000, npp = 2000, size = (size_t)64 << 20;
    cf_executor *ex;
    check(cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 2}), "pool");
    burst(ex, 1000); /* start the workers */

    double v[RUNS];
    for (int r = 0; r < RUNS; r++)
        v[r] = burst(ex, nburst);
    report("cfutures", "process-burst", nburst, median(v), nburst);
    for (int r = 0; r < RUNS; r++)
        v[r] = pingpong(ex, npp);
    report("cfutures", "process-pingpong", npp, median(v), npp);

    unsigned char *buf = malloc(size);
    memset(buf, 0x5a, size);
    for (int r = 0; r < RUNS; r++)
        v[r] = bytes_trip(ex, buf, size);
    double t = median(v);
    printf("cfutures process-bytes n=%zu total_s=%.6f per_task_ns=%.0f mib_per_s=%.1f\n", size, t,
           t * 1e9, 2.0 * (double)size / t / 1048576.0);
    /* Reference: one memcpy of the same size into fresh memory. */
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        unsigned char *dst = malloc(size);
        memcpy(dst, buf, size);
        v[r] = now() - t0;
        if (dst[size - 1] != 0x5a)
            return 1;
        free(dst);
    }
    t = median(v);
    printf("reference memcpy n=%zu total_s=%.6f mib_per_s=%.1f\n", size, t,
           (double)size / t / 1048576.0);
    free(buf);
    cf_executor_free(ex);
    fflush(stdout);

    if (python) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "python3 - %zu %zu %zu", nburst / 10, npp / 4, size);
        FILE *p = popen(cmd, "w");
        if (p) {
            fputs(python_code, p);
            pclose(p);
        }
    }
    return 0;
}
