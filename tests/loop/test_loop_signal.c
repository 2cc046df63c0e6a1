/* Signal handlers on the loop (loop_io.h): delivery on the loop thread through the signalfd, the
 * signal mask they set and restore, removal discarding pending deliveries, one handling loop per
 * process, and a graceful stop of tasks on SIGTERM. Each test runs in its own process (Check's
 * fork mode); in valgrind's single process every test restores what it changed. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

static bool blocked(int signum)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, signum);
}

typedef struct got {
    int n;
    int signum;
    pthread_t thread;
    bool stop;
} got;

static void on_signal(cf_loop *loop, int signum, void *data)
{
    got *g = data;
    g->n++;
    g->signum = signum;
    g->thread = pthread_self();
    if (g->stop)
        cf_loop_stop(loop);
}

START_TEST(test_handler_runs_on_loop_thread)
{
    cf_loop *loop = new_loop();
    got g = {.stop = true};
    ck_assert(!blocked(SIGUSR1));
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &g), 0);
    ck_assert(blocked(SIGUSR1));
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(g.n, 1);
    ck_assert_int_eq(g.signum, SIGUSR1);
    ck_assert(pthread_equal(g.thread, pthread_self()));
    /* Replacing the handler. */
    got h = {.stop = true};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(g.n, 1);
    ck_assert_int_eq(h.n, 1);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 1);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 0);
    ck_assert(!blocked(SIGUSR1));
    cf_loop_free(loop);
}
END_TEST

static void *send_signal(void *arg)
{
    ck_assert(blocked(SIGUSR2)); /* inherited from the thread that added the handler */
    ck_assert_int_eq(kill(getpid(), *(int *)arg), 0);
    return NULL;
}

START_TEST(test_from_another_thread)
{
    cf_loop *loop = new_loop();
    got g = {.stop = true};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR2, on_signal, &g), 0);
    int signum = SIGUSR2;
    pthread_t t;
    pthread_create(&t, NULL, send_signal, &signum);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0); /* sleeps until the signal */
    pthread_join(t, NULL);
    ck_assert_int_eq(g.n, 1);
    ck_assert(pthread_equal(g.thread, pthread_self()));
    cf_loop_free(loop); /* close removes the handler */
    ck_assert(!blocked(SIGUSR2));
}
END_TEST

START_TEST(test_remove_discards_pending)
{
    /* Delivered but not yet handled when removed: discarded, not met with the default action
     * (which would kill this process) once unblocked. */
    cf_loop *loop = new_loop();
    got g = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &g), 0);
    ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 1);
    ck_assert(!blocked(SIGUSR1));
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
    ck_assert_int_eq(g.n, 0);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_mask_restored_as_it_was)
{
    cf_loop *loop = new_loop();
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &one, NULL);
    got g = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &g), 0);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 1);
    ck_assert(blocked(SIGUSR1)); /* it was blocked before: it stays blocked */
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_invalid_signals)
{
    cf_loop *loop = new_loop();
    got g = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGKILL, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGSTOP, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, 0, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, -3, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, 1000, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, 32, on_signal, &g), CF_EINVAL); /* glibc's */
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, NULL, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_add_signal_handler(NULL, SIGUSR1, on_signal, &g), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, 0), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, 1000), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_signal_handler(NULL, SIGUSR1), CF_EINVAL);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 0);
    cf_loop_close(loop);
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &g), CF_ECLOSED);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), CF_ECLOSED);
    cf_loop_free(loop);
}
END_TEST

typedef struct other_thread_call {
    cf_loop *loop;
    int rc[2];
} other_thread_call;

static void *call_from_other_thread(void *arg)
{
    other_thread_call *c = arg;
    got g = {0};
    c->rc[0] = cf_loop_add_signal_handler(c->loop, SIGUSR1, on_signal, &g);
    c->rc[1] = cf_loop_remove_signal_handler(c->loop, SIGUSR1);
    return NULL;
}

START_TEST(test_one_loop_per_process)
{
    cf_loop *a = new_loop(), *b = new_loop();
    got g = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(a, SIGUSR1, on_signal, &g), 0);
    ck_assert_int_eq(cf_loop_add_signal_handler(b, SIGUSR2, on_signal, &g), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_add_signal_handler(a, SIGUSR2, on_signal, &g), 0);
    ck_assert_int_eq(cf_loop_remove_signal_handler(a, SIGUSR1), 1);
    ck_assert_int_eq(cf_loop_add_signal_handler(b, SIGUSR2, on_signal, &g), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_remove_signal_handler(a, SIGUSR2), 1);
    /* a handles nothing any more: b may. */
    ck_assert_int_eq(cf_loop_add_signal_handler(b, SIGUSR2, on_signal, &g), 0);
    cf_loop_free(b); /* and its close gives the signals back */
    ck_assert_int_eq(cf_loop_add_signal_handler(a, SIGUSR1, on_signal, &g), 0);
    other_thread_call c = {.loop = a};
    pthread_t t;
    pthread_create(&t, NULL, call_from_other_thread, &c);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.rc[0], CF_EPERM);
    ck_assert_int_eq(c.rc[1], CF_EPERM);
    cf_loop_free(a);
    ck_assert(!blocked(SIGUSR1) && !blocked(SIGUSR2));
}
END_TEST

START_TEST(test_embedded_fd_covers_signals)
{
    cf_loop *loop = new_loop();
    int fd = cf_loop_fd(loop);
    got g = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGUSR1, on_signal, &g), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(poll(&p, 1, (int)(CF_TEST_LONG * 1000)), 1);
    ck_assert_int_eq(cf_loop_dispatch(loop), 0);
    ck_assert_int_eq(g.n, 1);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    ck_assert_int_eq(cf_loop_remove_signal_handler(loop, SIGUSR1), 1);
    cf_loop_free(loop);
}
END_TEST

#ifndef CF_TEST_NO_COROUTINES
/* A server's shape: a task serving forever, a SIGTERM handler that cancels it, the task
 * finishing its current piece of work before it returns. */
typedef struct server {
    cf_future *task;
    int served;
    bool finished_cleanly;
} server;

static int serve(void *arg, void **result)
{
    (void)result;
    server *s = arg;
    for (;;) {
        if (cf_sleep(0.001) == CF_ECANCELLED)
            break;
        if (++s->served == 3)
            kill(getpid(), SIGTERM); /* delivered through the loop, while this task sleeps */
    }
    s->finished_cleanly = true;
    return CF_ECANCELLED;
}

static void on_term(cf_loop *loop, int signum, void *data)
{
    (void)loop, (void)signum;
    cf_future_cancel(((server *)data)->task);
}

START_TEST(test_graceful_stop_on_sigterm)
{
    cf_loop *loop = new_loop();
    server s = {0};
    ck_assert_int_eq(cf_loop_add_signal_handler(loop, SIGTERM, on_term, &s), 0);
    ck_assert_int_eq(cf_loop_create_task(&s.task, loop, serve, &s, NULL), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, s.task), CF_ECANCELLED);
    ck_assert(s.finished_cleanly);
    ck_assert_int_ge(s.served, 3);
    cf_future_unref(s.task);
    cf_loop_free(loop);
    ck_assert(!blocked(SIGTERM));
}
END_TEST
#endif

static Suite *suite(void)
{
    Suite *s = suite_create("loop_signal");
    TCase *tc = cf_test_tcase("signals");
    tcase_add_test(tc, test_handler_runs_on_loop_thread);
    tcase_add_test(tc, test_from_another_thread);
    tcase_add_test(tc, test_remove_discards_pending);
    tcase_add_test(tc, test_mask_restored_as_it_was);
    tcase_add_test(tc, test_invalid_signals);
    tcase_add_test(tc, test_one_loop_per_process);
    tcase_add_test(tc, test_embedded_fd_covers_signals);
#ifndef CF_TEST_NO_COROUTINES
    tcase_add_test(tc, test_graceful_stop_on_sigterm);
#endif
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
