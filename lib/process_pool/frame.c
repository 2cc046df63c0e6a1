/* Encoding and decoding of process-pool frames (see process_pool/frame.h). */
#include <string.h>

#include "core/internal.h"
#include "process_pool/frame.h"

/* The on-wire header: 48 bytes, no implicit padding. */
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
    uint64_t fd_offset;
} wire_header;

_Static_assert(sizeof(wire_header) == CF__FRAME_HEADER, "frame header must be 48 bytes");

static size_t pad16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static size_t inline_len(const cf__frame *f)
{
    return (f->flags & CF__FRAME_FD) ? 0 : (size_t)f->len;
}

size_t cf__frame_size(const cf__frame *f)
{
    return pad16(CF__FRAME_HEADER + inline_len(f));
}

void cf__frame_encode_header(unsigned char *out, const cf__frame *f)
{
    wire_header h = {
        .magic = CF__FRAME_MAGIC,
        .type = f->type,
        .flags = f->flags,
        .code = f->code,
        .module = f->module,
        .id = f->id,
        .offset = f->offset,
        .len = f->len,
        .fd_offset = f->fd_offset,
    };
    memcpy(out, &h, sizeof(h));
}

size_t cf__frame_encode(unsigned char *out, const cf__frame *f, const void *payload)
{
    cf__frame_encode_header(out, f);
    size_t n = inline_len(f);
    if (n)
        memcpy(out + CF__FRAME_HEADER, payload, n);
    size_t total = cf__frame_size(f);
    memset(out + CF__FRAME_HEADER + n, 0, total - CF__FRAME_HEADER - n);
    return total;
}

/* Per-type rules on top of the generic ones. */
static int check_type(const wire_header *h)
{
    bool fd = h->flags & CF__FRAME_FD;
    if ((h->flags & CF__FRAME_FN) && h->type != CF__FR_INIT)
        return CF_EINVAL;
    switch (h->type) {
    case CF__FR_INIT:
    case CF__FR_TASK:
        return 0;
    case CF__FR_MODULE:
        return !fd && h->code >= 0 && (uint32_t)h->code <= CF__FRAME_MODULE_ID_MAX &&
                       h->len >= (uint64_t)h->code &&
                       h->len - (uint64_t)h->code <= CF__FRAME_NAME_MAX
                   ? 0
                   : CF_EINVAL;
    case CF__FR_EXIT:
    case CF__FR_READY:
        return h->len == 0 && !fd ? 0 : CF_EINVAL;
    case CF__FR_INIT_FAILED:
        return h->code != 0 && !fd ? 0 : CF_EINVAL;
    case CF__FR_RESULT:
        return h->code == 0 || !fd ? 0 : CF_EINVAL; /* messages are always inline */
    default:
        return CF_EINVAL;
    }
}

int cf__frame_decode(cf__frame *f, const unsigned char **payload, size_t *consumed,
                     const unsigned char *buf, size_t avail)
{
    if (avail < CF__FRAME_HEADER)
        return 0;
    wire_header h;
    memcpy(&h, buf, sizeof(h));
    if (h.magic != CF__FRAME_MAGIC || h.reserved || (h.flags & ~CF__FRAME_FLAGS))
        return CF_EINVAL;
    bool fd = h.flags & CF__FRAME_FD;
    if (!fd && (h.len > CF__FRAME_INLINE_MAX || h.fd_offset))
        return CF_EINVAL;
    /* A memfd payload must be addressable: offset + len cannot overflow a size_t. */
    if (fd && (h.len > (uint64_t)(SIZE_MAX / 4) || h.fd_offset > (uint64_t)(SIZE_MAX / 4)))
        return CF_EINVAL;
    int rc = check_type(&h);
    if (rc)
        return rc;
    *f = (cf__frame){
        .type = h.type,
        .flags = h.flags,
        .code = h.code,
        .module = h.module,
        .id = h.id,
        .offset = h.offset,
        .len = h.len,
        .fd_offset = h.fd_offset,
    };
    size_t total = cf__frame_size(f);
    if (avail < total)
        return 0;
    *payload = (!fd && h.len) ? buf + CF__FRAME_HEADER : NULL;
    *consumed = total;
    return 1;
}
