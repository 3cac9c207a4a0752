"""What a virtqueue needs from a device type: the one seam between rings and devices.

A queue (split or packed) walks a chain, gathers its device-readable bytes and measures
its device-writable part, and asks the device for the bytes to write back.  The device
never sees descriptors or guest addresses, so every device type works on both ring
layouts and over any memory (a bytearray in tests, memfd regions behind vhost-user).
"""

from __future__ import annotations

from typing import Protocol


class Device(Protocol):
    """One VIRTIO device type's request semantics (VIRTIO 1.3 chapter 5)."""

    device_id: int  # 5 "Device Types" table
    features: int  # device feature bits offered (2.2), ring bits included

    def config(self) -> bytes:
        """The device-specific configuration space, little-endian (2.5)."""
        ...

    def ready(self, queue: int) -> bool:
        """May the device use one more available buffer of ``queue`` now?

        Request queues (blk requestq, net txq, entropy requestq) are always ready; queues
        the device fills on its own initiative (net rxq, console receiveq, input eventq)
        are ready only while it has something to deliver.  A queue leaves buffers that
        are not ready in the ring, untouched.  Queues ask just before taking each
        available buffer, so the answer may change after every ``serve``.
        """
        ...

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        """Handle one buffer: ``out`` is its device-readable bytes in chain order and
        ``in_len`` the size of its device-writable part.

        Returns the bytes to write from the first writable byte on; their length is the
        used length (2.7.8.2 / 2.8.21), so it must be at most ``in_len`` (queues cut a
        longer reply).  A device-readable-only buffer (``in_len == 0``) returns ``b""``.
        """
        ...
