/* The worker process: receives frames from the parent, runs tasks one at a time in order, and
 * sends each result back as soon as it is ready. Single-threaded; forked from the fork server.
 *
 * It exits (with _exit, after flushing stdio: atexit handlers and destructors of the program do
 * not run) at an EXIT frame, after its task limit, or when its socket reaches end-of-stream
 * because the parent went away. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfutures/fn_name.h"
#include "core/internal.h"
#include "process_pool/proc.h"

typedef struct worker_state {
    int sock;
    cf__inbuf in;
    cf__outbuf out;
    cf_module *modules[CF__FRAME_MODULES_MAX];
    char *module_error[CF__FRAME_MODULES_MAX]; /* why a module could not be found */
    uint32_t nmodules;
    uint64_t max_tasks, done;
    bool own_image; /* the pool's program: its main program's functions may run */
} worker_state;

static _Noreturn void leave(int status)
{
    fflush(NULL);
    _exit(status);
}

static void send_now(worker_state *w)
{
    if (cf__outbuf_flush(&w->out, w->sock, true) < 0)
        leave(CF__WORKER_EXIT_DONE); /* the parent is gone */
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
        rc = cf__inbuf_fill(&w->in, w->sock);
        if (rc == 0 || (rc < 0 && rc != CF_EAGAIN))
            leave(CF__WORKER_EXIT_DONE);
    }
}

/* Makes the payload of `f` readable: inline, or mapped from its memfd. */
static int payload_open(worker_state *w, const cf__frame *f, const unsigned char *inl,
                        const void **data, void **mapped)
{
    *mapped = NULL;
    if (!(f->flags & CF__FRAME_FD)) {
        *data = inl;
        return 0;
    }
    int fd = cf__inbuf_pop_fd(&w->in);
    if (fd < 0)
        return CF_EINVAL;
    int rc = cf__memfd_map(mapped, fd, (size_t)f->len, true);
    close(fd);
    *data = *mapped;
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

/* Queues a result frame: data on success, else the message; large data in a memfd. */
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
        if (r.len > CF__FRAME_INLINE_MAX) {
            int rc = cf__memfd_from(&fd, o->value, (size_t)r.len);
            if (rc) {
                r = (cf__frame){.type = type, .id = id, .code = rc};
                payload = "the worker could not pass the result through shared memory";
                r.len = strlen(payload);
            } else {
                r.flags = CF__FRAME_FD;
            }
        }
    }
    if (cf__outbuf_frame(&w->out, &r, payload, fd) != 0)
        leave(CF__WORKER_EXIT_NOMEM);
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
    void *mapped;
    int rc = payload_open(w, f, inl, &arg, &mapped);
    if (rc)
        fail_outcome(&o, rc, "the worker could not map the task's argument");
    else if (!fn)
        fail_outcome(&o, CF_EINVAL, why);
    else
        cf__task_invoke(&o, fn, true, arg, (size_t)f->len);
    cf__memfd_unmap(mapped, (size_t)f->len);
    put_result(w, CF__FR_RESULT, f->id, &o);
    send_now(w);
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
    void *mapped;
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
    cf__memfd_unmap(mapped, (size_t)f->len);
    if (o.rc) {
        put_result(w, CF__FR_INIT_FAILED, (uint64_t)getpid(), &o);
        send_now(w);
        leave(CF__WORKER_EXIT_INIT_FAILED);
    }
    cf__outcome_discard(&o, true);
    cf__frame ready = {.type = CF__FR_READY, .id = (uint64_t)getpid()};
    if (cf__outbuf_frame(&w->out, &ready, NULL, -1) != 0)
        leave(CF__WORKER_EXIT_NOMEM);
    send_now(w);
}

_Noreturn void cf__worker_main(int sock, pid_t parent, bool own_image)
{
    if (!cf__channel_trusted(sock, parent))
        _exit(CF__WORKER_EXIT_UNTRUSTED);
    static worker_state w;
    w.sock = sock;
    w.own_image = own_image;
    if (cf__inbuf_init(&w.in) != 0)
        leave(CF__WORKER_EXIT_NOMEM);
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
            if (w.max_tasks && ++w.done == w.max_tasks)
                leave(CF__WORKER_EXIT_DONE);
            break;
        case CF__FR_EXIT:
            leave(CF__WORKER_EXIT_DONE);
        default:
            leave(CF__WORKER_EXIT_PROTOCOL);
        }
    }
}
