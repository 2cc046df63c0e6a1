/* The process-pool executor (see process_pool.h and docs/process_pool.md).
 *
 * Parent side. Submitted tasks become jobs in a FIFO queue under `mu`. Each worker process has a
 * shared mapping with a request and a response ring (process_pool/ring.h) and a socket for
 * descriptors, doorbells and end-of-stream. Up to WINDOW jobs are dispatched to a worker ahead of
 * its progress (the future turns RUNNING then) and their frames are written into its request
 * ring straight from the submitting thread, so a lone task costs no thread hop and, while the
 * worker spins, no system call on the way out. A manager thread reads the response rings,
 * completes futures (outside the lock, in batches), refills windows, replaces retired workers,
 * notices deaths (end-of-stream on a socket, exit reports from the fork server) and drives
 * shutdown. It spins on the rings for an adaptive window after traffic, then sleeps in epoll on
 * every worker's socket, the fork server's control socket and an eventfd, with the workers'
 * doorbells armed so that a result wakes it (see worker.c). Nothing relies on SIGCHLD.
 *
 * Invariants (mu held; the functions that need mu assert it):
 *   - a job is in exactly one place: the queue, a worker's in-flight list, or `finished` (its
 *     outcome set, to be delivered by whoever unlocks next);
 *   - a worker's in-flight jobs are answered in order (the worker is sequential), so a result
 *     matches the head of the list;
 *   - once `broken` is set, the queue and every in-flight list are empty and stay empty. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cfutures/fn_name.h"
#include "core/internal.h"
#include "core/list.h"
#include "core/trace.h"
#include "process_pool/proc.h"

enum {
    WINDOW = 8,          /* jobs dispatched to one worker ahead of its results */
    SPIN_MAX_NS = 20000, /* the manager's adaptive spin window on the rings, at most */
    FLUSH_BATCH = 8,     /* workers a dispatch flushes by name; beyond, all with output */
    MANAGER_EVENTS = 64, /* epoll events the manager takes per wait */
};

/* How long a death waits for its exit status (from the fork server) before reporting. */
#define STATUS_WAIT_NS (5 * CF__NS_PER_S)
/* How long a worker told to exit (an EXIT frame with nothing left to run, its task limit
 * reached, or cf_process_pool_terminate()'s SIGTERM) has before it gets SIGKILL, by default: a
 * stopped or uncooperative worker must not hold shutdown forever. */
#define EXIT_TIMEOUT_NS (5 * CF__NS_PER_S)
/* A worker that the fork server could not fork (RLIMIT_NPROC, a cgroup's pids.max, memory) is
 * tried again after a delay that doubles from SPAWN_BACKOFF_MIN_NS up to SPAWN_BACKOFF_MAX_NS.
 * Meanwhile the pool runs on the workers it has; with none at all, it gives up (breaks) after
 * SPAWN_ATTEMPTS failures in a row, about a second and a half. */
#define SPAWN_BACKOFF_MIN_NS (CF__NS_PER_S / 100)
#define SPAWN_BACKOFF_MAX_NS CF__NS_PER_S
#define SPAWN_ATTEMPTS       8

/* What an epoll event is about: the low TAG_BITS bits, and a worker's token above them. */
enum { TAG_WAKE = 1, TAG_CTL = 2, TAG_WORKER = 4, TAG_BITS = 8 };

/* How cf_process_pool_terminate() / _kill() stop the workers. */
typedef enum force_how { FORCE_NONE, FORCE_TERMINATE, FORCE_KILL } force_how;

static int force_signal(force_how how)
{
    return how == FORCE_TERMINATE ? SIGTERM : SIGKILL;
}

typedef struct job {
    struct job *next;
    cf_future *f;
    uint64_t id;
    uint32_t module;
    uint64_t offset;
    int fd;     /* memfd holding a large argument, or -1 */
    size_t len; /* argument length */
    cf__outcome out;
} job;

/* A FIFO of jobs linked through `next`. */
typedef struct job_list {
    job *head, *tail;
} job_list;

typedef struct worker {
    struct worker *next;
    uint32_t token;
    int fd; /* -1 once end-of-stream was seen */
    pid_t pid;
    bool started; /* the server forked it, or it spoke: tasks may be sent to it */
    bool ready;
    bool told_exit;  /* an EXIT frame was queued */
    bool exited;     /* the fork server reported its exit (or cannot anymore) */
    bool awaiting;   /* died unexpectedly: waiting for its status to report it */
    bool out_armed;  /* EPOLLOUT is registered */
    int status;      /* wait status, valid when exited and spawn_errno == 0 */
    int spawn_errno; /* the server could not fork it */
    int64_t deadline;
    int64_t exit_deadline; /* when it gets SIGKILL for not exiting as told (0: not armed) */
    bool exit_killed;      /* ... and it did */
    job_list jobs;         /* in flight, oldest first */
    unsigned inflight;
    uint64_t sent, done;
    uint32_t modules_known;
    cf__ring_map map; /* the shared rings (NULL base until created, and in a fork() child) */
    cf__ring req;     /* we produce */
    cf__ring resp;    /* we consume */
    bool unpublished; /* frames were written into `req` and not published yet */
    cf__outbuf out;   /* frames waiting for room in `req` */
    cf__inbuf in;     /* frames from `resp`, descriptors from the socket */
} worker;

/* What the manager watches while it spins without the lock: the rings stay mapped (only the
 * manager frees workers), and a change of an index it noted means there is something to do. */
typedef struct ring_watch {
    cf__ring_ctl *ctl;
    uint32_t resp_own; /* a new result: resp_head moved away from it */
    uint32_t req_peer; /* room appeared for staged frames: req_tail moved */
    bool staged;
} ring_watch;

typedef struct process_pool process_pool;
struct process_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the manager finished */
    cf__dlink pools;   /* all pools, for the fork handlers */
    job_list queue;
    size_t queued;
    /* Outcomes to deliver, in the order they were decided: results in the order they arrived,
     * so a callback never sees an earlier task of the same worker still RUNNING. */
    job_list finished;
    worker *workers;
    uint32_t next_token;
    uint64_t next_id;
    int epfd, wakefd, ctl;
    pid_t server_pid;
    pthread_t manager;
    bool manager_done, shutdown, broken, server_gone, server_exit_sent;
    bool manager_asleep;  /* in epoll_wait, the doorbells armed */
    uint32_t sleep_epoch; /* the doorbell value of its current (or last) sleep, shifted */
    _Atomic bool poke;    /* something for the manager: stop spinning */
    cf__spin_window spin; /* the manager's, on the rings */
    ring_watch *watch;    /* the manager's, see ring_watch */
    size_t watch_cap;
    bool delivering;            /* a thread is completing futures taken from `finished` */
    _Atomic uint32_t in_flight; /* jobs dispatched and not answered (read by helpers) */
    struct pp_hub *hub;         /* how waiting threads find the pool (see "helping") */
    uint32_t hub_gen;
    force_how forcing;
    unsigned spawn_failures; /* forks that failed in a row */
    int spawn_errno;         /* why the last one failed */
    int64_t spawn_retry_at;  /* no spawn before this (0: none pending) */
    bool free_on_exit;
    bool forked_fds_closed; /* a fork() child closed our descriptors: touch none */
    cf_executor *handle;    /* our cf_executor: the executor named in probes */
    unsigned index;         /* names the manager thread: cfproc<index>_mgr */
    /* Counters for cf_process_pool_get_stats (mu held). */
    unsigned long long workers_started, workers_retired, workers_replaced, spawns_failed;
    unsigned long long tasks_completed;
    unsigned retired_unreplaced; /* retirements no new worker has taken the place of yet */
    /* options */
    unsigned max_workers;
    const void *initializer; /* as given, for cf_process_pool_get_options */
    uint64_t max_tasks;
    int64_t exit_timeout_ns;
    cf__start start; /* the start method; after start(), the one in use */
    bool has_init;
    uint32_t init_module;
    uint64_t init_offset;
    cf__bytes *init_arg;
    cf_fn_table *names; /* task functions as (module number, offset) */
};

static _Thread_local process_pool *current_manager CF__TLS_FAST;

/* ---- waiting threads help ----
 * A thread that waits for a future (cf_future_result and friends) spins a moment before it
 * sleeps. Meanwhile it reads the rings of the pool it last submitted to (cf__wait_help_install),
 * so that a hot round trip needs neither the manager thread nor a system call: the submitter
 * writes the task into the ring, the worker answers into the other ring, and the same thread
 * takes the answer and completes the future. A helper only tries the pool's lock, never blocks,
 * and completes only futures that run no user code (done-callbacks stay on the manager thread).
 *
 * The pool is named by a hub: a small record that is never freed (reused by later pools), whose
 * generation changes when its pool is freed. A thread that still names a freed pool finds the
 * generation changed and forgets it; the release waits for threads inside (they are only ever
 * briefly there). The hubs' free list is under pools_mu, which the fork handlers take. */
typedef struct pp_hub {
    _Atomic uint32_t gen;
    _Atomic uint32_t users;
    _Atomic(process_pool *) pool;
    struct pp_hub *next_free;
} pp_hub;

static pp_hub *free_hubs;
static _Thread_local pp_hub *help_hub CF__TLS_FAST;
static _Thread_local uint32_t help_gen CF__TLS_FAST;

/* ---- all pools, and fork() ---- */

static pthread_mutex_t pools_mu = PTHREAD_MUTEX_INITIALIZER;
static cf__dlink *pools;

static process_pool *pool_of(cf__dlink *l)
{
    return l ? CF__CONTAINER_OF(l, process_pool, pools) : NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void before_fork(void)
{
    pthread_mutex_lock(&pools_mu);
    for (process_pool *p = pool_of(pools); p; p = pool_of(p->pools.next))
        pthread_mutex_lock(&p->mu);
}

static void after_fork_parent(void)
{
    for (process_pool *p = pool_of(pools); p; p = pool_of(p->pools.next))
        pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&pools_mu);
}

static void outbuf_forget_fds(cf__outbuf *b)
{
    for (size_t i = 0; i < b->nfds; i++)
        close(b->fds[i].fd);
    b->nfds = 0;
}

/* In the child: close every descriptor of every inherited pool, so that the child can neither
 * talk to the parent's server and workers nor keep them alive (they watch for end-of-stream). */
static void after_fork_child(void)
{
    for (process_pool *p = pool_of(pools); p; p = pool_of(p->pools.next)) {
        close_fd(&p->epfd);
        close_fd(&p->wakefd);
        close_fd(&p->ctl);
        for (worker *w = p->workers; w; w = w->next) {
            close_fd(&w->fd);
            /* The rings were not inherited (MADV_DONTFORK): their addresses are free here. */
            w->map = (cf__ring_map){0};
            outbuf_forget_fds(&w->out);
            int fd;
            while ((fd = cf__inbuf_pop_fd(&w->in)) >= 0)
                close(fd);
            for (job *j = w->jobs.head; j; j = j->next)
                close_fd(&j->fd);
        }
        for (job *j = p->queue.head; j; j = j->next)
            close_fd(&j->fd);
        p->forked_fds_closed = true;
        pthread_mutex_init(&p->mu, NULL);
        if (p->hub) /* threads that were helping are gone: a release must not wait for them */
            atomic_store_explicit(&p->hub->users, 0, memory_order_relaxed);
    }
    for (pp_hub *h = free_hubs; h; h = h->next_free)
        atomic_store_explicit(&h->users, 0, memory_order_relaxed);
    pthread_mutex_init(&pools_mu, NULL);
}

static const cf__fork_hooks pool_fork_hooks = {before_fork, after_fork_parent, after_fork_child};

static int pools_add(process_pool *p)
{
    pthread_mutex_lock(&pools_mu);
    pp_hub *h = free_hubs;
    if (h)
        free_hubs = h->next_free;
    else
        h = cf__calloc(1, sizeof(*h));
    if (h) {
        atomic_store_explicit(&h->pool, p, memory_order_relaxed);
        p->hub = h;
        p->hub_gen = atomic_load_explicit(&h->gen, memory_order_relaxed);
        cf__dlist_push(&pools, &p->pools);
    }
    pthread_mutex_unlock(&pools_mu);
    return h ? 0 : CF_ENOMEM;
}

static void pools_remove(process_pool *p)
{
    pp_hub *h = p->hub;
    if (!h)
        return;
    pthread_mutex_lock(&pools_mu);
    cf__dlist_remove(&pools, &p->pools);
    atomic_fetch_add_explicit(&h->gen, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&h->users, memory_order_seq_cst) != 0)
        sched_yield(); /* a helper is reading the rings: a moment */
    atomic_store_explicit(&h->pool, NULL, memory_order_relaxed);
    h->next_free = free_hubs;
    free_hubs = h;
    p->hub = NULL;
    pthread_mutex_unlock(&pools_mu);
}

/* ---- job lists ---- */

/* Appends the chain first..last (already linked). */
static void jobs_append(job_list *l, job *first, job *last)
{
    last->next = NULL;
    if (l->tail)
        l->tail->next = first;
    else
        l->head = first;
    l->tail = last;
}

static job *jobs_pop(job_list *l)
{
    job *j = l->head;
    if (j) {
        l->head = j->next;
        if (!l->head)
            l->tail = NULL;
    }
    return j;
}

/* Empties the list and returns its chain. */
static job *jobs_take(job_list *l)
{
    job *chain = l->head;
    l->head = l->tail = NULL;
    return chain;
}

/* ---- small helpers ---- */

/* Tells the manager there is something to do (mu held): a spinning manager sees the flag, a
 * sleeping one the eventfd. */
static void wake_manager(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    atomic_store_explicit(&pool->poke, true, memory_order_relaxed);
    if (!pool->manager_asleep)
        return;
    uint64_t one = 1;
    ssize_t n = write(pool->wakefd, &one, sizeof(one));
    (void)n; /* an eventfd never fills up with one-increments; failure only means closed */
}

static void job_free(job *j)
{
    close_fd(&j->fd);
    cf__outcome_discard(&j->out, true);
    cf__free(j);
}

/* Frees a chain of jobs whose futures belong to someone else. */
static void jobs_discard(job *chain)
{
    while (chain) {
        job *j = chain;
        chain = j->next;
        job_free(j);
    }
}

/* Frees a chain of jobs and drops their futures' executor references, cancelling them first
 * with `cancel`. */
static void jobs_drop(job *chain, bool cancel)
{
    while (chain) {
        job *j = chain;
        chain = j->next;
        if (cancel)
            cf_future_cancel(j->f);
        cf_future_unref(j->f);
        job_free(j);
    }
}

static job *take_queue(process_pool *pool)
{
    pool->queued = 0;
    return jobs_take(&pool->queue);
}

static void finish_job(process_pool *pool, job *j, int code, const char *message)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    j->out = (cf__outcome){.rc = code, .message = message ? cf__strdup(message) : NULL};
    jobs_append(&pool->finished, j, j);
}

/* Completes (outside the lock) the futures whose outcomes were collected. */
static void deliver(job *list)
{
    while (list) {
        job *j = list;
        list = j->next;
        cf__task_complete(j->f, &j->out, true);
        j->out = (cf__outcome){0};
        cf_future_unref(j->f);
        job_free(j);
    }
}

/* The same for a thread that must not run user code: stops at the first future with a
 * done-callback and returns the jobs from there on, undelivered. */
static job *deliver_quiet(job *list)
{
    while (list) {
        job *j = list;
        if (!cf__task_complete_quiet(j->f, &j->out, true))
            return list;
        list = j->next;
        j->out = (cf__outcome){0};
        cf_future_unref(j->f);
        job_free(j);
    }
    return NULL;
}

/* Releases mu after completing the futures collected in `finished`, in the order they were
 * decided: one thread delivers at a time (`delivering`), the others leave their outcomes to it.
 * The manager delivers everything; any other thread (a submitter, a waiting thread that helps)
 * only what runs no user code, leaving the rest to the manager, so that done-callbacks run on
 * the manager thread. */
static void unlock_and_deliver_as(process_pool *pool, bool manager)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    while (pool->finished.head && !pool->delivering) {
        job *list = jobs_take(&pool->finished);
        pool->delivering = true;
        pthread_mutex_unlock(&pool->mu);
        job *rest = NULL;
        if (manager)
            deliver(list);
        else
            rest = deliver_quiet(list);
        pthread_mutex_lock(&pool->mu);
        pool->delivering = false;
        if (rest) {
            job *last = rest;
            while (last->next)
                last = last->next;
            last->next = pool->finished.head;
            if (!pool->finished.head)
                pool->finished.tail = last;
            pool->finished.head = rest;
            wake_manager(pool);
            break;
        }
    }
    /* A manager about to finish waits until nobody delivers. */
    if (!manager && (pool->shutdown || pool->broken))
        wake_manager(pool);
    pthread_mutex_unlock(&pool->mu);
}

static void unlock_and_deliver(process_pool *pool)
{
    unlock_and_deliver_as(pool, current_manager == pool);
}

static void epoll_watch(process_pool *pool, int op, int fd, uint64_t tag, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    epoll_ctl(pool->epfd, op, fd, &ev);
}

static uint64_t worker_tag(const worker *w)
{
    return ((uint64_t)w->token << TAG_BITS) | TAG_WORKER;
}

/* Describes how a worker ended, for the messages of the futures it takes down. */
static void describe_end(char *buf, size_t cap, const process_pool *pool, const worker *w)
{
    char pid[32] = "";
    if (w->pid > 0)
        snprintf(pid, sizeof(pid), " (pid %d)", (int)w->pid);
    if (pool->forcing)
        snprintf(buf, cap, "a worker process%s was stopped by cf_process_pool_%s()", pid,
                 pool->forcing == FORCE_KILL ? "kill" : "terminate");
    else if (w->spawn_errno)
        snprintf(buf, cap, "a worker process could not be started: %s", strerror(w->spawn_errno));
    else if (!w->exited)
        snprintf(buf, cap, "a worker process%s terminated abruptly (exit status unknown)", pid);
    else if (WIFSIGNALED(w->status))
        snprintf(buf, cap, "a worker process%s terminated abruptly: killed by signal %d (%s)", pid,
                 WTERMSIG(w->status), strsignal(WTERMSIG(w->status)));
    else
        snprintf(buf, cap, "a worker process%s terminated abruptly with exit code %d", pid,
                 WEXITSTATUS(w->status));
}

/* ---- breaking ---- */

static void kill_worker(process_pool *pool, worker *w, int sig)
{
    if (pool->server_gone || w->exited || pool->ctl < 0)
        return;
    cf__ctl m = {.type = CF__CTL_KILL, .token = w->token, .value = sig};
    cf__ctl_send(pool->ctl, &m, -1);
}

static void fail_list(process_pool *pool, job *list, const char *message)
{
    while (list) {
        job *j = list;
        list = j->next;
        finish_job(pool, j, CF_EBROKEN, message);
    }
}

/* Marks the pool broken: every queued and in-flight future fails with CF_EBROKEN and `why`, the
 * remaining workers are killed, later submits fail. Idempotent. */
static void pool_break(process_pool *pool, const char *why)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    if (pool->broken)
        return;
    pool->broken = true;
    char message[1024];
    snprintf(message, sizeof(message),
             "%s while the future was running or pending; the process pool is not usable "
             "anymore",
             why);
    for (worker *w = pool->workers; w; w = w->next) {
        fail_list(pool, jobs_take(&w->jobs), message);
        w->inflight = 0;
        atomic_store_explicit(&pool->in_flight, 0, memory_order_relaxed);
        kill_worker(pool, w, SIGKILL);
    }
    fail_list(pool, take_queue(pool), message);
    wake_manager(pool);
}

static void worker_died(process_pool *pool, worker *w)
{
    char why[512];
    describe_end(why, sizeof(why), pool, w);
    pool_break(pool, why);
}

/* ---- naming task functions ---- */

/* True if module number `module` of the pool's table is the main program. */
static bool in_main_program(const process_pool *pool, uint32_t module)
{
    const char *path = NULL;
    cf_fn_table_module(&path, NULL, NULL, pool->names, module);
    return path && path[0] == '\0';
}

/* fn -> (module number, offset) (mu held). The helper runs its own main program, not ours: our
 * functions must be in libraries. */
static int name_task(process_pool *pool, const void *fn, uint32_t *module, uint64_t *offset)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    int rc = cf_fn_table_name(pool->names, fn, module, offset);
    if (rc == 0 && pool->start.method == CF_PROCESS_START_HELPER && in_main_program(pool, *module))
        rc = CF_EINVAL;
    return rc;
}

/* ---- sending ---- */

static void protocol_error(process_pool *pool, worker *w);

/* Wakes the worker if it parked waiting for a request (after a publish: the two sides' store
 * then load pair up, so either it sees the new head or we see it parked). */
static void wake_worker(worker *w, uint32_t why, _Atomic uint32_t *word)
{
    cf__ring_ctl *ctl = w->map.ctl;
    if (atomic_load_explicit(&ctl->worker_wait, memory_order_seq_cst) != why)
        return;
    atomic_store_explicit(&ctl->woken_at, cf__now_ns(), memory_order_relaxed);
    cf__futex_wake_shared(word, 1);
}

/* Writes a frame for the worker (its memfd `fd`, owned from now on, if CF__FRAME_FD): straight
 * into the request ring when nothing waits before it and it fits, else into the staging buffer.
 * Visible to the worker after flush_worker(). Returns 0 or CF_ENOMEM. */
static int worker_write(process_pool *pool, worker *w, const cf__frame *f, const void *payload,
                        int fd)
{
    uint32_t room = 0;
    if (fd < 0 && cf__outbuf_empty(&w->out) && w->fd >= 0) {
        if (cf__ring_room(&w->req, &room) != 0) {
            protocol_error(pool, w); /* it lied about what it consumed */
            return CF_EBROKEN;
        }
        if (room >= cf__frame_size(f)) {
            cf__ring_put_frame(&w->req, f, payload);
            w->unpublished = true;
            return 0;
        }
    }
    return cf__outbuf_frame(&w->out, f, payload, fd);
}

/* Publishes what was written for the worker, moves staged frames into its ring as room allows,
 * and wakes it if it sleeps. */
static void flush_worker(process_pool *pool, worker *w)
{
    if (w->fd < 0)
        return;
    if (w->unpublished) {
        cf__ring_publish(&w->req);
        w->unpublished = false;
    }
    int rc = 1;
    if (!cf__outbuf_empty(&w->out))
        rc = cf__outbuf_flush_ring(&w->out, &w->req, w->fd);
    if (rc == CF_EINVAL) {
        protocol_error(pool, w);
        return;
    }
    if (rc < 0) {
        /* The worker is gone; its end-of-stream will be noticed on the read side. */
        outbuf_forget_fds(&w->out);
        w->out.head = w->out.tail = 0;
        rc = 1;
    }
    wake_worker(w, CF__RING_WAIT_REQUEST, &w->map.ctl->req_head);
    /* Staged frames wait for the ring (the manager retries when the worker makes room) or, if
     * the next thing to go is a descriptor, for room in the socket (EPOLLOUT). */
    bool want = rc == 0 && w->out.nfds && w->out.fds[0].pos == w->out.head;
    if (want != w->out_armed) {
        epoll_watch(pool, EPOLL_CTL_MOD, w->fd, worker_tag(w),
                    EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0));
        w->out_armed = want;
    }
    if (rc == 0 && pool->manager_asleep)
        atomic_store_explicit(&w->map.ctl->doorbell, pool->sleep_epoch | CF__DOORBELL_ROOM,
                              memory_order_seq_cst);
}

/* Queues MODULE frames so that the worker knows every module up to `module`: its identity
 * (`code` bytes) then its path. */
static int send_modules(process_pool *pool, worker *w, uint32_t module)
{
    while (w->modules_known <= module) {
        const char *path;
        const void *id;
        size_t id_len;
        cf_fn_table_module(&path, &id, &id_len, pool->names, w->modules_known);
        size_t path_len = strlen(path);
        unsigned char payload[CF_MODULE_ID_MAX + CF__FRAME_NAME_MAX];
        memcpy(payload, id, id_len);
        memcpy(payload + id_len, path, path_len);
        cf__frame f = {.type = CF__FR_MODULE,
                       .id = w->modules_known,
                       .code = (int32_t)id_len,
                       .len = id_len + path_len};
        int rc = worker_write(pool, w, &f, payload, -1);
        if (rc)
            return rc;
        w->modules_known++;
    }
    return 0;
}

static bool accepting(const process_pool *pool, const worker *w)
{
    return w->fd >= 0 && !w->told_exit && !w->awaiting && !w->exited &&
           (!pool->max_tasks || w->sent < pool->max_tasks);
}

/* The least loaded worker with room, preferring one that is ready. A task goes only to a worker
 * the server has forked: one that could not be forked never ran anything, so the pool carries
 * on with the others and no accepted task is lost. If the least loaded worker is still being
 * forked, the task waits for it (a moment) rather than queueing behind another worker's tasks.
 * NULL: nothing to send now. */
static worker *pick_worker(process_pool *pool)
{
    worker *best = NULL;
    for (worker *w = pool->workers; w; w = w->next) {
        if (!accepting(pool, w) || w->inflight >= WINDOW)
            continue;
        if (!best || w->inflight < best->inflight ||
            (w->inflight == best->inflight && w->started && !best->started) ||
            (w->inflight == best->inflight && w->started == best->started && w->ready &&
             !best->ready))
            best = w;
    }
    return best && best->started ? best : NULL;
}

/* Encodes a job for `w`. On failure the job's future fails with the error. */
static int encode_job(process_pool *pool, worker *w, job *j)
{
    int rc = send_modules(pool, w, j->module);
    cf__frame f = {
        .type = CF__FR_TASK, .id = j->id, .module = j->module, .offset = j->offset, .len = j->len};
    const void *payload = NULL;
    const cf__bytes *arg = cf__task_arg_bytes(j->f);
    if (rc == 0 && j->fd < 0 && arg->block) {
        /* A range of a frozen block: the worker maps the same memfd (bytes.h). */
        if (cf__fault(CF__FAULT_FD))
            rc = CF_EMFILE;
        else if ((j->fd = fcntl(cf__block_fd(arg->block), F_DUPFD_CLOEXEC, STDERR_FILENO + 1)) < 0)
            rc = cf__errno_code(errno);
        f.fd_offset = cf__block_offset(arg->block, arg->data);
    }
    if (j->fd >= 0)
        f.flags = CF__FRAME_FD;
    else
        payload = arg->data;
    if (rc == 0) {
        rc = worker_write(pool, w, &f, payload, j->fd);
        j->fd = -1; /* owned (or closed) by the buffer now */
    }
    /* The worker has its own copy now: release ours early. */
    cf_task_release_arg(j->f);
    return rc;
}

/* Moves queued jobs into worker windows and sends them (mu held). */
static void dispatch(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    /* Once broken, nothing is queued or in flight any more (see the invariants above). */
    CF__ASSERT(!pool->broken || !pool->queue.head);
    worker *touched[FLUSH_BATCH];
    size_t ntouched = 0;
    bool overflow = false;
    while (pool->queue.head) {
        worker *w = pick_worker(pool);
        if (!w)
            break;
        job *j = jobs_pop(&pool->queue);
        pool->queued--;
        if (cf_future_set_running_or_notify_cancel(j->f) != 1) {
            /* Cancelled: released with the outcomes, after mu (the last reference may go to the
             * future cache, whose depot lock must never be taken under mu: docs/internals.md). */
            jobs_append(&pool->finished, j, j);
            continue;
        }
        CF__PROBE2(task__start, j->f, j->f->fn);
        int rc = encode_job(pool, w, j);
        if (rc) {
            finish_job(pool, j, rc,
                       rc == CF_EBROKEN  ? "the process pool broke while the task was sent to a "
                                           "worker"
                       : rc == CF_ENOMEM ? "out of memory while sending the task to a worker"
                                         : "no descriptor left to pass the task's argument");
            continue;
        }
        jobs_append(&w->jobs, j, j);
        w->inflight++;
        w->sent++;
        if (pool->max_tasks && w->sent == pool->max_tasks) {
            /* Its last task: it exits after it, and the next worker started takes its place. */
            pool->workers_retired++;
            pool->retired_unreplaced++;
        }
        atomic_fetch_add_explicit(&pool->in_flight, 1, memory_order_relaxed);
        size_t k = 0;
        while (k < ntouched && touched[k] != w)
            k++;
        if (k == ntouched) {
            if (ntouched < FLUSH_BATCH)
                touched[ntouched++] = w;
            else
                overflow = true;
        }
    }
    if (overflow) {
        for (worker *w = pool->workers; w; w = w->next)
            if (w->unpublished || !cf__outbuf_empty(&w->out))
                flush_worker(pool, w);
        return;
    }
    for (size_t k = 0; k < ntouched; k++)
        flush_worker(pool, touched[k]);
}

/* ---- workers ---- */

static int queue_init_frames(process_pool *pool, worker *w)
{
    cf__frame f = {.type = CF__FR_INIT, .id = pool->max_tasks};
    const void *payload = NULL;
    int fd = -1;
    if (pool->has_init) {
        int rc = send_modules(pool, w, pool->init_module);
        if (rc)
            return rc;
        f.flags = CF__FRAME_FN;
        f.module = pool->init_module;
        f.offset = pool->init_offset;
        f.len = pool->init_arg->len;
        payload = pool->init_arg->data;
        if (f.len > CF__FRAME_INLINE_MAX) {
            rc = cf__memfd_from(&fd, payload, (size_t)f.len);
            if (rc)
                return rc;
            f.flags |= CF__FRAME_FD;
        }
    }
    return worker_write(pool, w, &f, payload, fd);
}

static void worker_free(worker *w)
{
    if (w->fd >= 0)
        close(w->fd);
    cf__ring_map_free(&w->map);
    cf__outbuf_free(&w->out);
    cf__inbuf_free(&w->in);
    cf__free(w);
}

/* Gives the worker its shared rings: the memfd goes first on the socket (the worker maps it
 * before anything else), the mapping stays here. */
static int give_rings(process_pool *pool, worker *w)
{
    int fd;
    int rc = cf__ring_map_create(&w->map, &fd);
    if (rc)
        return rc;
    ssize_t n = cf__send_with_fd(w->fd, "R", 1, fd, false);
    close(fd);
    if (n != 1)
        return n < 0 ? (int)n : CF_ESYSTEM;
    cf__ring_ctl *ctl = w->map.ctl;
    cf__ring_init(&w->req, cf__ring_map_requests(&w->map), &ctl->req_head, &ctl->req_tail);
    cf__ring_init(&w->resp, cf__ring_map_responses(&w->map), &ctl->resp_head, &ctl->resp_tail);
    atomic_store_explicit(&ctl->doorbell, pool->manager_asleep ? pool->sleep_epoch : 0,
                          memory_order_relaxed);
    return 0;
}

/* Starts one worker (mu held): a socket pair, its rings, the init frames, a SPAWN request to the
 * server. The worker's frames can be written at once: the rings hold them until it runs. */
static int spawn_worker(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    if (pool->server_gone || pool->ctl < 0)
        return CF_EAGAIN;
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    worker *w = cf__calloc(1, sizeof(*w));
    if (!w)
        return CF_ENOMEM;
    w->fd = -1;
    int rc = cf__inbuf_init(&w->in);
    if (rc) {
        cf__free(w);
        return rc;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        cf__fd_pair_above_stdio(sv) != 0) {
        rc = cf__errno_code(errno);
        worker_free(w);
        return rc;
    }
    w->fd = sv[0];
    w->token = pool->next_token++;
    rc = cf__set_nonblock(w->fd);
    if (rc == 0)
        rc = give_rings(pool, w);
    if (rc == 0)
        rc = queue_init_frames(pool, w);
    if (rc == 0) {
        cf__ctl m = {.type = CF__CTL_SPAWN, .token = w->token};
        rc = cf__ctl_send(pool->ctl, &m, sv[1]);
        /* The server died and the manager has not read its end of stream yet: the pool is
         * broken (the manager breaks it in a moment), not a system error. */
        if (rc == CF_ESYSTEM)
            rc = CF_EBROKEN;
    }
    close(sv[1]);
    if (rc) {
        worker_free(w);
        return rc;
    }
    w->next = pool->workers;
    pool->workers = w;
    epoll_watch(pool, EPOLL_CTL_ADD, w->fd, worker_tag(w), EPOLLIN | EPOLLRDHUP);
    flush_worker(pool, w);
    return 0;
}

/* Starts workers for the work that the accepting ones cannot take, within max_workers (mu held).
 * Returns an error only if work is waiting, no worker exists and none could be started. */
static int provide_workers(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    if (pool->broken || pool->forcing)
        return 0;
    if (pool->spawn_retry_at) {
        if (cf__now_ns() < pool->spawn_retry_at)
            return 0; /* backing off after a failed fork */
        pool->spawn_retry_at = 0;
    }
    unsigned procs = 0, ready = 0;
    size_t demand = pool->queued;
    for (worker *w = pool->workers; w; w = w->next) {
        bool acc = accepting(pool, w);
        if (acc) {
            ready++;
            demand += w->inflight;
        }
        if (acc || (w->fd >= 0 && w->inflight))
            procs++;
    }
    int rc = 0;
    while (procs < pool->max_workers && ready < demand) {
        rc = spawn_worker(pool);
        if (rc)
            break;
        procs++;
        ready++;
    }
    return rc && procs == 0 && pool->queued ? rc : 0;
}

/* ---- receiving (manager, mu held) ---- */

/* The server forked the worker (or it already spoke): tasks may go to it. */
static void on_started(process_pool *pool, worker *w)
{
    if (!w->started) {
        CF__PROBE2(process__start, pool->handle, (int)w->pid);
        pool->workers_started++;
        if (pool->retired_unreplaced) {
            pool->retired_unreplaced--;
            pool->workers_replaced++;
        }
    }
    w->started = true;
    pool->spawn_failures = 0;
}

static void on_eof(process_pool *pool, worker *w);

/* The worker broke the protocol (a malformed frame, an impossible ring index, a descriptor that
 * is missing or wrong): it is killed, the pool breaks, and we stop reading it. */
static void protocol_error(process_pool *pool, worker *w)
{
    char why[128];
    snprintf(why, sizeof(why), "a worker process (pid %d) sent a malformed message", (int)w->pid);
    kill_worker(pool, w, SIGKILL);
    pool_break(pool, why);
    if (w->fd >= 0)
        on_eof(pool, w);
}

/* The descriptor of a frame the worker published: it sent it before the frame, so it is in our
 * queue or on the socket now. -1 if it is not (the worker lied). */
static int take_fd(worker *w)
{
    int fd = cf__inbuf_pop_fd(&w->in);
    while (fd < 0 && cf__inbuf_drain_socket(&w->in, w->fd, false) > 0)
        fd = cf__inbuf_pop_fd(&w->in);
    return fd;
}

/* Takes a result's bytes. Inline ones are copied out of the frame (private memory already). A
 * memfd is mapped read-only and handed to the caller as it is, without a copy: it must be sealed
 * against writing, shrinking and growing (cf__memfd_map's `immutable`), so that the worker can
 * neither change the bytes while the caller reads them (no double fetch is possible) nor make
 * the mapping fault. */
static int read_payload(worker *w, const cf__frame *f, const unsigned char *inl, job *j)
{
    size_t len = (size_t)f->len;
    if (f->flags & CF__FRAME_FD) {
        int fd = take_fd(w);
        if (fd < 0)
            return CF_EINVAL;
        cf__mapped m;
        int rc = cf__memfd_map(&m, fd, f->fd_offset, len, true);
        close(fd);
        if (rc == 0 && len && cf__block_adopt_mapping(m.base, m.size) != 0) {
            cf__memfd_unmap(&m);
            rc = CF_ENOMEM;
        }
        if (rc)
            return rc == CF_ENOMEM ? rc : CF_EINVAL;
        j->out = (cf__outcome){
            .value = (void *)m.data, .len = len, .dtor = len ? cf__block_release : NULL};
        return 0;
    }
    void *copy = cf__malloc(len ? len : 1);
    if (!copy)
        return CF_ENOMEM;
    if (len)
        memcpy(copy, inl, len);
    j->out = (cf__outcome){.value = copy, .len = len};
    return 0;
}

static int on_result(process_pool *pool, worker *w, const cf__frame *f, const unsigned char *p)
{
    if (!w->jobs.head || w->jobs.head->id != f->id)
        return CF_EINVAL;
    job *j = jobs_pop(&w->jobs);
    w->inflight--;
    w->done++;
    pool->tasks_completed++;
    CF__PROBE2(task__finish, j->f, (int)f->code);
    atomic_fetch_sub_explicit(&pool->in_flight, 1, memory_order_relaxed);
    int rc = 0;
    if (f->code == 0) {
        rc = read_payload(w, f, p, j);
        if (rc == CF_ENOMEM)
            j->out = (cf__outcome){.rc = CF_ENOMEM};
        else if (rc)
            j->out = (cf__outcome){.rc = CF_EBROKEN};
    } else {
        char *msg = cf__malloc((size_t)f->len + 1);
        if (msg) {
            memcpy(msg, p ? (const char *)p : "", (size_t)f->len);
            msg[f->len] = '\0';
        }
        j->out = (cf__outcome){.rc = f->code, .message = msg};
    }
    jobs_append(&pool->finished, j, j);
    return rc == CF_ENOMEM ? 0 : rc;
}

static void on_init_failed(process_pool *pool, worker *w, const cf__frame *f,
                           const unsigned char *p)
{
    char why[1024];
    snprintf(why, sizeof(why),
             "the initializer failed in worker process %d with code %d (%s)%s%.*s", (int)f->id,
             (int)f->code, cf_err_name(f->code), f->len ? ": " : "",
             (int)(f->len > 512 ? 512 : f->len), p ? (const char *)p : "");
    w->told_exit = true; /* it exits by itself */
    pool_break(pool, why);
}

static int on_frame(process_pool *pool, worker *w, const cf__frame *f, const unsigned char *p)
{
    switch (f->type) {
    case CF__FR_READY:
        w->ready = true;
        if (w->pid <= 0)
            w->pid = (pid_t)f->id;
        on_started(pool, w);
        return 0;
    case CF__FR_INIT_FAILED:
        on_init_failed(pool, w, f, p);
        return 0;
    case CF__FR_RESULT:
        return on_result(pool, w, f, p);
    default:
        return CF_EINVAL;
    }
}

/* The worker's socket reached end-of-stream. */
static void on_eof(process_pool *pool, worker *w)
{
    epoll_ctl(pool->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    close_fd(&w->fd);
    bool retired = pool->max_tasks && w->done == pool->max_tasks;
    if (pool->broken || (!w->inflight && (w->told_exit || retired)))
        return; /* an expected exit: nothing was lost */
    if (w->exited || pool->server_gone || pool->forcing) {
        worker_died(pool, w);
        return;
    }
    /* Its exit status comes from the server; make sure it is really dying meanwhile. */
    w->awaiting = true;
    w->deadline = cf__now_ns() + STATUS_WAIT_NS;
    kill_worker(pool, w, SIGKILL);
}

/* Takes what the worker published in its response ring and handles the frames (mu held).
 * Returns whether it took anything. */
static bool read_ring(process_pool *pool, worker *w)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    bool got = false;
    while (w->fd >= 0) {
        int rc = cf__inbuf_fill_ring(&w->in, &w->resp);
        if (rc == 0)
            break;
        got = true;
        cf__frame f;
        const unsigned char *p;
        while (rc > 0 && (rc = cf__inbuf_next(&w->in, &f, &p)) == 1)
            if (on_frame(pool, w, &f, p) != 0)
                rc = CF_EINVAL;
        if (rc < 0)
            protocol_error(pool, w);
    }
    if (got && w->map.ctl)
        wake_worker(w, CF__RING_WAIT_ROOM, &w->map.ctl->resp_tail);
    return got;
}

/* Reads the worker's socket (descriptors and doorbells) and its ring; handles end-of-stream,
 * after which the ring holds everything it will ever send. */
static void read_worker(process_pool *pool, worker *w)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    bool eof = false;
    while (w->fd >= 0 && !eof) {
        int rc = cf__inbuf_drain_socket(&w->in, w->fd, false);
        if (rc == CF_EAGAIN)
            break;
        if (rc < 0) {
            protocol_error(pool, w);
            return;
        }
        eof = rc == 0;
    }
    read_ring(pool, w);
    if (!eof || w->fd < 0)
        return;
    if (w->in.head != w->in.tail && !pool->broken)
        protocol_error(pool, w); /* a truncated frame */
    else
        on_eof(pool, w);
}

static worker *find_worker(process_pool *pool, uint32_t token)
{
    for (worker *w = pool->workers; w; w = w->next)
        if (w->token == token)
            return w;
    return NULL;
}

static void on_exited(process_pool *pool, worker *w, int status, int spawn_errno)
{
    w->exited = true;
    w->status = status;
    w->spawn_errno = spawn_errno;
    /* Harvest what it sent before dying, then decide. */
    read_worker(pool, w);
    if (w->fd >= 0)
        on_eof(pool, w); /* a process it started still holds the socket: it is dead anyway */
    if (w->awaiting) {
        w->awaiting = false;
        worker_died(pool, w);
    }
}

/* The server could not fork the worker (RLIMIT_NPROC, pids.max, memory). It never ran and was
 * sent no task: drop it, carry on with the workers there are, and try again later. */
static void on_spawn_failed(process_pool *pool, worker *w, int err)
{
    w->exited = true;
    w->awaiting = false; /* its socket may have reached end-of-stream first */
    w->spawn_errno = err;
    if (w->fd >= 0) {
        epoll_ctl(pool->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        close_fd(&w->fd);
    }
    pool->spawn_errno = err;
    pool->spawns_failed++;
    int64_t now = cf__now_ns();
    if (pool->spawn_retry_at > now)
        return; /* another fork of the same round failed: one failure per round */
    unsigned shift = pool->spawn_failures < 7 ? pool->spawn_failures : 7;
    int64_t backoff = SPAWN_BACKOFF_MIN_NS << shift;
    pool->spawn_failures++;
    pool->spawn_retry_at = now + (backoff < SPAWN_BACKOFF_MAX_NS ? backoff : SPAWN_BACKOFF_MAX_NS);
}

static void on_server_exit(process_pool *pool);

static void read_control(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    for (;;) {
        cf__ctl m;
        int rc = cf__ctl_recv(pool->ctl, &m, NULL);
        if (rc == CF_EAGAIN)
            return;
        if (rc <= 0) {
            /* Only the server holds the other end (workers close it), so this is its exit. */
            on_server_exit(pool);
            return;
        }
        worker *w = find_worker(pool, m.token);
        if (!w)
            continue;
        if (m.type == CF__CTL_SPAWNED) {
            if (w->pid <= 0)
                w->pid = m.pid;
            on_started(pool, w);
            if (pool->broken || pool->forcing)
                kill_worker(pool, w, force_signal(pool->forcing));
        } else if (m.type == CF__CTL_EXITED) {
            if (w->pid <= 0)
                w->pid = m.pid;
            CF__PROBE3(process__exit, pool->handle, (int)w->pid, (int)m.value);
            on_exited(pool, w, m.value, 0);
        } else if (m.type == CF__CTL_FAILED) {
            on_spawn_failed(pool, w, m.value ? m.value : EAGAIN);
        }
    }
}

static void on_server_exit(process_pool *pool)
{
    epoll_ctl(pool->epfd, EPOLL_CTL_DEL, pool->ctl, NULL);
    close_fd(&pool->ctl);
    /* Our child, not reaped yet, so the pid is still its own. */
    cf__kill_and_reap(pool->server_pid);
    pool->server_gone = true;
    if (!pool->server_exit_sent) {
        char why[128];
        snprintf(why, sizeof(why), "the fork server (pid %d) exited unexpectedly",
                 (int)pool->server_pid);
        pool_break(pool, why);
    }
    /* Its workers die with it (PR_SET_PDEATHSIG); nobody will report their status. */
    for (worker *w = pool->workers; w; w = w->next)
        w->exited = true;
}

/* ---- the manager's progress step (mu held) ---- */

static void remove_gone_workers(process_pool *pool)
{
    worker **pp = &pool->workers;
    while (*pp) {
        worker *w = *pp;
        if (w->fd < 0 && w->exited && !w->awaiting) {
            *pp = w->next;
            atomic_fetch_sub_explicit(&pool->in_flight, w->inflight, memory_order_relaxed);
            if (w->jobs.head) {
                char why[512];
                describe_end(why, sizeof(why), pool, w);
                fail_list(pool, jobs_take(&w->jobs), why);
            }
            worker_free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* Whether `w` was told to exit, one way or another, and has nothing left to answer. */
static bool should_be_exiting(const process_pool *pool, const worker *w)
{
    bool retired = pool->max_tasks && w->done >= pool->max_tasks;
    return w->fd >= 0 && !w->inflight && (w->told_exit || retired);
}

/* Gives every worker that should be exiting a deadline, after which it is killed (mu held). */
static void arm_exit_deadlines(process_pool *pool)
{
    int64_t now = cf__now_ns();
    for (worker *w = pool->workers; w; w = w->next)
        if (!w->exit_deadline && (should_be_exiting(pool, w) || pool->forcing == FORCE_TERMINATE))
            w->exit_deadline = cf__ns_after(now, pool->exit_timeout_ns);
}

static void check_deadlines(process_pool *pool)
{
    int64_t now = cf__now_ns();
    for (worker *w = pool->workers; w; w = w->next) {
        if (w->awaiting && now >= w->deadline) {
            w->awaiting = false;
            w->exited = true; /* we stop waiting for a report */
            worker_died(pool, w);
        }
        if (w->exit_deadline && now >= w->exit_deadline && !w->exit_killed && w->fd >= 0) {
            w->exit_killed = true; /* stopped, or ignoring SIGTERM: it cannot hold us */
            kill_worker(pool, w, SIGKILL);
        }
    }
}

/* Returns true when the manager has nothing left to do. */
static bool progress(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    check_deadlines(pool);
    if (provide_workers(pool) != 0)
        pool_break(pool, "no worker process could be started");
    dispatch(pool);
    bool stopping = pool->shutdown || pool->broken;
    if (stopping && !pool->queue.head) {
        for (worker *w = pool->workers; w; w = w->next) {
            if (w->told_exit || w->fd < 0 || (pool->max_tasks && w->sent >= pool->max_tasks))
                continue; /* retiring workers exit by themselves */
            cf__frame f = {.type = CF__FR_EXIT};
            if (worker_write(pool, w, &f, NULL, -1) == 0)
                w->told_exit = true;
            else
                kill_worker(pool, w, SIGKILL);
            flush_worker(pool, w);
        }
    }
    remove_gone_workers(pool);
    if (!pool->workers && pool->queued && pool->spawn_failures >= SPAWN_ATTEMPTS) {
        char why[256];
        snprintf(why, sizeof(why), "a worker process could not be started (%u attempts): %s",
                 pool->spawn_failures, strerror(pool->spawn_errno));
        pool_break(pool, why);
    }
    arm_exit_deadlines(pool);
    if (stopping && !pool->queue.head && !pool->workers && !pool->server_gone &&
        !pool->server_exit_sent) {
        cf__ctl m = {.type = CF__CTL_EXIT};
        pool->server_exit_sent = true;
        if (pool->ctl < 0 || cf__ctl_send(pool->ctl, &m, -1) != 0)
            on_server_exit(pool);
    }
    return stopping && !pool->queue.head && !pool->workers && pool->server_gone &&
           !pool->delivering;
}

static int next_timeout(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    int64_t first = INT64_MAX;
    for (worker *w = pool->workers; w; w = w->next) {
        if (w->awaiting && w->deadline < first)
            first = w->deadline;
        if (w->exit_deadline && !w->exit_killed && w->fd >= 0 && w->exit_deadline < first)
            first = w->exit_deadline;
    }
    if (pool->spawn_retry_at && pool->spawn_retry_at < first)
        first = pool->spawn_retry_at;
    if (first == INT64_MAX)
        return -1;
    int64_t left = first - cf__now_ns();
    return cf__timeout_ms(left > 0 ? left : 0);
}

static void handle_event(process_pool *pool, const struct epoll_event *ev)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    uint64_t tag = ev->data.u64;
    switch (tag & ((1u << TAG_BITS) - 1)) {
    case TAG_WAKE: {
        uint64_t v;
        ssize_t n = read(pool->wakefd, &v, sizeof(v));
        (void)n;
        return;
    }
    case TAG_CTL:
        if (pool->ctl >= 0)
            read_control(pool);
        return;
    default: {
        worker *w = find_worker(pool, (uint32_t)(tag >> TAG_BITS));
        if (!w || w->fd < 0)
            return;
        if (ev->events & EPOLLOUT)
            flush_worker(pool, w);
        if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            read_worker(pool, w);
    }
    }
}

/* Reads every worker's ring and moves staged frames into rings that have room (mu held).
 * Returns whether anything moved. */
static bool poll_rings(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    bool moved = false;
    for (worker *w = pool->workers; w; w = w->next) {
        if (w->fd < 0)
            continue;
        moved |= read_ring(pool, w);
        if (w->fd >= 0 && !cf__outbuf_empty(&w->out)) {
            size_t left = w->out.tail - w->out.head;
            flush_worker(pool, w);
            moved |= w->out.tail - w->out.head != left;
        }
    }
    return moved;
}

/* Notes what to watch while spinning without the lock (mu held). Returns how many rings. */
static size_t watch_rings(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    size_t n = 0;
    for (worker *w = pool->workers; w; w = w->next)
        n += w->fd >= 0;
    if (n == 0 || cf__grow(&pool->watch, &pool->watch_cap, n, sizeof(ring_watch)) != 0)
        return 0;
    n = 0;
    for (worker *w = pool->workers; w; w = w->next)
        if (w->fd >= 0)
            pool->watch[n++] = (ring_watch){.ctl = w->map.ctl,
                                            .resp_own = w->resp.own,
                                            .req_peer = w->req.peer,
                                            .staged = !cf__outbuf_empty(&w->out)};
    return n;
}

/* After traffic, the manager watches the `n` rings noted for the adaptive window before it
 * sleeps: a result within it costs no system call on either side. Returns whether something
 * changed. Runs without the lock: the rings stay mapped (only the manager frees workers). */
static bool spin_on_rings(process_pool *pool, size_t n)
{
    int64_t window = pool->spin.ns;
    if (window == 0 || n == 0)
        return false;
    int64_t start = cf__now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&pool->poke, memory_order_relaxed))
            return true;
        for (size_t k = 0; k < n; k++) {
            const ring_watch *rw = &pool->watch[k];
            if (atomic_load_explicit(&rw->ctl->resp_head, memory_order_relaxed) != rw->resp_own)
                return true;
            if (rw->staged &&
                atomic_load_explicit(&rw->ctl->req_tail, memory_order_relaxed) != rw->req_peer)
                return true;
        }
        cf__spin_step(i);
        if ((i & 63) == 0 && cf__now_ns() - start > window)
            break;
    }
    cf__spin_window_missed(&pool->spin);
    return false;
}

/* Arms (a new epoch) or disarms every worker's doorbell (mu held). */
static void set_doorbells(process_pool *pool, bool arm)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    if (arm) {
        pool->sleep_epoch += 2;
        if (pool->sleep_epoch == 0)
            pool->sleep_epoch = 2;
    }
    pool->manager_asleep = arm;
    for (worker *w = pool->workers; w; w = w->next) {
        if (w->fd < 0)
            continue;
        uint32_t v = 0;
        if (arm)
            v = pool->sleep_epoch | (cf__outbuf_empty(&w->out) ? 0 : CF__DOORBELL_ROOM);
        atomic_store_explicit(&w->map.ctl->doorbell, v, memory_order_seq_cst);
    }
}

/* Sleeps in epoll until a doorbell, a socket, the server, a wake-up or a deadline (mu held,
 * released meanwhile), then handles what woke it. The doorbells are armed first and the rings
 * read again after that: a worker that published before it could see the arm is found now. */
static void manager_sleep(process_pool *pool)
{
    CF__ASSERT_MUTEX_OWNED(&pool->mu);
    set_doorbells(pool, true);
    if (atomic_load_explicit(&pool->poke, memory_order_relaxed) || poll_rings(pool)) {
        set_doorbells(pool, false);
        return;
    }
    int timeout = next_timeout(pool);
    pthread_mutex_unlock(&pool->mu);
    struct epoll_event evs[MANAGER_EVENTS];
    int64_t slept_at = cf__now_ns();
    int n = epoll_wait(pool->epfd, evs, MANAGER_EVENTS, timeout);
    int64_t gap = cf__now_ns() - slept_at;
    pthread_mutex_lock(&pool->mu);
    set_doorbells(pool, false);
    bool worker_event = false;
    for (int i = 0; i < n; i++) {
        worker_event |= (evs[i].data.u64 & ((1u << TAG_BITS) - 1)) == TAG_WORKER;
        handle_event(pool, &evs[i]);
    }
    if (worker_event)
        cf__spin_window_gap(&pool->spin, gap);
}

static void pool_release(process_pool *pool);

static void *manager_main(void *arg)
{
    process_pool *pool = arg;
    current_manager = pool;
    char name[16];
    snprintf(name, sizeof(name), "cfproc%u_mgr", pool->index);
    pthread_setname_np(pthread_self(), name);
    bool done = false;
    while (!done) {
        pthread_mutex_lock(&pool->mu);
        atomic_store_explicit(&pool->poke, false, memory_order_relaxed);
        bool moved = poll_rings(pool);
        done = progress(pool);
        size_t watched = done || moved ? 0 : watch_rings(pool);
        unlock_and_deliver(pool);
        if (done || moved || spin_on_rings(pool, watched))
            continue;
        pthread_mutex_lock(&pool->mu);
        manager_sleep(pool);
        done = progress(pool);
        unlock_and_deliver(pool);
    }
    pthread_mutex_lock(&pool->mu);
    pool->manager_done = true;
    bool free_now = pool->free_on_exit;
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    current_manager = NULL;
    if (free_now) {
        /* cf_executor_free() was called from one of our callbacks: nobody joins us. */
        pthread_detach(pthread_self());
        pool_release(pool);
    }
    return NULL;
}

/* The waiting thread's help (see "waiting threads help"): reads the rings of the pool it last
 * submitted to, refills windows and completes what needs no user code. */
static void pp_help(void)
{
    pp_hub *h = help_hub;
    if (!h)
        return;
    atomic_fetch_add_explicit(&h->users, 1, memory_order_seq_cst);
    process_pool *pool = NULL;
    if (atomic_load_explicit(&h->gen, memory_order_seq_cst) == help_gen)
        pool = atomic_load_explicit(&h->pool, memory_order_relaxed);
    else
        help_hub = NULL; /* freed: forget it */
    if (pool && atomic_load_explicit(&pool->in_flight, memory_order_relaxed) &&
        !pool->forked_fds_closed && pthread_mutex_trylock(&pool->mu) == 0) {
        if (poll_rings(pool))
            dispatch(pool);
        unlock_and_deliver_as(pool, false);
    }
    atomic_fetch_sub_explicit(&h->users, 1, memory_order_release);
}

/* ---- executor interface ---- */

/* Builds the jobs of a submission; large arguments move into sealed memfds here, outside the
 * lock, so a big copy does not stall the pool. */
static int make_jobs(job **out, cf_future *const *fs, size_t n)
{
    job *list = NULL, **tail = &list;
    for (size_t i = 0; i < n; i++) {
        job *j = cf__calloc(1, sizeof(*j));
        if (!j) {
            jobs_discard(list);
            return CF_ENOMEM;
        }
        j->fd = -1;
        j->f = fs[i];
        const void *data;
        cf_task_bytes_arg(&data, &j->len, fs[i]);
        *tail = j;
        tail = &j->next;
        /* A range of a frozen block goes by reference (encode_job); other large arguments are
         * copied into a memfd here. */
        if (j->len > CF__FRAME_INLINE_MAX && !cf__task_arg_bytes(fs[i])->block) {
            int rc = cf__memfd_from(&j->fd, data, j->len);
            if (rc) {
                jobs_discard(list);
                return rc;
            }
            /* The memfd is the copy now. (If the submit fails, the future is discarded.) */
            cf_task_release_arg(fs[i]);
        }
    }
    *out = list;
    return 0;
}

static int pp_submit(void *impl, cf_future *const *fs, size_t n)
{
    process_pool *pool = impl;
    job *jobs;
    int rc = make_jobs(&jobs, fs, n);
    if (rc)
        return rc;
    pthread_mutex_lock(&pool->mu);
    if (pool->shutdown)
        rc = CF_ESHUTDOWN;
    else if (pool->broken)
        rc = CF_EBROKEN;
    for (job *j = jobs; j && rc == 0; j = j->next)
        rc = name_task(pool, (const void *)cf_task_bytes_fn(j->f), &j->module, &j->offset);
    if (rc) {
        pthread_mutex_unlock(&pool->mu);
        jobs_discard(jobs);
        return rc;
    }
    job *last = jobs;
    for (job *j = jobs; j; j = j->next) {
        j->id = pool->next_id++;
        last = j;
    }
    jobs_append(&pool->queue, jobs, last);
    pool->queued += n;
    rc = provide_workers(pool);
    if (rc) {
        /* No worker exists and none could start: only this batch is queued; take it back. */
        jobs = take_queue(pool);
        pthread_mutex_unlock(&pool->mu);
        jobs_discard(jobs);
        return rc;
    }
    dispatch(pool);
    help_hub = pool->hub; /* this thread will likely wait for what it submitted */
    help_gen = pool->hub_gen;
    unlock_and_deliver(pool);
    return 0;
}

static void wait_manager(process_pool *pool)
{
    if (current_manager == pool)
        return; /* a callback on our own manager thread: it cannot wait for itself */
    pthread_mutex_lock(&pool->mu);
    while (!pool->manager_done)
        pthread_cond_wait(&pool->cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

static int pp_shutdown(void *impl, bool wait, bool cancel_futures)
{
    process_pool *pool = impl;
    pthread_mutex_lock(&pool->mu);
    pool->shutdown = true;
    job *cancelled = cancel_futures ? take_queue(pool) : NULL;
    wake_manager(pool);
    pthread_mutex_unlock(&pool->mu);
    jobs_drop(cancelled, true);
    if (wait)
        wait_manager(pool);
    return 0;
}

static const cf_executor_ops process_pool_ops;

static int force(cf_executor *ex, force_how how)
{
    process_pool *pool = cf_executor_impl(ex, &process_pool_ops);
    if (!pool)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    pthread_mutex_lock(&pool->mu);
    pool->shutdown = true;
    job *cancelled = take_queue(pool);
    if (!pool->broken && !pool->forcing) {
        pool->forcing = how;
        for (worker *w = pool->workers; w; w = w->next)
            if (w->pid > 0)
                kill_worker(pool, w, force_signal(how));
    }
    wake_manager(pool);
    pthread_mutex_unlock(&pool->mu);
    jobs_drop(cancelled, true);
    return 0;
}

int cf_process_pool_terminate(cf_executor *ex)
{
    return force(ex, FORCE_TERMINATE);
}

int cf_process_pool_kill(cf_executor *ex)
{
    return force(ex, FORCE_KILL);
}

/* Frees the memory of a pool whose manager has finished (or, after fork, never ran here). */
static void pool_release(process_pool *pool)
{
    pools_remove(pool);
    while (pool->workers) {
        worker *w = pool->workers;
        pool->workers = w->next;
        jobs_discard(jobs_take(&w->jobs));
        worker_free(w);
    }
    jobs_drop(take_queue(pool), false);
    close_fd(&pool->epfd);
    close_fd(&pool->wakefd);
    close_fd(&pool->ctl);
    cf_fn_table_free(pool->names);
    cf__bytes_free(pool->init_arg);
    cf__free(pool->watch);
    cf__free((char *)pool->start.worker_program);
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    cf__free(pool);
}

/* In a forked child: the manager does not exist here and our descriptors were closed at fork:
 * memory only. Unref the queued futures without completing them, as the thread pool does. */
static void pp_forget(void *impl)
{
    process_pool *pool = impl;
    for (worker *w = pool->workers; w; w = w->next) {
        jobs_drop(jobs_take(&w->jobs), false);
        w->inflight = 0;
    }
    pool_release(pool);
}

static int pp_destroy(void *impl)
{
    process_pool *pool = impl;
    pp_shutdown(pool, true, false);
    if (current_manager == pool) {
        pthread_mutex_lock(&pool->mu);
        pool->free_on_exit = true;
        pthread_mutex_unlock(&pool->mu);
        return 0;
    }
    pthread_join(pool->manager, NULL);
    pool_release(pool);
    return 0;
}

static size_t pp_default_chunksize(void *impl, size_t n)
{
    return cf__chunksize_for(n, ((process_pool *)impl)->max_workers);
}

static const cf_executor_ops process_pool_ops = {
    .name = "process_pool",
    .flags = CF_EXECUTOR_BYTES_ONLY,
    .submit = pp_submit,
    .shutdown = pp_shutdown,
    .destroy = pp_destroy,
    .forget = pp_forget,
    .default_chunksize = pp_default_chunksize,
};

/* ---- construction ---- */

CF__ABI_STRUCT(cf_process_pool_options, 168);

static int check_options(const cf_process_pool_options *o)
{
    if (!CF__RESERVED_ZERO(o))
        return CF_EINVAL;
    if (isnan(o->exit_timeout) || o->exit_timeout < 0)
        return CF_EINVAL;
    if ((unsigned)o->start_method > CF_PROCESS_START_FORK)
        return CF_EINVAL;
    if (o->max_workers > CF_MAX_WORKERS)
        return CF_EINVAL;
    if (!o->initializer_arg && o->initializer_arg_len)
        return CF_EINVAL;
    return 0;
}

static int apply_options(process_pool *pool, const cf_process_pool_options *o)
{
    static _Atomic unsigned pool_counter;
    pool->index = atomic_fetch_add(&pool_counter, 1);
    pool->max_workers = o->max_workers ? o->max_workers : cf__cpu_count();
    pool->initializer = (const void *)o->initializer;
    pool->max_tasks = o->max_tasks_per_child;
    pool->exit_timeout_ns = o->exit_timeout ? cf__seconds_to_ns(o->exit_timeout) : EXIT_TIMEOUT_NS;
    pool->start = (cf__start){.method = o->start_method, .fork_with_threads = o->fork_with_threads};
    if (o->worker_program && !(pool->start.worker_program = cf__strdup(o->worker_program)))
        return CF_ENOMEM;
    if (!o->initializer)
        return 0;
    /* Under mu like every naming: the fork handlers can see the pool already. */
    pthread_mutex_lock(&pool->mu);
    int rc = cf_fn_table_name(pool->names, (const void *)o->initializer, &pool->init_module,
                              &pool->init_offset);
    pthread_mutex_unlock(&pool->mu);
    if (rc)
        return rc;
    pool->has_init = true;
    pool->init_arg = cf__bytes_new(o->initializer_arg, o->initializer_arg_len);
    return pool->init_arg ? 0 : CF_ENOMEM;
}

/* The descriptors and the manager thread. */
static int start(process_pool *pool)
{
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    pool->epfd = cf__fd_above_stdio(epoll_create1(EPOLL_CLOEXEC));
    if (pool->epfd < 0)
        return cf__errno_code(errno);
    if (cf__fault(CF__FAULT_FD))
        return CF_EMFILE;
    pool->wakefd = cf__fd_above_stdio(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (pool->wakefd < 0)
        return cf__errno_code(errno);
    int rc = cf__forkserver_start(&pool->start, &pool->server_pid, &pool->ctl);
    if (rc)
        return rc;
    /* The initializer was translated before the method was known (AUTO may choose the helper). */
    if (pool->has_init && pool->start.method == CF_PROCESS_START_HELPER &&
        in_main_program(pool, pool->init_module))
        return CF_EINVAL;
    epoll_watch(pool, EPOLL_CTL_ADD, pool->wakefd, TAG_WAKE, EPOLLIN);
    epoll_watch(pool, EPOLL_CTL_ADD, pool->ctl, TAG_CTL, EPOLLIN);
    /* The manager blocks no signal it did not inherit, like the caller's other threads. */
    return cf__thread_create(&pool->manager, NULL, manager_main, pool);
}

/* Undoes a failed start(): the server (if any) exits on its own when its socket closes. */
static void abandon(process_pool *pool)
{
    if (pool->ctl >= 0) {
        close_fd(&pool->ctl);
        cf__reap(pool->server_pid);
    }
    pool_release(pool);
}

int cf_process_pool_new(cf_executor **out, const cf_process_pool_options *options)
{
    static const cf_process_pool_options defaults = {0};
    if (!out)
        return CF_EINVAL;
    *out = NULL;
    const cf_process_pool_options *o = options ? options : &defaults;
    int rc = check_options(o);
    if (rc)
        return rc;
    cf__fork_hooks_install(CF__FORK_LEVEL_EXECUTORS, &pool_fork_hooks);
    cf__wait_help_install(pp_help);
    process_pool *pool = cf__calloc(1, sizeof(*pool));
    if (!pool)
        return CF_ENOMEM;
    pool->epfd = pool->wakefd = pool->ctl = -1;
    if (pthread_mutex_init(&pool->mu, NULL) != 0) {
        cf__free(pool);
        return CF_ENOMEM;
    }
    pthread_cond_init(&pool->cv, NULL);
    pool->spin = (cf__spin_window){.ns = SPIN_MAX_NS / 4, .max_ns = SPIN_MAX_NS};
    rc = pools_add(pool);
    if (rc == 0)
        rc = cf_executor_new(out, &process_pool_ops, pool);
    if (rc == 0) {
        pool->handle = *out;
        rc = cf_fn_table_new(&pool->names);
    }
    if (rc == 0)
        rc = apply_options(pool, o);
    if (rc == 0)
        rc = start(pool);
    if (rc) {
        cf__free(*out); /* the bare handle: destroy would need a started pool */
        *out = NULL;
        abandon(pool);
        return rc;
    }
    return 0;
}

/* ---- monitoring ---- */

CF__ABI_STRUCT(cf_process_pool_stats, 200);

int cf_process_pool_get_stats(cf_process_pool_stats *out, const cf_executor *ex)
{
    process_pool *pool = cf_executor_impl(ex, &process_pool_ops);
    if (!out || !pool)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    pthread_mutex_lock(&pool->mu);
    unsigned alive = 0, busy = 0;
    size_t running = 0;
    for (worker *w = pool->workers; w; w = w->next) {
        if (!w->started || w->fd < 0)
            continue; /* not forked yet, or gone */
        alive++;
        busy += w->inflight > 0;
        running += w->inflight;
    }
    *out = (cf_process_pool_stats){
        .workers = alive,
        .busy = busy,
        .queued = pool->queued,
        .running = running,
        .workers_started = pool->workers_started,
        .workers_retired = pool->workers_retired,
        .workers_replaced = pool->workers_replaced,
        .spawns_failed = pool->spawns_failed,
        .tasks_completed = pool->tasks_completed,
        .broken = pool->broken,
    };
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

int cf_process_pool_get_options(cf_process_pool_options *out, const cf_executor *ex)
{
    const process_pool *pool = cf_executor_impl(ex, &process_pool_ops);
    if (!out || !pool)
        return CF_EINVAL;
    if (cf__executor_forked(ex))
        return CF_EFORKED;
    /* Set at creation and never changed: no lock needed. */
    *out = (cf_process_pool_options){
        .max_workers = pool->max_workers,
        .initializer = (int (*)(const void *, size_t))pool->initializer,
        .initializer_arg = pool->has_init && pool->init_arg->len ? pool->init_arg->data : NULL,
        .initializer_arg_len = pool->has_init ? pool->init_arg->len : 0,
        .max_tasks_per_child = (unsigned)pool->max_tasks,
        .exit_timeout = (double)pool->exit_timeout_ns / (double)CF__NS_PER_S,
        .start_method = pool->start.method,
        .worker_program = pool->start.worker_program,
        .fork_with_threads = pool->start.fork_with_threads,
    };
    return 0;
}
