/* The context-switch backend under lib/loop/coro.c. Exactly one backend is compiled in:
 * coro_switch_x86_64.S or coro_switch_aarch64.S (the default on those architectures), or
 * coro_ucontext.c when CF_CORO_UCONTEXT is defined (meson -Dcoro_backend=ucontext, and every
 * other architecture). Not installed. */
#ifndef CFUTURES_CORO_SWITCH_H
#define CFUTURES_CORO_SWITCH_H

#include <stddef.h>

#ifdef CF_CORO_UCONTEXT
#include <ucontext.h>

typedef struct cf__coro_ctx {
    ucontext_t uc;
    void (*fn)(void *);
    void *arg;
} cf__coro_ctx;

#define CF__CORO_BACKEND "ucontext"
#else
/* The assembly backends push the callee-saved registers and the resume address onto the
 * stack being left, so the whole context is that stack's pointer. */
typedef struct cf__coro_ctx {
    void *sp;
} cf__coro_ctx;

#if defined(__x86_64__)
#define CF__CORO_BACKEND "x86_64"
#elif defined(__aarch64__)
#define CF__CORO_BACKEND "aarch64"
#else
#error "no assembly coroutine switch for this architecture: build with -Dcoro_backend=ucontext"
#endif
#endif

/* Prepares `ctx` so that the first switch to it calls fn(arg) on the stack [lo, lo + size).
 * fn must never return: it leaves by switching away for good. */
void cf__coro_ctx_init(cf__coro_ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg);

/* Saves the running context into `from` and continues `to` where it last switched away (or at
 * its fn). Returns when something switches back to `from`. */
void cf__coro_ctx_switch(cf__coro_ctx *from, cf__coro_ctx *to);

#endif
