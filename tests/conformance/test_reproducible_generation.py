"""A derandomized oracle run depends on its test alone: Hypothesis' pool of constants
collected from the project's loaded modules (which grows as modules load, so the same run
chose other calls after another run had imported more) is emptied by
:func:`conformance.drivers.reproducible_generation`.  The planted case hands Hypothesis a
pool with constants in it, as importing a module would: the run changes, so the fix is
what keeps it the same."""

from __future__ import annotations

import pytest
from hypothesis.internal.conjecture import providers

from conformance import oracle
from conformance.target import ReferenceTarget

NEW_CONSTANTS = range(2**40, 2**40 + 4096, 7)  # as a newly imported module might hold


def _run() -> tuple[str, int, int]:
    out = oracle.run_oracle(ReferenceTarget(), profile="ci", max_examples=8)
    return out.status, out.examples, out.steps


def _constants_in_use() -> None:
    providers.CONSTANTS_CACHE.cache.clear()


def test_a_run_does_not_depend_on_what_was_imported_before() -> None:
    first = _run()
    # what importing a module with constants does to Hypothesis' own pool
    providers._local_constants.integers.update(NEW_CONSTANTS)
    _constants_in_use()
    try:
        assert _run() == first
    finally:
        providers._local_constants.integers.difference_update(NEW_CONSTANTS)


def test_planted_a_pool_in_use_changes_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run()
    pool = type(providers._local_constants)()
    pool.integers.update(NEW_CONSTANTS)
    monkeypatch.setattr(providers, "_get_local_constants", lambda: pool)
    _constants_in_use()
    try:
        assert _run() != first
    finally:
        _constants_in_use()
