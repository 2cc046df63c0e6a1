/* Coordination primitives for loop tasks: Lock, Event, Semaphore (and BoundedSemaphore),
 * Condition (asyncio's locks.py). The queue is in loop/queue.c.
 *
 * One mechanism serves them all: a FIFO of parked tasks (cf__wait nodes on the waiters' own
 * stacks, loop/task.c) and direct hand-off. Releasing a lock or a permit with tasks waiting
 * gives it to the oldest waiter in the same step, instead of freeing it and letting the waiter
 * race for it when it runs. So a lock with waiters is never free, a semaphore with waiters has
 * no free permit, and withdrawing a cancelled waiter never has to wake anyone: it holds
 * nothing. A waiter cancelled after the hand-off keeps what it was given (its wait returns 0
 * and the cancellation reaches its next suspension point), which is why nothing is lost
 * whichever way the race between release and cancel goes. */
#include "cfutures/loop_sync.h"
#include "loop/loop_internal.h"

/* Every primitive starts with its loop, on which it holds a reference. */
typedef struct prim {
    cf_loop *loop;
} prim;

static int prim_new(void **out, size_t size, cf_loop *loop)
{
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    prim *p = cf__calloc(1, size);
    if (!p)
        return CF_ENOMEM;
    p->loop = loop;
    cf__loop_ref(loop);
    *out = p;
    return 0;
}

static void prim_free(prim *p)
{
    cf_loop *loop = p->loop;
    cf__free(p);
    cf__loop_unref(loop);
}

/* The check of the operations that need the loop thread but no task. */
static int prim_check(const void *p)
{
    return p ? cf__loop_thread_check(((const prim *)p)->loop) : CF_EINVAL;
}

/* The check of the operations that may wait. */
static int prim_task_check(const void *p)
{
    return p ? cf__task_check(((const prim *)p)->loop) : CF_EINVAL;
}

/* ---- Lock ---- */

struct cf_loop_lock {
    cf_loop *loop;
    cf__wait_list waiters;
    bool locked;
};

int cf_loop_lock_new(cf_loop_lock **out, cf_loop *loop)
{
    return prim_new((void **)out, sizeof(cf_loop_lock), loop);
}

int cf_loop_lock_free(cf_loop_lock *lock)
{
    if (!lock)
        return 0;
    if (!cf__wait_list_empty(&lock->waiters))
        return CF_EINVALSTATE;
    prim_free((prim *)lock);
    return 0;
}

/* Takes the lock, waiting if it is held. A shielded wait (a Condition taking its lock back)
 * cannot be withdrawn by a cancellation. */
static int lock_take(cf_loop_lock *lock, bool shielded)
{
    if (!lock->locked) {
        lock->locked = true;
        return 0;
    }
    cf__wait w = {.shielded = shielded};
    return cf__task_park(&w, &lock->waiters);
}

int cf_loop_lock_acquire(cf_loop_lock *lock)
{
    int rc = prim_task_check(lock);
    return rc ? rc : lock_take(lock, false);
}

int cf_loop_lock_try_acquire(cf_loop_lock *lock)
{
    int rc = prim_check(lock);
    if (rc)
        return rc;
    if (lock->locked)
        return CF_EAGAIN;
    lock->locked = true;
    return 0;
}

static void lock_give(cf_loop_lock *lock)
{
    if (cf__wait_list_empty(&lock->waiters))
        lock->locked = false;
    else
        cf__task_wake(lock->waiters.head, 0); /* handed over: stays locked */
}

int cf_loop_lock_release(cf_loop_lock *lock)
{
    int rc = prim_check(lock);
    if (rc)
        return rc;
    if (!lock->locked)
        return CF_EINVALSTATE;
    lock_give(lock);
    return 0;
}

bool cf_loop_lock_locked(const cf_loop_lock *lock)
{
    return lock && lock->locked;
}

/* ---- Event ---- */

struct cf_loop_event {
    cf_loop *loop;
    cf__wait_list waiters;
    bool set;
};

int cf_loop_event_new(cf_loop_event **out, cf_loop *loop)
{
    return prim_new((void **)out, sizeof(cf_loop_event), loop);
}

int cf_loop_event_free(cf_loop_event *event)
{
    if (!event)
        return 0;
    if (!cf__wait_list_empty(&event->waiters))
        return CF_EINVALSTATE;
    prim_free((prim *)event);
    return 0;
}

int cf_loop_event_wait(cf_loop_event *event)
{
    int rc = prim_task_check(event);
    if (rc)
        return rc;
    if (event->set)
        return 0;
    cf__wait w = {0};
    return cf__task_park(&w, &event->waiters);
}

int cf_loop_event_set(cf_loop_event *event)
{
    int rc = prim_check(event);
    if (rc)
        return rc;
    if (!event->set) {
        event->set = true;
        cf__task_wake_all(&event->waiters, 0);
    }
    return 0;
}

int cf_loop_event_clear(cf_loop_event *event)
{
    int rc = prim_check(event);
    if (rc)
        return rc;
    event->set = false;
    return 0;
}

bool cf_loop_event_is_set(const cf_loop_event *event)
{
    return event && event->set;
}

/* ---- Semaphore ---- */

struct cf_loop_semaphore {
    cf_loop *loop;
    cf__wait_list waiters;
    size_t value; /* free permits; 0 whenever tasks wait */
    size_t bound; /* bounded: the initial value, which releases may not exceed */
    bool bounded;
};

static int semaphore_new(cf_loop_semaphore **out, cf_loop *loop, size_t value, bool bounded)
{
    int rc = prim_new((void **)out, sizeof(cf_loop_semaphore), loop);
    if (rc == 0) {
        (*out)->value = value;
        (*out)->bound = value;
        (*out)->bounded = bounded;
    }
    return rc;
}

int cf_loop_semaphore_new(cf_loop_semaphore **out, cf_loop *loop, size_t value)
{
    return semaphore_new(out, loop, value, false);
}

int cf_loop_bounded_semaphore_new(cf_loop_semaphore **out, cf_loop *loop, size_t value)
{
    return semaphore_new(out, loop, value, true);
}

int cf_loop_semaphore_free(cf_loop_semaphore *sem)
{
    if (!sem)
        return 0;
    if (!cf__wait_list_empty(&sem->waiters))
        return CF_EINVALSTATE;
    prim_free((prim *)sem);
    return 0;
}

int cf_loop_semaphore_acquire(cf_loop_semaphore *sem)
{
    int rc = prim_task_check(sem);
    if (rc)
        return rc;
    if (sem->value > 0) {
        sem->value--;
        return 0;
    }
    cf__wait w = {0};
    return cf__task_park(&w, &sem->waiters);
}

int cf_loop_semaphore_try_acquire(cf_loop_semaphore *sem)
{
    int rc = prim_check(sem);
    if (rc)
        return rc;
    if (sem->value == 0)
        return CF_EAGAIN;
    sem->value--;
    return 0;
}

int cf_loop_semaphore_release(cf_loop_semaphore *sem)
{
    int rc = prim_check(sem);
    if (rc)
        return rc;
    if (sem->bounded && sem->value >= sem->bound)
        return CF_EINVALSTATE;
    if (cf__wait_list_empty(&sem->waiters))
        sem->value++;
    else
        cf__task_wake(sem->waiters.head, 0); /* the permit goes straight to it */
    return 0;
}

size_t cf_loop_semaphore_value(const cf_loop_semaphore *sem)
{
    return sem ? sem->value : 0;
}

bool cf_loop_semaphore_locked(const cf_loop_semaphore *sem)
{
    return sem && sem->value == 0;
}

/* ---- Condition ---- */

struct cf_loop_condition {
    cf_loop *loop;
    cf__wait_list waiters;
    cf_loop_lock *lock;
    bool own_lock;
};

int cf_loop_condition_new(cf_loop_condition **out, cf_loop *loop, cf_loop_lock *lock)
{
    if (out && lock && lock->loop != loop) {
        *out = NULL;
        return CF_EINVAL;
    }
    int rc = prim_new((void **)out, sizeof(cf_loop_condition), loop);
    if (rc)
        return rc;
    cf_loop_condition *c = *out;
    c->lock = lock;
    if (!lock) {
        rc = cf_loop_lock_new(&c->lock, loop);
        if (rc) {
            prim_free((prim *)c);
            *out = NULL;
            return rc;
        }
        c->own_lock = true;
    }
    return 0;
}

int cf_loop_condition_free(cf_loop_condition *cond)
{
    if (!cond)
        return 0;
    if (!cf__wait_list_empty(&cond->waiters) ||
        (cond->own_lock && !cf__wait_list_empty(&cond->lock->waiters)))
        return CF_EINVALSTATE;
    if (cond->own_lock)
        cf_loop_lock_free(cond->lock);
    prim_free((prim *)cond);
    return 0;
}

cf_loop_lock *cf_loop_condition_lock(const cf_loop_condition *cond)
{
    return cond ? cond->lock : NULL;
}

int cf_loop_condition_wait(cf_loop_condition *cond)
{
    int rc = prim_task_check(cond);
    if (rc)
        return rc;
    if (!cond->lock->locked)
        return CF_EINVALSTATE;
    lock_give(cond->lock);
    cf__wait w = {0};
    rc = cf__task_park(&w, &cond->waiters);
    /* The lock is taken back whatever happened, and a cancellation cannot interrupt that
     * (asyncio: bpo-22970, bpo-42600). Only a closing loop can make it fail. */
    int relock = lock_take(cond->lock, true);
    return rc ? rc : relock;
}

int cf_loop_condition_wait_for(cf_loop_condition *cond, bool (*predicate)(void *data), void *data)
{
    if (!predicate)
        return CF_EINVAL;
    int rc = prim_task_check(cond);
    if (rc)
        return rc;
    if (!cond->lock->locked)
        return CF_EINVALSTATE;
    while (!predicate(data)) {
        rc = cf_loop_condition_wait(cond);
        if (rc)
            return rc;
    }
    return 0;
}

int cf_loop_condition_notify(cf_loop_condition *cond, size_t n)
{
    int rc = prim_check(cond);
    if (rc)
        return rc;
    if (!cond->lock->locked)
        return CF_EINVALSTATE;
    for (; n > 0 && !cf__wait_list_empty(&cond->waiters); n--)
        cf__task_wake(cond->waiters.head, 0);
    return 0;
}

int cf_loop_condition_notify_all(cf_loop_condition *cond)
{
    return cf_loop_condition_notify(cond, SIZE_MAX);
}
