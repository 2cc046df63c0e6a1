/* thread_per_task: the executor of thread_per_task.h, one detached thread per task.
 *
 * State: a mutex, the number of live task threads (a condition variable tells shutdown(wait)
 * when it drops), the futures accepted but not started (so that shutdown(cancel_futures) can
 * cancel them), and a reference count: the handle holds one and every task thread holds one, so
 * that the last of them frees the state, even when a task frees its own executor. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include <cfutures/executor_impl.h>

#include "thread_per_task.h"

typedef struct pending {
    struct pending *prev, *next;
    cf_future *future; /* the executor's reference, handed to the thread */
} pending;

typedef struct tpt {
    pthread_mutex_t mu;
    pthread_cond_t exited;
    unsigned threads; /* task threads alive */
    unsigned refs;    /* the handle + one per task thread */
    bool shutdown;
    pending waiting; /* sentinel of the accepted, not yet started futures */
} tpt;

typedef struct start {
    tpt *ex;
    pending node;
} start;

static _Thread_local tpt *current; /* the executor whose task this thread runs */

static void unref(tpt *ex) /* mu held; unlocks */
{
    bool last = --ex->refs == 0;
    pthread_mutex_unlock(&ex->mu);
    if (last) {
        pthread_cond_destroy(&ex->exited);
        pthread_mutex_destroy(&ex->mu);
        free(ex);
    }
}

static void *task_thread(void *arg)
{
    start *s = arg;
    tpt *ex = s->ex;
    pthread_mutex_lock(&ex->mu);
    s->node.prev->next = s->node.next; /* started: out of shutdown's reach */
    s->node.next->prev = s->node.prev;
    pthread_mutex_unlock(&ex->mu);
    current = ex;
    cf_task_run(s->node.future); /* skips a future cancelled meanwhile */
    cf_future_unref(s->node.future);
    current = NULL;
    free(s);
    pthread_mutex_lock(&ex->mu);
    ex->threads--;
    pthread_cond_broadcast(&ex->exited);
    unref(ex);
    return NULL;
}

/* Starts one thread. If none can be started the task is still accepted: its future fails and
 * says why (the contract: an accepted task runs, or its future says why not). */
static void launch(tpt *ex, start *s) /* mu held */
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&(pthread_t){0}, &attr, task_thread, s);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        ex->threads++;
        ex->refs++;
        return;
    }
    s->node.prev->next = s->node.next;
    s->node.next->prev = s->node.prev;
    cf_future *f = s->node.future;
    free(s);
    /* Completing runs callbacks, which may submit here: not under our lock. */
    pthread_mutex_unlock(&ex->mu);
    cf_future_set_exception(f, CF_EAGAIN, "thread_per_task: no thread could be started");
    cf_future_unref(f);
    pthread_mutex_lock(&ex->mu);
}

static int tpt_submit(void *impl, cf_future *const *fs, size_t n)
{
    tpt *ex = impl;
    /* All or nothing: allocate everything before accepting anything. */
    start **starts = calloc(n, sizeof(*starts));
    for (size_t i = 0; starts && i < n; i++) {
        starts[i] = malloc(sizeof(**starts));
        if (!starts[i]) {
            while (i--)
                free(starts[i]);
            free(starts);
            starts = NULL;
        }
    }
    if (!starts)
        return CF_ENOMEM;
    pthread_mutex_lock(&ex->mu);
    if (ex->shutdown) {
        pthread_mutex_unlock(&ex->mu);
        for (size_t i = 0; i < n; i++)
            free(starts[i]);
        free(starts);
        return CF_ESHUTDOWN;
    }
    for (size_t i = 0; i < n; i++) { /* accepted: every future is now in the waiting list */
        starts[i]->ex = ex;
        starts[i]->node.future = fs[i];
        starts[i]->node.next = &ex->waiting;
        starts[i]->node.prev = ex->waiting.prev;
        ex->waiting.prev->next = &starts[i]->node;
        ex->waiting.prev = &starts[i]->node;
    }
    for (size_t i = 0; i < n; i++)
        launch(ex, starts[i]);
    pthread_mutex_unlock(&ex->mu);
    free(starts);
    return 0;
}

static int tpt_shutdown(void *impl, bool wait, bool cancel_futures)
{
    tpt *ex = impl;
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    while (cancel_futures && ex->waiting.next != &ex->waiting) {
        /* Cancel outside the lock (callbacks run in this thread); the thread of a cancelled
         * future still owns it and skips it. The reference keeps it alive meanwhile. */
        pending *p = ex->waiting.next;
        p->prev->next = p->next;
        p->next->prev = p->prev;
        p->next = p->prev = p; /* its thread unlinks it again: harmless */
        cf_future *f = cf_future_ref(p->future);
        pthread_mutex_unlock(&ex->mu);
        cf_future_cancel(f);
        cf_future_unref(f);
        pthread_mutex_lock(&ex->mu);
    }
    /* A task of ours that waits counts itself out: it cannot wait for its own thread. */
    unsigned self = current == ex;
    while (wait && ex->threads > self)
        pthread_cond_wait(&ex->exited, &ex->mu);
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

static int tpt_destroy(void *impl)
{
    tpt *ex = impl;
    tpt_shutdown(ex, true, false);
    pthread_mutex_lock(&ex->mu);
    unref(ex); /* the handle's reference; a task thread calling us frees the rest on exit */
    return 0;
}

static const cf_executor_ops tpt_ops = {
    .name = "thread_per_task",
    .submit = tpt_submit,
    .shutdown = tpt_shutdown,
    .destroy = tpt_destroy,
    /* forget: NULL. In a forked child the state is left alone (its threads are not there). */
};

int thread_per_task_new(cf_executor **out)
{
    if (!out)
        return CF_EINVAL;
    tpt *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return CF_ENOMEM;
    pthread_mutex_init(&ex->mu, NULL);
    pthread_cond_init(&ex->exited, NULL);
    ex->refs = 1;
    ex->waiting.next = ex->waiting.prev = &ex->waiting;
    int rc = cf_executor_new(out, &tpt_ops, ex);
    if (rc) {
        pthread_cond_destroy(&ex->exited);
        pthread_mutex_destroy(&ex->mu);
        free(ex);
    }
    return rc;
}

int thread_per_task_threads(const cf_executor *executor)
{
    tpt *ex = cf_executor_impl(executor, &tpt_ops);
    if (!ex)
        return -1;
    pthread_mutex_lock(&ex->mu);
    int n = (int)ex->threads;
    pthread_mutex_unlock(&ex->mu);
    return n;
}
