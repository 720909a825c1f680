"""The extension object and the models, as Flask-SQLAlchemy 3 apps write them."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

db = SQLAlchemy()


class Author(db.Model):  # type: ignore[name-defined,misc]
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    notes: Mapped[list[Note]] = relationship(back_populates="author", order_by="Note.id")


class Note(db.Model):  # type: ignore[name-defined,misc]
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    text: Mapped[str] = mapped_column(String(500))
    author: Mapped[Author] = relationship(back_populates="notes")
