/* custom_executor: an executor written outside the library (thread_per_task.c, on the public
 * <cfutures/executor_impl.h>) used through the ordinary API: submit, bytes tasks, map, wait,
 * as_completed, done-callbacks, shutdown with cancel_futures, and an event loop awaiting one of
 * its futures. Nothing here knows which executor it talks to, except the constructor. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfutures.h"
#include "thread_per_task.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %s\n", __FILE__, __LINE__, #call,                  \
                    cf_err_name(rc_));                                                             \
            exit(EXIT_FAILURE);                                                                    \
        }                                                                                          \
    } while (0)

static int square(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * (intptr_t)arg);
    return 0;
}

static int shout(const void *arg, size_t len, void **result, size_t *result_len)
{
    char *out = malloc(len + 1);
    if (!out)
        return CF_ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(((const char *)arg)[i] & ~0x20);
    out[len] = '!';
    *result = out;
    *result_len = len + 1;
    return 0;
}

static int refuse(void *arg, void **result)
{
    (void)result;
    return cf_task_fail(CF_EINVAL, "refusing %ld", (long)(intptr_t)arg);
}

static void announce(cf_future *f, void *data)
{
    void *v;
    if (cf_future_result(&v, f, 0) == 0)
        printf("   callback: %s = %ld\n", (const char *)data, (long)(intptr_t)v);
}

int main(void)
{
    cf_executor *ex;
    CHECK(thread_per_task_new(&ex));
    printf("executor \"%s\"\n", cf_executor_name(ex));

    printf("1. submit, a done-callback, a failure with its message\n");
    cf_future *f, *bad;
    CHECK(cf_executor_submit(&f, ex, square, (void *)12));
    CHECK(cf_future_add_done_callback(f, announce, "12 squared"));
    CHECK(cf_executor_submit(&bad, ex, refuse, (void *)7));
    int code;
    const char *message;
    CHECK(cf_future_exception(&code, &message, bad, CF_FOREVER));
    printf("   failure: %s, \"%s\"\n", cf_err_name(code), message);
    cf_future *both[] = {f, bad};
    CHECK(cf_wait(NULL, NULL, both, 2, CF_ALL_COMPLETED, CF_FOREVER));
    cf_future_unref(f);
    cf_future_unref(bad);

    printf("2. map, results in input order\n");
    void *args[6];
    for (intptr_t i = 0; i < 6; i++)
        args[i] = (void *)(i + 1);
    cf_map *it;
    CHECK(cf_executor_map(&it, ex, square, args, 6, CF_FOREVER, 0));
    void *v;
    printf("  ");
    while (cf_map_next(&v, it) == 0)
        printf(" %ld", (long)(intptr_t)v);
    printf("\n");
    cf_map_free(it);

    printf("3. bytes tasks and as_completed\n");
    const char *words[] = {"alpha", "beta", "gamma"};
    cf_future *fs[3];
    for (int i = 0; i < 3; i++)
        CHECK(cf_executor_submit_bytes(&fs[i], ex, shout, words[i], strlen(words[i])));
    cf_as_completed *ac;
    CHECK(cf_as_completed_new(&ac, fs, 3, CF_FOREVER));
    cf_future *done;
    while (cf_as_completed_next(&done, ac) == 0) {
        const void *data;
        size_t len;
        CHECK(cf_future_result_bytes(&data, &len, done, 0));
        printf("   %.*s\n", (int)len, (const char *)data); /* `done` is borrowed */
    }
    cf_as_completed_free(ac);
    for (int i = 0; i < 3; i++)
        cf_future_unref(fs[i]);

    printf("4. an event loop awaits a future of this executor\n");
    cf_loop *loop;
    CHECK(cf_loop_new(&loop, NULL));
    CHECK(cf_loop_run_in_executor(&f, loop, ex, square, (void *)9));
    CHECK(cf_loop_run_until_complete(&v, loop, f));
    printf("   loop got %ld\n", (long)(intptr_t)v);
    cf_future_unref(f);
    CHECK(cf_loop_free(loop));

    printf("5. shutdown: later submits are refused\n");
    CHECK(cf_executor_shutdown(ex, true, true));
    printf("   submit after shutdown: %s; task threads left: %d\n",
           cf_err_name(cf_executor_submit(&f, ex, square, (void *)1)), thread_per_task_threads(ex));
    CHECK(cf_executor_free(ex));
    return 0;
}
