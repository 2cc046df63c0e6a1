/* Futures recipe: two coroutines compute something, then set the result of a loop future;
 * done-callbacks on those futures print the results. The loop runs until both coroutines are
 * done (run_until_complete of their gather).
 *
 * Usage: futures_callbacks [N1 N2]   (sum of 1..N1, factorial of N2; defaults 100 and 10) */
#include <stdio.h>
#include <stdlib.h>

#include "cfutures.h"

typedef struct job {
    cf_future *future;
    int n;
} job;

static char *format(const char *what, unsigned long long value)
{
    char *s = malloc(96);
    snprintf(s, 96, "%s result = %llu", what, value);
    return s;
}

static int first_coroutine(void *arg, void **result)
{
    (void)result;
    job *j = arg;
    unsigned long long count = 0;
    for (int i = 1; i <= j->n; i++)
        count += (unsigned long long)i;
    cf_sleep(0.4);
    return cf_future_set_result(j->future, format("First coroutine (sum of N integers)", count),
                                free);
}

static int second_coroutine(void *arg, void **result)
{
    (void)result;
    job *j = arg;
    unsigned long long count = 1;
    for (int i = 2; i <= j->n; i++)
        count *= (unsigned long long)i;
    cf_sleep(0.3);
    return cf_future_set_result(j->future, format("Second coroutine (factorial)", count), free);
}

static void got_result(cf_future *future, void *data)
{
    (void)data;
    void *text;
    if (cf_future_result(&text, future, 0) == 0)
        printf("%s\n", (char *)text);
}

int main(int argc, char **argv)
{
    int n1 = argc > 2 ? atoi(argv[1]) : 100;
    int n2 = argc > 2 ? atoi(argv[2]) : 10;
    cf_loop *loop;
    if (cf_loop_new(&loop, NULL) != 0)
        return 1;
    job jobs[2] = {{.n = n1}, {.n = n2}};
    cf_fn fns[2] = {first_coroutine, second_coroutine};
    cf_future *tasks[2];
    for (int i = 0; i < 2; i++) {
        cf_loop_create_future(&jobs[i].future, loop);
        cf_future_add_done_callback(jobs[i].future, got_result, NULL);
        int rc = cf_loop_create_task(&tasks[i], loop, fns[i], &jobs[i], NULL);
        if (rc) {
            fprintf(stderr, "cf_loop_create_task: %s\n", cf_strerror(rc));
            return 1;
        }
    }
    cf_future *both;
    cf_loop_gather(&both, loop, tasks, 2);
    /* Each callback runs on the loop in the iteration after its set_result, before the
     * gather (which learns of the task's end one iteration later) completes. */
    cf_loop_run_until_complete(NULL, loop, both);
    cf_future_unref(both);
    for (int i = 0; i < 2; i++) {
        cf_future_unref(tasks[i]);
        cf_future_unref(jobs[i].future);
    }
    cf_loop_free(loop);
    return 0;
}
