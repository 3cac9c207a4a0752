"""The oracle's fast paths for what the spec says a target must show are the definitions.

The Differ compares a target's observation with :class:`~conformance.target.SpecObserver`
(tables recomputed only when a field they read changed, the access table by
:func:`spec.state.access_table`).  Here the target is the spec itself, observed through
:func:`~conformance.target.spec_observation` (``access`` and ``dma_access`` slot by
slot, as spec/state.py defines them), so any step where the fast path differs from the
definition fails the run.
"""

from __future__ import annotations

from conformance import oracle
from conformance.target import Observation, SpecObserver, SpecTarget, spec_observation
from spec import campaign
from spec.state import access, access_table, initial


class _BySlot(SpecTarget):
    def __init__(self) -> None:
        super().__init__()
        self.observed = 0

    def observe(self) -> Observation:
        self.observed += 1
        return spec_observation(self.state)


def test_spec_observer_is_spec_observation_after_every_step() -> None:
    target = _BySlot()
    out = oracle.run_oracle(target, max_examples=10, invariants="off")
    assert out.status == "passed", (out.failure, out.error)
    assert target.observed >= out.steps > 1000


def test_access_table_is_access_slot_by_slot() -> None:
    s = campaign.with_image(initial(campaign.SIM_CONFIG))
    cfg = s.cfg
    s = s.evolve(s2_held=(True, *s.s2_held[1:]))  # the first frame lent away
    want = tuple(access(s, v, g) for v in range(cfg.n_vms) for g in range(cfg.n_gframes))
    assert access_table(s) == want and want[0] == 0 and any(want)
    assert SpecObserver()(s) == spec_observation(s)
