"""Human-readable renderings of the ABI table (``pvspec abi`` and ``docs/ABI.md``): the
model's own table and each codec of a real ABI over it (Xen's event channels, FF-A's
memory management)."""

from __future__ import annotations

from spec import profile
from spec.hypercalls import ffa
from spec.hypercalls.abi import ABI_VERSION, CONVENTIONS, ERROR_SPACES, EVENTS, TABLE


def _args(row_args: tuple) -> str:
    return ", ".join(f"{a.name}:{a.width}" for a in row_args) or "-"


# The ABIs a target may speak: the standard each states and where (the codec's module
# holds the rest).  smccc, psci and pvspec are rows of abi.TABLE; xen and ffa are codecs.
ABIS: tuple[tuple[str, str, str], ...] = (
    ("smccc", "Arm SMCCC DEN0028", "SMCCC_VERSION, SMCCC_ARCH_FEATURES (from SMCCC 1.1)"),
    ("psci", "Arm PSCI DEN0022", "5.1 (functions), 5.2.2 (return codes)"),
    ("pvspec", "pvspec's own vendor-hypervisor calls", "spec/hypercalls/abi.py"),
    ("xen", "Xen event_channel_op (hypercall 32)", "xen/include/public/event_channel.h"),
    ("ffa", "Arm FF-A DEN0077A v1.1 memory management",
     "ch. 10 (Tables 10.13-10.16, 10.18, 10.20), ch. 13 (setup: RXTX_MAP/UNMAP, "
     "RX_RELEASE), ch. 16 (FFA_MEM_*, Table 16.25)"),
)


def text_table() -> str:
    """A terminal table: one line per hypercall, then the ABIs and FF-A's function ids."""
    head = (f"{'name':26} {'function id':>11} {'conv':5} {'abi':6} {'caller':7} {'errors':6} "
            f"arguments")
    lines = [f"pvspec hypercall ABI {ABI_VERSION}", head, "-" * len(head)]
    for row in TABLE:
        lines.append(
            f"{row.name:26} {row.function_id:#010x}  {'64' if row.smc64 else '32':5} "
            f"{row.abi:6} {row.caller:7} {row.space:6} {_args(row.args)}"
        )
    lines += ["", "ABIs (a target declares the ones it speaks):"]
    for name, standard, where in ABIS:
        lines.append(f"  {name:7} {standard}; {where}")
    lines += ["", f"{ffa.STANDARD} (abi ffa): function ids", f"{'name':26} {'function id':>11}"
              f"  model call / clause"]
    model = _ffa_model_rows()
    for name, fid in ffa.FUNCTIONS.items():
        clause = ffa.CLAUSES[ffa.base_name(name)]
        lines.append(f"{name:26} {fid:#010x}   {model.get(ffa.base_name(name), '-'):15} "
                     f"{clause}")
    return "\n".join(lines)


def _ffa_model_rows() -> dict[str, str]:
    """Which model call each FF-A memory function carries."""
    out = {f: ffa.ROW_OF_KIND[k] for k, f in ffa.FUNCTION_OF_KIND.items()}
    out.update(FFA_MEM_RETRIEVE_REQ="MEM_RETRIEVE", FFA_MEM_RELINQUISH="MEM_RELINQUISH",
               FFA_MEM_RECLAIM="MEM_RECLAIM")
    return out


def markdown() -> str:
    """The whole ABI as Markdown; ``docs/ABI.md`` is exactly this text."""
    out = [
        f"# pvspec hypercall ABI {ABI_VERSION}",
        "",
        "Generated from `spec/hypercalls/abi.py` by `pvspec abi --markdown`; do not edit.",
        "",
        "## Calling conventions",
        "",
        "| convention | function id | arguments | result |",
        "|---|---|---|---|",
    ]
    for name, c in CONVENTIONS.items():
        out.append(f"| {name} | {c['id']} (low 32 bits) | {', '.join(c['args'])} | "
                   f"{', '.join(c['result'])} (first: signed result; others zero) |")
    out += [
        "",
        "Function ids follow SMCCC: bit 31 fast call, bit 30 64-bit convention, bits 29:24",
        "owning entity, bits 23:16 reserved (non-zero: unknown function), bits 15:0 number.",
        "An unknown id returns NOT_SUPPORTED (-1). A set bit above an argument's width returns",
        "INVALID_PARAMETERS (-2) before any other check; 32-bit calls read only the low half",
        "of each argument register. A result is non-negative on success, negative on error.",
        "",
        "## Error codes",
        "",
        "| space | " + " | ".join(sorted({n for s in ERROR_SPACES.values() for n in s})) + " |",
        "|---|" + "---|" * len({n for s in ERROR_SPACES.values() for n in s}),
    ]
    names = sorted({n for s in ERROR_SPACES.values() for n in s})
    for space, codes in ERROR_SPACES.items():
        out.append(f"| {space} | " + " | ".join(str(codes.get(n, "")) for n in names) + " |")
    out += ["", "## Hypercalls", "", "ABIs: `smccc` (Arm architecture calls, SMCCC DEN0028), "
            "`psci` (PSCI DEN0022), `pvspec` (the vendor-hypervisor calls no standard covers). "
            "A target declares the ABIs it speaks; a successful call that *never returns* "
            "does not come back to its caller; one that *may not return* can come back "
            "with its result or not at all.", "",
            "| name | function id | abi | caller | errors (precedence) | returns | clause |",
            "|---|---|---|---|---|---|---|"]
    for row in TABLE:
        tail = " (never returns)" if row.never_returns else \
            " (may not return)" if row.no_return else ""
        out.append(f"| {row.name} | `{row.function_id:#010x}` | {row.abi} | {row.caller} | "
                   f"{', '.join(row.errors)} ({row.space}) | {row.returns}{tail} | "
                   f"{row.clause} |")
    out += ["", "## Implementation-defined answers", "",
            "Where PSCI and SMCCC let the implementation choose (`spec/profile.py`): the model "
            "takes the first value; the oracle learns a target's value from its answers, or "
            "holds it to a declared one.", "",
            "| choice | allowed values (model's first) | calls | clause |", "|---|---|---|---|"]
    for d in profile.DIMENSIONS:
        values = ", ".join(profile.render_value(v) for v in d.values)
        if len(d.values) > 8:
            values = f"{profile.render_value(d.values[0])}, then any of " \
                     f"{profile.render_value(d.values[1])}..{profile.render_value(d.values[-1])}"
        where = f" (open in the `{d.abi}` ABI; pvspec's own ABI fixes the first value)" \
            if d.abi else ""
        out.append(f"| {d.name} | {values} | {', '.join(sorted(d.rows))} | {d.clause}{where} |")
    out += ["", "## Arguments", ""]
    for row in TABLE:
        out.append(f"### {row.name}")
        out.append("")
        if not row.args:
            out += ["No arguments.", ""]
            continue
        out += ["| register (arm64 / x86_64) | field | width | kind | meaning |",
                "|---|---|---|---|---|"]
        for i, a in enumerate(row.args):
            regs = f"{CONVENTIONS['arm64']['args'][i]} / {CONVENTIONS['x86_64']['args'][i]}"
            out.append(f"| {regs} | {a.name} | {a.width} | {a.kind} | {a.meaning} |")
        out.append("")
    out += _xen_codec()
    out += _ffa_codec()
    out += ["## Environment events", "", "Not hypercalls: things that happen to the machine. "
            "The proofs cover them too.", "", "| event | arguments | meaning |", "|---|---|---|"]
    for e in EVENTS:
        out.append(f"| {e.name} | {_args(e.args)} | {e.clause} |")
    return "\n".join(out) + "\n"


def _xen_codec() -> list[str]:
    """The Xen event-channel codec (spec/hypercalls/xen.py) as a table."""
    from spec.hypercalls import xen

    out = ["## Codec: Xen's event channels (`abis: xen`)", "",
           f"A target that lists `xen` speaks these calls as Xen's `event_channel_op` "
           f"(hypercall {xen.HYPERCALL_EVENT_CHANNEL_OP}): the command number and a pointer to "
           "its struct (xen/include/public/event_channel.h), answered with 0 or -errno. "
           "The caller names itself as DOMID_SELF; a model VM id is the Xen domain id. "
           "EVTCHN_MASK and EVTCHN_CLEAR have no command (Xen's mask and pending bits are "
           "in the shared-info page), and EVTCHN_STATUS's pending and masked bits are not "
           "in `evtchn_status`: those are not judged through this ABI.", "",
           "| model call | EVTCHNOP command | struct size | struct layout (Python struct) |",
           "|---|---|---|---|"]
    for c in xen.COMMANDS.values():
        out.append(f"| {c.row} | {c.op.name.lower()} ({int(c.op)}) | {c.size} | "
                   f"`{c.layout}` |")
    out += ["", "| errno | stands for the model's |", "|---|---|"]
    for name, number in xen.ERRNO.items():
        meant = [m for m, es in xen.EXPRESSES.items() if number in es]
        out.append(f"| -{name} (-{number}) | {', '.join(meant) or '(none)'} |")
    out.append("")
    return out


def _ffa_codec() -> list[str]:
    """The FF-A memory-management codec (spec/hypercalls/ffa.py) as tables."""
    out = ["## Codec: FF-A v1.1 memory management (`abis: ffa`)", "",
           f"A target that lists `ffa` speaks the model's memory transactions as "
           f"{ffa.STANDARD}: the caller writes a memory transaction descriptor to its TX "
           "buffer and passes its length in w1 (total) and w2 (fragment), w3/w4 zero; the "
           "answer is FFA_SUCCESS with the 64-bit handle in w2 (low half) and w3 (high "
           "half), FFA_ERROR with the error code in w2, or for a retrieve "
           "FFA_MEM_RETRIEVE_RESP with the descriptor in the caller's RX buffer. Bit 16 of "
           "a function id (SMCCC 1.3's SVE hint) is ignored.", "",
           "Choices of this codec: model VM *v* is endpoint *v*+1 (0 is the hypervisor, bit "
           "15 the secure world; endpoints 1..16 are expressible); model frame *g* is the "
           "4 KiB page at IPA `g * 4096`; touching constituents coalesce into the model's "
           "one range; data access RO is R, RW is R|W; a sender gives no instruction "
           "access, so rights with X have no FF-A form; a donation carries no rights and "
           f"is read as rights {ffa.DONATE_PERM} (R|W); the model's memory is normal "
           "write-back inner-shareable; where the borrower's memory is mapped "
           "(MEM_RETRIEVE's base) is the instance's choice, read from "
           "FFA_MEM_RETRIEVE_RESP; fragmentation and memory zeroing have no model form. "
           "What the model cannot express is reported as such, never approximated.", "",
           "| function | function id | model call | clause |", "|---|---|---|---|"]
    model = _ffa_model_rows()
    for name, fid in ffa.FUNCTIONS.items():
        base = ffa.base_name(name)
        out.append(f"| {name} | `{fid:#010x}` | {model.get(base, '-')} | "
                   f"{ffa.CLAUSES[base]} |")
    out += ["", "| FF-A error | code | stands for the model's | on a share, lend or donate |",
            "|---|---|---|---|"]
    for name, code in ffa.ERRORS.items():
        meant = ", ".join(sorted(ffa.EXPRESSES.get(code, ()))) or "(none)"
        send = ", ".join(sorted(ffa.SEND_EXPRESSES.get(code, ()))) or "(none)"
        out.append(f"| {name} | {code} | {meant} | {send} |")
    out += ["", "### Descriptor layouts", ""]
    for layout in ffa.LAYOUTS:
        out += [f"**{layout.name}** ({layout.table}; {layout.size} bytes fixed)", "",
                "| offset | size | field | meaning |", "|---|---|---|---|"]
        for f in layout.fields:
            mbz = " (MBZ)" if f.mbz else ""
            out.append(f"| {f.offset} | {f.size} | {f.name} | {f.meaning}{mbz} |")
        out.append("")
    out += ["### Malformed requests and the errors FF-A requires", "",
            "| rule | breach | FF-A error(s) | clause |", "|---|---|---|---|"]
    for r in ffa.RULES.values():
        codes = ", ".join(ffa.ERROR_NAME[c] for c in sorted(r.codes, reverse=True))
        out.append(f"| {r.id} | {r.text} | {codes} | {r.clause} |")
    out += ["", "### RX/TX buffers", "", "| function | rule | clause |", "|---|---|---|"]
    for function, rule, clause in ffa.MAILBOX_RULES:
        out.append(f"| {function} | {rule} | {clause} |")
    out.append("")
    return out
