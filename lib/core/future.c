/* Futures: the state machine, waiting, done-callbacks and hooks, reference counting.
 *
 * One 32-bit atomic word holds the state and flags. Readers (done, result after completion)
 * need only an acquire load. Transitions use CAS loops, so set_running (which never makes a
 * future done) needs no lock; the small lock serialises only the move to a done state against
 * hook registration, which is what makes "a hook fires exactly once, or is refused because the
 * future is already done" hold. Waiters sleep on the state word itself (futex) and announce
 * themselves with CF__F_WAITERS, so a completion with nobody waiting makes no system call. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "core/trace.h"
#include "core/list.h"

/* ---- allocation ----
 *
 * Futures often flow between threads: allocated by a submitter, last released on a worker. A
 * per-thread cache alone would then starve one side and overflow the other, so caches exchange
 * fixed-size batches with a small global depot (Bonwick's magazines): a full cache hands half
 * of itself to the depot, an empty cache takes a batch back. Both are O(1) under the depot
 * lock, and the depot is bounded so idle memory stays bounded. */

enum { CACHE_MAX = 256, BATCH = CACHE_MAX / 2, DEPOT_MAX = 64 };

typedef struct future_cache {
    cf_future *head;
    unsigned count;
    bool registered; /* the thread-exit destructor is armed */
    bool closed;     /* the thread is exiting: stop caching */
} future_cache;

static _Thread_local future_cache cache CF__TLS_FAST;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static struct {
    cf__lock lock;
    unsigned count;
    cf_future *batches[DEPOT_MAX]; /* each a list of BATCH futures linked through next */
} depot;

static void free_list(cf_future *f)
{
    while (f) {
        cf_future *next = cf__next(f);
        cf__free(f);
        f = next;
    }
}

static void cache_drain(void *unused)
{
    (void)unused;
    cache.closed = true;
    free_list(cache.head);
    cache.head = NULL;
    cache.count = 0;
}

/* A child of fork() must not find the depot lock held by a thread that does not exist there. */
static void depot_prefork(void)
{
    cf__lock_acquire(&depot.lock);
}

static void depot_postfork(void)
{
    cf__lock_release(&depot.lock);
}

static void cache_setup(void)
{
    pthread_key_create(&cache_key, cache_drain);
    static const cf__fork_hooks depot_hooks = {depot_prefork, depot_postfork, depot_postfork};
    cf__fork_hooks_install(CF__FORK_LEVEL_FUTURES, &depot_hooks);
}

static cf_future *depot_get(void)
{
    cf_future *batch = NULL;
    cf__lock_acquire(&depot.lock);
    if (depot.count)
        batch = depot.batches[--depot.count];
    cf__lock_release(&depot.lock);
    return batch;
}

static void depot_put(cf_future *batch)
{
    cf__lock_acquire(&depot.lock);
    bool kept = depot.count < DEPOT_MAX;
    if (kept)
        depot.batches[depot.count++] = batch;
    cf__lock_release(&depot.lock);
    if (!kept)
        free_list(batch);
}

/* Arms the thread-exit destructor before the cache first owns anything, whichever way the
 * memory arrives (a free, or a batch taken from the depot). */
static void cache_register(void)
{
    if (!cache.registered) {
        pthread_once(&cache_once, cache_setup);
        pthread_setspecific(cache_key, &cache);
        cache.registered = true;
    }
}

static void cache_put(cf_future *f)
{
    if (cache.closed) {
        cf__free(f);
        return;
    }
    cache_register();
    if (cache.count == CACHE_MAX) {
        /* Hand the oldest half to the depot. */
        cf_future *last_kept = cache.head;
        for (unsigned i = 1; i < CACHE_MAX - BATCH; i++)
            last_kept = cf__next(last_kept);
        depot_put(cf__next(last_kept));
        cf__set_next(last_kept, NULL);
        cache.count -= BATCH;
    }
    cf__set_next(f, cache.head);
    cache.head = f;
    cache.count++;
}

static cf_future *cache_get(void)
{
    if (!cache.head && !cache.closed) {
        cache_register();
        cache.head = depot_get();
        cache.count = cache.head ? BATCH : 0;
    }
    cf_future *f = cache.head;
    if (f) {
        cache.head = cf__next(f);
        cache.count--;
    }
    return f;
}

void cf__future_init(cf_future *f, uint32_t refs, const cf__future_ops *ops)
{
    memset(f, 0, sizeof(*f));
    atomic_init(&f->state, CF__S_PENDING);
    atomic_init(&f->refs, refs);
    f->ops = ops;
}

cf_future *cf__future_alloc(uint32_t refs)
{
    cf_future *f = cf__fault(CF__FAULT_ALLOC) ? NULL : cache_get();
    if (!f) {
        f = cf__malloc(sizeof(*f));
        if (!f)
            return NULL;
    }
    cf__future_init(f, refs, NULL);
    return f;
}

int cf_future_new(cf_future **out)
{
    if (!out)
        return CF_EINVAL;
    *out = cf__future_alloc(1);
    return *out ? 0 : CF_ENOMEM;
}

cf_future *cf_future_ref(cf_future *f)
{
    if (f) {
        uint32_t old = atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
        CF__ASSERT(old > 0); /* a reference to a freed future */
    }
    return f;
}

static void future_destroy(cf_future *f)
{
    uint32_t s = atomic_load_explicit(&f->state, memory_order_relaxed);
    if ((s & CF__S_MASK) == CF__S_FINISHED && !(s & CF__F_FAILED) && f->dtor && f->value)
        f->dtor(f->value);
    cf__free(f->message);
    cf__task_arg_release(f);
    if (f->ops && f->ops->release)
        f->ops->release(f);
    else
        cache_put(f);
}

void cf__future_discard(cf_future *f)
{
    atomic_store_explicit(&f->refs, 1, memory_order_relaxed);
    cf_future_unref(f);
}

void cf_future_unref(cf_future *f)
{
    if (!f)
        return;
    uint32_t old = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
    CF__ASSERT(old > 0); /* more unrefs than references */
    if (old == 1)
        future_destroy(f);
}

/* ---- state transitions ---- */

/* Replaces the state bits (keeping the flags) and returns the previous word. */
static uint32_t set_state(cf_future *f, uint32_t bits)
{
    uint32_t old = atomic_load_explicit(&f->state, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&f->state, &old, (old & ~CF__S_MASK) | bits,
                                                  memory_order_acq_rel, memory_order_relaxed))
        ;
    return old;
}

/* Fires hooks oldest first. Each hook may free itself, so read `next` before firing. */
static void fire_hooks(cf_future *f, cf__hook *newest_first)
{
    cf__hook *oldest_first = CF__CHAIN_REVERSE(newest_first, cf__hook, next);
    while (oldest_first) {
        cf__hook *h = oldest_first;
        oldest_first = h->next;
        h->fire(h, f);
    }
}

/* Called with the lock held, once the state word has become done (its previous value is
 * `old`): releases the lock, then wakes sleepers and fires hooks outside it. */
static void finish_transition(cf_future *f, uint32_t old)
{
    CF__ASSERT_LOCK_HELD(&f->lock);
    /* Only PENDING or RUNNING may become done, and only once. */
    CF__ASSERT(!cf__state_done(old));
    CF__ASSERT(cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed)));
    cf__hook *hooks = f->hooks;
    f->hooks = NULL;
    cf__lock_release(&f->lock);
    if (old & CF__F_WAITERS)
        cf__futex_wake(&f->state, INT_MAX);
    fire_hooks(f, hooks);
}

int cf__future_finish_then(cf_future *f, const cf__outcome *o, bool bytes, void (*released)(void *),
                           void *ctx)
{
    cf__lock_acquire(&f->lock);
    if (cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        cf__lock_release(&f->lock);
        if (released)
            released(ctx);
        return CF_EINVALSTATE;
    }
    uint32_t bits = CF__S_FINISHED;
    if (o->rc) {
        f->err = o->rc;
        f->message = o->message;
        bits |= CF__F_FAILED;
    } else {
        f->value = o->value;
        f->len = o->len;
        f->dtor = bytes ? cf__free : o->dtor;
        if (bytes)
            bits |= CF__F_RESULT_BYTES;
    }
    /* Decided under the lock, so no hook can be added between the test and the transition. */
    bool hooked = f->hooks != NULL;
    if (released && !hooked)
        released(ctx);
    finish_transition(f, set_state(f, bits));
    if (released && hooked)
        released(ctx);
    return 0;
}

int cf__future_finish(cf_future *f, const cf__outcome *o, bool bytes)
{
    return cf__future_finish_then(f, o, bytes, NULL, NULL);
}

bool cf__future_cancel_plain(cf_future *f)
{
    uint32_t s = cf__future_load(f);
    if ((s & CF__S_MASK) != CF__S_PENDING)
        return (s & CF__S_MASK) == CF__S_CANCELLED;
    cf__lock_acquire(&f->lock);
    s = atomic_load_explicit(&f->state, memory_order_relaxed);
    /* A CAS, not a store: set_running may move PENDING to RUNNING without the lock. */
    while ((s & CF__S_MASK) == CF__S_PENDING) {
        if (atomic_compare_exchange_weak_explicit(&f->state, &s,
                                                  (s & ~CF__S_MASK) | CF__S_CANCELLED,
                                                  memory_order_acq_rel, memory_order_relaxed)) {
            CF__PROBE1(future__cancel, f);
            finish_transition(f, s);
            return true;
        }
    }
    cf__lock_release(&f->lock);
    return (s & CF__S_MASK) == CF__S_CANCELLED;
}

bool cf__future_copy_outcome(cf_future *dest, cf_future *src)
{
    if (cf__state_done(cf__future_load(dest)))
        return false;
    uint32_t s = cf__future_load(src);
    if ((s & CF__S_MASK) == CF__S_CANCELLED)
        return cf__future_cancel_plain(dest);
    if (s & CF__F_FAILED) {
        cf__outcome o = {.rc = src->err, .message = src->message ? cf__strdup(src->message) : NULL};
        if (cf__future_finish(dest, &o, false) == 0)
            return true;
        cf__free(o.message);
        return false;
    }
    bool bytes = s & CF__F_RESULT_BYTES;
    cf__outcome o = {.value = src->value, .len = src->len};
    if (cf__future_finish(dest, &o, bytes) != 0)
        return false;
    /* The value is borrowed from src (kept alive by dest's reference on it): finish gave a
     * bytes result cf__free as destructor. Nobody reads dtor before the last unref, which
     * cannot happen while the caller holds its reference. */
    dest->dtor = NULL;
    return true;
}

bool cf_future_cancel(cf_future *f)
{
    if (!f)
        return false;
    if (f->ops && f->ops->cancel)
        return f->ops->cancel(f);
    return cf__future_cancel_plain(f);
}

int cf_future_set_running_or_notify_cancel(cf_future *f)
{
    if (!f)
        return CF_EINVAL;
    uint32_t s = atomic_load_explicit(&f->state, memory_order_acquire);
    for (;;) {
        switch (s & CF__S_MASK) {
        case CF__S_PENDING:
            if (atomic_compare_exchange_weak_explicit(&f->state, &s,
                                                      (s & ~CF__S_MASK) | CF__S_RUNNING,
                                                      memory_order_acq_rel, memory_order_acquire))
                return 1;
            break;
        case CF__S_CANCELLED:
            return 0;
        default:
            return CF_EINVALSTATE;
        }
    }
}

int cf_future_set_result(cf_future *f, void *value, cf_dtor dtor)
{
    if (!f)
        return CF_EINVAL;
    /* A task submitted with its result destructor (cf_executor_submit_dtor) keeps it when an
     * executor implementation completes it with none: only the submitter knew it. */
    if (!dtor && (cf__future_load(f) & CF__F_TASK_DTOR))
        dtor = f->dtor;
    cf__outcome o = {.value = value, .dtor = dtor};
    return cf__future_finish(f, &o, false);
}

int cf_future_set_result_bytes(cf_future *f, const void *data, size_t len)
{
    if (!f || (!data && len))
        return CF_EINVAL;
    if (cf__state_done(cf__future_load(f)))
        return CF_EINVALSTATE;
    /* One byte more than asked, so that an empty result still has a distinct buffer (and no
     * length wraps around to a tiny allocation). */
    void *copy = len < SIZE_MAX ? cf__malloc(len + 1) : NULL;
    if (!copy)
        return CF_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    cf__outcome o = {.value = copy, .len = len};
    int rc = cf__future_finish(f, &o, true);
    if (rc)
        cf__free(copy);
    return rc;
}

int cf_future_set_result_bytes_owned(cf_future *f, void *data, size_t len)
{
    if (!f || (!data && len))
        return CF_EINVAL;
    cf__outcome o = {.value = data, .len = len};
    return cf__future_finish(f, &o, true);
}

int cf_future_set_exception(cf_future *f, int code, const char *message)
{
    if (!f || code == 0)
        return CF_EINVAL;
    if (cf__state_done(cf__future_load(f)))
        return CF_EINVALSTATE;
    cf__outcome o = {.rc = code, .message = message ? cf__strdup(message) : NULL};
    int rc = cf__future_finish(f, &o, false);
    if (rc)
        cf__free(o.message);
    return rc;
}

/* ---- queries ---- */

bool cf_future_cancelled(const cf_future *f)
{
    return f && (cf__future_load(f) & CF__S_MASK) == CF__S_CANCELLED;
}

bool cf_future_running(const cf_future *f)
{
    return f && (cf__future_load(f) & CF__S_MASK) == CF__S_RUNNING;
}

bool cf_future_done(const cf_future *f)
{
    return f && cf__state_done(cf__future_load(f));
}

cf_future_state cf_future_get_state(const cf_future *f)
{
    return f ? (cf_future_state)(cf__future_load(f) & CF__S_MASK) : CF_FUTURE_PENDING;
}

/* Waiting first spins for a short window, because on a VM a futex wake-up costs 7-17 us while a
 * hot worker often finishes within a microsecond. The window adapts per thread, like the thread
 * pool's spinner: a sleep that ended soon shows a gap a longer spin would have bridged, so the
 * window grows to cover twice that gap; a spin that ends in a sleep anyway decays it by a quarter,
 * so a thread whose waits are long converges to not spinning. */
#define WAIT_SPIN_MAX_NS 20000

static _Thread_local int64_t wait_spin_ns CF__TLS_FAST = WAIT_SPIN_MAX_NS / 4;

static void wait_spin_missed(void)
{
    wait_spin_ns -= wait_spin_ns / 4;
}

static void wait_spin_gap(int64_t gap_ns)
{
    int64_t want = 2 * gap_ns < WAIT_SPIN_MAX_NS ? 2 * gap_ns : WAIT_SPIN_MAX_NS;
    if (want > wait_spin_ns)
        wait_spin_ns = want;
}

/* Spins until the future is done or the window (or the deadline) passes. */
static bool spin_until_done(cf_future *f, int64_t start, int64_t deadline_ns)
{
    int64_t end = start + wait_spin_ns;
    if (end > deadline_ns)
        end = deadline_ns;
    for (unsigned i = 1;; i++) {
        if (cf__state_done(cf__future_load(f)))
            return true;
        cf__spin_step(i);
        if ((i & 63) == 0 && cf__now_ns() > end)
            return false;
    }
}

static int sleep_until_done(cf_future *f, int64_t deadline_ns)
{
    uint32_t s = cf__future_load(f);
    while (!cf__state_done(s)) {
        if (!(s & CF__F_WAITERS)) {
            if (!atomic_compare_exchange_weak_explicit(&f->state, &s, s | CF__F_WAITERS,
                                                       memory_order_acq_rel, memory_order_acquire))
                continue;
            s |= CF__F_WAITERS;
        }
        if (cf__futex_wait(&f->state, s, deadline_ns) == CF_ETIMEDOUT)
            return cf__state_done(cf__future_load(f)) ? 0 : CF_ETIMEDOUT;
        s = cf__future_load(f);
    }
    return 0;
}

int cf__future_wait(cf_future *f, int64_t deadline_ns)
{
    if (cf__state_done(cf__future_load(f)))
        return 0;
    int64_t start = cf__now_ns();
    if (start >= deadline_ns)
        return CF_ETIMEDOUT;
    if (wait_spin_ns > 0) {
        if (spin_until_done(f, start, deadline_ns))
            return 0;
        wait_spin_missed();
    }
    int64_t slept_at = cf__now_ns();
    int rc = sleep_until_done(f, deadline_ns);
    int64_t gap = cf__now_ns() - slept_at;
    if (rc == 0 && gap < WAIT_SPIN_MAX_NS)
        wait_spin_gap(gap + (slept_at - start));
    return rc;
}

/* Waits for the future and returns its final state word, or a negative error. */
static int64_t wait_final(cf_future *f, double timeout)
{
    if (!f || isnan(timeout))
        return CF_EINVAL;
    uint32_t s = cf__future_load(f);
    if (!cf__state_done(s)) {
        int64_t deadline;
        cf__deadline(timeout, &deadline);
        int rc = cf__future_wait(f, deadline);
        if (rc)
            return rc;
        s = cf__future_load(f);
    }
    return s;
}

static int outcome_code(uint32_t s)
{
    if ((s & CF__S_MASK) == CF__S_CANCELLED)
        return CF_ECANCELLED;
    return (s & CF__F_FAILED) ? CF_ETASK : 0;
}

int cf_future_result(void **out, cf_future *f, double timeout)
{
    int64_t s = wait_final(f, timeout);
    if (s < 0)
        return (int)s;
    int rc = outcome_code((uint32_t)s);
    if (out)
        *out = rc ? NULL : f->value;
    return rc;
}

int cf_future_result_bytes(const void **data, size_t *len, cf_future *f, double timeout)
{
    int64_t s = wait_final(f, timeout);
    if (s < 0)
        return (int)s;
    int rc = outcome_code((uint32_t)s);
    if (rc == 0 && !(s & CF__F_RESULT_BYTES))
        rc = CF_EINVAL;
    if (data)
        *data = rc ? NULL : f->value;
    if (len)
        *len = rc ? 0 : f->len;
    return rc;
}

int cf_future_exception(int *code, const char **message, cf_future *f, double timeout)
{
    int64_t s = wait_final(f, timeout);
    if (s < 0)
        return (int)s;
    if ((s & CF__S_MASK) == CF__S_CANCELLED)
        return CF_ECANCELLED;
    bool failed = s & CF__F_FAILED;
    if (code)
        *code = failed ? f->err : 0;
    if (message)
        *message = failed ? f->message : NULL;
    return 0;
}

/* ---- the caller's data ---- */

void cf_future_set_data(cf_future *f, void *data)
{
    if (!f)
        return;
    atomic_store_explicit(&f->user_data, data, memory_order_relaxed);
    /* The flag publishes the pointer: a reader that sees it (acquire) sees the store above. */
    atomic_fetch_or_explicit(&f->state, CF__F_DATA, memory_order_release);
}

void *cf_future_get_data(const cf_future *f)
{
    if (!f || !(cf__future_load(f) & CF__F_DATA))
        return NULL;
    return atomic_load_explicit(&((cf_future *)f)->user_data, memory_order_relaxed);
}

/* ---- hooks and done-callbacks ---- */

int cf__future_add_hook(cf_future *f, cf__hook *hook)
{
    cf__lock_acquire(&f->lock);
    if (cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        cf__lock_release(&f->lock);
        return 1;
    }
    hook->next = f->hooks;
    f->hooks = hook;
    cf__lock_release(&f->lock);
    return 0;
}

bool cf__future_remove_hook(cf_future *f, cf__hook *hook)
{
    cf__lock_acquire(&f->lock);
    cf__hook **pp = &f->hooks;
    while (*pp && *pp != hook)
        pp = &(*pp)->next;
    bool found = *pp != NULL;
    if (found)
        *pp = hook->next;
    cf__lock_release(&f->lock);
    return found;
}

typedef struct user_callback {
    cf__hook hook;
    cf_done_cb cb;
    void *data;
} user_callback;

static void deliver_callback(cf_future *f, cf_done_cb cb, void *data)
{
    if (f->ops && f->ops->schedule_callback)
        f->ops->schedule_callback(f, cb, data);
    else
        cb(f, data);
}

static void user_callback_fire(cf__hook *hook, cf_future *f)
{
    user_callback *u = (user_callback *)hook;
    cf_done_cb cb = u->cb;
    void *data = u->data;
    cf__free(u);
    deliver_callback(f, cb, data);
}

int cf_future_add_done_callback(cf_future *f, cf_done_cb cb, void *data)
{
    if (!f || !cb)
        return CF_EINVAL;
    if (!cf__state_done(cf__future_load(f))) {
        user_callback *u = cf__malloc(sizeof(*u));
        if (!u)
            return CF_ENOMEM;
        *u = (user_callback){.hook.fire = user_callback_fire, .cb = cb, .data = data};
        if (cf__future_add_hook(f, &u->hook) == 0)
            return 0;
        cf__free(u);
    }
    deliver_callback(f, cb, data);
    return 0;
}
