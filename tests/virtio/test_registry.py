"""Every registered MUST has a check, and every named check exists."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from spec.virtio.registry import all_requirements
from spec.virtio.report import render_requirements_table

ROOT = Path(__file__).resolve().parents[2]


def _resolve(name: str) -> object:
    """``module:attr``, ``module.attr`` or ``path/to/test_x.py::test_name``."""
    if "::" in name:
        path, func = name.split("::", 1)
        file = ROOT / path
        spec = importlib.util.spec_from_file_location(f"_regcheck_{file.stem}", file)
        assert spec and spec.loader, name
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return getattr(mod, func.split("[")[0])
    if ":" in name:
        mod_name, attr = name.split(":", 1)
    else:
        mod_name, attr = name.rsplit(".", 1)
    obj: object = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_must_has_a_check() -> None:
    missing = [r.id for r in all_requirements() if r.level in ("MUST", "MUST NOT") and not r.checks]
    assert not missing, missing


def test_every_named_check_exists() -> None:
    dangling = []
    for r in all_requirements():
        for name in r.checks:
            try:
                obj = _resolve(name)
            except (AttributeError, ImportError, FileNotFoundError, OSError) as exc:
                dangling.append(f"{r.id}: {name} ({exc})")
                continue
            if not callable(obj):
                dangling.append(f"{r.id}: {name} is not callable")
    assert not dangling, dangling


def test_ids_are_unique_and_sections_match() -> None:
    reqs = all_requirements()
    assert len({r.id for r in reqs}) == len(reqs)
    for r in reqs:
        if r.id.startswith("VIRTIO-") and "-" in r.id[7:]:
            assert r.section.startswith(r.id.split("-")[1]), r.id


@pytest.mark.parametrize(
    "section",
    [
        "2.1",
        "2.2",
        "2.4",
        "2.5",
        "3.1",
        "4.1.4.3",
        "4.2.2",
        "5.1",
        "5.2",
        "5.3",
        "5.4",
        "5.7",
        "5.8",
    ],
)
def test_each_assigned_section_is_populated(section: str) -> None:
    assert any(
        r.section == section or r.section.startswith(section + ".") for r in all_requirements()
    )


def test_table_renders_with_summary() -> None:
    text = render_requirements_table(all_requirements())
    last = text.splitlines()[-1]
    assert last.endswith("0 MUST uncovered")
    assert "VIRTIO-2.4.1-DEV-RESET-ZERO" in text
