"""The workload: random hypercall sequences against the concrete spec, as plain functions.

Calls are generated the way a hostile or buggy guest makes them: mostly well-aimed (VM ids,
frames, handles and ports that exist), sometimes at the edges, sometimes garbage registers
in either calling convention.  After every step every invariant and step property is
checked, so a failure names the rule it broke, with the trace that led there.

A :class:`Workload` holds the spec state; its *moves* (methods registered in :data:`MOVES`
by the :func:`move` decorator) make calls, and every choice a move makes goes through a
:class:`Chooser`.  This module imports no test framework: its drivers supply the choosers.
``conformance.drivers`` runs the moves as a Hypothesis state machine (choices drawn from
Hypothesis, shrinkable); the conformance oracle runs them in seeded batch programs
(:class:`RandomChooser`, where a Hypothesis draw would cost more than the step it
chooses).  Both make the same kinds of choices from the same pools, so they aim the same
way.
"""

from __future__ import annotations

import collections
import functools
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from spec import checking, logic, machine
from spec.hypercalls import abi, codec
from spec.state import Config, State, initial
from spec.transitions import Caller

SIM_CONFIG = Config(n_vms=4, n_vcpus=2, n_gframes=4, n_hframes=16, n_tx=3, n_ports=3,
                    n_devices=2, control_quota=3)

T = TypeVar("T")
# how many steps back the state machines take a twin's secrets from (noninterference)
NI_TWIN_AGE = 6


# Rows by area; the workload has one move per area.
_AREAS: dict[str, tuple[abi.Row, ...]] = {
    "memory": tuple(r for r in abi.TABLE if r.name in ("MEM_POPULATE", "MEM_RELEASE")),
    "sharing": tuple(r for r in abi.TABLE if r.name.startswith("MEM_")
                     and r.name not in ("MEM_POPULATE", "MEM_RELEASE")),
    "evtchn": tuple(r for r in abi.TABLE if r.name.startswith("EVTCHN_") or r.name == "IRQ_ACK"),
    "psci": tuple(r for r in abi.TABLE if (r.space in ("psci", "smccc") and not r.name.startswith(
        "SYSTEM_")) or r.name == "HV_VERSION"),
    "system": tuple(r for r in abi.TABLE if r.name.startswith("SYSTEM_")),
    "control": tuple(r for r in abi.TABLE if r.caller == "control"),
}
assert {r.name for rows in _AREAS.values() for r in rows} == {r.name for r in abi.TABLE}


# Function ids a PSCI_FEATURES or SMCCC_ARCH_FEATURES query asks about: every call of the
# table, the erratum workarounds, and ids nothing implements (a PSCI id past the last
# function, SMCCC_ARCH_SOC_ID, a vendor id, an SMC64 twin of an SMC32-only call).
FUNCTION_POOL = (*sorted({r.function_id for r in abi.TABLE}), *abi.ARCH_WORKAROUNDS,
                 0x8400001F, 0x80000002, 0xC6000000, 0xC4000000)
# The Arm architecture calls SMCCC_ARCH_FEATURES is about (SMCCC 7.x): the only ids it
# answers other than NOT_SUPPORTED.  Drawn as often as the rest of the pool together, so
# its positive answers are judged in every run, not in one run out of ten.
ARCH_QUERY_POOL = (*(r.function_id for r in abi.TABLE if r.space == "smccc"),
                   *abi.ARCH_WORKAROUNDS)


class StepFailure(AssertionError):
    """A step broke a proved rule: names it, with the trace that led there."""


def _arg_domain(arg: abi.Arg, cfg: Config) -> tuple[int, int, list[int]]:
    """An argument's aimed values ``range(hi + 1) << shift`` and its edge values."""
    small = {
        "vm": cfg.n_vms + 1, "vcpu": cfg.n_vcpus + 1, "frame": cfg.n_gframes + 1,
        "handle": cfg.n_tx + 1, "port": cfg.n_ports + 1, "device": cfg.n_devices + 1,
        "line": cfg.n_lines + 1, "perm": 8, "level": 2, "mpidr": cfg.n_vcpus + 1,
        "value": cfg.n_gframes + 2, "vm_mask": 1 << cfg.n_vms, "function": 0x20,
        "power_state": 4,
    }.get(arg.kind)
    if arg.kind == "address":
        hi, shift = cfg.n_gframes, 12
    elif arg.kind == "value" and arg.name == "quota":
        hi, shift = cfg.n_hframes + 1, 0
    else:
        hi, shift = small - 1, 0  # type: ignore[operator]
    return hi, shift, [0, 1, (1 << arg.width) - 1, 0xFFFF, 1 << (arg.width - 1)]


class Chooser(Protocol):
    """Where a move's choices come from (labels name them in a driver's output)."""

    def pick(self, seq: Sequence[T], label: str | None = None) -> T: ...
    def integer(self, lo: int, hi: int, label: str | None = None) -> int: ...
    def boolean(self, label: str | None = None) -> bool: ...
    def word(self, label: str | None = None) -> int: ...
    def arg(self, arg: abi.Arg, cfg: Config, label: str | None = None) -> int: ...


# Words Hypothesis favours for a 64-bit integer: the boundaries of every common width.
_EDGE_WORDS = tuple(sorted({v & (2**64 - 1) for b in (1, 7, 8, 15, 16, 31, 32, 63, 64)
                            for v in ((1 << b) - 1, 1 << b, (1 << b) + 1)} | {0}))


class RandomChooser:
    """Choices from a seeded ``random.Random``, distributed like the Hypothesis driver's
    (uniform picks, aimed-or-edge arguments, words biased to small and boundary values).
    About a microsecond a choice, so a batch of calls costs about what its steps cost."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, seq: Sequence[T], label: str | None = None) -> T:
        return seq[int(self.rng.random() * len(seq))]

    def integer(self, lo: int, hi: int, label: str | None = None) -> int:
        return lo + int(self.rng.random() * (hi - lo + 1))

    def boolean(self, label: str | None = None) -> bool:
        return self.rng.random() < 0.5

    def word(self, label: str | None = None) -> int:
        r = self.rng.random()
        if r < 0.25:
            return self.pick(_EDGE_WORDS)
        if r < 0.5:
            return self.rng.getrandbits(self.pick((4, 8, 16, 32)))
        return self.rng.getrandbits(64)

    def arg(self, arg: abi.Arg, cfg: Config, label: str | None = None) -> int:
        hi, shift, edges = _arg_domain(arg, cfg)
        if self.rng.random() < 0.75:
            return self.integer(0, hi) << shift
        return self.pick(edges)


Candidates = Callable[[State, int], list[tuple[int, ...]]]
# Register files already encoded, (row name, args, convention) -> registers (a pure
# function, and aimed calls repeat constantly); each call gets a copy.
_ENCODED: dict[tuple[str, tuple[int, ...], str], dict[str, int]] = {}


def _candidate_table(cfg: Config) -> dict[str, Candidates]:
    """Per ABI row (by name), its aimed argument tuples for a caller ``vm`` in state ``s``
    (rows without an entry have none): a lookup instead of a chain of name tests, as the
    table is consulted for every VM on three aimed calls in four."""
    G, P = cfg.n_gframes, cfg.n_ports

    def bind(s: State, vm: int) -> list[tuple[int, ...]]:
        # offers to vm, and (hostile) to others
        return [(i // P, i % P) for i in range(len(s.ch_state))
                if s.ch_state[i] == 1 and i // P != vm]

    def retrieve(s: State, vm: int) -> list[tuple[int, ...]]:
        mine = vm * G
        live_tx = [k for k in range(cfg.n_tx) if s.tx_kind[k]]
        free = [g for g in range(G) if not s.s2_valid[mine + g]]
        return [(k, base) for k in live_tx for base in free
                if s.tx_borrowers[k] >> vm & 1 and not s.tx_retrieved[k] >> vm & 1
                and all(not s.s2_valid[mine + g]
                        for g in range(base, min(G, base + s.tx_count[k])))]

    def reclaim(s: State, vm: int) -> list[tuple[int, ...]]:
        return [(k,) for k in range(cfg.n_tx) if s.tx_kind[k] and s.tx_owner[k] == vm]

    def relinquish(s: State, vm: int) -> list[tuple[int, ...]]:
        return [(k,) for k in range(cfg.n_tx) if s.tx_kind[k] and s.tx_retrieved[k] >> vm & 1]

    def cpu_on(s: State, vm: int) -> list[tuple[int, ...]]:
        mine = vm * G
        entries = [g << 12 for g in range(G) if s.s2_valid[mine + g]]
        off = [c for c in range(cfg.n_vcpus) if s.vcpu[s.vc(vm, c)] == 0]
        return [(c, e, 0) for c in [*off, *off, *range(cfg.n_vcpus)] for e in entries]

    def lifecycle(s: State, vm: int) -> list[tuple[int, ...]]:  # any caller: privilege
        return [(v,) for v in range(1, cfg.n_vms) if s.vm_state[v]]

    def ports(s: State, vm: int) -> list[int]:
        return [p for p in range(P) if s.ch_state[s.vp(vm, p)]]

    def send(s: State, vm: int) -> list[tuple[int, ...]]:  # bound, and (hostile) unbound
        return [(p,) for p in ports(s, vm)]

    def port_op(s: State, vm: int) -> list[tuple[int, ...]]:
        # open ports, then every other port and one past the end (error paths)
        return [(p,) for p in ports(s, vm)] * 2 + [(p,) for p in range(P + 1)]

    def transact(s: State, vm: int) -> list[tuple[int, ...]]:
        if not s.vm_state[vm]:
            return []
        mine = vm * G
        own = [g for g in range(G) if s.s2_valid[mine + g]
               and s.s2_tx[mine + g] == 0xFFFF
               and s.frame_tx[s.s2_frame[mine + g]] == 0xFFFF]
        others = [1 << v for v in range(cfg.n_vms) if v != vm and s.vm_state[v]]
        return [(g, 1, who, perm) for g in own for who in others for perm in (1, 3)]

    def create(s: State, vm: int) -> list[tuple[int, ...]]:
        return [(v, q) for v in range(1, cfg.n_vms) if not s.vm_state[v] for q in (1, 3)]

    def assign(s: State, vm: int) -> list[tuple[int, ...]]:
        return [(d, v) for d in range(cfg.n_devices) if s.dev_owner[d] == 0xFFFF
                for v in range(cfg.n_vms) if s.vm_state[v]]

    def deassign(s: State, vm: int) -> list[tuple[int, ...]]:
        return [(d,) for d in range(cfg.n_devices) if s.dev_owner[d] != 0xFFFF]

    table: dict[str, Candidates] = {
        "EVTCHN_BIND_INTERDOMAIN": bind, "MEM_RETRIEVE": retrieve, "MEM_RECLAIM": reclaim,
        "MEM_RELINQUISH": relinquish, "VM_PAUSE": lifecycle, "VM_RESUME": lifecycle,
        "VM_DESTROY": lifecycle, "EVTCHN_SEND": send, "EVTCHN_CLOSE": port_op,
        "EVTCHN_MASK": port_op, "EVTCHN_UNMASK": port_op, "EVTCHN_CLEAR": port_op,
        "MEM_SHARE": transact, "MEM_LEND": transact, "MEM_DONATE": transact,
        "VM_CREATE": create, "DEV_ASSIGN": assign, "DEV_DEASSIGN": deassign,
    }
    table.update((r.name, cpu_on) for r in abi.TABLE if r.name.startswith("CPU_ON"))
    return table


@functools.cache
def _candidates_for(cfg: Config) -> dict[str, Candidates]:
    return _candidate_table(cfg)


Move = Callable[["Workload", Chooser], None]
Fn = TypeVar("Fn", bound=Callable[..., None])


def registrar(registry: dict[str, Move]) -> Callable[[Fn], Fn]:
    """A decorator recording ``move_<name>`` functions in ``registry`` under ``<name>``
    (a driver enumerates the registry; the oracle keeps one for its own moves)."""

    def register(fn: Fn) -> Fn:
        name = fn.__name__
        assert name.startswith("move_") and name[5:] not in registry, name
        registry[name[5:]] = fn
        return fn

    return register


# The workload's moves, by name ("transaction" for Workload.move_transaction).
MOVES: dict[str, Move] = {}
move = registrar(MOVES)


class Workload:
    """The spec state and the moves that drive it.

    A move is a method ``move_<name>(self, ch: Chooser)`` registered by :func:`move`;
    every call it makes goes through :meth:`_regs` and every event through
    :meth:`_event`, which subclasses override (the oracle sends them to a target as
    well).  :meth:`boot` (or :meth:`boot_with`, when a driver draws the quotas itself)
    starts every VM."""

    def __init__(self, cfg: Config = SIM_CONFIG, rows: frozenset[str] | None = None) -> None:
        self.cfg = cfg
        # the calls the system under test speaks (None: every row); others are not made
        self.rows = rows
        self.s: State = initial(cfg)
        self.trace: list[str] = []
        self._last_ret = 0
        self._table = _candidates_for(cfg)
        # whether each call is also judged by the noninterference obligations (the spec's
        # own state machines; a driver of a target, which judges the target, turns it off)
        self.noninterference = True
        self._past: collections.deque[State] = collections.deque(maxlen=NI_TWIN_AGE)

    def boot(self, ch: Chooser) -> None:
        """Boot with a quota (1 to 4 frames) per guest VM drawn from ``ch``."""
        self.boot_with([ch.integer(1, 4, label="quota") for _ in range(self.cfg.n_vms - 1)])

    def boot_with(self, quotas: Sequence[int]) -> None:
        """Create every VM; each maps frames up to its quota, from guest frame 0."""
        cfg = self.cfg
        for vm, quota in enumerate(quotas, start=1):
            self._call(0, 0, abi.BY_NAME["VM_CREATE"], (vm, quota), "arm64")
        for vm, quota in enumerate([cfg.control_quota, *quotas]):
            for g in range(min(quota, cfg.n_gframes - 1)):
                self._call(vm, 0, abi.BY_NAME["MEM_POPULATE"], (g, 7), "arm64")

    def _apply(self, caller: Caller, row: abi.Row | None, s2: State, ret: Any,
               what: str, args: tuple[Any, ...] = (), log: list[Any] | None = None,
               leaks: list[checking.Violation] | None = None) -> None:
        self.trace.append(what)
        bad = checking.check_step(self.s, caller, row, s2, ret, args)
        bad += checking.index_violations(log or [])  # a slot that does not exist
        bad += leaks or []  # noninterference (when this workload checks it)
        self.s = s2
        if bad:
            names = ", ".join(f"{v.name} [{v.clause}]" for v in bad)
            raise StepFailure(f"{names} broken after: " + " ; ".join(self.trace))

    def speaks(self, row: abi.Row) -> bool:
        return self.rows is None or row.name in self.rows

    def _call(self, vm: int, vcpu: int, row: abi.Row, args: tuple[int, ...],
              conv: str, hint: bool = False) -> None:
        """``row`` with ``args``; ``hint``: with the SVE hint bit set in its function id
        (SMCCC 1.3), which an implementation of an earlier SMCCC must refuse."""
        if not self.speaks(row):
            self._last_ret = (1 << 64) - 1  # NOT_SUPPORTED: the call is not made
            return
        key = (row.name, args if type(args) is tuple else tuple(args), conv)
        regs = _ENCODED.get(key)
        if regs is None:
            if len(_ENCODED) >= 1 << 14:
                _ENCODED.clear()
            regs = _ENCODED[key] = codec.encode_call(row, args, conv)
        regs = dict(regs)
        if hint:
            regs[codec.registers(conv)[0]] |= abi.SVE_HINT  # the function-id register
        self._regs(vm, vcpu, regs, conv)

    def _regs(self, vm: int, vcpu: int, regs: dict[str, int], conv: str) -> None:
        decoded = codec.decode(regs, conv)
        with logic.index_log() as log:
            s2, out = machine.step(self.s, vm, vcpu, regs, conv)
        leaks: list[checking.Violation] = []
        if self.noninterference:
            # the twin's secrets come from the oldest state kept: far enough back that the
            # other VMs' slots differ, near enough that the mix is often sound
            leaks = checking.noninterference_step(
                self.s, vm, vcpu, regs, conv, s2, out, self._past[0] if self._past else None,
                decoded)
            self._past.append(self.s)
        ret = out[abi.CONVENTIONS[conv]["result"][0]]
        self._last_ret = ret
        row = decoded.row if isinstance(decoded, codec.Call) else None
        shown = ([hex(regs[r]) for r in abi.CONVENTIONS[conv]["args"][: len(row.args)]]
                 if row else [hex(v) for v in regs.values()])
        signed = ret - (1 << 64) if ret >> 63 else ret
        what = (f"vm{vm}.{vcpu} {conv} {row.name if row else 'undecodable'}"
                f"({', '.join(shown)}) -> {signed}")
        self._apply(Caller(vm, vcpu), row, s2, ret, what,
                    decoded.args if isinstance(decoded, codec.Call) else (), log, leaks)

    def _at_once(self, calls: list[tuple[int, int, abi.Row, tuple[int, ...]]]) -> list[int]:
        """Calls ``(vm, vcpu, row, args)`` made at the same time from different vCPUs;
        the results in call order.  On the spec alone they run in the order given (one of
        the linearizations); the oracle sends them to a target at once."""
        rets = []
        for vm, vcpu, row, args in calls:
            self._call(vm, vcpu, row, args, "arm64")
            rets.append(self._last_ret)
        return rets

    def _event(self, name: str, *args: int) -> None:
        with logic.index_log() as log:
            s2 = machine.event(self.s, name, *args)
        self._apply(Caller(0, 0), None, s2, None,
                    f"event {name}({', '.join(str(a) for a in args)})", log=log)

    def _aimed(self, ch: Chooser, arg: abi.Arg, vm: int) -> int:
        """An argument drawn from what exists now: live VMs, handles, ports, frames."""
        cfg = self.cfg
        s, kind = self.s, arg.kind
        pool: list[int] | None = None  # only the pool this argument draws from
        if kind in ("vm", "vm_mask"):
            live = [v for v in range(cfg.n_vms) if s.vm_state[v]]
            pool = ([v for v in live if v != vm] or live) if kind == "vm" else \
                [1 << v for v in live if v != vm]
        elif kind == "handle":
            pool = [k for k in range(cfg.n_tx) if s.tx_kind[k]]
        elif kind == "port":
            pool = [p for p in range(cfg.n_ports) if s.ch_state[s.vp(vm, p)]]
        elif kind == "frame":
            own = [g for g in range(cfg.n_gframes) if s.s2_valid[s.vg(vm, g)]]
            pool = own if own and ch.boolean(label="own frame") else \
                list(range(cfg.n_gframes))
        elif kind == "perm":
            pool = [1, 3, 5, 7]
        elif kind == "value" and arg.name == "count":
            pool = [1, 1, 2, 3]
        elif kind == "function":
            pool = list(FUNCTION_POOL)
            pool += list(ARCH_QUERY_POOL) * (len(pool) // len(ARCH_QUERY_POOL))
        elif kind == "power_state":  # standby, power-down, a level, reserved bits
            pool = [0, 1, 1 << 16, 1 << 24, 1 << 16 | 2 << 24, 1 << 20, 1 << 31]
        if pool:
            return ch.pick(pool, label=arg.name)
        return ch.arg(arg, cfg, label=arg.name)

    def _candidates(self, row: abi.Row, vm: int) -> list[tuple[int, ...]]:
        """Whole argument tuples that are likely to succeed now, for calls whose
        arguments depend on each other (a handle *and* a free place to map it)."""
        fn = self._table.get(row.name)
        return fn(self.s, vm) if fn is not None else []

    def _hypercall(self, ch: Chooser, rows: tuple[abi.Row, ...]) -> None:
        cfg = self.cfg
        if self.rows is not None:
            rows = tuple(r for r in rows if r.name in self.rows)
            if not rows:
                return
        row = ch.pick(rows, label="row")
        vm = ch.integer(0, cfg.n_vms - 1, label="vm")
        if row.caller == "control" and ch.integer(0, 3, label="from control"):
            vm = 0  # three in four privileged calls come from the control VM
        vcpu = ch.pick([0, 0, 0, *range(1, cfg.n_vcpus)], label="vcpu")
        conv = ch.pick(["arm64", "x86_64"], label="conv")
        aimed = ch.integer(0, 3, label="aimed")
        fn = self._table.get(row.name)
        found = ([(v, a) for v in range(cfg.n_vms) for a in fn(self.s, v)]
                 if aimed and fn is not None else [])
        if found:
            vm, args = ch.pick(found, label="aimed")
        elif aimed:  # three times in four: arguments that name things that exist
            args = tuple(self._aimed(ch, a, vm) for a in row.args)
        else:
            args = tuple(ch.arg(a, cfg, label=a.name) for a in row.args)
        self._call(vm, vcpu, row, args, conv,
                   hint=not ch.integer(0, 31, label="SVE hint"))

    @move
    def move_transaction(self, ch: Chooser) -> None:
        """A whole FF-A exchange in one rule: open, retrieve, then poke at it.

        Reaching "owner reclaims while the borrower maps it" by chance takes four
        well-aimed calls in a row; this rule makes such sequences common.
        """
        cfg = self.cfg
        s, G = self.s, cfg.n_gframes
        owners = [(v, g) for v in range(cfg.n_vms) if s.vm_state[v] == 1
                  for g in range(G) if s.s2_valid[s.vg(v, g)]
                  and s.s2_tx[s.vg(v, g)] == 0xFFFF]
        if not owners:
            return
        owner, g = ch.pick(owners, label="owner frame")
        borrower = ch.pick([v for v in range(cfg.n_vms) if v != owner], label="borrower")
        kind = ch.pick(["MEM_SHARE", "MEM_LEND", "MEM_DONATE"])
        perm = ch.pick([1, 3, 5], label="perm")
        # sometimes two pages, and (share, lend) a second borrower: FF-A transactions
        # name several receivers and many pages
        pages = 2 if g + 1 < G and ch.boolean(label="two pages") else 1
        who = 1 << borrower
        others = [v for v in range(cfg.n_vms) if v not in (owner, borrower)
                  and s.vm_state[v] == 1]
        if kind != "MEM_DONATE" and others and ch.boolean(label="second borrower"):
            who |= 1 << ch.pick(others, label="second borrower")
        self._call(owner, 0, abi.BY_NAME[kind], (g, pages, who, perm), "arm64")
        handle = self._last_ret
        if handle >> 63:
            return
        base = ch.integer(0, G - 1, label="borrower base")
        self._call(borrower, 0, abi.BY_NAME["MEM_RETRIEVE"], (handle, base), "arm64")
        then = ch.pick(["MEM_RECLAIM", "MEM_RELEASE", "VM_DESTROY", "MEM_RELINQUISH"],
                       label="then")
        if then == "MEM_RECLAIM":
            self._call(owner, 0, abi.BY_NAME[then], (handle,), "arm64")
        elif then == "MEM_RELEASE":
            self._call(owner, 0, abi.BY_NAME[then], (g,), "arm64")
        elif then == "VM_DESTROY" and owner != 0:
            self._call(0, 0, abi.BY_NAME[then], (owner,), "arm64")
        else:
            self._call(borrower, 0, abi.BY_NAME["MEM_RELINQUISH"], (handle,), "arm64")

    @move
    def move_channel(self, ch: Chooser) -> None:
        """A whole event-channel life in one rule: offer, bind, send, then end it."""
        cfg = self.cfg
        live = [v for v in range(cfg.n_vms) if self.s.vm_state[v] == 1]
        if len(live) < 2:
            return
        a = ch.pick(live, label="offerer")
        b = ch.pick([v for v in live if v != a], label="binder")
        self._call(a, 0, abi.BY_NAME["EVTCHN_ALLOC_UNBOUND"], (b,), "arm64")
        port_a = self._last_ret
        if port_a >> 63:
            return
        if ch.boolean(label="send before bind"):  # must fail, deliver nothing
            self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
        thieves = [v for v in live if v not in (a, b)]
        if thieves and ch.boolean(label="third party binds first"):
            thief = ch.pick(thieves, label="thief")  # must be DENIED
            self._call(thief, 0, abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"], (a, port_a),
                       "arm64")
        self._call(b, 0, abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"], (a, port_a), "arm64")
        port_b = self._last_ret
        if port_b >> 63:
            return
        self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
        # each end's status names the other end (Xen EVTCHNOP_status; no draw, so the rest
        # of the workload's choices are unchanged)
        status = abi.BY_NAME["EVTCHN_STATUS"]
        self._call(a, 0, status, (port_a,), "arm64")
        self._call(b, 0, status, (port_b,), "arm64")
        then = ch.pick(["close a", "close b", "destroy a", "destroy b", "unmask b"],
                       label="then")
        who, port = (a, port_a) if then.endswith("a") else (b, port_b)
        if then.startswith("close"):
            self._call(who, 0, abi.BY_NAME["EVTCHN_CLOSE"], (port,), "arm64")
            other, other_port = (b, port_b) if who == a else (a, port_a)
            self._call(other, 0, status, (other_port,), "arm64")  # unbound again
        elif then.startswith("destroy") and who != 0:
            self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (who,), "arm64")
        else:
            self._call(b, 0, abi.BY_NAME["EVTCHN_MASK"], (port_b,), "arm64")
            self._call(a, 0, abi.BY_NAME["EVTCHN_SEND"], (port_a,), "arm64")
            self._call(b, 0, abi.BY_NAME["EVTCHN_UNMASK"], (port_b,), "arm64")

    @move
    def move_passthrough(self, ch: Chooser) -> None:
        """A device's life in one rule: assign, interrupt, then detach or destroy."""
        cfg = self.cfg
        s = self.s
        free = [d for d in range(cfg.n_devices) if s.dev_owner[d] == 0xFFFF]
        live = [v for v in range(1, cfg.n_vms) if s.vm_state[v]]
        if not free or not live:
            return
        dev = ch.pick(free, label="device")
        vm = ch.pick(live, label="to vm")
        self._call(0, 0, abi.BY_NAME["DEV_ASSIGN"], (dev, vm), "arm64")
        self._event("DEVICE_IRQ", dev)
        if ch.boolean(label="destroy"):
            self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (vm,), "arm64")
        else:
            self._call(0, 0, abi.BY_NAME["DEV_DEASSIGN"], (dev,), "arm64")

    @move
    def move_lifecycle(self, ch: Chooser) -> None:
        """A guest VM's lifecycle: an absent one is created and given memory; a running
        one is paused, called from while paused, and resumed (or destroyed)."""
        cfg = self.cfg
        s = self.s
        v = ch.integer(1, cfg.n_vms - 1, label="vm")
        if s.vm_state[v] == 0:
            quota = ch.integer(1, 4, label="quota")
            self._call(0, 0, abi.BY_NAME["VM_CREATE"], (v, quota), "arm64")
            for g in range(min(quota, cfg.n_gframes - 1)):
                self._call(v, 0, abi.BY_NAME["MEM_POPULATE"], (g, 7), "arm64")
            return
        self._call(0, 0, abi.BY_NAME["VM_PAUSE"], (v,), "arm64")
        row = ch.pick(abi.TABLE, label="call while paused")
        args = tuple(self._aimed(ch, a, v) for a in row.args)
        self._call(v, 0, row, args, "arm64")
        then = ch.pick(["VM_RESUME", "VM_RESUME", "VM_DESTROY"], label="then")
        self._call(0, 0, abi.BY_NAME[then], (v,), "arm64")

    @move
    def move_power(self, ch: Chooser) -> None:
        """PSCI power-up as a guest does it: CPU_ON, then AFFINITY_INFO while it is
        pending, then (sometimes) after it started; then the vCPU's own calls."""
        cfg = self.cfg
        s = self.s
        live = [v for v in range(cfg.n_vms) if s.vm_state[v] == 1]
        if not live:
            return
        vm = ch.pick(live, label="vm")
        entries = [g for g in range(cfg.n_gframes) if s.s2_valid[s.vg(vm, g)]]
        target = ch.integer(0, cfg.n_vcpus - 1, label="target")
        entry = ch.pick(entries, label="entry") << 12 if entries else 0
        self._call(vm, 0, abi.BY_NAME["CPU_ON"], (target, entry, 0), "arm64")
        self._call(vm, 0, abi.BY_NAME["AFFINITY_INFO"], (target, 0), "arm64")
        if ch.boolean(label="start it"):
            self._event("VCPU_START", vm, target)
            self._call(vm, 0, abi.BY_NAME["AFFINITY_INFO"], (target, 0), "arm64")
            row = ch.pick(_AREAS["psci"], label="its own call")
            args = tuple(self._aimed(ch, a, vm) for a in row.args)
            self._call(vm, target, row, args, "arm64")

    # One move per area, so every area gets its share of steps whatever the table order.
    @move
    def move_memory(self, ch: Chooser) -> None:
        self._hypercall(ch, _AREAS["memory"])

    @move
    def move_sharing(self, ch: Chooser) -> None:
        self._hypercall(ch, _AREAS["sharing"])

    @move
    def move_event_channels(self, ch: Chooser) -> None:
        self._hypercall(ch, _AREAS["evtchn"])

    @move
    def move_vcpus(self, ch: Chooser) -> None:
        # SYSTEM_OFF and SYSTEM_RESET end the caller VM's run: one vCPU call in sixteen,
        # enough for a few hundred a run without starving the calls that need it alive
        system = not ch.integer(0, 15, label="system call now")
        self._hypercall(ch, _AREAS["system" if system else "psci"])

    @move
    def move_control(self, ch: Chooser) -> None:
        self._hypercall(ch, _AREAS["control"])

    @move
    def move_offer(self, ch: Chooser) -> None:
        """An owner offers one of its frames, the borrower maps it, then pokes at it."""
        s, G = self.s, self.cfg.n_gframes
        kind = ch.pick(["MEM_SHARE", "MEM_LEND", "MEM_DONATE"], label="kind")
        perm = ch.pick([1, 3, 5, 7], label="perm")
        retrieve = ch.boolean(label="retrieve")
        live = [v for v in range(self.cfg.n_vms) if s.vm_state[v] == 1]
        offers = [(v, g) for v in live for g in range(G)
                  if s.s2_valid[s.vg(v, g)] and s.s2_tx[s.vg(v, g)] == 0xFFFF
                  and s.frame_tx[s.s2_frame[s.vg(v, g)]] == 0xFFFF]
        if not offers or len(live) < 2:
            return
        owner, g = ch.pick(offers, label="offer")
        borrower = ch.pick([v for v in live if v != owner], label="borrower")
        self._call(owner, 0, abi.BY_NAME[kind],
                   (g, 1, 1 << borrower, perm & self.s.s2_perm[self.s.vg(owner, g)] | 1),
                   "arm64")
        k = self._last_ret
        free = [b for b in range(G) if not self.s.s2_valid[self.s.vg(borrower, b)]]
        if k >> 63 or not retrieve or not free:
            return
        base = ch.pick(free, label="base")
        self._call(borrower, 0, abi.BY_NAME["MEM_RETRIEVE"], (k, base), "arm64")
        # then poke at the live retrieval: the owner reclaims (must be DENIED) or dies
        then = ch.pick(["none", "reclaim", "destroy"], label="then")
        if then == "reclaim":
            self._call(owner, 0, abi.BY_NAME["MEM_RECLAIM"], (k,), "arm64")
        elif then == "destroy" and owner != 0:
            self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (owner,), "arm64")
            frames = [g for g in range(G) if not self.s.s2_valid[self.s.vg(0, g)]]
            if frames:  # the control VM asks for memory: a wrongly freed frame shows
                self._call(0, 0, abi.BY_NAME["MEM_POPULATE"], (frames[0], 7), "arm64")

    @move
    def move_destroy_lender(self, ch: Chooser) -> None:
        """The owner of memory a borrower maps dies (XSA-218/230 class)."""
        s = self.s
        relinquish = ch.boolean(label="relinquish")
        busy = [k for k in range(self.cfg.n_tx) if s.tx_kind[k] and s.tx_retrieved[k]
                and s.tx_owner[k] not in (0, 0xFFFF)]
        if not busy:
            return
        k = ch.pick(busy, label="handle")
        self._call(0, 0, abi.BY_NAME["VM_DESTROY"], (s.tx_owner[k],), "arm64")
        holders = [v for v in range(self.cfg.n_vms) if self.s.tx_retrieved[k] >> v & 1]
        if relinquish and holders:
            who = ch.pick(holders, label="holder")
            self._call(who, 0, abi.BY_NAME["MEM_RELINQUISH"], (k,), "arm64")

    @move
    def move_garbage(self, ch: Chooser) -> None:
        cfg = self.cfg
        vm = ch.integer(0, cfg.n_vms - 1, label="vm")
        conv = ch.pick(["arm64", "x86_64"], label="conv")
        known = abi.TABLE if self.rows is None else \
            tuple(r for r in abi.TABLE if r.name in self.rows)
        self._garbage(vm, conv, [ch.word() for _ in range(7)], ch.pick(known))

    def _garbage(self, vm: int, conv: str, regs: list[int], known: abi.Row) -> None:
        names = codec.registers(conv)
        file = dict(zip(names, regs, strict=False))
        # half the time a real function id with garbage arguments; decided by a bit
        # of the last word, not of the id itself (else every unknown id is even)
        if regs[-1] >> 63:
            file[names[0]] = (regs[1] << 32) | known.function_id
        self._regs(vm, 0, file, conv)


# --- a firmware target: one guest's view of PSCI and SMCCC ---------------------------------
def with_image(s: State) -> State:
    """``s`` with the control VM's guest frames mapped RWX up to its quota, as a guest
    booted from a loaded image finds its memory (a firmware target's ABIs populate
    nothing, so its oracle starts here)."""
    row = abi.BY_NAME["MEM_POPULATE"]
    for g in range(min(s.cfg.control_quota, s.cfg.n_gframes - 1)):
        s, _ = machine.apply(s, Caller(0, 0), codec.Call(row, (g, 7)))
    return s


def with_vcpus_running(s: State) -> State:
    """``s`` with the control VM's image mapped (:func:`with_image`) and every vCPU of it
    running, as an SMP guest finds itself once booted (a real hypervisor's control
    domain: all its vCPUs up before it makes its first call).  They are started the
    model's way: CPU_ON from vCPU 0 at the image's first frame, then VCPU_START."""
    s = with_image(s)
    on = abi.BY_NAME["CPU_ON"]
    for c in range(1, s.cfg.n_vcpus):
        s, _ = machine.apply(s, Caller(0, 0), codec.Call(on, (c, 0, 0)))
        s = machine.event(s, "VCPU_START", 0, c)
    return s


# A firmware target runs one guest (VM 0) with as many vCPUs as the platform has.
FIRMWARE_CONFIG = Config(n_vms=2, n_vcpus=3, n_gframes=4, n_hframes=8, n_tx=1, n_ports=1,
                         n_devices=0, control_quota=3)
FIRMWARE_ABIS = frozenset({"psci", "smccc"})

# Function ids PSCI 1.1 and SMCCC define that the table has no row for (the optional PSCI
# calls MIGRATE .. MEM_PROTECT_CHECK_RANGE, SMCCC_ARCH_SOC_ID, the erratum workarounds):
# an implementation may have them, so sending one would judge nothing.
DEFINED_NOT_MODELLED = frozenset(
    {base | n for base in (0x8400_0000, 0xC400_0000) for n in range(0x15)}
    | {0x8000_0002, *abi.ARCH_WORKAROUNDS}) - set(abi.BY_ID)

FIRMWARE_MOVES: dict[str, Move] = {}
firmware_move = registrar(FIRMWARE_MOVES)

_DISCOVERABLE = tuple(r for r in abi.TABLE if r.abi in ("psci", "smccc"))
_QUERIES = tuple(abi.BY_NAME[n] for n in (
    "PSCI_VERSION", "PSCI_FEATURES", "PSCI_FEATURES", "SMCCC_VERSION", "SMCCC_ARCH_FEATURES",
    "SMCCC_ARCH_FEATURES", "MIGRATE_INFO_TYPE", "AFFINITY_INFO", "AFFINITY_INFO_32"))


class FirmwareWorkload(Workload):
    """The workload for a target that speaks only the firmware ABIs (PSCI, SMCCC) to one
    guest, as a real platform does: every call comes from a vCPU of VM 0 that is
    running code of ours -- vCPU 0 at boot, a secondary once CPU_ON started it at an
    entry point inside the guest's image -- because a real guest cannot make a call from
    anywhere else.  Its moves are the registry :data:`FIRMWARE_MOVES`."""

    def __init__(self, cfg: Config = FIRMWARE_CONFIG, rows: frozenset[str] | None = None
                 ) -> None:
        super().__init__(cfg, rows)
        self.s = with_image(self.s)
        # vCPUs started at an entry inside the image: they run our code and can call
        self.ours: set[int] = {0}

    def boot(self, ch: Chooser) -> None:
        """A firmware target boots by itself: nothing to create."""

    def boot_with(self, quotas: Sequence[int]) -> None:
        """As :meth:`boot`."""

    def callers(self) -> list[int]:
        """vCPUs of VM 0 that run our code now (ON, or started by CPU_ON and pending)."""
        s = self.s
        return [c for c in sorted(self.ours) if s.vcpu[s.vc(0, c)] in (1, 2)]

    def image_frames(self) -> int:
        return min(self.cfg.control_quota, self.cfg.n_gframes - 1)

    def fw_call(self, vcpu: int, row: abi.Row, args: tuple[int, ...], hint: bool = False
                ) -> int:
        """One call from VM 0's ``vcpu``; keeps :attr:`ours` up to date."""
        self._call(0, vcpu, row, args, "arm64", hint)
        ret = self._last_ret
        if row.name == "CPU_OFF" or (row.name == "SYSTEM_OFF" and not ret >> 63):
            self.ours.discard(vcpu) if row.name == "CPU_OFF" else self.ours.clear()
        elif row.handler in ("system_reset", "system_reset2") and not ret >> 63:
            self.ours = {0}
        return ret

    @firmware_move
    def move_query(self, ch: Chooser) -> None:
        """A discovery call: versions, features, migration type, a vCPU's power state."""
        callers = self.callers()
        if not callers:
            return
        row = ch.pick(_QUERIES, label="row")
        args = tuple(self._aimed(ch, a, 0) if ch.integer(0, 3, label="aimed") else
                     ch.arg(a, self.cfg, label=a.name) for a in row.args)
        self.fw_call(ch.pick(callers, label="vcpu"), row, args)

    @firmware_move
    def move_power(self, ch: Chooser) -> None:
        """CPU_ON as a guest does it, then the new vCPU's own calls, sometimes its CPU_OFF;
        or CPU_ON with a bad target or an entry outside the image."""
        callers = self.callers()
        if not callers:
            return
        me = ch.pick(callers, label="vcpu")
        row = abi.BY_NAME[ch.pick(["CPU_ON", "CPU_ON", "CPU_ON_32"], label="row")]
        target = ch.integer(0, self.cfg.n_vcpus, label="target")  # n_vcpus: no such vCPU
        inside = ch.integer(0, 3, label="entry inside the image")
        if inside:
            # a frame's first byte: a real target maps each image frame to one entry point
            entry = ch.integer(0, self.image_frames() - 1, label="frame") << 12
        else:
            entry = ch.pick([self.image_frames() << 12, self.cfg.n_gframes << 12,
                             0xFFFF_F000, 0x10_0000_0000], label="entry outside")
        context = ch.word(label="context")
        ret = self.fw_call(me, row, (target, entry, context))
        self.fw_call(me, abi.BY_NAME["AFFINITY_INFO"], (target, 0))
        if ret != 0 or not inside:
            return
        self.ours.add(target)
        then = ch.pick(["query", "query", "off", "on-again"], label="then")
        if then == "on-again":  # a second CPU_ON for the same vCPU: ALREADY_ON / ON_PENDING
            self.fw_call(me, row, (target, entry, context))
        self.fw_call(target, abi.BY_NAME["AFFINITY_INFO"], (me, 0))
        if then == "off" and len(self.callers()) > 1:
            self.fw_call(target, abi.BY_NAME["CPU_OFF"], ())
            self.fw_call(me, abi.BY_NAME["AFFINITY_INFO"], (target, 0))

    @firmware_move
    def move_affinity(self, ch: Chooser) -> None:
        """AFFINITY_INFO at every level, with affinity fields and reserved bits set."""
        callers = self.callers()
        if not callers:
            return
        row = abi.BY_NAME[ch.pick(["AFFINITY_INFO", "AFFINITY_INFO_32"], label="row")]
        target = ch.integer(0, self.cfg.n_vcpus, label="aff0")
        target |= ch.pick([0, 0, 0, 1 << 8, 1 << 16, 1 << 24, 1 << 32, 1 << 40],
                          label="higher bits")
        level = ch.pick([0, 0, 1, 2, 3, 4, 0x100], label="level")
        self.fw_call(ch.pick(callers, label="vcpu"), row, (target, level))

    @firmware_move
    def move_unknown(self, ch: Chooser) -> None:
        """A function id no row has: a PSCI or SMCCC number past the table, a 64-bit twin
        of a 32-bit-only call, a yielding call, or any word."""
        callers = self.callers()
        if not callers:
            return
        base = ch.pick([0x84000000, 0xC4000000, 0x80000000, 0xC0000000, 0x04000000, None],
                       label="range")
        fid = ch.word(label="function id") if base is None else \
            base | ch.integer(0, 0x1F, label="number")
        if fid & 0xFFFF_FFFF in abi.BY_ID or fid & 0xFFFF_FFFF in DEFINED_NOT_MODELLED:
            return  # a known call after all (x0's upper half is ignored), or one the
            # standards define and the spec does not model (its answer is not judged)
        regs = {"x0": fid, **{r: ch.pick([0, 1, ch.word(label=r)], label=r)
                               for r in abi.ARM64_ARGS}}
        self._regs(0, ch.pick(callers, label="vcpu"), regs, "arm64")

    @firmware_move
    def move_discover(self, ch: Chooser) -> None:
        """What a guest does at boot: ask whether a call exists (PSCI_FEATURES, or
        SMCCC_ARCH_FEATURES for an Arm architecture call), then make it if it takes no
        arguments -- so "says it has it" and "has it" are judged together."""
        callers = self.callers()
        if not callers:
            return
        me = ch.pick(callers, label="vcpu")
        row = ch.pick(_DISCOVERABLE, label="row")
        ask = "SMCCC_ARCH_FEATURES" if row.abi == "smccc" else "PSCI_FEATURES"
        self.fw_call(me, abi.BY_NAME[ask], (row.function_id,))
        if row.name in ("PSCI_VERSION", "MIGRATE_INFO_TYPE", "SMCCC_VERSION"):
            # now and then as a guest that read SMCCC 1.3+ would: the SVE hint set
            self.fw_call(me, row, (), hint=not ch.integer(0, 7, label="SVE hint"))

    @firmware_move
    def move_at_once(self, ch: Chooser) -> None:
        """Two vCPUs call at the same moment: both power the same vCPU on, or one powers it
        on while the other asks about it, or each asks about the other.  Only calls whose
        answer no open profile choice decides (entries inside the image, level 0)."""
        callers = self.callers()
        if len(callers) < 2:
            return
        a = ch.pick(callers, label="first")
        b = ch.pick([c for c in callers if c != a], label="second")
        others = [t for t in range(self.cfg.n_vcpus) if t not in (a, b)]
        pattern = ch.pick(["on-on", "on-on", "on-query", "query-query"], label="pattern")
        if pattern != "query-query" and others:
            t = ch.pick(others, label="target")
            on = abi.BY_NAME["CPU_ON"]
            entry = ch.integer(0, self.image_frames() - 1, label="frame") << 12
            second = (b, on, (t, entry, 2)) if pattern == "on-on" else \
                (b, abi.BY_NAME["AFFINITY_INFO"], (t, 0))
            rets = self._at_once([(0, a, on, (t, entry, 1)), (0, *second)])
            if 0 in (rets[0], rets[1] if pattern == "on-on" else 1):
                self.ours.add(t)
        else:
            aff = abi.BY_NAME["AFFINITY_INFO"]
            self._at_once([(0, a, aff, (b, 0)), (0, b, aff, (a, 0))])

    @firmware_move
    def move_suspend(self, ch: Chooser) -> None:
        """A secondary vCPU suspends itself (standby, power-down, a level, reserved bits);
        a success may never return, so the workload stops calling from it."""
        callers = self.callers()
        if len(callers) < 2:
            return
        me = ch.pick(callers[1:], label="vcpu")
        row = abi.BY_NAME[ch.pick(["CPU_SUSPEND", "CPU_SUSPEND_32"], label="row")]
        power_state = self._aimed(ch, row.args[0], 0)
        entry = ch.integer(0, self.cfg.n_gframes, label="frame") << 12
        self.fw_call(me, row, (power_state, entry, ch.word(label="context")))
        # whatever the spec answered, the vCPU may be asleep now (a target that suspends
        # where the spec refuses is a deviation, and the workload must not hang on it)
        self.ours.discard(me)

    @firmware_move
    def move_system(self, ch: Chooser) -> None:
        """Now and then the guest powers the system off or resets it (it ends the run of
        calls that follows, or restarts it on vCPU 0)."""
        callers = self.callers()
        if not callers or ch.integer(0, 15, label="system call now"):
            return
        row = abi.BY_NAME[ch.pick(["SYSTEM_RESET", "SYSTEM_OFF", "SYSTEM_RESET2",
                                   "SYSTEM_RESET2_32"], label="row")]
        # SYSTEM_RESET2: a warm reset, a reserved architectural type, a vendor type
        args = (ch.pick([0, 1, 0x8000_0000 | ch.integer(0, 3, label="vendor type")],
                        label="reset_type"), 0) if row.handler == "system_reset2" else ()
        self.fw_call(ch.pick(callers, label="vcpu"), row, args)


# --- a target that speaks only event channels, as one domain (Xen's dom0) ------------------
# VM 0 is the domain making the calls; VM 1 does not exist (no domain has that id), so a
# call naming it is judged as a call naming a missing domain.  Six ports: a channel's two
# ends and room for stale and half-open ones.
EVTCHN_CONFIG = Config(n_vms=2, n_vcpus=2, n_gframes=2, n_hframes=4, n_tx=1, n_ports=6,
                       n_devices=0, control_quota=1)

EVTCHN_MOVES: dict[str, Move] = {}
evtchn_move = registrar(EVTCHN_MOVES)

# remote domain ids an offer names: the caller itself, a missing domain, far ones (all
# below Xen's reserved ids, DOMID_FIRST_RESERVED 0x7FF0, which are not domains)
_REMOTES = (0, 0, 0, 1, 1, 2, 7, 0x7FEF)


class EventChannelWorkload(Workload):
    """The workload for a target whose only calls are event channels, made by one domain
    (VM 0): a real hypervisor's control domain calling through its own ABI, from vCPU 0,
    and from its first two vCPUs at once.  It never lets the model run out of ports: the
    model has ``n_ports``, the target thousands, so a full model would judge the model's
    size, not the target.  Its moves are the registry :data:`EVTCHN_MOVES`."""

    def __init__(self, cfg: Config = EVTCHN_CONFIG, rows: frozenset[str] | None = None
                 ) -> None:
        super().__init__(cfg, rows)
        self.s = with_vcpus_running(self.s)

    def boot(self, ch: Chooser) -> None:
        """The domain exists already; nothing to create."""

    def boot_with(self, quotas: Sequence[int]) -> None:
        """As :meth:`boot`."""

    def ev(self, name: str, *args: int) -> int:
        self._call(0, 0, abi.BY_NAME[name], args, "arm64")
        return self._last_ret

    def free_ports(self) -> int:
        s, P = self.s, self.cfg.n_ports
        return sum(1 for p in range(P) if s.ch_state[s.vp(0, p)] == 0)

    def port(self, ch: Chooser) -> int:
        """A port to name: mostly one that is open, else a closed or stale one, or one
        out of range (just past the model's ports, or far)."""
        s, P = self.s, self.cfg.n_ports
        live = [p for p in range(P) if s.ch_state[s.vp(0, p)]]
        kind = ch.integer(0, 7, label="port kind")
        if live and kind < 5:
            return ch.pick(live, label="port")
        if kind < 7:
            return ch.integer(0, P - 1, label="port")
        return ch.pick([P, P + 1, 0x100, 0xFFFE, 0xFFFF], label="port")

    @evtchn_move
    def move_loopback(self, ch: Chooser) -> None:
        """A whole channel with both ends in the caller: offer, bind, send both ways,
        status of both ends, then close one end (its peer falls back to unbound) or both."""
        if self.free_ports() < 2:
            return
        a = self.ev("EVTCHN_ALLOC_UNBOUND", 0)
        if a >> 63:
            return
        if ch.boolean(label="send before bind"):
            self.ev("EVTCHN_SEND", a)
        b = self.ev("EVTCHN_BIND_INTERDOMAIN", 0, a)
        if b >> 63:
            return
        for p in ch.pick([(a, b), (b, a)], label="order"):
            self.ev("EVTCHN_SEND", p)
            self.ev("EVTCHN_STATUS", p)
        first, other = ch.pick([(a, b), (b, a)], label="close first")
        self.ev("EVTCHN_CLOSE", first)
        self.ev("EVTCHN_STATUS", other)
        self.ev("EVTCHN_STATUS", first)
        then = ch.pick(["close", "rebind", "keep", "send"], label="then")
        if then == "close":
            self.ev("EVTCHN_CLOSE", other)
        elif then == "rebind":  # the surviving end is unbound again, offered to us
            self.ev("EVTCHN_BIND_INTERDOMAIN", 0, other)
        elif then == "send":
            self.ev("EVTCHN_SEND", other)

    @evtchn_move
    def move_offer(self, ch: Chooser) -> None:
        """Offer a port to some domain: the caller, a missing one, a far id."""
        if self.free_ports() < 1:
            return
        p = self.ev("EVTCHN_ALLOC_UNBOUND", ch.pick(_REMOTES, label="remote"))
        if not p >> 63 and ch.boolean(label="look"):
            self.ev("EVTCHN_STATUS", p)

    @evtchn_move
    def move_bind(self, ch: Chooser) -> None:
        """Bind to a port: an unbound one of ours (offered to us or to another domain),
        a bound or closed one, or one of a missing domain."""
        if self.free_ports() < 1:
            return
        remote = ch.pick([0, 0, 0, 1, 3], label="remote")
        self.ev("EVTCHN_BIND_INTERDOMAIN", remote, self.port(ch))

    @evtchn_move
    def move_port_call(self, ch: Chooser) -> None:
        """SEND, CLOSE, UNMASK or STATUS on an open, closed, stale or out-of-range port."""
        name = ch.pick(["EVTCHN_SEND", "EVTCHN_CLOSE", "EVTCHN_UNMASK", "EVTCHN_STATUS",
                        "EVTCHN_STATUS"], label="row")
        self.ev(name, self.port(ch))

    @evtchn_move
    def move_stale(self, ch: Chooser) -> None:
        """Close a port, then use its old name: every call on it must fail as on a port
        never opened (the name may be handed out again only by a later allocation)."""
        s, P = self.s, self.cfg.n_ports
        live = [p for p in range(P) if s.ch_state[s.vp(0, p)]]
        if not live:
            return
        p = ch.pick(live, label="port")
        self.ev("EVTCHN_CLOSE", p)
        self.ev(ch.pick(["EVTCHN_SEND", "EVTCHN_CLOSE", "EVTCHN_UNMASK", "EVTCHN_STATUS"],
                        label="row"), p)

    @evtchn_move
    def move_at_once(self, ch: Chooser) -> None:
        """Two calls at the same moment from vCPUs 0 and 1, on the same objects: two
        offers (each must get its own fresh port), two binds of one offered port (one
        wins), a bind racing the offer's close, both ends of a channel closed together,
        a send racing the close of its peer, a status racing a close."""
        if self.cfg.n_vcpus < 2:
            return
        s, P = self.s, self.cfg.n_ports
        free = self.free_ports()
        unbound = [p for p in range(P) if s.ch_state[s.vp(0, p)] == 1]
        bound = [p for p in range(P) if s.ch_state[s.vp(0, p)] == 2]
        alloc, bind = abi.BY_NAME["EVTCHN_ALLOC_UNBOUND"], abi.BY_NAME["EVTCHN_BIND_INTERDOMAIN"]
        close, send = abi.BY_NAME["EVTCHN_CLOSE"], abi.BY_NAME["EVTCHN_SEND"]
        status = abi.BY_NAME["EVTCHN_STATUS"]
        kinds = [k for k, ok in (("offers", free >= 2), ("binds", unbound and free >= 2),
                                 ("bind-close", unbound and free >= 1),
                                 ("close-ends", bound), ("send-close", bound),
                                 ("status-close", unbound or bound)) if ok]
        if not kinds:
            return
        kind = ch.pick(kinds, label="race")
        pair: list[tuple[abi.Row, tuple[int, ...]]]
        if kind == "offers":
            pair = [(alloc, (0,)), (alloc, (0,))]
        elif kind == "binds":
            p = ch.pick(unbound, label="port")
            pair = [(bind, (0, p)), (bind, (0, p))]
        elif kind == "bind-close":
            p = ch.pick(unbound, label="port")
            pair = [(bind, (0, p)), (close, (p,))]
        elif kind in ("close-ends", "send-close"):
            p = ch.pick(bound, label="port")
            peer = s.ch_rport[s.vp(0, p)]
            pair = [(close, (p,)), (close, (peer,))] if kind == "close-ends" else \
                [(send, (p,)), (close, (peer,))]
        else:
            p = ch.pick(unbound + bound, label="port")
            pair = [(status, (p,)), (close, (p,))]
        if ch.boolean(label="swap vCPUs"):
            pair.reverse()
        self._at_once([(0, vcpu, row, args) for vcpu, (row, args) in enumerate(pair)])
