/* A program that uses the libuv adapter as an outside project would (pkg-config cfutures-uv,
 * CMake's cfutures::uv component, meson's dependency('cfutures-uv')): a cf_loop attached to a
 * libuv loop runs a thread-pool task through run_in_executor, and its loop future's
 * done-callback stops the libuv loop. Exit status 0 means the result came back on the libuv
 * loop. */
/* uv.h uses POSIX types (pthread_rwlock_t) that strict -std=c11 hides without this. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>

#include <cfutures.h>
#include <cfutures/adapter_uv.h>

typedef struct state {
    uv_loop_t uv;
    void *value;
    int rc;
} state;

static int triple(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * 3);
    return 0;
}

static void on_done(cf_future *f, void *data)
{
    state *s = data;
    s->rc = cf_future_result(&s->value, f, 0);
    uv_stop(&s->uv);
}

int main(void)
{
    state s = {.rc = CF_ETIMEDOUT};
    cf_loop *loop = NULL;
    cf_uv_attachment *att = NULL;
    cf_future *f = NULL;
    if (uv_loop_init(&s.uv) != 0)
        return 1;
    int rc = cf_loop_new(&loop, NULL);
    if (rc == 0)
        rc = cf_uv_attach(&att, loop, &s.uv);
    if (rc == 0)
        rc = cf_loop_run_in_executor(&f, loop, NULL, triple, (void *)(intptr_t)14);
    if (rc == 0)
        rc = cf_future_add_done_callback(f, on_done, &s);
    if (rc == 0) {
        uv_run(&s.uv, UV_RUN_DEFAULT);
        rc = s.rc;
    }
    cf_future_unref(f);
    cf_uv_detach(att);
    uv_run(&s.uv, UV_RUN_DEFAULT); /* the poll handle's close callback */
    cf_loop_free(loop);
    uv_loop_close(&s.uv);
    if (rc != 0 || (intptr_t)s.value != 42) {
        fprintf(stderr, "consumer-uv: %s\n", cf_strerror(rc));
        return 1;
    }
    printf("consumer-uv: the libuv loop got 14*3 = 42 from a thread pool\n");
    return 0;
}
