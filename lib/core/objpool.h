/* Pools of fixed-size objects that many threads allocate and free: futures, loop tasks. Not
 * installed.
 *
 * A burst of a million tasks allocates a million futures on the submitting thread and frees
 * them there or on a worker. malloc then costs about a third of the instructions of a task, and
 * a 96-byte object it returns straddles two or three cache lines. A pool instead hands out
 * objects carved from 64 KiB slabs, aligned to 64 bytes when their size is a multiple of 64
 * (a future is exactly one cache line), through three tiers (Bonwick's magazines):
 *
 * - each thread caches up to two magazines of CF__OBJPOOL_MAG objects per pool: an allocation
 *   or a free is a push or pop on a thread-local list, with no atomic operation;
 * - a full magazine goes to, and an empty thread takes one from, the pool's depot (a few full
 *   magazines under the pool's lock), so objects flow between threads a magazine at a time;
 * - beyond the depot, objects go back to their slab; a slab whose objects are all back is
 *   unmapped (a few are kept spare, and up to 2 MiB more wait to be unmapped together), so
 *   memory after a peak is given back.
 *
 * Free objects are invisible to the memory checkers: ASan builds poison them, and under valgrind
 * every object is a heap block of its own (VALGRIND_MALLOCLIKE_BLOCK / FREELIKE_BLOCK), so a
 * use after free, a double free or a leaked object is reported as for malloc.
 *
 * Thread-safe. A thread's caches go back to the depot when it exits. fork() is safe: the pool
 * locks are held across it. */
#ifndef CFUTURES_OBJPOOL_H
#define CFUTURES_OBJPOOL_H

#include "core/internal.h"

/* The library's pools, each with its slot in every thread's table of caches. */
enum {
    CF__OBJPOOL_FUTURES,    /* plain futures (core/future.c) */
    CF__OBJPOOL_LOOP_TASKS, /* loop tasks (loop/task.c) */
};

enum {
    CF__OBJPOOL_MAG = 64,   /* objects per magazine */
    CF__OBJPOOL_DEPOT = 16, /* full magazines a depot keeps */
    CF__OBJPOOL_MAX = 2,    /* pools in the library (each has an id below this) */
};

typedef struct cf__objpool_slab cf__objpool_slab;

/* A snapshot of a pool (for tests and diagnostics). */
typedef struct cf__objpool_stats {
    size_t slabs;        /* slabs mapped (in use, spare, or never used yet) */
    size_t mapped_bytes; /* their address space */
    size_t out;          /* objects out of their slabs: in use, or in a cache or the depot */
    size_t depot;        /* objects in the depot */
} cf__objpool_stats;

typedef struct cf__objpool {
    size_t size; /* object size: a multiple of 16, at most 1 KiB */
    unsigned id; /* unique per pool, below CF__OBJPOOL_MAX */
    _Atomic bool registered;
    cf__lock lock; /* everything below */
    unsigned ndepot;
    void *depot[CF__OBJPOOL_DEPOT]; /* full magazines, each a list of CF__OBJPOOL_MAG objects */
    cf__objpool_slab *partial;      /* slabs with free or never-carved objects */
    char *region_next, *region_end; /* slabs mapped and never carved yet */
    size_t nspare;                  /* listed slabs with no object out */
    cf__objpool_slab *retired;      /* empty slabs beyond the spares, to unmap together */
    size_t nretired;
    cf__objpool_stats stats;
} cf__objpool;

/* A pool of objects of `size` bytes, with its unique id. */
#define CF__OBJPOOL_INIT(object_size, pool_id)                                                     \
    {                                                                                              \
        .size = (object_size), .id = (pool_id)                                                     \
    }

/* Each pool's cache in a thread: two magazines, each a list of objects linked through their
 * first word. */
typedef struct cf__objcache {
    void *loaded;
    void *prev;
    char *run, *run_end; /* never-used objects, contiguous: handed out before a refill */
    uint32_t nloaded;
    uint32_t nprev;
    uint32_t cap; /* objects `loaded` may hold: 0 until the thread-exit hook is armed */
    bool closed;  /* the thread is exiting: no more caching */
} cf__objcache;

extern _Thread_local cf__objcache cf__objcaches[CF__OBJPOOL_MAX] CF__TLS_FAST;
/* Whether every allocation must take the slow path: running under memcheck, which is told
 * about each object. */
extern _Atomic bool cf__objpool_checked;

/* Relaxed: set once, before the first object exists (a plain load on every machine). */
static inline bool cf__objpool_is_checked(void)
{
    return atomic_load_explicit(&cf__objpool_checked, memory_order_relaxed);
}

void *cf__objpool_alloc_slow(cf__objpool *p);
void cf__objpool_free_slow(cf__objpool *p, void *obj);

/* The fast paths are a pop (or a bump of the run) and a push on the thread's list; the sanitizer
 * and fault-injection builds always take the slow path, which also tells the memory checkers. */
#if defined(CF_FAULT_INJECTION) || defined(__SANITIZE_ADDRESS__)
#define CF__OBJPOOL_ALWAYS_SLOW 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF__OBJPOOL_ALWAYS_SLOW 1
#endif
#endif
#ifndef CF__OBJPOOL_ALWAYS_SLOW
#define CF__OBJPOOL_ALWAYS_SLOW 0
#endif

/* An object of p->size bytes (uninitialised), or NULL (no memory, or an injected fault). Any
 * thread. */
static inline void *cf__objpool_alloc(cf__objpool *p)
{
    cf__objcache *c = &cf__objcaches[p->id];
    void *obj = c->loaded;
    if (CF__OBJPOOL_ALWAYS_SLOW || CF__UNLIKELY(cf__objpool_is_checked()))
        return cf__objpool_alloc_slow(p);
    if (CF__LIKELY(obj != NULL)) {
        c->loaded = *(void **)obj;
        c->nloaded--;
    } else if (c->run != c->run_end) {
        obj = c->run;
        c->run += p->size;
    } else {
        obj = cf__objpool_alloc_slow(p);
    }
    return obj;
}

/* Gives back an object of this pool (not NULL). Any thread. */
static inline void cf__objpool_free(cf__objpool *p, void *obj)
{
    cf__objcache *c = &cf__objcaches[p->id];
    if (CF__OBJPOOL_ALWAYS_SLOW || CF__UNLIKELY(c->nloaded >= c->cap || cf__objpool_is_checked())) {
        cf__objpool_free_slow(p, obj);
        return;
    }
    *(void **)obj = c->loaded;
    c->loaded = obj;
    c->nloaded++;
}
/* Returns the calling thread's cached objects of `p`, and the depot's, to the slabs (for
 * tests: makes a pool's counters independent of what is cached). */
void cf__objpool_flush(cf__objpool *p);
void cf__objpool_stats_get(cf__objpool *p, cf__objpool_stats *out);

/* The futures' pool (for tests and diagnostics), and a way to make its counters exact: the
 * calling thread's cache and the depot go back to the slabs. */
void cf__future_pool_stats(cf__objpool_stats *out);
void cf__future_pool_flush(void);

#endif
