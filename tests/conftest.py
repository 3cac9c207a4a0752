"""Hypothesis profiles for the whole test suite.

* ``ci`` (default): derandomized, so a failure in CI reproduces exactly on any machine;
  modest example counts to keep the run well inside the CI budget.
* ``thorough``: random seeds and many more examples, for long campaigns
  (``HYPOTHESIS_PROFILE=thorough pytest -n auto``).
* ``dev``: random seeds at Hypothesis' defaults.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.internal.conjecture import providers

from conformance.drivers import reproducible_generation

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
# derandomized runs depend on their test alone, not on what the worker imported before
assert reproducible_generation() or not hasattr(providers, "_get_local_constants")


_SLOW_FIRST = ("tests/hypervisor/test_proofs.py", "tests/hypervisor/test_planted_bugs.py")


def pytest_collection_modifyitems(config, items):
    """Start the long proofs first so pytest-xdist keeps both cores busy to the end."""
    items.sort(key=lambda item: not item.nodeid.startswith(_SLOW_FIRST))
