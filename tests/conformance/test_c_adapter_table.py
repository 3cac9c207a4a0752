"""The C example's hand-kept ABI table (examples/c-adapter/pvhv.c ``TABLE``) agrees with
the spec's (spec/hypercalls/abi.py) row for row: the rows of ABI table 1.0, which is what
the adapter declares, each with its function number, owning entity, calling convention,
argument widths, privilege and error space.  A table that drifts is refused here, before
the oracle would meet the difference as a failing call."""

from __future__ import annotations

import re
from pathlib import Path

from spec.hypercalls import abi

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
