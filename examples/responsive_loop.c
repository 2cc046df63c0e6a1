/* A responsive loop: a timer ticks every 50 ms and prints how late each tick is, while a task
 * offloads blocking work to the thread pool (a blocking sleep, standing for blocking I/O) and
 * CPU-bound work to the process pool. The loop never blocks, so the ticks stay on time; run
 * the same work inline on the loop and every tick would wait for it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"
#include "cfutures/process_pool.h"

#define TICK 0.05

typedef struct ticker {
    double next;     /* when the next tick is due */
    double max_late; /* worst lateness seen */
    int ticks;
    bool stop;
} ticker;

static void tick(cf_loop *loop, void *data)
{
    ticker *t = data;
    double late = cf_loop_time(loop) - t->next;
    if (late > t->max_late)
        t->max_late = late;
    printf("tick %2d  late by %6.3f ms\n", ++t->ticks, late * 1e3);
    if (t->stop)
        return;
    t->next += TICK;
    cf_loop_call_at(NULL, loop, t->next, tick, t);
}

/* Blocking work for the thread pool: sleeps, as a blocking read would. */
static int blocking_io(void *arg, void **result)
{
    struct timespec ts = {.tv_nsec = 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    *result = arg;
    return 0;
}

/* CPU-bound work for the process pool: counts primes below the number it is given. */
static int count_primes(const void *arg, size_t len, void **result, size_t *result_len)
{
    unsigned limit;
    if (len != sizeof(limit))
        return CF_EINVAL;
    memcpy(&limit, arg, sizeof(limit));
    unsigned count = 0;
    for (unsigned n = 2; n < limit; n++) {
        bool prime = true;
        for (unsigned d = 2; d * d <= n && prime; d++)
            prime = n % d != 0;
        count += prime;
    }
    unsigned *out = malloc(sizeof(*out));
    *out = count;
    *result = out;
    *result_len = sizeof(*out);
    return 0;
}

typedef struct work {
    cf_executor *processes; /* NULL if the process pool could not start */
    ticker *ticker;
} work;

static int offload(void *arg, void **result)
{
    (void)result;
    work *w = arg;
    cf_loop *loop = cf_loop_current();
    for (int i = 0; i < 2; i++) {
        cf_future *f;
        double t0 = cf_loop_time(loop);
        cf_loop_run_in_executor(&f, loop, NULL, blocking_io, NULL);
        cf_await(NULL, f);
        printf("  thread pool: blocking call %d done in %.0f ms\n", i + 1,
               (cf_loop_time(loop) - t0) * 1e3);
        cf_future_unref(f);
    }
    if (w->processes) {
        unsigned limit = 1500000;
        cf_future *f;
        double t0 = cf_loop_time(loop);
        cf_loop_run_in_executor_bytes(&f, loop, w->processes, count_primes, &limit, sizeof(limit));
        if (cf_await(NULL, f) == 0) {
            const void *data;
            cf_future_result_bytes(&data, NULL, f, 0);
            printf("  process pool: %u primes below %u, computed in %.0f ms\n",
                   *(const unsigned *)data, limit, (cf_loop_time(loop) - t0) * 1e3);
        }
        cf_future_unref(f);
    }
    w->ticker->stop = true;
    return 0;
}

int main(void)
{
    cf_loop *loop;
    if (cf_loop_new(&loop, NULL) != 0)
        return 1;
    work w = {0};
    cf_process_pool_options po = {.max_workers = 1};
    if (cf_process_pool_new(&w.processes, &po) != 0)
        printf("(no process pool here: skipping the CPU-bound part)\n");
    ticker t = {.next = cf_loop_time(loop) + TICK};
    w.ticker = &t;
    cf_loop_call_at(NULL, loop, t.next, tick, &t);
    cf_future *task;
    int rc = cf_loop_create_task(&task, loop, offload, &w, NULL);
    if (rc) {
        fprintf(stderr, "cf_loop_create_task: %s\n", cf_strerror(rc));
        return 1;
    }
    cf_loop_run_until_complete(NULL, loop, task);
    printf("%d ticks while the work ran; worst lateness %.3f ms\n", t.ticks, t.max_late * 1e3);
    cf_future_unref(task);
    cf_loop_free(loop);
    cf_executor_free(w.processes);
    return 0;
}
