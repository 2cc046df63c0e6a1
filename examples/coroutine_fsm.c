/* Coroutine recipe: a finite-state machine whose states are coroutines.
 *
 *     start -> state1 | state2;  state1 -> state2 | state3;  state2 -> state1 | state3;
 *     state3 -> state1 | end
 *
 * Each state pauses (asyncio.sleep in the Python original, cf_sleep here: the loop stays free
 * for other work), picks a random transition and "awaits" the next state. With stackful tasks,
 * awaiting another coroutine is an ordinary C call: each state returns the description of the
 * path taken from it, and the caller appends its own line, as the Python version does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"

enum { MAX_STEPS = 12, PAUSE_MS = 150 };

static int steps;

static char *end_state(int value);
static char *state1(int value);
static char *state2(int value);
static char *state3(int value);

/* Pauses, then returns 0 or 1 (forced to `forced` once the walk gets long). */
static int pause_and_pick(int forced)
{
    cf_sleep(PAUSE_MS / 1000.0);
    printf("...evaluating...\n");
    return ++steps >= MAX_STEPS ? forced : rand() % 2;
}

/* "<this state's line>" followed by the text of the state it called. */
static char *describe(const char *name, int value, char *rest)
{
    size_t n = strlen(name) + strlen(rest) + 64;
    char *s = malloc(n);
    snprintf(s, n, "%s with transition value = %d\n%s calling %s", name, value, name, rest);
    free(rest);
    return s;
}

static char *end_state(int value)
{
    char *s = malloc(64);
    snprintf(s, 64, "End State with transition value = %d\n", value);
    printf("...stop computation...\n");
    return s;
}

static char *state1(int value)
{
    int next = pause_and_pick(1);
    return describe("State 1", value, next == 0 ? state2(next) : state3(next));
}

static char *state2(int value)
{
    int next = pause_and_pick(1);
    return describe("State 2", value, next == 0 ? state1(next) : state3(next));
}

static char *state3(int value)
{
    int next = pause_and_pick(1);
    return describe("State 3", value, next == 0 ? state1(next) : end_state(next));
}

static int start_state(void *arg, void **result)
{
    (void)arg;
    printf("Start State called\n");
    int next = pause_and_pick(0);
    char *rest = next == 0 ? state2(next) : state1(next);
    printf("Resume of the Transition:\nStart State calling %s", rest);
    *result = rest;
    cf_task_set_result_dtor(free);
    return 0;
}

int main(void)
{
    srand((unsigned)time(NULL));
    cf_loop *loop;
    cf_future *task;
    if (cf_loop_new(&loop, NULL) != 0)
        return 1;
    int rc = cf_loop_create_task(&task, loop, start_state, NULL, NULL);
    if (rc) {
        fprintf(stderr, "cf_loop_create_task: %s\n", cf_strerror(rc));
        cf_loop_free(loop);
        return 1;
    }
    rc = cf_loop_run_until_complete(NULL, loop, task);
    printf("(%d transitions)\n", steps);
    cf_future_unref(task);
    cf_loop_free(loop);
    return rc ? 1 : 0;
}
