/* Resource lifetimes that leak checkers cannot always see in a short test: memory kept by threads
 * that exit, and descriptors or threads left behind by pools. Each case repeats the pattern
 * enough times that a leak shows as growth measured in-process (glibc's mallinfo2, the entries
 * of /proc/self/fd, the Threads: line of /proc/self/status), and also leaves the evidence to
 * valgrind and LeakSanitizer in the sanitizer runs. */
#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "cf_test_sync.h"

static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* Fills the global store of free futures: a thread that frees many futures hands the surplus of
 * its own cache there. */
static void fill_future_depot(void)
{
    enum { N = 2000 };
    static cf_future *fs[N];
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(cf_future_new(&fs[i]), 0);
    for (int i = 0; i < N; i++)
        cf_future_unref(fs[i]);
}

static void *allocate_one(void *arg)
{
    ck_assert_int_eq(cf_future_new((cf_future **)arg), 0);
    return NULL;
}

/* A thread that only allocates futures (a submitter whose futures are released elsewhere) takes a
 * batch of free futures into its cache; the batch must be released when the thread exits.
 * Futures come from the object pool, not the heap: this checks that nothing else of such a
 * thread stays on the heap; the objpool suite checks the pool's own count of what the thread
 * took (test_exiting_threads_give_back_their_caches). */
START_TEST(test_thread_that_only_allocates_leaks_nothing)
{
    enum { ROUNDS = 100 };
    fill_future_depot();
    size_t before = heap_in_use();
    for (int i = 0; i < ROUNDS; i++) {
        cf_future *f = NULL;
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, allocate_one, &f), 0);
        pthread_join(t, NULL);
        cf_future_unref(f);
        fill_future_depot();
    }
    size_t after = heap_in_use();
    /* A leaked batch is a hundred futures per thread: megabytes over the rounds. */
    ck_assert_msg(after < before + (256u << 10), "heap grew by %zu bytes over %d threads",
                  after - before, ROUNDS);
}
END_TEST

static int identity(void *arg, void **result)
{
    *result = arg;
    return 0;
}

static int bytes_echo(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *copy = malloc(len ? len : 1);
    if (!copy)
        return CF_ENOMEM;
    memcpy(copy, arg, len);
    *result = copy;
    *result_len = len;
    return 0;
}

/* Pools of both kinds, created, used and freed many times, leave no descriptor, thread or
 * child process behind. */
START_TEST(test_pools_leave_no_descriptors_or_threads)
{
    /* The first process pool opens the program image once for the whole process. */
    cf_executor *first = NULL;
    ck_assert_int_eq(cf_process_pool_new(&first, NULL), 0);
    ck_assert_int_eq(cf_executor_free(first), 0);
    int fds = cf_test_count_fds(), threads = cf_test_count_threads();
    for (int i = 0; i < 20; i++) {
        cf_executor *tp = cf_test_pool(3);
        cf_executor *pp = NULL;
        ck_assert_int_eq(cf_process_pool_new(&pp, &(cf_process_pool_options){.max_workers = 2}), 0);
        cf_future *a, *b;
        ck_assert_int_eq(cf_executor_submit(&a, tp, identity, &fds), 0);
        ck_assert_int_eq(cf_executor_submit_bytes(&b, pp, bytes_echo, "xyz", 3), 0);
        void *v;
        ck_assert_int_eq(cf_future_result(&v, a, CF_TEST_LONG), 0);
        ck_assert_ptr_eq(v, &fds);
        const void *data;
        size_t len;
        ck_assert_int_eq(cf_future_result_bytes(&data, &len, b, CF_TEST_LONG), 0);
        ck_assert_uint_eq(len, 3);
        cf_future_unref(a);
        cf_future_unref(b);
        ck_assert_int_eq(cf_executor_free(tp), 0);
        ck_assert_int_eq(cf_executor_free(pp), 0);
    }
    ck_assert_int_eq(cf_test_count_fds(), fds);
    /* A joined thread leaves the kernel's count a moment after pthread_join() returns. */
    double end = cf_test_monotonic() + CF_TEST_LONG;
    while (cf_test_count_threads() != threads && cf_test_monotonic() < end)
        cf_test_pause_ms(1);
    ck_assert_int_eq(cf_test_count_threads(), threads);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("leaks");
    TCase *tc = cf_test_tcase("lifetimes");
    tcase_add_test(tc, test_thread_that_only_allocates_leaks_nothing);
    tcase_add_test(tc, test_pools_leave_no_descriptors_or_threads);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
