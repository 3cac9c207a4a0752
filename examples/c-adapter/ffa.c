/* ffa: FF-A v1.1 memory management (Arm DEN0077A v1.1) as a front end over pvhv's own
 * memory-transaction calls; the C counterpart of reference_impl/_ffa.py, answer for answer.
 *
 * A guest puts a memory transaction descriptor in its TX buffer and calls FFA_MEM_SHARE /
 * LEND / DONATE / RETRIEVE_REQ / RELINQUISH / RECLAIM; this front end checks the descriptor
 * as the standard requires and makes pvhv's own call (MEM_SHARE ... by row name) from the
 * same vCPU.  It answers FFA_SUCCESS_32 (a send: the handle in w2 low / w3 high),
 * FFA_MEM_RETRIEVE_RESP (the region's descriptor written to the caller's RX buffer, which
 * the caller owns until FFA_RX_RELEASE) or FFA_ERROR with the code in w2.  It keeps each
 * endpoint's RX/TX pair (FFA_RXTX_MAP / UNMAP / RX_RELEASE) and answers FFA_VERSION,
 * FFA_ID_GET and FFA_FEATURES.
 *
 * VM v is endpoint v + 1; frame g is the 4 KiB page at IPA g * 4096; touching constituents
 * make one range.  What pvhv's calls cannot express (several ranges, receivers with
 * different rights, memory attributes other than normal write-back inner shareable,
 * zeroing) is NOT_SUPPORTED; an endpoint that is no VM is INVALID_PARAMETERS.
 *
 * Built into pvhv with -DPVHV_ABIS (see pvhv.c).  Planted bugs, one each (-DBUG_<NAME>):
 *
 *   BUG_FFA_HANDLE_SWAP        FFA_SUCCESS of a send carries the handle's high word in w2
 *                              and its low word in w3
 *   BUG_FFA_RESERVED_ERROR     non-zero reserved header bytes (36..47) are answered
 *                              NOT_SUPPORTED instead of INVALID_PARAMETERS
 *   BUG_FFA_CONSTITUENT_BOUND  the constituents-end-at-the-length check is off by one
 *                              constituent: a count one more than the bytes hold is
 *                              accepted and the last constituent read from past the length
 *                              (what the TX buffer holds there, zero past what the guest
 *                              wrote).  Only a guest whose TX buffer holds a constituent
 *                              past the stated length sees it: a zero one is refused as
 *                              empty, as the right check would refuse the count.
 */
#include <stdlib.h>
#include <string.h>

#include "ffa.h"
#include "pvhv.h"

typedef uint64_t u64;

/* function ids (SMCCC fast calls of entity 4; bit 30: the SMC64 form) */
#define FFA_ERROR 0x84000060u
#define FFA_SUCCESS_32 0x84000061u
#define FFA_SUCCESS_64 0xC4000061u
#define FFA_VERSION 0x84000063u
#define FFA_FEATURES 0x84000064u
#define FFA_RX_RELEASE 0x84000065u
#define FFA_RXTX_MAP_32 0x84000066u
#define FFA_RXTX_MAP_64 0xC4000066u
#define FFA_RXTX_UNMAP 0x84000067u
#define FFA_ID_GET 0x84000069u
#define FFA_MEM_DONATE_32 0x84000071u
#define FFA_MEM_DONATE_64 0xC4000071u
#define FFA_MEM_LEND_32 0x84000072u
#define FFA_MEM_LEND_64 0xC4000072u
#define FFA_MEM_SHARE_32 0x84000073u
#define FFA_MEM_SHARE_64 0xC4000073u
#define FFA_MEM_RETRIEVE_REQ_32 0x84000074u
#define FFA_MEM_RETRIEVE_REQ_64 0xC4000074u
#define FFA_MEM_RETRIEVE_RESP 0x84000075u
#define FFA_MEM_RELINQUISH 0x84000076u
#define FFA_MEM_RECLAIM 0x84000077u
#define FFA_MEM_FRAG_RX 0x8400007Au
#define FFA_MEM_FRAG_TX 0x8400007Bu
/* every id FFA_FEATURES knows (the ones answered NOT_SUPPORTED as calls included) */
static const uint32_t KNOWN[] = {
    FFA_ERROR, FFA_SUCCESS_32, FFA_SUCCESS_64, FFA_VERSION, FFA_FEATURES, FFA_RX_RELEASE,
    FFA_RXTX_MAP_32, FFA_RXTX_MAP_64, FFA_RXTX_UNMAP, FFA_ID_GET, FFA_MEM_DONATE_32,
    FFA_MEM_DONATE_64, FFA_MEM_LEND_32, FFA_MEM_LEND_64, FFA_MEM_SHARE_32, FFA_MEM_SHARE_64,
    FFA_MEM_RETRIEVE_REQ_32, FFA_MEM_RETRIEVE_REQ_64, FFA_MEM_RETRIEVE_RESP,
    FFA_MEM_RELINQUISH, FFA_MEM_RECLAIM, FFA_MEM_FRAG_RX, FFA_MEM_FRAG_TX,
};

/* FF-A error codes; an error is an int64_t < 0 (a vendor code is passed on as it is) */
enum { NOT_SUPPORTED = -1, INVALID = -2, BUSY = -4, DENIED = -6 };
#define NEED(ok, code) do { if (!(ok)) return (code); } while (0)
#define TRY(expr) do { int64_t e_ = (expr); if (e_) return e_; } while (0)

#define M32 0xFFFFFFFFu
#define SVE_HINT ((u64)1 << 16)        /* w0 bit 16: no SVE state live; ignored */
#define VERSION_1_1 (1u << 16 | 1)
#define MAXVM 16                       /* pvhv's MAXV; endpoints 1..16 */
#define MAX_BUFFER_PAGES 64
#define MAX_TX ((u64)MAX_BUFFER_PAGES * FFA_PAGE)  /* a stated length is at most this */
#define MAX_ENTRIES (MAX_TX / 16)      /* 16-byte access descriptors / constituents in it */
#define NORMAL_WB_INNER 0x2F           /* normal memory, write-back, inner shareable */
#define ORPHAN_OWNER 0xFFFF            /* pvhv_transaction's owner of an orphan */
#define RESPONSE_LEN 96

#ifdef BUG_FFA_RESERVED_ERROR
#define RESERVED_HEADER NOT_SUPPORTED  /* the bug: MBZ bytes are not "unsupported" */
#else
#define RESERVED_HEADER INVALID
#endif

/* ---- state: the Python front end's `buffers` and `rx_owned` ------------------------------- */
static struct { int mapped; u64 tx, rx, pages; } buf[MAXVM];
static int rx_owned[MAXVM];

/* scratch for one call (static: a 64-page TX buffer holds 16 Ki entries) */
static uint16_t rcv_id[MAX_ENTRIES];
static uint8_t rcv_perm[MAX_ENTRIES];
static uint8_t seen[65536 / 8];        /* endpoint ids met in this descriptor */
typedef struct { u64 start, size; } run;
static run runs[MAX_ENTRIES + 1];      /* + 1: BUG_FFA_CONSTITUENT_BOUND's extra one */

void ffa_reset(uint64_t n_vms) {
    memset(buf, 0, sizeof buf);
    memset(rx_owned, 0, sizeof rx_owned);
    for (u64 v = 0; v < n_vms && v < MAXVM; v++) {
        buf[v].mapped = 1;
        buf[v].tx = FFA_BUFFER_BASE + 2 * v * FFA_PAGE;
        buf[v].rx = buf[v].tx + FFA_PAGE;
        buf[v].pages = 1;
    }
}

/* ---- reading the TX buffer ---------------------------------------------------------------- */
/* `len` is the descriptor's stated length (checked <= cap first); `cap` what the guest wrote */
typedef struct { const uint8_t *p; size_t cap; u64 len; } reader;

/* n <= 8 bytes at `at`, little-endian; bytes past what the guest wrote read as zero (only
 * the planted constituent bug reads past `len`, and `len` <= `cap` otherwise) */
static u64 le(const reader *r, u64 at, unsigned n) {
    uint8_t b[8] = {0};
    if (at < r->cap) {
        u64 have = r->cap - at;
        memcpy(b, r->p + at, have < n ? have : n);
    }
    u64 v = 0;
    for (unsigned i = n; i-- > 0;) v = v << 8 | b[i];
    return v;
}

static void put(uint8_t *p, unsigned at, u64 v, unsigned n) {
    for (unsigned i = 0; i < n; i++) p[at + i] = (uint8_t)(v >> 8 * i);
}

/* ---- answers ------------------------------------------------------------------------------ */
static void answer(u64 *out, u64 x0, u64 x1, u64 x2, u64 x3) {
    memset(out, 0, 8 * sizeof *out);
    out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
}

/* pvhv's own call; its error (FF-A-numbered, the pvspec range) refuses the FF-A call */
static int64_t vendor(u64 vm, u64 vcpu, const char *row, const u64 *args, int n, u64 *ret) {
    u64 x0 = pvhv_call(vm, vcpu, row, args, n);
    if (x0 >> 63) return (int64_t)x0;
    if (ret) *ret = x0;
    return 0;
}

/* ---- buffers ------------------------------------------------------------------------------ */
static int64_t rxtx_map(u64 vm, const u64 *in, u64 *out) {
    NEED(!buf[vm].mapped, DENIED);
    u64 wide = in[0] >> 30 & 1 ? ~(u64)0 : M32; /* an SMC32 call's addresses are w1, w2 */
    u64 t = in[1] & wide, r = in[2] & wide, pages = in[3] & M32, size = pages * FFA_PAGE;
    /* the two must not overlap: t + size <= r or r + size <= t, without wrapping */
    int apart = (t <= r && r - t >= size) || (r <= t && t - r >= size);
    NEED(pages >= 1 && pages <= MAX_BUFFER_PAGES && (t | r) % FFA_PAGE == 0 && apart, INVALID);
    buf[vm].mapped = 1; buf[vm].tx = t; buf[vm].rx = r; buf[vm].pages = pages;
    answer(out, FFA_SUCCESS_32, 0, 0, 0);
    return 0;
}

/* the registers of a transaction in the TX buffer: its length */
static int64_t tx_length(u64 vm, const u64 *in, u64 *total) {
    NEED(buf[vm].mapped, INVALID);
    u64 whole = in[1] & M32, frag = in[2] & M32;
    u64 address = in[3] & (in[0] >> 30 & 1 ? ~(u64)0 : M32);  /* an SMC32 x3 is w3 */
    NEED(!address && !(in[4] & M32), INVALID);   /* only the TX buffer, no other memory */
    NEED(frag <= whole, INVALID);
    NEED(frag == whole, NOT_SUPPORTED);           /* fragmented transactions */
    NEED(whole <= buf[vm].pages * FFA_PAGE, INVALID);
    *total = whole;
    return 0;
}

/* ---- descriptors (Tables 10.20, 10.16, 10.15, 10.13, 10.14) ----------------------------------- */
typedef struct { u64 sender, attributes, flags, n, coff, emad_end; } header;

/* The 48-byte header and its endpoint access descriptors into h and rcv_id/rcv_perm. */
static int64_t read_header(const reader *r, int send, header *h) {
    NEED(r->len >= 48, INVALID);
    h->sender = le(r, 0, 2); h->attributes = le(r, 2, 2); h->flags = le(r, 4, 4);
    u64 size = le(r, 24, 4), count = le(r, 28, 4), offset = le(r, 32, 4);
    NEED(!le(r, 36, 8) && !le(r, 44, 4), RESERVED_HEADER);
    NEED(!(h->attributes & 0xFF80), INVALID);
    NEED(!(h->attributes & 0x40), INVALID);      /* the NS bit */
    NEED(size == 16 && count > 0 && offset >= 48 && offset % 16 == 0, INVALID);
    /* offset, count < 2^32: no wrap; len <= MAX_TX bounds count by MAX_ENTRIES */
    NEED(offset + 16 * count <= r->len && count <= MAX_ENTRIES, INVALID);
    h->n = count;
    h->emad_end = offset + 16 * count;
    memset(seen, 0, sizeof seen);
    int twice = 0, sender_receives = 0, other_coff = 0;
    for (u64 i = 0; i < count; i++) {
        u64 at = offset + 16 * i;
        u64 id = le(r, at, 2), perms = le(r, at + 2, 1), aflags = le(r, at + 3, 1);
        u64 coff = le(r, at + 4, 4);
        NEED(!le(r, at + 8, 8), INVALID);
        NEED(!(perms & 0xF0) && (perms & 3) != 3 && (perms >> 2 & 3) != 3, INVALID);
        NEED(!(send && aflags), INVALID);        /* retrieve flags in a send */
        twice |= seen[id / 8] >> id % 8 & 1;
        seen[id / 8] |= (uint8_t)(1u << id % 8);
        sender_receives |= send && id == h->sender;
        if (i == 0) h->coff = coff;
        other_coff |= coff != h->coff;
        rcv_id[i] = (uint16_t)id;
        rcv_perm[i] = (uint8_t)perms;
    }
    NEED(!twice && !sender_receives && !other_coff, INVALID);
    return 0;
}

static int by_start(const void *a, const void *b) {
    const run *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->size < y->size ? -1 : x->size > y->size;
}

/* The composite descriptor at coff: its constituents, checked, sorted into runs[0..*n). */
static int64_t read_region(const reader *r, u64 coff, u64 head_end, u64 *n, u64 *total) {
    NEED(coff >= head_end && coff % 16 == 0 && coff + 16 <= r->len, INVALID);
    u64 pages = le(r, coff, 4), count = le(r, coff + 4, 4);
    NEED(!le(r, coff + 8, 8), INVALID);
    u64 end = coff + 16 + 16 * count;            /* < 2^37: no wrap */
#ifdef BUG_FFA_CONSTITUENT_BOUND
    NEED(end == r->len || end == r->len + 16, INVALID); /* the bug: one constituent too many */
#else
    NEED(end == r->len, INVALID);
#endif
    for (u64 i = 0; i < count; i++) {
        u64 at = coff + 16 + 16 * i;
        u64 address = le(r, at, 8), npages = le(r, at + 8, 4);
        NEED(!le(r, at + 12, 4), INVALID);
        NEED(npages > 0, INVALID);
        NEED(address % FFA_PAGE == 0, INVALID);
        u64 size = npages * FFA_PAGE;            /* < 2^44 */
        NEED(address <= (u64)0 - size, INVALID);  /* address + size <= 2^64 */
        runs[i].start = address; runs[i].size = size;
    }
    NEED(pages > 0, INVALID);
    qsort(runs, count, sizeof runs[0], by_start);
    u64 sum = 0;                                 /* <= 16 Ki runs of < 2^44: no wrap */
    for (u64 i = 0; i < count; i++) {
        NEED(i == 0 || runs[i].start - runs[i - 1].start >= runs[i - 1].size, INVALID);
        sum += runs[i].size;
    }
    NEED(sum == pages * FFA_PAGE, INVALID);
    *n = count;
    *total = pages;
    return 0;
}

/* ---- transactions ------------------------------------------------------------------------- */
/* the transaction in the caller's TX buffer, as its registers state its length: a reader
 * bounded by that length and its checked header (a send's, or a retrieve request's) */
static int64_t open_transaction(u64 vm, const u64 *in, const uint8_t *tx, size_t tx_len,
                                int send, reader *r, header *h) {
    u64 length;
    TRY(tx_length(vm, in, &length));
    NEED(length <= tx_len, INVALID);
    *r = (reader){tx, tx_len, length};
    return read_header(r, send, h);
}

enum { SHARE = 1, LEND = 2, DONATE = 3 };   /* FF-A transaction type = pvhv kind */

static int64_t send(int kind, u64 vm, u64 vcpu, const u64 *in, const uint8_t *tx,
                    size_t tx_len, u64 *out) {
    static const char *ROW[] = {"", "MEM_SHARE", "MEM_LEND", "MEM_DONATE"};
    reader r;
    header h;
    TRY(open_transaction(vm, in, tx, tx_len, 1, &r, &h));
    int donate = kind == DONATE, share = kind == SHARE;
    NEED(!(h.flags & ~(u64)3), INVALID);
    NEED(!(share && h.flags & 1), INVALID);      /* zeroing what the sender keeps */
    NEED(!(donate && h.n != 1), INVALID);
    u64 type = h.attributes >> 4 & 3, cache = h.attributes >> 2 & 3;
    u64 shareable = h.attributes & 3;
    NEED(type != 3 && shareable != 1 && !(type == 2 && (cache == 0 || cache == 2)), INVALID);
    /* only a borrower names the memory type of a region it alone gets */
    NEED(!type || !(donate || (kind == LEND && h.n == 1)), INVALID);
    for (u64 i = 0; i < h.n; i++) {
        NEED(!(rcv_perm[i] >> 2 & 3), INVALID);  /* instruction access on a send */
        NEED(!!(rcv_perm[i] & 3) != donate, INVALID);
    }
    NEED(h.coff, INVALID);
    u64 n, count;
    TRY(read_region(&r, h.coff, h.emad_end, &n, &count));
    NEED(h.sender == vm + 1, INVALID);
    for (u64 i = 1; i < n; i++)
        NEED(runs[i].start - runs[i - 1].start == runs[i - 1].size, NOT_SUPPORTED);
    u64 base = runs[0].start / FFA_PAGE;         /* one range of `count` pages */
    NEED(!(h.flags & 1), NOT_SUPPORTED);         /* zeroing memory */
    NEED(!type || h.attributes == NORMAL_WB_INNER, NOT_SUPPORTED);
    for (u64 i = 1; i < h.n; i++) NEED(rcv_perm[i] == rcv_perm[0], NOT_SUPPORTED);
    u64 who = 0;
    for (u64 i = 0; i < h.n; i++) {
        NEED(rcv_id[i] >= 1 && rcv_id[i] <= MAXVM, INVALID);  /* an endpoint that is no VM */
        who |= (u64)1 << (rcv_id[i] - 1);
    }
    u64 perm = donate || (rcv_perm[0] & 3) == 2 ? 3 : 1;
    NEED(base < (u64)1 << 32, INVALID);
    u64 args[4] = {base, count, who, perm}, handle = 0;
    TRY(vendor(vm, vcpu, ROW[kind], args, 4, &handle));
#ifdef BUG_FFA_HANDLE_SWAP
    answer(out, FFA_SUCCESS_32, 0, handle >> 32, handle & M32); /* the bug: halves swapped */
#else
    answer(out, FFA_SUCCESS_32, 0, handle & M32, handle >> 32);
#endif
    return 0;
}

/* FFA_MEM_RETRIEVE_RESP's descriptor (header, one access descriptor, one constituent) */
static size_t response(uint8_t *rx, u64 sender, u64 kind, u64 handle, u64 me, u64 perm,
                       u64 base, u64 count) {
    memset(rx, 0, RESPONSE_LEN);
    u64 perms = (perm & 2 ? 2 : 1) | (u64)(perm & 4 ? 2 : 1) << 2;
    put(rx, 0, sender, 2); put(rx, 2, NORMAL_WB_INNER, 2); put(rx, 4, kind << 3, 4);
    put(rx, 8, handle, 8);                       /* tag (16..23) 0 */
    put(rx, 24, 16, 4); put(rx, 28, 1, 4); put(rx, 32, 48, 4);
    put(rx, 48, me, 2); put(rx, 50, perms, 1); put(rx, 52, 64, 4);
    put(rx, 64, count, 4); put(rx, 68, 1, 4);
    put(rx, 80, base * FFA_PAGE, 8); put(rx, 88, count, 4);
    return RESPONSE_LEN;
}

static int64_t retrieve(u64 vm, u64 vcpu, const u64 *in, const uint8_t *tx, size_t tx_len,
                        int has_place, u64 place, u64 *out, uint8_t *rx, size_t *rx_len) {
    reader r;
    header h;
    TRY(open_transaction(vm, in, tx, tx_len, 0, &r, &h));
    NEED(h.coff == 0 && r.len == h.emad_end, INVALID);  /* a request names no region */
    u64 handle = le(&r, 8, 8);
    NEED(h.n == 1 && rcv_id[0] == vm + 1, NOT_SUPPORTED);  /* for other endpoints */
    NEED(!rx_owned[vm], BUSY);
    u64 owner = 0, kind = 0, base = 0, count = 0, perm = 0;
    int live = pvhv_transaction(handle, &owner, &kind, &base, &count, &perm);
    if (live && owner != ORPHAN_OWNER)  /* (an orphan's sender is gone) */
        NEED(h.sender == owner + 1, INVALID);
    if (!live) owner = kind = base = count = perm = 0;
    if (has_place) base = place;
    u64 args[2] = {handle, base};
    TRY(vendor(vm, vcpu, "MEM_RETRIEVE", args, 2, NULL));
    *rx_len = response(rx, (owner + 1) & 0xFFFF, kind, handle, vm + 1, perm, base, count);
    rx_owned[vm] = 1;
    answer(out, FFA_MEM_RETRIEVE_RESP, RESPONSE_LEN, RESPONSE_LEN, 0);
    return 0;
}

static int64_t relinquish(u64 vm, u64 vcpu, const uint8_t *tx, size_t tx_len, u64 *out) {
    NEED(buf[vm].mapped, INVALID);
    reader r = {tx, tx_len, tx_len};             /* the whole buffer as written */
    NEED(r.len >= 16, INVALID);
    u64 handle = le(&r, 0, 8), flags = le(&r, 8, 4), n = le(&r, 12, 4);
    NEED(16 + 2 * n <= r.len, INVALID);          /* n < 2^32: no wrap */
    NEED(!(flags & ~(u64)3), INVALID);
    int others = 0;
    for (u64 i = 0; i < n; i++) others |= le(&r, 16 + 2 * i, 2) != vm + 1;
    NEED(n > 0 && !others, INVALID);             /* endpoints other than the caller */
    NEED(!(flags & 1), NOT_SUPPORTED);           /* zeroing memory */
    TRY(vendor(vm, vcpu, "MEM_RELINQUISH", &handle, 1, NULL));
    answer(out, FFA_SUCCESS_32, 0, 0, 0);
    return 0;
}

static int64_t reclaim(u64 vm, u64 vcpu, const u64 *in, u64 *out) {
    u64 flags = in[3] & M32;
    NEED(!(flags & ~(u64)3), INVALID);
    NEED(!(flags & 1), NOT_SUPPORTED);           /* zeroing memory */
    u64 handle = (in[1] & M32) | (in[2] & M32) << 32;
    TRY(vendor(vm, vcpu, "MEM_RECLAIM", &handle, 1, NULL));
    answer(out, FFA_SUCCESS_32, 0, 0, 0);
    return 0;
}

/* ---- entry -------------------------------------------------------------------------------- */
static int64_t dispatch(u64 vm, u64 vcpu, const u64 *in, const uint8_t *tx, size_t tx_len,
                        int has_place, u64 place, u64 *out, uint8_t *rx, size_t *rx_len) {
    switch (in[0] & M32 & ~SVE_HINT) {
    case FFA_VERSION: answer(out, VERSION_1_1, 0, 0, 0); return 0;
    case FFA_ID_GET: answer(out, FFA_SUCCESS_32, 0, vm + 1, 0); return 0;
    case FFA_FEATURES:
        for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++)
            if ((in[1] & M32) == KNOWN[i]) { answer(out, FFA_SUCCESS_32, 0, 0, 0); return 0; }
        return NOT_SUPPORTED;
    case FFA_RXTX_MAP_32: case FFA_RXTX_MAP_64: return rxtx_map(vm, in, out);
    case FFA_RXTX_UNMAP:
        NEED(buf[vm].mapped, INVALID);
        buf[vm].mapped = 0;
        rx_owned[vm] = 0;
        answer(out, FFA_SUCCESS_32, 0, 0, 0);
        return 0;
    case FFA_RX_RELEASE:
        NEED(rx_owned[vm], DENIED);
        rx_owned[vm] = 0;
        answer(out, FFA_SUCCESS_32, 0, 0, 0);
        return 0;
    case FFA_MEM_SHARE_32: case FFA_MEM_SHARE_64:
        return send(SHARE, vm, vcpu, in, tx, tx_len, out);
    case FFA_MEM_LEND_32: case FFA_MEM_LEND_64:
        return send(LEND, vm, vcpu, in, tx, tx_len, out);
    case FFA_MEM_DONATE_32: case FFA_MEM_DONATE_64:
        return send(DONATE, vm, vcpu, in, tx, tx_len, out);
    case FFA_MEM_RETRIEVE_REQ_32: case FFA_MEM_RETRIEVE_REQ_64:
        return retrieve(vm, vcpu, in, tx, tx_len, has_place, place, out, rx, rx_len);
    case FFA_MEM_RELINQUISH: return relinquish(vm, vcpu, tx, tx_len, out);
    case FFA_MEM_RECLAIM: return reclaim(vm, vcpu, in, out);
    default: return NOT_SUPPORTED;  /* unknown; ERROR, SUCCESS, RETRIEVE_RESP, FRAG_* too */
    }
}

void ffa_call(uint64_t vm, uint64_t vcpu, const uint64_t in[8], const uint8_t *tx, size_t tx_len,
              int has_place, uint64_t place, uint64_t out[8], uint8_t *rx, size_t *rx_len) {
    *rx_len = 0;
    memset(out, 0, 8 * sizeof *out);
    /* the caller check comes first, whatever the function (vm < MAXVM: pvhv's own bound) */
    int64_t e = DENIED;
    if (pvhv_runnable(vm, vcpu) && vm < MAXVM)
        e = dispatch(vm, vcpu, in, tx, tx_len, has_place, place, out, rx, rx_len);
    if (e) {
        *rx_len = 0;
        answer(out, FFA_ERROR, 0, (u64)e & M32, 0);
    }
}
