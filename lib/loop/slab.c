/* Slabs for the event loop's handles (see loop/slab.h). */
#include <stdint.h>

#include "core/internal.h"
#include "core/list.h"
#include "loop/slab.h"

#define SLAB_BYTES ((size_t)65536)

struct cf__slab {
    cf__dlink partial; /* on the partial list */
    cf__slab *next_spare;
    void *free;  /* freed objects, linked through their first word */
    char *fresh; /* objects never handed out start here */
    char *end;
    unsigned live;
};

#define FIRST_OBJECT(s) ((char *)(s) + ((sizeof(cf__slab) + 63) & ~(size_t)63))

static cf__slab *slab_of(void *p)
{
    return (cf__slab *)((uintptr_t)p & ~(uintptr_t)(SLAB_BYTES - 1));
}

static cf__slab *partial_slab(cf__dlink *l)
{
    return l ? CF__CONTAINER_OF(l, cf__slab, partial) : NULL;
}

void cf__slab_cache_init(cf__slab_cache *c, size_t object_size)
{
    *c = (cf__slab_cache){.object_size = object_size};
}

/* An empty slab on the partial list: a spare one, else a new one. */
static cf__slab *slab_get(cf__slab_cache *c)
{
    cf__slab *s = c->spare;
    if (s) {
        c->spare = s->next_spare;
        c->nspare--;
    } else {
        s = cf__malloc_aligned(SLAB_BYTES, SLAB_BYTES);
        if (!s)
            return NULL;
        s->partial = (cf__dlink){0};
    }
    s->free = NULL;
    s->live = 0;
    s->fresh = FIRST_OBJECT(s);
    size_t room = SLAB_BYTES - (size_t)(s->fresh - (char *)s);
    s->end = s->fresh + room / c->object_size * c->object_size;
    cf__dlist_push(&c->partial, &s->partial);
    return s;
}

void *cf__slab_alloc(cf__slab_cache *c)
{
    cf__slab *s = partial_slab(c->partial);
    if (!s && !(s = slab_get(c)))
        return NULL;
    void *p = s->free;
    if (p) {
        s->free = *(void **)p;
    } else {
        p = s->fresh;
        s->fresh += c->object_size;
    }
    s->live++;
    if (!s->free && s->fresh == s->end)
        cf__dlist_remove(&c->partial, &s->partial); /* full */
    return p;
}

void cf__slab_free(cf__slab_cache *c, void *p)
{
    cf__slab *s = slab_of(p);
    CF__ASSERT(s->live > 0); /* more frees than allocations in this slab */
    *(void **)p = s->free;
    s->free = p;
    if (!cf__dlist_linked(&c->partial, &s->partial))
        cf__dlist_push(&c->partial, &s->partial);
    /* Empty: spare it, unless it is the one slab with room (then it serves the next alloc). */
    if (--s->live == 0 && (s->partial.prev || s->partial.next)) {
        cf__dlist_remove(&c->partial, &s->partial);
        s->next_spare = c->spare;
        c->spare = s;
        c->nspare++;
    }
}

void cf__slab_trim(cf__slab_cache *c, size_t keep)
{
    while (c->nspare > keep) {
        cf__slab *s = c->spare;
        c->spare = s->next_spare;
        c->nspare--;
        cf__free(s);
    }
}

void cf__slab_cache_destroy(cf__slab_cache *c)
{
    cf__slab_trim(c, 0);
    while (c->partial) {
        cf__slab *s = partial_slab(c->partial);
        cf__dlist_remove(&c->partial, &s->partial);
        cf__free(s);
    }
}
