/* Pools of fixed-size objects: thread caches of magazines, a depot, and slabs (see
 * core/objpool.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/objpool.h"

#if defined(__SANITIZE_ADDRESS__)
#define OBJPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OBJPOOL_ASAN 1
#endif
#endif

#ifdef OBJPOOL_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define POISON(p, n)   __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifdef CF_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND                    0
#define VALGRIND_GET_VBITS(p, v, n)            0
#define VALGRIND_MALLOCLIKE_BLOCK(p, n, rz, z) ((void)0)
#define VALGRIND_FREELIKE_BLOCK(p, rz)         ((void)0)
#define VALGRIND_MAKE_MEM_NOACCESS(p, n)       ((void)0)
#define VALGRIND_MAKE_MEM_UNDEFINED(p, n)      ((void)0)
#define VALGRIND_MAKE_MEM_DEFINED(p, n)        ((void)0)
#endif

#define SLAB_BYTES   ((size_t)64 << 10) /* aligned to their size: an object's slab is a mask away */
#define REGION_SLABS 16                 /* slabs per mmap */
#define SPARE_SLABS  4                  /* slabs with no object out kept mapped, per pool */
#define RETIRE_BATCH 32 /* empty slabs beyond the spares, unmapped together (2 MiB) */

struct cf__objpool_slab {
    cf__objpool_slab *prev, *next; /* in the pool's partial list */
    cf__objpool *pool;
    void *free;  /* objects given back, linked through their first word */
    char *fresh; /* objects never handed out start here */
    char *end;
    uint32_t out; /* objects out of the slab */
    bool listed;
};

#define SLAB_HEADER ((size_t)64)
_Static_assert(sizeof(cf__objpool_slab) <= SLAB_HEADER, "slab header");

_Thread_local cf__objcache cf__objcaches[CF__OBJPOOL_MAX] CF__TLS_FAST;
static _Thread_local bool exit_armed CF__TLS_FAST;
_Atomic bool cf__objpool_checked;

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static cf__lock registry_lock;
static _Atomic(cf__objpool *) registry[CF__OBJPOOL_MAX];
/* Under memcheck every object is announced as a heap block (decided once: the client requests
 * cost a few instructions each even natively). */
#define vg cf__objpool_is_checked()

/* ---- what the memory checkers see ---- */

static void *link_get(void *obj)
{
    UNPOISON(obj, sizeof(void *));
    if (vg)
        VALGRIND_MAKE_MEM_DEFINED(obj, sizeof(void *));
    void *next = *(void **)obj;
    POISON(obj, sizeof(void *));
    if (vg)
        VALGRIND_MAKE_MEM_NOACCESS(obj, sizeof(void *));
    return next;
}

static void link_set(void *obj, void *next)
{
    UNPOISON(obj, sizeof(void *));
    if (vg)
        VALGRIND_MAKE_MEM_UNDEFINED(obj, sizeof(void *));
    *(void **)obj = next;
    POISON(obj, sizeof(void *));
    if (vg)
        VALGRIND_MAKE_MEM_NOACCESS(obj, sizeof(void *));
}

static void announce_alloc(cf__objpool *p, void *obj)
{
    UNPOISON(obj, p->size);
    if (vg)
        VALGRIND_MALLOCLIKE_BLOCK(obj, p->size, 0, 0);
}

static void announce_free(cf__objpool *p, void *obj)
{
    if (vg)
        VALGRIND_FREELIKE_BLOCK(obj, 0);
    POISON(obj, p->size);
}

/* ---- slabs (pool lock held) ---- */

static cf__objpool_slab *slab_of(void *obj)
{
    return (cf__objpool_slab *)((uintptr_t)obj & ~(uintptr_t)(SLAB_BYTES - 1));
}

static void slab_list(cf__objpool *p, cf__objpool_slab *s)
{
    s->prev = NULL;
    s->next = p->partial;
    if (p->partial)
        p->partial->prev = s;
    p->partial = s;
    s->listed = true;
}

static void slab_unlist(cf__objpool *p, cf__objpool_slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        p->partial = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->listed = false;
}

/* Carves the next slab from the pool's current region, mapping a new region when it is used
 * up. A slab is not touched before it is carved, so the rest of a region costs address space
 * only. */
static cf__objpool_slab *slab_new(cf__objpool *p)
{
    CF__ASSERT_LOCK_HELD(&p->lock);
    cf__objpool_slab *s = p->retired;
    if (s) { /* still mapped and resident: reuse it before touching new memory */
        p->retired = s->next;
        p->nretired--;
    } else if (p->region_next == p->region_end) {
        size_t bytes = REGION_SLABS * SLAB_BYTES;
        char *m = mmap(NULL, bytes + SLAB_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        char *base = (char *)(((uintptr_t)m + SLAB_BYTES - 1) & ~(uintptr_t)(SLAB_BYTES - 1));
        if (base > m)
            munmap(m, (size_t)(base - m));
        munmap(base + bytes, (size_t)(m + SLAB_BYTES - base));
#ifdef OBJPOOL_ASAN
        /* Objects in use point to heap blocks (messages, callbacks): LeakSanitizer must scan
         * them as it scans the heap. */
        __lsan_register_root_region(base, bytes);
#endif
        p->region_next = base;
        p->region_end = base + bytes;
        p->stats.mapped_bytes += bytes;
        p->stats.slabs += REGION_SLABS;
    }
    if (!s) {
        s = (cf__objpool_slab *)p->region_next;
        p->region_next += SLAB_BYTES;
    }
    char *first = (char *)s + SLAB_HEADER;
    size_t n = (SLAB_BYTES - SLAB_HEADER) / p->size;
    *s = (cf__objpool_slab){.pool = p, .fresh = first, .end = first + n * p->size};
    POISON(s->fresh, (size_t)(s->end - s->fresh));
    if (vg)
        VALGRIND_MAKE_MEM_NOACCESS(s->fresh, (size_t)(s->end - s->fresh));
    slab_list(p, s);
    p->nspare++;
    return s;
}

/* Takes up to n objects out of the slabs, as a list in address order; returns the count. */
static uint32_t carve(cf__objpool *p, uint32_t n, void **list)
{
    CF__ASSERT_LOCK_HELD(&p->lock);
    void *head = NULL, *tail = NULL;
    uint32_t got = 0;
    while (got < n) {
        cf__objpool_slab *s = p->partial;
        if (!s && !(s = slab_new(p)))
            break;
        void *obj = s->free;
        if (obj) {
            s->free = link_get(obj);
        } else {
            obj = s->fresh;
            s->fresh += p->size;
        }
        if (s->out++ == 0)
            p->nspare--;
        if (!s->free && s->fresh == s->end)
            slab_unlist(p, s);
        link_set(obj, NULL);
        if (tail)
            link_set(tail, obj);
        else
            head = obj;
        tail = obj;
        got++;
    }
    p->stats.out += got;
    *list = head;
    return got;
}

enum { RUN_MAX = 256 }; /* objects a thread takes from a slab's never-used ones at once */

/* Takes up to RUN_MAX never-used objects of one slab as a contiguous run (lock held), when no
 * slab has a freed object to reuse first. Returns false (run empty) only without memory. */
static bool carve_run(cf__objpool *p, char **run, char **run_end)
{
    CF__ASSERT_LOCK_HELD(&p->lock);
    cf__objpool_slab *s = p->partial;
    if (s && s->free)
        return false; /* reuse freed objects first, through carve() */
    if (!s && !(s = slab_new(p)))
        return false;
    size_t n = (size_t)(s->end - s->fresh) / p->size;
    if (n > RUN_MAX)
        n = RUN_MAX;
    if (s->out == 0)
        p->nspare--;
    s->out += (uint32_t)n;
    *run = s->fresh;
    s->fresh += n * p->size;
    *run_end = s->fresh;
    if (s->fresh == s->end)
        slab_unlist(p, s);
    p->stats.out += n;
    return true;
}

/* Takes every retired slab out (lock held), chained on *dead for the caller to unmap outside
 * the lock. */
static void take_retired(cf__objpool *p, cf__objpool_slab **dead)
{
    while (p->retired) {
        cf__objpool_slab *s = p->retired;
        p->retired = s->next;
        s->next = *dead;
        *dead = s;
    }
    p->nretired = 0;
}

/* Gives a list of objects back to their slabs. A slab left with nothing out beyond the spares
 * is retired: it stays mapped, reusable, until RETIRE_BATCH of them are chained on *dead for
 * the caller to unmap together outside the lock (a burst's end then costs one munmap per run of
 * adjacent slabs, and one round of TLB shootdowns, rather than one per slab). */
static void uncarve(cf__objpool *p, void *list, cf__objpool_slab **dead)
{
    CF__ASSERT_LOCK_HELD(&p->lock);
    while (list) {
        void *obj = list;
        list = link_get(obj);
        cf__objpool_slab *s = slab_of(obj);
        CF__ASSERT(s->pool == p && s->out > 0); /* an object of this pool, out of its slab */
        link_set(obj, s->free);
        s->free = obj;
        p->stats.out--;
        if (!s->listed)
            slab_list(p, s);
        if (--s->out == 0 && p->nspare++ >= SPARE_SLABS) {
            p->nspare--;
            slab_unlist(p, s);
            s->next = p->retired;
            p->retired = s;
            if (++p->nretired == RETIRE_BATCH)
                take_retired(p, dead);
        }
    }
}

static int slab_order(const void *x, const void *y)
{
    uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
    return (a > b) - (a < b);
}

/* Unmaps a chain of slabs taken out of the pool, one munmap per run of adjacent ones. */
static void unmap_dead(cf__objpool *p, cf__objpool_slab *dead)
{
    size_t total = 0;
    while (dead) {
        uintptr_t at[RETIRE_BATCH + 1];
        size_t n = 0;
        for (; dead && n < RETIRE_BATCH + 1; n++) {
            at[n] = (uintptr_t)dead;
            dead = dead->next;
        }
        qsort(at, n, sizeof(*at), slab_order);
        for (size_t i = 0, j; i < n; i = j) {
            for (j = i + 1; j < n && at[j] == at[j - 1] + SLAB_BYTES; j++)
                ;
            size_t bytes = (j - i) * SLAB_BYTES;
            UNPOISON((void *)at[i], bytes);
            if (vg)
                VALGRIND_MAKE_MEM_UNDEFINED((void *)at[i], bytes);
            munmap((void *)at[i], bytes);
        }
        total += n;
    }
    if (total) {
        cf__lock_acquire(&p->lock);
        p->stats.slabs -= total;
        p->stats.mapped_bytes -= total * SLAB_BYTES;
        cf__lock_release(&p->lock);
    }
}

/* ---- registration, thread exit, fork ---- */

static cf__objpool *registered(unsigned id)
{
    return atomic_load_explicit(&registry[id], memory_order_acquire);
}

static void prefork(void)
{
    cf__lock_acquire(&registry_lock);
    for (unsigned i = 0; i < CF__OBJPOOL_MAX; i++)
        if (registered(i))
            cf__lock_acquire(&registered(i)->lock);
}

static void postfork(void)
{
    for (unsigned i = CF__OBJPOOL_MAX; i-- > 0;)
        if (registered(i))
            cf__lock_release(&registered(i)->lock);
    cf__lock_release(&registry_lock);
}

static void drain(cf__objpool *p, cf__objcache *c);

/* Thread exit: every cached object goes back, and the thread caches nothing from now on
 * (later destructors may still allocate or free). */
static void thread_exit(void *unused)
{
    (void)unused;
    for (unsigned i = 0; i < CF__OBJPOOL_MAX; i++) {
        cf__objcache *c = &cf__objcaches[i];
        c->closed = true;
        c->cap = 0;
        if (registered(i))
            drain(registered(i), c);
    }
}

/* Whether memcheck runs us: its client requests answer, other tools' (callgrind) return 0,
 * and there the annotations would only add instructions to the profile. */
static bool under_memcheck(void)
{
    if (!RUNNING_ON_VALGRIND)
        return false;
    char byte = 0, vbits = 0;
    return VALGRIND_GET_VBITS(&byte, &vbits, 1) == 1;
}

static void setup(void)
{
    atomic_store_explicit(&cf__objpool_checked, under_memcheck(), memory_order_relaxed);
    pthread_key_create(&exit_key, thread_exit);
    static const cf__fork_hooks fork_hooks = {prefork, postfork, postfork};
    cf__fork_hooks_install(CF__FORK_LEVEL_FUTURES, &fork_hooks);
}

static void pool_register(cf__objpool *p)
{
    pthread_once(&setup_once, setup);
    if (atomic_load_explicit(&p->registered, memory_order_acquire))
        return;
    cf__lock_acquire(&registry_lock);
    atomic_store_explicit(&registry[p->id], p, memory_order_release);
    atomic_store_explicit(&p->registered, true, memory_order_release);
    cf__lock_release(&registry_lock);
}

/* Arms the thread-exit hook before the thread's caches first own anything. */
static void cache_arm(cf__objpool *p, cf__objcache *c)
{
    pool_register(p);
    if (!exit_armed) {
        pthread_setspecific(exit_key, (void *)1);
        exit_armed = true;
    }
    if (!c->closed)
        c->cap = CF__OBJPOOL_MAG;
}

/* ---- the depot and the caches ---- */

/* Hands a full magazine to the depot, or its objects back to their slabs when the depot is
 * full. */
static void magazine_put(cf__objpool *p, void *mag)
{
    cf__objpool_slab *dead = NULL;
    cf__lock_acquire(&p->lock);
    if (p->ndepot < CF__OBJPOOL_DEPOT) {
        p->depot[p->ndepot++] = mag;
        p->stats.depot += CF__OBJPOOL_MAG;
    } else {
        uncarve(p, mag, &dead);
    }
    cf__lock_release(&p->lock);
    unmap_dead(p, dead);
}

/* Refills an empty cache: a full magazine from the depot, else freed objects from the slabs,
 * else a run of never-used ones. Returns false without memory. */
static bool refill(cf__objpool *p, cf__objcache *c)
{
    cf__lock_acquire(&p->lock);
    if (p->ndepot) {
        c->loaded = p->depot[--p->ndepot];
        c->nloaded = CF__OBJPOOL_MAG;
        p->stats.depot -= CF__OBJPOOL_MAG;
    } else if (!carve_run(p, &c->run, &c->run_end)) {
        c->nloaded = carve(p, CF__OBJPOOL_MAG, &c->loaded);
    }
    cf__lock_release(&p->lock);
    return c->nloaded || c->run != c->run_end;
}

/* The unused end of a thread's run goes back to its slab (lock held). */
static void unrun(cf__objpool *p, cf__objcache *c, cf__objpool_slab **dead)
{
    while (c->run != c->run_end) {
        c->run_end -= p->size;
        link_set(c->run_end, NULL);
        uncarve(p, c->run_end, dead);
    }
    c->run = c->run_end = NULL;
}

static void drain(cf__objpool *p, cf__objcache *c)
{
    cf__objpool_slab *dead = NULL;
    cf__lock_acquire(&p->lock);
    uncarve(p, c->loaded, &dead);
    uncarve(p, c->prev, &dead);
    unrun(p, c, &dead);
    cf__lock_release(&p->lock);
    unmap_dead(p, dead);
    c->loaded = c->prev = NULL;
    c->nloaded = c->nprev = 0;
}

static void *alloc_refill(cf__objpool *p, cf__objcache *c)
{
    if (c->nprev) {
        void *t = c->loaded;
        c->loaded = c->prev;
        c->prev = t;
        c->nloaded = c->nprev;
        c->nprev = 0;
    } else {
        cache_arm(p, c);
        if (c->closed) {
            void *obj = NULL;
            cf__lock_acquire(&p->lock);
            carve(p, 1, &obj);
            cf__lock_release(&p->lock);
            return obj;
        }
        if (!refill(p, c))
            return NULL;
        if (!c->nloaded) {
            void *obj = c->run;
            c->run += p->size;
            return obj;
        }
    }
    void *obj = c->loaded;
    c->loaded = link_get(obj);
    c->nloaded--;
    return obj;
}

void *cf__objpool_alloc_slow(cf__objpool *p)
{
    if (cf__fault(CF__FAULT_ALLOC))
        return NULL;
    cf__objcache *c = &cf__objcaches[p->id];
    void *obj;
    if (c->nloaded) {
        obj = c->loaded;
        c->loaded = link_get(obj);
        c->nloaded--;
    } else if (c->run != c->run_end) {
        obj = c->run;
        c->run += p->size;
    } else if (!(obj = alloc_refill(p, c))) {
        return NULL;
    }
    announce_alloc(p, obj);
    return obj;
}

void cf__objpool_free_slow(cf__objpool *p, void *obj)
{
    announce_free(p, obj);
    cf__objcache *c = &cf__objcaches[p->id];
    if (c->nloaded == c->cap) {
        cache_arm(p, c);
        if (c->closed) {
            cf__objpool_slab *dead = NULL;
            link_set(obj, NULL);
            cf__lock_acquire(&p->lock);
            uncarve(p, obj, &dead);
            cf__lock_release(&p->lock);
            unmap_dead(p, dead);
            return;
        }
    }
    if (c->nloaded == c->cap) {
        if (c->nprev)
            magazine_put(p, c->prev);
        c->prev = c->loaded;
        c->nprev = c->nloaded;
        c->loaded = NULL;
        c->nloaded = 0;
    }
    link_set(obj, c->loaded);
    c->loaded = obj;
    c->nloaded++;
}

void cf__objpool_flush(cf__objpool *p)
{
    pool_register(p);
    drain(p, &cf__objcaches[p->id]);
    cf__objpool_slab *dead = NULL;
    cf__lock_acquire(&p->lock);
    while (p->ndepot) {
        uncarve(p, p->depot[--p->ndepot], &dead);
        p->stats.depot -= CF__OBJPOOL_MAG;
    }
    take_retired(p, &dead);
    cf__lock_release(&p->lock);
    unmap_dead(p, dead);
}

void cf__objpool_stats_get(cf__objpool *p, cf__objpool_stats *out)
{
    cf__lock_acquire(&p->lock);
    *out = p->stats;
    cf__lock_release(&p->lock);
}
