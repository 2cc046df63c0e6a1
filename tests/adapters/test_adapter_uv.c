/* The libuv adapter: a cf_loop driven by uv_run delivers timers and executor completions on
 * the libuv loop's thread. */
#include "cfutures/adapter_uv.h"
#include "loop_adapter_test.h"

typedef struct uv_host {
    uv_loop_t uv;
    cf_uv_attachment *att;
} uv_host;

static void uv_setup(adapter_host *h)
{
    uv_host *u = calloc(1, sizeof(*u));
    ck_assert_int_eq(uv_loop_init(&u->uv), 0);
    ck_assert_int_eq(cf_uv_attach(&u->att, h->loop, &u->uv), 0);
    h->impl = u;
}

static void uv_run_host(adapter_host *h)
{
    uv_run(&((uv_host *)h->impl)->uv, UV_RUN_DEFAULT);
}

static void uv_stop_host(adapter_host *h)
{
    uv_stop(&((uv_host *)h->impl)->uv);
}

static void uv_teardown(adapter_host *h)
{
    uv_host *u = h->impl;
    cf_uv_detach(u->att);
    uv_run(&u->uv, UV_RUN_DEFAULT); /* runs the close callback, then has nothing left */
    ck_assert_int_eq(uv_loop_close(&u->uv), 0);
    free(u);
}

static const adapter_ops uv_ops = {uv_setup, uv_run_host, uv_stop_host, uv_teardown};

START_TEST(test_uv_delivers_on_loop_thread)
{
    adapter_run_scenario(&uv_ops);
}
END_TEST

START_TEST(test_uv_attach_arguments)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    uv_loop_t uv;
    ck_assert_int_eq(uv_loop_init(&uv), 0);
    cf_uv_attachment *att = (cf_uv_attachment *)1;
    ck_assert_int_eq(cf_uv_attach(NULL, loop, &uv), CF_EINVAL);
    ck_assert_int_eq(cf_uv_attach(&att, NULL, &uv), CF_EINVAL);
    ck_assert_ptr_null(att);
    ck_assert_int_eq(cf_uv_attach(&att, loop, NULL), CF_EINVAL);
    cf_uv_detach(NULL);
    cf_loop_close(loop);
    ck_assert_int_eq(cf_uv_attach(&att, loop, &uv), CF_ECLOSED);
    ck_assert_int_eq(uv_loop_close(&uv), 0);
    cf_loop_free(loop);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("adapter_uv");
    TCase *tc = cf_test_tcase("libuv");
    tcase_add_test(tc, test_uv_delivers_on_loop_thread);
    tcase_add_test(tc, test_uv_attach_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
