"""The reference hypervisor and the spec agree on random hypercall sequences.

Same calls to both (aimed arguments, edge values, garbage registers in both calling
conventions, events); after every step every result register, the abstract state and
every probe (access, dma_access, pending_irqs) must be equal.
"""

from __future__ import annotations

from hypothesis import settings

from spec.campaign import SIM_CONFIG
from spec.hypercalls import abi, codec
from spec.state import Config

from .abstraction import make_differential, run_pair, to_state

TestDifferential = make_differential(SIM_CONFIG).TestCase

# the API's default sizes (the spec's default Config): tighter tables, so more calls hit
# NO_MEMORY and the lowest-free choices; half the examples, as SIM_CONFIG covers the rest
TestDifferentialDefaultConfig = make_differential(Config()).TestCase
TestDifferentialDefaultConfig.settings = settings(TestDifferentialDefaultConfig.settings,
                                                  max_examples=50)


def _call(vm: int, name: str, *args: int, conv: str = "arm64", vcpu: int = 0):
    return vm, vcpu, codec.encode_call(abi.BY_NAME[name], args, conv), conv


def test_initial_state_abstracts_to_spec_initial():
    _, hv, _ = run_pair(SIM_CONFIG, [])
    from spec.state import initial

    assert to_state(hv) == initial(SIM_CONFIG)


def test_lend_retrieve_destroy_owner_orphans_then_frees():
    """A scripted walk through the XSA-218 rule: the owner dies while a borrower maps."""
    calls = [
        _call(0, "VM_CREATE", 1, 3), _call(0, "VM_CREATE", 2, 3),
        _call(1, "MEM_POPULATE", 0, 7), _call(1, "MEM_POPULATE", 1, 7),
        _call(1, "MEM_LEND", 0, 2, 0b100, 3),
        _call(2, "MEM_RETRIEVE", 0, 1),
        _call(1, "MEM_RECLAIM", 0),  # denied: retrieved
        _call(0, "VM_DESTROY", 1),  # orphans the frames
        _call(2, "MEM_RELINQUISH", 0),  # last borrower out frees them
        _call(0, "MEM_POPULATE", 0, 7, conv="x86_64"),
    ]
    s, _, _ = run_pair(SIM_CONFIG, calls)
    assert s.tx_kind == (0,) * SIM_CONFIG.n_tx


def test_donate_moves_ownership_and_event_channels():
    calls = [
        _call(0, "VM_CREATE", 1, 4), _call(0, "VM_CREATE", 2, 4),
        _call(1, "MEM_POPULATE", 2, 5), _call(1, "MEM_POPULATE", 3, 5),
        _call(1, "MEM_DONATE", 2, 2, 0b100, 1), _call(2, "MEM_RETRIEVE", 0, 0),
        _call(1, "EVTCHN_ALLOC_UNBOUND", 2), _call(2, "EVTCHN_BIND_INTERDOMAIN", 1, 0),
        _call(1, "EVTCHN_MASK", 0), _call(2, "EVTCHN_SEND", 0), _call(1, "EVTCHN_STATUS", 0),
        _call(1, "EVTCHN_UNMASK", 0), _call(1, "IRQ_ACK", 0), _call(2, "EVTCHN_CLOSE", 0),
        _call(0, "DEV_ASSIGN", 1, 2), _call(0, "VM_DESTROY", 2),
    ]
    run_pair(SIM_CONFIG, calls)
