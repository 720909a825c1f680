"""The blog's views: list, show, create, update, delete. Each view that writes commits."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, request, url_for
from werkzeug.wrappers import Response

from .db import execute, get_db, integrity_error

bp = Blueprint("blog", __name__)


@bp.get("/")
def index() -> str:
    posts = execute("SELECT id, title, created FROM post ORDER BY created DESC, id DESC").fetchall()
    return "\n".join(f"{p['title']} ({p['created'].strftime('%Y-%m-%d')})" for p in posts)


@bp.get("/<int:id>")
def show(id: int) -> str:
    post = get_post(id)
    return f"{post['title']}\n{post['created'].strftime('%d %b %Y')}\n{post['body']}"


@bp.post("/create")
def create() -> Response | tuple[str, int]:
    title, body = request.form.get("title", ""), request.form.get("body", "")
    if not title:
        return "Title is required.", 400
    db = get_db()
    try:
        execute("INSERT INTO post (title, body) VALUES (?, ?)", (title, body))
        db.commit()
    except integrity_error():
        db.rollback()
        return f"A post titled {title!r} exists already.", 409
    return redirect(url_for("blog.index"))


@bp.post("/<int:id>/update")
def update(id: int) -> Response | tuple[str, int]:
    get_post(id)
    title, body = request.form.get("title", ""), request.form.get("body", "")
    if not title:
        return "Title is required.", 400
    execute("UPDATE post SET title = ?, body = ? WHERE id = ?", (title, body, id))
    get_db().commit()
    return redirect(url_for("blog.show", id=id))


@bp.post("/<int:id>/delete")
def delete(id: int) -> Response:
    get_post(id)
    execute("DELETE FROM post WHERE id = ?", (id,))
    get_db().commit()
    return redirect(url_for("blog.index"))


def get_post(id: int) -> dict[str, object]:
    post = execute("SELECT id, title, body, created FROM post WHERE id = ?", (id,)).fetchone()
    if post is None:
        abort(404, f"Post id {id} doesn't exist.")
    return dict(post)
