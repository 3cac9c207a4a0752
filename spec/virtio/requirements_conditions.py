"""When each registered device statement applies: the features, device type and transport
its own VIRTIO 1.3 wording conditions it on (``Requirement.when``, spec/virtio/registry.py).

Read from the LaTeX of oasis-tcs/virtio-spec at tag v1.3-wd02; every :class:`When` cites
the file and line of the wording that states the condition (never copied here).  The
device type of a §5.x statement and the transport of a §4.x one follow from its section
(:func:`spec.virtio.registry.device_type`, :func:`~spec.virtio.registry.transport_of`);
what a whole section opens with is in :data:`spec.virtio.registry.SECTION_WHEN`.

Covered: the device-side statements of chapters 2, 4 and 6, of net (§5.1) and blk (§5.2),
every level, and the feature dependencies of gpu (§5.7.3); on the driver side, the
feature-conditioned statements of 2.7, 5.1, 5.2 and 6.1.  Not yet: the rest of the other
device chapters (their records say nothing about applicability, so they count as applying
whenever their chapter, and transport, does).  A driver statement that forbids using a
facility without its feature ("INDIRECT only when INDIRECT_DESC was negotiated") applies
to every driver and carries no condition.

A condition on *offering* a feature ("if it offers X", a dependency "X requires Y")
spares a device that does not offer it.  A statement that *forbids an offer* under a
condition of its own ("a legacy device MUST NOT offer ZONED", "otherwise it MUST NOT
offer SR_IOV") applies to every device and is met by one that does not offer the feature
(``forbids_offer``): a check judges it from the offer.
"""

from __future__ import annotations

from collections.abc import Callable

from spec.virtio import features as F
from spec.virtio.registry import Requirement, When, all_requirements, condition, device_type

BLK = "device-types/blk/description.tex:"
NET = "device-types/net/description.tex:"
SPLIT = "split-ring.tex:"
PCI = "transport-pci.tex:"
MMIO = "transport-mmio.tex:"
GPU = "device-types/gpu/description.tex:"
CONTENT = "content.tex:"

_DEVICE_IDS = {"net": F.NET, "blk": F.BLOCK, "console": F.CONSOLE, "rng": F.ENTROPY,
               "gpu": F.GPU, "input": F.INPUT}


def feature_bit(device: str | None, name: str) -> int | None:
    """The bit of feature ``name`` (a chapter 6 bit, or one of ``device``'s) or None."""
    if name in F.TRANSPORT_FEATURES:
        return F.TRANSPORT_FEATURES[name]
    table = F.DEVICE_FEATURES.get(_DEVICE_IDS.get(device or "", -1), {})
    return table.get(name)


def bits_for(device: str) -> Callable[[str], int | None]:
    """``feature_bit`` bound to ``device``, as :func:`registry.not_applicable` takes it."""
    return lambda name: feature_bit(device, name)


# --- chapter 2 (split rings: 2.6.1 and 2.8 are in SECTION_WHEN) ---------------------------
_EVENT_IDX = When(negotiated=("EVENT_IDX",), source=SPLIT + "368")
_NO_EVENT_IDX = When(not_negotiated=("EVENT_IDX",), source=SPLIT + "358")
_INDIRECT = When(negotiated=("INDIRECT_DESC",), source=SPLIT + "282", via=SPLIT + "235")
CORE: dict[str, When] = {
    "VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT": _INDIRECT,
    "VIRTIO-2.7.5.3-DEV-MIXED-CHAIN": _INDIRECT,
    "VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX": _EVENT_IDX,
    "VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT": _EVENT_IDX,
    "VIRTIO-2.7.7-DEV-NO-NOTIFY-OTHERWISE": _EVENT_IDX,
    "VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT": _NO_EVENT_IDX,
    "VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0": _NO_EVENT_IDX,
    "VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1": _NO_EVENT_IDX,
    "VIRTIO-2.7.10-DEV-FLAGS-VALUES": When(not_negotiated=("EVENT_IDX",), source=SPLIT + "541"),
    "VIRTIO-2.7.10-DEV-MAY-NO-NOTIFY": When(not_negotiated=("EVENT_IDX",), source=SPLIT + "541"),
    "VIRTIO-2.7.10-DEV-FLAGS-ZERO-EVENT-IDX": When(negotiated=("EVENT_IDX",),
                                                   source=SPLIT + "548"),
    "VIRTIO-2.7.10-DEV-MAY-AVAIL-EVENT": When(negotiated=("EVENT_IDX",), source=SPLIT + "548"),
    # chapter 6, Reserved Feature Bits
    "VIRTIO-6.2-DEV-IN-ORDER": When(negotiated=("IN_ORDER",), source=CONTENT + "924"),
    "VIRTIO-6.2-DEV-SR-IOV-PCI-ONLY": When(forbids_offer="SR_IOV", source=CONTENT + "936"),
    "VIRTIO-6.2-DEV-OFFER-SR-IOV": When(transport="pci", source=CONTENT + "936"),
    "VIRTIO-6.2-DEV-ADD-IN-CARD-PLATFORM": When(transport="pci", source=CONTENT + "931"),
    "VIRTIO-6.2-DEV-MAY-FAIL-NO-ACCESS-PLATFORM": When(offered=("ACCESS_PLATFORM",),
                                                       source=CONTENT + "921"),
    "VIRTIO-6.2-DEV-MAY-FAIL-NO-ORDER-PLATFORM": When(offered=("ORDER_PLATFORM",),
                                                      source=CONTENT + "927"),
    "VIRTIO-6.2-DEV-MAY-EMULATE-NO-ORDER-PLATFORM": When(offered=("ORDER_PLATFORM",),
                                                         source=CONTENT + "929"),
}

# --- chapter 4 (the transport is the section's, registry.TRANSPORT_SECTIONS) --------------
_NO_NOTIF_DATA = When(not_offered=("NOTIFICATION_DATA",), source=PCI + "566")
_NOTIF_DATA = When(offered=("NOTIFICATION_DATA",), source=PCI + "582")
TRANSPORTS: dict[str, When] = {
    "VIRTIO-4.1.4.3.1-DEV-QUEUE-RESET": When(negotiated=("RING_RESET",), source=PCI + "472"),
    "VIRTIO-4.1.4.3.1-DEV-QUEUE-SIZE-POW2": When(not_negotiated=("RING_PACKED",),
                                                 source=PCI + "487"),
    "VIRTIO-4.1.4.3.1-DEV-ADMIN-RANGE": When(negotiated=("ADMIN_VQ",), source=PCI + "491"),
    **{f"VIRTIO-4.1.4.4.1-DEV-{k}-2": _NO_NOTIF_DATA for k in (
        "NOTIFY-OFFSET-ALIGN", "NOTIFY-LENGTH", "NOTIFY-LENGTH-FORMULA")},
    "VIRTIO-4.1.4.4.1-DEV-NOTIFY-MULTIPLIER-EVEN": _NO_NOTIF_DATA,
    **{f"VIRTIO-4.1.4.4.1-DEV-{k}-4": _NOTIF_DATA for k in (
        "NOTIFY-OFFSET-ALIGN", "NOTIFY-LENGTH", "NOTIFY-LENGTH-FORMULA", "NOTIFY-MULTIPLIER")},
    "VIRTIO-4.2.2.1-DEV-QUEUE-RESET": When(negotiated=("RING_RESET",), source=MMIO + "280"),
}

# --- §5.2 block ----------------------------------------------------------------------------
_ZONED_CONFIG = When(negotiated=("ZONED",), source=BLK + "361")
# "The following device requirements only apply if the VIRTIO_BLK_F_ZONED feature is
# negotiated" (5.2.6.2): every statement after it
_ZONED_OP = When(negotiated=("ZONED",), source=BLK + "1059")
_ZONED_OPS = (
    "APPEND-NOT-SWR", "APPEND-NOT-ZONE-START", "APPEND-SECTOR", "APPEND-TOO-BIG-INVALID",
    "APPEND-TOO-BIG-UNSUPP", "CROSS-ZONE", "IMPLICIT-OPEN-RESOURCES", "OFFLINE-ZONE",
    "READ-ONLY-ZONE", "UNALIGNED-WP", "UNWRITTEN-DATA", "UNWRITTEN-READ",
    "WRITE-PAST-ZONE-CAPACITY", "ZONE-CLOSE-INVALID", "ZONE-CONV-INVALID",
    "ZONE-FINISH-INVALID", "ZONE-OPEN-INVALID", "ZONE-OPEN-RESOURCES", "ZONE-RESET-INVALID",
    "MAY-CLOSE-IMPLICIT",
)
BLOCK: dict[str, When] = {
    "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO": When(negotiated=("CONFIG_WCE",),
                                              not_negotiated=("FLUSH",), source=BLK + "325"),
    "VIRTIO-5.2.5.2-DEV-NOT-ZONED-NO-OFFER": When(forbids_offer="ZONED", source=BLK + "331"),
    # the condition, a legacy interface, is the VMM's to present: met by not offering ZONED
    "VIRTIO-5.2.5.2-DEV-LEGACY-NO-ZONED": When(forbids_offer="ZONED", source=BLK + "335"),
    # "If the VIRTIO_BLK_F_ZONED feature is not accepted by the driver" (so it was offered)
    "VIRTIO-5.2.5.2-DEV-HM-DECLINED-FAIL": When(offered=("ZONED",), source=BLK + "337"),
    "VIRTIO-5.2.5.2-DEV-ZONED-DECLINED-ZEROES": When(offered=("ZONED",), source=BLK + "337"),
    "VIRTIO-5.2.5.2-DEV-ZONED-MODEL": When(negotiated=("ZONED",), source=BLK + "348"),
    **{f"VIRTIO-5.2.5.2-DEV-{k}": _ZONED_CONFIG for k in (
        "ZONE-SECTORS", "LAST-ZONE-SMALLER", "MAX-OPEN-ZONES", "MAX-ACTIVE-ZONES",
        "MAX-APPEND-SECTORS", "MAX-APPEND-BOUND", "NO-APPEND-ZERO", "WRITE-GRANULARITY",
        "UNUSED2-ZERO")},
    "VIRTIO-5.2.6.2-DEV-RO-IOERR": When(offered=("RO",), source=BLK + "965"),
    # discard, secure erase and write zeroes commands exist only with their feature
    "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS": When(negotiated=("DISCARD|SECURE_ERASE|WRITE_ZEROES",),
                                            source=BLK + "968", via=BLK + "256"),
    "VIRTIO-5.2.6.2-DEV-DISCARD-MAY-DEALLOCATE": When(negotiated=("DISCARD",),
                                                      source=BLK + "973", via=BLK + "256"),
    "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-MAY-DEALLOCATE": When(negotiated=("WRITE_ZEROES",),
                                                           source=BLK + "976", via=BLK + "262"),
    "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO": When(negotiated=("WRITE_ZEROES",),
                                                      source=BLK + "978", via=BLK + "262"),
    # write_zeroes_may_unmap is a field of the WRITE_ZEROES feature
    "VIRTIO-5.2.6.2-DEV-MAY-UNMAP-FIELD": When(offered=("WRITE_ZEROES",), source=BLK + "982",
                                               via=BLK + "144"),
    "VIRTIO-5.2.6.2-DEV-MAY-UNMAP-CHANGE": When(offered=("WRITE_ZEROES",), source=BLK + "985",
                                                via=BLK + "144"),
    # the storage's metrics are the condition: met by not offering LIFETIME
    "VIRTIO-5.2.6.2-DEV-LIFETIME-ONLY-IF-MEANINGFUL": When(forbids_offer="LIFETIME",
                                                           source=BLK + "1039"),
    "VIRTIO-5.2.6.2-DEV-LIFETIME-RESERVED": When(offered=("LIFETIME",), source=BLK + "1039"),
    "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP": When(not_negotiated=("ZONED",), source=BLK + "1054"),
    **{f"VIRTIO-5.2.6.2-DEV-{k}": _ZONED_OP for k in _ZONED_OPS},
    "VIRTIO-5.2.6.2-DEV-ZONED-ERASE-ALIGNMENT": When(negotiated=("ZONED", "SECURE_ERASE"),
                                                     source=BLK + "1177"),
    "VIRTIO-5.2.6.2-DEV-ZONED-ERASE-SIZE": When(negotiated=("ZONED", "SECURE_ERASE"),
                                                source=BLK + "1177"),
    "VIRTIO-5.2.6.2-DEV-ZONED-ERASE-AS-RESET": When(negotiated=("ZONED", "SECURE_ERASE"),
                                                    source=BLK + "1188", via=BLK + "1177"),
}

# --- §5.1 net ------------------------------------------------------------------------------
_GUEST_GSO = "GUEST_TSO4|GUEST_TSO6|GUEST_UFO|GUEST_USO4|GUEST_USO6"
_HOST_GSO = "HOST_TSO4|HOST_TSO6|HOST_USO|HOST_UFO"
_GUEST_CSUM = When(negotiated=("GUEST_CSUM",), source=NET + "805")
_NO_MRG = When(not_negotiated=("MRG_RXBUF",), source=NET + "767")
# a packet spread over several buffers: only with MRG_RXBUF (5.1.6.3.2, net.tex 687)
_MRG = When(negotiated=("MRG_RXBUF",), source=NET + "770")
_SINGLE = NET + "689"  # "a single descriptor if VIRTIO_NET_F_MRG_RXBUF was not negotiated"
NETWORK: dict[str, When] = {
    "VIRTIO-5.1.4.1-DEV-MAX-PAIRS": When(offered=("MQ",), source=NET + "240"),
    "VIRTIO-5.1.4.1-DEV-MTU-RANGE": When(offered=("MTU",), source=NET + "243"),
    "VIRTIO-5.1.4.1-DEV-MTU-MIN-1280": When(offered=("MTU",), source=NET + "246"),
    # mtu "only exists if VIRTIO_NET_F_MTU is set" (net.tex 203)
    "VIRTIO-5.1.4.1-DEV-MTU-FIXED": When(offered=("MTU",), source=NET + "249"),
    "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU": When(negotiated=("MTU",), source=NET + "251"),
    "VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU": When(negotiated=("MTU",), source=NET + "255"),
    "VIRTIO-5.1.4.1-DEV-RSS-KEY": When(offered=("RSS|HASH_REPORT",), source=NET + "260"),
    "VIRTIO-5.1.4.1-DEV-RSS-TABLE": When(offered=("RSS",), source=NET + "263"),
    "VIRTIO-5.1.4.1-DEV-MAY-STANDBY": When(negotiated=("STANDBY",), source=NET + "266"),
    "VIRTIO-5.1.4.1-DEV-SPEED-RANGE": When(negotiated=("SPEED_DUPLEX",), source=NET + "269"),
    "VIRTIO-5.1.4.1-DEV-DUPLEX-VALUES": When(negotiated=("SPEED_DUPLEX",), source=NET + "273"),
    "VIRTIO-5.1.4.1-DEV-SPEED-STABLE": When(negotiated=("SPEED_DUPLEX", "STATUS"),
                                            source=NET + "277"),
    "VIRTIO-5.1.4.1-DEV-CTRL-RX-EXTRA-NEEDS-CTRL-VQ": When(offered=("CTRL_RX_EXTRA",),
                                                           source=NET + "285"),
    "VIRTIO-5.1.4.1-DEV-HASH-REPORT-NEEDS-CTRL-VQ": When(offered=("HASH_REPORT",),
                                                         source=NET + "282"),
    # 5.1.6.2.2 transmission
    "VIRTIO-5.1.6.2.2-DEV-HDR-LEN-NOT-RELIED": When(negotiated=(_HOST_GSO,),
                                                    source=NET + "612"),
    "VIRTIO-5.1.6.2.2-DEV-HDR-LEN-HINT": When(negotiated=(_HOST_GSO,), source=NET + "612"),
    "VIRTIO-5.1.6.2.2-DEV-MAY-USE-HDR-LEN": When(negotiated=(_HOST_GSO, "GUEST_HDRLEN"),
                                                 source=NET + "615"),
    # 5.1.6.3.2 / 5.1.6.4.1 reception
    "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC": When(not_negotiated=("MRG_RXBUF",), source=NET + "689"),
    "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE": _NO_MRG,
    "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG": _MRG,
    "VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL": When(negotiated=("MRG_RXBUF",), source=NET + "774",
                                               via=_SINGLE),
    "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER": When(negotiated=("MRG_RXBUF",), source=NET + "779",
                                              via=_SINGLE),
    "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO": When(not_negotiated=("GUEST_CSUM",), source=NET + "783"),
    "VIRTIO-5.1.6.4.1-DEV-FULL-CSUM": When(not_negotiated=("GUEST_CSUM",), source=NET + "783"),
    "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV4": When(not_negotiated=("GUEST_TSO4",),
                                              source=NET + "787"),
    "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP": When(not_negotiated=("GUEST_UFO",), source=NET + "790"),
    "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV6": When(not_negotiated=("GUEST_TSO6",),
                                              source=NET + "793"),
    "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP-L4": When(not_negotiated=("GUEST_USO4", "GUEST_USO6"),
                                               source=NET + "796"),
    "VIRTIO-5.1.6.4.1-DEV-ECN-UNNEGOTIATED": When(not_negotiated=("GUEST_ECN",),
                                                  source=NET + "799"),
    "VIRTIO-5.1.6.4.1-DEV-GSO-ECN-BIT": When(negotiated=("GUEST_ECN",), source=NET + "801"),
    "VIRTIO-5.1.6.4.1-DEV-MAY-NEEDS-CSUM": _GUEST_CSUM,
    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-VALIDATE": _GUEST_CSUM,
    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO": _GUEST_CSUM,
    "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE": _GUEST_CSUM,
    "VIRTIO-5.1.6.4.1-DEV-GSO-NONE": When(
        not_negotiated=tuple(_GUEST_GSO.split("|")), source=NET + "819"),
    # gso_type other than NONE is possible only with a GUEST_* segmentation feature
    "VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM": When(negotiated=(_GUEST_GSO,), source=NET + "825",
                                                via=NET + "822"),
    "VIRTIO-5.1.6.4.1-DEV-RSC-INFO": When(negotiated=("RSC_EXT",), source=NET + "826"),
    "VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO": When(not_negotiated=("RSC_EXT",), source=NET + "831"),
    "VIRTIO-5.1.6.4.1-DEV-HDR-LEN": When(negotiated=(_GUEST_GSO,), source=NET + "834"),
    "VIRTIO-5.1.6.4.1-DEV-MAY-DATA-VALID": When(negotiated=("GUEST_CSUM",), source=NET + "842"),
    "VIRTIO-5.1.6.4.1-DEV-DATA-VALID-VALIDATED": When(negotiated=("GUEST_CSUM",),
                                                      source=NET + "842"),
    # inner header hash: enabled_tunnel_types is set by HASH_TUNNEL_SET, a HASH_TUNNEL command
    "VIRTIO-5.1.6.4.4.4-DEV-TUNNEL-OUTER-HASH": When(negotiated=("HASH_TUNNEL",),
                                                     source=NET + "1097", via=NET + "1108"),
    "VIRTIO-5.1.6.4.4.4-DEV-TUNNEL-DISABLE": When(negotiated=("HASH_TUNNEL",),
                                                  source=NET + "1103", via=NET + "1108"),
    "VIRTIO-5.1.6.4.4.4-DEV-TUNNEL-UNSUPPORTED-ERR": When(negotiated=("HASH_TUNNEL",),
                                                          source=NET + "1100", via=NET + "1108"),
}
# 5.1.6.5 control virtqueue: "The driver uses the control virtqueue (if
# VIRTIO_NET_F_CTRL_VQ is negotiated)" (net.tex 1146), and each class its own feature
# (features besides CTRL_VQ, the statement's line, and where the spec ties the command
# class to its feature when the statement does not name it)
_CTRL: dict[str, tuple[tuple[str, ...], str] | tuple[tuple[str, ...], str, str]] = {
    "5.1.6.5.1.1-DEV-CTRL-RX-COMMANDS": (("CTRL_RX",), "1196"),
    "5.1.6.5.1.1-DEV-PROMISC": (("CTRL_RX",), "1199", "1196"),
    "5.1.6.5.1.1-DEV-PROMISC-OVERRIDES": (("CTRL_RX",), "1202", "1196"),
    "5.1.6.5.1.1-DEV-ALLMULTI": (("CTRL_RX",), "1206", "1196"),
    "5.1.6.5.1.1-DEV-CTRL-RX-EXTRA-COMMANDS": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-ALLUNI": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOMULTI": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOMULTI-NOT-BROADCAST": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOMULTI-OVER-ALLMULTI": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOUNI": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOUNI-OVER-ALLUNI": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOBCAST": (("CTRL_RX_EXTRA",), "1212"),
    "5.1.6.5.1.1-DEV-NOBCAST-OVER-ALLMULTI": (("CTRL_RX_EXTRA",), "1212"),
    # the MAC filtering table is set by MAC_TABLE_SET, a CTRL_RX command (net.tex 1256)
    "5.1.6.5.2.1-DEV-MAC-TABLE-EMPTY-ON-RESET": (("CTRL_RX",), "1290", "1256"),
    "5.1.6.5.2.1-DEV-MAC-TABLE-BEFORE-USED": (("CTRL_RX",), "1292", "1256"),
    "5.1.6.5.2.1-DEV-MAC-FILTER-DROP": (("CTRL_RX",), "1298", "1256"),
    "5.1.6.5.2.1-DEV-MAC-ADDR-BEFORE-USED": (("MAC",), "1295"),
    "5.1.6.5.3.1-DEV-VLAN-FILTER": (("CTRL_VLAN",), "1365"),
    "5.1.6.5.4.2-DEV-ANNOUNCE-CLEAR": (("GUEST_ANNOUNCE",), "1417"),
    # automatic receive steering is MQ's ("Device supports multiqueue with automatic
    # receive steering", net.tex 85), RSS processing RSS's (net.tex 111)
    "5.1.6.5.6.2-DEV-MQ-RX1-AFTER-RESET": (("MQ",), "1495", "85"),
    "5.1.6.5.6.2-DEV-MQ-RX-WITHIN-PAIRS": (("MQ",), "1497", "85"),
    "5.1.6.5.6.2-DEV-MQ-RESELECT-ON-RESET": (("MQ",), "1501", "85"),
    "5.1.6.5.6.2-DEV-MQ-DROP-ALL-RESET": (("MQ",), "1501", "85"),
    "5.1.6.5.7.3-DEV-RSS-STEERING": (("RSS",), "1599", "111"),
    "5.1.6.5.7.3-DEV-RSS-DROP-ON-RESET": (("RSS",), "1606", "111"),
    # the coalescing commands are NOTF_COAL's and VQ_NOTF_COAL's (net.tex 1658, 1662)
    **{f"5.1.6.5.9.6-DEV-{k}": (("NOTF_COAL|VQ_NOTF_COAL",), "1786", "1658") for k in (
        "COAL-IGNORE-RESERVED", "COAL-SET-ERR", "COAL-BEST-EFFORT", "COAL-SUPPRESSED",
        "COAL-RESET-ZERO")},
    **{f"5.1.6.5.9.6-DEV-{k}": (("VQ_NOTF_COAL",), "1790", "1662") for k in (
        "VQ-COAL-SET-ERR", "VQ-COAL-BAD-QUEUE")},
    "5.1.6.5.9.6-DEV-COAL-TX-REENABLE": (("NOTF_COAL|VQ_NOTF_COAL",), "1796", "1658"),
    "5.1.6.5.9.6-DEV-COAL-RX-REENABLE": (("NOTF_COAL|VQ_NOTF_COAL",), "1799", "1658"),
}
NETWORK.update({f"VIRTIO-{k}": When(negotiated=("CTRL_VQ", *v[0]), source=f"{NET}{v[1]}",
                                    via=f"{NET}{v[2]}" if len(v) > 2 else "")
                for k, v in _CTRL.items()})
# not a control-queue command: VLAN-tagged packets are accepted whenever CTRL_VLAN is not
# negotiated, control queue or none
NETWORK["VIRTIO-5.1.6.5.3.1-DEV-NO-VLAN-FILTER"] = When(not_negotiated=("CTRL_VLAN",),
                                                        source=NET + "1362")


# the "Requires" line of each net feature in 5.1.3.1's list (net.tex 124 opens it)
_NET_REQUIRES = {
    "GUEST_TSO4": 130, "GUEST_TSO6": 131, "GUEST_ECN": 132, "GUEST_UFO": 133,
    "GUEST_USO4": 134, "GUEST_USO6": 135, "HOST_TSO4": 137, "HOST_TSO6": 138,
    "HOST_ECN": 139, "HOST_UFO": 140, "HOST_USO": 141, "CTRL_RX": 143, "CTRL_VLAN": 144,
    "GUEST_ANNOUNCE": 145, "MQ": 146, "CTRL_MAC_ADDR": 147, "NOTF_COAL": 148,
    "RSC_EXT": 149, "RSS": 150, "VQ_NOTF_COAL": 151, "HASH_TUNNEL": 152,
}


# --- the driver side ---------------------------------------------------------------------
_DRV_EVENT_IDX = When(negotiated=("EVENT_IDX",), source=SPLIT + "346")
_DRV_NO_EVENT_IDX = When(not_negotiated=("EVENT_IDX",), source=SPLIT + "339")
_DRV_AVAIL_EVENT = When(negotiated=("EVENT_IDX",), source=SPLIT + "528")
_DRV_NO_AVAIL_EVENT = When(not_negotiated=("EVENT_IDX",), source=SPLIT + "518")
_OFFERED = {  # "A driver SHOULD/MUST accept X if it is offered" (content.tex, 6.1)
    "VERSION-1": ("VERSION_1", "879"), "ACCESS-PLATFORM": ("ACCESS_PLATFORM", "882"),
    "RING-PACKED": ("RING_PACKED", "888"), "ORDER-PLATFORM": ("ORDER_PLATFORM", "890"),
    "NOTIF-CONFIG-DATA": ("NOTIF_CONFIG_DATA", "909"),
}
_BLK_ZONED_DRV = When(negotiated=("ZONED",), source=BLK + "915")
DRIVER: dict[str, When] = {
    "VIRTIO-2.7.5-DRV-IN-ORDER-NEXT": When(negotiated=("IN_ORDER",), source=SPLIT + "226"),
    "VIRTIO-2.7.5.3-DRV-INDIRECT-IN-ORDER": When(negotiated=("IN_ORDER",), source=SPLIT + "277"),
    "VIRTIO-2.7.7-DRV-FLAGS-VALUES": _DRV_NO_EVENT_IDX,
    "VIRTIO-2.7.7-DRV-MAY-NO-INTERRUPT": _DRV_NO_EVENT_IDX,
    "VIRTIO-2.7.7-DRV-FLAGS-ZERO-EVENT-IDX": _DRV_EVENT_IDX,
    "VIRTIO-2.7.7-DRV-MAY-USED-EVENT": _DRV_EVENT_IDX,
    "VIRTIO-2.7.10-DRV-IGNORE-AVAIL-EVENT": _DRV_NO_AVAIL_EVENT,
    "VIRTIO-2.7.10-DRV-KICK-FLAGS0": _DRV_NO_AVAIL_EVENT,
    "VIRTIO-2.7.10-DRV-NO-KICK-FLAGS1": _DRV_NO_AVAIL_EVENT,
    "VIRTIO-2.7.10-DRV-IGNORE-FLAGS-EVENT-IDX": _DRV_AVAIL_EVENT,
    "VIRTIO-2.7.10-DRV-KICK-AVAIL-EVENT": _DRV_AVAIL_EVENT,
    "VIRTIO-2.7.10-DRV-NO-KICK-OTHERWISE": _DRV_AVAIL_EVENT,
    # 6.1
    **{f"VIRTIO-6.1-DRV-ACCEPT-{k}": When(offered=(f,), source=CONTENT + line)
       for k, (f, line) in _OFFERED.items()},
    "VIRTIO-6.1-DRV-ACCESS-PLATFORM-IOMMU": When(negotiated=("ACCESS_PLATFORM",),
                                                 source=CONTENT + "882"),
    "VIRTIO-6.1-DRV-PHYSICAL-ADDRESSES": When(not_offered=("ACCESS_PLATFORM",),
                                              source=CONTENT + "885"),
    "VIRTIO-6.1-DRV-ORDER-PLATFORM-BARRIERS": When(negotiated=("ORDER_PLATFORM",),
                                                   source=CONTENT + "891"),
    "VIRTIO-6.1-DRV-SR-IOV-MAY-ENABLE": When(negotiated=("SR_IOV",), source=CONTENT + "894"),
    "VIRTIO-6.1-DRV-SR-IOV-AFTER-RESET": When(negotiated=("SR_IOV",), source=CONTENT + "903"),
    # 5.1 net
    "VIRTIO-5.1.4.2-DRV-NEGOTIATE-MAC": When(offered=("MAC",), source=NET + "292"),
    "VIRTIO-5.1.4.2-DRV-USE-MAC": When(negotiated=("MAC",), source=NET + "293"),
    "VIRTIO-5.1.4.2-DRV-LOCAL-MAC": When(not_negotiated=("MAC",), source=NET + "293"),
    "VIRTIO-5.1.4.2-DRV-MTU-RX-BUFFERS": When(negotiated=("MTU",), source=NET + "304"),
    "VIRTIO-5.1.4.2-DRV-MTU-TX-LIMIT": When(negotiated=("MTU",), source=NET + "308"),
    "VIRTIO-5.1.4.2-DRV-SPEED-DUPLEX-UNKNOWN": When(negotiated=("SPEED_DUPLEX",),
                                                    source=NET + "314"),
    "VIRTIO-5.1.4.2-DRV-SPEED-DUPLEX-REREAD": When(negotiated=("SPEED_DUPLEX",),
                                                   source=NET + "319"),
    "VIRTIO-5.1.6.2.1-DRV-FLAGS-ZERO": When(not_negotiated=("CSUM",), source=NET + "530"),
    "VIRTIO-5.1.6.2.1-DRV-MAY-GSO-TCPV4": When(negotiated=("HOST_TSO4",), source=NET + "534"),
    "VIRTIO-5.1.6.2.1-DRV-MAY-GSO-TCPV6": When(negotiated=("HOST_TSO6",), source=NET + "539"),
    "VIRTIO-5.1.6.2.1-DRV-MAY-GSO-UDP": When(negotiated=("HOST_UFO",), source=NET + "544"),
    "VIRTIO-5.1.6.2.1-DRV-MAY-GSO-UDP-L4": When(negotiated=("HOST_USO",), source=NET + "549"),
    "VIRTIO-5.1.6.2.1-DRV-NO-ECN-TSO": When(not_negotiated=("HOST_ECN",), source=NET + "554"),
    "VIRTIO-5.1.6.2.1-DRV-ECN-BIT": When(negotiated=("HOST_ECN",), source=NET + "554"),
    **{f"VIRTIO-5.1.6.2.1-DRV-{k}": When(negotiated=("CSUM",), source=NET + "560") for k in (
        "MAY-PARTIAL-CSUM", "PARTIAL-CSUM-VALID-BEFORE", "PARTIAL-CSUM-PSEUDO",
        "PARTIAL-CSUM-FIELDS")},
    "VIRTIO-5.1.6.2.1-DRV-HDR-LEN-EXACT": When(negotiated=(_HOST_GSO, "GUEST_HDRLEN"),
                                               source=NET + "589"),
    "VIRTIO-5.1.6.3.1-DRV-RX-BUFFER-SIZE": When(not_negotiated=("MRG_RXBUF",),
                                                source=NET + "665"),
    "VIRTIO-5.1.6.3.1-DRV-MRG-BUFFER-HDR": When(negotiated=("MRG_RXBUF",), source=NET + "673"),
    "VIRTIO-5.1.6.3.1-DRV-MQ-POPULATE": When(negotiated=("MQ",), source=NET + "681"),
    "VIRTIO-5.1.6.4.2-DRV-HDR-LEN-HINT": When(negotiated=(_GUEST_GSO,), source=NET + "858"),
    # 5.2 blk
    "VIRTIO-5.2.5.1-DRV-WRITETHROUGH-DEDUCE": When(not_negotiated=("CONFIG_WCE", "FLUSH"),
                                                   source=BLK + "288"),
    "VIRTIO-5.2.5.1-DRV-WRITEBACK-ASSUME": When(negotiated=("FLUSH",),
                                                not_negotiated=("CONFIG_WCE",),
                                                source=BLK + "290"),
    "VIRTIO-5.2.5.1-DRV-HM-NO-DISCARD": When(offered=("ZONED",), source=BLK + "300"),
    "VIRTIO-5.2.5.1-DRV-HA-DISCARD-INDEPENDENT": When(offered=("ZONED", "DISCARD"),
                                                      source=BLK + "304"),
    "VIRTIO-5.2.5.1-DRV-HM-UNSUPPORTED-FAIL": When(negotiated=("ZONED",), source=BLK + "308"),
    "VIRTIO-5.2.5.1-DRV-HA-AS-NON-ZONED": When(negotiated=("ZONED",), source=BLK + "308"),
    "VIRTIO-5.2.5.1-DRV-HA-IGNORE-ZONED": When(negotiated=("ZONED",), source=BLK + "308"),
    "VIRTIO-5.2.6.1-DRV-ACCEPT-RO": When(offered=("RO",), source=BLK + "874"),
    "VIRTIO-5.2.6.1-DRV-WRITEBACK-SWITCH": When(negotiated=("CONFIG_WCE",), source=BLK + "900"),
    **{f"VIRTIO-5.2.6.1-DRV-{k}": _BLK_ZONED_DRV for k in (
        "ZONE-SECTOR-ALIGN", "ZONE-OP-SECTOR", "ZONE-RESET-ALL-SECTOR", "ZONE-REPORT-SECTOR",
        "ZONE-REPORT-ANY-SECTOR", "ZONE-APPEND-SECTOR", "ZONE-APPEND-SIZE",
        "ZONE-APPEND-READ-SECTOR", "SEQ-WRITE-RULES")},
}


def _dependencies() -> dict[str, When]:
    """Each dependency record (§5.1.3.1, §5.2.5.2, §5.7.3) applies to a device that offers the
    feature that has the dependency ("X requires Y", §2.2.2)."""
    out: dict[str, When] = {}
    for dev in (F.NET, F.BLOCK, F.GPU):
        for feat in F.DEPENDENCIES[dev]:
            name = F.feature_name(dev, feat)
            src = {F.NET: NET + str(_NET_REQUIRES.get(name, 124)), F.BLOCK: BLK + "321",
                   F.GPU: GPU + "38"}[dev]
            out.setdefault(F.dependency_requirement(dev, feat),
                           When(offered=(name,), source=src))
    return out


CONDITIONS: dict[str, When] = {**_dependencies(), **CORE, **TRANSPORTS, **BLOCK, **NETWORK,
                               **DRIVER}


def check_names() -> None:
    """Every feature a condition names is one of its device's (or chapter 6's)."""
    reqs = {r.id: r for r in all_requirements()}
    for rid, when in CONDITIONS.items():
        dev = device_type(reqs[rid]) if rid in reqs else None
        for name in when.features():
            if feature_bit(dev, name) is None:
                raise ValueError(f"{rid}: unknown feature {name!r} for {dev or 'any device'}")


condition(CONDITIONS)


def conditioned(device: str) -> list[Requirement]:
    """The registered statements of ``device``'s chapter and of chapters 2 and 6 that state
    a condition (their own or their section's)."""
    from spec.virtio.registry import condition_of

    return [r for r in all_requirements() if condition_of(r) and (
        device_type(r) in (None, device))]
