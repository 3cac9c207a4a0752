"""The stdio protocol: schema, handshake, and every way a target can misbehave becoming a
clear ``error`` verdict (never a crash of the suite, never a lost report)."""

from __future__ import annotations

import json
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
