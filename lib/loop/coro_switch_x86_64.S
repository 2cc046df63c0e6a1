/* Coroutine context switch for x86-64 System V (see coro_switch.h).
 *
 * A context is one word: the stack pointer of the stopped side. Below it, that stack holds
 *     r15 r14 r13 r12 rbx rbp pc
 * (lowest address first). Only the callee-saved general registers are kept: the switch is an
 * ordinary call, so the compiler has already saved everything else. MXCSR and the x87 control
 * word are per thread, not per coroutine (docs/coroutines.md).
 *
 * The switch ends with an indirect jmp to the saved pc instead of `ret`: a `ret` would be
 * predicted from the return stack buffer, which holds the caller of the context we just left,
 * so it would mispredict on every switch.
 *
 * The object carries no x86 feature property: the switch moves rsp without switching a CET
 * shadow stack, so the loader must keep shadow stacks off for a program that links it. */

        .text

/* void cf__coro_ctx_switch(cf__coro_ctx *from, cf__coro_ctx *to) */
        .globl  cf__coro_ctx_switch
        .hidden cf__coro_ctx_switch
        .type   cf__coro_ctx_switch, @function
        .p2align 4
cf__coro_ctx_switch:
        .cfi_startproc
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset r15, 0
        movq    %rsp, (%rdi)
        /* The other stack has the same layout, so the unwind rules above stay true. */
        movq    (%rsi), %rsp
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbp
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        .cfi_register rip, rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   cf__coro_ctx_switch, .-cf__coro_ctx_switch

/* void cf__coro_ctx_init(cf__coro_ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
 *
 * Builds the frame that the first switch pops: r12 = fn, rbx = arg, rbp = 0 (ends frame-pointer
 * walks), pc = coro_entry, and two zero words above it. After the pops rsp is 16-byte aligned,
 * as the call in coro_entry needs. */
        .globl  cf__coro_ctx_init
        .hidden cf__coro_ctx_init
        .type   cf__coro_ctx_init, @function
        .p2align 4
cf__coro_ctx_init:
        .cfi_startproc
        leaq    (%rsi,%rdx), %rax
        andq    $-16, %rax
        xorl    %r9d, %r9d
        movq    %r9, -8(%rax)
        movq    %r9, -16(%rax)
        leaq    coro_entry(%rip), %r10
        movq    %r10, -24(%rax)         /* pc */
        movq    %r9, -32(%rax)          /* rbp */
        movq    %r8, -40(%rax)          /* rbx = arg */
        movq    %rcx, -48(%rax)         /* r12 = fn */
        movq    %r9, -56(%rax)          /* r13 */
        movq    %r9, -64(%rax)          /* r14 */
        movq    %r9, -72(%rax)          /* r15 */
        leaq    -72(%rax), %rax
        movq    %rax, (%rdi)
        ret
        .cfi_endproc
        .size   cf__coro_ctx_init, .-cf__coro_ctx_init

/* First code run on a new stack. The return address is marked undefined so that debuggers and
 * unwinders stop here instead of walking off the top of the coroutine's stack. fn never
 * returns; ud2 traps if it does. */
        .type   coro_entry, @function
        .p2align 4
coro_entry:
        .cfi_startproc
        .cfi_undefined rip
        movq    %rbx, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   coro_entry, .-coro_entry

        .section .note.GNU-stack, "", @progbits
