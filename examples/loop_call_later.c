/* Event loop recipe: three callbacks A -> B -> C -> A ... re-schedule each other with
 * call_later (random delays) until loop.time() + 1 >= end_time, then stop the loop.
 *
 * The Python original (asyncio) starts A with call_soon, runs run_forever() and closes the
 * loop; this is the same program with cf_loop. Delays are shortened so it runs in ~2 s. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cfutures.h"

typedef struct schedule {
    double start;
    double end_time;
} schedule;

static void task_a(cf_loop *loop, void *data);
static void task_b(cf_loop *loop, void *data);
static void task_c(cf_loop *loop, void *data);

/* Schedules `next` after a random delay, or stops the loop when time is nearly up. */
static void then(cf_loop *loop, schedule *s, const char *name, cf_loop_cb next)
{
    double delay = 0.1 + (rand() % 5) * 0.1;
    printf("[%5.2f s] %s called\n", cf_loop_time(loop) - s->start, name);
    if (cf_loop_time(loop) + 1.0 < s->end_time) {
        printf("          %s schedules the next task in %.1f s\n", name, delay);
        cf_loop_call_later(NULL, loop, delay, next, s);
    } else {
        printf("          %s: less than 1 s left, stopping the loop\n", name);
        cf_loop_stop(loop);
    }
}

static void task_a(cf_loop *loop, void *data)
{
    then(loop, data, "task_A", task_b);
}

static void task_b(cf_loop *loop, void *data)
{
    then(loop, data, "task_B", task_c);
}

static void task_c(cf_loop *loop, void *data)
{
    then(loop, data, "task_C", task_a);
}

int main(void)
{
    srand((unsigned)time(NULL));
    cf_loop *loop;
    int rc = cf_loop_new(&loop, NULL);
    if (rc) {
        fprintf(stderr, "cf_loop_new: %s\n", cf_strerror(rc));
        return 1;
    }
    schedule s = {.start = cf_loop_time(loop)};
    s.end_time = s.start + 3.0;
    cf_loop_call_soon(NULL, loop, task_a, &s);
    cf_loop_run_forever(loop);
    printf("loop stopped after %.2f s\n", cf_loop_time(loop) - s.start);
    cf_loop_close(loop);
    cf_loop_free(loop);
    return 0;
}
