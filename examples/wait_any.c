/* wait_any: the first good answer wins, and results are handled as they arrive.
 *
 * Part 1 asks several mirrors for the same file and keeps the first good answer, using
 * cf_wait() with CF_FIRST_COMPLETED. Part 2 downloads several files and handles each one as
 * soon as it arrives, with cf_as_completed_*() and an overall deadline.
 *
 * The network is simulated: a "download" sleeps for a fixed time and then returns made-up
 * bytes or fails, so every run prints the same story. Downloads are bytes tasks: their
 * argument is copied at submission and their result is a byte buffer kept by the future. Each
 * future carries a pointer to its request (cf_future_set_data), so whichever future cf_wait()
 * or as_completed hands back says which download it was. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfutures.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %s (%s)\n", __FILE__, __LINE__, #call,             \
                    cf_err_name(rc_), cf_strerror(rc_));                                           \
            exit(EXIT_FAILURE);                                                                    \
        }                                                                                          \
    } while (0)

static double start_time;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double elapsed(void)
{
    return now() - start_time;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* What to download. Passed by value: cf_executor_submit_bytes() copies it. */
typedef struct request {
    char name[32];
    long latency_ms; /* how long the simulated transfer takes */
    int error;       /* 0, or the negative errno value the transfer fails with */
} request;

/* A bytes task. On success it hands over a malloc'd buffer and its length; the future frees
 * it. On failure it returns a non-zero code, with a message attached by cf_task_fail(). */
static int download(const void *arg, size_t len, void **result, size_t *result_len)
{
    if (len != sizeof(request))
        return cf_task_fail(CF_EINVAL, "bad request size %zu", len);
    request req;
    memcpy(&req, arg, sizeof(req));
    sleep_ms(req.latency_ms);
    if (req.error == -ECONNREFUSED)
        return cf_task_fail(req.error, "%s refused the connection", req.name);
    if (req.error)
        return cf_task_fail(req.error, "%s: no such file on the server", req.name);
    char *body = malloc(64);
    if (!body)
        return -ENOMEM;
    *result_len = (size_t)snprintf(body, 64, "<contents of %s>", req.name);
    *result = body;
    return 0;
}

/* The request travels to the task as a copy; the future keeps a pointer to the original, for
 * us to read back when it comes out of cf_wait() or as_completed. */
static cf_future *submit_download(cf_executor *pool, const request *req)
{
    cf_future *f;
    CHECK(cf_executor_submit_bytes(&f, pool, download, req, sizeof(*req)));
    CHECK(cf_future_set_data(f, (void *)req));
    return f;
}

static const request *request_of(cf_future *f)
{
    return cf_future_get_data(f);
}

/* Prints a finished download: its bytes, or why it failed. */
static void report(cf_future *f)
{
    const char *name = request_of(f)->name;
    const void *data;
    size_t len;
    int rc = cf_future_result_bytes(&data, &len, f, 0);
    if (rc == 0) {
        printf("   [%.2f s] %-12s ok: %zu bytes \"%.*s\"\n", elapsed(), name, len, (int)len,
               (const char *)data);
    } else if (rc == CF_ETASK) {
        /* The task failed: cf_future_exception() gives its own code and message. */
        int code;
        const char *message;
        CHECK(cf_future_exception(&code, &message, f, 0));
        printf("   [%.2f s] %-12s failed with code %d: %s\n", elapsed(), name, code,
               message ? message : "(no message)");
    } else {
        printf("   [%.2f s] %-12s %s\n", elapsed(), name, cf_err_name(rc));
    }
}

enum { NMIRRORS = 4, NFILES = 5 };

static cf_executor *new_pool(void)
{
    cf_thread_pool_options opts = {.max_workers = 4, .thread_name_prefix = "net"};
    cf_executor *pool;
    CHECK(cf_thread_pool_new(&pool, &opts));
    return pool;
}

static void first_good_answer(void)
{
    cf_executor *pool = new_pool();
    printf("1. The same file from %d mirrors: keep the first good answer (cf_wait, "
           "CF_FIRST_COMPLETED)\n",
           NMIRRORS);
    static const request mirrors[NMIRRORS] = {
        {"mirror-eu", 150, 0},
        {"mirror-us", 60, -ECONNREFUSED},
        {"mirror-asia", 250, 0},
        {"mirror-local", 400, 0},
    };
    cf_future *fs[NMIRRORS];
    for (int i = 0; i < NMIRRORS; i++)
        fs[i] = submit_download(pool, &mirrors[i]);

    /* `pending` holds the futures still running; it shrinks as they end. */
    cf_future *pending[NMIRRORS];
    size_t npending = NMIRRORS;
    for (int i = 0; i < NMIRRORS; i++)
        pending[i] = fs[i];
    double deadline = now() + 2.0;
    const request *winner = NULL;
    while (!winner && npending > 0) {
        /* A negative timeout means "wait forever" in cfutures, so never pass a time left
         * that has become negative: clamp it to 0 (which polls). */
        double left = deadline - now();
        bool done[NMIRRORS];
        int rc = cf_wait(NULL, done, pending, npending, CF_FIRST_COMPLETED, left > 0 ? left : 0);
        if (rc == CF_ETIMEDOUT) {
            printf("   no mirror answered within 2 s\n");
            break;
        }
        CHECK(rc);
        /* done[i] tells which futures are done; more than one may be. Keep the others. */
        size_t kept = 0;
        for (size_t i = 0; i < npending; i++) {
            if (!done[i]) {
                pending[kept++] = pending[i];
                continue;
            }
            report(pending[i]);
            if (!winner && cf_future_result_bytes(NULL, NULL, pending[i], 0) == 0)
                winner = request_of(pending[i]);
        }
        npending = kept;
    }
    if (winner)
        printf("   using %s\n", winner->name);

    /* The losers are not needed. A download that has not started would be cancelled; these
     * are already running, so cancel() returns false and they simply finish unobserved. */
    for (size_t i = 0; i < npending; i++)
        printf("   cancel(%s) -> %s\n", request_of(pending[i])->name,
               cf_future_cancel(pending[i]) ? "true (it never runs)" : "false (already running)");
    for (int i = 0; i < NMIRRORS; i++)
        cf_future_unref(fs[i]);
    /* Freeing a pool first waits for the work it has accepted, here the two losers. */
    CHECK(cf_executor_free(pool));
    printf("   [%.2f s] pool freed once the losers had finished too\n\n", elapsed());
}

static void as_they_arrive(void)
{
    cf_executor *pool = new_pool();
    printf("2. %d files, each handled as soon as it arrives (as_completed, 0.5 s deadline)\n",
           NFILES);
    static const request files[NFILES] = {
        {"a.txt", 120, 0}, {"b.txt", 40, 0},     {"c.txt", 300, -ENOENT},
        {"d.txt", 200, 0}, {"huge.iso", 900, 0},
    };
    cf_future *fs[NFILES];
    for (int i = 0; i < NFILES; i++)
        fs[i] = submit_download(pool, &files[i]);

    /* The iterator's deadline counts from its creation. */
    cf_as_completed *it;
    CHECK(cf_as_completed_new(&it, fs, NFILES, 0.5));
    cf_future *f;
    int rc;
    while ((rc = cf_as_completed_next(&f, it)) == 0)
        report(f); /* the future names its file: no search through fs[] */
    if (rc == CF_ETIMEDOUT) {
        printf("   [%.2f s] deadline passed, %zu download(s) still going:", elapsed(),
               cf_as_completed_remaining(it));
        for (int i = 0; i < NFILES; i++)
            if (!cf_future_done(fs[i]))
                printf(" %s", files[i].name);
        printf("\n");
    } else if (rc != CF_EOF) {
        CHECK(rc);
    }
    cf_as_completed_free(it); /* drops the iterator; the futures are not cancelled */
    for (int i = 0; i < NFILES; i++)
        cf_future_unref(fs[i]);
    CHECK(cf_executor_free(pool));
    printf("   [%.2f s] pool freed after the last download ended\n", elapsed());
}

int main(void)
{
    start_time = now();
    first_good_answer();
    start_time = now();
    as_they_arrive();
    return 0;
}
