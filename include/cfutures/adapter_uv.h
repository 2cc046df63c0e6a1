/** @file
 * cfutures: drive a cf_loop from a libuv loop.
 *
 * Not included by cfutures.h. Link with the cfutures-uv library
 * (pkg-config --cflags --libs cfutures-uv), built when libuv is found.
 *
 * The attachment watches the cf_loop's pollable descriptor (cf_loop_fd) with a uv_poll_t and
 * calls cf_loop_dispatch() whenever it is readable, so cf callbacks, timers, tasks and
 * executor completions run on the libuv loop's thread while uv_run() runs. No libuv
 * thread-safety setup is needed: other threads only write the cf_loop's eventfd. */
#ifndef CFUTURES_ADAPTER_UV_H
#define CFUTURES_ADAPTER_UV_H

#include <uv.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An attachment of a cf_loop to a libuv loop (opaque): made by cf_uv_attach(), undone by
 * cf_uv_detach(). */
typedef struct cf_uv_attachment cf_uv_attachment;

/** Attaches `loop` to `uv_loop` and stores the attachment in `*out`. Call it on the thread that
 * runs `uv_loop` (it becomes the cf_loop's loop thread; see cf_loop_fd). The cf_loop is then
 * embedded: it cannot be run with cf_loop_run_forever. The poll handle is active: uv_run()
 * keeps running while the attachment exists. Returns 0; CF_EINVAL (NULL argument); the errors
 * of cf_loop_fd(); CF_ENOMEM; CF_ESYSTEM (libuv refused the descriptor). */
int cf_uv_attach(cf_uv_attachment **out, cf_loop *loop, uv_loop_t *uv_loop);

/** Stops driving the cf_loop and closes the poll handle. The attachment's memory is released by
 * libuv's close callback, so run the libuv loop once more (as for any handle) before
 * uv_loop_close(). Afterwards the cf_loop may be freed. NULL is ignored. Call it on the libuv
 * loop's thread, never from inside a cf callback or task. */
void cf_uv_detach(cf_uv_attachment *att);

#ifdef __cplusplus
}
#endif
#endif
