/* The executor handle: argument checks, task futures, and dispatch to the implementation's ops
 * (include/cfutures/executor_impl.h). */
#include "core/internal.h"
#include "core/trace.h"

CF__ABI_STRUCT(cf_executor_ops, 192);

int cf_executor_new(cf_executor **out, const cf_executor_ops *ops, void *impl)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!ops || !impl)
        return CF_EINVAL;
    /* A flag or a reserved member from a later release: something this library cannot honour. */
    if (!ops->submit || !ops->shutdown || !ops->destroy || !CF__RESERVED_ZERO(ops) ||
        (ops->flags & ~(unsigned)CF_EXECUTOR_BYTES_ONLY))
        return CF_EINVAL;
    cf_executor *ex = cf__calloc_aligned(CF__CACHELINE, sizeof(*ex));
    if (!ex)
        return CF_ENOMEM;
    ex->ops = *ops;
    cf__fork_init();
    ex->impl = impl;
    ex->id = ops;
    ex->fork_gen = cf__fork_gen();
    *out = ex;
    return 0;
}

void *cf_executor_impl(const cf_executor *ex, const cf_executor_ops *ops)
{
    return ex && ops && ex->id == ops ? ex->impl : NULL;
}

const char *cf_executor_name(const cf_executor *ex)
{
    return ex && ex->ops.name ? ex->ops.name : "";
}

int cf__executor_check(const cf_executor *ex, bool bytes)
{
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    if (!bytes && (ex->ops.flags & CF_EXECUTOR_BYTES_ONLY))
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
    size_t max = ex->ops.max_chunksize ? ex->ops.max_chunksize(ex->impl) : SIZE_MAX;
    if (chunksize == 0 || chunksize > max)
        chunksize = max ? max : 1;
    for (size_t i = 0; i < n; i += chunksize) {
        size_t count = n - i < chunksize ? n - i : chunksize;
        for (size_t j = i; j < i + count; j++)
            CF__PROBE3(task__submit, fs[j], ex, fs[j]->fn);
        int rc = ex->ops.submit(ex->impl, fs + i, count);
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
    if (bytes) {
        rc = cf__task_future_new(&f, fn, bytes, arg, len);
        if (rc)
            return rc;
    } else if (!(f = cf__pointer_task_future_new(fn, (void *)arg))) {
        return CF_ENOMEM;
    }
    if (dtor)
        cf__task_future_set_dtor(f, dtor);
    /* Before the executor has it: a worker may start it at once. */
    CF__PROBE3(task__submit, f, ex, fn);
    rc = ex->ops.submit(ex->impl, &f, 1);
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
    return ex->ops.shutdown(ex->impl, wait, cancel_futures);
}

int cf_executor_free(cf_executor *ex)
{
    if (!ex)
        return 0;
    int rc = CF_EFORKED;
    if (!cf__executor_forked(ex))
        rc = ex->ops.destroy(ex->impl);
    else if (ex->ops.forget)
        ex->ops.forget(ex->impl);
    cf__free(ex);
    return rc;
}
