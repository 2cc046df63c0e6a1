/* bounded_queue: back-pressure with a bounded queue and its three policies.
 *
 * By default a thread pool's queue has no limit: a fast producer can queue millions of tasks.
 * With max_queue set, at most that many tasks wait to start, and queue_policy says what a
 * submit does when the queue is full:
 *   CF_QUEUE_BLOCK        wait for room (at most queue_timeout seconds, then CF_ETIMEDOUT);
 *   CF_QUEUE_REJECT       fail at once with CF_EFULL;
 *   CF_QUEUE_CALLER_RUNS  run the task in the submitting thread, which slows the producer.
 *
 * Each scene below uses a pool of 2 workers and a queue of 3. It fills the pool with jobs that
 * wait on a "gate" (a future the program completes to let them go), so that the workers are
 * busy and the queue is full at a known moment, then submits one more job. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cfutures.h"

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

enum { WORKERS = 2, QUEUE = 3, FILL = WORKERS + QUEUE, MAX_JOBS = FILL + 2 };

typedef struct job {
    int id;
    cf_future *started; /* if not NULL, completed when the job starts */
    cf_future *gate;    /* if not NULL, the job waits until it is completed */
    char ran_in[16];    /* the name of the thread that ran the job */
} job;

static int job_task(void *arg, void **result)
{
    job *j = arg;
    pthread_getname_np(pthread_self(), j->ran_in, sizeof(j->ran_in));
    if (j->started)
        cf_future_set_result(j->started, NULL, NULL);
    if (j->gate)
        cf_future_result(NULL, j->gate, CF_FOREVER);
    *result = j;
    return 0;
}

typedef struct scene {
    cf_executor *pool;
    cf_future *gate;
    job jobs[MAX_JOBS];
    cf_future *fs[MAX_JOBS];
    int n; /* jobs accepted */
} scene;

static void print_stats(const scene *s)
{
    cf_thread_pool_stats st;
    CHECK(cf_thread_pool_get_stats(&st, s->pool));
    printf("   pool: %u threads, %zu tasks queued\n", st.threads, st.queued);
}

/* Creates the pool and makes it busy: WORKERS running jobs, QUEUE queued ones. */
static void fill(scene *s, const char *title, cf_queue_policy policy, double queue_timeout)
{
    printf("%s\n", title);
    *s = (scene){0};
    cf_thread_pool_options opts = {
        .max_workers = WORKERS,
        .max_queue = QUEUE,
        .queue_policy = policy,
        .queue_timeout = queue_timeout,
        .thread_name_prefix = "worker",
    };
    CHECK(cf_thread_pool_new(&s->pool, &opts));
    CHECK(cf_future_new(&s->gate));
    cf_future *started[WORKERS];
    for (int i = 0; i < FILL; i++) {
        job *j = &s->jobs[i];
        *j = (job){.id = i, .gate = s->gate};
        if (i < WORKERS) {
            CHECK(cf_future_new(&started[i]));
            j->started = started[i];
        }
        CHECK(cf_executor_submit(&s->fs[i], s->pool, job_task, j));
        s->n++;
        /* Wait until each of the first jobs runs, so that the next ones stay queued. */
        if (i < WORKERS)
            CHECK(cf_future_result(NULL, started[i], CF_FOREVER));
    }
    for (int i = 0; i < WORKERS; i++)
        cf_future_unref(started[i]);
    printf("   %d jobs submitted: %d running (waiting on the gate), %d queued\n", FILL, WORKERS,
           QUEUE);
    print_stats(s);
}

/* Submits one more job without a gate and reports what happened. */
static int submit_one(scene *s)
{
    job *j = &s->jobs[s->n];
    *j = (job){.id = s->n};
    double t0 = now();
    int rc = cf_executor_submit(&s->fs[s->n], s->pool, job_task, j);
    printf("   submit job %d -> %s after %.2f s\n", j->id, cf_err_name(rc), now() - t0);
    if (rc == 0)
        s->n++;
    return rc;
}

static void open_gate(scene *s)
{
    if (!cf_future_done(s->gate))
        CHECK(cf_future_set_result(s->gate, NULL, NULL));
}

/* Opens the gate, waits for every accepted job and frees everything. */
static void finish(scene *s)
{
    open_gate(s);
    printf("   jobs ran in:");
    for (int i = 0; i < s->n; i++) {
        CHECK(cf_future_result(NULL, s->fs[i], CF_FOREVER));
        printf(" %d:%s", s->jobs[i].id, s->jobs[i].ran_in);
        cf_future_unref(s->fs[i]);
    }
    printf("\n\n");
    cf_future_unref(s->gate);
    CHECK(cf_executor_free(s->pool));
}

static void *open_gate_later(void *arg)
{
    struct timespec ts = {.tv_nsec = 200 * 1000000L};
    nanosleep(&ts, NULL);
    open_gate(arg);
    return NULL;
}

int main(void)
{
    pthread_setname_np(pthread_self(), "main");
    scene s;

    fill(&s, "1. CF_QUEUE_REJECT: a full queue refuses work at once", CF_QUEUE_REJECT, 0);
    if (submit_one(&s) != CF_EFULL)
        return EXIT_FAILURE;
    printf("   (the producer can retry later, drop the job, or report overload)\n");
    finish(&s);

    fill(&s, "2. CF_QUEUE_BLOCK: a full queue makes the producer wait for room", CF_QUEUE_BLOCK, 0);
    printf("   a helper thread opens the gate in 0.2 s, which lets the workers take queued jobs\n");
    pthread_t helper;
    if (pthread_create(&helper, NULL, open_gate_later, &s) != 0)
        return EXIT_FAILURE;
    CHECK(submit_one(&s));
    pthread_join(helper, NULL);
    finish(&s);

    fill(&s, "3. CF_QUEUE_BLOCK with queue_timeout 0.1: the producer waits, then gives up",
         CF_QUEUE_BLOCK, 0.1);
    if (submit_one(&s) != CF_ETIMEDOUT)
        return EXIT_FAILURE;
    finish(&s);

    fill(&s, "4. CF_QUEUE_CALLER_RUNS: a full queue makes the producer run the job itself",
         CF_QUEUE_CALLER_RUNS, 0);
    CHECK(submit_one(&s));
    job *last = &s.jobs[s.n - 1];
    printf("   job %d ran in thread \"%s\" and was done when submit returned: %s\n", last->id,
           last->ran_in, cf_future_done(s.fs[s.n - 1]) ? "yes" : "no");
    finish(&s);
    return 0;
}
