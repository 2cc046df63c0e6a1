/* The executor handle: argument checks, task futures, and dispatch to the implementation's ops
 * (include/cfutures/executor_impl.h). */
#include <string.h>

#include "core/internal.h"

/* The members every implementation must provide: up to and including `destroy`. */
#define OPS_MIN_SIZE (offsetof(cf_executor_ops, destroy) + sizeof(((cf_executor_ops *)0)->destroy))

/* Copies an ops table of `ops->size` bytes into `copy`. A table from a newer header may be
 * larger: accepted only if what this library does not know is all zero. */
static int copy_ops(cf_executor_ops *copy, const cf_executor_ops *ops)
{
    if (ops->size < OPS_MIN_SIZE)
        return CF_EINVAL;
    size_t known = ops->size < sizeof(*copy) ? ops->size : sizeof(*copy);
    const unsigned char *extra = (const unsigned char *)ops + known;
    for (size_t i = 0; i < ops->size - known; i++)
        if (extra[i])
            return CF_ENOTSUP;
    memset(copy, 0, sizeof(*copy));
    memcpy(copy, ops, known);
    if (!copy->submit || !copy->shutdown || !copy->destroy)
        return CF_EINVAL;
    return 0;
}

int cf_executor_new(cf_executor **out, const cf_executor_ops *ops, void *impl)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!ops || !impl)
        return CF_EINVAL;
    cf_executor *ex = cf__calloc_aligned(CF__CACHELINE, sizeof(*ex));
    if (!ex)
        return CF_ENOMEM;
    int rc = copy_ops(&ex->ops, ops);
    if (rc) {
        cf__free(ex);
        return rc;
    }
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

int cf__task_future_new(cf_future **out, void *fn, bool bytes, const void *arg, size_t len)
{
    cf_future *f = cf__future_alloc(2);
    if (!f)
        return CF_ENOMEM;
    f->fn = fn;
    if (bytes) {
        cf__bytes *copy = cf__bytes_new(arg, len);
        if (!copy) {
            cf__task_future_discard(f);
            return CF_ENOMEM;
        }
        f->arg = copy;
        atomic_store_explicit(&f->state, CF__F_TASK_BYTES, memory_order_relaxed);
    } else {
        f->arg = (void *)arg;
    }
    *out = f;
    return 0;
}

void cf__task_future_discard(cf_future *f)
{
    atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
    cf_future_unref(f);
}

int cf__executor_check(const cf_executor *ex, bool bytes)
{
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    if (!bytes && (ex->ops.flags & CF_EXECUTOR_BYTES_ONLY))
        return CF_ENOTSUP;
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
    rc = cf__task_future_new(&f, fn, bytes, arg, len);
    if (rc)
        return rc;
    rc = ex->ops.submit(ex->impl, &f, 1);
    if (rc) {
        cf__task_future_discard(f);
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
