"""Migrations as the schema: ``txscope_schema = alembic:path/to/alembic.ini`` runs ``alembic upgrade head`` on
the database being built, and the files of the migration scripts go into the schema key.

alembic (and SQLAlchemy, which it needs) is imported only here, and only for runs configured with it. Nothing
here imports pytest: the plugin turns `ConfigurationError` into a usage error.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ConfigurationError, MigrationError
from .url import DatabaseURL, mask_password

__all__ = ["ALEMBIC_PREFIX", "INSTALL", "check_alembic", "key_parts", "upgrade_head"]

ALEMBIC_PREFIX = "alembic:"
"""How a ``txscope_schema`` entry names an alembic configuration file."""
INSTALL = "pip install 'pytest-txscope[alembic]'"


def _alembic() -> Any:
    """alembic's ``command`` and ``config`` modules, or a `ConfigurationError` naming the extra to install."""
    try:
        from alembic import command, config, script
    except ImportError as exc:
        raise ConfigurationError(f"alembic is not installed ({exc}); install it: {INSTALL}") from None
    return command, config, script


def _script_directory(ini: Path, shown: str) -> Any:
    """alembic's ``ScriptDirectory`` of ``ini``; a `ConfigurationError` when the file does not name one."""
    _, config, script = _alembic()
    cfg = config.Config(str(ini))
    try:
        location = cfg.get_main_option("script_location")
    except Exception as exc:  # no [alembic] section, a bad %(interpolation)
        raise ConfigurationError(f"{shown}: cannot read {ini} ({type(exc).__name__}: {exc})") from None
    if not location:
        raise ConfigurationError(
            f"{shown}: {ini} has no script_location in its [alembic] section; set it to the folder of the "
            "migration scripts (script_location = %(here)s/migrations)"
        )
    # A package resource (package:folder) is alembic's to find; a path must be a folder.
    if not (":" in location and not Path(location).is_absolute()) and not Path(location).is_dir():
        raise ConfigurationError(
            f"{shown}: script_location = {location} in {ini} is not a folder; point it at the folder that "
            "holds env.py and versions/"
        )
    try:
        return script.ScriptDirectory.from_config(cfg)
    except Exception as exc:  # alembic's CommandError
        raise ConfigurationError(f"{shown}: script_location = {location} in {ini}: {exc}") from None


def check_alembic(ini: Path, shown: str) -> None:
    """Refuse, with one message each, a missing alembic, a missing file, and a file naming no scripts."""
    try:
        _alembic()
    except ConfigurationError as exc:
        raise ConfigurationError(f"{shown}: {exc}") from None
    if not ini.is_file():
        raise ConfigurationError(f"{shown}: the alembic configuration file {ini} does not exist")
    _script_directory(ini, shown)


def key_parts(ini: Path, shown: str) -> list[bytes | str]:
    """What identifies the schema the migrations build: the configuration file and every file of the script
    folder and the version locations (a new revision, or a changed one, changes the key)."""
    scripts = _script_directory(ini, shown)
    parts: list[bytes | str] = [ini.read_bytes()]
    # version_locations is None in older alembics when the file sets none: versions/ under dir then
    folders = {Path(scripts.dir).resolve(), *(Path(v).resolve() for v in scripts.version_locations or ())}
    for folder in sorted(folders):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                parts += [str(path.relative_to(folder)), path.read_bytes()]
    return parts


def upgrade_head(ini: Path, shown: str, url: DatabaseURL) -> None:
    """``alembic upgrade head`` on ``url``'s database, through the driver the URL names.

    The env.py finds the connection in ``config.attributes["connection"]`` (alembic's pattern for sharing a
    connection), or the URL in ``config.get_main_option("sqlalchemy.url")``: both are set. A failing migration
    raises `MigrationError` naming its revision and the database's error.
    """
    command, config, _ = _alembic()
    if url.backend == "sqlite" and url.database == ":memory:":
        raise ConfigurationError(
            f"{shown}: migrations cannot build sqlite:///:memory: (a database only its own connection sees); "
            "use an SQLite file (sqlite:///path/test.db) or the embedded default"
        )
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from .sqlalchemy import sqlalchemy_url

    scripts = _script_directory(ini, shown)
    target = sqlalchemy_url(url)
    cfg = config.Config(str(ini))
    # configparser interpolates "%": a password holding one must reach the env.py as written.
    cfg.set_main_option("sqlalchemy.url", target.render_as_string(hide_password=False).replace("%", "%%"))
    engine = create_engine(target, poolclass=NullPool)
    try:
        with _logging_kept(), engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except Exception as exc:
        raise _failure(exc, exc.__traceback__, scripts, shown) from None
    finally:
        engine.dispose()


def _failure(exc: Exception, tb: TracebackType | None, scripts: Any, shown: str) -> MigrationError:
    """The error to report: which revision's script raised (found in the traceback), and the database's error
    (SQLAlchemy keeps the driver's in ``orig``), with no password in it."""
    by_path = {}
    with contextlib.suppress(Exception):  # a script that cannot be loaded is the error itself
        by_path = {os.path.realpath(s.path): s for s in scripts.walk_revisions()}
    revision = None
    while tb is not None:
        found = by_path.get(os.path.realpath(tb.tb_frame.f_code.co_filename))
        revision = found or revision  # the innermost frame in a revision script
        tb = tb.tb_next
    cause = getattr(exc, "orig", None) or exc
    said = mask_password((str(cause).strip().splitlines() or [""])[0])
    where = (
        f"revision {revision.revision} ({Path(revision.path).name}: {revision.doc})"
        if revision is not None
        else "alembic upgrade head"
    )
    return MigrationError(shown, where, f"{type(cause).__name__}: {said}")


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Put logging back as it was after the migrations: the usual env.py calls ``logging.config.fileConfig``,
    which replaces the root logger's handlers and turns off every logger the file does not name (the
    application's among them) for the rest of the run."""
    manager = logging.Logger.manager
    loggers = [logging.root, *(v for v in list(manager.loggerDict.values()) if isinstance(v, logging.Logger))]
    saved = [(lg, lg.disabled, lg.level, list(lg.handlers), lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        for lg, disabled, level, handlers, propagate in saved:
            lg.disabled, lg.level, lg.handlers[:], lg.propagate = disabled, level, handlers, propagate
