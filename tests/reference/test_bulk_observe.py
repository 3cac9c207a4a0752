"""``Hypervisor.observe()`` answers every probe at once; it must answer what the probes do.

The conformance oracle reads the in-process reference through the bulk call (one call a
step instead of ~30), so the bulk call is checked against the three probe methods after
every step of an oracle run, and an implementation that redefines a probe must still be
observed through the probe it redefined.
"""

from __future__ import annotations

from conformance import oracle
from conformance.target import Observation, ReferenceTarget
from reference_impl import Hypervisor
from reference_impl._common import PERM_BITS, VALID


class _BothWays(ReferenceTarget):
    """Observes through the bulk call and probe by probe, and requires them equal."""

    def __init__(self) -> None:
        super().__init__()
        self.compared = 0

    def _observe(self) -> Observation:
        assert self._bulk
        bulk = super()._observe()
        self._bulk = False
        try:
            probed = super()._observe()
        finally:
            self._bulk = True
        assert bulk == probed
        self.compared += 1
        return bulk


def test_bulk_observation_equals_every_probe_after_every_step() -> None:
    target = _BothWays()
    out = oracle.run_oracle(target, max_examples=5, invariants="off")
    assert out.status == "passed", (out.failure, out.error)
    assert target.compared >= out.steps > 500


def test_bulk_observation_covers_absent_vms_and_unassigned_devices() -> None:
    hv = Hypervisor(n_vms=3, n_vcpus=2, n_gframes=3, n_devices=2)
    acc, dma, irq = hv.observe()
    assert len(acc) == 9 and len(dma) == 6 and len(irq) == 6
    hv.s2_flags[0][1] = VALID | PERM_BITS  # the control VM maps gfn 1, rwx
    hv.dev_owner[1] = 0
    hv.irq[3] = 5
    acc, dma, irq = hv.observe()
    assert acc == tuple(hv.access(v, g) for v in range(3) for g in range(3))
    assert acc[1] == 7 and dma == (0, 0, 0, 0, 7, 0) and irq[3] == 5


class _LeakyProbe(Hypervisor):
    """A planted bug in a probe: every VM sees the control VM's frame 0."""

    def access(self, vm: int, gfn: int) -> int:
        return super().access(0 if gfn == 0 else vm, gfn)


def test_a_redefined_probe_is_observed_through_itself() -> None:
    assert ReferenceTarget()._bulk
    leaky = ReferenceTarget(_LeakyProbe)
    assert not leaky._bulk
    out = oracle.run_oracle(leaky, max_examples=20, invariants="off")
    assert out.status == "failed" and out.failure is not None
    assert out.failure.kind == "observation", out.failure
