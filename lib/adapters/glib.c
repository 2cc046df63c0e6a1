/* GLib adapter: a unix-fd GSource on the cf_loop's descriptor that dispatches it. Its own
 * library (cfutures-glib), so that libcfutures never depends on GLib. The attachment is the
 * GSource itself (allocated by GLib). */
#include <glib-unix.h>

#include "cfutures/adapter_glib.h"

static gboolean on_readable(gint fd, GIOCondition condition, gpointer data)
{
    (void)fd;
    (void)condition;
    cf_loop_dispatch(data);
    return G_SOURCE_CONTINUE;
}

int cf_glib_attach(cf_glib_attachment **out, cf_loop *loop, GMainContext *context, int priority)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop)
        return CF_EINVAL;
    int fd = cf_loop_fd(loop);
    if (fd < 0)
        return fd;
    GSource *source = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(source, (GSourceFunc)(void (*)(void))on_readable, loop, NULL);
    g_source_set_priority(source, priority);
    g_source_set_name(source, "cfutures loop");
    g_source_attach(source, context);
    *out = (cf_glib_attachment *)source;
    return 0;
}

void cf_glib_detach(cf_glib_attachment *att)
{
    if (!att)
        return;
    GSource *source = (GSource *)att;
    g_source_destroy(source);
    g_source_unref(source);
}
