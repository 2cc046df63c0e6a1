/* Loop tasks: a cf_fn running on a stackful coroutine, stepped by the loop (asyncio's Task).
 *
 * A task is parked on at most one thing at a time: a future (a loop waiter hooked on it), a
 * timer (cf_sleep), a loop primitive's list of waiters (cf__task_park), or the ready queue (a
 * fresh task, cf_sleep(0), a wake-up on its way). One
 * embedded handle, the waiter's, carries every wake-up, so waking a task never allocates; the
 * only allocation while a task runs is the pooled timer handle of a positive sleep.
 *
 * Each task switches only between the loop's own stack and its coroutine (never task to task),
 * and the thread's task context (cf_task_fail) is swapped with it. */
#include <math.h>
#include <sched.h>

#include <string.h>

#include "core/objpool.h"
#include "loop/coro.h"
#include "loop/loop_internal.h"

typedef enum park {
    PARK_NONE = 0, /* running, or finished */
    PARK_READY,    /* its step handle is queued */
    PARK_FUTURE,   /* its waiter is hooked on `waiting_on` */
    PARK_TIMER,    /* sleeping on `timer` */
    PARK_WAIT,     /* linked into a primitive's waiters by `wait` */
} park;

typedef struct loop_task loop_task;

struct loop_task {
    cf__loop_future lf;
    cf__coro *coro; /* from the first step until it finishes */
    cf_fn fn;
    void *arg;
    cf_dtor result_dtor;    /* cf_loop_task_options.result_dtor */
    cf__loop_waiter waiter; /* its handle is the task's step */
    cf_future *waiting_on;
    cf_loop_handle *timer;
    cf__wait *wait;
    void *context;  /* the task's cf_task_fail context while it is suspended */
    cf__dlink link; /* the loop's unfinished tasks */
    cf__outcome outcome;
    uint32_t cancels;    /* cancellation requests received */
    uint32_t stack_size; /* as asked (at most 1 GiB) */
    uint8_t park;
    bool started;
    bool finished;
    bool live;        /* its coroutine has run: counted in loop->tasks_live */
    bool must_cancel; /* deliver CF_ECANCELLED at the next suspension point */
};

static _Thread_local loop_task *current CF__TLS_FAST;

/* Task records come from a pool (core/objpool.h): a server creates and releases one per
 * request, on the loop thread and, for the last reference, on any thread. */
static cf__objpool task_pool =
    CF__OBJPOOL_INIT((sizeof(loop_task) + 15) & ~(size_t)15, CF__OBJPOOL_LOOP_TASKS);

/* The loop's unfinished tasks (loop->tasks, linked through loop_task.link). */
static loop_task *task_of(cf__dlink *l)
{
    return l ? CF__CONTAINER_OF(l, loop_task, link) : NULL;
}

/* ---- stepping ---- */

static void task_main(void *arg)
{
    loop_task *t = arg;
    cf__task_invoke_dtor(&t->outcome, (void *)t->fn, t->arg, t->result_dtor);
}

static void task_finish(loop_task *t)
{
    cf_loop *loop = t->lf.loop;
    cf__coro_free(t->coro);
    t->coro = NULL;
    t->finished = true;
    cf__dlist_remove(&loop->tasks, &t->link);
    if (t->live)
        loop->tasks_live--;
    cf_future *f = &t->lf.base;
    /* asyncio: a task ends cancelled when its coroutine exits with CancelledError, or when a
     * cancellation was still pending as it returned. */
    if (t->outcome.rc == CF_ECANCELLED || t->must_cancel) {
        cf__outcome_discard(&t->outcome, false);
        cf__future_cancel_plain(f);
    } else {
        cf__task_complete(f, &t->outcome, false);
    }
    cf_future_unref(f); /* the loop's reference */
}

static void task_step(loop_task *t)
{
    cf_loop *loop = t->lf.loop;
    CF__ASSERT_LOOP_THREAD(loop);
    CF__ASSERT(!t->finished); /* a finished task is never stepped again */
    t->park = PARK_NONE;
    if (!t->started) {
        t->started = true;
        if (t->must_cancel) { /* cancelled before it ever ran */
            t->outcome.rc = CF_ECANCELLED;
            task_finish(t);
            return;
        }
        /* The stack is taken only now, so that a task that runs to its end without suspending
         * gives it back before the next task starts: spawning many short tasks reuses one
         * cache-warm stack instead of touching a fresh one each. */
        if (cf__coro_new(&t->coro, task_main, t, t->stack_size) != 0) {
            t->outcome = (cf__outcome){.rc = CF_ENOMEM,
                                       .message = cf__strdup("no memory for the task's stack")};
            task_finish(t);
            return;
        }
        t->live = true;
        if (loop->tasks_live++ == 0)
            loop->tasks_thread = cf__thread_self();
    }
    loop_task *saved = current;
    current = t;
    loop->current_task = &t->lf.base;
    void *saved_context = cf__task_context_swap(t->context);
    bool finished = cf__coro_resume(t->coro);
    t->context = cf__task_context_swap(saved_context);
    loop->current_task = saved ? &saved->lf.base : NULL;
    current = saved;
    if (finished)
        task_finish(t);
}

static void step_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    task_step(h->data);
}

/* Dropped only by close, which winds the task down itself. */
static const cf__handle_kind step_kind = {.run = step_run};

static void timer_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    loop_task *t = h->data;
    cf__loop_timer_fired(&t->timer, h);
    task_step(t);
}

static const cf__handle_kind timer_kind = {.run = timer_run};

static void make_ready(loop_task *t)
{
    t->park = PARK_READY;
    cf__loop_ready_push(t->lf.loop, &t->waiter.handle);
}

/* Suspends the running task until its step runs; returns CF_ECANCELLED if a cancellation was
 * delivered meanwhile, else 0. */
static int suspend(loop_task *t)
{
    cf__coro_yield();
    if (t->must_cancel) {
        t->must_cancel = false;
        return CF_ECANCELLED;
    }
    return 0;
}

/* ---- cancellation ---- */

static bool task_cancel_here(loop_task *t)
{
    CF__ASSERT_LOOP_THREAD(t->lf.loop);
    if (cf_future_done(&t->lf.base))
        return false;
    t->cancels++;
    switch (t->park) {
    case PARK_FUTURE:
        /* Cancelling the awaited future wakes the task with CF_ECANCELLED from it. */
        if (cf_future_cancel(t->waiting_on))
            return true;
        break;
    case PARK_TIMER:
        cf__loop_timer_cancel(&t->timer);
        make_ready(t);
        break;
    case PARK_WAIT:
        /* Still linked: nothing was handed over yet, so the wait can be withdrawn and report
         * the cancellation itself. Once woken, it completes and the request waits for the
         * next suspension point. */
        if (t->wait->list && !t->wait->shielded) {
            cf__wait_list_remove(t->wait);
            t->wait->status = CF_ECANCELLED;
            make_ready(t);
            return true;
        }
        break;
    default:
        break;
    }
    t->must_cancel = true;
    return true;
}

static void cancel_request_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    task_cancel_here(h->data);
    cf_future_unref(h->data);
}

static void cancel_request_drop(cf_loop_handle *h)
{
    cf_future_unref(h->data);
}

static const cf__handle_kind cancel_request_kind = {.run = cancel_request_run,
                                                    .drop = cancel_request_drop};

static bool task_cancel(cf_future *f)
{
    loop_task *t = (loop_task *)f;
    cf_loop *loop = t->lf.loop;
    if (cf__loop_on_thread(loop))
        return !loop->closed && task_cancel_here(t);
    /* The task's state belongs to the loop thread: send the request there. */
    if (cf_future_done(f) || cf_loop_is_closed(loop))
        return false;
    cf_loop_handle *h = cf__loop_handle_heap(loop, &cancel_request_kind, NULL, f);
    if (!h)
        return false;
    cf_future_ref(f);
    cf__loop_post(loop, h);
    return true;
}

static void task_release(cf_future *f)
{
    loop_task *t = (loop_task *)f;
    cf_loop *loop = t->lf.loop;
    cf__coro_free(t->coro);
    cf__objpool_free(&task_pool, t);
    cf__loop_unref(loop);
}

static const cf__future_ops task_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = task_cancel,
    .release = task_release,
};

/* ---- public ---- */

int cf_loop_create_task(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                        const cf_loop_task_options *options)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!fn || (options && !CF__RESERVED_ZERO(options)))
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    size_t stack_size = options ? options->stack_size : 0;
    if (!cf__coro_stack_size_valid(stack_size))
        return CF_EINVAL;
    loop_task *t = cf__objpool_alloc(&task_pool);
    if (!t)
        return CF_ENOMEM;
    memset(t, 0, sizeof(*t));
    t->stack_size = (uint32_t)stack_size;
    /* The caller's reference and the loop's (until the task finishes). */
    cf__loop_future_init(&t->lf, loop, 2, &task_ops);
    t->fn = fn;
    t->arg = arg;
    t->result_dtor = options ? options->result_dtor : NULL;
    cf__loop_waiter_init(&t->waiter, loop, &step_kind, t);
    cf__dlist_push(&loop->tasks, &t->link);
    make_ready(t);
    *out = &t->lf.base;
    return 0;
}

cf_future *cf_current_task(void)
{
    return current ? &current->lf.base : NULL;
}

/* ---- parking on loop primitives ---- */

bool cf__loop_tasks_supported(void)
{
    return true;
}

int cf__task_check(cf_loop *loop)
{
    if (!loop)
        return CF_EINVAL;
    if (!current)
        return CF_EINVALSTATE;
    return current->lf.loop == loop ? 0 : CF_EPERM;
}

int cf__task_park(cf__wait *w, cf__wait_list *list)
{
    loop_task *t = current;
    CF__ASSERT(t != NULL && w->list == NULL); /* cf__task_check() passed; not linked yet */
    if (t->lf.loop->closing)
        return CF_ECANCELLED;
    if (t->must_cancel && !w->shielded) {
        t->must_cancel = false;
        return CF_ECANCELLED;
    }
    w->task = t;
    w->status = 0;
    cf__wait_list_append(list, w);
    t->wait = w;
    t->park = PARK_WAIT;
    /* Not suspend(): a wait that was woken has completed, and a cancellation that came after
     * it stays pending for the next suspension point. */
    cf__coro_yield();
    t->wait = NULL;
    return w->status;
}

void cf__task_wake(cf__wait *w, int status)
{
    CF__ASSERT(w->list != NULL); /* parked, and woken once */
    CF__ASSERT_LOOP_THREAD(((loop_task *)w->task)->lf.loop);
    cf__wait_list_remove(w);
    w->status = status;
    make_ready(w->task);
}

void cf__task_wake_all(cf__wait_list *list, int status)
{
    while (list->head)
        cf__task_wake(list->head, status);
}

static loop_task *as_task(cf_future *f)
{
    return f && f->ops == &task_ops ? (loop_task *)f : NULL;
}

uint32_t cf__task_cancelling(cf_future *task)
{
    loop_task *t = as_task(task);
    return t ? t->cancels : 0;
}

uint32_t cf__task_uncancel(cf_future *task)
{
    loop_task *t = as_task(task);
    if (!t)
        return 0;
    if (t->cancels > 0)
        t->cancels--;
    if (t->cancels == 0)
        t->must_cancel = false;
    return t->cancels;
}

bool cf__task_cancel_pending(cf_future *task)
{
    loop_task *t = as_task(task);
    return t && t->must_cancel;
}

void cf__task_cancel_rearm(cf_future *task)
{
    loop_task *t = as_task(task);
    if (t && !cf_future_done(task))
        t->must_cancel = true;
}

/* Awaits a loop future of the task's own loop. */
static int await_here(void **value, loop_task *t, cf_future *f)
{
    if (cf_future_done(f))
        return cf_future_result(value, f, 0);
    if (t->lf.loop->closing)
        return CF_ECANCELLED;
    /* asyncio: a task that yields while a cancellation is pending cancels what it awaits. */
    if (t->must_cancel && cf_future_cancel(f))
        t->must_cancel = false;
    t->park = PARK_FUTURE;
    t->waiting_on = f;
    cf__loop_waiter_watch(&t->waiter, f);
    int rc = suspend(t);
    t->waiting_on = NULL;
    return rc ? rc : cf_future_result(value, f, 0);
}

int cf_await(void **value, cf_future *future)
{
    if (value)
        *value = NULL;
    loop_task *t = current;
    if (!t)
        return CF_EINVALSTATE;
    if (!future || future == &t->lf.base)
        return CF_EINVAL;
    cf_loop *loop = t->lf.loop;
    if (cf__future_loop(future) == loop || cf_future_done(future))
        return await_here(value, t, future);
    cf_future *wrapped;
    int rc = cf_loop_wrap_future(&wrapped, loop, future);
    if (rc)
        return rc;
    rc = await_here(value, t, wrapped); /* the value is borrowed from `future` */
    cf_future_unref(wrapped);
    return rc;
}

int cf_sleep(double delay)
{
    loop_task *t = current;
    if (!t)
        return CF_EINVALSTATE;
    if (isnan(delay))
        return CF_EINVAL;
    cf_loop *loop = t->lf.loop;
    if (loop->closing)
        return CF_ECANCELLED;
    if (t->must_cancel) {
        t->must_cancel = false;
        return CF_ECANCELLED;
    }
    if (delay <= 0) {
        make_ready(t);
        return suspend(t);
    }
    t->timer = cf__loop_timer_new(loop, &timer_kind, t, cf__deadline_after(delay));
    if (!t->timer)
        return CF_ENOMEM;
    t->park = PARK_TIMER;
    return suspend(t);
}

int cf_gather(void **values, cf_future *const *fs, size_t n)
{
    loop_task *t = current;
    if (!t)
        return CF_EINVALSTATE;
    cf_future *g;
    int rc = cf_loop_gather(&g, t->lf.loop, fs, n);
    if (rc)
        return rc;
    void **results;
    rc = cf_await((void **)&results, g);
    if (rc == 0 && values)
        for (size_t i = 0; i < n; i++)
            values[i] = results[i];
    cf_future_unref(g);
    return rc;
}

int cf_wait_for(void **value, cf_future *future, double timeout)
{
    if (value)
        *value = NULL;
    loop_task *t = current;
    if (!t)
        return CF_EINVALSTATE;
    cf_future *w;
    int rc = cf_loop_wait_for(&w, t->lf.loop, future, timeout);
    if (rc)
        return rc;
    rc = cf_await(value, w);
    if (rc == CF_ETASK && cf__loop_wait_for_timed_out(w))
        rc = CF_ETIMEDOUT;
    cf_future_unref(w);
    return rc;
}

/* ---- close ---- */

void cf__loop_close_tasks(cf_loop *loop)
{
    for (loop_task *t = task_of(loop->tasks); t; t = task_of(t->link.next)) {
        if (t->park == PARK_FUTURE && !cf__loop_waiter_unwatch(&t->waiter, t->waiting_on)) {
            /* Its wake-up is being posted by the thread that completed the future: let it
             * land before the inbox closes, so that thread is done with the task. */
            while (!(t->waiter.handle.flags & CF__H_QUEUED)) {
                cf__loop_collect_inbox(loop);
                if (!(t->waiter.handle.flags & CF__H_QUEUED))
                    sched_yield();
            }
        } else if (t->park == PARK_TIMER) {
            cf__loop_timer_cancel(&t->timer);
        } else if (t->park == PARK_WAIT && t->wait->list) {
            /* Shielded or not: the loop will never wake it. */
            cf__wait_list_remove(t->wait);
            t->wait->status = CF_ECANCELLED;
        }
        t->park = PARK_NONE;
    }
}

void cf__loop_tasks_closed(cf_loop *loop)
{
    bool foreign = loop->tasks_live && loop->tasks_thread != cf__thread_self();
    /* Every await and sleep now returns CF_ECANCELLED at once, so each task runs to its end in
     * one resume. */
    while (loop->tasks) {
        loop_task *t = task_of(loop->tasks);
        cf_future_ref(&t->lf.base);
        t->must_cancel = true;
        if (foreign && t->live) {
            /* Resuming it here would migrate it: drop it where it stands (what it owns on its
             * stack is lost). */
            t->outcome.rc = CF_ECANCELLED;
            task_finish(t);
        }
        while (!t->finished)
            task_step(t);
        cf_future_unref(&t->lf.base);
    }
}

void cf__loop_tasks_idle(cf_loop *loop)
{
    (void)loop;
    cf__coro_trim();
}
