/* The thread pool's finish_at_exit option, through a real program (exit_child.c) that returns
 * from main, or calls exit() from a task, with work pending: with the option every pending task
 * runs to the end before the process exits; without it (the default) the process ends at once
 * and the work is dropped; a forked child does not wait for its parent's pool. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test_sync.h"

typedef struct child_run {
    int status; /* as waitpid gives it; -1 if it had to be killed */
    char out[4096];
} child_run;

/* Runs exit_child MODE N, collecting its standard output until it exits (or `seconds` pass:
 * then it is killed and status is -1). */
static void run_child(child_run *r, const char *mode, int n, double seconds)
{
    const char *exe = getenv("CF_EXIT_CHILD");
    ck_assert_msg(exe && *exe, "CF_EXIT_CHILD is not set");
    char count[16];
    snprintf(count, sizeof(count), "%d", n);
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        execl(exe, exe, mode, count, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    double end = cf_test_monotonic() + seconds;
    bool killed = false;
    for (;;) {
        double left = end - cf_test_monotonic();
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int ready = poll(&p, 1, killed ? 1000 : (int)(left * 1000) + 1);
        if (ready <= 0)
            continue;
        ssize_t got = read(fds[0], r->out + len, sizeof(r->out) - 1 - len);
        if (got <= 0)
            break; /* end of file: the child and everything it started are gone */
        len += (size_t)got;
    }
    r->out[len] = '\0';
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    r->status = killed ? -1 : status;
}

static void assert_exited_zero(const child_run *r)
{
    ck_assert_msg(r->status != -1, "the child did not exit in time; it printed:\n%s", r->out);
    ck_assert_msg(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
                  "the child ended with status %#x; it printed:\n%s", r->status, r->out);
}

/* Five tasks, one thread: one running and four queued when main returns; all finish, in order,
 * after main returned. */
START_TEST(test_finish_at_exit_runs_pending_work)
{
    child_run r;
    run_child(&r, "finish", 5, CF_TEST_LONG * 3);
    assert_exited_zero(&r);
    ck_assert_str_eq(r.out, "task 0 after main\n"
                            "task 1 after main\n"
                            "task 2 after main\n"
                            "task 3 after main\n"
                            "task 4 after main\n");
}
END_TEST

/* The default: returning from main drops the pending work (tasks that would never end) and the
 * process exits at once. */
START_TEST(test_default_drops_pending_work)
{
    child_run r;
    run_child(&r, "default", 3, CF_TEST_LONG * 3);
    assert_exited_zero(&r);
    ck_assert_str_eq(r.out, "");
}
END_TEST

/* exit() from a task of the pool: the handler waits for the other tasks, not for itself. */
START_TEST(test_exit_from_a_task)
{
    child_run r;
    run_child(&r, "exit_in_task", 0, CF_TEST_LONG * 3);
    assert_exited_zero(&r);
    ck_assert_str_eq(r.out, "task 0 after main\n");
}
END_TEST

/* A task that ends its thread (forbidden, but survived: the pool replaces the thread) does not
 * leave the exit handler waiting for a thread that is gone. */
START_TEST(test_task_ending_its_thread)
{
    child_run r;
    run_child(&r, "thread_exit", 0, CF_TEST_LONG * 3);
    assert_exited_zero(&r);
    ck_assert_str_eq(r.out, "task 1 after main\n");
}
END_TEST

/* A forked child exits without waiting for the pool it inherited (its threads are not there);
 * the parent still finishes its own work. */
START_TEST(test_forked_child_does_not_wait)
{
    child_run r;
    run_child(&r, "fork", 0, CF_TEST_LONG * 3);
    assert_exited_zero(&r);
    ck_assert_str_eq(r.out, "child exited\ntask 0 after main\n");
}
END_TEST

/* In this process: a pool with the option works as any other, and can be shut down and freed
 * before exit (it is then forgotten by the exit handler). */
START_TEST(test_freed_before_exit)
{
    for (int i = 0; i < 3; i++) {
        cf_thread_pool_options o = {.max_workers = 2, .finish_at_exit = true};
        cf_executor *ex = NULL;
        ck_assert_int_eq(cf_thread_pool_new(&ex, &o), 0);
        cf_future *f = NULL;
        ck_assert_int_eq(cf_executor_submit(&f, ex, cf_test_square_task, (void *)3), 0);
        void *value = NULL;
        ck_assert_int_eq(cf_future_result(&value, f, CF_TEST_LONG), 0);
        ck_assert_int_eq((intptr_t)value, 9);
        cf_future_unref(f);
        if (i == 1)
            ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
        ck_assert_int_eq(cf_executor_free(ex), 0);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pool_exit");
    TCase *tc = cf_test_tcase("exit");
    tcase_add_test(tc, test_finish_at_exit_runs_pending_work);
    tcase_add_test(tc, test_default_drops_pending_work);
    tcase_add_test(tc, test_exit_from_a_task);
    tcase_add_test(tc, test_task_ending_its_thread);
    tcase_add_test(tc, test_forked_child_does_not_wait);
    tcase_add_test(tc, test_freed_before_exit);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
