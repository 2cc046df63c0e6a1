/* Randomised stress test of the whole executor surface, with exact accounting.
 *
 *     stress [--seconds N] [--seed S] [--threads T] [--no-process] [--no-kill] [--watchdog W]
 *
 * T threads (4) run for N seconds (5), each choosing operations at random from its own seeded
 * generator: submitting pointer and bytes tasks (some failing, some slow: thread tasks wait for
 * ticks of a ticker thread, process tasks sleep) to shared pool slots, cancelling, waiting in
 * all three cf_wait modes with and without timeouts, iterating as_completed and map (to the end
 * or not), reading results, adding done-callbacks (some of which add more), passing futures to
 * other threads, and retiring pools (shutdown with wait, without, or cancelling the queue) in
 * favour of new ones of a random configuration; and posting jobs to two event loops, where
 * tasks and callback-style combinators await pool work (see "event loops" below). A killer thread
 * SIGKILLs random process-pool workers (and now and then a fork server) at random moments.
 *
 * Invariants, checked as futures retire and again at the end:
 *   - every future ends in exactly one final state, never changed once observed;
 *   - every done-callback that was accepted runs exactly once (each registration has a token
 *     that detects a second run; registered and run totals must be equal);
 *   - every accepted task is either run (its side effect counted: a per-task counter in this
 *     process, or in a shared-memory table for worker processes) or its future reports
 *     cancelled or broken, and the counts add up exactly: a finished task ran exactly once, a
 *     cancelled one never, a broken one at most once;
 *   - nothing hangs: a watchdog aborts with a dump of every thread's current operation if the
 *     run exceeds its bound.
 * It prints its seed and counts; the same seed replays the same choices in every thread (the
 * interleaving is the machine's). Exit status 0 means every invariant held. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include "cfutures.h"

/* ---- configuration and failure ---- */

static struct {
    double seconds;
    uint64_t seed;
    unsigned threads;
    bool process;
    bool kill;
    double watchdog;
    bool verbose;
} cfg = {5.0, 0, 4, true, true, 0, false};

static atomic_bool failed;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stress: INVARIANT VIOLATED: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (seed %" PRIu64 ")\n", cfg.seed);
    va_end(ap);
    atomic_store(&failed, true);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(__VA_ARGS__);                                                                     \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pause_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- random numbers: one generator per thread ---- */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t next_u64(rng *r)
{
    return splitmix(&r->s);
}

static unsigned below(rng *r, unsigned n)
{
    return (unsigned)(next_u64(r) % n);
}

static bool chance(rng *r, unsigned percent)
{
    return below(r, 100) < percent;
}

/* ---- counters ---- */

static struct {
    atomic_ulong ops, submitted, rejected, ok, task_failed, cancelled, broken;
    atomic_ulong cb_registered, cb_run, maps, map_items, waits, as_completed, retired_pools;
    atomic_ulong loop_posted, loop_ran, loop_ok, loop_failed, loop_cancelled, loop_timedout;
    atomic_ulong loop_rejected, loop_cb_registered, loop_cb_run;
    atomic_ulong pools_created, pools_freed, creation_failures, kills, server_kills, exchanges,
        thread_ran, process_ran_checked;
} count;

#define BUMP(field) atomic_fetch_add(&count.field, 1)

/* ---- the ticker: slow thread tasks wait for a few of its ticks ---- */

static pthread_mutex_t tick_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tick_cv = PTHREAD_COND_INITIALIZER;
static uint64_t ticks;
static atomic_bool ticker_stop;

static void *ticker_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&ticker_stop)) {
        pause_us(1000);
        pthread_mutex_lock(&tick_mu);
        ticks++;
        pthread_cond_broadcast(&tick_cv);
        pthread_mutex_unlock(&tick_mu);
    }
    return NULL;
}

static void wait_ticks(unsigned n)
{
    pthread_mutex_lock(&tick_mu);
    uint64_t target = ticks + n;
    while (ticks < target)
        pthread_cond_wait(&tick_cv, &tick_mu);
    pthread_mutex_unlock(&tick_mu);
}

/* ---- shared memory where worker processes count the tasks they run ---- */

enum { MAX_PROCESS_IDS = 1 << 24 };

static char shm_path[64];
static _Atomic uint8_t *shm_counts; /* runs per process task id (in the workers) */
static uint8_t *process_outcome;    /* what the parent saw, per id */
static atomic_uint_fast64_t next_process_id;

enum { PO_UNKNOWN = 0, PO_CANCELLED, PO_OK, PO_FAILED, PO_BROKEN };

static void shm_setup(void)
{
    snprintf(shm_path, sizeof(shm_path), "/dev/shm/cfutures-stress-%d", (int)getpid());
    int fd = open(shm_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, MAX_PROCESS_IDS) != 0) {
        perror("stress: shared memory");
        exit(2);
    }
    shm_counts = mmap(NULL, MAX_PROCESS_IDS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    process_outcome = mmap(NULL, MAX_PROCESS_IDS, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (shm_counts == MAP_FAILED || process_outcome == MAP_FAILED) {
        perror("stress: mmap");
        exit(2);
    }
}

/* ---- tasks ---- */

enum { K_OK, K_FAIL, K_SLOW };

#define TASK_MAGIC 0x5354524553534b31ull
#define NO_ID      UINT64_MAX

typedef struct record record;

/* The argument of a bytes task (copied into the worker). `rec` is only meaningful in this
 * process; a worker counts its run in the shared table instead. */
typedef struct targ {
    uint64_t magic;
    uint64_t id; /* process id for the shared table, or NO_ID */
    uint32_t kind;
    uint32_t slow;
    int32_t fail_code;
    int32_t parent_pid;
    uint32_t result_len;
    uint32_t pad;
    atomic_uint *ran; /* in this process */
    char path[64];
} targ;

static int fill_result(uint64_t tag, uint32_t len, void **result, size_t *result_len)
{
    unsigned char *out = malloc(len < sizeof(tag) ? sizeof(tag) : len);
    if (!out)
        return CF_ENOMEM;
    memset(out, (int)(tag & 0xff), len);
    memcpy(out, &tag, sizeof(tag));
    *result = out;
    *result_len = len < sizeof(tag) ? sizeof(tag) : len;
    return 0;
}

/* In a worker: the shared table, mapped on first use (workers run tasks one at a time). */
static _Atomic uint8_t *worker_counts(const char *path)
{
    static _Atomic uint8_t *map;
    static char mapped_path[64];
    if (map && strcmp(mapped_path, path) == 0)
        return map;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    void *p = mmap(NULL, MAX_PROCESS_IDS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    map = p;
    snprintf(mapped_path, sizeof(mapped_path), "%s", path);
    return map;
}

static int bytes_task(const void *arg, size_t len, void **result, size_t *result_len)
{
    targ t;
    if (len != sizeof(t))
        return cf_task_fail(CF_EINVAL, "stress: argument of %zu bytes", len);
    memcpy(&t, arg, sizeof(t));
    if (t.magic != TASK_MAGIC)
        return cf_task_fail(CF_EINVAL, "stress: bad argument");
    bool here = t.parent_pid == (int32_t)getpid();
    if (here) {
        atomic_fetch_add(t.ran, 1);
        if (t.kind == K_SLOW)
            wait_ticks(t.slow);
    } else {
        if (t.id != NO_ID) {
            _Atomic uint8_t *counts = worker_counts(t.path);
            if (!counts)
                return cf_task_fail(CF_EPERM, "stress: cannot map %s", t.path);
            atomic_fetch_add(&counts[t.id], 1);
        }
        if (t.kind == K_SLOW)
            pause_us(t.slow * 500);
    }
    if (t.kind == K_FAIL)
        return cf_task_fail(t.fail_code, "stress task failed on purpose");
    return fill_result(t.id, t.result_len, result, result_len);
}

/* ---- records: one per submitted future ---- */

typedef struct cb_token {
    struct cb_token *next;
    record *rec;
    atomic_int fired;
} cb_token;

struct record {
    record *next;
    cf_future *f;
    targ arg; /* bytes tasks: what was sent */
    bool bytes, process;
    uint32_t kind;
    int32_t fail_code;
    atomic_uint ran; /* runs of an in-process task */
    atomic_uint cb_registered, cb_run;
    atomic_uint pins;      /* held by the exchange */
    atomic_int seen_state; /* the final state first observed (0: none yet) */
    _Atomic(cb_token *) tokens;
};

static void observe_state(record *r, const char *where)
{
    cf_future_state s = cf_future_get_state(r->f);
    if (s != CF_FUTURE_FINISHED && s != CF_FUTURE_CANCELLED) {
        fail("%s: a done future reports state %d", where, (int)s);
        return;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&r->seen_state, &expected, (int)s + 1) &&
        expected != (int)s + 1)
        fail("%s: a future's final state changed from %d to %d", where, expected - 1, (int)s);
}

static void stress_callback(cf_future *f, void *data);

/* Registers a done-callback with its own token; returns whether it was accepted. */
static bool add_callback(record *r)
{
    cb_token *t = calloc(1, sizeof(*t));
    t->rec = r;
    t->next = atomic_load(&r->tokens);
    while (!atomic_compare_exchange_weak(&r->tokens, &t->next, t))
        ;
    atomic_fetch_add(&r->cb_registered, 1);
    BUMP(cb_registered);
    int rc = cf_future_add_done_callback(r->f, stress_callback, t);
    if (rc != 0) {
        fail("add_done_callback: %s", cf_err_name(rc));
        atomic_fetch_sub(&r->cb_registered, 1);
        atomic_fetch_sub(&count.cb_registered, 1);
        atomic_store(&t->fired, 1);
        return false;
    }
    return true;
}

static void stress_callback(cf_future *f, void *data)
{
    cb_token *t = data;
    record *r = t->rec;
    if (atomic_exchange(&t->fired, 1))
        fail("a done-callback ran twice");
    if (f != r->f)
        fail("a done-callback got another future");
    if (!cf_future_done(f))
        fail("a done-callback ran before its future was done");
    observe_state(r, "callback");
    /* A finished future answers at once, even with a zero timeout. */
    int rc = cf_future_exception(NULL, NULL, f, 0);
    if (rc != 0 && rc != CF_ECANCELLED)
        fail("cf_future_exception in a callback: %s", cf_err_name(rc));
    /* Sometimes another callback from inside this one: it runs at once, in this thread. */
    if (((uintptr_t)t >> 4) % 8 == 0 && atomic_load(&r->cb_registered) < 6)
        add_callback(r);
    BUMP(cb_run);
    atomic_fetch_add(&r->cb_run, 1); /* the last access to the record */
}

static void record_free(record *r)
{
    cb_token *t = atomic_load(&r->tokens);
    while (t) {
        cb_token *next = t->next;
        free(t);
        t = next;
    }
    cf_future_unref(r->f);
    free(r);
}

/* Checks a done record's outcome against what its task did, and counts it. */
static void account(record *r)
{
    observe_state(r, "retire");
    cf_future_state s = cf_future_get_state(r->f);
    unsigned ran = atomic_load(&r->ran);
    uint8_t po = PO_UNKNOWN;
    if (s == CF_FUTURE_CANCELLED) {
        BUMP(cancelled);
        po = PO_CANCELLED;
        CHECK(ran == 0, "a cancelled task ran %u times", ran);
    } else {
        int code = 0;
        const char *msg = NULL;
        int rc = cf_future_exception(&code, &msg, r->f, 0);
        CHECK(rc == 0, "cf_future_exception on a finished future: %s", cf_err_name(rc));
        if (code == 0) {
            BUMP(ok);
            po = PO_OK;
            CHECK(r->kind != K_FAIL, "a failing task succeeded");
            if (r->bytes) {
                const void *data = NULL;
                size_t len = 0;
                rc = cf_future_result_bytes(&data, &len, r->f, 0);
                uint64_t tag = 0;
                if (rc == 0 && len >= sizeof(tag))
                    memcpy(&tag, data, sizeof(tag));
                CHECK(rc == 0 && len >= sizeof(tag) && tag == r->arg.id &&
                          len == (r->arg.result_len < 8 ? 8 : r->arg.result_len),
                      "a bytes result is wrong (rc %d, len %zu)", rc, len);
            } else {
                void *v = NULL;
                rc = cf_future_result(&v, r->f, 0);
                CHECK(rc == 0 && v == r, "a pointer result is wrong");
            }
        } else if (code == CF_EBROKEN) {
            BUMP(broken);
            po = PO_BROKEN;
            CHECK(r->process, "a thread-pool future broke: %s", msg ? msg : "");
        } else {
            BUMP(task_failed);
            po = PO_FAILED;
            CHECK(r->kind == K_FAIL && code == r->fail_code, "a task failed with %s (%s), kind %u",
                  cf_err_name(code), msg ? msg : "", r->kind);
        }
        if (!r->process && code != CF_EBROKEN)
            CHECK(ran == 1, "a finished in-process task ran %u times", ran);
    }
    if (!r->process)
        atomic_fetch_add(&count.thread_ran, ran);
    if (r->process && r->arg.id != NO_ID)
        process_outcome[r->arg.id] = po;
}

/* ---- pools: slots of shared, reference-counted executors ---- */

typedef struct map_block map_block;

typedef struct holder {
    cf_executor *ex;
    bool process;
    atomic_uint refs; /* the slot's reference plus every user's */
    pthread_mutex_t mu;
    map_block *maps; /* map elements, checked and freed with the pool */
} holder;

typedef struct slot {
    pthread_mutex_t mu;
    holder *h;
    int kind; /* 0: thread pool, 1: process pool, 2: either */
} slot;

enum { NSLOTS = 4 };
static slot slots[NSLOTS];

/* A map's elements: their run counters must stay valid until the pool is gone, since elements
 * that were not yielded may still be running after cf_map_free(). */
struct map_block {
    map_block *next;
    size_t n;
    bool process;
    struct map_elem {
        atomic_uint ran;
        targ arg;
        int yielded; /* 0, or the outcome class PO_* seen through the map */
    } elems[];
};

static void check_map_block(map_block *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct map_elem *e = &b->elems[i];
        if (b->process) {
            if (e->arg.id != NO_ID)
                process_outcome[e->arg.id] = (uint8_t)e->yielded;
            continue;
        }
        unsigned ran = atomic_load(&e->ran);
        atomic_fetch_add(&count.thread_ran, ran);
        CHECK(ran <= 1, "a map task ran %u times", ran);
        if (e->yielded == PO_OK || e->yielded == PO_FAILED)
            CHECK(ran == 1, "a map task whose result was yielded ran %u times", ran);
        if (e->yielded == PO_CANCELLED)
            CHECK(ran == 0, "a cancelled map task ran");
    }
}

/* The killer may kill a fork server while its pool is being created: that creation fails with
 * CF_ESYSTEM (the server never said hello) and a new attempt must work. */
static cf_executor *new_process_executor(rng *r)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        cf_process_pool_options o = {.max_workers = 1 + below(r, 3),
                                     .max_tasks_per_child = chance(r, 30) ? 1 + below(r, 8) : 0};
        cf_executor *ex = NULL;
        int rc = cf_process_pool_new(&ex, &o);
        if (rc == 0)
            return ex;
        CHECK(rc == CF_ESYSTEM && cfg.kill, "cf_process_pool_new: %s", cf_err_name(rc));
        BUMP(creation_failures);
    }
    fail("no process pool could be created in 20 attempts");
    exit(1);
}

static cf_executor *new_thread_executor(rng *r)
{
    cf_thread_pool_options o = {.max_workers = 1 + below(r, 4)};
    switch (below(r, 5)) {
    case 1:
        o.max_queue = 1 + below(r, 8);
        o.queue_policy = CF_QUEUE_BLOCK;
        o.queue_timeout = 0.02;
        break;
    case 2:
        o.max_queue = 1 + below(r, 8);
        o.queue_policy = CF_QUEUE_CALLER_RUNS;
        break;
    case 3:
        o.max_queue = 1 + below(r, 8);
        o.queue_policy = CF_QUEUE_REJECT;
        break;
    case 4:
        o.idle_timeout = 0.002;
        o.min_workers = below(r, 2);
        break;
    default:
        break;
    }
    cf_executor *ex = NULL;
    int rc = cf_thread_pool_new(&ex, &o);
    if (rc != 0) {
        fail("cf_thread_pool_new: %s", cf_err_name(rc));
        exit(1);
    }
    return ex;
}

static holder *holder_new(rng *r, int kind)
{
    holder *h = calloc(1, sizeof(*h));
    h->process = cfg.process && (kind == 1 || (kind == 2 && chance(r, 50)));
    h->ex = h->process ? new_process_executor(r) : new_thread_executor(r);
    BUMP(pools_created);
    atomic_init(&h->refs, 1);
    pthread_mutex_init(&h->mu, NULL);
    return h;
}

static holder *acquire(slot *s)
{
    pthread_mutex_lock(&s->mu);
    holder *h = s->h;
    atomic_fetch_add(&h->refs, 1);
    pthread_mutex_unlock(&s->mu);
    return h;
}

/* The last reference frees the executor (which waits for its work), then checks its maps. */
static void release(holder *h)
{
    if (atomic_fetch_sub(&h->refs, 1) != 1)
        return;
    int rc = cf_executor_free(h->ex);
    CHECK(rc == 0, "cf_executor_free: %s", cf_err_name(rc));
    map_block *b = h->maps;
    while (b) {
        map_block *next = b->next;
        check_map_block(b);
        free(b);
        b = next;
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
    BUMP(pools_freed);
}

/* Replaces the slot's pool (if it is still `expected`, or unconditionally for NULL) and shuts
 * the old one down in one of the three ways. */
static void retire(rng *r, slot *s, holder *expected)
{
    holder *fresh = holder_new(r, s->kind);
    pthread_mutex_lock(&s->mu);
    holder *old = s->h;
    if (expected && old != expected) {
        pthread_mutex_unlock(&s->mu);
        release(fresh);
        return;
    }
    s->h = fresh;
    pthread_mutex_unlock(&s->mu);
    unsigned how = below(r, 3);
    int rc = cf_executor_shutdown(old->ex, how == 0, how == 2);
    CHECK(rc == 0, "cf_executor_shutdown: %s", cf_err_name(rc));
    BUMP(retired_pools);
    release(old);
}

/* ---- the exchange: futures passed to other threads ---- */

enum { MAILBOX = 16 };
static pthread_mutex_t mailbox_mu = PTHREAD_MUTEX_INITIALIZER;
static record *mailbox[MAILBOX];

static void publish(record *r)
{
    atomic_fetch_add(&r->pins, 1);
    pthread_mutex_lock(&mailbox_mu);
    for (int i = 0; i < MAILBOX; i++) {
        if (!mailbox[i]) {
            mailbox[i] = r;
            r = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&mailbox_mu);
    if (r)
        atomic_fetch_sub(&r->pins, 1); /* full */
}

static record *take(rng *rg)
{
    pthread_mutex_lock(&mailbox_mu);
    record *r = NULL;
    int start = (int)below(rg, MAILBOX);
    for (int k = 0; k < MAILBOX && !r; k++) {
        int i = (start + k) % MAILBOX;
        r = mailbox[i];
        mailbox[i] = NULL;
    }
    pthread_mutex_unlock(&mailbox_mu);
    return r;
}

/* ---- the stress threads ---- */

typedef struct worker_state {
    unsigned index;
    rng r;
    record *records; /* not yet retired, newest first */
    size_t nrecords;
    _Atomic(const char *) op;
    atomic_ullong op_since_ms;
    pthread_t thread;
} worker_state;

static worker_state *states;
static double run_end;

static void set_op(worker_state *w, const char *op)
{
    atomic_store(&w->op, op);
    atomic_store(&w->op_since_ms, (unsigned long long)(now_s() * 1000));
}

static double pick_timeout(rng *r)
{
    switch (below(r, 6)) {
    case 0:
        return 0;
    case 1:
        return 0.0005;
    case 2:
        return 0.005;
    case 3:
        return 0.05;
    case 4:
        return CF_FOREVER;
    default:
        return 2.0;
    }
}

static bool expected_submit_error(int rc)
{
    return rc == CF_ESHUTDOWN || rc == CF_EBROKEN || rc == CF_EFULL || rc == CF_ETIMEDOUT;
}

static void fill_targ(targ *t, rng *r, bool process, atomic_uint *ran, uint32_t kind)
{
    memset(t, 0, sizeof(*t));
    t->magic = TASK_MAGIC;
    t->kind = kind;
    t->slow = 1 + below(r, 4);
    t->fail_code = -5000 - (int32_t)below(r, 100);
    t->parent_pid = (int32_t)getpid();
    t->result_len = chance(r, 2) ? 70000 + below(r, 40000) : 8 + below(r, 64);
    t->ran = ran;
    t->id = NO_ID;
    if (process) {
        uint64_t id = atomic_fetch_add(&next_process_id, 1);
        if (id < MAX_PROCESS_IDS)
            t->id = id;
        snprintf(t->path, sizeof(t->path), "%s", shm_path);
    }
}

static uint32_t pick_kind(rng *r)
{
    unsigned x = below(r, 100);
    return x < 70 ? K_OK : x < 85 ? K_FAIL : K_SLOW;
}

static int map_pointer_task(void *arg, void **result);

static int pointer_task(void *arg, void **result)
{
    record *r = arg;
    atomic_fetch_add(&r->ran, 1);
    if (r->kind == K_SLOW)
        wait_ticks(r->arg.slow);
    if (r->kind == K_FAIL)
        return cf_task_fail(r->fail_code, "stress pointer task failed on purpose");
    *result = r;
    return 0;
}

static void op_submit(worker_state *w)
{
    rng *r = &w->r;
    slot *s = &slots[below(r, NSLOTS)];
    holder *h = acquire(s);
    unsigned n = 1 + below(r, 6);
    for (unsigned i = 0; i < n; i++) {
        record *rec = calloc(1, sizeof(*rec));
        rec->kind = pick_kind(r);
        rec->process = h->process;
        rec->bytes = h->process || chance(r, 50);
        fill_targ(&rec->arg, r, h->process, &rec->ran, rec->kind);
        rec->fail_code = rec->arg.fail_code;
        int rc = rec->bytes ? cf_executor_submit_bytes(&rec->f, h->ex, bytes_task, &rec->arg,
                                                       sizeof(rec->arg))
                            : cf_executor_submit(&rec->f, h->ex, pointer_task, rec);
        if (rc != 0) {
            CHECK(expected_submit_error(rc), "submit: %s", cf_err_name(rc));
            CHECK(rec->f == NULL, "a failed submit produced a future");
            BUMP(rejected);
            free(rec);
            if (rc == CF_EBROKEN)
                retire(r, s, h);
            break;
        }
        BUMP(submitted);
        rec->next = w->records;
        w->records = rec;
        w->nrecords++;
        for (unsigned k = below(r, 3); k > 0; k--)
            add_callback(rec);
        if (chance(r, 10) && cf_future_cancel(rec->f))
            CHECK(cf_future_cancelled(rec->f), "cancel returned true, state is not cancelled");
        if (chance(r, 5))
            publish(rec);
    }
    release(h);
}

/* Up to `max` of the thread's records, newest first. */
static size_t pick_records(worker_state *w, record **out, size_t max)
{
    size_t n = 0;
    for (record *rec = w->records; rec && n < max; rec = rec->next)
        if (chance(&w->r, 60))
            out[n++] = rec;
    return n;
}

static void op_wait(worker_state *w)
{
    record *recs[12];
    size_t n = pick_records(w, recs, 12);
    if (!n)
        return;
    cf_future *fs[12];
    for (size_t i = 0; i < n; i++)
        fs[i] = recs[i]->f;
    cf_return_when when = (cf_return_when)below(&w->r, 3);
    bool done[12];
    size_t n_done = 0;
    int rc = cf_wait(&n_done, done, fs, n, when, pick_timeout(&w->r));
    BUMP(waits);
    CHECK(rc == 0 || rc == CF_ETIMEDOUT, "cf_wait: %s", cf_err_name(rc));
    size_t counted = 0;
    bool any_failed = false;
    for (size_t i = 0; i < n; i++) {
        counted += done[i];
        if (done[i]) {
            CHECK(cf_future_done(fs[i]), "cf_wait reported a pending future as done");
            int code = 0;
            if (cf_future_exception(&code, NULL, fs[i], 0) == 0 && code)
                any_failed = true;
        }
    }
    CHECK(counted == n_done, "cf_wait: n_done %zu, %zu flags set", n_done, counted);
    if (rc == 0) {
        bool holds = when == CF_ALL_COMPLETED     ? counted == n
                     : when == CF_FIRST_COMPLETED ? counted > 0
                                                  : counted == n || any_failed;
        CHECK(holds, "cf_wait returned 0 but its condition (%d) does not hold", (int)when);
    }
}

static void op_as_completed(worker_state *w)
{
    record *recs[12];
    size_t n = pick_records(w, recs, 12);
    if (!n)
        return;
    cf_future *fs[12];
    for (size_t i = 0; i < n; i++)
        fs[i] = recs[i]->f;
    cf_as_completed *it;
    int rc = cf_as_completed_new(&it, fs, n, pick_timeout(&w->r));
    CHECK(rc == 0, "cf_as_completed_new: %s", cf_err_name(rc));
    if (rc)
        return;
    BUMP(as_completed);
    size_t yielded = 0, stop_after = chance(&w->r, 70) ? n : below(&w->r, (unsigned)n + 1);
    cf_future *f;
    while (yielded < stop_after && (rc = cf_as_completed_next(&f, it)) == 0) {
        CHECK(cf_future_done(f), "as_completed yielded a pending future");
        yielded++;
    }
    if (yielded < stop_after)
        CHECK(rc == CF_EOF || rc == CF_ETIMEDOUT, "as_completed_next: %s", cf_err_name(rc));
    CHECK(yielded + cf_as_completed_remaining(it) == n, "as_completed lost count");
    cf_as_completed_free(it);
}

static void op_map(worker_state *w)
{
    rng *r = &w->r;
    slot *s = &slots[below(r, NSLOTS)];
    holder *h = acquire(s);
    size_t n = 1 + below(r, 20);
    map_block *b = calloc(1, sizeof(*b) + n * sizeof(b->elems[0]));
    b->n = n;
    b->process = h->process;
    bool bytes = h->process || chance(r, 50);
    uint32_t kind = pick_kind(r);
    void *ptr_args[20];
    cf_bytes byte_args[20];
    for (size_t i = 0; i < n; i++) {
        fill_targ(&b->elems[i].arg, r, h->process, &b->elems[i].ran, kind);
        byte_args[i] = (cf_bytes){&b->elems[i].arg, sizeof(targ)};
        ptr_args[i] = &b->elems[i];
    }
    /* Published to the pool before the map call: a cancelled map may already have run some. */
    pthread_mutex_lock(&h->mu);
    b->next = h->maps;
    h->maps = b;
    pthread_mutex_unlock(&h->mu);
    double timeout = chance(r, 70) ? CF_FOREVER : pick_timeout(r);
    size_t chunk = below(r, 4);
    cf_map *m = NULL;
    int rc = bytes ? cf_executor_map_bytes(&m, h->ex, bytes_task, byte_args, n, timeout, chunk)
                   : cf_executor_map(&m, h->ex, map_pointer_task, ptr_args, n, timeout, chunk);
    if (rc) {
        CHECK(expected_submit_error(rc), "map: %s", cf_err_name(rc));
        if (rc == CF_EBROKEN)
            retire(r, s, h);
        release(h);
        return;
    }
    BUMP(maps);
    size_t stop_after = chance(r, 70) ? n : below(r, (unsigned)n + 1);
    for (size_t i = 0; i < stop_after; i++) {
        void *v = NULL;
        rc = cf_map_next(&v, m);
        if (rc == CF_ETIMEDOUT || rc == CF_EOF) {
            CHECK(rc == CF_ETIMEDOUT, "map ended early");
            break;
        }
        BUMP(map_items);
        struct map_elem *e = &b->elems[i];
        cf_future *f = cf_map_current(m);
        if (rc == CF_ECANCELLED) {
            e->yielded = PO_CANCELLED;
            continue;
        }
        int code = 0;
        cf_future_exception(&code, NULL, f, 0);
        if (rc == 0) {
            e->yielded = PO_OK;
            CHECK(kind != K_FAIL, "a failing map task succeeded");
            if (!bytes)
                CHECK(v == e, "a map pointer result is wrong");
        } else if (code == CF_EBROKEN) {
            e->yielded = PO_BROKEN;
            CHECK(h->process, "a thread-pool map task broke");
        } else {
            e->yielded = PO_FAILED;
            CHECK(rc == CF_ETASK && kind == K_FAIL && code == e->arg.fail_code,
                  "map_next: %s, task code %s", cf_err_name(rc), cf_err_name(code));
        }
    }
    cf_map_free(m);
    release(h);
}

static void op_result(worker_state *w)
{
    record *recs[1];
    if (!pick_records(w, recs, 1))
        return;
    record *rec = recs[0];
    double t = pick_timeout(&w->r);
    int rc;
    switch (below(&w->r, 3)) {
    case 0:
        rc = cf_future_result(NULL, rec->f, t);
        break;
    case 1:
        rc = cf_future_exception(NULL, NULL, rec->f, t);
        break;
    default:
        rc = cf_future_result_bytes(NULL, NULL, rec->f, t);
        if (rc == CF_EINVAL && !rec->bytes)
            rc = 0; /* a pointer result read as bytes */
        break;
    }
    CHECK(rc == 0 || rc == CF_ETASK || rc == CF_ECANCELLED || rc == CF_ETIMEDOUT,
          "a result call: %s", cf_err_name(rc));
    if (rc == CF_ETIMEDOUT)
        CHECK(t >= 0, "a wait without limit timed out");
    else
        CHECK(cf_future_done(rec->f), "a result call returned for a pending future");
}

static void op_exchange(worker_state *w)
{
    record *rec = take(&w->r);
    if (!rec)
        return;
    BUMP(exchanges);
    int rc = cf_future_result(NULL, rec->f, pick_timeout(&w->r));
    CHECK(rc != CF_EINVAL, "a result call on a passed future: %s", cf_err_name(rc));
    if (chance(&w->r, 30))
        cf_future_cancel(rec->f);
    if (chance(&w->r, 50))
        add_callback(rec);
    atomic_fetch_sub(&rec->pins, 1);
}

/* Retires the thread's records that are done and whose callbacks have all run. */
static void sweep(worker_state *w)
{
    record **pp = &w->records;
    while (*pp) {
        record *rec = *pp;
        if (cf_future_done(rec->f) && atomic_load(&rec->pins) == 0 &&
            atomic_load(&rec->cb_run) == atomic_load(&rec->cb_registered)) {
            *pp = rec->next;
            w->nrecords--;
            account(rec);
            record_free(rec);
        } else {
            pp = &rec->next;
        }
    }
}

/* Keeps the thread's backlog bounded: waits (without limit) for its oldest futures. */
static void drain_some(worker_state *w, size_t keep)
{
    size_t skip = 0;
    for (record *rec = w->records; rec; rec = rec->next) {
        if (skip++ < keep)
            continue;
        int rc = cf_future_exception(NULL, NULL, rec->f, CF_FOREVER);
        CHECK(rc == 0 || rc == CF_ECANCELLED, "a wait without limit: %s", cf_err_name(rc));
    }
}

/* ---- event loops: jobs posted from the stress threads, awaiting pool work ----
 *
 * Each loop host thread runs a cf_loop. Stress threads post jobs with call_soon_threadsafe;
 * on the loop thread a job submits to a pool slot through run_in_executor and waits for it as a
 * task (cf_wait_for / cf_gather / cf_sleep) or with callback-style combinators (wait_for,
 * gather, sleep), some with timeouts short enough to cancel, some cancelled by a timer or by a
 * later job. Invariants: every posted job runs once, on its loop's thread; every loop future
 * delivers its done-callback exactly once, on the loop thread; every job's final future ends in
 * a final state with an outcome from the expected set. */

enum { NLOOPS = 2 };

typedef struct loop_host {
    cf_loop *loop;
    pthread_t thread;
    cf_future *last_task; /* loop thread only: a task a later job may cancel */
    int rc;
} loop_host;

static loop_host hosts[NLOOPS];
static atomic_long loop_outstanding;

typedef struct loop_job {
    loop_host *host;
    holder *h; /* acquired by the poster; released on the loop thread once submitted */
    uint32_t style, kind;
    double timeout;
    uint64_t seed;
    map_block *calls; /* the executor calls' arguments and run counters (live with the pool) */
    cf_future *final;
    atomic_int done_calls;
} loop_job;

/* Submits the job's i-th call to its pool as a loop future. */
static int job_submit(loop_job *j, size_t i, cf_future **out)
{
    struct map_elem *e = &j->calls->elems[i];
    if (j->h->process)
        return cf_loop_run_in_executor_bytes(out, j->host->loop, j->h->ex, bytes_task, &e->arg,
                                             sizeof(e->arg));
    return cf_loop_run_in_executor(out, j->host->loop, j->h->ex, map_pointer_task, e);
}

static bool loop_code_expected(int code)
{
    return code == 0 || code == CF_ETIMEDOUT || code == CF_ECANCELLED || code == CF_EBROKEN ||
           code == CF_ESHUTDOWN || code == CF_EFULL || code == CF_ETASK ||
           (code <= -5000 && code > -5100);
}

static void job_done(cf_future *f, void *data)
{
    loop_job *j = data;
    BUMP(loop_cb_run);
    if (atomic_fetch_add(&j->done_calls, 1) != 0)
        fail("a loop future's done-callback ran twice");
    if (cf_loop_current() != j->host->loop)
        fail("a loop future's done-callback ran off its loop thread");
    if (f != j->final || !cf_future_done(f))
        fail("a loop done-callback got a wrong or pending future");
    if (cf_future_cancelled(f)) {
        BUMP(loop_cancelled);
    } else {
        int code = 0;
        cf_future_exception(&code, NULL, f, 0);
        if (code == 0)
            BUMP(loop_ok);
        else if (code == CF_ETIMEDOUT)
            BUMP(loop_timedout);
        else
            BUMP(loop_failed);
        CHECK(loop_code_expected(code), "a loop job ended with %s", cf_err_name(code));
    }
    /* A task cancelled before its first step never released its pool. */
    if (j->h)
        release(j->h);
    cf_future_unref(j->final);
    free(j);
    atomic_fetch_sub(&loop_outstanding, 1);
}

/* The task style: awaits its calls from a coroutine. */
static int job_task(void *arg, void **result)
{
    loop_job *j = arg;
    cf_future *a = NULL, *b = NULL;
    int rc = job_submit(j, 0, &a);
    if (rc == 0 && j->calls->n > 1)
        rc = job_submit(j, 1, &b);
    release(j->h);
    j->h = NULL;
    if (rc == 0) {
        switch (j->style % 3) {
        case 0:
            rc = cf_wait_for(NULL, a, j->timeout);
            break;
        case 1: {
            cf_future *both[2] = {a, b ? b : a};
            rc = cf_gather(NULL, both, 2);
            break;
        }
        default:
            rc = cf_sleep(j->timeout > 0 ? j->timeout / 4 : 0);
            if (rc == 0)
                rc = cf_await(NULL, a);
            break;
        }
    }
    for (int i = 0; i < 2 && rc == CF_ETASK; i++) {
        cf_future *c = i ? b : a;
        int code = 0;
        if (c && cf_future_exception(&code, NULL, c, 0) == 0 && code)
            rc = code;
    }
    cf_future_unref(a);
    cf_future_unref(b);
    *result = NULL;
    return rc;
}

static void cancel_later(cf_loop *loop, void *data)
{
    (void)loop;
    cf_future_cancel(data);
    cf_future_unref(data);
}

/* Runs on the loop thread. */
static void job_start(cf_loop *loop, void *data)
{
    loop_job *j = data;
    BUMP(loop_ran);
    CHECK(cf_loop_current() == loop && loop == j->host->loop, "a posted job ran off its loop");
    rng r = {.s = j->seed};
    int rc;
    bool task = j->style < 3;
    if (task) {
        rc = cf_loop_create_task(&j->final, loop, job_task, j, NULL);
        if (rc == CF_ENOTSUP) { /* built without coroutines: the callback style instead */
            task = false;
            j->style = 3 + below(&r, 3);
        } else {
            CHECK(rc == 0, "cf_loop_create_task: %s", cf_err_name(rc));
        }
    }
    if (!task) {
        cf_future *a = NULL;
        rc = job_submit(j, 0, &a);
        release(j->h);
        j->h = NULL;
        if (rc == 0) {
            switch (j->style) {
            case 3:
                rc = cf_loop_wait_for(&j->final, loop, a, j->timeout);
                break;
            case 4: {
                cf_future *sleeper = NULL;
                rc = cf_loop_sleep(&sleeper, loop, j->timeout > 0 ? j->timeout : 0, NULL);
                cf_future *both[2] = {a, sleeper ? sleeper : a};
                if (rc == 0)
                    rc = cf_loop_gather(&j->final, loop, both, 2);
                cf_future_unref(sleeper);
                break;
            }
            default:
                rc = cf_loop_wrap_future(&j->final, loop, a);
                break;
            }
            cf_future_unref(a);
        } else {
            CHECK(expected_submit_error(rc), "run_in_executor: %s", cf_err_name(rc));
        }
    }
    if (!j->final) {
        BUMP(loop_rejected);
        if (j->h)
            release(j->h);
        free(j);
        atomic_fetch_sub(&loop_outstanding, 1);
        return;
    }
    /* Sometimes cancel it soon from a timer, or cancel the previous job's task now. */
    if (chance(&r, 10))
        cf_loop_call_later(NULL, loop, 0.0005 * below(&r, 4), cancel_later,
                           cf_future_ref(j->final));
    loop_host *host = j->host;
    if (task) {
        if (host->last_task && chance(&r, 20))
            cf_future_cancel(host->last_task);
        cf_future_unref(host->last_task);
        host->last_task = cf_future_ref(j->final);
    }
    BUMP(loop_cb_registered);
    rc = cf_future_add_done_callback(j->final, job_done, j);
    CHECK(rc == 0, "add_done_callback on a loop future: %s", cf_err_name(rc));
}

static void op_loop(worker_state *w)
{
    rng *r = &w->r;
    loop_host *host = &hosts[below(r, NLOOPS)];
    slot *s = &slots[below(r, NSLOTS)];
    loop_job *j = calloc(1, sizeof(*j));
    j->host = host;
    j->h = acquire(s);
    j->style = below(r, 6);
    j->kind = pick_kind(r);
    j->timeout = chance(r, 50) ? -1 : 0.0005 * (1 + below(r, 20));
    j->seed = next_u64(r);
    size_t n = 1 + below(r, 2);
    j->calls = calloc(1, sizeof(*j->calls) + n * sizeof(j->calls->elems[0]));
    j->calls->n = n;
    j->calls->process = j->h->process;
    for (size_t i = 0; i < n; i++)
        fill_targ(&j->calls->elems[i].arg, r, j->h->process, &j->calls->elems[i].ran, j->kind);
    pthread_mutex_lock(&j->h->mu);
    j->calls->next = j->h->maps;
    j->h->maps = j->calls;
    pthread_mutex_unlock(&j->h->mu);
    atomic_fetch_add(&loop_outstanding, 1);
    BUMP(loop_posted);
    int rc = cf_loop_call_soon_threadsafe(host->loop, job_start, j);
    if (rc != 0) {
        fail("call_soon_threadsafe: %s", cf_err_name(rc));
        release(j->h);
        free(j);
        atomic_fetch_sub(&loop_outstanding, 1);
    }
}

static void *loop_host_main(void *arg)
{
    loop_host *host = arg;
    host->rc = cf_loop_run_forever(host->loop);
    return NULL;
}

static void loops_start(void)
{
    for (int i = 0; i < NLOOPS; i++) {
        if (cf_loop_new(&hosts[i].loop, NULL) != 0) {
            fail("cf_loop_new");
            exit(1);
        }
        pthread_create(&hosts[i].thread, NULL, loop_host_main, &hosts[i]);
    }
}

static void release_last_task(cf_loop *loop, void *data)
{
    (void)loop;
    loop_host *host = data;
    cf_future_unref(host->last_task);
    host->last_task = NULL;
}

/* Waits for every posted job to finish (the loops keep running), then stops and frees them. */
static void loops_stop(void)
{
    while (atomic_load(&loop_outstanding) > 0)
        pause_us(1000);
    for (int i = 0; i < NLOOPS; i++) {
        cf_loop_call_soon_threadsafe(hosts[i].loop, release_last_task, &hosts[i]);
        cf_loop_stop(hosts[i].loop);
        pthread_join(hosts[i].thread, NULL);
        CHECK(hosts[i].rc == 0, "cf_loop_run_forever: %s", cf_err_name(hosts[i].rc));
        CHECK(hosts[i].last_task == NULL, "a loop stopped before its last callback");
        int rc = cf_loop_free(hosts[i].loop);
        CHECK(rc == 0, "cf_loop_free: %s", cf_err_name(rc));
    }
}

static void *stress_main(void *arg)
{
    worker_state *w = arg;
    while (now_s() < run_end && !atomic_load(&failed)) {
        BUMP(ops);
        unsigned x = below(&w->r, 100);
        if (x < 30) {
            set_op(w, "submit");
            op_submit(w);
        } else if (x < 45) {
            set_op(w, "wait");
            op_wait(w);
        } else if (x < 53) {
            set_op(w, "as_completed");
            op_as_completed(w);
        } else if (x < 61) {
            set_op(w, "map");
            op_map(w);
        } else if (x < 72) {
            set_op(w, "result");
            op_result(w);
        } else if (x < 78) {
            set_op(w, "cancel");
            record *recs[1];
            if (pick_records(w, recs, 1) && cf_future_cancel(recs[0]->f))
                CHECK(cf_future_cancelled(recs[0]->f), "cancelled future not cancelled");
        } else if (x < 84) {
            set_op(w, "callback");
            record *recs[1];
            if (pick_records(w, recs, 1))
                add_callback(recs[0]);
        } else if (x < 92) {
            set_op(w, "exchange");
            op_exchange(w);
        } else if (x < 94) {
            set_op(w, "retire");
            retire(&w->r, &slots[below(&w->r, NSLOTS)], NULL);
        } else if (atomic_load(&loop_outstanding) < 200) {
            set_op(w, "loop");
            op_loop(w);
        } else {
            set_op(w, "idle");
        }
        if (w->nrecords > 300) {
            set_op(w, "drain");
            drain_some(w, 100);
        }
        set_op(w, "sweep");
        sweep(w);
    }
    set_op(w, "finished");
    return NULL;
}

/* The map's pointer task: the argument is a map element. */
static int map_pointer_task(void *arg, void **result)
{
    struct map_elem *e = arg;
    atomic_fetch_add(&e->ran, 1);
    if (e->arg.kind == K_SLOW)
        wait_ticks(e->arg.slow);
    if (e->arg.kind == K_FAIL)
        return cf_task_fail(e->arg.fail_code, "stress map task failed on purpose");
    *result = e;
    return 0;
}

/* ---- the killer ---- */

static atomic_bool killer_stop;

static int read_ppid(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    size_t k = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[k] = '\0';
    char *cp = strrchr(buf, ')');
    char state;
    int ppid;
    if (!cp || sscanf(cp + 2, "%c %d", &state, &ppid) != 2)
        return -1;
    return ppid;
}

/* Appends the children of every thread of `pid` to out[]. */
static size_t children_of(int pid, int *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.')
            continue;
        char cpath[300];
        snprintf(cpath, sizeof(cpath), "/proc/%d/task/%s/children", pid, e->d_name);
        FILE *fp = fopen(cpath, "r");
        if (!fp)
            continue;
        int c;
        while (n < cap && fscanf(fp, "%d", &c) == 1)
            out[n++] = c;
        fclose(fp);
    }
    closedir(d);
    return n;
}

/* Kills `pid` if it is still the child of `parent`: the pidfd pins the process, so the check and
 * the signal are about the same one even if the pid is reused meanwhile. */
static bool kill_child_of(int pid, int parent)
{
    static atomic_bool no_pidfd;
    int fd = atomic_load(&no_pidfd) ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && (atomic_load(&no_pidfd) || errno == ENOSYS)) {
        atomic_store(&no_pidfd, true);
        /* Under valgrind (no pidfd_open): check, then kill. A pid is reused only after its
         * parent reaped it; the window between the two calls is that short. */
        return read_ppid(pid) == parent && kill(pid, SIGKILL) == 0;
    }
    if (fd < 0)
        return false;
    bool ok = read_ppid(pid) == parent && syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0;
    close(fd);
    return ok;
}

static void *killer_main(void *arg)
{
    rng r = {.s = cfg.seed ^ 0x6b696c6cull};
    (void)arg;
    int me = (int)getpid();
    while (!atomic_load(&killer_stop)) {
        pause_us(20000 + below(&r, 200000));
        int servers[64], workers[256];
        size_t ns = children_of(me, servers, 64);
        if (!ns)
            continue;
        int server = servers[below(&r, (unsigned)ns)];
        if (chance(&r, 5)) {
            if (kill_child_of(server, me))
                BUMP(server_kills);
            continue;
        }
        size_t nw = children_of(server, workers, 256);
        if (nw && kill_child_of(workers[below(&r, (unsigned)nw)], server))
            BUMP(kills);
    }
    return NULL;
}

/* ---- the watchdog ---- */

static atomic_bool watchdog_stop;

static void dump(void)
{
    fprintf(stderr, "stress: WATCHDOG: the run exceeded %.0f s (seed %" PRIu64 ")\n", cfg.watchdog,
            cfg.seed);
    unsigned long long now_ms = (unsigned long long)(now_s() * 1000);
    for (unsigned i = 0; i < cfg.threads; i++) {
        const char *op = atomic_load(&states[i].op);
        fprintf(stderr, "  thread %u: %s for %.1f s, %zu futures outstanding\n", i,
                op ? op : "(none)", (now_ms - atomic_load(&states[i].op_since_ms)) / 1000.0,
                states[i].nrecords);
    }
    for (int i = 0; i < NSLOTS; i++) {
        pthread_mutex_lock(&slots[i].mu);
        holder *h = slots[i].h;
        cf_thread_pool_stats st;
        if (h && !h->process && cf_thread_pool_get_stats(&st, h->ex) == 0)
            fprintf(stderr, "  slot %d: thread pool, %u threads (%u idle), %zu queued\n", i,
                    st.threads, st.idle, st.queued);
        else if (h)
            fprintf(stderr, "  slot %d: %s pool\n", i, h->process ? "process" : "thread");
        pthread_mutex_unlock(&slots[i].mu);
    }
    fprintf(stderr, "  loop jobs outstanding: %ld\n", atomic_load(&loop_outstanding));
    fprintf(stderr, "  submitted %lu, ok %lu, failed %lu, cancelled %lu, broken %lu\n",
            atomic_load(&count.submitted), atomic_load(&count.ok), atomic_load(&count.task_failed),
            atomic_load(&count.cancelled), atomic_load(&count.broken));
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    double end = now_s() + cfg.watchdog;
    while (!atomic_load(&watchdog_stop)) {
        if (now_s() > end) {
            dump();
            abort();
        }
        pause_us(50000);
    }
    return NULL;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: stress [--seconds N] [--seed S] [--threads T] [--no-process] "
                    "[--no-kill] [--watchdog W] [--verbose]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    bool seeded = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--seconds") == 0 && v) {
            cfg.seconds = atof(v);
            i++;
        } else if (strcmp(a, "--seed") == 0 && v) {
            cfg.seed = strtoull(v, NULL, 0);
            seeded = true;
            i++;
        } else if (strcmp(a, "--threads") == 0 && v) {
            cfg.threads = (unsigned)atoi(v);
            i++;
        } else if (strcmp(a, "--watchdog") == 0 && v) {
            cfg.watchdog = atof(v);
            i++;
        } else if (strcmp(a, "--no-process") == 0) {
            cfg.process = false;
        } else if (strcmp(a, "--no-kill") == 0) {
            cfg.kill = false;
        } else if (strcmp(a, "--verbose") == 0) {
            cfg.verbose = true;
        } else {
            usage();
        }
    }
    if (cfg.threads < 1 || cfg.threads > 64 || !(cfg.seconds > 0))
        usage();
    if (!seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        cfg.seed = splitmix(&x);
    }
    /* Long enough for the run and the drain of its backlog; hangs are many times longer. */
    if (!(cfg.watchdog > 0))
        cfg.watchdog = cfg.seconds * 3 + 120;
}

/* After the run: every record is done, every callback ran, every count adds up. */
static void final_checks(void)
{
    for (unsigned i = 0; i < cfg.threads; i++) {
        worker_state *w = &states[i];
        sweep(w);
        for (record *rec = w->records; rec; rec = rec->next) {
            if (!cf_future_done(rec->f))
                fail("a future is still pending after every pool was freed");
            else if (atomic_load(&rec->cb_run) != atomic_load(&rec->cb_registered))
                fail("a future has %u callbacks registered but %u ran",
                     atomic_load(&rec->cb_registered), atomic_load(&rec->cb_run));
            else
                fail("a record could not be retired (pins %u)", atomic_load(&rec->pins));
        }
    }
    unsigned long accepted = atomic_load(&count.submitted);
    unsigned long outcomes = atomic_load(&count.ok) + atomic_load(&count.task_failed) +
                             atomic_load(&count.cancelled) + atomic_load(&count.broken);
    CHECK(accepted == outcomes, "%lu tasks accepted but %lu outcomes", accepted, outcomes);
    CHECK(atomic_load(&count.pools_created) == atomic_load(&count.pools_freed),
          "%lu pools created, %lu freed", atomic_load(&count.pools_created),
          atomic_load(&count.pools_freed));
    CHECK(atomic_load(&count.loop_posted) == atomic_load(&count.loop_ran),
          "%lu loop jobs posted, %lu ran", atomic_load(&count.loop_posted),
          atomic_load(&count.loop_ran));
    CHECK(atomic_load(&count.loop_cb_registered) == atomic_load(&count.loop_cb_run),
          "%lu loop callbacks registered, %lu ran", atomic_load(&count.loop_cb_registered),
          atomic_load(&count.loop_cb_run));
    CHECK(atomic_load(&count.loop_ran) ==
              atomic_load(&count.loop_ok) + atomic_load(&count.loop_failed) +
                  atomic_load(&count.loop_timedout) + atomic_load(&count.loop_cancelled) +
                  atomic_load(&count.loop_rejected),
          "loop job outcomes do not add up");
    CHECK(atomic_load(&count.cb_registered) == atomic_load(&count.cb_run),
          "%lu callbacks registered, %lu ran", atomic_load(&count.cb_registered),
          atomic_load(&count.cb_run));
    /* Worker processes: what ran (the shared table) against what the parent was told. */
    uint64_t ids = atomic_load(&next_process_id);
    if (ids > MAX_PROCESS_IDS)
        ids = MAX_PROCESS_IDS;
    for (uint64_t id = 0; id < ids; id++) {
        unsigned ran = atomic_load(&shm_counts[id]);
        switch (process_outcome[id]) {
        case PO_CANCELLED:
            CHECK(ran == 0, "process task %" PRIu64 ": cancelled but ran %u times", id, ran);
            break;
        case PO_OK:
        case PO_FAILED:
            CHECK(ran == 1, "process task %" PRIu64 ": finished but ran %u times", id, ran);
            break;
        default: /* broken, or never looked at: at most once */
            CHECK(ran <= 1, "process task %" PRIu64 ": ran %u times", id, ran);
            break;
        }
        BUMP(process_ran_checked);
    }
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    printf("stress: seed %" PRIu64 ", %u threads, %.1f s, process pools %s, killer %s\n", cfg.seed,
           cfg.threads, cfg.seconds, cfg.process ? "on" : "off",
           cfg.process && cfg.kill ? "on" : "off");
    printf("stress: replay with: stress --seconds %g --seed %" PRIu64 " --threads %u%s%s\n",
           cfg.seconds, cfg.seed, cfg.threads, cfg.process ? "" : " --no-process",
           cfg.kill ? "" : " --no-kill");
    fflush(stdout);
    signal(SIGPIPE, SIG_IGN);
    shm_setup();

    pthread_t ticker, killer, watchdog;
    pthread_create(&watchdog, NULL, watchdog_main, NULL);
    pthread_create(&ticker, NULL, ticker_main, NULL);
    rng setup = {.s = cfg.seed};
    for (int i = 0; i < NSLOTS; i++) {
        pthread_mutex_init(&slots[i].mu, NULL);
        slots[i].kind = i == 0 || i == 1 ? 0 : i == 2 ? 1 : 2;
        slots[i].h = holder_new(&setup, slots[i].kind);
    }
    bool killing = cfg.process && cfg.kill;
    if (killing)
        pthread_create(&killer, NULL, killer_main, NULL);
    loops_start();

    states = calloc(cfg.threads, sizeof(*states));
    double start = now_s();
    run_end = start + cfg.seconds;
    for (unsigned i = 0; i < cfg.threads; i++) {
        states[i].index = i;
        uint64_t x = cfg.seed + i;
        states[i].r.s = splitmix(&x);
        pthread_create(&states[i].thread, NULL, stress_main, &states[i]);
    }
    for (unsigned i = 0; i < cfg.threads; i++)
        pthread_join(states[i].thread, NULL);
    double ran_for = now_s() - start;

    /* Tear down: stop killing, release the exchange, free every pool (waiting for its work). */
    if (killing) {
        atomic_store(&killer_stop, true);
        pthread_join(killer, NULL);
    }
    loops_stop();
    for (int i = 0; i < MAILBOX; i++)
        if (mailbox[i])
            atomic_fetch_sub(&mailbox[i]->pins, 1);
    for (int i = 0; i < NSLOTS; i++) {
        cf_executor_shutdown(slots[i].h->ex, true, false);
        release(slots[i].h);
        slots[i].h = NULL;
    }
    final_checks();
    atomic_store(&ticker_stop, true);
    pthread_join(ticker, NULL);
    atomic_store(&watchdog_stop, true);
    pthread_join(watchdog, NULL);
    for (unsigned i = 0; i < cfg.threads; i++) {
        record *rec = states[i].records;
        while (rec) {
            record *next = rec->next;
            record_free(rec);
            rec = next;
        }
    }
    free(states);
    munmap((void *)shm_counts, MAX_PROCESS_IDS);
    munmap(process_outcome, MAX_PROCESS_IDS);
    unlink(shm_path);

    printf("stress: %.1f s, %lu operations, %lu tasks accepted (%lu rejected): %lu ok, %lu "
           "failed, %lu cancelled, %lu broken\n",
           ran_for, atomic_load(&count.ops), atomic_load(&count.submitted),
           atomic_load(&count.rejected), atomic_load(&count.ok), atomic_load(&count.task_failed),
           atomic_load(&count.cancelled), atomic_load(&count.broken));
    printf("stress: %lu callbacks registered and run; %lu maps (%lu items), %lu waits, %lu "
           "as_completed, %lu exchanges\n",
           atomic_load(&count.cb_run), atomic_load(&count.maps), atomic_load(&count.map_items),
           atomic_load(&count.waits), atomic_load(&count.as_completed),
           atomic_load(&count.exchanges));
    printf("stress: %lu loop jobs posted and run: %lu ok, %lu failed, %lu timed out, %lu "
           "cancelled, %lu refused; %lu loop callbacks\n",
           atomic_load(&count.loop_posted), atomic_load(&count.loop_ok),
           atomic_load(&count.loop_failed), atomic_load(&count.loop_timedout),
           atomic_load(&count.loop_cancelled), atomic_load(&count.loop_rejected),
           atomic_load(&count.loop_cb_run));
    printf("stress: %lu pools created (%lu creations failed: fork server killed while starting), "
           "%lu retired; %lu workers and %lu fork servers killed; %lu in-process runs, %lu "
           "process task ids checked\n",
           atomic_load(&count.pools_created), atomic_load(&count.creation_failures),
           atomic_load(&count.retired_pools), atomic_load(&count.kills),
           atomic_load(&count.server_kills), atomic_load(&count.thread_ran),
           atomic_load(&count.process_ran_checked));
    if (atomic_load(&failed)) {
        printf("stress: FAILED (seed %" PRIu64 ")\n", cfg.seed);
        return 1;
    }
    printf("stress: every invariant held (seed %" PRIu64 ")\n", cfg.seed);
    return 0;
}
