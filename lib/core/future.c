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
#include "core/list.h"
#include "core/objpool.h"
#include "core/trace.h"

/* ---- allocation ----
 *
 * Futures often flow between threads: allocated by a submitter, last released on a worker. They
 * come from an object pool (core/objpool.h): thread caches that exchange whole magazines
 * through a depot, over 64 KiB slabs, so a burst of any size never reaches malloc, and each
 * future is one aligned cache line. */

static cf__objpool future_pool = CF__OBJPOOL_INIT(sizeof(cf_future), CF__OBJPOOL_FUTURES);

cf_future *cf__future_alloc(uint32_t refs)
{
    cf_future *f = cf__objpool_alloc(&future_pool);
    if (f)
        cf__future_init(f, refs, NULL);
    return f;
}

void cf__future_pool_stats(cf__objpool_stats *out)
{
    cf__objpool_stats_get(&future_pool, out);
}

void cf__future_pool_flush(void)
{
    cf__objpool_flush(&future_pool);
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

/* Releases what a finished future owns: its message, or its value (unless borrowed). */
static void release_outcome(cf_future *f, uint32_t s)
{
    if ((s & CF__S_MASK) != CF__S_FINISHED)
        return;
    if (s & CF__F_FAILED)
        cf__free(f->message);
    else if (s & CF__F_BORROWED)
        return;
    else if (s & CF__F_RESULT_BLOCK)
        cf__block_release(f->value);
    else if (s & CF__F_RESULT_BYTES)
        cf__free(f->value);
    else if (f->dtor && f->value)
        f->dtor(f->value);
}

static void future_destroy(cf_future *f)
{
    /* Two loads of the state word rather than one kept across the call: the common path then
     * needs no extra saved register (measured: cf_future_unref stays as short as it was). */
    if (CF__UNLIKELY(atomic_load_explicit(&f->state, memory_order_relaxed) & CF__F_DATA))
        cf__future_data_forget(f);
    release_outcome(f, atomic_load_explicit(&f->state, memory_order_relaxed));
    cf__task_arg_release(f);
    if (f->ops && f->ops->release)
        f->ops->release(f);
    else
        cf__objpool_free(&future_pool, f);
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
 * `old`) and `hooks` were taken out of it: releases the lock, then wakes sleepers and fires the
 * hooks outside it. */
static void finish_transition(cf_future *f, uint32_t old, cf__hook *hooks)
{
    CF__ASSERT_LOCK_HELD(&f->lock);
    /* Only PENDING or RUNNING may become done, and only once. */
    CF__ASSERT(!cf__state_done(old));
    CF__ASSERT(cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed)));
    cf__lock_release(&f->lock);
    if (old & CF__F_WAITERS)
        cf__futex_wake(&f->state, INT_MAX);
    fire_hooks(f, hooks);
}

static void user_callback_fire(cf__hook *hook, cf_future *f);

/* Whether a done-callback of the user hangs on the future (lock held). */
static bool has_user_callback(const cf_future *f)
{
    for (const cf__hook *h = f->hooks; h; h = h->next)
        if (h->fire == user_callback_fire)
            return true;
    return false;
}

/* Completes `f` (see cf__future_finish_then); with `quiet`, refuses with CF_EAGAIN, leaving
 * everything as it was, when that would run a done-callback of the user. */
static int finish(cf_future *f, const cf__outcome *o, bool bytes, void (*released)(void *),
                  void *ctx, bool quiet)
{
    cf__lock_acquire(&f->lock);
    if (cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        cf__lock_release(&f->lock);
        if (released)
            released(ctx);
        return CF_EINVALSTATE;
    }
    if (quiet && has_user_callback(f)) {
        cf__lock_release(&f->lock);
        return CF_EAGAIN;
    }
    /* Taken before the outcome overwrites them (they share a word), and under the lock, so no
     * hook can be added between here and the transition. */
    cf__hook *hooks = f->hooks;
    /* The releaser learns the outcome is known before any waiter wakes (so a caller woken by the
     * result and submitting again finds the worker free), unless a done-callback of the user
     * will run on this thread: that may wait for work on the same executor. */
    bool release_late = released && hooks && has_user_callback(f);
    uint32_t bits = CF__S_FINISHED | (o->borrowed ? CF__F_BORROWED : 0);
    if (o->rc) {
        f->err = o->rc;
        f->message = o->message;
        bits |= CF__F_FAILED;
    } else {
        f->value = o->value;
        if (bytes) {
            f->len = o->len;
            /* A shared block (bytes.h) is released by its destructor, not freed. */
            CF__ASSERT(!o->dtor || o->dtor == cf__block_release);
            if (o->dtor)
                bits |= CF__F_RESULT_BLOCK;
            bits |= CF__F_RESULT_BYTES;
        } else {
            f->dtor = o->dtor;
        }
    }
    if (released && !release_late)
        released(ctx);
    finish_transition(f, set_state(f, bits), hooks);
    if (release_late)
        released(ctx);
    return 0;
}

int cf__future_finish_then(cf_future *f, const cf__outcome *o, bool bytes, void (*released)(void *),
                           void *ctx)
{
    return finish(f, o, bytes, released, ctx, false);
}

int cf__future_finish_quiet(cf_future *f, const cf__outcome *o, bool bytes)
{
    return finish(f, o, bytes, NULL, NULL, true);
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
            cf__hook *hooks = f->hooks;
            f->hooks = NULL;
            CF__PROBE1(future__cancel, f);
            finish_transition(f, s, hooks);
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
    /* The value is borrowed from src, which dest's reference keeps alive. */
    bool bytes = s & CF__F_RESULT_BYTES;
    cf__outcome o = {.value = src->value, .len = bytes ? src->len : 0, .borrowed = true};
    return cf__future_finish(dest, &o, bytes) == 0;
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

static _Atomic(cf__wait_help_fn) wait_help;

void cf__wait_help_install(cf__wait_help_fn fn)
{
    atomic_store_explicit(&wait_help, fn, memory_order_release);
}

/* Spins until the future is done or the window (or the deadline) passes, letting an executor
 * use the time (cf__wait_help_install). */
static bool spin_until_done(cf_future *f, int64_t start, int64_t deadline_ns)
{
    int64_t end = start + wait_spin_ns;
    if (end > deadline_ns)
        end = deadline_ns;
    cf__wait_help_fn help = atomic_load_explicit(&wait_help, memory_order_acquire);
    for (unsigned i = 1;; i++) {
        if (cf__state_done(cf__future_load(f)))
            return true;
        if (help)
            help();
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
    if (cf__state_done(atomic_load_explicit(&f->state, memory_order_relaxed))) {
        /* Fired or firing; the hooks' word holds the outcome now. */
        cf__lock_release(&f->lock);
        return false;
    }
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
