"""Database URLs: parsing, and a form that is safe to print (the password is never shown)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import MalformedURLError, UnknownSchemeError

__all__ = ["DatabaseURL", "mask_password"]

# Scheme spellings users write, mapped to the dialect that serves them.
SCHEMES: dict[str, str] = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+psycopg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+pymysql": "mysql",
    "mariadb+pymysql": "mysql",
}

EXAMPLES = {
    "sqlite": "sqlite:///relative.db, sqlite:////absolute/path.db or sqlite:///:memory:",
    "postgresql": "postgresql://user:password@localhost:5432/dbname",
    "mysql": "mysql://user:password@localhost:3306/dbname",
}

# The password runs to the LAST "@" of the URL (whitespace ends a URL): a password with an unencoded "@" or "/"
# makes the URL malformed, and must still not show in the message that says so.
_USERINFO = re.compile(r"(?P<head>://[^:/@\s]*:)(?P<password>\S*)(?P<tail>@)")


def mask_password(text: str) -> str:
    """Replace the password of every URL in ``text`` with ``***``; works on URLs that do not parse."""
    return _USERINFO.sub(r"\g<head>***\g<tail>", text)


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
        backend = SCHEMES.get(scheme.lower())
        if backend is None:
            known = tuple(s for s in SCHEMES if "+" not in s)
            raise UnknownSchemeError(scheme, shown, known)
        if backend == "sqlite":
            return cls._parse_sqlite(scheme, rest, shown)
        try:
            parts = urlsplit(url)
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
        )

    @classmethod
    def _parse_sqlite(cls, scheme: str, rest: str, shown: str) -> DatabaseURL:
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
        )

    @property
    def options(self) -> dict[str, str]:
        """The query string as a dict (driver options such as ``sslmode`` or ``foreign_keys``)."""
        return dict(self.query)

    def with_database(self, database: str) -> DatabaseURL:
        """The same server and credentials, another database."""
        return DatabaseURL(
            self.backend, self.scheme, self.user, self.password, self.host, self.port, database, self.query
        )

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
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text

    def __str__(self) -> str:
        return self.render()
