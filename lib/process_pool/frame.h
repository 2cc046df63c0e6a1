/* The process pool's wire format: frames exchanged between the parent and a worker over the
 * worker's socket. Not installed.
 *
 * A frame is a fixed 48-byte header followed by `len` inline payload bytes, padded to a multiple
 * of 16 so that every payload is 16-byte aligned in a 16-byte aligned buffer. Frames travel in
 * the worker's shared-memory rings (process_pool/ring.h). A payload flagged CF__FRAME_FD is not
 * inline: it lives in a sealed memfd, at `fd_offset`, passed with SCM_RIGHTS on the worker's
 * socket before the frame's first byte is published. Both ends are the same program on the same
 * machine, so fields are in host byte order.
 *
 * The decoder is a pure function over (buffer, length) and never reads outside it: a peer that
 * sends garbage produces an error, not an out-of-bounds read. */
#ifndef CFUTURES_PROC_FRAME_H
#define CFUTURES_PROC_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CF__FRAME_MAGIC         0x43465046u /* "FPFC" */
#define CF__FRAME_HEADER        48u
#define CF__FRAME_INLINE_MAX    (64u * 1024u) /* larger payloads travel in a memfd */
#define CF__FRAME_NAME_MAX      4096u         /* module path */
#define CF__FRAME_MODULE_ID_MAX 64u           /* module identity (CF_MODULE_ID_MAX) */
#define CF__FRAME_MODULES_MAX   1024u         /* MODULE ids per worker: 0 to this - 1 */
#define CF__FRAME_MAX           (CF__FRAME_HEADER + CF__FRAME_INLINE_MAX)

typedef enum cf__frame_type {
    /* parent -> worker */
    CF__FR_INIT = 1,   /* first frame: id = max tasks (0: no limit); FN flag: initializer */
    CF__FR_MODULE = 2, /* id = module number (dense, from 0); payload = identity (`code` bytes,
                        * at most CF_MODULE_ID_MAX) then the module path */
    CF__FR_TASK = 3,   /* id = task id; module + offset = function; payload = argument */
    CF__FR_EXIT = 4,   /* exit once the frames before this one are done */
    /* worker -> parent */
    CF__FR_READY = 5,       /* id = pid; the initializer succeeded */
    CF__FR_INIT_FAILED = 6, /* id = pid; code = initializer's code; payload = message */
    CF__FR_RESULT = 7,      /* id = task id; code = 0 and payload = result, or code and message */
} cf__frame_type;

enum {
    CF__FRAME_FD = 1u << 0, /* payload is in the next passed memfd, `len` bytes long */
    CF__FRAME_FN = 1u << 1, /* INIT: module + offset name an initializer */
    CF__FRAME_FLAGS = CF__FRAME_FD | CF__FRAME_FN,
};

/* The decoded header. */
typedef struct cf__frame {
    uint8_t type;
    uint8_t flags;
    int32_t code;
    uint32_t module;
    uint64_t id;
    uint64_t offset;
    uint64_t len;       /* payload length, inline or in the memfd */
    uint64_t fd_offset; /* CF__FRAME_FD: where the payload starts in the memfd (else 0) */
} cf__frame;

/* Bytes the frame occupies in a stream: header plus inline payload, padded. */
size_t cf__frame_size(const cf__frame *f);

/* Writes the header and, unless CF__FRAME_FD is set, `f->len` payload bytes from `payload`
 * followed by zero padding, into `out`, which must hold cf__frame_size(f) bytes. Returns the
 * number of bytes written. */
size_t cf__frame_encode(unsigned char *out, const cf__frame *f, const void *payload);

/* Writes the CF__FRAME_HEADER bytes of the header alone (the payload follows it in the stream). */
void cf__frame_encode_header(unsigned char *out, const cf__frame *f);

/* Decodes the frame at the start of `buf` (`avail` bytes). Returns 1 with the header in `*f`,
 * the inline payload in `*payload` (NULL for none or for a memfd payload) and the bytes to
 * consume in `*consumed`; 0 if `avail` does not hold the whole frame yet; CF_EINVAL if the bytes
 * cannot be a valid frame (bad magic, type, flags, reserved bits or length). Pure: no state, no
 * allocation, reads only buf[0, avail). */
int cf__frame_decode(cf__frame *f, const unsigned char **payload, size_t *consumed,
                     const unsigned char *buf, size_t avail);

#endif
