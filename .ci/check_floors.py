"""Check that .ci/floors.txt pins exactly the floors pyproject.toml declares, and that they are installed.

Run with the floors environment's Python after installing ``.[test]`` with ``-c .ci/floors.txt``. Every
``>=`` floor of the runtime dependencies and of the ``test`` extra (with the extras it names) must be pinned at
that version, every pin must be such a floor, and the installed version must be the pinned one: so the floors
CI tests are the floors users are promised, and raising one means raising both.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest requires tomli on Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SELF = "pytest-txscope"


def declared_floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    todo = [*project["dependencies"], f"{SELF}[test]"]
    seen: set[str] = set()
    floors: dict[str, Version] = {}
    while todo:
        req = Requirement(todo.pop())
        if canonicalize_name(req.name) == SELF:  # an extra naming other extras of ours
            for extra in sorted(req.extras - seen):
                seen.add(extra)
                todo += extras[extra]
            continue
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        name = canonicalize_name(req.name)
        if len(lows) != 1 or floors.get(name, lows[0]) != lows[0]:
            sys.exit(f"{req} in pyproject.toml: expected one '>=' floor, the same wherever it is declared")
        floors[name] = lows[0]
    return floors


def pinned() -> dict[str, tuple[str, Version]]:
    pins = {}
    for raw in (ROOT / ".ci" / "floors.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, text = line.partition("==")
            pins[canonicalize_name(name)] = (name.strip(), Version(text.strip()))
    return pins


def main() -> int:
    floors, pins = declared_floors(), pinned()
    problems = [f"{name}>={floors[name]} is declared but not pinned" for name in sorted(floors.keys() - pins)]
    problems += [
        f"{pins[name][0]} is pinned but no floor is declared" for name in sorted(pins.keys() - floors)
    ]
    for key in sorted(floors.keys() & pins.keys()):
        name, pin = pins[key]
        if pin != floors[key]:
            problems.append(f"{name}: pinned at {pin}, but pyproject.toml declares >={floors[key]}")
        installed = Version(version(name))
        if installed != pin:
            problems.append(f"{name}: {installed} is installed, not the pinned {pin}")
        else:
            print(f"floor {name}=={installed}")
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
