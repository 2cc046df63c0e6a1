/* The example server (examples/http_server.c) under real clients: the asyncio client script
 * (tests/loop/http_client.py: concurrency, pipelining, slow and vanishing clients, large and bad
 * requests, exactly-once answers, descriptors back to their baseline), wrk for load, and a
 * graceful stop on SIGTERM and on SIGINT with requests in progress.
 *
 * meson passes the programs in the environment: CF_HTTP_SERVER, CF_HTTP_CLIENT, CF_PYTHON and
 * CF_WRK (empty when wrk is not installed: that case is then skipped, and says so). Under
 * valgrind (CF_TEST_UNDER_VALGRIND) the server itself runs under memcheck, which must report
 * nothing, and the clients' timeouts are scaled up. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"

static bool under_valgrind(void)
{
    const char *v = getenv("CF_TEST_UNDER_VALGRIND");
    return v && *v && strcmp(v, "0") != 0;
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    ck_assert_msg(v != NULL, "%s is not set (run this test through meson test)", name);
    return v;
}

typedef struct server {
    pid_t pid;
    int port;
    int out; /* the server's stdout */
} server;

static void start_server(server *s)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    const char *path = env("CF_HTTP_SERVER");
    char supp[4096];
    snprintf(supp, sizeof(supp), "--suppressions=%s/.ci/valgrind.supp", env("CF_SOURCE_ROOT"));
    s->pid = fork();
    ck_assert_int_ge(s->pid, 0);
    if (s->pid == 0) {
        dup2(p[1], 1);
        if (under_valgrind())
            execlp("valgrind", "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite,indirect",
                   "--show-leak-kinds=definite,indirect", supp, path, "--port", "0", (char *)NULL);
        else
            execl(path, path, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    s->out = p[0];
    /* "listening on http://127.0.0.1:PORT\n" */
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd pfd = {.fd = s->out, .events = POLLIN};
        ck_assert_msg(poll(&pfd, 1, (int)(CF_TEST_LONG * 1000 * (under_valgrind() ? 5 : 1))) == 1,
                      "the server did not start");
        ssize_t n = read(s->out, line + len, 1);
        ck_assert_msg(n == 1, "the server exited before listening");
        len++;
    }
    line[len] = '\0';
    const char *colon = strrchr(line, ':');
    ck_assert_ptr_nonnull(colon);
    s->port = atoi(colon + 1);
    ck_assert_int_gt(s->port, 0);
}

/* Waits for a child up to `seconds`; returns its wait status (kills it on timeout and fails). */
static int wait_child(pid_t pid, double seconds, const char *what)
{
    double end = cf_test_monotonic() + seconds;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        ck_assert_int_ge(r, 0);
        if (r == pid)
            return status;
        if (cf_test_monotonic() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            ck_abort_msg("%s did not finish within %.0f s", what, seconds);
        }
        usleep(10000);
    }
}

/* Reads what the server printed since it started listening. */
static void read_rest(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

/* Stops the server with `signum` (unless it is already stopping) and checks it left cleanly.
 * Returns the number of requests it says it served. */
static unsigned long long stop_server(server *s, int signum)
{
    if (signum)
        kill(s->pid, signum);
    int status = wait_child(s->pid, CF_TEST_LONG * (under_valgrind() ? 10 : 1), "the server");
    char out[4096];
    read_rest(s->out, out, sizeof(out));
    close(s->out);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the server ended with status %#x (99: valgrind found errors); it printed: %s",
                  status, out);
    unsigned long long requests = 0, connections = 0;
    const char *stopped = strstr(out, "stopped: ");
    ck_assert_msg(stopped && sscanf(stopped, "stopped: %llu requests on %llu connections",
                                    &requests, &connections) == 2,
                  "no summary from the server: %s", out);
    return requests;
}

/* Runs a program with arguments, returns its exit status; its output goes to `out` if given. */
static int run(char *out, size_t cap, double seconds, const char *const *argv)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (out)
            dup2(p[1], 1);
        /* The client's deadlines are hang detectors: stretch them where the server runs
         * many times slower (a loaded CI machine under TSan took over 10 s to settle). */
        if (under_valgrind())
            setenv("CF_TEST_SCALE", "20", 1);
#ifdef CF_TEST_TSAN
        else
            setenv("CF_TEST_SCALE", "4", 1);
#endif
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    if (out)
        read_rest(p[0], out, cap);
    close(p[0]);
    int status = wait_child(pid, seconds, argv[0]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run_client(server *s, const char *mode, const char *signame)
{
    char port[16], pid[16];
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(pid, sizeof(pid), "%d", (int)s->pid);
    const char *argv[] = {env("CF_PYTHON"), env("CF_HTTP_CLIENT"), mode, port, pid, signame, NULL};
    return run(NULL, 0, CF_TEST_LONG * (under_valgrind() ? 20 : 3), argv);
}

START_TEST(test_asyncio_clients)
{
    server s;
    start_server(&s);
    ck_assert_int_eq(run_client(&s, "check", NULL), 0);
    /* The script counted about 2,500 answers; warm-up requests and vanished clients add more. */
    ck_assert_uint_ge(stop_server(&s, SIGTERM), 2000);
}
END_TEST

START_TEST(test_graceful_stop_sigterm)
{
    server s;
    start_server(&s);
    ck_assert_int_eq(run_client(&s, "stop", "TERM"), 0);
    ck_assert_uint_ge(stop_server(&s, 0), 5);
}
END_TEST

START_TEST(test_graceful_stop_sigint)
{
    server s;
    start_server(&s);
    ck_assert_int_eq(run_client(&s, "stop", "INT"), 0);
    ck_assert_uint_ge(stop_server(&s, 0), 5);
}
END_TEST

/* wrk's summary: the requests it completed, and no socket error or non-2xx answer. */
static unsigned long long wrk_requests(const char *out)
{
    unsigned long long n = 0;
    const char *p = strstr(out, " requests in ");
    ck_assert_msg(p != NULL, "unexpected wrk output: %s", out);
    while (p > out && p[-1] >= '0' && p[-1] <= '9')
        p--;
    sscanf(p, "%llu", &n);
    ck_assert_msg(strstr(out, "Socket errors") == NULL, "wrk saw socket errors: %s", out);
    ck_assert_msg(strstr(out, "Non-2xx") == NULL, "wrk saw error answers: %s", out);
    return n;
}

START_TEST(test_wrk)
{
    const char *wrk = env("CF_WRK");
    if (!*wrk) {
        printf("test_wrk: skipped, wrk is not installed (apt-get install wrk)\n");
        return;
    }
    server s;
    start_server(&s);
    char url[64], out[8192];
    /* One second per route keeps the test short; valgrind's slower server just answers fewer
     * requests, with wrk's per-request timeout raised so that none counts as an error. */
    unsigned long long total = 0;
    const char *routes[] = {"/", "/offload?us=100"};
    for (int i = 0; i < 2; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s.port, routes[i]);
        const char *argv[] = {wrk, "-t1", "-c20", "-d1s", "--timeout", "20s", url, NULL};
        ck_assert_int_eq(run(out, sizeof(out), CF_TEST_LONG * 3, argv), 0);
        unsigned long long n = wrk_requests(out);
        ck_assert_uint_gt(n, 0);
        total += n;
    }
    /* wrk drops the answers still in flight when its time is up, never the other way round. */
    ck_assert_uint_ge(stop_server(&s, SIGINT), total);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("http_server");
    TCase *tc = cf_test_tcase("clients");
    tcase_add_test(tc, test_asyncio_clients);
    tcase_add_test(tc, test_graceful_stop_sigterm);
    tcase_add_test(tc, test_graceful_stop_sigint);
    tcase_add_test(tc, test_wrk);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
