/* Waiting on many futures from the loop: cf_loop_wait() (asyncio.wait) as a loop future, its
 * coroutine form cf_await_many(), and the cf_loop_as_completed iterator.
 *
 * Both watch the futures themselves with loop waiters (a hook that posts an embedded handle to
 * the loop when its future is done, from whichever thread completes it), so futures of
 * executors or of other loops need no wrapper, and nothing is allocated per completion. Each
 * watching waiter and each pending timer holds a reference on its owner, released when its
 * handle runs or is dropped by a closing loop, so an owner released early lives exactly as long
 * as the loop may still touch it. */
#include <math.h>
#include <stdlib.h>

#include "loop/loop_internal.h"

static bool failed(const cf_future *f)
{
    uint32_t s = cf__future_load(f);
    return (s & CF__S_MASK) == CF__S_FINISHED && (s & CF__F_FAILED);
}

static bool condition_holds(cf_return_when when, size_t ndone, size_t n, bool any_failed)
{
    return ndone == n || (when == CF_FIRST_COMPLETED && ndone > 0) ||
           (when == CF_FIRST_EXCEPTION && any_failed);
}

/* Common argument checks (the loop's are the caller's). */
static int check_futures(cf_future *const *fs, size_t n)
{
    if (!fs || n == 0 || n > (SIZE_MAX >> 8))
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    return 0;
}

/* ---- cf_loop_wait ---- */

typedef struct loop_wait loop_wait;

typedef struct wait_slot {
    cf__loop_waiter waiter; /* on fs[index] */
    loop_wait *w;
    size_t index;
    bool watched; /* set once at creation: the future was pending then */
} wait_slot;

struct loop_wait {
    cf__loop_future lf;
    cf_loop_handle *timer;
    cf_return_when when;
    size_t n, ndone;
    cf_future **fs; /* one reference each */
    wait_slot slots[];
};

/* Unhooks every slot still watching (the caller holds a reference). Any thread: a slot that
 * cannot be unhooked has fired, and its handle drops its reference where it runs or is
 * dropped. Unhooking also breaks the cycle with a future that will never complete. */
static void wait_unwatch(loop_wait *w)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->slots[i].watched && cf__loop_waiter_unwatch(&w->slots[i].waiter, w->fs[i]))
            cf_future_unref(&w->lf.base);
}

/* The same and the timer (loop thread, open loop). */
static void wait_disarm(loop_wait *w)
{
    if (cf__loop_timer_cancel(&w->timer))
        cf_future_unref(&w->lf.base);
    wait_unwatch(w);
}

static void wait_finish(loop_wait *w)
{
    if (cf_future_set_result(&w->lf.base, NULL, NULL) == 0)
        wait_disarm(w);
}

/* The closed loop can never finish it: it ends cancelled, and lets go of the rest. */
static void wait_abandon(loop_wait *w)
{
    if (cf__future_cancel_plain(&w->lf.base))
        wait_unwatch(w);
}

static void wait_slot_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    wait_slot *slot = h->data;
    loop_wait *w = slot->w;
    if (!cf_future_done(&w->lf.base)) {
        w->ndone++;
        if (condition_holds(w->when, w->ndone, w->n, failed(w->fs[slot->index])))
            wait_finish(w);
    }
    cf_future_unref(&w->lf.base);
}

static void wait_slot_drop(cf_loop_handle *h)
{
    wait_slot *slot = h->data;
    wait_abandon(slot->w);
    cf_future_unref(&slot->w->lf.base);
}

static const cf__handle_kind wait_slot_kind = {.run = wait_slot_run, .drop = wait_slot_drop};

static void wait_timer_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    loop_wait *w = h->data;
    cf__loop_timer_fired(&w->timer, h);
    wait_finish(w); /* timed out: asyncio.wait returns the split, it does not fail */
    cf_future_unref(&w->lf.base);
}

static void wait_timer_drop(cf_loop_handle *h)
{
    loop_wait *w = h->data;
    cf__loop_timer_fired(&w->timer, h);
    wait_abandon(w);
    cf_future_unref(&w->lf.base);
}

static const cf__handle_kind wait_timer_kind = {.run = wait_timer_run, .drop = wait_timer_drop};

static bool wait_cancel(cf_future *f)
{
    loop_wait *w = (loop_wait *)f;
    if (!cf__future_cancel_plain(f))
        return false;
    /* The watchers belong to the loop thread; from elsewhere they fire later and find the
     * future done. The futures waited on are never cancelled (asyncio.wait). */
    if (cf__loop_on_thread(w->lf.loop) && !w->lf.loop->closed)
        wait_disarm(w);
    return true;
}

static void wait_release(cf_future *f)
{
    loop_wait *w = (loop_wait *)f;
    for (size_t i = 0; i < w->n; i++)
        cf_future_unref(w->fs[i]);
    cf__loop_future_free(&w->lf);
}

static const cf__future_ops wait_ops = {
    .schedule_callback = cf__loop_schedule_callback,
    .cancel = wait_cancel,
    .release = wait_release,
};

int cf_loop_wait(cf_future **out, cf_loop *loop, cf_future *const *fs, size_t n,
                 cf_return_when when, double timeout)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (check_futures(fs, n) || isnan(timeout) ||
        (when != CF_ALL_COMPLETED && when != CF_FIRST_COMPLETED && when != CF_FIRST_EXCEPTION))
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    loop_wait *w = cf__calloc(1, sizeof(*w) + n * (sizeof(wait_slot) + sizeof(cf_future *)));
    if (!w)
        return CF_ENOMEM;
    w->fs = (cf_future **)(w->slots + n);
    w->n = n;
    w->when = when;
    bool any_failed = false;
    for (size_t i = 0; i < n; i++) {
        w->fs[i] = cf_future_ref(fs[i]);
        if (cf_future_done(fs[i])) {
            w->ndone++;
            any_failed |= failed(fs[i]);
        }
    }
    cf__loop_future_init(&w->lf, loop, 1, &wait_ops);
    cf_future *f = &w->lf.base;
    if (condition_holds(when, w->ndone, n, any_failed) || timeout == 0) {
        cf_future_set_result(f, NULL, NULL);
        *out = f;
        return 0;
    }
    if (timeout > 0) {
        w->timer = cf__loop_timer_new(loop, &wait_timer_kind, w, cf__deadline_after(timeout));
        if (!w->timer) {
            cf_future_unref(f);
            return CF_ENOMEM;
        }
        cf_future_ref(f);
    }
    for (size_t i = 0; i < n; i++) {
        if (cf_future_done(w->fs[i]))
            continue; /* counted above */
        wait_slot *slot = &w->slots[i];
        slot->w = w;
        slot->index = i;
        slot->watched = true;
        cf_future_ref(f);
        cf__loop_waiter_init(&slot->waiter, loop, &wait_slot_kind, slot);
        cf__loop_waiter_watch(&slot->waiter, w->fs[i]);
    }
    *out = f;
    return 0;
}

int cf_await_many(size_t *n_done, bool *done, cf_future *const *fs, size_t n, cf_return_when when,
                  double timeout)
{
    if (n_done)
        *n_done = 0;
    cf_future *task = cf_current_task();
    if (!task)
        return CF_EINVALSTATE;
    cf_future *w;
    int rc = cf_loop_wait(&w, cf__future_loop(task), fs, n, when, timeout);
    if (rc)
        return rc;
    rc = cf_await(NULL, w);
    cf_future_unref(w);
    if (rc)
        return rc;
    size_t count = 0;
    bool any_failed = false;
    for (size_t i = 0; i < n; i++) {
        bool d = cf_future_done(fs[i]);
        if (done)
            done[i] = d;
        count += d;
        any_failed |= d && failed(fs[i]);
    }
    if (n_done)
        *n_done = count;
    return condition_holds(when, count, n, any_failed) ? 0 : CF_ETIMEDOUT;
}

/* ---- as_completed ---- */

typedef struct ac_slot {
    cf__loop_waiter waiter; /* on fs[index] */
    cf_loop_as_completed *it;
    size_t index;
    bool watched; /* set once at creation: the future was pending then */
} ac_slot;

struct cf_loop_as_completed {
    cf_loop *loop;
    cf_loop_handle *timer;
    cf__wait_list waiters; /* the task in next() */
    /* The user's, one per watching slot, one for the timer. Atomic: a completion posted to a
     * closed loop is dropped on the thread that completed the future. */
    _Atomic uint32_t refs;
    size_t n;        /* distinct futures */
    size_t nready;   /* completed, in ready[0..nready) */
    size_t nyielded; /* ready[0..nyielded) were yielded */
    bool timed_out;
    size_t *ready;   /* indices, in completion order */
    cf_future **fs;  /* one reference each */
    ac_slot slots[]; /* one per distinct future */
};

static void ac_release(cf_loop_as_completed *it)
{
    if (atomic_fetch_sub_explicit(&it->refs, 1, memory_order_acq_rel) != 1)
        return;
    cf_loop *loop = it->loop;
    for (size_t i = 0; i < it->n; i++)
        cf_future_unref(it->fs[i]);
    cf__free(it);
    cf__loop_unref(loop);
}

static void ac_wake(cf_loop_as_completed *it)
{
    if (!cf__wait_list_empty(&it->waiters))
        cf__task_wake(it->waiters.head, 0);
}

static void ac_slot_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    ac_slot *slot = h->data;
    cf_loop_as_completed *it = slot->it;
    it->ready[it->nready++] = slot->index;
    ac_wake(it);
    ac_release(it);
}

static void ac_slot_drop(cf_loop_handle *h)
{
    ac_slot *slot = h->data;
    ac_release(slot->it);
}

static const cf__handle_kind ac_slot_kind = {.run = ac_slot_run, .drop = ac_slot_drop};

static void ac_timer_run(cf_loop *loop, cf_loop_handle *h)
{
    (void)loop;
    cf_loop_as_completed *it = h->data;
    cf__loop_timer_fired(&it->timer, h);
    it->timed_out = true;
    ac_wake(it);
    ac_release(it);
}

static void ac_timer_drop(cf_loop_handle *h)
{
    cf_loop_as_completed *it = h->data;
    cf__loop_timer_fired(&it->timer, h);
    ac_release(it);
}

static const cf__handle_kind ac_timer_kind = {.run = ac_timer_run, .drop = ac_timer_drop};

typedef struct ac_sort {
    cf_future *f;
    size_t index;
} ac_sort;

static int ac_sort_cmp(const void *a, const void *b)
{
    const ac_sort *x = a, *y = b;
    if (x->f != y->f)
        return (uintptr_t)x->f < (uintptr_t)y->f ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Marks in `first` which entries are the first occurrence of their future (O(n log n)).
 * Returns the number of distinct futures, or 0 without memory. */
static size_t distinct(bool *first, cf_future *const *fs, size_t n)
{
    ac_sort *s = cf__malloc(n * sizeof(*s));
    if (!s)
        return 0;
    for (size_t i = 0; i < n; i++)
        s[i] = (ac_sort){fs[i], i};
    qsort(s, n, sizeof(*s), ac_sort_cmp);
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        first[s[i].index] = i == 0 || s[i].f != s[i - 1].f;
        count += first[s[i].index];
    }
    cf__free(s);
    return count;
}

int cf_loop_as_completed_new(cf_loop_as_completed **out, cf_loop *loop, cf_future *const *fs,
                             size_t n, double timeout)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (check_futures(fs, n) || isnan(timeout))
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    bool *first = cf__malloc(n * sizeof(bool));
    size_t m = first ? distinct(first, fs, n) : 0;
    size_t per = sizeof(ac_slot) + sizeof(cf_future *) + sizeof(size_t);
    cf_loop_as_completed *it = m ? cf__calloc(1, sizeof(*it) + m * per) : NULL;
    if (!it) {
        cf__free(first);
        return CF_ENOMEM;
    }
    it->fs = (cf_future **)(it->slots + m);
    it->ready = (size_t *)(it->fs + m);
    it->loop = loop;
    cf__loop_ref(loop);
    atomic_init(&it->refs, 1);
    for (size_t i = 0, j = 0; i < n; i++)
        if (first[i])
            it->fs[j++] = cf_future_ref(fs[i]);
    it->n = m;
    cf__free(first);
    if (timeout >= 0) {
        it->timer = cf__loop_timer_new(loop, &ac_timer_kind, it, cf__deadline_after(timeout));
        if (!it->timer) {
            ac_release(it);
            return CF_ENOMEM;
        }
        atomic_fetch_add(&it->refs, 1);
    }
    /* Those already done come first, in input order; the others as they complete. */
    for (size_t i = 0; i < m; i++) {
        if (cf_future_done(it->fs[i])) {
            it->ready[it->nready++] = i;
            continue;
        }
        ac_slot *slot = &it->slots[i];
        slot->it = it;
        slot->index = i;
        slot->watched = true;
        atomic_fetch_add(&it->refs, 1);
        cf__loop_waiter_init(&slot->waiter, loop, &ac_slot_kind, slot);
        cf__loop_waiter_watch(&slot->waiter, it->fs[i]);
    }
    *out = it;
    return 0;
}

static int ac_take(cf_future **out, cf_loop_as_completed *it)
{
    if (it->nyielded < it->nready) {
        *out = it->fs[it->ready[it->nyielded++]];
        return 0;
    }
    if (it->nyielded == it->n)
        return CF_EOF;
    return it->timed_out ? CF_ETIMEDOUT : CF_EAGAIN;
}

int cf_loop_as_completed_try_next(cf_future **out, cf_loop_as_completed *it)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!it)
        return CF_EINVAL;
    int rc = cf__loop_thread_check(it->loop);
    return rc ? rc : ac_take(out, it);
}

int cf_loop_as_completed_next(cf_future **out, cf_loop_as_completed *it)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!it)
        return CF_EINVAL;
    int rc = cf__task_check(it->loop);
    if (rc)
        return rc;
    if (!cf__wait_list_empty(&it->waiters))
        return CF_EPERM; /* one task iterates */
    while ((rc = ac_take(out, it)) == CF_EAGAIN) {
        cf__wait w = {0};
        rc = cf__task_park(&w, &it->waiters);
        if (rc)
            return rc;
    }
    return rc;
}

size_t cf_loop_as_completed_remaining(const cf_loop_as_completed *it)
{
    return it ? it->n - it->nyielded : 0;
}

int cf_loop_as_completed_free(cf_loop_as_completed *it)
{
    if (!it)
        return 0;
    if (!cf__wait_list_empty(&it->waiters))
        return CF_EINVALSTATE;
    /* (After close the timer was dropped already.) */
    if (cf__loop_timer_cancel(&it->timer))
        ac_release(it);
    /* A waiter that cannot be unhooked any more has fired: its handle releases its reference
     * where it runs or is dropped. */
    for (size_t i = 0; i < it->n; i++)
        if (it->slots[i].watched && cf__loop_waiter_unwatch(&it->slots[i].waiter, it->fs[i]))
            ac_release(it);
    ac_release(it);
    return 0;
}
