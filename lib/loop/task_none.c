/* Loop tasks in a build without coroutines (-Dcoroutines=false): tasks cannot be created, so
 * there is never a current task and the awaiting functions report CF_EINVALSTATE. The
 * callback-style combinators of loop.h do not depend on this file. */
#include "loop/loop_internal.h"

int cf_loop_create_task(cf_future **out, cf_loop *loop, cf_fn fn, void *arg,
                        const cf_loop_task_options *options)
{
    (void)loop;
    (void)arg;
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!fn || (options && !CF__RESERVED_ZERO(options)))
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
