/* Fault injection over the event loop (white-box; meaningful with -Dfault_injection=true,
 * otherwise the walk is skipped). Every allocation, descriptor, mapping and thread creation
 * fails in turn while a scenario uses the loop's whole surface: each call must succeed or return a
 * documented error, the run must end (no future left pending that the scenario waits on), and
 * the sanitizer and valgrind builds check that nothing leaks. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/internal.h"

#ifdef CF_FAULT_INJECTION
static bool documented(int rc)
{
    return rc == 0 || rc == CF_ENOMEM || rc == CF_EMFILE || rc == CF_EAGAIN || rc == CF_ESYSTEM;
}

#define OK_OR_FAULT(call)                                                                          \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        ck_assert_msg(documented(rc_), "fault %lu: %s gave %s", nth, #call, cf_err_name(rc_));     \
    } while (0)

static void count_cb(cf_loop *loop, void *data)
{
    (void)loop;
    ++*(int *)data;
}

static void done_cb(cf_future *f, void *data)
{
    (void)f;
    ++*(int *)data;
}

static int return_arg(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int task_body(void *arg, void **result)
{
    (void)result;
    cf_executor *ex = arg;
    cf_future *f;
    int rc = cf_loop_run_in_executor(&f, cf_loop_current(), ex, return_arg, NULL);
    if (rc)
        return rc;
    rc = cf_await(NULL, f);
    cf_future_unref(f);
    if (rc)
        return rc;
    rc = cf_sleep(0.001);
    return rc ? rc : cf_sleep(0);
}

static void scenario(unsigned long nth)
{
    cf_loop *loop;
    int rc = cf_loop_new(&loop, NULL);
    OK_OR_FAULT(rc);
    if (rc)
        return;
    int count = 0;
    cf_loop_handle *h = NULL;
    OK_OR_FAULT(cf_loop_call_soon(NULL, loop, count_cb, &count));
    OK_OR_FAULT(cf_loop_call_later(&h, loop, 0.001, count_cb, &count));
    OK_OR_FAULT(cf_loop_call_soon_threadsafe(loop, count_cb, &count));
    cf_executor *ex = NULL;
    OK_OR_FAULT(cf_thread_pool_new(&ex, NULL));
    cf_future *fs[4] = {NULL, NULL, NULL, NULL}; /* loop future, executor, sleep, task */
    size_t n = 0;
    cf_future *f = NULL;
    if (cf_loop_create_future(&f, loop) == 0) {
        OK_OR_FAULT(cf_future_add_done_callback(f, done_cb, &count));
        fs[n++] = f;
    }
    cf_future *w = NULL;
    if (ex && cf_loop_run_in_executor(&w, loop, ex, return_arg, NULL) == 0)
        fs[n++] = w;
    cf_future *s = NULL;
    if (cf_loop_sleep(&s, loop, 0.001, NULL) == 0)
        fs[n++] = s;
    cf_future *t = NULL;
    if (ex) {
        rc = cf_loop_create_task(&t, loop, task_body, ex, NULL);
        ck_assert_msg(documented(rc) || rc == CF_ENOTSUP, "fault %lu: create_task %s", nth,
                      cf_err_name(rc));
        if (rc == 0)
            fs[n++] = t;
    }
    cf_future *wf = NULL;
    if (f)
        OK_OR_FAULT(cf_loop_wait_for(&wf, loop, f, 10));
    cf_future *g = NULL;
    OK_OR_FAULT(cf_loop_gather(&g, loop, fs, n));
    if (f)
        ck_assert_int_eq(cf_future_set_result(f, NULL, NULL), 0);
    if (g) {
        rc = cf_loop_run_until_complete(NULL, loop, g);
        /* A child may have failed for lack of memory (the task, or an executor call). */
        ck_assert_msg(rc == 0 || rc == CF_ETASK || documented(rc), "fault %lu: run gave %s", nth,
                      cf_err_name(rc));
    }
    if (wf) {
        rc = cf_loop_run_until_complete(NULL, loop, wf);
        ck_assert_msg(rc == 0 || documented(rc), "fault %lu: wait_for gave %s", nth,
                      cf_err_name(rc));
    }
    rc = cf_loop_fd(loop);
    ck_assert_msg(rc >= 0 || documented(rc), "fault %lu: fd gave %s", nth, cf_err_name(rc));
    OK_OR_FAULT(cf_loop_dispatch(loop));
    cf_loop_handle_unref(h);
    cf_future_unref(g);
    cf_future_unref(wf);
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    cf_executor_free(ex);
}

/* ---- descriptors, sockets and signals ---- */

static void reader_cb(cf_loop *loop, int fd, unsigned events, void *data)
{
    (void)events;
    char b[16];
    (void)!read(fd, b, sizeof(b));
    ++*(int *)data;
    cf_loop_remove_reader(loop, fd);
}

static void signal_cb(cf_loop *loop, int signum, void *data)
{
    (void)loop, (void)signum, (void)data;
}

static int io_task(void *arg, void **result)
{
    (void)result;
    int *sv = arg;
    int rc = cf_sock_sendall(NULL, sv[1], "ping", 4, 5);
    if (rc)
        return rc;
    char b[8];
    size_t n;
    rc = cf_sock_recv_into(&n, sv[0], b, sizeof(b), 5);
    if (rc)
        return rc;
    unsigned revents;
    return cf_wait_fd(&revents, sv[1], CF_IO_WRITABLE, 5);
}

static void scenario_io(unsigned long nth)
{
    cf_loop *loop;
    int rc = cf_loop_new(&loop, NULL);
    OK_OR_FAULT(rc);
    if (rc)
        return;
    int p[2], sv[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int count = 0;
    OK_OR_FAULT(cf_loop_add_reader(loop, p[0], reader_cb, &count));
    ck_assert_int_eq(write(p[1], "x", 1), 1);
    OK_OR_FAULT(cf_loop_add_signal_handler(loop, SIGUSR1, signal_cb, NULL));
    cf_future *wf = NULL;
    OK_OR_FAULT(cf_loop_wait_fd(&wf, loop, sv[0], CF_IO_READABLE));
    cf_future *t = NULL;
    rc = cf_loop_create_task(&t, loop, io_task, sv, NULL);
    ck_assert_msg(documented(rc) || rc == CF_ENOTSUP, "fault %lu: create_task %s", nth,
                  cf_err_name(rc));
    if (t) {
        rc = cf_loop_run_until_complete(NULL, loop, t);
        if (rc == CF_ETASK)
            cf_future_exception(&rc, NULL, t, 0);
        ck_assert_msg(documented(rc), "fault %lu: io task gave %s", nth, cf_err_name(rc));
    }
    rc = cf_loop_fd(loop);
    ck_assert_msg(rc >= 0 || documented(rc), "fault %lu: fd gave %s", nth, cf_err_name(rc));
    OK_OR_FAULT(cf_loop_dispatch(loop));
    cf_loop_remove_signal_handler(loop, SIGUSR1);
    cf_loop_forget_fd(loop, sv[0]);
    cf_loop_forget_fd(loop, sv[1]);
    cf_future_unref(wf);
    cf_future_unref(t);
    ck_assert_int_eq(cf_loop_free(loop), 0);
    for (int i = 0; i < 2; i++) {
        close(p[i]);
        close(sv[i]);
    }
}

/* ---- the structured side: primitives, a task group under a timeout scope, waits across
 * threads and the default executor's shutdown ---- */

#ifndef CF_TEST_NO_COROUTINES
enum { ITEMS = 40 }; /* enough for the queue to grow more than once */

static int producer(void *arg, void **result)
{
    (void)result;
    for (intptr_t i = 0; i < ITEMS; i++) {
        int rc = cf_loop_queue_put(arg, (void *)(i + 1));
        if (rc)
            return rc;
    }
    return 0;
}

static int consumer(void *arg, void **result)
{
    (void)result;
    for (int i = 0; i < ITEMS; i++) {
        void *item;
        int rc = cf_loop_queue_get(&item, arg);
        if (rc)
            return rc;
    }
    return 0;
}

/* The task: a task group of a producer and a consumer, inside a timeout scope. */
static int structured_body(void *arg, void **result)
{
    (void)result;
    cf_loop_timeout *scope;
    int rc = cf_loop_timeout_enter(&scope, 30);
    if (rc)
        return rc;
    cf_loop_task_group *g;
    rc = cf_loop_task_group_enter(&g);
    if (rc == 0) {
        /* The producer runs first and fills the queue (it grows), then the consumer. */
        rc = cf_loop_task_group_create_task(NULL, g, producer, arg, NULL);
        if (rc == 0)
            rc = cf_loop_task_group_create_task(NULL, g, consumer, arg, NULL);
        rc = cf_loop_task_group_exit(g, rc);
        cf_loop_task_group_free(g);
    }
    rc = cf_loop_timeout_exit(scope, rc);
    cf_loop_timeout_free(scope);
    return rc;
}
#endif

static bool done_or_failed(int rc)
{
    return documented(rc) || rc == CF_ETASK;
}

static void structured_scenario(unsigned long nth)
{
    cf_loop *loop;
    int rc = cf_loop_new(&loop, NULL);
    OK_OR_FAULT(rc);
    if (rc)
        return;
    cf_loop_lock *lock = NULL;
    cf_loop_condition *cond = NULL;
    cf_loop_queue *q = NULL;
    OK_OR_FAULT(cf_loop_lock_new(&lock, loop));
    OK_OR_FAULT(cf_loop_condition_new(&cond, loop, NULL));
    OK_OR_FAULT(cf_loop_queue_new(&q, loop, NULL));
    cf_future *fs[2] = {NULL, NULL};
    size_t n = 0;
    if (cf_loop_create_future(&fs[n], loop) == 0)
        n++;
#ifndef CF_TEST_NO_COROUTINES
    if (q && cf_loop_create_task(&fs[n], loop, structured_body, q, NULL) == 0)
        n++;
#endif
    cf_future *w = NULL;
    cf_loop_as_completed *it = NULL;
    if (n) {
        OK_OR_FAULT(cf_loop_wait(&w, loop, fs, n, CF_ALL_COMPLETED, 30));
        OK_OR_FAULT(cf_loop_as_completed_new(&it, loop, fs, n, 30));
        ck_assert_int_eq(cf_future_set_result(fs[0], NULL, NULL), 0);
    }
    if (w) {
        rc = cf_loop_run_until_complete(NULL, loop, w);
        ck_assert_msg(documented(rc), "fault %lu: wait gave %s", nth, cf_err_name(rc));
    }
    for (size_t i = 0; i < n; i++) {
        rc = cf_loop_run_until_complete(NULL, loop, fs[i]);
        ck_assert_msg(done_or_failed(rc), "fault %lu: task gave %s", nth, cf_err_name(rc));
    }
    if (it) {
        cf_future *f;
        size_t yielded = 0;
        while (cf_loop_as_completed_try_next(&f, it) == 0)
            yielded++;
        ck_assert_uint_eq(yielded, n);
        ck_assert_int_eq(cf_loop_as_completed_free(it), 0);
    }
    cf_future *t = NULL;
    rc = cf_loop_run_coroutine_threadsafe(&t, loop, return_arg, NULL, NULL);
    ck_assert_msg(documented(rc) || rc == CF_ENOTSUP, "fault %lu: threadsafe gave %s", nth,
                  cf_err_name(rc));
    if (t) {
        rc = cf_loop_run_until_complete(NULL, loop, t);
        ck_assert_msg(done_or_failed(rc), "fault %lu: threadsafe task gave %s", nth,
                      cf_err_name(rc));
    }
    cf_future *x = NULL, *down = NULL;
    OK_OR_FAULT(cf_loop_run_in_executor(&x, loop, NULL, return_arg, NULL));
    OK_OR_FAULT(cf_loop_shutdown_default_executor(&down, loop, 30));
    if (down) {
        rc = cf_loop_run_until_complete(NULL, loop, down);
        ck_assert_msg(documented(rc), "fault %lu: shutdown gave %s", nth, cf_err_name(rc));
    }
    if (x) {
        rc = cf_loop_run_until_complete(NULL, loop, x);
        ck_assert_msg(documented(rc), "fault %lu: executor call gave %s", nth, cf_err_name(rc));
    }
    OK_OR_FAULT(cf_loop_run_once(loop, 0));
    cf_future_unref(x);
    cf_future_unref(down);
    cf_future_unref(t);
    cf_future_unref(w);
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    ck_assert_int_eq(cf_loop_lock_free(lock), 0);
    ck_assert_int_eq(cf_loop_condition_free(cond), 0);
    ck_assert_int_eq(cf_loop_queue_free(q), 0);
    ck_assert_int_eq(cf_loop_free(loop), 0);
}

/* Arms each fault point of `scenario` in turn until a run passes them all. */
static void walk(void (*run)(unsigned long nth), const char *name)
{
    unsigned kinds = CF__FAULT_ALLOC | CF__FAULT_THREAD | CF__FAULT_FD | CF__FAULT_MMAP;
    unsigned long nth;
    for (nth = 1; nth < 5000; nth++) {
        cf__fault_arm(kinds, nth);
        run(nth);
        bool fired = cf__fault_fired();
        unsigned long ops = cf__fault_count();
        cf__fault_arm(0, 0);
        if (getenv("CF_TEST_VERBOSE"))
            fprintf(stderr, "fault %lu: fired %d after %lu operations\n", nth, fired, ops);
        if (!fired)
            break; /* past the last fault point of the scenario */
    }
    ck_assert_uint_lt(nth, 5000);
    if (getenv("CF_TEST_VERBOSE"))
        fprintf(stderr, "%s fault walk: %lu fault points\n", name, nth - 1);
}
#endif

START_TEST(test_io_fault_walk)
{
#ifdef CF_FAULT_INJECTION
    walk(scenario_io, "loop io");
#endif
}
END_TEST

START_TEST(test_fault_walk)
{
#ifdef CF_FAULT_INJECTION
    walk(scenario, "loop");
#endif
}
END_TEST

/* A task takes its stack when it first runs: if no stack can be had then (here, the mapping of
 * a new arena fails, for a stack size no other task uses), the task fails with CF_ENOMEM
 * instead of running, and the loop carries on. */
START_TEST(test_task_without_a_stack_fails)
{
#if defined(CF_FAULT_INJECTION) && !defined(CF_TEST_NO_COROUTINES)
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    cf_loop_task_options opts = {.stack_size = 700 << 10};
    cf_future *t = NULL;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, return_arg, (void *)"ran", &opts), 0);
    cf__fault_arm(CF__FAULT_MMAP, 1);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert(cf__fault_fired());
    cf__fault_arm(0, 0);
    int code = 0;
    const char *message = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &message, t, 0), 0);
    ck_assert_int_eq(code, CF_ENOMEM);
    ck_assert_ptr_nonnull(message);
    cf_future_unref(t);
    /* The next task of that size gets its stack. */
    ck_assert_int_eq(cf_loop_create_task(&t, loop, return_arg, (void *)"ran", &opts), 0);
    void *v = NULL;
    ck_assert_int_eq(cf_loop_run_until_complete(&v, loop, t), 0);
    ck_assert_str_eq(v, "ran");
    cf_future_unref(t);
    ck_assert_int_eq(cf_loop_free(loop), 0);
#endif
}
END_TEST

START_TEST(test_fault_walk_structured)
{
#ifdef CF_FAULT_INJECTION
    walk(structured_scenario, "structured");
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_faults");
    TCase *tc = cf_test_tcase("walk");
    tcase_add_test(tc, test_fault_walk);
    tcase_add_test(tc, test_io_fault_walk);
    tcase_add_test(tc, test_task_without_a_stack_fails);
    tcase_add_test(tc, test_fault_walk_structured);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
