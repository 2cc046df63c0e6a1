/* The worker process: reads frames from its request ring, runs tasks one at a time in order, and
 * writes each result into its response ring as soon as it is ready (process_pool/ring.h).
 * Single-threaded; forked from the fork server.
 *
 * Waiting for work. Between tasks it spins for an adaptive window (no system call: a hot round
 * trip costs the parent and the worker a few stores and loads), then parks on the request ring's
 * head word, a futex in the shared mapping that the parent wakes after publishing when the
 * worker said it parks.
 *
 * Telling the parent. The parent sees a published result by itself while it is awake (its
 * manager spins on the rings, and a thread waiting for a result reads them). While the manager
 * sleeps in epoll it arms the doorbell word; then a result the parent has not taken within a
 * short grace period (a waiting thread usually takes it first), or before this worker parks or
 * starts its next task, is announced with one byte on the socket, which that epoll watches: at
 * most once per sleep of the manager. Its socket otherwise carries descriptors, and its
 * end-of-stream tells each side that the other is gone.
 *
 * It exits (with _exit, after flushing stdio: atexit handlers and destructors of the program do
 * not run) at an EXIT frame, after its task limit, or when its socket reaches end-of-stream
 * because the parent went away (checked at least every PARK_CHECK_NS while parked; the fork
 * server also kills its workers when the parent goes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfutures/fn_name.h"
#include "core/internal.h"
#include "process_pool/proc.h"

#define SPIN_MAX_NS       20000
#define DOORBELL_GRACE_NS 3000
#define PARK_CHECK_NS     CF__NS_PER_S

typedef struct worker_state {
    int sock;
    cf__ring_map map;
    cf__ring req, resp;
    cf__inbuf in;   /* frames from the request ring, descriptors from the socket */
    cf__outbuf out; /* frames waiting for room in the response ring */
    cf_module *modules[CF__FRAME_MODULES_MAX];
    char *module_error[CF__FRAME_MODULES_MAX]; /* why a module could not be found */
    uint32_t nmodules;
    uint64_t max_tasks, done;
    bool own_image;       /* the pool's program: its main program's functions may run */
    uint32_t rung;        /* the doorbell value last rung for */
    int64_t published_at; /* since when results wait for the parent (0: none) */
    cf__spin_window spin;
} worker_state;

static _Noreturn void leave(int status)
{
    fflush(NULL);
    _exit(status);
}

/* Leaves if the parent's end of the socket is closed. */
static void check_parent(worker_state *w)
{
    char c;
    if (recv(w->sock, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        leave(CF__WORKER_EXIT_DONE);
}

/* Rings the doorbell if the manager armed it for an epoch not rung yet (for room in the request
 * ring only if it asked for that). */
static void doorbell(worker_state *w, bool for_room)
{
    uint32_t db = atomic_load_explicit(&w->map.ctl->doorbell, memory_order_seq_cst);
    if (db == 0 || db == w->rung || (for_room && !(db & CF__DOORBELL_ROOM)))
        return;
    w->rung = db;
    char c = 'D';
    ssize_t n = send(w->sock, &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n; /* a full socket already holds a doorbell; a closed one is noticed elsewhere */
}

/* Announces results the parent has not taken: at once with `now`, else after the grace period. */
static void announce(worker_state *w, bool now)
{
    if (!w->published_at)
        return;
    uint32_t room;
    if (cf__ring_room(&w->resp, &room) != 0)
        leave(CF__WORKER_EXIT_PROTOCOL);
    if (room == CF__RING_CAP) {
        w->published_at = 0; /* all taken */
        return;
    }
    if (now || cf__now_ns() - w->published_at >= DOORBELL_GRACE_NS)
        doorbell(w, false);
}

static void wake_after(worker_state *w, int64_t parked_at)
{
    int64_t woken = atomic_load_explicit(&w->map.ctl->woken_at, memory_order_relaxed);
    if (woken > parked_at)
        cf__spin_window_gap(&w->spin, woken - parked_at);
}

/* Waits until the parent publishes a request: spins for the adaptive window (at least the
 * doorbell's grace period while results wait), then parks on the head word. */
static void wait_request(worker_state *w)
{
    int64_t start = cf__now_ns();
    int64_t window = w->spin.ns;
    if (w->published_at && window < DOORBELL_GRACE_NS)
        window = DOORBELL_GRACE_NS;
    for (unsigned i = 1; window > 0; i++) {
        if (cf__ring_pending(&w->req))
            return;
        cf__spin_step(i);
        if ((i & 63) == 0) {
            announce(w, false);
            if (cf__now_ns() - start > window)
                break;
        }
    }
    cf__spin_window_missed(&w->spin);
    announce(w, true);
    cf__ring_ctl *ctl = w->map.ctl;
    atomic_store_explicit(&ctl->worker_wait, CF__RING_WAIT_REQUEST, memory_order_seq_cst);
    uint32_t head = atomic_load_explicit(&ctl->req_head, memory_order_seq_cst);
    int rc = 0;
    int64_t parked_at = cf__now_ns();
    if (head == w->req.own)
        rc = cf__futex_wait_shared(&ctl->req_head, head, parked_at + PARK_CHECK_NS);
    atomic_store_explicit(&ctl->worker_wait, CF__RING_RUNNING, memory_order_relaxed);
    if (rc == CF_ETIMEDOUT)
        check_parent(w);
    else
        wake_after(w, parked_at);
}

/* Waits until the parent takes responses and makes room. */
static void wait_room(worker_state *w)
{
    announce(w, true);
    cf__ring_ctl *ctl = w->map.ctl;
    atomic_store_explicit(&ctl->worker_wait, CF__RING_WAIT_ROOM, memory_order_seq_cst);
    uint32_t tail = atomic_load_explicit(&ctl->resp_tail, memory_order_seq_cst);
    int rc = 0;
    if (tail == w->resp.peer)
        rc = cf__futex_wait_shared(&ctl->resp_tail, tail, cf__now_ns() + PARK_CHECK_NS);
    atomic_store_explicit(&ctl->worker_wait, CF__RING_RUNNING, memory_order_relaxed);
    if (rc == CF_ETIMEDOUT)
        check_parent(w);
}

/* Moves staged frames into the response ring, waiting for room as long as needed. */
static void flush(worker_state *w)
{
    for (;;) {
        int rc = cf__outbuf_flush_ring(&w->out, &w->resp, w->sock);
        if (rc == CF_EINVAL)
            leave(CF__WORKER_EXIT_PROTOCOL); /* cannot happen with our own parent */
        if (rc < 0)
            leave(CF__WORKER_EXIT_DONE); /* the parent is gone */
        if (!w->published_at && cf__ring_unconsumed(&w->resp))
            w->published_at = cf__now_ns();
        if (rc == 1)
            return;
        wait_room(w);
    }
}

/* Sends a frame (its memfd `fd`, owned from now on, if CF__FRAME_FD): straight into the ring
 * when nothing waits before it and it fits, else through the staging buffer. */
static void send_frame(worker_state *w, const cf__frame *f, const void *payload, int fd)
{
    uint32_t room;
    if (cf__ring_room(&w->resp, &room) != 0)
        leave(CF__WORKER_EXIT_PROTOCOL);
    if (fd < 0 && cf__outbuf_empty(&w->out) && room >= cf__frame_size(f)) {
        cf__ring_put_frame(&w->resp, f, payload);
        cf__ring_publish(&w->resp);
        if (!w->published_at)
            w->published_at = cf__now_ns();
        return;
    }
    if (cf__outbuf_frame(&w->out, f, payload, fd) != 0)
        leave(CF__WORKER_EXIT_NOMEM);
    flush(w);
}

/* Blocks until a whole frame is available; leaves at end-of-stream. */
static void next_frame(worker_state *w, cf__frame *f, const unsigned char **payload)
{
    for (;;) {
        int rc = cf__inbuf_next(&w->in, f, payload);
        if (rc == 1)
            return;
        if (rc < 0)
            leave(CF__WORKER_EXIT_PROTOCOL); /* cannot happen with our own parent */
        rc = cf__inbuf_fill_ring(&w->in, &w->req);
        if (rc < 0)
            leave(CF__WORKER_EXIT_PROTOCOL);
        if (rc > 0)
            doorbell(w, true); /* the parent may be waiting for this room */
        else
            wait_request(w);
    }
}

/* The descriptor of a frame: sent before the frame, so it is on the socket already. */
static int take_fd(worker_state *w)
{
    int fd;
    while ((fd = cf__inbuf_pop_fd(&w->in)) < 0) {
        int rc = cf__inbuf_drain_socket(&w->in, w->sock, true);
        if (rc == 0 || (rc < 0 && rc != CF_EAGAIN))
            leave(CF__WORKER_EXIT_DONE);
    }
    return fd;
}

/* Makes the payload of `f` readable: inline, or mapped (read-only, no copy) from its memfd. */
static int payload_open(worker_state *w, const cf__frame *f, const unsigned char *inl,
                        const void **data, cf__mapped *mapped)
{
    *mapped = (cf__mapped){0};
    if (!(f->flags & CF__FRAME_FD)) {
        *data = inl;
        return 0;
    }
    int fd = take_fd(w);
    int rc = cf__memfd_map(mapped, fd, f->fd_offset, (size_t)f->len, false);
    close(fd);
    *data = mapped->data;
    return rc;
}

static void *resolve(worker_state *w, const cf__frame *f, char *why, size_t cap)
{
    if (f->module >= w->nmodules) {
        snprintf(why, cap, "unknown module number %u", (unsigned)f->module);
        return NULL;
    }
    if (w->module_error[f->module]) {
        snprintf(why, cap, "%s", w->module_error[f->module]);
        return NULL;
    }
    void *fn = cf_module_symbol(w->modules[f->module], f->offset);
    if (!fn)
        snprintf(why, cap, "the function's offset is outside its module's code in the worker");
    return fn;
}

static void add_module(worker_state *w, const cf__frame *f, const unsigned char *payload)
{
    if (f->id != w->nmodules || w->nmodules == CF__FRAME_MODULES_MAX)
        leave(CF__WORKER_EXIT_PROTOCOL);
    size_t id_len = (size_t)f->code;
    char path[CF__FRAME_NAME_MAX + 1];
    memcpy(path, payload ? (const char *)payload + id_len : "", (size_t)f->len - id_len);
    path[f->len - id_len] = '\0';
    char why[1024];
    if (path[0] == '\0' && !w->own_image)
        w->module_error[w->nmodules] = strdup("the task's function is in the pool's main "
                                              "program, which the helper program does not run");
    else if (cf_module_open(&w->modules[w->nmodules], path, payload, id_len, why, sizeof(why)) != 0)
        w->module_error[w->nmodules] = strdup(why);
    w->nmodules++;
}

/* Sends a result frame: data on success, else the message; large data in a memfd. */
static void put_result(worker_state *w, uint8_t type, uint64_t id, cf__outcome *o)
{
    cf__frame r = {.type = type, .id = id, .code = o->rc};
    const void *payload = NULL;
    int fd = -1;
    if (o->rc) {
        payload = o->message;
        r.len = o->message ? strlen(o->message) : 0;
        if (r.len > CF__FRAME_INLINE_MAX)
            r.len = CF__FRAME_INLINE_MAX;
    } else {
        payload = o->value;
        r.len = o->value ? o->len : 0;
        int rc = 0;
        if (o->dtor == cf__block_release && r.len > CF__FRAME_INLINE_MAX) {
            /* A shared block (bytes.h): frozen and passed as it is. */
            rc = cf__block_share(o->value, (size_t)r.len, &fd, &r.fd_offset);
            if (rc) {
                r = (cf__frame){.type = type, .id = id, .code = rc};
                payload = "the worker could not pass its shared result";
                r.len = strlen(payload);
            } else {
                r.flags = CF__FRAME_FD;
            }
        } else if (r.len > CF__FRAME_INLINE_MAX) {
            rc = cf__memfd_from(&fd, o->value, (size_t)r.len);
            if (rc) {
                r = (cf__frame){.type = type, .id = id, .code = rc};
                payload = "the worker could not pass the result through shared memory";
                r.len = strlen(payload);
            } else {
                r.flags = CF__FRAME_FD;
            }
        }
    }
    send_frame(w, &r, payload, fd);
    cf__outcome_discard(o, true);
}

static void fail_outcome(cf__outcome *o, int code, const char *why)
{
    *o = (cf__outcome){.rc = code, .message = cf__strdup(why)};
}

static void run_task(worker_state *w, const cf__frame *f, const unsigned char *inl)
{
    cf__outcome o;
    char why[600];
    void *fn = resolve(w, f, why, sizeof(why));
    const void *arg;
    cf__mapped mapped;
    int rc = payload_open(w, f, inl, &arg, &mapped);
    if (rc)
        fail_outcome(&o, rc, "the worker could not map the task's argument");
    else if (!fn)
        fail_outcome(&o, CF_EINVAL, why);
    else
        cf__task_invoke(&o, fn, true, arg, (size_t)f->len);
    /* The result first: tearing down a large mapping takes a while, and the parent can use
     * that time. */
    put_result(w, CF__FR_RESULT, f->id, &o);
    cf__memfd_unmap(&mapped);
}

/* The initializer has its own signature; cf__task_invoke runs a bytes task, so wrap it (the
 * worker is single-threaded, so the pointer can live in a static). */
static int (*initializer)(const void *, size_t);

static int init_trampoline(const void *arg, size_t len, void **result, size_t *result_len)
{
    (void)result;
    (void)result_len;
    return initializer(arg, len);
}

static void run_init(worker_state *w, const cf__frame *f, const unsigned char *inl)
{
    w->max_tasks = f->id;
    cf__outcome o = {0};
    char why[600];
    const void *arg;
    cf__mapped mapped;
    int rc = payload_open(w, f, inl, &arg, &mapped);
    if (rc) {
        fail_outcome(&o, rc, "the worker could not map the initializer's argument");
    } else if (f->flags & CF__FRAME_FN) {
        initializer = (int (*)(const void *, size_t))resolve(w, f, why, sizeof(why));
        if (!initializer)
            fail_outcome(&o, CF_EINVAL, why);
        else
            cf__task_invoke(&o, (void *)init_trampoline, true, arg, (size_t)f->len);
    }
    cf__memfd_unmap(&mapped);
    if (o.rc) {
        put_result(w, CF__FR_INIT_FAILED, (uint64_t)getpid(), &o);
        announce(w, true);
        leave(CF__WORKER_EXIT_INIT_FAILED);
    }
    cf__outcome_discard(&o, true);
    cf__frame ready = {.type = CF__FR_READY, .id = (uint64_t)getpid()};
    send_frame(w, &ready, NULL, -1);
}

/* The first message on the socket carries the shared mapping. */
static void attach(worker_state *w)
{
    int fd = take_fd(w);
    int rc = cf__ring_map_attach(&w->map, fd);
    close(fd);
    if (rc)
        leave(CF__WORKER_EXIT_PROTOCOL);
    cf__ring_ctl *ctl = w->map.ctl;
    cf__ring_init(&w->req, cf__ring_map_requests(&w->map), &ctl->req_head, &ctl->req_tail);
    cf__ring_init(&w->resp, cf__ring_map_responses(&w->map), &ctl->resp_head, &ctl->resp_tail);
}

static worker_state *current; /* this process's worker, once it runs */

cf__ring_map *cf__worker_map(void)
{
    return current ? &current->map : NULL;
}

int cf__worker_publish_raw(const void *bytes, size_t n)
{
    uint32_t room;
    if (!current || cf__ring_room(&current->resp, &room) != 0 || room < n)
        return CF_EINVAL;
    cf__ring_write(&current->resp, bytes, n);
    cf__ring_publish(&current->resp);
    if (!current->published_at)
        current->published_at = cf__now_ns();
    return 0;
}

_Noreturn void cf__worker_main(int sock, pid_t parent, bool own_image)
{
    if (!cf__channel_trusted(sock, parent))
        _exit(CF__WORKER_EXIT_UNTRUSTED);
    static worker_state w;
    current = &w;
    w.sock = sock;
    w.own_image = own_image;
    w.spin = (cf__spin_window){.ns = SPIN_MAX_NS / 4, .max_ns = SPIN_MAX_NS};
    if (cf__inbuf_init(&w.in) != 0)
        leave(CF__WORKER_EXIT_NOMEM);
    attach(&w);
    bool initialised = false;
    for (;;) {
        cf__frame f;
        const unsigned char *payload;
        next_frame(&w, &f, &payload);
        if (!initialised && f.type != CF__FR_INIT && f.type != CF__FR_MODULE)
            leave(CF__WORKER_EXIT_PROTOCOL);
        switch (f.type) {
        case CF__FR_MODULE:
            add_module(&w, &f, payload);
            break;
        case CF__FR_INIT:
            if (initialised)
                leave(CF__WORKER_EXIT_PROTOCOL);
            run_init(&w, &f, payload);
            initialised = true;
            break;
        case CF__FR_TASK:
            run_task(&w, &f, payload);
            if (w.max_tasks && ++w.done == w.max_tasks) {
                announce(&w, true);
                leave(CF__WORKER_EXIT_DONE);
            }
            /* More work waiting: the parent will not hear from us until it is done, so tell a
             * sleeping parent now rather than after the grace period. */
            if (w.in.head != w.in.tail || cf__ring_pending(&w.req))
                announce(&w, true);
            break;
        case CF__FR_EXIT:
            announce(&w, true);
            leave(CF__WORKER_EXIT_DONE);
        default:
            leave(CF__WORKER_EXIT_PROTOCOL);
        }
    }
}
