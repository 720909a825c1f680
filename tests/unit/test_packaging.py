"""What a wheel ships: every subpackage of the source tree (an editable install hides a missing one)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest requires tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_declared() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "packages"
    ]
    found = sorted(
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "pytest_txscope").rglob("__init__.py")
    )
    assert sorted(declared) == found
