/** @file
 * cfutures: futures.
 *
 * A future is the handle to the outcome of an operation that may not have finished yet. It is
 * opaque, reference counted and thread-safe: any function here may be called from any thread,
 * concurrently with any other, unless stated otherwise.
 *
 * States. A future starts PENDING. The executor (or whoever completes it) moves it to RUNNING
 * with cf_future_set_running_or_notify_cancel(), then to FINISHED with cf_future_set_result() or
 * cf_future_set_exception(). While PENDING it may instead be CANCELLED with cf_future_cancel().
 * FINISHED and CANCELLED are final; "done" means final.
 *
 *     PENDING --set_running--> RUNNING --set_result/set_exception--> FINISHED
 *        |  \------------------set_result/set_exception-------------^
 *        +--cancel--> CANCELLED
 *
 * Timeouts. Every blocking call takes `double timeout` in seconds: 0 polls, a positive value
 * waits at most that long, and any negative value (use CF_FOREVER) or +INFINITY waits without
 * limit. NaN is rejected with CF_EINVAL. Note that Python treats a negative timeout as 0; cfutures
 * does not, because C has no None. Waits are measured on CLOCK_MONOTONIC, survive signals (EINTR)
 * and keep their original deadline.
 *
 * Ownership. cf_future_new() and every function that hands out a future (submit, map, ...)
 * give the caller one reference, released with cf_future_unref(). A future's result value is
 * owned by the future: if a destructor was given, it runs when the last reference goes away.
 */
#ifndef CFUTURES_FUTURE_H
#define CFUTURES_FUTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Wait without limit. */
#define CF_FOREVER (-1.0)

/** A future (opaque, reference counted): the outcome of an operation that may not have finished
 * yet. See the states above. */
typedef struct cf_future cf_future;

/** The observable states of a future (see the diagram above). */
typedef enum cf_future_state {
    CF_FUTURE_PENDING = 0,  /**< not started; may still be cancelled */
    CF_FUTURE_RUNNING = 1,  /**< started; can no longer be cancelled */
    CF_FUTURE_FINISHED = 2, /**< done with a result or an error (final) */
    CF_FUTURE_CANCELLED = 3 /**< done by cancellation (final) */
} cf_future_state;

/** A done-callback: called once with the future that completed and the user data given to
 * cf_future_add_done_callback(). The future is valid for the duration of the call. */
typedef void (*cf_done_cb)(cf_future *future, void *data);

/** Creates a PENDING future not attached to any executor, for code that completes futures
 * itself. On success stores it in `*out` (one reference) and returns 0.
 * Errors: CF_EINVAL if `out` is NULL, CF_ENOMEM. Thread-safe. */
int cf_future_new(cf_future **out);

/** Takes one more reference to `future` and returns it (NULL gives NULL). Thread-safe. */
cf_future *cf_future_ref(cf_future *future);

/** Releases one reference; the last one frees the future and runs its result destructor.
 * NULL is ignored. Releasing a reference you do not own is undefined behaviour. A pending
 * future may be released: whoever completes it holds its own reference. Thread-safe. */
void cf_future_unref(cf_future *future);

/** Attempts to cancel. Returns true if the future is now cancelled (it was PENDING, or was
 * already cancelled); false if it is running or finished, or if `future` is NULL. A successful
 * cancel wakes every waiter and runs the done-callbacks in the calling thread. Thread-safe. */
bool cf_future_cancel(cf_future *future);

/** True if the future was cancelled. NULL gives false. Thread-safe, never blocks. */
bool cf_future_cancelled(const cf_future *future);

/** True if the future is RUNNING. NULL gives false. Thread-safe, never blocks. */
bool cf_future_running(const cf_future *future);

/** True if the future is FINISHED or CANCELLED. NULL gives false. Thread-safe, never blocks. */
bool cf_future_done(const cf_future *future);

/** The current state, a snapshot. NULL gives CF_FUTURE_PENDING. Thread-safe, never blocks. */
cf_future_state cf_future_get_state(const cf_future *future);

/** Waits up to `timeout` seconds for the future to be done, then reports its outcome.
 * Returns 0 and stores the result value in `*out` (if `out` is not NULL; the value stays owned
 * by the future); CF_ETASK if it finished with an error (read it with cf_future_exception());
 * CF_ECANCELLED if it was cancelled; CF_ETIMEDOUT if it is not done in time; CF_EINVAL for a
 * NULL future or a NaN timeout. A result that is already available is returned even when
 * `timeout` is 0. Thread-safe; any number of threads may wait on one future. Calling it with an
 * infinite timeout from the task that must complete the future deadlocks. */
int cf_future_result(void **out, cf_future *future, double timeout);

/** As cf_future_result(), for a future that holds bytes (a bytes task, or
 * cf_future_set_result_bytes()): stores a pointer to the bytes in `*data` and their size in
 * `*len` (either may be NULL). The bytes stay owned by the future. Returns CF_EINVAL if the
 * finished future holds a pointer result instead of bytes. Thread-safe. */
int cf_future_result_bytes(const void **data, size_t *len, cf_future *future, double timeout);

/** Waits like cf_future_result(), then reports the error without the result: returns 0 and
 * stores the task's error code in `*code` and its message (or NULL) in `*message`; a future
 * that succeeded gives code 0 and message NULL. Either pointer may be NULL. The message stays
 * owned by the future. Returns CF_ECANCELLED, CF_ETIMEDOUT or CF_EINVAL as cf_future_result()
 * does. Thread-safe. */
int cf_future_exception(int *code, const char **message, cf_future *future, double timeout);

/** Attaches `data`, a pointer of the caller's, to the future: typically right after a submit,
 * so that whoever later gets the future back (from cf_wait(), an as_completed iterator, a
 * done-callback) knows which job it was without searching an array. The library never reads,
 * frees or copies `data`; a later call replaces it. Works on every future: of any executor,
 * cf_future_new(), loop futures and tasks, whatever their state. The pointer is kept beside the
 * future (a future has no room of its own for it), so the first call on a future may allocate;
 * a future that never gets data pays nothing. Returns 0; CF_EINVAL (NULL future); CF_ENOMEM (the
 * first call on this future: nothing attached). Thread-safe; a reader in another thread sees
 * `data` once the call has happened before its read (for example, the future was handed over
 * after it). */
int cf_future_set_data(cf_future *future, void *data);

/** The pointer last attached with cf_future_set_data(), or NULL if none was (or `future` is
 * NULL). Thread-safe; takes an internal lock briefly if the future has data, else none. */
void *cf_future_get_data(const cf_future *future);

/** Registers `cb(future, data)` to run exactly once when the future is done. Callbacks run in
 * the order added, in the thread that completes (or cancels) the future, after the state has
 * changed and outside every internal lock, so they may call any cfutures function on the same
 * future. If the future is already done, `cb` runs immediately in the calling thread before
 * this returns. Loop-bound futures (see loop.h) instead schedule callbacks on their loop.
 * A slow callback delays the thread that runs it (for a pool, one worker).
 * Returns 0, CF_EINVAL (NULL future or callback) or CF_ENOMEM (the callback was not added and
 * will not run). Thread-safe. */
int cf_future_add_done_callback(cf_future *future, cf_done_cb cb, void *data);

/** For whoever completes the future: call it before starting the work. Returns 1 if the future
 * moved from PENDING to RUNNING (do the work); 0 if it was cancelled (skip the work; nothing
 * else to do: its waiters and callbacks were already notified by the cancel); CF_EINVALSTATE if
 * it is already running or finished; CF_EINVAL for NULL. Thread-safe. */
int cf_future_set_running_or_notify_cancel(cf_future *future);

/** Finishes the future with `value`. `dtor` (may be NULL) is called on `value` when the future is
 * freed, unless `value` is NULL. Wakes all waiters and runs the done-callbacks in this thread.
 * Allowed from PENDING or RUNNING. Returns 0; CF_EINVALSTATE if the future is already done (the
 * first outcome is kept and `dtor` is not called: the value stays yours); CF_EINVAL for NULL.
 * Thread-safe. */
int cf_future_set_result(cf_future *future, void *value, cf_dtor dtor);

/** As cf_future_set_result() with a copy of `len` bytes at `data` (NULL is allowed when `len` is
 * 0), read back with cf_future_result_bytes(). Returns CF_ENOMEM if the copy cannot be made
 * (the future is then left unchanged). Thread-safe. */
int cf_future_set_result_bytes(cf_future *future, const void *data, size_t len);

/** Finishes the future with an error: `code` must be non-zero (CF_EINVAL otherwise); `message`
 * (may be NULL) is copied. If the copy fails the error is still recorded, without message.
 * Returns 0, CF_EINVALSTATE if the future is already done, CF_EINVAL for NULL or code 0.
 * Thread-safe. */
int cf_future_set_exception(cf_future *future, int code, const char *message);

#ifdef __cplusplus
}
#endif
#endif
