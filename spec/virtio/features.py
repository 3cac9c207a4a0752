"""Feature bits and negotiation (VIRTIO 1.3 §2.2, chapter 6, per-device feature lists).

Features are plain integers (bit ``n`` set = feature ``n``), so the same checks run on
64-bit words and on any width a transport exposes.  Dependencies are written in
conjunctive normal form: a feature needs *every* clause, and a clause is satisfied by
*any* of its bits (e.g. net's HOST_ECN needs HOST_TSO4 or HOST_TSO6).
"""

from __future__ import annotations

from typing import Literal

from spec.virtio.verdict import Violation

# --- chapter 6: transport / queue feature bits -------------------------------------
INDIRECT_DESC = 28
EVENT_IDX = 29
VERSION_1 = 32
ACCESS_PLATFORM = 33
RING_PACKED = 34
IN_ORDER = 35
ORDER_PLATFORM = 36
SR_IOV = 37
NOTIFICATION_DATA = 38
NOTIF_CONFIG_DATA = 39
RING_RESET = 40
ADMIN_VQ = 41

TRANSPORT_FEATURES: dict[str, int] = {
    "INDIRECT_DESC": INDIRECT_DESC,
    "EVENT_IDX": EVENT_IDX,
    "VERSION_1": VERSION_1,
    "ACCESS_PLATFORM": ACCESS_PLATFORM,
    "RING_PACKED": RING_PACKED,
    "IN_ORDER": IN_ORDER,
    "ORDER_PLATFORM": ORDER_PLATFORM,
    "SR_IOV": SR_IOV,
    "NOTIFICATION_DATA": NOTIFICATION_DATA,
    "NOTIF_CONFIG_DATA": NOTIF_CONFIG_DATA,
    "RING_RESET": RING_RESET,
    "ADMIN_VQ": ADMIN_VQ,
}

# Chapter 6: SR-IOV and the admin virtqueue are only defined for PCI in 1.3; on other
# transports they count as "reserved for the transport" (§2.2.1, §2.2.2).
PCI_ONLY = frozenset({SR_IOV, ADMIN_VQ})

Transport = Literal["pci", "mmio", "ccw"]

# --- device IDs (§5) ---------------------------------------------------------------
NET, BLOCK, CONSOLE, ENTROPY, GPU, INPUT = 1, 2, 3, 4, 16, 18

# --- device-type feature bits ------------------------------------------------------
NET_FEATURES: dict[str, int] = {  # §5.1.3
    "CSUM": 0,
    "GUEST_CSUM": 1,
    "CTRL_GUEST_OFFLOADS": 2,
    "MTU": 3,
    "MAC": 5,
    "GUEST_TSO4": 7,
    "GUEST_TSO6": 8,
    "GUEST_ECN": 9,
    "GUEST_UFO": 10,
    "HOST_TSO4": 11,
    "HOST_TSO6": 12,
    "HOST_ECN": 13,
    "HOST_UFO": 14,
    "MRG_RXBUF": 15,
    "STATUS": 16,
    "CTRL_VQ": 17,
    "CTRL_RX": 18,
    "CTRL_VLAN": 19,
    "CTRL_RX_EXTRA": 20,
    "GUEST_ANNOUNCE": 21,
    "MQ": 22,
    "CTRL_MAC_ADDR": 23,
    "HASH_TUNNEL": 51,
    "VQ_NOTF_COAL": 52,
    "NOTF_COAL": 53,
    "GUEST_USO4": 54,
    "GUEST_USO6": 55,
    "HOST_USO": 56,
    "HASH_REPORT": 57,
    "GUEST_HDRLEN": 59,
    "RSS": 60,
    "RSC_EXT": 61,
    "STANDBY": 62,
    "SPEED_DUPLEX": 63,
}
BLK_FEATURES: dict[str, int] = {  # §5.2.3
    "SIZE_MAX": 1,
    "SEG_MAX": 2,
    "GEOMETRY": 4,
    "RO": 5,
    "BLK_SIZE": 6,
    "FLUSH": 9,
    "TOPOLOGY": 10,
    "CONFIG_WCE": 11,
    "MQ": 12,
    "DISCARD": 13,
    "WRITE_ZEROES": 14,
    "LIFETIME": 15,
    "SECURE_ERASE": 16,
    "ZONED": 17,
}
CONSOLE_FEATURES: dict[str, int] = {"SIZE": 0, "MULTIPORT": 1, "EMERG_WRITE": 2}  # §5.3.3
ENTROPY_FEATURES: dict[str, int] = {}  # §5.4.3: none
GPU_FEATURES: dict[str, int] = {  # §5.7.3
    "VIRGL": 0,
    "EDID": 1,
    "RESOURCE_UUID": 2,
    "RESOURCE_BLOB": 3,
    "CONTEXT_INIT": 4,
}
INPUT_FEATURES: dict[str, int] = {}  # §5.8.3: none

DEVICE_FEATURES: dict[int, dict[str, int]] = {
    NET: NET_FEATURES,
    BLOCK: BLK_FEATURES,
    CONSOLE: CONSOLE_FEATURES,
    ENTROPY: ENTROPY_FEATURES,
    GPU: GPU_FEATURES,
    INPUT: INPUT_FEATURES,
}

Clause = tuple[int, ...]  # satisfied by any of these bits
_N = NET_FEATURES

# Dependencies as stated by the spec: feature -> clauses that must all hold.
DEPENDENCIES: dict[int | None, dict[int, tuple[Clause, ...]]] = {
    None: {},  # chapter 6 states no "requires" between transport bits (1.3 and 1.4)
    NET: {  # §5.1.3.1
        _N["GUEST_TSO4"]: ((_N["GUEST_CSUM"],),),
        _N["GUEST_TSO6"]: ((_N["GUEST_CSUM"],),),
        _N["GUEST_ECN"]: ((_N["GUEST_TSO4"], _N["GUEST_TSO6"]),),
        _N["GUEST_UFO"]: ((_N["GUEST_CSUM"],),),
        _N["GUEST_USO4"]: ((_N["GUEST_CSUM"],),),
        _N["GUEST_USO6"]: ((_N["GUEST_CSUM"],),),
        _N["HOST_TSO4"]: ((_N["CSUM"],),),
        _N["HOST_TSO6"]: ((_N["CSUM"],),),
        _N["HOST_ECN"]: ((_N["HOST_TSO4"], _N["HOST_TSO6"]),),
        _N["HOST_UFO"]: ((_N["CSUM"],),),
        _N["HOST_USO"]: ((_N["CSUM"],),),
        _N["CTRL_RX"]: ((_N["CTRL_VQ"],),),
        _N["CTRL_VLAN"]: ((_N["CTRL_VQ"],),),
        _N["GUEST_ANNOUNCE"]: ((_N["CTRL_VQ"],),),
        _N["MQ"]: ((_N["CTRL_VQ"],),),
        _N["CTRL_MAC_ADDR"]: ((_N["CTRL_VQ"],),),
        _N["NOTF_COAL"]: ((_N["CTRL_VQ"],),),
        _N["RSC_EXT"]: ((_N["HOST_TSO4"], _N["HOST_TSO6"]),),
        _N["RSS"]: ((_N["CTRL_VQ"],),),
        _N["VQ_NOTF_COAL"]: ((_N["CTRL_VQ"],),),
        _N["HASH_TUNNEL"]: ((_N["CTRL_VQ"],), (_N["RSS"], _N["HASH_REPORT"])),
    },
    BLOCK: {  # §5.2.5.2: offering CONFIG_WCE obliges offering FLUSH
        BLK_FEATURES["CONFIG_WCE"]: ((BLK_FEATURES["FLUSH"],),),
    },
    GPU: {GPU_FEATURES["CONTEXT_INIT"]: ((GPU_FEATURES["VIRGL"],),)},  # §5.7.3
}

# The section stating each device's dependencies: net and gpu list them ("requires") in
# their feature-bit sections, which §2.2.2's MUST NOT turns into a device rule; blk states
# its one dependency as a device MUST of its own in §5.2.5.2.
DEPENDENCY_SECTIONS: dict[int, str] = {NET: "5.1.3.1", BLOCK: "5.2.5.2", GPU: "5.7.3"}
# ids fixed by hand where the spec words the dependency as a statement of its own
_DEPENDENCY_IDS: dict[tuple[int, int], str] = {
    (BLOCK, BLK_FEATURES["CONFIG_WCE"]): "VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH",
}


def feature_name(device_id: int | None, bit: int) -> str:
    """The spec's name of ``bit`` for ``device_id`` (a transport bit's own name)."""
    for table in (DEVICE_FEATURES.get(device_id or -1, {}), TRANSPORT_FEATURES):
        for name, b in table.items():
            if b == bit:
                return name
    return f"bit {bit}"


def dependency_requirement(device_id: int | None, feature: int) -> str:
    """The requirement id of the statement that ``feature`` of ``device_id`` needs its
    DEPENDENCIES clauses: one id per dependency, named after the features it links (a
    chapter 6 dependency, of which 1.3 states none, would fall under §2.2.2's own rule)."""
    if device_id is None:
        return "VIRTIO-2.2.2-DEV-DEPENDENCY"
    fixed = _DEPENDENCY_IDS.get((device_id, feature))
    if fixed is not None:
        return fixed
    clauses = DEPENDENCIES[device_id][feature]
    needs = "-AND-".join("-OR-".join(feature_name(device_id, b) for b in c) for c in clauses)
    return (f"VIRTIO-{DEPENDENCY_SECTIONS[device_id]}-DEV-{feature_name(device_id, feature)}"
            f"-NEEDS-{needs}").replace("_", "-")


def dependency_text(device_id: int | None, feature: int) -> str:
    """A paraphrase of one dependency: what offering ``feature`` obliges a device to offer."""
    clauses = DEPENDENCIES[device_id][feature]
    needs = ", and ".join(" or ".join(feature_name(device_id, b) for b in c) for c in clauses)
    return f"A device offering {feature_name(device_id, feature)} also offers {needs}."


def has(features: int, bit: int) -> bool:
    return (features >> bit) & 1 == 1


def mask(*bit_numbers: int) -> int:
    out = 0
    for b in bit_numbers:
        out |= 1 << b
    return out


def bit_range(bit: int) -> Literal["device", "transport", "reserved"]:
    """§2.2: 0-23 and 50-127 device type; 24-41 transport; 42-49 and >=128 reserved."""
    if 0 <= bit <= 23 or 50 <= bit <= 127:
        return "device"
    if 24 <= bit <= 41:
        return "transport"
    return "reserved"


def defined_bits(device_id: int, transport: Transport = "pci") -> int:
    """Every bit this spec describes for ``device_id`` on ``transport``."""
    bits = mask(*DEVICE_FEATURES.get(device_id, {}).values())
    for b in TRANSPORT_FEATURES.values():
        if transport == "pci" or b not in PCI_ONLY:
            bits |= 1 << b
    return bits


def missing_dependencies(device_id: int, features: int) -> list[tuple[int, Clause]]:
    """(feature, clause) pairs whose clause is unmet within ``features``."""
    out = []
    for table in (DEPENDENCIES[None], DEPENDENCIES.get(device_id, {})):
        for feat, clauses in table.items():
            if not has(features, feat):
                continue
            out.extend((feat, c) for c in clauses if not any(has(features, b) for b in c))
    return out


def bits_of(features: int) -> list[int]:
    return [i for i in range(features.bit_length()) if has(features, i)]


# --- checks --------------------------------------------------------------------------


def judge_device_offer(
    device_id: int, offered: int, transport: Transport = "pci"
) -> list[tuple[str, Violation | None]]:
    """Device side of §2.2.2, §6.2 and the device sections' dependencies: every rule this
    offer gives occasion to judge, each with its violation (``None``: it held).

    A dependency is judged only when its feature is offered, the SR-IOV rule only off PCI
    (on PCI it depends on the device's capability structure, which an offer does not show).
    """
    out: list[tuple[str, Violation | None]] = []

    def rule(rid: str, bad: bool, detail: str) -> None:
        out.append((rid, Violation(rid, "device", detail) if bad else None))

    rule("VIRTIO-6.2-DEV-OFFER-VERSION-1", not has(offered, VERSION_1), "VERSION_1 not offered")
    if transport != "pci":
        rule("VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY", has(offered, SR_IOV), f"SR_IOV on {transport}")
    undefined = offered & ~defined_bits(device_id, transport)
    rule("VIRTIO-2.2.2-DEV-NO-UNDEFINED", bool(undefined),
         f"offers undefined bits {bits_of(undefined)}")
    for dev in (None, device_id):
        for feat, clauses in DEPENDENCIES.get(dev, {}).items():
            if not has(offered, feat):
                continue
            unmet = [c for c in clauses if not any(has(offered, b) for b in c)]
            rule(dependency_requirement(dev, feat), bool(unmet),
                 f"{feature_name(dev, feat)} (bit {feat}) offered without "
                 + " and without ".join(" or ".join(f"{feature_name(dev, b)} (bit {b})"
                                                    for b in c) for c in unmet))
    return out


def check_device_offer(
    device_id: int, offered: int, transport: Transport = "pci"
) -> Violation | None:
    """Device side of §2.2.2 and §6.2: what a device may offer (the first rule broken)."""
    return next((v for _, v in judge_device_offer(device_id, offered, transport) if v), None)


def check_driver_accept(
    device_id: int, offered: int, accepted: int, transport: Transport = "pci"
) -> Violation | None:
    """Driver side of §2.2.1 and §6.1: what a driver may write back."""
    if accepted & ~offered:
        return Violation(
            "VIRTIO-2.2.1-DRV-SUBSET", "driver", f"accepts unoffered {bits_of(accepted & ~offered)}"
        )
    undefined = accepted & ~defined_bits(device_id, transport)
    if undefined:
        return Violation(
            "VIRTIO-2.2.1-DRV-NO-UNDEFINED", "driver", f"accepts undefined {bits_of(undefined)}"
        )
    missing = missing_dependencies(device_id, accepted)
    if missing:
        feat, clause = missing[0]
        return Violation(
            "VIRTIO-2.2.1-DRV-DEPENDENCY", "driver", f"bit {feat} without any of {list(clause)}"
        )
    if has(offered, VERSION_1) and not has(accepted, VERSION_1):
        return Violation("VIRTIO-6.1-DRV-ACCEPT-VERSION-1", "driver", "VERSION_1 offered, refused")
    if transport != "pci" and has(accepted, SR_IOV):
        return Violation("VIRTIO-6.1-DRV-SR-IOV-PCI-ONLY", "driver", "SR_IOV off PCI")
    return None


def valid_subset(device_id: int, offered: int, accepted: int, transport: Transport = "pci") -> bool:
    """Whether ``accepted`` is a subset the spec lets a device take (the §2.2.2 test)."""
    return check_driver_accept(device_id, offered, accepted, transport) is None


def check_features_ok_outcome(
    device_id: int,
    offered: int,
    accepted: int,
    features_ok_stuck: bool,
    transport: Transport = "pci",
) -> Violation | None:
    """§2.2.2: FEATURES_OK must not stick for an invalid subset; should stick for a valid one."""
    valid = valid_subset(device_id, offered, accepted, transport)
    if features_ok_stuck and not valid:
        return Violation(
            "VIRTIO-2.2.2-DEV-REJECT-FEATURES-OK",
            "device",
            "FEATURES_OK stayed set for an invalid feature subset",
        )
    if not features_ok_stuck and valid:
        return Violation("VIRTIO-2.2.2-DEV-ACCEPT-VALID", "device", "valid subset refused (SHOULD)")
    return None


def check_features_write_after_ok(features_ok_set: bool, old: int, new: int) -> Violation | None:
    """§3.1.1 step 5: once FEATURES_OK is set, the driver accepts no new feature bits."""
    if features_ok_set and new & ~old:
        return Violation(
            "VIRTIO-3.1.1-DRV-NO-NEW-FEATURES", "driver", f"new bits {bits_of(new & ~old)}"
        )
    return None
