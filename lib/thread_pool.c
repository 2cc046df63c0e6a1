/* The thread-pool executor.
 *
 * One FIFO queue of futures (intrusive, linked through cf_future.next) under one small
 * spin-then-futex lock: critical sections are a few instructions, so contending threads spin
 * briefly instead of sleeping in the kernel. Idle workers park on their own futex word in a
 * LIFO stack, so the most recently idle (cache-warm) worker is woken first, and a submit wakes
 * exactly as many workers as it brings work for, or none when enough are awake. Before parking,
 * at most one worker per pool spins for a short, adaptive window: a task submitted within it
 * starts without any system call on either side.
 *
 * Accounting that decides whether a submit needs more threads (all under `lock`):
 *   nthreads  threads started and not exited
 *   nparked   of those, parked in the idle stack
 *   nbusy     of those, inside a task function (decremented, atomically, before the task's future
 *             is completed, so a caller woken by a result sees the worker as available)
 * Workers that are neither busy nor parked are about to look at the queue (or spinning on it),
 * so a submit only wakes or starts threads for the work those cannot absorb. Threads are started
 * under the lock, which keeps "queue not empty => at least one thread alive" simple to hold. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

enum { NAME_MAX_LEN = 15 };

/* The spinner's window adapts between 0 and this; an idle pool pays at most one window. */
#define SPIN_MAX_NS 20000
#define SPIN_MIN_NS 500

typedef struct worker worker;
typedef struct thread_pool thread_pool;

struct worker {
    thread_pool *pool;
    pthread_t thread;
    worker *next;          /* all workers not yet joined */
    worker *next_parked;   /* the idle stack */
    _Atomic uint32_t wake; /* futex word: 0 while parked, 1 once woken */
    unsigned index;
    bool exited;
};

struct thread_pool {
    cf_executor base;
    /* Hot: touched by every submit and every pop. */
    _Alignas(CF__CACHELINE) cf__lock lock;
    _Atomic(cf_future *) head; /* atomic only so the spinner may peek without the lock */
    cf_future *tail;
    size_t queued;
    unsigned nthreads;
    unsigned nparked;
    bool spinning;
    /* Hot for workers only. */
    _Alignas(CF__CACHELINE) _Atomic unsigned nbusy;
    _Atomic int64_t spin_ns;
    /* Cold. */
    _Alignas(CF__CACHELINE) cf__cond cond; /* worker exits and queue room */
    worker *workers;
    worker *parked;
    unsigned waiting_workers;    /* workers of this pool blocked in shutdown(wait) */
    unsigned blocked_submitters; /* submits waiting for queue room */
    unsigned next_index;
    bool shutdown;
    bool broken;
    worker *freeing_worker; /* the worker that called cf_executor_free(), if any */
    unsigned long long threads_started;
    unsigned long long tasks_completed;
    /* Options. */
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

static void pool_lock(thread_pool *pool)
{
    cf__lock_acquire(&pool->lock);
}

static void pool_unlock(thread_pool *pool)
{
    cf__lock_release(&pool->lock);
}

/* ---- queue (lock held) ---- */

static cf_future *queue_head(thread_pool *pool)
{
    return atomic_load_explicit(&pool->head, memory_order_relaxed);
}

static void queue_push(thread_pool *pool, cf_future *f)
{
    f->next = NULL;
    if (pool->tail)
        pool->tail->next = f;
    else
        atomic_store_explicit(&pool->head, f, memory_order_relaxed);
    pool->tail = f;
    pool->queued++;
}

static cf_future *queue_pop(thread_pool *pool)
{
    cf_future *f = queue_head(pool);
    if (f) {
        atomic_store_explicit(&pool->head, f->next, memory_order_relaxed);
        if (!f->next)
            pool->tail = NULL;
        pool->queued--;
    }
    return f;
}

static cf_future *queue_take_all(thread_pool *pool)
{
    cf_future *all = queue_head(pool);
    atomic_store_explicit(&pool->head, NULL, memory_order_relaxed);
    pool->tail = NULL;
    pool->queued = 0;
    return all;
}

/* ---- parking ---- */

/* Pops the most recently parked worker and marks it woken (lock held). The mark is made under
 * the lock so that a worker whose park timed out knows for sure whether it is still stacked. */
static worker *unpark_one(thread_pool *pool)
{
    worker *w = pool->parked;
    pool->parked = w->next_parked;
    pool->nparked--;
    atomic_store_explicit(&w->wake, 1, memory_order_release);
    return w;
}

/* Wakes every parked worker (lock held: rare paths only, shutdown and breakage). */
static void wake_all_locked(thread_pool *pool)
{
    while (pool->parked)
        cf__futex_wake(&unpark_one(pool)->wake, 1);
}

/* Workers to wake once the lock is released. Their addresses are copied out under the lock:
 * after unpark_one a worker may run (and park again, rewriting its links) at any moment. The
 * futex wake is a system call on the address only, harmless even if the worker has exited. */
enum { WAKE_BATCH = 32 };

typedef struct wake_list {
    unsigned count;
    _Atomic uint32_t *words[WAKE_BATCH];
} wake_list;

static void wake_now(wake_list *list)
{
    for (unsigned i = 0; i < list->count; i++)
        cf__futex_wake(list->words[i], 1);
    list->count = 0;
}

static void adapt_spin(thread_pool *pool, bool paid)
{
    int64_t ns = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
    ns = paid ? (ns < SPIN_MIN_NS ? SPIN_MIN_NS : ns * 2) : ns / 2;
    if (ns > SPIN_MAX_NS)
        ns = SPIN_MAX_NS;
    atomic_store_explicit(&pool->spin_ns, ns, memory_order_relaxed);
}

/* Lets at most one worker watch the queue for a short window before parking (lock held on entry
 * and exit). Returns whether it spun: the lock was then released, so the caller must re-check the
 * queue and the shutdown flag before deciding to park. */
static bool spin_for_work(thread_pool *pool)
{
    int64_t window = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
    if (pool->spinning || window == 0)
        return false;
    pool->spinning = true;
    pool_unlock(pool);
    int64_t start = cf__now_ns();
    bool found = false;
    for (unsigned i = 1; !found; i++) {
        found = atomic_load_explicit(&pool->head, memory_order_relaxed) != NULL;
        cf__spin_step(i);
        if ((i & 63) == 0 && cf__now_ns() - start > window)
            break;
    }
    pool_lock(pool);
    pool->spinning = false;
    if (!found)
        adapt_spin(pool, false);
    return true;
}

/* Parks until woken or the idle timeout passes; returns true if the thread should exit.
 * Called and returns with the lock held. */
static bool park(thread_pool *pool, worker *w)
{
    atomic_store_explicit(&w->wake, 0, memory_order_relaxed);
    w->next_parked = pool->parked;
    pool->parked = w;
    pool->nparked++;
    int64_t parked_at = cf__now_ns();
    int64_t deadline = pool->idle_timeout_ns ? parked_at + pool->idle_timeout_ns : CF__FOREVER_NS;
    pool_unlock(pool);
    int rc = 0;
    while (atomic_load_explicit(&w->wake, memory_order_acquire) == 0 && rc != CF_ETIMEDOUT)
        rc = cf__futex_wait(&w->wake, 0, deadline);
    /* Woken soon after parking: a spin would have caught this task without two system calls. */
    if (rc != CF_ETIMEDOUT && cf__now_ns() - parked_at < SPIN_MAX_NS)
        adapt_spin(pool, true);
    pool_lock(pool);
    if (atomic_load_explicit(&w->wake, memory_order_relaxed))
        return false; /* a waker removed us from the stack */
    worker **pp = &pool->parked;
    while (*pp != w)
        pp = &(*pp)->next_parked;
    *pp = w->next_parked;
    pool->nparked--;
    return !queue_head(pool) && pool->nthreads > pool->min_workers;
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
    pool_lock(pool);
    pool->broken = true;
    cf_future *drained = queue_take_all(pool);
    wake_all_locked(pool);
    cf__cond_broadcast(&pool->cond);
    pool_unlock(pool);
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

/* Runs tasks until shutdown, breakage or idle exit; entered and left with the lock held. Every
 * step that releases the lock (running a task, spinning, parking) is followed by a fresh look at
 * the queue and the flags, so no decision is made on stale state. */
static void worker_loop(thread_pool *pool, worker *w)
{
    bool spun = false; /* spin at most once per idle period */
    for (;;) {
        cf_future *f = queue_pop(pool);
        if (f) {
            atomic_fetch_add_explicit(&pool->nbusy, 1, memory_order_relaxed);
            if (pool->blocked_submitters)
                cf__cond_broadcast(&pool->cond);
            pool_unlock(pool);
            bool ran = run_one(pool, f);
            pool_lock(pool);
            pool->tasks_completed += ran;
            spun = false;
            continue;
        }
        if (pool->shutdown || pool->broken)
            return;
        if (!spun && (spun = spin_for_work(pool)))
            continue;
        if (park(pool, w))
            return;
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
    if (rc)
        pool_break(pool, rc);
    pool_lock(pool);
    if (!rc)
        worker_loop(pool, w);
    pool->nthreads--;
    w->exited = true;
    bool free_pool = pool->freeing_worker == w;
    cf__cond_broadcast(&pool->cond);
    pool_unlock(pool);
    current_worker = NULL;
    if (free_pool) {
        /* cf_executor_free() was called on this thread: nobody else can join it. */
        pthread_detach(pthread_self());
        pool_destroy(pool);
    }
    return NULL;
}

/* Joins and frees the records of workers that have exited (lock held; they no longer need it:
 * an exited worker only returns from its thread function). */
static void reap_exited(thread_pool *pool)
{
    worker **pp = &pool->workers;
    while (*pp) {
        worker *w = *pp;
        if (w->exited && w != pool->freeing_worker) {
            *pp = w->next;
            pthread_join(w->thread, NULL);
            cf__free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Starts one worker (lock held). */
static int spawn(thread_pool *pool)
{
    if (cf__fault(CF__FAULT_THREAD))
        return CF_EAGAIN;
    reap_exited(pool);
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

/* Waits for room for `n` tasks in a bounded queue (lock held). */
static int wait_for_room(thread_pool *pool, size_t n)
{
    int64_t deadline;
    cf__deadline(pool->queue_timeout > 0 ? pool->queue_timeout : CF_FOREVER, &deadline);
    pool->blocked_submitters++;
    int rc = 0;
    while (pool->queued + n > pool->max_queue && !pool->shutdown && !pool->broken && rc == 0)
        rc = cf__cond_wait_lock(&pool->cond, &pool->lock, deadline);
    pool->blocked_submitters--;
    if (pool->shutdown)
        return CF_ESHUTDOWN;
    if (pool->broken)
        return CF_EBROKEN;
    return pool->queued + n > pool->max_queue ? CF_ETIMEDOUT : 0;
}

/* Decides how many of `n` tasks go to the queue; the others are for the caller to run (lock
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

/* Wakes parked workers and starts threads for the work the awake ones cannot absorb (lock
 * held). Collects the workers to wake once the lock is released; fails only if no thread
 * exists. */
static int provide_workers(thread_pool *pool, wake_list *to_wake)
{
    if (!pool->nparked && pool->nthreads >= pool->max_workers)
        return 0; /* the common case under load: nobody to wake, nothing to start */
    long busy = (long)atomic_load_explicit(&pool->nbusy, memory_order_relaxed);
    long awake = (long)pool->nthreads - (long)pool->nparked - busy;
    if (awake < 0)
        awake = 0;
    size_t need = pool->queued > (size_t)awake ? pool->queued - (size_t)awake : 0;
    for (; need && pool->parked; need--) {
        if (to_wake->count == WAKE_BATCH)
            wake_now(to_wake); /* more than a batch: rare, so waking under the lock is fine */
        to_wake->words[to_wake->count++] = &unpark_one(pool)->wake;
    }
    int rc = 0;
    while (need && pool->nthreads < pool->max_workers && (rc = spawn(pool)) == 0)
        need--;
    return pool->nthreads ? 0 : (rc ? rc : CF_EAGAIN);
}

static int tp_submit(cf_executor *ex, cf_future **fs, size_t n)
{
    thread_pool *pool = (thread_pool *)ex;
    pool_lock(pool);
    long admitted = admit(pool, n);
    if (admitted < 0) {
        pool_unlock(pool);
        return (int)admitted;
    }
    for (long i = 0; i < admitted; i++)
        queue_push(pool, fs[i]);
    wake_list to_wake = {0};
    int rc = admitted ? provide_workers(pool, &to_wake) : 0;
    if (rc) {
        /* No thread could be started and none exists, so the queue holds only this batch. */
        queue_take_all(pool);
        pool_unlock(pool);
        return rc;
    }
    pool_unlock(pool);
    wake_now(&to_wake);
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
    pool_lock(pool);
    pool->waiting_workers += inside;
    while (pool->nthreads > pool->waiting_workers)
        cf__cond_wait_lock(&pool->cond, &pool->lock, CF__FOREVER_NS);
    pool->waiting_workers -= inside;
    pool_unlock(pool);
}

static int tp_shutdown(cf_executor *ex, bool wait, bool cancel_futures)
{
    thread_pool *pool = (thread_pool *)ex;
    pool_lock(pool);
    pool->shutdown = true;
    cf_future *cancelled = cancel_futures ? queue_take_all(pool) : NULL;
    wake_all_locked(pool);
    cf__cond_broadcast(&pool->cond);
    pool_unlock(pool);
    cancel_all(cancelled);
    if (wait)
        wait_for_workers(pool);
    return 0;
}

static void pool_destroy(thread_pool *pool)
{
    while (pool->workers) {
        worker *w = pool->workers;
        pool->workers = w->next;
        if (w != current_worker && w != pool->freeing_worker)
            pthread_join(w->thread, NULL);
        cf__free(w);
    }
    cancel_all(queue_take_all(pool));
    cf__free(pool);
}

/* In a forked child the threads do not exist and the lock may be held by a thread that
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
        pool_lock(pool);
        pool->freeing_worker = current_worker;
        pool_unlock(pool);
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
    atomic_init(&pool->spin_ns, SPIN_MAX_NS / 4);
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
    thread_pool *pool = cf__calloc_aligned(CF__CACHELINE, sizeof(*pool));
    if (!pool)
        return CF_ENOMEM;
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
    pool_lock(pool);
    *out = (cf_thread_pool_stats){
        .threads = pool->nthreads,
        .idle = pool->nparked,
        .queued = pool->queued,
        .threads_started = pool->threads_started,
        .tasks_completed = pool->tasks_completed,
    };
    pool_unlock(pool);
    return 0;
}
