/* The libevent adapter: a cf_loop driven by event_base_dispatch delivers timers and executor
 * completions on the base's thread, without libevent threading support enabled. */
#include "cfutures/adapter_libevent.h"
#include "loop_adapter_test.h"

typedef struct libevent_host {
    struct event_base *base;
    cf_libevent_attachment *att;
} libevent_host;

static void libevent_setup(adapter_host *h)
{
    libevent_host *e = calloc(1, sizeof(*e));
    e->base = event_base_new();
    ck_assert_ptr_nonnull(e->base);
    ck_assert_int_eq(cf_libevent_attach(&e->att, h->loop, e->base), 0);
    h->impl = e;
}

static void libevent_run(adapter_host *h)
{
    event_base_dispatch(((libevent_host *)h->impl)->base);
}

static void libevent_stop(adapter_host *h)
{
    event_base_loopbreak(((libevent_host *)h->impl)->base);
}

static void libevent_teardown(adapter_host *h)
{
    libevent_host *e = h->impl;
    cf_libevent_detach(e->att);
    event_base_free(e->base);
    free(e);
}

static const adapter_ops libevent_ops = {libevent_setup, libevent_run, libevent_stop,
                                         libevent_teardown};

START_TEST(test_libevent_delivers_on_base_thread)
{
    adapter_run_scenario(&libevent_ops);
}
END_TEST

START_TEST(test_libevent_attach_arguments)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    struct event_base *base = event_base_new();
    cf_libevent_attachment *att = (cf_libevent_attachment *)1;
    ck_assert_int_eq(cf_libevent_attach(NULL, loop, base), CF_EINVAL);
    ck_assert_int_eq(cf_libevent_attach(&att, NULL, base), CF_EINVAL);
    ck_assert_ptr_null(att);
    ck_assert_int_eq(cf_libevent_attach(&att, loop, NULL), CF_EINVAL);
    cf_libevent_detach(NULL);
    event_base_free(base);
    cf_loop_free(loop);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("adapter_libevent");
    TCase *tc = cf_test_tcase("libevent");
    tcase_add_test(tc, test_libevent_delivers_on_base_thread);
    tcase_add_test(tc, test_libevent_attach_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
