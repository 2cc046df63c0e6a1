/* The scenario every event-loop adapter test runs, parameterised by the host loop.
 *
 * On its own thread, the host loop is created and the cf_loop attached to it; then, all inside
 * the host loop: a cf timer fires and releases a thread-pool task blocked on an event; the task's
 * completion wakes the host loop through the cf_loop's descriptor; the loop future's
 * done-callback runs, on the host thread, and stops the host loop. */
#ifndef CF_LOOP_ADAPTER_TEST_H
#define CF_LOOP_ADAPTER_TEST_H

#include "cf_test.h"

typedef struct adapter_host adapter_host;

/* What the scenario needs from a host loop. */
typedef struct adapter_ops {
    void (*setup)(adapter_host *h);    /* create the host loop and attach h->loop */
    void (*run)(adapter_host *h);      /* run until stop() */
    void (*stop)(adapter_host *h);     /* from a callback running inside run() */
    void (*teardown)(adapter_host *h); /* detach and destroy the host loop */
} adapter_ops;

struct adapter_host {
    const adapter_ops *ops;
    void *impl; /* the host loop's own state */
    cf_loop *loop;
    cf_executor *ex;
    cf_test_event go;
    pthread_t host_thread;
    pthread_t timer_thread, done_thread;
    int timer_calls, done_calls;
    void *value;
};

static void adapter_timer_cb(cf_loop *loop, void *data)
{
    (void)loop;
    adapter_host *h = data;
    h->timer_calls++;
    h->timer_thread = pthread_self();
    cf_test_event_set(&h->go);
}

static int adapter_blocked_task(void *arg, void **result)
{
    adapter_host *h = arg;
    ck_assert(cf_test_event_wait(&h->go, CF_TEST_LONG));
    *result = (void *)"completed in the pool";
    return 0;
}

static void adapter_done_cb(cf_future *f, void *data)
{
    adapter_host *h = data;
    h->done_calls++;
    h->done_thread = pthread_self();
    ck_assert_int_eq(cf_future_result(&h->value, f, 0), 0);
    h->ops->stop(h);
}

static void *adapter_host_main(void *arg)
{
    adapter_host *h = arg;
    h->ops->setup(h);
    cf_future *f;
    ck_assert_int_eq(cf_loop_run_in_executor(&f, h->loop, h->ex, adapter_blocked_task, h), 0);
    ck_assert_int_eq(cf_future_add_done_callback(f, adapter_done_cb, h), 0);
    ck_assert_int_eq(cf_loop_call_later(NULL, h->loop, 0.005, adapter_timer_cb, h), 0);
    h->ops->run(h);
    h->ops->teardown(h);
    cf_future_unref(f);
    return NULL;
}

/* Runs the scenario and checks where and how often each callback ran. */
static void adapter_run_scenario(const adapter_ops *ops)
{
    adapter_host h = {.ops = ops};
    ck_assert_int_eq(cf_loop_new(&h.loop, NULL), 0);
    ck_assert_int_eq(cf_thread_pool_new(&h.ex, NULL), 0);
    cf_test_event_init(&h.go);
    pthread_create(&h.host_thread, NULL, adapter_host_main, &h);
    pthread_join(h.host_thread, NULL);
    ck_assert_int_eq(h.timer_calls, 1);
    ck_assert_int_eq(h.done_calls, 1);
    ck_assert(pthread_equal(h.timer_thread, h.host_thread));
    ck_assert(pthread_equal(h.done_thread, h.host_thread));
    ck_assert_str_eq(h.value, "completed in the pool");
    /* Detached: the loop is idle again and any thread may adopt and free it. */
    ck_assert_int_eq(cf_loop_free(h.loop), 0);
    cf_executor_free(h.ex);
    cf_test_event_destroy(&h.go);
}

#endif
