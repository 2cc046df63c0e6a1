/* callbacks: done-callbacks, and futures that your own code completes.
 *
 * A future does not need an executor: cf_future_new() makes one that any thread can complete
 * with cf_future_set_result() or cf_future_set_exception(). This program shows
 *   1. in which order and in which thread done-callbacks run;
 *   2. that cancelling runs them too, exactly once;
 *   3. a thread that computes a value for a future, honouring cancellation, and who owns the
 *      value (the future frees it with the destructor you give);
 *   4. failures and byte results set by hand. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static const char *state_name(cf_future_state s)
{
    static const char *const names[] = {"PENDING", "RUNNING", "FINISHED", "CANCELLED"};
    return names[s];
}

/* A done-callback: it receives the future and the `data` given when it was added. */
static void say(cf_future *f, void *data)
{
    char thread[16] = "?";
    pthread_getname_np(pthread_self(), thread, sizeof(thread));
    printf("   callback %s: future is %s, running in thread \"%s\"\n", (const char *)data,
           state_name(cf_future_get_state(f)), thread);
}

/* ---- 1. order and thread ---- */

static void *complete_it(void *arg)
{
    pthread_setname_np(pthread_self(), "producer");
    CHECK(cf_future_set_result(arg, NULL, NULL));
    return NULL;
}

static void part1_order(void)
{
    printf("1. Callbacks run once each, in the order added, in the thread that completes the "
           "future\n");
    cf_future *f;
    CHECK(cf_future_new(&f));
    CHECK(cf_future_add_done_callback(f, say, "A"));
    CHECK(cf_future_add_done_callback(f, say, "B"));
    CHECK(cf_future_add_done_callback(f, say, "C"));
    pthread_t t;
    if (pthread_create(&t, NULL, complete_it, f) != 0)
        exit(EXIT_FAILURE);
    pthread_join(t, NULL);
    printf("   a callback added once the future is done runs at once, in the adding thread:\n");
    CHECK(cf_future_add_done_callback(f, say, "D"));
    cf_future_unref(f);
    printf("\n");
}

/* ---- 2. cancellation ---- */

static void part2_cancel(void)
{
    printf("2. Cancelling a pending future runs its callbacks in the cancelling thread\n");
    cf_future *f;
    CHECK(cf_future_new(&f));
    CHECK(cf_future_add_done_callback(f, say, "E"));
    printf("   cancel -> %s\n", cf_future_cancel(f) ? "true" : "false");
    printf("   cancel again -> %s (no second callback)\n", cf_future_cancel(f) ? "true" : "false");
    /* Whoever was going to do the work asks first, and learns that it should not. */
    printf("   set_running_or_notify_cancel -> %d (0: cancelled, skip the work)\n",
           cf_future_set_running_or_notify_cancel(f));
    printf("   result -> %s\n\n", cf_err_name(cf_future_result(NULL, f, 0)));
    cf_future_unref(f);
}

/* ---- 3. a value computed by your own thread ---- */

typedef struct answer {
    int value;
    char source[32];
} answer;

/* The destructor given with the result: the future calls it when its last reference goes. */
static void answer_free(void *p)
{
    printf("   answer_free: the last reference is gone, so the future frees its value\n");
    free(p);
}

static void *compute(void *arg)
{
    cf_future *f = arg; /* this thread owns one reference, taken for it by part3 */
    pthread_setname_np(pthread_self(), "compute");
    /* 1: we may start. 0: someone cancelled the future before we started: skip the work. */
    if (cf_future_set_running_or_notify_cancel(f) == 1) {
        answer *a = malloc(sizeof(*a));
        if (!a) {
            cf_future_set_exception(f, CF_ENOMEM, "no memory for the answer");
        } else {
            *a = (answer){.value = 6 * 7, .source = "the compute thread"};
            /* On success the future owns `a`; if it fails (the future was already done), the
             * value is still ours to free. */
            if (cf_future_set_result(f, a, answer_free) != 0)
                free(a);
        }
    }
    cf_future_unref(f);
    return NULL;
}

static void part3_own_thread(void)
{
    printf("3. A future completed by a thread of your own\n");
    cf_future *f;
    CHECK(cf_future_new(&f));
    /* The computing thread gets its own reference, so either side may finish first. */
    pthread_t t;
    if (pthread_create(&t, NULL, compute, cf_future_ref(f)) != 0)
        exit(EXIT_FAILURE);
    void *value;
    CHECK(cf_future_result(&value, f, 5.0));
    answer *a = value; /* borrowed: the future keeps ownership */
    printf("   result: %d from %s\n", a->value, a->source);
    answer other = {0};
    printf("   a second set_result -> %s (the first result stays)\n",
           cf_err_name(cf_future_set_result(f, &other, NULL)));
    pthread_join(t, NULL);
    printf("   releasing our reference...\n");
    cf_future_unref(f);
    printf("\n");
}

/* ---- 4. failures and bytes ---- */

static void part4_failure_and_bytes(void)
{
    printf("4. Failures and byte results\n");
    cf_future *f;
    CHECK(cf_future_new(&f));
    CHECK(cf_future_set_exception(f, -EIO, "disk read failed at block 7"));
    int code;
    const char *message;
    printf("   result -> %s; ", cf_err_name(cf_future_result(NULL, f, 0)));
    CHECK(cf_future_exception(&code, &message, f, 0));
    printf("exception -> code %d (-EIO), \"%s\"\n", code, message);
    cf_future_unref(f);

    CHECK(cf_future_new(&f));
    CHECK(cf_future_set_result_bytes(f, "hello, bytes", 12)); /* the future keeps a copy */
    const void *data;
    size_t len;
    CHECK(cf_future_result_bytes(&data, &len, f, 0));
    printf("   result_bytes -> %zu bytes: \"%.*s\"\n", len, (int)len, (const char *)data);
    cf_future_unref(f);
}

int main(void)
{
    pthread_setname_np(pthread_self(), "main");
    part1_order();
    part2_cancel();
    part3_own_thread();
    part4_failure_and_bytes();
    return 0;
}
