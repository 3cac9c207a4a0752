"""Implementation-defined answers of the firmware ABIs, stated as data: a :class:`Profile`.

PSCI and SMCCC leave some answers to the implementation -- which optional functions exist,
which versions it reports, whether CPU_ON checks the entry address, which affinity levels
AFFINITY_INFO accepts, what the CPU-erratum workaround queries say.  The model's
transitions read them from ``s.cfg.profile``, so one text serves every implementation:

* the model takes :data:`DEFAULT` (the strictest reading, and what the reference
  implementation and the C example do);
* an oracle that does not know the target's profile starts with the dimensions *unbound*
  and binds each one the first time an answer depends on it (it tries the allowed values,
  default first, on the calls in the dimension's ``rows``); from then on the target is held
  to that value -- an implementation does not change its mind;
* a target may declare values in its profile (protocol 1.1 ``init_ok``) and is then held
  to them from the first call;
* proofs run for every allowed value of every dimension (tests/hypervisor/test_proofs.py).

A dimension's ``values`` are exactly the allowed set the cited clause permits.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["DEFAULT", "DIMENSIONS", "HINTED", "Dimension", "Profile", "get", "hint_honoured",
           "offers", "parse_value", "render_value", "with_value"]


@attrs.frozen
class Profile:
    """One implementation's choices.  ``None`` means "not implemented" where the function
    itself is optional."""

    psci_version: int = 0x10001  # PSCI 1.1
    smccc_version: int | None = 0x10001  # None: SMCCC 1.0, which has no SMCCC_VERSION
    migrate_info_type: int | None = 2  # None: MIGRATE_INFO_TYPE not implemented
    # SMCCC_ARCH_FEATURES answers for ARCH_WORKAROUND_1, _2, _3 (spec.hypercalls.abi)
    workarounds: tuple[int, int, int] = (-1, -1, -1)
    affinity_levels: int = 0  # the highest lowest_affinity_level AFFINITY_INFO accepts
    entry_check: bool = True  # CPU_ON refuses an entry point the caller cannot execute
    # CPU_SUSPEND power states the platform accepts, by class: bit 0 standby at level 0,
    # bit 1 power-down at level 0, bit 2 standby above level 0, bit 3 power-down above it
    suspend_states: int = 0xF
    # SMCCC_ARCH_FEATURES asked about SMCCC_VERSION or SMCCC_ARCH_FEATURES themselves
    arch_features_self: int = 0
    # SYSTEM_RESET2 (optional): None when not implemented; else the answer to a
    # vendor-specific reset type -- 0 the reset happens (no return), or the error
    # (INVALID_PARAMETERS -2, NOT_SUPPORTED -1) for a type the platform does not have
    system_reset2: int | None = None
    # Event channels (Xen event_channel.h leaves these open; pvspec's own ABI takes the
    # strict reading): a port offered to, and bound by, the offering VM itself ...
    evtchn_loopback: bool = False
    # ... an offer naming a domain that does not exist (yet) ...
    evtchn_any_remote: bool = False
    # ... EVTCHNOP_send on a port nobody has bound yet (the event is dropped) ...
    evtchn_send_unbound: bool = False
    # ... EVTCHNOP_unmask of a closed port (nothing to unmask) succeed.
    evtchn_unmask_closed: bool = False


DEFAULT = Profile()


@attrs.frozen
class Dimension:
    name: str  # a field of Profile
    values: tuple[Any, ...]  # the allowed set, the default first
    rows: frozenset[str]  # the calls whose answer can depend on it
    clause: str
    meaning: str
    # the ABI whose text leaves the answer open ("" for the firmware ABIs, whose calls a
    # target speaks as they are): a target speaking the calls in another ABI (pvspec's
    # own, which defines the answer) is held to the first value
    abi: str = ""


# Not a row: any call whose function id carries the SVE hint bit (its answer depends on
# the SMCCC version as well as on the row it names)
HINTED = "(SVE hint)"
_WA = (-1, 0, 1, -2)  # not supported, required, not needed, not required (SMCCC 1.2+)

DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("psci_version", (0x10001, 0x10000), frozenset({"PSCI_VERSION"}),
              "PSCI DEN0022 5.1.1 (1.0 and 1.1 define the same calls this table has)",
              "the PSCI version reported: 1.0 or 1.1"),
    Dimension("smccc_version", (0x10001, 0x10002, 0x10003, 0x10004, 0x10005, None),
              frozenset({"SMCCC_VERSION", "SMCCC_ARCH_FEATURES", "PSCI_FEATURES", HINTED}),
              "SMCCC DEN0028 SMCCC_VERSION (absent in SMCCC 1.0; PSCI DEN0022 5.1.14 "
              "discovers it through PSCI_FEATURES; from SMCCC 1.3 bit 16 of every "
              "function id is the SVE hint, 2.5)",
              "the SMCCC version, or None for SMCCC 1.0 without SMCCC_VERSION"),
    Dimension("migrate_info_type", (2, 0, 1, None),
              frozenset({"MIGRATE_INFO_TYPE", "PSCI_FEATURES"}),
              "PSCI DEN0022 5.1.7 (optional; 2 when no Trusted OS needs migration)",
              "MIGRATE_INFO_TYPE's answer, or None when it is not implemented"),
    *(Dimension(f"workarounds[{i}]", _WA, frozenset({"SMCCC_ARCH_FEATURES"}),
                "SMCCC DEN0028 SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_" + str(i + 1),
                f"SMCCC_ARCH_FEATURES(ARCH_WORKAROUND_{i + 1})")
      for i in range(3)),
    Dimension("affinity_levels", (0, 1, 2, 3), frozenset({"AFFINITY_INFO", "AFFINITY_INFO_32"}),
              "PSCI DEN0022 5.1.5 (support for lowest_affinity_level > 0 is optional from "
              "PSCI 1.0; an unsupported level is INVALID_PARAMETERS)",
              "the highest lowest_affinity_level AFFINITY_INFO accepts"),
    Dimension("entry_check", (True, False), frozenset({"CPU_ON", "CPU_ON_32"}),
              "PSCI DEN0022 5.1.4 (INVALID_ADDRESS when the implementation knows the entry "
              "point to be invalid; an implementation that does not check starts the core "
              "there)",
              "CPU_ON refuses an entry point the caller cannot execute"),
    Dimension("suspend_states", (0xF, *range(0xF)),
              frozenset({"CPU_SUSPEND", "CPU_SUSPEND_32"}),
              "PSCI DEN0022 5.1.2, 5.4 (the power states are the platform's; an unsupported "
              "one is INVALID_PARAMETERS)",
              "CPU_SUSPEND states accepted: bit 0 standby, bit 1 power-down (level 0); "
              "bits 2, 3 the same above level 0"),
    Dimension("system_reset2", (None, 0, -2, -1),
              frozenset({"SYSTEM_RESET2", "SYSTEM_RESET2_32", "PSCI_FEATURES"}),
              "PSCI DEN0022 5.1.11 (SYSTEM_RESET2 is optional, discovered through "
              "PSCI_FEATURES; vendor-specific reset types, bit 31 set, are the platform's)",
              "SYSTEM_RESET2: None not implemented; else what a vendor reset type does: 0 "
              "resets, -2 INVALID_PARAMETERS, -1 NOT_SUPPORTED"),
    Dimension("arch_features_self", (0, -1), frozenset({"SMCCC_ARCH_FEATURES"}),
              "SMCCC DEN0028 SMCCC_ARCH_FEATURES (whether SMCCC_VERSION and "
              "SMCCC_ARCH_FEATURES themselves may be queried is read both ways: Trusted "
              "Firmware-A answers 0, Linux KVM NOT_SUPPORTED; docs/findings.md)",
              "SMCCC_ARCH_FEATURES(SMCCC_VERSION or SMCCC_ARCH_FEATURES)"),
    Dimension("evtchn_loopback", (False, True),
              frozenset({"EVTCHN_ALLOC_UNBOUND", "EVTCHN_BIND_INTERDOMAIN"}),
              "Xen event_channel.h EVTCHNOP_alloc_unbound / EVTCHNOP_bind_interdomain (the "
              "remote domain may be DOMID_SELF; nothing says it must be another domain)",
              "a VM may offer a port to itself and bind it (a loopback channel)", abi="xen"),
    Dimension("evtchn_any_remote", (False, True), frozenset({"EVTCHN_ALLOC_UNBOUND"}),
              "Xen event_channel.h EVTCHNOP_alloc_unbound (remote_dom names the domain "
              "allowed to bind; nothing says it must exist when the port is offered)",
              "EVTCHN_ALLOC_UNBOUND accepts any remote id below DOMID_FIRST_RESERVED "
              "(0x7FF0), live or not", abi="xen"),
    Dimension("evtchn_send_unbound", (False, True), frozenset({"EVTCHN_SEND"}),
              "Xen event_channel.h EVTCHNOP_send (sends to the remote end of the channel; "
              "an unbound port has none, and the header does not say whether that is an "
              "error or a notification lost)",
              "EVTCHN_SEND on an unbound port succeeds and changes nothing", abi="xen"),
    Dimension("evtchn_unmask_closed", (False, True), frozenset({"EVTCHN_UNMASK"}),
              "Xen event_channel.h EVTCHNOP_unmask (unmasks 'the specified local port'; "
              "whether a closed one is an error is not said)",
              "EVTCHN_UNMASK on a closed port (in range) succeeds and changes nothing", abi="xen"),
)
DOMID_FIRST_RESERVED = 0x7FF0  # Xen xen.h: ids from here on are not domains (DOMID_SELF...)
BY_NAME = {d.name: d for d in DIMENSIONS}


def offers(profile: Profile, row: str) -> bool:
    """Whether an implementation with ``profile`` has the call ``row`` at all (the
    optional ones: MIGRATE_INFO_TYPE, SYSTEM_RESET2, and SMCCC 1.0 has neither
    SMCCC_VERSION nor SMCCC_ARCH_FEATURES)."""
    if row == "MIGRATE_INFO_TYPE":
        return profile.migrate_info_type is not None
    if row.startswith("SYSTEM_RESET2"):
        return profile.system_reset2 is not None
    if row in ("SMCCC_VERSION", "SMCCC_ARCH_FEATURES"):
        return profile.smccc_version is not None
    return True


HINT_FROM_SMCCC = 0x10003  # SMCCC 1.3 made bit 16 of a function id the SVE hint


def hint_honoured(profile: Profile) -> bool:
    """Whether a function id with the SVE hint bit set names the call its other bits name
    (SMCCC 1.3 or later) rather than an unknown function (the bit was reserved before)."""
    v = profile.smccc_version
    return v is not None and v >= HINT_FROM_SMCCC


def get(profile: Profile, name: str) -> Any:
    """A dimension's value in ``profile`` (``workarounds[i]`` indexes the tuple)."""
    if name.startswith("workarounds["):
        return profile.workarounds[int(name[12:-1])]
    return getattr(profile, name)


def with_value(profile: Profile, name: str, value: Any) -> Profile:
    """``profile`` with one dimension changed."""
    if name.startswith("workarounds["):
        i = int(name[12:-1])
        w = list(profile.workarounds)
        w[i] = value
        return attrs.evolve(profile, workarounds=(w[0], w[1], w[2]))
    return attrs.evolve(profile, **{name: value})


def render_value(value: Any) -> str:
    """A dimension value as a profile string (what :func:`parse_value` reads back)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return hex(value) if value >= 0 else str(value)


def parse_value(name: str, text: Any) -> Any:
    """A declared value (from a target's profile: JSON) as the dimension's type; raises
    ValueError unless it is in the dimension's allowed set."""
    dim = BY_NAME[name]
    if isinstance(text, str):
        t = text.strip().lower()
        value: Any = None if t in ("none", "absent", "not-implemented") else \
            True if t == "true" else False if t == "false" else int(t, 0)
    else:
        value = text
    if value not in dim.values:
        raise ValueError(f"profile {name}={text!r} is outside the allowed set "
                         f"{list(dim.values)} ({dim.clause})")
    return value
