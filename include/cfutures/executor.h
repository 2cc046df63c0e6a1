/** @file
 * cfutures: the executor interface.
 *
 * An executor runs tasks and hands back futures. One opaque type, cf_executor, is implemented by
 * the thread pool (thread_pool.h) and the process pool (process_pool.h); code written against
 * this header works with either. Executors are created by their own constructor and destroyed
 * with cf_executor_free().
 *
 * Thread-safety: every function here may be called from any thread, concurrently, including
 * from tasks and done-callbacks of the same executor, except cf_executor_free(), which must be
 * the last call on the executor.
 *
 * fork(): an executor created before fork() is unusable in the child; every call on it returns
 * CF_EFORKED there (create a new one instead).
 */
#ifndef CFUTURES_EXECUTOR_H
#define CFUTURES_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "future.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An executor (opaque): a thread pool (cf_thread_pool_new()) or a process pool
 * (cf_process_pool_new()) behind one interface. Freed with cf_executor_free(). */
typedef struct cf_executor cf_executor;

/** The most workers (threads of a thread pool, processes of a process pool) one pool may have:
 * a larger max_workers option makes the pool's constructor return CF_EINVAL (so that a
 * negative int stored in the unsigned field cannot mean "unbounded"). */
#define CF_MAX_WORKERS 4096u

/** An iterator over the results of cf_executor_map(), in input order. */
typedef struct cf_map cf_map;

/** A borrowed byte range, used to pass arguments to bytes tasks. Frozen: it is an array element
 * (cf_executor_map_bytes), so it never grows (docs/abi.md). */
typedef struct cf_bytes {
    const void *data; /**< the first byte (may be NULL when len is 0) */
    size_t len;       /**< the number of bytes */
} cf_bytes;

/** Schedules `fn(arg, &result)` and stores its future in `*out` (one reference).
 * Tasks start in submission order; they may finish in any order.
 * Returns 0; CF_EINVAL (NULL out, executor or fn); CF_ESHUTDOWN after shutdown; CF_EBROKEN if the
 * executor is broken; CF_ENOTSUP if the executor cannot run pointer tasks (the process pool: use
 * cf_executor_submit_bytes()); CF_EFULL or CF_ETIMEDOUT from a bounded queue (see
 * thread_pool.h); CF_ENOMEM, CF_EAGAIN (no thread could be started); CF_EFORKED.
 * On error no future is created and the task will never run. Thread-safe. */
int cf_executor_submit(cf_future **out, cf_executor *executor, cf_fn fn, void *arg);

/** As cf_executor_submit(), with the destructor of the task's result given here, where the
 * caller can see it, instead of by cf_task_set_result_dtor() inside the task: when the future
 * is freed, `result_dtor` is called on the result value (unless it is NULL), and a value the
 * task stored before failing is passed to it at once. A task may still call
 * cf_task_set_result_dtor(), which overrides `result_dtor` for its own result. NULL
 * `result_dtor` is plain cf_executor_submit(). Returns as cf_executor_submit(). Thread-safe. */
int cf_executor_submit_dtor(cf_future **out, cf_executor *executor, cf_fn fn, void *arg,
                            cf_dtor result_dtor);

/** Schedules the bytes task `fn` on a private copy of `len` bytes at `arg` (the caller's buffer
 * may be reused as soon as this returns); a range of more than 64 KiB of a frozen shared block
 * (bytes.h) is passed by reference instead. The result is read with cf_future_result_bytes().
 * Works on every executor. Returns as cf_executor_submit(), and CF_EINVAL if `arg` is NULL
 * while `len` is not 0. Thread-safe. */
int cf_executor_submit_bytes(cf_future **out, cf_executor *executor, cf_bytes_fn fn,
                             const void *arg, size_t len);

/** Schedules `fn(args[i], &result)` for every i < n as one batch and stores the future of call i
 * in `out[i]` (one reference each). `args` may be NULL: every call then gets a NULL argument.
 * The batch reaches the queue in one step (the thread pool links it and makes it visible with
 * one atomic exchange and one wake-up decision), so a burst of tasks costs far less per task
 * than one cf_executor_submit() each; calls start in index order, after earlier submissions.
 * A bounded queue (thread_pool.h) takes the batch in pieces of at most max_queue, each under
 * its queue policy. Returns 0 (also for n == 0); CF_EINVAL (NULL out with n > 0, NULL executor
 * or fn); and the errors of cf_executor_submit(). On error every out[i] is NULL and no call
 * runs, except, with a bounded queue, calls of earlier pieces that had already started (the
 * others are cancelled). Thread-safe. */
int cf_executor_submit_batch(cf_future **out, cf_executor *executor, cf_fn fn, void *const *args,
                             size_t n);

/** Submits `fn(args[i], ...)` for every i < n, immediately, and stores in `*out` an iterator that
 * yields the results in input order. Calls are queued in chunks of `chunksize` (0: a default
 * chosen from n and the worker count), each chunk with one lock and one wake-up; the process pool
 * also runs one chunk per round trip. `timeout` bounds the whole iteration and is measured from
 * this call (CF_FOREVER for none). n == 0 gives an iterator that is already at its end (its first
 * cf_map_next() returns CF_EOF; `args` may then be NULL), as Python's map over an empty
 * iterable. Returns 0; CF_EINVAL (NULL out, executor or fn, NULL args with n > 0, NaN timeout);
 * the errors of cf_executor_submit() if the calls could not be queued: then no iterator is
 * made, and the calls of chunks already queued are cancelled, except those that had already
 * started (they run to the end, unobserved). Thread-safe. */
int cf_executor_map(cf_map **out, cf_executor *executor, cf_fn fn, void *const *args, size_t n,
                    double timeout, size_t chunksize);

/** As cf_executor_map() for a bytes task; each args[i] is copied at submission (or passed by
 * reference, as in cf_executor_submit_bytes()). Iterate with cf_map_next_bytes(), which gives
 * each result's bytes and length. Thread-safe. */
int cf_executor_map_bytes(cf_map **out, cf_executor *executor, cf_bytes_fn fn, const cf_bytes *args,
                          size_t n, double timeout, size_t chunksize);

/** Waits for the result of the next call, in input order, until the map's deadline. Returns 0
 * and stores its result value in `*value` (may be NULL; owned by the iterator's future, valid
 * until the next call on the iterator); CF_ETASK if that call failed (inspect it with
 * cf_future_exception(cf_map_current(it))), and iteration continues; CF_ECANCELLED if that
 * call was cancelled; CF_ETIMEDOUT if the deadline passed first: then the call waited for and
 * all later ones are cancelled (those not started yet) and the iterator is finished; CF_EOF when
 * there are no more results; CF_EINVAL for a NULL iterator. Not thread-safe: one thread iterates.
 */
int cf_map_next(void **value, cf_map *it);

/** As cf_map_next() for a map whose calls return bytes (cf_executor_map_bytes()): stores a
 * pointer to the result's bytes in `*data` and their size in `*len` (either may be NULL; both
 * are NULL and 0 unless it returns 0). The bytes are owned by the iterator's future and valid
 * until the next call on the iterator. Returns as cf_map_next(), and CF_EINVAL if that call's
 * result is a pointer, not bytes (iteration continues). Not thread-safe: one thread iterates. */
int cf_map_next_bytes(const void **data, size_t *len, cf_map *it);

/** The future of the call whose outcome cf_map_next() or cf_map_next_bytes() reported last (NULL
 * before the first call and after CF_EOF). Borrowed: valid until the next cf_map_next() or
 * cf_map_free(). */
cf_future *cf_map_current(cf_map *it);

/** Frees the iterator. Calls that have not been yielded yet are cancelled if they have not
 * started (as closing a Python map generator does). NULL is ignored. */
void cf_map_free(cf_map *it);

/** Stops the executor from accepting work. Afterwards submit and map return CF_ESHUTDOWN.
 * With `cancel_futures`, every queued future that has not started is cancelled. Work already
 * queued (and not cancelled) still runs. With `wait`, returns only when all running and queued
 * work is finished and the workers have exited. Idempotent: later calls may still wait or
 * cancel. Callable from any thread, including a done-callback or a task of this executor: the
 * calling worker then waits for every other worker and exits itself after the task returns, so
 * it never deadlocks on itself. Returns 0, CF_EINVAL (NULL), CF_EFORKED. Thread-safe. */
int cf_executor_shutdown(cf_executor *executor, bool wait, bool cancel_futures);

/** The executor's kind: "thread_pool", "process_pool", "mpi", or the name an implementation
 * gave (executor_impl.h); "" for NULL. Static: never freed. Thread-safe. */
const char *cf_executor_name(const cf_executor *executor);

/** Shuts down with wait (if not done already) and frees the executor. Futures it produced stay
 * valid (they are reference counted) and are all done once this returns. Called from a task or
 * callback of this executor, it shuts down, waits for the other workers, and the memory is
 * released when the calling worker finishes. NULL is ignored. Returns 0 or CF_EFORKED (in a
 * forked child: the memory is released but no thread is joined). Not thread-safe with respect to
 * other calls on the same executor: it must be the last one. */
int cf_executor_free(cf_executor *executor);

#ifdef __cplusplus
}
#endif
#endif
