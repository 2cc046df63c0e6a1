/* The as_completed iterator: yields each distinct future once, finished ones first, then in
 * completion order. Completing threads push their node onto a lock-free inbox (a Treiber
 * stack); the iterating thread takes the whole inbox at once and reverses it into FIFO order. */
#include <math.h>
#include <string.h>

#include "core/list.h"
#include "core/waiter.h"

typedef struct ac_node {
    cf__hook hook;
    cf_as_completed *it;
    cf_future *future;
    struct ac_node *ready_next;
    bool installed;
    bool yielded;
} ac_node;

struct cf_as_completed {
    cf__waiter waiter;
    _Atomic(ac_node *) inbox; /* fired nodes, newest first */
    ac_node *ready_head;      /* nodes to yield, in order */
    ac_node *ready_tail;
    ac_node *nodes;
    size_t count;     /* distinct futures */
    size_t remaining; /* not yet yielded */
    int64_t deadline;
};

static void ready_append(cf_as_completed *it, ac_node *node)
{
    node->ready_next = NULL;
    if (it->ready_tail)
        it->ready_tail->ready_next = node;
    else
        it->ready_head = node;
    it->ready_tail = node;
}

static void node_fire(cf__hook *hook, cf_future *f)
{
    (void)f;
    ac_node *node = (ac_node *)hook;
    cf_as_completed *it = node->it;
    ac_node *head = atomic_load_explicit(&it->inbox, memory_order_relaxed);
    do
        node->ready_next = head;
    while (!atomic_compare_exchange_weak_explicit(&it->inbox, &head, node, memory_order_release,
                                                  memory_order_relaxed));
    cf__waiter_fired(&it->waiter, true);
}

static void take_inbox(cf_as_completed *it)
{
    ac_node *newest = atomic_exchange_explicit(&it->inbox, NULL, memory_order_acquire);
    if (!newest)
        return;
    ac_node *oldest = CF__CHAIN_REVERSE(newest, ac_node, ready_next);
    if (it->ready_tail)
        it->ready_tail->ready_next = oldest;
    else
        it->ready_head = oldest;
    it->ready_tail = newest; /* the newest is last now, its link NULL */
}

/* Queues a node that is already done, or links its hook into its pending future. */
static bool watch(cf_as_completed *it, ac_node *node)
{
    node->hook.fire = node_fire;
    if (!cf__state_done(cf__future_load(node->future)) &&
        cf__future_add_hook(node->future, &node->hook) == 0)
        return node->installed = true;
    ready_append(it, node);
    return false;
}

static size_t slot_of(const cf_future *f, size_t cap)
{
    return ((uintptr_t)f >> 4) * 0x9E3779B97F4A7C15ull & (cap - 1);
}

/* Takes each distinct future of fs once (an open-addressing set finds duplicates) and watches
 * it, in one pass, so that each cold future is fetched once. */
static int collect(cf_as_completed *it, cf_future *const *fs, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    cf_future **set = cf__calloc(cap, sizeof(*set));
    if (!set)
        return CF_ENOMEM;
    uint32_t installed = 0;
    for (size_t i = 0; i < n; i++) {
        cf__prefetch_ahead(fs, i, n);
        if (i + CF__PREFETCH_AHEAD < n)
            __builtin_prefetch(&set[slot_of(fs[i + CF__PREFETCH_AHEAD], cap)], 1);
        size_t h = slot_of(fs[i], cap);
        while (set[h] && set[h] != fs[i])
            h = (h + 1) & (cap - 1);
        if (set[h])
            continue;
        set[h] = fs[i];
        ac_node *node = &it->nodes[it->count++];
        *node = (ac_node){.it = it, .future = cf_future_ref(fs[i])};
        installed += watch(it, node);
    }
    cf__free(set);
    cf__waiter_installed(&it->waiter, installed);
    return 0;
}

int cf_as_completed_new(cf_as_completed **out, cf_future *const *fs, size_t n, double timeout)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if ((!fs && n) || n >= CF__WAITER_BIAS || isnan(timeout))
        return CF_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!fs[i])
            return CF_EINVAL;
    cf_as_completed *it = cf__calloc(1, sizeof(*it));
    ac_node *nodes = cf__calloc(n ? n : 1, sizeof(*nodes)); /* n == 0: an iterator at its end */
    if (!it || !nodes) {
        cf__free(it);
        cf__free(nodes);
        return CF_ENOMEM;
    }
    it->nodes = nodes;
    cf__waiter_init(&it->waiter);
    cf__deadline(timeout, &it->deadline);
    if (collect(it, fs, n) != 0) {
        cf__free(nodes);
        cf__free(it);
        return CF_ENOMEM;
    }
    it->remaining = it->count;
    *out = it;
    return 0;
}

static int yield(cf_future **out, cf_as_completed *it)
{
    ac_node *node = it->ready_head;
    CF__ASSERT(node && !node->yielded && it->remaining > 0);
    it->ready_head = node->ready_next;
    if (!it->ready_head)
        it->ready_tail = NULL;
    node->yielded = true;
    it->remaining--;
    /* The caller is about to read this future and come back for the next ones. */
    ac_node *ahead = it->ready_head;
    for (int k = 0; ahead && k < 2; k++, ahead = ahead->ready_next)
        __builtin_prefetch(ahead->future, 1);
    *out = node->future;
    /* Python keeps no reference to a yielded future; the caller's own reference keeps it. */
    cf_future_unref(node->future);
    return 0;
}

int cf_as_completed_next(cf_future **out, cf_as_completed *it)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    if (!it)
        return CF_EINVAL;
    for (;;) {
        if (!it->ready_head)
            take_inbox(it);
        if (it->ready_head)
            return yield(out, it);
        if (it->remaining == 0)
            return CF_EOF;
        uint32_t seen = atomic_load_explicit(&it->waiter.word, memory_order_acquire);
        if (atomic_load_explicit(&it->inbox, memory_order_acquire))
            continue;
        if (cf__waiter_sleep(&it->waiter, seen, it->deadline) == CF_ETIMEDOUT) {
            take_inbox(it);
            if (it->ready_head)
                return yield(out, it);
            return CF_ETIMEDOUT;
        }
    }
}

size_t cf_as_completed_remaining(const cf_as_completed *it)
{
    return it ? it->remaining : 0;
}

void cf_as_completed_free(cf_as_completed *it)
{
    if (!it)
        return;
    uint32_t removed = 0;
    /* A yielded future's hook has fired, and the caller may have released the future since:
     * only the others are still there to unhook. */
    for (size_t i = 0; i < it->count; i++)
        if (it->nodes[i].installed && !it->nodes[i].yielded &&
            cf__future_remove_hook(it->nodes[i].future, &it->nodes[i].hook))
            removed++;
    cf__waiter_drain(&it->waiter, removed);
    for (size_t i = 0; i < it->count; i++)
        if (!it->nodes[i].yielded)
            cf_future_unref(it->nodes[i].future);
    cf__free(it->nodes);
    cf__free(it);
}
