/* libFuzzer target for the process pool's frame decoder (lib/process_pool/frame.c), the code that
 * reads bytes written by worker processes. The input is treated as a stream received on a worker's
 * socket and decoded frame by frame, as the parent does; it lives in a heap block of exactly its
 * size, so AddressSanitizer reports any read outside it. For every frame accepted, the decoder's
 * promises are checked: the bytes consumed are within the input, a multiple of 16 and what
 * cf__frame_size() says; an inline payload lies inside the frame; re-encoding the frame gives
 * back the same header and payload bytes; and every strict prefix of the frame is "incomplete"
 * (0), never an error and never a frame. Built with -Dfuzz=true (clang); see .ci/matrix. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "process_pool/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static unsigned char encoded[CF__FRAME_MAX];

static void check_frame(const unsigned char *at, size_t avail, const cf__frame *f,
                        const unsigned char *payload, size_t used)
{
    bool fd = f->flags & CF__FRAME_FD;
    size_t inline_len = fd ? 0 : (size_t)f->len;
    REQUIRE(used >= CF__FRAME_HEADER && used <= avail && used % 16 == 0);
    REQUIRE(used == cf__frame_size(f) && used <= CF__FRAME_MAX);
    REQUIRE(inline_len <= used - CF__FRAME_HEADER);
    if (payload)
        REQUIRE(!fd && f->len > 0 && payload == at + CF__FRAME_HEADER);
    else
        REQUIRE(fd || f->len == 0);
    REQUIRE((f->flags & ~CF__FRAME_FLAGS) == 0);
    REQUIRE(f->type >= CF__FR_INIT && f->type <= CF__FR_RESULT);
    /* The same header and payload come out of the encoder. */
    REQUIRE(cf__frame_encode(encoded, f, payload) == used);
    REQUIRE(memcmp(encoded, at, CF__FRAME_HEADER + inline_len) == 0);
    /* Every strict prefix is incomplete. */
    for (size_t cut = 0; cut < used; cut += cut < 64 ? 1 : 61) {
        cf__frame g;
        const unsigned char *p;
        size_t u;
        REQUIRE(cf__frame_decode(&g, &p, &u, at, cut) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    size_t off = 0;
    while (off < size) {
        cf__frame f;
        const unsigned char *payload = NULL;
        size_t used = 0;
        int rc = cf__frame_decode(&f, &payload, &used, buf + off, size - off);
        REQUIRE(rc == 1 || rc == 0 || rc == CF_EINVAL);
        if (rc != 1)
            break;
        check_frame(buf + off, size - off, &f, payload, used);
        off += used;
    }
    free(buf);
    return 0;
}
