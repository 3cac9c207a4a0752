/* FF-A v1.1 memory management (Arm DEN0077A v1.1) as a front end over pvhv's own
 * memory-transaction calls: the C counterpart of reference_impl/_ffa.py.  See ffa.c.
 */
#ifndef PVHV_FFA_H
#define PVHV_FFA_H

#include <stddef.h>
#include <stdint.h>

#define FFA_PAGE 4096
#define FFA_BUFFER_BASE ((uint64_t)1 << 40)

/* A reset: every VM's RX/TX buffer pair is mapped, as a boot-time FFA_RXTX_MAP would leave it:
 * TX at FFA_BUFFER_BASE + 2*vm*FFA_PAGE, RX at TX + FFA_PAGE, one page each; no RX buffer owned. */
void ffa_reset(uint64_t n_vms);

/* One FF-A call from vCPU `vcpu` of VM `vm`: in[0..7] = x0..x7 as the guest set them; tx/tx_len = the
 * content of the caller's TX buffer (tx_len bytes; treat it as the buffer, i.e. reading past tx_len is
 * reading past what the guest wrote: a length field pointing past tx_len is judged as the Python
 * _Reader judges it, see `_Reader(tx, length)` and its `length <= len(data)` check);
 * has_place/place: for FFA_MEM_RETRIEVE_REQ, if has_place the guest frame where the region is mapped
 * (the Python front end's `place` callback), else where the owner has it.
 * Writes out[0..7] (x0..x7 of the answer; unused registers 0) and, if the call wrote the caller's RX
 * buffer (FFA_MEM_RETRIEVE_RESP), its bytes to rx (capacity FFA_PAGE) with *rx_len set; else *rx_len = 0. */
void ffa_call(uint64_t vm, uint64_t vcpu, const uint64_t in[8], const uint8_t *tx, size_t tx_len,
              int has_place, uint64_t place, uint64_t out[8], uint8_t *rx, size_t *rx_len);

#endif
