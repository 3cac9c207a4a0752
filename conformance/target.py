"""What the suite tests: a hypervisor behind the :class:`Target` protocol.

Three built-in kinds, chosen by a target string:

* ``spec``: the executable specification itself, in process (a target that conforms by
  definition; useful to check the suite and as a fallback);
* ``reference``: ``reference_impl.Hypervisor``, the optimized implementation, in process;
* ``exec:COMMAND``: any program speaking the stdio protocol (docs/PROTOCOL.md).

A target reports what it can do in ``capabilities``; a check that needs a capability the
target lacks is *skipped*, never passed.  Anything that goes wrong at the target's end is a
typed :class:`TargetError`, so the suite can turn it into an ``error`` verdict with a reason.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import pickle
import select
import shlex
import signal
import subprocess
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import attrs

from conformance import protocol
from conformance.results import clip_text
from spec import choices, machine
from spec import profile as spec_profile
from spec.hypercalls import abi, xen
from spec.state import Config, State, access, access_table, initial

__all__ = [
    "ALL_CAPABILITIES", "ExecTarget", "Observation", "ProtocolViolation", "ReferenceTarget",
    "SpecObserver", "SpecTarget", "Target", "TargetCrashed", "TargetError", "TargetTimeout",
    "make_target", "observe", "reference_available", "spec_observation", "target_rows",
]

ALL_CAPABILITIES = frozenset({"hypercall", "probe_access", "probe_dma", "probe_irq", "events",
                              "observe"})
# "no_return": the target tells a call that did not return ({"returned": 0}) from one that
# did (a real platform can; a simulator answers CPU_OFF with 0 and is not held to it)


# --- errors -------------------------------------------------------------------------------------
class TargetError(Exception):
    """The target failed to answer a request properly.

    ``definite`` says whether the request certainly had no effect (Maelstrom's definite
    errors); after an indefinite error the target's state is unknown.
    """

    def __init__(self, reason: str, definite: bool = False, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.definite = definite
        self.code = code


class TargetCrashed(TargetError):
    """The target process exited, or the in-process target raised."""


class TargetTimeout(TargetError):
    """The target did not answer within the per-call timeout."""


class ProtocolViolation(TargetError):
    """Garbage, schema-invalid output, or a reply to the wrong request."""


# --- the protocol --------------------------------------------------------------------------------
class Observation(NamedTuple):
    """Everything a guest or device can see: access bits per (vm, gfn), DMA access bits per
    (device, gfn), pending interrupt lines per (vm, vcpu); flattened row-major.  (A named
    tuple: one is built after every step, at a fifth of a frozen attrs class's cost.)"""

    access: tuple[int, ...]
    dma: tuple[int, ...]
    irq: tuple[int, ...]


@runtime_checkable
class Target(Protocol):
    name: str
    capabilities: frozenset[str]

    def reset(self, config: Config) -> None: ...
    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str) -> dict[str, int]:
        ...
    def event(self, name: str, *args: int) -> None: ...
    def probe_access(self, vm: int, gfn: int) -> int: ...
    def probe_dma(self, dev: int, gfn: int) -> int: ...
    def probe_irq(self, vm: int, vcpu: int) -> int: ...
    def close(self) -> None: ...


class ResultsOnly:
    """A mixin for a target that shows the results of its calls and nothing else (a real
    hypervisor seen from a guest): its probes refuse, and the report says which
    requirements could not be judged without them."""

    name: str

    def probe_access(self, vm: int, gfn: int) -> int:
        raise TargetError(f"{self.name} has no probes", definite=True)

    def probe_dma(self, dev: int, gfn: int) -> int:
        raise TargetError(f"{self.name} has no probes", definite=True)

    def probe_irq(self, vm: int, vcpu: int) -> int:
        raise TargetError(f"{self.name} has no probes", definite=True)


def observe(target: Target, cfg: Config) -> Observation:
    """Every probe, in one message when the target can (capability ``observe``)."""
    fast = getattr(target, "observe", None)
    if fast is not None and "observe" in target.capabilities:
        return fast()
    caps = target.capabilities
    G = cfg.n_gframes
    acc = tuple(target.probe_access(v, g) for v in range(cfg.n_vms) for g in range(G)) \
        if "probe_access" in caps else ()
    dma = tuple(target.probe_dma(d, g) for d in range(cfg.n_devices) for g in range(G)) \
        if "probe_dma" in caps else ()
    irq = tuple(target.probe_irq(v, c) for v in range(cfg.n_vms) for c in range(cfg.n_vcpus)) \
        if "probe_irq" in caps else ()
    return Observation(acc, dma, irq)


def spec_observation(s: State) -> Observation:
    """What the spec says every probe must read in state ``s``."""
    cfg = s.cfg
    G = cfg.n_gframes
    return Observation(
        tuple(access(s, v, g) for v in range(cfg.n_vms) for g in range(G)),
        tuple(_dma(s, d, g) for d in range(cfg.n_devices) for g in range(G)),
        tuple(s.irq),
    )


class SpecObserver:
    """:func:`spec_observation` along a run, recomputing a table only when a field it is
    a function of changed.

    By the definitions in :mod:`spec.state`, ``access(s, vm, g)`` reads only ``cfg``,
    ``s2_valid``, ``s2_held`` and ``s2_perm``; ``dma_access(s, dev, g)`` is
    ``access(s, dev_owner[dev], g)`` for an assigned device and 0 otherwise; the irq
    table is ``s.irq``.  So when those fields are equal to the previous state's, so are
    the tables (most hypercalls change none of them: the frame conditions of
    spec/transitions.py).  The answer always equals ``spec_observation(s)``.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, ...] = ()
        self._access: tuple[int, ...] = ()
        self._dkey: tuple[Any, ...] = ()
        self._dma: tuple[int, ...] = ()
        self._last: Observation | None = None

    def __call__(self, s: State) -> Observation:
        cfg = s.cfg
        key = (cfg, s.s2_valid, s.s2_held, s.s2_perm)
        if key != self._key:
            self._access = access_table(s)
            self._key = key
        dkey = (self._access, s.dev_owner)
        if dkey != self._dkey:
            G, V, acc = cfg.n_gframes, cfg.n_vms, self._access
            self._dma = tuple([acc[o * G + g] if o < V else 0
                               for o in s.dev_owner[:cfg.n_devices] for g in range(G)])
            self._dkey = dkey
        last = self._last
        if last is None or last.irq != s.irq or last.access is not self._access or \
                last.dma is not self._dma:
            last = self._last = Observation(self._access, self._dma, tuple(s.irq))
        return last


def _dma(s: State, dev: int, g: int) -> int:
    """:func:`spec.state.dma_access`, evaluated lazily (the spec's version reads the
    owner's row even for an unassigned device, which is out of range concretely)."""
    owner = s.dev_owner[dev]
    return access(s, owner, g) if owner < s.cfg.n_vms else 0


# --- in process: the spec -------------------------------------------------------------
# What the spec itself chooses (spec/choices.py): in-process targets declare it, and are
# held to it.
MODEL_PROFILE = {name: c.refinement for name, c in choices.CHOICES.items()}
MODEL_PROFILE["abis"] = ",".join(abi.ABIS)
MODEL_PROFILE.update({d.name: spec_profile.render_value(d.values[0])
                      for d in spec_profile.DIMENSIONS})


def target_rows(profile: Mapping[str, str]) -> frozenset[str]:
    """The calls a target speaks: every row of the ABIs its profile lists (``abis``,
    comma-separated: smccc, psci, pvspec); without a list, the rows of ABI table 1.0,
    so a protocol-1.0 adapter is judged on what it was written for."""
    listed = profile.get("abis")
    if listed is None:
        return frozenset(r.name for r in abi.TABLE if r.since == "1.0")
    names = {a.strip() for a in listed.split(",") if a.strip()}
    unknown = names - set(abi.ABIS) - set(CODEC_ABIS)
    if unknown:
        raise ValueError(f"unknown ABI {sorted(unknown)} in the profile (known: "
                         f"{', '.join((*abi.ABIS, *CODEC_ABIS))})")
    return frozenset(r.name for r in abi.TABLE if r.abi in names).union(
        *(CODEC_ABIS[n] for n in names if n in CODEC_ABIS))


# ABIs spoken through a codec over the model's calls (another encoding of some of them):
# a target that lists one gets those calls in the model's registers and answers in the
# model's terms, translated by the codec (spec/hypercalls/xen.py)
CODEC_ABIS: dict[str, frozenset[str]] = {"xen": xen.rows()}


# Codecs an exec adapter with the abi_call capability may name in its profile's
# ``encodings``: the model's calls the codec expresses go to it as ``abi_call`` in that
# ABI (conformance/codec_shim.py), the rest as ``hypercall`` in pvspec's registers
ENCODINGS = ("ffa", "xen")


def codec_abis(profile: Mapping[str, str]) -> frozenset[str]:
    """The ABIs a target speaks through a codec: listed in ``abis`` (the ABI's calls only)
    or in ``encodings`` (the ABI's form of calls it also speaks in pvspec's registers)."""
    listed = {*_listed(profile, "abis"), *_listed(profile, "encodings")}
    return frozenset(listed & {*CODEC_ABIS, *ENCODINGS})


def _listed(profile: Mapping[str, str], key: str) -> list[str]:
    """A comma-separated profile value as its items."""
    return [a.strip() for a in (profile.get(key) or "").split(",") if a.strip()]


def profile_of(declared: Mapping[str, str] | None, capabilities: frozenset[str]
               ) -> dict[str, str]:
    """A target's profile: what it declared, and for the rest the widest the standards
    allow -- except power-on, which follows the VCPU_START event for a target that takes
    events (protocol 1.0 adapters) and is asynchronous otherwise."""
    out = {name: c.loose for name, c in choices.CHOICES.items()}
    if "events" in capabilities:
        out["power_on"] = "on-event"
    out.update(declared or {})
    return out


def target_profile(target: Any) -> dict[str, str]:
    return getattr(target, "profile", None) or profile_of(None, target.capabilities)


class SpecTarget:
    """The executable specification as a target."""

    name = "spec"
    capabilities = ALL_CAPABILITIES
    profile = MODEL_PROFILE

    def __init__(self) -> None:
        self.state: State = initial(Config())
        self._observer = SpecObserver()

    def reset(self, config: Config) -> None:
        self.state = initial(config)

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        try:
            self.state, out = machine.step(self.state, vm, vcpu, dict(regs), conv)
        except Exception as exc:  # a defect of the spec itself, reported as such
            raise TargetCrashed(f"the spec raised {type(exc).__name__}: {exc}") from exc
        return out

    def event(self, name: str, *args: int) -> None:
        if name not in abi.EVENT_BY_NAME:
            raise TargetError(f"unknown event {name}", definite=True)
        self.state = machine.event(self.state, name, *args)

    def probe_access(self, vm: int, gfn: int) -> int:
        return access(self.state, vm, gfn) if vm < self.state.cfg.n_vms and \
            gfn < self.state.cfg.n_gframes else 0

    def probe_dma(self, dev: int, gfn: int) -> int:
        return _dma(self.state, dev, gfn) if dev < self.state.cfg.n_devices and \
            gfn < self.state.cfg.n_gframes else 0

    def probe_irq(self, vm: int, vcpu: int) -> int:
        cfg = self.state.cfg
        return self.state.irq[self.state.vc(vm, vcpu)] if vm < cfg.n_vms and \
            vcpu < cfg.n_vcpus else 0

    def observe(self) -> Observation:
        return self._observer(self.state)

    def close(self) -> None:
        pass


# --- in process: the reference implementation ---------------------------------------------------
def reference_available() -> bool:
    try:
        import reference_impl
    except ImportError:
        return False
    return hasattr(reference_impl, "Hypervisor")


class ReferenceTarget:
    """``reference_impl.Hypervisor`` (the optimized implementation) as a target.

    Building a Hypervisor generates and compiles its entry functions (~10 ms), which
    would dominate a conformance run that resets once per example.  So :meth:`reset`
    builds one per configuration, keeps a deep copy of its tables as built, and later
    puts that copy back *in place* (the generated functions close over the table
    objects, so the objects are refilled, never replaced).  A restore is checked: the
    instance must then abstract to the same spec state as when it was built, else it is
    rebuilt from scratch.
    """

    name = "reference"
    capabilities = frozenset({"hypercall", "probe_access", "probe_dma", "probe_irq", "events",
                              "observe"})
    profile = MODEL_PROFILE

    def __init__(self, implementation: type | None = None) -> None:
        """``implementation``: a ``reference_impl.Hypervisor`` subclass to run instead
        (a planted bug, say)."""
        if not reference_available():
            raise TargetError("reference_impl.Hypervisor is not available", definite=True)
        import reference_impl

        self._cls = implementation or reference_impl.Hypervisor
        self._hv: Any = None
        self._cfg = Config()
        self._pristine: bytes | None = None  # the tables as built, pickled
        self._pristine_abstract: Any = None
        self._built_attrs: frozenset[str] = frozenset()
        self._grid = _probe_grid(self._cfg)
        # Hypervisor.observe() answers every probe at once by the probes' own
        # definitions; an implementation that redefines a probe (a subclass, a planted
        # bug) is observed probe by probe, through what it redefined
        self._bulk = callable(getattr(self._cls, "observe", None)) and all(
            getattr(self._cls, m) is getattr(reference_impl.Hypervisor, m)
            for m in ("access", "dma_access", "pending_irqs", "observe"))

    def reset(self, config: Config) -> None:
        if self._hv is not None and self._pristine is not None and config == self._cfg \
                and self._guard(self._restore):
            return
        self._cfg = config
        self._grid = _probe_grid(config)
        self._hv = self._guard(lambda: self._cls(**config.sizes()))
        self._pristine = pickle.dumps({k: v for k, v in vars(self._hv).items()
                                       if _is_data(v)})
        self._built_attrs = frozenset(vars(self._hv))
        self._pristine_abstract = self._guard(self._hv.abstract)

    def _restore(self) -> bool:
        """Put the tables back as built; False if the result does not check out (or the
        instance grew attributes a fresh one lacks)."""
        hv, saved = self._hv, self._pristine
        assert saved is not None
        if vars(hv).keys() != self._built_attrs:
            return False
        for name, value in pickle.loads(saved).items():  # a fresh copy of every table
            setattr(hv, name, _refill(getattr(hv, name, None), value))
        return bool(hv.abstract() == self._pristine_abstract)

    @staticmethod
    def _guard(fn: Any) -> Any:
        try:
            return fn()
        except TargetError:
            raise
        except Exception as exc:
            raise _crashed(exc) from exc

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        try:  # (not through _guard: a closure per call costs a tenth of the call)
            return dict(self._hv.hypercall(vm, vcpu, regs, conv))
        except TargetError:
            raise
        except Exception as exc:
            raise _crashed(exc) from exc

    def event(self, name: str, *args: int) -> None:
        self._guard(lambda: self._hv.event(name, *args))

    def probe_access(self, vm: int, gfn: int) -> int:
        return int(self._guard(lambda: self._hv.access(vm, gfn)))

    def probe_dma(self, dev: int, gfn: int) -> int:
        return int(self._guard(lambda: self._hv.dma_access(dev, gfn)))

    def probe_irq(self, vm: int, vcpu: int) -> int:
        return int(self._guard(lambda: self._hv.pending_irqs(vm, vcpu)))

    def observe(self) -> Observation:
        """Every probe: through ``Hypervisor.observe()``, or (an implementation that
        redefines a probe) through the three probe methods."""
        try:
            return self._observe()
        except TargetError:
            raise
        except Exception as exc:
            raise _crashed(exc) from exc

    def _observe(self) -> Observation:
        hv = self._hv
        if self._bulk:
            return Observation(*hv.observe())
        vg, dg, vc = self._grid
        return Observation(tuple(map(hv.access, *vg)), tuple(map(hv.dma_access, *dg)),
                           tuple(map(hv.pending_irqs, *vc)))

    def close(self) -> None:
        self._hv = None
        self._pristine = None


def _crashed(exc: Exception) -> TargetCrashed:
    """An exception raised in the in-process reference, as the target's error."""
    return TargetCrashed(f"reference_impl raised {type(exc).__name__}: {exc}")


@functools.cache
def _probe_grid(cfg: Config) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The (first, second) probe arguments of every access, dma and irq probe, row-major
    as in :class:`Observation`: for ``map`` over the probe methods."""
    def grid(rows: int, cols: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (tuple(r for r in range(rows) for _ in range(cols)),
                tuple(c for _ in range(rows) for c in range(cols)))
    return (grid(cfg.n_vms, cfg.n_gframes), grid(cfg.n_devices, cfg.n_gframes),
            grid(cfg.n_vms, cfg.n_vcpus))


_ATOMS = (int, float, str, bytes, bool, type(None))


def _is_data(value: Any, depth: int = 0) -> bool:
    """Plain data (numbers, containers, small objects of data): what a snapshot holds.
    Functions and bound methods (the generated entry points) are not data."""
    if isinstance(value, (*_ATOMS, bytearray, array)):
        return True
    if depth > 4 or callable(value):
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return all(_is_data(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_is_data(k, depth + 1) and _is_data(v, depth + 1)
                   for k, v in value.items())
    return all(_is_data(v, depth + 1) for v in _fields(value).values())


def _fields(obj: Any) -> dict[str, Any]:
    """An object's attributes, from its ``__dict__`` and every ``__slots__``."""
    out = dict(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        slots = getattr(cls, "__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out[name] = getattr(obj, name)
    return out


def _refill(current: Any, fresh: Any) -> Any:
    """``fresh``'s content (a private copy) in ``current`` itself when both are the same
    mutable kind, so whoever holds ``current`` sees it; else ``fresh`` itself."""
    kind = type(fresh)
    if kind in _ATOMS or kind is tuple or kind is frozenset or type(current) is not kind:
        return fresh
    if kind is bytearray or kind is array or kind is list:
        current[:] = fresh
    elif kind is dict or kind is set:
        current.clear()
        current.update(fresh)
    else:
        for name, value in _fields(fresh).items():
            object.__setattr__(current, name, value)
    return current


@attrs.frozen
class _NoFast:
    """A view of a target without its ``observe`` shortcut (probe by probe)."""

    inner: Any

    @property
    def capabilities(self) -> frozenset[str]:
        return self.inner.capabilities - {"observe"}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- out of process: any program over the stdio protocol ----------------------------------------
_TEXT_LIMIT = 2000  # characters of target-supplied text quoted in an error reason
_STDERR_HEAD = 256 << 10  # bytes of the target's stderr kept from its start...
_STDERR_TAIL = 256 << 10  # ...and from its end
_TERM_GRACE = 0.5  # seconds a process group gets between SIGTERM and SIGKILL


def _clip(text: object) -> str:
    """Target-supplied text, fit for a reason: at most :data:`_TEXT_LIMIT` characters
    (a target may send megabytes) and encodable as UTF-8 (JSON can carry lone
    surrogates, which would break every report writer)."""
    return clip_text(str(text), _TEXT_LIMIT)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it where the OS allows (while it is
    an unreaped zombie, its pid and so its process group id cannot be reused)."""
    if proc.returncode is not None:
        return True
    if not hasattr(os, "waitid"):  # macOS
        return proc.poll() is not None
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End the target's whole process group (it leads one), so that a shell wrapper's
    background job or a helper the adapter forked dies with it and keeps no pipe open:
    SIGTERM to the group, up to :data:`_TERM_GRACE` s for the leader to exit, SIGKILL to
    the group, then reap the leader.  Reaping comes last so the group id stays reserved
    until the SIGKILL is sent."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _TERM_GRACE
    while not _exited(proc) and time.monotonic() < deadline:
        time.sleep(0.005)
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()  # in case the leader left its group
    with contextlib.suppress(Exception):
        proc.wait(timeout=2)


class _StderrLog:
    """A target's stderr, drained by a daemon thread and bounded whatever the target
    writes.

    Draining continuously means a chatty target never blocks on a full pipe (which
    would look like a hang).  The first ``head`` bytes go to the log file (if any) as
    they arrive; the last ``tail`` bytes are kept in memory, for :meth:`tail` (the crash
    messages) and for the file, where :meth:`close` appends them after a
    ``[... N bytes dropped ...]`` marker when something in between was left out.
    """

    def __init__(self, fd: int, file: Any, head: int = _STDERR_HEAD,
                 tail: int = _STDERR_TAIL) -> None:
        self._fd = fd
        self._file = file
        self._head_max = head
        self._tail_max = tail
        self._head = 0  # bytes written to the file from the start
        self._total = 0
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="pvspec-target-stderr",
                                        daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        """Read until end of file, or until asked to stop and nothing is ready (a process
        that escaped the group may hold the pipe open; then this still ends within
        :data:`_TERM_GRACE` s).  The thread owns the read ends and closes them."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        stop_by = float("inf")
        try:
            while time.monotonic() < stop_by:
                ready = dict(poller.poll())
                if ready.get(self._wake_r) and stop_by == float("inf"):
                    stop_by = time.monotonic() + _TERM_GRACE
                if not ready.get(self._fd):
                    if self._wake_r in ready:
                        break
                    continue
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:
                    break
                self._take(chunk)
        except OSError:
            pass
        finally:
            os.close(self._fd)
            os.close(self._wake_r)

    def _take(self, chunk: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            self._total += len(chunk)
            if self._head < self._head_max:
                part = chunk[:self._head_max - self._head]
                self._head += len(part)
                if self._file is not None:
                    with contextlib.suppress(OSError, ValueError):
                        self._file.write(part)
            self._tail += chunk
            if len(self._tail) > self._tail_max:
                del self._tail[:len(self._tail) - self._tail_max]

    def tail(self, n: int) -> str:
        with self._lock:
            data = bytes(self._tail[-n:]) if n > 0 else b""
        return data.decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Stop the reader (after the group is gone the pipe is at end of file, so it
        has read everything), then complete and close the file."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=2 * _TERM_GRACE + 1)
        os.close(self._wake_w)
        with self._lock:
            self._closed = True
            f, self._file = self._file, None
            if f is None:
                return
            rest = self._total - self._head
            keep = min(rest, len(self._tail))
            with contextlib.suppress(OSError, ValueError):
                if rest > keep:
                    f.write(f"\n[... {rest - keep} bytes dropped ...]\n".encode())
                if keep:
                    f.write(bytes(self._tail[len(self._tail) - keep:]))
            with contextlib.suppress(OSError, ValueError):
                f.close()


class ExecTarget:
    """A program speaking the stdio protocol on its stdin / stdout (logs on stderr).

    Every message in both directions is validated against the protocol schema; a hang
    (``timeout`` seconds per call), an exit, garbage, a schema-invalid message or a reply
    to the wrong request raises the matching :class:`TargetError`, and the process is
    restarted on the next :meth:`reset`.

    The program is a system under test, so nothing it does may exhaust the suite: it
    runs in its own process group (``pgid``), ended as a whole whenever the process is
    (children it left behind included); a reply line is at most ``max_line`` bytes;
    its stderr log keeps the first and last 256 KiB; target text quoted in an error is
    clipped to 2000 characters.
    """

    def __init__(self, command: str, timeout: float = 5.0, validate_requests: bool = True,
                 log_dir: str | None = None, max_line: int = 1 << 20) -> None:
        self.command = command
        self.argv = shlex.split(command)
        self.name = f"exec:{command}"
        self.timeout = timeout
        self.validate_requests = validate_requests
        self.max_line = max_line
        self.capabilities: frozenset[str] = frozenset()
        self.profile: dict[str, str] = {}
        self.protocol_version = ""
        self.target_name = ""
        self.abi_version = ""
        self.messages = 0
        self.pgid: int | None = None
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: _StderrLog | None = None
        self._buf = b""
        self._next_id = 0
        self._recent: collections.deque[str] = collections.deque(maxlen=8)
        self._cfg = Config()
        self._shims: list[Any] = []
        self._start()

    # process management
    def _start(self) -> None:
        self._kill()
        log_file = None
        if self._log_dir:
            os.makedirs(self._log_dir, exist_ok=True)
            log_file = open(os.path.join(self._log_dir, "target-stderr.log"), "ab",  # noqa: SIM115
                            buffering=0)
        err_r, err_w = os.pipe()
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=err_w,
                                          bufsize=0, start_new_session=True)
        except OSError as exc:
            os.close(err_r)
            if log_file is not None:
                log_file.close()
            raise TargetCrashed(f"cannot start {self.command!r}: {exc}", definite=True) from exc
        finally:
            os.close(err_w)
        self.pgid = self._proc.pid  # start_new_session: it leads its own group
        self._stderr = _StderrLog(err_r, log_file)
        self._buf = b""
        self._recent.clear()
        try:
            reply = self._request({"type": "init", "protocol_version": protocol.PROTOCOL_VERSION,
                                   "abi_version": abi.ABI_VERSION}, "init_ok")
            major = reply["protocol_version"].split(".")[0]
            if major != protocol.PROTOCOL_VERSION.split(".")[0]:
                raise ProtocolViolation(f"target speaks protocol "
                                        f"{_clip(reply['protocol_version'])}, "
                                        f"the suite {protocol.PROTOCOL_VERSION}", definite=True)
            self.protocol_version = reply["protocol_version"]  # what the target speaks
            self.abi_version = reply["abi_version"]
            if self.abi_version != abi.ABI_VERSION:
                raise ProtocolViolation(f"target implements ABI {_clip(self.abi_version)}, "
                                        f"the spec is ABI {abi.ABI_VERSION}", definite=True)
        except BaseException:
            self._kill()  # whatever went wrong, leave nothing running
            raise
        self.capabilities = frozenset(reply["capabilities"]) & (ALL_CAPABILITIES | {"abi_call"})
        self.profile = profile_of(reply.get("profile"), self.capabilities)
        self.target_name = clip_text(reply.get("name", ""), 200)
        self._shims = self._make_shims()

    def _make_shims(self) -> list[Any]:
        """The codecs the adapter asked to be spoken to in (``encodings``, with the
        ``abi_call`` capability): conformance/codec_shim.py."""
        from conformance.codec_shim import SHIMS

        listed = _listed(self.profile, "encodings")
        if listed and "abi_call" not in self.capabilities:
            self._kill()
            raise ProtocolViolation("the profile lists encodings "
                                    f"({_clip(', '.join(listed))}) but the capabilities lack "
                                    "abi_call", definite=True)
        return [SHIMS[a](functools.partial(self._abi_call, a), self.name)
                for a in listed if a in SHIMS]

    def _abi_call(self, abi_name: str, vm: int, vcpu: int, regs: dict[str, int],
                  memory: bytes, place: int | None) -> tuple[dict[str, int], bytes]:
        """One ``abi_call``: registers (their names say the calling convention) and the
        guest memory the call reads; the result registers and the memory it wrote."""
        body: dict[str, Any] = {
            "type": "abi_call", "abi": abi_name, "vm": vm, "vcpu": vcpu,
            "conv": "x86_64" if "rax" in regs else "arm64",
            "regs": {k: hex(v) for k, v in regs.items()}, "memory": memory.hex()}
        if place is not None:
            body["place"] = hex(place)
        reply = self._request(body, "abi_call_ok")
        return ({k: protocol.word(v) for k, v in reply["regs"].items()},
                bytes.fromhex(reply["memory"]))

    def encoded(self) -> dict[str, tuple[int, int]]:
        """Per codec: (calls sent as ``abi_call``, calls of its rows it has no form for)."""
        return {s.abi: (s.through, s.native) for s in self._shims}

    def _through_shims(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str,
                       native: Callable[[], dict[str, int]]) -> dict[str, int]:
        """The call through every codec the adapter speaks; ``native`` if none takes it."""
        send = native
        for shim in self._shims:
            send = functools.partial(shim.hypercall, vm, vcpu, regs, conv, send)
        return send()

    def _kill(self) -> None:
        """End the process group, close the pipes, complete the stderr log (whose tail
        stays readable for :meth:`stderr_tail`).  Idempotent."""
        proc, self._proc = self._proc, None
        self.pgid = None
        if proc is not None:
            _end_group(proc)
            for f in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    f.close()  # type: ignore[union-attr]
        if self._stderr is not None:
            self._stderr.close()

    def stderr_tail(self, n: int = 600) -> str:
        """The last ``n`` bytes the target wrote on stderr (decoded, stripped)."""
        return self._stderr.tail(n) if self._stderr is not None else ""

    def _died(self, what: str) -> TargetCrashed:
        proc = self._proc
        code = proc.poll() if proc else None
        if proc is not None and code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=0.5)
        how = f"exit status {code}" if code is not None and code >= 0 else (
            f"killed by signal {-code}" if code is not None else "closed its stdout")
        self._kill()  # first, so the stderr reader has drained everything
        tail = _clip(self.stderr_tail())
        return TargetCrashed(f"target {how} {what}" + (f"; stderr: {tail}" if tail else ""))

    # messages
    def _request(self, body: dict[str, Any], expect: str) -> dict[str, Any]:
        return self._exchange([(body, expect)])[0]

    def _exchange(self, requests: list[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        """Send the requests in one write, then read one reply per request, in order.

        The transport allows it (stdin is a stream; "exactly one reply per request, in
        order"), and a step's hypercall and observe sent together cost one round trip
        instead of two.  Every message is still validated and matched to its request.
        If a reply fails while later ones are still due, the process is killed, so no
        stale reply is ever read as the answer to a later request (the next reset
        restarts it).
        """
        if self._proc is None:
            self._start()
        sent: list[tuple[str, str, int]] = []
        lines: list[str] = []
        for body, expect in requests:
            self._next_id += 1
            text = _ENCODE(body)  # the body's JSON: the line, and the validation memo key
            if self.validate_requests and text not in _VALID_BODIES:
                try:
                    protocol.validate({**body, "msg_id": self._next_id})
                except protocol.SchemaError as exc:
                    raise TargetError(f"the suite built an invalid request: {exc}",
                                      definite=True) from None
                if len(_VALID_BODIES) >= 1 << 14:
                    _VALID_BODIES.clear()
                _VALID_BODIES.add(text)
            line = f'{text[:-1]},"msg_id":{self._next_id}}}'  # == _ENCODE(msg)
            self._recent.append("> " + line)
            self.messages += 1
            lines.append(line)
            sent.append((body["type"], expect, self._next_id))
        assert self._proc is not None and self._proc.stdin is not None
        replies: list[dict[str, Any]] = []
        try:
            try:
                self._proc.stdin.write(("\n".join(lines) + "\n").encode())
            except (BrokenPipeError, OSError):
                raise self._died(f"before {sent[0][0]} #{sent[0][2]}") from None
            for what, expect, msg_id in sent:
                replies.append(self._reply(what, expect, msg_id))
        except TargetError:
            if len(replies) + 1 < len(sent):
                self._kill()
            raise
        except BaseException:  # interrupted, or a bug: out of step with the target now
            self._kill()
            raise
        return replies

    def _reply(self, what: str, expect: str, msg_id: int) -> dict[str, Any]:
        """The next reply, which must answer request ``msg_id`` (of type ``what``)."""
        raw = self._readline(what, msg_id)
        self._recent.append("< " + raw[:300])
        try:
            reply = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: nesting too deep
            self._kill()
            raise ProtocolViolation(f"garbage on stdout in reply to {what}: "
                                    f"{_clip(repr(raw[:200]))}") from None
        try:
            protocol.validate(reply)
        except protocol.SchemaError as exc:
            self._kill()
            raise ProtocolViolation(f"schema-invalid reply to {what}: {_clip(exc)}") from None
        if reply.get("in_reply_to") != msg_id:
            self._kill()
            raise ProtocolViolation(f"reply {reply['type']} has in_reply_to="
                                    f"{reply.get('in_reply_to')}, expected {msg_id}")
        if reply["type"] == "error":
            raise TargetError(f"target error {reply['code']} in reply to {what}: "
                              f"{_clip(reply['text'])}", definite=reply["definite"],
                              code=reply["code"])
        if reply["type"] != expect:
            self._kill()
            raise ProtocolViolation(f"expected {expect}, got {reply['type']}")
        return reply

    def _readline(self, what: str, msg_id: int) -> str:
        """The next line on stdout, at most ``max_line`` bytes: a target that sends an
        endless line is stopped once the buffer passes that, so memory stays bounded
        (by ``max_line`` plus one read)."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        scanned = 0  # bytes of the buffer known to hold no newline
        while (end := self._buf.find(b"\n", scanned)) < 0:
            if len(self._buf) > self.max_line:
                break
            scanned = len(self._buf)
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self._kill()
                raise TargetTimeout(f"no reply to {what} #{msg_id} within "
                                    f"{self.timeout:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._died(f"while handling {what} #{msg_id}")
            self._buf += chunk
        if end < 0 or end > self.max_line:
            self._buf = b""
            self._kill()
            raise ProtocolViolation(f"reply line longer than {self.max_line} bytes in reply "
                                    f"to {what} #{msg_id}; the target was stopped")
        line, self._buf = self._buf[:end], self._buf[end + 1:]
        return line.decode("utf-8", "replace")

    # the Target protocol
    def reset(self, config: Config) -> None:
        self._cfg = config
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        self._request({"type": "reset", "config": config.sizes()}, "reset_ok")
        for shim in self._shims:
            shim.reset()

    @staticmethod
    def _hypercall_body(vm: int, vcpu: int, regs: Mapping[str, int], conv: str
                        ) -> dict[str, Any]:
        return {"type": "hypercall", "vm": vm, "vcpu": vcpu, "conv": conv,
                "regs": {k: hex(v) for k, v in regs.items()}}

    def hypercall(self, vm: int, vcpu: int, regs: Mapping[str, int], conv: str = "arm64"
                  ) -> dict[str, int]:
        def native() -> dict[str, int]:
            reply = self._request(self._hypercall_body(vm, vcpu, regs, conv), "hypercall_ok")
            return _hypercall_answer(reply)

        return self._through_shims(vm, vcpu, regs, conv, native) if self._shims \
            else native()

    def hypercall_observe(self, vm: int, vcpu: int, regs: Mapping[str, int],
                          conv: str = "arm64") -> tuple[dict[str, int], Observation]:
        """:meth:`hypercall` then :meth:`observe`, pipelined (needs ``observe``)."""
        seen: list[Observation] = []

        def native() -> dict[str, int]:
            reply, obs = self._exchange([(self._hypercall_body(vm, vcpu, regs, conv),
                                          "hypercall_ok"), ({"type": "observe"}, "observe_ok")])
            seen.append(_observation(obs))
            return _hypercall_answer(reply)

        if not self._shims:
            return native(), seen[0]
        out = self._through_shims(vm, vcpu, regs, conv, native)
        return out, seen[0] if seen else self.observe()

    def event(self, name: str, *args: int) -> None:
        self._request({"type": "event", "name": name, "args": list(args)}, "event_ok")

    def event_observe(self, name: str, *args: int) -> Observation:
        """:meth:`event` then :meth:`observe`, pipelined (needs ``observe``)."""
        return _observation(self._exchange([
            ({"type": "event", "name": name, "args": list(args)}, "event_ok"),
            ({"type": "observe"}, "observe_ok")])[1])

    def probe_access(self, vm: int, gfn: int) -> int:
        return protocol.word(self._request({"type": "probe_access", "vm": vm, "gfn": gfn},
                                           "probe_access_ok")["value"])

    def probe_dma(self, dev: int, gfn: int) -> int:
        return protocol.word(self._request({"type": "probe_dma", "dev": dev, "gfn": gfn},
                                           "probe_dma_ok")["value"])

    def probe_irq(self, vm: int, vcpu: int) -> int:
        return protocol.word(self._request({"type": "probe_irq", "vm": vm, "vcpu": vcpu},
                                           "probe_irq_ok")["value"])

    def observe(self) -> Observation:
        if "observe" not in self.capabilities:
            return observe(_NoFast(self), self._cfg)
        return _observation(self._request({"type": "observe"}, "observe_ok"))

    def recent(self) -> list[str]:
        """The last few lines exchanged (for error reports)."""
        return list(self._recent)

    def close(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(TargetError, OSError):
                self.timeout = min(self.timeout, 2.0)
                self._request({"type": "shutdown"}, "shutdown_ok")
        self._kill()


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps builds one per call
# Request bodies (their JSON text) already validated with some msg_id: the text decides
# what validation says of the body, and every msg_id the suite numbers is valid, so a
# repeated body (every observe, and aimed calls repeat constantly) is not checked again.
_VALID_BODIES: set[str] = set()


def _observation(reply: dict[str, Any]) -> Observation:
    irq = reply["irq"]  # words: numbers, or hex strings (one or the other, usually)
    return Observation(tuple(reply["access"]), tuple(reply["dma"]),
                       tuple(irq) if _INTS.issuperset(map(type, irq)) else
                       tuple([protocol.word(x) for x in irq]))


_INTS = frozenset({int})


def _hypercall_answer(reply: Mapping[str, Any]) -> dict[str, int]:
    """A hypercall_ok body as the Differ reads it: result registers, or (1.1) that the call
    did not return (``{"returned": 0}``) or trapped (``{"raised": ESR}``)."""
    if reply.get("returned") is False:
        return {"returned": 0}
    if "raised" in reply:
        return {"raised": protocol.word(reply["raised"])}
    return {k: int(v, 16) if type(v) is str else int(v)  # protocol.word, inlined
            for k, v in reply["regs"].items()}


def make_target(spec: str, timeout: float = 5.0, log_dir: str | None = None,
                max_line: int = 1 << 20) -> Target:
    """A target from its command-line name: ``spec``, ``reference`` or ``exec:COMMAND``
    (``max_line``: the longest reply line an exec target may send, in bytes)."""
    if spec == "spec":
        return SpecTarget()
    if spec == "reference":
        return ReferenceTarget()
    if spec.startswith("exec:"):
        return ExecTarget(spec[5:], timeout=timeout, log_dir=log_dir, max_line=max_line)
    if spec == "qemu-psci":
        from conformance.qemu_psci_target import QemuPsciTarget

        return QemuPsciTarget()
    if spec in ("kvm-arm64", "kvm-arm64:nvhe", "kvm-arm64:protected"):
        from conformance.kvm_psci_target import KvmPsciTarget

        return KvmPsciTarget("protected" if spec.endswith(":protected") else "nvhe")
    if spec == "xen-arm64":
        from conformance.xen_target import XenTarget

        return XenTarget()
    if spec in ("reference-ffa", "reference-xen"):
        from conformance.abi_targets import ReferenceFfaTarget, ReferenceXenTarget

        return ReferenceFfaTarget() if spec == "reference-ffa" else ReferenceXenTarget()
    raise ValueError(f"unknown target {spec!r}: use spec, reference, reference-ffa, "
                     f"reference-xen, qemu-psci, kvm-arm64[:nvhe|:protected], xen-arm64 or "
                     f"exec:COMMAND")
