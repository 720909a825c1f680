"""Several databases in one run (``txscope_databases``): the ini key's ``NAME = URL`` lines, which database
each of the application's engines belongs to, and a test's sandboxes on the databases it opted in to.

``default`` is the run's database (``txscope_url``); the others are provisioned as it is when they have a schema
(``txscope_database_schemas``; see `pytest_txscope.plugin_databases_build`), else used as configured.
A test opts in with ``@pytest.mark.txscope(databases=["default", "reports"])``; only ``default`` without it,
as pytest-django does. The application's engines on a database the test did not opt in to are refused at
their first connection (`DatabaseNotAllowedError`), so that nothing is committed there for real.

Only a run that configures more databases comes here: with ``txscope_url`` alone, the per-test path of the
plugin is one attribute test longer (issue 15: per-test overhead).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from .core import Engine, Session
from .errors import DatabaseNotAllowedError, EngineMismatchError, TxScopeError
from .plugin_schemas import DATABASE_NAME, SchemaEntry
from .sandbox import Sandbox
from .sqlalchemy_checks import describe_engine, engine_url, same_database
from .url import DatabaseURL, mask_password

__all__ = [
    "ALL",
    "DEFAULT",
    "NamedDatabase",
    "OtherSandboxes",
    "Routes",
    "check_names",
    "parse_databases",
    "route_engines",
]

DEFAULT = "default"
"""The name of the run's own database (``txscope_url``) in ``databases=[...]``."""
ALL = "__all__"
"""``databases="__all__"``: every configured database (pytest-django's spelling)."""
_EXAMPLE = "reports = postgresql://user@localhost/reports_test"


@dataclass(frozen=True)
class NamedDatabase:
    """One ``txscope_databases`` line: a name for ``databases=[...]`` and its database, with its schema
    (``txscope_database_schemas``): with one, the plugin builds the database (and one per xdist worker)."""

    name: str
    url: DatabaseURL
    schema: tuple[SchemaEntry, ...] = ()

    @property
    def line(self) -> str:
        """The ``txscope_databases`` line, password masked, for messages."""
        return f"{self.name} = {self.url}"

    def with_schema(self, schema: tuple[SchemaEntry, ...]) -> NamedDatabase:
        """This database with ``schema``."""
        return dataclasses.replace(self, schema=schema)


def parse_databases(
    lines: Iterable[object], default: DatabaseURL | None, check_driver: Callable[[DatabaseURL, str], None]
) -> tuple[NamedDatabase, ...]:
    """The ``txscope_databases`` lines, checked; `pytest.UsageError` naming the line (password masked) and
    the fix. ``default`` is the run's database, which no line may name again."""
    found: list[NamedDatabase] = []
    for raw in lines:
        line = str(raw).strip()
        if not line:
            continue
        name, sep, text = (part.strip() for part in line.partition("="))
        shown = mask_password(line)
        if not sep or not text or not DATABASE_NAME.match(name):
            raise pytest.UsageError(
                f"txscope_databases line {shown!r} is not NAME = URL (a name made of letters, digits and "
                f"underscores); write it as: {_EXAMPLE}"
            )
        if name in (DEFAULT, ALL) or any(d.name == name for d in found):
            why = "is taken by txscope_url" if name == DEFAULT else "is used twice"
            why = "means every database" if name == ALL else why
            raise pytest.UsageError(
                f"txscope_databases: the name {name!r} {why}; give the database another name"
            )
        try:
            url = DatabaseURL.parse(text)
        except TxScopeError as exc:
            raise pytest.UsageError(f"txscope_databases: {name}: {exc}") from None
        check_driver(url, f"txscope_databases: {name}")
        others = [*([NamedDatabase(DEFAULT, default)] if default else []), *found]
        twin = next((d.name for d in others if same_database(url, d.url)), None)
        if twin is not None:
            raise pytest.UsageError(
                f"txscope_databases: {name} ({url}) is the same database as {twin!r}; a database is sandboxed "
                "once per test: remove the line, or point it at another database"
            )
        found.append(NamedDatabase(name, url))
    return tuple(found)


def check_names(names: tuple[str, ...], configured: tuple[NamedDatabase, ...]) -> str | None:
    """What is wrong with the marker's ``databases=[...]`` (None: nothing)."""
    known = (DEFAULT, *(d.name for d in configured))
    for name in names:
        if name not in known and name != ALL:
            line = f"txscope_databases = {name} = <its URL>"
            return (
                f"databases=[...] names {name!r}, which is not configured (configured: {', '.join(known)}); "
                f"add the ini line {line!r}, or correct the name"
            )
    return None


@dataclass
class Routes:
    """The application's engines (``txscope_engines``) by the name of the database each is aimed at."""

    engines: dict[str, tuple[Engine, ...]] = field(default_factory=dict)
    sa_engines: dict[str, tuple[Any, ...]] = field(default_factory=dict)


def route_engines(
    configured: tuple[NamedDatabase, ...],
    engines: tuple[Engine, ...],
    sa_engines: tuple[Any, ...],
    used: dict[str, DatabaseURL] | None = None,
) -> Routes:
    """Each engine goes to the configured database its URL names, else to ``default`` (whose pinning checks
    it, and refuses one aimed at a database nobody configured, naming the ini line to add). ``used`` is the
    database each name stands for in this process when it is not the configured one (an xdist worker's copy):
    an engine aimed at either goes to that name, whose pinning checks it as ``default``'s does."""
    used = used or {}

    def name_of(url: DatabaseURL | None) -> str:
        for d in configured:
            if url is not None and any(same_database(url, u) for u in (d.url, used.get(d.name, d.url))):
                return d.name
        return DEFAULT

    routes = Routes()
    for engine in engines:
        name = name_of(engine.url)
        routes.engines[name] = (*routes.engines.get(name, ()), engine)
    for sa_engine in sa_engines:
        name = name_of(engine_url(sa_engine))
        routes.sa_engines[name] = (*routes.sa_engines.get(name, ()), sa_engine)
    return routes


class _Refusal:
    """Where the engines of a database the test did not opt in to get their sessions: nowhere."""

    def __init__(self, name: str, wanted: tuple[str, ...], errors: list[DatabaseNotAllowedError]) -> None:
        self.name, self.wanted, self.errors = name, wanted, errors

    def refuse(self, shown: str) -> Any:
        error = DatabaseNotAllowedError(shown, self.name, self.wanted)
        self.errors.append(error)
        raise error

    def guest_session(self, engine: Engine) -> Session:
        return self.refuse(f"Engine({engine.url})")  # type: ignore[no-any-return]


class OtherSandboxes:
    """A test's sandboxes on the configured databases other than ``default``: started for those the test opted
    in to, a refusal for the application's engines on the rest."""

    def __init__(
        self, configured: tuple[NamedDatabase, ...], routes: Routes, wanted: tuple[str, ...]
    ) -> None:
        self.configured, self.routes = configured, routes
        everything = ALL in wanted
        self.wanted = tuple(d.name for d in configured if everything or d.name in wanted)
        self.sandboxes: dict[str, Sandbox] = {}
        self.refused: list[DatabaseNotAllowedError] = []
        self._undo: list[Callable[[], object]] = []

    @property
    def default_engines(self) -> tuple[Engine, ...]:
        """The application's engines on ``default``, which the test's own sandbox pins."""
        return self.routes.engines.get(DEFAULT, ())

    @property
    def default_sa_engines(self) -> tuple[Any, ...]:
        """The application's SQLAlchemy engines on ``default`` (or on no configured database)."""
        return self.routes.sa_engines.get(DEFAULT, ())

    def start(
        self,
        engine_of: Callable[[NamedDatabase], Engine],
        make: Callable[[Engine, tuple[Engine, ...]], Sandbox],
    ) -> None:
        """Start a sandbox per wanted database (``make(engine, app_engines)``), pinning the application's
        SQLAlchemy engines on it; refuse the application's engines on the others."""
        for database in self.configured:
            engines = self.routes.engines.get(database.name, ())
            sa_engines = self.routes.sa_engines.get(database.name, ())
            if database.name not in self.wanted:
                self._refuse(database.name, engines, sa_engines)
                continue
            sandbox = make(engine_of(database), engines)
            sandbox.start()
            self.sandboxes[database.name] = sandbox
            if sa_engines:
                _check_copy(database, sandbox.engine.url, sa_engines)
                _sqlalchemy().pin_to_sandbox(sandbox, sa_engines)

    def _refuse(self, name: str, engines: tuple[Engine, ...], sa_engines: tuple[Any, ...]) -> None:
        refusal = _Refusal(name, (DEFAULT, *self.wanted), self.refused)
        for engine in engines:
            previous = engine.pin(refusal)
            self._undo.append(functools.partial(engine.pin, previous))
        for sa_engine in sa_engines:
            shown = describe_engine(sa_engine)
            _sqlalchemy().attach(sa_engine, functools.partial(refusal.refuse, shown), initialize=False)
            self._undo.append(functools.partial(_sqlalchemy().detach, sa_engine))

    def stop(self, end: Callable[[Sandbox], None]) -> None:
        """End the sandboxes (``end(sandbox)``, the last started first) and lift the refusals."""
        try:
            for name in reversed(list(self.sandboxes)):
                end(self.sandboxes.pop(name))
        finally:
            while self._undo:
                self._undo.pop()()


def _check_copy(database: NamedDatabase, used: DatabaseURL | None, sa_engines: tuple[Any, ...]) -> None:
    """Refuse an engine aimed at the configured database where this xdist worker runs on its copy: pinning
    would send its work to the copy while, outside the sandboxes, it would reach the configured database."""
    for sa_engine in sa_engines:
        url = engine_url(sa_engine)
        if used is None or same_database(url, used) or not same_database(url, database.url):
            continue
        raise EngineMismatchError(
            describe_engine(sa_engine),
            f"is aimed at the database of the txscope_databases line {database.line!r}, but this pytest-xdist "
            f"worker runs on its copy ({used.database}), built from txscope_database_schemas",
            f"build the engine's URL from txscope_env's {{{database.name}.sqlalchemy_url}} (for example the line "
            f"'APP_{database.name.upper()}_URL={{{database.name}.sqlalchemy_url}}')",
        )


def _sqlalchemy() -> Any:
    from . import sqlalchemy

    return sqlalchemy
