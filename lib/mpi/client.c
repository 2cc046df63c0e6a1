/* The client side of the MPI executor: the cf_executor_ops, and the manager thread that makes
 * every MPI call after the start.
 *
 * Submitters put jobs in a FIFO queue under `mu` (naming the task function there) and wake the
 * manager if it sleeps. The manager loops: it moves queued jobs into the windows of the workers
 * with the fewest tasks in flight (the future becomes RUNNING then; cancelled ones are dropped)
 * and sends each worker its new frames as one message, followed by the out-of-line arguments;
 * it receives results (a worker answers its tasks in order, so a RESULT matches the oldest task
 * in flight on that worker), posts receives for large results, and completes futures with no
 * lock held (done-callbacks run on this thread). When nothing happens it backs off from polling
 * to sleeping in ppoll() on an eventfd that submits write to, and on the pidfds of the workers
 * that run on this machine: a worker's death wakes it at once.
 *
 * Invariants:
 *   - a job is in exactly one place: the queue (mu), a worker's in-flight list, the list of
 *     results being received, or the list of outcomes to deliver (manager only);
 *   - once `broken` is set, the queue stays empty; jobs still due from live workers keep their
 *     place (their futures have failed already, their results are received and dropped), so the
 *     protocol with those workers stays in step until they are told to exit. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mpi_internal.h"

enum {
    DEFAULT_WINDOW = 16,
    LIVENESS_EVERY_NS = 1000000, /* how often a busy manager looks at the workers' pidfds */
    MESSAGE_MAX = 1024,
};

/* How long cf_executor_free() waits for spawned workers to exit. */
#define SPAWNED_EXIT_WAIT_NS (10 * 1000000000LL)

typedef struct job {
    struct job *next;
    struct job *next_ool; /* in its worker's list of arguments to send out of line */
    cf_future *f;         /* NULL once failed by a break while its result is still due */
    bool cancelled;       /* cancelled before dispatch: only the reference to drop */
    uint64_t id;
    uint32_t module;
    uint64_t offset;
    int worker;
    /* the outcome */
    int code;
    char *message;
    void *result;
    size_t result_len;
    xfer rx; /* an out-of-line result being received */
} job;

typedef struct jlist {
    job *head, *tail;
} jlist;

typedef struct wslot {
    int rank;
    peer_info info;
    int pidfd;
    bool dead;
    bool exit_sent;
    jlist inflight; /* dispatched, RESULT not seen yet, oldest first */
    unsigned n;
    uint32_t modules_known;
    batch out; /* frames for the next message */
    job *ool;  /* jobs of `out` whose argument follows it, in order */
    job **ool_tail;
} wslot;

/* A posted send and what to release when it is done. */
typedef struct send_op {
    struct send_op *next;
    xfer x;
    int worker;
    void *buf;      /* freed */
    cf_future *arg; /* its argument released, then the reference */
} send_op;

typedef struct client {
    session s;
    unsigned window;
    /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* manager_done */
    jlist queue;
    bool shutdown, broken, sleeping, manager_done, free_on_exit;
    cf_fn_table *names;
    uint64_t next_id;
    /* the manager's */
    pthread_t manager;
    int wakefd;
    wslot *w;
    int *index_of; /* worker index by rank, up to max_rank */
    int max_rank;
    send_op *sends;
    jlist receiving;
    jlist done;
    unsigned char *in;
    size_t in_cap;
    int64_t last_liveness;
    bool finished; /* every worker told to exit and every transfer done */
} client;

static _Thread_local client *current_manager;

static const cf_executor_ops mpi_ops;

/* ---- lists ---- */

static void jl_push(jlist *l, job *j)
{
    j->next = NULL;
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static job *jl_pop(jlist *l)
{
    job *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
        j->next = NULL;
    }
    return j;
}

static job *jl_take(jlist *l)
{
    job *chain = l->head;
    l->head = l->tail = NULL;
    return chain;
}

static void job_free(job *j)
{
    xfer_free(&j->rx);
    free(j->result);
    free(j->message);
    free(j);
}

/* ---- outcomes ---- */

/* Queues a failure for delivery (manager). */
static void fail_job(client *c, job *j, int code, const char *message)
{
    j->code = code;
    free(j->message);
    j->message = message ? strdup(message) : NULL;
    jl_push(&c->done, j);
}

/* Completes the collected futures: no lock held, callbacks run here. */
static void deliver(client *c)
{
    job *j;
    while ((j = jl_pop(&c->done))) {
        if (j->f && !j->cancelled) {
            if (j->code)
                cf_future_set_exception(j->f, j->code, j->message);
            else if (cf_future_set_result_bytes_owned(j->f, j->result, j->result_len) == 0)
                j->result = NULL; /* adopted */
        }
        cf_future_unref(j->f);
        job_free(j);
    }
}

static void wake(client *c)
{
    uint64_t one = 1;
    if (c->sleeping) {
        c->sleeping = false;
        ssize_t n = write(c->wakefd, &one, sizeof(one));
        (void)n; /* an eventfd does not fill up with a few increments */
    }
}

/* ---- breaking ---- */

/* A worker is gone, or MPI failed: every queued and running future fails with CF_EBROKEN. Jobs
 * still due from live workers keep their place without a future. */
static void client_break(client *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    bool already = c->broken;
    c->broken = true;
    job *queued = jl_take(&c->queue);
    pthread_mutex_unlock(&c->mu);
    if (already)
        return;
    char message[MESSAGE_MAX];
    snprintf(message, sizeof(message),
             "%s while the future was running or pending; the MPI executor is not usable "
             "anymore",
             why);
    while (queued) {
        job *j = queued;
        queued = j->next;
        fail_job(c, j, CF_EBROKEN, message);
    }
    for (int i = 0; i < c->s.nworkers; i++) {
        for (job *j = c->w[i].inflight.head; j; j = j->next) {
            if (!j->f)
                continue;
            cf_future_set_exception(j->f, CF_EBROKEN, message);
            cf_future_unref(j->f);
            j->f = NULL;
        }
    }
    for (job *j = c->receiving.head; j; j = j->next) {
        if (!j->f)
            continue;
        cf_future_set_exception(j->f, CF_EBROKEN, message);
        cf_future_unref(j->f);
        j->f = NULL;
    }
}

/* A worker died: nothing more will come from it, nothing more goes to it. */
static void worker_died(client *c, int i)
{
    wslot *w = &c->w[i];
    w->dead = true;
    char why[256];
    snprintf(why, sizeof(why), "an MPI worker (rank %d, pid %d on %s) terminated abruptly", w->rank,
             (int)w->info.pid, w->info.host);
    client_break(c, why);
    job *j;
    while ((j = jl_pop(&w->inflight)))
        job_free(j); /* futures failed above */
    w->n = 0;
    jlist keep = {0};
    while ((j = jl_pop(&c->receiving))) {
        if (j->worker == i) {
            xfer_abandon(&j->rx);
            job_free(j);
        } else {
            jl_push(&keep, j);
        }
    }
    c->receiving = keep;
    /* Sends to it never complete: cancel them. The buffers are released: a dead receiver no
     * longer reads them. */
    for (send_op *op = c->sends; op; op = op->next)
        if (op->worker == i)
            xfer_abandon(&op->x);
    batch_free(&w->out);
    w->ool = NULL;
    w->ool_tail = &w->ool;
}

static void check_workers(client *c)
{
    c->last_liveness = now_ns();
    for (int i = 0; i < c->s.nworkers; i++)
        if (!c->w[i].dead && peer_gone(c->w[i].pidfd))
            worker_died(c, i);
}

static void mpi_error(client *c, int rc, const char *call)
{
    char why[MESSAGE_MAX / 2];
    mpi_failed(rc, call, why, sizeof(why));
    client_break(c, why);
}

/* ---- sending (manager) ---- */

static wslot *pick_worker(client *c)
{
    wslot *best = NULL;
    for (int i = 0; i < c->s.nworkers; i++) {
        wslot *w = &c->w[i];
        if (w->dead || w->exit_sent || w->n >= c->window)
            continue;
        if (!best || w->n < best->n)
            best = w;
    }
    return best;
}

/* MODULE frames, so that the worker knows every module up to `module`. */
static int send_modules(client *c, wslot *w, uint32_t module)
{
    while (w->modules_known <= module) {
        const char *path;
        const void *id;
        size_t id_len;
        cf_fn_table_module(&path, &id, &id_len, c->names, w->modules_known);
        size_t path_len = strlen(path);
        unsigned char payload[CF_MODULE_ID_MAX + FR_PATH_MAX];
        memcpy(payload, id, id_len);
        memcpy(payload + id_len, path, path_len);
        frame f = {.type = FR_MODULE,
                   .id = w->modules_known,
                   .code = (int32_t)id_len,
                   .len = id_len + path_len};
        int rc = batch_add(&w->out, &f, payload);
        if (rc)
            return rc;
        w->modules_known++;
    }
    return 0;
}

static int encode_task(client *c, wslot *w, job *j)
{
    const void *data;
    size_t len;
    cf_task_bytes_arg(&data, &len, j->f);
    frame f = {.type = FR_TASK, .id = j->id, .module = j->module, .offset = j->offset, .len = len};
    if (len > FR_INLINE_MAX)
        f.flags = FR_OOL;
    int rc = send_modules(c, w, j->module);
    if (rc == 0)
        rc = batch_add(&w->out, &f, data);
    if (rc)
        return rc;
    if (f.flags & FR_OOL) {
        j->next_ool = NULL;
        *w->ool_tail = j;
        w->ool_tail = &j->next_ool;
    } else {
        cf_task_release_arg(j->f); /* copied into the batch */
    }
    return 0;
}

/* Moves queued jobs into worker windows (mu held). Returns whether any moved. */
static bool dispatch(client *c)
{
    bool moved = false;
    while (c->queue.head) {
        wslot *w = pick_worker(c);
        if (!w)
            break;
        job *j = jl_pop(&c->queue);
        moved = true;
        if (cf_future_set_running_or_notify_cancel(j->f) != 1) {
            /* Cancelled meanwhile: its last reference may go back to the future cache, which
             * takes a lock of its own; drop it with the outcomes, after mu. */
            j->cancelled = true;
            jl_push(&c->done, j);
            continue;
        }
        if (encode_task(c, w, j) != 0) {
            fail_job(c, j, CF_ENOMEM, "out of memory while sending the task to an MPI worker");
            continue;
        }
        j->worker = (int)(w - c->w);
        jl_push(&w->inflight, j);
        w->n++;
    }
    return moved;
}

static void post_send(client *c, int worker, const void *data, size_t len, int tag, void *buf,
                      cf_future *arg)
{
    send_op *op = calloc(1, sizeof(*op));
    int rc = op ? xfer_isend(&op->x, data, len, c->w[worker].rank, tag, c->s.comm) : CF_ENOMEM;
    if (rc) {
        free(op);
        free(buf);
        cf_future_unref(arg);
        client_break(c, rc == CF_ENOMEM ? "out of memory while sending to an MPI worker"
                                        : "MPI_Isend to a worker failed");
        return;
    }
    op->worker = worker;
    op->buf = buf;
    op->arg = arg;
    op->next = c->sends;
    c->sends = op;
}

/* Sends each worker its new frames, then the out-of-line arguments (in frame order). */
static void flush(client *c)
{
    for (int i = 0; i < c->s.nworkers; i++) {
        wslot *w = &c->w[i];
        if (!w->out.len || w->dead)
            continue;
        size_t len;
        unsigned char *buf = batch_take(&w->out, &len);
        post_send(c, i, buf, len, TAG_BATCH, buf, NULL);
        for (job *j = w->ool; j; j = j->next_ool) {
            const void *data;
            size_t arg_len;
            cf_task_bytes_arg(&data, &arg_len, j->f);
            post_send(c, i, data, arg_len, TAG_DATA, NULL, cf_future_ref(j->f));
        }
        w->ool = NULL;
        w->ool_tail = &w->ool;
    }
}

/* Releases what finished sends held. Returns whether any finished. */
static bool reap_sends(client *c)
{
    bool any = false;
    send_op **pp = &c->sends;
    while (*pp) {
        send_op *op = *pp;
        int rc = c->w[op->worker].dead ? 1 : xfer_test(&op->x);
        if (rc == 0) {
            pp = &op->next;
            continue;
        }
        if (rc < 0)
            mpi_error(c, rc, "a send to an MPI worker");
        *pp = op->next;
        any = true;
        xfer_free(&op->x);
        free(op->buf);
        if (op->arg) {
            cf_task_release_arg(op->arg);
            cf_future_unref(op->arg);
        }
        free(op);
    }
    return any;
}

/* ---- receiving (manager) ---- */

static int worker_index(client *c, int rank)
{
    return rank >= 0 && rank <= c->max_rank ? c->index_of[rank] : -1;
}

static void on_result(client *c, int i, const frame *f, const unsigned char *payload)
{
    wslot *w = &c->w[i];
    job *j = w->inflight.head;
    if (!j || j->id != f->id) {
        client_break(c, "an MPI worker answered a task it was not given");
        return;
    }
    jl_pop(&w->inflight);
    w->n--;
    j->code = f->code;
    if (f->code) {
        j->message = malloc((size_t)f->len + 1);
        if (j->message) {
            memcpy(j->message, payload ? (const char *)payload : "", (size_t)f->len);
            j->message[f->len] = '\0';
        }
        jl_push(&c->done, j);
        return;
    }
    size_t len = (size_t)f->len;
    j->result = malloc(len ? len : 1);
    j->result_len = len;
    if (!j->result) {
        /* The data must still be taken off the wire if it comes separately: give up on it. */
        fail_job(c, j, CF_ENOMEM, "out of memory for the result of an MPI task");
        if (f->flags & FR_OOL)
            client_break(c, "out of memory while receiving a result from an MPI worker");
        return;
    }
    if (!(f->flags & FR_OOL)) {
        if (len)
            memcpy(j->result, payload, len);
        jl_push(&c->done, j);
        return;
    }
    int rc = xfer_irecv(&j->rx, j->result, len, w->rank, TAG_RDATA, c->s.comm);
    jl_push(&c->receiving, j);
    if (rc)
        mpi_error(c, rc, "MPI_Irecv of a result");
}

static bool receive_one(client *c)
{
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    int rc = MPI_Improbe(MPI_ANY_SOURCE, TAG_RESULT, c->s.comm, &flag, &msg, &st);
    if (rc != MPI_SUCCESS) {
        mpi_error(c, rc, "MPI_Improbe");
        return false;
    }
    if (!flag)
        return false;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if ((size_t)count > c->in_cap) {
        unsigned char *grown = realloc(c->in, (size_t)count);
        if (!grown) {
            MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE); /* truncated, dropped */
            client_break(c, "out of memory while receiving from an MPI worker");
            return true;
        }
        c->in = grown;
        c->in_cap = (size_t)count;
    }
    rc = MPI_Mrecv(c->in, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        mpi_error(c, rc, "MPI_Mrecv");
        return true;
    }
    int i = worker_index(c, st.MPI_SOURCE);
    size_t at = 0;
    frame f;
    const unsigned char *payload;
    size_t used;
    while (i >= 0 && (rc = fr_decode(&f, &payload, &used, c->in + at, (size_t)count - at)) == 1) {
        at += used;
        if (f.type != FR_RESULT) {
            rc = CF_EINVAL;
            break;
        }
        on_result(c, i, &f, payload);
    }
    if (i < 0 || rc < 0)
        client_break(c, "an MPI worker sent a malformed message");
    return true;
}

/* Results whose data has arrived go to delivery. Returns whether any did. */
static bool reap_receives(client *c)
{
    bool any = false;
    jlist keep = {0};
    job *j;
    while ((j = jl_pop(&c->receiving))) {
        int rc = xfer_test(&j->rx);
        if (rc == 0) {
            jl_push(&keep, j);
            continue;
        }
        any = true;
        if (rc < 0) {
            free(j->result);
            j->result = NULL;
            fail_job(c, j, CF_EBROKEN, "receiving a result from an MPI worker failed");
        } else {
            jl_push(&c->done, j);
        }
    }
    c->receiving = keep;
    return any;
}

/* ---- the end ---- */

/* Once nothing is queued or due (shut down or broken), every live worker gets an EXIT frame; the
 * manager is finished when those are sent too. */
static void wind_down(client *c, bool stopping)
{
    if (!stopping || c->queue.head)
        return;
    bool all_told = true;
    for (int i = 0; i < c->s.nworkers; i++) {
        wslot *w = &c->w[i];
        if (w->dead || w->exit_sent)
            continue;
        bool due = w->n > 0;
        for (job *j = c->receiving.head; j && !due; j = j->next)
            due = j->worker == i;
        if (due) {
            all_told = false;
            continue;
        }
        frame f = {.type = FR_EXIT};
        if (batch_add(&w->out, &f, NULL) == 0)
            w->exit_sent = true;
        else
            all_told = false;
    }
    bool unsent = false;
    for (int i = 0; i < c->s.nworkers; i++)
        unsent |= c->w[i].out.len > 0;
    c->finished = all_told && !unsent && !c->sends && !c->receiving.head;
}

/* Spawned workers end their program after they let go of us: wait (a bounded time) until the
 * ones on this machine have exited, so that no worker outlives cf_executor_free() and the next
 * spawn does not overlap their exit (Open MPI 4.1 can hang a spawn that races the end of the
 * previous job). */
static void await_spawned_exit(client *c)
{
    int64_t deadline = now_ns() + SPAWNED_EXIT_WAIT_NS;
    for (int i = 0; i < c->s.nworkers; i++) {
        int fd = c->w[i].pidfd;
        while (fd >= 0 && !peer_gone(fd) && now_ns() < deadline) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            poll(&p, 1, 10);
        }
    }
}

static void session_end(client *c)
{
    bool any_dead = false;
    for (int i = 0; i < c->s.nworkers; i++)
        any_dead |= c->w[i].dead;
    /* Disconnecting is collective with the workers: only when all of them can take part. */
    if (c->s.spawned && !any_dead)
        MPI_Comm_disconnect(&c->s.comm);
    else
        MPI_Comm_free(&c->s.comm);
    if (c->s.spawned)
        await_spawned_exit(c);
}

/* ---- the manager ---- */

static void sleep_until(client *c, int64_t ns)
{
    struct pollfd fds[1 + 64];
    nfds_t n = 0;
    fds[n++] = (struct pollfd){.fd = c->wakefd, .events = POLLIN};
    for (int i = 0; i < c->s.nworkers && n < 65; i++)
        if (!c->w[i].dead && c->w[i].pidfd >= 0)
            fds[n++] = (struct pollfd){.fd = c->w[i].pidfd, .events = POLLIN};
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    ppoll(fds, n, ns < 0 ? NULL : &ts, NULL);
    uint64_t v;
    if (fds[0].revents & POLLIN) {
        ssize_t r = read(c->wakefd, &v, sizeof(v));
        (void)r;
    }
    for (nfds_t k = 1; k < n; k++)
        if (fds[k].revents)
            check_workers(c);
}

/* True when nothing is in flight: the manager may sleep until woken. */
static bool quiet(client *c)
{
    if (c->sends || c->receiving.head)
        return false;
    for (int i = 0; i < c->s.nworkers; i++)
        if (c->w[i].n)
            return false;
    return true;
}

/* Nothing happened in the last round: spin, yield, or sleep. With work in flight the sleep is
 * bounded (MPI must be polled); with none it lasts until a submit, a shutdown or a death wakes
 * it. */
static void backoff_wait(client *c, backoff *b)
{
    bool idle = quiet(c);
    pthread_mutex_lock(&c->mu);
    bool progress_possible = idle && (c->queue.head || c->shutdown || c->broken);
    pthread_mutex_unlock(&c->mu);
    if (progress_possible)
        return;
    /* With tasks out, a result (possibly megabytes to pull in) may come at any moment. */
    int64_t ns = backoff_next(b, !idle);
    if (!ns)
        return;
    pthread_mutex_lock(&c->mu);
    c->sleeping = true;
    if (idle && (c->queue.head || c->shutdown || c->broken))
        c->sleeping = false; /* a submit or shutdown slipped in */
    bool asleep = c->sleeping;
    pthread_mutex_unlock(&c->mu);
    if (asleep)
        sleep_until(c, idle ? -1 : ns);
    pthread_mutex_lock(&c->mu);
    c->sleeping = false;
    pthread_mutex_unlock(&c->mu);
}

static void client_release(client *c);

static void *manager_main(void *arg)
{
    client *c = arg;
    current_manager = c;
    backoff b = {0};
    while (!c->finished) {
        pthread_mutex_lock(&c->mu);
        bool busy = dispatch(c);
        bool stopping = c->shutdown || c->broken;
        wind_down(c, stopping);
        pthread_mutex_unlock(&c->mu);
        flush(c);
        while (receive_one(c))
            busy = true;
        busy |= reap_receives(c);
        busy |= reap_sends(c);
        if (c->done.head) {
            deliver(c);
            busy = true;
        }
        if (now_ns() - c->last_liveness > LIVENESS_EVERY_NS)
            check_workers(c);
        if (c->finished)
            break;
        if (busy)
            backoff_reset(&b);
        else
            backoff_wait(c, &b);
    }
    session_end(c);
    pthread_mutex_lock(&c->mu);
    c->manager_done = true;
    bool free_now = c->free_on_exit;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    current_manager = NULL;
    if (free_now) {
        pthread_detach(pthread_self()); /* freed from one of our callbacks: nobody joins us */
        client_release(c);
    }
    return NULL;
}

/* ---- the executor ops ---- */

static void jobs_discard(job *chain)
{
    while (chain) {
        job *j = chain;
        chain = j->next;
        job_free(j);
    }
}

static int mpi_submit(void *impl, cf_future *const *fs, size_t n)
{
    client *c = impl;
    job *chain = NULL, **tail = &chain;
    for (size_t i = 0; i < n; i++) {
        job *j = calloc(1, sizeof(*j));
        if (!j) {
            jobs_discard(chain);
            return CF_ENOMEM;
        }
        j->f = fs[i];
        *tail = j;
        tail = &j->next;
    }
    pthread_mutex_lock(&c->mu);
    int rc = c->shutdown ? CF_ESHUTDOWN : c->broken ? CF_EBROKEN : 0;
    for (job *j = chain; j && rc == 0; j = j->next)
        rc = cf_fn_table_name(c->names, (const void *)cf_task_bytes_fn(j->f), &j->module,
                              &j->offset);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        jobs_discard(chain);
        return rc;
    }
    while (chain) {
        job *j = chain;
        chain = j->next;
        j->id = c->next_id++;
        jl_push(&c->queue, j);
    }
    wake(c);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

static void wait_manager(client *c)
{
    if (current_manager == c)
        return; /* a callback on the manager thread cannot wait for itself */
    pthread_mutex_lock(&c->mu);
    while (!c->manager_done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static int mpi_shutdown(void *impl, bool wait, bool cancel_futures)
{
    client *c = impl;
    pthread_mutex_lock(&c->mu);
    c->shutdown = true;
    job *cancelled = cancel_futures ? jl_take(&c->queue) : NULL;
    wake(c);
    pthread_mutex_unlock(&c->mu);
    while (cancelled) {
        job *j = cancelled;
        cancelled = j->next;
        cf_future_cancel(j->f);
        cf_future_unref(j->f);
        job_free(j);
    }
    if (wait)
        wait_manager(c);
    return 0;
}

static void client_release(client *c)
{
    for (int i = 0; c->w && i < c->s.nworkers; i++) {
        if (c->w[i].pidfd >= 0)
            close(c->w[i].pidfd);
        batch_free(&c->w[i].out);
        jobs_discard(jl_take(&c->w[i].inflight));
    }
    jobs_discard(jl_take(&c->receiving));
    while (c->sends) {
        send_op *op = c->sends;
        c->sends = op->next;
        xfer_free(&op->x);
        free(op->buf);
        cf_future_unref(op->arg);
        free(op);
    }
    if (c->wakefd >= 0)
        close(c->wakefd);
    cf_fn_table_free(c->names);
    free(c->in);
    free(c->w);
    free(c->index_of);
    free(c->s.ranks);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int mpi_destroy(void *impl)
{
    client *c = impl;
    mpi_shutdown(c, true, false);
    if (current_manager == c) {
        pthread_mutex_lock(&c->mu);
        c->free_on_exit = true;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    pthread_join(c->manager, NULL);
    client_release(c);
    return 0;
}

static size_t mpi_default_chunksize(void *impl, size_t n)
{
    client *c = impl;
    size_t chunk = n / (4 * (size_t)c->s.nworkers);
    return chunk < 1 ? 1 : chunk > 1024 ? 1024 : chunk;
}

static const cf_executor_ops mpi_ops = {
    .name = "mpi",
    .flags = CF_EXECUTOR_BYTES_ONLY,
    .submit = mpi_submit,
    .shutdown = mpi_shutdown,
    .destroy = mpi_destroy,
    .default_chunksize = mpi_default_chunksize,
};

int cf_mpi_executor_workers(const cf_executor *executor)
{
    client *c = cf_executor_impl(executor, &mpi_ops);
    return c ? c->s.nworkers : CF_EINVAL;
}

/* ---- the start ---- */

static void send_hello(session *s, int code)
{
    peer_info me;
    peer_self(&me);
    frame f = {.type = FR_HELLO, .id = FR_VERSION, .code = code, .len = sizeof(me)};
    unsigned char buf[FR_HEADER + sizeof(peer_info) + 16];
    fr_encode(buf, &f, &me);
    for (int i = 0; i < s->nworkers; i++)
        MPI_Send(buf, (int)fr_size(&f), MPI_BYTE, s->ranks[i], TAG_BATCH, s->comm);
}

void client_refuse(session *s, int code)
{
    send_hello(s, code);
}

/* Receives every worker's READY. Returns 0, a worker's refusal, or CF_EBROKEN. */
static int await_ready(client *c)
{
    int refused = 0;
    for (int i = 0; i < c->s.nworkers; i++) {
        unsigned char buf[FR_HEADER + sizeof(peer_info) + 16];
        MPI_Status st;
        int rc = MPI_Recv(buf, sizeof(buf), MPI_BYTE, c->w[i].rank, TAG_RESULT, c->s.comm, &st);
        if (rc != MPI_SUCCESS)
            return mpi_failed(rc, "MPI_Recv", NULL, 0);
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        frame f;
        const unsigned char *payload;
        size_t used;
        if (fr_decode(&f, &payload, &used, buf, (size_t)count) != 1 || f.type != FR_READY)
            return CF_EBROKEN;
        if (f.code)
            refused = f.code;
        memcpy(&c->w[i].info, payload, sizeof(peer_info));
        c->w[i].pidfd = peer_watch(&c->w[i].info);
    }
    return refused;
}

static client *client_alloc(session *s, unsigned window)
{
    if (s->nworkers < 1)
        return NULL;
    size_t n = (size_t)(unsigned)s->nworkers;
    client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->s = *s;
    c->window = window ? window : DEFAULT_WINDOW;
    c->wakefd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    int max_rank = 0;
    for (int i = 0; i < s->nworkers; i++)
        max_rank = s->ranks[i] > max_rank ? s->ranks[i] : max_rank;
    c->w = calloc(n, sizeof(*c->w));
    c->index_of = malloc(((size_t)max_rank + 1) * sizeof(int));
    if (c->w && c->index_of) {
        for (int r = 0; r <= max_rank; r++)
            c->index_of[r] = -1;
        for (int i = 0; i < s->nworkers; i++) {
            c->w[i].rank = s->ranks[i];
            c->w[i].pidfd = -1;
            c->w[i].ool_tail = &c->w[i].ool;
            c->index_of[s->ranks[i]] = i;
        }
        c->max_rank = max_rank;
    }
    c->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!c->w || !c->index_of || c->wakefd < 0 || cf_fn_table_new(&c->names) != 0) {
        c->s.ranks = NULL; /* still the session's: the caller refuses the workers with it */
        client_release(c);
        return NULL;
    }
    s->ranks = NULL; /* now the client's */
    return c;
}

int client_start(cf_executor **out, session *s, unsigned window)
{
    client *c = client_alloc(s, window);
    if (!c) {
        client_refuse(s, CF_ENOMEM);
        MPI_Comm_free(&s->comm);
        free(s->ranks);
        return CF_ENOMEM;
    }
    send_hello(&c->s, 0);
    int rc = await_ready(c);
    if (rc == 0 && pthread_create(&c->manager, NULL, manager_main, c) != 0)
        rc = CF_EAGAIN;
    if (rc == 0) {
        rc = cf_executor_new(out, &mpi_ops, c);
        if (rc) {
            mpi_shutdown(c, true, false);
            pthread_join(c->manager, NULL);
            client_release(c);
        }
        return rc;
    }
    /* Workers that answered wait for tasks: tell them to go. */
    frame f = {.type = FR_EXIT};
    unsigned char buf[FR_HEADER];
    fr_encode(buf, &f, NULL);
    for (int i = 0; i < c->s.nworkers; i++)
        MPI_Send(buf, sizeof(buf), MPI_BYTE, c->w[i].rank, TAG_BATCH, c->s.comm);
    session_end(c);
    client_release(c);
    return rc;
}
