"""Proofs through the Xen event-channel and FF-A codecs (spec.prove targets ``xen:<row>``,
``ffa:<row>``) and their planted bugs: each codec obligation can fail, and its
counterexample shows the bug on the concrete codec (and nothing without it)."""

import pytest

from spec import mutants, prove
from spec.hypercalls import ffa, xen

IDS = [m.name for m in mutants.CODEC_MUTANTS]


def test_every_codec_obligation_has_a_planted_bug():
    assert set(prove.CODEC_OBLIGATIONS) <= {m.catches for m in mutants.CODEC_MUTANTS}


def test_every_command_is_a_target():
    assert {t for t in prove.targets() if t.startswith(prove.XEN)} == {
        prove.XEN + row for row in xen.COMMANDS}
    assert {t for t in prove.targets() if t.startswith(prove.FFA)} == {
        prove.FFA + row for row in ("MEM_SHARE", "MEM_LEND", "MEM_DONATE")}


@pytest.mark.parametrize("mutant", mutants.CODEC_MUTANTS, ids=IDS)
def test_proof_catches(mutant):
    row = mutant.target.partition(":")[2]
    with mutants.installed_codec(mutant):
        results = prove.prove_target(mutant.target, only={mutant.catches})
        assert [r.status for r in results] == ["failed"], results
        case = results[0].counterexample
        assert case is not None and "struct" in case
        assert not _replay(case, row, mutant.catches)
    assert _replay(case, row, mutant.catches)  # without the bug the same case reads back


def _replay(case, row, obligation):
    """The counterexample's round trip, on the concrete codec."""
    if obligation == prove.XEN_CALL:
        return xen.call_reads_back(row, tuple(case["args"]), case["conv"])
    if obligation == prove.FFA_CALL:
        return ffa.one_reads_back(ffa.KIND_OF_ROW[row], case["caller"][0], *case["args"])
    (ret,) = case["result"]
    if obligation == prove.FFA_ANSWER:
        return ffa.answer_reads_back(row, ret)
    return xen.answer_reads_back(row, ret, bytes(case["struct"]))


def test_without_planted_bugs_the_round_trips_hold():
    for row in xen.COMMANDS:
        results = prove.prove_target(prove.XEN + row, only={prove.XEN_CALL, prove.XEN_ANSWER})
        assert [r.status for r in results] == ["proved", "proved"], results
    for row in ffa.KIND_OF_ROW:
        results = prove.prove_target(prove.FFA + row, only={prove.FFA_CALL, prove.FFA_ANSWER})
        assert [r.status for r in results] == ["proved", "proved"], results


def test_codec_proofs_become_report_checks():
    """`pvspec verify`: a proof through the codec covers its obligation and the row."""
    from conformance import cli

    (check,) = cli.proof_checks({"results": [
        {"group": "hypervisor", "invariant": prove.XEN_CALL, "hypercall": "xen:EVTCHN_SEND",
         "clause": prove.XEN_CALL_CLAUSE, "status": "proved", "seconds": 0.1,
         "counterexample": None}]})
    assert list(check.covers) == [f"codec:{prove.XEN_CALL}", "abi:EVTCHN_SEND"]
