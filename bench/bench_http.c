/* The HTTP workloads' driver (bench_http.h): a server child, wrk, and the server's CPU time. */
#include "bench_http.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"

#define FAIL(what, ...)                                                                            \
    do {                                                                                           \
        char detail_[512];                                                                         \
        snprintf(detail_, sizeof(detail_), __VA_ARGS__);                                           \
        bench_fail(__FILE__, __LINE__, what, detail_);                                             \
    } while (0)

/* Starts `argv` with its stdout on a pipe; returns its pid, and its stdout in *out. */
static pid_t spawn(char *const *argv, int *out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        FAIL("pipe2", "%s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork", "%s", strerror(errno));
    if (pid == 0) {
        dup2(p[1], 1);
        execvp(argv[0], argv);
        fprintf(stderr, "bench_http: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

/* Reads up to the end of the stream (or `cap` - 1 bytes) into buf, NUL-terminated. */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    while (len < cap - 1 && ((n = read(fd, buf + len, cap - 1 - len)) > 0 || errno == EINTR))
        if (n > 0)
            len += (size_t)n;
    buf[len] = '\0';
}

/* Reads the server's "listening on http://HOST:PORT" line; returns the port. */
static int read_port(int fd, const char *prog)
{
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20000) != 1 || read(fd, line + len, 1) != 1)
            FAIL("server start", "%s printed no listening line", prog);
        len++;
    }
    line[len] = '\0';
    const char *colon = strrchr(line, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (port <= 0)
        FAIL("server start", "%s printed '%s'", prog, line);
    return port;
}

/* utime + stime of a process, in seconds. */
static double process_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL("open", "%s: %s", path, strerror(errno));
    read_all(fd, buf, sizeof(buf));
    close(fd);
    /* Fields after the command name (which may hold spaces), from field 3 on. */
    const char *p = strrchr(buf, ')');
    unsigned long long utime = 0, stime = 0;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        FAIL("/proc/PID/stat", "cannot parse '%.80s'", buf);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* A wrk latency such as "812.00us", "1.23ms" or "2.01s", in microseconds. */
static double latency_us(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (strncmp(end, "us", 2) == 0)
        return v;
    if (strncmp(end, "ms", 2) == 0)
        return v * 1e3;
    if (*end == 's')
        return v * 1e6;
    return v;
}

static double field_after(const char *out, const char *key)
{
    const char *p = strstr(out, key);
    return p ? strtod(p + strlen(key), NULL) : 0;
}

static void run_wrk(bench_http_result *r, int port, const char *path, double seconds,
                    unsigned connections)
{
    char url[128], dur[32], conns[32];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    snprintf(dur, sizeof(dur), "%gs", seconds);
    snprintf(conns, sizeof(conns), "-c%u", connections);
    char *argv[] = {"wrk", "-t1", conns, "-d", dur, "--latency", url, NULL};
    int fd;
    pid_t pid = spawn(argv, &fd);
    char out[8192];
    read_all(fd, out, sizeof(out));
    close(fd);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("wrk", "status %#x (is the wrk package installed?): %.300s", status, out);
    const char *req = strstr(out, " requests in ");
    if (!req)
        FAIL("wrk", "unexpected output: %.300s", out);
    const char *num = req;
    while (num > out && num[-1] >= '0' && num[-1] <= '9')
        num--;
    r->requests = strtod(num, NULL);
    r->seconds = strtod(req + strlen(" requests in "), NULL);
    r->rps = field_after(out, "Requests/sec:");
    const char *p50 = strstr(out, " 50% "), *p99 = strstr(out, " 99% ");
    r->p50_us = p50 ? latency_us(p50 + 5 + strspn(p50 + 5, " ")) : 0;
    r->p99_us = p99 ? latency_us(p99 + 5 + strspn(p99 + 5, " ")) : 0;
    r->errors = 0;
    const char *se = strstr(out, "Socket errors:");
    if (se) {
        unsigned long c = 0, rd = 0, w = 0, t = 0;
        sscanf(se, "Socket errors: connect %lu, read %lu, write %lu, timeout %lu", &c, &rd, &w, &t);
        r->errors += (double)(c + rd + w + t);
    }
    r->errors += field_after(out, "Non-2xx or 3xx responses:");
}

void bench_http_load(bench_http_result *out, char *const *argv, const char *path, double seconds,
                     unsigned connections)
{
    int server_out;
    pid_t server = spawn(argv, &server_out);
    int port = read_port(server_out, argv[0]);
    bench_http_result warm;
    run_wrk(&warm, port, path, 1, connections);
    double cpu0 = process_cpu_s(server);
    run_wrk(out, port, path, seconds, connections);
    out->cpu_s = process_cpu_s(server) - cpu0;
    kill(server, SIGTERM);
    char rest[1024];
    read_all(server_out, rest, sizeof(rest));
    close(server_out);
    int status;
    while (waitpid(server, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("server", "%s ended with status %#x", argv[0], status);
}

void bench_http_report(const char *workload, const bench_http_result *r)
{
    double per = r->requests > 0 ? r->cpu_s * 1e9 / r->requests : 0;
    bench_report(workload, r->requests, r->seconds, per,
                 " rps=%.0f p50_us=%.1f p99_us=%.1f cpu_s=%.3f errors=%.0f", r->rps, r->p50_us,
                 r->p99_us, r->cpu_s, r->errors);
}
