/** @file
 * cfutures: loop tasks, written as straight-line code that suspends at cf_await().
 *
 * A task runs a cf_fn on its own stack (a stackful coroutine) on the loop thread. Inside it,
 * cf_await(), cf_sleep(), cf_gather() and cf_wait_for() suspend the task and let the loop run
 * other work; the call returns when the awaited thing is done. Helper functions called by a task
 * may await too: "a coroutine awaiting another coroutine" is an ordinary C call.
 *
 *     static int fetch(void *arg, void **result)
 *     {
 *         cf_future *f;
 *         int rc = cf_loop_run_in_executor(&f, cf_loop_current(), NULL, blocking_read, arg);
 *         if (rc)
 *             return rc;
 *         rc = cf_await(result, f);   // the loop keeps running meanwhile
 *         cf_future_unref(f);         // (the result stays owned by the future: see below)
 *         return rc;
 *     }
 *
 * A task is a cf_future (a loop future): its result is its function's result, and it can be
 * awaited by other tasks, passed to cf_loop_gather(), waited with cf_loop_run_until_complete().
 * cf_task_fail() and cf_task_set_result_dtor() work inside tasks as in executor tasks.
 *
 * Cancellation (asyncio's model): cf_future_cancel(task) asks the task to stop. If the task is
 * suspended in cf_await(f), f is cancelled and the await returns CF_ECANCELLED; if it sleeps,
 * the sleep returns CF_ECANCELLED; otherwise the request is delivered at its next suspension
 * point. The task decides: if its function returns CF_ECANCELLED the task ends cancelled; it
 * may also carry on and return something else. A task not started yet never runs.
 *
 * Rules: a task belongs to its loop's thread; never hold errno, locks or other thread-state
 * across a suspension; blocking calls belong in an executor (cf_loop_run_in_executor), not on a
 * task stack. The awaiting functions must be called from inside a task (CF_EINVALSTATE
 * elsewhere). Built with -Dcoroutines=false, cf_loop_create_task() returns CF_ENOTSUP and the
 * callback-style combinators of loop.h remain available. See docs/coroutines.md.
 */
#ifndef CFUTURES_LOOP_TASK_H
#define CFUTURES_LOOP_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Task options. Zero-initialise ({0}): every zero field means "default". The struct grows
 * only into its reserved tail (docs/abi.md). */
typedef struct cf_loop_task_options {
    /** Usable stack size in bytes. 0: 64 KiB (larger under sanitizers). Stacks are committed
     * lazily: a task that stays shallow costs a page or two of memory. */
    size_t stack_size;
    /** The destructor of the task's result value, called when the task's future is freed (or
     * at once on a value stored before the task failed), as cf_executor_submit_dtor() does for
     * executor tasks; cf_task_set_result_dtor() inside the task overrides it. NULL: none. */
    cf_dtor result_dtor;
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[15];
} cf_loop_task_options;

/** Creates a task running `fn(arg, &result)` on `loop`; it starts in a later iteration (first
 * step scheduled with call_soon, as asyncio 3.11). Stores the task in `*out` (one reference;
 * the loop keeps its own until the task finishes). `options` may be NULL. Returns 0;
 * CF_EINVAL (also for a non-zero reserved slot of `options`); CF_ECLOSED; CF_EPERM (not the
 * loop thread); CF_ENOMEM (no memory or stack); CF_ENOTSUP (built without coroutines). Loop
 * thread. */
int cf_loop_create_task(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                        const cf_loop_task_options *options);

/** Inside a task: suspends until `future` is done, then returns its outcome as
 * cf_future_result(): 0 and the value in `*value` (may be NULL; owned by `future`), CF_ETASK
 * (read the error with cf_future_exception(future)), or CF_ECANCELLED (the future was cancelled,
 * or this task was). A future that is already done returns at once without suspending.
 * Futures that are not loop futures of this loop (executor futures...) are awaited through a
 * wrapped loop future, so cancelling the task returns at once even if the executor is still
 * running the work. Returns CF_EINVAL for NULL or the task itself; CF_EINVALSTATE outside a
 * task; CF_ENOMEM. */
int cf_await(void **value, cf_future *future);

/** Inside a task: suspends for `delay` seconds (0 or negative: yields for one iteration, as
 * asyncio.sleep(0)). Returns 0; CF_ECANCELLED if the task was cancelled; CF_EINVAL (NaN);
 * CF_EINVALSTATE outside a task; CF_ENOMEM. */
int cf_sleep(double delay);

/** Inside a task: awaits cf_loop_gather() of the `n` futures. On success stores the n values in
 * `values` (an array of n, may be NULL; owned by their futures) and returns 0. Returns CF_ETASK
 * when a child failed or was cancelled (the first one ends the wait; the others keep running:
 * inspect them with cf_future_exception()), CF_ECANCELLED if this task was cancelled (the
 * children are then cancelled too), and the errors of cf_loop_gather() and cf_await(). */
int cf_gather(void **values, cf_future *const *fs, size_t n);

/** Inside a task: awaits cf_loop_wait_for(future, timeout). Returns as cf_await(), and
 * CF_ETIMEDOUT if the timeout passed (the future was then cancelled and has finished). */
int cf_wait_for(void **value, cf_future *future, double timeout);

/** The task running on the calling thread (borrowed), or NULL outside tasks. */
cf_future *cf_current_task(void);

#ifdef __cplusplus
}
#endif
#endif
