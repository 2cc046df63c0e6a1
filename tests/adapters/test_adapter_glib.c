/* The GLib adapter: a cf_loop driven by a GMainLoop on its own GMainContext delivers timers and
 * executor completions on the thread iterating that context. */
#include "cfutures/adapter_glib.h"
#include "loop_adapter_test.h"

typedef struct glib_host {
    GMainContext *context;
    GMainLoop *main_loop;
    cf_glib_attachment *att;
} glib_host;

static void glib_setup(adapter_host *h)
{
    glib_host *g = calloc(1, sizeof(*g));
    g->context = g_main_context_new();
    g->main_loop = g_main_loop_new(g->context, FALSE);
    ck_assert_int_eq(cf_glib_attach(&g->att, h->loop, g->context, G_PRIORITY_DEFAULT), 0);
    h->impl = g;
}

static void glib_run(adapter_host *h)
{
    g_main_loop_run(((glib_host *)h->impl)->main_loop);
}

static void glib_stop(adapter_host *h)
{
    g_main_loop_quit(((glib_host *)h->impl)->main_loop);
}

static void glib_teardown(adapter_host *h)
{
    glib_host *g = h->impl;
    cf_glib_detach(g->att);
    g_main_loop_unref(g->main_loop);
    g_main_context_unref(g->context);
    free(g);
}

static const adapter_ops glib_ops = {glib_setup, glib_run, glib_stop, glib_teardown};

START_TEST(test_glib_delivers_on_context_thread)
{
    adapter_run_scenario(&glib_ops);
}
END_TEST

START_TEST(test_glib_attach_arguments)
{
    cf_glib_attachment *att = (cf_glib_attachment *)1;
    ck_assert_int_eq(cf_glib_attach(NULL, NULL, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf_glib_attach(&att, NULL, NULL, 0), CF_EINVAL);
    ck_assert_ptr_null(att);
    cf_glib_detach(NULL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("adapter_glib");
    TCase *tc = cf_test_tcase("glib");
    tcase_add_test(tc, test_glib_delivers_on_context_thread);
    tcase_add_test(tc, test_glib_attach_arguments);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
