"""Names of test databases: the rule that guards destructive actions, per-worker names, template names and
schema keys, each kept within the server's limit on names.

Nothing here touches a database: `pytest_txscope.provision` builds and drops them under these names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from pathlib import Path

from .errors import UnsafeDatabaseError
from .url import DatabaseURL

__all__ = [
    "base_name",
    "check_safe",
    "cut",
    "digest",
    "fit_name",
    "is_memory",
    "looks_like_test_database",
    "schema_key",
    "sqlite_path",
    "template_name",
    "template_prefix",
    "worker_url",
]

_PG_MAX = 63  # bytes in a PostgreSQL identifier (longer names are silently truncated by the server)
_MYSQL_MAX = 64  # characters in a MySQL/MariaDB database name
_KEY_FIELD = 16  # bytes of a template name reserved for the schema key


# ------------------------------------------------------------------------------------------ naming rules
def looks_like_test_database(name: str) -> bool:
    """Whether a word part of ``name`` starts with "test" (``app_test``, ``tests``, ``Test01``, ``testdb``).

    Word parts are split on non-alphanumeric characters and where letters and digits meet, so ``contest``
    and ``latest`` do not count.
    """
    return any(token.lower().startswith("test") for token in re.findall(r"[^\W\d_]+|\d+", name))


def is_memory(url: DatabaseURL) -> bool:
    """Whether ``url`` names an in-memory SQLite database."""
    return url.database == ":memory:" or url.database.startswith("file::memory:")


def sqlite_path(url: DatabaseURL) -> Path:
    """The file of an SQLite ``url`` (a ``file:`` URI's path)."""
    database = url.database
    return Path(database[len("file:") :] if database.startswith("file:") else database)


def check_safe(url: DatabaseURL, action: str, allow: Collection[str]) -> None:
    """Raise `UnsafeDatabaseError` unless the database's name looks like a test database or is allowed.

    For SQLite the name is the file's base name without extension (``tests/app.db`` is ``app``)."""
    if url.backend == "sqlite" and url.database in (":memory:", "file::memory:"):
        return  # a private in-memory database cannot be anyone's real data
    name, example = url.database, f"{url.database}_test"
    if url.backend == "sqlite":
        path = sqlite_path(url)
        name, example = path.stem, f"{path.stem}_test{path.suffix}"
    # Allowing "myapp" also allows the databases xdist workers derive from it ("myapp_gw0").
    if looks_like_test_database(name) or {name, base_name(name), url.database} & set(allow):
        return
    raise UnsafeDatabaseError(name, action, str(url), example)


def digest(text: str, size: int) -> str:
    """The first ``size`` hex digits of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def cut(name: str, size: int) -> str:
    """``name`` shortened to at most ``size`` UTF-8 bytes, without splitting a character."""
    return name.encode()[:size].decode(errors="ignore")


def fit_name(name: str, backend: str) -> str:
    """``name`` as is when the server keeps it whole, else shortened and made unique by a hash of it."""
    if backend == "postgresql" and len(name.encode()) > _PG_MAX:
        return f"{cut(name, _PG_MAX - 9)}_{digest(name, 8)}"
    if backend == "mysql" and len(name) > _MYSQL_MAX:
        return f"{name[: _MYSQL_MAX - 9]}_{digest(name, 8)}"
    return name


def worker_url(url: DatabaseURL, worker: str | None) -> DatabaseURL:
    """The database a pytest-xdist worker uses: ``<name>_<worker>`` (``app_test_gw0``); for an SQLite file,
    ``<stem>_<worker><suffix>`` next to it. The controller (``None`` or ``"master"``) and ``:memory:`` keep
    ``url``. Names too long for the server are shortened and end in a hash, so they stay distinct."""
    if worker is None or worker == "master" or (url.backend == "sqlite" and is_memory(url)):
        return url
    if url.backend == "sqlite":
        prefix = "file:" if url.database.startswith("file:") else ""
        path = sqlite_path(url)
        return url.with_database(prefix + str(path.with_name(f"{path.stem}_{worker}{path.suffix}")))
    return url.with_database(fit_name(f"{url.database}_{worker}", url.backend))


def base_name(database: str) -> str:
    """The database name before `worker_url` added an xdist worker id (``app_test_gw3`` -> ``app_test``)."""
    match = re.fullmatch(r"(.+)_gw\d+", database)
    return match.group(1) if match else database


def template_prefix(base: str) -> str:
    """How the names of the PostgreSQL templates built for database ``base`` begin (shortened, with a digest,
    where the name would pass PostgreSQL's 63-byte limit)."""
    prefix = f"{base}_tpl_"
    if len(prefix.encode()) > _PG_MAX - _KEY_FIELD:
        prefix = f"{cut(base, _PG_MAX - _KEY_FIELD - 14)}_{digest(base, 8)}_tpl_"
    return prefix


def template_name(base: str, key: str) -> str:
    """The name of the PostgreSQL template built for database ``base`` and schema ``key``."""
    # A key that fits the _KEY_FIELD bytes reserved for it is kept readable; others are hashed.
    part = key if re.fullmatch(r"[0-9a-z_]{1,16}", key) else digest(key, 12)
    return template_prefix(base) + part


def schema_key(parts: Iterable[bytes | str]) -> str:
    """A short key (12 hex digits of SHA-256) identifying a schema built from ``parts`` (scripts, files...)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))  # framed, so that ("ab", "c") != ("a", "bc")
        digest.update(data)
    return digest.hexdigest()[:12]
