"""The layer contract (``[tool.importlinter]`` in pyproject.toml, checked by
``lint-imports`` in ``make lint``) keeps up with the package: import-linter forbids by
name, so ``wire``'s "nothing but events and errors" must name every other module."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import sluice

PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"
#: What the pure codecs may import besides themselves.
WIRE_MAY_IMPORT = {"sluice.wire", "sluice.events", "sluice.errors"}


def contracts() -> list[dict[str, Any]]:
    with PYPROJECT.open("rb") as handle:
        found: list[dict[str, Any]] = tomllib.load(handle)["tool"]["importlinter"]["contracts"]
    return found


def test_wire_is_forbidden_every_other_module() -> None:
    (wire,) = [c for c in contracts() if c["source_modules"] == ["sluice.wire"]]
    others = {f"sluice.{m.name}" for m in pkgutil.iter_modules(sluice.__path__)}
    others -= {"sluice.__main__", *WIRE_MAY_IMPORT}
    assert set(wire["forbidden_modules"]) == others


def test_the_rules_of_the_architecture_are_all_there() -> None:
    rules = {
        (source, forbidden)
        for contract in contracts()
        for source in contract["source_modules"]
        for forbidden in contract["forbidden_modules"]
    }
    for source, forbidden in [
        ("sluice.providers", "sluice.http"),
        ("sluice.providers", "sluice.cli"),
        ("sluice.providers", "sluice.engine"),
        ("sluice.engine", "sluice.http"),
        ("sluice.engine", "sluice.cli"),
        ("sluice.store", "sluice.engine"),
        ("sluice.store", "sluice.http"),
        ("sluice.policy", "sluice.http"),
        ("sluice.policy", "sluice.cli"),
    ]:
        assert (source, forbidden) in rules
