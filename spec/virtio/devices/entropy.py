"""virtio-rng (VIRTIO 1.3 §5.4): one request queue, no config, no features."""

from __future__ import annotations

from spec.virtio import features as F
from spec.virtio.verdict import Violation

DEVICE_ID = F.ENTROPY
REQUESTQ = 0


def allowed_used_lengths(buffer_len: int) -> range:
    """§5.4.6.2: at least one random byte, at most the whole buffer."""
    return range(1, buffer_len + 1)


def check_used(buffer_len: int, used_len: int) -> Violation | None:
    """Judge the used length the device reported for a writable buffer."""
    if used_len not in allowed_used_lengths(buffer_len):
        return Violation(
            "VIRTIO-5.4.6.2-DEV-AT-LEAST-ONE-BYTE", "device", f"used {used_len} of {buffer_len}"
        )
    return None


def check_driver_buffer(device_writable: bool) -> Violation | None:
    """§5.4.6.1: only device-writable buffers go into the queue."""
    if not device_writable:
        return Violation("VIRTIO-5.4.6.1-DRV-WRITABLE-ONLY", "driver", "readable buffer queued")
    return None


def driver_random_bytes(buffer: bytes, used_len: int) -> bytes:
    """§5.4.6.1: the driver trusts only the first ``used_len`` bytes."""
    return buffer[:used_len]


def check_driver_consumed(buffer_len: int, used_len: int, consumed: int) -> Violation | None:
    """§5.4.6.1: the driver takes exactly the bytes the device reported, no more."""
    if consumed > used_len:
        return Violation("VIRTIO-5.4.6.1-DRV-USE-LEN", "driver", f"{consumed} > used {used_len}")
    return None
