/* The process pool's frame decoder (white-box): valid frames round-trip, every truncation asks
 * for more bytes, and arbitrary bytes never make it read outside the buffer (run under ASan or
 * valgrind to check that part) or accept an impossible frame. */
#include <string.h>

#include "cf_test.h"
#include "core/internal.h"
#include "process_pool/frame.h"

static size_t encode(unsigned char *buf, const cf__frame *f, const void *payload)
{
    ck_assert_uint_le(cf__frame_size(f), CF__FRAME_MAX);
    return cf__frame_encode(buf, f, payload);
}

START_TEST(test_round_trip_and_truncation)
{
    static unsigned char buf[CF__FRAME_MAX];
    const char *msg = "a message";
    cf__frame frames[] = {
        {.type = CF__FR_TASK, .id = 7, .module = 2, .offset = 0x1234, .len = 9},
        {.type = CF__FR_RESULT, .id = 7, .code = -42, .len = 9},
        {.type = CF__FR_RESULT, .id = 8, .flags = CF__FRAME_FD, .len = 1u << 30},
        {.type = CF__FR_INIT, .flags = CF__FRAME_FN, .id = 3, .len = 0},
        {.type = CF__FR_EXIT},
        {.type = CF__FR_READY, .id = 99},
        {.type = CF__FR_MODULE, .id = 0, .len = 9},
    };
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        size_t n = encode(buf, &frames[i], msg);
        ck_assert_uint_eq(n % 16, 0);
        for (size_t cut = 0; cut < n; cut++) {
            cf__frame f;
            const unsigned char *p;
            size_t used;
            ck_assert_int_eq(cf__frame_decode(&f, &p, &used, buf, cut), 0);
        }
        cf__frame f;
        const unsigned char *p;
        size_t used;
        ck_assert_int_eq(cf__frame_decode(&f, &p, &used, buf, n), 1);
        ck_assert_uint_eq(used, n);
        ck_assert_int_eq(f.type, frames[i].type);
        ck_assert_int_eq(f.code, frames[i].code);
        ck_assert_uint_eq(f.id, frames[i].id);
        ck_assert_uint_eq(f.len, frames[i].len);
        if (!(f.flags & CF__FRAME_FD) && f.len)
            ck_assert_int_eq(memcmp(p, msg, 9), 0);
    }
}
END_TEST

START_TEST(test_invalid_frames_rejected)
{
    static unsigned char buf[CF__FRAME_MAX + 64];
    cf__frame bad[] = {
        {.type = 0},
        {.type = 99},
        {.type = CF__FR_TASK, .flags = 0x80},
        {.type = CF__FR_TASK, .flags = CF__FRAME_FN},
        {.type = CF__FR_EXIT, .len = 1},
        {.type = CF__FR_READY, .flags = CF__FRAME_FD},
        {.type = CF__FR_INIT_FAILED, .code = 0},
        {.type = CF__FR_RESULT, .code = -1, .flags = CF__FRAME_FD, .len = 4},
        {.type = CF__FR_MODULE, .flags = CF__FRAME_FD, .len = 4},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(buf, 0, sizeof(buf));
        cf__frame_encode(buf, &(cf__frame){.type = CF__FR_EXIT}, NULL); /* valid magic */
        /* Patch the header fields by encoding the bad frame without a payload. */
        cf__frame h = bad[i];
        h.flags |= CF__FRAME_FD;
        cf__frame_encode(buf, &h, NULL);
        buf[5] = bad[i].flags; /* restore the intended flags byte */
        cf__frame f;
        const unsigned char *p;
        size_t used;
        ck_assert_int_eq(cf__frame_decode(&f, &p, &used, buf, sizeof(buf)), CF_EINVAL);
    }
    /* An inline length beyond the maximum is rejected, not waited for. */
    cf__frame big = {.type = CF__FR_TASK, .flags = CF__FRAME_FD, .len = CF__FRAME_INLINE_MAX + 1};
    cf__frame_encode(buf, &big, NULL);
    buf[5] = 0;
    cf__frame f;
    const unsigned char *p;
    size_t used;
    ck_assert_int_eq(cf__frame_decode(&f, &p, &used, buf, CF__FRAME_HEADER), CF_EINVAL);
    /* Bad magic. */
    cf__frame_encode(buf, &(cf__frame){.type = CF__FR_EXIT}, NULL);
    buf[0] ^= 1;
    ck_assert_int_eq(cf__frame_decode(&f, &p, &used, buf, CF__FRAME_HEADER), CF_EINVAL);
}
END_TEST

START_TEST(test_random_bytes_never_overread)
{
    /* Heap buffers of exact size, so ASan/valgrind flag any read past the end. */
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(seed % 200);
        unsigned char *buf = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            buf[i] = (unsigned char)(seed >> 56);
        }
        /* Half the rounds start with a valid magic so the deeper checks run. */
        if (round % 2 && n >= 4)
            memcpy(buf, &(uint32_t){CF__FRAME_MAGIC}, 4);
        cf__frame f;
        const unsigned char *p;
        size_t used;
        int rc = cf__frame_decode(&f, &p, &used, buf, n);
        ck_assert(rc == 0 || rc == 1 || rc == CF_EINVAL);
        if (rc == 1) {
            ck_assert_uint_le(used, n);
            if (p)
                ck_assert(p >= buf && p + f.len <= buf + n);
        }
        free(buf);
        seed = seed * 6364136223846793005u + 1442695040888963407u;
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("proc_frame");
    TCase *tc = cf_test_tcase("decode");
    tcase_add_test(tc, test_round_trip_and_truncation);
    tcase_add_test(tc, test_invalid_frames_rejected);
    tcase_add_test(tc, test_random_bytes_never_overread);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
