"""virtio-gpu 2D (VIRTIO 1.3 §5.7): control header, 2D commands, a resource/scanout oracle.

The allowed-response oracle follows the command descriptions of §5.7.6.7 (controlq):
an unknown resource gets ERR_INVALID_RESOURCE_ID, an out-of-range scanout
ERR_INVALID_SCANOUT_ID, bad geometry ERR_INVALID_PARAMETER; any command may also fail with
ERR_UNSPEC or ERR_OUT_OF_MEMORY, which a device may always answer.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import attrs

from spec.virtio import features as F
from spec.virtio.config import layout
from spec.virtio.verdict import Violation

DEVICE_ID = F.GPU
CONTROLQ, CURSORQ = 0, 1
HDR = struct.Struct("<IIQIB3x")  # type, flags, fence_id, ctx_id, ring_idx
RECT = struct.Struct("<IIII")
FLAG_FENCE, FLAG_INFO_RING_IDX = 1, 2
MAX_SCANOUTS = 16
EVENT_DISPLAY = 1

CMD_GET_DISPLAY_INFO, CMD_RESOURCE_CREATE_2D, CMD_RESOURCE_UNREF = 0x100, 0x101, 0x102
CMD_SET_SCANOUT, CMD_RESOURCE_FLUSH, CMD_TRANSFER_TO_HOST_2D = 0x103, 0x104, 0x105
CMD_RESOURCE_ATTACH_BACKING, CMD_RESOURCE_DETACH_BACKING = 0x106, 0x107
CMD_RESOURCE_MAP_BLOB, CMD_RESOURCE_UNMAP_BLOB = 0x208, 0x209
RESP_OK_NODATA, RESP_OK_DISPLAY_INFO = 0x1100, 0x1101
RESP_ERR_UNSPEC, RESP_ERR_OUT_OF_MEMORY, RESP_ERR_INVALID_SCANOUT_ID = 0x1200, 0x1201, 0x1202
RESP_ERR_INVALID_RESOURCE_ID, RESP_ERR_INVALID_CONTEXT_ID = 0x1203, 0x1204
RESP_ERR_INVALID_PARAMETER = 0x1205
FORMATS = frozenset({1, 2, 3, 4, 67, 68, 121, 134})
SHM_ID_UNDEFINED, SHM_ID_HOST_VISIBLE = 0, 1

CONFIG = layout(("events_read", 4), ("events_clear", 4), ("num_scanouts", 4), ("num_capsets", 4))

# command -> payload struct after the header
PAYLOAD: Mapping[int, struct.Struct] = {
    CMD_GET_DISPLAY_INFO: struct.Struct("<"),
    CMD_RESOURCE_CREATE_2D: struct.Struct("<IIII"),  # resource_id, format, width, height
    CMD_RESOURCE_UNREF: struct.Struct("<II"),  # resource_id, padding
    CMD_SET_SCANOUT: struct.Struct("<IIIIII"),  # rect, scanout_id, resource_id
    CMD_RESOURCE_FLUSH: struct.Struct("<IIIIII"),  # rect, resource_id, padding
    CMD_TRANSFER_TO_HOST_2D: struct.Struct("<IIIIQII"),  # rect, offset, resource_id, padding
    CMD_RESOURCE_ATTACH_BACKING: struct.Struct("<II"),  # resource_id, nr_entries (+ entries)
    CMD_RESOURCE_DETACH_BACKING: struct.Struct("<II"),
}
MEM_ENTRY = struct.Struct("<QII")  # addr, length, padding


@attrs.frozen
class Hdr:
    type: int
    flags: int = 0
    fence_id: int = 0
    ctx_id: int = 0
    ring_idx: int = 0

    def encode(self) -> bytes:
        return HDR.pack(self.type, self.flags, self.fence_id, self.ctx_id, self.ring_idx)

    @classmethod
    def decode(cls, raw: bytes) -> Hdr:
        return cls(*HDR.unpack_from(raw))


def encode_request(hdr: Hdr, *fields: int, entries: tuple[tuple[int, int], ...] = ()) -> bytes:
    body = PAYLOAD[hdr.type].pack(*fields) if hdr.type in PAYLOAD else b""
    return hdr.encode() + body + b"".join(MEM_ENTRY.pack(a, n, 0) for a, n in entries)


def decode_request(raw: bytes) -> tuple[Hdr, tuple[int, ...]]:
    hdr = Hdr.decode(raw)
    st = PAYLOAD.get(hdr.type)
    return hdr, (st.unpack_from(raw, HDR.size) if st else ())


def encode_display_info(hdr: Hdr, modes: tuple[tuple[int, int, int, int, int, int], ...]) -> bytes:
    """OK_DISPLAY_INFO: header + 16 x (rect, enabled, flags)."""
    out = hdr.encode()
    for i in range(MAX_SCANOUTS):
        out += struct.pack("<IIIIII", *(modes[i] if i < len(modes) else (0,) * 6))
    return out


@attrs.frozen
class Resource:
    format: int
    width: int
    height: int
    backing: tuple[tuple[int, int], ...] = ()


@attrs.frozen
class Gpu:
    num_scanouts: int = 1
    resources: Mapping[int, Resource] = attrs.field(factory=dict)
    scanouts: tuple[tuple[int, tuple[int, int, int, int]], ...] = ()  # (resource, rect)


def _inside(rect: tuple[int, int, int, int], res: Resource) -> bool:
    x, y, w, h = rect
    return x + w <= res.width and y + h <= res.height


ANY_FAIL = (RESP_ERR_UNSPEC, RESP_ERR_OUT_OF_MEMORY)


def allowed(
    gpu: Gpu, hdr: Hdr, fields: tuple[int, ...], entries: tuple[tuple[int, int], ...] = ()
) -> dict[int, Gpu]:
    """Response type -> GPU state afterwards, for every response a device may give."""
    fails = dict.fromkeys(ANY_FAIL, gpu)
    t = hdr.type
    res = dict(gpu.resources)
    if t == CMD_GET_DISPLAY_INFO:
        return {RESP_OK_DISPLAY_INFO: gpu, **fails}
    if t == CMD_RESOURCE_CREATE_2D:
        rid, fmt, w, h = fields
        if rid == 0 or rid in res:
            return {RESP_ERR_INVALID_RESOURCE_ID: gpu, **fails}
        if fmt not in FORMATS or w == 0 or h == 0:
            return {RESP_ERR_INVALID_PARAMETER: gpu, **fails}
        res[rid] = Resource(fmt, w, h)
        return {RESP_OK_NODATA: attrs.evolve(gpu, resources=res), **fails}
    if t in (
        CMD_RESOURCE_UNREF,
        CMD_RESOURCE_ATTACH_BACKING,
        CMD_RESOURCE_DETACH_BACKING,
        CMD_RESOURCE_FLUSH,
        CMD_TRANSFER_TO_HOST_2D,
    ):
        # after the rect: FLUSH has resource_id; TRANSFER_TO_HOST_2D has offset, resource_id
        rid = fields[5 if t == CMD_TRANSFER_TO_HOST_2D else
                     4 if t == CMD_RESOURCE_FLUSH else 0]
        if rid not in res:
            return {RESP_ERR_INVALID_RESOURCE_ID: gpu, **fails}
        r = res[rid]
        if t == CMD_RESOURCE_UNREF:
            del res[rid]
            # a scanout showing it is disabled in place; the others keep their index
            outs = tuple((0, (0, 0, 0, 0)) if s[0] == rid else s for s in gpu.scanouts)
            return {RESP_OK_NODATA: attrs.evolve(gpu, resources=res, scanouts=outs), **fails}
        if t == CMD_RESOURCE_ATTACH_BACKING:
            res[rid] = attrs.evolve(r, backing=entries)
            return {RESP_OK_NODATA: attrs.evolve(gpu, resources=res), **fails}
        if t == CMD_RESOURCE_DETACH_BACKING:
            res[rid] = attrs.evolve(r, backing=())
            return {RESP_OK_NODATA: attrs.evolve(gpu, resources=res), **fails}
        if not _inside(fields[:4], r):
            return {RESP_ERR_INVALID_PARAMETER: gpu, **fails}
        return {RESP_OK_NODATA: gpu, **fails}
    if t == CMD_SET_SCANOUT:
        rect, sid, rid = fields[:4], fields[4], fields[5]
        if sid >= gpu.num_scanouts:
            return {RESP_ERR_INVALID_SCANOUT_ID: gpu, **fails}
        outs = list(gpu.scanouts) + [(0, (0, 0, 0, 0))] * (gpu.num_scanouts - len(gpu.scanouts))
        if rid != 0:
            if rid not in res:
                return {RESP_ERR_INVALID_RESOURCE_ID: gpu, **fails}
            if not _inside(rect, res[rid]):
                return {RESP_ERR_INVALID_PARAMETER: gpu, **fails}
        outs[sid] = (rid, rect)
        return {RESP_OK_NODATA: attrs.evolve(gpu, scanouts=tuple(outs)), **fails}
    return {RESP_ERR_UNSPEC: gpu}


def check_response(
    gpu: Gpu,
    hdr: Hdr,
    fields: tuple[int, ...],
    resp: Hdr,
    entries: tuple[tuple[int, int], ...] = (),
) -> Violation | None:
    """Judge a response header: its type must be allowed, fences echoed (§5.7.6.5)."""
    v = check_fence(hdr, resp, completed=True)
    if v is not None:
        return v
    if resp.type not in allowed(gpu, hdr, fields, entries):
        return Violation(
            "VIRTIO-5.7.6-DEV-RESPONSE-TYPE", "device", f"cmd {hdr.type:#x} answered {resp.type:#x}"
        )
    return None


def check_fence(req: Hdr, resp: Hdr, completed: bool) -> Violation | None:
    """§5.7.6.5 with the header rules: a fenced command returns only once processed,
    with FLAG_FENCE set and the fence id copied."""
    if not req.flags & FLAG_FENCE:
        return None
    if not completed or not resp.flags & FLAG_FENCE or resp.fence_id != req.fence_id:
        return Violation(
            "VIRTIO-5.7.6.5-DEV-FENCE",
            "device",
            f"fence {req.fence_id}: flags {resp.flags:#x} id {resp.fence_id}",
        )
    return None


def check_shm(shm_ids: tuple[int, ...], supported: frozenset[int]) -> Violation | None:
    """§5.7.5: shm ids are UNDEFINED or HOST_VISIBLE; host-visible needs MAP/UNMAP_BLOB."""
    if any(i not in (SHM_ID_UNDEFINED, SHM_ID_HOST_VISIBLE) for i in shm_ids):
        return Violation("VIRTIO-5.7.5-DEV-SHMID", "device", f"ids {shm_ids}")
    if (
        SHM_ID_HOST_VISIBLE in shm_ids
        and not {CMD_RESOURCE_MAP_BLOB, CMD_RESOURCE_UNMAP_BLOB} <= supported
    ):
        return Violation("VIRTIO-5.7.5-DEV-MAP-BLOB", "device", "host-visible without MAP_BLOB")
    return None


# What the GPU judges evaluate that §5.7 states in its descriptive text rather than in a
# Requirements block: id -> (1.3 section, paraphrase).  In the universe of a vhost-user
# GPU back-end (conformance.requirements.virtio_device).
IMPLIED_RULES: dict[str, tuple[str, str]] = {
    "VIRTIO-5.7.6-DEV-RESPONSE-TYPE": ("5.7.6", "a control command is answered with a "
                                       "response type its description allows for the "
                                       "resources as they are: OK, or the error naming what "
                                       "is wrong (an unknown resource id, scanout id, bad "
                                       "parameter), or ERR_UNSPEC / ERR_OUT_OF_MEMORY"),
    "PVSPEC-GPU-NUM-SCANOUTS": ("5.7.4", "the configuration's num_scanouts is between 1 "
                                "and 16"),
}


def check_config(raw: bytes) -> Violation | None:
    """§5.7.4: num_scanouts within 1..16 (the configuration as the device shows it)."""
    if len(raw) < 16:
        return Violation("PVSPEC-GPU-NUM-SCANOUTS", "device", f"config of {len(raw)} bytes")
    n = int(CONFIG.decode(raw)["num_scanouts"])
    if not 1 <= n <= MAX_SCANOUTS:
        return Violation("PVSPEC-GPU-NUM-SCANOUTS", "device", f"num_scanouts {n}")
    return None
