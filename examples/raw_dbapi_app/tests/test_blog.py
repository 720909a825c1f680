"""The blog through Flask's test client; the app's sqlite3 (or psycopg) commits are rolled back after each test."""

from __future__ import annotations

TITLE = "hello"  # the same unique title in several tests: a leaked row would make one of them fail


def post_count(db_session) -> int:
    return db_session.fetchscalar("SELECT count(*) FROM post")


def test_a_post_created_through_the_app_is_in_the_database(client, db_session):
    response = client.post("/create", data={"title": TITLE, "body": "first"})

    assert response.status_code == 302
    assert db_session.fetchscalar("SELECT body FROM post WHERE title = ?", [TITLE]) == "first"


def test_the_same_title_in_another_test_is_created_too(client, db_session):
    # Passes whatever the order: the post of the test above was rolled back.
    assert client.post("/create", data={"title": TITLE, "body": ""}).status_code == 302
    assert post_count(db_session) == 1


def test_the_index_shows_the_timestamp_with_strftime(client, db_session):
    db_session.execute(
        "INSERT INTO post (title, body, created) VALUES (?, ?, ?)", [TITLE, "", "2024-05-17 10:30:00"]
    )

    # TIMESTAMP read back as a datetime: PARSE_DECLTYPES on sqlite3, the column's type on psycopg.
    assert client.get("/").text == f"{TITLE} (2024-05-17)"


def test_rows_the_test_inserts_are_seen_by_the_app(client, db_session):
    db_session.execute("INSERT INTO post (title, body) VALUES (?, ?)", ["from the test", "seeded"])
    post_id = db_session.fetchscalar("SELECT id FROM post WHERE title = ?", ["from the test"])

    assert client.get(f"/{post_id}").text.splitlines()[::2] == ["from the test", "seeded"]


def test_a_duplicate_title_is_409_after_the_apps_own_rollback(client, db_session):
    client.post("/create", data={"title": TITLE, "body": "kept"})

    response = client.post("/create", data={"title": TITLE, "body": "refused"})

    assert response.status_code == 409
    # The app's db.rollback() undid its own savepoint only: the first post is still there, and the app works.
    assert db_session.fetchall("SELECT body FROM post") == [("kept",)]
    assert client.post("/create", data={"title": "another", "body": ""}).status_code == 302


def test_a_post_is_updated(client, db_session):
    client.post("/create", data={"title": TITLE, "body": "draft"})
    post_id = db_session.fetchscalar("SELECT id FROM post")

    client.post(f"/{post_id}/update", data={"title": "edited", "body": "final"})

    assert db_session.fetchall("SELECT title, body FROM post") == [("edited", "final")]


def test_a_post_is_deleted(client, db_session):
    client.post("/create", data={"title": TITLE, "body": ""})
    post_id = db_session.fetchscalar("SELECT id FROM post")

    assert client.post(f"/{post_id}/delete").status_code == 302

    assert client.get(f"/{post_id}").status_code == 404
    assert post_count(db_session) == 0


def test_a_post_without_a_title_is_refused_and_nothing_is_written(client, db_session):
    assert client.post("/create", data={"title": "", "body": "x"}).status_code == 400
    assert client.post("/999/update", data={"title": "x"}).status_code == 404
    assert post_count(db_session) == 0
