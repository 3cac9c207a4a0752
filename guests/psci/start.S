/*
 * pvspec PSCI guest agent: entry points, exception vectors and the call helper.
 *
 * Every way into the agent (the image entry _start, the four CPU_ON trampolines) installs
 * VBAR_EL1 first, then takes a per-CPU stack chosen by MPIDR_EL1.Aff0 and calls
 *     agent_start(cpu = Aff0, entry = trampoline index or -1, context = x0 at entry, cold)
 * in agent.c, which never returns.  A CPU with Aff0 >= AGENT_MAX_CPUS parks in a WFE loop.
 *
 * _start is a cold boot when agent_cold_token (in .data, so QEMU's ROM reset rewrites it on
 * every machine reset) still holds 1: .bss is zeroed and the info page written.  When
 * CPU_ON names _start itself as the entry point, the token is 0 and the CPU simply starts
 * serving, with entry index -1.
 */

        .equ AGENT_MAX_CPUS, 8
        .equ AGENT_STACK_SHIFT, 14              /* 16 KiB of stack per CPU */
        .equ FRAME_SIZE, 272                    /* x0..x30, ELR, SPSR, pad (16-byte aligned) */

        .section .text.boot, "ax"
        .global _start
_start:
        mov     x19, x0                         /* context as received */
        adr     x9, agent_vectors
        msr     vbar_el1, x9
        isb
        mov     x20, #-1                        /* entry index: the image entry point */
        adrp    x9, agent_cold_token
        ldr     x21, [x9, :lo12:agent_cold_token]
        cbz     x21, common_entry               /* warm: CPU_ON named _start */
        ldr     x9, =__bss_start                /* cold boot: this CPU is the only one on */
        ldr     x10, =__bss_end
1:      cmp     x9, x10
        b.hs    2f
        str     xzr, [x9], #8
        b       1b
2:      adrp    x9, agent_cold_token
        str     xzr, [x9, :lo12:agent_cold_token]
        mov     x21, #1
        b       common_entry

        /* CPU_ON trampolines: distinct addresses, 64 bytes apart. */
        .macro TRAMPOLINE n
        .balign 64
        .global agent_tramp_\n
agent_tramp_\n:
        mov     x19, x0
        adr     x9, agent_vectors
        msr     vbar_el1, x9
        isb
        mov     x20, #\n
        mov     x21, #0
        b       common_entry
        .endm
        TRAMPOLINE 0
        TRAMPOLINE 1
        TRAMPOLINE 2
        TRAMPOLINE 3

common_entry:
        mrs     x9, mpidr_el1
        and     x22, x9, #0xff
        cmp     x22, #AGENT_MAX_CPUS
        b.hs    park
        ldr     x9, =agent_stacks
        add     x10, x22, #1
        lsl     x10, x10, #AGENT_STACK_SHIFT
        add     sp, x9, x10
        mov     x29, #0
        mov     x0, x22
        mov     x1, x20
        mov     x2, x19
        mov     x3, x21
        bl      agent_start
park:
        wfe
        b       park
        .ltorg

/*
 * Exception vectors: every one of the 16 entries saves x0/x1, puts its index in x0 and
 * joins exc_common, which saves the rest, calls agent_exception(index, frame) and returns
 * with ERET to frame[31] (the handler moves it past a faulting instruction).
 */
        .section .text.vectors, "ax"
        .balign 2048
        .global agent_vectors
agent_vectors:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        .balign 128
        sub     sp, sp, #FRAME_SIZE
        stp     x0, x1, [sp, #0]
        mov     x0, #\n
        b       exc_common
        .endr

exc_common:
        stp     x2, x3, [sp, #16]
        stp     x4, x5, [sp, #32]
        stp     x6, x7, [sp, #48]
        stp     x8, x9, [sp, #64]
        stp     x10, x11, [sp, #80]
        stp     x12, x13, [sp, #96]
        stp     x14, x15, [sp, #112]
        stp     x16, x17, [sp, #128]
        stp     x18, x19, [sp, #144]
        stp     x20, x21, [sp, #160]
        stp     x22, x23, [sp, #176]
        stp     x24, x25, [sp, #192]
        stp     x26, x27, [sp, #208]
        stp     x28, x29, [sp, #224]
        mrs     x1, elr_el1
        mrs     x2, spsr_el1
        stp     x30, x1, [sp, #240]
        str     x2, [sp, #256]
        mov     x1, sp
        bl      agent_exception
        ldp     x30, x1, [sp, #240]
        ldr     x2, [sp, #256]
        msr     elr_el1, x1
        msr     spsr_el1, x2
        ldp     x2, x3, [sp, #16]
        ldp     x4, x5, [sp, #32]
        ldp     x6, x7, [sp, #48]
        ldp     x8, x9, [sp, #64]
        ldp     x10, x11, [sp, #80]
        ldp     x12, x13, [sp, #96]
        ldp     x14, x15, [sp, #112]
        ldp     x16, x17, [sp, #128]
        ldp     x18, x19, [sp, #144]
        ldp     x20, x21, [sp, #160]
        ldp     x22, x23, [sp, #176]
        ldp     x24, x25, [sp, #192]
        ldp     x26, x27, [sp, #208]
        ldp     x28, x29, [sp, #224]
        ldp     x0, x1, [sp, #0]
        add     sp, sp, #FRAME_SIZE
        eret

/*
 * void agent_call(const uint64_t in[8], uint64_t out[8], uint64_t insn):
 * x0..x7 = in[0..7]; execute HVC #0 (insn 0), SMC #0 (insn 1) or UDF #0 (insn 2, a
 * self-test of the exception path); out[0..7] = x0..x7 afterwards.  The labels
 * agent_{hvc,smc,udf}_insn mark the instructions (the host compares them with ELR).
 */
        .text
        .global agent_call
        .global agent_hvc_insn
        .global agent_smc_insn
        .global agent_udf_insn
agent_call:
        stp     x1, x30, [sp, #-16]!
        mov     x8, x0
        mov     x9, x2
        ldp     x0, x1, [x8, #0]
        ldp     x2, x3, [x8, #16]
        ldp     x4, x5, [x8, #32]
        ldp     x6, x7, [x8, #48]
        cbz     x9, 1f
        cmp     x9, #1
        b.eq    2f
agent_udf_insn:
        udf     #0
        b       3f
2:
agent_smc_insn:
        smc     #0
        b       3f
1:
agent_hvc_insn:
        hvc     #0
3:      ldr     x8, [sp]
        stp     x0, x1, [x8, #0]
        stp     x2, x3, [x8, #16]
        stp     x4, x5, [x8, #32]
        stp     x6, x7, [x8, #48]
        ldp     x1, x30, [sp], #16
        ret

        .section .rodata
        .balign 8
        .global agent_trampolines
agent_trampolines:
        .quad   agent_tramp_0, agent_tramp_1, agent_tramp_2, agent_tramp_3

        .data
        .balign 8
        .global agent_cold_token
agent_cold_token:
        .quad   1

        .bss
        .balign 16
        .global agent_stacks
agent_stacks:
        .space  AGENT_MAX_CPUS << AGENT_STACK_SHIFT
