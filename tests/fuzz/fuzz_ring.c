/* libFuzzer target for the parent's side of a worker's shared rings (lib/process_pool/ring.c,
 * and the buffer that decodes what it takes, cf__inbuf in lib/process_pool/channel.c): the code
 * that reads memory a worker process can write at any moment.
 *
 * The input is a script of steps, each one byte of opcode and its operands, played against one
 * worker's control words and two rings, each in a heap block of exactly its size (so
 * AddressSanitizer reports any access outside them). The hostile worker's steps write anything
 * anywhere: ring bytes, its own indices (random, or plausible ones near the parent's), the
 * parent's own control words. The parent's steps are what the manager does: take the response
 * ring into its private buffer and decode frames (as read_ring in process_pool.c), and write a
 * request frame when the request ring has room. After each parent step the promises of ring.h
 * are checked against a private model of the indices, which the worker cannot touch: an index
 * more than a ring ahead, or behind, is CF_EINVAL and changes nothing; otherwise exactly the
 * published bytes are taken, never more than the buffer holds; the parent publishes its own
 * index, never one read back; every decoded frame lies inside the private buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "process_pool/proc.h"
#include "process_pool/ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct script {
    const uint8_t *p;
    size_t left;
} script;

static uint32_t take(script *s, size_t n)
{
    uint32_t v = 0;
    for (size_t i = 0; i < n && s->left; i++, s->left--)
        v = v << 8 | *s->p++;
    return v;
}

typedef struct parent {
    cf__ring_ctl *ctl;
    unsigned char *req_data, *resp_data;
    cf__ring req, resp;
    cf__inbuf in;
    uint32_t resp_tail; /* the model: where the parent's reading is */
    uint32_t req_head;  /* where the parent's writing is */
    uint32_t req_tail;  /* the worker's last accepted index */
    bool broken;        /* the parent gave up on this worker */
} parent;

/* The parent takes what the worker published and decodes whole frames. */
static void parent_read(parent *pa)
{
    uint32_t head = atomic_load_explicit(pa->resp.head, memory_order_relaxed);
    size_t room = CF__INBUF_CAP - (pa->in.tail - pa->in.head);
    int rc = cf__inbuf_fill_ring(&pa->in, &pa->resp);
    /* The worker cannot change its index between our load and the ring's: single-threaded. */
    uint32_t avail = head - pa->resp_tail;
    if (avail > CF__RING_CAP) {
        REQUIRE(rc == CF_EINVAL);
        REQUIRE(pa->resp.own == pa->resp_tail);
        pa->broken = true;
        return;
    }
    REQUIRE(rc >= 0 && (uint32_t)rc <= avail && (size_t)rc <= room);
    REQUIRE((uint32_t)rc == avail || pa->in.tail == CF__INBUF_CAP);
    pa->resp_tail += (uint32_t)rc;
    REQUIRE(pa->resp.own == pa->resp_tail);
    if (rc > 0) /* published: the parent's own index, never one read back */
        REQUIRE(atomic_load_explicit(&pa->ctl->resp_tail, memory_order_relaxed) == pa->resp_tail);
    REQUIRE(pa->in.head <= pa->in.tail && pa->in.tail <= CF__INBUF_CAP);
    for (;;) {
        cf__frame f;
        const unsigned char *payload = NULL;
        size_t before = pa->in.head;
        int d = cf__inbuf_next(&pa->in, &f, &payload);
        REQUIRE(d == 1 || d == 0 || d == CF_EINVAL);
        if (d == CF_EINVAL)
            pa->broken = true;
        if (d != 1)
            break;
        size_t used = pa->in.head - before;
        REQUIRE(used == cf__frame_size(&f) && pa->in.head <= pa->in.tail);
        size_t inline_len = (f.flags & CF__FRAME_FD) ? 0 : (size_t)f.len;
        if (payload) {
            REQUIRE(payload == pa->in.buf + before + CF__FRAME_HEADER);
            REQUIRE(payload + inline_len <= pa->in.buf + pa->in.tail);
        }
    }
}

/* The parent writes a request frame of `len` inline bytes if the ring has room for it. */
static void parent_write(parent *pa, size_t len)
{
    uint32_t tail = atomic_load_explicit(pa->req.tail, memory_order_relaxed);
    uint32_t room;
    int rc = cf__ring_room(&pa->req, &room);
    if (tail - pa->req_tail > pa->req_head - pa->req_tail) {
        REQUIRE(rc == CF_EINVAL);
        pa->broken = true;
        return;
    }
    REQUIRE(rc == 0);
    pa->req_tail = tail;
    REQUIRE(room == CF__RING_CAP - (pa->req_head - tail));
    static unsigned char payload[CF__FRAME_INLINE_MAX];
    cf__frame f = {.type = CF__FR_TASK, .id = pa->req_head, .len = len};
    size_t need = cf__frame_size(&f);
    if (need > room)
        return;
    cf__ring_put_frame(&pa->req, &f, payload);
    cf__ring_publish(&pa->req);
    pa->req_head += (uint32_t)need;
    REQUIRE(pa->req.own == pa->req_head);
    REQUIRE(atomic_load_explicit(&pa->ctl->req_head, memory_order_relaxed) == pa->req_head);
}

/* The worker writes `n` script bytes into `ring` from `at` (wrapping). */
static void worker_scribble(script *s, unsigned char *ring, size_t cap, uint32_t at, size_t n)
{
    for (size_t i = 0; i < n && s->left; i++)
        ring[(at + i) % cap] = (unsigned char)take(s, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parent pa = {0};
    pa.ctl = calloc(1, sizeof(cf__ring_ctl));
    pa.req_data = calloc(1, CF__RING_CAP);
    pa.resp_data = calloc(1, CF__RING_CAP);
    if (!pa.ctl || !pa.req_data || !pa.resp_data || cf__inbuf_init(&pa.in) != 0)
        goto out;
    cf__ring_init(&pa.req, pa.req_data, &pa.ctl->req_head, &pa.ctl->req_tail);
    cf__ring_init(&pa.resp, pa.resp_data, &pa.ctl->resp_head, &pa.ctl->resp_tail);
    script s = {data, size};
    while (s.left && !pa.broken) {
        switch (take(&s, 1) % 8) {
        case 0: /* response bytes anywhere */
            worker_scribble(&s, pa.resp_data, CF__RING_CAP, take(&s, 3), take(&s, 2) % 4096);
            break;
        case 1: /* a well-formed response frame's header at the parent's tail, then publish */
        {
            cf__frame f = {.type = (uint8_t)take(&s, 1), .id = take(&s, 4), .len = take(&s, 3)};
            f.flags = (uint8_t)take(&s, 1) & CF__FRAME_FLAGS;
            unsigned char h[CF__FRAME_HEADER];
            cf__frame_encode_header(h, &f);
            uint32_t at = atomic_load_explicit(&pa.ctl->resp_head, memory_order_relaxed);
            for (size_t i = 0; i < CF__FRAME_HEADER; i++)
                pa.resp_data[(at + i) % CF__RING_CAP] = h[i];
            atomic_store_explicit(&pa.ctl->resp_head, at + (uint32_t)cf__frame_size(&f),
                                  memory_order_relaxed);
            break;
        }
        case 2: /* any head */
            atomic_store_explicit(&pa.ctl->resp_head, take(&s, 4), memory_order_relaxed);
            break;
        case 3: /* a plausible head: near the parent's tail, either side */
            atomic_store_explicit(&pa.ctl->resp_head,
                                  pa.resp_tail + (uint32_t)(int32_t)(int16_t)take(&s, 2) * 16,
                                  memory_order_relaxed);
            break;
        case 4: /* the request ring's tail: any, or near the parent's head */
        {
            uint32_t v = take(&s, 4);
            if (v & 1)
                v = pa.req_head - (v >> 1) % (2 * CF__RING_CAP);
            atomic_store_explicit(&pa.ctl->req_tail, v, memory_order_relaxed);
            break;
        }
        case 5: /* the parent's own words, the doorbell, anything in the control page */
            worker_scribble(&s, (unsigned char *)pa.ctl, sizeof(cf__ring_ctl), take(&s, 1),
                            take(&s, 1) % 16);
            break;
        case 6:
            parent_read(&pa);
            break;
        case 7:
            parent_write(&pa, take(&s, 2) % (CF__FRAME_INLINE_MAX + 1));
            break;
        }
    }
out:
    if (pa.in.buf)
        cf__inbuf_free(&pa.in);
    free(pa.ctl);
    free(pa.req_data);
    free(pa.resp_data);
    return 0;
}
