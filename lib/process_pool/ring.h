/* The process pool's shared-memory rings: the task and result path between the parent and one
 * worker. Not installed.
 *
 * Each worker has one shared mapping (a sealed memfd the parent creates and passes over the
 * worker's socket): a control page, then a request ring (parent -> worker) and a response ring
 * (worker -> parent). A ring is a single-producer single-consumer byte stream of frames
 * (process_pool/frame.h) with free-running 32-bit indices: the producer copies bytes in at
 * `head` and publishes `head`, the consumer copies bytes out at `tail` and publishes `tail`.
 * Descriptors (payload memfds) still travel on the socket, sent before the first byte of their
 * frame is published, so they are always there when the frame is decoded.
 *
 * The peer is not trusted (docs/reliability.md): each side keeps its own index in private
 * memory and never reads it back from the mapping; it reads the peer's index once per call,
 * checks that it moved forward within what can be valid, and copies every byte it reads into
 * private memory before decoding it (no double fetch). A bad index is CF_EINVAL, never an
 * access outside the ring. The functions here are pure memory operations (no system call), so
 * the fuzzer (tests/fuzz/fuzz_ring.c) drives them against hostile ring contents. */
#ifndef CFUTURES_PROC_RING_H
#define CFUTURES_PROC_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "process_pool/frame.h"

#define CF__RING_CAP   (256u * 1024u) /* bytes of each ring: a power of two above CF__FRAME_MAX */
#define CF__RING_CTL   4096u          /* the control page, before the rings */
#define CF__RING_SIZE  (CF__RING_CTL + 2u * CF__RING_CAP)
#define CF__RING_MAGIC 0x52465043u /* "CPFR" */

_Static_assert((CF__RING_CAP & (CF__RING_CAP - 1)) == 0, "ring capacity must be a power of two");
_Static_assert(CF__RING_CAP >= 2 * CF__FRAME_MAX, "a ring must hold the largest frame twice");

/* What the worker is doing, as it tells the parent (a hint: a worker that lies only delays its
 * own work). */
enum {
    CF__RING_RUNNING = 0,
    CF__RING_WAIT_REQUEST = 1, /* parked on req_head: wake it after publishing a request */
    CF__RING_WAIT_ROOM = 2,    /* parked on resp_tail: wake it after consuming responses */
};

/* The doorbell word: 0 while the parent's manager is awake (it sees new responses by itself);
 * otherwise the manager's sleep epoch, shifted left, with CF__DOORBELL_ROOM when the parent
 * also waits for room in the request ring. A worker rings (one byte on its socket, which the
 * manager's epoll watches) at most once per epoch. */
#define CF__DOORBELL_ROOM 1u

/* The control page. Each side writes only its own cache line (sharing one would bounce it on
 * every index update); the worker may of course scribble on the parent's line too, which is why
 * the parent never reads its own words back. */
typedef struct cf__ring_ctl {
    /* written by the parent */
    _Alignas(64) _Atomic uint32_t req_head; /* the worker parks on this word */
    _Atomic uint32_t resp_tail;             /* a worker waiting for room parks on this word */
    _Atomic uint32_t doorbell;
    uint32_t magic;
    _Atomic int64_t woken_at; /* when the parent decided to wake the parked worker (ns) */
    /* written by the worker */
    _Alignas(64) _Atomic uint32_t req_tail;
    _Atomic uint32_t resp_head;
    _Atomic uint32_t worker_wait; /* CF__RING_RUNNING / _WAIT_REQUEST / _WAIT_ROOM */
} cf__ring_ctl;

_Static_assert(sizeof(cf__ring_ctl) <= CF__RING_CTL, "the control page is one page");

/* One end of one ring, in private memory. */
typedef struct cf__ring {
    unsigned char *data;           /* CF__RING_CAP shared bytes */
    _Atomic uint32_t *head, *tail; /* shared: written by the producer / the consumer */
    uint32_t own;                  /* our index (head or tail): authoritative, never read back */
    uint32_t peer;                 /* the peer's index, as last read and checked */
} cf__ring;

/* Sets up one end of a ring whose indices are the shared words `head` and `tail`. */
void cf__ring_init(cf__ring *r, unsigned char *data, _Atomic uint32_t *head,
                   _Atomic uint32_t *tail);

/* ---- producer ---- */

/* Reads the consumer's index once and returns the free bytes in `*room`; CF_EINVAL if the
 * index is impossible (behind the last one read, or beyond what was published). */
int cf__ring_room(cf__ring *r, uint32_t *room);
/* Copies `n` bytes in (the caller checked the room); they are not visible before publish. */
void cf__ring_write(cf__ring *r, const void *src, size_t n);
/* Writes a whole frame (header, inline payload, padding): cf__frame_size(f) bytes, which the
 * caller checked the room for. */
void cf__ring_put_frame(cf__ring *r, const cf__frame *f, const void *payload);
/* Makes what was written visible (sequentially consistent: a parked peer's flag is read after
 * it, see the wake protocols in ring.c). */
void cf__ring_publish(cf__ring *r);
/* Bytes written and not yet consumed, as last known (no shared read). */
static inline uint32_t cf__ring_unconsumed(const cf__ring *r)
{
    return r->own - r->peer;
}

/* ---- consumer ---- */

/* Reads the producer's index once, copies up to `max` of the bytes available into `dst`
 * (private memory), then publishes the new tail. Returns the bytes copied (0: none), or
 * CF_EINVAL if the index is impossible (more than a ring's worth ahead, or behind). */
int cf__ring_take(cf__ring *r, void *dst, size_t max);
/* Whether the producer's index differs from ours (one load: a cheap test for spinning). */
static inline bool cf__ring_pending(const cf__ring *r)
{
    return atomic_load_explicit(r->head, memory_order_seq_cst) != r->own;
}

#endif
