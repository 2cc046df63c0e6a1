/* Deadlines shared by the waits with the same timeout (see shared_timer.h). */
#include "loop/shared_timer.h"

enum { GROUPS = 8 };

typedef struct group {
    int64_t duration; /* of its entries; meaningful while it has any */
    cf__dlink *head, *tail;
    cf_loop_handle *timer; /* armed at or before the head's deadline, or NULL */
    int64_t armed;         /* when the timer is due */
} group;

typedef struct cf__shared_timers {
    group groups[GROUPS];
} cf__shared_timers;

static cf__shared_timer *entry_of(cf__dlink *l)
{
    return CF__CONTAINER_OF(l, cf__shared_timer, link);
}

/* ---- a timer of the entry's own ---- */

static void own_run(cf_loop *loop, cf_loop_handle *h)
{
    cf__shared_timer *d = h->data;
    d->timer = NULL;
    d->armed = false;
    cf__loop_handle_release(loop, h); /* ours */
    d->expire(loop, d);
}

static void own_drop(cf_loop_handle *h)
{
    cf__shared_timer *d = h->data;
    d->timer = NULL;
    cf__loop_handle_release(h->loop, h);
}

static const cf__handle_kind own_kind = {.run = own_run, .drop = own_drop};

/* Starts a timer that references `data` and is referenced by the caller (stored in *timer). */
static int start_timer(cf_loop_handle **timer, cf_loop *loop, const cf__handle_kind *kind,
                       void *data, int64_t when)
{
    cf_loop_handle *h = cf__loop_handle_alloc(loop, kind, NULL, data);
    if (!h)
        return CF_ENOMEM;
    if (cf__loop_timer_start(loop, h, when) != 0) {
        cf__loop_handle_release(loop, h);
        return CF_ENOMEM;
    }
    h->refs++;
    *timer = h;
    return 0;
}

static void stop_timer(cf_loop *loop, cf_loop_handle **timer)
{
    cf_loop_handle *h = *timer;
    *timer = NULL;
    cf__loop_handle_cancel(h);
    cf__loop_handle_release(loop, h);
}

/* ---- groups ---- */

static void group_remove(group *g, cf__shared_timer *d)
{
    if (d->link.prev)
        d->link.prev->next = d->link.next;
    else
        g->head = d->link.next;
    if (d->link.next)
        d->link.next->prev = d->link.prev;
    else
        g->tail = d->link.prev;
    d->link.prev = d->link.next = NULL;
    d->group = NULL;
}

static int group_arm(cf_loop *loop, group *g, int64_t when);

static void group_run(cf_loop *loop, cf_loop_handle *h)
{
    group *g = h->data;
    g->timer = NULL;
    cf__loop_handle_release(loop, h); /* ours */
    int64_t now = cf__now_ns();
    while (g->head && entry_of(g->head)->when <= now) {
        cf__shared_timer *d = entry_of(g->head);
        group_remove(g, d);
        d->armed = false;
        d->expire(loop, d);
    }
    /* Out of memory here, the entries left would never expire: fire them now rather. */
    while (g->head && group_arm(loop, g, entry_of(g->head)->when) != 0) {
        cf__shared_timer *d = entry_of(g->head);
        group_remove(g, d);
        d->armed = false;
        d->expire(loop, d);
    }
}

static void group_drop(cf_loop_handle *h)
{
    group *g = h->data;
    g->timer = NULL;
    cf__loop_handle_release(h->loop, h);
}

static const cf__handle_kind group_kind = {.run = group_run, .drop = group_drop};

/* Makes sure the group's timer fires no later than `when`. */
static int group_arm(cf_loop *loop, group *g, int64_t when)
{
    if (g->timer && g->armed <= when)
        return 0;
    cf_loop_handle *old = g->timer;
    if (start_timer(&g->timer, loop, &group_kind, g, when) != 0) {
        g->timer = old;
        return CF_ENOMEM;
    }
    g->armed = when;
    if (old)
        stop_timer(loop, &old);
    return 0;
}

/* The group for `duration`: the one that has it, else an empty one, else NULL. */
static group *group_for(cf__shared_timers *ds, int64_t duration)
{
    group *empty = NULL;
    for (int i = 0; i < GROUPS; i++) {
        group *g = &ds->groups[i];
        if (g->head && g->duration == duration)
            return g;
        if (!g->head && !empty)
            empty = g;
    }
    if (empty)
        empty->duration = duration;
    return empty;
}

/* Inserts in deadline order, searching from the end: entries of one duration are armed in
 * deadline order, except a call that waits a second time within its first deadline. */
static void group_insert(group *g, cf__shared_timer *d)
{
    cf__dlink *after = g->tail;
    while (after && entry_of(after)->when > d->when)
        after = after->prev;
    d->link.prev = after;
    d->link.next = after ? after->next : g->head;
    if (d->link.next)
        d->link.next->prev = &d->link;
    else
        g->tail = &d->link;
    if (after)
        after->next = &d->link;
    else
        g->head = &d->link;
    d->group = g;
}

/* ---- public (internal) ---- */

int cf__shared_timer_arm(cf_loop *loop, cf__shared_timer *d, int64_t when, int64_t duration,
                         cf__shared_timer_fn expire)
{
    CF__ASSERT_LOOP_THREAD(loop);
    CF__ASSERT(!d->armed);
    d->when = when;
    d->expire = expire;
    d->group = NULL;
    d->timer = NULL;
    d->link.prev = d->link.next = NULL;
    if (duration > 0 && !loop->shared_timers)
        loop->shared_timers = cf__calloc(1, sizeof(cf__shared_timers));
    group *g =
        duration > 0 && loop->shared_timers ? group_for(loop->shared_timers, duration) : NULL;
    if (g && group_arm(loop, g, when) == 0) {
        group_insert(g, d);
    } else if (start_timer(&d->timer, loop, &own_kind, d, when) != 0) {
        return CF_ENOMEM;
    }
    d->armed = true;
    return 0;
}

void cf__shared_timer_stop(cf_loop *loop, cf__shared_timer *d)
{
    CF__ASSERT_LOOP_THREAD(loop);
    if (!d->armed)
        return;
    d->armed = false;
    if (d->group)
        group_remove(d->group, d); /* its timer stays: it fires early and re-arms for the head */
    else if (d->timer)
        stop_timer(loop, &d->timer);
}

void cf__loop_shared_timers_close(cf_loop *loop)
{
    cf__shared_timers *ds = loop->shared_timers;
    if (!ds)
        return;
    for (int i = 0; i < GROUPS; i++)
        CF__ASSERT(!ds->groups[i].head && !ds->groups[i].timer);
    cf__free(ds);
    loop->shared_timers = NULL;
}
