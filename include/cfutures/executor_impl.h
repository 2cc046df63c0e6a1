/** @file
 * cfutures: implementing an executor.
 *
 * This header is for code that provides a new kind of executor (another engine's thread pool, a
 * remote cluster, a test double). Code that only uses executors never needs it; it is not
 * included by <cfutures.h>. Like libgit2's sys/ headers, it is kept apart from the user API.
 *
 * An implementation is a table of functions (cf_executor_ops) and a state pointer (`impl`).
 * cf_executor_new() wraps them into a cf_executor that every function of executor.h, wait.h, the
 * event loop (cf_loop_run_in_executor) and the adapters accept. The library's own thread pool and
 * process pool are built the same way. The contract (docs/executors.md, "Implementing an
 * executor", says the same at length):
 *
 * The life of a task, seen from the implementation.
 *   1. cf_executor_submit*() and cf_executor_map*() check their arguments, build one future per
 *      call (PENDING, carrying the task: read it with cf_task_fn()/cf_task_arg() or
 *      cf_task_bytes_fn()/cf_task_bytes_arg()) and hand them to ops.submit in batches.
 *   2. ops.submit accepts the whole batch or none of it. On success the implementation owns one
 *      reference to each future (the caller keeps its own); on error it keeps nothing and the
 *      library discards the batch, so those tasks never run.
 *   3. To start a task, call cf_future_set_running_or_notify_cancel(): 1 means run it; 0 means it
 *      was cancelled meanwhile (nothing else to do). It may be called ahead of the actual run
 *      (when the task is dispatched somewhere it can no longer be taken back from), as the
 *      process pool does: from then on the future cannot be cancelled.
 *   4. Complete it with cf_future_set_result_bytes_owned(), cf_future_set_result_bytes(),
 *      cf_future_set_result() or cf_future_set_exception(), or do 3 and 4 in one call with
 *      cf_task_run() (runs the task in the calling thread). Then release the reference with
 *      cf_future_unref(). A pointer task submitted with cf_executor_submit_dtor() keeps its
 *      result destructor when completed with cf_future_set_result(f, value, NULL).
 *   5. Every accepted future ends completed or cancelled, never forgotten: at
 *      shutdown(cancel_futures) the ones not started are cancelled with cf_future_cancel(); when
 *      the implementation cannot run them any more (a dead worker) they fail with
 *      cf_future_set_exception(f, CF_EBROKEN, why). By the time ops.destroy returns, every
 *      accepted future is done (except when destroy runs on the implementation's own thread, see
 *      below).
 *
 * Threads.
 *   - ops.submit and ops.shutdown may be called from any thread, concurrently with each other,
 *     including from tasks and done-callbacks running on the implementation's own threads.
 *   - ops.destroy is called once, by cf_executor_free(), after every other call has returned.
 *     It may run on one of the implementation's own threads (a task or callback freed its
 *     executor): it must then not wait for that thread, and release memory when it exits.
 *   - Completing or cancelling a future runs its done-callbacks and wakes its waiters in the
 *     calling thread, and a callback may call submit or shutdown on this very executor: complete
 *     futures with no lock held that those take.
 *   - The ops are never called with a NULL impl or NULL arrays, nor in a child process forked
 *     after cf_executor_new() (there the library answers CF_EFORKED itself, and
 *     cf_executor_free() calls ops.forget instead of ops.destroy). The library does not track
 *     shutdown: ops.submit may run after or during ops.shutdown and must then refuse the batch
 *     with CF_ESHUTDOWN.
 *
 * ABI (docs/abi.md). cf_executor_ops follows the rule of every public struct: it ends in a
 * reserved tail that must be zero, and later releases carve new members out of that tail, where
 * a NULL function pointer means "not provided". Define the table as a static const object with
 * designated initialisers, so that everything you do not set (the tail included) is zero: a
 * table built against these headers keeps working, unchanged, with later releases.
 */
#ifndef CFUTURES_EXECUTOR_IMPL_H
#define CFUTURES_EXECUTOR_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "executor.h"
#include "future.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Capabilities in cf_executor_ops.flags. Zero means the default: pointer and bytes tasks. */
enum cf_executor_flags {
    /** Runs bytes tasks only (it moves tasks to other processes); cf_executor_submit() and
     * cf_executor_map() return CF_ENOTSUP without calling ops.submit. */
    CF_EXECUTOR_BYTES_ONLY = 1u << 0,
};

/** An executor implementation. Members marked optional may be NULL. Zero-initialise it (a static
 * const object with designated initialisers): the reserved tail must be zero. */
typedef struct cf_executor_ops {
    /** A short static name ("thread_pool", "mpi"), returned by cf_executor_name(). */
    const char *name;
    /** cf_executor_flags (an unknown flag is CF_EINVAL). */
    unsigned flags;
    /** Accepts `n` >= 1 fresh PENDING futures (the array is the caller's, valid during the call),
     * all or nothing. Returns 0 (the implementation now owns one reference to each); or an error
     * code, keeping none: CF_ESHUTDOWN after shutdown began, CF_EBROKEN, CF_ENOMEM, or any code
     * documented for cf_executor_submit(). Must not block for long: a submit that waits for
     * room should honour a timeout. */
    int (*submit)(void *impl, cf_future *const *futures, size_t n);
    /** Stops accepting work (later submits return CF_ESHUTDOWN). With `cancel_futures`, cancels
     * every accepted future that has not started. With `wait`, returns once all accepted work
     * is done and the implementation's threads or processes have stopped (when called on one
     * of its own threads: every other one). Idempotent: later calls may still wait or cancel.
     * Returns 0 or an error code. */
    int (*shutdown)(void *impl, bool wait, bool cancel_futures);
    /** Shuts down with wait (as shutdown(impl, true, false)) and frees `impl`. Called once, last.
     * Returns 0 or an error code (the handle is freed either way). */
    int (*destroy)(void *impl);
    /** Optional. Called by cf_executor_free() in a child process forked after the executor was
     * created, instead of destroy: release memory only (the implementation's threads do not
     * exist there, its locks may be held by threads that vanished). NULL: impl is left alone
     * (leaked) in the child. */
    void (*forget)(void *impl);
    /** Optional. The chunk size cf_executor_map() uses when the caller passes 0, for `n` calls.
     * NULL: n / (4 x usable CPUs), between 1 and 1024. */
    size_t (*default_chunksize)(void *impl, size_t n);
    /** Optional. The largest batch ops.submit accepts from cf_executor_map(). NULL: no limit. */
    size_t (*max_chunksize)(void *impl);
    uint64_t reserved[16]; /**< must be zero (see ABI above) */
} cf_executor_ops;

/** Wraps an implementation into an executor handle, stored in `*out`. `ops` must stay valid and
 * unchanged for the executor's life (a static const table): the library copies it, but its
 * address is the implementation's identity for cf_executor_impl(). `impl` is passed to every op.
 * Returns 0; CF_EINVAL (NULL out, ops or impl; a NULL submit, shutdown or destroy; a non-zero
 * reserved slot, which is a member of a later release that this library does not know);
 * CF_ENOMEM. On error nothing is kept and `impl` stays the caller's. Thread-safe. */
int cf_executor_new(cf_executor **out, const cf_executor_ops *ops, void *impl);

/** The `impl` of an executor made with this very `ops` table, or NULL (a NULL executor, or one
 * of another kind). Lets an implementation offer its own functions on a cf_executor safely, as
 * cf_thread_pool_get_stats() does. Thread-safe. */
void *cf_executor_impl(const cf_executor *executor, const cf_executor_ops *ops);

/** ---- the task a future carries ---- */

/** The function of a pointer task (cf_executor_submit), or NULL for a bytes task or a future
 * that carries no task. Thread-safe while the implementation holds its reference. */
cf_fn cf_task_fn(const cf_future *task);

/** The argument of a pointer task, passed through unchanged (NULL for a bytes task). */
void *cf_task_arg(const cf_future *task);

/** The function of a bytes task (cf_executor_submit_bytes), or NULL for a pointer task. */
cf_bytes_fn cf_task_bytes_fn(const cf_future *task);

/** The library's private copy of a bytes task's argument: stores its address (16-byte aligned)
 * in `*data` and its length in `*len`. Valid until the task completes or
 * cf_task_release_arg() is called. Returns 0; CF_EINVAL for a pointer task or NULL arguments;
 * CF_EINVALSTATE if the copy was released already. */
int cf_task_bytes_arg(const void **data, size_t *len, const cf_future *task);

/** Frees a bytes task's argument copy early, once the implementation has sent or copied it
 * elsewhere (a large argument then costs memory only once). No effect on pointer tasks or if
 * already released. Only the implementation that owns the task may call it, and not
 * concurrently with cf_task_bytes_arg() or cf_task_run() on the same task. */
void cf_task_release_arg(cf_future *task);

/** Runs the task in the calling thread: cf_future_set_running_or_notify_cancel(), then the
 * function with the thread's task context set (so cf_task_fail() and cf_task_set_result_dtor()
 * work inside it), then completes the future with the outcome (its done-callbacks run here).
 * Fires the task__start and task__finish USDT probes (docs/tracing.md) around the function.
 * Does not release the caller's reference. Returns 1 if the task ran; 0 if it was cancelled;
 * CF_EINVALSTATE if the future was already running or done (not run); CF_EINVAL for NULL, for a
 * future that carries no task, or for a bytes task whose argument was released. */
int cf_task_run(cf_future *task);

/** For the remote side of an executor (a worker process or rank that received a task as bytes):
 * calls the bytes function `fn` on `len` bytes at `arg` in the calling thread with a task
 * context, as an executor's worker does, and returns its code (0: success). On success
 * `*result` and `*result_len` receive the task's result buffer (malloc()ed, may be NULL; now
 * yours: free() it) and `*message` NULL. On failure `*result` is NULL, `*result_len` 0, and
 * `*message` receives the message the task attached with cf_task_fail() (malloc()ed, free()
 * it), or NULL. `message` may be NULL to drop it. A task that returns 0 with a NULL result has
 * length 0. Returns CF_EINVAL without calling anything if `fn`, `result` or `result_len` is
 * NULL, or `arg` is NULL with a non-zero `len`. Thread-safe. */
int cf_task_call_bytes(cf_bytes_fn fn, const void *arg, size_t len, void **result,
                       size_t *result_len, char **message);

/** Finishes `future` with the `len` bytes at `data`, taking ownership of the buffer, which must
 * come from malloc() (the future releases it with free()); read back with
 * cf_future_result_bytes(). For results received into a buffer of their own (tens of
 * megabytes), where cf_future_set_result_bytes() would copy. `data` may be NULL only when `len`
 * is 0. Returns 0; CF_EINVALSTATE if the future is already done (the buffer stays yours);
 * CF_EINVAL for a NULL future or NULL data with a non-zero length (the buffer stays yours).
 * Thread-safe. */
int cf_future_set_result_bytes_owned(cf_future *future, void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
