"""The environment of the pytest runs the tests generate: none of the outer run's own variables.

Many tests run pytest on a generated project: pytester's ``runpytest`` (in this process, or in a subprocess)
or a plain subprocess. Such a run must not inherit what describes the outer run, the one running this suite:

- ``PYTEST_XDIST_WORKER``, ``PYTEST_XDIST_WORKER_COUNT``, ``PYTEST_XDIST_TESTRUNUID`` (set in each worker of
  ``pytest -n``): the generated run would believe it is that worker, and the plugin would name its databases
  after it (``<name>_gw0``) while the generated application still uses ``<name>``;
- ``PYTEST_CURRENT_TEST``, ``PYTEST_VERSION``, ``PYTEST_ADDOPTS``, ``PYTEST_PLUGINS`` and every other
  ``PYTEST_*`` of the outer run: its options, plugins and state;
- ``TXSCOPE_URL`` and every other ``TXSCOPE_*`` of the outer run (``TXSCOPE_TEST_*`` configure this suite,
  not the generated projects): the generated project's plugin would use the outer run's database.

What a test sets itself for its generated run (``monkeypatch.setenv("TXSCOPE_URL", ...)``,
``PYTEST_DISABLE_PLUGIN_AUTOLOAD``, pytester's own ``PYTEST_DEBUG_TEMPROOT``) is kept: a variable counts as the
outer run's when it had the same value when this suite started, or when pytest or pytest-xdist set it
(``PYTEST_CURRENT_TEST``, ``PYTEST_VERSION``, ``PYTEST_XDIST_*``), whatever its value.

tests/conftest.py gives every pytester run this environment (`clean_pytester`); a test that starts a plain
subprocess passes ``env=clean_environ()``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

OUTER_RUN = dict(os.environ)
"""The environment when this suite started: tests/conftest.py imports this module while pytest starts up (in
each xdist worker, after pytest-xdist set the worker's variables)."""
PREFIXES = ("PYTEST_", "TXSCOPE_")
"""The variables that configure pytest, its plugins, pytest-txscope and this suite."""
SET_BY_PYTEST = ("PYTEST_CURRENT_TEST", "PYTEST_VERSION", "PYTEST_XDIST_")
"""Set by pytest and pytest-xdist while the suite runs (prefixes): never a test's own."""
PYTESTER_ENTRY_POINTS = ("inline_run", "popen", "spawn", "parseconfig", "parseconfigure")
"""Where every pytester run starts: ``runpytest`` and ``runpytest_inprocess`` end in ``inline_run``,
``runpytest_subprocess`` and ``run`` in ``popen``, ``spawn_pytest`` in ``spawn``; ``parseconfigure`` (which
configures the plugins too) and ``getitems`` in ``parseconfig``, ``parseconfigure`` or ``inline_run``."""


def is_outer(name: str, value: str) -> bool:
    """Whether the variable ``name=value`` is the outer run's, which no generated run may see."""
    if not name.startswith(PREFIXES):
        return False
    return name.startswith(SET_BY_PYTEST) or OUTER_RUN.get(name) == value


ASYNCIO_DEFAULTS = "-o asyncio_default_fixture_loop_scope=function"
"""Given to every generated run that loads plugins from their entry points (in ``PYTEST_ADDOPTS``, after the
test's own): pytest-asyncio, installed for the suite, warns in every run whose ini leaves this unset, and under
pytest 8 that warning, raised inside a run in this process, is an error there. A generated ini that sets it is
overridden with the same value."""


def with_asyncio_defaults(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with `ASYNCIO_DEFAULTS` added to ``PYTEST_ADDOPTS``, unless the run loads no plugin from its
    entry point: there pytest-asyncio is absent and pytest warns of an unknown option in every run, a line the
    test that set ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` does not expect."""
    if environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return environ
    own = environ.get("PYTEST_ADDOPTS", "")
    return {**environ, "PYTEST_ADDOPTS": f"{own} {ASYNCIO_DEFAULTS}".strip()}


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (by default ``os.environ``, then with `ASYNCIO_DEFAULTS`) without the outer run's variables:
    for ``subprocess.run(env=)``."""
    source = os.environ if environ is None else environ
    cleaned = {name: value for name, value in source.items() if not is_outer(name, value)}
    return with_asyncio_defaults(cleaned) if environ is None else cleaned


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    """``os.environ`` without the outer run's variables while the block runs (a run in this process, or a
    subprocess that inherits it), then as it was."""
    removed = {name: value for name, value in os.environ.items() if is_outer(name, value)}
    for name in removed:
        del os.environ[name]
    own_addopts = os.environ.get("PYTEST_ADDOPTS")
    run_addopts = with_asyncio_defaults(dict(os.environ)).get("PYTEST_ADDOPTS")
    if run_addopts is not None:
        os.environ["PYTEST_ADDOPTS"] = run_addopts
    try:
        yield
    finally:
        if own_addopts is None:
            os.environ.pop("PYTEST_ADDOPTS", None)
        else:
            os.environ["PYTEST_ADDOPTS"] = own_addopts
        os.environ.update(removed)


def _in_clean_environment(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def run(*args: Any, **kwargs: Any) -> Any:
        with clean_environment():
            return call(*args, **kwargs)

    return run


def clean_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """``pytester``, whose every run gets `clean_environment`."""
    for name in PYTESTER_ENTRY_POINTS:
        monkeypatch.setattr(pytester, name, _in_clean_environment(getattr(pytester, name)))
    return pytester
