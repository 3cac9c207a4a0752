"""vhost-user front-end and VIRTIO conformance checks through real shared memory."""

from conformance.vhost_user.report import run_conformance

__all__ = ["run_conformance"]
