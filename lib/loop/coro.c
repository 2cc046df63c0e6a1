/* Stackful coroutines: their life cycle, the thread's current coroutine, the sanitizer and
 * valgrind bookkeeping around every switch, and the stack pool. The register switch itself is
 * the backend's (coro_switch.h). docs/coroutines.md explains the design. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loop/coro.h"
#include "loop/coro_switch.h"
#include "core/internal.h"
#include "core/list.h"

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define CORO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORO_TSAN 1
#endif
#endif

#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#define STACK_SCALE 4 /* fake frames and redzones */
#elif defined(CORO_TSAN)
#include <sanitizer/tsan_interface.h>
#define STACK_SCALE 2
#else
#define STACK_SCALE 1
#endif

/* The valgrind macros cost a few no-op instructions when not running under valgrind. */
#ifdef CF_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi)   0u
#define VALGRIND_STACK_DEREGISTER(id)     ((void)(id))
#define VALGRIND_MAKE_MEM_UNDEFINED(p, n) 0
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13; older headers lack it */
#endif

#define STACK_DEFAULT ((size_t)64 << 10)
#define STACK_MIN     ((size_t)16 << 10)
#define STACK_MAX     (SIZE_MAX >> 4 < (size_t)1 << 30 ? SIZE_MAX >> 4 : (size_t)1 << 30)
#define ARENA_BYTES   ((size_t)2 << 20) /* stacks per mmap: about one page-table page's span */
#define HOT_BYTES     ((size_t)4 << 20) /* address space of the resident free stacks per size */
#define HOT_MAX       64
#define PENDING_MAX   32 /* freed stacks beyond the hot set that wait to be trimmed together */
#define CANARY        UINT64_C(0x5a17c0de5a17c0de)

enum {
    CORO_READY,   /* new or suspended: may be resumed */
    CORO_RUNNING, /* on this thread's chain of resumed coroutines */
    CORO_DONE,    /* its function returned */
};

struct arena;

/* Lives at the top of the coroutine's own stack slot, so a coroutine is one slot and nothing
 * else, and its control block shares the page its first frames touch. */
struct cf__coro {
    cf__coro_ctx ctx;  /* where the coroutine stopped */
    cf__coro_ctx back; /* where its resumer stopped */
    cf__coro *resumer; /* the coroutine that resumed it; NULL for the thread's own stack */
    cf__coro_fn fn;
    void *arg;
    char *lo; /* usable stack: [lo, (char *)this) */
    struct arena *arena;
    uint32_t slot;
    uint8_t state;
    bool canary;
    unsigned valgrind_id;
#ifdef CORO_ASAN
    const void *back_lo; /* the resumer's stack, which the switch back announces */
    size_t back_size;
#endif
#ifdef CORO_TSAN
    void *fiber;
    void *back_fiber;
#endif
};

#define HEADER ((sizeof(cf__coro) + 63) & ~(size_t)63)

static __thread cf__coro *current __attribute__((tls_model("initial-exec")));

static void misuse(const char *what)
{
    fprintf(stderr, "cfutures: %s\n", what);
    abort();
}

/* ---- the stack pool ----
 *
 * Stacks are slots of one size class carved from arenas of about 2 MiB: one mmap
 * (MAP_NORESERVE, so nothing is committed until touched) per arena keeps the VMA count far
 * below vm.max_map_count even with 100,000 stacks. A slot is a guard page, then the stack,
 * then the control block. Freed slots go to a small LIFO "hot" set that keeps their pages for
 * a fast, cache-warm reuse. Beyond it they wait, still resident and reusable, in a "pending"
 * batch; when that batch is full, or when an event loop goes idle (cf__coro_trim), their pages
 * are given back with MADV_DONTNEED, one call per run of adjacent slots (the guard pages in
 * between survive it), and they become "cold" in their arena. So a wave of finishing tasks
 * pays one system call per batch rather than one per stack. An arena whose slots are all cold
 * is unmapped, except one per size class as a reserve. */

typedef struct arena {
    cf__dlink partial; /* in its class's list of arenas with cold slots */
    struct stack_class *cls;
    char *base;
    uint32_t ncold;
    uint32_t nmprotect; /* guard pages made with mprotect, for the VMA budget */
    bool canary;        /* some slot has no guard page */
    uint32_t cold[];
} arena;

typedef struct slot_ref {
    arena *a;
    uint32_t i;
} slot_ref;

typedef struct stack_class {
    struct stack_class *next;
    size_t slot_size; /* guard page + stack + control block */
    uint32_t per_arena;
    uint32_t hot_max;
    uint32_t nhot;
    uint32_t pending_max;
    uint32_t npending;
    uint32_t nempty;    /* arenas with every slot cold */
    cf__dlink *partial; /* arenas with cold slots */
    slot_ref hot[HOT_MAX];
    slot_ref pending[PENDING_MAX];
} stack_class;

static struct {
    cf__lock lock;
    stack_class *classes;
    cf__coro_guard guard;
    bool guard_checked; /* guard_holds() confirmed MADV_GUARD_INSTALL */
    size_t vma_budget;  /* VMAs that mprotect guards may still add */
    cf__coro_stats stats;
    _Atomic size_t npending; /* stats.pending, readable without the lock */
} pool;

/* Keeps stats.pending and its lock-free mirror together (lock held). */
static void pending_count(long delta)
{
    pool.stats.pending += (size_t)delta;
    atomic_store_explicit(&pool.npending, pool.stats.pending, memory_order_relaxed);
}

static size_t page_size;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A fork while another thread holds the pool lock must not leave the child's pool locked. */
static void pool_prefork(void)
{
    cf__lock_acquire(&pool.lock);
}

static void pool_postfork(void)
{
    cf__lock_release(&pool.lock);
}

static void pool_postfork_child(void)
{
    atomic_store(&pool.lock.word, 0);
}

static size_t read_max_map_count(void)
{
    char buf[32] = {0};
    int fd = cf__fault(CF__FAULT_FD)
                 ? -1
                 : cf__fd_above_stdio(open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC));
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0)
            return strtoul(buf, NULL, 10);
    }
    return 65530; /* the kernel default */
}

static void pool_init(void)
{
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    pool.vma_budget = read_max_map_count() / 4;
    pool.guard = CF__CORO_GUARD_MADVISE;
    static const cf__fork_hooks stack_hooks = {pool_prefork, pool_postfork, pool_postfork_child};
    cf__fork_hooks_install(CF__FORK_LEVEL_STACKS, &stack_hooks);
}

/* Some environments (qemu-user) accept MADV_GUARD_INSTALL and ignore it. Checks once that
 * the kernel really refuses to write into the guarded page at p. */
static bool guard_holds(char *p)
{
    int fds[2];
    if (cf__fault(CF__FAULT_FD) || pipe2(fds, O_CLOEXEC) != 0 || cf__fd_pair_above_stdio(fds) != 0)
        return true; /* cannot tell: trust the kernel's answer */
    bool holds = true;
    if (write(fds[1], "", 1) == 1)
        holds = read(fds[0], p, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
    return holds;
}

/* Makes the page at p inaccessible in the best way still available; returns the way used. */
static cf__coro_guard guard_page(char *p)
{
    if (pool.guard == CF__CORO_GUARD_MADVISE) {
        if (madvise(p, page_size, MADV_GUARD_INSTALL) == 0) {
            if (pool.guard_checked || (pool.guard_checked = guard_holds(p)))
                return CF__CORO_GUARD_MADVISE;
            pool.guard = CF__CORO_GUARD_MPROTECT;
        } else if (errno == EINVAL) { /* a kernel before 6.13: stop trying */
            pool.guard = CF__CORO_GUARD_MPROTECT;
        }
    }
    if (pool.guard == CF__CORO_GUARD_MPROTECT && pool.vma_budget >= 2 &&
        mprotect(p, page_size, PROT_NONE) == 0) {
        pool.vma_budget -= 2;
        return CF__CORO_GUARD_MPROTECT;
    }
    return CF__CORO_GUARD_CANARY;
}

static arena *arena_new(stack_class *c)
{
    if (cf__fault(CF__FAULT_MMAP))
        return NULL;
    arena *a = cf__calloc(1, sizeof(arena) + c->per_arena * sizeof(uint32_t));
    if (!a)
        return NULL;
    size_t bytes = c->slot_size * c->per_arena;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) {
        cf__free(a);
        return NULL;
    }
    /* With THP "always" an aligned arena could get a 2 MiB huge page for a few shallow
     * stacks; failure (THP not built in) is harmless. */
    (void)madvise(p, bytes, MADV_NOHUGEPAGE);
    a->cls = c;
    a->base = p;
    for (uint32_t i = 0; i < c->per_arena; i++) {
        cf__coro_guard g = guard_page(a->base + (size_t)i * c->slot_size);
        a->nmprotect += g == CF__CORO_GUARD_MPROTECT;
        a->canary |= g == CF__CORO_GUARD_CANARY;
        a->cold[c->per_arena - 1 - i] = i; /* lowest slot first */
    }
    a->ncold = c->per_arena;
    pool.stats.arenas++;
    pool.stats.mapped_bytes += bytes;
    pool.stats.cold += c->per_arena;
    return a;
}

static void arena_unmap(arena *a)
{
    stack_class *c = a->cls;
    munmap(a->base, c->slot_size * c->per_arena);
    cf__free(a);
}

/* Four sizes per doubling, so that odd requests share a few classes. */
static size_t size_grid(size_t n)
{
    size_t step = page_size;
    while (step * 8 <= n)
        step *= 2;
    return (n + step - 1) & ~(step - 1);
}

static size_t slot_size_for(size_t stack_size)
{
    size_t want = (stack_size ? stack_size : STACK_DEFAULT) * STACK_SCALE;
    if (want < STACK_MIN)
        want = STACK_MIN;
    size_t stack = (size_grid(want) + HEADER + page_size - 1) & ~(page_size - 1);
    return page_size + stack;
}

static stack_class *class_get(size_t slot_size)
{
    for (stack_class *c = pool.classes; c; c = c->next)
        if (c->slot_size == slot_size)
            return c;
    stack_class *c = cf__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    size_t per_arena = ARENA_BYTES / slot_size;
    size_t hot_max = HOT_BYTES / slot_size;
    c->slot_size = slot_size;
    c->per_arena = per_arena ? (uint32_t)per_arena : 1;
    c->hot_max = hot_max > HOT_MAX ? HOT_MAX : (uint32_t)hot_max; /* 0 above HOT_BYTES */
    /* Stacks too big for the hot set give their pages back at once, one by one. */
    c->pending_max = c->hot_max < PENDING_MAX ? c->hot_max : PENDING_MAX;
    c->next = pool.classes;
    pool.classes = c;
    return c;
}

/* Under the pool lock. */
static int stack_take(size_t slot_size, slot_ref *out)
{
    stack_class *c = class_get(slot_size);
    if (!c)
        return CF_ENOMEM;
    if (c->nhot) {
        *out = c->hot[--c->nhot];
        pool.stats.hot--;
        pool.stats.in_use++;
        return 0;
    }
    if (c->npending) {
        *out = c->pending[--c->npending];
        pending_count(-1);
        pool.stats.in_use++;
        return 0;
    }
    if (!c->partial) {
        arena *a = arena_new(c);
        if (!a)
            return CF_ENOMEM;
        cf__dlist_push(&c->partial, &a->partial);
        c->nempty++;
    }
    arena *a = CF__CONTAINER_OF(c->partial, arena, partial);
    if (a->ncold == c->per_arena)
        c->nempty--;
    out->a = a;
    out->i = a->cold[--a->ncold];
    if (!a->ncold)
        cf__dlist_remove(&c->partial, &a->partial);
    pool.stats.cold--;
    pool.stats.in_use++;
    return 0;
}

static char *slot_base(slot_ref s)
{
    return s.a->base + (size_t)s.i * s.a->cls->slot_size;
}

static int slot_order(const void *x, const void *y)
{
    uintptr_t a = (uintptr_t)slot_base(*(const slot_ref *)x);
    uintptr_t b = (uintptr_t)slot_base(*(const slot_ref *)y);
    return (a > b) - (a < b);
}

/* Files a trimmed slot cold in its arena (lock held). Returns its arena if that arena became
 * entirely cold and is not the class's reserve: the caller unmaps it. */
static arena *file_cold(slot_ref s)
{
    stack_class *c = s.a->cls;
    arena *a = s.a;
    a->cold[a->ncold++] = s.i;
    pool.stats.cold++;
    if (!cf__dlist_linked(&c->partial, &a->partial))
        cf__dlist_push(&c->partial, &a->partial);
    if (a->ncold < c->per_arena || ++c->nempty == 1)
        return NULL;
    c->nempty--;
    cf__dlist_remove(&c->partial, &a->partial);
    pool.vma_budget += 2 * (size_t)a->nmprotect;
    pool.stats.arenas--;
    pool.stats.mapped_bytes -= c->slot_size * c->per_arena;
    pool.stats.cold -= c->per_arena;
    return a;
}

/* Gives the pages of n free slots of one class back to the kernel and files them cold (lock
 * not held). The mappings and guard pages stay, and the pages read as zeros later. Adjacent
 * slots are trimmed by one madvise over the whole run, guard pages included: MADV_DONTNEED
 * keeps guard markers (MADV_GUARD_INSTALL) and the protection of mprotect guards. */
static void trim(slot_ref *s, uint32_t n)
{
    size_t slot_size = s[0].a->cls->slot_size;
    qsort(s, n, sizeof *s, slot_order);
    for (uint32_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && s[j].a == s[i].a && s[j].i == s[j - 1].i + 1; j++)
            ;
        char *lo = slot_base(s[i]) + page_size;
        char *hi = slot_base(s[j - 1]) + slot_size;
        if (madvise(lo, (size_t)(hi - lo), MADV_DONTNEED) != 0)
            for (uint32_t k = i; k < j; k++) /* one slot at a time, without the guards */
                (void)madvise(slot_base(s[k]) + page_size, slot_size - page_size, MADV_DONTNEED);
    }
    arena *dead[PENDING_MAX + 1];
    uint32_t ndead = 0;
    cf__lock_acquire(&pool.lock);
    for (uint32_t i = 0; i < n; i++) {
        arena *a = file_cold(s[i]);
        if (a)
            dead[ndead++] = a;
    }
    cf__lock_release(&pool.lock);
    while (ndead)
        arena_unmap(dead[--ndead]);
}

/* Takes a class's pending slots out for trimming (lock held); returns how many. */
static uint32_t take_pending(stack_class *c, slot_ref *out)
{
    uint32_t n = c->npending;
    memcpy(out, c->pending, n * sizeof *out);
    c->npending = 0;
    pending_count(-(long)n);
    return n;
}

static void stack_give(slot_ref s)
{
    stack_class *c = s.a->cls;
    slot_ref batch[PENDING_MAX + 1];
    uint32_t n = 0;
    cf__lock_acquire(&pool.lock);
    pool.stats.in_use--;
    if (c->nhot < c->hot_max) {
        c->hot[c->nhot++] = s;
        pool.stats.hot++;
    } else if (c->npending < c->pending_max) {
        c->pending[c->npending++] = s;
        pending_count(1);
    } else {
        n = take_pending(c, batch);
        batch[n++] = s;
    }
    cf__lock_release(&pool.lock);
    if (n)
        trim(batch, n);
}

void cf__coro_trim(void)
{
    if (atomic_load_explicit(&pool.npending, memory_order_relaxed) == 0)
        return;
    slot_ref batch[PENDING_MAX];
    for (;;) {
        uint32_t n = 0;
        cf__lock_acquire(&pool.lock);
        for (stack_class *c = pool.classes; c && !n; c = c->next)
            n = take_pending(c, batch);
        cf__lock_release(&pool.lock);
        if (!n)
            return;
        trim(batch, n);
    }
}

void cf__coro_stats_get(cf__coro_stats *out)
{
    pthread_once(&pool_once, pool_init);
    cf__lock_acquire(&pool.lock);
    *out = pool.stats;
    out->guard = pool.guard;
    cf__lock_release(&pool.lock);
}

cf__coro_guard cf__coro_guard_set(cf__coro_guard guard)
{
    pthread_once(&pool_once, pool_init);
    cf__lock_acquire(&pool.lock);
    cf__coro_guard old = pool.guard;
    pool.guard = guard;
    cf__lock_release(&pool.lock);
    return old;
}

/* ---- coroutines ---- */

static size_t stack_bytes(const cf__coro *co)
{
    return (size_t)((const char *)co - co->lo);
}

static void check_canary(const cf__coro *co)
{
    uint64_t word;
    memcpy(&word, co->lo, sizeof word);
    if (word != (CANARY ^ (uintptr_t)co->lo))
        misuse("coroutine stack overflow: the canary at the bottom of its stack was overwritten "
               "(give it a larger stack)");
}

/* Leaves the coroutine for its resumer; returns when it is resumed again (unless final). */
static void switch_out(cf__coro *co, bool final)
{
    if (co->canary)
        check_canary(co);
#ifdef CORO_ASAN
    void *fake = NULL;
    /* NULL on the last switch lets ASan free the coroutine's fake stack. */
    __sanitizer_start_switch_fiber(final ? NULL : &fake, co->back_lo, co->back_size);
#endif
#ifdef CORO_TSAN
    __tsan_switch_to_fiber(co->back_fiber, 0);
#endif
    cf__coro_ctx_switch(&co->ctx, &co->back);
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake, &co->back_lo, &co->back_size);
#endif
    (void) final;
}

static void coro_main(void *p)
{
    cf__coro *co = p;
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(NULL, &co->back_lo, &co->back_size);
#endif
    co->fn(co->arg);
    co->state = CORO_DONE;
    switch_out(co, true);
}

bool cf__coro_stack_size_valid(size_t stack_size)
{
    return stack_size <= STACK_MAX;
}

int cf__coro_new(cf__coro **out, cf__coro_fn fn, void *arg, size_t stack_size)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!fn || !cf__coro_stack_size_valid(stack_size))
        return CF_EINVAL;
    pthread_once(&pool_once, pool_init);
    size_t slot_size = slot_size_for(stack_size);
    slot_ref s;
    cf__lock_acquire(&pool.lock);
    int rc = stack_take(slot_size, &s);
    cf__lock_release(&pool.lock);
    if (rc)
        return rc;

    char *base = s.a->base + (size_t)s.i * slot_size;
    cf__coro *co = (cf__coro *)(base + slot_size - HEADER);
    *co = (cf__coro){
        .fn = fn,
        .arg = arg,
        .lo = base + page_size,
        .arena = s.a,
        .slot = s.i,
        .state = CORO_READY,
        .canary = s.a->canary,
    };
    /* A reused stack holds its last owner's data: make memcheck flag reads of it. */
    (void)VALGRIND_MAKE_MEM_UNDEFINED(co->lo, stack_bytes(co));
    co->valgrind_id = VALGRIND_STACK_REGISTER(co->lo, (char *)co);
    if (co->canary) {
        uint64_t word = CANARY ^ (uintptr_t)co->lo;
        memcpy(co->lo, &word, sizeof word);
    }
#ifdef CORO_ASAN
    /* What only a parked coroutine points to is reachable, not leaked. */
    __lsan_register_root_region(co->lo, stack_bytes(co));
#endif
#ifdef CORO_TSAN
    co->fiber = __tsan_create_fiber(0);
#endif
    cf__coro_ctx_init(&co->ctx, co->lo, stack_bytes(co), coro_main, co);
    *out = co;
    return 0;
}

bool cf__coro_resume(cf__coro *co)
{
    if (co->state != CORO_READY)
        misuse(co->state == CORO_DONE ? "cf__coro_resume: the coroutine has finished"
                                      : "cf__coro_resume: the coroutine is running");
    co->resumer = current;
    co->state = CORO_RUNNING;
    current = co;
#ifdef CORO_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, co->lo, stack_bytes(co));
#endif
#ifdef CORO_TSAN
    co->back_fiber = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(co->fiber, 0);
#endif
    cf__coro_ctx_switch(&co->back, &co->ctx);
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    current = co->resumer;
    return co->state == CORO_DONE;
}

void cf__coro_yield(void)
{
    cf__coro *co = current;
    if (!co)
        return;
    co->state = CORO_READY;
    switch_out(co, false);
}

cf__coro *cf__coro_current(void)
{
    return current;
}

void cf__coro_free(cf__coro *co)
{
    if (!co)
        return;
    if (co->state == CORO_RUNNING)
        misuse("cf__coro_free: the coroutine is running");
    if (co->canary)
        check_canary(co);
    slot_ref s = {co->arena, co->slot};
    VALGRIND_STACK_DEREGISTER(co->valgrind_id);
#ifdef CORO_TSAN
    __tsan_destroy_fiber(co->fiber);
#endif
#ifdef CORO_ASAN
    __lsan_unregister_root_region(co->lo, stack_bytes(co));
    /* A coroutine freed while suspended leaves its frames' redzones poisoned. */
    __asan_unpoison_memory_region(co->lo, stack_bytes(co));
#endif
    stack_give(s);
}

void cf__coro_stack_bounds(const cf__coro *co, void **lo, size_t *size)
{
    *lo = co->lo;
    *size = stack_bytes(co);
}

const char *cf__coro_backend(void)
{
    return CF__CORO_BACKEND;
}
