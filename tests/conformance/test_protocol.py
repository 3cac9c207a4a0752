"""The stdio protocol: schema, handshake, and every way a target can misbehave becoming a
clear ``error`` verdict (never a crash of the suite, never a lost report)."""

from __future__ import annotations

import copy
import json
import random
import sys
import textwrap

import jsonschema
import pytest

from conformance import protocol
from conformance.runner import run_conformance
from conformance.target import (
    ExecTarget,
    ProtocolViolation,
    TargetCrashed,
    TargetError,
    TargetTimeout,
)
from spec.hypercalls import abi
from spec.state import Config

MISBEHAVE = textwrap.dedent('''
    import json, sys, time
    mode = sys.argv[1]
    for line in sys.stdin:
        m = json.loads(line)
        t, i = m["type"], m["msg_id"]
        r = {"type": t + "_ok", "msg_id": i, "in_reply_to": i}
        if t == "init":
            r.update(protocol_version="1.0", abi_version=sys.argv[2],
                     capabilities=["hypercall", "probe_access"])
        if t == "hypercall":
            if mode == "hang": time.sleep(60)
            if mode == "exit": sys.exit(3)
            if mode == "garbage": print("hello, world", flush=True); continue
            if mode == "wrong_reply": r["in_reply_to"] = i + 7
            if mode == "error":
                r = {"type": "error", "in_reply_to": i, "code": 13, "text": "boom",
                     "definite": False}
            elif mode != "schema": r["regs"] = {"x0": 0}
        if t == "probe_access": r["value"] = 0
        print(json.dumps(r), flush=True)
''')


@pytest.fixture
def misbehaving(tmp_path):
    script = tmp_path / "target.py"
    script.write_text(MISBEHAVE)

    def command(mode: str, abi_version: str = abi.ABI_VERSION) -> str:
        return f"{sys.executable} {script} {mode} {abi_version}"

    return command


def test_schema_is_valid_and_covers_every_message():
    schema = protocol.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for t in protocol.MESSAGE_TYPES:
        assert t in schema["$defs"]


@pytest.mark.parametrize("msg", [
    {"type": "hypercall", "msg_id": 1, "vm": 0, "vcpu": 0, "conv": "arm64",
     "regs": {"x0": "0xC6000000", "x1": 5}},
    {"type": "hypercall_ok", "in_reply_to": 1, "regs": {"rax": "0xffffffffffffffff"}},
    {"type": "reset", "msg_id": 2, "config": {
        "n_vms": 3, "n_vcpus": 2, "n_gframes": 3, "n_hframes": 5, "n_hyp_frames": 1,
        "n_tx": 2, "n_ports": 2, "n_devices": 2, "control_quota": 2}},
    {"type": "error", "in_reply_to": 4, "code": 12, "text": "bad", "definite": True},
])
def test_valid_messages(msg):
    protocol.validate(msg)
    protocol.validate(msg)  # the memoised path too


@pytest.mark.parametrize("msg", [
    {"type": "hypercall", "msg_id": 1, "vm": 0, "vcpu": 0, "conv": "arm64",
     "regs": {"x0": "0x1" + "0" * 16}},  # 65 bits
    {"type": "hypercall", "msg_id": 1, "vm": 0, "vcpu": 0, "conv": "mips", "regs": {}},
    {"type": "hypercall_ok", "in_reply_to": 1},
    {"type": "hypercall_ok", "in_reply_to": -1, "regs": {}},
    {"type": "error", "in_reply_to": 4, "code": 12, "text": "bad"},
    {"type": "nonsense", "msg_id": 1},
    ["not", "an", "object"],
    # ECMA-262's "$" (JSON Schema's regex dialect) does not match before a final newline
    {"type": "hypercall_ok", "in_reply_to": 1, "regs": {"x0": "0x1\n"}},
    {"type": "event", "msg_id": 1, "name": "VCPU_START", "args": {1, 2}},  # not JSON data
])
def test_invalid_messages(msg):
    with pytest.raises(protocol.SchemaError):
        protocol.validate(msg)


def test_c_adapter_handshake_and_probes(c_adapter):
    t = ExecTarget(str(c_adapter))
    try:
        assert t.abi_version == abi.ABI_VERSION
        assert {"hypercall", "observe", "events"} <= t.capabilities
        t.reset(Config(n_vms=4, n_gframes=5))
        regs = {"x0": abi.BY_NAME["HV_VERSION"].function_id}
        assert t.hypercall(0, 0, regs, "arm64")["x0"] == 0x10000
        assert t.probe_access(0, 0) == 0 and t.probe_irq(0, 0) == 0
        assert len(t.observe().access) == 20
        with pytest.raises(TargetError) as info:
            t.event("NO_SUCH_EVENT")
        assert info.value.definite and info.value.code == 31
    finally:
        t.close()


@pytest.mark.parametrize(("mode", "error", "words"), [
    ("hang", TargetTimeout, "within"),
    ("exit", TargetCrashed, "exit status 3"),
    ("garbage", ProtocolViolation, "garbage"),
    ("wrong_reply", ProtocolViolation, "in_reply_to"),
    ("schema", ProtocolViolation, "schema-invalid"),
    ("error", TargetError, "boom"),
])
def test_misbehaviour_is_typed(misbehaving, mode, error, words):
    t = ExecTarget(misbehaving(mode), timeout=0.5)
    try:
        t.reset(Config())
        with pytest.raises(error) as info:
            t.hypercall(0, 0, {"x0": 0}, "arm64")
        assert words in info.value.reason
    finally:
        t.close()


def test_abi_version_mismatch_is_refused(misbehaving):
    with pytest.raises(ProtocolViolation, match=r"ABI 9\.9"):
        ExecTarget(misbehaving("ok", "9.9"))


@pytest.mark.parametrize("mode", ["hang", "exit", "garbage", "wrong_reply", "schema"])
def test_misbehaving_target_gives_error_verdict_and_report(misbehaving, tmp_path, mode):
    out = tmp_path / "report"
    summary = tmp_path / "summary.json"
    report = run_conformance(f"exec:{misbehaving(mode)}", report_dir=str(out),
                             json_file=str(summary), timeout=0.5,
                             scenario_filter=lambda sc: sc.id.startswith("decode/"))
    assert report.verdict == "error" and report.exit_code == 2
    data = json.loads(summary.read_text())
    assert data["verdict"] == "error" and data["errors"] >= 1
    assert all(f["detail"] or f.get("observed") for f in data["failures"])
    saved = json.loads((out / "report.json").read_text())
    jsonschema.validate(saved, protocol.schema("report"))
    assert not any(c["status"] == "passed" for c in saved["checks"])


def test_unstartable_target_is_an_error(tmp_path):
    report = run_conformance(f"exec:{tmp_path}/does-not-exist", report_dir=str(tmp_path))
    assert report.verdict == "error"
    assert "cannot start" in report.checks[0].detail


# --- jsonschema-rs against python jsonschema, on mutated messages -------------------------
# protocol.validate trusts jsonschema-rs; python jsonschema is the reference it is checked
# against here: the same valid/invalid verdict on every message of a seeded corpus of
# valid messages of each type, mutated (types changed, fields dropped and added, ints
# out of range, bad hex words, names breaking their patterns, types swapped).  Messages
# are JSON data, as json.loads gives them.

_HEX_DIGITS = "0123456789abcdefABCDEF"
_REG_NAMES = ("x0", "x1", "x2", "x3", "x17", "rax", "rbx", "rdi", "r8", "r15", "pc", "sp")
_BAD_WORDS = ("", "0x", "0X", "0xg1", "1234", "x12", "0x" + "f" * 17, " 0x1", "0x1 ", "0x-1",
              "0x1\n", "0x+1", "0x\u0661", "0xＦ", "-0x1", "0x1_0", "00x1")
_BAD_NAMES = ("X0", "x", "0x", "x12345", "rax ", "", "é1", "r\n", "x_1")
_OUT_OF_RANGE = (-1, -2**63, 2**16, 2**53, 2**53 - 1, 2**64 - 1, 2**64, 2**70, 17, 65, 257)
_ANY_JSON = (0, 1, -1, 1.0, 1.5, -0.0, 1e300, "x", "0x1", "", True, False, None, [], [1],
             ["a", "a"], {}, {"a": 1}, {"x0": "0x1"})


def _word(rng):
    if rng.random() < 0.5:
        return rng.choice((0, 1, 2**64 - 1, rng.getrandbits(rng.choice((3, 16, 32, 64)))))
    digits = "".join(rng.choice(_HEX_DIGITS) for _ in range(rng.randint(1, 16)))
    return rng.choice(("0x", "0X")) + digits


def _regs(rng):
    return {rng.choice(_REG_NAMES): _word(rng) for _ in range(rng.randint(0, 6))}


def _valid_message(rng, msg_type):
    """A random valid message of ``msg_type`` (kept small: python jsonschema is slow)."""
    m = {"type": msg_type}
    if msg_type in protocol.REQUEST_TYPES:
        m["msg_id"] = rng.choice((0, 1, rng.randrange(2**20), 2**53 - 1))
    else:
        m["in_reply_to"] = rng.choice((0, 7, rng.randrange(2**20), 2**53 - 1))
        if rng.random() < 0.3:
            m["msg_id"] = rng.randrange(2**20)
    u16 = lambda: rng.choice((0, 1, rng.randrange(65536), 65535))  # noqa: E731
    caps = ["hypercall", "probe_access", "probe_dma", "probe_irq", "events", "observe",
            "virtio", "abi_call"]
    if msg_type in ("init", "init_ok"):
        m["protocol_version"] = rng.choice(("1.0", "1.12", "10.3"))
        m["abi_version"] = rng.choice(("1.0", "2.1"))
    if msg_type == "init_ok":
        m["capabilities"] = rng.sample(caps, rng.randint(0, len(caps)))
        if rng.random() < 0.5:
            m["name"] = rng.choice(("pvhv", "", "é" * 200))
    elif msg_type == "reset":
        bounds = {"n_vms": (2, 16), "n_vcpus": (1, 64), "n_gframes": (1, 64),
                  "n_hframes": (1, 256), "n_hyp_frames": (0, 256), "n_tx": (1, 64),
                  "n_ports": (1, 64), "n_devices": (0, 30), "control_quota": (0, 256)}
        m["config"] = {k: rng.choice((lo, hi, rng.randint(lo, hi)))
                       for k, (lo, hi) in bounds.items()}
    elif msg_type == "hypercall":
        m.update(vm=u16(), vcpu=u16(), conv=rng.choice(("arm64", "x86_64")), regs=_regs(rng))
    elif msg_type == "hypercall_ok":
        m["regs"] = _regs(rng)
    elif msg_type in ("abi_call", "abi_call_ok"):
        m.update(regs=_regs(rng), memory=rng.randbytes(rng.choice((0, 4, 24, 96))).hex())
        if msg_type == "abi_call":
            m.update(abi=rng.choice(("ffa", "xen")), vm=u16(), vcpu=u16(),
                     conv=rng.choice(("arm64", "x86_64")))
            if rng.random() < 0.3:
                m["place"] = _word(rng)
    elif msg_type == "event":
        m["name"] = rng.choice(("VCPU_START", "DEVICE_IRQ", "X", "A_1"))
        m["args"] = [_word(rng) for _ in range(rng.randint(0, 8))]
    elif msg_type in ("probe_access", "probe_dma"):
        m["vm" if msg_type == "probe_access" else "dev"] = u16()
        m["gfn"] = _word(rng)
    elif msg_type == "probe_irq":
        m.update(vm=u16(), vcpu=u16())
    elif msg_type.startswith("probe_"):
        m["value"] = _word(rng)
    elif msg_type == "observe_ok":
        m["access"] = [rng.randrange(8) for _ in range(rng.randint(0, 12))]
        m["dma"] = [rng.randrange(8) for _ in range(rng.randint(0, 12))]
        m["irq"] = [_word(rng) for _ in range(rng.randint(0, 4))]
    elif msg_type == "error":
        m.update(code=rng.choice((0, 10, 31, 65535)), text=rng.choice(("", "boom")),
                 definite=rng.random() < 0.5)
    return m


def _locations(value):
    """Every (container, key) in a message, the message's own fields included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield value, k
            yield from _locations(v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield value, i
            yield from _locations(v)


def _mutate(rng, m):
    """``m`` changed in place, in one random way (it may stay valid)."""
    places = list(_locations(m))
    if not places:
        return m
    container, key = rng.choice(places)
    dicts = [m, *(c[k] for c, k in places if isinstance(c[k], dict))]
    how = rng.randrange(9)
    if how == 0:  # another JSON type (or value)
        container[key] = copy.deepcopy(rng.choice(_ANY_JSON))
    elif how == 1:  # a field dropped
        d = rng.choice(dicts)
        if d:
            del d[rng.choice(list(d))]
    elif how == 2:  # a field added
        name = rng.choice(("extra", "x9", "X0", "msg_id", "in_reply_to", "name", "regs",
                           "value"))
        rng.choice(dicts)[name] = copy.deepcopy(rng.choice((*_ANY_JSON, "0x2")))
    elif how == 3:  # an int out of range
        container[key] = rng.choice(_OUT_OF_RANGE)
    elif how == 4:  # a bad hex word
        container[key] = rng.choice(_BAD_WORDS)
    elif how == 5:  # a key breaking a name pattern
        d = rng.choice(dicts)
        if d:
            d[rng.choice(_BAD_NAMES)] = d.pop(rng.choice(list(d)))
    elif how == 6:  # the message claims another type
        m["type"] = rng.choice(protocol.MESSAGE_TYPES)
    elif how == 7:  # a list grown past its bounds, or with a duplicate
        lists = [c[k] for c, k in places if isinstance(c[k], list)]
        if lists:
            lst = rng.choice(lists)
            lst.extend(lst[:1] if lst and rng.random() < 0.5 else [_word(rng)] * 9)
    else:  # a string broken
        container[key] = rng.choice(("", "é", "1.0.0", "v1.0", "vcpu_start", "arm", "1.0\n",
                                     str(container[key]) + "\n"))
    return m


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_jsonschema_rs_agrees_with_jsonschema_on_mutated_messages():
    defs = protocol.schema()["$defs"]  # a message must match its own type's entry
    reference_of = {t: jsonschema.Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{t}"})
                    for t in protocol.MESSAGE_TYPES}
    rng = random.Random(20240611)
    verdicts = {True: 0, False: 0}
    newline_only = 0
    n = 12_600
    for i in range(n):
        msg_type = protocol.MESSAGE_TYPES[i % len(protocol.MESSAGE_TYPES)]
        m = _valid_message(rng, msg_type)
        for _ in range(rng.choice((0, 1, 1, 1, 2, 3))):
            _mutate(rng, m)
        m = json.loads(json.dumps(m))  # JSON data, as a target's reply is
        if m.get("type") in protocol.MESSAGE_TYPES:  # the schema validate() checks m against
            msg_type = m["type"]
        fast = protocol._validators()[msg_type].is_valid(m)
        reference = reference_of[msg_type].is_valid(m)
        if fast != reference:
            # the one known difference, where jsonschema-rs is right: python's re lets
            # "$" match before a trailing newline, ECMA-262 (JSON Schema's dialect) not
            assert reference and not fast, m
            assert any(s.endswith("\n") for s in _strings(m)), m
            newline_only += 1
        verdicts[fast] += 1
        if i % 3 == 0:  # the public entry point, explanation included, on a third
            try:
                protocol.validate(m)
                assert fast and m["type"] == msg_type, m
            except protocol.SchemaError as exc:
                assert not fast, (m, exc)
                assert str(exc).strip()
    assert sum(verdicts.values()) >= 12_000
    assert verdicts[True] >= n // 10 and verdicts[False] >= n // 2, verdicts
    assert newline_only >= 1  # the corpus does reach that difference


def test_every_profile_choice_can_be_declared_in_init_ok() -> None:
    """A target can declare each implementation-defined answer (spec/profile.py) and the
    ABIs it speaks: the schema's profile object names them all."""
    from spec import profile as spec_profile

    keys = set(protocol.schema()["$defs"]["profile"]["properties"])
    assert {d.name for d in spec_profile.DIMENSIONS} | {"abis", "memory"} <= keys
