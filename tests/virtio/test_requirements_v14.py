"""The statements only VIRTIO 1.4 makes in the covered sections: every one registered
(spec/virtio/requirements_v14.py), in our words, with its 1.4 section, and kept out of
every figure a 1.3 target is judged by."""

from __future__ import annotations

import re
import runpy
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from spec.virtio.registry import all_requirements
from spec.virtio.report import render_requirements_table

ROOT = Path(__file__).resolve().parents[2]
GROUP = {"MUST": "MUST", "MUST NOT": "MUST", "SHOULD": "SHOULD", "SHOULD NOT": "SHOULD",
         "MAY": "MAY"}

# 1.4-only statements per (1.4 section, side, level group), as
# `scripts/virtio-statements --1.4 --counts` gives them from tag v1.4-cs01 (kept here so
# the test runs without a clone of the spec): 114, 62 device and 52 driver
COUNTS_1_4: dict[tuple[str, str, str], int] = {
    ('5.1.9.2.1', 'driver', 'MAY'): 4,
    ('5.1.9.2.1', 'driver', 'MUST'): 15,
    ('5.1.9.2.2', 'device', 'MAY'): 1,
    ('5.1.9.2.2', 'device', 'MUST'): 5,
    ('5.1.9.3.1', 'driver', 'MUST'): 1,
    ('5.1.9.4.1', 'device', 'MAY'): 2,
    ('5.1.9.4.1', 'device', 'MUST'): 14,
    ('5.1.9.4.2', 'driver', 'MAY'): 1,
    ('5.1.9.4.2', 'driver', 'MUST'): 4,
    ('5.1.9.5.8.3', 'device', 'MUST'): 2,
    ('5.1.9.5.8.4', 'driver', 'MUST'): 3,
    ('5.1.9.5.11.12', 'device', 'MUST'): 7,
    ('5.1.9.5.11.13', 'driver', 'MUST'): 3,
    ('5.1.9.6.4', 'device', 'MAY'): 1,
    ('5.1.9.6.4', 'device', 'MUST'): 13,
    ('5.1.9.6.4', 'device', 'SHOULD'): 7,
    ('5.1.9.6.5', 'driver', 'MUST'): 5,
    ('5.1.9.6.5', 'driver', 'SHOULD'): 7,
    ('5.1.9.7.4', 'device', 'MAY'): 1,
    ('5.1.9.7.4', 'device', 'MUST'): 8,
    ('5.1.9.7.4', 'device', 'SHOULD'): 1,
    ('5.1.9.7.5', 'driver', 'MUST'): 6,
    ('5.1.9.7.5', 'driver', 'SHOULD'): 1,
    ('5.7.6.8.1', 'driver', 'MUST'): 1,
    ('5.7.6.9.1', 'driver', 'MUST'): 1,
}

ONLY = [r for r in all_requirements(include_1_4=True) if r.only_in]


def test_every_1_4_only_statement_is_registered() -> None:
    have = Counter((r.section, r.side, GROUP[r.level]) for r in ONLY)
    assert dict(have) == COUNTS_1_4
    sides = Counter(r.side for r in ONLY)
    assert (len(ONLY), sides["device"], sides["driver"]) == (114, 62, 52)


def test_ids_unique_and_name_their_1_4_section() -> None:
    everything = all_requirements(include_1_4=True)
    assert len({r.id for r in everything}) == len(everything)
    for r in ONLY:
        assert r.only_in == "1.4", r.id
        prefix = f"VIRTIO-1.4-{r.section}-{'DEV' if r.side == 'device' else 'DRV'}-"
        assert r.id.startswith(prefix), r.id
        # its section is the 1.4 number; it has no 1.3 one
        assert r.section_1_4 == r.section and r.section_1_3 is None, r.id
        assert not r.checks, r.id  # nothing judges a 1.4 statement yet


def test_1_4_only_records_stay_out_of_the_1_3_figures() -> None:
    """all_requirements() -- what every universe, denominator and headline is built from --
    holds 1.3 statements only; the table lists the 1.4 ones marked and counts them apart."""
    v13 = all_requirements()
    assert not any(r.only_in for r in v13)
    assert len(all_requirements(include_1_4=True)) == len(v13) + len(ONLY)
    plain = render_requirements_table(v13)
    both = render_requirements_table(all_requirements(include_1_4=True))
    assert plain.splitlines()[-1] == both.splitlines()[-1]  # the same 1.3 headline
    assert "114 statements only in VIRTIO 1.4 (62 device, 52 driver)" in both
    row = next(line for line in both.splitlines()
               if line.startswith("VIRTIO-1.4-5.1.9.5.8.3-DEV-MAX-RSS-CONTEXTS"))
    assert row.split()[1:3] == ["-", "5.1.9.5.8.3"] and row.endswith("VIRTIO 1.4 only")


def test_vhost_user_and_linux_virtio_universes_hold_no_1_4_statement() -> None:
    from conformance.linux_virtio.report import universe as lv_universe
    from conformance.requirements import virtio_device

    only = {r.id for r in ONLY}
    for kind in ("blk", "net", "gpu"):
        assert not only & {r.id for r in virtio_device(kind)}, kind
    for kind in ("blk", "net"):
        assert not only & set(lv_universe(kind)), kind


def test_text_is_ours() -> None:
    """No LaTeX, no RFC 2119 keyword in capitals (our text is a paraphrase, not the
    sentence), and a condition cites a line of the 1.4 sources."""
    for r in ONLY:
        assert "\\" not in r.text and "{" not in r.text, r.id
        assert not re.search(r"\b(MUST|SHOULD|MAY|SHALL)\b", r.text), r.id
        if r.when is not None:
            assert re.fullmatch(r"[\w/-]+\.tex:\d+", r.when.source), r.id


def _spec_repo() -> str:
    import os

    repo = os.environ.get("VIRTIO_SPEC_REPO", "/work/.mirror/oasis-tcs+virtio-spec/repo")
    if subprocess.run(["git", "-C", repo, "rev-parse", "v1.4-cs01"], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip(f"no virtio-spec clone with tag v1.4-cs01 at {repo}")
    return repo


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", re.sub(r"\\field\{([^{}]*)\}", r"\1", text).lower())


def test_counts_and_wording_against_the_spec_sources() -> None:
    """With a clone of oasis-tcs/virtio-spec: COUNTS_1_4 is what the script reads from
    v1.4-cs01, and no record shares a run of six words with a sentence of its block (a
    paraphrase, not a copy)."""
    repo = _spec_repo()
    script = runpy.run_path(str(ROOT / "scripts" / "virtio-statements"))
    assert script["counts_1_4"](repo) == COUNTS_1_4
    found = script["only_in_1_4"](repo)
    copied = []
    for r in ONLY:
        mine = _words(r.text)
        runs = {tuple(mine[i:i + 6]) for i in range(len(mine) - 5)}
        for num, side, _level, sentence in found:
            theirs = _words(sentence)
            if (num, side) == (r.section, r.side) and runs & {
                    tuple(theirs[i:i + 6]) for i in range(len(theirs) - 5)}:
                copied.append(r.id)
    assert not copied, copied


def test_each_cited_1_4_line_names_its_condition() -> None:
    """The cited line (and the 4 after it) at v1.4-cs01 names a feature of the condition:
    the statement's own wording, or (``via``) the wording tying its facility to one."""
    repo = _spec_repo()
    texts: dict[str, list[str]] = {}

    def near(cite: str) -> str:
        path, line = cite.rsplit(":", 1)
        if path not in texts:
            texts[path] = subprocess.run(["git", "-C", repo, "show", f"v1.4-cs01:{path}"],
                                         capture_output=True, text=True,
                                         check=True).stdout.splitlines()
        assert 0 < int(line) <= len(texts[path]), cite
        return " ".join(texts[path][int(line) - 1:int(line) + 4])

    missing = []
    for r in ONLY:
        if r.when is None:
            continue
        prefix = "VIRTIO_GPU_F_" if r.section.startswith("5.7.") else "VIRTIO_NET_F_"
        text = near(r.when.via or r.when.source)
        near(r.when.source)  # the statement's own line exists too
        if not any(prefix + n in text for n in r.when.features()):
            missing.append(r.id)
    assert not missing, missing
