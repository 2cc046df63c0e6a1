/* A tiny HTTP/1.1 server written as straight-line coroutines on one loop thread, with blocking
 * work on a thread pool and CPU work on a process pool: what cf_loop is for.
 *
 *     build/examples/http_server [--port N] [--threads N] [--processes N]
 *
 * Routes (GET or POST; a request body is read and counted, then dropped):
 *     /                 "hello"
 *     /offload?us=N     sleeps N microseconds (default 50) on the thread pool, then replies
 *     /cpu?n=N          counts the primes below N (default 100000) on the process pool
 *     /stats            requests answered, requests in progress (this one excluded), connections
 * Keep-alive and pipelining as HTTP/1.1 says; every response echoes the request's X-Request-Id
 * header, and a request with a body gets an X-Body-Bytes header with the body's length.
 *
 * It prints "listening on http://127.0.0.1:PORT" once ready (--port 0, the default, picks a free
 * port). SIGINT or SIGTERM stops it gracefully: it stops accepting, closes idle connections,
 * lets every request in progress finish (its response says "Connection: close"), waits up to
 * 10 seconds for that, then prints "stopped: R requests on C connections" and exits with 0.
 *
 * One task accepts; one task per connection reads requests, answers them in order, and writes
 * the answers of a batch of pipelined requests with one send. Nothing here blocks the loop: the
 * sockets are non-blocking and every wait is a cf_sock_* call or a cf_await. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cfutures.h>

enum {
    IN_CAP = 16384,  /* a request head must fit in this */
    OUT_CAP = 16384, /* answers buffered before a send (one batch of pipelined requests) */
};

#define KEEPALIVE_TIMEOUT 30.0 /* seconds an idle connection stays open */
#define REQUEST_TIMEOUT   10.0 /* seconds to finish sending a started request */
#define SEND_TIMEOUT      10.0
#define GRACE_TIMEOUT     10.0 /* seconds requests in progress get to finish on shutdown */
#define LINGER_TIMEOUT    2.0  /* seconds to wait for a client to close after our last answer */
#define LINGER_BYTES      (1u << 20)

typedef struct conn conn;

typedef struct server {
    cf_loop *loop;
    cf_executor *threads, *processes;
    int lfd;
    cf_future *main_task;
    cf_future *drained; /* completed when the last connection closes during shutdown */
    conn *conns;        /* open connections */
    size_t nconns;
    bool stopping;
    unsigned long long requests, connections;
    unsigned active; /* requests being handled */
} server;

struct conn {
    server *srv;
    int fd;
    cf_future *task;
    conn *prev, *next;
    bool idle; /* waiting for the first byte of a request: may be closed on shutdown */
    size_t in_len, out_len;
    char in[IN_CAP];
    char out[OUT_CAP];
};

typedef struct request {
    bool post, keep_alive;
    char path[256];
    size_t content_length;
    char id[64];
} request;

/* ---- work for the pools ---- */

/* A blocking call (thread pool): sleeps `us` microseconds. */
static int blocking_sleep(void *arg, void **result)
{
    long us = (long)(intptr_t)arg;
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    *result = NULL;
    return 0;
}

/* CPU work (process pool): the number of primes below the unsigned long it is given. */
static int count_primes(const void *arg, size_t len, void **result, size_t *result_len)
{
    unsigned long n;
    if (len != sizeof(n))
        return CF_EINVAL;
    memcpy(&n, arg, sizeof(n));
    unsigned long count = 0;
    for (unsigned long k = 2; k < n; k++) {
        bool prime = true;
        for (unsigned long d = 2; d * d <= k && prime; d++)
            prime = k % d != 0;
        count += prime;
    }
    unsigned long *out = malloc(sizeof(*out));
    if (!out)
        return CF_ENOMEM;
    *out = count;
    *result = out;
    *result_len = sizeof(*out);
    return 0;
}

/* ---- HTTP ---- */

static const char *find_head_end(const char *p, size_t len)
{
    const char *end = memmem(p, len, "\r\n\r\n", 4);
    return end ? end + 4 : NULL;
}

/* Whether the header line `line` (`len` bytes) is `name` (lower case, `n` bytes); its value then
 * goes to *value. */
static bool header_is(const char *line, size_t len, const char *name, size_t n, const char **value)
{
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return false;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    *value = v;
    return true;
}

#define HEADER_IS(line, len, name, value) header_is(line, len, name, sizeof(name) - 1, value)

/* Parses the head at `p` (complete: it ends with an empty line). Returns 0, or the status of the
 * error response (400, 501). */
static int parse_head(request *req, const char *p, const char *end)
{
    *req = (request){0};
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || (size_t)(sp2 - sp1 - 1) >= sizeof(req->path) || eol - sp2 - 1 != 8)
        return 400;
    if (sp1 - p == 4 && memcmp(p, "POST", 4) == 0)
        req->post = true;
    else if (sp1 - p != 3 || memcmp(p, "GET", 3) != 0)
        return 501;
    memcpy(req->path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
    if (memcmp(sp2 + 1, "HTTP/1.1", 8) == 0)
        req->keep_alive = true;
    else if (memcmp(sp2 + 1, "HTTP/1.0", 8) != 0)
        return 400;
    for (const char *line = eol + 2; line < end - 2;) {
        const char *next = memchr(line, '\r', (size_t)(end - line));
        size_t len = (size_t)(next - line);
        const char *v;
        char first = (char)(*line | 0x20); /* the headers we read start with c, x or t */
        if (first != 'c' && first != 'x' && first != 't') {
            line = next + 2;
            continue;
        }
        if (HEADER_IS(line, len, "content-length", &v)) {
            char *stop;
            errno = 0;
            unsigned long long cl = strtoull(v, &stop, 10);
            if (stop == v || errno || (*stop != '\r' && *stop != ' '))
                return 400;
            req->content_length = (size_t)cl;
        } else if (HEADER_IS(line, len, "connection", &v)) {
            if (strncasecmp(v, "close", 5) == 0)
                req->keep_alive = false;
            else if (strncasecmp(v, "keep-alive", 10) == 0)
                req->keep_alive = true;
        } else if (HEADER_IS(line, len, "x-request-id", &v)) {
            size_t n = (size_t)(next - v);
            if (n >= sizeof(req->id))
                return 400;
            memcpy(req->id, v, n);
        } else if (HEADER_IS(line, len, "transfer-encoding", &v)) {
            return 501;
        }
        line = next + 2;
    }
    return 0;
}

static unsigned long query_number(const char *path, const char *key, unsigned long fallback)
{
    const char *q = strchr(path, '?');
    size_t n = strlen(key);
    for (; q; q = strchr(q + 1, '&'))
        if (strncmp(q + 1, key, n) == 0 && q[1 + n] == '=')
            return strtoul(q + 2 + n, NULL, 10);
    return fallback;
}

static bool route_is(const char *path, const char *route)
{
    size_t n = strlen(route);
    return strncmp(path, route, n) == 0 && (path[n] == '\0' || path[n] == '?');
}

/* Appends a response to the connection's output. */
static void respond(conn *c, const request *req, int status, const char *body, size_t body_len,
                    bool closing)
{
    static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 5\r\n\r\nhello";
    if (status == 200 && !req->id[0] && !req->content_length && !closing && body_len == 5 &&
        memcmp(body, "hello", 5) == 0 && c->out_len + sizeof(hello) - 1 <= OUT_CAP) {
        memcpy(c->out + c->out_len, hello, sizeof(hello) - 1); /* the hot path: no formatting */
        c->out_len += sizeof(hello) - 1;
        return;
    }
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 400 ? "Bad Request"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 501 ? "Not Implemented"
                                         : "Service Unavailable";
    char extra[160] = "";
    int e = 0;
    if (req->id[0])
        e += snprintf(extra + e, sizeof(extra) - (size_t)e, "X-Request-Id: %s\r\n", req->id);
    if (req->content_length)
        e += snprintf(extra + e, sizeof(extra) - (size_t)e, "X-Body-Bytes: %zu\r\n",
                      req->content_length);
    int n = snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "%s%s\r\n%.*s",
                     status, reason, body_len, extra, closing ? "Connection: close\r\n" : "",
                     (int)body_len, body);
    c->out_len += (size_t)n; /* the caller flushed first if this might not fit */
}

/* Runs the request's route; may await the pools. Returns the status. */
static int handle(conn *c, const request *req, char *body, size_t cap, size_t *body_len)
{
    server *srv = c->srv;
    if (route_is(req->path, "/")) {
        memcpy(body, "hello", 5);
        *body_len = 5;
        return 200;
    }
    if (route_is(req->path, "/stats")) {
        *body_len = (size_t)snprintf(body, cap, "requests %llu active %u connections %zu",
                                     srv->requests, srv->active - 1, srv->nconns);
        return 200;
    }
    cf_future *f;
    if (route_is(req->path, "/offload")) {
        unsigned long us = query_number(req->path, "us", 50);
        if (cf_loop_run_in_executor(&f, srv->loop, srv->threads, blocking_sleep,
                                    (void *)(intptr_t)us) != 0)
            return 503;
        int rc = cf_await(NULL, f);
        cf_future_unref(f);
        *body_len = (size_t)snprintf(body, cap, "slept %lu us", us);
        return rc ? 503 : 200;
    }
    if (route_is(req->path, "/cpu")) {
        unsigned long n = query_number(req->path, "n", 100000);
        if (cf_loop_run_in_executor_bytes(&f, srv->loop, srv->processes, count_primes, &n,
                                          sizeof(n)) != 0)
            return 503;
        int rc = cf_await(NULL, f);
        const void *data = NULL;
        size_t len = 0;
        if (rc == 0)
            rc = cf_future_result_bytes(&data, &len, f, 0);
        unsigned long count = 0;
        if (rc == 0 && len == sizeof(count))
            memcpy(&count, data, sizeof(count));
        cf_future_unref(f);
        *body_len = (size_t)snprintf(body, cap, "primes below %lu: %lu", n, count);
        return rc ? 503 : 200;
    }
    *body_len = (size_t)snprintf(body, cap, "not found");
    return 404;
}

/* ---- connections ---- */

static int flush(conn *c)
{
    int rc = cf_sock_sendall(NULL, c->fd, c->out, c->out_len, SEND_TIMEOUT);
    c->out_len = 0;
    return rc;
}

static void consume(conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Reads more of the request into the input buffer. Returns 0, or non-zero when the connection
 * must close (timeout, error, end of file, cancelled). */
static int read_more(conn *c, double timeout)
{
    size_t n;
    int rc = cf_sock_recv_into(&n, c->fd, c->in + c->in_len, IN_CAP - c->in_len, timeout);
    if (rc == 0 && n == 0)
        rc = CF_ECONNRESET; /* the peer closed */
    c->in_len += n;
    return rc;
}

/* Reads and drops the rest of a body of `left` bytes. */
static int skip_body(conn *c, size_t left)
{
    for (;;) {
        size_t take = c->in_len < left ? c->in_len : left;
        consume(c, take);
        left -= take;
        if (left == 0)
            return 0;
        int rc = read_more(c, REQUEST_TIMEOUT);
        if (rc)
            return rc;
    }
}

/* Answers every complete request in the input buffer. Returns 0 to go on reading, 1 when the
 * connection should close after the answers are sent, or an error. */
static int serve_buffered(conn *c)
{
    server *srv = c->srv;
    for (;;) {
        const char *end = find_head_end(c->in, c->in_len);
        if (!end)
            return c->in_len == IN_CAP ? 431 : 0;
        request req;
        int status = parse_head(&req, c->in, end);
        if (status)
            return status;
        consume(c, (size_t)(end - c->in));
        int rc = skip_body(c, req.content_length);
        if (rc)
            return rc;
        char body[128];
        size_t body_len = 0;
        srv->active++;
        status = handle(c, &req, body, sizeof(body), &body_len);
        srv->active--;
        srv->requests++;
        bool closing = !req.keep_alive || srv->stopping;
        if (c->out_len + 512 > OUT_CAP && (rc = flush(c)) != 0)
            return rc;
        respond(c, &req, status, body, body_len, closing);
        if (closing)
            return 1;
    }
}

static void conn_close(conn *c)
{
    server *srv = c->srv;
    cf_loop_forget_fd(srv->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    cf_future_unref(c->task); /* the loop keeps the task alive until it returns */
    free(c);
    if (--srv->nconns == 0 && srv->drained)
        cf_future_set_result(srv->drained, NULL, NULL);
}

/* Closing with unread input makes the kernel send a reset, which can destroy the answer before
 * the client reads it: so after an answer that ends the connection, stop sending, then read
 * and drop what the client still sends, for a little while, until it closes its side. */
static void linger(conn *c)
{
    shutdown(c->fd, SHUT_WR);
    double end = cf_loop_time(c->srv->loop) + LINGER_TIMEOUT;
    size_t n = 1, total = 0;
    while (n > 0 && total < LINGER_BYTES) {
        double left = end - cf_loop_time(c->srv->loop);
        if (left <= 0 || cf_sock_recv_into(&n, c->fd, c->in, IN_CAP, left) != 0)
            break;
        total += n;
    }
}

static int conn_main(void *arg, void **result)
{
    (void)result;
    conn *c = arg;
    for (;;) {
        int rc = serve_buffered(c);
        if (rc > 1) { /* an HTTP error: say so, then close */
            request none = {0};
            respond(c, &none, rc, "bad request", 11, true);
        }
        if (c->out_len && flush(c) != 0)
            break;
        if (rc > 0)
            linger(c);
        if (rc != 0)
            break;
        c->idle = c->in_len == 0;
        if (c->idle && c->srv->stopping)
            break;
        rc = read_more(c, c->idle ? KEEPALIVE_TIMEOUT : REQUEST_TIMEOUT);
        c->idle = false;
        if (rc)
            break;
    }
    conn_close(c);
    return 0;
}

static int start_conn(server *srv, int fd)
{
    conn *c = malloc(sizeof(*c));
    if (!c)
        return CF_ENOMEM;
    c->srv = srv;
    c->fd = fd;
    c->idle = false;
    c->in_len = c->out_len = 0;
    int rc = cf_loop_create_task(&c->task, srv->loop, conn_main, c, NULL);
    if (rc) {
        free(c);
        return rc;
    }
    c->prev = NULL;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->connections++;
    return 0;
}

/* ---- the main task: accept until stopped, then drain ---- */

static void cancel_idle(server *srv, bool all)
{
    for (conn *c = srv->conns; c; c = c->next)
        if (all || c->idle)
            cf_future_cancel(c->task);
}

static int main_task(void *arg, void **result)
{
    (void)result;
    server *srv = arg;
    while (!srv->stopping) {
        int fd;
        int rc = cf_sock_accept(&fd, srv->lfd, NULL, NULL, CF_FOREVER);
        if (rc == 0) {
            if (start_conn(srv, fd) != 0)
                close(fd);
        } else if (rc == CF_EMFILE || rc == CF_ENOMEM) {
            cf_sleep(0.1); /* out of descriptors: let connections close */
        } else if (rc != CF_ECANCELLED) {
            fprintf(stderr, "accept: %s\n", cf_strerror(rc));
            break;
        }
    }
    /* Shutdown: no new connections; idle ones close now, busy ones after their request, and
     * after the grace period every one that is left. */
    cf_loop_forget_fd(srv->loop, srv->lfd);
    close(srv->lfd);
    srv->stopping = true;
    cancel_idle(srv, false);
    while (srv->nconns) {
        cf_loop_create_future(&srv->drained, srv->loop);
        int rc = cf_wait_for(NULL, srv->drained, GRACE_TIMEOUT);
        cf_future_unref(srv->drained);
        srv->drained = NULL;
        if (rc != 0) /* the grace period is over, or a second signal came */
            cancel_idle(srv, true);
    }
    return 0;
}

static void on_stop_signal(cf_loop *loop, int signum, void *data)
{
    (void)loop, (void)signum;
    server *srv = data;
    /* The first signal interrupts the accept; the main task then drains the connections. A
     * second one cuts that short (the main task is then waiting for the drain). */
    if (!srv->stopping)
        srv->stopping = true;
    else
        cancel_idle(srv, true);
    cf_future_cancel(srv->main_task);
}

/* ---- setup ---- */

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    return ntohs(addr.sin_port);
}

static int check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "http_server: %s: %s\n", what, cf_strerror(rc));
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv)
{
    int port = 0;
    unsigned threads = 8, processes = 2;
    static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"processes", required_argument, NULL, 'P'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "p:t:P:", opts, NULL)) != -1) {
        if (o == 'p')
            port = atoi(optarg);
        else if (o == 't')
            threads = (unsigned)atoi(optarg);
        else if (o == 'P')
            processes = (unsigned)atoi(optarg);
        else
            return 2;
    }
    server srv = {0};
    check(cf_loop_new(&srv.loop, NULL), "loop");
    /* Signals first: the pools' threads, started later, inherit the blocked mask, so the signals
     * can only reach the loop's signalfd. */
    check(cf_loop_add_signal_handler(srv.loop, SIGINT, on_stop_signal, &srv), "SIGINT");
    check(cf_loop_add_signal_handler(srv.loop, SIGTERM, on_stop_signal, &srv), "SIGTERM");
    cf_thread_pool_options to = {.max_workers = threads, .thread_name_prefix = "http-io"};
    check(cf_thread_pool_new(&srv.threads, &to), "thread pool");
    cf_process_pool_options po = {.max_workers = processes};
    check(cf_process_pool_new(&srv.processes, &po), "process pool");
    srv.lfd = listen_on(port);
    if (srv.lfd < 0) {
        perror("http_server: listen");
        return 1;
    }
    printf("listening on http://127.0.0.1:%d\n", bound_port(srv.lfd));
    fflush(stdout);
    check(cf_loop_create_task(&srv.main_task, srv.loop, main_task, &srv, NULL), "task");
    check(cf_loop_run_until_complete(NULL, srv.loop, srv.main_task), "run");
    cf_future_unref(srv.main_task);
    cf_executor_free(srv.threads);
    cf_executor_free(srv.processes);
    cf_loop_free(srv.loop);
    printf("stopped: %llu requests on %llu connections\n", srv.requests, srv.connections);
    return 0;
}
