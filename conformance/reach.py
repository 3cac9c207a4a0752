"""How far a run reached: what the workload actually sent and what state it was sent in.

A passed run is only as strong as the cases it produced.  Every oracle run counts, per ABI
row, the calls sent, those that succeeded and each error; per state feature, how often a
call met it (how many VMs were live, a paused VM, the caller vCPU's power state, a
transaction with several borrowers or pages, a port reused after it was closed, a masked
port with an event pending); per register field, how often it held a boundary value (0,
1, its maximum, the sign bit of the register).  Reports show the figures and tests put
floors on them, so a workload that stops reaching a case fails a test instead of
silently judging less.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from spec import profile as spec_profile
from spec.hypercalls import abi, codec
from spec.state import INTERDOMAIN, ON, ON_PENDING, PAUSED, State

__all__ = ["FLOORS", "Reach", "unmet_floors"]

_POWER = {0: "OFF", ON: "ON", ON_PENDING: "ON_PENDING"}
_TX_ROWS = frozenset({"MEM_SHARE", "MEM_LEND", "MEM_DONATE"})
# Keys and lookups made once, not per call: the oracle counts every one of its ~20k calls
# a second, and this bookkeeping must stay a small part of a step.
_LIVE_KEY = [f"live VMs: {n}" for n in range(65)]
_CALLER_KEY = {p: f"caller vCPU {name}" for p, name in _POWER.items()}
_ERROR_NAME = {space: {c: n for n, c in errs.items()} for space, errs in abi.ERROR_SPACES.items()}
_SUCCESS_ROWS = frozenset({*_TX_ROWS, "EVTCHN_ALLOC_UNBOUND", "EVTCHN_CLOSE", "AFFINITY_INFO",
                           "AFFINITY_INFO_32", "EVTCHN_SEND", "VM_RESUME"})
_FIELD_KEYS = {r.name: tuple((f"{r.name}.{a.name}", (1 << a.width) - 1) for a in r.args)
               for r in abi.TABLE}
_ID_REG = {conv: str(c["id"]) for conv, c in abi.CONVENTIONS.items()}
_RAW_LIMIT = 1 << 16  # distinct raw facts held before they are sorted


class Reach:
    """The counts.  :meth:`call` only counts each call's raw facts (one tuple, one
    Counter update: a few hundred nanoseconds of a ~50 us step); they are sorted into
    per-row, per-feature and per-field figures when the figures are read."""

    def __init__(self) -> None:
        self._rows: Counter[tuple[str, str]] = Counter()  # (row, "sent"/"ok"/error name)
        self._features: Counter[str] = Counter()
        self._fields: Counter[tuple[str, str]] = Counter()  # (row.arg, class)
        self._unknown_ids: Counter[str] = Counter()  # parity of unknown function ids
        self._raw: dict[tuple[Any, ...], int] = {}  # call facts not yet sorted -> count
        self._closed: set[tuple[int, int]] = set()  # (vm, port) seen closed after use

    @property
    def rows(self) -> Counter[tuple[str, str]]:
        self._sort()
        return self._rows

    @property
    def features(self) -> Counter[str]:
        self._sort()
        return self._features

    @property
    def fields(self) -> Counter[tuple[str, str]]:
        self._sort()
        return self._fields

    @property
    def unknown_ids(self) -> Counter[str]:
        self._sort()
        return self._unknown_ids

    def call(self, s: State, vm: int, vcpu: int, decoded: Any, regs: dict[str, int],
             conv: str, ret: int) -> None:
        """One call the oracle compared: ``s`` is the state it was made in."""
        row = decoded.row
        if row is None:
            key: tuple[Any, ...] = (None, regs.get(_ID_REG[conv], 0) & 1)
            self._raw[key] = self._raw.get(key, 0) + 1
            return
        states = s.vm_state
        C = s.cfg.n_vcpus
        power = s.vcpu[vm * C + vcpu] if vm < len(states) and vcpu < C else None
        if type(decoded) is codec.Call:
            args = decoded.args
            sign = max(regs.values()) >> 63 if regs else 0
            if not ret >> 63 and row.name in _SUCCESS_ROWS:
                self._success(s, vm, row.name, args, ret)
        else:
            args, sign = None, 0
        raw = self._raw
        key = (row.name, ret, vm, states, power, args, sign)
        raw[key] = raw.get(key, 0) + 1  # (dict.get: Counter's += calls __missing__)
        if len(raw) >= _RAW_LIMIT:
            self._sort()

    def _sort(self) -> None:
        """Fold the raw facts counted by :meth:`call` into the figures."""
        raw, self._raw = self._raw, {}
        rows, f, fields = self._rows, self._features, self._fields
        for key, n in raw.items():
            if key[0] is None:
                self._unknown_ids["odd" if key[1] else "even"] += n
                rows[("unknown", "sent")] += n
                continue
            name, ret, vm, states, power, args, sign = key
            rows[(name, "sent")] += n
            if ret >> 63:
                code = ret - (1 << 64)
                rows[(name, _ERROR_NAME[abi.BY_NAME[name].space].get(code, str(code)))] += n
            else:
                rows[(name, "ok")] += n
            f[_LIVE_KEY[len(states) - states.count(0)]] += n
            if vm >= len(states):
                continue  # a hand-made trace may name a VM the configuration lacks
            if PAUSED in states:
                f["a paused VM exists"] += n
                if states[vm] == PAUSED:
                    f["caller's VM is paused"] += n
            if power is not None:
                f[_CALLER_KEY.get(power, "caller vCPU ?")] += n
            if args is None:
                f["reserved bits set"] += n
                continue
            for (field, top), v in zip(_FIELD_KEYS[name], args, strict=False):
                fields[(field, "0" if v == 0 else "1" if v == 1 else "max" if v == top
                        else "other")] += n
            if sign:
                fields[(f"{name}.*", "sign bit")] += n

    def _success(self, s: State, vm: int, name: str, args: tuple[int, ...], ret: int
                 ) -> None:
        f = self._features
        if name in _TX_ROWS:
            borrowers = bin(args[2]).count("1")
            f[f"transaction with {borrowers} borrower(s)"] += 1
            f[f"transaction of {args[1]} page(s)"] += 1
        elif name == "EVTCHN_ALLOC_UNBOUND":
            if (vm, ret) in self._closed:
                f["port reused after close"] += 1
        elif name == "EVTCHN_CLOSE":
            self._closed.add((vm, args[0]))
        elif name.startswith("AFFINITY_INFO"):
            target = args[0]
            if target < s.cfg.n_vcpus:
                f[f"AFFINITY_INFO of a vCPU {_POWER.get(s.vcpu[s.vc(vm, target)], '?')}"] += 1
        elif name == "EVTCHN_SEND":
            P = s.cfg.n_ports
            i = vm * P + args[0]
            if s.ch_state[i] == INTERDOMAIN:
                r = s.ch_rvm[i] * P + s.ch_rport[i]
                if s.ch_masked[r]:
                    f["send to a masked port"] += 1
        elif name == "VM_RESUME":
            f["VM resumed"] += 1

    def merge(self, other: Reach) -> None:
        self._sort()
        self._rows.update(other.rows)
        self._features.update(other.features)
        self._fields.update(other.fields)
        self._unknown_ids.update(other.unknown_ids)

    def to_dict(self) -> dict[str, Any]:
        per_row: dict[str, dict[str, int]] = {}
        for (row, what), n in sorted(self.rows.items()):
            per_row.setdefault(row, {})[what] = n
        per_field: dict[str, dict[str, int]] = {}
        for (field, cls), n in sorted(self.fields.items()):
            per_field.setdefault(field, {})[cls] = n
        return {"rows": per_row, "features": dict(sorted(self.features.items())),
                "fields": per_field, "unknown_ids": dict(self.unknown_ids)}


# What a ci-profile run must reach at the least (tests/conformance/test_reach.py): each
# feature at least this often; every ABI row sent and succeeded; unknown ids of both
# parities; at most this share of calls made with only the control VM alive.
FLOORS: dict[str, int] = {
    "a paused VM exists": 50, "caller's VM is paused": 20, "VM resumed": 20,
    "caller vCPU ON_PENDING": 20, "AFFINITY_INFO of a vCPU ON_PENDING": 20,
    "transaction with 2 borrower(s)": 10, "transaction of 2 page(s)": 10,
    "port reused after close": 20, "send to a masked port": 20,
    "reserved bits set": 100, "live VMs: 4": 100,
}
MAX_SHARE_ONE_LIVE_VM = 0.4


def unmet_floors(reach: Reach, profile: spec_profile.Profile = spec_profile.DEFAULT
                 ) -> list[str]:
    """What ``reach`` falls short of (empty: every floor met); a call the target's
    ``profile`` does not have cannot succeed and is not asked to."""
    out = [f"{name}: {reach.features.get(name, 0)} < {n}" for name, n in FLOORS.items()
           if reach.features.get(name, 0) < n]
    for row in abi.TABLE:
        if spec_profile.offers(profile, row.name) and not reach.rows.get((row.name, "ok")):
            out.append(f"{row.name}: never succeeded")
    for parity in ("odd", "even"):
        if not reach.unknown_ids.get(parity):
            out.append(f"no {parity} unknown function id")
    calls = sum(n for (_, what), n in reach.rows.items() if what == "sent")
    one = reach.features.get("live VMs: 1", 0)
    if calls and one / calls > MAX_SHARE_ONE_LIVE_VM:
        out.append(f"{one / calls:.0%} of calls with one live VM")
    return out
