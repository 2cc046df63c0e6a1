/* Internals shared by the process pool's files: buffered socket channels that carry frames and
 * file descriptors, memfd payloads, the fork server and the worker. Not
 * installed. */
#ifndef CFUTURES_PROC_H
#define CFUTURES_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cfutures.h"
#include "process_pool/frame.h"
#include "process_pool/ring.h"

/* ---- how a worker process exits ----
 * Its wait status reaches the parent through the fork server, and the parent quotes the number
 * in the message of the futures a worker takes down when it was not expected to exit. */
enum {
    CF__WORKER_EXIT_DONE = 0,        /* an EXIT frame, its task limit, or the parent is gone */
    CF__WORKER_EXIT_INIT_FAILED = 1, /* its initializer failed (after an INIT_FAILED frame) */
    CF__WORKER_EXIT_PROTOCOL = 3,    /* the parent sent a frame it cannot accept */
    CF__WORKER_EXIT_NOMEM = 4,       /* no memory for its buffers or a frame */
    CF__WORKER_EXIT_ORPHANED = 125,  /* the fork server died before the worker watched it */
    CF__WORKER_EXIT_SETUP = 126,     /* its socket could not be moved into place */
    /* Its channel (or, for the fork server, the server's) was not made by the process that
     * started it, as its user (cf__channel_trusted): it exits before reading anything. */
    CF__WORKER_EXIT_UNTRUSTED = 127,
};

/* ---- channels (process_pool/channel.c) ---- */

/* Bytes waiting to be sent, with the descriptors to attach at given byte positions. A descriptor
 * is sent with the send that starts at its position, so it reaches the peer no later than the
 * first byte of the frame it belongs to. Pending descriptors are owned (closed when sent or
 * freed). */
typedef struct cf__outbuf {
    unsigned char *buf;
    size_t head, tail, cap;
    struct cf__outfd {
        size_t pos;
        int fd;
    } * fds;
    size_t nfds, fds_cap;
} cf__outbuf;

/* Reserves room for `n` more bytes and returns where to write them (NULL: out of memory). */
unsigned char *cf__outbuf_reserve(cf__outbuf *b, size_t n);
/* Appends a frame (and its memfd, owned from now on, when CF__FRAME_FD is set). Returns 0 or
 * CF_ENOMEM (then `fd` is closed). */
int cf__outbuf_frame(cf__outbuf *b, const cf__frame *f, const void *payload, int fd);
/* Moves what it can into the ring `r` and publishes it; the descriptor of a frame is sent on
 * `sock` (one byte carrying it) before the first byte of its frame goes into the ring, so the
 * reader always finds it. Returns 1 when empty, 0 when data is left (the ring or the socket is
 * full), CF_EINVAL if the ring's reader lied about its index, or another negative error (the
 * socket is broken). */
int cf__outbuf_flush_ring(cf__outbuf *b, cf__ring *r, int sock);
/* Sends `len` bytes with `fd` attached (-1: none) in one sendmsg, retrying EINTR. Returns the
 * bytes sent (possibly fewer) or a negative code (CF_EAGAIN when it would block). */
ssize_t cf__send_with_fd(int sock, const void *data, size_t len, int fd, bool block);
static inline bool cf__outbuf_empty(const cf__outbuf *b)
{
    return b->head == b->tail;
}
void cf__outbuf_free(cf__outbuf *b);

enum { CF__INBUF_FDS = 64 }; /* descriptors received and not yet claimed by their frames */

/* Bytes received and not yet decoded, and the descriptors received with them (in order). */
typedef struct cf__inbuf {
    unsigned char *buf; /* 16-byte aligned, CF__INBUF_CAP bytes */
    size_t head, tail;
    int fds[CF__INBUF_FDS];
    unsigned fd_head, fd_count;
} cf__inbuf;

#define CF__INBUF_CAP (2 * CF__FRAME_MAX)

int cf__inbuf_init(cf__inbuf *b);
void cf__inbuf_free(cf__inbuf *b);
/* Copies what the ring's writer published into the buffer (cf__ring_take: every byte once,
 * into private memory). Returns the bytes taken (0: none) or CF_EINVAL (a lying index). */
int cf__inbuf_fill_ring(cf__inbuf *b, cf__ring *r);
/* Receives once from the socket, which carries only descriptors and doorbells: the descriptors
 * join the queue, the bytes are dropped. Waits for something only with `block`. Returns the
 * bytes received (> 0); 0 at end of stream; CF_EAGAIN if nothing is there; CF_EINVAL if the peer
 * sent more descriptors than fit; another negative error for a broken socket. */
int cf__inbuf_drain_socket(cf__inbuf *b, int sock, bool block);
/* Decodes the next complete frame: 1 (consumed from the buffer; an inline payload stays valid
 * until the next fill), 0 (incomplete), CF_EINVAL (malformed). */
int cf__inbuf_next(cf__inbuf *b, cf__frame *f, const unsigned char **payload);
/* Takes the oldest received descriptor, or returns -1. */
int cf__inbuf_pop_fd(cf__inbuf *b);

/* ---- a worker's shared mapping (process_pool/channel.c) ---- */

typedef struct cf__ring_map {
    unsigned char *base; /* CF__RING_SIZE bytes, or NULL */
    cf__ring_ctl *ctl;
} cf__ring_map;

/* Parent: creates a worker's mapping, a memfd sealed against shrinking and growing (so the
 * worker cannot make the parent's accesses fault), mapped shared and not inherited by fork().
 * Returns 0 with the memfd in `*fd` (to pass to the worker, then close), or CF_EMFILE /
 * CF_ENOMEM. */
int cf__ring_map_create(cf__ring_map *m, int *fd);
/* Worker: maps the memfd the parent passed (checking its seals, size and magic). */
int cf__ring_map_attach(cf__ring_map *m, int fd);
void cf__ring_map_free(cf__ring_map *m);
static inline unsigned char *cf__ring_map_requests(const cf__ring_map *m)
{
    return m->base + CF__RING_CTL;
}
static inline unsigned char *cf__ring_map_responses(const cf__ring_map *m)
{
    return m->base + CF__RING_CTL + CF__RING_CAP;
}

/* ---- memfd payloads (process_pool/channel.c) ---- */

/* Creates a sealed memfd holding a copy of `len` bytes at `data`. */
int cf__memfd_from(int *out, const void *data, size_t len);
/* A mapped payload: `data` is where its bytes start, inside [base, base + size). */
typedef struct cf__mapped {
    void *base;
    size_t size;
    const void *data;
} cf__mapped;

/* Maps `len` bytes at `offset` of a received payload memfd, read-only, after checking that it is
 * sealed against shrinking and large enough, so the peer cannot make reading it fault. The
 * mapping is private (it shares the file's pages; before Linux 6.7 a shared mapping of a
 * write-sealed memfd is refused even read-only) and populated in one pass. With `immutable`,
 * the memfd must also be sealed against writing (F_SEAL_WRITE: no process can change the bytes
 * any more), which is what lets the parent hand a worker's result to the caller without copying
 * it. Returns 0 or CF_EINVAL / CF_ENOMEM. */
int cf__memfd_map(cf__mapped *m, int fd, uint64_t offset, size_t len, bool immutable);
void cf__memfd_unmap(cf__mapped *m);

/* Whether the process at the other end of `sock` may talk to us: it made the socket (SO_PEERCRED
 * records the maker of a socket pair) as process `expected` with our effective uid. A fork server
 * and a worker check their channel with this before reading anything from it. */
bool cf__channel_trusted(int sock, pid_t expected);

/* Makes `fd` non-blocking. */
int cf__set_nonblock(int fd);

/* ---- descriptors received with a message (process_pool/channel.c) ---- */

/* Descriptors one received message may carry (frames carry one at most, control messages one;
 * a peer that sends more is cut off with MSG_CTRUNC). */
#define CF__MSG_FDS 4

/* Control buffer for recvmsg() with room for CF__MSG_FDS descriptors, suitably aligned. */
typedef union cf__fd_cmsg {
    struct cmsghdr align;
    char buf[CMSG_SPACE(CF__MSG_FDS * sizeof(int))];
} cf__fd_cmsg;

/* Takes the descriptors that `msg` carried: the first `cap` into fds[], closing the others.
 * Returns how many it carried in all (more than `cap` means some were closed). */
size_t cf__cmsg_fds(struct msghdr *msg, int *fds, size_t cap);

/* ---- fork server (fork_server.c) ---- */

typedef enum cf__ctl_type {
    CF__CTL_HELLO = 1,   /* server -> parent: pid */
    CF__CTL_SPAWN = 2,   /* parent -> server: token, one descriptor (the worker's socket) */
    CF__CTL_SPAWNED = 3, /* server -> parent: token, pid */
    CF__CTL_FAILED = 4,  /* server -> parent: token, value = errno */
    CF__CTL_KILL = 5,    /* parent -> server: token, value = signal */
    CF__CTL_EXITED = 6,  /* server -> parent: token, pid, value = wait status */
    CF__CTL_EXIT = 7,    /* parent -> server: kill what is left and exit */
} cf__ctl_type;

typedef struct cf__ctl {
    uint32_t type;
    uint32_t token;
    int32_t pid;
    int32_t value;
} cf__ctl;

/* How a fork server is started and told to serve (process_pool/start.c, fork_server.c). A
 * server image gets its channel on CF__SERVER_FD; the program's own image also gets the
 * executable on CF__EXE_FD (open only while exec() resolves it) and CF__SERVER_ENV=3 in its
 * environment, the helper gets CF__SERVER_ARG as its first argument. The hello carries
 * CF__PROTOCOL_VERSION, so a helper of another release is refused. */
#define CF__SERVER_ENV       "CFUTURES_FORKSERVER"
#define CF__SERVER_ARG       "--cfutures-forkserver"
#define CF__SERVER_FD        3
#define CF__SERVER_FD_STR    "3"
#define CF__EXE_FD           4
#define CF__PROTOCOL_VERSION 3

/* A pool's start method (cf_process_pool_options): on return from cf__forkserver_start(),
 * `method` is the one used (never AUTO). */
typedef struct cf__start {
    cf_process_start method;
    const char *worker_program; /* the helper to run, or NULL for the installed one */
    bool fork_with_threads;
} cf__start;

/* Starts a fork server as `how` says and waits for its hello; returns the server's pid and the
 * SEQPACKET socket to it (its end-of-stream means the server exited). Returns 0, or CF_ESYSTEM /
 * CF_EAGAIN / CF_EMFILE / CF_ENOMEM; CF_ENOTSUP when the method cannot work in this process (see
 * cf_process_start); CF_EINVAL for a worker_program that is not executable; CF_EDEADLK for a
 * fork among threads. */
int cf__forkserver_start(cf__start *how, pid_t *pid, int *sock);
/* Waits for our child `pid` to exit (retrying EINTR) and returns its wait status. */
int cf__reap(pid_t pid);
/* Kills our child `pid` (SIGKILL) and reaps it. */
void cf__kill_and_reap(pid_t pid);
/* In the child of CF_PROCESS_START_FORK's fork(): becomes the server of `sock`. */
_Noreturn void cf__forkserver_forked(int sock, pid_t parent);
/* Sends one control message (and a descriptor, or -1), without blocking. */
int cf__ctl_send(int sock, const cf__ctl *m, int fd);
/* Receives one control message. Returns 1, 0 (end of stream), CF_EAGAIN or an error. */
int cf__ctl_recv(int sock, cf__ctl *m, int *fd);

/* ---- worker (process_pool/worker.c) ---- */

/* The worker's main loop on its socket, which process `parent` (the pool's) must have made (else
 * it exits with CF__WORKER_EXIT_UNTRUSTED before reading anything). `own_image`: this is the
 * pool's program, so functions of its main program may be called (not in the helper). Never
 * returns. */
_Noreturn void cf__worker_main(int sock, pid_t parent, bool own_image);
/* For white-box tests, from a task running in a worker: the worker's shared mapping (NULL
 * elsewhere), and publishing raw bytes in its response ring as the worker would publish frames
 * (CF_EINVAL elsewhere or without room). */
cf__ring_map *cf__worker_map(void);
int cf__worker_publish_raw(const void *bytes, size_t n);

#endif
