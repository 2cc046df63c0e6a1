/* cfutures internals shared by the library's source files. Not installed. */
#ifndef CFUTURES_INTERNAL_H
#define CFUTURES_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfutures.h"
#include "cfutures/executor_impl.h"

#define CF__LIKELY(x)   __builtin_expect(!!(x), 1)
#define CF__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define CF__CACHELINE   64
#define CF__FOREVER_NS  INT64_MAX
#define CF__NS_PER_S    INT64_C(1000000000)

/* ---- the ABI rule for public structs (docs/abi.md) ---- */

/* A public struct with a reserved tail keeps its LP64 size forever, and `reserved` stays its last
 * member: later releases carve new fields out of the tail. One line per struct, next to the code
 * that reads it; tests/core/check_abi.py holds the same sizes to docs/abi.md. */
#define CF__ABI_STRUCT(type, lp64_size)                                                            \
    _Static_assert(sizeof(void *) != 8 || sizeof(type) == (lp64_size),                             \
                   #type " must keep its size: carve new fields out of `reserved` (docs/abi.md)"); \
    _Static_assert(offsetof(type, reserved) + sizeof(((type *)0)->reserved) == sizeof(type),       \
                   #type ": `reserved` must stay the last member (docs/abi.md)")

/* A frozen public struct (no reserved tail: an array element such as cf_bytes) never changes. */
#define CF__ABI_FROZEN(type, lp64_size)                                                            \
    _Static_assert(sizeof(void *) != 8 || sizeof(type) == (lp64_size),                             \
                   #type " is frozen (docs/abi.md)")

/* True if the reserved tail of the options struct `o` is all zero, as a caller built against
 * these headers (or older ones) leaves it; a non-zero slot is an option this library does not
 * know, which constructors reject with CF_EINVAL rather than ignore. */
#define CF__RESERVED_ZERO(o) cf__all_zero((o)->reserved, sizeof((o)->reserved))
static inline bool cf__all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i])
            return false;
    return true;
}

/* ---- assertions (assert.c) ----
 *
 * The rules that comments state ("lock held", "loop thread", the states a future moves between,
 * reference counts) are checked by CF__ASSERT in every build without NDEBUG: debug,
 * debugoptimized (the default) and the sanitizer builds, which CI's gcc, clang, asan, tsan,
 * valgrind and fault-injection kinds use. Release builds (meson's b_ndebug=if-release) compile
 * them away without evaluating the condition. A broken rule prints the condition and where it
 * was checked, then aborts. */
#ifdef NDEBUG
#define CF__ASSERT(cond) ((void)sizeof(!(cond)))
#else
#define CF__ASSERT(cond)                                                                           \
    (CF__LIKELY(cond) ? (void)0 : cf__assert_fail(#cond, __FILE__, __LINE__, __func__))
#endif
_Noreturn void cf__assert_fail(const char *cond, const char *file, int line, const char *func);
/* Whether the library was built with its assertions (for the tests that prove they fire). */
bool cf__asserts_enabled(void);
/* Whether the calling thread holds `mu` (with glibc, which records the owner; elsewhere,
 * whether some thread holds it). For assertions only. */
bool cf__mutex_owned(pthread_mutex_t *mu);
#define CF__ASSERT_MUTEX_OWNED(mu) CF__ASSERT(cf__mutex_owned(mu))

/* ---- memory (alloc.c); every allocation goes through here so faults can be injected ---- */

void *cf__malloc(size_t size);
void *cf__calloc(size_t n, size_t size);
void cf__free(void *p);
/* Zeroed memory aligned to `align` (a power of two, multiple of sizeof(void *)), for structs
 * with cache-line-aligned members. Freed with cf__free. */
void *cf__calloc_aligned(size_t align, size_t size);
/* The same without zeroing, so large blocks stay lazily committed. Freed with cf__free. */
void *cf__malloc_aligned(size_t align, size_t size);
char *cf__strdup(const char *s);
/* realloc() for an array of `n` elements of `size` bytes (NULL on overflow or no memory, the
 * block then unchanged). */
void *cf__realloc_array(void *p, size_t n, size_t size);
/* Makes room for `need` elements of `size` bytes in the array at *(T **)array_ptr, whose
 * capacity (in elements) is *cap: doubles the capacity (from 16) until they fit, keeping the
 * contents. Returns 0, or CF_ENOMEM with the array and *cap unchanged. */
int cf__grow(void *array_ptr, size_t *cap, size_t need, size_t size);

/* Fault injection (compiled in with -Dfault_injection=true). cf__fault(kind) returns true when
 * the current operation of that kind must fail. Tests arm it with cf__fault_arm(). */
typedef enum cf__fault_kind {
    CF__FAULT_ALLOC = 1u << 0,
    CF__FAULT_THREAD = 1u << 1,
    CF__FAULT_FD = 1u << 2, /* pipe, eventfd, epoll, timerfd, pidfd, socketpair */
    CF__FAULT_MMAP = 1u << 3,
    CF__FAULT_FORK = 1u << 4,
} cf__fault_kind;

#ifdef CF_FAULT_INJECTION
bool cf__fault(cf__fault_kind kind);
/* From now on, the `nth` (1-based) operation of any kind in `kinds` fails, once. 0 disarms. */
void cf__fault_arm(unsigned kinds, unsigned long nth);
/* Operations of the armed kinds counted since the last arm; whether the fault fired. */
unsigned long cf__fault_count(void);
bool cf__fault_fired(void);
#else
static inline bool cf__fault(cf__fault_kind kind)
{
    (void)kind;
    return false;
}
#endif

/* ---- descriptors (fd.c) ---- */

/* Every descriptor the library creates or receives goes through one of these, so that none of
 * ours lands on 0, 1 or 2 in a program started with them closed (its next printf would write
 * into our socket). Returns `fd` itself if it is above 2 (or negative: a failed call passes
 * through), else a close-on-exec duplicate above 2, closing `fd`; -1 with errno (EMFILE when no
 * number above 2 is free) if that fails. */
int cf__fd_above_stdio(int fd);
/* The same for both ends of a pair (a socketpair or a pipe): 0, or -1 with errno and both
 * closed (set to -1). */
int cf__fd_pair_above_stdio(int sv[2]);

/* ---- errors (error.c) ---- */

/* The one translation of an errno value from a system call the library made with its own
 * arguments into a CF_E* code (docs/errors.md, "Errors from the system"): ENOMEM and ENOBUFS
 * give CF_ENOMEM, EMFILE and ENFILE CF_EMFILE, EAGAIN CF_EAGAIN (a process or thread limit),
 * EPERM and EACCES CF_EPERM, ENOSYS CF_ENOSYS, and anything else (EINVAL included: the
 * caller's arguments were not at fault) CF_ESYSTEM. */
int cf__errno_code(int err);

/* ---- time and blocking (sync.c) ---- */

/* Public timeouts and delays are seconds in a double. From this many on, the nanosecond clock
 * would overflow (about 292 years): such a duration means no limit. */
#define CF__MAX_SECONDS 9.0e9

int64_t cf__now_ns(void); /* CLOCK_MONOTONIC */
/* A duration in seconds (not NaN) in ns: 0 at or below 0, CF__FOREVER_NS from CF__MAX_SECONDS
 * on. Also converts a point on the loop clock (seconds of CLOCK_MONOTONIC) to ns. */
int64_t cf__seconds_to_ns(double seconds);
/* base_ns + ns (ns >= 0), saturating at CF__FOREVER_NS, so a forever stays forever. */
int64_t cf__ns_after(int64_t base_ns, int64_t ns);
/* The deadline `delay` seconds (not NaN) from now: now for a delay <= 0, CF__FOREVER_NS for
 * one too far to represent. */
int64_t cf__deadline_after(double delay);
/* Converts a public timeout in seconds to an absolute deadline in ns: a negative timeout (such
 * as CF_FOREVER) is no limit (CF__FOREVER_NS). Returns 0 or CF_EINVAL for NaN. */
int cf__deadline(double timeout, int64_t *deadline_ns);
/* A relative timeout in ns as the milliseconds poll() and epoll_wait() take: -1 (no limit) for
 * a negative one, else rounded up (waking early would only go round again), at most INT_MAX. */
int cf__timeout_ms(int64_t timeout_ns);
/* Sleeps while *addr == expected, until woken or the deadline. Returns 0 (woken, spurious, or
 * value changed) or CF_ETIMEDOUT. Retries EINTR internally, keeping the deadline. */
int cf__futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns);
void cf__futex_wake(_Atomic uint32_t *addr, int n);
/* The same on a word in memory shared with other processes (a MAP_SHARED mapping): the kernel
 * keys the wait on the mapped page, not on this process's address space, so a waiter in one
 * process is woken by a wake in another (no FUTEX_PRIVATE_FLAG). */
int cf__futex_wait_shared(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline_ns);
void cf__futex_wake_shared(_Atomic uint32_t *addr, int n);
/* Absolute CLOCK_MONOTONIC timespec for an absolute deadline in ns. */
struct timespec cf__timespec(int64_t ns);

/* A 4-byte mutex (futex based), so that small objects such as futures stay small. */
typedef struct cf__lock {
    _Atomic uint32_t word; /* 0 free, 1 locked, 2 locked with sleepers */
} cf__lock;

void cf__lock_slow(cf__lock *l);
void cf__unlock_slow(cf__lock *l);

static inline void cf__lock_acquire(cf__lock *l)
{
    uint32_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &expected, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        cf__lock_slow(l);
}

/* Whether some thread holds `l`. The 4-byte word does not record which one (an owner would
 * cost every future a field and every acquisition a store), so the assertion below is the
 * cheap half of the kernel's lockdep_assert_held: it catches a caller that took no lock. */
static inline bool cf__lock_held(const cf__lock *l)
{
    return atomic_load_explicit(&((cf__lock *)l)->word, memory_order_relaxed) != 0;
}
#define CF__ASSERT_LOCK_HELD(l) CF__ASSERT(cf__lock_held(l))

static inline void cf__lock_release(cf__lock *l)
{
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) == 2)
        cf__unlock_slow(l);
}

/* A condition variable over cf__lock: a futex sequence word. `waiters` is guarded by the lock,
 * so a broadcast with nobody waiting costs no system call. */
typedef struct cf__cond {
    _Atomic uint32_t seq;
    uint32_t waiters;
} cf__cond;

/* With `l` held: releases it, sleeps until a broadcast or the deadline, re-acquires it.
 * Returns 0 (woken or spurious: re-check the condition) or CF_ETIMEDOUT. */
int cf__cond_wait_lock(cf__cond *c, cf__lock *l, int64_t deadline_ns);
/* With `l` (the lock the waiters use) held: wakes every waiter. */
void cf__cond_broadcast(cf__cond *c, cf__lock *l);

/* Every thread-local of the library: the initial-exec model avoids a __tls_get_addr call per
 * access in the shared library (a few per task on the submit and completion paths). It takes
 * static TLS space (about 200 bytes in all), which glibc keeps in reserve for libraries that are
 * dlopen()ed as well. */
#define CF__TLS_FAST __attribute__((tls_model("initial-exec")))

static inline void cf__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of a spin-wait: `pause` for the first few microseconds, then yield the CPU, so that a
 * spinner on an oversubscribed machine lets the thread it waits for run. */
static inline void cf__spin_step(unsigned iteration)
{
    if (iteration < 256)
        cf__cpu_relax();
    else
        sched_yield();
}

/* An adaptive spin window with one owner, the rule the pools' spinners share: a sleep that the
 * waker ended soon after (`gap` ns) shows a gap a longer spin would have bridged, so the window
 * grows to cover twice that gap (up to `max_ns`); a spin that found nothing decays it by a
 * quarter, so an owner whose waits are long converges to not spinning at all. */
typedef struct cf__spin_window {
    int64_t ns, max_ns;
} cf__spin_window;
static inline void cf__spin_window_missed(cf__spin_window *w)
{
    w->ns -= w->ns / 4;
}
static inline void cf__spin_window_gap(cf__spin_window *w, int64_t gap_ns)
{
    int64_t want = gap_ns > 0 && 2 * gap_ns < w->max_ns ? 2 * gap_ns : gap_ns > 0 ? w->max_ns : 0;
    if (gap_ns < w->max_ns && want > w->ns)
        w->ns = want;
}

/* pthread_create() with the library's fault injection and its one translation of a failure:
 * CF_EAGAIN for EAGAIN (a thread or memory limit), CF_ENOMEM for anything else (the stack the
 * attributes ask for cannot be had). */
int cf__thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
                      void *arg);

/* The calling thread's identity for "does this thread own it" checks: the address of a
 * thread-local, unique among live threads like pthread_self(), but one instruction where
 * pthread_self() is a call (the loop asks on every handle it touches). */
extern _Thread_local char cf__thread_tag CF__TLS_FAST;
static inline uintptr_t cf__thread_self(void)
{
    return (uintptr_t)&cf__thread_tag;
}

/* Number of CPUs this process may run on (affinity aware), at least 1. */
unsigned cf__cpu_count(void);

/* ---- fork (core/atfork.c) ---- */

/* Incremented in the child of every fork(); objects record the value they were created with. */
extern _Atomic uint32_t cf__fork_generation;
void cf__fork_init(void); /* idempotent; registers the pthread_atfork handlers */

/* The locks a fork() must not split, by level, in the one order the fork handlers take them
 * (core/atfork.c): prepare from the first level to the last, parent and child in reverse. Code
 * holding a lock of one level may take locks of later levels, never of earlier ones. */
typedef enum cf__fork_level {
    /* The at-exit registry (core/at_exit.c): under it only a thread pool's own lock, which no
     * fork hook takes. */
    CF__FORK_LEVEL_AT_EXIT,
    /* The list of process pools, then each pool's lock (process_pool/process_pool.c): the
     * outermost locks of the library besides the at-exit registry (docs/internals.md, "Lock
     * order"). */
    CF__FORK_LEVEL_EXECUTORS,
    /* The coroutine stack pool (loop/coro.c). */
    CF__FORK_LEVEL_STACKS,
    /* The object pools of futures and loop tasks (core/objpool.c): nothing is taken under
     * them. */
    CF__FORK_LEVEL_FUTURES,
    /* The registry of shared byte blocks (core/bytes.c): a leaf, nothing is taken under it. */
    CF__FORK_LEVEL_BLOCKS,
    /* The table of the data callers attach to futures (core/future_data.c): a leaf, nothing is
     * taken under it. */
    CF__FORK_LEVEL_FUTURE_DATA,
    CF__FORK_LEVELS
} cf__fork_level;

/* What a module does around fork() for the locks of its level: prepare takes them, parent
 * releases them, child makes them usable again (the child's only thread holds them). */
typedef struct cf__fork_hooks {
    void (*prepare)(void);
    void (*parent)(void);
    void (*child)(void);
} cf__fork_hooks;

/* Installs a module's hooks at its level (once: later calls for a level are ignored), and the
 * library's one pthread_atfork registration if it is not there yet. Thread-safe; `hooks` must
 * stay valid for the life of the process. */
void cf__fork_hooks_install(cf__fork_level level, const cf__fork_hooks *hooks);

static inline uint32_t cf__fork_gen(void)
{
    return atomic_load_explicit(&cf__fork_generation, memory_order_relaxed);
}

/* ---- futures (future.c) ---- */

/* The outcome of running a task function, before it is stored anywhere. */
typedef struct cf__outcome {
    int rc;        /* 0 success, else the failure code */
    void *value;   /* pointer result, or malloc'd bytes for a bytes task */
    size_t len;    /* bytes result length */
    cf_dtor dtor;  /* pointer result destructor */
    char *message; /* malloc'd failure message or NULL */
    bool borrowed; /* the value belongs to someone else: the future never releases it */
} cf__outcome;

/* A hook is the single mechanism behind done-callbacks, cf_wait() and as_completed: a node
 * linked into a pending future and fired exactly once, by the thread that makes it done, after
 * the state change and outside the future's lock. A hook's fire function must not touch the
 * hook (or anything it points to) after its last action that publishes "fired", because the
 * owner of the hook may then free it: see wait.c. */
typedef struct cf__hook cf__hook;
typedef void (*cf__hook_fn)(cf__hook *hook, cf_future *future);
struct cf__hook {
    cf__hook *next;
    cf__hook_fn fire;
};

/* Per-kind behaviour of special futures (loop futures and tasks); NULL for plain futures. */
typedef struct cf__future_ops {
    /* Deliver a user done-callback instead of calling it inline (a loop schedules it). */
    void (*schedule_callback)(cf_future *f, cf_done_cb cb, void *data);
    /* Replace cf_future_cancel() (a task requests cancellation of its coroutine). */
    bool (*cancel)(cf_future *f);
    /* Release the memory of a future whose last reference went away. */
    void (*release)(cf_future *f);
} cf__future_ops;

enum {
    CF__S_PENDING = 0,
    CF__S_RUNNING = 1,
    CF__S_FINISHED = 2,
    CF__S_CANCELLED = 3,
    CF__S_MASK = 3,
    CF__F_FAILED = 1u << 2,       /* FINISHED with an error */
    CF__F_WAITERS = 1u << 3,      /* some thread sleeps on the state word */
    CF__F_RESULT_BYTES = 1u << 4, /* value is a malloc'd buffer of `len` bytes */
    CF__F_TASK_BYTES = 1u << 5,   /* fn is a cf_bytes_fn and arg a cf__bytes block we own */
    CF__F_BORROWED = 1u << 6,     /* the value is not the future's to release */
    CF__F_RESULT_BLOCK = 1u << 7, /* with RESULT_BYTES: value is in a shared block (bytes.h) */
    CF__F_DATA = 1u << 8,         /* the caller attached data (core/future_data.c holds it) */
    CF__F_TASK_DTOR = 1u << 9,    /* a pointer task whose result destructor was given at submit
                                   * (in `dtor` until the task runs) */
};

/* One cache line (64 bytes on 64-bit systems): a future moves between the submitting thread,
 * a worker and the waiter, and each hand-over then moves one line. The fields that are never
 * needed at the same time share storage: the hooks live only until the future is done, and
 * from then on the same word holds the value (success) or the message (failure); the length
 * of a bytes result and the destructor of a pointer result exclude each other too. */
struct cf_future {
    /* First, so that a queue can keep its producer end and its sentinel's link on one line. */
    _Atomic(cf_future *) next; /* executor queue and pool link (see cf__next/cf__set_next) */
    _Atomic uint32_t state;    /* CF__S_* | CF__F_* */
    _Atomic uint32_t refs;
    cf__lock lock; /* guards `hooks` and the move to a done state */
    int32_t err;   /* error code when CF__F_FAILED */
    const cf__future_ops *ops;
    /* The task record, for executors. */
    void *fn;
    void *arg;
    union {
        cf__hook *hooks; /* until done: newest first; fired oldest first */
        void *value;     /* done, CF__S_FINISHED without CF__F_FAILED */
        char *message;   /* done, CF__F_FAILED: malloc'd or NULL */
    };
    union {
        size_t len;   /* with CF__F_RESULT_BYTES */
        cf_dtor dtor; /* without it */
    };
};

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct cf_future) == 64, "a future is one cache line");
#endif

/* The link of a future in a queue or cache. Relaxed: where several threads race on a link
 * (the thread pool's lock-free queue) the callers order it with their own atomics. */
static inline cf_future *cf__next(const cf_future *f)
{
    return atomic_load_explicit(&((cf_future *)f)->next, memory_order_relaxed);
}
static inline void cf__set_next(cf_future *f, cf_future *next)
{
    atomic_store_explicit(&f->next, next, memory_order_relaxed);
}

/* ---- shared byte blocks (bytes.c, public side in bytes.h) ---- */

typedef struct cf__block cf__block;

/* The frozen block (one with a descriptor) that holds [p, p + len), with a reference taken, or
 * NULL: always for ranges of 64 KiB or less (copying them is cheaper), and at the cost of one
 * load when no block exists. */
cf__block *cf__block_ref_frozen(const void *p, size_t len);
void cf__block_unref(cf__block *b);
/* The block's memfd (valid while a reference is held), and where `p` is in it. */
int cf__block_fd(const cf__block *b);
uint64_t cf__block_offset(const cf__block *b, const void *p);
/* A bytes task returned `value` (`len` bytes): if it lies in a block the caller owns, the
 * caller's reference becomes the result's (a later cf_bytes_free() of it is refused) and this
 * returns true: the result is then released with cf__block_release, not free(). */
bool cf__block_adopt_result(const void *value, size_t len);
/* The destructor of a result in a block (cf_dtor): drops the result's reference. */
void cf__block_release(void *value);
/* In a worker, for a result in a block: freezes the block and returns a duplicate of its memfd
 * and the result's offset in it. Returns 0, CF_EINVAL, CF_ENOMEM or CF_EMFILE. */
int cf__block_share(const void *value, size_t len, int *fd, uint64_t *offset);
/* In the parent, for a result mapped from a worker's memfd: registers the read-only mapping
 * [base, base + size) as a block whose one reference is the result's (cf__block_release). */
int cf__block_adopt_mapping(void *base, size_t size);

/* A bytes task's argument: a private copy (inline), or a reference to a range of a frozen shared
 * block, which is passed on by reference (bytes.h). */
typedef struct cf__bytes {
    size_t len;
    const unsigned char *data; /* inline_data, or inside `block` */
    cf__block *block;          /* a reference, or NULL for a copy */
    _Alignas(16) unsigned char inline_data[];
} cf__bytes;

/* A copy of `len` bytes at `data`, or a reference if they lie in a frozen block (and are worth
 * it). NULL if out of memory. */
cf__bytes *cf__bytes_new(const void *data, size_t len);
void cf__bytes_free(cf__bytes *b);

/* Loops that touch each of many futures once (wait, as_completed, map) miss the cache on every
 * one when there are more than the cache holds, and the hardware cannot guess pointers read from
 * an array: fetch the future a few entries ahead. */
#define CF__PREFETCH_AHEAD 8
static inline void cf__prefetch_ahead(cf_future *const *fs, size_t i, size_t n)
{
    if (i + CF__PREFETCH_AHEAD < n)
        __builtin_prefetch(fs[i + CF__PREFETCH_AHEAD], 1);
}

/* Allocates a pending future with `refs` references, from the calling thread's cache. */
cf_future *cf__future_alloc(uint32_t refs);
/* Initialises a pending future (also one embedded in a larger object released through
 * ops->release). */
static inline void cf__future_init(cf_future *f, uint32_t refs, const cf__future_ops *ops)
{
    atomic_init(&f->next, NULL);
    atomic_init(&f->state, CF__S_PENDING);
    atomic_init(&f->refs, refs);
    atomic_init(&f->lock.word, 0);
    f->err = 0;
    f->ops = ops;
    f->fn = NULL;
    f->arg = NULL;
    f->hooks = NULL;
    f->len = 0;
}
/* Releases a future that was never handed out, whatever references it was built with. */
void cf__future_discard(cf_future *f);
/* Removes the data attached to `f` (core/future_data.c); for futures flagged CF__F_DATA, by
 * their last reference. */
void cf__future_data_forget(const cf_future *f);

static inline bool cf__state_done(uint32_t s)
{
    return (s & CF__S_MASK) >= CF__S_FINISHED;
}
static inline uint32_t cf__future_load(const cf_future *f)
{
    return atomic_load_explicit(&((cf_future *)f)->state, memory_order_acquire);
}

/* Links `hook` into a pending future and returns 0, or returns 1 without linking it if the
 * future is already done (the caller handles that case itself). */
int cf__future_add_hook(cf_future *f, cf__hook *hook);
/* Unlinks a hook; true if it was still linked (it will never fire), false if it has fired or
 * is firing. */
bool cf__future_remove_hook(cf_future *f, cf__hook *hook);

/* Completes a future with an outcome whose memory it adopts (rc != 0: failed with that code;
 * `bytes`: value/len is a malloc'd bytes result). Returns 0, or CF_EINVALSTATE if the future was
 * already done (then nothing was adopted). */
int cf__future_finish(cf_future *f, const cf__outcome *o, bool bytes);
/* As cf__future_finish, except that it refuses (CF_EAGAIN, nothing adopted, the future
 * unchanged) when completing would run a done-callback of the user: for a thread that may
 * complete futures but must not run user code (a waiting thread helping an executor). */
int cf__future_finish_quiet(cf_future *f, const cf__outcome *o, bool bytes);
/* As cf__future_finish, and calls released(ctx) exactly once: before the future becomes done
 * unless a done-callback of the user hangs on it (so a thread woken by the result already sees
 * its effect), otherwise after the hooks have run (a user callback runs on the calling thread,
 * which is not free until it returns). Also called, once, when the future was already done. */
int cf__future_finish_then(cf_future *f, const cf__outcome *o, bool bytes, void (*released)(void *),
                           void *ctx);
/* Waits until the future is done or the deadline passes: 0 or CF_ETIMEDOUT. */
int cf__future_wait(cf_future *f, int64_t deadline_ns);
/* While a thread spins in cf__future_wait(), it calls the function installed here (one for the
 * process: the process pool's, which reads its workers' result rings on the waiting thread, so
 * a hot round trip needs no other thread to run). It is called often: it must be cheap when
 * there is nothing to do, must not block, and must never run user code. Thread-safe. */
typedef void (*cf__wait_help_fn)(void);
void cf__wait_help_install(cf__wait_help_fn fn);
/* Cancels ignoring ops->cancel (the plain state transition). */
bool cf__future_cancel_plain(cf_future *f);
/* Completes `dest` with the final state of `src`, which must be done: cancelled, failed (its
 * code and a copy of its message) or finished with src's value. The value (and bytes) stay
 * owned by src, so `dest` must keep a reference on src for as long as it lives. Returns whether
 * dest changed (false if it was done already). Any thread. */
bool cf__future_copy_outcome(cf_future *dest, cf_future *src);

/* ---- tasks (task.c) ---- */

/* Runs fn(arg) (or, with `bytes`, the bytes function on arg/len) with the thread's task context
 * set, so cf_task_fail() and cf_task_set_result_dtor() work. */
void cf__task_invoke(cf__outcome *out, void *fn, bool bytes, const void *arg, size_t len);
/* cf__task_invoke() for a pointer task whose result destructor is `dtor` unless the task sets
 * another with cf_task_set_result_dtor(). */
void cf__task_invoke_dtor(cf__outcome *out, void *fn, void *arg, cf_dtor dtor);
/* Runs the task recorded in `f` unless it was cancelled (set_running_or_notify_cancel first),
 * and completes `f` through cf__future_finish_then(released, ctx). Returns whether it ran; if
 * not, `released` is not called. */
bool cf__task_run_then(cf_future *f, void (*released)(void *), void *ctx);
/* The same without a `released` call. */
void cf__task_run(cf_future *f);
/* Moves an outcome into a future (or frees it if the future was completed meanwhile). */
void cf__task_complete(cf_future *f, cf__outcome *o, bool bytes);
/* The same, unless that would run a done-callback of the user: then returns false and leaves
 * both the future and the outcome as they were (see cf__future_finish_quiet). */
bool cf__task_complete_quiet(cf_future *f, cf__outcome *o, bool bytes);
/* Frees what an outcome owns. */
void cf__outcome_discard(cf__outcome *o, bool bytes);
/* Installs `ctx` as the calling thread's current task context and returns the previous one.
 * For schedulers that interleave several running task functions on one thread (the event
 * loop's coroutines): each keeps its own context across its suspensions. */
void *cf__task_context_swap(void *ctx);

/* Task futures. A bytes task owns a private copy of its argument (a cf__bytes block, flagged
 * CF__F_TASK_BYTES), and task.c is the one owner of its life: built here, read by executors
 * with cf__task_arg_bytes(), released early with cf__task_arg_release() as soon as nobody needs
 * it (the function returned, or the content went to a worker process), or at the latest with
 * the future. */

/* Builds a task future (two references) for fn/arg; with `bytes`, copies arg/len. */
int cf__task_future_new(cf_future **out, void *fn, bool bytes, const void *arg, size_t len);
/* Gives a pointer task future built by cf__task_future_new() the result destructor `dtor`
 * (before it is handed to an executor). */
void cf__task_future_set_dtor(cf_future *f, cf_dtor dtor);
/* cf__task_future_new() for a pointer task, on the submit path: the future or NULL. */
static inline cf_future *cf__pointer_task_future_new(void *fn, void *arg)
{
    cf_future *f = cf__future_alloc(2);
    if (f) {
        f->fn = fn;
        f->arg = arg;
    }
    return f;
}
/* The argument copy of a bytes task, or NULL once released. */
const cf__bytes *cf__task_arg_bytes(const cf_future *f);
/* Releases the argument copy of a bytes task (nothing for other futures, or if released). */
void cf__task_arg_release(cf_future *f);

/* ---- executors (executor.c) ---- */

/* The handle behind a cf_executor: the implementation's state, a copy of its ops table (members
 * beyond the implementer's `size` zeroed) and the table's address as its identity. Allocated on a
 * cache line, so that a submit reads `impl`, `fork_gen` and `ops.submit` from one line. */
struct cf_executor {
    void *impl;
    uint32_t fork_gen;
    const cf_executor_ops *id;
    cf_executor_ops ops;
};

static inline bool cf__executor_forked(const cf_executor *ex)
{
    return ex->fork_gen != cf__fork_gen();
}
/* CF_EFORKED for an inherited executor, CF_ENOTSUP for a pointer task it cannot run, else 0. */
int cf__executor_check(const cf_executor *ex, bool bytes);
/* map()'s default chunk size for a pool of `workers`: a quarter of an even share of `n` per
 * worker, between 1 and 1024, so every worker gets several chunks and a slow one stalls little
 * of the work. */
size_t cf__chunksize_for(size_t n, unsigned workers);
/* Builds n task futures (two references each) in fs: args is an array of n pointers (NULL: a
 * NULL argument for every task) or, with `bytes`, of n cf_bytes. All or nothing: on error none
 * is left and fs is untouched. */
int cf__task_futures_new(cf_future **fs, void *fn, bool bytes, const void *args, size_t n);
/* Queues fs[0..n-1] (built by cf__task_futures_new) in chunks of at most `chunksize` (clamped to
 * the executor's largest). On error the chunks already queued are cancelled (calls that have
 * not started) and every future is released. */
int cf__executor_submit_all(cf_executor *ex, cf_future **fs, size_t n, size_t chunksize);

#endif
