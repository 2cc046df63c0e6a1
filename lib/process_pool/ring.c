/* Single-producer single-consumer byte rings in memory shared with an untrusted process (see
 * process_pool/ring.h). No system call and no allocation here.
 *
 * Validation. Indices are free-running 32-bit counters, so `a - b` is the distance from b to a
 * modulo 2^32. The consumer accepts a producer index h only if 0 <= h - own <= CAP: anything else
 * (an index moved back, or more than a ring ahead) is a lie. The producer accepts a consumer
 * index t only if it lies between the last one it accepted and its own head. Whatever the peer
 * writes, every access below stays inside [data, data + CAP), and the bytes a consumer returns
 * were copied exactly once from the ring into the caller's private buffer. */
#include <string.h>

#include "core/internal.h"
#include "process_pool/ring.h"

#define MASK (CF__RING_CAP - 1u)

void cf__ring_init(cf__ring *r, unsigned char *data, _Atomic uint32_t *head, _Atomic uint32_t *tail)
{
    *r = (cf__ring){.data = data, .head = head, .tail = tail};
}

int cf__ring_room(cf__ring *r, uint32_t *room)
{
    uint32_t t = atomic_load_explicit(r->tail, memory_order_seq_cst);
    if (t - r->peer > r->own - r->peer)
        return CF_EINVAL;
    r->peer = t;
    *room = CF__RING_CAP - (r->own - t);
    return 0;
}

void cf__ring_write(cf__ring *r, const void *src, size_t n)
{
    CF__ASSERT(n <= CF__RING_CAP - (r->own - r->peer));
    uint32_t at = r->own & MASK;
    size_t first = CF__RING_CAP - at < n ? CF__RING_CAP - at : n;
    memcpy(r->data + at, src, first);
    memcpy(r->data, (const unsigned char *)src + first, n - first);
    r->own += (uint32_t)n;
}

void cf__ring_put_frame(cf__ring *r, const cf__frame *f, const void *payload)
{
    static const unsigned char zeros[16];
    size_t inline_len = (f->flags & CF__FRAME_FD) ? 0 : (size_t)f->len;
    size_t size = cf__frame_size(f);
    unsigned char h[CF__FRAME_HEADER];
    cf__frame_encode_header(h, f);
    cf__ring_write(r, h, CF__FRAME_HEADER);
    if (inline_len)
        cf__ring_write(r, payload, inline_len);
    cf__ring_write(r, zeros, size - CF__FRAME_HEADER - inline_len);
}

void cf__ring_publish(cf__ring *r)
{
    atomic_store_explicit(r->head, r->own, memory_order_seq_cst);
}

int cf__ring_take(cf__ring *r, void *dst, size_t max)
{
    uint32_t h = atomic_load_explicit(r->head, memory_order_seq_cst);
    uint32_t avail = h - r->own;
    if (avail > CF__RING_CAP)
        return CF_EINVAL;
    size_t n = avail < max ? avail : max;
    if (n == 0)
        return 0;
    uint32_t at = r->own & MASK;
    size_t first = CF__RING_CAP - at < n ? CF__RING_CAP - at : n;
    memcpy(dst, r->data + at, first);
    memcpy((unsigned char *)dst + first, r->data, n - first);
    r->own += (uint32_t)n;
    r->peer = h;
    atomic_store_explicit(r->tail, r->own, memory_order_seq_cst);
    return (int)n;
}
