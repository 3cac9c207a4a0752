/* What pvhv.c offers the ABI front ends (ffa.c: FF-A v1.1 memory management; xen.c: Xen's
 * event_channel_op).  A front end reads what a guest put in its registers and memory, makes
 * the hypervisor's own calls (the pvspec rows of spec/hypercalls/abi.py, by name) from the
 * same vCPU, and answers as its ABI does.  Built in with -DPVHV_ABIS; see pvhv.c.
 */
#ifndef PVHV_H
#define PVHV_H

#include <stddef.h>
#include <stdint.h>

/* The hypervisor's own call ``row`` (a name of the ABI table: "MEM_SHARE", "EVTCHN_SEND",
 * ...) made by vCPU ``vcpu`` of VM ``vm`` with ``nargs`` arguments, through the same path
 * as a "hypercall" request (argument widths, caller check, privilege): its x0.  A negative
 * value (bit 63 set) is an error code of the pvspec range (-1 NOT_SUPPORTED, -2
 * INVALID_PARAMETERS, -3 NO_MEMORY, -6 DENIED). */
uint64_t pvhv_call(uint64_t vm, uint64_t vcpu, const char *row, const uint64_t *args,
                   int nargs);

/* Whether vCPU ``vcpu`` of VM ``vm`` can make a call now (its VM running, it ON). */
int pvhv_runnable(uint64_t vm, uint64_t vcpu);

/* The live memory transaction ``handle`` names (a value MEM_SHARE/LEND/DONATE returned):
 * 1 and its owner VM (0xFFFF for an orphan), kind (1 share, 2 lend, 3 donate), first guest
 * frame in the owner, frame count and rights (R=1 W=2 X=4); 0 if it names none. */
int pvhv_transaction(uint64_t handle, uint64_t *owner, uint64_t *kind, uint64_t *base,
                     uint64_t *count, uint64_t *perm);

/* The configuration's VM count (FF-A endpoint ids are VM + 1). */
uint64_t pvhv_n_vms(void);

#endif
