/* Coordination primitives for loop tasks (loop_sync.h): Lock, Event, Semaphore,
 * BoundedSemaphore, Condition, Queue. Every cancellation race asyncio got wrong is replayed
 * here step by step (the loop is run one iteration at a time, so each interleaving is exact):
 *   bpo-27585   Lock: the waiter the lock was handed to is cancelled before it runs
 *   asyncio#270 Semaphore: the same race with a permit
 *   gh-90155    Semaphore: a cancelled waiter left the semaphore stuck (the cykerway script)
 *   bpo-45997   Semaphore: a newcomer overtook a woken waiter (FIFO)
 *   bpo-23812   Queue: get cancelled after an item was handed to it
 *   gh-108042   Queue: a cancelled getter/putter must not strand the next one
 *   asyncio#201 Queue.get under a timeout that expires as the item arrives
 *   bpo-22970   Condition.wait cancelled after notify returned without the lock
 *   bpo-42600   Condition.wait cancelled while taking the lock back
 *   gh-112202   Condition.notify racing with Task.cancel lost the wake-up
 * plus FIFO fairness, queue orders, join/task_done, close with waiters, and misuse codes. */
#include <stdint.h>
#include <stdlib.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

/* Creation, the non-waiting operations and their errors work in every build. */

START_TEST(test_misuse_codes)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *lock;
    cf_loop_semaphore *sem;
    cf_loop_event *ev;
    cf_loop_condition *cond;
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_lock_new(NULL, loop), CF_EINVAL);
    ck_assert_int_eq(cf_loop_lock_new(&lock, NULL), CF_EINVAL);
    ck_assert_ptr_null(lock);
    ck_assert_int_eq(cf_loop_lock_new(&lock, loop), 0);
    ck_assert_int_eq(cf_loop_semaphore_new(&sem, loop, 1), 0);
    ck_assert_int_eq(cf_loop_event_new(&ev, loop), 0);
    ck_assert_int_eq(cf_loop_condition_new(&cond, loop, NULL), 0);
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, &(cf_loop_queue_options){.maxsize = 1}), 0);

    /* Waiting operations outside a task. */
    void *item = (void *)1;
    ck_assert_int_eq(cf_loop_lock_acquire(lock), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_semaphore_acquire(sem), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_event_wait(ev), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_queue_put(q, item), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_queue_get(&item, q), CF_EINVALSTATE);
    ck_assert_ptr_null(item);
    ck_assert_int_eq(cf_loop_queue_join(q), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_condition_wait(cond), CF_EINVALSTATE);

    /* NULL handles. */
    ck_assert_int_eq(cf_loop_lock_acquire(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_lock_try_acquire(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_lock_release(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_semaphore_release(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_event_set(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_event_wait(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_loop_condition_notify(NULL, 1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_queue_try_put(NULL, item), CF_EINVAL);
    ck_assert_int_eq(cf_loop_queue_try_get(NULL, q), CF_EINVAL);
    ck_assert_int_eq(cf_loop_queue_try_get(&item, NULL), CF_EINVAL);
    ck_assert(!cf_loop_lock_locked(NULL));
    ck_assert(cf_loop_queue_empty(NULL));
    ck_assert_int_eq(cf_loop_lock_free(NULL), 0);
    ck_assert_int_eq(cf_loop_queue_free(NULL), 0);

    /* State errors. */
    ck_assert_int_eq(cf_loop_lock_release(lock), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), 0);
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), CF_EAGAIN);
    ck_assert(cf_loop_lock_locked(lock));
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    ck_assert_int_eq(cf_loop_condition_notify(cond, 1), CF_EINVALSTATE); /* lock not held */
    ck_assert_int_eq(cf_loop_condition_notify_all(cond), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_semaphore_try_acquire(sem), 0);
    ck_assert_int_eq(cf_loop_semaphore_try_acquire(sem), CF_EAGAIN);
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), CF_EAGAIN);
    ck_assert_int_eq(cf_loop_queue_try_put(q, item), 0);
    ck_assert_int_eq(cf_loop_queue_try_put(q, item), CF_EFULL);
    ck_assert(cf_loop_queue_full(q));
    ck_assert_int_eq(cf_loop_queue_task_done(q), 0);
    ck_assert_int_eq(cf_loop_queue_task_done(q), CF_EINVALSTATE); /* more than put */

    /* Bad options. */
    cf_loop_queue *bad;
    ck_assert_int_eq(
        cf_loop_queue_new(&bad, loop, &(cf_loop_queue_options){.order = CF_LOOP_QUEUE_PRIORITY}),
        CF_EINVAL);
    ck_assert_int_eq(cf_loop_queue_new(&bad, loop, &(cf_loop_queue_options){.order = 7}),
                     CF_EINVAL);
    ck_assert_ptr_null(bad);
    cf_loop_queue_options reserved = {0};
    reserved.reserved[15] = 1;
    ck_assert_int_eq(cf_loop_queue_new(&bad, loop, &reserved), CF_EINVAL);

    /* A condition over a lock of another loop. */
    cf_loop *other = new_loop();
    cf_loop_lock *other_lock;
    ck_assert_int_eq(cf_loop_lock_new(&other_lock, other), 0);
    cf_loop_condition *bad_cond;
    ck_assert_int_eq(cf_loop_condition_new(&bad_cond, loop, other_lock), CF_EINVAL);
    ck_assert_ptr_null(bad_cond);
    ck_assert_int_eq(cf_loop_lock_free(other_lock), 0);
    cf_loop_free(other);

    ck_assert_int_eq(cf_loop_lock_free(lock), 0);
    ck_assert_int_eq(cf_loop_semaphore_free(sem), 0);
    ck_assert_int_eq(cf_loop_event_free(ev), 0);
    ck_assert_int_eq(cf_loop_condition_free(cond), 0);
    ck_assert_int_eq(cf_loop_queue_free(q), 0);

    /* A closed loop takes no new primitive. */
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(cf_loop_lock_new(&lock, loop), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, NULL), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

typedef struct other_thread_args {
    cf_loop_lock *lock;
    cf_loop_event *event;
    cf_loop_queue *queue;
    int rc[4];
} other_thread_args;

static void *other_thread(void *arg)
{
    other_thread_args *a = arg;
    void *item;
    a->rc[0] = cf_loop_lock_try_acquire(a->lock);
    a->rc[1] = cf_loop_event_set(a->event);
    a->rc[2] = cf_loop_queue_try_get(&item, a->queue);
    a->rc[3] = cf_loop_lock_new(&a->lock, cf_loop_current());
    return NULL;
}

START_TEST(test_other_thread_is_refused)
{
    cf_loop *loop = new_loop();
    other_thread_args a = {0};
    ck_assert_int_eq(cf_loop_lock_new(&a.lock, loop), 0);
    ck_assert_int_eq(cf_loop_event_new(&a.event, loop), 0);
    ck_assert_int_eq(cf_loop_queue_new(&a.queue, loop, NULL), 0);
    cf_loop_lock *lock = a.lock;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, other_thread, &a), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.rc[0], CF_EPERM);
    ck_assert_int_eq(a.rc[1], CF_EPERM);
    ck_assert_int_eq(a.rc[2], CF_EPERM);
    ck_assert_int_eq(a.rc[3], CF_EINVAL); /* no loop runs there */
    ck_assert(!cf_loop_lock_locked(lock));
    ck_assert(!cf_loop_event_is_set(a.event));
    cf_loop_lock_free(lock);
    cf_loop_event_free(a.event);
    cf_loop_queue_free(a.queue);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_queue_orders_without_tasks)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *fifo, *lifo;
    ck_assert_int_eq(cf_loop_queue_new(&fifo, loop, NULL), 0);
    ck_assert_int_eq(
        cf_loop_queue_new(&lifo, loop, &(cf_loop_queue_options){.order = CF_LOOP_QUEUE_LIFO}), 0);
    /* Enough to grow the ring several times, with the ring wrapped around. */
    for (intptr_t i = 0; i < 10; i++)
        ck_assert_int_eq(cf_loop_queue_try_put(fifo, (void *)i), 0);
    void *item;
    for (intptr_t i = 0; i < 5; i++) {
        ck_assert_int_eq(cf_loop_queue_try_get(&item, fifo), 0);
        ck_assert_int_eq((intptr_t)item, i);
    }
    for (intptr_t i = 10; i < 100; i++)
        ck_assert_int_eq(cf_loop_queue_try_put(fifo, (void *)i), 0);
    ck_assert_uint_eq(cf_loop_queue_size(fifo), 95);
    for (intptr_t i = 5; i < 100; i++) {
        ck_assert_int_eq(cf_loop_queue_try_get(&item, fifo), 0);
        ck_assert_int_eq((intptr_t)item, i);
    }
    ck_assert(cf_loop_queue_empty(fifo));
    ck_assert(!cf_loop_queue_full(fifo));
    for (intptr_t i = 0; i < 40; i++)
        ck_assert_int_eq(cf_loop_queue_try_put(lifo, (void *)i), 0);
    for (intptr_t i = 39; i >= 0; i--) {
        ck_assert_int_eq(cf_loop_queue_try_get(&item, lifo), 0);
        ck_assert_int_eq((intptr_t)item, i);
    }
    /* Items left in a queue are dropped by free. */
    ck_assert_int_eq(cf_loop_queue_try_put(fifo, (void *)7), 0);
    ck_assert_int_eq(cf_loop_queue_free(fifo), 0);
    ck_assert_int_eq(cf_loop_queue_free(lifo), 0);
    cf_loop_free(loop);
}
END_TEST

typedef struct prio_item {
    int priority;
    int id;
} prio_item;

static int compare_prio(const void *a, const void *b)
{
    const prio_item *x = a, *y = b;
    return (x->priority > y->priority) - (x->priority < y->priority);
}

START_TEST(test_priority_queue_is_stable)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_queue_new(&q, loop,
                                       &(cf_loop_queue_options){.order = CF_LOOP_QUEUE_PRIORITY,
                                                                .compare = compare_prio,
                                                                .maxsize = 64}),
                     0);
    ck_assert_uint_eq(cf_loop_queue_maxsize(q), 64);
    prio_item items[64];
    /* Priorities 0..3 in a scrambled order; ids count up in put order. */
    for (int i = 0; i < 64; i++) {
        items[i] = (prio_item){.priority = (i * 7) % 4, .id = i};
        ck_assert_int_eq(cf_loop_queue_try_put(q, &items[i]), 0);
    }
    ck_assert_int_eq(cf_loop_queue_try_put(q, &items[0]), CF_EFULL);
    prio_item *prev = NULL;
    for (int i = 0; i < 64; i++) {
        void *item;
        ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
        prio_item *p = item;
        if (prev) {
            ck_assert_int_le(prev->priority, p->priority);
            if (prev->priority == p->priority)
                ck_assert_int_lt(prev->id, p->id); /* ties come out in put order */
        }
        prev = p;
    }
    cf_loop_queue_free(q);
    cf_loop_free(loop);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES

static cf_future *spawn(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, fn, arg, NULL), 0);
    return t;
}

/* Runs exactly one iteration (stop before run: asyncio's rule). */
static void step(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

static void finish(cf_loop *loop, cf_future *t)
{
    cf_loop_run_until_complete(NULL, loop, t);
    ck_assert(cf_future_done(t));
}

/* A task that takes a lock or a permit, logs its id, suspends once while holding it, then
 * gives it back. `got` and `after` record the two return codes (1: not returned yet). */
typedef struct holder {
    int (*acquire)(void *prim);
    int (*release)(void *prim);
    void *prim;
    int id;
    int *log;
    int *nlog;
    int got;
    int after;
} holder;

static int lock_acquire(void *p)
{
    return cf_loop_lock_acquire(p);
}
static int lock_release(void *p)
{
    return cf_loop_lock_release(p);
}
static int sem_acquire(void *p)
{
    return cf_loop_semaphore_acquire(p);
}
static int sem_release(void *p)
{
    return cf_loop_semaphore_release(p);
}

static int holder_task(void *arg, void **result)
{
    (void)result;
    holder *h = arg;
    h->got = h->acquire(h->prim);
    if (h->got)
        return h->got;
    if (h->log)
        h->log[(*h->nlog)++] = h->id;
    h->after = cf_sleep(0);
    ck_assert_int_eq(h->release(h->prim), 0);
    return h->after;
}

static holder make_holder(bool lock, void *prim, int id, int *log, int *nlog)
{
    return (holder){.acquire = lock ? lock_acquire : sem_acquire,
                    .release = lock ? lock_release : sem_release,
                    .prim = prim,
                    .id = id,
                    .log = log,
                    .nlog = nlog,
                    .got = 1,
                    .after = 1};
}

/* bpo-27585 (Lock) and asyncio#270 (Semaphore): two tasks wait; a release hands the lock to
 * the first, which is cancelled before it runs. It must not be lost: the first keeps it (its
 * acquire returns 0), sees the cancellation at its next suspension point, gives it back, and
 * the second gets it. */
static void handed_then_cancelled(bool lock)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *l = NULL;
    cf_loop_semaphore *s = NULL;
    if (lock) {
        ck_assert_int_eq(cf_loop_lock_new(&l, loop), 0);
        ck_assert_int_eq(cf_loop_lock_try_acquire(l), 0);
    } else {
        ck_assert_int_eq(cf_loop_semaphore_new(&s, loop, 1), 0);
        ck_assert_int_eq(cf_loop_semaphore_try_acquire(s), 0);
    }
    void *prim = lock ? (void *)l : (void *)s;
    int log[2], n = 0;
    holder a = make_holder(lock, prim, 1, log, &n), b = make_holder(lock, prim, 2, log, &n);
    cf_future *ta = spawn(loop, holder_task, &a), *tb = spawn(loop, holder_task, &b);
    step(loop); /* both wait */
    ck_assert_int_eq(a.got, 1);
    ck_assert_int_eq(b.got, 1);
    ck_assert_int_eq(lock ? cf_loop_lock_release(l) : cf_loop_semaphore_release(s), 0);
    ck_assert(cf_future_cancel(ta)); /* handed to `a`, which has not run yet */
    /* Nobody else can take it meanwhile. */
    ck_assert_int_eq(lock ? cf_loop_lock_try_acquire(l) : cf_loop_semaphore_try_acquire(s),
                     CF_EAGAIN);
    finish(loop, tb);
    finish(loop, ta);
    ck_assert_int_eq(a.got, 0);
    ck_assert_int_eq(a.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(ta));
    ck_assert_int_eq(b.got, 0);
    ck_assert_int_eq(b.after, 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(log[0], 1);
    ck_assert_int_eq(log[1], 2);
    if (lock)
        ck_assert(!cf_loop_lock_locked(l));
    else
        ck_assert_uint_eq(cf_loop_semaphore_value(s), 1);
    cf_future_unref(ta);
    cf_future_unref(tb);
    lock ? cf_loop_lock_free(l) : cf_loop_semaphore_free(s);
    cf_loop_free(loop);
}

START_TEST(test_lock_handed_then_cancelled)
{
    handed_then_cancelled(true);
}
END_TEST

START_TEST(test_semaphore_handed_then_cancelled)
{
    handed_then_cancelled(false);
}
END_TEST

/* The other order: cancelled while still waiting. The wait is withdrawn (CF_ECANCELLED, the
 * task holds nothing) and the release goes to the next waiter directly. */
static void cancelled_while_waiting(bool lock)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *l = NULL;
    cf_loop_semaphore *s = NULL;
    if (lock) {
        ck_assert_int_eq(cf_loop_lock_new(&l, loop), 0);
        ck_assert_int_eq(cf_loop_lock_try_acquire(l), 0);
    } else {
        ck_assert_int_eq(cf_loop_semaphore_new(&s, loop, 1), 0);
        ck_assert_int_eq(cf_loop_semaphore_try_acquire(s), 0);
    }
    void *prim = lock ? (void *)l : (void *)s;
    int log[2], n = 0;
    holder a = make_holder(lock, prim, 1, log, &n), b = make_holder(lock, prim, 2, log, &n);
    cf_future *ta = spawn(loop, holder_task, &a), *tb = spawn(loop, holder_task, &b);
    step(loop);
    ck_assert(cf_future_cancel(ta));
    ck_assert_int_eq(lock ? cf_loop_lock_release(l) : cf_loop_semaphore_release(s), 0);
    finish(loop, tb);
    finish(loop, ta);
    ck_assert_int_eq(a.got, CF_ECANCELLED);
    ck_assert_int_eq(a.after, 1);
    ck_assert(cf_future_cancelled(ta));
    ck_assert_int_eq(b.got, 0);
    ck_assert_int_eq(n, 1);
    if (lock)
        ck_assert(!cf_loop_lock_locked(l));
    else
        ck_assert_uint_eq(cf_loop_semaphore_value(s), 1);
    cf_future_unref(ta);
    cf_future_unref(tb);
    lock ? cf_loop_lock_free(l) : cf_loop_semaphore_free(s);
    cf_loop_free(loop);
}

START_TEST(test_lock_cancelled_while_waiting)
{
    cancelled_while_waiting(true);
}
END_TEST

START_TEST(test_semaphore_cancelled_while_waiting)
{
    cancelled_while_waiting(false);
}
END_TEST

/* FIFO: five waiters get the lock in the order they asked; a newcomer that asks after a
 * release (bpo-45997) waits behind them instead of overtaking the woken one. */
static void fifo_fairness(bool lock)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *l = NULL;
    cf_loop_semaphore *s = NULL;
    if (lock) {
        ck_assert_int_eq(cf_loop_lock_new(&l, loop), 0);
        ck_assert_int_eq(cf_loop_lock_try_acquire(l), 0);
    } else {
        ck_assert_int_eq(cf_loop_semaphore_new(&s, loop, 1), 0);
        ck_assert_int_eq(cf_loop_semaphore_try_acquire(s), 0);
    }
    void *prim = lock ? (void *)l : (void *)s;
    int log[6], n = 0;
    holder h[6];
    cf_future *t[6];
    for (int i = 0; i < 5; i++) {
        h[i] = make_holder(lock, prim, i + 1, log, &n);
        t[i] = spawn(loop, holder_task, &h[i]);
    }
    step(loop); /* all five wait, in creation order */
    ck_assert_int_eq(lock ? cf_loop_lock_release(l) : cf_loop_semaphore_release(s), 0);
    h[5] = make_holder(lock, prim, 6, log, &n);
    t[5] = spawn(loop, holder_task, &h[5]); /* starts in the same iteration as the woken one */
    finish(loop, t[5]);
    for (int i = 0; i < 6; i++) {
        finish(loop, t[i]);
        ck_assert_int_eq(h[i].got, 0);
        ck_assert_int_eq(h[i].after, 0);
        ck_assert_int_eq(log[i], i + 1);
        cf_future_unref(t[i]);
    }
    ck_assert_int_eq(n, 6);
    if (lock) {
        ck_assert(!cf_loop_lock_locked(l));
        cf_loop_lock_free(l);
    } else {
        ck_assert_uint_eq(cf_loop_semaphore_value(s), 1);
        cf_loop_semaphore_free(s);
    }
    cf_loop_free(loop);
}

START_TEST(test_lock_fifo)
{
    fifo_fairness(true);
}
END_TEST

START_TEST(test_semaphore_fifo)
{
    fifo_fairness(false);
}
END_TEST

/* gh-90155, the script from the report: Zero takes the only permit and sleeps; One waits;
 * Zero gives the permit back and cancels One right away; later Two must get the permit (the
 * broken semaphore stayed locked forever). */
typedef struct hotel {
    cf_loop_semaphore *sem;
    cf_future *one;
    int zero_rc, one_rc, two_rc;
} hotel;

static int zero_task(void *arg, void **result)
{
    (void)result;
    hotel *h = arg;
    ck_assert_int_eq(cf_loop_semaphore_acquire(h->sem), 0);
    ck_assert_int_eq(cf_sleep(0), 0);
    ck_assert_int_eq(cf_sleep(0), 0);
    ck_assert_int_eq(cf_loop_semaphore_release(h->sem), 0);
    cf_future_cancel(h->one);
    h->zero_rc = 0;
    return 0;
}

static int one_task(void *arg, void **result)
{
    (void)result;
    hotel *h = arg;
    ck_assert_int_eq(cf_sleep(0), 0);
    int rc = cf_loop_semaphore_acquire(h->sem);
    if (rc == 0) {
        rc = cf_sleep(0); /* the cancellation arrives here */
        ck_assert_int_eq(cf_loop_semaphore_release(h->sem), 0);
    }
    h->one_rc = rc;
    return rc;
}

static int two_task(void *arg, void **result)
{
    (void)result;
    hotel *h = arg;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(cf_sleep(0), 0);
    h->two_rc = cf_loop_semaphore_acquire(h->sem);
    if (h->two_rc == 0)
        ck_assert_int_eq(cf_loop_semaphore_release(h->sem), 0);
    return h->two_rc;
}

START_TEST(test_semaphore_gh90155_script)
{
    cf_loop *loop = new_loop();
    hotel h = {.zero_rc = 1, .one_rc = 1, .two_rc = 1};
    ck_assert_int_eq(cf_loop_semaphore_new(&h.sem, loop, 1), 0);
    cf_future *zero = spawn(loop, zero_task, &h);
    h.one = spawn(loop, one_task, &h);
    cf_future *two = spawn(loop, two_task, &h);
    finish(loop, two);
    finish(loop, zero);
    finish(loop, h.one);
    ck_assert_int_eq(h.zero_rc, 0);
    ck_assert_int_eq(h.one_rc, CF_ECANCELLED);
    ck_assert_int_eq(h.two_rc, 0);
    ck_assert_uint_eq(cf_loop_semaphore_value(h.sem), 1);
    ck_assert(!cf_loop_semaphore_locked(h.sem));
    cf_future_unref(zero);
    cf_future_unref(h.one);
    cf_future_unref(two);
    cf_loop_semaphore_free(h.sem);
    cf_loop_free(loop);
}
END_TEST

/* gh-90155 review: several releases in a row wake as many waiters, each exactly once; a
 * bounded semaphore refuses a release beyond its initial value. */
START_TEST(test_semaphore_releases_and_bound)
{
    cf_loop *loop = new_loop();
    cf_loop_semaphore *s;
    ck_assert_int_eq(cf_loop_bounded_semaphore_new(&s, loop, 2), 0);
    ck_assert_int_eq(cf_loop_semaphore_release(s), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_semaphore_try_acquire(s), 0);
    ck_assert_int_eq(cf_loop_semaphore_try_acquire(s), 0);
    ck_assert(cf_loop_semaphore_locked(s));
    int log[4], n = 0;
    holder h[4];
    cf_future *t[4];
    for (int i = 0; i < 4; i++) {
        h[i] = make_holder(false, s, i + 1, log, &n);
        t[i] = spawn(loop, holder_task, &h[i]);
    }
    step(loop);
    ck_assert_int_eq(cf_loop_semaphore_release(s), 0);
    ck_assert_int_eq(cf_loop_semaphore_release(s), 0);
    ck_assert_uint_eq(cf_loop_semaphore_value(s), 0); /* both went to waiters */
    step(loop);                                       /* waiters 1 and 2 run */
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(h[2].got, 1);
    for (int i = 0; i < 4; i++) {
        finish(loop, t[i]);
        ck_assert_int_eq(h[i].got, 0);
        ck_assert_int_eq(log[i], i + 1);
        cf_future_unref(t[i]);
    }
    ck_assert_uint_eq(cf_loop_semaphore_value(s), 2);
    ck_assert_int_eq(cf_loop_semaphore_release(s), CF_EINVALSTATE);
    cf_loop_semaphore_free(s);

    /* Unbounded: releases beyond the initial value add permits. */
    ck_assert_int_eq(cf_loop_semaphore_new(&s, loop, 0), 0);
    ck_assert_int_eq(cf_loop_semaphore_release(s), 0);
    ck_assert_int_eq(cf_loop_semaphore_release(s), 0);
    ck_assert_uint_eq(cf_loop_semaphore_value(s), 2);
    cf_loop_semaphore_free(s);
    cf_loop_free(loop);
}
END_TEST

/* ---- Event ---- */

typedef struct waiter {
    cf_loop_event *event;
    int rc;
    int after;
} waiter;

static int event_waiter(void *arg, void **result)
{
    (void)result;
    waiter *w = arg;
    w->rc = cf_loop_event_wait(w->event);
    w->after = cf_sleep(0);
    return w->rc ? w->rc : w->after;
}

START_TEST(test_event)
{
    cf_loop *loop = new_loop();
    cf_loop_event *ev;
    ck_assert_int_eq(cf_loop_event_new(&ev, loop), 0);
    waiter w[3];
    cf_future *t[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (waiter){.event = ev, .rc = 1, .after = 1};
        t[i] = spawn(loop, event_waiter, &w[i]);
    }
    step(loop);
    ck_assert_int_eq(cf_loop_event_free(ev), CF_EINVALSTATE); /* tasks wait on it */
    ck_assert(cf_future_cancel(t[1]));                        /* withdrawn */
    ck_assert_int_eq(cf_loop_event_set(ev), 0);
    ck_assert_int_eq(cf_loop_event_clear(ev), 0); /* the woken ones still return 0 */
    ck_assert_int_eq(cf_loop_event_set(ev), 0);
    ck_assert_int_eq(cf_loop_event_set(ev), 0); /* set twice: nothing more */
    for (int i = 0; i < 3; i++)
        finish(loop, t[i]);
    ck_assert_int_eq(w[0].rc, 0);
    ck_assert_int_eq(w[1].rc, CF_ECANCELLED);
    ck_assert_int_eq(w[2].rc, 0);
    ck_assert(cf_future_cancelled(t[1]));
    ck_assert(!cf_future_cancelled(t[0]));
    /* Set: a wait returns without suspending. */
    ck_assert(cf_loop_event_is_set(ev));
    waiter late = {.event = ev, .rc = 1, .after = 1};
    cf_future *tl = spawn(loop, event_waiter, &late);
    finish(loop, tl);
    ck_assert_int_eq(late.rc, 0);
    for (int i = 0; i < 3; i++)
        cf_future_unref(t[i]);
    cf_future_unref(tl);
    ck_assert_int_eq(cf_loop_event_free(ev), 0);
    cf_loop_free(loop);
}
END_TEST

/* The woken waiter is cancelled before it runs: its wait completes (0) and the cancellation
 * reaches its next suspension point. */
START_TEST(test_event_woken_then_cancelled)
{
    cf_loop *loop = new_loop();
    cf_loop_event *ev;
    ck_assert_int_eq(cf_loop_event_new(&ev, loop), 0);
    waiter w = {.event = ev, .rc = 1, .after = 1};
    cf_future *t = spawn(loop, event_waiter, &w);
    step(loop);
    ck_assert_int_eq(cf_loop_event_set(ev), 0);
    ck_assert(cf_future_cancel(t));
    finish(loop, t);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    cf_future_unref(t);
    cf_loop_event_free(ev);
    cf_loop_free(loop);
}
END_TEST

/* ---- Condition ---- */

typedef struct cwaiter {
    cf_loop_condition *cond;
    int rc;       /* of the wait */
    bool held;    /* the lock was held when the wait returned */
    int after;    /* of the next suspension */
    int *counter; /* for wait_for */
} cwaiter;

static int cond_waiter(void *arg, void **result)
{
    (void)result;
    cwaiter *w = arg;
    cf_loop_lock *lock = cf_loop_condition_lock(w->cond);
    ck_assert_int_eq(cf_loop_lock_acquire(lock), 0);
    w->rc = cf_loop_condition_wait(w->cond);
    w->held = cf_loop_lock_locked(lock);
    w->after = cf_sleep(0); /* still holding the lock */
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    return w->rc ? w->rc : w->after;
}

static cwaiter make_cwaiter(cf_loop_condition *c)
{
    return (cwaiter){.cond = c, .rc = 1, .after = 1};
}

/* bpo-22970: cancelled after notify but before it has the lock back: the wait returns with the
 * lock held. */
START_TEST(test_condition_cancel_after_notify)
{
    cf_loop *loop = new_loop();
    cf_loop_condition *c;
    ck_assert_int_eq(cf_loop_condition_new(&c, loop, NULL), 0);
    cf_loop_lock *lock = cf_loop_condition_lock(c);
    cwaiter w = make_cwaiter(c);
    cf_future *t = spawn(loop, cond_waiter, &w);
    step(loop);
    ck_assert(!cf_loop_lock_locked(lock)); /* the wait released it */
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), 0);
    ck_assert_int_eq(cf_loop_condition_notify(c, 1), 0);
    ck_assert(cf_future_cancel(t));
    step(loop);
    ck_assert_int_eq(w.rc, 1); /* waits for the lock, which we hold */
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    finish(loop, t);
    ck_assert_int_eq(w.rc, 0); /* it was notified */
    ck_assert(w.held);
    ck_assert_int_eq(w.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    ck_assert(!cf_loop_lock_locked(lock));
    cf_future_unref(t);
    cf_loop_condition_free(c);
    cf_loop_free(loop);
}
END_TEST

/* A task that holds the lock across a few suspensions. */
typedef struct lock_hog {
    cf_loop_lock *lock;
    int turns;
} lock_hog;

static int hog_task(void *arg, void **result)
{
    (void)result;
    lock_hog *h = arg;
    ck_assert_int_eq(cf_loop_lock_acquire(h->lock), 0);
    for (int i = 0; i < h->turns; i++)
        ck_assert_int_eq(cf_sleep(0), 0);
    ck_assert_int_eq(cf_loop_lock_release(h->lock), 0);
    return 0;
}

/* bpo-42600: cancelled (twice) while waiting to take the lock back after a notify: the wait
 * still returns with the lock, and only then does the task see the cancellation. */
START_TEST(test_condition_cancel_while_relocking)
{
    cf_loop *loop = new_loop();
    cf_loop_condition *c;
    ck_assert_int_eq(cf_loop_condition_new(&c, loop, NULL), 0);
    cf_loop_lock *lock = cf_loop_condition_lock(c);
    cwaiter w = make_cwaiter(c);
    cf_future *t = spawn(loop, cond_waiter, &w);
    step(loop); /* it waits for a notify; the lock is free */
    lock_hog hog = {.lock = lock, .turns = 4};
    cf_future *th = spawn(loop, hog_task, &hog);
    step(loop); /* the hog holds the lock */
    ck_assert_int_eq(cf_loop_condition_notify(c, 1), 0);
    step(loop); /* the waiter wakes and waits for the lock */
    ck_assert(cf_loop_lock_locked(lock));
    ck_assert(cf_future_cancel(t));
    ck_assert(cf_future_cancel(t));
    step(loop);
    ck_assert_int_eq(w.rc, 1);
    ck_assert_int_eq(cf_loop_condition_free(c), CF_EINVALSTATE); /* its lock has a waiter */
    finish(loop, th);
    finish(loop, t);
    ck_assert_int_eq(w.rc, 0);
    ck_assert(w.held);
    ck_assert_int_eq(w.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    ck_assert(!cf_loop_lock_locked(lock));
    cf_future_unref(t);
    cf_future_unref(th);
    ck_assert_int_eq(cf_loop_condition_free(c), 0);
    cf_loop_free(loop);
}
END_TEST

/* gh-112202: notify(1) and a cancel of the notified waiter in the same iteration. The wake-up
 * is not lost: the notified waiter returns 0 (it had it) and the other keeps waiting; a
 * waiter cancelled before the notify is withdrawn and the notify goes to the next one. */
START_TEST(test_condition_notify_races_cancel)
{
    cf_loop *loop = new_loop();
    cf_loop_condition *c;
    ck_assert_int_eq(cf_loop_condition_new(&c, loop, NULL), 0);
    cf_loop_lock *lock = cf_loop_condition_lock(c);
    cwaiter w[3] = {make_cwaiter(c), make_cwaiter(c), make_cwaiter(c)};
    cf_future *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = spawn(loop, cond_waiter, &w[i]);
    step(loop);
    /* Notified, then cancelled. */
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), 0);
    ck_assert_int_eq(cf_loop_condition_notify(c, 1), 0);
    ck_assert(cf_future_cancel(t[0]));
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    finish(loop, t[0]);
    ck_assert_int_eq(w[0].rc, 0);
    ck_assert_int_eq(w[0].after, CF_ECANCELLED);
    ck_assert_int_eq(w[1].rc, 1); /* one notify, one waiter woken */
    ck_assert_int_eq(w[2].rc, 1);
    /* Cancelled, then notified: the notify skips it. */
    ck_assert(cf_future_cancel(t[1]));
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), 0);
    ck_assert_int_eq(cf_loop_condition_notify(c, 1), 0);
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    finish(loop, t[1]);
    finish(loop, t[2]);
    ck_assert_int_eq(w[1].rc, CF_ECANCELLED);
    ck_assert(w[1].held); /* cancelled waits also return with the lock */
    ck_assert_int_eq(w[2].rc, 0);
    ck_assert_int_eq(w[2].after, 0);
    for (int i = 0; i < 3; i++)
        cf_future_unref(t[i]);
    ck_assert(!cf_loop_lock_locked(lock));
    cf_loop_condition_free(c);
    cf_loop_free(loop);
}
END_TEST

typedef struct counter_cond {
    cf_loop_condition *cond;
    int value;
    int rc;
} counter_cond;

static bool reached_three(void *data)
{
    return ((counter_cond *)data)->value >= 3;
}

static int wait_for_three(void *arg, void **result)
{
    (void)result;
    counter_cond *cc = arg;
    cf_loop_lock *lock = cf_loop_condition_lock(cc->cond);
    ck_assert_int_eq(cf_loop_condition_wait(cc->cond), CF_EINVALSTATE); /* lock not held */
    ck_assert_int_eq(cf_loop_condition_wait_for(cc->cond, NULL, cc), CF_EINVAL);
    ck_assert_int_eq(cf_loop_lock_acquire(lock), 0);
    cc->rc = cf_loop_condition_wait_for(cc->cond, reached_three, cc);
    ck_assert(cf_loop_lock_locked(lock));
    ck_assert_int_eq(cf_loop_lock_release(lock), 0);
    return cc->rc;
}

static int bump_task(void *arg, void **result)
{
    (void)result;
    counter_cond *cc = arg;
    cf_loop_lock *lock = cf_loop_condition_lock(cc->cond);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(cf_loop_lock_acquire(lock), 0);
        cc->value++;
        ck_assert_int_eq(cf_loop_condition_notify_all(cc->cond), 0);
        ck_assert_int_eq(cf_loop_lock_release(lock), 0);
        ck_assert_int_eq(cf_sleep(0), 0);
    }
    return 0;
}

START_TEST(test_condition_wait_for_and_shared_lock)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *lock;
    ck_assert_int_eq(cf_loop_lock_new(&lock, loop), 0);
    counter_cond cc = {.rc = 1};
    ck_assert_int_eq(cf_loop_condition_new(&cc.cond, loop, lock), 0);
    ck_assert_ptr_eq(cf_loop_condition_lock(cc.cond), lock);
    cf_future *tw = spawn(loop, wait_for_three, &cc);
    cf_future *tb = spawn(loop, bump_task, &cc);
    finish(loop, tw);
    finish(loop, tb);
    ck_assert_int_eq(cc.rc, 0);
    ck_assert_int_eq(cc.value, 3);
    cf_future_unref(tw);
    cf_future_unref(tb);
    cf_loop_condition_free(cc.cond);
    ck_assert(!cf_loop_lock_locked(lock));
    cf_loop_lock_free(lock); /* the caller's lock outlives the condition */
    cf_loop_free(loop);
}
END_TEST

/* ---- Queue ---- */

typedef struct getter {
    cf_loop_queue *q;
    void *item;
    int rc;
    int after;
} getter;

static int getter_task(void *arg, void **result)
{
    (void)result;
    getter *g = arg;
    g->rc = cf_loop_queue_get(&g->item, g->q);
    g->after = cf_sleep(0);
    return g->rc ? g->rc : g->after;
}

static getter make_getter(cf_loop_queue *q)
{
    return (getter){.q = q, .item = (void *)-1, .rc = 1, .after = 1};
}

/* bpo-23812: put_nowait hands the item to a waiting getter, which is cancelled before it
 * runs. The item must not be lost: the get returns it. */
START_TEST(test_queue_get_handed_then_cancelled)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, NULL), 0);
    getter g = make_getter(q);
    cf_future *t = spawn(loop, getter_task, &g);
    step(loop);
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)42), 0);
    ck_assert(cf_loop_queue_empty(q)); /* straight to the getter */
    ck_assert(cf_future_cancel(t));
    finish(loop, t);
    ck_assert_int_eq(g.rc, 0);
    ck_assert_ptr_eq(g.item, (void *)42);
    ck_assert_int_eq(g.after, CF_ECANCELLED);
    ck_assert(cf_future_cancelled(t));
    ck_assert(cf_loop_queue_empty(q));
    cf_future_unref(t);
    cf_loop_queue_free(q);
    cf_loop_free(loop);
}
END_TEST

/* gh-108042: a getter cancelled while waiting is withdrawn; the next item goes to the next
 * getter (nothing stranded). Two items handed to two getters, the first cancelled: each still
 * gets its own. */
START_TEST(test_queue_cancelled_getters_strand_nobody)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, NULL), 0);
    getter g[4] = {make_getter(q), make_getter(q), make_getter(q), make_getter(q)};
    cf_future *t[4];
    for (int i = 0; i < 4; i++)
        t[i] = spawn(loop, getter_task, &g[i]);
    step(loop);
    ck_assert(cf_future_cancel(t[0]));
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)1), 0); /* to g[1] */
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)2), 0); /* to g[2] */
    ck_assert(cf_future_cancel(t[1]));
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)3), 0); /* to g[3] */
    for (int i = 0; i < 4; i++)
        finish(loop, t[i]);
    ck_assert_int_eq(g[0].rc, CF_ECANCELLED);
    ck_assert_ptr_null(g[0].item);
    ck_assert_int_eq(g[1].rc, 0);
    ck_assert_ptr_eq(g[1].item, (void *)1);
    ck_assert_int_eq(g[1].after, CF_ECANCELLED);
    ck_assert_int_eq(g[2].rc, 0);
    ck_assert_ptr_eq(g[2].item, (void *)2);
    ck_assert_int_eq(g[3].rc, 0);
    ck_assert_ptr_eq(g[3].item, (void *)3);
    ck_assert(cf_loop_queue_empty(q));
    for (int i = 0; i < 4; i++)
        cf_future_unref(t[i]);
    cf_loop_queue_free(q);
    cf_loop_free(loop);
}
END_TEST

typedef struct putter {
    cf_loop_queue *q;
    void *item;
    int rc;
    int after;
} putter;

static int putter_task(void *arg, void **result)
{
    (void)result;
    putter *p = arg;
    p->rc = cf_loop_queue_put(p->q, p->item);
    p->after = cf_sleep(0);
    return p->rc ? p->rc : p->after;
}

/* Putters on a full queue: one cancelled while waiting (its item never enters), one cancelled
 * after a get made room for it (its item is in, exactly once), one served normally. */
START_TEST(test_queue_putters_and_cancellation)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, &(cf_loop_queue_options){.maxsize = 1}), 0);
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)10), 0);
    putter p[3];
    cf_future *t[3];
    for (int i = 0; i < 3; i++) {
        p[i] = (putter){.q = q, .item = (void *)(intptr_t)(11 + i), .rc = 1, .after = 1};
        t[i] = spawn(loop, putter_task, &p[i]);
    }
    step(loop);
    ck_assert_int_eq(cf_loop_queue_free(q), CF_EINVALSTATE);
    ck_assert(cf_future_cancel(t[0])); /* waiting: withdrawn */
    void *item;
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)10);
    ck_assert(cf_loop_queue_full(q)); /* p[1]'s item moved in */
    ck_assert(cf_future_cancel(t[1]));
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)12);
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)13);
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), CF_EAGAIN);
    for (int i = 0; i < 3; i++)
        finish(loop, t[i]);
    ck_assert_int_eq(p[0].rc, CF_ECANCELLED);
    ck_assert_int_eq(p[1].rc, 0);
    ck_assert_int_eq(p[1].after, CF_ECANCELLED);
    ck_assert_int_eq(p[2].rc, 0);
    ck_assert_int_eq(p[2].after, 0);
    for (int i = 0; i < 3; i++)
        cf_future_unref(t[i]);
    cf_loop_queue_free(q);
    cf_loop_free(loop);
}
END_TEST

/* Producer/consumer through a small bounded queue, with join/task_done: every item arrives
 * once, in order, and join returns only after the last task_done. */
typedef struct pc {
    cf_loop_queue *q;
    int n;
    int received[200];
    int nreceived;
    bool joined;
    int join_rc;
} pc;

static int producer(void *arg, void **result)
{
    (void)result;
    pc *s = arg;
    for (intptr_t i = 0; i < s->n; i++)
        ck_assert_int_eq(cf_loop_queue_put(s->q, (void *)i), 0);
    s->join_rc = cf_loop_queue_join(s->q);
    s->joined = true;
    return s->join_rc;
}

static int consumer(void *arg, void **result)
{
    (void)result;
    pc *s = arg;
    while (s->nreceived < s->n) {
        void *item;
        ck_assert_int_eq(cf_loop_queue_get(&item, s->q), 0);
        s->received[s->nreceived++] = (int)(intptr_t)item;
        if (s->nreceived % 3 == 0)
            ck_assert_int_eq(cf_sleep(0), 0);
        ck_assert(!s->joined);
        ck_assert_int_eq(cf_loop_queue_task_done(s->q), 0);
    }
    return 0;
}

START_TEST(test_queue_producer_consumer_join)
{
    cf_loop *loop = new_loop();
    pc s = {.n = 200, .join_rc = 1};
    ck_assert_int_eq(cf_loop_queue_new(&s.q, loop, &(cf_loop_queue_options){.maxsize = 4}), 0);
    cf_future *tp = spawn(loop, producer, &s);
    cf_future *tc = spawn(loop, consumer, &s);
    finish(loop, tp);
    finish(loop, tc);
    ck_assert(s.joined);
    ck_assert_int_eq(s.join_rc, 0);
    ck_assert_int_eq(s.nreceived, 200);
    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(s.received[i], i);
    cf_future_unref(tp);
    cf_future_unref(tc);
    cf_loop_queue_free(s.q);
    cf_loop_free(loop);
}
END_TEST

static int join_task(void *arg, void **result)
{
    (void)result;
    return cf_loop_queue_join(arg);
}

START_TEST(test_queue_join_cancelled_and_immediate)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, NULL), 0);
    cf_future *t0 = spawn(loop, join_task, q); /* nothing unfinished: returns at once */
    finish(loop, t0);
    ck_assert_int_eq(cf_future_result(NULL, t0, 0), 0);
    ck_assert_int_eq(cf_loop_queue_try_put(q, NULL), 0);
    cf_future *t1 = spawn(loop, join_task, q), *t2 = spawn(loop, join_task, q);
    step(loop);
    ck_assert(cf_future_cancel(t1));
    finish(loop, t1);
    ck_assert(cf_future_cancelled(t1));
    ck_assert(!cf_future_done(t2));
    ck_assert_int_eq(cf_loop_queue_task_done(q), 0);
    finish(loop, t2);
    ck_assert_int_eq(cf_future_result(NULL, t2, 0), 0);
    cf_future_unref(t0);
    cf_future_unref(t1);
    cf_future_unref(t2);
    cf_loop_queue_free(q); /* the item is dropped */
    cf_loop_free(loop);
}
END_TEST

/* LIFO and priority queues hand a waiting getter the item directly, and a waiting putter's
 * item joins in its order. */
START_TEST(test_queue_orders_with_waiters)
{
    cf_loop *loop = new_loop();
    cf_loop_queue *q;
    ck_assert_int_eq(
        cf_loop_queue_new(&q, loop,
                          &(cf_loop_queue_options){.order = CF_LOOP_QUEUE_LIFO, .maxsize = 2}),
        0);
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)1), 0);
    ck_assert_int_eq(cf_loop_queue_try_put(q, (void *)2), 0);
    putter p = {.q = q, .item = (void *)3, .rc = 1, .after = 1};
    cf_future *tp = spawn(loop, putter_task, &p);
    step(loop);
    void *item;
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)2);
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)3); /* the putter's item is on top */
    ck_assert_int_eq(cf_loop_queue_try_get(&item, q), 0);
    ck_assert_ptr_eq(item, (void *)1);
    finish(loop, tp);
    ck_assert_int_eq(p.rc, 0);
    cf_future_unref(tp);
    cf_loop_queue_free(q);
    cf_loop_free(loop);
}
END_TEST

/* ---- misuse from tasks ---- */

typedef struct foreign {
    cf_loop_lock *lock;
    cf_loop_queue *queue;
    int rc[3];
} foreign;

static int foreign_task(void *arg, void **result)
{
    (void)result;
    foreign *f = arg;
    void *item;
    f->rc[0] = cf_loop_lock_acquire(f->lock);
    f->rc[1] = cf_loop_queue_get(&item, f->queue);
    f->rc[2] = cf_loop_queue_put(f->queue, NULL);
    return 0;
}

/* A task of another loop (on the same thread) cannot wait on a primitive of this loop. */
START_TEST(test_task_of_another_loop_is_refused)
{
    cf_loop *loop = new_loop(), *other = new_loop();
    foreign f = {0};
    ck_assert_int_eq(cf_loop_lock_new(&f.lock, loop), 0);
    ck_assert_int_eq(cf_loop_queue_new(&f.queue, loop, NULL), 0);
    cf_future *t = spawn(other, foreign_task, &f);
    finish(other, t);
    ck_assert_int_eq(f.rc[0], CF_EPERM);
    ck_assert_int_eq(f.rc[1], CF_EPERM);
    ck_assert_int_eq(f.rc[2], CF_EPERM);
    ck_assert(!cf_loop_lock_locked(f.lock));
    ck_assert(cf_loop_queue_empty(f.queue));
    cf_future_unref(t);
    cf_loop_lock_free(f.lock);
    cf_loop_queue_free(f.queue);
    cf_loop_free(other);
    cf_loop_free(loop);
}
END_TEST

/* Close withdraws every waiter: each wait returns CF_ECANCELLED, and the primitives can be
 * freed afterwards (also after the loop). */
START_TEST(test_close_withdraws_waiters)
{
    cf_loop *loop = new_loop();
    cf_loop_lock *lock;
    cf_loop_queue *q;
    cf_loop_condition *c;
    ck_assert_int_eq(cf_loop_lock_new(&lock, loop), 0);
    ck_assert_int_eq(cf_loop_queue_new(&q, loop, NULL), 0);
    ck_assert_int_eq(cf_loop_condition_new(&c, loop, NULL), 0);
    ck_assert_int_eq(cf_loop_lock_try_acquire(lock), 0);
    holder h = make_holder(true, lock, 1, NULL, NULL);
    getter g = make_getter(q);
    cwaiter w = make_cwaiter(c);
    cf_future *t[3] = {spawn(loop, holder_task, &h), spawn(loop, getter_task, &g),
                       spawn(loop, cond_waiter, &w)};
    step(loop);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    ck_assert_int_eq(h.got, CF_ECANCELLED);
    ck_assert_int_eq(g.rc, CF_ECANCELLED);
    ck_assert_int_eq(w.rc, CF_ECANCELLED);
    ck_assert(w.held); /* the lock was free */
    for (int i = 0; i < 3; i++) {
        ck_assert(cf_future_cancelled(t[i]));
        cf_future_unref(t[i]);
    }
    cf_loop_free(loop);
    ck_assert_int_eq(cf_loop_lock_free(lock), 0);
    ck_assert_int_eq(cf_loop_queue_free(q), 0);
    ck_assert_int_eq(cf_loop_condition_free(c), 0);
}
END_TEST

#endif /* CF_TEST_NO_COROUTINES */

static Suite *suite(void)
{
    Suite *s = suite_create("loop_sync");
    TCase *tc = cf_test_tcase("basics");
    tcase_add_test(tc, test_misuse_codes);
    tcase_add_test(tc, test_other_thread_is_refused);
    tcase_add_test(tc, test_queue_orders_without_tasks);
    tcase_add_test(tc, test_priority_queue_is_stable);
    suite_add_tcase(s, tc);
#ifndef CF_TEST_NO_COROUTINES
    tc = cf_test_tcase("lock_semaphore");
    tcase_add_test(tc, test_lock_handed_then_cancelled);
    tcase_add_test(tc, test_semaphore_handed_then_cancelled);
    tcase_add_test(tc, test_lock_cancelled_while_waiting);
    tcase_add_test(tc, test_semaphore_cancelled_while_waiting);
    tcase_add_test(tc, test_lock_fifo);
    tcase_add_test(tc, test_semaphore_fifo);
    tcase_add_test(tc, test_semaphore_gh90155_script);
    tcase_add_test(tc, test_semaphore_releases_and_bound);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("event_condition");
    tcase_add_test(tc, test_event);
    tcase_add_test(tc, test_event_woken_then_cancelled);
    tcase_add_test(tc, test_condition_cancel_after_notify);
    tcase_add_test(tc, test_condition_cancel_while_relocking);
    tcase_add_test(tc, test_condition_notify_races_cancel);
    tcase_add_test(tc, test_condition_wait_for_and_shared_lock);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("queue");
    tcase_add_test(tc, test_queue_get_handed_then_cancelled);
    tcase_add_test(tc, test_queue_cancelled_getters_strand_nobody);
    tcase_add_test(tc, test_queue_putters_and_cancellation);
    tcase_add_test(tc, test_queue_producer_consumer_join);
    tcase_add_test(tc, test_queue_join_cancelled_and_immediate);
    tcase_add_test(tc, test_queue_orders_with_waiters);
    suite_add_tcase(s, tc);
    tc = cf_test_tcase("misuse_close");
    tcase_add_test(tc, test_task_of_another_loop_is_refused);
    tcase_add_test(tc, test_close_withdraws_waiters);
    suite_add_tcase(s, tc);
#endif
    return s;
}

CF_TEST_MAIN(suite)
