"""The plugin's configuration: ``--txscope-*`` options over ``txscope_*`` ini keys over the environment over
defaults, resolved once per run into a frozen `Settings` kept in ``config.stash``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from .errors import TxScopeError
from .url import DatabaseURL

__all__ = ["SETTINGS", "SchemaEntry", "Settings", "add_options", "resolve"]

_BOOLS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}
_SAVEPOINT_MODES = ("auto", "on", "off")
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
SCHEMA_FORMS = (
    "an SQL file (path/to/schema.sql, relative to the ini file) or an import path (package.module:attribute)"
)


@dataclass(frozen=True)
class SchemaEntry:
    """One ``txscope_schema`` entry: an SQL file, or an import path to a callable taking the engine."""

    text: str
    path: Path | None = None
    import_path: str | None = None


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one pytest run."""

    url: DatabaseURL | None
    """The database; None for the embedded SQLite default in pytest's temporary directory."""
    url_source: str
    schema: tuple[SchemaEntry, ...]
    engines: tuple[str, ...]
    reuse_db: bool
    check_leaks: bool
    block: bool
    allow_databases: tuple[str, ...]
    statement_savepoints: str
    """``auto`` (on where one error aborts the transaction: PostgreSQL), ``on`` or ``off``."""
    thread_timeout: float = 10.0
    """Seconds a thread waits for a shared sandbox's connection."""

    def protect_statements(self) -> bool | None:
        """What `Sandbox(protect_statements=...)` gets."""
        return None if self.statement_savepoints == "auto" else self.statement_savepoints == "on"

    def describe_target(self) -> str:
        """The target for the pytest header, password masked."""
        if self.url is None:
            return "embedded SQLite in pytest's temporary directory"
        return str(self.url)


SETTINGS = pytest.StashKey[Settings]()


def add_options(parser: pytest.Parser) -> None:
    """Register the command-line options and ini keys."""
    group = parser.getgroup("txscope", "database transactions rolled back per test (pytest-txscope)")
    group.addoption(
        "--txscope-url",
        default=None,
        help="database URL (overrides ini txscope_url and $TXSCOPE_URL; default: embedded SQLite)",
    )
    group.addoption(
        "--txscope-reuse-db",
        action="store_true",
        default=None,
        help="keep the databases this run creates, and reuse them next run if the schema is unchanged",
    )
    group.addoption(
        "--txscope-check-leaks",
        action="store_true",
        default=None,
        help="after each test, compare every table's row count with the start of the run",
    )
    group.addoption(
        "--txscope-statement-savepoints",
        default=None,
        choices=_SAVEPOINT_MODES,
        help="run each statement sent outside transaction blocks in its own savepoint (default: auto)",
    )
    parser.addini("txscope_url", "database URL (see --txscope-url)", default="")
    parser.addini(
        "txscope_schema", f"schema, run once per run: {SCHEMA_FORMS}, one per line", type="linelist"
    )
    parser.addini(
        "txscope_engines",
        "import paths of the application's engines to pin in sandboxed tests",
        type="linelist",
    )
    parser.addini(
        "txscope_reuse_db", "true to keep and reuse created databases (see --txscope-reuse-db)", default=""
    )
    parser.addini("txscope_check_leaks", "true to check tables for leftover rows after each test", default="")
    parser.addini(
        "txscope_block", "true to refuse database use in tests that asked for no sandbox", default=""
    )
    parser.addini(
        "txscope_allow_databases",
        "database names the plugin may create, drop or clean although they do not look like test databases",
        type="linelist",
    )
    parser.addini(
        "txscope_statement_savepoints", "auto, on or off (see --txscope-statement-savepoints)", default=""
    )
    parser.addini(
        "txscope_thread_timeout",
        "seconds a thread waits for a shared sandbox's connection (default 10)",
        default="",
    )


def _bool(config: pytest.Config, option: str, ini: str) -> bool:
    value = config.getoption(option)
    if value is not None:
        return bool(value)
    return _ini_bool(config, ini)


def resolve(config: pytest.Config) -> Settings:
    """Resolve and validate the configuration; raise `pytest.UsageError` naming the valid forms."""
    url_text, source = config.getoption("--txscope-url"), "--txscope-url"
    if not url_text:
        url_text, source = str(config.getini("txscope_url")).strip(), "txscope_url"
    if not url_text:
        url_text, source = os.environ.get("TXSCOPE_URL", "").strip(), "TXSCOPE_URL"
    url = None
    if url_text:
        try:
            url = DatabaseURL.parse(url_text)
        except TxScopeError as exc:
            raise pytest.UsageError(f"{source}: {exc}") from None
    else:
        source = "default"
    base = config.inipath.parent if config.inipath else config.rootpath
    schema = tuple(_schema_entry(str(text), base) for text in config.getini("txscope_schema"))
    engines = tuple(str(e) for e in config.getini("txscope_engines"))
    for entry in engines:
        if not _IMPORT_PATH.match(entry):
            raise pytest.UsageError(
                f"txscope_engines entry {entry!r} is not an import path; write it as package.module:attribute"
            )
    mode = (
        config.getoption("--txscope-statement-savepoints")
        or str(config.getini("txscope_statement_savepoints")).strip().lower()
        or "auto"
    )
    if mode not in _SAVEPOINT_MODES:
        raise pytest.UsageError(
            f"txscope_statement_savepoints = {mode!r} is not valid; use one of: {', '.join(_SAVEPOINT_MODES)}"
        )
    raw_timeout = str(config.getini("txscope_thread_timeout")).strip() or "10"
    try:
        thread_timeout = float(raw_timeout)
    except ValueError:
        thread_timeout = 0.0
    if not thread_timeout > 0:
        raise pytest.UsageError(
            f"txscope_thread_timeout = {raw_timeout!r} is not valid; use a number of seconds greater than 0"
        )
    return Settings(
        url=url,
        url_source=source,
        schema=schema,
        engines=engines,
        reuse_db=_bool(config, "--txscope-reuse-db", "txscope_reuse_db"),
        check_leaks=_bool(config, "--txscope-check-leaks", "txscope_check_leaks"),
        block=_ini_bool(config, "txscope_block"),
        allow_databases=tuple(str(a) for a in config.getini("txscope_allow_databases")),
        statement_savepoints=mode,
        thread_timeout=thread_timeout,
    )


def _ini_bool(config: pytest.Config, ini: str) -> bool:
    raw = str(config.getini(ini)).strip()
    if not raw:
        return False
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise pytest.UsageError(f"{ini} = {raw!r} is not a boolean; use true or false") from None


def _schema_entry(text: str, base: Path) -> SchemaEntry:
    if _IMPORT_PATH.match(text) and not text.endswith(".sql"):
        return SchemaEntry(text, import_path=text)
    path = (base / text).resolve()
    if path.is_file():
        return SchemaEntry(text, path=path)
    raise pytest.UsageError(
        f"txscope_schema entry {text!r} is neither a file (looked for {path}) nor an import path; "
        f"use {SCHEMA_FORMS}"
    )
