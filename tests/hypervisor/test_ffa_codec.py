"""The FF-A v1.1 memory-management codec (spec/hypercalls/ffa.py): its numbers against the
standard's, round trips over model calls and over arbitrary descriptor bytes, one test per
rule a malformed descriptor breaks, and planted codec bugs the properties catch."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec import machine, state
from spec.hypercalls import abi, codec, ffa, render

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 2**64 - 1)
VM = st.integers(0, 15)
SEND_ROWS = ("MEM_SHARE", "MEM_LEND", "MEM_DONATE")


# --- the standard's numbers ------------------------------------------------------------------
def test_function_ids_are_the_standards() -> None:
    """DEN0077A v1.1 (as in Linux arm_ffa.h, Hafnium ffa.h): fast calls of entity 4,
    numbers 0x60.., bit 30 for the SMC64 forms."""
    expected = {"FFA_ERROR": 0x84000060, "FFA_SUCCESS_32": 0x84000061,
                "FFA_SUCCESS_64": 0xC4000061, "FFA_VERSION": 0x84000063,
                "FFA_FEATURES": 0x84000064, "FFA_RX_RELEASE": 0x84000065,
                "FFA_RXTX_MAP_32": 0x84000066, "FFA_RXTX_MAP_64": 0xC4000066,
                "FFA_RXTX_UNMAP": 0x84000067, "FFA_ID_GET": 0x84000069,
                "FFA_MEM_DONATE_32": 0x84000071, "FFA_MEM_DONATE_64": 0xC4000071,
                "FFA_MEM_LEND_32": 0x84000072, "FFA_MEM_LEND_64": 0xC4000072,
                "FFA_MEM_SHARE_32": 0x84000073, "FFA_MEM_SHARE_64": 0xC4000073,
                "FFA_MEM_RETRIEVE_REQ_32": 0x84000074, "FFA_MEM_RETRIEVE_REQ_64": 0xC4000074,
                "FFA_MEM_RETRIEVE_RESP": 0x84000075, "FFA_MEM_RELINQUISH": 0x84000076,
                "FFA_MEM_RECLAIM": 0x84000077, "FFA_MEM_FRAG_RX": 0x8400007A,
                "FFA_MEM_FRAG_TX": 0x8400007B}
    assert expected == ffa.FUNCTIONS
    assert ffa.ERRORS == {"NOT_SUPPORTED": -1, "INVALID_PARAMETERS": -2, "NO_MEMORY": -3,
                          "BUSY": -4, "INTERRUPTED": -5, "DENIED": -6, "RETRY": -7,
                          "ABORTED": -8, "NO_DATA": -9}
    for name in ffa.FUNCTIONS:
        assert name.removesuffix("_32").removesuffix("_64") in ffa.CLAUSES


def test_layout_sizes_are_the_tables() -> None:
    sizes = {layout.name: layout.size for layout in ffa.LAYOUTS}
    assert sizes == {"memory transaction descriptor": 48,
                     "endpoint memory access descriptor": 16,
                     "memory access permissions descriptor": 4,
                     "composite memory region descriptor": 16,
                     "constituent memory region descriptor": 16,
                     "memory region relinquish descriptor": 16}
    header = {f.name: (f.offset, f.size) for f in ffa.TRANSACTION.fields}
    assert header["emad_size"] == (24, 4) and header["emad_count"] == (28, 4)
    assert header["emad_offset"] == (32, 4) and header["reserved"] == (36, 12)
    assert all(layout.table for layout in ffa.LAYOUTS)


def test_every_model_transaction_row_is_expressed() -> None:
    assert ffa.rows() == {"MEM_SHARE", "MEM_LEND", "MEM_DONATE", "MEM_RETRIEVE",
                          "MEM_RELINQUISH", "MEM_RECLAIM"}
    assert all(abi.BY_NAME[r].handler == r.lower() for r in ffa.rows())


# --- model calls round trip ------------------------------------------------------------------
def _model_answer(row: str, args: tuple[int, ...]) -> int:
    """What the model answers the control VM's call on the boot state."""
    regs = codec.encode_call(abi.BY_NAME[row], args, "arm64")
    _s2, out = machine.step(state.initial(), 0, 0, regs)
    return int(out["x0"]) - (1 << 64) if int(out["x0"]) >> 63 else int(out["x0"])


def check_send_round_trip(decode_request: Callable[..., Any], row: str, base: int,
                          count: int, who: int, perm: int, caller: int) -> None:
    """A model share / lend / donate sent as FF-A reads back as the same call, or as a
    violation exactly where the model refuses the call too (INVALID_PARAMETERS)."""
    req = ffa.encode(row, (base, count, who, perm), caller)
    if isinstance(req, ffa.Inexpressible):
        assert perm & 4 or (row == "MEM_DONATE" and perm != ffa.DONATE_PERM), req
        return
    assert ffa.function_name(req.regs["x0"]) == ffa.FUNCTION_OF_KIND[
        ffa.KIND_OF_ROW[row]] + "_64"
    got = decode_request(req.regs, req.tx, caller)
    if isinstance(got, ffa.Violation):
        assert ffa.INVALID in got.codes
        # the model refuses the same call made by the control VM (VM 0)
        refused = who == 0 or count == 0 or not perm & 1 or who >> caller & 1 or (
            row == "MEM_DONATE" and who & (who - 1))
        assert refused, got
        if caller == 0:
            assert _model_answer(row, (base, count, who, perm)) == ffa.INVALID
        return
    assert got == ffa.ModelCall(row, (base, count, who, perm))


@given(row=st.sampled_from(SEND_ROWS), base=u32, count=u32, who=u16,
       perm=st.integers(0, 7), caller=VM)
def test_send_round_trip(row: str, base: int, count: int, who: int, perm: int,
                         caller: int) -> None:
    check_send_round_trip(ffa.decode_request, row, base, count, who, perm, caller)


@given(handle=u16, base=u32, caller=VM, owner=VM)
def test_retrieve_relinquish_reclaim_round_trip(handle: int, base: int, caller: int,
                                                 owner: int) -> None:
    req = ffa.encode("MEM_RETRIEVE", (handle, base), caller, owner)
    assert isinstance(req, ffa.Request)
    parsed = ffa.parse_transaction(req.tx, len(req.tx), "retrieve_req")
    assert isinstance(parsed, ffa.Descriptor)
    assert parsed.sender == ffa.endpoint_of(owner) and parsed.handle == handle
    assert ffa.decode_request(req.regs, req.tx, caller, base) == ffa.ModelCall(
        "MEM_RETRIEVE", (handle, base))
    for row in ("MEM_RELINQUISH", "MEM_RECLAIM"):
        req = ffa.encode(row, (handle,), caller)
        assert isinstance(req, ffa.Request)
        assert ffa.decode_request(req.regs, req.tx, caller) == ffa.ModelCall(row, (handle,))


def check_hint_ignored(decode_request: Callable[..., Any], row: str, args: tuple[int, ...],
                       caller: int) -> None:
    """SMCCC 1.3: bit 16 of the function id is the caller's SVE hint; the call is the
    same call with or without it."""
    req = ffa.encode(row, args, caller, owner_vm=0)
    assert isinstance(req, ffa.Request)
    hinted = dict(req.regs, x0=req.regs["x0"] | ffa.SVE_HINT)
    assert decode_request(hinted, req.tx, caller) == decode_request(req.regs, req.tx, caller)


CALLS = st.one_of(
    st.tuples(st.sampled_from(SEND_ROWS), st.tuples(u32, st.integers(1, 64),
                                                    st.integers(2, 0xFFFE), st.just(3))),
    st.tuples(st.just("MEM_RETRIEVE"), st.tuples(u16, u32)),
    st.tuples(st.sampled_from(["MEM_RELINQUISH", "MEM_RECLAIM"]), st.tuples(u16)))


@given(call=CALLS)
def test_sve_hint_is_ignored(call: tuple[str, tuple[int, ...]]) -> None:
    check_hint_ignored(ffa.decode_request, call[0], call[1], 0)


# --- arbitrary bytes -------------------------------------------------------------------------
@st.composite
def constituents(draw: Any, noisy: bool) -> list[ffa.Constituent]:
    """Disjoint runs in ascending order; when noisy, sometimes reordered, overlapping,
    empty, unaligned or with reserved bits set."""
    out, at = [], draw(st.integers(0, 64)) * ffa.PAGE
    for _ in range(draw(st.integers(1 - noisy, 3))):
        pages = draw(st.integers(1, 8) | st.just(0)) if noisy else draw(st.integers(1, 8))
        address = draw(st.just(at) | u64) if noisy else at
        out.append(ffa.Constituent(address, pages,
                                   draw(st.sampled_from([0, 0, 0, 2])) if noisy else 0))
        at += (pages + (draw(st.integers(-1, 2)) if noisy else 1)) * ffa.PAGE
    return draw(st.permutations(out)) if noisy and draw(st.booleans()) else out


@st.composite
def descriptors(draw: Any) -> tuple[bytes, int]:
    """Descriptor bytes near the valid ones: built field by field, and (when noisy) some
    fields off, a few bytes overwritten or the stated length moved."""
    noisy = draw(st.booleans())

    def pick(clean: Any, *other: Any) -> Any:
        return draw(st.sampled_from([clean, clean, *other])) if noisy else clean

    sender = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(5, 40), min_size=1, max_size=3, unique=True))
    if noisy:
        ids = draw(st.lists(u16, min_size=1, max_size=3))
    receivers = [ffa.Access(e, pick(draw(st.sampled_from([1, 2, 0])), 6, 0x33),
                            pick(0, 1), 0, pick(0, 1)) for e in ids]
    parts = draw(constituents(noisy))
    gap_h = draw(st.sampled_from([b"", bytes(16), b"\x01" * 16]))
    eoff = 48 + len(gap_h)
    gap_c = draw(st.sampled_from([b"", bytes(16)]))
    coff = draw(st.sampled_from([0, eoff + 16 * len(receivers) + len(gap_c)]))
    receivers = [attrs.evolve(a, composite_offset=coff) for a in receivers]
    d = ffa.Descriptor(
        sender=sender, attributes=pick(draw(st.sampled_from([0, ffa.NORMAL_WB_INNER])),
                                       0x40, 0x30, 0x80),
        flags=pick(0, 1, 2, 8), handle=draw(u64), tag=draw(u64),
        receivers=tuple(receivers), constituents=tuple(parts) if coff else (),
        total_pages=pick(sum(c.pages for c in parts), draw(u32)),
        emad_offset=eoff, composite_offset=coff, gap_header=gap_h,
        gap_composite=gap_c if coff else b"")
    data = bytearray(ffa.encode_descriptor(d))
    for _ in range(pick(0, 1, 2)):  # a few bytes, anywhere
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    length = len(data) + pick(0, -16, -1, 1, 16)
    return bytes(data) + draw(st.binary(max_size=16)), max(0, length)


KINDS = st.sampled_from(["share", "lend", "donate", "retrieve_req", "retrieve_resp"])


def check_bytes_round_trip(parse: Callable[..., Any], data: bytes, length: int,
                           kind: Any) -> None:
    """Any bytes give a descriptor or a violation (never an exception), and a
    descriptor re-encodes to exactly the bytes it was read from."""
    got = parse(data, length, kind)
    assert isinstance(got, ffa.Descriptor | ffa.Violation)
    if isinstance(got, ffa.Descriptor):
        assert got.length == length
        assert ffa.encode_descriptor(got) == data[:length]
    else:
        assert got.rule in ffa.RULES


@given(desc=descriptors(), kind=KINDS)
def test_descriptor_bytes_round_trip(desc: tuple[bytes, int], kind: Any) -> None:
    check_bytes_round_trip(ffa.parse_transaction, *desc, kind)


@given(data=st.binary(max_size=160), length=st.integers(0, 200), kind=KINDS)
def test_random_bytes_never_raise(data: bytes, length: int, kind: Any) -> None:
    check_bytes_round_trip(ffa.parse_transaction, data, length, kind)


@given(data=st.binary(max_size=40), length=st.integers(0, 48), caller=u16)
def test_relinquish_bytes_round_trip(data: bytes, length: int, caller: int) -> None:
    got = ffa.parse_relinquish(data, length, caller)
    if isinstance(got, ffa.Relinquish):
        out = ffa.encode_relinquish(got)
        assert out == data[:len(out)] and got.endpoints and set(got.endpoints) == {caller}
    else:
        assert got.rule in ffa.RULES


# --- one test per rule -----------------------------------------------------------------------
def _good(kind: str = "share", receivers: int = 1, pages: tuple[int, ...] = (2,)) -> bytes:
    """A valid send descriptor from VM 0 to VMs 1.. (one constituent per page run, each
    separated by a page so they do not coalesce)."""
    eoff, coff = 48, 48 + 16 * receivers
    data = ffa.DATA_UNSPECIFIED if kind == "donate" else ffa.DATA_RW
    single = kind == "donate" or (kind == "lend" and receivers == 1)
    parts, at = [], 0x10000
    for n in pages:
        parts.append(ffa.Constituent(at, n))
        at += (n + 1) * ffa.PAGE
    d = ffa.Descriptor(ffa.endpoint_of(0), 0 if single else ffa.NORMAL_WB_INNER, 0, 0, 0,
                       tuple(ffa.Access(ffa.endpoint_of(v), data, 0, coff)
                             for v in range(1, receivers + 1)),
                       tuple(parts), sum(pages), emad_offset=eoff, composite_offset=coff)
    return ffa.encode_descriptor(d)


def _put(data: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def _regs(data: bytes, total: int | None = None, frag: int | None = None,
          addr: int = 0, pages: int = 0) -> dict[str, int]:
    n = len(data)
    return {"x0": ffa.FUNCTIONS["FFA_MEM_SHARE_64"], "x1": n if total is None else total,
            "x2": n if frag is None else frag, "x3": addr, "x4": pages}


C0 = 64  # composite offset of a one-receiver descriptor
K0 = C0 + 16  # first constituent

# rule -> (kind, descriptor bytes, stated length or None for all of it)
MALFORMED: dict[str, tuple[str, bytes, int | None]] = {
    "header_past_length": ("share", _good()[:40], None),
    "reserved_header": ("share", _put(_good(), 40, "<I", 1), None),
    "reserved_attributes": ("share", _put(_good(), 2, "<H", ffa.NORMAL_WB_INNER | 0x100),
                            None),
    "ns_bit": ("share", _put(_good(), 2, "<H", ffa.NORMAL_WB_INNER | ffa.ATTR_NS), None),
    "reserved_encoding": ("share", _put(_good(), 2, "<H", 0x3F), None),
    "attributes_for_kind": ("lend", _put(_good("lend"), 2, "<H", ffa.NORMAL_WB_INNER),
                            None),
    "emad_size": ("share", _put(_good(), 24, "<I", 32), None),
    "emad_offset": ("share", _put(_good(), 32, "<I", 56), None),
    "no_receivers": ("share", _put(_good(), 28, "<I", 0), None),
    "donate_receivers": ("donate", _good("donate", receivers=2), None),
    "emad_past_length": ("share", _put(_good(), 28, "<I", 9), None),
    "reserved_emad": ("share", _put(_good(), 48 + 8, "<Q", 1), None),
    "reserved_permissions": ("share", _put(_good(), 48 + 2, "<B", 0x12), None),
    "send_access_flags": ("share", _put(_good(), 48 + 3, "<B", 1), None),
    "receiver_twice": ("share", _put(_good(receivers=2), 64, "<H", ffa.endpoint_of(1)),
                       None),
    "receiver_is_sender": ("share", _put(_good(), 48, "<H", ffa.endpoint_of(0)), None),
    "composite_offsets_differ": ("share", _put(_good(receivers=2), 64 + 4, "<I", 0x70),
                                 None),
    "composite_offset": ("share", _put(_good(), 48 + 4, "<I", 0), None),
    "retrieve_composite": ("retrieve_req", _good(), None),
    "reserved_composite": ("share", _put(_good(), C0 + 8, "<Q", 1), None),
    "constituents_length": ("share", _put(_good(), C0 + 4, "<I", 2), None),
    "reserved_constituent": ("share", _put(_good(), K0 + 12, "<I", 1), None),
    "zero_pages": ("share", _put(_put(_good(), K0 + 8, "<I", 0), C0, "<I", 0), None),
    "unaligned_address": ("share", _put(_good(), K0, "<Q", 0x10800), None),
    "address_wraps": ("share", _put(_good(), K0, "<Q", 2**64 - ffa.PAGE), None),
    "overlap": ("share", _put(_good(pages=(2, 2)), K0 + 16, "<Q", 0x11000), None),
    "total_pages": ("share", _put(_good(pages=(2, 3)), C0, "<I", 4), None),
    "send_flags": ("share", _put(_good(), 4, "<I", 1 << 5), None),
    "share_clear": ("share", _put(_good(), 4, "<I", ffa.FLAG_CLEAR), None),
    "data_access": ("share", _put(_good(), 48 + 2, "<B", ffa.DATA_UNSPECIFIED), None),
    "instruction_access": ("share", _put(_good(), 48 + 2, "<B",
                                         ffa.DATA_RW | ffa.INSTR_X << 2), None),
}
# rules judged outside the descriptor bytes: the registers, the caller, the relinquish
# descriptor and the reclaim flags
ELSEWHERE = {"length_past_buffer", "fragment_past_total", "fragmented", "buffer_address",
             "no_tx_buffer", "sender_not_caller", "relinquish_length",
             "relinquish_endpoints", "relinquish_flags", "reclaim_flags"}


def test_every_rule_has_its_malformed_case() -> None:
    assert set(MALFORMED) | ELSEWHERE == set(ffa.RULES)
    assert not set(MALFORMED) & ELSEWHERE


@pytest.mark.parametrize("kind", ["share", "lend", "donate"])
@pytest.mark.parametrize("receivers", [1, 2])
def test_the_good_descriptors_are_good(kind: str, receivers: int) -> None:
    """The base of every malformed case is accepted, so each case breaks one rule."""
    if kind == "donate" and receivers == 2:
        return
    data = _good(kind, receivers, (2, 3))
    got = ffa.decode_request(dict(_regs(data), x0=ffa.FUNCTIONS[
        ffa.FUNCTION_OF_KIND[kind] + "_32"]), data, 0)
    assert isinstance(got, ffa.Inexpressible)  # two separate runs: no model form
    assert "contiguous" in got.reason
    data = _good(kind, receivers)
    got = ffa.decode_request(dict(_regs(data), x0=ffa.FUNCTIONS[
        ffa.FUNCTION_OF_KIND[kind] + "_32"]), data, 0)
    assert isinstance(got, ffa.ModelCall) and got.args[:3] == (0x10, 2, (
        0b110 if receivers == 2 else 0b10))


@pytest.mark.parametrize("rule", sorted(MALFORMED))
def test_malformed_descriptor(rule: str) -> None:
    kind, data, length = MALFORMED[rule]
    got = ffa.parse_transaction(data, len(data) if length is None else length, kind)  # type: ignore[arg-type]
    assert isinstance(got, ffa.Violation) and got.rule == rule, got
    assert got.codes and got.codes <= set(ffa.ERRORS.values())


def test_register_rules() -> None:
    data = _good()
    n = len(data)
    assert ffa.check_lengths(_regs(data), n) == (n, n)
    cases = {"fragment_past_total": _regs(data, frag=n + 16),
             "fragmented": _regs(data, total=n + 16),
             "length_past_buffer": _regs(data),
             "buffer_address": _regs(data, addr=0x4000, pages=1)}
    for rule, regs in cases.items():
        got = ffa.check_lengths(regs, n - 16 if rule == "length_past_buffer" else n + 64)
        assert isinstance(got, ffa.Violation) and got.rule == rule, (rule, got)
    assert ffa.RULES["fragmented"].codes == {ffa.NOT_SUPPORTED, ffa.INVALID}
    got = ffa.check_lengths(_regs(data), None)
    assert isinstance(got, ffa.Violation) and got.rule == "no_tx_buffer"
    # SMC32 reads w3 (the upper half of x3 is ignored); SMC64 reads all of x3
    high = _regs(data, addr=1 << 40)
    assert ffa.check_lengths(dict(high, x0=ffa.FUNCTIONS["FFA_MEM_SHARE_32"]), n) == (n, n)
    got = ffa.check_lengths(high, n)
    assert isinstance(got, ffa.Violation) and got.rule == "buffer_address"


def test_sender_must_be_the_caller() -> None:
    data = _good()
    assert isinstance(ffa.decode_request(_regs(data), data, 0), ffa.ModelCall)
    got = ffa.decode_request(_regs(data), data, 3)
    assert isinstance(got, ffa.Violation) and got.rule == "sender_not_caller"
    assert got.codes == {ffa.INVALID, ffa.DENIED}


def test_relinquish_and_reclaim_rules() -> None:
    me = ffa.endpoint_of(2)
    good = ffa.encode_relinquish(ffa.Relinquish(7, 0, (me,)))
    assert ffa.parse_relinquish(good, len(good), me) == ffa.Relinquish(7, 0, (me,))
    cases = {"relinquish_length": (good[:17], len(good)),
             "relinquish_endpoints": (ffa.encode_relinquish(ffa.Relinquish(7, 0, (me + 1,))),
                                      None),
             "relinquish_flags": (_put(good, 8, "<I", 4), None)}
    for rule, (data, length) in cases.items():
        got = ffa.parse_relinquish(data, len(data) if length is None else length, me)
        assert isinstance(got, ffa.Violation) and got.rule == rule, (rule, got)
    empty = ffa.encode_relinquish(ffa.Relinquish(7, 0, ()))
    got = ffa.parse_relinquish(empty, len(empty), me)
    assert isinstance(got, ffa.Violation) and got.rule == "relinquish_endpoints"
    regs = {"x0": ffa.FUNCTIONS["FFA_MEM_RECLAIM"], "x1": 7, "x2": 0, "x3": 8}
    got = ffa.decode_request(regs, b"", 2)
    assert isinstance(got, ffa.Violation) and got.rule == "reclaim_flags"
    assert ffa.decode_request(dict(regs, x3=0), b"", 2) == ffa.ModelCall("MEM_RECLAIM", (7,))


def test_what_the_model_cannot_express_is_said_so() -> None:
    assert isinstance(ffa.encode("MEM_SHARE", (0, 1, 2, 7), 0), ffa.Inexpressible)
    assert isinstance(ffa.encode("MEM_DONATE", (0, 1, 2, 1), 0), ffa.Inexpressible)
    assert isinstance(ffa.encode("MEM_RETRIEVE", (0, 1), 0), ffa.Inexpressible)
    data = _good(receivers=2)
    for at, value, why in ((48 + 2, ffa.DATA_RO, "rights"), (48, 0x8001, "endpoint"),
                           (4, ffa.FLAG_CLEAR, "zeroing")):
        mutated = _put(data, at, "<H" if value > 0xFF or at == 48 else "<B", value)
        if at == 4:
            mutated = _put(_good("lend", receivers=2), 4, "<I", value)
        kind = "lend" if at == 4 else "share"
        got = ffa.decode_request(dict(_regs(mutated), x0=ffa.FUNCTIONS[
            ffa.FUNCTION_OF_KIND[kind] + "_64"]), mutated, 0)
        assert isinstance(got, ffa.Inexpressible) and why in got.reason, (why, got)
    device = _put(data, 2, "<H", 1 << 4)
    got = ffa.decode_request(_regs(device), device, 0)
    assert isinstance(got, ffa.Inexpressible) and "attributes" in got.reason


@given(parts=st.permutations([(0x10000, 1), (0x11000, 2), (0x13000, 1)]))
def test_touching_constituents_coalesce_in_any_order(parts: list[tuple[int, int]]) -> None:
    d = ffa.parse_transaction(_good(), len(_good()), "share")
    assert isinstance(d, ffa.Descriptor)
    d = attrs.evolve(d, constituents=tuple(ffa.Constituent(a, n) for a, n in parts),
                     total_pages=4)
    data = ffa.encode_descriptor(d)
    assert ffa.decode_request(_regs(data), data, 0) == ffa.ModelCall(
        "MEM_SHARE", (0x10, 4, 0b10, 3))


# --- answers ---------------------------------------------------------------------------------
def _success(handle: int, fid: str = "FFA_SUCCESS_32") -> dict[str, int]:
    return {"x0": ffa.FUNCTIONS[fid], "x1": 0, "x2": handle & 0xFFFF_FFFF,
            "x3": handle >> 32}


def _error(code: int) -> dict[str, int]:
    return {"x0": ffa.FUNCTIONS["FFA_ERROR"], "x1": 0, "x2": code & 0xFFFF_FFFF, "x3": 0}


def check_handle_read(decode: Callable[..., ffa.Reading], row: str, handle: int,
                      fid: str) -> None:
    """FFA_SUCCESS's handle is w2 (low half) and w3 (high half)."""
    r = decode(row, _success(handle, fid))
    assert r.ok and r.value == handle


def check_error_read(decode: Callable[..., ffa.Reading], row: str, code: int) -> None:
    """FFA_ERROR's code is w2 as a signed 32-bit number, standing for the model errors
    of the same number."""
    r = decode(row, _error(code))
    assert not r.ok and r.code == code
    assert r.errors == ffa.expresses(code, row)
    assert all(abi.HV_ERRORS[e] == code or (code, e, row in SEND_ROWS) == (
        ffa.DENIED, "INVALID_PARAMETERS", True) for e in r.errors)
    if code in abi.HV_ERRORS.values():
        assert any(abi.HV_ERRORS[e] == code for e in r.errors)


@given(row=st.sampled_from(SEND_ROWS), handle=u64,
       fid=st.sampled_from(["FFA_SUCCESS_32", "FFA_SUCCESS_64"]))
def test_success_carries_the_handle(row: str, handle: int, fid: str) -> None:
    check_handle_read(ffa.decode, row, handle, fid)


@given(row=st.sampled_from(sorted(ffa.rows())), code=st.integers(-9, -1))
def test_error_codes_read(row: str, code: int) -> None:
    check_error_read(ffa.decode, row, code)


def test_answers_that_are_no_answer() -> None:
    assert not ffa.decode("MEM_SHARE", {"x0": ffa.FUNCTIONS["FFA_MEM_RETRIEVE_RESP"]}).ok
    assert not ffa.decode("MEM_RETRIEVE", _success(1)).ok
    assert ffa.decode("MEM_RECLAIM", _success(0)).ok
    assert not ffa.decode("MEM_RECLAIM", {"x0": 0}).ok
    assert ffa.decode("MEM_SHARE", _error(-7)).errors == frozenset()  # RETRY: no model error


def _response(kind_type: int, caller: int, perms: int, parts: tuple[tuple[int, int], ...]
              ) -> bytes:
    coff = 64
    d = ffa.Descriptor(ffa.endpoint_of(0), ffa.NORMAL_WB_INNER, kind_type << ffa.TYPE_SHIFT,
                       5, 0, (ffa.Access(ffa.endpoint_of(caller), perms, 0, coff),),
                       tuple(ffa.Constituent(a, n) for a, n in parts),
                       sum(n for _, n in parts), composite_offset=coff)
    return ffa.encode_descriptor(d)


@given(base=st.integers(0, 2**20), n=st.integers(1, 16), caller=VM,
       kind=st.sampled_from([1, 2, 3]), data=st.sampled_from([1, 2]),
       instr=st.sampled_from([0, 1, 2]))
def test_retrieve_response_read(base: int, n: int, caller: int, kind: int, data: int,
                                instr: int) -> None:
    rx = _response(kind, caller, data | instr << 2, ((base * ffa.PAGE, n),))
    out = {"x0": ffa.FUNCTIONS["FFA_MEM_RETRIEVE_RESP"], "x1": len(rx), "x2": len(rx)}
    r = ffa.decode("MEM_RETRIEVE", out, rx, caller)
    assert r.ok and (r.base, r.count) == (base, n)
    assert r.perm == (1 if data == 1 else 3) | (4 if instr == 2 else 0)
    assert r.kind == ffa.KIND_OF_TYPE[kind]
    assert not ffa.decode("MEM_RETRIEVE", out, rx, (caller + 1) % 16).ok
    assert not ffa.decode("MEM_RETRIEVE", dict(out, x2=len(rx) - 16), rx, caller).ok


# --- mailbox ---------------------------------------------------------------------------------
def test_mailbox_rules() -> None:
    mb = ffa.Mailbox()
    assert ffa.rx_release(mb)[1] == ffa.DENIED
    assert ffa.rxtx_unmap(mb)[1] == ffa.INVALID
    for tx, rx, pages in ((0x1000, 0x2000, 0), (0x1001, 0x3000, 1), (0x1000, 0x1000, 1),
                          (0x1000, 0x2000, 2), (0x1000, 0x9000, ffa.RXTX_MAX_PAGES + 1)):
        assert ffa.rxtx_map(mb, tx, rx, pages) == (mb, ffa.INVALID), (tx, rx, pages)
    mb, rc = ffa.rxtx_map(mb, 0x1000, 0x2000, 1)
    assert rc == 0 and mb.mapped
    assert ffa.rxtx_map(mb, 0x5000, 0x6000, 1) == (mb, ffa.DENIED)
    assert ffa.rx_release(mb)[1] == ffa.DENIED  # RX is not the caller's yet
    mb, rc = ffa.rx_deliver(mb)
    assert rc == 0 and mb.rx_owned
    assert ffa.rx_deliver(mb) == (mb, ffa.BUSY)  # the caller still owns RX
    mb, rc = ffa.rx_release(mb)
    assert rc == 0 and not mb.rx_owned
    mb, rc = ffa.rxtx_unmap(mb)
    assert rc == 0 and not mb.mapped
    assert ffa.MAILBOX_RULES


# --- planted codec bugs the properties catch -------------------------------------------------
def _falsified(test: Callable[[], None]) -> bool:
    try:
        settings(max_examples=300, database=None, derandomize=True,
                 suppress_health_check=list(HealthCheck))(test)()
    except AssertionError:
        return True
    return False


def _parse_count_at_wrong_offset(data: bytes, length: int, kind: Any) -> Any:
    """The composite's page count read where its constituent count is (offset 4)."""
    got = ffa.parse_transaction(data, length, kind)
    if isinstance(got, ffa.Descriptor) and got.composite_offset:
        return attrs.evolve(got, total_pages=struct.unpack_from(
            "<I", data, got.composite_offset + 4)[0])
    return got


def _decode_halves_swapped(row: str, out: dict[str, int], *rest: Any) -> ffa.Reading:
    return ffa.decode(row, dict(out, x2=out.get("x3", 0), x3=out.get("x2", 0)), *rest)


def _decode_errno_sign_slip(row: str, out: dict[str, int], *rest: Any) -> ffa.Reading:
    """w2 read as -errno (a positive number negated), Xen style."""
    r = ffa.decode(row, out, *rest)
    if not r.ok and r.code:
        code = -(out["x2"] & 0xFFFF_FFFF)
        return attrs.evolve(r, code=code, errors=ffa.expresses(code, row))
    return r


def _decode_request_strict_id(regs: dict[str, int], tx: bytes, caller: int,
                              base: int = 0) -> Any:
    """A function-id check that treats the SVE hint bit as part of the id."""
    if regs["x0"] & ffa.SVE_HINT:
        return ffa.Inexpressible("unknown function id")
    return ffa.decode_request(regs, tx, caller, base)


def test_planted_wrong_offset_is_caught() -> None:
    @given(desc=descriptors(), kind=KINDS)
    def prop(desc: tuple[bytes, int], kind: Any) -> None:
        check_bytes_round_trip(_parse_count_at_wrong_offset, *desc, kind)

    assert _falsified(prop)


def test_planted_handle_halves_swapped_is_caught() -> None:
    @given(row=st.sampled_from(SEND_ROWS), handle=u64)
    def prop(row: str, handle: int) -> None:
        check_handle_read(_decode_halves_swapped, row, handle, "FFA_SUCCESS_32")

    assert _falsified(prop)


def test_planted_sign_slip_is_caught() -> None:
    @given(row=st.sampled_from(SEND_ROWS), code=st.integers(-9, -1))
    def prop(row: str, code: int) -> None:
        check_error_read(_decode_errno_sign_slip, row, code)

    assert _falsified(prop)


def test_planted_hint_rejection_is_caught() -> None:
    @given(call=CALLS)
    def prop(call: tuple[str, tuple[int, ...]]) -> None:
        check_hint_ignored(_decode_request_strict_id, call[0], call[1], 0)

    assert _falsified(prop)


def test_the_properties_pass_the_real_codec() -> None:
    """The same harness does not reject the codec itself (so a catch above is the
    plant's)."""
    @given(row=st.sampled_from(SEND_ROWS), handle=u64, code=st.integers(-9, -1),
           call=CALLS)
    def prop(row: str, handle: int, code: int, call: tuple[str, tuple[int, ...]]) -> None:
        check_handle_read(ffa.decode, row, handle, "FFA_SUCCESS_32")
        check_error_read(ffa.decode, row, code)
        check_hint_ignored(ffa.decode_request, call[0], call[1], 0)

    assert not _falsified(prop)


# --- pvspec abi and docs/ABI.md --------------------------------------------------------------
def test_pvspec_abi_lists_ffa_with_its_standard_and_ids() -> None:
    text = render.text_table()
    assert any(line.split()[:1] == ["ffa"] and "DEN0077A v1.1" in line
               for line in text.splitlines())
    for name, fid in ffa.FUNCTIONS.items():
        assert any(line.split()[:2] == [name, f"{fid:#010x}"] for line in text.splitlines())


def test_abi_markdown_has_the_ffa_tables() -> None:
    md = render.markdown()
    section = md[md.index("## Codec: FF-A"):]
    for name, fid in ffa.FUNCTIONS.items():
        assert f"| {name} | `{fid:#010x}` |" in section
    for rule in ffa.RULES.values():
        assert f"| {rule.id} | {rule.text} |" in section
    for layout in ffa.LAYOUTS:
        assert f"**{layout.name}** ({layout.table}" in section


# --- the one-layout reader the proofs run on symbolic bytes (spec.prove ffa:<row>) ---------
def _one_args(kind: str, base: int, count: int, perm_rw: bool) -> tuple[int, int, int]:
    perm = ffa.DONATE_PERM if kind == "donate" else (3 if perm_rw else 1)
    return base, count, perm


@given(kind=st.sampled_from(ffa.SEND_KINDS), me=st.integers(0, 14), vm=VM, base=u32,
       count=st.integers(1, 0xFFFF_FFFF), rw=st.booleans())
def test_one_layout_is_the_general_codecs(kind: str, me: int, vm: int, base: int, count: int,
                                          rw: bool) -> None:
    """The single-borrower send the proofs decode symbolically is, concretely, the one the
    general codec sends and parses, and reads as the same call."""
    if vm == me:
        return
    base, count, perm = _one_args(kind, base, count, rw)
    row = ffa.ROW_OF_KIND[kind]
    args = (base, count, 1 << vm, perm)
    req = ffa.encode(row, args, me)
    assert isinstance(req, ffa.Request)
    tx = ffa.encode_descriptor(ffa.one_descriptor(kind, me, base, count, vm, perm))
    assert tx == req.tx and len(tx) == ffa.ONE_LENGTH
    assert ffa.read_one(tx, kind, me) == ffa.decode_request(req.regs, tx, me) == \
        ffa.ModelCall(row, args)
    assert ffa.decode_one(req.regs, tx, kind, me) == codec.Call(abi.BY_NAME[row], args)
    assert ffa.one_reads_back(kind, me, base, count, vm, perm)


@given(kind=st.sampled_from(ffa.SEND_KINDS), me=st.integers(0, 14), vm=VM, base=u32,
       count=st.integers(1, 64), at=st.integers(0, ffa.ONE_LENGTH - 1),
       byte=st.integers(0, 255))
def test_where_the_one_layout_reader_reads_a_call_the_general_parser_agrees(
        kind: str, me: int, vm: int, base: int, count: int, at: int, byte: int) -> None:
    """A byte of a valid descriptor changed: where the restricted reader still reads a
    call, the general parser reads the same one (it never accepts what the codec would
    not)."""
    if vm == me:
        return
    base, count, perm = _one_args(kind, base, count, True)
    tx = bytearray(ffa.encode_descriptor(ffa.one_descriptor(kind, me, base, count, vm, perm)))
    tx[at] = byte
    regs = ffa.encode(ffa.ROW_OF_KIND[kind], (base, count, 1 << vm, perm), me)
    assert isinstance(regs, ffa.Request)
    one = ffa.read_one(bytes(tx), kind, me)
    if isinstance(one, ffa.ModelCall):
        assert ffa.decode_request(regs.regs, bytes(tx), me) == one


@given(row=st.sampled_from(SEND_ROWS), handle=st.integers(0, 2**63 - 1),
       error=st.sampled_from(["DENIED", "INVALID_PARAMETERS", "NO_MEMORY"]))
def test_an_answer_reads_back_through_decode(row: str, handle: int, error: str) -> None:
    """The answer the proofs encode (handle halves in w2/w3, the error code in w2) is read
    by the oracle's :func:`ffa.decode` as the model's result."""
    ok = ffa.decode(row, ffa.answer_regs(row, handle))
    assert ok.ok and ok.value == handle and ffa.answer_reads_back(row, handle)
    code = abi.BY_NAME[row].error(error) & (2**64 - 1)
    bad = ffa.decode(row, ffa.answer_regs(row, code))
    assert not bad.ok and error in bad.errors and ffa.answer_reads_back(row, code)
