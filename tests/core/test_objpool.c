/* The object pools behind futures and loop tasks (white-box): one cache line per future, no
 * malloc in a burst, objects that flow between threads through the depot, memory given back
 * after a peak and by exiting threads, freed objects invisible to the memory checkers, fork. */
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"
#include "core/objpool.h"

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif

#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CF_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#endif

enum { MANY = 200000 };

static cf_future **new_futures(size_t n)
{
    cf_future **fs = malloc(n * sizeof(*fs));
    ck_assert_ptr_nonnull(fs);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(cf_future_new(&fs[i]), 0);
    return fs;
}

static void unref_all(cf_future **fs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_future_unref(fs[i]);
    free(fs);
}

/* The futures' pool after this thread's cache and the depot went back to the slabs. */
static cf__objpool_stats pool_stats(void)
{
    cf__future_pool_flush();
    cf__objpool_stats s;
    cf__future_pool_stats(&s);
    return s;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return (x > y) - (x < y);
}

/* A future is one cache line, on a cache line of its own, and no two overlap. */
START_TEST(test_futures_are_aligned_cache_lines)
{
    enum { N = 5000 };
#if UINTPTR_MAX == UINT64_MAX
    ck_assert_uint_eq(sizeof(struct cf_future), 64);
#endif
    cf_future **fs = new_futures(N);
    uintptr_t *at = malloc(N * sizeof(*at));
    ck_assert_ptr_nonnull(at);
    for (size_t i = 0; i < N; i++) {
        at[i] = (uintptr_t)fs[i];
        ck_assert_uint_eq(at[i] % 64, 0);
    }
    qsort(at, N, sizeof(*at), cmp_ptr);
    for (size_t i = 1; i < N; i++)
        ck_assert_uint_ge(at[i] - at[i - 1], sizeof(struct cf_future));
    free(at);
    unref_all(fs, N);
}
END_TEST

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* However many futures are alive at once, none comes from malloc. */
START_TEST(test_burst_never_reaches_malloc)
{
    cf_future **fs = malloc(MANY * sizeof(*fs));
    ck_assert_ptr_nonnull(fs);
    size_t before = heap_in_use();
    for (size_t i = 0; i < MANY; i++)
        ck_assert_int_eq(cf_future_new(&fs[i]), 0);
    size_t during = heap_in_use();
    for (size_t i = 0; i < MANY; i++)
        cf_future_unref(fs[i]);
    size_t after = heap_in_use();
    free(fs);
    /* 200,000 malloc'd futures would be 20 MB. */
    ck_assert_uint_lt(during, before + (64u << 10));
    ck_assert_uint_lt(after, before + (64u << 10));
}
END_TEST

/* After a peak, the slabs whose objects all came back are unmapped (a few stay spare). */
START_TEST(test_memory_given_back_after_a_peak)
{
    cf__objpool_stats s0 = pool_stats();
    cf_future **fs = new_futures(MANY);
    cf__objpool_stats peak = pool_stats();
    ck_assert_uint_ge(peak.out, s0.out + MANY);
    ck_assert_uint_ge(peak.mapped_bytes, MANY * sizeof(struct cf_future));
    unref_all(fs, MANY);
    cf__objpool_stats after = pool_stats();
    ck_assert_uint_eq(after.out, s0.out);
    ck_assert_uint_eq(after.depot, 0);
    /* Spares and the rest of a mapped region of 16 slabs remain, not the 12 MiB of the peak. */
    ck_assert_uint_le(after.mapped_bytes, s0.mapped_bytes + (32u << 16));
}
END_TEST

/* A pool keeps up to about 2 MiB of empty slabs mapped: a second burst of that size reuses
 * the memory of the first (resident already: no page faults) instead of mapping more. */
START_TEST(test_second_burst_reuses_memory)
{
    enum { N = 20000 }; /* 1.25 MiB of futures */
    cf__future_pool_flush();
    cf_future **fs = new_futures(N);
    unref_all(fs, N);
    cf__objpool_stats first;
    cf__future_pool_stats(&first);
    fs = new_futures(N);
    cf__objpool_stats second;
    cf__future_pool_stats(&second);
    unref_all(fs, N);
    ck_assert_uint_eq(second.mapped_bytes, first.mapped_bytes);
}
END_TEST

static void *alloc_and_leave(void *arg)
{
    cf_future **fs = arg;
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(cf_future_new(&fs[i]), 0);
    return NULL;
}

static void *free_and_leave(void *arg)
{
    cf_future **fs = arg;
    for (int i = 0; i < 100; i++)
        cf_future_unref(fs[i]);
    return NULL;
}

/* A thread that only allocates (its run of never-used objects) and one that only frees (its
 * magazines) give back what they cached when they exit. */
START_TEST(test_exiting_threads_give_back_their_caches)
{
    cf__objpool_stats s0 = pool_stats();
    for (int round = 0; round < 20; round++) {
        cf_future *fs[100];
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, alloc_and_leave, fs), 0);
        pthread_join(t, NULL);
        ck_assert_int_eq(pthread_create(&t, NULL, free_and_leave, fs), 0);
        pthread_join(t, NULL);
    }
    cf__objpool_stats after = pool_stats();
    ck_assert_uint_eq(after.out, s0.out);
}
END_TEST

typedef struct handoff {
    cf_future **fs;
    size_t n;
} handoff;

static void *free_all(void *arg)
{
    handoff *h = arg;
    for (size_t i = 0; i < h->n; i++)
        cf_future_unref(h->fs[i]);
    return NULL;
}

/* Objects freed by one thread come back to another a magazine at a time through the depot: a
 * producer reuses what a consumer freed. */
START_TEST(test_objects_flow_back_through_the_depot)
{
    enum { N = 2000 };
    cf__future_pool_flush();
    cf_future **fs = new_futures(N);
    uintptr_t *first = malloc(N * sizeof(*first));
    ck_assert_ptr_nonnull(first);
    for (size_t i = 0; i < N; i++)
        first[i] = (uintptr_t)fs[i];
    handoff h = {fs, N};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, free_all, &h), 0);
    pthread_join(t, NULL);
    /* The consumer's full magazines went to the depot. */
    cf__objpool_stats mid;
    cf__future_pool_stats(&mid);
    ck_assert_uint_ge(mid.depot, CF__OBJPOOL_MAG);
    cf_future **again = new_futures(N);
    qsort(first, N, sizeof(*first), cmp_ptr);
    size_t reused = 0;
    for (size_t i = 0; i < N; i++) {
        uintptr_t p = (uintptr_t)again[i];
        reused += bsearch(&p, first, N, sizeof(*first), cmp_ptr) != NULL;
    }
    ck_assert_uint_ge(reused, N / 2);
    free(first);
    free(fs);
    unref_all(again, N);
}
END_TEST

/* A freed future is off limits to the memory checkers until it is handed out again. */
START_TEST(test_freed_objects_are_poisoned)
{
    cf_future *f;
    ck_assert_int_eq(cf_future_new(&f), 0);
#ifdef TEST_ASAN
    ck_assert(!__asan_address_is_poisoned(f));
#endif
#ifdef CF_HAVE_VALGRIND
    /* GET_VBITS answers 3 for memory memcheck holds unaddressable, without reporting it (and 0
     * when not running under memcheck). */
    char vbits[sizeof(*f)];
    unsigned before = VALGRIND_GET_VBITS(f, vbits, sizeof(*f));
    ck_assert_uint_ne(before, 3);
#endif
    cf_future_unref(f);
#ifdef TEST_ASAN
    ck_assert(__asan_address_is_poisoned(f));
    ck_assert(__asan_address_is_poisoned((char *)f + 63));
#endif
#ifdef CF_HAVE_VALGRIND
    if (before == 1) /* under memcheck */
        ck_assert_uint_eq(VALGRIND_GET_VBITS(f, vbits, sizeof(*f)), 3);
#endif
    (void)f;
}
END_TEST

/* In a child of fork() the pool works (its lock is not left held). */
START_TEST(test_pool_works_after_fork)
{
#if !defined(TEST_ASAN) && !defined(TEST_TSAN)
    cf_future **fs = new_futures(1000);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cf_future *f;
        for (int i = 0; i < 100000; i++) {
            if (cf_future_new(&f) != 0)
                _exit(2);
            cf_future_unref(f);
        }
        unref_all(fs, 1000); /* the child's copies, released there */
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    unref_all(fs, 1000);
#endif
}
END_TEST

START_TEST(test_allocation_failure)
{
#ifdef CF_FAULT_INJECTION
    cf_future *f = (cf_future *)1;
    cf__fault_arm(CF__FAULT_ALLOC, 1);
    ck_assert_int_eq(cf_future_new(&f), CF_ENOMEM);
    ck_assert_ptr_null(f);
    cf__fault_arm(0, 0);
    ck_assert_int_eq(cf_future_new(&f), 0);
    cf_future_unref(f);
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("objpool");
    TCase *tc = cf_test_tcase("futures");
    tcase_add_test(tc, test_futures_are_aligned_cache_lines);
    tcase_add_test(tc, test_burst_never_reaches_malloc);
    tcase_add_test(tc, test_memory_given_back_after_a_peak);
    tcase_add_test(tc, test_second_burst_reuses_memory);
    tcase_add_test(tc, test_exiting_threads_give_back_their_caches);
    tcase_add_test(tc, test_objects_flow_back_through_the_depot);
    tcase_add_test(tc, test_freed_objects_are_poisoned);
    tcase_add_test(tc, test_pool_works_after_fork);
    tcase_add_test(tc, test_allocation_failure);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
