/** @file
 * cfutures: drive a cf_loop from a GLib main context.
 *
 * Not included by cfutures.h. Link with the cfutures-glib library
 * (pkg-config --cflags --libs cfutures-glib), built when GLib is found.
 *
 * The attachment is a GSource watching the cf_loop's pollable descriptor (cf_loop_fd); when it
 * is readable the source calls cf_loop_dispatch(), so cf callbacks, timers, tasks and executor
 * completions run where the context is iterated. */
#ifndef CFUTURES_ADAPTER_GLIB_H
#define CFUTURES_ADAPTER_GLIB_H

#include <glib.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An attachment of a cf_loop to a GMainContext (opaque): made by cf_glib_attach(), undone by
 * cf_glib_detach(). */
typedef struct cf_glib_attachment cf_glib_attachment;

/** Attaches `loop` to `context` (NULL: the global default context) with the GSource priority
 * `priority` (for example G_PRIORITY_DEFAULT) and stores the attachment in `*out`. Call it on
 * the thread that iterates `context` (it becomes the cf_loop's loop thread; see cf_loop_fd).
 * The cf_loop is then embedded. Returns 0; CF_EINVAL (NULL out or loop); the errors of
 * cf_loop_fd(). */
int cf_glib_attach(cf_glib_attachment **out, cf_loop *loop, GMainContext *context, int priority);

/** Destroys the source: the context stops driving the cf_loop, which may then be freed. NULL is
 * ignored. Call it on the context's thread, never from inside a cf callback or task. */
void cf_glib_detach(cf_glib_attachment *att);

#ifdef __cplusplus
}
#endif
#endif
