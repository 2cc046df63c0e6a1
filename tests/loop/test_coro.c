/* Stackful coroutines (lib/loop/coro.c), white-box: switching, nesting, what survives a switch,
 * stacks (size, guard page, pool, memory given back), many live coroutines, threads. Built
 * once per context-switch backend (test_coro: the configured one; test_coro_ucontext: the
 * ucontext fallback compiled in directly). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cf_test.h"
#include "loop/coro.h"
#include "core/internal.h"

#ifdef CF_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#ifdef CF_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/* How many coroutines test_many_coroutines_alive parks at once: the event loop's target of
 * 100,000 (about 400 MiB resident), fewer where each costs much more. */
static int many_count(void)
{
#if defined(CF_TEST_TSAN)
    return 1000; /* every coroutine takes a TSan fiber, from a table of 8128 threads */
#elif defined(CF_TEST_ASAN)
    return 10000; /* 256 KiB stacks plus shadow memory */
#else
    return RUNNING_ON_VALGRIND ? 10000 : 100000;
#endif
}

/* ---- helpers ---- */

static cf__coro *coro(cf__coro_fn fn, void *arg, size_t stack_size)
{
    cf__coro *co = NULL;
    ck_assert_int_eq(cf__coro_new(&co, fn, arg, stack_size), 0);
    ck_assert_ptr_nonnull(co);
    return co;
}

/* Runs fn(arg) in a forked child with default signal dispositions and no core file, and
 * returns the child's wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        /* Sanitizers install SIGSEGV handlers of their own; the test wants the plain death. */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        signal(SIGABRT, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void assert_killed_by(int status, int sig)
{
    ck_assert_msg(WIFSIGNALED(status), "child exited with status %d instead of dying",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ck_assert_int_eq(WTERMSIG(status), sig);
}

static size_t vma_count(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* ---- switching ---- */

START_TEST(test_backend_name)
{
#if defined(CF_CORO_UCONTEXT)
    ck_assert_str_eq(cf__coro_backend(), "ucontext");
#elif defined(__x86_64__)
    ck_assert_str_eq(cf__coro_backend(), "x86_64");
#elif defined(__aarch64__)
    ck_assert_str_eq(cf__coro_backend(), "aarch64");
#endif
}
END_TEST

static void noop(void *arg)
{
    (void)arg;
}

START_TEST(test_new_rejects_bad_arguments)
{
    cf__coro *co = (cf__coro *)&co;
    ck_assert_int_eq(cf__coro_new(NULL, noop, NULL, 0), CF_EINVAL);
    ck_assert_int_eq(cf__coro_new(&co, NULL, NULL, 0), CF_EINVAL);
    ck_assert_ptr_null(co);
    ck_assert_int_eq(cf__coro_new(&co, noop, NULL, ((size_t)1 << 30) + 1), CF_EINVAL);
    ck_assert_ptr_null(co);
    ck_assert_int_eq(cf__coro_new(&co, noop, NULL, SIZE_MAX), CF_EINVAL);
    cf__coro_free(NULL);
}
END_TEST

typedef struct pingpong {
    int value;
    int rounds;
} pingpong;

/* Doubles whatever the resumer left in `value`, `rounds` times. */
static void doubler(void *arg)
{
    pingpong *p = arg;
    for (int i = 0; i < p->rounds; i++) {
        p->value *= 2;
        cf__coro_yield();
    }
    p->value = -1;
}

START_TEST(test_ping_pong_through_shared_memory)
{
    pingpong p = {.rounds = 1000};
    cf__coro *co = coro(doubler, &p, 0);
    for (int i = 0; i < p.rounds; i++) {
        p.value = i;
        ck_assert(!cf__coro_resume(co));
        ck_assert_int_eq(p.value, 2 * i);
    }
    ck_assert(cf__coro_resume(co));
    ck_assert_int_eq(p.value, -1);
    cf__coro_free(co);
}
END_TEST

START_TEST(test_resume_returns_true_when_finished)
{
    cf__coro *co = coro(noop, NULL, 0);
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);

    pingpong p = {.rounds = 3};
    co = coro(doubler, &p, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert(!cf__coro_resume(co));
    ck_assert(!cf__coro_resume(co));
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
}
END_TEST

typedef struct logger {
    char *log;
    char name;
    int steps;
} logger;

static void log_steps(void *arg)
{
    logger *l = arg;
    for (int i = 0; i < l->steps; i++) {
        strncat(l->log, &l->name, 1);
        cf__coro_yield();
    }
}

START_TEST(test_round_robin_interleaving)
{
    char log[64] = "";
    logger ls[3] = {{log, 'A', 3}, {log, 'B', 1}, {log, 'C', 2}};
    cf__coro *cos[3];
    for (int i = 0; i < 3; i++)
        cos[i] = coro(log_steps, &ls[i], 0);
    int live = 3;
    while (live) {
        for (int i = 0; i < 3; i++) {
            if (cos[i] && cf__coro_resume(cos[i])) {
                cf__coro_free(cos[i]);
                cos[i] = NULL;
                live--;
            }
        }
    }
    ck_assert_str_eq(log, "ABCACA");
}
END_TEST

typedef struct nest {
    char log[32];
    cf__coro *outer, *inner;
    cf__coro *seen[4];
    bool inner_done;
} nest;

static void nest_inner(void *arg)
{
    nest *n = arg;
    n->seen[1] = cf__coro_current();
    strcat(n->log, "b");
    cf__coro_yield(); /* back to outer, not to the thread */
    n->seen[3] = cf__coro_current();
    strcat(n->log, "d");
}

static void nest_outer(void *arg)
{
    nest *n = arg;
    n->seen[0] = cf__coro_current();
    strcat(n->log, "a");
    ck_assert(!cf__coro_resume(n->inner));
    n->seen[2] = cf__coro_current();
    strcat(n->log, "c");
    cf__coro_yield(); /* back to the thread */
    n->inner_done = cf__coro_resume(n->inner);
    strcat(n->log, "e");
}

START_TEST(test_nested_resume_yields_to_resumer)
{
    nest n = {.log = ""};
    n.outer = coro(nest_outer, &n, 0);
    n.inner = coro(nest_inner, &n, 0);
    ck_assert(!cf__coro_resume(n.outer));
    ck_assert_str_eq(n.log, "abc");
    ck_assert_ptr_null(cf__coro_current());
    ck_assert(cf__coro_resume(n.outer));
    ck_assert_str_eq(n.log, "abcde");
    ck_assert(n.inner_done);
    ck_assert_ptr_eq(n.seen[0], n.outer);
    ck_assert_ptr_eq(n.seen[1], n.inner);
    ck_assert_ptr_eq(n.seen[2], n.outer);
    ck_assert_ptr_eq(n.seen[3], n.inner);
    cf__coro_free(n.inner);
    cf__coro_free(n.outer);
}
END_TEST

START_TEST(test_yield_outside_coroutine_is_noop)
{
    ck_assert_ptr_null(cf__coro_current());
    cf__coro_yield();
    cf__coro_yield();
    ck_assert_ptr_null(cf__coro_current());
}
END_TEST

static void record_current(void *arg)
{
    *(cf__coro **)arg = cf__coro_current();
    cf__coro_yield();
    *(cf__coro **)arg = cf__coro_current();
}

START_TEST(test_current_inside_and_outside)
{
    cf__coro *seen = NULL;
    cf__coro *co = coro(record_current, &seen, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert_ptr_eq(seen, co);
    ck_assert_ptr_null(cf__coro_current());
    seen = NULL;
    ck_assert(cf__coro_resume(co));
    ck_assert_ptr_eq(seen, co);
    ck_assert_ptr_null(cf__coro_current());
    cf__coro_free(co);
}
END_TEST

static void run_child_to_end(void *arg)
{
    int *sum = arg;
    pingpong p = {.value = 21, .rounds = 1};
    cf__coro *co = coro(doubler, &p, 0);
    ck_assert(!cf__coro_resume(co));
    *sum += p.value;
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
    cf__coro_yield();
    *sum += 1;
}

START_TEST(test_coroutine_creates_runs_and_frees_another)
{
    int sum = 0;
    cf__coro *co = coro(run_child_to_end, &sum, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert_int_eq(sum, 42);
    ck_assert(cf__coro_resume(co));
    ck_assert_int_eq(sum, 43);
    cf__coro_free(co);
}
END_TEST

typedef struct owner {
    bool reached_end;
} owner;

static void park_forever(void *arg)
{
    owner *o = arg;
    char buf[512];
    memset(buf, 'x', sizeof buf);
    cf__coro_yield();
    o->reached_end = buf[0] == 'x';
}

START_TEST(test_free_suspended_and_unstarted)
{
    owner o = {false};
    cf__coro *co = coro(park_forever, &o, 0);
    ck_assert(!cf__coro_resume(co));
    cf__coro_free(co);
    ck_assert(!o.reached_end);

    co = coro(park_forever, &o, 0);
    cf__coro_free(co);
    ck_assert(!o.reached_end);

    /* The pool hands out the freed stack again and it works normally. */
    co = coro(park_forever, &o, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert(cf__coro_resume(co));
    ck_assert(o.reached_end);
    cf__coro_free(co);
}
END_TEST

/* ---- what survives a switch ---- */

typedef struct regs {
    unsigned long seed;
    void (*volatile pause)(void);
    unsigned long isum;
    double dsum;
} regs;

static void no_pause(void) {}

/* Keeps many integers and doubles live across every pause, more than there are callee-saved
 * registers, so both the registers and the stack slots they spill to must survive. */
static void regs_work(void *arg)
{
    regs *r = arg;
    unsigned long a0 = r->seed, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5;
    unsigned long a6 = a0 + 6, a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11;
    double d0 = (double)r->seed / 3, d1 = d0 + 0.5, d2 = d0 + 1.25, d3 = d0 + 2.125;
    double d4 = d0 * 1.5, d5 = d0 * 2.5, d6 = d0 * 3.5, d7 = d0 * 4.5;
    for (int i = 0; i < 20; i++) {
        a0 = a0 * 3 + a11;
        a1 ^= a0 >> 3;
        a2 += a1 * 5;
        a3 -= a2;
        a4 = a4 * 7 + a3;
        a5 ^= a4;
        a6 += a5 >> 1;
        a7 = a7 * 11 - a6;
        a8 ^= a7 << 2;
        a9 += a8;
        a10 = a10 * 13 + a9;
        a11 ^= a10 >> 5;
        d0 = d0 * 1.0001 + d7;
        d1 += d0 / 7;
        d2 = d2 * 0.999 + d1;
        d3 -= d2 / 11;
        d4 = d4 * 1.01 + d3;
        d5 += d4 / 13;
        d6 = d6 * 0.99 + d5;
        d7 -= d6 / 17;
        r->pause();
    }
    r->isum = a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7 ^ a8 ^ a9 ^ a10 ^ a11;
    r->dsum = d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7;
}

/* Overwrites every callee-saved register with garbage (the compiler saves and restores its own
 * values around this), so a switch that failed to restore one would hand garbage back. */
static void trash_callee_saved(void)
{
#if defined(__x86_64__)
    __asm__ volatile("movq $-1, %%rbx\n\t"
                     "movq $-1, %%r12\n\t"
                     "movq $-1, %%r13\n\t"
                     "movq $-1, %%r14\n\t"
                     "movq $-1, %%r15\n\t"
                     "pcmpeqd %%xmm0, %%xmm0\n\t"
                     "pcmpeqd %%xmm15, %%xmm15\n\t" ::
                         : "rbx", "r12", "r13", "r14", "r15", "xmm0", "xmm15", "memory");
#elif defined(__aarch64__)
    __asm__ volatile("mov x19, #-1\n\tmov x20, #-1\n\tmov x21, #-1\n\tmov x22, #-1\n\t"
                     "mov x23, #-1\n\tmov x24, #-1\n\tmov x25, #-1\n\tmov x26, #-1\n\t"
                     "mov x27, #-1\n\tmov x28, #-1\n\t"
                     "fmov d8, #-1.0\n\tfmov d9, #-1.0\n\tfmov d10, #-1.0\n\tfmov d11, #-1.0\n\t"
                     "fmov d12, #-1.0\n\tfmov d13, #-1.0\n\tfmov d14, #-1.0\n\tfmov d15, #-1.0" ::
                         : "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
                           "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15", "memory");
#endif
}

START_TEST(test_registers_and_fp_preserved)
{
    regs expect = {.seed = 12345, .pause = no_pause};
    regs_work(&expect);

    regs a = {.seed = 12345, .pause = cf__coro_yield};
    regs b = {.seed = 999, .pause = cf__coro_yield};
    cf__coro *ca = coro(regs_work, &a, 0);
    cf__coro *cb = coro(regs_work, &b, 0);
    bool done_a = false, done_b = false;
    while (!done_a || !done_b) {
        if (!done_a)
            done_a = cf__coro_resume(ca);
        trash_callee_saved();
        if (!done_b)
            done_b = cf__coro_resume(cb);
        trash_callee_saved();
    }
    ck_assert_uint_eq(a.isum, expect.isum);
    ck_assert(a.dsum == expect.dsum);
    regs expect_b = {.seed = 999, .pause = no_pause};
    regs_work(&expect_b);
    ck_assert_uint_eq(b.isum, expect_b.isum);
    ck_assert(b.dsum == expect_b.dsum);
    cf__coro_free(ca);
    cf__coro_free(cb);
}
END_TEST

static _Thread_local int tls_value;

typedef struct tls_probe {
    int *tls_addr;
    int tls_seen;
    int errno_seen;
} tls_probe;

static void probe_tls(void *arg)
{
    tls_probe *p = arg;
    p->tls_addr = &tls_value;
    errno = 1234;
    tls_value = 7;
    cf__coro_yield();
    p->errno_seen = errno;
    p->tls_seen = tls_value;
}

/* errno and thread-locals belong to the thread: a coroutine shares them with its resumer. */
START_TEST(test_errno_and_tls_are_the_threads)
{
    tls_probe p = {0};
    cf__coro *co = coro(probe_tls, &p, 0);
    tls_value = 1;
    errno = 0;
    ck_assert(!cf__coro_resume(co));
    ck_assert_int_eq(errno, 1234);
    ck_assert_int_eq(tls_value, 7);
    ck_assert_ptr_eq(p.tls_addr, &tls_value);
    errno = 5678;
    tls_value = 9;
    ck_assert(cf__coro_resume(co));
    ck_assert_int_eq(p.errno_seen, 5678);
    ck_assert_int_eq(p.tls_seen, 9);
    cf__coro_free(co);
}
END_TEST

static void hold_block(void *arg)
{
    char *block = malloc(100);
    ck_assert_ptr_nonnull(block);
    strcpy(block, "only a parked stack points here");
    *(bool *)arg = true;
    cf__coro_yield();
    free(block);
}

/* Memory that only a parked coroutine's stack points to is reachable, not a leak. */
START_TEST(test_parked_stack_is_a_leak_check_root)
{
    bool started = false;
    cf__coro *co = coro(hold_block, &started, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert(started);
#ifdef CF_TEST_ASAN
    ck_assert_int_eq(__lsan_do_recoverable_leak_check(), 0);
#endif
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
}
END_TEST

/* ---- stacks ---- */

/* Each level keeps a 256-byte frame live; small frames cannot jump over a guard page. */
static unsigned recurse(unsigned depth)
{
    volatile unsigned char frame[256];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = (unsigned char)(depth + i);
    unsigned below = depth ? recurse(depth - 1) : 0;
    return below + frame[depth % sizeof frame];
}

typedef struct deep {
    unsigned depth;
    unsigned result;
} deep;

static void run_recursion(void *arg)
{
    deep *d = arg;
    d->result = recurse(d->depth);
    cf__coro_yield();
}

static unsigned recurse_expect(unsigned depth)
{
    unsigned sum = 0;
    for (unsigned d = 0; d <= depth; d++)
        sum += (unsigned char)(d + d % 256);
    return sum;
}

START_TEST(test_deep_recursion_within_stack_size)
{
    /* About 300 bytes a level: 150 levels use ~45 KiB of the default 64 KiB. */
    deep d = {.depth = 150};
    cf__coro *co = coro(run_recursion, &d, 0);
    ck_assert(!cf__coro_resume(co));
    ck_assert_uint_eq(d.result, recurse_expect(d.depth));
    cf__coro_free(co);

    /* A larger stack takes proportionally deeper recursion (~750 KiB of 1 MiB). */
    d = (deep){.depth = 2500};
    co = coro(run_recursion, &d, (size_t)1 << 20);
    void *lo;
    size_t size;
    cf__coro_stack_bounds(co, &lo, &size);
    ck_assert_uint_ge(size, (size_t)1 << 20);
    ck_assert(!cf__coro_resume(co));
    ck_assert_uint_eq(d.result, recurse_expect(d.depth));
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
}
END_TEST

START_TEST(test_stack_size_rounding)
{
    size_t asked[] = {0, 1, 4096, 16384, 65536, 100000, (size_t)3 << 20};
    for (size_t i = 0; i < sizeof asked / sizeof asked[0]; i++) {
        cf__coro *co = coro(noop, NULL, asked[i]);
        void *lo;
        size_t size;
        cf__coro_stack_bounds(co, &lo, &size);
        size_t want = asked[i] ? asked[i] : 65536;
        ck_assert_uint_ge(size, want < 16384 ? 16384 : want);
        ck_assert_uint_eq((uintptr_t)lo % (uintptr_t)sysconf(_SC_PAGESIZE), 0);
        ck_assert(cf__coro_resume(co));
        cf__coro_free(co);
    }
}
END_TEST

START_TEST(test_freed_stack_is_reused)
{
    cf__coro *co = coro(noop, NULL, 0);
    ck_assert(cf__coro_resume(co));
    void *lo1;
    size_t size1;
    cf__coro_stack_bounds(co, &lo1, &size1);
    cf__coro_stats before;
    cf__coro_stats_get(&before);
    cf__coro_free(co);
    cf__coro_stats after;
    cf__coro_stats_get(&after);
    ck_assert_uint_eq(after.in_use + 1, before.in_use);
    ck_assert_uint_eq(after.hot + after.cold, before.hot + before.cold + 1);

    co = coro(noop, NULL, 0);
    void *lo2;
    size_t size2;
    cf__coro_stack_bounds(co, &lo2, &size2);
    ck_assert_ptr_eq(lo2, lo1);
    ck_assert_uint_eq(size2, size1);
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
}
END_TEST

/* Touches `bytes` of stack, then parks. */
static void touch_and_park(void *arg)
{
    size_t bytes = *(size_t *)arg;
    volatile char *buf = __builtin_alloca(bytes);
    for (size_t i = 0; i < bytes; i += 512)
        buf[i] = 1;
    cf__coro_yield();
}

static size_t resident_pages(void *lo, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = size / page;
    unsigned char *vec = malloc(n);
    ck_assert_ptr_nonnull(vec);
    size_t resident = 0;
    if (mincore(lo, n * page, vec) != 0) {
        ck_assert_int_eq(errno, ENOMEM); /* unmapped */
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        resident += vec[i] & 1;
    free(vec);
    return resident;
}

/* Beyond the small hot set, freed stacks give their memory back, and whole arenas of free
 * stacks are unmapped. A stack size of its own keeps other tests' stacks out of the way. */
START_TEST(test_pool_gives_memory_back)
{
    enum { N = 100, COLD = 8 };
    size_t stack_size = 200 << 10, touch = 32 << 10;
    cf__coro *cos[N];
    void *lo[N];
    size_t size[N];
    for (int i = 0; i < N; i++) {
        cos[i] = coro(touch_and_park, &touch, stack_size);
        ck_assert(!cf__coro_resume(cos[i]));
        cf__coro_stack_bounds(cos[i], &lo[i], &size[i]);
    }
    ck_assert_uint_ge(resident_pages(lo[N - 1], size[N - 1]), touch / 4096);
    cf__coro_stats peak;
    cf__coro_stats_get(&peak);
    for (int i = 0; i < N; i++)
        cf__coro_free(cos[i]);
    cf__coro_stats after;
    cf__coro_stats_get(&after);
    ck_assert_uint_lt(after.arenas, peak.arenas);
    ck_assert_uint_lt(after.mapped_bytes, peak.mapped_bytes);
    /* Beyond the hot set, freed stacks were trimmed in batches while they were freed: a batch
     * at most is still waiting. */
    ck_assert_uint_le(after.pending, 32);
    ck_assert_uint_gt(after.cold, 0);
    /* An idle loop trims the rest: the stacks freed last lose their pages (or their whole arena
     * is gone). */
    cf__coro_trim();
    cf__coro_stats_get(&after);
    ck_assert_uint_eq(after.pending, 0);
    for (int i = N - COLD; i < N; i++)
        ck_assert_uint_eq(resident_pages(lo[i], size[i]), 0);
}
END_TEST

/* Whether the kernel refuses to write into p (a pipe read into it fails with EFAULT). */
static bool write_refused(void *p)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    bool refused = read(fds[0], p, 1) < 0 && errno == EFAULT;
    close(fds[0]);
    close(fds[1]);
    return refused;
}

/* Freed stacks are trimmed by runs of adjacent slots, one madvise over the guard pages between
 * them: each guard must survive it. Checked on every stack that comes back cold (its guard page
 * refuses a write), then by a stack overflow into one of them, which must still kill. In a
 * child: a size class of its own, and the death. */
static void overflow_stack(void *arg);

static void overflow_into_trimmed_stack(void *arg)
{
    (void)arg;
    enum { N = 150 };
    size_t stack_size = 36 << 10, touch = 16 << 10;
    cf__coro *cos[N];
    for (int i = 0; i < N; i++) {
        cos[i] = coro(touch_and_park, &touch, stack_size);
        ck_assert(!cf__coro_resume(cos[i]));
    }
    for (int i = 0; i < N; i++)
        cf__coro_free(cos[i]);
    cf__coro_trim();
    cf__coro_stats stats;
    cf__coro_stats_get(&stats);
    if (stats.guard == CF__CORO_GUARD_CANARY)
        _exit(3);
    /* Take them all back: the hot ones keep pages from their last use, the cold ones only have
     * the control block page cf__coro_new wrote. */
    int cold = 0;
    for (int i = 0; i < N; i++) {
        cos[i] = coro(overflow_stack, NULL, stack_size);
        void *lo;
        size_t size;
        cf__coro_stack_bounds(cos[i], &lo, &size);
        if (resident_pages(lo, size) <= 1) {
            cold++;
            ck_assert(write_refused((char *)lo - 1));
        }
    }
    ck_assert_int_gt(cold, N / 2);
    cf__coro_resume(cos[N - 1]); /* a cold one: the hot set holds far fewer than N / 2 */
}

START_TEST(test_trimmed_stacks_keep_their_guard_pages)
{
    int status = in_child(overflow_into_trimmed_stack, NULL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
        return; /* no guard pages here (canary mode) */
    assert_killed_by(status, SIGSEGV);
}
END_TEST

/* Stacks larger than the hot set's budget are never kept resident once freed. */
START_TEST(test_large_stack_memory_given_back_at_free)
{
    size_t touch = 1 << 20;
    cf__coro *co = coro(touch_and_park, &touch, 8 << 20);
    ck_assert(!cf__coro_resume(co));
    void *lo;
    size_t size;
    cf__coro_stack_bounds(co, &lo, &size);
    ck_assert_uint_ge(resident_pages(lo, size), touch / 4096);
    cf__coro_free(co);
    ck_assert_uint_eq(resident_pages(lo, size), 0);
}
END_TEST

static void wait_then_finish(void *arg)
{
    int *count = arg;
    (*count)++;
    cf__coro_yield();
    (*count)++;
}

START_TEST(test_many_coroutines_alive)
{
    const int many = many_count();
    cf__coro **cos = malloc((size_t)many * sizeof *cos);
    int *counts = calloc((size_t)many, sizeof *counts);
    ck_assert(cos && counts);
    size_t vmas_before = vma_count();
    for (int i = 0; i < many; i++) {
        cos[i] = coro(wait_then_finish, &counts[i], 0);
        ck_assert(!cf__coro_resume(cos[i]));
    }
    cf__coro_stats stats;
    cf__coro_stats_get(&stats);
    ck_assert_uint_ge(stats.in_use, many);
    /* Arenas keep the mapping count far below one per stack (with MADV_GUARD_INSTALL; the
     * mprotect fallback splits arenas, two VMAs per guarded stack). The sanitizers map memory
     * of their own per coroutine (ASan fake stacks, TSan fiber state). */
#if !defined(CF_TEST_ASAN) && !defined(CF_TEST_TSAN)
    if (stats.guard == CF__CORO_GUARD_MADVISE)
        ck_assert_uint_lt(vma_count(), vmas_before + many / 8);
#endif
    (void)vmas_before;
    for (int i = many - 1; i >= 0; i--) {
        ck_assert_int_eq(counts[i], 1);
        ck_assert(cf__coro_resume(cos[i]));
        ck_assert_int_eq(counts[i], 2);
        cf__coro_free(cos[i]);
    }
    free(cos);
    free(counts);
}
END_TEST

static void overflow_stack(void *arg)
{
    (void)arg;
    recurse(1u << 30);
}

static void overflow_in_coroutine(void *arg)
{
    cf__coro *co = coro(overflow_stack, NULL, (size_t)(uintptr_t)arg);
    cf__coro_resume(co);
}

static void write_below_stack(void *arg)
{
    (void)arg;
    void *lo;
    size_t size;
    cf__coro_stack_bounds(cf__coro_current(), &lo, &size);
    ((volatile char *)lo)[0] = 1; /* the lowest stack byte is fine */
    ((volatile char *)lo)[-1] = 1;
}

static void write_below_in_coroutine(void *arg)
{
    cf__coro *co = coro(write_below_stack, NULL, (size_t)(uintptr_t)arg);
    cf__coro_resume(co);
}

START_TEST(test_guard_page_kills_with_sigsegv)
{
    assert_killed_by(in_child(overflow_in_coroutine, NULL), SIGSEGV);
    assert_killed_by(in_child(write_below_in_coroutine, NULL), SIGSEGV);
}
END_TEST

/* The mprotect fallback (kernels before 6.13) guards as well. A stack size of its own makes
 * the child map a fresh arena. */
static void mprotect_then(void *arg)
{
    cf__coro_guard_set(CF__CORO_GUARD_MPROTECT);
    cf__coro_stats stats;
    cf__coro_stats_get(&stats);
    if (stats.guard != CF__CORO_GUARD_MPROTECT)
        _exit(3);
    ((void (*)(void *))arg)((void *)(uintptr_t)(48 << 10));
}

START_TEST(test_mprotect_guard_kills_with_sigsegv)
{
    assert_killed_by(in_child(mprotect_then, (void *)overflow_in_coroutine), SIGSEGV);
    assert_killed_by(in_child(mprotect_then, (void *)write_below_in_coroutine), SIGSEGV);
}
END_TEST

static void smash_canary(void *arg)
{
    (void)arg;
    void *lo;
    size_t size;
    cf__coro_stack_bounds(cf__coro_current(), &lo, &size);
    memset(lo, 0, 8);
    cf__coro_yield();
}

static void canary_child(void *arg)
{
    (void)arg;
    cf__coro_guard_set(CF__CORO_GUARD_CANARY);
    cf__coro *co = coro(smash_canary, NULL, 40 << 10);
    cf__coro_resume(co); /* the yield finds the canary gone */
    _exit(4);
}

START_TEST(test_canary_fallback)
{
    /* In canary mode an honest coroutine runs normally. */
    cf__coro_guard old = cf__coro_guard_set(CF__CORO_GUARD_CANARY);
    pingpong p = {.value = 1, .rounds = 5};
    cf__coro *co = coro(doubler, &p, 36 << 10);
    while (!cf__coro_resume(co))
        ;
    cf__coro_free(co);
    cf__coro_guard_set(old);
    ck_assert_int_eq(p.value, -1);

    assert_killed_by(in_child(canary_child, NULL), SIGABRT);
}
END_TEST

/* ---- misuse aborts with a message instead of corrupting stacks ---- */

static void resume_self(void *arg)
{
    (void)arg;
    cf__coro_resume(cf__coro_current());
}

static void child_resume_self(void *arg)
{
    (void)arg;
    cf__coro_resume(coro(resume_self, NULL, 0));
}

static void child_resume_finished(void *arg)
{
    (void)arg;
    cf__coro *co = coro(noop, NULL, 0);
    cf__coro_resume(co);
    cf__coro_resume(co);
}

static void free_self(void *arg)
{
    (void)arg;
    cf__coro_free(cf__coro_current());
}

static void child_free_running(void *arg)
{
    (void)arg;
    cf__coro_resume(coro(free_self, NULL, 0));
}

START_TEST(test_misuse_aborts)
{
    assert_killed_by(in_child(child_resume_self, NULL), SIGABRT);
    assert_killed_by(in_child(child_resume_finished, NULL), SIGABRT);
    assert_killed_by(in_child(child_free_running, NULL), SIGABRT);
}
END_TEST

/* ---- threads ---- */

typedef struct churn {
    pthread_barrier_t *start;
    long sum;
} churn;

static void add_twice(void *arg)
{
    long *sum = arg;
    *sum += 1;
    cf__coro_yield();
    *sum += 2;
}

static void *churn_thread(void *arg)
{
    churn *c = arg;
    pthread_barrier_wait(c->start);
    for (int i = 0; i < 2000; i++) {
        cf__coro *co = NULL;
        if (cf__coro_new(&co, add_twice, &c->sum, i % 2 ? 0 : 24 << 10) != 0)
            return NULL;
        cf__coro_resume(co);
        cf__coro_resume(co);
        cf__coro_free(co);
    }
    return NULL;
}

START_TEST(test_threads_share_the_pool)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    churn a = {&start, 0}, b = {&start, 0};
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, churn_thread, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, churn_thread, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&start);
    ck_assert_int_eq(a.sum, 2000 * 3);
    ck_assert_int_eq(b.sum, 2000 * 3);
}
END_TEST

typedef struct handoff {
    cf__coro *co;
    long sum;
} handoff;

static void *run_elsewhere(void *arg)
{
    handoff *h = arg;
    cf__coro_resume(h->co);
    return NULL;
}

static void *free_elsewhere(void *arg)
{
    cf__coro_free(((handoff *)arg)->co);
    return NULL;
}

/* Created on one thread, run entirely on a second, freed on a third (joins order them). */
START_TEST(test_create_run_free_on_different_threads)
{
    handoff h = {.sum = 0};
    h.co = coro(add_twice, &h.sum, 0);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, run_elsewhere, &h), 0);
    pthread_join(t, NULL);
    ck_assert_int_eq(h.sum, 1);
    ck_assert_ptr_null(cf__coro_current());
    ck_assert_int_eq(pthread_create(&t, NULL, free_elsewhere, &h), 0);
    pthread_join(t, NULL);
}
END_TEST

/* ---- failures ---- */

START_TEST(test_allocation_failures)
{
#ifdef CF_FAULT_INJECTION
    /* Sizes of their own: a new arena (mmap fails), then a new size class (allocation fails). */
    cf__coro *co = NULL;
    cf__fault_arm(CF__FAULT_MMAP, 1);
    ck_assert_int_eq(cf__coro_new(&co, noop, NULL, 520 << 10), CF_ENOMEM);
    ck_assert_ptr_null(co);
    cf__fault_arm(CF__FAULT_ALLOC, 1);
    ck_assert_int_eq(cf__coro_new(&co, noop, NULL, 900 << 10), CF_ENOMEM);
    ck_assert_ptr_null(co);
    cf__fault_arm(0, 0);
    co = coro(noop, NULL, 520 << 10);
    ck_assert(cf__coro_resume(co));
    cf__coro_free(co);
#endif
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("coro");
    TCase *tc = cf_test_tcase("switch");
    tcase_add_test(tc, test_backend_name);
    tcase_add_test(tc, test_new_rejects_bad_arguments);
    tcase_add_test(tc, test_ping_pong_through_shared_memory);
    tcase_add_test(tc, test_resume_returns_true_when_finished);
    tcase_add_test(tc, test_round_robin_interleaving);
    tcase_add_test(tc, test_nested_resume_yields_to_resumer);
    tcase_add_test(tc, test_yield_outside_coroutine_is_noop);
    tcase_add_test(tc, test_current_inside_and_outside);
    tcase_add_test(tc, test_coroutine_creates_runs_and_frees_another);
    tcase_add_test(tc, test_free_suspended_and_unstarted);
    tcase_add_test(tc, test_registers_and_fp_preserved);
    tcase_add_test(tc, test_errno_and_tls_are_the_threads);
    tcase_add_test(tc, test_parked_stack_is_a_leak_check_root);
    tcase_add_test(tc, test_misuse_aborts);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("stacks");
    tcase_add_test(tc, test_deep_recursion_within_stack_size);
    tcase_add_test(tc, test_stack_size_rounding);
    tcase_add_test(tc, test_freed_stack_is_reused);
    tcase_add_test(tc, test_pool_gives_memory_back);
    tcase_add_test(tc, test_trimmed_stacks_keep_their_guard_pages);
    tcase_add_test(tc, test_large_stack_memory_given_back_at_free);
    tcase_add_test(tc, test_many_coroutines_alive);
    tcase_add_test(tc, test_guard_page_kills_with_sigsegv);
    tcase_add_test(tc, test_mprotect_guard_kills_with_sigsegv);
    tcase_add_test(tc, test_canary_fallback);
    tcase_add_test(tc, test_allocation_failures);
    suite_add_tcase(s, tc);

    tc = cf_test_tcase("threads");
    tcase_add_test(tc, test_threads_share_the_pool);
    tcase_add_test(tc, test_create_run_free_on_different_threads);
    suite_add_tcase(s, tc);
    return s;
}

CF_TEST_MAIN(suite)
