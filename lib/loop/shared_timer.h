/* Deadlines of waits that are usually stopped before they pass (a socket read's idle timeout, a
 * send's timeout), shared by the waits with the same timeout. Not installed.
 *
 * A server arms one such deadline per wait and stops it a moment later when the data comes: with
 * a timer each, every wait costs a heap insertion and, later, a removal (about 400 instructions
 * per request in examples/http_server). Waits with the same duration mostly expire in the order
 * they were armed, so they go into a list kept in deadline order, nearly always at its end, and
 * one timer serves the whole list: it is armed for the list's head, left alone when an entry is
 * stopped (it then fires early, finds the new head not due and re-arms once for it), and re-armed
 * only when it fires.
 * Arming and stopping are then a few pointer writes. A few durations get a list each; others, and
 * entries armed when every list is taken, get a timer of their own. Loop thread only. */
#ifndef CFUTURES_LOOP_SHARED_TIMER_H
#define CFUTURES_LOOP_SHARED_TIMER_H

#include "core/list.h"
#include "loop/loop_internal.h"

typedef struct cf__shared_timer cf__shared_timer;

/* Called on the loop thread once the deadline passed; the entry is already stopped. */
typedef void (*cf__shared_timer_fn)(cf_loop *loop, cf__shared_timer *d);

struct cf__shared_timer {
    cf__dlink link;        /* in its group's list, in deadline order */
    int64_t when;          /* CLOCK_MONOTONIC ns */
    void *group;           /* the list it is on, or NULL */
    cf_loop_handle *timer; /* its own timer when it is on no list (one reference is ours) */
    cf__shared_timer_fn expire;
    bool armed;
};

/* Arms `d` to call `expire` at `when` (ns). `duration` is the timeout `when` was computed from
 * (entries of equal duration share a timer); 0 gives the entry a timer of its own. Returns 0 or
 * CF_ENOMEM (nothing armed). */
int cf__shared_timer_arm(cf_loop *loop, cf__shared_timer *d, int64_t when, int64_t duration,
                         cf__shared_timer_fn expire);

/* Disarms `d` if it is armed (no-op otherwise). */
void cf__shared_timer_stop(cf_loop *loop, cf__shared_timer *d);

/* Called by close once no handle can run: every entry must have been stopped; frees the lists. */
void cf__loop_shared_timers_close(cf_loop *loop);

#endif
