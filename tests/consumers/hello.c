/* A program that uses cfutures as any outside project would: only the installed headers and the
 * library its build system found (pkg-config, CMake's find_package, meson's dependency()). It
 * runs a task on a thread pool and a bytes task in a process pool (whose workers re-execute
 * this very program, so a static link must carry the library's start-up code), checks that the
 * headers and the library are the same version, and prints one line. Exit status 0 means all of
 * it worked. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cfutures.h>

static int square(void *arg, void **result)
{
    *result = (void *)((intptr_t)arg * (intptr_t)arg);
    return 0;
}

static int reverse(const void *arg, size_t len, void **result, size_t *result_len)
{
    char *out = malloc(len ? len : 1);
    if (!out)
        return CF_ENOMEM;
    for (size_t i = 0; i < len; i++)
        out[i] = ((const char *)arg)[len - 1 - i];
    *result = out;
    *result_len = len;
    return 0;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "consumer: %s: %s\n", what, cf_strerror(rc));
    return 1;
}

int main(void)
{
    if (cf_version() != CF_VERSION_HEX || strcmp(cf_version_string(), CF_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: headers %s, library %s\n", CF_VERSION_STRING,
                cf_version_string());
        return 1;
    }

    cf_thread_pool_options topts = {0};
    topts.max_workers = 2;
    cf_executor *threads = NULL;
    cf_future *f = NULL;
    void *value = NULL;
    int rc = cf_thread_pool_new(&threads, &topts);
    if (rc == 0)
        rc = cf_executor_submit(&f, threads, square, (void *)(intptr_t)7);
    if (rc == 0)
        rc = cf_future_result(&value, f, 30.0);
    cf_future_unref(f);
    cf_executor_free(threads);
    if (rc != 0 || (intptr_t)value != 49)
        return fail("thread pool", rc);

    cf_process_pool_options popts = {0};
    popts.max_workers = 1;
    cf_executor *procs = NULL;
    const void *bytes = NULL;
    size_t len = 0;
    f = NULL;
    rc = cf_process_pool_new(&procs, &popts);
    if (rc == 0)
        rc = cf_executor_submit_bytes(&f, procs, reverse, "stressed", 8);
    if (rc == 0)
        rc = cf_future_result_bytes(&bytes, &len, f, 30.0);
    int same = rc == 0 && len == 8 && memcmp(bytes, "desserts", 8) == 0;
    cf_future_unref(f);
    cf_executor_free(procs);
    if (!same)
        return fail("process pool", rc ? rc : CF_ETASK);

    printf("consumer: cfutures %s: thread pool 7*7 = 49, process pool \"desserts\"\n",
           cf_version_string());
    return 0;
}
