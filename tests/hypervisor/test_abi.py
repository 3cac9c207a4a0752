"""The ABI table, its two calling conventions, and the generated documentation."""

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from spec import machine, state
from spec.hypercalls import abi, codec, render

ROOT = Path(__file__).resolve().parents[2]
WORD = st.integers(0, 2**64 - 1)
NOT_SUPPORTED, INVALID = 2**64 - 1, 2**64 - 2


def test_docs_abi_md_is_generated_from_the_table():
    assert (ROOT / "docs" / "ABI.md").read_text() == render.markdown(), (
        "docs/ABI.md is stale: run `pvspec abi --markdown > docs/ABI.md`")


def test_psci_ids_are_the_architected_ones():
    # DEN0022 5.1: 32-bit ids 0x8400_00xx, 64-bit 0xC400_00xx
    assert abi.BY_NAME["PSCI_VERSION"].function_id == 0x84000000
    assert abi.BY_NAME["CPU_OFF"].function_id == 0x84000002
    assert abi.BY_NAME["CPU_ON"].function_id == 0xC4000003
    assert abi.BY_NAME["CPU_ON_32"].function_id == 0x84000003
    assert abi.BY_NAME["AFFINITY_INFO"].function_id == 0xC4000004


def test_function_id_fields_follow_smccc():
    for row in abi.TABLE:
        fid = row.function_id
        assert fid >> 31 == 1  # fast call
        assert (fid >> 30) & 1 == row.smc64
        assert (fid >> 24) & 0x3F == row.entity
        assert (fid >> 16) & 0xFF == 0  # reserved bits 23:16
        assert row.errors and all(e in abi.ERROR_SPACES[row.space] for e in row.errors)
        assert all(e < 0 for n, e in abi.ERROR_SPACES[row.space].items() if n != "SUCCESS")


@given(regs=st.lists(WORD, min_size=7, max_size=7), conv=st.sampled_from(["arm64", "x86_64"]),
       vm=st.integers(0, 2**64 - 1), vcpu=st.integers(0, 3))
def test_every_register_file_gets_a_defined_answer(regs, conv, vm, vcpu):
    file = dict(zip(codec.registers(conv), regs, strict=False))
    s = state.initial()
    _s2, out = machine.step(s, vm, vcpu, file, conv)
    ret = out[abi.CONVENTIONS[conv]["result"][0]]
    assert 0 <= ret < 2**64
    assert isinstance(codec.decode(file, conv), codec.Call | codec.DecodeError)


@given(regs=st.lists(WORD, min_size=7, max_size=7), row=st.sampled_from(abi.TABLE))
def test_conventions_decode_alike(regs, row):
    """The same id and arguments mean the same call in both conventions."""
    regs[0] = (regs[0] & ~0xFFFFFFFF) | row.function_id
    arm = dict(zip(codec.registers("arm64"), regs, strict=False))
    x86 = dict(zip(codec.registers("x86_64"), regs, strict=False))
    assert codec.decode(arm, "arm64") == codec.decode(x86, "x86_64")


def _limit(row):
    return 64 if row.smc64 else 32


NARROW = [r for r in abi.TABLE if any(a.width < _limit(r) for a in r.args)]


@given(row=st.sampled_from(NARROW), data=st.data())
def test_reserved_bits_are_invalid_parameters(row, data):
    limit = _limit(row)
    i = data.draw(st.sampled_from([i for i, a in enumerate(row.args) if a.width < limit]))
    args = [0] * len(row.args)
    args[i] = 1 << data.draw(st.integers(row.args[i].width, limit - 1))
    _s2, out = machine.step(state.initial(), 0, 0, codec.encode_call(row, tuple(args), "arm64"))
    assert out["x0"] == INVALID


@given(high=st.integers(1, 2**32 - 1))
def test_upper_half_of_function_id_register_is_ignored(high):
    row = abi.BY_NAME["PSCI_VERSION"]
    regs = codec.encode_call(row, (), "arm64")
    regs["x0"] |= high << 32
    assert machine.step(state.initial(), 0, 0, regs)[1]["x0"] == 0x10001


@given(fid=st.integers(0, 2**32 - 1))
def test_unknown_ids_are_not_supported(fid):
    if fid in abi.BY_ID:
        return
    regs = dict.fromkeys(codec.registers("arm64"), 0)
    regs["x0"] = fid
    s = state.initial()
    s2, out = machine.step(s, 0, 0, regs)
    assert out["x0"] == NOT_SUPPORTED and s2 == s


def test_smc32_ignores_upper_halves_of_arguments():
    row = abi.BY_NAME["AFFINITY_INFO_32"]
    regs = codec.encode_call(row, (0, 0), "arm64")
    regs["x1"] |= 0xDEAD << 32
    assert machine.step(state.initial(), 0, 0, regs)[1]["x0"] == 0  # vCPU 0 is ON


def test_pvspec_abi_prints_every_row(capsys):
    from conformance.cli import main

    assert main(["abi"]) == 0
    out = capsys.readouterr().out
    assert all(row.name in out for row in abi.TABLE)
