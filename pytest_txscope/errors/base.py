"""The roots of the hierarchy, and the errors of configuration, drivers and reaching the server."""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ConfigurationError",
    "MalformedURLError",
    "MissingDriverError",
    "TransactionStateError",
    "TxScopeError",
    "UnknownDriverError",
    "UnknownSchemeError",
]


class TxScopeError(Exception):
    """Root of every error pytest-txscope raises on purpose."""


class ConfigurationError(TxScopeError, ValueError):
    """A URL, option or argument is not valid."""


class UnknownSchemeError(ConfigurationError):
    """A database URL names a scheme no dialect handles."""

    def __init__(self, scheme: str, url: str, known: tuple[str, ...]) -> None:
        self.scheme = scheme
        self.url = url
        self.known = known
        super().__init__(
            f"unknown database URL scheme {scheme!r} in {url}; "
            f"use one of: {', '.join(s + '://' for s in known)}"
        )


class UnknownDriverError(UnknownSchemeError):
    """A database URL names a driver (``postgresql+pg8000://``) that pytest-txscope does not drive."""

    def __init__(self, scheme: str, url: str, driver: str, known: tuple[str, ...]) -> None:
        ConfigurationError.__init__(
            self,
            f"unknown driver {driver!r} in database URL {url}; for this database use one of: "
            f"{', '.join(s + '://' for s in known)} (the first is the default, also used when the scheme "
            "names no driver)",
        )
        self.scheme = scheme
        self.url = url
        self.driver = driver
        self.known = known


class MalformedURLError(ConfigurationError):
    """A database URL cannot be parsed."""

    def __init__(self, url: str, problem: str, example: str) -> None:
        self.url = url
        self.problem = problem
        self.example = example
        super().__init__(f"malformed database URL {url}: {problem}; write it like {example}")


class MissingDriverError(TxScopeError, ImportError):
    """The DB-API driver a URL needs is not installed."""

    def __init__(self, backend: str, module: str, extra: str, hint: str = "") -> None:
        self.backend = backend
        self.module = module
        self.extra = extra
        super().__init__(
            f"the {backend} backend needs the {module!r} driver, which is not installed; "
            f"install it with: pip install 'pytest-txscope[{extra}]'" + (f" ({hint})" if hint else ""),
            name=module,
        )


class BackendUnavailableError(TxScopeError, ConnectionError):
    """The database server could not be reached."""

    def __init__(self, target: str, cause: BaseException) -> None:
        self.target = target
        self.cause = cause
        super().__init__(
            f"cannot connect to {target}: {type(cause).__name__}: {' '.join(str(cause).split())}; "
            "check that the server is running and the URL (host, port, user, database) is right"
        )


class TransactionStateError(TxScopeError, RuntimeError):
    """A transaction or session was used in a state that does not allow it."""
