"""Hypothesis drivers of the workload of :mod:`spec.campaign`.

The workload (its moves, aimed choices and garbage registers) is plain code that takes
every choice from a :class:`~spec.campaign.Chooser`; this module is its Hypothesis side:

* :class:`DataChooser` draws the choices from Hypothesis' ``st.data()`` (recorded,
  replayable, shrinkable);
* :func:`make_base` is a state machine holding a :class:`~spec.campaign.Workload` and
  booting it (the conformance oracle builds on it and runs the moves in seeded batch
  programs, :class:`~spec.campaign.RandomChooser`);
* :func:`make_machine` is the spec-only state machine: one rule per move, every choice
  drawn from Hypothesis, every invariant checked after every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from spec import checking, machine
from spec.campaign import MOVES, SIM_CONFIG, Move, StepFailure, Workload, _arg_domain
from spec.hypercalls import abi
from spec.state import Config
from spec.transitions import Caller

__all__ = ["WORD64", "DataChooser", "make_base", "make_machine", "reproducible_generation"]


def reproducible_generation() -> bool:
    """Make a derandomized Hypothesis run depend on its test alone, not on what the process
    imported before it; True if that was needed and done.

    Hypothesis (6.13x on) draws a few values from a pool of constants it collects from
    the project's modules loaded so far, and the pool changes as modules load: the same
    derandomized oracle run chose other calls after another target's run had imported
    more of the project, so CI (tests interleaved on two workers) and a lone run of one
    test disagreed.  The pool is emptied here (Hypothesis' own built-in constants stay).
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:  # pragma: no cover - another Hypothesis layout: nothing to do
        return False
    empty = getattr(providers, "_local_constants", None)
    if empty is None or not hasattr(providers, "_get_local_constants"):
        return False
    fixed = type(empty)()

    def no_local_constants() -> Any:
        return fixed

    providers._get_local_constants = no_local_constants
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None and hasattr(cache, "cache"):
        cache.cache.clear()  # pools computed before, with the modules' constants
    return True


reproducible_generation()

WORD64 = st.integers(0, 2**64 - 1)

T = TypeVar("T")


def _arg_strategy(arg: abi.Arg, cfg: Config) -> st.SearchStrategy[int]:
    """Three times in four an aimed value, else an edge value."""
    hi, shift, edges = _arg_domain(arg, cfg)
    aimed = st.integers(0, hi).map(lambda g: g << shift) if shift else st.integers(0, hi)
    edge = st.sampled_from(edges)
    return st.one_of(aimed, aimed, aimed, edge)


class DataChooser:
    """Choices drawn from Hypothesis' ``st.data()``: recorded, replayable, shrinkable."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def pick(self, seq: Sequence[T], label: str | None = None) -> T:
        return self.data.draw(st.sampled_from(seq), label=label)

    def integer(self, lo: int, hi: int, label: str | None = None) -> int:
        return self.data.draw(st.integers(lo, hi), label=label)

    def boolean(self, label: str | None = None) -> bool:
        return self.data.draw(st.booleans(), label=label)

    def word(self, label: str | None = None) -> int:
        return self.data.draw(WORD64, label=label)

    def arg(self, arg: abi.Arg, cfg: Config, label: str | None = None) -> int:
        return self.data.draw(_arg_strategy(arg, cfg), label=label)


def make_base(cfg: Config = SIM_CONFIG) -> type[RuleBasedStateMachine]:
    """A state machine holding a workload (``self.w``, made by :meth:`new_workload`,
    which subclasses override) and booting it, without rules."""

    class WorkloadMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.w = self.new_workload()

        def new_workload(self) -> Workload:
            return Workload(cfg)

        # the quotas drawn as one list (not through a chooser): as Hypothesis has always
        # drawn them, so generation (and the oracle's derandomized runs) stay the same
        @initialize(quotas=st.lists(st.integers(1, 4), min_size=cfg.n_vms - 1,
                                    max_size=cfg.n_vms - 1))
        def boot(self, quotas: list[int]) -> None:
            self.w.boot_with(quotas)

    return WorkloadMachine


def _move_rule(name: str, fn: Move) -> Any:
    def run(self: Any, data: st.DataObject) -> None:
        fn(self.w, DataChooser(data))

    run.__name__ = run.__qualname__ = name
    run.__doc__ = fn.__doc__
    return rule(data=st.data())(run)


def make_machine(cfg: Config = SIM_CONFIG) -> type[RuleBasedStateMachine]:
    """A fresh state-machine class over ``cfg`` (one per configuration): one rule per
    move of :data:`spec.campaign.MOVES`, every choice drawn from Hypothesis."""

    def garbage(self: Any, vm: int, conv: str, regs: list[int], known: abi.Row) -> None:
        self.w._garbage(vm, conv, regs, known)

    def vcpu_start(self: Any, vm: int, vcpu: int) -> None:
        w = self.w
        s2 = machine.event(w.s, "VCPU_START", vm, vcpu)
        w._apply(Caller(vm, vcpu), None, s2, None, f"event VCPU_START({vm}, {vcpu})")

    def device_irq(self: Any, dev: int) -> None:
        w = self.w
        s2 = machine.event(w.s, "DEVICE_IRQ", dev)
        w._apply(Caller(0, 0), None, s2, None, f"event DEVICE_IRQ({dev})")

    def sound(self: Any) -> None:
        bad = checking.check_state(self.w.s)
        if bad:
            raise StepFailure(", ".join(v.name for v in bad))

    ns: dict[str, Any] = {name: _move_rule(name, fn) for name, fn in MOVES.items()
                          if name != "garbage"}
    ns.update(
        # garbage registers drawn whole from Hypothesis (not word by word): shrinkable
        garbage=rule(vm=st.integers(0, cfg.n_vms - 1),
                     conv=st.sampled_from(["arm64", "x86_64"]),
                     regs=st.lists(WORD64, min_size=7, max_size=7),
                     known=st.sampled_from(abi.TABLE))(garbage),
        vcpu_start=rule(vm=st.integers(0, cfg.n_vms - 1),
                        vcpu=st.integers(0, cfg.n_vcpus - 1))(vcpu_start),
        device_irq=rule(dev=st.integers(0, cfg.n_devices))(device_irq),
        sound=invariant()(sound),
    )
    for name, fn in ns.items():
        fn.__qualname__ = f"HypervisorMachine.{name}"
    return type("HypervisorMachine", (make_base(cfg),), ns)
