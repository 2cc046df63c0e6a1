/* Internals of libcfutures-mpi, shared by its files. Not installed.
 *
 * The library sees only public headers: cfutures.h, cfutures/executor_impl.h, cfutures/fn_name.h
 * and cfutures/mpi.h, as an executor written outside cfutures would.
 *
 * Wire protocol. The client and each worker exchange messages on a communicator of their own (a
 * duplicate of the user's, or the spawn intercommunicator):
 *   TAG_BATCH   client -> worker: a batch of frames (HELLO, MODULE, TASK, EXIT)
 *   TAG_DATA    client -> worker: the argument of a TASK frame flagged FR_OOL, in chunks
 *   TAG_RESULT  worker -> client: frames (READY, RESULT)
 *   TAG_RDATA   worker -> client: the result of a RESULT frame flagged FR_OOL, in chunks
 * Messages between one pair with one tag arrive in order (MPI's non-overtaking rule), so a
 * worker answers its tasks in order and out-of-line payloads follow their frames. */
#ifndef CFUTURES_MPI_INTERNAL_H
#define CFUTURES_MPI_INTERNAL_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "cfutures/executor_impl.h"
#include "cfutures/fn_name.h"
#include "cfutures/mpi.h"

enum {
    TAG_BATCH = 1,
    TAG_DATA = 2,
    TAG_RESULT = 3,
    TAG_RDATA = 4,
};

/* ---- frames (wire.c) ---- */

#define FR_MAGIC      0x4346504du /* "MPFC" */
#define FR_VERSION    1u          /* HELLO's id: both sides must speak the same protocol */
#define FR_HEADER     48u
#define FR_INLINE_MAX (64u * 1024u) /* larger payloads travel out of line */
#define FR_PATH_MAX   4096u         /* module path in a MODULE frame */

typedef enum fr_type {
    FR_HELLO = 1,  /* client -> worker: id = version, code = 0 or the error every rank returns,
                    * payload = the client's peer_info */
    FR_READY = 2,  /* worker -> client: payload = the worker's peer_info */
    FR_MODULE = 3, /* client -> worker: id = module number (dense from 0), code = identity length,
                    * payload = identity then path */
    FR_TASK = 4,   /* client -> worker: id = task id, module + offset, payload = argument */
    FR_EXIT = 5,   /* client -> worker: return once the frames before this one are done */
    FR_RESULT = 6, /* worker -> client: id = task id, code = 0 and payload = result, or code and
                    * message */
} fr_type;

enum { FR_OOL = 1u << 0 }; /* the payload follows in TAG_DATA / TAG_RDATA messages */

typedef struct frame {
    uint8_t type;
    uint8_t flags;
    int32_t code;
    uint32_t module;
    uint64_t id;
    uint64_t offset;
    uint64_t len; /* payload length, inline or out of line */
} frame;

/* Bytes a frame takes in a batch: header plus inline payload, padded to 16. */
size_t fr_size(const frame *f);
/* Writes the frame (and its inline payload unless FR_OOL) into `out` (fr_size bytes). */
void fr_encode(unsigned char *out, const frame *f, const void *payload);
/* Decodes the frame at the start of `buf` (`avail` bytes). Returns 1 with the header, the inline
 * payload (NULL if none or out of line) and the bytes it takes; 0 if `avail` is 0; CF_EINVAL for
 * anything that is not one whole valid frame. Pure: reads only buf[0, avail). */
int fr_decode(frame *f, const unsigned char **payload, size_t *consumed, const unsigned char *buf,
              size_t avail);

/* A growable batch of encoded frames. */
typedef struct batch {
    unsigned char *buf;
    size_t len, cap;
} batch;

/* Appends a frame; returns 0 or CF_ENOMEM. */
int batch_add(batch *b, const frame *f, const void *payload);
/* Hands the buffer over (for a send that frees it) and empties the batch. */
unsigned char *batch_take(batch *b, size_t *len);
void batch_free(batch *b);

/* ---- who a process is, and whether it is still alive (peer.c) ---- */

typedef struct peer_info {
    int32_t pid;
    uint32_t reserved;
    uint64_t pid_ns;  /* inode of /proc/self/ns/pid */
    char boot_id[40]; /* /proc/sys/kernel/random/boot_id */
    char host[64];    /* gethostname() */
} peer_info;

void peer_self(peer_info *out);
/* A pidfd on `p` if it runs on this machine in our pid namespace (and the kernel has pidfds),
 * else -1: its death can then not be observed directly. */
int peer_watch(const peer_info *p);
/* True once the process behind `pidfd` has exited. */
bool peer_gone(int pidfd);

/* ---- moving payloads (transfer.c) ---- */

/* One payload of any length, posted as chunks (MPI counts are int). */
typedef struct xfer {
    MPI_Request *reqs;
    int n;
    MPI_Request one; /* storage when one chunk is enough */
} xfer;

int xfer_isend(xfer *x, const void *buf, size_t len, int peer, int tag, MPI_Comm comm);
int xfer_irecv(xfer *x, void *buf, size_t len, int peer, int tag, MPI_Comm comm);
/* 1 when every chunk is done, 0 if not yet, or CF_EBROKEN (an MPI error). */
int xfer_test(xfer *x);
/* Cancels what is still posted (a send to a dead peer) and forgets it. */
void xfer_abandon(xfer *x);
void xfer_free(xfer *x);

/* Translates an MPI error into CF_EBROKEN, with MPI's text in `why` (may be NULL). */
int mpi_failed(int mpi_rc, const char *call, char *why, size_t cap);

/* ---- waiting without burning the CPU (transfer.c) ---- */

int64_t now_ns(void);

/* Polling MPI has no wake-up: a waiter spins briefly, then yields, then sleeps longer and longer
 * (up to a millisecond), starting over at every sign of activity. */
typedef struct backoff {
    int64_t idle_since;
} backoff;

static inline void backoff_reset(backoff *b)
{
    b->idle_since = 0;
}
/* Nanoseconds to sleep before the next poll (0: poll again at once, after a pause or yield).
 * `transfer`: a payload is moving, which needs both sides to keep polling. */
int64_t backoff_next(backoff *b, bool transfer);

/* ---- the two sides (client.c, worker.c) ---- */

/* The endpoint of a started session: the communicator the client and workers talk on. */
typedef struct session {
    MPI_Comm comm;
    bool spawned; /* an intercommunicator from MPI_Comm_spawn: disconnect it at the end */
    int client;   /* the client's rank (as the workers address it) */
    int nworkers;
    int *ranks; /* the workers' ranks (as the client addresses them) */
} session;

/* Client: greets every worker, waits for their READY, starts the manager and makes the executor.
 * Takes ownership of the session (freed on failure too). */
int client_start(cf_executor **out, session *s, unsigned window);
/* Client side of a failed start: tells every worker to return `code`. */
void client_refuse(session *s, int code);
/* Worker: waits for HELLO, answers READY, serves until EXIT. Frees the session. Returns 0, the
 * code the client refused with, or CF_EBROKEN. */
int worker_serve(session *s);

#endif
