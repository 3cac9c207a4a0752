"""Registry records for virtio-snd: every normative statement of VIRTIO 1.3 §5.14.

One record per MUST / MUST NOT / SHOULD item of §5.14's Device and Driver Requirements
sections, plus the two "MUST NOT be selected" placeholders of §5.14.6.6.3's field list
(driver statements outside a Requirements section, registered all the same).  Counted
against the LaTeX of v1.3-wd02 (``device-types/sound/description.tex``, secnumdepth 5, so
paragraphs and subparagraphs are numbered): 41 statements, 17 device-side (16 MUST-level,
1 SHOULD) and 24 driver-side (22 MUST-level, 2 SHOULD).  §5.14 has no MAY statement.

VIRTIO 1.4 (tags v1.4-csd01 and v1.4-cs01) keeps the sound device at §5.14 with the same
subsection structure, so every statement keeps its number; the one change to §5.14 is
two more PCM rates (12000 and 24000 Hz at indices 14 and 15), which makes a rate bit the
1.3 rules call undefined a defined one in 1.4 (``spec.virtio.devices.sound.PCM_RATES``).
The registry's :class:`~spec.virtio.registry.Requirement` has no 1.4 field, so each
record's text ends with its 1.4 section and :data:`SECTIONS_1_4` carries the same
mapping for code.

:data:`IMPLIED_RULES` lists what the sound judges also evaluate although §5.14 states it
without a Requirements statement (``PVSPEC-SND-*``), in the shape of
``conformance.oracle.IMPLIED_RULES`` (section, text), with the 1.4 section added.
"""

from __future__ import annotations

from spec.virtio.registry import Requirement, register

SN = "spec.virtio.devices.sound:"
T_SN = "tests/virtio/test_devices_sound.py::"
MACHINE = T_SN + "TestSoundMachine"


def R(rid: str, section: str, level: str, side: str, text: str, *checks: str) -> Requirement:
    """A record whose text names the 1.4 section too (the same number throughout §5.14)."""
    return Requirement(rid, section, level, side,  # type: ignore[arg-type]
                       f"{text} (1.4: §{section})", tuple(checks))


SOUND = (
    # §5.14.5.1 Driver Requirements: Device Initialization
    R("VIRTIO-5.14.5.1-DRV-CONTROLS-READ", "5.14.5.1", "MUST NOT", "driver",
      "The driver leaves the controls config field unread unless VIRTIO_SND_F_CTLS was "
      "negotiated.",
      SN + "check_driver_config_read", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.5.1-DRV-EVENTQ-POPULATE", "5.14.5.1", "MUST", "driver",
      "The driver fills the event queue with empty buffers, each large enough for one "
      "virtio_snd_event (8 bytes).",
      SN + "check_driver_event_buffer", SN + "check_driver_eventq_populated",
      T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.5.1-DRV-EVENTQ-NO-READABLE", "5.14.5.1", "MUST NOT", "driver",
      "No event queue buffer has a device-readable part.",
      SN + "check_driver_event_buffer", T_SN + "test_driver_rules"),
    # §5.14.6.2 Driver Requirements: Item Information Request
    R("VIRTIO-5.14.6.2-DRV-INFO-RANGE", "5.14.6.2", "MUST NOT", "driver",
      "An info query's start_id plus count stays within the number of such items the "
      "config space announces.",
      SN + "check_driver_control", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.2-DRV-INFO-BUFFER", "5.14.6.2", "MUST", "driver",
      "An info query comes with a response buffer of a virtio_snd_hdr plus count times "
      "size bytes.",
      SN + "check_driver_control", T_SN + "test_driver_rules"),
    # §5.14.6.4.1.1 Device Requirements: Jack Information
    R("VIRTIO-5.14.6.4.1.1-DEV-JACK-FEATURES", "5.14.6.4.1.1", "MUST NOT", "device",
      "A jack's info sets no feature bit the spec does not define (only JACK_F_REMAP).",
      SN + "check_jack_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules", T_SN + "test_planted_bug_caught"),
    R("VIRTIO-5.14.6.4.1.1-DEV-JACK-PADDING", "5.14.6.4.1.1", "MUST", "device",
      "The padding bytes of a jack's info are zero.",
      SN + "check_jack_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules"),
    # §5.14.6.6.2.1 Device Requirements: Stream Information
    R("VIRTIO-5.14.6.6.2.1-DEV-PCM-DEFINED", "5.14.6.6.2.1", "MUST NOT", "device",
      "A stream's info uses only defined feature, format and rate bits and a defined "
      "direction.",
      SN + "check_pcm_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules"),
    R("VIRTIO-5.14.6.6.2.1-DEV-PCM-PADDING", "5.14.6.6.2.1", "MUST", "device",
      "The padding bytes of a stream's info are zero.",
      SN + "check_pcm_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules"),
    # §5.14.6.6.3: the field list of virtio_snd_pcm_set_params
    R("VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-HOST", "5.14.6.6.3", "MUST NOT", "driver",
      "SET_PARAMS does not select VIRTIO_SND_PCM_F_SHMEM_HOST: it is only a placeholder "
      "for now.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3-DRV-NO-SHMEM-GUEST", "5.14.6.6.3", "MUST NOT", "driver",
      "SET_PARAMS does not select VIRTIO_SND_PCM_F_SHMEM_GUEST: it is only a placeholder "
      "for now.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    # §5.14.6.6.3.1 Device Requirements: Stream Parameters
    R("VIRTIO-5.14.6.6.3.1-DEV-BUFFER-SIZE", "5.14.6.6.3.1", "MUST", "device",
      "A device that keeps an intermediate buffer for a stream sizes it at least "
      "buffer_bytes of the accepted parameters.",
      SN + "check_intermediate_buffer", MACHINE, T_SN + "test_planted_bug_caught"),
    # §5.14.6.6.3.2 Driver Requirements: Stream Parameters
    R("VIRTIO-5.14.6.6.3.2-DRV-PERIOD-DIVIDES", "5.14.6.6.3.2", "MUST", "driver",
      "period_bytes divides buffer_bytes without remainder.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-DEFINED", "5.14.6.6.3.2", "MUST NOT", "driver",
      "SET_PARAMS selects only defined feature bits, a defined format and a defined rate.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-ADVERTISED", "5.14.6.6.3.2", "MUST NOT", "driver",
      "SET_PARAMS selects only features, a format and a rate the stream's info reported.",
      SN + "check_driver_set_params", SN + "check_driver_control", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-CHANNELS", "5.14.6.6.3.2", "MUST NOT", "driver",
      "SET_PARAMS asks for a channel count within the stream's channels_min..channels_max.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-NOT-BOTH-SHMEM", "5.14.6.6.3.2", "MUST NOT", "driver",
      "SET_PARAMS never selects both shared-memory bits (SHMEM_HOST and SHMEM_GUEST).",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-PADDING", "5.14.6.6.3.2", "MUST", "driver",
      "The padding byte of SET_PARAMS is zero.",
      SN + "check_driver_set_params", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.6.3.2-DRV-USE-QUEUES", "5.14.6.6.3.2", "MUST", "driver",
      "Without a shared-memory bit selected, a stream's frames travel in I/O messages: "
      "an output stream's on the tx queue, an input stream's on the rx queue.",
      SN + "check_driver_io", T_SN + "test_driver_rules"),
    # §5.14.6.6.5.1 Device Requirements: Stream Release
    R("VIRTIO-5.14.6.6.5.1-DEV-RELEASE-COMPLETES-IO", "5.14.6.6.5.1", "MUST", "device",
      "Releasing a stream completes every I/O message still pending for it.",
      SN + "judge_release", MACHINE, T_SN + "test_release_rules",
      T_SN + "test_planted_bug_caught"),
    R("VIRTIO-5.14.6.6.5.1-DEV-RELEASE-AFTER-IO", "5.14.6.6.5.1", "MUST NOT", "device",
      "The RELEASE request is answered only once none of the stream's I/O messages is "
      "pending any more.",
      SN + "judge_release", MACHINE, T_SN + "test_release_rules",
      T_SN + "test_planted_bug_caught"),
    # §5.14.6.8.1.1 / .1.2 Output Stream
    R("VIRTIO-5.14.6.8.1.1-DEV-TX-CONSUMED", "5.14.6.8.1.1", "MUST NOT", "device",
      "A tx message is returned only after the device has taken all of its frames.",
      SN + "judge_io", MACHINE, T_SN + "test_io_rules", T_SN + "test_planted_bug_caught",
      T_SN + "test_reference_over_split_rings"),
    R("VIRTIO-5.14.6.8.1.2-DRV-TX-PERIOD", "5.14.6.8.1.2", "SHOULD", "driver",
      "tx messages carry period_bytes of frames each, except the last of the stream.",
      SN + "check_driver_io", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.8.1.2-DRV-TX-READABLE", "5.14.6.8.1.2", "MUST NOT", "driver",
      "tx messages have no device-writable buffer besides the status trailer.",
      SN + "check_driver_io", T_SN + "test_driver_rules"),
    # §5.14.6.8.2.1 / .2.2 Input Stream
    R("VIRTIO-5.14.6.8.2.1-DEV-RX-FULL", "5.14.6.8.2.1", "MUST NOT", "device",
      "An rx message is returned only once its buffer is filled with frames, unless the "
      "stream is ending.",
      SN + "judge_io", MACHINE, T_SN + "test_io_rules", T_SN + "test_planted_bug_caught",
      T_SN + "test_reference_over_split_rings"),
    R("VIRTIO-5.14.6.8.2.2-DRV-RX-PERIOD", "5.14.6.8.2.2", "SHOULD", "driver",
      "Before starting an input stream the driver queues empty rx buffers of period_bytes "
      "each (judged: their size).",
      SN + "check_driver_io", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.8.2.2-DRV-RX-WRITABLE", "5.14.6.8.2.2", "MUST NOT", "driver",
      "rx messages have no device-readable buffer besides the xfer header.",
      SN + "check_driver_io", T_SN + "test_driver_rules"),
    # §5.14.6.9.1.1 Device Requirements: Channel Map Information
    R("VIRTIO-5.14.6.9.1.1-DEV-CHMAP-DIRECTION", "5.14.6.9.1.1", "MUST NOT", "device",
      "A channel map's info names a defined direction.",
      SN + "check_chmap_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules"),
    R("VIRTIO-5.14.6.9.1.1-DEV-CHMAP-CHANNELS", "5.14.6.9.1.1", "MUST NOT", "device",
      "A channel map's info claims at most VIRTIO_SND_CHMAP_MAX_SIZE (18) channels.",
      SN + "check_chmap_info", SN + "judge_control", MACHINE,
      T_SN + "test_info_structure_rules", T_SN + "test_planted_bug_caught"),
    # §5.14.6.10.1.1 Device Requirements: Control Element Information
    R("VIRTIO-5.14.6.10.1.1-DEV-CTL-DEFINED", "5.14.6.10.1.1", "MUST NOT", "device",
      "A control element's info uses only defined role, type and access values.",
      SN + "check_ctl_infos", SN + "judge_control", T_SN + "test_info_structure_rules"),
    R("VIRTIO-5.14.6.10.1.1-DEV-CTL-COUNT", "5.14.6.10.1.1", "MUST", "device",
      "A control element's count is non-zero and at most its type's limit (BOOLEAN, "
      "INTEGER, ENUMERATED 128; INTEGER64 64; BYTES 512; IEC958 1).",
      SN + "check_ctl_infos", SN + "judge_control", T_SN + "test_info_structure_rules"),
    R("VIRTIO-5.14.6.10.1.1-DEV-CTL-NAMES", "5.14.6.10.1.1", "MUST", "device",
      "Element names and enumerated item names are non-empty NUL-terminated ASCII.",
      SN + "check_ctl_infos", SN + "check_enum_items", SN + "judge_control",
      T_SN + "test_info_structure_rules", T_SN + "test_control_elements_through_judge_control"),
    R("VIRTIO-5.14.6.10.1.1-DEV-CTL-UNIQUE", "5.14.6.10.1.1", "MUST", "device",
      "No two control elements share both name and index.",
      SN + "check_ctl_infos", SN + "judge_control", T_SN + "test_info_structure_rules",
      T_SN + "test_control_elements_through_judge_control"),
    # §5.14.6.10.2.1 Driver Requirements: Control Element Value
    R("VIRTIO-5.14.6.10.2.1-DRV-READ-ACCESS", "5.14.6.10.2.1", "MUST NOT", "driver",
      "CTL_READ is sent only for an element granting ACCESS_READ.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.10.2.1-DRV-WRITE-ACCESS", "5.14.6.10.2.1", "MUST NOT", "driver",
      "CTL_WRITE is sent only for an element granting ACCESS_WRITE.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    # §5.14.6.10.3.1 / .3.2 Control Element Metadata
    R("VIRTIO-5.14.6.10.3.1-DEV-TLV-PARTIAL", "5.14.6.10.3.1", "SHOULD", "device",
      "A TLV read whose value does not fit the driver's buffer still succeeds, with as "
      "much written as fits.",
      SN + "check_tlv_read", T_SN + "test_info_structure_rules"),
    R("VIRTIO-5.14.6.10.3.2-DRV-TLV-READ-ACCESS", "5.14.6.10.3.2", "MUST NOT", "driver",
      "CTL_TLV_READ is sent only for an element granting ACCESS_TLV_READ.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.10.3.2-DRV-TLV-WRITE-ACCESS", "5.14.6.10.3.2", "MUST NOT", "driver",
      "CTL_TLV_WRITE is sent only for an element granting ACCESS_TLV_WRITE.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.10.3.2-DRV-TLV-COMMAND-ACCESS", "5.14.6.10.3.2", "MUST NOT", "driver",
      "CTL_TLV_COMMAND is sent only for an element granting ACCESS_TLV_COMMAND.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    R("VIRTIO-5.14.6.10.3.2-DRV-TLV-SIZE", "5.14.6.10.3.2", "MUST NOT", "driver",
      "A TLV write or command carries a value of at most 65536 bytes.",
      SN + "check_driver_ctl_request", T_SN + "test_driver_rules"),
    # §5.14.6.10.4.1 Device Requirements: Control Element Notifications
    R("VIRTIO-5.14.6.10.4.1-DEV-CTL-MASK", "5.14.6.10.4.1", "MUST NOT", "device",
      "A control notification's mask sets only the defined VALUE, INFO and TLV bits.",
      SN + "judge_event", T_SN + "test_info_structure_rules"),
)

register(*SOUND)

# VIRTIO 1.3 section -> VIRTIO 1.4 section, per record (identical throughout §5.14), as
# the registry's numbering table (spec/virtio/numbering.py) gives it
SECTIONS_1_4: dict[str, str] = {r.id: r.section_1_4 or "?" for r in SOUND}

# Rules the sound judges evaluate that §5.14 implies without a Requirements statement:
# id -> (1.3 section, 1.4 section, our paraphrase and why it follows).
IMPLIED_RULES: dict[str, tuple[str, str, str]] = {
    "PVSPEC-SND-RESPONSE-HEADER": ("5.14.6", "5.14.6", "a control answer writes at least "
                                   "the virtio_snd_hdr carrying its status"),
    "PVSPEC-SND-STATUS-CODE": ("5.14.6", "5.14.6", "a control status is one of OK, BAD_MSG, "
                               "NOT_SUPP and IO_ERR, the only values the status field takes"),
    "PVSPEC-SND-UNKNOWN-REQUEST": ("5.14.6", "5.14.6", "a request code §5.14.6 does not "
                                   "define (or a control element request without CTLS) is "
                                   "not answered OK: no operation was carried out"),
    "PVSPEC-SND-ITEM-RANGE": ("5.14.6.4", "5.14.6.4", "a request naming a jack, stream, "
                              "channel map or control id (or an info range) the config space "
                              "does not announce is not answered OK: there is no such item "
                              "to act on (the ids run from 0 to the count - 1, §5.14.6.4, "
                              "§5.14.6.6, §5.14.6.10; BAD_MSG is the status for invalid "
                              "parameters)"),
    "PVSPEC-SND-PCM-LIFECYCLE": ("5.14.6.6.1", "5.14.6.6.1", "a PCM command that is not "
                                 "among the valid transitions the command lifecycle lists "
                                 "after the stream's last successful command is not answered "
                                 "OK, and a failed command leaves the stream where it was"),
    "PVSPEC-SND-PARAMS-SUPPORTED": ("5.14.6.6.3", "5.14.6.6.3", "SET_PARAMS is not answered "
                                    "OK for a format, rate, feature set or channel count the "
                                    "stream's info did not advertise, nor for a period that "
                                    "does not divide the buffer (NOT_SUPP / BAD_MSG are the "
                                    "statuses for those)"),
    "PVSPEC-SND-INFO-ITEMS": ("5.14.6.1", "5.14.6.1", "an info query answered OK carries "
                              "the header followed by exactly count structures of size "
                              "bytes"),
    "PVSPEC-SND-EVENT": ("5.14.6.5", "5.14.6.5", "an event is a defined VIRTIO_SND_EVT_* code "
                         "naming an existing jack, stream or control; PCM events only for a "
                         "stream whose parameters enabled them (§5.14.6.7), control "
                         "notifications only with CTLS"),
    "PVSPEC-SND-IO-STATUS": ("5.14.6.8", "5.14.6.8", "an I/O status is OK or IO_ERR"),
    "PVSPEC-SND-IO-STREAM": ("5.14.6.8", "5.14.6.8", "an I/O message is completed OK only for "
                             "an existing stream of the queue's direction that is prepared, "
                             "started or stopped"),
    "PVSPEC-SND-IO-USED-LEN": ("5.14.6.8.2", "5.14.6.8.2", "a tx message's used length is the "
                               "8-byte status; an rx message's is the recorded frames plus "
                               "the status, within its writable part"),
    "PVSPEC-SND-DRV-ITEM-RANGE": ("5.14.6.6", "5.14.6.6", "the driver names only streams and "
                                  "jacks the config space announces (ids 0..count - 1)"),
    "PVSPEC-SND-DRV-IO-STATE": ("5.14.6.6.1", "5.14.6.6.1", "the driver transfers frames to "
                                "a stream only after PREPARE (pre-buffering output, queuing "
                                "input buffers) or START, never to a stream stopped, "
                                "released or without parameters"),
}
