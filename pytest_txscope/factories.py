"""factory_boy factories that write into the running test's sandbox, with no per-test wiring.

- `SandboxModelFactory`: a ``SQLAlchemyModelFactory`` whose session is the test's ORM session
  (`pytest_txscope.sqlalchemy.current_session`). Every ``sqlalchemy_session_persistence`` works: ``"commit"``
  releases a savepoint and never ends the test's transaction.
- `TableFactory`: for tables without an ORM. Declare ``Meta.table`` (and ``Meta.primary_key``, ``"id"`` by
  default); ``create()`` inserts through the test's session and returns the row as a dict, with its generated
  key, on SQLite, PostgreSQL and MySQL/MariaDB.

Both raise a clear error outside a sandboxed test.
"""

from __future__ import annotations

from typing import Any

import factory
from factory.alchemy import SQLAlchemyModelFactory
from factory.base import FactoryOptions, OptionDefault

from .errors import TxScopeError
from .places import add_library
from .sandbox import Sandbox
from .sqlalchemy import NoSandboxError, current_session

add_library("factory", "pytest_factoryboy")  # messages name the user's line that called the factory

__all__ = ["SandboxModelFactory", "TableFactory"]


class SandboxModelFactory(SQLAlchemyModelFactory):  # type: ignore[misc]  # factory_boy is untyped (Any)
    """A ``SQLAlchemyModelFactory`` that writes into the test's sandbox (set ``Meta.model`` in subclasses)."""

    class Meta:
        abstract = True
        sqlalchemy_session_factory = current_session
        sqlalchemy_session_persistence = "flush"


class _TableOptions(FactoryOptions):  # type: ignore[misc]  # factory_boy is untyped (Any)
    def _build_default_options(self) -> list[OptionDefault]:
        return [
            *super()._build_default_options(),
            OptionDefault("table", None, inherit=True),
            OptionDefault("primary_key", "id", inherit=True),
        ]


class TableFactory(factory.Factory):  # type: ignore[misc]  # factory_boy is untyped (Any)
    """A factory for a table without an ORM: ``create()`` inserts a row and returns it as a dict.

    Example::

        class UserFactory(TableFactory):
            class Meta:
                table = "users"

            name = factory.Sequence(lambda n: f"user{n}")

        row = UserFactory(name="ada")   # {"id": 1, "name": "ada", ...}
    """

    _options_class = _TableOptions

    class Meta:
        abstract = True
        model = dict

    @classmethod
    def _build(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return dict(kwargs)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        table: str | None = cls._meta.table
        key: str = cls._meta.primary_key
        if not table:
            raise TxScopeError(f"{cls.__name__} needs Meta.table: the name of the table to insert into")
        sandbox = Sandbox.current()
        if sandbox is None:
            raise NoSandboxError
        session = sandbox.session()
        columns = list(kwargs)
        placeholders = ", ".join(f":{c}" for c in columns)
        insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
        if key in kwargs:
            session.execute(insert, kwargs).close()
            value = kwargs[key]
        elif session.dialect.name == "postgresql":
            value = session.fetchscalar(f"{insert} RETURNING {key}", kwargs)
        else:
            cursor = session.execute(insert, kwargs)
            value = cursor.lastrowid
            cursor.close()
        cursor = session.execute(f"SELECT * FROM {table} WHERE {key} = :key", {"key": value})
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
        cursor.close()
        return dict(zip(names, row, strict=True))
