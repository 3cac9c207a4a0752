"""Generate ``reference_impl/_abi_constants.py`` from the spec's ABI table.

The reference hypervisor never imports :mod:`spec` at run time; the only thing it shares
with the spec is this generated file of *numbers* (function ids, argument widths, error
values, register names), so the implementation's semantics stay independent while the
wire format cannot drift.  ``python -m reference_impl.gen_abi`` rewrites the file;
``tests/reference/test_gen_abi.py`` fails when it is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

TARGET = Path(__file__).with_name("_abi_constants.py")


def render() -> str:
    """The text of the constants module for the ABI table currently in the spec."""
    from spec.hypercalls import abi

    out = [
        '"""ABI constants generated from spec.hypercalls.abi; do not edit.',
        "",
        "Regenerate with ``python -m reference_impl.gen_abi``.",
        '"""',
        "",
        "# fmt: off",
        f"ABI_VERSION = {abi.ABI_VERSION!r}",
        "",
        "PSCI_ERRORS: dict[str, int] = {",
        *(f"    {k!r}: {v}," for k, v in abi.PSCI_ERRORS.items()),
        "}",
        "HV_ERRORS: dict[str, int] = {",
        *(f"    {k!r}: {v}," for k, v in abi.HV_ERRORS.items()),
        "}",
        "SMCCC_ERRORS: dict[str, int] = {",
        *(f"    {k!r}: {v}," for k, v in abi.SMCCC_ERRORS.items()),
        "}",
        f"ARCH_WORKAROUNDS = {tuple(hex(f) for f in abi.ARCH_WORKAROUNDS)!r}".replace("'", ""),
        "",
        "# name, function id, smc64, caller, error space, handler, ((arg name, width), ...)",
        "ROWS: tuple[tuple[str, int, bool, str, str, str, tuple[tuple[str, int], ...]], ...] = (",
    ]
    for row in abi.TABLE:
        args = "".join(f"({a.name!r}, {a.width}), " for a in row.args)
        out.append(f"    ({row.name!r}, {row.function_id:#010x}, {row.smc64}, {row.caller!r},")
        out.append(f"     {row.space!r}, {row.handler!r}, ({args.rstrip()})),")
    out += [
        ")",
        "",
        "# name, ((arg name, width), ...)",
        "EVENTS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (",
    ]
    for ev in abi.EVENTS:
        args = "".join(f"({a.name!r}, {a.width}), " for a in ev.args)
        out.append(f"    ({ev.name!r}, ({args.rstrip()})),")
    out += [")", "", "# convention: (function-id register, argument registers, result registers)"]
    out.append("CONVENTIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {")
    for name, conv in abi.CONVENTIONS.items():
        out.append(f"    {name!r}: ({conv['id']!r}, {tuple(conv['args'])!r},")
        out.append(f"        {tuple(conv['result'])!r}),")
    out += ["}", ""]
    return "\n".join(out)


def main() -> int:
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
