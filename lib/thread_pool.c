/* The thread-pool executor.
 *
 * One FIFO queue of futures (intrusive, linked through cf_future.next) under one mutex. Idle
 * workers park on their own futex word in a LIFO stack, so the most recently idle (cache-warm)
 * worker is woken first and a submit wakes exactly as many workers as it brings work for, or
 * none when enough workers are already awake. Threads are started under the mutex, which keeps
 * the invariant "queue not empty => at least one thread alive" simple to hold.
 *
 * Accounting that decides whether a submit needs a new thread (all under `mu`):
 *   nthreads  threads started and not exited
 *   nparked   of those, parked in the idle stack
 *   nbusy     of those, inside a task function (decremented, atomically, before the task's future
 *             is completed, so a caller woken by a result sees the worker as available)
 * Workers that are neither busy nor parked are about to look at the queue, so a submit only
 * wakes or starts threads for the work those cannot absorb. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { NAME_MAX_LEN = 15 };

typedef struct worker worker;
typedef struct thread_pool thread_pool;

struct worker {
    thread_pool *pool;
    pthread_t thread;
    worker *next;        /* all workers not yet joined */
    worker *next_parked; /* the idle stack */
    _Atomic uint32_t wake; /* futex word: 0 while parked, 1 once woken */
    unsigned index;
    bool exited;
};

struct thread_pool {
    cf_executor base;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* worker exits (shutdown waiters) and queue room (blocked submitters) */
    cf_future *head;
    cf_future *tail;
    size_t queued;
    worker *workers;
    worker *parked;
    unsigned nthreads;
    unsigned nparked;
    _Atomic unsigned nbusy;
    unsigned waiting_workers;    /* workers of this pool blocked in shutdown(wait) */
    unsigned blocked_submitters; /* submits waiting for queue room */
    unsigned next_index;
    bool shutdown;
    bool broken;
    worker *freeing_worker; /* the worker that called cf_executor_free(), if any */
    unsigned long long threads_started;
    unsigned long long tasks_completed;
    /* options */
    unsigned max_workers;
    unsigned min_workers;
    int (*initializer)(void *);
    void *initializer_arg;
    size_t stack_size;
    size_t max_queue;
    cf_queue_policy policy;
    double queue_timeout;
    int64_t idle_timeout_ns; /* 0: never */
    char prefix[NAME_MAX_LEN + 1];
};

static _Thread_local worker *current_worker;
static _Atomic unsigned pool_counter;

static bool in_own_worker(const thread_pool *pool)
{
    return current_worker && current_worker->pool == pool;
}

/* ---- queue (mu held) ---- */

static void queue_push(thread_pool *pool, cf_future *f)
{
    f->next = NULL;
    if (pool->tail)
        pool->tail->next = f;
    else
        pool->head = f;
    pool->tail = f;
    pool->queued++;
}

static cf_future *queue_pop(thread_pool *pool)
{
    cf_future *f = pool->head;
    if (f) {
        pool->head = f->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->queued--;
    }
    return f;
}

static cf_future *queue_take_all(thread_pool *pool)
{
    cf_future *all = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    return all;
}

/* Pops the most recently parked worker and marks it woken (mu held). The mark is made under
 * mu so that a worker whose park timed out knows for sure whether it is still in the stack. */
static worker *unpark_one(thread_pool *pool)
{
    worker *w = pool->parked;
    pool->parked = w->next_parked;
    pool->nparked--;
    atomic_store_explicit(&w->wake, 1, memory_order_release);
    return w;
}

/* Removes every parked worker from the idle stack and returns them (mu held). */
static worker *unpark_all(thread_pool *pool)
{
    worker *list = NULL;
    while (pool->parked) {
        worker *w = unpark_one(pool);
        w->next_parked = list;
        list = w;
    }
    return list;
}

/* Wakes workers taken with unpark_* (mu held). Not after releasing mu: a worker whose wake flag
 * is set may then run without any futex wake, park again (rewriting next_parked, so the rest of
 * the list would be lost and those workers would sleep for ever, unparked) or exit and be
 * freed. */
static void wake_list(worker *list)
{
    while (list) {
        worker *w = list;
        list = w->next_parked;
        cf__futex_wake(&w->wake, 1);
    }
}

/* ---- breaking the pool (initializer failure) ---- */

static void fail_all(cf_future *list, int code, const char *message)
{
    while (list) {
        cf_future *f = list;
        list = f->next;
        cf_future_set_exception(f, code, message);
        cf_future_unref(f);
    }
}

static void pool_break(thread_pool *pool, int rc)
{
    char message[128];
    snprintf(message, sizeof(message),
             "a thread initializer failed (returned %d); the thread pool is not usable anymore",
             rc);
    pthread_mutex_lock(&pool->mu);
    pool->broken = true;
    cf_future *drained = queue_take_all(pool);
    worker *parked = unpark_all(pool);
    wake_list(parked);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fail_all(drained, CF_EBROKEN, message);
}

/* ---- workers ---- */

static void name_thread(thread_pool *pool, unsigned index)
{
    /* Linux allows 15 characters: shorten the prefix, never the number. */
    char suffix[16], name[40];
    int slen = snprintf(suffix, sizeof(suffix), "_%u", index);
    snprintf(name, sizeof(name), "%.*s%s", NAME_MAX_LEN - slen, pool->prefix, suffix);
    name[NAME_MAX_LEN] = '\0';
    pthread_setname_np(pthread_self(), name);
}

/* Runs a popped future unless it was cancelled; returns whether the task ran. */
static bool run_one(thread_pool *pool, cf_future *f)
{
    bool ran = cf_future_set_running_or_notify_cancel(f) == 1;
    if (ran) {
        bool bytes = cf__future_load(f) & CF__F_TASK_BYTES;
        cf__outcome o;
        cf__task_invoke_future(&o, f);
        atomic_fetch_sub_explicit(&pool->nbusy, 1, memory_order_release);
        cf__task_complete(f, &o, bytes);
    } else {
        atomic_fetch_sub_explicit(&pool->nbusy, 1, memory_order_release);
    }
    cf_future_unref(f);
    return ran;
}

/* Parks until woken or the idle timeout passes; returns true if the thread should exit.
 * Called and returns with mu held. */
static bool park(thread_pool *pool, worker *w)
{
    atomic_store_explicit(&w->wake, 0, memory_order_relaxed);
    w->next_parked = pool->parked;
    pool->parked = w;
    pool->nparked++;
    int64_t deadline = pool->idle_timeout_ns ? cf__now_ns() + pool->idle_timeout_ns
                                             : CF__FOREVER_NS;
    pthread_mutex_unlock(&pool->mu);
    int rc = 0;
    while (atomic_load_explicit(&w->wake, memory_order_acquire) == 0 && rc != CF_ETIMEDOUT)
        rc = cf__futex_wait(&w->wake, 0, deadline);
    pthread_mutex_lock(&pool->mu);
    if (atomic_load_explicit(&w->wake, memory_order_relaxed))
        return false; /* a waker removed us from the stack */
    worker **pp = &pool->parked;
    while (*pp != w)
        pp = &(*pp)->next_parked;
    *pp = w->next_parked;
    pool->nparked--;
    return !pool->head && pool->nthreads > pool->min_workers;
}

static void worker_loop(thread_pool *pool, worker *w)
{
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        cf_future *f = queue_pop(pool);
        if (f) {
            atomic_fetch_add_explicit(&pool->nbusy, 1, memory_order_relaxed);
            if (pool->blocked_submitters)
                pthread_cond_broadcast(&pool->cv);
            pthread_mutex_unlock(&pool->mu);
            bool ran = run_one(pool, f);
            pthread_mutex_lock(&pool->mu);
            pool->tasks_completed += ran;
            continue;
        }
        if (pool->shutdown || pool->broken || park(pool, w))
            break;
    }
}

static void pool_destroy(thread_pool *pool);

static void *worker_main(void *arg)
{
    worker *w = arg;
    thread_pool *pool = w->pool;
    current_worker = w;
    name_thread(pool, w->index);
    int rc = pool->initializer ? pool->initializer(pool->initializer_arg) : 0;
    if (rc) {
        pool_break(pool, rc);
        pthread_mutex_lock(&pool->mu);
    } else {
        worker_loop(pool, w); /* returns with mu held */
    }
    pool->nthreads--;
    w->exited = true;
    bool free_pool = pool->freeing_worker == w;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    current_worker = NULL;
    if (free_pool) {
        /* cf_executor_free() was called on this thread: nobody else can join it. */
        pthread_detach(pthread_self());
        pool_destroy(pool);
    }
    return NULL;
}

/* Joins and frees the records of workers that have exited (mu held; they no longer need it). */
static void reap_exited(thread_pool *pool, worker *except)
{
    worker **pp = &pool->workers;
    while (*pp) {
        worker *w = *pp;
        if (w->exited && w != except) {
            *pp = w->next;
            pthread_join(w->thread, NULL);
            cf__free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Starts one worker (mu held). */
static int spawn(thread_pool *pool)
{
    if (cf__fault(CF__FAULT_THREAD))
        return CF_EAGAIN;
    reap_exited(pool, NULL);
    worker *w = cf__calloc(1, sizeof(*w));
    if (!w)
        return CF_ENOMEM;
    w->pool = pool;
    w->index = pool->next_index;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (pool->stack_size)
        pthread_attr_setstacksize(&attr, pool->stack_size);
    int rc = pthread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc) {
        cf__free(w);
        return rc == EAGAIN ? CF_EAGAIN : CF_ENOMEM;
    }
    pool->next_index++;
    pool->nthreads++;
    pool->threads_started++;
    w->next = pool->workers;
    pool->workers = w;
    return 0;
}

/* ---- submit ---- */

/* Waits for room for `n` tasks in a bounded queue (mu held). */
static int wait_for_room(thread_pool *pool, size_t n)
{
    int64_t deadline;
    cf__deadline(pool->queue_timeout > 0 ? pool->queue_timeout : CF_FOREVER, &deadline);
    pool->blocked_submitters++;
    int rc = 0;
    while (pool->queued + n > pool->max_queue && !pool->shutdown && !pool->broken && rc == 0)
        rc = cf__cond_wait(&pool->cv, &pool->mu, deadline);
    pool->blocked_submitters--;
    if (pool->shutdown)
        return CF_ESHUTDOWN;
    if (pool->broken)
        return CF_EBROKEN;
    return pool->queued + n > pool->max_queue ? CF_ETIMEDOUT : 0;
}

/* Decides how many of `n` tasks go to the queue; the others are for the caller to run (mu
 * held). Returns the count, or a negative error. */
static long admit(thread_pool *pool, size_t n)
{
    if (pool->shutdown)
        return CF_ESHUTDOWN;
    if (pool->broken)
        return CF_EBROKEN;
    if (!pool->max_queue || pool->queued + n <= pool->max_queue)
        return (long)n;
    switch (pool->policy) {
    case CF_QUEUE_REJECT:
        return CF_EFULL;
    case CF_QUEUE_CALLER_RUNS:
        return (long)(pool->max_queue > pool->queued ? pool->max_queue - pool->queued : 0);
    default: {
        int rc = wait_for_room(pool, n);
        return rc ? rc : (long)n;
    }
    }
}

/* Wakes parked workers and starts threads for the work the awake ones cannot absorb (mu held).
 * Returns the workers to pass to wake_list() before mu is released, and an error only if no
 * thread exists. */
static int provide_workers(thread_pool *pool, worker **to_wake)
{
    long busy = (long)atomic_load_explicit(&pool->nbusy, memory_order_relaxed);
    long awake = (long)pool->nthreads - (long)pool->nparked - busy;
    if (awake < 0)
        awake = 0;
    size_t need = pool->queued > (size_t)awake ? pool->queued - (size_t)awake : 0;
    *to_wake = NULL;
    while (need && pool->parked) {
        worker *w = unpark_one(pool);
        w->next_parked = *to_wake;
        *to_wake = w;
        need--;
    }
    int rc = 0;
    while (need && pool->nthreads < pool->max_workers && (rc = spawn(pool)) == 0)
        need--;
    return pool->nthreads ? 0 : (rc ? rc : CF_EAGAIN);
}

static int tp_submit(cf_executor *ex, cf_future **fs, size_t n)
{
    thread_pool *pool = (thread_pool *)ex;
    pthread_mutex_lock(&pool->mu);
    long admitted = admit(pool, n);
    if (admitted < 0) {
        pthread_mutex_unlock(&pool->mu);
        return (int)admitted;
    }
    for (long i = 0; i < admitted; i++)
        queue_push(pool, fs[i]);
    worker *to_wake = NULL;
    int rc = admitted ? provide_workers(pool, &to_wake) : 0;
    if (rc) {
        /* No thread could be started and none exists, so the queue holds only this batch. */
        queue_take_all(pool);
        pthread_mutex_unlock(&pool->mu);
        return rc;
    }
    wake_list(to_wake);
    pthread_mutex_unlock(&pool->mu);
    for (size_t i = (size_t)admitted; i < n; i++) {
        cf__task_run(fs[i]);
        cf_future_unref(fs[i]);
    }
    return 0;
}

/* ---- shutdown and free ---- */

static void cancel_all(cf_future *list)
{
    while (list) {
        cf_future *f = list;
        list = f->next;
        cf_future_cancel(f);
        cf_future_unref(f);
    }
}

/* Waits until every worker has exited, except workers of this pool that are themselves waiting
 * here (a task or callback that called shutdown): they exit when their task returns. */
static void wait_for_workers(thread_pool *pool)
{
    bool inside = in_own_worker(pool);
    pthread_mutex_lock(&pool->mu);
    pool->waiting_workers += inside;
    while (pool->nthreads > pool->waiting_workers)
        pthread_cond_wait(&pool->cv, &pool->mu);
    pool->waiting_workers -= inside;
    pthread_mutex_unlock(&pool->mu);
}

static int tp_shutdown(cf_executor *ex, bool wait, bool cancel_futures)
{
    thread_pool *pool = (thread_pool *)ex;
    pthread_mutex_lock(&pool->mu);
    pool->shutdown = true;
    cf_future *cancelled = cancel_futures ? queue_take_all(pool) : NULL;
    worker *parked = unpark_all(pool);
    wake_list(parked);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    cancel_all(cancelled);
    if (wait)
        wait_for_workers(pool);
    return 0;
}

static void pool_destroy(thread_pool *pool)
{
    worker *self = current_worker;
    while (pool->workers) {
        worker *w = pool->workers;
        pool->workers = w->next;
        if (w != self && w != pool->freeing_worker)
            pthread_join(w->thread, NULL);
        cf__free(w);
    }
    cancel_all(queue_take_all(pool));
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    cf__free(pool);
}

/* In a forked child the threads do not exist and the mutex may be held by a thread that
 * vanished: release only memory. */
static void pool_forget(thread_pool *pool)
{
    while (pool->workers) {
        worker *w = pool->workers;
        pool->workers = w->next;
        cf__free(w);
    }
    cf_future *list = queue_take_all(pool);
    while (list) {
        cf_future *f = list;
        list = f->next;
        cf_future_unref(f);
    }
    cf__free(pool);
}

static int tp_destroy(cf_executor *ex)
{
    thread_pool *pool = (thread_pool *)ex;
    if (cf__executor_forked(ex)) {
        pool_forget(pool);
        return CF_EFORKED;
    }
    tp_shutdown(ex, true, false);
    if (in_own_worker(pool)) {
        /* We run on one of the pool's threads: it frees the pool when it exits. */
        pthread_mutex_lock(&pool->mu);
        pool->freeing_worker = current_worker;
        pthread_mutex_unlock(&pool->mu);
        return 0;
    }
    pool_destroy(pool);
    return 0;
}

/* ---- options and construction ---- */

static size_t tp_default_chunksize(cf_executor *ex, size_t n)
{
    thread_pool *pool = (thread_pool *)ex;
    size_t chunk = n / (4 * (size_t)pool->max_workers);
    return chunk < 1 ? 1 : chunk > 1024 ? 1024 : chunk;
}

static size_t tp_max_chunksize(cf_executor *ex)
{
    thread_pool *pool = (thread_pool *)ex;
    return pool->max_queue ? pool->max_queue : SIZE_MAX;
}

static const cf__executor_vtable thread_pool_vtable = {
    .name = "thread_pool",
    .pointer_tasks = true,
    .submit = tp_submit,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .default_chunksize = tp_default_chunksize,
    .max_chunksize = tp_max_chunksize,
};

/* max_workers with the default applied: min(32, CPUs + 4), as Python. */
static unsigned effective_max_workers(const cf_thread_pool_options *o)
{
    unsigned cpus = cf__cpu_count();
    return o->max_workers ? o->max_workers : (cpus + 4 < 32 ? cpus + 4 : 32);
}

static int check_options(const cf_thread_pool_options *o)
{
    if (o->min_workers > effective_max_workers(o))
        return CF_EINVAL;
    if (o->queue_policy != CF_QUEUE_BLOCK && o->queue_policy != CF_QUEUE_REJECT &&
        o->queue_policy != CF_QUEUE_CALLER_RUNS)
        return CF_EINVAL;
    if (isnan(o->queue_timeout) || isnan(o->idle_timeout) || o->idle_timeout < 0)
        return CF_EINVAL;
    if (o->stack_size && o->stack_size < (size_t)PTHREAD_STACK_MIN)
        return CF_EINVAL;
    return 0;
}

static void apply_options(thread_pool *pool, const cf_thread_pool_options *o)
{
    pool->max_workers = effective_max_workers(o);
    pool->min_workers = o->min_workers;
    pool->initializer = o->initializer;
    pool->initializer_arg = o->initializer_arg;
    pool->stack_size = o->stack_size;
    pool->max_queue = o->max_queue;
    pool->policy = o->queue_policy;
    pool->queue_timeout = o->queue_timeout;
    double idle = o->idle_timeout > 1e9 ? 1e9 : o->idle_timeout;
    pool->idle_timeout_ns = (int64_t)(idle * 1e9);
    if (o->thread_name_prefix)
        snprintf(pool->prefix, sizeof(pool->prefix), "%s", o->thread_name_prefix);
    else
        snprintf(pool->prefix, sizeof(pool->prefix), "cfpool%u",
                 atomic_fetch_add(&pool_counter, 1));
}

int cf_thread_pool_new(cf_executor **out, const cf_thread_pool_options *options)
{
    static const cf_thread_pool_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_thread_pool_options *o = options ? options : &defaults;
    int rc = check_options(o);
    if (rc)
        return rc;
    thread_pool *pool = cf__calloc(1, sizeof(*pool));
    if (!pool)
        return CF_ENOMEM;
    if (pthread_mutex_init(&pool->mu, NULL) != 0) {
        cf__free(pool);
        return CF_ENOMEM;
    }
    if (cf__cond_init_monotonic(&pool->cv) != 0) {
        pthread_mutex_destroy(&pool->mu);
        cf__free(pool);
        return CF_ENOMEM;
    }
    cf__executor_init(&pool->base, &thread_pool_vtable);
    apply_options(pool, o);
    *out = &pool->base;
    return 0;
}

int cf_thread_pool_get_stats(cf_thread_pool_stats *out, const cf_executor *ex)
{
    if (!out || !ex || ex->vt != &thread_pool_vtable)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    thread_pool *pool = (thread_pool *)ex;
    pthread_mutex_lock(&pool->mu);
    *out = (cf_thread_pool_stats){
        .threads = pool->nthreads,
        .idle = pool->nparked,
        .queued = pool->queued,
        .threads_started = pool->threads_started,
        .tasks_completed = pool->tasks_completed,
    };
    pthread_mutex_unlock(&pool->mu);
    return 0;
}
