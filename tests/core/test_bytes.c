/* Shared byte blocks (bytes.h): the allocator's rules and errors, and that executors pass blocks
 * by reference instead of copying them: a thread-pool task reads the caller's pages in place, a
 * process-pool worker maps the caller's memfd, and a worker's result in a block is mapped by the
 * parent. Where the bytes live is read from /proc/self/maps (in the worker for arguments, in
 * the parent for results), so a silent fallback to a copy fails these tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cf_test.h"
#include "proc_util.h"

#define BIG (1024u * 1024u)

/* The line of /proc/self/maps whose range holds `p` (empty if none). */
static void map_line(const void *p, char *line, size_t cap)
{
    line[0] = '\0';
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return;
    char buf[512];
    while (fgets(buf, sizeof(buf), f)) {
        unsigned long lo, hi;
        if (sscanf(buf, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi) {
            snprintf(line, cap, "%s", buf);
            break;
        }
    }
    fclose(f);
}

/* Whether `p` lies in a mapping of a block's memfd (the name cf_bytes_alloc gives it). */
static int in_block_mapping(const void *p)
{
    char line[512];
    map_line(p, line, sizeof(line));
    return strstr(line, "memfd:cfutures-bytes") != NULL;
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)(i * 7 + 3);
}

static void fill(unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = pattern(i);
}

static int check_pattern(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern(i))
            return 0;
    return 1;
}

/* What a task saw of its argument. */
typedef struct seen {
    uint64_t addr;  /* where the argument was */
    uint64_t len;   /* its length */
    int32_t intact; /* it holds the pattern */
    int32_t shared; /* it lies in a block's mapping */
} seen;

static int inspect_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    seen *s = malloc(sizeof(*s));
    if (!s)
        return CF_ENOMEM;
    *s = (seen){.addr = (uintptr_t)arg,
                .len = len,
                .intact = check_pattern(arg, len),
                .shared = in_block_mapping(arg)};
    *result = s;
    *result_len = sizeof(*s);
    return 0;
}

/* Returns a block of `n` bytes of the pattern (n the argument), starting `skip` bytes in. */
static int block_result_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    uint64_t nk[2];
    if (len != sizeof(nk))
        return CF_EINVAL;
    memcpy(nk, arg, sizeof(nk));
    unsigned char *p;
    int rc = cf_bytes_alloc((void **)&p, nk[0] + nk[1]);
    if (rc)
        return rc;
    fill(p + nk[1], nk[0]);
    *result = p + nk[1];
    *result_len = nk[0];
    return 0;
}

/* Fails after allocating a block as its result: the library must release it. */
static int block_then_fail_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)arg;
    (void)len;
    int rc = cf_bytes_alloc(result, BIG);
    if (rc)
        return rc;
    *result_len = BIG;
    return cf_task_fail(-7, "failed with a block");
}

static seen submit_inspect(cf_executor *ex, const void *arg, size_t len, int free_block)
{
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, inspect_task, arg, len), 0);
    if (free_block) /* the task still has its reference */
        ck_assert_int_eq(cf_bytes_free((void *)arg), 0);
    const void *data;
    size_t n;
    ck_assert_int_eq(cf_future_result_bytes(&data, &n, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(n, sizeof(seen));
    seen s;
    memcpy(&s, data, sizeof(s));
    cf_future_unref(f);
    ck_assert_uint_eq(s.len, len);
    ck_assert_int_eq(s.intact, 1);
    return s;
}

static unsigned char *frozen_block(size_t len)
{
    unsigned char *p = NULL;
    ck_assert_int_eq(cf_bytes_alloc((void **)&p, len), 0);
    fill(p, len);
    ck_assert_int_eq(cf_bytes_freeze(p), 0);
    return p;
}

/* ---- the allocator ---- */

START_TEST(test_alloc_rejects_bad_input)
{
    void *p = (void *)1;
    ck_assert_int_eq(cf_bytes_alloc(NULL, 10), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_alloc(&p, 0), CF_EINVAL);
    ck_assert_ptr_null(p);
    p = (void *)1;
    ck_assert_int_eq(cf_bytes_alloc(&p, SIZE_MAX), CF_EINVAL);
    ck_assert_ptr_null(p);
    int local;
    ck_assert_int_eq(cf_bytes_freeze(NULL), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_freeze(&local), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_free(&local), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_free(NULL), 0);
}
END_TEST

START_TEST(test_alloc_zeroed_writable_then_frozen_read_only)
{
    unsigned char *p = NULL;
    ck_assert_int_eq(cf_bytes_alloc((void **)&p, 3 * 4096 + 5), 0);
    ck_assert_uint_eq((uintptr_t)p % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
    for (size_t i = 0; i < 3 * 4096 + 5; i++)
        ck_assert_uint_eq(p[i], 0);
    fill(p, 3 * 4096 + 5);
    char line[512];
    map_line(p, line, sizeof(line));
    ck_assert_msg(strstr(line, " rw-s ") != NULL, "writable block mapped as: %s", line);
    /* Only the block's own address names it. */
    ck_assert_int_eq(cf_bytes_freeze(p + 1), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_free(p + 1), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_freeze(p), 0);
    ck_assert_int_eq(cf_bytes_freeze(p), 0); /* again: nothing to do */
    map_line(p, line, sizeof(line));
    ck_assert_msg(strstr(line, " r--p ") != NULL, "frozen block mapped as: %s", line);
    ck_assert_int_eq(check_pattern(p, 3 * 4096 + 5), 1);
    ck_assert_int_eq(cf_bytes_free(p), 0);
    ck_assert_int_eq(cf_bytes_free(p), CF_EINVAL);
    ck_assert_int_eq(cf_bytes_freeze(p), CF_EINVAL);
}
END_TEST

/* ---- arguments ---- */

START_TEST(test_thread_pool_reads_frozen_block_in_place)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    unsigned char *p = frozen_block(4 * BIG);
    /* A range inside the block: by reference, even after the caller freed the block. */
    seen s = submit_inspect(ex, p, BIG, 0);
    ck_assert_uint_eq(s.addr, (uintptr_t)p);
    s = submit_inspect(ex, p, 4 * BIG, 1);
    ck_assert_uint_eq(s.addr, (uintptr_t)p);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_small_or_writable_ranges_are_copied)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    unsigned char *w = NULL;
    ck_assert_int_eq(cf_bytes_alloc((void **)&w, BIG), 0);
    fill(w, BIG);
    seen s = submit_inspect(ex, w, BIG, 0); /* not frozen: copied */
    ck_assert_uint_ne(s.addr, (uintptr_t)w);
    ck_assert_int_eq(s.shared, 0);
    ck_assert_int_eq(cf_bytes_free(w), 0);
    unsigned char *p = frozen_block(BIG);
    s = submit_inspect(ex, p, 64 * 1024, 0); /* 64 KiB or less: copied */
    ck_assert_uint_ne(s.addr, (uintptr_t)p);
    ck_assert_int_eq(cf_bytes_free(p), 0);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_process_worker_maps_the_callers_block)
{
    cf_executor *ex = proc_util_new_pool(1);
    unsigned char *p = frozen_block(8 * BIG);
    seen s = submit_inspect(ex, p, 8 * BIG, 0);
    ck_assert_int_eq(s.shared, 1);
    /* A range that starts inside a page, submitted after the block was freed by the caller
     * for the first of two tasks: the second still reads it. */
    cf_future *f[2];
    ck_assert_int_eq(cf_executor_submit_bytes(&f[0], ex, inspect_task, p, BIG), 0);
    ck_assert_int_eq(cf_executor_submit_bytes(&f[1], ex, inspect_task, p + 4096 * 3, 2 * BIG), 0);
    ck_assert_int_eq(cf_bytes_free(p), 0);
    for (int i = 0; i < 2; i++) {
        const void *data;
        size_t n;
        ck_assert_int_eq(cf_future_result_bytes(&data, &n, f[i], CF_TEST_LONG), 0);
        memcpy(&s, data, sizeof(s));
        ck_assert_int_eq(s.shared, 1);
        ck_assert_uint_eq(s.len, i ? 2 * BIG : BIG);
        cf_future_unref(f[i]);
    }
    /* A small range travels inline, copied. */
    p = frozen_block(BIG);
    s = submit_inspect(ex, p, 1000, 1);
    ck_assert_int_eq(s.shared, 0);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_process_map_bytes_with_block_ranges)
{
    cf_executor *ex = proc_util_new_pool(2);
    unsigned char *p = frozen_block(4 * BIG);
    cf_bytes args[4];
    for (int i = 0; i < 4; i++)
        args[i] = (cf_bytes){.data = p, .len = (size_t)(i + 1) * BIG};
    cf_map *m = NULL;
    ck_assert_int_eq(cf_executor_map_bytes(&m, ex, inspect_task, args, 4, CF_FOREVER, 1), 0);
    ck_assert_int_eq(cf_bytes_free(p), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(cf_map_next(NULL, m), 0);
        const void *data;
        size_t n;
        ck_assert_int_eq(cf_future_result_bytes(&data, &n, cf_map_current(m), 0), 0);
        seen s;
        memcpy(&s, data, sizeof(s));
        ck_assert_uint_eq(s.len, args[i].len);
        ck_assert_int_eq(s.intact, 1);
        ck_assert_int_eq(s.shared, 1);
    }
    cf_map_free(m);
    cf_executor_free(ex);
}
END_TEST

/* ---- results ---- */

static void check_block_result(cf_executor *ex, uint64_t n, uint64_t skip, int mapped)
{
    uint64_t nk[2] = {n, skip};
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, block_result_task, nk, sizeof(nk)), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, n);
    ck_assert_int_eq(check_pattern(data, len), 1);
    ck_assert_int_eq(in_block_mapping(data), mapped);
    /* The library owns it now. */
    ck_assert_int_eq(cf_bytes_free((void *)data), CF_EINVAL);
    cf_future_unref(f);
}

START_TEST(test_thread_pool_result_block_handed_over)
{
    cf_executor *ex = NULL;
    ck_assert_int_eq(cf_thread_pool_new(&ex, NULL), 0);
    check_block_result(ex, BIG, 0, 1);
    check_block_result(ex, 1000, 123, 1);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, block_then_fail_task, NULL, 0), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

START_TEST(test_process_result_block_mapped_by_parent)
{
    cf_executor *ex = proc_util_new_pool(1);
    check_block_result(ex, 8 * BIG, 0, 1);
    check_block_result(ex, BIG, 4096 + 17, 1); /* a range inside the worker's block */
    check_block_result(ex, 1000, 0, 0);        /* small: inline in the ring, copied */
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, block_then_fail_task, NULL, 0), 0);
    ck_assert_int_eq(cf_future_result(NULL, f, CF_TEST_LONG), CF_ETASK);
    cf_future_unref(f);
    /* The worker keeps working after passing blocks on. */
    check_block_result(ex, 2 * BIG, 0, 1);
    cf_executor_free(ex);
}
END_TEST

/* The echo of a 64 MiB argument, by reference both ways (the benchmark's workload). */
static int echo_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *p;
    int rc = cf_bytes_alloc(&p, len);
    if (rc)
        return rc;
    memcpy(p, arg, len);
    *result = p;
    *result_len = len;
    return 0;
}

START_TEST(test_process_round_trip_of_block)
{
    cf_executor *ex = proc_util_new_pool(1);
    unsigned char *p = frozen_block(16 * BIG);
    cf_future *f = NULL;
    ck_assert_int_eq(cf_executor_submit_bytes(&f, ex, echo_task, p, 16 * BIG), 0);
    ck_assert_int_eq(cf_bytes_free(p), 0);
    const void *data;
    size_t len;
    ck_assert_int_eq(cf_future_result_bytes(&data, &len, f, CF_TEST_LONG), 0);
    ck_assert_uint_eq(len, 16 * BIG);
    ck_assert_int_eq(check_pattern(data, len), 1);
    ck_assert_int_eq(in_block_mapping(data), 1);
    cf_future_unref(f);
    cf_executor_free(ex);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bytes");
    TCase *tc = cf_test_tcase("alloc");
    tcase_add_test(tc, test_alloc_rejects_bad_input);
    tcase_add_test(tc, test_alloc_zeroed_writable_then_frozen_read_only);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("arguments");
    tcase_add_test(tc, test_thread_pool_reads_frozen_block_in_place);
    tcase_add_test(tc, test_small_or_writable_ranges_are_copied);
    tcase_add_test(tc, test_process_worker_maps_the_callers_block);
    tcase_add_test(tc, test_process_map_bytes_with_block_ranges);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("results");
    tcase_add_test(tc, test_thread_pool_result_block_handed_over);
    tcase_add_test(tc, test_process_result_block_mapped_by_parent);
    tcase_add_test(tc, test_process_round_trip_of_block);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
