"""virtio-gpu 2D over vhost-user (QEMU's vhost-user-gpu): negotiation, configuration and
the 2D resource commands, judged by the GPU model (spec.virtio.devices.gpu).

Every command goes through the split-ring oracle (as the fs requests do:
:class:`conformance.vhost_user.fs_checks.FsSession` does the queue work) and its response
header through ``gpu.check_response``: the response type must be one the model allows for
the resources as they stand (the model follows the device's answers), a fenced command
comes back with its fence.  The commands that talk to the VMM's display --
GET_DISPLAY_INFO, GET_EDID, SET_SCANOUT, RESOURCE_FLUSH and the cursor queue -- need the
display socket a VMM hands over with VHOST_USER_GPU_SET_SOCKET; this front-end has none,
so they are not sent.  Resource ids, formats, sizes, rectangles, backing and fences are
drawn by Hypothesis over one long session (the back-end serves one connection).
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import strategies as st

from conformance.results import NotJudged
from conformance.vhost_user import checks as ck
from conformance.vhost_user import fs_checks as fc
from conformance.vhost_user.targets import Target
from spec.virtio import features as F
from spec.virtio.devices import gpu as G

CONTROLQ = G.CONTROLQ
BACKING = 0x40000  # resource backing pages in guest memory (64 KiB)
MAX_SIDE = 64  # 64 x 64 x 4 bytes: 16 KiB of backing
RESP = G.HDR.size  # every command judged here answers a bare header
NOT_SENT = ("needs the VMM's display socket (VHOST_USER_GPU_SET_SOCKET), which this "
            "front-end does not provide: GET_DISPLAY_INFO, GET_EDID, SET_SCANOUT, "
            "RESOURCE_FLUSH and cursor commands are not sent")


UNBACKED = " (the resource has no backing)"
# command -> index of its resource id among the payload fields
_RID = {G.CMD_TRANSFER_TO_HOST_2D: 5, G.CMD_RESOURCE_FLUSH: 4, G.CMD_SET_SCANOUT: 5}
# docs/findings.md: QEMU 7.2 vhost-user-gpu
ck.EXPECTED_DEVIATIONS.update({
    ("qemu-vhost-user-gpu", "gpu-2d", "VIRTIO-5.7.6-DEV-RESPONSE-TYPE"): (
        "G1: TRANSFER_TO_HOST_2D and DETACH_BACKING on a resource without backing answer "
        "ERR_INVALID_RESOURCE_ID for an id that exists", "answered 0x1203" + UNBACKED),
})


class GpuSession(fc.FsSession):
    """Negotiated, memory shared, controlq (0) and cursorq (1) set up; the model's view
    of the device's resources, following its answers."""

    WANT = F.mask(F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC)
    CONFIG_SIZE = G.CONFIG.size

    def __init__(self, target: Target, fe: Any = None) -> None:
        super().__init__(target, fe)
        self.model = G.Gpu(num_scanouts=1)

    @classmethod
    def take(cls, t: Target) -> GpuSession:
        h = t.take_handoff()
        return h if isinstance(h, GpuSession) else cls(t, h)

    def command(self, what: str, hdr: G.Hdr, *fields: int,
                entries: tuple[tuple[int, int], ...] = (), poison: int = fc.POISONS[0],
                indirect: bool = False) -> tuple[list[fc.Item], bytes, int | None]:
        """Send one control command; its ring and response items, the writable bytes
        after, used.len.  The model moves to the state the answer implies (an answer it
        does not allow leaves it where it was)."""
        step, length, written = self.call_raw(G.encode_request(hdr, *fields, entries=entries),
                                              RESP, queue=CONTROLQ, poison=poison,
                                              indirect=indirect)
        call = fc.Call(hdr.type, 0, step, length, written)
        items = fc.ring_items(self.target, call, what)
        if step.outcome != "completed":
            return items, written, length
        if length is None or length < RESP:
            items.append(("VIRTIO-5.7.6-DEV-RESPONSE-TYPE", False,
                          f"{what}: used.len {length}, no response header", step.evidence()))
            return items, written, length
        resp = G.Hdr.decode(written)
        v = G.check_response(self.model, hdr, fields, resp, entries)
        rule = v.requirement if v is not None else "VIRTIO-5.7.6-DEV-RESPONSE-TYPE"
        res = self.model.resources.get(fields[_RID.get(hdr.type, 0)] if fields else 0)
        bare = UNBACKED if res is not None and not res.backing else ""
        items.append((rule, v is None, f"{what}: {v.detail + bare if v else f'{resp.type:#x}'}",
                      step.evidence() if v else ()))
        if hdr.flags & G.FLAG_FENCE and v is None:
            items.append(("VIRTIO-5.7.6.5-DEV-FENCE", True, f"{what}: fence {hdr.fence_id}",
                          ()))
        nxt = G.allowed(self.model, hdr, fields, entries).get(resp.type)
        if nxt is not None:
            self.model = nxt
        return items, written, length


def _features(c: ck.Ctx, s: GpuSession) -> None:
    c.add("VIRTIO-6.2-DEV-OFFER-VERSION-1", F.has(s.offered, F.VERSION_1),
          f"offered {s.offered:#x}")
    c.add("VHOST-USER-REPLY", True, "every reply of negotiation and queue setup "
          f"(protocol features {s.packed:#x}, {s.nq} queues)")
    # QEMU's vhost-user-gpu front-end overwrites num_scanouts, events_read and
    # events_clear of the back-end's config with its own (hw/display/vhost-user-gpu.c,
    # vhost_user_gpu_get_config: "those fields are managed by qemu"); this back-end leaves
    # them 0 (docs/findings.md, G0)
    c.skip("PVSPEC-GPU-NUM-SCANOUTS", "over vhost-user the VMM presents num_scanouts (QEMU "
           "overwrites the back-end's; this one reads "
           f"{s.config.hex() or 'nothing: no CONFIG protocol feature'})", NotJudged.PLATFORM)
    for rule in ("VIRTIO-5.7.5-DEV-SHMID", "VIRTIO-5.7.5-DEV-MAP-BLOB"):
        c.skip(rule, "no shared memory region: vhost-user as this front-end speaks it maps "
               "none of the back-end's", NotJudged.NOT_OFFERED)


@attrs.frozen
class Cmd:
    """One drawn command: kind, resource id, format, size / rect, fence."""

    kind: str
    rid: int
    fmt: int = 1
    w: int = 1
    h: int = 1
    x: int = 0
    y: int = 0
    fence: bool = False


def _send(s: GpuSession, cmd: Cmd, n: int) -> list[fc.Item]:
    hdr = G.Hdr({"create": G.CMD_RESOURCE_CREATE_2D, "unref": G.CMD_RESOURCE_UNREF,
                 "attach": G.CMD_RESOURCE_ATTACH_BACKING,
                 "detach": G.CMD_RESOURCE_DETACH_BACKING,
                 "transfer": G.CMD_TRANSFER_TO_HOST_2D, "unknown": 0x1FF}[cmd.kind],
                flags=G.FLAG_FENCE if cmd.fence else 0, fence_id=1000 + n if cmd.fence else 0)
    what = f"{cmd.kind} resource {cmd.rid}" + (f" fence {hdr.fence_id}" if cmd.fence else "")
    if cmd.kind == "create":
        return s.command(f"{what} format {cmd.fmt} {cmd.w}x{cmd.h}", hdr, cmd.rid, cmd.fmt,
                         cmd.w, cmd.h)[0]
    if cmd.kind == "attach":
        return s.command(what, hdr, cmd.rid, 1, entries=((BACKING, MAX_SIDE * MAX_SIDE * 4),))[0]
    if cmd.kind == "transfer":
        return s.command(f"{what} rect {cmd.x},{cmd.y} {cmd.w}x{cmd.h}", hdr, cmd.x, cmd.y,
                         cmd.w, cmd.h, 0, cmd.rid, 0)[0]
    if cmd.kind == "unknown":
        return s.command(f"command 0x1ff{' fenced' if cmd.fence else ''}", hdr)[0]
    return s.command(what, hdr, cmd.rid, 0)[0]


def _cmds() -> st.SearchStrategy[list[Cmd]]:
    side = st.integers(0, MAX_SIDE + 1)
    one = st.builds(Cmd, st.sampled_from(("create", "create", "attach", "transfer",
                                          "transfer", "detach", "unref", "unknown")),
                    st.integers(0, 5), st.sampled_from((1, 2, 67, 121, 134, 0, 999)),
                    side, side, st.integers(0, MAX_SIDE), st.integers(0, MAX_SIDE),
                    st.booleans())
    return st.lists(one, min_size=1, max_size=8)


def _2d(c: ck.Ctx, s: GpuSession) -> None:
    """A fixed 2D flow (create, attach, transfer inside and outside the resource, detach,
    unref, each twice where the second is an error), then drawn command sequences."""
    flow = [Cmd("create", 1, 1, 64, 64), Cmd("create", 1, 1, 64, 64),
            Cmd("create", 2, 999, 8, 8, fence=True), Cmd("attach", 1),
            Cmd("transfer", 1, w=64, h=64), Cmd("transfer", 1, w=65, h=64),
            Cmd("transfer", 7, w=1, h=1), Cmd("detach", 1), Cmd("unref", 1),
            Cmd("unref", 1), Cmd("unknown", 0, fence=True),
            # a resource never given backing (docs/findings.md G1)
            Cmd("create", 3, 1, 8, 8), Cmd("transfer", 3, w=8, h=8), Cmd("detach", 3),
            Cmd("unref", 3)]
    for n, cmd in enumerate(flow):
        fc.add_all(c, _send(s, cmd, n))
    counter = [len(flow)]

    def body(cmds: list[Cmd]) -> list[fc.Item]:
        out: list[fc.Item] = []
        for cmd in cmds:
            counter[0] += 1
            out += _send(s, cmd, counter[0])
        return out

    fc.add_all(c, fc.search(s.target, c.check, _cmds(), body))


def _used_len(c: ck.Ctx, s: GpuSession) -> None:
    """2.7.8.2 with two poisons: the same command (an unknown one, then an UNREF of a
    resource that does not exist: neither changes the device) twice."""
    for what, hdr, fields in (("command 0x1ff", G.Hdr(0x1FF), ()),
                              ("unref of resource 99", G.Hdr(G.CMD_RESOURCE_UNREF), (99, 0))):
        seen = []
        for p in fc.POISONS:
            items, written, length = s.command(f"{what} poison {p:#x}", hdr, *fields, poison=p)
            fc.add_all(c, items)
            seen.append((written, length))
        (a, la), (b, lb) = seen
        if la is None or lb is None:
            continue
        diff = [i for i in range(min(la, lb, RESP)) if a[i] != b[i]]
        c.add("VIRTIO-2.7.8-DEV-WRITE-LEN-BYTES", not diff and la == lb,
              f"{what}: used.len {la}/{lb}" + (f"; {len(diff)} bytes kept the poison"
                                                if diff else ": all written"))


GPU_CHECKS: dict[str, ck.Check] = {
    "gpu-features": fc.session_check("gpu-features", _features, GpuSession),
    "gpu-2d": fc.session_check("gpu-2d", _2d, GpuSession),
    "gpu-used-len": fc.session_check("gpu-used-len", _used_len, GpuSession),
}
GPU_COVERS: dict[str, tuple[str, ...]] = {
    "gpu-features": ("VIRTIO-6.2-DEV-OFFER-VERSION-1", "VHOST-USER-REPLY",
                     "PVSPEC-GPU-NUM-SCANOUTS", "VIRTIO-5.7.5-DEV-SHMID",
                     "VIRTIO-5.7.5-DEV-MAP-BLOB"),
    "gpu-2d": (*ck.STEP_RULES, "VIRTIO-5.7.6-DEV-RESPONSE-TYPE", "VIRTIO-5.7.6.5-DEV-FENCE"),
    "gpu-used-len": (*ck.STEP_RULES, "VIRTIO-5.7.6-DEV-RESPONSE-TYPE"),
}
ck.CHECKS["gpu"] = GPU_CHECKS
ck.COVERS.update(GPU_COVERS)
