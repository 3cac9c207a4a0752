"""The reference implementation speaking standard ABIs as conformance targets:
``reference-ffa`` (its memory transactions as FF-A v1.1, through ``reference_impl/_ffa.py``)
and ``reference-xen`` (its event channels as Xen's ``event_channel_op``, through
``reference_impl/_xen.py``), judged through the codecs of :mod:`spec.hypercalls` with the
model as the oracle (:mod:`conformance.codec_shim` does the translating; an exec adapter
with the ``abi_call`` capability is judged by the same shims).

Everything the ABI has no form for goes to the hypervisor in pvspec's own registers, as on
``reference``.  Each VM's FF-A RX/TX buffer pair is in place from the reset on (far above
the model's frames), as a boot-time FFA_RXTX_MAP would leave it.

Malformed FF-A descriptors are judged apart from the oracle (the model has no call for
them): :func:`judge_malformed` sends a descriptor and holds the answer to the FFA_ERROR
codes the codec's rule allows.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from conformance.codec_shim import BUFFER_IPA, SHIMS, CallFunction, Shim
from conformance.target import MODEL_PROFILE, ReferenceTarget
from spec.hypercalls import ffa
from spec.state import Config

__all__ = ["BUFFER_IPA", "ReferenceFfaTarget", "ReferenceXenTarget", "front_call",
           "judge_malformed"]

BUFFER_PAGES = 1
# the spec's own choices, with the model's memory transactions / event channels spoken in
# the standard ABI (the profile key an exec adapter declares for the same)
_FFA_PROFILE = {**MODEL_PROFILE, "encodings": "ffa"}
_XEN_PROFILE = {**MODEL_PROFILE, "encodings": "xen"}


def front_call(front: Any) -> CallFunction:
    """A ``reference_impl`` front end's ``call`` as a shim's call function."""

    def call(vm: int, vcpu: int, regs: dict[str, int], memory: bytes, place: int | None
             ) -> tuple[Mapping[str, int], bytes]:
        if place is not None:
            front.place = lambda _vm, _handle: place
        return front.call(vm, vcpu, regs, memory)  # type: ignore[no-any-return]

    return call


class _ReferenceAbiTarget(ReferenceTarget):
    """``reference_impl.Hypervisor`` behind one of its standard-ABI front ends: ``abi``
    names the shim (conformance/codec_shim.py), ``front_end`` the front end's class."""

    abi = ""
    front_end = ""  # "module:Class"

    def __init__(self, implementation: type | None = None, front_end: type | None = None
                 ) -> None:
        """``front_end``: a front-end class to run instead (a planted bug, say)."""
        super().__init__(implementation)
        module, cls = self.front_end.split(":")
        self._front_cls = front_end or getattr(importlib.import_module(module), cls)
        self._front: Any = None
        self._call: CallFunction | None = None
        self._shim: Shim = SHIMS[self.abi](self._guarded_call, self.name)

    @property
    def native(self) -> int:
        """Model calls of the ABI's rows sent in pvspec's registers (no form in the ABI)."""
        return self._shim.native

    @property
    def through_abi(self) -> int:
        return self._shim.through

    def encoded(self) -> dict[str, tuple[int, int]]:
        """(calls sent in the ABI, calls of its rows it has no form for)."""
        return {self._shim.abi: (self._shim.through, self._shim.native)}

    def reset(self, config: Config) -> None:
        super().reset(config)
        self._front = self._front_cls(self._hv)
        self._call = front_call(self._front)
        self._shim.reset()

    def _guarded_call(self, vm: int, vcpu: int, regs: dict[str, int], memory: bytes,
                      place: int | None) -> tuple[Mapping[str, int], bytes]:
        call = self._call
        assert call is not None, "a call before reset"
        return self._guard(lambda: call(vm, vcpu, regs, memory, place))  # type: ignore[no-any-return]

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        return self._shim.hypercall(vm, vcpu, regs, conv,
                                    lambda: super(_ReferenceAbiTarget, self).hypercall(
                                        vm, vcpu, regs, conv))


class ReferenceFfaTarget(_ReferenceAbiTarget):
    """``reference_impl.Hypervisor`` with its memory transactions spoken as FF-A."""

    name = "reference-ffa"
    profile = _FFA_PROFILE
    abi = "ffa"
    front_end = "reference_impl._ffa:FfaFrontEnd"

    @property
    def through_ffa(self) -> int:
        return self._shim.through

    def reset(self, config: Config) -> None:
        super().reset(config)
        for vm in range(config.n_vms):  # the buffers are the front end's, not the model's
            tx = BUFFER_IPA + 2 * vm * BUFFER_PAGES * ffa.PAGE
            self._front.buffers[vm] = (tx, tx + BUFFER_PAGES * ffa.PAGE, BUFFER_PAGES)


class ReferenceXenTarget(_ReferenceAbiTarget):
    """``reference_impl.Hypervisor`` with its event channels spoken as Xen's."""

    name = "reference-xen"
    profile = _XEN_PROFILE
    abi = "xen"
    front_end = "reference_impl._xen:XenFrontEnd"


def judge_malformed(call: CallFunction, vm: int, vcpu: int, function: str, data: bytes,
                    kind: ffa.Kind, stale: bytes = b"") -> str | None:
    """Send ``data`` as the descriptor of ``function`` from ``vm`` through ``call``: None
    if the answer is one the codec allows, else what is wrong.  ``stale``: bytes left in
    the TX buffer after the descriptor (past the length the call states), which a front
    end must not read."""
    regs = {"x0": ffa.FUNCTIONS[function], "x1": len(data), "x2": len(data), "x3": 0,
            "x4": 0}
    expected = ffa.parse_transaction(data, len(data), kind)
    if isinstance(expected, ffa.Descriptor):
        expected_call = ffa.to_model(expected, kind, vm) if kind in ffa.SEND_KINDS \
            else None
        if not isinstance(expected_call, ffa.Violation):
            return None  # well-formed: judged by the model in the oracle's run
        expected = expected_call
    out, _rx = call(vm, vcpu, regs, data + stale, None)
    reading = ffa.decode(ffa.ROW_OF_KIND.get(kind, "MEM_RETRIEVE"), out, b"", vm)
    if not reading.ok and reading.code in expected.codes:
        return None
    allowed = " or ".join(ffa.ERROR_NAME[c] for c in sorted(expected.codes, reverse=True))
    return (f"{function} with a descriptor breaking {expected.rule} ({expected.clause}): "
            f"FF-A requires FFA_ERROR {allowed}; the answer was {reading.text}")
