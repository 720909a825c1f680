"""The plugin's configuration: ``--txscope-*`` options over ``txscope_*`` ini keys over the environment over
defaults, resolved once per run into a frozen `Settings` kept in ``config.stash``."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from .dialects import dialect_for_url
from .errors import ConfigurationError, TxScopeError
from .import_paths import import_object
from .ini_keys import INI_KEYS, check_unknown_keys
from .intercept import DRIVERS as CONNECT_DRIVERS
from .intercept import drivers_to_intercept
from .plugin_databases import NamedDatabase, parse_databases
from .plugin_schemas import IMPORT_PATH, SCHEMA_FORMS, SchemaEntry, schema_entry, schema_lines
from .url import DatabaseURL

__all__ = [
    "INI_KEYS",
    "SCHEMA_FORMS",
    "SETTINGS",
    "SchemaEntry",
    "Settings",
    "add_options",
    "import_object",
    "resolve",
    "resolve_url",
]

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
_THREAD_MODES = ("shared", "strict")


def _scalar(kind: type) -> Any:
    """The ini type of a key holding a boolean or a number.

    pytest 9.2 checks the types of a native ``[tool.pytest]`` TOML table: ``str | bool`` lets a user write
    ``txscope_reuse_db = true`` there, while INI files and ``-o`` still hand us the text, which `resolve`
    checks with our own messages (``str`` comes first, so pytest never converts it). Older pytests read
    everything as text.
    """
    return str | kind if pytest.version_tuple >= (9, 2) else "string"


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
    threads: str = "shared"
    """``shared`` (every thread uses the test's sandbox, statement by statement) or ``strict`` (other threads
    are refused unless the test lets them in)."""
    connect: tuple[str, ...] = ()
    """The drivers (import names) whose own ``connect()`` is intercepted in sandboxed tests."""
    databases: tuple[NamedDatabase, ...] = ()
    """The run's other databases (``txscope_databases``), which tests opt in to by name, each with its schema
    (``txscope_database_schemas``)."""
    lock_timeout: float = 300.0
    """Seconds a run waits for another run's lock on its test database, or on a template being built."""

    def protect_statements(self) -> bool | None:
        """What `Sandbox(protect_statements=...)` gets."""
        return None if self.statement_savepoints == "auto" else self.statement_savepoints == "on"

    def builds(self) -> bool:
        """Whether the plugin builds a database: the run's own (``txscope_schema``) or another one."""
        return bool(self.schema) or any(d.schema for d in self.databases)

    def describe_target(self) -> str:
        """The target for the pytest header, password masked."""
        if self.url is None:
            return "embedded SQLite in pytest's temporary directory"
        return str(self.url)


SETTINGS = pytest.StashKey[Settings]()


# Command-line options: (name, argparse keywords). Each defaults to None so that its ini key fills in.
_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--txscope-url",
        {"help": "database URL (overrides ini txscope_url and $TXSCOPE_URL; default: embedded SQLite)"},
    ),
    (
        "--txscope-reuse-db",
        {
            "action": "store_true",
            "help": "keep the databases this run creates, and reuse them next run if the schema is unchanged",
        },
    ),
    (
        "--txscope-check-leaks",
        {
            "action": "store_true",
            "help": "after each test, compare every table's row count with the start of the run",
        },
    ),
    (
        "--txscope-statement-savepoints",
        {
            "choices": _SAVEPOINT_MODES,
            "help": "run each statement sent outside transaction blocks in its own savepoint (default: auto)",
        },
    ),
    (
        "--txscope-env",
        {
            "action": "append",
            "metavar": "NAME={field}",
            "help": "set an environment variable to the test database before conftests are imported "
            "(repeatable; replaces txscope_env's line for NAME)",
        },
    ),
    (
        "--txscope-threads",
        {
            "choices": _THREAD_MODES,
            "help": "shared: every thread uses the test's sandbox; strict: other threads are refused "
            "(default: shared)",
        },
    ),
    (
        "--txscope-connect",
        {
            "help": "drivers whose own connect() to the test database gives the sandbox's connection in sandboxed "
            f"tests: {', '.join(CONNECT_DRIVERS)} or auto (overrides ini txscope_connect)",
        },
    ),
)

# Ini keys: (name, help, type, default).
_INI_KEYS: tuple[tuple[str, str, Any, Any], ...] = (
    ("txscope_url", "database URL (see --txscope-url)", None, ""),
    ("txscope_schema", f"schema, run once per run: {SCHEMA_FORMS}, one per line", "linelist", None),
    (
        "txscope_engines",
        "import paths of the application's engines to pin in sandboxed tests",
        "linelist",
        None,
    ),
    ("txscope_reuse_db", "true to keep and reuse created databases (see --txscope-reuse-db)", bool, ""),
    ("txscope_check_leaks", "true to check tables for leftover rows after each test", bool, ""),
    ("txscope_block", "true to refuse database use in tests that asked for no sandbox", bool, ""),
    (
        "txscope_allow_databases",
        "database names the plugin may create, drop or clean although they do not look like test databases",
        "linelist",
        None,
    ),
    ("txscope_statement_savepoints", "auto, on or off (see --txscope-statement-savepoints)", None, ""),
    (
        "txscope_thread_timeout",
        "seconds a thread waits for a shared sandbox's connection (default 10)",
        float,
        "",
    ),
    (
        "txscope_env",
        "NAME={field} lines: environment variables set to the test database before conftests are imported",
        "linelist",
        None,
    ),
    ("txscope_threads", "shared or strict (see --txscope-threads)", None, ""),
    ("txscope_connect", "drivers whose connect() is intercepted in sandboxed tests, or auto", "args", None),
    (
        "txscope_databases",
        "NAME = URL lines: more databases sandboxed in tests that opt in with "
        "@pytest.mark.txscope(databases=[...])",
        "linelist",
        None,
    ),
    (
        "txscope_database_schemas",
        f"NAME = ENTRY lines: the schema of each txscope_databases database, built as txscope_schema's: {SCHEMA_FORMS}",
        "linelist",
        None,
    ),
    (
        "txscope_lock_timeout",
        "seconds to wait for another run's lock on the test database or its template (default 300)",
        float,
        "",
    ),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the command-line options and ini keys."""
    group = parser.getgroup("txscope", "database transactions rolled back per test (pytest-txscope)")
    for name, keywords in _OPTIONS:
        group.addoption(name, default=None, **keywords)
    for key, text, kind, default in _INI_KEYS:
        if kind in ("linelist", "args"):
            parser.addini(key, text, type=kind)
        elif kind is None:
            parser.addini(key, text, default=default)
        else:
            parser.addini(key, text, type=_scalar(kind), default=default)


def _bool(config: pytest.Config, option: str, ini: str) -> bool:
    value = config.getoption(option)
    if value is not None:
        return bool(value)
    return _ini_bool(config, ini)


def resolve(config: pytest.Config) -> Settings:
    """Resolve and validate the configuration; raise `pytest.UsageError` naming the valid forms."""
    check_unknown_keys(config)
    url, source = resolve_url(config, config.getoption("--txscope-url"))
    base = config.inipath.parent if config.inipath else config.rootpath
    databases = parse_databases(config.getini("txscope_databases"), url, _check_driver)
    schemas = schema_lines(config.getini("txscope_database_schemas"), tuple(d.name for d in databases), base)
    databases = tuple(d.with_schema(schemas.get(d.name, ())) for d in databases)
    return Settings(
        url=url,
        url_source=source,
        schema=tuple(schema_entry(str(text), base) for text in config.getini("txscope_schema")),
        engines=_resolve_engines(config),
        reuse_db=_bool(config, "--txscope-reuse-db", "txscope_reuse_db"),
        check_leaks=_bool(config, "--txscope-check-leaks", "txscope_check_leaks"),
        block=_ini_bool(config, "txscope_block"),
        allow_databases=tuple(str(a) for a in config.getini("txscope_allow_databases")),
        statement_savepoints=_resolve_savepoint_mode(config),
        thread_timeout=_resolve_thread_timeout(config),
        threads=_resolve_threads(config),
        connect=_resolve_connect(config, url, databases),
        databases=databases,
        lock_timeout=_resolve_seconds(config, "txscope_lock_timeout", "300", minimum=0.0),
    )


def resolve_url(config: pytest.Config, option: str | None) -> tuple[DatabaseURL | None, str]:
    """The URL, from the first place that gives one: the option's value ``option``, the ini key, the
    environment (with its source's name, for the header)."""
    url_text, source = (option or "").strip(), "--txscope-url"
    if not url_text:
        url_text, source = str(config.getini("txscope_url")).strip(), "txscope_url"
    if not url_text:
        url_text, source = os.environ.get("TXSCOPE_URL", "").strip(), "TXSCOPE_URL"
    if not url_text:
        return None, "default"
    try:
        url = DatabaseURL.parse(url_text)
    except TxScopeError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None
    _check_driver(url, source)
    return url, source


def _resolve_engines(config: pytest.Config) -> tuple[str, ...]:
    engines = tuple(str(e) for e in config.getini("txscope_engines"))
    for entry in engines:
        if not IMPORT_PATH.match(entry):
            raise pytest.UsageError(
                f"txscope_engines entry {entry!r} is not an import path; write it as package.module:attribute"
            )
    return engines


def _resolve_savepoint_mode(config: pytest.Config) -> str:
    mode = (
        config.getoption("--txscope-statement-savepoints")
        or str(config.getini("txscope_statement_savepoints")).strip().lower()
        or "auto"
    )
    if mode not in _SAVEPOINT_MODES:
        raise pytest.UsageError(
            f"txscope_statement_savepoints = {mode!r} is not valid; use one of: {', '.join(_SAVEPOINT_MODES)}"
        )
    return str(mode)


def _resolve_threads(config: pytest.Config) -> str:
    mode = (
        config.getoption("--txscope-threads")
        or str(config.getini("txscope_threads")).strip().lower()
        or "shared"
    )
    if mode not in _THREAD_MODES:
        raise pytest.UsageError(
            f"txscope_threads = {mode!r} is not valid; use one of: {', '.join(_THREAD_MODES)}"
        )
    return str(mode)


def _resolve_thread_timeout(config: pytest.Config) -> float:
    raw_timeout = str(config.getini("txscope_thread_timeout")).strip() or "10"
    try:
        thread_timeout = float(raw_timeout)
    except ValueError:
        thread_timeout = 0.0
    # inf and nan parse, but a lock cannot wait for them (OverflowError deep in a test's thread).
    if not (math.isfinite(thread_timeout) and 0 < thread_timeout <= threading.TIMEOUT_MAX):
        raise pytest.UsageError(
            f"txscope_thread_timeout = {raw_timeout!r} is not valid; use a number of seconds greater than 0"
        )
    return thread_timeout


def _resolve_seconds(config: pytest.Config, key: str, default: str, *, minimum: float) -> float:
    raw = str(config.getini(key)).strip() or default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and minimum <= seconds <= threading.TIMEOUT_MAX):
        raise pytest.UsageError(f"{key} = {raw!r} is not valid; use a number of seconds, {minimum:g} or more")
    return seconds


def _resolve_connect(
    config: pytest.Config, url: DatabaseURL | None, databases: tuple[NamedDatabase, ...]
) -> tuple[str, ...]:
    option = config.getoption("--txscope-connect")
    source = "--txscope-connect" if option is not None else "txscope_connect"
    words = str(option).replace(",", " ").split() if option is not None else config.getini("txscope_connect")
    try:
        return drivers_to_intercept([str(w) for w in words], url, source, (d.url for d in databases))
    except ConfigurationError as exc:
        raise pytest.UsageError(str(exc)) from None


def _ini_bool(config: pytest.Config, ini: str) -> bool:
    raw = str(config.getini(ini)).strip()
    if not raw:
        return False
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise pytest.UsageError(f"{ini} = {raw!r} is not a boolean; use true or false") from None


def _check_driver(url: DatabaseURL, source: str) -> None:
    """Stop the run at once when the URL's driver is not installed, instead of in every test that uses it.

    ``find_spec`` only looks the module up: the driver is still imported when a test first needs it.
    """
    dialect = dialect_for_url(url)
    try:
        found = importlib.util.find_spec(dialect.driver) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a module without a spec
        found = False
    if not found:
        raise pytest.UsageError(f"{source}: {dialect.missing()}")
