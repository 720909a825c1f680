"""The JSON API. Views work in db.session, which Flask-SQLAlchemy removes at the end of each request."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .models import Author, Note, db

bp = Blueprint("notes", __name__)

Response = tuple[dict[str, Any], int]


@bp.post("/authors")
def create_author() -> Response:
    name = (request.get_json(silent=True) or {}).get("name")
    if not isinstance(name, str) or not name.strip():
        return {"error": "name must be a non-empty string"}, 400
    author = Author(name=name)
    db.session.add(author)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return {"error": f"an author named {name} already exists"}, 409
    return {"id": author.id, "name": author.name}, 201


@bp.get("/authors/<int:author_id>")
def get_author(author_id: int) -> Response:
    author = db.get_or_404(Author, author_id)
    return {"id": author.id, "name": author.name, "notes": [n.text for n in author.notes]}, 200


@bp.post("/authors/<int:author_id>/notes")
def add_note(author_id: int) -> Response:
    author = db.get_or_404(Author, author_id)
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str) or not text:
        return {"error": "text must be a non-empty string"}, 400
    note = Note(author=author, text=text)
    db.session.add(note)
    db.session.commit()
    return {"id": note.id, "text": note.text}, 201


@bp.put("/notes/<int:note_id>")
def edit_note(note_id: int) -> Response:
    note = db.get_or_404(Note, note_id)
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str) or not text:
        return {"error": "text must be a non-empty string"}, 400
    note.text = text
    db.session.commit()
    return {"id": note.id, "text": note.text}, 200


@bp.delete("/authors/<int:author_id>")
def delete_author(author_id: int) -> Response:
    author = db.get_or_404(Author, author_id)
    for note in author.notes:
        db.session.delete(note)
    db.session.delete(author)
    db.session.commit()
    return {"deleted": author_id}, 200


@bp.get("/stats")
def stats() -> Response:
    return {
        "authors": db.session.scalar(select(func.count()).select_from(Author)),
        "notes": db.session.scalar(select(func.count()).select_from(Note)),
    }, 200
