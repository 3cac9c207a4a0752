"""FF-A v1.1 memory management (Arm DEN0077A v1.1) as a front end over the reference
hypervisor's memory-transaction calls.

A guest that speaks FF-A puts a memory transaction descriptor in its TX buffer and calls
FFA_MEM_SHARE / LEND / DONATE / RETRIEVE_REQ / RELINQUISH / RECLAIM; this front end reads
the descriptor, checks it as the standard requires, and makes the hypervisor's own call
(``MEM_SHARE`` ... in the vendor range) from the same vCPU.  It answers FFA_SUCCESS
(a send: the handle in w2 low / w3 high), FFA_MEM_RETRIEVE_RESP (the retrieved region's
descriptor written to the caller's RX buffer, which the caller then owns until
FFA_RX_RELEASE) or FFA_ERROR with the code in w2.  It also keeps each endpoint's RX/TX
buffer pair (FFA_RXTX_MAP / UNMAP / RX_RELEASE) and answers FFA_VERSION, FFA_ID_GET and
FFA_FEATURES.

Its own reading of the standard, written apart from the spec (reference_impl never
imports it): VM ``v`` is endpoint ``v + 1``; frame ``g`` is the 4 KiB page at IPA
``g * 4096``; touching constituents make one range; a region the hypervisor's calls cannot
express (several ranges, receivers with different rights, device memory, zeroing) is
refused with NOT_SUPPORTED, an endpoint that is no VM with INVALID_PARAMETERS.  Where a
retrieved region is mapped is this instance's choice: ``place(vm, handle)`` if given, else
where the owner has it.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Mapping
from typing import Any

from reference_impl._abi_constants import ROWS
from reference_impl._common import NONE, TX_FREE

__all__ = ["FFA", "FfaFrontEnd"]

FFA = {  # function ids (DEN0077A v1.1; SMCCC fast calls of entity 4)
    "ERROR": 0x84000060, "SUCCESS_32": 0x84000061, "SUCCESS_64": 0xC4000061,
    "VERSION": 0x84000063, "FEATURES": 0x84000064, "RX_RELEASE": 0x84000065,
    "RXTX_MAP_32": 0x84000066, "RXTX_MAP_64": 0xC4000066, "RXTX_UNMAP": 0x84000067,
    "ID_GET": 0x84000069,
    "MEM_DONATE_32": 0x84000071, "MEM_DONATE_64": 0xC4000071,
    "MEM_LEND_32": 0x84000072, "MEM_LEND_64": 0xC4000072,
    "MEM_SHARE_32": 0x84000073, "MEM_SHARE_64": 0xC4000073,
    "MEM_RETRIEVE_REQ_32": 0x84000074, "MEM_RETRIEVE_REQ_64": 0xC4000074,
    "MEM_RETRIEVE_RESP": 0x84000075, "MEM_RELINQUISH": 0x84000076,
    "MEM_RECLAIM": 0x84000077, "MEM_FRAG_RX": 0x8400007A, "MEM_FRAG_TX": 0x8400007B,
}
_NAME = {fid: name for name, fid in FFA.items()}
NOT_SUPPORTED, INVALID, BUSY, DENIED = -1, -2, -4, -6
VERSION_1_1 = 1 << 16 | 1
PAGE = 4096
MAX_BUFFER_PAGES = 64
_SVE_HINT = 1 << 16
_M32 = 0xFFFF_FFFF
_VENDOR = {row[0]: row[1] for row in ROWS}
_SEND = {"MEM_SHARE": 1, "MEM_LEND": 2, "MEM_DONATE": 3}  # FF-A transaction type
_NORMAL_WB_INNER = 0x2F  # normal memory, write-back, inner shareable


class _Refused(Exception):
    """An FF-A error to answer with."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code


def _need(ok: bool, code: int, why: str) -> None:
    if not ok:
        raise _Refused(code, why)


class _Reader:
    """Little-endian fields of a buffer, bounded by a stated length."""

    def __init__(self, data: bytes, length: int) -> None:
        _need(length <= len(data), INVALID, "length past the buffer")
        self.data, self.length = data, length

    def u(self, fmt: str, at: int) -> tuple[int, ...]:
        _need(at + struct.calcsize(fmt) <= self.length, INVALID, "field past the length")
        return struct.unpack_from("<" + fmt, self.data, at)


class FfaFrontEnd:
    """The FF-A memory-management interface of one hypervisor instance."""

    def __init__(self, hv: Any, place: Callable[[int, int], int] | None = None) -> None:
        self.hv = hv
        self.place = place  # where a retrieve maps the region: (vm, handle) -> frame
        self.buffers: dict[int, tuple[int, int, int]] = {}  # vm -> (tx, rx, pages)
        self.rx_owned: set[int] = set()  # VMs holding an unreleased response in RX

    # --- entry ----------------------------------------------------------------------------
    def call(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes = b""
             ) -> tuple[dict[str, int], bytes]:
        """One FF-A call from ``vm``'s vCPU ``vcpu`` with its TX buffer's contents:
        the result registers and what was written to its RX buffer."""
        name = _NAME.get(regs.get("x0", 0) & _M32 & ~_SVE_HINT, "")
        hv = self.hv
        try:
            _need(0 <= vm < hv.V and 0 <= vcpu < hv.C and bool(hv.can[vm * hv.C + vcpu]),
                  DENIED, "the caller cannot run")
            handler = getattr(self, "_" + name.lower().removesuffix("_32")
                              .removesuffix("_64"), None)
            _need(handler is not None and name not in ("ERROR", "SUCCESS_32", "SUCCESS_64",
                                                      "MEM_RETRIEVE_RESP"),
                  NOT_SUPPORTED, f"function {regs.get('x0', 0):#x}")
            assert handler is not None
            return handler(vm, vcpu, regs, tx)
        except _Refused as refused:
            return _answer(FFA["ERROR"], 0, refused.code & _M32), b""

    # --- setup ----------------------------------------------------------------------------
    def _version(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        return {"x0": VERSION_1_1, "x1": 0, "x2": 0, "x3": 0}, b""

    def _id_get(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        return _answer(FFA["SUCCESS_32"], 0, vm + 1), b""

    def _features(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        _need(regs.get("x1", 0) & _M32 in _NAME, NOT_SUPPORTED, "unknown function")
        return _answer(FFA["SUCCESS_32"], 0, 0), b""

    def _rxtx_map(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        _need(vm not in self.buffers, DENIED, "buffers already mapped")
        wide = -1 if regs.get("x0", 0) >> 30 & 1 else _M32  # SMC32: the addresses are w1, w2
        t, r = regs.get("x1", 0) & wide, regs.get("x2", 0) & wide
        pages = regs.get("x3", 0) & _M32
        size = pages * PAGE
        _need(1 <= pages <= MAX_BUFFER_PAGES and not (t | r) % PAGE
              and (t + size <= r or r + size <= t), INVALID, "bad buffers")
        self.buffers[vm] = (t, r, pages)
        return _answer(FFA["SUCCESS_32"]), b""

    def _rxtx_unmap(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        _need(vm in self.buffers, INVALID, "no buffers mapped")
        del self.buffers[vm]
        self.rx_owned.discard(vm)
        return _answer(FFA["SUCCESS_32"]), b""

    def _rx_release(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        _need(vm in self.rx_owned, DENIED, "the caller does not own its RX buffer")
        self.rx_owned.discard(vm)
        return _answer(FFA["SUCCESS_32"]), b""

    # --- transactions ---------------------------------------------------------------------
    def _tx_length(self, vm: int, regs: Mapping[str, int]) -> int:
        _need(vm in self.buffers, INVALID, "no TX buffer")
        total, frag = regs.get("x1", 0) & _M32, regs.get("x2", 0) & _M32
        address = regs.get("x3", 0) & (-1 if regs.get("x0", 0) >> 30 & 1 else _M32)
        _need(not address and not regs.get("x4", 0) & _M32, INVALID, "only the TX buffer")
        _need(frag <= total, INVALID, "fragment past total")
        _need(frag == total, NOT_SUPPORTED, "fragmented transactions")
        _need(total <= self.buffers[vm][2] * PAGE, INVALID, "past the TX buffer")
        return total

    def _mem_share(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        return self._send("MEM_SHARE", vm, vcpu, regs, tx)

    def _mem_lend(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        return self._send("MEM_LEND", vm, vcpu, regs, tx)

    def _mem_donate(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        return self._send("MEM_DONATE", vm, vcpu, regs, tx)

    def _send(self, row: str, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes
              ) -> Any:
        rd = _Reader(tx, self._tx_length(vm, regs))
        head = _header(rd, send=True)
        sender, attributes, flags, receivers, coff = head
        donate, share = row == "MEM_DONATE", row == "MEM_SHARE"
        _need(not flags & ~3, INVALID, "reserved flags")
        _need(not (share and flags & 1), INVALID, "zeroing what the sender keeps")
        _need(not (donate and len(receivers) != 1), INVALID, "a donation has one receiver")
        kind, cache, shareable = attributes >> 4 & 3, attributes >> 2 & 3, attributes & 3
        _need(kind != 3 and shareable != 1 and not (kind == 2 and cache in (0, 2)),
              INVALID, "reserved attribute encoding")
        _need(not kind or not (donate or (row == "MEM_LEND" and len(receivers) == 1)),
              INVALID, "the sender names a memory type")
        for _endpoint, perms in receivers:
            _need(not perms >> 2 & 3, INVALID, "instruction access on a send")
            _need(bool(perms & 3) != donate, INVALID, "data access for this transaction")
        _need(bool(coff), INVALID, "no composite descriptor")
        runs = _region(rd, coff, head_end=_emad_end(rd))
        _need(sender == vm + 1, INVALID, "the sender is not the caller")
        for (_, end), (start, _) in itertools.pairwise(runs):
            _need(start == end, NOT_SUPPORTED, "several ranges")
        base, count = runs[0][0] // PAGE, (runs[-1][1] - runs[0][0]) // PAGE
        _need(not flags & 1, NOT_SUPPORTED, "zeroing memory")
        _need(not kind or attributes == _NORMAL_WB_INNER, NOT_SUPPORTED,
              "memory attributes")
        _need(len({p for _, p in receivers}) == 1, NOT_SUPPORTED, "rights per receiver")
        who = 0
        for endpoint, _ in receivers:
            _need(1 <= endpoint <= 16, INVALID, f"endpoint {endpoint} is no VM")
            who |= 1 << (endpoint - 1)
        perm = 3 if donate else (3 if receivers[0][1] & 3 == 2 else 1)
        _need(base < 1 << 32, INVALID, "memory outside the guest")
        ret = self._vendor(row, vm, vcpu, base, count, who, perm)
        return _answer(FFA["SUCCESS_32"], 0, ret & _M32, ret >> 32), b""

    def _mem_retrieve_req(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes
                          ) -> Any:
        rd = _Reader(tx, self._tx_length(vm, regs))
        sender, _attributes, _flags, receivers, coff = _header(rd, send=False)
        _need(coff == 0 and rd.length == _emad_end(rd), INVALID,
              "a retrieve request names no region")
        (handle,) = rd.u("Q", 8)
        _need(len(receivers) == 1 and receivers[0][0] == vm + 1, NOT_SUPPORTED,
              "retrieval for other endpoints")
        _need(vm not in self.rx_owned, BUSY, "the caller's RX buffer is full")
        hv = self.hv
        k = handle
        live = k < hv.K and hv.tx_kind[k] != TX_FREE
        if live and hv.tx_owner[k] != NONE:  # (an orphan's sender is gone)
            _need(sender == hv.tx_owner[k] + 1, INVALID, "the sender is not the owner")
        owner, kind = (hv.tx_owner[k], hv.tx_kind[k]) if live else (0, 0)
        count, perm = (hv.tx_count[k], hv.tx_perm[k]) if live else (0, 0)
        base = self.place(vm, handle) if self.place else (hv.tx_base[k] if live else 0)
        self._vendor("MEM_RETRIEVE", vm, vcpu, handle, base)
        rx = _response(owner + 1, kind, handle, vm + 1, perm, base, count)
        self.rx_owned.add(vm)
        return _answer(FFA["MEM_RETRIEVE_RESP"], len(rx), len(rx)), rx

    def _mem_relinquish(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes
                        ) -> Any:
        _need(vm in self.buffers, INVALID, "no TX buffer")
        rd = _Reader(tx, len(tx))
        handle, flags, n = rd.u("QII", 0)
        ids = rd.u(f"{n}H", 16)
        _need(not flags & ~3, INVALID, "reserved flags")
        _need(bool(ids) and set(ids) == {vm + 1}, INVALID, "endpoints other than the caller")
        _need(not flags & 1, NOT_SUPPORTED, "zeroing memory")
        self._vendor("MEM_RELINQUISH", vm, vcpu, handle)
        return _answer(FFA["SUCCESS_32"]), b""

    def _mem_reclaim(self, vm: int, vcpu: int, regs: Mapping[str, int], tx: bytes) -> Any:
        flags = regs.get("x3", 0) & _M32
        _need(not flags & ~3, INVALID, "reserved flags")
        _need(not flags & 1, NOT_SUPPORTED, "zeroing memory")
        handle = regs.get("x1", 0) & _M32 | (regs.get("x2", 0) & _M32) << 32
        self._vendor("MEM_RECLAIM", vm, vcpu, handle)
        return _answer(FFA["SUCCESS_32"]), b""

    def _vendor(self, row: str, vm: int, vcpu: int, *args: int) -> int:
        """The hypervisor's own call; its (FF-A-numbered) error refuses the FF-A call."""
        regs = {"x0": _VENDOR[row], **{f"x{i}": 0 for i in range(1, 8)}}
        for i, a in enumerate(args, 1):
            regs[f"x{i}"] = a
        ret = self.hv.hypercall(vm, vcpu, regs)["x0"]
        if ret >> 63:
            raise _Refused(ret - (1 << 64), row)
        return int(ret)


def _answer(fid: int, *words: int) -> dict[str, int]:
    out = {"x0": fid, "x1": 0, "x2": 0, "x3": 0}
    for i, w in enumerate(words, 1):
        out[f"x{i}"] = w
    return out


def _emad_end(rd: _Reader) -> int:
    size, count, offset = rd.u("III", 24)
    return int(offset + size * count)


def _header(rd: _Reader, send: bool) -> tuple[int, int, int, list[tuple[int, int]], int]:
    """The 48-byte header and the endpoint access descriptors (Tables 10.20, 10.16,
    10.15): sender, attributes, flags, [(endpoint, permissions)], composite offset."""
    sender, attributes, flags = rd.u("HHI", 0)
    size, count, offset = rd.u("III", 24)
    rd.u("12x", 36)  # the header fits
    _need(not any(rd.data[36:48]), INVALID, "reserved header bytes")
    _need(not attributes & 0xFF80, INVALID, "reserved attribute bits")
    _need(not attributes & 0x40, INVALID, "the NS bit")
    _need(size == 16 and count > 0 and offset >= 48 and not offset % 16, INVALID,
          "access descriptor array")
    _need(offset + size * count <= rd.length, INVALID, "access descriptors past the length")
    receivers, offsets = [], set()
    for at in range(offset, offset + size * count, size):
        endpoint, perms, aflags, coff, reserved = rd.u("HBBIQ", at)
        _need(not reserved, INVALID, "reserved access descriptor bytes")
        _need(not perms & 0xF0 and perms & 3 != 3 and perms >> 2 & 3 != 3, INVALID,
              "reserved permissions")
        _need(not (send and aflags), INVALID, "retrieve flags in a send")
        receivers.append((endpoint, perms))
        offsets.add(coff)
    ids = [e for e, _ in receivers]
    _need(len(set(ids)) == len(ids), INVALID, "a receiver twice")
    _need(not (send and sender in ids), INVALID, "the sender as a receiver")
    _need(len(offsets) == 1, INVALID, "different composite descriptors")
    return sender, attributes, flags, receivers, offsets.pop()


def _region(rd: _Reader, coff: int, head_end: int) -> list[tuple[int, int]]:
    """The composite descriptor's constituents (Tables 10.13, 10.14), checked: their
    (start, end) addresses in order."""
    _need(coff >= head_end and not coff % 16 and coff + 16 <= rd.length, INVALID,
          "composite descriptor offset")
    total, count, reserved = rd.u("IIQ", coff)
    _need(not reserved, INVALID, "reserved composite bytes")
    _need(coff + 16 + 16 * count == rd.length, INVALID, "constituents and length disagree")
    runs = []
    for at in range(coff + 16, rd.length, 16):
        address, pages, res = rd.u("QII", at)
        _need(not res, INVALID, "reserved constituent bytes")
        _need(pages > 0, INVALID, "an empty constituent")
        _need(not address % PAGE, INVALID, "an unaligned constituent")
        _need(address + pages * PAGE <= 1 << 64, INVALID, "a constituent past the top")
        runs.append((address, address + pages * PAGE))
    _need(total > 0, INVALID, "an empty region")
    runs.sort()
    for (_, end), (start, _) in itertools.pairwise(runs):
        _need(start >= end, INVALID, "overlapping constituents")
    _need(sum(e - s for s, e in runs) == total * PAGE, INVALID, "page count")
    return runs


def _response(sender: int, kind: int, handle: int, me: int, perm: int, base: int,
              count: int) -> bytes:
    """The retrieved region's descriptor, as FFA_MEM_RETRIEVE_RESP writes it to RX."""
    perms = (2 if perm & 2 else 1) | (2 if perm & 4 else 1) << 2
    head = struct.pack("<HHIQQIII12x", sender, _NORMAL_WB_INNER, kind << 3, handle, 0,
                       16, 1, 48)
    access = struct.pack("<HBBIQ", me, perms, 0, 64, 0)
    return head + access + struct.pack("<IIQQII", count, 1, 0, base * PAGE, count, 0)
