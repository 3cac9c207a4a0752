"""Registry records for device types: VIRTIO 1.3 §5.1 (basics), §5.2, §5.3, §5.4, §5.7, §5.8.

Blk zoned-device rules (§5.2.5.x / §5.2.6.x under VIRTIO_BLK_F_ZONED) and net's control
queue, hashing and RSS are not yet registered; net's device rules on transmission
(§5.1.6.2.2) and reception (§5.1.6.3.2, §5.1.6.4.1) are.
"""

from __future__ import annotations

from spec.virtio import features as F
from spec.virtio.registry import Requirement, register

BK = "spec.virtio.devices.block:"
NT = "spec.virtio.devices.net:"
CO = "spec.virtio.devices.console:"
EN = "spec.virtio.devices.entropy:"
GP = "spec.virtio.devices.gpu:"
IN = "spec.virtio.devices.input:"
FE = "spec.virtio.features:"
T_BK = "tests/virtio/test_devices_block.py::"
T_NT = "tests/virtio/test_devices_net.py::"
T_SM = "tests/virtio/test_devices_small.py::"
LV = "conformance.linux_virtio.judge:"  # the driver judge of a real driver's rings
T_LV = "tests/conformance/test_linux_virtio.py::"


def R(rid: str, section: str, level: str, side: str, text: str, *checks: str) -> Requirement:
    return Requirement(rid, section, level, side, text, tuple(checks))  # type: ignore[arg-type]


BLOCK = (
    R(
        "VIRTIO-5.2.5.1-DRV-FLUSH-CAPABLE",
        "5.2.5.1",
        "SHOULD NOT",
        "driver",
        "A driver that never sends FLUSH does not negotiate VIRTIO_BLK_F_FLUSH.",
    ),
    R(
        "VIRTIO-5.2.5.1-DRV-WRITEBACK-AFTER-FEATURES-OK",
        "5.2.5.1",
        "MUST NOT",
        "driver",
        "The driver reads writeback only after FEATURES_OK.",
        BK + "check_driver_writeback_read",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH",
        "5.2.5.2",
        "MUST",
        "device",
        "A device offering CONFIG_WCE also offers FLUSH (and SHOULD always offer FLUSH).",
        FE + "check_device_offer",
        T_BK + "test_planted_wce_without_flush_is_flagged",
        "tests/virtio/test_features.py::test_each_dependency_has_its_own_requirement",
    ),
    R(
        "VIRTIO-5.2.5.2-DEV-WRITEBACK-ZERO",
        "5.2.5.2",
        "MUST",
        "device",
        "With CONFIG_WCE but not FLUSH negotiated, writeback starts at 0.",
        BK + "check_config",
        T_BK + "test_config_checks",
    ),
    R(
        "VIRTIO-5.2.5.2-DEV-PADDING-ZERO",
        "5.2.5.2",
        "MUST",
        "device",
        "The padding bytes unused0 and unused1 are zero.",
        BK + "check_config",
        T_BK + "test_config_checks",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-WITHIN-CAPACITY",
        "5.2.6.1",
        "MUST NOT",
        "driver",
        "No request reads or writes past capacity.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-FLUSH-SECTOR-ZERO",
        "5.2.6.1",
        "MUST",
        "driver",
        "FLUSH requests carry sector 0.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-DATA-MULTIPLE-512",
        "5.2.6.1",
        "MUST",
        "driver",
        "IN and OUT data lengths are multiples of 512 bytes.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-SEGMENT-MULTIPLE",
        "5.2.6.1",
        "MUST",
        "driver",
        "DISCARD / WRITE_ZEROES / SECURE_ERASE data is a whole number of 16-byte segments.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-GET-ID-20",
        "5.2.6.1",
        "MUST",
        "driver",
        "GET_ID data is exactly 20 bytes.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-MAX-SEGMENTS",
        "5.2.6.1",
        "MUST NOT",
        "driver",
        "Segment counts stay within max_discard_seg / max_write_zeroes_seg / max_secure_erase_seg.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.1-DRV-DISCARD-NO-UNMAP",
        "5.2.6.1",
        "MUST",
        "driver",
        "The unmap flag is zero in DISCARD segments.",
        BK + "check_driver_request",
        T_BK + "test_driver_request_rules",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-RO-IOERR",
        "5.2.6.2",
        "MUST",
        "device",
        "With VIRTIO_BLK_F_RO offered, writes fail with IOERR and change no data.",
        BK + "check_completion",
        T_BK + "test_planted_write_to_ro_is_flagged",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-UNSUPP-FLAGS",
        "5.2.6.2",
        "MUST",
        "device",
        "DISCARD / SECURE_ERASE / WRITE_ZEROES with unknown flags, or DISCARD with unmap, end "
        "in UNSUPP.",
        BK + "check_completion",
        T_BK + "test_planted_unknown_flag_accepted",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-READ-ZERO",
        "5.2.6.2",
        "MUST",
        "device",
        "After WRITE_ZEROES completes, the range reads back as zeroes, unmap or not.",
        BK + "check_completion",
        T_BK + "test_planted_write_zeroes_keeps_data",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-STABLE-WRITES",
        "5.2.6.2",
        "MUST",
        "device",
        "A device on persistent storage commits writes that count as stable before reporting "
        "the write (write-through cases) or the flush complete.",
        BK + "check_completion",
        T_BK + "test_planted_flush_not_persisting",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-LIFETIME-RESERVED",
        "5.2.6.2",
        "MUST NOT",
        "device",
        "Lifetime metrics use no reserved values.",
        BK + "check_lifetime",
        T_BK + "test_lifetime_reserved_values",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-ZONE-UNSUPP",
        "5.2.6.2",
        "MUST",
        "device",
        "Without VIRTIO_BLK_F_ZONED, zone commands end in UNSUPP.",
        BK + "check_completion",
        T_BK + "test_planted_zone_command_accepted",
    ),
    R(
        "VIRTIO-5.2.6.2-DEV-CAPACITY-NOTIFY",
        "5.2.6.2",
        "SHOULD",
        "device",
        "A capacity change is followed by a config change notification.",
    ),
    # the rest of §5.2.5.1 / §5.2.5.2 / §5.2.6.1 / §5.2.6.2 (issue 13 item 1), zoned rules
    # included; no check evaluates them yet
    R("VIRTIO-5.2.5.1-DRV-WRITETHROUGH-DEDUCE", "5.2.5.1", "MAY", "driver",
      "With neither CONFIG_WCE nor FLUSH negotiated the driver can take the cache to be "
      "write-through."),
    R("VIRTIO-5.2.5.1-DRV-WRITEBACK-ASSUME", "5.2.5.1", "SHOULD", "driver",
      "With FLUSH but not CONFIG_WCE negotiated the driver takes the cache to be write-back."),
    R("VIRTIO-5.2.5.1-DRV-ZONED-CAPABLE", "5.2.5.1", "MUST NOT", "driver",
      "A driver that cannot handle host-managed, host-aware and non-zoned models alike does "
      "not negotiate ZONED."),
    R("VIRTIO-5.2.5.1-DRV-HM-NO-DISCARD", "5.2.5.1", "MUST NOT", "driver",
      "Facing ZONED with the host-managed model, the driver does not take DISCARD."),
    R("VIRTIO-5.2.5.1-DRV-HA-DISCARD-INDEPENDENT", "5.2.5.1", "MAY", "driver",
      "With a host-aware or non-zoned model, ZONED and DISCARD can be negotiated each on its "
      "own."),
    R("VIRTIO-5.2.5.1-DRV-HM-UNSUPPORTED-FAIL", "5.2.5.1", "MUST NOT", "driver",
      "With ZONED negotiated, a driver unable to drive host-managed devices that reads that "
      "model sets FAILED instead of FEATURES_OK."),
    R("VIRTIO-5.2.5.1-DRV-HA-AS-NON-ZONED", "5.2.5.1", "MAY", "driver",
      "A driver without zoned support can drive a host-aware device as an ordinary one."),
    R("VIRTIO-5.2.5.1-DRV-HA-IGNORE-ZONED", "5.2.5.1", "SHOULD", "driver",
      "Driving a host-aware device as an ordinary one, the driver ignores the rest of the "
      "zoned fields."),
    R("VIRTIO-5.2.5.2-DEV-OFFER-FLUSH", "5.2.5.2", "SHOULD", "device",
      "A block device offers FLUSH in any case."),
    R("VIRTIO-5.2.5.2-DEV-NOT-ZONED-NO-OFFER", "5.2.5.2", "SHOULD NOT", "device",
      "A device that is not zoned does not offer ZONED."),
    R("VIRTIO-5.2.5.2-DEV-LEGACY-NO-ZONED", "5.2.5.2", "MUST NOT", "device",
      "A legacy-interface device never offers ZONED."),
    R("VIRTIO-5.2.5.2-DEV-ZONED-DECLINED-ZEROES", "5.2.5.2", "SHOULD", "device",
      "A host-aware or non-zoned device whose ZONED the driver declined carries on, with "
      "every zoned field 0."),
    R("VIRTIO-5.2.5.2-DEV-HM-DECLINED-FAIL", "5.2.5.2", "MUST", "device",
      "A host-managed device whose ZONED the driver declined does not let FEATURES_OK stick."),
    R("VIRTIO-5.2.5.2-DEV-ZONED-MODEL", "5.2.5.2", "MUST", "device",
      "With ZONED negotiated, zoned.model says NONE (drive-managed or not zoned), HM or HA "
      "as the device operates."),
    R("VIRTIO-5.2.5.2-DEV-ZONE-SECTORS", "5.2.5.2", "MUST", "device",
      "For HM/HA, zone_sectors gives the one size of every zone but the last."),
    R("VIRTIO-5.2.5.2-DEV-LAST-ZONE-SMALLER", "5.2.5.2", "MAY", "device",
      "The last zone can be smaller than the others."),
    R("VIRTIO-5.2.5.2-DEV-MAX-OPEN-ZONES", "5.2.5.2", "MUST", "device",
      "For HM/HA, max_open_zones gives how many zones can be open at once (0: no limit)."),
    R("VIRTIO-5.2.5.2-DEV-MAX-ACTIVE-ZONES", "5.2.5.2", "MUST", "device",
      "For HM/HA, max_active_zones gives how many zones can be open or closed at once (0: no "
      "limit)."),
    R("VIRTIO-5.2.5.2-DEV-MAX-APPEND-SECTORS", "5.2.5.2", "MUST", "device",
      "For HM/HA, max_append_sectors gives the largest ZONE_APPEND that can succeed."),
    R("VIRTIO-5.2.5.2-DEV-MAX-APPEND-BOUND", "5.2.5.2", "MUST NOT", "device",
      "max_append_sectors is at most seg_max times size_max."),
    R("VIRTIO-5.2.5.2-DEV-NO-APPEND-ZERO", "5.2.5.2", "MAY", "device",
      "A device without ZONE_APPEND support can show max_append_sectors 0."),
    R("VIRTIO-5.2.5.2-DEV-WRITE-GRANULARITY", "5.2.5.2", "MUST", "device",
      "For HM/HA, write_granularity gives the offset and size alignment of OUT and "
      "ZONE_APPEND to sequential zones."),
    R("VIRTIO-5.2.5.2-DEV-UNUSED2-ZERO", "5.2.5.2", "MUST", "device",
      "The zoned padding unused2 is zero."),
    R("VIRTIO-5.2.6.1-DRV-CAPACITY-RECHECK", "5.2.6.1", "SHOULD", "driver",
      "On a config change notification the driver looks whether capacity changed."),
    R("VIRTIO-5.2.6.1-DRV-ACCEPT-RO", "5.2.6.1", "SHOULD", "driver",
      "The driver takes RO whenever it is offered."),
    R("VIRTIO-5.2.6.1-DRV-FLUSH-NO-DATA", "5.2.6.1", "SHOULD NOT", "driver",
      "A FLUSH request carries no data."),
    R("VIRTIO-5.2.6.1-DRV-WRITEBACK-SWITCH", "5.2.6.1", "MAY", "driver",
      "With CONFIG_WCE the driver can write writeback 0 or 1 to choose write-through or "
      "write-back."),
    R("VIRTIO-5.2.6.1-DRV-NO-ASSUME-COMMITTED", "5.2.6.1", "MUST NOT", "driver",
      "Switching writeback to 0 does not tell the driver that earlier volatile writes reached "
      "stable storage."),
    R("VIRTIO-5.2.6.1-DRV-DISCARDED-DATA-UNDEFINED", "5.2.6.1", "MUST NOT", "driver",
      "The driver expects nothing of what reads of discarded sectors return."),
    R("VIRTIO-5.2.6.1-DRV-SEGMENTS-UNKNOWN-ON-IOERR", "5.2.6.1", "MUST NOT", "driver",
      "After IOERR on a multi-segment DISCARD or WRITE_ZEROES, the driver assumes nothing "
      "about which segments were done."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-SECTOR-ALIGN", "5.2.6.1", "MUST", "driver",
      "Zone sector addresses the driver gives are multiples of 512 bytes."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-REPORT-SECTOR", "5.2.6.1", "MUST", "driver",
      "ZONE_REPORT's sector lies inside the first zone to report."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-REPORT-ANY-SECTOR", "5.2.6.1", "MAY", "driver",
      "That sector need not be the zone's start."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-OP-SECTOR", "5.2.6.1", "MUST", "driver",
      "ZONE_OPEN, ZONE_CLOSE, ZONE_FINISH and ZONE_RESET name the zone's first sector."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-RESET-ALL-SECTOR", "5.2.6.1", "MUST", "driver",
      "ZONE_RESET_ALL carries sector 0."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-APPEND-SECTOR", "5.2.6.1", "MUST", "driver",
      "ZONE_APPEND's sector is the start of the zone appended to."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-APPEND-SIZE", "5.2.6.1", "MUST", "driver",
      "ZONE_APPEND data is a multiple of write_granularity and at most max_append_sectors."),
    R("VIRTIO-5.2.6.1-DRV-ZONE-APPEND-READ-SECTOR", "5.2.6.1", "MAY", "driver",
      "After a successful ZONE_APPEND the driver can read where the data went from "
      "append_sector."),
    R("VIRTIO-5.2.6.1-DRV-SEQ-WRITE-RULES", "5.2.6.1", "MUST", "driver",
      "OUT to a sequential zone and ZONE_APPEND have a size and sector that are multiples of "
      "write_granularity, and do not run past the zone's writable capacity from its write "
      "pointer."),
    R("VIRTIO-5.2.6.2-DEV-CAPACITY-MAY-CHANGE", "5.2.6.2", "MAY", "device",
      "capacity can change while the device runs."),
    R("VIRTIO-5.2.6.2-DEV-DISCARD-MAY-DEALLOCATE", "5.2.6.2", "MAY", "device",
      "DISCARD can deallocate the sectors it names."),
    R("VIRTIO-5.2.6.2-DEV-WRITE-ZEROES-MAY-DEALLOCATE", "5.2.6.2", "MAY", "device",
      "WRITE_ZEROES with unmap can deallocate the sectors as a discard would."),
    R("VIRTIO-5.2.6.2-DEV-MAY-UNMAP-FIELD", "5.2.6.2", "SHOULD", "device",
      "write_zeroes_may_unmap is 0 exactly when WRITE_ZEROES can never deallocate."),
    R("VIRTIO-5.2.6.2-DEV-MAY-UNMAP-CHANGE", "5.2.6.2", "MAY", "device",
      "write_zeroes_may_unmap can change while the device runs, announced by a config "
      "change notification."),
    R("VIRTIO-5.2.6.2-DEV-NO-FLUSH-MAY-COMMIT", "5.2.6.2", "MAY", "device",
      "A device that does not offer FLUSH can also commit writes before completing them."),
    R("VIRTIO-5.2.6.2-DEV-OFFER-LIFETIME", "5.2.6.2", "SHOULD", "device",
      "A device on storage with lifetime metrics (eMMC, UFS) offers LIFETIME."),
    R("VIRTIO-5.2.6.2-DEV-LIFETIME-ONLY-IF-MEANINGFUL", "5.2.6.2", "MUST NOT", "device",
      "LIFETIME is not offered when the backing storage has no such metrics, or none that "
      "mean anything."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-CONV-INVALID", "5.2.6.2", "MUST", "device",
      "ZONE_OPEN, ZONE_CLOSE, ZONE_FINISH or ZONE_RESET on a conventional zone ends in "
      "ZONE_INVALID_CMD."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-OPEN-INVALID", "5.2.6.2", "MUST", "device",
      "A ZONE_OPEN whose zone cannot become explicitly open ends in ZONE_INVALID_CMD."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-OPEN-RESOURCES", "5.2.6.2", "MUST", "device",
      "A ZONE_OPEN short of zone resources leaves the zone as it was and ends in "
      "ZONE_OPEN_RESOURCE or ZONE_ACTIVE_RESOURCE."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-CLOSE-INVALID", "5.2.6.2", "MUST", "device",
      "A ZONE_CLOSE whose zone cannot become closed ends in ZONE_INVALID_CMD."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-FINISH-INVALID", "5.2.6.2", "MUST", "device",
      "A ZONE_FINISH whose zone cannot become full leaves it unchanged and ends in "
      "ZONE_INVALID_CMD."),
    R("VIRTIO-5.2.6.2-DEV-ZONE-RESET-INVALID", "5.2.6.2", "MUST", "device",
      "A ZONE_RESET whose zone cannot become empty leaves it unchanged and ends in "
      "ZONE_INVALID_CMD."),
    R("VIRTIO-5.2.6.2-DEV-IMPLICIT-OPEN-RESOURCES", "5.2.6.2", "MUST", "device",
      "An OUT or ZONE_APPEND whose implicit open fails for lack of zone resources ends in "
      "ZONE_OPEN_RESOURCE or ZONE_ACTIVE_RESOURCE."),
    R("VIRTIO-5.2.6.2-DEV-APPEND-SECTOR", "5.2.6.2", "MUST", "device",
      "A ZONE_APPEND completed OK reports the first sector written in append_sector."),
    R("VIRTIO-5.2.6.2-DEV-MAY-CLOSE-IMPLICIT", "5.2.6.2", "MAY", "device",
      "The device can close implicitly opened zones by itself to keep resources free."),
    R("VIRTIO-5.2.6.2-DEV-UNWRITTEN-DATA", "5.2.6.2", "MUST", "device",
      "Sectors from a zone's write pointer to its end count as unwritten."),
    R("VIRTIO-5.2.6.2-DEV-UNWRITTEN-READ", "5.2.6.2", "MUST", "device",
      "A read covering unwritten sectors either fills them with a device-chosen pattern or "
      "fails."),
    R("VIRTIO-5.2.6.2-DEV-ZONED-ERASE-ALIGNMENT", "5.2.6.2", "MUST", "device",
      "With ZONED and SECURE_ERASE, secure_erase_sector_alignment is a multiple of "
      "zone_sectors."),
    R("VIRTIO-5.2.6.2-DEV-ZONED-ERASE-SIZE", "5.2.6.2", "MUST", "device",
      "With ZONED and SECURE_ERASE, SECURE_ERASE sizes are multiples of zone_sectors."),
    R("VIRTIO-5.2.6.2-DEV-ZONED-ERASE-AS-RESET", "5.2.6.2", "MUST", "device",
      "With ZONED, SECURE_ERASE acts as ZONE_RESET over the range it names."),
)

NET = (
    R(
        "VIRTIO-5.1.4.1-DEV-MAX-PAIRS",
        "5.1.4.1",
        "MUST",
        "device",
        "With MQ offered, max_virtqueue_pairs is between 1 and 0x8000.",
        NT + "check_config",
        T_NT + "test_config_checks",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-MTU-RANGE",
        "5.1.4.1",
        "MUST",
        "device",
        "With MTU offered, mtu is between 68 and 65535.",
        NT + "check_config",
        T_NT + "test_config_checks",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-MTU-FIXED",
        "5.1.4.1",
        "MUST NOT",
        "device",
        "Once set, mtu is never changed.",
        NT + "check_mtu_stable",
        T_NT + "test_config_checks",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-RX-WITHIN-MTU",
        "5.1.4.1",
        "MUST NOT",
        "device",
        "With MTU negotiated, non-GSO received packets never exceed mtu plus the Ethernet header.",
        NT + "check_rx_packet",
        T_NT + "test_planted_oversized_rx_is_flagged",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-RSS-KEY",
        "5.1.4.1",
        "MUST",
        "device",
        "With RSS or HASH_REPORT offered, rss_max_key_size is at least 40.",
        NT + "check_config",
        T_NT + "test_config_checks",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-RSS-TABLE",
        "5.1.4.1",
        "MUST",
        "device",
        "With RSS offered, rss_max_indirection_table_length is at least 128.",
        NT + "check_config",
        T_NT + "test_config_checks",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-MTU-MIN-1280",
        "5.1.4.1",
        "SHOULD",
        "device",
        "With MTU offered, mtu is at least 1280.",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-FORWARD-WITHIN-MTU",
        "5.1.4.1",
        "MUST",
        "device",
        "With MTU negotiated, transmitted non-GSO packets up to mtu plus the Ethernet header "
        "are forwarded, unfragmented.",
        NT + "judge_forwarded",
        "tests/vhost_user/test_net_judge.py::test_config_and_forwarding_rules",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-MAY-STANDBY",
        "5.1.4.1",
        "MAY",
        "device",
        "With STANDBY negotiated, the device may stand by for a primary device of the same MAC.",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-SPEED-RANGE",
        "5.1.4.1",
        "MUST",
        "device",
        "With SPEED_DUPLEX negotiated, speed is in Mbit/s up to 0x7fffffff, or 0xffffffff.",
        NT + "check_speed_duplex",
        "tests/vhost_user/test_net_judge.py::test_config_and_forwarding_rules",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-DUPLEX-VALUES",
        "5.1.4.1",
        "MUST",
        "device",
        "With SPEED_DUPLEX negotiated, duplex is 0x00 (full), 0x01 (half) or 0xff (unknown).",
        NT + "check_speed_duplex",
        "tests/vhost_user/test_net_judge.py::test_config_and_forwarding_rules",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-SPEED-STABLE",
        "5.1.4.1",
        "SHOULD NOT",
        "device",
        "With SPEED_DUPLEX and STATUS negotiated, speed and duplex stay put while the link is up.",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-HASH-REPORT-NEEDS-CTRL-VQ",
        "5.1.4.1",
        "SHOULD NOT",
        "device",
        "HASH_REPORT is not offered without CTRL_VQ.",
    ),
    R(
        "VIRTIO-5.1.4.1-DEV-CTRL-RX-EXTRA-NEEDS-CTRL-VQ",
        "5.1.4.1",
        "SHOULD NOT",
        "device",
        "CTRL_RX_EXTRA is not offered without CTRL_VQ.",
    ),
    R(
        "VIRTIO-5.1.4.2-DRV-NO-CONFIG-WRITE",
        "5.1.4.2",
        "MUST NOT",
        "driver",
        "The driver writes no net config field.",
        NT + "check_driver_config_write",
    ),
    R(
        "VIRTIO-5.1.6.2.1-DRV-NUM-BUFFERS-ZERO",
        "5.1.6.2.1",
        "MUST",
        "driver",
        "Transmit headers carry num_buffers 0.",
        NT + "check_tx_header",
        T_NT + "test_tx_header",
    ),
    R(
        "VIRTIO-5.1.6.2.1-DRV-FLAGS-ZERO",
        "5.1.6.2.1",
        "MUST",
        "driver",
        "Without CSUM negotiated, header flags are 0.",
        NT + "check_tx_header",
        T_NT + "test_tx_header",
    ),
    R(
        "VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-FEATURE",
        "5.1.6.2.1",
        "MUST NOT",
        "driver",
        "A GSO type is used only when its HOST_* feature is negotiated (GSO_NONE otherwise).",
        NT + "check_tx_header",
        T_NT + "test_tx_header",
    ),
    R(
        "VIRTIO-5.1.6.2.1-DRV-GSO-NEEDS-CSUM",
        "5.1.6.2.1",
        "MUST",
        "driver",
        "A GSO request also sets NEEDS_CSUM (and gso_size).",
        NT + "check_tx_header",
        T_NT + "test_tx_header",
    ),
    # 5.1.6.3.1: judged on a real driver's receive buffers by conformance/linux_virtio
    R(
        "VIRTIO-5.1.6.3.1-DRV-RX-BUFFER-SIZE",
        "5.1.6.3.1",
        "SHOULD",
        "driver",
        "Without MRG_RXBUF, receive buffers hold a whole packet: at least 1526 bytes, or 65562"
        " with a GUEST_TSO4/TSO6/UFO/USO4/USO6 feature negotiated.",
        LV + "DriverJudge",
        T_LV + "test_net_rx_buffers_are_judged_by_size",
    ),
    R(
        "VIRTIO-5.1.6.3.1-DRV-MRG-BUFFER-HDR",
        "5.1.6.3.1",
        "MUST",
        "driver",
        "With MRG_RXBUF, every receive buffer is at least as large as the virtio_net_hdr.",
        LV + "DriverJudge",
        T_LV + "test_net_rx_buffers_are_judged_by_size",
    ),
    R(
        "VIRTIO-5.1.6.2.2-DEV-IGNORE-UNKNOWN-FLAGS",
        "5.1.6.2.2",
        "MUST",
        "device",
        "Flag bits of a transmit header the device does not know are ignored.",
        NT + "not_observable",
    ),
    R(
        "VIRTIO-5.1.6.2.2-DEV-NO-CSUM-FIELDS",
        "5.1.6.2.2",
        "MUST NOT",
        "device",
        "Without NEEDS_CSUM in a transmit header, csum_start and csum_offset are not used.",
        NT + "not_observable",
    ),
    R(
        "VIRTIO-5.1.6.2.2-DEV-MAY-USE-HDR-LEN",
        "5.1.6.2.2",
        "MAY",
        "device",
        (
            "With a HOST_* segmentation feature and GUEST_HDRLEN negotiated and a GSO packet,"
            " hdr_len may be taken as the transport header size."
        ),
    ),
    R(
        "VIRTIO-5.1.6.2.2-DEV-HDR-LEN-NOT-RELIED",
        "5.1.6.2.2",
        "MUST NOT",
        "device",
        (
            "With a HOST_* segmentation feature but no GUEST_HDRLEN (or GSO_NONE), hdr_len is"
            " at most a hint and is never relied on."
        ),
        NT + "not_observable",
    ),
    R(
        "VIRTIO-5.1.6.2.2-DEV-NO-RELY-CSUM",
        "5.1.6.2.2",
        "MUST NOT",
        "device",
        "Without NEEDS_CSUM, a transmitted packet's checksum is not assumed correct.",
        NT + "not_observable",
    ),
    R(
        "VIRTIO-5.1.6.3.2-DEV-NUM-BUFFERS-COUNT",
        "5.1.6.3.2",
        "MUST",
        "device",
        "num_buffers says how many buffers (descriptor chains) hold the received packet.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.3.2-DEV-SINGLE-DESC",
        "5.1.6.3.2",
        "MUST",
        "device",
        "Without MRG_RXBUF a received packet goes into one buffer only.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-ONE",
        "5.1.6.4.1",
        "MUST",
        "device",
        "Without MRG_RXBUF, num_buffers is 1.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NUM-BUFFERS-MRG",
        "5.1.6.4.1",
        "MUST",
        "device",
        "With MRG_RXBUF, num_buffers counts the buffers the packet, header included, occupies.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-MRG-FILL-FULL",
        "5.1.6.4.1",
        "MUST",
        "device",
        "A packet spread over several buffers fills every buffer but the last to its full length.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-MRG-TOGETHER",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "The buffers of one packet are returned together: the driver sees at least "
            "num_buffers of them used."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-FLAGS-ZERO",
        "5.1.6.4.1",
        "MUST",
        "device",
        "Without GUEST_CSUM, received headers have flags 0 (so neither NEEDS_CSUM nor DATA_VALID).",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-FULL-CSUM",
        "5.1.6.4.1",
        "SHOULD",
        "device",
        "Without GUEST_CSUM, a received packet arrives with its checksums complete.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV4",
        "5.1.6.4.1",
        "MUST NOT",
        "device",
        "gso_type TCPV4 only when GUEST_TSO4 was negotiated.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP",
        "5.1.6.4.1",
        "MUST NOT",
        "device",
        (
            "gso_type UDP only when GUEST_UFO was negotiated (the spec names it GUEST_UDP, a "
            "feature §5.1.3 does not define)."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NO-GSO-TCPV6",
        "5.1.6.4.1",
        "MUST NOT",
        "device",
        "gso_type TCPV6 only when GUEST_TSO6 was negotiated.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NO-GSO-UDP-L4",
        "5.1.6.4.1",
        "MUST NOT",
        "device",
        "gso_type UDP_L4 only when GUEST_USO4 or GUEST_USO6 was negotiated.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-ECN-UNNEGOTIATED",
        "5.1.6.4.1",
        "SHOULD NOT",
        "device",
        (
            "Without GUEST_ECN, no segmentation-offload TCP packet with ECN set is passed to "
            "the driver."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-GSO-ECN-BIT",
        "5.1.6.4.1",
        "MUST",
        "device",
        "With GUEST_ECN, a segmentation-offload TCP packet with ECN set carries the GSO_ECN bit.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-MAY-NEEDS-CSUM",
        "5.1.6.4.1",
        "MAY",
        "device",
        "With GUEST_CSUM, NEEDS_CSUM may be set on a received packet.",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-VALIDATE",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "A received packet flagged NEEDS_CSUM had its checksums up to csum_start + "
            "csum_offset validated by the device."
        ),
        NT + "not_observable",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-PSEUDO",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "A received packet flagged NEEDS_CSUM holds the TCP/UDP pseudo-header sum in its "
            "checksum field."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NEEDS-CSUM-RANGE",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "With NEEDS_CSUM, csum_start and csum_offset lie in the packet and checksumming "
            "from csum_start to the end, stored at csum_offset, completes the packet."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-GSO-NONE",
        "5.1.6.4.1",
        "MUST",
        "device",
        "Without any GUEST_TSO4/TSO6/UFO/USO4/USO6 negotiated, gso_type is NONE.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-GSO-NEEDS-CSUM",
        "5.1.6.4.1",
        "MUST",
        "device",
        "A received GSO packet also has NEEDS_CSUM set and gso_size giving the MSS.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-RSC-INFO",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "With RSC_EXT, a received GSO packet has RSC_INFO set and segment and duplicate-"
            "ACK counts in csum_start/csum_offset."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-NO-RSC-INFO",
        "5.1.6.4.1",
        "MUST NOT",
        "device",
        "Without RSC_EXT, RSC_INFO is never set.",
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-HDR-LEN",
        "5.1.6.4.1",
        "SHOULD",
        "device",
        (
            "With a GUEST_* segmentation feature, hdr_len is at least the length of the "
            "headers up to and including the transport header."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-MAY-DATA-VALID",
        "5.1.6.4.1",
        "MAY",
        "device",
        "With GUEST_CSUM, DATA_VALID may be set on a received packet.",
    ),
    R(
        "VIRTIO-5.1.6.4.1-DEV-DATA-VALID-VALIDATED",
        "5.1.6.4.1",
        "MUST",
        "device",
        (
            "DATA_VALID is set only on a packet whose checksum the device validated (one "
            "level of encapsulation)."
        ),
        NT + "judge_rx_packet",
        "tests/vhost_user/test_net_judge.py::test_planted_rx_bugs_are_caught",
    ),
)

CONSOLE = (
    R(
        "VIRTIO-5.3.5.1-DEV-EMERG-WR",
        "5.3.5.1",
        "MUST",
        "device",
        "Writes to emerg_wr are accepted even before the device is configured.",
        CO + "check_emergency_write",
        T_SM + "test_console_emergency_write",
    ),
    R(
        "VIRTIO-5.3.5.1-DEV-EMERG-OUTPUT",
        "5.3.5.1",
        "SHOULD",
        "device",
        "The low byte written to emerg_wr goes to a log or output.",
        CO + "emergency_write",
    ),
    R(
        "VIRTIO-5.3.6.1-DRV-RX-WRITABLE",
        "5.3.6.1",
        "MUST NOT",
        "driver",
        "No device-readable buffer goes into a receive queue.",
        CO + "check_driver_buffer",
        T_SM + "test_console_buffer_directions",
    ),
    R(
        "VIRTIO-5.3.6.1-DRV-TX-READABLE",
        "5.3.6.1",
        "MUST NOT",
        "driver",
        "No device-writable buffer goes into a transmit queue.",
        CO + "check_driver_buffer",
        T_SM + "test_console_buffer_directions",
    ),
    R(
        "VIRTIO-5.3.6.2.1-DEV-ADD-VALID",
        "5.3.6.2.1",
        "MUST NOT",
        "device",
        "DEVICE_ADD never names an existing port or one at or above max_nr_ports.",
        CO + "device_message",
        T_SM + "test_console_planted_double_add",
    ),
    R(
        "VIRTIO-5.3.6.2.1-DEV-REMOVE-KNOWN",
        "5.3.6.2.1",
        "MUST NOT",
        "device",
        "DEVICE_REMOVE names only ports created by an earlier DEVICE_ADD.",
        CO + "device_message",
        T_SM + "test_console_planted_double_add",
    ),
    R(
        "VIRTIO-5.3.6.2.2-DRV-DEVICE-READY",
        "5.3.6.2.2",
        "MUST",
        "driver",
        "With MULTIPORT negotiated the driver sends DEVICE_READY.",
        CO + "check_driver_control",
        T_SM + "test_console_driver_control",
    ),
    R(
        "VIRTIO-5.3.6.2.2-DRV-CONSOLE-PORT-OPEN",
        "5.3.6.2.2",
        "MUST",
        "driver",
        "A CONSOLE_PORT message is answered with PORT_OPEN, value 1.",
        CO + "check_driver_control",
        T_SM + "test_console_driver_control",
    ),
)

ENTROPY = (
    R(
        "VIRTIO-5.4.6.1-DRV-WRITABLE-ONLY",
        "5.4.6.1",
        "MUST NOT",
        "driver",
        "The driver puts no device-readable buffers in the queue.",
        EN + "check_driver_buffer",
        T_SM + "test_entropy_rules",
    ),
    R(
        "VIRTIO-5.4.6.1-DRV-USE-LEN",
        "5.4.6.1",
        "MUST",
        "driver",
        "The driver takes the used length as the number of random bytes received.",
        EN + "check_driver_consumed",
        T_SM + "test_entropy_rules",
    ),
    R(
        "VIRTIO-5.4.6.2-DEV-AT-LEAST-ONE-BYTE",
        "5.4.6.2",
        "MUST",
        "device",
        "The device returns at least one random byte (possibly fewer than the buffer holds).",
        EN + "check_used",
        T_SM + "test_entropy_planted_empty_answer",
    ),
)

GPU = (
    R(
        "VIRTIO-5.7.5-DEV-SHMID",
        "5.7.5",
        "MUST",
        "device",
        "Shared memory regions use only the GPU's defined shmid values.",
        GP + "check_shm",
        T_SM + "test_gpu_shm_rules",
    ),
    R(
        "VIRTIO-5.7.5-DEV-MAP-BLOB",
        "5.7.5",
        "MUST",
        "device",
        "With a host-visible region, RESOURCE_MAP_BLOB and RESOURCE_UNMAP_BLOB are supported.",
        GP + "check_shm",
        T_SM + "test_gpu_shm_rules",
    ),
    R(
        "VIRTIO-5.7.6.5-DEV-FENCE",
        "5.7.6.5",
        "MUST",
        "device",
        "A fenced command is returned only after it is processed, with the fence flag and id "
        "echoed in the response.",
        GP + "check_fence",
        T_SM + "test_gpu_planted_fence_bug",
    ),
    R(
        "VIRTIO-5.7.6.5-DEV-ASYNC",
        "5.7.6.5",
        "MAY",
        "device",
        "Unfenced control commands may be returned before processing finishes.",
    ),
)

INPUT = (
    R(
        "VIRTIO-5.8.5.1-DRV-SET-BOTH",
        "5.8.5.1",
        "MUST",
        "driver",
        "The driver sets both select and subsel (either order) when querying config.",
        IN + "check_driver_config_writes",
        T_SM + "test_input_driver_rules",
    ),
    R(
        "VIRTIO-5.8.5.1-DRV-WRITE-ONLY-SELECT",
        "5.8.5.1",
        "MUST NOT",
        "driver",
        "The driver writes no config field other than select and subsel.",
        IN + "check_driver_config_writes",
        T_SM + "test_input_driver_rules",
    ),
    R(
        "VIRTIO-5.8.5.1-DRV-CHECK-SIZE",
        "5.8.5.1",
        "SHOULD",
        "driver",
        "The driver checks size before using the answer.",
    ),
    R(
        "VIRTIO-5.8.5.2-DEV-SIZE-ZERO-UNSUPPORTED",
        "5.8.5.2",
        "MUST",
        "device",
        "size is zero for select/subsel combinations the device does not support.",
        IN + "check_config_answer",
        T_SM + "test_input_planted_nonzero_size",
    ),
    R(
        "VIRTIO-5.8.6.1-DRV-EVENTQ-WRITABLE",
        "5.8.6.1",
        "MUST",
        "driver",
        "eventq buffers are device-writable.",
        IN + "check_driver_buffer",
        T_SM + "test_input_driver_rules",
    ),
    R(
        "VIRTIO-5.8.6.1-DRV-EVENTQ-SIZE",
        "5.8.6.1",
        "MUST",
        "driver",
        "eventq buffers hold at least one virtio_input_event.",
        IN + "check_driver_buffer",
        T_SM + "test_input_driver_rules",
    ),
    R(
        "VIRTIO-5.8.6.1-DRV-STATUSQ-SIZE",
        "5.8.6.1",
        "MUST",
        "driver",
        "statusq buffers hold at least one virtio_input_event.",
        IN + "check_driver_buffer",
        T_SM + "test_input_driver_rules",
    ),
    R(
        "VIRTIO-5.8.6.1-DRV-KEEP-POPULATED",
        "5.8.6.1",
        "SHOULD",
        "driver",
        "The driver keeps the eventq stocked with buffers.",
    ),
    R(
        "VIRTIO-5.8.6.2-DEV-DROP-WHOLE-SEQUENCE",
        "5.8.6.2",
        "SHOULD NOT",
        "device",
        "When short of buffers the device drops whole EV_SYN-terminated updates, not parts.",
        IN + "check_event_sequences",
        T_SM + "test_input_partial_drop_is_flagged",
    ),
)

# One record per "requires" line of §5.1.3.1 (net) and §5.7.3 (gpu): §2.2.2 forbids a
# device to offer a feature without those it requires.  Blk's one dependency is a MUST of
# §5.2.5.2 (VIRTIO-5.2.5.2-DEV-WCE-NEEDS-FLUSH above).
DEPENDENCIES = tuple(
    R(
        F.dependency_requirement(dev, feat),
        F.DEPENDENCY_SECTIONS[dev],
        "MUST NOT",
        "device",
        F.dependency_text(dev, feat) + " (§2.2.2: no feature without those it requires)",
        FE + "check_device_offer",
        "tests/virtio/test_features.py::test_each_dependency_has_its_own_requirement",
    )
    for dev in (F.NET, F.GPU)
    for feat in F.DEPENDENCIES[dev]
)

register(*BLOCK, *NET, *CONSOLE, *ENTROPY, *GPU, *INPUT, *DEPENDENCIES)
