"""Device configuration space (VIRTIO 1.3 §2.5): little-endian layouts and the generation counter.

Two halves:

* :class:`Layout` describes a device's config structure (fields, widths, the feature
  that makes a field exist) and encodes/decodes it little-endian (§2.5 note).
* A small timed model of the generation counter: the device holds a sequence of config
  *versions*; a driver performs the §2.5.1 read loop (generation, fields, generation,
  retry on mismatch).  :func:`check_generation_trace` is the device rule (§2.5,
  §4.1.4.3.1, §4.2.2.1): equal generations around a read must mean one version was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from spec.virtio.verdict import Violation


def pack_le(value: int, size: int) -> bytes:
    """``value`` as ``size`` little-endian bytes (§2.5: multi-byte fields are LE)."""
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def unpack_le(data: bytes) -> int:
    return int.from_bytes(data, "little")


@attrs.frozen
class Field:
    name: str
    offset: int
    size: int  # bytes: 1, 2, 4, 8 or a byte array length
    feature: int | None = None  # the feature bit that makes the field exist (§2.5.1)
    array: bool = False  # a byte array (e.g. a MAC address), not an integer


@attrs.frozen
class Layout:
    fields: tuple[Field, ...]

    @property
    def size(self) -> int:
        return max((f.offset + f.size for f in self.fields), default=0)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def field_at(self, offset: int) -> Field | None:
        for f in self.fields:
            if f.offset <= offset < f.offset + f.size:
                return f
        return None

    def encode(self, values: Mapping[str, int | bytes]) -> bytes:
        """The config bytes; absent fields (and padding) are zero."""
        out = bytearray(self.size)
        for f in self.fields:
            v = values.get(f.name, 0)
            raw = bytes(v).ljust(f.size, b"\0")[: f.size] if f.array else pack_le(int(v), f.size)
            out[f.offset : f.offset + f.size] = raw
        return bytes(out)

    def decode(self, data: bytes) -> dict[str, int | bytes]:
        out: dict[str, int | bytes] = {}
        for f in self.fields:
            if f.offset + f.size > len(data):
                continue  # a shorter config space simply lacks the tail fields
            raw = data[f.offset : f.offset + f.size]
            out[f.name] = bytes(raw) if f.array else unpack_le(raw)
        return out


def layout(
    *specs: tuple[str, int] | tuple[str, int, int | None] | tuple[str, int, int | None, bool],
) -> Layout:
    """Build a packed layout from ``(name, size[, feature[, array]])`` in declaration order."""
    fields, off = [], 0
    for spec in specs:
        name, size = spec[0], spec[1]
        feature = spec[2] if len(spec) > 2 else None
        array = bool(spec[3]) if len(spec) > 3 else False
        fields.append(Field(name, off, size, feature, array))
        off += size
    return Layout(tuple(fields))


# --- driver-side access rules (§2.5.1) -------------------------------------------------


def check_driver_config_access(
    lay: Layout, offered: int, offset: int, size: int
) -> Violation | None:
    """§2.5.1: a driver touches an optional field only if its feature is offered."""
    for f in lay.fields:
        overlaps = offset < f.offset + f.size and f.offset < offset + size
        if overlaps and f.feature is not None and not (offered >> f.feature) & 1:
            return Violation(
                "VIRTIO-2.5.1-DRV-CHECK-FEATURE",
                "driver",
                f"read of {f.name} whose feature {f.feature} is not offered",
            )
    return None


def check_driver_size_tolerance(required: int, presented: int, accepted: bool) -> Violation | None:
    """§2.5.1: a driver accepts any config space at least as large as it needs."""
    if presented >= required and not accepted:
        return Violation(
            "VIRTIO-2.5.1-DRV-NO-SIZE-LIMIT", "driver", f"refused {presented} >= {required} bytes"
        )
    return None


# --- the generation counter --------------------------------------------------------------


@attrs.frozen
class ConfigTimeline:
    """A device's config over time: ``versions[i]`` is current from ``change_times[i-1]``.

    ``generations[i]`` is what the device reports while version ``i`` is current; a
    conforming device gives neighbouring versions different generations.
    """

    versions: tuple[bytes, ...]
    change_times: tuple[int, ...]  # strictly increasing, len(versions) - 1 entries
    generations: tuple[int, ...]

    def version_at(self, t: int) -> int:
        return sum(1 for c in self.change_times if c <= t)

    def read(self, t: int, offset: int, size: int) -> bytes:
        return self.versions[self.version_at(t)][offset : offset + size]

    def generation(self, t: int) -> int:
        return self.generations[self.version_at(t)] & 0xFFFFFFFF


def conforming_generations(n_versions: int, width_bits: int = 8) -> tuple[int, ...]:
    """Bump on every change (the counter's width only matters past 2^width changes)."""
    return tuple(i % (1 << width_bits) for i in range(n_versions))


@attrs.frozen
class ReadEvent:
    time: int
    kind: str  # "gen" | "cfg"
    value: int | bytes
    version: int  # which config version the device actually served (the oracle knows)


def driver_read_loop(
    dev: ConfigTimeline, fields: Sequence[tuple[int, int]], start: int = 0, max_tries: int = 64
) -> tuple[list[bytes], list[ReadEvent], int]:
    """§2.5.1 loop: generation, each field, generation; retry until they match.

    One register access per time step.  Returns the field values of the last attempt, the
    full trace, and the time after the loop.
    """
    t, trace = start, []
    for _ in range(max_tries):
        before = dev.generation(t)
        trace.append(ReadEvent(t, "gen", before, dev.version_at(t)))
        t += 1
        values = []
        for off, size in fields:
            v = dev.read(t, off, size)
            trace.append(ReadEvent(t, "cfg", v, dev.version_at(t)))
            values.append(v)
            t += 1
        after = dev.generation(t)
        trace.append(ReadEvent(t, "gen", after, dev.version_at(t)))
        t += 1
        if after == before:
            return values, trace, t
    raise RuntimeError("config never settled")


def check_generation_trace(
    trace: Sequence[ReadEvent], requirement: str = "VIRTIO-4.1.4.3.1-DEV-CONFIG-GENERATION"
) -> Violation | None:
    """Device rule (§2.5, §4.1.4.3.1, §4.2.2.1): equal generations bracket one version.

    For every pair of consecutive generation reads with the same value, the config reads
    between them must all have been served from a single version, and that version must
    be the one current at the first generation read.
    """
    last_gen: ReadEvent | None = None
    between: list[ReadEvent] = []
    for ev in trace:
        if ev.kind == "gen":
            if last_gen is not None and ev.value == last_gen.value:
                versions = {e.version for e in between} | {last_gen.version}
                if len(versions) > 1:
                    return Violation(
                        requirement,
                        "device",
                        f"config changed (versions {sorted(versions)}) under generation "
                        f"{last_gen.value}",
                    )
            last_gen, between = ev, []
        else:
            between.append(ev)
    return None
