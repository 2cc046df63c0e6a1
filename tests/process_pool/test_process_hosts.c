/* The process pool in the host programs it meets in the wild, each run as a scenario in a fresh
 * process (see proc_util.h): a daemon started with stdin, stdout and stderr closed; a process
 * allowed very few descriptors. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cf_test.h"
#include "proc_util.h"

/* ---- tasks ---- */

/* Writes to its stdout and stderr, then returns its argument (an int). */
static int chatty_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    int i;
    if (len != sizeof(i))
        return CF_EINVAL;
    memcpy(&i, arg, sizeof(i));
    printf("task %d writes to stdout\n", i);
    fflush(stdout);
    fprintf(stderr, "task %d writes to stderr\n", i);
    return proc_util_return_int(i, result, result_len);
}

/* Returns the worker's open descriptors, in increasing order. */
static int fds_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return CF_ESYSTEM;
    int *fds = malloc(64 * sizeof(int)), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != dirfd(d))
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of numbers */
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
    *result = fds;
    *result_len = (size_t)n * sizeof(int);
    return 0;
}

/* A result large enough to come back in a memfd, received by the parent. */
static int big_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len;
    size_t n = 256 * 1024;
    unsigned char *out = malloc(n);
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(i * 31);
    *result = out;
    *result_len = n;
    return 0;
}

/* ---- stdin, stdout and stderr closed ---- */

static bool stdio_closed(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            return false;
    return true;
}

/* Runs with 0-2 closed. The library must keep its own descriptors off 0-2 (in the parent, the
 * fork server and the workers), the workers must have 0-2 open (on /dev/null) and nothing else
 * but their channel, and tasks and the parent that write to stdout and stderr must not disturb
 * the pool. */
static int closed_stdio_scenario(void)
{
    enum { TASKS = 16 };
    if (!stdio_closed())
        return 1;
    cf_executor *ex;
    if (cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 2}) != 0)
        return 2;
    if (!stdio_closed())
        return 3; /* a descriptor of the pool sits on 0-2 */
    cf_future *fs[TASKS], *fds, *big;
    for (int i = 0; i < TASKS; i++) {
        if (cf_executor_submit_bytes(&fs[i], ex, chatty_task, &i, sizeof(i)) != 0)
            return 4;
        /* The program's own stray writes to stderr. */
        fprintf(stderr, "the parent writes to stderr\n");
        ssize_t n = write(STDERR_FILENO, "x", 1);
        (void)n;
    }
    if (cf_executor_submit_bytes(&fds, ex, fds_task, "", 0) != 0 ||
        cf_executor_submit_bytes(&big, ex, big_task, "", 0) != 0)
        return 5;
    for (int i = 0; i < TASKS; i++) {
        const void *data;
        size_t len;
        int v;
        if (cf_future_result_bytes(&data, &len, fs[i], CF_TEST_LONG) != 0 || len != sizeof(v))
            return 6;
        memcpy(&v, data, sizeof(v));
        if (v != i)
            return 7;
        cf_future_unref(fs[i]);
    }
    const void *data;
    size_t len;
    if (cf_future_result_bytes(&data, &len, fds, CF_TEST_LONG) != 0)
        return 8;
    const int expected[] = {0, 1, 2, 3}; /* stdio (on /dev/null) and the channel */
    if (len != sizeof(expected) || memcmp(data, expected, len) != 0)
        return 9;
    if (cf_future_result_bytes(&data, &len, big, CF_TEST_LONG) != 0 || len != 256 * 1024 ||
        ((const unsigned char *)data)[len - 1] != (unsigned char)((len - 1) * 31))
        return 10;
    cf_future_unref(fds);
    cf_future_unref(big);
    if (!stdio_closed())
        return 11;
    return cf_executor_free(ex) == 0 ? 0 : 12;
}

START_TEST(test_closed_stdio)
{
    int status = proc_util_run_scenario("closed_stdio", NULL, true);
    proc_util_assert_scenario(status, "closed_stdio");
}
END_TEST

/* ---- very few descriptors ---- */

static int set_nofile(rlim_t n)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return -1;
    r.rlim_cur = n;
    return setrlimit(RLIMIT_NOFILE, &r);
}

/* With a limit of 10 descriptors (0-2 taken) a pool with one worker fits: it must work. With 6
 * it cannot: creation must say CF_EMFILE, the documented code for running out of descriptors,
 * and nothing may be left behind. */
static int low_nofile_scenario(void)
{
    if (set_nofile(6) != 0)
        return 1;
    cf_executor *ex = NULL;
    int rc = cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1});
    if (rc != CF_EMFILE) {
        fprintf(stderr, "limit 6: %s, expected CF_EMFILE\n", cf_err_name(rc));
        return 2;
    }
    if (set_nofile(10) != 0)
        return 3;
    rc = cf_process_pool_new(&ex, &(cf_process_pool_options){.max_workers = 1});
    if (rc != 0) {
        fprintf(stderr, "limit 10: %s\n", cf_err_name(rc));
        return 4;
    }
    cf_future *f;
    int i = 42;
    if (cf_executor_submit_bytes(&f, ex, chatty_task, &i, sizeof(i)) != 0)
        return 5;
    const void *data;
    size_t len;
    if (cf_future_result_bytes(&data, &len, f, CF_TEST_LONG) != 0 || len != sizeof(int) ||
        memcmp(data, &i, sizeof(i)) != 0)
        return 6;
    cf_future_unref(f);
    return cf_executor_free(ex) == 0 ? 0 : 7;
}

START_TEST(test_low_nofile)
{
    int status = proc_util_run_scenario("low_nofile", NULL, false);
    proc_util_assert_scenario(status, "low_nofile");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_hosts");
    TCase *tc = cf_test_tcase("stdio");
    tcase_add_test(tc, test_closed_stdio);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("limits");
    tcase_add_test(tc, test_low_nofile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *scenario = getenv("CF_TEST_SCENARIO");
    if (scenario && strcmp(scenario, "closed_stdio") == 0)
        return closed_stdio_scenario();
    if (scenario && strcmp(scenario, "low_nofile") == 0)
        return low_nofile_scenario();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
