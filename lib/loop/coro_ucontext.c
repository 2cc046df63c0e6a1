/* Portable coroutine context switch on makecontext/swapcontext (see coro_switch.h): the
 * fallback for architectures without an assembly switch, selected with
 * -Dcoro_backend=ucontext. Each swapcontext also saves and restores the signal mask with a
 * system call, which makes a switch tens of times slower than the assembly backends, and
 * means that the signal mask belongs to each context rather than to the thread. */
#include <stdint.h>
#include <stdlib.h>

#include "loop/coro_switch.h"

/* makecontext passes int arguments only, so the context pointer travels in two halves. */
static void ucontext_entry(unsigned hi, unsigned lo)
{
    cf__coro_ctx *ctx = (cf__coro_ctx *)(uintptr_t)(((uint64_t)hi << 32) | lo);
    ctx->fn(ctx->arg);
    abort(); /* fn leaves by switching away for good; returning would end the thread */
}

void cf__coro_ctx_init(cf__coro_ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uint64_t p = (uintptr_t)ctx;
    ctx->fn = fn;
    ctx->arg = arg;
    /* getcontext only fails for invalid arguments; it fills in the signal mask and the FP
     * environment that the coroutine starts with. */
    (void)getcontext(&ctx->uc);
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    makecontext(&ctx->uc, (void (*)(void))ucontext_entry, 2, (unsigned)(p >> 32), (unsigned)p);
}

void cf__coro_ctx_switch(cf__coro_ctx *from, cf__coro_ctx *to)
{
    (void)swapcontext(&from->uc, &to->uc);
}
