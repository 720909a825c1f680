"""Schema entries: what ``txscope_schema`` lists for the run's database, and what ``txscope_database_schemas``
lists for each of the other databases (``NAME = ENTRY`` lines). An entry is an SQL file, an import path, or
alembic migrations; both keys accept the same entries, checked the same way.

Split from `pytest_txscope.options` so that `pytest_txscope.plugin_databases` can attach a schema to each named
database without importing the options module that imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .errors import ConfigurationError
from .migrations import ALEMBIC_PREFIX

__all__ = ["DATABASE_NAME", "IMPORT_PATH", "SCHEMA_FORMS", "SchemaEntry", "schema_entry", "schema_lines"]

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
SCHEMA_FORMS = (
    "an SQL file (path/to/schema.sql, relative to the ini file), an import path (package.module:attribute) "
    "or alembic migrations (alembic:path/to/alembic.ini)"
)
DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What names a database in ``txscope_databases`` and ``txscope_database_schemas``."""
_EXAMPLE = "reports = path/to/reports.sql"


@dataclass(frozen=True)
class SchemaEntry:
    """One schema entry: an SQL file, an import path to a callable taking the engine (or to SQLAlchemy
    metadata), or an alembic configuration file whose migrations are run (``alembic:path/to/alembic.ini``)."""

    text: str
    path: Path | None = None
    import_path: str | None = None
    alembic: Path | None = None
    key: str = "txscope_schema"
    """The ini key the entry comes from, for messages."""
    line: str | None = None
    """The whole ``NAME = ENTRY`` line, for an entry of ``txscope_database_schemas``."""

    @property
    def label(self) -> str:
        """The entry as messages name it: ``txscope_schema entry 'schema.sql'``."""
        if self.line is None:
            return f"{self.key} entry {self.text!r}"
        return f"{self.key} line {self.line!r}"


def schema_entry(text: str, base: Path, key: str = "txscope_schema", line: str | None = None) -> SchemaEntry:
    """The entry ``text`` (paths relative to ``base``); `pytest.UsageError` naming it and the forms."""
    entry = SchemaEntry(text, key=key, line=line)
    subject = entry.label if line is None else f"{entry.label}: {text!r}"
    if text.startswith(ALEMBIC_PREFIX):
        from .migrations import check_alembic

        ini = (base / text.removeprefix(ALEMBIC_PREFIX).strip()).resolve()
        try:
            check_alembic(ini, entry.label)
        except ConfigurationError as exc:
            raise pytest.UsageError(str(exc)) from None
        return SchemaEntry(text, alembic=ini, key=key, line=line)
    if IMPORT_PATH.match(text) and not text.endswith(".sql"):
        return SchemaEntry(text, import_path=text, key=key, line=line)
    path = (base / text).resolve()
    if path.is_file():
        return SchemaEntry(text, path=path, key=key, line=line)
    raise pytest.UsageError(
        f"{subject} is neither a file (looked for {path}) nor an import path; use {SCHEMA_FORMS}"
    )


def schema_lines(
    lines: Iterable[object], names: tuple[str, ...], base: Path
) -> dict[str, tuple[SchemaEntry, ...]]:
    """The ``txscope_database_schemas`` lines (``NAME = ENTRY``) by database name, in order, each entry checked;
    ``names`` are the databases ``txscope_databases`` configures. `pytest.UsageError` naming the line and the
    fix."""
    key = "txscope_database_schemas"
    found: dict[str, tuple[SchemaEntry, ...]] = {}
    for raw in lines:
        line = str(raw).strip()
        if not line:
            continue
        name, sep, text = (part.strip() for part in line.partition("="))
        if not sep or not text or not DATABASE_NAME.match(name):
            raise pytest.UsageError(
                f"{key} line {line!r} is not NAME = ENTRY (a database of txscope_databases, and {SCHEMA_FORMS}); "
                f"write it as: {_EXAMPLE}"
            )
        if name == "default":
            raise pytest.UsageError(
                f"{key} line {line!r}: the default database's schema is txscope_schema; move {text!r} there"
            )
        if name not in names:
            configured = ", ".join(names) or "none"
            raise pytest.UsageError(
                f"{key} line {line!r} names the database {name!r}, which txscope_databases does not configure "
                f"(configured: {configured}); add the line '{name} = <its URL>' to txscope_databases, or "
                "correct the name"
            )
        found[name] = (*found.get(name, ()), schema_entry(text, base, key, line))
    return found
