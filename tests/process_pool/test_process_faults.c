/* The process pool when things go wrong: workers that die (SIGKILL, abort, _exit, exit, killed
 * from outside), bytes on a worker's socket that are not frames, terminate/kill, a parent that
 * exits or is killed without shutting down. Ported in spirit from CPython's test_deadlock and the
 * broken-pool cases of test_process_pool. Every death is caused by the task itself or by the test,
 * never by timing. */
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "cf_test.h"
#include "proc_util.h"

/* ---- tasks ---- */

static int sigkill_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    raise(SIGKILL);
    return 0;
}

static int exit3_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    _exit(3);
}

static int exit_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    exit(7);
}

static int abort_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    signal(SIGABRT, SIG_DFL);
    abort();
}

static int ok_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len;
    *result = malloc(1);
    *result_len = 0;
    return 0;
}

/* The worker's socket is descriptor 3 (see fork_server.c): write bytes that would not be a
 * frame. Frames travel in the shared rings; the socket carries descriptors and doorbells, whose
 * bytes mean nothing (malformed frames are test_process_hostile's). */
static int garbage_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    unsigned char junk[96];
    memset(junk, 0xab, sizeof(junk));
    ssize_t n = write(3, junk, sizeof(junk));
    (void)n;
    return ok_task(arg, len, result, result_len);
}

/* ---- helpers ---- */

/* Asserts the future failed with CF_EBROKEN and a message containing `needle`. */
static void assert_broken(cf_future *f, const char *needle)
{
    int code = 0;
    const char *msg = NULL;
    ck_assert_int_eq(cf_future_exception(&code, &msg, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EBROKEN);
    ck_assert_ptr_nonnull(msg);
    if (needle && !strstr(msg, needle))
        ck_abort_msg("message \"%s\" lacks \"%s\"", msg, needle);
}

/* Submits a blocker and a killer to a 2-worker pool, plus queued work; all of it must end
 * CF_EBROKEN with `needle` in the message, and the pool must refuse work afterwards. */
static void check_death(cf_bytes_fn killer, const char *needle)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    int before = proc_util_count_children();
    cf_executor *ex = proc_util_new_pool(2);
    /* The blocker goes to the first worker; the killer to the second, which is started for it
     * and is the less loaded one. */
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    cf_future *k = proc_util_submit_str(ex, killer, "");
    cf_future *fs[10];
    int accepted = 0;
    for (int i = 0; i < 10; i++) {
        int rc = cf_executor_submit_bytes(&fs[accepted], ex, ok_task, "", 0);
        if (rc == 0)
            accepted++;
        else
            ck_assert_int_eq(rc, CF_EBROKEN); /* the death was already noticed */
    }
    assert_broken(k, needle);
    assert_broken(blocker, NULL);
    for (int i = 0; i < accepted; i++) {
        int rc = cf_future_result(NULL, fs[i], CF_TEST_LONG);
        /* Work that completed before the death keeps its result. */
        if (rc != 0)
            assert_broken(fs[i], NULL);
        cf_future_unref(fs[i]);
    }
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, ok_task, "", 0), CF_EBROKEN);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(proc_util_count_children(), before);
    cf_future_unref(blocker);
    cf_future_unref(k);
    unlink(fifo);
}

START_TEST(test_sigkill_in_task_breaks_pool)
{
    check_death(sigkill_task, "killed by signal 9");
}
END_TEST

START_TEST(test_exit_in_task_breaks_pool)
{
    check_death(exit3_task, "exit code 3");
    check_death(exit_task, "exit code 7");
}
END_TEST

START_TEST(test_abort_in_task_breaks_pool)
{
    check_death(abort_task, "signal 6");
}
END_TEST

START_TEST(test_socket_bytes_are_not_frames)
{
    cf_executor *ex = proc_util_new_pool(1);
    for (int i = 0; i < 3; i++) {
        cf_future *f = proc_util_submit_str(ex, garbage_task, "");
        ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
        cf_future_unref(f);
    }
    cf_future *f = proc_util_submit_str(ex, ok_task, "");
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_worker_killed_from_outside)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_executor *ex = proc_util_new_pool(1);
    cf_future *p = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int pid = proc_util_int_result(p);
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    char needle[64];
    snprintf(needle, sizeof(needle), "pid %d", pid);
    assert_broken(blocker, needle);
    cf_future_unref(p);
    cf_future_unref(blocker);
    cf_executor_free(ex);
    unlink(fifo);
}
END_TEST

/* CPython test_shutdown_deadlock: a crash racing shutdown(wait=true) must not hang. */
START_TEST(test_shutdown_wait_with_crash)
{
    cf_executor *ex = proc_util_new_pool(2);
    cf_future *f = proc_util_submit_str(ex, sigkill_task, "");
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    assert_broken(f, "signal 9");
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

static void check_force(int (*stop)(cf_executor *), const char *needle)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    int before = proc_util_count_children();
    cf_executor *ex = proc_util_new_pool(1);
    proc_util_warm(ex); /* the blocker is dispatched (RUNNING) at once */
    cf_future *blocker = proc_util_submit_str(ex, proc_util_block_task, fifo);
    cf_future *fs[20];
    for (int i = 0; i < 20; i++)
        fs[i] = proc_util_submit_str(ex, ok_task, "");
    ck_assert_int_eq(stop(ex), 0);
    ck_assert_int_eq(stop(ex), 0); /* harmless twice */
    assert_broken(blocker, needle);
    int cancelled = 0;
    for (int i = 0; i < 20; i++) {
        int rc = cf_future_result(NULL, fs[i], CF_TEST_LONG);
        if (rc == CF_ETASK)
            assert_broken(fs[i], needle);
        else if (rc != 0)
            ck_assert_int_eq(rc, CF_ECANCELLED);
        cancelled += cf_future_cancelled(fs[i]);
        cf_future_unref(fs[i]);
    }
    ck_assert_int_ge(cancelled, 20 - 8);
    cf_future *f = (cf_future *)1;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, ok_task, "", 0), CF_ESHUTDOWN);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    ck_assert_int_eq(proc_util_count_children(), before);
    cf_executor_free(ex);
    cf_future_unref(blocker);
    unlink(fifo);
}

START_TEST(test_terminate)
{
    check_force(cf_process_pool_terminate, "cf_process_pool_terminate");
}
END_TEST

START_TEST(test_kill)
{
    check_force(cf_process_pool_kill, "cf_process_pool_kill");
}
END_TEST

START_TEST(test_terminate_without_workers)
{
    cf_executor *ex = proc_util_new_pool(2);
    ck_assert_int_eq(cf_process_pool_terminate(ex), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* ---- workers that do not cooperate: stopped, or ignoring SIGTERM ---- */

/* The state letter of a process in /proc/<pid>/stat ('T': stopped), or 0 if it is gone. */
static char proc_state(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t k = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[k] = '\0';
    char *cp = strrchr(buf, ')');
    return cp ? cp[2] : 0;
}

/* Polls an outside observable (the kernel's view of the process), bounded. */
static bool wait_stopped(int pid)
{
    double end = cf_test_monotonic() + CF_TEST_LONG;
    while (proc_state(pid) != 'T') {
        if (cf_test_monotonic() > end)
            return false;
        usleep(1000);
    }
    return true;
}

static int stop_self_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len, (void)result, (void)result_len;
    raise(SIGSTOP);
    return 0;
}

/* Ignores SIGTERM, then blocks until its FIFO is released (never, in the test). */
static int ignore_term_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    signal(SIGTERM, SIG_IGN);
    return proc_util_block_task(arg, len, result, result_len);
}

static int worker_pid(cf_executor *ex)
{
    cf_future *f = proc_util_submit_str(ex, proc_util_getpid_task, "");
    int pid = proc_util_int_result(f);
    cf_future_unref(f);
    ck_assert_int_gt(pid, 0);
    return pid;
}

START_TEST(test_terminate_stopped_worker)
{
    /* A worker stopped in the middle of a task (SIGSTOP, job control, a debugger) keeps SIGTERM
     * pending: terminate must continue it, so its future ends and free returns. */
    int before = proc_util_count_children();
    cf_executor *ex = proc_util_new_pool(1);
    int pid = worker_pid(ex);
    cf_future *f = proc_util_submit_str(ex, stop_self_task, "");
    ck_assert(wait_stopped(pid));
    ck_assert_int_eq(cf_process_pool_terminate(ex), 0);
    assert_broken(f, "cf_process_pool_terminate");
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    ck_assert_int_eq(proc_util_count_children(), before);
}
END_TEST

START_TEST(test_terminate_escalates_to_sigkill)
{
    /* A worker that ignores SIGTERM gets SIGKILL once exit_timeout has passed. */
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_process_pool_options o = {.max_workers = 1, .exit_timeout = 0.2};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    cf_future *f = proc_util_submit_str(ex, ignore_term_task, fifo);
    /* The task has opened its FIFO (so SIGTERM is ignored by now) once our open returns. */
    int fd = open(fifo, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(cf_process_pool_terminate(ex), 0);
    assert_broken(f, "cf_process_pool_terminate");
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    close(fd);
    unlink(fifo);
}
END_TEST

START_TEST(test_shutdown_with_stopped_idle_worker)
{
    /* A worker stopped while idle never reads the EXIT that shutdown sends: shutdown(wait) and
     * free must still return, killing it after exit_timeout. */
    cf_process_pool_options o = {.max_workers = 1, .exit_timeout = 0.2};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    int pid = worker_pid(ex);
    ck_assert_int_eq(kill(pid, SIGSTOP), 0);
    ck_assert(wait_stopped(pid));
    ck_assert_int_eq(cf_executor_shutdown(ex, false, false), 0);
    ck_assert_msg(proc_util_wait_gone(pid, CF_TEST_LONG), "the stopped worker %d is still there",
                  pid);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_exit_timeout_invalid)
{
    cf_executor *ex = (cf_executor *)1;
    cf_process_pool_options o = {.exit_timeout = -1};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_ptr_null(ex);
    o.exit_timeout = NAN;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
}
END_TEST

/* ---- the parent goes away without shutting down ---- */

/* A child of this process (-1: none). */
static int first_child(void)
{
    int pid;
    return proc_util_children(&pid, 1) ? pid : -1;
}

/* In a child process: start a pool with two busy workers, report the server's and the workers'
 * pids through `fd`, then leave by `how` (0: SIGKILL, 1: exit without shutdown). */
static _Noreturn void doomed_parent(int fd, const char *fifo, int how)
{
    cf_executor *ex;
    if (cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 2}) != 0)
        _exit(90);
    int pids[3];
    cf_future *a, *b;
    cf_executor_submit_bytes(&a, ex, proc_util_getpid_task, "", 0);
    pids[1] = proc_util_int_result(a);
    /* Keep the first worker busy so the second task needs a second worker. */
    cf_executor_submit_bytes(&b, ex, proc_util_block_task, fifo, strlen(fifo));
    cf_future *c;
    cf_executor_submit_bytes(&c, ex, proc_util_getpid_task, "", 0);
    pids[2] = proc_util_int_result(c);
    pids[0] = first_child();
    if (write(fd, pids, sizeof(pids)) != (ssize_t)sizeof(pids))
        _exit(91);
    if (how == 0)
        raise(SIGKILL);
    exit(0);
}

static void check_orphans(int how)
{
    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        close(p[0]);
        doomed_parent(p[1], fifo, how);
    }
    close(p[1]);
    int pids[3];
    ck_assert_int_eq(read(p[0], pids, sizeof(pids)), (ssize_t)sizeof(pids));
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_gt(pids[i], 0);
        ck_assert_msg(proc_util_wait_gone(pids[i], CF_TEST_LONG), "pid %d survived", pids[i]);
    }
    unlink(fifo);
}

START_TEST(test_parent_killed)
{
    check_orphans(0);
}
END_TEST

START_TEST(test_parent_exits_without_shutdown)
{
    check_orphans(1);
}
END_TEST

/* ---- descriptor exhaustion in a fresh process ---- */

extern char **environ;

/* Runs in a fresh image of this program (see main): the first pool is created while only two
 * more descriptors can be opened, so the pool's own epoll and eventfd succeed and whatever the
 * fork server needs next fails. Creation must fail with CF_EMFILE, and once descriptors are
 * available again a pool must work: the shortage must not be remembered. Returns 0 or the
 * number of the failed step. */
static int emfile_scenario(void)
{
    int lowest = fcntl(0, F_DUPFD, 0);
    if (lowest < 0)
        return 1;
    close(lowest);
    struct rlimit saved, low;
    if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
        return 2;
    low = saved;
    low.rlim_cur = (rlim_t)lowest + 2;
    if (setrlimit(RLIMIT_NOFILE, &low) != 0)
        return 3;
    cf_executor *ex = NULL;
    int rc = cf_process_pool_new(&ex, NULL);
    if (setrlimit(RLIMIT_NOFILE, &saved) != 0)
        return 4;
    if (rc != CF_EMFILE) {
        fprintf(stderr, "first pool: %s, expected CF_EMFILE\n", cf_err_name(rc));
        return 5;
    }
    rc = cf_process_pool_new(&ex, NULL);
    if (rc != 0) {
        fprintf(stderr, "second pool: %s\n", cf_err_name(rc));
        return 6;
    }
    cf_future *f = NULL;
    if (cf_executor_submit_bytes(&f, ex, ok_task, "", 0) != 0 ||
        cf_future_result(NULL, f, CF_TEST_LONG) != 0)
        return 7;
    cf_future_unref(f);
    return cf_executor_free(ex) == 0 ? 0 : 8;
}

START_TEST(test_descriptor_exhaustion_is_not_permanent)
{
    char *argv[] = {program_invocation_name, NULL};
    char **env = calloc(256, sizeof(char *));
    size_t n = 0;
    for (char **e = environ; *e && n < 254; e++)
        env[n++] = *e;
    env[n++] = "CF_TEST_SCENARIO=emfile";
    /* Through an opened descriptor, as the library does: under valgrind, /proc/self/exe as a
     * path is valgrind itself, while opening it gives the program. */
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(exe, 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", exe);
    pid_t pid;
    ck_assert_int_eq(posix_spawn(&pid, path, NULL, NULL, argv, env), 0);
    close(exe);
    free(env);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "scenario failed: status %#x",
                  status);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_faults");
    TCase *tc = cf_test_tcase("deaths");
    tcase_add_test(tc, test_sigkill_in_task_breaks_pool);
    tcase_add_test(tc, test_exit_in_task_breaks_pool);
    tcase_add_test(tc, test_abort_in_task_breaks_pool);
    tcase_add_test(tc, test_socket_bytes_are_not_frames);
    tcase_add_test(tc, test_worker_killed_from_outside);
    tcase_add_test(tc, test_shutdown_wait_with_crash);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("force");
    tcase_add_test(tc, test_terminate);
    tcase_add_test(tc, test_kill);
    tcase_add_test(tc, test_terminate_without_workers);
    tcase_add_test(tc, test_terminate_stopped_worker);
    tcase_add_test(tc, test_terminate_escalates_to_sigkill);
    tcase_add_test(tc, test_shutdown_with_stopped_idle_worker);
    tcase_add_test(tc, test_exit_timeout_invalid);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("orphans");
    tcase_add_test(tc, test_parent_killed);
    tcase_add_test(tc, test_parent_exits_without_shutdown);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("exhaustion");
    tcase_add_test(tc, test_descriptor_exhaustion_is_not_permanent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *scenario = getenv("CF_TEST_SCENARIO");
    if (scenario && strcmp(scenario, "emfile") == 0)
        return emfile_scenario();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
