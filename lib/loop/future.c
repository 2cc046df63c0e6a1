/* Loop futures: cf_futures bound to a loop, whose done-callbacks are scheduled on the loop;
 * loop waiters; the bridge from executor futures (wrap_future, run_in_executor); and
 * run_until_complete, which runs the loop until a future is done (it lives here, above loop.c,
 * because it needs waiters and the bridge; loop.c needs nothing from this file).
 *
 * A loop future shares the core future's state machine and lock, so it is as thread-safe as
 * any future; only the delivery of done-callbacks differs (ops->schedule_callback). The bridge
 * follows asyncio's _chain_future: a hook on the executor future posts the wrapper's embedded
 * "apply" handle to the loop (no allocation), and the state is copied on the loop thread, after
 * re-checking that the wrapper is still pending. */
#include <string.h>

#include "loop/loop_internal.h"

/* ---- plain loop futures ---- */

void cf__loop_future_init(cf__loop_future *lf, cf_loop *loop, uint32_t refs,
                          const cf__future_ops *ops)
{
    cf__future_init(&lf->base, refs, ops);
    lf->loop = loop;
    cf__loop_ref(loop);
}

void cf__loop_future_free(cf__loop_future *lf)
{
    cf_loop *loop = lf->loop;
    cf__free(lf);
    cf__loop_unref(loop);
}

static void plain_release(cf_future *f)
{
    cf__loop_future_free((cf__loop_future *)f);
}

static const cf__future_ops plain_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .release = plain_release,
};

int cf_loop_create_future(cf_future **out, cf_loop *loop)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop)
        return CF_EINVAL;
    if (cf_loop_is_closed(loop))
        return CF_ECLOSED;
    cf__loop_future *lf = cf__malloc(sizeof(*lf));
    if (!lf)
        return CF_ENOMEM;
    cf__loop_future_init(lf, loop, 1, &plain_ops);
    *out = &lf->base;
    return 0;
}

/* ---- done-callbacks ---- */

static void done_cb_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    ((cf_done_cb)h->fn)(h->aux, h->data);
    cf_future_unref(h->aux);
}

static void done_cb_drop(cf_loop_handle *h)
{
    cf_future_unref(h->aux);
}

static const cf__handle_kind done_cb_kind = {.run = done_cb_run, .drop = done_cb_drop};

void cf__loop_schedule_callback(cf_future *f, cf_done_cb cb, void *data)
{
    cf_loop *loop = ((cf__loop_future *)f)->loop;
    cf_loop_handle *h;
    if (cf__loop_on_thread(loop)) {
        if (loop->closed)
            return;
        h = cf__loop_handle_alloc(loop, &done_cb_kind, (void *)cb, data);
    } else {
        if (cf_loop_is_closed(loop))
            return;
        /* Pooled handles belong to the loop thread: allocate one for the trip. */
        h = cf__loop_handle_heap(loop, &done_cb_kind, (void *)cb, data);
    }
    if (!h) {
        /* Out of memory: running it late in the wrong thread beats never running it. */
        cb(f, data);
        return;
    }
    h->aux = cf_future_ref(f);
    cf__loop_post(loop, h);
}

/* ---- waiters ---- */

static void waiter_fire(cf__hook *hook, cf_future *f)
{
    (void)f;
    cf__loop_waiter *w = (cf__loop_waiter *)hook;
    cf__loop_post(w->handle.loop, &w->handle);
}

void cf__loop_waiter_init(cf__loop_waiter *w, cf_loop *loop, const cf__handle_kind *kind,
                          void *data)
{
    w->hook = (cf__hook){.fire = waiter_fire};
    cf__loop_handle_embed(&w->handle, loop, kind, data);
}

void cf__loop_waiter_watch(cf__loop_waiter *w, cf_future *f)
{
    if (cf__future_add_hook(f, &w->hook) != 0)
        cf__loop_post(w->handle.loop, &w->handle);
}

bool cf__loop_waiter_unwatch(cf__loop_waiter *w, cf_future *f)
{
    return cf__future_remove_hook(f, &w->hook);
}

/* ---- wrap_future ---- */

typedef struct wrap_future {
    cf__loop_future lf;
    cf_future *source;
    cf__loop_waiter waiter; /* on source; its handle applies the outcome on the loop */
} wrap_future;

static void chain_done(cf_loop *loop, wrap_future *w)
{
    atomic_fetch_sub_explicit(&loop->outstanding, 1, memory_order_relaxed);
    cf_future_unref(&w->lf.base); /* the chain's reference */
}

static void apply_run(cf_loop *loop, cf_loop_handle *h)
{
    wrap_future *w = h->data;
    /* Re-checked here, on the loop thread: a wrapper cancelled meanwhile stays cancelled and
     * the late outcome is dropped. */
    cf__future_copy_outcome(&w->lf.base, w->source);
    chain_done(loop, w);
}

/* The loop closed before the outcome could be applied: the wrapper can never complete, so
 * it ends cancelled (which also releases whatever waits on it). Any thread. */
static void apply_drop(cf_loop_handle *h)
{
    wrap_future *w = h->data;
    cf__future_cancel_plain(&w->lf.base);
    chain_done(h->loop, w);
}

static const cf__handle_kind apply_kind = {.run = apply_run, .drop = apply_drop};

static bool wrap_cancel(cf_future *f)
{
    wrap_future *w = (wrap_future *)f;
    if (!cf__future_cancel_plain(f))
        return false;
    /* Unhook early when possible, so a later completion costs nothing. */
    if (cf__loop_waiter_unwatch(&w->waiter, w->source))
        chain_done(w->lf.loop, w);
    cf_future_cancel(w->source);
    return true;
}

static void wrap_release(cf_future *f)
{
    wrap_future *w = (wrap_future *)f;
    cf_future_unref(w->source);
    cf__loop_future_free(&w->lf);
}

static const cf__future_ops wrap_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = wrap_cancel,
    .release = wrap_release,
};

int cf_loop_wrap_future(cf_future **out, cf_loop *loop, cf_future *future)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !future)
        return CF_EINVAL;
    if (cf_loop_is_closed(loop))
        return CF_ECLOSED;
    if (cf__future_loop(future) == loop) {
        *out = cf_future_ref(future);
        return 0;
    }
    wrap_future *w = cf__malloc(sizeof(*w));
    if (!w)
        return CF_ENOMEM;
    /* Two references: the caller's and the chain's (dropped once the outcome is applied). */
    cf__loop_future_init(&w->lf, loop, 2, &wrap_ops);
    w->source = cf_future_ref(future);
    cf__loop_waiter_init(&w->waiter, loop, &apply_kind, w);
    atomic_fetch_add_explicit(&loop->outstanding, 1, memory_order_relaxed);
    *out = &w->lf.base;
    cf__loop_waiter_watch(&w->waiter, future);
    return 0;
}

/* ---- run_in_executor ---- */

static int run_in_executor(cf_future **out, cf_loop *loop, cf_executor *ex, void *fn, bool bytes,
                           const void *arg, size_t len)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !fn)
        return CF_EINVAL;
    if (cf_loop_is_closed(loop))
        return CF_ECLOSED;
    int rc = ex ? 0 : cf__loop_default_executor(&ex, loop);
    if (rc)
        return rc;
    cf_future *f;
    rc = bytes ? cf_executor_submit_bytes(&f, ex, (cf_bytes_fn)fn, arg, len)
               : cf_executor_submit(&f, ex, (cf_fn)fn, (void *)arg);
    if (rc)
        return rc;
    rc = cf_loop_wrap_future(out, loop, f);
    if (rc)
        cf_future_cancel(f); /* nobody could ever see its outcome */
    cf_future_unref(f);
    return rc;
}

int cf_loop_run_in_executor(cf_future **out, cf_loop *loop, cf_executor *executor, cf_fn fn,
                            void *arg)
{
    return run_in_executor(out, loop, executor, (void *)fn, false, arg, 0);
}

int cf_loop_run_in_executor_bytes(cf_future **out, cf_loop *loop, cf_executor *executor,
                                  cf_bytes_fn fn, const void *arg, size_t len)
{
    if (!arg && len) {
        if (out)
            *out = NULL;
        return CF_EINVAL;
    }
    return run_in_executor(out, loop, executor, (void *)fn, true, arg, len);
}

/* run_until_complete's "stop when done" callback. Shared by run_until_complete and its handle
 * (which may still be queued, or be dropped on another thread, after run_forever returns: the
 * loop was stopped by someone else first), hence the reference count; run_until_complete
 * disarms it before letting go. */
typedef struct stopper {
    cf__loop_waiter waiter;
    _Atomic uint32_t refs;
    bool armed;
} stopper;

static void stopper_release(stopper *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        cf__free(s);
}

static void stopper_run(cf_loop *loop, cf_loop_handle *h)
{
    stopper *s = h->data;
    if (s->armed)
        loop->stopping = true;
    stopper_release(s);
}

static void stopper_drop(cf_loop_handle *h)
{
    stopper_release(h->data);
}

static const cf__handle_kind stopper_kind = {.run = stopper_run, .drop = stopper_drop};

int cf_loop_run_until_complete(void **result, cf_loop *loop, cf_future *future)
{
    if (result)
        *result = NULL;
    if (!loop || !future)
        return CF_EINVAL;
    cf_future *target;
    int rc = cf_loop_wrap_future(&target, loop, future);
    if (rc)
        return rc;
    stopper *s = cf__malloc(sizeof(*s));
    if (!s) {
        cf_future_unref(target);
        return CF_ENOMEM;
    }
    atomic_init(&s->refs, 2); /* ours and the handle's */
    s->armed = true;
    cf__loop_waiter_init(&s->waiter, loop, &stopper_kind, s);
    cf__loop_waiter_watch(&s->waiter, target);
    rc = cf_loop_run_forever(loop);
    if (cf__loop_waiter_unwatch(&s->waiter, target))
        stopper_release(s); /* the handle was never posted */
    s->armed = false;
    stopper_release(s);
    if (rc == 0)
        rc = cf_future_done(target) ? cf_future_result(result, target, 0) : CF_EINVALSTATE;
    cf_future_unref(target);
    return rc;
}
