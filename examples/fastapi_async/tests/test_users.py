"""Users: sign-up, the unique email answered 409 by the app's own rollback, login, and isolation between tests.

The app opens its own async sessions on its own engine and commits them; in a test those commits are savepoint
releases in the test's sandbox, seen by the test's next request, and gone after the test.
"""

import pytest
from app.core.db import SessionLocal
from app.models import Item, User
from sqlalchemy import func, select

EMAIL = "ada@example.com"  # the same unique email in several tests: a leaked row would make one of them fail
ADA = {"email": EMAIL, "password": "correct horse"}


async def count(model):
    async with SessionLocal() as session:  # a session of the app's, opened by the test
        return await session.scalar(select(func.count()).select_from(model))


async def test_a_user_created_through_the_api_is_in_the_database(client):
    response = await client.post("/users/", json=ADA)

    assert response.status_code == 201
    assert "password" not in response.text
    async with SessionLocal() as session:
        assert (await session.get(User, response.json()["id"])).email == EMAIL  # what the request committed


@pytest.mark.parametrize("run", ["first", "second"])
async def test_a_commit_is_seen_by_the_next_request_and_not_by_the_next_test(client, run):
    # Both runs sign up the same email: whichever runs second would get a 409 if the first one's commit had
    # outlived its test (on the same xdist worker; the count below checks every other test too).
    assert await count(User) == 0

    assert (await client.post("/users/", json=ADA)).status_code == 201
    login = await client.post("/login", json=ADA)
    assert login.status_code == 200  # the next request sees the first one's commit
    me = await client.get("/users/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.json()["email"] == EMAIL


async def test_a_taken_email_is_409_and_the_test_goes_on(client, user):
    response = await client.post("/users/", json={"email": user.email, "password": "another one"})

    assert response.status_code == 409  # the app rolled its own transaction back
    assert response.json() == {"detail": f"a user with email {EMAIL} already exists"}
    # ... and only its own: the fixture's user is still there, and the database still works.
    bob = {"email": "bob@example.com", "password": "bob's password"}
    assert (await client.post("/users/", json=bob)).status_code == 201
    assert await count(User) == 2


async def test_login_gives_a_token_for_the_user(client, user, auth):
    response = await client.get("/users/me", headers=auth)

    assert response.status_code == 200
    assert response.json() == {"id": user.id, "email": EMAIL, "full_name": None}


async def test_a_wrong_password_or_token_is_refused(client, user):
    wrong = {"email": EMAIL, "password": "wrong horse"}
    assert (await client.post("/login", json=wrong)).status_code == 400
    forged = {"Authorization": f"Bearer {user.id}.forged"}
    assert (await client.get("/users/me", headers=forged)).status_code == 401


async def test_deleting_the_account_deletes_its_items(client, auth):
    for title in ("Cup", "Saucer"):
        assert (await client.post("/items/", headers=auth, json={"title": title})).status_code == 201

    assert (await client.delete("/users/me", headers=auth)).status_code == 204

    assert await count(User) == 0
    assert await count(Item) == 0  # the relationship's cascade
    assert (await client.get("/users/me", headers=auth)).status_code == 401


async def test_no_user_is_left_from_other_tests(client):
    # Every other test of this module creates ada@example.com; in any order, on any worker, none is left.
    assert await count(User) == 0
    assert (await client.post("/users/", json=ADA)).status_code == 201
