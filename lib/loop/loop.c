/* The event loop: ready queue, timers, the cross-thread inbox and its wake-ups, run / stop /
 * close, and the embedded mode (one pollable descriptor + dispatch).
 *
 * Wake-up protocol. Other threads push handles onto the inbox (a Treiber stack: one CAS, no
 * lock) and then write the eventfd only if `wake_pending` flips from 0 to 1 under their own
 * exchange. The loop keeps the flag at 1 whenever it is awake, so producers never make a system
 * call while it is busy; just before it may sleep it stores 0 and re-reads the inbox (both
 * sequentially consistent, the Dekker pattern): either it sees the new item, or the producer
 * sees the 0 and writes. So at most one eventfd write happens per sleep of the loop, however
 * many threads post. */
#include <errno.h>
#include <math.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/trace.h"
#include "loop/io.h"
#include "loop/loop_internal.h"

#define INBOX_CLOSED ((cf_loop_handle *)(uintptr_t)1)

enum {
    /* asyncio's compaction rule: rebuild the heap when more than this many timers are
     * scheduled and more than half of them are cancelled. */
    MIN_SCHEDULED_TIMERS = 100,
    SPARE_SLABS = 2, /* empty handle slabs kept while idle */
    TAG_EVENTFD = 1, /* epoll data of the loop's own descriptors; watched ones have larger tags */
    TAG_TIMERFD = 2,
    MAX_EVENTS = 64, /* epoll events taken per wait */
    BUSY_RUNNING = 1,
    BUSY_DISPATCHING = 2,
    BUSY_CLOSING = 3,
};

#define MAX_TIMEOUT_NS  (24 * 3600 * CF__NS_PER_S) /* asyncio's MAXIMUM_SELECT_TIMEOUT */
#define DEFAULT_SPIN_NS 50000
#define MIN_SPIN_NS     500

static _Thread_local cf_loop *running_loop CF__TLS_FAST;

/* ---- references ---- */

static void loop_destroy(cf_loop *loop)
{
    cf__slab_cache_destroy(&loop->handles);
    if (loop->tfd >= 0)
        close(loop->tfd);
    close(loop->efd);
    close(loop->epfd);
    cf__free(loop);
}

void cf__loop_unref(cf_loop *loop)
{
    if (atomic_fetch_sub_explicit(&loop->refs, 1, memory_order_acq_rel) == 1)
        loop_destroy(loop);
}

/* ---- handles ---- */

static void user_run(cf_loop *loop, cf_loop_handle *h)
{
    ((cf_loop_cb)h->fn)(loop, h->data);
}

static const cf__handle_kind user_kind = {.run = user_run};

cf_loop_handle *cf__loop_handle_alloc(cf_loop *loop, const cf__handle_kind *kind, void *fn,
                                      void *data)
{
    CF__ASSERT_LOOP_THREAD(loop);
    cf_loop_handle *h = cf__fault(CF__FAULT_ALLOC) ? NULL : cf__slab_alloc(&loop->handles);
    if (h)
        *h = (cf_loop_handle){.kind = kind, .fn = fn, .data = data, .loop = loop, .refs = 1};
    return h;
}

cf_loop_handle *cf__loop_handle_heap(cf_loop *loop, const cf__handle_kind *kind, void *fn,
                                     void *data)
{
    cf_loop_handle *h = cf__malloc(sizeof(*h));
    if (h)
        *h = (cf_loop_handle){
            .kind = kind, .fn = fn, .data = data, .loop = loop, .refs = 1, .flags = CF__H_HEAP};
    return h;
}

static void handle_free(cf_loop *loop, cf_loop_handle *h)
{
    if (h->flags & CF__H_HEAP)
        cf__free(h);
    else
        cf__slab_free(&loop->handles, h);
}

void cf__loop_handle_release(cf_loop *loop, cf_loop_handle *h)
{
    CF__ASSERT(cf__loop_on_thread(loop) || ((h->flags & CF__H_HEAP) && cf_loop_is_closed(loop)));
    CF__ASSERT(h->refs > 0);
    if (--h->refs == 0)
        handle_free(loop, h);
}

void cf__loop_handle_embed(cf_loop_handle *h, cf_loop *loop, const cf__handle_kind *kind,
                           void *data)
{
    *h = (cf_loop_handle){.kind = kind, .data = data, .loop = loop, .flags = CF__H_EMBEDDED};
}

void cf__loop_handle_cancel(cf_loop_handle *h)
{
    CF__ASSERT_LOOP_THREAD(h->loop);
    if (h->flags & (CF__H_CANCELLED | CF__H_DONE))
        return;
    h->flags |= CF__H_CANCELLED;
    if (h->flags & CF__H_IN_HEAP)
        h->loop->timers_cancelled++;
}

/* A handle the loop will not run: tell its owner, then recycle it (loop thread). */
static void handle_discard(cf_loop *loop, cf_loop_handle *h)
{
    CF__ASSERT_LOOP_THREAD(loop);
    uint32_t flags = h->flags;
    h->flags = (flags & ~(CF__H_QUEUED | CF__H_IN_HEAP)) | CF__H_DONE;
    if (!(flags & CF__H_CANCELLED) && h->kind->drop)
        h->kind->drop(h);
    if (!(flags & CF__H_EMBEDDED))
        cf__loop_handle_release(loop, h);
}

/* The same on a thread that posted to a closed loop: only handles allocated for the post
 * (CF__H_HEAP) or embedded ones get here. */
static void handle_discard_remote(cf_loop_handle *h)
{
    bool embedded = h->flags & CF__H_EMBEDDED;
    if (h->kind->drop)
        h->kind->drop(h);
    if (!embedded)
        cf__free(h);
}

/* ---- wake-ups ---- */

static void wake(cf_loop *loop)
{
    if (atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_seq_cst) == 0) {
        uint64_t one = 1;
        /* Only fails if the counter would overflow, which then means it is readable anyway. */
        ssize_t n = write(loop->efd, &one, sizeof(one));
        (void)n;
        atomic_fetch_add_explicit(&loop->wake_writes, 1, memory_order_relaxed);
    }
}

static bool read_fd(int fd)
{
    uint64_t count;
    return read(fd, &count, sizeof(count)) == (ssize_t)sizeof(count);
}

static void arm_timerfd(cf_loop *loop, int64_t when)
{
    struct itimerspec its = {0};
    if (when != CF__FOREVER_NS)
        its.it_value = cf__timespec(when > 0 ? when : 1);
    timerfd_settime(loop->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    loop->tfd_armed = when;
}

static void rearm_timerfd(cf_loop *loop)
{
    const cf__timer_entry *top = cf__timer_heap_top(&loop->timers);
    int64_t want = top ? top->when : CF__FOREVER_NS;
    if (want != loop->tfd_armed)
        arm_timerfd(loop, want);
}

/* ---- queues ---- */

void cf__loop_ready_push(cf_loop *loop, cf_loop_handle *h)
{
    CF__ASSERT_LOOP_THREAD(loop);
    CF__ASSERT(!loop->closed);
    CF__ASSERT(!(h->flags & (CF__H_QUEUED | CF__H_DONE))); /* queued once, never after it ran */
    h->next = NULL;
    h->flags |= CF__H_QUEUED;
    if (loop->ready_tail)
        loop->ready_tail->next = h;
    else
        loop->ready_head = h;
    loop->ready_tail = h;
    /* Embedded and between dispatches: make the host loop call dispatch. */
    if (CF__UNLIKELY(loop->embedded && !loop->dispatching))
        wake(loop);
}

static bool inbox_push(cf_loop *loop, cf_loop_handle *h)
{
    cf_loop_handle *head = atomic_load_explicit(&loop->inbox, memory_order_relaxed);
    do {
        if (head == INBOX_CLOSED)
            return false;
        h->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&loop->inbox, &head, h, memory_order_seq_cst,
                                                    memory_order_relaxed));
    return true;
}

/* Moves everything posted from other threads to the ready queue, oldest first. */
static void drain_inbox(cf_loop *loop)
{
    CF__ASSERT_LOOP_THREAD(loop);
    if (atomic_load_explicit(&loop->inbox, memory_order_relaxed) == NULL)
        return;
    cf_loop_handle *newest = atomic_exchange_explicit(&loop->inbox, NULL, memory_order_acquire);
    cf_loop_handle *fifo = CF__CHAIN_REVERSE(newest, cf_loop_handle, next);
    loop->drains++;
    while (fifo) {
        cf_loop_handle *next = fifo->next;
        cf__loop_ready_push(loop, fifo);
        fifo = next;
    }
}

void cf__loop_collect_inbox(cf_loop *loop)
{
    drain_inbox(loop);
}

void cf__loop_post(cf_loop *loop, cf_loop_handle *h)
{
    if (cf__loop_on_thread(loop)) {
        if (loop->closed)
            handle_discard(loop, h);
        else
            cf__loop_ready_push(loop, h);
        return;
    }
    /* Once pushed, the handle may run and release the last reference to the loop before the
     * wake-up below: hold one across the post. */
    cf__loop_ref(loop);
    if (inbox_push(loop, h))
        wake(loop);
    else
        handle_discard_remote(h);
    cf__loop_unref(loop);
}

/* ---- timers ---- */

int cf__loop_timer_start(cf_loop *loop, cf_loop_handle *h, int64_t when)
{
    CF__ASSERT_LOOP_THREAD(loop);
    CF__ASSERT(!(h->flags & (CF__H_QUEUED | CF__H_IN_HEAP | CF__H_DONE)));
    if (cf__timer_heap_push(&loop->timers, when, loop->timer_seq++, h) != 0)
        return CF_ENOMEM;
    h->when = when;
    h->flags |= CF__H_IN_HEAP;
    if (loop->embedded && !loop->dispatching && when < loop->tfd_armed)
        arm_timerfd(loop, when);
    return 0;
}

cf_loop_handle *cf__loop_timer_new(cf_loop *loop, const cf__handle_kind *kind, void *data,
                                   int64_t when)
{
    cf_loop_handle *h = cf__loop_handle_alloc(loop, kind, NULL, data);
    if (!h)
        return NULL;
    if (cf__loop_timer_start(loop, h, when) != 0) {
        cf__loop_handle_release(loop, h);
        return NULL;
    }
    h->refs++; /* the owner's, so that it can cancel it */
    return h;
}

bool cf__loop_timer_cancel(cf_loop_handle **timer)
{
    cf_loop_handle *h = *timer;
    if (!h)
        return false;
    CF__ASSERT_LOOP_THREAD(h->loop);
    *timer = NULL;
    cf__loop_handle_cancel(h);
    cf__loop_handle_release(h->loop, h);
    return true;
}

void cf__loop_timer_fired(cf_loop_handle **timer, cf_loop_handle *h)
{
    *timer = NULL;
    cf__loop_handle_release(h->loop, h);
}

static void timer_retire(cf_loop *loop, cf_loop_handle *h)
{
    loop->timers_cancelled--;
    h->flags = (h->flags & ~CF__H_IN_HEAP) | CF__H_DONE;
    cf__loop_handle_release(loop, h);
}

static bool keep_timer(void *item, void *ctx)
{
    cf_loop_handle *h = item;
    if (!(h->flags & CF__H_CANCELLED))
        return true;
    timer_retire(ctx, h);
    return false;
}

static void purge_cancelled_timers(cf_loop *loop)
{
    size_t n = loop->timers.n;
    if (n > MIN_SCHEDULED_TIMERS && loop->timers_cancelled * 2 > n) {
        cf__timer_heap_filter(&loop->timers, keep_timer, loop);
        return;
    }
    const cf__timer_entry *top;
    while ((top = cf__timer_heap_top(&loop->timers)) &&
           (((cf_loop_handle *)top->item)->flags & CF__H_CANCELLED))
        timer_retire(loop, cf__timer_heap_pop(&loop->timers));
}

static void collect_due_timers(cf_loop *loop, int64_t now)
{
    const cf__timer_entry *top;
    while ((top = cf__timer_heap_top(&loop->timers)) && top->when <= now) {
        cf_loop_handle *h = cf__timer_heap_pop(&loop->timers);
        if (h->flags & CF__H_CANCELLED) {
            timer_retire(loop, h);
            continue;
        }
        h->flags &= ~CF__H_IN_HEAP;
        cf__loop_ready_push(loop, h);
    }
}

/* ---- one iteration ---- */

/* Runs the handles that are ready now; those they schedule wait for the next iteration. */
static void run_ready(cf_loop *loop)
{
    CF__ASSERT_LOOP_THREAD(loop);
    cf_loop_handle *h = loop->ready_head;
    loop->ready_head = loop->ready_tail = NULL;
    while (h) {
        cf_loop_handle *next = h->next;
        uint32_t flags = h->flags;
        CF__ASSERT(flags & CF__H_QUEUED);
        if (flags & CF__H_EMBEDDED) {
            /* The owner may free it (or queue it again) while running it. */
            h->flags = flags & ~CF__H_QUEUED;
            h->kind->run(loop, h);
        } else {
            h->flags = (flags & ~CF__H_QUEUED) | CF__H_DONE;
            if (!(flags & CF__H_CANCELLED))
                h->kind->run(loop, h);
            cf__loop_handle_release(loop, h);
        }
        h = next;
    }
}

/* The callbacks of one iteration, between the two probes of an iteration (docs/tracing.md). */
static void run_ready_traced(cf_loop *loop)
{
    CF__PROBE2(loop__iteration, loop, loop->iterations);
    run_ready(loop);
    CF__PROBE2(loop__iteration__done, loop, loop->iterations);
}

static int64_t next_timeout(cf_loop *loop)
{
    if (loop->ready_head || loop->stopping)
        return 0;
    const cf__timer_entry *top = cf__timer_heap_top(&loop->timers);
    if (!top)
        return -1;
    int64_t t = top->when - cf__now_ns();
    return t <= 0 ? 0 : t > MAX_TIMEOUT_NS ? MAX_TIMEOUT_NS : t;
}

#ifdef CF_HAVE_EPOLL_PWAIT2
/* Kernels before 5.11 (and valgrind 3.19) lack epoll_pwait2: remember it. */
static _Atomic bool no_pwait2;
#endif

static int epoll_wait_ns(int epfd, struct epoll_event *ev, int max, int64_t timeout_ns)
{
#ifdef CF_HAVE_EPOLL_PWAIT2
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            ts = cf__timespec(timeout_ns);
            tsp = &ts;
        }
        int n = epoll_pwait2(epfd, ev, max, tsp, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    return epoll_wait(epfd, ev, max, cf__timeout_ms(timeout_ns));
}

/* Busy-waits up to `limit` ns for a post; true if one arrived. */
static bool spin_for_post(cf_loop *loop, int64_t limit)
{
    int64_t start = cf__now_ns();
    do {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&loop->inbox, memory_order_acquire) != NULL)
                return true;
            cf__cpu_relax();
        }
    } while (cf__now_ns() - start < limit);
    return false;
}

/* Handles what one epoll_wait returned. The loop's own descriptors are consumed here only when
 * it runs (a dispatch consumes them in dispatch_consume, by its own rules). */
static void handle_events(cf_loop *loop, const struct epoll_event *ev, int n, bool own)
{
    for (int i = 0; i < n; i++) {
        uint64_t tag = ev[i].data.u64;
        if (tag >= CF__IO_TAG_MIN)
            cf__loop_io_event(loop, tag, ev[i].events);
        else if (own)
            read_fd(tag == TAG_EVENTFD ? loop->efd : loop->tfd);
    }
}

/* Takes the events of watched descriptors without waiting: a loop with work ready still polls
 * them in every iteration, as asyncio does, so a busy loop never starves its descriptors. */
static void poll_descriptors(cf_loop *loop, bool own)
{
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, ev, MAX_EVENTS, 0);
    handle_events(loop, ev, n, own);
}

/* Waits up to `timeout` ns (-1: no limit) for a post, a timer, a watched descriptor, or the
 * timerfd. Returns whether it asked epoll (and so took the descriptors' events). */
/* Whether the loop may spin for completions: not while it watches descriptors (a spin sees only
 * the inbox, so their events would wait for its end, and on a small machine the spinning thread
 * takes the CPU from the workers producing the completions: on the HTTP server's offload route,
 * 5 paired runs on a loaded 2-vCPU machine gave the same requests/s with and without spinning,
 * and p99 latencies of 8-83 ms with it against 2-12 ms without). The signalfd does not count:
 * signals are rare. */
static bool may_spin(cf_loop *loop)
{
    size_t quiet = cf__loop_signals_active(loop) ? 1 : 0;
    return loop->spin_ns > 0 && loop->io_registered <= quiet &&
           atomic_load_explicit(&loop->outstanding, memory_order_relaxed);
}

static bool wait_for_work(cf_loop *loop, int64_t timeout)
{
    int64_t spun = 0;
    if (may_spin(loop)) {
        spun = timeout >= 0 && timeout < loop->spin_ns ? timeout : loop->spin_ns;
        if (spin_for_post(loop, spun))
            return false;
        if (spun == loop->spin_ns)
            loop->spin_ns = spun / 2 > MIN_SPIN_NS ? spun / 2 : MIN_SPIN_NS;
    }
    /* About to idle: give back the handle slabs a burst left empty, and the stacks. */
    cf__slab_trim(&loop->handles, SPARE_SLABS);
    cf__loop_tasks_idle(loop);
    atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
    loop->sleeps++;
    bool polled = false;
    if (atomic_load_explicit(&loop->inbox, memory_order_seq_cst) == NULL) {
        struct epoll_event ev[MAX_EVENTS];
        int64_t start = cf__now_ns();
        int n = epoll_wait_ns(loop->epfd, ev, MAX_EVENTS, timeout);
        handle_events(loop, ev, n, true);
        polled = true;
        /* Woken by a completion that a longer spin would have caught: spin longer. */
        int64_t waited = spun + (cf__now_ns() - start);
        if (spun && waited < loop->spin_max_ns &&
            atomic_load_explicit(&loop->inbox, memory_order_relaxed) != NULL)
            loop->spin_ns = 2 * waited < loop->spin_max_ns ? 2 * waited : loop->spin_max_ns;
    }
    atomic_store_explicit(&loop->wake_pending, 1, memory_order_seq_cst);
    return polled;
}

/* One iteration, waiting at most `max_wait` ns for work (-1: as long as it takes). */
static void run_once(cf_loop *loop, int64_t max_wait)
{
    loop->iterations++;
    purge_cancelled_timers(loop);
    int64_t timeout = next_timeout(loop);
    if (max_wait >= 0 && (timeout < 0 || timeout > max_wait))
        timeout = max_wait;
    bool polled = timeout != 0 && wait_for_work(loop, timeout);
    if (!polled && loop->io_registered)
        poll_descriptors(loop, true);
    drain_inbox(loop);
    collect_due_timers(loop, cf__now_ns());
    run_ready_traced(loop);
}

/* ---- checks and claiming the loop ---- */

int cf__loop_check(cf_loop *loop)
{
    if (!loop)
        return CF_EINVAL;
    if (!cf__loop_on_thread(loop))
        return CF_EPERM;
    return loop->closed ? CF_ECLOSED : 0;
}

/* Makes the calling thread the loop thread for a run or a dispatch. */
static int claim(cf_loop *loop, uint32_t how)
{
    if (!loop)
        return CF_EINVAL;
    if (loop->fork_gen != cf__fork_gen())
        return CF_EFORKED;
    if (atomic_load_explicit(&loop->closed_flag, memory_order_acquire))
        return CF_ECLOSED;
    if (running_loop)
        return CF_EINVALSTATE;
    uint32_t idle = 0;
    if (!atomic_compare_exchange_strong(&loop->busy, &idle, how))
        return CF_EINVALSTATE;
    uintptr_t self = cf__thread_self();
    if (loop->tasks_live && loop->tasks_thread != self) {
        /* Suspended tasks would resume on another thread: coroutines never migrate. */
        atomic_store_explicit(&loop->busy, 0, memory_order_release);
        return CF_EINVALSTATE;
    }
    atomic_store_explicit(&loop->owner, self, memory_order_relaxed);
    running_loop = loop;
    return 0;
}

static void unclaim(cf_loop *loop)
{
    running_loop = NULL;
    atomic_store_explicit(&loop->busy, 0, memory_order_release);
}

/* ---- public: life cycle ---- */

static void close_loop(cf_loop *loop);

static int open_fds(cf_loop *loop)
{
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    loop->epfd = cf__fd_above_stdio(epoll_create1(EPOLL_CLOEXEC));
    if (loop->epfd < 0)
        return cf__errno_code(errno);
    int rc = CF_EMFILE; /* a fault injected on the eventfd */
    loop->efd = -1;
    if (!cf__fault(CF__FAULT_FD)) {
        loop->efd = cf__fd_above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        rc = cf__errno_code(errno);
    }
    if (loop->efd < 0) {
        close(loop->epfd);
        return rc;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_EVENTFD};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->efd, &ev) != 0) {
        rc = cf__errno_code(errno);
        close(loop->efd);
        close(loop->epfd);
        return rc;
    }
    return 0;
}

CF__ABI_STRUCT(cf_loop_options, 144);
CF__ABI_STRUCT(cf_loop_task_options, 136);

int cf_loop_new(cf_loop **out, const cf_loop_options *options)
{
    static const cf_loop_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_loop_options *o = options ? options : &defaults;
    if (isnan(o->spin_time) || !CF__RESERVED_ZERO(o))
        return CF_EINVAL;
    cf__fork_init();
    cf_loop *loop = cf__calloc(1, sizeof(*loop));
    if (!loop)
        return CF_ENOMEM;
    int rc = open_fds(loop);
    if (rc) {
        cf__free(loop);
        return rc;
    }
    atomic_init(&loop->refs, 1);
    cf__slab_cache_init(&loop->handles, sizeof(cf_loop_handle));
    atomic_init(&loop->owner, cf__thread_self());
    loop->tfd = -1;
    loop->tfd_armed = CF__FOREVER_NS;
    loop->fork_gen = cf__fork_gen();
    /* At most a second: a longer spin would only burn the CPU. */
    loop->spin_max_ns = o->spin_time == 0
                            ? DEFAULT_SPIN_NS
                            : cf__seconds_to_ns(o->spin_time > 1.0 ? 1.0 : o->spin_time);
    loop->spin_ns = loop->spin_max_ns;
    loop->default_workers = o->default_workers;
    *out = loop;
    return 0;
}

static void discard_list(cf_loop *loop, cf_loop_handle *h)
{
    while (h) {
        cf_loop_handle *next = h->next;
        handle_discard(loop, h);
        h = next;
    }
}

static void discard_all(cf_loop *loop)
{
    cf_loop_handle *ready = loop->ready_head;
    loop->ready_head = loop->ready_tail = NULL;
    discard_list(loop, ready);
    while (cf__timer_heap_top(&loop->timers))
        handle_discard(loop, cf__timer_heap_pop(&loop->timers));
    loop->timers_cancelled = 0;
}

int cf_loop_close(cf_loop *loop)
{
    if (!loop)
        return CF_EINVAL;
    if (atomic_load_explicit(&loop->closed_flag, memory_order_acquire))
        return 0;
    /* Like a run, close adopts an idle loop: the caller becomes its loop thread. */
    uint32_t idle = 0;
    if (!atomic_compare_exchange_strong(&loop->busy, &idle, BUSY_CLOSING))
        return CF_EINVALSTATE;
    atomic_store_explicit(&loop->owner, cf__thread_self(), memory_order_relaxed);
    close_loop(loop);
    atomic_store_explicit(&loop->busy, 0, memory_order_release);
    return 0;
}

int cf_loop_free(cf_loop *loop)
{
    if (!loop)
        return 0;
    int rc = cf_loop_close(loop);
    if (rc)
        return rc;
    cf__loop_join_shutdown_jobs(loop);
    if (loop->default_executor) {
        cf_executor_free(loop->default_executor);
        loop->default_executor = NULL;
    }
    cf__loop_unref(loop);
    return 0;
}

static void close_loop(cf_loop *loop)
{
    /* Tasks first, while their completions can still arrive through the inbox. */
    loop->closing = true;
    cf__loop_close_tasks(loop);
    loop->closed = true;
    atomic_store_explicit(&loop->closed_flag, 1, memory_order_release);
    cf_loop_handle *late =
        atomic_exchange_explicit(&loop->inbox, INBOX_CLOSED, memory_order_acq_rel);
    discard_all(loop);
    discard_list(loop, late);
    cf__loop_tasks_closed(loop);
    discard_all(loop);
    cf__loop_io_close(loop);
    cf__loop_signals_close(loop);
    if (loop->default_executor)
        cf_executor_shutdown(loop->default_executor, false, false);
    cf__timer_heap_free(&loop->timers);
}

/* The start and end of run_forever and run_once. */
static int run_begin(cf_loop *loop)
{
    int rc = claim(loop, BUSY_RUNNING);
    if (rc)
        return rc;
    if (loop->embedded) {
        unclaim(loop);
        return CF_EINVALSTATE;
    }
    loop->running = true;
    atomic_store_explicit(&loop->wake_pending, 1, memory_order_seq_cst);
    return 0;
}

static void run_end(cf_loop *loop)
{
    loop->stopping = false;
    loop->running = false;
    unclaim(loop);
}

int cf_loop_run_forever(cf_loop *loop)
{
    int rc = run_begin(loop);
    if (rc)
        return rc;
    for (;;) {
        run_once(loop, -1);
        if (loop->stopping)
            break;
    }
    run_end(loop);
    return 0;
}

int cf_loop_run_once(cf_loop *loop, double timeout)
{
    if (isnan(timeout))
        return CF_EINVAL;
    int rc = run_begin(loop);
    if (rc)
        return rc;
    int64_t max_wait = timeout < 0 ? -1 : cf__seconds_to_ns(timeout);
    run_once(loop, max_wait > MAX_TIMEOUT_NS ? MAX_TIMEOUT_NS : max_wait);
    run_end(loop);
    return 0;
}

static void stop_cb(cf_loop *loop, void *data)
{
    (void)data;
    loop->stopping = true;
}

int cf_loop_stop(cf_loop *loop)
{
    if (!loop)
        return CF_EINVAL;
    if (!cf__loop_on_thread(loop))
        return cf_loop_call_soon_threadsafe(loop, stop_cb, NULL);
    if (loop->closed)
        return CF_ECLOSED;
    loop->stopping = true;
    return 0;
}

bool cf_loop_is_running(const cf_loop *loop)
{
    return loop &&
           atomic_load_explicit(&((cf_loop *)loop)->busy, memory_order_relaxed) == BUSY_RUNNING;
}

bool cf_loop_is_closed(const cf_loop *loop)
{
    return loop && atomic_load_explicit(&((cf_loop *)loop)->closed_flag, memory_order_acquire);
}

double cf_loop_time(const cf_loop *loop)
{
    (void)loop;
    return (double)cf__now_ns() / 1e9;
}

cf_loop *cf_loop_current(void)
{
    return running_loop;
}

void cf__loop_get_stats(cf_loop *loop, cf__loop_stats *out)
{
    *out = (cf__loop_stats){
        .wake_writes = atomic_load(&loop->wake_writes),
        .sleeps = loop->sleeps,
        .drains = loop->drains,
        .iterations = loop->iterations,
    };
}

/* ---- public: callbacks and timers ---- */

static int schedule(cf_loop_handle **handle, cf_loop *loop, int64_t when, cf_loop_cb cb, void *data)
{
    if (handle)
        *handle = NULL;
    if (!cb)
        return CF_EINVAL;
    int rc = cf__loop_check(loop);
    if (rc)
        return rc;
    cf_loop_handle *h = handle ? cf__loop_handle_heap(loop, &user_kind, (void *)cb, data)
                               : cf__loop_handle_alloc(loop, &user_kind, (void *)cb, data);
    if (!h)
        return CF_ENOMEM;
    if (when == INT64_MIN) {
        cf__loop_ready_push(loop, h);
    } else if (cf__loop_timer_start(loop, h, when) != 0) {
        handle_free(loop, h);
        return CF_ENOMEM;
    }
    if (handle) {
        h->refs++;
        h->flags |= CF__H_LOOP_REF;
        cf__loop_ref(loop);
        *handle = h;
    }
    return 0;
}

int cf_loop_call_soon(cf_loop_handle **handle, cf_loop *loop, cf_loop_cb cb, void *data)
{
    return schedule(handle, loop, INT64_MIN, cb, data);
}

int cf_loop_call_later(cf_loop_handle **handle, cf_loop *loop, double delay, cf_loop_cb cb,
                       void *data)
{
    if (isnan(delay)) {
        if (handle)
            *handle = NULL;
        return CF_EINVAL;
    }
    return schedule(handle, loop, cf__deadline_after(delay), cb, data);
}

int cf_loop_call_at(cf_loop_handle **handle, cf_loop *loop, double when, cf_loop_cb cb, void *data)
{
    if (isnan(when)) {
        if (handle)
            *handle = NULL;
        return CF_EINVAL;
    }
    /* The loop clock is CLOCK_MONOTONIC in seconds; far futures never fire. */
    return schedule(handle, loop, cf__seconds_to_ns(when), cb, data);
}

int cf_loop_call_soon_threadsafe(cf_loop *loop, cf_loop_cb cb, void *data)
{
    if (!loop || !cb)
        return CF_EINVAL;
    if (loop->fork_gen != cf__fork_gen())
        return CF_EFORKED;
    if (cf__loop_on_thread(loop)) /* asyncio appends to the same ready queue */
        return schedule(NULL, loop, INT64_MIN, cb, data);
    if (atomic_load_explicit(&loop->closed_flag, memory_order_acquire))
        return CF_ECLOSED;
    cf_loop_handle *h = cf__loop_handle_heap(loop, &user_kind, (void *)cb, data);
    if (!h)
        return CF_ENOMEM;
    int rc = 0;
    cf__loop_ref(loop);
    if (inbox_push(loop, h)) {
        wake(loop);
    } else {
        cf__free(h);
        rc = CF_ECLOSED;
    }
    cf__loop_unref(loop);
    return rc;
}

void cf_loop_handle_cancel(cf_loop_handle *handle)
{
    if (handle)
        cf__loop_handle_cancel(handle);
}

bool cf_loop_handle_cancelled(const cf_loop_handle *handle)
{
    return handle && (handle->flags & CF__H_CANCELLED);
}

double cf_loop_handle_when(const cf_loop_handle *handle)
{
    return handle ? (double)handle->when / 1e9 : 0;
}

void cf_loop_handle_unref(cf_loop_handle *handle)
{
    if (!handle)
        return;
    cf_loop *loop = handle->loop;
    bool loop_ref = handle->flags & CF__H_LOOP_REF;
    handle->flags &= ~CF__H_LOOP_REF;
    cf__loop_handle_release(loop, handle);
    if (loop_ref)
        cf__loop_unref(loop);
}

/* ---- embedding ---- */

int cf_loop_fd(cf_loop *loop)
{
    if (!loop)
        return CF_EINVAL;
    if (loop->embedded) {
        int rc = cf__loop_check(loop);
        return rc ? rc : loop->epfd;
    }
    /* The calling thread becomes the loop thread, as for a dispatch. */
    int rc = claim(loop, BUSY_DISPATCHING);
    if (rc)
        return rc;
    if (cf__fault(CF__FAULT_FD)) {
        unclaim(loop);
        return CF_EMFILE;
    }
    int tfd = cf__fd_above_stdio(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_TIMERFD};
    if (tfd < 0 || epoll_ctl(loop->epfd, EPOLL_CTL_ADD, tfd, &ev) != 0) {
        rc = cf__errno_code(errno);
        if (tfd >= 0)
            close(tfd);
        unclaim(loop);
        return rc;
    }
    loop->tfd = tfd;
    loop->embedded = true;
    rearm_timerfd(loop);
    /* From now on the loop "sleeps" between dispatches: producers must write. */
    atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
    if (loop->ready_head || atomic_load_explicit(&loop->inbox, memory_order_seq_cst))
        wake(loop);
    unclaim(loop);
    return loop->epfd;
}

/* Start of a dispatch: consume the eventfd if a producer announced a write, and the timerfd
 * if its deadline passed, so the descriptor is readable again only for new work. */
static void dispatch_consume(cf_loop *loop)
{
    uint32_t announced = atomic_exchange_explicit(&loop->wake_pending, 1, memory_order_seq_cst);
    if (announced || loop->efd_stale) {
        bool got = read_fd(loop->efd);
        /* Announced but not written yet: its write will make the fd readable again, and the
         * next dispatch must consume it. */
        loop->efd_stale = !got;
    }
    if (loop->tfd >= 0 && loop->tfd_armed <= cf__now_ns()) {
        read_fd(loop->tfd);
        loop->tfd_armed = CF__FOREVER_NS;
    }
}

int cf_loop_dispatch(cf_loop *loop)
{
    int rc = claim(loop, BUSY_DISPATCHING);
    if (rc)
        return rc;
    loop->dispatching = true;
    loop->iterations++;
    if (loop->embedded)
        dispatch_consume(loop);
    if (loop->io_registered)
        poll_descriptors(loop, false);
    purge_cancelled_timers(loop);
    drain_inbox(loop);
    collect_due_timers(loop, cf__now_ns());
    run_ready_traced(loop);
    loop->stopping = false;
    cf__slab_trim(&loop->handles, SPARE_SLABS);
    cf__loop_tasks_idle(loop);
    if (loop->embedded) {
        rearm_timerfd(loop);
        atomic_store_explicit(&loop->wake_pending, 0, memory_order_seq_cst);
        loop->sleeps++;
        if (loop->ready_head || atomic_load_explicit(&loop->inbox, memory_order_seq_cst))
            wake(loop);
    }
    loop->dispatching = false;
    unclaim(loop);
    return 0;
}
