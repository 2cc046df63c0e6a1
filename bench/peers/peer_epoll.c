/* Peer: a bare single-threaded epoll HTTP server, the floor for the http-hello workload.
 *
 * What a C programmer writes by hand without any library: one epoll descriptor, level-triggered,
 * one read per readiness event, every complete request in the buffer answered with one write,
 * keep-alive, no timers, no allocation per request. It answers every request with the same
 * bytes as examples/http_server.c's "/" route.
 *
 *     peer-epoll http-hello SECONDS   (the workload: starts "peer-epoll --serve", loads it with
 *                                     wrk, prints the result line)
 *     peer-epoll --serve              (the server: 127.0.0.1, a free port, printed; SIGTERM stops)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_http.h"
#include "bench_util.h"

enum { BUF = 4096, MAX_EVENTS = 256, MAX_FD = 65536 };

static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "Content-Length: 5\r\n\r\nhello";

typedef struct conn {
    size_t len;
    char buf[BUF];
} conn;

static conn *conns[MAX_FD];

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(conns[fd]);
    conns[fd] = NULL;
}

/* Answers every complete request in the buffer with one write. Returns false to close. */
static bool serve(int fd, conn *c)
{
    char out[BUF / 16 * sizeof(hello)]; /* a request head is at least 16 bytes */
    size_t out_len = 0, used = 0;
    for (;;) {
        char *end = memmem(c->buf + used, c->len - used, "\r\n\r\n", 4);
        if (!end)
            break;
        used = (size_t)(end - c->buf) + 4;
        memcpy(out + out_len, hello, sizeof(hello) - 1);
        out_len += sizeof(hello) - 1;
    }
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    /* A short write is not handled: a request head and its tiny answer never fill a socket
     * buffer in this benchmark (wrk waits for each answer). */
    return c->len < BUF &&
           (out_len == 0 || send(fd, out, out_len, MSG_NOSIGNAL) == (ssize_t)out_len);
}

static int serve_forever(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) != 0) {
        perror("peer-epoll: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    int sfd = signalfd(-1, &term, SFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    printf("listening on http://127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == sfd)
                return 0;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (c >= MAX_FD || !(conns[c] = calloc(1, sizeof(conn)))) {
                        close(c);
                        continue;
                    }
                    ev = (struct epoll_event){.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            conn *c = conns[fd];
            ssize_t got = recv(fd, c->buf + c->len, BUF - c->len, 0);
            if (got <= 0) {
                if (got == 0 || (errno != EAGAIN && errno != EINTR))
                    drop(ep, fd);
                continue;
            }
            c->len += (size_t)got;
            if (!serve(fd, c))
                drop(ep, fd);
        }
    }
}

static int wl_http_hello(char **args)
{
    double seconds = bench_arg_seconds(args[0], "SECONDS");
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        bench_fail(__FILE__, __LINE__, "readlink", "/proc/self/exe");
    self[n] = '\0';
    char *argv[] = {self, "--serve", NULL};
    bench_http_result r;
    bench_http_load(&r, argv, "/", seconds, BENCH_HTTP_CONNECTIONS);
    bench_http_report("http-hello", &r);
    return 0;
}

static const bench_workload workloads[] = {
    {"http-hello", "SECONDS", 1, wl_http_hello,
     "server CPU time per request of a bare epoll hello server under wrk"},
};

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--serve") == 0)
        return serve_forever();
    return bench_main("epoll", workloads, sizeof(workloads) / sizeof(workloads[0]), argc, argv);
}
