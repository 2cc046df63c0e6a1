/* Helpers shared by the process-pool suites: small tasks, FIFO-based blocking (a worker cannot
 * see the parent's memory, so tests release a blocked task through a named pipe), and /proc
 * inspection of child processes. */
#ifndef CF_PROC_UTIL_H
#define CF_PROC_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"

static inline int proc_util_return_int(int v, void **result, size_t *result_len)
{
    int *out = malloc(sizeof(int));
    if (!out)
        return CF_ENOMEM;
    *out = v;
    *result = out;
    *result_len = sizeof(int);
    return 0;
}

/* The int a task returned, or -1000 - code if it failed. */
static inline int proc_util_int_result(cf_future *f)
{
    const void *data;
    size_t len;
    int rc = cf_future_result_bytes(&data, &len, f, CF_TEST_LONG);
    if (rc) {
        int code = 0;
        cf_future_exception(&code, NULL, f, 0);
        return -1000 + (rc == CF_ETASK ? code : rc);
    }
    ck_assert_uint_eq(len, sizeof(int));
    int v;
    memcpy(&v, data, sizeof(v));
    return v;
}

static inline int proc_util_getpid_task(const void *arg, size_t len, void **result,
                                        size_t *result_len)
{
    (void)arg;
    (void)len;
    return proc_util_return_int((int)getpid(), result, result_len);
}

/* Runs one task on the pool and waits for it: afterwards a worker exists and is idle, so the
 * next submit is dispatched at once (RUNNING) instead of waiting for a worker to be forked. */
static inline void proc_util_warm(cf_executor *ex)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, proc_util_getpid_task, "", 0), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
}

/* Blocks until the FIFO named by the argument is opened for writing and closed again. */
static inline int proc_util_block_task(const void *arg, size_t len, void **result,
                                       size_t *result_len)
{
    (void)result;
    (void)result_len;
    char path[256];
    snprintf(path, sizeof(path), "%.*s", (int)len, (const char *)arg);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return cf_task_fail(-errno, "open %s", path);
    char buf[16];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    return 0;
}

static inline void proc_util_make_fifo(char *path, size_t cap)
{
    static int counter;
    snprintf(path, cap, "/tmp/cfutures-test-%d-%d", (int)getpid(), counter++);
    unlink(path);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
}

static inline void proc_util_release_fifo(const char *path)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

/* Reads the state letter and the parent pid of process `pid` from /proc; false if it is gone. */
static inline bool proc_util_stat(int pid, char *state, int *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    size_t k = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[k] = '\0';
    char *close_paren = strrchr(buf, ')'); /* the name in parentheses may hold anything */
    return close_paren && sscanf(close_paren + 2, "%c %d", state, ppid) == 2;
}

/* The children of this process (zombies included): stores the first `cap` pids in `pids` and
 * returns how many there are. */
static inline int proc_util_children(int *pids, int cap)
{
    DIR *d = opendir("/proc");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char state;
        int ppid, pid = atoi(e->d_name);
        if (proc_util_stat(pid, &state, &ppid) && ppid == (int)getpid() && n++ < cap)
            pids[n - 1] = pid;
    }
    closedir(d);
    return n;
}

/* The number of children of this process. */
static inline int proc_util_count_children(void)
{
    return proc_util_children(NULL, 0);
}

/* True if the process is gone (or a zombie nobody has reaped yet). */
static inline bool proc_util_is_gone(int pid)
{
    char state;
    int ppid;
    return !proc_util_stat(pid, &state, &ppid) || state == 'Z' || state == 'X';
}

/* A process pool of `max_workers` (0: the default). */
static inline cf_executor *proc_util_new_pool(unsigned max_workers)
{
    cf_process_pool_options o = {.max_workers = max_workers};
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    return ex;
}

/* Submits fn with the bytes of the string `s` (without its terminator). */
static inline cf_future *proc_util_submit_str(cf_executor *ex, cf_bytes_fn fn, const char *s)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, fn, s, strlen(s)), 0);
    return f;
}

static inline bool proc_util_wait_gone(int pid, double seconds)
{
    double end = cf_test_monotonic() + seconds;
    while (!proc_util_is_gone(pid)) {
        if (cf_test_monotonic() > end)
            return false;
        usleep(10000); /* polling an outside observable; not a correctness sleep */
    }
    return true;
}

static inline bool proc_util_wait_no_children(double seconds)
{
    double end = cf_test_monotonic() + seconds;
    while (proc_util_count_children() != 0) {
        if (cf_test_monotonic() > end)
            return false;
        usleep(10000);
    }
    return true;
}

/* ---- scenarios: this test program run again in a fresh process ----
 * Some conditions cannot be set up inside a Check test: descriptors 0-2 closed, another user,
 * low resource limits. The suite's main() runs scenario `name` instead of the suite when
 * CF_TEST_SCENARIO=name is set, and exits with 0 or the number of the step that failed. */

extern char **environ;

/* Runs scenario `name` in a fresh image of this program, behind `wrapper` (the argv of a
 * command that execs the rest, such as setpriv; NULL: none), with descriptors 0-2 closed if
 * `close_stdio`. Returns its wait status. */
static inline int proc_util_run_scenario(const char *name, const char *const *wrapper,
                                         bool close_stdio)
{
    /* Through an opened descriptor: under valgrind /proc/self/exe as a path is valgrind itself.
     * A wrapper execs the path in turn, so the descriptor must survive our exec. */
    int exe = open("/proc/self/exe", O_RDONLY | (wrapper ? 0 : O_CLOEXEC));
    ck_assert_int_ge(exe, 0);
    char path[64], var[128];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", exe);
    snprintf(var, sizeof(var), "CF_TEST_SCENARIO=%s", name);
    size_t n = 0, w = 0;
    while (environ[n])
        n++;
    while (wrapper && wrapper[w])
        w++;
    char **env = calloc(n + 2, sizeof(char *));
    char **argv = calloc(w + 2, sizeof(char *));
    ck_assert(env && argv);
    for (size_t i = 0; i < n; i++)
        env[i] = environ[i];
    env[n] = var;
    for (size_t i = 0; i < w; i++)
        argv[i] = (char *)wrapper[i];
    argv[w] = path;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    for (int fd = 0; close_stdio && fd <= 2; fd++)
        posix_spawn_file_actions_addclose(&fa, fd);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(exe);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    free(env);
    free(argv);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

/* Called first by a scenario: closes every descriptor above 2 it inherited (a test runner's
 * reporting files, our image's descriptor), so that it starts as a fresh program would. */
static inline void proc_util_scenario_begin(void)
{
    syscall(SYS_close_range, 3u, ~0u, 0u);
}

/* Asserts that scenario `name` exited with 0; otherwise reports the step it failed at. */
#define proc_util_assert_scenario(status, name)                                                    \
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,                                   \
                  "scenario %s failed at step %d (status %#x)", name,                              \
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1, status)

#endif
