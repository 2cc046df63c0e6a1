/* Event-loop internals shared by loop.c, loop/future.c, loop/combinators.c and loop/task.c.
 * Not installed.
 *
 * Threads. One thread drives a loop (the "loop thread": the thread running cf_loop_run_forever
 * or cf_loop_dispatch, or the creating thread before that). Everything marked "loop thread"
 * below is touched by that thread only and needs no synchronisation. Other threads reach the
 * loop only through the inbox (a lock-free MPSC stack of handles) and the eventfd.
 *
 * Handles. Every unit of work the loop runs is a cf_loop_handle: user callbacks, timers,
 * done-callbacks of loop futures, task steps, completions of executor futures. A handle's kind
 * says how to run it and how to discard it unrun (close). Handles are either pooled (storage
 * owned by the loop, reference counted, recycled through a per-loop free list) or embedded in
 * an owner object (a task, a wrapped future...), whose kind functions manage the owner. */
#ifndef CFUTURES_LOOP_INTERNAL_H
#define CFUTURES_LOOP_INTERNAL_H

#include "cfutures/loop.h"
#include "cfutures/loop_task.h"
#include "core/internal.h"
#include "core/list.h"
#include "loop/slab.h"
#include "loop/timer_heap.h"

typedef struct cf__handle_kind {
    /* Runs the handle on the loop thread. For an embedded handle, the owner may be freed by
     * this call: the loop does not touch the handle afterwards. */
    void (*run)(cf_loop *loop, cf_loop_handle *h);
    /* Discards a handle that will never run (loop closed); NULL: nothing to do. Kinds that
     * travel through the inbox may be dropped on the posting thread. */
    void (*drop)(cf_loop_handle *h);
} cf__handle_kind;

enum {
    CF__H_CANCELLED = 1u << 0,
    CF__H_IN_HEAP = 1u << 1,  /* a timer still in the heap (maybe cancelled) */
    CF__H_EMBEDDED = 1u << 2, /* storage belongs to an owner object */
    CF__H_DONE = 1u << 3,     /* ran or was dropped */
    CF__H_LOOP_REF = 1u << 4, /* handed to the user: holds a reference on the loop */
    CF__H_QUEUED = 1u << 5,   /* in the ready queue */
    CF__H_HEAP = 1u << 6,     /* from cf__malloc (made off the loop thread, or for the user) */
};

struct cf_loop_handle {
    cf_loop_handle *next; /* ready queue, inbox or free list */
    const cf__handle_kind *kind;
    void *fn; /* the callback the kind calls */
    void *data;
    void *aux; /* a second argument some kinds need (a future) */
    cf_loop *loop;
    int64_t when;  /* timers: deadline, CLOCK_MONOTONIC ns */
    uint32_t refs; /* pooled handles: queue + user + owner references (loop thread) */
    uint32_t flags;
};

/* White-box counters, for tests (never for speed measurements). */
typedef struct cf__loop_stats {
    uint64_t wake_writes; /* eventfd writes by producers (and by dispatch re-arming itself) */
    uint64_t sleeps;      /* windows in which the loop allowed producers to wake it */
    uint64_t drains;      /* inbox drains that found work */
    uint64_t iterations;
} cf__loop_stats;

struct cf_loop {
    /* ---- shared with other threads ---- */
    _Alignas(CF__CACHELINE) _Atomic(cf_loop_handle *) inbox; /* newest first; or CLOSED */
    /* 1 while the loop is awake or a wake-up is already on its way: producers then skip the
     * eventfd write. The loop clears it only just before it may sleep. */
    _Atomic uint32_t wake_pending;
    _Atomic uint32_t refs;        /* the user's, one per loop future, transient posters */
    _Atomic size_t outstanding;   /* executor completions the loop is waiting for */
    _Atomic uintptr_t owner;      /* cf__thread_self() of the loop thread */
    _Atomic uint64_t wake_writes; /* stats */
    _Atomic uint32_t closed_flag; /* mirror of `closed` for other threads */
    _Atomic uint32_t busy;        /* 0 idle, else running or dispatching (claims the loop) */

    /* ---- loop thread ---- */
    _Alignas(CF__CACHELINE) cf_loop_handle *ready_head;
    cf_loop_handle *ready_tail;
    cf__timer_heap timers;
    size_t timers_cancelled; /* cancelled handles still in the heap */
    uint64_t timer_seq;
    cf__slab_cache handles; /* storage of pooled handles */
    cf_future *current_task;
    cf__dlink *tasks; /* unfinished tasks (loop/task.c) */
    /* Tasks that have run and not finished, and the thread they run on: coroutines never
     * migrate, so while there are any, no other thread may run the loop. */
    size_t tasks_live;
    uintptr_t tasks_thread;
    cf_executor *default_executor; /* the loop's own thread pool, created on first use */
    cf_executor *user_executor;    /* cf_loop_set_default_executor()'s (borrowed) */
    void *shutdown_jobs;           /* threads of cf_loop_shutdown_default_executor() */
    bool default_shutdown;         /* no more work for the default executor */
    /* Watched descriptors (loop/io.c): records by descriptor number. */
    struct cf__io **io;
    size_t io_cap;
    size_t io_registered; /* records in the epoll set: the loop polls them even when busy */
    uint32_t io_gen;
    unsigned io_spares; /* readiness futures kept for reuse (a socket server makes one a wait) */
    void *io_spare;
    struct cf__signals *signals;             /* loop/signal.c, once a handler was added */
    struct cf__shared_timers *shared_timers; /* loop/shared_timer.c, once a deadline was shared */
    int epfd, efd, tfd;                      /* tfd: only once embedded */
    int64_t tfd_armed; /* deadline the timerfd is armed for, CF__FOREVER_NS if none */
    int64_t spin_max_ns;
    int64_t spin_ns; /* current adaptive spin budget */
    uint64_t sleeps, drains, iterations;
    unsigned default_workers;
    uint32_t fork_gen;
    bool running;     /* inside run_forever */
    bool dispatching; /* inside dispatch */
    bool stopping;
    bool closed;
    bool closing;   /* tasks are being wound down by close */
    bool embedded;  /* cf_loop_fd was called */
    bool efd_stale; /* a producer announced a wake-up whose write had not landed yet */
};

/* ---- threads and references (loop.c) ---- */

static inline bool cf__loop_on_thread(cf_loop *loop)
{
    return atomic_load_explicit(&loop->owner, memory_order_relaxed) == cf__thread_self();
}

/* CF_EPERM off the loop thread, else 0: the check of operations that only need the loop's
 * thread (also while it closes, when tasks winding down still call them). */
static inline int cf__loop_thread_check(cf_loop *loop)
{
    return cf__loop_on_thread(loop) ? 0 : CF_EPERM;
}

/* The rule "loop thread" of the comments, checked (see CF__ASSERT). */
#define CF__ASSERT_LOOP_THREAD(loop) CF__ASSERT(cf__loop_on_thread(loop))

static inline void cf__loop_ref(cf_loop *loop)
{
    atomic_fetch_add_explicit(&loop->refs, 1, memory_order_relaxed);
}
void cf__loop_unref(cf_loop *loop);

/* ---- handles (loop.c) ---- */

/* A pooled handle (slab storage) with one reference (the queue's), or NULL. Loop thread. */
cf_loop_handle *cf__loop_handle_alloc(cf_loop *loop, const cf__handle_kind *kind, void *fn,
                                      void *data);
/* A handle in cf__malloc storage with one reference, or NULL: for the user (released from any
 * thread after close), or made on a thread other than the loop's. Any thread. */
cf_loop_handle *cf__loop_handle_heap(cf_loop *loop, const cf__handle_kind *kind, void *fn,
                                     void *data);
/* Drops one reference of a pooled handle; the last one frees it. Loop thread (any thread for
 * CF__H_HEAP handles once the loop is closed). */
void cf__loop_handle_release(cf_loop *loop, cf_loop_handle *h);
/* Initialises a handle embedded in an owner object. */
void cf__loop_handle_embed(cf_loop_handle *h, cf_loop *loop, const cf__handle_kind *kind,
                           void *data);
/* Appends to the ready queue (loop thread; the loop must not be closed). */
void cf__loop_ready_push(cf_loop *loop, cf_loop_handle *h);
/* Schedules a handle from any thread: the ready queue on the loop thread, else the inbox and
 * a wake-up. On a closed loop the handle is dropped (kind->drop) instead. */
void cf__loop_post(cf_loop *loop, cf_loop_handle *h);
/* Arms a pooled handle as a timer due at `when` (ns). Returns 0 or CF_ENOMEM (the handle is
 * then untouched). Loop thread. */
int cf__loop_timer_start(cf_loop *loop, cf_loop_handle *h, int64_t when);
/* A timer its owner keeps: a pooled handle of `kind` (data: the owner) due at `when`, with a
 * second reference, the owner's, so that it can cancel it. NULL without memory. Loop thread. */
cf_loop_handle *cf__loop_timer_new(cf_loop *loop, const cf__handle_kind *kind, void *data,
                                   int64_t when);
/* Cancels an owner's timer and drops the owner's reference (*timer becomes NULL). Returns
 * whether one was armed. Loop thread. */
bool cf__loop_timer_cancel(cf_loop_handle **timer);
/* In the kind's run or drop: the owner forgets its timer and drops its reference. */
void cf__loop_timer_fired(cf_loop_handle **timer, cf_loop_handle *h);
/* Marks a handle cancelled (a no-op once it ran). Loop thread. */
void cf__loop_handle_cancel(cf_loop_handle *h);

/* Checks shared by the public entry points that need the loop thread of an open loop. */
int cf__loop_check(cf_loop *loop);

/* Moves what other threads posted to the ready queue (loop thread, open loop). */
void cf__loop_collect_inbox(cf_loop *loop);

void cf__loop_get_stats(cf_loop *loop, cf__loop_stats *out);

/* ---- loop futures (loop/future.c) ---- */

/* The header of every loop-bound future (plain ones, wrapped executor futures, combinators,
 * tasks). Its ops->schedule_callback is cf__loop_schedule_callback. */
typedef struct cf__loop_future {
    cf_future base;
    cf_loop *loop; /* holds a reference on the loop */
} cf__loop_future;

void cf__loop_schedule_callback(cf_future *f, cf_done_cb cb, void *data);
/* Initialises a loop future embedded in a larger object with `refs` references. */
void cf__loop_future_init(cf__loop_future *lf, cf_loop *loop, uint32_t refs,
                          const cf__future_ops *ops);
/* Frees the memory of a loop future (the start of its cf__malloc'd object) and drops its loop
 * reference: the end of every ops->release. */
void cf__loop_future_free(cf__loop_future *lf);

static inline cf_loop *cf__future_loop(const cf_future *f)
{
    return f->ops && f->ops->schedule_callback == cf__loop_schedule_callback
               ? ((const cf__loop_future *)f)->loop
               : NULL;
}

/* A hook on a future whose firing posts an embedded handle to a loop: the way loop code learns
 * that a future (of any kind, completed on any thread) is done, without allocating. */
typedef struct cf__loop_waiter {
    cf__hook hook;
    cf_loop_handle handle;
} cf__loop_waiter;

void cf__loop_waiter_init(cf__loop_waiter *w, cf_loop *loop, const cf__handle_kind *kind,
                          void *data);
/* Starts watching `f`; if it is already done the handle is posted at once (so the reaction
 * still happens on a later iteration, never inline). */
void cf__loop_waiter_watch(cf__loop_waiter *w, cf_future *f);
/* Stops watching; true if the handle will never be posted, false if it has been or is being
 * posted. */
bool cf__loop_waiter_unwatch(cf__loop_waiter *w, cf_future *f);

/* ---- the default executor (loop/executor.c) ---- */

/* The executor run_in_executor uses for NULL: the user's, or the loop's own thread pool,
 * created on first use. Returns 0; CF_EPERM (not the loop thread); CF_ECLOSED; CF_ESHUTDOWN
 * after cf_loop_shutdown_default_executor(); the errors of cf_thread_pool_new(). */
int cf__loop_default_executor(cf_executor **out, cf_loop *loop);
/* Joins the threads of cf_loop_shutdown_default_executor() still alive (cf_loop_free, before
 * the loop's own executor is freed). */
void cf__loop_join_shutdown_jobs(cf_loop *loop);

/* ---- combinators (loop/combinators.c) ---- */

/* Whether a cf_loop_wait_for() future ended because its timeout passed. */
bool cf__loop_wait_for_timed_out(cf_future *f);

/* ---- signals (loop/signal.c) ---- */

/* Called by close, after the descriptors: removes every handler as remove_signal_handler does. */
void cf__loop_signals_close(cf_loop *loop);
/* The number of signals with a handler (loop thread). */
unsigned cf__loop_signals_handled(const cf_loop *loop);
/* Whether a handler is installed (the signalfd is then a registered reader). Loop thread. */
bool cf__loop_signals_active(cf_loop *loop);

/* ---- tasks (loop/task.c) ---- */

/* A task parked on a loop primitive (lock, semaphore, event, condition, queue, task group,
 * as_completed): a node on the waiting task's own stack, linked into the primitive's FIFO of
 * waiters. The primitive wakes it with cf__task_wake(), handing over what was waited for (a
 * lock, a permit, an item in `value`) in the same step, so a woken waiter owns it even if its
 * task is cancelled before it runs: the wait then completes, and the cancellation is delivered
 * at the task's next suspension point. A cancellation that arrives while the node is still
 * linked withdraws it (nothing was handed over) and the wait returns CF_ECANCELLED. */
typedef struct cf__wait cf__wait;

typedef struct cf__wait_list {
    cf__wait *head, *tail;
} cf__wait_list;

struct cf__wait {
    cf__wait *prev, *next;
    cf__wait_list *list; /* while linked (waiting) */
    void *task;
    void *value;   /* handed over by the waker (a queue item), or offered by the waiter */
    int status;    /* set when woken: 0, or what the waker reports */
    bool shielded; /* cancellation cannot withdraw it (it is only recorded for later) */
};

static inline bool cf__wait_list_empty(const cf__wait_list *l)
{
    return l->head == NULL;
}

static inline void cf__wait_list_append(cf__wait_list *l, cf__wait *w)
{
    w->list = l;
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
}

static inline void cf__wait_list_remove(cf__wait *w)
{
    cf__wait_list *l = w->list;
    if (w->prev)
        w->prev->next = w->next;
    else
        l->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->prev = w->next = NULL;
    w->list = NULL;
}

/* Whether this build has tasks (coroutines). */
bool cf__loop_tasks_supported(void);
/* 0 inside a task of `loop`; CF_EINVALSTATE outside any task (or without coroutines);
 * CF_EPERM inside a task of another loop; CF_EINVAL for a NULL loop. */
int cf__task_check(cf_loop *loop);
/* Inside a task (cf__task_check() passed): appends `w` to `list` and suspends until
 * cf__task_wake(w). Returns w->status; CF_ECANCELLED without waiting if a cancellation is
 * pending or the loop is closing, or if the task was cancelled while `w` was linked (it was
 * withdrawn). A shielded wait ignores cancellation (it stays pending, delivered at the next
 * suspension point) and is withdrawn only by close. */
int cf__task_park(cf__wait *w, cf__wait_list *list);
/* Unlinks a parked waiter, records `status` and schedules its task. Loop thread. */
void cf__task_wake(cf__wait *w, int status);
/* Wakes every waiter of a list, oldest first. */
void cf__task_wake_all(cf__wait_list *list, int status);

/* asyncio's Task.cancelling() / uncancel(): the number of cancellation requests a task has
 * received and not yet had withdrawn. uncancel withdraws one and returns the rest; when none
 * is left, a request not delivered yet is dropped too (as asyncio 3.13). 0 for a future that
 * is not a task. Loop thread. */
uint32_t cf__task_cancelling(cf_future *task);
uint32_t cf__task_uncancel(cf_future *task);
/* Whether a cancellation request waits for the task's next suspension point. */
bool cf__task_cancel_pending(cf_future *task);
/* Makes the task's next suspension point return CF_ECANCELLED, without counting a request: a
 * request that was consumed on behalf of another one is given back. */
void cf__task_cancel_rearm(cf_future *task);

/* Called by close: winds down every unfinished task (each pending await returns
 * CF_ECANCELLED) and frees their coroutines. */
void cf__loop_close_tasks(cf_loop *loop);
/* Called by close after every handle was discarded: runs every unfinished task to its end, or,
 * on a thread other than the one its coroutine runs on, frees the coroutine without resuming
 * it (coroutines must not migrate). */
void cf__loop_tasks_closed(cf_loop *loop);
/* Called when the loop goes idle: gives back the memory of stacks that finished tasks left
 * behind beyond what the stack pool keeps warm. */
void cf__loop_tasks_idle(cf_loop *loop);

#endif
