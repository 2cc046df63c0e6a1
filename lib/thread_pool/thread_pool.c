/* The thread-pool executor.
 *
 * Submitters and workers meet in a lock-free intrusive queue (Vyukov's MPSC queue, linked
 * through cf_future.next): a submit is one atomic exchange on the producer end, whatever the
 * chunk size, and never touches the lines the workers write. Workers pop under their own small
 * lock, so producers and consumers do not bounce one lock's cache line between them on every
 * task. Idle workers park on their own futex word in a LIFO stack (the most recently idle,
 * cache-warm worker is woken first). Before parking, at most one worker per pool spins for an
 * adaptive window, so a task submitted within it starts without a system call on either side.
 *
 * Who wakes or starts a worker. After a push, the submitter looks at the workers' state: a
 * spinner, or a worker that is neither busy nor parked, will find the task; otherwise it wakes a
 * parked worker, or starts a thread if the pool may grow (as Python's pool does when no thread
 * is idle). A worker that pops a task and still sees work queued does the same, which covers a
 * submitter that read the busy count just before the pop. Every such decision pairs a write and
 * then a read on each side (sequentially consistent), so one of the two sides always sees the
 * other: pushing vs parking, submitting vs shutting down, submitting vs idle exit.
 *
 * The slow paths (parking, starting threads, shutdown, the bounded queue, stats) take `lock`. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/at_exit.h"
#include "core/internal.h"
#include "core/trace.h"

enum { NAME_MAX_LEN = 15, WAKE_BATCH = 32 };

/* The spinner's window adapts between 0 and this; an idle pool pays at most one window. */
#define SPIN_MAX_NS 20000

/* The worker-state word read by every submit: bit 0 is set while a worker spins, the rest
 * counts parked workers. */
#define IDLE_SPINNING   1u
#define IDLE_PARKED_ONE 2u

typedef struct worker worker;
typedef struct thread_pool thread_pool;

struct worker {
    thread_pool *pool;
    pthread_t thread;
    cf_future *task;          /* the future whose task runs on this thread now, or NULL */
    worker *next;             /* all workers not yet joined */
    worker *next_parked;      /* the idle stack */
    _Atomic uint32_t wake;    /* futex word: 0 while parked, 1 once woken */
    _Atomic int64_t woken_at; /* when the waker decided to wake it (see park) */
    unsigned index;
    bool busy; /* counted in pool->nbusy (this worker's thread only) */
    bool exited;
    bool exit_counted;                    /* counted by core/at_exit.c (a finish_at_exit pool) */
    _Atomic unsigned long long completed; /* tasks run; per worker, so no line is shared */
};

struct thread_pool {
    /* Producers: the push end of the queue, and the sentinel node right after it: a push into an
     * empty queue writes both `in` and `stub.next` (the first field), and so does a consumer
     * putting the stub back, so they share a line. */
    _Alignas(CF__CACHELINE) _Atomic(cf_future *) in;
    cf_future stub;
    /* Submitters only: a line of their own, so that a worker watching the stub's link does not
     * take away the line each submit increments. */
    _Alignas(CF__CACHELINE) _Atomic uint64_t submits; /* see SUBMITTING_ONE and PUSHED_ONE */
    /* Consumers: the pop end, under take_lock. */
    _Alignas(CF__CACHELINE) cf__lock take_lock;
    _Atomic(cf_future *) out;
    _Atomic uint64_t popped; /* written under take_lock, read without it */
    /* Worker states, read by submits. */
    _Alignas(CF__CACHELINE) _Atomic uint32_t idle;  /* IDLE_SPINNING | parked * IDLE_PARKED_ONE */
    _Alignas(CF__CACHELINE) _Atomic unsigned nbusy; /* in a task, or going on to a queued one */
    _Atomic int64_t spin_ns;
    /* Slow paths, under `lock`. */
    _Alignas(CF__CACHELINE) cf__lock lock;
    cf__cond cond; /* worker exits and queue room */
    worker *workers;
    worker *parked;
    _Atomic unsigned nthreads; /* written under lock, read by submits */
    _Atomic bool shutdown;
    _Atomic bool broken;
    _Atomic unsigned blocked_submitters;
    unsigned waiting_workers; /* workers of this pool blocked in shutdown(wait) */
    unsigned next_index;
    worker *freeing_worker; /* the worker that called cf_executor_free(), if any */
    unsigned long long threads_started;
    unsigned long long completed_by_exited; /* tasks run by workers already reaped */
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
    double idle_timeout;     /* as given, for cf_thread_pool_get_options */
    char prefix[NAME_MAX_LEN + 1];
    cf__at_exit_entry at_exit; /* registered with finish_at_exit */
    cf_executor *handle;       /* our cf_executor: the executor named in probes */
};

static _Thread_local worker *current_worker CF__TLS_FAST;
static _Atomic unsigned pool_counter;

static bool in_own_worker(const thread_pool *pool)
{
    return current_worker && current_worker->pool == pool;
}

#define SC memory_order_seq_cst

/* ---- the queue ---- */

static void q_init(thread_pool *pool)
{
    cf__set_next(&pool->stub, NULL);
    atomic_init(&pool->in, &pool->stub);
    atomic_init(&pool->out, &pool->stub);
}

/* Appends first..last (already linked). Lock-free; the store that makes the chain reachable is
 * sequentially consistent so that the caller's following read of the worker states pairs with
 * a parking worker's re-check of the queue. */
static void q_push(thread_pool *pool, cf_future *first, cf_future *last)
{
    cf__set_next(last, NULL);
    cf_future *prev = atomic_exchange_explicit(&pool->in, last, SC);
    atomic_store_explicit(&prev->next, first, SC);
}

/* Pops one future (take_lock held). NULL when empty, or when a push is half done (the pusher
 * then makes sure a worker will look again). */
static cf_future *q_pop(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->take_lock);
    cf_future *out = atomic_load_explicit(&pool->out, memory_order_relaxed);
    cf_future *next = atomic_load_explicit(&out->next, memory_order_acquire);
    if (out == &pool->stub) {
        if (!next)
            return NULL;
        out = next;
        next = atomic_load_explicit(&out->next, memory_order_acquire);
    }
    if (!next) {
        /* `out` is the last node: put the stub behind it so that it can be taken out. */
        if (out != atomic_load_explicit(&pool->in, memory_order_acquire)) {
            atomic_store_explicit(&pool->out, out, memory_order_relaxed);
            return NULL;
        }
        q_push(pool, &pool->stub, &pool->stub);
        next = atomic_load_explicit(&out->next, memory_order_acquire);
        if (!next) {
            atomic_store_explicit(&pool->out, out, memory_order_relaxed);
            return NULL;
        }
    }
    atomic_store_explicit(&pool->out, next, memory_order_relaxed);
    return out;
}

/* Whether a pop would find something now (read on the consumers' side, so spinning on it does
 * not disturb producers). */
static bool q_ready(thread_pool *pool)
{
    cf_future *out = atomic_load_explicit(&pool->out, SC);
    return out != &pool->stub || atomic_load_explicit(&pool->stub.next, SC) != NULL;
}

/* Whether the queue is empty with no push under way (callers also check `submitting`). */
static bool q_empty(thread_pool *pool)
{
    return !q_ready(pool) && atomic_load_explicit(&pool->in, SC) == &pool->stub;
}

/* take_lock held: a plain increment (no locked instruction), published for lock-free
 * readers. */
static void count_popped(thread_pool *pool)
{
    uint64_t n = atomic_load_explicit(&pool->popped, memory_order_relaxed);
    atomic_store_explicit(&pool->popped, n + 1, memory_order_relaxed);
}

static cf_future *q_take_all(thread_pool *pool)
{
    cf_future *head = NULL, *tail = NULL, *f;
    cf__lock_acquire(&pool->take_lock);
    while ((f = q_pop(pool)) != NULL) {
        cf__set_next(f, NULL);
        if (tail)
            cf__set_next(tail, f);
        else
            head = f;
        tail = f;
        count_popped(pool);
    }
    cf__lock_release(&pool->take_lock);
    return head;
}

/* One word counts both the submits under way (low 24 bits) and the tasks pushed (the 40 bits
 * above, modulo 2^40), so that a submit announces itself and counts its tasks with one atomic
 * operation, and ends with one more. */
#define SUBMITTING_ONE  UINT64_C(1)
#define SUBMITTING_MASK ((UINT64_C(1) << 24) - 1)
#define PUSHED_ONE      (UINT64_C(1) << 24)
#define PUSHED_MASK     ((UINT64_C(1) << 40) - 1)

static unsigned submitting(thread_pool *pool)
{
    return (unsigned)(atomic_load_explicit(&pool->submits, SC) & SUBMITTING_MASK);
}

/* Tasks counted as pushed and not popped yet. A submit counts its tasks before it pushes them,
 * so the count never falls below what the queue holds. */
static size_t queued(thread_pool *pool)
{
    uint64_t pushed = atomic_load_explicit(&pool->submits, memory_order_relaxed) >> 24;
    uint64_t popped = atomic_load_explicit(&pool->popped, memory_order_relaxed);
    return (size_t)((pushed - popped) & PUSHED_MASK);
}

/* ---- parking and waking ---- */

/* Pops the most recently parked worker and marks it woken (lock held). The mark is made under
 * the lock so that a worker whose park timed out knows for sure whether it is still stacked. */
static worker *unpark_one(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    CF__ASSERT(pool->parked != NULL);
    worker *w = pool->parked;
    pool->parked = w->next_parked;
    atomic_fetch_sub_explicit(&pool->idle, IDLE_PARKED_ONE, SC);
    atomic_store_explicit(&w->woken_at, cf__now_ns(), memory_order_relaxed);
    atomic_store_explicit(&w->wake, 1, memory_order_release);
    return w;
}

/* Wakes every parked worker (lock held: rare paths only, shutdown and breakage). */
static void wake_all_locked(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    while (pool->parked)
        cf__futex_wake(&unpark_one(pool)->wake, 1);
}

/* The spin window learns the gaps between tasks: a park whose waker came soon after shows a
 * gap a longer spin would have bridged (saving a futex wake on both sides), so the window grows to
 * cover twice that gap; a spin that found nothing decays it by a quarter, so a pool that goes
 * idle converges to not spinning at all. */
static void adapt_spin_missed(thread_pool *pool)
{
    int64_t ns = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
    atomic_store_explicit(&pool->spin_ns, ns - ns / 4, memory_order_relaxed);
}

static void adapt_spin_gap(thread_pool *pool, int64_t gap_ns)
{
    int64_t ns = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
    int64_t want = 2 * gap_ns < SPIN_MAX_NS ? 2 * gap_ns : SPIN_MAX_NS;
    if (want > ns)
        atomic_store_explicit(&pool->spin_ns, want, memory_order_relaxed);
}

/* Lets at most one worker watch the queue for a short window before parking. Returns whether
 * it spun. */
static bool spin_for_work(thread_pool *pool)
{
    int64_t window = atomic_load_explicit(&pool->spin_ns, memory_order_relaxed);
    if (window == 0 || (atomic_fetch_or_explicit(&pool->idle, IDLE_SPINNING, SC) & IDLE_SPINNING))
        return false;
    int64_t start = cf__now_ns();
    bool found = false;
    for (unsigned i = 1; !found; i++) {
        found = q_ready(pool) || atomic_load_explicit(&pool->shutdown, memory_order_relaxed);
        cf__spin_step(i);
        if ((i & 63) == 0 && cf__now_ns() - start > window)
            break;
    }
    atomic_fetch_and_explicit(&pool->idle, ~IDLE_SPINNING, SC);
    if (!found)
        adapt_spin_missed(pool);
    return true;
}

static int spawn(thread_pool *pool);

/* A worker that is neither busy nor parked is trusted to look at the queue soon. But with more
 * threads than CPUs it may be runnable and not running, queued behind the submitter on the same
 * CPU for a scheduler slice (milliseconds), while a parked worker could have run on an idle CPU;
 * the same holds for the spinner.
 * So every STALL_CHECK trusting calls, the thread checks that the pool made progress since the
 * last check; if not, it wakes a worker after all. */
enum { STALL_CHECK = 64 };

static _Thread_local struct {
    const thread_pool *pool;
    uint64_t popped;
    unsigned trusted;
} progress CF__TLS_FAST;

static bool pool_stalled(const thread_pool *pool)
{
    if (++progress.trusted < STALL_CHECK)
        return false;
    progress.trusted = 0;
    uint64_t popped = atomic_load_explicit(&pool->popped, memory_order_relaxed);
    bool stalled = progress.pool == pool && progress.popped == popped;
    progress.pool = pool;
    progress.popped = popped;
    return stalled;
}

/* Makes sure some worker will take queued work: called after a push by the submitter, and after
 * a pop that left work behind by the worker. Nothing to do if a worker spins or is between
 * tasks (unless the pool stalled); else wake a parked worker, or start a thread if the pool may
 * grow. */
static __attribute__((noinline)) void ensure_worker_slow(thread_pool *pool, uint32_t idle)
{
    bool spinning = idle & IDLE_SPINNING;
    if (spinning && !pool_stalled(pool))
        return;
    unsigned parked = idle / IDLE_PARKED_ONE;
    unsigned threads = atomic_load_explicit(&pool->nthreads, SC);
    if (!parked && threads >= pool->max_workers)
        return; /* every thread is awake: one will come back to the queue */
    unsigned busy = atomic_load_explicit(&pool->nbusy, SC);
    if (!spinning && threads > parked + busy && !pool_stalled(pool))
        return; /* a worker between tasks will look at the queue */
    worker *w = NULL;
    cf__lock_acquire(&pool->lock);
    if (pool->parked)
        w = unpark_one(pool);
    /* A worker counted parked a moment ago and gone from the stack now is awake (it saw the
     * queue on its way to park, or another submitter woke it) and will come back to the queue:
     * no new thread for it. Capacity still grows: a worker that pops a task and sees more
     * queued comes here itself. */
    else if (!parked &&
             atomic_load_explicit(&pool->nthreads, memory_order_relaxed) < pool->max_workers)
        spawn(pool); /* a failure here is harmless: at least one thread exists */
    cf__lock_release(&pool->lock);
    if (w)
        cf__futex_wake(&w->wake, 1);
}

/* The common case first, inline: no thread spins or sleeps and the pool cannot grow, so every
 * thread is awake and one will come back to the queue. */
static inline void ensure_worker(thread_pool *pool)
{
    uint32_t idle = atomic_load_explicit(&pool->idle, SC);
    if (idle == 0 && atomic_load_explicit(&pool->nthreads, SC) >= pool->max_workers)
        return;
    ensure_worker_slow(pool, idle);
}

/* ---- breaking the pool (initializer failure) ---- */

static void fail_all(cf_future *list, int code, const char *message)
{
    while (list) {
        cf_future *f = list;
        list = cf__next(f);
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
    cf__lock_acquire(&pool->lock);
    atomic_store_explicit(&pool->broken, true, SC);
    wake_all_locked(pool);
    cf__cond_broadcast(&pool->cond, &pool->lock);
    cf__lock_release(&pool->lock);
    fail_all(q_take_all(pool), CF_EBROKEN, message);
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

/* Pops a future and counts this worker busy; adds capacity if work remains behind it. */
static cf_future *take(thread_pool *pool, worker *w)
{
    cf__lock_acquire(&pool->take_lock);
    cf_future *f = q_pop(pool);
    if (f)
        count_popped(pool);
    cf__lock_release(&pool->take_lock);
    if (!f) {
        if (w->busy) { /* it stayed busy for work that another worker took */
            w->busy = false;
            atomic_fetch_sub_explicit(&pool->nbusy, 1, SC);
        }
        return NULL;
    }
    if (!w->busy) {
        w->busy = true;
        atomic_fetch_add_explicit(&pool->nbusy, 1, SC);
    }
    if (atomic_load_explicit(&pool->blocked_submitters, memory_order_relaxed)) {
        cf__lock_acquire(&pool->lock);
        cf__cond_broadcast(&pool->cond, &pool->lock);
        cf__lock_release(&pool->lock);
    }
    if (q_ready(pool))
        ensure_worker(pool);
    return f;
}

/* The worker stops counting as busy: before its future completes unless a done-callback of the
 * user is attached, so that a caller woken by the result (a waiter, cf_wait, the loop) and
 * submitting again sees it available (no new thread); after the done-callbacks otherwise,
 * because they run on this thread and may wait for work submitted to this very pool (which then
 * needs another thread). */
static void worker_released(void *arg)
{
    worker *w = arg;
    /* With work queued, the worker goes straight to it: it stays counted busy, which spares
     * two atomic operations per task on a line every worker writes; take() settles the count
     * if it finds the queue empty after all. */
    if (q_ready(w->pool))
        return;
    w->busy = false;
    atomic_fetch_sub_explicit(&w->pool->nbusy, 1, SC);
}

/* Runs a popped future unless it was cancelled; returns whether the task ran. The worker notes
 * the future while its task (and the done-callbacks) run, for thread_ended() should the thread
 * end in there. */
static bool run_one(worker *w, cf_future *f)
{
    w->task = f;
    bool ran = cf__task_run_then(f, worker_released, w);
    w->task = NULL;
    if (ran) {
        atomic_store_explicit(&w->completed,
                              atomic_load_explicit(&w->completed, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    } else {
        worker_released(w);
    }
    cf_future_unref(f);
    return ran;
}

/* Whether a worker may leave: shut down (or broken), no submit in flight, nothing queued. */
static bool may_exit(thread_pool *pool)
{
    if (!atomic_load_explicit(&pool->shutdown, SC) && !atomic_load_explicit(&pool->broken, SC))
        return false;
    return submitting(pool) == 0 && q_empty(pool);
}

/* Leaves the idle stack after a park that was not ended by a waker (lock held). */
static void unstack(thread_pool *pool, worker *w)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    worker **pp = &pool->parked;
    while (*pp != w)
        pp = &(*pp)->next_parked;
    *pp = w->next_parked;
    atomic_fetch_sub_explicit(&pool->idle, IDLE_PARKED_ONE, SC);
}

/* After an idle timeout: exit if the pool may shrink and nothing is coming (lock held). The
 * thread count drops first and the queue is checked after it, which pairs with a submit that
 * counts itself in `submitting` and then reads the thread count. */
static bool idle_exit(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    unsigned threads = atomic_load_explicit(&pool->nthreads, memory_order_relaxed);
    if (threads <= pool->min_workers)
        return false;
    atomic_store_explicit(&pool->nthreads, threads - 1, SC);
    if (submitting(pool) == 0 && q_empty(pool))
        return true;
    atomic_store_explicit(&pool->nthreads, threads, SC);
    return false;
}

/* Parks until woken or the idle timeout passes; returns true if the thread must exit (its
 * thread count already taken off by idle_exit). */
static bool park(thread_pool *pool, worker *w)
{
    int64_t parked_at = cf__now_ns(); /* before anyone can wake it */
    cf__lock_acquire(&pool->lock);
    atomic_store_explicit(&w->wake, 0, memory_order_relaxed);
    w->next_parked = pool->parked;
    pool->parked = w;
    atomic_fetch_add_explicit(&pool->idle, IDLE_PARKED_ONE, SC);
    if (q_ready(pool) || atomic_load_explicit(&pool->shutdown, SC) ||
        atomic_load_explicit(&pool->broken, SC)) {
        unstack(pool, w);
        cf__lock_release(&pool->lock);
        return false;
    }
    cf__lock_release(&pool->lock);
    int64_t deadline =
        pool->idle_timeout_ns ? cf__ns_after(parked_at, pool->idle_timeout_ns) : CF__FOREVER_NS;
    int rc = 0;
    while (atomic_load_explicit(&w->wake, memory_order_acquire) == 0 && rc != CF_ETIMEDOUT)
        rc = cf__futex_wait(&w->wake, 0, deadline);
    /* The gap is measured to the waker's decision, not to this thread's return from the futex:
     * on a VM the wake-up itself can take longer than the whole window, and counting it would
     * hide the short gaps that make spinning pay. */
    if (atomic_load_explicit(&w->wake, memory_order_acquire)) {
        int64_t gap = atomic_load_explicit(&w->woken_at, memory_order_relaxed) - parked_at;
        if (gap < SPIN_MAX_NS)
            adapt_spin_gap(pool, gap > 0 ? gap : 0);
    }
    cf__lock_acquire(&pool->lock);
    bool leave = false;
    if (!atomic_load_explicit(&w->wake, memory_order_relaxed)) {
        unstack(pool, w);
        leave = idle_exit(pool);
    }
    cf__lock_release(&pool->lock);
    return leave;
}

/* Runs tasks until shutdown, breakage or idle exit. Returns whether the thread count still
 * includes this thread. */
static bool worker_loop(thread_pool *pool, worker *w)
{
    bool spun = false; /* spin at most once per idle period */
    for (;;) {
        cf_future *f = take(pool, w);
        if (f) {
            run_one(w, f);
            spun = false;
            continue;
        }
        if (may_exit(pool))
            return true;
        if (q_ready(pool)) {
            sched_yield(); /* a push is half done (or another worker was faster): look again */
            continue;
        }
        if (!spun && (spun = spin_for_work(pool)))
            continue;
        if (park(pool, w))
            return false;
    }
}

static void pool_destroy(thread_pool *pool);

/* ---- a task that ends its thread ----
 * A task that calls pthread_exit(), or acts on a pthread_cancel() of its thread, never returns
 * to the worker loop. It is forbidden, but the pool must not hang for it: the thread-specific
 * value of `ended_key` is the worker from its start until it leaves normally, so its destructor
 * runs only for a thread that ended abruptly. It fails the task's future (if the thread ended in
 * a done-callback, the future is done already), hands the queued work to another thread
 * (starting a replacement if needed) and takes the thread off the pool, as worker_main() would
 * have. */

#define THREAD_ENDED_MESSAGE                                                                       \
    "the task ended its thread (pthread_exit() or a cancellation) instead of returning; the "      \
    "thread pool replaced the thread"

static pthread_key_t ended_key;
static pthread_once_t ended_once = PTHREAD_ONCE_INIT;

static void thread_ended(void *arg)
{
    worker *w = arg;
    thread_pool *pool = w->pool;
    cf_future *f = w->task;
    if (f) {
        cf__outcome o = {.rc = CF_EPERM, .message = cf__strdup(THREAD_ENDED_MESSAGE)};
        cf__task_complete(f, &o, cf__future_load(f) & CF__F_TASK_BYTES);
        cf_future_unref(f);
    }
    if (w->busy) { /* whether its task had released it or it stayed busy for queued work */
        w->busy = false;
        atomic_fetch_sub_explicit(&pool->nbusy, 1, SC);
    }
    cf__task_context_swap(NULL); /* it pointed into the stack that was unwound */
    current_worker = NULL;
    bool exit_counted = w->exit_counted; /* `w` may be freed by a reaper once it has exited */
    unsigned index = w->index;
    cf__lock_acquire(&pool->lock);
    unsigned threads = atomic_fetch_sub_explicit(&pool->nthreads, 1, SC) - 1;
    /* Submitters trusted this busy thread to come back to the queue. Under the lock, so that
     * the pool cannot be freed before we are done with it. */
    if (q_ready(pool)) {
        if (pool->parked)
            cf__futex_wake(&unpark_one(pool)->wake, 1);
        else if (threads < pool->max_workers)
            spawn(pool);
    }
    w->exited = true;
    bool free_pool = pool->freeing_worker == w;
    cf__cond_broadcast(&pool->cond, &pool->lock);
    cf__lock_release(&pool->lock);
    CF__PROBE2(thread__exit, pool->handle, index);
    if (free_pool) {
        pthread_detach(pthread_self());
        pool_destroy(pool);
    }
    if (exit_counted)
        cf__at_exit_worker_gone();
}

static void make_ended_key(void)
{
    pthread_key_create(&ended_key, thread_ended);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    thread_pool *pool = w->pool;
    bool exit_counted = w->exit_counted; /* `w` may be freed by a reaper once it has exited */
    if (exit_counted)
        cf__at_exit_worker_running();
    current_worker = w;
    pthread_setspecific(ended_key, w);
    unsigned index = w->index;
    name_thread(pool, index);
    CF__PROBE2(thread__start, pool->handle, index);
    int rc = pool->initializer ? pool->initializer(pool->initializer_arg) : 0;
    if (rc)
        pool_break(pool, rc);
    bool counted = rc ? true : worker_loop(pool, w);
    cf__lock_acquire(&pool->lock);
    if (counted)
        atomic_fetch_sub_explicit(&pool->nthreads, 1, SC);
    w->exited = true;
    bool free_pool = pool->freeing_worker == w;
    cf__cond_broadcast(&pool->cond, &pool->lock);
    cf__lock_release(&pool->lock);
    current_worker = NULL;
    pthread_setspecific(ended_key, NULL); /* a normal end */
    CF__PROBE2(thread__exit, pool->handle, index);
    if (free_pool) {
        /* cf_executor_free() was called on this thread: nobody else can join it. */
        pthread_detach(pthread_self());
        pool_destroy(pool);
    }
    if (exit_counted)
        cf__at_exit_worker_gone();
    return NULL;
}

/* Joins and frees the records of workers that have exited (lock held; they no longer need it:
 * an exited worker only returns from its thread function). */
static void reap_exited(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    worker **pp = &pool->workers;
    while (*pp) {
        worker *w = *pp;
        if (w->exited && w != pool->freeing_worker) {
            *pp = w->next;
            pthread_join(w->thread, NULL);
            pool->completed_by_exited += atomic_load_explicit(&w->completed, memory_order_relaxed);
            cf__free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Starts one worker (lock held). */
static int spawn(thread_pool *pool)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
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
    /* Counted before it starts, so that it is never seen as missing. */
    atomic_fetch_add_explicit(&pool->nthreads, 1, SC);
    w->exit_counted = pool->at_exit.registered;
    if (w->exit_counted)
        cf__at_exit_worker_starting();
    int rc = cf__thread_create(&w->thread, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc) {
        if (w->exit_counted)
            cf__at_exit_worker_gone();
        atomic_fetch_sub_explicit(&pool->nthreads, 1, SC);
        cf__free(w);
        return rc;
    }
    pool->next_index++;
    pool->threads_started++;
    w->next = pool->workers;
    pool->workers = w;
    return 0;
}

/* ---- submit ---- */

/* Makes sure at least one thread exists before work is queued, so that a failure to start one
 * can still be reported as the submit's error. */
static int ensure_a_thread(thread_pool *pool)
{
    if (atomic_load_explicit(&pool->nthreads, SC))
        return 0;
    cf__lock_acquire(&pool->lock);
    int rc = atomic_load_explicit(&pool->nthreads, memory_order_relaxed) ? 0 : spawn(pool);
    cf__lock_release(&pool->lock);
    return rc;
}

/* Links fs[0..n-1] and pushes them as one chain. */
static void push_all(thread_pool *pool, cf_future *const *fs, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        cf__set_next(fs[i], fs[i + 1]);
    q_push(pool, fs[0], fs[n - 1]);
}

/* Waits for room for `n` tasks in a bounded queue (lock held). */
static int wait_for_room(thread_pool *pool, size_t n)
{
    CF__ASSERT_LOCK_HELD(&pool->lock);
    int64_t deadline;
    cf__deadline(pool->queue_timeout > 0 ? pool->queue_timeout : CF_FOREVER, &deadline);
    atomic_fetch_add_explicit(&pool->blocked_submitters, 1, SC);
    int rc = 0;
    while (queued(pool) + n > pool->max_queue && !atomic_load(&pool->shutdown) &&
           !atomic_load(&pool->broken) && rc == 0)
        rc = cf__cond_wait_lock(&pool->cond, &pool->lock, deadline);
    atomic_fetch_sub_explicit(&pool->blocked_submitters, 1, SC);
    if (atomic_load(&pool->shutdown))
        return CF_ESHUTDOWN;
    if (atomic_load(&pool->broken))
        return CF_EBROKEN;
    return queued(pool) + n > pool->max_queue ? CF_ETIMEDOUT : 0;
}

/* Bounded queue: decides, under the lock, how many of `n` tasks are pushed (the rest are for the
 * caller to run), and pushes them. Returns the count pushed, or a negative error. */
static long push_bounded(thread_pool *pool, cf_future *const *fs, size_t n)
{
    cf__lock_acquire(&pool->lock);
    long admitted;
    if (queued(pool) + n <= pool->max_queue) {
        admitted = (long)n;
    } else if (pool->policy == CF_QUEUE_REJECT) {
        admitted = CF_EFULL;
    } else if (pool->policy == CF_QUEUE_CALLER_RUNS) {
        size_t q = queued(pool);
        admitted = (long)(pool->max_queue > q ? pool->max_queue - q : 0);
    } else {
        int rc = wait_for_room(pool, n);
        admitted = rc ? rc : (long)n;
    }
    if (admitted > 0) {
        /* Counted under the lock, before the push: the next admission sees it. */
        atomic_fetch_add_explicit(&pool->submits, (uint64_t)admitted * PUSHED_ONE,
                                  memory_order_relaxed);
        push_all(pool, fs, (size_t)admitted);
    }
    cf__lock_release(&pool->lock);
    return admitted;
}

static int tp_submit(void *impl, cf_future *const *fs, size_t n)
{
    thread_pool *pool = impl;
    /* Announce the submit before looking at the flags: shutdown and idle exit look at
     * `submitting` after changing what we read here. An unbounded queue counts the tasks in the
     * same operation (a bounded one counts them under its lock). */
    uint64_t counted = pool->max_queue ? 0 : (uint64_t)n * PUSHED_ONE;
    atomic_fetch_add_explicit(&pool->submits, counted + SUBMITTING_ONE, SC);
    int rc = 0;
    long pushed = (long)n;
    if (atomic_load_explicit(&pool->shutdown, SC))
        rc = CF_ESHUTDOWN;
    else if (atomic_load_explicit(&pool->broken, SC))
        rc = CF_EBROKEN;
    else if ((rc = ensure_a_thread(pool)) == 0) {
        if (pool->max_queue)
            pushed = push_bounded(pool, fs, n);
        else
            push_all(pool, fs, n);
        rc = pushed < 0 ? (int)pushed : 0;
    }
    atomic_fetch_sub_explicit(&pool->submits, (rc ? counted : 0) + SUBMITTING_ONE, SC);
    if (rc)
        return rc;
    if (pushed > 0)
        ensure_worker(pool);
    for (size_t i = (size_t)pushed; i < n; i++) {
        cf_task_run(fs[i]);
        cf_future_unref(fs[i]);
    }
    return 0;
}

/* ---- shutdown and free ---- */

static void cancel_all(cf_future *list)
{
    while (list) {
        cf_future *f = list;
        list = cf__next(f);
        cf_future_cancel(f);
        cf_future_unref(f);
    }
}

/* Waits until every worker has exited, except workers of this pool that are themselves waiting
 * here (a task or callback that called shutdown): they exit when their task returns. */
static void wait_for_workers(thread_pool *pool)
{
    bool inside = in_own_worker(pool);
    cf__lock_acquire(&pool->lock);
    pool->waiting_workers += inside;
    while (atomic_load_explicit(&pool->nthreads, memory_order_relaxed) > pool->waiting_workers)
        cf__cond_wait_lock(&pool->cond, &pool->lock, CF__FOREVER_NS);
    pool->waiting_workers -= inside;
    cf__lock_release(&pool->lock);
}

static int tp_shutdown(void *impl, bool wait, bool cancel_futures)
{
    thread_pool *pool = impl;
    cf__lock_acquire(&pool->lock);
    atomic_store_explicit(&pool->shutdown, true, SC);
    wake_all_locked(pool);
    cf__cond_broadcast(&pool->cond, &pool->lock);
    cf__lock_release(&pool->lock);
    if (cancel_futures)
        cancel_all(q_take_all(pool));
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
    cancel_all(q_take_all(pool));
    cf__free(pool);
}

/* In a forked child the threads do not exist and the locks may be held by threads that
 * vanished: release only memory. */
static void pool_forget(thread_pool *pool)
{
    while (pool->workers) {
        worker *w = pool->workers;
        pool->workers = w->next;
        cf__free(w);
    }
    cf_future *f = atomic_load_explicit(&pool->out, memory_order_relaxed);
    while (f) {
        cf_future *next = cf__next(f);
        if (f != &pool->stub)
            cf_future_unref(f);
        f = next;
    }
    cf__free(pool);
}

static int tp_destroy(void *impl)
{
    thread_pool *pool = impl;
    if (pool->at_exit.begin)
        cf__at_exit_unregister(&pool->at_exit);
    tp_shutdown(pool, true, false);
    if (in_own_worker(pool)) {
        /* We run on one of the pool's threads: it frees the pool when it exits. */
        cf__lock_acquire(&pool->lock);
        pool->freeing_worker = current_worker;
        cf__lock_release(&pool->lock);
        return 0;
    }
    pool_destroy(pool);
    return 0;
}

/* ---- options and construction ---- */

static size_t tp_default_chunksize(void *impl, size_t n)
{
    return cf__chunksize_for(n, ((thread_pool *)impl)->max_workers);
}

static size_t tp_max_chunksize(void *impl)
{
    thread_pool *pool = impl;
    return pool->max_queue ? pool->max_queue : SIZE_MAX;
}

static void tp_forget(void *impl)
{
    pool_forget(impl);
}

static const cf_executor_ops thread_pool_ops = {
    .name = "thread_pool",
    .submit = tp_submit,
    .shutdown = tp_shutdown,
    .destroy = tp_destroy,
    .forget = tp_forget,
    .default_chunksize = tp_default_chunksize,
    .max_chunksize = tp_max_chunksize,
};

/* max_workers with the default applied: min(32, CPUs + 4), as Python. */
static unsigned effective_max_workers(const cf_thread_pool_options *o)
{
    unsigned cpus = cf__cpu_count();
    return o->max_workers ? o->max_workers : (cpus + 4 < 32 ? cpus + 4 : 32);
}

/* ---- finishing pending work at exit (core/at_exit.c) ---- */

static thread_pool *pool_of_entry(cf__at_exit_entry *e)
{
    return (thread_pool *)((char *)e - offsetof(thread_pool, at_exit));
}

static void exit_begin(cf__at_exit_entry *e)
{
    tp_shutdown(pool_of_entry(e), false, false);
}

static void exit_end(cf__at_exit_entry *e)
{
    thread_pool *pool = pool_of_entry(e);
    cf__lock_acquire(&pool->lock);
    reap_exited(pool);
    cf__lock_release(&pool->lock);
}

CF__ABI_STRUCT(cf_thread_pool_options, 200);
CF__ABI_STRUCT(cf_thread_pool_stats, 160);

static int check_options(const cf_thread_pool_options *o)
{
    if (o->max_workers > CF_MAX_WORKERS)
        return CF_EINVAL;
    if (!CF__RESERVED_ZERO(o))
        return CF_EINVAL;
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
    pool->idle_timeout_ns = cf__seconds_to_ns(o->idle_timeout);
    pool->idle_timeout = o->idle_timeout;
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
    pthread_once(&ended_once, make_ended_key);
    thread_pool *pool = cf__calloc_aligned(CF__CACHELINE, sizeof(*pool));
    if (!pool)
        return CF_ENOMEM;
    q_init(pool);
    apply_options(pool, o);
    if (o->finish_at_exit) {
        pool->at_exit = (cf__at_exit_entry){.begin = exit_begin, .end = exit_end};
        rc = cf__at_exit_register(&pool->at_exit);
        if (rc) {
            cf__free(pool);
            return rc;
        }
    }
    rc = cf_executor_new(out, &thread_pool_ops, pool);
    if (rc) {
        if (pool->at_exit.begin)
            cf__at_exit_unregister(&pool->at_exit);
        cf__free(pool);
        return rc;
    }
    pool->handle = *out;
    return 0;
}

int cf_thread_pool_get_stats(cf_thread_pool_stats *out, const cf_executor *ex)
{
    thread_pool *pool = cf_executor_impl(ex, &thread_pool_ops);
    if (!out || !pool)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    cf__lock_acquire(&pool->lock);
    unsigned long long completed = pool->completed_by_exited;
    for (worker *w = pool->workers; w; w = w->next)
        completed += atomic_load_explicit(&w->completed, memory_order_relaxed);
    *out = (cf_thread_pool_stats){
        .threads = atomic_load_explicit(&pool->nthreads, memory_order_relaxed),
        .idle = atomic_load_explicit(&pool->idle, memory_order_relaxed) / IDLE_PARKED_ONE,
        .queued = queued(pool),
        .threads_started = pool->threads_started,
        .tasks_completed = completed,
    };
    cf__lock_release(&pool->lock);
    return 0;
}

int cf_thread_pool_get_options(cf_thread_pool_options *out, const cf_executor *ex)
{
    const thread_pool *pool = cf_executor_impl(ex, &thread_pool_ops);
    if (!out || !pool)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    size_t stack_size = pool->stack_size;
    if (!stack_size) {
        /* The size the threads got: the system default for new threads. */
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) == 0) {
            pthread_attr_getstacksize(&attr, &stack_size);
            pthread_attr_destroy(&attr);
        }
    }
    /* Set at creation and never changed: no lock needed. */
    *out = (cf_thread_pool_options){
        .max_workers = pool->max_workers,
        .min_workers = pool->min_workers,
        .thread_name_prefix = pool->prefix,
        .initializer = pool->initializer,
        .initializer_arg = pool->initializer_arg,
        .stack_size = stack_size,
        .max_queue = pool->max_queue,
        .queue_policy = pool->policy,
        .queue_timeout = pool->queue_timeout,
        .idle_timeout = pool->idle_timeout,
        .finish_at_exit = pool->at_exit.begin != NULL,
    };
    return 0;
}
