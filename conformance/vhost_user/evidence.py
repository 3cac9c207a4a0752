"""What a failed VIRTIO check shows: the request the device got wrong, not the handshake.

A record is a report trace op (``{"op": "vhost-user", "text": ...}`` plus fields), built
from the guest memory before and after one kick:

* ``kind: "ring"`` -- avail.idx published, the device's last seen avail index, used.idx
  before and after, the driver's last used index, the used elements (id, len), whether a
  kick was sent and a notification came, the outcome;
* ``kind: "request"`` -- one chain: its head, the virtio-blk request (type, sector,
  lengths), every descriptor (table, index, addr, len, flags, next), every buffer with its
  bytes before (the driver's request bytes, the poison in writable buffers) and after
  (the device's answer), the used element and the status byte.

The records keep every byte (so the request could be re-sent); :func:`clip_op` cuts the
buffers to :data:`HEX_CLIP` bytes for the report, and :func:`write_trace` saves the full
records as a ``pvspec-virtio-trace`` JSON file next to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conformance.report import atomic_write, new_trace_path
from conformance.results import Failure, clip_text
from spec.virtio import ring_math as rm
from spec.virtio import split as sp
from spec.virtio.memory import GuestMemory, OutOfRange, read_le16, read_le32

TRACE_FORMAT = "pvspec-virtio-trace"
TRACE_VERSION = 1
HEX_CLIP = 256  # bytes of one buffer shown in a report's trace (the trace file has all)
FULL_CAP = 64 << 10  # bytes of one buffer kept at all (guest memory is 256 KiB)
MAX_DESCS = 32  # descriptors shown per chain (a hostile chain may be endless)
MAX_HEADS = 4  # chains shown per step when the ring, not the driver model, says what's exposed

TYPE_NAMES = {0: "IN", 1: "OUT", 4: "FLUSH", 8: "GET_ID", 10: "GET_LIFETIME", 11: "DISCARD",
              13: "WRITE_ZEROES", 14: "SECURE_ERASE"}
STATUS_NAMES = {0: "OK", 1: "IOERR", 2: "UNSUPP"}
_FLAG_NAMES = ((sp.VIRTQ_DESC_F_NEXT, "NEXT"), (sp.VIRTQ_DESC_F_WRITE, "WRITE"),
               (sp.VIRTQ_DESC_F_INDIRECT, "INDIRECT"))
_HEX_FIELDS = ("before", "after")


def op(text: str, **fields: Any) -> dict[str, Any]:
    """One report trace op."""
    return {"op": "vhost-user", "text": clip_text(text, 480), **fields}


def text_ops(lines: Sequence[str], kind: str = "message") -> tuple[dict[str, Any], ...]:
    return tuple(op(t, kind=kind) for t in lines)


def flags_text(flags: int) -> str:
    names = [n for bit, n in _FLAG_NAMES if flags & bit]
    rest = flags & ~sum(bit for bit, _ in _FLAG_NAMES)
    return "|".join(names + ([f"{rest:#x}"] if rest else [])) or "0"


def _read(mem: GuestMemory, addr: int, n: int) -> bytes | None:
    if n < 0 or addr + n > rm.MASK64 + 1:
        return None
    try:
        return mem.read(addr, min(n, FULL_CAP))
    except OutOfRange:
        return None


def describe_chain(mem: GuestMemory, layout: sp.SplitLayout, head: int
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The descriptors of the chain at ``head`` as the driver wrote them (bounded, loops
    and bad indices noted, never raising), and its buffers (addr, len, writable)."""
    descs: list[dict[str, Any]] = []
    bufs: list[dict[str, Any]] = []
    table, entries, i, where = layout.desc, layout.size, head, "ring"
    seen: set[tuple[int, int]] = set()
    nested = False
    while len(descs) < MAX_DESCS:
        if not 0 <= i < entries:
            descs.append({"table": where, "i": i, "error": f"index outside the {entries}-entry "
                                                            f"table"})
            break
        if (table, i) in seen:
            descs.append({"table": where, "i": i, "error": "loop: descriptor already visited"})
            break
        seen.add((table, i))
        raw = _read(mem, table + 16 * i, 16)
        if raw is None:
            descs.append({"table": where, "i": i, "error": "descriptor outside guest memory"})
            break
        d = sp.Desc(int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little"),
                    int.from_bytes(raw[12:14], "little"), int.from_bytes(raw[14:], "little"))
        descs.append({"table": where, "i": i, "addr": f"{d.addr:#x}", "len": d.len,
                      "flags": flags_text(d.flags), "next": d.next})
        if d.flags & sp.VIRTQ_DESC_F_INDIRECT and not nested:
            table, entries, i, where = d.addr, d.len // 16, 0, f"indirect@{d.addr:#x}"
            nested = True
            continue
        if not d.flags & sp.VIRTQ_DESC_F_INDIRECT:
            bufs.append({"addr": d.addr, "len": d.len,
                         "writable": bool(d.flags & sp.VIRTQ_DESC_F_WRITE)})
        if not d.flags & sp.VIRTQ_DESC_F_NEXT:
            break
        i = d.next
    else:
        descs.append({"table": where, "i": i, "error": f"more than {MAX_DESCS} descriptors, "
                                                       f"cut"})
    return descs, bufs


def request_record(before: GuestMemory, after: GuestMemory, layout: sp.SplitLayout,
                   head: int, request: Any, used: Mapping[int, int]) -> dict[str, Any]:
    """One chain, its buffers before and after, and the device's answer to it."""
    descs, bufs = describe_chain(before, layout, head)
    written = b""
    for b in bufs:
        pre = _read(before, b["addr"], b["len"])
        b["before"] = None if pre is None else pre.hex()
        if b["writable"]:
            post = _read(after, b["addr"], b["len"])
            b["after"] = None if post is None else post.hex()
            written += post or b""
        b["addr"] = f"{b['addr']:#x}"
    length = used.get(head)
    status = written[-1] if written and length is not None and request is not None else None
    req: dict[str, Any] | None = None
    if request is not None:
        req = {"type": request.type, "name": TYPE_NAMES.get(request.type, str(request.type)),
               "sector": request.sector, "data_len": len(request.data),
               "in_len": request.in_len}
    chain = "; ".join(
        f"[{d['i']}] {d['error']}" if "error" in d else
        f"[{d['i']}]{'' if d['table'] == 'ring' else '(ind)'} {d['addr']}+{d['len']} "
        f"{d['flags']}" + (f"->{d['next']}" if "NEXT" in d["flags"] else "")
        for d in descs)
    ro = b"".join(bytes.fromhex(b["before"]) for b in bufs
                  if not b["writable"] and b["before"] is not None)
    pre_w = b"".join(bytes.fromhex(b["before"]) for b in bufs
                     if b["writable"] and b["before"] is not None)
    what = (f"{req['name']} sector {req['sector']}" if req else "chain")
    answer = ("not used" if length is None else f"used id {head} len {length}"
              + (f", status {status} ({STATUS_NAMES.get(status, '?')})"
                 if status is not None else ""))
    text = (f"head {head}: {what}; descs {chain}; readable {len(ro)} B {_short(ro)}; "
            f"writable {len(pre_w)} B before {_short(pre_w)} after {_short(written)}; "
            f"{answer}")
    return op(text, kind="request", head=head, request=req, chain=descs, buffers=bufs,
              used=None if length is None else {"id": head, "len": length}, status=status)


def _short(b: bytes, n: int = 24) -> str:
    return b[:n].hex() + (f"..(+{len(b) - n})" if len(b) > n else "") if b else "-"


def step_records(before: GuestMemory, after: GuestMemory, layout: sp.SplitLayout,
                 placed: Sequence[tuple[int, Any]], ring: Mapping[str, Any]
                 ) -> tuple[dict[str, Any], ...]:
    """The ring record and one record per chain of one step.  ``placed``: (head, request)
    the driver model placed; empty for a hand-written (hostile) ring, whose exposed heads
    are then read from the avail ring."""
    used_before, used_after = ring["used_idx_before"], ring["used_idx_after"]
    used: dict[int, int] = {}
    elems = []
    n = min(rm.idx_sub(used_after, used_before), layout.size, 16)
    for k in range(n):
        at = rm.used_elem_addr(layout.used, rm.ring_slot(rm.idx_add(used_before, k),
                                                         layout.size))
        ident, length = read_le32(after, at), read_le32(after, at + 4)
        used.setdefault(ident, length)
        elems.append({"id": ident, "len": length})
    shown = ", ".join(f"{e['id']}:{e['len']}" for e in elems) or "none"
    text = (f"avail.idx {ring['avail_idx']} (device at {ring['last_avail']}), used.idx "
            f"{used_before}->{used_after}, driver's last used {ring['last_used']}; "
            f"used id:len {shown}; "
            f"kick {'sent' if ring['kicked'] else 'not sent'}, notified {ring['notified']}, "
            f"outcome {ring['outcome']}")
    out = [op(text, kind="ring", **ring, used=elems)]
    heads = list(placed)
    if not heads:
        start, end = ring["last_avail"], ring["avail_idx"]
        for k in range(min(rm.idx_sub(end, start), MAX_HEADS)):
            slot = rm.avail_ring_addr(layout.avail, rm.ring_slot(rm.idx_add(start, k),
                                                                 layout.size))
            heads.append((read_le16(before, slot), None))
    out += [request_record(before, after, layout, h, r, used) for h, r in heads]
    return tuple(out)


def clip_op(o: Mapping[str, Any], limit: int = HEX_CLIP) -> dict[str, Any]:
    """``o`` with every buffer cut to ``limit`` bytes (hex), the full size noted."""
    out = dict(o)
    if isinstance(o.get("buffers"), list):
        bufs = []
        for b in o["buffers"]:
            b = dict(b)
            for k in _HEX_FIELDS:
                h = b.get(k)
                if isinstance(h, str) and len(h) > 2 * limit:
                    b[k] = f"{h[: 2 * limit]}..(+{(len(h) - 2 * limit) // 2} bytes)"
            bufs.append(b)
        out["buffers"] = bufs
    return out


def write_trace(report_dir: Path, name: str, failure: Failure, ops: Sequence[Mapping[str, Any]],
                target: str) -> str:
    """Save a failure's full records under ``report_dir/traces``; the path relative to the
    report directory (an existing file is never overwritten)."""
    path = new_trace_path(report_dir, name)
    atomic_write(path, json.dumps({
        "format": TRACE_FORMAT, "version": TRACE_VERSION, "target": target, "check": name,
        "failure": {"kind": failure.kind, "requirement": failure.requirement,
                    "clause": failure.clause, "expected": clip_text(failure.expected),
                    "observed": clip_text(failure.observed)},
        "ops": [dict(o) for o in ops]}, indent=1, default=str))
    return str(path.relative_to(report_dir))
