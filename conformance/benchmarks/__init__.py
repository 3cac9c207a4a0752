"""Benchmarks that put the spec and its implementations side by side.

* :mod:`~conformance.benchmarks.hypervisor`: the reference hypervisor against the spec's
  machine, on the same hypercall sequences, plus memory and scale;
* :mod:`~conformance.benchmarks.virtqueue`: the reference virtqueues and devices against
  the spec's ring and device models, on the same ring contents;
* :mod:`~conformance.benchmarks.oracle`: oracle-checked steps per second, in process and
  over stdio, and replay;
* :mod:`~conformance.benchmarks.vhost_user`: verified virtio-blk requests over vhost-user
  (qemu-storage-daemon and the reference back-end) and the oracle's share.

They live here, not in ``reference_impl``, because they import the spec: the reference
implementation imports neither ``spec`` nor ``conformance`` (``lint-imports`` checks it).
"""
