/* The executor interface: argument checks, task futures, and dispatch through the vtable. */
#include <math.h>

#include "core/internal.h"
#include "core/trace.h"

void cf__executor_init(cf_executor *ex, const cf__executor_vtable *vt)
{
    cf__fork_init();
    ex->vt = vt;
    ex->fork_gen = cf__fork_gen();
}

int cf__executor_check(const cf_executor *ex, bool bytes)
{
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    if (!bytes && !ex->vt->pointer_tasks)
        return CF_ENOTSUP;
    return 0;
}

size_t cf__chunksize_for(size_t n, unsigned workers)
{
    size_t chunk = n / (4 * (size_t)workers);
    return chunk < 1 ? 1 : chunk > 1024 ? 1024 : chunk;
}

static int submit(cf_future **out, cf_executor *ex, void *fn, bool bytes, const void *arg,
                  size_t len, cf_dtor dtor)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!ex || !fn || (bytes && !arg && len))
        return CF_EINVAL;
    int rc = cf__executor_check(ex, bytes);
    if (rc)
        return rc;
    cf_future *f;
    rc = cf__task_future_new(&f, fn, bytes, arg, len);
    if (rc)
        return rc;
    if (dtor)
        cf__task_future_set_dtor(f, dtor);
    /* Before the executor has it: a worker may start it at once. */
    CF__PROBE3(task__submit, f, ex, fn);
    rc = ex->vt->submit(ex, &f, 1);
    if (rc) {
        cf__future_discard(f);
        return rc;
    }
    *out = f;
    return 0;
}

int cf_executor_submit(cf_future **out, cf_executor *ex, cf_fn fn, void *arg)
{
    return submit(out, ex, (void *)fn, false, arg, 0, NULL);
}

int cf_executor_submit_dtor(cf_future **out, cf_executor *ex, cf_fn fn, void *arg,
                            cf_dtor result_dtor)
{
    return submit(out, ex, (void *)fn, false, arg, 0, result_dtor);
}

int cf_executor_submit_bytes(cf_future **out, cf_executor *ex, cf_bytes_fn fn, const void *arg,
                             size_t len)
{
    return submit(out, ex, (void *)fn, true, arg, len, NULL);
}

int cf_executor_shutdown(cf_executor *ex, bool wait, bool cancel_futures)
{
    if (!ex)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    return ex->vt->shutdown(ex, wait, cancel_futures);
}

int cf_executor_free(cf_executor *ex)
{
    return ex ? ex->vt->destroy(ex) : 0;
}
