/* The cfutures demo: the same CPU-bound job run sequentially and on a thread pool, then a short
 * tour of done-callbacks, timeouts, cancellation and as_completed.
 *
 * Run it with no argument. An optional argument sets the prime-counting limit (default
 * 8000000), for example `./demo 200000` for a quick run under valgrind.
 *
 * Every cfutures call returns 0 or a negative CF_E* code; this program checks each one and
 * exits with a message on an unexpected code (see CHECK below). */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cfutures.h"

/* ---- small helpers ---- */

/* Stops the program if a cfutures call returned an unexpected code. */
#define CHECK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %s (%s)\n", __FILE__, __LINE__, #call,             \
                    cf_err_name(rc_), cf_strerror(rc_));                                           \
            exit(EXIT_FAILURE);                                                                    \
        }                                                                                          \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* CPU time used so far by all the threads of this process. */
static double cpu_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The CPUs this process may run on (what the thread pool's default size is based on). */
static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    return 1;
}

/* ---- part 1: the CPU-bound job ---- */

/* Trial division: slow on purpose, so that there is real work to share between CPUs. */
static int is_prime(uint64_t n)
{
    if (n < 2)
        return 0;
    if (n % 2 == 0 || n % 3 == 0)
        return n < 4;
    for (uint64_t d = 5; d * d <= n; d += 6)
        if (n % d == 0 || n % (d + 2) == 0)
            return 0;
    return 1;
}

typedef struct range {
    uint64_t lo, hi; /* count the primes in [lo, hi) */
    uint64_t primes; /* the answer, filled in by the task */
} range;

static uint64_t count_primes(uint64_t lo, uint64_t hi)
{
    uint64_t count = 0;
    for (uint64_t n = lo; n < hi; n++)
        count += (uint64_t)is_prime(n);
    return count;
}

/* A cfutures task: it receives the `void *` given at submission and reports its result through
 * `*result`. Returning 0 means success. Here the result is the same range, now filled in. */
static int count_task(void *arg, void **result)
{
    range *r = arg;
    r->primes = count_primes(r->lo, r->hi);
    *result = r;
    return 0;
}

enum { NRANGES = 32 };

static void part1_speedup(uint64_t limit, unsigned cpus)
{
    printf("1. The same CPU-bound job, sequentially and on a thread pool\n");
    printf("   job: count the primes below %" PRIu64 ", split into %d ranges\n", limit, NRANGES);

    range seq[NRANGES], par[NRANGES];
    void *args[NRANGES];
    for (int i = 0; i < NRANGES; i++) {
        seq[i] = (range){.lo = limit * i / NRANGES, .hi = limit * (i + 1) / NRANGES};
        par[i] = seq[i];
        args[i] = &par[i];
    }

    /* Sequentially, in this thread. */
    double t0 = now(), c0 = cpu_time();
    uint64_t seq_total = 0;
    for (int i = 0; i < NRANGES; i++) {
        seq[i].primes = count_primes(seq[i].lo, seq[i].hi);
        seq_total += seq[i].primes;
    }
    double seq_time = now() - t0;
    printf("   sequential:             %8" PRIu64 " primes in %.3f s, %.2f CPUs busy\n", seq_total,
           seq_time, (cpu_time() - c0) / seq_time);

    /* On a pool with one thread per CPU: more threads than CPUs do not help CPU-bound work. */
    cf_thread_pool_options opts = {.max_workers = cpus, .thread_name_prefix = "primes"};
    cf_executor *pool;
    CHECK(cf_thread_pool_new(&pool, &opts));

    t0 = now();
    c0 = cpu_time();
    /* cf_executor_map submits every call at once and returns an iterator that yields the
     * results in input order. CF_FOREVER: no deadline. 0: default chunk size. */
    cf_map *it;
    CHECK(cf_executor_map(&it, pool, count_task, args, NRANGES, CF_FOREVER, 0));
    uint64_t par_total = 0;
    void *value;
    int rc;
    while ((rc = cf_map_next(&value, it)) == 0)
        par_total += ((range *)value)->primes;
    cf_map_free(it);
    double par_time = now() - t0;
    double par_cpus = (cpu_time() - c0) / par_time;
    if (rc != CF_EOF) {
        fprintf(stderr, "cf_map_next: %s\n", cf_err_name(rc));
        exit(EXIT_FAILURE);
    }
    printf("   thread pool, %u worker%s: %8" PRIu64 " primes in %.3f s, %.2f CPUs busy (thread "
           "start-up included)\n",
           cpus, cpus == 1 ? " " : "s", par_total, par_time, par_cpus);
    printf("   speedup: %.2fx (at best %ux: the work is split between %u CPU%s)\n",
           seq_time / par_time, cpus, cpus, cpus == 1 ? "" : "s");
    /* Other programs running at the same time take CPU time away from the pool: say so. */
    double load[1];
    if (cpus > 1 && par_cpus < 0.9 * cpus && getloadavg(load, 1) == 1)
        printf("   note: the pool got only %.2f of the %u CPUs: other programs were using them "
               "(load average %.2f)\n",
               par_cpus, cpus, load[0]);

    int same = seq_total == par_total;
    for (int i = 0; i < NRANGES; i++)
        same = same && seq[i].primes == par[i].primes;
    printf("   both give the same answer, range by range: %s\n\n", same ? "yes" : "NO");
    CHECK(cf_executor_free(pool));
    if (!same)
        exit(EXIT_FAILURE);
}

/* ---- parts 2 to 5: a tour with small jobs ---- */

/* A job for the tour. `started` and `gate` are futures used as one-shot events: the job
 * completes `started` when it begins, and waits until the demo completes `gate`. */
typedef struct job {
    int id;
    long sleep_ms;
    cf_future *started; /* if not NULL, completed by the job when it starts */
    cf_future *gate;    /* if not NULL, the job waits until the demo completes it */
} job;

static int job_task(void *arg, void **result)
{
    job *j = arg;
    if (j->started)
        cf_future_set_result(j->started, NULL, NULL);
    if (j->gate)
        cf_future_result(NULL, j->gate, CF_FOREVER);
    sleep_ms(j->sleep_ms);
    *result = j; /* the result value is the job itself: nothing to free */
    return 0;
}

/* A done-callback: called exactly once, with the future, when the future is done. Here it
 * prints which thread runs it, then completes the future passed as `data` so that main()
 * knows it has run. */
static void on_done(cf_future *f, void *data)
{
    char name[16] = "?";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    void *value;
    int rc = cf_future_result(&value, f, 0); /* the future is done: this does not block */
    printf("   callback: job %d done (%s), callback running in thread \"%s\"\n",
           rc == 0 ? ((job *)value)->id : -1, cf_err_name(rc), name);
    cf_future_set_result(data, NULL, NULL);
}

static void part2_callback(cf_executor *pool)
{
    printf("2. Done-callbacks\n");
    cf_future *gate, *told1, *told2, *f;
    CHECK(cf_future_new(&gate));
    CHECK(cf_future_new(&told1));
    CHECK(cf_future_new(&told2));
    job j = {.id = 1, .gate = gate};
    CHECK(cf_executor_submit(&f, pool, job_task, &j));
    /* The job waits for the gate, so the future is still pending here: the callback will run
     * in the pool's worker thread, which completes the future. */
    CHECK(cf_future_add_done_callback(f, on_done, told1));
    CHECK(cf_future_set_result(gate, NULL, NULL)); /* open the gate */
    CHECK(cf_future_result(NULL, told1, CF_FOREVER));
    /* Added to a future that is already done, a callback runs at once, in the calling thread. */
    CHECK(cf_future_add_done_callback(f, on_done, told2));
    printf("   (the first was added while the job was pending, the second after it was done)\n\n");
    cf_future_unref(f);
    cf_future_unref(told1);
    cf_future_unref(told2);
    cf_future_unref(gate);
}

static void part3_timeout(cf_executor *pool)
{
    printf("3. Waiting with a timeout (in seconds; 0 polls; CF_FOREVER waits without limit)\n");
    job j = {.id = 2, .sleep_ms = 300};
    cf_future *f;
    CHECK(cf_executor_submit(&f, pool, job_task, &j));
    double t0 = now();
    int rc = cf_future_result(NULL, f, 0);
    printf("   job takes 300 ms; result(timeout 0)    -> %s after %.3f s\n", cf_err_name(rc),
           now() - t0);
    t0 = now();
    rc = cf_future_result(NULL, f, 0.05);
    printf("   job takes 300 ms; result(timeout 0.05) -> %s after %.3f s\n", cf_err_name(rc),
           now() - t0);
    /* A timeout does not cancel anything: the job goes on, and we can wait again. */
    rc = cf_future_result(NULL, f, CF_FOREVER);
    printf("   result(CF_FOREVER)                     -> %s after %.3f s in all\n\n",
           cf_err_name(rc), now() - t0);
    cf_future_unref(f);
}

static void part4_cancel(cf_executor *pool)
{
    printf("4. Cancelling: only a future that has not started can be cancelled\n");
    cf_future *started, *gate, *a, *b;
    CHECK(cf_future_new(&started));
    CHECK(cf_future_new(&gate));
    job ja = {.id = 3, .started = started, .gate = gate};
    job jb = {.id = 4};
    CHECK(cf_executor_submit(&a, pool, job_task, &ja));
    CHECK(cf_executor_submit(&b, pool, job_task, &jb)); /* queued behind A: one worker */
    CHECK(cf_future_result(NULL, started, CF_FOREVER)); /* A is now running */
    bool cancel_a = cf_future_cancel(a);
    bool cancel_b = cf_future_cancel(b);
    printf("   cancel(running job A) -> %s; cancel(queued job B) -> %s\n",
           cancel_a ? "true" : "false", cancel_b ? "true" : "false");
    CHECK(cf_future_set_result(gate, NULL, NULL)); /* let A finish */
    int rc_a = cf_future_result(NULL, a, CF_FOREVER);
    int rc_b = cf_future_result(NULL, b, CF_FOREVER);
    printf("   result(A) -> %s; result(B) -> %s (B never ran)\n\n", cf_err_name(rc_a),
           cf_err_name(rc_b));
    cf_future_unref(a);
    cf_future_unref(b);
    cf_future_unref(gate);
    cf_future_unref(started);
}

static void part5_as_completed(void)
{
    printf("5. as_completed yields futures in the order they finish\n");
    cf_thread_pool_options opts = {.max_workers = 3, .thread_name_prefix = "race"};
    cf_executor *pool;
    CHECK(cf_thread_pool_new(&pool, &opts));
    job jobs[3] = {
        {.id = 0, .sleep_ms = 300}, {.id = 1, .sleep_ms = 100}, {.id = 2, .sleep_ms = 200}};
    cf_future *fs[3];
    printf("   submitted:");
    for (int i = 0; i < 3; i++) {
        CHECK(cf_executor_submit(&fs[i], pool, job_task, &jobs[i]));
        printf(" job %d (%ld ms)%s", jobs[i].id, jobs[i].sleep_ms, i < 2 ? "," : "\n");
    }
    cf_as_completed *ac;
    CHECK(cf_as_completed_new(&ac, fs, 3, CF_FOREVER));
    printf("   finished: ");
    cf_future *f;
    int rc, k = 0;
    while ((rc = cf_as_completed_next(&f, ac)) == 0) {
        void *value;
        CHECK(cf_future_result(&value, f, 0));
        printf(" job %d (%ld ms)%s", ((job *)value)->id, ((job *)value)->sleep_ms,
               ++k < 3 ? "," : "\n");
    }
    if (rc != CF_EOF) /* CF_EOF: every future has been yielded */
        CHECK(rc);
    cf_as_completed_free(ac);
    for (int i = 0; i < 3; i++)
        cf_future_unref(fs[i]);
    CHECK(cf_executor_free(pool));
}

int main(int argc, char **argv)
{
    uint64_t limit = argc > 1 ? strtoull(argv[1], NULL, 10) : 8000000;
    if (limit < NRANGES) {
        fprintf(stderr, "usage: %s [limit >= %d]\n", argv[0], NRANGES);
        return EXIT_FAILURE;
    }
    unsigned cpus = cpu_count();
    printf("cfutures %s demo: %u CPU%s available to this process\n\n", cf_version_string(), cpus,
           cpus == 1 ? "" : "s");

    part1_speedup(limit, cpus);

    /* One worker, so that a second job must wait in the queue (part 4). */
    cf_thread_pool_options opts = {.max_workers = 1, .thread_name_prefix = "tour"};
    cf_executor *pool;
    CHECK(cf_thread_pool_new(&pool, &opts));
    part2_callback(pool);
    part3_timeout(pool);
    part4_cancel(pool);
    /* Shuts the pool down (waiting for its work) and frees it. */
    CHECK(cf_executor_free(pool));

    part5_as_completed();
    return 0;
}
