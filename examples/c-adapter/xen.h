/* xen.h: Xen's event_channel_op (xen/include/public/event_channel.h) as a front end over
 * pvhv's own event-channel calls; see xen.c.
 */
#ifndef PVHV_XEN_H
#define PVHV_XEN_H

#include <stddef.h>
#include <stdint.h>

/* One event_channel_op from vCPU `vcpu` of VM `vm`: nr = the hypercall number (x16), cmd = x0; mem/len =
 * the struct at the pointer (x1), read and rewritten in place (mem has room for at least 64 bytes).
 * Returns the rc: 0 or -errno as a 64-bit two's-complement word. */
uint64_t xen_call(uint64_t vm, uint64_t vcpu, uint64_t nr, uint64_t cmd, uint8_t *mem, size_t len);

#endif
