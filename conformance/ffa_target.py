"""The reference implementation speaking FF-A v1.1 memory management as a conformance
target (``reference-ffa``): ``reference_impl``'s hypervisor behind its FF-A front end
(``reference_impl/_ffa.py``), judged through the codec of :mod:`spec.hypercalls.ffa` with
the model as the oracle.

The oracle asks for model calls; for the six memory-transaction calls the shim sends
what the codec makes of them -- FF-A registers and the descriptor in the caller's TX
buffer -- and reads the front end's answer back through the codec: FFA_SUCCESS's handle
(w2 low, w3 high), FFA_ERROR's code (w2) as the model errors it stands for, and a
retrieve's FFA_MEM_RETRIEVE_RESP from the RX buffer (whose ownership the shim then hands
back with FFA_RX_RELEASE).  Everything else, and a transaction the codec says FF-A cannot
express (rights with X, a donation with other rights than R|W), goes to the hypervisor
in pvspec's own registers, as on ``reference``; :attr:`ReferenceFfaTarget.native` counts
those.  Two things the codec leaves to the FF-A instance the shim fixes so that the run
is judged: where a retrieve maps the region (the model call's ``base``, given to the front
end as its placement), and the owner a retrieve request names (the sender of the
handle's share, as the shim saw it succeed).  The RX/TX buffer pairs are in place from
the start (far above the model's frames), as a boot-time FFA_RXTX_MAP would leave them.

Malformed descriptors are judged apart from the oracle (the model has no call for them):
:func:`judge_malformed` sends a descriptor and holds the front end's FFA_ERROR to the
codes the codec's rule allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conformance.target import ReferenceTarget, TargetError
from spec.hypercalls import codec, ffa
from spec.state import Config

__all__ = ["BUFFER_IPA", "ReferenceFfaTarget", "judge_malformed"]

MASK64 = (1 << 64) - 1
BUFFER_IPA = 1 << 40  # RX/TX buffers: far above every model frame (they are 4 KiB pages)
BUFFER_PAGES = 1


class ReferenceFfaTarget(ReferenceTarget):
    """``reference_impl.Hypervisor`` with its memory transactions spoken as FF-A."""

    name = "reference-ffa"

    def __init__(self, implementation: type | None = None, front_end: type | None = None
                 ) -> None:
        """``front_end``: a ``reference_impl._ffa.FfaFrontEnd`` subclass to run instead
        (a planted bug, say)."""
        super().__init__(implementation)
        from reference_impl._ffa import FfaFrontEnd

        self._front_cls = front_end or FfaFrontEnd
        self._front: Any = None
        # handle -> (owner, frames, rights, kind) of the send that returned it
        self._sent: dict[int, tuple[int, int, int, str]] = {}
        self.native = 0  # model calls sent in pvspec's registers (no FF-A form)
        self.through_ffa = 0

    def reset(self, config: Config) -> None:
        super().reset(config)
        self._front = self._front_cls(self._hv)
        self._sent = {}
        for vm in range(config.n_vms):  # the buffers are the front end's, not the model's
            tx = BUFFER_IPA + 2 * vm * BUFFER_PAGES * ffa.PAGE
            self._front.buffers[vm] = (tx, tx + BUFFER_PAGES * ffa.PAGE, BUFFER_PAGES)

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        decoded = codec.decode(dict(regs), conv)
        if not isinstance(decoded, codec.Call) or decoded.row.name not in ffa.rows() \
                or decoded.hinted:
            # a hinted id is the model's SMCCC question (unknown before SMCCC 1.3), which
            # FF-A's front end, ignoring the hint as FF-A ids do, would not ask
            return super().hypercall(vm, vcpu, regs, conv)
        row = decoded.row.name
        args = tuple(int(a) for a in decoded.args)
        sent = self._sent.get(args[0]) if row == "MEM_RETRIEVE" else None
        owner = vm if sent is None else sent[0]
        # FF-A is an arm64 interface: an x86-64 call goes in pvspec's registers
        request = ffa.encode(row, args, vm, owner) if conv == "arm64" else \
            ffa.Inexpressible("FF-A is an Arm interface")
        if isinstance(request, ffa.Inexpressible):
            self.native += 1
            out = super().hypercall(vm, vcpu, regs, conv)
            ret = next(iter(out.values()))
            if row in ffa.KIND_OF_ROW and not ret >> 63:
                self._sent[ret] = (vm, args[1], args[3], ffa.KIND_OF_ROW[row])
            return out
        self.through_ffa += 1
        if row == "MEM_RETRIEVE":
            base = args[1]
            self._front.place = lambda _vm, _handle: base
        out, rx = self._guard(lambda: self._front.call(vm, vcpu, request.regs, request.tx))
        reading = ffa.decode(row, out, rx, vm)
        if not reading.ok:
            if not reading.code:  # no FFA_ERROR: an answer FF-A does not allow here
                raise TargetError(f"{self.name}: {reading.text}", definite=True)
            return {"x0": reading.code & MASK64, "errors": reading.error_mask(),
                    "ffa_error": reading.code}
        if row == "MEM_RETRIEVE":
            self._guard(lambda: self._front.call(vm, vcpu, {"x0": ffa.FUNCTIONS[
                "FFA_RX_RELEASE"]}))
            # the response must say what the model's retrieve does: the region mapped at
            # base, with the frames, rights and transaction type of the send (the oracle's
            # probes see the mapping itself)
            said = (reading.base, reading.count, reading.perm, reading.kind)
            value = 0 if sent is not None and said == (args[1], *sent[1:]) else 1
            return {"x0": value, "seen": MASK64}
        if row in ffa.KIND_OF_ROW:
            self._sent[reading.value] = (vm, args[1], args[3], ffa.KIND_OF_ROW[row])
        return {"x0": reading.value & MASK64, "seen": reading.seen}


def judge_malformed(front: Any, vm: int, vcpu: int, function: str, data: bytes,
                    kind: ffa.Kind) -> str | None:
    """Send ``data`` as the descriptor of ``function`` from ``vm``: None if the front
    end's answer is one the codec allows, else what is wrong."""
    regs = {"x0": ffa.FUNCTIONS[function], "x1": len(data), "x2": len(data), "x3": 0,
            "x4": 0}
    expected = ffa.parse_transaction(data, len(data), kind)
    if isinstance(expected, ffa.Descriptor):
        expected_call = ffa.to_model(expected, kind, vm) if kind in ffa.SEND_KINDS \
            else None
        if not isinstance(expected_call, ffa.Violation):
            return None  # well-formed: judged by the model in the oracle's run
        expected = expected_call
    out, _rx = front.call(vm, vcpu, regs, data)
    reading = ffa.decode(ffa.ROW_OF_KIND.get(kind, "MEM_RETRIEVE"), out, b"", vm)
    if not reading.ok and reading.code in expected.codes:
        return None
    allowed = " or ".join(ffa.ERROR_NAME[c] for c in sorted(expected.codes, reverse=True))
    return (f"{function} with a descriptor breaking {expected.rule} ({expected.clause}): "
            f"FF-A requires FFA_ERROR {allowed}; the answer was {reading.text}")
