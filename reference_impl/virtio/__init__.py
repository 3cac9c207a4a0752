"""Our own VIRTIO device side: a split-ring virtio-blk device and a vhost-user back-end.

Self-contained on purpose (no ``spec`` import at run time), so that checking it
against the spec's oracle is a comparison of two independent readings of VIRTIO 1.3.
"""

from reference_impl.virtio.blk import BlkDevice, RingBroken, SplitQueue
from reference_impl.virtio.server import serve_vhost_user_blk

__all__ = ["BlkDevice", "RingBroken", "SplitQueue", "serve_vhost_user_blk"]
