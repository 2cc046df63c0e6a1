/* cf_loop_get_stats: what a loop holds right now, for monitoring. Counted when asked (walking
 * the ready queue and the task list), so that running the loop pays nothing for it. */
#include "loop/loop_internal.h"

CF__ABI_STRUCT(cf_loop_stats, 184);

static size_t list_length(const cf_loop_handle *h)
{
    size_t n = 0;
    for (; h; h = h->next)
        n++;
    return n;
}

int cf_loop_get_stats(cf_loop_stats *out, const cf_loop *const_loop)
{
    cf_loop *loop = (cf_loop *)const_loop; /* only read here */
    if (!out)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc && rc != CF_ECLOSED)
        return rc;
    size_t tasks = 0;
    for (const cf__dlink *l = loop->tasks; l; l = l->next)
        tasks++;
    unsigned signals = cf__loop_signals_handled(loop);
    /* The signalfd is watched like a reader; it is the loop's own, not one of the caller's. */
    size_t descriptors = loop->io_registered - (signals ? 1 : 0);
    *out = (cf_loop_stats){
        .ready = list_length(loop->ready_head),
        .timers = loop->timers.n - loop->timers_cancelled,
        .tasks = tasks,
        .descriptors = descriptors,
        .signals = signals,
        .executor_waits = atomic_load_explicit(&loop->outstanding, memory_order_relaxed),
        .iterations = loop->iterations,
    };
    return 0;
}
