/*
 * pvspec kvm-init: the whole userspace of a Linux/arm64 kernel booted under QEMU (TCG, EL2
 * on), acting as a minimal VMM over /dev/kvm so that the host suite can drive the PSCI and
 * SMCCC handlers of KVM/arm64 (nVHE or pKVM, per kvm-arm.mode).
 *
 * It creates one VM with N vCPUs (KVM_ARM_VCPU_PSCI_0_2; every vCPU but 0 starts powered
 * off), 128 MiB of RAM at 0x40000000 (KVM_SET_USER_MEMORY_REGION, mapped here too), loads
 * the PSCI guest agent (/agent.elf: guests/psci built with -DKVM_GUEST) and runs each vCPU
 * in its own thread.  The agent's mailboxes live in guest RAM (see guests/psci/agent.c):
 * this program reads and writes them directly.  An idle agent CPU reads its doorbell
 * (DOORBELL_BASE + cpu * 8, no memory there): the KVM_EXIT_MMIO is completed only once a
 * request is pending for that CPU, so idle vCPUs cost nothing and every doorbell read says
 * "this CPU has acknowledged a call or just started".  There is no in-kernel GIC: nothing
 * ever interrupts the guest (a CPU_SUSPEND standby waits for good).
 *
 * The channel: with pvspec.channel=virtio on the kernel command line, the virtio-serial
 * port named "pvspec" (QEMU's virtserialport on virtio-mmio; the drivers virtio_mmio and
 * virtio_console are modules in Debian's kernel, loaded from /modules/ORDER; see
 * linux_channel.h, shared with guests/xen-dom0), announced "CHANNEL virtio <port>" on
 * the console; else, or when the port cannot be opened ("CHANNEL console"), the serial
 * console.  The console costs ~50 us an input byte (QEMU's PL011 takes one byte per
 * main-loop pass), the port takes whole buffers.
 *
 * Host protocol, on the channel (the console: /dev/ttyAMA0, raw mode).  The host sends lines
 *     <seq> <cmd> <args...>\n
 * and this program answers each with exactly one line
 *     @@PVK <seq> <kind> <fields...> #<fnv1a-32 of everything before " #">\n
 * plus unsolicited lines with seq "-" (READY banner, kernel log lines about KVM, the
 * agent's UART output, VM events).  Numbers are hex unless said otherwise.  Other lines on
 * the console (kernel messages) are not ours; the checksum catches a line a kernel message
 * cut through, and "A <seq>" repeats the latest answer.
 *
 *   H                         -> OK <vmstate> <ncpus> <generation>
 *   V <ncpus> <flags> <ms> <call_ms>  (re)create the VM (flags bit 0: SYSTEM_RESET powers
 *                             off instead of rebooting) and wait <ms> for CPU 0 to serve;
 *                             <call_ms> is the timeout of the short call form
 *                             -> OK <generation> | ERR <text>
 *   I                         -> OK <info page words 0..23>
 *   M <cpu>                   -> OK <running> <mailbox record> (see mbox_record)
 *   F <cpu> <insn> <ms> x0..x7  a call (trailing zero registers may be left out: the
 *                             serial input costs ~50 us a byte) -> R x0..x7 (trailing
 *                             zeros left out) | E esr elr far vector |
 *                             T state restarted | S state boot | X status reason
 *   C <cpu> x0..x7            the same with HVC and <call_ms>
 *   G <cpu> <insn> <ms> <settle_ms> x0..x7  as F, and T (no return) as soon as the vCPU
 *                             has slept inside KVM_RUN during the call for <settle_ms>
 *                             without waking (a suspend nothing will wake; see await_call)
 *   P <cpu> <ms>              wait more for a call that timed out -> as C, or Z (none)
 *   W <cpu> <after> <ms>      wait until cpu has started more than <after> times
 *                             -> OK <running> <mailbox record> | Z | X status reason
 *   B <cpu> <n> <x0>          benchmark: n calls of HVC with x0 (x1..x7 = 0) on cpu, one
 *                             after the other inside this program -> OK <ns> <last x0>
 *   D                         destroy the VM -> OK
 *   A <seq>                   repeat the answer to <seq> (if it was the latest) | Z
 * Unsolicited: READY <api> <max_vcpus> <agent size> <release>, K <kernel log line>,
 * U <agent UART line>, Y <system resets>, X <status> <reason> (the VM stopped: status 0 for
 * a guest SYSTEM_OFF, or a SYSTEM_RESET when flags bit 0; 1 for anything else).
 * <ms>, <cpu>, <ncpus>, <flags>, <insn> and <status> are decimal; everything else is hex.
 *
 * Built static (aarch64-linux-gnu-gcc -static); it is PID 1, so it never exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>

#define RAM_BASE 0x40000000UL
#define RAM_SIZE (128UL << 20)
#define INFO_ADDR 0x47F00000UL
#define MBOX_BASE 0x47F01000UL
#define MBOX_STRIDE 0x1000UL
#define MAX_CPUS 8
#define DOORBELL_BASE 0x0A000000UL
#define UART_BASE 0x09000000UL
#define MBOX_MAGIC 0x58424d4943535056UL

/* mailbox words (guests/psci/agent.c) */
#define W_MAGIC 0
#define W_MPIDR 1
#define W_BOOT_COUNT 2
#define W_ENTRY 3
#define W_CONTEXT 4
#define W_STATE 5
#define W_ACK_SEQ 6
#define W_CALLS 7
#define W_HEARTBEAT 8
#define W_DOZES 9
#define W_REQ_SEQ 16
#define W_INSN 17
#define W_IN 24
#define W_OUT 32
#define W_ESR 40
#define W_ELR 41
#define W_FAR 42
#define W_EXC_VECTOR 43
#define W_EXC_COUNT 45
#define ST_READY 1
#define ST_IN_CALL 2
#define ST_DONE 3
#define ST_EXCEPTION 4

#define MARK "@@PVK "
#define KICK_SIG SIGUSR1

enum { VM_NONE = 0, VM_RUNNING = 1, VM_OFF = 2 };

typedef volatile uint64_t vu64;

struct vcpu {
    int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    int have_thread;
    int parked;
    volatile int in_run; /* inside KVM_RUN (read by G's settling without mu) */
    volatile pid_t tid;
};

struct pending {
    int valid;
    uint64_t seq, boot;
};

static struct {
    int fd;
    uint8_t *ram;
    int n;
    struct vcpu cpu[MAX_CPUS];
    struct kvm_vcpu_init init;
    int state;
    int exit_status;
    char exit_reason[96];
    int pause_req, quit, resetting;
    int no_reboot;
    uint64_t generation, resets;
    uint64_t call_ms; /* timeout of the short call form */
    uint64_t entry;
    struct pending pending[MAX_CPUS];
    char uart[MAX_CPUS][160];
    size_t uart_len[MAX_CPUS];
} vm;

static int kvm_fd = -1, tty = -1, chan = -1; /* chan: the virtio port, if open */
static size_t run_size;
static uint8_t *agent_img;
static size_t agent_len;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_seq[32], last_reply[2048];

/* --- output ----------------------------------------------------------------------------- */
static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(chan >= 0 ? chan : tty >= 0 ? tty : 1, s, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* One protocol line: MARK seq body #checksum.  Answers (seq != "-") are remembered for A. */
static void emit(const char *seq, const char *fmt, ...)
{
    char line[2048];
    int n = snprintf(line, sizeof line, MARK "%s ", seq);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 16, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 16)
        n = (int)sizeof line - 16;
    for (int i = 0; i < n; i++) /* one line, printable */
        if (line[i] == '\n' || line[i] == '\r' || line[i] == '#')
            line[i] = ' ';
    n += snprintf(line + n, sizeof line - (size_t)n, " #%08x\n", fnv1a(line, (size_t)n));
    pthread_mutex_lock(&out_mu);
    if (strcmp(seq, "-") != 0) {
        snprintf(last_seq, sizeof last_seq, "%s", seq);
        memcpy(last_reply, line, (size_t)n + 1);
    }
    write_all(line, (size_t)n);
    pthread_mutex_unlock(&out_mu);
}

/* cmdline_value, load_modules, open_vport (the virtio-serial channel; needs emit) */
#include "linux_channel.h"

/* --- time ------------------------------------------------------------------------------- */
static struct timespec deadline_ms(uint64_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ms / 1000);
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static int expired(const struct timespec *d)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec > d->tv_sec || (t.tv_sec == d->tv_sec && t.tv_nsec >= d->tv_nsec);
}

/* --- guest memory ----------------------------------------------------------------------- */
static vu64 *mbox(int cpu) { return (vu64 *)(vm.ram + (MBOX_BASE - RAM_BASE) + cpu * MBOX_STRIDE); }
static vu64 *info_page(void) { return (vu64 *)(vm.ram + (INFO_ADDR - RAM_BASE)); }

static int serving(vu64 *mb)
{
    uint64_t st = mb[W_STATE];
    return mb[W_MAGIC] == MBOX_MAGIC && (st == ST_READY || st == ST_DONE || st == ST_EXCEPTION)
           && mb[W_ACK_SEQ] == mb[W_REQ_SEQ];
}

/* "magic_ok mpidr boot entry context state ack calls heartbeat dozes req exc_count" */
static void mbox_record(char *buf, size_t len, int cpu)
{
    vu64 *mb = mbox(cpu);
    snprintf(buf, len, "%d %lx %lx %lx %lx %lx %lx %lx %lx %lx %lx %lx", mb[W_MAGIC] == MBOX_MAGIC,
             mb[W_MPIDR], mb[W_BOOT_COUNT], mb[W_ENTRY], mb[W_CONTEXT], mb[W_STATE], mb[W_ACK_SEQ],
             mb[W_CALLS], mb[W_HEARTBEAT], mb[W_DOZES], mb[W_REQ_SEQ], mb[W_EXC_COUNT]);
}

/* Copy the agent's PT_LOAD segments into guest RAM; the entry point, 0 on error. */
static uint64_t load_agent(char *err, size_t errlen)
{
    if (agent_len < sizeof(Elf64_Ehdr)) {
        snprintf(err, errlen, "no agent image");
        return 0;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, agent_img, sizeof eh);
    if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_machine != EM_AARCH64) {
        snprintf(err, errlen, "agent is not an AArch64 ELF");
        return 0;
    }
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        size_t off = eh.e_phoff + (size_t)i * eh.e_phentsize;
        if (off + sizeof ph > agent_len)
            break;
        memcpy(&ph, agent_img + off, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_paddr < RAM_BASE || ph.p_paddr + ph.p_memsz > RAM_BASE + RAM_SIZE
            || ph.p_offset + ph.p_filesz > agent_len || ph.p_filesz > ph.p_memsz) {
            snprintf(err, errlen, "agent segment %d outside RAM", i);
            return 0;
        }
        memcpy(vm.ram + (ph.p_paddr - RAM_BASE), agent_img + ph.p_offset, ph.p_filesz);
        memset(vm.ram + (ph.p_paddr - RAM_BASE) + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    }
    __sync_synchronize();
    return eh.e_entry;
}

/* --- vCPUs ------------------------------------------------------------------------------ */
static int set_reg(int fd, uint64_t id, uint64_t v)
{
    struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&v};
    return ioctl(fd, KVM_SET_ONE_REG, &r);
}

#define CORE_REG(name) \
    (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(name))

static int vcpu_init(int i)
{
    struct kvm_vcpu_init init = vm.init;
    init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
    if (i != 0)
        init.features[0] |= 1u << KVM_ARM_VCPU_POWER_OFF;
    return ioctl(vm.cpu[i].fd, KVM_ARM_VCPU_INIT, &init);
}

/* Signal handler of the kick: only interrupts KVM_RUN (the signal is unblocked inside it). */
static void on_kick(int sig) { (void)sig; }

static void eat_kicks(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, KICK_SIG);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, NULL, &zero) > 0)
        ;
}

static void kick_others(int self)
{
    for (int i = 0; i < vm.n; i++)
        if (i != self && vm.cpu[i].have_thread)
            pthread_kill(vm.cpu[i].thread, KICK_SIG);
}

/* Stop the VM (caller holds mu): record why and tell the host. */
static void vm_stop(int self, int status, const char *reason)
{
    if (vm.state != VM_RUNNING)
        return;
    vm.state = VM_OFF;
    vm.exit_status = status;
    snprintf(vm.exit_reason, sizeof vm.exit_reason, "%s", reason);
    vm.pause_req = 1;
    kick_others(self);
    pthread_cond_broadcast(&cv);
    emit("-", "X %d %s", status, reason);
}

/* Caller holds mu: wait until every vCPU thread but self is parked (kicking them). */
static void wait_parked(int self)
{
    for (;;) {
        int all = 1;
        for (int i = 0; i < vm.n; i++)
            if (i != self && vm.cpu[i].have_thread && !vm.cpu[i].parked)
                all = 0;
        if (all)
            return;
        kick_others(self);
        pthread_cond_broadcast(&cv); /* doorbell waits re-check pause_req / quit */
        struct timespec d = deadline_ms(20);
        pthread_cond_timedwait(&cv, &mu, &d);
    }
}

/* A guest SYSTEM_RESET (caller holds mu): what a VMM does on a machine reset — every vCPU
 * back to its reset state (CPU 0 on, the others off), the image reloaded (so the agent
 * cold-boots: its .data token is back), the rest of RAM kept (as QEMU keeps it). */
static void system_reset(int self)
{
    char err[128];
    vm.pause_req = 1;
    vm.resetting = 1;
    wait_parked(self);
    for (int i = 0; i < vm.n; i++) {
        vm.cpu[i].run->exit_reason = KVM_EXIT_UNKNOWN; /* no stale MMIO completion */
        if (vcpu_init(i) < 0) {
            vm.resetting = 0;
            snprintf(err, sizeof err, "reset:VCPU_INIT(%d):errno=%d", i, errno);
            vm_stop(self, 1, err);
            return;
        }
    }
    uint64_t entry = load_agent(err, sizeof err);
    if (entry == 0 || set_reg(vm.cpu[0].fd, CORE_REG(regs.pc), entry) < 0) {
        vm.resetting = 0;
        vm_stop(self, 1, "reset:reload-failed");
        return;
    }
    vm.resets++;
    vm.resetting = 0;
    vm.pause_req = 0;
    pthread_cond_broadcast(&cv);
    emit("-", "Y %lx", vm.resets);
}

static void uart_byte(int cpu, uint8_t c)
{
    if (c == '\n' || vm.uart_len[cpu] >= sizeof vm.uart[cpu] - 1) {
        vm.uart[cpu][vm.uart_len[cpu]] = 0;
        emit("-", "U %d %s", cpu, vm.uart[cpu]);
        vm.uart_len[cpu] = 0;
        if (c == '\n')
            return;
    }
    if (c >= 0x20 && c < 0x7f)
        vm.uart[cpu][vm.uart_len[cpu]++] = (char)c;
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct kvm_run *run = v->run;
    v->tid = (pid_t)syscall(SYS_gettid);
    char why[96];

    /* The kick signal is blocked here and unblocked only inside KVM_RUN: a kick sent at any
     * moment makes the next (or current) KVM_RUN return EINTR; it is never lost. */
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, KICK_SIG);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    struct {
        struct kvm_signal_mask m;
        uint8_t set[8];
    } km = {.m = {.len = 8}};
    ioctl(v->fd, KVM_SET_SIGNAL_MASK, &km);

    for (;;) {
        pthread_mutex_lock(&mu);
        while ((vm.pause_req || vm.state != VM_RUNNING) && !vm.quit) {
            v->parked = 1;
            pthread_cond_broadcast(&cv);
            pthread_cond_wait(&cv, &mu);
        }
        v->parked = 0;
        if (vm.quit) {
            v->parked = 1;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        pthread_mutex_unlock(&mu);

        v->in_run = 1;
        int r = ioctl(v->fd, KVM_RUN, 0);
        v->in_run = 0;
        if (r < 0) {
            int e = errno;
            eat_kicks();
            if (e == EINTR || e == EAGAIN)
                continue;
            pthread_mutex_lock(&mu);
            snprintf(why, sizeof why, "KVM_RUN:cpu%d:errno=%d", v->index, e);
            vm_stop(v->index, 1, why);
            pthread_mutex_unlock(&mu);
            continue;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_MMIO: {
            uint64_t a = run->mmio.phys_addr;
            pthread_mutex_lock(&mu);
            pthread_cond_broadcast(&cv); /* a doorbell: acknowledged a call, or started */
            if (!run->mmio.is_write && a >= DOORBELL_BASE && a < DOORBELL_BASE + 0x1000) {
                vu64 *mb = mbox(v->index);
                while (mb[W_REQ_SEQ] == mb[W_ACK_SEQ] && !vm.pause_req && !vm.quit
                       && vm.state == VM_RUNNING)
                    pthread_cond_wait(&cv, &mu);
            } else if (run->mmio.is_write && a == UART_BASE) {
                uart_byte(v->index, run->mmio.data[0]);
            }
            pthread_mutex_unlock(&mu);
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0, sizeof run->mmio.data);
            break;
        }
        case KVM_EXIT_SYSTEM_EVENT: {
            uint32_t type = run->system_event.type;
            pthread_mutex_lock(&mu);
            if (vm.resetting || vm.state != VM_RUNNING) {
                /* another vCPU's event is being handled: this one parks */
            } else if (type == KVM_SYSTEM_EVENT_RESET && !vm.no_reboot) {
                system_reset(v->index);
            } else if (type == KVM_SYSTEM_EVENT_SHUTDOWN) {
                vm_stop(v->index, 0, "SYSTEM_OFF");
            } else if (type == KVM_SYSTEM_EVENT_RESET) {
                vm_stop(v->index, 0, "SYSTEM_RESET");
            } else {
                snprintf(why, sizeof why, "SYSTEM_EVENT:type=%u", type);
                vm_stop(v->index, 1, why);
            }
            pthread_mutex_unlock(&mu);
            break;
        }
        case KVM_EXIT_INTR:
            break;
        default:
            pthread_mutex_lock(&mu);
            snprintf(why, sizeof why, "exit_reason=%u:cpu%d", run->exit_reason, v->index);
            vm_stop(v->index, 1, why);
            pthread_mutex_unlock(&mu);
            break;
        }
    }
}

/* --- the VM ----------------------------------------------------------------------------- */
static void vm_destroy(void)
{
    pthread_mutex_lock(&mu);
    vm.quit = 1;
    pthread_cond_broadcast(&cv);
    kick_others(-1);
    pthread_mutex_unlock(&mu);
    /* kick until every thread has left KVM_RUN and seen quit (a kick sent before its
     * KVM_RUN stays pending, but a powered-off vCPU may be inside it already) */
    pthread_mutex_lock(&mu);
    wait_parked(-1);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < vm.n; i++) {
        if (vm.cpu[i].have_thread) {
            pthread_join(vm.cpu[i].thread, NULL);
            vm.cpu[i].have_thread = 0;
        }
        if (vm.cpu[i].run != NULL)
            munmap(vm.cpu[i].run, run_size);
        if (vm.cpu[i].fd >= 0)
            close(vm.cpu[i].fd);
        vm.cpu[i].run = NULL;
        vm.cpu[i].fd = -1;
    }
    if (vm.fd >= 0)
        close(vm.fd);
    if (vm.ram != NULL)
        munmap(vm.ram, RAM_SIZE);
    pthread_mutex_lock(&mu);
    vm.fd = -1;
    vm.ram = NULL;
    vm.n = 0;
    vm.state = VM_NONE;
    vm.quit = vm.pause_req = vm.resetting = 0;
    memset(vm.pending, 0, sizeof vm.pending);
    memset(vm.uart_len, 0, sizeof vm.uart_len);
    pthread_mutex_unlock(&mu);
}

static int vm_create(int n, int flags, char *err, size_t errlen)
{
    int fd;
    do
        fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
        return -1;
    }
    vm.fd = fd;
    vm.n = 0;
    vm.no_reboot = flags & 1;
    vm.ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (vm.ram == MAP_FAILED) {
        vm.ram = NULL;
        snprintf(err, errlen, "mmap of guest RAM: %s", strerror(errno));
        return -1;
    }
    struct kvm_userspace_memory_region mr = {
        .slot = 0, .guest_phys_addr = RAM_BASE, .memory_size = RAM_SIZE,
        .userspace_addr = (uint64_t)(uintptr_t)vm.ram};
    if (ioctl(fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
        snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
        return -1;
    }
    memset(&vm.init, 0, sizeof vm.init);
    if (ioctl(fd, KVM_ARM_PREFERRED_TARGET, &vm.init) < 0) {
        snprintf(err, errlen, "KVM_ARM_PREFERRED_TARGET: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct vcpu *v = &vm.cpu[i];
        v->index = i;
        v->parked = 0;
        v->fd = ioctl(fd, KVM_CREATE_VCPU, i);
        if (v->fd < 0) {
            snprintf(err, errlen, "KVM_CREATE_VCPU(%d): %s", i, strerror(errno));
            return -1;
        }
        vm.n = i + 1;
        v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED) {
            v->run = NULL;
            snprintf(err, errlen, "mmap of kvm_run: %s", strerror(errno));
            return -1;
        }
        if (vcpu_init(i) < 0) {
            snprintf(err, errlen, "KVM_ARM_VCPU_INIT(%d): %s", i, strerror(errno));
            return -1;
        }
    }
    vm.entry = load_agent(err, errlen);
    if (vm.entry == 0)
        return -1;
    if (set_reg(vm.cpu[0].fd, CORE_REG(regs.pc), vm.entry) < 0) {
        snprintf(err, errlen, "KVM_SET_ONE_REG(pc): %s", strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&mu);
    vm.state = VM_RUNNING;
    vm.generation++;
    vm.resets = 0;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&vm.cpu[i].thread, NULL, vcpu_thread, &vm.cpu[i]) != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(errno));
            return -1;
        }
        vm.cpu[i].have_thread = 1;
    }
    return 0;
}

/* --- commands --------------------------------------------------------------------------- */
#define MAX_TOK 16

static uint64_t hex(const char *s) { return s != NULL ? strtoull(s, NULL, 16) : 0; }
static uint64_t dec(const char *s) { return s != NULL ? strtoull(s, NULL, 10) : 0; }

static int cpu_arg(const char *seq, const char *s)
{
    long c = s != NULL ? strtol(s, NULL, 10) : -1;
    if (vm.state == VM_NONE) {
        emit(seq, "ERR no VM");
        return -1;
    }
    if (c < 0 || c >= vm.n) {
        emit(seq, "ERR cpu %ld out of range", c);
        return -1;
    }
    return (int)c;
}

/* Wait (holding mu) for the answer to request seq on cpu, started at boot count boot. */
/* Thread tid of this process is asleep ('S'): its voluntary context switches so far in
 * *nvcsw; 0 if it runs, is runnable, or cannot be read. */
static int thread_asleep(pid_t tid, long *nvcsw)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *paren = strrchr(buf, ')');
    if (paren == NULL || paren[1] != ' ' || paren[2] != 'S')
        return 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
    if (v == NULL)
        return 0;
    *nvcsw = strtol(v + 26, NULL, 10);
    return 1;
}

/* Wait for cpu's answer to request seq (caller holds mu) and emit it; T after ms.  With
 * settle_ms > 0 (G: a CPU_SUSPEND), T as soon as the vCPU has been inside the call and its
 * thread asleep inside KVM_RUN, without one wake-up, for settle_ms: the vCPU waits in the
 * hypervisor (a standby suspend is a WFI) and, with no interrupt source in this VM and the
 * agent's timer off, nothing will wake it.  A call that returns never sleeps in KVM_RUN. */
static void await_call(const char *seqtok, int cpu, uint64_t seq, uint64_t boot, uint64_t ms,
                       uint64_t settle_ms)
{
    vu64 *mb = mbox(cpu);
    struct timespec d = deadline_ms(ms);
    struct vcpu *v = &vm.cpu[cpu];
    int asleep = 0;
    long nvcsw0 = 0;
    struct timespec since = {0, 0};
    vm.pending[cpu].valid = 0;
    for (;;) {
        if (vm.state != VM_RUNNING) {
            emit(seqtok, "X %d %s", vm.exit_status, vm.exit_reason);
            return;
        }
        if (!vm.resetting) {
            if (mb[W_ACK_SEQ] == seq) {
                uint64_t st = mb[W_STATE];
                if (mb[W_BOOT_COUNT] != boot) {
                    emit(seqtok, "T %lx 1", st);
                    return;
                }
                if (st == ST_DONE) {
                    char regs[160];
                    size_t n = 0;
                    int last = 0;
                    for (int i = 0; i < 8; i++)
                        if (mb[W_OUT + i] != 0)
                            last = i;
                    for (int i = 0; i <= last; i++)
                        n += (size_t)snprintf(regs + n, sizeof regs - n, " %lx", mb[W_OUT + i]);
                    emit(seqtok, "R%s", regs);
                    return;
                }
                if (st == ST_EXCEPTION) {
                    emit(seqtok, "E %lx %lx %lx %lx", mb[W_ESR], mb[W_ELR], mb[W_FAR],
                         mb[W_EXC_VECTOR]);
                    return;
                }
            } else if (mb[W_BOOT_COUNT] != boot) {
                emit(seqtok, "T %lx 1", mb[W_STATE]);
                return;
            }
        }
        int settled = 0;
        if (settle_ms > 0 && !vm.resetting && v->in_run && v->tid > 0
            && mb[W_STATE] == ST_IN_CALL && mb[W_ACK_SEQ] != seq && mb[W_REQ_SEQ] == seq) {
            long nvcsw = 0;
            if (thread_asleep(v->tid, &nvcsw)) {
                if (!asleep || nvcsw != nvcsw0) {
                    asleep = 1;
                    nvcsw0 = nvcsw;
                    since = deadline_ms(settle_ms);
                } else if (expired(&since)) {
                    settled = 1;
                }
            } else {
                asleep = 0;
            }
        } else {
            asleep = 0;
        }
        if (settled || expired(&d)) {
            vm.pending[cpu] = (struct pending){1, seq, boot};
            emit(seqtok, "T %lx 0", mb[W_STATE]);
            return;
        }
        if (settle_ms > 0) { /* look again in 2 ms (or at the deadline) */
            struct timespec look = deadline_ms(2);
            if (look.tv_sec > d.tv_sec || (look.tv_sec == d.tv_sec && look.tv_nsec > d.tv_nsec))
                look = d;
            pthread_cond_timedwait(&cv, &mu, &look);
        } else {
            pthread_cond_timedwait(&cv, &mu, &d);
        }
    }
}

static void cmd_call(const char *seq, char **tok, int ntok)
{
    int cpu = cpu_arg(seq, tok[2]);
    if (cpu < 0)
        return;
    int settle = tok[1][0] == 'G', full = tok[1][0] == 'F' || settle;
    int first = settle ? 6 : full ? 5 : 3;
    if (ntok <= first) {
        emit(seq, "ERR %s needs %s", tok[1],
             settle ? "cpu, insn, ms, settle_ms and x0"
                    : full ? "cpu, insn, ms and x0" : "cpu and x0");
        return;
    }
    uint64_t insn = full ? dec(tok[3]) : 0, ms = full ? dec(tok[4]) : vm.call_ms;
    uint64_t settle_ms = settle ? dec(tok[5]) : 0;
    pthread_mutex_lock(&mu);
    vu64 *mb = mbox(cpu);
    if (vm.state != VM_RUNNING) {
        emit(seq, "X %d %s", vm.exit_status, vm.exit_reason);
    } else if (vm.resetting || !serving(mb)) {
        emit(seq, "S %lx %lx", mb[W_STATE], mb[W_BOOT_COUNT]);
    } else {
        uint64_t boot = mb[W_BOOT_COUNT];
        for (int i = 0; i < 8; i++)
            mb[W_IN + i] = first + i < ntok ? hex(tok[first + i]) : 0;
        mb[W_INSN] = insn;
        uint64_t s = mb[W_REQ_SEQ] + 1;
        __sync_synchronize();
        mb[W_REQ_SEQ] = s; /* after the arguments */
        __sync_synchronize();
        pthread_cond_broadcast(&cv); /* the CPU's doorbell wait */
        await_call(seq, cpu, s, boot, ms, settle_ms);
    }
    pthread_mutex_unlock(&mu);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000UL + (uint64_t)t.tv_nsec;
}

/* n calls back to back, without the serial line: what the VM side of a call costs. */
static void cmd_bench(const char *seq, char **tok)
{
    int cpu = cpu_arg(seq, tok[2]);
    if (cpu < 0)
        return;
    uint64_t n = hex(tok[3]), x0 = hex(tok[4]), t0 = now_ns(), last = 0;
    pthread_mutex_lock(&mu);
    vu64 *mb = mbox(cpu);
    for (uint64_t k = 0; k < n; k++) {
        if (vm.state != VM_RUNNING || vm.resetting || !serving(mb)) {
            emit(seq, "ERR cpu %d stopped serving after %lu calls", cpu, k);
            pthread_mutex_unlock(&mu);
            return;
        }
        mb[W_IN] = x0;
        for (int i = 1; i < 8; i++)
            mb[W_IN + i] = 0;
        mb[W_INSN] = 0;
        uint64_t s = mb[W_REQ_SEQ] + 1;
        __sync_synchronize();
        mb[W_REQ_SEQ] = s;
        __sync_synchronize();
        pthread_cond_broadcast(&cv);
        struct timespec d = deadline_ms(2000);
        while (mb[W_ACK_SEQ] != s && vm.state == VM_RUNNING && !expired(&d))
            pthread_cond_timedwait(&cv, &mu, &d);
        last = mb[W_OUT];
    }
    pthread_mutex_unlock(&mu);
    emit(seq, "OK %lx %lx", now_ns() - t0, last);
}

static void cmd_pending(const char *seq, char **tok)
{
    int cpu = cpu_arg(seq, tok[2]);
    if (cpu < 0)
        return;
    pthread_mutex_lock(&mu);
    if (!vm.pending[cpu].valid)
        emit(seq, "Z");
    else
        await_call(seq, cpu, vm.pending[cpu].seq, vm.pending[cpu].boot, dec(tok[3]), 0);
    pthread_mutex_unlock(&mu);
}

static void cmd_wait_started(const char *seq, char **tok)
{
    int cpu = cpu_arg(seq, tok[2]);
    if (cpu < 0)
        return;
    uint64_t after = hex(tok[3]);
    struct timespec d = deadline_ms(dec(tok[4]));
    char rec[512];
    pthread_mutex_lock(&mu);
    vu64 *mb = mbox(cpu);
    for (;;) {
        if (vm.state != VM_RUNNING) {
            emit(seq, "X %d %s", vm.exit_status, vm.exit_reason);
            break;
        }
        if (!vm.resetting && mb[W_MAGIC] == MBOX_MAGIC && mb[W_BOOT_COUNT] > after) {
            mbox_record(rec, sizeof rec, cpu);
            emit(seq, "OK 1 %s", rec);
            break;
        }
        if (expired(&d)) {
            emit(seq, "Z");
            break;
        }
        pthread_cond_timedwait(&cv, &mu, &d);
    }
    pthread_mutex_unlock(&mu);
}

static void cmd_create(const char *seq, char **tok)
{
    char err[256];
    int n = (int)dec(tok[2]);
    int flags = (int)dec(tok[3]);
    uint64_t ms = dec(tok[4]);
    vm.call_ms = tok[5] != NULL ? dec(tok[5]) : 1000;
    if (n < 1 || n > MAX_CPUS) {
        emit(seq, "ERR ncpus must be 1..%d", MAX_CPUS);
        return;
    }
    if (kvm_fd < 0) {
        emit(seq, "ERR no /dev/kvm");
        return;
    }
    vm_destroy();
    if (vm_create(n, flags, err, sizeof err) < 0) {
        vm_destroy();
        emit(seq, "ERR %s", err);
        return;
    }
    struct timespec d = deadline_ms(ms ? ms : 5000);
    pthread_mutex_lock(&mu);
    vu64 *mb = mbox(0);
    for (;;) {
        if (vm.state != VM_RUNNING) {
            emit(seq, "ERR the VM stopped before the agent was ready: %s", vm.exit_reason);
            break;
        }
        if (mb[W_BOOT_COUNT] >= 1 && serving(mb)) {
            emit(seq, "OK %lx", vm.generation);
            break;
        }
        if (expired(&d)) {
            char rec[512];
            mbox_record(rec, sizeof rec, 0);
            emit(seq, "ERR the agent was not ready: cpu0 %s", rec);
            break;
        }
        pthread_cond_timedwait(&cv, &mu, &d);
    }
    pthread_mutex_unlock(&mu);
}

static void command(char *line)
{
    char *tok[MAX_TOK + 1] = {0};
    int ntok = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t && ntok < MAX_TOK;
         t = strtok_r(NULL, " \t\r", &save))
        tok[ntok++] = t;
    if (ntok < 2)
        return;
    const char *seq = tok[0];
    char rec[512];
    switch (tok[1][0]) {
    case 'H':
        emit(seq, "OK %d %d %lx", vm.state, vm.n, vm.generation);
        break;
    case 'V':
        cmd_create(seq, tok);
        break;
    case 'D':
        vm_destroy();
        emit(seq, "OK");
        break;
    case 'I': {
        if (vm.state == VM_NONE) {
            emit(seq, "ERR no VM");
            break;
        }
        char buf[1024];
        size_t n = 0;
        vu64 *info = info_page();
        for (int i = 0; i < 24; i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, " %lx", info[i]);
        emit(seq, "OK%s", buf);
        break;
    }
    case 'M': {
        int cpu = cpu_arg(seq, tok[2]);
        if (cpu < 0)
            break;
        pthread_mutex_lock(&mu);
        mbox_record(rec, sizeof rec, cpu);
        emit(seq, "OK %d %s", vm.state == VM_RUNNING && !vm.resetting, rec);
        pthread_mutex_unlock(&mu);
        break;
    }
    case 'C':
    case 'F':
    case 'G':
        cmd_call(seq, tok, ntok);
        break;
    case 'B':
        cmd_bench(seq, tok);
        break;
    case 'P':
        cmd_pending(seq, tok);
        break;
    case 'W':
        cmd_wait_started(seq, tok);
        break;
    case 'A':
        pthread_mutex_lock(&out_mu);
        if (tok[2] != NULL && strcmp(tok[2], last_seq) == 0) {
            write_all(last_reply, strlen(last_reply));
            pthread_mutex_unlock(&out_mu);
        } else {
            pthread_mutex_unlock(&out_mu);
            emit(seq, "Z");
        }
        break;
    default:
        emit(seq, "ERR unknown command %s", tok[1]);
    }
}

/* --- start-up --------------------------------------------------------------------------- */
static void report_kernel_log(void)
{
    static char buf[1 << 20];
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, (int)sizeof buf - 1);
    if (n <= 0)
        return;
    buf[n] = 0;
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (strstr(l, "kvm") || strstr(l, "KVM") || strstr(l, "Kernel command line")
            || strstr(l, "Linux version"))
            emit("-", "K %s", l);
}

static void load_agent_file(void)
{
    int fd = open("/agent.elf", O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return;
    agent_img = malloc((size_t)st.st_size);
    ssize_t got = 0;
    while (agent_img && got < st.st_size) {
        ssize_t r = read(fd, agent_img + got, (size_t)(st.st_size - got));
        if (r <= 0)
            break;
        got += r;
    }
    agent_len = (size_t)got;
    close(fd);
}

int main(void)
{
    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mkdir("/proc", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mkdir("/sys", 0755);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    tty = open("/dev/ttyAMA0", O_RDWR | O_NOCTTY);
    if (tty >= 0) {
        struct termios t;
        if (tcgetattr(tty, &t) == 0) {
            cfmakeraw(&t);
            t.c_cc[VMIN] = 1;
            t.c_cc[VTIME] = 0;
            tcsetattr(tty, TCSANOW, &t);
        }
    }
    /* Only emergencies on the console from now on: kernel messages would cut our lines. */
    klogctl(8 /* SYSLOG_ACTION_CONSOLE_LEVEL */, NULL, 1);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    struct sigaction sa = {.sa_handler = on_kick};
    sigemptyset(&sa.sa_mask);
    sigaction(KICK_SIG, &sa, NULL);
    vm.fd = -1;
    for (int i = 0; i < MAX_CPUS; i++)
        vm.cpu[i].fd = -1;

    /* One outer CPU for this program and its vCPU threads: a request hands over from one
     * thread to another twice, and a wake-up on the same CPU needs no IPI (measured under
     * TCG: 1,150-1,450 calls/s inside this program pinned, ~700/s not). */
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    /* The channel: the virtio-serial port "pvspec" when the host asked for it
     * (pvspec.channel=virtio) and the initramfs has the drivers (/modules), else the
     * console.  The port is found in milliseconds once virtio_console is loaded; without
     * the driver (no /sys/class/virtio-ports) it is not waited for. */
    const char *channel = cmdline_value("pvspec.channel");
    if (channel != NULL && strcmp(channel, "virtio") == 0) {
        load_modules();
        struct stat cls;
        chan = open_vport("pvspec", stat("/sys/class/virtio-ports", &cls) == 0 ? 5000 : 0);
    }
    if (chan < 0)
        emit("-", "CHANNEL console");
    load_agent_file();
    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int api = kvm_fd >= 0 ? ioctl(kvm_fd, KVM_GET_API_VERSION, 0) : -errno;
    int maxv = kvm_fd >= 0 ? ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS) : 0;
    int rs = kvm_fd >= 0 ? ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0) : 0;
    run_size = rs > 0 ? (size_t)rs : 0;
    struct utsname u;
    uname(&u);
    report_kernel_log();
    emit("-", "READY %d %d %zx %s", api, maxv, agent_len, u.release);

    static char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(chan >= 0 ? chan : tty >= 0 ? tty : 0, buf + len, sizeof buf - 1 - len);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            sleep(1);
            continue;
        }
        len += (size_t)r;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', (size_t)(buf + len - start))) != NULL) {
            *nl = 0;
            command(start);
            start = nl + 1;
        }
        len = (size_t)(buf + len - start);
        memmove(buf, start, len);
        if (len == sizeof buf - 1) /* an overlong line: drop it */
            len = 0;
    }
}
