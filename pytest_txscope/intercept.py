"""Intercepting the drivers' own ``connect()``: code that opens its connections itself is sandboxed too.

While interception is installed for a driver (``txscope_connect``), its ``connect()`` is replaced by a function
that looks at what the call targets. During a sandbox, a connect to the sandbox's database returns the sandbox
connection's face for that driver, honouring the arguments given; any other connect (another database, no
sandbox, a call from this library or from SQLAlchemy, whose pools the plugin pins by other means) goes to the
real driver. `uninstall()` puts the driver's functions back.

The database is matched on the server (host, port) and the database name, not on the user: an application
often logs in as a user of its own, and its work belongs to the same database all the same (it then runs with
the rights of the sandbox's user).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .dbapi import SandboxConnection
from .dialects import DIALECTS, dialect_for_url
from .errors import ConfigurationError, ConnectedBeforeSandboxWarning
from .intercept_targets import Target, target_of
from .places import Place, caller_place, describe_place
from .sandbox import Sandbox
from .url import DatabaseURL

__all__ = ["DRIVERS", "Interception", "drivers_to_intercept"]

DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sqlite3": ("sqlite", ("connect",)),
    "psycopg": ("postgresql", ("connect",)),
    "psycopg2": ("postgresql", ("connect",)),
    "pymysql": ("mysql", ("connect", "Connect")),
    "MySQLdb": ("mysql", ("connect", "Connect")),
}
"""Each driver whose ``connect()`` can be intercepted: its backend and the module functions replaced."""

# Callers whose connects are never intercepted: this library's own, and SQLAlchemy's pools (a pool would keep
# a face beyond its test; the plugin pins SQLAlchemy engines to the sandbox instead, see txscope_engines).
_PASS_THROUGH = ("pytest_txscope.", "sqlalchemy.")


@dataclass
class _Early:
    driver: str
    target: Target
    connection: Callable[[], object]
    place: Place | None


class Interception:
    """Replaces the ``connect()`` of the given drivers while installed."""

    def __init__(self, drivers: Iterable[str]) -> None:
        self.drivers = tuple(drivers)
        self._saved: list[tuple[Any, str, Any]] = []
        self._early: list[_Early] = []

    def install(self) -> None:
        """Replace the drivers' module functions (the drivers are imported now)."""
        for driver in self.drivers:
            module = importlib.import_module(driver)
            for name in DRIVERS[driver][1]:
                original = getattr(module, name)
                self._saved.append((module, name, original))
                setattr(module, name, self._replacement(driver, original))

    def uninstall(self) -> None:
        """Put the drivers' own functions back."""
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()
        self._early.clear()

    def _replacement(self, driver: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def connect(*args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if str(caller).startswith(_PASS_THROUGH):
                return original(*args, **kwargs)
            sandbox = Sandbox.current()
            target = target_of(driver, args, kwargs)
            if sandbox is not None and target is not None:
                # The innermost sandbox on the database the call names (several with txscope_databases).
                for candidate in reversed(Sandbox.all_active()):
                    url = candidate.engine.url
                    if url is not None and candidate.engine.dialect.driver == driver and target.matches(url):
                        return self._face(candidate, target)
            connection = original(*args, **kwargs)
            if sandbox is None and target is not None:
                self._note_early(driver, target, connection)
            return connection

        connect.__txscope_original__ = original  # type: ignore[attr-defined]  # for code that wants the real one
        return connect

    @staticmethod
    def _face(sandbox: Sandbox, target: Target) -> SandboxConnection:
        face = sandbox.connection(target.connect_kwargs)
        sandbox.add_cleanup(face.close)  # a connection kept beyond its test is closed, and says so when used
        return face

    def _note_early(self, driver: str, target: Target, connection: object) -> None:
        # Not in the body of a test (commit=True tests, checks from outside the sandbox connect on purpose), and
        # an app connecting outside tests in a loop: the first hundred tell enough.
        if os.environ.get("PYTEST_CURRENT_TEST", "").endswith("(call)") or len(self._early) >= 100:
            return
        try:
            ref: Callable[[], object] = weakref.ref(connection)
        except TypeError:  # sqlite3's connections take no weak reference: whether it is still open is unknown
            ref = functools.partial(bool, True)
        self._early.append(_Early(driver, target, ref, caller_place(sys._getframe(2))))

    def check_early(self, url: DatabaseURL | None) -> None:
        """Warn of real connections to ``url`` (the test database) opened outside sandboxes and still open."""
        if url is None or not self._early:
            return
        early, self._early = self._early, []
        for entry in early:
            if entry.connection() is not None and entry.target.matches(url):
                warnings.warn(
                    ConnectedBeforeSandboxWarning(entry.driver, describe_place(entry.place)), stacklevel=2
                )


def drivers_to_intercept(
    words: list[str], url: DatabaseURL | None, source: str, others: Iterable[DatabaseURL] = ()
) -> tuple[str, ...]:
    """The drivers ``txscope_connect`` names, each checked: known, and the driver the sandbox's connection is
    opened with (a face of one driver cannot stand on another's connection); ``auto`` is that driver, and the
    drivers of the ``others`` databases (``txscope_databases``). Raises `ConfigurationError` naming the fix."""
    serving = dialect_for_url(url).driver if url is not None else "sqlite3"
    also = [d for d in dict.fromkeys(dialect_for_url(o).driver for o in others) if d != serving]
    if [w.lower() for w in words] == ["auto"]:
        return (serving, *also)
    by_lower = {name.lower(): name for name in DRIVERS}
    drivers: list[str] = []
    for word in words:
        name = by_lower.get(word.lower())
        if name is None:
            raise ConfigurationError(
                f"{source}: {word!r} is not a driver whose connect() can be intercepted; use one of "
                f"{', '.join(DRIVERS)} (import names), or auto (the test database's driver)"
            )
        if name != serving and name not in also:
            raise ConfigurationError(
                f"{source}: the sandbox's connection to the test database is a {serving} one, so a {name} "
                f"connect() cannot be given it; {_serving_fix(name, url)}"
            )
        if name not in drivers:
            drivers.append(name)
    return tuple(drivers)


def _serving_fix(name: str, url: DatabaseURL | None) -> str:
    backend = DRIVERS[name][0]
    if url is None or url.backend != backend:
        shown = "embedded SQLite" if url is None else url.backend
        return f"{name} connects to {backend}, but the test database is {shown}: set txscope_url to a {backend} URL"
    scheme = next(f"{d.name}+{d.url_driver}://" for d in DIALECTS.values() if d.driver == name)
    return (
        f"write the test database's URL as {scheme}... (txscope_url) so that the sandbox connects with {name}"
    )
