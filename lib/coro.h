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
 * on any thread; the stack pool is thread-safe. */
#ifndef CFUTURES_CORO_H
#define CFUTURES_CORO_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cf__coro cf__coro;
typedef void (*cf__coro_fn)(void *arg);

/* Creates a suspended coroutine that will run fn(arg) on its own stack of at least
 * `stack_size` bytes (0: 64 KiB; sanitizer builds multiply it). Returns 0, CF_EINVAL,
 * CF_ENOMEM (stack mmap or allocation failed). */
int cf__coro_new(cf__coro **out, cf__coro_fn fn, void *arg, size_t stack_size);

/* Runs `co` from where it stopped until it yields or its function returns. Returns true if the
 * function has returned (the coroutine is finished and must not be resumed again). Must not be
 * called from inside `co` itself. Coroutines may resume other coroutines (nesting). */
bool cf__coro_resume(cf__coro *co);

/* Inside a coroutine: suspends it and returns to its resumer. Outside any coroutine: no-op. */
void cf__coro_yield(void);

/* The coroutine running on this thread, or NULL. */
cf__coro *cf__coro_current(void);

/* Frees a finished or suspended coroutine (a suspended one is discarded without unwinding its
 * stack: whatever it owned on the stack is lost). Its stack returns to the pool. NULL is
 * ignored. Must not be called on the running coroutine. */
void cf__coro_free(cf__coro *co);

/* The backend compiled in: "x86_64", "aarch64" or "ucontext". */
const char *cf__coro_backend(void);

#endif
