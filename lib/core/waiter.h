/* The counting waiter shared by cf_wait() and the as_completed iterator. Not installed.
 *
 * A waiter counts the hooks it has installed that have not fired yet, in one futex word:
 * word = pending * 2 | SLEEPING. Hooks are installed one by one while futures may complete, so
 * the count starts at a large bias and is corrected once installation is over; every party then
 * learns from its own atomic result whether it brought the count to zero.
 *
 * A hook's decrement is its last access to the waiter's memory (the futex wake that may follow
 * is a system call on the address only), so the owner may free the waiter as soon as the count
 * shows that every hook that was not removed has fired. */
#ifndef CFUTURES_WAITER_H
#define CFUTURES_WAITER_H

#include "core/internal.h"

#define CF__WAITER_BIAS     (1u << 30)
#define CF__WAITER_SLEEPING 1u

typedef struct cf__waiter {
    _Atomic uint32_t word;
} cf__waiter;

static inline void cf__waiter_init(cf__waiter *w)
{
    atomic_init(&w->word, CF__WAITER_BIAS * 2);
}

/* After installing `installed` hooks: returns the number still pending. */
static inline uint32_t cf__waiter_installed(cf__waiter *w, uint32_t installed)
{
    uint32_t adjust = (CF__WAITER_BIAS - installed) * 2;
    return (atomic_fetch_sub_explicit(&w->word, adjust, memory_order_acq_rel) - adjust) >> 1;
}

static inline uint32_t cf__waiter_pending(cf__waiter *w)
{
    return atomic_load_explicit(&w->word, memory_order_acquire) >> 1;
}

/* Called by a hook as its last access: one fewer pending. `wake` says whether a sleeping owner
 * should be woken for this event. */
static inline void cf__waiter_fired(cf__waiter *w, bool wake)
{
    uint32_t old = atomic_fetch_sub_explicit(&w->word, 2, memory_order_acq_rel);
    CF__ASSERT((old >> 1) > 0); /* more hooks fired than were installed */
    if ((old & CF__WAITER_SLEEPING) && (wake || (old >> 1) == 1))
        cf__futex_wake(&w->word, 1);
}

/* Sleeps until the word changes from `seen` (a value read with cf__waiter_pending's load),
 * the deadline passes (CF_ETIMEDOUT), or a spurious wake-up (0). The caller re-checks its
 * condition after every return. */
int cf__waiter_sleep(cf__waiter *w, uint32_t seen, int64_t deadline);

/* Waits (briefly: the hooks are mid-fire) until only `unfired` hooks remain pending. */
void cf__waiter_drain(cf__waiter *w, uint32_t unfired);

#endif
