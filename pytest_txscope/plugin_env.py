"""``txscope_env``: environment variables that point the application at the test database, set before pytest
imports any conftest or test module, so that settings read at import (pydantic-settings, Flask config, Django-style
settings modules) see them.

Each line is ``NAME=template``; the template's ``{field}`` parts are filled from the database this process uses
(an xdist worker's own, see `pytest_txscope.plugin_database.run_database`), ``{reports.field}`` parts from the
``txscope_databases`` database ``reports`` (its xdist worker's copy when it has a schema). The variables are put
back as they were when the run ends.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import string
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from .errors import ConfigurationError
from .options import resolve_url
from .plugin_database import EMBEDDED, run_database
from .plugin_databases import parse_databases
from .url import DatabaseURL, mask_password

__all__ = ["ENV", "FIELDS", "EnvLine", "EnvPlan", "header_lines", "parse_line", "set_environment"]

FIELDS = ("url", "sqlalchemy_url", "sqlalchemy_async_url", "database", "host", "port", "user", "password")
"""What a template may name, in the order error messages list them."""
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FORM = (
    "each entry is NAME=text with {field} parts, e.g. DATABASE_URL={url}; the fields are "
    + ", ".join(f"{{{f}}}" for f in FIELDS)
    + ", and {reports.url} & co. for a txscope_databases database"
)
DIR_VARIABLE = "TXSCOPE_ENV_DIR"
"""Where the controller of an xdist run put the embedded SQLite default; its workers use folders in it."""


@dataclass(frozen=True)
class EnvLine:
    """One ``NAME=template`` line of ``txscope_env`` (or one ``--txscope-env``)."""

    name: str
    template: str
    fields: frozenset[str]
    source: str
    """``txscope_env`` or ``--txscope-env``: where the line came from, for messages."""

    def render(self, values: dict[str, object]) -> str:
        """The value of the variable, from the fields' ``values``."""
        return self.template.format_map(values)


def parse_line(text: str, source: str) -> EnvLine:
    """Parse ``NAME=template``; raise `pytest.UsageError` naming the line, the problem and the fields."""
    name, equals, template = text.strip().partition("=")
    name = name.strip()
    if not equals:
        _bad(text, source, "it has no '='")
    if not _NAME.match(name):
        _bad(
            text,
            source,
            f"{name!r} is not a variable name (letters, digits and _, not starting with a digit)",
        )
    fields = set()
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        _bad(text, source, "a '{' or '}' is not part of a field (write {{ or }} for a brace of its own)")
    for _, part, spec, conversion in parts:
        if part is None:
            continue
        database, dot, own = part.rpartition(".")
        if own not in FIELDS or (dot and not _NAME.match(database)):
            _bad(text, source, f"unknown field {{{part}}}")
        if spec or conversion:
            _bad(text, source, f"write the field as {{{part}}}, without a format or a conversion")
        fields.add(part)
    return EnvLine(name, template, frozenset(fields), source)


def _bad(text: str, source: str, problem: str) -> NoReturn:
    where = f"{source} line" if source == "txscope_env" else source
    raise pytest.UsageError(f"{where} {mask_password(text.strip())!r}: {problem}; {_FORM}")


def _lines(config: pytest.Config) -> tuple[EnvLine, ...]:
    """The ini key's lines, with those of ``--txscope-env`` replacing the ini's line of the same name."""
    by_name: dict[str, EnvLine] = {}
    ini = [str(text) for text in config.getini("txscope_env")]
    option = getattr(config.known_args_namespace, "txscope_env", None) or []
    for source, texts in (("txscope_env", ini), ("--txscope-env", option)):
        seen: set[str] = set()
        for text in texts:
            line = parse_line(text, source)
            if line.name in seen:
                _bad(text, source, f"{line.name} is set twice; keep one line for it")
            seen.add(line.name)
            by_name[line.name] = line
    return tuple(by_name.values())


def field_values(url: DatabaseURL, fields: frozenset[str], *, masked: bool) -> dict[str, str]:
    """The fields' text for ``url``; ``masked``: the password shown as ``***`` (for the header)."""
    port = url.port or _DEFAULT_PORTS.get(url.backend)
    values = {
        "database": url.database,
        "host": url.host or "",
        "port": str(port) if port else "",
        "user": url.user or "",
        "password": "***" if masked and url.password else url.password or "",
    }
    if "url" in fields:
        values["url"] = str(url) if masked else url.revealed()
    if "sqlalchemy_url" in fields:
        from .sqlalchemy import sqlalchemy_url  # imports SQLAlchemy: only when a line asks for its spelling

        values["sqlalchemy_url"] = sqlalchemy_url(url).render_as_string(hide_password=masked)
    if "sqlalchemy_async_url" in fields:
        from .sqlalchemy import sqlalchemy_async_url

        values["sqlalchemy_async_url"] = sqlalchemy_async_url(url).render_as_string(hide_password=masked)
    return values


@dataclass(frozen=True)
class EnvPlan:
    """What `set_environment` did in this process."""

    url: DatabaseURL
    """The database the variables name: this process's (an xdist worker's own)."""
    lines: tuple[EnvLine, ...]
    per_worker: bool
    """Whether each xdist worker gets a database of its own (a schema, or the embedded default)."""
    others: dict[str, DatabaseURL] = dataclasses.field(default_factory=dict)
    """The ``txscope_databases`` databases the lines name (``{reports.url}``), as this process uses them."""


def _all_values(
    url: DatabaseURL, others: dict[str, DatabaseURL], fields: frozenset[str], *, masked: bool
) -> dict[str, object]:
    """The values of ``fields``: the run's database's, and ``{reports.url}``'s as an object with attributes."""
    values: dict[str, object] = dict(field_values(url, fields, masked=masked))
    for name, other in others.items():
        wanted = frozenset(f.partition(".")[2] for f in fields if f.startswith(f"{name}."))
        values[name] = types.SimpleNamespace(**field_values(other, wanted, masked=masked))
    return values


def _others(
    config: pytest.Config, lines: tuple[EnvLine, ...], url: DatabaseURL, worker: str | None
) -> tuple[dict[str, DatabaseURL], bool]:
    """The ``txscope_databases`` databases the lines name, as this process uses them: a worker's copy of those
    with a schema (``txscope_database_schemas``), as they are built; the others as configured. And whether one
    of them is a worker's copy."""
    named = {f.partition(".")[0] for line in lines for f in line.fields if "." in f}
    if not named:
        return {}, False
    databases = {d.name: d for d in parse_databases(config.getini("txscope_databases"), url, lambda *_: None)}
    built = {str(x).partition("=")[0].strip() for x in config.getini("txscope_database_schemas")}
    for line in lines:
        for f in sorted(line.fields):
            name = f.partition(".")[0]
            if "." in f and name not in databases:
                configured = ", ".join(databases) or "none"
                _bad(
                    f"{line.name}={line.template}",
                    line.source,
                    f"{{{f}}} names {name!r}, which txscope_databases does not configure (configured: {configured})",
                )
    others = {name: run_database(databases[name].url, name in built, worker) for name in sorted(named)}
    return others, bool(named & built)


ENV = pytest.StashKey[EnvPlan]()


def set_environment(config: pytest.Config) -> None:
    """Set the variables of ``txscope_env`` (nothing without it), and have them put back when the run ends."""
    lines = _lines(config)
    if not lines:
        return
    fields = frozenset().union(*(line.fields for line in lines))
    for field in ("sqlalchemy_url", "sqlalchemy_async_url"):
        wanted = [f for f in fields if f.rpartition(".")[2] == field]
        if wanted and importlib.util.find_spec("sqlalchemy") is None:
            line = next(line for line in lines if wanted[0] in line.fields)
            _bad(
                f"{line.name}={line.template}",
                line.source,
                f"{{{field}}} needs SQLAlchemy, which is not installed (pip install sqlalchemy); or use {{url}}",
            )
    url, _ = resolve_url(config, getattr(config.known_args_namespace, "txscope_url", None))
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    saved: dict[str, str | None] = {}
    config.add_cleanup(lambda: _restore(saved))
    if url is None:
        url = _embedded(config, worker, saved)
    schema = bool(config.getini("txscope_schema"))
    target = run_database(url, schema, worker)
    others, others_per_worker = _others(config, lines, url, worker)
    try:
        values = _all_values(target, others, fields, masked=False)
    except ConfigurationError as exc:  # {sqlalchemy_async_url} for a driver with no asyncio twin
        line = next(line for line in lines if any(f.endswith("sqlalchemy_async_url") for f in line.fields))
        _bad(f"{line.name}={line.template}", line.source, str(exc))
    for line in lines:
        saved.setdefault(line.name, os.environ.get(line.name))
        os.environ[line.name] = line.render(values)
    per_worker = schema or EMBEDDED in config.stash or others_per_worker
    config.stash[ENV] = EnvPlan(target, lines, per_worker=per_worker, others=others)


def _embedded(config: pytest.Config, worker: str | None, saved: dict[str, str | None]) -> DatabaseURL:
    """The embedded SQLite default, chosen now (pytest's temporary directory does not exist yet): a folder of
    the run's own, which xdist workers get through `DIR_VARIABLE` and use a subfolder of."""
    shared = os.environ.get(DIR_VARIABLE) if worker else None
    if shared and worker and Path(shared).is_dir():
        folder = Path(shared) / worker
        folder.mkdir(exist_ok=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="pytest-txscope-"))
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))
        saved.setdefault(DIR_VARIABLE, os.environ.get(DIR_VARIABLE))
        os.environ[DIR_VARIABLE] = str(folder)
    url = DatabaseURL.parse(f"sqlite:///{folder / 'txscope_test.db'}?journal_mode=wal")
    config.stash[EMBEDDED] = url
    return url


def _restore(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def header_lines(config: pytest.Config) -> list[str]:
    """The header's lines for the variables: their values with the password masked."""
    plan = config.stash.get(ENV, None)
    if plan is None:
        return []
    fields = frozenset().union(*(line.fields for line in plan.lines))
    shown = _all_values(plan.url, plan.others, fields, masked=True)
    lines = [f"txscope env: {line.name}={line.render(shown)}" for line in plan.lines]
    if plan.per_worker and config.pluginmanager.hasplugin("dsession"):
        lines.append("txscope env: set by each pytest-xdist worker to its own database (<name>_gw0, ...)")
    return lines
