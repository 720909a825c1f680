"""The example FastAPI suite's two setups without pytest-txscope: what a team writes by hand.

`copy_example` copies ``examples/fastapi_app`` and, for a hand-written way, swaps its ``pytest.ini`` and
``tests/conftest.py`` for the ones below; the test files stay the same. The tables are created once per run
(dropped first, so that every run starts from empty tables), the app's engine comes from
``$APP_DATABASE_URL``, and the fixtures have the names the tests ask for: ``client``, ``sa_session``,
``user`` and ``auth``. After each test, the ``delete`` way deletes every table's rows in reverse dependency
order; the ``none`` way leaves them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app"

HAND_INI = """\
[pytest]
pythonpath = .
testpaths = tests
addopts = -ra --strict-markers --strict-config -p no:txscope
filterwarnings = error
"""

HAND_CONFTEST = '''\
"""Hand-written fixtures: the tables created once, the app's own engine, rows deleted after each test."""

import pytest
from app.core.db import engine
from app.core.security import hash_password
from app.main import app
from app.models import Base, User
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

DELETE_AFTER_EACH_TEST = {delete}


@pytest.fixture(scope="session", autouse=True)
def tables():
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    yield
    engine.dispose()


@pytest.fixture(autouse=True)
def delete_rows(tables):
    yield
    if DELETE_AFTER_EACH_TEST:
        with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())


@pytest.fixture
def sa_session():
    with Session(engine) as session:
        yield session


@pytest.fixture
def client():
    with TestClient(app) as client:
        yield client


@pytest.fixture
def user(sa_session):
    user = User(email="ada@example.com", hashed_password=hash_password("correct horse"))
    sa_session.add(user)
    sa_session.commit()
    return user


@pytest.fixture
def auth(client, user):
    token = client.post("/login", json={{"email": user.email, "password": "correct horse"}}).json()
    return {{"Authorization": f"Bearer {{token['access_token']}}"}}
'''


def copy_example(directory: Path, way: str) -> Path:
    """A copy of the example in ``directory`` (emptied first), set up for ``way``: txscope, delete or none."""
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(EXAMPLE, directory, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.db"))
    if way != "txscope":
        (directory / "pytest.ini").write_text(HAND_INI)
        conftest = HAND_CONFTEST.format(delete=way == "delete")
        (directory / "tests" / "conftest.py").write_text(conftest)
    return directory
