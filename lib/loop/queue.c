/* The queue for loop tasks (asyncio.Queue, LifoQueue, PriorityQueue), with put and get that
 * wait, their non-waiting forms, and task_done/join.
 *
 * Like the locks (loop/locks.c), it hands things over directly: an item put while getters
 * wait goes to the oldest getter, never through the queue; a get from a full queue with
 * putters waiting moves the oldest putter's item in, in the same step. So getters wait only
 * on an empty queue and putters only on a full one, a withdrawn (cancelled) waiter never
 * strands another, and an item handed to a getter is returned by its get even if the getter
 * is cancelled before it runs (asyncio lost such items: bpo-23812). */
#include <string.h>

#include "cfutures/loop_sync.h"
#include "loop/loop_internal.h"

enum { INITIAL_CAPACITY = 16 };

CF__ABI_STRUCT(cf_loop_queue_options, 152);

typedef struct entry {
    void *item;
    uint64_t seq; /* put order: the priority queue's tie-breaker */
} entry;

struct cf_loop_queue {
    cf_loop *loop;
    cf__wait_list getters, putters, joiners;
    entry *slots;
    size_t cap, n;
    size_t head; /* FIFO: index of the oldest entry in the ring */
    size_t maxsize;
    size_t unfinished; /* items put and not yet marked done */
    uint64_t seq;
    cf_loop_queue_order order;
    int (*compare)(const void *a, const void *b);
};

/* ---- storage: a ring (FIFO), a stack (LIFO) or a binary heap (PRIORITY) ---- */

static bool before(const cf_loop_queue *q, const entry *a, const entry *b)
{
    int c = q->compare(a->item, b->item);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_up(cf_loop_queue *q, size_t i)
{
    entry e = q->slots[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(q, &e, &q->slots[parent]))
            break;
        q->slots[i] = q->slots[parent];
        i = parent;
    }
    q->slots[i] = e;
}

static void heap_down(cf_loop_queue *q, size_t i)
{
    entry e = q->slots[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= q->n)
            break;
        if (child + 1 < q->n && before(q, &q->slots[child + 1], &q->slots[child]))
            child++;
        if (!before(q, &q->slots[child], &e))
            break;
        q->slots[i] = q->slots[child];
        i = child;
    }
    q->slots[i] = e;
}

static int grow(cf_loop_queue *q)
{
    size_t cap = q->cap ? 2 * q->cap : INITIAL_CAPACITY;
    if (q->maxsize && cap > q->maxsize)
        cap = q->maxsize;
    if (cap > SIZE_MAX / sizeof(entry))
        return CF_ENOMEM;
    entry *slots = cf__malloc(cap * sizeof(entry));
    if (!slots)
        return CF_ENOMEM;
    /* Unwrap the ring: the oldest entry comes first. */
    for (size_t i = 0; i < q->n; i++)
        slots[i] = q->slots[(q->head + i) % q->cap];
    cf__free(q->slots);
    q->slots = slots;
    q->cap = cap;
    q->head = 0;
    return 0;
}

/* Stores an item; the caller made sure a bounded queue has room. Returns 0 or CF_ENOMEM. */
static int store(cf_loop_queue *q, void *item)
{
    if (q->n == q->cap) {
        int rc = grow(q);
        if (rc)
            return rc;
    }
    entry e = {.item = item, .seq = q->seq++};
    if (q->order == CF_LOOP_QUEUE_FIFO) {
        q->slots[(q->head + q->n) % q->cap] = e;
        q->n++;
    } else {
        q->slots[q->n++] = e;
        if (q->order == CF_LOOP_QUEUE_PRIORITY)
            heap_up(q, q->n - 1);
    }
    q->unfinished++;
    return 0;
}

static void *remove_next(cf_loop_queue *q)
{
    void *item;
    if (q->order == CF_LOOP_QUEUE_FIFO) {
        item = q->slots[q->head].item;
        q->head = (q->head + 1) % q->cap;
        q->n--;
    } else if (q->order == CF_LOOP_QUEUE_LIFO) {
        item = q->slots[--q->n].item;
    } else {
        item = q->slots[0].item;
        q->slots[0] = q->slots[--q->n];
        if (q->n)
            heap_down(q, 0);
    }
    return item;
}

/* ---- the hand-offs ---- */

static bool is_full(const cf_loop_queue *q)
{
    return q->maxsize && q->n >= q->maxsize;
}

/* An item for the oldest getter (the queue is empty whenever getters wait). */
static void hand_to_getter(cf_loop_queue *q, void *item)
{
    cf__wait *w = q->getters.head;
    w->value = item;
    q->unfinished++;
    cf__task_wake(w, 0);
}

/* Takes the next item; a slot freed in a full queue goes to the oldest putter's item. */
static void *take(cf_loop_queue *q)
{
    void *item = remove_next(q);
    if (!cf__wait_list_empty(&q->putters)) {
        cf__wait *w = q->putters.head;
        store(q, w->value); /* cannot fail: the slot just freed is reused */
        cf__task_wake(w, 0);
    }
    return item;
}

static int check(const cf_loop_queue *q)
{
    return q ? cf__loop_thread_check(q->loop) : CF_EINVAL;
}

static int task_check(const cf_loop_queue *q)
{
    return q ? cf__task_check(q->loop) : CF_EINVAL;
}

/* ---- public ---- */

int cf_loop_queue_new(cf_loop_queue **out, cf_loop *loop, const cf_loop_queue_options *options)
{
    static const cf_loop_queue_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_loop_queue_options *o = options ? options : &defaults;
    if ((unsigned)o->order > CF_LOOP_QUEUE_PRIORITY ||
        (o->order == CF_LOOP_QUEUE_PRIORITY && !o->compare) || !CF__RESERVED_ZERO(o))
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    cf_loop_queue *q = cf__calloc(1, sizeof(*q));
    if (!q)
        return CF_ENOMEM;
    q->loop = loop;
    q->maxsize = o->maxsize;
    q->order = o->order;
    q->compare = o->compare;
    cf__loop_ref(loop);
    *out = q;
    return 0;
}

int cf_loop_queue_free(cf_loop_queue *queue)
{
    if (!queue)
        return 0;
    if (!cf__wait_list_empty(&queue->getters) || !cf__wait_list_empty(&queue->putters) ||
        !cf__wait_list_empty(&queue->joiners))
        return CF_EINVALSTATE;
    cf_loop *loop = queue->loop;
    cf__free(queue->slots);
    cf__free(queue);
    cf__loop_unref(loop);
    return 0;
}

int cf_loop_queue_put(cf_loop_queue *queue, void *item)
{
    int rc = task_check(queue);
    if (rc)
        return rc;
    if (!cf__wait_list_empty(&queue->getters)) {
        hand_to_getter(queue, item);
        return 0;
    }
    if (!is_full(queue))
        return store(queue, item);
    /* The get that makes room stores the item and wakes us. */
    cf__wait w = {.value = item};
    return cf__task_park(&w, &queue->putters);
}

int cf_loop_queue_try_put(cf_loop_queue *queue, void *item)
{
    int rc = check(queue);
    if (rc)
        return rc;
    if (!cf__wait_list_empty(&queue->getters)) {
        hand_to_getter(queue, item);
        return 0;
    }
    return is_full(queue) ? CF_EFULL : store(queue, item);
}

int cf_loop_queue_get(void **item, cf_loop_queue *queue)
{
    if (!item)
        return CF_EINVAL;
    *item = NULL;
    int rc = task_check(queue);
    if (rc)
        return rc;
    if (queue->n > 0) {
        *item = take(queue);
        return 0;
    }
    cf__wait w = {0};
    rc = cf__task_park(&w, &queue->getters);
    if (rc == 0)
        *item = w.value;
    return rc;
}

int cf_loop_queue_try_get(void **item, cf_loop_queue *queue)
{
    if (!item)
        return CF_EINVAL;
    *item = NULL;
    int rc = check(queue);
    if (rc)
        return rc;
    if (queue->n == 0)
        return CF_EAGAIN;
    *item = take(queue);
    return 0;
}

int cf_loop_queue_task_done(cf_loop_queue *queue)
{
    int rc = check(queue);
    if (rc)
        return rc;
    if (queue->unfinished == 0)
        return CF_EINVALSTATE;
    if (--queue->unfinished == 0)
        cf__task_wake_all(&queue->joiners, 0);
    return 0;
}

int cf_loop_queue_join(cf_loop_queue *queue)
{
    int rc = task_check(queue);
    if (rc)
        return rc;
    if (queue->unfinished == 0)
        return 0;
    cf__wait w = {0};
    return cf__task_park(&w, &queue->joiners);
}

size_t cf_loop_queue_size(const cf_loop_queue *queue)
{
    return queue ? queue->n : 0;
}

size_t cf_loop_queue_maxsize(const cf_loop_queue *queue)
{
    return queue ? queue->maxsize : 0;
}

bool cf_loop_queue_empty(const cf_loop_queue *queue)
{
    return !queue || queue->n == 0;
}

bool cf_loop_queue_full(const cf_loop_queue *queue)
{
    return queue && is_full(queue);
}
