/* Loop tasks in a build without coroutines (-Dcoroutines=false): tasks cannot be created, so
 * there is never a current task and the awaiting functions report CF_EINVALSTATE. The
 * callback-style combinators of loop.h do not depend on this file. */
#include "loop/loop_internal.h"

int cf_loop_create_task(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                        const cf_loop_task_options *options)
{
    (void)arg;
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!loop || !fn || (options && !CF__RESERVED_ZERO(options)))
        return CF_EINVAL;
    return CF_ENOTSUP;
}

int cf_await(void **value, cf_future *future)
{
    (void)future;
    if (value)
        *value = NULL;
    return CF_EINVALSTATE;
}

int cf_sleep(double delay)
{
    (void)delay;
    return CF_EINVALSTATE;
}

int cf_gather(void **values, cf_future *const *fs, size_t n)
{
    (void)values;
    (void)fs;
    (void)n;
    return CF_EINVALSTATE;
}

int cf_wait_for(void **value, cf_future *future, double timeout)
{
    (void)future;
    (void)timeout;
    if (value)
        *value = NULL;
    return CF_EINVALSTATE;
}

cf_future *cf_current_task(void)
{
    return NULL;
}

void cf__loop_close_tasks(cf_loop *loop)
{
    (void)loop;
}

void cf__loop_tasks_closed(cf_loop *loop)
{
    (void)loop;
}

void cf__loop_tasks_idle(cf_loop *loop)
{
    (void)loop;
}

/* Without tasks nothing can park: the primitives' waiting operations report CF_EINVALSTATE and
 * their lists of waiters stay empty. */
bool cf__loop_tasks_supported(void)
{
    return false;
}

int cf__task_check(cf_loop *loop)
{
    return loop ? CF_EINVALSTATE : CF_EINVAL;
}

int cf__task_park(cf__wait *w, cf__wait_list *list)
{
    (void)w;
    (void)list;
    return CF_EINVALSTATE;
}

void cf__task_wake(cf__wait *w, int status)
{
    (void)w;
    (void)status;
}

void cf__task_wake_all(cf__wait_list *list, int status)
{
    (void)list;
    (void)status;
}

uint32_t cf__task_cancelling(cf_future *task)
{
    (void)task;
    return 0;
}

uint32_t cf__task_uncancel(cf_future *task)
{
    (void)task;
    return 0;
}

bool cf__task_cancel_pending(cf_future *task)
{
    (void)task;
    return false;
}

void cf__task_cancel_rearm(cf_future *task)
{
    (void)task;
}
