/*
 * pvspec PSCI guest agent: executes HVC (or SMC) calls the host requests through shared RAM.
 *
 * QEMU's virt machine with EL2 and EL3 off implements PSCI itself (HVC conduit).  The host
 * maps the same RAM (a shared memory-backend-file) and, for each CPU, writes x0..x7 (and
 * which instruction to execute: HVC #0, SMC #0, or UDF to test the exception path) into
 * that CPU's mailbox page and bumps req_seq; the CPU loads x0..x7, executes the
 * instruction, stores x0..x7 as they are afterwards and sets ack_seq = req_seq.
 *
 * The MMU is off: every data access is to Device memory, so every shared field is a 64-bit
 * aligned word, accessed through volatile pointers, with DMB between the publishing stores.
 *
 * Layout (conformance/qemu_psci.py mirrors it; AGENT_LAYOUT_VERSION guards the pair):
 *   info page  0x47F00000           written by the boot CPU at every cold boot
 *   mailbox i  0x47F01000 + i*4 KiB one per CPU, i = MPIDR_EL1.Aff0 < 8
 * Word indices (uint64) are the W_* and I_* constants below.  Guest-written and
 * host-written words sit in different 64-byte lines.
 *
 * Idle CPUs doze: after polling for I_CFG_SPIN_US microseconds without a request, a CPU
 * arms its virtual timer for I_CFG_DOZE_US microseconds and executes WFI (interrupts stay
 * masked in PSTATE: the pending timer interrupt only ends the WFI), so that vCPUs nobody
 * talks to do not keep host cores busy (TCG does not sleep on WFE).  The timer is off
 * while a call runs, so a CPU_SUSPEND is not woken by it.  I_CFG_DOZE_US = 0: never doze.
 *
 * KVM_GUEST (build/agent-kvm.elf, for guests/kvm-init: a KVM/arm64 VM with no in-kernel
 * GIC and no devices): no GIC set-up and no dozing.  An idle CPU instead reads its
 * doorbell, an address with no memory behind it (DOORBELL_BASE + cpu * 8): every read
 * exits to the VMM (KVM_EXIT_MMIO), which completes it only once the CPU's req_seq differs
 * from its ack_seq (or the VMM pauses the VM), so idle vCPUs cost no host time, and every
 * doorbell read also tells the VMM that the CPU has acknowledged a call or started.  The
 * PL011 writes of the "ready" line become MMIO exits too (the VMM logs them).
 */
#include <stdint.h>

#define AGENT_LAYOUT_VERSION 1
#define INFO_ADDR 0x47F00000UL
#define MBOX_BASE 0x47F01000UL
#define MBOX_STRIDE 0x1000UL
#define MAX_CPUS 8
#define N_TRAMPOLINES 4
#define INFO_MAGIC 0x4f464e4943535056UL /* "VPSCINFO" little-endian */
#define MBOX_MAGIC 0x58424d4943535056UL /* "VPSCIMBX" little-endian */

/* mailbox page, guest-written line */
#define W_MAGIC 0
#define W_MPIDR 1
#define W_BOOT_COUNT 2 /* bumped last at each start: the start record is complete */
#define W_ENTRY 3      /* trampoline index, or -1 for the image entry point */
#define W_CONTEXT 4    /* x0 as received at that entry */
#define W_STATE 5
#define W_ACK_SEQ 6
#define W_CALLS 7      /* calls served since this start */
#define W_HEARTBEAT 8  /* bumped at every poll of req_seq (own line) */
#define W_DOZES 9      /* WFI dozes since this start */
/* host-written */
#define W_REQ_SEQ 16
#define W_INSN 17 /* 0 HVC #0, 1 SMC #0, 2 UDF #0 */
#define W_IN 24 /* x0..x7 */
/* guest-written results */
#define W_OUT 32 /* x0..x7 after the call instruction */
#define W_ESR 40
#define W_ELR 41
#define W_FAR 42
#define W_EXC_VECTOR 43 /* vector index 0..15 (offset / 0x80) of the last exception */
#define W_EXC_SPSR 44
#define W_EXC_COUNT 45  /* exceptions taken on this CPU, ever (not reset at a start) */

/* states */
#define ST_OFF 0       /* never started since the last cold boot */
#define ST_READY 1     /* started, polling, no call served yet */
#define ST_IN_CALL 2   /* in the call (stays so after CPU_OFF or a suspend) */
#define ST_DONE 3      /* polling; the last call returned: W_OUT holds x0..x7 */
#define ST_EXCEPTION 4 /* polling; the last call took an exception: W_ESR/W_ELR/W_FAR */

/* info page */
#define I_MAGIC 0 /* written last */
#define I_VERSION 1
#define I_MAX_CPUS 2
#define I_MBOX_BASE 3
#define I_MBOX_STRIDE 4
#define I_N_TRAMPOLINES 5
#define I_TRAMPOLINES 6 /* 8 slots */
#define I_IMAGE_ENTRY 14
#define I_HVC_INSN 15 /* addresses of the agent's HVC, SMC and UDF instructions */
#define I_VECTORS 16
#define I_COLD_BOOTS 17
#define I_BOOT_MPIDR 18
#define I_CURRENT_EL 19
#define I_SMC_INSN 20
#define I_UDF_INSN 21
#define I_CNTFRQ 22
/* info page, host-written configuration (read by the agent whenever it is idle) */
#define I_CFG_SPIN_US 32
#define I_CFG_DOZE_US 33

/* QEMU virt: GICv3 distributor and redistributors, the virtual timer's PPI */
#define GICD_BASE 0x08000000UL
#define GICR_BASE 0x080A0000UL
#define GICR_STRIDE 0x20000UL
#define TIMER_PPI 27

#ifdef KVM_GUEST
/* One 64-bit doorbell per CPU, outside the guest's RAM: reads exit to the VMM. */
#define DOORBELL_BASE 0x0A000000UL
#endif

typedef volatile uint64_t vu64;

extern const uint64_t agent_trampolines[N_TRAMPOLINES];
extern char _start[], agent_hvc_insn[], agent_smc_insn[], agent_udf_insn[], agent_vectors[];
void agent_call(const uint64_t in[8], uint64_t out[8], uint64_t insn);
void agent_start(uint64_t cpu, uint64_t entry, uint64_t context, uint64_t cold)
    __attribute__((noreturn));
void agent_exception(uint64_t vector, uint64_t *frame);

#define dmb() __asm__ volatile("dmb sy" ::: "memory")
#define SYSREG_W(name, v) __asm__ volatile("msr " #name ", %0" ::"r"((uint64_t)(v)) : "memory")
#define isb() __asm__ volatile("isb" ::: "memory")
#define SYSREG(name)                                                 \
    ({                                                               \
        uint64_t v_;                                                 \
        __asm__ volatile("mrs %0, " #name : "=r"(v_)::"memory");     \
        v_;                                                          \
    })

static vu64 *mailbox(uint64_t cpu) { return (vu64 *)(MBOX_BASE + cpu * MBOX_STRIDE); }

static void uart_puts(const char *s)
{
    volatile uint32_t *dr = (volatile uint32_t *)0x09000000UL;
    volatile uint32_t *fr = (volatile uint32_t *)0x09000018UL;
    for (; *s; s++) {
        while (*fr & (1u << 5)) /* TX FIFO full */
            ;
        *dr = (uint32_t)(unsigned char)*s;
    }
}

static uint32_t mmio_r32(uint64_t a) { return *(volatile uint32_t *)a; }
static void mmio_w32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

/* The redistributor of this CPU (found by GICR_TYPER.Affinity), 0 if none. */
static uint64_t gicr_of(uint64_t mpidr)
{
    for (uint64_t rd = GICR_BASE, i = 0; i < 64; i++, rd += GICR_STRIDE) {
        uint64_t typer = (uint64_t)mmio_r32(rd + 8) | (uint64_t)mmio_r32(rd + 12) << 32;
        if ((typer >> 32) == (((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xffffff)))
            return rd;
        if (typer & (1u << 4)) /* Last */
            break;
    }
    return 0;
}

/* Let the virtual timer's PPI end a WFI on this CPU (it is never taken: PSTATE.I is set). */
static void gic_init_cpu(void)
{
#ifdef KVM_GUEST
    return; /* no GIC in the VM; the doorbell replaces dozing */
#endif
    SYSREG_W(cntv_ctl_el0, 0);
    uint64_t rd = gicr_of(SYSREG(mpidr_el1));
    if (rd == 0)
        return;
    uint64_t sgi = rd + 0x10000;
    mmio_w32(rd + 0x14, mmio_r32(rd + 0x14) & ~2u); /* GICR_WAKER.ProcessorSleep = 0 */
    while (mmio_r32(rd + 0x14) & 4u)                /* ChildrenAsleep */
        ;
    mmio_w32(sgi + 0x80, mmio_r32(sgi + 0x80) | 1u << TIMER_PPI); /* IGROUPR0: group 1 */
    mmio_w32(sgi + 0x100, 1u << TIMER_PPI);                          /* ISENABLER0 */
    SYSREG_W(S3_0_C12_C12_5, SYSREG(S3_0_C12_C12_5) | 1); /* ICC_SRE_EL1.SRE */
    isb();
    SYSREG_W(S3_0_C4_C6_0, 0xff); /* ICC_PMR_EL1 */
    SYSREG_W(S3_0_C12_C12_7, 1);  /* ICC_IGRPEN1_EL1 */
    isb();
}

static uint64_t us_to_ticks(uint64_t us)
{
    uint64_t ticks = us * (SYSREG(cntfrq_el0) / 1000) / 1000;
    return ticks > 0x7fffffff ? 0x7fffffff : ticks;
}

static void doze(vu64 *mb, uint64_t seen, uint64_t ticks)
{
    SYSREG_W(cntv_tval_el0, ticks);
    SYSREG_W(cntv_ctl_el0, 1); /* enabled, not masked */
    isb();
    if (mb[W_REQ_SEQ] == seen) {
        __asm__ volatile("dsb sy\n\twfi" ::: "memory");
        mb[W_DOZES] = mb[W_DOZES] + 1;
    }
    SYSREG_W(cntv_ctl_el0, 0);
    isb();
}

static void cold_init(uint64_t cpu)
{
    vu64 *info = (vu64 *)INFO_ADDR;
    info[I_MAGIC] = 0; /* invalid while it is rewritten (a machine reset) */
    dmb();
    info[I_VERSION] = AGENT_LAYOUT_VERSION;
    info[I_MAX_CPUS] = MAX_CPUS;
    info[I_MBOX_BASE] = MBOX_BASE;
    info[I_MBOX_STRIDE] = MBOX_STRIDE;
    info[I_N_TRAMPOLINES] = N_TRAMPOLINES;
    for (int i = 0; i < 8; i++)
        info[I_TRAMPOLINES + i] = i < N_TRAMPOLINES ? agent_trampolines[i] : 0;
    info[I_IMAGE_ENTRY] = (uint64_t)_start;
    info[I_HVC_INSN] = (uint64_t)agent_hvc_insn;
    info[I_SMC_INSN] = (uint64_t)agent_smc_insn;
    info[I_UDF_INSN] = (uint64_t)agent_udf_insn;
    info[I_VECTORS] = (uint64_t)agent_vectors;
    info[I_BOOT_MPIDR] = SYSREG(mpidr_el1);
    info[I_CURRENT_EL] = (SYSREG(CurrentEL) >> 2) & 3;
    info[I_CNTFRQ] = SYSREG(cntfrq_el0);
#ifndef KVM_GUEST
    mmio_w32(GICD_BASE, (1u << 4) | (1u << 1) | 1u); /* GICD_CTLR: ARE, Grp1, Grp0 (DS=1) */
    while (mmio_r32(GICD_BASE) & (1u << 31))          /* RWP */
        ;
#endif
    /* After a machine reset the other CPUs are off whatever their pages last said. */
    for (uint64_t j = 0; j < MAX_CPUS; j++)
        if (j != cpu)
            mailbox(j)[W_STATE] = ST_OFF;
    info[I_COLD_BOOTS] = info[I_COLD_BOOTS] + 1;
    dmb();
    info[I_MAGIC] = INFO_MAGIC;
    dmb();
}

/* Serve requests after ``seen`` (the req_seq this start acknowledged: a request the host
 * makes as soon as it sees the CPU ready must not be taken for an old one). */
static void __attribute__((noreturn)) serve(vu64 *mb, uint64_t seen)
{
    vu64 *info = (vu64 *)INFO_ADDR;
    uint64_t in[8], out[8];
    uint64_t idle_since = SYSREG(cntvct_el0);
    for (;;) {
        uint64_t req;
        while ((req = mb[W_REQ_SEQ]) == seen) {
            mb[W_HEARTBEAT] = mb[W_HEARTBEAT] + 1;
#ifdef KVM_GUEST
            /* A single LDR (valid ISV): the VMM returns once a request is pending. */
            uint64_t bell = DOORBELL_BASE + (((uint64_t)mb - MBOX_BASE) / MBOX_STRIDE) * 8, v;
            __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(bell) : "memory");
            (void)info;
            (void)idle_since;
            continue;
#endif
            uint64_t doze_us = info[I_CFG_DOZE_US];
            if (doze_us != 0
                && SYSREG(cntvct_el0) - idle_since >= us_to_ticks(info[I_CFG_SPIN_US]))
                doze(mb, seen, us_to_ticks(doze_us));
        }
        dmb(); /* the arguments were written before req_seq */
        seen = req;
        for (int i = 0; i < 8; i++)
            in[i] = mb[W_IN + i];
        uint64_t insn = mb[W_INSN];
        uint64_t exc_before = mb[W_EXC_COUNT];
        mb[W_STATE] = ST_IN_CALL;
        dmb();
        agent_call(in, out, insn);
        uint64_t state;
        if (mb[W_EXC_COUNT] != exc_before) {
            state = ST_EXCEPTION;
        } else {
            for (int i = 0; i < 8; i++)
                mb[W_OUT + i] = out[i];
            state = ST_DONE;
        }
        mb[W_CALLS] = mb[W_CALLS] + 1;
        dmb();
        mb[W_STATE] = state;
        dmb();
        mb[W_ACK_SEQ] = req;
        dmb();
        idle_since = SYSREG(cntvct_el0);
    }
}

void agent_start(uint64_t cpu, uint64_t entry, uint64_t context, uint64_t cold)
{
    vu64 *mb = mailbox(cpu);
    if (cold)
        cold_init(cpu);
    mb[W_MAGIC] = MBOX_MAGIC;
    mb[W_MPIDR] = SYSREG(mpidr_el1);
    mb[W_ENTRY] = entry;
    mb[W_CONTEXT] = context;
    mb[W_CALLS] = 0;
    mb[W_DOZES] = 0;
    gic_init_cpu();
    /* Requests made before this start are void: the host waits for a serving state. */
    uint64_t seen = mb[W_REQ_SEQ];
    mb[W_ACK_SEQ] = seen;
    dmb();
    mb[W_STATE] = ST_READY;
    dmb();
    mb[W_BOOT_COUNT] = mb[W_BOOT_COUNT] + 1;
    dmb();
    if (cold)
        uart_puts("pvspec psci agent: ready\n");
    serve(mb, seen);
}

/* Exception classes whose preferred return address is already the next instruction. */
static int returns_past(uint64_t ec)
{
    return ec == 0x11 || ec == 0x12 || ec == 0x13 || ec == 0x15 || ec == 0x16 || ec == 0x17;
}

void agent_exception(uint64_t vector, uint64_t *frame)
{
    uint64_t cpu = SYSREG(mpidr_el1) & 0xff;
    uint64_t esr = SYSREG(esr_el1);
    uint64_t far = SYSREG(far_el1);
    if (cpu < MAX_CPUS) {
        vu64 *mb = mailbox(cpu);
        mb[W_ESR] = esr;
        mb[W_ELR] = frame[31];
        mb[W_FAR] = far;
        mb[W_EXC_VECTOR] = vector;
        mb[W_EXC_SPSR] = frame[32];
        dmb();
        mb[W_EXC_COUNT] = mb[W_EXC_COUNT] + 1;
        dmb();
    }
    /* Synchronous exceptions (vector index 0, 4, 8, 12): resume after the faulting
     * instruction so that the agent keeps serving; asynchronous ones return as they are. */
    if ((vector & 3) == 0 && !returns_past(esr >> 26))
        frame[31] += 4;
}
