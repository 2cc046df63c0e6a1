/* White-box: the internal assertions (CF__ASSERT, core/internal.h) fire when a rule is broken,
 * in the builds that compile them in (every build but release; a release build skips these
 * tests and says so). Each broken rule runs in a child process whose standard error is
 * captured: it must die of SIGABRT after naming the rule. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/internal.h"
#include "loop/loop_internal.h"

/* Runs `breaks_rule` in a child; passes if the child dies of SIGABRT with `rule` in its
 * standard error. */
static void assert_fires(void (*breaks_rule)(void), const char *rule)
{
    if (!cf__asserts_enabled()) {
        printf("assertions compiled out (NDEBUG): skipped\n");
        return;
    }
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        breaks_rule();
        _exit(0); /* the rule was not checked */
    }
    close(fds[1]);
    char out[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(out) - 1 && (n = read(fds[0], out + len, sizeof(out) - 1 - len)) != 0)
        if (n > 0)
            len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                  "the child was not aborted (status %#x), stderr: %s", status, out);
    ck_assert_msg(strstr(out, "cfutures: internal rule broken") && strstr(out, rule),
                  "stderr does not name the rule \"%s\": %s", rule, out);
}

/* ---- a lock that must be held ---- */

static void wait_without_lock(void)
{
    cf__lock lock = {0};
    cf__cond cond = {0};
    cf__cond_wait_lock(&cond, &lock, 0);
}

START_TEST(test_lock_held)
{
    assert_fires(wait_without_lock, "cf__lock_held(l)");
}
END_TEST

/* ---- the loop thread ---- */

static void *alloc_handle_elsewhere(void *loop)
{
    cf__loop_handle_alloc(loop, NULL, NULL, NULL);
    return NULL;
}

static void handle_off_loop_thread(void)
{
    cf_loop *loop;
    if (cf_loop_new(&loop, NULL) != 0)
        _exit(2);
    pthread_t t;
    pthread_create(&t, NULL, alloc_handle_elsewhere, loop);
    pthread_join(t, NULL);
}

START_TEST(test_loop_thread)
{
    assert_fires(handle_off_loop_thread, "cf__loop_on_thread(loop)");
}
END_TEST

/* ---- reference counts ---- */

static void ignore_release(cf_future *f)
{
    (void)f;
}

static void unref_twice(void)
{
    static const cf__future_ops ops = {.release = ignore_release};
    cf_future f;
    cf__future_init(&f, 1, &ops);
    cf_future_unref(&f);
    cf_future_unref(&f);
}

START_TEST(test_unref_underflow)
{
    assert_fires(unref_twice, "old > 0");
}
END_TEST

/* ---- a pthread mutex that must be owned (the process pool's) ---- */

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static cf_test_event locked, release;

static void *hold_mutex(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&shared_mu);
    cf_test_event_set(&locked);
    cf_test_event_wait(&release, CF_TEST_LONG);
    pthread_mutex_unlock(&shared_mu);
    return NULL;
}

START_TEST(test_mutex_owned)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    ck_assert(!cf__mutex_owned(&mu));
    pthread_mutex_lock(&mu);
    ck_assert(cf__mutex_owned(&mu));
    pthread_mutex_unlock(&mu);
    ck_assert(!cf__mutex_owned(&mu));
#ifdef __GLIBC__
    /* Held by another thread is not owned by this one. */
    cf_test_event_init(&locked);
    cf_test_event_init(&release);
    pthread_t t;
    pthread_create(&t, NULL, hold_mutex, NULL);
    ck_assert(cf_test_event_wait(&locked, CF_TEST_LONG));
    ck_assert(!cf__mutex_owned(&shared_mu));
    cf_test_event_set(&release);
    pthread_join(t, NULL);
    cf_test_event_destroy(&locked);
    cf_test_event_destroy(&release);
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("assert");
    TCase *tc = cf_test_tcase("rules");
    tcase_add_test(tc, test_lock_held);
    tcase_add_test(tc, test_loop_thread);
    tcase_add_test(tc, test_unref_underflow);
    tcase_add_test(tc, test_mutex_owned);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
