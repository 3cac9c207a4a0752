"""Our own VIRTIO device side: split and packed rings, device types, a vhost-user back-end.

A queue (:class:`SplitQueue`, :class:`PackedQueue`) walks the rings and hands each buffer
to a :class:`Device`, which sees only bytes; :class:`BlkDevice` is virtio-blk.

Self-contained on purpose (no ``spec`` import at run time), so that checking it
against the spec's oracle is a comparison of two independent readings of VIRTIO 1.3.
"""

from reference_impl.virtio.blk import BlkDevice, blk_features
from reference_impl.virtio.device import Device
from reference_impl.virtio.packed import PackedQueue
from reference_impl.virtio.server import serve_vhost_user_blk
from reference_impl.virtio.split import SplitQueue

__all__ = ["BlkDevice", "Device", "PackedQueue", "SplitQueue", "blk_features",
           "serve_vhost_user_blk"]

# device types of chapter 5 beyond block (one Device each, see device.py)
from reference_impl.virtio.console import ConsoleDevice
from reference_impl.virtio.entropy import EntropyDevice
from reference_impl.virtio.gpu import GpuDevice
from reference_impl.virtio.input import InputDevice
from reference_impl.virtio.net import NetDevice
from reference_impl.virtio.sound import SoundDevice

__all__ += ["ConsoleDevice", "EntropyDevice", "GpuDevice", "InputDevice", "NetDevice",
            "SoundDevice"]
