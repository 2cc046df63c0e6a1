/* Socket channels for the process pool: buffered frames with descriptors attached, and sealed
 * memfd payloads for data too large to send inline. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "process_pool/proc.h"

bool cf__channel_trusted(int sock, pid_t expected)
{
    struct ucred peer;
    socklen_t len = sizeof(peer);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || len != sizeof(peer))
        return false;
    return peer.pid == expected && peer.uid == geteuid();
}

int cf__set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return cf__errno_code(errno);
    return 0;
}

/* ---- output ---- */

unsigned char *cf__outbuf_reserve(cf__outbuf *b, size_t n)
{
    if (b->head == b->tail)
        b->head = b->tail = 0;
    if (b->cap - b->tail >= n)
        return b->buf + b->tail;
    size_t used = b->tail - b->head;
    if (b->head && b->cap - used >= n && !b->nfds) {
        memmove(b->buf, b->buf + b->head, used);
        b->head = 0;
        b->tail = used;
        return b->buf + b->tail;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->tail < n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    unsigned char *nb = cf__malloc(cap);
    if (!nb)
        return NULL;
    if (used)
        memcpy(nb, b->buf + b->head, used);
    for (size_t i = 0; i < b->nfds; i++)
        b->fds[i].pos -= b->head;
    cf__free(b->buf);
    b->buf = nb;
    b->cap = cap;
    b->head = 0;
    b->tail = used;
    return b->buf + b->tail;
}

static int add_fd(cf__outbuf *b, int fd)
{
    if (cf__grow(&b->fds, &b->fds_cap, b->nfds + 1, sizeof(*b->fds)) != 0)
        return CF_ENOMEM;
    b->fds[b->nfds++] = (struct cf__outfd){.pos = b->tail, .fd = fd};
    return 0;
}

int cf__outbuf_frame(cf__outbuf *b, const cf__frame *f, const void *payload, int fd)
{
    size_t size = cf__frame_size(f);
    unsigned char *p = cf__outbuf_reserve(b, size);
    if (!p || (fd >= 0 && add_fd(b, fd) != 0)) {
        if (fd >= 0)
            close(fd);
        return CF_ENOMEM;
    }
    cf__frame_encode(p, f, payload);
    b->tail += size;
    return 0;
}

ssize_t cf__send_with_fd(int sock, const void *data, size_t len, int fd, bool block)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    for (;;) {
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL | (block ? 0 : MSG_DONTWAIT));
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return cf__errno_code(errno); /* EAGAIN gives CF_EAGAIN */
    }
}

int cf__outbuf_flush(cf__outbuf *b, int sock, bool block)
{
    while (b->head < b->tail) {
        /* Never let a send cross the position of a descriptor it does not carry. */
        size_t end = b->tail;
        int fd = -1;
        if (b->nfds) {
            if (b->fds[0].pos == b->head)
                fd = b->fds[0].fd;
            else
                end = b->fds[0].pos;
            if (fd >= 0 && b->nfds > 1)
                end = b->fds[1].pos;
        }
        ssize_t n = cf__send_with_fd(sock, b->buf + b->head, end - b->head, fd, block);
        if (n == CF_EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        if (fd >= 0) {
            close(fd);
            memmove(b->fds, b->fds + 1, (b->nfds - 1) * sizeof(*b->fds));
            b->nfds--;
            /* The rest of this part no longer carries the descriptor: move its position. */
            if ((size_t)n < end - b->head) {
                b->head += (size_t)n;
                continue;
            }
        }
        b->head += (size_t)n;
    }
    b->head = b->tail = 0;
    return 1;
}

void cf__outbuf_free(cf__outbuf *b)
{
    for (size_t i = 0; i < b->nfds; i++)
        close(b->fds[i].fd);
    cf__free(b->fds);
    cf__free(b->buf);
    *b = (cf__outbuf){0};
}

/* ---- input ---- */

int cf__inbuf_init(cf__inbuf *b)
{
    memset(b, 0, sizeof(*b));
    b->buf = cf__malloc_aligned(16, CF__INBUF_CAP);
    return b->buf ? 0 : CF_ENOMEM;
}

void cf__inbuf_free(cf__inbuf *b)
{
    int fd;
    while ((fd = cf__inbuf_pop_fd(b)) >= 0)
        close(fd);
    cf__free(b->buf);
    b->buf = NULL;
}

size_t cf__cmsg_fds(struct msghdr *msg, int *fds, size_t cap)
{
    size_t total = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++, total++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (total >= cap) {
                close(fd);
                continue;
            }
            /* The kernel gives the lowest free numbers; ours must not stay on 0-2 (another
             * thread's printf would write into it). Without a free number above 2 it stays
             * where it is until its reader closes it. */
            if (fd <= STDERR_FILENO) {
                int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
                if (moved >= 0) {
                    close(fd);
                    fd = moved;
                }
            }
            fds[total] = fd;
        }
    }
    return total;
}

/* Queues the descriptors a message carried; CF_EINVAL if they do not all fit. */
static int push_fds(cf__inbuf *b, struct msghdr *msg)
{
    int fds[CF__MSG_FDS];
    size_t n = cf__cmsg_fds(msg, fds, CF__MSG_FDS);
    int rc = n > CF__MSG_FDS ? CF_EINVAL : 0;
    for (size_t i = 0; i < n && i < CF__MSG_FDS; i++) {
        if (b->fd_count == CF__INBUF_FDS) {
            close(fds[i]);
            rc = CF_EINVAL;
            continue;
        }
        b->fds[(b->fd_head + b->fd_count++) % CF__INBUF_FDS] = fds[i];
    }
    return rc;
}

int cf__inbuf_fill(cf__inbuf *b, int sock)
{
    if (b->head == b->tail) {
        b->head = b->tail = 0;
    } else if (b->head && CF__INBUF_CAP - b->tail < CF__FRAME_MAX) {
        /* Frames are multiples of 16 bytes, so moving by head keeps payloads aligned. */
        memmove(b->buf, b->buf + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
    if (b->tail == CF__INBUF_CAP)
        return CF_EINVAL; /* cannot happen with valid frames: they are at most CF__FRAME_MAX */
    cf__fd_cmsg ctl;
    struct iovec iov = {.iov_base = b->buf + b->tail, .iov_len = CF__INBUF_CAP - b->tail};
    for (;;) {
        struct msghdr msg = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            return 0; /* the peer exited without reading everything: still end-of-stream */
        if (n < 0)
            return cf__errno_code(errno);
        int rc = push_fds(b, &msg);
        if (rc == 0 && (msg.msg_flags & MSG_CTRUNC))
            rc = CF_EINVAL;
        if (rc)
            return rc;
        b->tail += (size_t)n;
        return (int)(n > INT32_MAX ? INT32_MAX : n);
    }
}

int cf__inbuf_next(cf__inbuf *b, cf__frame *f, const unsigned char **payload)
{
    size_t consumed;
    int rc = cf__frame_decode(f, payload, &consumed, b->buf + b->head, b->tail - b->head);
    if (rc == 1)
        b->head += consumed;
    return rc;
}

int cf__inbuf_pop_fd(cf__inbuf *b)
{
    if (!b->fd_count)
        return -1;
    int fd = b->fds[b->fd_head];
    b->fd_head = (b->fd_head + 1) % CF__INBUF_FDS;
    b->fd_count--;
    return fd;
}

/* ---- memfd payloads ---- */

enum { SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL };

/* Large buffers get transparent huge pages where the system allows it on request: faulting in
 * 64 MiB page by page costs more than copying it. */
void cf__advise_large(void *p, size_t len)
{
    enum { HUGE = 2u << 20 };
    if (len < 2 * HUGE)
        return;
    uintptr_t lo = ((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1);
    uintptr_t hi = ((uintptr_t)p + len) & ~(uintptr_t)(HUGE - 1);
    if (hi > lo)
        madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
}

int cf__memfd_from(int *out, const void *data, size_t len)
{
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    int fd = cf__fd_above_stdio(memfd_create("cfutures-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (fd < 0)
        return cf__errno_code(errno);
    /* write() fills the file's pages in one pass (no zero-fill, no mapping to tear down). */
    int rc = 0;
    for (size_t done = 0; done < len && rc == 0;) {
        ssize_t n = write(fd, (const unsigned char *)data + done, len - done);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno != EINTR)
            rc = cf__errno_code(errno);
    }
    if (rc == 0 && fcntl(fd, F_ADD_SEALS, SEALS) != 0)
        rc = cf__errno_code(errno);
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* The peer must not be able to shrink the file under a reader (a mapping would fault). */
static int check_sealed(int fd, size_t len)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) != (F_SEAL_SHRINK | F_SEAL_SEAL))
        return CF_EINVAL;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size < len)
        return CF_EINVAL;
    return 0;
}

int cf__memfd_read(int fd, void *dst, size_t len)
{
    int rc = check_sealed(fd, len);
    for (size_t done = 0; done < len && rc == 0;) {
        ssize_t n = pread(fd, (unsigned char *)dst + done, len - done, (off_t)done);
        if (n > 0)
            done += (size_t)n;
        else if (n == 0)
            rc = CF_EINVAL;
        else if (errno != EINTR)
            rc = cf__errno_code(errno);
    }
    return rc;
}

int cf__memfd_map(void **out, int fd, size_t len, bool private_copy)
{
    int rc = check_sealed(fd, len);
    if (rc)
        return rc;
    if (len == 0) {
        *out = NULL;
        return 0;
    }
    if (cf__fault(CF__FAULT_MMAP))
        return CF_ENOMEM;
    void *p = mmap(NULL, len, PROT_READ | (private_copy ? PROT_WRITE : 0),
                   (private_copy ? MAP_PRIVATE : MAP_SHARED) | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED)
        return CF_ENOMEM;
    *out = p;
    return 0;
}

void cf__memfd_unmap(void *addr, size_t len)
{
    if (addr && len)
        munmap(addr, len);
}
