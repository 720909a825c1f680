"""Items, owned by the logged-in user: CRUD through the API, a 404, and a request that fails half-way."""

import pytest
from app.models import Item, User
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError


def item_count(sa_session):
    return sa_session.scalar(select(func.count()).select_from(Item))


def test_create_read_update_delete(client, auth, user, sa_session):
    created = client.post("/items/", headers=auth, json={"title": "Teapot", "description": "short, stout"})
    assert created.status_code == 201
    item = created.json()
    assert item["owner_id"] == user.id

    assert client.get(f"/items/{item['id']}", headers=auth).json() == item
    updated = client.patch(f"/items/{item['id']}", headers=auth, json={"title": "Kettle"})
    assert updated.json() == {**item, "title": "Kettle"}
    assert sa_session.get(Item, item["id"]).title == "Kettle"  # the test's session sees the request's commit

    assert client.delete(f"/items/{item['id']}", headers=auth).status_code == 204
    assert client.get(f"/items/{item['id']}", headers=auth).status_code == 404
    assert item_count(sa_session) == 0


def test_a_missing_item_is_404(client, auth):
    response = client.get("/items/12345", headers=auth)

    assert response.status_code == 404
    assert response.json() == {"detail": "item not found"}


def test_another_users_item_is_404(client, auth, sa_session):
    other = User(email="bob@example.com", hashed_password="-")  # noqa: S106 (matches no password)
    other.items.append(Item(title="Bob's"))
    sa_session.add(other)
    sa_session.flush()  # not committed: the request sees the test's open transaction (one connection)

    assert client.get(f"/items/{other.items[0].id}", headers=auth).status_code == 404
    assert client.get("/items/", headers=auth).json() == []


def test_items_added_with_the_tests_session_are_listed(client, auth, user, sa_session):
    sa_session.add_all([Item(title="Cup", owner_id=user.id), Item(title="Saucer", owner_id=user.id)])
    sa_session.commit()  # a savepoint release: the test's transaction stays open

    assert [item["title"] for item in client.get("/items/", headers=auth).json()] == ["Cup", "Saucer"]


def test_an_import_is_one_transaction(client, auth, sa_session):
    response = client.post("/items/import", headers=auth, json=[{"title": "Cup"}, {"title": "Saucer"}])

    assert response.status_code == 201
    assert [item["title"] for item in response.json()] == ["Cup", "Saucer"]
    assert item_count(sa_session) == 2


def test_a_request_that_fails_half_way_leaves_nothing(client, auth, sa_session):
    # The third item breaks UNIQUE(owner_id, title).
    items = [{"title": "Cup"}, {"title": "Saucer"}, {"title": "Cup"}]

    # The first two rows were inserted when the third failed; the error escapes the endpoint, and the
    # request's session closes, rolling its transaction back. TestClient re-raises the app's error.
    with pytest.raises(IntegrityError):
        client.post("/items/import", headers=auth, json=items)

    assert item_count(sa_session) == 0
    assert client.get("/items/", headers=auth).json() == []
    assert client.post("/items/", headers=auth, json={"title": "Cup"}).status_code == 201  # still usable


def test_no_item_is_left_from_other_tests(sa_session):
    # The tests above create items with the same titles, and the fixture's user: none of it is left.
    assert item_count(sa_session) == 0
    assert sa_session.scalar(select(func.count()).select_from(User)) == 0
