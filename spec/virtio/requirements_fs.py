"""Registry records for virtio-fs: the device statements of VIRTIO 1.3 §5.11.

Counted against the LaTeX of v1.3-wd02 (``device-types/fs/description.tex``): nine
device-side statements, in §5.11.4.2 (configuration: two MUSTs), §5.11.6.2.1 (the hiprio
queue: a MUST NOT and a MAY) and §5.11.6.4.1 (the DAX window: two MAYs -- one sentence of
which carries a MUST, registered on its own -- and three MUSTs).  VIRTIO 1.4 keeps these
sections' numbers (spec/virtio/numbering.py).  §5.11's driver statements are not
registered yet.

What a reply says is FUSE's business, taken over by §5.11.6.1 without a Requirements
statement: those rules are :data:`spec.virtio.fuse.FUSE_RULES`, not records here.
"""

from __future__ import annotations

from spec.virtio.registry import Requirement, register

FU = "spec.virtio.fuse:"
T_FS = "tests/vhost_user/test_fs_judge.py::"


def R(rid: str, section: str, level: str, side: str, text: str, *checks: str) -> Requirement:
    return Requirement(rid, section, level, side, text, tuple(checks))  # type: ignore[arg-type]


FS = (
    R("VIRTIO-5.11.4.2-DEV-NUM-REQUEST-QUEUES", "5.11.4.2", "MUST", "device",
      "num_request_queues is at least 1.",
      FU + "check_config", T_FS + "test_config_without_request_queue_is_caught"),
    R("VIRTIO-5.11.4.2-DEV-NOTIFY-BUF-SIZE", "5.11.4.2", "MUST", "device",
      "notify_buf_size holds every FUSE notify message the device sends."),
    R("VIRTIO-5.11.6.2.1-DEV-HIPRIO-NOT-PAUSED", "5.11.6.2.1", "MUST NOT", "device",
      "Activity on a request queue does not hold up the hiprio queue."),
    R("VIRTIO-5.11.6.2.1-DEV-HIPRIO-CONCURRENT", "5.11.6.2.1", "MAY", "device",
      "The request queues and the hiprio queue may be served at the same time."),
    R("VIRTIO-5.11.6.4.1-DEV-DAX-OPTIONAL", "5.11.6.4.1", "MAY", "device",
      "A DAX window for mapping file contents is optional."),
    R("VIRTIO-5.11.6.4.1-DEV-DAX-REGION-0", "5.11.6.4.1", "MUST", "device",
      "A DAX window, when there is one, is shared memory region 0."),
    R("VIRTIO-5.11.6.4.1-DEV-READ-WRITE", "5.11.6.4.1", "MUST", "device",
      "FUSE_READ and FUSE_WRITE work whether or not the DAX window is in use.",
      FU + "judge_read", FU + "judge_write",
      T_FS + "test_planted_read_write_bugs_are_caught"),
    R("VIRTIO-5.11.6.4.1-DEV-DAX-OVERLAP", "5.11.6.4.1", "MUST", "device",
      "Mappings that overlap existing ones, wholly or in part, are accepted."),
    R("VIRTIO-5.11.6.4.1-DEV-DAX-BOUNDS", "5.11.6.4.1", "MUST", "device",
      "A mapping reaching past the end of the DAX window is refused."),
)

register(*FS)
