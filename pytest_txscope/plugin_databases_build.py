"""Building the other databases (``txscope_databases``) that have a schema (``txscope_database_schemas``), by
the rules of the run's own database: `pytest_txscope.plugin_database.provisioned_engine` builds each (created
when missing, one copy per xdist worker, ``<name>_gw0``, locked while the run uses it), and the end of the run
drops it unless ``--txscope-reuse-db``. A database without a schema is used as configured, as ``txscope_url``
without ``txscope_schema`` is.

They are built in ``db_engine``, after the run's own database: before the first test, whether it opts in to
them or not, so that the application finds them wherever it connects from.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from typing import NoReturn

import pytest

from .errors import BackendUnavailableError, DatabaseInUseError, TxScopeError, UnsafeDatabaseError
from .options import SETTINGS
from .plugin_database import STATE, provisioned_engine
from .plugin_databases import NamedDatabase
from .url import DatabaseURL

__all__ = ["build_others", "drop_leftovers", "used_urls"]


def build_others(request: pytest.FixtureRequest) -> None:
    """Build each configured database that has a schema (this process's copy); its engine goes to
    ``state.others``. A database that cannot be built fails the test naming its lines, and stops the run."""
    config = request.config
    state = config.stash[STATE]
    for database in config.stash[SETTINGS].databases:
        if not database.schema or database.name in state.others:
            continue
        try:
            state.others[database.name] = provisioned_engine(config, database.url, database.schema)
        except Exception as exc:
            _failed(request, database, exc)


def used_urls(config: pytest.Config) -> dict[str, DatabaseURL]:
    """The database each configured name stands for in this process, where it was built (an xdist worker's
    copy); the others are used as configured."""
    return {name: engine.url for name, engine in config.stash[STATE].others.items() if engine.url is not None}


def _failed(request: pytest.FixtureRequest, database: NamedDatabase, exc: Exception) -> NoReturn:
    """Report ``exc`` as the failure to build ``database``, naming its lines, and stop the run (every later
    test would fail the same way)."""
    request.session.shouldfail = (
        f"stopping: pytest-txscope could not build the database {database.name!r}; see the error above"
    )
    entries = ", ".join(repr(entry.text) for entry in database.schema)
    head = (
        f"pytest-txscope could not build the database {database.name!r} (txscope_databases line "
        f"{database.line!r}; txscope_database_schemas: {entries})"
    )
    if isinstance(exc, TxScopeError):  # its message says what and where; our frames would only bury it
        message = f"{head}: {type(exc).__module__}.{type(exc).__qualname__}: {exc}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    if sys.version_info >= (3, 11):
        exc.add_note(head)
    else:  # what add_note() does; pytest shows the notes
        vars(exc)["__notes__"] = [*getattr(exc, "__notes__", ()), head]
    raise exc


def drop_leftovers(
    databases: Iterable[NamedDatabase], crashed: list[str], allow: tuple[str, ...], lock_timeout: float
) -> None:
    """On the controller of an xdist run, at its end: drop the copies of the other databases that workers
    which crashed could not drop, and the PostgreSQL templates the workers built them from."""
    from .plugin_teardown import drop_crashed_workers
    from .provision import drop_templates

    # As for the run's own database: the tests reported a server that went away, and provision() refused a
    # name that is not a test database's before building anything.
    quiet = (BackendUnavailableError, UnsafeDatabaseError, DatabaseInUseError)
    for database in databases:
        if not database.schema:
            continue
        if crashed:
            with contextlib.suppress(*quiet):
                drop_crashed_workers(database.url, crashed, allow)
        if database.url.backend == "postgresql":
            with contextlib.suppress(*quiet):
                drop_templates(database.url, allow=allow, lock_timeout=lock_timeout)
