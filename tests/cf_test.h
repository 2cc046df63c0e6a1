/* Helpers shared by the Check suites: deterministic synchronisation (events, latches), clocks,
 * and a main() that runs one suite. Tests synchronise on these instead of sleeping. */
#ifndef CF_TEST_H
#define CF_TEST_H

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "cfutures.h"

/* Which sanitizer instruments this build (gcc says __SANITIZE_*, clang __has_feature): tests
 * scale their sizes, or skip what a sanitizer cannot follow, by these. */
#if defined(__SANITIZE_ADDRESS__)
#define CF_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CF_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define CF_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CF_TEST_TSAN 1
#endif
#endif

/* Generous bound for "this must happen": never a speed measurement, only a hang detector. */
#define CF_TEST_LONG 20.0

/* A one-shot event: set once, waited by any number of threads. */
typedef struct cf_test_event {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool set;
} cf_test_event;

static inline void cf_test_event_init(cf_test_event *e)
{
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->set = false;
}

static inline void cf_test_event_destroy(cf_test_event *e)
{
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
}

static inline void cf_test_event_set(cf_test_event *e)
{
    pthread_mutex_lock(&e->mu);
    e->set = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static inline bool cf_test_event_is_set(cf_test_event *e)
{
    pthread_mutex_lock(&e->mu);
    bool set = e->set;
    pthread_mutex_unlock(&e->mu);
    return set;
}

static inline double cf_test_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits up to `seconds`; returns whether the event was set. */
static inline bool cf_test_event_wait(cf_test_event *e, double seconds)
{
    double end = cf_test_now() + seconds;
    struct timespec ts = {.tv_sec = (time_t)end, .tv_nsec = (long)((end - (time_t)end) * 1e9)};
    pthread_mutex_lock(&e->mu);
    while (!e->set && pthread_cond_timedwait(&e->cv, &e->mu, &ts) == 0)
        ;
    bool set = e->set;
    pthread_mutex_unlock(&e->mu);
    return set;
}

static inline double cf_test_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Open file descriptors of this process (leak checks). */
static inline int cf_test_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Threads of this process (leak checks). */
static inline int cf_test_count_threads(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(fp);
    char line[256];
    int n = -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(fp);
    return n;
}

/* A pointer task: the square of its argument (an intptr_t). */
static inline int cf_test_square_task(void *arg, void **result)
{
    intptr_t x = (intptr_t)arg;
    *result = (void *)(x * x);
    return 0;
}

/* A bytes task: its argument echoed back. */
static inline int cf_test_echo_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    void *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    if (len)
        memcpy(out, arg, len);
    *result = out;
    *result_len = len;
    return 0;
}

/* A bytes task: its argument reversed. */
static inline int cf_test_reverse_task(const void *arg, size_t len, void **result,
                                       size_t *result_len)
{
    unsigned char *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = ((const unsigned char *)arg)[len - 1 - i];
    *result = out;
    *result_len = len;
    return 0;
}

/* Each test file defines `Suite *suite(void)` and ends with CF_TEST_MAIN(). Per-test timeouts
 * are generous and scale with CK_TIMEOUT_MULTIPLIER (sanitizer and valgrind runs set it). */
#define CF_TEST_TIMEOUT 60

#define CF_TEST_MAIN(suite_fn)                                                                     \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *sr = srunner_create(suite_fn());                                                  \
        srunner_run_all(sr, CK_NORMAL);                                                            \
        int failed = srunner_ntests_failed(sr);                                                    \
        srunner_free(sr);                                                                          \
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;                                               \
    }

static inline TCase *cf_test_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, CF_TEST_TIMEOUT);
    return tc;
}

#endif
