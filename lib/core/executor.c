/* The executor interface: argument checks, task futures, and dispatch through the vtable. */
#include <math.h>

#include "core/internal.h"

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

int cf__task_futures_new(cf_future **fs, void *fn, bool bytes, const void *args, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const void *arg = NULL;
        size_t len = 0;
        if (bytes) {
            const cf_bytes *b = (const cf_bytes *)args + i;
            arg = b->data;
            len = b->len;
        } else if (args) {
            arg = ((void *const *)args)[i];
        }
        int rc =
            bytes && !arg && len ? CF_EINVAL : cf__task_future_new(&fs[i], fn, bytes, arg, len);
        if (rc) {
            while (i-- > 0)
                cf__future_discard(fs[i]);
            return rc;
        }
    }
    return 0;
}

int cf__executor_submit_all(cf_executor *ex, cf_future **fs, size_t n, size_t chunksize)
{
    size_t max = ex->vt->max_chunksize(ex);
    if (chunksize == 0 || chunksize > max)
        chunksize = max ? max : 1;
    for (size_t i = 0; i < n; i += chunksize) {
        size_t count = n - i < chunksize ? n - i : chunksize;
        int rc = ex->vt->submit(ex, fs + i, count);
        if (rc) {
            for (size_t j = 0; j < i; j++) {
                cf_future_cancel(fs[j]);
                cf_future_unref(fs[j]);
            }
            for (size_t j = i; j < n; j++)
                cf__future_discard(fs[j]);
            return rc;
        }
    }
    return 0;
}

static int submit(cf_future **out, cf_executor *ex, void *fn, bool bytes, const void *arg,
                  size_t len)
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
    if (bytes) {
        rc = cf__task_future_new(&f, fn, bytes, arg, len);
        if (rc)
            return rc;
    } else if (!(f = cf__pointer_task_future_new(fn, (void *)arg))) {
        return CF_ENOMEM;
    }
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
    return submit(out, ex, (void *)fn, false, arg, 0);
}

int cf_executor_submit_bytes(cf_future **out, cf_executor *ex, cf_bytes_fn fn, const void *arg,
                             size_t len)
{
    return submit(out, ex, (void *)fn, true, arg, len);
}

int cf_executor_submit_batch(cf_future **out, cf_executor *ex, cf_fn fn, void *const *args,
                             size_t n)
{
    if (!out && n)
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (!ex || !fn)
        return CF_EINVAL;
    int rc = cf__executor_check(ex, false);
    if (rc || n == 0)
        return rc;
    rc = cf__task_futures_new(out, (void *)fn, false, args, n);
    if (rc == 0)
        rc = cf__executor_submit_all(ex, out, n, 0);
    if (rc)
        for (size_t i = 0; i < n; i++)
            out[i] = NULL;
    return rc;
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
