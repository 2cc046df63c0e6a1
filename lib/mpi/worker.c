/* A worker rank: answers the client's HELLO, then runs the tasks of each batch in order, sending
 * every result back as soon as it is ready, until an EXIT frame. Single-threaded: it runs in the
 * thread that called cf_mpi_executor_new() or cf_mpi_executor_spawn().
 *
 * Functions arrive as (module number, offset); a MODULE frame names each number's path and
 * identity once, and the module is found (or loaded) here and checked to be the same build
 * (fn_name.h). A task whose module is missing or different fails with CF_EINVAL and the reason;
 * the worker goes on.
 *
 * While it waits, it polls MPI with a backoff (spin, yield, then sleeps of up to a millisecond),
 * and, when the client runs on this machine, watches the client's pid, so that a worker whose
 * client died returns CF_EBROKEN instead of waiting forever. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mpi_internal.h"

typedef struct worker {
    session *s;
    int client_pidfd;
    cf_module *modules[CF_FN_TABLE_MAX_MODULES];
    char *module_error[CF_FN_TABLE_MAX_MODULES]; /* why a module cannot be used */
    uint32_t nmodules;
    unsigned char *in; /* the batch being run */
    size_t in_cap;
    void *arg; /* out-of-line arguments land here; kept across tasks */
    size_t arg_cap;
    batch out;
} worker;

static void pause_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    nanosleep(&ts, NULL);
}

/* Backs off one step; CF_EBROKEN if the client is gone. */
static int idle_step(worker *w, backoff *b, bool transfer)
{
    int64_t ns = backoff_next(b, transfer);
    if (!ns)
        return 0;
    if (peer_gone(w->client_pidfd))
        return CF_EBROKEN;
    pause_ns(ns);
    return 0;
}

/* Waits for the next message from the client on `tag` and receives it into w->in. */
static int receive(worker *w, int tag, size_t *len)
{
    backoff b = {0};
    for (;;) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        int rc = MPI_Improbe(w->s->client, tag, w->s->comm, &flag, &msg, &st);
        if (rc != MPI_SUCCESS)
            return mpi_failed(rc, "MPI_Improbe", NULL, 0);
        if (flag) {
            int count = 0;
            MPI_Get_count(&st, MPI_BYTE, &count);
            if ((size_t)count > w->in_cap) {
                unsigned char *grown = realloc(w->in, (size_t)count);
                if (!grown)
                    return CF_ENOMEM; /* the message stays matched: fatal for this worker */
                w->in = grown;
                w->in_cap = (size_t)count;
            }
            rc = MPI_Mrecv(w->in, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS)
                return mpi_failed(rc, "MPI_Mrecv", NULL, 0);
            *len = (size_t)count;
            return 0;
        }
        if ((rc = idle_step(w, &b, false)) != 0)
            return rc;
    }
}

/* Waits until a posted transfer is done. */
static int complete(worker *w, xfer *x)
{
    backoff b = {0};
    int rc;
    while ((rc = xfer_test(x)) == 0)
        if ((rc = idle_step(w, &b, true)) != 0)
            break;
    if (rc != 1)
        xfer_abandon(x);
    xfer_free(x);
    return rc == 1 ? 0 : rc;
}

static int send_frames(worker *w)
{
    size_t len;
    unsigned char *buf = batch_take(&w->out, &len);
    xfer x;
    int rc = xfer_isend(&x, buf, len, w->s->client, TAG_RESULT, w->s->comm);
    if (rc == 0)
        rc = complete(w, &x);
    free(buf);
    return rc;
}

/* Sends a task's outcome: the result (inline, or out of line after its frame) or the failure
 * code and message. Takes ownership of `result` and `message`. */
static int send_result(worker *w, uint64_t id, int code, void *result, size_t len, char *message)
{
    frame r = {.type = FR_RESULT, .id = id, .code = code};
    const void *payload = result;
    if (code) {
        payload = message;
        r.len = message ? strlen(message) : 0;
        if (r.len > FR_INLINE_MAX)
            r.len = FR_INLINE_MAX;
    } else {
        r.len = len;
        if (len > FR_INLINE_MAX)
            r.flags = FR_OOL;
    }
    int rc = batch_add(&w->out, &r, payload);
    if (rc == 0)
        rc = send_frames(w);
    if (rc == 0 && (r.flags & FR_OOL)) {
        xfer x;
        rc = xfer_isend(&x, result, len, w->s->client, TAG_RDATA, w->s->comm);
        if (rc == 0)
            rc = complete(w, &x);
    }
    free(result);
    free(message);
    return rc;
}

static int send_failure(worker *w, uint64_t id, int code, const char *fmt, const char *detail)
{
    char *message = malloc(1024);
    if (message)
        snprintf(message, 1024, fmt, detail);
    return send_result(w, id, code, NULL, 0, message);
}

static void add_module(worker *w, const frame *f, const unsigned char *payload)
{
    uint32_t n = w->nmodules;
    if (f->id != n || n == CF_FN_TABLE_MAX_MODULES)
        return; /* out of sequence: tasks naming it fail as unknown */
    size_t id_len = (size_t)f->code;
    char path[FR_PATH_MAX + 1];
    memcpy(path, payload ? (const char *)payload + id_len : "", (size_t)f->len - id_len);
    path[f->len - id_len] = '\0';
    char why[1024];
    if (cf_module_open(&w->modules[n], path, payload, id_len, why, sizeof(why)) != 0)
        w->module_error[n] = strdup(why[0] ? why : "the task's module cannot be used");
    w->nmodules++;
}

/* The argument of a TASK frame: inline in the batch, or received now into w->arg. */
static int task_argument(worker *w, const frame *f, const unsigned char *inl, const void **arg)
{
    if (!(f->flags & FR_OOL)) {
        *arg = inl;
        return 0;
    }
    size_t len = (size_t)f->len;
    if (len > w->arg_cap) {
        void *grown = NULL;
        if (posix_memalign(&grown, 16, len) != 0)
            return CF_ENOMEM;
        free(w->arg);
        w->arg = grown;
        w->arg_cap = len;
    }
    xfer x;
    int rc = xfer_irecv(&x, w->arg, len, w->s->client, TAG_DATA, w->s->comm);
    if (rc == 0)
        rc = complete(w, &x);
    *arg = w->arg;
    return rc;
}

static int run_task(worker *w, const frame *f, const unsigned char *inl)
{
    const void *arg;
    int rc = task_argument(w, f, inl, &arg);
    if (rc == CF_ENOMEM)
        return CF_ENOMEM; /* the argument is still on its way: this worker cannot go on */
    if (rc)
        return rc;
    if (f->module >= w->nmodules)
        return send_failure(w, f->id, CF_EINVAL, "%s", "the task names an unknown module");
    if (w->module_error[f->module])
        return send_failure(w, f->id, CF_EINVAL, "%s", w->module_error[f->module]);
    cf_bytes_fn fn = (cf_bytes_fn)cf_module_symbol(w->modules[f->module], f->offset);
    if (!fn)
        return send_failure(w, f->id, CF_EINVAL, "%s",
                            "the task's function is outside its module's code on the worker");
    void *result = NULL;
    size_t len = 0;
    char *message = NULL;
    int code = cf_task_call_bytes(fn, arg, (size_t)f->len, &result, &len, &message);
    return send_result(w, f->id, code, result, len, message);
}

/* Runs one batch. Returns 0 to go on, 1 at EXIT, or an error. */
static int run_batch(worker *w, size_t len)
{
    size_t at = 0;
    for (;;) {
        frame f;
        const unsigned char *payload;
        size_t used;
        int rc = fr_decode(&f, &payload, &used, w->in + at, len - at);
        if (rc == 0)
            return 0;
        if (rc < 0)
            return CF_EBROKEN; /* our own client sent garbage: nothing sensible to do */
        at += used;
        switch (f.type) {
        case FR_MODULE:
            add_module(w, &f, payload);
            break;
        case FR_TASK:
            if ((rc = run_task(w, &f, payload)) != 0)
                return rc;
            break;
        case FR_EXIT:
            return 1;
        default:
            return CF_EBROKEN;
        }
    }
}

/* HELLO -> READY. Returns 0, or the code the client refused with (then nothing is answered). */
static int handshake(worker *w)
{
    size_t len;
    int rc = receive(w, TAG_BATCH, &len);
    if (rc)
        return rc;
    frame f;
    const unsigned char *payload;
    size_t used;
    if (fr_decode(&f, &payload, &used, w->in, len) != 1 || f.type != FR_HELLO)
        return CF_EBROKEN;
    if (f.code)
        return f.code;
    peer_info client;
    memcpy(&client, payload, sizeof(client));
    w->client_pidfd = peer_watch(&client);
    peer_info me;
    peer_self(&me);
    frame ready = {
        .type = FR_READY, .len = sizeof(me), .code = f.id == FR_VERSION ? 0 : CF_ENOTSUP};
    if ((rc = batch_add(&w->out, &ready, &me)) == 0)
        rc = send_frames(w);
    return rc ? rc : ready.code;
}

static void worker_free(worker *w)
{
    for (uint32_t i = 0; i < w->nmodules; i++) {
        cf_module_close(w->modules[i]);
        free(w->module_error[i]);
    }
    if (w->client_pidfd >= 0)
        close(w->client_pidfd);
    free(w->in);
    free(w->arg);
    batch_free(&w->out);
    free(w);
}

int worker_serve(session *s)
{
    worker *w = calloc(1, sizeof(*w));
    int rc = CF_ENOMEM;
    if (w) {
        w->s = s;
        w->client_pidfd = -1;
        rc = handshake(w);
        size_t len;
        while (rc == 0 && (rc = receive(w, TAG_BATCH, &len)) == 0)
            rc = run_batch(w, len);
        if (rc == 1)
            rc = 0;
        worker_free(w);
    }
    /* A clean end is collective with the client; after a failure, only let go of ours. */
    if (s->spawned && rc == 0)
        MPI_Comm_disconnect(&s->comm);
    else
        MPI_Comm_free(&s->comm);
    free(s->ranks);
    return rc;
}
