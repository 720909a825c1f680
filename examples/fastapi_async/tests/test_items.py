"""Items, owned by the logged-in user: CRUD through the API, 404 and 409, a request that fails half-way, and
an endpoint that runs two queries at once."""

import pytest
from app.core.db import SessionLocal
from app.models import Item, User
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError


async def item_count():
    async with SessionLocal() as session:  # a session of the app's, opened by the test
        return await session.scalar(select(func.count()).select_from(Item))


async def test_create_read_update_delete(client, auth, user):
    teapot = {"title": "Teapot", "description": "short, stout"}
    created = await client.post("/items/", headers=auth, json=teapot)
    assert created.status_code == 201
    item = created.json()
    assert item["owner_id"] == user.id

    assert (await client.get(f"/items/{item['id']}", headers=auth)).json() == item
    updated = await client.patch(f"/items/{item['id']}", headers=auth, json={"title": "Kettle"})
    assert updated.json() == {**item, "title": "Kettle"}
    async with SessionLocal() as session:
        assert (await session.get(Item, item["id"])).title == "Kettle"  # the request's commit

    assert (await client.delete(f"/items/{item['id']}", headers=auth)).status_code == 204
    assert (await client.get(f"/items/{item['id']}", headers=auth)).status_code == 404
    assert await item_count() == 0


async def test_a_missing_item_is_404(client, auth):
    response = await client.get("/items/12345", headers=auth)

    assert response.status_code == 404
    assert response.json() == {"detail": "item not found"}


async def test_another_users_item_is_404(client, auth):
    async with SessionLocal() as session:
        other = User(email="bob@example.com", hashed_password="-")  # noqa: S106 (matches no password)
        other.items = [Item(title="Bob's")]
        session.add(other)
        await session.flush()  # not committed: the requests see the test's open transaction (one connection)

        assert (await client.get(f"/items/{other.items[0].id}", headers=auth)).status_code == 404
        assert (await client.get("/items/", headers=auth)).json() == []


async def test_a_taken_title_is_409_and_the_first_item_stays(client, auth):
    assert (await client.post("/items/", headers=auth, json={"title": "Cup"})).status_code == 201

    response = await client.post("/items/", headers=auth, json={"title": "Cup"})

    assert response.status_code == 409
    assert response.json() == {"detail": "you already have an item titled Cup"}
    assert [item["title"] for item in (await client.get("/items/", headers=auth)).json()] == ["Cup"]


async def test_items_added_with_the_apps_session_are_listed(client, auth, user):
    async with SessionLocal() as session:
        session.add_all([Item(title="Cup", owner_id=user.id), Item(title="Saucer", owner_id=user.id)])
        await session.commit()  # a savepoint release: the test's transaction stays open

    assert [item["title"] for item in (await client.get("/items/", headers=auth)).json()] == ["Cup", "Saucer"]


async def test_the_summary_runs_two_queries_at_once(client, auth, user):
    async with SessionLocal() as session:
        bob = User(email="bob@example.com", hashed_password="-")  # noqa: S106 (matches no password)
        session.add_all([Item(title="Cup", owner_id=user.id), bob])
        await session.commit()

    response = await client.get("/summary", headers=auth)

    assert response.json() == {"my_items": 1, "users": 2}


async def test_an_import_is_one_transaction(client, auth):
    response = await client.post("/items/import", headers=auth, json=[{"title": "Cup"}, {"title": "Saucer"}])

    assert response.status_code == 201
    assert [item["title"] for item in response.json()] == ["Cup", "Saucer"]
    assert await item_count() == 2


async def test_a_request_that_fails_half_way_leaves_nothing(client, auth):
    # The third item breaks UNIQUE(owner_id, title).
    items = [{"title": "Cup"}, {"title": "Saucer"}, {"title": "Cup"}]

    # The first two rows were inserted when the third failed; the error escapes the endpoint, and get_db rolls
    # the request's transaction back. ASGITransport re-raises the app's error.
    with pytest.raises(IntegrityError):
        await client.post("/items/import", headers=auth, json=items)

    assert await item_count() == 0
    assert (await client.get("/items/", headers=auth)).json() == []
    assert (await client.post("/items/", headers=auth, json={"title": "Cup"})).status_code == 201  # usable


async def test_no_item_is_left_from_other_tests(db_sandbox):
    # The tests above create items with the same titles, and the fixture's user: none of it is left. The test
    # asks for the sandbox: without one, the app's engine would read the database outside any test's transaction.
    async with SessionLocal() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 0
        assert await session.scalar(select(func.count()).select_from(User)) == 0
