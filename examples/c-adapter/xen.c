/* xen: Xen's event-channel ABI as a front end over pvhv's own event-channel calls.
 *
 * A guest that speaks Xen's ABI makes one hypercall, event_channel_op (hypercall 32,
 * xen/include/public/xen.h; on arm64 the number in x16, the EVTCHNOP_* command in x0, a
 * pointer to the command's struct in x1).  xen_call reads the struct the pointer names,
 * makes the hypervisor's own call (the EVTCHN_* rows of spec/hypercalls/abi.py, through
 * pvhv_call) from the same vCPU, writes the command's outputs back into the struct and
 * returns 0 or -errno (xen/include/public/errno.h).  Built into pvhv with -DPVHV_ABIS:
 *
 *     cc -O2 -Wall -Werror -DPVHV_ABIS -o pvhv pvhv.c json.c ffa.c xen.c
 *
 * Its reading of xen/include/public/event_channel.h:
 *   - structs are little-endian with C's natural alignment: domid_t is 16 bits,
 *     evtchn_port_t 32, so struct evtchn_bind_interdomain has 2 bytes of padding after
 *     remote_dom and struct evtchn_status is { dom@0, port@4, status@8, vcpu@12,
 *     u.unbound.dom = u.interdomain.dom@16, u.interdomain.port@20 }, 24 bytes;
 *   - another hypercall, or a command other than bind_interdomain (0), close (3), send
 *     (4), status (5), alloc_unbound (6), unmask (9), is -ENOSYS; a struct shorter than
 *     the command's is -EFAULT;
 *   - a dom field other than DOMID_SELF names another domain, which only a privileged
 *     domain may (not modelled): -EPERM;
 *   - a VM id is the Xen domain id: remote_dom is passed as it is (DOMID_SELF there is a VM
 *     id pvhv does not have); a port is passed as it is (pvhv's calls take 16-bit ports and
 *     refuse a wider one);
 *   - pvhv's errors become errnos: INVALID_PARAMETERS -EINVAL, DENIED -EPERM, NO_MEMORY
 *     -ENOSPC, any other -EINVAL;
 *   - outputs are written back on success only; EVTCHNOP_status writes the state (pvhv
 *     numbers its closed/unbound/interdomain as EVTCHNSTAT_*), vcpu 0 (pvhv notifies vCPU
 *     0), u.*.dom the remote VM (0 for a closed port) and, for an interdomain channel only,
 *     u.interdomain.port the remote port.  The pending and masked bits have no field.
 *
 * Faulty variants, one planted bug each (compile with -DBUG_<NAME>):
 *
 *   BUG_XEN_ERRNO_SIGN   failures return +errno instead of -errno
 *   BUG_XEN_STATUS_PORT  EVTCHNOP_status writes u.interdomain.port at offset 16 (over
 *                        u.dom) instead of 20
 *   BUG_XEN_BIND_FIELD   bind_interdomain reads remote_port from offset 2 (the padding)
 *                        instead of 4
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pvhv.h"
#include "xen.h"

typedef uint64_t u64;

#define HYPERCALL_EVENT_CHANNEL_OP 32 /* xen.h __HYPERVISOR_event_channel_op */
#define DOMID_SELF 0x7FF0u            /* xen.h */

enum { /* event_channel.h */
    EVTCHNOP_BIND_INTERDOMAIN = 0, EVTCHNOP_CLOSE = 3, EVTCHNOP_SEND = 4,
    EVTCHNOP_STATUS = 5, EVTCHNOP_ALLOC_UNBOUND = 6, EVTCHNOP_UNMASK = 9
};
enum { EPERM_ = 1, EFAULT_ = 14, EINVAL_ = 22, ENOSPC_ = 28, ENOSYS_ = 38 }; /* errno.h */
enum { STAT_CLOSED, STAT_UNBOUND, STAT_INTERDOMAIN };                        /* EVTCHNSTAT_* */
/* pvhv's error codes (the pvspec range) */
#define HV_INVALID_PARAMETERS ((u64)(int64_t)-2)
#define HV_NO_MEMORY ((u64)(int64_t)-3)
#define HV_DENIED ((u64)(int64_t)-6)

static u64 fail(u64 errno_) {
#ifdef BUG_XEN_ERRNO_SIGN
    return errno_; /* the bug: +errno */
#else
    return (u64)0 - errno_;
#endif
}

static u64 errno_of(u64 ret) { /* a pvhv error as event_channel_op's rc */
    if (ret == HV_DENIED) return fail(EPERM_);
    if (ret == HV_NO_MEMORY) return fail(ENOSPC_);
    return fail(EINVAL_); /* INVALID_PARAMETERS and anything else */
}

static int failed(u64 ret) { return (ret >> 63) != 0; }

/* little-endian fields, through memcpy (no alignment assumed) */
static u64 get16(const uint8_t *m, size_t at) {
    uint8_t b[2];
    memcpy(b, m + at, 2);
    return (u64)b[0] | (u64)b[1] << 8;
}

static u64 get32(const uint8_t *m, size_t at) {
    uint8_t b[4];
    memcpy(b, m + at, 4);
    return (u64)b[0] | (u64)b[1] << 8 | (u64)b[2] << 16 | (u64)b[3] << 24;
}

static void put16(uint8_t *m, size_t at, u64 v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    memcpy(m + at, b, 2);
}

static void put32(uint8_t *m, size_t at, u64 v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    memcpy(m + at, b, 4);
}

static size_t struct_size(u64 cmd) { /* sizeof(struct evtchn_*); 0: no such command here */
    switch (cmd) {
    case EVTCHNOP_BIND_INTERDOMAIN: return 12;
    case EVTCHNOP_CLOSE: case EVTCHNOP_SEND: case EVTCHNOP_UNMASK: return 4;
    case EVTCHNOP_STATUS: return 24;
    case EVTCHNOP_ALLOC_UNBOUND: return 8;
    default: return 0;
    }
}

/* struct evtchn_alloc_unbound { IN domid_t dom, remote_dom; OUT evtchn_port_t port; } */
static u64 alloc_unbound(u64 vm, u64 vcpu, uint8_t *m) {
    if (get16(m, 0) != DOMID_SELF) return fail(EPERM_);
    u64 a[1] = {get16(m, 2)};
    u64 ret = pvhv_call(vm, vcpu, "EVTCHN_ALLOC_UNBOUND", a, 1);
    if (failed(ret)) return errno_of(ret);
    put32(m, 4, ret);
    return 0;
}

/* struct evtchn_bind_interdomain { IN domid_t remote_dom; IN evtchn_port_t remote_port;
 *                                  OUT evtchn_port_t local_port; } */
static u64 bind_interdomain(u64 vm, u64 vcpu, uint8_t *m) {
#ifdef BUG_XEN_BIND_FIELD
    u64 a[2] = {get16(m, 0), get32(m, 2)}; /* the bug: remote_port read over the padding */
#else
    u64 a[2] = {get16(m, 0), get32(m, 4)};
#endif
    u64 ret = pvhv_call(vm, vcpu, "EVTCHN_BIND_INTERDOMAIN", a, 2);
    if (failed(ret)) return errno_of(ret);
    put32(m, 8, ret);
    return 0;
}

/* struct evtchn_send / evtchn_close / evtchn_unmask { IN evtchn_port_t port; } */
static u64 port_only(u64 vm, u64 vcpu, const char *row, const uint8_t *m) {
    u64 a[1] = {get32(m, 0)};
    u64 ret = pvhv_call(vm, vcpu, row, a, 1);
    return failed(ret) ? errno_of(ret) : 0;
}

/* struct evtchn_status { IN domid_t dom; IN evtchn_port_t port; OUT uint32_t status, vcpu;
 *   OUT union { struct { domid_t dom; } unbound;
 *               struct { domid_t dom; evtchn_port_t port; } interdomain; ... } u; } */
static u64 status(u64 vm, u64 vcpu, uint8_t *m) {
    if (get16(m, 0) != DOMID_SELF) return fail(EPERM_);
    u64 a[1] = {get32(m, 4)};
    u64 ret = pvhv_call(vm, vcpu, "EVTCHN_STATUS", a, 1);
    if (failed(ret)) return errno_of(ret);
    u64 state = ret & 0xFF, rvm = ret >> 16 & 0xFFFF, rport = ret >> 32;
    put32(m, 8, state);
    put32(m, 12, 0); /* the notified vCPU: pvhv notifies vCPU 0 */
    put16(m, 16, state == STAT_CLOSED ? 0 : rvm);
    if (state == STAT_INTERDOMAIN) {
#ifdef BUG_XEN_STATUS_PORT
        put32(m, 16, rport); /* the bug: over u.dom */
#else
        put32(m, 20, rport);
#endif
    }
    return 0;
}

uint64_t xen_call(uint64_t vm, uint64_t vcpu, uint64_t nr, uint64_t cmd, uint8_t *mem,
                  size_t len) {
    if (nr != HYPERCALL_EVENT_CHANNEL_OP) return fail(ENOSYS_);
    cmd &= 0xFFFFFFFFu; /* EVTCHNOP commands are C ints */
    size_t size = struct_size(cmd);
    if (size == 0) return fail(ENOSYS_);
    if (mem == NULL || len < size) return fail(EFAULT_);
    switch (cmd) {
    case EVTCHNOP_ALLOC_UNBOUND: return alloc_unbound(vm, vcpu, mem);
    case EVTCHNOP_BIND_INTERDOMAIN: return bind_interdomain(vm, vcpu, mem);
    case EVTCHNOP_SEND: return port_only(vm, vcpu, "EVTCHN_SEND", mem);
    case EVTCHNOP_CLOSE: return port_only(vm, vcpu, "EVTCHN_CLOSE", mem);
    case EVTCHNOP_UNMASK: return port_only(vm, vcpu, "EVTCHN_UNMASK", mem);
    default: return status(vm, vcpu, mem);
    }
}
