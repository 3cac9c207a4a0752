"""virtio-rng (VIRTIO 1.3 5.4): one request queue filled from a seedable DRBG.

The bytes come from SHAKE-256 over (seed, request counter), so a test run that feeds the
same requests to a device with the same seed sees the same bytes, while every request
still gets fresh output.  Self-contained: no ``spec`` import.
"""

from __future__ import annotations

import hashlib

DEVICE_ID = 4  # 5 "Device Types": entropy source
REQUESTQ = 0
# ring features as blk offers them: INDIRECT_DESC, EVENT_IDX, VERSION_1, IN_ORDER
# (chapter 6); 5.4.3 defines no device-specific bits
RING_FEATURES = sum(1 << b for b in (28, 29, 32, 35))
MAX_CHUNK = 1 << 16  # per-request cap: a short answer is allowed (5.4.6.2), a huge one costly


class EntropyDevice:
    """5.4.6: each writable buffer gets between 1 and ``in_len`` random bytes."""

    device_id = DEVICE_ID
    features = RING_FEATURES

    def __init__(self, seed: bytes | int = 0, max_chunk: int = MAX_CHUNK) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(max(1, (seed.bit_length() + 7) // 8), "little", signed=False)
        self.seed = bytes(seed)
        self.max_chunk = max_chunk
        self.requests = 0

    def config(self) -> bytes:
        return b""  # 5.4.4: no device configuration space

    def ready(self, queue: int) -> bool:
        return queue == REQUESTQ

    def random_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream: one SHAKE-256 output per request."""
        msg = len(self.seed).to_bytes(4, "little") + self.seed + self.requests.to_bytes(8, "little")
        self.requests += 1
        return hashlib.shake_256(msg).digest(n)

    def serve(self, queue: int, out: bytes, in_len: int) -> bytes:
        if queue != REQUESTQ:
            raise ValueError(f"virtio-rng has no queue {queue}")
        if in_len <= 0:  # a readable-only buffer breaks 5.4.6.1; nothing can be written
            return b""
        return self.random_bytes(min(in_len, self.max_chunk))
