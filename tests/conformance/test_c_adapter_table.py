"""The C example's hand-kept ABI table (examples/c-adapter/pvhv.c ``TABLE``) agrees with
the spec's (spec/hypercalls/abi.py) row for row: the rows of ABI table 1.0, which is what
the adapter declares, each with its function number, owning entity, calling convention,
argument widths, privilege and error space.  A table that drifts is refused here, before
the oracle would meet the difference as a failing call."""

from __future__ import annotations

import re
from pathlib import Path

from spec.hypercalls import abi, ffa, xen

SOURCE = Path(__file__).resolve().parents[2] / "examples" / "c-adapter" / "pvhv.c"
_ROW = re.compile(r'\{"(?P<name>\w+)",\s*(?P<number>0x[0-9a-fA-F]+|\d+),\s*(?P<entity>\d+),\s*'
                  r'(?P<smc64>[01]),\s*(?P<nargs>\d+),\s*\{(?P<widths>[\d,\s]*)\},\s*'
                  r'(?P<control>[01]),\s*(?P<space>PSCI|HV),\s*F_\w+\}')


def c_table(text: str) -> dict[str, tuple[object, ...]]:
    """name -> (number, entity, smc64, widths, control, space) of every TABLE row."""
    body = text[text.index("static const row TABLE[]"):]
    body = body[:body.index("};")]
    out = {}
    for m in _ROW.finditer(body):
        widths = tuple(int(w) for w in m["widths"].replace(" ", "").split(",") if w)
        nargs = int(m["nargs"])
        out[m["name"]] = (int(m["number"], 0), int(m["entity"]), bool(int(m["smc64"])),
                          widths[:nargs] if nargs else (), bool(int(m["control"])),
                          m["space"].lower())
    return out


def spec_table() -> dict[str, tuple[object, ...]]:
    return {r.name: (r.number, r.entity, r.smc64, tuple(a.width for a in r.args),
                     r.caller == "control", r.space)
            for r in abi.TABLE if r.since == "1.0"}


def differences(c: dict[str, tuple[object, ...]]) -> list[str]:
    spec = spec_table()
    out = [f"{n}: in the spec's ABI 1.0, missing in pvhv.c" for n in spec if n not in c]
    out += [f"{n}: in pvhv.c, not in the spec's ABI 1.0" for n in c if n not in spec]
    out += [f"{n}: pvhv.c {c[n]} != spec {spec[n]}" for n in spec if n in c and c[n] != spec[n]]
    return out


def test_the_c_table_is_the_spec_table():
    c = c_table(SOURCE.read_text())
    assert len(c) == len(spec_table())
    assert differences(c) == []


def test_a_drifted_c_table_is_refused():
    text = SOURCE.read_text()
    wrong_width = text.replace('{"EVTCHN_SEND", 0x32, 6, 1, 1, {16}',
                               '{"EVTCHN_SEND", 0x32, 6, 1, 1, {32}')
    assert wrong_width != text
    assert differences(c_table(wrong_width)) == [
        "EVTCHN_SEND: pvhv.c (50, 6, True, (32,), False, 'hv') != spec (50, 6, True, (16,), "
        "False, 'hv')"]
    unprivileged = text.replace('{"VM_PAUSE", 0x03, 6, 1, 1, {16}, 1,',
                                '{"VM_PAUSE", 0x03, 6, 1, 1, {16}, 0,')
    assert any(d.startswith("VM_PAUSE") for d in differences(c_table(unprivileged)))
    dropped = re.sub(r'\s*\{"IRQ_ACK"[^\n]*', "", text)
    assert differences(c_table(dropped)) == ["IRQ_ACK: in the spec's ABI 1.0, missing in pvhv.c"]


# --- the front ends' numbers (built with -DPVHV_ABIS): FF-A's and Xen's, as the codecs say
FRONT_ENDS = SOURCE.parent


def c_constants(text: str, pattern: str) -> dict[str, int]:
    """name -> value of every ``NAME = value`` the pattern (one group: the name) matches."""
    value = r"\s*=\s*(-?(?:0x[0-9A-Fa-f]+|\d+))"
    return {m[1]: int(m[2], 0) for m in re.finditer(pattern + value, text)}


def test_the_ffa_front_ends_ids_and_codes_are_the_codecs():
    text = (FRONT_ENDS / "ffa.c").read_text()
    ids = {m[1]: int(m[2], 16) for m in re.finditer(
        r"#define (FFA_[A-Z0-9_]+) 0x([0-9A-Fa-f]+)u?\b", text)}
    assert ids == dict(ffa.FUNCTIONS)
    codes = c_constants(text, r"\b(NOT_SUPPORTED|INVALID|BUSY|DENIED)")
    assert {("INVALID_PARAMETERS" if n == "INVALID" else n): v for n, v in codes.items()} \
        == {n: ffa.ERRORS[n] for n in ("NOT_SUPPORTED", "INVALID_PARAMETERS", "BUSY", "DENIED")}


def test_the_xen_front_ends_commands_and_errnos_are_the_codecs():
    text = (FRONT_ENDS / "xen.c").read_text()
    ops = c_constants(text, r"\bEVTCHNOP_([A-Z_]+)")
    assert ops and all(xen.Op[name] == value for name, value in ops.items()), ops
    assert set(ops) == {xen.COMMANDS[row].op.name for row in xen.COMMANDS}
    errnos = c_constants(text, r"\b(E[A-Z]+)_")
    assert all(xen.ERRNO[n] == v for n, v in errnos.items() if n in xen.ERRNO), errnos
    assert {"EPERM", "EINVAL", "ENOSPC"} <= set(errnos)
    defines = {m[1]: int(m[2], 0) for m in re.finditer(
        r"#define (HYPERCALL_EVENT_CHANNEL_OP|DOMID_SELF) (0x[0-9A-Fa-f]+|\d+)", text)}
    assert defines == {"HYPERCALL_EVENT_CHANNEL_OP": xen.HYPERCALL_EVENT_CHANNEL_OP,
                       "DOMID_SELF": xen.DOMID_SELF}
