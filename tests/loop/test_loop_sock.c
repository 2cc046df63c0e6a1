/* Socket coroutines (loop_io.h) over loopback TCP and Unix socket pairs: accept, connect, recv,
 * recv_into, sendall; their timeouts and cancellation losing no data; partial writes; errors as
 * negated errno values; forgetting a socket while a task waits on it; datagram sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cf_test_sync.h"

static cf_loop *new_loop(void)
{
    cf_loop *loop;
    ck_assert_int_eq(cf_loop_new(&loop, NULL), 0);
    return loop;
}

/* A non-blocking listening socket on 127.0.0.1 and an ephemeral port. */
static int listener(struct sockaddr_in *addr, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    *addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
    socklen_t len = sizeof(*addr);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    ck_assert_int_eq(listen(fd, backlog), 0);
    return fd;
}

static int tcp_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    return fd;
}

static void unix_pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static cf_future *spawn(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t;
    ck_assert_int_eq(cf_loop_create_task(&t, loop, fn, arg, NULL), 0);
    return t;
}

/* Runs the loop until the task is done; returns the task function's code. */
static int run_task(cf_loop *loop, cf_fn fn, void *arg)
{
    cf_future *t = spawn(loop, fn, arg);
    int rc = cf_loop_run_until_complete(NULL, loop, t);
    if (rc == CF_ETASK)
        cf_future_exception(&rc, NULL, t, 0);
    cf_future_unref(t);
    return rc;
}

static void run_once(cf_loop *loop)
{
    ck_assert_int_eq(cf_loop_stop(loop), 0);
    ck_assert_int_eq(cf_loop_run_forever(loop), 0);
}

/* ---- an echo exchange over TCP ---- */

typedef struct echo {
    int lfd;
    struct sockaddr_in addr;
    int rounds;
    int server_rc, client_rc;
    size_t echoed;
} echo;

static int echo_server(void *arg, void **result)
{
    (void)result;
    echo *e = arg;
    int c;
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    int rc = cf_sock_accept(&c, e->lfd, (struct sockaddr *)&peer, &plen, 10);
    if (rc)
        return e->server_rc = rc;
    ck_assert_int_eq(plen, sizeof(peer));
    ck_assert_int_eq(peer.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    int flags = fcntl(c, F_GETFL);
    ck_assert(flags & O_NONBLOCK);
    ck_assert(fcntl(c, F_GETFD) & FD_CLOEXEC);
    char buf[1000];
    for (;;) {
        size_t n;
        rc = cf_sock_recv_into(&n, c, buf, sizeof(buf), 10);
        if (rc || n == 0)
            break;
        size_t sent;
        if ((rc = cf_sock_sendall(&sent, c, buf, n, 10)) != 0)
            break;
        ck_assert_uint_eq(sent, n);
        e->echoed += n;
    }
    cf_loop_forget_fd(cf_loop_current(), c);
    close(c);
    return e->server_rc = rc;
}

static int echo_client(void *arg, void **result)
{
    (void)result;
    echo *e = arg;
    int fd = tcp_socket();
    int rc = cf_sock_connect(fd, (struct sockaddr *)&e->addr, sizeof(e->addr), 10);
    if (rc)
        return e->client_rc = rc;
    char msg[64], back[64];
    for (int i = 0; i < e->rounds && rc == 0; i++) {
        int len = snprintf(msg, sizeof(msg), "message %d", i);
        ck_assert_int_eq(cf_sock_sendall(NULL, fd, msg, (size_t)len, 10), 0);
        size_t got = 0;
        while (got < (size_t)len && rc == 0) {
            size_t n;
            rc = cf_sock_recv_into(&n, fd, back + got, sizeof(back) - got, 10);
            ck_assert(rc != 0 || n > 0);
            got += n;
        }
        ck_assert_int_eq(memcmp(msg, back, (size_t)len), 0);
    }
    cf_loop_forget_fd(cf_loop_current(), fd);
    close(fd);
    return e->client_rc = rc;
}

START_TEST(test_tcp_echo)
{
    cf_loop *loop = new_loop();
    echo e = {.rounds = 500};
    e.lfd = listener(&e.addr, 16);
    int fds = cf_test_count_fds();
    cf_future *fs[2] = {spawn(loop, echo_server, &e), spawn(loop, echo_client, &e)};
    cf_future *g;
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 2), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, g), 0);
    ck_assert_int_eq(e.server_rc, 0);
    ck_assert_int_eq(e.client_rc, 0);
    ck_assert_uint_gt(e.echoed, 500 * 9);
    cf_future_unref(g);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    ck_assert_int_eq(cf_test_count_fds(), fds);
    cf_loop_free(loop);
    close(e.lfd);
}
END_TEST

/* ---- recv: timeout and cancellation lose nothing ---- */

typedef struct recv_case {
    int fd;
    double timeout;
    int rc;
    size_t n;
    char buf[64];
    bool allocating;
    void *data;
} recv_case;

static int recv_task(void *arg, void **result)
{
    (void)result;
    recv_case *r = arg;
    if (r->allocating) {
        r->rc = cf_sock_recv(&r->data, &r->n, r->fd, 64, r->timeout);
        if (r->rc == 0 && r->n)
            memcpy(r->buf, r->data, r->n);
    } else {
        r->rc = cf_sock_recv_into(&r->n, r->fd, r->buf, sizeof(r->buf), r->timeout);
    }
    return r->rc;
}

START_TEST(test_recv_timeout_and_cancel_keep_data)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    recv_case r = {.fd = sv[0], .timeout = 0.05};
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ETIMEDOUT);
    ck_assert(cf_test_monotonic() - t0 >= 0.049);
    ck_assert_uint_eq(r.n, 0);
    /* Zero timeout: one attempt. */
    r = (recv_case){.fd = sv[0], .timeout = 0};
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ETIMEDOUT);
    /* Cancelled while waiting. */
    r = (recv_case){.fd = sv[0], .timeout = -1};
    cf_future *t = spawn(loop, recv_task, &r);
    run_once(loop);
    run_once(loop);
    ck_assert(!cf_future_done(t));
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    ck_assert_int_eq(r.rc, CF_ECANCELLED);
    cf_future_unref(t);
    /* Data sent since is all there for the next call. */
    ck_assert_int_eq(write(sv[1], "after", 5), 5);
    r = (recv_case){.fd = sv[0], .timeout = 1};
    ck_assert_int_eq(run_task(loop, recv_task, &r), 0);
    ck_assert_uint_eq(r.n, 5);
    ck_assert_int_eq(memcmp(r.buf, "after", 5), 0);
    /* The allocating form. */
    ck_assert_int_eq(write(sv[1], "abc", 3), 3);
    r = (recv_case){.fd = sv[0], .timeout = 1, .allocating = true};
    ck_assert_int_eq(run_task(loop, recv_task, &r), 0);
    ck_assert_uint_eq(r.n, 3);
    ck_assert_int_eq(memcmp(r.data, "abc", 3), 0);
    free(r.data);
    /* End of file. */
    close(sv[1]);
    r = (recv_case){.fd = sv[0], .timeout = 1, .allocating = true};
    ck_assert_int_eq(run_task(loop, recv_task, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_ptr_null(r.data);
    cf_loop_free(loop);
    close(sv[0]);
}
END_TEST

/* A cancellation that arrives in the same iteration as the data: the recv either returns the
 * data or is cancelled having read nothing; the data is never consumed and dropped. */
START_TEST(test_recv_cancel_racing_data)
{
    cf_loop *loop = new_loop();
    for (int round = 0; round < 50; round++) {
        int sv[2];
        unix_pair(sv);
        recv_case r = {.fd = sv[0], .timeout = -1};
        cf_future *t = spawn(loop, recv_task, &r);
        run_once(loop);
        ck_assert_int_eq(write(sv[1], "data", 4), 4);
        if (round % 2)
            run_once(loop); /* lets the event be seen first on odd rounds */
        cf_future_cancel(t);
        cf_loop_run_until_complete(NULL, loop, t);
        cf_future_unref(t);
        char rest[8];
        ssize_t left = read(sv[0], rest, sizeof(rest));
        if (r.rc == 0)
            ck_assert(r.n == 4 && left < 0);
        else
            ck_assert(r.rc == CF_ECANCELLED && left == 4);
        cf_loop_forget_fd(loop, sv[0]);
        close(sv[0]);
        close(sv[1]);
    }
    cf_loop_free(loop);
}
END_TEST

/* ---- sendall: partial writes, timeout and cancellation report what was sent ---- */

typedef struct send_case {
    int fd;
    const unsigned char *buf;
    size_t len;
    double timeout;
    int rc;
    size_t sent;
} send_case;

static int send_task(void *arg, void **result)
{
    (void)result;
    send_case *s = arg;
    s->rc = cf_sock_sendall(&s->sent, s->fd, s->buf, s->len, s->timeout);
    return s->rc;
}

static unsigned char *pattern(size_t len)
{
    unsigned char *b = malloc(len);
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)(i * 7 + i / 251);
    return b;
}

typedef struct drain {
    int fd;
    const unsigned char *expect;
    size_t got;
    size_t max;
    bool mismatch;
} drain;

/* Reads in small steps, yielding between them, so the sender sees a full buffer often. */
static int drain_task(void *arg, void **result)
{
    (void)result;
    drain *d = arg;
    unsigned char buf[3000];
    for (;;) {
        size_t n;
        int rc = cf_sock_recv_into(&n, d->fd, buf, sizeof(buf), 10);
        if (rc)
            return rc;
        if (n == 0)
            return 0;
        if (d->got + n > d->max || memcmp(buf, d->expect + d->got, n) != 0)
            d->mismatch = true;
        d->got += n;
        cf_sleep(0);
    }
}

START_TEST(test_sendall_continues_partial_writes)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    size_t len = 4u << 20;
    unsigned char *buf = pattern(len);
    send_case s = {.fd = sv[0], .buf = buf, .len = len, .timeout = 30};
    drain d = {.fd = sv[1], .expect = buf, .max = len};
    cf_future *fs[2] = {spawn(loop, send_task, &s), spawn(loop, drain_task, &d)};
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, fs[0]), 0);
    ck_assert_uint_eq(s.sent, len);
    shutdown(sv[0], SHUT_WR);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, fs[1]), 0);
    ck_assert_uint_eq(d.got, len);
    ck_assert(!d.mismatch);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    free(buf);
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

/* Reads everything the peer sent until end of file, checking it against the pattern. */
static size_t read_all(int fd, const unsigned char *expect, size_t max)
{
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    unsigned char buf[65536];
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        ck_assert_uint_le(got + (size_t)n, max);
        ck_assert_int_eq(memcmp(buf, expect + got, (size_t)n), 0);
        got += (size_t)n;
    }
    return got;
}

START_TEST(test_sendall_timeout_reports_sent)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    size_t len = 8u << 20; /* far more than the socket buffers hold */
    unsigned char *buf = pattern(len);
    send_case s = {.fd = sv[0], .buf = buf, .len = len, .timeout = 0.1};
    ck_assert_int_eq(run_task(loop, send_task, &s), CF_ETIMEDOUT);
    ck_assert_uint_gt(s.sent, 0);
    ck_assert_uint_lt(s.sent, len);
    cf_loop_forget_fd(loop, sv[0]);
    close(sv[0]);
    /* Exactly the reported bytes reached the peer. */
    ck_assert_uint_eq(read_all(sv[1], buf, len), s.sent);
    close(sv[1]);
    free(buf);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_sendall_cancel_reports_sent)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    size_t len = 8u << 20;
    unsigned char *buf = pattern(len);
    send_case s = {.fd = sv[0], .buf = buf, .len = len, .timeout = -1};
    cf_future *t = spawn(loop, send_task, &s);
    run_once(loop);
    run_once(loop);
    ck_assert(!cf_future_done(t));
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    ck_assert_int_eq(s.rc, CF_ECANCELLED);
    ck_assert_uint_gt(s.sent, 0);
    cf_future_unref(t);
    cf_loop_forget_fd(loop, sv[0]);
    close(sv[0]);
    ck_assert_uint_eq(read_all(sv[1], buf, len), s.sent);
    close(sv[1]);
    free(buf);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_send_errors_without_sigpipe)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    close(sv[1]);
    /* SIGPIPE would kill the test: the sends must say EPIPE instead. */
    signal(SIGPIPE, SIG_DFL);
    send_case s = {.fd = sv[0], .buf = (const unsigned char *)"x", .len = 1, .timeout = 1};
    ck_assert_int_eq(run_task(loop, send_task, &s), CF_EPIPE);
    ck_assert_uint_eq(s.sent, 0);
    s = (send_case){.fd = sv[0], .len = 0, .timeout = 1};
    ck_assert_int_eq(run_task(loop, send_task, &s), 0); /* nothing to send */
    cf_loop_free(loop);
    close(sv[0]);
}
END_TEST

/* ---- connect and accept ---- */

typedef struct connect_case {
    struct sockaddr_in addr;
    int fd;
    double timeout;
    int rc;
} connect_case;

static int connect_task(void *arg, void **result)
{
    (void)result;
    connect_case *c = arg;
    c->rc = cf_sock_connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr), c->timeout);
    return c->rc;
}

START_TEST(test_connect_refused)
{
    cf_loop *loop = new_loop();
    struct sockaddr_in addr;
    int l = listener(&addr, 1);
    close(l); /* nobody listens on that port any more */
    connect_case c = {.addr = addr, .fd = tcp_socket(), .timeout = 10};
    ck_assert_int_eq(run_task(loop, connect_task, &c), CF_ECONNREFUSED);
    cf_loop_forget_fd(loop, c.fd);
    close(c.fd);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_connect_timeout)
{
    /* A listener whose accept queue is full drops further SYNs: the connection cannot finish. */
    cf_loop *loop = new_loop();
    struct sockaddr_in addr;
    int l = listener(&addr, 0);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = tcp_socket();
        connect(fillers[i], (struct sockaddr *)&addr, sizeof(addr));
    }
    /* The first one connected: the queue (one entry for backlog 0) is full from then on. */
    struct pollfd p = {.fd = fillers[0], .events = POLLOUT};
    ck_assert_int_eq(poll(&p, 1, (int)(CF_TEST_LONG * 1000)), 1);
    connect_case c = {.addr = addr, .fd = tcp_socket(), .timeout = 0.2};
    double t0 = cf_test_monotonic();
    ck_assert_int_eq(run_task(loop, connect_task, &c), CF_ETIMEDOUT);
    ck_assert(cf_test_monotonic() - t0 >= 0.19);
    cf_loop_forget_fd(loop, c.fd);
    close(c.fd);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(l);
    cf_loop_free(loop);
}
END_TEST

typedef struct accept_case {
    int lfd;
    double timeout;
    int rc;
    int client;
} accept_case;

static int accept_task(void *arg, void **result)
{
    (void)result;
    accept_case *a = arg;
    a->rc = cf_sock_accept(&a->client, a->lfd, NULL, NULL, a->timeout);
    return a->rc;
}

START_TEST(test_accept_cancel_loses_no_connection)
{
    cf_loop *loop = new_loop();
    struct sockaddr_in addr;
    int l = listener(&addr, 8);
    accept_case a = {.lfd = l, .timeout = 0.02};
    ck_assert_int_eq(run_task(loop, accept_task, &a), CF_ETIMEDOUT);
    ck_assert_int_eq(a.client, -1);
    a = (accept_case){.lfd = l, .timeout = -1};
    cf_future *t = spawn(loop, accept_task, &a);
    run_once(loop);
    run_once(loop);
    ck_assert(cf_future_cancel(t));
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ECANCELLED);
    cf_future_unref(t);
    int c = tcp_socket();
    connect(c, (struct sockaddr *)&addr, sizeof(addr));
    a = (accept_case){.lfd = l, .timeout = 10};
    ck_assert_int_eq(run_task(loop, accept_task, &a), 0);
    ck_assert_int_ge(a.client, 0);
    cf_loop_forget_fd(loop, a.client);
    close(a.client);
    close(c);
    close(l);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_blocking_sockets)
{
    cf_loop *loop = new_loop();
    /* recv and send never block the loop, whatever the socket's mode. */
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    recv_case r = {.fd = sv[0], .timeout = 0.02};
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ETIMEDOUT);
    /* accept and connect refuse a blocking socket. */
    struct sockaddr_in addr;
    int l = listener(&addr, 1);
    fcntl(l, F_SETFL, fcntl(l, F_GETFL) & ~O_NONBLOCK);
    accept_case a = {.lfd = l, .timeout = 1};
    ck_assert_int_eq(run_task(loop, accept_task, &a), CF_EINVAL);
    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    connect_case c = {.addr = addr, .fd = b, .timeout = 1};
    ck_assert_int_eq(run_task(loop, connect_task, &c), CF_EINVAL);
    close(b);
    close(l);
    close(sv[0]);
    close(sv[1]);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_connection_reset)
{
    cf_loop *loop = new_loop();
    struct sockaddr_in addr;
    int l = listener(&addr, 1);
    int c = tcp_socket();
    connect(c, (struct sockaddr *)&addr, sizeof(addr));
    accept_case a = {.lfd = l, .timeout = 10};
    ck_assert_int_eq(run_task(loop, accept_task, &a), 0);
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
    close(c); /* sends a reset */
    recv_case r = {.fd = a.client, .timeout = 10};
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ECONNRESET);
    cf_loop_forget_fd(loop, a.client);
    close(a.client);
    close(l);
    cf_loop_free(loop);
}
END_TEST

/* ---- the loop's bookkeeping of a socket ---- */

typedef struct forget_case {
    int fd;
    int rc;
} forget_case;

static int forget_task(void *arg, void **result)
{
    (void)result;
    forget_case *f = arg;
    f->rc = cf_loop_forget_fd(cf_loop_current(), f->fd);
    return f->rc;
}

START_TEST(test_forget_while_waiting)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    recv_case r = {.fd = sv[0], .timeout = -1};
    cf_future *t = spawn(loop, recv_task, &r);
    run_once(loop);
    forget_case f = {.fd = sv[0]};
    ck_assert_int_eq(run_task(loop, forget_task, &f), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, t), CF_ETASK);
    ck_assert_int_eq(r.rc, CF_ECLOSED);
    cf_future_unref(t);
    close(sv[0]);
    close(sv[1]);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_accept_renews_reused_number)
{
    /* A connection closed without cf_loop_forget_fd leaves a stale registration behind; the next
     * accepted socket that gets the same number must still work. */
    cf_loop *loop = new_loop();
    struct sockaddr_in addr;
    int l = listener(&addr, 8);
    int c1 = tcp_socket();
    connect(c1, (struct sockaddr *)&addr, sizeof(addr));
    accept_case a = {.lfd = l, .timeout = 10};
    ck_assert_int_eq(run_task(loop, accept_task, &a), 0);
    int number = a.client;
    recv_case r = {.fd = number, .timeout = 0.01};
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ETIMEDOUT); /* registers it */
    int c2 = tcp_socket();
    close(number); /* without forgetting */
    connect(c2, (struct sockaddr *)&addr, sizeof(addr));
    ck_assert_int_eq(run_task(loop, accept_task, &a), 0);
    ck_assert_int_eq(a.client, number);
    ck_assert_int_eq(write(c2, "hi", 2), 2);
    r = (recv_case){.fd = number, .timeout = 10};
    ck_assert_int_eq(run_task(loop, recv_task, &r), 0);
    ck_assert_uint_eq(r.n, 2);
    cf_loop_forget_fd(loop, number);
    close(number);
    close(c1);
    close(c2);
    close(l);
    cf_loop_free(loop);
}
END_TEST

/* Many strictly alternating exchanges whose messages are shorter than the read buffer: the "a
 * short read emptied the queue" rule must never leave data unread (a miss would hang until the
 * timeout). Each message is a length byte and that many bytes. */
typedef struct pingpong {
    int fd;
    int rounds;
    bool first;
    int rc;
} pingpong;

static int read_message(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got == 0 || got < 1 + (size_t)(unsigned char)buf[0]) {
        size_t n;
        int rc = cf_sock_recv_into(&n, fd, buf + got, cap - got, 10);
        if (rc)
            return rc;
        if (n == 0)
            return CF_ECONNRESET;
        got += n;
    }
    ck_assert_uint_eq(got, 1 + (size_t)(unsigned char)buf[0]); /* never more than one message */
    return 0;
}

static int pingpong_task(void *arg, void **result)
{
    (void)result;
    pingpong *p = arg;
    char buf[512];
    for (int i = 0; i < p->rounds; i++) {
        if (!p->first && (p->rc = read_message(p->fd, buf, sizeof(buf))) != 0)
            return p->rc;
        size_t len = 1 + (size_t)(i * 37 % 200);
        buf[0] = (char)len;
        memset(buf + 1, 'a' + i % 26, len);
        /* in two pieces, so the reader sometimes sees half a message */
        if ((p->rc = cf_sock_sendall(NULL, p->fd, buf, 1 + len / 2, 10)) != 0 ||
            (p->rc = cf_sock_sendall(NULL, p->fd, buf + 1 + len / 2, len - len / 2, 10)) != 0)
            return p->rc;
        if (p->first && (p->rc = read_message(p->fd, buf, sizeof(buf))) != 0)
            return p->rc;
    }
    return 0;
}

START_TEST(test_short_reads_miss_nothing)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    pingpong a = {.fd = sv[0], .rounds = 2000, .first = true};
    pingpong b = {.fd = sv[1], .rounds = 2000};
    cf_future *fs[2] = {spawn(loop, pingpong_task, &a), spawn(loop, pingpong_task, &b)};
    cf_future *g;
    ck_assert_int_eq(cf_loop_gather(&g, loop, fs, 2), 0);
    ck_assert_int_eq(cf_loop_run_until_complete(NULL, loop, g), 0);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_int_eq(b.rc, 0);
    cf_future_unref(g);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

START_TEST(test_datagrams_one_per_recv)
{
    cf_loop *loop = new_loop();
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv), 0);
    recv_case r = {.fd = sv[0], .timeout = 0.01};
    ck_assert_int_eq(run_task(loop, recv_task, &r), CF_ETIMEDOUT); /* registers it */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(send(sv[1], "dgram", 5, 0), 5);
    for (int i = 0; i < 3; i++) {
        r = (recv_case){.fd = sv[0], .timeout = 1};
        ck_assert_int_eq(run_task(loop, recv_task, &r), 0);
        ck_assert_uint_eq(r.n, 5); /* shorter than the buffer, yet more are queued */
    }
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static int bad_args_task(void *arg, void **result)
{
    (void)arg, (void)result;
    char b[4];
    size_t n;
    void *d;
    int c;
    struct sockaddr_in sa = {0};
    ck_assert_int_eq(cf_sock_recv_into(&n, -1, b, 4, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_recv_into(NULL, 0, b, 4, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_recv_into(&n, 0, NULL, 4, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_recv_into(&n, 0, b, 4, NAN), CF_EINVAL);
    ck_assert_int_eq(cf_sock_recv(&d, &n, 0, 0, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_sendall(NULL, 0, NULL, 4, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_accept(NULL, 0, NULL, NULL, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_accept(&c, 0, (struct sockaddr *)&sa, NULL, 1), CF_EINVAL);
    ck_assert_int_eq(cf_sock_connect(0, NULL, 0, 1), CF_EINVAL);
    /* Not a socket. */
    int p[2];
    ck_assert_int_eq(pipe2(p, O_NONBLOCK), 0);
    ck_assert_int_eq(cf_sock_recv_into(&n, p[0], b, 4, 1), CF_ENOTSOCK);
    ck_assert_int_eq(cf_sock_sendall(NULL, p[1], "x", 1, 1), CF_ENOTSOCK);
    close(p[0]);
    close(p[1]);
    /* A socket with readiness callbacks cannot be awaited. */
    int sv[2];
    unix_pair(sv);
    ck_assert_int_eq(
        cf_loop_add_reader(cf_loop_current(), sv[0], (cf_loop_io_cb)(void (*)(void))abort, NULL),
        0);
    ck_assert_int_eq(cf_sock_recv_into(&n, sv[0], b, 4, 1), CF_EINVALSTATE);
    ck_assert_int_eq(cf_loop_remove_reader(cf_loop_current(), sv[0]), 1);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

START_TEST(test_bad_arguments)
{
    cf_loop *loop = new_loop();
    char b[4];
    size_t n;
    void *d;
    int c;
    ck_assert_int_eq(cf_sock_recv_into(&n, 0, b, 4, 1), CF_EINVALSTATE);
    ck_assert_int_eq(cf_sock_recv(&d, &n, 0, 4, 1), CF_EINVALSTATE);
    ck_assert_int_eq(cf_sock_sendall(&n, 0, b, 4, 1), CF_EINVALSTATE);
    ck_assert_int_eq(cf_sock_accept(&c, 0, NULL, NULL, 1), CF_EINVALSTATE);
    ck_assert_int_eq(c, -1);
    ck_assert_int_eq(cf_sock_connect(0, NULL, 0, 1), CF_EINVALSTATE);
    ck_assert_int_eq(run_task(loop, bad_args_task, NULL), 0);
    cf_loop_free(loop);
}
END_TEST

START_TEST(test_close_winds_down_socket_tasks)
{
    cf_loop *loop = new_loop();
    int sv[2];
    unix_pair(sv);
    recv_case r = {.fd = sv[0], .timeout = -1};
    size_t len = 8u << 20;
    unsigned char *buf = pattern(len);
    send_case s = {.fd = sv[1], .buf = buf, .len = len, .timeout = -1};
    cf_future *fs[2] = {spawn(loop, recv_task, &r), spawn(loop, send_task, &s)};
    run_once(loop);
    run_once(loop);
    ck_assert_int_eq(cf_loop_close(loop), 0);
    /* The receiver may have taken data before the close; the sender stopped at once. */
    ck_assert(r.rc == CF_ECANCELLED || r.rc == 0);
    ck_assert_int_eq(s.rc, CF_ECANCELLED);
    ck_assert_uint_lt(s.sent, len);
    cf_future_unref(fs[0]);
    cf_future_unref(fs[1]);
    free(buf);
    cf_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loop_sock");
    TCase *tc = cf_test_tcase("sockets");
    tcase_add_test(tc, test_tcp_echo);
    tcase_add_test(tc, test_recv_timeout_and_cancel_keep_data);
    tcase_add_test(tc, test_recv_cancel_racing_data);
    tcase_add_test(tc, test_sendall_continues_partial_writes);
    tcase_add_test(tc, test_sendall_timeout_reports_sent);
    tcase_add_test(tc, test_sendall_cancel_reports_sent);
    tcase_add_test(tc, test_send_errors_without_sigpipe);
    tcase_add_test(tc, test_connect_refused);
    tcase_add_test(tc, test_connect_timeout);
    tcase_add_test(tc, test_accept_cancel_loses_no_connection);
    tcase_add_test(tc, test_blocking_sockets);
    tcase_add_test(tc, test_connection_reset);
    tcase_add_test(tc, test_forget_while_waiting);
    tcase_add_test(tc, test_accept_renews_reused_number);
    tcase_add_test(tc, test_short_reads_miss_nothing);
    tcase_add_test(tc, test_datagrams_one_per_recv);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_close_winds_down_socket_tasks);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
