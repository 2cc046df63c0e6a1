/* libevent adapter: a persistent read event on the cf_loop's descriptor that dispatches it. Its
 * own library (cfutures-libevent), so that libcfutures never depends on libevent. The
 * attachment is the event itself (allocated by libevent). Level-triggered, like the
 * descriptor: no EV_ET. */
#include "cfutures/adapter_libevent.h"

static void on_readable(evutil_socket_t fd, short what, void *data)
{
    (void)fd;
    (void)what;
    cf_loop_dispatch(data);
}

int cf_libevent_attach(cf_libevent_attachment **out, cf_loop *loop, struct event_base *base)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !base)
        return CF_EINVAL;
    int fd = cf_loop_fd(loop);
    if (fd < 0)
        return fd;
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, loop);
    if (!ev)
        return CF_ENOMEM;
    if (event_add(ev, NULL) != 0) {
        event_free(ev);
        return CF_ENOMEM;
    }
    *out = (cf_libevent_attachment *)ev;
    return 0;
}

void cf_libevent_detach(cf_libevent_attachment *att)
{
    if (att)
        event_free((struct event *)att);
}
