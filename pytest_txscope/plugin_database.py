"""The plugin's run: its state, the database it provisions and the application's engines it pins.

Split from `pytest_txscope.plugin` (the hooks and fixtures), which imports what it needs from here.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from .core import AsyncEngine, Engine
from .errors import ImportPathError, TxScopeError
from .import_paths import import_object
from .options import SETTINGS, SchemaEntry

if TYPE_CHECKING:
    from .provision import Provisioned
from .url import DatabaseURL

__all__ = [
    "EMBEDDED",
    "RUN_ID",
    "STATE",
    "RunState",
    "app_engines",
    "dispose_app_engines",
    "explain_missing_database",
    "open_engine",
    "provisioned_engine",
    "run_database",
    "setup_failed",
    "sqlalchemy_module",
]

RUN_ID = uuid.uuid4().hex


@dataclass
class RunState:
    """What one run (one xdist worker) knows beyond its settings."""

    engine: Engine | None = None
    app_engines: tuple[Engine, ...] | None = None
    sa_engines: tuple[Any, ...] = ()
    baseline: dict[str, int] | None = None
    snapshot: Any = None
    others: dict[str, Engine] = field(default_factory=dict)
    """The engines of the other databases (``txscope_databases``): those with a schema opened when they are
    built (with the run's own database), the others when a test first opts in."""
    other_baselines: dict[str, dict[str, int]] = field(default_factory=dict)
    """Their row counts when each was opened, for the leak check (``txscope_check_leaks``)."""
    routes: Any = None
    """The application's engines by database (`pytest_txscope.plugin_databases.Routes`), with several."""
    counters: Any = None
    """Where the database's id counters stood at the start of the run (`pytest_txscope.sequences.Counters`)."""
    held: list[Provisioned] = field(default_factory=list)
    """The databases this run provisioned, whose locks it holds until it ends (and drops them, unless reused)."""
    may_have_templates: bool = False
    """Whether this run (or its xdist workers) may have built PostgreSQL templates, which its end drops."""


STATE = pytest.StashKey[RunState]()
EMBEDDED = pytest.StashKey[DatabaseURL]()
"""The embedded SQLite default, when it was chosen before pytest's temporary directory existed
(``txscope_env`` sets its variables before conftests are imported)."""


def run_database(url: DatabaseURL, schema: bool, worker: str | None) -> DatabaseURL:
    """The database this process uses: with a schema, the xdist worker's own, which the plugin builds (see
    `pytest_txscope.provision.worker_url`); without one, ``url`` as it is."""
    if not schema:
        return url
    from .provision import worker_url

    return worker_url(url, worker)


def setup_failed(request: pytest.FixtureRequest, exc: Exception, what: str = "the database") -> NoReturn:
    """The run's database (or the app's engines) could not be set up: report it in this test and stop the run,
    where every later test would otherwise repeat the same error and traceback."""
    request.session.shouldfail = f"stopping: pytest-txscope could not set up {what}; see the error above"
    if isinstance(exc, TxScopeError):  # its message says what and where; our frames would only bury it
        message = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    raise exc


# --------------------------------------------------------------------------------------------- schema
def schema_key_of(entries: tuple[SchemaEntry, ...]) -> list[bytes | str]:
    parts: list[bytes | str] = []
    for entry in entries:
        parts.append(entry.text)
        if entry.alembic is not None:
            from .migrations import key_parts

            parts += key_parts(entry.alembic, entry.label)
        elif entry.path is not None:
            parts.append(entry.path.read_bytes())
        elif entry.import_path is not None:
            import_object(entry.key, entry.import_path)
            module = importlib.import_module(entry.import_path.partition(":")[0])
            source = inspect.getsourcefile(module)
            parts.append(Path(source).read_bytes() if source else entry.import_path)
    return parts


def build_schema(entries: tuple[SchemaEntry, ...]) -> Callable[[Engine], None]:
    def build(engine: Engine) -> None:
        for entry in entries:
            if entry.alembic is not None:
                from .migrations import upgrade_head

                assert engine.url is not None
                upgrade_head(entry.alembic, entry.label, engine.url)
            elif entry.path is not None:
                engine.executescript(entry.path.read_text(encoding="utf-8"), source=str(entry.path))
            else:
                assert entry.import_path is not None
                target = import_object(entry.key, entry.import_path)
                if is_metadata(target):
                    from .sqlalchemy import create_all

                    assert engine.url is not None
                    create_all(target, engine.url)
                    continue
                if not callable(target):
                    raise ImportPathError(
                        entry.key,
                        entry.import_path,
                        f"is a {type(target).__name__}, not a callable",
                        "point it at a function that takes the engine and builds the schema",
                    )
                target(engine)

    return build


def lock_dir(config: pytest.Config) -> Path:
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("txscope"))
    path = Path(tempfile.gettempdir()) / "pytest-txscope"
    path.mkdir(exist_ok=True)
    return path


def open_engine(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    settings = config.stash[SETTINGS]
    url = settings.url or config.stash.get(EMBEDDED, None)
    if (
        url is None
    ):  # the embedded default: a file per run (and per xdist worker), in WAL mode for cheap rollbacks
        url = DatabaseURL.parse(
            f"sqlite:///{tmp_path_factory.getbasetemp() / 'txscope_test.db'}?journal_mode=wal"
        )
    if settings.schema:
        return provisioned_engine(config, url, settings.schema)
    return Engine.from_url(url)


def provisioned_engine(config: pytest.Config, url: DatabaseURL, entries: tuple[SchemaEntry, ...]) -> Engine:
    """An engine on the database this process uses in place of ``url`` (an xdist worker's copy), built with
    ``entries`` (created when missing, rebuilt unless reused), locked until the end of the run, which drops it
    (see `run_engine`) unless reused. The run's database and the other databases with a schema come here."""
    from .provision import provision, schema_key

    settings = config.stash[SETTINGS]
    state = config.stash[STATE]
    target = run_database(url, True, os.environ.get("PYTEST_XDIST_WORKER"))
    build = build_schema(entries)
    if target.backend == "sqlite" and target.database == ":memory:":
        engine = Engine.from_url(target)
        build(engine)
        return engine
    key = schema_key(schema_key_of(entries))
    if not settings.reuse_db:
        # Without reuse the schema is built afresh once per run (a schema function's own imports are not
        # in the key); the run's id keeps it one build for all xdist workers of the run.
        key = schema_key([key, os.environ.get("PYTEST_XDIST_TESTRUNUID") or RUN_ID])
    # A template pays when xdist workers clone it, or when a reused database is rebuilt; one run
    # building one database builds it in place.
    via_template = settings.reuse_db or os.environ.get("PYTEST_XDIST_WORKER") is not None
    if via_template:  # templates may exist from here on: the end of the run drops them
        state.may_have_templates = True
    done = provision(
        target,
        key=key,
        build=build,
        reuse=settings.reuse_db,
        allow=settings.allow_databases,
        lock_dir=lock_dir(config),
        via_template=via_template,
        lock_timeout=settings.lock_timeout,
        keep_lock=True,  # no other run builds over it, or drops it, while this one runs
    )
    state.held.append(done)
    return Engine.from_url(done.url)


def is_metadata(target: object) -> bool:
    return "sqlalchemy" in sys.modules and bool(sqlalchemy_module().is_metadata(target))


def app_engines(request: pytest.FixtureRequest) -> tuple[Engine, ...]:
    """The app's pytest-txscope engines; its SQLAlchemy engines go to ``state.sa_engines``."""
    config = request.config
    state = config.stash[STATE]
    if state.app_engines is None:
        engines, sa_engines = [], []
        for path in config.stash[SETTINGS].engines:
            try:
                obj = import_object("txscope_engines", path)
            except ImportPathError as exc:
                setup_failed(request, exc, "the application's engines")
            if isinstance(obj, Engine):
                engines.append(obj)
            elif isinstance(obj, AsyncEngine):  # its sync twin holds the pool and runs the rules: pin that
                engines.append(obj.sync_engine)
            elif "sqlalchemy" in sys.modules and sqlalchemy_module().is_sqlalchemy_engine(obj):
                sa_engines.append(obj)
            else:
                setup_failed(
                    request,
                    ImportPathError(
                        "txscope_engines",
                        path,
                        f"is a {type(obj).__name__}, not an engine of pytest_txscope or SQLAlchemy (sync or async)",
                        "point it at the application's engine object",
                    ),
                    "the application's engines",
                )
        state.app_engines, state.sa_engines = tuple(engines), tuple(sa_engines)
    return state.app_engines


def sqlalchemy_module() -> Any:
    from . import sqlalchemy

    return sqlalchemy


def dispose_app_engines(config: pytest.Config) -> None:
    """Close the pool connections tests opened through the app's engines (commit=True tests use them for real).

    Only modules already imported are looked at: the end of the run imports nothing new.
    """
    for path in config.stash[SETTINGS].engines:
        module_name, _, attribute = path.partition(":")
        obj: Any = sys.modules.get(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, Engine):
            obj.dispose()
        elif is_sqlalchemy_engine(obj):
            sqlalchemy_module().dispose_engine(obj)
    if "pytest_txscope.sqlalchemy" in sys.modules:
        sqlalchemy_module().dispose_test_engines()


def is_sqlalchemy_engine(obj: object) -> bool:
    return "sqlalchemy" in sys.modules and bool(sqlalchemy_module().is_sqlalchemy_engine(obj))


def explain_missing_database(config: pytest.Config, error: BaseException) -> None:
    """Add a note to ``error`` (a test's failure) when it names the database the plugin builds and the plugin
    had not built it yet: a fixture of the user's connected first, and got only the server's bare
    ``database "..." does not exist``."""
    settings = config.stash.get(SETTINGS, None)
    state = config.stash.get(STATE, None)
    if settings is None or state is None or state.engine is not None or not settings.schema:
        return
    url = settings.url or config.stash.get(EMBEDDED, None)
    if url is None or url.backend == "sqlite":  # SQLite creates a missing file instead of failing
        return
    name = run_database(url, True, os.environ.get("PYTEST_XDIST_WORKER")).database
    # What PostgreSQL and MySQL/MariaDB say: database "x" does not exist; Unknown database 'x'
    said = re.compile(
        rf"""database "{re.escape(name)}" does not exist|Unknown database '{re.escape(name)}'"""
    )
    if not any(said.search(str(e)) for e in _chain(error)):
        return
    note = (
        f"pytest-txscope: the test database {name!r} did not exist yet: the plugin builds it in its db_engine "
        "fixture, which had not run when this failed. Request db_engine in the fixture that connected "
        "(def app(db_engine): ...); with the ini key txscope_env set, the plugin builds it before every "
        "test's fixtures"
    )
    if note in getattr(error, "__notes__", ()):
        return
    if sys.version_info >= (3, 11):
        error.add_note(note)
    else:  # what add_note() does; pytest shows the notes
        vars(error)["__notes__"] = [*getattr(error, "__notes__", ()), note]


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it wraps (SQLAlchemy keeps the driver's in ``orig``)."""
    found: list[BaseException] = []
    todo: list[object] = [error]
    while todo and len(found) < 20:
        e = todo.pop()
        if isinstance(e, BaseException) and all(e is not seen for seen in found):
            found.append(e)
            todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return found
