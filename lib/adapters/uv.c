/* libuv adapter: a uv_poll_t on the cf_loop's descriptor that dispatches it.
 *
 * This file is its own library (cfutures-uv) so that libcfutures never depends on libuv. It
 * cannot reach libcfutures' internal allocator, so its one allocation uses malloc. */
#include <stdlib.h>

#include "cfutures/adapter_uv.h"

struct cf_uv_attachment {
    uv_poll_t poll; /* first: the close callback gets the handle */
    cf_loop *loop;
};

static void on_closed(uv_handle_t *handle)
{
    free(handle);
}

static void on_readable(uv_poll_t *poll, int status, int events)
{
    (void)events;
    if (status == 0)
        cf_loop_dispatch(((cf_uv_attachment *)poll)->loop);
}

int cf_uv_attach(cf_uv_attachment **out, cf_loop *loop, uv_loop_t *uv_loop)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !uv_loop)
        return CF_EINVAL;
    int fd = cf_loop_fd(loop);
    if (fd < 0)
        return fd;
    cf_uv_attachment *att = calloc(1, sizeof(*att));
    if (!att)
        return CF_ENOMEM;
    att->loop = loop;
    int rc = uv_poll_init(uv_loop, &att->poll, fd);
    if (rc != 0) {
        free(att);
        return rc == UV_ENOMEM ? CF_ENOMEM : CF_ESYSTEM;
    }
    rc = uv_poll_start(&att->poll, UV_READABLE, on_readable);
    if (rc != 0) {
        /* An initialised handle can only go through uv_close. */
        uv_close((uv_handle_t *)&att->poll, on_closed);
        return CF_ESYSTEM;
    }
    *out = att;
    return 0;
}

void cf_uv_detach(cf_uv_attachment *att)
{
    if (!att)
        return;
    uv_poll_stop(&att->poll);
    uv_close((uv_handle_t *)&att->poll, on_closed);
}
