"""Fixtures: the C example adapter, built once per session (one binary per planted bug)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ADAPTER = Path(__file__).resolve().parents[2] / "examples" / "c-adapter"
BUGS = ("NO_PRIV_CHECK", "RO_SHARE_RW", "RECLAIM_RETRIEVED", "DESTROY_FREES_MAPPED",
        "SEND_UNBOUND", "ERROR_PRECEDENCE", "NO_QUOTA", "CRASH_MALFORMED")


def _compile(out: Path, *defines: str) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    subprocess.run([cc, "-O2", "-Wall", "-Werror", *defines, "-o", str(out),
                    str(ADAPTER / "pvhv.c"), str(ADAPTER / "json.c")], check=True)
    return out


@pytest.fixture(scope="session")
def c_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The correct adapter."""
    return _compile(tmp_path_factory.mktemp("pvhv") / "pvhv")


@pytest.fixture(scope="session")
def faulty_adapter(tmp_path_factory: pytest.TempPathFactory):
    """A builder: planted bug name -> path of the binary compiled with -DBUG_<name>."""
    built: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("pvhv-faulty")

    def build(bug: str) -> Path:
        if bug not in built:
            built[bug] = _compile(root / f"pvhv-{bug}", f"-DBUG_{bug}")
        return built[bug]

    return build
