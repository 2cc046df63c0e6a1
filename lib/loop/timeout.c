/* Timeout scopes (asyncio.timeout and timeout_at, Python 3.11, with the fixes of 3.12 and
 * 3.13).
 *
 * When its deadline passes, a scope cancels its task like any other cancellation request, so
 * every suspension point (await, sleep, a lock, a queue, a nested group) honours it without
 * knowing about timeouts. Exit then decides whether the CF_ECANCELLED the body returned was the
 * scope's: it withdraws its own request (uncancel) and converts only if no other request is
 * left beyond those the task had when the scope was entered (gh-102780). A cancellation that
 * was pending, undelivered, when the scope was entered and that the scope's own delivery
 * consumed is given back (rearmed) so that it is not swallowed (gh-134471). */
#include <math.h>

#include "loop/loop_internal.h"

enum { ENTERED, EXPIRING, EXPIRED, EXITED };

struct cf_loop_timeout {
    cf_loop *loop;
    cf_future *task;       /* a reference */
    cf_loop_handle *timer; /* armed deadline, or NULL */
    int64_t when;          /* ns, CF__FOREVER_NS for none */
    uint32_t cancelling_at_enter;
    bool pending_at_enter; /* a cancellation waited for delivery when the scope was entered */
    uint8_t state;
};

static void on_deadline(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    cf_loop_timeout *t = h->data;
    cf__loop_timer_fired(&t->timer, h);
    /* (A task that is already done has nobody to interrupt, nor a scope to exit.) */
    t->state = cf_future_cancel(t->task) ? EXPIRING : EXPIRED;
}

static void deadline_drop(cf_loop_handle *h)
{
    cf_loop_timeout *t = h->data;
    cf__loop_timer_fired(&t->timer, h);
}

static const cf__handle_kind deadline_kind = {.run = on_deadline, .drop = deadline_drop};

/* Arms the deadline (a past one fires in the next iteration). Returns 0 or CF_ENOMEM. */
static int arm(cf_loop_timeout *t, int64_t when)
{
    cf__loop_timer_cancel(&t->timer);
    t->when = when;
    if (when == CF__FOREVER_NS)
        return 0;
    t->timer = cf__loop_timer_new(t->loop, &deadline_kind, t, when);
    return t->timer ? 0 : CF_ENOMEM;
}

/* Seconds on the loop clock to ns; negative or infinite: no deadline. */
static int64_t when_ns(double when)
{
    return when < 0 ? CF__FOREVER_NS : cf__seconds_to_ns(when);
}

int cf_loop_timeout_enter_at(cf_loop_timeout **out, double when)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (isnan(when))
        return CF_EINVAL;
    cf_future *task = cf_current_task();
    if (!task)
        return CF_EINVALSTATE;
    cf_loop_timeout *t = cf__calloc(1, sizeof(*t));
    if (!t)
        return CF_ENOMEM;
    t->loop = cf__future_loop(task);
    cf__loop_ref(t->loop);
    t->task = cf_future_ref(task);
    t->cancelling_at_enter = cf__task_cancelling(task);
    t->pending_at_enter = cf__task_cancel_pending(task);
    t->state = ENTERED;
    int rc = arm(t, when_ns(when));
    if (rc) {
        cf_loop_timeout_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int cf_loop_timeout_enter(cf_loop_timeout **out, double delay)
{
    if (isnan(delay)) {
        if (out)
            *out = NULL;
        return CF_EINVAL;
    }
    return cf_loop_timeout_enter_at(out, delay < 0 ? -1 : cf_loop_time(NULL) + delay);
}

int cf_loop_timeout_reschedule(cf_loop_timeout *scope, double when)
{
    if (!scope || isnan(when))
        return CF_EINVAL;
    int rc = cf__loop_thread_check(scope->loop);
    if (rc)
        return rc;
    if (scope->state != ENTERED)
        return CF_EINVALSTATE;
    return arm(scope, when_ns(when));
}

double cf_loop_timeout_when(const cf_loop_timeout *scope)
{
    if (!scope || scope->when == CF__FOREVER_NS)
        return CF_FOREVER;
    return (double)scope->when / 1e9;
}

bool cf_loop_timeout_expired(const cf_loop_timeout *scope)
{
    return scope && (scope->state == EXPIRING || scope->state == EXPIRED);
}

/* Closes the scope: the deadline is disarmed and an expired scope withdraws its request. Returns
 * the number of requests left. */
static uint32_t close_scope(cf_loop_timeout *t)
{
    cf__loop_timer_cancel(&t->timer);
    if (t->state != EXPIRING) {
        t->state = EXITED;
        return 0;
    }
    t->state = EXPIRED;
    uint32_t left = cf__task_uncancel(t->task);
    /* A request that was pending before the scope and that the scope's delivery consumed. */
    if (t->pending_at_enter && left > 0)
        cf__task_cancel_rearm(t->task);
    return left;
}

int cf_loop_timeout_exit(cf_loop_timeout *scope, int rc)
{
    if (!scope)
        return CF_EINVAL;
    cf_future *self = cf_current_task();
    if (!self)
        return CF_EINVALSTATE;
    if (self != scope->task)
        return CF_EPERM;
    if (scope->state != ENTERED && scope->state != EXPIRING)
        return CF_EINVALSTATE;
    bool expiring = scope->state == EXPIRING;
    uint32_t left = close_scope(scope);
    if (expiring && rc == CF_ECANCELLED && left <= scope->cancelling_at_enter)
        return CF_ETIMEDOUT;
    return rc;
}

void cf_loop_timeout_free(cf_loop_timeout *scope)
{
    if (!scope)
        return;
    if ((scope->state == ENTERED || scope->state == EXPIRING) && !cf_loop_is_closed(scope->loop))
        close_scope(scope);
    cf_future_unref(scope->task);
    cf_loop *loop = scope->loop;
    cf__free(scope);
    cf__loop_unref(loop);
}
