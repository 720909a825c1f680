"""Point the app's own engine at the database the plugin prepares.

``shop.db`` makes its engine at import time from ``$SHOP_DATABASE_URL``, and the conftest in ``tests/``
imports the app, so the variable has to be right before any conftest imports ``shop``. This file is loaded
first (pytest loads a conftest before the ones below it), and sets it at import time:

- the plugin's database is ``$TXSCOPE_URL``. When it is unset we set it to an SQLite file in a fresh temporary
  directory, rather than leave the plugin its embedded default, so that both sides know the path;
- ``$SHOP_DATABASE_URL`` is the same database as a SQLAlchemy URL (``postgresql://`` becomes
  ``postgresql+psycopg://``, ``mysql://`` becomes ``mysql+pymysql://``) and, under pytest-xdist, names this
  worker's own database (``shop_test_gw0.db``, ``..._test_gw0``) as the plugin does.

Inside a sandboxed test the plugin hands the app's engine the sandbox's connection anyway; the URL must still
agree, for the dialect and for the one real connection SQLAlchemy makes to read the server's version.
Workers inherit the controller's ``$TXSCOPE_URL``, so every worker uses the same directory or server.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from pytest_txscope import DatabaseURL
from pytest_txscope.provision import worker_url
from pytest_txscope.sqlalchemy import sqlalchemy_url

_saved = {name: os.environ.get(name) for name in ("TXSCOPE_URL", "SHOP_DATABASE_URL")}
_tmpdir = None
if not os.environ.get("TXSCOPE_URL"):
    _tmpdir = tempfile.mkdtemp(prefix="shop-tests-")
    os.environ["TXSCOPE_URL"] = f"sqlite:///{_tmpdir}/shop_test.db"

_test_database = worker_url(
    DatabaseURL.parse(os.environ["TXSCOPE_URL"]), os.environ.get("PYTEST_XDIST_WORKER")
)
os.environ["SHOP_DATABASE_URL"] = sqlalchemy_url(_test_database).render_as_string(hide_password=False)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--txscope-url"):
        raise pytest.UsageError(
            "this example reads the database from $TXSCOPE_URL only: "
            "run TXSCOPE_URL=postgresql://... pytest instead of --txscope-url"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if _tmpdir is not None:
        shutil.rmtree(_tmpdir, ignore_errors=True)
