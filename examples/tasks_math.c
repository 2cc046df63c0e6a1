/* Task recipe: factorial, Fibonacci and a binomial coefficient computed "at the same time" by
 * three tasks on one thread. Each sleeps between steps, so their output interleaves; the main
 * program waits for all three with run_until_complete(gather(...)). */
#include <stdint.h>
#include <stdio.h>

#include "cfutures.h"

#define STEP 0.1 /* seconds between steps (1 s in the Python original) */

static int factorial(void *arg, void **result)
{
    int n = (int)(intptr_t)arg;
    unsigned long long f = 1;
    for (int i = 2; i <= n; i++) {
        printf("Task: compute factorial(%d)\n", i);
        cf_sleep(STEP);
        f *= (unsigned long long)i;
    }
    printf("Task: factorial(%d) = %llu\n", n, f);
    *result = (void *)(uintptr_t)f;
    return 0;
}

static int fibonacci(void *arg, void **result)
{
    int n = (int)(intptr_t)arg;
    unsigned long long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        printf("Task: compute fibonacci(%d)\n", i);
        cf_sleep(STEP);
        unsigned long long t = a + b;
        a = b;
        b = t;
    }
    printf("Task: fibonacci(%d) = %llu\n", n, a);
    *result = (void *)(uintptr_t)a;
    return 0;
}

typedef struct nk {
    int n, k;
} nk;

static int binomial_coefficient(void *arg, void **result)
{
    nk *p = arg;
    unsigned long long r = 1;
    for (int i = 1; i <= p->k; i++) {
        r = r * (unsigned long long)(p->n - i + 1) /
            (unsigned long long)i; /* exact at every step */
        printf("Task: compute binomial_coefficient(%d)\n", i);
        cf_sleep(STEP);
    }
    printf("Task: binomial_coefficient(%d, %d) = %llu\n", p->n, p->k, r);
    *result = (void *)(uintptr_t)r;
    return 0;
}

int main(void)
{
    cf_loop *loop;
    if (cf_loop_new(&loop, NULL) != 0)
        return 1;
    static nk binom = {20, 10};
    cf_future *tasks[3];
    int rc = cf_loop_create_task(&tasks[0], loop, factorial, (void *)10, NULL);
    if (rc) {
        fprintf(stderr, "cf_loop_create_task: %s\n", cf_strerror(rc));
        return 1;
    }
    cf_loop_create_task(&tasks[1], loop, fibonacci, (void *)10, NULL);
    cf_loop_create_task(&tasks[2], loop, binomial_coefficient, &binom, NULL);
    cf_future *all;
    cf_loop_gather(&all, loop, tasks, 3);
    void **values;
    double t0 = cf_loop_time(loop);
    rc = cf_loop_run_until_complete((void **)&values, loop, all);
    if (rc == 0)
        printf("all done in %.2f s: %llu %llu %llu\n", cf_loop_time(loop) - t0,
               (unsigned long long)(uintptr_t)values[0], (unsigned long long)(uintptr_t)values[1],
               (unsigned long long)(uintptr_t)values[2]);
    cf_future_unref(all);
    for (int i = 0; i < 3; i++)
        cf_future_unref(tasks[i]);
    cf_loop_free(loop);
    return rc ? 1 : 0;
}
