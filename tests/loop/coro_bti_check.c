/* AArch64 only: checks that coro_switch_aarch64.S works with branch protection enforced (BTI
 * landing pads, PAC-signed return addresses). Freestanding on purpose: BTI is enforced only
 * when every object of the program carries the BTI property, and Debian's libc does not. Built
 * with -mbranch-protection=standard -nostdlib -static -Wl,-z,force-bti by tests/meson.build;
 * on a CPU or emulator with BTI (qemu-aarch64 enforces it), a missing landing pad on the
 * switch's paths traps with SIGILL. Exits 0 on success, 1 on a wrong result. */
#include "loop/coro_switch.h"

static __attribute__((noreturn)) void sys_exit(long code)
{
    register long x0 __asm__("x0") = code;
    register long x8 __asm__("x8") = 93; /* exit */
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8) : "memory");
    __builtin_unreachable();
}

static cf__coro_ctx main_ctx, co_ctx;
static unsigned char stack[64 << 10] __attribute__((aligned(16)));

static __attribute__((noinline)) void yield_to_main(void)
{
    cf__coro_ctx_switch(&co_ctx, &main_ctx);
}

/* A non-leaf function that signs its return address, switches away and back, then
 * authenticates it: the stack pointer it signed with must be unchanged. */
static __attribute__((noinline)) int step(int x)
{
    volatile double d = x * 1.5;
    yield_to_main();
    return x + 1 + (int)(d - x * 1.5);
}

/* Entered from the trampoline with `blr`, so it needs its BTI landing pad. */
static void body(void *arg)
{
    volatile int *n = arg;
    for (int i = 0; i < 3; i++)
        *n = step(*n);
    for (;;)
        yield_to_main();
}

void _start(void);

void _start(void)
{
    static volatile int n;
    cf__coro_ctx_init(&co_ctx, stack, sizeof stack, body, (void *)&n);
    for (int i = 0; i < 4; i++)
        cf__coro_ctx_switch(&main_ctx, &co_ctx);
    sys_exit(n == 3 ? 0 : 1);
}
