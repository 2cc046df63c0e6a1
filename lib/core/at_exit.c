/* Finishing pending work at exit (the thread pool's finish_at_exit option).
 *
 * C drops a pool's queued and running work when main returns; Python joins its executors'
 * threads at interpreter exit. Executors that opt in register here, and one atexit handler,
 * installed with the first of them, finishes their work: it shuts each registered executor
 * down without waiting (no new work; workers leave once the queue is empty), then waits for
 * every counted worker thread to be gone, then lets each executor join its exited threads.
 *
 * The wait counts threads, not executors: while the program exits other threads still run, and
 * one of them may free an executor at any moment, so the handler never sleeps on an executor's
 * memory. It touches an executor only under `registry.lock`, which unregistering (the first
 * step of freeing one) also takes. Nothing blocks under that lock: shutting down without
 * waiting and joining threads that have already left are both short.
 *
 * Workers are counted by the thread that starts them (before the thread exists, so the count
 * is never low while work remains) and uncounted by the worker itself as its very last act. */
#include <limits.h>
#include <stdlib.h>

#include "core/at_exit.h"
#include "core/list.h"

static struct {
    cf__lock lock;          /* guards `head` and the registered flags */
    cf__dlink *head;        /* registered entries, newest first */
    _Atomic uint32_t alive; /* counted worker threads that have not finished */
    _Atomic bool exiting;   /* the handler has started: nothing registers anymore */
    bool handler_installed;
} registry;

/* Whether the calling thread is a counted worker (exit() called from a task or callback). */
static _Thread_local bool counted_self CF__TLS_FAST;

static cf__at_exit_entry *entry_of(cf__dlink *l)
{
    return CF__CONTAINER_OF(l, cf__at_exit_entry, link);
}

static void finish_at_exit(void)
{
    atomic_store(&registry.exiting, true);
    cf__lock_acquire(&registry.lock);
    for (cf__dlink *l = registry.head; l; l = l->next)
        entry_of(l)->begin(entry_of(l));
    cf__lock_release(&registry.lock);
    /* A worker that called exit() itself stays counted: wait for the others. */
    uint32_t self = counted_self ? 1 : 0;
    uint32_t alive;
    while ((alive = atomic_load(&registry.alive)) > self)
        cf__futex_wait(&registry.alive, alive, CF__FOREVER_NS);
    cf__lock_acquire(&registry.lock);
    for (cf__dlink *l = registry.head; l; l = l->next)
        entry_of(l)->end(entry_of(l));
    cf__lock_release(&registry.lock);
}

/* A child of fork() inherits the registry but none of the threads: it starts empty, and a lock
 * held across the fork by a thread of the parent is free again. */
static void registry_prefork(void)
{
    cf__lock_acquire(&registry.lock);
}

static void registry_postfork_parent(void)
{
    cf__lock_release(&registry.lock);
}

static void registry_postfork_child(void)
{
    registry.head = NULL;
    atomic_store(&registry.alive, 0);
    atomic_store(&registry.exiting, false);
    counted_self = false;
    atomic_store_explicit(&registry.lock.word, 0, memory_order_relaxed);
}

static const cf__fork_hooks registry_fork_hooks = {registry_prefork, registry_postfork_parent,
                                                   registry_postfork_child};

int cf__at_exit_register(cf__at_exit_entry *e)
{
    cf__fork_hooks_install(CF__FORK_LEVEL_AT_EXIT, &registry_fork_hooks);
    int rc = 0;
    cf__lock_acquire(&registry.lock);
    if (!registry.handler_installed)
        registry.handler_installed = atexit(finish_at_exit) == 0;
    if (!registry.handler_installed)
        rc = CF_ENOMEM;
    else if (!atomic_load(&registry.exiting)) {
        cf__dlist_push(&registry.head, &e->link);
        e->registered = true;
    }
    cf__lock_release(&registry.lock);
    return rc;
}

void cf__at_exit_unregister(cf__at_exit_entry *e)
{
    cf__lock_acquire(&registry.lock);
    cf__dlist_remove(&registry.head, &e->link);
    e->registered = false;
    cf__lock_release(&registry.lock);
}

void cf__at_exit_worker_starting(void)
{
    atomic_fetch_add(&registry.alive, 1);
}

void cf__at_exit_worker_running(void)
{
    counted_self = true;
}

void cf__at_exit_worker_gone(void)
{
    atomic_fetch_sub(&registry.alive, 1);
    if (atomic_load(&registry.exiting))
        cf__futex_wake(&registry.alive, INT_MAX);
}
