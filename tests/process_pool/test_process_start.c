/* The process pool's start methods (cf_process_start): how a pool gets the fork server that
 * forks its workers, in the programs that use it:
 *   - a plugin host that dlopen()s the library and a task library: the default never runs the
 *     host's main() again (it counts its runs) and maps a task through the helper program;
 *     asking for CF_PROCESS_START_PROGRAM there is refused;
 *   - a Python program using a C task library through ctypes (python3, the real thing);
 *   - the helper in a program linked with the library: tasks from a dlopen()ed library run,
 *     functions of the main program are refused; a worker_program that is not executable, or
 *     that does not answer, is an error;
 *   - CF_PROCESS_START_FORK in a single-threaded program (workers see its state at creation),
 *     refused among threads unless forced;
 *   - the default in a program linked with the library re-executes the program.
 * Paths of the built programs come from the environment (tests/meson.build). */
#include <dlfcn.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test_sync.h"
#include "proc_util.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

static const char *need_env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v && *v, "meson sets %s", name);
    return v;
}

/* Runs argv with stdout into `out` (at most cap - 1 bytes); returns the wait status. */
static int run(char *const argv[], char *out, size_t cap)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    ck_assert_msg(rc == 0, "cannot run %s: %s", argv[0], strerror(rc));
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(p[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    out[n] = '\0';
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static int count_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    int n = 0, c;
    while ((c = fgetc(fp)) != EOF)
        n += c == '\n';
    fclose(fp);
    return n;
}

/* ---- a plugin host ---- */

static void run_host(const char *mode, char *out, size_t cap, int *mains)
{
    char counter[] = "/tmp/cfutures-host-XXXXXX";
    int fd = mkstemp(counter);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(setenv("CF_TEST_HOST_COUNTER", counter, 1), 0);
    char *argv[] = {(char *)need_env("CF_TEST_DLOPEN_HOST"),
                    (char *)need_env("CF_TEST_LIBCFUTURES"),
                    (char *)need_env("CF_TEST_START_TASKS"), (char *)mode, NULL};
    int status = run(argv, out, cap);
    unsetenv("CF_TEST_HOST_COUNTER");
    *mains = count_lines(counter);
    unlink(counter);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "host %s: status %#x, said %s",
                  mode, status, out);
}

START_TEST(test_dlopen_host_default)
{
    char out[256];
    int mains;
    run_host("auto", out, sizeof(out), &mains);
    ck_assert_msg(mains == 1, "the host's main() ran %d times", mains);
    ck_assert_str_eq(out, "ok 328350\n"); /* the sum of i*i for i < 100 */
}
END_TEST

START_TEST(test_dlopen_host_program_refused)
{
    char out[256];
    int mains;
    run_host("program", out, sizeof(out), &mains);
    ck_assert_msg(mains == 1, "the host's main() ran %d times", mains);
    ck_assert_str_eq(out, "pool CF_ENOTSUP\n");
}
END_TEST

/* ---- a Python host ---- */

START_TEST(test_python_ctypes_host)
{
#ifdef UNDER_SANITIZER
    printf("python_ctypes_host: skipped: python3 cannot load a sanitizer-instrumented library\n");
#else
    if (access("/usr/bin/python3", X_OK) != 0) {
        printf("python_ctypes_host: skipped: no /usr/bin/python3 (CI installs it)\n");
        return;
    }
    char *argv[] = {"/usr/bin/python3", (char *)need_env("CF_TEST_START_PY"),
                    (char *)need_env("CF_TEST_LIBCFUTURES"),
                    (char *)need_env("CF_TEST_START_TASKS"), NULL};
    char out[512];
    int status = run(argv, out, sizeof(out));
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "python: status %#x, said %s",
                  status, out);
    ck_assert_str_eq(out, "ok 328350\n");
#endif
}
END_TEST

/* ---- the helper in a linked program ---- */

typedef struct task_library {
    void *handle;
    cf_bytes_fn square, read_init;
    int (*init)(const void *, size_t);
} task_library;

static task_library load_tasks(void)
{
    task_library t;
    t.handle = dlopen(need_env("CF_TEST_START_TASKS"), RTLD_NOW | RTLD_LOCAL);
    ck_assert_msg(t.handle, "dlopen: %s", dlerror());
    t.square = (cf_bytes_fn)dlsym(t.handle, "start_square");
    t.read_init = (cf_bytes_fn)dlsym(t.handle, "start_read_init");
    t.init = (int (*)(const void *, size_t))dlsym(t.handle, "start_init");
    ck_assert(t.square && t.read_init && t.init);
    return t;
}

static int square_of(cf_executor *ex, cf_bytes_fn fn, int x)
{
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, fn, &x, sizeof(x)), 0);
    int v = proc_util_int_result(f);
    cf_future_unref(f);
    return v;
}

static int main_program_square(const void *arg, size_t len, void **result, size_t *result_len)
{
    int x;
    memcpy(&x, arg, sizeof(x));
    (void)len;
    return proc_util_return_int(x * x, result, result_len);
}

static int main_program_init(const void *arg, size_t len)
{
    (void)arg, (void)len;
    return 0;
}

START_TEST(test_helper_runs_library_tasks)
{
    task_library t = load_tasks();
    int seven = 7;
    cf_process_pool_options o = {.max_workers = 2,
                                 .start_method = CF_PROCESS_START_HELPER,
                                 .initializer = t.init,
                                 .initializer_arg = &seven,
                                 .initializer_arg_len = sizeof(seven)};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    ck_assert_int_eq(square_of(ex, t.square, 12), 144);
    cf_future *f;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, t.read_init, "", 0), 0);
    ck_assert_int_eq(proc_util_int_result(f), 7);
    cf_future_unref(f);
    /* The helper runs its own main program, not ours. */
    f = (cf_future *)1;
    int x = 3;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, main_program_square, &x, sizeof(x)),
                     CF_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    /* An initializer of the main program cannot run there either. */
    o.initializer = main_program_init;
    ex = (cf_executor *)1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_ptr_null(ex);
    ck_assert(proc_util_wait_no_children(CF_TEST_LONG));
    dlclose(t.handle);
}
END_TEST

START_TEST(test_worker_program_option)
{
    task_library t = load_tasks();
    cf_process_pool_options o = {.start_method = CF_PROCESS_START_HELPER,
                                 .worker_program = need_env("CF_TEST_WORKER_PROGRAM")};
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    ck_assert_int_eq(square_of(ex, t.square, 5), 25);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    /* Not an executable file: an invalid option. */
    o.worker_program = "/nonexistent/cfutures-worker";
    ex = (cf_executor *)1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_ptr_null(ex);
    /* A program that exits without serving: the pool cannot start. */
    o.worker_program = "/bin/true";
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_ESYSTEM);
    ck_assert(proc_util_wait_no_children(CF_TEST_LONG));
    dlclose(t.handle);
}
END_TEST

START_TEST(test_helper_run_by_hand)
{
    /* Run by hand, the helper refuses and says what it is for. */
    char *argv[] = {(char *)need_env("CF_TEST_WORKER_PROGRAM"), NULL};
    char out[64];
    int status = run(argv, out, sizeof(out));
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    ck_assert_int_eq(cf_process_pool_serve(1, argv), CF_EINVAL);
    ck_assert_int_eq(cf_process_pool_serve(0, NULL), CF_EINVAL);
}
END_TEST

/* ---- the default in a linked program; bad values ---- */

START_TEST(test_default_in_linked_program)
{
    /* The library is linked into this program: the default re-executes it, so a function of
     * the main program runs (the helper would refuse it). */
    cf_executor *ex;
    ck_assert_int_eq(cf_process_pool_new(&ex, NULL), 0);
    ck_assert_int_eq(square_of(ex, main_program_square, 9), 81);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_process_pool_options o = {.start_method = CF_PROCESS_START_PROGRAM};
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    ck_assert_int_eq(square_of(ex, main_program_square, 4), 16);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    o.start_method = (cf_process_start)4;
    ex = (cf_executor *)1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
    ck_assert_ptr_null(ex);
    o.start_method = (cf_process_start)-1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EINVAL);
}
END_TEST

/* ---- fork ---- */

static int set_by_main;

static int read_set_by_main(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg, (void)len;
    return proc_util_return_int(set_by_main, result, result_len);
}

static int int_result(cf_future *f)
{
    const void *data;
    size_t len;
    int v;
    if (cf_future_result_bytes(&data, &len, f, CF_TEST_LONG) != 0 || len != sizeof(v))
        return -1;
    memcpy(&v, data, sizeof(v));
    return v;
}

/* Runs in a fresh, single-threaded process (no Check runner: no ck_ calls). Workers are forks of
 * the program as it was when the pool was created: they see what main() set before, and not
 * what it set after. */
static int fork_scenario(void)
{
    set_by_main = 42;
    cf_executor *ex;
    cf_process_pool_options o = {.max_workers = 2, .start_method = CF_PROCESS_START_FORK};
    int rc = cf_process_pool_new(&ex, &o);
    if (rc) {
        fprintf(stderr, "fork pool: %s\n", cf_err_name(rc));
        return 1;
    }
    set_by_main = 43;
    cf_future *f;
    if (cf_executor_submit_bytes(&f, ex, read_set_by_main, "", 0) != 0 || int_result(f) != 42)
        return 2;
    cf_future_unref(f);
    int x = 6;
    if (cf_executor_submit_bytes(&f, ex, main_program_square, &x, sizeof(x)) != 0 ||
        int_result(f) != 36)
        return 3;
    cf_future_unref(f);
    /* A library the program loads after the pool was created: the worker loads it too. */
    void *tasks = dlopen(getenv("CF_TEST_START_TASKS"), RTLD_NOW | RTLD_LOCAL);
    cf_bytes_fn square = tasks ? (cf_bytes_fn)dlsym(tasks, "start_square") : NULL;
    if (!square || cf_executor_submit_bytes(&f, ex, square, &x, sizeof(x)) != 0 ||
        int_result(f) != 36)
        return 4;
    cf_future_unref(f);
    return cf_executor_free(ex) == 0 ? 0 : 5;
}

START_TEST(test_fork_in_single_threaded_program)
{
    int status = proc_util_run_scenario("fork", NULL, false);
    proc_util_assert_scenario(status, "fork");
}
END_TEST

static void *wait_for_event(void *arg)
{
    cf_test_event_wait(arg, CF_TEST_LONG);
    return NULL;
}

START_TEST(test_fork_refused_among_threads)
{
    cf_test_event release;
    cf_test_event_init(&release);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, wait_for_event, &release), 0);
    cf_process_pool_options o = {.max_workers = 1, .start_method = CF_PROCESS_START_FORK};
    cf_executor *ex = (cf_executor *)1;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), CF_EDEADLK);
    ck_assert_ptr_null(ex);
    /* Forced: the other thread holds no lock the workers need (it waits for the event). */
    o.fork_with_threads = true;
    ck_assert_int_eq(cf_process_pool_new(&ex, &o), 0);
    ck_assert_int_eq(square_of(ex, main_program_square, 11), 121);
    ck_assert_int_eq(cf_executor_free(ex), 0);
    cf_test_event_set(&release);
    pthread_join(t, NULL);
    cf_test_event_destroy(&release);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("process_start");
    TCase *tc = cf_test_tcase("hosts");
    tcase_add_test(tc, test_dlopen_host_default);
    tcase_add_test(tc, test_dlopen_host_program_refused);
    tcase_add_test(tc, test_python_ctypes_host);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("methods");
    tcase_add_test(tc, test_helper_runs_library_tasks);
    tcase_add_test(tc, test_worker_program_option);
    tcase_add_test(tc, test_helper_run_by_hand);
    tcase_add_test(tc, test_default_in_linked_program);
    tcase_add_test(tc, test_fork_in_single_threaded_program);
    tcase_add_test(tc, test_fork_refused_among_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *scenario = getenv("CF_TEST_SCENARIO");
    if (scenario) {
        proc_util_scenario_begin();
        return strcmp(scenario, "fork") == 0 ? fork_scenario() : 100;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
