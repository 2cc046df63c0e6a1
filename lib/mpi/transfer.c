/* Moving payloads of any size with MPI (whose counts are int), and waiting by polling: MPI has no
 * descriptor to sleep on, so a waiter backs off from spinning to sleeping. */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi_internal.h"

/* The largest chunk of one message: 1 GiB, or less for tests (CFUTURES_MPI_CHUNK_BYTES). */
static size_t chunk_bytes(void)
{
    static size_t chunk;
    if (!chunk) {
        const char *env = getenv("CFUTURES_MPI_CHUNK_BYTES");
        long long v = env ? atoll(env) : 0;
        chunk = v > 0 && v <= INT_MAX ? (size_t)v : (size_t)1 << 30;
    }
    return chunk;
}

static int xfer_post(xfer *x, void *buf, size_t len, int peer, int tag, MPI_Comm comm, bool send)
{
    size_t chunk = chunk_bytes();
    size_t n = len ? (len + chunk - 1) / chunk : 1;
    if (n > INT_MAX)
        return CF_ENOMEM;
    x->n = (int)n;
    x->reqs = n == 1 ? &x->one : malloc(n * sizeof(*x->reqs));
    if (!x->reqs)
        return CF_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t at = i * chunk, count = len - at < chunk ? len - at : chunk;
        char *p = (char *)buf + at;
        int rc = send ? MPI_Isend(p, (int)count, MPI_BYTE, peer, tag, comm, &x->reqs[i])
                      : MPI_Irecv(p, (int)count, MPI_BYTE, peer, tag, comm, &x->reqs[i]);
        if (rc != MPI_SUCCESS) {
            for (size_t k = i; k < n; k++)
                x->reqs[k] = MPI_REQUEST_NULL;
            return mpi_failed(rc, send ? "MPI_Isend" : "MPI_Irecv", NULL, 0);
        }
    }
    return 0;
}

int xfer_isend(xfer *x, const void *buf, size_t len, int peer, int tag, MPI_Comm comm)
{
    return xfer_post(x, (void *)buf, len, peer, tag, comm, true);
}

int xfer_irecv(xfer *x, void *buf, size_t len, int peer, int tag, MPI_Comm comm)
{
    return xfer_post(x, buf, len, peer, tag, comm, false);
}

int xfer_test(xfer *x)
{
    int done = 0;
    int rc = MPI_Testall(x->n, x->reqs, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS)
        return mpi_failed(rc, "MPI_Testall", NULL, 0);
    return done;
}

void xfer_abandon(xfer *x)
{
    for (int i = 0; i < x->n; i++) {
        if (x->reqs[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&x->reqs[i]);
            MPI_Request_free(&x->reqs[i]);
        }
    }
}

void xfer_free(xfer *x)
{
    if (x->reqs && x->reqs != &x->one)
        free(x->reqs);
    x->reqs = NULL;
    x->n = 0;
}

int mpi_failed(int mpi_rc, const char *call, char *why, size_t cap)
{
    if (why && cap) {
        char text[MPI_MAX_ERROR_STRING] = "";
        int len = 0;
        MPI_Error_string(mpi_rc, text, &len);
        snprintf(why, cap, "%s failed: %s", call, text);
    }
    return CF_EBROKEN;
}

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

enum {
    SPIN_NS = 20 * 1000,              /* poll flat out this long after the last activity */
    YIELD_NS = 200 * 1000,            /* then yield the CPU between polls until this */
    TRANSFER_YIELD_NS = 20 * 1000000, /* ... or this, while a payload is on its way */
    SLEEP_MAX_NS = 1000000,           /* then sleep, a quarter of the idle time, at most this */
};

int64_t backoff_next(backoff *b, bool transfer)
{
    int64_t now = now_ns();
    if (!b->idle_since) {
        b->idle_since = now;
        return 0;
    }
    int64_t idle = now - b->idle_since;
    if (idle < SPIN_NS)
        return 0;
    /* A large message moves only while both sides call into MPI (Open MPI's shared-memory
     * transport copies it in fragments, or the receiver pulls it when it polls): sleeping then
     * would stall it, so a side with a transfer in progress keeps yielding far longer. */
    if (idle < (transfer ? TRANSFER_YIELD_NS : YIELD_NS)) {
        sched_yield();
        return 0;
    }
    int64_t sleep = idle / 4;
    return sleep < SLEEP_MAX_NS ? sleep : SLEEP_MAX_NS;
}
