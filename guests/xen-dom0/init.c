/*
 * pvspec xen-dom0 init: the whole userspace of a Linux/arm64 dom0 booted by Xen 4.17 under
 * QEMU (TCG), so that the host suite can make raw Xen hypercalls (event_channel_op) from
 * dom0 through /dev/xen/privcmd (conformance/xen_machine.py drives it).  It judges nothing:
 * it reports what Xen returned.
 *
 * Start-up: mount devtmpfs, proc and sysfs, set the console (/dev/hvc0: dom0's console,
 * multiplexed by Xen onto its serial port) raw, lower the kernel's console log level, load
 * the modules listed in /modules/ORDER (/modules/<name>.ko, finit_module; none when they
 * are built in), wait for /dev/xen/privcmd, open it, open the channel to the host, bring
 * the other vCPUs online (the driver boots dom0 with maxcpus=1: a second vCPU at boot makes
 * the kernel's boot about twice as slow under TCG), set up the callers at once (below) and
 * announce itself there.
 *
 * Calls at once (P): one caller per online vCPU (at most MAX_VCPUS), pinned to it with
 * sched_setaffinity (and checked with sched_getcpu): caller 0 is the main thread (which
 * also serves the channel), the others are threads started once, which sleep on a futex
 * between requests.  A request of n calls releases callers 0..n-1 together; each touches
 * its own struct, meets the others at a barrier (spinning up to pvspec.spin_us
 * microseconds, default SPIN_US, then sleeping until the last one arrives), reads
 * sched_getcpu() and CNTVCT_EL0 and makes its hypercall, then reads CNTVCT_EL0 again.  So
 * the calls start within microseconds of each other when the vCPUs really run at once
 * (under TCG: when the host has a free core for each).
 *
 * The channel: with pvspec.channel=virtio on the kernel command line, the virtio-serial
 * port named "pvspec" (found in /sys/class/virtio-ports; QEMU's virtserialport on
 * virtio-mmio, which Xen passes through to dom0); else the console.  The console is slow
 * (QEMU's PL011 takes one byte per main-loop pass, and Xen keeps only 128 bytes of input
 * for dom0, dropping the rest); the virtio port takes whole buffers.  Lines from before
 * the channel is open (M, FATAL) always go to the console.
 *
 * Host protocol, on the channel.  The host sends lines
 *     <seq> <cmd> <args...> #<check>\n
 * where <check> is the 16-bit fold (h ^ h >> 16) & 0xffff, in hex, of the FNV-1a-32 hash of
 * everything before " #".  A line whose check fails (Xen's serial input ring drops bytes
 * when dom0 does not drain it in time) is not executed: the answer is the unsolicited
 * line "N" (the host then asks "A <seq>" and sends the request again if it was not
 * executed).  A request whose <seq> is that of the latest answer is not executed again:
 * that answer is repeated (so the host may always send a request again).  Every request
 * is answered with exactly one line
 *     @@PVK <seq> <kind> <fields...> #<fnv1a-32 of everything before " #", 8 hex digits>\n
 * plus unsolicited lines with seq "-".  Other lines on the console (kernel or Xen messages)
 * are not ours; the checksum catches a line a message cut through, and "A <seq>" repeats
 * the latest answer.
 *
 * A struct is given as hex bytes in memory order; trailing zero bytes may be left out
 * (every input byte costs ~50 us on the serial line) and are added back up to the
 * command's struct size (below; an unknown command: as many bytes as were sent).  Answers
 * leave out the struct's trailing zero bytes the same way (the host knows the size).
 * An empty struct is written "-".  <rc> is the hypercall's return value, signed decimal
 * (0 or -errno).  Everything else is hex.
 *
 *   H                        -> OK <major> <minor> <domid> <planted>
 *   E <cmd> <hex>            one event_channel_op(cmd, &struct) -> R <rc> <hex after>
 *   B <cmd>:<hex> ...        several, in order, one after the other
 *                            -> R <rc>:<hex after> ... (one item per request item)
 *   P <cmd>:<hex> ...        calls at once, item i from caller i (on vCPU i), at most
 *                            <vcpus> of them -> R <rc>:<hex after>:<cpu>:<t0>:<t1> ...
 *                            (<cpu>: sched_getcpu() before the call, decimal; <t0>, <t1>:
 *                            CNTVCT_EL0 right before and right after it)
 *   X <op> <a0> .. <a4>      a raw hypercall, arguments as given (missing ones 0), for
 *                            op 17 (xen_version), 32 (event_channel_op) or an op >= 56
 *                            (none is defined: Xen answers -ENOSYS) -> R <rc>
 *                            (others: ERR, so that no request can shut Xen down by
 *                            accident)
 *   A <seq>                  repeat the answer to <seq> if it was the latest, else Z
 *                            (<seq> was not executed; Z is not remembered as its answer)
 * Unsolicited: READY <major> <minor> <domid> <planted> <kernel release> <extraversion>
 * <vcpus> <counter frequency> (<vcpus>: the callers pinned, decimal; the frequency is
 * CNTFRQ_EL0's), M <module> <0 or -errno of finit_module>, N (a request line failed its
 * check), FATAL <text> (set-up failed; the init then waits for good), CHANNEL <name> (on
 * the console: where the protocol runs), ONLINE <cpu> <-errno> (a vCPU did not come
 * online), PIN <caller> <0 or -errno> <cpu> (a caller that is not on its vCPU; the callers
 * from it on are not used).
 * <domid> is found at start-up: alloc_unbound(DOMID_SELF, remote DOMID_SELF) names this
 * domain as the port's remote end (status), and the port is closed again; -1 if that
 * failed.  <planted> is "-", or "close" with pvspec.planted=close on the kernel command
 * line: a planted bug for the harness's own tests, which reports every EVTCHNOP_close as
 * returning 0 whatever Xen said.  Damaged lines (N) are a console matter: on the virtio
 * port the checks are kept all the same.
 *
 * Built static (aarch64-linux-gnu-gcc -static); it is PID 1, so it never exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <dirent.h>
#include <sys/utsname.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* include/uapi/xen/privcmd.h (its header pulls in kernel-internal ones: not usable here) */
struct privcmd_hypercall {
    uint64_t op;
    uint64_t arg[5];
};
#define IOCTL_PRIVCMD_HYPERCALL _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall))

#define HYPERVISOR_xen_version 17
#define HYPERVISOR_event_channel_op 32
#define XENVER_version 0
#define XENVER_extraversion 1
#define EVTCHNOP_close 3
#define EVTCHNOP_status 5
#define EVTCHNOP_alloc_unbound 6
#define DOMID_SELF 0x7FF0
#define EVTCHNSTAT_unbound 1

#define MARK "@@PVK " /* as guests/kvm-init: the host reads both alike */
#define MAX_STRUCT 256
#define MAX_LINE 8192
#define MAX_ITEMS 128
#define MAX_VCPUS 8 /* callers at once: one per online vCPU, at most this many */
#define SPIN_US 1000 /* how long a caller waits at a barrier before it sleeps */

/* struct evtchn_* sizes by EVTCHNOP_* (xen/include/public/event_channel.h) */
static const size_t struct_size[] = {
    12, /* 0 bind_interdomain: domid_t remote_dom; port remote_port; port local_port */
    12, /* 1 bind_virq: virq, vcpu, port */
    12, /* 2 bind_pirq: pirq, flags, port */
    4,  /* 3 close: port */
    4,  /* 4 send: port */
    24, /* 5 status: domid_t dom; port; status; vcpu; union (8) */
    8,  /* 6 alloc_unbound: domid_t dom, remote_dom; port */
    8,  /* 7 bind_ipi: vcpu, port */
    8,  /* 8 bind_vcpu: port, vcpu */
    4,  /* 9 unmask: port */
    2,  /* 10 reset: domid_t dom */
    24, /* 11 init_control: control_gfn (8), offset, vcpu, link_bits, _pad[7] */
    8,  /* 12 expand_array: array_gfn */
    8,  /* 13 set_priority: port, priority */
};

static int tty = -1, chan = -1, privcmd = -1; /* the console, the channel to the host */
static int planted_close;
static long domid = -1, xen_ver = -1;
static char last_seq[32], last_reply[MAX_LINE + 64];
/* a command struct: in this program's memory, touched before every call */
union cmd_struct {
    uint8_t b[MAX_STRUCT];
    uint64_t align;
};
static union cmd_struct arg; /* the main thread's (H, E, B, X) */

/* --- output ----------------------------------------------------------------------------- */
static void write_all(const char *s, size_t n)
{
    int fd = chan >= 0 ? chan : tty >= 0 ? tty : 1;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
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

/* One protocol line: MARK seq body #checksum; remembered (for A and repeated requests)
 * if remember. */
static void vemit(const char *seq, int remember, const char *fmt, va_list ap)
{
    static char line[MAX_LINE + 64];
    int n = snprintf(line, sizeof line, MARK "%s ", seq);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 16, fmt, ap);
    if (n > (int)sizeof line - 16)
        n = (int)sizeof line - 16;
    for (int i = 0; i < n; i++) /* one line, printable */
        if (line[i] == '\n' || line[i] == '\r' || line[i] == '#')
            line[i] = ' ';
    n += snprintf(line + n, sizeof line - (size_t)n, " #%08x\n", fnv1a(line, (size_t)n));
    if (remember) {
        snprintf(last_seq, sizeof last_seq, "%s", seq);
        memcpy(last_reply, line, (size_t)n + 1);
    }
    write_all(line, (size_t)n);
}

/* An answer (remembered) or, with seq "-", an unsolicited line. */
__attribute__((format(printf, 2, 3))) static void emit(const char *seq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(seq, strcmp(seq, "-") != 0, fmt, ap);
    va_end(ap);
}

/* An answer that is not remembered (Z: the request it answers may still come). */
__attribute__((format(printf, 2, 3))) static void emit_once(const char *seq, const char *fmt,
                                                             ...)
{
    va_list ap;
    va_start(ap, fmt);
    vemit(seq, 0, fmt, ap);
    va_end(ap);
}

/* cmdline_value, load_modules, open_vport: shared with guests/kvm-init (needs emit) */
#include "../kvm-init/linux_channel.h"

/* --- hypercalls ------------------------------------------------------------------------- */
/* The raw hypercall through privcmd: its return value, or -errno when the ioctl failed
 * (the kernel returns Xen's -errno as the system call's result, which the C library turns
 * into -1 and errno). */
static long hypercall(uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                      uint64_t a4)
{
    struct privcmd_hypercall h = {.op = op, .arg = {a0, a1, a2, a3, a4}};
    if (privcmd < 0)
        return -ENODEV;
    long r = syscall(SYS_ioctl, privcmd, IOCTL_PRIVCMD_HYPERCALL, &h);
    return r == -1 ? -(long)errno : r;
}

static size_t size_of(unsigned long cmd, size_t sent)
{
    size_t want = cmd < sizeof struct_size / sizeof struct_size[0] ? struct_size[cmd] : 0;
    return sent > want ? sent : want;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse hex bytes into *st (zeroed first): the number of bytes, -1 if malformed. */
static int parse_struct(union cmd_struct *st, const char *s)
{
    memset(st->b, 0, sizeof st->b);
    if (s == NULL || strcmp(s, "-") == 0 || *s == 0)
        return 0;
    size_t n = strlen(s);
    if (n % 2 != 0 || n / 2 > MAX_STRUCT)
        return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        st->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(n / 2);
}

/* Append "<rc>:<hex>" (or "<rc> <hex>") of st's first size bytes, trailing zeros left out. */
static size_t put_result(char *buf, size_t cap, long rc, char sep, const union cmd_struct *st,
                         size_t size)
{
    size_t last = size;
    while (last > 0 && st->b[last - 1] == 0)
        last--;
    size_t n = (size_t)snprintf(buf, cap, "%ld%c", rc, sep);
    if (last == 0 && n < cap)
        n += (size_t)snprintf(buf + n, cap - n, "-");
    for (size_t i = 0; i < last && n + 3 < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%02x", st->b[i]);
    return n;
}

/* Write to the struct's bytes: its pages are present when Xen reads them. */
static void touch(union cmd_struct *st, size_t size)
{
    volatile uint8_t *p = st->b;
    for (size_t i = 0; i < size; i++)
        p[i] = p[i];
    __asm__ volatile("" ::: "memory");
}

/* event_channel_op on st (size bytes, touched): Xen's result, as planted bugs report it. */
static long evtchn_raw(unsigned long cmd, union cmd_struct *st)
{
    long rc = hypercall(HYPERVISOR_event_channel_op, cmd, (uint64_t)(uintptr_t)st->b, 0, 0, 0);
    __asm__ volatile("" ::: "memory");
    if (planted_close && cmd == EVTCHNOP_close)
        rc = 0; /* the planted bug: a failed close reported as a success */
    return rc;
}

/* One event_channel_op on st (size bytes). */
static long evtchn_op(unsigned long cmd, union cmd_struct *st, size_t size)
{
    touch(st, size);
    return evtchn_raw(cmd, st);
}

/* --- calls at once, from threads pinned to distinct vCPUs ------------------------------- */
/* CNTVCT_EL0 (Linux lets EL0 read the virtual counter, as the vDSO does) and CNTFRQ_EL0. */
static inline uint64_t counter(void)
{
    uint64_t v;
    __asm__ volatile("isb\n\tmrs %0, cntvct_el0" : "=r"(v)::"memory");
    return v;
}

static uint64_t counter_hz(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(v));
    return v;
}

/* The caller on one vCPU: workers[0] is the main thread, the others are threads of their
 * own; each is pinned to vCPU index. */
struct worker {
    int index;     /* the vCPU it is pinned to */
    int pinned;    /* 1: sched_getcpu() said index after sched_setaffinity; 0 not; -errno */
    int start_cpu; /* sched_getcpu() after pinning */
    /* the current request's call, written by the main thread before the release */
    unsigned long cmd;
    size_t size;
    union cmd_struct st;
    /* its result, written by the caller before it counts itself finished */
    long rc;
    int cpu;         /* sched_getcpu() right before the call */
    uint64_t t0, t1; /* CNTVCT_EL0 right before and right after the call */
} __attribute__((aligned(64)));

static struct worker workers[MAX_VCPUS];
static int n_workers, vcpus; /* callers set up; the leading ones that are pinned */
static uint64_t spin_ticks;  /* how long a caller spins before it sleeps (pvspec.spin_us) */
/* The release: (request number << 4) | how many callers take part (1..MAX_VCPUS, the
 * first ones).  One word, so that a thread waking late reads a consistent pair. */
static _Atomic uint32_t release;
static _Atomic int set_up;
/* a count some threads wait for, and how many of them sleep on its futex */
struct count {
    _Atomic int value;
    _Atomic int sleepers;
};
static struct count arrived, finished;

static void futex_wait(void *addr, int val)
{
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(void *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Count one up; wake the sleepers once it reaches target. */
static void count_up(struct count *c, int target)
{
    if (atomic_fetch_add(&c->value, 1) + 1 >= target && atomic_load(&c->sleepers) > 0)
        futex_wake((void *)&c->value);
}

/* Wait until c reaches target: spin for spin_ticks, then sleep.  (A sleeper counts itself
 * before it looks again, and count_up looks at the sleepers after it counted: one of the
 * two sees the other.) */
static void await_count(struct count *c, int target)
{
    uint64_t until = counter() + spin_ticks;
    while (atomic_load(&c->value) < target) {
        if (counter() < until) {
            __asm__ volatile("yield" ::: "memory");
            continue;
        }
        atomic_fetch_add(&c->sleepers, 1);
        int v;
        while ((v = atomic_load(&c->value)) < target)
            futex_wait((void *)&c->value, v);
        atomic_fetch_sub(&c->sleepers, 1);
        break;
    }
}

static void pin(struct worker *w)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->index, &set);
    int err = sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
    w->start_cpu = sched_getcpu();
    w->pinned = err != 0 ? -err : w->start_cpu == w->index;
}

/* One caller's part of a request of n calls: touch its struct, meet the others at the
 * barrier, call. */
static void call_at_once(struct worker *w, int n)
{
    touch(&w->st, w->size);
    count_up(&arrived, n);
    await_count(&arrived, n);
    w->cpu = sched_getcpu();
    w->t0 = counter();
    w->rc = evtchn_raw(w->cmd, &w->st);
    w->t1 = counter();
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    pin(w);
    atomic_fetch_add(&set_up, 1);
    futex_wake((void *)&set_up);
    uint32_t seen = 0;
    for (;;) {
        uint32_t r;
        while ((r = atomic_load(&release)) == seen)
            futex_wait((void *)&release, (int)seen);
        seen = r;
        int n = (int)(r & 15);
        if (w->index >= n)
            continue;
        call_at_once(w, n);
        count_up(&finished, n - 1);
    }
    return NULL;
}

/* Pin the main thread to vCPU 0 and start a thread pinned to each other online vCPU (at
 * most MAX_VCPUS in all); vcpus is how many of the first ones are pinned.  Callers spin
 * spin_us microseconds at a barrier before they sleep. */
static void start_workers(unsigned long long spin_us)
{
    spin_ticks = spin_us * counter_hz() / 1000000;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int want = online < 1 ? 1 : online > MAX_VCPUS ? MAX_VCPUS : (int)online;
    pin(&workers[0]);
    n_workers = 1;
    for (int i = 1; i < want; i++) {
        pthread_t t;
        pthread_attr_t a;
        workers[i].index = i;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 64 << 10);
        int bad = pthread_create(&t, &a, worker_main, &workers[i]);
        pthread_attr_destroy(&a);
        if (bad)
            break;
        n_workers++;
    }
    int s;
    while ((s = atomic_load(&set_up)) < n_workers - 1)
        futex_wait((void *)&set_up, s);
    while (vcpus < n_workers && workers[vcpus].pinned == 1)
        vcpus++;
    for (int i = 0; i < n_workers; i++)
        if (workers[i].pinned != 1)
            emit("-", "PIN %d %d %d", i, workers[i].pinned, workers[i].start_cpu);
}

/* Release callers 0..n-1 together (their calls are set; the main thread is caller 0) and
 * wait until all are done. */
static void run_at_once(int n)
{
    atomic_store(&arrived.value, 0);
    atomic_store(&finished.value, 0);
    atomic_store(&release, ((atomic_load(&release) >> 4) + 1) << 4 | (uint32_t)n);
    if (n > 1)
        futex_wake((void *)&release);
    call_at_once(&workers[0], n);
    await_count(&finished, n - 1);
}

/* --- commands --------------------------------------------------------------------------- */
#define MAX_TOK (MAX_ITEMS + 4)

static int parse_num(const char *s, int base, unsigned long *out)
{
    char *end;
    if (s == NULL || *s == 0)
        return -1;
    errno = 0;
    *out = strtoul(s, &end, base);
    return *end != 0 || errno != 0 ? -1 : 0;
}

static void cmd_one(const char *seq, char **tok, int ntok)
{
    unsigned long cmd;
    if (ntok < 3 || parse_num(tok[2], 16, &cmd) < 0) {
        emit(seq, "ERR E needs <cmd> [<hex>]");
        return;
    }
    int sent = parse_struct(&arg, ntok > 3 ? tok[3] : NULL);
    if (sent < 0) {
        emit(seq, "ERR bad struct bytes");
        return;
    }
    size_t size = size_of(cmd, (size_t)sent);
    long rc = evtchn_op(cmd, &arg, size);
    char out[2 * MAX_STRUCT + 32];
    put_result(out, sizeof out, rc, ' ', &arg, size);
    emit(seq, "R %s", out);
}

static void cmd_batch(const char *seq, char **tok, int ntok)
{
    static char out[MAX_LINE];
    size_t n = 0;
    for (int i = 2; i < ntok; i++) { /* check every item before running any */
        char *colon = strchr(tok[i], ':');
        unsigned long cmd;
        if (colon == NULL) {
            emit(seq, "ERR item %d has no ':'", i - 2);
            return;
        }
        *colon = 0;
        int bad = parse_num(tok[i], 16, &cmd) < 0 || parse_struct(&arg, colon + 1) < 0;
        *colon = ':';
        if (bad) {
            emit(seq, "ERR bad item %d", i - 2);
            return;
        }
    }
    for (int i = 2; i < ntok; i++) {
        char *colon = strchr(tok[i], ':');
        unsigned long cmd;
        *colon = 0;
        parse_num(tok[i], 16, &cmd);
        size_t size = size_of(cmd, (size_t)parse_struct(&arg, colon + 1));
        long rc = evtchn_op(cmd, &arg, size);
        if (n > 0 && n < sizeof out - 1)
            out[n++] = ' ';
        n += put_result(out + n, sizeof out - n, rc, ':', &arg, size);
        if (n >= sizeof out - 1) {
            emit(seq, "ERR answer too long");
            return;
        }
    }
    out[n] = 0;
    emit(seq, "R %s", out);
}

/* P: item i on worker i, all released together. */
static void cmd_at_once(const char *seq, char **tok, int ntok)
{
    static char out[MAX_LINE];
    int n = ntok - 2;
    if (n < 1 || n > vcpus) {
        emit(seq, "ERR P takes 1..%d items, not %d", vcpus, n);
        return;
    }
    for (int i = 0; i < n; i++) {
        char *colon = strchr(tok[2 + i], ':');
        unsigned long cmd;
        int sent = -1;
        if (colon != NULL) {
            *colon = 0;
            if (parse_num(tok[2 + i], 16, &cmd) == 0)
                sent = parse_struct(&workers[i].st, colon + 1);
            *colon = ':';
        }
        if (sent < 0) {
            emit(seq, "ERR bad item %d", i);
            return;
        }
        workers[i].cmd = cmd;
        workers[i].size = size_of(cmd, (size_t)sent);
    }
    run_at_once(n);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        struct worker *w = &workers[i];
        if (i > 0)
            out[len++] = ' ';
        len += put_result(out + len, sizeof out - len - 64, w->rc, ':', &w->st, w->size);
        len += (size_t)snprintf(out + len, sizeof out - len, ":%d:%llx:%llx", w->cpu,
                                (unsigned long long)w->t0, (unsigned long long)w->t1);
    }
    emit(seq, "R %s", out);
}

static int op_allowed(unsigned long op)
{
    return op == HYPERVISOR_xen_version || op == HYPERVISOR_event_channel_op || op >= 56;
}

static void cmd_raw(const char *seq, char **tok, int ntok)
{
    unsigned long op, a[5] = {0, 0, 0, 0, 0};
    if (ntok < 3 || parse_num(tok[2], 16, &op) < 0) {
        emit(seq, "ERR X needs <op> [<a0>..<a4>]");
        return;
    }
    if (!op_allowed(op)) {
        emit(seq, "ERR op %lx is not allowed", op);
        return;
    }
    for (int i = 0; i < 5 && 3 + i < ntok; i++)
        if (parse_num(tok[3 + i], 16, &a[i]) < 0) {
            emit(seq, "ERR bad argument a%d", i);
            return;
        }
    emit(seq, "R %ld", hypercall(op, a[0], a[1], a[2], a[3], a[4]));
}

static void command(char *line)
{
    if (*line == 0) /* a stray newline */
        return;
    /* the check: " #xxxx" at the end */
    char *cut = strrchr(line, '#');
    unsigned long check;
    if (cut == NULL || cut == line || cut[-1] != ' ' || parse_num(cut + 1, 16, &check) < 0
        || strlen(cut + 1) != 4) {
        emit("-", "N");
        return;
    }
    uint32_t h = fnv1a(line, (size_t)(cut - 1 - line));
    if (((h ^ (h >> 16)) & 0xffff) != check) {
        emit("-", "N");
        return;
    }
    cut[-1] = 0;
    char *tok[MAX_TOK + 1] = {0};
    int ntok = 0;
    for (char *save = NULL, *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        if (ntok == MAX_TOK) {
            emit(tok[0], "ERR too many items (at most %d)", MAX_ITEMS);
            return;
        }
        tok[ntok++] = t;
    }
    if (ntok < 2)
        return;
    const char *seq = tok[0];
    if (strcmp(seq, last_seq) == 0) { /* sent again: answered, never executed twice */
        write_all(last_reply, strlen(last_reply));
        return;
    }
    switch (tok[1][0]) {
    case 'H':
        emit(seq, "OK %lx %lx %ld %s", (unsigned long)xen_ver >> 16,
             (unsigned long)xen_ver & 0xffff, domid, planted_close ? "close" : "-");
        break;
    case 'E':
        cmd_one(seq, tok, ntok);
        break;
    case 'B':
        cmd_batch(seq, tok, ntok);
        break;
    case 'P':
        cmd_at_once(seq, tok, ntok);
        break;
    case 'X':
        cmd_raw(seq, tok, ntok);
        break;
    case 'A':
        if (tok[2] != NULL && strcmp(tok[2], last_seq) == 0)
            write_all(last_reply, strlen(last_reply));
        else
            emit_once(seq, "Z");
        break;
    default:
        emit(seq, "ERR unknown command %s", tok[1]);
    }
}

/* --- start-up --------------------------------------------------------------------------- */
static void hang(void)
{
    for (;;)
        pause();
}

/* Bring the secondary CPUs the kernel left offline (maxcpus=1 on its command line: they
 * would make the boot slower) online: /sys/devices/system/cpu/cpu<N>/online.  A CPU that
 * does not come up is reported (ONLINE <N> <-errno>). */
static void online_cpus(void)
{
    for (int i = 1; i < MAX_VCPUS; i++) {
        char path[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/online", i);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                break; /* no such CPU */
            emit("-", "ONLINE %d %d", i, -errno);
            continue;
        }
        if (write(fd, "1", 1) != 1)
            emit("-", "ONLINE %d %d", i, -errno);
        close(fd);
    }
}

/* This domain's id: the remote end Xen records for alloc_unbound(DOMID_SELF, DOMID_SELF). */
static long find_domid(void)
{
    memset(arg.b, 0, sizeof arg.b);
    uint16_t self = DOMID_SELF;
    memcpy(arg.b, &self, 2);
    memcpy(arg.b + 2, &self, 2);
    if (evtchn_op(EVTCHNOP_alloc_unbound, &arg, 8) != 0)
        return -1;
    uint32_t port;
    memcpy(&port, arg.b + 4, 4);
    memset(arg.b, 0, sizeof arg.b);
    memcpy(arg.b, &self, 2);
    memcpy(arg.b + 4, &port, 4);
    long rc = evtchn_op(EVTCHNOP_status, &arg, 24);
    uint32_t status;
    uint16_t remote;
    memcpy(&status, arg.b + 8, 4);
    memcpy(&remote, arg.b + 16, 2);
    memset(arg.b, 0, sizeof arg.b);
    memcpy(arg.b, &port, 4);
    evtchn_op(EVTCHNOP_close, &arg, 4);
    return rc == 0 && status == EVTCHNSTAT_unbound ? (long)remote : -1;
}

int main(void)
{
    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    mkdir("/proc", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mkdir("/sys", 0755);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    tty = open("/dev/hvc0", O_RDWR | O_NOCTTY);
    if (tty < 0)
        tty = open("/dev/console", O_RDWR | O_NOCTTY);
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
    const char *planted = cmdline_value("pvspec.planted");
    planted_close = planted != NULL && strcmp(planted, "close") == 0;
    const char *channel = cmdline_value("pvspec.channel");
    int virtio = channel != NULL && strcmp(channel, "virtio") == 0;
    const char *spin = cmdline_value("pvspec.spin_us");
    unsigned long long spin_us = spin != NULL ? strtoull(spin, NULL, 10) : SPIN_US;

    load_modules();
    for (int i = 0; i < 500; i++) { /* up to 5 s for the device node */
        privcmd = open("/dev/xen/privcmd", O_RDWR | O_CLOEXEC);
        if (privcmd >= 0 || (errno != ENOENT && errno != ENODEV && errno != ENXIO))
            break;
        struct timespec ten_ms = {0, 10000000L};
        nanosleep(&ten_ms, NULL);
    }
    if (privcmd < 0) {
        emit("-", "FATAL cannot open /dev/xen/privcmd: %s", strerror(errno));
        hang();
    }
    if (virtio) {
        chan = open_vport("pvspec", 10000);
        if (chan < 0) {
            emit("-", "FATAL no virtio-serial port named pvspec (modules virtio_mmio and "
                      "virtio_console, QEMU's virtserialport,name=pvspec)");
            hang();
        }
    } else {
        emit("-", "CHANNEL console");
    }
    long version = xen_ver = hypercall(HYPERVISOR_xen_version, XENVER_version, 0, 0, 0, 0);
    if (version < 0) {
        emit("-", "FATAL xen_version(XENVER_version) returned %ld", version);
        hang();
    }
    char extra[17] = {0};
    memset(arg.b, 0, sizeof arg.b);
    if (hypercall(HYPERVISOR_xen_version, XENVER_extraversion, (uint64_t)(uintptr_t)arg.b, 0,
                  0, 0) == 0)
        memcpy(extra, arg.b, 16);
    for (char *c = extra; *c; c++)
        if (*c <= ' ' || *c > '~' || *c == '#')
            *c = '_';
    domid = find_domid();
    online_cpus();
    start_workers(spin_us);
    struct utsname u;
    uname(&u);
    emit("-", "READY %lx %lx %ld %s %s %s %d %llx", (unsigned long)version >> 16,
         (unsigned long)version & 0xffff, domid, planted_close ? "close" : "-", u.release,
         extra[0] ? extra : "-", vcpus, (unsigned long long)counter_hz());

    static char buf[MAX_LINE];
    size_t len = 0;
    int in = chan >= 0 ? chan : tty >= 0 ? tty : 0;
    for (;;) {
        ssize_t r = read(in, buf + len, sizeof buf - 1 - len);
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
            if (nl > start && nl[-1] == '\r')
                nl[-1] = 0;
            command(start);
            start = nl + 1;
        }
        len = (size_t)(buf + len - start);
        memmove(buf, start, len);
        if (len == sizeof buf - 1) { /* an overlong line: drop it */
            len = 0;
            emit("-", "N");
        }
    }
}
