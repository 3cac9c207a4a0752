"""The ring proofs hold on the real kernels and fail, with a counterexample, on broken ones."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from spec.logic import add, sub, ule, ult
from spec.virtio import proofs
from spec.virtio import ring_math as rm


@pytest.mark.parametrize("name", list(proofs.GOALS))
def test_obligation_proves(name: str) -> None:
    result = proofs.obligation(name).run()
    assert result.status == "proved", (result.detail, result.counterexample)
    assert result.group == "virtio"


def test_obligations_are_picklable_and_complete() -> None:
    obs = proofs.obligations()
    assert {o.invariant for o in obs} == set(proofs.GOALS)
    pickle.dumps(obs)


def _need_event_no_wrap(ev: Any, new: Any, old: Any) -> Any:
    """Planted bug: compares free-running indices as plain numbers (no 16-bit wrap)."""
    return rm.and_(ule(old, ev), ult(ev, new))


def _need_event_off_by_one(ev: Any, new: Any, old: Any) -> Any:
    """Planted bug: forgets the ``- 1`` (notifies one position late)."""
    return ult(rm.u16(sub(new, ev)), rm.u16(sub(new, old)))


def _used_elem_addr_no_header(used: Any, i: Any) -> Any:
    """Planted bug: forgets the 4-byte flags/idx header of the used ring."""
    return add(used, rm.word(i * 8) + 2)


def _ring_slot_mod_64k(idx: Any, size: Any) -> Any:
    """Planted bug: slot taken from 17 bits, so it does not stay below the size."""
    return idx & add(size, size)


def _is_available_ignores_used(flags: Any, wrap: Any) -> Any:
    """Planted bug: looks at AVAIL only, so a just-used descriptor looks available."""
    return rm.iff(rm.bit(flags, rm.AVAIL_BIT), wrap)


def _advance_no_flip(idx: Any, wrap: Any, n: Any, step: Any = 1) -> Any:
    nxt = add(idx, step)
    over = ule(n, nxt)
    return rm.ite(over, sub(nxt, n), nxt), wrap


def _packed_need_event_ignores_wrap(word: Any, new: Any, new_wrap: Any, added: Any, n: Any):
    return rm.vring_need_event(rm.event_off(word), new, rm.u16(sub(new, added)))


def _avail_size_short(n: Any) -> Any:
    return add(4, rm.word(n * 2))  # forgets used_event


MUTANTS: list[tuple[str, str, Callable[..., Any]]] = [
    ("need-event-window", "vring_need_event", _need_event_no_wrap),
    ("need-event-window", "vring_need_event", _need_event_off_by_one),
    ("split-addresses-inside-parts", "used_elem_addr", _used_elem_addr_no_header),
    ("split-addresses-inside-parts", "avail_ring_size", _avail_size_short),
    ("idx16-wrap", "ring_slot", _ring_slot_mod_64k),
    ("packed-wrap-flags", "is_available", _is_available_ignores_used),
    ("packed-advance", "packed_advance", _advance_no_flip),
    ("packed-need-event", "packed_need_event", _packed_need_event_ignores_wrap),
]


@pytest.mark.parametrize(("name", "kernel", "fn"), MUTANTS,
                         ids=[f"{n}-{f.__name__}" for n, _, f in MUTANTS])
def test_mutated_kernel_fails(name: str, kernel: str, fn: Callable[..., Any]) -> None:
    result = proofs.obligation(name, proofs.mutated(**{kernel: fn})).run()
    assert result.status == "failed", result
    assert isinstance(result.counterexample, dict) and result.counterexample
