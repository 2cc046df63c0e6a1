/* Coroutine context switch for AArch64 (AAPCS64; see coro_switch.h).
 *
 * A context is one word: the stack pointer of the stopped side. Above it, that stack holds a
 * 160-byte block:
 *     x19 x20 x21 x22 x23 x24 x25 x26 x27 x28 x29 x30 d8 d9 d10 d11 d12 d13 d14 d15
 * (lowest address first); x30 is the resume address. Only callee-saved registers are kept: the
 * switch is an ordinary call. FPCR/FPSR are per thread, not per coroutine.
 *
 * Branch protection: the switch leaves with `ret x30`, which BTI does not check, so a resumed
 * context never needs a landing pad; functions start with `bti c` when BTI is enabled, and the
 * object then carries the GNU property note, without which the linker would silently drop BTI
 * for the whole library. Return addresses are never signed or authenticated here: the first pc
 * of a new coroutine was never signed, and each C caller signs and checks its own. */

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
#define BTI_C bti c
#define CF_PROPERTY_BTI 1
#else
#define BTI_C
#define CF_PROPERTY_BTI 0
#endif

#if defined(__ARM_FEATURE_PAC_DEFAULT) && __ARM_FEATURE_PAC_DEFAULT
#define CF_PROPERTY_PAC 2
#else
#define CF_PROPERTY_PAC 0
#endif

        .text

/* void cf__coro_ctx_switch(cf__coro_ctx *from, cf__coro_ctx *to) */
        .globl  cf__coro_ctx_switch
        .hidden cf__coro_ctx_switch
        .type   cf__coro_ctx_switch, %function
        .p2align 4
cf__coro_ctx_switch:
        .cfi_startproc
        BTI_C
        sub     sp, sp, #160
        .cfi_def_cfa_offset 160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        .cfi_offset x29, -80
        .cfi_offset x30, -72
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x9, sp
        str     x9, [x0]
        /* The other stack has the same layout, so the unwind rules above stay true. */
        ldr     x9, [x1]
        mov     sp, x9
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        .cfi_def_cfa_offset 0
        .cfi_restore x29
        .cfi_restore x30
        ret     x30
        .cfi_endproc
        .size   cf__coro_ctx_switch, .-cf__coro_ctx_switch

/* void cf__coro_ctx_init(cf__coro_ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
 *
 * Builds the block that the first switch loads: x19 = fn, x20 = arg, x29 = 0 (ends
 * frame-pointer walks), x30 = coro_entry, everything else 0, below a zeroed 16-byte frame
 * record at the 16-byte aligned top. */
        .globl  cf__coro_ctx_init
        .hidden cf__coro_ctx_init
        .type   cf__coro_ctx_init, %function
        .p2align 4
cf__coro_ctx_init:
        .cfi_startproc
        BTI_C
        add     x9, x1, x2
        and     x9, x9, #~15
        stp     xzr, xzr, [x9, #-16]!
        sub     x9, x9, #160
        stp     x3, x4, [x9, #0]
        stp     xzr, xzr, [x9, #16]
        stp     xzr, xzr, [x9, #32]
        stp     xzr, xzr, [x9, #48]
        stp     xzr, xzr, [x9, #64]
        adr     x10, coro_entry
        stp     xzr, x10, [x9, #80]
        stp     xzr, xzr, [x9, #96]
        stp     xzr, xzr, [x9, #112]
        stp     xzr, xzr, [x9, #128]
        stp     xzr, xzr, [x9, #144]
        str     x9, [x0]
        ret
        .cfi_endproc
        .size   cf__coro_ctx_init, .-cf__coro_ctx_init

/* First code run on a new stack, reached by `ret`. x30 is marked undefined so that debuggers
 * and unwinders stop here instead of walking off the top of the coroutine's stack. fn never
 * returns; brk traps if it does. */
        .type   coro_entry, %function
        .p2align 4
coro_entry:
        .cfi_startproc
        .cfi_undefined x30
        BTI_C
        mov     x0, x20
        blr     x19
        brk     #1
        .cfi_endproc
        .size   coro_entry, .-coro_entry

#if CF_PROPERTY_BTI || CF_PROPERTY_PAC
/* GNU_PROPERTY_AARCH64_FEATURE_1_AND: this object is compatible with BTI and/or PAC. */
        .pushsection .note.gnu.property, "a"
        .p2align 3
        .word   4                       /* name size */
        .word   16                      /* descriptor size */
        .word   5                       /* NT_GNU_PROPERTY_TYPE_0 */
        .asciz  "GNU"
        .word   0xc0000000              /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
        .word   4
        .word   CF_PROPERTY_BTI | CF_PROPERTY_PAC
        .word   0
        .popsection
#endif

        .section .note.GNU-stack, "", %progbits
