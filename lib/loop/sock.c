/* Socket coroutines (asyncio's sock_accept, sock_connect, sock_recv, sock_recv_into,
 * sock_sendall): each tries the system call first and waits for readiness only when the kernel
 * says EAGAIN, so a socket with data waiting costs one system call per operation.
 *
 * Readiness bookkeeping (loop/io.h): a direction that found nothing (EAGAIN) is marked not ready
 * and the next operation in that direction waits for its edge without a system call. A read from
 * a stream socket that returns less than it asked for has emptied the receive queue, so it marks
 * the socket not ready as well: on a keep-alive connection the next request is then awaited
 * directly instead of being discovered by a recv that fails with EAGAIN. (Every later arrival of
 * data raises a new edge, so nothing is missed; datagram sockets return one message per read, so
 * the rule is not applied to them.)
 *
 * Cancellation and timeouts can only strike while a call waits, that is, when the last system
 * call did nothing, so no data is ever lost: recv returns as soon as it has data, and sendall
 * reports how much was sent. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "loop/io.h"

/* A call's timeout becomes a deadline only when the call first has to wait: most calls never
 * wait, and reading the clock would then be the costliest thing they do besides the system call
 * (the deadline is thus measured from the first wait, a system call later than the entry). */
typedef struct budget {
    double timeout;
    int64_t deadline; /* valid once started */
    bool started;
} budget;

/* What every socket function starts with: inside a task, a valid descriptor and timeout. */
static int enter(cf_loop **loop, budget *b, int fd, double timeout)
{
    if (!cf_current_task())
        return CF_EINVALSTATE;
    if (fd < 0 || isnan(timeout))
        return CF_EINVAL;
    *loop = cf_loop_current();
    if ((*loop)->closing)
        return CF_ECANCELLED;
    *b = (budget){.timeout = timeout};
    return 0;
}

/* The record of `fd` in await mode (made and registered if needed). */
static int await_record(cf__io **out, cf_loop *loop, int fd)
{
    cf__io *io;
    int rc = cf__io_get(&io, loop, fd);
    if (rc)
        return rc;
    if (io->mode == CF__IO_CALLBACKS)
        return CF_EINVALSTATE;
    *out = io;
    return 0;
}

/* Whether to try the system call: always before the descriptor is registered (it may well be
 * ready), else only when the direction is not known to be empty. */
static bool worth_trying(const cf__io *io, unsigned direction)
{
    return !io->registered || (io->ready & direction);
}

/* Waits for `direction` after an EAGAIN, within the call's budget. */
static int wait_ready(cf_loop *loop, cf__io *io, unsigned direction, budget *b)
{
    io->ready &= (uint8_t)~direction;
    if (b->timeout == 0)
        return CF_ETIMEDOUT;
    if (!b->started) {
        cf__deadline(b->timeout, &b->deadline);
        b->started = true;
    } else if (b->deadline != CF__FOREVER_NS && b->deadline <= cf__now_ns()) {
        return CF_ETIMEDOUT;
    }
    return cf__io_await(loop, io->fd, direction, b->deadline, cf__seconds_to_ns(b->timeout));
}

static void learn_type(cf__io *io)
{
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(io->fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        type = 0;
    io->sock_type = type;
    io->sock_flags |= CF__IO_KNOWN_TYPE;
}

static inline bool is_stream(cf__io *io)
{
    if (CF__UNLIKELY(!(io->sock_flags & CF__IO_KNOWN_TYPE)))
        learn_type(io);
    return io->sock_type == SOCK_STREAM;
}

/* accept and connect would block the loop on a blocking socket. */
static int check_nonblocking(cf__io *io)
{
    if (io->sock_flags & CF__IO_NONBLOCK)
        return 0;
    int flags = fcntl(io->fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if (!(flags & O_NONBLOCK))
        return CF_EINVAL;
    io->sock_flags |= CF__IO_NONBLOCK;
    return 0;
}

int cf_sock_recv_into(size_t *received, int fd, void *buf, size_t len, double timeout)
{
    if (received)
        *received = 0;
    cf_loop *loop;
    budget b;
    int rc = enter(&loop, &b, fd, timeout);
    if (rc)
        return rc;
    if (!received || (!buf && len))
        return CF_EINVAL;
    if (len == 0)
        return 0;
    for (;;) {
        cf__io *io;
        if ((rc = await_record(&io, loop, fd)) != 0)
            return rc;
        if (worth_trying(io, CF__IO_READY_IN)) {
            ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
            if (n >= 0) {
                if (n > 0 && (size_t)n < len && is_stream(io))
                    io->ready &= (uint8_t)~CF__IO_READY_IN;
                *received = (size_t)n;
                return 0;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        if ((rc = wait_ready(loop, io, CF__IO_READY_IN, &b)) != 0)
            return rc;
    }
}

int cf_sock_recv(void **data, size_t *len, int fd, size_t max, double timeout)
{
    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!data || !len || max == 0)
        return cf_current_task() ? CF_EINVAL : CF_EINVALSTATE;
    void *buf = cf__malloc(max);
    if (!buf)
        return CF_ENOMEM;
    size_t n;
    int rc = cf_sock_recv_into(&n, fd, buf, max, timeout);
    if (rc || n == 0) {
        cf__free(buf);
        return rc;
    }
    if (n < max) {
        /* The caller frees with free(): give it a block of the size it holds. */
        void *fit = realloc(buf, n);
        buf = fit ? fit : buf;
    }
    *data = buf;
    *len = n;
    return 0;
}

int cf_sock_sendall(size_t *sent, int fd, const void *buf, size_t len, double timeout)
{
    if (sent)
        *sent = 0;
    cf_loop *loop;
    budget b;
    int rc = enter(&loop, &b, fd, timeout);
    if (rc)
        return rc;
    if (!buf && len)
        return CF_EINVAL;
    size_t done = 0;
    while (done < len) {
        cf__io *io;
        if ((rc = await_record(&io, loop, fd)) != 0)
            break;
        if (worth_trying(io, CF__IO_READY_OUT)) {
            ssize_t n = send(fd, (const char *)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0) {
                done += (size_t)n;
                if (sent)
                    *sent = done;
                continue; /* a short write: the next one says EAGAIN if the buffer is full */
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                rc = -errno;
                break;
            }
        }
        if ((rc = wait_ready(loop, io, CF__IO_READY_OUT, &b)) != 0)
            break;
    }
    return rc;
}

/* Transient errors accept(2) reports for a connection that died in the backlog: the listening
 * socket is fine, so try the next connection. */
static bool accept_retry(int e)
{
    return e == EINTR || e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP ||
           e == ENETUNREACH;
}

int cf_sock_accept(int *client, int fd, struct sockaddr *addr, socklen_t *addrlen, double timeout)
{
    if (client)
        *client = -1;
    cf_loop *loop;
    budget b;
    int rc = enter(&loop, &b, fd, timeout);
    if (rc)
        return rc;
    if (!client || (addr && !addrlen))
        return CF_EINVAL;
    for (;;) {
        cf__io *io;
        if ((rc = await_record(&io, loop, fd)) != 0 || (rc = check_nonblocking(io)) != 0)
            return rc;
        if (worth_trying(io, CF__IO_READY_IN)) {
            int c = accept4(fd, addr, addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (c >= 0) {
                /* A new descriptor, whatever the loop remembers of its number. */
                cf__io_forget(loop, c);
                cf__io *cio;
                if (is_stream(io) && cf__io_get(&cio, loop, c) == 0) {
                    cio->sock_type = SOCK_STREAM;
                    cio->sock_flags = CF__IO_KNOWN_TYPE | CF__IO_NONBLOCK;
                }
                *client = c;
                return 0;
            }
            if (accept_retry(errno))
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -errno;
        }
        if ((rc = wait_ready(loop, io, CF__IO_READY_IN, &b)) != 0)
            return rc;
    }
}

int cf_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen, double timeout)
{
    cf_loop *loop;
    budget b;
    int rc = enter(&loop, &b, fd, timeout);
    if (rc)
        return rc;
    if (!addr)
        return CF_EINVAL;
    /* A socket being connected is new: forget whatever an older descriptor of that number left. */
    cf__io_forget(loop, fd);
    cf__io *io;
    if ((rc = await_record(&io, loop, fd)) != 0 || (rc = check_nonblocking(io)) != 0)
        return rc;
    if (connect(fd, addr, addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS && errno != EINTR) /* after EINTR the connection goes on */
        return -errno;
    for (;;) {
        if ((rc = wait_ready(loop, io, CF__IO_READY_OUT, &b)) != 0)
            return rc;
        if ((rc = await_record(&io, loop, fd)) != 0)
            return rc;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            return -errno;
        if (err != EINPROGRESS && err != EALREADY)
            return -err;
    }
}
