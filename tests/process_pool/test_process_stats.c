/* Watching a process pool: cf_process_pool_get_stats (workers alive and busy, queued and
 * running tasks, starts, retirements and replacements, completed tasks, broken) and
 * cf_process_pool_get_options (defaults resolved), and the name of its manager thread. The
 * spawn failures under a process limit are checked in test_process_hosts.c. */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "cf_test_sync.h"
#include "proc_util.h"

static int crash_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
    _exit(3);
}

static int init_ok(const void *arg, size_t len)
{
    (void)arg;
    (void)len;
    return 0;
}

static cf_process_pool_stats stats_of(cf_executor *ex)
{
    cf_process_pool_stats s;
    memset(&s, 0xAB, sizeof(s));
    ck_assert_int_eq(cf_process_pool_get_stats(&s, ex), 0);
    for (size_t i = 0; i < sizeof(s.reserved) / sizeof(s.reserved[0]); i++)
        ck_assert_uint_eq(s.reserved[i], 0);
    return s;
}

static cf_executor *new_pool(const cf_process_pool_options *o)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_process_pool_new(&ex, o), 0);
    return ex;
}

static cf_future *submit_block(cf_executor *ex, const char *fifo)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, proc_util_block_task, fifo, strlen(fifo)), 0);
    return f;
}

/* Opening the FIFO for writing returns once the task has opened it for reading: the worker is
 * then inside the task. Closing it lets the task return. */
static int enter_task(const char *fifo)
{
    int fd = open(fifo, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    return fd;
}

START_TEST(test_counts_follow_the_work)
{
    enum { N = 10 };
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *ex = new_pool(&o);
    cf_process_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.workers, 0); /* started on demand */
    ck_assert_uint_eq(s.busy, 0);
    ck_assert_uint_eq(s.queued + s.running + s.workers_started + s.tasks_completed, 0);
    ck_assert(!s.broken);

    char fifo[64];
    proc_util_make_fifo(fifo, sizeof(fifo));
    cf_future *fs[N];
    fs[0] = submit_block(ex, fifo);
    for (int i = 1; i < N; i++)
        ck_assert_int_eq(cf_executor_submit_bytes(&fs[i], ex, cf_test_echo_task, "x", 1), 0);
    int fd = enter_task(fifo); /* the only worker is inside the first task */
    s = stats_of(ex);
    ck_assert_uint_eq(s.workers, 1);
    ck_assert_uint_eq(s.busy, 1);
    ck_assert_uint_eq(s.workers_started, 1);
    ck_assert_uint_ge(s.running, 1); /* a few are sent ahead to the worker */
    ck_assert_uint_eq(s.queued + s.running, N);
    ck_assert_uint_eq(s.tasks_completed, 0);
    close(fd);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, fs[i], CF_TEST_LONG), 0);
        cf_future_unref(fs[i]);
    }
    s = stats_of(ex);
    ck_assert_uint_eq(s.workers, 1);
    ck_assert_uint_eq(s.busy, 0);
    ck_assert_uint_eq(s.queued + s.running, 0);
    ck_assert_uint_eq(s.tasks_completed, N);
    ck_assert_uint_eq(s.workers_started, 1);
    ck_assert_uint_eq(s.workers_retired + s.workers_replaced + s.spawns_failed, 0);
    unlink(fifo);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

static int fail_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    (void)result;
    (void)result_len;
    return cf_task_fail(-42, "no");
}

/* Failed tasks count as completed too: their outcome came back from the worker. So does a task
 * whose argument and result travel in shared memory. */
START_TEST(test_failures_are_completions)
{
    cf_process_pool_options o = {.max_workers = 2};
    cf_executor *ex = new_pool(&o);
    cf_future *f = NULL, *g = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, fail_task, "", 0), 0);
    static char big[100000];
    memset(big, 'b', sizeof(big));
    ck_assert_int_eq(cf_executor_submit_bytes(&g, ex, cf_test_echo_task, big, sizeof(big)), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), CF_ETASK);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, g, CF_TEST_LONG), 0);
    cf_future_unref(f);
    cf_future_unref(g);
    cf_process_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.tasks_completed, 2);
    ck_assert(!s.broken);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

/* max_tasks_per_child = 2, one worker, six tasks one after the other: three workers, each
 * retired at its second task; the second and third took the places of the first two. */
START_TEST(test_retired_and_replaced)
{
    cf_process_pool_options o = {.max_workers = 1, .max_tasks_per_child = 2};
    cf_executor *ex = new_pool(&o);
    int pids[6];
    for (int i = 0; i < 6; i++) {
        cf_future *f = NULL;
        ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, proc_util_getpid_task, "", 0), 0);
        pids[i] = proc_util_int_result(f);
        ck_assert_int_gt(pids[i], 0);
        cf_future_unref(f);
    }
    ck_assert_int_eq(pids[0], pids[1]);
    ck_assert_int_ne(pids[1], pids[2]);
    cf_process_pool_stats s = stats_of(ex);
    ck_assert_uint_eq(s.workers_started, 3);
    ck_assert_uint_eq(s.workers_retired, 3);
    ck_assert_uint_eq(s.workers_replaced, 2);
    ck_assert_uint_eq(s.tasks_completed, 6);
    /* A retired worker counts as alive until its exit is seen, which may come after the next
     * worker started (the rings deliver its last result before it exits): the count is only
     * certain once shutdown has waited for every worker. */
    ck_assert(!s.broken);
    ck_assert_int_eq(cf_executor_shutdown(ex, true, false), 0);
    s = stats_of(ex);
    ck_assert_uint_eq(s.workers, 0);
    ck_assert_uint_eq(s.busy, 0);
    ck_assert_uint_eq(s.workers_started, 3);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_broken)
{
    cf_process_pool_options o = {.max_workers = 1};
    cf_executor *ex = new_pool(&o);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, crash_task, "", 0), 0);
    int code = 0;
    ck_assert_int_eq(cf_future_exception(&code, NULL, f, CF_TEST_LONG), 0);
    ck_assert_int_eq(code, CF_EBROKEN);
    cf_future_unref(f);
    cf_process_pool_stats s = stats_of(ex);
    ck_assert(s.broken);
    ck_assert_uint_eq(s.queued + s.running, 0);
    ck_assert_uint_eq(s.tasks_completed, 0); /* its outcome did not come from the worker */
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_options_resolved)
{
    cf_executor *ex = new_pool(NULL);
    cf_process_pool_options o;
    memset(&o, 0xAB, sizeof(o));
    ck_assert_int_eq(cf_process_pool_get_options(&o, ex), 0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
    ck_assert_uint_eq(o.max_workers, (unsigned)cpus);
    ck_assert_ptr_null((void *)o.initializer);
    ck_assert_ptr_null(o.initializer_arg);
    ck_assert_uint_eq(o.initializer_arg_len, 0);
    ck_assert_uint_eq(o.max_tasks_per_child, 0);
    ck_assert(o.exit_timeout == 5.0);
    ck_assert_int_ne(o.start_method, CF_PROCESS_START_AUTO); /* the method in use */
    ck_assert_ptr_null(o.worker_program);
    ck_assert(!o.fork_with_threads);
    for (size_t i = 0; i < sizeof(o.reserved) / sizeof(o.reserved[0]); i++)
        ck_assert_uint_eq(o.reserved[i], 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);

    char arg[] = "init-bytes";
    cf_process_pool_options in = {
        .max_workers = 3,
        .initializer = init_ok,
        .initializer_arg = arg,
        .initializer_arg_len = sizeof(arg),
        .max_tasks_per_child = 7,
        .exit_timeout = 1.5,
        .start_method = CF_PROCESS_START_PROGRAM,
    };
    ex = new_pool(&in);
    memset(arg, 0, sizeof(arg)); /* the pool has its own copy */
    ck_assert_int_eq(cf_process_pool_get_options(&o, ex), 0);
    ck_assert_uint_eq(o.max_workers, 3);
    ck_assert_ptr_eq((void *)o.initializer, (void *)init_ok);
    ck_assert_uint_eq(o.initializer_arg_len, sizeof(arg));
    ck_assert_ptr_nonnull(o.initializer_arg);
    ck_assert_ptr_ne(o.initializer_arg, arg);
    ck_assert_mem_eq(o.initializer_arg, "init-bytes", sizeof(arg));
    ck_assert_uint_eq(o.max_tasks_per_child, 7);
    ck_assert(o.exit_timeout == 1.5);
    ck_assert_int_eq(o.start_method, CF_PROCESS_START_PROGRAM);
    /* What it reports creates an equal pool. */
    cf_executor *copy = new_pool(&o);
    cf_process_pool_options o2;
    ck_assert_int_eq(cf_process_pool_get_options(&o2, copy), 0);
    ck_assert_uint_eq(o2.max_workers, 3);
    ck_assert_uint_eq(o2.max_tasks_per_child, 7);
    ck_assert_int_eq(cf_executor_free(copy), 0);
    ck_assert_int_eq(cf_executor_free(ex), 0);
}
END_TEST

START_TEST(test_invalid)
{
    cf_executor *pp = new_pool(NULL);
    cf_executor *tp = cf_test_pool(1);
    cf_process_pool_stats s;
    cf_process_pool_options o;
    ck_assert_int_eq(cf_process_pool_get_stats(NULL, pp), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_get_stats(&s, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_get_stats(&s, tp), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_get_options(NULL, pp), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_get_options(&o, NULL), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_get_options(&o, tp), CF_EINVAL);
    cf_thread_pool_stats ts;
    ck_assert_int_eq(cf_thread_pool_get_stats(&ts, pp), CF_EINVAL);
    ck_assert_int_eq(cf_executor_free(tp), 0);
    ck_assert_int_eq(cf_executor_free(pp), 0);
}
END_TEST

/* The number of this process's threads named `name`. */
static int threads_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        if (fgets(comm, sizeof(comm), fp))
            comm[strcspn(comm, "\n")] = '\0';
        fclose(fp);
        n += strcmp(comm, name) == 0;
    }
    closedir(d);
    return n;
}

START_TEST(test_manager_thread_named)
{
    cf_executor *a = new_pool(NULL), *b = new_pool(NULL);
    /* The manager names itself first thing: wait for a task's round trip through it. */
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, a, cf_test_echo_task, "a", 1), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    ck_assert_int_eq(cf_executor_submit_bytes(&f, b, cf_test_echo_task, "b", 1), 0);
    ck_assert_int_eq(cf_future_result_bytes(NULL, NULL, f, CF_TEST_LONG), 0);
    cf_future_unref(f);
    /* Each pool's manager has a name of its own: cfproc<k>_mgr. */
    int named = 0;
    for (unsigned k = 0; k < 64; k++) {
        char name[16];
        snprintf(name, sizeof(name), "cfproc%u_mgr", k);
        int n = threads_named(name);
        ck_assert_int_le(n, 1);
        named += n;
    }
    ck_assert_int_eq(named, 2);
    ck_assert_int_eq(cf_executor_free(a), 0);
    ck_assert_int_eq(cf_executor_free(b), 0);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_stats");
    TCase *tc = cf_test_tcase("stats");
    tcase_add_test(tc, test_counts_follow_the_work);
    tcase_add_test(tc, test_failures_are_completions);
    tcase_add_test(tc, test_retired_and_replaced);
    tcase_add_test(tc, test_broken);
    tcase_add_test(tc, test_options_resolved);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_manager_thread_named);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
