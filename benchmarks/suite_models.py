"""ORM models of the first group of benchmark tables, and the join the ORM tests read back with."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, bindparam, select
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column


class Base(DeclarativeBase):
    """The declarative base of the benchmark models."""


class T0(Base):
    """A group's first table (no parent)."""

    __tablename__ = "t0"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parent_id: Mapped[int | None]
    name: Mapped[str] = mapped_column(String(64), index=True)
    score: Mapped[int]


class T1(Base):
    """A child of `T0`."""

    __tablename__ = "t1"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parent_id: Mapped[int] = mapped_column(ForeignKey("t0.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    score: Mapped[int]


class T2(Base):
    """A child of `T1`."""

    __tablename__ = "t2"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parent_id: Mapped[int] = mapped_column(ForeignKey("t1.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    score: Mapped[int]


MODELS: dict[str, Any] = {"t0": T0, "t1": T1, "t2": T2}
_a, _b, _c = aliased(T0), aliased(T1), aliased(T2)
JOIN = (
    select(_a.name, _b.name, _c.name)
    .join(_b, _b.parent_id == _a.id)
    .join(_c, _c.parent_id == _b.id)
    .where(_a.id == bindparam("id"))
)
