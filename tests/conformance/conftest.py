"""Fixtures: the C example adapter, built once per session (one binary per planted bug)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ADAPTER = Path(__file__).resolve().parents[2] / "examples" / "c-adapter"
BUGS = ("NO_PRIV_CHECK", "RO_SHARE_RW", "RECLAIM_RETRIEVED", "DESTROY_FREES_MAPPED",
        "SEND_UNBOUND", "ERROR_PRECEDENCE", "NO_QUOTA", "CRASH_MALFORMED")
# planted bugs of the LOOSE adapter (-DLOOSE: its own choices of ports, handles, power-on)
LOOSE_BUGS = ("HANDLE_REUSE", "PORT_OOR", "DOUBLE_CPU_ON", "AFFINITY_OFF_AFTER_RUN",
              "ERROR_OUTSIDE", "REFINEMENT_BROKEN")
# planted bugs of the front ends built with -DPVHV_ABIS (ffa.c, xen.c: the real ABIs)
ABIS_BUGS = ("FFA_HANDLE_SWAP", "FFA_RESERVED_ERROR", "FFA_CONSTITUENT_BOUND",
             "XEN_ERRNO_SIGN", "XEN_STATUS_PORT", "XEN_BIND_FIELD")


def _compile(out: Path, *defines: str) -> Path:
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    sources = ["pvhv.c", "json.c"] + (["ffa.c", "xen.c"] if "-DPVHV_ABIS" in defines else [])
    subprocess.run([cc, "-O2", "-Wall", "-Werror", *defines, "-o", str(out),
                    *(str(ADAPTER / s) for s in sources)], check=True)
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


@pytest.fixture(scope="session")
def loose_adapter(tmp_path_factory: pytest.TempPathFactory):
    """A builder: ``build(bug=None)`` -> path of the adapter compiled with -DLOOSE (a correct
    target choosing its own ports, handles and power-on moment, protocol 1.1 with a
    profile), and with -DBUG_<bug> as well when a LOOSE planted bug is named."""
    built: dict[str | None, Path] = {}
    root = tmp_path_factory.mktemp("pvhv-loose")

    def build(bug: str | None = None) -> Path:
        if bug is not None and bug not in LOOSE_BUGS:
            raise ValueError(f"not a planted bug of the LOOSE adapter: {bug}")
        if bug not in built:
            defines = ["-DLOOSE"] + ([f"-DBUG_{bug}"] if bug else [])
            built[bug] = _compile(root / f"pvhv-loose{'-' + bug if bug else ''}", *defines)
        return built[bug]

    return build


@pytest.fixture(scope="session")
def abis_adapter(tmp_path_factory: pytest.TempPathFactory):
    """A builder: ``build(bug=None, loose=False)`` -> the adapter compiled with -DPVHV_ABIS
    (its memory transactions in FF-A, its event channels in Xen's event_channel_op, through
    ``abi_call``), with -DLOOSE and a front end's planted -DBUG_<bug> if asked."""
    built: dict[tuple[str | None, bool], Path] = {}
    root = tmp_path_factory.mktemp("pvhv-abis")

    def build(bug: str | None = None, loose: bool = False) -> Path:
        if bug is not None and bug not in ABIS_BUGS:
            raise ValueError(f"not a planted bug of the ABI front ends: {bug}")
        if (bug, loose) not in built:
            defines = ["-DPVHV_ABIS"] + (["-DLOOSE"] if loose else []) + \
                ([f"-DBUG_{bug}"] if bug else [])
            name = "pvhv-abis" + ("-loose" if loose else "") + (f"-{bug}" if bug else "")
            built[bug, loose] = _compile(root / name, *defines)
        return built[bug, loose]

    return build
