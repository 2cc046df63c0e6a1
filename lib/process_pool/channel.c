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

int cf__outbuf_flush_ring(cf__outbuf *b, cf__ring *r, int sock)
{
    uint32_t room;
    int rc = cf__ring_room(r, &room);
    if (rc)
        return rc;
    size_t wrote = 0;
    while (b->head < b->tail) {
        /* A descriptor goes out on the socket before the first byte of its frame. */
        if (b->nfds && b->fds[0].pos == b->head) {
            ssize_t n = cf__send_with_fd(sock, "F", 1, b->fds[0].fd, false);
            if (n == CF_EAGAIN)
                break;
            if (n < 0) {
                rc = (int)n;
                break;
            }
            close(b->fds[0].fd);
            memmove(b->fds, b->fds + 1, (b->nfds - 1) * sizeof(*b->fds));
            b->nfds--;
        }
        size_t end = b->nfds ? b->fds[0].pos : b->tail;
        size_t n = end - b->head < room ? end - b->head : room;
        if (n == 0)
            break;
        cf__ring_write(r, b->buf + b->head, n);
        b->head += n;
        room -= (uint32_t)n;
        wrote += n;
    }
    if (wrote)
        cf__ring_publish(r);
    if (rc)
        return rc;
    if (b->head < b->tail)
        return 0;
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

int cf__inbuf_fill_ring(cf__inbuf *b, cf__ring *r)
{
    if (b->head == b->tail) {
        b->head = b->tail = 0;
    } else if (b->head && CF__INBUF_CAP - b->tail < CF__FRAME_MAX) {
        /* Frames are multiples of 16 bytes, so moving by head keeps payloads aligned. */
        memmove(b->buf, b->buf + b->head, b->tail - b->head);
        b->tail -= b->head;
        b->head = 0;
    }
    int n = cf__ring_take(r, b->buf + b->tail, CF__INBUF_CAP - b->tail);
    if (n > 0)
        b->tail += (size_t)n;
    return n;
}

int cf__inbuf_drain_socket(cf__inbuf *b, int sock, bool block)
{
    unsigned char scratch[256];
    cf__fd_cmsg ctl;
    struct iovec iov = {.iov_base = scratch, .iov_len = sizeof(scratch)};
    for (;;) {
        struct msghdr msg = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = ctl.buf,
            .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == ECONNRESET)
            return 0; /* the peer exited without reading everything: still end-of-stream */
        if (n < 0)
            return cf__errno_code(errno); /* EAGAIN gives CF_EAGAIN */
        int rc = push_fds(b, &msg);
        if (rc == 0 && (msg.msg_flags & MSG_CTRUNC))
            rc = CF_EINVAL;
        if (rc)
            return rc;
        return (int)n;
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

/* ---- a worker's shared mapping ---- */

static int check_sealed(int fd, size_t len);

int cf__ring_map_create(cf__ring_map *m, int *out)
{
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    int fd = cf__fd_above_stdio(memfd_create("cfutures-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (fd < 0)
        return cf__errno_code(errno);
    int rc = 0;
    if (ftruncate(fd, CF__RING_SIZE) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        rc = cf__errno_code(errno);
    void *p = MAP_FAILED;
    if (rc == 0 && cf__fault(CF__FAULT_MMAP))
        rc = CF_ENOMEM;
    if (rc == 0)
        p = mmap(NULL, CF__RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (rc == 0 && p == MAP_FAILED)
        rc = CF_ENOMEM;
    if (rc) {
        close(fd);
        return rc;
    }
    /* A fork() of the parent (its own, or a CF_PROCESS_START_FORK server) must not keep the
     * worker's rings: the child could neither use them nor should it see the tasks. */
    madvise(p, CF__RING_SIZE, MADV_DONTFORK);
    m->base = p;
    m->ctl = p;
    m->ctl->magic = CF__RING_MAGIC;
    *out = fd;
    return 0;
}

int cf__ring_map_attach(cf__ring_map *m, int fd)
{
    int rc = check_sealed(fd, CF__RING_SIZE);
    if (rc)
        return rc;
    void *p = mmap(NULL, CF__RING_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return CF_ENOMEM;
    m->base = p;
    m->ctl = p;
    if (m->ctl->magic != CF__RING_MAGIC) {
        cf__ring_map_free(m);
        return CF_EINVAL;
    }
    return 0;
}

void cf__ring_map_free(cf__ring_map *m)
{
    if (m->base)
        munmap(m->base, CF__RING_SIZE);
    m->base = NULL;
    m->ctl = NULL;
}

/* ---- memfd payloads ---- */

/* Payload memfds are sealed against every change, so a reader may map them and use the bytes in
 * place: nobody (the sender included) can write, shrink or grow them any more. */
enum { SEALS = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL };

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

/* The peer must not be able to shrink the file under a reader (a mapping would fault), nor, with
 * `immutable`, change its bytes. */
static int check_seals(int fd, uint64_t end, bool immutable)
{
    struct stat st;
    int need = F_SEAL_SHRINK | F_SEAL_SEAL | (immutable ? F_SEAL_WRITE : 0);
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & need) != need)
        return CF_EINVAL;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size < end)
        return CF_EINVAL;
    return 0;
}

static int check_sealed(int fd, size_t len)
{
    return check_seals(fd, len, false);
}

int cf__memfd_map(cf__mapped *m, int fd, uint64_t offset, size_t len, bool immutable)
{
    *m = (cf__mapped){0};
    if (offset > SIZE_MAX / 4 || len > SIZE_MAX / 4)
        return CF_EINVAL;
    int rc = check_seals(fd, offset + len, immutable);
    if (rc || len == 0)
        return rc;
    if (cf__fault(CF__FAULT_MMAP))
        return CF_ENOMEM;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t start = offset - offset % page;
    size_t size = (size_t)(offset + len - start);
    /* MAP_POPULATE: one pass over the page tables instead of a fault per page. */
    /* Read-only: MAP_POPULATE on a writable private mapping would copy every page. */
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, (off_t)start);
    if (p == MAP_FAILED)
        return CF_ENOMEM;
    *m = (cf__mapped){.base = p, .size = size, .data = (unsigned char *)p + (offset - start)};
    return 0;
}

void cf__memfd_unmap(cf__mapped *m)
{
    if (m->base)
        munmap(m->base, m->size);
    *m = (cf__mapped){0};
}
