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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "future.h"
#include "loop.h"
#include "wait.h"

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
 * the loop keeps its own until the task finishes). `options` may be NULL. The task takes its
 * stack from the pool when it starts, and gives it back when it finishes, so many short tasks
 * share a few stacks; a task whose stack cannot be had when it starts does not run and fails
 * with CF_ENOMEM. Returns 0; CF_EINVAL (including a stack_size above 1 GiB, or a non-zero
 * reserved slot of `options`); CF_ECLOSED; CF_EPERM (not the loop thread); CF_ENOMEM (no
 * memory for the task); CF_ENOTSUP (built without coroutines). Loop thread. */
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

/** Starts a task running `fn(arg, &result)` on `loop` from any thread (asyncio's
 * run_coroutine_threadsafe) and stores in `*out` a plain cf_future (one reference) for its
 * outcome: the task's value (owned by the task, which the future keeps alive), its error code
 * and message, or cancelled. The task is created on the loop thread in a later iteration (so
 * the loop must be running or run later). The future is not bound to the loop: block on it with
 * cf_future_result() from another thread (never from the loop thread while the loop waits for
 * you: that deadlocks), and its done-callbacks run on the loop thread as the task ends.
 * Cancelling the future succeeds until the outcome is in, and cancels the task (a request,
 * posted to the loop: the task may still run to its end, its outcome is then dropped). If the
 * loop closes first, the future ends cancelled; if the task cannot be created, the future fails
 * with that code (CF_ENOMEM...). Returns 0; CF_EINVAL (NULL out, loop or fn, a non-zero reserved
 * slot of `options`); CF_ECLOSED; CF_EFORKED; CF_ENOMEM; CF_ENOTSUP (built without coroutines).
 * Any thread, including the loop thread. */
int cf_loop_run_coroutine_threadsafe(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                                     const cf_loop_task_options *options);

/** Inside a task: awaits cf_loop_wait() over the `n` futures (asyncio.wait): suspends until
 * `when` holds (CF_FIRST_COMPLETED, CF_FIRST_EXCEPTION, CF_ALL_COMPLETED) or `timeout` seconds
 * pass (negative: no limit; 0: only looks), then reports the split as cf_wait() does:
 * `done[i]` (if `done` is not NULL; an array of n) tells whether fs[i] is done, `*n_done` (if
 * not NULL) counts them. Nothing is cancelled, also not on a timeout. Futures of any kind
 * (other loops, executors) are watched directly. Returns 0 if `when` holds; CF_ETIMEDOUT if the
 * timeout passed first (the split is valid); CF_ECANCELLED if this task was cancelled (the
 * futures are untouched); the errors of cf_loop_wait(). */
int cf_await_many(size_t *n_done, bool *done, cf_future *const *fs, size_t n, cf_return_when when,
                  double timeout);

/* ---- structured concurrency: task groups (asyncio.TaskGroup, Python 3.11) ----
 *
 * A task group ties child tasks to the task that opened it (its parent):
 *
 *     cf_loop_task_group *g;
 *     int rc = cf_loop_task_group_enter(&g);
 *     if (rc)
 *         return rc;
 *     rc = cf_loop_task_group_create_task(NULL, g, fetch, url1, NULL);
 *     if (rc == 0)
 *         rc = cf_loop_task_group_create_task(NULL, g, fetch, url2, NULL);
 *     rc = cf_loop_task_group_exit(g, rc);    // waits for both
 *     if (rc == CF_ETASK)
 *         for (size_t i = 0; i < cf_loop_task_group_failure_count(g); i++)
 *             report(cf_loop_task_group_failure(g, i));   // cf_future_exception() on it
 *     cf_loop_task_group_free(g);
 *
 * The first child that fails (finishes with an error; a cancelled child is not a failure)
 * cancels every other child, and the parent too if it has not reached exit yet, so that what
 * it awaits is interrupted; the group remembers that this cancellation was its own. exit waits
 * for every child, whatever happens, and reports, in this order of precedence: CF_ETASK if
 * children failed (every failure is kept, in the order they happened: that is how the C API
 * reports several failures, where asyncio raises an ExceptionGroup); the body's own error code
 * (the `rc` passed to exit, when it is neither 0 nor CF_ECANCELLED; the children were
 * cancelled); CF_ECANCELLED if the parent was cancelled from outside (by anything other than
 * the group: that cancellation is never swallowed, and if CF_ETASK wins it is delivered again
 * at the parent's next suspension point); else 0. A task group is used on the loop thread; its
 * functions return CF_EPERM elsewhere. */

/** A task group (opaque): opened by cf_loop_task_group_enter(), freed by
 * cf_loop_task_group_free(). */
typedef struct cf_loop_task_group cf_loop_task_group;

/** Inside a task: opens a task group whose parent is the calling task. Returns 0; CF_EINVAL
 * (NULL out); CF_EINVALSTATE outside a task (and without coroutines); CF_ENOMEM. */
int cf_loop_task_group_enter(cf_loop_task_group **out);

/** Starts a child task in the group (cf_loop_create_task() on the parent's loop). `out` may be
 * NULL; if not, it receives one reference to the child. From the parent, another task or a
 * callback of the loop, until exit has returned. Returns 0; CF_EINVALSTATE once the group is
 * shutting down (a child failed, or the body did) or exited; CF_EINVAL; CF_EPERM (not the loop
 * thread); the errors of cf_loop_create_task(). Loop thread. */
int cf_loop_task_group_create_task(cf_future **out, cf_loop_task_group *group, cf_fn fn, void *arg,
                                   const cf_loop_task_options *options);

/** Inside the parent: ends the group's body with the body's outcome `rc` (0, CF_ECANCELLED, or
 * an error, which cancels the children), waits until every child is done (a cancellation of
 * the parent meanwhile cancels the children and the wait goes on), and returns the group's
 * outcome (see above): 0, CF_ETASK, the body's error, or CF_ECANCELLED. Also CF_EINVALSTATE if
 * already exited; CF_EPERM from another task; CF_EINVAL. If the loop closes meanwhile, it
 * returns CF_ECANCELLED without waiting. */
int cf_loop_task_group_exit(cf_loop_task_group *group, int rc);

/** The number of children that failed (0 for NULL). Loop thread. */
size_t cf_loop_task_group_failure_count(const cf_loop_task_group *group);

/** The i-th child that failed, in the order of the failures (borrowed: valid until the group
 * is freed; read its error with cf_future_exception()), or NULL past the end. Loop thread. */
cf_future *cf_loop_task_group_failure(const cf_loop_task_group *group, size_t i);

/** Frees the group. Called before exit (an abandoned body), it cancels the children that are
 * still running; the memory goes once they are done. NULL is ignored. Loop thread, or any
 * thread once the loop is closed. */
void cf_loop_task_group_free(cf_loop_task_group *group);

/* ---- structured concurrency: timeout scopes (asyncio.timeout / timeout_at) ----
 *
 * A timeout scope bounds the time a task spends in a block of code, whatever it awaits:
 *
 *     cf_loop_timeout *scope;
 *     int rc = cf_loop_timeout_enter(&scope, 2.0);
 *     if (rc)
 *         return rc;
 *     rc = cf_loop_queue_get(&item, queue);     // any suspension point, any depth of calls
 *     rc = cf_loop_timeout_exit(scope, rc);     // CF_ETIMEDOUT if the deadline cut it short
 *     cf_loop_timeout_free(scope);
 *
 * When the deadline passes, the scope cancels its task (the suspension point in progress
 * returns CF_ECANCELLED, as for any cancellation) and marks itself expired; exit turns that
 * CF_ECANCELLED into CF_ETIMEDOUT. A cancellation from outside is never taken for the scope's
 * own: the scope counts the task's cancellation requests (asyncio's cancelling()/uncancel()),
 * and exit converts only if no other request arrived, also when both happen at once, and also
 * for nested scopes (the one whose deadline passed reports CF_ETIMEDOUT, the others pass it
 * on). A body that completes after the deadline without noticing it keeps its own result. All
 * functions: loop thread; enter and exit inside the scope's task. */

/** A timeout scope (opaque): opened by cf_loop_timeout_enter(), freed by
 * cf_loop_timeout_free(). */
typedef struct cf_loop_timeout cf_loop_timeout;

/** Inside a task: opens a timeout scope for the calling task with a deadline `delay` seconds
 * from now (0: expires in the next iteration, as asyncio.timeout(0); negative, e.g.
 * CF_FOREVER: no deadline until rescheduled). Returns 0; CF_EINVAL (NULL out, NaN);
 * CF_EINVALSTATE outside a task (and without coroutines); CF_ENOMEM. */
int cf_loop_timeout_enter(cf_loop_timeout **out, double delay);

/** As cf_loop_timeout_enter() with an absolute deadline on the cf_loop_time() clock (negative
 * or +INFINITY: none). */
int cf_loop_timeout_enter_at(cf_loop_timeout **out, double when);

/** Moves the deadline to `when` (absolute, on the cf_loop_time() clock; negative or +INFINITY:
 * none; already past: expires in the next iteration). Returns 0; CF_EINVALSTATE once the scope
 * expired or exited; CF_EINVAL (NULL, NaN); CF_EPERM (not the loop thread). */
int cf_loop_timeout_reschedule(cf_loop_timeout *scope, double when);

/** The deadline on the cf_loop_time() clock, or CF_FOREVER (-1) if there is none. NULL gives
 * CF_FOREVER. Loop thread. */
double cf_loop_timeout_when(const cf_loop_timeout *scope);

/** Whether the deadline passed and the scope cancelled its task (stays true after exit). NULL
 * gives false. Loop thread. */
bool cf_loop_timeout_expired(const cf_loop_timeout *scope);

/** Inside the scope's task: closes the scope and returns the body's outcome `rc`, turned into
 * CF_ETIMEDOUT if the scope expired and `rc` is the CF_ECANCELLED its own cancellation caused.
 * Returns CF_EINVALSTATE if already exited; CF_EPERM from another task; CF_EINVAL for NULL. */
int cf_loop_timeout_exit(cf_loop_timeout *scope, int rc);

/** Frees the scope (closing it first if exit was not called, without converting anything).
 * NULL is ignored. Loop thread, or any thread once the loop is closed. */
void cf_loop_timeout_free(cf_loop_timeout *scope);

#ifdef __cplusplus
}
#endif
#endif
