"""The notes API through Flask's test client, with the database rolled back after every test.

The views commit db.session; inside a test those commits are savepoint releases in the test's sandbox, so
they behave as in production and are gone after the test.
"""

from __future__ import annotations

from notes.models import Author, Note, db
from sqlalchemy import func, select

NAME = "ada"  # the same unique name in several tests: a leaked row would make one of them fail


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_an_author_created_through_the_api_is_in_the_database(app, client):
    response = client.post("/authors", json={"name": NAME})

    assert response.status_code == 201
    with app.app_context():
        assert db.session.get(Author, response.json["id"]).name == NAME


def test_the_same_name_again_in_another_test_is_created_too(client):
    # Passes whatever the order: the author of the test above was rolled back.
    assert client.post("/authors", json={"name": NAME}).status_code == 201


def test_a_duplicate_name_is_409_after_the_apps_own_rollback(client):
    assert client.post("/authors", json={"name": NAME}).status_code == 201

    response = client.post("/authors", json={"name": NAME})

    assert response.status_code == 409
    # The view's db.session.rollback() undid its own savepoint only: the first author is still there, and
    # the next request works.
    assert client.get("/stats").json == {"authors": 1, "notes": 0}
    assert client.post("/authors", json={"name": "grace"}).status_code == 201


def test_notes_are_added_and_listed(client):
    author_id = client.post("/authors", json={"name": NAME}).json["id"]

    client.post(f"/authors/{author_id}/notes", json={"text": "first"})
    client.post(f"/authors/{author_id}/notes", json={"text": "second"})

    assert client.get(f"/authors/{author_id}").json["notes"] == ["first", "second"]


def test_a_note_is_edited(client):
    author_id = client.post("/authors", json={"name": NAME}).json["id"]
    note_id = client.post(f"/authors/{author_id}/notes", json={"text": "draft"}).json["id"]

    response = client.put(f"/notes/{note_id}", json={"text": "final"})

    assert response.json == {"id": note_id, "text": "final"}
    assert client.get(f"/authors/{author_id}").json["notes"] == ["final"]


def test_an_author_is_deleted_with_the_notes(client):
    author_id = client.post("/authors", json={"name": NAME}).json["id"]
    client.post(f"/authors/{author_id}/notes", json={"text": "gone soon"})

    assert client.delete(f"/authors/{author_id}").status_code == 200

    assert client.get(f"/authors/{author_id}").status_code == 404
    assert client.get("/stats").json == {"authors": 0, "notes": 0}


def test_a_bad_request_writes_nothing(client):
    assert client.post("/authors", json={"name": ""}).status_code == 400
    assert client.post("/authors/1/notes", json={"text": "x"}).status_code == 404
    assert client.get("/stats").json == {"authors": 0, "notes": 0}


def test_rows_the_test_writes_with_db_session_are_seen_by_the_app(app, client):
    with app.app_context():
        author = Author(name=NAME, notes=[Note(text="from the test")])
        db.session.add(author)
        db.session.commit()  # a savepoint release: the test's transaction stays open
        author_id = author.id

    assert client.get(f"/authors/{author_id}").json["notes"] == ["from the test"]


def test_what_the_app_committed_is_seen_by_the_test(app, client):
    client.post("/authors", json={"name": NAME})
    client.post("/authors", json={"name": "grace"})

    with app.app_context():
        assert db.session.scalars(select(Author.name).order_by(Author.name)).all() == ["ada", "grace"]
        assert count(Author) == 2


def test_every_test_starts_empty(app, client):
    # Ten tests above wrote authors and notes and committed them: none of it is left.
    assert client.get("/stats").json == {"authors": 0, "notes": 0}
