/* Executor shutdown and free: waiting for running and queued work, returning at once,
 * cancelling queued futures, idempotence, submit/map afterwards, shutdown and free called from
 * done-callbacks and tasks of the same pool (cfutures skips the self-join CPython fails on,
 * gh-131598), concurrent shutdowns, and free without shutdown. Ported from CPython's
 * test_shutdown.py and the shutdown parts of test_thread_pool.py. Every blocking call that a
 * bug could turn into a hang is bounded, from the test thread, by CF_TEST_LONG. */
#include "cf_test_sync.h"

static cf_future *submit(cf_executor *ex, cf_fn fn, void *arg)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit(&f, ex, fn, arg), 0);
    ck_assert_ptr_nonnull(f);
    return f;
}

static int count_task(void *arg, void **result)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    *result = arg;
    return 0;
}

/* Occupies the pool's one worker with a gate task until the gate is released. */
static cf_future *block_worker(cf_executor *ex, cf_test_gate *g)
{
    cf_test_gate_init(g);
    cf_future *blocker = submit(ex, cf_test_gate_task, g);
    ck_assert(cf_test_latch_wait(&g->started, 1, CF_TEST_LONG));
    return blocker;
}

/* Queues n counting tasks behind the blocked worker. */
static void queue_counts(cf_executor *ex, cf_future **queued, int n, atomic_int *ran)
{
    for (int i = 0; i < n; i++)
        queued[i] = submit(ex, count_task, ran);
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
}

static void expect_all_done(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert(cf_future_done(fs[i]));
}

/* Releases a gate once thread `tid` is asleep (in the blocking call under test). */
typedef struct releaser {
    cf_test_gate *gate;
    pid_t tid;
} releaser;

static void *releaser_main(void *arg)
{
    releaser *r = arg;
    cf_test_wait_asleep(r->tid, CF_TEST_LONG);
    cf_test_event_set(&r->gate->release);
    return NULL;
}

static void start_releaser(releaser *r, pthread_t *t, cf_test_gate *g)
{
    *r = (releaser){.gate = g, .tid = cf_test_gettid()};
    ck_assert_int_eq(pthread_create(t, NULL, releaser_main, r), 0);
}

/* ---- wait, no wait, cancel ---- */

START_TEST(test_wait_waits_for_running_and_queued_work)
{
    enum { Q = 5 };
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    cf_future *running[2] = {submit(ex, cf_test_gate_task, &g), submit(ex, cf_test_gate_task, &g)};
    ck_assert(cf_test_latch_wait(&g.started, 2, CF_TEST_LONG));
    atomic_int ran = 0;
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    releaser r;
    pthread_t t;
    start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    /* Everything finished before shutdown returned. */
    expect_all_done(running, 2);
    expect_all_done(queued, Q);
    ck_assert_int_eq(atomic_load(&ran), Q);
    ck_assert_int_eq(atomic_load(&g.finished), 2);
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    ck_assert_uint_eq(s.threads, 0);
    ck_assert_uint_eq(s.queued, 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(cf_future_result(NULL, running[i], 0), 0);
    for (int i = 0; i < Q; i++)
        ck_assert_int_eq(cf_future_result(NULL, queued[i], 0), 0);
    unref_all(running, 2);
    unref_all(queued, Q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_many_queued_tasks_complete)
{
    /* CPython's test_hang_issue12364: shutdown with much queued work does not hang. */
    enum { N = 200 };
    cf_executor *ex = cf_test_pool(3);
    atomic_int ran = 0;
    cf_future *fs[N];
    for (int i = 0; i < N; i++)
        fs[i] = submit(ex, count_task, &ran);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&ran), N);
    expect_all_done(fs, N);
    unref_all(fs, N);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_shutdown_right_after_submit)
{
    /* CPython's test_shutdown_race_issue12456, repeated on fresh pools: threads still
     * starting when the shutdown begins run the work and exit. */
    for (int round = 0; round < 100; round++) {
        cf_executor *ex = cf_test_pool(2);
        atomic_int ran = 0;
        void *args[3] = {&ran, &ran, &ran};
        cf_map *it = NULL;
        ck_assert_int_eq(cf_executor_map(&it, ex, count_task, args, 3, CF_FOREVER, 1), 0);
        ck_assert_int_eq(cf_executor_shutdown(ex, true, round % 2 == 1), 0);
        /* Without cancel_futures everything ran; with it, what ran is what was not cancelled. */
        int results = 0, cancelled = 0, rc;
        while ((rc = cf_map_next(NULL, it)) != CF_EOF) {
            ck_assert(rc == 0 || rc == CF_ECANCELLED);
            results += rc == 0;
            cancelled += rc == CF_ECANCELLED;
        }
        ck_assert_int_eq(results + cancelled, 3);
        ck_assert_int_eq(atomic_load(&ran), results);
        if (round % 2 == 0)
            ck_assert_int_eq(results, 3);
        cf_map_free(it);
        ck_assert_int_eq(cf_executor_free(ex), 0);
    }
}
END_TEST

START_TEST(test_no_wait_returns_at_once_and_work_completes)
{
    enum { Q = 3 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    atomic_int ran = 0;
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    /* Returned while the blocker cannot have finished. */
    ck_assert(cf_future_running(blocker));
    ck_assert_int_eq(atomic_load(&ran), 0);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, count_task, &ran), CF_ESHUTDOWN);
    ck_assert_ptr_null(f);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    for (int i = 0; i < Q; i++)
        ck_assert_int_eq(cf_future_result(NULL, queued[i], CF_TEST_LONG), 0);
    ck_assert_int_eq(atomic_load(&ran), Q);
    cf_future_unref(blocker);
    unref_all(queued, Q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

typedef struct cancel_log {
    atomic_int calls;
    atomic_int in_caller;
    atomic_int saw_cancelled;
    pthread_t caller;
} cancel_log;

static void cancel_log_cb(cf_future *f, void *data)
{
    cancel_log *log = data;
    atomic_fetch_add(&log->calls, 1);
    if (pthread_equal(pthread_self(), log->caller))
        atomic_fetch_add(&log->in_caller, 1);
    if (cf_future_cancelled(f))
        atomic_fetch_add(&log->saw_cancelled, 1);
}

static void check_cancel_futures(bool wait)
{
    enum { Q = 5 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    cancel_log log = {.caller = pthread_self()};
    atomic_int ran = 0;
    cf_future *queued[Q];
    for (int i = 0; i < Q; i++) {
        queued[i] = submit(ex, count_task, &ran);
        ck_assert_int_eq(cf_future_add_done_callback(queued[i], cancel_log_cb, &log), 0);
    }
    releaser r;
    pthread_t t;
    if (wait)
        start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_shutdown(ex, wait, true), 0);
    for (int i = 0; i < Q; i++)
        ck_assert(cf_future_cancelled(queued[i]));
    /* The callbacks ran, in the thread that cancelled them, before shutdown returned. */
    ck_assert_int_eq(atomic_load(&log.calls), Q);
    ck_assert_int_eq(atomic_load(&log.in_caller), Q);
    ck_assert_int_eq(atomic_load(&log.saw_cancelled), Q);
    /* Waiters see them done at once. */
    bool done[Q];
    size_t n_done = 0;
    ck_assert_int_eq(cf_wait(&n_done, done, queued, Q, CF_ALL_COMPLETED, 0), 0);
    ck_assert_uint_eq(n_done, Q);
    for (int i = 0; i < Q; i++)
        ck_assert_int_eq(cf_future_result(NULL, queued[i], 0), CF_ECANCELLED);
    /* The running task was not cancelled and finishes. */
    ck_assert(!cf_future_cancelled(blocker));
    if (wait) {
        ck_assert(cf_future_done(blocker));
        pthread_join(t, NULL);
    } else {
        ck_assert(cf_future_running(blocker));
        cf_test_event_set(&g.release);
    }
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    ck_assert_int_eq(atomic_load(&log.calls), Q);
    cf_future_unref(blocker);
    unref_all(queued, Q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}

START_TEST(test_cancel_futures_no_wait)
{
    check_cancel_futures(false);
}
END_TEST

START_TEST(test_cancel_futures_wait)
{
    check_cancel_futures(true);
}
END_TEST

/* ---- idempotence and afterwards ---- */

START_TEST(test_idempotent)
{
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    atomic_int ran = 0;
    cf_future *q1 = submit(ex, count_task, &ran);
    cf_future *q2 = submit(ex, count_task, &ran);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    /* A later call may still cancel... */
    ck_assert(!cf_future_done(q1));
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    ck_assert(cf_future_cancelled(q1));
    ck_assert(cf_future_cancelled(q2));
    /* ...and wait. */
    releaser r;
    pthread_t t;
    start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert(cf_future_done(blocker));
    pthread_join(t, NULL);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, true), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    cf_future_unref(blocker);
    cf_future_unref(q1);
    cf_future_unref(q2);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

static int noop_bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    *result = NULL;
    *result_len = 0;
    return 0;
}

START_TEST(test_submit_and_map_after_shutdown)
{
    cf_executor *ex = cf_test_pool(2);
    atomic_int ran = 0;
    cf_future *before = submit(ex, count_task, &ran);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&f, ex, count_task, &ran), CF_ESHUTDOWN);
    ck_assert_ptr_null(f);
    f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, noop_bytes_task, "ab", 2), CF_ESHUTDOWN);
    ck_assert_ptr_null(f);
    void *args[3] = {&ran, &ran, &ran};
    cf_map *it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map(&it, ex, count_task, args, 3, CF_FOREVER, 0), CF_ESHUTDOWN);
    ck_assert_ptr_null(it);
    cf_bytes bargs[1] = {{"a", 1}};
    it = (cf_map *)1;
    ck_assert_int_eq(cf_executor_map_bytes(&it, ex, noop_bytes_task, bargs, 1, CF_FOREVER, 0),
                     CF_ESHUTDOWN);
    ck_assert_ptr_null(it);
    /* Work accepted before still completes. */
    ck_assert_int_eq(cf_future_result(NULL, before, CF_TEST_LONG), 0);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(atomic_load(&ran), 1);
    cf_future_unref(before);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_unused_pool_and_null)
{
    cf_executor *ex = cf_test_pool(4);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, true), 0);
    cf_thread_pool_stats s;
    ck_assert_int_eq(cf_thread_pool_get_stats(&s, ex), 0);
    ck_assert_uint_eq(s.threads_started, 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(cf_executor_shutdown(NULL, true, false), CF_EINVAL);
    ck_assert_int_eq(cf_executor_shutdown(NULL, false, true), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(NULL), 0);
}
END_TEST

/* ---- from callbacks and tasks ---- */

typedef struct self_shutdown {
    cf_executor *ex;
    bool wait;
    bool cancel;
    int rc;
    pthread_t thread;
    cf_test_event returned;
} self_shutdown;

static void shutdown_cb(cf_future *f, void *data)
{
    (void)f;
    self_shutdown *s = data;
    s->thread = pthread_self();
    s->rc = cf_executor_shutdown(s->ex, s->wait, s->cancel);
    cf_test_event_set(&s->returned);
}

START_TEST(test_shutdown_from_callback_in_worker)
{
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    self_shutdown s = {.ex = ex, .wait = true, .rc = 1};
    cf_test_event_init(&s.returned);
    cf_future *f = submit(ex, cf_test_gate_task, &g);
    ck_assert_int_eq(cf_future_add_done_callback(f, shutdown_cb, &s), 0);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    /* A second worker starts for this one, then idles: the callback must wait for it. */
    atomic_int ran = 0;
    cf_future *other = submit(ex, count_task, &ran);
    ck_assert_int_eq(cf_future_result(NULL, other, CF_TEST_LONG), 0);
    cf_thread_pool_stats st;
    ck_assert_int_eq(cf_thread_pool_get_stats(&st, ex), 0);
    ck_assert_uint_eq(st.threads_started, 2);
    cf_test_event_set(&g.release);
    /* The callback runs in the worker that completes f, and must not wait for itself. */
    ck_assert(cf_test_event_wait(&s.returned, CF_TEST_LONG));
    ck_assert_int_eq(s.rc, 0);
    ck_assert(!pthread_equal(s.thread, pthread_self()));
    ck_assert_int_eq(cf_thread_pool_get_stats(&st, ex), 0);
    ck_assert_uint_le(st.threads, 1); /* only the callback's own worker may remain */
    cf_future *late = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit(&late, ex, count_task, &ran), CF_ESHUTDOWN);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    cf_future_unref(other);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&s.returned);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_shutdown_from_callback_in_caller)
{
    cf_executor *ex = cf_test_pool(1);
    atomic_int ran = 0;
    cf_future *f = submit(ex, count_task, &ran);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    self_shutdown s = {.ex = ex, .wait = true, .cancel = true, .rc = 1};
    cf_test_event_init(&s.returned);
    ck_assert_int_eq(cf_future_add_done_callback(f, shutdown_cb, &s), 0);
    ck_assert(cf_test_event_is_set(&s.returned));
    ck_assert_int_eq(s.rc, 0);
    ck_assert(pthread_equal(s.thread, pthread_self()));
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_destroy(&s.returned);
}
END_TEST

START_TEST(test_shutdown_from_callback_of_a_cancelled_future)
{
    /* shutdown(cancel_futures) runs callbacks that call shutdown again. */
    enum { Q = 3 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    atomic_int ran = 0;
    cf_future *queued[Q];
    self_shutdown s[Q];
    for (int i = 0; i < Q; i++) {
        queued[i] = submit(ex, count_task, &ran);
        s[i] = (self_shutdown){.ex = ex, .wait = i == 0 ? false : true, .cancel = true, .rc = 1};
        cf_test_event_init(&s[i].returned);
        /* The waiting ones would wait for the blocker: release it once they sleep. */
        ck_assert_int_eq(cf_future_add_done_callback(queued[i], shutdown_cb, &s[i]), 0);
    }
    releaser r;
    pthread_t t;
    start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, true), 0);
    pthread_join(t, NULL);
    for (int i = 0; i < Q; i++) {
        ck_assert(cf_test_event_is_set(&s[i].returned));
        ck_assert_int_eq(s[i].rc, 0);
        ck_assert(cf_future_cancelled(queued[i]));
        cf_test_event_destroy(&s[i].returned);
    }
    ck_assert_int_eq(cf_future_result(NULL, blocker, CF_TEST_LONG), 0);
    ck_assert_int_eq(atomic_load(&ran), 0);
    cf_future_unref(blocker);
    unref_all(queued, Q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_gate_destroy(&g);
}
END_TEST

typedef struct inner_shutdown {
    cf_executor *ex;
    bool free_it;
    cf_test_event go;
    cf_test_event calling;
    pid_t tid;
    int rc;
    /* What was true when the call returned. */
    int other_finished;
    int queued_ran;
    cf_test_gate *other;
    atomic_int *ran;
} inner_shutdown;

static int shutdown_inside_task(void *arg, void **result)
{
    inner_shutdown *s = arg;
    if (!cf_test_event_wait(&s->go, CF_TEST_LONG))
        return CF_ETIMEDOUT;
    s->tid = cf_test_gettid();
    cf_test_event_set(&s->calling);
    s->rc = s->free_it ? cf_executor_free(s->ex) : cf_executor_shutdown(s->ex, true, false);
    s->other_finished = s->other ? atomic_load(&s->other->finished) : -1;
    s->queued_ran = atomic_load(s->ran);
    *result = s;
    return 0;
}

/* A task on one of two workers shuts the pool down (or frees it) with wait: it waits for the
 * other worker, which still runs the queued tasks, but not for itself. */
static void check_from_task_two_workers(bool free_it)
{
    enum { Q = 2 };
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_test_gate_init(&g);
    atomic_int ran = 0;
    inner_shutdown s = {.ex = ex, .free_it = free_it, .rc = 1, .other = &g, .ran = &ran};
    cf_test_event_init(&s.go);
    cf_test_event_init(&s.calling);
    cf_future *other = submit(ex, cf_test_gate_task, &g);
    ck_assert(cf_test_latch_wait(&g.started, 1, CF_TEST_LONG));
    cf_future *self = submit(ex, shutdown_inside_task, &s);
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    cf_test_event_set(&s.go);
    ck_assert(cf_test_event_wait(&s.calling, CF_TEST_LONG));
    cf_test_wait_asleep(s.tid, CF_TEST_LONG);
    cf_test_event_set(&g.release);
    ck_assert_int_eq(cf_future_result(NULL, self, CF_TEST_LONG), 0);
    ck_assert_int_eq(s.rc, 0);
    ck_assert_int_eq(s.other_finished, 1);
    ck_assert_int_eq(s.queued_ran, Q);
    ck_assert_int_eq(cf_future_result(NULL, other, CF_TEST_LONG), 0);
    for (int i = 0; i < Q; i++)
        ck_assert_int_eq(cf_future_result(NULL, queued[i], CF_TEST_LONG), 0);
    if (free_it) {
        /* The pool is released by the worker that freed it, when it exits. */
        ck_assert(cf_test_wait_thread_gone(s.tid, CF_TEST_LONG));
    } else {
        cf_future *late = (cf_future *)1;
        ck_assert_int_eq(cf_executor_submit(&late, ex, count_task, &ran), CF_ESHUTDOWN);
        ck_assert_int_eq(cf_executor_free(ex), 0);
    }
    cf_future_unref(self);
    cf_future_unref(other);
    unref_all(queued, Q);
    cf_test_event_destroy(&s.go);
    cf_test_event_destroy(&s.calling);
    cf_test_gate_destroy(&g);
}

START_TEST(test_shutdown_wait_from_inside_a_task)
{
    check_from_task_two_workers(false);
}
END_TEST

START_TEST(test_free_from_inside_a_task)
{
    check_from_task_two_workers(true);
}
END_TEST

/* With one worker, the task that shuts down is the only thread: the call returns at once and
 * the work queued behind it still runs when the task returns. */
static void check_from_task_single_worker(bool free_it)
{
    enum { Q = 3 };
    cf_executor *ex = cf_test_pool(1);
    atomic_int ran = 0;
    inner_shutdown s = {.ex = ex, .free_it = free_it, .rc = 1, .ran = &ran};
    cf_test_event_init(&s.go);
    cf_test_event_init(&s.calling);
    cf_future *self = submit(ex, shutdown_inside_task, &s);
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    cf_test_event_set(&s.go);
    ck_assert_int_eq(cf_future_result(NULL, self, CF_TEST_LONG), 0);
    ck_assert_int_eq(s.rc, 0);
    ck_assert_int_eq(s.queued_ran, 0);
    for (int i = 0; i < Q; i++)
        ck_assert_int_eq(cf_future_result(NULL, queued[i], CF_TEST_LONG), 0);
    ck_assert_int_eq(atomic_load(&ran), Q);
    if (free_it)
        ck_assert(cf_test_wait_thread_gone(s.tid, CF_TEST_LONG));
    else
        ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_future_unref(self);
    unref_all(queued, Q);
    cf_test_event_destroy(&s.go);
    cf_test_event_destroy(&s.calling);
}

START_TEST(test_shutdown_wait_from_the_only_worker)
{
    check_from_task_single_worker(false);
}
END_TEST

START_TEST(test_free_from_the_only_worker)
{
    check_from_task_single_worker(true);
}
END_TEST

/* ---- concurrency ---- */

typedef struct concurrent_shutdown {
    cf_executor *ex;
    bool wait;
    bool cancel;
    cf_test_latch *ready;
    pid_t tid;
    int rc;
} concurrent_shutdown;

static void *concurrent_shutdown_main(void *arg)
{
    concurrent_shutdown *c = arg;
    c->tid = cf_test_gettid();
    cf_test_latch_add(c->ready);
    c->rc = cf_executor_shutdown(c->ex, c->wait, c->cancel);
    return NULL;
}

START_TEST(test_concurrent_shutdown_with_wait)
{
    enum { T = 4, Q = 3 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    atomic_int ran = 0;
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    cf_test_latch ready;
    cf_test_latch_init(&ready);
    concurrent_shutdown c[T];
    pthread_t t[T];
    for (int i = 0; i < T; i++) {
        c[i] = (concurrent_shutdown){.ex = ex, .wait = true, .ready = &ready, .rc = 1};
        ck_assert_int_eq(pthread_create(&t[i], NULL, concurrent_shutdown_main, &c[i]), 0);
    }
    ck_assert(cf_test_latch_wait(&ready, T, CF_TEST_LONG));
    for (int i = 0; i < T; i++)
        cf_test_wait_asleep(c[i].tid, CF_TEST_LONG);
    /* None can return before the blocker finishes. */
    for (int i = 0; i < T; i++)
        ck_assert_int_eq(c[i].rc, 1);
    cf_test_event_set(&g.release);
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(c[i].rc, 0);
    }
    ck_assert(cf_future_done(blocker));
    expect_all_done(queued, Q);
    ck_assert_int_eq(atomic_load(&ran), Q);
    cf_future_unref(blocker);
    unref_all(queued, Q);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_latch_destroy(&ready);
    cf_test_gate_destroy(&g);
}
END_TEST

static void count_cb(cf_future *f, void *data)
{
    (void)f;
    atomic_fetch_add((atomic_int *)data, 1);
}

START_TEST(test_concurrent_shutdown_with_cancel)
{
    enum { T = 4, Q = 40 };
    for (int round = 0; round < 20; round++) {
        cf_executor *ex = cf_test_pool(1);
        cf_test_gate g;
        cf_future *blocker = block_worker(ex, &g);
        atomic_int ran = 0, callbacks = 0;
        cf_future *queued[Q];
        for (int i = 0; i < Q; i++) {
            queued[i] = submit(ex, count_task, &ran);
            ck_assert_int_eq(cf_future_add_done_callback(queued[i], count_cb, &callbacks), 0);
        }
        cf_test_latch ready;
        cf_test_latch_init(&ready);
        concurrent_shutdown c[T];
        pthread_t t[T];
        for (int i = 0; i < T; i++) {
            c[i] = (concurrent_shutdown){.ex = ex, .cancel = true, .ready = &ready, .rc = 1};
            ck_assert_int_eq(pthread_create(&t[i], NULL, concurrent_shutdown_main, &c[i]), 0);
        }
        for (int i = 0; i < T; i++) {
            pthread_join(t[i], NULL);
            ck_assert_int_eq(c[i].rc, 0);
        }
        /* Each queued future was cancelled exactly once. */
        ck_assert_int_eq(atomic_load(&callbacks), Q);
        for (int i = 0; i < Q; i++)
            ck_assert(cf_future_cancelled(queued[i]));
        cf_test_event_set(&g.release);
        ck_assert_int_eq(cf_executor_free(ex), 0);
        ck_assert_int_eq(cf_future_result(NULL, blocker, 0), 0);
        ck_assert_int_eq(atomic_load(&ran), 0);
        cf_future_unref(blocker);
        unref_all(queued, Q);
        cf_test_latch_destroy(&ready);
        cf_test_gate_destroy(&g);
    }
}
END_TEST

/* ---- free ---- */

START_TEST(test_free_without_shutdown_completes_queued_work)
{
    /* CPython's test_del_shutdown: results stay valid after the executor is gone. */
    enum { Q = 10 };
    cf_executor *ex = cf_test_pool(1);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    atomic_int ran = 0;
    cf_future *queued[Q];
    queue_counts(ex, queued, Q, &ran);
    releaser r;
    pthread_t t;
    start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(atomic_load(&ran), Q);
    void *value = NULL;
    ck_assert_int_eq(cf_future_result(&value, blocker, 0), 0);
    ck_assert_ptr_eq(value, &g);
    for (int i = 0; i < Q; i++) {
        ck_assert_int_eq(cf_future_result(&value, queued[i], 0), 0);
        ck_assert_ptr_eq(value, &ran);
    }
    cf_future_unref(blocker);
    unref_all(queued, Q);
    cf_test_gate_destroy(&g);
}
END_TEST

START_TEST(test_free_after_shutdown_no_wait)
{
    cf_executor *ex = cf_test_pool(2);
    cf_test_gate g;
    cf_future *blocker = block_worker(ex, &g);
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    releaser r;
    pthread_t t;
    start_releaser(&r, &t, &g);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert(cf_future_done(blocker));
    pthread_join(t, NULL);
    cf_future_unref(blocker);
    cf_test_gate_destroy(&g);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("shutdown");
    TCase *tc = cf_test_tcase("modes");
    tcase_add_test(tc, test_wait_waits_for_running_and_queued_work);
    tcase_add_test(tc, test_many_queued_tasks_complete);
    tcase_add_test(tc, test_shutdown_right_after_submit);
    tcase_add_test(tc, test_no_wait_returns_at_once_and_work_completes);
    tcase_add_test(tc, test_cancel_futures_no_wait);
    tcase_add_test(tc, test_cancel_futures_wait);
    tcase_add_test(tc, test_idempotent);
    tcase_add_test(tc, test_submit_and_map_after_shutdown);
    tcase_add_test(tc, test_unused_pool_and_null);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("reentrant");
    tcase_add_test(tc, test_shutdown_from_callback_in_worker);
    tcase_add_test(tc, test_shutdown_from_callback_in_caller);
    tcase_add_test(tc, test_shutdown_from_callback_of_a_cancelled_future);
    tcase_add_test(tc, test_shutdown_wait_from_inside_a_task);
    tcase_add_test(tc, test_free_from_inside_a_task);
    tcase_add_test(tc, test_shutdown_wait_from_the_only_worker);
    tcase_add_test(tc, test_free_from_the_only_worker);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("concurrency");
    tcase_add_test(tc, test_concurrent_shutdown_with_wait);
    tcase_add_test(tc, test_concurrent_shutdown_with_cancel);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("free");
    tcase_add_test(tc, test_free_without_shutdown_completes_queued_work);
    tcase_add_test(tc, test_free_after_shutdown_no_wait);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
