/* Helpers shared by the process-pool suites: small tasks, FIFO-based blocking (a worker cannot
 * see the parent's memory, so tests release a blocked task through a named pipe), and /proc
 * inspection of child processes. */
#ifndef CF_PROC_UTIL_H
#define CF_PROC_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

#endif
