/* The process pool in the host programs it meets in the wild, each run as a scenario in a fresh
 * process (see proc_util.h): a daemon started with stdin, stdout and stderr closed; a process
 * allowed very few descriptors; an unprivileged user near its process limit (RLIMIT_NPROC, as a
 * container's pids.max). */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
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

/* ---- a process limit ---- */

/* proc_util_int_result() without Check (scenarios run outside the test runner, where a ck_
 * call exits). */
static int int_result(cf_future *f)
{
    const void *data;
    size_t len;
    int rc = cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), v;
    if (rc || len != sizeof(v))
        return -1000 + rc;
    memcpy(&v, data, sizeof(v));
    return v;
}

/* Threads of process `pid` (0: ourselves), or -1. */
static int threads_of(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid ? pid : (int)getpid());
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    int n = -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(fp);
    return n;
}

/* Our only child (the pool's fork server), or -1. */
static int only_child(void)
{
    DIR *d = opendir("/proc");
    int found = -1, count = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t k = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[k] = '\0';
        char *cp = strrchr(buf, ')');
        char state;
        int ppid;
        if (cp && sscanf(cp + 2, "%c %d", &state, &ppid) == 2 && ppid == (int)getpid()) {
            found = atoi(e->d_name);
            count++;
        }
    }
    if (d)
        closedir(d);
    return count == 1 ? found : -1;
}

/* A pool of 8 workers whose fork server may start only `room` processes beyond what our user
 * runs now (this process's threads and the server's), as a user near RLIMIT_NPROC or a
 * container near pids.max. Runs 8 tasks at once; returns the pool and stores the futures. */
static cf_executor *limited_pool(int room, unsigned max_tasks, cf_future *fs[8])
{
    cf_executor *ex;
    cf_process_pool_options o = {.max_workers = 8, .max_tasks_per_child = max_tasks};
    int rc = cf_process_pool_new(&ex, &o);
    if (rc != 0) {
        fprintf(stderr, "pool: %s\n", cf_err_name(rc));
        return NULL;
    }
    int server = only_child(), mine = threads_of(0), its = server > 0 ? threads_of(server) : -1;
    struct rlimit r = {.rlim_cur = (rlim_t)(mine + its + room), .rlim_max = RLIM_INFINITY};
    if (server < 0 || mine < 0 || its < 0 || getrlimit(RLIMIT_NPROC, &r) != 0) {
        fprintf(stderr, "server %d, threads %d + %d\n", server, mine, its);
        return NULL;
    }
    r.rlim_cur = (rlim_t)(mine + its + room);
    if (prlimit(server, RLIMIT_NPROC, &r, NULL) != 0) {
        fprintf(stderr, "prlimit: %s\n", strerror(errno));
        return NULL;
    }
    for (int i = 0; i < 8; i++) {
        rc = cf_executor_submit_bytes(&fs[i], ex, proc_util_getpid_task, "", 0);
        if (rc != 0) {
            fprintf(stderr, "submit %d: %s\n", i, cf_err_name(rc));
            return NULL;
        }
    }
    return ex;
}

/* Runs as an unprivileged user of its own (root ignores RLIMIT_NPROC). */
static int nproc_scenario(void)
{
    if (getuid() == 0)
        return 1;
    /* Room for two workers out of 8 wanted: the pool runs every task on the two it has. */
    cf_future *fs[8];
    cf_executor *ex = limited_pool(2, 0, fs);
    if (!ex)
        return 2;
    int pids[8], distinct = 0;
    for (int i = 0; i < 8; i++) {
        pids[i] = int_result(fs[i]);
        if (pids[i] <= 0) {
            const char *msg = NULL;
            cf_future_exception(NULL, &msg, fs[i], 0);
            fprintf(stderr, "task %d: %d (%s)\n", i, pids[i], msg ? msg : "");
            return 3;
        }
        bool seen = false;
        for (int j = 0; j < i; j++)
            seen |= pids[j] == pids[i];
        distinct += !seen;
        cf_future_unref(fs[i]);
    }
    if (distinct < 1 || distinct > 2)
        return 4; /* the limit did not apply: the test proves nothing */
    /* The stats tell the story: at most two workers ran everything (whether a third fork was
     * even tried depends on how fast the two answered). */
    cf_process_pool_stats st;
    if (cf_process_pool_get_stats(&st, ex) != 0 ||
        st.workers_started < (unsigned long long)distinct || st.workers_started > 2 ||
        st.tasks_completed != 8 || st.broken) {
        fprintf(stderr, "stats: %llu failed forks, %llu started, %llu completed, broken %d\n",
                st.spawns_failed, st.workers_started, st.tasks_completed, (int)st.broken);
        return 12;
    }
    if (cf_executor_free(ex) != 0)
        return 5;
    /* One task per worker and room for two: each replacement waits until a retired worker is
     * gone (its fork may fail while the old one is not reaped yet; the pool tries again). */
    ex = limited_pool(2, 1, fs);
    if (!ex)
        return 6;
    for (int i = 0; i < 8; i++) {
        if (int_result(fs[i]) <= 0)
            return 7;
        cf_future_unref(fs[i]);
    }
    if (cf_executor_free(ex) != 0)
        return 8;
    /* No room at all: no worker can ever run, so the pool breaks (after trying for a while)
     * and says why. */
    ex = limited_pool(0, 0, fs);
    if (!ex)
        return 9;
    for (int i = 0; i < 8; i++) {
        int code = 0;
        const char *msg = NULL;
        if (cf_future_exception(&code, &msg, fs[i], CF_TEST_LONG) != 0 || code != CF_EBROKEN ||
            !msg || !strstr(msg, "could not be started")) {
            fprintf(stderr, "task %d: %s (%s)\n", i, cf_err_name(code), msg ? msg : "");
            return 10;
        }
        cf_future_unref(fs[i]);
    }
    /* Every fork failed: the stats say so. */
    if (cf_process_pool_get_stats(&st, ex) != 0 || !st.broken || st.workers_started != 0 ||
        st.spawns_failed == 0)
        return 13;
    return cf_executor_free(ex) == 0 ? 0 : 11;
}

START_TEST(test_process_limit)
{
    if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) {
        printf("process_limit: skipped: needs root and setpriv to run as another user (CI runs "
               "as root)\n");
        return;
    }
    /* A user of its own, so that nobody else's processes count against the limit. */
    char uid[32], gid[32];
    int id = 61000 + (int)(getpid() % 4000);
    snprintf(uid, sizeof(uid), "--reuid=%d", id);
    snprintf(gid, sizeof(gid), "--regid=%d", id);
    const char *setpriv[] = {"/usr/bin/setpriv", uid, gid, "--clear-groups", "--", NULL};
    int status = proc_util_run_scenario("nproc", setpriv, false);
    proc_util_assert_scenario(status, "nproc");
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
    tcase_add_test(tc, test_process_limit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *scenario = getenv("CF_TEST_SCENARIO");
    if (scenario)
        proc_util_scenario_begin();
    if (scenario && strcmp(scenario, "closed_stdio") == 0)
        return closed_stdio_scenario();
    if (scenario && strcmp(scenario, "low_nofile") == 0)
        return low_nofile_scenario();
    if (scenario && strcmp(scenario, "nproc") == 0)
        return nproc_scenario();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
