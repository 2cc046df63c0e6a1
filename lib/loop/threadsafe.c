/* Starting a task on a loop from another thread (asyncio.run_coroutine_threadsafe).
 *
 * The caller gets a plain cf_future (not bound to the loop: any thread may block on it, and
 * its done-callbacks run in the thread that completes it, the loop thread). A request posted
 * through the loop's inbox creates the task on the loop thread; a hook on the task copies the
 * task's outcome into the future when it ends (the value stays owned by the task, which the
 * future keeps alive). Cancelling the future succeeds until then, as asyncio's chained
 * concurrent future does, and posts a cancellation of the task. Everything the two sides share
 * is embedded in the future: no allocation beyond it. */
#include "core/list.h"
#include "loop/loop_internal.h"

typedef struct threadsafe_run {
    cf_future base;
    cf_loop *loop; /* a reference */
    cf_fn fn;
    void *arg;
    cf_loop_task_options options;
    bool has_options;
    cf_loop_handle start;  /* creates the task (posted once) */
    cf_loop_handle cancel; /* cancels it (posted at most once) */
    _Atomic bool cancel_posted;
    cf__hook task_done; /* on the task */
    cf_future *task;    /* loop thread; a reference once created */
} threadsafe_run;

/* References on base: the caller's, the start request's until it ran or was dropped, the
 * task hook's until it fired, the cancel request's while it travels. */

static void task_done_fire(cf__hook *hook, cf_future *task)
{
    threadsafe_run *r = CF__CONTAINER_OF(hook, threadsafe_run, task_done);
    cf__future_copy_outcome(&r->base, task); /* nothing if the future was cancelled */
    cf_future_unref(&r->base);
}

static void start_run(cf_loop *loop, cf_loop_handle *h)
{
    threadsafe_run *r = h->data;
    if (!cf_future_cancelled(&r->base)) {
        int rc =
            cf_loop_create_task(&r->task, loop, r->fn, r->arg, r->has_options ? &r->options : NULL);
        if (rc) {
            cf_future_set_exception(&r->base, rc, "the task could not be created");
        } else {
            r->task_done = (cf__hook){.fire = task_done_fire};
            cf_future_ref(&r->base);
            cf__future_add_hook(r->task, &r->task_done); /* a new task is pending */
        }
    }
    cf_future_unref(&r->base);
}

/* The loop closed before the task could be created. */
static void start_drop(cf_loop_handle *h)
{
    threadsafe_run *r = h->data;
    cf__future_cancel_plain(&r->base);
    cf_future_unref(&r->base);
}

static const cf__handle_kind start_kind = {.run = start_run, .drop = start_drop};

static void cancel_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    threadsafe_run *r = h->data;
    if (r->task)
        cf_future_cancel(r->task);
    cf_future_unref(&r->base);
}

static void cancel_drop(cf_loop_handle *h)
{
    cf_future_unref(&((threadsafe_run *)h->data)->base);
}

static const cf__handle_kind cancel_kind = {.run = cancel_run, .drop = cancel_drop};

static bool threadsafe_cancel(cf_future *f)
{
    threadsafe_run *r = (threadsafe_run *)f;
    if (!cf__future_cancel_plain(f))
        return false;
    /* The task lives on the loop thread: the request goes there (once: a cancelled future
     * reports success again), after the start request if this thread posted both. */
    if (!atomic_exchange(&r->cancel_posted, true)) {
        cf_future_ref(f);
        cf__loop_post(r->loop, &r->cancel);
    }
    return true;
}

static void threadsafe_release(cf_future *f)
{
    threadsafe_run *r = (threadsafe_run *)f;
    cf_loop *loop = r->loop;
    cf_future_unref(r->task);
    cf__free(r);
    cf__loop_unref(loop);
}

static const cf__future_ops threadsafe_ops = {
    .cancel = threadsafe_cancel,
    .release = threadsafe_release,
};

int cf_loop_run_coroutine_threadsafe(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                                     const cf_loop_task_options *options)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !fn || (options && !CF__RESERVED_ZERO(options)))
        return CF_EINVAL;
    if (!cf__loop_tasks_supported())
        return CF_ENOTSUP;
    if (loop->fork_gen != cf__fork_gen())
        return CF_EFORKED;
    if (cf_loop_is_closed(loop))
        return CF_ECLOSED;
    threadsafe_run *r = cf__calloc(1, sizeof(*r));
    if (!r)
        return CF_ENOMEM;
    cf__future_init(&r->base, 2, &threadsafe_ops); /* the caller's and the start request's */
    r->loop = loop;
    cf__loop_ref(loop);
    r->fn = fn;
    r->arg = arg;
    if (options) {
        r->options = *options;
        r->has_options = true;
    }
    cf__loop_handle_embed(&r->start, loop, &start_kind, r);
    cf__loop_handle_embed(&r->cancel, loop, &cancel_kind, r);
    *out = &r->base;
    cf__loop_post(loop, &r->start);
    return 0;
}
