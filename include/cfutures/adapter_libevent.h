/** @file
 * cfutures: drive a cf_loop from a libevent event_base.
 *
 * Not included by cfutures.h. Link with the cfutures-libevent library
 * (pkg-config --cflags --libs cfutures-libevent), built when libevent is found.
 *
 * The attachment is a persistent read event on the cf_loop's pollable descriptor (cf_loop_fd)
 * whose callback calls cf_loop_dispatch(). It works whether or not the application enabled
 * libevent's threading (evthread_use_pthreads): other threads only write the cf_loop's
 * eventfd and never touch the event_base. */
#ifndef CFUTURES_ADAPTER_LIBEVENT_H
#define CFUTURES_ADAPTER_LIBEVENT_H

#include <event2/event.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An attachment of a cf_loop to an event_base (opaque): made by cf_libevent_attach(), undone
 * by cf_libevent_detach(). */
typedef struct cf_libevent_attachment cf_libevent_attachment;

/** Attaches `loop` to `base` and stores the attachment in `*out`. Call it on the thread that
 * runs `base` (it becomes the cf_loop's loop thread; see cf_loop_fd). The cf_loop is then
 * embedded, and the event keeps event_base_dispatch() running while it exists. Returns 0;
 * CF_EINVAL (NULL argument); the errors of cf_loop_fd(); CF_ENOMEM (event_new or event_add
 * failed). */
int cf_libevent_attach(cf_libevent_attachment **out, cf_loop *loop, struct event_base *base);

/** Deletes and frees the event: the base stops driving the cf_loop, which may then be freed.
 * NULL is ignored. Call it on the base's thread, never from inside a cf callback or task. */
void cf_libevent_detach(cf_libevent_attachment *att);

#ifdef __cplusplus
}
#endif
#endif
