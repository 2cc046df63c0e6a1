/** @file
 * cfutures: the event loop.
 *
 * A single-threaded event loop modelled on Python's asyncio: callbacks scheduled with
 * cf_loop_call_soon() run in FIFO order, timers (cf_loop_call_later/at) in deadline order, and
 * loop futures deliver their done-callbacks on the loop. The loop's purpose is to await
 * executor futures: cf_loop_run_in_executor() offloads blocking work to a thread or process
 * pool and hands back a loop future that completes on the loop thread. Tasks written as
 * straight-line code that suspends at cf_await() are in loop_task.h, and the locks, events,
 * semaphores, conditions and queues they coordinate with in loop_sync.h.
 *
 * One iteration (as asyncio's _run_once): wait for work (not at all if callbacks are ready or
 * the loop is stopping; else until the earliest timer or a cross-thread wake-up), take the
 * callbacks posted from other threads, move the due timers to the ready queue, then run exactly
 * the callbacks that are ready at that point. Callbacks they schedule run in the next
 * iteration, so a callback that re-schedules itself never starves timers or other threads.
 *
 * The loop thread is the thread running cf_loop_run_forever(), cf_loop_run_until_complete()
 * or cf_loop_dispatch() (before any of those, the thread that created the loop). Functions
 * documented "loop thread" must be called there (they return CF_EPERM elsewhere); functions
 * documented "any thread" may be called from anywhere, concurrently.
 *
 * Existing event loops (libuv, GLib, libevent, epoll...) can drive a cf_loop through the one
 * pollable descriptor of cf_loop_fd() and cf_loop_dispatch(); see docs/adapters.md.
 */
#ifndef CFUTURES_LOOP_H
#define CFUTURES_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "executor.h"
#include "future.h"
#include "task.h"
#include "wait.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An event loop (opaque): made by cf_loop_new(), freed by cf_loop_free(). */
typedef struct cf_loop cf_loop;

/** A scheduled callback, returned on request by the call_* functions so it can be cancelled. */
typedef struct cf_loop_handle cf_loop_handle;

/** A loop callback: runs once on the loop thread with the loop and the user data. */
typedef void (*cf_loop_cb)(cf_loop *loop, void *data);

/** Loop options. Zero-initialise ({0}), then set what you need: every zero field means
 * "default". The struct grows only into its reserved tail (docs/abi.md). */
typedef struct cf_loop_options {
    /** Seconds the loop busy-waits for a completion before it sleeps, while executor futures
     * it awaits (run_in_executor, wrap_future) are outstanding. A wake-up from sleep costs
     * several microseconds; spinning turns a short offloaded call into a sub-5 µs round trip.
     * The budget adapts (halved when spinning was useless). A loop that watches descriptors
     * (loop_io.h) does not spin. 0: 50 µs; negative: never spin. */
    double spin_time;
    /** Most threads of the default executor (run_in_executor with a NULL executor).
     * 0: the thread-pool default. */
    unsigned default_workers;
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[16];
} cf_loop_options;

/** A snapshot of what a loop holds, for monitoring (cf_loop_get_stats()). The library fills the
 * whole struct; counters added by later releases come out of the reserved tail, which reads zero
 * from a library that predates them (docs/abi.md). */
typedef struct cf_loop_stats {
    size_t ready;  /**< callbacks ready to run in the next iteration (call_soon, done-callbacks,
                        task steps; not yet those posted from other threads) */
    size_t timers; /**< timers scheduled and not cancelled (call_later, call_at, sleeps,
                        timeouts) */
    size_t tasks;  /**< tasks not finished yet (not started, running or suspended) */
    size_t descriptors;    /**< descriptors the loop watches for the caller: those with a reader or
                                writer, and those awaited (kept until cf_loop_forget_fd()) */
    unsigned signals;      /**< signals with a handler (cf_loop_add_signal_handler()) */
    size_t executor_waits; /**< executor futures awaited through the loop (run_in_executor,
                                wrap_future, awaits) whose completion has not arrived */
    unsigned long long iterations; /**< iterations run since the loop was created (each run
                                        iteration and each cf_loop_dispatch()) */
    /** Reserved for counters added by later releases (docs/abi.md); zero for now. */
    uint64_t reserved[16];
} cf_loop_stats;

/* ---- life cycle ---- */

/** Creates a loop (an epoll descriptor and an eventfd, both close-on-exec). `options` may be
 * NULL. The calling thread becomes the loop thread until another thread runs the loop.
 * Returns 0; CF_EINVAL (NULL out, NaN spin_time, a non-zero reserved slot); CF_ENOMEM; CF_EMFILE
 * (no descriptor). Any thread. */
int cf_loop_new(cf_loop **out, const cf_loop_options *options);

/** Closes the loop, as asyncio's close(): pending callbacks and timers are discarded without
 * being called; unfinished tasks are wound down (their pending cf_await returns CF_ECANCELLED
 * and every later await or sleep returns it at once, so they must return promptly); the
 * default executor is shut down without waiting; executor completions that arrive later are
 * dropped. A loop future the loop was going to complete itself (a wrapped executor future,
 * sleep, gather, wait_for) ends cancelled when its completion is dropped, so none stays pending
 * forever; a loop future you created (cf_loop_create_future()) stays as you leave it: complete
 * or cancel it yourself. Readiness callbacks and descriptor registrations are dropped (the
 * descriptors stay open), readiness futures end cancelled, and signal handlers are removed
 * (loop_io.h). Afterwards most calls return CF_ECLOSED. Idempotent. Returns 0;
 * CF_EINVALSTATE while the loop runs or dispatches (stop it first; this includes calls from its
 * own callbacks and tasks); CF_EINVAL for NULL. Any thread while the loop is idle: like a run,
 * close adopts the loop (the caller becomes its loop thread). Tasks suspended on another
 * thread cannot be resumed here: they end cancelled without running again, and what they own
 * on their stacks is lost, so close on the tasks' thread. */
int cf_loop_close(cf_loop *loop);

/** Closes the loop if needed, waits for the tasks already running on the default executor,
 * and releases the caller's reference. The memory goes when the last loop future of the loop
 * is released too. NULL is ignored (returns 0). Returns CF_EINVALSTATE (nothing done) while
 * the loop runs. Must be the last call on the loop; no thread may still be calling
 * cf_loop_call_soon_threadsafe() on it. Any thread while the loop is idle, as close. */
int cf_loop_free(cf_loop *loop);

/** Runs iterations until cf_loop_stop(). Returns 0 once stopped; CF_EINVALSTATE if the loop is
 * already running, is embedded (cf_loop_fd was called), another loop runs in this thread, or
 * tasks suspended on another thread are still unfinished (a task's coroutine never changes
 * thread); CF_ECLOSED; CF_EFORKED in a child of fork(); CF_EINVAL for NULL. The calling thread
 * becomes the loop thread. */
int cf_loop_run_forever(cf_loop *loop);

/** Runs the loop until `future` is done, then returns its outcome as cf_future_result() does:
 * 0 with its value in `*result` (may be NULL; owned by the future), CF_ETASK, CF_ECANCELLED.
 * `future` may be a loop future of this loop, a task, or any other future (an executor
 * future, another loop's future: it is wrapped). Returns CF_EINVALSTATE if the loop was
 * stopped before the future was done, and the errors of cf_loop_run_forever(). */
int cf_loop_run_until_complete(void **result, cf_loop *loop, cf_future *future);

/** Runs one iteration of the loop on the calling thread, which becomes the loop thread: waits
 * at most `timeout` seconds for work (0: not at all; negative: until something is due), then
 * runs the callbacks that are ready at that point (those they schedule wait for the next
 * call). For programs that drive the loop from their own main loop (a game loop, a GUI idle
 * handler) instead of handing the thread to cf_loop_run_forever(); a host loop that can watch a
 * descriptor uses cf_loop_fd() and cf_loop_dispatch() instead, which never block. A
 * cf_loop_stop() during the iteration has no further effect. Returns 0; CF_EINVAL (NULL, NaN);
 * and the errors of cf_loop_run_forever() (CF_EINVALSTATE while the loop runs, from a callback
 * or task of a loop, for an embedded loop, or while tasks suspended on another thread are
 * unfinished; CF_ECLOSED; CF_EFORKED). Any thread that may run the loop. */
int cf_loop_run_once(cf_loop *loop, double timeout);

/** Asks the loop to stop: the current iteration completes (every callback already due still
 * runs) and cf_loop_run_forever() returns; called before run_forever, exactly one iteration
 * runs. Callbacks scheduled meanwhile stay queued for the next run. Returns 0, CF_EINVAL, or
 * CF_ECLOSED. Any thread (from another thread it acts as call_soon_threadsafe(stop)). */
int cf_loop_stop(cf_loop *loop);

/** Whether the loop is inside cf_loop_run_forever(). Any thread (a snapshot). */
bool cf_loop_is_running(const cf_loop *loop);

/** Whether cf_loop_close() was called. Any thread. */
bool cf_loop_is_closed(const cf_loop *loop);

/** The loop's clock: CLOCK_MONOTONIC in seconds, the time base of cf_loop_call_at(). NULL gives
 * the same clock. Any thread. */
double cf_loop_time(const cf_loop *loop);

/** The loop running or dispatching on the calling thread, or NULL. */
cf_loop *cf_loop_current(void);

/** Fills `*out` with a snapshot of the loop's contents (see cf_loop_stats). It counts the ready
 * queue and the tasks when called, so it costs O(ready + tasks), and the loop pays nothing for
 * it meanwhile. Returns 0 (also on a closed loop: all zero but `iterations`); CF_EINVAL (NULL
 * argument); CF_EPERM (not the loop thread). Loop thread: to watch a loop from another thread,
 * read its stats in a callback posted with cf_loop_call_soon_threadsafe(). */
int cf_loop_get_stats(cf_loop_stats *out, const cf_loop *loop);

/* ---- callbacks and timers ---- */

/** Schedules `cb(loop, data)` to run once, after every callback already scheduled (FIFO).
 * If `handle` is not NULL, stores there a handle for cf_loop_handle_cancel(); the caller owns
 * one reference to it (release with cf_loop_handle_unref()). Returns 0; CF_EINVAL (NULL loop or
 * cb); CF_ECLOSED; CF_EPERM (not the loop thread); CF_ENOMEM. Loop thread. */
int cf_loop_call_soon(cf_loop_handle **handle, cf_loop *loop, cf_loop_cb cb, void *data);

/** Schedules `cb(loop, data)` to run once `delay` seconds from now (0 or negative: in the next
 * iteration, after the callbacks already ready). Timers run in deadline order; timers with
 * the same deadline run in the order they were scheduled. `handle` as cf_loop_call_soon().
 * Returns as cf_loop_call_soon(), and CF_EINVAL for a NaN delay. Loop thread. */
int cf_loop_call_later(cf_loop_handle **handle, cf_loop *loop, double delay, cf_loop_cb cb,
                       void *data);

/** As cf_loop_call_later() with an absolute deadline on the cf_loop_time() clock. Loop thread. */
int cf_loop_call_at(cf_loop_handle **handle, cf_loop *loop, double when, cf_loop_cb cb, void *data);

/** Schedules `cb(loop, data)` from any thread (a lock-free push, plus one eventfd write only if
 * the loop is asleep and nobody woke it yet). It runs on the loop thread in a later iteration;
 * callbacks posted by one thread run in the order posted. Returns 0; CF_EINVAL; CF_ECLOSED
 * (the callback will not run); CF_ENOMEM; CF_EFORKED. Any thread, also signal-unsafe. */
int cf_loop_call_soon_threadsafe(cf_loop *loop, cf_loop_cb cb, void *data);

/** Cancels a scheduled callback: it will not run. No effect if it already ran or was cancelled.
 * A cancelled timer stays in the timer heap until it reaches the top or until more than half
 * of at least 100 timers are cancelled (then the heap is compacted), as in asyncio. NULL is
 * ignored. Loop thread. */
void cf_loop_handle_cancel(cf_loop_handle *handle);

/** Whether the handle was cancelled. Loop thread. */
bool cf_loop_handle_cancelled(const cf_loop_handle *handle);

/** A timer's deadline on the cf_loop_time() clock (0 for a call_soon handle). Loop thread. */
double cf_loop_handle_when(const cf_loop_handle *handle);

/** Releases the caller's reference to a handle (it does not cancel it). NULL is ignored.
 * Loop thread, or any thread once the loop is closed. */
void cf_loop_handle_unref(cf_loop_handle *handle);

/* ---- loop futures ---- */

/** Creates a pending loop future: a cf_future (use every future.h function on it) whose
 * done-callbacks are always scheduled on the loop with call_soon, never called inline, also
 * when added to a future that is already done (asyncio's rule). It has no RUNNING state.
 * Completing or cancelling it from another thread is allowed (its callbacks still run on the
 * loop thread). Callbacks that would be scheduled on a closed loop are discarded. Returns 0;
 * CF_EINVAL; CF_ECLOSED; CF_ENOMEM. Any thread. */
int cf_loop_create_future(cf_future **out, cf_loop *loop);

/** Returns a loop future that completes on the loop thread with the outcome of `future` (an
 * executor future, a plain future, or a future of another loop): same value (owned by
 * `future`, which the loop future keeps alive), same error code and message, cancelled if it
 * was cancelled. The completion always arrives in a later iteration, even if `future` is
 * already done. Cancelling the loop future cancels `future` if it has not started running;
 * otherwise the work goes on and its outcome is discarded. A loop future of this loop is
 * returned as is (with a new reference). Returns 0; CF_EINVAL; CF_ECLOSED; CF_ENOMEM. Any
 * thread. */
int cf_loop_wrap_future(cf_future **out, cf_loop *loop, cf_future *future);

/** Submits `fn(arg)` to `executor` (NULL: the loop's default executor, see
 * cf_loop_set_default_executor(); by default a thread pool created on first use and shut down by
 * close) and returns its wrapped loop future (see cf_loop_wrap_future()). Returns 0; CF_EINVAL;
 * CF_ECLOSED; CF_EPERM (default executor from another thread); CF_ESHUTDOWN (default executor
 * after cf_loop_shutdown_default_executor()); the errors of cf_executor_submit(). Loop thread for
 * a NULL executor, else any thread. */
int cf_loop_run_in_executor(cf_future **out, cf_loop *loop, cf_executor *executor, cf_fn fn,
                            void *arg);

/** As cf_loop_run_in_executor() for a bytes task (works with the process pool); the loop
 * future's bytes are read with cf_future_result_bytes(). */
int cf_loop_run_in_executor_bytes(cf_future **out, cf_loop *loop, cf_executor *executor,
                                  cf_bytes_fn fn, const void *arg, size_t len);

/** Makes `executor` the loop's default executor, used by run_in_executor with a NULL executor
 * (asyncio's set_default_executor). The executor stays the caller's: the loop never shuts it
 * down (except through cf_loop_shutdown_default_executor()) nor frees it, so keep it alive until
 * another one is set or the loop is freed. NULL goes back to the loop's own thread pool (created
 * on first use, shut down by close, freed by cf_loop_free). Setting an executor also lifts a
 * previous cf_loop_shutdown_default_executor(). Returns 0; CF_EINVAL; CF_ECLOSED; CF_EPERM (not
 * the loop thread). Loop thread. */
int cf_loop_set_default_executor(cf_loop *loop, cf_executor *executor);

/** Shuts the default executor down and waits for its work and threads to finish, without
 * blocking the loop (asyncio's shutdown_default_executor): the waiting happens on a helper
 * thread, and the returned loop future finishes (with NULL) when it is done; it finishes at once
 * if no default executor was ever used. Await it in a task, or run_until_complete() it from
 * plain code to block until done. From now on run_in_executor with a NULL executor returns
 * CF_ESHUTDOWN (until another executor is set). `timeout` seconds (negative: none) bound the
 * wait: past it the future fails with CF_ETIMEDOUT and the shutdown goes on (cf_loop_free
 * waits for it). If the loop is closed first, the future ends cancelled. Returns 0; CF_EINVAL
 * (NULL, NaN); CF_ECLOSED; CF_EPERM (not the loop thread); CF_ENOMEM; CF_EAGAIN (no thread).
 * Loop thread. */
int cf_loop_shutdown_default_executor(cf_future **out, cf_loop *loop, double timeout);

/* ---- combinators, callback style (each returns a loop future) ---- */

/** A loop future that finishes with `result` after `delay` seconds (asyncio.sleep). Cancelling
 * it cancels its timer. 0 or negative: finishes in the next iteration. Returns 0; CF_EINVAL
 * (NaN delay); CF_ECLOSED; CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_sleep(cf_future **out, cf_loop *loop, double delay, void *result);

/** A loop future that finishes when all `n` futures have (asyncio.gather without
 * return_exceptions). Its result is an array of the n values in argument order (owned by the
 * gather future; the values stay owned by their futures, which it keeps alive). The first
 * child to fail makes it fail at once with that child's code and message; a cancelled child
 * makes it fail with code CF_ECANCELLED; the other children keep running. Cancelling it
 * cancels every child still pending, and it ends cancelled. Futures that are not loop futures
 * of `loop` are wrapped. n == 0 gives a future that finishes with NULL. Returns 0; CF_EINVAL;
 * CF_ECLOSED; CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_gather(cf_future **out, cf_loop *loop, cf_future *const *fs, size_t n);

/** A loop future that mirrors `future` (value, error or cancellation), but if `timeout` seconds
 * pass first it cancels `future`, waits until it is really done, then fails with CF_ETIMEDOUT
 * (or mirrors it if it finished anyway): asyncio 3.11's wait_for. timeout 0 checks once
 * (cancel-and-wait if not done); negative: no limit. Cancelling the returned future cancels
 * `future` and ends cancelled once `future` is done. Returns 0; CF_EINVAL (NaN); CF_ECLOSED;
 * CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_wait_for(cf_future **out, cf_loop *loop, cf_future *future, double timeout);

/* ---- waiting on many futures, callback style (asyncio.wait, asyncio.as_completed) ---- */

/** A loop future that finishes (with result NULL) once `when` holds over the `n` futures
 * (CF_FIRST_COMPLETED, CF_FIRST_EXCEPTION: one failed, or all are done; CF_ALL_COMPLETED), or
 * when `timeout` seconds pass (negative: no limit; 0: finishes at once either way). Like
 * asyncio.wait it never fails on a timeout and never cancels the futures: read the split with
 * cf_future_done() on each (or use cf_await_many() in a task). If the condition already holds,
 * it is finished on return (its done-callbacks still run in a later iteration). Futures of any
 * kind are watched without being wrapped; duplicates are allowed. Cancelling it cancels only
 * it. Returns 0; CF_EINVAL (NULL out, loop or fs, n == 0, a NULL entry, unknown `when`, NaN);
 * CF_ECLOSED; CF_EPERM (not the loop thread); CF_ENOMEM. Loop thread. */
int cf_loop_wait(cf_future **out, cf_loop *loop, cf_future *const *fs, size_t n,
                 cf_return_when when, double timeout);

/** An iterator over futures in the order they complete, on the loop thread. */
typedef struct cf_loop_as_completed cf_loop_as_completed;

/** Creates an iterator over the `n` futures (of any kind; duplicates are yielded once) with an
 * overall deadline `timeout` seconds from now (negative: none). Futures already done come
 * first, in input order, then the others in the order the loop learns of their completion. The
 * iterator holds a reference to every future until it is freed. Returns 0; CF_EINVAL (NULL out,
 * loop or fs, n == 0, a NULL entry, NaN); CF_ECLOSED; CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_as_completed_new(cf_loop_as_completed **out, cf_loop *loop, cf_future *const *fs,
                             size_t n, double timeout);

/** Inside a task: yields the next future to complete, waiting for it if needed (asyncio 3.13's
 * async-for form of as_completed, which yields the original futures). Returns 0 with the future
 * in `*out` (borrowed: valid until the iterator is freed); CF_ETIMEDOUT if the deadline passed
 * with futures still pending (they are not cancelled; later calls still yield those that have
 * completed since); CF_EOF once every future has been yielded; CF_ECANCELLED if this task was
 * cancelled; CF_EINVALSTATE outside a task; CF_EPERM from a task of another loop, or while
 * another task waits on the same iterator; CF_EINVAL. */
int cf_loop_as_completed_next(cf_future **out, cf_loop_as_completed *it);

/** Yields the next future that has completed, without waiting (for callbacks). Returns 0 and
 * the future; CF_EAGAIN if none is ready yet; CF_ETIMEDOUT and CF_EOF as
 * cf_loop_as_completed_next(); CF_EPERM (not the loop thread); CF_EINVAL. Loop thread. */
int cf_loop_as_completed_try_next(cf_future **out, cf_loop_as_completed *it);

/** The number of futures not yet yielded. 0 for NULL. Loop thread. */
size_t cf_loop_as_completed_remaining(const cf_loop_as_completed *it);

/** Frees the iterator and releases its references; the futures are not cancelled. NULL is
 * ignored (returns 0). Returns CF_EINVALSTATE, freeing nothing, while a task waits in
 * cf_loop_as_completed_next() on it. Loop thread, or any thread once the loop is closed. */
int cf_loop_as_completed_free(cf_loop_as_completed *it);

/* ---- embedding in another event loop ---- */

/** Returns a descriptor that is readable (level-triggered) exactly when the loop has work due:
 * a callback ready, a timer expired, a completion posted from another thread. Register it
 * for reading in the host loop and call cf_loop_dispatch() when it is readable. The first call
 * makes the loop "embedded" (adds a timerfd for its timers); an embedded loop cannot be run
 * with run_forever or run_until_complete. The descriptor stays owned by the loop. Returns the
 * descriptor (>= 0); CF_EINVAL; CF_ECLOSED; CF_EINVALSTATE (inside run_forever); CF_EMFILE;
 * CF_EPERM. Loop thread; the first call, like cf_loop_dispatch(), makes the calling thread the
 * loop thread (later calls from other threads return CF_EPERM). */
int cf_loop_fd(cf_loop *loop);

/** Runs one iteration without blocking on the calling thread, which becomes the loop thread.
 * If work remains afterwards the descriptor stays readable, so the host loop comes back after
 * serving its own events. A dispatch with nothing posted from other threads and no timer due
 * makes no system call. Not re-entrant: never call it from a cfutures callback or task.
 * Returns 0; CF_EINVAL; CF_ECLOSED; CF_EINVALSTATE (inside run_forever or dispatch, or another
 * loop runs in this thread); CF_EFORKED. */
int cf_loop_dispatch(cf_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
