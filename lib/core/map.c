/* cf_executor_map: submit every call in chunks, then yield the results in input order. */
#include <math.h>

#include "core/internal.h"

struct cf_map {
    cf_future **fs;
    size_t n;
    size_t next;        /* index of the next future to yield */
    int64_t deadline;   /* fixed at the map() call, as Python does */
    cf_future *current; /* last yielded, released at the next call */
    bool finished;
};

static void release_range(cf_future **fs, size_t from, size_t to, bool cancel)
{
    for (size_t i = from; i < to; i++) {
        if (cancel)
            cf_future_cancel(fs[i]);
        cf_future_unref(fs[i]);
    }
}

static int map_common(cf_map **out, cf_executor *ex, void *fn, bool bytes, const void *args,
                      size_t n, double timeout, size_t chunksize)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!ex || !fn || (!args && n) || isnan(timeout))
        return CF_EINVAL;
    int rc = cf__executor_check(ex, bytes);
    if (rc)
        return rc;
    cf_map *it = cf__calloc(1, sizeof(*it));
    /* n == 0 is an empty map, as Python's map over an empty iterable: one slot keeps the
     * allocation ordinary. */
    size_t slots = n ? n : 1;
    cf_future **fs = slots <= SIZE_MAX / sizeof(*fs) ? cf__malloc(slots * sizeof(*fs)) : NULL;
    if (!it || !fs) {
        cf__free(it);
        cf__free(fs);
        return CF_ENOMEM;
    }
    *it = (cf_map){.fs = fs, .n = n};
    cf__deadline(timeout, &it->deadline);
    rc = cf__task_futures_new(fs, fn, bytes, args, n);
    if (rc == 0) {
        if (chunksize == 0)
            chunksize = ex->ops.default_chunksize ? ex->ops.default_chunksize(ex->impl, n)
                                                  : cf__chunksize_for(n, cf__cpu_count());
        rc = cf__executor_submit_all(ex, fs, n, chunksize);
    }
    if (rc) {
        cf__free(fs);
        cf__free(it);
        return rc;
    }
    *out = it;
    return 0;
}

int cf_executor_map(cf_map **out, cf_executor *ex, cf_fn fn, void *const *args, size_t n,
                    double timeout, size_t chunksize)
{
    return map_common(out, ex, (void *)fn, false, args, n, timeout, chunksize);
}

CF__ABI_FROZEN(cf_bytes, 16);

int cf_executor_map_bytes(cf_map **out, cf_executor *ex, cf_bytes_fn fn, const cf_bytes *args,
                          size_t n, double timeout, size_t chunksize)
{
    return map_common(out, ex, (void *)fn, true, args, n, timeout, chunksize);
}

/* Moves to the next call and waits for it: 0 with it->current set, or CF_EOF, CF_ETIMEDOUT. */
static int advance(cf_map *it)
{
    cf_future_unref(it->current);
    it->current = NULL;
    if (it->finished || it->next == it->n)
        return CF_EOF;
    cf_future *f = it->fs[it->next];
    if (cf__future_wait(f, it->deadline) == CF_ETIMEDOUT) {
        /* Python cancels the call it was waiting for and every later one, then stops. */
        release_range(it->fs, it->next, it->n, true);
        it->next = it->n;
        it->finished = true;
        return CF_ETIMEDOUT;
    }
    it->next++;
    it->current = f;
    return 0;
}

int cf_map_next(void **value, cf_map *it)
{
    if (value)
        *value = NULL;
    if (!it)
        return CF_EINVAL;
    int rc = advance(it);
    return rc ? rc : cf_future_result(value, it->current, 0);
}

int cf_map_next_bytes(const void **data, size_t *len, cf_map *it)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!it)
        return CF_EINVAL;
    int rc = advance(it);
    return rc ? rc : cf_future_result_bytes(data, len, it->current, 0);
}

cf_future *cf_map_current(cf_map *it)
{
    return it ? it->current : NULL;
}

void cf_map_free(cf_map *it)
{
    if (!it)
        return;
    cf_future_unref(it->current);
    release_range(it->fs, it->next, it->n, true);
    cf__free(it->fs);
    cf__free(it);
}
