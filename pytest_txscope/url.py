"""Database URLs: parsing, and a form that is safe to print (the password is never shown)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import MalformedURLError, UnknownDriverError, UnknownSchemeError

__all__ = ["ASYNC_TWINS", "DRIVERS", "SCHEMES", "DatabaseURL", "mask_password"]

# Scheme spellings users write (the part before any "+driver"), mapped to the backend that serves them.
SCHEMES: dict[str, str] = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}

# The drivers each backend runs on, spelt as after the "+" of a scheme (``postgresql+psycopg2://``), as
# SQLAlchemy spells them; the first is the default, used when the scheme names none. The dialect registry
# (pytest_txscope.dialects) has one dialect for each.
DRIVERS: dict[str, tuple[str, ...]] = {
    "sqlite": ("pysqlite",),
    "postgresql": ("psycopg", "psycopg2", "asyncpg"),
    "mysql": ("pymysql", "mysqldb"),
}

# Async drivers' spellings (``sqlite+aiosqlite://``, as an application's SQLAlchemy URL has them), each mapped to
# the sync driver whose dialect drives it: a sync Engine on such a URL uses that driver, an AsyncEngine the async
# one (`Dialect.connect_async`), and an AsyncEngine on the sync spelling the async one too.
ASYNC_TWINS: dict[str, dict[str, str]] = {
    "sqlite": {"aiosqlite": "pysqlite"},
    "postgresql": {"psycopg_async": "psycopg"},
    "mysql": {"aiomysql": "pymysql"},
}

EXAMPLES = {
    "sqlite": "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:",
    "postgresql": "postgresql://user:password@localhost:5432/dbname",
    "mysql": "mysql://user:password@localhost:3306/dbname",
}

# The password runs to the LAST "@" of the URL (whitespace ends a URL): a password with an unencoded "@" or "/"
# makes the URL malformed, and must still not show in the message that says so.
_USERINFO = re.compile(r"(?P<head>://[^:/@\s]*:)(?P<password>\S*)(?P<tail>@)")
# A password given as a query option instead (``?password=...``; PyMySQL and mysqlclient also read ``passwd``,
# ODBC-style strings ``pwd``): its value runs to the next option, fragment or whitespace.
PASSWORD_OPTIONS = ("password", "passwd", "pwd")
_QUERY_PASSWORD = re.compile(
    r"(?P<head>[?&;](?:" + "|".join(PASSWORD_OPTIONS) + r")=)(?P<password>[^&;#\s]*)", re.IGNORECASE
)


def mask_password(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``, in the user info and in the query string;
    works on URLs that do not parse."""
    return _QUERY_PASSWORD.sub(r"\g<head>***", _USERINFO.sub(r"\g<head>***\g<tail>", text))


def _malformed(url: str, shown: str, problem: str, backend: str) -> MalformedURLError:
    """The error for a URL that does not parse. When its password holds a character that splits URLs, that is
    the cause, and the parser's complaint would quote pieces of the password: it is not repeated."""
    match = _USERINFO.search(url)
    if match and any(char in match.group("password") for char in "/?#@"):
        problem = "its password has a '/', '?', '#' or '@' that is not percent-encoded"
        example = EXAMPLES[backend].replace(":password@", ":p%40ss%2Fword@") + " (for the password p@ss/word)"
        return MalformedURLError(shown, problem, example)
    return MalformedURLError(shown, problem, EXAMPLES[backend])


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database URL. ``str()`` and ``repr()`` mask the password."""

    backend: str
    scheme: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    database: str = ""
    query: tuple[tuple[str, str], ...] = ()
    driver: str | None = None
    """The driver the scheme names (``psycopg2`` in ``postgresql+psycopg2://``), lower case; None when it
    names none, and the backend's default driver serves it (psycopg 3, PyMySQL, sqlite3)."""

    @property
    def sync_driver(self) -> str | None:
        """The driver as the dialect registry names it: an async spelling's sync twin (``aiosqlite`` ->
        ``pysqlite``), else `driver`."""
        if self.driver is None:
            return None
        return ASYNC_TWINS[self.backend].get(self.driver, self.driver)

    @classmethod
    def parse(cls, url: str) -> DatabaseURL:
        """Parse ``url``; raise `UnknownSchemeError` or `MalformedURLError` naming the fix."""
        try:
            return cls._parse(url)
        except (MalformedURLError, UnknownSchemeError) as exc:
            error = exc
        # Raised from here, afresh, with the text masked: pytest prints the arguments of every frame an error
        # passes through (and with -l their variables), and those of _parse hold the password.
        url = mask_password(url) if isinstance(url, str) else url
        raise error.with_traceback(None)

    @classmethod
    def _parse(cls, url: str) -> DatabaseURL:
        if not isinstance(url, str):
            raise MalformedURLError(
                repr(url), f"expected a string, got {type(url).__name__}", EXAMPLES["sqlite"]
            )
        shown = mask_password(url)
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme:
            raise MalformedURLError(shown, "it has no scheme", ", ".join(EXAMPLES.values()))
        base, plus, driver_name = scheme.lower().partition("+")
        backend = SCHEMES.get(base)
        if backend is None:
            raise UnknownSchemeError(scheme, shown, tuple(SCHEMES))
        driver = driver_name if plus else None
        if driver is not None and driver not in DRIVERS[backend] and driver not in ASYNC_TWINS[backend]:
            known = (*DRIVERS[backend], *ASYNC_TWINS[backend])
            raise UnknownDriverError(scheme, shown, driver, tuple(f"{base}+{d}" for d in known))
        if backend == "sqlite":
            return cls._parse_sqlite(scheme, rest, shown, driver)
        try:
            # The backend's name stands for the scheme: urlsplit takes no "_" in one (postgresql+psycopg_async).
            parts = urlsplit(f"{backend}://{rest}")
            port = parts.port
        except ValueError as exc:
            raise _malformed(url, shown, str(exc), backend) from None
        database = unquote(parts.path.lstrip("/"))
        for char in "/@":
            if char in database:
                raise _malformed(url, shown, f"database name {database!r} contains {char!r}", backend)
        return cls(
            backend=backend,
            scheme=scheme,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=parts.hostname or None,
            port=port,
            database=database,
            query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
            driver=driver,
        )

    @classmethod
    def _parse_sqlite(cls, scheme: str, rest: str, shown: str, driver: str | None) -> DatabaseURL:
        path, _, query = rest.partition("?")
        if path == "":
            database = ":memory:"
        elif path.startswith("/"):
            # sqlite:///relative.db -> "relative.db"; sqlite:////abs.db -> "/abs.db"
            database = unquote(path[1:]) or ":memory:"
        else:
            raise MalformedURLError(shown, "the host part must be empty for SQLite", EXAMPLES["sqlite"])
        return cls(
            backend="sqlite",
            scheme=scheme,
            database=database,
            query=tuple(parse_qsl(query, keep_blank_values=True)),
            driver=driver,
        )

    @property
    def options(self) -> dict[str, str]:
        """The query string as a dict (driver options such as ``sslmode`` or ``foreign_keys``)."""
        return dict(self.query)

    def with_database(self, database: str) -> DatabaseURL:
        """The same server and credentials, another database."""
        return dataclasses.replace(self, database=database)

    def render(self) -> str:
        """The URL as text with the password replaced by ``***`` (safe for logs, headers and errors)."""
        if self.backend == "sqlite":
            text = f"{self.scheme}:///{self.database}"
        else:
            auth = ""
            if self.user is not None:
                auth = self.user
                if self.password is not None:
                    auth += ":***"
                auth += "@"
            host = self.host or ""
            if self.port is not None:
                host += f":{self.port}"
            text = f"{self.scheme}://{auth}{host}/{self.database}"
        if self.query:
            text += "?" + "&".join(
                f"{k}={'***' if k.lower() in PASSWORD_OPTIONS else v}" for k, v in self.query
            )
        return text

    def revealed(self) -> str:
        """The URL as text with its password (user and password percent-encoded): for a driver or the
        application's settings (``txscope_env``), never for output."""
        if self.backend == "sqlite":
            text = f"{self.scheme}:///{self.database}"
        else:
            auth = ""
            if self.user is not None:
                auth = quote(self.user, safe="")
                if self.password is not None:
                    auth += ":" + quote(self.password, safe="")
                auth += "@"
            port = f":{self.port}" if self.port is not None else ""
            text = f"{self.scheme}://{auth}{self.host or ''}{port}/{quote(self.database, safe='')}"
        return text + (f"?{urlencode(self.query)}" if self.query else "")

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        # Not the dataclass's: the query string may hold a password too (``?password=``).
        return f"DatabaseURL({self.render()!r}, backend={self.backend!r}, driver={self.driver!r})"
