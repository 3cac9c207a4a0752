"""Encodings shared by the handler modules: sentinels, enums, flag bits, error words.

The sentinels and enum numbers are the hypervisor's own state encoding; they match the
spec's because they are observable (EVTCHN_STATUS returns ``remote << 16`` with
``NONE`` for "nobody") and because :meth:`Hypervisor.abstract` must reproduce the spec
state exactly.  Error values come from the generated ABI constants.
"""

from __future__ import annotations

from reference_impl._abi_constants import HV_ERRORS, PSCI_ERRORS, SMCCC_ERRORS

MASK64 = (1 << 64) - 1

NONE = FREE = 0xFFFF
HYP, ORPHAN = 0xFFFE, 0xFFFD
CONTROL = 0
ABSENT, RUNNING, PAUSED = 0, 1, 2
OFF, ON_PENDING, ON = 0, 1, 2
CLOSED, UNBOUND, INTERDOMAIN = 0, 1, 2
TX_FREE, SHARE, LEND, DONATE = 0, 1, 2, 3

# one byte of stage-2 flags per guest frame: permission bits, valid, held
PERM_BITS, VALID, HELD = 0x07, 0x08, 0x10


def _words(space: dict[str, int]) -> dict[str, int]:
    return {name: value & MASK64 for name, value in space.items()}


PSCI = _words(PSCI_ERRORS)
HV = _words(HV_ERRORS)
# SMCCC's architecture calls have no DENIED: a call from a vCPU that cannot make one is
# answered NOT_SUPPORTED there
SMCCC = {**_words(SMCCC_ERRORS), "DENIED": _words(SMCCC_ERRORS)["NOT_SUPPORTED"]}
SPACES = {"psci": PSCI, "hv": HV, "smccc": SMCCC}

P_INV, P_DEN = PSCI["INVALID_PARAMETERS"], PSCI["DENIED"]
P_INV_ADDR, P_ALREADY_ON, P_ON_PENDING = (
    PSCI["INVALID_ADDRESS"], PSCI["ALREADY_ON"], PSCI["ON_PENDING"])
H_INV, H_DEN, H_NOMEM = HV["INVALID_PARAMETERS"], HV["DENIED"], HV["NO_MEMORY"]
NOT_SUPPORTED = HV["NOT_SUPPORTED"]
