"""vhost-user front-end and VIRTIO conformance checks through real shared memory."""

from conformance.vhost_user.report import check_names, connect_check, run_conformance, run_one

__all__ = ["check_names", "connect_check", "run_conformance", "run_one"]
