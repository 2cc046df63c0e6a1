/* The frames of the MPI executor's protocol (mpi_internal.h): a fixed 48-byte header and an
 * inline payload padded to 16 bytes, so that every payload in a batch is 16-byte aligned. All
 * ranks run the same build on the same architecture (the function naming needs it anyway), so
 * fields are in host byte order. The decoder never reads outside the bytes received: a batch that
 * is not a sequence of whole valid frames is an error, never an out-of-bounds read.
 * The header has the process pool's frame layout on purpose, but not its code: this library is
 * built on the public interface only (executor_impl.h), as an outside engine would be, and the
 * process pool's codec is internal to libcfutures. */
#include <stdlib.h>
#include <string.h>

#include "mpi_internal.h"

typedef struct wire_header {
    uint32_t magic;
    uint8_t type;
    uint8_t flags;
    uint16_t reserved;
    int32_t code;
    uint32_t module;
    uint64_t id;
    uint64_t offset;
    uint64_t len;
    uint64_t reserved2;
} wire_header;

_Static_assert(sizeof(wire_header) == FR_HEADER, "frame header must be 48 bytes");

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static size_t inline_len(const frame *f)
{
    return (f->flags & FR_OOL) ? 0 : (size_t)f->len;
}

size_t fr_size(const frame *f)
{
    return pad16(FR_HEADER + inline_len(f));
}

void fr_encode(unsigned char *out, const frame *f, const void *payload)
{
    wire_header h = {
        .magic = FR_MAGIC,
        .type = f->type,
        .flags = f->flags,
        .code = f->code,
        .module = f->module,
        .id = f->id,
        .offset = f->offset,
        .len = f->len,
    };
    memcpy(out, &h, sizeof(h));
    size_t n = inline_len(f);
    if (n)
        memcpy(out + FR_HEADER, payload, n);
    memset(out + FR_HEADER + n, 0, fr_size(f) - FR_HEADER - n);
}

/* Per-type rules on top of the generic ones. */
static bool type_ok(const wire_header *h)
{
    bool ool = h->flags & FR_OOL;
    switch (h->type) {
    case FR_HELLO:
    case FR_READY:
        return !ool && h->len == sizeof(peer_info);
    case FR_MODULE:
        return !ool && h->code >= 0 && h->code <= CF_MODULE_ID_MAX && h->len >= (uint64_t)h->code &&
               h->len - (uint64_t)h->code <= FR_PATH_MAX;
    case FR_TASK:
        return true;
    case FR_EXIT:
        return !ool && h->len == 0;
    case FR_RESULT:
        return h->code == 0 || !ool; /* messages are always inline */
    default:
        return false;
    }
}

int fr_decode(frame *f, const unsigned char **payload, size_t *consumed, const unsigned char *buf,
              size_t avail)
{
    if (avail == 0)
        return 0;
    if (avail < FR_HEADER)
        return CF_EINVAL;
    wire_header h;
    memcpy(&h, buf, sizeof(h));
    if (h.magic != FR_MAGIC || h.reserved || h.reserved2 || (h.flags & ~FR_OOL) || !type_ok(&h))
        return CF_EINVAL;
    bool ool = h.flags & FR_OOL;
    if ((!ool && h.len > FR_INLINE_MAX) || (ool && h.len > (uint64_t)PTRDIFF_MAX))
        return CF_EINVAL;
    *f = (frame){
        .type = h.type,
        .flags = h.flags,
        .code = h.code,
        .module = h.module,
        .id = h.id,
        .offset = h.offset,
        .len = h.len,
    };
    size_t total = fr_size(f);
    if (avail < total)
        return CF_EINVAL;
    *payload = (!ool && h.len) ? buf + FR_HEADER : NULL;
    *consumed = total;
    return 1;
}

int batch_add(batch *b, const frame *f, const void *payload)
{
    size_t need = fr_size(f);
    if (b->cap - b->len < need) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < need)
            cap *= 2;
        unsigned char *grown = realloc(b->buf, cap);
        if (!grown)
            return CF_ENOMEM;
        b->buf = grown;
        b->cap = cap;
    }
    fr_encode(b->buf + b->len, f, payload);
    b->len += need;
    return 0;
}

unsigned char *batch_take(batch *b, size_t *len)
{
    unsigned char *buf = b->buf;
    *len = b->len;
    *b = (batch){0};
    return buf;
}

void batch_free(batch *b)
{
    free(b->buf);
    *b = (batch){0};
}
