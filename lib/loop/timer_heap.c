/* The loop's timer heap: a 4-ary min-heap on (when, seq). */

#include "core/internal.h"
#include "loop/timer_heap.h"

enum { ARITY = 4 };

static bool less(const cf__timer_entry *a, const cf__timer_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void sift_up(cf__timer_entry *v, size_t i)
{
    cf__timer_entry e = v[i];
    while (i > 0) {
        size_t parent = (i - 1) / ARITY;
        if (!less(&e, &v[parent]))
            break;
        v[i] = v[parent];
        i = parent;
    }
    v[i] = e;
}

static void sift_down(cf__timer_entry *v, size_t n, size_t i)
{
    cf__timer_entry e = v[i];
    for (;;) {
        size_t first = i * ARITY + 1;
        if (first >= n)
            break;
        size_t last = first + ARITY < n ? first + ARITY : n;
        size_t best = first;
        for (size_t c = first + 1; c < last; c++)
            if (less(&v[c], &v[best]))
                best = c;
        if (!less(&v[best], &e))
            break;
        v[i] = v[best];
        i = best;
    }
    v[i] = e;
}

int cf__timer_heap_push(cf__timer_heap *h, int64_t when, uint64_t seq, void *item)
{
    if (cf__grow(&h->v, &h->cap, h->n + 1, sizeof(*h->v)) != 0)
        return CF_ENOMEM;
    h->v[h->n] = (cf__timer_entry){.when = when, .seq = seq, .item = item};
    sift_up(h->v, h->n++);
    return 0;
}

void *cf__timer_heap_pop(cf__timer_heap *h)
{
    CF__ASSERT(h->n > 0);
    void *item = h->v[0].item;
    h->v[0] = h->v[--h->n];
    if (h->n)
        sift_down(h->v, h->n, 0);
    return item;
}

size_t cf__timer_heap_filter(cf__timer_heap *h, bool (*keep)(void *item, void *ctx), void *ctx)
{
    size_t kept = 0;
    for (size_t i = 0; i < h->n; i++)
        if (keep(h->v[i].item, ctx))
            h->v[kept++] = h->v[i];
    size_t removed = h->n - kept;
    h->n = kept;
    /* Floyd's heapify: sift down every internal node, last first. */
    for (size_t i = kept / ARITY + 1; i-- > 0;)
        if (i < kept)
            sift_down(h->v, kept, i);
    return removed;
}

void cf__timer_heap_free(cf__timer_heap *h)
{
    cf__free(h->v);
    *h = (cf__timer_heap){0};
}
