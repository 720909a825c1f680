"""The plugin's part for ``async def`` tests (pytest-asyncio, anyio's pytest plugin): which async library may run
a sandboxed test, and the async face of the test's session (``async_db_session``).

The sandbox fixtures stay synchronous: the sandbox's connection is a sync driver's (the twin of the app's
asyncio driver) or lives on the bridge's driver loop, so it belongs to no test's event loop, and a test on a
function-scoped loop and one on a module-scoped loop use it alike. Nothing here imports pytest-asyncio or anyio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .errors import UnsupportedAsyncBackendError

if TYPE_CHECKING:
    from .core import AsyncSession, Session

__all__ = ["async_session_of", "check_async_backend"]

_ANYIO_BACKEND = "anyio_backend"  # the fixture through which anyio's plugin chooses a test's backend


def check_async_backend(request: pytest.FixtureRequest) -> None:
    """Fail a sandboxed test that anyio's plugin runs on a backend other than asyncio (trio), with the fix.

    Checked when the sandbox starts, before anything runs on that backend: SQLAlchemy's async engines and the
    async API need asyncio, and would otherwise fail later with an error of trio's that names neither.
    """
    if _ANYIO_BACKEND not in request.fixturenames:
        return
    backend: Any = request.getfixturevalue(_ANYIO_BACKEND)
    name = backend[0] if isinstance(backend, tuple) else backend  # anyio accepts (name, options) too
    if name == "asyncio":
        return
    error = UnsupportedAsyncBackendError(str(name))
    # Reported as a setup failure in the test's own words, without our frames (as the plugin's other refusals).
    raise pytest.fail.Exception(
        f"{type(error).__module__}.{type(error).__qualname__}: {error}", pytrace=False
    )


def async_session_of(session: Session) -> AsyncSession:
    """The `AsyncSession` of the test's session (``async_db_session``): the same session, its statements and
    blocks awaited. Its sync twin is on the sandbox's connection, which belongs to no event loop, so it serves
    a test on any loop scope and needs no async fixture (plain fixtures work in pytest-asyncio's strict mode)."""
    from .core.aio import async_session  # the asyncio API, imported by the tests that ask for it only

    return async_session(session)
