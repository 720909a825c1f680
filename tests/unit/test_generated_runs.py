"""The suite's own helper: generated pytest runs get none of the outer run's variables (tests/generated_runs.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .. import generated_runs
from ..generated_runs import clean_environ

# The generated test: what it may and may not see of the outer run (set up by `outer_run` below).
SEES = """
import os

def test_env():
    assert "PYTEST_XDIST_WORKER" not in os.environ
    assert "PYTEST_XDIST_WORKER_COUNT" not in os.environ
    assert "PYTEST_XDIST_TESTRUNUID" not in os.environ
    assert "PYTEST_OUTER_SETTING" not in os.environ
    assert "TXSCOPE_OUTER_SETTING" not in os.environ
    assert os.environ["PYTEST_CURRENT_TEST"].startswith("test_env.py::test_env ")  # its own, not the outer
    assert os.environ["TXSCOPE_URL"] == "sqlite:///set-by-the-test.db"  # set by the test: kept
    assert os.environ["OTHER_OUTER_SETTING"] == "kept"  # not pytest's nor pytest-txscope's
"""


@pytest.fixture
def outer_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables as an outer ``pytest -n 2`` run with PYTEST_* and TXSCOPE_* settings would have them."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw7")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "8")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "0123456789abcdef")
    for name, value in (
        ("PYTEST_OUTER_SETTING", "x"),
        ("TXSCOPE_OUTER_SETTING", "y"),
        ("TXSCOPE_URL", "sqlite:///outer.db"),
        ("OTHER_OUTER_SETTING", "kept"),
    ):
        monkeypatch.setitem(generated_runs.OUTER_RUN, name, value)
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("outer_run")
def test_clean_environ_drops_the_outer_runs_variables_and_keeps_the_tests_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # the test's own
    env = clean_environ()
    assert [name for name in env if name.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))] == []
    assert "PYTEST_OUTER_SETTING" not in env
    assert "TXSCOPE_OUTER_SETTING" not in env
    assert "TXSCOPE_URL" not in env
    assert (env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"], env["OTHER_OUTER_SETTING"]) == ("1", "kept")
    assert os.environ["PYTEST_XDIST_WORKER"] == "gw7"  # the test's own environment is left alone
    monkeypatch.setenv("TXSCOPE_URL", "sqlite:///set-by-the-test.db")
    assert clean_environ()["TXSCOPE_URL"] == "sqlite:///set-by-the-test.db"
    assert clean_environ({"TXSCOPE_URL": "sqlite:///outer.db", "PATH": "/bin"}) == {"PATH": "/bin"}


@pytest.mark.usefixtures("outer_run")
@pytest.mark.parametrize("how", ["runpytest", "runpytest_subprocess"])
def test_pytester_runs_get_a_clean_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setenv("TXSCOPE_URL", "sqlite:///set-by-the-test.db")
    pytester.makepyfile(test_env=SEES)
    getattr(pytester, how)("-p", "no:txscope", "-p", "no:randomly").assert_outcomes(passed=1)
    assert os.environ["PYTEST_XDIST_WORKER"] == "gw7"  # and given back to this test afterwards
    assert os.environ["PYTEST_OUTER_SETTING"] == "x"


def run_pytest(env: dict[str, str] | None) -> subprocess.CompletedProcess[str]:
    """A plain ``python -m pytest`` on the generated project, in a subprocess with ``env``."""
    command = [sys.executable, "-m", "pytest", "-p", "no:txscope", "-p", "no:randomly", "test_env.py"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


@pytest.mark.usefixtures("outer_run")
def test_a_plain_subprocess_with_clean_environ(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TXSCOPE_URL", "sqlite:///set-by-the-test.db")
    pytester.makepyfile(test_env=SEES)
    done = run_pytest(clean_environ())
    assert done.returncode == 0, done.stdout + done.stderr
    done = run_pytest(None)  # ... which it would not pass with this run's environment
    assert done.returncode == 1, done.stdout + done.stderr


def test_the_asyncio_defaults_go_only_to_runs_that_load_plugins_from_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-q")
    assert clean_environ()["PYTEST_ADDOPTS"] == f"-q {generated_runs.ASYNCIO_DEFAULTS}"
    # Without autoload pytest-asyncio is absent, and pytest would warn of an unknown option in every run.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert clean_environ()["PYTEST_ADDOPTS"] == "-q"
    monkeypatch.delenv("PYTEST_ADDOPTS")
    with generated_runs.clean_environment():
        assert "PYTEST_ADDOPTS" not in os.environ
    assert "PYTEST_ADDOPTS" not in os.environ
