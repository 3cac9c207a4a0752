"""The model's calls sent to a target in a standard ABI, through that ABI's codec.

The oracle asks for the model's calls (pvspec's registers).  A target that speaks FF-A or
Xen's event-channel ABI gets, for each call the codec can express, what a guest really puts
down -- registers and guest memory (FF-A: the descriptor in the caller's TX buffer; Xen: the
command's struct) -- and its answer is read back through the same codec into the model's
terms: a success's value with the bits the ABI cannot show marked unseen (``seen``), a
failure as the set of model errors its code may stand for (``errors``).  A call the codec
cannot express goes to the target in pvspec's registers (``native``), counted.

One shim per ABI, each over a *call function* ``call(vm, vcpu, regs, memory, place)`` ->
``(regs, memory)``: the in-process front ends of ``reference_impl`` and the ``abi_call``
message of an exec adapter (docs/PROTOCOL.md) are two such functions, judged alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from conformance.target import TargetError
from spec.hypercalls import codec, ffa, xen

__all__ = ["BUFFER_IPA", "SHIMS", "CallFunction", "FfaShim", "Shim", "XenShim", "model_answer",
           "xen_answer", "xen_struct_ipa"]

MASK64 = (1 << 64) - 1
# FF-A RX/TX buffer pairs: far above every model frame, one 4 KiB page each, in place from
# the reset on (as a boot-time FFA_RXTX_MAP leaves them): VM v's TX at BUFFER_IPA + 2v
# pages, its RX the page after
BUFFER_IPA = 1 << 40
XEN_STRUCT_IPA = BUFFER_IPA - ffa.PAGE  # where a Xen command's struct is said to lie

# (vm, vcpu, registers, guest memory the call reads, placement) -> (registers, memory
# the call wrote): ``placement`` is FF-A's retrieve address (a guest frame) or None
CallFunction = Callable[[int, int, dict[str, int], bytes, "int | None"],
                        tuple[Mapping[str, int], bytes]]
Native = Callable[[], dict[str, int]]


def xen_struct_ipa(vm: int) -> int:
    """The guest address a shim names as the struct's (one page per VM, below FF-A's)."""
    return XEN_STRUCT_IPA - vm * ffa.PAGE


class Shim(Protocol):
    abi: str
    through: int  # calls sent in the ABI
    native: int  # calls of the ABI's rows it cannot express, sent in pvspec's registers

    def reset(self) -> None: ...

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str,
                  native: Native) -> dict[str, int]: ...


def model_answer(reading: Any, code: int = 0, first: str = "x0", **said: int
                 ) -> dict[str, int]:
    """A codec's reading as the oracle takes a target's answer (in ``first``, the result
    register of the caller's convention): the value and the bits seen, or ``code`` with
    the model errors the ABI's own error may stand for (``said``: that error in the ABI's
    words, ``ffa_error`` or ``errno``)."""
    if reading.ok:
        return {first: reading.value & MASK64, "seen": reading.seen}
    return {first: code & MASK64, "errors": reading.error_mask(), **said}


def _decoded(regs: Mapping[str, int], conv: str, rows: frozenset[str]
             ) -> tuple[str, tuple[int, ...]] | None:
    """The model call ``regs`` make, if the ABI has a form for it.  A hinted id (the SMCCC
    1.3 SVE hint) is the model's own question about the hint, which the standard ABI (whose
    ids carry no such bit) cannot ask: it goes in pvspec's registers."""
    decoded = codec.decode(dict(regs), conv)
    if not isinstance(decoded, codec.Call) or decoded.row.name not in rows or decoded.hinted:
        return None
    return decoded.row.name, tuple(int(a) for a in decoded.args)


class FfaShim:
    """Memory transactions spoken as FF-A v1.1 (spec/hypercalls/ffa.py).

    Two things the codec leaves to the FF-A instance the shim fixes, so that the run is
    judged: where a retrieve maps the region (the model call's ``base``, passed as the
    placement), and the owner a retrieve request names (the sender of the handle's share,
    as the shim saw it succeed).  A retrieve's FFA_MEM_RETRIEVE_RESP is read from the RX
    buffer and must describe what the model's retrieve does (the region, its frames, rights
    and transaction type); the shim then hands the buffer back with FFA_RX_RELEASE.
    """

    abi = "ffa"

    def __init__(self, call: CallFunction, name: str) -> None:
        self._call = call
        self._name = name
        # handle -> (owner, frames, rights, kind) of the send that returned it
        self._sent: dict[int, tuple[int, int, int, str]] = {}
        self.through = 0
        self.native = 0

    def reset(self) -> None:
        self._sent = {}

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str,
                  native: Native) -> dict[str, int]:
        decoded = _decoded(regs, conv, ffa.rows())
        if decoded is None:
            return native()
        row, args = decoded
        sent = self._sent.get(args[0]) if row == "MEM_RETRIEVE" else None
        owner = vm if sent is None else sent[0]
        # FF-A is an arm64 interface: an x86-64 call goes in pvspec's registers
        request = ffa.encode(row, args, vm, owner) if conv == "arm64" else \
            ffa.Inexpressible("FF-A is an Arm interface")
        if isinstance(request, ffa.Inexpressible):
            self.native += 1
            out = native()
            ret = next(iter(out.values()))
            if row in ffa.KIND_OF_ROW and not ret >> 63:
                self._sent[ret] = (vm, args[1], args[3], ffa.KIND_OF_ROW[row])
            return out
        self.through += 1
        place = args[1] if row == "MEM_RETRIEVE" else None
        answer, rx = self._call(vm, vcpu, request.regs, request.tx, place)
        reading = ffa.decode(row, answer, rx, vm)
        if not reading.ok:
            if not reading.code:  # no FFA_ERROR: an answer FF-A does not allow here
                w0 = int(answer.get("x0", 0)) & 0xFFFF_FFFF
                return {"x0": MASK64, "errors": 0, "ffa_w0": w0}
            return model_answer(reading, reading.code, ffa_error=reading.code)
        if row == "MEM_RETRIEVE":
            self._call(vm, vcpu, {"x0": ffa.FUNCTIONS["FFA_RX_RELEASE"]}, b"", None)
            # the response must say what the model's retrieve does: the region mapped at
            # base, with the frames, rights and transaction type of the send (the oracle's
            # probes see the mapping itself)
            said = (reading.base, reading.count, reading.perm, reading.kind)
            value = 0 if sent is not None and said == (args[1], *sent[1:]) else 1
            return {"x0": value, "seen": MASK64}
        if row in ffa.KIND_OF_ROW:
            self._sent[reading.value] = (vm, args[1], args[3], ffa.KIND_OF_ROW[row])
        return model_answer(reading)


class XenShim:
    """Event-channel calls spoken as Xen's ``event_channel_op`` (spec/hypercalls/xen.py):
    the command number and a pointer to its struct in the caller's registers, the struct's
    bytes as the memory the call reads and rewrites, 0 or -errno back."""

    abi = "xen"

    def __init__(self, call: CallFunction, name: str) -> None:
        self._call = call
        self._name = name
        self.through = 0
        self.native = 0

    def reset(self) -> None:
        pass

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str,
                  native: Native) -> dict[str, int]:
        decoded = _decoded(regs, conv, xen.rows())
        if decoded is None:  # not an event-channel call Xen has a command for
            return native()
        row, args = decoded
        op, data = xen.encode(row, args)
        nr, cmd, ptr = xen.GUEST_REGS[conv]
        self.through += 1
        out, mem = self._call(vm, vcpu, {nr: xen.HYPERCALL_EVENT_CHANNEL_OP, cmd: int(op),
                                         ptr: xen_struct_ipa(vm)}, data, None)
        first = "x0" if conv == "arm64" else "rax"
        if first not in out:
            raise TargetError(f"{self._name}: event_channel_op answered without {first}",
                              definite=True)
        rc = int(out[first]) & MASK64
        return xen_answer(row, rc - (1 << 64) if rc >> 63 else rc, mem, first)


def xen_answer(row: str, rc: int, struct: bytes, first: str = "x0") -> dict[str, int]:
    """event_channel_op's return value ``rc`` (signed) and the struct after the call, as
    the oracle takes a target's answer to the model's ``row``: a value Xen's ABI does not
    have (a positive ``rc``) stands for no error the call has."""
    reading = xen.decode(row, rc, struct)
    if not reading.ok and not reading.errno:
        return {first: rc & MASK64, "errors": 0, "xen_rc": rc}
    return model_answer(reading, -reading.errno, first, errno=reading.errno)


# the shim of each ABI an adapter may name in its profile's ``encodings``
SHIMS: dict[str, type[FfaShim] | type[XenShim]] = {"ffa": FfaShim, "xen": XenShim}
