/* pvhv: a hypervisor model in C behind the pvspec stdio protocol (docs/PROTOCOL.md).
 *
 * It implements the hypercall ABI of spec/hypercalls/abi.py with exactly the
 * specification's deterministic choices (lowest free host frame, lowest free transaction
 * slot, lowest free port), for whatever configuration it is reset to.  Build:
 *
 *     cc -O2 -Wall -Werror -o pvhv pvhv.c json.c
 *
 * Faulty variants, one planted bug each (compile with -DBUG_<NAME>):
 *
 *   BUG_NO_PRIV_CHECK        missing permission check: any VM may run control calls
 *   BUG_RO_SHARE_RW          a read-only grant is mapped writable at retrieve
 *   BUG_RECLAIM_RETRIEVED    reclaim succeeds while a borrower still maps the memory
 *   BUG_DESTROY_FREES_MAPPED destroy frees frames a borrower still maps (XSA-218/230)
 *   BUG_SEND_UNBOUND         an event is sent through an unbound port
 *   BUG_ERROR_PRECEDENCE     argument checks run before the privilege check
 *   BUG_NO_QUOTA             MEM_POPULATE ignores the quota
 *   BUG_CRASH_MALFORMED      aborts on a register with bit 63 set in a 16-bit field
 *
 * A correct target that makes its own choices where the spec allows any (protocol 1.1,
 * init_ok declares a "profile", see docs/PROTOCOL.md; without -DLOOSE nothing of it is
 * compiled in and the adapter is the v1 one above, byte for byte):
 *
 *     cc -O2 -Wall -Werror -DLOOSE -o pvhv-loose pvhv.c json.c
 *
 *   port_allocation any-free  EVTCHN_ALLOC_UNBOUND and EVTCHN_BIND_INTERDOMAIN return the
 *                             HIGHEST closed port of the caller (EVTCHN_STATUS reports the
 *                             remote port by the remote VM's own number)
 *   handle_allocation any-free  MEM_SHARE/LEND/DONATE return a pseudo-random 16-bit handle
 *                             (xorshift32 from a fixed seed, restarted by every reset; a
 *                             value that is live or 0xFFFF is skipped), mapped to the
 *                             internal transaction slot; a value naming no live transaction
 *                             is INVALID_PARAMETERS, as for a freed handle
 *   power_on async            an ON_PENDING vCPU becomes ON by itself, at the start of a
 *                             hypercall (before its caller check), at the first of:
 *                             - a hypercall made by that vCPU, its VM running (the vCPU is
 *                               being run: that call is allowed);
 *                             - the hypercall that follows ASYNC_DELAY (64) hypercalls after
 *                               its CPU_ON (by any VM, whatever their outcome; events and
 *                               probes do not count).
 *                             Until then AFFINITY_INFO says ON_PENDING.  VCPU_START is
 *                             accepted and ignored.  (The long delay keeps vCPUs pending
 *                             long enough for the oracle to meet ON_PENDING; the own-call
 *                             start keeps counterexamples short.)
 *
 * Planted bugs on top of LOOSE (compile with -DLOOSE -DBUG_<NAME>):
 *
 *   BUG_HANDLE_REUSE           every 3rd transaction allocated while another is live gets
 *                              a handle that is still live (the lowest live slot's)
 *   BUG_PORT_OOR               every 3rd successful EVTCHN_ALLOC_UNBOUND returns the port
 *                              plus n_ports (>= n_ports; the channel opens at the port)
 *   BUG_DOUBLE_CPU_ON          CPU_ON of an ON_PENDING vCPU succeeds (restarts the wait)
 *                              instead of answering ON_PENDING
 *   BUG_AFFINITY_OFF_AFTER_RUN AFFINITY_INFO says OFF (1) for a vCPU that CPU_ON powered
 *                              on once it has become ON
 *   BUG_ERROR_OUTSIDE          EVTCHN_SEND on a closed port answers BUSY (-4), an error
 *                              outside the call's set, instead of INVALID_PARAMETERS
 *   BUG_REFINEMENT_BROKEN      declares port_allocation "lowest-free" (the refinement) but
 *                              still allocates the highest closed port
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

#ifndef PVHV_ABI_VERSION
#define PVHV_ABI_VERSION "1.0"
#endif
#ifdef PVHV_ABIS
#include "ffa.h"
#include "pvhv.h"
#include "xen.h"
#define ABIS_PROFILE "\"encodings\":\"ffa,xen\""
#define ABIS_CAPABILITY ",\"abi_call\""
#else
#define ABIS_CAPABILITY ""
#endif
#ifdef LOOSE
#define PROTOCOL_VERSION "1.1"
#ifdef BUG_REFINEMENT_BROKEN
#define PORT_ALLOCATION "lowest-free" /* the bug: held to the lowest, allocates the highest */
#else
#define PORT_ALLOCATION "any-free"
#endif
#define LOOSE_PROFILE "\"port_allocation\":\"" PORT_ALLOCATION "\"," \
                      "\"handle_allocation\":\"any-free\",\"power_on\":\"async\""
#ifdef PVHV_ABIS
#define PROFILE_JSON ",\"profile\":{" LOOSE_PROFILE "," ABIS_PROFILE "}"
#else
#define PROFILE_JSON ",\"profile\":{" LOOSE_PROFILE "}"
#endif
#ifndef ASYNC_DELAY
#define ASYNC_DELAY 64  /* hypercalls after which an ON_PENDING vCPU is ON at the latest */
#endif
#define HANDLE_SEED 0x2545F491u
#elif defined(PVHV_ABIS)
#define PROTOCOL_VERSION "1.1"
#define PROFILE_JSON ",\"profile\":{" ABIS_PROFILE "}"
#else
#define PROTOCOL_VERSION "1.0"
#define PROFILE_JSON ""
#endif
#ifndef LOOSE
#if defined(BUG_HANDLE_REUSE) || defined(BUG_PORT_OOR) || defined(BUG_DOUBLE_CPU_ON) || \
    defined(BUG_AFFINITY_OFF_AFTER_RUN) || defined(BUG_ERROR_OUTSIDE) || \
    defined(BUG_REFINEMENT_BROKEN)
#error "this planted bug is one of the LOOSE target's: compile with -DLOOSE as well"
#endif
#endif

typedef uint64_t u64;

/* ---- state: the same fields as spec/state.py ------------------------------------------ */
#define MAXV 16
#define MAXC 64
#define MAXG 64
#define MAXH 256
#define MAXK 64
#define MAXP 64
#define MAXD 30

#define NONE 0xFFFFu
#define FREE 0xFFFFu
#define HYP 0xFFFEu
#define ORPHAN 0xFFFDu
#define CONTROL 0
enum { ABSENT, RUNNING, PAUSED };
enum { OFF, ON_PENDING, ON };
enum { CLOSED, UNBOUND, INTERDOMAIN };
enum { TX_FREE, SHARE, LEND, DONATE };

typedef struct {
    u64 n_vms, n_vcpus, n_gframes, n_hframes, n_hyp_frames, n_tx, n_ports, n_devices,
        control_quota;
} config;

typedef struct {
    u64 vm_state[MAXV], quota[MAXV];
    u64 vcpu[MAXV * MAXC], irq[MAXV * MAXC];
    u64 owner[MAXH], frame_tx[MAXH];
    u64 s2_valid[MAXV * MAXG], s2_frame[MAXV * MAXG], s2_perm[MAXV * MAXG];
    u64 s2_held[MAXV * MAXG], s2_tx[MAXV * MAXG];
    u64 tx_kind[MAXK], tx_owner[MAXK], tx_base[MAXK], tx_count[MAXK], tx_perm[MAXK];
    u64 tx_borrowers[MAXK], tx_retrieved[MAXK];
    u64 ch_state[MAXV * MAXP], ch_rvm[MAXV * MAXP], ch_rport[MAXV * MAXP];
    u64 ch_pending[MAXV * MAXP], ch_masked[MAXV * MAXP];
    u64 dev_owner[MAXD];
#ifdef LOOSE
    u64 tx_handle[MAXK];     /* the handle value a live transaction slot was handed out as */
    u64 wake[MAXV * MAXC];   /* hypercalls (+1) until an ON_PENDING vCPU is ON; 0: none */
    u64 woke[MAXV * MAXC];   /* became ON by itself after a CPU_ON */
    uint32_t rng;            /* xorshift32 state of the handle generator */
    u64 reuse_tick, oor_tick; /* the planted bugs' "every 3rd" counters */
#endif
} state;

static config K = {3, 2, 3, 5, 1, 2, 2, 2, 2};
static state S;
#define V K.n_vms
#define C K.n_vcpus
#define G K.n_gframes
#define H K.n_hframes
#define NTX K.n_tx
#define P K.n_ports
#define D K.n_devices
#define VC(vm, c) ((vm) * C + (c))
#define VG(vm, g) ((vm) * G + (g))
#define VP(vm, p) ((vm) * P + (p))
#define BIT(x, i) (((x) >> (i)) & 1u)

static void initial(void) {
    memset(&S, 0, sizeof S);
    for (u64 v = 0; v < V; v++) S.vm_state[v] = v == CONTROL ? RUNNING : ABSENT;
    S.quota[CONTROL] = K.control_quota;
    S.vcpu[0] = ON;
    for (u64 f = 0; f < H; f++) { S.owner[f] = f < K.n_hyp_frames ? HYP : FREE; S.frame_tx[f] = NONE; }
    for (u64 i = 0; i < V * G; i++) S.s2_tx[i] = NONE;
    for (u64 k = 0; k < NTX; k++) S.tx_owner[k] = NONE;
    for (u64 i = 0; i < V * P; i++) { S.ch_rvm[i] = NONE; S.ch_rport[i] = NONE; }
    for (u64 d = 0; d < D; d++) S.dev_owner[d] = NONE;
#ifdef LOOSE
    S.rng = HANDLE_SEED;
#endif
}

static u64 access_bits(u64 vm, u64 g) {
    u64 i = VG(vm, g);
    return S.s2_valid[i] && !S.s2_held[i] ? S.s2_perm[i] : 0;
}

static u64 dma_bits(u64 dev, u64 g) {
    u64 o = S.dev_owner[dev];
    return o < V ? access_bits(o, g) : 0;
}

static u64 owned_count(u64 vm) {
    u64 n = 0;
    for (u64 f = 0; f < H; f++) n += S.owner[f] == vm;
    return n;
}

static int live_vm(u64 vm) { return vm < V && S.vm_state[vm] != ABSENT; }
static int other_vm(u64 vm) { return vm < V && vm != CONTROL; }

/* ---- the ABI table ---------------------------------------------------------------------- */
enum space { PSCI, HV };
enum {
    PSCI_SUCCESS = 0, PSCI_INV = -2, PSCI_DENIED = -3, PSCI_ALREADY_ON = -4,
    PSCI_ON_PENDING = -5, PSCI_INVALID_ADDRESS = -9,
};
enum { HV_NOT_SUPPORTED = -1, HV_INV = -2, HV_NO_MEMORY = -3, HV_DENIED = -6 };

typedef enum {
    F_PSCI_VERSION, F_CPU_OFF, F_CPU_ON, F_AFFINITY_INFO, F_HV_VERSION, F_VM_CREATE,
    F_VM_DESTROY, F_VM_PAUSE, F_VM_RESUME, F_MEM_POPULATE, F_MEM_RELEASE, F_MEM_SHARE,
    F_MEM_LEND, F_MEM_DONATE, F_MEM_RETRIEVE, F_MEM_RELINQUISH, F_MEM_RECLAIM,
    F_EVTCHN_ALLOC_UNBOUND, F_EVTCHN_BIND_INTERDOMAIN, F_EVTCHN_SEND, F_EVTCHN_CLOSE,
    F_EVTCHN_MASK, F_EVTCHN_UNMASK, F_EVTCHN_STATUS, F_EVTCHN_CLEAR, F_IRQ_ACK,
    F_DEV_ASSIGN, F_DEV_DEASSIGN,
} handler;

typedef struct {
    const char *name;
    unsigned number, entity, smc64, nargs;
    unsigned width[4];
    int control;
    enum space space;
    handler fn;
} row;

static const row TABLE[] = {
    {"PSCI_VERSION", 0x0, 4, 0, 0, {0}, 0, PSCI, F_PSCI_VERSION},
    {"CPU_OFF", 0x2, 4, 0, 0, {0}, 0, PSCI, F_CPU_OFF},
    {"CPU_ON_32", 0x3, 4, 0, 3, {32, 32, 32}, 0, PSCI, F_CPU_ON},
    {"CPU_ON", 0x3, 4, 1, 3, {64, 64, 64}, 0, PSCI, F_CPU_ON},
    {"AFFINITY_INFO_32", 0x4, 4, 0, 2, {32, 32}, 0, PSCI, F_AFFINITY_INFO},
    {"AFFINITY_INFO", 0x4, 4, 1, 2, {64, 32}, 0, PSCI, F_AFFINITY_INFO},
    {"HV_VERSION", 0x00, 6, 1, 0, {0}, 0, HV, F_HV_VERSION},
    {"VM_CREATE", 0x01, 6, 1, 2, {16, 32}, 1, HV, F_VM_CREATE},
    {"VM_DESTROY", 0x02, 6, 1, 1, {16}, 1, HV, F_VM_DESTROY},
    {"VM_PAUSE", 0x03, 6, 1, 1, {16}, 1, HV, F_VM_PAUSE},
    {"VM_RESUME", 0x04, 6, 1, 1, {16}, 1, HV, F_VM_RESUME},
    {"MEM_POPULATE", 0x10, 6, 1, 2, {32, 3}, 0, HV, F_MEM_POPULATE},
    {"MEM_RELEASE", 0x11, 6, 1, 1, {32}, 0, HV, F_MEM_RELEASE},
    {"MEM_SHARE", 0x20, 6, 1, 4, {32, 32, 16, 3}, 0, HV, F_MEM_SHARE},
    {"MEM_LEND", 0x21, 6, 1, 4, {32, 32, 16, 3}, 0, HV, F_MEM_LEND},
    {"MEM_DONATE", 0x22, 6, 1, 4, {32, 32, 16, 3}, 0, HV, F_MEM_DONATE},
    {"MEM_RETRIEVE", 0x23, 6, 1, 2, {16, 32}, 0, HV, F_MEM_RETRIEVE},
    {"MEM_RELINQUISH", 0x24, 6, 1, 1, {16}, 0, HV, F_MEM_RELINQUISH},
    {"MEM_RECLAIM", 0x25, 6, 1, 1, {16}, 0, HV, F_MEM_RECLAIM},
    {"EVTCHN_ALLOC_UNBOUND", 0x30, 6, 1, 1, {16}, 0, HV, F_EVTCHN_ALLOC_UNBOUND},
    {"EVTCHN_BIND_INTERDOMAIN", 0x31, 6, 1, 2, {16, 16}, 0, HV, F_EVTCHN_BIND_INTERDOMAIN},
    {"EVTCHN_SEND", 0x32, 6, 1, 1, {16}, 0, HV, F_EVTCHN_SEND},
    {"EVTCHN_CLOSE", 0x33, 6, 1, 1, {16}, 0, HV, F_EVTCHN_CLOSE},
    {"EVTCHN_MASK", 0x34, 6, 1, 1, {16}, 0, HV, F_EVTCHN_MASK},
    {"EVTCHN_UNMASK", 0x35, 6, 1, 1, {16}, 0, HV, F_EVTCHN_UNMASK},
    {"EVTCHN_STATUS", 0x36, 6, 1, 1, {16}, 0, HV, F_EVTCHN_STATUS},
    {"EVTCHN_CLEAR", 0x37, 6, 1, 1, {16}, 0, HV, F_EVTCHN_CLEAR},
    {"IRQ_ACK", 0x40, 6, 1, 1, {8}, 0, HV, F_IRQ_ACK},
    {"DEV_ASSIGN", 0x50, 6, 1, 2, {16, 16}, 1, HV, F_DEV_ASSIGN},
    {"DEV_DEASSIGN", 0x51, 6, 1, 1, {16}, 1, HV, F_DEV_DEASSIGN},
};
#define NROWS (sizeof TABLE / sizeof TABLE[0])

static u64 function_id(const row *r) {
    return (u64)1 << 31 | (u64)r->smc64 << 30 | (u64)r->entity << 24 | r->number;
}

static u64 err(const row *r, int psci, int hv) { return (u64)(int64_t)(r->space == PSCI ? psci : hv); }
#define INV(r) err(r, PSCI_INV, HV_INV)
#define DENIED(r) err(r, PSCI_DENIED, HV_DENIED)
#define NO_MEMORY(r) err(r, PSCI_DENIED, HV_NO_MEMORY)

/* ---- transitions: spec/transitions.py, guard for guard ---------------------------------- */
static void unmap(u64 i) {
    S.s2_valid[i] = 0; S.s2_frame[i] = 0; S.s2_perm[i] = 0; S.s2_held[i] = 0; S.s2_tx[i] = NONE;
}

static void raise_irq(u64 vm, u64 vcpu, u64 line) { S.irq[VC(vm, vcpu)] |= (u64)1 << line; }

static void free_tx(u64 k) {
    S.tx_kind[k] = TX_FREE; S.tx_owner[k] = NONE; S.tx_base[k] = 0; S.tx_count[k] = 0;
    S.tx_perm[k] = 0; S.tx_borrowers[k] = 0; S.tx_retrieved[k] = 0;
}

#ifdef LOOSE
/* handle_allocation "any-free": handles are 16-bit values of our own choosing, each mapped
 * to the internal slot it names while the transaction lives */
static int handle_live(u64 h, u64 except) {
    for (u64 k = 0; k < NTX; k++)
        if (k != except && S.tx_kind[k] != TX_FREE && S.tx_handle[k] == h) return 1;
    return 0;
}

static u64 next_random(void) { /* xorshift32, restarted from HANDLE_SEED by every reset */
    uint32_t x = S.rng;
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    S.rng = x;
    return x >> 16;
}

static u64 new_handle(u64 k) { /* slot k was just filled: the handle it is handed out as */
    u64 h;
#ifdef BUG_HANDLE_REUSE
    for (u64 j = 0; j < NTX; j++)
        if (j != k && S.tx_kind[j] != TX_FREE) {
            if (++S.reuse_tick % 3 == 0) return S.tx_handle[k] = S.tx_handle[j]; /* the bug */
            break;
        }
#endif
    do h = next_random(); while (h == NONE || handle_live(h, k));
    return S.tx_handle[k] = h;
}

static u64 slot_of(u64 h) { /* NONE (not a live slot: INVALID_PARAMETERS) if h names none */
    for (u64 k = 0; k < NTX; k++)
        if (S.tx_kind[k] != TX_FREE && S.tx_handle[k] == h) return k;
    return NONE;
}
#define HANDLE_OF(k) new_handle(k)
#define SLOT_OF(h) slot_of(h)
#else
#define HANDLE_OF(k) (k)
#define SLOT_OF(h) (h)
#endif

static u64 cpu_on(const row *r, u64 me, u64 target, u64 entry) {
    if (!(target < C)) return INV(r);
    u64 gfn = (entry >> 12) & (((u64)1 << 52) - 1);
    if (!(gfn < G) || !BIT(access_bits(me, gfn), 2)) return err(r, PSCI_INVALID_ADDRESS, 0);
    u64 i = VC(me, target);
    if (S.vcpu[i] == ON) return err(r, PSCI_ALREADY_ON, 0);
#ifdef BUG_DOUBLE_CPU_ON
    if (S.vcpu[i] == ON_PENDING) { S.wake[i] = ASYNC_DELAY + 1; return 0; } /* the bug */
#else
    if (S.vcpu[i] == ON_PENDING) return err(r, PSCI_ON_PENDING, 0);
#endif
    S.vcpu[i] = ON_PENDING;
#ifdef LOOSE
    S.wake[i] = ASYNC_DELAY + 1; S.woke[i] = 0;
#endif
    return 0;
}

#ifdef LOOSE
/* power_on "async", at the start of every hypercall (before its caller check): an
 * ON_PENDING vCPU becomes ON when the call is its own (the vCPU of a running VM is being
 * run: the call is then allowed), or else when ASYNC_DELAY hypercalls have gone by since
 * its CPU_ON (the call after them finds it ON) */
static void power_tick(u64 vm, u64 vcpu) {
    u64 self = vm < V && vcpu < C && S.vm_state[vm] == RUNNING ? VC(vm, vcpu) : NONE;
    for (u64 i = 0; i < V * C; i++) {
        int due = S.wake[i] && --S.wake[i] == 0;
        if (S.vcpu[i] == ON_PENDING && (due || i == self)) {
            S.vcpu[i] = ON; S.woke[i] = 1; S.wake[i] = 0;
        }
    }
}
#endif

static u64 affinity_info(const row *r, u64 me, u64 target, u64 level) {
    if (level != 0 || !(target < C)) return INV(r);
    u64 power = S.vcpu[VC(me, target)];
#ifdef BUG_AFFINITY_OFF_AFTER_RUN
    if (power == ON && S.woke[VC(me, target)]) return 1; /* the bug: ON reported as OFF */
#endif
    return power == ON ? 0 : power == OFF ? 1 : 2;
}

static u64 vm_create(const row *r, u64 vm, u64 quota) {
    if (!other_vm(vm) || !(quota <= H)) return INV(r);
    if (S.vm_state[vm] != ABSENT) return DENIED(r);
    S.vm_state[vm] = RUNNING; S.quota[vm] = quota; S.vcpu[VC(vm, 0)] = ON;
    return 0;
}

static u64 lifecycle(const row *r, u64 vm, u64 before, u64 after) {
    if (!other_vm(vm)) return INV(r);
    if (S.vm_state[vm] != before) return DENIED(r);
    S.vm_state[vm] = after;
    return 0;
}

static void destroy(u64 vm) {
    int ends[MAXK], orphaned[MAXK];
    u64 borrowers[MAXK], retrieved[MAXK];
    u64 mask = ~((u64)1 << vm);
    for (u64 k = 0; k < NTX; k++) {
        borrowers[k] = S.tx_borrowers[k] & mask;
        retrieved[k] = S.tx_retrieved[k] & mask;
        int live = S.tx_kind[k] != TX_FREE;
        ends[k] = live && retrieved[k] == 0 && (S.tx_owner[k] == vm || S.tx_owner[k] == NONE);
#ifdef BUG_DESTROY_FREES_MAPPED
        /* the bug: the dead owner's transactions end even while a borrower maps them */
        ends[k] = live && (S.tx_owner[k] == vm || (S.tx_owner[k] == NONE && retrieved[k] == 0));
#endif
        orphaned[k] = live && !ends[k] && S.tx_owner[k] == vm;
    }
    for (u64 f = 0; f < H; f++) {
        u64 t = S.frame_tx[f];
        int t_ends = t < NTX && ends[t], t_orph = t < NTX && orphaned[t];
        if (t_orph) S.owner[f] = ORPHAN;
        else if (t_ends || (S.owner[f] == vm && t == NONE)) S.owner[f] = FREE;
        if (t_ends) S.frame_tx[f] = NONE;
    }
    for (u64 k = 0; k < NTX; k++) {
        if (ends[k]) { free_tx(k); continue; }
        if (orphaned[k]) { S.tx_owner[k] = NONE; borrowers[k] = retrieved[k]; }
        S.tx_borrowers[k] = borrowers[k];
        S.tx_retrieved[k] = retrieved[k];
    }
    for (u64 g = 0; g < G; g++) unmap(VG(vm, g));
    for (u64 c = 0; c < C; c++) { S.vcpu[VC(vm, c)] = OFF; S.irq[VC(vm, c)] = 0; }
#ifdef LOOSE
    for (u64 c = 0; c < C; c++) { S.wake[VC(vm, c)] = 0; S.woke[VC(vm, c)] = 0; }
#endif
    for (u64 p = 0; p < V * P; p++) {
        int mine = p / P == vm;
        int peer = !mine && S.ch_state[p] != CLOSED && S.ch_rvm[p] == vm;
        if (mine) {
            S.ch_state[p] = CLOSED; S.ch_pending[p] = 0; S.ch_masked[p] = 0;
        } else if (peer) {
            S.ch_state[p] = UNBOUND;
        }
        if (mine || peer) { S.ch_rvm[p] = NONE; S.ch_rport[p] = NONE; }
    }
    for (u64 d = 0; d < D; d++) if (S.dev_owner[d] == vm) S.dev_owner[d] = NONE;
    S.vm_state[vm] = ABSENT;
    S.quota[vm] = 0;
}

static u64 mem_populate(const row *r, u64 me, u64 gfn, u64 perm) {
    if (!(gfn < G) || !BIT(perm, 0)) return INV(r);
    u64 i = VG(me, gfn);
    if (S.s2_valid[i]) return DENIED(r);
#ifndef BUG_NO_QUOTA
    if (!(owned_count(me) < S.quota[me])) return NO_MEMORY(r);
#endif
    u64 f = 0;
    while (f < H && S.owner[f] != FREE) f++;
    if (f == H) return NO_MEMORY(r);
    S.owner[f] = me;
    S.s2_valid[i] = 1; S.s2_frame[i] = f; S.s2_perm[i] = perm;
    return 0;
}

static u64 mem_release(const row *r, u64 me, u64 gfn) {
    if (!(gfn < G)) return INV(r);
    u64 i = VG(me, gfn);
    if (!S.s2_valid[i] || S.s2_tx[i] != NONE) return INV(r);
    u64 frame = S.s2_frame[i];
    if (S.frame_tx[frame] != NONE) return DENIED(r);
    unmap(i);
    S.owner[frame] = FREE;
    return 0;
}

static u64 transact(const row *r, u64 me, u64 kind, u64 base, u64 n, u64 who, u64 perm) {
    if (!(1 <= n && n <= G && base < G && base + n <= G)) return INV(r);
    if (who == 0 || !(who < ((u64)1 << V)) || BIT(who, me)) return INV(r);
    for (u64 v = 0; v < V; v++)
        if (BIT(who, v) && S.vm_state[v] == ABSENT) return INV(r);
    if (kind == DONATE && ((who - 1) & who) != 0) return INV(r);
    if (!BIT(perm, 0)) return INV(r);
    for (u64 g = base; g < base + n; g++) {
        u64 i = VG(me, g);
        if (!S.s2_valid[i] || S.s2_tx[i] != NONE || (perm & ~S.s2_perm[i]) != 0 ||
            S.frame_tx[S.s2_frame[i]] != NONE)
            return DENIED(r);
    }
    u64 k = 0;
    while (k < NTX && S.tx_kind[k] != TX_FREE) k++;
    if (k == NTX) return NO_MEMORY(r);
    for (u64 g = base; g < base + n; g++) {
        u64 i = VG(me, g);
        S.frame_tx[S.s2_frame[i]] = k;
        if (kind != SHARE) S.s2_held[i] = 1;
    }
    S.tx_kind[k] = kind; S.tx_owner[k] = me; S.tx_base[k] = base; S.tx_count[k] = n;
    S.tx_perm[k] = perm; S.tx_borrowers[k] = who; S.tx_retrieved[k] = 0;
    return HANDLE_OF(k);
}

static int tx_live(u64 k) { return k < NTX && S.tx_kind[k] != TX_FREE; }

static u64 mem_retrieve(const row *r, u64 me, u64 k, u64 base) {
    if (!tx_live(k)) return INV(r);
    u64 owner = S.tx_owner[k];
    if (!BIT(S.tx_borrowers[k], me) || BIT(S.tx_retrieved[k], me)) return DENIED(r);
    if (owner == NONE) return DENIED(r);
    u64 n = S.tx_count[k];
    if (!(base < G && base + n <= G)) return INV(r);
    for (u64 g = base; g < base + n; g++)
        if (S.s2_valid[VG(me, g)]) return DENIED(r);
    u64 kind = S.tx_kind[k];
    if (kind == DONATE && !(owned_count(me) + n <= S.quota[me])) return NO_MEMORY(r);
    u64 target[MAXG], perm = S.tx_perm[k], src = VG(owner, S.tx_base[k]);
    for (u64 g = base; g < base + n; g++) target[g] = S.s2_frame[src + (g - base)];
#ifdef BUG_RO_SHARE_RW
    perm |= 2; /* the bug: the borrower's mapping is always writable */
#endif
    if (kind == DONATE) {
        for (u64 g = S.tx_base[k]; g < S.tx_base[k] + n; g++) unmap(VG(owner, g));
        for (u64 f = 0; f < H; f++)
            if (S.frame_tx[f] == k) { S.owner[f] = me; S.frame_tx[f] = NONE; }
    }
    for (u64 g = base; g < base + n; g++) {
        u64 i = VG(me, g);
        S.s2_valid[i] = 1; S.s2_frame[i] = target[g]; S.s2_perm[i] = perm;
        S.s2_held[i] = 0; S.s2_tx[i] = kind == DONATE ? NONE : k;
    }
    if (kind == DONATE) free_tx(k);
    else S.tx_retrieved[k] |= (u64)1 << me;
    return 0;
}

static u64 mem_relinquish(const row *r, u64 me, u64 k) {
    if (!tx_live(k)) return INV(r);
    if (!BIT(S.tx_retrieved[k], me)) return DENIED(r);
    for (u64 g = 0; g < G; g++)
        if (S.s2_tx[VG(me, g)] == k) unmap(VG(me, g));
    u64 left = S.tx_retrieved[k] & ~((u64)1 << me);
    int orphaned = S.tx_owner[k] == NONE;
    S.tx_retrieved[k] = left;
    if (orphaned) S.tx_borrowers[k] &= ~((u64)1 << me);
    if (orphaned && left == 0) {
        for (u64 f = 0; f < H; f++)
            if (S.frame_tx[f] == k) { S.owner[f] = FREE; S.frame_tx[f] = NONE; }
        free_tx(k);
    }
    return 0;
}

static u64 mem_reclaim(const row *r, u64 me, u64 k) {
    if (!tx_live(k)) return INV(r);
#ifdef BUG_RECLAIM_RETRIEVED
    if (S.tx_owner[k] != me) return DENIED(r); /* the bug: borrowers still mapping it */
#else
    if (S.tx_owner[k] != me || S.tx_retrieved[k] != 0) return DENIED(r);
#endif
    for (u64 f = 0; f < H; f++) if (S.frame_tx[f] == k) S.frame_tx[f] = NONE;
    for (u64 g = S.tx_base[k]; g < S.tx_base[k] + S.tx_count[k] && g < G; g++)
        S.s2_held[VG(me, g)] = 0;
    free_tx(k);
    return 0;
}

static int free_port(u64 vm, u64 *p) {
#ifdef LOOSE /* port_allocation "any-free": the highest closed port */
    for (u64 q = P; q > 0; q--)
        if (S.ch_state[VP(vm, q - 1)] == CLOSED) { *p = q - 1; return 1; }
#else
    for (*p = 0; *p < P; (*p)++) if (S.ch_state[VP(vm, *p)] == CLOSED) return 1;
#endif
    return 0;
}

static u64 alloc_unbound(const row *r, u64 me, u64 remote) {
    if (!live_vm(remote) || remote == me) return INV(r);
    u64 p;
    if (!free_port(me, &p)) return NO_MEMORY(r);
    u64 i = VP(me, p);
    S.ch_state[i] = UNBOUND; S.ch_rvm[i] = remote; S.ch_rport[i] = NONE;
#ifdef BUG_PORT_OOR
    if (++S.oor_tick % 3 == 0) return p + P; /* the bug: a port number out of range */
#endif
    return p;
}

static u64 bind_interdomain(const row *r, u64 me, u64 remote, u64 rport) {
    if (!live_vm(remote) || remote == me || !(rport < P)) return INV(r);
    u64 ri = VP(remote, rport);
    if (S.ch_state[ri] != UNBOUND || S.ch_rvm[ri] != me) return DENIED(r);
    u64 p;
    if (!free_port(me, &p)) return NO_MEMORY(r);
    u64 i = VP(me, p);
    S.ch_state[i] = INTERDOMAIN; S.ch_state[ri] = INTERDOMAIN;
    S.ch_rvm[i] = remote; S.ch_rvm[ri] = me;
    S.ch_rport[i] = rport; S.ch_rport[ri] = p;
    return p;
}

/* the caller's open port, or (u64)-1 with *e set */
static int own_port(const row *r, u64 me, u64 port, u64 *i, u64 *e) {
    if (!(port < P)) { *e = INV(r); return 0; }
    *i = VP(me, port);
    if (S.ch_state[*i] == CLOSED) { *e = INV(r); return 0; }
    return 1;
}

static u64 evtchn(const row *r, u64 me, u64 port) {
    u64 i, e;
    if (r->fn == F_EVTCHN_STATUS) {
        if (!(port < P)) return INV(r);
        i = VP(me, port);
        return S.ch_state[i] | S.ch_pending[i] << 8 | S.ch_masked[i] << 9 | S.ch_rvm[i] << 16 |
               S.ch_rport[i] << 32;
    }
#ifdef BUG_ERROR_OUTSIDE
    if (r->fn == F_EVTCHN_SEND && port < P && S.ch_state[VP(me, port)] == CLOSED)
        return (u64)(int64_t)-4; /* the bug: BUSY, outside EVTCHN_SEND's error set */
#endif
#ifdef BUG_SEND_UNBOUND
    if (r->fn == F_EVTCHN_SEND && port < P && S.ch_state[VP(me, port)] == UNBOUND &&
        S.ch_rvm[VP(me, port)] != NONE) {
        S.ch_pending[VP(S.ch_rvm[VP(me, port)], 0)] = 1; /* the bug: delivered anyway */
        return 0;
    }
#endif
    if (!own_port(r, me, port, &i, &e)) return e;
    switch (r->fn) {
    case F_EVTCHN_SEND: {
        if (S.ch_state[i] != INTERDOMAIN) return INV(r);
        u64 rvm = S.ch_rvm[i], ri = VP(rvm, S.ch_rport[i]);
        S.ch_pending[ri] = 1;
        if (!S.ch_masked[ri]) raise_irq(rvm, 0, 0);
        return 0;
    }
    case F_EVTCHN_CLOSE:
        if (S.ch_state[i] == INTERDOMAIN) {
            u64 ri = VP(S.ch_rvm[i], S.ch_rport[i]);
            S.ch_state[ri] = UNBOUND; S.ch_rvm[ri] = me; S.ch_rport[ri] = NONE;
        }
        S.ch_state[i] = CLOSED; S.ch_rvm[i] = NONE; S.ch_rport[i] = NONE;
        S.ch_pending[i] = 0; S.ch_masked[i] = 0;
        return 0;
    case F_EVTCHN_MASK: S.ch_masked[i] = 1; return 0;
    case F_EVTCHN_UNMASK:
        S.ch_masked[i] = 0;
        if (S.ch_pending[i]) raise_irq(me, 0, 0);
        return 0;
    default: /* F_EVTCHN_CLEAR */
        S.ch_pending[i] = 0;
        return 0;
    }
}

static u64 dev_assign(const row *r, u64 dev, u64 vm) {
    if (!(dev < D) || !live_vm(vm)) return INV(r);
    if (S.dev_owner[dev] != NONE) return DENIED(r);
    S.dev_owner[dev] = vm;
    return 0;
}

static u64 dev_deassign(const row *r, u64 dev) {
    if (!(dev < D) || S.dev_owner[dev] == NONE) return INV(r);
    u64 owner = S.dev_owner[dev];
    for (u64 c = 0; c < C; c++) S.irq[VC(owner, c)] &= ~((u64)1 << (dev + 1));
    S.dev_owner[dev] = NONE;
    return 0;
}

static u64 run(const row *r, u64 me, u64 vcpu, const u64 *a) {
    switch (r->fn) {
    case F_PSCI_VERSION: return 1 << 16 | 1;
    case F_HV_VERSION: return 1 << 16 | 0;
    case F_CPU_OFF: S.vcpu[VC(me, vcpu)] = OFF; S.irq[VC(me, vcpu)] = 0; return 0;
    case F_CPU_ON: return cpu_on(r, me, a[0], a[1]);
    case F_AFFINITY_INFO: return affinity_info(r, me, a[0], a[1]);
    case F_VM_CREATE: return vm_create(r, a[0], a[1]);
    case F_VM_DESTROY:
        if (!other_vm(a[0])) return INV(r);
        if (S.vm_state[a[0]] == ABSENT) return DENIED(r);
        destroy(a[0]);
        return 0;
    case F_VM_PAUSE: return lifecycle(r, a[0], RUNNING, PAUSED);
    case F_VM_RESUME: return lifecycle(r, a[0], PAUSED, RUNNING);
    case F_MEM_POPULATE: return mem_populate(r, me, a[0], a[1]);
    case F_MEM_RELEASE: return mem_release(r, me, a[0]);
    case F_MEM_SHARE: return transact(r, me, SHARE, a[0], a[1], a[2], a[3]);
    case F_MEM_LEND: return transact(r, me, LEND, a[0], a[1], a[2], a[3]);
    case F_MEM_DONATE: return transact(r, me, DONATE, a[0], a[1], a[2], a[3]);
    case F_MEM_RETRIEVE: return mem_retrieve(r, me, SLOT_OF(a[0]), a[1]);
    case F_MEM_RELINQUISH: return mem_relinquish(r, me, SLOT_OF(a[0]));
    case F_MEM_RECLAIM: return mem_reclaim(r, me, SLOT_OF(a[0]));
    case F_EVTCHN_ALLOC_UNBOUND: return alloc_unbound(r, me, a[0]);
    case F_EVTCHN_BIND_INTERDOMAIN: return bind_interdomain(r, me, a[0], a[1]);
    case F_IRQ_ACK:
        if (!(a[0] < 1 + D)) return INV(r);
        S.irq[VC(me, vcpu)] &= ~((u64)1 << a[0]);
        return 0;
    case F_DEV_ASSIGN: return dev_assign(r, a[0], a[1]);
    case F_DEV_DEASSIGN: return dev_deassign(r, a[0]);
    default: return evtchn(r, me, a[0]);
    }
}

/* decode -> caller check -> privilege -> handler: spec/machine.py apply() */
static u64 hypercall(u64 vm, u64 vcpu, u64 fid_reg, const u64 *args) {
#ifdef LOOSE
    power_tick(vm, vcpu);
#endif
    u64 fid = fid_reg & 0xFFFFFFFFu;
    const row *r = NULL;
    for (size_t k = 0; k < NROWS; k++)
        if (function_id(&TABLE[k]) == fid) { r = &TABLE[k]; break; }
    if (!r) return (u64)(int64_t)HV_NOT_SUPPORTED;
    unsigned limit = r->smc64 ? 64 : 32;
    u64 a[4] = {0};
    for (unsigned k = 0; k < r->nargs; k++) {
        u64 raw = args[k];
#ifdef BUG_CRASH_MALFORMED
        if (r->width[k] == 16 && raw >> 63) abort(); /* the bug: assumes a sane register */
#endif
        if (r->width[k] < limit && ((limit == 64 ? raw : raw & 0xFFFFFFFFu) >> r->width[k]))
            return INV(r);
        a[k] = r->width[k] == 64 ? raw : raw & (((u64)1 << r->width[k]) - 1);
    }
    if (!(vm < V && vcpu < C && S.vm_state[vm] == RUNNING && S.vcpu[VC(vm, vcpu)] == ON))
        return DENIED(r);
#ifdef BUG_ERROR_PRECEDENCE
    if (r->control && vm != CONTROL) { /* the bug: argument checks before privilege */
        static state saved;
        saved = S;
        u64 ret = run(r, CONTROL, 0, a);
        S = saved;
        return ret == INV(r) ? ret : DENIED(r);
    }
#endif
#ifndef BUG_NO_PRIV_CHECK
    if (r->control && vm != CONTROL) return DENIED(r);
#endif
    return run(r, vm, vcpu, a);
}

#ifdef PVHV_ABIS
/* ---- what the ABI front ends call (pvhv.h) --------------------------------------------- */
u64 pvhv_call(u64 vm, u64 vcpu, const char *name, const u64 *args, int nargs) {
    u64 a[7] = {0};
    for (int k = 0; k < nargs && k < 7; k++) a[k] = args[k];
    for (size_t k = 0; k < NROWS; k++)
        if (!strcmp(TABLE[k].name, name)) return hypercall(vm, vcpu, function_id(&TABLE[k]), a);
    return (u64)(int64_t)HV_NOT_SUPPORTED;
}

int pvhv_runnable(u64 vm, u64 vcpu) {
    return vm < V && vcpu < C && S.vm_state[vm] == RUNNING && S.vcpu[VC(vm, vcpu)] == ON;
}

int pvhv_transaction(u64 handle, u64 *owner, u64 *kind, u64 *base, u64 *count, u64 *perm) {
    u64 k = SLOT_OF(handle);
    if (!tx_live(k)) return 0;
    *owner = S.tx_owner[k]; *kind = S.tx_kind[k]; *base = S.tx_base[k];
    *count = S.tx_count[k]; *perm = S.tx_perm[k];
    return 1;
}

u64 pvhv_n_vms(void) { return V; }
#endif

static void event(const char *name, const u64 *a, int n) {
    if (!strcmp(name, "VCPU_START") && n == 2) {
#ifndef LOOSE /* power_on "async": the target starts its vCPUs itself; the event is a no-op */
        if (!(live_vm(a[0]) && a[1] < C)) return;
        u64 i = VC(a[0], a[1]);
        if (S.vcpu[i] == ON_PENDING) S.vcpu[i] = ON;
#endif
    } else if (!strcmp(name, "DEVICE_IRQ") && n == 1) {
        if (!(a[0] < D) || S.dev_owner[a[0]] == NONE) return;
        raise_irq(S.dev_owner[a[0]], 0, a[0] + 1);
    }
}

/* ---- the stdio protocol ---------------------------------------------------------------- */
static jdoc doc;
static u64 out_id;
static const char *ARM64[] = {"x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7"};
static const char *X86[] = {"rax", "rdi", "rsi", "rdx", "r10", "r8", "r9"};

static void reply_error(u64 to, int code, const char *text, int definite) {
    printf("{\"type\":\"error\",\"msg_id\":%llu,\"in_reply_to\":%llu,\"code\":%d,"
           "\"text\":\"%s\",\"definite\":%s}\n", (unsigned long long)++out_id,
           (unsigned long long)to, code, text, definite ? "true" : "false");
}

static void reply_head(const char *type, u64 to) {
    printf("{\"type\":\"%s\",\"msg_id\":%llu,\"in_reply_to\":%llu", type,
           (unsigned long long)++out_id, (unsigned long long)to);
}

static int field(int root, const char *key, u64 *out) {
    return json_word(&doc, json_get(&doc, root, key), out);
}

#ifdef PVHV_ABIS
/* ---- abi_call: a call in FF-A or Xen's event-channel ABI, with the guest memory it reads */
#define MEM_MAX 4096
static uint8_t mem_in[MEM_MAX + 64], mem_out[MEM_MAX];

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The "memory" string (lowercase hex) into mem_in; -1 if malformed or too long. */
static long read_memory(int node) {
    if (node < 0 || doc.n[node].type != J_STR || doc.n[node].len % 2 ||
        doc.n[node].len / 2 > MEM_MAX)
        return -1;
    const char *s = doc.n[node].s;
    long n = doc.n[node].len / 2;
    for (long i = 0; i < n; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        mem_in[i] = (uint8_t)(hi << 4 | lo);
    }
    memset(mem_in + n, 0, sizeof mem_in - (size_t)n);
    return n;
}

static void print_memory(const uint8_t *m, size_t n) {
    printf(",\"memory\":\"");
    for (size_t i = 0; i < n; i++) printf("%02x", m[i]);
    printf("\"}\n");
}

static void abi_call(int root, u64 id) {
    u64 vm, vcpu, r[8] = {0}, place = 0, x16 = 0;
    int abi = json_get(&doc, root, "abi"), conv = json_get(&doc, root, "conv");
    int regs = json_get(&doc, root, "regs"), has_place = json_get(&doc, root, "place") >= 0;
    int ffa = json_streq(&doc, abi, "ffa"), arm = json_streq(&doc, conv, "arm64");
    long n = read_memory(json_get(&doc, root, "memory"));
    if ((!ffa && !json_streq(&doc, abi, "xen")) || (!arm && !json_streq(&doc, conv, "x86_64")) ||
        field(root, "vm", &vm) || field(root, "vcpu", &vcpu) || regs < 0 || n < 0 ||
        (has_place && field(root, "place", &place)) || (ffa && !arm)) {
        reply_error(id, 12, "bad abi_call request", 1);
        return;
    }
    const char **names = arm ? ARM64 : X86;
    for (int k = 0; k < (arm ? 8 : 7); k++) {
        int node = json_get(&doc, regs, names[k]);
        if (node >= 0 && json_word(&doc, node, &r[k])) {
            reply_error(id, 12, "bad register value", 1);
            return;
        }
    }
    if (ffa) {
        u64 out[8];
        size_t rx_len = 0;
        ffa_call(vm, vcpu, r, mem_in, (size_t)n, has_place, place, out, mem_out, &rx_len);
        reply_head("abi_call_ok", id);
        printf(",\"regs\":{");
        for (int k = 0; k < 8; k++)
            printf("%s\"x%d\":\"0x%llx\"", k ? "," : "", k, (unsigned long long)out[k]);
        printf("}");
        print_memory(mem_out, rx_len);
        return;
    }
    /* Xen: arm64 hvc #0xEA1 with the number in x16, x86-64 the number in rax */
    int nr_node = json_get(&doc, regs, arm ? "x16" : "rax");
    if (nr_node >= 0 && json_word(&doc, nr_node, &x16)) {
        reply_error(id, 12, "bad register value", 1);
        return;
    }
    u64 rc = xen_call(vm, vcpu, x16, arm ? r[0] : r[1], mem_in, (size_t)n);
    reply_head("abi_call_ok", id);
    printf(",\"regs\":{\"%s\":\"0x%llx\"}", arm ? "x0" : "rax", (unsigned long long)rc);
    print_memory(mem_in, (size_t)n);
}
#endif

static void handle(int root) {
    u64 id, v = 0, a = 0, b = 0;
    int t = json_get(&doc, root, "type");
    if (field(root, "msg_id", &id)) { reply_error(0, 12, "missing msg_id", 1); return; }
    if (json_streq(&doc, t, "hypercall")) {
        int conv_n = json_get(&doc, root, "conv"), regs = json_get(&doc, root, "regs");
        int arm = json_streq(&doc, conv_n, "arm64");
        if ((!arm && !json_streq(&doc, conv_n, "x86_64")) || field(root, "vm", &a) ||
            field(root, "vcpu", &b) || regs < 0) {
            reply_error(id, 12, "bad hypercall request", 1);
            return;
        }
        const char **names = arm ? ARM64 : X86;
        int count = arm ? 8 : 7;
        u64 r[8] = {0};
        for (int k = 0; k < count; k++) {
            int n = json_get(&doc, regs, names[k]);
            if (n >= 0 && json_word(&doc, n, &r[k])) {
                reply_error(id, 12, "bad register value", 1);
                return;
            }
        }
        u64 ret = hypercall(a, b, r[0], r + 1);
        reply_head("hypercall_ok", id);
        if (arm)
            printf(",\"regs\":{\"x0\":\"0x%llx\",\"x1\":\"0x0\",\"x2\":\"0x0\",\"x3\":\"0x0\"}}\n",
                   (unsigned long long)ret);
        else
            printf(",\"regs\":{\"rax\":\"0x%llx\"}}\n", (unsigned long long)ret);
#ifdef PVHV_ABIS
    } else if (json_streq(&doc, t, "abi_call")) {
        abi_call(root, id);
#endif
    } else if (json_streq(&doc, t, "observe")) {
        reply_head("observe_ok", id);
        printf(",\"access\":[");
        for (u64 i = 0; i < V * G; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)access_bits(i / G, i % G));
        printf("],\"dma\":[");
        for (u64 i = 0; i < D * G; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)dma_bits(i / G, i % G));
        printf("],\"irq\":[");
        for (u64 i = 0; i < V * C; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)S.irq[i]);
        printf("]}\n");
    } else if (json_streq(&doc, t, "probe_access") || json_streq(&doc, t, "probe_dma") ||
               json_streq(&doc, t, "probe_irq")) {
        int acc = json_streq(&doc, t, "probe_access"), dma = json_streq(&doc, t, "probe_dma");
        if (field(root, dma ? "dev" : "vm", &a) || field(root, acc || dma ? "gfn" : "vcpu", &b)) {
            reply_error(id, 12, "bad probe", 1);
            return;
        }
        if (acc) v = a < V && b < G ? access_bits(a, b) : 0;
        else if (dma) v = a < D && b < G ? dma_bits(a, b) : 0;
        else v = a < V && b < C ? S.irq[VC(a, b)] : 0;
        reply_head(acc ? "probe_access_ok" : dma ? "probe_dma_ok" : "probe_irq_ok", id);
        printf(",\"value\":%llu}\n", (unsigned long long)v);
    } else if (json_streq(&doc, t, "event")) {
        int name = json_get(&doc, root, "name"), args = json_get(&doc, root, "args");
        u64 ev[8];
        int n = 0;
        if (name < 0 || args < 0 || doc.n[args].type != J_ARR) {
            reply_error(id, 12, "bad event", 1);
            return;
        }
        for (int c = doc.n[args].child; c >= 0 && n < 8; c = doc.n[c].next)
            if (json_word(&doc, c, &ev[n++])) { reply_error(id, 12, "bad event argument", 1); return; }
        char nm[32];
        int len = doc.n[name].len < 31 ? doc.n[name].len : 31;
        memcpy(nm, doc.n[name].s, (size_t)len);
        nm[len] = 0;
        if (strcmp(nm, "VCPU_START") && strcmp(nm, "DEVICE_IRQ")) {
            reply_error(id, 31, "unknown event", 1);
            return;
        }
        event(nm, ev, n);
        reply_head("event_ok", id);
        printf("}\n");
    } else if (json_streq(&doc, t, "reset")) {
        int c = json_get(&doc, root, "config");
        config k = {3, 2, 3, 5, 1, 2, 2, 2, 2};
        field(c, "n_vms", &k.n_vms); field(c, "n_vcpus", &k.n_vcpus);
        field(c, "n_gframes", &k.n_gframes); field(c, "n_hframes", &k.n_hframes);
        field(c, "n_hyp_frames", &k.n_hyp_frames); field(c, "n_tx", &k.n_tx);
        field(c, "n_ports", &k.n_ports); field(c, "n_devices", &k.n_devices);
        field(c, "control_quota", &k.control_quota);
        if (k.n_vms < 2 || k.n_vms > MAXV || k.n_vcpus < 1 || k.n_vcpus > MAXC ||
            k.n_gframes > MAXG || k.n_hframes > MAXH || k.n_hyp_frames > k.n_hframes ||
            k.n_tx > MAXK || k.n_ports > MAXP || k.n_devices > MAXD) {
            reply_error(id, 30, "configuration out of this adapter's range", 1);
            return;
        }
        K = k;
        initial();
#ifdef PVHV_ABIS
        ffa_reset(V);
#endif
        reply_head("reset_ok", id);
        printf("}\n");
    } else if (json_streq(&doc, t, "init")) {
        reply_head("init_ok", id);
        printf(",\"name\":\"pvhv-c\",\"protocol_version\":\"" PROTOCOL_VERSION "\","
               "\"abi_version\":\"" PVHV_ABI_VERSION "\",\"capabilities\":[\"hypercall\","
               "\"probe_access\",\"probe_dma\",\"probe_irq\",\"events\",\"observe\""
               ABIS_CAPABILITY "]" PROFILE_JSON "}\n");
    } else if (json_streq(&doc, t, "shutdown")) {
        reply_head("shutdown_ok", id);
        printf("}\n");
        fflush(stdout);
        exit(0);
    } else {
        reply_error(id, 10, "unsupported message type", 1);
    }
}

/* Requests are read from fd 0 into our own buffer (not stdio's), so that we know when
 * every request received so far is answered: replies are flushed then, in one write.
 * A suite that sends a hypercall and an observe together gets both replies at once
 * (one wake-up instead of two); one that waits for each reply gets it at once too. */
static char *in_buf;
static size_t in_cap, in_len, in_pos;

/* The next line (its newline replaced by 0), or NULL at the end of the input. */
static char *next_line(size_t *len) {
    for (;;) {
        char *nl = memchr(in_buf + in_pos, '\n', in_len - in_pos);
        if (nl) {
            char *line = in_buf + in_pos;
            *nl = 0;
            *len = (size_t)(nl - line);
            in_pos = (size_t)(nl - in_buf) + 1;
            return line;
        }
        if (in_pos > 0) { /* keep the partial line only */
            memmove(in_buf, in_buf + in_pos, in_len - in_pos);
            in_len -= in_pos;
            in_pos = 0;
        }
        if (in_cap - in_len < 65536) {
            in_cap = in_cap ? 2 * in_cap : 1 << 17;
            in_buf = realloc(in_buf, in_cap);
            if (!in_buf) { perror("pvhv"); exit(1); }
        }
        ssize_t got = read(0, in_buf + in_len, in_cap - in_len - 1);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) { /* the end: a last line without its newline still counts */
            if (in_len == in_pos) return NULL;
            in_buf[in_len] = 0;
            *len = in_len - in_pos;
            char *line = in_buf + in_pos;
            in_pos = in_len;
            return line;
        }
        in_len += (size_t)got;
    }
}

/* Whether a whole further request is already buffered. */
static int line_pending(void) {
    return memchr(in_buf + in_pos, '\n', in_len - in_pos) != NULL;
}

int main(void) {
    char *line;
    size_t n;
    initial();
    fprintf(stderr, "pvhv: ready\n");
    while ((line = next_line(&n)) != NULL) {
        if (n > 0) {
            int root = json_parse(&doc, line);
            if (root < 0 || doc.n[root].type != J_OBJ) {
                fprintf(stderr, "pvhv: bad line: %s\n", doc.err ? doc.err : "not an object");
                reply_error(0, 12, "malformed JSON", 1);
            } else {
                handle(root);
            }
        }
        if (!line_pending()) fflush(stdout);
    }
    fflush(stdout);
    free(in_buf);
    return 0;
}
