/* Hostile input for the event-loop adapters (adapter_uv.h, adapter_glib.h, adapter_libevent.h):
 * NULL arguments, a closed loop, a loop that runs or is claimed by another thread, a loop
 * attached twice, detach of NULL. Built with whichever host libraries were found (one
 * CF_TEST_ADAPTER_* macro each); the rows and the count follow test_hostile.c. */
#include <limits.h>
#include <stdio.h>

#include "cf_test_rows.h"
#ifdef CF_TEST_ADAPTER_UV
#include "cfutures/adapter_uv.h"
#endif
#ifdef CF_TEST_ADAPTER_GLIB
#include "cfutures/adapter_glib.h"
#endif
#ifdef CF_TEST_ADAPTER_LIBEVENT
#include <event2/event.h>

#include "cfutures/adapter_libevent.h"
#endif

/* A generic host: attach / detach / run-once for one adapter. */
typedef struct host_ops {
    const char *name;
    void *(*host_new)(void);
    void (*host_free)(void *host);
    int (*attach)(void **att, cf_loop *loop, void *host); /* att NULL: pass NULL out */
    void (*detach)(void *att);
    void (*run_once)(void *host); /* lets the host release what a detach closed */
    bool null_host_ok;            /* GLib: a NULL context is the global default one */
} host_ops;

#ifdef CF_TEST_ADAPTER_UV
static void *uv_host_new(void)
{
    uv_loop_t *uv = malloc(sizeof(*uv));
    ck_assert_int_eq(uv_loop_init(uv), 0);
    return uv;
}
static void uv_host_free(void *h)
{
    ck_assert_int_eq(uv_loop_close(h), 0);
    free(h);
}
static int uv_host_attach(void **att, cf_loop *loop, void *host)
{
    return cf_uv_attach((cf_uv_attachment **)att, loop, host);
}
static void uv_host_detach(void *att)
{
    cf_uv_detach(att);
}
static void uv_run_once(void *host)
{
    uv_run(host, UV_RUN_NOWAIT);
}
static const host_ops uv_ops = {"uv",           uv_host_new, uv_host_free, uv_host_attach,
                                uv_host_detach, uv_run_once, false};
#endif

#ifdef CF_TEST_ADAPTER_GLIB
static void *glib_new(void)
{
    return g_main_context_new();
}
static void glib_free(void *h)
{
    g_main_context_unref(h);
}
static int glib_attach(void **att, cf_loop *loop, void *host)
{
    return cf_glib_attach((cf_glib_attachment **)att, loop, host, G_PRIORITY_DEFAULT);
}
static void glib_detach(void *att)
{
    cf_glib_detach(att);
}
static void glib_once(void *host)
{
    g_main_context_iteration(host, FALSE);
}
static const host_ops glib_ops = {"glib",      glib_new,  glib_free, glib_attach,
                                  glib_detach, glib_once, true};
#endif

#ifdef CF_TEST_ADAPTER_LIBEVENT
static void *le_new(void)
{
    return event_base_new();
}
static void le_free(void *h)
{
    event_base_free(h);
}
static int le_attach(void **att, cf_loop *loop, void *host)
{
    return cf_libevent_attach((cf_libevent_attachment **)att, loop, host);
}
static void le_detach(void *att)
{
    cf_libevent_detach(att);
}
static void le_once(void *host)
{
    event_base_loop(host, EVLOOP_NONBLOCK);
}
static const host_ops le_ops = {"libevent", le_new, le_free, le_attach, le_detach, le_once, false};
#endif

static const host_ops *all_ops[] = {
#ifdef CF_TEST_ADAPTER_UV
    &uv_ops,
#endif
#ifdef CF_TEST_ADAPTER_GLIB
    &glib_ops,
#endif
#ifdef CF_TEST_ADAPTER_LIBEVENT
    &le_ops,
#endif
    NULL,
};

typedef struct foreign {
    const host_ops *ops;
    cf_loop *loop;
    void *host;
    int rc;
} foreign;

static void *attach_elsewhere(void *arg)
{
    foreign *f = arg;
    void *att = (void *)1;
    f->rc = f->ops->attach(&att, f->loop, f->host);
    if (f->rc == 0)
        f->ops->detach(att);
    return NULL;
}

typedef struct in_run {
    const host_ops *ops;
    void *host;
    int rc;
} in_run;

static void attach_while_running(cf_loop *loop, void *data)
{
    in_run *r = data;
    void *att = (void *)1;
    r->rc = r->ops->attach(&att, loop, r->host);
    if (r->rc == 0)
        r->ops->detach(att);
    cf_loop_stop(loop);
}

START_TEST(test_adapter_inputs)
{
    for (const host_ops *const *p = all_ops; *p; p++) {
        const host_ops *ops = *p;
        void *host = ops->host_new();
        cf_loop *loop;
        ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
        void *att = (void *)1;
        ROW(ops->attach(NULL, loop, host), CF_EINVAL);
        ROW(ops->attach(&att, NULL, host), CF_EINVAL);
        ROW(att == NULL, 1);
        if (!ops->null_host_ok)
            ROW(ops->attach(&att, loop, NULL), CF_EINVAL);
        ROW((ops->detach(NULL), 0), 0);

        /* A loop that runs: its own callback tries to attach it. */
        in_run r = {.ops = ops, .host = host};
        ck_assert_int_eq(cf_loop_call_soon(NULL, loop, attach_while_running, &r), 0);
        ck_assert_int_eq(cf_loop_run_forever(loop), 0);
        ROW(r.rc, CF_EINVALSTATE);

        /* Attached once; a second attachment of the same loop to the same host either works
         * or is refused by the host; from another thread it is refused. */
        void *a1 = NULL, *a2 = NULL;
        ROW(ops->attach(&a1, loop, host), 0);
        int rc = ops->attach(&a2, loop, host);
        ROW(rc, 0, CF_ESYSTEM, CF_ENOMEM);
        if (rc == 0)
            ops->detach(a2);
        foreign fo = {.ops = ops, .loop = loop, .host = host};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, attach_elsewhere, &fo), 0);
        pthread_join(t, NULL);
        ROW(fo.rc, CF_EPERM);
        ROW(cf_loop_run_forever(loop), CF_EINVALSTATE); /* embedded now */
        ops->detach(a1);
        ops->run_once(host);
        ops->run_once(host);

        /* A closed loop. */
        ROW(cf_loop_close(loop), 0);
        ROW(ops->attach(&att, loop, host), CF_ECLOSED);
        ROW(att == NULL, 1);
        ROW(cf_loop_free(loop), 0);
        ops->host_free(host);
    }
    cf_test_rows_report();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("hostile_adapters");
    TCase *tc = cf_test_tcase("adapters");
    tcase_add_test(tc, test_adapter_inputs);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
