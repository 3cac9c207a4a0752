"""Registry records for the virtqueue Requirements statements of VIRTIO 1.3 2.6-2.8.

One record per normative statement of 2.6.1 (virtqueue reset), 2.7 (split rings) and
2.8 (packed rings), paraphrased; ``checks`` name the tests or oracle checks covering it.
Rules the oracle enforces without a statement of their own live in
:data:`spec.virtio.oracle.IMPLIED_RULES`, not here.
"""

from __future__ import annotations

from spec.virtio.registry import Requirement, register

T = "tests/virtio/"
ORACLE = "spec.virtio.oracle.judge_split"
PORACLE = "spec.virtio.oracle.judge_packed"
BUGS = T + "test_oracle.py::test_planted_split_bug_caught"
PBUGS = T + "test_oracle.py::test_planted_packed_bug_caught"
MACHINE = T + "test_ring_machines.py::TestSplitRing"
PMACHINE = T + "test_ring_machines.py::TestPackedRing"
WALK = T + "test_split.py::test_walk_rejects_bad_chain"
PWALK = T + "test_packed.py::test_packed_walk_faults"


# the vhost-user checks that judge a back-end (conformance/vhost_user), and their tests
VU_NET = "conformance.vhost_user.net_checks:"
T_AM = "tests/vhost_user/test_applicable_musts.py::"

def _r(id_: str, section: str, level: str, side: str, text: str, *checks: str) -> Requirement:
    return Requirement(id_, section, level, side, text, tuple(checks))  # type: ignore[arg-type]


RING_REQUIREMENTS: tuple[Requirement, ...] = (
    # 2.6.1 Virtqueue reset
    _r("VIRTIO-2.6.1-DEV-RESET-QUIET", "2.6.1.1.1", "MUST NOT", "device",
       "Once the driver has reset a queue, the device neither runs requests from it nor "
       "sends notifications for it.", ORACLE, BUGS, T + "test_oracle.py::test_reset_quiet"),
    _r("VIRTIO-2.6.1-DEV-RESET-STATE", "2.6.1.1.1", "MUST", "device",
       "A queue reset returns all of that queue's state, including the available and used "
       "positions, to the defaults.", T + "test_split.py::test_ring_reset_forgets_state",
       MACHINE),
    _r("VIRTIO-2.6.1-DRV-RESET-VERIFY", "2.6.1.1.2", "MUST", "driver",
       "Having asked for a queue reset, the driver confirms it took effect before relying "
       "on it.", T + "test_split.py::test_ring_reset_forgets_state"),
    _r("VIRTIO-2.6.1-DRV-RESET-RELEASE", "2.6.1.1.2", "MAY", "driver",
       "After a confirmed queue reset the driver can free that queue's resources."),
    _r("VIRTIO-2.6.1-DEV-REENABLE-CONFIG", "2.6.1.2.1", "MUST", "device",
       "On re-enabling a reset queue the device uses the queue configuration as the driver "
       "has (re)written it, e.g. a new size.", T + "test_split.py::test_ring_reset_forgets_state"),
    _r("VIRTIO-2.6.1-DRV-REENABLE-CONFIG", "2.6.1.2.2", "MUST", "driver",
       "Re-enabling a queue repeats the per-queue setup of device initialization, possibly "
       "with other parameters.", T + "test_split.py::test_ring_reset_forgets_state"),
    # 2.7.1 layout
    _r("VIRTIO-2.7.1-DRV-ALIGN", "2.7.1", "MUST", "driver",
       "Each split-ring part starts at an address that is a multiple of its alignment "
       "(descriptor table 16, available ring 2, used ring 4).",
       T + "test_split.py::test_layout_faults", "spec.virtio.proofs:goal_contiguous_layout"),
    # 2.7.4 message framing
    _r("VIRTIO-2.7.4-DEV-NO-LAYOUT-ASSUMPTION", "2.7.4.1", "MUST NOT", "device",
       "The device works with any split of a request into descriptors, not a fixed one.",
       MACHINE, T + "test_split.py::test_mixed_direct_then_indirect"),
    _r("VIRTIO-2.7.4-DEV-CHAIN-LIMIT", "2.7.4.1", "MAY", "device",
       "The device can cap, reasonably, how many descriptors a chain may have."),
    _r("VIRTIO-2.7.4-DRV-WRITABLE-AFTER-READABLE", "2.7.4.2", "MUST", "driver",
       "In a chain, every device-writable descriptor comes after all device-readable ones.",
       WALK, MACHINE),
    _r("VIRTIO-2.7.4-DRV-FEW-DESCRIPTORS", "2.7.4.2", "SHOULD NOT", "driver",
       "The driver avoids describing a buffer with an excessive number of descriptors."),
    # 2.7.5 descriptor table
    _r("VIRTIO-2.7.5-DEV-NO-WRITE-READABLE", "2.7.5.1", "MUST NOT", "device",
       "The device never writes into a buffer the driver marked device-readable.",
       ORACLE, BUGS, MACHINE),
    _r("VIRTIO-2.7.5-DEV-NO-READ-WRITABLE", "2.7.5.1", "SHOULD NOT", "device",
       "The device avoids reading device-writable buffers (debugging aside).", ORACLE),
    _r("VIRTIO-2.7.5-DEV-NO-WRITE-DESC", "2.7.5.1", "MUST NOT", "device",
       "The device never writes to the descriptor table.", ORACLE, BUGS),
    _r("VIRTIO-2.7.5-DRV-CHAIN-LEN-4G", "2.7.5.2", "MUST NOT", "driver",
       "A chain describes less than 4 GiB in total, which rules out descriptor loops.",
       WALK, T + "test_split.py::test_walk_never_hangs_on_random_bytes"),
    _r("VIRTIO-2.7.5-DRV-IN-ORDER-NEXT", "2.7.5.2", "MUST", "driver",
       "With IN_ORDER, a chained descriptor at table slot x points to x + 1, or to 0 from "
       "the last slot.", T + "test_split.py::test_driver_in_order_next"),
    # 2.7.5.3 indirect descriptors
    _r("VIRTIO-2.7.5.3-DRV-INDIRECT-NEGOTIATED", "2.7.5.3.1", "MUST NOT", "driver",
       "The INDIRECT flag is used only when INDIRECT_DESC was negotiated.", WALK),
    _r("VIRTIO-2.7.5.3-DRV-NO-NESTED-INDIRECT", "2.7.5.3.1", "MUST NOT", "driver",
       "A descriptor inside an indirect table never has INDIRECT set: one table per "
       "descriptor.", WALK, BUGS),
    _r("VIRTIO-2.7.5.3-DRV-CHAIN-LE-QSIZE", "2.7.5.3.1", "MUST NOT", "driver",
       "A chain never has more descriptors than the queue size.", WALK),
    _r("VIRTIO-2.7.5.3-DRV-NO-INDIRECT-NEXT", "2.7.5.3.1", "MUST NOT", "driver",
       "INDIRECT and NEXT are never both set on one descriptor.", WALK),
    _r("VIRTIO-2.7.5.3-DRV-INDIRECT-IN-ORDER", "2.7.5.3.1", "MUST", "driver",
       "With IN_ORDER, an indirect table's descriptors are sequential: entry i chains to "
       "i + 1.", T + "test_split.py::test_driver_in_order_next"),
    _r("VIRTIO-2.7.5.3-DEV-IGNORE-WRITE-ON-INDIRECT", "2.7.5.3.2", "MUST", "device",
       "The device disregards the WRITE flag of the descriptor that points to an indirect "
       "table.", T + "test_split.py::test_indirect_write_flag_ignored"),
    _r("VIRTIO-2.7.5.3-DEV-MIXED-CHAIN", "2.7.5.3.2", "MUST", "device",
       "The device accepts some ordinary chained descriptors ending in one indirect "
       "descriptor.", T + "test_split.py::test_mixed_direct_then_indirect",
       VU_NET + "check_net_chains",
       T_AM + "test_planted_net_mixed_chain_head_only_is_caught"),
    # 2.7.6 available ring
    _r("VIRTIO-2.7.6-DRV-NO-DECREMENT", "2.7.6.1", "MUST NOT", "driver",
       "The driver never moves avail.idx backwards; exposed buffers cannot be taken back.",
       WALK, T + "test_oracle.py::test_avail_overrun_consumes_nothing"),
    # 2.7.7 used buffer notification suppression
    _r("VIRTIO-2.7.7-DRV-FLAGS-VALUES", "2.7.7.1", "MUST", "driver",
       "Without EVENT_IDX, avail.flags is 0 or 1.", T + "test_split.py::test_driver_flags_values"),
    _r("VIRTIO-2.7.7-DRV-MAY-NO-INTERRUPT", "2.7.7.1", "MAY", "driver",
       "Without EVENT_IDX, the driver can set avail.flags to 1 to say it needs no used "
       "buffer notifications."),
    _r("VIRTIO-2.7.7-DRV-FLAGS-ZERO-EVENT-IDX", "2.7.7.1", "MUST", "driver",
       "With EVENT_IDX, avail.flags is 0.", T + "test_split.py::test_driver_flags_values"),
    _r("VIRTIO-2.7.7-DRV-MAY-USED-EVENT", "2.7.7.1", "MAY", "driver",
       "With EVENT_IDX, the driver can use used_event to say no notification is needed "
       "until the device fills that used ring position."),
    _r("VIRTIO-2.7.7-DRV-SPURIOUS", "2.7.7.1", "MUST", "driver",
       "The driver copes with used buffer notifications that bring nothing new.",
       T + "test_split.py::test_driver_tolerates_spurious_and_rejects_bogus"),
    _r("VIRTIO-2.7.7-DEV-IGNORE-USED-EVENT", "2.7.7.2", "MUST", "device",
       "Without EVENT_IDX, the device pays no attention to used_event.", ORACLE, MACHINE,
       T_AM + "test_planted_net_notification_bugs_are_caught"),
    _r("VIRTIO-2.7.7-DEV-NOTIFY-FLAGS0", "2.7.7.2", "MUST", "device",
       "Without EVENT_IDX, after adding used entries while avail.flags is 0, the device "
       "notifies the driver.", ORACLE, BUGS, MACHINE),
    _r("VIRTIO-2.7.7-DEV-NO-NOTIFY-FLAGS1", "2.7.7.2", "SHOULD NOT", "device",
       "Without EVENT_IDX, while avail.flags is 1 the device refrains from notifying.",
       ORACLE),
    _r("VIRTIO-2.7.7-DEV-IGNORE-FLAGS-EVENT-IDX", "2.7.7.2", "MUST", "device",
       "With EVENT_IDX, the device ignores bit 0 of avail.flags.", ORACLE, MACHINE,
       T_AM + "test_planted_no_interrupt_honoured_under_event_idx_is_caught",
       T_AM + "test_planted_net_notification_bugs_are_caught"),
    _r("VIRTIO-2.7.7-DEV-NOTIFY-USED-EVENT", "2.7.7.2", "MUST", "device",
       "With EVENT_IDX, the device notifies when it fills the used ring position named by "
       "used_event.", ORACLE, BUGS, MACHINE, "spec.virtio.proofs:goal_need_event_window"),
    _r("VIRTIO-2.7.7-DEV-NO-NOTIFY-OTHERWISE", "2.7.7.2", "SHOULD NOT", "device",
       "With EVENT_IDX, the device refrains from notifying for other positions.", ORACLE),
    # 2.7.8 used ring
    _r("VIRTIO-2.7.8-DEV-USED-LEN", "2.7.8.2", "MUST", "device",
       "The device writes a used entry's len before publishing it through used.idx.",
       ORACLE, BUGS),
    _r("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", "2.7.8.2", "MUST", "device",
       "Before publishing a used entry the device has written at least len bytes, from the "
       "start of the first device-writable buffer (so len never exceeds the writable "
       "space).", ORACLE, BUGS),
    _r("VIRTIO-2.7.8-DEV-MAY-WRITE-MORE", "2.7.8.2", "MAY", "device",
       "The device can write more bytes than it reports in len."),
    _r("VIRTIO-2.7.8-DRV-IGNORE-BEYOND-LEN", "2.7.8.3", "MUST NOT", "driver",
       "The driver assumes nothing about writable bytes past len (and ought to ignore "
       "them).", T + "test_split.py::test_driver_reports_len"),
    # 2.7.10 available buffer notification suppression
    _r("VIRTIO-2.7.10-DRV-INIT-USED-FLAGS", "2.7.10.1", "MUST", "driver",
       "The driver zeroes used.flags when it sets up the used ring.",
       T + "test_split.py::test_driver_init_zeroes_rings"),
    _r("VIRTIO-2.7.10-DRV-IGNORE-AVAIL-EVENT", "2.7.10.1", "MUST", "driver",
       "Without EVENT_IDX, the driver pays no attention to avail_event.",
       T + "test_split.py::test_driver_kick_decision"),
    _r("VIRTIO-2.7.10-DRV-KICK-FLAGS0", "2.7.10.1", "MUST", "driver",
       "Without EVENT_IDX, after exposing heads while used.flags is 0, the driver notifies.",
       T + "test_split.py::test_driver_kick_decision"),
    _r("VIRTIO-2.7.10-DRV-NO-KICK-FLAGS1", "2.7.10.1", "SHOULD NOT", "driver",
       "Without EVENT_IDX, while used.flags is 1 the driver refrains from notifying.",
       T + "test_split.py::test_driver_kick_decision"),
    _r("VIRTIO-2.7.10-DRV-IGNORE-FLAGS-EVENT-IDX", "2.7.10.1", "MUST", "driver",
       "With EVENT_IDX, the driver ignores bit 0 of used.flags.",
       T + "test_split.py::test_driver_kick_decision"),
    _r("VIRTIO-2.7.10-DRV-KICK-AVAIL-EVENT", "2.7.10.1", "MUST", "driver",
       "With EVENT_IDX, the driver notifies when it fills the available ring position named "
       "by avail_event.", T + "test_split.py::test_driver_kick_decision",
       "spec.virtio.proofs:goal_need_event_window"),
    _r("VIRTIO-2.7.10-DRV-NO-KICK-OTHERWISE", "2.7.10.1", "SHOULD NOT", "driver",
       "With EVENT_IDX, the driver refrains from notifying for other positions.",
       T + "test_split.py::test_driver_kick_decision"),
    _r("VIRTIO-2.7.10-DEV-FLAGS-VALUES", "2.7.10.2", "MUST", "device",
       "Without EVENT_IDX, used.flags is 0 or 1.", ORACLE),
    _r("VIRTIO-2.7.10-DEV-MAY-NO-NOTIFY", "2.7.10.2", "MAY", "device",
       "Without EVENT_IDX, the device can set used.flags to 1 to say it needs no available "
       "buffer notifications."),
    _r("VIRTIO-2.7.10-DEV-FLAGS-ZERO-EVENT-IDX", "2.7.10.2", "MUST", "device",
       "With EVENT_IDX, used.flags is 0.", ORACLE),
    _r("VIRTIO-2.7.10-DEV-MAY-AVAIL-EVENT", "2.7.10.2", "MAY", "device",
       "With EVENT_IDX, the device can use avail_event to say no notification is needed "
       "until the driver fills that available ring position."),
    _r("VIRTIO-2.7.10-DEV-SPURIOUS", "2.7.10.2", "MUST", "device",
       "The device copes with available buffer notifications that bring nothing new.",
       T + "test_oracle.py::test_spurious_kick_harmless", MACHINE),
    # 2.7.13 supplying buffers
    _r("VIRTIO-2.7.13-DRV-BARRIER-IDX", "2.7.13.3.1", "MUST", "driver",
       "The driver orders its descriptor and ring writes before the avail.idx update.",
       T + "test_split.py::test_driver_publishes_idx_after_ring_entries"),
    _r("VIRTIO-2.7.13-DRV-BARRIER-NOTIFY", "2.7.13.4.1", "MUST", "driver",
       "The driver orders the avail.idx update before reading used.flags or avail_event, "
       "so no notification is missed.", T + "test_split.py::test_driver_reads_event_after_publish"),
    # 2.8 packed virtqueues
    _r("VIRTIO-2.8.11-DRV-ALIGN", "2.8.11", "MUST", "driver",
       "Each packed-ring part starts at a multiple of its alignment (ring 16, event "
       "structures 4).", T + "test_packed.py::test_packed_layout_faults"),
    _r("VIRTIO-2.8.12-DEV-PROCESS-IN-RING-ORDER", "2.8.12", "MUST", "device",
       "The device starts on available descriptors in the order they sit in the ring.",
       PORACLE, PMACHINE, PBUGS),
    _r("VIRTIO-2.8.12-DEV-WRITE-IN-COMPLETION-ORDER", "2.8.12", "MUST", "device",
       "The device starts writing used descriptors into the ring in the order the buffers "
       "complete.", PORACLE, PMACHINE),
    _r("VIRTIO-2.8.12-DEV-MAY-REORDER-WRITES", "2.8.12", "MAY", "device",
       "Once begun, the device's descriptor writes can land in any order."),
    _r("VIRTIO-2.8.15-DEV-NO-WRITE-READABLE", "2.8.15", "MUST NOT", "device",
       "The device never writes into a device-readable buffer.", PORACLE, PBUGS),
    _r("VIRTIO-2.8.15-DEV-NO-READ-WRITABLE", "2.8.15", "SHOULD NOT", "device",
       "The device avoids reading device-writable buffers.", PORACLE),
    _r("VIRTIO-2.8.15-DEV-WAIT-AVAIL", "2.8.15", "MUST NOT", "device",
       "The device takes a descriptor only after seeing its AVAIL bit change.",
       PORACLE, PBUGS, "spec.virtio.proofs:goal_packed_flags", VU_NET + "check_net_packed",
       T_AM + "test_planted_packed_list_taken_before_available_is_caught"),
    _r("VIRTIO-2.8.15-DEV-NO-CHANGE-AFTER-USED", "2.8.15", "MUST NOT", "device",
       "Once it has flipped a descriptor's USED bit the device changes that descriptor no "
       "more.", PORACLE, PBUGS),
    _r("VIRTIO-2.8.16-DRV-WAIT-USED", "2.8.16", "MUST NOT", "driver",
       "The driver rewrites a descriptor only after seeing its USED bit change.",
       T + "test_packed.py::test_packed_roundtrip_wraps"),
    _r("VIRTIO-2.8.16-DRV-NO-CHANGE-AFTER-AVAIL", "2.8.16", "MUST NOT", "driver",
       "Once it has flipped a descriptor's AVAIL bit the driver changes it no more.",
       T + "test_packed.py::test_packed_driver_makes_head_available_last"),
    _r("VIRTIO-2.8.16-DRV-NOTIFY-NEXT", "2.8.16", "MUST", "driver",
       "A driver notification carries the offset and wrap counter of the next descriptor "
       "not yet made available.", T + "test_packed.py::test_packed_next_avail_position"),
    _r("VIRTIO-2.8.16-DRV-MAY-REPEAT-NOTIFY", "2.8.16", "MAY", "driver",
       "The driver can notify again without having made anything new available."),
    _r("VIRTIO-2.8.17-DRV-LIST-LE-DEVICE-LIMIT", "2.8.17", "MUST NOT", "driver",
       "A descriptor list is no longer than the device allows.", PWALK),
    _r("VIRTIO-2.8.17-DRV-LIST-LE-QSIZE", "2.8.17", "MUST NOT", "driver",
       "A descriptor list is no longer than the queue size (so it cannot loop).", PWALK),
    _r("VIRTIO-2.8.17-DRV-WRITABLE-AFTER-READABLE", "2.8.17", "MUST", "driver",
       "In a list, device-writable elements come after all device-readable ones.", PWALK),
    _r("VIRTIO-2.8.17-DRV-NO-DEPEND-ON-MORE", "2.8.17", "MUST NOT", "driver",
       "The driver does not rely on the device using more descriptors to write out a list.",
       T + "test_packed.py::test_packed_driver_makes_head_available_last"),
    _r("VIRTIO-2.8.17-DRV-SPACE-FOR-LIST", "2.8.17", "MUST", "driver",
       "The driver checks the whole list fits in the ring before exposing its first "
       "descriptor.", T + "test_packed.py::test_packed_driver_makes_head_available_last"),
    _r("VIRTIO-2.8.17-DRV-HEAD-LAST", "2.8.17", "MUST NOT", "driver",
       "The first descriptor of a list becomes available only after all the others.",
       T + "test_packed.py::test_packed_driver_makes_head_available_last", PWALK),
    _r("VIRTIO-2.8.18-DEV-LIST-ORDER", "2.8.18", "MUST", "device",
       "The device uses the descriptors of a NEXT-linked list in the order they were made "
       "available.", PORACLE, T + "test_packed.py::test_packed_roundtrip_wraps",
       VU_NET + "check_net_packed",
       T_AM + "test_planted_packed_list_taken_before_available_is_caught"),
    _r("VIRTIO-2.8.18-DEV-MAY-LIMIT", "2.8.18", "MAY", "device",
       "The device can cap how many buffers a list may have."),
    _r("VIRTIO-2.8.19-DRV-INDIRECT-NEGOTIATED", "2.8.19", "MUST NOT", "driver",
       "INDIRECT is used only when INDIRECT_DESC was negotiated.", PWALK),
    _r("VIRTIO-2.8.19-DRV-INDIRECT-ONLY-WRITE", "2.8.19", "MUST NOT", "driver",
       "Descriptors inside an indirect table carry no flag other than WRITE.",
       T + "test_packed.py::test_packed_indirect_ignores_other_flags"),
    _r("VIRTIO-2.8.19-DRV-INDIRECT-LE-LIMIT", "2.8.19", "MUST NOT", "driver",
       "An indirect chain is no longer than the device allows.", PWALK),
    _r("VIRTIO-2.8.19-DRV-NO-INDIRECT-IN-LIST", "2.8.19", "MUST NOT", "driver",
       "An INDIRECT descriptor is never part of a NEXT-linked list.", PWALK),
    _r("VIRTIO-2.8.21-DRV-BARRIER-FLAGS", "2.8.21.1.1", "MUST", "driver",
       "The driver orders a descriptor's other fields before its flags update.",
       T + "test_packed.py::test_packed_driver_makes_head_available_last"),
    _r("VIRTIO-2.8.21-DRV-BARRIER-EVENT", "2.8.21.3.1", "MUST", "driver",
       "The driver orders its flags updates before reading the device event suppression "
       "structure.", T + "test_packed.py::test_packed_kick_decision"),
)

register(*RING_REQUIREMENTS)
