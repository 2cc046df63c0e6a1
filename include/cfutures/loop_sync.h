/** @file
 * cfutures: coordination primitives for loop tasks (asyncio's Lock, Event, Semaphore,
 * BoundedSemaphore, Condition and Queue).
 *
 * Each primitive belongs to one loop, given at creation, and is used on that loop's thread:
 * the operations that may wait (acquire, wait, put, get, join) suspend the calling task and
 * must be called from a task of that loop; the others (try-variants, release, set, notify,
 * queries) may also be called from plain loop callbacks. None is thread-safe: another thread
 * reaches them through cf_loop_call_soon_threadsafe(). Errors for misuse: CF_EINVALSTATE when a
 * waiting operation is called outside a task, CF_EPERM from a task of another loop or from a
 * thread other than the loop's, CF_EINVAL for NULL.
 *
 * Fairness: waiters are served in FIFO order, and what they wait for is handed to them
 * directly: a release gives the lock (a permit, an item, a free slot) to the oldest waiter in
 * the same step, so a task that arrives later cannot take it first.
 *
 * Cancellation never loses a wake-up or an item. CF_ECANCELLED from a waiting operation means
 * that it did not happen: nothing was acquired, taken or put. A task cancelled after it was
 * handed what it waited for, but before it ran again, completes the operation (the lock is
 * its, the item is returned) and sees the cancellation at its next suspension point, as Trio
 * does. (asyncio instead passes the lock or wake-up on to the next waiter; it took it years of
 * bug fixes to get there: bpo-27585, gh-90155, bpo-23812, gh-112202.)
 *
 * Lifetime: a primitive holds a reference on its loop, so it may outlive it. It must not be
 * freed while tasks wait on it (the free function then returns CF_EINVALSTATE). Closing the
 * loop withdraws every waiter (its wait returns CF_ECANCELLED).
 *
 * Built with -Dcoroutines=false every function exists; the waiting operations return
 * CF_EINVALSTATE (there are no tasks), the others work. See docs/event_loop.md.
 */
#ifndef CFUTURES_LOOP_SYNC_H
#define CFUTURES_LOOP_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Lock (asyncio.Lock) ---- */

/** A lock for loop tasks (opaque): made by cf_loop_lock_new(), freed by cf_loop_lock_free(). */
typedef struct cf_loop_lock cf_loop_lock;

/** Creates an unlocked lock bound to `loop`. Returns 0; CF_EINVAL; CF_ECLOSED; CF_EPERM (not
 * the loop thread); CF_ENOMEM. Loop thread. */
int cf_loop_lock_new(cf_loop_lock **out, cf_loop *loop);

/** Frees the lock (locked or not). NULL is ignored (returns 0). Returns CF_EINVALSTATE, freeing
 * nothing, while tasks wait on it. Loop thread, or any thread while the loop is idle. */
int cf_loop_lock_free(cf_loop_lock *lock);

/** Inside a task: takes the lock, waiting in FIFO order while it is held. The lock has no
 * owner: any task or callback may release it (as asyncio). Returns 0 (the lock is the
 * caller's); CF_ECANCELLED if the task was cancelled before the lock was handed to it (it does
 * not hold the lock); CF_EINVALSTATE outside a task; CF_EPERM; CF_EINVAL. */
int cf_loop_lock_acquire(cf_loop_lock *lock);

/** Takes the lock if it is free, without waiting. Returns 0; CF_EAGAIN if it is held (also
 * when it was just handed to a waiter that has not run yet); CF_EPERM; CF_EINVAL. Loop
 * thread. */
int cf_loop_lock_try_acquire(cf_loop_lock *lock);

/** Releases the lock: the oldest waiter gets it at once (it stays locked), or it becomes free.
 * Returns 0; CF_EINVALSTATE if it is not locked; CF_EPERM; CF_EINVAL. Loop thread. */
int cf_loop_lock_release(cf_loop_lock *lock);

/** Whether the lock is held. NULL gives false. Loop thread. */
bool cf_loop_lock_locked(const cf_loop_lock *lock);

/* ---- Event (asyncio.Event) ---- */

/** An event for loop tasks (opaque): made by cf_loop_event_new(), freed by cf_loop_event_free(). */
typedef struct cf_loop_event cf_loop_event;

/** Creates an event, initially clear. Returns as cf_loop_lock_new(). Loop thread. */
int cf_loop_event_new(cf_loop_event **out, cf_loop *loop);

/** Frees the event. NULL is ignored. CF_EINVALSTATE while tasks wait on it. Loop thread, or any
 * thread while the loop is idle. */
int cf_loop_event_free(cf_loop_event *event);

/** Inside a task: returns at once if the event is set, else waits until it is. A waiter woken
 * by cf_loop_event_set() returns 0 even if the event is cleared before it runs. Returns 0;
 * CF_ECANCELLED (cancelled before the event was set); CF_EINVALSTATE outside a task; CF_EPERM;
 * CF_EINVAL. */
int cf_loop_event_wait(cf_loop_event *event);

/** Sets the event and wakes every waiter (in the order they started waiting). Setting a set
 * event does nothing. Returns 0; CF_EPERM; CF_EINVAL. Loop thread (from another thread, post
 * it with cf_loop_call_soon_threadsafe()). */
int cf_loop_event_set(cf_loop_event *event);

/** Clears the event: later waits wait again. Returns 0; CF_EPERM; CF_EINVAL. Loop thread. */
int cf_loop_event_clear(cf_loop_event *event);

/** Whether the event is set. NULL gives false. Loop thread. */
bool cf_loop_event_is_set(const cf_loop_event *event);

/* ---- Semaphore and BoundedSemaphore (asyncio.Semaphore, asyncio.BoundedSemaphore) ---- */

/** A semaphore, bounded or not, for loop tasks (opaque): made by cf_loop_semaphore_new()
 * or cf_loop_bounded_semaphore_new(), freed by cf_loop_semaphore_free(). */
typedef struct cf_loop_semaphore cf_loop_semaphore;

/** Creates a semaphore with `value` permits. Returns as cf_loop_lock_new(). Loop thread. */
int cf_loop_semaphore_new(cf_loop_semaphore **out, cf_loop *loop, size_t value);

/** Creates a bounded semaphore: releasing it beyond its initial `value` is an error. Returns as
 * cf_loop_lock_new(). Loop thread. */
int cf_loop_bounded_semaphore_new(cf_loop_semaphore **out, cf_loop *loop, size_t value);

/** Frees the semaphore. NULL is ignored. CF_EINVALSTATE while tasks wait on it. Loop thread, or
 * any thread while the loop is idle. */
int cf_loop_semaphore_free(cf_loop_semaphore *sem);

/** Inside a task: takes a permit, waiting in FIFO order while there is none. Returns 0 (the
 * permit is the caller's); CF_ECANCELLED (cancelled before a permit was handed to it: it holds
 * none); CF_EINVALSTATE outside a task; CF_EPERM; CF_EINVAL. */
int cf_loop_semaphore_acquire(cf_loop_semaphore *sem);

/** Takes a permit without waiting. Returns 0; CF_EAGAIN if none is free; CF_EPERM; CF_EINVAL.
 * Loop thread. */
int cf_loop_semaphore_try_acquire(cf_loop_semaphore *sem);

/** Returns a permit: the oldest waiter gets it at once, or it becomes free. Returns 0;
 * CF_EINVALSTATE for a bounded semaphore that would exceed its initial value; CF_EPERM;
 * CF_EINVAL. Loop thread. */
int cf_loop_semaphore_release(cf_loop_semaphore *sem);

/** The number of free permits. NULL gives 0. Loop thread. */
size_t cf_loop_semaphore_value(const cf_loop_semaphore *sem);

/** Whether an acquire would wait (no free permit). NULL gives false. Loop thread. */
bool cf_loop_semaphore_locked(const cf_loop_semaphore *sem);

/* ---- Condition (asyncio.Condition) ---- */

/** A condition variable for loop tasks (opaque): made by cf_loop_condition_new(), freed by
 * cf_loop_condition_free(). */
typedef struct cf_loop_condition cf_loop_condition;

/** Creates a condition variable over `lock` (a lock of the same loop, which stays the
 * caller's and must outlive the condition), or over a lock of its own if `lock` is NULL.
 * Returns as cf_loop_lock_new(), and CF_EINVAL for a lock of another loop. Loop thread. */
int cf_loop_condition_new(cf_loop_condition **out, cf_loop *loop, cf_loop_lock *lock);

/** Frees the condition (and its own lock). NULL is ignored. CF_EINVALSTATE while tasks wait on
 * it. Loop thread, or any thread while the loop is idle. */
int cf_loop_condition_free(cf_loop_condition *cond);

/** The condition's lock (borrowed): acquire and release it with the cf_loop_lock functions.
 * NULL gives NULL. Loop thread. */
cf_loop_lock *cf_loop_condition_lock(const cf_loop_condition *cond);

/** Inside a task that holds the lock: releases it, waits until notified, then takes the lock
 * again, so the lock is held when this returns, whatever it returns (as asyncio). If the task
 * is cancelled while it waits for the lock again, it still takes it first, and the
 * cancellation waits for its next suspension point. Returns 0 (notified); CF_ECANCELLED
 * (cancelled before it was notified); CF_EINVALSTATE if the lock is not held, or outside a
 * task; CF_EPERM; CF_EINVAL. While the loop closes, it returns CF_ECANCELLED and holds the lock
 * only if it was free. Wake-ups may be spurious in general: re-check the state in a loop, or
 * use cf_loop_condition_wait_for(). */
int cf_loop_condition_wait(cf_loop_condition *cond);

/** Inside a task that holds the lock: waits until `predicate(data)` is true, checking it
 * first and after every notification, with the lock held. Returns 0 once it is true, or the
 * error of cf_loop_condition_wait() that ended the wait (the lock is held in either case). */
int cf_loop_condition_wait_for(cf_loop_condition *cond, bool (*predicate)(void *data), void *data);

/** With the lock held: wakes up to `n` waiters, oldest first. Each returns from its wait once
 * it has the lock again. Returns 0; CF_EINVALSTATE if the lock is not held; CF_EPERM;
 * CF_EINVAL. Loop thread. */
int cf_loop_condition_notify(cf_loop_condition *cond, size_t n);

/** With the lock held: wakes every waiter. Returns as cf_loop_condition_notify(). */
int cf_loop_condition_notify_all(cf_loop_condition *cond);

/* ---- Queue, LifoQueue, PriorityQueue (asyncio.Queue and its subclasses) ---- */

/** A queue for loop tasks (opaque): made by cf_loop_queue_new(), freed by
 * cf_loop_queue_free(). */
typedef struct cf_loop_queue cf_loop_queue;

/** The order in which a queue hands out its items. */
typedef enum cf_loop_queue_order {
    CF_LOOP_QUEUE_FIFO = 0,     /**< first in, first out (asyncio.Queue) */
    CF_LOOP_QUEUE_LIFO = 1,     /**< last in, first out (asyncio.LifoQueue) */
    CF_LOOP_QUEUE_PRIORITY = 2, /**< smallest first by `compare`, ties first in first out */
} cf_loop_queue_order;

/** Queue options. Zero-initialise: every zero field means "default". The struct grows only into
 * its reserved tail (docs/abi.md). */
typedef struct cf_loop_queue_options {
    /** Most items the queue holds; put waits while it is full. 0: no limit. */
    size_t maxsize;
    /** CF_LOOP_QUEUE_FIFO (default), _LIFO or _PRIORITY. */
    cf_loop_queue_order order;
    /** PRIORITY only (required there): negative if item `a` comes out before item `b`, 0 if
     * they are equal (then the one put first comes out first), positive otherwise. */
    int (*compare)(const void *a, const void *b);
    /** Reserved for fields added by later releases (docs/abi.md): must be zero, which a
     * zero-initialised struct gives; a non-zero slot makes the constructor return CF_EINVAL. */
    uint64_t reserved[16];
} cf_loop_queue_options;

/** Creates an empty queue. `options` may be NULL (unbounded FIFO). Items are opaque pointers
 * that stay owned by the caller (free discards the remaining ones without touching them).
 * Returns 0; CF_EINVAL (NULL out or loop, unknown order, PRIORITY without compare, a non-zero
 * reserved slot); CF_ECLOSED;
 * CF_EPERM; CF_ENOMEM. Loop thread. */
int cf_loop_queue_new(cf_loop_queue **out, cf_loop *loop, const cf_loop_queue_options *options);

/** Frees the queue; the items still in it are dropped (never dereferenced). NULL is ignored.
 * CF_EINVALSTATE while tasks wait on it (put, get or join). Loop thread, or any thread while
 * the loop is idle. */
int cf_loop_queue_free(cf_loop_queue *queue);

/** Inside a task: adds `item`, waiting in FIFO order while the queue is full. An item put
 * while tasks wait in get goes straight to the oldest of them. Returns 0 (the item is in the
 * queue, or was handed to a getter); CF_ECANCELLED (cancelled before there was room: the item
 * was not added); CF_EINVALSTATE outside a task; CF_EPERM; CF_EINVAL; CF_ENOMEM (unbounded
 * queue that cannot grow). */
int cf_loop_queue_put(cf_loop_queue *queue, void *item);

/** Adds `item` without waiting (asyncio's put_nowait). Returns 0; CF_EFULL if the queue is
 * full; CF_EPERM; CF_EINVAL; CF_ENOMEM. Loop thread. */
int cf_loop_queue_try_put(cf_loop_queue *queue, void *item);

/** Inside a task: removes the next item and stores it in `*item`, waiting in FIFO order while
 * the queue is empty. Returns 0; CF_ECANCELLED (cancelled before an item was handed to it:
 * nothing was removed, `*item` is NULL); CF_EINVALSTATE outside a task; CF_EPERM; CF_EINVAL. */
int cf_loop_queue_get(void **item, cf_loop_queue *queue);

/** Removes the next item without waiting (asyncio's get_nowait). Returns 0; CF_EAGAIN if the
 * queue is empty; CF_EPERM; CF_EINVAL. Loop thread. */
int cf_loop_queue_try_get(void **item, cf_loop_queue *queue);

/** Tells the queue that an item taken from it has been processed (asyncio's task_done): each
 * put counts one unfinished item, each task_done one less; at zero, cf_loop_queue_join()
 * returns. Returns 0; CF_EINVALSTATE if called more times than items were put; CF_EPERM;
 * CF_EINVAL. Loop thread. */
int cf_loop_queue_task_done(cf_loop_queue *queue);

/** Inside a task: waits until every item put has been marked done with
 * cf_loop_queue_task_done() (returns at once if none is unfinished). Returns 0; CF_ECANCELLED;
 * CF_EINVALSTATE outside a task; CF_EPERM; CF_EINVAL. */
int cf_loop_queue_join(cf_loop_queue *queue);

/** The number of items in the queue (items handed straight to a getter never count). NULL
 * gives 0. Loop thread. */
size_t cf_loop_queue_size(const cf_loop_queue *queue);

/** The queue's maxsize (0: unbounded). NULL gives 0. Any thread. */
size_t cf_loop_queue_maxsize(const cf_loop_queue *queue);

/** Whether the queue holds no item. NULL gives true. Loop thread. */
bool cf_loop_queue_empty(const cf_loop_queue *queue);

/** Whether the queue holds maxsize items (never true for an unbounded queue). NULL gives false.
 * Loop thread. */
bool cf_loop_queue_full(const cf_loop_queue *queue);

#ifdef __cplusplus
}
#endif
#endif
