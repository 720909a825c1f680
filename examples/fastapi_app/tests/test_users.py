"""Users: sign-up, the unique email answered 409 by the app's own rollback, login, and isolation between tests.

The app opens its own sessions on its own engine, in the test client's worker threads, and commits them; in a
test those commits are savepoint releases in the test's sandbox, and everything is gone after the test.
"""

from app.models import User
from sqlalchemy import func, select

EMAIL = "ada@example.com"  # the same unique email in several tests: a leaked row would make one of them fail


def user_count(sa_session):
    return sa_session.scalar(select(func.count()).select_from(User))


def test_a_user_created_through_the_api_is_in_the_tests_session(client, sa_session):
    response = client.post("/users/", json={"email": EMAIL, "password": "correct horse"})

    assert response.status_code == 201
    assert "password" not in response.text
    assert sa_session.get(User, response.json()["id"]).email == EMAIL  # what the request committed


def test_a_taken_email_is_409_and_the_test_goes_on(client, sa_session, user):
    response = client.post("/users/", json={"email": user.email, "password": "another one"})

    assert response.status_code == 409  # the app rolled its own transaction back
    # ... and only its own: the fixture's user is still there, and the database still works.
    bob = {"email": "bob@example.com", "password": "bob's password"}
    assert client.post("/users/", json=bob).status_code == 201
    assert user_count(sa_session) == 2


def test_login_gives_a_token_for_the_user(client, user, auth):
    response = client.get("/users/me", headers=auth)

    assert response.status_code == 200
    assert response.json() == {"id": user.id, "email": EMAIL, "full_name": None}


def test_a_wrong_password_or_token_is_refused(client, user):
    assert client.post("/login", json={"email": EMAIL, "password": "wrong horse"}).status_code == 400
    assert client.get("/users/me", headers={"Authorization": f"Bearer {user.id}.forged"}).status_code == 401


def test_no_user_is_left_from_other_tests(client, sa_session):
    # Every other test of this module creates ada@example.com; in any order, on any worker, none is left.
    assert user_count(sa_session) == 0
    assert client.post("/users/", json={"email": EMAIL, "password": "correct horse"}).status_code == 201
