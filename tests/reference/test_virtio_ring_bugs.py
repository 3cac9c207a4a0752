"""Planted bugs in the reference virtqueues: the differential machines catch each one.

Each mutant is a copy of :class:`SplitQueue` or :class:`PackedQueue` whose source has one
classic defect edited in (the edit must match the source exactly once, so a mutant
cannot silently go stale).  Running the differential machine of
:mod:`.test_virtio_rings` against it must end in a :class:`Divergence`, which shows that
agreement with the spec model is not vacuous.
"""

from __future__ import annotations

import inspect
import textwrap
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from reference_impl.virtio import packed, split

from .test_virtio_rings import Divergence, PackedDiff, SplitDiff

# (name, module, class, original source fragment, planted replacement, VIRTIO section)
MUTANTS = [
    ("head-bound-off-by-one", split, "SplitQueue",
     "if head >= size:", "if head > size:", "2.7.6"),
    ("next-bound-off-by-one", split, "SplitQueue",
     "if i >= entries:", "if i > entries:", "2.7.5"),
    ("used-idx-wraps-at-size", split, "SplitQueue",
     "used = (used + 1) & 0xFFFF", "used = (used + 1) % size", "2.7.8"),
    ("event-idx-ignored", split, "SplitQueue",
     "if self.event_idx:\n            return need_event(",
     "if False:\n            return need_event(", "2.7.7.2"),
    ("used-idx-before-element", split, "SplitQueue",
     "            head = a16[2 + (last & mask)]\n",
     "            head = a16[2 + (last & mask)]\n"
     "            self._u16[1] = (used + 1) & 0xFFFF\n", "2.7.8.2"),
    ("packed-wrap-not-flipped", packed, "PackedQueue",
     "upos, uw = upos - n, uw ^ 1", "upos, uw = upos - n, uw", "2.8.1"),
    ("packed-used-flags-wrong-wrap", packed, "PackedQueue",
     "(PACKED_AVAIL | PACKED_USED if uw else 0)", "(PACKED_AVAIL | PACKED_USED if not uw else 0)",
     "2.8.21.3"),
    ("packed-event-idx-ignored", packed, "PackedQueue",
     "if mode == EVENT_DESC and self.event_idx:", "if False:", "2.8.10"),
]

# A planted bug needs more runs than the regression profile to be met for sure; no
# shrinking: the point is that a divergence is found, not the smallest one.
HUNT = settings(derandomize=True, max_examples=400, stateful_step_count=60, deadline=None,
                database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def mutant(module: ModuleType, cls: str, old: str, new: str) -> type:
    """A copy of ``module.cls`` with ``old`` replaced by ``new`` in its source."""
    src = textwrap.dedent(inspect.getsource(getattr(module, cls)))
    assert src.count(old) == 1, f"mutation site {old!r} not unique in {cls}"
    namespace = dict(vars(module))
    exec(compile(src.replace(old, new), f"<mutant of {cls}>", "exec"), namespace)
    return namespace[cls]


@pytest.mark.parametrize(("name", "module", "cls", "old", "new", "section"), MUTANTS,
                         ids=[m[0] for m in MUTANTS])
def test_planted_ring_bug_is_caught(name: str, module: ModuleType, cls: str, old: str,
                                    new: str, section: str) -> None:
    base = SplitDiff if cls == "SplitQueue" else PackedDiff
    machine = type(f"Mutant_{name}", (base,), {"queue_cls": mutant(module, cls, old, new)})
    with pytest.raises(Divergence):
        run_state_machine_as_test(machine, settings=HUNT)


def test_unmutated_copy_passes() -> None:
    """The copying itself is faithful: an identity edit is not a divergence."""
    machine = type("Mutant_none", (SplitDiff,), {"queue_cls": mutant(
        split, "SplitQueue", "if head >= size:", "if head >= size:")})
    run_state_machine_as_test(machine, settings=settings(HUNT, max_examples=20))
