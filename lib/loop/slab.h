/* Slabs of fixed-size objects for the event loop's handles. Not installed.
 *
 * A callback scheduled with call_soon needs a handle; malloc + free per callback cost more than
 * the rest of the dispatch. Slabs are 64 KiB blocks aligned to their size (so an object finds
 * its slab by masking its address), each with its own free list. Slabs with free objects sit
 * on a "partial" list; a slab that becomes empty moves to a spare list, which the loop trims
 * when it goes idle (cf__slab_trim): giving memory back in the middle of a burst would only
 * make the allocator unmap pages that the next burst faults in again, while trimming at idle
 * keeps a finished burst from pinning memory. Single-threaded: the loop thread only. */
#ifndef CFUTURES_LOOP_SLAB_H
#define CFUTURES_LOOP_SLAB_H

#include <stddef.h>

#include "core/list.h"

typedef struct cf__slab cf__slab;

typedef struct cf__slab_cache {
    cf__dlink *partial; /* slabs with some objects in use and some free */
    cf__slab *spare;    /* empty slabs */
    size_t nspare;
    size_t object_size;
} cf__slab_cache;

/* `object_size`: a multiple of 16, at most 1 KiB. */
void cf__slab_cache_init(cf__slab_cache *c, size_t object_size);
/* An uninitialised object, or NULL (no memory). */
void *cf__slab_alloc(cf__slab_cache *c);
/* Returns an object obtained from cf__slab_alloc on the same cache. */
void cf__slab_free(cf__slab_cache *c, void *p);
/* Gives back empty slabs beyond `keep`. */
void cf__slab_trim(cf__slab_cache *c, size_t keep);
/* Frees the remaining slabs; every object must have been freed. */
void cf__slab_cache_destroy(cf__slab_cache *c);

#endif
