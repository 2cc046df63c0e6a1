/* Combinators that return loop futures: sleep, gather, wait_for. They need no coroutine: the
 * coroutine forms in loop/task.c only await these futures.
 *
 * Each is a loop future with the machinery it needs embedded: a pooled timer handle and/or
 * loop waiters on its inputs. Every pending timer and every watching waiter holds one
 * reference on the combinator, released when it runs or is dropped by close, so a combinator
 * the user has released stays alive exactly as long as the loop may still touch it. A handle
 * that would have finished the combinator but is dropped by a closed loop cancels it instead. */
#include <math.h>

#include "loop/loop_internal.h"

/* Starts a timer whose handle references `owner` (one reference on it) and is referenced by
 * the caller (stored in *timer). Returns 0 or CF_ENOMEM. */
static int start_timer(cf_loop_handle **timer, cf_loop *loop, const cf__handle_kind *kind,
                       cf_future *owner, int64_t when)
{
    *timer = cf__loop_timer_new(loop, kind, owner, when);
    if (!*timer)
        return CF_ENOMEM;
    cf_future_ref(owner);
    return 0;
}

/* Cancels a timer started with start_timer and drops both references it involved. Loop
 * thread. */
static void stop_timer(cf_loop_handle **timer, cf_future *owner)
{
    if (cf__loop_timer_cancel(timer))
        cf_future_unref(owner);
}

/* Common loop-thread checks of the constructors. */
static int check_args(cf_future **out, cf_loop *loop)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    return cf__loop_check(loop);
}

/* ---- sleep ---- */

typedef struct sleep_future {
    cf__loop_future lf;
    cf_loop_handle *timer;
    void *result;
} sleep_future;

static void sleep_timer_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    sleep_future *s = h->data;
    cf__loop_timer_fired(&s->timer, h);
    cf_future_set_result(&s->lf.base, s->result, NULL);
    cf_future_unref(&s->lf.base);
}

static void sleep_timer_drop(cf_loop_handle *h)
{
    sleep_future *s = h->data;
    cf__loop_timer_fired(&s->timer, h);
    cf__future_cancel_plain(&s->lf.base); /* the closed loop can never finish it */
    cf_future_unref(&s->lf.base);
}

static const cf__handle_kind sleep_timer_kind = {.run = sleep_timer_run, .drop = sleep_timer_drop};

static bool sleep_cancel(cf_future *f)
{
    sleep_future *s = (sleep_future *)f;
    if (!cf__future_cancel_plain(f))
        return false;
    /* The timer belongs to the loop thread; from elsewhere it fires later and finds the future
     * done. */
    if (s->timer && cf__loop_on_thread(s->lf.loop) && !s->lf.loop->closed)
        stop_timer(&s->timer, f);
    return true;
}

static void sleep_release(cf_future *f)
{
    cf__loop_future_free(&((sleep_future *)f)->lf);
}

static const cf__future_ops sleep_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = sleep_cancel,
    .release = sleep_release,
};

int cf_loop_sleep(cf_future **out, cf_loop *loop, double delay, void *result)
{
    int rc = check_args(out, loop);
    if (rc)
        return rc;
    if (isnan(delay))
        return CF_EINVAL;
    sleep_future *s = cf__malloc(sizeof(*s));
    if (!s)
        return CF_ENOMEM;
    cf__loop_future_init(&s->lf, loop, 1, &sleep_ops);
    s->result = result;
    s->timer = NULL;
    rc = start_timer(&s->timer, loop, &sleep_timer_kind, &s->lf.base, cf__deadline_after(delay));
    if (rc) {
        cf_future_unref(&s->lf.base);
        return rc;
    }
    *out = &s->lf.base;
    return 0;
}

/* ---- gather ---- */

typedef struct gather_future gather_future;

typedef struct gather_slot {
    cf__loop_waiter waiter; /* on the child */
    gather_future *g;
    size_t index;
} gather_slot;

struct gather_future {
    cf__loop_future lf;
    size_t n;
    size_t nfinished;
    _Atomic bool cancel_requested;
    cf_future **children; /* loop futures of lf.loop, one reference each */
    void **results;
    gather_slot slots[];
};

static void gather_finish(gather_future *g)
{
    cf_future *outer = &g->lf.base;
    if (atomic_load(&g->cancel_requested)) {
        cf__future_cancel_plain(outer);
        return;
    }
    for (size_t i = 0; i < g->n; i++)
        cf_future_result(&g->results[i], g->children[i], 0); /* finished: their values */
    /* The array lives inside the gather future: no destructor. */
    cf_future_set_result(outer, g->n ? g->results : NULL, NULL);
}

static void gather_child_done(gather_future *g, cf_future *child)
{
    g->nfinished++;
    cf_future *outer = &g->lf.base;
    if (cf_future_done(outer))
        return;
    uint32_t s = cf__future_load(child);
    if ((s & CF__S_MASK) == CF__S_CANCELLED) {
        /* asyncio: a cancelled child fails the gather, which is cancelled itself only when
         * its own cancellation was requested. */
        if (atomic_load(&g->cancel_requested))
            cf__future_cancel_plain(outer);
        else
            cf_future_set_exception(outer, CF_ECANCELLED, "a gathered future was cancelled");
        return;
    }
    if (s & CF__F_FAILED) {
        cf__future_copy_outcome(outer, child);
        return;
    }
    if (g->nfinished == g->n)
        gather_finish(g);
}

static void gather_slot_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    gather_slot *slot = h->data;
    gather_future *g = slot->g;
    gather_child_done(g, g->children[slot->index]);
    cf_future_unref(&g->lf.base);
}

static void gather_slot_drop(cf_loop_handle *h)
{
    gather_slot *slot = h->data;
    cf__future_cancel_plain(&slot->g->lf.base); /* the closed loop can never finish it */
    cf_future_unref(&slot->g->lf.base);
}

static const cf__handle_kind gather_slot_kind = {.run = gather_slot_run, .drop = gather_slot_drop};

static bool gather_cancel(cf_future *f)
{
    gather_future *g = (gather_future *)f;
    if (cf_future_done(f))
        return false;
    /* Set first: a child's completion may be processed (on the loop thread) before this
     * function returns. */
    atomic_store(&g->cancel_requested, true);
    bool any = false;
    for (size_t i = 0; i < g->n; i++)
        any |= cf_future_cancel(g->children[i]);
    if (!any)
        atomic_store(&g->cancel_requested, false);
    return any;
}

static void gather_release(cf_future *f)
{
    gather_future *g = (gather_future *)f;
    for (size_t i = 0; i < g->n; i++)
        cf_future_unref(g->children[i]);
    cf__loop_future_free(&g->lf);
}

static const cf__future_ops gather_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = gather_cancel,
    .release = gather_release,
};

int cf_loop_gather(cf_future **out, cf_loop *loop, cf_future *const *fs, size_t n)
{
    int rc = check_args(out, loop);
    if (rc)
        return rc;
    if (!fs && n)
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    size_t per = sizeof(gather_slot) + sizeof(cf_future *) + sizeof(void *);
    if (n > (SIZE_MAX - sizeof(gather_future)) / per)
        return CF_ENOMEM;
    gather_future *g = cf__calloc(1, sizeof(*g) + n * per);
    if (!g)
        return CF_ENOMEM;
    g->children = (cf_future **)(g->slots + n);
    g->results = (void **)(g->children + n);
    g->n = n;
    for (size_t i = 0; i < n; i++) {
        rc = cf_loop_wrap_future(&g->children[i], loop, fs[i]);
        if (rc) {
            while (i-- > 0)
                cf_future_unref(g->children[i]);
            cf__free(g);
            return rc;
        }
    }
    /* One reference for the caller and one per watching slot. */
    cf__loop_future_init(&g->lf, loop, (uint32_t)(1 + n), &gather_ops);
    for (size_t i = 0; i < n; i++) {
        g->slots[i].g = g;
        g->slots[i].index = i;
        cf__loop_waiter_init(&g->slots[i].waiter, loop, &gather_slot_kind, &g->slots[i]);
        cf__loop_waiter_watch(&g->slots[i].waiter, g->children[i]);
    }
    if (n == 0)
        cf_future_set_result(&g->lf.base, NULL, NULL);
    *out = &g->lf.base;
    return 0;
}

/* ---- wait_for ---- */

enum { WF_CANCEL_REQUESTED = 1, WF_TIMED_OUT = 2 };

typedef struct wait_for_future {
    cf__loop_future lf;
    cf_future *inner; /* a loop future of lf.loop */
    cf__loop_waiter waiter;
    cf_loop_handle *timer;
    _Atomic uint32_t flags;
} wait_for_future;

static void wait_for_inner_done(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    wait_for_future *w = h->data;
    cf_future *outer = &w->lf.base;
    if (w->timer)
        stop_timer(&w->timer, outer);
    uint32_t flags = atomic_load(&w->flags);
    if (flags & WF_CANCEL_REQUESTED)
        cf__future_cancel_plain(outer);
    else if ((flags & WF_TIMED_OUT) && cf_future_cancelled(w->inner))
        cf_future_set_exception(outer, CF_ETIMEDOUT, "wait_for timed out");
    else
        cf__future_copy_outcome(outer, w->inner);
    cf_future_unref(outer);
}

static void wait_for_waiter_drop(cf_loop_handle *h)
{
    wait_for_future *w = h->data;
    cf__future_cancel_plain(&w->lf.base); /* the closed loop can never finish it */
    cf_future_unref(&w->lf.base);
}

static const cf__handle_kind wait_for_waiter_kind = {.run = wait_for_inner_done,
                                                     .drop = wait_for_waiter_drop};

/* Cancels the inner future and keeps waiting for it: asyncio 3.11's _cancel_and_wait. */
static void wait_for_time_out(wait_for_future *w)
{
    atomic_fetch_or(&w->flags, WF_TIMED_OUT);
    cf_future_cancel(w->inner);
}

static void wait_for_timer_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    wait_for_future *w = h->data;
    cf__loop_timer_fired(&w->timer, h);
    /* If the inner future is done already, its outcome is on its way: keep it. */
    if (!cf_future_done(w->inner))
        wait_for_time_out(w);
    cf_future_unref(&w->lf.base);
}

static void wait_for_timer_drop(cf_loop_handle *h)
{
    wait_for_future *w = h->data;
    cf__loop_timer_fired(&w->timer, h);
    cf_future_unref(&w->lf.base);
}

static const cf__handle_kind wait_for_timer_kind = {.run = wait_for_timer_run,
                                                    .drop = wait_for_timer_drop};

static bool wait_for_cancel(cf_future *f)
{
    wait_for_future *w = (wait_for_future *)f;
    if (cf_future_done(f))
        return false;
    /* Like cancelling asyncio's wait_for task: an inner future that is already done still
     * delivers its outcome; otherwise it is cancelled and awaited. */
    if (!cf_future_done(w->inner)) {
        atomic_fetch_or(&w->flags, WF_CANCEL_REQUESTED);
        cf_future_cancel(w->inner);
    }
    return true;
}

static void wait_for_release(cf_future *f)
{
    wait_for_future *w = (wait_for_future *)f;
    cf_future_unref(w->inner);
    cf__loop_future_free(&w->lf);
}

static const cf__future_ops wait_for_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = wait_for_cancel,
    .release = wait_for_release,
};

bool cf__loop_wait_for_timed_out(cf_future *f)
{
    return f->ops == &wait_for_ops &&
           (atomic_load(&((wait_for_future *)f)->flags) & WF_TIMED_OUT) &&
           cf_future_cancelled(((wait_for_future *)f)->inner);
}

int cf_loop_wait_for(cf_future **out, cf_loop *loop, cf_future *future, double timeout)
{
    int rc = check_args(out, loop);
    if (rc)
        return rc;
    if (!future || isnan(timeout))
        return CF_EINVAL;
    wait_for_future *w = cf__calloc(1, sizeof(*w));
    if (!w)
        return CF_ENOMEM;
    rc = cf_loop_wrap_future(&w->inner, loop, future);
    if (rc) {
        cf__free(w);
        return rc;
    }
    /* The caller's reference and the waiter's. */
    cf__loop_future_init(&w->lf, loop, 2, &wait_for_ops);
    cf_future *outer = &w->lf.base;
    if (timeout > 0) {
        rc = start_timer(&w->timer, loop, &wait_for_timer_kind, outer, cf__deadline_after(timeout));
        if (rc) {
            cf__future_discard(outer);
            return rc;
        }
    } else if (timeout == 0 && !cf_future_done(future)) {
        wait_for_time_out(w);
    }
    cf__loop_waiter_init(&w->waiter, loop, &wait_for_waiter_kind, w);
    cf__loop_waiter_watch(&w->waiter, w->inner);
    *out = outer;
    return 0;
}
