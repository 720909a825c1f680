"""The suite's own helper: which database the tests of this process use on each server (tests/backends.py)."""

from __future__ import annotations

import pytest

from ..backends import ENV, Backend, database_url, sibling_url


@pytest.mark.parametrize("name", sorted(ENV))
def test_a_worker_uses_a_database_of_its_own_named_after_the_base(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(ENV[name], f"{name}://u@h:1/app_test?opt=1")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert database_url(name) == f"{name}://u@h:1/app_test?opt=1"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert database_url(name) == f"{name}://u@h:1/app_test_gw3?opt=1"
    worker = Backend(name, database_url(name) or "")
    assert sibling_url(worker, "sa") == f"{name}://u@h:1/app_test_gw3_sa?opt=1"
    monkeypatch.delenv(ENV[name])
    assert database_url(name) is None
