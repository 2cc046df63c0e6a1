/* Stackful coroutines (internal; the event loop's tasks are built on them). Not installed.
 *
 * Asymmetric model: a coroutine is resumed by the thread that owns it (its scheduler, for
 * example a loop running cf_loop_run_forever) and yields back to that same resumer; coroutines
 * never switch directly to each other, and a coroutine never migrates between threads.
 *
 * Backends, chosen at build time: a hand-written switch for x86-64 and AArch64 (callee-saved
 * registers only), and a portable ucontext fallback. Stacks come from mmap with a guard page
 * below them, are committed lazily by the kernel, and are pooled for reuse. ASan, TSan and
 * valgrind are told about every stack switch, so the sanitizer and valgrind builds work.
 *
 * Thread-safety: a coroutine object is used by one thread only. Creation and freeing may happen
 * on any thread; the stack pool is thread-safe.
 *
 * docs/coroutines.md describes the mechanism, its costs and its rules. */
#ifndef CFUTURES_CORO_H
#define CFUTURES_CORO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cf__coro cf__coro;
typedef void (*cf__coro_fn)(void *arg);

/* Creates a suspended coroutine that will run fn(arg) on its own stack of at least
 * `stack_size` bytes (0: 64 KiB; at least 16 KiB; ASan builds multiply it by 4 and TSan builds
 * by 2, since instrumented frames are larger). The stack comes from the pool, is committed
 * lazily (a shallow coroutine costs about one page of memory) and has an inaccessible guard page
 * below it. The coroutine's control block lives at the top of that stack. Returns 0 and sets
 * *out, or CF_EINVAL (out or fn NULL, stack_size above 1 GiB, or 256 MiB on 32-bit systems),
 * CF_ENOMEM (no memory for a new stack arena). Any thread. */
int cf__coro_new(cf__coro **out, cf__coro_fn fn, void *arg, size_t stack_size);

/* Whether cf__coro_new() accepts `stack_size` (at most 1 GiB, 256 MiB on 32-bit systems). */
bool cf__coro_stack_size_valid(size_t stack_size);

/* Runs `co` from where it stopped until it yields or its function returns. Returns true if the
 * function has returned (the coroutine is finished and must not be resumed again). Coroutines
 * may resume other coroutines (nesting): the resumer is suspended until `co` yields or ends.
 * Resuming a running coroutine (itself or one of its resumers) or a finished one is a
 * programming error and aborts with a message. A coroutine runs on the thread that first
 * resumed it and must never be resumed from another thread after that. */
bool cf__coro_resume(cf__coro *co);

/* Inside a coroutine: suspends it and returns to its resumer. Outside any coroutine: no-op. */
void cf__coro_yield(void);

/* The coroutine running on this thread, or NULL. */
cf__coro *cf__coro_current(void);

/* Frees a finished or suspended coroutine (a suspended one is discarded without unwinding its
 * stack: whatever it owned on the stack is lost). Its stack returns to the pool. NULL is
 * ignored. Freeing a running coroutine (the current one or one of its resumers) aborts with a
 * message. Any thread, once the coroutine is not running. */
void cf__coro_free(cf__coro *co);

/* The usable stack of `co`: [*lo, *lo + *size), growing down from the top, where its control
 * block starts. For stack-usage diagnostics and tests. */
void cf__coro_stack_bounds(const cf__coro *co, void **lo, size_t *size);

/* The backend compiled in: "x86_64", "aarch64" or "ucontext". */
const char *cf__coro_backend(void);

/* How a stack's guard page is made inaccessible, best first. MADVISE (Linux >= 6.13
 * MADV_GUARD_INSTALL) costs no mapping; MPROTECT splits the arena's mapping (two VMAs per stack,
 * so it is used only within a quarter of vm.max_map_count); CANARY has no guard page but a
 * word at the stack bottom that is checked whenever the coroutine yields, ends or is freed
 * (an overwritten canary aborts with a message). */
typedef enum cf__coro_guard {
    CF__CORO_GUARD_MADVISE,
    CF__CORO_GUARD_MPROTECT,
    CF__CORO_GUARD_CANARY,
} cf__coro_guard;

/* A snapshot of the stack pool, process-wide. */
typedef struct cf__coro_stats {
    size_t arenas;        /* mappings holding stacks */
    size_t mapped_bytes;  /* their address space */
    size_t in_use;        /* stacks of live coroutines */
    size_t hot;           /* free stacks kept resident for fast reuse */
    size_t pending;       /* free stacks beyond the hot set, resident until trimmed */
    size_t cold;          /* free stacks whose memory was given back */
    cf__coro_guard guard; /* the best guard that new arenas try */
} cf__coro_stats;

void cf__coro_stats_get(cf__coro_stats *out);

/* Gives back the pages of every pending free stack now (an event loop calls it when it goes
 * idle). Cheap when there is nothing to trim. Any thread. */
void cf__coro_trim(void);

/* Makes arenas mapped from now on try `guard` first (tests use it to exercise the fallbacks).
 * A mechanism the kernel lacks still falls back to the next one. Returns the previous value. */
cf__coro_guard cf__coro_guard_set(cf__coro_guard guard);

#endif
