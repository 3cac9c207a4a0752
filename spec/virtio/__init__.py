"""VIRTIO 1.3 rules (and the statements 1.4 adds): importing this package registers every
requirement module."""

from __future__ import annotations

from spec.virtio import (  # noqa: F401  (imported for their register() side effects)
    config,
    features,
    packed,
    requirements_conditions,
    requirements_core,
    requirements_devices,
    requirements_fs,
    requirements_rings,
    requirements_sound,
    requirements_v14,
    split,
    status,
    transport_mmio,
    transport_pci,
)
from spec.virtio.devices import block, console, entropy, gpu, input, net, sound  # noqa: F401
