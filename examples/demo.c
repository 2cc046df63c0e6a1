/* The cfutures demo, the whole product in one run of a few seconds:
 *   1. the same CPU-bound job sequentially, on the thread pool and on the process pool, timed;
 *   2. an event loop whose task awaits work offloaded to both pools (a longer CPU job on the
 *      process pool, blocking calls on the thread pool) while a timer on the same loop keeps
 *      ticking on time, with a progress line;
 *   3-6. a tour of futures: done-callbacks, timeouts, cancellation, as_completed.
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
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- the CPU-bound job, shared by parts 1 and 2 ---- */

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

/* The job as a pointer task, for the thread pool: it receives the `void *` given at submission
 * and reports through `*result`; returning 0 means success. The result is the same range, now
 * filled in. */
static int count_task(void *arg, void **result)
{
    range *r = arg;
    r->primes = count_primes(r->lo, r->hi);
    *result = r;
    return 0;
}

/* The same job as a bytes task, for the process pool: a worker process cannot see this one's
 * memory, so the range travels as bytes and the count comes back as bytes (a malloc'd buffer
 * the future takes over). */
static int count_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    range r;
    if (len != sizeof(r))
        return cf_task_fail(CF_EINVAL, "expected a range, got %zu bytes", len);
    memcpy(&r, arg, sizeof(r));
    uint64_t *count = malloc(sizeof(*count));
    if (!count)
        return CF_ENOMEM;
    *count = count_primes(r.lo, r.hi);
    *result = count;
    *result_len = sizeof(*count);
    return 0;
}

static void split(range *ranges, int n, uint64_t lo, uint64_t hi)
{
    for (int i = 0; i < n; i++)
        ranges[i] = (range){.lo = lo + (hi - lo) * i / n, .hi = lo + (hi - lo) * (i + 1) / n};
}

static cf_executor *new_process_pool(unsigned workers)
{
    cf_process_pool_options opts = {.max_workers = workers};
    cf_executor *pool = NULL;
    int rc = cf_process_pool_new(&pool, &opts);
    if (rc != 0)
        printf("   (no process pool here: %s; skipping it)\n", cf_strerror(rc));
    return pool;
}

/* ---- part 1: the same job sequentially, on the thread pool, on the process pool ---- */

enum { NRANGES = 32 };

static void print_row(const char *how, uint64_t primes, double seconds, double base)
{
    printf("   %-28s %8" PRIu64 " primes  %6.3f s", how, primes, seconds);
    if (base > 0)
        printf("  %.2fx", base / seconds);
    printf("\n");
}

static void part1_speedup(uint64_t limit, unsigned cpus)
{
    printf("1. One CPU-bound job three ways: count the primes below %" PRIu64 " (%d ranges)\n",
           limit, NRANGES);
    range seq[NRANGES], par[NRANGES];
    void *args[NRANGES];
    cf_bytes bargs[NRANGES];
    split(seq, NRANGES, 0, limit);
    for (int i = 0; i < NRANGES; i++) {
        par[i] = seq[i];
        args[i] = &par[i];
        bargs[i] = (cf_bytes){.data = &seq[i], .len = sizeof(seq[i])};
    }

    /* Sequentially, in this thread. */
    double t0 = now(), c0 = cpu_time();
    uint64_t seq_total = 0;
    for (int i = 0; i < NRANGES; i++) {
        seq[i].primes = count_primes(seq[i].lo, seq[i].hi);
        seq_total += seq[i].primes;
    }
    double seq_time = now() - t0;
    print_row("sequential, this thread", seq_total, seq_time, 0);

    /* On a thread pool with one thread per CPU: more threads than CPUs do not help CPU-bound
     * work. cf_executor_map submits every call at once and returns an iterator that yields the
     * results in input order (CF_FOREVER: no deadline; 0: the default chunk size). */
    char how[64];
    cf_thread_pool_options opts = {.max_workers = cpus, .thread_name_prefix = "primes"};
    cf_executor *threads;
    CHECK(cf_thread_pool_new(&threads, &opts));
    t0 = now();
    c0 = cpu_time();
    cf_map *it;
    CHECK(cf_executor_map(&it, threads, count_task, args, NRANGES, CF_FOREVER, 0));
    uint64_t thread_total = 0;
    void *value;
    int rc;
    while ((rc = cf_map_next(&value, it)) == 0)
        thread_total += ((range *)value)->primes;
    cf_map_free(it);
    if (rc != CF_EOF)
        CHECK(rc);
    double thread_time = now() - t0;
    double thread_cpus = (cpu_time() - c0) / thread_time;
    snprintf(how, sizeof(how), "thread pool, %u thread%s", cpus, cpus == 1 ? "" : "s");
    print_row(how, thread_total, thread_time, seq_time);
    CHECK(cf_executor_free(threads));

    /* On a process pool: the same calls as bytes tasks, each in a worker process (started on
     * demand, from a clean fork server: their start-up is in the time). */
    int same = seq_total == thread_total;
    cf_executor *processes = new_process_pool(cpus);
    if (processes) {
        t0 = now();
        CHECK(
            cf_executor_map_bytes(&it, processes, count_bytes_task, bargs, NRANGES, CF_FOREVER, 0));
        uint64_t process_total = 0;
        const void *data;
        for (int i = 0; (rc = cf_map_next_bytes(&data, NULL, it)) == 0; i++) {
            uint64_t count;
            memcpy(&count, data, sizeof(count));
            process_total += count;
            same = same && count == seq[i].primes;
        }
        cf_map_free(it);
        if (rc != CF_EOF)
            CHECK(rc);
        snprintf(how, sizeof(how), "process pool, %u process%s", cpus, cpus == 1 ? "" : "es");
        print_row(how, process_total, now() - t0, seq_time);
        same = same && process_total == seq_total;
        CHECK(cf_executor_free(processes));
    }
    /* Other programs running at the same time take CPU time away from the pools: say so. */
    double load[1];
    if (cpus > 1 && thread_cpus < 0.9 * cpus && getloadavg(load, 1) == 1)
        printf("   (the pools got only %.1f of the %u CPUs: other programs were using them, load "
               "average %.1f)\n",
               thread_cpus, cpus, load[0]);
    for (int i = 0; i < NRANGES; i++)
        same = same && seq[i].primes == par[i].primes;
    printf("   all agree, range by range: %s\n\n", same ? "yes" : "NO");
    if (!same)
        exit(EXIT_FAILURE);
}

/* ---- part 2: a loop task stays responsive while both pools work for it ---- */

enum { NCHUNKS = 16, NCALLS = 6, CALL_MS = 150 };
#define TICK_S 0.05

/* What the progress line shows. Everything here is touched on the loop thread only: the timer,
 * the done-callbacks of loop futures and the task all run there. */
typedef struct progress {
    char chunk_done[NCHUNKS]; /* which ranges have come back ('#'), in any order */
    int chunks, calls;
    int ticks;
    double next_tick, worst_late;
    double start;
    bool finished;
    bool tty;
    int last_quarter; /* without a terminal: the last quarter of the job printed */
} progress;

static void draw(cf_loop *loop, progress *p)
{
    char line[160];
    snprintf(line, sizeof(line),
             "   [%.*s] %2d/%d ranges  %d/%d blocking calls  %2d ticks, worst %.1f ms late  "
             "%.1f s",
             NCHUNKS, p->chunk_done, p->chunks, NCHUNKS, p->calls, NCALLS, p->ticks,
             p->worst_late * 1e3, cf_loop_time(loop) - p->start);
    if (p->tty) {
        printf("\r%s\033[K", line); /* redrawn in place */
        fflush(stdout);
    } else if (p->chunks * 4 / NCHUNKS > p->last_quarter) {
        p->last_quarter = p->chunks * 4 / NCHUNKS; /* a log gets a line per quarter */
        printf("%s\n", line);
    }
}

/* The timer: runs every 50 ms on the loop and measures how late it runs. A loop that blocked
 * (on a computation or a blocking call) would make it late by that much. */
static void tick(cf_loop *loop, void *data)
{
    progress *p = data;
    double late = cf_loop_time(loop) - p->next_tick;
    if (late > p->worst_late)
        p->worst_late = late;
    p->ticks++;
    draw(loop, p);
    if (p->finished)
        return;
    p->next_tick += TICK_S;
    CHECK(cf_loop_call_at(NULL, loop, p->next_tick, tick, p));
}

/* Done-callbacks of the offloaded work: loop futures run them on the loop, never inline. The
 * future carries its range (cf_future_set_data), so the callback knows which one came back. */
static void chunk_done(cf_future *f, void *data)
{
    progress *p = data;
    p->chunk_done[(intptr_t)cf_future_get_data(f)] = '#';
    p->chunks++;
    draw(cf_loop_current(), p);
}

static void call_done(cf_future *f, void *data)
{
    (void)f;
    progress *p = data;
    p->calls++;
    draw(cf_loop_current(), p);
}

/* Blocking work for the thread pool: sleeps, as a disk or database read would block. */
static int blocking_call(void *arg, void **result)
{
    sleep_ms(CALL_MS);
    *result = arg;
    return 0;
}

typedef struct offload {
    cf_executor *threads, *processes;
    range chunks[NCHUNKS];
    progress *progress;
    uint64_t primes;
} offload;

/* The loop task: straight-line code that suspends in cf_gather() while the pools work; the
 * loop runs the timer and the callbacks meanwhile. */
static int offload_task(void *arg, void **result)
{
    (void)result;
    offload *o = arg;
    cf_loop *loop = cf_loop_current();
    cf_future *fs[NCHUNKS + NCALLS];
    int n = 0, rc = 0;
    for (int i = 0; i < NCHUNKS && rc == 0; i++) {
        rc = cf_loop_run_in_executor_bytes(&fs[n], loop, o->processes, count_bytes_task,
                                           &o->chunks[i], sizeof(o->chunks[i]));
        if (rc == 0)
            rc = cf_future_set_data(fs[n++], (void *)(intptr_t)i);
        if (rc == 0)
            rc = cf_future_add_done_callback(fs[n - 1], chunk_done, o->progress);
    }
    for (int i = 0; i < NCALLS && rc == 0; i++) {
        rc = cf_loop_run_in_executor(&fs[n], loop, o->threads, blocking_call, NULL);
        if (rc == 0)
            rc = cf_future_add_done_callback(fs[n++], call_done, o->progress);
    }
    if (rc == 0)
        rc = cf_gather(NULL, fs, (size_t)n); /* suspends until all are done */
    for (int i = 0; i < NCHUNKS && rc == 0; i++) {
        const void *data;
        rc = cf_future_result_bytes(&data, NULL, fs[i], 0);
        uint64_t count;
        memcpy(&count, data, sizeof(count));
        o->primes += count;
    }
    for (int i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    o->progress->finished = true;
    return rc;
}

static void part2_responsive_loop(uint64_t limit, unsigned cpus)
{
    printf("2. An event loop that stays responsive\n");
    printf("   A task on the loop awaits the primes in [%" PRIu64 ", %" PRIu64 ") on the process "
           "pool (%d ranges)\n   and %d blocking calls of %d ms on the thread pool, while a timer "
           "on the same loop ticks every %.0f ms.\n",
           limit, 2 * limit, NCHUNKS, NCALLS, CALL_MS, TICK_S * 1e3);
    offload o = {.processes = new_process_pool(cpus)};
    if (!o.processes) {
        printf("\n");
        return;
    }
    cf_thread_pool_options opts = {.max_workers = 3, .thread_name_prefix = "io"};
    CHECK(cf_thread_pool_new(&o.threads, &opts));
    split(o.chunks, NCHUNKS, limit, 2 * limit);
    cf_loop *loop;
    CHECK(cf_loop_new(&loop, NULL));
    progress p = {.tty = isatty(STDOUT_FILENO), .start = cf_loop_time(loop)};
    memset(p.chunk_done, '.', sizeof(p.chunk_done));
    o.progress = &p;
    p.next_tick = p.start + TICK_S;
    CHECK(cf_loop_call_at(NULL, loop, p.next_tick, tick, &p));
    cf_future *task;
    int rc = cf_loop_create_task(&task, loop, offload_task, &o, NULL);
    if (rc == CF_ENOTSUP) {
        printf("   (built without coroutines: no loop tasks)\n\n");
    } else {
        CHECK(rc);
        CHECK(cf_loop_run_until_complete(NULL, loop, task));
        cf_future_unref(task);
        if (p.tty)
            printf("\n");
        double took = cf_loop_time(loop) - p.start;
        printf("   done in %.2f s: %" PRIu64 " primes, and %d ticks, the worst %.1f ms late (the "
               "same work\n   run on the loop itself would have stopped the ticks for %.1f s)\n\n",
               took, o.primes, p.ticks, p.worst_late * 1e3, took);
    }
    CHECK(cf_loop_free(loop));
    CHECK(cf_executor_free(o.threads));
    CHECK(cf_executor_free(o.processes));
}

/* ---- parts 3 to 6: a tour of futures with small jobs ---- */

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

static void part3_callback(cf_executor *pool)
{
    printf("3. Done-callbacks\n");
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

static void part4_timeout(cf_executor *pool)
{
    printf("4. Waiting with a timeout (in seconds; 0 polls; CF_FOREVER waits without limit)\n");
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

static void part5_cancel(cf_executor *pool)
{
    printf("5. Cancelling: only a future that has not started can be cancelled\n");
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

static void part6_as_completed(void)
{
    printf("6. as_completed yields futures in the order they finish\n");
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
    part2_responsive_loop(limit, cpus);

    /* One worker, so that a second job must wait in the queue (part 5). */
    cf_thread_pool_options opts = {.max_workers = 1, .thread_name_prefix = "tour"};
    cf_executor *pool;
    CHECK(cf_thread_pool_new(&pool, &opts));
    part3_callback(pool);
    part4_timeout(pool);
    part5_cancel(pool);
    /* Shuts the pool down (waiting for its work) and frees it. */
    CHECK(cf_executor_free(pool));

    part6_as_completed();
    return 0;
}
