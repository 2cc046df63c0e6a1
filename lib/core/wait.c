/* cf_wait: block until a condition over many futures holds, without polling. */
#include <math.h>
#include <sched.h>

#include "core/waiter.h"

int cf__waiter_sleep(cf__waiter *w, uint32_t seen, int64_t deadline)
{
    if (!(seen & CF__WAITER_SLEEPING)) {
        if (!atomic_compare_exchange_strong_explicit(&w->word, &seen, seen | CF__WAITER_SLEEPING,
                                                     memory_order_acq_rel, memory_order_acquire))
            return 0;
        seen |= CF__WAITER_SLEEPING;
    }
    return cf__futex_wait(&w->word, seen, deadline);
}

void cf__waiter_drain(cf__waiter *w, uint32_t unfired)
{
    while (cf__waiter_pending(w) != unfired)
        sched_yield();
}

typedef struct wait_state {
    cf__waiter waiter;
    cf_return_when when;
} wait_state;

typedef struct wait_hook {
    cf__hook hook;
    wait_state *state;
    bool installed;
} wait_hook;

static void wait_hook_fire(cf__hook *hook, cf_future *f)
{
    wait_state *ws = ((wait_hook *)hook)->state;
    bool failed = cf__future_load(f) & CF__F_FAILED;
    bool wake = ws->when == CF_FIRST_COMPLETED || (ws->when == CF_FIRST_EXCEPTION && failed);
    cf__waiter_fired(&ws->waiter, wake);
}

static bool failed_state(uint32_t s)
{
    return (s & CF__S_MASK) == CF__S_FINISHED && (s & CF__F_FAILED);
}

/* Evaluates the condition over the futures as they are now, stopping as soon as it is
 * decided. */
static bool condition_holds(cf_future *const *fs, size_t n, cf_return_when when)
{
    bool all_done = true;
    for (size_t i = 0; i < n; i++) {
        cf__prefetch_ahead(fs, i, n);
        uint32_t s = cf__future_load(fs[i]);
        if (!cf__state_done(s)) {
            if (when == CF_ALL_COMPLETED)
                return false;
            all_done = false;
        } else if (when == CF_FIRST_COMPLETED || (when == CF_FIRST_EXCEPTION && failed_state(s))) {
            return true;
        }
    }
    return all_done;
}

static uint32_t install_hooks(wait_hook *hooks, cf_future *const *fs, size_t n, wait_state *ws)
{
    uint32_t installed = 0;
    for (size_t i = 0; i < n; i++) {
        hooks[i] = (wait_hook){.hook.fire = wait_hook_fire, .state = ws};
        if (!cf__state_done(cf__future_load(fs[i])) &&
            cf__future_add_hook(fs[i], &hooks[i].hook) == 0) {
            hooks[i].installed = true;
            installed++;
        }
    }
    return installed;
}

static void remove_hooks(wait_hook *hooks, cf_future *const *fs, size_t n, wait_state *ws)
{
    uint32_t removed = 0;
    for (size_t i = 0; i < n; i++)
        if (hooks[i].installed && cf__future_remove_hook(fs[i], &hooks[i].hook))
            removed++;
    cf__waiter_drain(&ws->waiter, removed);
}

static void sleep_until(cf_future *const *fs, size_t n, wait_state *ws, int64_t deadline)
{
    while (!condition_holds(fs, n, ws->when)) {
        uint32_t seen = atomic_load_explicit(&ws->waiter.word, memory_order_acquire);
        if (!condition_holds(fs, n, ws->when) &&
            cf__waiter_sleep(&ws->waiter, seen, deadline) == CF_ETIMEDOUT)
            return;
    }
}

/* Fills the outputs and returns whether the condition holds, from the same load of each state:
 * futures keep completing meanwhile, and the return code must agree with the split. */
static bool report(size_t *n_done, bool *done, cf_future *const *fs, size_t n, cf_return_when when)
{
    size_t count = 0;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        cf__prefetch_ahead(fs, i, n);
        uint32_t s = cf__future_load(fs[i]);
        bool d = cf__state_done(s);
        if (done)
            done[i] = d;
        count += d;
        failed |= failed_state(s);
    }
    if (n_done)
        *n_done = count;
    return count == n || (when == CF_FIRST_COMPLETED && count) ||
           (when == CF_FIRST_EXCEPTION && failed);
}

/* ALL_COMPLETED needs no hooks: the condition holds once each future is done, so waiting for
 * each in turn (each wait blocks on that future's own futex) is equivalent, O(n) like the hooks,
 * and spares every completing thread a write to a line the waiter shares. */
static void wait_each(cf_future *const *fs, size_t n, int64_t deadline)
{
    for (size_t i = 0; i < n; i++) {
        cf__prefetch_ahead(fs, i, n);
        if (cf__future_wait(fs[i], deadline) == CF_ETIMEDOUT)
            return;
    }
}

enum { STACK_HOOKS = 16 };

int cf_wait(size_t *n_done, bool *done, cf_future *const *fs, size_t n, cf_return_when when,
            double timeout)
{
    /* n == 0 holds at once for every condition, as Python's wait([]). */
    if ((!fs && n) || n >= CF__WAITER_BIAS || isnan(timeout) ||
        (when != CF_ALL_COMPLETED && when != CF_FIRST_COMPLETED && when != CF_FIRST_EXCEPTION))
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    int64_t deadline;
    cf__deadline(timeout, &deadline);
    if (when == CF_ALL_COMPLETED) {
        wait_each(fs, n, deadline);
    } else if (!condition_holds(fs, n, when) && deadline > cf__now_ns()) {
        wait_hook stack_hooks[STACK_HOOKS];
        wait_hook *hooks = n <= STACK_HOOKS ? stack_hooks : cf__malloc(n * sizeof(*hooks));
        if (!hooks)
            return CF_ENOMEM;
        wait_state ws = {.when = when};
        cf__waiter_init(&ws.waiter);
        cf__waiter_installed(&ws.waiter, install_hooks(hooks, fs, n, &ws));
        sleep_until(fs, n, &ws, deadline);
        remove_hooks(hooks, fs, n, &ws);
        if (hooks != stack_hooks)
            cf__free(hooks);
    }
    return report(n_done, done, fs, n, when) ? 0 : CF_ETIMEDOUT;
}
