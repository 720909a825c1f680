"""The tables: users, and the items they own."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(255))
    hashed_password: Mapped[str] = mapped_column(String(255))
    # lazy="raise": an async session cannot load a collection on attribute access; a query says selectinload().
    items: Mapped[list[Item]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", lazy="raise"
    )


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("owner_id", "title"),)  # one title per owner

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    owner: Mapped[User] = relationship(back_populates="items", lazy="raise")
